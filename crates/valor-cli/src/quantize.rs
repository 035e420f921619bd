//! `valor quantize`: a model folder with int8 weights
//! (`valor_bert::quant`), which `valor predict`, `explain` and `serve` load
//! like any model folder, and with `--eval FILE` an audit of what the
//! compression changed: accuracy and every fairness gap before and after,
//! with bootstrap intervals (`valor_fair::compare_audits` over two
//! `valor_fair::audit`s of the same rows), exit 1 when a gap moved by more
//! than `--max-fairness-shift`.
//!
//! The output folder is staged beside `--out` and renamed into place. An
//! existing `--out` is refused without `--overwrite`, and even with it
//! unless it is a folder `valor quantize` wrote (it holds
//! `quantization.json`); the model folder itself is never the output.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use valor_bert::explain::top_k;
use valor_bert::{Backend, Precision, QUANTIZATION_FILE, QuantScheme, QuantizationReport};
use valor_data::dataset::file_sha256;
use valor_data::read_table;
use valor_fair::{
    AuditComparison, AuditConfig, AuditInput, AuditReport, BootstrapConfig, GroupSpec, LabelSet,
    audit, compare_audits,
};
use valor_train::{Classifier, THRESHOLDS_FILE};

use crate::Outcome;

/// Schema of the `--report` JSON.
const REPORT_SCHEMA: &str = "valor.quantize.report/1";

#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// Model folder to quantise (config.json with id2label,
    /// model.safetensors, tokenizer), e.g. one written by `valor train`.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Folder to write the quantised model to: config.json,
    /// model.safetensors (int8 weights with f32 scales), quantization.json,
    /// the tokenizer, and the model's thresholds.json if it has one.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace --out when it holds a model `valor quantize` wrote (other
    /// folders are refused; a user's own files in it are kept).
    #[arg(long)]
    pub overwrite: bool,
    /// int8-per-channel: the encoder's and pooler's Linear weights as int8
    /// with one f32 scale per output channel (embeddings, LayerNorms, biases
    /// and the classification head stay f32); int8-per-channel-embeddings:
    /// also the word-embedding table, one scale per token.
    #[arg(long, value_name = "SCHEME", default_value = "int8-per-channel")]
    pub scheme: QuantScheme,
    /// A labelled file (.csv, .tsv, .parquet, .jsonl) to audit the
    /// compression on: accuracy and each fairness gap, before and after.
    #[arg(long, value_name = "FILE")]
    pub eval: Option<PathBuf>,
    /// Column of --eval holding the text.
    #[arg(long, value_name = "COL", default_value = "text")]
    pub text_col: String,
    /// Column of --eval holding the true label (a label of the model's
    /// id2label).
    #[arg(long, value_name = "COL", default_value = "label")]
    pub label_col: String,
    /// Group column of --eval; repeat for several (at least one with --eval).
    #[arg(long = "group-col", visible_alias = "group", value_name = "COL")]
    pub groups: Vec<String>,
    /// The positive (favourable) label of a two-label model, for the
    /// binary gaps (default: the model's label with id 1).
    #[arg(long, value_name = "LABEL")]
    pub positive: Option<String>,
    /// Exit 1 when a fairness gap moves by more than this (absolute).
    #[arg(long, value_name = "X", default_value_t = 0.01)]
    pub max_fairness_shift: f64,
    /// Bootstrap resamples for the intervals of both audits (0: none).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Write the audited-compression report as JSON here.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write the audited-compression report as an HTML page here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Compute backend: cpu, wgpu, cuda (the latter two need the cargo feature).
    #[arg(long, value_name = "NAME", default_value = "cpu")]
    pub backend: Backend,
    /// Texts per forward pass of --eval.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub batch_size: usize,
    /// Maximum tokens per text of --eval (longer texts are truncated).
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub max_len: usize,
}

/// The `--report` JSON.
#[derive(Debug, Serialize)]
struct Report {
    schema: &'static str,
    model: String,
    out: String,
    quantization: QuantizationReport,
    /// Bytes of the weight files on disk, before and after.
    weights_file_bytes_before: u64,
    weights_file_bytes_after: u64,
    eval: Option<EvalReport>,
}

#[derive(Debug, Serialize)]
struct EvalReport {
    file: String,
    sha256: String,
    rows: usize,
    /// Rows where both models predict the same class (argmax).
    argmax_agreement: f64,
    comparison: AuditComparison,
    audit_before: AuditReport,
    audit_after: AuditReport,
}

