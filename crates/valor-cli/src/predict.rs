//! `valor predict`: one prediction per row of a CSV/TSV/Parquet/JSONL file,
//! streamed in chunks so the input may be larger than memory.
//!
//! Output columns: `id` (from `--id-col`, else the 1-based row number),
//! `label` (the predicted label name), `p_<label>` per label (softmax
//! probabilities), `decision` when the model folder has `thresholds.json`,
//! and with `--explain` `top_words` (the three words with the largest
//! integrated-gradients attribution to the predicted label, `|` separated).
//! CSV, TSV and JSONL outputs are appended chunk by chunk to a temporary file
//! in the output's folder, synced and renamed at the end; Parquet collects
//! the predictions (not the inputs) and writes once.
//!
//! **Decision rule.** A model folder written by `valor remodel` may carry
//! `thresholds.json` ([`ThresholdsFile`]): a per-group post-processing rule
//! (randomised thresholds for two labels, class offsets for more) that is
//! part of the fair model. Then the label is the rule's, given each row's
//! value in the group column (`--group-col`, default the column the file
//! names); the probabilities stay the model's, so `label` need not be the
//! most probable class. Every output row says how its label was chosen in
//! `decision`: `thresholds` or `class_offsets` (the file's `kind`), or
//! `argmax` under `--ignore-thresholds`, and one line on stderr says it too.
//! Without the group column, or with a group the file does not know (it has
//! no fallback rule), prediction fails before any output is written, unless
//! `--ignore-thresholds` is given, which is warned about. Without
//! `thresholds.json` the label is the most probable class and there is no
//! `decision` column.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use valor_base::csv::record;
use valor_bert::explain::top_k;
use valor_bert::{Backend, Precision};
use valor_data::{ColumnData, Format, Table, stream_table, write_table};
use valor_train::{Classifier, PostProcess, THRESHOLDS_FILE, ThresholdsFile, ThresholdsPredictor};

use crate::Outcome;

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Model folder: HF `BertForSequenceClassification` layout (config.json
    /// with id2label, model.safetensors, tokenizer.json), e.g. one written by
    /// `valor train`.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// A PEFT LoRA adapter folder (adapter_config.json,
    /// adapter_model.safetensors) applied to --model, the base: e.g. the
    /// `adapter/` of a `valor train --lora` run or one saved by PEFT.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// Input file (.csv, .tsv, .parquet, .jsonl).
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Output file; the format follows the extension. Never the input file;
    /// an existing file is replaced only with --overwrite.
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub overwrite: bool,
    /// Column holding the text.
    #[arg(long, value_name = "COL", default_value = "text")]
    pub text_col: String,
    /// Column holding row ids, copied to the `id` column (default: the
    /// 1-based row number).
    #[arg(long, value_name = "COL")]
    pub id_col: Option<String>,
    /// Compute backend: cpu, wgpu, cuda (the latter two need the cargo feature).
    #[arg(long, value_name = "NAME", default_value = "cpu")]
    pub backend: Backend,
    /// Arithmetic of the encoder's Linear layers on the CPU: fp32 (the
    /// reference), bf16 (bf16 weights and activations, f32 sums; AVX512-BF16
    /// where the CPU has it) or int8 (weights int8 per output channel,
    /// activations int8 per row, as PyTorch's dynamic quantisation;
    /// AVX512-VNNI where the CPU has it). Faster, and within a small
    /// tolerance of fp32 (README). Not with --explain on the CPU. On wgpu
    /// and cuda: fp32, bf16 or f16, the device's float dtype for the whole
    /// model. Default: int8 for a folder `valor quantize` wrote (its stored
    /// int8 weights on the int8 kernels; fp32 computes with them
    /// dequantised), fp32 otherwise.
    #[arg(long, value_name = "P")]
    pub precision: Option<Precision>,
    /// Texts per forward pass.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub batch_size: usize,
    /// Maximum tokens per text (longer texts are truncated).
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub max_len: usize,
    /// Rows read per chunk of the input.
    #[arg(long, value_name = "N", default_value_t = 8192)]
    pub chunk_rows: usize,
    /// Add a `top_words` column: the 3 words with the largest
    /// integrated-gradients attribution to the predicted class.
    #[arg(long)]
    pub explain: bool,
    /// Integration steps for --explain.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub steps: usize,
    /// Column holding each row's group, for a model folder with
    /// thresholds.json (from `valor remodel`), whose per-group rule then
    /// picks the label (default: the column the file names).
    #[arg(long, value_name = "COL")]
    pub group_col: Option<String>,
    /// Ignore the model folder's thresholds.json and label each row with its
    /// most probable class: the labels are then NOT the fairness-mitigated
    /// ones the remodelled model was chosen for (a warning says so).
    #[arg(long)]
    pub ignore_thresholds: bool,
}

