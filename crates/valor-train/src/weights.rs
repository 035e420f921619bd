//! Per-example weights of the cross-entropy: class-balanced weights and
//! Kamiran & Calders reweighing, for any number of groups and labels.
//!
//! Both are computed on the training split only, and both have mean 1 over
//! it (reweighing: `Σ_{a,y} n_ay · n_a n_y / (n n_ay) = n` when every group
//! has every label, slightly less otherwise; class-balanced: `Σ_y n_y · n /
//! (K n_y) = n`), so the weighted loss keeps the scale of the plain one and
//! the learning rate means the same thing.

use std::collections::BTreeMap;

use valor_data::Dataset;

use crate::config::Weighting;
use crate::error::{Error, Result};

/// The joint group of each row over `columns` (e.g. `female|55+`), as ids
/// into the returned sorted list of names.
pub fn joint_groups(data: &Dataset, columns: &[String]) -> Result<(Vec<u32>, Vec<String>)> {
    let cols = columns
        .iter()
        .map(|c| {
            data.group(c).ok_or_else(|| Error::Data {
                path: data.source.clone(),
                message: format!(
                    "fairness group column `{c}` is not a group column of the dataset; group columns are: {}",
                    if data.groups.is_empty() {
                        "none (pass --group)".to_string()
                    } else {
                        data.groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(", ")
                    }
                ),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let keys: Vec<String> = (0..data.len())
        .map(|i| {
            cols.iter()
                .map(|g| g.value(i))
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    let names: Vec<String> = keys
        .iter()
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let index: BTreeMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();
    let ids = keys.iter().map(|k| index[k.as_str()]).collect();
    Ok((ids, names))
}

/// Kamiran & Calders (2012) reweighing: row weight `w(a, y) = P(a) · P(y) /
/// P(a, y) = n_a · n_y / (n · n_ay)` for group `a` and label `y` (the
/// operation order of AIF360's `Reweighing.fit`). Under these weights the
/// label is independent of the group.
pub fn reweighing_weights(groups: &[u32], labels: &[u32]) -> Vec<f64> {
    let n = labels.len() as f64;
    let mut n_a: BTreeMap<u32, f64> = BTreeMap::new();
    let mut n_y: BTreeMap<u32, f64> = BTreeMap::new();
    let mut n_ay: BTreeMap<(u32, u32), f64> = BTreeMap::new();
    for (&a, &y) in groups.iter().zip(labels) {
        *n_a.entry(a).or_default() += 1.0;
        *n_y.entry(y).or_default() += 1.0;
        *n_ay.entry((a, y)).or_default() += 1.0;
    }
    groups
        .iter()
        .zip(labels)
        .map(|(&a, &y)| (n_y[&y] * n_a[&a]) / (n * n_ay[&(a, y)]))
        .collect()
}

/// Class-balanced weights `w(y) = n / (K · n_y)`, `K` the number of
/// classes present (scikit-learn's `compute_class_weight("balanced")`).
pub fn class_balanced_weights(labels: &[u32]) -> Vec<f64> {
    let n = labels.len() as f64;
    let mut n_y: BTreeMap<u32, f64> = BTreeMap::new();
    for &y in labels {
        *n_y.entry(y).or_default() += 1.0;
    }
    let k = n_y.len() as f64;
    labels.iter().map(|y| n / (k * n_y[y])).collect()
}

/// The training weights: the dataset's own weight column (if any) times the
/// chosen scheme's weights.
pub fn example_weights(
    scheme: Weighting,
    data_weights: Option<&[f64]>,
    labels: &[u32],
    groups: &[u32],
) -> Vec<f64> {
    let base: Vec<f64> = match scheme {
        Weighting::None => vec![1.0; labels.len()],
        Weighting::ClassBalanced => class_balanced_weights(labels),
        Weighting::Reweighing => reweighing_weights(groups, labels),
    };
    match data_weights {
        Some(w) => base.iter().zip(w).map(|(a, b)| a * b).collect(),
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reweighing_makes_labels_independent_of_groups() {
        // Three groups with every label at different rates.
        let groups = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2];
        let labels = [1, 1, 1, 0, 2, 0, 0, 0, 1, 2, 2, 2, 0, 1];
        let w = reweighing_weights(&groups, &labels);
        let total: f64 = w.iter().sum();
        assert!((total - labels.len() as f64).abs() < 1e-12, "{total}");
        // Weighted P(y | a) equals the marginal P(y) for every group.
        for a in 0..3u32 {
            let wa: f64 = groups
                .iter()
                .zip(&w)
                .filter(|(g, _)| **g == a)
                .map(|(_, w)| w)
                .sum();
            for y in 0..3u32 {
                let way: f64 = (0..labels.len())
                    .filter(|&i| groups[i] == a && labels[i] == y)
                    .map(|i| w[i])
                    .sum();
                let p_y = labels.iter().filter(|&&l| l == y).count() as f64 / labels.len() as f64;
                assert!(
                    (way / wa - p_y).abs() < 1e-12,
                    "a={a} y={y}: {} vs {p_y}",
                    way / wa
                );
            }
        }
        // The cell formula: group 0 (n_a = 5), label 1 (n_y = 5), n_ay = 3, n = 14.
        assert!((w[0] - 5.0 * 5.0 / (14.0 * 3.0)).abs() < 1e-15);
    }

    #[test]
    fn class_balanced_gives_each_class_equal_mass() {
        let labels = [0, 0, 0, 0, 1, 2, 2];
        let w = class_balanced_weights(&labels);
        for y in 0..3u32 {
            let mass: f64 = labels
                .iter()
                .zip(&w)
                .filter(|(l, _)| **l == y)
                .map(|(_, w)| w)
                .sum();
            assert!((mass - 7.0 / 3.0).abs() < 1e-12, "class {y}: {mass}");
        }
    }

    #[test]
    fn dataset_weights_multiply() {
        let w = example_weights(Weighting::None, Some(&[2.0, 0.5]), &[0, 1], &[0, 0]);
        assert_eq!(w, vec![2.0, 0.5]);
    }
}
