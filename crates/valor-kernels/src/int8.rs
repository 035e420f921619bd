//! int8 weights, dynamically quantised int8 activations, i32 products.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::dense::{as_uninit, written};

#[cfg(target_arch = "x86_64")]
use crate::x86::AMX_ROWS;
use crate::{Isa, MR, NR, ShapeError, check_linear, rows_per_task};

/// The packed quads are padded to a multiple of this: one AMX tile's depth
/// (16 quads, 64 int8 values).
const QUADS_ALIGN: usize = 16;

/// Largest magnitude of a quantised value (symmetric, zero point 0).
const QMAX: f32 = 127.0;
/// Largest inner dimension: `255 · 127 · k` must fit an `i32`.
const MAX_K: usize = 1 << 16;

/// A Linear weight `[n, k]` (out × in, row-major as HF stores it) in
/// symmetric int8 with one scale per output channel, packed for
/// [`linear`](Self::linear).
///
/// Layout: panel `p` holds columns `p·NR .. p·NR + NR`; within it, quad `q`
/// of the inner dimension holds, per column, the four bytes
/// `W[c, 4q .. 4q + 4]` (what one 32-bit lane of `vpdpbusd` multiplies).
/// Columns past `n` and inputs past `k` are zero.
#[derive(Debug, Clone)]
pub struct PackedI8 {
    n: usize,
    k: usize,
    /// `⌈k / 4⌉`.
    kq: usize,
    data: Vec<i8>,
    /// Per padded column: the weight scale (0 past `n`).
    scales: Vec<f32>,
    /// Per padded column: `128 · Σₖ q[c, k]`, the +128 shift's share of
    /// a `u8 × i8` product.
    shift: Vec<i32>,
    isa: Isa,
}

impl PackedI8 {
    /// Quantises and packs the f32 weight `w` (`n` rows of `k`): per row
    /// `s = max|w| / 127`, `q = round(w / s)` (ties to even).
    pub fn pack(w: &[f32], n: usize, k: usize) -> Result<Self, ShapeError> {
        if w.len() != n * k {
            return Err(ShapeError(format!(
                "weight has {} values, expected {n} × {k}",
                w.len()
            )));
        }
        let mut q = vec![0i8; n * k];
        let mut scales = vec![0f32; n];
        for ((row, qrow), s) in w
            .chunks_exact(k.max(1))
            .zip(q.chunks_exact_mut(k.max(1)))
            .zip(&mut scales)
        {
            *s = quantize_row(row, qrow);
        }
        Self::from_quantized(&q, &scales, n, k)
    }

    /// Packs an already quantised weight: `q` (`n` rows of `k`) with one
    /// scale per row, `w ≈ q · scale` (the layout of a `valor quantize`
    /// folder).
    pub fn from_quantized(
        q: &[i8],
        scales: &[f32],
        n: usize,
        k: usize,
    ) -> Result<Self, ShapeError> {
        if q.len() != n * k || scales.len() != n {
            return Err(ShapeError(format!(
                "quantised weight has {} values and {} scales, expected {n} × {k} and {n}",
                q.len(),
                scales.len()
            )));
        }
        if k > MAX_K {
            return Err(ShapeError(format!(
                "inner dimension {k} exceeds {MAX_K}: the i32 sums could overflow"
            )));
        }
        let kq = k.div_ceil(4).div_ceil(QUADS_ALIGN) * QUADS_ALIGN;
        let panels = n.div_ceil(NR);
        let mut data = vec![0i8; panels * kq * NR * 4];
        let mut pscales = vec![0f32; panels * NR];
        let mut shift = vec![0i32; panels * NR];
        for c in 0..n {
            let (p, cc) = (c / NR, c % NR);
            let row = &q[c * k..(c + 1) * k];
            for (i, &v) in row.iter().enumerate() {
                data[((p * kq + i / 4) * NR + cc) * 4 + i % 4] = v;
            }
            pscales[c] = scales[c];
            shift[c] = 128 * row.iter().map(|&v| i32::from(v)).sum::<i32>();
        }
        Ok(Self {
            n,
            k,
            kq,
            data,
            scales: pscales,
            shift,
            isa: Isa::detect_int8(),
        })
    }

