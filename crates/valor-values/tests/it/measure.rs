//! Measurement: each documented mapping from evaluation results to a score.

use valor_testkit::{Tolerance, assert_close};
use valor_values::{Evaluation, Score, ValuesSpec, measure};

fn evaluation() -> Evaluation {
    Evaluation {
        accuracy: 0.86,
        macro_f1: 0.81,
        balanced_accuracy: 0.79,
        demographic_parity_difference: Some(0.12),
        demographic_parity_ratio: Some(0.75),
        equalized_odds_difference: Some(0.08),
        equalized_odds_ratio: Some(0.7),
        disparate_impact_min_ratio: Some(0.66),
        faithfulness: Some(0.42),
        examples_per_s: Some(150.0),
        latency_ms_p50: Some(80.0),
        gflops_per_example: Some(2.0),
        weight_mb: Some(20.0),
        extra: [("ece".to_owned(), 0.05)].into_iter().collect(),
    }
}

fn spec(dimension: &str, measure: &str) -> ValuesSpec {
    let decl = match dimension {
        "fairness" | "accuracy" | "transparency" | "efficiency" => String::new(),
        other => format!("[dimensions.{other}]\ndescription = \"custom\"\n"),
    };
    let text = format!(
        "[target]\n{dimension} = 0.5\n[measure]\n{dimension} = \"{measure}\"\n\
         [efficiency]\nbudget_examples_per_s = 200.0\nbudget_latency_ms = 50.0\n\
         budget_gflops_per_example = 1.0\nbudget_weight_mb = 40.0\n{decl}"
    );
    ValuesSpec::parse(&text, "values.toml").unwrap()
}

/// Measures `dimension` with `measure` on `eval` and compares with `expected`.
#[track_caller]
fn check(dimension: &str, measure_name: &str, eval: &Evaluation, expected: f64) {
    let profile = measure(eval, &spec(dimension, measure_name)).unwrap();
    let got = profile
        .value(dimension)
        .unwrap_or_else(|| panic!("{dimension} via {measure_name} not measured"));
    assert_close(
        &format!("{dimension} via {measure_name}"),
        got,
        expected,
        Tolerance::abs(1e-12),
    );
}

#[test]
fn every_measure_follows_its_formula() {
    let e = evaluation();
    check("accuracy", "accuracy", &e, 0.86);
    check("accuracy", "macro_f1", &e, 0.81);
    check("accuracy", "balanced_accuracy", &e, 0.79);
    check("fairness", "1-demographic_parity_difference", &e, 0.88);
    check("fairness", "demographic_parity_ratio", &e, 0.75);
    check("fairness", "1-equalized_odds_difference", &e, 0.92);
    check("fairness", "equalized_odds_ratio", &e, 0.7);
    check("fairness", "disparate_impact_min_ratio", &e, 0.66);
    check("transparency", "faithfulness", &e, 0.42);
    // min(1, 150 / 200) and min(1, 50 / 80).
    check("efficiency", "throughput", &e, 0.75);
    check("efficiency", "latency", &e, 0.625);
    // (min(1, 1 / 2) + min(1, 40 / 20)) / 2.
    check("efficiency", "cost", &e, 0.75);
    check("calibration", "1-extra.ece", &e, 0.95);
    check("calibration", "extra.ece", &e, 0.05);
}

#[test]
fn efficiency_saturates_at_one_within_budget() {
    let fast = Evaluation {
        examples_per_s: Some(500.0),
        latency_ms_p50: Some(0.0),
        ..evaluation()
    };
    check("efficiency", "throughput", &fast, 1.0);
    check("efficiency", "latency", &fast, 1.0);
    let slow = Evaluation {
        examples_per_s: Some(0.0),
        ..evaluation()
    };
    check("efficiency", "throughput", &slow, 0.0);
}

