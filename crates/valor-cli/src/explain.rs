//! `valor explain`: why the model decided what it did, word by word.
//!
//! For each text: the predicted label, the probabilities, and attributions
//! for the predicted class (every class with `--all-classes`) by integrated
//! gradients (default; with its completeness delta), attention rollout or
//! occlusion, per word or per token. Output as JSON (schema
//! `valor.explain/1`, ordered keys), self-contained HTML, or a terminal
//! rendering (ANSI colours only when standard output is a terminal).
//! `--faithfulness` adds ERASER comprehensiveness/sufficiency against random
//! attributions and the `[0, 1]` transparency score
//! (`valor_values::Evaluation::faithfulness`).

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use valor_base::html::escape;
use valor_bert::Backend;
use valor_bert::explain::{
    FaithfulnessConfig, FaithfulnessItem, IgConfig, TokenSequence, attention_rollout, faithfulness,
    integrated_gradients, merge_words, occlusion, pad_baseline, top_k,
};
use valor_data::{Encoded, stream_table};

use valor_train::Classifier;

use crate::Outcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// Integrated gradients at the embeddings (Sundararajan et al. 2017).
    Ig,
    /// Attention rollout (Abnar & Zuidema 2020); class-agnostic.
    Rollout,
    /// Leave one word (or token) out: drop in the class probability.
    Occlusion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Granularity {
    /// WordPiece pieces merged into words.
    Word,
    /// One score per token.
    Token,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Json,
    Html,
    Terminal,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Model folder (HF `BertForSequenceClassification` layout with tokenizer.json).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// A PEFT LoRA adapter folder applied to --model, the base (as `valor
    /// predict --adapter`).
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// One text to explain.
    #[arg(
        long,
        value_name = "TEXT",
        conflicts_with = "input",
        required_unless_present = "input"
    )]
    pub text: Option<String>,
    /// A file of texts (.csv, .tsv, .parquet, .jsonl).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Column of --input holding the text.
    #[arg(long, value_name = "COL", default_value = "text")]
    pub text_col: String,
    /// Column of --input holding row ids (default: the 1-based row number).
    #[arg(long, value_name = "COL")]
    pub id_col: Option<String>,
    /// Attribution method.
    #[arg(long, value_enum, default_value = "ig")]
    pub method: Method,
    /// Integration steps (integrated gradients).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub steps: usize,
    /// Interpolation steps per forward/backward pass (integrated gradients).
    #[arg(long, value_name = "N", default_value_t = 25)]
    pub internal_batch_size: usize,
    /// Scores per word or per token.
    #[arg(long, value_enum, default_value = "word")]
    pub granularity: Granularity,
    /// Also explain every other class.
    #[arg(long)]
    pub all_classes: bool,
    /// Measure ERASER faithfulness (comprehensiveness, sufficiency) over the
    /// inputs against random attributions, and the transparency score.
    #[arg(long)]
    pub faithfulness: bool,
    /// Seed of the random attributions of --faithfulness.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Output format (default: terminal, or json when --out ends in .json,
    /// html when it ends in .html).
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Write here instead of standard output (atomically); an existing file
    /// is replaced only with --overwrite.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Replace --out if it exists.
    #[arg(long)]
    pub overwrite: bool,
    /// Compute backend: cpu, wgpu, cuda.
    #[arg(long, value_name = "NAME", default_value = "cpu")]
    pub backend: Backend,
    /// Arithmetic, as `valor predict --precision`: on wgpu and cuda fp32,
    /// bf16 or f16 (the device's float dtype, gradients included); on the
    /// CPU fp32 or bf16 for integrated gradients (bf16: autocast, the
    /// encoder's Linear products forward and backward in bf16; int8 has no
    /// gradients) and fp32, bf16 or int8 for rollout and occlusion.
    #[arg(long, value_name = "P", default_value = "fp32")]
    pub precision: valor_bert::Precision,
    /// Maximum tokens per text.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub max_len: usize,
}

/// One scored unit (word or token).
struct Unit {
    text: String,
    tokens: Vec<usize>,
}

/// Integrated gradients' completeness: `(f(x), f(baseline), delta)`.
type Completeness = (f64, f64, f64);

struct Explanation {
    id: String,
    text: String,
    probabilities: Vec<f64>,
    predicted: usize,
    /// (class, scores per unit, IG completeness), predicted class first.
    per_class: Vec<(usize, Vec<f64>, Option<Completeness>)>,
    units: Vec<Unit>,
    token_scores_predicted: Vec<f64>,
    encoded: Encoded,
}

