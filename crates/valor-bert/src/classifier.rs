//! Sequence classification head (Devlin et al. 2019, §4.1: a linear layer
//! over the pooled `[CLS]` representation), as HF
//! `BertForSequenceClassification`: `classifier(dropout(pooler_output))`,
//! the dropout being `classifier_dropout` or else `hidden_dropout_prob`.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor};

use crate::attention::mask_bias;
use crate::config::BertConfig;
use crate::input::BertInput;
use crate::model::{BertModel, BertOutput, ForwardOptions, mean_pooled_embedding};
use crate::packed::{Layout, PackedInput};
use crate::{host, init};

/// BERT with a classification head over `num_labels` classes.
#[derive(Module, Debug)]
pub struct BertForSequenceClassification {
    pub bert: BertModel,
    pub dropout: Dropout,
    /// `[hidden, num_labels]` (burn layout; HF stores the transpose).
    pub classifier: Linear,
}

impl BertConfig {
    /// A freshly initialised classifier (HF's `_init_weights`: normal weights
    /// with `initializer_range`, zero biases, unit LayerNorms). Draws from
    /// burn's generator for the device: call `device.seed(seed)` first for a
    /// reproducible model. Every parameter is drawn here, in module order.
    /// (On the CPU backend that generator is process-wide: threads drawing at
    /// the same time interleave their draws.) The configuration should have
    /// passed [`validate`](Self::validate), as parsed and preset ones have.
    pub fn init_classifier(&self, device: &Device) -> BertForSequenceClassification {
        let model = BertForSequenceClassification::init_lazy(self, device);
        init::materialize(&model);
        model
    }

    /// [`init_classifier`](Self::init_classifier) after seeding the device's generator.
    pub fn init_classifier_seeded(
        &self,
        device: &Device,
        seed: u64,
    ) -> BertForSequenceClassification {
        device.seed(seed);
        self.init_classifier(device)
    }
}

impl BertForSequenceClassification {
    /// The module tree with lazy parameters (drawn on first use).
    pub(crate) fn init_lazy(config: &BertConfig, device: &Device) -> Self {
        Self {
            bert: BertModel::init(config, device),
            dropout: DropoutConfig::new(config.effective_classifier_dropout()).init(),
            classifier: init::linear(
                config.hidden_size,
                config.num_labels,
                config.initializer_range,
                device,
            ),
        }
    }

    /// Logits `[batch, num_labels]`, with the last layer computed for the
    /// `[CLS]` rows alone, as in
    /// [`logits_from_embeddings`](Self::logits_from_embeddings): inference,
    /// and training, whose dropout masks in that layer are drawn over the
    /// `[CLS]` rows' tensors (a classifier reads nothing else of it).
    ///
    /// Without autodiff on the CPU the pass runs on a worker of rayon's
    /// pool ([`host::on_workers`]).
    pub fn forward(&self, input: BertInput) -> Tensor<2> {
        let device = input.input_ids.device();
        host::on_workers(&device, || {
            let emb = self
                .bert
                .embeddings
                .forward(input.input_ids, input.token_type_ids);
            self.logits_from_embeddings(emb, input.attention_mask)
        })
    }

    /// Logits `[batch, num_labels]` of a packed batch: what
    /// [`forward`](Self::forward) gives on the same sequences padded, with
    /// no padding positions computed outside attention (see
    /// [`crate::packed`]). For inference: no hidden states or attentions.
    /// On the CPU the pass runs on a worker of rayon's pool
    /// ([`host::on_workers`]).
    pub fn forward_packed(&self, input: &PackedInput) -> Tensor<2> {
        host::on_workers(&input.input_ids.device(), || {
            let emb = self.bert.embeddings.forward_packed(
                input.input_ids.clone(),
                input.token_type_ids.clone(),
                input.position_ids.clone(),
            );
            self.classify_first(self.bert.encoder.forward_first(
                emb,
                &input.layout,
                input.first.clone(),
            ))
        })
    }

    /// Logits `[batch, num_labels]` from an embeddings output `[batch,
    /// seq_len, hidden]`: [`forward_from_embeddings`](Self::forward_from_embeddings)'s
    /// logits, with the last layer computed for the `[CLS]` rows alone
    /// (keys and values for every row), all the head reads (with dropout
    /// active, that layer's masks are drawn over the smaller tensors, so
    /// they differ from the full forward's).
    pub fn logits_from_embeddings(
        &self,
        embeddings: Tensor<3>,
        attention_mask: Tensor<2, Int>,
    ) -> Tensor<2> {
        let [batch, seq_len, hidden] = embeddings.dims();
        let (layout, first) = padded_first_rows(attention_mask);
        let rows = embeddings.reshape([batch * seq_len, hidden]);
        self.classify_first(self.bert.encoder.forward_first(rows, &layout, first))
    }