    /// Runs on `isa` instead of the detected one (tests of the fallback);
    /// `None` when this CPU lacks it.
    pub fn with_isa(mut self, isa: Isa) -> Option<Self> {
        (isa.available() && matches!(isa, Isa::Scalar | Isa::Avx512Vnni | Isa::AmxInt8)).then(
            || {
                self.isa = isa;
                self
            },
        )
    }

    /// The instruction set [`linear`](Self::linear) runs on.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Output features `n`.
    pub fn out_features(&self) -> usize {
        self.n
    }

    /// Input features `k`.
    pub fn in_features(&self) -> usize {
        self.k
    }

    /// Bytes held by the packed weight, scales and shifts.
    pub fn bytes(&self) -> usize {
        self.data.len() + 4 * (self.scales.len() + self.shift.len())
    }

    /// `out = x Wᵀ + bias` for `m` rows of `x` (`[m, k]` row-major) into
    /// `out` (`[m, n]`), each row of `x` quantised to int8 with its own
    /// scale. Uses rayon's threads.
    pub fn linear(
        &self,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> Result<(), ShapeError> {
        check_linear(x.len(), m, self.k, self.n, bias, out.len())?;
        self.run(x, m, bias, as_uninit(out));
        Ok(())
    }

    /// [`linear`](Self::linear) into a new `[m, n]` vector, each value
    /// written once by the task that computes it (no zeroed buffer first).
    pub fn linear_new(
        &self,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
    ) -> Result<Vec<f32>, ShapeError> {
        check_linear(x.len(), m, self.k, self.n, bias, m * self.n)?;
        Ok(written(m * self.n, |out| self.run(x, m, bias, out)))
    }

    /// The product into `out` (`[m, n]`, shapes checked), every value
    /// written.
    fn run(&self, x: &[f32], m: usize, bias: Option<&[f32]>, out: &mut [MaybeUninit<f32>]) {
        let (n, k) = (self.n, self.k);
        if crate::empty_product(out, [m, n, k], bias) {
            return;
        }
        let kp = self.kq * 4;
        // AMX takes tasks of whole tile pairs (32 rows; the rows past `m`
        // all 128, their products never read).
        let amx = self.isa == Isa::AmxInt8;
        let per = match amx {
            true => rows_per_task(m).div_ceil(32) * 32,
            false => rows_per_task(m),
        };
        out.par_chunks_mut(per * n)
            .zip(x.par_chunks(per * k))
            .for_each(|(out, x)| {
                let rows = out.len() / n;
                // Activations of this task's rows, shifted to u8 (+128).
                let mut xq = vec![128u8; if amx { rows.div_ceil(32) * 32 } else { rows } * kp];
                let mut sx = vec![0f32; rows];
                for r in 0..rows {
                    sx[r] = quantize_shifted(&x[r * k..(r + 1) * k], &mut xq[r * kp..r * kp + k]);
                }
                #[cfg(target_arch = "x86_64")]
                if amx {
                    self.amx_block(&xq, &sx, rows, bias, out);
                    return;
                }
                self.block(&xq, &sx, rows, bias, out);
            });
    }

    /// [`Self::block`] on AMX: `xq` holds `rows` rows rounded up to
    /// [`AMX_ROWS`].
    #[cfg(target_arch = "x86_64")]
    fn amx_block(
        &self,
        xq: &[u8],
        sx: &[f32],
        rows: usize,
        bias: Option<&[f32]>,
        out: &mut [MaybeUninit<f32>],
    ) {
        let (n, kq) = (self.n, self.kq);
        let kp = kq * 4;
        let mut acc = [0i32; AMX_ROWS * NR];
        for (p, panel) in self.data.chunks_exact(kq * NR * 4).enumerate() {
            let c0 = p * NR;
            let cols = NR.min(n - c0);
            for r0 in (0..rows).step_by(AMX_ROWS) {
                crate::x86::i8_amx_microkernel(&xq[r0 * kp..], kp, panel, kq, &mut acc);
                for (r, acc) in acc
                    .chunks_exact(NR)
                    .enumerate()
                    .take(AMX_ROWS.min(rows - r0))
                {
                    let o = &mut out[(r0 + r) * n + c0..(r0 + r) * n + c0 + cols];
                    self.dequantize(o, acc, sx[r0 + r], c0, bias);
                }
            }
        }
    }

    /// All panels for `rows` quantised rows.
    fn block(
        &self,
        xq: &[u8],
        sx: &[f32],
        rows: usize,
        bias: Option<&[f32]>,
        out: &mut [MaybeUninit<f32>],
    ) {
        let (n, kq) = (self.n, self.kq);
        let kp = kq * 4;
        let panel_len = kq * NR * 4;
        let mut acc = [[0i32; NR]; MR];
        for (p, panel) in self.data.chunks_exact(panel_len).enumerate() {
            let c0 = p * NR;
            let cols = NR.min(n - c0);
            for r0 in (0..rows).step_by(MR) {
                let mr = MR.min(rows - r0);
                let xs = &xq[r0 * kp..(r0 + mr) * kp];
                microkernel(self.isa, mr, xs, kp, panel, kq, &mut acc);
                for (r, acc) in acc.iter().enumerate().take(mr) {
                    let o = &mut out[(r0 + r) * n + c0..(r0 + r) * n + c0 + cols];
                    self.dequantize(o, acc, sx[r0 + r], c0, bias);
                }
            }
        }
    }
}

impl PackedI8 {
    /// One row of a panel's outputs from its i32 sums: `o[c] = (acc[c] −
    /// shift) · (s · scale) + bias` for the columns from `c0` (`+ 0` without
    /// a bias), in one vectorisable pass.
    fn dequantize(
        &self,
        o: &mut [MaybeUninit<f32>],
        acc: &[i32],
        s: f32,
        c0: usize,
        bias: Option<&[f32]>,
    ) {
        let cols = o.len();
        let (shift, scales) = (&self.shift[c0..c0 + cols], &self.scales[c0..c0 + cols]);
        let bias = bias.map(|b| &b[c0..c0 + cols]);
        #[cfg(target_arch = "x86_64")]
        return crate::x86::dequantize(o, acc, s, shift, scales, bias);
        #[cfg(not(target_arch = "x86_64"))]
        dequantize_plain(o, acc, s, shift, scales, bias)
    }
}

/// `o[c] = (acc[c] − shift[c]) · (s · scales[c]) + bias[c]` (`+ 0` without
/// a bias), inlined into each compiled version of [`PackedI8::dequantize`].
#[inline(always)]
pub(crate) fn dequantize_plain(
    o: &mut [MaybeUninit<f32>],
    acc: &[i32],
    s: f32,
    shift: &[i32],
    scales: &[f32],
    bias: Option<&[f32]>,
) {
    let parts = o.iter_mut().zip(acc).zip(shift).zip(scales);
    match bias {
        Some(b) => {
            for ((((o, &a), &sh), &sc), &b) in parts.zip(b) {
                o.write((a - sh) as f32 * (s * sc) + b);
            }
        }
        None => {
            for (((o, &a), &sh), &sc) in parts {
                o.write((a - sh) as f32 * (s * sc) + 0.0);
            }
        }
    }
}

fn microkernel(
    isa: Isa,
    rows: usize,
    xq: &[u8],
    kp: usize,
    panel: &[i8],
    kq: usize,
    acc: &mut [[i32; NR]; MR],
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => crate::x86::i8_microkernel(rows, xq, kp, panel, kq, acc),
        _ => crate::scalar::i8_microkernel(rows, xq, kp, panel, kq, acc),
    }
}

