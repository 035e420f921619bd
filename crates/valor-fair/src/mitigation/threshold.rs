//! Post-processing to a fairness constraint (Hardt, Price & Srebro 2016,
//! "Equality of opportunity in supervised learning"), as fairlearn's
//! `ThresholdOptimizer` does it: per-group thresholds on a score, randomised
//! between two thresholds (and, for equalized odds, with a constant) where
//! an exact rate needs it.
//!
//! * Demographic parity: every group gets the same selection rate `r`; for
//!   each `r` on a grid of `grid_size + 1` points each group's best
//!   classifier with that rate interpolates between its two nearest
//!   thresholds; the `r` with the best objective wins.
//! * Equalized odds: every group gets the same (FPR, TPR) = (x, y); each
//!   group can reach any point between its ROC convex hull and the
//!   diagonal, so for each `x` on the grid `y` is the lowest hull over
//!   groups at `x`; the best `x` wins. A group whose hull lies above `y`
//!   mixes its hull classifier with the constant classifier that predicts
//!   positive with probability `x`.
//!
//! The fitted rules are plain data (JSON), applied at prediction time with a
//! seeded random stream.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mitigation::{intern, load_json, lookup_groups, save_json};
use crate::report::OrderedMap;

/// Schema tag of the saved optimizer.
pub const THRESHOLD_SCHEMA: &str = "valor.fair.threshold_optimizer/1";

/// The fairness constraint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Constraint {
    /// Equal selection rates across groups.
    DemographicParity,
    /// Equal true and false positive rates across groups.
    EqualizedOdds,
}

/// What to maximise under the constraint (on the fitting data).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Expected accuracy.
    Accuracy,
    /// Expected balanced accuracy (mean of TPR and TNR).
    BalancedAccuracy,
}

/// Fitting settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThresholdOptimizerConfig {
    pub constraint: Constraint,
    pub objective: Objective,
    /// Grid intervals on [0, 1] for the common rate (fairlearn: 1000).
    pub grid_size: usize,
}

impl Default for ThresholdOptimizerConfig {
    fn default() -> Self {
        Self {
            constraint: Constraint::DemographicParity,
            objective: Objective::Accuracy,
            grid_size: 1000,
        }
    }
}

/// One threshold of a rule: contributes `weight` to P(ŷ = 1) when the score
/// is strictly above `above` (`None`: every score).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cut {
    pub above: Option<f64>,
    pub weight: f64,
}

/// A group's randomised decision rule:
/// `P(ŷ = 1 | score) = constant + Σ weight · [score > above]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupRule {
    pub cuts: Vec<Cut>,
    pub constant: f64,
}

impl GroupRule {
    /// P(ŷ = 1) for a score.
    pub fn probability(&self, score: f64) -> f64 {
        let p = self.constant
            + self
                .cuts
                .iter()
                .filter(|c| c.above.is_none_or(|a| score > a))
                .map(|c| c.weight)
                .sum::<f64>();
        p.clamp(0.0, 1.0)
    }
}

/// Expected rates of a group on the fitting data under its rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupFit {
    pub rows: u64,
    pub selection_rate: f64,
    pub true_positive_rate: Option<f64>,
    pub false_positive_rate: Option<f64>,
}

/// A fitted threshold optimizer (serialisable; see [`THRESHOLD_SCHEMA`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThresholdOptimizer {
    pub schema: String,
    pub constraint: Constraint,
    pub objective: Objective,
    pub grid_size: usize,
    /// The common operating point: `selection_rate`, or
    /// `false_positive_rate` and `true_positive_rate`.
    pub target: OrderedMap<f64>,
    /// The objective at the chosen point, on the fitting data.
    pub objective_value: f64,
    /// Rule per group (sorted by name).
    pub groups: OrderedMap<GroupRule>,
    /// Expected rates per group on the fitting data.
    pub fit: OrderedMap<GroupFit>,
}

/// A group's threshold curve: `score > above[j]` selects the top `j` score
/// blocks (distinct scores), with `tp[j]`/`fp[j]` true/false positives.
struct Curve {
    above: Vec<Option<f64>>,
    tp: Vec<f64>,
    fp: Vec<f64>,
    pos: f64,
    neg: f64,
}

