//! The audit report: a stable, documented, serialisable tree (see
//! `SCHEMA.md`), with breaches for exit-code gating.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::{AuditConfig, Limit};
use crate::headline::{Aif360Metrics, FairlearnMetrics, MulticlassDisparities};

/// Identifies the report layout; bumped on any incompatible change.
pub const SCHEMA: &str = "valor.fair.audit/1";

/// A map that keeps insertion order and serialises as a JSON object in that
/// order (groups in sorted value order, metrics in schema order).
#[derive(Clone, Debug, PartialEq)]
pub struct OrderedMap<V>(Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<V> OrderedMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        Self(Vec::new())
    }
    /// Appends an entry (keys are expected to be unique).
    pub fn push(&mut self, key: impl Into<String>, value: V) {
        self.0.push((key.into(), value));
    }
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    /// Mutable value of `key`.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    /// Entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
    /// Keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }
    /// Values in order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<V> FromIterator<(String, V)> for OrderedMap<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl<V: Serialize> Serialize for OrderedMap<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0));
                while let Some((k, val)) = a.next_entry::<String, V>()? {
                    v.push((k, val));
                }
                Ok(OrderedMap(v))
            }
        }
        d.deserialize_map(V2(PhantomData))
    }
}

/// A percentile bootstrap interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower end (the (1 − level)/2 quantile of the resampled values).
    pub lower: f64,
    /// Upper end (the (1 + level)/2 quantile).
    pub upper: f64,
    /// Resamples where the value was defined (a resample can lose a small
    /// group, leaving its rates undefined).
    pub resamples_used: u32,
}

impl Interval {
    /// Whether `x` lies in the closed interval.
    pub fn contains(&self, x: f64) -> bool {
        self.lower <= x && x <= self.upper
    }
}

/// Binary (two labels with a positive one) or multiclass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Two labels, one positive: fairlearn's and AIF360's binary metrics.
    Binary,
    /// Three or more labels: one-vs-rest metrics and multiclass disparities.
    Multiclass,
}

/// One metric, overall and per group, with fairlearn `MetricFrame`
/// aggregates (differences `max − min ≥ 0`, ratios `min / max ≤ 1`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    /// On every row.
    pub overall: Option<f64>,
    /// Per group key; `null` where undefined.
    pub by_group: OrderedMap<Option<f64>>,
    /// `group_max − group_min`.
    pub difference_between_groups: Option<f64>,
    /// Largest `|group − overall|`.
    pub difference_to_overall: Option<f64>,
    /// `group_min / group_max`.
    pub ratio_between_groups: Option<f64>,
    /// Smallest `group / overall`, each folded below 1.
    pub ratio_to_overall: Option<f64>,
    /// Smallest group value.
    pub group_min: Option<f64>,
    /// Largest group value.
    pub group_max: Option<f64>,
    /// Bootstrap intervals, when the audit ran a bootstrap (label-based
    /// metrics only: not `count`, `roc_auc`, `expected_calibration_error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<MetricIntervals>,
}

/// Bootstrap intervals of a [`MetricSummary`], field for field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricIntervals {
    pub overall: Option<Interval>,
    pub by_group: OrderedMap<Option<Interval>>,
    pub difference_between_groups: Option<Interval>,
    pub difference_to_overall: Option<Interval>,
    pub ratio_between_groups: Option<Interval>,
    pub ratio_to_overall: Option<Interval>,
    pub group_min: Option<Interval>,
    pub group_max: Option<Interval>,
}

/// A group of a spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// Values joined with `|`.
    pub key: String,
    /// One value per column of the spec.
    pub values: Vec<String>,
    /// Number of rows.
    pub count: u64,
    /// Whether the group is privileged (only when the spec has privileged groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
}

/// Confusion matrices: rows are true labels, columns predicted labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfusionSummary {
    /// Label order of rows and columns.
    pub labels: Vec<String>,
    pub overall: Vec<Vec<u64>>,
    pub by_group: OrderedMap<Vec<Vec<u64>>>,
}

/// A ROC curve, thinned for plotting (the AUC is computed exactly).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RocCurve {
    pub false_positive_rate: Vec<f64>,
    pub true_positive_rate: Vec<f64>,
}

/// ROC curves overall and per group (`null` for a group with one class).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RocSummary {
    pub overall: Option<RocCurve>,
    pub by_group: OrderedMap<Option<RocCurve>>,
}

/// One bin of a reliability curve (only non-empty bins are listed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Bin edges; a score belongs to the bin with `lower < score <= upper`
    /// (the first bin also takes 0), as scikit-learn's `calibration_curve`.
    pub lower: f64,
    pub upper: f64,
    pub count: u64,
    /// Mean score in the bin (`prob_pred`).
    pub mean_score: f64,
    /// Fraction of positive labels in the bin (`prob_true`).
    pub fraction_positive: f64,
}

