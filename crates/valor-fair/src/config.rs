//! What to audit and what to check: group specs, privileged groups,
//! bootstrap, thresholds.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One way of grouping rows: a single group column, or the intersection of
/// several (groups are then the observed combinations of values, keyed by
/// the values joined with `|` in column order, as the fixtures key them).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupSpec {
    /// Group columns; more than one means their intersection.
    pub columns: Vec<String>,
}

impl GroupSpec {
    /// One column.
    pub fn single(column: &str) -> Self {
        Self {
            columns: vec![column.to_owned()],
        }
    }

    /// The intersection of several columns.
    pub fn intersection<S: AsRef<str>>(columns: &[S]) -> Self {
        Self {
            columns: columns.iter().map(|c| c.as_ref().to_owned()).collect(),
        }
    }

    /// Parses `sex` or `sex+race`.
    pub fn parse(text: &str) -> Result<Self> {
        let columns: Vec<String> = text.split('+').map(|c| c.trim().to_owned()).collect();
        if columns.iter().any(String::is_empty) {
            return Err(Error::InvalidConfig {
                setting: "group spec".into(),
                why: format!("`{text}` has an empty column name; write `a` or `a+b`"),
            });
        }
        Ok(Self { columns })
    }

    /// Each column on its own, then (when `intersect` and there are several)
    /// their intersection: what `--group a --group b [--intersect]` asks for.
    pub fn from_columns<S: AsRef<str>>(columns: &[S], intersect: bool) -> Vec<Self> {
        let mut v: Vec<Self> = columns.iter().map(|c| Self::single(c.as_ref())).collect();
        if intersect && columns.len() > 1 {
            v.push(Self::intersection(columns));
        }
        v
    }

    /// The spec's name: columns joined with `+`.
    pub fn name(&self) -> String {
        self.columns.join("+")
    }
}

/// Percentile bootstrap settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BootstrapConfig {
    /// Number of resamples (e.g. 1000).
    pub resamples: usize,
    /// Seed; the same seed gives the same intervals on any number of threads.
    pub seed: u64,
    /// Confidence level of the two-sided interval (e.g. 0.95).
    pub level: f64,
}

impl BootstrapConfig {
    /// `resamples` resamples at the 95% level.
    pub fn new(resamples: usize, seed: u64) -> Self {
        Self {
            resamples,
            seed,
            level: 0.95,
        }
    }
}

/// A bound on a metric.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// Breached when the value is above.
    AtMost(f64),
    /// Breached when the value is below.
    AtLeast(f64),
    /// Breached when the absolute value is above (for AIF360's signed
    /// differences).
    AbsAtMost(f64),
}

impl Limit {
    /// Whether `value` breaches the limit.
    pub fn breached_by(&self, value: f64) -> bool {
        match *self {
            Self::AtMost(x) => value > x,
            Self::AtLeast(x) => value < x,
            Self::AbsAtMost(x) => value.abs() > x,
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AtMost(x) => write!(f, "<= {x}"),
            Self::AtLeast(x) => write!(f, ">= {x}"),
            Self::AbsAtMost(x) => write!(f, "|x| <= {x}"),
        }
    }
}

