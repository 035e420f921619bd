//! `values.toml`: parsing and validation of the value target and search
//! settings. The format is documented key by key in the default file,
//! [`default_values_toml`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::measure::{EvalField, Measure, not_computed_reason};
use crate::space::{
    Dimension, DistanceMetric, Profile, ValueSpace, ValueVector, builtin_dimension,
    builtin_dimensions, validate_dimension_name,
};

/// The default `values.toml`, documented key by key (the file
/// `crates/valor-values/values.toml`).
pub fn default_values_toml() -> &'static str {
    include_str!("../values.toml")
}

/// What to do with a dimension that cannot be measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnmeasuredPolicy {
    /// Report it as NOT MEASURED and leave it out of every distance.
    #[default]
    Exclude,
    /// Fail with [`Error::NotMeasured`].
    Error,
}

impl UnmeasuredPolicy {
    /// The name used in `values.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Exclude => "exclude",
            Self::Error => "error",
        }
    }
}

/// Which candidate becomes `V_T`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SelectRule {
    /// Nearest to `V_D` among the Pareto front.
    #[default]
    ParetoNearest,
    /// Nearest to `V_D` among all candidates.
    Nearest,
}

impl SelectRule {
    /// The name used in `values.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ParetoNearest => "pareto_nearest",
            Self::Nearest => "nearest",
        }
    }
}

impl fmt::Display for SelectRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Budgets for the efficiency measures (`[efficiency]`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct EfficiencyBudget {
    /// Throughput that scores 1 (`throughput` measure).
    pub budget_examples_per_s: Option<f64>,
    /// Median latency that scores 1 (`latency` measure).
    pub budget_latency_ms: Option<f64>,
    /// GFLOP per example that scores 1 on its half of `cost`.
    #[serde(default)]
    pub budget_gflops_per_example: Option<f64>,
    /// Weight MB that score 1 on its half of `cost`.
    #[serde(default)]
    pub budget_weight_mb: Option<f64>,
}

/// Search settings (`[search]`), validated. See [`crate::Planner`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchConfig {
    /// Target-ladder step, in `(0, 1]`.
    pub alpha: f64,
    /// Solver step, in `(0, 2)`.
    pub eta: f64,
    /// Distance at which `V_D` counts as reached, `>= 0`.
    pub tolerance: f64,
    /// Most candidates trained and measured (baseline not counted), `>= 1`.
    pub max_candidates: usize,
    /// Candidates in a row without progress before giving up, `>= 1`.
    pub patience: usize,
    /// Whether to try reweighing.
    pub reweighing: bool,
    /// Whether to try post-processing thresholds.
    pub postprocess_thresholds: bool,
    /// How `V_T` is chosen.
    pub select: SelectRule,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            alpha: 0.5,
            eta: 0.5,
            tolerance: 0.01,
            max_candidates: 12,
            patience: 3,
            reweighing: true,
            postprocess_thresholds: true,
            select: SelectRule::ParetoNearest,
        }
    }
}

/// The differentiable fairness penalty a training run adds to its loss
/// (`[train] fairness_penalty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FairnessPenalty {
    /// Gap across groups of the mean predicted probability of each class.
    DemographicParity,
    /// The same gap within each true label.
    EqualizedOdds,
}

impl FairnessPenalty {
    /// The name used in `values.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Self::DemographicParity => "demographic_parity",
            Self::EqualizedOdds => "equalized_odds",
        }
    }
}

/// Settings `valor train --values FILE` takes from the file (`[train]`),
/// validated; `None` where the file does not set them. Command-line flags
/// override them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TrainSettings {
    /// Weight λ of the fairness penalty in the training loss, `>= 0`.
    pub fairness_lambda: Option<f64>,
    /// Which penalty λ weighs.
    pub fairness_penalty: Option<FairnessPenalty>,
    /// Fairness constraints for constrained training, as written
    /// (`"demographic_parity <= 0.05"`; `valor train` parses them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
}

