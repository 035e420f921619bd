//! The training loop, written by hand rather than with burn-train's
//! `Learner`, for three reasons: the objective needs each batch's group
//! ids and example weights next to the logits (a fairness penalty is a
//! batch-level statistic, not a per-item loss that a `TrainStep` returns);
//! evaluation streams confusion counts per group into valor-fair instead of
//! collecting per-item outputs; and resume must be exact — model,
//! optimizer, schedule position, dropout stream and data position, written
//! atomically in one file — where burn-train's checkpointer saves the
//! model, optimizer and scheduler separately and restarts an epoch's data
//! from its beginning. What burn provides is used: modules and autodiff,
//! the AdamW of valor-bert (burn's `AdamW` with PyTorch's defaults and a
//! decay mask), gradient accumulation (`GradientsAccumulator`) and module
//! and optimizer records (burnpack) for checkpoints.
//!
//! One run: load and split the data; train a WordPiece tokenizer (from
//! scratch) or load the checkpoint's; build or load the model; then for
//! every epoch, micro-batches in the seeded, length-bucketed order of
//! `valor_data::plan_batches`, each optimizer step over `grad_accum`
//! micro-batches (each split into one shard per device when training
//! data-parallel, see [`crate::Devices`]) with the loss normalised by the
//! step's examples; clip the
//! global gradient norm; AdamW at the scheduled learning rate; checkpoint
//! every `checkpoint_every` steps and at each epoch's end after evaluating
//! the validation split (also evaluated every `eval_every` steps, a new
//! best checkpointed at once); at the end, test the best evaluated model
//! and write `report.json`.
//!
//! Files: `prepare` turns a configuration into the loop's context,
//! `step` is one optimizer step's arithmetic, `run_loop` the epochs,
//! `eval` evaluation, `run_dir` the run folder's files, `model_state` the
//! model and optimizer as checkpoint bytes, `devices` the devices.

mod constrained;
mod devices;
mod eval;
mod model_state;
mod prepare;
mod reference;
mod run_dir;
mod run_loop;
mod step;

use std::path::Path;

use valor_bert::{BertForSequenceClassification, LoadOptions, with_device_rng};

pub use run_dir::{RUN_SCHEMA, RunConfigFile, RunDir, read_run_config};
pub(crate) use run_dir::{remove_named, remove_run_files};

use crate::checkpoint::{RngState, TrainState, clean_temp_files, latest_checkpoint};
use crate::config::{ModelSource, TrainConfig};
use crate::error::{Error, Result};
use crate::observe::{Event, Observer};
use crate::report::TrainReport;
use devices::resolve_devices;
use model_state::{load_model_bytes, load_optimizer_bytes, new_optimizer};
use prepare::{Context, prepare};
use run_dir::{check_valor_run, truncate_metrics, write_json};
use run_loop::run_loop;
use step::mix;

/// How a call to [`train`] or [`resume`] ended without an error.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Every epoch ran (or early stopping ended the run), the best model
    /// was tested and the report written.
    Finished(Box<TrainReport>),
    /// The observer stopped the run after this optimizer step; nothing
    /// after the last checkpoint was written.
    Stopped { step: u64 },
}

impl Outcome {
    /// The report of a finished run.
    pub fn report(&self) -> Option<&TrainReport> {
        match self {
            Outcome::Finished(r) => Some(r),
            Outcome::Stopped { .. } => None,
        }
    }
}

/// Git commit of the source tree this crate was built from.
pub const GIT_COMMIT: &str = env!("VALOR_GIT_COMMIT");

/// Trains a fresh run into `out_dir`. An existing run there is an error
/// unless `overwrite` is set (then the files it wrote are removed first,
/// and only those); a folder whose `config.json` Valor did not write is
/// always an error, and nothing in it changes.
pub fn train(
    config: &TrainConfig,
    out_dir: &Path,
    overwrite: bool,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    config.validate()?;
    resolve_devices(config)?;
    let run = RunDir::new(out_dir);
    check_valor_run(&run)?;
    if run.holds_run() {
        if !overwrite {
            return Err(Error::RunExists {
                dir: out_dir.to_path_buf(),
            });
        }
        remove_run_files(&run)?;
    }
    std::fs::create_dir_all(&run.root).map_err(|e| Error::io(&run.root, e))?;
    let ctx = prepare(config.clone(), run, None)?;
    let model = initial_model(&ctx, observer)?;
    write_json(
        &ctx.run.config(),
        &RunConfigFile::new(ctx.config.clone(), ctx.provenance.clone()),
    )?;
    std::fs::File::create(ctx.run.metrics()).map_err(|e| Error::io(ctx.run.metrics(), e))?;
    let optim = new_optimizer(&ctx.config, &model);
    let mut state = fresh_state(config.seed);
    state.multipliers = vec![0.0; constrained::multiplier_count(&ctx)];
    state.constraint_counts = constrained::empty_counts(&ctx);
    run_loop(&ctx, model, optim, state, None, observer)
}

