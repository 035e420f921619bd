//! Fused, multi-threaded kernels with hand-written backward passes for
//! burn's `flex` CPU device.
//!
//! burn-autodiff 0.22 has no backward of its own for softmax or layer norm:
//! it records them as chains of element-wise ops (max, subtract, exp, sum,
//! divide; mean, subtract, square, mean, sqrt, divide, scale, shift), and
//! burn-flex runs each of those on one thread. Profiled on a MiniLM-L6
//! training step (batch 16 × seq 128, 2 cores), those chains plus dropout
//! and the residual adds kept one core idle for about a third of the step.
//! Here each is one pass over the data on all threads, forward and
//! backward, registered with burn's autodiff through a backend extension
//! (`#[backend_extension]`):
//! - [`attention_probs`]: `dropout(softmax(scale · scores + bias))`, the
//!   attention probabilities of BERT's eager attention;
//! - [`residual_layer_norm`]: `LayerNorm(dropout(x) + residual)`, the end
//!   of both sub-layers of an encoder layer;
//! - [`gelu`]: the erf GELU with its exact derivative;
//! - [`linear`]: the f32 Linear layer `x · W + b` under autodiff, forward
//!   and backward as the `gemm` calls burn-flex makes (the same values),
//!   without its output buffers that are zeroed, then copied, and with
//!   the bias added on every thread (in a MiniLM training step those
//!   buffers were ≈ 12% of the time).
//!
//! Inference on the CPU uses the same forward passes (burn-flex's own
//! attention is a naive loop and its GELU calls libm's `erff` on one
//! thread). Buffers are overwritten in place when nothing else holds them.
//! The arithmetic is in [`crate::kernels`], vectorised for the CPU at
//! hand; its `exp` and normal CDF are polynomials within 2 ulp and 3e-7.
//!
//! The public functions take and return plain tensors and fall back to
//! burn's own ops (and [`host::dropout`]) on every other device or dtype,
//! so model code calls them unconditionally. Dropout masks are
//! [`Mask`]s drawn from the device's generator exactly as
//! [`host::dropout`] draws them, so seeding the device fixes every mask
//! and the backward pass remakes the forward's mask from its seed.

use burn::nn::{Dropout, LayerNorm};
#[cfg(feature = "flex")]
use burn::tensor::DType;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use crate::host;
#[cfg(feature = "flex")]
use crate::host::Mask;

/// `dropout(softmax(scale · scores + bias, 3))`.
///
/// `scores`: `[batch, heads, queries, keys]`; `bias`: `[batch, 1, 1, keys]`
/// (from [`crate::attention::mask_bias`]), broadcast over heads and
/// queries.
pub(crate) fn attention_probs(
    scores: Tensor<4>,
    bias: Tensor<4>,
    scale: f64,
    dropout: &Dropout,
) -> Tensor<4> {
    #[cfg(feature = "flex")]
    {
        let [batch, _, _, keys] = scores.dims();
        if host::is_flex(&scores.device())
            && scores.dtype() == DType::F32
            && bias.dtype() == DType::F32
            && bias.dims() == [batch, 1, 1, keys]
        {
            let mask = Mask::draw(dropout, &scores.device());
            return Tensor::from_dispatch(
                <burn::backend::Dispatch as flex::Fused>::attention_probs(
                    scores.into_dispatch(),
                    bias.into_dispatch(),
                    scale as f32,
                    mask,
                ),
            );
        }
    }
    let probs = softmax(scores.mul_scalar(scale) + bias, 3);
    host::dropout(dropout, probs)
}

/// Multi-head scaled dot-product attention of padded sequences:
/// `dropout(softmax(scale · Q_h K_hᵀ + bias)) · V_h` for every sequence and
/// head `h`, the heads' contexts side by side.
///
/// `q`, `k`, `v`: `[batch · seq_len, hidden]`, each sequence's rows
/// together, head `h` in columns `h · d .. (h + 1) · d` (`d = hidden /
/// heads`); `bias`: `[batch, 1, 1, seq_len]` ([`crate::attention::mask_bias`]).
/// Returns the context, `[batch · seq_len, hidden]`.
///
/// On the flex device in f32 one op each way, with and without autodiff:
/// each (sequence, head) pair is a task on rayon's threads that reads its
/// head in place through the strides, and keeps its scores in cache from
/// the product through the softmax to the product with `V` (backward:
/// `dV = Pᵀ·dC`, `dP = dC·Vᵀ`, the softmax's backward, `dQ = dS·K`, `dK =
/// dSᵀ·Q`). Composed as burn ops, the heads are copied out of the rows and
/// the contexts back into them, each product's output zeroed, then
/// copied, and each of those copies again in the backward pass. The
/// dropout mask and the probabilities kept for the backward pass are those
/// of [`attention_probs`] (the same draw, the same element order); only
/// the products' summation order differs. Elsewhere the composition.
pub(crate) fn attention(
    [q, k, v]: [Tensor<2>; 3],
    bias: Tensor<4>,
    heads: usize,
    dropout: &Dropout,
) -> Tensor<2> {
    let [rows, hidden] = q.dims();
    let [batch, _, _, seq_len] = bias.dims();
    let scale = 1.0 / ((hidden / heads.max(1)) as f64).sqrt();
    #[cfg(feature = "flex")]
    {
        let device = q.device();
        if host::is_flex(&device)
            && heads > 0
            && hidden % heads == 0
            && rows == batch * seq_len
            && [&q, &k, &v]
                .iter()
                .all(|t| t.dtype() == DType::F32 && t.dims() == [rows, hidden])
            && bias.dtype() == DType::F32
            && bias.dims() == [batch, 1, 1, seq_len]
        {
            let mask = Mask::draw(dropout, &device);
            return Tensor::from_dispatch(<burn::backend::Dispatch as flex::Fused>::attention(
                q.into_dispatch(),
                k.into_dispatch(),
                v.into_dispatch(),
                bias.into_dispatch(),
                heads,
                scale as f32,
                mask,
            ));
        }
    }
    attention_composed([q, k, v], bias, heads, scale, dropout)
}

/// [`attention`] as burn ops: the heads as strided views, two batched
/// products around [`attention_probs`].
fn attention_composed(
    [q, k, v]: [Tensor<2>; 3],
    bias: Tensor<4>,
    heads: usize,
    scale: f64,
    dropout: &Dropout,
) -> Tensor<2> {
    let [rows, hidden] = q.dims();
    let [batch, _, _, seq_len] = bias.dims();
    let split = |t: Tensor<2>| {
        t.reshape([batch, seq_len, heads, hidden / heads])
            .swap_dims(1, 2)
    };
    let scores = split(q).matmul(split(k).swap_dims(2, 3));
    let probs = attention_probs(scores, bias, scale, dropout);
    probs
        .matmul(split(v))
        .swap_dims(1, 2)
        .reshape([rows, hidden])
}

/// `norm.forward(dropout(x) + residual)` for `[rows, hidden]` activations;
/// `epsilon` is `norm`'s (burn's `LayerNorm` keeps its own private).
/// On the flex device one parallel pass (burn-flex adds the residual on one
/// thread, then normalises), and with autodiff one backward.
pub(crate) fn residual_layer_norm(
    x: Tensor<2>,
    residual: Tensor<2>,
    norm: &LayerNorm,
    epsilon: f64,
    dropout: &Dropout,
) -> Tensor<2> {
    #[cfg(feature = "flex")]
    {
        let device = x.device();
        if let Some(beta) = norm.beta.as_ref()
            && host::is_flex(&device)
            && x.dtype() == DType::F32
            && residual.dtype() == DType::F32
            && norm.gamma.val().dtype() == DType::F32
        {
            let mask = Mask::draw(dropout, &device);
            return Tensor::from_dispatch(
                <burn::backend::Dispatch as flex::Fused>::residual_layer_norm(
                    x.into_dispatch(),
                    residual.into_dispatch(),
                    norm.gamma.val().into_dispatch(),
                    beta.val().into_dispatch(),
                    epsilon as f32,
                    mask,
                ),
            );
        }
    }
    let _ = epsilon;
    norm.forward(host::dropout(dropout, x) + residual)
}

