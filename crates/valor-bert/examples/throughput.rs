//! Inference and training-step throughput of BERT on one backend, shaped
//! like `shared/bench/bench_bert.py` (the PyTorch peer): random token ids,
//! all-ones attention mask, 3 labels; inference is an eval forward,
//! training a forward + backward + AdamW step with dropout on.
//!
//! ```text
//! cargo run --release -p valor-bert --example throughput -- \
//!     [--model DIR|tiny|mini] [--backend cpu] [--seq 128] [--batch 16] \
//!     [--warmup 2] [--steps 5] [--phase both|inference|train|ig]
//! ```
//! `--phase ig` times integrated gradients of the first `--seq` ids of each
//! batch (`[CLS]` … `[SEP]`, against `[CLS] [PAD]… [SEP]`), 50
//! Gauss–Legendre steps in one batch, on the frozen model: the bench's
//! `minilm_ig_seq64` at `--seq 64`.
//! `--model` defaults to `$VALOR_SHARED_DIR/models/all-MiniLM-L6-v2`.
//! With `THROUGHPUT_PACKED` set, inference runs the unpadded forward of
//! `valor predict` (`forward_packed`; the same rows here, every mask one);
//! `THROUGHPUT_PRECISION=bf16|int8` packs the encoder's Linear layers as
//! `valor predict --precision` does.
//! Prints one JSON line per measurement (medians of `--steps` timings).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::time::Instant;

use valor_base::splitmix::SplitMix64;
use valor_bert::burn::module::Module;
use valor_bert::burn::tensor::{Int, Tensor, TensorData};
use valor_bert::optim::gradients;
use valor_bert::{
    AdamW, AdamWConfig, Backend, BertConfig, BertInput, LoadOptions, PackedInput, cross_entropy,
    load_hf,
};

