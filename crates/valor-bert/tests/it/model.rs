//! Model behaviour that needs no checkpoint: padding invariance, the
//! outputs of `forward_full`, gradients, seeding, dropout, input checks.

use valor_bert::burn::module::{Module, ModuleVisitor, Param};
use valor_bert::burn::nn::DropoutConfig;
use valor_bert::burn::tensor::{Int, Tensor, TensorData};
use valor_bert::optim::gradients;
use valor_bert::{
    BertForSequenceClassification, BertInput, ForwardOptions, PackedInput, cross_entropy,
};
use valor_testkit::{Tolerance, assert_all_close, assert_close, max_abs_diff};

use crate::common::{self, small_batch, small_config, small_model, to_f64};

#[test]
fn padding_does_not_change_real_tokens() {
    let device = common::device();
    let config = small_config();
    let model = small_model(&config, &device, 7);
    let (input, ids, mask) = small_batch(&device);
    let out = model.forward_full(input, ForwardOptions::default());
    let batch_logits = to_f64(out.logits);
    let batch_emb = to_f64(out.sentence_embedding);
    for (r, (row, m)) in ids.iter().zip(&mask).enumerate() {
        let len = m.iter().filter(|&&x| x == 1).count();
        let alone =
            BertInput::from_rows(&[row[..len].to_vec()], &[m[..len].to_vec()], None, &device)
                .unwrap();
        let single = model.forward_full(alone, ForwardOptions::default());
        assert_all_close(
            &format!("row {r} logits"),
            &to_f64(single.logits),
            &batch_logits[r * 3..r * 3 + 3],
            Tolerance::abs(1e-5),
        );
        assert_all_close(
            &format!("row {r} sentence embedding"),
            &to_f64(single.sentence_embedding),
            &batch_emb[r * 32..r * 32 + 32],
            Tolerance::abs(1e-5),
        );
    }
}

#[test]
fn packed_forward_equals_the_padded_one() {
    let device = common::device();
    let config = small_config();
    let model = small_model(&config, &device, 7);
    let (input, ids, mask) = small_batch(&device);
    let padded = to_f64(model.forward(input));
    let rows: Vec<Vec<u32>> = ids
        .iter()
        .zip(&mask)
        .map(|(row, m)| row[..m.iter().filter(|&&x| x == 1).count()].to_vec())
        .collect();
    let types: Vec<Vec<u32>> = rows.iter().map(|r| vec![0; r.len()]).collect();
    let seqs: Vec<(&[u32], Option<&[u32]>)> = rows
        .iter()
        .zip(&types)
        .map(|(r, t)| (r.as_slice(), Some(t.as_slice())))
        .collect();
    let packed = PackedInput::new(&seqs, &config, &device).unwrap();
    assert_eq!((packed.batch(), packed.tokens()), (4, 9 + 5 + 12 + 3));
    assert_all_close(
        "packed logits",
        &to_f64(model.forward_packed(&packed)),
        &padded,
        Tolerance::abs(1e-5),
    );
    // One sequence alone, and the order of the sequences, change nothing.
    let reversed: Vec<_> = seqs.iter().rev().copied().collect();
    let back =
        to_f64(model.forward_packed(&PackedInput::new(&reversed, &config, &device).unwrap()));
    for r in 0..4 {
        assert_all_close(
            &format!("row {r} reversed"),
            &back[(3 - r) * 3..(3 - r) * 3 + 3],
            &padded[r * 3..r * 3 + 3],
            Tolerance::abs(1e-5),
        );
    }
    // More sequences than one attention group holds, of mixed lengths:
    // each equals its own forward alone.
    let many: Vec<Vec<u32>> = (0..19)
        .map(|s| {
            let n = 2 + (s * 7) % 37;
            (0..n).map(|i| 1 + ((s * 13 + i * 5) % 96) as u32).collect()
        })
        .collect();
    let seqs: Vec<(&[u32], Option<&[u32]>)> = many.iter().map(|r| (r.as_slice(), None)).collect();
    let all = to_f64(model.forward_packed(&PackedInput::new(&seqs, &config, &device).unwrap()));
    for (r, row) in many.iter().enumerate() {
        let alone = BertInput::from_rows(
            std::slice::from_ref(row),
            &[vec![1; row.len()]],
            None,
            &device,
        )
        .unwrap();
        assert_all_close(
            &format!("sequence {r} of 19"),
            &all[r * 3..r * 3 + 3],
            &to_f64(model.forward(alone)),
            Tolerance::abs(1e-5),
        );
    }
    // Bad inputs are errors naming the sequence.
    let long = vec![3u32; config.max_position_embeddings + 1];
    for (bad, needle) in [
        (vec![(&[][..], None)], "sequence 0 has 0 tokens"),
        (
            vec![(rows[0].as_slice(), None), (long.as_slice(), None)],
            "sequence 1 has 41 tokens",
        ),
        (vec![(&[1u32, 97][..], None)], "past vocab_size 97"),
        (
            vec![(&[1u32, 2][..], Some(&[0u32, 2][..]))],
            "past type_vocab_size 2",
        ),
        (
            vec![(&[1u32, 2][..], Some(&[0u32][..]))],
            "2 input ids but 1 token type ids",
        ),
    ] {
        let err = PackedInput::new(&bad, &config, &device)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err}");
    }
    assert!(PackedInput::new(&[], &config, &device).is_err());
}

