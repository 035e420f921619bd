//! Explanations: integrated gradients against Captum's
//! `LayerIntegratedGradients` (`shared/fixtures/hf-parity/captum_ig.safetensors`,
//! made by its `make_captum_ig.py`: attributions at the embeddings output,
//! `[PAD]` baseline keeping `[CLS]`/`[SEP]`, target = argmax logit, 300
//! Gauss–Legendre steps, f = the logit), completeness, the randomisation
//! sanity check (Adebayo et al. 2018), rollout, occlusion and ERASER
//! faithfulness.

// The parity numbers are printed for the record (`--nocapture`).
#![allow(clippy::print_stdout)]

use std::time::Instant;

use valor_bert::burn::module::Module;

use valor_bert::explain::{
    FaithfulnessConfig, FaithfulnessItem, IgConfig, Rule, TokenSequence, attention_rollout,
    faithfulness, integrated_gradients, occlusion, pad_baseline,
};
use valor_bert::{BertForSequenceClassification, LoadOptions, load_hf};
use valor_testkit::{Tolerance, assert_close, shared_dir};

use crate::common::{self, fixture, minilm, read_tensor, small_config, small_model};

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// The fixture's encoded sentences, each trimmed to its real tokens (the
/// padding is masked out, so attributions there are 0 in Captum's output),
/// with their index. Sentences over 20 tokens (IG on them takes tens of
/// seconds on 2 cores) only with `VALOR_SLOW_TESTS=1`.
fn fixture_sequences(shared: &std::path::Path, test: &str) -> Vec<(usize, TokenSequence, usize)> {
    let all = valor_testkit::slow_tests_enabled(test);
    let reference = fixture(shared).join("reference.safetensors");
    let (shape, ids) = read_tensor(&reference, "input_ids");
    let (_, mask) = read_tensor(&reference, "attention_mask");
    let (_, types) = read_tensor(&reference, "token_type_ids");
    let len = shape[1];
    (0..shape[0])
        .map(|r| {
            let row = r * len..(r + 1) * len;
            let real = mask[row.clone()].iter().filter(|&&m| m == 1.0).count();
            let take = |v: &[f64]| {
                v[row.clone()][..real]
                    .iter()
                    .map(|&x| x as u32)
                    .collect::<Vec<_>>()
            };
            (r, TokenSequence::new(take(&ids), Some(take(&types))), real)
        })
        .filter(|(_, _, real)| all || *real <= 20)
        .collect()
}

fn minilm_with_head(
    shared: &std::path::Path,
    device: &valor_bert::burn::tensor::Device,
) -> BertForSequenceClassification {
    let options = LoadOptions {
        num_labels: Some(3),
        head: Some(fixture(shared).join("head.safetensors")),
        ..LoadOptions::default()
    };
    load_hf(&minilm(shared), device, options).unwrap().1
}

