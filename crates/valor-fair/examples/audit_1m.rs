//! Times the audit on synthetic predictions: 1,000,000 rows (or the count
//! given as the first argument), one group column with 3 groups, scores.
//!
//! ```text
//! cargo run --release -p valor-fair --example audit_1m [ROWS] [RESAMPLES] [CSV_OUT] [JSON_OUT]
//! ```
//! With `CSV_OUT` the rows are also written as a predictions CSV
//! (`y_true,y_pred,y_score,group`) for timing a Python peer on the same data
//! (`examples/fairlearn_1m.py`); with `JSON_OUT` the report (no bootstrap)
//! is written too.
#![allow(clippy::print_stdout, reason = "an example reports its timings")]

use std::io::Write;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use valor_fair::{AuditConfig, AuditInput, BootstrapConfig, GroupSpec, audit};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let rows: usize = args.get(1).map_or(Ok(1_000_000), |s| s.parse())?;
    let resamples: usize = args.get(2).map_or(Ok(1000), |s| s.parse())?;
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let groups = ["a", "b", "c"];
    let mut y_true = Vec::with_capacity(rows);
    let mut y_pred = Vec::with_capacity(rows);
    let mut score = Vec::with_capacity(rows);
    let mut group = Vec::with_capacity(rows);
    for _ in 0..rows {
        let g = rng.random_range(0..3usize);
        let base = [0.3, 0.4, 0.5][g];
        let y = rng.random::<f64>() < base;
        let s: f64 =
            ((if y { 0.62 } else { 0.38 }) + 0.7 * (rng.random::<f64>() - 0.5)).clamp(0.0, 1.0);
        let s = (s * 1e6).round() / 1e6;
        y_true.push(if y { "1" } else { "0" });
        y_pred.push(if s >= 0.5 { "1" } else { "0" });
        score.push(s);
        group.push(groups[g]);
    }
    if let Some(path) = args.get(3) {
        let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(w, "y_true,y_pred,y_score,group")?;
        for i in 0..rows {
            writeln!(w, "{},{},{},{}", y_true[i], y_pred[i], score[i], group[i])?;
        }
        w.flush()?;
    }
    println!("rows: {rows}, threads: {}", rayon::current_num_threads());

    let t = Instant::now();
    let input = AuditInput::from_strings(&y_true, &y_pred, None)?
        .with_scores(score)?
        .with_group("group", &group)?;
    println!(
        "build input from strings: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    let mut config = AuditConfig::default();
    config.specs = vec![GroupSpec::single("group")];
    let t = Instant::now();
    let report = audit(&input, &config)?;
    println!(
        "audit, full metric set incl. ROC AUC and calibration, no bootstrap: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    if let Some(path) = args.get(4) {
        report.write_json(std::path::Path::new(path))?;
    }
    let spec = &report.specs[0];
    println!(
        "  demographic_parity_difference = {:.6}, roc_auc overall = {:.6}",
        spec.fairlearn
            .as_ref()
            .and_then(|f| f.demographic_parity_difference)
            .unwrap_or(f64::NAN),
        spec.metrics
            .get("roc_auc")
            .and_then(|m| m.overall)
            .unwrap_or(f64::NAN)
    );

    config.bootstrap = Some(BootstrapConfig::new(resamples, 7));
    let t = Instant::now();
    let report = audit(&input, &config)?;
    println!(
        "audit with {resamples} bootstrap resamples: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    if let Some(i) = report.specs[0]
        .fairlearn
        .as_ref()
        .and_then(|f| f.intervals.as_ref())
        .and_then(|i| i.get("demographic_parity_difference").copied().flatten())
    {
        println!(
            "  demographic_parity_difference 95% CI: {:.6} to {:.6}",
            i.lower, i.upper
        );
    }
    Ok(())
}
