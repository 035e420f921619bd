//! The fairness penalties: values by hand, gradients against finite
//! differences, and a toy problem on which λ > 0 cuts the gap.

use valor_bert::burn::module::Module;
use valor_bert::burn::nn::{Linear, LinearConfig};
use valor_bert::burn::tensor::activation::{log_softmax, softmax};
use valor_bert::burn::tensor::{Device, Int, Tensor, TensorData};
use valor_bert::optim::gradients;
use valor_bert::{AdamW, AdamWConfig, Backend};
use valor_train::penalty::{demographic_parity_penalty, equalized_odds_penalty};

fn device() -> Device {
    valor_bert::device(Backend::Cpu).unwrap()
}

fn tensor2(v: &[f32], shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), device)
}

fn value(t: Tensor<1>) -> f64 {
    f64::from(t.try_into_vec_as::<f32>().unwrap()[0])
}

#[test]
fn penalty_values_by_hand() {
    let d = device();
    // Group 0 rows: p = (.5 .5 0), (.1 .9 0); group 1: (.2 .2 .6).
    let p = tensor2(&[0.5, 0.5, 0.0, 0.1, 0.9, 0.0, 0.2, 0.2, 0.6], [3, 3], &d);
    // Means g0 (.3 .7 0), g1 (.2 .2 .6): gaps .1 .5 .6, mean .4.
    let dp = value(demographic_parity_penalty(&p, &[0, 0, 1]).unwrap());
    assert!((dp - 0.4).abs() < 1e-6, "{dp}");
    assert!(
        demographic_parity_penalty(&p, &[1, 1, 1]).is_none(),
        "one group: no penalty"
    );
    // Labels 0,1,0: label 0 has rows 0 (g0) and 2 (g1): gaps .3 .3 .6; label 1 has one group.
    let eo = value(equalized_odds_penalty(&p, &[0, 0, 1], &[0, 1, 0]).unwrap());
    assert!((eo - 0.4).abs() < 1e-6, "{eo}");
}

#[test]
fn penalty_gradient_matches_finite_differences() {
    let plain = device();
    let ad = plain.clone().autodiff();
    let logits: Vec<f32> = vec![
        0.3, -1.2, 0.8, 1.5, 0.1, -0.4, -0.7, 0.9, 0.2, 0.05, 0.6, -1.0, 1.1, -0.3, 0.4,
    ];
    let groups = [0, 1, 0, 1, 1];
    let labels = [0, 2, 1, 0, 2];
    for eo in [false, true] {
        let f = |v: &[f32], device: &Device| -> Tensor<1> {
            let probs = softmax(tensor2(v, [5, 3], device), 1);
            if eo {
                equalized_odds_penalty(&probs, &groups, &labels).unwrap()
            } else {
                demographic_parity_penalty(&probs, &groups).unwrap()
            }
        };
        let x = tensor2(&logits, [5, 3], &ad).require_grad();
        let probs = softmax(x.clone(), 1);
        let out = if eo {
            equalized_odds_penalty(&probs, &groups, &labels).unwrap()
        } else {
            demographic_parity_penalty(&probs, &groups).unwrap()
        };
        let grads = out.backward();
        let g = x.grad(&grads).unwrap().try_into_vec_as::<f32>().unwrap();
        let h = 1e-3f32;
        for i in 0..logits.len() {
            let (mut up, mut down) = (logits.clone(), logits.clone());
            up[i] += h;
            down[i] -= h;
            let numeric = (value(f(&up, &plain)) - value(f(&down, &plain))) / (2.0 * f64::from(h));
            assert!(
                (numeric - f64::from(g[i])).abs() < 2e-3,
                "{} d/dlogit[{i}]: autodiff {} vs numeric {numeric}",
                if eo { "EO" } else { "DP" },
                g[i]
            );
        }
    }
}

/// A linear classifier on (group, merit, noise) whose labels favour group
/// 1: the plain objective learns the group; λ = 2 takes most of the gap away.
#[test]
fn lambda_reduces_the_gap_on_a_toy_problem() {
    let plain = device();
    let ad = plain.clone().autodiff();
    let n = 400;
    let mut x = Vec::with_capacity(n * 3);
    let mut y = Vec::with_capacity(n);
    let mut groups = Vec::with_capacity(n);
    let mut state = 12345u64;
    let mut uniform = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f64) / ((1u64 << 31) as f64)
    };
    for i in 0..n {
        let g = (i % 2) as f32;
        let merit = uniform() as f32 * 2.0 - 1.0;
        let noise = uniform() as f32 * 2.0 - 1.0;
        x.extend([g, merit, noise]);
        y.push(i64::from(merit + 1.2 * g - 0.6 + 0.3 * noise > 0.0));
        groups.push(g as u32);
    }
    let xs = tensor2(&x, [n, 3], &ad);
    let ys = Tensor::<1, Int>::from_data(TensorData::new(y, [n]), &ad);
    let gap = |lambda: f64| -> f64 {
        let mut model: Linear = valor_bert::with_device_rng(|| {
            ad.seed(7);
            LinearConfig::new(3, 2).init(&ad)
        });
        let mut optim = AdamW::new(
            AdamWConfig {
                weight_decay: 0.0,
                ..Default::default()
            },
            &model,
        );
        for _ in 0..300 {
            let logits = model.forward(xs.clone());
            let logp = log_softmax(logits, 1);
            let ce = logp
                .clone()
                .gather(1, ys.clone().reshape([n, 1]))
                .mean()
                .neg();
            let pen = demographic_parity_penalty(&logp.exp(), &groups).unwrap();
            let loss = ce + pen.mul_scalar(lambda);
            let grads = gradients(&loss, &model);
            model = optim.step(model, grads, 0.05);
        }
        let pred = model
            .valid()
            .forward(tensor2(&x, [n, 3], &plain))
            .argmax(1)
            .try_into_vec_as::<i64>()
            .unwrap();
        let rate = |g: u32| {
            let rows: Vec<usize> = (0..n).filter(|&i| groups[i] == g).collect();
            rows.iter().filter(|&&i| pred[i] == 1).count() as f64 / rows.len() as f64
        };
        (rate(1) - rate(0)).abs()
    };
    let (unfair, fair) = (gap(0.0), gap(2.0));
    assert!(
        unfair > 0.3,
        "the plain objective should learn the group: gap {unfair}"
    );
    assert!(
        fair < 0.5 * unfair,
        "λ = 2 should cut the gap at least in half: {unfair} → {fair}"
    );
}
