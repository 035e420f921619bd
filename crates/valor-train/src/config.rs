//! The validated configuration of one training run, and its defaults.
//!
//! A [`TrainConfig`] is everything that decides a run's result: data and
//! split, model source, tokenizer, optimiser and schedule, the objective
//! (weights and fairness penalty), evaluation and checkpointing, seeds and
//! backend. It is written to the run folder as `config.json` (with
//! provenance) and read back by `--resume`, so a resumed run continues with
//! exactly the settings it started with.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use valor_bert::Backend;
use valor_data::{DatasetSpec, SplitConfig, SplitFiles};

use crate::constraint::Constraint;
use crate::error::{Error, Result};

/// Where the model comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ModelSource {
    /// Train from scratch: a BERT preset (`tiny`, `mini`, ...; see
    /// `valor_bert::BertConfig::preset`), optionally resized, with a
    /// WordPiece tokenizer trained on the training split.
    Scratch(ScratchModel),
    /// Fine-tune an HF checkpoint folder (config.json, model.safetensors and
    /// its tokenizer); a missing classifier head is drawn fresh.
    Pretrained { dir: PathBuf },
}

/// A model trained from scratch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScratchModel {
    /// The BERT preset the sizes start from.
    pub preset: String,
    /// WordPiece vocabulary size to train (the model's embedding table
    /// takes the trained tokenizer's actual size).
    pub vocab_size: usize,
    /// Use this `tokenizer.json` instead of training one (e.g. to give two
    /// runs the very same tokenization).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<PathBuf>,
    /// Override of the preset's hidden size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_size: Option<usize>,
    /// Override of the preset's number of layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_layers: Option<usize>,
    /// Override of the preset's number of attention heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_heads: Option<usize>,
    /// Override of the preset's feed-forward size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate_size: Option<usize>,
}

impl ScratchModel {
    /// A preset with a tokenizer of [`DEFAULT_SCRATCH_VOCAB`] tokens.
    pub fn preset(name: &str) -> Self {
        Self {
            preset: name.to_string(),
            vocab_size: DEFAULT_SCRATCH_VOCAB,
            tokenizer: None,
            hidden_size: None,
            num_layers: None,
            num_heads: None,
            intermediate_size: None,
        }
    }
}

/// WordPiece vocabulary trained for a from-scratch model. The built-in
/// notes use a few hundred distinct words; 3,000 pieces keep every word
/// whole while the embedding table stays small.
pub const DEFAULT_SCRATCH_VOCAB: usize = 3000;

/// Per-example weights of the cross-entropy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weighting {
    /// Every example weighs 1 (or its weight column, when the data has one).
    #[default]
    None,
    /// `w(y) = n / (K · n_y)`: each class carries the same total weight
    /// (scikit-learn's `class_weight="balanced"`).
    ClassBalanced,
    /// Kamiran & Calders reweighing: `w(a, y) = P(a) · P(y) / P(a, y)`
    /// over the joint group `a` of the fairness group columns, so that the
    /// weighted training labels are independent of the groups.
    Reweighing,
}

/// The differentiable fairness penalty added to the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Penalty {
    /// Demographic parity: for each class, the gap (max − min over the
    /// groups in the batch) of the mean predicted probability of that
    /// class; averaged over classes.
    #[default]
    DemographicParity,
    /// Equalized odds: the same gap, computed among the rows of each true
    /// label; averaged over (true label, class) pairs with two or more
    /// groups present.
    EqualizedOdds,
}

impl Penalty {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Penalty::DemographicParity => "demographic-parity",
            Penalty::EqualizedOdds => "equalized-odds",
        }
    }
}

/// The bound of `--fairness-lambda auto`, which is not a weight but
/// constrained training: the chosen penalty's gap (demographic parity or
/// equalized odds) at or under 0.05 on every fairness group column, the
/// multipliers found from the data (see [`crate::constraint`]). 0.05 is the
/// bound fairlearn's documentation and the peer comparison use.
pub const AUTO_CONSTRAINT_BOUND: f64 = 0.05;

