//! Metrics of one confusion matrix, and MetricFrame-style aggregation over
//! groups.
//!
//! Every metric here is a function of a confusion matrix and reproduces the
//! scikit-learn / fairlearn function named in its doc. One convention
//! differs on purpose: where the peer divides by zero (a group without
//! positives has no true positive rate) fairlearn returns 0 through
//! scikit-learn's `nan_to_num`; we return `None` (`null` in JSON) and
//! aggregates skip it, as pandas skips NaN. On every group where the metric
//! is defined the numbers are the peer's.

use crate::confusion::{BinaryCounts, ConfusionMatrix};

/// Which metric a [`MetricDef`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetricKind {
    /// `sklearn.metrics.accuracy_score`.
    Accuracy,
    /// `sklearn.metrics.balanced_accuracy_score`: mean recall over the
    /// labels that occur in `y_true`.
    BalancedAccuracy,
    /// `fairlearn.metrics.selection_rate`: P(ŷ = positive).
    SelectionRate,
    /// `fairlearn.metrics.true_positive_rate`: TP / (TP + FN).
    TruePositiveRate,
    /// `fairlearn.metrics.false_positive_rate`: FP / (FP + TN).
    FalsePositiveRate,
    /// `fairlearn.metrics.true_negative_rate`: TN / (TN + FP).
    TrueNegativeRate,
    /// `fairlearn.metrics.false_negative_rate`: FN / (FN + TP).
    FalseNegativeRate,
    /// `sklearn.metrics.precision_score`: TP / (TP + FP).
    Precision,
    /// `fairlearn.metrics.count`.
    Count,
    /// `sklearn.metrics.f1_score(average="macro", labels=all,
    /// zero_division=0)`: a label absent from both truth and prediction
    /// scores 0, as scikit-learn's `zero_division=0` says.
    MacroF1,
    /// One-vs-rest selection rate of class `c`: P(ŷ = c).
    ClassSelectionRate(usize),
    /// One-vs-rest recall of class `c`: P(ŷ = c | y = c).
    ClassRecall(usize),
    /// One-vs-rest false positive rate of class `c`: P(ŷ = c | y ≠ c).
    ClassFalsePositiveRate(usize),
}

/// A named metric.
#[derive(Clone, Debug)]
pub(crate) struct MetricDef {
    pub name: String,
    pub kind: MetricKind,
}

