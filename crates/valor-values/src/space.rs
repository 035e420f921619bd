//! Value spaces, value vectors, profiles and weighted distances.
//!
//! A *value space* is an ordered list of named, documented dimensions with a
//! non-negative weight each and a distance metric. A [`ValueVector`] holds one
//! coordinate per dimension, in the space's order; a [`Profile`] is the same
//! information keyed by dimension name, where a dimension may be
//! [`Score::NotMeasured`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// One named, documented axis of a value space. Scores on every dimension lie
/// in `[0, 1]` and higher is better.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dimension {
    /// Name used in `values.toml` and reports (`fairness`, `accuracy`, ...).
    pub name: String,
    /// What the dimension means, in one or two sentences.
    pub description: String,
}

impl Dimension {
    /// A dimension with the given name and description.
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
        }
    }
}

/// `fairness`: how equally the model treats the protected groups.
pub const FAIRNESS: &str = "fairness";
/// `transparency`: how faithful the model's explanations are.
pub const TRANSPARENCY: &str = "transparency";
/// `efficiency`: measured speed against a stated budget.
pub const EFFICIENCY: &str = "efficiency";
/// `accuracy`: predictive quality on held-out data.
pub const ACCURACY: &str = "accuracy";

/// The built-in dimensions of the default value space, with their meaning.
pub fn builtin_dimensions() -> [Dimension; 4] {
    [
        Dimension::new(
            ACCURACY,
            "Predictive quality on held-out data: macro-F1, balanced accuracy or accuracy, \
             as chosen in [measure].",
        ),
        Dimension::new(
            EFFICIENCY,
            "Cost or speed against the budgets in [efficiency]: cost (the default, \
             counted, the same on every run) is the mean of \
             min(1, budget_gflops_per_example / gflops_per_example) and \
             min(1, budget_weight_mb / weight_mb); or the timings \
             min(1, examples_per_s / budget_examples_per_s) and \
             min(1, budget_latency_ms / latency_ms_p50). 1 means within budget.",
        ),
        Dimension::new(
            FAIRNESS,
            "How equally the model treats the protected groups, from a disparity metric \
             (e.g. 1 - equalized-odds difference). 1 means no measured disparity.",
        ),
        Dimension::new(
            TRANSPARENCY,
            "How faithfully the model's explanations reflect what drives its decisions \
             (explanation faithfulness in [0, 1]). NOT MEASURED until explanations are evaluated.",
        ),
    ]
}

/// The built-in dimension called `name`, if any.
pub fn builtin_dimension(name: &str) -> Option<Dimension> {
    builtin_dimensions().into_iter().find(|d| d.name == name)
}

/// Checks that `name` can be used as a dimension name: non-empty ASCII
/// lowercase letters, digits and `_`, starting with a letter.
pub fn validate_dimension_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    match chars.next() {
        None => Err(Error::InvalidDimensionName {
            name: name.to_owned(),
            reason: "it is empty",
        }),
        Some(c) if !c.is_ascii_lowercase() => Err(Error::InvalidDimensionName {
            name: name.to_owned(),
            reason: "it must start with a lowercase ASCII letter",
        }),
        Some(_) => {
            if chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
                Ok(())
            } else {
                Err(Error::InvalidDimensionName {
                    name: name.to_owned(),
                    reason: "use only lowercase ASCII letters, digits and `_`",
                })
            }
        }
    }
}

