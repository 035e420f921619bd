//! Headline disparity metrics, named after the peer whose numbers they
//! reproduce, each with its sign convention.

use serde::{Deserialize, Serialize};

use crate::confusion::{BinaryCounts, ConfusionMatrix};
use crate::entropy::{BenefitCounts, between_group_entropy, classifier_entropy};
use crate::metrics::Table;
use crate::report::{Interval, OrderedMap};

/// fairlearn 0.15's scalar disparity functions. Convention: differences are
/// `max − min` over groups (≥ 0, 0 is parity); ratios are `min / max`
/// (≤ 1, 1 is parity); `worst_case` takes the larger difference (smaller
/// ratio) of TPR and FPR, `mean` their mean.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FairlearnMetrics {
    /// `demographic_parity_difference`: max − min selection rate.
    pub demographic_parity_difference: Option<f64>,
    /// `demographic_parity_ratio`: min / max selection rate.
    pub demographic_parity_ratio: Option<f64>,
    /// `equalized_odds_difference(agg="worst_case")`: max of the TPR and FPR differences.
    pub equalized_odds_difference_worst_case: Option<f64>,
    /// `equalized_odds_difference(agg="mean")`: mean of the TPR and FPR differences.
    pub equalized_odds_difference_mean: Option<f64>,
    /// `equalized_odds_ratio(agg="worst_case")`: min of the TPR and FPR ratios.
    pub equalized_odds_ratio_worst_case: Option<f64>,
    /// `equalized_odds_ratio(agg="mean")`: mean of the TPR and FPR ratios.
    pub equalized_odds_ratio_mean: Option<f64>,
    /// `equal_opportunity_difference`: max − min TPR.
    pub equal_opportunity_difference: Option<f64>,
    /// `equal_opportunity_ratio`: min / max TPR.
    pub equal_opportunity_ratio: Option<f64>,
    /// Bootstrap intervals by field name, when the audit ran a bootstrap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<OrderedMap<Option<Interval>>>,
}

impl FairlearnMetrics {
    /// Field names and values, in schema order.
    pub fn entries(&self) -> [(&'static str, Option<f64>); 8] {
        [
            (
                "demographic_parity_difference",
                self.demographic_parity_difference,
            ),
            ("demographic_parity_ratio", self.demographic_parity_ratio),
            (
                "equalized_odds_difference_worst_case",
                self.equalized_odds_difference_worst_case,
            ),
            (
                "equalized_odds_difference_mean",
                self.equalized_odds_difference_mean,
            ),
            (
                "equalized_odds_ratio_worst_case",
                self.equalized_odds_ratio_worst_case,
            ),
            ("equalized_odds_ratio_mean", self.equalized_odds_ratio_mean),
            (
                "equal_opportunity_difference",
                self.equal_opportunity_difference,
            ),
            ("equal_opportunity_ratio", self.equal_opportunity_ratio),
        ]
    }

    /// From the selection-rate, TPR and FPR tables (fairlearn builds these
    /// functions on `MetricFrame` the same way).
    pub(crate) fn from_tables(sr: &Table, tpr: &Table, fpr: &Table) -> Self {
        let both = |a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64| match (a, b) {
            (Some(a), Some(b)) => Some(f(a, b)),
            (a, b) => a.or(b),
        };
        let mean = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some((a + b) / 2.0),
            (a, b) => a.or(b),
        };
        let (td, fd) = (
            tpr.agg.difference_between_groups,
            fpr.agg.difference_between_groups,
        );
        let (tr, fr) = (tpr.agg.ratio_between_groups, fpr.agg.ratio_between_groups);
        Self {
            demographic_parity_difference: sr.agg.difference_between_groups,
            demographic_parity_ratio: sr.agg.ratio_between_groups,
            equalized_odds_difference_worst_case: both(td, fd, f64::max),
            equalized_odds_difference_mean: mean(td, fd),
            equalized_odds_ratio_worst_case: both(tr, fr, f64::min),
            equalized_odds_ratio_mean: mean(tr, fr),
            equal_opportunity_difference: td,
            equal_opportunity_ratio: tr,
            intervals: None,
        }
    }
}

