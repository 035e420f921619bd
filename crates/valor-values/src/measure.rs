//! Measurement: from evaluation results to a value [`Profile`].
//!
//! [`Evaluation`] is a plain record of numbers (filled by `valor-train` from
//! `valor-fair` and its own timers); a [`Measure`], chosen per dimension in
//! `values.toml`, turns it into a score in `[0, 1]`. A measure whose input
//! was not computed yields [`Score::NotMeasured`], never an invented number.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::space::{ACCURACY, EFFICIENCY, FAIRNESS, Profile, Score, TRANSPARENCY};
use crate::spec::{EfficiencyBudget, UnmeasuredPolicy, ValuesSpec};

/// Evaluation results of one model on one split: plain numbers, so this crate
/// does not depend on the crates that compute them.
///
/// Conventions: fairness differences follow fairlearn (max - min over groups,
/// `>= 0`); ratios are min / max (`<= 1`); `disparate_impact_min_ratio` is
/// AIF360's disparate impact folded into `[0, 1]`, `min(DI, 1 / DI)`.
/// `None` means "not computed" (e.g. no sensitive attribute was given, or
/// explanations were not evaluated).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    /// Fraction of correct predictions.
    pub accuracy: f64,
    /// Unweighted mean of the per-class F1 scores.
    pub macro_f1: f64,
    /// Unweighted mean of the per-class recalls.
    pub balanced_accuracy: f64,
    /// fairlearn `demographic_parity_difference` (max - min selection rate).
    #[serde(default)]
    pub demographic_parity_difference: Option<f64>,
    /// fairlearn `demographic_parity_ratio` (min / max selection rate).
    #[serde(default)]
    pub demographic_parity_ratio: Option<f64>,
    /// fairlearn `equalized_odds_difference` (larger of the TPR and FPR gaps).
    #[serde(default)]
    pub equalized_odds_difference: Option<f64>,
    /// fairlearn `equalized_odds_ratio` (smaller of the TPR and FPR ratios).
    #[serde(default)]
    pub equalized_odds_ratio: Option<f64>,
    /// AIF360 disparate impact folded into `[0, 1]`: `min(DI, 1 / DI)`.
    #[serde(default)]
    pub disparate_impact_min_ratio: Option<f64>,
    /// Explanation faithfulness in `[0, 1]` (`None` until explanations are
    /// evaluated).
    #[serde(default)]
    pub faithfulness: Option<f64>,
    /// Measured inference throughput.
    #[serde(default)]
    pub examples_per_s: Option<f64>,
    /// Measured median latency of one prediction.
    #[serde(default)]
    pub latency_ms_p50: Option<f64>,
    /// Floating-point operations of one forward pass per example, in GFLOP,
    /// counted from the model's configuration and the examples' token
    /// count (no timing: the same model and data give the same number).
    #[serde(default)]
    pub gflops_per_example: Option<f64>,
    /// Bytes of the model's weights as stored (a quantised model's are
    /// fewer), in MB (10^6 bytes).
    #[serde(default)]
    pub weight_mb: Option<f64>,
    /// Other named metrics, for custom dimensions (`extra.<name>`).
    #[serde(default)]
    pub extra: BTreeMap<String, f64>,
}

/// A field of [`Evaluation`] that a [`Measure`] reads; used to check up
/// front which dimensions can be measured
/// ([`ValuesSpec::check_available`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EvalField {
    /// [`Evaluation::accuracy`].
    Accuracy,
    /// [`Evaluation::macro_f1`].
    MacroF1,
    /// [`Evaluation::balanced_accuracy`].
    BalancedAccuracy,
    /// [`Evaluation::demographic_parity_difference`].
    DemographicParityDifference,
    /// [`Evaluation::demographic_parity_ratio`].
    DemographicParityRatio,
    /// [`Evaluation::equalized_odds_difference`].
    EqualizedOddsDifference,
    /// [`Evaluation::equalized_odds_ratio`].
    EqualizedOddsRatio,
    /// [`Evaluation::disparate_impact_min_ratio`].
    DisparateImpactMinRatio,
    /// [`Evaluation::faithfulness`].
    Faithfulness,
    /// [`Evaluation::examples_per_s`].
    ExamplesPerS,
    /// [`Evaluation::latency_ms_p50`].
    LatencyMsP50,
    /// [`Evaluation::gflops_per_example`].
    GflopsPerExample,
    /// [`Evaluation::weight_mb`].
    WeightMb,
    /// An entry of [`Evaluation::extra`].
    Extra(String),
}