/// How two value vectors are compared. Every metric takes the per-dimension
/// weights `w_i >= 0` of the [`ValueSpace`]:
///
/// | metric   | formula |
/// |----------|---------|
/// | `l1`     | `d(a, b) = Σ_i w_i |a_i - b_i|` |
/// | `l2`     | `d(a, b) = sqrt(Σ_i w_i (a_i - b_i)^2)` |
/// | `linf`   | `d(a, b) = max_i w_i |a_i - b_i|` |
/// | `cosine` | `d(a, b) = 1 - <a, b>_w / (‖a‖_w ‖b‖_w)` with `<a, b>_w = Σ_i w_i a_i b_i` |
///
/// For `cosine`, two zero vectors are at distance 0 and a zero vector is at
/// distance 1 from any non-zero one. `l1`, `l2` and `linf` are (semi-)norms:
/// `d(a + t (b - a), b) = (1 - t) d(a, b)` for `t` in `[0, 1]`; `cosine`
/// compares directions only and is not a metric in the strict sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DistanceMetric {
    /// Weighted sum of absolute differences.
    L1,
    /// Weighted Euclidean distance (the default).
    #[default]
    L2,
    /// Largest weighted absolute difference.
    Linf,
    /// One minus the weighted cosine similarity.
    Cosine,
}

impl DistanceMetric {
    /// Every metric, in documentation order.
    pub const ALL: [DistanceMetric; 4] = [Self::L1, Self::L2, Self::Linf, Self::Cosine];

    /// The name used in `values.toml` and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::L1 => "l1",
            Self::L2 => "l2",
            Self::Linf => "linf",
            Self::Cosine => "cosine",
        }
    }

    /// The names accepted by [`FromStr`], comma separated (for messages).
    pub fn expected_names() -> String {
        Self::ALL.map(Self::name).join(", ")
    }

    /// The weighted distance between `a` and `b` (same length, not checked:
    /// use [`ValueSpace::distance`] for the checked version).
    pub fn eval(self, weights: &[f64], a: &[f64], b: &[f64]) -> f64 {
        let terms = weights.iter().zip(a).zip(b);
        match self {
            Self::L1 => terms.map(|((w, x), y)| w * (x - y).abs()).sum(),
            Self::L2 => terms
                .map(|((w, x), y)| w * (x - y) * (x - y))
                .sum::<f64>()
                .sqrt(),
            Self::Linf => terms
                .map(|((w, x), y)| w * (x - y).abs())
                .fold(0.0, f64::max),
            Self::Cosine => {
                let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
                for ((w, x), y) in terms {
                    ab += w * x * y;
                    aa += w * x * x;
                    bb += w * y * y;
                }
                match (aa > 0.0, bb > 0.0) {
                    (false, false) => 0.0,
                    (true, false) | (false, true) => 1.0,
                    (true, true) => (1.0 - ab / (aa.sqrt() * bb.sqrt())).clamp(0.0, 2.0),
                }
            }
        }
    }
}

impl fmt::Display for DistanceMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DistanceMetric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown distance `{s}`; expected one of: {}",
                    Self::expected_names()
                )
            })
    }
}

impl Serialize for DistanceMetric {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for DistanceMetric {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A point of a value space: one finite coordinate per dimension, in the
/// space's order. Coordinates are usually in `[0, 1]`, but intermediate
/// results (an unprojected solver step with `eta > 1`) may leave the box; see
/// [`crate::project_box`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ValueVector(Vec<f64>);

impl ValueVector {
    /// A vector from coordinates; fails on NaN or infinite values.
    pub fn new(values: Vec<f64>) -> Result<Self> {
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: "value vector",
                index,
                value,
            });
        }
        Ok(Self(values))
    }

    /// The coordinates.
    pub fn as_slice(&self) -> &[f64] {
        &self.0
    }

    /// Number of dimensions.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the vector has no dimensions.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The coordinates, by value.
    pub fn into_vec(self) -> Vec<f64> {
        self.0
    }

    /// Builds a vector from coordinates that are finite by construction.
    pub(crate) fn from_finite(values: Vec<f64>) -> Self {
        debug_assert!(values.iter().all(|v| v.is_finite()));
        Self(values)
    }
}

impl<'de> Deserialize<'de> for ValueVector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Vec::<f64>::deserialize(d)?;
        Self::new(v).map_err(serde::de::Error::custom)
    }
}

