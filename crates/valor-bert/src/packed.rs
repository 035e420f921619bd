//! Unpadded ("packed") inference: the sequences of a batch laid end to end,
//! as text-embeddings-inference and FlashAttention's varlen kernels do.
//!
//! A padded batch computes every position up to the longest sequence: with
//! texts of mixed length (a server's dynamic batch), most rows of every
//! Linear, GELU and layer norm are padding. Here the token-wise parts run on
//! the `[tokens, hidden]` rows of real tokens only. Attention is the one
//! part that needs each sequence's rows side by side: [`Layout`] sorts the
//! sequences by length and gathers `Q`, `K` and `V` of each group of
//! `GROUP` of them into a padded `[batch, heads, seq_len, d_head]` view
//! (padding slots repeat a real row and are masked by the additive bias,
//! as in the padded forward), then scatters the contexts back to the real
//! rows. So attention pads each group only to its own longest sequence.
//! On the CPU without autodiff (`valor predict`, `valor serve`) attention
//! skips the groups: each head of each sequence runs on the packed rows as
//! they are ([`crate::host::attention_rows`]), padding nothing; a server
//! batch of 32 sentences of mixed lengths spent about a fifth of its time
//! on the groups' small padded products.
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

/// Sequences per attention group: the packed sequences are sorted by length
/// and attended in groups of this many, each padded only to its own
/// longest (one padded view of a whole server batch of mixed lengths spent
/// as long on attention's small products as on every Linear layer).
const GROUP: usize = 8;

/// How rows map to padded batches for attention.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// Padded batches attention runs on, one after another.
    pub groups: Vec<Group>,
    /// `None`: the rows are the one group's padded slots already. `Some`:
    /// `[tokens]`, each packed row's slot in the groups' slots laid end to
    /// end.
    pub unpad: Option<Tensor<1, Int>>,
    /// Packed rows only: each sequence's `(first row, length)`, in row
    /// order, for attention straight from the rows on the CPU
    /// ([`crate::host::attention_rows`]); empty on a padded layout.
    pub sequences: Vec<(usize, usize)>,
}

/// One padded batch for attention.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub batch: usize,
    pub seq_len: usize,
    /// `[batch, 1, 1, seq_len]`, as [`mask_bias`] makes it.
    pub bias: Tensor<4>,
    /// `[batch · seq_len]`: the packed row each slot reads (a padding slot
    /// reads its sequence's first row; the bias masks it); `None` on a
    /// padded layout.
    pub pad: Option<Tensor<1, Int>>,
}

impl Layout {
    /// An already padded `[batch, seq_len]` batch.
    pub fn padded(batch: usize, seq_len: usize, bias: Tensor<4>) -> Self {
        Self {
            groups: vec![Group {
                batch,
                seq_len,
                bias,
                pad: None,
            }],
            unpad: None,
            sequences: Vec::new(),
        }
    }
}

impl Group {
    /// Rows `[batch · seq_len, d]` of this group's slots from the layout's
    /// rows.
    pub fn gather(&self, rows: Tensor<2>) -> Tensor<2> {
        match &self.pad {
            Some(p) => rows.select(0, p.clone()),
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
        let mut ids = Vec::with_capacity(tokens);
        let mut types = Vec::with_capacity(tokens);
        let mut positions = Vec::with_capacity(tokens);
        let mut first = Vec::with_capacity(sequences.len());
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
            first.push(ids.len() as i64);
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
            }
        }
        let one = |v: Vec<i64>| {
            let n = v.len();
            Tensor::<1, Int>::from_data(TensorData::new(v, [n]), device)
        };
        // Attention groups: the sequences by length, GROUP at a time.
        let len = |s: usize| sequences[s].0.len();
        let mut order: Vec<usize> = (0..sequences.len()).collect();
        order.sort_by_key(|&s| len(s));
        let mut unpad = vec![0i64; tokens];
        let mut groups = Vec::with_capacity(order.len().div_ceil(GROUP));
        let mut slots = 0usize;
        for members in order.chunks(GROUP) {
            let seq_len = members.iter().map(|&s| len(s)).max().unwrap_or(0);
            let batch = members.len();
            let mut mask = Vec::with_capacity(batch * seq_len);
            let mut pad = Vec::with_capacity(batch * seq_len);
            for (b, &s) in members.iter().enumerate() {
                let offset = first[s] as usize;
                for i in 0..seq_len {
                    let real = i < len(s);
                    mask.push(i64::from(real));
                    pad.push((offset + if real { i } else { 0 }) as i64);
                    if real {
                        unpad[offset + i] = (slots + b * seq_len + i) as i64;
                    }
                }
            }
            slots += batch * seq_len;
            let mask = Tensor::<2, Int>::from_data(TensorData::new(mask, [batch, seq_len]), device);
            groups.push(Group {
                batch,
                seq_len,
                bias: mask_bias(mask),
                pad: Some(one(pad)),
            });
        }
        let spans = sequences
            .iter()
            .zip(&first)
            .map(|((ids, _), &f)| (f as usize, ids.len()))
            .collect();
        Ok(Self {
            input_ids: one(ids),
            token_type_ids: one(types),
            position_ids: one(positions),
            first: one(first),
            layout: Layout {
                groups,
                unpad: Some(one(unpad)),
                sequences: spans,
            },
        })
    }

    /// Number of sequences.
    pub fn batch(&self) -> usize {
        self.first.dims()[0]
    }

    /// Number of real tokens, all sequences together.
    pub fn tokens(&self) -> usize {
        self.input_ids.dims()[0]
    }
}
