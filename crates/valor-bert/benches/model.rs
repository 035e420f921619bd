//! Model benchmarks (run by `cargo xtask bench`), shaped like the PyTorch peer
//! `../shared/bench/bench_bert.py`: `BertForSequenceClassification` with 3
//! labels, random token ids (SplitMix64, seed 0) in `[0, vocab)`, an all-ones
//! attention mask. Inference is an eval forward whose logits are read back to
//! the host (so asynchronous GPU backends are timed to completion); a training
//! step is forward + cross-entropy + backward + AdamW with dropout on.
//!
//! Groups (criterion ids):
//! - `matmul/f32_N`: one `N×N · N×N` fp32 GEMM through the same device, the
//!   backend's measured peak (N = 2048 on the CPU, 8192 on a GPU);
//!   `matmul/bf16_packed_N` (CPU only): the same product through
//!   valor-kernels' packed bf16 weight (AMX or AVX-512), the bf16 peak.
//! - `minilm_infer/seqS_bB`, `minilm_train/seqS_bB`: `all-MiniLM-L6-v2` from
//!   `$VALOR_SHARED_DIR/models` (skipped with a message when unset).
//! - `minilm_infer_bf16/seqS_bB`, `minilm_infer_int8/seqS_bB`: the same
//!   inference with the encoder's Linear layers in bf16 or int8
//!   (`valor_bert::lowp`, `valor predict --precision`), CPU only.
//! - `minilm_train_bf16/seq128_b16`: the training step inside
//!   `valor_bert::lowp::autocast(Precision::Bf16, …)` (the encoder's Linear
//!   products in bf16 with f32 accumulation, forward and backward), CPU
//!   only.
//! - `minilm_ig_bf16/seq64_steps50`: the same under
//!   `valor_bert::lowp::autocast(Precision::Bf16, …)`, CPU only.
//! - `minilm_ig/seq64_steps50`: integrated gradients of one sentence
//!   (`[CLS]` + 62 random ids in `[1000, vocab)` + `[SEP]`, baseline `[CLS]
//!   [PAD]… [SEP]`, predicted class, 50 Gauss–Legendre steps in one batch)
//!   with the model frozen, as `bench_captum.py`'s `lig_embed` variant.
//! - `base_infer/seqS_bB`, `base_train/seqS_bB`: the BERT-base geometry
//!   (`BertConfig::preset("base")`, random init), GPU backends only.
//!
//! `VALOR_BENCH_BACKEND` picks the device (`cpu`, `wgpu`, `cuda`);
//! `VALOR_BENCH_PRECISION` (`fp32`, `f16`, `bf16`; GPU backends) sets the
//! device's float dtype first (`valor_bert::configure_precision`), so every
//! group, the GEMM peak included, runs in it; the GEMM id names the dtype
//! (`matmul/f16_8192`). On a GPU the model groups run the shapes of
//! `cargo xtask gpu-check` (batch 32 × seq 128). Setup (model
//! loading) runs only for the groups the command line asks for, so a process
//! that runs one id has the peak memory of that workload alone.
#![allow(clippy::print_stderr)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group};
use valor_base::splitmix::SplitMix64;
use valor_bert::burn::module::Module;
use valor_bert::burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use valor_bert::explain::{IgConfig, TokenSequence, integrated_gradients, pad_baseline};
use valor_bert::optim::gradients;
use valor_bert::{
    AdamW, AdamWConfig, Backend, BertConfig, BertForSequenceClassification, BertInput,
    GpuPrecision, LoadOptions, Precision, cross_entropy, load_hf,
};

/// The GPU float dtype `VALOR_BENCH_PRECISION` asks for (fp32 when unset).
fn gpu_precision() -> GpuPrecision {
    std::env::var("VALOR_BENCH_PRECISION")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.parse().expect("VALOR_BENCH_PRECISION: fp32, f16 or bf16"))
        .unwrap_or_default()
}