    /// [`logits_from_embeddings`](Self::logits_from_embeddings) of the `k`
    /// embeddings outputs `base + α_i · delta` (`base`, `delta`: `[1,
    /// seq_len, hidden]`, `alphas`: `[k]`, `attention_mask`: `[k,
    /// seq_len]`), with the first layer's projections computed on `base`
    /// and `base + delta` alone: for integrated gradients, the gradient
    /// reaching `delta` being `Σ α_i ∂/∂x` of the rows' logits.
    pub fn logits_from_interpolation(
        &self,
        base: Tensor<3>,
        delta: Tensor<3>,
        alphas: Tensor<1>,
        attention_mask: Tensor<2, Int>,
    ) -> Tensor<2> {
        let [_, seq_len, hidden] = base.dims();
        let (layout, first) = padded_first_rows(attention_mask);
        let ends = [base, delta].map(|t| t.reshape([seq_len, hidden]));
        self.classify_first(
            self.bert
                .encoder
                .forward_first_interpolated(ends, alphas, &layout, first),
        )
    }

    /// Logits from the last layer's `[CLS]` rows `[batch, hidden]`.
    fn classify_first(&self, cls: Tensor<2>) -> Tensor<2> {
        self.head(self.bert.pooler.forward_first(cls))
    }

    /// Logits plus the pooled output, the sentence embedding and, on request,
    /// every hidden state and attention map.
    pub fn forward_full(&self, input: BertInput, opts: ForwardOptions) -> BertOutput {
        let emb = self
            .bert
            .embeddings
            .forward(input.input_ids, input.token_type_ids);
        self.forward_from_embeddings(emb, input.attention_mask, opts)
    }

    /// The output of `bert.embeddings` for `input` (the layer Captum's
    /// `LayerIntegratedGradients` attributes to).
    pub fn embed(&self, input_ids: Tensor<2, Int>, token_type_ids: Tensor<2, Int>) -> Tensor<3> {
        self.bert.embeddings.forward(input_ids, token_type_ids)
    }

    /// Everything after the embeddings: encoder, pooler, head, from a given
    /// embeddings output `[batch, seq_len, hidden]`.
    ///
    /// For gradients with respect to the embeddings (integrated gradients):
    /// keep the model on an autodiff device but `freeze()` it (no parameter
    /// gradients, dropout off), mark the interpolated embeddings with
    /// `require_grad()`, and read `embeddings.grad(&logit.backward())`.
    pub fn forward_from_embeddings(
        &self,
        embeddings: Tensor<3>,
        attention_mask: Tensor<2, Int>,
        opts: ForwardOptions,
    ) -> BertOutput {
        let base = self
            .bert
            .forward_from_embeddings(embeddings, attention_mask.clone(), opts);
        let logits = self.head(base.pooled.clone());
        let sentence_embedding =
            mean_pooled_embedding(base.last_hidden_state.clone(), attention_mask);
        BertOutput {
            logits,
            last_hidden_state: base.last_hidden_state,
            pooled: base.pooled,
            sentence_embedding,
            hidden_states: base.hidden_states,
            attentions: base.attentions,
        }
    }

    fn head(&self, pooled: Tensor<2>) -> Tensor<2> {
        self.classifier
            .forward(host::dropout(&self.dropout, pooled))
    }

    /// Number of classes of the head.
    pub fn num_labels(&self) -> usize {
        self.classifier.weight.lazy_shape().dims::<2>()[1]
    }
}

/// The layout of a padded batch with `attention_mask` `[batch, seq_len]`,
/// and each sequence's first row (`b · seq_len`).
fn padded_first_rows(attention_mask: Tensor<2, Int>) -> (Layout, Tensor<1, Int>) {
    let [batch, seq_len] = attention_mask.dims();
    let device = attention_mask.device();
    let first = Tensor::<1, Int>::arange_step(0..(batch * seq_len) as i64, seq_len, &device);
    (
        Layout::padded(batch, seq_len, mask_bias(attention_mask)),
        first,
    )
}

/// Mean cross-entropy of `logits` `[batch, classes]` against integer
/// `labels` `[batch]`, as `torch.nn.functional.cross_entropy` with
/// `reduction="mean"` (what HF computes when given `labels`). Returns a
/// one-element tensor.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [batch, _] = logits.dims();
    let picked = log_softmax(logits, 1).gather(1, labels.reshape([batch, 1]));
    picked.mean().neg()
}
