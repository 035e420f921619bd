//! One optimizer step's arithmetic: the objective of a micro-batch
//! (weighted cross-entropy plus λ times the fairness penalty; under
//! constraints, the cross-entropy of each row's Lagrangian target and
//! weight, see [`super::constrained::row_target`]), forward and
//! backward over the data-parallel shards, and the global gradient norm
//! and its clipping.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use valor_base::splitmix::splitmix64_xor;
use valor_bert::{BertForSequenceClassification, BertInput, with_device_rng};
use valor_data::{Encoded, collate};

use super::constrained::row_target;
use super::prepare::Context;
use crate::error::{Error, Result};
use crate::penalty::fairness_penalty;

/// A well-mixed 64-bit seed from a seed and a counter (SplitMix64 with
/// the counter XORed in, valor-base's [`splitmix64_xor`]): the dropout
/// seed of micro-batch `counter`.
pub(super) fn mix(seed: u64, counter: u64) -> u64 {
    splitmix64_xor(seed, counter)
}

pub(super) fn input_of(batch: &valor_data::Batch, device: &Device) -> Result<BertInput> {
    Ok(BertInput::from_flat(
        &batch.input_ids,
        &batch.attention_mask,
        &batch.token_type_ids,
        [batch.batch_size, batch.seq_len],
        device,
    )?)
}

pub(super) fn scalar(t: Tensor<1>, name: &str) -> Result<f64> {
    t.try_into_vec_as::<f32>()
        .map(|v| f64::from(v[0]))
        .map_err(|e| Error::TensorRead {
            name: name.to_string(),
            message: e.to_string(),
        })
}

/// Values of one micro-batch.
pub(super) struct MicroOutcome {
    pub(super) grads: GradientsParams,
    pub(super) objective: f64,
    pub(super) cross_entropy_sum: f64,
    pub(super) penalty: Option<f64>,
    /// Constrained training: rows whose target was not (only) their label.
    pub(super) relabelled: usize,
}

/// Forward and backward of one micro-batch; the loss is normalised by
/// `step_examples`, the examples of the whole optimizer step.
fn micro_batch(
    ctx: &Context,
    model: &BertForSequenceClassification,
    device: &Device,
    rows: &[usize],
    step_examples: usize,
    dropout_seed: u64,
    multipliers: &[f64],
) -> Result<MicroOutcome> {
    let logits = forward(ctx, model, device, rows, dropout_seed)?;
    let labels: Vec<u32> = rows.iter().map(|&i| ctx.train.data.labels[i].0).collect();
    let (label_t, weight_t) = label_and_weight_tensors(ctx, device, rows, &labels);
    let log_probs = log_softmax(logits, 1);
    let ce_sum = weighted_cross_entropy_sum(log_probs.clone(), label_t, weight_t);
    let (mut loss, relabelled) = match lagrangian_cross_entropy_sum(
        ctx,
        device,
        rows,
        &labels,
        log_probs.clone(),
        multipliers,
    ) {
        Some((sum, relabelled)) => (sum.div_scalar(step_examples as f64), relabelled),
        None => (ce_sum.clone().div_scalar(step_examples as f64), 0),
    };
    let probs = log_probs.exp();
    let (penalty_term, penalty) = fairness_term(ctx, rows, &labels, probs)?;
    if let Some(p) = penalty_term {
        let lambda = ctx.config.fairness.lambda;
        loss = loss + p.mul_scalar(lambda * rows.len() as f64 / step_examples as f64);
    }
    let objective = scalar(loss.clone(), "loss")?;
    let cross_entropy_sum = scalar(ce_sum, "cross-entropy")?;
    if !objective.is_finite() {
        return Ok(MicroOutcome {
            grads: GradientsParams::new(),
            objective,
            cross_entropy_sum,
            penalty,
            relabelled,
        });
    }
    let grads = GradientsParams::from_grads(loss.backward(), model);
    Ok(MicroOutcome {
        grads,
        objective,
        cross_entropy_sum,
        penalty,
        relabelled,
    })
}