impl EvalField {
    /// The field's name as written in [`Evaluation`] (`extra.<name>` for
    /// extras).
    pub fn name(&self) -> String {
        match self {
            Self::Accuracy => "accuracy".into(),
            Self::MacroF1 => "macro_f1".into(),
            Self::BalancedAccuracy => "balanced_accuracy".into(),
            Self::DemographicParityDifference => "demographic_parity_difference".into(),
            Self::DemographicParityRatio => "demographic_parity_ratio".into(),
            Self::EqualizedOddsDifference => "equalized_odds_difference".into(),
            Self::EqualizedOddsRatio => "equalized_odds_ratio".into(),
            Self::DisparateImpactMinRatio => "disparate_impact_min_ratio".into(),
            Self::Faithfulness => "faithfulness".into(),
            Self::ExamplesPerS => "examples_per_s".into(),
            Self::LatencyMsP50 => "latency_ms_p50".into(),
            Self::GflopsPerExample => "gflops_per_example".into(),
            Self::WeightMb => "weight_mb".into(),
            Self::Extra(name) => format!("extra.{name}"),
        }
    }

    /// The field's value in `eval` (`None` when not computed).
    pub fn get(&self, eval: &Evaluation) -> Option<f64> {
        match self {
            Self::Accuracy => Some(eval.accuracy),
            Self::MacroF1 => Some(eval.macro_f1),
            Self::BalancedAccuracy => Some(eval.balanced_accuracy),
            Self::DemographicParityDifference => eval.demographic_parity_difference,
            Self::DemographicParityRatio => eval.demographic_parity_ratio,
            Self::EqualizedOddsDifference => eval.equalized_odds_difference,
            Self::EqualizedOddsRatio => eval.equalized_odds_ratio,
            Self::DisparateImpactMinRatio => eval.disparate_impact_min_ratio,
            Self::Faithfulness => eval.faithfulness,
            Self::ExamplesPerS => eval.examples_per_s,
            Self::LatencyMsP50 => eval.latency_ms_p50,
            Self::GflopsPerExample => eval.gflops_per_example,
            Self::WeightMb => eval.weight_mb,
            Self::Extra(name) => eval.extra.get(name).copied(),
        }
    }
}