struct Args {
    model: String,
    backend: Backend,
    seq: usize,
    batch: usize,
    warmup: usize,
    steps: usize,
    phase: String,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        model: std::env::var("VALOR_SHARED_DIR")
            .map(|d| format!("{d}/models/all-MiniLM-L6-v2"))
            .unwrap_or_else(|_| "mini".into()),
        backend: Backend::Cpu,
        seq: 128,
        batch: 16,
        warmup: 2,
        steps: 5,
        phase: "both".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = || value.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--model" => a.model = value.clone(),
            "--backend" => a.backend = value.parse().map_err(|e| format!("{e}"))?,
            "--seq" => a.seq = num()?,
            "--batch" => a.batch = num()?,
            "--warmup" => a.warmup = num()?,
            "--steps" => a.steps = num()?,
            "--phase" if ["both", "inference", "train", "ig"].contains(&value.as_str()) => {
                a.phase = value.clone()
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

/// CPU seconds (user + system) this process has used, from
/// `/proc/self/stat` (Linux; `None` elsewhere). On a shared machine CPU time
/// per step is steadier than wall time.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    valor_bert::tune_host_allocator();
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("throughput: {e}");
            std::process::exit(2);
        }
    };
    let plain = valor_bert::device(args.backend).unwrap_or_else(|e| {
        eprintln!("throughput: {e}");
        std::process::exit(2)
    });
    let train_device = plain.clone().autodiff();
    let (config, model) = if PathBuf::from(&args.model).is_dir() {
        let (c, m, _) = load_hf(
            &PathBuf::from(&args.model),
            &train_device,
            LoadOptions {
                num_labels: Some(3),
                ..LoadOptions::default()
            },
        )
        .unwrap_or_else(|e| {
            eprintln!("throughput: {e}");
            std::process::exit(2)
        });
        (c, m)
    } else {
        let c = BertConfig::preset(&args.model).unwrap_or_else(|e| {
            eprintln!("throughput: {e}");
            std::process::exit(2)
        });
        let m = c.init_classifier_seeded(&train_device, 0);
        (c, m)
    };

    let (b, l) = (args.batch, args.seq);
    let mut rng = SplitMix64::new(0);
    let batches: Vec<(Vec<u32>, Vec<i64>)> = (0..args.warmup + args.steps)
        .map(|_| {
            let ids = (0..b * l)
                .map(|_| (rng.next() % config.vocab_size as u64) as u32)
                .collect();
            let labels = (0..b).map(|_| (rng.next() % 3) as i64).collect();
            (ids, labels)
        })
        .collect();
    let input = |ids: &[u32], device| {
        BertInput::from_flat(ids, &vec![1; b * l], &vec![0; b * l], [b, l], device).unwrap()
    };

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let report = |what: &str, times: Vec<(f64, f64)>| {
        let med = median(times.iter().map(|t| t.0).collect());
        let cpu = median(times.iter().map(|t| t.1).collect());
        println!(
            "{{\"model\": \"{}\", \"backend\": \"{}\", \"what\": \"{what}\", \"seq\": {l}, \"batch\": {b}, \"threads\": {threads}, \"step_s_median\": {med:.4}, \"cpu_s_median\": {cpu:.3}, \"samples_per_s\": {:.2}, \"tokens_per_s\": {:.0}}}",
            args.model,
            args.backend,
            b as f64 / med,
            (b * l) as f64 / med
        );
    };

    // Inference: the validation snapshot on the plain device.
    let packed = std::env::var_os("THROUGHPUT_PACKED").is_some();
    if args.phase != "train" && args.phase != "ig" {
        let precision: valor_bert::Precision = std::env::var("THROUGHPUT_PRECISION")
            .unwrap_or_else(|_| "fp32".into())
            .parse()
            .unwrap_or_else(|e| {
                eprintln!("throughput: THROUGHPUT_PRECISION: {e}");
                std::process::exit(2)
            });
        let eval = valor_bert::lowp::apply(model.valid(), precision).unwrap_or_else(|e| {
            eprintln!("throughput: {e}");
            std::process::exit(2)
        });
        let mut times = Vec::new();
        for (i, (ids, _)) in batches.iter().enumerate() {
            let (t, c) = (Instant::now(), cpu_seconds().unwrap_or(0.0));
            let logits = if packed {
                let seqs: Vec<(&[u32], Option<&[u32]>)> =
                    ids.chunks(l).map(|s| (s, None)).collect();
                let x = PackedInput::new(&seqs, &config, &plain).unwrap();
                eval.forward_packed(&x)
            } else {
                eval.forward(input(ids, &plain))
            };
            let _ = logits.into_data();
            if i >= args.warmup {
                times.push((t.elapsed().as_secs_f64(), cpu_seconds().unwrap_or(0.0) - c));
            }
        }
        report("inference", times);
    }
    if args.phase == "inference" {
        return;
    }
    if args.phase == "ig" {
        // As `valor explain` loads it: the f32 weights packed once.
        let frozen = valor_bert::lowp::apply(model.clone().freeze(), valor_bert::Precision::Fp32)
            .unwrap_or_else(|e| {
                eprintln!("throughput: {e}");
                std::process::exit(2)
            });
        let ig = valor_bert::IgConfig {
            n_steps: 50,
            internal_batch_size: 50,
            ..Default::default()
        };
        let mut times = Vec::new();
        for (i, (ids, _)) in batches.iter().enumerate() {
            let mut ids = ids[..l].to_vec();
            ids[0] = 101;
            ids[l - 1] = 102;
            let seq = valor_bert::TokenSequence::new(ids, None);
            let baseline = valor_bert::pad_baseline(&seq, &[101, 102], 0);
            let (t, c) = (Instant::now(), cpu_seconds().unwrap_or(0.0));
            if let Err(e) = valor_bert::integrated_gradients(&frozen, &seq, &baseline, None, &ig) {
                eprintln!("throughput: {e}");
                std::process::exit(2);
            }
            if i >= args.warmup {
                times.push((t.elapsed().as_secs_f64(), cpu_seconds().unwrap_or(0.0) - c));
            }
        }
        report("ig", times);
        return;
    }

    // Training: forward + backward + AdamW on the autodiff device.
    let mut model = model;
    let mut optim = AdamW::new(AdamWConfig::default(), &model);
    let mut times = Vec::new();
    for (i, (ids, labels)) in batches.iter().enumerate() {
        let x = input(ids, &train_device);
        let labels =
            Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [b]), &train_device);
        let (t, c) = (Instant::now(), cpu_seconds().unwrap_or(0.0));
        let loss = cross_entropy(model.forward(x), labels);
        let grads = gradients(&loss, &model);
        model = optim.step(model, grads, 2e-5);
        let _ = loss.into_data();
        if i >= args.warmup {
            times.push((t.elapsed().as_secs_f64(), cpu_seconds().unwrap_or(0.0) - c));
        }
    }
    report("train_step", times);
}
