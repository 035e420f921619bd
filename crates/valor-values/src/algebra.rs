//! The value algebra: box projection, the alpha blend, Pareto dominance and
//! the seed's gradient solver.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::space::{ValueSpace, ValueVector};

/// Projection onto the box `[0, 1]^d`: `Π(v)_i = min(1, max(0, v_i))`.
///
/// It is the nearest point of the box in every weighted L1, L2 and L-inf
/// norm, is idempotent (`Π(Π(v)) = Π(v)`) and non-expansive
/// (`d(Π(a), Π(b)) <= d(a, b)`), because it acts coordinate by coordinate and
/// clamping is 1-Lipschitz.
pub fn project_box(v: &ValueVector) -> ValueVector {
    ValueVector::from_finite(v.as_slice().iter().map(|x| x.clamp(0.0, 1.0)).collect())
}

/// Whether every coordinate of `v` lies in `[0, 1]`.
pub fn in_box(v: &ValueVector) -> bool {
    v.as_slice().iter().all(|x| (0.0..=1.0).contains(x))
}

/// The seed's adjustment `V_T <- alpha V_D + (1 - alpha) V_T`, for
/// `alpha` in `[0, 1]`.
///
/// `alpha = 0` returns `current` unchanged and `alpha = 1` returns `target`
/// exactly. For the norm metrics (l1, l2, linf) the distance to the target
/// shrinks by exactly `1 - alpha`:
/// `d(blend(alpha, V_D, V), V_D) = (1 - alpha) d(V, V_D)`. It equals one
/// [`Solver`] step with `eta = alpha`.
pub fn blend(alpha: f64, target: &ValueVector, current: &ValueVector) -> Result<ValueVector> {
    if !(0.0..=1.0).contains(&alpha) {
        return Err(Error::ParameterOutOfRange {
            name: "alpha",
            value: alpha,
            expected: "[0, 1]",
        });
    }
    same_len("blend", target, current)?;
    Ok(ValueVector::from_finite(
        target
            .as_slice()
            .iter()
            .zip(current.as_slice())
            .map(|(t, c)| alpha * t + (1.0 - alpha) * c)
            .collect(),
    ))
}

fn same_len(context: &'static str, a: &ValueVector, b: &ValueVector) -> Result<()> {
    if a.len() == b.len() {
        Ok(())
    } else {
        Err(Error::DimensionMismatch {
            context,
            expected: a.len(),
            actual: b.len(),
        })
    }
}

/// Pareto dominance when every dimension is maximised: `a` dominates `b`
/// when `a_i >= b_i` for every `i` and `a_j > b_j` for at least one `j`.
/// Fails on vectors of different lengths.
pub fn dominates(a: &ValueVector, b: &ValueVector) -> Result<bool> {
    same_len("dominates", a, b)?;
    let (a, b) = (a.as_slice(), b.as_slice());
    Ok(a.iter().zip(b).all(|(x, y)| x >= y) && a.iter().zip(b).any(|(x, y)| x > y))
}

/// Indices (ascending) of the non-dominated points: the Pareto front when
/// every dimension is maximised. Equal points do not dominate each other, so
/// duplicates on the front are all kept. Every point off the front is
/// dominated by some point on it. `O(n^2 d)`.
pub fn pareto_front(points: &[ValueVector]) -> Result<Vec<usize>> {
    let mut front = Vec::new();
    for (i, p) in points.iter().enumerate() {
        let mut dominated = false;
        for q in points {
            if dominates(q, p)? {
                dominated = true;
                break;
            }
        }
        if !dominated {
            front.push(i);
        }
    }
    Ok(front)
}

/// The seed's solver: gradient descent on `L(V) = 1/2 ‖V - V_D‖^2`
/// (unweighted), whose gradient is `∇L(V) = V - V_D`, with the update
///
/// `V_{t+1} = V_t - eta (V_t - V_D)` (then `Π`, the box projection, when
/// `project` is on).
///
/// The error obeys `V_{t+1} - V_D = (1 - eta)(V_t - V_D)`, so the iteration
/// converges for every `0 < eta < 2` (linearly, with rate `|1 - eta|`) and
/// the distance to `V_D` never grows, in any weighted l1/l2/linf norm. With
/// `V_D` in the box the projection keeps both properties (it is
/// non-expansive and fixes `V_D`). It stops when `‖V_t - V_D‖_2 <=
/// tolerance` (converged) or after `max_steps` steps, and records every
/// iterate in a [`Trajectory`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Solver {
    eta: f64,
    tolerance: f64,
    max_steps: usize,
    project: bool,
}

