//! The BERT pooler (Devlin et al. 2019, §3: the final hidden state of
//! `[CLS]` as the aggregate sequence representation): a dense layer with
//! tanh over the first token, as HF `BertPooler`.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};

use crate::config::BertConfig;
use crate::init;

/// `tanh(W · h[CLS] + b)`.
#[derive(Module, Debug)]
pub struct BertPooler {
    pub dense: Linear,
}

impl BertPooler {
    pub fn init(config: &BertConfig, device: &Device) -> Self {
        let h = config.hidden_size;
        Self {
            dense: init::linear(h, h, config.initializer_range, device),
        }
    }

    /// `[batch, seq_len, hidden]` → `[batch, hidden]`.
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [batch, _, h] = hidden.dims();
        self.forward_first(hidden.slice([0..batch, 0..1]).reshape([batch, h]))
    }

    /// Each sequence's first-token rows `[batch, hidden]` → `[batch, hidden]`.
    pub(crate) fn forward_first(&self, cls: Tensor<2>) -> Tensor<2> {
        crate::lora::linear(&self.dense, cls).tanh()
    }
}
