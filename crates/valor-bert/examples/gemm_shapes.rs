//! Where MiniLM's f32 inference time goes on this CPU, product by product:
//! `cargo run --release -p valor-bert --example gemm_shapes`.
//!
//! Times (best of 9 after a warm-up: on a shared machine the fastest run is
//! the one nothing interrupted) burn-flex's f32 `matmul` — the
//! `gemm` crate under the flex device — on the products of one encoder
//! layer of MiniLM-L6 (hidden 384, intermediate 1536, 12 heads of 32) for
//! `b × s` tokens, laid out as the model lays them out: the Linear layers
//! as `[tokens, in] · [in, out]` (burn's weight layout) and the attention
//! products as `[b, heads, s, 32] · [b, heads, 32, s]` (keys transposed by
//! a stride swap, not a copy) and `[b, heads, s, s] · [b, heads, s, 32]`.
//! One line per product: milliseconds and GFLOP/s, then the sum over one
//! layer and six. The PyTorch side of the same table is
//! `examples/gemm_shapes.py` (`torch.nn.functional.linear` and
//! `torch.matmul`, 2 threads). Subtracting six layers' products from a
//! whole forward (`examples/throughput.rs`, or the `minilm_infer` bench
//! rows) gives the time outside the products.
#![allow(clippy::print_stdout)]

use std::hint::black_box;

use valor_bert::Backend;
use valor_bert::burn::tensor::{Distribution, Tensor};

/// Best of 9 after a warm-up.
fn best(f: impl FnMut()) -> f64 {
    valor_testkit::timings(9, f)[0]
}

fn line(what: &str, shape: &str, t: f64, flop: f64) {
    println!(
        "{what:28} {shape:>22} {:9.3} ms {:7.1} GFLOP/s",
        t * 1e3,
        flop / t / 1e9
    );
}

fn main() {
    let device = valor_bert::device(Backend::Cpu).expect("the flex device");
    let (hidden, inter, heads, head): (usize, usize, usize, usize) = (384, 1536, 12, 32);
    println!("rayon threads: {}", rayon::current_num_threads());
    for (b, s) in [(32usize, 128usize), (32, 64), (1, 128), (1, 64)] {
        let m = b * s;
        let mut layer = 0.0;
        for (n, k) in [(hidden, hidden), (inter, hidden), (hidden, inter)] {
            let flop = 2.0 * (m * n * k) as f64;
            let x = Tensor::<2>::random([m, k], Distribution::Default, &device);
            let w = Tensor::<2>::random([k, n], Distribution::Default, &device);
            let t = best(|| {
                black_box(x.clone().matmul(w.clone()));
            });
            // Q, K, V and the attention output are four hidden × hidden.
            layer += t * if n == k && n == hidden { 4.0 } else { 1.0 };
            line("burn-flex linear", &format!("{m}x{n}x{k}"), t, flop);
        }
        let flop = 2.0 * (b * heads * s * s * head) as f64;
        let qkv = || {
            Tensor::<3>::random([b, s, hidden], Distribution::Default, &device)
                .reshape([b, s, heads, head])
                .swap_dims(1, 2)
        };
        let (q, k, v) = (qkv(), qkv(), qkv());
        let t_qk = best(|| {
            black_box(q.clone().matmul(k.clone().swap_dims(2, 3)));
        });
        line("burn-flex scores q·kᵀ", &format!("b{b} s{s}"), t_qk, flop);
        let p = Tensor::<4>::random([b, heads, s, s], Distribution::Default, &device);
        let t_pv = best(|| {
            black_box(p.clone().matmul(v.clone()));
        });
        line("burn-flex context p·v", &format!("b{b} s{s}"), t_pv, flop);
        println!(
            "one layer's products (burn-flex) b{b} s{s}: {:.3} ms; six layers {:.1} ms",
            (layer + t_qk + t_pv) * 1e3,
            6.0 * (layer + t_qk + t_pv) * 1e3
        );
    }
}
