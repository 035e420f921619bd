//! The loop over epochs and optimizer steps: gradients accumulated over a
//! step's micro-batches, clipped, one AdamW update at the scheduled rate;
//! checkpoints when due; evaluation at each epoch's end (and every
//! `eval_every` steps), the best-model bookkeeping and early stopping; at
//! the end the best model tested, exported and reported.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use valor_bert::{AdamW, BertForSequenceClassification};
use valor_data::{BatchConfig, plan_batches};

use super::Outcome;
use super::constrained;
use super::eval::{evaluate, select_value};
use super::model_state::{load_model_bytes, model_bytes};
use super::prepare::Context;
use super::reference::write_reference;
use super::run_dir::{append_line, write_json};
use super::step::{forward_backward, global_grad_norm, mix, scale_grads, shards};
use crate::checkpoint::{
    Best, EpochRecord, TrainState, checkpoint_name, prune, read_checkpoint, write_checkpoint,
};
use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::metrics::EvalMetrics;
use crate::observe::{Control, Event, Observer};
use crate::report::{ConstraintsReport, REPORT_SCHEMA, Summary, TrainReport};

/// Runs the epochs left in `state`, then [`finish`]es.
pub(super) fn run_loop(
    ctx: &Context,
    mut model: BertForSequenceClassification,
    mut optim: AdamW,
    mut state: TrainState,
    resumed_from: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let config = &ctx.config;
    observer.on_event(&Event::Started {
        config,
        run_dir: &ctx.run.root,
        train_rows: ctx.train.len(),
        constraint_rows: ctx.constraints.holdout.len(),
        valid_rows: ctx.valid.len(),
        test_rows: ctx.test.len(),
        total_steps: ctx.schedule.total_steps,
        resumed_from,
    });
    for message in &ctx.warnings {
        observer.on_event(&Event::Warning { message });
    }
    let mut last_checkpoint: Option<PathBuf> = resumed_from.map(Path::to_path_buf);
    // Gradient batches are planned over the gradient rows (all training
    // rows but the constraint holdout) and mapped back to training rows.
    let lengths: Vec<usize> = ctx
        .gradient_rows
        .iter()
        .map(|&i| ctx.train.enc[i].len())
        .collect();
    let batch_cfg = BatchConfig {
        batch_size: config.batch_size,
        window_batches: config.length_window_batches,
        shuffle: true,
        seed: state.rng.batch_seed,
    };
    while state.epoch < config.epochs && !state.stopped_early {
        let epoch = state.epoch;
        let plan: Vec<Vec<usize>> = plan_batches(&lengths, &batch_cfg, epoch as u64)
            .into_iter()
            .map(|b| b.into_iter().map(|j| ctx.gradient_rows[j]).collect())
            .collect();
        let batches = plan.len();
        observer.on_event(&Event::EpochStarted {
            epoch,
            epochs: config.epochs,
            batches,
            batches_done: state.batches_done,
        });
        let mut clock = Instant::now();
        let mut lr = ctx.schedule.lr(state.step);
        while state.batches_done < batches {
            let group_end = (state.batches_done + config.grad_accum).min(batches);
            let group = &plan[state.batches_done..group_end];
            let step_examples: usize = group.iter().map(Vec::len).sum();
            let (grads, objective, relabelled) = accumulate_gradients(
                ctx,
                &model,
                group,
                step_examples,
                &mut state,
                &last_checkpoint,
            )?;
            let grads = clip_gradients(ctx, &model, grads, &state, &last_checkpoint)?;
            lr = ctx.schedule.lr(state.step);
            model = optim.step(model, grads, lr);
            state.step += 1;
            if ctx.constrained() {
                constraint_step(ctx, &model, group, relabelled, &mut state)?;
            }
            state.batches_done = group_end;
            state.epoch_objective_sum += objective * step_examples as f64;
            state.epoch_examples += step_examples as u64;
            let control = observer.on_event(&Event::Step {
                epoch,
                batch: state.batches_done,
                batches,
                step: state.step,
                loss: objective,
                lr,
            });
            if control == Control::Stop {
                return Ok(Outcome::Stopped { step: state.step });
            }
            if state.batches_done == batches {
                continue;
            }
            let due = |every: Option<u64>| every.is_some_and(|n| state.step.is_multiple_of(n));
            let evaluate_now = due(config.eval_every) && ctx.valid.len() > 0;
            let mut checkpoint_now = due(config.checkpoint_every);
            if evaluate_now || checkpoint_now {
                let now = Instant::now();
                state.epoch_seconds += (now - clock).as_secs_f64();
                state.train_seconds += (now - clock).as_secs_f64();
                if evaluate_now {
                    // A new best needs its checkpoint on disk.
                    checkpoint_now |= evaluation_point(ctx, &model, &mut state, lr, observer)?;
                }
                clock = Instant::now();
            }
            if checkpoint_now {
                last_checkpoint = Some(save_checkpoint(ctx, &model, &optim, &state, observer)?);
            }
        }
        end_epoch(ctx, &model, &mut state, lr, clock, observer)?;
        last_checkpoint = Some(save_checkpoint(ctx, &model, &optim, &state, observer)?);
    }
    finish(ctx, model, &state, observer)
}