/// Multiplier step size of constrained training (the integral gain):
/// each optimizer step moves every multiplier by this times its measured
/// violation (difference − bound). A sustained excess of 0.1 raises a
/// multiplier by 0.1 in 50 steps; MiniLM on the built-in data settled at
/// about 0.4. The old 0.5 (for a relaxed-gap penalty) made the
/// cost-sensitive loss swing between the groups; 0.02 alone overshot (the
/// gap crossed to −0.045 after the multiplier passed its level), which the
/// proportional term ([`DEFAULT_MULTIPLIER_GAIN`]) damps.
pub const DEFAULT_MULTIPLIER_LR: f64 = 0.02;

/// Proportional gain of the multipliers (the PID Lagrangian of Stooke,
/// Achiam & Abbeel 2020, without the derivative): the loss uses
/// `max(0, μ + gain · (difference − bound))`, so a multiplier answers the
/// gap at once and the integral `μ` does not have to overshoot while the
/// model lags behind it.
pub const DEFAULT_MULTIPLIER_GAIN: f64 = 1.5;

/// Rows of the constraint batch each step adds to the counts on which the
/// gaps are measured (forward passes only, no gradients).
pub const DEFAULT_CONSTRAINT_BATCH: usize = 32;

/// Share of the training rows held out for the constraint batches: they
/// never enter a gradient batch, so the gaps the multipliers answer are
/// measured on rows the model has not fitted, as validation and test rows
/// are (the two-dataset proxy-Lagrangian of Cotter et al. 2019). Drawn per
/// (group of the first fairness column, label) cell. On the built-in data
/// (MiniLM, DP ≤ 0.02) constraint batches drawn from the fitted rows held
/// the training gap at its aim (0.006) while validation stayed at 0.041.
pub const DEFAULT_CONSTRAINT_HOLDOUT: f64 = 0.2;

/// Decay of the constraint batches' counts per step: the gaps are measured
/// on the last batches weighted `decay^age`, about `1 / (1 − decay)` = 33
/// batches (~1,000 rows at the default batch), so that the spread of noisy
/// small-batch rates does not read as a gap.
pub const DEFAULT_CONSTRAINT_DECAY: f64 = 0.97;

/// One-sided confidence of the selection margin: a checkpoint meets a
/// constraint on validation when this quantile of the bootstrap
/// distribution of each of the gap's signed rate differences is at or
/// under the bound ([`crate::constraint::bootstrap_margin`]).
pub const DEFAULT_SELECTION_CONFIDENCE: f64 = 0.8;

/// Share of each bound the multipliers aim at during training: they rise
/// while the measured gap exceeds `0.3 · bound`, so the model trains with
/// room between its training gap and the bound that validation and test
/// rows must meet with the selection margin (a model trained to sit at the
/// bound misses it on unseen rows about half the time). On the built-in
/// data (`tiny`, 3 labels, 900 validation rows) 0.5 left the validation
/// gap at 0.027–0.036 and its 80% upper bound at 0.053 > 0.05; 0.3 met it.
pub const DEFAULT_TRAIN_BOUND_RATIO: f64 = 0.3;

/// Bootstrap resamples of the selection margin and of the test intervals.
pub const DEFAULT_CONSTRAINT_RESAMPLES: usize = 1000;

/// The settings of constrained training (used when
/// [`FairnessObjective::constraints`] is not empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConstrainedSettings {
    /// Step size of the multipliers' projected gradient ascent.
    pub multiplier_lr: f64,
    /// Proportional gain: the loss's multiplier is `max(0, μ + gain ·
    /// (difference − bound))`.
    #[serde(default = "default_multiplier_gain")]
    pub multiplier_gain: f64,
    /// Rows of the constraint batch, drawn each step (seeded) from the
    /// held-out constraint rows (or, with no holdout, from the training
    /// rows outside the step's gradient batch).
    pub constraint_batch_size: usize,
    /// Share of the training rows held out for the constraint batches, in
    /// [0, 0.5]; 0 draws them from the rows outside each step's batch. A
    /// run configuration written before this setting existed reads as 0,
    /// the behaviour it was trained with.
    #[serde(default)]
    pub constraint_holdout: f64,
    /// Per-step decay of the constraint batches' counts, in [0, 1).
    #[serde(default = "default_decay")]
    pub constraint_decay: f64,
    /// The multipliers ascend on `gap − ratio · bound`, in (0, 1].
    #[serde(default = "default_train_bound_ratio")]
    pub train_bound_ratio: f64,
    /// One-sided bootstrap confidence of the selection margin, in [0.5, 1).
    pub selection_confidence: f64,
    /// Bootstrap resamples (selection margin and test intervals).
    pub resamples: usize,
}