/// One target dimension of a [`ValuesSpec`].
#[derive(Debug, Clone, PartialEq)]
pub struct DimensionSpec {
    /// Name and description.
    pub dimension: Dimension,
    /// The target score (coordinate of `V_D`), in `[0, 1]`.
    pub target: f64,
    /// Weight in distances, `>= 0`.
    pub weight: f64,
    /// How it is scored.
    pub measure: Measure,
}

/// A validated `values.toml`: the target `V_D`, weights, distance metric,
/// measures, unmeasured-dimension policy, efficiency budgets and search
/// settings. Dimensions are ordered by name.
#[derive(Debug, Clone, PartialEq)]
pub struct ValuesSpec {
    origin: String,
    dims: Vec<DimensionSpec>,
    distance: DistanceMetric,
    unmeasured: UnmeasuredPolicy,
    efficiency: EfficiencyBudget,
    search: SearchConfig,
    train: TrainSettings,
    /// Keys that are read but no longer mean anything, with what to do.
    warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    distance: Option<String>,
    unmeasured: Option<String>,
    #[serde(default)]
    target: BTreeMap<String, f64>,
    #[serde(default)]
    weights: BTreeMap<String, f64>,
    #[serde(default)]
    measure: BTreeMap<String, String>,
    #[serde(default)]
    dimensions: BTreeMap<String, RawDimension>,
    #[serde(default)]
    efficiency: RawEfficiency,
    #[serde(default)]
    search: RawSearch,
    #[serde(default)]
    train: RawTrain,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTrain {
    fairness_lambda: Option<f64>,
    fairness_penalty: Option<String>,
    #[serde(default)]
    constraints: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDimension {
    description: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEfficiency {
    budget_examples_per_s: Option<f64>,
    budget_latency_ms: Option<f64>,
    budget_gflops_per_example: Option<f64>,
    budget_weight_mb: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSearch {
    alpha: Option<f64>,
    eta: Option<f64>,
    tolerance: Option<f64>,
    max_candidates: Option<usize>,
    patience: Option<usize>,
    /// Retired: `valor remodel` searches constraint bounds, not a λ grid.
    /// Accepted (any value) with a warning so older files still load.
    lambdas: Option<toml::Value>,
    reweighing: Option<bool>,
    postprocess_thresholds: Option<bool>,
    select: Option<String>,
}

impl Default for ValuesSpec {
    /// The spec of [`default_values_toml`].
    fn default() -> Self {
        Self::parse(default_values_toml(), "<built-in values.toml>")
            .expect("the built-in values.toml is valid (pinned by a unit test)")
    }
}

impl ValuesSpec {
    /// Reads and validates `path`.
    pub fn from_path(path: &Path) -> Result<Self> {
        let text =
            valor_fsio::read_to_string_capped(path, 1 << 20).map_err(|source| Error::Read {
                path: path.to_owned(),
                source,
            })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates `text`; `origin` (usually the file path) appears
    /// in every error message.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let file = origin.to_owned();
        let raw: RawSpec = toml::from_str(text).map_err(|e| Error::Parse {
            file: file.clone(),
            message: e.to_string().trim_end().to_owned(),
        })?;

        let distance = match &raw.distance {
            None => DistanceMetric::default(),
            Some(s) => s.parse().map_err(|_| Error::UnknownName {
                file: file.clone(),
                what: "distance metric",
                key: "distance".into(),
                value: s.clone(),
                expected: DistanceMetric::expected_names(),
            })?,
        };
        let unmeasured = match raw.unmeasured.as_deref() {
            None => UnmeasuredPolicy::default(),
            Some("exclude") => UnmeasuredPolicy::Exclude,
            Some("error") => UnmeasuredPolicy::Error,
            Some(other) => {
                return Err(Error::UnknownName {
                    file,
                    what: "policy",
                    key: "unmeasured".into(),
                    value: other.to_owned(),
                    expected: "exclude, error".into(),
                });
            }
        };

        // Custom dimensions.
        let mut custom = BTreeMap::new();
        for (name, d) in &raw.dimensions {
            if builtin_dimension(name).is_some() {
                return Err(Error::InvalidSetting {
                    file,
                    key: format!("dimensions.{name}"),
                    value: format!("{:?}", d.description),
                    reason: "it is a built-in dimension and cannot be redeclared".into(),
                });
            }
            validate_dimension_name(name).map_err(|e| Error::InvalidSetting {
                file: file.clone(),
                key: format!("dimensions.{name}"),
                value: format!("{name:?}"),
                reason: e.to_string(),
            })?;
            if d.description.trim().is_empty() {
                return Err(Error::InvalidSetting {
                    file,
                    key: format!("dimensions.{name}.description"),
                    value: "\"\"".into(),
                    reason: "describe what the dimension means".into(),
                });
            }
            custom.insert(
                name.clone(),
                Dimension::new(name.clone(), d.description.clone()),
            );
        }
        let known: Vec<String> = builtin_dimensions()
            .iter()
            .map(|d| d.name.clone())
            .chain(custom.keys().cloned())
            .collect();
        let lookup = |table: &'static str, key: &str| -> Result<Dimension> {
            builtin_dimension(key)
                .or_else(|| custom.get(key).cloned())
                .ok_or_else(|| Error::UnknownDimension {
                    file: file.clone(),
                    table,
                    key: key.to_owned(),
                    known: known.join(", "),
                    hint: closest(key, &known)
                        .map(|k| format!(" (did you mean `{k}`?)"))
                        .unwrap_or_default(),
                })
        };

        // Targets.
        if raw.target.is_empty() {
            return Err(Error::NoTarget { file });
        }
        let mut targets = BTreeMap::new();
        for (key, &value) in &raw.target {
            let dim = lookup("target", key)?;
            if !(0.0..=1.0).contains(&value) {
                return Err(Error::TargetOutOfRange {
                    file,
                    dimension: key.clone(),
                    value,
                });
            }
            targets.insert(key.clone(), (dim, value));
        }
        let untargeted = |table: &'static str, key: &str| -> Result<()> {
            lookup(table, key)?;
            if targets.contains_key(key) {
                Ok(())
            } else {
                Err(Error::NotTargeted {
                    file: file.clone(),
                    table,
                    dimension: key.to_owned(),
                })
            }
        };
        for name in custom.keys() {
            untargeted("dimensions", name)?;
        }

        // Weights.
        for (key, &w) in &raw.weights {
            untargeted("weights", key)?;
            if !(w.is_finite() && w >= 0.0) {
                return Err(Error::InvalidWeight {
                    file,
                    dimension: key.clone(),
                    value: w,
                });
            }
        }
        if targets
            .keys()
            .all(|k| raw.weights.get(k).copied().unwrap_or(1.0) == 0.0)
        {
            return Err(Error::AllWeightsZero { file });
        }

        // Efficiency budgets.
        let budget = |key: &'static str, v: Option<f64>| -> Result<Option<f64>> {
            match v {
                Some(b) if !(b.is_finite() && b > 0.0) => Err(Error::InvalidSetting {
                    file: file.clone(),
                    key: format!("efficiency.{key}"),
                    value: b.to_string(),
                    reason: "a budget must be finite and > 0".into(),
                }),
                v => Ok(v),
            }
        };
        let efficiency = EfficiencyBudget {
            budget_examples_per_s: budget(
                "budget_examples_per_s",
                raw.efficiency.budget_examples_per_s,
            )?,
            budget_latency_ms: budget("budget_latency_ms", raw.efficiency.budget_latency_ms)?,
            budget_gflops_per_example: budget(
                "budget_gflops_per_example",
                raw.efficiency.budget_gflops_per_example,
            )?,
            budget_weight_mb: budget("budget_weight_mb", raw.efficiency.budget_weight_mb)?,
        };

        // Measures.
        for key in raw.measure.keys() {
            untargeted("measure", key)?;
        }
        let mut dims = Vec::new();
        for (name, (dimension, target)) in targets {
            let measure = match raw.measure.get(&name) {
                Some(s) => {
                    let m = Measure::parse(s).ok_or_else(|| Error::UnknownName {
                        file: file.clone(),
                        what: "measure",
                        key: format!("measure.{name}"),
                        value: s.clone(),
                        expected: Measure::expected_names(),
                    })?;
                    if !m.fits(&name) {
                        let mut allowed: Vec<String> = Measure::allowed_for(&name)
                            .unwrap_or_default()
                            .iter()
                            .map(Measure::name)
                            .collect();
                        allowed.push("extra.<metric>".into());
                        allowed.push("1-extra.<metric>".into());
                        return Err(Error::MeasureNotForDimension {
                            file,
                            dimension: name,
                            measure: s.clone(),
                            allowed: allowed.join(", "),
                        });
                    }
                    m
                }
                None => Measure::default_for(&name).ok_or_else(|| Error::MissingMeasure {
                    file: file.clone(),
                    dimension: name.clone(),
                })?,
            };
            let needed = match measure {
                Measure::Throughput => {
                    Some(("budget_examples_per_s", efficiency.budget_examples_per_s))
                }
                Measure::Latency => Some(("budget_latency_ms", efficiency.budget_latency_ms)),
                Measure::Cost => match efficiency.budget_gflops_per_example {
                    None => Some(("budget_gflops_per_example", None)),
                    Some(_) => Some(("budget_weight_mb", efficiency.budget_weight_mb)),
                },
                _ => None,
            };
            if let Some((key, None)) = needed {
                return Err(Error::MissingBudget {
                    file,
                    dimension: name,
                    measure: measure.name(),
                    key,
                });
            }
            let weight = raw.weights.get(&name).copied().unwrap_or(1.0);
            dims.push(DimensionSpec {
                dimension,
                target,
                weight,
                measure,
            });
        }

        let mut warnings = Vec::new();
        if raw.search.lambdas.is_some() {
            warnings.push(format!("{file}: {RETIRED_LAMBDAS}"));
        }
        let search = validate_search(&file, raw.search)?;
        let train = validate_train(&file, raw.train)?;
        Ok(Self {
            origin: file,
            dims,
            distance,
            unmeasured,
            efficiency,
            search,
            train,
            warnings,
        })
    }

    /// What the file sets that is accepted but has no effect, one message
    /// per key, each saying what to do (today: a retired
    /// `search.lambdas`). The CLI prints them as warnings.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Where the spec came from (file path or a label).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The target dimensions, ordered by name.
    pub fn dimensions(&self) -> &[DimensionSpec] {
        &self.dims
    }

    /// The target dimension called `name`.
    pub fn dimension(&self, name: &str) -> Option<&DimensionSpec> {
        self.dims.iter().find(|d| d.dimension.name == name)
    }

    /// The distance metric.
    pub fn distance(&self) -> DistanceMetric {
        self.distance
    }

    /// The unmeasured-dimension policy.
    pub fn unmeasured(&self) -> UnmeasuredPolicy {
        self.unmeasured
    }

    /// The efficiency budgets.
    pub fn efficiency(&self) -> &EfficiencyBudget {
        &self.efficiency
    }

    /// The search settings.
    pub fn search(&self) -> &SearchConfig {
        &self.search
    }

    /// The training settings (`[train]`).
    pub fn train(&self) -> &TrainSettings {
        &self.train
    }

    /// The value space of all target dimensions (weights and metric from the
    /// file). Use [`ValueSpace::measured_in`] to drop NOT MEASURED ones.
    pub fn space(&self) -> ValueSpace {
        let dims = self.dims.iter().map(|d| d.dimension.clone()).collect();
        let weights = self.dims.iter().map(|d| d.weight).collect();
        ValueSpace::new(dims, weights, self.distance)
            .expect("a validated spec has valid names and weights")
    }

    /// `V_D` as a dimension → target map.
    pub fn targets(&self) -> BTreeMap<String, f64> {
        self.dims
            .iter()
            .map(|d| (d.dimension.name.clone(), d.target))
            .collect()
    }

    /// `V_D` as a fully measured profile.
    pub fn target_profile(&self) -> Profile {
        Profile::from_values(
            self.dims
                .iter()
                .map(|d| (d.dimension.name.as_str(), d.target)),
        )
    }

    /// `V_D` as coordinates of `space` (which may be a sub-space).
    pub fn target_vector(&self, space: &ValueSpace) -> Result<ValueVector> {
        space.vector(&self.target_profile())
    }

    /// Checks before any training which dimensions can be measured, given
    /// which [`EvalField`]s the caller will compute. Returns the dimensions
    /// that will be NOT MEASURED, with the reason (under
    /// `unmeasured = "exclude"`); fails with [`Error::NotMeasured`] under
    /// `unmeasured = "error"`, and with [`Error::NothingMeasured`] when no
    /// dimension is measurable.
    pub fn check_available(
        &self,
        available: impl Fn(&EvalField) -> bool,
    ) -> Result<BTreeMap<String, String>> {
        let mut missing = BTreeMap::new();
        for d in &self.dims {
            let field = d.measure.input();
            if !available(&field) {
                let reason = not_computed_reason(&field);
                if self.unmeasured == UnmeasuredPolicy::Error {
                    return Err(Error::NotMeasured {
                        dimension: d.dimension.name.clone(),
                        reason,
                    });
                }
                missing.insert(d.dimension.name.clone(), reason);
            }
        }
        if missing.len() == self.dims.len() {
            let reasons = missing
                .iter()
                .map(|(k, r)| format!("{k}: {r}"))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Error::NothingMeasured { reasons });
        }
        Ok(missing)
    }
}

