//! bf16 weights and activations, f32 accumulation.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::dense::{as_uninit, written};
#[cfg(target_arch = "x86_64")]
use crate::x86::AMX_ROWS;
use crate::{Isa, MR, MatRef, NR, ShapeError, check_linear, rows_per_task};

/// The packed pairs are padded to a multiple of this: one AMX tile's depth
/// (16 pairs, 32 bf16 values).
const PAIRS_ALIGN: usize = 16;

/// `x` rounded to bf16 (nearest, ties to even; NaN stays NaN), as bits.
#[inline]
pub fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    let round = 0x7fff + ((bits >> 16) & 1);
    let rounded = (bits.wrapping_add(round) >> 16) as u16;
    let quiet = ((bits >> 16) as u16) | 0x0040;
    // Both computed and one selected (no early return), so loops over
    // activations vectorise: the conversion was 16% of a bf16 MiniLM batch.
    if x.is_nan() { quiet } else { rounded }
}

/// `dst[2i] = f32_to_bf16(a[i])`, `dst[2i + 1] = f32_to_bf16(b[i])`.
#[inline(always)]
pub(crate) fn interleave_plain(a: &[f32], b: &[f32], dst: &mut [u16]) {
    for ((d, &x), &y) in dst.chunks_exact_mut(2).zip(a).zip(b) {
        d[0] = f32_to_bf16(x);
        d[1] = f32_to_bf16(y);
    }
}

/// [`interleave_plain`] at the widest width the CPU has.
fn interleave(a: &[f32], b: &[f32], dst: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    crate::x86::interleave_bf16(a, b, dst);
    #[cfg(not(target_arch = "x86_64"))]
    interleave_plain(a, b, dst);
}

/// Rows `r0 .. r0 + rows` of `x` rounded to bf16 into `dst` at row
/// stride `kp`: row-major rows at AVX-512 width, a transposed source
/// gathered ([`gather_rows`]).
fn round_rows(x: MatRef<'_>, r0: usize, rows: usize, dst: &mut [u16], kp: usize) {
    if x.col_stride != 1 {
        return gather_rows(x, r0, rows, dst, kp, |b| b);
    }
    for r in 0..rows {
        let src = &x.data[(r0 + r) * x.row_stride..][..x.cols];
        let row = &mut dst[r * kp..r * kp + x.cols];
        #[cfg(target_arch = "x86_64")]
        crate::x86::round_to_bf16(src, row);
        #[cfg(not(target_arch = "x86_64"))]
        for (d, &v) in row.iter_mut().zip(src) {
            *d = f32_to_bf16(v);
        }
    }
}

/// [`round_rows`] widened back to f32 (the FMA kernel's operands).
fn round_rows_widened(x: MatRef<'_>, r0: usize, rows: usize, dst: &mut [f32], kp: usize) {
    if x.col_stride != 1 {
        return gather_rows(x, r0, rows, dst, kp, bf16_to_f32);
    }
    for r in 0..rows {
        let src = &x.data[(r0 + r) * x.row_stride..][..x.cols];
        for (d, &v) in dst[r * kp..r * kp + x.cols].iter_mut().zip(src) {
            *d = bf16_to_f32(f32_to_bf16(v));
        }
    }
}

/// Rows `r0 .. r0 + rows` of a strided `x`, rounded and mapped by `to`,
/// gathered in tiles of 16 columns: for a transposed matrix (row stride
/// of one) the 16 cache lines a tile reads serve 16 rows in turn, and each
/// row is written 16 values at a time (one value per row and column in
/// turn wrote rows `kp` apart, 4 KiB at MiniLM's shapes: one cache set).
fn gather_rows<T>(
    x: MatRef<'_>,
    r0: usize,
    rows: usize,
    dst: &mut [T],
    kp: usize,
    to: impl Fn(u16) -> T,
) {
    const TILE: usize = 16;
    for j0 in (0..x.cols).step_by(TILE) {
        let cols = TILE.min(x.cols - j0);
        for r in 0..rows {
            let base = (r0 + r) * x.row_stride + j0 * x.col_stride;
            let row = &mut dst[r * kp + j0..r * kp + j0 + cols];
            for (jj, d) in row.iter_mut().enumerate() {
                *d = to(f32_to_bf16(x.data[base + jj * x.col_stride]));
            }
        }
    }
}

