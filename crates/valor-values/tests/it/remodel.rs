//! End to end: a simulated model family searched by the planner, `V_T`
//! selected, the report built, written and rendered.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};
use valor_testkit::{Tolerance, assert_close};
use valor_values::{
    Candidate, Evaluation, PlanStatus, Planner, Profile, Proposal, RemodelReport, Selection,
    TestConfirmation, ValuesSpec, measure, select,
};

/// A model family where the fairness penalty `lambda` trades accuracy for
/// fairness with diminishing returns, as fairness-regularised training does:
/// with `t = lambda / (1 + lambda)`, `1 - EOD = 0.70 + 0.25 t` and
/// macro-F1 `= 0.84 - 0.06 t^2`; reweighing adds 0.03 fairness and costs
/// 0.01 F1. Throughput is 150 examples/s; faithfulness is not computed.
fn family(lambda: f64, reweighing: bool) -> Evaluation {
    let t = lambda / (1.0 + lambda);
    let bonus = if reweighing { 1.0 } else { 0.0 };
    let fairness = 0.70 + 0.25 * t + 0.03 * bonus;
    let f1 = 0.84 - 0.06 * t * t - 0.01 * bonus;
    Evaluation {
        accuracy: f1 + 0.03,
        macro_f1: f1,
        balanced_accuracy: f1 - 0.01,
        equalized_odds_difference: Some(1.0 - fairness),
        demographic_parity_difference: Some(0.8 * (1.0 - fairness)),
        examples_per_s: Some(150.0),
        latency_ms_p50: Some(12.0),
        ..Evaluation::default()
    }
}

fn settings(lambda: f64, reweighing: bool) -> BTreeMap<String, Value> {
    [
        ("lambda".to_owned(), json!(lambda)),
        ("reweighing".to_owned(), json!(reweighing)),
    ]
    .into_iter()
    .collect()
}

/// The grid of penalty weights this simulation walks (valor remodel itself
/// searches constraint bounds; `Planner::next_lambda` serves any lever grid).
const LAMBDA_GRID: [f64; 6] = [0.0, 0.1, 0.3, 1.0, 3.0, 10.0];

struct Run {
    p0: Profile,
    candidates: Vec<Candidate>,
    history: Vec<Proposal>,
    lambdas: Vec<f64>,
    selection: Selection,
}

/// The loop `valor remodel` runs, with the simulated family in place of
/// training.
fn remodel(spec: &ValuesSpec) -> Run {
    let p0 = measure(&family(0.0, false), spec).unwrap();
    let (space, _) = spec.space().measured_in(&[&p0]).unwrap();
    let v0 = space.vector(&p0).unwrap();
    let mut planner = Planner::new(
        space.clone(),
        v0.clone(),
        spec.target_vector(&space).unwrap(),
        spec.search(),
    )
    .unwrap();
    let mut tried = vec![(0.0, v0)];
    let mut candidates = vec![Candidate {
        label: "baseline".into(),
        settings: settings(0.0, false),
        profile: p0.clone(),
    }];
    let mut lambdas = Vec::new();
    loop {
        let proposal = planner.propose().unwrap();
        if proposal.status != PlanStatus::Search {
            break;
        }
        let Some(lambda) = planner
            .next_lambda(&proposal.search_point, &tried, &LAMBDA_GRID)
            .unwrap()
        else {
            break;
        };
        let profile = measure(&family(lambda, false), spec).unwrap();
        let x = space.vector(&profile).unwrap();
        planner.record(x.clone()).unwrap();
        tried.push((lambda, x));
        lambdas.push(lambda);
        candidates.push(Candidate {
            label: format!("lambda={lambda}"),
            settings: settings(lambda, false),
            profile,
        });
    }
    // Reweighing from the anchor's lambda, as remodel does once the grid is settled.
    if spec.search().reweighing {
        let anchor_lambda = planner.anchor().map_or(0.0, |i| lambdas[i]);
        candidates.push(Candidate {
            label: format!("lambda={anchor_lambda}+reweighing"),
            settings: settings(anchor_lambda, true),
            profile: measure(&family(anchor_lambda, true), spec).unwrap(),
        });
    }
    let selection = select(spec, &p0, &candidates).unwrap();
    Run {
        p0,
        candidates,
        history: planner.history().to_vec(),
        lambdas,
        selection,
    }
}

