//! Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in
//! Transformers"): each layer's attention, averaged over heads, is mixed with
//! the identity for the residual connection (`Â = ½A + ½I`, rows still sum to
//! 1), and the layers are multiplied, `R = Â_L ⋯ Â_1`. The row of `[CLS]`
//! (position 0, which the pooler reads) says how much each input token flows
//! into the classification. Cheap (one forward pass) and class-agnostic.

use super::{TokenSequence, read};
use crate::classifier::BertForSequenceClassification;
use crate::error::Result;
use crate::model::ForwardOptions;

/// Rollout relevance of every position for the `[CLS]` token (padding
/// positions are 0; real positions sum to 1).
pub fn attention_rollout(
    model: &BertForSequenceClassification,
    seq: &TokenSequence,
) -> Result<Vec<f64>> {
    let device = model.classifier.weight.val().device();
    let input = seq.batch(1, &device)?;
    let n = seq.len();
    let out = model.forward_full(
        input,
        ForwardOptions {
            hidden_states: false,
            attentions: true,
        },
    );
    let layers = out.attentions.unwrap_or_default();
    let mut rollout: Vec<f64> = (0..n * n)
        .map(|i| if i / n == i % n { 1.0 } else { 0.0 })
        .collect();
    for a in layers {
        let [_, heads, _, _] = a.dims();
        let mean = read(a.mean_dim(1).reshape([n, n]), "attention")?;
        debug_assert!(heads > 0);
        let mixed: Vec<f64> = mean
            .iter()
            .enumerate()
            .map(|(i, &v)| 0.5 * v + if i / n == i % n { 0.5 } else { 0.0 })
            .collect();
        // rollout ← Â_l · rollout
        let mut next = vec![0.0; n * n];
        for i in 0..n {
            for k in 0..n {
                let m = mixed[i * n + k];
                if m == 0.0 {
                    continue;
                }
                for j in 0..n {
                    next[i * n + j] += m * rollout[k * n + j];
                }
            }
        }
        rollout = next;
    }
    let mut cls: Vec<f64> = rollout[..n]
        .iter()
        .zip(&seq.attention_mask)
        .map(|(&v, &m)| if m == 0 { 0.0 } else { v })
        .collect();
    let total: f64 = cls.iter().sum();
    if total > 0.0 {
        cls.iter_mut().for_each(|v| *v /= total);
    }
    Ok(cls)
}