#[test]
fn forward_full_returns_hidden_states_and_attentions() {
    let device = common::device();
    let config = small_config();
    let model = small_model(&config, &device, 3);
    let (input, _, mask) = small_batch(&device);
    let [batch, seq] = input.dims();
    let out = model.forward_full(input.clone(), ForwardOptions::all());

    let hidden = out.hidden_states.expect("hidden states were asked for");
    assert_eq!(hidden.len(), config.num_hidden_layers + 1);
    let emb = model.embed(input.input_ids.clone(), input.token_type_ids.clone());
    assert_eq!(
        max_abs_diff(&flat3(hidden[0].clone()), &flat3(emb.clone())),
        0.0,
        "hidden_states[0] is the embeddings output"
    );
    assert_eq!(
        max_abs_diff(
            &flat3(hidden[config.num_hidden_layers].clone()),
            &flat3(out.last_hidden_state.clone())
        ),
        0.0,
        "the last hidden state is the last layer's output"
    );

    let attentions = out.attentions.expect("attentions were asked for");
    assert_eq!(attentions.len(), config.num_hidden_layers);
    for (l, a) in attentions.into_iter().enumerate() {
        assert_eq!(a.dims(), [batch, config.num_attention_heads, seq, seq]);
        let v = a.try_into_vec_as::<f32>().unwrap();
        for (i, row) in v.chunks_exact(seq).enumerate() {
            let b = i / (config.num_attention_heads * seq);
            let sum: f64 = row.iter().map(|&x| f64::from(x)).sum();
            assert_close(
                &format!("layer {l} attention row {i} sum"),
                sum,
                1.0,
                Tolerance::abs(1e-5),
            );
            for (k, &p) in row.iter().enumerate() {
                if mask[b][k] == 0 {
                    assert_eq!(
                        p, 0.0,
                        "layer {l}: padded key {k} of row {b} gets probability {p}"
                    );
                }
            }
        }
    }

    // Sentence embeddings have unit norm.
    for (r, row) in to_f64(out.sentence_embedding)
        .chunks_exact(config.hidden_size)
        .enumerate()
    {
        let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert_close(
            &format!("row {r} embedding norm"),
            norm,
            1.0,
            Tolerance::abs(1e-5),
        );
    }

    // Running from the embeddings output is the same computation (without
    // attentions asked for, through the fused attention kernel: equal up to
    // float rounding).
    let again = model.forward_from_embeddings(emb, input.attention_mask, ForwardOptions::default());
    assert_all_close(
        "logits from embeddings",
        &to_f64(again.logits),
        &to_f64(out.logits),
        Tolerance::abs(1e-5),
    );
    assert!(again.hidden_states.is_none() && again.attentions.is_none());
}

fn flat3(t: Tensor<3>) -> Vec<f64> {
    t.try_into_vec_as::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

#[test]
fn cross_entropy_is_mean_negative_log_softmax() {
    let device = common::device();
    let logits = Tensor::<2>::from_data(
        TensorData::new(vec![1.0f32, 2.0, 0.5, -1.0, 0.0, 3.0], [2, 3]),
        &device,
    );
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 0], [2]), &device);
    let loss = f64::from(cross_entropy(logits, labels).into_scalar::<f32>());
    let lse = |v: &[f64]| v.iter().map(|x| x.exp()).sum::<f64>().ln();
    let expected = ((lse(&[1.0, 2.0, 0.5]) - 2.0) + (lse(&[-1.0, 0.0, 3.0]) + 1.0)) / 2.0;
    assert_close("cross entropy", loss, expected, Tolerance::abs(1e-6));
}

