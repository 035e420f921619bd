//! Mitigations on real predictions: reweighing weights against AIF360, the
//! threshold optimizer on the adult scores, class offsets, counterfactuals.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use valor_fair::{
    ClassOffsets, Constraint, LabelId, LabelSet, OffsetConfig, OffsetConstraint, Reweighing,
    ThresholdOptimizer, ThresholdOptimizerConfig, counterfactual_fairness,
};

use crate::support::{Csv, check, fairness_dir, fixture};

/// `Reweighing` on a privileged/unprivileged column reproduces AIF360's
/// weights (`adult_aif360.json`, `ref_aif360.py`, 1e-9).
#[valor_testkit::shared_test]
fn reweighing_matches_aif360() {
    let shared = valor_testkit::shared_dir();
    let fx = fixture(&shared, "adult_aif360.json");
    let csv = Csv::read(&fairness_dir(&shared).join("adult_predictions.csv"));
    let labels = LabelSet::new(&["0", "1"]).unwrap();
    let y = labels.encode("y_true", csv.col("y_true")).unwrap();
    for (attr, afx) in fx["attributes"].as_object().unwrap() {
        let privileged = afx["privileged"].as_str().unwrap();
        let groups: Vec<&str> = csv
            .col(attr)
            .iter()
            .map(|v| {
                if v == privileged {
                    "privileged"
                } else {
                    "unprivileged"
                }
            })
            .collect();
        let r = Reweighing::fit(&labels, &y, &groups).unwrap();
        for (key, expected) in afx["reweighing_weights_true_labels"].as_object().unwrap() {
            let (g, l) = key.split_once('|').unwrap();
            check(&format!("{attr}/{key}"), r.weight(g, l), expected);
        }
        let w = r.row_weights(&y, &groups).unwrap();
        assert_eq!(w.len(), y.len());
        // the weighted data has the same positive rate in both groups
        let rate = |grp: &str| {
            let (mut pos, mut all) = (0.0, 0.0);
            for ((yy, g), ww) in y.iter().zip(&groups).zip(&w) {
                if *g == grp {
                    all += ww;
                    if yy.index() == 1 {
                        pos += ww;
                    }
                }
            }
            pos / all
        };
        assert!((rate("privileged") - rate("unprivileged")).abs() < 1e-9);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.json");
        r.save(&path).unwrap();
        assert_eq!(Reweighing::load(&path).unwrap(), r);
    }
}

fn adult(shared: &std::path::Path) -> (Vec<f64>, Vec<bool>, Vec<String>) {
    let csv = Csv::read(&fairness_dir(shared).join("adult_predictions.csv"));
    let s = csv
        .col("y_score")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    let y = csv.col("y_true").iter().map(|v| v == "1").collect();
    (s, y, csv.col("sex").to_vec())
}

fn realised(pred: &[bool], y: &[bool], g: &[String], grp: &str, label: Option<bool>) -> f64 {
    let (mut hit, mut n) = (0.0, 0.0);
    for ((p, yy), gg) in pred.iter().zip(y).zip(g) {
        if gg == grp && label.is_none_or(|l| l == *yy) {
            n += 1.0;
            if *p {
                hit += 1.0;
            }
        }
    }
    hit / n
}