fn units(clf: &Classifier, enc: &Encoded, granularity: Granularity) -> Vec<Unit> {
    match granularity {
        Granularity::Word => merge_words(&vec![0.0; enc.len()], &enc.word_ids)
            .into_iter()
            .map(|w| Unit {
                text: clf.word_text(enc, &w.tokens),
                tokens: w.tokens,
            })
            .collect(),
        Granularity::Token => (0..enc.len())
            .filter(|&p| enc.word_ids[p].is_some())
            .map(|p| Unit {
                text: clf.tokenizer.id_to_token(enc.ids[p]).unwrap_or_default(),
                tokens: vec![p],
            })
            .collect(),
    }
}

fn explain_one(
    clf: &Classifier,
    args: &ExplainArgs,
    id: String,
    text: String,
) -> Result<Explanation> {
    let enc = clf.tokenizer.encode(&text)?;
    let probabilities = clf.predict(vec![enc.clone()], 1)?.remove(0);
    let predicted = top_k(&probabilities, 1)[0];
    let seq = TokenSequence::new(enc.ids.clone(), Some(enc.type_ids.clone()));
    let units = units(clf, &enc, args.granularity);
    let classes: Vec<usize> = if args.all_classes {
        std::iter::once(predicted)
            .chain((0..probabilities.len()).filter(|&c| c != predicted))
            .collect()
    } else {
        vec![predicted]
    };
    let sum_units = |tok: &[f64]| -> Vec<f64> {
        units
            .iter()
            .map(|u| u.tokens.iter().map(|&p| tok[p]).sum())
            .collect()
    };
    let mut per_class = Vec::new();
    let mut token_scores_predicted = vec![0.0; enc.len()];
    match args.method {
        Method::Ig => {
            let baseline = pad_baseline(&seq, &clf.special_ids(), clf.tokenizer.pad_id());
            let config = IgConfig {
                n_steps: args.steps,
                internal_batch_size: args.internal_batch_size,
                ..IgConfig::default()
            };
            for &c in &classes {
                let ig = valor_bert::lowp::autocast(clf.autocast(), || {
                    integrated_gradients(&clf.model, &seq, &baseline, Some(c), &config)
                })??;
                if c == predicted {
                    token_scores_predicted = ig.token_attributions.clone();
                }
                per_class.push((
                    c,
                    sum_units(&ig.token_attributions),
                    Some((ig.logit, ig.baseline_logit, ig.delta)),
                ));
            }
        }
        Method::Rollout => {
            let r = attention_rollout(&clf.model, &seq)?;
            token_scores_predicted = r.clone();
            per_class.push((predicted, sum_units(&r), None));
        }
        Method::Occlusion => {
            let features: Vec<Vec<usize>> = units.iter().map(|u| u.tokens.clone()).collect();
            for &c in &classes {
                let occ = occlusion(
                    &clf.model,
                    &seq,
                    &features,
                    Some(c),
                    clf.tokenizer.pad_id(),
                    32,
                )?;
                if c == predicted {
                    // Spread each feature's score over its tokens for the faithfulness ranking.
                    for (u, &a) in units.iter().zip(&occ.attributions) {
                        for &p in &u.tokens {
                            token_scores_predicted[p] = a / u.tokens.len() as f64;
                        }
                    }
                }
                per_class.push((c, occ.attributions, None));
            }
        }
    }
    Ok(Explanation {
        id,
        text,
        probabilities,
        predicted,
        per_class,
        units,
        token_scores_predicted,
        encoded: enc,
    })
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Ig => "integrated_gradients",
        Method::Rollout => "attention_rollout",
        Method::Occlusion => "occlusion",
    }
}

