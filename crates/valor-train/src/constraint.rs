//! Fairness constraints (`demographic_parity <= 0.05`) and the pieces of
//! constrained training that do not touch tensors: the measured (hard
//! prediction) gap of each constraint, the projected gradient ascent of
//! the multipliers, and the bootstrap upper bound that checkpoint selection
//! compares with the bound.
//!
//! The method is the proxy-Lagrangian of Cotter, Jiang & Sridharan (2019,
//! "Two-Player Games for Efficient Non-Convex Constrained Optimization")
//! with the model player's side of Agarwal et al.'s reductions (2018,
//! fairlearn's `ExponentiatedGradient`). A constraint's gap on a group
//! column is the largest of signed rate differences between two groups
//! ([`constraint_terms`]: for demographic parity `P(ŷ = c | g) − P(ŷ = c |
//! h)` for every class `c` and ordered pair of groups), so the constraint
//! is the same as every term `<= bound`, and each term gets a multiplier
//! `μ_t >= 0`. The Lagrangian `error + Σ_t μ_t · term_t` is linear in the
//! predictions, so it is a cost per row and prediction
//! ([`prediction_costs`]: the row's weighted error, plus `μ_t / share` on
//! the term's class for rows of its high group and minus that for rows of
//! its low group); the model player minimises the cross-entropy of each
//! row's cheapest predictions, weighted by how much cheaper they are
//! ([`cost_target`]: the reduction of cost-sensitive to weighted
//! classification, which relabels a high group's positives and a low
//! group's negatives once their multiplier outweighs their error). Unlike
//! a penalty on a relaxed gap, this keeps raising the low group's rate, so
//! the model does not escape to a constant predictor (whose gap is 0). The
//! multiplier player raises `μ_t` by projected gradient ascent on the
//! *measured* violation `term_t(θ) − b`, where the term is computed from
//! hard (argmax) predictions on constraint batches drawn from training rows
//! held out of every gradient batch, so that the measured gap is a gap on
//! rows the model has not fitted ([`dual_update`]; the batches' counts are
//! decayed over steps, see [`decay_and_add`]). Because the multipliers see
//! the gap that will be reported (not its relaxation), they keep rising
//! until the real gap meets the bound.
//!
//! Gaps follow valor-fair's definitions (`max − min` over groups, the
//! largest over classes for several labels):
//! * demographic parity: `max_c (max_g P(ŷ = c | g) − min_g P(ŷ = c | g))`;
//!   for two labels fairlearn's `demographic_parity_difference`;
//! * equalized odds: the largest over classes of the one-vs-rest
//!   true-positive-rate and false-positive-rate gaps; for two labels
//!   fairlearn's `equalized_odds_difference`;
//! * equal opportunity: the true-positive-rate gap of the positive label
//!   (the second of two labels; fairlearn's `true_positive_rate_difference`),
//!   for more labels the largest recall gap over classes.

use serde::{Deserialize, Serialize};
use valor_base::splitmix::SplitMix64;
use valor_fair::ConfusionMatrix;

use crate::error::{Error, Result};

/// The gap a constraint bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintKind {
    DemographicParity,
    EqualizedOdds,
    EqualOpportunity,
}

impl ConstraintKind {
    /// The name used on the command line, in `values.toml` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            ConstraintKind::DemographicParity => "demographic_parity",
            ConstraintKind::EqualizedOdds => "equalized_odds",
            ConstraintKind::EqualOpportunity => "equal_opportunity",
        }
    }

    const ALL: [ConstraintKind; 3] = [
        ConstraintKind::DemographicParity,
        ConstraintKind::EqualizedOdds,
        ConstraintKind::EqualOpportunity,
    ];
}

/// `kind <= bound`: the gap of `kind` on every fairness group column stays
/// at or under `bound`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Constraint {
    pub kind: ConstraintKind,
    pub bound: f64,
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} <= {}", self.kind.name(), self.bound)
    }
}

impl std::str::FromStr for Constraint {
    type Err = Error;

    /// `NAME <= BOUND`, NAME one of `demographic_parity`, `equalized_odds`,
    /// `equal_opportunity` (hyphens allowed), BOUND in (0, 1].
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: String| {
            Error::config(
                "constraint",
                format!(
                    "`{s}` {why}; write NAME <= BOUND with NAME one of demographic_parity, equalized_odds, equal_opportunity and BOUND in (0, 1], e.g. `demographic_parity <= 0.05`"
                ),
            )
        };
        let (name, bound) = s
            .split_once("<=")
            .ok_or_else(|| bad("has no `<=`".into()))?;
        let name = name.trim().replace('-', "_");
        let kind = ConstraintKind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| bad(format!("names no known gap (`{name}`)")))?;
        let bound: f64 = bound.trim().parse().map_err(|_| {
            bad(format!(
                "has a bound `{}` that is not a number",
                bound.trim()
            ))
        })?;
        let c = Constraint { kind, bound };
        c.validate()?;
        Ok(c)
    }
}

impl Constraint {
    /// The bound must lie in (0, 1]: a gap of rates is in [0, 1], and a
    /// bound of 0 can only be met by a constant classifier.
    pub fn validate(&self) -> Result<()> {
        if self.bound.is_finite() && self.bound > 0.0 && self.bound <= 1.0 {
            Ok(())
        } else {
            Err(Error::config(
                "constraint",
                format!(
                    "`{}` has bound {}; it must lie in (0, 1]",
                    self.kind.name(),
                    self.bound
                ),
            ))
        }
    }
}

/// The gap of `kind` among the (non-empty) per-group confusion matrices;
/// `positive` is the positive label of a binary task. `None` when fewer
/// than two groups have the rows the gap needs.
pub fn measured_gap(
    kind: ConstraintKind,
    groups: &[ConfusionMatrix],
    positive: Option<usize>,
) -> Option<f64> {
    let k = groups.first()?.k();
    let cells: Vec<Vec<f64>> = groups
        .iter()
        .map(|m| m.cells().iter().map(|&c| c as f64).collect())
        .collect();
    gap_of_cells(kind, &cells, k, positive)
}

