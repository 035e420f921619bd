//! Occlusion (Zeiler & Fergus 2014), here leave-one-feature-out: each feature
//! (a word's tokens, or one token) is replaced by a neutral id (`[PAD]`) and
//! the drop in the target class's softmax probability is its attribution.
//! Model-agnostic: it needs only forward passes, batched.

use super::{TokenSequence, input_err, predict_proba};
use crate::classifier::BertForSequenceClassification;
use crate::error::Result;

/// An occlusion explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct OcclusionExplanation {
    /// The class explained.
    pub target: usize,
    /// Softmax probabilities of the intact input.
    pub probabilities: Vec<f64>,
    /// Per feature: `p(target | x) − p(target | x with the feature occluded)`.
    pub attributions: Vec<f64>,
}

/// Occludes each feature of `features` (lists of token positions) in turn
/// with `replacement_id`, `batch_size` variants per forward pass.
pub fn occlusion(
    model: &BertForSequenceClassification,
    seq: &TokenSequence,
    features: &[Vec<usize>],
    target: Option<usize>,
    replacement_id: u32,
    batch_size: usize,
) -> Result<OcclusionExplanation> {
    seq.check()?;
    let device = model.classifier.weight.val().device();
    let n = seq.len();
    if let Some(bad) = features.iter().flatten().find(|&&p| p >= n) {
        return Err(input_err(format!(
            "feature position {bad} is outside the sequence of {n} tokens"
        )));
    }
    let probabilities = predict_proba(model, seq.batch(1, &device)?)?.remove(0);
    let target = match target {
        Some(t) if t < probabilities.len() => t,
        Some(t) => {
            return Err(input_err(format!(
                "target class {t} but the model has {} classes",
                probabilities.len()
            )));
        }
        None => super::top_k(&probabilities, 1)[0],
    };
    let mut attributions = Vec::with_capacity(features.len());
    for group in features.chunks(batch_size.max(1)) {
        let mut ids = Vec::with_capacity(group.len() * n);
        for f in group {
            let mut row = seq.input_ids.clone();
            for &p in f {
                row[p] = replacement_id;
            }
            ids.extend(row);
        }
        let rep =
            |v: &[u32]| -> Vec<u32> { v.iter().copied().cycle().take(n * group.len()).collect() };
        let input = crate::input::BertInput::from_flat(
            &ids,
            &rep(&seq.attention_mask),
            &rep(&seq.token_type_ids),
            [group.len(), n],
            &device,
        )?;
        for p in predict_proba(model, input)? {
            attributions.push(probabilities[target] - p[target]);
        }
    }
    Ok(OcclusionExplanation {
        target,
        probabilities,
        attributions,
    })
}
