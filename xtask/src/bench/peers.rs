//! The Python peers: their environment (made once by `setup.sh`), one
//! process per peer run, and each workload's numbers read from its JSON line.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::DEFAULT_MAX_WAIT_S;
use super::sys::{Observed, Watch, round};
use super::valor::thread_env;
use super::workloads::{Ctx, PeerRef, PeerRun};

/// Peers kept in this repository (not in `../shared/bench`), written to the
/// data folder at run time: HF tokenizers, and fairlearn one size per process.
const EMBEDDED_PEERS: &[(&str, &str)] = &[
    ("tokenize_peer.py", include_str!("tokenize_peer.py")),
    ("fairness_peer.py", include_str!("fairness_peer.py")),
];

/// The peers' python (made once by `setup.sh`), or why it cannot be had.
pub(super) fn peer_python(shared: Option<&Path>) -> Result<PathBuf, String> {
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

/// Runs one peer process and returns its last JSON line and what the
/// harness saw of it.
pub(super) fn run_peer(run: &PeerRun, python: &Path, ctx: &Ctx) -> Result<(Value, Observed)> {
    let shared = ctx.shared.as_deref().context("no shared folder")?;
    let script = match EMBEDDED_PEERS.iter().find(|(name, _)| *name == run.script) {
        Some((name, text)) => {
            let path = ctx.data_dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            path
        }
        None => shared.join("bench").join(run.script),
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
pub(super) fn read_peer(p: &PeerRef, line: &Value, observed: &Observed) -> Value {
    let Some(m) = line.pointer(&p.measure) else {
        return json!({"label": p.label, "status": format!("failed: no {} in the peer's output", p.measure)});
    };
    let Some(median) = m.get(p.median_key).and_then(Value::as_f64) else {
        return json!({"label": p.label, "status": format!("failed: no {}{} in the peer's output", p.measure, p.median_key)});
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