/// [`quantize_row`] with each value shifted by +128 into a `u8` (what the
/// `u8 × i8` products take), the same integers; the loops written so that
/// they vectorise (lanes for the maximum, the integer read from the bits of
/// `t + 1.5·2²³` rather than a saturating cast) and, on x86-64, compiled
/// for AVX-512 where the CPU has it (at SSE2 width the quantisation and
/// the dequantisation were a third of an int8 MiniLM batch on AMX).
fn quantize_shifted(x: &[f32], q: &mut [u8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    return crate::x86::quantize_shifted(x, q);
    #[cfg(not(target_arch = "x86_64"))]
    quantize_shifted_plain(x, q)
}

/// The body of [`quantize_shifted`], inlined into each compiled version.
#[inline(always)]
pub(crate) fn quantize_shifted_plain(x: &[f32], q: &mut [u8]) -> f32 {
    let mut lanes = [0f32; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = l.max(v.abs());
        }
    }
    let amax = lanes
        .iter()
        .chain(chunks.remainder())
        .fold(0f32, |a, &v| a.max(v.abs()));
    if amax == 0.0 || !amax.is_finite() {
        q.fill(128);
        return if amax.is_finite() { 0.0 } else { f32::NAN };
    }
    let scale = amax / QMAX;
    let inv = QMAX / amax;
    const ROUND: f32 = 12_582_912.0;
    let round_bits = ROUND.to_bits() as i32;
    for (d, &v) in q.iter_mut().zip(x) {
        let t = ((v * inv).clamp(-QMAX, QMAX) + ROUND).to_bits() as i32 - round_bits;
        // A NaN activation is 0, as `quantize_row`'s saturating cast makes it.
        let t = if v.is_nan() { 0 } else { t };
        *d = (t + 128) as u8;
    }
    scale
}

