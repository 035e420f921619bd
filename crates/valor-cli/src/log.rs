//! `valor log verify DIR`: checks the hash chain of a decision log that
//! `valor serve --log-dir` wrote (see `valor_ledger`).
//!
//! Exit 0 with the count of verified records when every record is intact;
//! exit 1 naming the first record that was changed, removed or reordered
//! (file, line, record index); exit 2 when the folder cannot be read. A
//! torn final record (a write cut short by a crash) is reported as a
//! warning and is not a failure: the records before it verified, and the
//! server removes it, and logs that it did, when it next opens the log.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::Outcome;

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Verify every record of a decision log: its hash, its link to the
    /// record before it, and the files' order. Exit 1 names the first
    /// record that was changed, removed or reordered.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The log folder (`valor serve --log-dir`).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: LogCommand) -> Result<Outcome> {
    match cmd {
        LogCommand::Verify(a) => verify(&a),
    }
}

fn verify(a: &VerifyArgs) -> Result<Outcome> {
    let report = valor_ledger::verify(&a.dir)
        .with_context(|| format!("verifying the decision log in {}", a.dir.display()))?;
    if let Some(t) = &report.torn_tail {
        eprintln!("warning: {t}");
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    match &report.failure {
        Some(f) => {
            if !a.json {
                println!("FAILED: {f}\n{} records before it verified", report.records);
            }
            Ok(Outcome::TargetMissed)
        }
        None => {
            if !a.json {
                let head = report
                    .head
                    .as_ref()
                    .map(|h| format!("; head: record {} sha256 {}", h.seq, h.hash))
                    .unwrap_or_default();
                println!(
                    "verified {} records ({} decisions, {} feedback) in {} file(s) of {}{head}",
                    report.records,
                    report.decisions,
                    report.feedback,
                    report.files.len(),
                    a.dir.display()
                );
            }
            Ok(Outcome::Ok)
        }
    }
}
