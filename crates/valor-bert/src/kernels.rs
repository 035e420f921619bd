//! Element and row kernels on plain `f32` slices, for the CPU fast paths of
//! [`crate::fused`], [`crate::host`] and [`crate::optim`].
//!
//! Each public kernel is compiled once per instruction set by
//! `macerator::with_simd` (SSE4.2, AVX2 + FMA, AVX-512 on x86-64; NEON on
//! aarch64) and picks the best one the CPU has at run time, so its plain
//! loops are vectorised at the CPU's full width although the crate is built
//! for baseline x86-64. Nothing here knows about tensors, devices or
//! threads: callers split the work (rayon) and call a kernel per piece.
//!
//! Results do not depend on the instruction set chosen: every reduction
//! runs over [`LANES`] accumulators in a fixed order, and Rust never fuses
//! a multiply and an add on its own, so each lane computes the same
//! rounding on every CPU.

// A kernel's `S: Simd` parameter is how `with_simd` compiles its body per
// instruction set; the body itself uses plain loops, not `S`'s vector API.
#![allow(clippy::extra_unused_type_parameters)]
// Without the flex backend only the AdamW and dropout kernels have callers.
#![cfg_attr(not(feature = "flex"), allow(dead_code))]

use macerator::Simd;

use crate::host::Mask;

/// Elements per parallel work item for callers that split element-wise
/// work across threads: large enough that scheduling is noise.
pub(crate) const CHUNK: usize = 1 << 14;

/// Accumulators per reduction: a fixed order of additions that fills one
/// AVX-512 register (two AVX2 ones).
pub(crate) const LANES: usize = 16;

/// `Σ f(i)` for `i < n`, over [`LANES`] accumulators.
#[inline(always)]
fn sum_by(n: usize, f: impl Fn(usize) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let full = n / LANES * LANES;
    for start in (0..full).step_by(LANES) {
        for (k, a) in acc.iter_mut().enumerate() {
            *a += f(start + k);
        }
    }
    let mut total = 0f32;
    for a in acc {
        total += a;
    }
    for i in full..n {
        total += f(i);
    }
    total
}

/// `max_i xs[i]` over [`LANES`] accumulators (−∞ for an empty slice).
#[inline(always)]
fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = a.max(x);
        }
    }
    let mut m = f32::NEG_INFINITY;
    for a in acc.into_iter().chain(chunks.remainder().iter().copied()) {
        m = m.max(a);
    }
    m
}

/// `eˣ` in plain arithmetic, so that loops over it vectorise (libm's and
/// glibc's `expf` are a call per element). Range reduction
/// `x = n·ln 2 + r`, `|r| ≤ ln 2 / 2`, then the degree-7 Taylor polynomial
/// of `eʳ` (truncation error below 3e-9 relative) and `2ⁿ` from the
/// exponent bits: within 2 ulp of `expf` (tested). Inputs are clamped to
/// [-87, 88], so `e^-∞` is 1.6e-38 rather than 0.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5·2²³: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // n ∈ [-126, 127]: a normal power of two. `shifted` is exactly
    // 1.5·2²³ + n, whose bits are 0x4B40_0000 + n, so the exponent field
    // n + 127 comes from integer arithmetic on those bits. (`n as i32`
    // would give the same number, but Rust's saturating float-to-int cast
    // kept LLVM from vectorising every loop that calls `exp`: GELU and the
    // softmax ran one lane at a time.)
    let biased = shifted.to_bits().wrapping_sub(0x4B40_0000 - 127);
    f32::from_bits(biased << 23) * p
}

