//! The search planner: where `valor remodel` should look next.
//!
//! The planner turns the algebra into decisions. It keeps the baseline `V0`,
//! the target `V_D` and every measured candidate, and on each
//! [`Planner::propose`] returns:
//!
//! * the **anchor** `A`: the measured profile nearest to `V_D` so far (the
//!   baseline at first). Remodel warm-starts the next candidate from the
//!   anchor's checkpoint.
//! * the **goal** `T_k`, a rung of the target ladder built with the seed's
//!   adjustment: `T_1 = alpha V_D + (1 - alpha) V0`,
//!   `T_{k+1} = alpha V_D + (1 - alpha) T_k`. For the norm metrics
//!   `d(T_k, V_D) = (1 - alpha)^k d(V0, V_D)`, so the rungs step from `V0`
//!   to `V_D` gradually. The ladder climbs a rung whenever the anchor is at
//!   least as close to `V_D` as the current rung (several at once if a
//!   candidate jumps ahead); a rung within `tolerance` of `V_D` is `V_D`.
//! * the **search point** `S = Π(A - eta (A - T_k))`: one step of the seed's
//!   solver on `L(V) = 1/2 ‖V - T_k‖^2` from the anchor, clamped to the box.
//!   This is the profile the next candidate should aim for.
//! * a **status**: keep searching, `V_D` reached (the anchor is within
//!   `tolerance` of `V_D` or meets every target), the candidate budget is
//!   spent, or `V_D` is out of reach (`patience` candidates in a row did not
//!   get closer to `V_D`).
//!
//! `valor remodel` turns the search point into a lever setting directly: its
//! fairness coordinate `f` becomes the constraint bound `gap <= 1 - f` of a
//! constrained retraining. For a lever with a grid of settings instead,
//! [`Planner::next_lambda`] picks the setting whose predicted
//! profile is nearest the search point: profiles measured at the tried
//! fairness-penalty weights `λ` are interpolated linearly in `λ` (and
//! extrapolated from the two outermost), and the untried `λ` of the grid
//! whose prediction is nearest `S` wins (ties: the smallest `λ`, the least
//! intervention). So the direction in which each measured candidate moved the
//! profile decides the next `λ`.
//!
//! How `valor remodel` uses it:
//!
//! ```text
//! spec.check_available(..)?                          fail fast on unmeasurable dimensions
//! p0 = measure(&baseline_validation_eval, &spec)?    V0
//! (space, not_measured) = spec.space().measured_in(&[&p0])?
//! planner = Planner::new(space, space.vector(&p0)?, spec.target_vector(&space)?, spec.search())?
//! loop {
//!     proposal = planner.propose()?
//!     if proposal.status != Search { break }
//!     f = the search point's fairness; bound = 1 - f (never under V_D's own gap)
//!         (a bound already tried: step halfway to V_D's gap, or stop)
//!     train from the anchor's checkpoint with the constraint `gap <= bound`;
//!     measure on validation; planner.record(space.vector(&profile)?)?
//! }
//! reweighing / thresholds from the anchor
//! selection = select(&spec, &p0, &candidates)?        V_T, Pareto front, hull bound
//! confirm on test; RemodelReport::new(&selection, test, planner.history(), provenance)
//! ```
//!
//! [`Planner::hull_bound`] projects `V_D` onto the convex hull of everything
//! measured: if even that point is far from `V_D`, no mixture of the measured
//! models reaches it either.

use serde::{Deserialize, Serialize};

use crate::algebra::{blend, project_box};
use crate::error::{Error, Result};
use crate::hull::{HullOptions, HullProjection};
use crate::space::{ValueSpace, ValueVector};
use crate::spec::SearchConfig;

/// What the planner advises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    /// Train and measure a candidate aimed at the search point.
    Search,
    /// The anchor is within tolerance of `V_D` or meets every target.
    Reached,
    /// `patience` candidates in a row brought no progress: `V_D` is out of
    /// reach of this search.
    OutOfReach,
    /// `max_candidates` candidates have been measured.
    BudgetSpent,
}

/// One proposal of the [`Planner`] (also the search trajectory in reports).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// Proposal number, from 0.
    pub round: usize,
    /// Candidates measured when it was made.
    pub candidates_measured: usize,
    /// The anchor: `None` for the baseline, else the candidate's index in
    /// recording order.
    pub anchor: Option<usize>,
    /// `d(A, V_D)`.
    pub anchor_distance: f64,
    /// Rung of the target ladder (1 is the first step from `V0`).
    pub rung: usize,
    /// The current rung `T_k`.
    pub goal: ValueVector,
    /// `d(T_k, V_D)`.
    pub goal_distance: f64,
    /// `Π(A - eta (A - T_k))`.
    pub search_point: ValueVector,
    /// What to do.
    pub status: PlanStatus,
}