/// The f32 value of bf16 bits (exact).
#[inline]
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// Activations of a block of rows, as the micro-kernel takes them.
#[derive(Clone, Copy)]
enum Acts<'a> {
    Bf16(&'a [u16]),
    /// bf16 values widened to f32.
    F32(&'a [f32]),
}

/// A Linear weight `[n, k]` (out × in, row-major as HF stores it) rounded
/// to bf16 and packed for [`linear`](Self::linear).
///
/// Layout: panel `p` holds columns `p·NR .. p·NR + NR`; within it, pair `h`
/// of the inner dimension holds, per column, `W[c, 2h]` and `W[c, 2h + 1]`
/// (what one 32-bit lane of `vdpbf16ps` multiplies, and one row of an AMX
/// weight tile holds for 16 columns). Columns past `n` and inputs past `k`
/// are zero, and the pairs are padded to a multiple of 16 (one AMX tile's
/// depth) with zeros, which every kernel multiplies by zero activations.
#[derive(Debug, Clone)]
pub struct PackedBf16 {
    n: usize,
    k: usize,
    /// `⌈k / 2⌉` rounded up to a multiple of 16.
    kh: usize,
    data: Vec<u16>,
    isa: Isa,
}

impl PackedBf16 {
    /// Rounds the f32 weight `w` (`n` rows of `k`) to bf16 and packs it.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Result<Self, ShapeError> {
        if w.len() != n * k {
            return Err(ShapeError(format!(
                "weight has {} values, expected {n} × {k}",
                w.len()
            )));
        }
        Self::pack_strided(MatRef::row_major(w, n, k))
    }

    /// [`pack`](Self::pack) for a weight `W` (`n` outputs × `k` inputs)
    /// read through strides, so a `[k, n]` matrix packs as its transpose
    /// (`MatRef::t`) without a copy. Panels pack on rayon's threads: a
    /// weight that changes every training step is packed every step.
    pub fn pack_strided(w: MatRef<'_>) -> Result<Self, ShapeError> {
        w.check("weight")?;
        let (n, k, row_stride, col_stride) = (w.rows, w.cols, w.row_stride, w.col_stride);
        let w = w.data;
        let kh = k.div_ceil(2).div_ceil(PAIRS_ALIGN) * PAIRS_ALIGN;
        let panels = n.div_ceil(NR);
        let mut data = vec![0u16; panels * kh * NR * 2];
        if kh > 0 {
            let zeros = [0f32; NR];
            data.par_chunks_mut(kh * NR * 2)
                .enumerate()
                .for_each(|(p, panel)| {
                    let cols = NR.min(n - p * NR);
                    for h in 0..k.div_ceil(2) {
                        let dst = &mut panel[h * NR * 2..(h * NR + cols) * 2];
                        if row_stride == 1 {
                            // The panel's columns of inputs 2h and 2h + 1
                            // lie side by side (a `[k, n]` matrix): two
                            // runs rounded and interleaved at full width.
                            let run = |i: usize| &w[i * col_stride + p * NR..][..cols];
                            let second = if 2 * h + 1 < k {
                                run(2 * h + 1)
                            } else {
                                &zeros[..cols]
                            };
                            interleave(run(2 * h), second, dst);
                        } else {
                            for (cc, d) in dst.chunks_exact_mut(2).enumerate() {
                                let base = (p * NR + cc) * row_stride;
                                for (j, v) in d.iter_mut().enumerate().take(k - 2 * h) {
                                    *v = f32_to_bf16(w[base + (2 * h + j) * col_stride]);
                                }
                            }
                        }
                    }
                });
        }
        Ok(Self {
            n,
            k,
            kh,
            data,
            isa: Isa::detect_bf16(),
        })
    }

    /// Runs on `isa` instead of the detected one (tests of the fallback);
    /// `None` when this CPU lacks it.
    pub fn with_isa(mut self, isa: Isa) -> Option<Self> {
        (isa.available()
            && matches!(
                isa,
                Isa::Scalar | Isa::Avx512Bf16 | Isa::Avx512Fma | Isa::AmxBf16
            ))
        .then(|| {
            self.isa = isa;
            self
        })
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

    /// Bytes held by the packed weight.
    pub fn bytes(&self) -> usize {
        2 * self.data.len()
    }

    /// `out = bf16(x) bf16(W)ᵀ + bias` with f32 accumulation, for `m` rows
    /// of `x` (`[m, k]` row-major) into `out` (`[m, n]`). Uses rayon's
    /// threads.
    pub fn linear(
        &self,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> Result<(), ShapeError> {
        check_linear(x.len(), m, self.k, self.n, bias, out.len())?;
        self.linear_strided(MatRef::row_major(x, m, self.k), bias, out)
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
        self.linear_strided_new(MatRef::row_major(x, m, self.k), bias)
    }

    /// [`linear_strided`](Self::linear_strided) into a new `[x.rows, n]`
    /// vector, as [`linear_new`](Self::linear_new).
    pub fn linear_strided_new(
        &self,
        x: MatRef<'_>,
        bias: Option<&[f32]>,
    ) -> Result<Vec<f32>, ShapeError> {
        let len = x.rows * self.n;
        self.check_strided(x, bias, len)?;
        Ok(written(len, |out| self.run(x, bias, out)))
    }

    /// [`linear`](Self::linear) for activations read through strides
    /// (`x.rows` rows of `k`): a transposed matrix is rounded to bf16 as
    /// each task gathers its rows, with no f32 copy first (the weight
    /// gradient `Xᵀ·dY` of a training step).
    pub fn linear_strided(
        &self,
        x: MatRef<'_>,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> Result<(), ShapeError> {
        self.check_strided(x, bias, out.len())?;
        self.run(x, bias, as_uninit(out));
        Ok(())
    }

    /// The shapes of a strided product: `x` of `k` columns read inside its
    /// slice, the bias and an output of `out` values.
    fn check_strided(
        &self,
        x: MatRef<'_>,
        bias: Option<&[f32]>,
        out: usize,
    ) -> Result<(), ShapeError> {
        let (n, k, m) = (self.n, self.k, x.rows);
        if x.cols != k {
            return Err(ShapeError(format!(
                "input has {} columns, expected {k} inputs",
                x.cols
            )));
        }
        x.check("input")?;
        check_linear(m * k, m, k, n, bias, out)
    }

    /// The product into `out` (`[x.rows, n]`, shapes checked), every value
    /// written.
    fn run(&self, x: MatRef<'_>, bias: Option<&[f32]>, out: &mut [MaybeUninit<f32>]) {
        let (n, k, m) = (self.n, self.k, x.rows);
        if crate::empty_product(out, [m, n, k], bias) {
            return;
        }
        let kp = self.kh * 2;
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::AmxBf16 {
            // Tasks of whole tile pairs (32 rows), the rows past `m`
            // zero.
            let per = rows_per_task(m).div_ceil(AMX_ROWS) * AMX_ROWS;
            out.par_chunks_mut(per * n)
                .enumerate()
                .for_each(|(task, out)| {
                    let rows = out.len() / n;
                    let mut xb = vec![0u16; rows.div_ceil(AMX_ROWS) * AMX_ROWS * kp];
                    round_rows(x, task * per, rows, &mut xb, kp);
                    self.amx_block(&xb, rows, bias, out);
                });
            return;
        }
        let per = rows_per_task(m);
        out.par_chunks_mut(per * n)
            .enumerate()
            .for_each(|(task, out)| {
                let rows = out.len() / n;
                if self.isa == Isa::Avx512Fma {
                    // The FMA kernel takes the rounded activations as f32.
                    let mut xf = vec![0f32; rows * kp];
                    round_rows_widened(x, task * per, rows, &mut xf, kp);
                    self.block(Acts::F32(&xf), rows, bias, out);
                } else {
                    let mut xb = vec![0u16; rows * kp];
                    round_rows(x, task * per, rows, &mut xb, kp);
                    self.block(Acts::Bf16(&xb), rows, bias, out);
                }
            });
    }

    /// [`Self::block`] on AMX: `xb` holds `rows` rows rounded up to
    /// [`AMX_ROWS`], the rest zero.
    #[cfg(target_arch = "x86_64")]
    fn amx_block(
        &self,
        xb: &[u16],
        rows: usize,
        bias: Option<&[f32]>,
        out: &mut [MaybeUninit<f32>],
    ) {
        let (n, kh) = (self.n, self.kh);
        let kp = kh * 2;
        let mut acc = [0f32; AMX_ROWS * NR];
        for (p, panel) in self.data.chunks_exact(kh * NR * 2).enumerate() {
            let c0 = p * NR;
            let cols = NR.min(n - c0);
            for r0 in (0..rows).step_by(AMX_ROWS) {
                crate::x86::bf16_amx_microkernel(&xb[r0 * kp..], kp, panel, kh, &mut acc);
                for (r, acc) in acc
                    .chunks_exact(NR)
                    .enumerate()
                    .take(AMX_ROWS.min(rows - r0))
                {
                    let o = &mut out[(r0 + r) * n + c0..(r0 + r) * n + c0 + cols];
                    crate::x86::add_bias(o, acc, bias.map(|b| &b[c0..c0 + cols]));
                }
            }
        }
    }

    /// Every panel's columns of every one of `rows` rows of `out`.
    fn block(&self, xs: Acts<'_>, rows: usize, bias: Option<&[f32]>, out: &mut [MaybeUninit<f32>]) {
        let (n, kh) = (self.n, self.kh);
        let kp = kh * 2;
        let panel_len = kh * NR * 2;
        let mut acc = [[0f32; NR]; MR];
        for (p, panel) in self.data.chunks_exact(panel_len).enumerate() {
            let c0 = p * NR;
            let cols = NR.min(n - c0);
            for r0 in (0..rows).step_by(MR) {
                let mr = MR.min(rows - r0);
                let rows_at = r0 * kp..(r0 + mr) * kp;
                match (self.isa, xs) {
                    #[cfg(target_arch = "x86_64")]
                    (Isa::Avx512Bf16, Acts::Bf16(xb)) => {
                        crate::x86::bf16_microkernel(mr, &xb[rows_at], kp, panel, kh, &mut acc)
                    }
                    #[cfg(target_arch = "x86_64")]
                    (Isa::Avx512Fma, Acts::F32(xf)) => {
                        crate::x86::bf16_fma_microkernel(mr, &xf[rows_at], kp, panel, kh, &mut acc)
                    }
                    (_, Acts::Bf16(xb)) => {
                        crate::scalar::bf16_microkernel(mr, &xb[rows_at], kp, panel, kh, &mut acc)
                    }
                    (_, Acts::F32(xf)) => crate::scalar::bf16_f32_microkernel(
                        mr,
                        &xf[rows_at],
                        kp,
                        panel,
                        kh,
                        &mut acc,
                    ),
                }
                for (r, acc) in acc.iter().enumerate().take(mr) {
                    let o = &mut out[(r0 + r) * n + c0..(r0 + r) * n + c0 + cols];
                    let bias = bias.map(|b| &b[c0..c0 + cols]);
                    // At AVX-512 width where the CPU has it: at SSE2 width
                    // this store was ≈ 7% of a bf16 MiniLM batch.
                    #[cfg(target_arch = "x86_64")]
                    crate::x86::add_bias(o, acc, bias);
                    #[cfg(not(target_arch = "x86_64"))]
                    add_bias_plain(o, acc, bias);
                }
            }
        }
    }
}

/// `out[c] = acc[c] + bias[c]` (or `acc[c]` without a bias) over
/// `out.len()` values, inlined into each compiled version of the store
/// that ends a block.
#[inline(always)]
pub(crate) fn add_bias_plain(out: &mut [MaybeUninit<f32>], acc: &[f32], bias: Option<&[f32]>) {
    match bias {
        Some(b) => {
            for ((o, &a), &b) in out.iter_mut().zip(acc).zip(b) {
                o.write(a + b);
            }
        }
        None => {
            for (o, &a) in out.iter_mut().zip(acc) {
                o.write(a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::int8::tests::values;

    /// The product of the bf16-rounded values, in f64.
    fn reference(x: &[f32], w: &[f32], bias: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
        let r = |v: f32| f64::from(bf16_to_f32(f32_to_bf16(v)));
        let mut out = vec![0f64; m * n];
        for i in 0..m {
            for c in 0..n {
                out[i * n + c] = (0..k)
                    .map(|j| r(x[i * k + j]) * r(w[c * k + j]))
                    .sum::<f64>()
                    + f64::from(bias[c]);
            }
        }
        out
    }

    fn isas() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx512Bf16, Isa::Avx512Fma, Isa::AmxBf16]
            .into_iter()
            .filter(|i| i.available())
            .collect()
    }

    #[test]
    fn every_isa_matches_the_rounded_reference_on_ragged_shapes() {
        for (m, n, k) in [
            (1, 1, 1),
            (0, 5, 3),
            (2, 3, 0),
            (1, 15, 17),
            (5, 16, 16),
            (7, 65, 15),
            (17, 129, 33),
            (64, 64, 64),
            (33, 100, 1000),
            (130, 70, 384),
        ] {
            let x = values(m * k, 21 + m as u64);
            let w = values(n * k, 27 + n as u64);
            let bias = values(n, 5);
            let expected = reference(&x, &w, &bias, m, n, k);
            // `x` stored transposed (`[k, m]`), read through the strides.
            let xt: Vec<f32> = (0..k)
                .flat_map(|j| (0..m).map(move |r| (r, j)))
                .map(|(r, j)| x[r * k + j])
                .collect();
            let strided = MatRef::row_major(&xt, k, m).t();
            for isa in isas() {
                let packed = PackedBf16::pack(&w, n, k).unwrap().with_isa(isa).unwrap();
                let mut out = vec![f32::NAN; m * n];
                packed.linear(&x, m, Some(&bias), &mut out).unwrap();
                let mut gathered = vec![f32::NAN; m * n];
                packed
                    .linear_strided(strided, Some(&bias), &mut gathered)
                    .unwrap();
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&out),
                    bits(&gathered),
                    "{isa:?} m={m} n={n} k={k}: transposed input"
                );
                // Into a new vector (in debug builds filled with a NaN
                // first, so a value the kernel missed would differ).
                let new = packed.linear_new(&x, m, Some(&bias)).unwrap();
                assert_eq!(bits(&out), bits(&new), "{isa:?} m={m} n={n} k={k}: new");
                let new = packed.linear_strided_new(strided, Some(&bias)).unwrap();
                assert_eq!(
                    bits(&out),
                    bits(&new),
                    "{isa:?} m={m} n={n} k={k}: strided new"
                );
                let mut plain = vec![f32::NAN; m * n];
                packed.linear(&x, m, None, &mut plain).unwrap();
                let new = packed.linear_new(&x, m, None).unwrap();
                assert_eq!(
                    bits(&plain),
                    bits(&new),
                    "{isa:?} m={m} n={n} k={k}: no bias"
                );
                // Products are exact; f32 accumulation of k terms of
                // magnitude ≤ 1 errs by at most ~k·2⁻²⁴ each step.
                let tol = 1e-6 * (k as f64).max(1.0);
                for (i, (&a, &e)) in out.iter().zip(&expected).enumerate() {
                    assert!(
                        (f64::from(a) - e).abs() <= tol,
                        "{isa:?} m={m} n={n} k={k} at {i}: {a} vs {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn strided_packing_packs_the_transpose_as_packing_a_copy_does() {
        for (n, k) in [(1, 1), (3, 0), (15, 17), (65, 31), (130, 384)] {
            // `t` is `[k, n]` (burn's layout): W[c, i] = t[i · n + c].
            let t = values(n * k, 40 + n as u64);
            let copy: Vec<f32> = (0..n)
                .flat_map(|c| (0..k).map(move |i| (c, i)))
                .map(|(c, i)| t[i * n + c])
                .collect();
            let strided = PackedBf16::pack_strided(MatRef::row_major(&t, k, n).t()).unwrap();
            let packed = PackedBf16::pack(&copy, n, k).unwrap();
            assert_eq!(strided.data, packed.data, "n={n} k={k}");
            assert_eq!((strided.n, strided.k, strided.kh), (n, k, packed.kh));
        }
        let e = PackedBf16::pack_strided(MatRef::row_major(&[0.0; 10], 3, 4).t()).unwrap_err();
        assert!(e.0.contains("reads 12 values of 10"), "{e}");
        // Strided activations are checked as strictly.
        let packed = PackedBf16::pack(&values(12, 1), 3, 4).unwrap();
        let short = MatRef {
            data: &[0.0; 5],
            rows: 2,
            cols: 4,
            row_stride: 1,
            col_stride: 2,
        };
        let e = packed
            .linear_strided(short, None, &mut [0.0; 6])
            .unwrap_err();
        assert!(e.0.contains("input matrix 2 × 4"), "{e}");
        let narrow = MatRef { cols: 3, ..short };
        let e = packed
            .linear_strided(narrow, None, &mut [0.0; 6])
            .unwrap_err();
        assert!(e.0.contains("3 columns, expected 4"), "{e}");
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        // 1 + 2⁻⁸ is halfway between bf16 1 and 1 + 2⁻⁷: ties to even (1).
        assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3·2⁻⁸ is halfway between 1 + 2⁻⁷ and 1 + 2⁻⁶: to even.
        assert_eq!(f32_to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        assert_eq!(bf16_to_f32(f32_to_bf16(f32::INFINITY)), f32::INFINITY);
        assert_eq!(bf16_to_f32(f32_to_bf16(-2.5)), -2.5);
    }
}