impl Curve {
    fn new(mut rows: Vec<(f64, bool)>) -> Self {
        rows.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut above = Vec::new();
        let mut tp = vec![0.0];
        let mut fp = vec![0.0];
        let mut i = 0;
        while i < rows.len() {
            let v = rows[i].0;
            // Selecting the blocks above this one: cut half-way between this
            // score and the previous (higher) one, as fairlearn does; above
            // the top block the cut is its score.
            above.push(Some(match above.last() {
                Some(Some(_)) => (rows[i - 1].0 + v) / 2.0,
                _ => v,
            }));
            let (mut p, mut n) = (0.0, 0.0);
            while i < rows.len() && rows[i].0 == v {
                if rows[i].1 {
                    p += 1.0;
                } else {
                    n += 1.0;
                }
                i += 1;
            }
            tp.push(tp[tp.len() - 1] + p);
            fp.push(fp[fp.len() - 1] + n);
        }
        above.push(None);
        let pos = tp[tp.len() - 1];
        let neg = fp[fp.len() - 1];
        Self {
            above,
            tp,
            fp,
            pos,
            neg,
        }
    }

    fn rows(&self) -> f64 {
        self.pos + self.neg
    }

    /// Upper convex hull of (selection rate, objective contribution) over
    /// thresholds: mixing any two thresholds reaches the segment between
    /// them, so the best rule at each selection rate lies on this hull (as
    /// in fairlearn's `_threshold_optimization_for_simple_constraints`).
    /// The contribution is `w_tp · tp − w_fp · fp`.
    fn selection_hull(&self, w_tp: f64, w_fp: f64) -> Vec<(f64, f64, usize)> {
        let n = self.rows();
        upper_hull((0..self.tp.len()).map(|j| {
            (
                (self.tp[j] + self.fp[j]) / n,
                w_tp * self.tp[j] - w_fp * self.fp[j],
                j,
            )
        }))
    }

    /// Upper convex hull of the ROC points (fpr, tpr).
    fn roc_hull(&self) -> Vec<(f64, f64, usize)> {
        upper_hull((0..self.tp.len()).map(|j| (self.fp[j] / self.neg, self.tp[j] / self.pos, j)))
    }

    /// Expected (tp, fp) of the mixture `(1 − w)·a + w·b` of thresholds.
    fn mixed(&self, seg: Segment) -> (f64, f64) {
        let Segment { a, b, w } = seg;
        (
            self.tp[a] + w * (self.tp[b] - self.tp[a]),
            self.fp[a] + w * (self.fp[b] - self.fp[a]),
        )
    }

    fn cuts(&self, seg: Segment) -> Vec<Cut> {
        if seg.a == seg.b {
            return vec![Cut {
                above: self.above[seg.a],
                weight: 1.0,
            }];
        }
        mix(self.above[seg.a], self.above[seg.b], seg.w)
    }
}

/// Upper convex hull of points sorted by x (ties: later points kept).
fn upper_hull(points: impl Iterator<Item = (f64, f64, usize)>) -> Vec<(f64, f64, usize)> {
    let mut h: Vec<(f64, f64, usize)> = Vec::new();
    for p in points {
        while h.len() >= 2 {
            let a = h[h.len() - 2];
            let b = h[h.len() - 1];
            let cross = (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0);
            if cross >= 0.0 {
                h.pop();
            } else {
                break;
            }
        }
        h.push(p);
    }
    h
}

/// Two curve points and the weight of the second.
#[derive(Clone, Copy, Debug)]
struct Segment {
    a: usize,
    b: usize,
    w: f64,
}

/// The rule that uses `a` with probability `1 − w` and `b` with `w`.
fn mix(a: Option<f64>, b: Option<f64>, w: f64) -> Vec<Cut> {
    let mut cuts = Vec::new();
    if w < 1.0 {
        cuts.push(Cut {
            above: a,
            weight: 1.0 - w,
        });
    }
    if w > 0.0 {
        cuts.push(Cut {
            above: b,
            weight: w,
        });
    }
    cuts
}

/// The hull's height at `x` and the segment (curve indices) reaching it.
fn hull_at(h: &[(f64, f64, usize)], x: f64) -> (f64, Segment) {
    let a = h.partition_point(|p| p.0 <= x).saturating_sub(1);
    if a + 1 >= h.len() {
        let (_, y, j) = h[a];
        return (y, Segment { a: j, b: j, w: 0.0 });
    }
    let (xa, ya, ja) = h[a];
    let (xb, yb, jb) = h[a + 1];
    let w = if xb > xa { (x - xa) / (xb - xa) } else { 0.0 };
    (ya + w * (yb - ya), Segment { a: ja, b: jb, w })
}