/// AIF360 0.6's `ClassificationMetric` / `BinaryLabelDatasetMetric` with one
/// privileged set of groups and every other group unprivileged.
/// Convention: differences are signed `unprivileged − privileged` (0 is
/// parity; negative means the unprivileged groups fare worse on a rate
/// where higher is better); `disparate_impact` is `unprivileged /
/// privileged` (1 is parity).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Aif360Metrics {
    /// The privileged group keys; every other group is unprivileged.
    pub privileged: Vec<String>,
    /// P(ŷ=1 | unprivileged).
    pub selection_rate_unprivileged: Option<f64>,
    /// P(ŷ=1 | privileged).
    pub selection_rate_privileged: Option<f64>,
    /// `statistical_parity_difference`: SR_u − SR_p.
    pub statistical_parity_difference: Option<f64>,
    /// `disparate_impact`: SR_u / SR_p.
    pub disparate_impact: Option<f64>,
    /// `equal_opportunity_difference`: TPR_u − TPR_p.
    pub equal_opportunity_difference: Option<f64>,
    /// `average_odds_difference`: ((FPR_u − FPR_p) + (TPR_u − TPR_p)) / 2.
    pub average_odds_difference: Option<f64>,
    /// `average_abs_odds_difference`: (|FPR_u − FPR_p| + |TPR_u − TPR_p|) / 2.
    pub average_abs_odds_difference: Option<f64>,
    /// `error_rate_difference`: ERR_u − ERR_p with ERR = 1 − accuracy.
    pub error_rate_difference: Option<f64>,
    /// `false_discovery_rate_difference`: FDR_u − FDR_p, FDR = FP / (TP + FP).
    pub false_discovery_rate_difference: Option<f64>,
    /// `between_group_theil_index` over the privileged and unprivileged
    /// groups (each row's benefit replaced by its group's mean benefit).
    pub between_group_theil_index: Option<f64>,
    /// `BinaryLabelDatasetMetric.mean_difference` of the true labels:
    /// base rate_u − base rate_p.
    pub dataset_mean_difference_true_labels: Option<f64>,
    /// Reweighing (Kamiran & Calders) weights of the true labels,
    /// `w(a, y) = P(a)·P(y) / P(a, y)`, keyed `unprivileged|<label>` and
    /// `privileged|<label>` (AIF360's `Reweighing`).
    pub reweighing_weights_true_labels: OrderedMap<Option<f64>>,
    /// Bootstrap intervals by field name, when the audit ran a bootstrap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<OrderedMap<Option<Interval>>>,
}

impl Aif360Metrics {
    /// The scalar fields (not the weights), in schema order.
    pub fn entries(&self) -> [(&'static str, Option<f64>); 11] {
        [
            (
                "selection_rate_unprivileged",
                self.selection_rate_unprivileged,
            ),
            ("selection_rate_privileged", self.selection_rate_privileged),
            (
                "statistical_parity_difference",
                self.statistical_parity_difference,
            ),
            ("disparate_impact", self.disparate_impact),
            (
                "equal_opportunity_difference",
                self.equal_opportunity_difference,
            ),
            ("average_odds_difference", self.average_odds_difference),
            (
                "average_abs_odds_difference",
                self.average_abs_odds_difference,
            ),
            ("error_rate_difference", self.error_rate_difference),
            (
                "false_discovery_rate_difference",
                self.false_discovery_rate_difference,
            ),
            ("between_group_theil_index", self.between_group_theil_index),
            (
                "dataset_mean_difference_true_labels",
                self.dataset_mean_difference_true_labels,
            ),
        ]
    }

    /// From the pooled 2×2 counts of the privileged and unprivileged groups.
    pub(crate) fn compute(
        labels: &[String],
        positive: usize,
        unpriv: &ConfusionMatrix,
        priv_: &ConfusionMatrix,
    ) -> Self {
        let u = unpriv.one_vs_rest(positive);
        let p = priv_.one_vs_rest(positive);
        let div = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        let sr = |c: &BinaryCounts| div(c.predicted_positives(), c.total());
        let tpr = |c: &BinaryCounts| div(c.true_positives, c.positives());
        let fpr = |c: &BinaryCounts| div(c.false_positives, c.negatives());
        let err = |c: &BinaryCounts| {
            div(c.true_positives + c.true_negatives, c.total()).map(|acc| 1.0 - acc)
        };
        let fdr = |c: &BinaryCounts| div(c.false_positives, c.predicted_positives());
        let base = |c: &BinaryCounts| div(c.positives(), c.total());
        let d = |f: &dyn Fn(&BinaryCounts) -> Option<f64>| Some(f(&u)? - f(&p)?);
        let fpr_d = d(&fpr);
        let tpr_d = d(&tpr);
        let odds = fpr_d.zip(tpr_d);
        let between = between_group_entropy(&[BenefitCounts::of(&p), BenefitCounts::of(&u)], 1.0);
        let neg = 1 - positive;
        let mut weights = OrderedMap::new();
        for (name, m) in [("unprivileged", unpriv), ("privileged", priv_)] {
            for y in [neg, positive] {
                weights.push(
                    format!("{name}|{}", labels[y]),
                    reweighing_weight(
                        m.true_total(y),
                        m.total(),
                        unpriv.true_total(y) + priv_.true_total(y),
                        unpriv.total() + priv_.total(),
                    ),
                );
            }
        }
        Self {
            privileged: Vec::new(),
            selection_rate_unprivileged: sr(&u),
            selection_rate_privileged: sr(&p),
            statistical_parity_difference: d(&sr),
            disparate_impact: sr(&u)
                .zip(sr(&p))
                .map(|(a, b)| a / b)
                .filter(|x| x.is_finite()),
            equal_opportunity_difference: tpr_d,
            average_odds_difference: odds.map(|(f, t)| 0.5 * (f + t)),
            average_abs_odds_difference: odds.map(|(f, t)| 0.5 * (f.abs() + t.abs())),
            error_rate_difference: d(&err),
            false_discovery_rate_difference: d(&fdr),
            between_group_theil_index: between,
            dataset_mean_difference_true_labels: d(&base),
            reweighing_weights_true_labels: weights,
            intervals: None,
        }
    }
}

/// Kamiran & Calders' weight of the cell (group a, label y):
/// `n_y · n_a / (n · n_ay)`, in the operation order of AIF360's
/// `Reweighing.fit`. `None` for an empty cell.
pub(crate) fn reweighing_weight(n_ay: u64, n_a: u64, n_y: u64, n: u64) -> Option<f64> {
    (n_ay > 0).then(|| (n_y as f64 * n_a as f64) / (n as f64 * n_ay as f64))
}

/// Disparities for three or more labels. Each gap is the largest, over
/// classes (or confusion cells), of `max − min` over groups (≥ 0, 0 is
/// parity); the label (or cell) where it is reached is named.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MulticlassDisparities {
    /// Largest one-vs-rest selection-rate gap over classes.
    pub selection_rate_gap: Option<f64>,
    /// The class where it is reached.
    pub selection_rate_gap_label: Option<String>,
    /// Largest one-vs-rest recall gap over classes.
    pub recall_gap: Option<f64>,
    /// The class where it is reached.
    pub recall_gap_label: Option<String>,
    /// Largest one-vs-rest false-positive-rate gap over classes.
    pub false_positive_rate_gap: Option<f64>,
    /// The class where it is reached.
    pub false_positive_rate_gap_label: Option<String>,
    /// Largest gap over cells (true i, predicted j) of the conditional
    /// confusion rate P(ŷ = j | y = i, group).
    pub conditional_confusion_gap: Option<f64>,
    /// The cell where it is reached.
    pub conditional_confusion_gap_cell: Option<ConfusionCell>,
    /// Bootstrap intervals by field name, when the audit ran a bootstrap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<OrderedMap<Option<Interval>>>,
}

