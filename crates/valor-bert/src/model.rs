//! The BERT model (Devlin et al. 2019): embeddings, encoder and pooler, as
//! HF `BertModel`, plus the sentence-transformers mean-pooled embedding.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

use crate::attention::mask_bias;
use crate::config::BertConfig;
use crate::embeddings::BertEmbeddings;
use crate::encoder::BertEncoder;
use crate::pooler::BertPooler;

/// What [`forward_full`](crate::BertForSequenceClassification::forward_full)
/// should return besides the logits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardOptions {
    /// Return the embeddings output and every layer's output (HF `output_hidden_states`).
    pub hidden_states: bool,
    /// Return every layer's attention probabilities (HF `output_attentions`).
    pub attentions: bool,
}

impl ForwardOptions {
    /// Everything: hidden states and attentions.
    pub fn all() -> Self {
        Self {
            hidden_states: true,
            attentions: true,
        }
    }
}

/// The outputs of a forward pass.
#[derive(Debug, Clone)]
pub struct BertOutput {
    /// `[batch, num_labels]`, before softmax.
    pub logits: Tensor<2>,
    /// `[batch, seq_len, hidden]`, the last layer's output (rows of padding
    /// tokens are computed but meaningless).
    pub last_hidden_state: Tensor<3>,
    /// `[batch, hidden]`, the pooler output (tanh dense over `[CLS]`).
    pub pooled: Tensor<2>,
    /// `[batch, hidden]`, mean over real tokens then L2-normalised (what
    /// sentence-transformers returns for MiniLM).
    pub sentence_embedding: Tensor<2>,
    /// With [`ForwardOptions::hidden_states`]: `num_layers + 1` tensors
    /// `[batch, seq_len, hidden]`, the embeddings output first (HF order).
    pub hidden_states: Option<Vec<Tensor<3>>>,
    /// With [`ForwardOptions::attentions`]: one `[batch, heads, seq_len,
    /// seq_len]` tensor per layer.
    pub attentions: Option<Vec<Tensor<4>>>,
}

/// Encoder outputs before the classifier head.
#[derive(Debug, Clone)]
pub struct BaseOutput {
    pub last_hidden_state: Tensor<3>,
    pub pooled: Tensor<2>,
    pub hidden_states: Option<Vec<Tensor<3>>>,
    pub attentions: Option<Vec<Tensor<4>>>,
}

/// HF `BertModel`: embeddings, encoder, pooler.
#[derive(Module, Debug)]
pub struct BertModel {
    pub embeddings: BertEmbeddings,
    pub encoder: BertEncoder,
    pub pooler: BertPooler,
}

impl BertModel {
    pub fn init(config: &BertConfig, device: &Device) -> Self {
        Self {
            embeddings: BertEmbeddings::init(config, device),
            encoder: BertEncoder::init(config, device),
            pooler: BertPooler::init(config, device),
        }
    }

    /// Runs the encoder and pooler on an embeddings output
    /// (`[batch, seq_len, hidden]`, e.g. an interpolation for integrated
    /// gradients).
    pub fn forward_from_embeddings(
        &self,
        embeddings: Tensor<3>,
        attention_mask: Tensor<2, Int>,
        opts: ForwardOptions,
    ) -> BaseOutput {
        let bias = mask_bias(attention_mask);
        let first = opts.hidden_states.then(|| embeddings.clone());
        let enc = self
            .encoder
            .forward(embeddings, bias, opts.hidden_states, opts.attentions);
        let hidden_states = enc.layer_outputs.map(|layers| {
            let mut all = Vec::with_capacity(layers.len() + 1);
            all.extend(first);
            all.extend(layers);
            all
        });
        let pooled = self.pooler.forward(enc.last_hidden_state.clone());
        BaseOutput {
            last_hidden_state: enc.last_hidden_state,
            pooled,
            hidden_states,
            attentions: enc.attentions,
        }
    }
}

/// Masked mean over tokens, then L2 normalisation: sentence-transformers'
/// `Pooling(mode="mean")` + `Normalize()` (token counts clamped at 1e-9,
/// norms at 1e-12, as `torch.nn.functional.normalize`).
pub fn mean_pooled_embedding(hidden: Tensor<3>, attention_mask: Tensor<2, Int>) -> Tensor<2> {
    let [batch, seq_len, h] = hidden.dims();
    let mask = attention_mask.float().reshape([batch, seq_len, 1]);
    let sum = (hidden * mask.clone()).sum_dim(1).reshape([batch, h]);
    let count = mask.sum_dim(1).reshape([batch, 1]).clamp_min(1e-9);
    let mean = sum / count;
    let norm = mean.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    mean / norm
}
