//! `valor data gen` and `valor data inspect`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use valor_data::dataset::{dataset_from_table, file_sha256, load_table};
use valor_data::{SynthConfig, generate, inspect};

use crate::Outcome;
use crate::common::DataArgs;

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Write the built-in synthetic financial-product dataset.
    Gen(GenArgs),
    /// Print a dataset's schema, label and group counts, label rate by group,
    /// text lengths and warnings.
    Inspect(Box<InspectArgs>),
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Number of rows.
    #[arg(long, default_value_t = SynthConfig::default().rows)]
    pub rows: usize,
    /// Random seed.
    #[arg(long, default_value_t = SynthConfig::default().seed)]
    pub seed: u64,
    /// Probability that a woman's `growth` label was withheld in the history.
    #[arg(long, default_value_t = SynthConfig::default().bias)]
    pub bias: f64,
    /// Probability that a 55+ customer's `growth` label was withheld.
    #[arg(long, default_value_t = SynthConfig::default().age_bias)]
    pub age_bias: f64,
    /// Probability that a historical label was replaced by a random one.
    #[arg(long, default_value_t = SynthConfig::default().noise)]
    pub noise: f64,
    /// Output file; the format follows the extension (.csv, .tsv, .parquet, .jsonl).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The data file (or give --spec with a `path`). With no column flags and
    /// no spec, a file written by `valor data gen` is read with its own columns.
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The most rows `valor data gen` writes (about 1.3 GB of CSV).
const MAX_GEN_ROWS: usize = 10_000_000;

pub fn run(cmd: DataCommand) -> Result<Outcome> {
    match cmd {
        DataCommand::Gen(a) => gen_cmd(a),
        DataCommand::Inspect(a) => inspect_cmd(*a),
    }
}

fn gen_cmd(a: GenArgs) -> Result<Outcome> {
    crate::common::check_output(&a.out, &[], a.overwrite)?;
    for (name, p) in [
        ("--bias", a.bias),
        ("--age-bias", a.age_bias),
        ("--noise", a.noise),
    ] {
        anyhow::ensure!(
            (0.0..=1.0).contains(&p),
            "{name} must be a probability in [0, 1], got {p}"
        );
    }
    anyhow::ensure!(
        (1..=MAX_GEN_ROWS).contains(&a.rows),
        "--rows must be between 1 and {MAX_GEN_ROWS}, got {}",
        a.rows
    );
    let cfg = SynthConfig {
        rows: a.rows,
        seed: a.seed,
        bias: a.bias,
        age_bias: a.age_bias,
        noise: a.noise,
    };
    let data = generate(&cfg);
    data.write(&a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "wrote {} rows to {}", a.rows, a.out.display())?;
    Ok(Outcome::Ok)
}

fn inspect_cmd(a: InspectArgs) -> Result<Outcome> {
    let spec = a.data.resolve(a.file.clone(), "a file argument")?;
    let table = load_table(&spec).with_context(|| format!("loading {}", spec.path.display()))?;
    let sha = file_sha256(&spec.path)?;
    let (data, warnings) = dataset_from_table(&spec, &table, sha)
        .with_context(|| format!("loading {}", spec.path.display()))?;
    let report = inspect(
        &data,
        &table,
        &warnings,
        &spec.label,
        spec.reference_label.as_deref(),
    );
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report.to_text())?;
    }
    Ok(Outcome::Ok)
}