/// [`measured_gap`] on (possibly fractional, e.g. decayed) counts: one
/// row-major `k × k` (true × predicted) vector of cells per group.
pub fn gap_of_cells(
    kind: ConstraintKind,
    groups: &[Vec<f64>],
    k: usize,
    positive: Option<usize>,
) -> Option<f64> {
    let cell = |g: &[f64], t: usize, p: usize| g[t * k + p];
    let spread = |values: Vec<f64>| -> Option<f64> {
        (values.len() >= 2).then(|| {
            values.iter().copied().fold(f64::MIN, f64::max)
                - values.iter().copied().fold(f64::MAX, f64::min)
        })
    };
    let rate = |num: f64, den: f64| (den > 0.0).then(|| num / den);
    let per_class = |c: usize| -> Vec<Option<f64>> {
        let selection = || {
            spread(
                groups
                    .iter()
                    .filter_map(|g| rate((0..k).map(|t| cell(g, t, c)).sum(), g.iter().sum()))
                    .collect(),
            )
        };
        let tpr = || {
            spread(
                groups
                    .iter()
                    .filter_map(|g| rate(cell(g, c, c), (0..k).map(|p| cell(g, c, p)).sum()))
                    .collect(),
            )
        };
        let fpr = || {
            spread(
                groups
                    .iter()
                    .filter_map(|g| {
                        let negatives = (0..k).filter(|&t| t != c);
                        rate(
                            negatives.clone().map(|t| cell(g, t, c)).sum(),
                            negatives
                                .flat_map(|t| (0..k).map(move |p| (t, p)))
                                .map(|(t, p)| cell(g, t, p))
                                .sum(),
                        )
                    })
                    .collect(),
            )
        };
        match kind {
            ConstraintKind::DemographicParity => vec![selection()],
            ConstraintKind::EqualizedOdds => vec![tpr(), fpr()],
            ConstraintKind::EqualOpportunity => vec![tpr()],
        }
    };
    let classes: Vec<usize> = match (kind, positive) {
        (ConstraintKind::EqualOpportunity, Some(p)) => vec![p],
        _ => (0..k).collect(),
    };
    classes
        .into_iter()
        .flat_map(per_class)
        .flatten()
        .reduce(f64::max)
}

/// Exponentially decayed confusion counts per group of one column: the
/// memory of the constraint batches, on which each step measures the gap.
/// A gap measured on one small batch is biased upwards (a spread of noisy
/// rates), which would push the multipliers up even for a fair model; the
/// decayed counts of the last batches (weight `decay^s` for the batch `s`
/// steps ago, an effective window of `1 / (1 − decay)` batches) shrink the
/// noise while following the model. Each row is `(group, true label,
/// prediction, weight)`; a label-balanced batch weighs its rows back to
/// the labels' shares.
pub fn decay_and_add(
    cells: &mut [Vec<f64>],
    decay: f64,
    k: usize,
    rows: impl Iterator<Item = (usize, usize, usize, f64)>,
) {
    for g in cells.iter_mut() {
        g.iter_mut().for_each(|c| *c *= decay);
    }
    for (group, t, p, w) in rows {
        cells[group][t * k + p] += w;
    }
}

/// Projected gradient ascent of the multipliers: `μ_j ← max(0, μ_j + η ·
/// (g_j − b_j))` for every constraint whose gap was measured (`None`
/// leaves its multiplier as it is). A multiplier rises while its gap
/// exceeds the bound and falls, never below 0, while the gap is under it.
pub fn dual_update(multipliers: &mut [f64], gaps: &[Option<f64>], bounds: &[f64], lr: f64) {
    for ((mu, gap), bound) in multipliers.iter_mut().zip(gaps).zip(bounds) {
        if let Some(g) = gap {
            *mu = (*mu + lr * (g - bound)).max(0.0);
        }
    }
}

/// The rows a rate is taken over: every row (selection rate), the rows of
/// one true label (true-positive rate of that class), or the rows of every
/// other label (its false-positive rate, one-vs-rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowSet {
    All,
    Label(usize),
    NotLabel(usize),
}

impl RowSet {
    /// Whether a row of true label `y` is in the set.
    pub fn contains(self, y: usize) -> bool {
        match self {
            RowSet::All => true,
            RowSet::Label(l) => y == l,
            RowSet::NotLabel(l) => y != l,
        }
    }
}

/// One signed rate difference of a constraint on one group column:
/// `P(ŷ = class | rows, group high) − P(ŷ = class | rows, group low)`.
/// A constraint's gap is the largest of its terms ([`constraint_terms`]),
/// so `gap <= bound` is the same as every term `<= bound`; each term gets
/// its own multiplier, which is what lets the model player push the two
/// groups' rates towards each other instead of only shrinking a spread
/// (a max − min whose sub-gradient changes sides when the groups swap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateTerm {
    pub class: usize,
    pub rows: RowSet,
    pub high: usize,
    pub low: usize,
}

/// The terms of a constraint of `kind` with `k` labels over `groups`
/// groups, every ordered pair of distinct groups for each rate the gap
/// spans ([`gap_of_cells`]): demographic parity, the selection rate of
/// each class (of the positive label only for two labels, whose two
/// classes have the same gap); equalized odds, each class's true- and
/// false-positive rates (the positive label's for two labels: those of
/// the other label are one minus them); equal opportunity, the true-positive
/// rate of the positive label (two labels) or of every class.
pub fn constraint_terms(
    kind: ConstraintKind,
    k: usize,
    positive: Option<usize>,
    groups: usize,
) -> Vec<RateTerm> {
    let classes: Vec<usize> = match positive {
        Some(p) if k == 2 => vec![p],
        _ => (0..k).collect(),
    };
    let mut out = Vec::new();
    for c in classes {
        let sets: &[RowSet] = match kind {
            ConstraintKind::DemographicParity => &[RowSet::All],
            ConstraintKind::EqualizedOdds => &[RowSet::Label(c), RowSet::NotLabel(c)],
            ConstraintKind::EqualOpportunity => &[RowSet::Label(c)],
        };
        for &rows in sets {
            for high in 0..groups {
                for low in (0..groups).filter(|&l| l != high) {
                    out.push(RateTerm {
                        class: c,
                        rows,
                        high,
                        low,
                    });
                }
            }
        }
    }
    out
}