const REACHABLE: &str = r#"
[target]
fairness = 0.88
accuracy = 0.80
efficiency = 0.70
[measure]
efficiency = "throughput"
[efficiency]
budget_examples_per_s = 200.0
[search]
reweighing = false
"#;

const OUT_OF_REACH: &str = r#"
[target]
fairness = 0.99
accuracy = 0.84
transparency = 0.7
[search]
patience = 2
"#;

#[test]
fn reachable_target_is_reached_by_climbing_lambda() {
    let spec = ValuesSpec::parse(REACHABLE, "reachable/values.toml").unwrap();
    let run = remodel(&spec);
    assert_eq!(run.history.last().unwrap().status, PlanStatus::Reached);
    // The algebra drove the search up the grid, not through all of it.
    assert_eq!(run.lambdas, [0.1, 0.3, 1.0, 3.0]);
    let s = &run.selection;
    assert!(s.reachable);
    assert_eq!(run.candidates[s.chosen].label, "lambda=3");
    assert!(s.pareto_front.contains(&s.chosen));
    // Every candidate here trades accuracy for fairness: all are on the front.
    assert_eq!(
        s.pareto_front,
        (0..run.candidates.len()).collect::<Vec<_>>()
    );
    assert!(s.distance_vt_vd < s.distance_v0_vd);
    assert!(s.not_measured.is_empty());

    let report = RemodelReport::new(&spec, s, None, &run.history, BTreeMap::new()).unwrap();
    assert!(report.reachable);
    assert!(
        report.message.starts_with("Target reached"),
        "{}",
        report.message
    );
    assert_eq!(report.split, "validation");
    assert_eq!(report.vt, run.candidates[s.chosen].profile);
    assert_eq!(report.v0, run.p0);
    snapshot("remodel_reachable.json", &report.to_json().unwrap());
}

#[test]
fn out_of_reach_target_is_reported_honestly() {
    let spec = ValuesSpec::parse(OUT_OF_REACH, "far/values.toml").unwrap();
    let run = remodel(&spec);
    let last = run.history.last().unwrap().status;
    assert!(
        matches!(last, PlanStatus::OutOfReach | PlanStatus::Search),
        "stops by patience or an exhausted grid, got {last:?}"
    );
    let s = &run.selection;
    assert!(!s.reachable);
    assert!(s.hull.distance_l2w > 0.0);
    // transparency cannot be measured: excluded, with the reason.
    assert_eq!(s.not_measured.keys().collect::<Vec<_>>(), ["transparency"]);
    assert_eq!(s.space.names(), ["accuracy", "fairness"]);

    let report = RemodelReport::new(&spec, s, None, &run.history, BTreeMap::new()).unwrap();
    assert!(!report.reachable);
    let msg = &report.message;
    assert!(msg.contains("OUT OF REACH"), "{msg}");
    assert!(msg.contains("fairness"), "{msg}");
    assert!(msg.contains("transparency is NOT MEASURED"), "{msg}");
    // The chosen model never loses to another on every dimension.
    assert!(report.chosen.rule == valor_values::SelectRule::ParetoNearest);
    assert!(
        report
            .pareto_front
            .iter()
            .any(|c| c.index == report.chosen.index)
    );
    // V_T is no farther from V_D than any other front member.
    for c in &report.pareto_front {
        assert!(report.chosen.validation_distance_to_vd <= c.distance_to_vd);
    }

    let json: Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    assert_eq!(json["v0"]["transparency"], Value::Null);
    assert_eq!(json["vd"]["transparency"], json!(0.7));
    assert!(
        json["not_measured"]["transparency"]
            .as_str()
            .unwrap()
            .contains("faithfulness")
    );
    let html = report.to_html();
    assert!(html.contains("NOT MEASURED"));
    assert!(html.contains("OUT OF REACH"));
}

