//! The `audit_stream` row: `valor audit --stream` of a Parquet log too large
//! to audit in memory, timed once end to end (read, count, report), with the
//! process's peak RSS. The log is made by valor-data's `fair_parquet`
//! example (fair_data.py's rows, seed 42, as Parquet in row groups of 2^20
//! rows) into the data folder, once per size. Rows: 100,000,000 unless
//! `VALOR_BENCH_AUDIT_ROWS` says otherwise (generating 100M rows takes about
//! a minute on 2 cores, and the file is about 45 MB).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::sys::Watch;
use super::valor::{ValorRun, target_dir, thread_env, wait_for_quiet};
use super::workloads::{Ctx, ValorSide, Workload};
use crate::{cargo, run_cmd};

/// Rows per chunk: one Parquet row group of the generated log.
const CHUNK_ROWS: &str = "1048576";

/// Rows of the log (`VALOR_BENCH_AUDIT_ROWS`, default 100M).
fn rows() -> u64 {
    std::env::var("VALOR_BENCH_AUDIT_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(100_000_000)
}

/// The row of the table.
pub(super) fn workload() -> Workload {
    let rows = rows();
    Workload {
        name: "audit_stream".into(),
        what: format!(
            "valor audit --stream of a {rows}-row Parquet log (fair_parquet: fair_data.py's rows, \
             seed 42, 3 groups), chunks of {CHUNK_ROWS} rows; end to end, one run"
        ),
        valor: ValorSide::AuditStream { rows },
        quick: false,
        peers: Vec::new(),
        input: None,
        flops: None,
        items: Some((rows as f64, "rows")),
    }
}

/// Builds `valor` and the generator (release), makes the log when missing,
/// then times the streamed audit.
pub(super) fn run(ctx: &Ctx, rows: u64) -> Result<ValorRun> {
    run_cmd(cargo().args(["build", "--release", "-p", "valor-cli"]))?;
    run_cmd(cargo().args([
        "build",
        "--release",
        "-p",
        "valor-data",
        "--example",
        "fair_parquet",
    ]))?;
    let release = target_dir().join("release");
    let log: PathBuf = ctx.data_dir.join(format!("fair_{rows}.parquet"));
    if !log.exists() {
        eprintln!("[bench] generating {} ({rows} rows)", log.display());
        run_cmd(
            Command::new(release.join("examples").join("fair_parquet"))
                .arg(rows.to_string())
                .arg(&log),
        )?;
    }
    let started_busy = wait_for_quiet("audit_stream");
    let mut cmd = Command::new(release.join("valor"));
    cmd.args([
        "audit",
        "--stream",
        "--chunk-rows",
        CHUNK_ROWS,
        "--predictions",
    ])
    .arg(&log)
    .args(["--group", "group", "--json"])
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    thread_env(&mut cmd);
    let watch = Watch::start();
    let out = cmd.output().context("running valor audit --stream")?;
    let observed = watch.stop();
    // Exit 1 is a breached threshold (none is set here): only 0 is a pass.
    if !out.status.success() {
        bail!("valor audit --stream failed with {}", out.status);
    }
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("reading the audit's JSON")?;
    if report["rows"].as_u64() != Some(rows) {
        bail!(
            "the audit counted {} rows, the log has {rows}",
            report["rows"]
        );
    }
    Ok(ValorRun {
        median_s: observed.wall_s,
        observed,
        started_busy,
    })
}