/// The model shape of the GPU groups, `VALOR_BENCH_GPU_SHAPE=SEQ,BATCH`
/// (default 128,32; the GPU check's dry run on a software driver takes a
/// smaller one), and the GEMM size, `VALOR_BENCH_MATMUL_N` (default 8192).
fn gpu_shape() -> (usize, usize) {
    let Ok(v) = std::env::var("VALOR_BENCH_GPU_SHAPE") else {
        return (128, 32);
    };
    let parse = |x: Option<&str>| {
        x.and_then(|x| x.trim().parse().ok())
            .expect("VALOR_BENCH_GPU_SHAPE: SEQ,BATCH")
    };
    let mut parts = v.split(',');
    (parse(parts.next()), parse(parts.next()))
}

fn backend() -> Backend {
    std::env::var("VALOR_BENCH_BACKEND")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.parse().expect("VALOR_BENCH_BACKEND: cpu, wgpu or cuda"))
        .unwrap_or(Backend::Cpu)
}

/// Whether the command line's filter (`--exact ID` or a substring) can select
/// a benchmark of `group`; no filter selects everything.
fn wanted(group: &str) -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut filters = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a.starts_with("--") {
            // Criterion flags that take a value.
            if [
                "--warm-up-time",
                "--measurement-time",
                "--sample-size",
                "--save-baseline",
                "--baseline",
                "--color",
                "--output-format",
                "--profile-time",
                "--noise-threshold",
                "--significance-level",
                "--confidence-level",
                "--nresamples",
                "--load-baseline",
                "--plotting-backend",
                "--format",
            ]
            .contains(&a.as_str())
            {
                i += 1;
            }
        } else {
            filters.push(a.clone());
        }
        i += 1;
    }
    filters.is_empty()
        || filters
            .iter()
            .any(|f| f.starts_with(&format!("{group}/")) || group.contains(f.as_str()))
}

/// A few batches of random ids and labels, cycled through by the timing loop.
struct Batches {
    ids: Vec<Vec<u32>>,
    labels: Vec<Vec<i64>>,
    batch: usize,
    seq: usize,
    next: usize,
}

impl Batches {
    fn new(vocab: usize, batch: usize, seq: usize) -> Self {
        let mut rng = SplitMix64::new(0);
        let (mut ids, mut labels) = (Vec::new(), Vec::new());
        for _ in 0..4 {
            ids.push(
                (0..batch * seq)
                    .map(|_| (rng.next() % vocab as u64) as u32)
                    .collect(),
            );
            labels.push((0..batch).map(|_| (rng.next() % 3) as i64).collect());
        }
        Self {
            ids,
            labels,
            batch,
            seq,
            next: 0,
        }
    }

    fn take(&mut self, device: &Device) -> (BertInput, Tensor<1, Int>) {
        let i = self.next % self.ids.len();
        self.next += 1;
        let n = self.batch * self.seq;
        let input = BertInput::from_flat(
            &self.ids[i],
            &vec![1; n],
            &vec![0; n],
            [self.batch, self.seq],
            device,
        )
        .expect("batch shape");
        let labels = Tensor::<1, Int>::from_data(
            TensorData::new(self.labels[i].clone(), [self.batch]),
            device,
        );
        (input, labels)
    }
}

fn minilm_dir() -> Option<PathBuf> {
    let Some(shared) = std::env::var_os("VALOR_SHARED_DIR").map(PathBuf::from) else {
        eprintln!("SKIPPED MiniLM benchmarks: set VALOR_SHARED_DIR");
        return None;
    };
    Some(
        std::env::var_os("VALOR_MINILM_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| shared.join("models/all-MiniLM-L6-v2")),
    )
}

/// The model on the autodiff device (training) and its config.
fn model(name: &str, train_device: &Device) -> Option<(BertConfig, BertForSequenceClassification)> {
    if name == "minilm" {
        let dir = minilm_dir()?;
        let options = LoadOptions {
            num_labels: Some(3),
            ..LoadOptions::default()
        };
        let (config, model, _) = load_hf(&dir, train_device, options)
            .unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()));
        Some((config, model))
    } else {
        let config = BertConfig::preset(name).expect("preset");
        let model = config.init_classifier_seeded(train_device, 0);
        Some((config, model))
    }
}

