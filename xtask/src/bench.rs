//! `cargo xtask bench`: Valor's criterion benchmarks beside the Python peers
//! from `../shared/bench`, measured in one run on the same input, written to
//! `bench/results.md` and `bench/results.json`.
//!
//! ```text
//! cargo xtask bench [--quick] [--filter SUBSTRING]... [--backend cpu|wgpu|cuda] [--no-peers]
//! ```
//!
//! Each [`Workload`] names a criterion benchmark (package, bench target, id)
//! and, optionally, the peer run that does the same work on the same input.
//! The bench executables are built once (`cargo bench --no-run`) and each
//! workload runs in its own process (`--exact ID`), so the harness can read
//! that process's peak RSS; criterion's median comes from
//! `<target>/criterion/<id>/new/estimates.json`. A peer run (one Python
//! process; several workloads may share it, e.g. the fairlearn script times
//! 10k and 1M rows) is started once and its JSON line kept. Both sides run
//! with the same thread count (2) and wait for a quiet machine first; a run
//! during which other processes used more than 0.15 cores is flagged
//! *contaminated*, by the same rule as the peers' `anchor_common.py`.
//!
//! The peers' environment is made once by `../shared/bench/setup.sh` (cached
//! outside the repository, pinned versions); when it cannot be made or a
//! peer fails, the table says why and Valor's numbers are still reported.

mod sys;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::{cargo, root, take_flag_value};
use sys::{Observed, Watch, round};

/// Threads on both sides (Valor's rayon pools, polars, torch, OpenMP).
const THREADS: usize = 2;
/// How long each side waits for a quiet machine before timing anyway, unless
/// `ANCHOR_MAX_WAIT` says otherwise.
const DEFAULT_MAX_WAIT_S: f64 = 120.0;
/// The HF tokenizers peer, written to the data folder at run time.
const TOKENIZE_PEER: &str = include_str!("bench/tokenize_peer.py");

/// How Valor's side of a workload is run.
#[derive(Clone)]
enum ValorSide {
    /// One criterion benchmark.
    Criterion {
        package: &'static str,
        bench: &'static str,
        /// Criterion id (`group/function`), the folder under `criterion/`.
        id: String,
    },
    /// `cargo xtask train` end to end (after building it), timed once.
    Train,
}

/// One row of the results table.
#[derive(Clone)]
struct Workload {
    name: String,
    what: String,
    valor: ValorSide,
    /// Runs in `--quick` mode.
    quick: bool,
    peer: Option<PeerRef>,
    /// Floating-point operations per timed iteration (model workloads).
    flops: Option<f64>,
    /// Samples (sentences, rows) per timed iteration, for the throughput column.
    items: Option<(f64, &'static str)>,
}

/// Which peer run answers a workload, and where its numbers sit in the
/// script's JSON line.
#[derive(Clone)]
struct PeerRef {
    run: PeerRun,
    /// JSON pointer to the measured dict (with `median_s`, `all_clean`,
    /// `loop_cpu`), or for bench_bert the `infer`/`train` summary.
    measure: String,
    /// Key of the median seconds inside that dict.
    median_key: &'static str,
    /// JSON pointer to the peer's own peak RSS report, when it has one more
    /// precise than the whole process (bench_bert: after inference only).
    rss: Option<&'static str>,
    label: String,
}

/// One peer process: script + arguments (the cache key).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PeerRun {
    script: &'static str,
    args: Vec<String>,
}

impl PeerRun {
    fn key(&self) -> String {
        format!("{} {}", self.script, self.args.join(" "))
    }
}

/// Model geometry for the FLOP count.
#[derive(Clone, Copy)]
struct Geometry {
    layers: f64,
    hidden: f64,
    intermediate: f64,
}

const MINILM: Geometry = Geometry {
    layers: 6.0,
    hidden: 384.0,
    intermediate: 1536.0,
};
const BASE: Geometry = Geometry {
    layers: 12.0,
    hidden: 768.0,
    intermediate: 3072.0,
};