#[valor_testkit::shared_test]
fn threshold_optimizer_equalises_adult_selection_rates() {
    let shared = valor_testkit::shared_dir();
    let (s, y, g) = adult(&shared);
    for constraint in [Constraint::DemographicParity, Constraint::EqualizedOdds] {
        let cfg = ThresholdOptimizerConfig {
            constraint,
            ..Default::default()
        };
        let t = ThresholdOptimizer::fit(&s, &y, &g, &cfg).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        t.save(&path).unwrap();
        let loaded = ThresholdOptimizer::load(&path).unwrap();
        assert_eq!(loaded, t);
        let pred = loaded.predict(&s, &g, 7).unwrap();
        assert_eq!(pred, t.predict(&s, &g, 7).unwrap(), "seeded");
        match constraint {
            Constraint::DemographicParity => {
                let target = *t.target.get("selection_rate").unwrap();
                for grp in ["Female", "Male"] {
                    // expected rates are exact; realised ones within sampling noise
                    assert!((t.fit.get(grp).unwrap().selection_rate - target).abs() < 1e-9);
                    let r = realised(&pred, &y, &g, grp, None);
                    assert!((r - target).abs() < 0.02, "{grp}: {r} vs {target}");
                }
            }
            Constraint::EqualizedOdds => {
                let tpr = *t.target.get("true_positive_rate").unwrap();
                let fpr = *t.target.get("false_positive_rate").unwrap();
                for grp in ["Female", "Male"] {
                    let f = t.fit.get(grp).unwrap();
                    assert!((f.true_positive_rate.unwrap() - tpr).abs() < 1e-9);
                    assert!((f.false_positive_rate.unwrap() - fpr).abs() < 1e-9);
                    let r = realised(&pred, &y, &g, grp, Some(true));
                    assert!((r - tpr).abs() < 0.05, "{grp}: TPR {r} vs {tpr}");
                }
            }
        }
        // the constrained optimum cannot beat the unconstrained 0.5 threshold by much
        assert!(t.objective_value > 0.75 && t.objective_value < 0.86);
    }
}

#[valor_testkit::shared_test]
fn class_offsets_equalise_multiclass_shares() {
    let shared = valor_testkit::shared_dir();
    // scores: one-hot of the fixture's predictions plus random jitter
    let csv = Csv::read(&fairness_dir(&shared).join("multiclass_predictions.csv"));
    let labels = LabelSet::infer(csv.col("y_true"), csv.col("y_pred")).unwrap();
    let y = labels.encode("y_true", csv.col("y_true")).unwrap();
    let p = labels.encode("y_pred", csv.col("y_pred")).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let mut scores = Vec::new();
    for pi in &p {
        for c in 0..3 {
            let jitter: f64 = rng.random::<f64>() * 0.8;
            scores.push(if c == pi.index() { 1.0 } else { 0.0 } + jitter);
        }
    }
    let g = csv.col("gender");
    {
        let cfg = OffsetConfig {
            constraint: OffsetConstraint::DemographicParity,
            ..Default::default()
        };
        let o = ClassOffsets::fit(&labels, &scores, &y, g, &cfg).unwrap();
        let before = ClassOffsets::fit(
            &labels,
            &scores,
            &y,
            g,
            &OffsetConfig {
                max_sweeps: 0,
                ..cfg.clone()
            },
        )
        .unwrap();
        // the unadjusted shares differ by group (the fixture's model is unfair)
        let spread = |o: &ClassOffsets| {
            o.achieved
                .values()
                .map(|r| r[2].unwrap())
                .fold((1.0f64, 0.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)))
        };
        let (lo, hi) = spread(&before);
        assert!(hi - lo > 0.05, "{lo} {hi}");
        for (grp, rates) in o.achieved.iter() {
            for (c, (r, t)) in rates.iter().zip(&o.targets).enumerate() {
                assert!(
                    (r.unwrap() - t).abs() <= 0.01,
                    "{grp} class {c}: {rates:?} vs {:?}",
                    o.targets
                );
            }
        }
        let pred: Vec<LabelId> = o.predict(&scores, g).unwrap();
        assert_eq!(pred.len(), y.len());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.json");
        o.save(&path).unwrap();
        assert_eq!(ClassOffsets::load(&path).unwrap(), o);
    }
}

