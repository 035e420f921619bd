//! `cargo xtask train`: the README's main job.
//!
//! Generates the built-in dataset, trains the `tiny` preset from scratch twice
//! on the CPU, once with the plain objective and once with the fairness
//! objective, and prints the two test-set reports side by side. Any argument
//! it does not know goes to both `valor train` runs (e.g. `--epochs 2`,
//! `--model ../shared/models/all-MiniLM-L6-v2`, `--data FILE --text-col …`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::{cargo, root, run_cmd, take_flag_value};

pub fn run(args: &[String]) -> Result<()> {
    let mut rest = args.to_vec();
    rest.retain(|a| a != "--");
    let features = take_flag_value(&mut rest, "--features");
    let out_dir = take_flag_value(&mut rest, "--out-dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("runs"));
    let user_data = rest.iter().any(|a| a == "--data");

    // Build once, optimised: training in a debug build would be far slower.
    let mut build = cargo();
    build.args(["build", "--release", "-p", "valor-cli"]);
    if let Some(f) = &features {
        build.args(["--features", f]);
    }
    run_cmd(&mut build)?;
    let valor = target_dir().join("release").join("valor");

    let mut data_args: Vec<String> = Vec::new();
    if !user_data {
        let data = out_dir.join("data").join("finance.csv");
        run_cmd(
            std::process::Command::new(&valor)
                .args(["data", "gen", "--overwrite", "--out"])
                .arg(&data),
        )?;
        run_cmd(
            std::process::Command::new(&valor)
                .args(["data", "inspect"])
                .arg(&data),
        )?;
        data_args = vec!["--data".into(), data.display().to_string()];
    }

    let runs = [
        ("baseline", vec!["--fairness-lambda", "0", "--overwrite"]),
        (
            "fair",
            // The fixed-weight penalty (λ = 1, what `auto` was before it
            // became constrained training), so the main job's numbers stay
            // those it has always printed.
            vec!["--fairness-lambda", "1", "--reweigh", "--overwrite"],
        ),
    ];
    let mut reports = Vec::new();
    for (name, extra) in &runs {
        let dir = out_dir.join(name);
        let started = Instant::now();
        let mut cmd = std::process::Command::new(&valor);
        cmd.arg("train")
            .args(&data_args)
            .args(["--out"])
            .arg(&dir)
            .args(extra)
            .args(&rest);
        run_cmd(&mut cmd)?;
        let secs = started.elapsed().as_secs_f64();
        let report_path = dir.join("report.json");
        let text = std::fs::read_to_string(&report_path)
            .with_context(|| format!("reading {}", report_path.display()))?;
        let report: Value = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", report_path.display()))?;
        reports.push((*name, report, secs));
    }
    print_summary(&reports);
    Ok(())
}

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Reads `report.summary.<key>` as a number.
fn num(report: &Value, key: &str) -> Option<f64> {
    report.get("summary")?.get(key)?.as_f64()
}

fn print_summary(reports: &[(&str, Value, f64)]) {
    let rows: [(&str, &str); 7] = [
        ("accuracy (historical labels)", "accuracy"),
        ("accuracy (fair labels)", "accuracy_reference"),
        ("macro-F1", "macro_f1"),
        (
            "selection-rate gap (max over classes)",
            "selection_rate_gap",
        ),
        ("equalized-odds gap", "equalized_odds_gap"),
        (
            "counterfactual flip rate (twins)",
            "counterfactual_flip_rate",
        ),
        ("training time, s", "train_seconds"),
    ];
    println!();
    print!("{:<40}", "test set");
    for (name, _, _) in reports {
        print!("{name:>12}");
    }
    println!();
    for (label, key) in rows {
        print!("{label:<40}");
        for (_, r, secs) in reports {
            let v = if key == "train_seconds" {
                Some(*secs)
            } else {
                num(r, key)
            };
            match v {
                Some(v) if key == "train_seconds" => print!("{v:>12.0}"),
                Some(v) => print!("{v:>12.3}"),
                None => print!("{:>12}", "n/a"),
            }
        }
        println!();
    }
    if let (Some(a), Some(b)) = (reports.first(), reports.get(1))
        && let (Some(ga), Some(gb)) = (
            num(&a.1, "selection_rate_gap"),
            num(&b.1, "selection_rate_gap"),
        )
        && ga > 0.0
    {
        println!(
            "\nthe fairness objective changed the selection-rate gap by {:+.0}%",
            100.0 * (gb - ga) / ga
        );
    }
}
