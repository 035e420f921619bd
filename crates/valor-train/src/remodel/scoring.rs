//! Scoring a model folder on a split: softmax probabilities, timed
//! throughput, its counted cost (forward FLOPs per example at the split's
//! mean token count, and the bytes of its weight files: the inputs of the
//! `cost` efficiency measure, the same on every run), faithfulness of its
//! explanations, and the evaluation numbers (optionally after
//! post-processing) that become a profile.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use valor_bert::explain::{
    FaithfulnessConfig, FaithfulnessItem, IgConfig, TokenSequence, faithfulness,
    integrated_gradients, pad_baseline, predict_proba,
};
use valor_bert::{
    Backend, BertConfig, BertForSequenceClassification, BertInput, LoadOptions, Precision,
};
use valor_data::{BatchConfig, Encoded, collate, plan_batches};
use valor_values::{Evaluation, Profile, ValuesSpec, measure};

use super::candidates::ModelEntry;
use super::invalid;
use super::prepare::{Context, SplitRows};
use super::thresholds::{PostProcess, apply_post};
use crate::error::Result;
use crate::metrics::{EvalCounts, EvalMetrics, RowOutcome};

/// A model scored on one split.
pub(super) struct Scored {
    /// Softmax probabilities, row-major.
    pub(super) probs: Vec<f64>,
    pub(super) examples_per_s: f64,
    /// Forward GFLOP per example at the split's mean token count.
    pub(super) gflops_per_example: f64,
    /// MB of the model folder's weight files.
    pub(super) weight_mb: f64,
    pub(super) faithfulness: Option<f64>,
}

/// Scores the model in `dir` on `split`, run at `precision` (see
/// [`load_model`]): probabilities, timed throughput, and faithfulness on
/// the first examples when asked for.
pub(super) fn score(
    ctx: &Context,
    dir: &Path,
    precision: Precision,
    split: &SplitRows,
) -> Result<Scored> {
    let (device, config, model) = load_model(ctx, dir, precision)?;
    let lengths: Vec<usize> = split.enc.iter().map(Encoded::len).collect();
    let mean_len = lengths.iter().sum::<usize>() as f64 / lengths.len().max(1) as f64;
    let gflops_per_example = valor_bert::cost::forward_flops(&config, mean_len) / 1e9;
    let weight_mb = valor_bert::cost::weight_bytes(dir)
        .map_err(|e| invalid(dir, format!("reading the weight files: {e}")))?
        as f64
        / 1e6;
    let plan = batch_plan(ctx, &lengths);
    let passes = ctx.config.timing_passes.max(1);
    let (probs, seconds) = timed_probabilities(ctx, &model, &device, dir, split, &plan, passes)?;
    let examples_per_s = split.enc.len() as f64 / seconds;
    let faithfulness = if ctx.config.faithfulness_examples > 0 {
        Some(faithfulness_of(ctx, dir, split)?)
    } else {
        None
    };
    Ok(Scored {
        probs,
        examples_per_s,
        gflops_per_example,
        weight_mb,
        faithfulness,
    })
}

/// The softmax probabilities (row-major) of the model in `dir`, run at
/// `precision`, on `split`, one untimed pass: what post-processing is
/// fitted on.
pub(super) fn probabilities(
    ctx: &Context,
    dir: &Path,
    precision: Precision,
    split: &SplitRows,
) -> Result<Vec<f64>> {
    let (device, _, model) = load_model(ctx, dir, precision)?;
    let lengths: Vec<usize> = split.enc.iter().map(Encoded::len).collect();
    let plan = batch_plan(ctx, &lengths);
    Ok(timed_probabilities(ctx, &model, &device, dir, split, &plan, 1)?.0)
}

/// The precision `valor predict` runs the folder `dir` at on `backend`:
/// int8 for a quantised folder (`valor quantize`'s `quantization.json`)
/// on the CPU, where the int8 kernels run its stored integers; fp32
/// otherwise (elsewhere a quantised folder computes with its dequantised
/// weights, as predict does there).
pub(super) fn inference_precision(dir: &Path, backend: Backend) -> Result<Precision> {
    let quantized = valor_bert::QuantizationReport::read(dir)?.is_some();
    Ok(if quantized && backend == Backend::Cpu {
        Precision::Int8
    } else {
        Precision::Fp32
    })
}

/// The model folder `dir` loaded on the run's device for inference, its
/// encoder's Linear layers packed for `precision`'s kernels
/// (`valor_bert::lowp`; nothing changes at fp32).
fn load_model(
    ctx: &Context,
    dir: &Path,
    precision: Precision,
) -> Result<(Device, BertConfig, BertForSequenceClassification)> {
    let device = valor_bert::device(ctx.backend)?;
    let (config, model, _) =
        valor_bert::with_device_rng(|| valor_bert::load_hf(dir, &device, LoadOptions::default()))?;
    if precision != Precision::Fp32 && !valor_bert::lowp::runs_on(&device) {
        return Err(invalid(
            dir,
            format!(
                "precision {precision} runs on the CPU backend only, not on {}",
                ctx.backend.name()
            ),
        ));
    }
    let model = valor_bert::lowp::apply(model, precision)?;
    Ok((device, config, model))
}

/// Evaluation batches of `lengths`, in order (no shuffling).
fn batch_plan(ctx: &Context, lengths: &[usize]) -> Vec<Vec<usize>> {
    plan_batches(
        lengths,
        &BatchConfig {
            batch_size: ctx.eval_batch_size,
            window_batches: 50,
            shuffle: false,
            seed: 0,
        },
        0,
    )
}

