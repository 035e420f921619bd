//! Evaluation from streamed counts: each evaluation batch adds its
//! predictions to confusion counts (overall, and per group with
//! `valor_fair::ConfusionCounts`) and its loss to a sum; the metrics are
//! read off the counts at the end. No logits are kept.
//!
//! Definitions (all over the rows evaluated):
//! * `accuracy`: share of rows predicted right;
//! * `macro_f1`: mean over the classes present (in truth or prediction) of
//!   `2TP / (2TP + FP + FN)` (scikit-learn `f1_score(average="macro")`);
//! * `balanced_accuracy`: mean recall over the classes present in truth
//!   (scikit-learn `balanced_accuracy_score`);
//! * `selection_rate_gap`: for the primary group column (the first, or
//!   the one [`EvalCounts::with_primary`] names), the largest over
//!   classes `c` of `max − min` over groups of `P(ŷ = c | group)` (≥ 0;
//!   for two labels, fairlearn's `demographic_parity_difference`);
//! * `equalized_odds_gap`: the largest over classes of the larger of the
//!   one-vs-rest true-positive-rate and false-positive-rate gaps (`max −
//!   min` over groups; for two labels, fairlearn's
//!   `equalized_odds_difference`, worst case);
//! * `accuracy_reference`: accuracy against the dataset's reference label
//!   (the fair label of the built-in data);
//! * `counterfactual_flip_rate`: share of rows whose predicted class
//!   changes when the text is replaced by its counterfactual twin.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use valor_fair::{
    ConfusionCounts, ConfusionMatrix, CountsSummaryConfig, GroupId, LabelId, LabelSet, SpecReport,
};

use crate::error::Result;

/// Streamed evaluation state of one pass over a split.
#[derive(Debug, Clone)]
pub struct EvalCounts {
    labels: Vec<String>,
    rows: u64,
    loss_sum: f64,
    overall: ConfusionMatrix,
    /// Per group column: its name and counts against the label column.
    groups: Vec<(String, ConfusionCounts)>,
    /// Against the reference labels, when the data has them.
    reference: Option<(ConfusionMatrix, Vec<(String, ConfusionCounts)>)>,
    /// (flipped, pairs) over rows with a counterfactual twin.
    twins: Option<(u64, u64)>,
    /// The group column of the headline gaps (an index into `groups`).
    primary: usize,
}

/// One row's evaluation, as the loop hands it over.
#[derive(Debug, Clone, Copy)]
pub struct RowOutcome<'a> {
    pub label: u32,
    pub predicted: u32,
    /// Cross-entropy of the row (natural log).
    pub loss: f64,
    /// The row's group in each group column.
    pub groups: &'a [u32],
    pub reference: Option<u32>,
    /// The prediction on the row's counterfactual twin.
    pub twin_predicted: Option<u32>,
}

/// The numbers of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    pub rows: u64,
    /// Mean (unweighted) cross-entropy.
    pub loss: f64,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub balanced_accuracy: f64,
    /// Over the first group column; `null` without groups.
    pub selection_rate_gap: Option<f64>,
    /// The gap of each class (label name → gap), first group column.
    pub selection_rate_gap_by_class: Map<String, Value>,
    pub equalized_odds_gap: Option<f64>,
    pub accuracy_reference: Option<f64>,
    pub counterfactual_flip_rate: Option<f64>,
    /// Both gaps on every group column (the headline ones above are the
    /// primary column's: the first fairness group column in training).
    #[serde(default)]
    pub gaps_by_group: std::collections::BTreeMap<String, GroupGaps>,
}

/// The headline gaps of one group column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupGaps {
    pub selection_rate_gap: Option<f64>,
    pub equalized_odds_gap: Option<f64>,
}

