//! Fine-tuning (or training from scratch) a BERT classifier with fairness
//! inside the objective, exact resume from crash-safe checkpoints, and run
//! folders that record how every number was made.
//!
//! Owns: the training loop ([`train`], [`resume`]); the objective —
//! per-example weighted cross-entropy (class-balanced or Kamiran & Calders
//! [reweighing](weights)) plus λ times a differentiable
//! [demographic-parity or equalized-odds penalty](penalty); AdamW with
//! decoupled weight decay (not on biases and LayerNorm), linear warmup and
//! linear or cosine decay ([`LrSchedule`]), global-norm gradient clipping,
//! gradient accumulation normalised by the examples of the whole step,
//! data parallelism over several devices ([`Devices`]: each micro-batch
//! split into per-device shards whose gradients are summed on the main
//! device), early stopping; evaluation from streamed counts ([`EvalCounts`]);
//! [checkpoints](checkpoint) (model + optimizer + schedule position +
//! epoch/step + RNG state + data position in one atomically written,
//! checksummed file) with keep-last-N and keep-best retention; the run
//! folder (`config.json` with provenance, `metrics.jsonl`, `tokenizer.json`,
//! `checkpoints/`, the best model as an HF folder `model/`, `report.json`);
//! a model folder loaded for inference ([`Classifier`]: model, tokenizer
//! checked against the model, labels; batched scores and integrated
//! gradients per word), which `valor predict`, `explain` and `serve` share.
//!
//! Does not know about: tokenizer internals and file formats (valor-data),
//! model internals and HF weight names (valor-bert), fairness metric
//! definitions beyond the headline gaps (valor-fair makes the full report),
//! value profiles (valor-values), the command line. It prints nothing:
//! progress reaches the caller as [`Event`]s through an [`Observer`]
//! ([`ProgressBars`] draws them on a terminal).
//!
//! Main types: [`TrainConfig`] (validated settings; [`TrainConfig::scratch`]
//! and [`TrainConfig::pretrained`] hold the defaults), [`ModelSource`],
//! [`Weighting`], [`FairnessObjective`] and [`Penalty`]; [`Outcome`] and
//! [`TrainReport`] (with its [`Summary`]); [`RunDir`] names a run folder's
//! files; [`TrainState`] is what a checkpoint holds besides the tensors.
//!
//! Determinism: the split, batch order (seed + epoch), initialisation and
//! dropout (the device generator is reseeded before every micro-batch from
//! the seed and the micro-batch counter) are all functions of the
//! configuration, so a run killed at any point and resumed ends with the
//! same weights and metrics as an uninterrupted one.

mod error;

pub mod checkpoint;
pub mod classifier;
pub mod config;
pub mod constraint;
pub mod metrics;
pub mod observe;
pub mod penalty;
pub mod progress;
pub mod report;
pub mod schedule;
pub mod splits;
pub mod trainer;
pub mod weights;

pub use checkpoint::{ConstraintCheck, EpochRecord, TrainState};
pub use classifier::{Classifier, Scores, WordExplanation, WordScore};
pub use config::{
    AUTO_CONSTRAINT_BOUND, ConstrainedSettings, DEFAULT_SCRATCH_VOCAB, Decay, Devices,
    FairnessObjective, ModelSource, Penalty, ScratchModel, SelectMetric, SettingSource,
    TrainConfig, Weighting,
};
pub use constraint::{Constraint, ConstraintKind, GapInterval};
pub use error::{Error, Result};
pub use metrics::{EvalCounts, EvalMetrics};
pub use observe::{Control, Event, Observer, Silent, StopAfter};
pub use progress::ProgressBars;
pub use report::{
    ConstraintsReport, Provenance, REPORT_SCHEMA, SplitFilesProvenance, SplitIds, SplitRows,
    Summary, TrainReport,
};
pub use schedule::LrSchedule;
pub use trainer::{GIT_COMMIT, Outcome, RunConfigFile, RunDir, read_run_config, resume, train};

pub mod remodel;
pub use remodel::{
    PostProcess, RemodelConfig, RemodelOutcome, THRESHOLDS_FILE, THRESHOLDS_SCHEMA, ThresholdsFile,
    ThresholdsPredictor, remodel,
};