/// Whether `v` meets or exceeds every coordinate of `target`.
pub fn meets_targets(v: &ValueVector, target: &ValueVector) -> bool {
    v.len() == target.len()
        && v.as_slice()
            .iter()
            .zip(target.as_slice())
            .all(|(a, b)| a >= b)
}

/// Relative slack below which two distances count as equal.
const EPS: f64 = 1e-12;
/// Safety cap on rungs climbed in one proposal (the ladder converges
/// geometrically, so this is never reached with `tolerance > 0`).
const MAX_RUNGS: usize = 10_000;

/// Plans the search from `V0` towards `V_D`; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Planner {
    space: ValueSpace,
    v0: ValueVector,
    vd: ValueVector,
    config: SearchConfig,
    measured: Vec<ValueVector>,
    best: Option<usize>,
    best_distance: f64,
    since_improvement: usize,
    rung: usize,
    goal: ValueVector,
    history: Vec<Proposal>,
}

impl Planner {
    /// A planner in `space` from the baseline `v0` towards the target `vd`
    /// with the search settings `config`. Fails when the vectors do not fit
    /// the space or a setting is outside its range.
    pub fn new(
        space: ValueSpace,
        v0: ValueVector,
        vd: ValueVector,
        config: &SearchConfig,
    ) -> Result<Self> {
        space.check("Planner::new V0", &v0)?;
        space.check("Planner::new V_D", &vd)?;
        if !(config.alpha > 0.0 && config.alpha <= 1.0) {
            return Err(Error::ParameterOutOfRange {
                name: "alpha",
                value: config.alpha,
                expected: "(0, 1]",
            });
        }
        if !(config.eta > 0.0 && config.eta < 2.0) {
            return Err(Error::ParameterOutOfRange {
                name: "eta",
                value: config.eta,
                expected: "(0, 2)",
            });
        }
        if !(config.tolerance >= 0.0 && config.tolerance.is_finite()) {
            return Err(Error::ParameterOutOfRange {
                name: "tolerance",
                value: config.tolerance,
                expected: "[0, inf)",
            });
        }
        let best_distance = space.distance(&v0, &vd)?;
        let mut planner = Self {
            goal: v0.clone(),
            rung: 0,
            space,
            v0,
            vd,
            config: config.clone(),
            measured: Vec::new(),
            best: None,
            best_distance,
            since_improvement: 0,
            history: Vec::new(),
        };
        planner.climb(true)?;
        Ok(planner)
    }

    /// The space the planner works in.
    pub fn space(&self) -> &ValueSpace {
        &self.space
    }

    /// The baseline `V0`.
    pub fn v0(&self) -> &ValueVector {
        &self.v0
    }

    /// The target `V_D`.
    pub fn vd(&self) -> &ValueVector {
        &self.vd
    }

    /// Candidates recorded so far, in order.
    pub fn measured(&self) -> &[ValueVector] {
        &self.measured
    }

    /// Every proposal made so far (the search trajectory).
    pub fn history(&self) -> &[Proposal] {
        &self.history
    }

    /// The anchor: `None` for the baseline, else the index of the recorded
    /// candidate nearest to `V_D`.
    pub fn anchor(&self) -> Option<usize> {
        self.best
    }

    fn anchor_vector(&self) -> &ValueVector {
        self.best.map_or(&self.v0, |i| &self.measured[i])
    }

    /// Records a measured candidate profile; returns its index.
    pub fn record(&mut self, profile: ValueVector) -> Result<usize> {
        self.space.check("Planner::record", &profile)?;
        let d = self.space.distance(&profile, &self.vd)?;
        self.measured.push(profile);
        let index = self.measured.len() - 1;
        if d < self.best_distance - EPS * self.best_distance.max(1.0) {
            self.best = Some(index);
            self.best_distance = d;
            self.since_improvement = 0;
        } else {
            self.since_improvement += 1;
        }
        Ok(index)
    }