#[test]
fn integrated_gradients_match_captum() {
    if common::skip_on_wgpu(
        "integrated_gradients_match_captum",
        "300 MiniLM forward/backward steps per sentence take many minutes on lavapipe",
    ) {
        return;
    }
    let Some(shared) = shared_dir("integrated_gradients_match_captum") else {
        return;
    };
    let device = common::device().autodiff();
    let model = minilm_with_head(&shared, &device).freeze();
    let captum = fixture(&shared).join("captum_ig.safetensors");
    let (shape, expected) = read_tensor(&captum, "token_attributions");
    let (_, targets) = read_tensor(&captum, "target");
    let (_, baselines) = read_tensor(&captum, "baseline_input_ids");
    let len = shape[1];
    let config = IgConfig {
        n_steps: 300,
        rule: Rule::GaussLegendre,
        internal_batch_size: 25,
    };
    let mut worst_r: f64 = 1.0;
    let mut worst_abs: f64 = 0.0;
    let mut worst_rel_delta: f64 = 0.0;
    let sequences = fixture_sequences(&shared, "integrated_gradients_match_captum (all sentences)");
    assert!(sequences.len() >= 3, "the short sentences always run");
    for (r, seq, real) in &sequences {
        let (r, real) = (*r, *real);
        let baseline = pad_baseline(seq, &[101, 102], 0);
        let fixture_baseline: Vec<u32> = baselines[r * len..r * len + real]
            .iter()
            .map(|&x| x as u32)
            .collect();
        assert_eq!(baseline, fixture_baseline, "baseline of sentence {r}");
        let start = Instant::now();
        let ig = integrated_gradients(&model, seq, &baseline, None, &config).unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(
            ig.target, targets[r] as usize,
            "argmax class of sentence {r}"
        );
        let want = &expected[r * len..r * len + real];
        assert!(
            expected[r * len + real..(r + 1) * len]
                .iter()
                .all(|&x| x == 0.0),
            "Captum gives padding no attribution"
        );
        let rho = pearson(&ig.token_attributions, want);
        let max_abs = valor_testkit::max_abs_diff(&ig.token_attributions, want);
        println!(
            "sentence {r}: {real} tokens, pearson {rho:.6}, max |diff| {max_abs:.2e}, delta {:.2e} ({:.2e} relative), {secs:.2} s",
            ig.delta,
            ig.relative_delta()
        );
        worst_r = worst_r.min(rho);
        worst_abs = worst_abs.max(max_abs);
        worst_rel_delta = worst_rel_delta.max(ig.relative_delta());
        assert!(rho >= 0.99, "sentence {r}: Pearson {rho} < 0.99");
        assert!(max_abs <= 1e-3, "sentence {r}: max |diff| {max_abs} > 1e-3");
        // Completeness with 300 steps: |delta| <= 1% of |f(x) - f(baseline)|.
        assert!(
            ig.relative_delta() <= 0.01,
            "sentence {r}: delta {} vs f(x) - f(b) = {}",
            ig.delta,
            ig.logit - ig.baseline_logit
        );
    }
    println!(
        "worst pearson {worst_r:.6}, worst max |diff| {worst_abs:.2e}, worst relative delta {worst_rel_delta:.2e}"
    );
}

#[test]
fn completeness_holds_for_every_rule_on_a_small_model() {
    if common::skip_on_wgpu(
        "completeness_holds_for_every_rule_on_a_small_model",
        "about 650 steps of the small model take ~3 minutes on lavapipe",
    ) {
        return;
    }
    let device = common::device().autodiff();
    let config = small_config();
    let model = small_model(&config, &device, 5).freeze();
    let seq = TokenSequence::new(vec![1, 17, 33, 48, 5, 61, 2], None);
    let baseline = pad_baseline(&seq, &[1, 2], 0);
    for rule in [
        Rule::GaussLegendre,
        Rule::RiemannMiddle,
        Rule::RiemannTrapezoid,
    ] {
        let ig = integrated_gradients(
            &model,
            &seq,
            &baseline,
            Some(1),
            &IgConfig {
                n_steps: 200,
                rule,
                internal_batch_size: 16,
            },
        )
        .unwrap();
        assert_eq!(ig.target, 1);
        assert_eq!(ig.token_attributions.len(), 7);
        assert!(ig.relative_delta() < 0.01, "{rule:?}: {ig:?}");
        // Special tokens equal in input and baseline get nothing.
        assert_eq!(ig.token_attributions[0], 0.0);
        assert_eq!(ig.token_attributions[6], 0.0);
    }
    // The internal batch size changes nothing but memory.
    let run = |b| {
        integrated_gradients(
            &model,
            &seq,
            &baseline,
            None,
            &IgConfig {
                n_steps: 20,
                rule: Rule::GaussLegendre,
                internal_batch_size: b,
            },
        )
        .unwrap()
    };
    let (a, b) = (run(1), run(20));
    valor_testkit::assert_all_close(
        "attributions, batch 1 vs 20",
        &a.token_attributions,
        &b.token_attributions,
        Tolerance::abs(1e-5),
    );
}