#[test]
fn counterfactual_pairs_report_flips_by_direction() {
    let labels = LabelSet::new(&["deny", "approve"]).unwrap();
    let orig = [0.2, 0.8, 0.6, 0.4, 0.51, 0.49, 0.3, 0.7];
    let twin = [0.2, 0.8, 0.4, 0.6, 0.49, 0.51, 0.35, 0.65];
    let dirs = ["f→m", "f→m", "m→f", "m→f"];
    let r = counterfactual_fairness(&labels, &orig, &twin, Some(&dirs)).unwrap();
    assert_eq!((r.pairs, r.flips), (4, 2));
    assert!((r.flip_rate - 0.5).abs() < 1e-15);
    assert!((r.max_abs_probability_shift - 0.2).abs() < 1e-12);
    assert_eq!(r.by_direction.get("m→f").unwrap().flips, 1);
    assert_eq!(r.by_direction.get("f→m").unwrap().flips, 1);
}

/// fairlearn's `ThresholdOptimizer` (prefit on the adult scores, accuracy,
/// grid 1000) reproduced rule for rule. Fixture:
/// `tests/fixtures/adult_threshold_optimizer.json` from
/// `tests/fixtures/ref_threshold_optimizer.py` (fairlearn 0.15, scikit-learn
/// 1.9); tolerance 1e-9.
#[valor_testkit::shared_test]
fn threshold_optimizer_matches_fairlearn() {
    let shared = valor_testkit::shared_dir();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/adult_threshold_optimizer.json");
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (s, y, g) = adult(&shared);
    let every = fx["sample_every"].as_u64().unwrap() as usize;
    for (name, constraint) in [
        ("demographic_parity", Constraint::DemographicParity),
        ("equalized_odds", Constraint::EqualizedOdds),
    ] {
        let cfx = &fx["constraints"][name];
        let t = ThresholdOptimizer::fit(
            &s,
            &y,
            &g,
            &ThresholdOptimizerConfig {
                constraint,
                ..Default::default()
            },
        )
        .unwrap();
        check(
            &format!("{name}/accuracy"),
            Some(t.objective_value),
            &cfx["expected_accuracy"],
        );
        for (grp, gfx) in cfx["groups"].as_object().unwrap() {
            let w = |what: &str| format!("{name}/{grp}/{what}");
            let fit = t.fit.get(grp).unwrap();
            check(
                &w("selection_rate"),
                Some(fit.selection_rate),
                &gfx["selection_rate"],
            );
            check(
                &w("tpr"),
                fit.true_positive_rate,
                &gfx["true_positive_rate"],
            );
            check(
                &w("fpr"),
                fit.false_positive_rate,
                &gfx["false_positive_rate"],
            );
            let rule = t.groups.get(grp).unwrap();
            let keep = 1.0 - gfx["p_ignore"].as_f64().unwrap();
            check(
                &w("constant"),
                Some(rule.constant),
                &serde_json::json!(
                    gfx["p_ignore"].as_f64().unwrap()
                        * gfx["prediction_constant"].as_f64().unwrap()
                ),
            );
            for i in ["0", "1"] {
                let weight = gfx[format!("p{i}")].as_f64().unwrap() * keep;
                let threshold = gfx[format!("threshold{i}")].as_f64().unwrap();
                if weight < 1e-12 {
                    continue;
                }
                let cut = rule
                    .cuts
                    .iter()
                    .find(|c| c.above.is_some_and(|a| (a - threshold).abs() < 1e-12))
                    .unwrap_or_else(|| panic!("{}: no cut at {threshold}: {rule:?}", w(i)));
                check(
                    &w(&format!("weight{i}")),
                    Some(cut.weight),
                    &serde_json::json!(weight),
                );
            }
        }
        let p = t.predict_proba(&s, &g).unwrap();
        let sample = cfx["probability_sample"].as_array().unwrap();
        assert_eq!(sample.len(), p.len().div_ceil(every));
        for (k, expected) in sample.iter().enumerate() {
            check(
                &format!("{name}/p[{}]", k * every),
                Some(p[k * every]),
                expected,
            );
        }
    }
}