/// Forward FLOPs of a BERT encoder on `batch × seq` tokens: per layer and
/// token the Q, K, V, output and two feed-forward matmuls (2·(4h² + 2hi))
/// plus attention scores and context (2·2·seq·h). Embedding look-ups, layer
/// norms, softmax and the head are left out (< 1%). A training step counts
/// 3× (backward ≈ 2× forward), the usual MFU convention.
fn bert_flops(g: Geometry, seq: usize, batch: usize) -> f64 {
    let (s, h, i) = (seq as f64, g.hidden, g.intermediate);
    batch as f64 * s * g.layers * (8.0 * h * h + 4.0 * h * i + 4.0 * s * h)
}

struct Ctx {
    data_dir: PathBuf,
    shared: Option<PathBuf>,
    backend: String,
    gpu: bool,
}

fn workloads(ctx: &Ctx) -> Vec<Workload> {
    let data = |f: &str| ctx.data_dir.join(f).display().to_string();
    let crit = |package, bench, id: &str| ValorSide::Criterion {
        package,
        bench,
        id: id.to_string(),
    };
    let csv_peer = |file: &str, rows: usize| PeerRef {
        run: PeerRun {
            script: "bench_csv.py",
            args: vec![
                "--path".into(),
                data(file),
                "--rows".into(),
                rows.to_string(),
                "--reps".into(),
                "5".into(),
                "--readers".into(),
                "pandas".into(),
            ],
        },
        measure: "/readers/pandas.read_csv(engine=c)".into(),
        median_key: "median_s",
        rss: Some("/peak_rss_mib"),
        label: "pandas.read_csv".into(),
    };
    let fair_run = PeerRun {
        script: "bench_fairness.py",
        args: vec![
            "--datadir".into(),
            ctx.data_dir.display().to_string(),
            "--reps-1m".into(),
            // fairlearn takes about two minutes per 1M-row audit here.
            "3".into(),
            "--reps-10k".into(),
            "30".into(),
        ],
    };
    let fair_peer = |n: usize| PeerRef {
        run: fair_run.clone(),
        measure: format!("/sizes/{n}/construct+difference+ratio"),
        median_key: "median_s",
        rss: None,
        label: "fairlearn MetricFrame + difference + ratio".into(),
    };
    let mut w = vec![
        Workload {
            name: "csv_ingest_100k".into(),
            what:
                "read + validate a 100,000-row CSV (id, age, income, group, label, ~100-char text)"
                    .into(),
            valor: crit("valor-data", "ingest", "ingest/csv_100k_rows"),
            quick: true,
            peer: Some(csv_peer("text_100k.csv", 100_000)),
            flops: None,
            items: Some((100_000.0, "rows")),
        },
        Workload {
            name: "csv_ingest_1m".into(),
            what: "read + validate a 1,000,000-row CSV (same shape, ~67 MB)".into(),
            valor: crit("valor-data", "ingest", "ingest/csv_1m_rows"),
            quick: false,
            peer: Some(csv_peer("text_1m.csv", 1_000_000)),
            flops: None,
            items: Some((1e6, "rows")),
        },
        Workload {
            name: "tokenize_100k".into(),
            what: "tokenize 100,000 sentences (MiniLM tokenizer.json, truncation 128)".into(),
            valor: crit("valor-data", "ingest", "tokenize/minilm_100k_sentences"),
            quick: false,
            peer: ctx.shared.as_ref().map(|s| PeerRef {
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
                        data("text_100k.csv"),
                    ],
                },
                measure: "/encode_batch".into(),
                median_key: "median_s",
                rss: Some("/peak_rss_mib"),
                label: "HF tokenizers (Python) encode_batch".into(),
            }),
            flops: None,
            items: Some((100_000.0, "sentences")),
        },
        Workload {
            name: "fair_audit_10k".into(),
            what: "fairness audit of 10,000 predictions, 3 groups (fair_data.py, seed 42)".into(),
            valor: crit("valor-fair", "audit", "fair/audit_10k_rows"),
            quick: true,
            peer: Some(fair_peer(10_000)),
            flops: None,
            items: Some((10_000.0, "rows")),
        },
        Workload {
            name: "fair_audit_1m".into(),
            what: "fairness audit of 1,000,000 predictions, 3 groups (fair_data.py, seed 42)"
                .into(),
            valor: crit("valor-fair", "audit", "fair/audit_1m_rows"),
            quick: false,
            peer: Some(fair_peer(1_000_000)),
            flops: None,
            items: Some((1e6, "rows")),
        },
    ];

    // Model workloads: the CPU set, or the GPU section.
    let n = if ctx.gpu { 8192 } else { 2048 };
    w.push(Workload {
        name: "matmul_peak".into(),
        what: format!(
            "fp32 GEMM {n}×{n}·{n}×{n} through the `{}` backend (the peak the model rows are compared with)",
            ctx.backend
        ),
        valor: crit("valor-bert", "model", &format!("matmul/f32_{n}")),
        quick: true,
        peer: None,
        flops: Some(2.0 * (n as f64).powi(3)),
        items: None,
    });
    let bert_peer = |model: &str, seq: usize, batch: usize, train: bool| {
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
    };
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
            peer: bert_peer(model_peer, seq, batch, train),
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
    }
    if !ctx.gpu {
        w.push(Workload {
            name: "minilm_ig_seq64".into(),
            what: "integrated gradients of one sentence, MiniLM, seq 64, 50 Gauss–Legendre steps in one batch, baseline [CLS] [PAD]… [SEP]".into(),
            valor: crit("valor-bert", "model", "minilm_ig/seq64_steps50"),
            quick: false,
            peer: Some(PeerRef {
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
            }),
            flops: None,
            items: Some((1.0, "sentences")),
        });
    }
    w.push(Workload {
        name: "xtask_train".into(),
        what:
            "`cargo xtask train` wall time (6,000 notes, `tiny` preset, two runs; build excluded)"
                .into(),
        valor: ValorSide::Train,
        quick: false,
        peer: None,
        flops: None,
        items: None,
    });
    w
}