impl Default for ConstrainedSettings {
    fn default() -> Self {
        Self {
            multiplier_lr: DEFAULT_MULTIPLIER_LR,
            multiplier_gain: DEFAULT_MULTIPLIER_GAIN,
            constraint_batch_size: DEFAULT_CONSTRAINT_BATCH,
            constraint_holdout: DEFAULT_CONSTRAINT_HOLDOUT,
            constraint_decay: DEFAULT_CONSTRAINT_DECAY,
            train_bound_ratio: DEFAULT_TRAIN_BOUND_RATIO,
            selection_confidence: DEFAULT_SELECTION_CONFIDENCE,
            resamples: DEFAULT_CONSTRAINT_RESAMPLES,
        }
    }
}

fn default_multiplier_gain() -> f64 {
    DEFAULT_MULTIPLIER_GAIN
}

fn default_decay() -> f64 {
    DEFAULT_CONSTRAINT_DECAY
}

fn default_train_bound_ratio() -> f64 {
    DEFAULT_TRAIN_BOUND_RATIO
}

impl ConstrainedSettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Fairness inside the objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FairnessObjective {
    /// Weight of the penalty; 0 turns it off.
    pub lambda: f64,
    pub penalty: Penalty,
    /// Constraints the training must meet on every fairness group column
    /// (proxy-Lagrangian, see [`crate::constraint`]); empty: none. They
    /// replace the fixed weight λ (which must then be 0).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    /// Where `constraints` came from (not serialised when set in the config).
    #[serde(default, skip_serializing_if = "SettingSource::is_config")]
    pub constraints_from: SettingSource,
    #[serde(default, skip_serializing_if = "ConstrainedSettings::is_default")]
    pub constrained: ConstrainedSettings,
    /// Group columns the penalty and reweighing use (reweighing takes their
    /// joint group). Empty means the dataset's first group column.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Where `lambda` came from (not serialised when set in the config).
    #[serde(default, skip_serializing_if = "SettingSource::is_config")]
    pub lambda_from: SettingSource,
    /// Where `penalty` came from (not serialised when set in the config).
    #[serde(default, skip_serializing_if = "SettingSource::is_config")]
    pub penalty_from: SettingSource,
}

impl Default for FairnessObjective {
    fn default() -> Self {
        Self {
            lambda: 0.0,
            penalty: Penalty::DemographicParity,
            constraints: Vec::new(),
            constraints_from: SettingSource::Config,
            constrained: ConstrainedSettings::default(),
            groups: Vec::new(),
            lambda_from: SettingSource::Config,
            penalty_from: SettingSource::Config,
        }
    }
}

/// Where a setting's value came from, recorded in the run's `config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "from")]
pub enum SettingSource {
    /// Set in the [`TrainConfig`] itself: the default, or chosen by the
    /// program that built the configuration (e.g. `valor remodel`).
    #[default]
    Config,
    /// Given on the command line.
    Flag,
    /// Read from the `[train]` table of a `values.toml`.
    Values { path: PathBuf },
}

impl SettingSource {
    fn is_config(&self) -> bool {
        *self == SettingSource::Config
    }
}

/// The devices a run trains on (`--devices`).
///
/// Each micro-batch is split into one shard per device (contiguous rows,
/// sizes differing by at most one); every shard runs its forward and
/// backward pass on its own replica of the model, forked from the main
/// device's; the gradients are moved to the main device (the first) and
/// summed there, and one AdamW step updates the one model. The loss of a
/// shard is normalised by the examples of the whole optimizer step, so N
/// shards of a micro-batch weigh exactly as N accumulated micro-batches
/// would (the fairness penalty, a batch statistic, is then per shard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Devices {
    /// The backend's first N devices.
    Count(usize),
    /// These device indices; the first is the main device. An index may
    /// repeat: that device then runs several shards one after another
    /// (on the CPU, the only device, this is how the data-parallel path is
    /// taken).
    List(Vec<usize>),
}

impl Default for Devices {
    fn default() -> Self {
        Devices::Count(1)
    }
}