/// Refuses an `--out` that would lose something: the model folder itself,
/// a file, or an existing folder without `--overwrite` or not written by
/// `valor quantize`.
fn check_out(a: &QuantizeArgs) -> Result<()> {
    let out = &a.out;
    let Ok(meta) = std::fs::metadata(out) else {
        return Ok(());
    };
    if let (Ok(x), Ok(y)) = (std::fs::canonicalize(out), std::fs::canonicalize(&a.model))
        && x == y
    {
        bail!(
            "{}: is the model folder; write the quantised model to another folder",
            out.display()
        );
    }
    if !meta.is_dir() {
        bail!("{}: exists and is not a folder", out.display());
    }
    if !a.overwrite {
        bail!(
            "{}: already exists; pass --overwrite to replace a model `valor quantize` wrote there",
            out.display()
        );
    }
    let empty = std::fs::read_dir(out)
        .with_context(|| format!("reading {}", out.display()))?
        .next()
        .is_none();
    if !empty && !out.join(QUANTIZATION_FILE).is_file() {
        bail!(
            "{}: has no {QUANTIZATION_FILE}, so `valor quantize` did not write it; refusing to \
             replace it even with --overwrite (choose another folder)",
            out.display()
        );
    }
    Ok(())
}

fn weights_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(".safetensors"))
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