/// Workloads the issue asks for that this harness does not measure yet.
const PENDING: &[(&str, &str)] = &[
    (
        "gpu_peer",
        "PyTorch on the same GPU: bench_bert.py times the CPU only, so the GPU section reports Valor alone",
    ),
    (
        "bf16",
        "the GPU section measures f32 only; valor-bert has no bf16 switch yet",
    ),
];

struct Options {
    quick: bool,
    no_peers: bool,
    filters: Vec<String>,
    backend: String,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut args = args.to_vec();
    let quick = remove_flag(&mut args, "--quick");
    let no_peers = remove_flag(&mut args, "--no-peers");
    let mut filters = Vec::new();
    while args.iter().any(|a| a == "--filter") {
        match take_flag_value(&mut args, "--filter") {
            Some(f) => filters.push(f),
            None => bail!("--filter needs a workload name (or part of one)"),
        }
    }
    let backend = take_flag_value(&mut args, "--backend").unwrap_or_else(|| "cpu".into());
    if !["cpu", "wgpu", "cuda"].contains(&backend.as_str()) {
        bail!("--backend {backend}: expected cpu, wgpu or cuda");
    }
    if !args.is_empty() {
        bail!(
            "unknown arguments: {}\nusage: cargo xtask bench [--quick] [--filter NAME]... [--backend cpu|wgpu|cuda] [--no-peers]",
            args.join(" ")
        );
    }
    Ok(Options {
        quick,
        no_peers,
        filters,
        backend,
    })
}