/// How a dimension is scored from an [`Evaluation`]. Every score lies in
/// `[0, 1]`, higher is better. Names as written in `values.toml`:
///
/// | name | score | for |
/// |------|-------|-----|
/// | `accuracy` | accuracy | accuracy |
/// | `macro_f1` | macro-F1 | accuracy |
/// | `balanced_accuracy` | balanced accuracy | accuracy |
/// | `1-demographic_parity_difference` | `1 - DPD` | fairness |
/// | `demographic_parity_ratio` | `DPR` | fairness |
/// | `1-equalized_odds_difference` | `1 - EOD` | fairness |
/// | `equalized_odds_ratio` | `EOR` | fairness |
/// | `disparate_impact_min_ratio` | `min(DI, 1/DI)` | fairness |
/// | `faithfulness` | faithfulness | transparency |
/// | `throughput` | `min(1, examples_per_s / budget_examples_per_s)` | efficiency |
/// | `latency` | `min(1, budget_latency_ms / latency_ms_p50)` (1 when the latency is 0) | efficiency |
/// | `cost` | mean of `min(1, budget_gflops_per_example / gflops_per_example)` and `min(1, budget_weight_mb / weight_mb)` | efficiency |
/// | `extra.<name>` | `extra[name]` | any |
/// | `1-extra.<name>` | `1 - extra[name]` | any |
///
/// A built-in dimension accepts only the measures of its row (and extras); a
/// custom dimension accepts any. Inputs other than throughput, latency and
/// cost must lie in `[0, 1]`; those must be `>= 0`. `cost` is the stable
/// efficiency measure (the default): both of its inputs are counted, not
/// timed, so two measurements of one model agree exactly and a candidate is
/// never chosen for a lucky timing pass; `throughput` and `latency` are
/// timings. Anything
/// else is an error naming the field, never silently clamped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Measure {
    /// `accuracy`.
    Accuracy,
    /// `macro_f1`.
    MacroF1,
    /// `balanced_accuracy`.
    BalancedAccuracy,
    /// `1-demographic_parity_difference`.
    OneMinusDemographicParityDifference,
    /// `demographic_parity_ratio`.
    DemographicParityRatio,
    /// `1-equalized_odds_difference`.
    OneMinusEqualizedOddsDifference,
    /// `equalized_odds_ratio`.
    EqualizedOddsRatio,
    /// `disparate_impact_min_ratio`.
    DisparateImpactMinRatio,
    /// `faithfulness`.
    Faithfulness,
    /// `throughput`.
    Throughput,
    /// `latency`.
    Latency,
    /// `cost`: FLOPs and weight bytes per prediction against their budgets.
    Cost,
    /// `extra.<name>` or `1-extra.<name>`.
    Extra {
        /// Key in [`Evaluation::extra`].
        name: String,
        /// Whether the score is `1 - value`.
        one_minus: bool,
    },
}

const FIXED: [Measure; 12] = [
    Measure::Accuracy,
    Measure::MacroF1,
    Measure::BalancedAccuracy,
    Measure::OneMinusDemographicParityDifference,
    Measure::DemographicParityRatio,
    Measure::OneMinusEqualizedOddsDifference,
    Measure::EqualizedOddsRatio,
    Measure::DisparateImpactMinRatio,
    Measure::Faithfulness,
    Measure::Throughput,
    Measure::Latency,
    Measure::Cost,
];

impl Measure {
    /// The name used in `values.toml`.
    pub fn name(&self) -> String {
        match self {
            Self::Accuracy => "accuracy".into(),
            Self::MacroF1 => "macro_f1".into(),
            Self::BalancedAccuracy => "balanced_accuracy".into(),
            Self::OneMinusDemographicParityDifference => "1-demographic_parity_difference".into(),
            Self::DemographicParityRatio => "demographic_parity_ratio".into(),
            Self::OneMinusEqualizedOddsDifference => "1-equalized_odds_difference".into(),
            Self::EqualizedOddsRatio => "equalized_odds_ratio".into(),
            Self::DisparateImpactMinRatio => "disparate_impact_min_ratio".into(),
            Self::Faithfulness => "faithfulness".into(),
            Self::Throughput => "throughput".into(),
            Self::Latency => "latency".into(),
            Self::Cost => "cost".into(),
            Self::Extra { name, one_minus } => {
                format!("{}extra.{name}", if *one_minus { "1-" } else { "" })
            }
        }
    }

    /// Parses a name from `values.toml`; `None` for an unknown name.
    pub fn parse(s: &str) -> Option<Self> {
        if let Some(m) = FIXED.iter().find(|m| m.name() == s) {
            return Some(m.clone());
        }
        let (one_minus, rest) = match s.strip_prefix("1-") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let name = rest.strip_prefix("extra.")?;
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        valid.then(|| Self::Extra {
            name: name.to_owned(),
            one_minus,
        })
    }

    /// Every name [`Measure::parse`] accepts, for error messages.
    pub fn expected_names() -> String {
        let mut names: Vec<String> = FIXED.iter().map(Measure::name).collect();
        names.push("extra.<name>".into());
        names.push("1-extra.<name>".into());
        names.join(", ")
    }

    /// The default measure of a built-in dimension.
    pub fn default_for(dimension: &str) -> Option<Self> {
        match dimension {
            FAIRNESS => Some(Self::OneMinusEqualizedOddsDifference),
            ACCURACY => Some(Self::MacroF1),
            TRANSPARENCY => Some(Self::Faithfulness),
            EFFICIENCY => Some(Self::Cost),
            _ => None,
        }
    }