#[test]
fn cost_counts_quantised_weights_as_smaller_and_ignores_timings() {
    let fp32 = Evaluation {
        weight_mb: Some(90.0),
        ..evaluation()
    };
    let int8 = Evaluation {
        weight_mb: Some(30.0),
        // A slower timing pass changes nothing: cost is counted, not timed.
        examples_per_s: Some(1.0),
        latency_ms_p50: Some(900.0),
        ..evaluation()
    };
    // (1/2 + 40/90) / 2 and (1/2 + 1) / 2.
    check("efficiency", "cost", &fp32, 0.5 * (0.5 + 40.0 / 90.0));
    check("efficiency", "cost", &int8, 0.75);
    let no_size = Evaluation {
        weight_mb: None,
        ..evaluation()
    };
    let err = measure(&no_size, &spec("efficiency", "cost"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("weight bytes"), "{err}");
}

#[test]
fn missing_inputs_are_not_measured_never_invented() {
    let e = Evaluation {
        faithfulness: None,
        ..evaluation()
    };
    let spec = ValuesSpec::default();
    let p = measure(&e, &spec).unwrap();
    match p.get("transparency") {
        Some(Score::NotMeasured { reason }) => assert!(reason.contains("faithfulness"), "{reason}"),
        other => panic!("transparency should be NOT MEASURED, got {other:?}"),
    }
    assert_eq!(p.value("accuracy"), Some(0.81));
    assert_eq!(p.not_measured().len(), 1);

    let no_groups = Evaluation {
        equalized_odds_difference: None,
        ..evaluation()
    };
    let p = measure(&no_groups, &spec).unwrap();
    assert!(p.not_measured()["fairness"].contains("sensitive-attribute"));

    let no_extra = Evaluation {
        extra: Default::default(),
        ..evaluation()
    };
    let p = measure(&no_extra, &spec_pair()).unwrap();
    assert!(p.not_measured()["calibration"].contains("extra.ece"));
}

fn spec_pair() -> ValuesSpec {
    ValuesSpec::parse(
        "[target]\naccuracy = 0.8\ncalibration = 0.9\n[measure]\ncalibration = \"1-extra.ece\"\n\
         [dimensions.calibration]\ndescription = \"1 - ECE\"\n",
        "values.toml",
    )
    .unwrap()
}

#[test]
fn strict_policy_refuses_unmeasured_dimensions() {
    let spec = ValuesSpec::parse(
        "unmeasured = \"error\"\n[target]\naccuracy = 0.8\ntransparency = 0.7\n",
        "values.toml",
    )
    .unwrap();
    let e = Evaluation {
        faithfulness: None,
        ..evaluation()
    };
    let err = measure(&e, &spec).unwrap_err().to_string();
    assert!(
        err.contains("dimension `transparency` cannot be measured"),
        "{err}"
    );
    let full = measure(&evaluation(), &spec).unwrap();
    assert_eq!(full.value("transparency"), Some(0.42));
}

#[test]
fn nothing_measurable_is_an_error() {
    let spec = ValuesSpec::parse("[target]\ntransparency = 0.7\n", "values.toml").unwrap();
    let e = Evaluation {
        faithfulness: None,
        ..evaluation()
    };
    let err = measure(&e, &spec).unwrap_err().to_string();
    assert!(
        err.contains("none of the target dimensions can be measured"),
        "{err}"
    );
}

#[test]
fn inputs_out_of_range_are_errors_naming_the_field() {
    let cases: [(&str, &str, Evaluation, &str); 5] = [
        (
            "accuracy",
            "macro_f1",
            Evaluation {
                macro_f1: 1.2,
                ..evaluation()
            },
            "macro_f1 = 1.2",
        ),
        (
            "accuracy",
            "accuracy",
            Evaluation {
                accuracy: f64::NAN,
                ..evaluation()
            },
            "accuracy = NaN",
        ),
        (
            "fairness",
            "1-equalized_odds_difference",
            Evaluation {
                equalized_odds_difference: Some(-0.1),
                ..evaluation()
            },
            "equalized_odds_difference = -0.1",
        ),
        (
            "efficiency",
            "throughput",
            Evaluation {
                examples_per_s: Some(-5.0),
                ..evaluation()
            },
            "examples_per_s = -5",
        ),
        (
            "transparency",
            "faithfulness",
            Evaluation {
                faithfulness: Some(1.5),
                ..evaluation()
            },
            "faithfulness = 1.5",
        ),
    ];
    for (dim, m, e, expected) in cases {
        let err = measure(&e, &spec(dim, m)).unwrap_err().to_string();
        assert!(
            err.contains(expected) && err.contains(dim),
            "{err:?} lacks {expected:?}"
        );
    }
}

#[test]
fn evaluation_json_round_trips_and_rejects_unknown_fields() {
    let e = evaluation();
    let json = serde_json::to_string(&e).unwrap();
    let back: Evaluation = serde_json::from_str(&json).unwrap();
    assert_eq!(back, e);
    let err = serde_json::from_str::<Evaluation>(
        r#"{"accuracy":1,"macro_f1":1,"balanced_accuracy":1,"acc":1}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("acc"), "{err}");
}
