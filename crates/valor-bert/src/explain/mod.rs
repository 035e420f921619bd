//! Explanations of a classifier's decisions, and how faithful they are.
//!
//! - [`ig`]: integrated gradients (Sundararajan et al. 2017) at the output
//!   of `bert.embeddings`, as Captum's `LayerIntegratedGradients`, with the
//!   completeness delta of every explanation.
//! - [`rollout`]: attention rollout (Abnar & Zuidema 2020), a cheap second view.
//! - [`occlusion`]: leave-one-feature-out, a model-agnostic check.
//! - [`faithfulness`]: ERASER's comprehensiveness and sufficiency
//!   (DeYoung et al. 2020) against random attributions, folded into the
//!   `[0, 1]` transparency score of `valor_values::Evaluation::faithfulness`.
//!
//! Everything here works on token ids: words come in as the tokenizer's
//! `word_ids` ([`merge_words`]), so this module knows no tokenizer.

pub mod faithfulness;
pub mod ig;
pub mod occlusion;
pub mod rollout;

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::classifier::BertForSequenceClassification;
use crate::error::{Error, Result};
use crate::input::BertInput;

pub use faithfulness::{
    FaithfulnessConfig, FaithfulnessItem, FaithfulnessReport, FractionScores, faithfulness,
};
pub use ig::{IgConfig, IgExplanation, Rule, integrated_gradients, integration_points};
pub use occlusion::{OcclusionExplanation, occlusion};
pub use rollout::attention_rollout;

/// One tokenised sequence, unpadded or padded (`attention_mask` 0 on padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSequence {
    pub input_ids: Vec<u32>,
    pub attention_mask: Vec<u32>,
    pub token_type_ids: Vec<u32>,
}

impl TokenSequence {
    /// A sequence of real tokens only (mask all 1), single segment when
    /// `token_type_ids` is `None`.
    pub fn new(input_ids: Vec<u32>, token_type_ids: Option<Vec<u32>>) -> Self {
        let n = input_ids.len();
        Self {
            attention_mask: vec![1; n],
            token_type_ids: token_type_ids.unwrap_or_else(|| vec![0; n]),
            input_ids,
        }
    }

    /// Number of positions (padding included).
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// Whether the sequence has no positions.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// Checks that the three vectors have one length, the mask holds 0/1 and
    /// there is at least one token.
    pub fn check(&self) -> Result<()> {
        let n = self.input_ids.len();
        if n == 0 {
            return Err(input_err("cannot explain an empty sequence".into()));
        }
        if self.attention_mask.len() != n || self.token_type_ids.len() != n {
            return Err(input_err(format!(
                "sequence has {n} ids but {} mask values and {} token types",
                self.attention_mask.len(),
                self.token_type_ids.len()
            )));
        }
        Ok(())
    }

    /// The same sequence repeated `times` as a batch on `device`.
    pub(crate) fn batch(&self, times: usize, device: &Device) -> Result<BertInput> {
        self.check()?;
        let rep =
            |v: &[u32]| -> Vec<u32> { v.iter().copied().cycle().take(v.len() * times).collect() };
        BertInput::from_flat(
            &rep(&self.input_ids),
            &rep(&self.attention_mask),
            &rep(&self.token_type_ids),
            [times, self.len()],
            device,
        )
    }

    /// The attention mask repeated `times` as a `[times, len]` tensor.
    pub(crate) fn mask_tensor(&self, times: usize, device: &Device) -> Tensor<2, Int> {
        let n = self.len();
        let v: Vec<i64> = self
            .attention_mask
            .iter()
            .map(|&m| i64::from(m))
            .cycle()
            .take(n * times)
            .collect();
        Tensor::from_data(TensorData::new(v, [times, n]), device)
    }
}

/// The `[PAD]` baseline of integrated gradients: every real token not in
/// `keep` (the ids of `[CLS]` and `[SEP]`) becomes `pad_id`; padding stays.
/// This is the baseline of `make_captum_ig.py` in the parity fixture.
pub fn pad_baseline(seq: &TokenSequence, keep: &[u32], pad_id: u32) -> Vec<u32> {
    seq.input_ids
        .iter()
        .zip(&seq.attention_mask)
        .map(|(&id, &m)| {
            if m == 0 || keep.contains(&id) {
                id
            } else {
                pad_id
            }
        })
        .collect()
}

