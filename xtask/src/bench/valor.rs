//! Valor's side of a workload: the bench executables built once, and one
//! process per workload (criterion `--exact ID`, or `cargo xtask train`)
//! watched for peak RSS and foreign CPU.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::sys::{self, Observed, Watch};
use super::workloads::{Ctx, ValorSide, Workload};
use super::{DEFAULT_MAX_WAIT_S, THREADS};
use crate::{cargo, root};

/// Where cargo writes (and criterion keeps its estimates).
pub(super) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Builds every bench target the selection needs (once, optimised) and
/// returns the executables by `package/bench`. A GPU backend adds the
/// matching `valor-bert` feature.
pub(super) fn build(selected: &[Workload], backend: &str) -> Result<BTreeMap<String, PathBuf>> {
    let mut targets: Vec<(&str, &str)> = selected
        .iter()
        .filter_map(|w| match &w.valor {
            ValorSide::Criterion { package, bench, .. } => Some((*package, *bench)),
            ValorSide::Train | ValorSide::AuditStream { .. } => None,
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

pub(super) struct ValorRun {
    pub(super) median_s: f64,
    pub(super) observed: Observed,
    /// The wait for a quiet machine gave up: it started busy (the peers'
    /// `NOT_QUIET`).
    pub(super) started_busy: bool,
}

/// The thread count of both sides, for every pool a workload may use.
pub(super) fn thread_env(cmd: &mut Command) {
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

/// Runs Valor's side of `w` (after waiting for a quiet machine): the
/// criterion median, or the wall time of `cargo xtask train`.
pub(super) fn run_valor(
    w: &Workload,
    ctx: &Ctx,
    exes: &BTreeMap<String, PathBuf>,
    quick: bool,
) -> Result<ValorRun> {
    let (package, bench, id) = match &w.valor {
        ValorSide::Criterion { package, bench, id } => (*package, *bench, id.as_str()),
        ValorSide::Train => return run_train(),
        ValorSide::AuditStream { rows } => return super::audit_stream::run(ctx, *rows),
    };
    let started_busy = wait_for_quiet(&w.name);
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
    Ok(ValorRun {
        median_s: ns / 1e9,
        observed,
        started_busy,
    })
}

/// Waits for a quiet machine (as the peers do) before a timed run; whether
/// the wait gave up and the run starts on a busy machine.
pub(super) fn wait_for_quiet(name: &str) -> bool {
    let quiet = sys::wait_quiet(DEFAULT_MAX_WAIT_S);
    let busy = quiet.get("NOT_QUIET").is_some();
    if busy {
        eprintln!("[bench] {name} starts on a busy machine");
    }
    busy
}

/// `cargo xtask train` into a scratch folder, built first so the time is the
/// training alone.
fn run_train() -> Result<ValorRun> {
    crate::run_cmd(cargo().args(["build", "--release", "-p", "valor-cli"]))?;
    let started_busy = wait_for_quiet("xtask_train");
    let out = std::env::temp_dir().join("valor-bench-train");
    let _ = std::fs::remove_dir_all(&out);
    let watch = Watch::start();
    let result = crate::train::run(&["--out-dir".to_string(), out.display().to_string()]);
    let observed = watch.stop();
    result?;
    Ok(ValorRun {
        median_s: observed.wall_s,
        observed,
        started_busy,
    })
}