/// The metric list of a task: the fairlearn binary set when `positive` is
/// set, otherwise the multiclass set with per-class one-vs-rest metrics.
pub(crate) fn metric_defs(labels: &[String], positive: Option<usize>) -> Vec<MetricDef> {
    let d = |name: &str, kind| MetricDef {
        name: name.to_owned(),
        kind,
    };
    if positive.is_some() {
        vec![
            d("accuracy", MetricKind::Accuracy),
            d("balanced_accuracy", MetricKind::BalancedAccuracy),
            d("selection_rate", MetricKind::SelectionRate),
            d("true_positive_rate", MetricKind::TruePositiveRate),
            d("false_positive_rate", MetricKind::FalsePositiveRate),
            d("true_negative_rate", MetricKind::TrueNegativeRate),
            d("false_negative_rate", MetricKind::FalseNegativeRate),
            d("precision", MetricKind::Precision),
            d("count", MetricKind::Count),
        ]
    } else {
        let mut v = vec![
            d("accuracy", MetricKind::Accuracy),
            d("balanced_accuracy", MetricKind::BalancedAccuracy),
            d("count", MetricKind::Count),
            d("macro_f1", MetricKind::MacroF1),
        ];
        for (c, label) in labels.iter().enumerate() {
            v.push(d(
                &format!("selection_rate[{label}]"),
                MetricKind::ClassSelectionRate(c),
            ));
            v.push(d(&format!("recall[{label}]"), MetricKind::ClassRecall(c)));
            v.push(d(
                &format!("false_positive_rate[{label}]"),
                MetricKind::ClassFalsePositiveRate(c),
            ));
        }
        v
    }
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

impl MetricKind {
    /// The metric of one matrix; `None` when undefined (or the group is
    /// empty). `positive` is the positive class for binary metrics.
    pub(crate) fn eval(self, m: &ConfusionMatrix, positive: Option<usize>) -> Option<f64> {
        let n = m.total();
        if n == 0 {
            return None;
        }
        let bin = || -> Option<BinaryCounts> { positive.map(|p| m.one_vs_rest(p)) };
        match self {
            Self::Accuracy => ratio(m.correct(), n),
            Self::BalancedAccuracy => balanced_accuracy(m),
            Self::Count => Some(n as f64),
            Self::SelectionRate => bin().and_then(|b| ratio(b.predicted_positives(), n)),
            Self::TruePositiveRate => bin().and_then(|b| ratio(b.true_positives, b.positives())),
            Self::FalsePositiveRate => bin().and_then(|b| ratio(b.false_positives, b.negatives())),
            Self::TrueNegativeRate => bin().and_then(|b| ratio(b.true_negatives, b.negatives())),
            Self::FalseNegativeRate => bin().and_then(|b| ratio(b.false_negatives, b.positives())),
            Self::Precision => bin().and_then(|b| ratio(b.true_positives, b.predicted_positives())),
            Self::MacroF1 => Some(macro_f1(m)),
            Self::ClassSelectionRate(c) => ratio(m.pred_total(c), n),
            Self::ClassRecall(c) => ratio(m.get(c, c), m.true_total(c)),
            Self::ClassFalsePositiveRate(c) => {
                ratio(m.pred_total(c) - m.get(c, c), n - m.true_total(c))
            }
        }
    }
}

/// scikit-learn's balanced accuracy: the mean over labels present in
/// `y_true` of each label's recall (labels only predicted are dropped, as
/// scikit-learn drops their NaN recall).
pub(crate) fn balanced_accuracy(m: &ConfusionMatrix) -> Option<f64> {
    let mut sum = 0.0;
    let mut n = 0usize;
    for c in 0..m.k() {
        let support = m.true_total(c);
        if support > 0 {
            sum += m.get(c, c) as f64 / support as f64;
            n += 1;
        }
    }
    (n > 0).then(|| sum / n as f64)
}

/// scikit-learn's macro F1 over every label with `zero_division=0`:
/// F1_c = 2·TP_c / (support_c + predicted_c).
pub(crate) fn macro_f1(m: &ConfusionMatrix) -> f64 {
    let k = m.k();
    let mut sum = 0.0;
    for c in 0..k {
        let den = m.true_total(c) + m.pred_total(c);
        if den > 0 {
            sum += (2 * m.get(c, c)) as f64 / den as f64;
        }
    }
    sum / k as f64
}

/// A metric over the whole data and per group, with fairlearn
/// `MetricFrame`'s aggregates. Groups whose value is `None` are skipped by
/// every aggregate (pandas `skipna`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Table {
    pub overall: Option<f64>,
    pub by_group: Vec<Option<f64>>,
    pub agg: Aggregates,
}

/// fairlearn `MetricFrame` aggregates of one metric.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Aggregates {
    /// `group_max() - group_min()`.
    pub difference_between_groups: Option<f64>,
    /// Largest `|group - overall|`.
    pub difference_to_overall: Option<f64>,
    /// `group_min() / group_max()`.
    pub ratio_between_groups: Option<f64>,
    /// Smallest of `group / overall`, each folded below 1 (`x > 1 → 1/x`).
    pub ratio_to_overall: Option<f64>,
    pub group_min: Option<f64>,
    pub group_max: Option<f64>,
}

/// Which aggregate (for bootstrap keys and thresholds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Agg {
    DifferenceBetweenGroups,
    DifferenceToOverall,
    RatioBetweenGroups,
    RatioToOverall,
    GroupMin,
    GroupMax,
}

impl Agg {
    pub(crate) const ALL: [Agg; 6] = [
        Agg::DifferenceBetweenGroups,
        Agg::DifferenceToOverall,
        Agg::RatioBetweenGroups,
        Agg::RatioToOverall,
        Agg::GroupMin,
        Agg::GroupMax,
    ];
}

impl Aggregates {
    pub(crate) fn get(&self, a: Agg) -> Option<f64> {
        match a {
            Agg::DifferenceBetweenGroups => self.difference_between_groups,
            Agg::DifferenceToOverall => self.difference_to_overall,
            Agg::RatioBetweenGroups => self.ratio_between_groups,
            Agg::RatioToOverall => self.ratio_to_overall,
            Agg::GroupMin => self.group_min,
            Agg::GroupMax => self.group_max,
        }
    }

