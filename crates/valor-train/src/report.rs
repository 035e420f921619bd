//! The run folder's `report.json` and `config.json` contents.
//!
//! `report.json` schema (`valor.train.report/1`; keys are only ever added):
//! `schema`, `summary` (exactly the six numbers `cargo xtask train`
//! prints: `accuracy`, `accuracy_reference`, `macro_f1`,
//! `selection_rate_gap`, `equalized_odds_gap`, `counterfactual_flip_rate`;
//! `null` where the data cannot give one), `test` (every test metric),
//! `fairness` (valor-fair's report per group column, against the labels)
//! and `fairness_reference` (against the reference labels), `labels`,
//! `fairness_group`, `best_epoch`, `epochs_run`, `stopped_early`, `steps`,
//! `rows`, `train_seconds`, `provenance`, and with constraints
//! `constraints` (see [`ConstraintsReport`]).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::checkpoint::ConstraintCheck;
use crate::metrics::EvalMetrics;

/// Version tag of `report.json`.
pub const REPORT_SCHEMA: &str = "valor.train.report/1";

/// The headline numbers of the test set (see [`crate::metrics`] for the
/// definitions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Accuracy against the label column.
    pub accuracy: f64,
    /// Accuracy against the reference (fair) labels.
    pub accuracy_reference: Option<f64>,
    pub macro_f1: f64,
    /// First group column: max over classes of max − min over groups of
    /// P(ŷ = c | group).
    pub selection_rate_gap: Option<f64>,
    pub equalized_odds_gap: Option<f64>,
    /// Share of test rows whose prediction changes on the twin text.
    pub counterfactual_flip_rate: Option<f64>,
}

impl Summary {
    pub fn from_metrics(m: &EvalMetrics) -> Self {
        Self {
            accuracy: m.accuracy,
            accuracy_reference: m.accuracy_reference,
            macro_f1: m.macro_f1,
            selection_rate_gap: m.selection_rate_gap,
            equalized_odds_gap: m.equalized_odds_gap,
            counterfactual_flip_rate: m.counterfactual_flip_rate,
        }
    }
}

/// Rows in each split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitRows {
    pub train: usize,
    pub valid: usize,
    pub test: usize,
}

/// Where a run's results come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub seed: u64,
    pub split_seed: u64,
    /// `git rev-parse HEAD` of the source tree at build time, or `unknown`.
    pub git_commit: String,
    pub crate_version: String,
    pub backend: String,
    pub dtype: String,
    pub dataset: String,
    pub dataset_sha256: String,
    pub dataset_rows: usize,
    pub rows: SplitRows,
    pub labels: Vec<String>,
    /// Group columns the fairness objective uses.
    pub fairness_groups: Vec<String>,
    pub tokenizer_vocab_size: usize,
    pub model_parameters: usize,
    /// The fairness penalty weight actually used.
    pub fairness_lambda: f64,
    pub total_steps: u64,
    /// With a split column or split files: the ids of the validation and
    /// test rows (every other row trained).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_ids: Option<SplitIds>,
    /// With split files: the file each split came from, with its SHA-256
    /// and rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_files: Option<SplitFilesProvenance>,
}

/// The rows a split column or the split files chose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitIds {
    /// The split column (absent with split files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// Row ids (the id column, or the 1-based row number).
    pub valid: Vec<String>,
    pub test: Vec<String>,
}

/// The three files of a run with split files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitFilesProvenance {
    pub train: valor_data::SplitFileRecord,
    pub valid: valor_data::SplitFileRecord,
    pub test: valor_data::SplitFileRecord,
}

/// `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub schema: String,
    pub summary: Summary,
    pub test: EvalMetrics,
    /// valor-fair's report of each group column of the test set, against the labels.
    pub fairness: Map<String, Value>,
    /// The same against the reference labels, when the data has them.
    pub fairness_reference: Option<Map<String, Value>>,
    pub labels: Vec<String>,
    /// The group column of the summary's gaps (the first fairness group
    /// column; `test.gaps_by_group` has every column's).
    pub fairness_group: Option<String>,
    /// 1-based epoch whose model was tested (the epoch it was evaluated
    /// in: at its end, or within it with `eval_every`).
    pub best_epoch: Option<usize>,
    /// Optimizer steps of the tested model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_step: Option<u64>,
    pub epochs_run: usize,
    pub stopped_early: bool,
    pub steps: u64,
    pub rows: SplitRows,
    pub train_seconds: f64,
    pub provenance: Provenance,
    /// Constrained training: how the constraints fared (absent without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<ConstraintsReport>,
}

/// The constraints of a constrained run, on validation (the tested
/// model's epoch, with the selection margin) and on test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConstraintsReport {
    /// `demographic_parity <= 0.05`, …
    pub constraints: Vec<String>,
    /// The group columns every constraint applies to.
    pub groups: Vec<String>,
    /// The selection margin: a checkpoint meets a constraint on validation
    /// when this one-sided quantile of its bootstrap gap is at or under the
    /// bound.
    pub selection_confidence: f64,
    pub resamples: usize,
    /// Training rows held out of every gradient batch for the constraint
    /// batches (0: they were drawn from the rows outside each step's
    /// batch).
    #[serde(default)]
    pub holdout_rows: usize,
    /// Whether the tested model met every constraint on validation with
    /// the margin. When no epoch did, the tested one is the epoch that came
    /// closest and `valor train` exits 1.
    pub met_on_validation: bool,
    pub validation: Vec<ConstraintCheck>,
    /// Each constraint on the test rows: the gap, its 95% bootstrap
    /// interval, and whether the gap is at or under the bound.
    pub test: Vec<ConstraintCheck>,
    /// Whether every test gap is at or under its bound.
    pub met_on_test: bool,
    /// The multipliers at the end of training, by name.
    pub multipliers: Map<String, Value>,
}
