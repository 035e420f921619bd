//! The workloads of the bench: what each row measures on Valor's side (a
//! criterion benchmark, or `cargo xtask train`), which peer run answers it
//! and where the peer's numbers sit, and the FLOP counts of the model rows.

use std::path::PathBuf;

use super::THREADS;

/// How Valor's side of a workload is run.
#[derive(Clone)]
pub(super) enum ValorSide {
    /// One criterion benchmark.
    Criterion {
        package: &'static str,
        bench: &'static str,
        /// Criterion id (`group/function`), the folder under `criterion/`.
        id: String,
    },
    /// `cargo xtask train` end to end (after building it), timed once.
    Train,
    /// `valor audit --stream` of a generated Parquet log of `rows` rows,
    /// timed once (`audit_stream`).
    AuditStream { rows: u64 },
}

/// One row of the results table.
#[derive(Clone)]
pub(super) struct Workload {
    pub(super) name: String,
    pub(super) what: String,
    pub(super) valor: ValorSide,
    /// Runs in `--quick` mode.
    pub(super) quick: bool,
    /// The peers that do the same work, each in its own process (one table
    /// row each).
    pub(super) peers: Vec<PeerRef>,
    /// The input file in the data folder, whose size the report states.
    pub(super) input: Option<&'static str>,
    /// Floating-point operations per timed iteration (model workloads).
    pub(super) flops: Option<f64>,
    /// Samples (sentences, rows) per timed iteration, for the throughput column.
    pub(super) items: Option<(f64, &'static str)>,
}

/// Which peer run answers a workload, and where its numbers sit in the
/// script's JSON line.
#[derive(Clone)]
pub(super) struct PeerRef {
    pub(super) run: PeerRun,
    /// JSON pointer to the measured dict (with `median_s`, `all_clean`,
    /// `loop_cpu`), or for bench_bert the `infer`/`train` summary.
    pub(super) measure: String,
    /// Key of the median seconds inside that dict.
    pub(super) median_key: &'static str,
    /// JSON pointer to the peer's own peak RSS report, when it has one more
    /// precise than the whole process (bench_bert: after inference only).
    pub(super) rss: Option<&'static str>,
    /// What the peer is, as the table's `peer` column says it.
    pub(super) label: String,
}

/// One peer process: script + arguments (the cache key).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct PeerRun {
    pub(super) script: &'static str,
    pub(super) args: Vec<String>,
}

impl PeerRun {
    pub(super) fn key(&self) -> String {
        format!("{} {}", self.script, self.args.join(" "))
    }
}

/// Model geometry for the FLOP count.
#[derive(Clone, Copy)]
pub(crate) struct Geometry {
    layers: f64,
    hidden: f64,
    intermediate: f64,
}

pub(crate) const MINILM: Geometry = Geometry {
    layers: 6.0,
    hidden: 384.0,
    intermediate: 1536.0,
};
pub(crate) const BASE: Geometry = Geometry {
    layers: 12.0,
    hidden: 768.0,
    intermediate: 3072.0,
};

/// Forward FLOPs of a BERT encoder on `batch × seq` tokens: per layer and
/// token the Q, K, V, output and two feed-forward matmuls (2·(4h² + 2hi))
/// plus attention scores and context (2·2·seq·h). Embedding look-ups, layer
/// norms, softmax and the head are left out (< 1%). A training step counts
/// 3× (backward ≈ 2× forward), the usual MFU convention. These are the full
/// encoder's products, what the peer computes: Valor's inference and
/// integrated gradients skip most of the last layer for rows other than
/// `[CLS]` (≈ 14% of MiniLM's products), so their GFLOP/s is a rate of
/// equivalent work, and can read above the GEMM peak.
pub(crate) fn bert_flops(g: Geometry, seq: usize, batch: usize) -> f64 {
    let (s, h, i) = (seq as f64, g.hidden, g.intermediate);
    batch as f64 * s * g.layers * (8.0 * h * h + 4.0 * h * i + 4.0 * s * h)
}

/// Where the bench reads its inputs and which backend it measures.
pub(super) struct Ctx {
    pub(super) data_dir: PathBuf,
    pub(super) shared: Option<PathBuf>,
    pub(super) backend: String,
    pub(super) gpu: bool,
}

/// Every workload, in table order (the CPU set, or the GPU section).
pub(super) fn workloads(ctx: &Ctx) -> Vec<Workload> {
    let mut w = data_workloads(ctx);
    w.extend(model_workloads(ctx));
    w.push(train_workload());
    w.push(super::audit_stream::workload());
    w
}

/// A criterion benchmark as Valor's side of a workload.
fn crit(package: &'static str, bench: &'static str, id: &str) -> ValorSide {
    ValorSide::Criterion {
        package,
        bench,
        id: id.to_string(),
    }
}

