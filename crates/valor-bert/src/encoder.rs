//! The BERT encoder: a stack of Transformer encoder layers (Vaswani et al.
//! 2017, §3.1; Devlin et al. 2019, §3), each self-attention then a
//! position-wise feed-forward network, both with post-LayerNorm residuals.
//!
//! Mirrors HF `BertLayer` (`BertIntermediate` + `BertOutput`): dense to
//! `intermediate_size`, the activation of `hidden_act` (`"gelu"` is the exact
//! erf GELU, as `torch.nn.functional.gelu`, not the tanh approximation),
//! dense back, dropout, `LayerNorm(x + ffn)`.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, Linear};
use burn::tensor::activation::{gelu_approximate, relu, silu};
use burn::tensor::{Device, Int, Tensor};

use crate::attention::{BertAttention, interpolate};
use crate::config::{Activation, BertConfig};
use crate::packed::Layout;
use crate::{fused, init, lora};

/// One encoder layer (HF `BertLayer`).
#[derive(Module, Debug)]
pub struct BertLayer {
    pub attention: BertAttention,
    /// HF `intermediate.dense`: hidden → intermediate.
    pub intermediate: Linear,
    /// HF `output.dense`: intermediate → hidden.
    pub output: Linear,
    /// HF `output.LayerNorm`.
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
    #[module(skip)]
    pub activation: Activation,
    /// `layer_norm`'s epsilon, for the fused residual + layer norm.
    #[module(skip)]
    pub layer_norm_eps: f64,
}

impl BertLayer {
    pub fn init(config: &BertConfig, device: &Device) -> Self {
        let h = config.hidden_size;
        let std = config.initializer_range;
        Self {
            attention: BertAttention::init(config, device),
            intermediate: init::linear(h, config.intermediate_size, std, device),
            output: init::linear(config.intermediate_size, h, std, device),
            layer_norm: init::layer_norm(h, config.layer_norm_eps, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            activation: config.hidden_act,
            layer_norm_eps: config.layer_norm_eps,
        }
    }

    /// `[batch · seq_len, hidden]` → the same shape, plus the attention
    /// probabilities when asked. `dims` is `[batch, seq_len]`.
    pub fn forward(
        &self,
        x: Tensor<2>,
        bias: Tensor<4>,
        dims: [usize; 2],
        want_probs: bool,
    ) -> (Tensor<2>, Option<Tensor<4>>) {
        let [batch, seq_len] = dims;
        self.forward_layout(x, &Layout::padded(batch, seq_len, bias), want_probs)
    }

    /// [`forward`](Self::forward) on padded or packed rows (see [`crate::packed`]).
    pub(crate) fn forward_layout(
        &self,
        x: Tensor<2>,
        layout: &Layout,
        want_probs: bool,
    ) -> (Tensor<2>, Option<Tensor<4>>) {
        let (x, probs) = self.attention.forward_layout(x, layout, want_probs);
        (self.feed_forward(x), probs)
    }

    /// The layer's output at each sequence's first row only, `[batch,
    /// hidden]` (see [`BertAttention::forward_first`]).
    pub(crate) fn forward_first(
        &self,
        x: Tensor<2>,
        layout: &Layout,
        first: Tensor<1, Int>,
    ) -> Tensor<2> {
        self.feed_forward(self.attention.forward_first(x, layout, first))
    }

    /// [`forward_layout`](Self::forward_layout) on interpolated rows (see
    /// [`BertAttention::forward_interpolated`]).
    pub(crate) fn forward_interpolated(
        &self,
        x: Tensor<2>,
        ends: [Tensor<2>; 2],
        alphas: Tensor<1>,
        layout: &Layout,
    ) -> Tensor<2> {
        self.feed_forward(self.attention.forward_interpolated(x, ends, alphas, layout))
    }

    /// The position-wise feed-forward block with its residual and layer norm.
    fn feed_forward(&self, x: Tensor<2>) -> Tensor<2> {
        let inner = activate(self.activation, lora::linear(&self.intermediate, x.clone()));
        fused::residual_layer_norm(
            lora::linear(&self.output, inner),
            x,
            &self.layer_norm,
            self.layer_norm_eps,
            &self.dropout,
        )
    }
}

fn activate(act: Activation, x: Tensor<2>) -> Tensor<2> {
    match act {
        Activation::Gelu => fused::gelu(x),
        Activation::GeluNew | Activation::GeluPytorchTanh => gelu_approximate(x),
        Activation::Relu => relu(x),
        Activation::Silu => silu(x),
    }
}

/// The layer stack (HF `BertEncoder`).
#[derive(Module, Debug)]
pub struct BertEncoder {
    pub layers: Vec<BertLayer>,
}

/// What the encoder returns: the last hidden state, and per layer the hidden
/// states and attention probabilities when asked.
#[derive(Debug, Clone)]
pub struct EncoderOutput {
    pub last_hidden_state: Tensor<3>,
    /// The output of every layer (not including the embeddings).
    pub layer_outputs: Option<Vec<Tensor<3>>>,
    pub attentions: Option<Vec<Tensor<4>>>,
}

impl BertEncoder {
    pub fn init(config: &BertConfig, device: &Device) -> Self {
        Self {
            layers: (0..config.num_hidden_layers)
                .map(|_| BertLayer::init(config, device))
                .collect(),
        }
    }

