//! Low-precision inference on the CPU: the encoder's Linear layers in int8
//! or bf16 through [`valor_kernels`], everything else as before.
//!
//! [`Precision::Int8`] is PyTorch's `quantize_dynamic(model, {nn.Linear},
//! qint8)` in kind: each Linear weight symmetric int8 with one scale per
//! output channel, each activation row quantised on the fly (one scale per
//! row; PyTorch uses one per tensor), `u8 × i8 → i32` products on
//! AVX512-VNNI. [`Precision::Bf16`] is `torch.autocast("cpu",
//! dtype=torch.bfloat16)` for the Linear layers: weights and activations
//! rounded to bf16, products accumulated in f32 on AVX512-BF16. Both have a
//! scalar fallback chosen at run time (see [`valor_kernels`]). Attention
//! products, softmax, layer norm, GELU, the embeddings, the pooler and the
//! classification head stay f32, as under autocast (which also keeps
//! softmax and layer norm in f32) and `quantize_dynamic` on the encoder.
//!
//! At [`Precision::Fp32`], on CPUs with AVX-512F, [`apply`] packs the
//! f32 weights as they are ([`valor_kernels::PackedF32`]): the same
//! products as the `gemm` crate's, in another order, without its packing of
//! each weight at every call (17% of a one-sentence forward; with the
//! packed weights one sentence takes 20–35% less time on the 2-core AMD
//! EPYC, 32 sentences 5–11%). It costs a second copy of those weights in
//! memory (≈ 85 MB for MiniLM-L6). Frozen layers under autodiff
//! (integrated gradients) take it too, and its transpose for `dY·Wᵀ`.
//!
//! [`apply`] packs every encoder Linear weight once (at int8, a weight
//! loaded from a `valor quantize` folder and unchanged since packs its
//! stored integers and scales, [`crate::quant::StoredInt8`], rather than
//! being quantised again) and attaches it to the
//! weight's [`Param`] as a burn [`Reparameterization`] ([`LowpWeight`])
//! whose value is the f32 weight unchanged; [`linear`] (called for every
//! encoder Linear through [`crate::lora::linear`]) runs the packed kernel
//! when the input sits on the flex device without autodiff, an unpacked f32
//! layer there as one `gemm` call onto its bias
//! ([`valor_kernels::linear_f32`]), and burn's f32 `Linear` everywhere
//! else (with autodiff, on GPUs). So a model with packed weights still
//! trains, differentiates and saves as the f32 model it was; the packed
//! weights are a property of inference on the CPU only (training and
//! explanations take bf16 through [`autocast`], below).
//!
//! [`autocast`] is the same switch for training and integrated gradients
//! (`torch.autocast` around the forward pass): while it runs at
//! [`Precision::Bf16`], every encoder Linear on the flex device with
//! autodiff multiplies in bf16 with f32 accumulation, forward and
//! backward (`dX = dY·Wᵀ`, `dW = Xᵀ·dY`, packed from the f32 master
//! weight and activations at each step); the bias gradient, the f32
//! master weights, the optimizer and everything outside the Linear layers
//! stay f32.
//!
//! Tolerances (MiniLM-L6 with the hf-parity fixture head, the ten parity
//! sentences; `tests/it/lowp.rs`): logits within 0.01 of f32 for bf16
//! (measured 0.0018 on the AVX-512 FMA kernel, 0.0023 on AMX; PyTorch's
//! bf16 autocast 0.004) and within 0.1 for int8
//! (measured 0.066; PyTorch's `quantize_dynamic` 0.185, which flips 2 of
//! the 10 predictions), and every predicted class kept.

use std::sync::Arc;

use burn::module::{Module, Param, Reparameterization, Reparameterizer};
use burn::nn::Linear;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use valor_kernels::{PackedBf16, PackedF32, PackedI8};

use crate::classifier::BertForSequenceClassification;
use crate::error::{Error, Result};

/// The arithmetic of the encoder's Linear layers at inference on the CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 weights and products (burn's GEMM): the reference.
    #[default]
    Fp32,
    /// On the CPU, bf16 weights and activations with f32 accumulation in
    /// the encoder's Linear layers; on a GPU backend, the device's float
    /// dtype ([`crate::GpuPrecision::Bf16`]).
    Bf16,
    /// The device's float dtype f16 on a GPU backend
    /// ([`crate::GpuPrecision::F16`]); refused on the CPU.
    F16,
    /// int8 weights per output channel, int8 activations per row, i32
    /// accumulation.
    Int8,
}