/// Writes prediction rows chunk by chunk.
enum Sink {
    /// CSV/TSV/JSONL: appended to a temp file, renamed at the end.
    Stream {
        format: Format,
        file: BufWriter<tempfile::NamedTempFile>,
        header_done: bool,
    },
    /// Parquet: predictions gathered in memory.
    Collect(Vec<Row>),
}

struct Row {
    id: String,
    label: String,
    probs: Vec<f64>,
    /// How the label was chosen; only when the model folder has thresholds.json.
    decision: Option<&'static str>,
    top_words: Option<String>,
}

/// The model folder's thresholds.json, applied to a streamed file.
struct Thresholds<'a> {
    path: PathBuf,
    file: &'a ThresholdsFile,
    column: String,
    predictor: ThresholdsPredictor<'a>,
}

impl Thresholds<'_> {
    /// Label ids of one chunk's rows; every row needs a group the file knows.
    fn labels(&mut self, table: &Table, input: &Path, probs: &[Vec<f64>]) -> Result<Vec<u32>> {
        if table.require(&self.column, None).is_err() {
            let from = if self.column == self.file.group_column {
                "the group column it names"
            } else {
                "the group column given with --group-col"
            };
            bail!(
                "{path} holds per-group decision rules ({kind}), so each row needs its group, but \
                 {input} has no column `{column}` ({from}); its columns are: {columns}. Pass \
                 --group-col COL to name the column with each row's group, or \
                 --ignore-thresholds to label rows by the most probable class without the \
                 fairness post-processing",
                path = self.path.display(),
                kind = self.file.kind(),
                input = input.display(),
                column = self.column,
                columns = table.column_names().join(", "),
            );
        }
        let known = self.file.groups();
        let groups = table.strings(&self.column)?;
        let mut values = Vec::with_capacity(groups.len());
        for (i, g) in groups.into_iter().enumerate() {
            match g {
                Some(g) if known.contains(&g.as_str()) => values.push(g),
                other => bail!(
                    "{input}, row {row}, column `{column}`: {value} is not a group of {path} \
                     (its groups are: {known}; the file has no fallback rule). Fix the row, \
                     or pass --ignore-thresholds to label rows by the most probable class",
                    input = input.display(),
                    row = table.file_row(i),
                    column = self.column,
                    value = other.map_or("an empty value".into(), |v| format!("`{v}`")),
                    path = self.path.display(),
                    known = known.join(", "),
                ),
            }
        }
        let flat: Vec<f64> = probs.iter().flatten().copied().collect();
        self.predictor
            .predict(&flat, &values)
            .with_context(|| format!("applying {}", self.path.display()))
    }
}