/// The score of one dimension in a measured [`Profile`].
#[derive(Debug, Clone, PartialEq)]
pub enum Score {
    /// A measured score in `[0, 1]`.
    Measured(f64),
    /// Not measured; never replaced by an invented number. `reason` says why
    /// (e.g. "faithfulness was not computed").
    NotMeasured {
        /// Why the dimension has no score.
        reason: String,
    },
}

impl Score {
    /// The measured value, if any.
    pub fn value(&self) -> Option<f64> {
        match self {
            Self::Measured(v) => Some(*v),
            Self::NotMeasured { .. } => None,
        }
    }
}

/// A model's value profile: dimension name → score, ordered by name.
///
/// Serialises as a JSON map from dimension to number, with `null` for a
/// dimension that is NOT MEASURED (the reasons are available from
/// [`Profile::not_measured`] and reports list them separately).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile(BTreeMap<String, Score>);

impl Profile {
    /// An empty profile.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fully measured profile from `(dimension, value)` pairs.
    pub fn from_values<'a>(values: impl IntoIterator<Item = (&'a str, f64)>) -> Self {
        Self(
            values
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Score::Measured(v)))
                .collect(),
        )
    }

    /// Sets the score of `dimension`.
    pub fn insert(&mut self, dimension: impl Into<String>, score: Score) {
        self.0.insert(dimension.into(), score);
    }

    /// The score of `dimension`, if the profile has it.
    pub fn get(&self, dimension: &str) -> Option<&Score> {
        self.0.get(dimension)
    }

    /// The measured value of `dimension`, if measured.
    pub fn value(&self, dimension: &str) -> Option<f64> {
        self.0.get(dimension).and_then(Score::value)
    }

    /// Dimensions and scores, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Score)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of dimensions (measured or not).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the profile has no dimension.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Dimensions that are NOT MEASURED, with the reason.
    pub fn not_measured(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .filter_map(|(k, v)| match v {
                Score::NotMeasured { reason } => Some((k.clone(), reason.clone())),
                Score::Measured(_) => None,
            })
            .collect()
    }
}

impl Serialize for Profile {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, &v.value())?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Profile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = BTreeMap::<String, Option<f64>>::deserialize(d)?;
        Ok(Self(
            raw.into_iter()
                .map(|(k, v)| {
                    let score = match v {
                        Some(v) => Score::Measured(v),
                        None => Score::NotMeasured {
                            reason: "not measured".to_owned(),
                        },
                    };
                    (k, score)
                })
                .collect(),
        ))
    }
}

/// An ordered set of named dimensions with non-negative weights and a
/// distance metric: the space in which profiles are compared.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueSpace {
    dims: Vec<Dimension>,
    weights: Vec<f64>,
    metric: DistanceMetric,
}

impl ValueSpace {
    /// A space from dimensions and their weights. Fails when the lengths
    /// differ, a name repeats or is invalid, a weight is negative or not
    /// finite, or every weight is zero.
    pub fn new(dims: Vec<Dimension>, weights: Vec<f64>, metric: DistanceMetric) -> Result<Self> {
        if dims.len() != weights.len() {
            return Err(Error::DimensionMismatch {
                context: "ValueSpace::new weights",
                expected: dims.len(),
                actual: weights.len(),
            });
        }
        if dims.is_empty() {
            return Err(Error::Empty {
                context: "ValueSpace::new dimensions",
            });
        }
        for (i, d) in dims.iter().enumerate() {
            validate_dimension_name(&d.name)?;
            if dims[..i].iter().any(|e| e.name == d.name) {
                return Err(Error::InvalidDimensionName {
                    name: d.name.clone(),
                    reason: "it appears twice",
                });
            }
        }
        for (index, &w) in weights.iter().enumerate() {
            if !w.is_finite() {
                return Err(Error::NonFinite {
                    what: "weights",
                    index,
                    value: w,
                });
            }
            if w < 0.0 {
                return Err(Error::ParameterOutOfRange {
                    name: "weight",
                    value: w,
                    expected: "[0, inf)",
                });
            }
        }
        if weights.iter().all(|&w| w == 0.0) {
            return Err(Error::ParameterOutOfRange {
                name: "sum of weights",
                value: 0.0,
                expected: "(0, inf): give at least one dimension a positive weight",
            });
        }
        Ok(Self {
            dims,
            weights,
            metric,
        })
    }

