//! The fallback micro-kernels: plain loops over the packed layouts, for
//! every CPU. Same inputs and outputs as the `x86` ones.

use crate::bf16::bf16_to_f32;
use crate::{F32_MR, MR, NR};

/// `acc[r][c] = Σ_q Σ_j xq[r·kp + 4q + j] · panel[(q·NR + c)·4 + j]` for
/// `r < rows` (u8 × i8, exact in i32).
pub(crate) fn i8_microkernel(
    rows: usize,
    xq: &[u8],
    kp: usize,
    panel: &[i8],
    kq: usize,
    acc: &mut [[i32; NR]; MR],
) {
    for (r, acc) in acc.iter_mut().enumerate().take(rows) {
        acc.fill(0);
        let x = &xq[r * kp..r * kp + kq * 4];
        for (xs, ws) in x.chunks_exact(4).zip(panel.chunks_exact(NR * 4)) {
            for (a, w) in acc.iter_mut().zip(ws.chunks_exact(4)) {
                *a += i32::from(xs[0]) * i32::from(w[0])
                    + i32::from(xs[1]) * i32::from(w[1])
                    + i32::from(xs[2]) * i32::from(w[2])
                    + i32::from(xs[3]) * i32::from(w[3]);
            }
        }
    }
}

/// `acc[r][c] = Σ_h x[r·kp + 2h]·w[(h·NR + c)·2] + x[r·kp + 2h + 1]·w[(h·NR + c)·2 + 1]`
/// for `r < rows`, bf16 values, f32 products and sums.
pub(crate) fn bf16_microkernel(
    rows: usize,
    xb: &[u16],
    kp: usize,
    panel: &[u16],
    kh: usize,
    acc: &mut [[f32; NR]; MR],
) {
    for (r, acc) in acc.iter_mut().enumerate().take(rows) {
        acc.fill(0.0);
        let x = &xb[r * kp..r * kp + kh * 2];
        for (xs, ws) in x.chunks_exact(2).zip(panel.chunks_exact(NR * 2)) {
            let (x0, x1) = (bf16_to_f32(xs[0]), bf16_to_f32(xs[1]));
            for (a, w) in acc.iter_mut().zip(ws.chunks_exact(2)) {
                *a += x0 * bf16_to_f32(w[0]) + x1 * bf16_to_f32(w[1]);
            }
        }
    }
}

/// As [`bf16_microkernel`] with the activations given as f32 values
/// (already rounded to bf16).
pub(crate) fn bf16_f32_microkernel(
    rows: usize,
    xf: &[f32],
    kp: usize,
    panel: &[u16],
    kh: usize,
    acc: &mut [[f32; NR]; MR],
) {
    for (r, acc) in acc.iter_mut().enumerate().take(rows) {
        acc.fill(0.0);
        let x = &xf[r * kp..r * kp + kh * 2];
        for (xs, ws) in x.chunks_exact(2).zip(panel.chunks_exact(NR * 2)) {
            for (a, w) in acc.iter_mut().zip(ws.chunks_exact(2)) {
                *a += xs[0] * bf16_to_f32(w[0]) + xs[1] * bf16_to_f32(w[1]);
            }
        }
    }
}

/// `acc[r][c] = Σ_i x[r·xs + i] · panel[i·NR + c]` for `r < rows`, f32
/// products and sums (a [`crate::PackedF32`] panel).
pub(crate) fn f32_microkernel(
    rows: usize,
    x: &[f32],
    xs: usize,
    panel: &[f32],
    k: usize,
    acc: &mut [[f32; NR]; F32_MR],
) {
    for (r, acc) in acc.iter_mut().enumerate().take(rows) {
        acc.fill(0.0);
        let x = &x[r * xs..r * xs + k];
        for (&xi, ws) in x.iter().zip(panel.chunks_exact(NR)) {
            for (a, &w) in acc.iter_mut().zip(ws) {
                *a += xi * w;
            }
        }
    }
}