/// The standard normal distribution at `x`: `(Φ(x), φ(x))`.
///
/// `Φ` from Abramowitz & Stegun 7.1.26, `erfc(z) ≈ t·P(t)·e^{-z²}` with
/// `t = 1/(1 + 0.3275911·z)` (absolute error ≤ 1.5e-7 in exact
/// arithmetic; the form PyTorch's vectorised CPU `erf` also uses); the tail
/// `x < 0` is computed directly, not as `1 − Φ(−x)`.
/// `φ(x) = e^{-x²/2}/√(2π)` shares the exponential. In f32 both are within
/// 3e-7 of the exact values (tested).
#[inline(always)]
pub(crate) fn normal(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_72,
        1.421_413_8,
        -1.453_152,
        1.061_405_4,
    ];
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let mut poly = A[4];
    for &a in A[..4].iter().rev() {
        poly = poly * t + a;
    }
    let gauss = exp(-z * z);
    // ½·erfc(|x|/√2) = Φ(−|x|).
    let tail = 0.5 * t * poly * gauss;
    let cdf = if x < 0.0 { tail } else { 1.0 - tail };
    let inv_sqrt_2pi =
        (0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2) as f32;
    (cdf, inv_sqrt_2pi * gauss)
}

/// `out[i] = mask(base + i)`.
#[macerator::with_simd]
pub(crate) fn mask_fill<S: Simd>(out: &mut [f32], mask: Mask, base: u64) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = mask.value(base + i as u64);
    }
}

/// `out[i] = input[i] · mask(base + i)`.
#[macerator::with_simd]
pub(crate) fn mask_mul<S: Simd>(out: &mut [f32], input: &[f32], mask: Mask, base: u64) {
    for (i, (o, &x)) in out.iter_mut().zip(input).enumerate() {
        *o = x * mask.value(base + i as u64);
    }
}

/// Row-wise `softmax(scale · scores + bias)` of rows of `keys` elements,
/// in place: `rows` holds the scores and receives the probabilities. Row
/// `r` (counted from `first_row` over the whole tensor) takes its bias from
/// `bias[(r / rows_per_batch) · keys ..]`.
#[macerator::with_simd]
pub(crate) fn softmax_rows<S: Simd>(
    rows: &mut [f32],
    bias: &[f32],
    first_row: usize,
    rows_per_batch: usize,
    keys: usize,
    scale: f32,
) {
    for (r, o) in rows.chunks_mut(keys).enumerate() {
        let b = (first_row + r) / rows_per_batch;
        let bias = &bias[b * keys..(b + 1) * keys];
        for (o, &bias) in o.iter_mut().zip(bias) {
            *o = *o * scale + bias;
        }
        let m = max(o);
        for o in o.iter_mut() {
            *o = exp(*o - m);
        }
        let total = sum_by(o.len(), |j| o[j]);
        for o in o.iter_mut() {
            *o /= total;
        }
    }
}

/// The softmax backward of rows of `keys` elements through a dropout mask
/// (element `i` of this piece is element `base + i` of the mask), in
/// place: `rows` holds `∂/∂output` and receives
/// `scale · p ⊙ (gp − Σ gp·p)` with `gp = grad ⊙ mask`.
#[macerator::with_simd]
pub(crate) fn softmax_backward_rows<S: Simd>(
    rows: &mut [f32],
    probs: &[f32],
    keys: usize,
    scale: f32,
    mask: Mask,
    base: u64,
) {
    for (r, (o, p)) in rows.chunks_mut(keys).zip(probs.chunks(keys)).enumerate() {
        if !mask.keeps_all() {
            let row = base + (r * keys) as u64;
            for (j, o) in o.iter_mut().enumerate() {
                *o *= mask.value(row + j as u64);
            }
        }
        let dot = sum_by(o.len(), |j| o[j] * p[j]);
        for (o, &p) in o.iter_mut().zip(p) {
            *o = scale * p * (*o - dot);
        }
    }
}

