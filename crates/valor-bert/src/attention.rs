//! Multi-head self-attention with BERT's post-LayerNorm residual block
//! (Vaswani et al. 2017, §3.2 "Scaled Dot-Product Attention" and
//! "Multi-Head Attention"; Devlin et al. 2019 use it unchanged).
//!
//! Mirrors HF `BertSelfAttention` + `BertSelfOutput`:
//! `softmax(Q Kᵀ / √d_head + mask) V`, dropout on the attention
//! probabilities, an output projection, dropout, then
//! `LayerNorm(x + attention)`. The padding mask is *additive*: HF's
//! `get_extended_attention_mask` adds `(1 - mask) · finfo(float32).min` to the
//! scores, so padded keys get exactly zero probability; [`mask_bias`] builds
//! the same tensor.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, Linear};
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Int, Tensor};

use crate::config::BertConfig;
use crate::packed::{Group, Layout};
use crate::{fused, host, init, lora};

/// The additive attention bias `[batch, 1, 1, seq_len]`: 0 where
/// `attention_mask` is 1, the float dtype's minimum (PyTorch's
/// `torch.finfo(dtype).min`, as HF; `f32::MIN` in f32) where it is 0.
pub fn mask_bias(attention_mask: Tensor<2, Int>) -> Tensor<4> {
    let [batch, seq_len] = attention_mask.dims();
    let keep = attention_mask.float();
    // The minimum of the device's float dtype (`torch.finfo(dtype).min`, as
    // HF takes it): f32::MIN rounds to -inf in f16 and bf16, and 0 × -inf
    // would make every kept key NaN (`--precision f16|bf16` on a GPU).
    let min = match keep.dtype() {
        burn::tensor::DType::F16 => burn::tensor::f16::MIN.to_f32(),
        burn::tensor::DType::BF16 => burn::tensor::bf16::MIN.to_f32(),
        _ => f32::MIN,
    };
    keep.neg()
        .add_scalar(1.0)
        .mul_scalar(min)
        .reshape([batch, 1, 1, seq_len])
}

/// The rows `start + α_i · step` for each of the `k` `alphas`, laid end to
/// end: `[k · rows, cols]` from `start` and `step` `[rows, cols]`.
pub(crate) fn interpolate(start: Tensor<2>, step: Tensor<2>, alphas: Tensor<1>) -> Tensor<2> {
    let k = alphas.dims()[0];
    let [rows, cols] = start.dims();
    (start.unsqueeze_dim::<3>(0) + alphas.reshape([k, 1, 1]) * step.unsqueeze_dim::<3>(0))
        .reshape([k * rows, cols])
}

/// Self-attention sub-layer of one encoder layer (HF `BertAttention`).
#[derive(Module, Debug)]
pub struct BertAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    /// Output projection (HF `attention.output.dense`).
    pub output: Linear,
    /// HF `attention.output.LayerNorm`.
    pub layer_norm: LayerNorm,
    /// Dropout on the attention probabilities (`attention_probs_dropout_prob`).
    pub attention_dropout: Dropout,
    /// Dropout on the projected output (`hidden_dropout_prob`).
    pub dropout: Dropout,
    pub num_heads: usize,
    /// `layer_norm`'s epsilon (burn's `LayerNorm` keeps its own private),
    /// for the fused residual + layer norm.
    #[module(skip)]
    pub layer_norm_eps: f64,
}

impl BertAttention {
    pub fn init(config: &BertConfig, device: &Device) -> Self {
        let h = config.hidden_size;
        let std = config.initializer_range;
        Self {
            query: init::linear(h, h, std, device),
            key: init::linear(h, h, std, device),
            value: init::linear(h, h, std, device),
            output: init::linear(h, h, std, device),
            layer_norm: init::layer_norm(h, config.layer_norm_eps, device),
            attention_dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            num_heads: config.num_attention_heads,
            layer_norm_eps: config.layer_norm_eps,
        }
    }