impl EvalCounts {
    /// Empty counts for `labels`, the group columns (name and value names),
    /// and whether reference labels and twins will be given.
    pub fn new(
        labels: &[String],
        group_columns: &[(String, Vec<String>)],
        with_reference: bool,
        with_twins: bool,
    ) -> Result<Self> {
        let k = labels.len();
        let make_groups = || -> Result<Vec<(String, ConfusionCounts)>> {
            if k < 2 {
                return Ok(Vec::new());
            }
            let set = LabelSet::new(labels)?;
            group_columns
                .iter()
                .map(|(name, values)| {
                    Ok((name.clone(), ConfusionCounts::new(&set, values.clone())?))
                })
                .collect()
        };
        Ok(Self {
            labels: labels.to_vec(),
            rows: 0,
            loss_sum: 0.0,
            overall: ConfusionMatrix::new(k),
            groups: make_groups()?,
            reference: if with_reference {
                Some((ConfusionMatrix::new(k), make_groups()?))
            } else {
                None
            },
            twins: with_twins.then_some((0, 0)),
            primary: 0,
        })
    }

    /// Takes the headline gaps (`selection_rate_gap`, …) on the group
    /// column `name` instead of the first one (unknown names change
    /// nothing).
    pub fn with_primary(mut self, name: &str) -> Self {
        if let Some(i) = self.groups.iter().position(|(n, _)| n == name) {
            self.primary = i;
        }
        self
    }

    /// Number of labels.
    pub fn num_labels(&self) -> usize {
        self.labels.len()
    }

    /// The confusion matrix of every group of column `name` (an all-zero
    /// one for a group without rows), in group-id order.
    pub fn column_matrices(&self, name: &str) -> Option<Vec<ConfusionMatrix>> {
        let (_, c) = self.groups.iter().find(|(n, _)| n == name)?;
        Some(
            (0..c.groups().len())
                .map(|g| {
                    c.group(GroupId::new(g as u32))
                        .cloned()
                        .unwrap_or_else(|| ConfusionMatrix::new(self.labels.len()))
                })
                .collect(),
        )
    }

    /// Counts one row.
    pub fn add(&mut self, row: RowOutcome<'_>) -> Result<()> {
        let (t, p) = (row.label, row.predicted);
        self.rows += 1;
        self.loss_sum += row.loss;
        self.overall.add(t as usize, p as usize, 1);
        for ((_, counts), &g) in self.groups.iter_mut().zip(row.groups) {
            counts.add(LabelId::new(t), LabelId::new(p), GroupId::new(g))?;
        }
        if let (Some((m, cols)), Some(r)) = (&mut self.reference, row.reference) {
            m.add(r as usize, p as usize, 1);
            for ((_, counts), &g) in cols.iter_mut().zip(row.groups) {
                counts.add(LabelId::new(r), LabelId::new(p), GroupId::new(g))?;
            }
        }
        if let (Some((flips, pairs)), Some(tp)) = (&mut self.twins, row.twin_predicted) {
            *pairs += 1;
            *flips += u64::from(tp != p);
        }
        Ok(())
    }

    /// Rows counted.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The metrics (NaN loss and zero rates when nothing was counted).
    pub fn metrics(&self) -> EvalMetrics {
        let first = self
            .groups
            .get(self.primary)
            .map(|(_, c)| group_matrices(c));
        let mut gaps_by_group = std::collections::BTreeMap::new();
        for (name, c) in &self.groups {
            let m = group_matrices(c);
            gaps_by_group.insert(
                name.clone(),
                GroupGaps {
                    selection_rate_gap: selection_rate_gaps(&m)
                        .into_iter()
                        .flatten()
                        .reduce(f64::max),
                    equalized_odds_gap: equalized_odds_gap(&m),
                },
            );
        }
        let by_class = first
            .as_deref()
            .map(selection_rate_gaps)
            .unwrap_or_default();
        let mut gap_map = Map::new();
        for (name, gap) in self.labels.iter().zip(&by_class) {
            gap_map.insert(name.clone(), gap.map_or(Value::Null, Value::from));
        }
        EvalMetrics {
            rows: self.rows,
            loss: self.loss_sum / self.rows as f64,
            accuracy: accuracy(&self.overall),
            macro_f1: macro_f1(&self.overall),
            balanced_accuracy: balanced_accuracy(&self.overall),
            selection_rate_gap: by_class.iter().flatten().copied().reduce(f64::max),
            selection_rate_gap_by_class: gap_map,
            equalized_odds_gap: first.as_deref().and_then(equalized_odds_gap),
            accuracy_reference: self.reference.as_ref().map(|(m, _)| accuracy(m)),
            counterfactual_flip_rate: self
                .twins
                .filter(|(_, pairs)| *pairs > 0)
                .map(|(f, n)| f as f64 / n as f64),
            gaps_by_group,
        }
    }