pub fn run(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    let ctx = Ctx {
        data_dir: std::env::var_os("VALOR_BENCH_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("valor-peers-data")),
        shared: shared_dir(),
        backend: opts.backend.clone(),
        gpu: opts.backend != "cpu",
    };
    std::fs::create_dir_all(&ctx.data_dir)
        .with_context(|| format!("creating {}", ctx.data_dir.display()))?;

    let all = workloads(&ctx);
    let mut selected: Vec<Workload> = all
        .iter()
        .filter(|w| !opts.quick || w.quick)
        .filter(|w| opts.filters.is_empty() || opts.filters.iter().any(|f| w.name.contains(f)))
        .cloned()
        .collect();
    if selected.is_empty() {
        let names: Vec<&str> = all.iter().map(|w| w.name.as_str()).collect();
        bail!("no workload matches; workloads are: {}", names.join(", "));
    }
    // Model rows are reported against the measured GEMM peak: measure it too.
    if selected.iter().any(|w| w.flops.is_some())
        && !selected.iter().any(|w| w.name == "matmul_peak")
        && let Some(m) = all.iter().find(|w| w.name == "matmul_peak")
    {
        selected.insert(0, m.clone());
    }
    if ctx.shared.is_none() {
        eprintln!(
            "[bench] ../shared not found and VALOR_SHARED_DIR unset: MiniLM and tokenizer workloads will be skipped"
        );
    }

    let executables = build(&selected, &opts.backend)?;
    let peers_wanted = !opts.no_peers && selected.iter().any(|w| w.peer.is_some());
    let python = if !peers_wanted {
        Err("peers not requested (--no-peers)".to_string())
    } else {
        eprintln!(
            "[bench] preparing the peers' Python environment (setup.sh; first use downloads ~4 GB)"
        );
        peer_python(ctx.shared.as_deref())
    };
    if let (true, Err(why)) = (peers_wanted, &python) {
        eprintln!("[bench] peers cannot run: {why}; reporting Valor's numbers alone");
    }

    let mut peer_runs: BTreeMap<String, Result<(Value, Observed), String>> = BTreeMap::new();
    let mut rows = Vec::new();
    let mut peak_flops: Option<f64> = None;
    for w in &selected {
        eprintln!("[bench] {}: {}", w.name, w.what);
        let valor = match run_valor(w, &ctx, &executables, opts.quick) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("[bench] {} failed: {e:#}", w.name);
                rows.push(json!({"workload": w.name, "what": w.what, "error": format!("{e:#}")}));
                continue;
            }
        };
        let peer = match (&w.peer, &python) {
            (None, _) => json!({"status": "no peer for this workload"}),
            (Some(_), Err(why)) => json!({"status": format!("not run: {why}")}),
            (Some(p), Ok(py)) => {
                let key = p.run.key();
                let result = peer_runs
                    .entry(key)
                    .or_insert_with(|| run_peer(&p.run, py, &ctx).map_err(|e| format!("{e:#}")));
                match result {
                    Ok((line, observed)) => read_peer(p, line, observed),
                    Err(e) => json!({"status": format!("failed: {e}")}),
                }
            }
        };
        let valor_s = valor.median_s;
        let mut row = json!({
            "workload": w.name,
            "what": w.what,
            "valor_median_s": valor_s,
            "valor_peak_rss_mib": valor.observed.peak_rss_mib.map(|x| round(x, 1)),
            "valor_run": valor.observed.to_json(),
            "peer": peer,
        });
        let peer_s = row["peer"]["median_s"].as_f64();
        row["peer_over_valor"] = json!(peer_s.map(|p| round(p / valor_s, 3)));
        if let Some((n, unit)) = w.items {
            row["valor_per_s"] = json!(round(n / valor_s, 1));
            row["peer_per_s"] = json!(peer_s.map(|p| round(n / p, 1)));
            row["unit"] = json!(unit);
        }
        if let Some(f) = w.flops {
            let g = f / valor_s / 1e9;
            row["valor_gflop_per_s"] = json!(round(g, 1));
            row["peer_gflop_per_s"] = json!(peer_s.map(|p| round(f / p / 1e9, 1)));
            if w.name == "matmul_peak" {
                peak_flops = Some(g);
            } else if let Some(peak) = peak_flops {
                row["valor_fraction_of_peak"] = json!(round(g / peak, 3));
            }
        }
        rows.push(row);
    }

    let commit = git_commit();
    let report = json!({
        "schema": "valor.bench/1",
        "date_utc": date_utc(),
        "git_commit": commit,
        "machine": sys::machine(),
        "backend": opts.backend,
        "dtype": "f32",
        "threads": THREADS,
        "profile": "bench (release: opt-level 3, thin LTO, codegen-units 16)",
        "quick": opts.quick,
        "filters": opts.filters,
        "peers": match &python {
            Ok(p) => json!({"python": p.display().to_string()}),
            Err(why) => json!({"not_run": why}),
        },
        "matmul_peak_gflop_per_s": peak_flops.map(|x| round(x, 1)),
        "results": rows,
        "pending": PENDING.iter().map(|(n, why)| json!({"workload": n, "why": why})).collect::<Vec<_>>(),
        "peer_runs": peer_runs.iter().map(|(k, v)| (k.clone(), match v {
            Ok((line, obs)) => json!({"output": line, "process": obs.to_json()}),
            Err(e) => json!({"error": e}),
        })).collect::<serde_json::Map<_, _>>(),
    });
    write_results(&report)
}