fn matmul(c: &mut Criterion) {
    if !wanted("matmul") {
        return;
    }
    let backend = backend();
    let device = valor_bert::device(backend).expect("backend compiled in");
    let n = match std::env::var("VALOR_BENCH_MATMUL_N") {
        Ok(n) => n.trim().parse().expect("VALOR_BENCH_MATMUL_N: a size"),
        Err(_) if backend == Backend::Cpu => 2048,
        Err(_) => 8192,
    };
    let a = Tensor::<2>::random([n, n], Distribution::Uniform(-1.0, 1.0), &device);
    let b = Tensor::<2>::random([n, n], Distribution::Uniform(-1.0, 1.0), &device);
    let mut g = c.benchmark_group("matmul");
    g.sample_size(10);
    let dtype = match gpu_precision() {
        GpuPrecision::Fp32 => "f32",
        p => p.name(),
    };
    g.bench_function(format!("{dtype}_{n}"), |bench| {
        bench.iter(|| {
            // Reading the sum back waits for the whole GEMM on asynchronous
            // devices. Not one element: with burn's fusion on (GPU builds),
            // reading back a 1×1 slice timed a 512 GEMM on lavapipe at an
            // impossible 843 GFLOP/s on 2 CPU cores (the slice fused into
            // the product, presumably, so most of it was never computed).
            let out = a.clone().matmul(b.clone());
            black_box(out.sum().into_data())
        })
    });
    if backend == Backend::Cpu {
        // The bf16 kernels' peak: the same product through valor-kernels'
        // packed bf16 weight (AMX where the CPU and Linux allow it, else the
        // AVX-512 FMA kernel), the activations rounded to bf16 per call as
        // `--precision bf16` does.
        let values = |t: &Tensor<2>| t.to_data().try_to_vec::<f32>().expect("f32 values");
        let (x, w) = (values(&a), values(&b));
        let packed = valor_kernels::PackedBf16::pack(&w, n, n).expect("a square weight");
        let mut out = vec![0f32; n * n];
        eprintln!("matmul/bf16_packed_{n}: {} kernel", packed.isa().name());
        g.bench_function(format!("bf16_packed_{n}"), |bench| {
            bench.iter(|| {
                packed.linear(&x, n, None, &mut out).expect("square shapes");
                black_box(out[0])
            })
        });
    }
    g.finish();
}

fn inference(c: &mut Criterion, name: &str, precision: Precision, shapes: &[(usize, usize)]) {
    let group = match precision {
        Precision::Fp32 => format!("{name}_infer"),
        p => format!("{name}_infer_{p}"),
    };
    if !wanted(&group) {
        return;
    }
    let device = valor_bert::device(backend()).expect("backend compiled in");
    let Some((config, model)) = model(name, &device.clone().autodiff()) else {
        return;
    };
    let eval = valor_bert::lowp::apply(model.valid(), precision).expect("packing the weights");
    if precision != Precision::Fp32 {
        eprintln!("{group}: {} kernels", precision.kernel());
    }
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    for &(seq, batch) in shapes {
        let mut batches = Batches::new(config.vocab_size, batch, seq);
        g.bench_function(format!("seq{seq}_b{batch}"), |bench| {
            bench.iter(|| {
                let (input, _) = batches.take(&device);
                black_box(eval.forward(input).into_data())
            })
        });
    }
    g.finish();
}

fn training(c: &mut Criterion, name: &str, precision: Precision, shapes: &[(usize, usize)]) {
    let group = match precision {
        Precision::Fp32 => format!("{name}_train"),
        p => format!("{name}_train_{p}"),
    };
    if !wanted(&group) {
        return;
    }
    let device = valor_bert::device(backend())
        .expect("backend compiled in")
        .autodiff();
    let Some((config, model)) = model(name, &device) else {
        return;
    };
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    for &(seq, batch) in shapes {
        let mut batches = Batches::new(config.vocab_size, batch, seq);
        let mut optim = AdamW::new(AdamWConfig::default(), &model);
        let mut current = Some(model.clone());
        g.bench_function(format!("seq{seq}_b{batch}"), |bench| {
            bench.iter(|| {
                let (input, labels) = batches.take(&device);
                let m = current.take().expect("model");
                let logits = valor_bert::lowp::autocast(precision, || m.forward(input))
                    .expect("fp32 or bf16");
                let loss = cross_entropy(logits, labels);
                let grads = gradients(&loss, &m);
                current = Some(optim.step(m, grads, 2e-5));
                black_box(loss.into_data())
            })
        });
    }
    g.finish();
}

