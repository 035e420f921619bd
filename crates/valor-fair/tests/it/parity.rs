//! Parity with the Python peers, on `shared/fixtures/fairness`.
//!
//! Fixtures: `adult_fairlearn.json` and `multiclass_fairlearn.json` from
//! `ref_fairlearn.py` (fairlearn 0.15, scikit-learn 1.9), `adult_aif360.json`
//! from `ref_aif360.py` (AIF360 0.6.1). Tolerance: 1e-9 absolute (README).

use serde_json::Value;
use valor_fair::{AuditConfig, AuditReport, GroupSpec, MetricSummary, SpecReport, audit};

use crate::support::{Csv, check, fairness_dir, fixture};

fn specs_of(fx: &Value) -> Vec<GroupSpec> {
    fx["specs"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| GroupSpec::parse(k).unwrap())
        .collect()
}

/// Checks one fairlearn `frame(...)` of the fixture against our summaries.
fn check_frame(spec: &SpecReport, frame: &Value, metric_names: &[(&str, &str)]) {
    let by_group_fx = frame["by_group"].as_object().unwrap();
    for (ours, theirs) in metric_names {
        let m: &MetricSummary = spec
            .metrics
            .get(ours)
            .unwrap_or_else(|| panic!("{}: no metric {ours}", spec.name));
        let w = |part: &str| format!("{}/{theirs}/{part}", spec.name);
        check(&w("overall"), m.overall, &frame["overall"][theirs]);
        let groups = by_group_fx[*theirs].as_object().unwrap();
        for (key, expected) in groups {
            let actual = m
                .by_group
                .get(key)
                .unwrap_or_else(|| panic!("{}: no group {key}", w("by_group")));
            check(&w(&format!("by_group/{key}")), *actual, expected);
        }
        assert_eq!(m.by_group.len(), groups.len(), "{}", w("group count"));
        check(
            &w("difference_between_groups"),
            m.difference_between_groups,
            &frame["difference_between_groups"][theirs],
        );
        check(
            &w("difference_to_overall"),
            m.difference_to_overall,
            &frame["difference_to_overall"][theirs],
        );
        check(
            &w("ratio_between_groups"),
            m.ratio_between_groups,
            &frame["ratio_between_groups"][theirs],
        );
        check(
            &w("ratio_to_overall"),
            m.ratio_to_overall,
            &frame["ratio_to_overall"][theirs],
        );
        check(&w("group_min"), m.group_min, &frame["group_min"][theirs]);
        check(&w("group_max"), m.group_max, &frame["group_max"][theirs]);
    }
}

fn adult_report(shared: &std::path::Path, privileged: bool) -> AuditReport {
    let csv = Csv::read(&fairness_dir(shared).join("adult_predictions.csv"));
    let input = csv.input(None, true, &["sex", "race", "age_band"]);
    let fx = fixture(shared, "adult_fairlearn.json");
    let mut config = AuditConfig::default();
    config.specs = specs_of(&fx);
    if privileged {
        config = config.privilege("sex", "Male").privilege("race", "White");
    }
    audit(&input, &config).unwrap()
}

#[valor_testkit::shared_test]
fn adult_matches_fairlearn() {
    let shared = valor_testkit::shared_dir();
    let fx = fixture(&shared, "adult_fairlearn.json");
    let report = adult_report(&shared, false);
    assert_eq!(report.rows, fx["rows"].as_u64().unwrap());
    let names: Vec<(&str, &str)> = [
        "accuracy",
        "balanced_accuracy",
        "selection_rate",
        "true_positive_rate",
        "false_positive_rate",
        "true_negative_rate",
        "false_negative_rate",
        "precision",
        "count",
    ]
    .iter()
    .map(|n| (*n, *n))
    .collect();
    let mut checked = 0;
    for (spec_name, sfx) in fx["specs"].as_object().unwrap() {
        let spec = report.spec(spec_name).unwrap();
        check_frame(spec, &sfx["metric_frame"], &names);
        check_frame(spec, &sfx["roc_auc"], &[("roc_auc", "roc_auc")]);
        let fl = spec.fairlearn.as_ref().unwrap();
        let scalars = sfx["scalars"].as_object().unwrap();
        for (name, value) in fl.entries() {
            check(
                &format!("{spec_name}/scalars/{name}"),
                value,
                &scalars[name],
            );
        }
        assert_eq!(scalars.len(), fl.entries().len());
        checked += 1;
    }
    assert_eq!(checked, 4);
}