fn score(objective: Objective, tp: f64, fp: f64, pos: f64, neg: f64) -> f64 {
    match objective {
        Objective::Accuracy => (tp + (neg - fp)) / (pos + neg),
        Objective::BalancedAccuracy => {
            let tpr = if pos > 0.0 { tp / pos } else { 0.0 };
            let tnr = if neg > 0.0 { (neg - fp) / neg } else { 0.0 };
            (tpr + tnr) / 2.0
        }
    }
}

impl ThresholdOptimizer {
    /// Fits per-group rules on validation `scores` (higher means more
    /// likely positive), true labels and one group name per row.
    pub fn fit<S: AsRef<str>>(
        scores: &[f64],
        y_true: &[bool],
        groups: &[S],
        config: &ThresholdOptimizerConfig,
    ) -> Result<Self> {
        if scores.is_empty() {
            return Err(Error::Empty {
                what: "fit a threshold optimizer".into(),
            });
        }
        for (column, len) in [("y_true", y_true.len()), ("groups", groups.len())] {
            if len != scores.len() {
                return Err(Error::LengthMismatch {
                    column: column.into(),
                    expected: scores.len(),
                    actual: len,
                });
            }
        }
        if let Some((row, &value)) = scores.iter().enumerate().find(|(_, s)| !s.is_finite()) {
            return Err(Error::NonFiniteScore {
                column: "y_score".into(),
                row,
                value,
            });
        }
        if config.grid_size == 0 {
            return Err(Error::InvalidConfig {
                setting: "grid_size".into(),
                why: "needs at least one grid interval".into(),
            });
        }
        let (names, ids) = intern(groups);
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.sort_by(|&a, &b| names[a].cmp(&names[b]));
        let mut per_group: Vec<Vec<(f64, bool)>> = vec![Vec::new(); names.len()];
        for ((s, y), g) in scores.iter().zip(y_true).zip(&ids) {
            per_group[*g as usize].push((s + 0.0, *y));
        }
        let curves: Vec<(String, Curve)> = order
            .iter()
            .map(|&g| {
                (
                    names[g].clone(),
                    Curve::new(std::mem::take(&mut per_group[g])),
                )
            })
            .collect();
        let pos: f64 = curves.iter().map(|(_, c)| c.pos).sum();
        let neg: f64 = curves.iter().map(|(_, c)| c.neg).sum();
        let grid: Vec<f64> = (0..=config.grid_size)
            .map(|i| i as f64 / config.grid_size as f64)
            .collect();
        match config.constraint {
            Constraint::DemographicParity => {
                let (w_tp, w_fp) = match config.objective {
                    Objective::Accuracy => (1.0, 1.0),
                    Objective::BalancedAccuracy => (
                        if pos > 0.0 { 1.0 / pos } else { 0.0 },
                        if neg > 0.0 { 1.0 / neg } else { 0.0 },
                    ),
                };
                let hulls: Vec<Vec<(f64, f64, usize)>> = curves
                    .iter()
                    .map(|(_, c)| c.selection_hull(w_tp, w_fp))
                    .collect();
                let mut best: Option<(f64, f64)> = None;
                for &r in &grid {
                    let (mut tp, mut fp) = (0.0, 0.0);
                    for (h, (_, c)) in hulls.iter().zip(&curves) {
                        let (t, f) = c.mixed(hull_at(h, r).1);
                        tp += t;
                        fp += f;
                    }
                    let v = score(config.objective, tp, fp, pos, neg);
                    if best.is_none_or(|(b, _)| v > b) {
                        best = Some((v, r));
                    }
                }
                let (objective_value, r) = best.unwrap_or((0.0, 0.0));
                let mut rules = OrderedMap::new();
                let mut fit = OrderedMap::new();
                for (h, (name, c)) in hulls.iter().zip(&curves) {
                    let seg = hull_at(h, r).1;
                    let (tp, fp) = c.mixed(seg);
                    rules.push(
                        name.clone(),
                        GroupRule {
                            cuts: c.cuts(seg),
                            constant: 0.0,
                        },
                    );
                    fit.push(
                        name.clone(),
                        GroupFit {
                            rows: c.rows() as u64,
                            selection_rate: (tp + fp) / c.rows(),
                            true_positive_rate: (c.pos > 0.0).then(|| tp / c.pos),
                            false_positive_rate: (c.neg > 0.0).then(|| fp / c.neg),
                        },
                    );
                }
                let mut target = OrderedMap::new();
                target.push("selection_rate", r);
                Ok(Self {
                    schema: THRESHOLD_SCHEMA.into(),
                    constraint: config.constraint,
                    objective: config.objective,
                    grid_size: config.grid_size,
                    target,
                    objective_value,
                    groups: rules,
                    fit,
                })
            }
            Constraint::EqualizedOdds => {
                for (name, c) in &curves {
                    if c.pos == 0.0 || c.neg == 0.0 {
                        return Err(Error::InvalidConfig {
                            setting: "equalized_odds".into(),
                            why: format!(
                                "group `{name}` has no {} labels; equalized odds needs both classes in every group",
                                if c.pos == 0.0 { "positive" } else { "negative" }
                            ),
                        });
                    }
                }
                let hulls: Vec<Vec<(f64, f64, usize)>> =
                    curves.iter().map(|(_, c)| c.roc_hull()).collect();
                let mut best: Option<(f64, f64, f64)> = None;
                for &x in &grid {
                    let y = hulls
                        .iter()
                        .map(|h| hull_at(h, x).0)
                        .fold(f64::INFINITY, f64::min)
                        .max(x);
                    let v = score(config.objective, y * pos, x * neg, pos, neg);
                    if best.is_none_or(|(b, _, _)| v > b) {
                        best = Some((v, x, y));
                    }
                }
                let (objective_value, x, y) = best.unwrap_or((0.0, 0.0, 0.0));
                let mut rules = OrderedMap::new();
                let mut fit = OrderedMap::new();
                for (h, (name, c)) in hulls.iter().zip(&curves) {
                    let (yh, seg) = hull_at(h, x);
                    let cuts = c.cuts(seg);
                    let q = if yh - x > 1e-12 {
                        ((y - x) / (yh - x)).clamp(0.0, 1.0)
                    } else {
                        1.0
                    };
                    rules.push(
                        name.clone(),
                        GroupRule {
                            cuts: cuts
                                .into_iter()
                                .map(|cut| Cut {
                                    above: cut.above,
                                    weight: cut.weight * q,
                                })
                                .filter(|cut| cut.weight > 0.0)
                                .collect(),
                            constant: (1.0 - q) * x,
                        },
                    );
                    let tpr = q * yh + (1.0 - q) * x;
                    fit.push(
                        name.clone(),
                        GroupFit {
                            rows: c.rows() as u64,
                            selection_rate: (tpr * c.pos + x * c.neg) / c.rows(),
                            true_positive_rate: Some(tpr),
                            false_positive_rate: Some(x),
                        },
                    );
                }
                let mut target = OrderedMap::new();
                target.push("false_positive_rate", x);
                target.push("true_positive_rate", y);
                Ok(Self {
                    schema: THRESHOLD_SCHEMA.into(),
                    constraint: config.constraint,
                    objective: config.objective,
                    grid_size: config.grid_size,
                    target,
                    objective_value,
                    groups: rules,
                    fit,
                })
            }
        }
    }

