//! The results: `bench/results.json` and the Markdown table
//! `bench/results.md`, with the commit and date they were made at.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::root;

/// `HEAD`, with `-dirty` when tracked files changed.
pub(crate) fn git_commit() -> String {
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

/// The current time, UTC, ISO 8601.
pub(crate) fn date_utc() -> String {
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

/// Writes `bench/results.json` and `bench/results.md` and prints the table.
pub(super) fn write_results(report: &Value) -> Result<()> {
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

/// The Markdown report: header, table, workload list, notes, pending.
fn markdown(r: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let m = &r["machine"];
    let mut md = String::from("# Valor benchmarks\n\n");
    md += &format!(
        "- Machine: {} ({} cores; {}), load average before the first workload {}\n- Backend `{}` ({}), {} threads on both sides, profile {}\n- Commit `{}`, {}, {}{}\n- Peers: {}\n",
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
    md += "\n| workload | peer | Valor median | peer median | peer / Valor | throughput (Valor · peer) | GFLOP/s (Valor · peer) · of peak | peak RSS MiB (Valor · peer) | load |\n";
    md += "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n";
    let mut notes = Vec::new();
    for row in r["results"].as_array().into_iter().flatten() {
        let name = s(&row["workload"]);
        if let Some(e) = row["error"].as_str() {
            md += &format!("| {name} | | failed | | | | | | |\n");
            notes.push(format!("{name}: {e}"));
            continue;
        }
        let no_peer = json!({});
        let peers: Vec<&Value> = match row["peers"].as_array() {
            Some(p) if !p.is_empty() => p.iter().collect(),
            _ => vec![&no_peer],
        };
        for peer in peers {
            md += &table_row(&name, row, peer, &mut notes);
        }
    }
    md += "\nWorkloads:\n\n";
    for row in r["results"].as_array().into_iter().flatten() {
        let input = match (
            row["input"]["file"].as_str(),
            row["input"]["bytes"].as_f64(),
        ) {
            (Some(f), Some(b)) => format!(" (input `{f}`, {:.1} MB)", b / 1e6),
            _ => String::new(),
        };
        md += &format!("- `{}`: {}{input}\n", s(&row["workload"]), s(&row["what"]));
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
    if !r["serving"].is_null() {
        md += &super::serve::markdown(&r["serving"]);
    }
    md
}

/// One line of the table: the workload's Valor numbers beside one peer's.
fn table_row(name: &str, row: &Value, peer: &Value, notes: &mut Vec<String>) -> String {
    let dash = || "—".to_string();
    let secs = |v: &Value| v.as_f64().map(fmt_secs).unwrap_or_else(dash);
    let num = |v: &Value| v.as_f64().map(fmt_num).unwrap_or_else(dash);
    let unit = row["unit"].as_str().unwrap_or("");
    let throughput = if row["valor_per_s"].is_null() {
        dash()
    } else {
        format!(
            "{} · {} {unit}/s",
            num(&row["valor_per_s"]),
            num(&peer["per_s"])
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
            num(&peer["gflop_per_s"])
        )
    };
    let mut load = Vec::new();
    if row["valor_run"]["contaminated"] == true {
        load.push(format!(
            "Valor contaminated ({} foreign cores)",
            row["valor_run"]["foreign_cores"]
        ));
    }
    if row["valor_run"]["started_on_busy_machine"] == true {
        load.push("Valor started busy".into());
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
    let label = peer["label"].as_str().map_or_else(dash, str::to_string);
    let peer_cell = match peer["status"].as_str() {
        Some("ok") => secs(&peer["median_s"]),
        Some(other) => {
            notes.push(format!("{name}: peer {label} {other}"));
            dash()
        }
        None => dash(),
    };
    format!(
        "| {name} | {label} | {} | {peer_cell} | {} | {throughput} | {gflops} | {} · {} | {load} |\n",
        secs(&row["valor_median_s"]),
        peer["peer_over_valor"]
            .as_f64()
            .map(|x| format!("{x:.2}×"))
            .unwrap_or_else(dash),
        num(&row["valor_peak_rss_mib"]),
        num(&peer["peak_rss_mib"]),
    )
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
