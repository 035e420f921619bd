//! The report as a stable boundary: JSON layout and round trip, renderings,
//! thresholds and breaches, warnings, and the errors that guard the input.

use valor_fair::{
    AuditConfig, AuditInput, Error, GroupSpec, LabelSet, Limit, Threshold, WarningKind, audit,
    paths,
};

use crate::support::{Csv, fairness_dir};

fn small() -> AuditInput {
    let t = ["1", "0", "1", "1", "0", "0", "1", "0", "1", "0", "1", "1"];
    let p = ["1", "0", "0", "1", "1", "0", "1", "0", "0", "0", "1", "0"];
    let s = [
        0.9, 0.2, 0.4, 0.8, 0.7, 0.1, 0.6, 0.3, 0.45, 0.35, 0.95, 0.5,
    ];
    let g = [
        "a<b", "a<b", "a<b", "a<b", "c&d", "c&d", "c&d", "c&d", "e", "e", "e", "e",
    ];
    let h = ["x", "y", "x", "y", "x", "y", "x", "y", "x", "y", "x", "y"];
    AuditInput::from_strings(&t, &p, None)
        .unwrap()
        .with_scores(s.to_vec())
        .unwrap()
        .with_group("g", &g)
        .unwrap()
        .with_group("h", &h)
        .unwrap()
}

#[test]
fn json_has_a_fixed_key_order_and_round_trips() {
    let mut c = AuditConfig::default();
    c.specs = GroupSpec::from_columns(&["g", "h"], true);
    c = c.privilege("h", "x");
    let r = audit(&small(), &c).unwrap();
    let text = r.to_json_pretty().unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let top: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        top,
        [
            "schema",
            "provenance",
            "task",
            "labels",
            "positive_label",
            "ordinal",
            "rows",
            "config",
            "bootstrap",
            "dataset",
            "specs",
            "warnings",
            "breaches"
        ]
    );
    assert_eq!(v["schema"], valor_fair::SCHEMA);
    let spec = &v["specs"][2];
    assert_eq!(spec["name"], "g+h");
    let keys: Vec<&str> = spec["metrics"]["accuracy"]["by_group"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["a<b|x", "a<b|y", "c&d|x", "c&d|y", "e|x", "e|y"]);
    let metrics: Vec<&str> = spec["metrics"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        metrics,
        [
            "accuracy",
            "balanced_accuracy",
            "selection_rate",
            "true_positive_rate",
            "false_positive_rate",
            "true_negative_rate",
            "false_negative_rate",
            "precision",
            "count",
            "roc_auc",
            "expected_calibration_error"
        ]
    );
    assert!(v["specs"][1]["aif360"].is_object());
    assert!(v["specs"][0]["aif360"].is_null());
    let back = valor_fair::AuditReport::from_json(&text).unwrap();
    assert_eq!(back, r);
    assert_eq!(back.to_json_pretty().unwrap(), text);
}

#[test]
fn markdown_and_html_render_every_spec_safely() {
    let mut c = AuditConfig::default();
    c.bootstrap = Some(valor_fair::BootstrapConfig::new(50, 1));
    let r = audit(&small(), &c).unwrap();
    let md = r.to_markdown();
    assert!(md.contains("## g\n") && md.contains("## h\n"), "{md}");
    assert!(md.contains("demographic_parity_difference"));
    assert!(md.contains("| a<b "));
    let html = r.to_html();
    assert!(html.starts_with("<!doctype html>"));
    assert!(!html.contains("<script"), "no scripts");
    assert!(!html.contains("src="), "no external assets");
    assert!(html.contains("a&lt;b") && html.contains("c&amp;d"));
    assert!(!html.contains("a<b"), "group names are escaped");
    assert!(
        html.matches("<svg").count() >= 2 * 6,
        "bars, ROC and calibration per spec"
    );
    let dir = tempfile::tempdir().unwrap();
    r.write_html(&dir.path().join("r.html")).unwrap();
    r.write_json(&dir.path().join("r.json")).unwrap();
    let again = std::fs::read_to_string(dir.path().join("r.json")).unwrap();
    assert_eq!(valor_fair::AuditReport::from_json(&again).unwrap(), r);
}