/// `LayerNorm(x ⊙ mask + residual)` over rows of `hidden` elements.
/// `rows` holds `x` and receives the normalised rows x̂ (before γ, β);
/// `out` receives `x̂·γ + β` and `rstd` each row's `1/√(var + ε)`.
#[macerator::with_simd]
#[allow(clippy::too_many_arguments)]
pub(crate) fn norm_rows<S: Simd>(
    rows: &mut [f32],
    out: &mut [f32],
    rstd: &mut [f32],
    residual: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
    mask: Mask,
    base: u64,
) {
    let hidden = gamma.len();
    for (k, sd) in rstd.iter_mut().enumerate() {
        let span = k * hidden..(k + 1) * hidden;
        let n = &mut rows[span.clone()];
        let r = &residual[span.clone()];
        if mask.keeps_all() {
            for (n, &r) in n.iter_mut().zip(r) {
                *n += r;
            }
        } else {
            let row = base + (k * hidden) as u64;
            for (j, (n, &r)) in n.iter_mut().zip(r).enumerate() {
                *n = *n * mask.value(row + j as u64) + r;
            }
        }
        let mean = sum_by(hidden, |j| n[j]) / hidden as f32;
        for n in n.iter_mut() {
            *n -= mean;
        }
        let var = sum_by(hidden, |j| n[j] * n[j]) / hidden as f32;
        let inv = 1.0 / (var + epsilon).sqrt();
        *sd = inv;
        for (((n, o), &g), &b) in n.iter_mut().zip(&mut out[span]).zip(gamma).zip(beta) {
            *n *= inv;
            *o = *n * g + b;
        }
    }
}

/// The layer-norm backward over rows of `hidden` elements: the gradient of
/// the normalised sum into `g_sum`, and this piece's `Σ gy ⊙ x̂` and `Σ gy`
/// added to `g_gamma` and `g_beta`.
#[macerator::with_simd]
pub(crate) fn norm_backward_rows<S: Simd>(
    g_sum: &mut [f32],
    grad: &[f32],
    normalized: &[f32],
    rstd: &[f32],
    gamma: &[f32],
    g_gamma: &mut [f32],
    g_beta: &mut [f32],
) {
    let hidden = gamma.len();
    for (((gs, gy), xh), &rstd) in g_sum
        .chunks_mut(hidden)
        .zip(grad.chunks(hidden))
        .zip(normalized.chunks(hidden))
        .zip(rstd)
    {
        for j in 0..hidden {
            g_gamma[j] += gy[j] * xh[j];
            g_beta[j] += gy[j];
        }
        let a = sum_by(hidden, |j| gy[j] * gamma[j]) / hidden as f32;
        let b = sum_by(hidden, |j| gy[j] * gamma[j] * xh[j]) / hidden as f32;
        for j in 0..hidden {
            gs[j] = rstd * (gy[j] * gamma[j] - a - xh[j] * b);
        }
    }
}

/// `x ← x·Φ(x)` with [`normal`]'s Φ.
#[macerator::with_simd]
pub(crate) fn gelu<S: Simd>(values: &mut [f32]) {
    for v in values {
        *v *= normal(*v).0;
    }
}

/// `grad ← grad · (Φ(x) + x·φ(x))`, GELU's exact derivative.
#[macerator::with_simd]
pub(crate) fn gelu_backward<S: Simd>(grad: &mut [f32], x: &[f32]) {
    for (g, &x) in grad.iter_mut().zip(x) {
        let (cdf, pdf) = normal(x);
        *g *= cdf + x * pdf;
    }
}

/// One AdamW update's scalars, formed as burn's `AdamW` forms them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdamWStep {
    pub beta1: f32,
    pub beta2: f32,
    /// `1 − β₁ᵗ`, `1 − β₂ᵗ`.
    pub correction1: f32,
    pub correction2: f32,
    pub eps: f32,
    pub lr: f32,
    /// `1 − lr·λ`, or `None` without weight decay.
    pub keep: Option<f32>,
    /// The first step: the moments start from the gradient.
    pub first: bool,
}