/// A file of the data folder, as a peer's argument.
fn data(ctx: &Ctx, file: &str) -> String {
    ctx.data_dir.join(file).display().to_string()
}

/// CSV ingest, tokenization and the fairness audits, each with its peers.
fn data_workloads(ctx: &Ctx) -> Vec<Workload> {
    vec![
        Workload {
            name: "csv_ingest_100k".into(),
            what:
                "read + validate a 100,000-row CSV (id, age, income, group, label, ~100-char text)"
                    .into(),
            valor: crit("valor-data", "ingest", "ingest/csv_100k_rows"),
            quick: true,
            peers: csv_peers(ctx, "text_100k.csv", 100_000),
            input: Some("text_100k.csv"),
            flops: None,
            items: Some((100_000.0, "rows")),
        },
        Workload {
            name: "csv_ingest_1m".into(),
            what: "read + validate a 1,000,000-row CSV (same shape, ~126 MB)".into(),
            valor: crit("valor-data", "ingest", "ingest/csv_1m_rows"),
            quick: false,
            peers: csv_peers(ctx, "text_1m.csv", 1_000_000),
            input: Some("text_1m.csv"),
            flops: None,
            items: Some((1e6, "rows")),
        },
        Workload {
            name: "tokenize_100k".into(),
            what: "tokenize 100,000 sentences (MiniLM tokenizer.json, truncation 128)".into(),
            valor: crit("valor-data", "ingest", "tokenize/minilm_100k_sentences"),
            quick: false,
            peers: Vec::from_iter(ctx.shared.as_ref().map(|s| PeerRef {
                run: PeerRun {
                    script: "tokenize_peer.py",
                    args: vec![
                        "--anchor".into(),
                        s.join("bench").display().to_string(),
                        "--tokenizer".into(),
                        s.join("models/all-MiniLM-L6-v2/tokenizer.json")
                            .display()
                            .to_string(),
                        "--csv".into(),
                        data(ctx, "text_100k.csv"),
                    ],
                },
                measure: "/encode_batch".into(),
                median_key: "median_s",
                rss: Some("/peak_rss_mib"),
                // The same Rust `tokenizers` crate Valor calls, through its
                // Python bindings: the ratio is the bindings' and batching
                // overhead, not a faster tokenizer.
                label: "HF tokenizers encode_batch: the same Rust tokenizer through its Python bindings".into(),
            })),
            input: Some("text_100k.csv"),
            flops: None,
            items: Some((100_000.0, "sentences")),
        },
        Workload {
            name: "fair_audit_10k".into(),
            what: "fairness audit of 10,000 predictions, 3 groups (fair_data.py, seed 42)".into(),
            valor: crit("valor-fair", "audit", "fair/audit_10k_rows"),
            quick: true,
            peers: vec![fair_peer(ctx, 10_000, 30)],
            input: Some("fair_10000.csv"),
            flops: None,
            items: Some((10_000.0, "rows")),
        },
        Workload {
            name: "fair_audit_1m".into(),
            what: "fairness audit of 1,000,000 predictions, 3 groups (fair_data.py, seed 42)"
                .into(),
            valor: crit("valor-fair", "audit", "fair/audit_1m_rows"),
            quick: false,
            // fairlearn takes about two minutes per 1M-row audit here.
            peers: vec![fair_peer(ctx, 1_000_000, 3)],
            input: Some("fair_1000000.csv"),
            flops: None,
            items: Some((1e6, "rows")),
        },
    ]
}

// CSV ingest: pandas' C parser (one thread) and polars' Python reader on
// the harness's THREADS threads (POLARS_MAX_THREADS), the strongest peer;
// each reader in its own process, so each peak RSS is its own.
fn csv_peers(ctx: &Ctx, file: &str, rows: usize) -> Vec<PeerRef> {
    let run = |reader: &str| PeerRun {
        script: "bench_csv.py",
        args: vec![
            "--path".into(),
            data(ctx, file),
            "--rows".into(),
            rows.to_string(),
            "--reps".into(),
            "5".into(),
            "--readers".into(),
            reader.into(),
        ],
    };
    vec![
        PeerRef {
            run: run("pandas"),
            measure: "/readers/pandas.read_csv(engine=c)".into(),
            median_key: "median_s",
            rss: Some("/peak_rss_mib"),
            label: "pandas.read_csv (C parser, 1 thread)".into(),
        },
        PeerRef {
            run: run("polars"),
            measure: format!("/readers/polars.read_csv({THREADS} threads)"),
            median_key: "median_s",
            rss: Some("/peak_rss_mib"),
            label: format!("polars.read_csv (Python, {THREADS} threads)"),
        },
    ]
}