fn to_json(
    args: &ExplainArgs,
    labels: &[String],
    exps: &[Explanation],
    faith: Option<Value>,
) -> Value {
    let items: Vec<Value> = exps
        .iter()
        .map(|e| {
            let probs: serde_json::Map<String, Value> = labels
                .iter()
                .zip(&e.probabilities)
                .map(|(l, p)| (l.clone(), json!(p)))
                .collect();
            let classes: Vec<Value> = e
                .per_class
                .iter()
                .map(|(c, scores, comp)| {
                    let attributions: Vec<Value> = e
                        .units
                        .iter()
                        .zip(scores)
                        .map(|(u, s)| json!({"text": u.text, "tokens": u.tokens, "score": s}))
                        .collect();
                    let mut obj = json!({"label": labels[*c], "attributions": attributions});
                    if let Some((fx, fb, delta)) = comp {
                        obj["completeness"] = json!({
                            "logit": fx, "baseline_logit": fb, "delta": delta,
                            "relative_delta": delta.abs() / (fx - fb).abs().max(f64::MIN_POSITIVE),
                        });
                    }
                    obj
                })
                .collect();
            json!({
                "id": e.id,
                "text": e.text,
                "label": labels[e.predicted],
                "probabilities": probs,
                "explanations": classes,
            })
        })
        .collect();
    let mut out = json!({
        "schema": "valor.explain/1",
        "model": args.model.display().to_string(),
        "method": method_name(args.method),
        "granularity": match args.granularity { Granularity::Word => "word", Granularity::Token => "token" },
    });
    if args.method == Method::Ig {
        out["steps"] = json!(args.steps);
        out["rule"] = json!("gausslegendre");
        out["baseline"] = json!("[PAD] keeping [CLS]/[SEP]");
    }
    out["items"] = Value::Array(items);
    if let Some(f) = faith {
        out["faithfulness"] = f;
    }
    out
}

/// Colour intensity of a score relative to the largest |score|.
fn intensity(s: f64, max: f64) -> f64 {
    if max > 0.0 {
        (s.abs() / max).min(1.0)
    } else {
        0.0
    }
}

fn to_html(
    labels: &[String],
    exps: &[Explanation],
    method: Method,
    faith: Option<&Value>,
) -> String {
    let mut h = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>valor explain</title>\n<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}span.w{padding:0 .15em;border-radius:.2em}p.meta{color:#555}</style></head><body>\n",
    );
    let _ = writeln!(h, "<h1>Explanations ({})</h1>", method_name(method));
    for e in exps {
        let (_, scores, comp) = &e.per_class[0];
        let max = scores.iter().fold(0.0f64, |m, s| m.max(s.abs()));
        let _ = writeln!(
            h,
            "<section><h2>{} &mdash; {} ({:.3})</h2>",
            escape(&e.id),
            escape(&labels[e.predicted]),
            e.probabilities[e.predicted]
        );
        h.push_str("<p>");
        for (u, s) in e.units.iter().zip(scores) {
            let a = intensity(*s, max);
            let colour = if *s >= 0.0 {
                format!("rgba(0,160,0,{a:.3})")
            } else {
                format!("rgba(220,0,0,{a:.3})")
            };
            let _ = write!(
                h,
                "<span class=\"w\" style=\"background:{colour}\" title=\"{s:.4}\">{}</span> ",
                escape(&u.text)
            );
        }
        h.push_str("</p>\n<p class=\"meta\">");
        let probs: Vec<String> = labels
            .iter()
            .zip(&e.probabilities)
            .map(|(l, p)| format!("{}: {p:.3}", escape(l)))
            .collect();
        h.push_str(&probs.join(", "));
        if let Some((fx, fb, d)) = comp {
            let _ = write!(
                h,
                "; completeness delta {d:.2e} (f(x) − f(baseline) = {:.4})",
                fx - fb
            );
        }
        h.push_str("</p></section>\n");
    }
    if let Some(f) = faith {
        let _ = writeln!(
            h,
            "<section><h2>Faithfulness</h2><p>{}</p></section>",
            escape(&faith_line(f))
        );
    }
    h.push_str("</body></html>\n");
    h
}

fn faith_line(f: &Value) -> String {
    let g = |k: &str| f[k].as_f64().unwrap_or(f64::NAN);
    format!(
        "faithfulness: score {:.4} (comprehensiveness {:.4} vs random {:.4}; sufficiency {:.4} vs random {:.4})",
        g("score"),
        g("comprehensiveness"),
        g("random_comprehensiveness"),
        g("sufficiency"),
        g("random_sufficiency"),
    )
}

fn to_terminal(labels: &[String], exps: &[Explanation], colour: bool) -> String {
    let mut t = String::new();
    for e in exps {
        let (_, scores, comp) = &e.per_class[0];
        let max = scores.iter().fold(0.0f64, |m, s| m.max(s.abs()));
        let _ = writeln!(
            t,
            "{}: {} ({:.3})",
            e.id, labels[e.predicted], e.probabilities[e.predicted]
        );
        let words: Vec<String> = e
            .units
            .iter()
            .zip(scores)
            .map(|(u, s)| {
                if colour {
                    // 256-colour background: greens for support, reds against.
                    let level = (intensity(*s, max) * 4.0).round() as u8;
                    let code = match (*s >= 0.0, level) {
                        (_, 0) => return u.text.clone(),
                        (true, l) => [194, 157, 120, 34][usize::from(l - 1)],
                        (false, l) => [224, 217, 210, 160][usize::from(l - 1)],
                    };
                    format!("\x1b[48;5;{code}m{}\x1b[0m", u.text)
                } else {
                    format!("{}[{s:+.3}]", u.text)
                }
            })
            .collect();
        let _ = writeln!(t, "  {}", words.join(" "));
        if let Some((fx, fb, d)) = comp {
            let _ = writeln!(
                t,
                "  completeness delta {d:.2e} of f(x) - f(baseline) = {:.4}",
                fx - fb
            );
        }
    }
    t
}