/// Metric paths for thresholds. A path names a number of a
/// [`SpecReport`](crate::SpecReport) (checked on every audited spec) or, with
/// the `dataset.` prefix, of the whole data. See `SCHEMA.md`.
pub mod paths {
    /// fairlearn `demographic_parity_difference` (max − min selection rate).
    pub const DEMOGRAPHIC_PARITY_DIFFERENCE: &str = "fairlearn.demographic_parity_difference";
    /// fairlearn `demographic_parity_ratio` (min / max selection rate).
    pub const DEMOGRAPHIC_PARITY_RATIO: &str = "fairlearn.demographic_parity_ratio";
    /// fairlearn `equalized_odds_difference` (worst case).
    pub const EQUALIZED_ODDS_DIFFERENCE: &str = "fairlearn.equalized_odds_difference_worst_case";
    /// fairlearn `equalized_odds_ratio` (worst case).
    pub const EQUALIZED_ODDS_RATIO: &str = "fairlearn.equalized_odds_ratio_worst_case";
    /// fairlearn `equal_opportunity_difference`.
    pub const EQUAL_OPPORTUNITY_DIFFERENCE: &str = "fairlearn.equal_opportunity_difference";
    /// AIF360 `disparate_impact` (needs a privileged group).
    pub const DISPARATE_IMPACT: &str = "aif360.disparate_impact";
    /// AIF360 `statistical_parity_difference` (signed; use an absolute limit).
    pub const STATISTICAL_PARITY_DIFFERENCE: &str = "aif360.statistical_parity_difference";
    /// AIF360 `average_abs_odds_difference`.
    pub const AVERAGE_ABS_ODDS_DIFFERENCE: &str = "aif360.average_abs_odds_difference";
    /// Largest one-vs-rest selection-rate gap over classes (multiclass).
    pub const MULTICLASS_SELECTION_RATE_GAP: &str = "multiclass.selection_rate_gap";
    /// Largest one-vs-rest recall gap over classes (multiclass).
    pub const MULTICLASS_RECALL_GAP: &str = "multiclass.recall_gap";
    /// Largest conditional-confusion gap (multiclass).
    pub const CONDITIONAL_CONFUSION_GAP: &str = "multiclass.conditional_confusion_gap";
    /// AIF360 Theil index of the whole data.
    pub const THEIL_INDEX: &str = "dataset.theil_index";
}

/// A declared fairness target: the audit reports a breach (exit code 1 in
/// the CLI) when the metric at `metric` violates `limit` on any spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// Metric path, e.g. `fairlearn.demographic_parity_difference`,
    /// `aif360.disparate_impact`, `metrics.accuracy.difference_between_groups`,
    /// `multiclass.recall_gap`, `ordinal.at_least_balanced.fairlearn.demographic_parity_difference`,
    /// `dataset.theil_index`.
    pub metric: String,
    /// The bound.
    pub limit: Limit,
}

impl Threshold {
    /// `metric <= value`.
    pub fn at_most(metric: &str, value: f64) -> Self {
        Self {
            metric: metric.to_owned(),
            limit: Limit::AtMost(value),
        }
    }
    /// `metric >= value`.
    pub fn at_least(metric: &str, value: f64) -> Self {
        Self {
            metric: metric.to_owned(),
            limit: Limit::AtLeast(value),
        }
    }
    /// `|metric| <= value`.
    pub fn abs_at_most(metric: &str, value: f64) -> Self {
        Self {
            metric: metric.to_owned(),
            limit: Limit::AbsAtMost(value),
        }
    }
}

impl FromStr for Threshold {
    type Err = Error;

    /// Parses `PATH<=X`, `PATH>=X` or `|PATH|<=X`.
    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::ParseThreshold {
            text: text.to_owned(),
            why: why.to_owned(),
        };
        let (lhs, rhs, at_most) = if let Some((l, r)) = text.split_once("<=") {
            (l.trim(), r.trim(), true)
        } else if let Some((l, r)) = text.split_once(">=") {
            (l.trim(), r.trim(), false)
        } else {
            return Err(bad(
                "expected METRIC<=VALUE, METRIC>=VALUE or |METRIC|<=VALUE",
            ));
        };
        let value: f64 = rhs
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| bad("the bound is not a finite number"))?;
        if let Some(inner) = lhs.strip_prefix('|').and_then(|s| s.strip_suffix('|')) {
            if !at_most {
                return Err(bad("an absolute value takes an upper bound (|M|<=X)"));
            }
            return Ok(Self::abs_at_most(inner.trim(), value));
        }
        if lhs.is_empty() {
            return Err(bad("missing metric path"));
        }
        Ok(if at_most {
            Self::at_most(lhs, value)
        } else {
            Self::at_least(lhs, value)
        })
    }
}