impl Precision {
    /// The name `--precision` takes.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
            Precision::Int8 => "int8",
        }
    }

    /// The instruction set its CPU kernels run on here at inference (for
    /// f32 `avx512-fma`, the packed weights of [`apply`], or `burn-flex`
    /// on CPUs without AVX-512: the `gemm` crate burn-flex runs, called
    /// directly; f16 has none: it is a GPU precision).
    pub fn kernel(self) -> &'static str {
        match self {
            Precision::Fp32 => match valor_kernels::Isa::detect_f32() {
                valor_kernels::Isa::Scalar => "burn-flex",
                isa => isa.name(),
            },
            Precision::Bf16 => valor_kernels::Isa::detect_bf16().name(),
            Precision::F16 => "none (a GPU precision)",
            Precision::Int8 => valor_kernels::Isa::detect_int8().name(),
        }
    }

    /// The float dtype it selects on a GPU backend: fp32, bf16 and f16 are
    /// the device's whole-model dtype ([`crate::configure_precision`]);
    /// int8 has none (its kernels are the CPU's).
    pub fn gpu(self) -> Option<crate::GpuPrecision> {
        match self {
            Precision::Fp32 => Some(crate::GpuPrecision::Fp32),
            Precision::Bf16 => Some(crate::GpuPrecision::Bf16),
            Precision::F16 => Some(crate::GpuPrecision::F16),
            Precision::Int8 => None,
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" | "f32" => Ok(Precision::Fp32),
            "bf16" => Ok(Precision::Bf16),
            "f16" | "fp16" => Ok(Precision::F16),
            "int8" => Ok(Precision::Int8),
            _ => Err(format!(
                "unknown precision `{s}`; expected fp32, bf16, f16 (GPU backends) or int8 (CPU)"
            )),
        }
    }
}

/// A packed weight: one of the kernels' layouts.
#[derive(Debug)]
pub(crate) enum Packed {
    Int8(PackedI8),
    Bf16(PackedBf16),
    /// The f32 weight, and its transpose packed at the first backward pass
    /// through a frozen layer (integrated gradients).
    F32(PackedF32, std::sync::OnceLock<PackedF32>),
}

impl Packed {
    /// `x · Wᵀ + bias` for `m` rows of `x`, into a new `[m, n]` vector
    /// written once by the kernel's tasks (no zeroed buffer first).
    fn linear(&self, x: &[f32], m: usize, bias: Option<&[f32]>) -> Vec<f32> {
        let done = match self {
            Packed::Int8(p) => p.linear_new(x, m, bias),
            Packed::Bf16(p) => p.linear_new(x, m, bias),
            Packed::F32(p, _) => p.linear_new(x, m, bias),
        };
        // Shapes were checked by the caller (burn's tensor shapes).
        done.expect("low-precision linear: shapes checked by the caller")
    }

    /// `x · W + bias` (`x` `[m, k]`, burn's layout) from the packed f32
    /// weight; `None` for the other precisions.
    pub(crate) fn f32_linear(&self, x: &[f32], m: usize, bias: Option<&[f32]>) -> Option<Vec<f32>> {
        match self {
            Packed::F32(p, _) => Some(
                p.linear_new(x, m, bias)
                    .expect("packed f32 linear: shapes checked by the caller"),
            ),
            _ => None,
        }
    }

    /// `dY · Wᵀ` (`dY` `[m, n]`) from the transposed packed f32 weight
    /// (packed at the first call); `None` for the other precisions.
    pub(crate) fn f32_input_gradient(&self, dy: &[f32], m: usize) -> Option<Vec<f32>> {
        match self {
            Packed::F32(p, t) => Some(
                t.get_or_init(|| p.transposed())
                    .linear_new(dy, m, None)
                    .expect("packed f32 gradient: shapes from the forward pass"),
            ),
            _ => None,
        }
    }

