//! Reweighing (Kamiran & Calders) on real datasets: any number of groups
//! (joint groups over several columns) and labels, checked against the
//! defining property and against valor-fair's weights (which match AIF360).

use valor_data::{builtin_spec, load_dataset};
use valor_fair::{ConfusionCounts, GroupId, LabelId, LabelSet};
use valor_train::Weighting;
use valor_train::weights::{example_weights, joint_groups, reweighing_weights};

use crate::common::builtin_csv;

#[test]
fn joint_group_reweighing_makes_labels_independent() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = load_dataset(&builtin_spec(&builtin_csv(dir.path(), 1200))).unwrap();
    let cols = vec!["gender".to_string(), "age_band".to_string()];
    let (groups, names) = joint_groups(&data, &cols).unwrap();
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(names.contains(&"female|55+".to_string()));
    let labels: Vec<u32> = data.labels.iter().map(|l| l.0).collect();
    let w = example_weights(Weighting::Reweighing, None, &labels, &groups);
    let n = labels.len() as f64;
    assert!((w.iter().sum::<f64>() - n).abs() < 1e-9);
    for a in 0..names.len() as u32 {
        let in_a: Vec<usize> = (0..labels.len()).filter(|&i| groups[i] == a).collect();
        let wa: f64 = in_a.iter().map(|&i| w[i]).sum();
        for y in 0..3u32 {
            let way: f64 = in_a
                .iter()
                .filter(|&&i| labels[i] == y)
                .map(|&i| w[i])
                .sum();
            let p_y = labels.iter().filter(|&&l| l == y).count() as f64 / n;
            if in_a.iter().any(|&i| labels[i] == y) {
                assert!(
                    (way / wa - p_y).abs() < 1e-9,
                    "{}: P(y={y}) {} vs {p_y}",
                    names[a as usize],
                    way / wa
                );
            }
        }
    }
}

#[test]
fn single_column_weights_match_valor_fair() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = load_dataset(&builtin_spec(&builtin_csv(dir.path(), 600))).unwrap();
    let gender = data.group("gender").unwrap();
    let groups: Vec<u32> = gender.ids.iter().map(|g| g.0).collect();
    let labels: Vec<u32> = data.labels.iter().map(|l| l.0).collect();
    let ours = reweighing_weights(&groups, &labels);

    let set = LabelSet::new(&data.label_names).unwrap();
    let mut counts = ConfusionCounts::new(&set, gender.values.clone()).unwrap();
    let ids: Vec<LabelId> = labels.iter().map(|&l| LabelId::new(l)).collect();
    let gids: Vec<GroupId> = groups.iter().map(|&g| GroupId::new(g)).collect();
    counts.add_batch(&ids, &ids, &gids).unwrap();
    let report = serde_json::to_value(counts.summary(&Default::default()).unwrap()).unwrap();
    let table = &report["reweighing"];
    for i in 0..labels.len() {
        let want = table[gender.value(i)][&data.label_names[labels[i] as usize]]
            .as_f64()
            .unwrap();
        assert!(
            (ours[i] - want).abs() < 1e-12,
            "row {i}: {} vs {want}",
            ours[i]
        );
    }
}

#[test]
fn unknown_fairness_column_names_the_columns() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = load_dataset(&builtin_spec(&builtin_csv(dir.path(), 60))).unwrap();
    let err = joint_groups(&data, &["sex".to_string()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`sex`") && err.contains("gender, age_band"),
        "{err}"
    );
}
