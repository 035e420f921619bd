//! The AVX-512 micro-kernels: every `unsafe` block of the crate but the
//! `gemm` call of `dense`.
//!
//! Reached only through the safe `*_microkernel` functions, which check
//! the CPU's features at run time (`is_x86_feature_detected!`, cached by
//! std) and the slice lengths up front; the `#[target_feature]` kernels
//! behind them read only inside those checked lengths.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use crate::{MR, NR};

/// AVX-512F/BW and VNNI (`vpdpbusd`).
pub(crate) fn has_vnni() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vnni")
}

/// AVX-512F/BW and BF16 (`vdpbf16ps`).
pub(crate) fn has_bf16() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512bf16")
}

/// As [`crate::scalar::i8_microkernel`], on VNNI.
pub(crate) fn i8_microkernel(
    rows: usize,
    xq: &[u8],
    kp: usize,
    panel: &[i8],
    kq: usize,
    acc: &mut [[i32; NR]; MR],
) {
    assert!(
        has_vnni(),
        "VNNI kernel called on a CPU without AVX512-VNNI"
    );
    assert!((1..=MR).contains(&rows) && kp >= kq * 4);
    assert!(xq.len() >= (rows - 1) * kp + kq * 4 && panel.len() >= kq * NR * 4);
    let (x, w, a) = (xq.as_ptr(), panel.as_ptr(), acc.as_mut_ptr().cast::<i32>());
    // SAFETY: the CPU has AVX-512F/BW/VNNI (checked above); the kernel reads
    // row `r < rows` of `xq` at `r·kp .. r·kp + 4·kq` and `panel` at
    // `0 .. kq·NR·4`, both within the lengths asserted above, and writes
    // `rows · NR ≤ MR · NR` i32s of `acc`.
    unsafe {
        match rows {
            1 => i8_kernel::<1>(x, kp, w, kq, a),
            2 => i8_kernel::<2>(x, kp, w, kq, a),
            3 => i8_kernel::<3>(x, kp, w, kq, a),
            _ => i8_kernel::<4>(x, kp, w, kq, a),
        }
    }
}

/// `R` rows × 64 columns of `u8 × i8` sums: per quad of the inner
/// dimension, four 64-byte loads of the panel, one 4-byte broadcast per
/// row, `4·R` `vpdpbusd`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn i8_kernel<const R: usize>(
    x: *const u8,
    kp: usize,
    w: *const i8,
    kq: usize,
    acc: *mut i32,
) {
    let mut c = [[_mm512_setzero_si512(); 4]; R];
    for q in 0..kq {
        // SAFETY (the caller's): `w + q·256 .. + 256` and
        // `x + r·kp + 4q .. + 4` lie inside the checked slices.
        unsafe {
            let wq = w.add(q * NR * 4);
            let b = [
                _mm512_loadu_si512(wq.cast()),
                _mm512_loadu_si512(wq.add(64).cast()),
                _mm512_loadu_si512(wq.add(128).cast()),
                _mm512_loadu_si512(wq.add(192).cast()),
            ];
            for (r, c) in c.iter_mut().enumerate() {
                let xa = _mm512_set1_epi32(x.add(r * kp + q * 4).cast::<i32>().read_unaligned());
                for (c, b) in c.iter_mut().zip(b) {
                    *c = _mm512_dpbusd_epi32(*c, xa, b);
                }
            }
        }
    }
    for (r, c) in c.iter().enumerate() {
        for (j, &c) in c.iter().enumerate() {
            // SAFETY (the caller's): `acc` holds at least `R · NR` i32s.
            unsafe { _mm512_storeu_si512(acc.add(r * NR + j * 16).cast(), c) };
        }
    }
}

/// As [`crate::scalar::bf16_microkernel`], on AVX512-BF16.
pub(crate) fn bf16_microkernel(
    rows: usize,
    xb: &[u16],
    kp: usize,
    panel: &[u16],
    kh: usize,
    acc: &mut [[f32; NR]; MR],
) {
    assert!(
        has_bf16(),
        "BF16 kernel called on a CPU without AVX512-BF16"
    );
    assert!((1..=MR).contains(&rows) && kp >= kh * 2);
    assert!(xb.len() >= (rows - 1) * kp + kh * 2 && panel.len() >= kh * NR * 2);
    let (x, w, a) = (xb.as_ptr(), panel.as_ptr(), acc.as_mut_ptr().cast::<f32>());
    // SAFETY: the CPU has AVX-512F/BW/BF16 (checked above); the kernel reads
    // row `r < rows` of `xb` at `r·kp .. r·kp + 2·kh` and `panel` at
    // `0 .. kh·NR·2`, both within the lengths asserted above, and writes
    // `rows · NR ≤ MR · NR` f32s of `acc`.
    unsafe {
        match rows {
            1 => bf16_kernel::<1>(x, kp, w, kh, a),
            2 => bf16_kernel::<2>(x, kp, w, kh, a),
            3 => bf16_kernel::<3>(x, kp, w, kh, a),
            _ => bf16_kernel::<4>(x, kp, w, kh, a),
        }
    }
}

