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
use valor_bert::{BertForSequenceClassification, LoadOptions};
use valor_testkit::{Tolerance, assert_close, shared_dir};

use crate::common::{self, fixture, load_hf, minilm, read_tensor, small_config, small_model};

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// Which of the fixture's sentences a test takes: those of at most 20
/// tokens (a few seconds of integrated gradients each on 2 cores) or the
/// longer ones (tens of seconds each: slow tests).
#[derive(Clone, Copy, PartialEq)]
enum Sentences {
    Short,
    Long,
}

/// The fixture's encoded sentences of one length class, each trimmed to
/// its real tokens (the padding is masked out, so attributions there are 0
/// in Captum's output), with their index.
fn fixture_sequences(
    shared: &std::path::Path,
    which: Sentences,
) -> Vec<(usize, TokenSequence, usize)> {
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
        .filter(|(_, _, real)| (*real <= 20) == (which == Sentences::Short))
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

/// Integrated gradients of `which` sentences against Captum's, with the
/// fixture's settings. The tolerances come from the fixture: Captum's own
/// convergence deltas (`delta` in `captum_ig.safetensors`) bound how far
/// Valor's attributions may be from Captum's (two computations of one
/// integral should agree to within the reference's own integration error),
/// and the bound its README gives them ("all below 1e-6") bounds Valor's
/// own completeness delta. At 300 Gauss–Legendre steps both sides' deltas
/// are f32 rounding, Captum's from 1.0e-7 to 5.3e-7 over these sentences,
/// Valor's from 2e-8 to 5.2e-7: one summation order more or less in the
/// model moves a sentence's delta within that range (the last layer's
/// reassociated keys and values took the 3-token sentence's from 1.9e-7 to
/// 5.2e-7), so Captum's largest delta is no bound for Valor's.
/// Measured (flex, 2 cores): max |diff| ≈ 1e-7, |delta| ≤ 5.2e-7; with the
/// packed f32 weights max |diff| 1.5e-7, |delta| ≤ 6.9e-7 (the 35-token
/// sentence).
///
/// With `packed`, the model as `valor explain` loads it: the f32 weights
/// packed once (`lowp::apply` at fp32), which the frozen layers' products
/// take forward and backward on CPUs with AVX-512F.
fn check_against_captum(which: Sentences, packed: bool) {
    let shared = shared_dir();
    let device = common::device().autodiff();
    let model = minilm_with_head(&shared, &device).freeze();
    let model = if packed {
        valor_bert::lowp::apply(model, valor_bert::Precision::Fp32).unwrap()
    } else {
        model
    };
    let captum = fixture(&shared).join("captum_ig.safetensors");
    let (shape, expected) = read_tensor(&captum, "token_attributions");
    let (_, targets) = read_tensor(&captum, "target");
    let (_, baselines) = read_tensor(&captum, "baseline_input_ids");
    let (_, captum_deltas) = read_tensor(&captum, "delta");
    let tolerance = captum_deltas.iter().fold(0.0f64, |m, d| m.max(d.abs()));
    assert!(
        tolerance > 0.0 && tolerance < 1e-6,
        "the fixture's deltas are below 1e-6 (its README): {tolerance:e}"
    );
    let len = shape[1];
    let config = IgConfig {
        n_steps: 300,
        rule: Rule::GaussLegendre,
        internal_batch_size: 25,
    };
    let mut worst_abs: f64 = 0.0;
    let mut worst_delta: f64 = 0.0;
    let sequences = fixture_sequences(&shared, which);
    assert!(!sequences.is_empty(), "the fixture has such sentences");
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
        let max_abs = valor_testkit::max_abs_diff(&ig.token_attributions, want);
        println!(
            "sentence {r}: {real} tokens, pearson {:.9}, max |diff| {max_abs:.2e}, delta {:.2e} (Captum {:.2e}), {secs:.2} s",
            pearson(&ig.token_attributions, want),
            ig.delta,
            captum_deltas[r],
        );
        worst_abs = worst_abs.max(max_abs);
        worst_delta = worst_delta.max(ig.delta.abs());
        valor_testkit::assert_all_close(
            &format!("sentence {r}: attributions vs Captum"),
            &ig.token_attributions,
            want,
            Tolerance::abs(tolerance),
        );
        assert_close(
            &format!("sentence {r}: completeness delta"),
            ig.delta,
            0.0,
            Tolerance::abs(1e-6),
        );
    }
    println!(
        "{}: worst max |diff| {worst_abs:.2e} (tolerance: Captum's largest |delta|, {tolerance:.2e}), worst |delta| {worst_delta:.2e} (tolerance 1e-6)",
        if packed {
            "packed f32 weights"
        } else {
            "plain"
        }
    );
}

// The tests marked not_wgpu are ignored when built for VALOR_TEST_BACKEND=wgpu:
// CI runs wgpu on Mesa's lavapipe (software Vulkan on the CPU, an order of
// magnitude slower than flex), where their hundreds of MiniLM forward and
// backward passes take many minutes; they run on the CPU.

