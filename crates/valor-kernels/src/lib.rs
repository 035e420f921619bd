//! Matrix products for inference on the CPU: the products of a Linear layer
//! `y = x Wᵀ + b`, in f32 ([`linear_f32`]: one `gemm` crate call onto the
//! bias, no zeroing, no copies) or with `W` packed once in f32, int8 or
//! bf16.
//!
//! Owns: the f32 Linear ([`linear_f32`]); packing a row-major `[out, in]`
//! f32 weight (HF/PyTorch layout) into panels of [`NR`] output columns
//! ([`PackedF32`], [`PackedI8`], [`PackedBf16`]); the products themselves
//! ([`PackedF32::linear_new`], [`PackedI8::linear`],
//! [`PackedBf16::linear`]), blocked over rows and panels and split across
//! rayon's threads; the choice of instruction set at run time ([`Isa`]).
//!
//! **f32** ([`PackedF32`]): the weight laid out once in the panels its
//! AVX-512F micro-kernel reads (6 rows × 64 columns, FMAs), so a product
//! of few rows does not pay the `gemm` crate's packing of the weight at
//! every call; the tasks split the columns as well as the rows when there
//! are few rows ([`Isa::detect_f32`]: AVX-512F, else [`Isa::Scalar`], and
//! callers keep [`linear_f32`] on such CPUs).
//!
//! Does not know about: tensors, devices, burn, models. Callers hand over
//! plain `f32` slices.
//!
//! **int8** ([`PackedI8`]): weights symmetric int8 with one f32 scale per
//! output channel (`q = round(w / s)`, `s = max|w_row| / 127`, as PyTorch's
//! `quantize_per_channel` with `qint8` and zero point 0); activations
//! quantised dynamically, symmetric int8 with one scale per row (PyTorch's
//! `quantize_dynamic` uses one affine scale per tensor; one per row is at
//! least as accurate and keeps rows independent of their batch). Products
//! `u8 × i8 → i32` on AMX tiles (`TDPBUSD`, where the CPU has AMX-INT8 and
//! Linux grants the tile state) or AVX512-VNNI (`vpdpbusd`), with the activation shifted
//! by +128 into `u8` and `128 · Σₖ q_w` (kept per column at packing)
//! subtracted after; integer arithmetic is exact, so every instruction set
//! gives bit-identical results.
//!
//! **bf16** ([`PackedBf16`]): weights rounded to bf16 (nearest, ties to
//! even), activations rounded to bf16 per call, products with f32
//! accumulation, which is what PyTorch's `autocast(dtype=bfloat16)` does
//! for a Linear on the CPU: on AMX tiles (`TDPBF16PS`, where the CPU has
//! AMX-BF16 and Linux grants this process the tile state: the default
//! there), on AVX512-BF16 `vdpbf16ps` (the default on AMD CPUs that have
//! it: twice as fast as the FMA kernel on the Zen 4 EPYC measured) or on
//! AVX-512F FMAs of the bf16 values widened to f32 (the default elsewhere:
//! faster than `vdpbf16ps` on the Xeon measured; see
//! [`Isa::detect_bf16`]). Every kernel forms the
//! same products (a bf16 × bf16 product is exact in f32); only the order
//! of the f32 additions differs.
//!
//! The `unsafe` code is in two private modules: the intrinsics and AMX
//! assembly in `x86`, reached only after [`Isa::detect_int8`] or
//! [`Isa::detect_bf16`] found the features at run time, and
//! the `gemm` call and the uninitialised outputs of `dense` (its own, and
//! the new vectors the packed kernels' `linear_new` write into, and the
//! disjoint output blocks the f32 kernel's tasks write through one
//! pointer); each block says why it is sound. [`Isa::Scalar`] runs everywhere and can be forced
//! (`VALOR_KERNELS=scalar`) to test the fallback; `VALOR_KERNELS=dpbf16`
//! picks `vdpbf16ps` for bf16, `VALOR_KERNELS=fma` the FMA kernel,
//! `VALOR_KERNELS=vnni` VNNI for int8.