    fn rules_for<S: AsRef<str>>(&self, scores: &[f64], groups: &[S]) -> Result<Vec<&GroupRule>> {
        if groups.len() != scores.len() {
            return Err(Error::LengthMismatch {
                column: "groups".into(),
                expected: scores.len(),
                actual: groups.len(),
            });
        }
        let names: Vec<String> = self.groups.keys().map(str::to_owned).collect();
        let ids = lookup_groups(&names, groups)?;
        let rules: Vec<&GroupRule> = self.groups.values().collect();
        Ok(ids.into_iter().map(|g| rules[g]).collect())
    }

    /// P(ŷ = 1) per row; a group not seen when fitting is an error.
    pub fn predict_proba<S: AsRef<str>>(&self, scores: &[f64], groups: &[S]) -> Result<Vec<f64>> {
        let rules = self.rules_for(scores, groups)?;
        Ok(scores
            .iter()
            .zip(rules)
            .map(|(s, r)| r.probability(*s))
            .collect())
    }

    /// Randomised predictions: row `i` is positive when the `i`-th draw of
    /// ChaCha8 seeded with `seed` is below its probability. The same seed
    /// gives the same predictions.
    pub fn predict<S: AsRef<str>>(
        &self,
        scores: &[f64],
        groups: &[S],
        seed: u64,
    ) -> Result<Vec<bool>> {
        let p = self.predict_proba(scores, groups)?;
        Ok(DecisionStream::new(seed).decide(&p))
    }