/// Why a [`Solver`] run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SolverStop {
    /// `‖V_t - V_D‖_2 <= tolerance`.
    Converged,
    /// `max_steps` steps were taken first.
    MaxSteps,
}

/// One iterate of a [`Solver`] run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SolverStep {
    /// Step number `t` (0 for the starting point).
    pub step: usize,
    /// The iterate `V_t`.
    pub point: ValueVector,
    /// `L(V_t) = 1/2 ‖V_t - V_D‖_2^2`.
    pub loss: f64,
    /// `d(V_t, V_D)` in the space's own (weighted) metric.
    pub distance: f64,
}

/// The recorded iterates of a [`Solver`] run and why it stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    /// Every iterate, starting with `V_0`.
    pub steps: Vec<SolverStep>,
    /// Why the run stopped.
    pub stop: SolverStop,
}

impl Trajectory {
    /// The last iterate.
    pub fn last(&self) -> &SolverStep {
        // A trajectory always holds the starting point.
        &self.steps[self.steps.len() - 1]
    }

    /// Whether the run reached the tolerance.
    pub fn converged(&self) -> bool {
        self.stop == SolverStop::Converged
    }
}

impl Solver {
    /// A solver with step size `eta` in `(0, 2)`, a finite `tolerance >= 0`
    /// and at most `max_steps` steps; `project` keeps iterates in `[0, 1]^d`.
    pub fn new(eta: f64, tolerance: f64, max_steps: usize, project: bool) -> Result<Self> {
        if !(eta > 0.0 && eta < 2.0) {
            return Err(Error::ParameterOutOfRange {
                name: "eta",
                value: eta,
                expected: "(0, 2), where the solver converges",
            });
        }
        if !(tolerance >= 0.0 && tolerance.is_finite()) {
            return Err(Error::ParameterOutOfRange {
                name: "tolerance",
                value: tolerance,
                expected: "[0, inf)",
            });
        }
        Ok(Self {
            eta,
            tolerance,
            max_steps,
            project,
        })
    }

    /// The step size.
    pub fn eta(&self) -> f64 {
        self.eta
    }

    /// The stopping tolerance on `‖V_t - V_D‖_2`.
    pub fn tolerance(&self) -> f64 {
        self.tolerance
    }

    /// The most steps a run takes.
    pub fn max_steps(&self) -> usize {
        self.max_steps
    }

    /// `L(V) = 1/2 ‖V - V_D‖_2^2`.
    pub fn loss(v: &ValueVector, vd: &ValueVector) -> Result<f64> {
        same_len("Solver::loss", v, vd)?;
        Ok(0.5
            * v.as_slice()
                .iter()
                .zip(vd.as_slice())
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>())
    }

    /// `∇L(V) = V - V_D`.
    pub fn gradient(v: &ValueVector, vd: &ValueVector) -> Result<ValueVector> {
        same_len("Solver::gradient", v, vd)?;
        Ok(ValueVector::from_finite(
            v.as_slice()
                .iter()
                .zip(vd.as_slice())
                .map(|(a, b)| a - b)
                .collect(),
        ))
    }

    /// One step `V - eta (V - V_D)`, projected onto the box when `project`
    /// is on.
    pub fn step(&self, v: &ValueVector, vd: &ValueVector) -> Result<ValueVector> {
        let g = Self::gradient(v, vd)?;
        let next = ValueVector::from_finite(
            v.as_slice()
                .iter()
                .zip(g.as_slice())
                .map(|(x, g)| x - self.eta * g)
                .collect(),
        );
        Ok(if self.project {
            project_box(&next)
        } else {
            next
        })
    }

