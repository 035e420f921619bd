//! `values.toml` parsing and validation: every error names the file and the
//! offending key or dimension.

use valor_values::{
    DistanceMetric, EvalField, Measure, SelectRule, UnmeasuredPolicy, ValuesSpec,
    default_values_toml,
};

const FILE: &str = "project/values.toml";

/// Parses `input` and checks that it fails with a message containing
/// `expected` and naming the file.
#[track_caller]
fn check(input: &str, expected: &str) {
    match ValuesSpec::parse(input, FILE) {
        Ok(spec) => panic!("expected an error containing {expected:?}, parsed {spec:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(expected), "error {msg:?} lacks {expected:?}");
            assert!(msg.contains(FILE), "error {msg:?} does not name the file");
        }
    }
}

#[test]
fn default_values_toml_parses_to_the_documented_defaults() {
    let spec = ValuesSpec::parse(default_values_toml(), "default").unwrap();
    assert_eq!(spec.dimensions(), ValuesSpec::default().dimensions());
    assert_eq!(spec.search(), ValuesSpec::default().search());
    assert_eq!(spec.distance(), DistanceMetric::L2);
    assert_eq!(spec.unmeasured(), UnmeasuredPolicy::Exclude);
    let names: Vec<_> = spec
        .dimensions()
        .iter()
        .map(|d| d.dimension.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["accuracy", "efficiency", "fairness", "transparency"]
    );
    let targets = spec.targets();
    assert_eq!(targets["fairness"], 0.95);
    assert_eq!(targets["accuracy"], 0.80);
    assert_eq!(targets["transparency"], 0.70);
    assert_eq!(targets["efficiency"], 0.50);
    assert_eq!(
        spec.dimension("fairness").unwrap().measure,
        Measure::OneMinusEqualizedOddsDifference
    );
    assert_eq!(
        spec.dimension("accuracy").unwrap().measure,
        Measure::MacroF1
    );
    assert_eq!(
        spec.dimension("transparency").unwrap().measure,
        Measure::Faithfulness
    );
    assert_eq!(spec.dimension("efficiency").unwrap().measure, Measure::Cost);
    assert_eq!(spec.efficiency().budget_gflops_per_example, Some(1.0));
    assert_eq!(spec.efficiency().budget_weight_mb, Some(25.0));
    assert_eq!(spec.efficiency().budget_examples_per_s, Some(200.0));
    assert_eq!(spec.efficiency().budget_latency_ms, Some(50.0));
    let s = spec.search();
    assert_eq!((s.alpha, s.eta, s.tolerance), (0.5, 0.5, 0.01));
    assert_eq!((s.max_candidates, s.patience), (12, 3));
    assert!(s.reweighing && s.postprocess_thresholds);
    assert_eq!(s.select, SelectRule::ParetoNearest);
    assert!(spec.dimensions().iter().all(|d| d.weight == 1.0));
}

#[test]
fn the_shipped_file_is_the_default() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("values.toml");
    let from_file = ValuesSpec::from_path(&path).unwrap();
    assert_eq!(from_file.targets(), ValuesSpec::default().targets());
    assert!(from_file.origin().ends_with("values.toml"));
    assert!(
        from_file.warnings().is_empty(),
        "the shipped file sets no retired key: {:?}",
        from_file.warnings()
    );
}

#[test]
fn minimal_file_uses_defaults() {
    let spec = ValuesSpec::parse("[target]\nfairness = 0.9\naccuracy = 1\n", FILE).unwrap();
    assert_eq!(
        spec.targets()["accuracy"],
        1.0,
        "integer targets are accepted"
    );
    assert_eq!(spec.distance(), DistanceMetric::L2);
    assert!(spec.warnings().is_empty());
    assert_eq!(spec.space().names(), ["accuracy", "fairness"]);
}

