//! Properties of the metrics: invariance under row order and group
//! relabelling, zero disparity for perfect and identical-rate classifiers,
//! bounds, and agreement of the streaming counters with the audit.

use proptest::prelude::*;
use valor_fair::{
    AuditConfig, AuditInput, AuditReport, ConfusionCounts, CountsSummaryConfig, GroupId, LabelId,
    LabelSet, audit,
};
use valor_testkit::{Tolerance, assert_close};

/// A generated table: labels, predictions, scores and one group column.
#[derive(Clone, Debug)]
struct Rows {
    y_true: Vec<u8>,
    y_pred: Vec<u8>,
    score: Vec<f64>,
    group: Vec<u8>,
}

fn rows(k: u8, groups: u8) -> impl Strategy<Value = Rows> {
    (20usize..150).prop_flat_map(move |n| {
        (
            proptest::collection::vec(0..k, n),
            proptest::collection::vec(0..k, n),
            proptest::collection::vec(0u32..=20, n),
            proptest::collection::vec(0..groups, n),
        )
            .prop_map(|(y_true, y_pred, score, group)| Rows {
                y_true,
                y_pred,
                // coarse scores so that ties occur
                score: score.into_iter().map(|s| f64::from(s) / 20.0).collect(),
                group,
            })
    })
}

const NAMES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];

fn input(r: &Rows, k: u8, group_name: &dyn Fn(u8) -> String, scores: bool) -> AuditInput {
    let labels: Vec<String> = (0..k).map(|i| i.to_string()).collect();
    let t: Vec<String> = r.y_true.iter().map(|v| v.to_string()).collect();
    let p: Vec<String> = r.y_pred.iter().map(|v| v.to_string()).collect();
    let g: Vec<String> = r.group.iter().map(|v| group_name(*v)).collect();
    let mut i = AuditInput::from_strings(&t, &p, Some(LabelSet::new(&labels).unwrap()))
        .unwrap()
        .with_group("g", &g)
        .unwrap();
    if scores {
        i = i.with_scores(r.score.clone()).unwrap();
    }
    i
}

fn run(i: &AuditInput, privileged: Option<&str>) -> AuditReport {
    let mut c = AuditConfig::default();
    c.min_group_size = 0;
    if let Some(p) = privileged {
        c = c.privilege("g", p);
    }
    audit(i, &c).unwrap()
}

