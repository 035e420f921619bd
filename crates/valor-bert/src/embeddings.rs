//! BERT input embeddings (Devlin et al. 2019, §3.1 "Input/Output
//! Representations"): the sum of token (WordPiece), learned absolute
//! position and segment (token type) embeddings, then LayerNorm and dropout.
//!
//! Mirrors HF `BertEmbeddings` with `position_embedding_type = "absolute"`:
//! positions are `0..seq_len` for every row (HF's `position_ids` buffer,
//! which this crate does not store), and LayerNorm uses the config's
//! `layer_norm_eps` (1e-12 for BERT, not PyTorch's 1e-5 default).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, LayerNorm};
use burn::tensor::{Device, Int, Tensor};

use crate::config::BertConfig;
use crate::{host, init};

/// Token + position + token-type embeddings, LayerNorm, dropout.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// `[vocab_size, hidden]`.
    pub word_embeddings: Embedding,
    /// `[max_position_embeddings, hidden]`.
    pub position_embeddings: Embedding,
    /// `[type_vocab_size, hidden]`.
    pub token_type_embeddings: Embedding,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
}

impl BertEmbeddings {
    /// Fresh embeddings, initialised as HF does (padding row of the word
    /// embeddings zero).
    pub fn init(config: &BertConfig, device: &Device) -> Self {
        let std = config.initializer_range;
        let h = config.hidden_size;
        Self {
            word_embeddings: init::embedding(
                config.vocab_size,
                h,
                std,
                Some(config.pad_token_id as usize),
                device,
            ),
            position_embeddings: init::embedding(
                config.max_position_embeddings,
                h,
                std,
                None,
                device,
            ),
            token_type_embeddings: init::embedding(config.type_vocab_size, h, std, None, device),
            layer_norm: init::layer_norm(h, config.layer_norm_eps, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
        }
    }

    /// `[batch, seq_len]` ids and token types → `[batch, seq_len, hidden]`.
    ///
    /// # Panics
    /// When `seq_len` exceeds `max_position_embeddings` (check inputs with
    /// [`BertInput::validate`](crate::BertInput::validate)).
    pub fn forward(&self, input_ids: Tensor<2, Int>, token_type_ids: Tensor<2, Int>) -> Tensor<3> {
        let [_, seq_len] = input_ids.dims();
        let words = self.word_embeddings.forward(input_ids);
        let types = self.token_type_embeddings.forward(token_type_ids);
        // Rows 0..seq_len of the position table, broadcast over the batch.
        let positions = self
            .position_embeddings
            .weight
            .val()
            .narrow(0, 0, seq_len)
            .unsqueeze::<3>();
        let x = words + types + positions;
        host::dropout(&self.dropout, self.layer_norm.forward(x))
    }

    /// Packed ids, token types and positions, each `[tokens]` (see
    /// [`crate::packed`]) → `[tokens, hidden]`: the same sum as
    /// [`forward`](Self::forward), each token's position row looked up.
    pub(crate) fn forward_packed(
        &self,
        input_ids: Tensor<1, Int>,
        token_type_ids: Tensor<1, Int>,
        position_ids: Tensor<1, Int>,
    ) -> Tensor<2> {
        let [tokens] = input_ids.dims();
        let row = |t: Tensor<1, Int>| t.reshape([1, tokens]);
        let words = self.word_embeddings.forward(row(input_ids));
        let types = self.token_type_embeddings.forward(row(token_type_ids));
        let positions = self.position_embeddings.forward(row(position_ids));
        let x = words + types + positions;
        let [_, _, hidden] = x.dims();
        host::dropout(&self.dropout, self.layer_norm.forward(x)).reshape([tokens, hidden])
    }
}
