//! `valor`: fine-tune BERT classifiers that are accurate, fair, transparent and
//! efficient, and audit any model's predictions for group fairness.
//!
//! `main` parses and dispatches; behaviour lives in the library crates. Exit
//! codes: 0 success, 1 a declared value or fairness target was not met, 2 an
//! error. A closed pipe (`valor … | head`) is not an error.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod audit;
mod common;
mod data;
mod explain;
mod keys;
mod log;
mod merge;
mod monitor;
mod predict;
mod quantize;
mod remodel;
mod serve;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// How a command ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything ran and every declared target was met.
    Ok,
    /// It ran, but a declared target (a fairness threshold, a value profile)
    /// was not met.
    TargetMissed,
}

#[derive(Debug, Parser)]
#[command(name = "valor", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate and inspect datasets.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Audit a predictions file for group fairness (fairlearn and AIF360
    /// metrics, confidence intervals, thresholds that gate a pipeline).
    Audit(Box<audit::AuditArgs>),
    /// Fine-tune (or train from scratch) a classifier with fairness in the
    /// objective; writes a run folder with checkpoints, metrics and a report.
    Train(Box<train::TrainArgs>),
    /// Predict a label and class probabilities for every row of a file.
    Predict(Box<predict::PredictArgs>),
    /// Explain predictions word by word (integrated gradients, attention
    /// rollout, occlusion) and measure how faithful the explanations are.
    Explain(Box<explain::ExplainArgs>),
    /// Move a trained model towards the value target of a values.toml:
    /// measure V0, search fairness weights, reweighing and thresholds, pick
    /// V_T on the Pareto front, confirm it on the test split, save the model.
    Remodel(Box<remodel::RemodelArgs>),
    /// Serve a model folder over HTTP: TEI-compatible /predict, fair
    /// /decide with explanations, /feedback, /metrics; API keys with scopes.
    Serve(Box<serve::ServeArgs>),
    /// Create, list and revoke the API keys of `valor serve`.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Check a decision log: `valor log verify DIR` (exit 1 names the
    /// first record that was changed, removed or reordered).
    #[command(subcommand)]
    Log(log::LogCommand),
    /// Replay a decision log through the live monitor: fairness and drift
    /// per window, as JSON or an HTML page.
    Monitor(Box<monitor::MonitorArgs>),
    /// Write a model folder with int8 weights that predict, explain and
    /// serve load; with --eval, audit what the compression changed
    /// (accuracy and fairness gaps before and after; exit 1 when a gap
    /// moved by more than --max-fairness-shift).
    Quantize(Box<quantize::QuantizeArgs>),
    /// Fold a PEFT LoRA adapter into its base model and write a plain HF
    /// model folder (the logits of the base with the adapter, unmerged).
    Merge(Box<merge::MergeArgs>),
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Data(cmd) => data::run(cmd),
        Command::Audit(args) => audit::run(*args),
        Command::Train(args) => train::run(*args),
        Command::Predict(args) => predict::run(*args),
        Command::Explain(args) => explain::run(*args),
        Command::Remodel(args) => remodel::run(*args),
        Command::Serve(args) => serve::run(*args),
        Command::Keys(cmd) => keys::run(cmd),
        Command::Log(cmd) => log::run(cmd),
        Command::Monitor(args) => monitor::run(*args),
        Command::Quantize(args) => quantize::run(*args),
        Command::Merge(args) => merge::run(*args),
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes joined by `: `, as `{:#}` prints them, except
/// that a cause whose text its parent's message already ends with (typed
/// errors that show their source, like `{path}: {source}`) is not repeated.
fn error_chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut last = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !last.is_empty() && last.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
        last = text;
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    valor_bert::tune_host_allocator();
    match run(cli) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::TargetMissed) => ExitCode::from(1),
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error_chain(&err));
            ExitCode::from(2)
        }
    }
}