#[valor_testkit::shared_test(not_wgpu)]
fn integrated_gradients_match_captum() {
    check_against_captum(Sentences::Short, false);
    check_against_captum(Sentences::Short, true);
}

#[valor_testkit::shared_test(slow, not_wgpu)]
fn integrated_gradients_match_captum_on_long_sentences() {
    check_against_captum(Sentences::Long, true);
}

#[valor_testkit::not_wgpu_test]
fn completeness_holds_for_every_rule_on_a_small_model() {
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

/// Integrated gradients on the fixture's `which` sentences are more
/// faithful (ERASER) than random attributions.
fn beat_random(which: &[Sentences]) {
    let shared = shared_dir();
    let device = common::device().autodiff();
    let model = minilm_with_head(&shared, &device).freeze();
    let cfg = IgConfig::default();
    let mut items = Vec::new();
    for (_, seq, _) in which.iter().flat_map(|&w| fixture_sequences(&shared, w)) {
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

#[valor_testkit::shared_test(not_wgpu)]
fn integrated_gradients_beat_random_on_minilm() {
    beat_random(&[Sentences::Short]);
}

#[valor_testkit::shared_test(slow, not_wgpu)]
fn integrated_gradients_beat_random_on_every_minilm_sentence() {
    beat_random(&[Sentences::Short, Sentences::Long]);
}

/// ERASER comprehensiveness, sufficiency and the transparency score against
/// the same measures computed with transformers
/// (`tests/fixtures/eraser/eraser.json`, made by `make_eraser.py` beside it:
/// MiniLM with the hf-parity head; four fixture sentences with Captum's
/// attributions, four with word rationales, one with graded attributions;
/// the random baseline from the same SplitMix64 shuffles). Tolerance: the
/// JSON's `tolerances.abs` (2e-7) on every score; Valor pads each batch
/// where the script runs every variant alone, so the probabilities differ
/// by float rounding only (measured: 3.2e-8 at worst).
#[valor_testkit::shared_test(not_wgpu)]
fn faithfulness_matches_transformers() {
    let shared = shared_dir();
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eraser/eraser.json");
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let tol = Tolerance::abs(fx["tolerances"]["abs"].as_f64().unwrap());
    let u32s = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let items: Vec<FaithfulnessItem> = fx["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|it| FaithfulnessItem {
            input_ids: u32s(&it["input_ids"]),
            token_type_ids: u32s(&it["token_type_ids"]),
            special: it["special"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_bool().unwrap())
                .collect(),
            attributions: it["attributions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect(),
            target: it["target"].as_u64().unwrap() as usize,
        })
        .collect();
    let config = &fx["config"];
    let cfg = FaithfulnessConfig {
        fractions: config["fractions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect(),
        seed: config["seed"].as_u64().unwrap(),
        random_repeats: config["random_repeats"].as_u64().unwrap() as usize,
        ..FaithfulnessConfig::default()
    };
    let model = minilm_with_head(&shared, &common::device());
    let ours = faithfulness(&model, &items, &cfg).unwrap();
    let want = &fx["report"];
    let mut worst: f64 = 0.0;
    let mut check = |what: &str, actual: f64, expected: &serde_json::Value| {
        let expected = expected.as_f64().unwrap();
        worst = worst.max((actual - expected).abs());
        assert_close(what, actual, expected, tol);
    };
    assert_eq!(ours.n_examples, items.len());
    check(
        "comprehensiveness",
        ours.comprehensiveness,
        &want["comprehensiveness"],
    );
    check("sufficiency", ours.sufficiency, &want["sufficiency"]);
    check(
        "random comprehensiveness",
        ours.random_comprehensiveness,
        &want["random_comprehensiveness"],
    );
    check(
        "random sufficiency",
        ours.random_sufficiency,
        &want["random_sufficiency"],
    );
    check("score", ours.score, &want["score"]);
    let fractions = want["per_fraction"].as_array().unwrap();
    assert_eq!(ours.per_fraction.len(), fractions.len());
    for (f, w) in ours.per_fraction.iter().zip(fractions) {
        let at = |m: &str| format!("{m} at {}", f.fraction);
        check(
            &at("comprehensiveness"),
            f.comprehensiveness,
            &w["comprehensiveness"],
        );
        check(&at("sufficiency"), f.sufficiency, &w["sufficiency"]);
        check(
            &at("random comprehensiveness"),
            f.random_comprehensiveness,
            &w["random_comprehensiveness"],
        );
        check(
            &at("random sufficiency"),
            f.random_sufficiency,
            &w["random_sufficiency"],
        );
    }
    assert!(
        ours.score > 0.0,
        "the Captum-explained sentences lift the score off the clamp"
    );
    println!("ERASER vs transformers: worst |diff| {worst:.2e} (tolerance {tol:?})");
}
