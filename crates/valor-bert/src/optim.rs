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
//!
//! On the flex CPU device the update itself is [`FusedAdamW`]: burn's
//! arithmetic in burn's order, but one pass over each parameter on all
//! threads instead of about twelve single-threaded element-wise ops (13%
//! of a MiniLM training step's CPU time at sequence length 64, all of it
//! on one thread). Its
//! state is burn's `AdamWState`, so optimizer records and checkpoints are
//! the same as burn's.

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::{
    AdamW as BurnAdamW, AdamWConfig as BurnAdamWConfig, AdamWState, AdaptiveMomentumState,
    GradientsParams, LearningRate, ModuleOptimizer, Optimizer,
};
use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::kernels::{self, AdamWStep, CHUNK};

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
        let build = |weight_decay: f64| FusedAdamW::new(&config, weight_decay);
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

/// burn's AdamW update (no AMSGrad, no cautious decay) with the same
/// state, computed in one parallel pass per parameter on the flex device
/// and by burn's `AdamW` everywhere else.
#[derive(Clone)]
struct FusedAdamW {
    burn: BurnAdamW,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
}

impl FusedAdamW {
    /// `config`'s update with weight decay `weight_decay` (0 for the
    /// exempt group). burn's `AdamW` keeps its hyperparameters private, so
    /// they are kept here too.
    fn new(config: &AdamWConfig, weight_decay: f64) -> Self {
        Self {
            burn: BurnAdamWConfig::new()
                .with_beta_1(config.beta1 as f32)
                .with_beta_2(config.beta2 as f32)
                .with_epsilon(config.eps as f32)
                .with_weight_decay(weight_decay as f32)
                .build(),
            beta1: config.beta1 as f32,
            beta2: config.beta2 as f32,
            eps: config.eps as f32,
            weight_decay: weight_decay as f32,
        }
    }
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let device = tensor.device();
        let plain_f32 = |t: &Tensor<D>| t.dtype() == DType::F32;
        if !crate::host::is_flex(&device)
            || !plain_f32(&tensor)
            || !plain_f32(&grad)
            || state.as_ref().is_some_and(|s| {
                s.momentum.max_moment_2.is_some()
                    || !plain_f32(&s.momentum.moment_1)
                    || !plain_f32(&s.momentum.moment_2)
            })
        {
            return self.burn.step(lr, tensor, grad, state);
        }
        let shape = tensor.shape();
        let grad = grad.into_data();
        let grad = grad.as_slice::<f32>().expect("an f32 gradient");
        // The first step starts the moments from the gradient; the zeros
        // are only buffers for the kernel to overwrite.
        let zeros = || TensorData::new(vec![0f32; grad.len()], shape.clone());
        let (time, first, mut m_data, mut v_data) = match state {
            Some(s) => (
                s.momentum.time + 1,
                false,
                s.momentum.moment_1.into_data(),
                s.momentum.moment_2.into_data(),
            ),
            None => (1, true, zeros(), zeros()),
        };
        let mut p_data = tensor.into_data();
        {
            let p = p_data.as_mut_slice::<f32>().expect("f32 parameters");
            let m = m_data.as_mut_slice::<f32>().expect("f32 moments");
            let v = v_data.as_mut_slice::<f32>().expect("f32 moments");
            // Scalars exactly as burn forms them.
            let t = time as i32;
            let decay_rate = lr * f64::from(self.weight_decay);
            let step = AdamWStep {
                beta1: self.beta1,
                beta2: self.beta2,
                correction1: 1f32 - self.beta1.powi(t),
                correction2: 1f32 - self.beta2.powi(t),
                eps: self.eps,
                lr: lr as f32,
                keep: (decay_rate != 0.0).then_some((1.0 - decay_rate) as f32),
                first,
            };
            p.par_chunks_mut(CHUNK)
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .zip(grad.par_chunks(CHUNK))
                .for_each(|(((p, m), v), g)| kernels::adamw(p, m, v, g, step));
        }
        let rebuild = |data: TensorData| Tensor::<D>::from_data(data, &device);
        let momentum = AdaptiveMomentumState {
            time,
            moment_1: rebuild(m_data),
            moment_2: rebuild(v_data),
            max_moment_2: None,
        };
        (rebuild(p_data), Some(AdamWState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <BurnAdamW as Optimizer>::to_device(state, device)
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

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    /// The parallel update is burn's update, bit for bit, with and without
    /// weight decay, over several steps (bias correction changes with t).
    #[test]
    fn fused_adamw_is_burns_adamw_bit_for_bit() {
        let device = Device::flex();
        let config = AdamWConfig::default();
        for weight_decay in [0.0, 0.01] {
            let fused = FusedAdamW::new(&config, weight_decay);
            let burn = fused.burn.clone();
            // Several parallel chunks and a ragged tail.
            let start = Tensor::<2>::random([123, 401], Distribution::Normal(0.0, 1.0), &device);
            let (mut p1, mut p2) = (start.clone(), start);
            let (mut s1, mut s2) = (None, None);
            for step in 0..4 {
                let grad = Tensor::<2>::random(
                    [123, 401],
                    Distribution::Normal(0.0, 0.1 * (step + 1) as f64),
                    &device,
                );
                let lr = 2e-3 / (step + 1) as f64;
                (p1, s1) = fused.step(lr, p1, grad.clone(), s1);
                (p2, s2) = burn.step(lr, p2, grad, s2);
            }
            let bits = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
            assert_eq!(bits(p1), bits(p2), "parameters, λ = {weight_decay}");
            let (s1, s2) = (s1.unwrap().momentum, s2.unwrap().momentum);
            assert_eq!(s1.time, s2.time);
            assert_eq!(bits(s1.moment_1), bits(s2.moment_1));
            assert_eq!(bits(s1.moment_2), bits(s2.moment_2));
        }
    }
}