    /// `x`: the layer's rows `[rows, hidden]`, padded (`[batch · seq_len,
    /// hidden]`, rows grouped by sequence, the layout's one group holding
    /// the [`mask_bias`]) or packed (see [`crate::packed`]). Returns the
    /// block output (same shape as `x`) and, when asked (padded only), the
    /// attention probabilities `[batch, heads, seq_len, seq_len]` (before
    /// dropout, as HF returns them). The projections run on `x`'s rows as
    /// they are; attention on the layout's padded view, or on the CPU
    /// without autodiff straight from packed rows.
    ///
    /// Activations stay two-dimensional so that every projection is one
    /// `[rows, hidden] × [hidden, hidden]` product (one packed weight, all
    /// threads) rather than a batch of small ones.
    pub(crate) fn forward_layout(
        &self,
        x: Tensor<2>,
        layout: &Layout,
        want_probs: bool,
    ) -> (Tensor<2>, Option<Tensor<4>>) {
        let q = lora::linear(&self.query, x.clone());
        let k = lora::linear(&self.key, x.clone());
        let v = lora::linear(&self.value, x.clone());
        self.forward_projected([q, k, v], x, layout, want_probs)
    }

    /// [`forward_layout`](Self::forward_layout) on a layer in which
    /// `x`'s rows are `k` interpolations `base + α_i · delta` (`base`,
    /// `delta`: `[seq_len, hidden]`, `alphas`: `[k]`; integrated gradients):
    /// the projections are affine, so each is computed on `base` and on
    /// `base + delta` alone and interpolated, `P + α_i (P₁ − P)`, rather
    /// than on all `k · seq_len` rows; in the backward pass the gradients
    /// of the `k` rows are summed (weighted by `α_i`) before the one
    /// product with the weight.
    pub(crate) fn forward_interpolated(
        &self,
        x: Tensor<2>,
        [base, delta]: [Tensor<2>; 2],
        alphas: Tensor<1>,
        layout: &Layout,
    ) -> Tensor<2> {
        let end = base.clone() + delta;
        let project = |layer: &Linear| {
            let at_base = lora::linear(layer, base.clone());
            let step = lora::linear(layer, end.clone()) - at_base.clone();
            interpolate(at_base, step, alphas.clone())
        };
        let qkv = [&self.query, &self.key, &self.value].map(project);
        self.forward_projected(qkv, x, layout, false).0
    }

    /// The block after the projections: attention of `q`, `k`, `v`, the
    /// output projection and the residual layer norm onto `x`.
    fn forward_projected(
        &self,
        [q, k, v]: [Tensor<2>; 3],
        x: Tensor<2>,
        layout: &Layout,
        want_probs: bool,
    ) -> (Tensor<2>, Option<Tensor<4>>) {
        // On the CPU without autodiff: every head straight from the rows,
        // packed or padded (one group, its slots the rows).
        let rows = match (layout.groups.as_slice(), &layout.unpad) {
            _ if want_probs => None,
            _ if !layout.sequences.is_empty() => Some((layout.sequences.clone(), None)),
            ([group], None) => Some((
                (0..group.batch)
                    .map(|b| (b * group.seq_len, group.seq_len))
                    .collect::<Vec<_>>(),
                Some(group.bias.clone()),
            )),
            _ => None,
        };
        let qkv = match rows {
            None => Err(Box::new([q, k, v])),
            Some((sequences, bias)) => {
                host::attention_rows([q, k, v], &sequences, bias, self.num_heads, false)
            }
        };
        let (context, probs) = match (qkv, layout.groups.as_slice(), &layout.unpad) {
            (Ok(context), _, _) => (context, None),
            (Err(qkv), [group], None) => {
                let [q, k, v] = *qkv;
                self.attend(q, k, v, group, want_probs)
            }
            (Err(qkv), groups, unpad) => {
                let [q, k, v] = *qkv;
                let contexts = groups
                    .iter()
                    .map(|g| self.attend(q.clone(), k.clone(), v.clone(), g, false).0)
                    .collect();
                let context = Tensor::cat(contexts, 0);
                let context = match unpad {
                    Some(u) => context.select(0, u.clone()),
                    None => context,
                };
                (context, None)
            }
        };

        let out = fused::residual_layer_norm(
            lora::linear(&self.output, context),
            x,
            &self.layer_norm,
            self.layer_norm_eps,
            &self.dropout,
        );
        (out, probs)
    }

