//! Trains on the built-in synthetic dataset and prints the test summary:
//! the quickest way to try an objective or a hyperparameter.
//!
//! ```text
//! cargo run --release -p valor-train --example builtin -- \
//!     [--rows 6000] [--epochs 4] [--lr 1e-3] [--batch 32] [--lambda 0] \
//!     [--reweigh] [--penalty dp|eo] [--hidden 128] [--layers 2] \
//!     [--split 0.8,0.1,0.1] [--max-len 128] [--seed 42] [--out DIR]
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Instant;

use valor_data::{SynthConfig, builtin_spec, generate};
use valor_train::{ModelSource, Penalty, ProgressBars, TrainConfig, Weighting, train};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rows = 6000;
    let mut out = std::env::temp_dir().join("valor-builtin-run");
    let mut args = std::env::args().skip(1);
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("finance.csv");
    let mut config = TrainConfig::scratch(builtin_spec(&data), "tiny");
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--rows" => rows = value()?.parse()?,
            "--epochs" => config.epochs = value()?.parse()?,
            "--lr" => config.lr = value()?.parse()?,
            "--batch" => config.batch_size = value()?.parse()?,
            "--lambda" => config.fairness.lambda = value()?.parse()?,
            "--max-len" => config.max_len = value()?.parse()?,
            "--seed" => config.seed = value()?.parse()?,
            "--penalty" => {
                config.fairness.penalty = match value()?.as_str() {
                    "eo" => Penalty::EqualizedOdds,
                    _ => Penalty::DemographicParity,
                }
            }
            "--reweigh" => config.weighting = Weighting::Reweighing,
            "--hidden" | "--layers" => {
                let v: usize = value()?.parse()?;
                if let ModelSource::Scratch(m) = &mut config.model {
                    if flag == "--hidden" {
                        m.hidden_size = Some(v);
                    } else {
                        m.num_layers = Some(v);
                    }
                }
            }
            "--split" => {
                let v: Vec<f64> = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
                (config.split.train, config.split.valid, config.split.test) = (v[0], v[1], v[2]);
            }
            "--out" => out = value()?.into(),
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    generate(&SynthConfig {
        rows,
        ..SynthConfig::default()
    })
    .write(&data)?;
    let started = Instant::now();
    let outcome = train(&config, &out, true, &mut ProgressBars::new())?;
    let secs = started.elapsed().as_secs_f64();
    if let Some(report) = outcome.report() {
        for r in &report_history(&out) {
            println!("{r}");
        }
        println!("{}", serde_json::to_string_pretty(&report.summary)?);
        println!("seconds: {secs:.1}");
    }
    Ok(())
}

fn report_history(out: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}