    fn out_features(&self) -> usize {
        match self {
            Packed::Int8(p) => p.out_features(),
            Packed::Bf16(p) => p.out_features(),
            Packed::F32(p, _) => p.out_features(),
        }
    }

    fn in_features(&self) -> usize {
        match self {
            Packed::Int8(p) => p.in_features(),
            Packed::Bf16(p) => p.in_features(),
            Packed::F32(p, _) => p.in_features(),
        }
    }
}

/// The packed low-precision copy of a Linear weight, attached to the
/// weight's [`Param`]; its value is the f32 weight unchanged.
#[derive(Module, Debug)]
pub struct LowpWeight {
    #[module(skip)]
    packed: Arc<Packed>,
}

impl LowpWeight {
    /// Whether the packed copy is the f32 weight itself (fp32 inference),
    /// which frozen layers also use under autodiff.
    pub(crate) fn is_f32(&self) -> bool {
        matches!(*self.packed, Packed::F32(..))
    }
}

impl Reparameterization for LowpWeight {
    const NAME: &'static str = "lowp";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        base
    }
}

/// Packs the weights of every encoder Linear layer of `model` in
/// `precision` (at [`Precision::Fp32`] only on CPUs with AVX-512F, and
/// never a weight with a LoRA adapter) and returns the model with the
/// packed weights attached. Refuses to pack a weight with a LoRA adapter in
/// bf16 or int8 (merge it first).
pub fn apply(
    model: BertForSequenceClassification,
    precision: Precision,
) -> Result<BertForSequenceClassification> {
    match precision {
        // Without AVX-512 the `gemm` crate's AVX2 kernels stay.
        Precision::Fp32 if valor_kernels::Isa::detect_f32() == valor_kernels::Isa::Scalar => {
            return Ok(model);
        }
        Precision::F16 => {
            return Err(Error::PrecisionBackend {
                precision: precision.name(),
            });
        }
        Precision::Fp32 | Precision::Bf16 | Precision::Int8 => {}
    }
    // Weights loaded from a quantised folder carry their stored integers;
    // take them off (burn would keep them over the packed weights).
    let (model, stored) = crate::quant::take_stored(model);
    let mut pack = Pack {
        precision,
        stored,
        error: None,
    };
    let model = model.apply_reparameterization(&mut pack);
    match pack.error {
        Some(e) => Err(e),
        None => Ok(model),
    }
}

/// How many Linear weights of `model` carry a packed copy.
pub fn packed_count(model: &BertForSequenceClassification) -> usize {
    crate::quant::encoder_linears(model)
        .filter(|lin| lin.weight.reparameterization::<LowpWeight>().is_some())
        .count()
}

struct Pack {
    precision: Precision,
    /// Stored int8 forms of a quantised folder's weights, by parameter id.
    stored: std::collections::HashMap<burn::module::ParamId, Arc<crate::quant::Int8Weight>>,
    error: Option<Error>,
}

impl Reparameterizer for &mut Pack {
    type Reparam = LowpWeight;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<LowpWeight>) {
        if D != 2 || !path.contains("encoder.") || !path.ends_with("weight") {
            return (param, None);
        }
        if param
            .reparameterization::<crate::lora::LoraAdapter>()
            .is_some()
        {
            if self.precision == Precision::Fp32 {
                // Nothing to refuse: the adapter's layer keeps the f32
                // product it had.
                return (param, None);
            }
            self.error.get_or_insert(Error::Pack {
                name: path.to_string(),
                precision: self.precision.name(),
                message: "the weight carries a LoRA adapter; merge it first (`valor merge`)"
                    .to_string(),
            });
            return (param, None);
        }
        // burn's Linear weight is `[in, out]`; the kernels take HF's
        // `[out, in]`.
        let w = param.val();
        let [k, n] = [w.dims()[0], w.dims()[1]];
        let values = match w.into_data().convert::<f32>().try_into_vec::<f32>() {
            Ok(v) => v,
            Err(e) => {
                self.error.get_or_insert(Error::TensorRead {
                    name: path.to_string(),
                    message: format!("{e:?}"),
                });
                return (param, None);
            }
        };
        if self.precision == Precision::Fp32 {
            // The transpose read through strides, each panel row one run.
            let packed =
                PackedF32::pack_strided(valor_kernels::MatRef::row_major(&values, k, n).t())
                    .map(|p| Packed::F32(p, std::sync::OnceLock::new()));
            return self.attach(path, param, packed);
        }
        let mut t = vec![0f32; n * k];
        for i in 0..k {
            for o in 0..n {
                t[o * k + i] = values[i * n + o];
            }
        }
        // A weight loaded from a quantised folder (`valor quantize`) and
        // unchanged since packs its stored integers and scales, as they are.
        let stored = self
            .stored
            .get(&param.id)
            .filter(|w| w.rows == n && w.cols == k && w.matches(&t));
        let packed = match (self.precision, stored) {
            (Precision::Int8, Some(w)) => {
                PackedI8::from_quantized(&w.q, &w.scales, n, k).map(Packed::Int8)
            }
            (Precision::Int8, None) => PackedI8::pack(&t, n, k).map(Packed::Int8),
            (Precision::Bf16, _) => PackedBf16::pack(&t, n, k).map(Packed::Bf16),
            (Precision::Fp32 | Precision::F16, _) => return (param, None),
        };
        self.attach(path, param, packed)
    }
}