/// Forward and backward over the micro-batches of one optimizer step (each
/// split into one shard per device; with one device the micro-batch
/// itself), gradients summed on the main device in shard order. Returns
/// them with the step's objective; a non-finite loss is an error.
fn accumulate_gradients(
    ctx: &Context,
    model: &BertForSequenceClassification,
    group: &[Vec<usize>],
    step_examples: usize,
    state: &mut TrainState,
    last_checkpoint: &Option<PathBuf>,
) -> Result<(GradientsParams, f64, usize)> {
    let mut accumulator = GradientsAccumulator::<BertForSequenceClassification>::new();
    let mut objective = 0.0;
    let multipliers = constrained::applied(ctx, state);
    let mut relabelled = 0;
    for rows in group {
        let parts = shards(rows, ctx.shard_devices.len());
        let seeds: Vec<u64> = (0..parts.len() as u64)
            .map(|k| mix(state.rng.dropout_seed, state.rng.micro_step + k))
            .collect();
        let outs = forward_backward(ctx, model, &parts, step_examples, &seeds, &multipliers)?;
        for (part, out) in parts.iter().zip(outs) {
            if !out.objective.is_finite() {
                return Err(Error::NonFinite {
                    what: "loss",
                    value: out.objective,
                    epoch: state.epoch + 1,
                    step: state.step + 1,
                    last_checkpoint: last_checkpoint.clone(),
                });
            }
            objective += out.objective;
            relabelled += out.relabelled;
            state.epoch_cross_entropy_sum += out.cross_entropy_sum;
            if let Some(p) = out.penalty {
                state.epoch_penalty_sum += p * part.len() as f64;
                state.epoch_penalty_rows += part.len() as u64;
            }
            // Summed on the main device, in shard order: the same
            // sums as accumulating the shards as micro-batches.
            accumulator.accumulate(model, out.grads);
            state.rng.micro_step += 1;
        }
    }
    Ok((accumulator.grads(), objective, relabelled))
}

/// Constrained training after an optimizer step: the gaps measured on the
/// step's constraint batch, the multipliers' ascent, and the step's line
/// in `metrics.jsonl`.
fn constraint_step(
    ctx: &Context,
    model: &BertForSequenceClassification,
    group: &[Vec<usize>],
    relabelled: usize,
    state: &mut TrainState,
) -> Result<()> {
    let rows = constrained::constraint_batch(ctx, state.step, group);
    let (measured, term_gap) = constrained::ascend(ctx, &model.valid(), &rows, state)?;
    let record = constrained::StepRecord {
        event: "constraints",
        step: state.step,
        names: constrained::gap_names(ctx),
        measured_gap: measured,
        terms: constrained::multiplier_names(ctx),
        multipliers: state.multipliers.clone(),
        applied: constrained::applied(ctx, state),
        term_gap,
        relabelled_rows: relabelled,
        constraint_rows: rows.len(),
    };
    state.metrics_len = append_line(&ctx.run.metrics(), &record)?;
    Ok(())
}