/// burn's AdamW update in burn's order: the moments, the bias-corrected
/// step `(m/c₁)/(√(v/c₂) + ε)`, the decoupled decay, the step.
#[macerator::with_simd]
pub(crate) fn adamw<S: Simd>(
    params: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    grad: &[f32],
    step: AdamWStep,
) {
    let (f1, f2) = (1.0 - step.beta1, 1.0 - step.beta2);
    for (((p, m), v), &g) in params.iter_mut().zip(m).zip(v).zip(grad) {
        if step.first {
            *m = g * f1;
            *v = (g * g) * f2;
        } else {
            *m = *m * step.beta1 + g * f1;
            *v = *v * step.beta2 + (g * g) * f2;
        }
        let delta = (*m / step.correction1) / ((*v / step.correction2).sqrt() + step.eps);
        let decayed = step.keep.map_or(*p, |k| *p * k);
        *p = decayed - delta * step.lr;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polynomial_exp_is_within_two_ulp() {
        let mut x = -87.0f32;
        while x <= 88.0 {
            let ours = exp(x);
            let exact = f64::from(x).exp();
            let ulp = f64::from(f32::EPSILON) * exact;
            assert!(
                (f64::from(ours) - exact).abs() <= 2.0 * ulp,
                "exp({x}) = {ours}, exact {exact}"
            );
            x += 0.0137;
        }
        // Underflow clamps to e^-87 instead of 0.
        assert!(exp(-1e4) < 2e-38);
        assert!(exp(f32::NEG_INFINITY) < 2e-38);
    }

    #[test]
    fn exp_scale_from_the_bits_equals_the_cast_it_replaced() {
        // Regression for the unvectorised GELU and softmax: `exp` took
        // 2ⁿ from `n as i32`, whose saturating cast kept LLVM from
        // vectorising its callers; it now takes it from the bits of
        // `x·log₂e + 1.5·2²³`. The power of two, hence every result, must
        // be the same, on every input the clamp lets through and beyond.
        const ROUND: f32 = 12_582_912.0;
        let mut x = -200.0f32;
        let mut checked = 0;
        while x <= 200.0 {
            let c = x.clamp(-87.0, 88.0);
            let shifted = c * std::f32::consts::LOG2_E + ROUND;
            let n = shifted - ROUND;
            let by_cast = f32::from_bits(((n as i32 + 127) as u32) << 23);
            let by_bits = f32::from_bits(shifted.to_bits().wrapping_sub(0x4B40_0000 - 127) << 23);
            assert_eq!(by_bits.to_bits(), by_cast.to_bits(), "2^n at x = {x}");
            x += 0.000_97;
            checked += 1;
        }
        assert!(checked > 400_000);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn polynomial_normal_cdf_and_pdf_are_within_3e7() {
        // Φ from the complementary error function in f64 (libm's erfc).
        let mut x = -12.0f32;
        while x <= 12.0 {
            let (cdf, pdf) = normal(x);
            let z = f64::from(x) / std::f64::consts::SQRT_2;
            let exact_cdf = 0.5 * libm::erfc(-z);
            let exact_pdf =
                (-0.5 * f64::from(x) * f64::from(x)).exp() / (2.0 * std::f64::consts::PI).sqrt();
            assert!(
                (f64::from(cdf) - exact_cdf).abs() <= 3e-7,
                "Φ({x}) = {cdf}, exact {exact_cdf}"
            );
            assert!(
                (f64::from(pdf) - exact_pdf).abs() <= 3e-7,
                "φ({x}) = {pdf}, exact {exact_pdf}"
            );
            x += 0.00731;
        }
    }

    #[test]
    fn lane_reductions_match_plain_sums_and_handle_tails() {
        for n in [0, 1, 15, 16, 17, 100, 385] {
            let xs: Vec<f32> = (0..n).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
            // Small integers: every order of addition is exact.
            let plain: f32 = xs.iter().sum();
            assert_eq!(sum_by(n, |i| xs[i]), plain, "n = {n}");
            let plain_max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(&xs), plain_max, "n = {n}");
        }
    }
}