/// Quantises `x` into `q` (same length) symmetrically and returns the scale
/// `max|x| / 127` (0 for an all-zero or empty row, whose `q` is 0):
/// `q = round(x / scale)`, ties to even.
pub fn quantize_row(x: &[f32], q: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0f32, |a, &v| a.max(v.abs()));
    if amax == 0.0 || !amax.is_finite() {
        q.fill(0);
        return if amax.is_finite() { 0.0 } else { f32::NAN };
    }
    let scale = amax / QMAX;
    let inv = QMAX / amax;
    // 1.5·2²³: adding and subtracting it rounds |t| < 2²² to the nearest
    // integer, ties to even, in two vectorisable adds (`f32::round` is a
    // libm call per element on baseline x86-64).
    const ROUND: f32 = 12_582_912.0;
    for (d, &v) in q.iter_mut().zip(x) {
        *d = (((v * inv).clamp(-QMAX, QMAX) + ROUND) - ROUND) as i8;
    }
    scale
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Deterministic values in [-1, 1) (SplitMix64).
    pub(crate) fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^= z >> 31;
                (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// The product the kernel must compute, from the same quantised values
    /// in exact integer arithmetic.
    fn reference(x: &[f32], w: &[f32], bias: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut qw = vec![0i8; n * k];
        let sw: Vec<f32> = (0..n)
            .map(|c| quantize_row(&w[c * k..(c + 1) * k], &mut qw[c * k..(c + 1) * k]))
            .collect();
        let mut out = vec![0f32; m * n];
        let mut qx = vec![0i8; k];
        for r in 0..m {
            let sx = quantize_row(&x[r * k..(r + 1) * k], &mut qx);
            for c in 0..n {
                let dot: i64 = (0..k)
                    .map(|i| i64::from(qx[i]) * i64::from(qw[c * k + i]))
                    .sum();
                out[r * n + c] = dot as f32 * (sx * sw[c]) + bias[c];
            }
        }
        out
    }

    fn isas() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx512Vnni, Isa::AmxInt8]
            .into_iter()
            .filter(|i| i.available())
            .collect()
    }

    #[test]
    fn every_isa_matches_the_integer_reference_on_ragged_shapes() {
        for (m, n, k) in [
            (1, 1, 1),
            (0, 5, 3),
            (2, 3, 0),
            (3, 0, 4),
            (1, 15, 17),
            (5, 16, 16),
            (7, 65, 15),
            (17, 129, 33),
            (64, 64, 64),
            (33, 100, 1000),
            (130, 70, 384),
        ] {
            let x = values(m * k, 1 + m as u64);
            let w = values(n * k, 7 + n as u64);
            let bias = values(n, 3);
            let expected = reference(&x, &w, &bias, m, n, k);
            for isa in isas() {
                let packed = PackedI8::pack(&w, n, k).unwrap().with_isa(isa).unwrap();
                let mut out = vec![f32::NAN; m * n];
                packed.linear(&x, m, Some(&bias), &mut out).unwrap();
                // Into a new vector (in debug builds filled with a NaN
                // first, so a value the kernel missed would differ).
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                let new = packed.linear_new(&x, m, Some(&bias)).unwrap();
                assert_eq!(bits(&out), bits(&new), "{isa:?} m={m} n={n} k={k}: new");
                let mut plain = vec![f32::NAN; m * n];
                packed.linear(&x, m, None, &mut plain).unwrap();
                let new = packed.linear_new(&x, m, None).unwrap();
                assert_eq!(
                    bits(&plain),
                    bits(&new),
                    "{isa:?} m={m} n={n} k={k}: no bias"
                );
                for (i, (a, e)) in out.iter().zip(&expected).enumerate() {
                    // The integer sums are exact; only the final f32
                    // scaling may round differently (one multiply).
                    assert!(
                        (a - e).abs() <= 1e-6 * e.abs().max(1.0),
                        "{isa:?} m={m} n={n} k={k} at {i}: {a} vs {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn int8_products_are_close_to_f32() {
        // Documented tolerance: with per-channel weight and per-row
        // activation scales, each product is within ~1% of max|y|.
        let (m, n, k) = (9, 40, 384);
        let x = values(m * k, 11);
        let w = values(n * k, 12);
        let packed = PackedI8::pack(&w, n, k).unwrap();
        let mut out = vec![0f32; m * n];
        packed.linear(&x, m, None, &mut out).unwrap();
        let mut worst = 0f32;
        let mut ymax = 0f32;
        for r in 0..m {
            for c in 0..n {
                let y: f32 = (0..k).map(|i| x[r * k + i] * w[c * k + i]).sum();
                worst = worst.max((y - out[r * n + c]).abs());
                ymax = ymax.max(y.abs());
            }
        }
        assert!(worst <= 0.01 * ymax, "worst {worst} of max {ymax}");
    }

    #[test]
    fn shifted_quantisation_gives_quantize_rows_integers() {
        // Lengths around the 16 lanes, ties (x·127/amax = n + 0.5), a NaN,
        // zeros, an infinity.
        let mut rows: Vec<Vec<f32>> = [1, 15, 16, 17, 100]
            .iter()
            .map(|&n| values(n, n as u64))
            .collect();
        rows.push(
            (0..33)
                .map(|i| (i as f32 + 0.5) / 127.0)
                .chain([1.0])
                .collect(),
        );
        rows.push(vec![0.25, f32::NAN, -1.0, 0.5]);
        rows.push(vec![0.0; 20]);
        rows.push(vec![1.0, f32::INFINITY]);
        for x in rows {
            let mut q = vec![0i8; x.len()];
            let mut u = vec![0u8; x.len()];
            let s = quantize_row(&x, &mut q);
            let t = quantize_shifted(&x, &mut u);
            assert!(s == t || (s.is_nan() && t.is_nan()), "scale {s} vs {t}");
            let shifted: Vec<u8> = q.iter().map(|&v| (i16::from(v) + 128) as u8).collect();
            assert_eq!(u, shifted, "{x:?}");
        }
    }

    #[test]
    fn quantize_row_handles_zero_and_extremes() {
        let mut q = [0i8; 4];
        assert_eq!(quantize_row(&[0.0; 4], &mut q), 0.0);
        assert_eq!(q, [0; 4]);
        let s = quantize_row(&[1.0, -1.0, 0.5, 0.0], &mut q);
        assert_eq!(q, [127, -127, 64, 0]);
        assert!((s - 1.0 / 127.0).abs() < 1e-9);
    }

    #[test]
    fn shapes_are_checked() {
        let p = PackedI8::pack(&[0.0; 6], 2, 3).unwrap();
        let mut out = [0f32; 4];
        assert!(p.linear(&[0.0; 5], 2, None, &mut out).is_err());
        assert!(p.linear(&[0.0; 6], 2, Some(&[0.0]), &mut out).is_err());
        assert!(PackedI8::pack(&[0.0; 5], 2, 3).is_err());
    }
}
