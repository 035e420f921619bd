//! Integrated gradients (Sundararajan et al. 2017, "Axiomatic Attribution
//! for Deep Networks") at the output of `bert.embeddings`, as Captum's
//! `LayerIntegratedGradients(f, model.bert.embeddings)` computes it:
//!
//! `attr_i = (e_i - e'_i) · Σ_k w_k ∂f/∂e_i (e' + α_k (e - e'))`,
//!
//! with `e` the embeddings output of the input and `e'` of the baseline ids,
//! `f` the target class's logit (the fixture's `make_captum_ig.py` attributes
//! the logits), `(α_k, w_k)` a quadrature rule on `[0, 1]`
//! ([`integration_points`], Captum's `approximation_methods`). The
//! interpolation steps run in batches of `internal_batch_size`, so memory
//! grows with that, not with `n_steps`. Per-token attributions are summed over
//! the hidden dimension. Completeness: `Σ attr = f(x) − f(baseline)` up to the
//! quadrature error; the difference is reported as `delta` (Captum's
//! convergence delta).
//!
//! Two exact shortcuts, where Captum runs the full model on every step: the
//! last layer runs for the `[CLS]` rows alone (all the head reads), and when
//! every `α_k > 0` (Gauss–Legendre, Riemann middle and right) the gradient
//! is taken with respect to `e − e'` rather than to each step's input, the
//! steps' logits weighted by `w_k / α_k`, so that the first layer's
//! projections, affine in `α_k`, run on `e'` and `e` alone
//! ([`BertForSequenceClassification::logits_from_interpolation`]). The
//! rules with a step at `α = 0` differentiate each step's input.

use burn::tensor::{Tensor, TensorData};

use super::{TokenSequence, input_err, read};
use crate::classifier::BertForSequenceClassification;
use crate::error::Result;

/// Quadrature rule for the path integral (Captum's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rule {
    /// Gauss–Legendre nodes mapped to `[0, 1]` (Captum's default).
    #[default]
    GaussLegendre,
    /// Left Riemann sum: `α = k / n`.
    RiemannLeft,
    /// Right Riemann sum: `α = (k + 1) / n`.
    RiemannRight,
    /// Midpoint rule: `α = (k + ½) / n`.
    RiemannMiddle,
    /// Trapezoid rule on `n` equally spaced points including both ends.
    RiemannTrapezoid,
}

impl std::str::FromStr for Rule {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "gausslegendre" | "gauss_legendre" | "gl" => Ok(Self::GaussLegendre),
            "riemann_left" | "left" => Ok(Self::RiemannLeft),
            "riemann_right" | "right" => Ok(Self::RiemannRight),
            "riemann_middle" | "middle" => Ok(Self::RiemannMiddle),
            "riemann_trapezoid" | "trapezoid" => Ok(Self::RiemannTrapezoid),
            _ => Err(input_err(format!(
                "unknown integration rule `{s}`; choose gausslegendre, riemann_left, riemann_right, riemann_middle or riemann_trapezoid"
            ))),
        }
    }
}

/// Settings of [`integrated_gradients`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IgConfig {
    /// Number of interpolation steps (Captum's `n_steps`).
    pub n_steps: usize,
    pub rule: Rule,
    /// Interpolation steps per forward/backward pass (Captum's `internal_batch_size`).
    pub internal_batch_size: usize,
}

impl Default for IgConfig {
    /// Captum's defaults: 50 Gauss–Legendre steps; 25 steps per pass.
    fn default() -> Self {
        Self {
            n_steps: 50,
            rule: Rule::GaussLegendre,
            internal_batch_size: 25,
        }
    }
}

/// One integrated-gradients explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct IgExplanation {
    /// The class explained.
    pub target: usize,
    /// Per position (padding included, where it is 0), summed over the hidden dimension.
    pub token_attributions: Vec<f64>,
    /// `f(x)`: the target logit of the input.
    pub logit: f64,
    /// `f(baseline)`: the target logit of the baseline.
    pub baseline_logit: f64,
    /// `Σ attributions − (f(x) − f(baseline))` (Captum's convergence delta).
    pub delta: f64,
}

impl IgExplanation {
    /// `|delta|` relative to `|f(x) − f(baseline)|`.
    pub fn relative_delta(&self) -> f64 {
        self.delta.abs()
            / (self.logit - self.baseline_logit)
                .abs()
                .max(f64::MIN_POSITIVE)
    }
}