/// The logits of `rows` (training split), with the device generator
/// seeded by `dropout_seed` for the pass.
fn forward(
    ctx: &Context,
    model: &BertForSequenceClassification,
    device: &Device,
    rows: &[usize],
    dropout_seed: u64,
) -> Result<Tensor<2>> {
    let encs: Vec<&Encoded> = rows.iter().map(|&i| &ctx.train.enc[i]).collect();
    let batch = collate(rows.to_vec(), &encs, ctx.pad_id);
    let input = input_of(&batch, device)?;
    // On the CPU, `--precision bf16` is autocast around the forward pass
    // (the Linear layers' products in bf16, forward and backward); on a
    // GPU the precision is the device's float dtype, already set.
    let autocast = match ctx.config.backend {
        valor_bert::Backend::Cpu => ctx.config.precision,
        _ => valor_bert::Precision::Fp32,
    };
    Ok(valor_bert::lowp::autocast(autocast, || {
        with_device_rng(|| {
            device.seed(dropout_seed);
            model.forward(input)
        })
    })?)
}

/// The micro-batch's labels and example weights as tensors on `device`.
fn label_and_weight_tensors(
    ctx: &Context,
    device: &Device,
    rows: &[usize],
    labels: &[u32],
) -> (Tensor<1, Int>, Tensor<1>) {
    let b = rows.len();
    let label_t = Tensor::<1, Int>::from_data(
        TensorData::new(
            labels.iter().map(|&l| i64::from(l)).collect::<Vec<_>>(),
            [b],
        ),
        device,
    );
    let weight_t = Tensor::<1>::from_data(
        TensorData::new(
            rows.iter()
                .map(|&i| ctx.weights[i] as f32)
                .collect::<Vec<_>>(),
            [b],
        ),
        device,
    );
    (label_t, weight_t)
}

/// Σ wᵢ · (−log pᵢ[yᵢ]) over the micro-batch.
fn weighted_cross_entropy_sum(
    log_probs: Tensor<2>,
    label_t: Tensor<1, Int>,
    weight_t: Tensor<1>,
) -> Tensor<1> {
    let b = label_t.dims()[0];
    let ce = log_probs
        .gather(1, label_t.reshape([b, 1]))
        .reshape([b])
        .neg();
    (ce * weight_t).sum()
}

/// The fairness penalty of the micro-batch: the term to add to the loss
/// (when λ > 0; it then carries gradients) and its value (computed on
/// detached probabilities when λ = 0, for the record).
fn fairness_term(
    ctx: &Context,
    rows: &[usize],
    labels: &[u32],
    probs: Tensor<2>,
) -> Result<(Option<Tensor<1>>, Option<f64>)> {
    let columns: Vec<Vec<u32>> = ctx
        .fair_columns
        .iter()
        .map(|col| rows.iter().map(|&i| col[i]).collect())
        .collect();
    let kind = ctx.config.fairness.penalty;
    if ctx.config.fairness.lambda > 0.0 {
        let p = fairness_penalty(kind, &probs, &columns, labels);
        let value = p
            .as_ref()
            .map(|p| scalar(p.clone(), "fairness penalty"))
            .transpose()?;
        Ok((p, value))
    } else {
        let value = fairness_penalty(kind, &probs.detach(), &columns, labels)
            .map(|p| scalar(p, "fairness penalty"))
            .transpose()?;
        Ok((None, value))
    }
}

/// Constrained training's objective of the micro-batch, when some
/// multiplier is positive: `Σ_i w_i · (−Σ_c t_ic log p_ic)` with each row's
/// Lagrangian target `t_i` and weight `w_i` ([`row_target`]), and how many
/// rows' targets left their label. `None` when every multiplier is 0 (the
/// objective is then the plain weighted cross-entropy).
fn lagrangian_cross_entropy_sum(
    ctx: &Context,
    device: &Device,
    rows: &[usize],
    labels: &[u32],
    log_probs: Tensor<2>,
    multipliers: &[f64],
) -> Option<(Tensor<1>, usize)> {
    if !multipliers.iter().any(|&m| m > 0.0) {
        return None;
    }
    let k = ctx.labels.len();
    let mut targets = Vec::with_capacity(rows.len() * k);
    let mut relabelled = 0;
    for (&i, &y) in rows.iter().zip(labels) {
        let (target, weight) = row_target(ctx, i, multipliers);
        if target[y as usize] < 1.0 {
            relabelled += 1;
        }
        targets.extend(target.iter().map(|&t| (t * weight) as f32));
    }
    let targets = Tensor::<2>::from_data(TensorData::new(targets, [rows.len(), k]), device);
    Some(((log_probs * targets).sum().neg(), relabelled))
}