    /// [`forward_layout`](Self::forward_layout)'s output at one row per
    /// sequence, its first (`[CLS]`), `[batch, hidden]`: all a classifier's
    /// pooler reads of the last layer. `first` holds those rows of `x`, in
    /// sequence order. Keys and values are projected for every row; the
    /// query, the attention, the output projection and the layer norm run
    /// on the first rows alone. Equal to the full block at those rows up to
    /// the order of floating-point sums. Where no first-row attention
    /// applies (packed rows off the flex CPU device), the full block runs
    /// and its first rows are taken. Dropout, when active (training), draws
    /// its masks over the smaller tensors.
    pub(crate) fn forward_first(
        &self,
        x: Tensor<2>,
        layout: &Layout,
        first: Tensor<1, Int>,
    ) -> Tensor<2> {
        let padded = matches!((layout.groups.as_slice(), &layout.unpad), ([_], None));
        let on_rows =
            !layout.sequences.is_empty() && host::is_flex(&x.device()) && !x.device().is_autodiff();
        if !padded && !on_rows {
            return self.forward_layout(x, layout, false).0.select(0, first);
        }
        if let ([group], None, true) = (
            layout.groups.as_slice(),
            &layout.unpad,
            self.reassociates(&x.device()),
        ) {
            let x_first = x.clone().select(0, first);
            let q = lora::linear(&self.query, x_first.clone());
            let context = self.attend_first_reassociated(x, q, group);
            return fused::residual_layer_norm(
                lora::linear(&self.output, context),
                x_first,
                &self.layer_norm,
                self.layer_norm_eps,
                &self.dropout,
            );
        }
        let k = lora::linear(&self.key, x.clone());
        let v = lora::linear(&self.value, x.clone());
        let x_first = x.clone().select(0, first.clone());
        let q = lora::linear(&self.query, x_first.clone());
        let Some(context) = self.attend_first([q, k, v], layout) else {
            return self.forward_layout(x, layout, false).0.select(0, first);
        };
        fused::residual_layer_norm(
            lora::linear(&self.output, context),
            x_first,
            &self.layer_norm,
            self.layer_norm_eps,
            &self.dropout,
        )
    }

    /// The context of each sequence's first row, `[batch, hidden]`, from its
    /// query `q` (`[batch, hidden]`) and every row's keys and values: on the
    /// flex device without autodiff straight from the rows, on a padded
    /// layout otherwise with burn's ops (autodiff: integrated gradients).
    /// `None` on packed rows where the rows' kernel does not apply.
    fn attend_first(&self, [q, k, v]: [Tensor<2>; 3], layout: &Layout) -> Option<Tensor<2>> {
        let heads = self.num_heads;
        let group = match (layout.groups.as_slice(), &layout.unpad) {
            ([group], None) => Some(group),
            _ => None,
        };
        let rows = match group {
            _ if !layout.sequences.is_empty() => Some((layout.sequences.clone(), None)),
            Some(g) => Some((
                (0..g.batch).map(|b| (b * g.seq_len, g.seq_len)).collect(),
                Some(g.bias.clone()),
            )),
            None => None,
        };
        let [q, k, v] = match rows {
            Some((sequences, bias)) => {
                match host::attention_rows([q, k, v], &sequences, bias, heads, true) {
                    Ok(context) => return Some(context),
                    Err(qkv) => *qkv,
                }
            }
            None => [q, k, v],
        };
        let group = group?;
        let (batch, seq_len) = (group.batch, group.seq_len);
        let [_, hidden] = k.dims();
        let d_head = hidden / heads;
        let split = |t: Tensor<2>| t.reshape([batch, seq_len, heads, d_head]).swap_dims(1, 2);
        let q = q.reshape([batch, 1, heads, d_head]).swap_dims(1, 2);
        let scale = 1.0 / (d_head as f64).sqrt();
        let scores = q.matmul(split(k).swap_dims(2, 3)).mul_scalar(scale) + group.bias.clone();
        let probs = host::dropout(&self.attention_dropout, softmax(scores, 3));
        let context = probs.matmul(split(v));
        Some(context.swap_dims(1, 2).reshape([batch, hidden]))
    }