/// Points `α_k` and weights `w_k` of `rule` with `n` steps on `[0, 1]`
/// (Captum's `approximation_parameters`; Gauss–Legendre as numpy's
/// `leggauss`, mapped by `α = (1 + x) / 2`, `w = w_x / 2`).
pub fn integration_points(rule: Rule, n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    if n == 0 || (rule == Rule::RiemannTrapezoid && n < 2) {
        return Err(input_err(format!(
            "integrated gradients needs at least {} steps, got {n}",
            if rule == Rule::RiemannTrapezoid { 2 } else { 1 }
        )));
    }
    let nf = n as f64;
    let uniform = |shift: f64| -> (Vec<f64>, Vec<f64>) {
        (
            (0..n).map(|k| (k as f64 + shift) / nf).collect(),
            vec![1.0 / nf; n],
        )
    };
    Ok(match rule {
        Rule::RiemannLeft => uniform(0.0),
        Rule::RiemannRight => uniform(1.0),
        Rule::RiemannMiddle => uniform(0.5),
        Rule::RiemannTrapezoid => {
            let h = 1.0 / (nf - 1.0);
            let a = (0..n).map(|k| k as f64 * h).collect();
            let mut w = vec![h; n];
            w[0] = h / 2.0;
            w[n - 1] = h / 2.0;
            (a, w)
        }
        Rule::GaussLegendre => {
            let (x, w) = gauss_legendre(n);
            (
                x.iter().map(|x| 0.5 * (1.0 + x)).collect(),
                w.iter().map(|w| 0.5 * w).collect(),
            )
        }
    })
}

/// Nodes (ascending) and weights of the `n`-point Gauss–Legendre rule on
/// `[-1, 1]`, by Newton's method on the Legendre polynomial `P_n`.
fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut x = vec![0.0; n];
    let mut w = vec![0.0; n];
    let nf = n as f64;
    for i in 0..n.div_ceil(2) {
        let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (nf + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            // P_n(z) and P_n'(z) by the three-term recurrence.
            let (mut p0, mut p1) = (1.0, z);
            for k in 2..=n {
                let kf = k as f64;
                let p2 = ((2.0 * kf - 1.0) * z * p1 - (kf - 1.0) * p0) / kf;
                p0 = p1;
                p1 = p2;
            }
            let pn = if n == 1 { z } else { p1 };
            let pn1 = if n == 1 { 1.0 } else { p0 };
            dp = nf * (z * pn - pn1) / (z * z - 1.0);
            if n == 1 {
                dp = 1.0;
            }
            let dz = pn / dp;
            z -= dz;
            if dz.abs() < 1e-15 {
                break;
            }
        }
        let weight = 2.0 / ((1.0 - z * z) * dp * dp);
        x[i] = -z;
        x[n - 1 - i] = z;
        w[i] = weight;
        w[n - 1 - i] = weight;
    }
    (x, w)
}