#[test]
fn report_json_has_the_documented_keys() {
    let spec = ValuesSpec::parse(REACHABLE, "reachable/values.toml").unwrap();
    let run = remodel(&spec);
    let mut provenance = BTreeMap::new();
    provenance.insert("seed".to_owned(), json!(17));
    let report = RemodelReport::new(&spec, &run.selection, None, &run.history, provenance).unwrap();
    let json: Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    let obj = json.as_object().unwrap();
    for key in [
        "v0",
        "vt",
        "vd",
        "distance_v0_vd",
        "distance_vt_vd",
        "metric",
        "pareto_front",
        "chosen",
        "reachable",
        "message",
    ] {
        assert!(obj.contains_key(key), "missing `{key}`");
    }
    // The required keys come first, in this order.
    let first: Vec<&str> = obj.keys().take(8).map(String::as_str).collect();
    assert_eq!(
        first,
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
    for key in ["v0", "vt", "vd"] {
        let map = json[key].as_object().unwrap();
        assert_eq!(
            map.keys().collect::<Vec<_>>(),
            ["accuracy", "efficiency", "fairness"]
        );
        assert!(map.values().all(Value::is_f64));
    }
    assert_eq!(json["metric"], "l2");
    assert_eq!(json["chosen"]["settings"]["lambda"], json!(3.0));
    assert_eq!(json["provenance"]["seed"], json!(17));
    assert_eq!(
        json["provenance"]["values_toml"],
        json!("reachable/values.toml")
    );
    assert!(json["trajectory"].as_array().unwrap().len() >= 2);
    // Round trip (serde_json may parse the last bit of a float differently).
    let back: RemodelReport = serde_json::from_value(json.clone()).unwrap();
    assert_json_close("round trip", &serde_json::to_value(&back).unwrap(), &json);
}

#[test]
fn test_split_confirmation_replaces_v0_and_vt() {
    let spec = ValuesSpec::parse(REACHABLE, "reachable/values.toml").unwrap();
    let run = remodel(&spec);
    let s = &run.selection;
    let chosen_lambda = run.candidates[s.chosen].settings["lambda"]
        .as_f64()
        .unwrap();
    // On the test split the chosen model is a little less fair: 1 - EOD 0.87 < 0.88.
    let mut test_eval = family(chosen_lambda, false);
    test_eval.equalized_odds_difference = Some(0.13);
    let test = TestConfirmation {
        v0: measure(&family(0.0, false), &spec).unwrap(),
        vt: measure(&test_eval, &spec).unwrap(),
    };
    let report = RemodelReport::new(&spec, s, Some(&test), &run.history, BTreeMap::new()).unwrap();
    assert_eq!(report.split, "test");
    assert_eq!(report.vt, test.vt);
    assert!(
        !report.reachable,
        "the test split misses the fairness target"
    );
    assert!(
        report.message.contains("on the test split"),
        "{}",
        report.message
    );
    assert!(
        report.message.contains("fairness 0.870 < 0.880"),
        "{}",
        report.message
    );
    assert!(report.distance_vt_vd > report.validation.distance_vt_vd);
    assert_eq!(report.validation.vt, run.candidates[s.chosen].profile);
}

#[test]
fn html_is_self_contained_with_radar_and_pareto_charts() {
    let spec = ValuesSpec::parse(REACHABLE, "reachable/values.toml").unwrap();
    let run = remodel(&spec);
    let report =
        RemodelReport::new(&spec, &run.selection, None, &run.history, BTreeMap::new()).unwrap();
    let html = report.to_html();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg").count(), 2, "radar and Pareto charts");
    assert!(html.contains("aria-label=\"radar chart of V0, V_T and V_D\""));
    assert!(html.contains("aria-label=\"Pareto front, accuracy against fairness\""));
    for series in [
        "<title>V0</title>",
        "<title>V_T</title>",
        "<title>V_D</title>",
    ] {
        assert!(html.matches(series).count() >= 2, "{series} in both charts");
    }
    assert!(html.contains("lambda=3"));
    assert!(!html.contains("<script"), "no scripts");
    // The only URLs are the SVG namespace declarations.
    assert_eq!(
        html.matches("http").count(),
        html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
    );
    assert!(!html.contains("src="), "no external resources");
}

#[test]
fn html_escapes_labels_and_explains_a_missing_pareto_chart() {
    let spec = ValuesSpec::parse(
        "[target]\naccuracy = 0.9\nefficiency = 0.5\n[measure]\nefficiency = \"throughput\"\n\
         [efficiency]\nbudget_examples_per_s = 100.0\n",
        "v.toml",
    )
    .unwrap();
    let p0 = measure(&family(0.0, false), &spec).unwrap();
    let cand = Candidate {
        label: "<b>evil</b>".into(),
        settings: BTreeMap::new(),
        profile: measure(&family(1.0, false), &spec).unwrap(),
    };
    let s = select(&spec, &p0, &[cand]).unwrap();
    let html = RemodelReport::new(&spec, &s, None, &[], BTreeMap::new())
        .unwrap()
        .to_html();
    assert!(html.contains("&lt;b&gt;evil&lt;/b&gt;"));
    assert!(!html.contains("<b>evil</b>"));
    assert!(html.contains("The Pareto chart needs measured <b>accuracy</b> and <b>fairness</b>"));
}

#[test]
fn reports_are_written_atomically() {
    let spec = ValuesSpec::parse(REACHABLE, "reachable/values.toml").unwrap();
    let run = remodel(&spec);
    let report =
        RemodelReport::new(&spec, &run.selection, None, &run.history, BTreeMap::new()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    report.write_json(&dir.path().join("remodel.json")).unwrap();
    report.write_html(&dir.path().join("remodel.html")).unwrap();
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("remodel.json")).unwrap())
            .unwrap();
    assert_json_close("written", &written, &serde_json::to_value(&report).unwrap());
    let html = std::fs::read_to_string(dir.path().join("remodel.html")).unwrap();
    assert_eq!(html, report.to_html());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn select_rule_nearest_may_pick_a_dominated_candidate() {
    // V_D = (0.5, 0.5): candidate 0 sits on it, candidate 1 dominates it.
    let text = "[target]\naccuracy = 0.5\nfairness = 0.5\n";
    let p = |a: f64, f: f64| Profile::from_values([("accuracy", a), ("fairness", f)]);
    let cands = vec![
        Candidate {
            label: "on target".into(),
            settings: BTreeMap::new(),
            profile: p(0.5, 0.5),
        },
        Candidate {
            label: "better everywhere".into(),
            settings: BTreeMap::new(),
            profile: p(0.6, 0.6),
        },
    ];
    let pareto = ValuesSpec::parse(text, "v.toml").unwrap();
    let s = select(&pareto, &p(0.4, 0.4), &cands).unwrap();
    assert_eq!(s.pareto_front, [1]);
    assert_eq!(s.chosen, 1);
    assert!(s.reachable, "meets every target");
    let nearest =
        ValuesSpec::parse(&format!("{text}[search]\nselect = \"nearest\"\n"), "v.toml").unwrap();
    let s = select(&nearest, &p(0.4, 0.4), &cands).unwrap();
    assert_eq!(s.chosen, 0);
    assert_eq!(s.distance_vt_vd, 0.0);
    assert!(select(&nearest, &p(0.4, 0.4), &[]).is_err());
}

/// Asserts two JSON trees are equal, numbers within 1 ulp-ish (1e-15 relative).
#[track_caller]
fn assert_json_close(path: &str, a: &Value, b: &Value) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => assert_close(
            path,
            x.as_f64().unwrap(),
            y.as_f64().unwrap(),
            Tolerance::rel(1e-15),
        ),
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}: lengths");
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                assert_json_close(&format!("{path}[{i}]"), p, q);
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{path}: keys"
            );
            for (k, p) in x {
                assert_json_close(&format!("{path}.{k}"), p, &y[k]);
            }
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

/// Compares `actual` with the snapshot file `tests/it/snapshots/<name>`;
/// `VALOR_UPDATE_SNAPSHOTS=1` rewrites it.
fn snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/snapshots")
        .join(name);
    if std::env::var("VALOR_UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("{actual}\n")).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "snapshot {} unreadable ({e}); run with VALOR_UPDATE_SNAPSHOTS=1 and review it",
            path.display()
        )
    });
    if actual.trim_end() != expected.trim_end() {
        let (line, (got, want)) = actual
            .lines()
            .chain(std::iter::repeat("<end>"))
            .zip(expected.lines().chain(std::iter::repeat("<end>")))
            .enumerate()
            .find(|(_, (a, e))| a != e)
            .unwrap_or((0, ("?", "?")));
        panic!(
            "snapshot {} differs first at line {}:\n  actual:   {got}\n  expected: {want}\n\
             if the change is intended, rerun with VALOR_UPDATE_SNAPSHOTS=1 and review the diff",
            path.display(),
            line + 1
        );
    }
}