    /// Whether [`attend_first_reassociated`](Self::attend_first_reassociated)
    /// takes the first rows' attention on `device`: under autodiff (the flex
    /// device without it has the rows' kernel) on a frozen layer, as
    /// integrated gradients run (key and value weights that take no
    /// gradient, the attention dropout off: training keeps its rounding and
    /// its masks), the products in f32 (no autocast) and plain key and value
    /// weights (no LoRA adapter, no packed copy but the f32 one: its values
    /// are the weight's).
    fn reassociates(&self, device: &Device) -> bool {
        device.is_autodiff()
            && !host::Mask::active(&self.attention_dropout, device)
            && crate::lowp::autocast_precision() == crate::lowp::Precision::Fp32
            && [&self.key, &self.value].iter().all(|layer| {
                !layer.weight.val().is_require_grad()
                    && layer
                        .weight
                        .reparameterization::<lora::LoraAdapter>()
                        .is_none()
                    && layer
                        .weight
                        .reparameterization::<crate::lowp::LowpWeight>()
                        .is_none_or(|w| w.is_f32())
            })
    }

    /// The context `[batch, hidden]` of each sequence's first row from its
    /// query `q` (`[batch, hidden]`) and the group's rows `x` (`[batch ·
    /// seq_len, hidden]`, the layer's input), with the key and value
    /// projections reassociated through the one query: per head `h` (columns
    /// `c_h`), `q_h · (X W_k[:, c_h] + b_k[c_h])ᵀ = X (W_k[:, c_h] q_h) +
    /// b_k[c_h] · q_h`, and, the probabilities `p_h` summing to one,
    /// `p_h (X W_v[:, c_h] + b_v[c_h]) = (p_h X) W_v[:, c_h] + b_v[c_h]`.
    /// Per sequence of `n` rows that is `≈ 2·hidden² + 2·heads·hidden·n`
    /// multiply-adds instead of the `2·n·hidden²` of projecting every row's
    /// key and value: for integrated gradients' 50 rows of 64 tokens,
    /// ≈ 3% of MiniLM's products, forward and backward, and no per-head
    /// copies of the keys and values (eight alternating pairs of runs on the
    /// 2-core AMD EPYC: 4.5% less time on average, the pairs' ratios
    /// 0.84–1.10). The same sums in another order (f32 rounding apart, the
    /// context is the one [`attend_first`](Self::attend_first) computes).
    fn attend_first_reassociated(&self, x: Tensor<2>, q: Tensor<2>, group: &Group) -> Tensor<2> {
        let heads = self.num_heads;
        let (batch, seq_len) = (group.batch, group.seq_len);
        let [_, hidden] = x.dims();
        let d_head = hidden / heads;
        // `[heads, hidden, d_head]`: each head's columns of an `[in, out]`
        // weight.
        let by_head = |w: Tensor<2>| w.reshape([hidden, heads, d_head]).swap_dims(0, 1);
        let q = q.reshape([batch, heads, d_head]);
        // u[b, h] = W_k[:, c_h] q_h: `[heads, hidden, d]·[heads, d, batch]`.
        let u = by_head(self.key.weight.val())
            .matmul(q.clone().permute([1, 2, 0]))
            .permute([2, 0, 1]);
        let rows = x.reshape([batch, seq_len, hidden]);
        let mut scores = u.matmul(rows.clone().swap_dims(1, 2));
        if let Some(b) = &self.key.bias {
            let offset = (q * b.val().reshape([1, heads, d_head])).sum_dim(2);
            scores = scores + offset;
        }
        let scale = 1.0 / (d_head as f64).sqrt();
        let scores = scores.mul_scalar(scale) + group.bias.clone().reshape([batch, 1, seq_len]);
        // `[batch, heads, hidden]`, then each head through its value columns.
        let mixed = softmax(scores, 2).matmul(rows);
        let context = mixed
            .swap_dims(0, 1)
            .matmul(by_head(self.value.weight.val()))
            .swap_dims(0, 1)
            .reshape([batch, hidden]);
        match &self.value.bias {
            Some(b) => context + b.val().reshape([1, hidden]),
            None => context,
        }
    }