fn remove_flag(args: &mut Vec<String>, flag: &str) -> bool {
    let before = args.len();
    args.retain(|a| a != flag);
    args.len() != before
}

fn shared_dir() -> Option<PathBuf> {
    std::env::var_os("VALOR_SHARED_DIR")
        .map(PathBuf::from)
        .or_else(|| Some(root().parent()?.join("shared")))
        .filter(|p| p.is_dir())
        .and_then(|p| p.canonicalize().ok())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Builds every bench target the selection needs (once, optimised) and
/// returns the executables by `package/bench`. A GPU backend adds the
/// matching `valor-bert` feature.
fn build(selected: &[Workload], backend: &str) -> Result<BTreeMap<String, PathBuf>> {
    let mut targets: Vec<(&str, &str)> = selected
        .iter()
        .filter_map(|w| match &w.valor {
            ValorSide::Criterion { package, bench, .. } => Some((*package, *bench)),
            ValorSide::Train => None,
        })
        .collect();
    targets.sort_unstable();
    targets.dedup();
    let mut exes = BTreeMap::new();
    for (package, bench) in targets {
        let mut cmd = cargo();
        cmd.args([
            "bench",
            "--no-run",
            "-p",
            package,
            "--bench",
            bench,
            "--message-format=json-render-diagnostics",
        ]);
        if package == "valor-bert" && backend != "cpu" {
            cmd.args(["--features", backend]);
        }
        eprintln!("[bench] building {package} bench `{bench}` (bench profile)");
        let out = cmd
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running cargo bench --no-run -p {package}"))?;
        if !out.status.success() {
            bail!("building the `{bench}` benchmark of {package} failed");
        }
        let exe = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == bench)
            .filter(|v| {
                v["target"]["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|x| x == "bench"))
            })
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .with_context(|| format!("cargo named no executable for {package} bench `{bench}`"))?;
        exes.insert(format!("{package}/{bench}"), exe);
    }
    Ok(exes)
}

struct ValorRun {
    median_s: f64,
    observed: Observed,
}

fn thread_env(cmd: &mut Command) {
    let t = THREADS.to_string();
    for k in [
        "RAYON_NUM_THREADS",
        "RAYON_RS_NUM_CPUS",
        "POLARS_MAX_THREADS",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
    ] {
        cmd.env(k, &t);
    }
}

fn run_valor(
    w: &Workload,
    ctx: &Ctx,
    exes: &BTreeMap<String, PathBuf>,
    quick: bool,
) -> Result<ValorRun> {
    let quiet = sys::wait_quiet(DEFAULT_MAX_WAIT_S);
    let (package, bench, id) = match &w.valor {
        ValorSide::Criterion { package, bench, id } => (*package, *bench, id.as_str()),
        ValorSide::Train => return run_train(),
    };
    let exe = &exes[&format!("{package}/{bench}")];
    let criterion_home = target_dir().join("criterion");
    let estimates = criterion_home.join(id).join("new").join("estimates.json");
    let _ = std::fs::remove_file(&estimates);
    let mut cmd = Command::new(exe);
    cmd.current_dir(root().join("crates").join(package))
        .args(["--bench", "--exact", id])
        .env("CRITERION_HOME", &criterion_home)
        .env("VALOR_BENCH_DATA", &ctx.data_dir)
        .env("VALOR_BENCH_BACKEND", &ctx.backend);
    if quick {
        cmd.args(["--warm-up-time", "1", "--measurement-time", "3"]);
    }
    thread_env(&mut cmd);
    if let Some(s) = &ctx.shared {
        cmd.env("VALOR_SHARED_DIR", s);
    }
    let watch = Watch::start();
    let status = cmd
        .status()
        .with_context(|| format!("starting {}", exe.display()))?;
    let observed = watch.stop();
    if !status.success() {
        bail!("{} --exact {id} failed with {status}", exe.display());
    }
    let text = std::fs::read_to_string(&estimates).with_context(|| {
        format!(
            "reading {} (was the benchmark skipped? see its output above)",
            estimates.display()
        )
    })?;
    let v: Value = serde_json::from_str(&text)?;
    let ns = v
        .pointer("/median/point_estimate")
        .and_then(Value::as_f64)
        .with_context(|| format!("no median in {}", estimates.display()))?;
    if quiet.get("NOT_QUIET").is_some() {
        eprintln!("[bench] {} ran on a busy machine", w.name);
    }
    Ok(ValorRun {
        median_s: ns / 1e9,
        observed,
    })
}

/// `cargo xtask train` into a scratch folder, built first so the time is the
/// training alone.
fn run_train() -> Result<ValorRun> {
    crate::run_cmd(cargo().args(["build", "--release", "-p", "valor-cli"]))?;
    let out = std::env::temp_dir().join("valor-bench-train");
    let _ = std::fs::remove_dir_all(&out);
    let watch = Watch::start();
    let result = crate::train::run(&["--out-dir".to_string(), out.display().to_string()]);
    let observed = watch.stop();
    result?;
    Ok(ValorRun {
        median_s: observed.wall_s,
        observed,
    })
}

/// The peers' python (made once by `setup.sh`), or why it cannot be had.
fn peer_python(shared: Option<&Path>) -> Result<PathBuf, String> {
    let shared = shared.ok_or("../shared not found and VALOR_SHARED_DIR not set")?;
    let out = Command::new("bash")
        .arg(shared.join("bench").join("setup.sh"))
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("running setup.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "setup.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    let py = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_string();
    if py.is_empty() {
        return Err("setup.sh printed no python".into());
    }
    Ok(PathBuf::from(py))
}

fn run_peer(run: &PeerRun, python: &Path, ctx: &Ctx) -> Result<(Value, Observed)> {
    let shared = ctx.shared.as_deref().context("no shared folder")?;
    let script = if run.script == "tokenize_peer.py" {
        let path = ctx.data_dir.join(run.script);
        std::fs::write(&path, TOKENIZE_PEER)
            .with_context(|| format!("writing {}", path.display()))?;
        path
    } else {
        shared.join("bench").join(run.script)
    };
    let out_file = ctx.data_dir.join("peer-result.jsonl");
    let _ = std::fs::remove_file(&out_file);
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .args(&run.args)
        .arg("--out")
        .arg(&out_file)
        .env("HF_HUB_OFFLINE", "1")
        .env("TOKENIZERS_PARALLELISM", "true")
        .env("VALOR_MINILM_DIR", shared.join("models/all-MiniLM-L6-v2"));
    if std::env::var_os("ANCHOR_MAX_WAIT").is_none() {
        cmd.env("ANCHOR_MAX_WAIT", DEFAULT_MAX_WAIT_S.to_string());
    }
    thread_env(&mut cmd);
    eprintln!("[bench] peer: {} {}", run.script, run.args.join(" "));
    let watch = Watch::start();
    let status = cmd
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("starting {}", python.display()))?;
    let observed = watch.stop();
    if !status.success() {
        bail!("{} exited with {status}", run.script);
    }
    let text = std::fs::read_to_string(&out_file)
        .with_context(|| format!("reading {}", out_file.display()))?;
    let line = text.lines().last().context("the peer wrote no result")?;
    Ok((serde_json::from_str(line)?, observed))
}

/// The peer's median, peak RSS and cleanliness for one workload.
fn read_peer(p: &PeerRef, line: &Value, observed: &Observed) -> Value {
    let Some(m) = line.pointer(&p.measure) else {
        return json!({"status": format!("failed: no {} in the peer's output", p.measure)});
    };
    let Some(median) = m.get(p.median_key).and_then(Value::as_f64) else {
        return json!({"status": format!("failed: no {}{} in the peer's output", p.measure, p.median_key)});
    };
    let dirty_reps = m["all_clean"] == false;
    let loop_dirty = m["loop_cpu"]["contaminated"] == true;
    let not_quiet = line["quiet"]["NOT_QUIET"] == true;
    let rss = p
        .rss
        .and_then(|ptr| line.pointer(ptr))
        .and_then(Value::as_f64)
        .or(observed.peak_rss_mib);
    json!({
        "status": "ok",
        "label": p.label,
        "median_s": median,
        "peak_rss_mib": rss.map(|x| round(x, 1)),
        "foreign_cores": m["loop_cpu"]["foreign_cores"],
        "contaminated": dirty_reps || loop_dirty,
        "started_on_busy_machine": not_quiet,
    })
}

fn git_commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(c) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{c}-dirty") } else { c }
        }
        None => "unknown".into(),
    }
}