/// The gradients scaled to the configured maximum global norm (PyTorch
/// `clip_grad_norm_`); a non-finite norm is an error.
fn clip_gradients(
    ctx: &Context,
    model: &BertForSequenceClassification,
    mut grads: GradientsParams,
    state: &TrainState,
    last_checkpoint: &Option<PathBuf>,
) -> Result<GradientsParams> {
    let norm = global_grad_norm(model, &grads)?;
    if !norm.is_finite() {
        return Err(Error::NonFinite {
            what: "gradient norm",
            value: norm,
            epoch: state.epoch + 1,
            step: state.step + 1,
            last_checkpoint: last_checkpoint.clone(),
        });
    }
    if let Some(max) = ctx.config.max_grad_norm {
        // PyTorch: clip_coef = max_norm / (total_norm + 1e-6), applied when < 1.
        let coef = max / (norm + 1e-6);
        if coef < 1.0 {
            scale_grads(model, &mut grads, coef);
        }
    }
    Ok(grads)
}

/// End of an epoch: evaluate on validation, record whether it is the best
/// model so far, append its line to `metrics.jsonl`, decide on early
/// stopping, and start the next epoch's counters (the caller checkpoints).
fn end_epoch(
    ctx: &Context,
    model: &BertForSequenceClassification,
    state: &mut TrainState,
    lr: f64,
    clock: Instant,
    observer: &mut dyn Observer,
) -> Result<()> {
    let config = &ctx.config;
    let epoch = state.epoch;
    let now = Instant::now();
    state.epoch_seconds += (now - clock).as_secs_f64();
    state.train_seconds += (now - clock).as_secs_f64();
    let record = validation_record(ctx, model, state, lr, "epoch", observer)?;
    // Patience counts epochs: one whose evaluations (at its end or within
    // it, `eval_every`) found a new best is not a bad one.
    if state.best.as_ref().is_some_and(|b| b.epoch == epoch) {
        state.bad_epochs = 0;
    } else {
        state.bad_epochs += 1;
    }
    observer.on_event(&Event::EpochEnded { record: &record });
    if config
        .early_stopping_patience
        .is_some_and(|p| state.bad_epochs >= p)
    {
        state.stopped_early = true;
    }
    state.epoch += 1;
    state.batches_done = 0;
    state.epoch_objective_sum = 0.0;
    state.epoch_cross_entropy_sum = 0.0;
    state.epoch_penalty_sum = 0.0;
    state.epoch_penalty_rows = 0;
    state.epoch_examples = 0;
    state.epoch_seconds = 0.0;
    Ok(())
}

/// An evaluation within an epoch (`eval_every`): the same validation,
/// selection and `metrics.jsonl` line (`"event": "eval"`, the epoch's
/// running means) as at an epoch's end. Returns whether it is the best
/// model so far (the caller then checkpoints it).
fn evaluation_point(
    ctx: &Context,
    model: &BertForSequenceClassification,
    state: &mut TrainState,
    lr: f64,
    observer: &mut dyn Observer,
) -> Result<bool> {
    let record = validation_record(ctx, model, state, lr, "eval", observer)?;
    observer.on_event(&Event::Evaluated { record: &record });
    Ok(record.best)
}