    /// JSON text.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|source| Error::Json {
            what: "threshold optimizer".into(),
            source,
        })
    }

    /// Parses [`to_json`](Self::to_json) output.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|source| Error::Json {
            what: "threshold optimizer".into(),
            source,
        })
    }

    /// Saves as JSON (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        save_json(self, "threshold optimizer", path)
    }

    /// Loads an optimizer saved by [`save`](Self::save).
    pub fn load(path: &Path) -> Result<Self> {
        load_json("threshold optimizer", path)
    }
}

/// The seeded draws of [`ThresholdOptimizer::predict`], continued from call
/// to call: rows decided chunk by chunk through one stream get the decisions
/// that one `predict` call on all the rows gives (row `i` of the stream, the
/// `i`-th draw), so a file can be predicted in chunks.
#[derive(Clone, Debug)]
pub struct DecisionStream {
    rng: ChaCha8Rng,
}

impl DecisionStream {
    /// The stream of [`ThresholdOptimizer::predict`] with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Positive where the row's draw is below its P(ŷ = 1); one draw per row.
    pub fn decide(&mut self, probabilities: &[f64]) -> Vec<bool> {
        probabilities
            .iter()
            .map(|p| self.rng.random::<f64>() < *p)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> (Vec<f64>, Vec<bool>, Vec<&'static str>) {
        // group a scores higher than group b at equal labels
        let mut s = Vec::new();
        let mut y = Vec::new();
        let mut g = Vec::new();
        for i in 0..200 {
            let pos = i % 3 == 0;
            let base = if pos { 0.6 } else { 0.3 };
            let jitter = (i % 17) as f64 / 40.0 - 0.2;
            s.push(base + jitter + 0.15);
            y.push(pos);
            g.push("a");
            s.push(base + jitter - 0.1);
            y.push(i % 4 == 0);
            g.push("b");
        }
        (s, y, g)
    }

    #[test]
    fn demographic_parity_equalises_expected_selection_rates() {
        let (s, y, g) = data();
        let t = ThresholdOptimizer::fit(&s, &y, &g, &ThresholdOptimizerConfig::default()).unwrap();
        let r = t.target.get("selection_rate").copied().unwrap();
        for (_, f) in t.fit.iter() {
            assert!((f.selection_rate - r).abs() < 1e-9);
        }
        let p = t.predict_proba(&s, &g).unwrap();
        for grp in ["a", "b"] {
            let (sum, n) = p
                .iter()
                .zip(&g)
                .filter(|(_, x)| **x == grp)
                .fold((0.0, 0.0), |(a, n), (p, _)| (a + p, n + 1.0));
            assert!((sum / n - r).abs() < 1e-9, "{grp}");
        }
        let back = ThresholdOptimizer::from_json(&t.to_json().unwrap()).unwrap();
        assert_eq!(back, t);
        assert_eq!(
            t.predict(&s, &g, 3).unwrap(),
            back.predict(&s, &g, 3).unwrap()
        );
        assert!(matches!(
            t.predict_proba(&[0.5], &["c"]),
            Err(Error::UnknownGroup { .. })
        ));
        // Chunk by chunk through one stream = one call.
        let whole = t.predict(&s, &g, 3).unwrap();
        let mut stream = DecisionStream::new(3);
        let chunked: Vec<bool> = s
            .chunks(7)
            .zip(g.chunks(7))
            .flat_map(|(s, g)| stream.decide(&t.predict_proba(s, g).unwrap()))
            .collect();
        assert_eq!(chunked, whole);
    }

    #[test]
    fn equalized_odds_equalises_expected_rates() {
        let (s, y, g) = data();
        let cfg = ThresholdOptimizerConfig {
            constraint: Constraint::EqualizedOdds,
            ..Default::default()
        };
        let t = ThresholdOptimizer::fit(&s, &y, &g, &cfg).unwrap();
        let p = t.predict_proba(&s, &g).unwrap();
        let rate = |grp: &str, label: bool| {
            let (sum, n) = p
                .iter()
                .zip(&g)
                .zip(&y)
                .filter(|((_, x), yy)| **x == grp && **yy == label)
                .fold((0.0, 0.0), |(a, n), ((p, _), _)| (a + p, n + 1.0));
            sum / n
        };
        assert!((rate("a", true) - rate("b", true)).abs() < 1e-9);
        assert!((rate("a", false) - rate("b", false)).abs() < 1e-9);
        assert!((rate("a", true) - t.target.get("true_positive_rate").unwrap()).abs() < 1e-9);
    }
}
