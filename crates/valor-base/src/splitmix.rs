//! SplitMix64 (Steele, Lea & Flood 2014): a 64-bit counter through a
//! bijective mixer. Counter-based, so position `i` of a stream is computed
//! without the ones before it, and bit-identical on every machine.
//!
//! Its users: valor-bert's dropout masks ([`splitmix64`] of the seed and the
//! element index) and its random attributions ([`SplitMix64`] shuffles);
//! valor-train's per-micro-batch dropout seeds ([`splitmix64_xor`]); the
//! benchmarks' synthetic data (the stream `fair_data.py` also draws).

/// The golden-ratio increment of the counter (2^64 / φ, odd).
pub const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finaliser (a bijection of 64-bit words).
#[inline(always)]
pub const fn mix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Output `i` (0-based) of the stream seeded by `seed`: the value the
/// `i + 1`-th [`SplitMix64::next`] returns.
#[inline(always)]
pub const fn splitmix64(seed: u64, i: u64) -> u64 {
    mix64(seed.wrapping_add(i.wrapping_add(1).wrapping_mul(GAMMA)))
}

/// The variant that combines seed and counter with XOR instead of addition:
/// valor-train's dropout seed of micro-batch `i` (kept as it is, so runs
/// stay bit-identical to the ones recorded).
#[inline(always)]
pub const fn splitmix64_xor(seed: u64, i: u64) -> u64 {
    mix64(seed ^ i.wrapping_add(1).wrapping_mul(GAMMA))
}

/// `u` ∈ [0, 1) from the top 53 bits of a draw.
#[inline(always)]
pub fn unit_f64(draw: u64) -> f64 {
    (draw >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A SplitMix64 stream as a generator.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// The stream seeded by `seed`.
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next output.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix64(self.state)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; bias below 2^-32 for
    /// `n` < 2^32).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_outputs() {
        // The first outputs of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
        let mut g = SplitMix64::new(0);
        assert_eq!(g.next(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(g.next(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(g.next(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn counter_form_equals_the_generator() {
        for seed in [0, 1, 42, u64::MAX] {
            let mut g = SplitMix64::new(seed);
            for i in 0..100 {
                assert_eq!(splitmix64(seed, i), g.next(), "seed {seed}, i {i}");
            }
        }
    }

    #[test]
    fn xor_variant_differs_from_the_additive_one_only_in_combination() {
        assert_eq!(splitmix64_xor(0, 5), splitmix64(0, 5));
        assert_eq!(splitmix64_xor(7, 3), mix64(7 ^ 4u64.wrapping_mul(GAMMA)));
        assert_ne!(splitmix64_xor(7, 3), splitmix64(7, 3));
    }

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let mut a: Vec<u32> = (0..50).collect();
        let mut b = a.clone();
        SplitMix64::new(3).shuffle(&mut a);
        SplitMix64::new(3).shuffle(&mut b);
        assert_eq!(a, b);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(a, sorted);
    }
}