/// The exact GELU (HF `"gelu"`), `x·Φ(x)`. On the flex device one
/// parallel pass forward and, with autodiff, one backward
/// (`Φ(x) + x·φ(x)`), with a polynomial `Φ` within 3e-7 of the exact one
/// (burn-flex's own GELU calls libm's `erff` on one thread: ≈20% of a
/// MiniLM inference batch); elsewhere burn's op.
pub(crate) fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if host::is_flex(&x.device()) && x.dtype() == DType::F32 {
        return Tensor::from_dispatch(<burn::backend::Dispatch as flex::Fused>::gelu(
            x.into_dispatch(),
        ));
    }
    burn::tensor::activation::gelu(x)
}

/// `x · weight + bias` for f32 tensors on the flex device with autodiff:
/// `x` `[m, k]`, `weight` `[k, n]` (burn's `Linear` layout), `bias` `[n]`;
/// the caller checks device, dtypes and shapes ([`crate::lowp::linear`]).
/// Forward and gradients are the products burn's own `linear` computes
/// (`x·W`, then `+ b`; `dX = dY·Wᵀ`, `dW = Xᵀ·dY`, `db = Σ_rows dY`) through
/// the same `gemm` calls ([`valor_kernels::product_f32`]), so the values
/// are the same bits; the outputs are written once instead of zeroed,
/// copied and then written.
///
/// With `bf16` (inside [`crate::lowp::autocast`]) the three products take
/// bf16-rounded operands with f32 accumulation
/// ([`valor_kernels::PackedBf16`], AMX or AVX-512 where present): `x·W`
/// and `dY·Wᵀ` from the weight packed both ways at each step, `Xᵀ·dY`
/// from `dY` packed and `X` transposed; the bias and its gradient stay
/// f32.
///
/// With `frozen` (a layer whose weight takes no gradient and carries its
/// f32 weight packed, [`crate::lowp::apply`] at fp32: integrated gradients)
/// `x·W + b` and `dX = dY·Wᵀ` run on the packed kernel
/// ([`valor_kernels::PackedF32`], the transpose packed at the first
/// backward pass): the same products in another order.
#[cfg(feature = "flex")]
pub(crate) fn linear(
    x: Tensor<2>,
    weight: Tensor<2>,
    bias: Tensor<1>,
    bf16: bool,
    frozen: Option<std::sync::Arc<crate::lowp::Packed>>,
) -> Tensor<2> {
    Tensor::from_dispatch(<burn::backend::Dispatch as flex::Fused>::linear(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        bf16,
        frozen,
    ))
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::flex::FlexTensor;
    use burn::backend::ops::FloatTensorOps;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Autodiff, Flex, TensorMetadata, backend_extension};
    use burn::tensor::{Shape, TensorData};
    use rayon::prelude::*;

    use std::sync::Arc;

    use valor_kernels::MatRef;

    use crate::host::Mask;
    use crate::kernels::{self, CHUNK};
    use crate::lowp::Packed;

    /// Rows per partial sum of the layer-norm parameter gradients: fixed,
    /// so the sums (and the trained weights) do not depend on the number
    /// of threads.
    const NORM_ROWS: usize = 64;

    #[backend_extension(Flex, Autodiff)]
    pub(crate) trait Fused: burn::backend::Backend {
        fn attention_probs(
            scores: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            scale: f32,
            mask: Mask,
        ) -> FloatTensor<Self>;

        fn residual_layer_norm(
            x: FloatTensor<Self>,
            residual: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            epsilon: f32,
            mask: Mask,
        ) -> FloatTensor<Self>;

        fn gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;

        fn attention(
            q: FloatTensor<Self>,
            k: FloatTensor<Self>,
            v: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            heads: usize,
            scale: f32,
            mask: Mask,
        ) -> FloatTensor<Self>;

        fn linear(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            bf16: bool,
            frozen: Option<Arc<Packed>>,
        ) -> FloatTensor<Self>;
    }

    /// `t` with its elements in row-major order from offset 0.
    fn dense(t: FlexTensor) -> FlexTensor {
        if t.as_slice::<f32>().is_some() {
            t
        } else {
            t.to_contiguous()
        }
    }

    /// `t`'s elements in a buffer this code may overwrite: `t`'s own when
    /// nothing else holds it (a fresh matmul output, say), else a copy.
    /// `site` names the caller; unit tests read which path each site took.
    fn into_writable(t: FlexTensor, site: &'static str) -> FlexTensor {
        let shape = t.shape();
        let mut t = dense(t);
        let unique =
            matches!(t.try_storage_mut::<f32>(), Some(v) if v.len() == shape.num_elements());
        #[cfg(test)]
        super::tests::record_write(site, unique);
        #[cfg(not(test))]
        let _ = site;
        if unique {
            t
        } else {
            tensor(values(&t).to_vec(), shape)
        }
    }

    fn values_mut(t: &mut FlexTensor) -> &mut [f32] {
        t.try_storage_mut::<f32>()
            .expect("a buffer from into_writable")
    }

    fn values(t: &FlexTensor) -> &[f32] {
        t.as_slice::<f32>()
            .expect("fused kernels take dense f32 tensors")
    }

    fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(values, shape))
    }

    /// `t ⊙ mask`, element `i` of `t` taking the mask's element `i`.
    fn masked(t: &FlexTensor, mask: Mask) -> FlexTensor {
        let mut out = vec![0f32; t.shape().num_elements()];
        out.par_chunks_mut(CHUNK)
            .zip(values(t).par_chunks(CHUNK))
            .enumerate()
            .for_each(|(c, (o, x))| kernels::mask_mul(o, x, mask, (c * CHUNK) as u64));
        tensor(out, t.shape())
    }

    /// Rows per parallel work item for rows of `len` elements.
    fn rows_per_task(len: usize) -> usize {
        (CHUNK / len.max(1)).max(1)
    }

    // ---- attention probabilities -------------------------------------

    /// Forward: the probabilities before dropout and the output after it
    /// (the same buffer when the mask keeps everything).
    fn attention_forward(
        scores: FlexTensor,
        bias: FlexTensor,
        scale: f32,
        mask: Mask,
    ) -> (FlexTensor, FlexTensor) {
        let shape = scores.shape();
        let bias = dense(bias);
        let bias = values(&bias);
        let keys = shape[3];
        let rows_per_batch = shape[1] * shape[2];
        let step = rows_per_task(keys);
        // The probabilities overwrite the scores, which nothing needs after.
        let mut probs = into_writable(scores, "attention forward");
        values_mut(&mut probs)
            .par_chunks_mut(step * keys)
            .enumerate()
            .for_each(|(task, rows)| {
                kernels::softmax_rows(rows, bias, task * step, rows_per_batch, keys, scale);
            });
        if mask.keeps_all() {
            return (probs.clone(), probs);
        }
        let out = masked(&probs, mask);
        (probs, out)
    }

    /// `∂/∂scores` from `∂/∂output` (overwriting it when it can): with
    /// `gp = g ⊙ mask`, `scale · p ⊙ (gp − Σ_k gp·p)` per row.
    fn attention_backward(
        grad: FlexTensor,
        probs: &FlexTensor,
        scale: f32,
        mask: Mask,
    ) -> FlexTensor {
        let keys = probs.shape()[3];
        let p = values(probs);
        let step = rows_per_task(keys);
        let mut grad = into_writable(grad, "attention backward");
        values_mut(&mut grad)
            .par_chunks_mut(step * keys)
            .zip(p.par_chunks(step * keys))
            .enumerate()
            .for_each(|(task, (rows, p))| {
                let base = (task * step * keys) as u64;
                kernels::softmax_backward_rows(rows, p, keys, scale, mask, base);
            });
        grad
    }

    // ---- multi-head attention ----------------------------------------

    /// The shape of one [`Fused::attention`]: `batch` sequences of
    /// `seq_len` rows, `heads` heads of `d` columns.
    #[derive(Clone, Copy, Debug)]
    struct Heads {
        batch: usize,
        seq_len: usize,
        heads: usize,
        d: usize,
    }

    impl Heads {
        fn hidden(self) -> usize {
            self.heads * self.d
        }

        /// Head `h` of sequence `b` (task `b · heads + h`) in `[rows,
        /// hidden]` rows: `seq_len × d` at row stride `hidden`.
        fn of(self, t: &[f32], task: usize) -> MatRef<'_> {
            let (b, h) = (task / self.heads, task % self.heads);
            MatRef {
                data: &t[b * self.seq_len * self.hidden() + h * self.d..],
                rows: self.seq_len,
                cols: self.d,
                row_stride: self.hidden(),
                col_stride: 1,
            }
        }

        /// A task's square of scores or probabilities.
        fn square(self, t: &[f32]) -> MatRef<'_> {
            MatRef::row_major(t, self.seq_len, self.seq_len)
        }

        /// Task-major blocks (`[batch, heads, seq_len, d]`) back into
        /// `[batch · seq_len, hidden]` rows.
        fn rows(self, blocks: &[f32]) -> Vec<f32> {
            let (hidden, d) = (self.hidden(), self.d);
            let mut out = vec![0f32; blocks.len()];
            out.par_chunks_mut(rows_per_task(hidden) * hidden)
                .enumerate()
                .for_each(|(c, chunk)| {
                    let first = c * rows_per_task(hidden);
                    for (r, row) in chunk.chunks_exact_mut(hidden).enumerate() {
                        let (b, s) = ((first + r) / self.seq_len, (first + r) % self.seq_len);
                        for (h, part) in row.chunks_exact_mut(d).enumerate() {
                            let block = (b * self.heads + h) * self.seq_len + s;
                            part.copy_from_slice(&blocks[block * d..][..d]);
                        }
                    }
                });
            out
        }
    }

    /// What the attention backward needs: the inputs, the probabilities
    /// before dropout (`[batch, heads, seq_len, seq_len]`), the scale and
    /// the mask.
    #[derive(Clone, Debug)]
    struct SdpaState {
        qkv: [FlexTensor; 3],
        probs: Vec<f32>,
        shape: Heads,
        scale: f32,
        mask: Mask,
    }

    /// Forward: the context `[batch · seq_len, hidden]` and the
    /// probabilities before dropout. Per task: `S = Q_h·K_hᵀ`, the softmax
    /// of [`attention_forward`] in place, `P ⊙ mask` (element `i` of the
    /// `[batch, heads, seq_len, seq_len]` probabilities taking the mask's
    /// element `i`, as [`attention_forward`]), then `· V_h`.
    fn sdpa_forward(
        [q, k, v]: [&[f32]; 3],
        bias: &[f32],
        shape: Heads,
        scale: f32,
        mask: Mask,
    ) -> (Vec<f32>, Vec<f32>) {
        let (seq_len, d) = (shape.seq_len, shape.d);
        let square = seq_len * seq_len;
        let tasks = shape.batch * shape.heads;
        let mut probs = vec![0f32; tasks * square];
        let mut blocks = vec![0f32; tasks * seq_len * d];
        if square == 0 || d == 0 {
            return (shape.rows(&blocks), probs);
        }
        probs
            .par_chunks_mut(square)
            .zip(blocks.par_chunks_mut(seq_len * d))
            .enumerate()
            .for_each_init(Vec::new, |dropped, (task, (p, out))| {
                valor_kernels::matmul_f32(p, seq_len, shape.of(q, task), shape.of(k, task).t())
                    .expect("the head lies in q and k");
                let b = task / shape.heads;
                let bias = &bias[b * seq_len..(b + 1) * seq_len];
                kernels::softmax_rows(p, bias, 0, seq_len, seq_len, scale);
                let p: &[f32] = if mask.keeps_all() {
                    p
                } else {
                    dropped.resize(square, 0.0);
                    kernels::mask_mul(dropped, p, mask, (task * square) as u64);
                    dropped
                };
                valor_kernels::matmul_f32(out, d, shape.square(p), shape.of(v, task))
                    .expect("the head lies in v");
            });
        (shape.rows(&blocks), probs)
    }

    /// `∂/∂q`, `∂/∂k`, `∂/∂v` from `∂/∂context` (`[batch · seq_len,
    /// hidden]`). Per task, with `P` the kept probabilities and `Pd = P ⊙
    /// mask`: `dV = Pdᵀ·dC`, `dPd = dC·Vᵀ`, `dS` by
    /// [`kernels::softmax_backward_rows`] (as [`attention_backward`]),
    /// `dQ = dS·K`, `dK = dSᵀ·Q`.
    fn sdpa_backward(grad: &[f32], state: &SdpaState) -> [Vec<f32>; 3] {
        let SdpaState {
            qkv,
            probs,
            shape,
            scale,
            mask,
        } = state;
        let (shape, scale, mask) = (*shape, *scale, *mask);
        let [q, k, v] = qkv.each_ref().map(values);
        let (seq_len, d) = (shape.seq_len, shape.d);
        let square = seq_len * seq_len;
        let block = seq_len * d;
        let len = shape.batch * shape.heads * block;
        let (mut dq, mut dk, mut dv) = (vec![0f32; len], vec![0f32; len], vec![0f32; len]);
        if square > 0 && d > 0 {
            probs
                .par_chunks(square)
                .zip(dq.par_chunks_mut(block))
                .zip(dk.par_chunks_mut(block).zip(dv.par_chunks_mut(block)))
                .enumerate()
                .for_each_init(
                    || (Vec::new(), Vec::new()),
                    |(ds, dropped), (task, ((p, dq), (dk, dv)))| {
                        let g = shape.of(grad, task);
                        let kept: &[f32] = if mask.keeps_all() {
                            p
                        } else {
                            dropped.resize(square, 0.0);
                            kernels::mask_mul(dropped, p, mask, (task * square) as u64);
                            dropped
                        };
                        valor_kernels::matmul_f32(dv, d, shape.square(kept).t(), g)
                            .expect("the head lies in the gradient");
                        ds.resize(square, 0.0);
                        valor_kernels::matmul_f32(ds, seq_len, g, shape.of(v, task).t())
                            .expect("the head lies in v");
                        let base = (task * square) as u64;
                        kernels::softmax_backward_rows(ds, p, seq_len, scale, mask, base);
                        valor_kernels::matmul_f32(dq, d, shape.square(ds), shape.of(k, task))
                            .expect("the head lies in k");
                        valor_kernels::matmul_f32(dk, d, shape.square(ds).t(), shape.of(q, task))
                            .expect("the head lies in q");
                    },
                );
        }
        [shape.rows(&dq), shape.rows(&dk), shape.rows(&dv)]
    }

    /// The shape of an attention from its inputs (checked by the caller).
    fn heads_of(q: &FlexTensor, bias: &FlexTensor, heads: usize) -> Heads {
        let hidden = q.shape()[1];
        Heads {
            batch: bias.shape()[0],
            seq_len: bias.shape()[3],
            heads,
            d: hidden / heads,
        }
    }

    // ---- residual + layer norm ---------------------------------------

    /// What the layer-norm backward needs: the normalised rows, their
    /// reciprocal standard deviations, γ and the dropout mask.
    #[derive(Clone, Debug)]
    struct NormState {
        normalized: FlexTensor,
        rstd: Vec<f32>,
        gamma: FlexTensor,
        mask: Mask,
    }

    fn norm_forward(
        x: FlexTensor,
        residual: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f32,
        mask: Mask,
    ) -> (FlexTensor, NormState) {
        let shape = x.shape();
        let hidden = shape[shape.num_dims() - 1];
        let rows = shape.num_elements() / hidden;
        let (residual, gamma, beta) = (dense(residual), dense(gamma), dense(beta));
        let (rs, gs, bs) = (values(&residual), values(&gamma), values(&beta));
        let step = rows_per_task(hidden);
        // x̂ overwrites x (the output projection's fresh result, usually).
        let mut normalized = into_writable(x, "norm forward");
        let mut out = vec![0f32; shape.num_elements()];
        let mut rstd = vec![0f32; rows];
        values_mut(&mut normalized)
            .par_chunks_mut(step * hidden)
            .zip(out.par_chunks_mut(step * hidden))
            .zip(rstd.par_chunks_mut(step))
            .zip(rs.par_chunks(step * hidden))
            .enumerate()
            .for_each(|(task, (((n, o), sd), r))| {
                let base = (task * step * hidden) as u64;
                kernels::norm_rows(n, o, sd, r, gs, bs, epsilon, mask, base);
            });
        let state = NormState {
            normalized,
            rstd,
            gamma,
            mask,
        };
        (tensor(out, shape), state)
    }

    /// Gradients of `x` (through the mask), `residual`, γ and β.
    fn norm_backward(
        grad: FlexTensor,
        state: &NormState,
    ) -> (FlexTensor, FlexTensor, FlexTensor, FlexTensor) {
        let shape = state.normalized.shape();
        let hidden = shape[shape.num_dims() - 1];
        let grad = dense(grad);
        let (gy, xhat, gamma) = (
            values(&grad),
            values(&state.normalized),
            values(&state.gamma),
        );
        let mask = state.mask;
        let mut g_res = vec![0f32; gy.len()];
        // Per block of NORM_ROWS rows: the partial sums of gy ⊙ x̂ and gy.
        let partials: Vec<(Vec<f32>, Vec<f32>)> = g_res
            .par_chunks_mut(NORM_ROWS * hidden)
            .zip(gy.par_chunks(NORM_ROWS * hidden))
            .zip(xhat.par_chunks(NORM_ROWS * hidden))
            .zip(state.rstd.par_chunks(NORM_ROWS))
            .map(|(((gr, gy), xh), rstd)| {
                let mut g_gamma = vec![0f32; hidden];
                let mut g_beta = vec![0f32; hidden];
                kernels::norm_backward_rows(gr, gy, xh, rstd, gamma, &mut g_gamma, &mut g_beta);
                (g_gamma, g_beta)
            })
            .collect();
        let mut g_gamma = vec![0f32; hidden];
        let mut g_beta = vec![0f32; hidden];
        for (pg, pb) in &partials {
            for j in 0..hidden {
                g_gamma[j] += pg[j];
                g_beta[j] += pb[j];
            }
        }
        let g_res = tensor(g_res, shape.clone());
        let g_x = if mask.keeps_all() {
            g_res.clone()
        } else {
            masked(&g_res, mask)
        };
        let params = Shape::new([hidden]);
        (
            g_x,
            g_res,
            tensor(g_gamma, params.clone()),
            tensor(g_beta, params),
        )
    }

    // ---- GELU --------------------------------------------------------

    /// `x·Φ(x)` with a polynomial Φ ([`kernels::normal`]).
    fn gelu_forward(x: FlexTensor) -> FlexTensor {
        // In place when nothing else holds `x` (inference: a fresh matmul
        // output); with autodiff the graph keeps `x`, so this copies.
        let mut out = into_writable(x, "gelu forward");
        values_mut(&mut out)
            .par_chunks_mut(CHUNK)
            .for_each(kernels::gelu);
        out
    }

    /// `g · (Φ(x) + x·φ(x))`, GELU's exact derivative (overwriting `g`
    /// when it can).
    fn gelu_backward(grad: FlexTensor, x: &FlexTensor) -> FlexTensor {
        let mut grad = into_writable(grad, "gelu backward");
        values_mut(&mut grad)
            .par_chunks_mut(CHUNK)
            .zip(values(x).par_chunks(CHUNK))
            .for_each(|(g, x)| kernels::gelu_backward(g, x));
        grad
    }

    // ---- Linear ------------------------------------------------------

    /// Dense 2D `t` as a matrix.
    fn matrix(t: &FlexTensor) -> MatRef<'_> {
        MatRef::row_major(values(t), t.shape()[0], t.shape()[1])
    }

    /// `lhs · rhs` (dense `[m, k]` and `[k, n]` operands, either read
    /// transposed through the strides): in f32 as burn-flex's matmul, or
    /// with bf16-rounded operands and f32 accumulation, `rhs` packed as a
    /// bf16 weight and `lhs` rounded as it is read.
    fn product(lhs: MatRef<'_>, rhs: MatRef<'_>, bf16: bool) -> Vec<f32> {
        if !bf16 {
            return valor_kernels::product_f32(lhs, rhs).expect("shapes from the forward pass");
        }
        // The packed weight is `[n, k]`, rhs's transpose.
        let packed =
            valor_kernels::PackedBf16::pack_strided(rhs.t()).expect("shapes from the forward pass");
        packed
            .linear_strided_new(lhs, None)
            .expect("shapes from the forward pass")
    }

    /// `x · w + b` (dense inputs): the product, then the bias added to
    /// every row on every thread (`prod + b`, burn-flex's broadcast add);
    /// with `frozen`, the packed f32 weight's product onto the bias.
    fn linear_forward(
        x: &FlexTensor,
        w: &FlexTensor,
        b: &FlexTensor,
        bf16: bool,
        frozen: Option<&Packed>,
    ) -> FlexTensor {
        let (m, n) = (x.shape()[0], w.shape()[1]);
        if let Some(out) = frozen.and_then(|p| p.f32_linear(values(x), m, Some(values(b)))) {
            return tensor(out, Shape::new([m, n]));
        }
        let mut out = product(matrix(x), matrix(w), bf16);
        let b = values(b);
        if n > 0 {
            out.par_chunks_mut(rows_per_task(n) * n).for_each(|rows| {
                for row in rows.chunks_exact_mut(n) {
                    row.iter_mut().zip(b).for_each(|(o, &v)| *o += v);
                }
            });
        }
        tensor(out, Shape::new([m, n]))
    }

    // ---- the backend extension ---------------------------------------

    impl Fused for Flex {
        fn attention_probs(
            scores: FlexTensor,
            bias: FlexTensor,
            scale: f32,
            mask: Mask,
        ) -> FlexTensor {
            attention_forward(scores, bias, scale, mask).1
        }

        fn residual_layer_norm(
            x: FlexTensor,
            residual: FlexTensor,
            gamma: FlexTensor,
            beta: FlexTensor,
            epsilon: f32,
            mask: Mask,
        ) -> FlexTensor {
            norm_forward(x, residual, gamma, beta, epsilon, mask).0
        }

        fn gelu(x: FlexTensor) -> FlexTensor {
            gelu_forward(x)
        }

        fn linear(
            x: FlexTensor,
            weight: FlexTensor,
            bias: FlexTensor,
            bf16: bool,
            frozen: Option<Arc<Packed>>,
        ) -> FlexTensor {
            linear_forward(
                &dense(x),
                &dense(weight),
                &dense(bias),
                bf16,
                frozen.as_deref(),
            )
        }

        fn attention(
            q: FlexTensor,
            k: FlexTensor,
            v: FlexTensor,
            bias: FlexTensor,
            heads: usize,
            scale: f32,
            mask: Mask,
        ) -> FlexTensor {
            let shape = heads_of(&q, &bias, heads);
            let (q, k, v, bias) = (dense(q), dense(k), dense(v), dense(bias));
            let qkv = [values(&q), values(&k), values(&v)];
            let (context, _) = sdpa_forward(qkv, values(&bias), shape, scale, mask);
            tensor(context, q.shape())
        }
    }

    #[derive(Debug)]
    struct AttentionBackward;

    impl Backward<Flex, 1> for AttentionBackward {
        type State = (FlexTensor, f32, Mask);

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [parent] = ops.parents;
            let grad = grads.consume::<Flex>(&ops.node);
            let (probs, scale, mask) = ops.state;
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, attention_backward(grad, &probs, scale, mask));
            }
        }
    }

    #[derive(Debug)]
    struct NormBackward;

    impl Backward<Flex, 4> for NormBackward {
        type State = NormState;

        fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [x, residual, gamma, beta] = ops.parents;
            let grad = grads.consume::<Flex>(&ops.node);
            let (g_x, g_res, g_gamma, g_beta) = norm_backward(grad, &ops.state);
            for (node, g) in [
                (x, g_x),
                (residual, g_res),
                (gamma, g_gamma),
                (beta, g_beta),
            ] {
                if let Some(node) = node {
                    grads.register::<Flex>(node.id, g);
                }
            }
        }
    }

    #[derive(Debug)]
    struct GeluBackward;

    impl Backward<Flex, 1> for GeluBackward {
        type State = FlexTensor;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [parent] = ops.parents;
            let grad = grads.consume::<Flex>(&ops.node);
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, gelu_backward(grad, &ops.state));
            }
        }
    }

    #[derive(Debug)]
    struct LinearBackward;

    impl Backward<Flex, 3> for LinearBackward {
        /// `x` when the weight needs its gradient, the weight when `x`
        /// does, whether the forward pass ran in bf16, and a frozen layer's
        /// packed f32 weight.
        type State = (
            Option<FlexTensor>,
            Option<FlexTensor>,
            bool,
            Option<Arc<Packed>>,
        );

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [node_x, node_weight, node_bias] = ops.parents;
            let grad = dense(grads.consume::<Flex>(&ops.node));
            let (x, weight, bf16, frozen) = ops.state;
            // In burn's order (x, weight, bias), so gradients that meet at
            // one node are summed in the same order.
            if let (Some(node), Some(w)) = (node_x, &weight) {
                let m = grad.shape()[0];
                let dx = frozen
                    .as_deref()
                    .and_then(|p| p.f32_input_gradient(values(&grad), m))
                    .unwrap_or_else(|| product(matrix(&grad), matrix(w).t(), bf16));
                let shape = Shape::new([grad.shape()[0], w.shape()[0]]);
                grads.register::<Flex>(node.id, tensor(dx, shape));
            }
            if let (Some(node), Some(x)) = (node_weight, &x) {
                let dw = product(matrix(x).t(), matrix(&grad), bf16);
                let shape = Shape::new([x.shape()[1], grad.shape()[1]]);
                grads.register::<Flex>(node.id, tensor(dw, shape));
            }
            if let Some(node) = node_bias {
                let n = grad.shape()[1];
                let db = Flex::float_reshape(Flex::float_sum_dim(grad, 0), Shape::new([n]));
                grads.register::<Flex>(node.id, db);
            }
        }
    }

    #[derive(Debug)]
    struct SdpaBackward;

    impl Backward<Flex, 3> for SdpaBackward {
        type State = SdpaState;

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let grad = dense(grads.consume::<Flex>(&ops.node));
            let shape = grad.shape();
            let gradients = sdpa_backward(values(&grad), &ops.state);
            for (node, g) in ops.parents.into_iter().zip(gradients) {
                if let Some(node) = node {
                    grads.register::<Flex>(node.id, tensor(g, shape.clone()));
                }
            }
        }
    }

    impl<C: CheckpointStrategy> Fused for Autodiff<Flex, C> {
        fn attention_probs(
            scores: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            scale: f32,
            mask: Mask,
        ) -> FloatTensor<Self> {
            let bias = bias.into_primitive();
            match AttentionBackward
                .prepare::<C>([scores.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (probs, out) =
                        attention_forward(scores.into_primitive(), bias, scale, mask);
                    prep.finish((probs, scale, mask), out)
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(attention_forward(scores.into_primitive(), bias, scale, mask).1)
                }
            }
        }

        fn residual_layer_norm(
            x: FloatTensor<Self>,
            residual: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            epsilon: f32,
            mask: Mask,
        ) -> FloatTensor<Self> {
            let nodes = [x.node(), residual.node(), gamma.node(), beta.node()];
            let (out, state) = norm_forward(
                x.into_primitive(),
                residual.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                epsilon,
                mask,
            );
            match NormBackward.prepare::<C>(nodes).compute_bound().stateful() {
                OpsKind::Tracked(prep) => prep.finish(state, out),
                OpsKind::UnTracked(prep) => prep.finish(out),
            }
        }

        fn gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
            let node = x.node();
            let x = x.into_primitive();
            match GeluBackward.prepare::<C>([node]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => prep.finish(x.clone(), gelu_forward(x)),
                OpsKind::UnTracked(prep) => prep.finish(gelu_forward(x)),
            }
        }

        fn attention(
            q: FloatTensor<Self>,
            k: FloatTensor<Self>,
            v: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            heads: usize,
            scale: f32,
            mask: Mask,
        ) -> FloatTensor<Self> {
            let nodes = [q.node(), k.node(), v.node()];
            let qkv = [q, k, v].map(|t| dense(t.into_primitive()));
            let bias = dense(bias.into_primitive());
            let shape = heads_of(&qkv[0], &bias, heads);
            let (context, probs) = sdpa_forward(
                qkv.each_ref().map(values),
                values(&bias),
                shape,
                scale,
                mask,
            );
            let context = tensor(context, qkv[0].shape());
            match SdpaBackward.prepare::<C>(nodes).compute_bound().stateful() {
                OpsKind::Tracked(prep) => prep.finish(
                    SdpaState {
                        qkv,
                        probs,
                        shape,
                        scale,
                        mask,
                    },
                    context,
                ),
                OpsKind::UnTracked(prep) => prep.finish(context),
            }
        }

        fn linear(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            bf16: bool,
            frozen: Option<Arc<Packed>>,
        ) -> FloatTensor<Self> {
            let (x_tracked, weight_tracked) = (x.is_tracked(), weight.is_tracked());
            // The packed weight is the weight's value: not for one that
            // takes a gradient.
            let frozen = frozen.filter(|_| !weight_tracked);
            let nodes = [x.node(), weight.node(), bias.node()];
            let x = dense(x.into_primitive());
            let weight = dense(weight.into_primitive());
            let bias = dense(bias.into_primitive());
            let out = linear_forward(&x, &weight, &bias, bf16, frozen.as_deref());
            match LinearBackward
                .prepare::<C>(nodes)
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(
                    (
                        weight_tracked.then_some(x),
                        x_tracked.then_some(weight),
                        bf16,
                        frozen,
                    ),
                    out,
                ),
                OpsKind::UnTracked(prep) => prep.finish(out),
            }
        }
    }
}