mod bf16;
mod dense;
mod int8;
mod packed_f32;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::mem::MaybeUninit;

pub use bf16::{PackedBf16, bf16_to_f32, f32_to_bf16};
pub use dense::{MatRef, linear_f32, matmul_f32, product_f32};
pub use int8::{PackedI8, quantize_row};
pub use packed_f32::PackedF32;

/// Output columns per packed panel: four 16-lane AVX-512 registers.
pub const NR: usize = 64;
/// Rows per micro-kernel call.
pub const MR: usize = 4;
/// Rows per f32 micro-kernel call ([`PackedF32`]): six broadcasts against
/// four panel vectors, 24 accumulators.
pub const F32_MR: usize = 6;

/// The environment variable that forces [`Isa::Scalar`] when set to
/// `scalar` (tests of the fallback, comparisons), or for bf16 `vdpbf16ps`
/// when set to `dpbf16` and the AVX-512 FMA kernel (not AMX) when set to
/// `fma`, for int8 AVX512-VNNI (not AMX) when set to `vnni`.
pub const KERNELS_ENV: &str = "VALOR_KERNELS";

/// An instruction set a kernel runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust loops: every CPU.
    Scalar,
    /// AVX-512F/BW with VNNI (`vpdpbusd`), for int8.
    Avx512Vnni,
    /// AVX-512F/BW with BF16 (`vdpbf16ps`), for bf16.
    Avx512Bf16,
    /// AVX-512F FMAs on bf16 values widened to f32, for bf16.
    Avx512Fma,
    /// AMX tiles (`TDPBF16PS`), for bf16.
    AmxBf16,
    /// AMX tiles (`TDPBUSD`), for int8.
    AmxInt8,
}

impl Isa {
    /// The best instruction set this CPU has for int8 products: AMX tiles
    /// where the CPU has AMX-INT8 and Linux grants the tile state, else
    /// AVX512-VNNI, unless [`KERNELS_ENV`] is `scalar` (or `vnni`: VNNI even
    /// with AMX). Every one gives the same integers.
    pub fn detect_int8() -> Isa {
        if forced_scalar() {
            return Isa::Scalar;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let vnni = std::env::var(KERNELS_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("vnni"));
            if !vnni && x86::has_amx_int8() {
                return Isa::AmxInt8;
            }
            if x86::has_vnni() {
                return Isa::Avx512Vnni;
            }
        }
        Isa::Scalar
    }

    /// The instruction set for bf16 products: AMX tiles where the CPU has
    /// AMX-BF16 and Linux grants the tile state; else AVX512-BF16
    /// `vdpbf16ps` on AMD CPUs that have it; else AVX-512F FMAs on widened
    /// bf16 values where the CPU has AVX-512; unless [`KERNELS_ENV`] is
    /// `scalar`, `fma` (the FMA kernel even with AMX or `vdpbf16ps`) or
    /// `dpbf16` (`vdpbf16ps` wherever the CPU has AVX512-BF16).
    ///
    /// Which AVX-512 kernel is faster depends on the core: on a Sapphire
    /// Rapids-class Xeon the FMA kernel ran 1.5× faster than `vdpbf16ps`
    /// (which issues at half the FMA rate there: 131 against 81 GFLOP/s on
    /// 64×384·384, 2 threads), while on an AMD EPYC (Zen 4) `vdpbf16ps`,
    /// two multiply-adds per lane at the FMA's rate, ran 2.0× faster than
    /// the FMA kernel (2048³ on 2 threads: 41.9 against 82.4 ms). AMX,
    /// where the VM exposes it, runs several times faster than either. The
    /// choice is fixed per machine (no timing at run time), so one machine
    /// gives the same bits from run to run.
    pub fn detect_bf16() -> Isa {
        if forced_scalar() {
            return Isa::Scalar;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let forced =
                |name: &str| std::env::var(KERNELS_ENV).is_ok_and(|v| v.eq_ignore_ascii_case(name));
            if forced("dpbf16") && x86::has_bf16() {
                return Isa::Avx512Bf16;
            }
            if !forced("fma") && x86::has_amx_bf16() {
                return Isa::AmxBf16;
            }
            if !forced("fma") && x86::has_bf16() && x86::is_amd() {
                return Isa::Avx512Bf16;
            }
            if x86::has_avx512f() {
                return Isa::Avx512Fma;
            }
        }
        Isa::Scalar
    }