#[test]
fn every_parameter_receives_a_gradient() {
    let device = common::device().autodiff();
    let config = small_config().with_dropout(0.0);
    let model = small_model(&config, &device, 11);
    let (input, _, _) = small_batch(&device);
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 1], [4]), &device);
    let loss = cross_entropy(model.forward(input), labels);
    let grads = gradients(&loss, &model);

    struct Check<'a> {
        grads: &'a valor_bert::burn::optim::GradientsParams,
        path: Vec<String>,
        missing: Vec<String>,
        count: usize,
    }
    impl ModuleVisitor for Check<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.count += 1;
            if self.grads.get::<D>(param.id).is_none() {
                self.missing.push(self.path.join("."));
            }
        }
    }
    let mut check = Check {
        grads: &grads,
        path: Vec::new(),
        missing: Vec::new(),
        count: 0,
    };
    model.visit(&mut check);
    assert_eq!(
        check.count,
        valor_bert::name_table(config.num_hidden_layers).len()
    );
    assert!(
        check.missing.is_empty(),
        "no gradient for {:?}",
        check.missing
    );
}

#[test]
fn seeded_init_is_reproducible() {
    let device = common::device();
    let config = small_config();
    let (input, _, _) = small_batch(&device);
    let a = to_f64(small_model(&config, &device, 5).forward(input.clone()));
    let b = to_f64(small_model(&config, &device, 5).forward(input.clone()));
    let c = to_f64(small_model(&config, &device, 6).forward(input));
    assert_eq!(max_abs_diff(&a, &b), 0.0, "same seed, same model");
    assert!(max_abs_diff(&a, &c) > 1e-6, "another seed, another model");
}

#[test]
fn init_follows_hf_init_weights() {
    let device = common::device();
    let mut config = small_config();
    config.vocab_size = 2000;
    config.hidden_size = 64;
    config.initializer_range = 0.05;
    let model = small_model(&config, &device, 1);
    let words = model.bert.embeddings.word_embeddings.weight.val();
    let v = words.clone().try_into_vec_as::<f32>().unwrap();
    let pad = config.pad_token_id as usize * 64;
    assert!(
        v[pad..pad + 64].iter().all(|&x| x == 0.0),
        "padding row is zero"
    );
    let rest: Vec<f64> = v[64..].iter().map(|&x| f64::from(x)).collect();
    let mean = rest.iter().sum::<f64>() / rest.len() as f64;
    let std = (rest.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / rest.len() as f64).sqrt();
    assert_close("embedding mean", mean, 0.0, Tolerance::abs(2e-3));
    assert_close("embedding std", std, 0.05, Tolerance::rel(0.02));
    let bias = model.bert.pooler.dense.bias.as_ref().unwrap().val();
    assert!(
        bias.try_into_vec_as::<f32>()
            .unwrap()
            .iter()
            .all(|&x| x == 0.0)
    );
    let gamma = model.bert.embeddings.layer_norm.gamma.val();
    assert!(
        gamma
            .try_into_vec_as::<f32>()
            .unwrap()
            .iter()
            .all(|&x| x == 1.0)
    );
}

#[test]
fn dropout_is_active_only_when_training_on_an_autodiff_device() {
    let plain = common::device();
    let config = small_config().with_dropout(0.3);
    let (input, _, _) = small_batch(&plain);
    let model = small_model(&config, &plain, 2);
    // The forward passes draw dropout masks from the device generator.
    let (a, b, c, d, model) = valor_bert::with_device_rng(|| {
        let a = to_f64(model.forward(input.clone()));
        let b = to_f64(model.forward(input.clone()));
        let ad = plain.clone().autodiff();
        let model = model.fork(&ad);
        let (input_ad, _, _) = small_batch(&ad);
        let c = to_f64(model.forward(input_ad.clone()));
        let d = to_f64(model.forward(input_ad));
        (a, b, c, d, model)
    });
    assert_eq!(max_abs_diff(&a, &b), 0.0, "no dropout on a plain device");
    assert!(
        max_abs_diff(&c, &d) > 0.0,
        "dropout draws differ while training"
    );

    let e = to_f64(model.valid().forward(input));
    assert!(
        max_abs_diff(&a, &e) < 1e-6,
        "valid() is the inference model"
    );
}

