//! Unpadded ("packed") inference: the sequences of a batch laid end to end,
//! as text-embeddings-inference and FlashAttention's varlen kernels do.
//!
//! A padded batch computes every position up to the longest sequence: with
//! texts of mixed length (a server's dynamic batch), most rows of every
//! Linear, GELU and layer norm are padding. Here the token-wise parts run on
//! the `[tokens, hidden]` rows of real tokens only. Attention is the one
//! part that needs each sequence's rows side by side: [`Layout`] gathers
//! `Q`, `K` and `V` into a padded `[batch, heads, seq_len, d_head]` view
//! (padding slots repeat a real row and are masked by the additive bias,
//! as in the padded forward), and scatters the context back to the real
//! rows. For BERT-sized models attention is a few percent of the FLOPs of a
//! short sequence, so the padding left there costs little.
//!
//! Every real token's logits equal the padded forward's up to the order of
//! floating-point sums (the parity tests hold both to the same tolerance).
//!
//! Must not know about tokenizers or files: it takes token ids.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::attention::mask_bias;
use crate::config::BertConfig;
use crate::error::{Error, Result};

/// Sequences laid end to end, each `[tokens]` tensor holding every
/// sequence's real tokens in order.
#[derive(Debug, Clone)]
pub struct PackedInput {
    pub(crate) input_ids: Tensor<1, Int>,
    pub(crate) token_type_ids: Tensor<1, Int>,
    pub(crate) position_ids: Tensor<1, Int>,
    /// `[batch]`: the packed row of each sequence's first token (`[CLS]`).
    pub(crate) first: Tensor<1, Int>,
    pub(crate) layout: Layout,
}

/// How packed rows map to a padded batch for attention.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub batch: usize,
    pub seq_len: usize,
    /// `[batch, 1, 1, seq_len]`, as [`mask_bias`] makes it.
    pub bias: Tensor<4>,
    /// `None`: rows are already `batch × seq_len` padded positions.
    pub packing: Option<Packing>,
}

/// Gather indices between packed rows and padded slots.
#[derive(Debug, Clone)]
pub(crate) struct Packing {
    /// `[batch · seq_len]`: the packed row each padded slot reads (a
    /// padding slot reads its sequence's first row; the bias masks it).
    pub pad: Tensor<1, Int>,
    /// `[tokens]`: the padded slot of each packed row.
    pub unpad: Tensor<1, Int>,
}

impl Layout {
    /// Rows `[batch · seq_len, d]` of padded slots from packed rows
    /// `[tokens, d]` (the identity on a padded layout).
    pub fn to_padded(&self, rows: Tensor<2>) -> Tensor<2> {
        match &self.packing {
            Some(p) => rows.select(0, p.pad.clone()),
            None => rows,
        }
    }

    /// The inverse of [`to_padded`](Self::to_padded) on real tokens.
    pub fn to_packed(&self, rows: Tensor<2>) -> Tensor<2> {
        match &self.packing {
            Some(p) => rows.select(0, p.unpad.clone()),
            None => rows,
        }
    }
}

impl PackedInput {
    /// Packs `(input_ids, token_type_ids)` per sequence (`None` types: all
    /// zero), checked against `config`: every sequence non-empty and within
    /// `max_position_embeddings`, ids within the vocabulary, types within
    /// `type_vocab_size`.
    pub fn new(
        sequences: &[(&[u32], Option<&[u32]>)],
        config: &BertConfig,
        device: &Device,
    ) -> Result<Self> {
        if sequences.is_empty() {
            return Err(Error::Input {
                message: "empty batch: no sequences to pack".into(),
            });
        }
        let tokens: usize = sequences.iter().map(|(ids, _)| ids.len()).sum();
        let seq_len = sequences
            .iter()
            .map(|(ids, _)| ids.len())
            .max()
            .unwrap_or(0);
        let batch = sequences.len();
        let mut ids = Vec::with_capacity(tokens);
        let mut types = Vec::with_capacity(tokens);
        let mut positions = Vec::with_capacity(tokens);
        let mut mask = Vec::with_capacity(batch * seq_len);
        let mut pad = Vec::with_capacity(batch * seq_len);
        let mut unpad = Vec::with_capacity(tokens);
        let mut first = Vec::with_capacity(batch);
        for (s, (seq_ids, seq_types)) in sequences.iter().enumerate() {
            let n = seq_ids.len();
            if n == 0 || n > config.max_position_embeddings {
                return Err(Error::Input {
                    message: format!(
                        "sequence {s} has {n} tokens; it needs 1 to {} (max_position_embeddings)",
                        config.max_position_embeddings
                    ),
                });
            }
            if let Some(t) = seq_types
                && t.len() != n
            {
                return Err(Error::Input {
                    message: format!("sequence {s}: {n} input ids but {} token type ids", t.len()),
                });
            }
            let offset = ids.len();
            for (i, &id) in seq_ids.iter().enumerate() {
                if id as usize >= config.vocab_size {
                    return Err(Error::Input {
                        message: format!(
                            "sequence {s}, token {i}: id {id} is past vocab_size {}",
                            config.vocab_size
                        ),
                    });
                }
                let ty = seq_types.map_or(0, |t| t[i]);
                if ty as usize >= config.type_vocab_size {
                    return Err(Error::Input {
                        message: format!(
                            "sequence {s}, token {i}: token type {ty} is past type_vocab_size {}",
                            config.type_vocab_size
                        ),
                    });
                }
                ids.push(i64::from(id));
                types.push(i64::from(ty));
                positions.push(i as i64);
                unpad.push((s * seq_len + i) as i64);
            }
            first.push(offset as i64);
            for i in 0..seq_len {
                let real = i < n;
                mask.push(i64::from(real));
                pad.push((offset + if real { i } else { 0 }) as i64);
            }
        }
        let ints = |v: Vec<i64>, shape: Vec<usize>| -> TensorData { TensorData::new(v, shape) };
        let one = |v: Vec<i64>| {
            let n = v.len();
            Tensor::<1, Int>::from_data(ints(v, vec![n]), device)
        };
        let mask = Tensor::<2, Int>::from_data(ints(mask, vec![batch, seq_len]), device);
        Ok(Self {
            input_ids: one(ids),
            token_type_ids: one(types),
            position_ids: one(positions),
            first: one(first),
            layout: Layout {
                batch,
                seq_len,
                bias: mask_bias(mask),
                packing: Some(Packing {
                    pad: one(pad),
                    unpad: one(unpad),
                }),
            },
        })
    }

    /// Number of sequences.
    pub fn batch(&self) -> usize {
        self.layout.batch
    }

    /// Number of real tokens, all sequences together.
    pub fn tokens(&self) -> usize {
        self.input_ids.dims()[0]
    }
}