    /// The measures a built-in dimension accepts besides extras; `None` for a
    /// custom dimension (which accepts any).
    pub fn allowed_for(dimension: &str) -> Option<Vec<Self>> {
        let fixed = match dimension {
            FAIRNESS => vec![
                Self::OneMinusEqualizedOddsDifference,
                Self::OneMinusDemographicParityDifference,
                Self::EqualizedOddsRatio,
                Self::DemographicParityRatio,
                Self::DisparateImpactMinRatio,
            ],
            ACCURACY => vec![Self::MacroF1, Self::BalancedAccuracy, Self::Accuracy],
            TRANSPARENCY => vec![Self::Faithfulness],
            EFFICIENCY => vec![Self::Cost, Self::Throughput, Self::Latency],
            _ => return None,
        };
        Some(fixed)
    }

    /// Whether this measure may score `dimension`.
    pub fn fits(&self, dimension: &str) -> bool {
        match (self, Self::allowed_for(dimension)) {
            (Self::Extra { .. }, _) | (_, None) => true,
            (m, Some(allowed)) => allowed.contains(m),
        }
    }

    /// The [`Evaluation`] field this measure reads.
    pub fn input(&self) -> EvalField {
        match self {
            Self::Accuracy => EvalField::Accuracy,
            Self::MacroF1 => EvalField::MacroF1,
            Self::BalancedAccuracy => EvalField::BalancedAccuracy,
            Self::OneMinusDemographicParityDifference => EvalField::DemographicParityDifference,
            Self::DemographicParityRatio => EvalField::DemographicParityRatio,
            Self::OneMinusEqualizedOddsDifference => EvalField::EqualizedOddsDifference,
            Self::EqualizedOddsRatio => EvalField::EqualizedOddsRatio,
            Self::DisparateImpactMinRatio => EvalField::DisparateImpactMinRatio,
            Self::Faithfulness => EvalField::Faithfulness,
            Self::Throughput => EvalField::ExamplesPerS,
            Self::Latency => EvalField::LatencyMsP50,
            Self::Cost => EvalField::GflopsPerExample,
            Self::Extra { name, .. } => EvalField::Extra(name.clone()),
        }
    }

    /// The formula, for reports.
    pub fn formula(&self) -> String {
        match self {
            Self::OneMinusDemographicParityDifference | Self::OneMinusEqualizedOddsDifference => {
                format!("1 - {}", self.input().name())
            }
            Self::Throughput => "min(1, examples_per_s / budget_examples_per_s)".into(),
            Self::Latency => "min(1, budget_latency_ms / latency_ms_p50)".into(),
            Self::Cost => "(min(1, budget_gflops_per_example / gflops_per_example) + min(1, budget_weight_mb / weight_mb)) / 2".into(),
            Self::Extra {
                name,
                one_minus: true,
            } => format!("1 - extra.{name}"),
            _ => self.input().name(),
        }
    }