fn explain(c: &mut Criterion, precision: Precision) {
    let group = match precision {
        Precision::Fp32 => "minilm_ig".to_string(),
        p => format!("minilm_ig_{p}"),
    };
    if !wanted(&group) {
        return;
    }
    let device = valor_bert::device(backend())
        .expect("backend compiled in")
        .autodiff();
    let Some((config, model)) = model("minilm", &device) else {
        return;
    };
    // As `valor explain` loads it: the f32 weights packed once.
    let model = valor_bert::lowp::apply(model.freeze(), Precision::Fp32).expect("packing");
    let (seq_len, n_steps) = (64, 50);
    let ig = IgConfig {
        n_steps,
        internal_batch_size: n_steps,
        ..IgConfig::default()
    };
    let mut rng = SplitMix64::new(1);
    let span = config.vocab_size as u64 - 1000;
    let sentences: Vec<TokenSequence> = (0..4)
        .map(|_| {
            let mut ids: Vec<u32> = (0..seq_len)
                .map(|_| (1000 + rng.next() % span) as u32)
                .collect();
            ids[0] = 101;
            ids[seq_len - 1] = 102;
            TokenSequence::new(ids, None)
        })
        .collect();
    let mut next = 0;
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    g.bench_function(format!("seq{seq_len}_steps{n_steps}"), |bench| {
        bench.iter(|| {
            let seq = &sentences[next % sentences.len()];
            next += 1;
            let baseline = pad_baseline(seq, &[101, 102], 0);
            let run = || integrated_gradients(&model, seq, &baseline, None, &ig);
            black_box(
                valor_bert::lowp::autocast(precision, run)
                    .expect("fp32 or bf16")
                    .expect("IG"),
            )
        })
    });
    g.finish();
}

fn minilm(c: &mut Criterion) {
    let gpu = [gpu_shape()];
    let shapes: &[(usize, usize)] = if backend() == Backend::Cpu {
        &[(64, 1), (128, 1), (64, 32), (128, 32)]
    } else {
        &gpu
    };
    inference(c, "minilm", Precision::Fp32, shapes);
    if backend() == Backend::Cpu {
        // The low-precision kernels run on the CPU only.
        inference(c, "minilm", Precision::Bf16, shapes);
        inference(c, "minilm", Precision::Int8, shapes);
    }
    if backend() == Backend::Cpu {
        training(c, "minilm", Precision::Fp32, &[(64, 16), (128, 16)]);
        // Autocast: the encoder's Linear products in bf16, forward and
        // backward.
        training(c, "minilm", Precision::Bf16, &[(128, 16)]);
    } else {
        training(c, "minilm", Precision::Fp32, &gpu);
    }
    explain(c, Precision::Fp32);
    if backend() == Backend::Cpu {
        explain(c, Precision::Bf16);
    }
}

fn base(c: &mut Criterion) {
    if backend() == Backend::Cpu {
        return;
    }
    inference(c, "base", Precision::Fp32, &[gpu_shape()]);
    training(c, "base", Precision::Fp32, &[gpu_shape()]);
}

criterion_group!(benches, matmul, minilm, base);

// `criterion_main!` with the allocator tuned first, as the `valor` binary does.
fn main() {
    valor_bert::tune_host_allocator();
    let precision = gpu_precision();
    if precision != GpuPrecision::Fp32 || backend() != Backend::Cpu {
        let device = valor_bert::device(backend()).expect("backend compiled in");
        if let Err(e) = valor_bert::configure_precision(&device, precision) {
            eprintln!("VALOR_BENCH_PRECISION={precision}: {e}");
            std::process::exit(2);
        }
        eprintln!(
            "device `{}`, float dtype {:?}",
            valor_bert::device_name(&device),
            device.settings().float_dtype
        );
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
