//! Evaluation: one split streamed through the model into confusion counts
//! (no logits kept), and the number that picks the best epoch.

use burn::tensor::activation::log_softmax;
use valor_bert::BertForSequenceClassification;
use valor_data::{BatchConfig, Encoded, collate, plan_batches};

use super::prepare::{Context, SplitData};
use super::step::input_of;
use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::metrics::{EvalCounts, EvalMetrics, RowOutcome};

/// Streams one split through the model (no dropout, no gradients).
pub(super) fn evaluate(
    ctx: &Context,
    model: &BertForSequenceClassification,
    split: &SplitData,
    twins: bool,
) -> Result<EvalCounts> {
    let with_reference = split.data.reference_labels.is_some();
    let with_twins = twins && split.twins.is_some();
    let mut counts = EvalCounts::new(&ctx.labels, &ctx.group_columns, with_reference, with_twins)?;
    if let Some(name) = ctx.fair_names.first() {
        counts = counts.with_primary(name);
    }
    let lengths: Vec<usize> = split.enc.iter().map(Encoded::len).collect();
    let plan = plan_batches(
        &lengths,
        &BatchConfig {
            batch_size: ctx.config.eval_batch_size,
            window_batches: ctx.config.length_window_batches,
            shuffle: false,
            seed: 0,
        },
        0,
    );
    let k = ctx.labels.len();
    let predict = |encs: Vec<&Encoded>, rows: &[usize]| -> Result<Vec<f32>> {
        let batch = collate(rows.to_vec(), &encs, ctx.pad_id);
        let logits = model.forward(input_of(&batch, &ctx.plain)?);
        log_softmax(logits, 1)
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::TensorRead {
                name: "log-probabilities".into(),
                message: e.to_string(),
            })
    };
    let argmax = |row: &[f32]| -> u32 {
        let mut best = 0;
        for (c, v) in row.iter().enumerate() {
            if *v > row[best] {
                best = c;
            }
        }
        best as u32
    };
    for rows in plan {
        let log_probs = predict(rows.iter().map(|&i| &split.enc[i]).collect(), &rows)?;
        let twin_log_probs = match (&split.twins, with_twins) {
            (Some(t), true) => Some(predict(rows.iter().map(|&i| &t[i]).collect(), &rows)?),
            _ => None,
        };
        for (r, &i) in rows.iter().enumerate() {
            let lp = &log_probs[r * k..(r + 1) * k];
            let label = split.data.labels[i].0;
            counts.add(RowOutcome {
                label,
                predicted: argmax(lp),
                loss: -f64::from(lp[label as usize]),
                groups: &split.groups[i],
                reference: split.data.reference_labels.as_ref().map(|v| v[i].0),
                twin_predicted: twin_log_probs
                    .as_ref()
                    .map(|t| argmax(&t[r * k..(r + 1) * k])),
            })?;
        }
    }
    Ok(counts)
}

pub(super) fn select_value(config: &TrainConfig, m: &EvalMetrics) -> f64 {
    use crate::config::SelectMetric::*;
    match config.select_metric {
        Loss => m.loss,
        Accuracy => m.accuracy,
        MacroF1 => m.macro_f1,
        BalancedAccuracy => m.balanced_accuracy,
    }
}

/// The argmax predictions of `rows` of `split` (no dropout, no
/// gradients), in the order of `rows`, in batches of `eval_batch_size`.
pub(super) fn predict_rows(
    ctx: &Context,
    model: &BertForSequenceClassification,
    split: &SplitData,
    rows: &[usize],
) -> Result<Vec<u32>> {
    let logits = logits_rows(ctx, model, split, rows)?;
    Ok(logits
        .chunks(ctx.labels.len())
        .map(|row| {
            let mut best = 0;
            for (c, v) in row.iter().enumerate() {
                if *v > row[best] {
                    best = c;
                }
            }
            best as u32
        })
        .collect())
}

/// The logits of `rows` of `split`, row-major (`rows.len()` × labels), as
/// [`predict_rows`] computes them.
pub(super) fn logits_rows(
    ctx: &Context,
    model: &BertForSequenceClassification,
    split: &SplitData,
    rows: &[usize],
) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(rows.len() * ctx.labels.len());
    for chunk in rows.chunks(ctx.config.eval_batch_size) {
        let encs: Vec<&Encoded> = chunk.iter().map(|&i| &split.enc[i]).collect();
        let batch = collate(chunk.to_vec(), &encs, ctx.pad_id);
        let logits = model
            .forward(input_of(&batch, &ctx.plain)?)
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::TensorRead {
                name: "logits".into(),
                message: e.to_string(),
            })?;
        out.extend(logits);
    }
    Ok(out)
}