/// Each fused op against the composition of burn ops it replaces, in value
/// and gradient, with and without dropout, on shapes with several parallel
/// work items and ragged tails.
#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::nn::{DropoutConfig, LayerNormConfig};
    use burn::tensor::activation::gelu as burn_gelu;
    use burn::tensor::{Device, Distribution};

    use std::cell::RefCell;

    use super::*;
    use crate::with_device_rng;

    thread_local! {
        /// The buffers `into_writable` was handed on this thread: its caller
        /// and whether it overwrote the buffer (`true`) or copied it.
        static WRITES: RefCell<Vec<(&'static str, bool)>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn record_write(site: &'static str, in_place: bool) {
        WRITES.with(|w| w.borrow_mut().push((site, in_place)));
    }

    /// Runs `f` and returns what `into_writable` did meanwhile on this
    /// thread (the forward and the backward passes both run here).
    fn writes_of<T>(f: impl FnOnce() -> T) -> (T, Vec<(&'static str, bool)>) {
        WRITES.with(|w| w.borrow_mut().clear());
        let out = f();
        (out, WRITES.with(|w| w.take()))
    }

    fn vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    }

    fn assert_close(what: &str, ours: &[f32], theirs: &[f32], tol: f32) {
        assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
        let worst = ours
            .iter()
            .zip(theirs)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
            .fold(0f32, f32::max);
        assert!(worst <= tol, "{what}: worst difference {worst:e} > {tol:e}");
    }

    /// Runs `fused` and `composed` on the same device seed (so both draw
    /// the same dropout mask) and compares the outputs and the gradients
    /// of `Σ output ⊙ weights` with respect to `inputs`.
    fn compare<const D: usize>(
        what: &str,
        inputs: &[Tensor<2>],
        fused: impl Fn(&[Tensor<2>]) -> Tensor<D>,
        composed: impl Fn(&[Tensor<2>]) -> Tensor<D>,
        tol: f32,
    ) {
        let device = inputs[0].device();
        let run = |f: &dyn Fn(&[Tensor<2>]) -> Tensor<D>| {
            let inputs: Vec<Tensor<2>> = inputs
                .iter()
                .map(|t| t.clone().detach().require_grad())
                .collect();
            let out = with_device_rng(|| {
                device.seed(17);
                f(&inputs)
            });
            // Non-uniform upstream gradients, fixed by the shape.
            let n = out.shape().num_elements();
            let weights = Tensor::<1>::from_floats(
                (0..n)
                    .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
                    .collect::<Vec<_>>()
                    .as_slice(),
                &device,
            )
            .reshape(out.shape());
            let grads = (out.clone() * weights).sum().backward();
            let grads: Vec<Vec<f32>> = inputs
                .iter()
                .map(|t| vec(t.grad(&grads).expect("a gradient")))
                .collect();
            (vec(out), grads)
        };
        let (out_f, grads_f) = run(&fused);
        let (out_c, grads_c) = run(&composed);
        assert_close(&format!("{what} output"), &out_f, &out_c, tol);
        for (i, (f, c)) in grads_f.iter().zip(&grads_c).enumerate() {
            assert_close(&format!("{what} gradient {i}"), f, c, tol);
        }
    }

    fn random(shape: [usize; 2], device: &Device) -> Tensor<2> {
        with_device_rng(|| Tensor::<2>::random(shape, Distribution::Normal(0.0, 2.0), device))
    }

    #[test]
    fn linear_matches_burns_linear_bit_for_bit() {
        let device = Device::flex().autodiff();
        // Below and above the GEMM's parallel threshold, ragged tiles.
        for (m, k, n) in [(7, 5, 3), (301, 96, 130), (512, 384, 384)] {
            let x = random([m, k], &device);
            let w = random([k, n], &device);
            let b = random([1, n], &device);
            compare(
                &format!("linear {m}×{k}×{n}"),
                &[x.clone(), w.clone(), b.clone()],
                |t| {
                    linear(
                        t[0].clone(),
                        t[1].clone(),
                        t[2].clone().reshape([n]),
                        false,
                        None,
                    )
                },
                |t| {
                    burn::tensor::module::linear(
                        t[0].clone(),
                        t[1].clone(),
                        Some(t[2].clone().reshape([n])),
                    )
                },
                0.0,
            );
            // Frozen parameters (integrated gradients): the input's
            // gradient alone, the same bits; with the weight packed in f32
            // (`lowp::apply` at fp32), the packed kernel's products, the
            // same values up to the order of the sums, forward and backward.
            let packed = valor_kernels::PackedF32::pack_strided(
                valor_kernels::MatRef::row_major(&vec(w.clone()), k, n).t(),
            )
            .unwrap();
            let packed =
                std::sync::Arc::new(crate::lowp::Packed::F32(packed, std::sync::OnceLock::new()));
            let run = |fused: bool, frozen: Option<std::sync::Arc<crate::lowp::Packed>>| {
                let x = x.clone().detach().require_grad();
                let (w, b) = (w.clone().detach(), b.clone().detach().reshape([n]));
                let out = if fused {
                    linear(x.clone(), w, b, false, frozen)
                } else {
                    burn::tensor::module::linear(x.clone(), w, Some(b))
                };
                let grads = out.clone().mul_scalar(0.5).sum().backward();
                (vec(out), vec(x.grad(&grads).expect("a gradient")))
            };
            let (out, grad_of_x) = run(false, None);
            assert_eq!(run(true, None).1, grad_of_x, "{m}×{k}×{n} frozen");
            let (packed_out, packed_grad) = run(true, Some(packed.clone()));
            assert_close(&format!("packed {m}×{k}×{n}"), &packed_out, &out, 1e-5);
            assert_close(
                &format!("packed {m}×{k}×{n} dX"),
                &packed_grad,
                &grad_of_x,
                1e-5,
            );
            // A weight that takes a gradient ignores the packed copy.
            let x_tracked = x.clone().detach().require_grad();
            let w_tracked = w.clone().detach().require_grad();
            let b_frozen = b.clone().detach().reshape([n]);
            let out = linear(x_tracked, w_tracked.clone(), b_frozen, false, Some(packed));
            let grads = out.sum().backward();
            assert!(w_tracked.grad(&grads).is_some(), "{m}×{k}×{n}: dW");
        }
    }

    #[test]
    fn bf16_linear_is_the_f32_linear_within_bf16_rounding() {
        let device = Device::flex().autodiff();
        for (m, k, n) in [(7, 5, 3), (301, 96, 130), (512, 384, 384)] {
            let x = random([m, k], &device);
            let w = random([k, n], &device);
            let b = random([1, n], &device).reshape([n]);
            let run = |bf16: bool| {
                let (x, w, b) = (
                    x.clone().detach().require_grad(),
                    w.clone().detach().require_grad(),
                    b.clone().detach().require_grad(),
                );
                let out = linear(x.clone(), w.clone(), b.clone(), bf16, None);
                let weights = out
                    .clone()
                    .detach()
                    .mul_scalar(0.0)
                    .add_scalar(1.0)
                    .cumsum(1)
                    .div_scalar(n as f64);
                let grads = (out.clone() * weights).sum().backward();
                let g = |t: &Tensor<2>| vec(t.grad(&grads).expect("a gradient"));
                let gb = vec(b.grad(&grads).expect("a gradient"));
                [vec(out), g(&x), g(&w), gb]
            };
            let (lo, hi) = (run(true), run(false));
            for (what, (l, h)) in ["output", "dX", "dW", "db"].iter().zip(lo.iter().zip(&hi)) {
                // Operands rounded to 8 significant bits: each product errs
                // by ≤ 2⁻⁸ relative, the sums of k of them by far less
                // than 1% of the largest value.
                let scale = h.iter().fold(0f32, |a, v| a.max(v.abs()));
                let worst = l.iter().zip(h).fold(0f32, |a, (x, y)| a.max((x - y).abs()));
                assert!(
                    worst <= 1e-2 * scale,
                    "{m}×{k}×{n} {what}: worst {worst} of {scale}"
                );
                if *what == "db" {
                    // The bias gradient is an f32 sum of the same upstream
                    // gradients either way.
                    assert_eq!(l, h, "{m}×{k}×{n} db");
                } else if k > 1 {
                    assert_ne!(l, h, "{m}×{k}×{n} {what}: bf16 changed nothing");
                }
            }
        }
    }

    #[test]
    fn autocast_sets_the_threads_precision_and_restores_it() {
        use crate::lowp::{Precision, autocast, autocast_precision};
        assert_eq!(autocast_precision(), Precision::Fp32);
        let inner = autocast(Precision::Bf16, || {
            let nested = autocast(Precision::Fp32, autocast_precision).unwrap();
            (autocast_precision(), nested)
        })
        .unwrap();
        assert_eq!(inner, (Precision::Bf16, Precision::Fp32));
        assert_eq!(autocast_precision(), Precision::Fp32);
        let e = autocast(Precision::Int8, || ()).unwrap_err();
        assert!(e.to_string().contains("choose fp32 or bf16"), "{e}");
        let panicked = std::panic::catch_unwind(|| {
            autocast(Precision::Bf16, || panic!("inside")).unwrap();
        });
        assert!(panicked.is_err());
        assert_eq!(
            autocast_precision(),
            Precision::Fp32,
            "restored after a panic"
        );
    }

    #[test]
    fn attention_probs_match_softmax_then_dropout() {
        let device = Device::flex().autodiff();
        let (batch, heads, queries, keys) = (3, 4, 37, 45);
        let scores = random([batch * heads * queries, keys], &device);
        // Padding on some keys of some sequences, as mask_bias makes it.
        let mut mask = vec![1i64; batch * keys];
        for (b, len) in [(0, keys), (1, 30), (2, 7)] {
            for m in &mut mask[b * keys + len..(b + 1) * keys] {
                *m = 0;
            }
        }
        let mask = Tensor::<1, burn::tensor::Int>::from_ints(mask.as_slice(), &device)
            .reshape([batch, keys]);
        let bias = crate::attention::mask_bias(mask);
        let scale = 0.125;
        for p in [0.0, 0.1] {
            let dropout = DropoutConfig::new(p).init();
            let shape = [batch, heads, queries, keys];
            compare(
                &format!("attention (p = {p})"),
                std::slice::from_ref(&scores),
                |t| attention_probs(t[0].clone().reshape(shape), bias.clone(), scale, &dropout),
                |t| {
                    let probs = softmax(
                        t[0].clone().reshape(shape).mul_scalar(scale) + bias.clone(),
                        3,
                    );
                    host::dropout(&dropout, probs)
                },
                2e-6,
            );
        }
    }

    #[test]
    fn residual_layer_norm_matches_burns_layer_norm() {
        let device = Device::flex().autodiff();
        let (rows, hidden) = (301, 96);
        let x = random([rows, hidden], &device);
        let residual = random([rows, hidden], &device);
        let mut norm = LayerNormConfig::new(hidden)
            .with_epsilon(1e-12)
            .init(&device);
        // Non-trivial γ and β, tracked as parameters are.
        norm.gamma = norm.gamma.map(|_| {
            with_device_rng(|| Tensor::random([hidden], Distribution::Normal(1.0, 0.5), &device))
                .require_grad()
        });
        norm.beta = norm.beta.map(|b| {
            b.map(|_| {
                with_device_rng(|| {
                    Tensor::random([hidden], Distribution::Normal(0.0, 0.5), &device)
                })
                .require_grad()
            })
        });
        for p in [0.0, 0.1] {
            let dropout = DropoutConfig::new(p).init();
            compare(
                &format!("layer norm (p = {p})"),
                &[x.clone(), residual.clone()],
                |t| residual_layer_norm(t[0].clone(), t[1].clone(), &norm, 1e-12, &dropout),
                |t| norm.forward(host::dropout(&dropout, t[0].clone()) + t[1].clone()),
                2e-5,
            );
        }
        // γ and β gradients, summed over rows in fixed blocks.
        let grads_of = |fused_op: bool| {
            let out = if fused_op {
                residual_layer_norm(
                    x.clone(),
                    residual.clone(),
                    &norm,
                    1e-12,
                    &DropoutConfig::new(0.0).init(),
                )
            } else {
                norm.forward(x.clone() + residual.clone())
            };
            let grads = (out.clone() * out).sum().backward();
            (
                vec(norm.gamma.val().grad(&grads).unwrap()),
                vec(norm.beta.as_ref().unwrap().val().grad(&grads).unwrap()),
            )
        };
        let ((gf, bf), (gc, bc)) = (grads_of(true), grads_of(false));
        assert_close("γ gradient", &gf, &gc, 1e-4);
        assert_close("β gradient", &bf, &bc, 1e-4);
    }

    #[test]
    fn gelu_without_autodiff_is_burns_within_3e7() {
        let device = Device::flex();
        let x = with_device_rng(|| {
            Tensor::<2>::random([300, 257], Distribution::Normal(0.0, 3.0), &device)
        });
        let (ours, burns) = (vec(gelu(x.clone())), vec(burn_gelu(x.clone())));
        for ((a, b), x) in ours.iter().zip(&burns).zip(vec(x)) {
            assert!(
                (a - b).abs() <= 3e-7 * x.abs().max(1.0) + 2.0 * f32::EPSILON * b.abs(),
                "gelu({x}) = {a}, burn {b}"
            );
        }
    }

    #[test]
    fn gelu_matches_burns_value_and_gradient() {
        let device = Device::flex().autodiff();
        let x = random([70, 301], &device);
        compare(
            "gelu",
            std::slice::from_ref(&x),
            |t| gelu(t[0].clone()),
            |t| burn_gelu(t[0].clone()),
            1e-6,
        );
    }

    // ---- the in-place path -------------------------------------------
    //
    // In the model the fused ops take fresh matmul products, which nothing
    // else holds, and their backward passes take gradients that nothing else
    // holds: those buffers are overwritten. The tests above hand them clones
    // (copied, never overwritten); these hand them fresh products of leaf
    // tensors, check that the buffers were overwritten (`writes_of`), and
    // compare values and the gradients of the leaves with burn's ops.

    #[test]
    fn attention_probs_overwrite_fresh_scores_and_gradients() {
        let device = Device::flex().autodiff();
        let (batch, heads, queries, keys, head_dim) = (2, 3, 29, 33, 16);
        let q = random([batch * heads * queries, head_dim], &device);
        let k = random([head_dim, keys], &device);
        let mask = Tensor::<1, burn::tensor::Int>::from_ints(
            (0..batch * keys)
                .map(|i| i64::from(i % keys < 20 || i < keys))
                .collect::<Vec<_>>()
                .as_slice(),
            &device,
        )
        .reshape([batch, keys]);
        let bias = crate::attention::mask_bias(mask);
        let shape = [batch, heads, queries, keys];
        let scores = |t: &[Tensor<2>]| t[0].clone().matmul(t[1].clone()).reshape(shape);
        for p in [0.0, 0.1] {
            let dropout = DropoutConfig::new(p).init();
            let ((), writes) = writes_of(|| {
                compare(
                    &format!("attention of a fresh product (p = {p})"),
                    &[q.clone(), k.clone()],
                    |t| attention_probs(scores(t), bias.clone(), 0.25, &dropout),
                    |t| {
                        host::dropout(
                            &dropout,
                            softmax(scores(t).mul_scalar(0.25) + bias.clone(), 3),
                        )
                    },
                    2e-6,
                )
            });
            assert_eq!(
                writes,
                [("attention forward", true), ("attention backward", true)],
                "p = {p}"
            );
        }
        // Inference: the same in place, without autodiff.
        let plain = Device::flex();
        let to_plain = |t: &Tensor<2>| Tensor::<2>::from_data(t.to_data(), &plain);
        let (q, k) = (to_plain(&q), to_plain(&k));
        let bias = Tensor::<4>::from_data(bias.to_data(), &plain);
        let dropout = DropoutConfig::new(0.0).init();
        let reference = vec(softmax(
            q.clone().matmul(k.clone()).reshape(shape).mul_scalar(0.25) + bias.clone(),
            3,
        ));
        let (ours, writes) = writes_of(|| {
            vec(attention_probs(
                q.matmul(k).reshape(shape),
                bias,
                0.25,
                &dropout,
            ))
        });
        assert_eq!(writes, [("attention forward", true)]);
        assert_close("attention inference", &ours, &reference, 2e-6);
    }

    #[test]
    fn attention_matches_the_composed_heads_in_value_and_gradient() {
        let device = Device::flex().autodiff();
        // Ragged sequences (around the 16-lane width), padding keys in the
        // second sequence, heads narrower and wider than a vector.
        for (batch, seq_len, heads, d) in [(3, 19, 4, 8), (2, 33, 2, 24), (1, 1, 3, 5)] {
            let hidden = heads * d;
            let rows = batch * seq_len;
            let qkv: Vec<Tensor<2>> = (0..3).map(|_| random([rows, hidden], &device)).collect();
            let mask = Tensor::<1, burn::tensor::Int>::from_ints(
                (0..batch * seq_len)
                    .map(|i| i64::from(i / seq_len != 1 || i % seq_len < seq_len.div_ceil(2)))
                    .collect::<Vec<_>>()
                    .as_slice(),
                &device,
            )
            .reshape([batch, seq_len]);
            let bias = crate::attention::mask_bias(mask);
            let scale = 1.0 / (d as f64).sqrt();
            for p in [0.0, 0.1] {
                let dropout = DropoutConfig::new(p).init();
                let three = |t: &[Tensor<2>]| [t[0].clone(), t[1].clone(), t[2].clone()];
                compare(
                    &format!("attention {batch}×{seq_len}, {heads} heads of {d} (p = {p})"),
                    &qkv,
                    |t| attention(three(t), bias.clone(), heads, &dropout),
                    |t| attention_composed(three(t), bias.clone(), heads, scale, &dropout),
                    2e-5,
                );
            }
            // Inference: the same without autodiff.
            let plain = Device::flex();
            let qkv: Vec<Tensor<2>> = qkv
                .iter()
                .map(|t| Tensor::from_data(t.to_data(), &plain))
                .collect();
            let bias = Tensor::<4>::from_data(bias.to_data(), &plain);
            let dropout = DropoutConfig::new(0.1).init();
            let three = [qkv[0].clone(), qkv[1].clone(), qkv[2].clone()];
            let ours = vec(attention(three.clone(), bias.clone(), heads, &dropout));
            let theirs = vec(attention_composed(three, bias, heads, scale, &dropout));
            assert_close("attention inference", &ours, &theirs, 2e-5);
        }
    }

    #[test]
    fn residual_layer_norm_overwrites_a_fresh_projection() {
        let device = Device::flex().autodiff();
        let (rows, inner, hidden) = (131, 48, 80);
        let a = random([rows, inner], &device);
        let w = random([inner, hidden], &device);
        let residual = random([rows, hidden], &device);
        let norm = LayerNormConfig::new(hidden)
            .with_epsilon(1e-12)
            .init(&device);
        for p in [0.0, 0.1] {
            let dropout = DropoutConfig::new(p).init();
            let ((), writes) = writes_of(|| {
                compare(
                    &format!("layer norm of a fresh product (p = {p})"),
                    &[a.clone(), w.clone(), residual.clone()],
                    |t| {
                        let x = t[0].clone().matmul(t[1].clone());
                        residual_layer_norm(x, t[2].clone(), &norm, 1e-12, &dropout)
                    },
                    |t| {
                        let x = t[0].clone().matmul(t[1].clone());
                        norm.forward(host::dropout(&dropout, x) + t[2].clone())
                    },
                    2e-5,
                )
            });
            assert_eq!(writes, [("norm forward", true)], "p = {p}");
        }
    }

    #[test]
    fn gelu_overwrites_fresh_products_and_gradients() {
        // Training: the graph keeps x for the backward pass, so the forward
        // copies; the backward overwrites the incoming gradient.
        let device = Device::flex().autodiff();
        let a = random([61, 40], &device);
        let b = random([40, 97], &device);
        let ((), writes) = writes_of(|| {
            compare(
                "gelu of a fresh product",
                &[a.clone(), b.clone()],
                |t| gelu(t[0].clone().matmul(t[1].clone())),
                |t| burn_gelu(t[0].clone().matmul(t[1].clone())),
                // The polynomial Φ's 3e-7, summed over the product's 97
                // columns in the leaves' gradients (measured 1.9e-6).
                5e-6,
            )
        });
        assert_eq!(writes, [("gelu forward", false), ("gelu backward", true)]);
        // Inference: the product is overwritten; a tensor still held is not.
        let plain = Device::flex();
        let to_plain = |t: &Tensor<2>| Tensor::<2>::from_data(t.to_data(), &plain);
        let (a, b) = (to_plain(&a), to_plain(&b));
        let x = a.clone().matmul(b.clone());
        let reference = vec(burn_gelu(x.clone()));
        let (held, writes) = writes_of(|| vec(gelu(x.clone())));
        assert_eq!(writes, [("gelu forward", false)]);
        let (fresh, writes) = writes_of(|| vec(gelu(a.matmul(b))));
        assert_eq!(writes, [("gelu forward", true)]);
        assert_eq!(fresh, held, "in place or not, the same values");
        for ((ours, theirs), x) in fresh.iter().zip(&reference).zip(vec(x)) {
            assert!(
                (ours - theirs).abs()
                    <= 3e-7 * x.abs().max(1.0) + 2.0 * f32::EPSILON * theirs.abs(),
                "gelu({x}) = {ours}, burn {theirs}"
            );
        }
    }
}