    /// The instruction set for f32 products of a [`PackedF32`] weight:
    /// AVX-512F FMAs where the CPU has them, unless [`KERNELS_ENV`] is
    /// `scalar`; else [`Isa::Scalar`] (callers keep [`linear_f32`] there,
    /// whose `gemm` crate has AVX2 kernels).
    pub fn detect_f32() -> Isa {
        if forced_scalar() {
            return Isa::Scalar;
        }
        #[cfg(target_arch = "x86_64")]
        if x86::has_avx512f() {
            return Isa::Avx512Fma;
        }
        Isa::Scalar
    }

    /// Whether this CPU can run `self` (always true for [`Isa::Scalar`]).
    pub fn available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => x86::has_vnni(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Bf16 => x86::has_bf16(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Fma => x86::has_avx512f(),
            #[cfg(target_arch = "x86_64")]
            Isa::AmxBf16 => x86::has_amx_bf16(),
            #[cfg(target_arch = "x86_64")]
            Isa::AmxInt8 => x86::has_amx_int8(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// A short name (`scalar`, `avx512-vnni`, `avx512-bf16`, `avx512-fma`,
    /// `amx-bf16`, `amx-int8`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx512Vnni => "avx512-vnni",
            Isa::Avx512Bf16 => "avx512-bf16",
            Isa::Avx512Fma => "avx512-fma",
            Isa::AmxBf16 => "amx-bf16",
            Isa::AmxInt8 => "amx-int8",
        }
    }
}

fn forced_scalar() -> bool {
    std::env::var(KERNELS_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("scalar"))
}

/// A wrong shape handed to a kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError(pub String);

impl std::fmt::Display for ShapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ShapeError {}

/// Rows per parallel task for `m` rows: small enough that both of two
/// threads get work on one short sequence, large enough (≤ 64) that a
/// task's activations stay in L2 while it walks every panel.
pub(crate) fn rows_per_task(m: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let per = m.div_ceil(threads * 4).div_ceil(MR) * MR;
    per.clamp(MR, 64)
}

pub(crate) fn check_linear(
    x: usize,
    m: usize,
    k: usize,
    n: usize,
    bias: Option<&[f32]>,
    out: usize,
) -> Result<(), ShapeError> {
    if x != m * k {
        return Err(ShapeError(format!(
            "input has {x} values, expected {m} rows × {k} inputs"
        )));
    }
    if out != m * n {
        return Err(ShapeError(format!(
            "output has {out} values, expected {m} rows × {n} outputs"
        )));
    }
    if let Some(b) = bias
        && b.len() != n
    {
        return Err(ShapeError(format!(
            "bias has {} values, expected {n}",
            b.len()
        )));
    }
    Ok(())
}

/// Whether a packed product of `m` rows × `n` outputs × `k` inputs into
/// `out` is done before any kernel runs: nothing to write (`m` or `n`
/// zero), or, with no inputs, every row the bias ([`fill_bias`]).
pub(crate) fn empty_product(
    out: &mut [MaybeUninit<f32>],
    [m, n, k]: [usize; 3],
    bias: Option<&[f32]>,
) -> bool {
    if m == 0 || n == 0 {
        return true;
    }
    if k == 0 {
        fill_bias(out, n, bias);
        return true;
    }
    false
}

/// `out` rows = `bias` (zeros without one): the product of an empty inner
/// dimension.
pub(crate) fn fill_bias(out: &mut [MaybeUninit<f32>], n: usize, bias: Option<&[f32]>) {
    for row in out.chunks_exact_mut(n) {
        match bias {
            Some(b) => row.iter_mut().zip(b).for_each(|(o, &v)| {
                o.write(v);
            }),
            None => row.iter_mut().for_each(|o| {
                o.write(0.0);
            }),
        }
    }
}