    /// Scores `dimension` from `eval`: `Ok(None)` when the input was not
    /// computed, an error when it is outside its range or a needed budget is
    /// missing.
    pub fn score(
        &self,
        dimension: &str,
        eval: &Evaluation,
        budget: &EfficiencyBudget,
    ) -> Result<Option<f64>> {
        let field = self.input();
        let Some(value) = field.get(eval) else {
            return Ok(None);
        };
        let out_of_range = |expected: &'static str| Error::MetricOutOfRange {
            dimension: dimension.to_owned(),
            field: field.name(),
            value,
            expected,
        };
        let budget_of = |b: Option<f64>, key: &'static str| match b {
            Some(b) if b > 0.0 && b.is_finite() => Ok(b),
            _ => Err(Error::MissingBudget {
                file: "values.toml".into(),
                dimension: dimension.to_owned(),
                measure: self.name(),
                key,
            }),
        };
        match self {
            Self::Throughput => {
                if !(value.is_finite() && value >= 0.0) {
                    return Err(out_of_range("[0, inf)"));
                }
                let b = budget_of(budget.budget_examples_per_s, "budget_examples_per_s")?;
                Ok(Some((value / b).min(1.0)))
            }
            Self::Cost => {
                let Some(mb) = eval.weight_mb else {
                    return Ok(None);
                };
                for (field, v) in [
                    (EvalField::GflopsPerExample, value),
                    (EvalField::WeightMb, mb),
                ] {
                    if !(v.is_finite() && v >= 0.0) {
                        return Err(Error::MetricOutOfRange {
                            dimension: dimension.to_owned(),
                            field: field.name(),
                            value: v,
                            expected: "[0, inf)",
                        });
                    }
                }
                let flops_budget = budget_of(
                    budget.budget_gflops_per_example,
                    "budget_gflops_per_example",
                )?;
                let mb_budget = budget_of(budget.budget_weight_mb, "budget_weight_mb")?;
                let ratio = |b: f64, v: f64| if v == 0.0 { 1.0 } else { (b / v).min(1.0) };
                Ok(Some(
                    0.5 * (ratio(flops_budget, value) + ratio(mb_budget, mb)),
                ))
            }
            Self::Latency => {
                if !(value.is_finite() && value >= 0.0) {
                    return Err(out_of_range("[0, inf)"));
                }
                let b = budget_of(budget.budget_latency_ms, "budget_latency_ms")?;
                Ok(Some(if value == 0.0 {
                    1.0
                } else {
                    (b / value).min(1.0)
                }))
            }
            _ => {
                if !(0.0..=1.0).contains(&value) {
                    return Err(out_of_range("[0, 1]"));
                }
                let one_minus = matches!(
                    self,
                    Self::OneMinusDemographicParityDifference
                        | Self::OneMinusEqualizedOddsDifference
                        | Self::Extra {
                            one_minus: true,
                            ..
                        }
                );
                Ok(Some(if one_minus { 1.0 - value } else { value }))
            }
        }
    }
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Why a dimension whose input is `field` has no score.
pub(crate) fn not_computed_reason(field: &EvalField) -> String {
    match field {
        EvalField::Faithfulness => {
            "faithfulness was not computed (evaluate explanations to measure transparency)".into()
        }
        EvalField::GflopsPerExample | EvalField::WeightMb => format!(
            "{} was not computed (the model's FLOPs and weight bytes per prediction)",
            field.name()
        ),
        EvalField::ExamplesPerS | EvalField::LatencyMsP50 => {
            format!(
                "{} was not measured (run the throughput benchmark)",
                field.name()
            )
        }
        EvalField::Extra(_) => format!("{} was not reported by the evaluation", field.name()),
        _ => format!(
            "{} was not computed (fairness metrics need a sensitive-attribute column)",
            field.name()
        ),
    }
}

/// Measures the value profile of `eval` under `spec`: for each target
/// dimension, its [`Measure`] applied to `eval`.
///
/// A dimension whose input is `None` is [`Score::NotMeasured`] with the
/// reason when `unmeasured = "exclude"`, and an [`Error::NotMeasured`] when
/// `unmeasured = "error"`. If no dimension can be measured at all, the result
/// is [`Error::NothingMeasured`].
pub fn measure(eval: &Evaluation, spec: &ValuesSpec) -> Result<Profile> {
    let mut profile = Profile::new();
    for dim in spec.dimensions() {
        let name = &dim.dimension.name;
        let score = match dim.measure.score(name, eval, spec.efficiency())? {
            Some(v) => Score::Measured(v),
            None => {
                let reason = not_computed_reason(&dim.measure.input());
                if spec.unmeasured() == UnmeasuredPolicy::Error {
                    return Err(Error::NotMeasured {
                        dimension: name.clone(),
                        reason,
                    });
                }
                Score::NotMeasured { reason }
            }
        };
        profile.insert(name.clone(), score);
    }
    if profile.iter().all(|(_, s)| s.value().is_none()) {
        let reasons = profile
            .not_measured()
            .iter()
            .map(|(k, r)| format!("{k}: {r}"))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Error::NothingMeasured { reasons });
    }
    Ok(profile)
}