impl Pack {
    /// `param` with the packed weight attached, or unchanged with the
    /// packing's error kept (the first one).
    fn attach<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
        packed: std::result::Result<Packed, valor_kernels::ShapeError>,
    ) -> (Param<Tensor<D>>, Option<LowpWeight>) {
        match packed {
            Ok(p) => (
                param,
                Some(LowpWeight {
                    packed: Arc::new(p),
                }),
            ),
            Err(e) => {
                self.error.get_or_insert(Error::Pack {
                    name: path.to_string(),
                    precision: self.precision.name(),
                    message: e.to_string(),
                });
                (param, None)
            }
        }
    }
}

thread_local! {
    /// The precision [`autocast`] set on this thread.
    static AUTOCAST: std::cell::Cell<Precision> = const { std::cell::Cell::new(Precision::Fp32) };
}

/// Runs `f` with the products of the encoder's Linear layers under
/// autodiff on the CPU in `precision`, as `torch.autocast("cpu",
/// dtype=torch.bfloat16)` does around a forward pass: at
/// [`Precision::Bf16`] each such layer rounds its weight and input to
/// bf16 and accumulates in f32, and its backward pass (whenever it runs)
/// does the same for both products; at [`Precision::Fp32`] nothing
/// changes. The setting belongs to the calling thread and is restored
/// when `f` returns or panics. Inference without autodiff is not affected
/// (it takes packed weights, [`apply`]); nor are other devices (a GPU's
/// precision is its float dtype). int8 and f16 are refused.
pub fn autocast<T>(precision: Precision, f: impl FnOnce() -> T) -> Result<T> {
    if !matches!(precision, Precision::Fp32 | Precision::Bf16) {
        return Err(Error::PrecisionNotDifferentiable {
            precision: precision.name(),
        });
    }
    struct Restore(Precision);
    impl Drop for Restore {
        fn drop(&mut self) {
            AUTOCAST.with(|a| a.set(self.0));
        }
    }
    let _restore = Restore(AUTOCAST.with(|a| a.replace(precision)));
    Ok(f())
}

/// The precision [`autocast`] set on this thread ([`Precision::Fp32`]
/// outside it).
pub fn autocast_precision() -> Precision {
    AUTOCAST.with(std::cell::Cell::get)
}

/// Whether the low-precision kernels run on `device`: burn's flex CPU
/// device without autodiff.
pub fn runs_on(device: &burn::tensor::Device) -> bool {
    crate::host::is_flex(device) && !device.is_autodiff()
}