/// Evaluates the model after `state.step` steps on validation (with the
/// constraints' selection margins), updates the best model so far and
/// appends the evaluation's line (`event`) to `metrics.jsonl` and to the
/// history.
fn validation_record(
    ctx: &Context,
    model: &BertForSequenceClassification,
    state: &mut TrainState,
    lr: f64,
    event: &str,
    observer: &mut dyn Observer,
) -> Result<EpochRecord> {
    let config = &ctx.config;
    let epoch = state.epoch;
    observer.on_event(&Event::Evaluating { epoch });
    let clock = Instant::now();
    // The bootstrap's seed: the epoch at an epoch's end (as before
    // evaluations within epochs existed), else the step.
    let seed = if event == "epoch" {
        mix(config.seed, epoch as u64)
    } else {
        mix(mix(config.seed, u64::MAX - 1), state.step)
    };
    let (valid, constraints) = if ctx.valid.len() > 0 {
        let counts = evaluate(ctx, &model.valid(), &ctx.valid, false)?;
        let checks = if !ctx.constrained() {
            Vec::new()
        } else {
            constrained::checks(ctx, &counts, true, seed)
        };
        (Some(counts.metrics()), checks)
    } else {
        (None, Vec::new())
    };
    let violation = if !ctx.constrained() {
        0.0
    } else if valid.is_none() {
        // No validation split: nothing can show the constraints hold.
        1.0
    } else {
        constrained::violation(&constraints)
    };
    let seconds = clock.elapsed().as_secs_f64();
    state.epoch_seconds += seconds;
    state.train_seconds += seconds;
    let improved = improves(config, valid.as_ref(), violation, state.best.as_ref());
    if improved {
        let value = valid.as_ref().map_or(f64::NAN, |m| select_value(config, m));
        state.best = Some(Best {
            epoch,
            value,
            checkpoint: checkpoint_name(state.step),
            violation,
        });
    }
    let examples = state.epoch_examples.max(1) as f64;
    let record = EpochRecord {
        event: event.into(),
        epoch: epoch + 1,
        step: state.step,
        lr,
        train_loss: state.epoch_objective_sum / examples,
        train_cross_entropy: state.epoch_cross_entropy_sum / examples,
        train_penalty: (state.epoch_penalty_rows > 0)
            .then(|| state.epoch_penalty_sum / state.epoch_penalty_rows as f64),
        valid,
        best: improved,
        epoch_seconds: state.epoch_seconds,
        constraints,
    };
    state.metrics_len = append_line(&ctx.run.metrics(), &record)?;
    state.history.push(record.clone());
    Ok(record)
}

/// Whether a model with these validation metrics beats the best so far
/// by the early-stopping margin (without validation every one does).
/// With constraints, `violation` ranks first: a model that meets every
/// constraint with its margin (0) beats one that does not, and among
/// those that do not the smaller violation wins.
fn improves(
    config: &TrainConfig,
    valid: Option<&EvalMetrics>,
    violation: f64,
    best: Option<&Best>,
) -> bool {
    if let Some(best) = best
        && (violation > 0.0 || best.violation > 0.0)
    {
        return match (violation > 0.0, best.violation > 0.0) {
            (false, true) => true,
            (true, false) => false,
            _ => violation < best.violation,
        };
    }
    match (valid, best) {
        (None, _) | (Some(_), None) => true,
        (Some(m), Some(best)) => {
            let v = select_value(config, m);
            let delta = config.early_stopping_min_delta;
            if config.select_metric.higher_is_better() {
                v > best.value + delta
            } else {
                v < best.value - delta
            }
        }
    }
}

fn save_checkpoint(
    ctx: &Context,
    model: &BertForSequenceClassification,
    optim: &AdamW,
    state: &TrainState,
    observer: &mut dyn Observer,
) -> Result<PathBuf> {
    let optim_bytes = optim.inner().into_bytes().map_err(|e| Error::Checkpoint {
        path: ctx.run.checkpoints().join(checkpoint_name(state.step)),
        message: format!("optimizer state: {e}"),
    })?;
    let path = write_checkpoint(
        &ctx.run.checkpoints(),
        state,
        &model_bytes(model)?,
        &optim_bytes,
    )?;
    prune(
        &ctx.run.checkpoints(),
        ctx.config.keep_last,
        state.best.as_ref().map(|b| b.checkpoint.as_str()),
    )?;
    observer.on_event(&Event::Checkpoint { path: &path });
    Ok(path)
}