    /// valor-fair's full report of each group column (against the label
    /// column, and against the reference labels when present). For two
    /// labels the second is the positive one. A column that cannot be
    /// summarised (e.g. a group absent from the split) is reported as the
    /// error message.
    pub fn fairness_reports(&self) -> (Map<String, Value>, Option<Map<String, Value>>) {
        let positive = (self.labels.len() == 2).then(|| self.labels[1].clone());
        let report = |cols: &[(String, ConfusionCounts)]| {
            let mut out = Map::new();
            for (name, counts) in cols {
                let cfg = CountsSummaryConfig {
                    name: name.clone(),
                    positive_label: positive.clone(),
                    privileged: Vec::new(),
                    ordinal: false,
                };
                let value = match counts.summary(&cfg) {
                    Ok(r) => spec_value(&r),
                    Err(e) => Value::from(format!("not computed: {e}")),
                };
                out.insert(name.clone(), value);
            }
            out
        };
        (
            report(&self.groups),
            self.reference.as_ref().map(|(_, cols)| report(cols)),
        )
    }
}

fn spec_value(r: &SpecReport) -> Value {
    serde_json::to_value(r).unwrap_or_else(|e| Value::from(format!("not serialisable: {e}")))
}

/// The non-empty group matrices of one column.
fn group_matrices(c: &ConfusionCounts) -> Vec<ConfusionMatrix> {
    (0..c.groups().len())
        .filter_map(|g| c.group(GroupId::new(g as u32)).cloned())
        .filter(|m| m.total() > 0)
        .collect()
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

fn spread(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut any = false;
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
        any = true;
    }
    any.then_some(hi - lo)
}

/// Share of rows on the diagonal.
pub fn accuracy(m: &ConfusionMatrix) -> f64 {
    m.correct() as f64 / m.total() as f64
}

/// Mean F1 over the classes present in truth or prediction.
pub fn macro_f1(m: &ConfusionMatrix) -> f64 {
    let f1s: Vec<f64> = (0..m.k())
        .filter(|&c| m.true_total(c) + m.pred_total(c) > 0)
        .map(|c| {
            let tp = m.get(c, c);
            2.0 * tp as f64 / (m.true_total(c) + m.pred_total(c)) as f64
        })
        .collect();
    f1s.iter().sum::<f64>() / f1s.len() as f64
}

/// Mean recall over the classes present in truth.
pub fn balanced_accuracy(m: &ConfusionMatrix) -> f64 {
    let recalls: Vec<f64> = (0..m.k())
        .filter_map(|c| ratio(m.get(c, c), m.true_total(c)))
        .collect();
    recalls.iter().sum::<f64>() / recalls.len() as f64
}

/// For each class, `max − min` over groups of `P(ŷ = c | group)`; `None`
/// with fewer than one group.
pub fn selection_rate_gaps(groups: &[ConfusionMatrix]) -> Vec<Option<f64>> {
    let k = groups.first().map_or(0, ConfusionMatrix::k);
    (0..k)
        .map(|c| {
            spread(
                groups
                    .iter()
                    .filter_map(|m| ratio(m.pred_total(c), m.total())),
            )
        })
        .collect()
}