// fairlearn: one process per size (fairness_peer.py), so the 10k-row
// row's peak RSS is the 10k-row process's own.
fn fair_peer(ctx: &Ctx, n: usize, reps: usize) -> PeerRef {
    PeerRef {
        run: PeerRun {
            script: "fairness_peer.py",
            args: vec![
                "--anchor".into(),
                ctx.shared
                    .as_ref()
                    .map(|s| s.join("bench").display().to_string())
                    .unwrap_or_default(),
                "--datadir".into(),
                ctx.data_dir.display().to_string(),
                "--rows".into(),
                n.to_string(),
                "--reps".into(),
                reps.to_string(),
            ],
        },
        measure: "/construct+difference+ratio".into(),
        median_key: "median_s",
        rss: Some("/peak_rss_mib"),
        label: "fairlearn MetricFrame + difference + ratio".into(),
    }
}

/// The GEMM peak, the model rows (the CPU set, or the GPU section) and
/// integrated gradients.
fn model_workloads(ctx: &Ctx) -> Vec<Workload> {
    let mut w = Vec::new();
    let n = if ctx.gpu { 8192 } else { 2048 };
    w.push(Workload {
        name: "matmul_peak".into(),
        what: format!(
            "fp32 GEMM {n}×{n}·{n}×{n} through the `{}` backend (the peak the model rows are compared with)",
            ctx.backend
        ),
        valor: crit("valor-bert", "model", &format!("matmul/f32_{n}")),
        quick: true,
        peers: Vec::new(),
        input: None,
        flops: Some(2.0 * (n as f64).powi(3)),
        items: None,
    });
    if !ctx.gpu {
        w.push(Workload {
            name: "matmul_bf16_peak".into(),
            what: format!(
                "bf16 GEMM {n}×{n}·{n}×{n} through valor-kernels' packed bf16 weight (AMX where the CPU and Linux allow it, else `vdpbf16ps` on AMD CPUs with AVX512-BF16, else AVX-512 FMAs; the activations rounded per call, as `--precision bf16`): the bf16 rows' peak (its % column is of the fp32 peak)"
            ),
            valor: crit("valor-bert", "model", &format!("matmul/bf16_packed_{n}")),
            quick: false,
            peers: Vec::new(),
            input: None,
            flops: Some(2.0 * (n as f64).powi(3)),
            items: None,
        });
    }
    let mut model = |name: &str,
                     geom: Geometry,
                     model_peer: &str,
                     seq: usize,
                     batch: usize,
                     train: bool,
                     quick: bool| {
        let kind = if train { "train" } else { "infer" };
        let what = if train {
            format!("{name} training step (fwd + bwd + AdamW), seq {seq}, batch {batch}")
        } else if batch == 1 {
            format!("{name} inference latency, seq {seq}, batch 1")
        } else {
            format!("{name} inference throughput, seq {seq}, batch {batch}")
        };
        let flops = bert_flops(geom, seq, batch) * if train { 3.0 } else { 1.0 };
        w.push(Workload {
            name: format!("{name}_{kind}_seq{seq}_b{batch}"),
            what,
            valor: crit(
                "valor-bert",
                "model",
                &format!("{name}_{kind}/seq{seq}_b{batch}"),
            ),
            quick,
            peers: Vec::from_iter(bert_peer(ctx, model_peer, seq, batch, train)),
            input: None,
            flops: Some(flops),
            items: Some((batch as f64, "samples")),
        });
    };
    if ctx.gpu {
        model("minilm", MINILM, "minilm", 128, 32, false, true);
        model("minilm", MINILM, "minilm", 128, 32, true, false);
        model("base", BASE, "base", 128, 32, false, true);
        model("base", BASE, "base", 128, 32, true, false);
    } else {
        model("minilm", MINILM, "minilm", 64, 1, false, true);
        model("minilm", MINILM, "minilm", 128, 1, false, false);
        model("minilm", MINILM, "minilm", 64, 32, false, false);
        model("minilm", MINILM, "minilm", 128, 32, false, false);
        model("minilm", MINILM, "minilm", 64, 16, true, false);
        model("minilm", MINILM, "minilm", 128, 16, true, false);
        // Low precision against PyTorch's own switches for it.
        for (precision, peer_precision, peer_label) in [
            (
                "bf16",
                "bf16",
                "PyTorch + transformers, bf16 autocast no_grad forward",
            ),
            (
                "int8",
                "int8-dynamic",
                "PyTorch + transformers, quantize_dynamic int8 no_grad forward",
            ),
        ] {
            for (seq, batch) in [(64, 1), (128, 1), (64, 32), (128, 32)] {
                let mut peer = bert_peer(ctx, "minilm", seq, batch, false);
                if let Some(p) = peer.as_mut() {
                    p.run
                        .args
                        .extend(["--precision".into(), peer_precision.into()]);
                    p.label = peer_label.into();
                }
                w.push(Workload {
                    name: format!("minilm_infer_{precision}_seq{seq}_b{batch}"),
                    what: format!(
                        "MiniLM inference, seq {seq}, batch {batch}, encoder Linear layers in {precision} (`--precision {precision}`)"
                    ),
                    valor: crit(
                        "valor-bert",
                        "model",
                        &format!("minilm_infer_{precision}/seq{seq}_b{batch}"),
                    ),
                    quick: false,
                    peers: Vec::from_iter(peer),
                    input: None,
                    flops: Some(bert_flops(MINILM, seq, batch)),
                    items: Some((batch as f64, "samples")),
                });
            }
        }
    }
    if !ctx.gpu {
        // bf16 training: autocast around the forward pass on both sides.
        let (seq, batch) = (128, 16);
        let mut peer = bert_peer(ctx, "minilm", seq, batch, true);
        if let Some(p) = peer.as_mut() {
            p.run.args.extend(["--precision".into(), "bf16".into()]);
            p.label = "PyTorch + transformers, train step under bf16 autocast".into();
        }
        w.push(Workload {
            name: format!("minilm_train_bf16_seq{seq}_b{batch}"),
            what: format!(
                "MiniLM training step (fwd + bwd + AdamW), seq {seq}, batch {batch}, encoder Linear products in bf16 forward and backward (`valor train --precision bf16`, autocast)"
            ),
            valor: crit(
                "valor-bert",
                "model",
                &format!("minilm_train_bf16/seq{seq}_b{batch}"),
            ),
            quick: false,
            peers: Vec::from_iter(peer),
            input: None,
            flops: Some(bert_flops(MINILM, seq, batch) * 3.0),
            items: Some((batch as f64, "samples")),
        });
    }
    if !ctx.gpu {
        w.push(Workload {
            name: "minilm_ig_seq64".into(),
            what: "integrated gradients of one sentence, MiniLM, seq 64, 50 Gauss–Legendre steps in one batch, baseline [CLS] [PAD]… [SEP]".into(),
            valor: crit("valor-bert", "model", "minilm_ig/seq64_steps50"),
            quick: false,
            input: None,
            peers: vec![PeerRef {
                run: PeerRun {
                    script: "bench_captum.py",
                    args: vec![
                        "--seq".into(),
                        "64".into(),
                        "--n-steps".into(),
                        "50".into(),
                        "--samples".into(),
                        "5".into(),
                        "--threads".into(),
                        THREADS.to_string(),
                    ],
                },
                measure: "/variants/lig_embed".into(),
                median_key: "per_sample_s_median",
                rss: Some("/peak_rss_mib"),
                label: "Captum LayerIntegratedGradients on bert.embeddings".into(),
            }],
            flops: None,
            items: Some((1.0, "sentences")),
        });
    }
    w
}