/// A term's value on (possibly decayed) counts, one row-major `k × k`
/// (true × predicted) vector of cells per group; `None` when either group
/// has no row in the term's set.
pub fn term_gap(term: &RateTerm, groups: &[Vec<f64>], k: usize) -> Option<f64> {
    let ((high, _), (low, _)) = term_rates(term, groups, k)?;
    Some(high - low)
}

/// A term's two rates, each with the (possibly decayed) count of rows it is
/// measured on: `((rate_high, rows_high), (rate_low, rows_low))`; `None`
/// when either group has no row in the term's set.
fn term_rates(term: &RateTerm, groups: &[Vec<f64>], k: usize) -> Option<((f64, f64), (f64, f64))> {
    let rate = |g: &[f64]| -> Option<(f64, f64)> {
        let (mut hit, mut all) = (0.0, 0.0);
        for t in (0..k).filter(|&t| term.rows.contains(t)) {
            hit += g[t * k + term.class];
            all += g[t * k..(t + 1) * k].iter().sum::<f64>();
        }
        (all > 0.0).then(|| (hit / all, all))
    };
    Some((rate(groups.get(term.high)?)?, rate(groups.get(term.low)?)?))
}

/// The Lagrangian's cost of each prediction for one training row (the
/// cost-sensitive reduction of Agarwal et al. 2018, fairlearn's
/// `ExponentiatedGradient`): the row's weighted error `weight · [c ≠ y]`
/// plus, for every term whose rows include it, `μ / share` on the term's
/// class when the row is in its high group and `− μ / share` when in its
/// low group, where `share` is that group's share of the training rows in
/// the term's set (so `Σ μ · (rate_high − rate_low)` over the training
/// rows is the sum of these costs over rows, divided by their number).
/// `terms` pairs each term with its multiplier and its two groups' shares.
pub fn prediction_costs(
    k: usize,
    label: usize,
    weight: f64,
    group: usize,
    terms: impl Iterator<Item = (RateTerm, f64, (f64, f64))>,
) -> Vec<f64> {
    let mut costs: Vec<f64> = (0..k)
        .map(|c| if c == label { 0.0 } else { weight })
        .collect();
    for (term, mu, (high_share, low_share)) in terms {
        if mu <= 0.0 || !term.rows.contains(label) {
            continue;
        }
        if group == term.high && high_share > 0.0 {
            costs[term.class] += mu / high_share;
        } else if group == term.low && low_share > 0.0 {
            costs[term.class] -= mu / low_share;
        }
    }
    costs
}

/// The cross-entropy target and weight that carry a row's prediction
/// costs: the cheapest predictions share the target's mass equally, and
/// the weight is how much cheaper they are than the next cheapest (the
/// reduction of cost-sensitive to weighted classification; the log-loss
/// is its surrogate). A row with costs `weight · [c ≠ y]` keeps target
/// `y` and weight `weight`; equal costs give weight 0.
pub fn cost_target(costs: &[f64]) -> (Vec<f64>, f64) {
    let min = costs.iter().copied().fold(f64::INFINITY, f64::min);
    let tie = |c: f64| c - min <= 1e-12 * (1.0 + min.abs());
    let cheapest = costs.iter().filter(|&&c| tie(c)).count();
    let next = costs
        .iter()
        .copied()
        .filter(|&c| !tie(c))
        .fold(f64::INFINITY, f64::min);
    let target = costs
        .iter()
        .map(|&c| if tie(c) { 1.0 / cheapest as f64 } else { 0.0 })
        .collect();
    let weight = if next.is_finite() { next - min } else { 0.0 };
    (target, weight)
}

/// The multipliers the loss uses: `max(0, μ_j + gain · (g_j − b_j))`, the
/// integral `μ_j` of [`dual_update`] plus a proportional answer to the
/// last measured violation (`None` leaves `μ_j`). With `gain` 0 these are
/// the multipliers themselves.
pub fn applied_multipliers(
    multipliers: &[f64],
    gaps: &[Option<f64>],
    bounds: &[f64],
    gain: f64,
) -> Vec<f64> {
    multipliers
        .iter()
        .zip(gaps)
        .zip(bounds)
        .map(|((&mu, gap), bound)| match gap {
            Some(g) => (mu + gain * (g - bound)).max(0.0),
            None => mu,
        })
        .collect()
}

/// A gap measured on a split, with its bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GapInterval {
    /// The gap on the split's rows.
    pub gap: f64,
    /// The lower and upper quantiles of the bootstrap distribution of the
    /// gap (rows resampled with replacement), at the stated level.
    pub lower: f64,
    pub upper: f64,
    /// Resamples where the gap was defined.
    pub resamples_used: usize,
}

/// The gap of `kind` on per-group confusion matrices (all of the same
/// size), with the `lower_q` and `upper_q` quantiles of its bootstrap
/// distribution: `resamples` times, the split's rows are drawn with
/// replacement (seeded SplitMix64 draws over the (group, true, predicted)
/// cells, which is the row bootstrap) and the gap recomputed. `None` when
/// the gap is undefined on the split itself.
pub fn bootstrap_gap(
    kind: ConstraintKind,
    groups: &[ConfusionMatrix],
    positive: Option<usize>,
    resamples: usize,
    seed: u64,
    (lower_q, upper_q): (f64, f64),
) -> Option<GapInterval> {
    let gap = measured_gap(kind, groups, positive)?;
    let k = groups.first()?.k();
    let mut values = Vec::with_capacity(resamples);
    resample(groups, resamples, seed, |cells| {
        if let Some(g) = gap_of_cells(kind, cells, k, positive) {
            values.push(g);
        }
    });
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(GapInterval {
        gap,
        lower: quantile(&values, lower_q),
        upper: quantile(&values, upper_q),
        resamples_used: values.len(),
    })
}