    /// A space with unit weights on the named dimensions; built-in names get
    /// their built-in description, other names an empty one.
    pub fn uniform(names: &[&str], metric: DistanceMetric) -> Result<Self> {
        let dims = names
            .iter()
            .map(|n| builtin_dimension(n).unwrap_or_else(|| Dimension::new(*n, "")))
            .collect();
        Self::new(dims, vec![1.0; names.len()], metric)
    }

    /// The dimensions, in order.
    pub fn dims(&self) -> &[Dimension] {
        &self.dims
    }

    /// The dimension names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.dims.iter().map(|d| d.name.as_str()).collect()
    }

    /// Position of the dimension called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.dims.iter().position(|d| d.name == name)
    }

    /// Number of dimensions.
    pub fn len(&self) -> usize {
        self.dims.len()
    }

    /// Whether the space has no dimension (never true for a constructed space).
    pub fn is_empty(&self) -> bool {
        self.dims.is_empty()
    }

    /// The weights, in dimension order.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The distance metric.
    pub fn metric(&self) -> DistanceMetric {
        self.metric
    }

    /// The same space compared with another metric.
    pub fn with_metric(&self, metric: DistanceMetric) -> Self {
        Self {
            metric,
            ..self.clone()
        }
    }

    /// Checks that `v` has one coordinate per dimension.
    pub fn check(&self, context: &'static str, v: &ValueVector) -> Result<()> {
        if v.len() == self.len() {
            Ok(())
        } else {
            Err(Error::DimensionMismatch {
                context,
                expected: self.len(),
                actual: v.len(),
            })
        }
    }

    /// The coordinates of `profile` in this space. Fails when a dimension is
    /// missing or NOT MEASURED, or a value is not finite.
    pub fn vector(&self, profile: &Profile) -> Result<ValueVector> {
        let values = self
            .dims
            .iter()
            .map(|d| {
                profile
                    .value(&d.name)
                    .ok_or_else(|| Error::MissingDimension {
                        context: "ValueSpace::vector",
                        dimension: d.name.clone(),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        ValueVector::new(values)
    }

    /// The profile whose coordinates are `v`.
    pub fn profile(&self, v: &ValueVector) -> Result<Profile> {
        self.check("ValueSpace::profile", v)?;
        Ok(Profile(
            self.dims
                .iter()
                .zip(v.as_slice())
                .map(|(d, &x)| (d.name.clone(), Score::Measured(x)))
                .collect(),
        ))
    }

    /// The sub-space of the dimensions measured in every one of `profiles`
    /// (same order and weights), and the dimensions left out with the reason.
    /// Fails when nothing is left or the remaining weights are all zero.
    pub fn measured_in(&self, profiles: &[&Profile]) -> Result<(Self, BTreeMap<String, String>)> {
        let mut keep = Vec::new();
        let mut dropped = BTreeMap::new();
        for (d, &w) in self.dims.iter().zip(&self.weights) {
            let reason = profiles.iter().find_map(|p| match p.get(&d.name) {
                None => Some("missing from a profile".to_owned()),
                Some(Score::NotMeasured { reason }) => Some(reason.clone()),
                Some(Score::Measured(_)) => None,
            });
            match reason {
                Some(r) => {
                    dropped.insert(d.name.clone(), r);
                }
                None => keep.push((d.clone(), w)),
            }
        }
        if keep.is_empty() {
            let reasons = dropped
                .iter()
                .map(|(k, r)| format!("{k}: {r}"))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Error::NothingMeasured { reasons });
        }
        let (dims, weights) = keep.into_iter().unzip();
        Ok((Self::new(dims, weights, self.metric)?, dropped))
    }

    /// The weighted distance `d(a, b)` in this space's metric (see
    /// [`DistanceMetric`] for the formulas).
    pub fn distance(&self, a: &ValueVector, b: &ValueVector) -> Result<f64> {
        self.check("ValueSpace::distance (first)", a)?;
        self.check("ValueSpace::distance (second)", b)?;
        Ok(self.metric.eval(&self.weights, a.as_slice(), b.as_slice()))
    }

    /// The weighted inner product `<a, b>_W = Σ_i w_i a_i b_i` (the geometry
    /// of hull projection).
    pub(crate) fn w_dot(&self, a: &[f64], b: &[f64]) -> f64 {
        self.weights
            .iter()
            .zip(a)
            .zip(b)
            .map(|((w, x), y)| w * x * y)
            .sum()
    }

    /// The weighted Euclidean norm `‖a - b‖_W = sqrt(Σ_i w_i (a_i - b_i)^2)`,
    /// whatever this space's metric.
    pub fn l2_w(&self, a: &ValueVector, b: &ValueVector) -> Result<f64> {
        self.check("ValueSpace::l2_w (first)", a)?;
        self.check("ValueSpace::l2_w (second)", b)?;
        Ok(DistanceMetric::L2.eval(&self.weights, a.as_slice(), b.as_slice()))
    }

    /// Index of the candidate nearest to `target` in this space's metric
    /// (`argmin_i d(c_i, target)`; ties go to the lowest index).
    pub fn nearest(&self, candidates: &[ValueVector], target: &ValueVector) -> Result<usize> {
        if candidates.is_empty() {
            return Err(Error::Empty {
                context: "ValueSpace::nearest",
            });
        }
        let mut best = (0, f64::INFINITY);
        for (i, c) in candidates.iter().enumerate() {
            let d = self.distance(c, target)?;
            if d < best.1 {
                best = (i, d);
            }
        }
        Ok(best.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use valor_testkit::{Tolerance, assert_close};

    fn v(x: &[f64]) -> ValueVector {
        ValueVector::new(x.to_vec()).unwrap()
    }

    #[test]
    fn distances_match_hand_computed_values() {
        let w = [1.0, 2.0, 0.5];
        let a = [0.2, 0.5, 1.0];
        let b = [0.6, 0.1, 0.0];
        let tol = Tolerance::abs(1e-12);
        // l1: 0.4 + 2*0.4 + 0.5*1 = 1.7
        assert_close("l1", DistanceMetric::L1.eval(&w, &a, &b), 1.7, tol);
        // l2: sqrt(0.16 + 2*0.16 + 0.5*1) = sqrt(0.98)
        assert_close(
            "l2",
            DistanceMetric::L2.eval(&w, &a, &b),
            0.98f64.sqrt(),
            tol,
        );
        // linf: max(0.4, 0.8, 0.5)
        assert_close("linf", DistanceMetric::Linf.eval(&w, &a, &b), 0.8, tol);
        // cosine: ab = 0.12 + 2*0.05 + 0 = 0.22; aa = 0.04+0.5+0.5 = 1.04; bb = 0.36+0.02 = 0.38
        let expected = 1.0 - 0.22 / (1.04f64.sqrt() * 0.38f64.sqrt());
        assert_close(
            "cosine",
            DistanceMetric::Cosine.eval(&w, &a, &b),
            expected,
            tol,
        );
    }

    #[test]
    fn cosine_handles_zero_vectors() {
        let w = [1.0, 1.0];
        assert_eq!(
            DistanceMetric::Cosine.eval(&w, &[0.0, 0.0], &[0.0, 0.0]),
            0.0
        );
        assert_eq!(
            DistanceMetric::Cosine.eval(&w, &[0.0, 0.0], &[0.3, 0.0]),
            1.0
        );
        // Parallel vectors are at cosine distance 0.
        let d = DistanceMetric::Cosine.eval(&w, &[0.2, 0.4], &[0.4, 0.8]);
        assert_close("parallel", d, 0.0, Tolerance::abs(1e-12));
    }

    #[test]
    fn metric_names_round_trip() {
        for m in DistanceMetric::ALL {
            assert_eq!(m.name().parse::<DistanceMetric>().unwrap(), m);
        }
        let err = "l3".parse::<DistanceMetric>().unwrap_err();
        assert!(err.contains("l3") && err.contains("linf"), "{err}");
    }

    #[test]
    fn space_rejects_bad_weights_and_names() {
        let dims = || vec![Dimension::new("a", ""), Dimension::new("b", "")];
        assert!(ValueSpace::new(dims(), vec![1.0, -0.1], DistanceMetric::L2).is_err());
        assert!(ValueSpace::new(dims(), vec![0.0, 0.0], DistanceMetric::L2).is_err());
        assert!(ValueSpace::new(dims(), vec![1.0, f64::NAN], DistanceMetric::L2).is_err());
        assert!(ValueSpace::new(dims(), vec![1.0], DistanceMetric::L2).is_err());
        let dup = vec![Dimension::new("a", ""), Dimension::new("a", "")];
        assert!(ValueSpace::new(dup, vec![1.0, 1.0], DistanceMetric::L2).is_err());
        let bad = vec![Dimension::new("Fair ness", "")];
        assert!(ValueSpace::new(bad, vec![1.0], DistanceMetric::L2).is_err());
    }

    #[test]
    fn vector_and_profile_round_trip() {
        let space = ValueSpace::uniform(&["accuracy", "fairness"], DistanceMetric::L2).unwrap();
        let p = Profile::from_values([("fairness", 0.9), ("accuracy", 0.7), ("other", 0.1)]);
        let x = space.vector(&p).unwrap();
        assert_eq!(x.as_slice(), &[0.7, 0.9]);
        let back = space.profile(&x).unwrap();
        assert_eq!(back.value("fairness"), Some(0.9));
        assert_eq!(back.len(), 2);
    }

    #[test]
    fn vector_fails_on_not_measured_dimension() {
        let space = ValueSpace::uniform(&["accuracy", "transparency"], DistanceMetric::L2).unwrap();
        let mut p = Profile::from_values([("accuracy", 0.7)]);
        p.insert(
            "transparency",
            Score::NotMeasured {
                reason: "faithfulness was not computed".into(),
            },
        );
        let err = space.vector(&p).unwrap_err().to_string();
        assert!(err.contains("transparency"), "{err}");
        let (sub, dropped) = space.measured_in(&[&p]).unwrap();
        assert_eq!(sub.names(), vec!["accuracy"]);
        assert_eq!(dropped["transparency"], "faithfulness was not computed");
    }

    #[test]
    fn profile_serialises_not_measured_as_null() {
        let mut p = Profile::from_values([("accuracy", 0.5)]);
        p.insert("transparency", Score::NotMeasured { reason: "x".into() });
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"accuracy":0.5,"transparency":null}"#);
        let back: Profile = serde_json::from_str(&json).unwrap();
        assert_eq!(back.value("accuracy"), Some(0.5));
        assert!(back.value("transparency").is_none());
    }

    #[test]
    fn nearest_breaks_ties_by_lowest_index() {
        let space = ValueSpace::uniform(&["a", "b"], DistanceMetric::L1).unwrap();
        let cands = [v(&[0.0, 1.0]), v(&[1.0, 0.0]), v(&[0.5, 0.5])];
        assert_eq!(space.nearest(&cands, &v(&[0.5, 0.5])).unwrap(), 2);
        assert_eq!(space.nearest(&cands[..2], &v(&[0.5, 0.5])).unwrap(), 0);
        assert!(space.nearest(&[], &v(&[0.5, 0.5])).is_err());
        assert!(space.nearest(&cands, &v(&[0.5])).is_err());
    }

    #[test]
    fn value_vector_rejects_non_finite() {
        assert!(ValueVector::new(vec![0.1, f64::INFINITY]).is_err());
        assert!(serde_json::from_str::<ValueVector>("[0.1, 0.2]").is_ok());
    }
}