impl Devices {
    /// The device indices, first the main device.
    pub fn indices(&self) -> Vec<usize> {
        match self {
            Devices::Count(n) => (0..*n).collect(),
            Devices::List(v) => v.clone(),
        }
    }
    /// Number of shards per micro-batch.
    pub fn len(&self) -> usize {
        match self {
            Devices::Count(n) => *n,
            Devices::List(v) => v.len(),
        }
    }
    /// Whether no device is named (invalid).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn is_single(&self) -> bool {
        *self == Devices::Count(1)
    }
}

impl std::fmt::Display for Devices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Devices::Count(n) => write!(f, "{n}"),
            Devices::List(v) => {
                let list: Vec<String> = v.iter().map(ToString::to_string).collect();
                // One index keeps a trailing comma so that it reads back as a list.
                let comma = if v.len() == 1 { "," } else { "" };
                write!(f, "{}{comma}", list.join(","))
            }
        }
    }
}

impl std::str::FromStr for Devices {
    type Err = Error;

    /// `N` (the first N devices, N >= 1) or a comma-separated list of
    /// indices (`0,1`; one index is written with a trailing comma: `1,`).
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let bad = |why: String| {
            Error::config(
                "devices",
                format!(
                    "is `{s}`, {why}; give a device count N >= 1 (e.g. `2`) or a comma-separated list of device indices (e.g. `0,1`, or `1,` for device 1 alone)"
                ),
            )
        };
        if s.contains(',') {
            let parts: Vec<&str> = s.split(',').map(str::trim).collect();
            let parts = match parts.split_last() {
                Some((&"", rest)) => rest,
                _ => &parts[..],
            };
            if parts.iter().all(|p| p.is_empty()) {
                return Err(bad("which names no device".into()));
            }
            let list = parts
                .iter()
                .map(|p| {
                    p.parse::<usize>()
                        .map_err(|_| bad(format!("where `{p}` is not a device index")))
                })
                .collect::<Result<Vec<_>>>()?;
            if list.is_empty() {
                return Err(bad("which names no device".into()));
            }
            Ok(Devices::List(list))
        } else {
            match s.parse::<usize>() {
                Ok(0) => Err(bad("which names no device".into())),
                Ok(n) => Ok(Devices::Count(n)),
                Err(_) => Err(bad("which is neither a count nor a list".into())),
            }
        }
    }
}

/// Learning-rate decay after the warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decay {
    /// Linear to 0 at the last step (HF `get_linear_schedule_with_warmup`).
    #[default]
    Linear,
    /// Half a cosine to 0 at the last step (HF `get_cosine_schedule_with_warmup`).
    Cosine,
    /// Constant after the warmup.
    Constant,
}

/// The validation metric that picks the best epoch and drives early stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectMetric {
    /// Validation cross-entropy (lower is better).
    Loss,
    /// Accuracy (higher is better).
    Accuracy,
    /// Macro-averaged F1 (higher is better).
    #[default]
    MacroF1,
    /// Balanced accuracy (higher is better).
    BalancedAccuracy,
}

impl SelectMetric {
    /// Whether larger values are better.
    pub fn higher_is_better(self) -> bool {
        !matches!(self, SelectMetric::Loss)
    }
    /// The name used on the command line and in metrics.jsonl.
    pub fn name(self) -> &'static str {
        match self {
            SelectMetric::Loss => "loss",
            SelectMetric::Accuracy => "accuracy",
            SelectMetric::MacroF1 => "macro_f1",
            SelectMetric::BalancedAccuracy => "balanced_accuracy",
        }
    }
}