/// The one-sided margin of a constraint on a split: the largest over its
/// terms ([`constraint_terms`]) of the `level` quantile of the term's
/// bootstrap distribution (the same row bootstrap as [`bootstrap_gap`]).
/// It is at or under the bound exactly when every term's one-sided
/// bootstrap test says "at or under the bound" at that level, which by
/// the intersection-union principle (Berger 1982) is a test of the whole
/// constraint at the same level, without a multiplicity correction. The
/// quantile of the gap itself (a largest spread of noisy rates) is biased
/// upwards: on 600 rows a three-label model with a validation gap of 0.007
/// had its 80% quantile at 0.065, so no fair model could pass a 0.05 bound.
/// `None` when no term is defined on the split.
pub fn bootstrap_margin(
    kind: ConstraintKind,
    groups: &[ConfusionMatrix],
    positive: Option<usize>,
    resamples: usize,
    seed: u64,
    level: f64,
) -> Option<f64> {
    let k = groups.first()?.k();
    let terms = constraint_terms(kind, k, positive, groups.len());
    let cells: Vec<Vec<f64>> = groups
        .iter()
        .map(|m| m.cells().iter().map(|&c| c as f64).collect())
        .collect();
    let defined: Vec<bool> = terms
        .iter()
        .map(|t| term_gap(t, &cells, k).is_some())
        .collect();
    let mut values = vec![Vec::with_capacity(resamples); terms.len()];
    resample(groups, resamples, seed, |cells| {
        for ((t, v), &d) in terms.iter().zip(&mut values).zip(&defined) {
            if let (true, Some(g)) = (d, term_gap(t, cells, k)) {
                v.push(g);
            }
        }
    });
    values
        .into_iter()
        .filter(|v| !v.is_empty())
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            quantile(&v, level)
        })
        .reduce(f64::max)
}

/// `resamples` row bootstraps of per-group confusion matrices: each draws
/// as many rows as the matrices hold, with replacement (seeded SplitMix64
/// draws over the (group, true, predicted) cells), and hands `visit` the
/// resampled cells, one row-major `k × k` vector per group.
fn resample(
    groups: &[ConfusionMatrix],
    resamples: usize,
    seed: u64,
    mut visit: impl FnMut(&[Vec<f64>]),
) {
    let Some(k) = groups.first().map(ConfusionMatrix::k) else {
        return;
    };
    let cells: Vec<u64> = groups.iter().flat_map(|m| m.cells().to_vec()).collect();
    let n: u64 = cells.iter().sum();
    let mut cumulative = Vec::with_capacity(cells.len());
    let mut acc = 0u64;
    for c in &cells {
        acc += c;
        cumulative.push(acc);
    }
    let mut rng = SplitMix64::new(seed);
    let mut drawn = vec![0u64; cells.len()];
    for _ in 0..resamples {
        drawn.iter_mut().for_each(|d| *d = 0);
        for _ in 0..n {
            let r = rng.next() % n;
            let cell = cumulative.partition_point(|&c| c <= r);
            drawn[cell] += 1;
        }
        let resampled: Vec<Vec<f64>> = drawn
            .chunks(k * k)
            .map(|g| g.iter().map(|&x| x as f64).collect())
            .collect();
        visit(&resampled);
    }
}

/// numpy's default (linear) percentile of sorted values, `q` in [0, 1].
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// How far the validation margin lies above a demographic-parity term's
/// difference: the `confidence` quantile of a normal approximation to the
/// bootstrap spread of a difference of two selection rates `rate` measured
/// on `n_high` and `n_low` rows, `z · √(rate (1 − rate) (1/n_high +
/// 1/n_low))`. Both signed differences of a pair carry it, so when it
/// exceeds the bound no model's margin can meet the bound on those rows
/// (a difference of 0 already misses). With 300 rows a group and a rate
/// of 0.25 it is 0.030 at 80%.
pub fn parity_resolution(rate: f64, n_high: usize, n_low: usize, confidence: f64) -> f64 {
    if n_high == 0 || n_low == 0 {
        return f64::INFINITY;
    }
    let var = rate * (1.0 - rate) * (1.0 / n_high as f64 + 1.0 / n_low as f64);
    normal_quantile(confidence) * var.sqrt()
}