/// A cell of a confusion matrix, by label.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionCell {
    /// True label.
    pub true_label: String,
    /// Predicted label.
    pub predicted_label: String,
}

impl MulticlassDisparities {
    /// The gaps, in schema order.
    pub fn entries(&self) -> [(&'static str, Option<f64>); 4] {
        [
            ("selection_rate_gap", self.selection_rate_gap),
            ("recall_gap", self.recall_gap),
            ("false_positive_rate_gap", self.false_positive_rate_gap),
            ("conditional_confusion_gap", self.conditional_confusion_gap),
        ]
    }

    pub(crate) fn compute(
        labels: &[String],
        groups: &[ConfusionMatrix],
        selection: &[&Table],
        recall: &[&Table],
        fpr: &[&Table],
    ) -> Self {
        let argmax = |tables: &[&Table]| -> (Option<f64>, Option<String>) {
            let mut best: Option<(f64, usize)> = None;
            for (c, t) in tables.iter().enumerate() {
                if let Some(v) = t.agg.difference_between_groups
                    && best.is_none_or(|(b, _)| v > b)
                {
                    best = Some((v, c));
                }
            }
            (best.map(|b| b.0), best.map(|b| labels[b.1].clone()))
        };
        let (selection_rate_gap, selection_rate_gap_label) = argmax(selection);
        let (recall_gap, recall_gap_label) = argmax(recall);
        let (false_positive_rate_gap, false_positive_rate_gap_label) = argmax(fpr);
        let k = labels.len();
        let mut best: Option<(f64, usize, usize)> = None;
        for i in 0..k {
            for j in 0..k {
                let mut lo = f64::INFINITY;
                let mut hi = f64::NEG_INFINITY;
                for g in groups {
                    let row = g.true_total(i);
                    if row > 0 {
                        let r = g.get(i, j) as f64 / row as f64;
                        lo = lo.min(r);
                        hi = hi.max(r);
                    }
                }
                if hi >= lo {
                    let gap = hi - lo;
                    if best.is_none_or(|(b, _, _)| gap > b) {
                        best = Some((gap, i, j));
                    }
                }
            }
        }
        Self {
            selection_rate_gap,
            selection_rate_gap_label,
            recall_gap,
            recall_gap_label,
            false_positive_rate_gap,
            false_positive_rate_gap_label,
            conditional_confusion_gap: best.map(|b| b.0),
            conditional_confusion_gap_cell: best.map(|(_, i, j)| ConfusionCell {
                true_label: labels[i].clone(),
                predicted_label: labels[j].clone(),
            }),
            intervals: None,
        }
    }
}

/// Reads a classifier's individual-fairness indices (AIF360 definitions)
/// off the overall 2×2 counts.
pub(crate) fn theil_and_ge2(overall: &BinaryCounts) -> (Option<f64>, Option<f64>) {
    let b = BenefitCounts::of(overall);
    (classifier_entropy(&b, 1.0), classifier_entropy(&b, 2.0))
}