/// Forward and backward of the shards of one micro-batch, shard `k` with
/// dropout seed `seeds[k]` on `ctx.shard_devices[k]`; the gradients come
/// back on the main device, in shard order.
///
/// With one device this is [`micro_batch`] on the model itself. With
/// several, as burn-train's multi-device strategy does, every shard gets
/// its own replica forked to its device (`Module::fork`: the same
/// parameter ids, a fresh autodiff graph, so concurrent backward passes
/// do not share nodes) and runs on its own thread; its gradients are moved
/// to the main device (`GradientsParams::to_device`). The replicas are
/// dropped after the step: the one model on the main device is updated
/// and forked again for the next micro-batch, so parameters never drift.
/// Forward passes take turns on the device generator lock (dropout must
/// draw from a seeded stream); backward passes overlap.
pub(super) fn forward_backward(
    ctx: &Context,
    model: &BertForSequenceClassification,
    parts: &[&[usize]],
    step_examples: usize,
    seeds: &[u64],
    multipliers: &[f64],
) -> Result<Vec<MicroOutcome>> {
    if ctx.shard_devices.len() == 1 {
        let out = micro_batch(
            ctx,
            model,
            &ctx.ad,
            parts[0],
            step_examples,
            seeds[0],
            multipliers,
        )?;
        return Ok(vec![out]);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .iter()
            .zip(seeds)
            .zip(&ctx.shard_devices)
            .map(|((&rows, &seed), device)| {
                let replica = model.clone();
                scope.spawn(move || -> Result<MicroOutcome> {
                    let replica = replica.fork(device);
                    let mut out = micro_batch(
                        ctx,
                        &replica,
                        device,
                        rows,
                        step_examples,
                        seed,
                        multipliers,
                    )?;
                    out.grads = out.grads.to_device(&ctx.plain, &replica);
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Splits a micro-batch into `n` contiguous shards whose sizes differ by at
/// most one (the first ones take the remainder); no shard is empty when
/// `rows.len() >= n`, and empty shards are dropped otherwise.
pub(super) fn shards(rows: &[usize], n: usize) -> Vec<&[usize]> {
    let (base, extra) = (rows.len() / n, rows.len() % n);
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    for k in 0..n {
        let len = base + usize::from(k < extra);
        if len > 0 {
            out.push(&rows[start..start + len]);
        }
        start += len;
    }
    out
}

/// √(Σ‖g‖²) over every parameter's gradient (PyTorch `clip_grad_norm_`'s
/// total norm, p = 2).
pub(super) fn global_grad_norm(
    model: &BertForSequenceClassification,
    grads: &GradientsParams,
) -> Result<f64> {
    struct Norm<'a> {
        grads: &'a GradientsParams,
        sum: Option<Tensor<1>>,
    }
    impl ModuleVisitor for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = g.square().sum();
                self.sum = Some(match self.sum.take() {
                    Some(acc) => acc + s,
                    None => s,
                });
            }
        }
    }
    let mut v = Norm { grads, sum: None };
    model.visit(&mut v);
    match v.sum {
        Some(s) => Ok(scalar(s, "gradient norm")?.sqrt()),
        None => Ok(0.0),
    }
}

pub(super) fn scale_grads(
    model: &BertForSequenceClassification,
    grads: &mut GradientsParams,
    factor: f64,
) {
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads
                    .register::<D>(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    model.visit(&mut Scale { grads, factor });
}
