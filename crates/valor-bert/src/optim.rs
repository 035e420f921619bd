//! AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay
//! Regularization") with the exact update of `torch.optim.AdamW`, and
//! parameter groups for weight decay.
//!
//! PyTorch's step, per parameter `p` with gradient `g` at step `t`:
//! `p ← p · (1 − lr·λ)` (decoupled decay), `m ← β₁m + (1−β₁)g`,
//! `v ← β₂v + (1−β₂)g²`, `p ← p − lr · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)`.
//! burn 0.22's `burn::optim::AdamW` computes the same thing in the same
//! order (decay, then the bias-corrected step; ε added after the square
//! root) — checked against PyTorch by the five-step parity test — so this
//! module wraps it rather than re-implementing it, and inherits burn's
//! optimizer records for checkpoints. What it adds: PyTorch's defaults
//! (burn defaults ε to 1e-5 and λ to 1e-4, PyTorch to 1e-8 and 1e-2) and a
//! [`DecayMask`], because PyTorch decays every parameter given to it while
//! BERT fine-tuning recipes exempt biases and LayerNorm weights.
//!
//! How training works in burn 0.22: build the model on an autodiff device
//! (`device.autodiff()`, see [`autodiff_device`](crate::autodiff_device)),
//! compute a loss, `loss.backward()` gives `Gradients`,
//! `GradientsParams::from_grads(grads, &model)` ties them to parameter ids,
//! and [`AdamW::step`] returns the updated model (modules are values).

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::{AdamWConfig as BurnAdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// Which parameters weight decay applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecayMask {
    /// Every parameter (what `torch.optim.AdamW(model.parameters())` does).
    #[default]
    All,
    /// All but biases and LayerNorm weights (the usual BERT fine-tuning
    /// recipe, HF `Trainer`'s default grouping).
    ExceptBiasAndLayerNorm,
}

/// AdamW hyperparameters; defaults are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub decay_mask: DecayMask,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            decay_mask: DecayMask::All,
        }
    }
}

/// PyTorch-exact AdamW over a module's parameters.
#[derive(Clone)]
pub struct AdamW {
    config: AdamWConfig,
    inner: ModuleOptimizer,
    no_decay: usize,
}

impl std::fmt::Debug for AdamW {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdamW")
            .field("config", &self.config)
            .field("no_decay_params", &self.no_decay)
            .finish_non_exhaustive()
    }
}

impl AdamW {
    /// An optimizer for `model`'s parameters (the model is read only to
    /// resolve the decay mask to parameter ids).
    pub fn new<M: Module>(config: AdamWConfig, model: &M) -> Self {
        let build = |weight_decay: f64| {
            BurnAdamWConfig::new()
                .with_beta_1(config.beta1 as f32)
                .with_beta_2(config.beta2 as f32)
                .with_epsilon(config.eps as f32)
                .with_weight_decay(weight_decay as f32)
                .build()
        };
        let mut inner = ModuleOptimizer::from(build(config.weight_decay));
        let mut no_decay = 0;
        if config.decay_mask == DecayMask::ExceptBiasAndLayerNorm {
            let ids = no_decay_ids(model);
            no_decay = ids.len();
            inner = inner.with_group(ParamGroup::from_ids(ids), build(0.0), None);
        }
        Self {
            config,
            inner,
            no_decay,
        }
    }

    /// One update with learning rate `lr`; returns the updated model.
    pub fn step<M: Module>(&mut self, model: M, grads: GradientsParams, lr: f64) -> M {
        self.inner.step(lr, model, grads)
    }

    /// The hyperparameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// Number of parameters exempt from weight decay.
    pub fn no_decay_params(&self) -> usize {
        self.no_decay
    }

    /// burn's optimizer, for records (`to_record`, `load_record`, `save`).
    pub fn inner(&self) -> &ModuleOptimizer {
        &self.inner
    }

    /// Replaces burn's optimizer state (e.g. loaded from a checkpoint record).
    pub fn with_inner(mut self, inner: ModuleOptimizer) -> Self {
        self.inner = inner;
        self
    }
}

/// Gradients of `loss` for `model`'s parameters (consumes the graph).
pub fn gradients<M: Module>(loss: &Tensor<1>, model: &M) -> GradientsParams {
    GradientsParams::from_grads(loss.backward(), model)
}

/// Ids of biases and LayerNorm parameters (paths ending in `bias`, or
/// inside a LayerNorm: `gamma`/`beta`).
fn no_decay_ids<M: Module>(model: &M) -> Vec<ParamId> {
    struct Ids {
        path: Vec<String>,
        ids: Vec<ParamId>,
    }
    impl ModuleVisitor for Ids {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let last = self.path.last().map_or("", String::as_str);
            let in_norm = self
                .path
                .iter()
                .any(|p| p.contains("layer_norm") || p.contains("LayerNorm"));
            if last == "bias" || last == "beta" || last == "gamma" || in_norm {
                self.ids.push(param.id);
            }
        }
    }
    let mut v = Ids {
        path: Vec::new(),
        ids: Vec::new(),
    };
    model.visit(&mut v);
    v.ids
}