/// The softmax probabilities of `split` (row-major) and the seconds of the
/// fastest of `passes` timed passes over it (the usual benchmark
/// rule: slower passes measure contention from other processes, not the
/// model); the first pass's probabilities are kept.
fn timed_probabilities(
    ctx: &Context,
    model: &BertForSequenceClassification,
    device: &Device,
    dir: &Path,
    split: &SplitRows,
    plan: &[Vec<usize>],
    passes: usize,
) -> Result<(Vec<f64>, f64)> {
    let k = ctx.labels.len();
    let mut probs = vec![0.0; split.enc.len() * k];
    let mut seconds = f64::INFINITY;
    for pass in 0..passes {
        let clock = Instant::now();
        for rows in plan {
            let encs: Vec<&Encoded> = rows.iter().map(|&i| &split.enc[i]).collect();
            let batch = collate(rows.clone(), &encs, ctx.pad_id);
            let input = BertInput::from_flat(
                &batch.input_ids,
                &batch.attention_mask,
                &batch.token_type_ids,
                [batch.batch_size, batch.seq_len],
                device,
            )?;
            let out = predict_proba(model, input)?;
            if pass > 0 {
                continue;
            }
            for (r, p) in rows.iter().zip(out) {
                if p.len() != k {
                    return Err(invalid(
                        dir,
                        format!("the model has {} labels but the data {k}", p.len()),
                    ));
                }
                probs[r * k..(r + 1) * k].copy_from_slice(&p);
            }
        }
        seconds = seconds.min(clock.elapsed().as_secs_f64().max(1e-9));
    }
    Ok((probs, seconds))
}

/// ERASER faithfulness score of integrated-gradients explanations of the
/// predicted class, on the first `faithfulness_examples` rows of `split`.
fn faithfulness_of(ctx: &Context, dir: &Path, split: &SplitRows) -> Result<f64> {
    let device = valor_bert::autodiff_device(ctx.backend)?;
    let (_, model, _) =
        valor_bert::with_device_rng(|| valor_bert::load_hf(dir, &device, LoadOptions::default()))?;
    // Frozen f32 weights packed once: integrated gradients' products on
    // the packed kernel (CPUs with AVX-512F).
    let model = valor_bert::lowp::apply(model.freeze(), Precision::Fp32)?;
    let ig = IgConfig {
        n_steps: ctx.config.ig_steps.max(1),
        internal_batch_size: ctx.config.ig_steps.max(1),
        ..IgConfig::default()
    };
    let mut items = Vec::new();
    for enc in split
        .enc
        .iter()
        .filter(|e| e.word_ids.iter().any(Option::is_some))
        .take(ctx.config.faithfulness_examples)
    {
        let seq = TokenSequence::new(enc.ids.clone(), Some(enc.type_ids.clone()));
        let baseline = pad_baseline(&seq, &ctx.special_ids, ctx.pad_id);
        let explanation = integrated_gradients(&model, &seq, &baseline, None, &ig)?;
        items.push(FaithfulnessItem {
            input_ids: enc.ids.clone(),
            token_type_ids: enc.type_ids.clone(),
            special: enc
                .ids
                .iter()
                .map(|i| ctx.special_ids.contains(i))
                .collect(),
            attributions: explanation.token_attributions,
            target: explanation.target,
        });
    }
    let report = faithfulness(
        &model,
        &items,
        &FaithfulnessConfig {
            seed: ctx.base.seed,
            ..FaithfulnessConfig::default()
        },
    )?;
    Ok(report.score)
}

fn argmax(row: &[f64]) -> u32 {
    let mut best = 0;
    for (c, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = c;
        }
    }
    best as u32
}

/// The evaluation numbers of `scored` on `split`, predictions adjusted by
/// `post` when given.
pub(super) fn evaluation(
    ctx: &Context,
    split: &SplitRows,
    scored: &Scored,
    post: Option<&PostProcess>,
) -> Result<(Evaluation, EvalMetrics)> {
    let k = ctx.labels.len();
    let predicted: Vec<u32> = match post {
        None => scored.probs.chunks(k).map(argmax).collect(),
        Some(p) => apply_post(p, &scored.probs, &split.fair_values, ctx.base.seed)?,
    };
    let mut counts = EvalCounts::new(
        &ctx.labels,
        &ctx.group_columns,
        split.reference.is_some(),
        false,
    )?;
    for (i, &p) in predicted.iter().enumerate() {
        let label = split.labels[i];
        counts.add(RowOutcome {
            label,
            predicted: p,
            loss: -scored.probs[i * k + label as usize]
                .max(f64::MIN_POSITIVE)
                .ln(),
            groups: &split.groups[i],
            reference: split.reference.as_ref().map(|r| r[i]),
            twin_predicted: None,
        })?;
    }
    let m = counts.metrics();
    let mut extra = BTreeMap::new();
    if let Some(a) = m.accuracy_reference {
        extra.insert("accuracy_reference".to_owned(), a);
    }
    let eval = Evaluation {
        accuracy: m.accuracy,
        macro_f1: m.macro_f1,
        balanced_accuracy: m.balanced_accuracy,
        demographic_parity_difference: m.selection_rate_gap,
        equalized_odds_difference: m.equalized_odds_gap,
        faithfulness: scored.faithfulness,
        examples_per_s: Some(scored.examples_per_s),
        gflops_per_example: Some(scored.gflops_per_example),
        weight_mb: Some(scored.weight_mb),
        extra,
        ..Evaluation::default()
    };
    Ok((eval, m))
}

/// The profile of model `m` (post-processed by `post`) on the selection
/// rows.
pub(super) fn measure_model(
    ctx: &Context,
    m: &ModelEntry,
    spec: &ValuesSpec,
    post: Option<&PostProcess>,
) -> Result<Profile> {
    let (eval, _) = evaluation(ctx, &ctx.select, &m.valid, post)?;
    Ok(measure(&eval, spec)?)
}