/// How to audit. Construct with [`AuditConfig::default`] and set fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditConfig {
    /// Group specs to audit; empty means each group column on its own.
    pub specs: Vec<GroupSpec>,
    /// Privileged groups for AIF360's metrics, by spec name (`sex`,
    /// `sex+race`) → group keys (`Male`, `Male|White`). Every other group of
    /// the spec is unprivileged.
    pub privileged: BTreeMap<String, Vec<String>>,
    /// The positive (favourable) label of a binary task; `None` recognises
    /// 0/1, -1/1 and false/true.
    pub positive_label: Option<String>,
    /// Labels are ordered (in label-set order): also report the binary view
    /// "at least label i" at each cut.
    pub ordinal: bool,
    /// Group columns whose every value is known: a value outside the list is
    /// an error, a listed value absent from the data a warning.
    pub known_groups: BTreeMap<String, Vec<String>>,
    /// Groups with fewer rows than this get a warning.
    pub min_group_size: u64,
    /// Number of equal-width bins on [0, 1] for calibration (ECE and the
    /// reliability curve).
    pub ece_bins: usize,
    /// Percentile bootstrap intervals for every label-based metric and
    /// disparity; `None` for none.
    pub bootstrap: Option<BootstrapConfig>,
    /// Fairness targets to check.
    pub thresholds: Vec<Threshold>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            specs: Vec::new(),
            privileged: BTreeMap::new(),
            positive_label: None,
            ordinal: false,
            known_groups: BTreeMap::new(),
            min_group_size: 30,
            ece_bins: 10,
            bootstrap: None,
            thresholds: Vec::new(),
        }
    }
}

impl AuditConfig {
    /// Declares `group` (a key of `spec`) privileged.
    pub fn privilege(mut self, spec: &str, group: &str) -> Self {
        self.privileged
            .entry(spec.to_owned())
            .or_default()
            .push(group.to_owned());
        self
    }

    /// Checks the settings (bins, bootstrap, finite threshold bounds);
    /// `audit` calls it too.
    pub fn validate(&self) -> Result<()> {
        if self.ece_bins == 0 {
            return Err(Error::InvalidConfig {
                setting: "ece_bins".into(),
                why: "needs at least one bin".into(),
            });
        }
        if let Some(b) = &self.bootstrap {
            if b.resamples == 0 {
                return Err(Error::InvalidConfig {
                    setting: "bootstrap.resamples".into(),
                    why: "needs at least one resample".into(),
                });
            }
            if b.resamples > MAX_RESAMPLES {
                return Err(Error::InvalidConfig {
                    setting: "bootstrap.resamples".into(),
                    why: format!(
                        "{} is more than {MAX_RESAMPLES}; intervals do not need that many",
                        b.resamples
                    ),
                });
            }
            if !(b.level > 0.0 && b.level < 1.0) {
                return Err(Error::InvalidConfig {
                    setting: "bootstrap.level".into(),
                    why: format!("{} is not in (0, 1)", b.level),
                });
            }
        }
        for t in &self.thresholds {
            let bound = match t.limit {
                Limit::AtMost(x) | Limit::AtLeast(x) | Limit::AbsAtMost(x) => x,
            };
            if !bound.is_finite() {
                return Err(Error::InvalidConfig {
                    setting: format!("threshold on {}", t.metric),
                    why: format!("the bound {bound} is not a finite number"),
                });
            }
        }
        Ok(())
    }
}

/// The most bootstrap resamples an audit takes (each keeps one value per
/// metric and group).
pub const MAX_RESAMPLES: usize = 1_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse() {
        let t: Threshold = "fairlearn.demographic_parity_difference<=0.1"
            .parse()
            .unwrap();
        assert_eq!(
            t,
            Threshold::at_most(paths::DEMOGRAPHIC_PARITY_DIFFERENCE, 0.1)
        );
        let t: Threshold = "aif360.disparate_impact >= 0.8".parse().unwrap();
        assert_eq!(t.limit, Limit::AtLeast(0.8));
        let t: Threshold = "|aif360.statistical_parity_difference|<=0.05"
            .parse()
            .unwrap();
        assert_eq!(t.limit, Limit::AbsAtMost(0.05));
        assert!("x < 3".parse::<Threshold>().is_err());
        assert!("x <= nan".parse::<Threshold>().is_err());
    }

    #[test]
    fn specs_from_columns() {
        let s = GroupSpec::from_columns(&["sex", "race"], true);
        let names: Vec<String> = s.iter().map(GroupSpec::name).collect();
        assert_eq!(names, ["sex", "race", "sex+race"]);
        assert_eq!(GroupSpec::parse("sex+race").unwrap(), s[2]);
        assert!(GroupSpec::parse("sex+").is_err());
    }
}
