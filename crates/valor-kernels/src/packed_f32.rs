//! f32 weights packed once, for inference.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::dense::{Block, par_grid, written};
use crate::{F32_MR, Isa, MatRef, NR, ShapeError, check_linear};

/// A Linear weight `[n, k]` (out × in) packed in f32 for
/// [`linear_new`](Self::linear_new): the same values and products as
/// [`crate::linear_f32`], without the `gemm` crate's packing of the weight
/// at every call.
///
/// That packing is the cost of a product of few rows: the `gemm` crate
/// lays out the weight's panels anew on each call (and on each thread),
/// which was 17% of a one-sentence MiniLM forward (s128) on the 2-core AMD
/// EPYC, against 3% at 32 sentences, where the same weight serves 32 times
/// the rows.
///
/// Layout: panel `p` holds columns `p·NR .. p·NR + NR`, input by input
/// (`k` rows of `NR` values, columns past `n` zero).
#[derive(Debug, Clone)]
pub struct PackedF32 {
    n: usize,
    k: usize,
    data: Vec<f32>,
    isa: Isa,
}

impl PackedF32 {
    /// Packs the f32 weight `w` (`n` rows of `k`).
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
    /// read through strides: burn's `[k, n]` Linear weight packs as its
    /// transpose (`MatRef::t`), each panel row a copy of one run.
    pub fn pack_strided(w: MatRef<'_>) -> Result<Self, ShapeError> {
        w.check("weight")?;
        let (n, k) = (w.rows, w.cols);
        let mut data = vec![0f32; n.div_ceil(NR) * k * NR];
        if k > 0 {
            data.par_chunks_mut(k * NR)
                .enumerate()
                .for_each(|(p, panel)| {
                    let cols = NR.min(n - p * NR);
                    for (i, dst) in panel.chunks_exact_mut(NR).enumerate() {
                        let at = p * NR * w.row_stride + i * w.col_stride;
                        if w.row_stride == 1 {
                            dst[..cols].copy_from_slice(&w.data[at..at + cols]);
                        } else {
                            for (c, d) in dst[..cols].iter_mut().enumerate() {
                                *d = w.data[at + c * w.row_stride];
                            }
                        }
                    }
                });
        }
        Ok(Self {
            n,
            k,
            data,
            isa: Isa::detect_f32(),
        })
    }

    /// The packed weight of `Wᵀ` (`k` outputs × `n` inputs), from this
    /// one's values: for `dY · W`, the input gradient of a frozen layer
    /// (`x Wᵀ` forward).
    pub fn transposed(&self) -> PackedF32 {
        let (n, k) = (self.n, self.k);
        let mut data = vec![0f32; k.div_ceil(NR) * n * NR];
        if n > 0 {
            data.par_chunks_mut(n * NR)
                .enumerate()
                .for_each(|(p, panel)| {
                    // Panel `p` of `Wᵀ`: its columns are inputs `p·NR ..`
                    // of `W`, its rows `W`'s outputs `c`.
                    let cols = NR.min(k - p * NR);
                    for (c, dst) in panel.chunks_exact_mut(NR).enumerate() {
                        let src = &self.data[c / NR * k * NR + c % NR..];
                        for (j, d) in dst[..cols].iter_mut().enumerate() {
                            *d = src[(p * NR + j) * NR];
                        }
                    }
                });
        }
        PackedF32 {
            n: k,
            k: n,
            data,
            isa: self.isa,
        }
    }

    /// Runs on `isa` instead of the detected one (tests of the fallback);
    /// `None` when this CPU lacks it or it is not an f32 kernel.
    pub fn with_isa(mut self, isa: Isa) -> Option<Self> {
        (isa.available() && matches!(isa, Isa::Scalar | Isa::Avx512Fma)).then(|| {
            self.isa = isa;
            self
        })
    }

    /// Output features `n`.
    pub fn out_features(&self) -> usize {
        self.n
    }

    /// Input features `k`.
    pub fn in_features(&self) -> usize {
        self.k
    }

    /// `x Wᵀ + bias` for `m` rows of `x` (row-major, `k` values each), into
    /// a new vector that the product writes once (no zeroing first).
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
        let (rows_per, cols_per) = grid(m, n);
        par_grid(out, n, rows_per, cols_per, |block| {
            self.block(x, bias, block);
        });
    }

    /// Every panel of `block`'s columns for every one of its rows, a group
    /// of [`F32_MR`] rows after another within a panel (the panel stays in
    /// L2 while the rows go by).
    fn block(&self, x: &[f32], bias: Option<&[f32]>, mut b: Block<'_>) {
        let (k, first) = (self.k, b.c0);
        let mut acc = [[0f32; NR]; F32_MR];
        for c0 in (b.c0..b.c0 + b.cols).step_by(NR) {
            let panel = &self.data[c0 / NR * k * NR..][..k * NR];
            let cols = NR.min(b.c0 + b.cols - c0);
            let bias = bias.map(|bias| &bias[c0..c0 + cols]);
            for r0 in (0..b.rows).step_by(F32_MR) {
                let rows = F32_MR.min(b.rows - r0);
                let xr = &x[(b.r0 + r0) * k..];
                match self.isa {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512Fma => crate::x86::f32_microkernel(rows, xr, k, panel, k, &mut acc),
                    _ => crate::scalar::f32_microkernel(rows, xr, k, panel, k, &mut acc),
                }
                for (r, acc) in acc.iter().enumerate().take(rows) {
                    let row = &mut b.row(r0 + r)[c0 - first..][..cols];
                    #[cfg(target_arch = "x86_64")]
                    crate::x86::add_bias(row, acc, bias);
                    #[cfg(not(target_arch = "x86_64"))]
                    crate::bf16::add_bias_plain(row, acc, bias);
                }
            }
        }
    }
}