/// Calibration by group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationSummary {
    /// Number of equal-width bins on [0, 1].
    pub bins: usize,
    pub overall: Vec<ReliabilityBin>,
    pub by_group: OrderedMap<Vec<ReliabilityBin>>,
}

/// The four-fifths (80%) rule of the US EEOC Uniform Guidelines: every
/// group's selection rate should be at least 4/5 of the highest group's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FourFifths {
    /// 0.8.
    pub threshold: f64,
    /// Lowest selection rate / highest selection rate (= fairlearn's
    /// `demographic_parity_ratio`).
    pub ratio: Option<f64>,
    /// `ratio >= threshold`.
    pub passes: Option<bool>,
    pub lowest_group: Option<String>,
    pub highest_group: Option<String>,
    /// Groups whose rate is below 4/5 of the highest.
    pub groups_below: Vec<String>,
    /// The classifier predicts one label for every row: the rule then
    /// passes trivially, which is not evidence of fairness.
    pub constant_classifier: bool,
}

/// The binary view "at least `label`" of an ordinal task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrdinalCut {
    /// `at_least_<label>`.
    pub name: String,
    /// The label at the cut.
    pub label: String,
    /// Binary metrics of the view (positive = at least `label`).
    pub metrics: OrderedMap<MetricSummary>,
    pub fairlearn: Option<FairlearnMetrics>,
    pub aif360: Option<Aif360Metrics>,
}

/// Everything about one group spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpecReport {
    /// Columns joined with `+`.
    pub name: String,
    pub columns: Vec<String>,
    /// Observed groups in sorted value order.
    pub groups: Vec<GroupInfo>,
    /// Metric name → summary (schema order).
    pub metrics: OrderedMap<MetricSummary>,
    pub confusion_matrix: ConfusionSummary,
    /// Binary tasks.
    pub fairlearn: Option<FairlearnMetrics>,
    /// Binary tasks with privileged groups declared for this spec.
    pub aif360: Option<Aif360Metrics>,
    /// Binary tasks.
    pub four_fifths: Option<FourFifths>,
    /// Multiclass tasks.
    pub multiclass: Option<MulticlassDisparities>,
    /// AIF360 between-group Theil index with every group of the spec as its
    /// own group (binary tasks).
    pub between_group_theil_index: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub between_group_theil_index_interval: Option<Interval>,
    /// Kamiran & Calders reweighing weight per group and true label.
    pub reweighing: OrderedMap<OrderedMap<Option<f64>>>,
    /// Ordinal audits: one binary view per cut.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ordinal: Vec<OrdinalCut>,
    /// ROC curves (binary tasks with scores).
    pub roc: Option<RocSummary>,
    /// Calibration (binary tasks with scores in [0, 1]).
    pub calibration: Option<CalibrationSummary>,
}

/// Numbers about the whole data, not a grouping.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetMetrics {
    /// AIF360 `theil_index` (generalized entropy, α = 1, of `b = ŷ − y + 1`).
    pub theil_index: Option<f64>,
    /// AIF360 `generalized_entropy_index(alpha=2)`.
    pub generalized_entropy_index_alpha2: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<OrderedMap<Option<Interval>>>,
    /// Rows per true label.
    pub true_label_counts: OrderedMap<u64>,
    /// Rows per predicted label.
    pub predicted_label_counts: OrderedMap<u64>,
}

/// What kind of warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WarningKind {
    /// A group has fewer rows than `min_group_size`.
    SmallGroup,
    /// Every row gets the same prediction.
    ConstantClassifier,
    /// A metric is undefined for a group (e.g. TPR without positives).
    UndefinedMetric,
    /// A declared known group does not occur in the data.
    DeclaredGroupAbsent,
    /// Scores outside [0, 1]: calibration skipped.
    ScoresOutOfRange,
    /// A threshold could not be evaluated (the metric is undefined).
    ThresholdNotEvaluated,
    /// Few bootstrap resamples had a defined value.
    BootstrapDegenerate,
    /// Score metrics computed from binned counts (`audit_counts`): ROC AUC
    /// within a stated bound of the exact value.
    ScoresBinned,
}

/// A warning about the data or the result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    pub kind: WarningKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub message: String,
}

/// A threshold that the audit found violated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Breach {
    /// The spec (`None` for a `dataset.` metric).
    pub spec: Option<String>,
    /// The metric path.
    pub metric: String,
    pub value: f64,
    pub limit: Limit,
    /// The bootstrap interval of the value, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.spec {
            write!(f, "{s}: ")?;
        }
        write!(
            f,
            "{} = {:.6} breaches {}",
            self.metric, self.value, self.limit
        )?;
        if let Some(i) = &self.interval {
            write!(f, " (CI {:.6} to {:.6})", i.lower, i.upper)?;
        }
        Ok(())
    }
}

