//! Training parity with PyTorch: five `torch.optim.AdamW` steps of
//! `shared/fixtures/hf-parity/make_fixture.py` (lr 1e-4, betas 0.9/0.999,
//! eps 1e-8, weight decay 0.01 on every parameter, dropout 0, mean
//! cross-entropy on the whole batch). The loss at each step must be within
//! `loss_per_step_rel` and the logits after the fifth step within
//! `logits_after_5_adamw_steps_max_abs` of meta.json. The global gradient
//! norm, which meta.json also records, is held to the loss tolerance.

use valor_bert::burn::module::{Module, ModuleVisitor, Param};
use valor_bert::burn::optim::GradientsParams;
use valor_bert::burn::tensor::{Int, Tensor, TensorData};
use valor_bert::optim::gradients;
use valor_bert::{AdamW, AdamWConfig, DecayMask, LoadOptions, cross_entropy};
use valor_testkit::{Tolerance, assert_all_close, assert_close, shared_dir};

use crate::common::{self, fixture, load_hf, meta, minilm, read_tensor, reference_input};

/// √(Σ‖g‖²) over every parameter's gradient, in f64 as the fixture does.
fn global_norm<M: Module>(model: &M, grads: &GradientsParams) -> f64 {
    struct Norm<'a> {
        grads: &'a GradientsParams,
        sum: f64,
    }
    impl ModuleVisitor for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let v = g.try_into_vec_as::<f32>().unwrap();
                self.sum += v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>();
            }
        }
    }
    let mut n = Norm { grads, sum: 0.0 };
    model.visit(&mut n);
    n.sum.sqrt()
}

#[valor_testkit::shared_test]
fn five_adamw_steps_match_pytorch() {
    let shared = shared_dir();
    let meta = meta(&shared);
    let train = &meta["train"];
    let plain = common::device();
    let device = plain.clone().autodiff();
    let options = LoadOptions {
        num_labels: Some(3),
        head: Some(fixture(&shared).join("head.safetensors")),
        dropout: Some(train["dropout"].as_f64().unwrap()),
        ..LoadOptions::default()
    };
    let (_, mut model, report) = load_hf(&minilm(&shared), &device, options).unwrap();
    assert!(report.is_complete());

    let (input, [batch, _], _) = reference_input(&shared, &device);
    let reference = fixture(&shared).join("reference.safetensors");
    let (_, labels) = read_tensor(&reference, "train_labels");
    let labels = Tensor::<1, Int>::from_data(
        TensorData::new(
            labels.iter().map(|&l| l as i64).collect::<Vec<_>>(),
            [batch],
        ),
        &device,
    );

    let betas = train["betas"].as_array().unwrap();
    let config = AdamWConfig {
        beta1: betas[0].as_f64().unwrap(),
        beta2: betas[1].as_f64().unwrap(),
        eps: train["eps"].as_f64().unwrap(),
        weight_decay: train["weight_decay"].as_f64().unwrap(),
        decay_mask: DecayMask::All,
    };
    let lr = train["lr"].as_f64().unwrap();
    let mut optim = AdamW::new(config, &model);
    let loss_tol = Tolerance::rel(meta["tolerances"]["loss_per_step_rel"].as_f64().unwrap());

    let steps = train["steps"].as_u64().unwrap() as usize;
    for step in 0..steps {
        let loss = cross_entropy(model.forward(input.clone()), labels.clone());
        let value = f64::from(loss.clone().into_scalar::<f32>());
        let expected = train["loss_per_step"][step].as_f64().unwrap();
        assert_close(&format!("loss at step {step}"), value, expected, loss_tol);
        let grads = gradients(&loss, &model);
        let norm = global_norm(&model, &grads);
        let expected = train["grad_global_norm_per_step"][step].as_f64().unwrap();
        assert_close(
            &format!("gradient norm at step {step}"),
            norm,
            expected,
            loss_tol,
        );
        model = optim.step(model, grads, lr);
    }

    let model = model.valid();
    let (input, _, _) = reference_input(&shared, &plain);
    let logits = common::to_f64(model.forward(input));
    let (_, expected) = read_tensor(&reference, "logits_after_5_adamw_steps");
    let tol = meta["tolerances"]["logits_after_5_adamw_steps_max_abs"]
        .as_f64()
        .unwrap();
    assert_all_close(
        "logits after 5 AdamW steps",
        &logits,
        &expected,
        Tolerance::abs(tol),
    );
}

/// With zero gradients an AdamW step only applies the decoupled decay
/// `p ← p·(1 − lr·λ)`, which shows exactly which parameters the mask decays.
#[test]
fn decay_mask_exempts_biases_and_layer_norms() {
    let device = crate::common::device().autodiff();
    let config = crate::common::small_config().with_dropout(0.0);
    let (input, _, _) = crate::common::small_batch(&device);
    let (lr, wd) = (0.1, 0.5);
    for (mask, expect_gamma) in [
        (DecayMask::All, 1.0 - lr * wd),
        (DecayMask::ExceptBiasAndLayerNorm, 1.0),
    ] {
        let model = crate::common::small_model(&config, &device, 17);
        let weight_before = model
            .bert
            .pooler
            .dense
            .weight
            .val()
            .try_into_vec_as::<f32>()
            .unwrap();
        let config = AdamWConfig {
            weight_decay: wd,
            decay_mask: mask,
            ..AdamWConfig::default()
        };
        let mut optim = AdamW::new(config, &model);
        if mask == DecayMask::ExceptBiasAndLayerNorm {
            // Per layer 6 linear biases and 2 LayerNorms; embeddings
            // LayerNorm; pooler and classifier biases.
            assert_eq!(optim.no_decay_params(), 2 * (6 + 4) + 2 + 2);
        }
        let zero = model.forward(input.clone()).sum().mul_scalar(0.0);
        let grads = gradients(&zero, &model);
        let model = optim.step(model, grads, lr);

        let gamma = model.bert.encoder.layers[1].layer_norm.gamma.val();
        for g in gamma.try_into_vec_as::<f32>().unwrap() {
            assert_close(
                "LayerNorm gamma",
                f64::from(g),
                expect_gamma,
                Tolerance::abs(1e-6),
            );
        }
        let weight_after = model
            .bert
            .pooler
            .dense
            .weight
            .val()
            .try_into_vec_as::<f32>()
            .unwrap();
        let scaled: Vec<f64> = weight_before
            .iter()
            .map(|&w| f64::from(w) * (1.0 - lr * wd))
            .collect();
        let after: Vec<f64> = weight_after.iter().map(|&w| f64::from(w)).collect();
        assert_all_close(
            "decayed pooler weight",
            &after,
            &scaled,
            Tolerance::abs(1e-7),
        );
    }
}