#[test]
fn the_last_layers_dropout_is_active_on_the_first_rows_while_training() {
    // Training runs the last layer for the [CLS] rows alone; each of its
    // three dropouts (attention probabilities, attention output,
    // feed-forward output) must still draw there. Every other dropout is
    // switched off, so two seeded passes differ only through the one left.
    let off = || DropoutConfig::new(0.0).init();
    let on = || DropoutConfig::new(0.3).init();
    let ad = common::device().autodiff();
    let (input, _, _) = small_batch(&ad);
    let model = small_model(&small_config().with_dropout(0.0), &ad, 2);
    let two_passes = |which: Option<usize>| {
        let mut m = model.clone();
        m.bert.embeddings.dropout = off();
        m.dropout = off();
        let last = m.bert.encoder.layers.len() - 1;
        for (i, layer) in m.bert.encoder.layers.iter_mut().enumerate() {
            let mut set = [off(), off(), off()];
            if i == last
                && let Some(k) = which
            {
                set[k] = on();
            }
            let [probs, attention, feed_forward] = set;
            layer.attention.attention_dropout = probs;
            layer.attention.dropout = attention;
            layer.dropout = feed_forward;
        }
        valor_bert::with_device_rng(|| {
            ad.seed(5);
            let a = to_f64(m.forward(input.clone()));
            ad.seed(6);
            let b = to_f64(m.forward(input.clone()));
            max_abs_diff(&a, &b)
        })
    };
    assert_eq!(two_passes(None), 0.0, "no dropout left on");
    for (k, name) in ["probabilities", "attention output", "feed-forward output"]
        .iter()
        .enumerate()
    {
        assert!(
            two_passes(Some(k)) > 1e-4,
            "the last layer's {name} dropout draws while training"
        );
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let device = common::device();
    let err = BertInput::from_flat(&[1, 2, 3], &[1, 1], &[0, 0, 0], [1, 3], &device).unwrap_err();
    assert!(err.to_string().contains("attention_mask"), "{err}");
    let err = BertInput::from_flat(&[1, 2], &[1, 2], &[0, 0], [1, 2], &device).unwrap_err();
    assert!(err.to_string().contains("0 or 1"), "{err}");
    let err = BertInput::from_rows(
        &[vec![1, 2], vec![1]],
        &[vec![1, 1], vec![1]],
        None,
        &device,
    )
    .unwrap_err();
    assert!(err.to_string().contains("row 1"), "{err}");

    let config = small_config();
    let ok = BertInput::from_flat(&[1, 96], &[1, 1], &[0, 1], [1, 2], &device).unwrap();
    ok.validate(&config).unwrap();
    let big_id = BertInput::from_flat(&[1, 97], &[1, 1], &[0, 0], [1, 2], &device).unwrap();
    let err = big_id.validate(&config).unwrap_err().to_string();
    assert!(err.contains("input_ids") && err.contains("0..97"), "{err}");
    let too_long = vec![1u32; 41];
    let long = BertInput::from_flat(&too_long, &[1; 41], &[0; 41], [1, 41], &device).unwrap();
    let err = long.validate(&config).unwrap_err().to_string();
    assert!(err.contains("max_position_embeddings"), "{err}");
}

/// The integrated-gradients set-up: the small model (seed 13) frozen on an
/// autodiff device, the small batch, and its embeddings output (detached).
fn frozen_with_embeddings() -> (BertForSequenceClassification, BertInput, Tensor<3>) {
    let device = common::device().autodiff();
    let model = small_model(&small_config(), &device, 13).freeze();
    let (input, _, _) = small_batch(&device);
    let emb = model
        .embed(input.input_ids.clone(), input.token_type_ids.clone())
        .detach();
    (model, input, emb)
}

#[test]
fn first_row_logits_equal_the_full_forward_in_value_and_gradient() {
    // Inference and training (`forward`, `forward_packed`) and integrated
    // gradients (`logits_from_embeddings`) run the last layer for
    // the [CLS] rows alone; `forward_full` runs every row. A padded batch,
    // so the first rows attend past padding keys. On the frozen autodiff
    // model (integrated gradients) the last layer's keys and values are
    // reassociated through the [CLS] queries.
    let device = common::device();
    let config = small_config();
    let model = small_model(&config, &device, 7);
    let (input, _, mask) = small_batch(&device);
    assert!(mask.iter().any(|m| m.contains(&0)), "the batch has padding");
    let full = to_f64(
        model
            .forward_full(input.clone(), ForwardOptions::default())
            .logits,
    );
    assert_all_close(
        "forward, [CLS] rows of the last layer",
        &to_f64(model.forward(input)),
        &full,
        Tolerance::abs(1e-5),
    );

    let (model, input, emb) = frozen_with_embeddings();
    let run = |first_rows: bool| {
        let x = emb.clone().require_grad();
        let mask = input.attention_mask.clone();
        let logits = if first_rows {
            model.logits_from_embeddings(x.clone(), mask)
        } else {
            model
                .forward_from_embeddings(x.clone(), mask, ForwardOptions::default())
                .logits
        };
        let grads = logits.clone().slice([0..4, 1..2]).sum().backward();
        let grad = x.grad(&grads).expect("a gradient for the embeddings");
        let [b, s, h] = grad.dims();
        (to_f64(logits), to_f64(grad.reshape([b * s, h])))
    };
    let ((logits, grad), (full_logits, full_grad)) = (run(true), run(false));
    assert_all_close("logits", &logits, &full_logits, Tolerance::abs(1e-5));
    assert!(
        full_grad.iter().any(|g| g.abs() > 1e-3),
        "a gradient to compare"
    );
    assert_all_close(
        "gradients with respect to the embeddings",
        &grad,
        &full_grad,
        Tolerance::abs(1e-5),
    );
}

#[test]
fn interpolated_rows_give_the_same_logits_and_the_alpha_weighted_gradient() {
    // Integrated gradients' shortcut: the rows base + α_i·delta, the first
    // layer's projections made from base and base + delta alone, and the
    // gradient taken with respect to delta (Σ α_i ∂/∂x_i).
    let (model, input, emb) = frozen_with_embeddings();
    let device = emb.device();
    let [_, seq_len, hidden] = emb.dims();
    let base = emb.clone().narrow(0, 0, 1);
    let delta = emb.narrow(0, 1, 1) - base.clone();
    let alphas = [0.1f32, 0.5, 0.9];
    let k = alphas.len();
    let alpha_t = || Tensor::<1>::from_data(TensorData::new(alphas.to_vec(), [k]), &device);
    let mask = Tensor::cat(vec![input.attention_mask.clone().narrow(0, 0, 1); k], 0);

    let d = delta.clone().require_grad();
    let logits = model.logits_from_interpolation(base.clone(), d.clone(), alpha_t(), mask.clone());
    let grads = logits.clone().slice([0..k, 1..2]).sum().backward();
    let got = d.grad(&grads).expect("a gradient for delta");

    let x = (base + alpha_t().reshape([k, 1, 1]) * delta)
        .detach()
        .require_grad();
    let want_logits = model.logits_from_embeddings(x.clone(), mask);
    let grads = want_logits.clone().slice([0..k, 1..2]).sum().backward();
    let per_row = x.grad(&grads).expect("a gradient for the rows");
    let want = (per_row * alpha_t().reshape([k, 1, 1])).sum_dim(0);

    assert_all_close(
        "logits",
        &to_f64(logits),
        &to_f64(want_logits),
        Tolerance::abs(1e-5),
    );
    let flat = |t: Tensor<3>| to_f64(t.reshape([seq_len, hidden]));
    let want = flat(want);
    assert!(want.iter().any(|g| g.abs() > 1e-3), "a gradient to compare");
    assert_all_close(
        "gradient with respect to delta",
        &flat(got),
        &want,
        Tolerance::abs(1e-5),
    );
}

#[test]
fn gradients_with_respect_to_embeddings_match_finite_differences() {
    // The integrated-gradients recipe: a frozen model on an autodiff
    // device, gradients of one logit with respect to the embeddings output.
    let (model, input, emb) = frozen_with_embeddings();
    let target = |e: Tensor<3>| {
        let logits = model
            .forward_from_embeddings(e, input.attention_mask.clone(), ForwardOptions::default())
            .logits;
        logits.slice([0..4, 1..2]).sum()
    };
    let x = emb.clone().require_grad();
    let grads = target(x.clone()).backward();
    let grad = x.grad(&grads).expect("a gradient for the embeddings");
    assert_eq!(grad.dims(), emb.dims());
    assert!(
        model.bert.pooler.dense.weight.val().grad(&grads).is_none(),
        "a frozen model accumulates no parameter gradients"
    );

    // Directional derivative along the gradient itself.
    let norm = f64::from(grad.clone().square().sum().sqrt().into_scalar::<f32>());
    let dir = grad.clone().div_scalar(norm);
    let h = 1e-2;
    let up = f64::from(target(emb.clone() + dir.clone().mul_scalar(h)).into_scalar::<f32>());
    let down = f64::from(target(emb - dir.mul_scalar(h)).into_scalar::<f32>());
    assert_close(
        "directional derivative",
        (up - down) / (2.0 * h),
        norm,
        Tolerance::rel(1e-2),
    );
}