/// Where the report came from; the CLI fills what it knows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// `valor-fair` version.
    pub crate_version: String,
    /// The predictions file, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// SHA-256 of the predictions file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sha256: Option<String>,
    /// Git commit of the tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
}

/// How the bootstrap was run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BootstrapInfo {
    pub resamples: usize,
    pub seed: u64,
    pub level: f64,
    /// `multinomial_cells`: each resample draws N rows with replacement,
    /// done exactly by drawing the counts of every (group combination, true,
    /// predicted) cell from Multinomial(N, observed shares).
    pub method: String,
}

/// The result of [`audit`](crate::audit). Serialises to the documented JSON
/// schema [`SCHEMA`] (keys in a fixed order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    /// [`SCHEMA`].
    pub schema: String,
    pub provenance: Provenance,
    pub task: Task,
    /// Label order of every matrix and per-class metric.
    pub labels: Vec<String>,
    /// Binary tasks: the positive label.
    pub positive_label: Option<String>,
    pub ordinal: bool,
    pub rows: u64,
    /// The configuration the audit ran with.
    pub config: AuditConfig,
    pub bootstrap: Option<BootstrapInfo>,
    pub dataset: DatasetMetrics,
    pub specs: Vec<SpecReport>,
    pub warnings: Vec<Warning>,
    pub breaches: Vec<Breach>,
}

impl AuditReport {
    /// Thresholds that were violated; non-empty means exit code 1.
    pub fn breaches(&self) -> &[Breach] {
        &self.breaches
    }
    /// Whether every threshold held.
    pub fn passed(&self) -> bool {
        self.breaches.is_empty()
    }
    /// A spec by name (`sex`, `sex+race`).
    pub fn spec(&self, name: &str) -> Option<&SpecReport> {
        self.specs.iter().find(|s| s.name == name)
    }
    /// Pretty JSON in schema order.
    pub fn to_json_pretty(&self) -> crate::Result<String> {
        serde_json::to_string_pretty(self).map_err(|source| crate::Error::Json {
            what: "audit report".into(),
            source,
        })
    }
    /// Parses a report written by [`to_json_pretty`](Self::to_json_pretty).
    pub fn from_json(text: &str) -> crate::Result<Self> {
        serde_json::from_str(text).map_err(|source| crate::Error::Json {
            what: "audit report".into(),
            source,
        })
    }
}

/// The result of looking a metric path up in a report.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    /// The path names a number of this report (`None`: undefined here).
    Value {
        value: Option<f64>,
        interval: Option<Interval>,
    },
    /// The path is known but this report has no such section (e.g. `aif360.`
    /// without privileged groups); the reason says how to get it.
    NotApplicable(String),
    /// No such path.
    Unknown,
}