pub fn run(a: QuantizeArgs) -> Result<Outcome> {
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if !(a.max_fairness_shift.is_finite() && a.max_fairness_shift >= 0.0) {
        bail!(
            "--max-fairness-shift must be a number >= 0, not {}",
            a.max_fairness_shift
        );
    }
    if a.eval.is_none() && (a.report.is_some() || a.html.is_some()) {
        bail!("--report and --html write the audit of --eval FILE; give --eval");
    }
    if a.eval.is_some() && a.groups.is_empty() {
        bail!("--eval needs the group column(s) to audit: pass --group-col COL");
    }
    check_out(&a)?;
    let eval_inputs: Vec<&Path> = a.eval.iter().map(PathBuf::as_path).collect();
    for f in a.report.iter().chain(&a.html) {
        crate::common::check_output(f, &eval_inputs, a.overwrite)?;
    }
    if let (Some(r), Some(h)) = (&a.report, &a.html)
        && r == h
    {
        bail!("--report and --html name the same file {}", r.display());
    }
    // Read the eval file before the long work, so a bad file fails fast.
    let eval = a.eval.as_deref().map(|p| read_eval(&a, p)).transpose()?;

    let fp32 = Classifier::load(&a.model, a.backend, a.max_len, false)
        .with_context(|| format!("loading {}", a.model.display()))?;
    if let Some(eval) = &eval {
        check_labels(&a, eval, fp32.labels())?;
    }
    let thresholds = a.model.join(THRESHOLDS_FILE);
    let mut extra = Vec::new();
    if thresholds.is_file() {
        let bytes = std::fs::read(&thresholds)
            .with_context(|| format!("reading {}", thresholds.display()))?;
        extra.push((THRESHOLDS_FILE, bytes));
    }
    let quantization = valor_bert::save_quantized(
        &fp32.model,
        &fp32.config,
        &a.out,
        Some(&a.model),
        a.scheme,
        &extra,
    )
    .with_context(|| format!("writing {}", a.out.display()))?;
    let mut report = Report {
        schema: REPORT_SCHEMA,
        model: a.model.display().to_string(),
        out: a.out.display().to_string(),
        weights_file_bytes_before: weights_bytes(&a.model),
        weights_file_bytes_after: weights_bytes(&a.out),
        quantization,
        eval: None,
    };
    let mut stdout = std::io::stdout().lock();
    if !a.json {
        let q = &report.quantization;
        writeln!(
            stdout,
            "wrote {} ({}): {} tensors int8, {:.1} MB -> {:.1} MB ({:.3}x); weights file {:.1} MB -> {:.1} MB",
            a.out.display(),
            q.scheme.name(),
            q.quantized.len(),
            mb(q.quantized_f32_bytes),
            mb(q.quantized_int8_bytes),
            q.quantized_ratio,
            mb(report.weights_file_bytes_before),
            mb(report.weights_file_bytes_after),
        )?;
    }
    let mut outcome = Outcome::Ok;
    if let Some(eval) = eval {
        // As `valor predict` runs the folder: int8 kernels on the CPU.
        let precision = default_precision(&a.out, a.backend, true)?;
        let int8 = Classifier::load(&a.out, a.backend, a.max_len, false)
            .with_context(|| format!("loading {}", a.out.display()))?
            .with_precision(precision)
            .with_context(|| format!("loading {} at {precision}", a.out.display()))?;
        let er = audit_both(&a, &eval, &fp32, &int8, &report)?;
        if !a.json {
            print_comparison(&mut stdout, &er)?;
        }
        if !er.comparison.passed() {
            outcome = Outcome::TargetMissed;
        }
        report.eval = Some(er);
    }
    if a.json {
        writeln!(stdout, "{}", serde_json::to_string_pretty(&report)?)?;
    }
    if let Some(path) = &a.report {
        let text = format!("{}\n", serde_json::to_string_pretty(&report)?);
        valor_fair::write_atomic(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let (Some(path), Some(er)) = (&a.html, &report.eval) {
        er.comparison
            .write_html(path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(er) = &report.eval {
        let mut err = std::io::stderr().lock();
        for g in er.comparison.exceeded() {
            writeln!(
                err,
                "fairness shift: {}: {} moved {} -> {} (more than {})",
                g.spec.as_deref().unwrap_or("all rows"),
                g.metric,
                opt(g.before),
                opt(g.after),
                a.max_fairness_shift
            )?;
        }
    }
    Ok(outcome)
}

/// The precision `valor predict`, `valor serve` and the `--eval` audit run
/// the model folder `model` at when no `--precision` is given: int8 for a
/// folder `valor quantize` wrote (it holds `quantization.json`; its
/// encoder's Linear layers then run on the int8 kernels with the stored
/// integers and scales) where the int8 kernels can run it
/// (`int8_possible`: the CPU backend, no `--adapter`, for predict no
/// `--explain`), fp32 otherwise.
pub fn default_precision(model: &Path, backend: Backend, int8_possible: bool) -> Result<Precision> {
    let quantized = QuantizationReport::read(model)
        .with_context(|| format!("reading {}", model.join(QUANTIZATION_FILE).display()))?
        .is_some();
    Ok(if quantized && int8_possible && backend == Backend::Cpu {
        Precision::Int8
    } else {
        Precision::Fp32
    })
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "undefined".into(), |v| format!("{v:.4}"))
}

/// The rows of `--eval`: texts, true labels, group columns.
struct Eval {
    path: PathBuf,
    /// The 1-based data row of each row, as errors name it.
    rows: Vec<usize>,
    texts: Vec<String>,
    labels: Vec<String>,
    groups: Vec<(String, Vec<String>)>,
}

fn read_eval(a: &QuantizeArgs, path: &Path) -> Result<Eval> {
    let table = read_table(path).with_context(|| format!("reading {}", path.display()))?;
    table.require(&a.text_col, Some("pass the text column with --text-col"))?;
    table.require(&a.label_col, Some("pass the label column with --label-col"))?;
    for g in &a.groups {
        table.require(g, Some("pass the group column with --group-col"))?;
    }
    let column = |name: &str| -> Result<Vec<String>> {
        table
            .strings(name)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Some(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                _ => bail!(
                    "{}: row {}, column `{name}`: empty value",
                    path.display(),
                    table.file_row(i)
                ),
            })
            .collect()
    };
    let texts = table
        .strings(&a.text_col)?
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect();
    let labels = column(&a.label_col)?;
    let groups = a
        .groups
        .iter()
        .map(|g| Ok((g.clone(), column(g)?)))
        .collect::<Result<_>>()?;
    if table.n_rows() == 0 {
        bail!("{}: has no rows to audit", path.display());
    }
    Ok(Eval {
        path: path.to_path_buf(),
        rows: (0..table.n_rows()).map(|i| table.file_row(i)).collect(),
        texts,
        labels,
        groups,
    })
}

/// Every true label of `--eval` must be a label of the model; checked
/// before the quantised folder is written.
fn check_labels(a: &QuantizeArgs, eval: &Eval, labels: &[String]) -> Result<()> {
    if let Some(i) = eval.labels.iter().position(|l| !labels.contains(l)) {
        bail!(
            "{}: row {}, column `{}`: `{}` is not one of the model's labels {}",
            eval.path.display(),
            eval.rows[i],
            a.label_col,
            eval.labels[i],
            labels.join(", ")
        );
    }
    Ok(())
}

/// Argmax label names of `clf` on the eval texts.
fn predict(a: &QuantizeArgs, eval: &Eval, clf: &Classifier) -> Result<Vec<String>> {
    let encodings = clf
        .tokenizer
        .encode_batch(&eval.texts)
        .with_context(|| format!("tokenizing {}", eval.path.display()))?;
    let probs = clf.predict(encodings, a.batch_size)?;
    Ok(probs
        .iter()
        .map(|p| clf.labels()[top_k(p, 1)[0]].clone())
        .collect())
}

fn audit_one(
    a: &QuantizeArgs,
    eval: &Eval,
    clf: &Classifier,
    y_pred: &[String],
) -> Result<AuditReport> {
    let labels = LabelSet::new(clf.labels())?;
    let mut input =
        AuditInput::from_strings(&eval.labels, y_pred, Some(labels)).map_err(|e| match e {
            valor_fair::Error::UnknownLabel {
                row, value, labels, ..
            } => anyhow::anyhow!(
                "{}: row {}, column `{}`: `{value}` is not one of the model's labels {}",
                eval.path.display(),
                row + 1,
                a.label_col,
                labels.join(", ")
            ),
            other => anyhow::Error::from(other),
        })?;
    for (name, values) in &eval.groups {
        input = input.with_group(name, values)?;
    }
    let mut cfg = AuditConfig::default();
    cfg.specs = GroupSpec::from_columns(&a.groups, false);
    cfg.positive_label = positive_label(a, clf)?;
    if a.bootstrap > 0 {
        cfg.bootstrap = Some(BootstrapConfig::new(a.bootstrap, a.seed));
    }
    cfg.validate()?;
    let mut report = audit(&input, &cfg)?;
    report.provenance.source = Some(eval.path.display().to_string());
    report.provenance.git_commit =
        (valor_train::GIT_COMMIT != "unknown").then(|| valor_train::GIT_COMMIT.to_string());
    Ok(report)
}

/// `--positive`, a label of the model; by default its label with id 1 when
/// it has two.
fn positive_label(a: &QuantizeArgs, clf: &Classifier) -> Result<Option<String>> {
    let labels = clf.labels();
    match &a.positive {
        Some(p) if !labels.contains(p) => bail!(
            "--positive `{p}` is not one of the model's labels {}",
            labels.join(", ")
        ),
        Some(p) => Ok(Some(p.clone())),
        None if labels.len() == 2 => Ok(Some(labels[1].clone())),
        None => Ok(None),
    }
}

fn audit_both(
    a: &QuantizeArgs,
    eval: &Eval,
    fp32: &Classifier,
    int8: &Classifier,
    report: &Report,
) -> Result<EvalReport> {
    let before_pred = predict(a, eval, fp32)?;
    let after_pred = predict(a, eval, int8)?;
    let same = before_pred
        .iter()
        .zip(&after_pred)
        .filter(|(x, y)| x == y)
        .count();
    let rows = eval.texts.len();
    let agreement = same as f64 / rows as f64;
    let before = audit_one(a, eval, fp32, &before_pred)?;
    let after = audit_one(a, eval, int8, &after_pred)?;
    let mut comparison = compare_audits(
        &before,
        &after,
        "fp32",
        report.quantization.scheme.name(),
        a.max_fairness_shift,
    )?;
    let q = &report.quantization;
    comparison.notes = vec![
        format!("model {} -> {}", report.model, report.out),
        format!(
            "{} weight tensors int8: {:.1} MB -> {:.1} MB ({:.3}x their fp32 bytes); weights file {:.1} MB -> {:.1} MB",
            q.quantized.len(),
            mb(q.quantized_f32_bytes),
            mb(q.quantized_int8_bytes),
            q.quantized_ratio,
            mb(report.weights_file_bytes_before),
            mb(report.weights_file_bytes_after)
        ),
        format!(
            "argmax agreement with fp32: {:.2}% ({same} of {rows} rows of {})",
            100.0 * agreement,
            eval.path.display()
        ),
    ];
    if let Some(p) = &before.positive_label {
        comparison
            .notes
            .push(format!("positive label of the binary gaps: {p}"));
    }
    Ok(EvalReport {
        file: eval.path.display().to_string(),
        sha256: file_sha256(&eval.path)?,
        rows,
        argmax_agreement: agreement,
        comparison,
        audit_before: before,
        audit_after: after,
    })
}

fn print_comparison(out: &mut impl Write, er: &EvalReport) -> Result<()> {
    let c = &er.comparison;
    writeln!(
        out,
        "argmax agreement with fp32: {:.2}% of {} rows",
        100.0 * er.argmax_agreement,
        er.rows
    )?;
    writeln!(
        out,
        "{:<12} {:<50} {:>9} {:>9} {:>9}",
        "spec", "metric", "fp32", c.after_name, "shift"
    )?;
    for s in std::iter::once(&c.accuracy).chain(&c.gaps) {
        let iv = |i: Option<valor_fair::Interval>| {
            i.map_or_else(String::new, |i| {
                format!(" [{:.4}, {:.4}]", i.lower, i.upper)
            })
        };
        writeln!(
            out,
            "{:<12} {:<50} {:>9} {:>9} {:>9}{}{}",
            s.spec.as_deref().unwrap_or("(all)"),
            s.metric,
            opt(s.before),
            opt(s.after),
            s.shift.map_or_else(|| "-".into(), |d| format!("{d:+.4}")),
            if s.exceeds { "  EXCEEDS" } else { "" },
            if s.before_interval.is_some() {
                format!(
                    "  fp32{} after{}",
                    iv(s.before_interval),
                    iv(s.after_interval)
                )
            } else {
                String::new()
            }
        )?;
    }
    writeln!(
        out,
        "{}",
        if c.passed() {
            format!("no gap moved by more than {}", c.max_fairness_shift)
        } else {
            format!("a gap moved by more than {}", c.max_fairness_shift)
        }
    )?;
    Ok(())
}