/// The known name within edit distance 2 of `key` (the closest), if any.
fn closest<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), k.as_str()))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance between two strings, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

fn validate_train(file: &str, raw: RawTrain) -> Result<TrainSettings> {
    if let Some(l) = raw.fairness_lambda
        && !(l.is_finite() && l >= 0.0)
    {
        return Err(Error::InvalidSetting {
            file: file.to_owned(),
            key: "train.fairness_lambda".into(),
            value: l.to_string(),
            reason: "the penalty weight must be finite and >= 0".into(),
        });
    }
    let fairness_penalty = match raw.fairness_penalty.as_deref() {
        None => None,
        Some("demographic_parity" | "demographic-parity") => {
            Some(FairnessPenalty::DemographicParity)
        }
        Some("equalized_odds" | "equalized-odds") => Some(FairnessPenalty::EqualizedOdds),
        Some(other) => {
            return Err(Error::UnknownName {
                file: file.to_owned(),
                what: "fairness penalty",
                key: "train.fairness_penalty".into(),
                value: other.to_owned(),
                expected: "demographic_parity, equalized_odds".into(),
            });
        }
    };
    if let Some(c) = raw.constraints.iter().find(|c| !c.contains("<=")) {
        return Err(Error::InvalidSetting {
            file: file.to_owned(),
            key: "train.constraints".into(),
            value: c.clone(),
            reason: "a constraint reads NAME <= BOUND, e.g. \"demographic_parity <= 0.05\"".into(),
        });
    }
    Ok(TrainSettings {
        fairness_lambda: raw.fairness_lambda,
        fairness_penalty,
        constraints: raw.constraints,
    })
}