    /// Climbs the ladder while the anchor is at least as close to `V_D` as
    /// the current rung. `first` builds the first rung from `V0`.
    fn climb(&mut self, first: bool) -> Result<()> {
        let snap = |planner: &mut Self| -> Result<()> {
            if planner.space.distance(&planner.goal, &planner.vd)? <= planner.config.tolerance {
                planner.goal = planner.vd.clone();
            }
            Ok(())
        };
        if first {
            self.goal = blend(self.config.alpha, &self.vd, &self.v0)?;
            self.rung = 1;
            snap(self)?;
        }
        let mut climbed = 0;
        while self.goal != self.vd && climbed < MAX_RUNGS {
            let goal_distance = self.space.distance(&self.goal, &self.vd)?;
            if self.best_distance > goal_distance + EPS * goal_distance.max(1.0) {
                break;
            }
            self.goal = blend(self.config.alpha, &self.vd, &self.goal)?;
            self.rung += 1;
            climbed += 1;
            snap(self)?;
        }
        Ok(())
    }

    /// Makes the next proposal from everything recorded so far and appends
    /// it to the history.
    pub fn propose(&mut self) -> Result<Proposal> {
        self.climb(false)?;
        let anchor = self.anchor_vector().clone();
        let status =
            if self.best_distance <= self.config.tolerance || meets_targets(&anchor, &self.vd) {
                PlanStatus::Reached
            } else if self.measured.len() >= self.config.max_candidates {
                PlanStatus::BudgetSpent
            } else if self.since_improvement >= self.config.patience {
                PlanStatus::OutOfReach
            } else {
                PlanStatus::Search
            };
        let step: Vec<f64> = anchor
            .as_slice()
            .iter()
            .zip(self.goal.as_slice())
            .map(|(a, t)| a - self.config.eta * (a - t))
            .collect();
        let proposal = Proposal {
            round: self.history.len(),
            candidates_measured: self.measured.len(),
            anchor: self.best,
            anchor_distance: self.best_distance,
            rung: self.rung,
            goal_distance: self.space.distance(&self.goal, &self.vd)?,
            goal: self.goal.clone(),
            search_point: project_box(&ValueVector::new(step)?),
            status,
        };
        self.history.push(proposal.clone());
        Ok(proposal)
    }

    /// The untried `λ` of `grid` whose predicted profile is nearest `target`
    /// (usually the search point), or `None` when every grid value was tried.
    ///
    /// `tried` holds `(λ, measured profile)` pairs (include the baseline's
    /// `λ`, usually 0). Predictions interpolate linearly between the tried
    /// `λ` around it and extrapolate from the two outermost, clamped to the
    /// box; with one tried `λ` every prediction is that profile, and with none
    /// the smallest untried `λ` is returned. Ties go to the smallest `λ`.
    pub fn next_lambda(
        &self,
        target: &ValueVector,
        tried: &[(f64, ValueVector)],
        grid: &[f64],
    ) -> Result<Option<f64>> {
        self.space.check("Planner::next_lambda target", target)?;
        for (_, v) in tried {
            self.space.check("Planner::next_lambda tried profile", v)?;
        }
        let mut known: Vec<(f64, &ValueVector)> = tried.iter().map(|(l, v)| (*l, v)).collect();
        if let Some((index, &(value, _))) =
            known.iter().enumerate().find(|(_, (l, _))| !l.is_finite())
        {
            return Err(Error::NonFinite {
                what: "tried lambda",
                index,
                value,
            });
        }
        known.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Keep the latest measurement of a repeated λ.
        let mut points: Vec<(f64, &ValueVector)> = Vec::new();
        for (l, v) in known {
            match points.last_mut() {
                Some(last) if last.0 == l => *last = (l, v),
                _ => points.push((l, v)),
            }
        }
        let mut untried: Vec<f64> = grid
            .iter()
            .copied()
            .filter(|g| {
                g.is_finite()
                    && !points
                        .iter()
                        .any(|(l, _)| (l - g).abs() <= 1e-12 * l.abs().max(1.0))
            })
            .collect();
        untried.sort_by(f64::total_cmp);
        untried.dedup();
        if points.is_empty() {
            return Ok(untried.first().copied());
        }
        let mut best: Option<(f64, f64)> = None;
        for lambda in untried {
            let predicted = predict(&points, lambda)?;
            let d = self.space.distance(&predicted, target)?;
            if best.is_none_or(|(_, bd)| d < bd) {
                best = Some((lambda, d));
            }
        }
        Ok(best.map(|(l, _)| l))
    }