#[valor_testkit::shared_test]
fn adult_matches_aif360() {
    let shared = valor_testkit::shared_dir();
    let fx = fixture(&shared, "adult_aif360.json");
    let report = adult_report(&shared, true);
    for (attr, afx) in fx["attributes"].as_object().unwrap() {
        let spec = report.spec(attr).unwrap();
        let a = spec.aif360.as_ref().unwrap();
        assert_eq!(a.privileged, [afx["privileged"].as_str().unwrap()]);
        let w = |n: &str| format!("{attr}/{n}");
        for (name, value) in a.entries() {
            if let Some(expected) = afx.get(name) {
                check(&w(name), value, expected);
            }
        }
        for name in [
            "statistical_parity_difference",
            "disparate_impact",
            "equal_opportunity_difference",
            "average_odds_difference",
            "average_abs_odds_difference",
            "error_rate_difference",
            "false_discovery_rate_difference",
            "between_group_theil_index",
            "dataset_mean_difference_true_labels",
        ] {
            assert!(afx.get(name).is_some(), "fixture lacks {name}");
        }
        check(
            &w("theil_index"),
            report.dataset.theil_index,
            &afx["theil_index"],
        );
        check(
            &w("generalized_entropy_index_alpha2"),
            report.dataset.generalized_entropy_index_alpha2,
            &afx["generalized_entropy_index_alpha2"],
        );
        let weights = afx["reweighing_weights_true_labels"].as_object().unwrap();
        assert_eq!(weights.len(), a.reweighing_weights_true_labels.len());
        for (key, expected) in weights {
            let actual = a
                .reweighing_weights_true_labels
                .get(key)
                .unwrap_or_else(|| panic!("{attr}: no weight {key}"));
            check(&w(&format!("reweighing/{key}")), *actual, expected);
        }
    }
}

#[valor_testkit::shared_test]
fn multiclass_matches_fairlearn() {
    let shared = valor_testkit::shared_dir();
    let fx = fixture(&shared, "multiclass_fairlearn.json");
    let csv = Csv::read(&fairness_dir(&shared).join("multiclass_predictions.csv"));
    let input = csv.input(None, false, &["gender", "age_band"]);
    let mut config = AuditConfig::default();
    config.specs = specs_of(&fx);
    let report = audit(&input, &config).unwrap();
    for (spec_name, sfx) in fx["specs"].as_object().unwrap() {
        let spec = report.spec(spec_name).unwrap();
        let labels: Vec<&str> = sfx["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(report.labels, labels);
        let frame = &sfx["metric_frame"];
        let names: Vec<String> = frame["overall"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), n.as_str())).collect();
        assert_eq!(pairs.len(), 3 + 3 * labels.len());
        check_frame(spec, frame, &pairs);
        let cm = &sfx["confusion_matrix"];
        assert_eq!(
            serde_json::to_value(&spec.confusion_matrix.overall).unwrap(),
            cm["overall"]
        );
        let by_group = cm["by_group"].as_object().unwrap();
        assert_eq!(by_group.len(), spec.confusion_matrix.by_group.len());
        for (key, expected) in by_group {
            let ours = spec.confusion_matrix.by_group.get(key).unwrap();
            assert_eq!(
                &serde_json::to_value(ours).unwrap(),
                expected,
                "{spec_name}/{key}"
            );
        }
    }
}