/// Everything that decides a training run's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The dataset (file and columns).
    pub data: DatasetSpec,
    /// Train/validation/test fractions and the split seed.
    pub split: SplitConfig,
    /// Take each row's split from this column of the data file (`train`,
    /// `valid`, `test`) instead of drawing it from `split`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_column: Option<String>,
    /// Take the splits from three files instead (`--train`, `--valid`,
    /// `--test`), row for row: `data` holds the columns (its `path` is the
    /// training file) and every file is read with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_files: Option<SplitFiles>,
    /// Data rows (0-based, file order) this run leaves out of every split:
    /// `valor remodel`'s retrainings leave out the validation rows it keeps
    /// for choosing among its candidates, so they choose their epoch on
    /// other rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_out_rows: Vec<usize>,
    pub model: ModelSource,
    /// Tokens per example, `[CLS]` and `[SEP]` included.
    pub max_len: usize,
    /// Seed of initialisation, dropout and batch order.
    pub seed: u64,
    pub epochs: usize,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step; the loss is normalised by the
    /// number of examples in the whole step.
    pub grad_accum: usize,
    /// Examples per evaluation batch.
    pub eval_batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Share of the optimizer steps spent warming up linearly from 0.
    pub warmup_ratio: f64,
    pub decay: Decay,
    /// AdamW decoupled weight decay (never on biases and LayerNorm).
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub adam_eps: f64,
    /// Clip the global gradient norm to this (PyTorch `clip_grad_norm_`).
    pub max_grad_norm: Option<f64>,
    /// Dropout probability for every dropout layer; `None` keeps the
    /// model's own (0.1 for the presets and most checkpoints).
    pub dropout: Option<f64>,
    pub weighting: Weighting,
    pub fairness: FairnessObjective,
    /// Picks the best epoch (its model is exported and tested).
    pub select_metric: SelectMetric,
    /// Stop after this many epochs without improvement of `select_metric`.
    pub early_stopping_patience: Option<usize>,
    /// Minimum improvement that counts for early stopping.
    pub early_stopping_min_delta: f64,
    /// Write a checkpoint every this many optimizer steps (and at the end
    /// of every epoch).
    pub checkpoint_every: Option<u64>,
    /// Also evaluate on validation every this many optimizer steps, not
    /// only at each epoch's end: each evaluation is a candidate for the
    /// best model (a checkpoint is written when it becomes the best).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_every: Option<u64>,
    /// Checkpoints to keep besides the best one (at least 1).
    pub keep_last: usize,
    /// Buckets of this many batches are sorted by length to cut padding.
    pub length_window_batches: usize,
    #[serde(with = "backend_name")]
    pub backend: Backend,
    /// Devices of the backend that share each micro-batch (data
    /// parallelism); one by default. Runs started before this setting
    /// existed read as one device.
    #[serde(default, skip_serializing_if = "Devices::is_single")]
    pub devices: Devices,
    /// The arithmetic of training: fp32 (the default); on the CPU bf16 is
    /// autocast (`valor_bert::lowp::autocast`: the encoder's Linear
    /// products in bf16 with f32 accumulation, forward and backward, f32
    /// master weights and optimizer); on wgpu and cuda bf16/f16 are the
    /// device's float dtype for the whole model (weights, activations,
    /// gradients, optimizer state: burn 0.22 has no mixed precision, so no
    /// f32 master weights there).
    #[serde(default, skip_serializing_if = "is_fp32")]
    pub precision: valor_bert::Precision,
    /// Train LoRA adapters (and the head) instead of every weight; the run
    /// folder gets the adapter in PEFT's format (`adapter/`) beside the
    /// merged model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<valor_bert::lora::LoraConfig>,
}

fn is_fp32(p: &valor_bert::Precision) -> bool {
    *p == valor_bert::Precision::Fp32
}

mod backend_name {
    use serde::{Deserialize, Deserializer, Serializer};
    use valor_bert::Backend;