/// Attributions merged per word.
#[derive(Debug, Clone, PartialEq)]
pub struct WordAttribution {
    /// The tokenizer's word index.
    pub word: u32,
    /// Token positions of the word (WordPiece `##` pieces included).
    pub tokens: Vec<usize>,
    /// Sum of the tokens' attributions.
    pub attribution: f64,
}

/// Sums token attributions per word (`word_ids` from the tokenizer, `None`
/// for special tokens, which are left out), in order of first appearance.
pub fn merge_words(token_attributions: &[f64], word_ids: &[Option<u32>]) -> Vec<WordAttribution> {
    let mut out: Vec<WordAttribution> = Vec::new();
    for (pos, (&a, w)) in token_attributions.iter().zip(word_ids).enumerate() {
        let Some(w) = *w else { continue };
        match out.iter_mut().find(|x| x.word == w) {
            Some(x) => {
                x.tokens.push(pos);
                x.attribution += a;
            }
            None => out.push(WordAttribution {
                word: w,
                tokens: vec![pos],
                attribution: a,
            }),
        }
    }
    out
}

/// Indices of the `k` largest values (ties by position), best first.
pub fn top_k(values: &[f64], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// Softmax probabilities `[batch][classes]` of `input`.
pub fn predict_proba(
    model: &BertForSequenceClassification,
    input: BertInput,
) -> Result<Vec<Vec<f64>>> {
    let logits = model.forward(input);
    let [_, c] = logits.dims();
    let p = read(softmax(logits, 1), "probabilities")?;
    Ok(p.chunks_exact(c).map(<[f64]>::to_vec).collect())
}

pub(crate) fn read<const D: usize>(t: Tensor<D>, name: &str) -> Result<Vec<f64>> {
    let v = t
        .detach()
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::TensorRead {
            name: name.to_string(),
            message: format!("{e:?}"),
        })?;
    Ok(v.into_iter().map(f64::from).collect())
}

pub(crate) fn input_err(message: String) -> Error {
    Error::Input { message }
}

/// Pads sequences of real tokens to one length (id 0, mask 0) as a batch.
pub(crate) fn pad_batch(rows: &[(Vec<u32>, Vec<u32>)], device: &Device) -> Result<BertInput> {
    let len = rows.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * len);
    let mut mask = Vec::with_capacity(rows.len() * len);
    let mut types = Vec::with_capacity(rows.len() * len);
    for (i, t) in rows {
        let pad = len - i.len();
        ids.extend_from_slice(i);
        ids.extend(std::iter::repeat_n(0, pad));
        mask.extend(std::iter::repeat_n(1, i.len()));
        mask.extend(std::iter::repeat_n(0, pad));
        types.extend_from_slice(t);
        types.extend(std::iter::repeat_n(0, pad));
    }
    BertInput::from_flat(&ids, &mask, &types, [rows.len(), len], device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_merge_pieces_and_skip_specials() {
        let attr = [0.5, 1.0, 2.0, -1.0, 0.25, 9.0];
        let words = [None, Some(0), Some(0), Some(1), Some(2), None];
        let m = merge_words(&attr, &words);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].tokens, vec![1, 2]);
        assert_eq!(m[0].attribution, 3.0);
        assert_eq!(m[1].attribution, -1.0);
        assert_eq!(top_k(&[1.0, 3.0, 2.0, 3.0], 3), vec![1, 3, 2]);
    }

    #[test]
    fn baseline_keeps_specials_and_padding() {
        let s = TokenSequence {
            input_ids: vec![101, 7, 8, 102, 5],
            attention_mask: vec![1, 1, 1, 1, 0],
            token_type_ids: vec![0; 5],
        };
        assert_eq!(pad_baseline(&s, &[101, 102], 0), vec![101, 0, 0, 102, 5]);
    }
}