/// The largest over classes of the one-vs-rest TPR and FPR gaps.
pub fn equalized_odds_gap(groups: &[ConfusionMatrix]) -> Option<f64> {
    let k = groups.first().map_or(0, ConfusionMatrix::k);
    (0..k)
        .flat_map(|c| {
            let tpr = spread(groups.iter().filter_map(|m| {
                let b = m.one_vs_rest(c);
                ratio(b.true_positives, b.positives())
            }));
            let fpr = spread(groups.iter().filter_map(|m| {
                let b = m.one_vs_rest(c);
                ratio(b.false_positives, b.negatives())
            }));
            [tpr, fpr]
        })
        .flatten()
        .reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Three classes, two groups; every number worked by hand, and the gaps
    /// checked against valor-fair's own multiclass summary of the same counts.
    #[test]
    fn metrics_from_counts() {
        let labels = names(&["a", "b", "c"]);
        let cols = vec![("g".to_string(), names(&["f", "m"]))];
        let mut ev = EvalCounts::new(&labels, &cols, true, true).unwrap();
        // (true, pred, group, reference, twin prediction)
        let rows = [
            (0, 0, 0, 0, 0),
            (0, 1, 0, 1, 1),
            (1, 1, 0, 1, 2),
            (2, 1, 0, 2, 1),
            (0, 0, 1, 0, 0),
            (1, 1, 1, 1, 1),
            (2, 2, 1, 2, 2),
            (2, 2, 1, 2, 1),
        ];
        for (t, p, g, r, tw) in rows {
            ev.add(RowOutcome {
                label: t,
                predicted: p,
                loss: 0.5,
                groups: &[g],
                reference: Some(r),
                twin_predicted: Some(tw),
            })
            .unwrap();
        }
        let m = ev.metrics();
        assert_eq!(m.rows, 8);
        assert!((m.loss - 0.5).abs() < 1e-12);
        assert!((m.accuracy - 6.0 / 8.0).abs() < 1e-12);
        // F1: a: tp 2, true 3, pred 2 → 4/5; b: tp 2, true 2, pred 4 → 4/6; c: tp 2, true 3, pred 2 → 4/5.
        assert!((m.macro_f1 - (0.8 + 4.0 / 6.0 + 0.8) / 3.0).abs() < 1e-12);
        assert!((m.balanced_accuracy - (2.0 / 3.0 + 1.0 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        // Selection rates f: a 1/4, b 3/4, c 0; m: a 1/4, b 1/4, c 2/4.
        assert_eq!(m.selection_rate_gap, Some(0.5));
        assert_eq!(m.selection_rate_gap_by_class["a"], Value::from(0.0));
        assert!((m.accuracy_reference.unwrap() - 7.0 / 8.0).abs() < 1e-12);
        assert!((m.counterfactual_flip_rate.unwrap() - 2.0 / 8.0).abs() < 1e-12);

        let (fair, reference) = ev.fairness_reports();
        assert!(reference.is_some());
        let multi = &fair["g"]["multiclass"];
        assert!(
            (multi["selection_rate_gap"].as_f64().unwrap() - m.selection_rate_gap.unwrap()).abs()
                < 1e-12
        );
        let eo = multi["recall_gap"]
            .as_f64()
            .unwrap()
            .max(multi["false_positive_rate_gap"].as_f64().unwrap());
        assert!(
            (eo - m.equalized_odds_gap.unwrap()).abs() < 1e-12,
            "{eo} vs {:?}",
            m.equalized_odds_gap
        );
    }

    #[test]
    fn without_groups_gaps_are_null() {
        let mut ev = EvalCounts::new(&names(&["x", "y"]), &[], false, false).unwrap();
        ev.add(RowOutcome {
            label: 1,
            predicted: 1,
            loss: 0.1,
            groups: &[],
            reference: None,
            twin_predicted: None,
        })
        .unwrap();
        let m = ev.metrics();
        assert_eq!(m.selection_rate_gap, None);
        assert_eq!(m.equalized_odds_gap, None);
        assert_eq!(m.accuracy_reference, None);
        assert_eq!(m.counterfactual_flip_rate, None);
        assert_eq!(m.accuracy, 1.0);
    }
}