pub fn run(args: ExplainArgs) -> Result<Outcome> {
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    if let Some(out) = &args.out {
        let inputs: Vec<&Path> = args.input.iter().map(PathBuf::as_path).collect();
        crate::common::check_output(out, &inputs, args.overwrite)?;
    }
    let clf = Classifier::load_at(
        &args.model,
        args.adapter.as_deref(),
        args.backend,
        args.max_len,
        args.method == Method::Ig,
        args.precision,
    )?;
    if args.precision != valor_bert::Precision::Fp32 {
        let note = if args.method == Method::Ig && args.backend == Backend::Cpu {
            format!(
                "autocast: encoder Linear products forward and backward on {} kernels",
                args.precision.kernel()
            )
        } else {
            crate::common::precision_note(args.backend, args.precision)
        };
        eprintln!("precision {}: {note}", args.precision);
    }
    let labels = clf.labels().to_vec();
    let mut exps = Vec::new();
    if let Some(text) = &args.text {
        exps.push(explain_one(&clf, &args, "1".into(), text.clone())?);
    } else if let Some(input) = &args.input {
        for chunk in
            stream_table(input, 4096).with_context(|| format!("reading {}", input.display()))?
        {
            let table = chunk.with_context(|| format!("reading {}", input.display()))?;
            table.require(&args.text_col, Some("pass --text-col"))?;
            let texts = table.strings(&args.text_col)?;
            let ids: Vec<String> = match &args.id_col {
                Some(col) => table
                    .strings(col)?
                    .into_iter()
                    .map(Option::unwrap_or_default)
                    .collect(),
                None => (0..table.n_rows())
                    .map(|i| table.file_row(i).to_string())
                    .collect(),
            };
            for (id, text) in ids.into_iter().zip(texts) {
                exps.push(explain_one(&clf, &args, id, text.unwrap_or_default())?);
            }
        }
    }
    if exps.is_empty() {
        bail!("no texts to explain");
    }
    let faith = if args.faithfulness {
        let special = clf.special_ids();
        let items: Vec<FaithfulnessItem> = exps
            .iter()
            .filter(|e| e.encoded.word_ids.iter().any(Option::is_some))
            .map(|e| FaithfulnessItem {
                input_ids: e.encoded.ids.clone(),
                token_type_ids: e.encoded.type_ids.clone(),
                special: e.encoded.ids.iter().map(|i| special.contains(i)).collect(),
                attributions: e.token_scores_predicted.clone(),
                target: e.predicted,
            })
            .collect();
        let report = faithfulness(
            &clf.model,
            &items,
            &FaithfulnessConfig {
                seed: args.seed,
                random_repeats: 3,
                ..FaithfulnessConfig::default()
            },
        )?;
        Some(serde_json::to_value(report)?)
    } else {
        None
    };
    let format = args.format.unwrap_or_else(|| {
        match args
            .out
            .as_ref()
            .and_then(|p| p.extension())
            .and_then(|e| e.to_str())
        {
            Some("json") => OutputFormat::Json,
            Some("html" | "htm") => OutputFormat::Html,
            _ => OutputFormat::Terminal,
        }
    });
    let to_stdout_tty = args.out.is_none() && std::io::stdout().is_terminal();
    let mut text = match format {
        OutputFormat::Json => {
            let mut s =
                serde_json::to_string_pretty(&to_json(&args, &labels, &exps, faith.clone()))?;
            s.push('\n');
            s
        }
        OutputFormat::Html => to_html(&labels, &exps, args.method, faith.as_ref()),
        OutputFormat::Terminal => to_terminal(&labels, &exps, to_stdout_tty),
    };
    if format == OutputFormat::Terminal
        && let Some(f) = &faith
    {
        let _ = writeln!(text, "{}", faith_line(f));
    }
    match &args.out {
        Some(path) => valor_data::write_atomic(path, |f| f.write_all(text.as_bytes()))
            .with_context(|| format!("writing {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(Outcome::Ok)
}
