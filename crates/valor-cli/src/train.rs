//! `valor train`: fine-tune an HF BERT checkpoint, or train a BERT preset
//! from scratch, with fairness inside the objective; evaluate accuracy and
//! fairness every epoch; test the best epoch's model.
//!
//! Two stages, as everywhere in the CLI: the flags typed here become a
//! validated `valor_train::TrainConfig` ([`TrainArgs::to_config`]), which
//! the library runs. `--resume DIR` takes the configuration from the run
//! folder instead, so it refuses every setting flag.
//!
//! `--values FILE` reads the fairness objective (λ and the penalty) from
//! the `[train]` table of a `values.toml`; `--fairness-lambda` and
//! `--fairness-penalty` override it, and `config.json` records where each
//! came from (`fairness.lambda_from`, `fairness.penalty_from`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use valor_bert::Backend;
use valor_data::SplitFiles;
use valor_train::{
    AUTO_CONSTRAINT_BOUND, Constraint, ConstraintKind, Control, Decay, Devices, Event, ModelSource,
    Observer, Outcome as TrainOutcome, Penalty, ProgressBars, SelectMetric, SettingSource,
    TrainConfig, TrainReport, Weighting,
};
use valor_values::{FairnessPenalty, ValuesSpec};

use crate::Outcome;
use crate::common::DataArgs;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The data file (or give --spec with a `path`). With no column flags and
    /// no spec, a file written by `valor data gen` is read with its own
    /// columns: text, label, groups gender and age_band, twin_text, and
    /// fair_label as the reference label.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub columns: DataArgs,
    /// Run folder to create: config.json, metrics.jsonl, tokenizer.json,
    /// checkpoints/, the best model as an HF folder model/, report.json.
    #[arg(long, value_name = "DIR", required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the run in DIR from its last checkpoint, with the settings it
    /// was started with (no other setting flag is allowed).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["out", "overwrite"])]
    pub resume: Option<PathBuf>,
    /// Replace a run that --out already holds: only the files Valor wrote
    /// there are removed (a folder whose config.json Valor did not write is
    /// refused).
    #[arg(long)]
    pub overwrite: bool,

    /// Fine-tune this HF checkpoint folder (config.json, model.safetensors
    /// and its tokenizer), e.g. all-MiniLM-L6-v2, instead of training --arch
    /// from scratch. Changes the defaults to lr 2e-5, batch 16, 5 epochs.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// BERT architecture trained from scratch (with a WordPiece tokenizer
    /// trained on the training split): tiny, mini, small, medium, base
    /// [default: tiny].
    #[arg(long, value_name = "NAME", conflicts_with = "model")]
    pub arch: Option<String>,
    /// WordPiece vocabulary size for a from-scratch model [default: 3000].
    #[arg(long, value_name = "N", conflicts_with = "model")]
    pub vocab_size: Option<usize>,
    /// Use this tokenizer.json for a from-scratch model instead of training
    /// one, e.g. another run's, so that two runs tokenize identically.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["model", "vocab_size"])]
    pub tokenizer: Option<PathBuf>,
    /// Tokens per example, [CLS] and [SEP] included; longer texts are
    /// truncated [default: 128].
    #[arg(long, value_name = "N")]
    pub max_len: Option<usize>,

    /// Training epochs [default: 4 from scratch, 5 fine-tuning].
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// Examples per micro-batch [default: 32 from scratch, 16 fine-tuning].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimizer step (gradient accumulation; the loss is
    /// normalised by the examples of the whole step) [default: 1].
    #[arg(long, value_name = "N")]
    pub grad_accum: Option<usize>,
    /// Examples per evaluation batch [default: 64].
    #[arg(long, value_name = "N")]
    pub eval_batch_size: Option<usize>,
    /// Peak learning rate of AdamW [default: 1e-3 from scratch, 2e-5
    /// fine-tuning].
    #[arg(long, value_name = "LR")]
    pub lr: Option<f64>,
    /// Share of the optimizer steps spent warming the learning rate up
    /// linearly from 0 [default: 0.1].
    #[arg(long, value_name = "RATIO")]
    pub warmup_ratio: Option<f64>,
    /// Learning-rate decay after the warmup [default: linear].
    #[arg(long, value_name = "KIND")]
    pub schedule: Option<DecayArg>,
    /// AdamW decoupled weight decay; biases and LayerNorm weights are never
    /// decayed [default: 0.01].
    #[arg(long, value_name = "W")]
    pub weight_decay: Option<f64>,
    /// Clip the global gradient norm to this; 0 turns clipping off
    /// [default: 1.0].
    #[arg(long, value_name = "NORM")]
    pub max_grad_norm: Option<f64>,
    /// Dropout probability of every dropout layer [default: 0.1 from
    /// scratch, the checkpoint's own when fine-tuning].
    #[arg(long, value_name = "P")]
    pub dropout: Option<f64>,
    /// Seed of initialisation, dropout and batch order [default: 42].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Train, validation and test fractions, stratified by label and groups
    /// [default: 0.8,0.1,0.1].
    #[arg(long, value_name = "TRAIN,VALID,TEST", value_delimiter = ',')]
    pub split: Option<Vec<f64>>,
    /// Seed of the split [default: 42].
    #[arg(long, value_name = "N")]
    pub split_seed: Option<u64>,
    /// Take each row's split from this column of the data file instead of
    /// drawing it: `train`, `valid` (or validation, val, dev) or `test`,
    /// honoured row for row (report.json's provenance lists the validation
    /// and test row ids), so another tool can be measured on the same rows.
    #[arg(long, value_name = "COL", conflicts_with_all = ["split", "split_seed"])]
    pub split_col: Option<String>,
    /// The training split as a file of its own, with --valid and --test:
    /// every row of each file is exactly that split (no row is drawn or
    /// moved), read with the same column flags; the three files need the
    /// same columns. Replaces --data, --split, --split-seed and
    /// --split-col. config.json records the files (so --resume reads them
    /// again) and report.json's provenance says which file each split came
    /// from, with its SHA-256.
    #[arg(long = "train", value_name = "FILE")]
    pub train_file: Option<PathBuf>,
    /// The validation split's file (with --train and --test): the epoch is
    /// selected on its rows.
    #[arg(long = "valid", value_name = "FILE")]
    pub valid_file: Option<PathBuf>,
    /// The test split's file (with --train and --valid): the chosen model
    /// is tested on its rows.
    #[arg(long = "test", value_name = "FILE")]
    pub test_file: Option<PathBuf>,

    /// Take the fairness objective from the [train] table of this
    /// values.toml: `fairness_lambda` (λ) and `fairness_penalty`. The flags
    /// below override it; config.json records where each came from.
    #[arg(long, value_name = "FILE")]
    pub values: Option<PathBuf>,
    /// Weight λ of the fairness penalty in the loss (cross-entropy + λ ·
    /// penalty), or `auto`: no fixed weight but constrained training (see
    /// --constraint) that keeps the --fairness-penalty's gap (demographic
    /// parity or equalized odds) at or under 0.05 on every fairness group
    /// column, its multipliers set by the data [default: the --values
    /// file's, else 0, the plain objective].
    #[arg(long, value_name = "LAMBDA|auto")]
    pub fairness_lambda: Option<LambdaArg>,
    /// The differentiable penalty: demographic-parity (gap across groups of
    /// the mean predicted probability of each class) or equalized-odds (the
    /// same within each true label) [default: the --values file's, else
    /// demographic-parity].
    #[arg(long, value_name = "KIND")]
    pub fairness_penalty: Option<PenaltyArg>,
    /// A fairness constraint training must meet, `NAME <= BOUND` with NAME
    /// demographic_parity, equalized_odds or equal_opportunity (gaps as
    /// fairlearn defines them for two labels, the largest over classes for
    /// more); repeat for several. Each applies to every --fairness-group
    /// column. Trains with one multiplier per signed rate difference
    /// between two groups (proxy-Lagrangian with fairlearn's cost-sensitive
    /// reduction): under the multipliers each row's cross-entropy target
    /// and weight follow its Lagrangian costs, raising the lower group's
    /// rate and lowering the higher one's, and after every step each
    /// multiplier rises or falls with the difference of hard predictions on
    /// a constraint batch of other training rows. The tested model is the
    /// best validation epoch among those whose gaps meet the bounds with
    /// the margin of --constraint-confidence; if none does, `valor train`
    /// exits with 1. Replaces --fairness-lambda [default: the --values
    /// file's, else none].
    #[arg(long = "constraint", value_name = "'NAME <= BOUND'")]
    pub constraints: Vec<valor_train::Constraint>,
    /// Selection margin of --constraint: an epoch meets a constraint on
    /// validation when, for each signed rate difference between two groups
    /// that the gap is the largest of, this one-sided quantile of its
    /// bootstrap distribution (rows resampled 1000 times) is at or under
    /// the bound; 0.5 compares about the point estimate [default: 0.8].
    #[arg(long, value_name = "LEVEL", requires = "constraints")]
    pub constraint_confidence: Option<f64>,
    /// Step size of the multipliers of --constraint (integral gain): after
    /// each step a multiplier moves by this times its measured difference
    /// minus its training bound [default: 0.02].
    #[arg(long, value_name = "ETA", requires = "constraints")]
    pub multiplier_lr: Option<f64>,
    /// Proportional gain of the multipliers of --constraint: the loss uses
    /// each multiplier plus this times its last measured difference minus
    /// its training bound (never below 0), which damps the overshoot of the
    /// integral alone; 0 turns it off [default: 1.5].
    #[arg(long, value_name = "GAIN", requires = "constraints")]
    pub multiplier_gain: Option<f64>,
    /// Share of each --constraint bound the multipliers aim at during
    /// training: they rise while the measured training gap exceeds this
    /// times the bound, leaving room for the gap on unseen rows; 1 trains
    /// at the bound itself [default: 0.3].
    #[arg(long, value_name = "RATIO", requires = "constraints")]
    pub train_bound_ratio: Option<f64>,
    /// Rows of the constraint batch of --constraint: each step predicts
    /// this many training rows outside its own batch (forward passes only)
    /// and adds them to counts decayed by 0.97 per step, on which the gaps
    /// are measured (about the last 1,000 rows) [default: 32].
    #[arg(long, value_name = "N", requires = "constraints")]
    pub constraint_batch_size: Option<usize>,
    /// Share of the training rows --constraint holds out for its constraint
    /// batches (never in a gradient batch, drawn per group and label), so
    /// that the gaps the multipliers answer are measured on rows the model
    /// has not fitted; 0 draws them from the rows outside each step's
    /// batch [default: 0.2].
    #[arg(long, value_name = "SHARE", requires = "constraints")]
    pub constraint_holdout: Option<f64>,
    /// Group column the penalty and reweighing use; repeat for several
    /// (reweighing takes their joint groups) [default: the first --group].
    #[arg(long = "fairness-group", value_name = "COL")]
    pub fairness_groups: Vec<String>,
    /// Reweigh training examples (Kamiran & Calders: w(a, y) = P(a) P(y) /
    /// P(a, y)) so that labels are independent of the fairness groups;
    /// short for --weighting reweighing.
    #[arg(long, conflicts_with = "weighting")]
    pub reweigh: bool,
    /// Per-example weights of the cross-entropy: none, class-balanced
    /// (n / (K n_y)) or reweighing; multiplied with --weight-col when given
    /// [default: none].
    #[arg(long, value_name = "KIND")]
    pub weighting: Option<WeightingArg>,

    /// Validation metric that picks the best epoch (its model is exported
    /// and tested) and drives early stopping [default: macro-f1].
    #[arg(long, value_name = "METRIC")]
    pub select_metric: Option<SelectArg>,
    /// Stop after this many epochs without improvement of --select-metric
    /// [default: never].
    #[arg(long, value_name = "EPOCHS")]
    pub patience: Option<usize>,
    /// Smallest change of --select-metric that counts as an improvement
    /// [default: 0].
    #[arg(long, value_name = "DELTA")]
    pub min_delta: Option<f64>,
    /// Write a checkpoint every N optimizer steps besides each epoch's end;
    /// 0 writes them at epoch ends only [default: 100 from scratch, 200
    /// fine-tuning].
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<u64>,
    /// Also evaluate on validation every N optimizer steps, not only at
    /// each epoch's end: each evaluation is a candidate for the tested
    /// model (--select-metric; under --constraint, among those that meet
    /// the constraints' margins), checkpointed when it becomes the best;
    /// --patience still counts epochs [default: at epoch ends only].
    #[arg(long, value_name = "N")]
    pub eval_every: Option<u64>,
    /// Checkpoints to keep besides the best one, which is never deleted
    /// [default: 2].
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    /// Compute backend: cpu, wgpu or cuda (each needs its cargo feature)
    /// [default: cpu].
    #[arg(long, value_name = "NAME")]
    pub backend: Option<Backend>,
    /// Training arithmetic: fp32; on the CPU bf16 is autocast (the
    /// encoder's Linear products in bf16 with f32 accumulation, forward and
    /// backward; master weights, optimizer and the rest f32); on wgpu and
    /// cuda bf16/f16 are the devices' float dtype (the whole model,
    /// optimizer state included: burn has no mixed precision)
    /// [default: fp32].
    #[arg(long, value_name = "P")]
    pub precision: Option<valor_bert::Precision>,
    /// Data-parallel training: N (the backend's first N devices) or a list
    /// of device indices (0,1; one index as `1,`). Each micro-batch is
    /// split across the devices, every device runs forward and backward on
    /// its shard with a replica of the model, the gradients are summed on
    /// the first device and one optimizer step follows; the fairness
    /// penalty is then per shard, as with --grad-accum per micro-batch. The
    /// CPU backend is one device (index 0); list it twice (0,0) to run the
    /// data-parallel path on it [default: 1].
    #[arg(long, value_name = "N|I,J,...")]
    pub devices: Option<Devices>,
    /// Train LoRA adapters and the classification head only, every other
    /// weight frozen: `r=8,alpha=16,targets=query,value[,dropout=0.1]`
    /// (targets are PEFT's module names: query, key, value,
    /// attention.output.dense, intermediate.dense, output.dense, dense;
    /// alpha defaults to r). Needs --model. The run folder gets `adapter/`
    /// in PEFT's format and `model/` with the adapters merged.
    #[arg(long, value_name = "SPEC")]
    pub lora: Option<String>,

    /// Print report.json on stdout instead of the summary table.
    #[arg(long)]
    pub json: bool,
    /// No progress bars or epoch lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// `--fairness-lambda`: a weight or `auto`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LambdaArg {
    Value(f64),
    Auto,
}