    /// Scaled dot-product attention of one padded group: `q`, `k`, `v` are
    /// the layer's rows `[rows, hidden]`, gathered into the group's slots;
    /// returns the context of the slots `[batch · seq_len, hidden]` and, when
    /// asked, the probabilities.
    fn attend(
        &self,
        q: Tensor<2>,
        k: Tensor<2>,
        v: Tensor<2>,
        group: &Group,
        want_probs: bool,
    ) -> (Tensor<2>, Option<Tensor<4>>) {
        let (batch, seq_len) = (group.batch, group.seq_len);
        let bias = group.bias.clone();
        let [_, hidden] = q.dims();
        let heads = self.num_heads;
        let d_head = hidden / heads;
        // [rows, hidden] → [batch, heads, seq_len, d_head] (a strided view;
        // packed rows are gathered into the group's padded slots first).
        let split = |t: Tensor<2>| {
            group
                .gather(t)
                .reshape([batch, seq_len, heads, d_head])
                .swap_dims(1, 2)
        };
        let device = q.device();
        if !want_probs && (device.is_autodiff() || host::is_flex(&device)) {
            // Training, explanations, and inference on the CPU: the same
            // eager attention, the scale, bias, softmax and dropout fused
            // between the two products; on the flex device one op each way,
            // every (sequence, head) pair a task reading its head in place
            // (burn-flex's own fused attention is a naive loop, ≈10% of an
            // inference batch, where these products run on the GEMM
            // kernels). On GPUs with autodiff, burn's ops.
            let [q, k, v] = [q, k, v].map(|t| group.gather(t));
            let context = fused::attention([q, k, v], bias, heads, &self.attention_dropout);
            return (context, None);
        }
        let (q, k, v) = (split(q), split(k), split(v));

        let scale = 1.0 / (d_head as f64).sqrt();
        let (context, probs) = if want_probs {
            // Explicit softmax: the probabilities are returned (before
            // dropout, as HF returns them). The 1/√d_head scale goes on the
            // scores, as HF's eager attention does.
            let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale) + bias;
            let probs = softmax(scores, 3);
            let context = host::dropout(&self.attention_dropout, probs.clone()).matmul(v);
            (context, Some(probs))
        } else {
            // On GPUs without autodiff, the backend's fused
            // scaled-dot-product attention (PyTorch's
            // `scaled_dot_product_attention`, which HF uses by default): the
            // same softmax(QKᵀ/√d + bias)V without materialising the scores
            // as a separate tensor. The bias is broadcast over heads.
            let bias = bias.expand([batch, 1, seq_len, seq_len]);
            let context = attention(q, k, v, None, Some(bias), AttentionModuleOptions::default());
            (context, None)
        };
        let context = context.swap_dims(1, 2).reshape([batch * seq_len, hidden]);
        (context, probs)
    }
}
