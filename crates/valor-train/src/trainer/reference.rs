//! `reference.json` in the run folder: the exported model's predictions on
//! the validation rows (`valor.monitor.reference/1`: argmax label and every
//! class's probability per row, text length in characters, share of
//! `[UNK]` tokens). `valor serve --reference RUN` and `valor monitor
//! --reference RUN` measure drift against it, so a deployed model is
//! compared with what it did on data it was selected on.

use valor_bert::BertForSequenceClassification;
use valor_data::TextTokenizer;
use valor_fair::Reference;

use super::eval::logits_rows;
use super::prepare::Context;
use super::run_dir::write_json;
use crate::error::{Error, Result};

/// Writes `reference.json` for `model` (the exported one); nothing when the
/// validation split is empty.
pub(super) fn write_reference(ctx: &Context, model: &BertForSequenceClassification) -> Result<()> {
    let split = &ctx.valid;
    let rows: Vec<usize> = (0..split.enc.len()).collect();
    if rows.is_empty() {
        return Ok(());
    }
    let unk_id =
        TextTokenizer::from_model_dir(&ctx.run.model(), ctx.config.max_len)?.token_to_id("[UNK]");
    let k = ctx.labels.len();
    let logits = logits_rows(ctx, model, split, &rows)?;
    let probabilities: Vec<Vec<f64>> = logits.chunks_exact(k).map(softmax).collect();
    let predicted: Vec<&str> = probabilities
        .iter()
        .map(|p| {
            let best = (0..k).fold(0, |b, c| if p[c] > p[b] { c } else { b });
            ctx.labels[best].as_str()
        })
        .collect();
    let text_chars = split
        .data
        .texts
        .iter()
        .map(|t| t.chars().count() as f64)
        .collect();
    let unknown_rate = unk_id.map(|unk| {
        split
            .enc
            .iter()
            .map(|e| {
                let n = e.ids.len().max(1);
                e.ids.iter().filter(|&&id| id == unk).count() as f64 / n as f64
            })
            .collect()
    });
    let reference = Reference::from_rows(
        &ctx.labels,
        &predicted,
        &probabilities,
        Some(text_chars),
        unknown_rate,
    )
    .map_err(|e| Error::Invalid {
        path: ctx.run.reference(),
        message: e.to_string(),
    })?;
    write_json(&ctx.run.reference(), &reference)
}

/// Softmax of one row of logits, in f64.
fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &l| m.max(f64::from(l)));
    let exp: Vec<f64> = logits.iter().map(|&l| (f64::from(l) - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}