impl std::str::FromStr for LambdaArg {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(Self::Value(v)),
            _ => Err(format!("`{s}` is not a weight >= 0 or `auto`")),
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DecayArg {
    Linear,
    Cosine,
    Constant,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PenaltyArg {
    DemographicParity,
    EqualizedOdds,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum WeightingArg {
    None,
    ClassBalanced,
    Reweighing,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SelectArg {
    Loss,
    Accuracy,
    MacroF1,
    BalancedAccuracy,
}

impl TrainArgs {
    /// The setting flags that were given (none may be with --resume).
    fn settings_given(&self) -> Vec<&'static str> {
        let c = &self.columns;
        let data_given = self.data.is_some()
            || c.spec.is_some()
            || c.preset.is_some()
            || c.text_col.is_some()
            || !c.features.is_empty()
            || c.template.is_some()
            || c.label_col.is_some()
            || c.labels.is_some()
            || !c.groups.is_empty()
            || c.id_col.is_some()
            || c.weight_col.is_some()
            || c.twin_col.is_some()
            || c.reference_label_col.is_some()
            || c.min_group_size.is_some();
        [
            ("data and column flags", data_given),
            ("--model", self.model.is_some()),
            ("--arch", self.arch.is_some()),
            ("--vocab-size", self.vocab_size.is_some()),
            ("--tokenizer", self.tokenizer.is_some()),
            ("--max-len", self.max_len.is_some()),
            ("--epochs", self.epochs.is_some()),
            ("--batch-size", self.batch_size.is_some()),
            ("--grad-accum", self.grad_accum.is_some()),
            ("--eval-batch-size", self.eval_batch_size.is_some()),
            ("--lr", self.lr.is_some()),
            ("--warmup-ratio", self.warmup_ratio.is_some()),
            ("--schedule", self.schedule.is_some()),
            ("--weight-decay", self.weight_decay.is_some()),
            ("--max-grad-norm", self.max_grad_norm.is_some()),
            ("--dropout", self.dropout.is_some()),
            ("--seed", self.seed.is_some()),
            ("--split", self.split.is_some()),
            ("--split-seed", self.split_seed.is_some()),
            ("--split-col", self.split_col.is_some()),
            ("--train", self.train_file.is_some()),
            ("--valid", self.valid_file.is_some()),
            ("--test", self.test_file.is_some()),
            ("--fairness-lambda", self.fairness_lambda.is_some()),
            ("--fairness-penalty", self.fairness_penalty.is_some()),
            ("--fairness-group", !self.fairness_groups.is_empty()),
            ("--constraint", !self.constraints.is_empty()),
            (
                "--constraint-confidence",
                self.constraint_confidence.is_some(),
            ),
            ("--multiplier-lr", self.multiplier_lr.is_some()),
            ("--multiplier-gain", self.multiplier_gain.is_some()),
            ("--train-bound-ratio", self.train_bound_ratio.is_some()),
            (
                "--constraint-batch-size",
                self.constraint_batch_size.is_some(),
            ),
            ("--constraint-holdout", self.constraint_holdout.is_some()),
            ("--reweigh", self.reweigh),
            ("--weighting", self.weighting.is_some()),
            ("--select-metric", self.select_metric.is_some()),
            ("--patience", self.patience.is_some()),
            ("--min-delta", self.min_delta.is_some()),
            ("--checkpoint-every", self.checkpoint_every.is_some()),
            ("--eval-every", self.eval_every.is_some()),
            ("--keep-last", self.keep_last.is_some()),
            ("--backend", self.backend.is_some()),
            ("--precision", self.precision.is_some()),
            ("--devices", self.devices.is_some()),
            ("--lora", self.lora.is_some()),
            ("--values", self.values.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }

    /// The split files of --train, --valid and --test: all three or none,
    /// and never with --data or another way of splitting.
    fn split_files(&self) -> Result<Option<SplitFiles>> {
        let given = [
            ("--train", &self.train_file),
            ("--valid", &self.valid_file),
            ("--test", &self.test_file),
        ];
        if given.iter().all(|(_, f)| f.is_none()) {
            return Ok(None);
        }
        let missing: Vec<&str> = given
            .iter()
            .filter(|(_, f)| f.is_none())
            .map(|(name, _)| *name)
            .collect();
        anyhow::ensure!(
            missing.is_empty(),
            "split files come as three: --train, --valid and --test; {} missing",
            missing.join(" and ")
        );
        let other: Vec<&str> = [
            ("--data", self.data.is_some()),
            ("--split", self.split.is_some()),
            ("--split-seed", self.split_seed.is_some()),
            ("--split-col", self.split_col.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect();
        anyhow::ensure!(
            other.is_empty(),
            "--train, --valid and --test give the data and its splits, row for row; drop {} (the column flags and --spec still say which column is what)",
            other.join(", ")
        );
        let file = |f: &Option<PathBuf>| f.clone().expect("checked above");
        Ok(Some(SplitFiles {
            train: file(&self.train_file),
            valid: file(&self.valid_file),
            test: file(&self.test_file),
        }))
    }

    /// The validated run configuration the flags describe.
    pub fn to_config(&self) -> Result<TrainConfig> {
        let split_files = self.split_files()?;
        let spec = match &split_files {
            Some(files) => self.columns.resolve(Some(files.train.clone()), "--train")?,
            None => self.columns.resolve(self.data.clone(), "--data")?,
        };
        let mut c = match &self.model {
            Some(dir) => TrainConfig::pretrained(spec, dir.clone()),
            None => TrainConfig::scratch(spec, self.arch.as_deref().unwrap_or("tiny")),
        };
        if let ModelSource::Scratch(m) = &mut c.model {
            set(&mut m.vocab_size, self.vocab_size);
            m.tokenizer.clone_from(&self.tokenizer);
        }
        if let ModelSource::Scratch(m) = &c.model {
            valor_bert::BertConfig::preset(&m.preset).context("--arch")?;
        }
        set(&mut c.max_len, self.max_len);
        set(&mut c.epochs, self.epochs);
        set(&mut c.batch_size, self.batch_size);
        set(&mut c.grad_accum, self.grad_accum);
        set(&mut c.eval_batch_size, self.eval_batch_size);
        set(&mut c.lr, self.lr);
        set(&mut c.warmup_ratio, self.warmup_ratio);
        set(&mut c.weight_decay, self.weight_decay);
        set(&mut c.seed, self.seed);
        set(&mut c.split.seed, self.split_seed);
        set(&mut c.keep_last, self.keep_last);
        set(&mut c.early_stopping_min_delta, self.min_delta);
        set(&mut c.backend, self.backend);
        set(&mut c.precision, self.precision);
        set(&mut c.devices, self.devices.clone());
        if let Some(d) = self.schedule {
            c.decay = match d {
                DecayArg::Linear => Decay::Linear,
                DecayArg::Cosine => Decay::Cosine,
                DecayArg::Constant => Decay::Constant,
            };
        }
        if let Some(n) = self.max_grad_norm {
            c.max_grad_norm = (n > 0.0).then_some(n);
        }
        if let Some(p) = self.dropout {
            c.dropout = Some(p);
        }
        if let Some(spec) = &self.lora {
            c.lora = Some(valor_bert::lora::LoraConfig::parse(spec).context("--lora")?);
        }
        c.split_column.clone_from(&self.split_col);
        c.split_files = split_files;
        if let Some(s) = &self.split {
            anyhow::ensure!(
                s.len() == 3,
                "--split takes three fractions TRAIN,VALID,TEST (e.g. 0.8,0.1,0.1); got {}",
                s.len()
            );
            (c.split.train, c.split.valid, c.split.test) = (s[0], s[1], s[2]);
        }
        if let Some(path) = &self.values {
            let spec = ValuesSpec::from_path(path)
                .with_context(|| format!("reading --values {}", path.display()))?;
            for warning in spec.warnings() {
                eprintln!("warning: {warning}");
            }
            let t = spec.train();
            anyhow::ensure!(
                t.fairness_lambda.is_some()
                    || t.fairness_penalty.is_some()
                    || !t.constraints.is_empty(),
                "{}: sets none of `fairness_lambda`, `fairness_penalty` and `constraints` in a [train] table, so --values would change nothing; add them (the table is documented in `valor remodel --print-values`) or drop --values",
                path.display()
            );
            let from = SettingSource::Values {
                path: std::path::absolute(path).unwrap_or_else(|_| path.clone()),
            };
            if let Some(l) = t.fairness_lambda {
                c.fairness.lambda = l;
                c.fairness.lambda_from = from.clone();
            }
            if let Some(p) = t.fairness_penalty {
                c.fairness.penalty = match p {
                    FairnessPenalty::DemographicParity => Penalty::DemographicParity,
                    FairnessPenalty::EqualizedOdds => Penalty::EqualizedOdds,
                };
                c.fairness.penalty_from = from.clone();
            }
            if !t.constraints.is_empty() {
                c.fairness.constraints = t
                    .constraints
                    .iter()
                    .enumerate()
                    .map(|(i, text)| {
                        text.parse::<Constraint>()
                            .with_context(|| format!("{}: train.constraints[{i}]", path.display()))
                    })
                    .collect::<Result<_>>()?;
                c.fairness.constraints_from = from;
            }
        }
        if let Some(p) = self.fairness_penalty {
            c.fairness.penalty = match p {
                PenaltyArg::DemographicParity => Penalty::DemographicParity,
                PenaltyArg::EqualizedOdds => Penalty::EqualizedOdds,
            };
            c.fairness.penalty_from = SettingSource::Flag;
        }
        if !self.constraints.is_empty() {
            c.fairness.constraints.clone_from(&self.constraints);
            c.fairness.constraints_from = SettingSource::Flag;
        }
        match self.fairness_lambda {
            Some(LambdaArg::Value(v)) => {
                c.fairness.lambda = v;
                c.fairness.lambda_from = SettingSource::Flag;
            }
            // `auto`: constrained training with the default bound on the
            // chosen penalty's gap (unless constraints are given).
            Some(LambdaArg::Auto) => {
                c.fairness.lambda = 0.0;
                c.fairness.lambda_from = SettingSource::Flag;
                if c.fairness.constraints.is_empty() {
                    c.fairness.constraints = vec![Constraint {
                        kind: match c.fairness.penalty {
                            Penalty::DemographicParity => ConstraintKind::DemographicParity,
                            Penalty::EqualizedOdds => ConstraintKind::EqualizedOdds,
                        },
                        bound: AUTO_CONSTRAINT_BOUND,
                    }];
                    c.fairness.constraints_from = SettingSource::Flag;
                }
            }
            None => {}
        }
        // Constraints given on the command line replace a weight read from
        // a values file.
        if c.fairness.constraints_from == SettingSource::Flag
            && matches!(c.fairness.lambda_from, SettingSource::Values { .. })
        {
            c.fairness.lambda = 0.0;
        }
        let settings = &mut c.fairness.constrained;
        set(
            &mut settings.selection_confidence,
            self.constraint_confidence,
        );
        set(&mut settings.multiplier_lr, self.multiplier_lr);
        set(&mut settings.multiplier_gain, self.multiplier_gain);
        set(&mut settings.train_bound_ratio, self.train_bound_ratio);
        set(
            &mut settings.constraint_batch_size,
            self.constraint_batch_size,
        );
        set(&mut settings.constraint_holdout, self.constraint_holdout);
        c.fairness.groups = self.fairness_groups.clone();
        if self.reweigh {
            c.weighting = Weighting::Reweighing;
        }
        if let Some(w) = self.weighting {
            c.weighting = match w {
                WeightingArg::None => Weighting::None,
                WeightingArg::ClassBalanced => Weighting::ClassBalanced,
                WeightingArg::Reweighing => Weighting::Reweighing,
            };
        }
        if let Some(m) = self.select_metric {
            c.select_metric = match m {
                SelectArg::Loss => SelectMetric::Loss,
                SelectArg::Accuracy => SelectMetric::Accuracy,
                SelectArg::MacroF1 => SelectMetric::MacroF1,
                SelectArg::BalancedAccuracy => SelectMetric::BalancedAccuracy,
            };
        }
        if self.patience.is_some() {
            c.early_stopping_patience = self.patience;
        }
        if let Some(n) = self.checkpoint_every {
            c.checkpoint_every = (n > 0).then_some(n);
        }
        if self.eval_every.is_some() {
            c.eval_every = self.eval_every;
        }
        c.validate()?;
        Ok(c)
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// Progress bars plus one line per epoch on stderr.
struct CliObserver {
    bars: ProgressBars,
    quiet: bool,
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.3}"))
}

impl Observer for CliObserver {
    fn on_event(&mut self, event: &Event<'_>) -> Control {
        if let Event::Warning { message } = event {
            self.bars.suspend(|| eprintln!("warning: {message}"));
        }
        if self.quiet {
            return Control::Continue;
        }
        self.bars.on_event(event);
        match event {
            Event::Started {
                config,
                run_dir,
                train_rows,
                constraint_rows,
                valid_rows,
                test_rows,
                total_steps,
                resumed_from,
                ..
            } => {
                let from = resumed_from
                    .map(|p| format!(", resuming from {}", p.display()))
                    .unwrap_or_default();
                let devices = match config.devices.len() {
                    1 => String::new(),
                    n => format!(
                        " on {n} {} devices ({})",
                        config.backend,
                        config
                            .devices
                            .indices()
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                };
                let held = match constraint_rows {
                    0 => String::new(),
                    n => format!(", {n} of them held out for the constraints"),
                };
                eprintln!(
                    "training on {train_rows} rows{held} ({valid_rows} validation, {test_rows} test){devices}, {total_steps} optimizer steps, run folder {}{from}",
                    run_dir.display()
                );
                if let Some(files) = &config.split_files {
                    eprintln!(
                        "splits from files: train {}, validation {}, test {}",
                        files.train.display(),
                        files.valid.display(),
                        files.test.display()
                    );
                }
                if let Some(lora) = &config.lora {
                    eprintln!(
                        "LoRA r={} alpha={} dropout={} on {}: only the adapters and the head train",
                        lora.r,
                        lora.alpha,
                        lora.dropout,
                        lora.targets.join(",")
                    );
                }
                if !config.fairness.constraints.is_empty() {
                    let groups = if config.fairness.groups.is_empty() {
                        "the first --group".to_string()
                    } else {
                        config.fairness.groups.join(", ")
                    };
                    eprintln!(
                        "constrained training on {groups}: {}",
                        config
                            .fairness
                            .constraints
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                } else if config.fairness.lambda > 0.0
                    || config.fairness.lambda_from != SettingSource::Config
                {
                    let from = match &config.fairness.lambda_from {
                        SettingSource::Config => "default".to_string(),
                        SettingSource::Flag => "--fairness-lambda".to_string(),
                        SettingSource::Values { path } => path.display().to_string(),
                    };
                    eprintln!(
                        "fairness penalty {} with lambda {} (from {from})",
                        config.fairness.penalty.name(),
                        config.fairness.lambda
                    );
                }
            }
            Event::EpochEnded { record } | Event::Evaluated { record } => {
                let valid = match &record.valid {
                    Some(v) => format!(
                        "valid loss {:.4}, accuracy {:.3}, macro-F1 {:.3}, balanced accuracy {:.3}, selection-rate gap {}, equalized-odds gap {}",
                        v.loss,
                        v.accuracy,
                        v.macro_f1,
                        v.balanced_accuracy,
                        fmt(v.selection_rate_gap),
                        fmt(v.equalized_odds_gap)
                    ),
                    None => "no validation split".into(),
                };
                let best = if record.best { " *" } else { "" };
                let at = if record.event == "epoch" {
                    format!("epoch {}", record.epoch)
                } else {
                    format!("epoch {}, step {}", record.epoch, record.step)
                };
                let gaps: String = record
                    .constraints
                    .iter()
                    .map(|c| {
                        format!(
                            "; {} ({}) {} margin {}",
                            c.constraint,
                            c.group,
                            fmt(c.gap),
                            fmt(c.upper)
                        )
                    })
                    .collect();
                self.bars.suspend(|| {
                    eprintln!(
                        "{at}: train loss {:.4} ({:.0} s); {valid}{gaps}{best}",
                        record.train_loss, record.epoch_seconds
                    )
                });
            }
            _ => {}
        }
        Control::Continue
    }
}

pub fn run(args: TrainArgs) -> Result<Outcome> {
    let mut observer = CliObserver {
        bars: if args.quiet {
            ProgressBars::hidden()
        } else {
            ProgressBars::new()
        },
        quiet: args.quiet,
    };
    let outcome = match &args.resume {
        Some(dir) => {
            let given = args.settings_given();
            anyhow::ensure!(
                given.is_empty(),
                "--resume continues with the settings the run started with; drop {}",
                given.join(", ")
            );
            valor_train::resume(dir, &mut observer)
                .with_context(|| format!("resuming {}", dir.display()))?
        }
        None => {
            let config = args.to_config()?;
            let out = args.out.clone().context("give the run folder with --out")?;
            let fresh = !out.exists();
            let result = valor_train::train(&config, &out, args.overwrite, &mut observer);
            // A run that failed before its first checkpoint leaves nothing
            // behind in a folder it made (a later failure keeps the folder:
            // its checkpoints resume and its metrics explain).
            if result.is_err() && fresh && !holds_checkpoint(&out) {
                let _ = std::fs::remove_dir_all(&out);
            }
            result.with_context(|| format!("training into {}", out.display()))?
        }
    };
    let TrainOutcome::Finished(report) = outcome else {
        anyhow::bail!("the run stopped before it finished");
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &*report)?;
        writeln!(out)?;
    } else {
        write_summary(&mut out, &report)?;
    }
    if let Some(c) = &report.constraints
        && !c.met_on_validation
    {
        let missed: Vec<String> = c
            .validation
            .iter()
            .filter(|v| !v.holds)
            .map(|v| {
                format!(
                    "{} on {} (validation gap {}, its {:.0}% bootstrap upper bound {})",
                    v.constraint,
                    v.group,
                    fmt(v.gap),
                    100.0 * v.level,
                    fmt(v.upper)
                )
            })
            .collect();
        eprintln!(
            "constraints not met: no epoch met every constraint on validation with the selection margin; the tested model is the epoch that came closest{}{}. Try more epochs, a larger validation split, a larger --multiplier-lr or a lower --constraint-confidence.",
            if missed.is_empty() { "" } else { ": " },
            missed.join("; ")
        );
        return Ok(Outcome::TargetMissed);
    }
    Ok(Outcome::Ok)
}

/// Whether `run` has a checkpoint file.
fn holds_checkpoint(run: &std::path::Path) -> bool {
    std::fs::read_dir(run.join("checkpoints")).is_ok_and(|d| {
        d.filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().ends_with(".ckpt"))
    })
}

fn write_summary(out: &mut impl Write, r: &TrainReport) -> std::io::Result<()> {
    let s = &r.summary;
    let group = r.fairness_group.as_deref().unwrap_or("no group column");
    let (sr, eo) = (
        format!("selection-rate gap ({group})"),
        format!("equalized-odds gap ({group})"),
    );
    let at_step = r
        .best_step
        .map_or(String::new(), |s| format!(" (step {s})"));
    writeln!(
        out,
        "test set ({} rows), best epoch {}{at_step}:",
        r.test.rows,
        r.best_epoch.map_or("n/a".into(), |e| e.to_string())
    )?;
    for (name, v) in [
        ("accuracy", Some(s.accuracy)),
        (
            "accuracy against the reference labels",
            s.accuracy_reference,
        ),
        ("macro-F1", Some(s.macro_f1)),
        ("balanced accuracy", Some(r.test.balanced_accuracy)),
        (sr.as_str(), s.selection_rate_gap),
        (eo.as_str(), s.equalized_odds_gap),
        ("counterfactual flip rate", s.counterfactual_flip_rate),
    ] {
        writeln!(out, "  {name:<44} {}", fmt(v))?;
    }
    for (group, gaps) in &r.test.gaps_by_group {
        if Some(group.as_str()) == r.fairness_group.as_deref() {
            continue;
        }
        for (name, v) in [
            (
                format!("selection-rate gap ({group})"),
                gaps.selection_rate_gap,
            ),
            (
                format!("equalized-odds gap ({group})"),
                gaps.equalized_odds_gap,
            ),
        ] {
            writeln!(out, "  {name:<44} {}", fmt(v))?;
        }
    }
    writeln!(out, "  {:<44} {:.0}", "training time, s", r.train_seconds)?;
    if let Some(f) = &r.provenance.split_files {
        writeln!(out, "splits from files:")?;
        for (split, file) in [("train", &f.train), ("valid", &f.valid), ("test", &f.test)] {
            writeln!(
                out,
                "  {split:<6} {} ({} rows)",
                file.path.display(),
                file.rows
            )?;
        }
    }
    if let Some(c) = &r.constraints {
        writeln!(
            out,
            "constraints (test gap, 95% bootstrap interval; validation {:.0}% upper bound):",
            100.0 * c.selection_confidence
        )?;
        for t in &c.test {
            let v = c
                .validation
                .iter()
                .find(|v| v.constraint == t.constraint && v.group == t.group);
            writeln!(
                out,
                "  {:<44} {} [{}, {}] {}; validation {} {}",
                format!("{} ({})", t.constraint, t.group),
                fmt(t.gap),
                fmt(t.lower),
                fmt(t.upper),
                if t.holds { "holds" } else { "MISSED" },
                fmt(v.and_then(|v| v.upper)),
                if v.is_some_and(|v| v.holds) {
                    "holds"
                } else {
                    "MISSED"
                },
            )?;
            // Where the rows cannot tell the bound from noise, say so.
            if let Some(p) = t.alike_pass_rate.filter(|&p| p < 0.9) {
                writeln!(
                    out,
                    "  {:<44} on these test rows a model that treats the groups alike holds in about {:.0}% of draws",
                    "",
                    100.0 * p
                )?;
            }
        }
    }
    Ok(())
}