fn in_unit(v: Option<f64>) -> bool {
    v.is_none_or(|x| (-1e-12..=1.0 + 1e-12).contains(&x))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn row_order_does_not_matter(r in rows(2, 3), seed in any::<u64>()) {
        let name = |g: u8| NAMES[g as usize].to_owned();
        let a = run(&input(&r, 2, &name, true), None);
        // a deterministic shuffle from the seed
        let n = r.y_true.len();
        let mut idx: Vec<usize> = (0..n).collect();
        let mut s = seed | 1;
        for i in (1..n).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            idx.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let shuffled = Rows {
            y_true: idx.iter().map(|&i| r.y_true[i]).collect(),
            y_pred: idx.iter().map(|&i| r.y_pred[i]).collect(),
            score: idx.iter().map(|&i| r.score[i]).collect(),
            group: idx.iter().map(|&i| r.group[i]).collect(),
        };
        let b = run(&input(&shuffled, 2, &name, true), None);
        prop_assert_eq!(a.to_json_pretty().unwrap(), b.to_json_pretty().unwrap());
    }

    #[test]
    fn relabelling_groups_permutes_values_and_keeps_disparities(r in rows(2, 3)) {
        let a = run(&input(&r, 2, &|g| NAMES[g as usize].to_owned(), true), None);
        // a bijection that also reverses the sorted order
        let b = run(&input(&r, 2, &|g| format!("z{}", 9 - g), true), None);
        let (sa, sb) = (&a.specs[0], &b.specs[0]);
        let fa = sa.fairlearn.as_ref().unwrap().entries();
        let fb = sb.fairlearn.as_ref().unwrap().entries();
        prop_assert_eq!(fa, fb);
        for (name, m) in sa.metrics.iter() {
            let mb = sb.metrics.get(name).unwrap();
            prop_assert_eq!(m.difference_between_groups, mb.difference_between_groups);
            prop_assert_eq!(m.ratio_to_overall, mb.ratio_to_overall);
            for (key, v) in m.by_group.iter() {
                let g = NAMES.iter().position(|n| *n == key).unwrap();
                prop_assert_eq!(Some(v), mb.by_group.get(&format!("z{}", 9 - g)));
            }
        }
        let (ta, tb) = (sa.between_group_theil_index, sb.between_group_theil_index);
        prop_assert_eq!(ta.is_some(), tb.is_some());
        if let (Some(x), Some(y)) = (ta, tb) {
            prop_assert!((x - y).abs() < 1e-12);
        }
    }

    #[test]
    fn perfect_classifier_has_no_error_rate_disparity(r in rows(2, 3)) {
        let perfect = Rows { y_pred: r.y_true.clone(), ..r.clone() };
        let name = |g: u8| NAMES[g as usize].to_owned();
        let i = input(&perfect, 2, &name, false);
        let privileged = NAMES[perfect.group[0] as usize];
        let groups: std::collections::BTreeSet<u8> = perfect.group.iter().copied().collect();
        let rep = run(&i, (groups.len() > 1).then_some(privileged));
        let s = &rep.specs[0];
        let f = s.fairlearn.as_ref().unwrap();
        for v in [f.equalized_odds_difference_worst_case, f.equal_opportunity_difference] {
            prop_assert!(v.is_none_or(|x| x == 0.0));
        }
        for v in [f.equalized_odds_ratio_worst_case, f.equal_opportunity_ratio] {
            prop_assert!(v.is_none_or(|x| x == 1.0));
        }
        if let Some(a) = &s.aif360 {
            for v in [a.equal_opportunity_difference, a.average_odds_difference,
                      a.average_abs_odds_difference, a.error_rate_difference,
                      a.false_discovery_rate_difference] {
                prop_assert!(v.is_none_or(|x| x == 0.0), "{a:?}");
            }
        }
        prop_assert_eq!(rep.dataset.theil_index, Some(0.0));
        prop_assert_eq!(s.metrics.get("accuracy").unwrap().difference_between_groups, Some(0.0));
    }

    #[test]
    fn identical_rates_give_zero_disparity(block in rows(2, 1), copies in 2u8..4) {
        // every group gets the very same rows
        let mut r = Rows { y_true: vec![], y_pred: vec![], score: vec![], group: vec![] };
        for g in 0..copies {
            r.y_true.extend(&block.y_true);
            r.y_pred.extend(&block.y_pred);
            r.score.extend(&block.score);
            r.group.extend(std::iter::repeat_n(g, block.y_true.len()));
        }
        let i = input(&r, 2, &|g| NAMES[g as usize].to_owned(), true);
        let rep = run(&i, Some("alpha"));
        let s = &rep.specs[0];
        for (name, v) in s.fairlearn.as_ref().unwrap().entries() {
            let parity = if name.ends_with("difference") || name.contains("difference_") { 0.0 } else { 1.0 };
            prop_assert!(v.is_none_or(|x| x == parity), "{name} = {v:?}");
        }
        let a = s.aif360.as_ref().unwrap();
        prop_assert!(a.statistical_parity_difference.is_none_or(|x| x == 0.0));
        prop_assert!(a.disparate_impact.is_none_or(|x| x == 1.0));
        prop_assert!(a.average_abs_odds_difference.is_none_or(|x| x == 0.0));
        prop_assert!(s.between_group_theil_index.is_none_or(|x| x.abs() < 1e-15));
        let auc = s.metrics.get("roc_auc").unwrap();
        prop_assert!(auc.difference_between_groups.is_none_or(|x| x == 0.0));
        prop_assert_eq!(s.four_fifths.as_ref().unwrap().groups_below.len(), 0);
    }

    #[test]
    fn metrics_stay_in_bounds(r in rows(2, 4)) {
        // The privileged group must occur: a draw of 20+ rows over four
        // groups can miss it (a fresh-clone CI run drew one), and the
        // audit then refuses the configuration, as it should.
        let mut r = r;
        r.group[0] = 0;
        let rep = run(&input(&r, 2, &|g| NAMES[g as usize].to_owned(), true), Some("alpha"));
        let s = &rep.specs[0];
        for (name, m) in s.metrics.iter() {
            if name == "count" { continue; }
            prop_assert!(in_unit(m.overall), "{name}");
            for v in m.by_group.values() { prop_assert!(in_unit(*v), "{name}"); }
            prop_assert!(in_unit(m.difference_between_groups) && in_unit(m.ratio_between_groups));
            prop_assert!(in_unit(m.difference_to_overall) && in_unit(m.ratio_to_overall));
            if let (Some(lo), Some(hi)) = (m.group_min, m.group_max) {
                prop_assert!(lo <= hi);
                if matches!(name, "accuracy" | "selection_rate") {
                    // a weighted mean of the groups
                    let o = m.overall.unwrap();
                    prop_assert!(lo - 1e-12 <= o && o <= hi + 1e-12);
                }
            }
        }
        for (_, v) in s.fairlearn.as_ref().unwrap().entries() { prop_assert!(in_unit(v)); }
        if let Some(a) = &s.aif360 {
            for (name, v) in a.entries() {
                match name {
                    "disparate_impact" => prop_assert!(v.is_none_or(|x| x >= 0.0)),
                    "between_group_theil_index" => prop_assert!(v.is_none_or(|x| x >= -1e-15)),
                    _ => prop_assert!(v.is_none_or(|x| (-1.0..=1.0).contains(&x)), "{name}"),
                }
            }
        }
        prop_assert!(rep.dataset.theil_index.is_none_or(|x| x >= -1e-15));
        prop_assert!(rep.dataset.generalized_entropy_index_alpha2.is_none_or(|x| x >= -1e-15));
    }

    #[test]
    fn multiclass_gaps_are_bounded_and_streaming_agrees(r in rows(3, 3)) {
        let name = |g: u8| NAMES[g as usize].to_owned();
        let i = input(&r, 3, &name, false);
        let mut c = AuditConfig::default();
        c.ordinal = true;
        let rep = audit(&i, &c).unwrap();
        let s = &rep.specs[0];
        let m = s.multiclass.as_ref().unwrap();
        for (_, v) in m.entries() { prop_assert!(in_unit(v)); }
        prop_assert_eq!(s.ordinal.len(), 2);
        // the same rows fed in batches of 7
        let labels = LabelSet::new(&["0", "1", "2"]).unwrap();
        let present: std::collections::BTreeSet<u8> = r.group.iter().copied().collect();
        let names: Vec<String> = present.iter().map(|g| name(*g)).collect();
        let mut counts = ConfusionCounts::new(&labels, names.clone()).unwrap();
        let gid = |g: u8| GroupId::new(names.iter().position(|n| *n == name(g)).unwrap() as u32);
        for chunk in (0..r.y_true.len()).collect::<Vec<_>>().chunks(7) {
            let t: Vec<LabelId> = chunk.iter().map(|&i| LabelId::new(u32::from(r.y_true[i]))).collect();
            let p: Vec<LabelId> = chunk.iter().map(|&i| LabelId::new(u32::from(r.y_pred[i]))).collect();
            let g: Vec<GroupId> = chunk.iter().map(|&i| gid(r.group[i])).collect();
            counts.add_batch(&t, &p, &g).unwrap();
        }
        let streamed = counts.summary(&CountsSummaryConfig {
            name: "g".into(),
            ordinal: true,
            ..Default::default()
        }).unwrap();
        prop_assert_eq!(&streamed.metrics, &s.metrics);
        prop_assert_eq!(&streamed.multiclass, &s.multiclass);
        prop_assert_eq!(&streamed.ordinal, &s.ordinal);
        prop_assert_eq!(&streamed.confusion_matrix, &s.confusion_matrix);
    }
}

#[test]
fn four_fifths_flags_the_low_group() {
    let t = ["1"; 20];
    let mut p = vec!["0"; 20];
    // group a: 8 of 10 selected; group b: 5 of 10 (ratio 0.625 < 0.8)
    for x in p.iter_mut().take(8) {
        *x = "1";
    }
    for x in p.iter_mut().skip(10).take(5) {
        *x = "1";
    }
    let g: Vec<&str> = (0..20).map(|i| if i < 10 { "a" } else { "b" }).collect();
    let i = AuditInput::from_strings(&t, &p, LabelSet::new(&["0", "1"]).ok())
        .unwrap()
        .with_group("g", &g)
        .unwrap();
    let rep = audit(&i, &AuditConfig::default()).unwrap();
    let f = rep.specs[0].four_fifths.as_ref().unwrap();
    assert_eq!(f.passes, Some(false));
    assert_eq!(f.groups_below, ["b"]);
    assert_close("ratio", f.ratio.unwrap(), 0.625, Tolerance::abs(1e-15));
    assert_eq!(f.highest_group.as_deref(), Some("a"));
}
