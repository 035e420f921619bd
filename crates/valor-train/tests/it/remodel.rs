//! `remodel`: a tiny baseline run remodelled end to end (retrainings
//! warm-started from it, post-processing, selection, test confirmation,
//! saved model and report), and the errors that stop it before any work.

use std::path::Path;

use serde_json::Value;
use valor_train::{
    RemodelConfig, RunDir, Silent, THRESHOLDS_FILE, ThresholdsFile, Weighting, read_run_config,
    remodel, train,
};
use valor_values::ValuesSpec;

use crate::common::{builtin_csv, small_config};

const VALUES: &str = r#"
[target]
fairness = 0.99
accuracy = 0.95
transparency = 0.9
efficiency = 0.5
[efficiency]
budget_examples_per_s = 1000000.0
budget_gflops_per_example = 1.0
budget_weight_mb = 100.0
"#;

/// Trains the plain baseline (no penalty, no reweighing) into `dir/run`.
fn baseline(dir: &Path) -> std::path::PathBuf {
    let data = builtin_csv(dir, 240);
    let mut c = small_config(&data);
    c.weighting = Weighting::None;
    c.fairness.lambda = 0.0;
    let run = dir.join("run");
    train(&c, &run, false, &mut Silent).unwrap();
    run
}

fn config(run: &Path, out: &Path, values: &str) -> RemodelConfig {
    let mut c = RemodelConfig::new(
        run,
        out,
        ValuesSpec::parse(values, "test/values.toml").unwrap(),
    );
    c.max_retrainings = 2;
    c.faithfulness_examples = 2;
    c.ig_steps = 4;
    c
}

