//! `cargo xtask bench`: Valor's criterion benchmarks beside the Python peers
//! from `../shared/bench`, measured in one run on the same input, written to
//! `bench/results.md` and `bench/results.json`.
//!
//! ```text
//! cargo xtask bench [--quick] [--filter SUBSTRING]... [--backend cpu|wgpu|cuda] [--no-peers]
//! ```
//!
//! Each [`Workload`] names a criterion benchmark (package, bench target, id)
//! and the peers that do the same work on the same input, one table row
//! each: CSV ingest has two (pandas' one-threaded C parser and polars'
//! Python reader on the same 2 threads as Valor, the strongest peer). The
//! bench executables are built once (`cargo bench --no-run`) and each
//! workload runs in its own process (`--exact ID`), so the harness can read
//! that process's peak RSS; criterion's median comes from
//! `<target>/criterion/<id>/new/estimates.json`. Each peer run is one
//! Python process, started once and its JSON line kept; a process measures
//! one size of one workload, so each row's peer RSS is its own (fairlearn
//! runs through `fairness_peer.py`, one size per process, because the
//! shared `bench_fairness.py` times 10k and 1M rows in one). Both sides run
//! with the same thread count (2) and wait for a quiet machine first; a run
//! that gave up waiting is marked *started busy*, and one during which
//! other processes used more than 0.15 cores *contaminated*, by the same
//! rules as the peers' `anchor_common.py`, for Valor and peers alike. The
//! machine's description, load average included, is read before the first
//! workload runs.
//!
//! The peers' environment is made once by `../shared/bench/setup.sh` (cached
//! outside the repository, pinned versions); when it cannot be made or a
//! peer fails, the table says why and Valor's numbers are still reported.
//!
//! Files: `workloads` says what each row measures, `valor` runs Valor's
//! side, `peers` the Python peers, `sys` reads `/proc`, `report` writes the
//! results.

mod audit_stream;
mod peers;
pub(crate) mod report;
mod serve;
mod sys;
mod valor;
pub(crate) mod workloads;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::{root, take_flag_value};
use peers::{peer_python, read_peer, run_peer};
use report::{date_utc, git_commit, write_results};
use sys::{Observed, round};
use valor::{ValorRun, build, run_valor};
use workloads::{Ctx, PENDING, Workload, workloads};

/// Threads on both sides (Valor's rayon pools, polars, torch, OpenMP).
const THREADS: usize = 2;
/// How long each side waits for a quiet machine before timing anyway, unless
/// `ANCHOR_MAX_WAIT` says otherwise.
const DEFAULT_MAX_WAIT_S: f64 = 120.0;

struct Options {
    quick: bool,
    no_peers: bool,
    /// Run the serving comparison (`--filter serve`, or a full run).
    serve: bool,
    /// `--filter serve` alone: no criterion workload.
    only_serve: bool,
    filters: Vec<String>,
    backend: String,
}

