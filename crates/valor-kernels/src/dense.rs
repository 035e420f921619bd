//! The f32 Linear layer `y = x·W + b` as one GEMM call.
//!
//! burn-flex 0.22 runs a Linear as three passes over the output: it
//! allocates a zeroed buffer (`vec![0u8; …]`, which `Bytes` then copies
//! into a 16-byte aligned one: a `memset` and a `memcpy` of every output
//! value), multiplies into it, and adds the bias on one thread. Profiled on
//! MiniLM-L6 inference (b32 × s128, 2 cores), those three were 16% of the
//! forward. Here the output is allocated without zeroing, filled with the
//! bias on every thread, and the product accumulates onto it in the same
//! `gemm` crate call burn-flex makes (`dst := dst + x·W`), so every output
//! value is written twice instead of four times and nothing is copied.
//!
//! The same module has the other f32 products on the `gemm` crate:
//! [`matmul_f32`] (attention's per-head products, one thread each) and
//! [`product_f32`] (a Linear layer's products under autodiff, into an
//! unzeroed buffer).
//!
//! With `x86`, the crate's only `unsafe` code: one private wrapper of the
//! `gemm` call (raw pointers) that the three share, outputs written
//! before they are read (here, and the unzeroed vectors of [`written`] that
//! the packed kernels fill), and the disjoint blocks of [`par_grid`] that
//! the packed f32 kernel's tasks write.
#![allow(unsafe_code)]

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::{ShapeError, check_linear};

/// `out` as the slice of possibly uninitialised values that the packed
/// kernels ([`crate::PackedBf16`], [`crate::PackedI8`]) write their results
/// into, so that [`written`] can hand them a new vector unzeroed.
pub(crate) fn as_uninit(out: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s size, alignment and validity
    // (every bit pattern), and the slice keeps `out`'s length and borrow.
    // What could break `out` is writing an uninitialised value through the
    // result; the kernels only ever `write` computed `f32`s.
    unsafe { &mut *(std::ptr::from_mut::<[f32]>(out) as *mut [MaybeUninit<f32>]) }
}

/// A new vector of `len` values, every one of them written by `write`
/// (the packed kernels' `linear_new`: each task writes every value of its
/// rows, every panel's columns, or the bias where there are no inputs).
/// Nothing zeroes the buffer first: the zeroed allocation (a `memset` of
/// each output on the calling thread while the others wait) was 3.5% of a
/// bf16 MiniLM batch (b32 × s128) on the 2-core AMD EPYC. In debug builds
/// the buffer is first filled with a NaN that no kernel computes (payload
/// `0x3dead`), so a value `write` missed shows in the tests' comparisons.
pub(crate) fn written(len: usize, write: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    if cfg!(debug_assertions) {
        spare.iter_mut().for_each(|v| {
            v.write(f32::from_bits(MISSED));
        });
    }
    write(spare);
    // SAFETY: `write` wrote every one of the first `len` values (see above:
    // its callers cover every row and column of their output, and the debug
    // fill plus the tests comparing with `linear` into an initialised
    // buffer check it).
    unsafe { out.set_len(len) };
    out
}

/// One block of a [`par_grid`] over an `[m, n]` output: rows `r0 .. r0 +
/// rows`, columns `c0 .. c0 + cols`.
pub(crate) struct Block<'a> {
    out: *mut MaybeUninit<f32>,
    n: usize,
    pub(crate) r0: usize,
    pub(crate) rows: usize,
    pub(crate) c0: usize,
    pub(crate) cols: usize,
    _out: std::marker::PhantomData<&'a mut [MaybeUninit<f32>]>,
}

impl Block<'_> {
    /// Columns `c0 .. c0 + cols` of the block's row `r` (`r < rows`),
    /// one row at a time (the borrow of `self`).
    pub(crate) fn row(&mut self, r: usize) -> &mut [MaybeUninit<f32>] {
        assert!(r < self.rows, "row {r} of a block of {}", self.rows);
        // SAFETY: `par_grid` made the block from an output of `m · n`
        // values that outlives it (`'a`), with `r0 + rows ≤ m` and `c0 +
        // cols ≤ n`, so the `cols` values at `(r0 + r) · n + c0` lie in it;
        // no other block of the grid covers them (the blocks are disjoint),
        // and the `&mut self` borrow keeps this row the block's only one.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.out.add((self.r0 + r) * self.n + self.c0),
                self.cols,
            )
        }
    }
}