#[test]
fn integrated_gradients_need_an_autodiff_model() {
    let device = common::device();
    let config = small_config();
    let model = small_model(&config, &device, 5);
    let seq = TokenSequence::new(vec![1, 17, 2], None);
    let err = integrated_gradients(&model, &seq, &[1, 0, 2], None, &IgConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("autodiff"), "{err}");
    let device = device.autodiff();
    let model = small_model(&config, &device, 5).freeze();
    let err = integrated_gradients(&model, &seq, &[1, 0], None, &IgConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("baseline"), "{err}");
    let err = integrated_gradients(&model, &seq, &[1, 0, 2], Some(9), &IgConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("target class 9"), "{err}");
}

#[test]
fn attributions_change_when_the_classifier_is_randomised() {
    // Adebayo et al. 2018, cascading randomisation from the top: a method
    // whose output survives randomised weights explains the input, not the model.
    let device = common::device().autodiff();
    let config = small_config();
    let trained = small_model(&config, &device, 5).freeze();
    let seq = TokenSequence::new(vec![1, 17, 33, 48, 5, 61, 70, 12, 2], None);
    let baseline = pad_baseline(&seq, &[1, 2], 0);
    let cfg = IgConfig::default();
    let a = integrated_gradients(&trained, &seq, &baseline, Some(0), &cfg).unwrap();
    let mut randomised = small_model(&config, &device, 5);
    randomised.classifier = small_model(&config, &device, 999).classifier;
    let randomised = randomised.freeze();
    let b = integrated_gradients(&randomised, &seq, &baseline, Some(0), &cfg).unwrap();
    let norm = a
        .token_attributions
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt();
    let diff = a
        .token_attributions
        .iter()
        .zip(&b.token_attributions)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(
        diff > 0.1 * norm,
        "relative change {} too small",
        diff / norm
    );
    assert!(pearson(&a.token_attributions[1..8], &b.token_attributions[1..8]) < 0.9);
}

#[test]
fn rollout_is_a_distribution_over_real_tokens() {
    let device = common::device();
    let config = small_config();
    let model = small_model(&config, &device, 3);
    let seq = TokenSequence {
        input_ids: vec![1, 17, 33, 48, 2, 0, 0],
        attention_mask: vec![1, 1, 1, 1, 1, 0, 0],
        token_type_ids: vec![0; 7],
    };
    let r = attention_rollout(&model, &seq).unwrap();
    assert_eq!(r.len(), 7);
    assert_close("sum", r.iter().sum::<f64>(), 1.0, Tolerance::abs(1e-9));
    assert!(r[..5].iter().all(|&v| v > 0.0), "{r:?}");
    assert_eq!(&r[5..], &[0.0, 0.0]);
    // Padding does not change the rollout of the real tokens.
    let short = TokenSequence::new(vec![1, 17, 33, 48, 2], None);
    let s = attention_rollout(&model, &short).unwrap();
    valor_testkit::assert_all_close("padded vs unpadded", &r[..5], &s, Tolerance::abs(1e-5));
}