    pub fn serialize<S: Serializer>(b: &Backend, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(b.name())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Backend, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl TrainConfig {
    /// Defaults for training a preset from scratch on `data`: the `tiny`
    /// BERT, max length 128, AdamW at 1e-3 with 10% warmup then linear
    /// decay, batch 32, 4 epochs, dropout 0.1, clipping at 1.0. A model this
    /// small, from random weights, needs a learning rate ~50x the
    /// fine-tuning one; these settings train both `cargo xtask train` runs
    /// in a few minutes on two cores.
    pub fn scratch(data: DatasetSpec, preset: &str) -> Self {
        Self {
            data,
            split: SplitConfig::default(),
            split_column: None,
            split_files: None,
            held_out_rows: Vec::new(),
            model: ModelSource::Scratch(ScratchModel::preset(preset)),
            max_len: 128,
            seed: 42,
            epochs: 4,
            batch_size: 32,
            grad_accum: 1,
            eval_batch_size: 64,
            lr: 1e-3,
            warmup_ratio: 0.1,
            decay: Decay::Linear,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            adam_eps: 1e-8,
            max_grad_norm: Some(1.0),
            dropout: Some(0.1),
            weighting: Weighting::None,
            fairness: FairnessObjective::default(),
            select_metric: SelectMetric::MacroF1,
            early_stopping_patience: None,
            early_stopping_min_delta: 0.0,
            checkpoint_every: Some(100),
            eval_every: None,
            keep_last: 2,
            length_window_batches: 50,
            backend: Backend::Cpu,
            devices: Devices::Count(1),
            precision: valor_bert::Precision::Fp32,
            lora: None,
        }
    }

    /// Defaults for fine-tuning an HF checkpoint, as the BERT paper's
    /// fine-tuning recipe and HF `Trainer`: lr 2e-5, batch 16, 5 epochs,
    /// 10% warmup then linear decay, weight decay 0.01, clipping at 1.0,
    /// max length 128, the checkpoint's own dropout.
    pub fn pretrained(data: DatasetSpec, dir: PathBuf) -> Self {
        Self {
            model: ModelSource::Pretrained { dir },
            epochs: 5,
            batch_size: 16,
            lr: 2e-5,
            dropout: None,
            checkpoint_every: Some(200),
            ..Self::scratch(data, "tiny")
        }
    }

    /// Checks every field; the error names the field and says what is allowed.
    pub fn validate(&self) -> Result<()> {
        let positive = |field: &str, v: usize| {
            if v == 0 {
                Err(Error::config(field, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        match (self.backend, self.precision) {
            (_, valor_bert::Precision::Fp32) => {}
            // Autocast: the encoder's Linear products in bf16.
            (Backend::Cpu, valor_bert::Precision::Bf16) => {}
            (Backend::Cpu, p) => {
                return Err(Error::config(
                    "precision",
                    format!(
                        "training on the CPU runs in fp32 or bf16 ({p} is not: int8 is an \
                         inference precision there, `valor predict --precision int8`; f16 \
                         trains on wgpu and cuda, as the device's float dtype)"
                    ),
                ));
            }
            (_, valor_bert::Precision::Int8) => {
                return Err(Error::config(
                    "precision",
                    "int8 is an inference precision of the CPU backend; on a GPU backend \
                     train in fp32, bf16 or f16",
                ));
            }
            (_, valor_bert::Precision::Bf16 | valor_bert::Precision::F16) => {}
        }
        if let Some(lora) = &self.lora {
            lora.validate()
                .map_err(|e| Error::config("lora", e.to_string()))?;
            if matches!(self.model, ModelSource::Scratch(_)) {
                return Err(Error::config(
                    "lora",
                    "LoRA adapts a pretrained model, and a model trained from scratch has no \
                     base folder the adapter could be loaded on: pass --model DIR",
                ));
            }
        }
        positive("epochs", self.epochs)?;
        positive("batch_size", self.batch_size)?;
        positive("grad_accum", self.grad_accum)?;
        positive("eval_batch_size", self.eval_batch_size)?;
        positive("keep_last", self.keep_last)?;
        positive("length_window_batches", self.length_window_batches)?;
        if self.max_len < 3 {
            return Err(Error::config(
                "max_len",
                format!("is {}; it must be at least 3", self.max_len),
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config(
                "lr",
                format!("is {}; it must be positive and finite", self.lr),
            ));
        }
        let unit = |field: &str, v: f64, open_top: bool| {
            let ok = v.is_finite() && v >= 0.0 && if open_top { v < 1.0 } else { v <= 1.0 };
            if ok {
                Ok(())
            } else {
                let range = if open_top { "[0, 1)" } else { "[0, 1]" };
                Err(Error::config(
                    field,
                    format!("is {v}; it must lie in {range}"),
                ))
            }
        };
        unit("warmup_ratio", self.warmup_ratio, false)?;
        unit("beta1", self.beta1, true)?;
        unit("beta2", self.beta2, true)?;
        if let Some(p) = self.dropout {
            unit("dropout", p, true)?;
        }
        let non_negative = |field: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(Error::config(
                    field,
                    format!("is {v}; it must be finite and >= 0"),
                ))
            }
        };
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("fairness.lambda", self.fairness.lambda)?;
        non_negative("early_stopping_min_delta", self.early_stopping_min_delta)?;
        self.validate_constraints()?;
        self.validate_split_files()?;
        if !(self.adam_eps.is_finite() && self.adam_eps > 0.0) {
            return Err(Error::config(
                "adam_eps",
                format!("is {}; it must be positive", self.adam_eps),
            ));
        }
        if let Some(n) = self.max_grad_norm
            && !(n.is_finite() && n > 0.0)
        {
            return Err(Error::config(
                "max_grad_norm",
                format!("is {n}; it must be positive"),
            ));
        }
        if self.devices.is_empty() || self.devices == Devices::Count(0) {
            return Err(Error::config(
                "devices",
                "names no device; give a count >= 1 or a list of device indices",
            ));
        }
        if self.devices.len() > self.batch_size {
            return Err(Error::config(
                "devices",
                format!(
                    "has {} devices but a micro-batch only {} examples (batch_size); every device needs at least one",
                    self.devices.len(),
                    self.batch_size
                ),
            ));
        }
        if self.checkpoint_every == Some(0) {
            return Err(Error::config("checkpoint_every", "must be at least 1 step"));
        }
        if self.eval_every == Some(0) {
            return Err(Error::config("eval_every", "must be at least 1 step"));
        }
        if self.early_stopping_patience == Some(0) {
            return Err(Error::config(
                "early_stopping_patience",
                "must be at least 1 epoch",
            ));
        }
        let s = &self.split;
        for (name, f) in [
            ("split.train", s.train),
            ("split.valid", s.valid),
            ("split.test", s.test),
        ] {
            unit(name, f, false)?;
        }
        if (s.train + s.valid + s.test - 1.0).abs() > 1e-9 {
            return Err(Error::config(
                "split",
                format!(
                    "fractions {} + {} + {} must sum to 1",
                    s.train, s.valid, s.test
                ),
            ));
        }
        if s.train == 0.0 {
            return Err(Error::config("split.train", "must be above 0"));
        }
        if let ModelSource::Scratch(m) = &self.model {
            if m.vocab_size < 10 {
                return Err(Error::config(
                    "model.vocab_size",
                    format!("is {}; it must be at least 10", m.vocab_size),
                ));
            }
            for (field, v) in [
                ("model.hidden_size", m.hidden_size),
                ("model.num_layers", m.num_layers),
                ("model.num_heads", m.num_heads),
                ("model.intermediate_size", m.intermediate_size),
            ] {
                if v == Some(0) {
                    return Err(Error::config(field, "must be at least 1"));
                }
            }
        }
        Ok(())
    }

    /// Split files exclude a split column, and the data's path is the
    /// training file.
    fn validate_split_files(&self) -> Result<()> {
        let Some(files) = &self.split_files else {
            return Ok(());
        };
        if let Some(column) = &self.split_column {
            return Err(Error::config(
                "split_files",
                format!(
                    "are given together with the split column `{column}`; take the splits from the files or from the column, not both"
                ),
            ));
        }
        if self.data.path != files.train {
            return Err(Error::config(
                "data.path",
                format!(
                    "is {} but the training split file is {}; with split files the data path is the training file",
                    self.data.path.display(),
                    files.train.display()
                ),
            ));
        }
        Ok(())
    }

    fn validate_constraints(&self) -> Result<()> {
        let f = &self.fairness;
        if f.constraints.is_empty() {
            return Ok(());
        }
        for c in &f.constraints {
            c.validate()?;
        }
        if f.lambda > 0.0 {
            return Err(Error::config(
                "fairness.lambda",
                format!(
                    "is {} but constraints are given ({}); constrained training sets its own multipliers, so give either a fixed weight or constraints",
                    f.lambda,
                    f.constraints
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let s = &f.constrained;
        if !(s.multiplier_lr.is_finite() && s.multiplier_lr > 0.0) {
            return Err(Error::config(
                "fairness.constrained.multiplier_lr",
                format!("is {}; it must be positive", s.multiplier_lr),
            ));
        }
        if !(s.multiplier_gain.is_finite() && s.multiplier_gain >= 0.0) {
            return Err(Error::config(
                "fairness.constrained.multiplier_gain",
                format!("is {}; it must be 0 or positive", s.multiplier_gain),
            ));
        }
        if s.constraint_batch_size < 2 {
            return Err(Error::config(
                "fairness.constrained.constraint_batch_size",
                "must be at least 2",
            ));
        }
        if !(0.0..=0.5).contains(&s.constraint_holdout) {
            return Err(Error::config(
                "fairness.constrained.constraint_holdout",
                format!("is {}; it must lie in [0, 0.5]", s.constraint_holdout),
            ));
        }
        if !(0.0..1.0).contains(&s.constraint_decay) {
            return Err(Error::config(
                "fairness.constrained.constraint_decay",
                format!("is {}; it must lie in [0, 1)", s.constraint_decay),
            ));
        }
        if !(s.train_bound_ratio > 0.0 && s.train_bound_ratio <= 1.0) {
            return Err(Error::config(
                "fairness.constrained.train_bound_ratio",
                format!("is {}; it must lie in (0, 1]", s.train_bound_ratio),
            ));
        }
        if !(0.5..1.0).contains(&s.selection_confidence) {
            return Err(Error::config(
                "fairness.constrained.selection_confidence",
                format!("is {}; it must lie in [0.5, 1)", s.selection_confidence),
            ));
        }
        if s.resamples < 10 {
            return Err(Error::config(
                "fairness.constrained.resamples",
                format!("is {}; it must be at least 10", s.resamples),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DatasetSpec {
        valor_data::builtin_spec(std::path::Path::new("finance.csv"))
    }

    #[test]
    fn defaults_validate_and_roundtrip_through_json() {
        for c in [
            TrainConfig::scratch(spec(), "tiny"),
            TrainConfig::pretrained(spec(), "m".into()),
        ] {
            c.validate().unwrap();
            let json = serde_json::to_string(&c).unwrap();
            let back: TrainConfig = serde_json::from_str(&json).unwrap();
            assert_eq!(back, c);
        }
        let p = TrainConfig::pretrained(spec(), "m".into());
        assert_eq!((p.lr, p.batch_size, p.epochs), (2e-5, 16, 5));
    }

    #[test]
    fn bad_values_name_the_field() {
        let check = |f: &dyn Fn(&mut TrainConfig), want: &str| {
            let mut c = TrainConfig::scratch(spec(), "tiny");
            f(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e} !~ {want}");
        };
        check(&|c| c.lr = -1.0, "`lr` is -1");
        check(&|c| c.epochs = 0, "`epochs` must be at least 1");
        check(
            &|c| c.dropout = Some(1.0),
            "`dropout` is 1; it must lie in [0, 1)",
        );
        check(&|c| c.fairness.lambda = f64::NAN, "`fairness.lambda`");
        check(&|c| c.split.valid = 0.5, "must sum to 1");
        check(&|c| c.max_grad_norm = Some(0.0), "`max_grad_norm`");
        check(
            &|c| c.devices = Devices::Count(0),
            "`devices` names no device",
        );
        check(
            &|c| c.devices = Devices::List(vec![]),
            "`devices` names no device",
        );
        check(
            &|c| {
                c.batch_size = 2;
                c.devices = Devices::Count(3);
            },
            "a micro-batch only 2 examples",
        );
    }

    #[test]
    fn devices_parse_as_a_count_or_a_list() {
        let ok = |s: &str| s.parse::<Devices>().unwrap();
        assert_eq!(ok("1"), Devices::Count(1));
        assert_eq!(ok(" 4 "), Devices::Count(4));
        assert_eq!(ok("0,1"), Devices::List(vec![0, 1]));
        assert_eq!(ok("0, 0"), Devices::List(vec![0, 0]));
        assert_eq!(ok("2,"), Devices::List(vec![2]));
        for bad in ["0", "", "two", "0,x", ",", "-1"] {
            let e = bad.parse::<Devices>().unwrap_err().to_string();
            assert!(e.contains("`devices`") && e.contains("0,1"), "{bad}: {e}");
        }
        for d in [ok("3"), ok("0,1"), ok("1,")] {
            assert_eq!(d.to_string().parse::<Devices>().unwrap(), d);
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(serde_json::from_str::<Devices>(&json).unwrap(), d);
        }
    }

    #[test]
    fn old_config_files_read_as_one_device_and_config_lambda() {
        let c = TrainConfig::scratch(spec(), "tiny");
        let json = serde_json::to_value(&c).unwrap();
        assert!(json.get("devices").is_none());
        assert!(json["fairness"].get("lambda_from").is_none());
        let back: TrainConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back.devices, Devices::Count(1));
        assert_eq!(back.fairness.lambda_from, SettingSource::Config);
    }
}