/// The output pointer, shared by the grid's tasks, each of which writes
/// its own block alone.
struct Shared(*mut MaybeUninit<f32>);
// SAFETY: the tasks of `par_grid` write disjoint blocks through it.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

/// Calls `task` on rayon's threads once per block of the grid that cuts
/// the `[m, n]` output `out` into row blocks of `rows_per` rows and column
/// blocks of `cols_per` columns (the last of each smaller): tasks that
/// split the columns as well as the rows, so that a product of few rows
/// reads each panel of its weight once (a task per rows would read all of
/// them).
pub(crate) fn par_grid(
    out: &mut [MaybeUninit<f32>],
    n: usize,
    rows_per: usize,
    cols_per: usize,
    task: impl Fn(Block<'_>) + Sync,
) {
    assert!(rows_per > 0 && cols_per > 0 && n > 0 && out.len().is_multiple_of(n));
    let m = out.len() / n;
    let (row_blocks, col_blocks) = (m.div_ceil(rows_per), n.div_ceil(cols_per));
    let shared = Shared(out.as_mut_ptr());
    let shared = &shared;
    (0..row_blocks * col_blocks).into_par_iter().for_each(|b| {
        let (r0, c0) = (b / col_blocks * rows_per, b % col_blocks * cols_per);
        task(Block {
            out: shared.0,
            n,
            r0,
            rows: rows_per.min(m - r0),
            c0,
            cols: cols_per.min(n - c0),
            _out: std::marker::PhantomData,
        });
    });
}

/// The bits of the NaN [`written`] fills with in debug builds.
const MISSED: u32 = 0x7fc3_dead;

/// Multiply-adds from which the product runs on every rayon thread (as
/// burn-flex's matmul decides; below it one thread is faster).
const PARALLEL_MIN: usize = 192 * 192 * 192;
/// Output values per bias-fill task.
const FILL_CHUNK: usize = 1 << 16;

/// All rayon threads from [`PARALLEL_MIN`] multiply-adds, one below.
fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MIN {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

/// The one `gemm` call of this module: `dst := lhs · rhs`, or
/// `dst := dst + lhs · rhs` with `accumulate`, for `dst` of `lhs.rows ×
/// rhs.cols` f32 values at row stride `dst_row_stride` (column stride 1).
///
/// # Safety
/// `lhs` and `rhs` read inside their slices (their `check`), `dst` is
/// valid for writes of every `(i, j)` at `i · dst_row_stride + j`, rows do
/// not overlap, it overlaps neither input, and with `accumulate` those
/// values are initialised. Without it `gemm` only reads values it wrote
/// (alpha is zero, so every micro-kernel stores; with an empty inner
/// dimension it stores zeros) and writes every one of them.
unsafe fn gemm_f32(
    dst: *mut f32,
    dst_row_stride: usize,
    accumulate: bool,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    parallelism: gemm::Parallelism,
) {
    let alpha = if accumulate { 1.0f32 } else { 0.0 };
    // SAFETY: the caller's contract above; strides are below `isize::MAX`
    // since each indexes into a slice.
    unsafe {
        gemm::gemm(
            lhs.rows,
            rhs.cols,
            lhs.cols,
            dst,
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            alpha,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `x · w + bias`: `x` is `[m, k]`, `w` is `[k, n]` (burn's `Linear`
/// layout, in × out), both row-major; `bias` is `[n]`. Returns the `[m, n]`
/// output, row-major. The sums are f32 FMAs in the `gemm` crate's order,
/// the bias added first.
pub fn linear_f32(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: Option<&[f32]>,
) -> Result<Vec<f32>, ShapeError> {
    check_linear(x.len(), m, k, n, bias, m * n)?;
    if w.len() != k * n {
        return Err(ShapeError(format!(
            "weight has {} values, expected {k} inputs × {n} outputs",
            w.len()
        )));
    }
    let len = m * n;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    if let Some(rows) = FILL_CHUNK.checked_div(n) {
        let bias = bias.map(|b| &b[..n]);
        out.spare_capacity_mut()[..len]
            .par_chunks_mut(rows.max(1) * n)
            .for_each(|chunk| {
                for row in chunk.chunks_exact_mut(n) {
                    match bias {
                        Some(b) => row.iter_mut().zip(b).for_each(|(o, &v)| {
                            o.write(v);
                        }),
                        None => row.iter_mut().for_each(|o| {
                            o.write(0.0);
                        }),
                    }
                }
            });
    }
    // SAFETY: the loop above wrote every one of the first `len` values
    // (`len` is a multiple of `n`, so the chunks' rows cover them all; with
    // `n == 0`, `len` is 0).
    unsafe { out.set_len(len) };
    if len == 0 || k == 0 {
        return Ok(out);
    }
    let (x, w) = (MatRef::row_major(x, m, k), MatRef::row_major(w, k, n));
    // SAFETY: `x` is `m × k` row-major in a slice of `m · k` values, `w`
    // `k × n` in one of `k · n` (both checked above); `out` holds `m · n`
    // values at row stride `n`, every one initialised above, and is a
    // fresh allocation, so it overlaps neither input.
    unsafe { gemm_f32(out.as_mut_ptr(), n, true, x, w, parallelism(m, n, k)) };
    Ok(out)
}

/// A read-only strided f32 matrix: element `(i, j)` is
/// `data[i · row_stride + j · col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// `rows × cols` values stored row-major in `data`.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The same values read as the transpose (`cols × rows`), no copy.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// That the matrix reads only inside its slice; the error names it
    /// `what`.
    pub(crate) fn check(&self, what: &str) -> Result<(), ShapeError> {
        let len = self.data.len();
        if self.extent() > len {
            return Err(ShapeError(format!(
                "{what} matrix {} × {} at strides {} × {} reads {} values of {len}",
                self.rows,
                self.cols,
                self.row_stride,
                self.col_stride,
                self.extent()
            )));
        }
        Ok(())
    }

    /// One past the largest index the matrix reads (0 when empty).
    fn extent(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            return 0;
        }
        (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride + 1
    }
}

/// `out = lhs · rhs` on the calling thread: `out` is `lhs.rows × rhs.cols`
/// at row stride `out_row_stride` (column stride 1), overwritten. For the
/// many small products of attention (one per sequence and head), which
/// run side by side on rayon's threads and read the heads in place
/// through the strides.
pub fn matmul_f32(
    out: &mut [f32],
    out_row_stride: usize,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
) -> Result<(), ShapeError> {
    check_product(&lhs, &rhs)?;
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    let out_extent = if m == 0 || n == 0 {
        0
    } else {
        (m - 1) * out_row_stride + n
    };
    if out_extent > out.len() || (m > 1 && out_row_stride < n) {
        return Err(ShapeError(format!(
            "output {m} × {n} at row stride {out_row_stride} does not fit {} values",
            out.len()
        )));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        for row in out.chunks_mut(out_row_stride.max(n)).take(m) {
            row[..n].fill(0.0);
        }
        return Ok(());
    }
    // SAFETY: `lhs` and `rhs` read inside their slices (`check_product`
    // above); `out` is written at `i · out_row_stride + j` for `i < m`,
    // `j < n`, within `out_extent <= out.len()` (checked), rows do not
    // overlap (`out_row_stride >= n` when `m > 1`), and `out` is a unique
    // borrow, so it overlaps neither input.
    unsafe {
        gemm_f32(
            out.as_mut_ptr(),
            out_row_stride,
            false,
            lhs,
            rhs,
            gemm::Parallelism::None,
        )
    };
    Ok(())
}

/// `lhs · rhs` into a fresh row-major `lhs.rows × rhs.cols` buffer, on
/// every rayon thread from [`PARALLEL_MIN`] multiply-adds: the `gemm` call
/// burn-flex's 2D matmul makes (the same strides, `dst := lhs · rhs`), so
/// the values are the same bits as `Tensor::matmul` on the flex device,
/// without its zeroed and then copied output buffer. For the products of
/// a Linear layer's backward pass (`dY · Wᵀ`, `Xᵀ · dY`, transposed
/// through the strides).
pub fn product_f32(lhs: MatRef<'_>, rhs: MatRef<'_>) -> Result<Vec<f32>, ShapeError> {
    check_product(&lhs, &rhs)?;
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    let len = m * n;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    if len == 0 {
        return Ok(out);
    }
    // SAFETY: `lhs` and `rhs` read inside their slices (`check_product`
    // above); `out` has capacity for the `m · n` values at row stride `n`
    // and is a fresh allocation, so it overlaps neither input. Without
    // accumulation `gemm` writes every one of them before any read, which
    // makes `set_len` sound.
    unsafe {
        gemm_f32(out.as_mut_ptr(), n, false, lhs, rhs, parallelism(m, n, k));
        out.set_len(len);
    }
    Ok(out)
}

/// That `lhs · rhs` is defined and each reads only inside its slice.
fn check_product(lhs: &MatRef<'_>, rhs: &MatRef<'_>) -> Result<(), ShapeError> {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if rhs.rows != k {
        return Err(ShapeError(format!(
            "product of {m} × {k} and {} × {n}",
            rhs.rows
        )));
    }
    lhs.check("left")?;
    rhs.check("right")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::int8::tests::values;

    /// The product in f64, rounded once.
    fn reference(
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for r in 0..m {
            for c in 0..n {
                let mut s = bias.map_or(0.0, |b| f64::from(b[c]));
                for i in 0..k {
                    s += f64::from(x[r * k + i]) * f64::from(w[i * n + c]);
                }
                out[r * n + c] = s as f32;
            }
        }
        out
    }

    #[test]
    fn matches_the_reference_on_ragged_shapes() {
        // Below and above the parallel threshold, with odd sizes that leave
        // partial micro-kernel tiles in every direction.
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 7),
            (17, 33, 65),
            (64, 384, 384),
            (129, 200, 97),
            (7, 0, 5),
            (0, 4, 3),
        ] {
            let x = values(m * k, 1);
            let w = values(k * n, 2);
            let b = values(n, 3);
            for bias in [Some(b.as_slice()), None] {
                let got = linear_f32(&x, m, k, &w, n, bias).unwrap();
                let want = reference(&x, &w, bias, m, k, n);
                assert_eq!(got.len(), m * n);
                for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                    // f32 sums of k products of values in [-1, 1): within
                    // k ulps of 1 of the exact sum.
                    let tol = 1e-6 * (k as f32 + 1.0);
                    assert!(
                        (g - r).abs() <= tol,
                        "{m}×{k}×{n} bias {}: value {i} is {g}, expected {r}",
                        bias.is_some()
                    );
                }
            }
        }
    }

    #[test]
    fn strided_products_match_the_reference() {
        // Attention's shapes: heads read in place from `[rows, hidden]`
        // (row stride `hidden`), keys transposed through the strides.
        let (rows, hidden, d) = (37, 24, 8);
        let q = values(rows * hidden, 4);
        let k = values(rows * hidden, 5);
        for head in 0..hidden / d {
            let lhs = MatRef {
                data: &q[head * d..],
                rows,
                cols: d,
                row_stride: hidden,
                col_stride: 1,
            };
            let rhs = MatRef {
                data: &k[head * d..],
                rows: d,
                cols: rows,
                row_stride: 1,
                col_stride: hidden,
            };
            // Written into every other row of a wider buffer.
            let stride = rows + 3;
            let mut out = vec![f32::NAN; (rows - 1) * stride + rows];
            matmul_f32(&mut out, stride, lhs, rhs).unwrap();
            for i in 0..rows {
                for j in 0..rows {
                    let want: f64 = (0..d)
                        .map(|c| {
                            f64::from(q[i * hidden + head * d + c])
                                * f64::from(k[j * hidden + head * d + c])
                        })
                        .sum();
                    let got = out[i * stride + j];
                    assert!(
                        (f64::from(got) - want).abs() < 1e-5,
                        "({i}, {j}): {got} vs {want}"
                    );
                }
                // The gaps between rows are untouched.
                if i + 1 < rows {
                    assert!(
                        out[i * stride + rows..(i + 1) * stride]
                            .iter()
                            .all(|x| x.is_nan())
                    );
                }
            }
        }
        // Reading past a slice is an error, not a read.
        let short = MatRef {
            data: &q[..10],
            rows: 3,
            cols: 4,
            row_stride: 4,
            col_stride: 1,
        };
        let mut out = vec![0.0; 9];
        let e = matmul_f32(
            &mut out,
            3,
            short,
            MatRef {
                cols: 3,
                rows: 4,
                ..short
            },
        )
        .unwrap_err();
        assert!(e.0.contains("left matrix 3 × 4"), "{e}");
        let ok = MatRef {
            data: &q[..12],
            ..short
        };
        let e = matmul_f32(
            &mut out[..8],
            3,
            ok,
            MatRef {
                cols: 3,
                rows: 4,
                row_stride: 3,
                ..ok
            },
        )
        .unwrap_err();
        assert!(e.0.contains("does not fit 8"), "{e}");
    }

    #[test]
    fn products_through_transposed_strides_match_the_reference() {
        // A Linear layer's backward: `dY · Wᵀ` and `Xᵀ · dY` with `W`
        // `[k, n]` and `X` `[m, k]` read transposed in place, below and
        // above the parallel threshold, with ragged tiles.
        for &(m, k, n) in &[
            (1, 1, 1),
            (5, 3, 7),
            (129, 200, 97),
            (512, 384, 384),
            (6, 0, 4),
        ] {
            let x = values(m * k, 6);
            let w = values(k * n, 7);
            let dy = values(m * n, 8);
            let dy_ref = MatRef::row_major(&dy, m, n);
            let w_t = MatRef::row_major(&w, k, n).t();
            let x_t = MatRef::row_major(&x, m, k).t();
            let dx = product_f32(dy_ref, w_t).unwrap();
            let dw = product_f32(x_t, dy_ref).unwrap();
            assert_eq!((dx.len(), dw.len()), (m * k, k * n));
            let close = |got: f32, want: f64, terms: usize, what: &str| {
                let tol = 1e-6 * (terms as f64 + 1.0);
                assert!(
                    (f64::from(got) - want).abs() <= tol,
                    "{m}×{k}×{n} {what}: {got} vs {want}"
                );
            };
            for r in 0..m {
                for i in 0..k {
                    let want = (0..n)
                        .map(|c| f64::from(dy[r * n + c]) * f64::from(w[i * n + c]))
                        .sum();
                    close(dx[r * k + i], want, n, "dX");
                }
            }
            for i in 0..k {
                for c in 0..n {
                    let want = (0..m)
                        .map(|r| f64::from(x[r * k + i]) * f64::from(dy[r * n + c]))
                        .sum();
                    close(dw[i * n + c], want, m, "dW");
                }
            }
        }
        // The same bits as a single-threaded product into a zeroed buffer.
        let (m, k, n) = (256, 96, 80);
        let (a, b) = (values(m * k, 9), values(k * n, 10));
        let lhs = MatRef::row_major(&a, m, k);
        let rhs = MatRef::row_major(&b, k, n);
        let mut single = vec![0.0; m * n];
        matmul_f32(&mut single, n, lhs, rhs).unwrap();
        assert_eq!(product_f32(lhs, rhs).unwrap(), single);
        let e = product_f32(lhs, lhs).unwrap_err();
        assert!(e.0.contains("product of 256 × 96 and 256 × 96"), "{e}");
        let e = product_f32(
            MatRef {
                data: &a[..10],
                ..lhs
            },
            rhs,
        )
        .unwrap_err();
        assert!(e.0.contains("left matrix 256 × 96"), "{e}");
    }

    #[test]
    fn wrong_shapes_are_errors() {
        let x = values(6, 1);
        let w = values(12, 2);
        assert!(linear_f32(&x, 2, 3, &w, 4, None).is_ok());
        let e = linear_f32(&x, 2, 3, &w[..11], 4, None).unwrap_err();
        assert!(e.0.contains("weight has 11 values"), "{e}");
        let e = linear_f32(&x[..5], 2, 3, &w, 4, None).unwrap_err();
        assert!(e.0.contains("input has 5 values"), "{e}");
        let e = linear_f32(&x, 2, 3, &w, 4, Some(&[0.0; 3])).unwrap_err();
        assert!(e.0.contains("bias has 3 values"), "{e}");
    }
}