/// `layer.forward(x)`, with the packed low-precision weight when `layer`
/// has one and `x` sits on the flex device without autodiff; without one,
/// on that device, the f32 product as one GEMM onto the bias
/// ([`valor_kernels::linear_f32`]: burn-flex zeroes, copies and then adds
/// the bias on one thread, 16% of a MiniLM inference batch); with
/// autodiff (training, integrated gradients), [`crate::fused::linear`],
/// in bf16 inside [`autocast`].
pub(crate) fn linear(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    #[cfg(feature = "flex")]
    if crate::host::is_flex(&x.device())
        && !x.is_autodiff()
        && x.dtype() == burn::tensor::DType::F32
        && let Some(lowp) = layer.weight.reparameterization::<LowpWeight>()
        && x.dims()[1] == lowp.packed.in_features()
    {
        let bias = layer.bias.as_ref().and_then(|b| {
            b.val()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .ok()
        });
        return Tensor::from_dispatch(<burn::backend::Dispatch as flex::Lowp>::lowp_linear(
            x.into_dispatch(),
            lowp.packed.clone(),
            bias,
        ));
    }
    #[cfg(feature = "flex")]
    if crate::host::is_flex(&x.device()) && x.dtype() == burn::tensor::DType::F32 {
        let weight = layer.weight.val();
        if let Some(bias) = layer.bias.as_ref().map(|b| b.val())
            && weight.dtype() == burn::tensor::DType::F32
            && bias.dtype() == burn::tensor::DType::F32
            && x.dims()[1] == weight.dims()[0]
            && bias.dims()[0] == weight.dims()[1]
        {
            let autodiff = [x.is_autodiff(), weight.is_autodiff(), bias.is_autodiff()];
            if autodiff == [false; 3] {
                return Tensor::from_dispatch(<burn::backend::Dispatch as flex::Lowp>::f32_linear(
                    x.into_dispatch(),
                    weight.into_dispatch(),
                    bias.into_dispatch(),
                ));
            }
            if autodiff == [true; 3] {
                let bf16 = autocast_precision() == Precision::Bf16;
                // A frozen layer (integrated gradients) with its f32 weight
                // packed: `x·W` and `dY·Wᵀ` on the packed kernel.
                let frozen = layer
                    .weight
                    .reparameterization::<LowpWeight>()
                    .filter(|w| {
                        !bf16
                            && w.is_f32()
                            && !weight.is_require_grad()
                            && w.packed.in_features() == x.dims()[1]
                    })
                    .map(|w| w.packed.clone());
                return crate::fused::linear(x, weight, bias, bf16, frozen);
            }
        }
    }
    layer.forward(x)
}

#[cfg(feature = "flex")]
mod flex {
    use std::sync::Arc;

    use burn::backend::flex::FlexTensor;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Flex, TensorMetadata, backend_extension};
    use burn::tensor::{Shape, TensorData};

    use super::Packed;

    #[backend_extension(Flex)]
    pub(crate) trait Lowp: burn::backend::Backend {
        fn lowp_linear(
            x: FloatTensor<Self>,
            packed: Arc<Packed>,
            bias: Option<Vec<f32>>,
        ) -> FloatTensor<Self>;

        /// `x · weight + bias` in f32: `x` `[m, k]`, `weight` `[k, n]`,
        /// `bias` `[n]` (shapes checked by the caller).
        fn f32_linear(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
        ) -> FloatTensor<Self>;
    }

    impl Lowp for Flex {
        fn lowp_linear(x: FlexTensor, packed: Arc<Packed>, bias: Option<Vec<f32>>) -> FlexTensor {
            let shape = x.shape();
            let (m, n) = (shape[0], packed.out_features());
            let x = if x.as_slice::<f32>().is_some() {
                x
            } else {
                x.to_contiguous()
            };
            let xs = x
                .as_slice::<f32>()
                .expect("a contiguous f32 tensor after to_contiguous");
            let out = packed.linear(xs, m, bias.as_deref());
            FlexTensor::from_data(TensorData::new(out, Shape::new([m, n])))
        }

        fn f32_linear(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
            let contiguous = |t: FlexTensor| {
                if t.as_slice::<f32>().is_some() {
                    t
                } else {
                    t.to_contiguous()
                }
            };
            let (m, k, n) = (x.shape()[0], x.shape()[1], weight.shape()[1]);
            let (x, weight, bias) = (contiguous(x), contiguous(weight), contiguous(bias));
            fn slice(t: &FlexTensor) -> &[f32] {
                t.as_slice::<f32>()
                    .expect("a contiguous f32 tensor after to_contiguous")
            }
            let out =
                valor_kernels::linear_f32(slice(&x), m, k, slice(&weight), n, Some(slice(&bias)))
                    .expect("the caller checked the shapes");
            FlexTensor::from_data(TensorData::new(out, Shape::new([m, n])))
        }
    }
}
