//! Seeded percentile bootstrap over cell counts.
//!
//! Resampling N rows with replacement and counting them per cell gives cell
//! counts distributed Multinomial(N, observed shares); every label-based
//! metric is a function of those counts. So each resample draws the counts
//! directly (a chain of conditional binomials), which is exactly the row
//! bootstrap at a cost independent of N. Resample `b` uses ChaCha8 seeded
//! with the configured seed on stream `b`, so results do not depend on the
//! number of threads.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution};
use rayon::prelude::*;

use crate::config::BootstrapConfig;
use crate::report::Interval;

/// Draws Multinomial(`n`, `counts / sum(counts)`) for the given observed
/// counts (whose sum need not be `n`).
pub(crate) fn multinomial(counts: &[u64], n: u64, rng: &mut ChaCha8Rng) -> Vec<u64> {
    let mut out = vec![0u64; counts.len()];
    let mut rest_weight: u64 = counts.iter().sum();
    let mut rest_n = n;
    for (i, &c) in counts.iter().enumerate() {
        if rest_n == 0 || rest_weight == 0 {
            break;
        }
        if c == rest_weight {
            out[i] = rest_n;
            break;
        }
        let p = c as f64 / rest_weight as f64;
        let x = match Binomial::new(rest_n, p) {
            Ok(b) => b.sample(rng),
            Err(_) => 0,
        };
        out[i] = x;
        rest_n -= x;
        rest_weight -= c;
    }
    out
}

/// The RNG of resample `b`.
pub(crate) fn resample_rng(seed: u64, b: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(b as u64);
    rng
}

/// Runs `stat` on `config.resamples` multinomial resamples of `counts`
/// (in parallel); returns one vector of statistics per resample.
pub(crate) fn resample<F>(counts: &[u64], config: &BootstrapConfig, stat: F) -> Vec<Vec<f64>>
where
    F: Fn(&[u64]) -> Vec<f64> + Sync,
{
    let n: u64 = counts.iter().sum();
    // Draw only over non-zero cells; scatter back.
    let nz: Vec<usize> = (0..counts.len()).filter(|&i| counts[i] > 0).collect();
    let weights: Vec<u64> = nz.iter().map(|&i| counts[i]).collect();
    (0..config.resamples)
        .into_par_iter()
        .map(|b| {
            let mut rng = resample_rng(config.seed, b);
            let drawn = multinomial(&weights, n, &mut rng);
            let mut full = vec![0u64; counts.len()];
            for (&i, x) in nz.iter().zip(drawn) {
                full[i] = x;
            }
            stat(&full)
        })
        .collect()
}

/// numpy's default (linear) percentile of sorted values, `q` in [0, 1].
pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Percentile intervals of each statistic over the resamples (NaN values,
/// where a statistic was undefined, are left out).
pub(crate) fn intervals(samples: &[Vec<f64>], n_stats: usize, level: f64) -> Vec<Option<Interval>> {
    let alpha = (1.0 - level) / 2.0;
    (0..n_stats)
        .into_par_iter()
        .map(|j| {
            let mut v: Vec<f64> = samples
                .iter()
                .filter_map(|s| s.get(j).copied())
                .filter(|x| !x.is_nan())
                .collect();
            if v.is_empty() {
                return None;
            }
            v.sort_by(f64::total_cmp);
            Some(Interval {
                lower: percentile(&v, alpha),
                upper: percentile(&v, 1.0 - alpha),
                resamples_used: v.len() as u32,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multinomial_keeps_total_and_mean() {
        let counts = [10u64, 0, 30, 60];
        let mut rng = resample_rng(7, 0);
        let mut sums = [0f64; 4];
        let reps = 4000;
        for _ in 0..reps {
            let d = multinomial(&counts, 1000, &mut rng);
            assert_eq!(d.iter().sum::<u64>(), 1000);
            assert_eq!(d[1], 0);
            for (s, x) in sums.iter_mut().zip(&d) {
                *s += *x as f64;
            }
        }
        for (s, c) in sums.iter().zip(counts) {
            let mean = s / reps as f64;
            let expected = c as f64 * 10.0;
            // sd of the mean is at most sqrt(1000 * 0.25 / 4000) = 0.25
            assert!((mean - expected).abs() < 1.5, "{mean} vs {expected}");
        }
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 1.0), 4.0);
        assert!((percentile(&v, 0.025) - 1.075).abs() < 1e-12);
        assert!((percentile(&v, 0.5) - 2.5).abs() < 1e-12);
    }

    #[test]
    fn resample_is_seeded_and_thread_independent() {
        let cfg = BootstrapConfig::new(50, 11);
        let counts = [5u64, 7, 11, 13];
        let stat = |c: &[u64]| vec![c[0] as f64 / c.iter().sum::<u64>() as f64];
        let a = resample(&counts, &cfg, stat);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let b = pool.install(|| resample(&counts, &cfg, stat));
        assert_eq!(a, b);
    }
}