/// How often a model that treats the groups alike would meet a
/// constraint's selection margin on the validation rows: the share of
/// `draws` simulated validation predictions on which the largest over
/// `terms` of `difference + z · sd` (the normal approximation of each
/// term's one-sided bootstrap quantile at `confidence`, as
/// [`bootstrap_margin`] takes it, with `sd` from the simulated rates) is at
/// or under `bound`. `rows` holds each validation row's (group, true
/// label) on one column. The simulated model draws each row's prediction
/// from the same distribution in every group: for demographic parity the
/// validation rows' label shares; for the odds, the row's own label with
/// probability 0.5 and the others in proportion to their shares (true- and
/// false-positive rates near 0.5, where a rate difference is noisiest).
/// Where [`parity_resolution`] looks at one difference that came out at 0,
/// this counts the chance noise that makes the largest of several signed
/// differences (three labels' selection rates, or the true- and
/// false-positive rates of equalized odds) come out above the bound: with
/// 600 rows in two groups of 300, a binary demographic parity bound of
/// 0.05 and a label share of 0.25, about 0.43 at 80% (`2 Φ(b / σ − z) −
/// 1`). Seeded, so the same rows give the same share.
#[allow(clippy::too_many_arguments)]
pub fn null_margin_pass_rate(
    kind: ConstraintKind,
    terms: &[RateTerm],
    rows: &[(usize, usize)],
    k: usize,
    bound: f64,
    confidence: f64,
    draws: usize,
    seed: u64,
) -> f64 {
    let groups = rows.iter().map(|&(g, _)| g + 1).max().unwrap_or(0);
    if groups < 2 || draws == 0 || k < 2 {
        return 0.0;
    }
    let mut shares = vec![0.0; k];
    for &(_, y) in rows {
        shares[y] += 1.0 / rows.len() as f64;
    }
    // Cumulative prediction distribution for each true label.
    let cumulative: Vec<Vec<f64>> = (0..k)
        .map(|y| {
            let q: Vec<f64> = match kind {
                ConstraintKind::DemographicParity => shares.clone(),
                ConstraintKind::EqualizedOdds | ConstraintKind::EqualOpportunity => {
                    let others = 1.0 - shares[y];
                    (0..k)
                        .map(|c| match (c == y, others > 0.0) {
                            (true, _) => 0.5,
                            (false, true) => 0.5 * shares[c] / others,
                            (false, false) => 0.5 / (k - 1) as f64,
                        })
                        .collect()
                }
            };
            q.iter()
                .scan(0.0, |acc, &p| {
                    *acc += p;
                    Some(*acc)
                })
                .collect()
        })
        .collect();
    let z = normal_quantile(confidence);
    let mut rng = SplitMix64::new(seed);
    let mut met = 0usize;
    let mut cells = vec![vec![0.0; k * k]; groups];
    for _ in 0..draws {
        cells.iter_mut().for_each(|c| c.fill(0.0));
        for &(g, y) in rows {
            let u = (rng.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
            let c = cumulative[y].iter().position(|&p| u < p).unwrap_or(k - 1);
            cells[g][y * k + c] += 1.0;
        }
        let margin = terms
            .iter()
            .filter_map(|t| term_rates(t, &cells, k))
            .map(|((rh, nh), (rl, nl))| {
                rh - rl + z * (rh * (1.0 - rh) / nh + rl * (1.0 - rl) / nl).sqrt()
            })
            .reduce(f64::max);
        if margin.is_some_and(|m| m <= bound) {
            met += 1;
        }
    }
    met as f64 / draws as f64
}

/// The standard normal quantile of `p` in (0, 1), by bisection on the
/// distribution function (to 1e-10).
fn normal_quantile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0_f64, 10.0_f64);
    while hi - lo > 1e-10 {
        let mid = 0.5 * (lo + hi);
        if normal_cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The standard normal distribution function, through the error function
/// of Abramowitz & Stegun 7.1.26 (absolute error under 1.5e-7).
fn normal_cdf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-z * z).exp();
    if x >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(rows: &[[u64; 2]; 2]) -> ConfusionMatrix {
        ConfusionMatrix::from_rows(&rows.iter().map(|r| r.to_vec()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn constraints_parse_and_print() {
        let c: Constraint = "demographic_parity <= 0.05".parse().unwrap();
        assert_eq!(c.kind, ConstraintKind::DemographicParity);
        assert_eq!(c.bound, 0.05);
        assert_eq!(c.to_string(), "demographic_parity <= 0.05");
        let c: Constraint = "equal-opportunity<=0.1".parse().unwrap();
        assert_eq!(c.kind, ConstraintKind::EqualOpportunity);
        for (bad, want) in [
            ("demographic_parity < 0.05", "has no `<=`"),
            ("parity <= 0.05", "names no known gap"),
            ("equalized_odds <= x", "not a number"),
            ("equalized_odds <= 0", "must lie in (0, 1]"),
            ("equalized_odds <= 1.5", "must lie in (0, 1]"),
        ] {
            let e = bad.parse::<Constraint>().unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("constraint"), "{bad}: {e}");
        }
    }

    /// Two groups, binary; rows [true][pred]. Group a: 10 positives of
    /// which 8 predicted positive, 10 negatives of which 2; group b: 10
    /// positives, 4 predicted; 10 negatives, 1.
    #[test]
    fn measured_gaps_follow_fairlearn() {
        let a = matrix(&[[8, 2], [2, 8]]);
        let b = matrix(&[[9, 1], [6, 4]]);
        let g = [a, b];
        // Selection rates: a 10/20, b 5/20.
        let dp = measured_gap(ConstraintKind::DemographicParity, &g, Some(1)).unwrap();
        assert!((dp - 0.25).abs() < 1e-12);
        // TPR 0.8 vs 0.4, FPR 0.2 vs 0.1.
        let eo = measured_gap(ConstraintKind::EqualizedOdds, &g, Some(1)).unwrap();
        assert!((eo - 0.4).abs() < 1e-12);
        let eop = measured_gap(ConstraintKind::EqualOpportunity, &g, Some(1)).unwrap();
        assert!((eop - 0.4).abs() < 1e-12);
        // One group: undefined.
        assert_eq!(
            measured_gap(ConstraintKind::DemographicParity, &g[..1], Some(1)),
            None
        );
    }

    /// Three labels: the gaps are the ones the training report computes
    /// (`crate::metrics`), and decayed counts weigh old batches less.
    #[test]
    fn multiclass_gaps_match_the_report_and_decay() {
        let m = |rows: [[u64; 3]; 3]| {
            ConfusionMatrix::from_rows(&rows.iter().map(|r| r.to_vec()).collect::<Vec<_>>())
                .unwrap()
        };
        let g = [
            m([[5, 2, 1], [1, 6, 2], [0, 3, 4]]),
            m([[3, 3, 2], [2, 2, 1], [1, 1, 9]]),
        ];
        let dp = measured_gap(ConstraintKind::DemographicParity, &g, None).unwrap();
        let want = crate::metrics::selection_rate_gaps(&g)
            .into_iter()
            .flatten()
            .fold(0.0, f64::max);
        assert!((dp - want).abs() < 1e-12);
        let eo = measured_gap(ConstraintKind::EqualizedOdds, &g, None).unwrap();
        assert!((eo - crate::metrics::equalized_odds_gap(&g).unwrap()).abs() < 1e-12);
        let eop = measured_gap(ConstraintKind::EqualOpportunity, &g, None).unwrap();
        // Recalls a: 5/8 vs 3/8; b: 6/9 vs 2/5; c: 4/7 vs 9/11.
        let want: f64 = [0.25, 6.0 / 9.0 - 0.4, 9.0 / 11.0 - 4.0 / 7.0]
            .into_iter()
            .fold(0.0, f64::max);
        assert!((eop - want).abs() < 1e-12);

        // Binary, two groups: one batch where group 0 selects everyone,
        // then (decay 0.5) two where both select half.
        let mut cells = vec![vec![0.0; 4]; 2];
        decay_and_add(
            &mut cells,
            0.5,
            2,
            [
                (0, 0, 1, 1.0),
                (0, 1, 1, 1.0),
                (1, 0, 0, 1.0),
                (1, 1, 1, 1.0),
            ]
            .into_iter(),
        );
        let first = gap_of_cells(ConstraintKind::DemographicParity, &cells, 2, Some(1)).unwrap();
        assert!((first - 0.5).abs() < 1e-12);
        for _ in 0..2 {
            decay_and_add(
                &mut cells,
                0.5,
                2,
                [
                    (0, 0, 0, 1.0),
                    (0, 1, 1, 1.0),
                    (1, 0, 0, 1.0),
                    (1, 1, 1, 1.0),
                ]
                .into_iter(),
            );
        }
        let later = gap_of_cells(ConstraintKind::DemographicParity, &cells, 2, Some(1)).unwrap();
        // Group 0 selected 0.25·2 + 0.5 + 1 = 2 of 3.5 rows, group 1 1.75 of 3.5.
        assert!((later - (2.0 / 3.5 - 0.5)).abs() < 1e-12, "{later}");
    }

    #[test]
    fn dual_update_rises_over_the_bound_and_falls_to_zero_under_it() {
        let mut mu = [0.0, 1.0, 0.2];
        dual_update(
            &mut mu,
            &[Some(0.3), Some(0.0), None],
            &[0.1, 0.1, 0.1],
            1.0,
        );
        assert!((mu[0] - 0.2).abs() < 1e-12, "raised by the excess");
        assert!((mu[1] - 0.9).abs() < 1e-12, "lowered by the slack");
        assert_eq!(mu[2], 0.2, "no measurement, no change");
        dual_update(
            &mut mu,
            &[Some(0.0), Some(0.0), None],
            &[0.5, 0.5, 0.1],
            10.0,
        );
        assert_eq!(mu[..2], [0.0, 0.0], "projected onto μ >= 0");
    }

    /// The Lagrangian game on a problem with a known solution: minimise
    /// `(x − 1)²` subject to `x <= 0.5`. KKT: `x* = 0.5`, `μ* = 1`
    /// (`2(x − 1) + μ = 0`). The model player takes gradient steps on `(x −
    /// 1)² + μ x`, the multiplier player [`dual_update`]s on the measured
    /// constraint `x` against the bound 0.5; the averaged iterates converge
    /// to the solution and the multiplier to its KKT value.
    #[test]
    fn the_game_finds_the_known_solution() {
        let (mut x, mut mu) = (1.0f64, [0.0f64]);
        let (steps, mut x_avg, mut mu_avg) = (20_000, 0.0, 0.0);
        for t in 0..steps {
            x -= 0.01 * (2.0 * (x - 1.0) + mu[0]);
            dual_update(&mut mu, &[Some(x)], &[0.5], 0.01);
            if t >= steps / 2 {
                x_avg += x / (steps / 2) as f64;
                mu_avg += mu[0] / (steps / 2) as f64;
            }
        }
        assert!((x_avg - 0.5).abs() < 1e-3, "x = {x_avg}");
        assert!((mu_avg - 1.0).abs() < 1e-2, "μ = {mu_avg}");
        assert!(mu[0] > 0.0);
    }

    /// A constraint's gap is the largest of its terms, on random counts
    /// with two and three labels and two to four groups (some groups
    /// missing labels), for every kind.
    #[test]
    fn the_terms_span_the_gap() {
        let mut rng = SplitMix64::new(11);
        for trial in 0..400 {
            let k = 2 + trial % 2;
            let groups = 2 + (trial / 2) % 3;
            let positive = (k == 2).then_some(1);
            let cells: Vec<Vec<f64>> = (0..groups)
                .map(|_| {
                    (0..k * k)
                        .map(|_| match rng.next() % 5 {
                            0 => 0.0,
                            r => (rng.next() % 50) as f64 * r as f64 * 0.37,
                        })
                        .collect()
                })
                .collect();
            for kind in ConstraintKind::ALL {
                let terms = constraint_terms(kind, k, positive, groups);
                let by_terms = terms
                    .iter()
                    .filter_map(|t| term_gap(t, &cells, k))
                    .reduce(f64::max);
                let gap = gap_of_cells(kind, &cells, k, positive);
                match (by_terms, gap) {
                    (Some(a), Some(b)) => assert!((a - b).abs() < 1e-12, "{kind:?} {a} {b}"),
                    (a, b) => assert_eq!(a, b, "{kind:?} {cells:?}"),
                }
            }
        }
        let t = constraint_terms(ConstraintKind::EqualizedOdds, 2, Some(1), 2);
        assert_eq!(t.len(), 4, "TPR and FPR of the positive label, both orders");
        assert_eq!(
            constraint_terms(ConstraintKind::DemographicParity, 3, None, 3).len(),
            18
        );
    }

    /// Binary demographic parity, group 0 selected more than group 1
    /// (shares 0.6 and 0.4): with μ on "rate 0 − rate 1", group 0's
    /// positives cost `μ / 0.6` more to predict positive and group 1's
    /// `μ / 0.4` less; past the row's own error weight, the target flips
    /// (group 0's positives to negative, group 1's negatives to positive).
    #[test]
    fn multipliers_move_targets_between_labels() {
        let term = constraint_terms(ConstraintKind::DemographicParity, 2, Some(1), 2)[0];
        assert_eq!((term.high, term.low, term.class), (0, 1, 1));
        let costs = |label, group, mu| {
            prediction_costs(2, label, 1.0, group, [(term, mu, (0.6, 0.4))].into_iter())
        };
        assert_eq!(cost_target(&costs(1, 0, 0.0)), (vec![0.0, 1.0], 1.0));
        let (t, w) = cost_target(&costs(1, 0, 0.3));
        assert_eq!(t, vec![0.0, 1.0]);
        assert!((w - 0.5).abs() < 1e-12, "{w}");
        let (t, w) = cost_target(&costs(1, 0, 0.9));
        assert_eq!(t, vec![1.0, 0.0], "a positive of the high group relabelled");
        assert!((w - 0.5).abs() < 1e-12, "{w}");
        let (t, w) = cost_target(&costs(0, 1, 0.6));
        assert_eq!(t, vec![0.0, 1.0], "a negative of the low group relabelled");
        assert!((w - 0.5).abs() < 1e-12, "{w}");
        // The low group's positives only get surer; other rows' groups
        // and a zero multiplier change nothing.
        assert_eq!(cost_target(&costs(1, 1, 0.6)).0, vec![0.0, 1.0]);
        assert_eq!(costs(0, 2, 5.0), vec![0.0, 1.0]);
        // Equal costs: no target to prefer, weight 0.
        let (t, w) = cost_target(&[0.5, 0.5, 0.5]);
        assert_eq!((t.iter().sum::<f64>(), w), (1.0, 0.0));
        // An equal-opportunity term only touches the rows of its label.
        let eop = constraint_terms(ConstraintKind::EqualOpportunity, 2, Some(1), 2)[0];
        let c = prediction_costs(2, 0, 1.0, 0, [(eop, 2.0, (0.3, 0.3))].into_iter());
        assert_eq!(c, vec![0.0, 1.0]);
    }

    /// A gap that follows its multiplier with a lag (first order, 50
    /// steps; the gap closes at a multiplier of 0.42) and is measured
    /// through decayed counts, as a model's is: the integral alone
    /// overshoots to the other side of the bound; with the proportional
    /// term the gap settles within 0.01 of the target and never crosses
    /// below −0.01.
    #[test]
    fn a_proportional_term_damps_the_overshoot() {
        let run = |lr: f64, gain: f64| {
            let (target, mut gap, mut measured) = (0.015, 0.25, 0.25);
            let mut mu = [0.0, 0.0];
            let mut path = Vec::new();
            for _ in 0..400 {
                let gaps = [Some(measured), Some(-measured)];
                let applied = applied_multipliers(&mu, &gaps, &[target; 2], gain);
                let lambda = applied[0] - applied[1];
                gap += (0.25 - 0.6 * lambda - gap) / 50.0;
                measured = 0.97 * measured + 0.03 * gap;
                dual_update(
                    &mut mu,
                    &[Some(measured), Some(-measured)],
                    &[target; 2],
                    lr,
                );
                path.push(gap);
            }
            path
        };
        let integral = run(0.02, 0.0);
        assert!(
            integral.iter().copied().fold(f64::MAX, f64::min) < -0.03,
            "the integral alone crosses over"
        );
        let pi = run(0.02, 1.5);
        assert!(pi.iter().all(|&g| g > -0.01), "{pi:?}");
        assert!((pi[399] - 0.015).abs() < 0.01, "{}", pi[399]);
        assert_eq!(
            applied_multipliers(
                &[0.2, 0.0, 0.3],
                &[Some(0.1), Some(-0.1), None],
                &[0.05; 3],
                2.0
            ),
            vec![0.2 + 2.0 * 0.05, 0.0, 0.3]
        );
    }

    /// Three labels, two groups of 300 rows with the same predicted rates
    /// (gap 0): the quantile of the gap sits far above 0 (a largest
    /// spread of noise), the margin of the signed terms near `0.84 · SD`
    /// of one rate difference (about 0.03 here). With a real gap the
    /// margin lies above it, and it is seeded.
    #[test]
    fn the_margin_tests_signed_terms_not_the_spread() {
        let m = |rows: &[[u64; 3]; 3]| {
            ConfusionMatrix::from_rows(&rows.iter().map(|r| r.to_vec()).collect::<Vec<_>>())
                .unwrap()
        };
        let fair = [
            m(&[[60, 20, 20], [20, 60, 20], [20, 20, 60]]),
            m(&[[60, 20, 20], [20, 60, 20], [20, 20, 60]]),
        ];
        let kind = ConstraintKind::DemographicParity;
        let spread = bootstrap_gap(kind, &fair, None, 1000, 5, (0.2, 0.8)).unwrap();
        assert_eq!(spread.gap, 0.0);
        assert!(spread.upper > 0.05, "{spread:?}");
        let margin = bootstrap_margin(kind, &fair, None, 1000, 5, 0.8).unwrap();
        assert!(margin > 0.01 && margin < 0.04, "{margin}");
        assert!(margin < spread.upper);
        assert_eq!(
            bootstrap_margin(kind, &fair, None, 1000, 5, 0.8),
            Some(margin),
            "seeded"
        );
        let unfair = [
            m(&[[80, 10, 10], [20, 60, 20], [20, 20, 60]]),
            m(&[[60, 20, 20], [20, 60, 20], [20, 20, 60]]),
        ];
        let gap = measured_gap(kind, &unfair, None).unwrap();
        let margin = bootstrap_margin(kind, &unfair, None, 1000, 5, 0.8).unwrap();
        assert!(margin > gap && margin < gap + 0.05, "{gap} {margin}");
        assert_eq!(
            bootstrap_margin(kind, &unfair[..1], None, 100, 5, 0.8),
            None
        );
    }

    #[test]
    fn bootstrap_interval_brackets_the_gap_and_is_seeded() {
        let g = [matrix(&[[40, 10], [10, 40]]), matrix(&[[45, 5], [20, 30]])];
        let kind = ConstraintKind::DemographicParity;
        let a = bootstrap_gap(kind, &g, Some(1), 500, 7, (0.025, 0.975)).unwrap();
        let b = bootstrap_gap(kind, &g, Some(1), 500, 7, (0.025, 0.975)).unwrap();
        assert_eq!(a, b);
        assert!((a.gap - 0.15).abs() < 1e-12);
        assert!(a.lower < a.gap && a.gap < a.upper, "{a:?}");
        // sd of the gap ≈ sqrt(2 · 0.25 / 100) ≈ 0.07: the 95% interval is
        // about ±0.14 wide.
        assert!(a.upper - a.lower > 0.15 && a.upper - a.lower < 0.4, "{a:?}");
        assert_eq!(a.resamples_used, 500);
        // A constant classifier has no gap in any resample.
        let flat = [matrix(&[[50, 0], [50, 0]]), matrix(&[[30, 0], [70, 0]])];
        let c = bootstrap_gap(kind, &flat, Some(1), 100, 1, (0.025, 0.975)).unwrap();
        assert_eq!((c.gap, c.lower, c.upper), (0.0, 0.0, 0.0));
    }

    #[test]
    fn the_parity_resolution_follows_the_normal_quantile() {
        assert!((normal_quantile(0.8) - 0.841_621).abs() < 1e-5);
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-5);
        assert!(normal_quantile(0.5).abs() < 1e-6);
        let r = parity_resolution(0.25, 300, 300, 0.8);
        assert!(
            (r - 0.841_621 * (0.1875_f64 * 2.0 / 300.0).sqrt()).abs() < 1e-5,
            "{r}"
        );
        assert!((0.029..0.030).contains(&r));
        // Four times the rows halve it; an empty group cannot be measured.
        assert!((parity_resolution(0.25, 1200, 1200, 0.8) - r / 2.0).abs() < 1e-9);
        assert_eq!(parity_resolution(0.25, 0, 300, 0.8), f64::INFINITY);
    }

    #[test]
    fn a_fair_models_chance_of_meeting_the_margin_is_simulated() {
        use ConstraintKind::*;
        // Two labels, share 0.25 positive, 300 rows a group: the margin is
        // |D| + z·sd with D ~ N(0, σ²), so the chance is 2Φ(b/σ − z) − 1.
        let rows: Vec<(usize, usize)> = (0..600)
            .map(|i| (i % 2, usize::from(i % 4 < 2 && i % 8 < 4)))
            .collect();
        let positive = rows.iter().filter(|r| r.1 == 1).count();
        assert_eq!(positive, 150);
        let terms = constraint_terms(DemographicParity, 2, Some(1), 2);
        let sigma = (0.1875_f64 * 2.0 / 300.0).sqrt();
        let want = 2.0 * normal_cdf(0.05 / sigma - normal_quantile(0.8)) - 1.0;
        assert!((want - 0.433).abs() < 0.005, "{want}");
        let got = null_margin_pass_rate(DemographicParity, &terms, &rows, 2, 0.05, 0.8, 4000, 1);
        assert!(
            (got - want).abs() < 0.03,
            "simulated {got}, closed form {want}"
        );
        assert_eq!(
            got,
            null_margin_pass_rate(DemographicParity, &terms, &rows, 2, 0.05, 0.8, 4000, 1),
            "seeded"
        );
        // A level of 0.5 (the point estimate) and a looser bound pass more often.
        let half = null_margin_pass_rate(DemographicParity, &terms, &rows, 2, 0.05, 0.5, 4000, 1);
        let want_half = 2.0 * normal_cdf(0.05 / sigma) - 1.0;
        assert!(
            (half - want_half).abs() < 0.03,
            "{half} against {want_half}"
        );
        let loose = null_margin_pass_rate(DemographicParity, &terms, &rows, 2, 0.10, 0.8, 4000, 1);
        let want_loose = 2.0 * normal_cdf(0.10 / sigma - normal_quantile(0.8)) - 1.0;
        assert!(
            (loose - want_loose).abs() < 0.03 && loose > got,
            "{loose} against {want_loose}"
        );

        // Three labels in equal shares on the same rows: the largest of
        // three classes' differences is likelier to exceed the bound than
        // the one difference of two labels.
        let three: Vec<(usize, usize)> = (0..600).map(|i| (i % 2, (i / 2) % 3)).collect();
        let terms3 = constraint_terms(DemographicParity, 3, None, 2);
        assert_eq!(terms3.len(), 6);
        let got3 = null_margin_pass_rate(DemographicParity, &terms3, &three, 3, 0.05, 0.8, 4000, 1);
        let two: Vec<(usize, usize)> = three
            .iter()
            .map(|&(g, y)| (g, usize::from(y == 0)))
            .collect();
        let got2 = null_margin_pass_rate(DemographicParity, &terms, &two, 2, 0.05, 0.8, 4000, 1);
        assert!(got3 + 0.1 < got2, "three labels {got3}, two {got2}");

        // Equalized odds: the true- and false-positive rates near 0.5 on a
        // label's rows, both bounded: below equal opportunity's one rate.
        let odds = null_margin_pass_rate(
            EqualizedOdds,
            &constraint_terms(EqualizedOdds, 2, Some(1), 2),
            &rows,
            2,
            0.10,
            0.8,
            4000,
            1,
        );
        let opportunity = null_margin_pass_rate(
            EqualOpportunity,
            &constraint_terms(EqualOpportunity, 2, Some(1), 2),
            &rows,
            2,
            0.10,
            0.8,
            4000,
            1,
        );
        assert!(
            odds < opportunity && opportunity < 0.5,
            "{odds} {opportunity}"
        );
        // One group: nothing to compare, never met.
        let one: Vec<(usize, usize)> = rows.iter().map(|&(_, y)| (0, y)).collect();
        assert_eq!(
            null_margin_pass_rate(DemographicParity, &terms, &one, 2, 0.05, 0.8, 100, 1),
            0.0
        );
    }
}