/// `R` rows × 64 columns of bf16 pair products with f32 accumulation: per
/// pair of the inner dimension, four 64-byte loads of the panel, one
/// 4-byte broadcast per row, `4·R` `vdpbf16ps`.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn bf16_kernel<const R: usize>(
    x: *const u16,
    kp: usize,
    w: *const u16,
    kh: usize,
    acc: *mut f32,
) {
    let mut c = [[_mm512_setzero_ps(); 4]; R];
    for h in 0..kh {
        // SAFETY (the caller's): `w + h·128 .. + 128` u16s and
        // `x + r·kp + 2h .. + 2` lie inside the checked slices. The
        // transmutes reinterpret 64 bytes as 32 bf16 lanes, which every bit
        // pattern is.
        unsafe {
            let wh = w.add(h * NR * 2);
            let load = |o: usize| -> __m512bh {
                std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(wh.add(o).cast()))
            };
            let b = [load(0), load(32), load(64), load(96)];
            for (r, c) in c.iter_mut().enumerate() {
                let pair = x.add(r * kp + h * 2).cast::<i32>().read_unaligned();
                let xa = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(pair));
                for (c, b) in c.iter_mut().zip(b) {
                    *c = _mm512_dpbf16_ps(*c, xa, b);
                }
            }
        }
    }
    for (r, c) in c.iter().enumerate() {
        for (j, &c) in c.iter().enumerate() {
            // SAFETY (the caller's): `acc` holds at least `R · NR` f32s.
            unsafe { _mm512_storeu_ps(acc.add(r * NR + j * 16), c) };
        }
    }
}

/// AVX-512F (FMA on 512-bit registers).
pub(crate) fn has_avx512f() -> bool {
    is_x86_feature_detected!("avx512f")
}

/// As [`crate::scalar::bf16_microkernel`] with the activations given as
/// f32 values (already rounded to bf16) and plain f32 FMAs: each packed
/// 32-bit lane (two bf16 weights) becomes two f32 vectors by a shift and a
/// mask. A bf16 product is exact in f32, so this is the bf16 arithmetic
/// at the FMA units' rate (on CPUs where `vdpbf16ps` is slower than two
/// FMAs, or absent).
pub(crate) fn bf16_fma_microkernel(
    rows: usize,
    xf: &[f32],
    kp: usize,
    panel: &[u16],
    kh: usize,
    acc: &mut [[f32; NR]; MR],
) {
    assert!(
        has_avx512f(),
        "AVX-512 kernel called on a CPU without AVX-512F"
    );
    assert!((1..=MR).contains(&rows) && kp >= kh * 2);
    assert!(xf.len() >= (rows - 1) * kp + kh * 2 && panel.len() >= kh * NR * 2);
    let (x, w, a) = (xf.as_ptr(), panel.as_ptr(), acc.as_mut_ptr().cast::<f32>());
    // SAFETY: the CPU has AVX-512F (checked above); the kernel reads row
    // `r < rows` of `xf` at `r·kp .. r·kp + 2·kh` and `panel` at
    // `0 .. kh·NR·2`, both within the lengths asserted above, and writes
    // `rows · NR ≤ MR · NR` f32s of `acc`.
    unsafe {
        match rows {
            1 => bf16_fma_kernel::<1>(x, kp, w, kh, a),
            2 => bf16_fma_kernel::<2>(x, kp, w, kh, a),
            3 => bf16_fma_kernel::<3>(x, kp, w, kh, a),
            _ => bf16_fma_kernel::<4>(x, kp, w, kh, a),
        }
    }
}

/// `R` rows × 64 columns: per pair of the inner dimension, four 64-byte
/// loads of the panel split into eight f32 vectors, two broadcasts per row,
/// `8·R` FMAs.
#[target_feature(enable = "avx512f")]
unsafe fn bf16_fma_kernel<const R: usize>(
    x: *const f32,
    kp: usize,
    w: *const u16,
    kh: usize,
    acc: *mut f32,
) {
    let mut c = [[_mm512_setzero_ps(); 4]; R];
    let high = _mm512_set1_epi32(0xffff_0000_u32 as i32);
    for h in 0..kh {
        // SAFETY (the caller's): `w + h·128 .. + 128` u16s and
        // `x + r·kp + 2h .. + 2` lie inside the checked slices.
        unsafe {
            let wh = w.add(h * NR * 2);
            let mut even = [_mm512_setzero_ps(); 4];
            let mut odd = [_mm512_setzero_ps(); 4];
            for j in 0..4 {
                let v = _mm512_loadu_si512(wh.add(32 * j).cast());
                even[j] = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v));
                odd[j] = _mm512_castsi512_ps(_mm512_and_si512(v, high));
            }
            for (r, c) in c.iter_mut().enumerate() {
                let x0 = _mm512_set1_ps(*x.add(r * kp + h * 2));
                let x1 = _mm512_set1_ps(*x.add(r * kp + h * 2 + 1));
                for j in 0..4 {
                    c[j] = _mm512_fmadd_ps(x0, even[j], c[j]);
                    c[j] = _mm512_fmadd_ps(x1, odd[j], c[j]);
                }
            }
        }
    }
    for (r, c) in c.iter().enumerate() {
        for (j, &c) in c.iter().enumerate() {
            // SAFETY (the caller's): `acc` holds at least `R · NR` f32s.
            unsafe { _mm512_storeu_ps(acc.add(r * NR + j * 16), c) };
        }
    }
}
