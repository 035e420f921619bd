//! The model input: token ids, attention mask and token type ids of a padded
//! batch, as integer tensors on one device.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::BertConfig;
use crate::error::{Error, Result};

/// A padded batch of tokenised sequences, each tensor `[batch, seq_len]`.
///
/// `attention_mask` is 1 for real tokens and 0 for padding, as HF's
/// tokenizers return it.
#[derive(Debug, Clone)]
pub struct BertInput {
    pub input_ids: Tensor<2, Int>,
    pub attention_mask: Tensor<2, Int>,
    pub token_type_ids: Tensor<2, Int>,
}

impl BertInput {
    /// Builds the input from row-major flat vectors of shape `[batch, seq_len]`.
    ///
    /// Checks the lengths and that the mask holds only 0 and 1.
    pub fn from_flat(
        input_ids: &[u32],
        attention_mask: &[u32],
        token_type_ids: &[u32],
        [batch, seq_len]: [usize; 2],
        device: &Device,
    ) -> Result<Self> {
        let n = batch * seq_len;
        if batch == 0 || seq_len == 0 {
            return Err(Error::Input {
                message: format!("empty batch: shape [{batch}, {seq_len}]"),
            });
        }
        for (name, v) in [
            ("input_ids", input_ids),
            ("attention_mask", attention_mask),
            ("token_type_ids", token_type_ids),
        ] {
            if v.len() != n {
                return Err(Error::Input {
                    message: format!(
                        "`{name}` has {} values but the shape [{batch}, {seq_len}] needs {n}",
                        v.len()
                    ),
                });
            }
        }
        if let Some(i) = attention_mask.iter().position(|&m| m > 1) {
            return Err(Error::Input {
                message: format!(
                    "`attention_mask` must hold 0 or 1; found {} at row {}, column {}",
                    attention_mask[i],
                    i / seq_len,
                    i % seq_len
                ),
            });
        }
        let tensor = |v: &[u32]| {
            let data = TensorData::new(v.iter().map(|&x| i64::from(x)).collect(), [batch, seq_len]);
            Tensor::<2, Int>::from_data(data, device)
        };
        Ok(Self {
            input_ids: tensor(input_ids),
            attention_mask: tensor(attention_mask),
            token_type_ids: tensor(token_type_ids),
        })
    }

    /// Builds the input from one vector per sequence (all of the same,
    /// padded length). `token_type_ids` may be `None` for single-segment
    /// inputs (all zeros).
    pub fn from_rows(
        input_ids: &[Vec<u32>],
        attention_mask: &[Vec<u32>],
        token_type_ids: Option<&[Vec<u32>]>,
        device: &Device,
    ) -> Result<Self> {
        let batch = input_ids.len();
        let seq_len = input_ids.first().map_or(0, Vec::len);
        if attention_mask.len() != batch || token_type_ids.is_some_and(|t| t.len() != batch) {
            return Err(Error::Input {
                message: format!(
                    "{batch} rows of `input_ids` but {} of `attention_mask` and {} of `token_type_ids`",
                    attention_mask.len(),
                    token_type_ids.map_or(batch, <[_]>::len)
                ),
            });
        }
        let flatten = |rows: &[Vec<u32>], name: &str| -> Result<Vec<u32>> {
            let mut flat = Vec::with_capacity(batch * seq_len);
            for (r, row) in rows.iter().enumerate() {
                if row.len() != seq_len {
                    return Err(Error::Input {
                        message: format!(
                            "`{name}` row {r} has {} tokens, row 0 has {seq_len}; pad the batch to one length",
                            row.len()
                        ),
                    });
                }
                flat.extend_from_slice(row);
            }
            Ok(flat)
        };
        let ids = flatten(input_ids, "input_ids")?;
        let mask = flatten(attention_mask, "attention_mask")?;
        let types = match token_type_ids {
            Some(t) => flatten(t, "token_type_ids")?,
            None => vec![0; batch * seq_len],
        };
        Self::from_flat(&ids, &mask, &types, [batch, seq_len], device)
    }

    /// `[batch, seq_len]`.
    pub fn dims(&self) -> [usize; 2] {
        self.input_ids.dims()
    }

    /// The same input on another device.
    pub fn to_device(self, device: &Device) -> Self {
        Self {
            input_ids: self.input_ids.to_device(device),
            attention_mask: self.attention_mask.to_device(device),
            token_type_ids: self.token_type_ids.to_device(device),
        }
    }

    /// Checks the input against a configuration: equal shapes, sequence
    /// length within `max_position_embeddings`, ids within the vocabulary and
    /// token types within `type_vocab_size`. Reads the ids back from the
    /// device, so call it where inputs come from outside, not per step.
    pub fn validate(&self, config: &BertConfig) -> Result<()> {
        let [batch, seq_len] = self.dims();
        for (name, t) in [
            ("attention_mask", &self.attention_mask),
            ("token_type_ids", &self.token_type_ids),
        ] {
            if t.dims() != [batch, seq_len] {
                return Err(Error::Input {
                    message: format!(
                        "`{name}` has shape {:?}, `input_ids` has [{batch}, {seq_len}]",
                        t.dims()
                    ),
                });
            }
        }
        if seq_len > config.max_position_embeddings {
            return Err(Error::Input {
                message: format!(
                    "sequence length {seq_len} exceeds max_position_embeddings {}; truncate the input",
                    config.max_position_embeddings
                ),
            });
        }
        let read = |name: &str, t: &Tensor<2, Int>| -> Result<Vec<i64>> {
            t.clone()
                .try_into_vec_as::<i64>()
                .map_err(|e| Error::TensorRead {
                    name: name.to_string(),
                    message: e.to_string(),
                })
        };
        for (name, t, limit) in [
            ("input_ids", &self.input_ids, config.vocab_size),
            (
                "token_type_ids",
                &self.token_type_ids,
                config.type_vocab_size,
            ),
            ("attention_mask", &self.attention_mask, 2),
        ] {
            let values = read(name, t)?;
            if let Some(i) = values
                .iter()
                .position(|&v| v < 0 || v as u64 >= limit as u64)
            {
                return Err(Error::Input {
                    message: format!(
                        "`{name}` holds {} at row {}, column {}; values must lie in 0..{limit}",
                        values[i],
                        i / seq_len,
                        i % seq_len
                    ),
                });
            }
        }
        Ok(())
    }
}