/// Integrated gradients of class `target` (the predicted class when `None`)
/// for one sequence, against `baseline_ids` (same length; see
/// [`pad_baseline`](super::pad_baseline)).
///
/// `model` must live on an autodiff device and should be frozen
/// (`model.freeze()`: no parameter gradients, dropout off).
pub fn integrated_gradients(
    model: &BertForSequenceClassification,
    seq: &TokenSequence,
    baseline_ids: &[u32],
    target: Option<usize>,
    config: &IgConfig,
) -> Result<IgExplanation> {
    seq.check()?;
    let device = model.classifier.weight.val().device();
    if !device.is_autodiff() {
        return Err(input_err(
            "integrated gradients needs the model on an autodiff device (valor_bert::autodiff_device) and frozen".into(),
        ));
    }
    let n = seq.len();
    if baseline_ids.len() != n {
        return Err(input_err(format!(
            "the baseline has {} ids but the sequence {n}",
            baseline_ids.len()
        )));
    }
    let (alphas, weights) = integration_points(config.rule, config.n_steps)?;
    let chunk = config.internal_batch_size.max(1);

    let input = seq.batch(1, &device)?;
    let base_seq = TokenSequence {
        input_ids: baseline_ids.to_vec(),
        ..seq.clone()
    };
    let base_input = base_seq.batch(1, &device)?;
    let emb = model
        .embed(input.input_ids, input.token_type_ids.clone())
        .detach();
    let base = model
        .embed(base_input.input_ids, base_input.token_type_ids)
        .detach();
    let hidden = emb.dims()[2];

    let logits_of =
        |e: Tensor<3>, rows: usize| model.logits_from_embeddings(e, seq.mask_tensor(rows, &device));
    let logits = read(logits_of(emb.clone(), 1), "logits")?;
    let classes = logits.len();
    let target = match target {
        Some(t) if t < classes => t,
        Some(t) => {
            return Err(input_err(format!(
                "target class {t} but the model has {classes} classes"
            )));
        }
        None => super::top_k(&logits, 1)[0],
    };
    let baseline_logits = read(logits_of(base.clone(), 1), "baseline logits")?;

    let diff = emb - base.clone();
    let mut total: Option<Tensor<3>> = None;
    for (a, w) in alphas.chunks(chunk).zip(weights.chunks(chunk)) {
        let k = a.len();
        let col = |v: &[f64]| -> Tensor<3> {
            let data =
                TensorData::new(v.iter().map(|&x| x as f32).collect::<Vec<f32>>(), [k, 1, 1]);
            Tensor::from_data(data, &device)
        };
        // The gradient of the scalar `of` at `at`, back on the model's device.
        let gradient = |of: Tensor<1>, at: &Tensor<3>| -> Result<Tensor<3>> {
            let grads = of.backward();
            Ok(at
                .grad(&grads)
                .ok_or_else(|| input_err("no gradient reached the embeddings".into()))?
                .to_device(&device))
        };
        let weighted = if a.iter().all(|&a| a > 0.0) {
            // The k rows are base + α·diff: differentiate with respect to
            // diff, whose gradient is Σ α_i ∂F/∂x(x_i), so weighting row i
            // by w_i/α_i gives Σ w_i ∂F/∂x(x_i) directly, and the first
            // layer projects base and base + diff alone.
            let delta = diff.clone().detach().require_grad();
            let out = model.logits_from_interpolation(
                base.clone(),
                delta.clone(),
                col(a).reshape([k]),
                seq.mask_tensor(k, &device),
            );
            let scaled: Vec<f64> = w.iter().zip(a).map(|(w, a)| w / a).collect();
            let picked = out.slice([0..k, target..target + 1]).reshape([k, 1, 1]);
            gradient((picked * col(&scaled)).sum(), &delta)?
        } else {
            let x = (base.clone() + diff.clone() * col(a))
                .detach()
                .require_grad();
            let out = logits_of(x.clone(), k);
            let g = gradient(out.slice([0..k, target..target + 1]).sum(), &x)?;
            (g * col(w)).sum_dim(0)
        };
        total = Some(match total {
            Some(t) => t + weighted,
            None => weighted,
        });
    }
    let total = total.ok_or_else(|| input_err("no integration steps".into()))?;
    let attr = (diff * total).sum_dim(2).reshape([n]);
    let token_attributions = read(attr, "attributions")?;
    debug_assert_eq!(token_attributions.len(), n, "hidden {hidden}");
    let logit = logits[target];
    let baseline_logit = baseline_logits[target];
    let delta = token_attributions.iter().sum::<f64>() - (logit - baseline_logit);
    Ok(IgExplanation {
        target,
        token_attributions,
        logit,
        baseline_logit,
        delta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_integrates_polynomials_exactly() {
        for n in [1, 2, 5, 50, 300] {
            let (a, w) = integration_points(Rule::GaussLegendre, n).unwrap();
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "n={n}");
            assert!(a.windows(2).all(|p| p[0] < p[1]), "ascending, n={n}");
            // ∫_0^1 x^(2n-1) dx = 1 / (2n).
            let deg = (2 * n - 1).min(40) as i32;
            let s: f64 = a.iter().zip(&w).map(|(x, w)| w * x.powi(deg)).sum();
            assert!((s - 1.0 / f64::from(deg + 1)).abs() < 1e-12, "n={n}: {s}");
        }
    }

    #[test]
    fn riemann_rules_sum_to_one() {
        for rule in [
            Rule::RiemannLeft,
            Rule::RiemannRight,
            Rule::RiemannMiddle,
            Rule::RiemannTrapezoid,
        ] {
            let (a, w) = integration_points(rule, 10).unwrap();
            assert_eq!(a.len(), 10);
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{rule:?}");
        }
        assert!(integration_points(Rule::RiemannTrapezoid, 1).is_err());
        assert!(integration_points(Rule::GaussLegendre, 0).is_err());
        assert_eq!(
            "gausslegendre".parse::<Rule>().unwrap(),
            Rule::GaussLegendre
        );
        assert!("simpson".parse::<Rule>().is_err());
    }
}