    /// `V_D` projected onto the convex hull of `V0` and every recorded
    /// candidate (weighted Euclidean geometry).
    pub fn hull_bound(&self) -> Result<HullProjection> {
        let mut points = vec![self.v0.clone()];
        points.extend(self.measured.iter().cloned());
        self.space
            .project_hull(&points, &self.vd, HullOptions::default())
    }
}

/// Piecewise-linear prediction of the profile at `lambda` from measured
/// `(λ, profile)` points sorted by `λ` without repeats.
fn predict(points: &[(f64, &ValueVector)], lambda: f64) -> Result<ValueVector> {
    if points.len() == 1 {
        return Ok(points[0].1.clone());
    }
    // The segment used: the one containing λ, or the outermost one.
    let hi = points
        .iter()
        .position(|(l, _)| *l >= lambda)
        .unwrap_or(points.len() - 1)
        .max(1);
    let (l0, v0) = points[hi - 1];
    let (l1, v1) = points[hi];
    let t = (lambda - l0) / (l1 - l0);
    let v: Vec<f64> = v0
        .as_slice()
        .iter()
        .zip(v1.as_slice())
        .map(|(a, b)| a + t * (b - a))
        .collect();
    Ok(project_box(&ValueVector::new(v)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::DistanceMetric;
    use valor_testkit::{Tolerance, assert_all_close, assert_close};

    fn v(x: &[f64]) -> ValueVector {
        ValueVector::new(x.to_vec()).unwrap()
    }

    fn planner(alpha: f64, eta: f64) -> Planner {
        let space = ValueSpace::uniform(&["accuracy", "fairness"], DistanceMetric::L2).unwrap();
        let config = SearchConfig {
            alpha,
            eta,
            tolerance: 0.01,
            max_candidates: 5,
            patience: 2,
            ..SearchConfig::default()
        };
        Planner::new(space, v(&[0.9, 0.5]), v(&[0.8, 0.9]), &config).unwrap()
    }

    #[test]
    fn first_proposal_steps_from_the_baseline() {
        let mut p = planner(0.5, 0.5);
        let prop = p.propose().unwrap();
        assert_eq!(prop.status, PlanStatus::Search);
        assert_eq!(prop.anchor, None);
        assert_eq!(prop.rung, 1);
        // T_1 = 0.5 V_D + 0.5 V0 = (0.85, 0.7); S = V0 + 0.5 (T_1 - V0) = (0.875, 0.6).
        assert_all_close(
            "goal",
            prop.goal.as_slice(),
            &[0.85, 0.7],
            Tolerance::abs(1e-12),
        );
        assert_all_close(
            "search",
            prop.search_point.as_slice(),
            &[0.875, 0.6],
            Tolerance::abs(1e-12),
        );
        let d0 = (0.01f64 + 0.16).sqrt();
        assert_close(
            "anchor distance",
            prop.anchor_distance,
            d0,
            Tolerance::abs(1e-12),
        );
        assert_close(
            "goal distance",
            prop.goal_distance,
            d0 / 2.0,
            Tolerance::abs(1e-12),
        );
    }

    #[test]
    fn ladder_climbs_when_a_candidate_passes_the_rung() {
        let mut p = planner(0.5, 1.0);
        p.propose().unwrap();
        // A candidate 3/4 of the way: passes rungs 1 (1/2) and 2 (3/4).
        p.record(v(&[0.825, 0.8])).unwrap();
        let prop = p.propose().unwrap();
        assert_eq!(prop.anchor, Some(0));
        assert_eq!(prop.rung, 3);
        assert_all_close(
            "goal",
            prop.goal.as_slice(),
            &[0.8125, 0.85],
            Tolerance::abs(1e-12),
        );
        // eta = 1: the search point is the goal itself.
        assert_eq!(prop.search_point, prop.goal);
    }

    #[test]
    fn stops_when_reached_out_of_reach_or_budget_spent() {
        let mut p = planner(0.5, 0.5);
        p.record(v(&[0.805, 0.9])).unwrap();
        assert_eq!(p.propose().unwrap().status, PlanStatus::Reached);

        let mut p = planner(0.5, 0.5);
        p.record(v(&[0.95, 0.95])).unwrap(); // meets every target, though far
        assert_eq!(p.propose().unwrap().status, PlanStatus::Reached);

        let mut p = planner(0.5, 0.5);
        p.record(v(&[0.5, 0.5])).unwrap(); // worse than V0
        assert_eq!(p.propose().unwrap().status, PlanStatus::Search);
        p.record(v(&[0.6, 0.5])).unwrap(); // worse again: patience 2 spent
        assert_eq!(p.propose().unwrap().status, PlanStatus::OutOfReach);

        let mut p = planner(0.5, 0.5);
        for k in 0..5 {
            p.record(v(&[0.9, 0.5 + 0.01 * f64::from(k + 1)])).unwrap();
        }
        assert_eq!(p.propose().unwrap().status, PlanStatus::BudgetSpent);
        assert_eq!(p.history().len(), 1);
    }

    #[test]
    fn next_lambda_follows_the_measured_direction() {
        let p = planner(0.5, 0.5);
        let grid = [0.0, 0.1, 0.3, 1.0, 3.0];
        // Nothing tried: the smallest λ.
        assert_eq!(
            p.next_lambda(&v(&[0.8, 0.9]), &[], &grid).unwrap(),
            Some(0.0)
        );
        // Only the baseline: the next smallest λ (all predictions equal).
        let tried = vec![(0.0, v(&[0.9, 0.5]))];
        assert_eq!(
            p.next_lambda(&v(&[0.8, 0.9]), &tried, &grid).unwrap(),
            Some(0.1)
        );
        // λ = 0.1 moved fairness up by 0.1 and accuracy down by 0.01:
        // extrapolating, λ = 0.3 predicts (0.87, 0.8), nearest to (0.87, 0.8).
        let tried = vec![(0.0, v(&[0.9, 0.5])), (0.1, v(&[0.89, 0.6]))];
        assert_eq!(
            p.next_lambda(&v(&[0.87, 0.8]), &tried, &grid).unwrap(),
            Some(0.3)
        );
        // Aiming further picks a larger λ (predictions are clamped to the box:
        // λ = 1 predicts (0.8, 1.5) -> (0.8, 1.0)).
        assert_eq!(
            p.next_lambda(&v(&[0.8, 1.0]), &tried, &grid).unwrap(),
            Some(1.0)
        );
        // Everything tried.
        let all: Vec<_> = grid.iter().map(|&l| (l, v(&[0.9, 0.5]))).collect();
        assert_eq!(p.next_lambda(&v(&[0.8, 0.9]), &all, &grid).unwrap(), None);
    }

    #[test]
    fn predict_interpolates_inside_the_tried_range() {
        let a = v(&[0.0, 1.0]);
        let b = v(&[1.0, 0.0]);
        let pts = [(0.0, &a), (2.0, &b)];
        assert_all_close(
            "mid",
            predict(&pts, 0.5).unwrap().as_slice(),
            &[0.25, 0.75],
            Tolerance::abs(1e-12),
        );
        assert_all_close(
            "beyond",
            predict(&pts, 4.0).unwrap().as_slice(),
            &[1.0, 0.0],
            Tolerance::abs(1e-12),
        );
    }

    #[test]
    fn hull_bound_is_zero_when_vd_is_a_mixture() {
        let mut p = planner(0.5, 0.5);
        p.record(v(&[0.7, 1.0])).unwrap();
        // V_D = (0.8, 0.9) lies off the segment V0 = (0.9, 0.5) .. (0.7, 1.0):
        // its distance is |cross((-0.2, 0.5), (-0.1, 0.4))| / ‖(-0.2, 0.5)‖.
        let h = p.hull_bound().unwrap();
        assert_close(
            "off segment",
            h.distance_l2w,
            0.03 / 0.29f64.sqrt(),
            Tolerance::abs(1e-7),
        );
        // V_D is the midpoint of two more candidates: inside the hull.
        p.record(v(&[0.8, 1.0])).unwrap();
        p.record(v(&[0.8, 0.8])).unwrap();
        let h = p.hull_bound().unwrap();
        assert_close("inside", h.distance_l2w, 0.0, Tolerance::abs(1e-6));
    }

    #[test]
    fn rejects_bad_settings() {
        let space = ValueSpace::uniform(&["a"], DistanceMetric::L2).unwrap();
        let bad = SearchConfig {
            eta: 2.0,
            ..SearchConfig::default()
        };
        assert!(Planner::new(space.clone(), v(&[0.1]), v(&[0.9]), &bad).is_err());
        let bad = SearchConfig {
            alpha: 0.0,
            ..SearchConfig::default()
        };
        assert!(Planner::new(space.clone(), v(&[0.1]), v(&[0.9]), &bad).is_err());
        assert!(Planner::new(space, v(&[0.1, 0.2]), v(&[0.9]), &SearchConfig::default()).is_err());
    }
}