/// Tests the best epoch's model, exports it and writes the report.
fn finish(
    ctx: &Context,
    model: BertForSequenceClassification,
    state: &TrainState,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let best_model = match &state.best {
        Some(best) if best.checkpoint != checkpoint_name(state.step) => {
            let ckpt = read_checkpoint(&ctx.run.checkpoints().join(&best.checkpoint))?;
            load_model_bytes(model, &ckpt.model, &ckpt.path)?
        }
        _ => model,
    };
    export_model(ctx, &best_model)?;
    write_reference(ctx, &best_model.valid())?;
    observer.on_event(&Event::Testing);
    let counts = evaluate(ctx, &best_model.valid(), &ctx.test, true)?;
    let test = counts.metrics();
    let (fairness, fairness_reference) = if counts.rows() > 0 {
        counts.fairness_reports()
    } else {
        Default::default()
    };
    let constraints = ctx.constrained().then(|| {
        let test = constrained::checks(ctx, &counts, false, mix(ctx.config.seed, u64::MAX));
        let validation = best_record(state)
            .map(|r| r.constraints.clone())
            .unwrap_or_default();
        ConstraintsReport {
            constraints: ctx
                .config
                .fairness
                .constraints
                .iter()
                .map(ToString::to_string)
                .collect(),
            groups: ctx.fair_names.clone(),
            selection_confidence: ctx.config.fairness.constrained.selection_confidence,
            resamples: ctx.config.fairness.constrained.resamples,
            holdout_rows: ctx.constraints.holdout.len(),
            met_on_validation: state.best.as_ref().is_some_and(|b| b.violation == 0.0)
                && !validation.is_empty(),
            validation,
            met_on_test: test.iter().all(|c| c.holds),
            test,
            multipliers: constrained::multiplier_names(ctx)
                .into_iter()
                .zip(&state.multipliers)
                .map(|(n, &m)| (n, serde_json::Value::from(m)))
                .collect(),
        }
    });
    let report = TrainReport {
        schema: REPORT_SCHEMA.into(),
        summary: Summary::from_metrics(&test),
        test: test.clone(),
        fairness,
        fairness_reference,
        labels: ctx.labels.clone(),
        fairness_group: ctx
            .fair_names
            .first()
            .or(ctx.group_columns.first().map(|(n, _)| n))
            .cloned(),
        best_epoch: state.best.as_ref().map(|b| b.epoch + 1),
        best_step: best_record(state).map(|r| r.step),
        epochs_run: state.history.iter().filter(|r| r.event == "epoch").count(),
        stopped_early: state.stopped_early,
        steps: state.step,
        rows: ctx.provenance.rows,
        train_seconds: state.train_seconds,
        provenance: ctx.provenance.clone(),
        constraints,
    };
    write_json(&ctx.run.report(), &report)?;
    let mut line = serde_json::to_value(&test).map_err(|source| Error::Json {
        path: ctx.run.metrics(),
        source,
    })?;
    if let Some(obj) = line.as_object_mut() {
        obj.insert("event".into(), "test".into());
        obj.insert("best_epoch".into(), serde_json::json!(report.best_epoch));
    }
    append_line(&ctx.run.metrics(), &line)?;
    observer.on_event(&Event::Finished { report: &report });
    Ok(Outcome::Finished(Box::new(report)))
}

/// The history's line of the best model's evaluation (the one whose
/// checkpoint it names).
fn best_record(state: &TrainState) -> Option<&EpochRecord> {
    let best = state.best.as_ref()?;
    state
        .history
        .iter()
        .find(|r| checkpoint_name(r.step) == best.checkpoint)
}

/// Writes the best model as an HF folder (`model/`); a LoRA run writes its
/// adapters merged there and, in PEFT's format, to `adapter/`.
fn export_model(ctx: &Context, model: &BertForSequenceClassification) -> Result<()> {
    let Some(lora) = &ctx.config.lora else {
        valor_bert::save_hf(
            model,
            &ctx.bert_config,
            &ctx.run.model(),
            Some(&ctx.tokenizer_src),
        )?;
        return Ok(());
    };
    let base = match &ctx.config.model {
        crate::config::ModelSource::Pretrained { dir } => std::fs::canonicalize(dir)
            .unwrap_or_else(|_| dir.clone())
            .display()
            .to_string(),
        crate::config::ModelSource::Scratch(_) => String::new(),
    };
    valor_bert::lora::save_peft(model, lora, &ctx.run.adapter(), &base, &ctx.labels)?;
    valor_bert::save_hf(
        &valor_bert::lora::merge(model.clone()),
        &ctx.bert_config,
        &ctx.run.model(),
        Some(&ctx.tokenizer_src),
    )?;
    Ok(())
}