fn bert_peer(ctx: &Ctx, model: &str, seq: usize, batch: usize, train: bool) -> Option<PeerRef> {
    if ctx.gpu {
        // bench_bert.py times PyTorch on the CPU only.
        return None;
    }
    let (steps, infer_steps) = if train { ("10", "3") } else { ("2", "10") };
    Some(PeerRef {
        run: PeerRun {
            script: "bench_bert.py",
            args: vec![
                "--model".into(),
                model.into(),
                "--seq".into(),
                seq.to_string(),
                "--batch".into(),
                batch.to_string(),
                "--threads".into(),
                THREADS.to_string(),
                "--warmup".into(),
                if train { "3" } else { "1" }.into(),
                "--steps".into(),
                steps.into(),
                "--infer-warmup".into(),
                if train { "1" } else { "3" }.into(),
                "--infer-steps".into(),
                infer_steps.into(),
            ],
        },
        measure: if train { "/train" } else { "/infer" }.into(),
        median_key: "step_s_median",
        rss: Some(if train {
            "/peak_rss_after_train_mib"
        } else {
            "/peak_rss_after_infer_mib"
        }),
        label: format!(
            "PyTorch + transformers, {}",
            if train {
                "train step"
            } else {
                "no_grad forward"
            }
        ),
    })
}

/// `cargo xtask train` end to end.
fn train_workload() -> Workload {
    Workload {
        name: "xtask_train".into(),
        what:
            "`cargo xtask train` wall time (6,000 notes, `tiny` preset, two runs; build excluded)"
                .into(),
        valor: ValorSide::Train,
        quick: false,
        peers: Vec::new(),
        input: None,
        flops: None,
        items: None,
    }
}

/// Workloads the issue asks for that this harness does not measure yet.
pub(super) const PENDING: &[(&str, &str)] = &[
    (
        "gpu_peer",
        "PyTorch on the same GPU: bench_bert.py times the CPU only, so the GPU section reports Valor alone",
    ),
    (
        "bf16",
        "the GPU section measures f32 only; the bf16/int8 kernels (`--precision`) run on the CPU only",
    ),
];
