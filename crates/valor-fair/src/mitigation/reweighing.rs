//! Reweighing (Kamiran & Calders 2012, "Data preprocessing techniques for
//! classification without discrimination"): weight each (group, label) cell
//! by `P(group)·P(label) / P(group, label)` so that group and label are
//! independent in the weighted training data. With a privileged/unprivileged
//! grouping these are AIF360's `Reweighing` weights.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::headline::reweighing_weight;
use crate::ids::{GroupId, LabelId, LabelSet};
use crate::mitigation::{intern, load_json, lookup_groups, save_json};
use crate::streaming::ConfusionCounts;

/// Fitted reweighing weights, exported for training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reweighing {
    /// Label order of `weights` rows.
    pub labels: Vec<String>,
    /// Group order of `weights`.
    pub groups: Vec<String>,
    /// `weights[group][label]`; `None` for a cell without rows.
    pub weights: Vec<Vec<Option<f64>>>,
}

fn table(
    n_labels: usize,
    n_groups: usize,
    y_true: &[LabelId],
    groups: &[u32],
) -> Vec<Vec<Option<f64>>> {
    let mut cell = vec![vec![0u64; n_labels]; n_groups];
    for (y, g) in y_true.iter().zip(groups) {
        cell[*g as usize][y.index()] += 1;
    }
    weights_of(&cell)
}

fn weights_of(cell: &[Vec<u64>]) -> Vec<Vec<Option<f64>>> {
    let n_labels = cell.first().map_or(0, Vec::len);
    let n: u64 = cell.iter().flatten().sum();
    let by_label: Vec<u64> = (0..n_labels)
        .map(|y| cell.iter().map(|r| r[y]).sum())
        .collect();
    cell.iter()
        .map(|row| {
            let n_g: u64 = row.iter().sum();
            row.iter()
                .zip(&by_label)
                .map(|(&n_gy, &n_y)| reweighing_weight(n_gy, n_g, n_y, n))
                .collect()
        })
        .collect()
}

impl Reweighing {
    /// Fits weights on true labels and one group value per row.
    pub fn fit<S: AsRef<str>>(labels: &LabelSet, y_true: &[LabelId], groups: &[S]) -> Result<Self> {
        if y_true.is_empty() {
            return Err(Error::Empty {
                what: "fit reweighing weights".into(),
            });
        }
        if groups.len() != y_true.len() {
            return Err(Error::LengthMismatch {
                column: "groups".into(),
                expected: y_true.len(),
                actual: groups.len(),
            });
        }
        if let Some((row, id)) = y_true
            .iter()
            .enumerate()
            .find(|(_, y)| y.index() >= labels.len())
        {
            return Err(Error::LabelIdOutOfRange {
                column: "y_true".into(),
                row,
                id: id.get(),
                n_labels: labels.len(),
            });
        }
        let (names, ids) = intern(groups);
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.sort_by(|&a, &b| names[a].cmp(&names[b]));
        let mut rank = vec![0u32; names.len()];
        for (r, &g) in order.iter().enumerate() {
            rank[g] = r as u32;
        }
        let ids: Vec<u32> = ids.iter().map(|&g| rank[g as usize]).collect();
        let groups: Vec<String> = order.iter().map(|&g| names[g].clone()).collect();
        Ok(Self {
            labels: labels.names().to_vec(),
            weights: table(labels.len(), groups.len(), y_true, &ids),
            groups,
        })
    }

    /// Weights from streamed counts (their true labels).
    pub fn from_counts(counts: &ConfusionCounts) -> Self {
        let k = counts.labels().len();
        let cell: Vec<Vec<u64>> = (0..counts.groups().len())
            .map(|g| {
                counts
                    .group(GroupId::new(g as u32))
                    .map(|m| (0..k).map(|y| m.true_total(y)).collect())
                    .unwrap_or_else(|| vec![0; k])
            })
            .collect();
        Self {
            labels: counts.labels().to_vec(),
            groups: counts.groups().to_vec(),
            weights: weights_of(&cell),
        }
    }