impl Sink {
    fn new(path: &Path) -> Result<Self> {
        let format = Format::from_path(path)?;
        if format == Format::Parquet {
            return Ok(Self::Collect(Vec::new()));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut builder = tempfile::Builder::new();
        // An ordinary file's mode (0666 less the umask), not the temp file's 0600.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let tmp = builder
            .tempfile_in(dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        Ok(Self::Stream {
            format,
            file: BufWriter::new(tmp),
            header_done: false,
        })
    }

    fn write(&mut self, rows: Vec<Row>, labels: &[String]) -> Result<()> {
        match self {
            Self::Collect(all) => all.extend(rows),
            Self::Stream {
                format,
                file,
                header_done,
            } => {
                let explain = rows.first().is_some_and(|r| r.top_words.is_some());
                let decision = rows.first().is_some_and(|r| r.decision.is_some());
                if *format == Format::JsonLines {
                    for r in rows {
                        let mut obj = serde_json::Map::new();
                        obj.insert("id".into(), r.id.into());
                        obj.insert("label".into(), r.label.into());
                        for (l, p) in labels.iter().zip(&r.probs) {
                            obj.insert(format!("p_{l}"), (*p).into());
                        }
                        if let Some(d) = r.decision {
                            obj.insert("decision".into(), d.into());
                        }
                        if let Some(w) = r.top_words {
                            obj.insert("top_words".into(), w.into());
                        }
                        serde_json::to_writer(&mut *file, &obj)?;
                        file.write_all(b"\n")?;
                    }
                    return Ok(());
                }
                let sep = if *format == Format::Tsv { b'\t' } else { b',' };
                if !*header_done {
                    let mut head = vec!["id".to_string(), "label".to_string()];
                    head.extend(labels.iter().map(|l| format!("p_{l}")));
                    if decision {
                        head.push("decision".into());
                    }
                    if explain {
                        head.push("top_words".into());
                    }
                    file.write_all(record(&head, sep).as_bytes())?;
                    *header_done = true;
                }
                for r in rows {
                    let mut fields = vec![r.id, r.label];
                    fields.extend(r.probs.iter().map(|p| p.to_string()));
                    if let Some(d) = r.decision {
                        fields.push(d.to_string());
                    }
                    if let Some(w) = r.top_words {
                        fields.push(w);
                    }
                    file.write_all(record(&fields, sep).as_bytes())?;
                }
            }
        }
        Ok(())
    }

    fn finish(self, path: &Path, labels: &[String], explain: bool) -> Result<()> {
        match self {
            Self::Collect(rows) => {
                let mut cols = vec![
                    (
                        "id".to_string(),
                        ColumnData::Text(rows.iter().map(|r| r.id.clone()).collect()),
                    ),
                    (
                        "label".to_string(),
                        ColumnData::Text(rows.iter().map(|r| r.label.clone()).collect()),
                    ),
                ];
                for (j, l) in labels.iter().enumerate() {
                    cols.push((
                        format!("p_{l}"),
                        ColumnData::Float(rows.iter().map(|r| r.probs[j]).collect()),
                    ));
                }
                if rows.first().is_some_and(|r| r.decision.is_some()) {
                    cols.push((
                        "decision".into(),
                        ColumnData::Text(
                            rows.iter()
                                .map(|r| r.decision.unwrap_or_default().to_string())
                                .collect(),
                        ),
                    ));
                }
                if explain {
                    cols.push((
                        "top_words".into(),
                        ColumnData::Text(
                            rows.iter()
                                .map(|r| r.top_words.clone().unwrap_or_default())
                                .collect(),
                        ),
                    ));
                }
                write_table(path, cols).with_context(|| format!("writing {}", path.display()))?;
            }
            Self::Stream { file, .. } => {
                let tmp = file.into_inner().map_err(|e| e.into_error())?;
                tmp.as_file().sync_all()?;
                // The output was checked before any work; persist over a
                // file only if it was there then (and --overwrite said so).
                tmp.persist(path)
                    .map_err(|e| e.error)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Ok(())
    }
}

pub fn run(args: PredictArgs) -> Result<Outcome> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    Format::from_path(&args.output)?;
    crate::common::check_output(&args.output, &[&args.input], args.overwrite)?;
    let precision = match args.precision {
        Some(p) => p,
        None => crate::quantize::default_precision(
            &args.model,
            args.backend,
            args.adapter.is_none() && !args.explain,
        )?,
    };
    let clf = Classifier::load_at(
        &args.model,
        args.adapter.as_deref(),
        args.backend,
        args.max_len,
        args.explain,
        precision,
    )?;
    if precision != Precision::Fp32 {
        let why = if args.precision.is_none() {
            " (the default for a folder `valor quantize` wrote: its stored int8 weights; \
             --precision fp32 computes with them dequantised)"
        } else {
            ""
        };
        eprintln!(
            "precision {precision}{why}: {}",
            crate::common::precision_note(args.backend, precision)
        );
    }
    let labels = clf.labels().to_vec();
    let thresholds_path = args.model.join(THRESHOLDS_FILE);
    let file = ThresholdsFile::load(&args.model)?;
    if let (Some(adapter), Some(_)) = (&args.adapter, &file) {
        bail!(
            "{}: the decision rule of the base model, not of the adapter in {}; merge the \
             adapter (`valor merge`) and remodel the merged model for a rule of its own",
            thresholds_path.display(),
            adapter.display()
        );
    }
    if let Some(f) = &file {
        f.check_labels(&labels).map_err(|why| {
            anyhow::anyhow!(
                "{}: does not fit the model: {why}",
                thresholds_path.display()
            )
        })?;
    }
    let mut thresholds = match &file {
        Some(f) if args.ignore_thresholds => {
            eprintln!(
                "warning: --ignore-thresholds: labels are the most probable class, NOT the \
                 per-group {} of {} that the remodelled model was chosen with; the \
                 `decision` column reads `argmax`",
                f.kind(),
                thresholds_path.display()
            );
            None
        }
        Some(f) => {
            let column = args
                .group_col
                .clone()
                .unwrap_or_else(|| f.group_column.clone());
            let seed = match f.post {
                PostProcess::Thresholds(_) => format!(", seed {}", f.seed),
                PostProcess::ClassOffsets(_) => String::new(),
            };
            eprintln!(
                "predict: labels from {} ({} per group of column `{column}`{seed}); \
                 probabilities are the model's; the `decision` column reads `{}`",
                thresholds_path.display(),
                f.kind(),
                f.kind()
            );
            Some(Thresholds {
                path: thresholds_path.clone(),
                file: f,
                column,
                predictor: f.predictor(),
            })
        }
        None => {
            if args.group_col.is_some() || args.ignore_thresholds {
                eprintln!(
                    "warning: {} has no {THRESHOLDS_FILE}; --group-col and \
                     --ignore-thresholds have no effect, labels are the most probable class",
                    args.model.display()
                );
            }
            None
        }
    };
    let applied = thresholds.is_some();
    let decision = file
        .as_ref()
        .map(|f| if applied { f.kind() } else { "argmax" });
    let mut sink = Sink::new(&args.output)?;
    let stream = stream_table(&args.input, args.chunk_rows)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let mut rows_done = 0usize;
    for chunk in stream {
        let table = chunk.with_context(|| format!("reading {}", args.input.display()))?;
        table.require(&args.text_col, Some("pass --text-col"))?;
        let texts = table.strings(&args.text_col)?;
        let ids: Vec<String> = match &args.id_col {
            Some(col) => {
                table.require(col, Some("pass --id-col"))?;
                table
                    .strings(col)?
                    .into_iter()
                    .map(Option::unwrap_or_default)
                    .collect()
            }
            None => (0..table.n_rows())
                .map(|i| table.file_row(i).to_string())
                .collect(),
        };
        let texts: Vec<String> = texts.into_iter().map(Option::unwrap_or_default).collect();
        let encodings = clf.tokenizer.encode_batch(&texts).with_context(|| {
            format!(
                "tokenizing rows {}.. of {}",
                table.file_row(0),
                args.input.display()
            )
        })?;
        let probs = clf.predict(encodings.clone(), args.batch_size)?;
        let chosen: Vec<usize> = match &mut thresholds {
            Some(t) => t
                .labels(&table, &args.input, &probs)?
                .into_iter()
                .map(|l| l as usize)
                .collect(),
            None => probs.iter().map(|p| top_k(p, 1)[0]).collect(),
        };
        let mut rows = Vec::with_capacity(probs.len());
        for (((id, p), enc), label) in ids.into_iter().zip(probs).zip(&encodings).zip(chosen) {
            let top_words = if args.explain {
                Some(clf.top_words(enc, label, args.steps, 3)?.join("|"))
            } else {
                None
            };
            rows.push(Row {
                id,
                label: labels[label].clone(),
                probs: p,
                decision,
                top_words,
            });
        }
        rows_done += rows.len();
        sink.write(rows, &labels)?;
    }
    if rows_done == 0 {
        bail!("{}: no rows to predict", args.input.display());
    }
    sink.finish(&args.output, &labels, args.explain)?;
    Ok(Outcome::Ok)
}
