//! The AVX-512 and AMX micro-kernels: every `unsafe` block of the crate but
//! the `gemm` calls of `dense`.
//!
//! Reached only through the safe `*_microkernel` functions, which check
//! the CPU's features at run time (`is_x86_feature_detected!`, cached by
//! std; for AMX, CPUID and the kernel's permission for the tile state) and
//! the slice lengths up front; the `#[target_feature]` and `asm!` kernels
//! behind them read only inside those checked lengths.
#![allow(unsafe_code)]

use std::arch::asm;
use std::arch::x86_64::*;

use crate::{F32_MR, MR, NR};

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

/// Whether the CPU is AMD's (CPUID leaf 0's vendor string `AuthenticAMD`).
pub(crate) fn is_amd() -> bool {
    let leaf = __cpuid(0);
    let word = |s: &[u8; 4]| u32::from_le_bytes(*s);
    (leaf.ebx, leaf.edx, leaf.ecx) == (word(b"Auth"), word(b"enti"), word(b"cAMD"))
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

/// As [`crate::scalar::f32_microkernel`], on AVX-512F: `rows` rows of
/// `x` (row stride `xs`, `k` values each) times a [`crate::PackedF32`]
/// panel of `k` rows × `NR` columns into `acc`.
pub(crate) fn f32_microkernel(
    rows: usize,
    x: &[f32],
    xs: usize,
    panel: &[f32],
    k: usize,
    acc: &mut [[f32; NR]; F32_MR],
) {
    assert!(
        has_avx512f(),
        "AVX-512 kernel called on a CPU without AVX-512F"
    );
    assert!((1..=F32_MR).contains(&rows) && xs >= k);
    assert!(x.len() >= (rows - 1) * xs + k && panel.len() >= k * NR);
    let (x, w, a) = (x.as_ptr(), panel.as_ptr(), acc.as_mut_ptr().cast::<f32>());
    // SAFETY: the CPU has AVX-512F (checked above); the kernel reads row
    // `r < rows` of `x` at `r·xs .. r·xs + k` and `panel` at `0 .. k·NR`,
    // both within the lengths asserted above, and writes `rows · NR ≤
    // F32_MR · NR` f32s of `acc`.
    unsafe {
        match rows {
            1 => f32_kernel::<1>(x, xs, w, k, a),
            2 => f32_kernel::<2>(x, xs, w, k, a),
            3 => f32_kernel::<3>(x, xs, w, k, a),
            4 => f32_kernel::<4>(x, xs, w, k, a),
            5 => f32_kernel::<5>(x, xs, w, k, a),
            _ => f32_kernel::<6>(x, xs, w, k, a),
        }
    }
}

/// `R` rows × 64 columns in f32: per input, four 64-byte loads of the
/// panel, one broadcast per row, `4·R` FMAs (24 accumulators at `R = 6`,
/// as the `gemm` crate's own AVX-512 kernel).
#[target_feature(enable = "avx512f")]
unsafe fn f32_kernel<const R: usize>(
    x: *const f32,
    xs: usize,
    w: *const f32,
    k: usize,
    acc: *mut f32,
) {
    let mut c = [[_mm512_setzero_ps(); 4]; R];
    for i in 0..k {
        // SAFETY (the caller's): `w + i·NR .. + NR` and `x + r·xs + i` lie
        // inside the checked slices.
        unsafe {
            let wi = w.add(i * NR);
            let b = [
                _mm512_loadu_ps(wi),
                _mm512_loadu_ps(wi.add(16)),
                _mm512_loadu_ps(wi.add(32)),
                _mm512_loadu_ps(wi.add(48)),
            ];
            for (r, c) in c.iter_mut().enumerate() {
                let a = _mm512_set1_ps(*x.add(r * xs + i));
                for (c, &b) in c.iter_mut().zip(&b) {
                    *c = _mm512_fmadd_ps(a, b, *c);
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

/// Rows of activations per AMX micro-kernel call: two 16-row tiles.
pub(crate) const AMX_ROWS: usize = 32;
/// Rows of a weight tile: 16 pairs (bf16) or quads (int8) of the inner
/// dimension, 64 bytes of activations a row.
pub(crate) const AMX_DEPTH: usize = 16;

/// Whether the CPU has AMX-TILE and AMX-BF16 (CPUID leaf 7, EDX bits 24
/// and 22) and the kernel lets this process use the tile registers, which
/// Linux grants only on request (`arch_prctl(ARCH_REQ_XCOMP_PERM,
/// XFEATURE_XTILEDATA)`, asked once for the whole process).
pub(crate) fn has_amx_bf16() -> bool {
    amx_features().0
}

/// As [`has_amx_bf16`] for AMX-INT8 (EDX bit 25).
pub(crate) fn has_amx_int8() -> bool {
    amx_features().1
}

/// (AMX-BF16, AMX-INT8), each with AMX-TILE and the tile state granted.
fn amx_features() -> (bool, bool) {
    static OK: std::sync::OnceLock<(bool, bool)> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        let leaf = __cpuid_count(7, 0);
        let bit = |b: u32| (leaf.edx >> b) & 1 == 1;
        let (tile, bf16, int8) = (bit(24), bit(22), bit(25));
        if !tile || !(bf16 || int8) || !request_tile_data() {
            return (false, false);
        }
        (bf16, int8)
    })
}

#[cfg(target_os = "linux")]
fn request_tile_data() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: this `arch_prctl` request takes two integers and touches no
    // memory of ours; the kernel answers 0 when it grants the tile state
    // (or had granted it) and an error on kernels or CPUs without it.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn request_tile_data() -> bool {
    false
}

/// The tile configuration every AMX call loads: palette 1, eight tiles of
/// 16 rows × 64 bytes (`tmm0`–`tmm3` the f32 accumulators, `tmm4`/`tmm5`
/// the two 16-row activation tiles, `tmm6`/`tmm7` two 16-column weight
/// tiles).
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

static TILE_CONFIG: TileConfig = {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = 64;
        c[48 + t] = 16;
        t += 1;
    }
    TileConfig(c)
};

/// `acc = xb · panel` for [`AMX_ROWS`] rows of bf16 activations (row
/// stride `kp` values, zero past the real rows and inputs) and a
/// [`crate::PackedBf16`] panel of `kh` pairs (`kh` a multiple of
/// [`AMX_DEPTH`]) × `NR` columns: `acc` is `AMX_ROWS × NR` f32,
/// overwritten. `TDPBF16PS` multiplies pairs of bf16 values exactly and
/// adds in f32, as the other bf16 kernels do.
pub(crate) fn bf16_amx_microkernel(
    xb: &[u16],
    kp: usize,
    panel: &[u16],
    kh: usize,
    acc: &mut [f32; AMX_ROWS * NR],
) {
    assert!(
        has_amx_bf16(),
        "AMX kernel called without AMX-BF16 or the kernel's permission"
    );
    assert!(kh.is_multiple_of(AMX_DEPTH) && kp >= kh * 2);
    assert!(xb.len() >= (AMX_ROWS - 1) * kp + kh * 2 && panel.len() >= kh * NR * 2);
    // SAFETY: the CPU has AMX-TILE/BF16 and the process may use them
    // (checked above); the byte extents `amx_kernel` reads and writes are
    // within the asserted lengths (see its doc: rows of `2·kp` bytes, `kh`
    // panel rows of `NR · 4` bytes, `acc` of `AMX_ROWS · NR` 4-byte values).
    unsafe {
        amx_kernel::<false>(
            xb.as_ptr().cast(),
            kp * 2,
            panel.as_ptr().cast(),
            kh / AMX_DEPTH,
            acc.as_mut_ptr().cast(),
        )
    }
}

/// `acc = xq · panel` in i32 for [`AMX_ROWS`] rows of `u8` activations
/// (int8 + 128, row stride `kp` bytes, 128 past the real inputs) and a
/// [`crate::PackedI8`] panel of `kq` quads (`kq` a multiple of
/// [`AMX_DEPTH`]) × `NR` columns: `TDPBUSD`, `u8 × i8` products summed
/// exactly in i32, the same integers as `vpdpbusd`.
pub(crate) fn i8_amx_microkernel(
    xq: &[u8],
    kp: usize,
    panel: &[i8],
    kq: usize,
    acc: &mut [i32; AMX_ROWS * NR],
) {
    assert!(
        has_amx_int8(),
        "AMX kernel called without AMX-INT8 or the kernel's permission"
    );
    assert!(kq.is_multiple_of(AMX_DEPTH) && kp >= kq * 4);
    assert!(xq.len() >= (AMX_ROWS - 1) * kp + kq * 4 && panel.len() >= kq * NR * 4);
    // SAFETY: as in `bf16_amx_microkernel`, with rows of `kp` bytes and
    // `kq` panel rows of `NR · 4` bytes.
    unsafe {
        amx_kernel::<true>(
            xq.as_ptr(),
            kp,
            panel.as_ptr().cast(),
            kq / AMX_DEPTH,
            acc.as_mut_ptr().cast(),
        )
    }
}

/// The AMX block product: `a` holds [`AMX_ROWS`] rows at `a_stride`
/// bytes, each at least `64 · tiles` bytes; `w` a panel of `16 · tiles`
/// rows of `NR · 4` bytes (per column 4 bytes: a bf16 pair or an int8
/// quad); `c` receives `AMX_ROWS × NR` 4-byte values (f32 for bf16, i32
/// for int8), row-major. Two column halves of 32: per half, four
/// accumulator tiles (rows 0–15 / 16–31 × columns 0–15 / 16–31), and per
/// tile of depth two activation loads, two weight loads and four
/// `TDPBF16PS` (or `TDPBUSD` when `INT8`).
unsafe fn amx_kernel<const INT8: bool>(
    a: *const u8,
    a_stride: usize,
    w: *const u8,
    tiles: usize,
    c: *mut u8,
) {
    let (w_stride, c_stride) = (NR * 4, NR * 4);
    // SAFETY (the caller's): the extents above.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) TILE_CONFIG.0.as_ptr(), options(nostack, readonly));
        for half in 0..2 {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
            let wc = w.add(half * 32 * 4);
            for t in 0..tiles {
                let (a0, b0) = (a.add(t * 64), wc.add(t * AMX_DEPTH * w_stride));
                let (a1, b1) = (a0.add(16 * a_stride), b0.add(16 * 4));
                // One tile of depth: the same loads, then `$op` (the
                // precision's tile product) four times.
                macro_rules! step {
                    ($op:literal) => {
                        asm!(
                            "tileloadd tmm4, [{a0} + {sa}*1]",
                            "tileloadd tmm5, [{a1} + {sa}*1]",
                            "tileloadd tmm6, [{b0} + {sb}*1]",
                            "tileloadd tmm7, [{b1} + {sb}*1]",
                            concat!($op, " tmm0, tmm4, tmm6"),
                            concat!($op, " tmm1, tmm4, tmm7"),
                            concat!($op, " tmm2, tmm5, tmm6"),
                            concat!($op, " tmm3, tmm5, tmm7"),
                            a0 = in(reg) a0,
                            a1 = in(reg) a1,
                            b0 = in(reg) b0,
                            b1 = in(reg) b1,
                            sa = in(reg) a_stride,
                            sb = in(reg) w_stride,
                            options(nostack, readonly)
                        )
                    };
                }
                if INT8 {
                    step!("tdpbusd");
                } else {
                    step!("tdpbf16ps");
                }
            }
            let c0 = c.add(half * 32 * 4);
            asm!(
                "tilestored [{c0} + {sc}*1], tmm0",
                "tilestored [{c1} + {sc}*1], tmm1",
                "tilestored [{c2} + {sc}*1], tmm2",
                "tilestored [{c3} + {sc}*1], tmm3",
                c0 = in(reg) c0,
                c1 = in(reg) c0.add(16 * 4),
                c2 = in(reg) c0.add(16 * c_stride),
                c3 = in(reg) c0.add(16 * c_stride + 16 * 4),
                sc = in(reg) c_stride,
                options(nostack)
            );
        }
        asm!("tilerelease", options(nostack, nomem));
    }
}

/// `pub(crate) fn $name(args) -> ret`: `$plain(args)` compiled for AVX-512F
/// (as `$wide`) where the CPU has it, else as the crate builds it (baseline
/// x86-64, SSE2). For the loops around the matrix kernels that LLVM
/// vectorises by itself once it may use 512-bit registers.
macro_rules! avx512_version {
    ($(#[$doc:meta])* fn $name:ident / $wide:ident ($($arg:ident: $ty:ty),*) $(-> $ret:ty)? = $plain:path) => {
        $(#[$doc])*
        pub(crate) fn $name($($arg: $ty),*) $(-> $ret)? {
            if has_avx512f() {
                // SAFETY: the CPU has AVX-512F (checked just above); the
                // function is plain safe Rust otherwise.
                unsafe { $wide($($arg),*) }
            } else {
                $plain($($arg),*)
            }
        }

        #[target_feature(enable = "avx512f")]
        fn $wide($($arg: $ty),*) $(-> $ret)? {
            $plain($($arg),*)
        }
    };
}

avx512_version! {
    /// `dst[i] = f32_to_bf16(src[i])` (as many as the shorter holds): the
    /// rounding was 16% of a bf16 MiniLM batch at SSE2 width.
    fn round_to_bf16 / round_to_bf16_avx512(src: &[f32], dst: &mut [u16]) = round_plain
}

#[inline(always)]
fn round_plain(src: &[f32], dst: &mut [u16]) {
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = crate::bf16::f32_to_bf16(v);
    }
}

avx512_version! {
    /// `dst[2i] = f32_to_bf16(a[i])`, `dst[2i + 1] = f32_to_bf16(b[i])`
    /// (as many pairs as all three hold): two inputs of a packed bf16
    /// panel row, for weights packed at every training step.
    fn interleave_bf16 / interleave_bf16_avx512(a: &[f32], b: &[f32], dst: &mut [u16]) = crate::bf16::interleave_plain
}

avx512_version! {
    /// `out[c] = acc[c] + bias[c]` (or `acc[c]` without a bias) over
    /// `out.len()` values.
    fn add_bias / add_bias_avx512(out: &mut [std::mem::MaybeUninit<f32>], acc: &[f32], bias: Option<&[f32]>) = crate::bf16::add_bias_plain
}

avx512_version! {
    /// [`crate::int8`]'s activation quantisation.
    fn quantize_shifted / quantize_shifted_avx512(x: &[f32], q: &mut [u8]) -> f32 = crate::int8::quantize_shifted_plain
}

avx512_version! {
    /// [`crate::int8`]'s dequantisation of a row of i32 sums.
    fn dequantize / dequantize_avx512(
        o: &mut [std::mem::MaybeUninit<f32>],
        acc: &[i32],
        s: f32,
        shift: &[i32],
        scales: &[f32],
        bias: Option<&[f32]>
    ) = crate::int8::dequantize_plain
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// CPUID's vendor string read in place agrees with the kernel's
    /// `/proc/cpuinfo` (which picks the bf16 kernel on AMD).
    #[test]
    fn amd_is_what_linux_says_the_vendor_is() {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo");
        let vendor = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("vendor_id"))
            .and_then(|l| l.split(':').nth(1))
            .map(str::trim)
            .expect("a vendor_id line");
        assert_eq!(super::is_amd(), vendor == "AuthenticAMD", "{vendor}");
    }
}