fn entry_lookup(
    entries: &[(&'static str, Option<f64>)],
    intervals: Option<&OrderedMap<Option<Interval>>>,
    field: &str,
) -> Lookup {
    match entries.iter().find(|(n, _)| *n == field) {
        Some((_, value)) => Lookup::Value {
            value: *value,
            interval: intervals.and_then(|i| i.get(field).copied().flatten()),
        },
        None => Lookup::Unknown,
    }
}

fn metrics_lookup(metrics: &OrderedMap<MetricSummary>, rest: &str) -> Lookup {
    let Some((name, field)) = rest.rsplit_once('.') else {
        return Lookup::Unknown;
    };
    let Some(m) = metrics.get(name) else {
        return match name {
            "roc_auc" | "expected_calibration_error" => {
                Lookup::NotApplicable(format!("`{name}` needs a binary task with a score column"))
            }
            _ => Lookup::Unknown,
        };
    };
    let iv = m.intervals.as_ref();
    let (value, interval) = match field {
        "overall" => (m.overall, iv.and_then(|i| i.overall)),
        "difference_between_groups" => (
            m.difference_between_groups,
            iv.and_then(|i| i.difference_between_groups),
        ),
        "difference_to_overall" => (
            m.difference_to_overall,
            iv.and_then(|i| i.difference_to_overall),
        ),
        "ratio_between_groups" => (
            m.ratio_between_groups,
            iv.and_then(|i| i.ratio_between_groups),
        ),
        "ratio_to_overall" => (m.ratio_to_overall, iv.and_then(|i| i.ratio_to_overall)),
        "group_min" => (m.group_min, iv.and_then(|i| i.group_min)),
        "group_max" => (m.group_max, iv.and_then(|i| i.group_max)),
        _ => return Lookup::Unknown,
    };
    Lookup::Value { value, interval }
}

const FAIRLEARN_FIELDS: [&str; 8] = [
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference_worst_case",
    "equalized_odds_difference_mean",
    "equalized_odds_ratio_worst_case",
    "equalized_odds_ratio_mean",
    "equal_opportunity_difference",
    "equal_opportunity_ratio",
];

fn binary_sections_lookup(
    path: &str,
    metrics: &OrderedMap<MetricSummary>,
    fairlearn: Option<&FairlearnMetrics>,
    aif360: Option<&Aif360Metrics>,
) -> Option<Lookup> {
    if let Some(field) = path.strip_prefix("fairlearn.") {
        return Some(match fairlearn {
            Some(f) => entry_lookup(&f.entries(), f.intervals.as_ref(), field),
            None if FAIRLEARN_FIELDS.contains(&field) => Lookup::NotApplicable(
                "fairlearn's disparity functions need a binary task (two labels, one positive); \
                 use multiclass.* or --ordinal cuts"
                    .into(),
            ),
            None => Lookup::Unknown,
        });
    }
    if let Some(field) = path.strip_prefix("aif360.") {
        return Some(match aif360 {
            Some(a) => entry_lookup(&a.entries(), a.intervals.as_ref(), field),
            None if Aif360Metrics::default()
                .entries()
                .iter()
                .any(|(n, _)| *n == field) =>
            {
                Lookup::NotApplicable(
                    "AIF360's metrics need a binary task and a privileged group for the spec \
                     (--privileged COLUMN=VALUE)"
                        .into(),
                )
            }
            None => Lookup::Unknown,
        });
    }
    path.strip_prefix("metrics.")
        .map(|rest| metrics_lookup(metrics, rest))
}

impl SpecReport {
    /// Looks up a metric path (see `SCHEMA.md`): `fairlearn.<field>`,
    /// `aif360.<field>`, `multiclass.<field>`, `four_fifths.ratio`,
    /// `between_group_theil_index`, `metrics.<metric>.<aggregate>` and
    /// `ordinal.<cut name>.` followed by a `fairlearn.`, `aif360.` or
    /// `metrics.` path.
    pub fn lookup(&self, path: &str) -> Lookup {
        if let Some(l) = binary_sections_lookup(
            path,
            &self.metrics,
            self.fairlearn.as_ref(),
            self.aif360.as_ref(),
        ) {
            return l;
        }
        if let Some(field) = path.strip_prefix("multiclass.") {
            return match &self.multiclass {
                Some(m) => entry_lookup(&m.entries(), m.intervals.as_ref(), field),
                None if MulticlassDisparities::default()
                    .entries()
                    .iter()
                    .any(|(n, _)| *n == field) =>
                {
                    Lookup::NotApplicable("multiclass gaps need three or more labels".into())
                }
                None => Lookup::Unknown,
            };
        }
        if path == "four_fifths.ratio" {
            return match &self.four_fifths {
                Some(f) => Lookup::Value {
                    value: f.ratio,
                    interval: self
                        .fairlearn
                        .as_ref()
                        .and_then(|fl| fl.intervals.as_ref())
                        .and_then(|i| i.get("demographic_parity_ratio").copied().flatten()),
                },
                None => Lookup::NotApplicable("the four-fifths rule needs a binary task".into()),
            };
        }
        if path == "between_group_theil_index" {
            return Lookup::Value {
                value: self.between_group_theil_index,
                interval: self.between_group_theil_index_interval,
            };
        }
        if let Some(rest) = path.strip_prefix("ordinal.") {
            let Some((cut_name, inner)) = rest.split_once('.') else {
                return Lookup::Unknown;
            };
            if self.ordinal.is_empty() {
                return Lookup::NotApplicable(
                    "ordinal cuts need an ordinal audit of three or more labels (--ordinal)".into(),
                );
            }
            return match self.ordinal.iter().find(|c| c.name == cut_name) {
                Some(c) => binary_sections_lookup(
                    inner,
                    &c.metrics,
                    c.fairlearn.as_ref(),
                    c.aif360.as_ref(),
                )
                .unwrap_or(Lookup::Unknown),
                None => Lookup::Unknown,
            };
        }
        Lookup::Unknown
    }
}

impl DatasetMetrics {
    /// Looks up `dataset.theil_index` or `dataset.generalized_entropy_index_alpha2`.
    pub fn lookup(&self, path: &str) -> Lookup {
        let entries = [
            ("theil_index", self.theil_index),
            (
                "generalized_entropy_index_alpha2",
                self.generalized_entropy_index_alpha2,
            ),
        ];
        match path.strip_prefix("dataset.") {
            Some(field) => match entry_lookup(&entries, self.intervals.as_ref(), field) {
                Lookup::Value { value: None, .. } => {
                    Lookup::NotApplicable("the dataset indices need a binary task".into())
                }
                other => other,
            },
            None => Lookup::Unknown,
        }
    }
}