    /// Runs from `v0` towards `vd`, recording the trajectory. With `project`
    /// on, `vd` must lie in `[0, 1]^d` (otherwise the iterates converge to
    /// `Π(vd)` and the tolerance could never be met).
    pub fn run(
        &self,
        space: &ValueSpace,
        v0: &ValueVector,
        vd: &ValueVector,
    ) -> Result<Trajectory> {
        space.check("Solver::run start", v0)?;
        space.check("Solver::run target", vd)?;
        if self.project && !in_box(vd) {
            return Err(Error::ParameterOutOfRange {
                name: "solver target coordinate",
                value: vd
                    .as_slice()
                    .iter()
                    .copied()
                    .find(|x| !(0.0..=1.0).contains(x))
                    .unwrap_or(f64::NAN),
                expected: "[0, 1] when the solver projects onto the box",
            });
        }
        let record = |step: usize, point: ValueVector| -> Result<SolverStep> {
            Ok(SolverStep {
                step,
                loss: Self::loss(&point, vd)?,
                distance: space.distance(&point, vd)?,
                point,
            })
        };
        let mut steps = vec![record(0, v0.clone())?];
        loop {
            let current = &steps[steps.len() - 1];
            if (2.0 * current.loss).sqrt() <= self.tolerance {
                return Ok(Trajectory {
                    steps,
                    stop: SolverStop::Converged,
                });
            }
            if current.step >= self.max_steps {
                return Ok(Trajectory {
                    steps,
                    stop: SolverStop::MaxSteps,
                });
            }
            let next = self.step(&current.point, vd)?;
            let t = current.step + 1;
            steps.push(record(t, next)?);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::DistanceMetric;
    use valor_testkit::{Tolerance, assert_all_close, assert_close};

    fn v(x: &[f64]) -> ValueVector {
        ValueVector::new(x.to_vec()).unwrap()
    }

    #[test]
    fn blend_edges_are_exact() {
        let t = v(&[0.9, 0.1]);
        let c = v(&[0.3, 0.7]);
        assert_eq!(blend(0.0, &t, &c).unwrap(), c);
        assert_eq!(blend(1.0, &t, &c).unwrap(), t);
        assert_all_close(
            "half",
            blend(0.5, &t, &c).unwrap().as_slice(),
            &[0.6, 0.4],
            Tolerance::abs(1e-15),
        );
        assert!(blend(1.5, &t, &c).is_err());
        assert!(blend(-0.1, &t, &c).is_err());
        assert!(blend(f64::NAN, &t, &c).is_err());
        assert!(blend(0.5, &t, &v(&[0.1])).is_err());
    }

    #[test]
    fn box_projection_clamps() {
        assert_eq!(
            project_box(&v(&[-0.5, 0.4, 1.7])).as_slice(),
            &[0.0, 0.4, 1.0]
        );
    }

    #[test]
    fn pareto_front_by_hand() {
        let pts = [
            v(&[0.9, 0.5]), // front
            v(&[0.8, 0.4]), // dominated by 0
            v(&[0.5, 0.9]), // front
            v(&[0.5, 0.9]), // duplicate of 2: kept
            v(&[0.9, 0.4]), // dominated by 0 (equal first, smaller second)
        ];
        assert_eq!(pareto_front(&pts).unwrap(), vec![0, 2, 3]);
        assert!(pareto_front(&[v(&[0.1]), v(&[0.1, 0.2])]).is_err());
        assert!(pareto_front(&[]).unwrap().is_empty());
    }

    #[test]
    fn solver_single_step_matches_formula() {
        let s = Solver::new(0.5, 0.0, 10, false).unwrap();
        let next = s.step(&v(&[0.2, 1.0]), &v(&[1.0, 0.0])).unwrap();
        assert_all_close("step", next.as_slice(), &[0.6, 0.5], Tolerance::abs(1e-15));
        assert_close(
            "loss",
            Solver::loss(&v(&[0.2, 1.0]), &v(&[1.0, 0.0])).unwrap(),
            0.5 * (0.64 + 1.0),
            Tolerance::abs(1e-15),
        );
    }

    #[test]
    fn solver_records_trajectory_and_stops() {
        let space = ValueSpace::uniform(&["a", "b"], DistanceMetric::L2).unwrap();
        let s = Solver::new(0.5, 1e-3, 100, true).unwrap();
        let tr = s.run(&space, &v(&[0.0, 0.0]), &v(&[1.0, 1.0])).unwrap();
        assert!(tr.converged());
        // Error halves each step: sqrt(2) * 0.5^t <= 1e-3 first at t = 11.
        assert_eq!(tr.last().step, 11);
        assert_eq!(tr.steps.len(), 12);
        let capped = Solver::new(0.5, 1e-3, 3, true)
            .unwrap()
            .run(&space, &v(&[0.0, 0.0]), &v(&[1.0, 1.0]))
            .unwrap();
        assert_eq!(capped.stop, SolverStop::MaxSteps);
        assert_eq!(capped.steps.len(), 4);
    }

    #[test]
    fn solver_rejects_eta_outside_convergence_range() {
        for eta in [0.0, 2.0, -1.0, 2.5, f64::NAN] {
            assert!(Solver::new(eta, 1e-6, 10, false).is_err(), "eta {eta}");
        }
        assert!(Solver::new(1.0, -1.0, 10, false).is_err());
    }

    #[test]
    fn projected_solver_needs_target_in_box() {
        let space = ValueSpace::uniform(&["a"], DistanceMetric::L2).unwrap();
        let s = Solver::new(1.0, 1e-9, 10, true).unwrap();
        assert!(s.run(&space, &v(&[0.0]), &v(&[1.2])).is_err());
    }
}