    /// fairlearn's `MetricFrame.difference/ratio/group_min/group_max`
    /// (between_groups and to_overall) over the defined group values.
    pub(crate) fn compute(overall: Option<f64>, by_group: &[Option<f64>]) -> Self {
        let defined = || by_group.iter().filter_map(|v| *v).filter(|v| !v.is_nan());
        let group_min = defined().reduce(f64::min);
        let group_max = defined().reduce(f64::max);
        let difference_between_groups = group_min.zip(group_max).map(|(lo, hi)| hi - lo);
        let ratio_between_groups = group_min
            .zip(group_max)
            .map(|(lo, hi)| lo / hi)
            .filter(|r| !r.is_nan());
        let difference_to_overall =
            overall.and_then(|o| defined().map(|g| (g - o).abs()).reduce(f64::max));
        let ratio_to_overall = overall.and_then(|o| {
            defined()
                .map(|g| g / o)
                .filter(|r| !r.is_nan())
                .map(|r| if r > 1.0 { 1.0 / r } else { r })
                .reduce(f64::min)
        });
        Self {
            difference_between_groups,
            difference_to_overall,
            ratio_between_groups,
            ratio_to_overall,
            group_min,
            group_max,
        }
    }
}

impl Table {
    pub(crate) fn new(overall: Option<f64>, by_group: Vec<Option<f64>>) -> Self {
        let agg = Aggregates::compute(overall, &by_group);
        Self {
            overall,
            by_group,
            agg,
        }
    }

    /// The table of one metric over an overall matrix and group matrices.
    pub(crate) fn of(
        kind: MetricKind,
        overall: &ConfusionMatrix,
        groups: &[ConfusionMatrix],
        positive: Option<usize>,
    ) -> Self {
        Self::new(
            kind.eval(overall, positive),
            groups.iter().map(|g| kind.eval(g, positive)).collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_follow_fairlearn() {
        let a = Aggregates::compute(Some(0.5), &[Some(0.2), None, Some(0.8)]);
        assert_eq!(a.group_min, Some(0.2));
        assert_eq!(a.group_max, Some(0.8));
        assert!((a.difference_between_groups.unwrap() - 0.6).abs() < 1e-15);
        assert_eq!(a.ratio_between_groups, Some(0.25));
        assert!((a.difference_to_overall.unwrap() - 0.3).abs() < 1e-15);
        // 0.2/0.5 = 0.4; 0.8/0.5 = 1.6 → 0.625
        assert_eq!(a.ratio_to_overall, Some(0.4));
        let z = Aggregates::compute(Some(0.0), &[Some(0.0), Some(0.0)]);
        assert_eq!(z.ratio_between_groups, None);
        assert_eq!(z.ratio_to_overall, None);
        assert_eq!(z.difference_between_groups, Some(0.0));
    }

    #[test]
    fn binary_metrics_match_hand_counts() {
        // rows = true (0, 1), cols = pred (0, 1): TN 50, FP 10, FN 5, TP 35
        let m = ConfusionMatrix::from_rows(&[vec![50, 10], vec![5, 35]]).unwrap();
        let e = |k: MetricKind| k.eval(&m, Some(1)).unwrap();
        assert_eq!(e(MetricKind::Accuracy), 0.85);
        assert_eq!(e(MetricKind::SelectionRate), 0.45);
        assert_eq!(e(MetricKind::TruePositiveRate), 35.0 / 40.0);
        assert_eq!(e(MetricKind::FalsePositiveRate), 10.0 / 60.0);
        assert_eq!(e(MetricKind::Precision), 35.0 / 45.0);
        assert_eq!(
            e(MetricKind::BalancedAccuracy),
            (50.0 / 60.0 + 35.0 / 40.0) / 2.0
        );
        let no_pos = ConfusionMatrix::from_rows(&[vec![5, 1], vec![0, 0]]).unwrap();
        assert_eq!(MetricKind::TruePositiveRate.eval(&no_pos, Some(1)), None);
        assert_eq!(
            MetricKind::BalancedAccuracy.eval(&no_pos, Some(1)),
            Some(5.0 / 6.0)
        );
    }

    #[test]
    fn macro_f1_counts_absent_labels_as_zero() {
        let m = ConfusionMatrix::from_rows(&[vec![2, 0, 0], vec![0, 0, 0], vec![1, 0, 1]]).unwrap();
        let f0 = 4.0 / (2.0 + 3.0);
        let f2 = 2.0 / (2.0 + 1.0);
        assert!((macro_f1(&m) - (f0 + 0.0 + f2) / 3.0).abs() < 1e-15);
    }
}