/// The grid of tasks for `m` rows × `n` columns: row blocks of at most 64
/// rows (their inputs stay in L2), and, where that makes fewer than four
/// tasks per thread, column blocks of whole panels as well, so that every
/// thread has work and each panel is read by as few tasks as that allows.
fn grid(m: usize, n: usize) -> (usize, usize) {
    let threads = rayon::current_num_threads().max(1);
    let rows_per = m.div_ceil(m.div_ceil(64));
    let row_blocks = m.div_ceil(rows_per);
    let panels = n.div_ceil(NR);
    let col_blocks = (threads * 4).div_ceil(row_blocks).clamp(1, panels);
    (rows_per, panels.div_ceil(col_blocks) * NR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::int8::tests::values;

    fn reference(x: &[f32], w: &[f32], bias: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
        let mut out = vec![0f64; m * n];
        for r in 0..m {
            for c in 0..n {
                out[r * n + c] = (0..k)
                    .map(|i| f64::from(x[r * k + i]) * f64::from(w[c * k + i]))
                    .sum::<f64>()
                    + f64::from(bias[c]);
            }
        }
        out
    }

    /// Every kernel this CPU has against an f64 reference, on shapes
    /// around the panel width and the row group, with and without a bias,
    /// and a weight packed through strides (burn's `[k, n]`) packs as the
    /// row-major copy does.
    #[test]
    fn every_isa_matches_the_reference_on_ragged_shapes() {
        let shapes = [
            (1, 1, 1),
            (1, 64, 384),
            (5, 63, 17),
            (6, 65, 33),
            (7, 130, 64),
            (64, 200, 9),
            (65, 64, 40),
            (131, 70, 21),
            (3, 5, 0),
        ];
        for (m, n, k) in shapes {
            let x = values(m * k, 1);
            let w = values(n * k, 2);
            let bias = values(n, 3);
            let expected = reference(&x, &w, &bias, m, n, k);
            let mut wt = vec![0f32; n * k];
            for c in 0..n {
                for i in 0..k {
                    wt[i * n + c] = w[c * k + i];
                }
            }
            let strided = PackedF32::pack_strided(MatRef::row_major(&wt, k, n).t()).unwrap();
            let packed = PackedF32::pack(&w, n, k).unwrap();
            assert_eq!(
                strided.data, packed.data,
                "m={m} n={n} k={k}: strided packing"
            );
            for isa in [Isa::Scalar, Isa::Avx512Fma] {
                let Some(p) = packed.clone().with_isa(isa) else {
                    continue;
                };
                let out = p.linear_new(&x, m, Some(&bias)).unwrap();
                assert_eq!(out.len(), m * n);
                for (i, (&a, &e)) in out.iter().zip(&expected).enumerate() {
                    let tol = 1e-5 * (1.0 + e.abs()) * (k as f64).sqrt().max(1.0);
                    assert!(
                        (f64::from(a) - e).abs() <= tol,
                        "{isa:?} m={m} n={n} k={k} at {i}: {a} vs {e}"
                    );
                }
                let no_bias = p.linear_new(&x, m, None).unwrap();
                for (r, row) in no_bias.chunks(n.max(1)).enumerate() {
                    for (c, &v) in row.iter().enumerate() {
                        assert_eq!(
                            (v + bias[c]).to_bits(),
                            out[r * n + c].to_bits(),
                            "{isa:?} m={m} n={n} k={k}: no bias at ({r}, {c})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_transposed_weight_is_the_packed_transpose() {
        for (n, k) in [(1, 1), (63, 17), (65, 130), (200, 64), (5, 0), (0, 3)] {
            let w = values(n * k, 4);
            let packed = PackedF32::pack(&w, n, k).unwrap();
            let t = PackedF32::pack_strided(MatRef::row_major(&w, n, k).t()).unwrap();
            let transposed = packed.transposed();
            assert_eq!((transposed.n, transposed.k), (k, n));
            assert_eq!(transposed.data, t.data, "n={n} k={k}");
        }
    }

    #[test]
    fn wrong_shapes_are_errors() {
        let p = PackedF32::pack(&values(12, 1), 3, 4).unwrap();
        assert!(PackedF32::pack(&values(11, 1), 3, 4).is_err());
        assert!(p.linear_new(&values(7, 1), 2, None).is_err());
        assert!(p.linear_new(&values(8, 1), 2, Some(&[0.0; 2])).is_err());
        assert_eq!(p.linear_new(&values(8, 1), 2, None).unwrap().len(), 6);
    }
}
