//! Parameter initialisation as HF's `BertPreTrainedModel._init_weights`:
//! linear and embedding weights from `N(0, initializer_range)`, biases zero,
//! LayerNorm weight one and bias zero, the padding row of the word
//! embeddings zero.
//!
//! Parameters are lazy (burn's `Param::uninitialized`): a model built only to
//! receive checkpoint weights never draws random numbers for them.
//! [`materialize`] forces every parameter in module order, so a model drawn
//! right after `device.seed(seed)` is reproducible whatever runs next.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Device, Distribution, Shape, Tensor};

/// A lazily drawn `N(0, std)` parameter.
pub(crate) fn normal<const D: usize>(
    shape: [usize; D],
    std: f64,
    device: &Device,
) -> Param<Tensor<D>> {
    Param::uninitialized(
        ParamId::new(),
        move |device, require_grad| {
            let t = Tensor::<D>::random(shape, Distribution::Normal(0.0, std), device);
            if require_grad { t.require_grad() } else { t }
        },
        device.clone(),
        true,
        Shape::new(shape),
    )
}

/// A lazily drawn `N(0, std)` table `[n, d]` whose row `zero_row` is then
/// set to zero (HF zeroes the `padding_idx` row of `nn.Embedding`).
fn normal_table(
    n: usize,
    d: usize,
    std: f64,
    zero_row: Option<usize>,
    device: &Device,
) -> Param<Tensor<2>> {
    Param::uninitialized(
        ParamId::new(),
        move |device, require_grad| {
            let mut t = Tensor::<2>::random([n, d], Distribution::Normal(0.0, std), device);
            if let Some(row) = zero_row.filter(|&r| r < n) {
                t = t.slice_fill([row..row + 1, 0..d], 0.0);
            }
            if require_grad { t.require_grad() } else { t }
        },
        device.clone(),
        true,
        Shape::new([n, d]),
    )
}

/// A lazily created all-zero parameter.
pub(crate) fn zeros<const D: usize>(shape: [usize; D], device: &Device) -> Param<Tensor<D>> {
    Param::uninitialized(
        ParamId::new(),
        move |device, require_grad| {
            let t = Tensor::<D>::zeros(shape, device);
            if require_grad { t.require_grad() } else { t }
        },
        device.clone(),
        true,
        Shape::new(shape),
    )
}

/// A dense layer `d_input → d_output` (weight stored `[d_input, d_output]`,
/// burn's row layout; HF stores the transpose).
pub(crate) fn linear(d_input: usize, d_output: usize, std: f64, device: &Device) -> Linear {
    Linear {
        weight: normal([d_input, d_output], std, device),
        bias: Some(zeros([d_output], device)),
    }
}

/// An embedding table `[n, d]`.
pub(crate) fn embedding(
    n: usize,
    d: usize,
    std: f64,
    padding_idx: Option<usize>,
    device: &Device,
) -> Embedding {
    Embedding {
        weight: normal_table(n, d, std, padding_idx, device),
    }
}

/// LayerNorm over `d` features with HF's epsilon from the config.
pub(crate) fn layer_norm(d: usize, eps: f64, device: &Device) -> LayerNorm {
    LayerNormConfig::new(d).with_epsilon(eps).init(device)
}

/// Forces every lazy parameter, in module order.
pub(crate) fn materialize<M: Module>(module: &M) {
    struct Touch;
    impl ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
}