#[valor_testkit::shared_test]
fn declared_thresholds_gate_the_exit_code() {
    let shared = valor_testkit::shared_dir();
    let csv = Csv::read(&fairness_dir(&shared).join("adult_predictions.csv"));
    let input = csv.input(None, true, &["sex", "race"]);
    let mut c = AuditConfig::default().privilege("sex", "Male");
    c.thresholds = vec![
        Threshold::at_most(paths::DEMOGRAPHIC_PARITY_DIFFERENCE, 0.1),
        Threshold::at_least(paths::DISPARATE_IMPACT, 0.8),
        Threshold::at_most("metrics.roc_auc.difference_between_groups", 0.5),
        "|aif360.statistical_parity_difference|<=0.2"
            .parse()
            .unwrap(),
    ];
    let r = audit(&input, &c).unwrap();
    assert!(!r.passed());
    let got: Vec<(Option<&str>, &str)> = r
        .breaches()
        .iter()
        .map(|b| (b.spec.as_deref(), b.metric.as_str()))
        .collect();
    // sex: DP difference 0.1696, DI 0.3177; race: DP difference 0.2064;
    // |SPD| of sex is 0.1696 <= 0.2 and the AUC gaps are small.
    assert_eq!(
        got,
        [
            (Some("sex"), paths::DEMOGRAPHIC_PARITY_DIFFERENCE),
            (Some("race"), paths::DEMOGRAPHIC_PARITY_DIFFERENCE),
            (Some("sex"), paths::DISPARATE_IMPACT),
        ]
    );
    assert_eq!(r.breaches()[2].limit, Limit::AtLeast(0.8));
    assert!(r.to_markdown().contains("## Breaches"));

    c.thresholds = vec![Threshold::at_most(
        paths::DEMOGRAPHIC_PARITY_DIFFERENCE,
        0.5,
    )];
    assert!(audit(&input, &c).unwrap().passed());

    c.thresholds = vec![Threshold::at_most("fairlearn.no_such_metric", 0.1)];
    assert!(matches!(
        audit(&input, &c),
        Err(Error::ThresholdNotApplicable { .. })
    ));
    let mut c2 = AuditConfig::default();
    c2.thresholds = vec![Threshold::at_least(paths::DISPARATE_IMPACT, 0.8)];
    let e = audit(&input, &c2).unwrap_err();
    assert!(e.to_string().contains("--privileged"), "{e}");
    c2.thresholds = vec![Threshold::at_most(paths::MULTICLASS_RECALL_GAP, 0.1)];
    assert!(audit(&input, &c2).is_err());
    c2.thresholds = vec![Threshold::at_most(paths::THEIL_INDEX, 0.1)];
    let r = audit(&input, &c2).unwrap();
    assert_eq!(r.breaches()[0].spec, None);
}

#[test]
fn warnings_flag_constant_classifiers_small_and_undefined_groups() {
    let t = ["1", "0", "0", "0", "0", "0"];
    let p = ["1", "1", "1", "1", "1", "1"];
    let g = ["a", "a", "b", "b", "b", "b"];
    let i = AuditInput::from_strings(&t, &p, None)
        .unwrap()
        .with_group("g", &g)
        .unwrap();
    let r = audit(&i, &AuditConfig::default()).unwrap();
    let kinds: Vec<WarningKind> = r.warnings.iter().map(|w| w.kind).collect();
    assert!(kinds.contains(&WarningKind::ConstantClassifier));
    assert!(kinds.contains(&WarningKind::SmallGroup));
    let f = r.specs[0].four_fifths.as_ref().unwrap();
    assert_eq!((f.passes, f.constant_classifier), (Some(true), true));
    assert!(r.to_markdown().contains("trivially"));
    // no positives in group b: its TPR is undefined (null), not 0
    let tpr = r.specs[0].metrics.get("true_positive_rate").unwrap();
    assert_eq!(tpr.by_group.get("b"), Some(&None));
    assert!(
        r.warnings
            .iter()
            .any(|w| w.kind == WarningKind::UndefinedMetric && w.group.as_deref() == Some("b"))
    );
}

#[test]
fn known_groups_reject_unseen_values() {
    let mut c = AuditConfig::default();
    c.known_groups
        .insert("g".into(), vec!["a<b".into(), "c&d".into()]);
    match audit(&small(), &c) {
        Err(Error::UnseenGroup { value, row, .. }) => assert_eq!((value.as_str(), row), ("e", 8)),
        other => panic!("{other:?}"),
    }
    c.known_groups.insert(
        "g".into(),
        vec!["a<b".into(), "c&d".into(), "e".into(), "f".into()],
    );
    let r = audit(&small(), &c).unwrap();
    assert!(
        r.warnings
            .iter()
            .any(|w| w.kind == WarningKind::DeclaredGroupAbsent && w.group.as_deref() == Some("f"))
    );
}

#[test]
fn configuration_errors_say_what_to_fix() {
    let mut c = AuditConfig::default();
    c.specs = vec![GroupSpec::single("sex")];
    let e = audit(&small(), &c).unwrap_err();
    assert!(e.to_string().contains("`g`, `h`"), "{e}");
    let c = AuditConfig::default().privilege("g", "zzz");
    assert!(matches!(
        audit(&small(), &c),
        Err(Error::UnknownPrivilegedGroup { .. })
    ));
    let c = AuditConfig::default().privilege("g+h", "e|x");
    assert!(matches!(
        audit(&small(), &c),
        Err(Error::PrivilegedSpecNotAudited { .. })
    ));
    let no_yes = AuditInput::from_strings(&["no", "yes"], &["yes", "yes"], None)
        .unwrap()
        .with_group("g", &["a", "b"])
        .unwrap();
    assert!(matches!(
        audit(&no_yes, &AuditConfig::default()),
        Err(Error::PositiveLabelRequired { .. })
    ));
    let mut c = AuditConfig::default();
    c.positive_label = Some("yes".into());
    assert_eq!(
        audit(&no_yes, &c).unwrap().positive_label.as_deref(),
        Some("yes")
    );
    let i = AuditInput::from_strings(&["0", "1"], &["1", "1"], None).unwrap();
    assert!(matches!(
        audit(&i, &AuditConfig::default()),
        Err(Error::NoGroups)
    ));
    let three = LabelSet::new(&["a", "b", "c"]).unwrap();
    let i = AuditInput::from_strings(&["a", "b"], &["c", "b"], Some(three)).unwrap();
    assert!(matches!(
        i.with_scores(vec![0.1, 0.2]),
        Err(Error::ScoresNeedBinary { .. })
    ));
}