    /// `[batch, seq_len, hidden]` embeddings → the encoder output.
    pub fn forward(
        &self,
        x: Tensor<3>,
        bias: Tensor<4>,
        hidden_states: bool,
        attentions: bool,
    ) -> EncoderOutput {
        let [batch, seq_len, hidden] = x.dims();
        let mut x = x.reshape([batch * seq_len, hidden]);
        let mut outs = hidden_states.then(Vec::new);
        let mut probs = attentions.then(Vec::new);
        for layer in &self.layers {
            let (y, p) = layer.forward(x, bias.clone(), [batch, seq_len], attentions);
            if let (Some(all), Some(p)) = (probs.as_mut(), p) {
                all.push(p);
            }
            if let Some(all) = outs.as_mut() {
                all.push(y.clone().reshape([batch, seq_len, hidden]));
            }
            x = y;
        }
        EncoderOutput {
            last_hidden_state: x.reshape([batch, seq_len, hidden]),
            layer_outputs: outs,
            attentions: probs,
        }
    }

    /// Rows `[rows, hidden]` (padded or packed, see [`crate::packed`]; no
    /// per-layer outputs or attention maps) → the last layer's output at
    /// each sequence's first row, `first` (`[batch]`, in sequence order):
    /// `[batch, hidden]`, what the pooler reads. Every layer but the last
    /// runs on all rows; the last computes keys and values for all rows and
    /// the rest for the first rows alone (≈ 5/6 of its products), which is
    /// all a classification needs: inference, integrated gradients and
    /// training (whose dropout masks in the last layer cover the first
    /// rows' tensors); see [`BertAttention::forward_first`].
    pub(crate) fn forward_first(
        &self,
        x: Tensor<2>,
        layout: &Layout,
        first: Tensor<1, Int>,
    ) -> Tensor<2> {
        first_rows(&self.layers, x, layout, first)
    }

    /// [`forward_first`](Self::forward_first) on the `k` interpolations
    /// `base + α_i · delta` of one sequence (`[seq_len, hidden]` each,
    /// `alphas` `[k]`; integrated gradients): the first layer's projections
    /// run on `base` and `base + delta` alone (see
    /// [`BertAttention::forward_interpolated`]).
    pub(crate) fn forward_first_interpolated(
        &self,
        [base, delta]: [Tensor<2>; 2],
        alphas: Tensor<1>,
        layout: &Layout,
        first: Tensor<1, Int>,
    ) -> Tensor<2> {
        let x = interpolate(base.clone(), delta.clone(), alphas.clone());
        match self.layers.split_first() {
            // The last layer takes the first rows alone: the shortcut
            // applies to the first layer when another follows it.
            Some((layer, rest)) if !rest.is_empty() => {
                let x = layer.forward_interpolated(x, [base, delta], alphas, layout);
                first_rows(rest, x, layout, first)
            }
            _ => first_rows(&self.layers, x, layout, first),
        }
    }
}

/// `layers` on all rows but the last, which runs for the `first` rows
/// alone (see [`BertEncoder::forward_first`]).
fn first_rows(
    layers: &[BertLayer],
    x: Tensor<2>,
    layout: &Layout,
    first: Tensor<1, Int>,
) -> Tensor<2> {
    let Some((last, rest)) = layers.split_last() else {
        return x.select(0, first);
    };
    let x = rest
        .iter()
        .fold(x, |x, layer| layer.forward_layout(x, layout, false).0);
    last.forward_first(x, layout, first)
}