    /// The weight of a (group, label) cell.
    pub fn weight(&self, group: &str, label: &str) -> Option<f64> {
        let g = self.groups.iter().position(|x| x == group)?;
        let y = self.labels.iter().position(|x| x == label)?;
        self.weights[g][y]
    }

    /// One weight per row; a group or cell not seen when fitting is an error.
    pub fn row_weights<S: AsRef<str>>(&self, y_true: &[LabelId], groups: &[S]) -> Result<Vec<f64>> {
        if groups.len() != y_true.len() {
            return Err(Error::LengthMismatch {
                column: "groups".into(),
                expected: y_true.len(),
                actual: groups.len(),
            });
        }
        let gs = lookup_groups(&self.groups, groups)?;
        y_true
            .iter()
            .zip(gs)
            .enumerate()
            .map(|(row, (y, g))| {
                self.weights
                    .get(g)
                    .and_then(|r| r.get(y.index()))
                    .copied()
                    .flatten()
                    .ok_or_else(|| Error::Mismatch {
                        what: format!("row {row}"),
                        why: format!(
                            "no fitted weight for group `{}` with label id {}",
                            self.groups[g],
                            y.get()
                        ),
                    })
            })
            .collect()
    }

    /// Saves as JSON (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        save_json(self, "reweighing weights", path)
    }

    /// Loads weights saved by [`save`](Self::save).
    pub fn load(path: &Path) -> Result<Self> {
        load_json("reweighing weights", path)
    }
}

/// Per-row Kamiran & Calders weights for label ids and group ids.
pub fn reweighing_weights(
    y_true: &[LabelId],
    groups: &[GroupId],
    n_labels: usize,
    n_groups: usize,
) -> Result<Vec<f64>> {
    if groups.len() != y_true.len() {
        return Err(Error::LengthMismatch {
            column: "groups".into(),
            expected: y_true.len(),
            actual: groups.len(),
        });
    }
    if let Some((row, y)) = y_true
        .iter()
        .enumerate()
        .find(|(_, y)| y.index() >= n_labels)
    {
        return Err(Error::LabelIdOutOfRange {
            column: "y_true".into(),
            row,
            id: y.get(),
            n_labels,
        });
    }
    if let Some((row, g)) = groups
        .iter()
        .enumerate()
        .find(|(_, g)| g.index() >= n_groups)
    {
        return Err(Error::GroupCodeOutOfRange {
            column: "groups".into(),
            row,
            code: g.get(),
            n_levels: n_groups,
        });
    }
    let ids: Vec<u32> = groups.iter().map(|g| g.get()).collect();
    let w = table(n_labels, n_groups, y_true, &ids);
    Ok(y_true
        .iter()
        .zip(groups)
        .map(|(y, g)| w[g.index()][y.index()].unwrap_or(0.0))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_cells_make_label_independent_of_group() {
        let labels = LabelSet::new(&["0", "1"]).unwrap();
        let l = LabelId::new;
        let y = [l(1), l(1), l(1), l(0), l(0), l(1), l(0), l(0), l(0), l(0)];
        let g = ["a", "a", "a", "a", "b", "b", "b", "b", "b", "b"];
        let r = Reweighing::fit(&labels, &y, &g).unwrap();
        let w = r.row_weights(&y, &g).unwrap();
        // weighted positive rate is the same in both groups
        let rate = |grp: &str| {
            let (mut pos, mut tot) = (0.0, 0.0);
            for ((yy, gg), ww) in y.iter().zip(&g).zip(&w) {
                if *gg == grp {
                    tot += ww;
                    if yy.index() == 1 {
                        pos += ww;
                    }
                }
            }
            pos / tot
        };
        assert!((rate("a") - rate("b")).abs() < 1e-12);
        assert!((rate("a") - 0.4).abs() < 1e-12);
        assert!(matches!(
            r.row_weights(&[l(0)], &["c"]),
            Err(Error::UnknownGroup { .. })
        ));
        let ids: Vec<GroupId> = g
            .iter()
            .map(|x| GroupId::new(u32::from(*x == "b")))
            .collect();
        assert_eq!(reweighing_weights(&y, &ids, 2, 2).unwrap(), w);
    }
}