#[test]
fn custom_dimension_with_measure_and_weights() {
    let spec = ValuesSpec::parse(
        r#"
distance = "linf"
[target]
fairness = 0.9
calibration = 0.8
[weights]
calibration = 3.0
[measure]
fairness = "disparate_impact_min_ratio"
calibration = "1-extra.expected_calibration_error"
[dimensions.calibration]
description = "1 - expected calibration error"
[search]
select = "nearest"
"#,
        FILE,
    )
    .unwrap();
    let cal = spec.dimension("calibration").unwrap();
    assert_eq!(cal.weight, 3.0);
    assert_eq!(cal.dimension.description, "1 - expected calibration error");
    assert_eq!(
        cal.measure,
        Measure::Extra {
            name: "expected_calibration_error".into(),
            one_minus: true
        }
    );
    assert_eq!(spec.dimension("fairness").unwrap().weight, 1.0);
    assert_eq!(spec.space().weights(), [3.0, 1.0]);
    assert_eq!(spec.space().metric(), DistanceMetric::Linf);
    assert_eq!(spec.search().select, SelectRule::Nearest);
}

#[test]
fn unknown_keys_are_named() {
    check(
        "distanse = \"l2\"\n[target]\nfairness = 0.9\n",
        "unknown field `distanse`",
    );
    check(
        "[target]\nfairness = 0.9\n[search]\nalfa = 0.5\n",
        "unknown field `alfa`",
    );
    check(
        "[target]\nfairness = 0.9\n[serch]\nalpha = 0.5\n",
        "unknown field `serch`",
    );
    check(
        "[target]\nfairness = 0.9\n[efficiency]\nbudget_examples = 10.0\n",
        "unknown field `budget_examples`",
    );
    check(
        "[target]\nx = 0.9\n[dimensions.x]\ndescription = \"d\"\nunit = \"s\"\n[measure]\nx = \"extra.x\"\n",
        "unknown field `unit`",
    );
}

#[test]
fn unknown_dimensions_are_named_with_the_table() {
    check(
        "[target]\nfairnes = 0.9\n",
        "unknown dimension `fairnes` in [target]",
    );
    check(
        "[target]\nfairness = 0.9\n[weights]\nacuracy = 1.0\n",
        "unknown dimension `acuracy` in [weights]",
    );
    check(
        "[target]\nfairness = 0.9\n[measure]\nfair = \"accuracy\"\n",
        "unknown dimension `fair` in [measure]",
    );
    // The message lists the known dimensions.
    check("[target]\nfairnes = 0.9\n", "fairness, transparency");
}

#[test]
fn targets_outside_the_unit_interval_are_rejected() {
    check("[target]\nfairness = 1.2\n", "target for `fairness` is 1.2");
    check(
        "[target]\naccuracy = -0.1\n",
        "target for `accuracy` is -0.1",
    );
    check("[target]\naccuracy = nan\n", "target for `accuracy` is NaN");
    check("[target]\naccuracy = inf\n", "target for `accuracy` is inf");
}

#[test]
fn bad_weights_are_rejected() {
    check(
        "[target]\naccuracy = 0.8\n[weights]\naccuracy = -1.0\n",
        "weight for `accuracy` is -1",
    );
    check(
        "[target]\naccuracy = 0.8\n[weights]\naccuracy = nan\n",
        "weight for `accuracy` is NaN",
    );
    check(
        "[target]\naccuracy = 0.8\nfairness = 0.9\n[weights]\naccuracy = 0.0\nfairness = 0\n",
        "every weight is 0",
    );
    check(
        "[target]\naccuracy = 0.8\n[weights]\nefficiency = 1.0\n",
        "[weights] names `efficiency`, which has no entry in [target]",
    );
}

#[test]
fn unknown_names_list_the_alternatives() {
    check(
        "distance = \"l3\"\n[target]\nfairness = 0.9\n",
        "unknown distance metric `l3` for `distance`; expected one of: l1, l2, linf, cosine",
    );
    check(
        "unmeasured = \"ignore\"\n[target]\nfairness = 0.9\n",
        "unknown policy `ignore` for `unmeasured`; expected one of: exclude, error",
    );
    check(
        "[target]\nfairness = 0.9\n[search]\nselect = \"best\"\n",
        "unknown selection rule `best`",
    );
    check(
        "[target]\nfairness = 0.9\n[measure]\nfairness = \"equal_odds\"\n",
        "unknown measure `equal_odds` for `measure.fairness`",
    );
    check(
        "[target]\nfairness = 0.9\n[measure]\nfairness = \"extra.\"\n",
        "unknown measure `extra.`",
    );
}