#[test]
fn occlusion_matches_forward_passes() {
    let device = common::device();
    let config = small_config();
    let model = small_model(&config, &device, 3);
    let seq = TokenSequence::new(vec![1, 17, 33, 48, 2], None);
    let features = vec![vec![1], vec![2, 3]];
    let occ = occlusion(&model, &seq, &features, Some(2), 0, 1).unwrap();
    assert_eq!(occ.attributions.len(), 2);
    let p = |ids: Vec<u32>| {
        valor_bert::explain::predict_proba(
            &model,
            valor_bert::BertInput::from_rows(&[ids], &[vec![1; 5]], None, &device).unwrap(),
        )
        .unwrap()[0][2]
    };
    let base = p(vec![1, 17, 33, 48, 2]);
    assert_close("p(x)", occ.probabilities[2], base, Tolerance::abs(1e-6));
    assert_close(
        "word 0",
        occ.attributions[0],
        base - p(vec![1, 0, 33, 48, 2]),
        Tolerance::abs(1e-6),
    );
    assert_close(
        "word 1",
        occ.attributions[1],
        base - p(vec![1, 17, 0, 0, 2]),
        Tolerance::abs(1e-6),
    );
    assert!(occlusion(&model, &seq, &[vec![9]], None, 0, 4).is_err());
}

#[test]
fn faithfulness_is_bounded_deterministic_and_checks_input() {
    let device = common::device();
    let config = small_config();
    let model = small_model(&config, &device, 3);
    let items: Vec<FaithfulnessItem> = (0..4u32)
        .map(|i| {
            let ids: Vec<u32> = std::iter::once(1)
                .chain((0..10).map(|j| 3 + (i * 13 + j * 7) % 90))
                .chain(std::iter::once(2))
                .collect();
            let n = ids.len();
            FaithfulnessItem {
                special: (0..n).map(|j| j == 0 || j == n - 1).collect(),
                attributions: (0..n).map(|j| ((j * 5 + i as usize) % 7) as f64).collect(),
                token_type_ids: vec![0; n],
                input_ids: ids,
                target: 1,
            }
        })
        .collect();
    let cfg = FaithfulnessConfig::default();
    let a = faithfulness(&model, &items, &cfg).unwrap();
    let b = faithfulness(&model, &items, &cfg).unwrap();
    assert_eq!(a, b, "seeded");
    assert_eq!(a.per_fraction.len(), 5);
    assert_eq!(a.n_examples, 4);
    assert!((0.0..=1.0).contains(&a.score));
    for f in &a.per_fraction {
        assert!(f.comprehensiveness.abs() <= 1.0 && f.sufficiency.abs() <= 1.0);
    }
    let mut bad = items[0].clone();
    bad.special.pop();
    assert!(faithfulness(&model, &[bad], &cfg).is_err());
    assert!(faithfulness(&model, &[], &cfg).is_err());
}

#[test]
fn integrated_gradients_beat_random_on_minilm() {
    if common::skip_on_wgpu(
        "integrated_gradients_beat_random_on_minilm",
        "integrated gradients and ERASER on MiniLM take many minutes on lavapipe",
    ) {
        return;
    }
    let Some(shared) = shared_dir("integrated_gradients_beat_random_on_minilm") else {
        return;
    };
    let device = common::device().autodiff();
    let model = minilm_with_head(&shared, &device).freeze();
    let cfg = IgConfig::default();
    let mut items = Vec::new();
    for (_, seq, _) in fixture_sequences(
        &shared,
        "integrated_gradients_beat_random_on_minilm (all sentences)",
    ) {
        let baseline = pad_baseline(&seq, &[101, 102], 0);
        let ig = integrated_gradients(&model, &seq, &baseline, None, &cfg).unwrap();
        items.push(FaithfulnessItem {
            special: seq
                .input_ids
                .iter()
                .map(|&i| i == 101 || i == 102)
                .collect(),
            attributions: ig.token_attributions,
            input_ids: seq.input_ids,
            token_type_ids: seq.token_type_ids,
            target: ig.target,
        });
    }
    let report = faithfulness(
        &model,
        &items,
        &FaithfulnessConfig {
            random_repeats: 3,
            ..FaithfulnessConfig::default()
        },
    )
    .unwrap();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert!(
        report.comprehensiveness > report.random_comprehensiveness,
        "{report:#?}"
    );
    assert!(
        report.sufficiency < report.random_sufficiency,
        "{report:#?}"
    );
    assert!(report.score > 0.0, "{report:#?}");
}
