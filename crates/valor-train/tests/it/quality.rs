//! Quality bars on the built-in dataset (fixed seeds): the plain objective
//! learns the historical labels and inherits their bias; the fairness
//! objective (reweighing + the demographic-parity penalty at a fixed
//! λ = 1)
//! cuts the selection-rate gap at least in half while accuracy against the
//! fair labels drops by at most a few points. And the slow bar: MiniLM
//! fine-tuned on Financial PhraseBank reaches 0.90 test accuracy.
//!
//! The built-in runs are the README's main job (`cargo xtask train`): the
//! default 6,000 rows, split, batch size, model (`tiny` from scratch),
//! learning rate, epochs and objectives of `valor train`. An earlier,
//! cheaper version trained on 2,400 rows and tested on 480; there the
//! fair-label accuracy of one model moved by ±0.04 with float-rounding
//! changes to the kernels, as much as the margin it was tested against. At
//! 6,000 rows two sessions' kernels measured 0.765 → 0.873 and
//! 0.768 → 0.857. Both runs share one tokenizer.

use std::path::Path;

use valor_data::{Preset, SpecArgs};
use valor_testkit::shared_dir;
use valor_train::{ModelSource, Silent, TrainConfig, TrainReport, Weighting, train};

/// The fixed penalty weight of the fairness run (what `--fairness-lambda
/// auto` meant before it became constrained training). Constrained training
/// at `demographic_parity <= 0.05` (today's `auto`) took the gap from 0.34
/// to 0.026 but the fair-label accuracy from 0.75 to 0.53 with its first,
/// relaxed-gap penalty; with the cost-sensitive method and held-out
/// constraint rows a CLI run on the same data gave a test gap of 0.019 and
/// fair-label accuracy 0.883 (bench/constraint.md). This bar measures
/// the fixed-weight objective, so it keeps the weight.
const FIXED_LAMBDA: f64 = 1.0;

use crate::common::{builtin_csv, shared_tokenizer};

fn run(data: &Path, out: &Path, fair: bool) -> TrainReport {
    let mut c = TrainConfig::scratch(valor_data::builtin_spec(data), "tiny");
    if let ModelSource::Scratch(m) = &mut c.model {
        m.tokenizer = Some(shared_tokenizer(data, m.vocab_size));
    }
    c.checkpoint_every = None;
    if fair {
        c.fairness.lambda = FIXED_LAMBDA;
        c.weighting = Weighting::Reweighing;
    }
    let outcome = train(&c, out, false, &mut Silent).unwrap();
    outcome.report().cloned().unwrap()
}

#[test]
fn fairness_objective_halves_the_gap_and_keeps_fair_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let data = builtin_csv(dir.path(), valor_data::SynthConfig::default().rows);
    let base = run(&data, &dir.path().join("baseline"), false);
    let fair = run(&data, &dir.path().join("fair"), true);
    let (b, f) = (&base.summary, &fair.summary);
    eprintln!("baseline {b:?}\nfair     {f:?}");

    // The plain objective learns the historical labels (the majority class
    // holds ~40% of them) and inherits the bias.
    assert!(b.accuracy > 0.65, "baseline accuracy {}", b.accuracy);
    let base_gap = b.selection_rate_gap.unwrap();
    assert!(base_gap > 0.15, "baseline selection-rate gap {base_gap}");

    // The fairness objective cuts the gap to at most half ...
    let fair_gap = f.selection_rate_gap.unwrap();
    assert!(fair_gap <= 0.5 * base_gap, "gap {base_gap} → {fair_gap}");
    // ... without losing more than a few points against the fair labels.
    let (ba, fa) = (b.accuracy_reference.unwrap(), f.accuracy_reference.unwrap());
    assert!(
        fa >= ba - 0.03,
        "accuracy against the fair labels {ba} → {fa}"
    );
    // Twins agree more often once gender no longer drives the decision.
    assert!(f.counterfactual_flip_rate.unwrap() < b.counterfactual_flip_rate.unwrap());
}

#[valor_testkit::shared_test(slow)]
fn minilm_on_phrasebank_reaches_ninety_percent() {
    let shared = shared_dir();
    let dir = tempfile::tempdir().unwrap();
    let spec = valor_data::DatasetSpec::from_args(
        SpecArgs {
            path: Some(shared.join("datasets/financial-phrasebank/Sentences_AllAgree.txt")),
            preset: Some(Preset::Phrasebank),
            ..Default::default()
        },
        "test",
    )
    .unwrap();
    // Seeded 80/20 split (no validation: the last epoch is tested); max
    // length 64 covers almost every sentence. Three epochs at 5e-5: 0.965
    // and 0.956 with seeds 42 and 2 (about 7 minutes on 2 cores). Two
    // epochs stop mid-way (training loss ≈ 0.3) where the seed decides:
    // 0.819–0.947 over seeds 1, 2 and 42, dropout draws moving one seed by
    // 4 points; one epoch stops near 0.74.
    let mut c = TrainConfig::pretrained(spec, shared.join("models/all-MiniLM-L6-v2"));
    (c.split.train, c.split.valid, c.split.test) = (0.8, 0.0, 0.2);
    c.max_len = 64;
    c.epochs = 3;
    c.lr = 5e-5;
    c.checkpoint_every = None;
    let out = dir.path().join("phrasebank");
    let report = train(&c, &out, false, &mut Silent)
        .unwrap()
        .report()
        .cloned()
        .unwrap();
    eprintln!(
        "phrasebank test: {:?}, {:.0} s",
        report.summary, report.train_seconds
    );
    assert!(
        report.summary.accuracy >= 0.90,
        "test accuracy {}",
        report.summary.accuracy
    );
}