/// A fresh run's model: initialised from the seed, or the pretrained
/// checkpoint with a new head (unused checkpoint tensors are a warning).
fn initial_model(
    ctx: &Context,
    observer: &mut dyn Observer,
) -> Result<BertForSequenceClassification> {
    let config = &ctx.config;
    let model = match &config.model {
        ModelSource::Scratch(_) => {
            with_device_rng(|| ctx.bert_config.init_classifier_seeded(&ctx.ad, config.seed))
        }
        ModelSource::Pretrained { dir } => {
            let options = LoadOptions {
                num_labels: Some(ctx.labels.len()),
                head: None,
                dropout: config.dropout,
                init_seed: config.seed,
            };
            let (_, loaded, report) =
                with_device_rng(|| valor_bert::load_hf(dir, &ctx.ad, options))?;
            if !report.unused.is_empty() {
                let message = format!(
                    "{} checkpoint tensors were not used (another head?): {}",
                    report.unused.len(),
                    report.unused.join(", ")
                );
                observer.on_event(&Event::Warning { message: &message });
            }
            loaded
        }
    };
    with_lora(config, model)
}

/// `model` with fresh LoRA adapters when the run trains them (every other
/// weight frozen but the head's), else `model`.
fn with_lora(
    config: &TrainConfig,
    model: BertForSequenceClassification,
) -> Result<BertForSequenceClassification> {
    match &config.lora {
        Some(lora) => Ok(valor_bert::lora::attach(model, lora, mix(config.seed, 3))?),
        None => Ok(model),
    }
}

/// The state before the first step of a run seeded with `seed`.
fn fresh_state(seed: u64) -> TrainState {
    TrainState {
        epoch: 0,
        batches_done: 0,
        step: 0,
        rng: RngState {
            dropout_seed: mix(seed, 1),
            batch_seed: seed,
            micro_step: 0,
        },
        epoch_objective_sum: 0.0,
        epoch_cross_entropy_sum: 0.0,
        epoch_penalty_sum: 0.0,
        epoch_penalty_rows: 0,
        epoch_examples: 0,
        epoch_seconds: 0.0,
        best: None,
        bad_epochs: 0,
        stopped_early: false,
        history: Vec::new(),
        metrics_len: 0,
        train_seconds: 0.0,
        multipliers: Vec::new(),
        constraint_counts: Vec::new(),
    }
}

/// Continues the run in `run_dir` from its newest valid checkpoint, with
/// the configuration it was started with.
pub fn resume(run_dir: &Path, observer: &mut dyn Observer) -> Result<Outcome> {
    let file = read_run_config(run_dir)?;
    let run = RunDir::new(run_dir);
    clean_temp_files(&run.checkpoints())?;
    clean_temp_files(&run.root)?;
    let (ckpt, skipped) = latest_checkpoint(&run.checkpoints())?;
    for why in &skipped {
        observer.on_event(&Event::Warning {
            message: &format!("skipped a checkpoint: {why}"),
        });
    }
    let ckpt = ckpt.ok_or_else(|| Error::NothingToResume {
        dir: run_dir.to_path_buf(),
        message: "no checkpoint was written yet; start the run again".into(),
    })?;
    let ctx = prepare(file.config.clone(), run, Some(&file.provenance))?;
    let slots = constrained::multiplier_count(&ctx);
    if ckpt.state.multipliers.len() != slots {
        return Err(Error::NothingToResume {
            dir: run_dir.to_path_buf(),
            message: format!(
                "its checkpoint holds {} constraint multipliers where this version of valor uses {slots} (one per signed rate difference between two groups); start the run again",
                ckpt.state.multipliers.len()
            ),
        });
    }
    let model = with_device_rng(|| {
        ctx.bert_config
            .init_classifier_seeded(&ctx.ad, file.config.seed)
    });
    let model = with_lora(&ctx.config, model)?;
    let model = load_model_bytes(model, &ckpt.model, &ckpt.path)?;
    let optim = new_optimizer(&ctx.config, &model);
    let optim = load_optimizer_bytes(optim, &ckpt.optimizer, &ckpt.path)?;
    truncate_metrics(&ctx.run.metrics(), ckpt.state.metrics_len)?;
    run_loop(
        &ctx,
        model,
        optim,
        ckpt.state.clone(),
        Some(&ckpt.path),
        observer,
    )
}