#[test]
fn remodel_searches_selects_confirms_and_saves() {
    let tmp = tempfile::tempdir().unwrap();
    let run = baseline(tmp.path());
    let out = tmp.path().join("remodel");
    let mut notes = Vec::new();
    let outcome = remodel(&config(&run, &out, VALUES), &mut Silent, &mut |l: &str| {
        notes.push(l.to_owned())
    })
    .unwrap();
    let report = &outcome.report;

    // The report: required keys first, confirmed on the test split.
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("remodel.json")).unwrap()).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .take(8)
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "v0",
            "vt",
            "vd",
            "distance_v0_vd",
            "distance_vt_vd",
            "metric",
            "pareto_front",
            "chosen"
        ]
    );
    assert_eq!(report.split, "test");
    for key in ["v0", "vt"] {
        let map = json[key].as_object().unwrap();
        assert_eq!(
            map.keys().collect::<Vec<_>>(),
            ["accuracy", "efficiency", "fairness", "transparency"]
        );
        for (dim, v) in map {
            let v = v
                .as_f64()
                .unwrap_or_else(|| panic!("{key}.{dim} measured: {v}"));
            assert!((0.0..=1.0).contains(&v), "{key}.{dim} = {v}");
        }
    }
    // A target this high is out of reach, and the report says so.
    assert!(!report.reachable);
    assert!(
        report.message.contains("OUT OF REACH"),
        "{}",
        report.message
    );
    assert!(
        std::fs::read_to_string(out.join("remodel.html"))
            .unwrap()
            .contains("<svg")
    );

    // Candidates: the baseline, two retrainings (the second with reweighing;
    // no retraining is left for LoRA), one post-processed version of each
    // of the three models, then int8 copies of the baseline and of the
    // provisional V_T's model (one copy when that is the baseline), each
    // post-processed too.
    let labels: Vec<&str> = report.candidates.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(labels[0], "baseline");
    assert!(labels[1].starts_with("equalized_odds<="), "{labels:?}");
    assert!(labels[2].ends_with("+reweighing"), "{labels:?}");
    assert!(
        labels[3..6].iter().all(|l| l.ends_with("+class-offsets")),
        "{labels:?}"
    );
    let copies = (labels.len() - 6) / 2;
    assert!(copies == 1 || copies == 2, "{labels:?}");
    assert_eq!(labels[6], "baseline+int8");
    assert!(
        labels[6..6 + copies].iter().all(|l| l.ends_with("+int8")),
        "{labels:?}"
    );
    assert!(
        labels[6 + copies..]
            .iter()
            .all(|l| l.ends_with("+int8+class-offsets")),
        "{labels:?}"
    );
    assert!(
        notes.iter().any(|n| n.starts_with("no LoRA candidate")),
        "{notes:?}"
    );
    for c in &report.candidates[6..] {
        assert_eq!(c.settings["compression"], "int8", "{:?}", c.settings);
        assert_eq!(c.settings["precision"], "int8", "{:?}", c.settings);
    }
    assert!(
        report
            .pareto_front
            .iter()
            .any(|c| c.index == report.chosen.index)
    );
    for c in &report.pareto_front {
        assert!(report.chosen.validation_distance_to_vd <= c.distance_to_vd);
    }

    // Retrainings warm-start from a model folder of this remodeling.
    let candidate = |prefix: &str| {
        std::fs::read_dir(out.join("candidates"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
            .unwrap_or_else(|| panic!("no candidate {prefix}"))
    };
    let first = candidate("01-");
    let cfg = read_run_config(&first).unwrap().config;
    match cfg.model {
        valor_train::ModelSource::Pretrained { dir } => assert_eq!(dir, RunDir::new(&run).model()),
        other => panic!("not warm-started: {other:?}"),
    }
    assert_eq!(cfg.epochs, 1);
    // Constrained at a bound between the baseline's gap and V_D's 0.01.
    assert_eq!(cfg.fairness.lambda, 0.0);
    assert_eq!(cfg.fairness.constraints.len(), 1, "{:?}", cfg.fairness);
    let bound = cfg.fairness.constraints[0].bound;
    assert!((0.01..=1.0).contains(&bound), "{bound}");
    assert_eq!(labels[1], format!("equalized_odds<={bound}"));
    let second = read_run_config(&candidate("02-")).unwrap().config;
    assert_eq!(second.weighting, Weighting::Reweighing);
    // Reweighing retrains at the anchor's setting: the first candidate's
    // bound, or the baseline's none.
    assert!(
        second.fairness.constraints.is_empty()
            || second.fairness.constraints == cfg.fairness.constraints,
        "{:?}",
        second.fairness
    );

    // The chosen model is a normal model folder; thresholds.json iff post-processed.
    let model = &outcome.model_dir;
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(model.join(f).is_file(), "{f}");
    }
    let device = valor_bert::device(valor_bert::Backend::Cpu).unwrap();
    valor_bert::with_device_rng(|| {
        valor_bert::load_hf(model, &device, valor_bert::LoadOptions::default())
    })
    .unwrap();
    let post = &report.chosen.settings["postprocess"];
    let thresholds = ThresholdsFile::load(model).unwrap();
    assert_eq!(thresholds.is_some(), !post.is_null(), "{post}");
    if let Some(t) = thresholds {
        assert_eq!(t.group_column, "gender");
        assert!(model.join(THRESHOLDS_FILE).is_file());
    }
    assert!(notes.iter().any(|n| n.starts_with("V0 = ")), "{notes:?}");

    // A second remodeling into the same folder needs --overwrite.
    let again = remodel(&config(&run, &out, VALUES), &mut Silent, &mut |_: &str| {});
    assert!(
        matches!(again, Err(valor_train::Error::Invalid { .. })),
        "{again:?}"
    );
}

#[test]
fn unmeasurable_dimensions_fail_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-run");
    let latency = "[target]\nefficiency = 0.5\n[measure]\nefficiency = \"latency\"\n[efficiency]\nbudget_latency_ms = 10.0\n";
    let err = remodel(
        &config(&missing, &tmp.path().join("out"), latency),
        &mut Silent,
        &mut |_: &str| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`efficiency`")
            && err.contains("`latency`")
            && err.contains("test/values.toml"),
        "{err}"
    );

    // Transparency without explanations: an error under unmeasured = "error".
    let strict = "unmeasured = \"error\"\n[target]\ntransparency = 0.5\naccuracy = 0.5\n";
    let mut c = config(&missing, &tmp.path().join("out"), strict);
    c.faithfulness_examples = 0;
    let err = remodel(&c, &mut Silent, &mut |_: &str| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("transparency"), "{err}");
    assert!(!tmp.path().join("out").exists(), "nothing written");
}
