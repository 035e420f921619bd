//! Throughput of the f32, int8 and bf16 Linear products on the model's
//! shapes (f32: the `gemm` crate's `linear_f32` against the packed weight):
//! `cargo run --release -p valor-kernels --example gops`. Prints one line
//! per product, shape and instruction set (median of 9 runs).
#![allow(clippy::print_stdout)]

use valor_kernels::{Isa, MatRef, PackedBf16, PackedF32, PackedI8, linear_f32};

fn values(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect()
}

/// Median of 9 after a warm-up.
fn median(f: impl FnMut()) -> f64 {
    valor_testkit::timings(9, f)[4]
}

fn main() {
    for (m, n, k) in [
        (4096, 384, 384),
        (4096, 1536, 384),
        (4096, 384, 1536),
        (64, 384, 384),
        (128, 1536, 384),
        (128, 384, 1536),
    ] {
        let x = values(m * k);
        let w = values(n * k);
        let mut out = vec![0f32; m * n];
        let flop = 2.0 * (m * n * k) as f64;
        for isa in [Isa::Scalar, Isa::Avx512Vnni, Isa::AmxInt8] {
            if let Some(p) = PackedI8::pack(&w, n, k).unwrap().with_isa(isa) {
                let t = median(|| p.linear(&x, m, None, &mut out).unwrap());
                println!(
                    "int8 {m}x{n}x{k} {:12} {:8.2} ms {:7.1} GOP/s",
                    isa.name(),
                    t * 1e3,
                    flop / t / 1e9
                );
            }
        }
        // burn's `[k, n]` layout for the `gemm` crate's product.
        let wt: Vec<f32> = (0..k * n).map(|j| w[(j % n) * k + j / n]).collect();
        let t = median(|| drop(linear_f32(&x, m, k, &wt, n, None).unwrap()));
        println!(
            "f32  {m}x{n}x{k} {:12} {:8.2} ms {:7.1} GFLOP/s",
            "gemm",
            t * 1e3,
            flop / t / 1e9
        );
        for isa in [Isa::Scalar, Isa::Avx512Fma] {
            let packed = PackedF32::pack_strided(MatRef::row_major(&wt, k, n).t()).unwrap();
            if let Some(p) = packed.with_isa(isa) {
                let t = median(|| drop(p.linear_new(&x, m, None).unwrap()));
                println!(
                    "f32  {m}x{n}x{k} {:12} {:8.2} ms {:7.1} GFLOP/s",
                    isa.name(),
                    t * 1e3,
                    flop / t / 1e9
                );
            }
        }
        for isa in [Isa::Scalar, Isa::Avx512Bf16, Isa::Avx512Fma, Isa::AmxBf16] {
            if let Some(p) = PackedBf16::pack(&w, n, k).unwrap().with_isa(isa) {
                let t = median(|| p.linear(&x, m, None, &mut out).unwrap());
                println!(
                    "bf16 {m}x{n}x{k} {:12} {:8.2} ms {:7.1} GFLOP/s",
                    isa.name(),
                    t * 1e3,
                    flop / t / 1e9
                );
            }
        }
    }
}