#[test]
fn measures_must_fit_their_dimension() {
    check(
        "[target]\nfairness = 0.9\n[measure]\nfairness = \"macro_f1\"\n",
        "measure `macro_f1` cannot score dimension `fairness`; choose one of: 1-equalized_odds_difference",
    );
    check(
        "[target]\naccuracy = 0.9\n[measure]\naccuracy = \"faithfulness\"\n",
        "measure `faithfulness` cannot score dimension `accuracy`",
    );
    check(
        "[target]\ntransparency = 0.9\n[measure]\ntransparency = \"throughput\"\n",
        "cannot score dimension `transparency`",
    );
    // Extras fit any dimension; custom dimensions take any measure.
    ValuesSpec::parse(
        "[target]\nfairness = 0.9\n[measure]\nfairness = \"extra.my_gap\"\n",
        FILE,
    )
    .unwrap();
    ValuesSpec::parse(
        "[target]\nx = 0.9\n[measure]\nx = \"balanced_accuracy\"\n[dimensions.x]\ndescription = \"d\"\n",
        FILE,
    )
    .unwrap();
}

#[test]
fn dimensions_that_can_never_be_measured_are_errors() {
    check(
        "[target]\ncalibration = 0.9\n[dimensions.calibration]\ndescription = \"d\"\n",
        "custom dimension `calibration` has no measure",
    );
    check(
        "[target]\nfairness = 0.9\n[dimensions.calibration]\ndescription = \"d\"\n",
        "[dimensions] names `calibration`, which has no entry in [target]",
    );
    check(
        "[target]\nfairness = 0.9\n[dimensions.fairness]\ndescription = \"mine\"\n",
        "built-in dimension and cannot be redeclared",
    );
    check(
        "[target]\nx = 0.9\n[measure]\nx = \"extra.x\"\n[dimensions.x]\ndescription = \" \"\n",
        "describe what the dimension means",
    );
    check(
        "[target]\nBad = 0.9\n[measure]\nBad = \"extra.x\"\n[dimensions.Bad]\ndescription = \"d\"\n",
        "lowercase",
    );
    check(
        "[target]\nx = 0.9\n[dimensions.x]\n",
        "missing field `description`",
    );
}

#[test]
fn efficiency_measures_need_a_budget() {
    check(
        "[target]\nefficiency = 0.5\n",
        "measure `cost`, which needs `budget_gflops_per_example` > 0 under [efficiency]",
    );
    check(
        "[target]\nefficiency = 0.5\n[efficiency]\nbudget_gflops_per_example = 1.0\n",
        "needs `budget_weight_mb` > 0",
    );
    check(
        "[target]\nefficiency = 0.5\n[measure]\nefficiency = \"throughput\"\n",
        "needs `budget_examples_per_s` > 0 under [efficiency]",
    );
    check(
        "[target]\nefficiency = 0.5\n[measure]\nefficiency = \"latency\"\n[efficiency]\nbudget_examples_per_s = 10.0\n",
        "needs `budget_latency_ms` > 0",
    );
    check(
        "[target]\nefficiency = 0.5\n[efficiency]\nbudget_examples_per_s = 0.0\n",
        "`efficiency.budget_examples_per_s` = 0 is invalid",
    );
}