/// The command line, checked.
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
    let serve_filtered = filters.iter().any(|f| f == "serve");
    filters.retain(|f| f != "serve");
    let serve = serve_filtered || (filters.is_empty() && !quick);
    let only_serve = serve_filtered && filters.is_empty();
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
        serve,
        only_serve,
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
    let selected = if opts.only_serve {
        Vec::new()
    } else {
        select(&all, &opts)?
    };
    if ctx.shared.is_none() {
        eprintln!(
            "[bench] ../shared not found and VALOR_SHARED_DIR unset: MiniLM and tokenizer workloads will be skipped"
        );
    }

    let executables = build(&selected, &opts.backend)?;
    let peers_wanted =
        !opts.no_peers && (opts.serve || selected.iter().any(|w| !w.peers.is_empty()));
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

    // The machine (its load average included) as it is before the first
    // workload runs.
    let machine = sys::machine();
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
        let peers: Vec<Value> = w
            .peers
            .iter()
            .map(|p| match &python {
                Err(why) => json!({"label": p.label, "status": format!("not run: {why}")}),
                Ok(py) => {
                    let result = peer_runs.entry(p.run.key()).or_insert_with(|| {
                        run_peer(&p.run, py, &ctx).map_err(|e| format!("{e:#}"))
                    });
                    match result {
                        Ok((line, observed)) => read_peer(p, line, observed),
                        Err(e) => json!({"label": p.label, "status": format!("failed: {e}")}),
                    }
                }
            })
            .collect();
        let mut row = result_row(w, &valor, peers, &mut peak_flops);
        if let Some(bytes) = w
            .input
            .and_then(|f| std::fs::metadata(ctx.data_dir.join(f)).ok())
            .map(|m| m.len())
        {
            row["input"] = json!({"file": w.input, "bytes": bytes});
        }
        rows.push(row);
    }

    let serving = match (&ctx.shared, opts.serve) {
        (_, false) => Value::Null,
        (None, true) => json!({"error": "../shared not found: the serving bench needs MiniLM"}),
        (Some(shared), true) => {
            let py = python.as_deref().map_err(String::as_str);
            serve::run(shared, &ctx.data_dir, py, opts.quick).unwrap_or_else(|e| {
                eprintln!("[bench] serve failed: {e:#}");
                json!({"error": format!("{e:#}")})
            })
        }
    };

    let commit = git_commit();
    let report = json!({
        "schema": "valor.bench/2",
        "date_utc": date_utc(),
        "git_commit": commit,
        "machine": machine,
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
        "serving": serving,
        "pending": PENDING.iter().map(|(n, why)| json!({"workload": n, "why": why})).collect::<Vec<_>>(),
        "peer_runs": peer_runs.iter().map(|(k, v)| (k.clone(), match v {
            Ok((line, obs)) => json!({"output": line, "process": obs.to_json()}),
            Err(e) => json!({"error": e}),
        })).collect::<serde_json::Map<_, _>>(),
    });
    write_results(&report)
}

/// The workloads `opts` asks for (`--quick`, `--filter`), with the GEMM
/// peak added when a model row needs it.
fn select(all: &[Workload], opts: &Options) -> Result<Vec<Workload>> {
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
    Ok(selected)
}

/// One row of `results`: Valor's numbers, each peer's, their ratios and
/// the throughput and FLOP rates; the GEMM row sets `peak_flops`.
fn result_row(
    w: &Workload,
    valor: &ValorRun,
    mut peers: Vec<Value>,
    peak_flops: &mut Option<f64>,
) -> Value {
    let valor_s = valor.median_s;
    let mut valor_run = valor.observed.to_json();
    valor_run["started_on_busy_machine"] = json!(valor.started_busy);
    for peer in &mut peers {
        let peer_s = peer["median_s"].as_f64();
        peer["peer_over_valor"] = json!(peer_s.map(|p| round(p / valor_s, 3)));
        if let Some((n, _)) = w.items {
            peer["per_s"] = json!(peer_s.map(|p| round(n / p, 1)));
        }
        if let Some(f) = w.flops {
            peer["gflop_per_s"] = json!(peer_s.map(|p| round(f / p / 1e9, 1)));
        }
    }
    let mut row = json!({
        "workload": w.name,
        "what": w.what,
        "valor_median_s": valor_s,
        "valor_peak_rss_mib": valor.observed.peak_rss_mib.map(|x| round(x, 1)),
        "valor_run": valor_run,
        "peers": peers,
    });
    if let Some((n, unit)) = w.items {
        row["valor_per_s"] = json!(round(n / valor_s, 1));
        row["unit"] = json!(unit);
    }
    if let Some(f) = w.flops {
        let g = f / valor_s / 1e9;
        row["valor_gflop_per_s"] = json!(round(g, 1));
        if w.name == "matmul_peak" {
            *peak_flops = Some(g);
        } else if let Some(peak) = *peak_flops {
            row["valor_fraction_of_peak"] = json!(round(g / peak, 3));
        }
    }
    row
}

fn remove_flag(args: &mut Vec<String>, flag: &str) -> bool {
    let before = args.len();
    args.retain(|a| a != flag);
    args.len() != before
}

/// `VALOR_SHARED_DIR`, else `../shared` beside the workspace, when it exists.
fn shared_dir() -> Option<PathBuf> {
    std::env::var_os("VALOR_SHARED_DIR")
        .map(PathBuf::from)
        .or_else(|| Some(root().parent()?.join("shared")))
        .filter(|p| p.is_dir())
        .and_then(|p| p.canonicalize().ok())
}