fn date_utc() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Writes `path` atomically: a temp file in the same folder, synced, renamed.
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn write_results(report: &Value) -> Result<()> {
    let dir = root().join("bench");
    std::fs::create_dir_all(&dir)?;
    let json_path = dir.join("results.json");
    write_atomic(&json_path, &(serde_json::to_string_pretty(report)? + "\n"))?;
    let md = markdown(report);
    let md_path = dir.join("results.md");
    write_atomic(&md_path, &md)?;
    print!("{md}");
    println!("\nwrote {} and {}", md_path.display(), json_path.display());
    Ok(())
}

fn markdown(r: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let m = &r["machine"];
    let mut md = String::from("# Valor benchmarks\n\n");
    md += &format!(
        "- Machine: {} ({} cores; {}), load average at start {}\n- Backend `{}` ({}), {} threads on both sides, profile {}\n- Commit `{}`, {}, {}{}\n- Peers: {}\n",
        s(&m["cpu"]),
        m["cores"],
        m["cpu_features"]
            .as_array()
            .map(|a| a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default(),
        s(&m["loadavg_at_start"]),
        s(&r["backend"]),
        s(&r["dtype"]),
        r["threads"],
        s(&r["profile"]),
        s(&r["git_commit"]),
        s(&r["date_utc"]),
        s(&m["rustc"]),
        if r["quick"] == true {
            ", `--quick`"
        } else {
            ""
        },
        r["peers"]["python"]
            .as_str()
            .map(|p| format!("`{p}`"))
            .unwrap_or_else(|| s(&r["peers"]["not_run"])),
    );
    if let Some(p) = r["matmul_peak_gflop_per_s"].as_f64() {
        md += &format!("- Measured fp32 GEMM peak: {p:.1} GFLOP/s\n");
    }
    md += "\n| workload | Valor median | peer median | peer / Valor | throughput (Valor · peer) | GFLOP/s (Valor · peer) · of peak | peak RSS MiB (Valor · peer) | load |\n";
    md += "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n";
    let dash = || "—".to_string();
    let mut notes = Vec::new();
    for row in r["results"].as_array().into_iter().flatten() {
        let name = s(&row["workload"]);
        if let Some(e) = row["error"].as_str() {
            md += &format!("| {name} | failed | | | | | | |\n");
            notes.push(format!("{name}: {e}"));
            continue;
        }
        let peer = &row["peer"];
        let secs = |v: &Value| v.as_f64().map(fmt_secs).unwrap_or_else(dash);
        let num = |v: &Value| v.as_f64().map(fmt_num).unwrap_or_else(dash);
        let unit = row["unit"].as_str().unwrap_or("");
        let throughput = if row["valor_per_s"].is_null() {
            dash()
        } else {
            format!(
                "{} · {} {unit}/s",
                num(&row["valor_per_s"]),
                num(&row["peer_per_s"])
            )
        };
        let gflops = if row["valor_gflop_per_s"].is_null() {
            dash()
        } else {
            let frac = row["valor_fraction_of_peak"]
                .as_f64()
                .map(|f| format!(" · {:.0}%", f * 100.0))
                .unwrap_or_default();
            format!(
                "{} · {}{frac}",
                num(&row["valor_gflop_per_s"]),
                num(&row["peer_gflop_per_s"])
            )
        };
        let mut load = Vec::new();
        if row["valor_run"]["contaminated"] == true {
            load.push(format!(
                "Valor contaminated ({} foreign cores)",
                row["valor_run"]["foreign_cores"]
            ));
        }
        if peer["contaminated"] == true {
            load.push(format!(
                "peer contaminated ({} foreign cores)",
                peer["foreign_cores"]
            ));
        }
        if peer["started_on_busy_machine"] == true {
            load.push("peer started busy".into());
        }
        let load = if load.is_empty() {
            "clean".into()
        } else {
            load.join("; ")
        };
        let peer_cell = match peer["status"].as_str() {
            Some("ok") => secs(&peer["median_s"]),
            Some(other) => {
                notes.push(format!("{name}: peer {other}"));
                dash()
            }
            None => dash(),
        };
        md += &format!(
            "| {name} | {} | {peer_cell} | {} | {throughput} | {gflops} | {} · {} | {load} |\n",
            secs(&row["valor_median_s"]),
            row["peer_over_valor"]
                .as_f64()
                .map(|x| format!("{x:.2}×"))
                .unwrap_or_else(dash),
            num(&row["valor_peak_rss_mib"]),
            num(&peer["peak_rss_mib"]),
        );
    }
    md += "\nWorkloads:\n\n";
    for row in r["results"].as_array().into_iter().flatten() {
        let peer = row["peer"]["label"]
            .as_str()
            .map(|l| format!(" — peer: {l}"))
            .unwrap_or_default();
        md += &format!("- `{}`: {}{peer}\n", s(&row["workload"]), s(&row["what"]));
    }
    if !notes.is_empty() {
        md += "\nNotes:\n\n";
        for n in notes {
            md += &format!("- {n}\n");
        }
    }
    let pending = r["pending"].as_array().cloned().unwrap_or_default();
    if !pending.is_empty() {
        md += "\nPending:\n\n";
        for p in pending {
            md += &format!("- `{}`: {}\n", s(&p["workload"]), s(&p["why"]));
        }
    }
    md
}

fn fmt_secs(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

fn fmt_num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}