#[test]
fn search_settings_are_validated() {
    let base = "[target]\nfairness = 0.9\n[search]\n";
    check(&format!("{base}eta = 2.0\n"), "`search.eta` = 2 is invalid");
    check(&format!("{base}eta = 0\n"), "`search.eta` = 0 is invalid");
    check(
        &format!("{base}alpha = 0.0\n"),
        "`search.alpha` = 0 is invalid",
    );
    check(
        &format!("{base}alpha = 1.5\n"),
        "`search.alpha` = 1.5 is invalid",
    );
    check(
        &format!("{base}tolerance = -0.1\n"),
        "`search.tolerance` = -0.1 is invalid",
    );
    check(
        &format!("{base}max_candidates = 0\n"),
        "`search.max_candidates` = 0 is invalid",
    );
    check(
        &format!("{base}patience = 0\n"),
        "`search.patience` = 0 is invalid",
    );
    check(&format!("{base}max_candidates = -3\n"), "max_candidates");
    // alpha = 1 is allowed: aim at V_D at once.
    ValuesSpec::parse(&format!("{base}alpha = 1\n"), FILE).unwrap();
}

#[test]
fn syntax_and_type_errors_carry_the_parser_message() {
    check("[target]\nfairness = \n", "line 2");
    check("[target]\nfairness = \"high\"\n", "invalid type");
    check(
        "[target]\nfairness = 0.9\nfairness = 0.8\n",
        "duplicate key",
    );
    check("", "[target] is empty");
    check("[target]\n", "[target] is empty");
}

#[test]
fn reading_a_missing_file_names_it() {
    let err = ValuesSpec::from_path(std::path::Path::new("/no/such/values.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/no/such/values.toml"), "{err}");
}

#[test]
fn unavailable_faithfulness_is_reported_or_refused_per_policy() {
    let text = "[target]\nfairness = 0.9\ntransparency = 0.7\n";
    let no_faithfulness = |f: &EvalField| *f != EvalField::Faithfulness;

    let exclude = ValuesSpec::parse(text, FILE).unwrap();
    let missing = exclude.check_available(no_faithfulness).unwrap();
    assert_eq!(missing.keys().collect::<Vec<_>>(), ["transparency"]);
    assert!(missing["transparency"].contains("faithfulness was not computed"));
    assert!(exclude.check_available(|_| true).unwrap().is_empty());

    let strict = ValuesSpec::parse(&format!("unmeasured = \"error\"\n{text}"), FILE).unwrap();
    let err = strict
        .check_available(no_faithfulness)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("dimension `transparency` cannot be measured"),
        "{err}"
    );
    assert!(err.contains("unmeasured = \"error\""), "{err}");
    strict.check_available(|_| true).unwrap();

    let err = exclude.check_available(|_| false).unwrap_err().to_string();
    assert!(
        err.contains("none of the target dimensions can be measured"),
        "{err}"
    );
}

/// `search.lambdas` (the λ grid remodel no longer walks) is accepted with
/// a warning that names the file and says what replaced it; the rest of the
/// file is read as without it, and an unknown key stays an error.
#[test]
fn retired_lambdas_load_with_a_warning() {
    let with = ValuesSpec::parse(
        "[target]\nfairness = 0.9\n[search]\nlambdas = [0.0, 0.1, 1.0]\npatience = 5\n",
        FILE,
    )
    .unwrap();
    let without =
        ValuesSpec::parse("[target]\nfairness = 0.9\n[search]\npatience = 5\n", FILE).unwrap();
    assert_eq!(with.search(), without.search());
    assert_eq!(with.targets(), without.targets());
    assert!(without.warnings().is_empty());
    let [warning] = with.warnings() else {
        panic!("one warning expected: {:?}", with.warnings());
    };
    for want in [
        FILE,
        "`search.lambdas` is no longer read",
        "bound",
        "delete the key",
    ] {
        assert!(warning.contains(want), "{want}: {warning}");
    }
    // Whatever it held: a retired key is not validated any more.
    assert_eq!(
        ValuesSpec::parse("[target]\nfairness = 0.9\n[search]\nlambdas = []\nreweighing = false\npostprocess_thresholds = false\n", FILE)
            .unwrap()
            .warnings()
            .len(),
        1
    );
    check(
        "[target]\nfairness = 0.9\n[search]\nlambda = [1.0]\n",
        "lambda",
    );
}