/// The warning for a `search.lambdas` key (after the file name).
const RETIRED_LAMBDAS: &str = "`search.lambdas` is no longer read and is ignored: `valor remodel` no longer walks a grid of penalty weights but retrains with fairness constraints at the bounds V_D's fairness target translates into (`remodel.json`'s `provenance.bound_search` lists them); delete the key";

fn validate_search(file: &str, raw: RawSearch) -> Result<SearchConfig> {
    let d = SearchConfig::default();
    let invalid = |key: &str, value: String, reason: &str| Error::InvalidSetting {
        file: file.to_owned(),
        key: format!("search.{key}"),
        value,
        reason: reason.to_owned(),
    };
    let alpha = raw.alpha.unwrap_or(d.alpha);
    if !(alpha > 0.0 && alpha <= 1.0) {
        return Err(invalid(
            "alpha",
            alpha.to_string(),
            "alpha must lie in (0, 1]",
        ));
    }
    let eta = raw.eta.unwrap_or(d.eta);
    if !(eta > 0.0 && eta < 2.0) {
        return Err(invalid(
            "eta",
            eta.to_string(),
            "eta must lie in (0, 2), where the solver converges",
        ));
    }
    let tolerance = raw.tolerance.unwrap_or(d.tolerance);
    if !(tolerance >= 0.0 && tolerance.is_finite()) {
        return Err(invalid(
            "tolerance",
            tolerance.to_string(),
            "tolerance must be finite and >= 0",
        ));
    }
    let max_candidates = raw.max_candidates.unwrap_or(d.max_candidates);
    if max_candidates == 0 {
        return Err(invalid(
            "max_candidates",
            "0".into(),
            "at least one candidate is needed",
        ));
    }
    let patience = raw.patience.unwrap_or(d.patience);
    if patience == 0 {
        return Err(invalid("patience", "0".into(), "patience must be >= 1"));
    }
    let select = match raw.select.as_deref() {
        None => d.select,
        Some("pareto_nearest") => SelectRule::ParetoNearest,
        Some("nearest") => SelectRule::Nearest,
        Some(other) => {
            return Err(Error::UnknownName {
                file: file.to_owned(),
                what: "selection rule",
                key: "search.select".into(),
                value: other.to_owned(),
                expected: "pareto_nearest, nearest".into(),
            });
        }
    };
    let reweighing = raw.reweighing.unwrap_or(d.reweighing);
    let postprocess_thresholds = raw
        .postprocess_thresholds
        .unwrap_or(d.postprocess_thresholds);
    Ok(SearchConfig {
        alpha,
        eta,
        tolerance,
        max_candidates,
        patience,
        reweighing,
        postprocess_thresholds,
        select,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_default_is_valid() {
        let spec = ValuesSpec::default();
        assert_eq!(spec.origin(), "<built-in values.toml>");
        assert_eq!(spec.dimensions().len(), 4);
        assert_eq!(spec.space().len(), 4);
    }

    #[test]
    fn error_messages_read_well() {
        let cases = [
            "[target]\nfairness = 0.9\n[search]\nalfa = 0.5\n",
            "[target]\nfairnes = 0.9\n",
            "[target]\nfairness = 1.2\n",
            "[target]\nfairness = 0.9\n[measure]\nfairness = \"macro_f1\"\n",
        ];
        for text in cases {
            let msg = ValuesSpec::parse(text, "values.toml")
                .unwrap_err()
                .to_string();
            assert!(msg.starts_with("values.toml: "), "{msg}");
            assert!(!msg.ends_with('\n'), "{msg:?}");
        }
    }

    #[test]
    fn train_table_is_optional_and_checked() {
        assert_eq!(*ValuesSpec::default().train(), TrainSettings::default());
        let spec = ValuesSpec::parse(
            "[target]\nfairness = 0.9\n[train]\nfairness_lambda = 0.5\nfairness_penalty = \"equalized_odds\"\n",
            "values.toml",
        )
        .unwrap();
        assert_eq!(spec.train().fairness_lambda, Some(0.5));
        assert_eq!(
            spec.train().fairness_penalty,
            Some(FairnessPenalty::EqualizedOdds)
        );
        for (text, want) in [
            ("fairness_lambda = -1.0", "train.fairness_lambda"),
            (
                "fairness_penalty = \"parity\"",
                "demographic_parity, equalized_odds",
            ),
            ("lambda = 1.0", "lambda"),
        ] {
            let text = format!("[target]\nfairness = 0.9\n[train]\n{text}\n");
            let msg = ValuesSpec::parse(&text, "values.toml")
                .unwrap_err()
                .to_string();
            assert!(
                msg.starts_with("values.toml: ") && msg.contains(want),
                "{msg}"
            );
        }
    }

    #[test]
    fn suggestions_use_edit_distance() {
        assert_eq!(edit_distance("fairnes", "fairness"), 1);
        assert_eq!(edit_distance("acuracy", "accuracy"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let known = ["accuracy".to_owned(), "fairness".to_owned()];
        assert_eq!(closest("fairnes", &known), Some("fairness"));
        assert_eq!(closest("speed", &known), None);
    }

    #[test]
    fn measure_names_round_trip() {
        for name in Measure::expected_names().split(", ") {
            let name = name.replace("<name>", "ece");
            let m = Measure::parse(&name).unwrap();
            assert_eq!(m.name(), name);
        }
        assert!(Measure::parse("1-accuracy").is_none());
        assert!(Measure::parse("extra.").is_none());
        assert!(Measure::parse("extra.a b").is_none());
    }
}
