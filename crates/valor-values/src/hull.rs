//! Projection onto the convex hull of achievable profiles.
//!
//! Given measured profiles `P_1 .. P_n` and a point `y`, find
//!
//! `x* = argmin { 1/2 ‖x - y‖_W^2 : x = Σ_j λ_j P_j, λ_j >= 0, Σ_j λ_j = 1 }`
//!
//! where `‖z‖_W^2 = Σ_i w_i z_i^2` uses the space's weights. This is the
//! Euclidean geometry of the space whatever its reporting metric: the
//! projection onto a convex set is unique and non-expansive only for an inner
//! product norm. `x*` is the nearest profile obtainable by mixing the measured
//! models (for dimensions that are linear in the mixture, such as accuracy;
//! for disparity-based ones it is an optimistic bound), and `‖x* - y‖_W` is
//! a lower bound on how close any such mixture gets to `y`.
//!
//! Solver: Wolfe's nearest-point algorithm (P. Wolfe, "Finding the nearest
//! point in a polytope", Mathematical Programming 11, 1976), an active-set
//! method on the simplex weights `λ`. With `q_j = P_j - y` it keeps a
//! *corral* `S` of affinely independent vertices and `x` = the point of
//! minimum `‖·‖_W` in their affine hull. A major cycle adds the vertex
//! minimising `<x, q_j>_W` (a Frank-Wolfe step); a minor cycle solves
//! `min ‖Σ_{i∈S} α_i q_i‖_W` subject to `Σ α_i = 1` exactly (a bordered
//! linear system) and, while some `α_i <= 0`, moves from `λ` towards `α`
//! as far as the simplex allows and drops the vertex that hits zero. It
//! terminates in finitely many steps with the exact projection (up to
//! rounding), also on thin slivers where Frank-Wolfe variants crawl.
//! It stops when the Frank-Wolfe duality gap `g = ‖x‖_W^2 - min_j <x, q_j>_W`
//! is at most `tolerance · max_j ‖q_j‖_W^2`; the gap bounds the
//! suboptimality of `1/2 ‖x - y‖_W^2`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::space::{DistanceMetric, ValueSpace, ValueVector};

/// Stopping rule for [`ValueSpace::project_hull`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HullOptions {
    /// Stop when the Frank-Wolfe duality gap is at most this times
    /// `max_j ‖P_j - y‖_W^2` (default 1e-12).
    pub tolerance: f64,
    /// Give up (with `converged = false`) after this many major cycles
    /// (default 10 000; a few times the number of points is typical).
    pub max_iterations: usize,
}

impl Default for HullOptions {
    fn default() -> Self {
        Self {
            tolerance: 1e-12,
            max_iterations: 10_000,
        }
    }
}

/// The result of [`ValueSpace::project_hull`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HullProjection {
    /// The projection `x* = Σ_j λ_j P_j`.
    pub point: ValueVector,
    /// The mixture weights `λ` (one per input point, on the simplex).
    pub weights: Vec<f64>,
    /// `‖x* - y‖_W`, the weighted Euclidean distance from the projected point.
    pub distance_l2w: f64,
    /// The final Frank-Wolfe duality gap (an upper bound on the suboptimality
    /// of `1/2 ‖x - y‖_W^2`).
    pub gap: f64,
    /// Major cycles taken.
    pub iterations: usize,
    /// Whether the gap reached the tolerance.
    pub converged: bool,
}

/// `α_i` at or below this counts as non-positive in a minor cycle (Wolfe's
/// `Z2`), and `λ_i` at or below it as zero.
const ZERO: f64 = 1e-12;
/// A pivot below this (relative to the largest entry) makes the bordered
/// system singular.
const PIVOT: f64 = 1e-13;

impl ValueSpace {
    /// Projects `y` onto the convex hull of `points` in the weighted
    /// Euclidean norm `‖·‖_W` (see the [module docs](crate::hull) for the
    /// problem and the algorithm). Idempotent and non-expansive in `‖·‖_W`
    /// up to rounding. With a zero weight the projection is unique only up
    /// to that coordinate.
    pub fn project_hull(
        &self,
        points: &[ValueVector],
        y: &ValueVector,
        options: HullOptions,
    ) -> Result<HullProjection> {
        if points.is_empty() {
            return Err(Error::Empty {
                context: "ValueSpace::project_hull",
            });
        }
        self.check("ValueSpace::project_hull target", y)?;
        for p in points {
            self.check("ValueSpace::project_hull point", p)?;
        }
        if !(options.tolerance >= 0.0 && options.tolerance.is_finite()) {
            return Err(Error::ParameterOutOfRange {
                name: "hull tolerance",
                value: options.tolerance,
                expected: "[0, inf)",
            });
        }
        let n = points.len();
        let q: Vec<Vec<f64>> = points
            .iter()
            .map(|p| {
                p.as_slice()
                    .iter()
                    .zip(y.as_slice())
                    .map(|(a, b)| a - b)
                    .collect()
            })
            .collect();
        let ip = |a: &[f64], b: &[f64]| self.w_dot(a, b);
        let norms: Vec<f64> = q.iter().map(|v| ip(v, v)).collect();
        let scale = norms.iter().copied().fold(0.0, f64::max);
        let threshold = options.tolerance * scale;
        // Exact duplicates share the first index, so a corral never holds two.
        let canonical: Vec<usize> = (0..n).filter(|&j| (0..j).all(|i| q[i] != q[j])).collect();

        let j0 = canonical
            .iter()
            .copied()
            .min_by(|&a, &b| norms[a].total_cmp(&norms[b]))
            .unwrap_or(0);
        let mut corral = vec![j0];
        let mut lambda = vec![1.0];
        let mut x = q[j0].clone();
        let mut iterations = 0;
        let mut gap;
        loop {
            let xx = ip(&x, &x);
            let (j, xq) = canonical
                .iter()
                .map(|&j| (j, ip(&x, &q[j])))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or((j0, xx));
            gap = xx - xq;
            if gap <= threshold || iterations >= options.max_iterations || corral.contains(&j) {
                break;
            }
            iterations += 1;
            let saved = (corral.clone(), lambda.clone(), x.clone());
            corral.push(j);
            lambda.push(0.0);
            let solved = self.minor_cycles(&q, scale, &mut corral, &mut lambda);
            x = combine(&q, &corral, &lambda, self.len());
            if !solved || ip(&x, &x) >= xx {
                // Rounding stalled the corral: keep the better previous point.
                (corral, lambda, x) = saved;
                let xx = ip(&x, &x);
                gap = canonical
                    .iter()
                    .map(|&j| xx - ip(&x, &q[j]))
                    .fold(f64::NEG_INFINITY, f64::max);
                break;
            }
        }

        let mut weights = vec![0.0; n];
        for (&j, &l) in corral.iter().zip(&lambda) {
            weights[j] += l;
        }
        // The point from the original vertices: exact when one vertex is used.
        let originals: Vec<Vec<f64>> = points.iter().map(|p| p.as_slice().to_vec()).collect();
        let point = combine(&originals, &corral, &lambda, self.len());
        let distance_l2w = DistanceMetric::L2.eval(self.weights(), &point, y.as_slice());
        Ok(HullProjection {
            point: ValueVector::new(point)?,
            weights,
            distance_l2w,
            gap,
            iterations,
            converged: gap <= threshold,
        })
    }

    /// Wolfe's minor cycles: replaces `lambda` by the affine minimiser of the
    /// corral once it is feasible, dropping vertices on the way. Returns
    /// false when the bordered system is singular.
    fn minor_cycles(
        &self,
        q: &[Vec<f64>],
        scale: f64,
        corral: &mut Vec<usize>,
        lambda: &mut Vec<f64>,
    ) -> bool {
        // Each cycle drops at least one vertex, so this bound is never hit.
        for _ in 0..=corral.len() {
            let Some(alpha) = self.affine_minimiser(q, scale, corral) else {
                return false;
            };
            if alpha.iter().all(|&a| a > ZERO) {
                *lambda = alpha;
                return true;
            }
            // Move from λ towards α until the first weight reaches zero.
            let mut theta = 1.0;
            let mut hit = None;
            for (i, (&l, &a)) in lambda.iter().zip(&alpha).enumerate() {
                if a <= ZERO {
                    let t = if l - a > 0.0 { l / (l - a) } else { 0.0 };
                    if t < theta || hit.is_none() {
                        theta = theta.min(t);
                        hit = Some(i);
                    }
                }
            }
            for (l, a) in lambda.iter_mut().zip(&alpha) {
                *l = theta * a + (1.0 - theta) * *l;
            }
            if let Some(i) = hit {
                lambda[i] = 0.0;
            }
            let mut k = 0;
            while k < corral.len() {
                if lambda[k] <= ZERO {
                    corral.remove(k);
                    lambda.remove(k);
                } else {
                    k += 1;
                }
            }
            if corral.is_empty() {
                return false;
            }
            let total: f64 = lambda.iter().sum();
            lambda.iter_mut().for_each(|l| *l /= total);
        }
        false
    }

    /// The weights `α` (summing to 1) of the point of minimum `‖·‖_W` in the
    /// affine hull of the corral: the solution of the bordered system
    /// `[G 1; 1ᵀ 0] [α; -μ] = [0; 1]` with `G_ab = <q_a, q_b>_W / scale`.
    /// `None` when the system is (numerically) singular.
    fn affine_minimiser(&self, q: &[Vec<f64>], scale: f64, corral: &[usize]) -> Option<Vec<f64>> {
        let k = corral.len();
        if k == 1 {
            return Some(vec![1.0]);
        }
        let s = if scale > 0.0 { scale } else { 1.0 };
        let m = k + 1;
        let mut a = vec![vec![0.0; m + 1]; m];
        for (r, &i) in corral.iter().enumerate() {
            for (c, &j) in corral.iter().enumerate() {
                a[r][c] = self.w_dot(&q[i], &q[j]) / s;
            }
            a[r][k] = 1.0;
            a[k][r] = 1.0;
        }
        a[k][m] = 1.0;
        let biggest = a.iter().flatten().fold(0.0f64, |acc, v| acc.max(v.abs()));
        // Gaussian elimination with partial pivoting on the augmented matrix.
        for col in 0..m {
            let pivot =
                (col..m).max_by(|&r1, &r2| a[r1][col].abs().total_cmp(&a[r2][col].abs()))?;
            if a[pivot][col].abs() <= PIVOT * biggest {
                return None;
            }
            a.swap(col, pivot);
            let (upper, lower) = a.split_at_mut(col + 1);
            let pivot_row = &upper[col];
            for row in lower.iter_mut() {
                let f = row[col] / pivot_row[col];
                if f != 0.0 {
                    for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                        *x -= f * p;
                    }
                }
            }
        }
        let mut sol = vec![0.0; m];
        for r in (0..m).rev() {
            let tail: f64 = (r + 1..m).map(|c| a[r][c] * sol[c]).sum();
            sol[r] = (a[r][m] - tail) / a[r][r];
        }
        sol.truncate(k);
        let sum: f64 = sol.iter().sum();
        (sol.iter().all(|v| v.is_finite()) && (sum - 1.0).abs() <= 1e-6).then_some(sol)
    }
}

/// `Σ_i λ_i q_{corral_i}`.
fn combine(q: &[Vec<f64>], corral: &[usize], lambda: &[f64], d: usize) -> Vec<f64> {
    let mut x = vec![0.0; d];
    for (&j, &l) in corral.iter().zip(lambda) {
        for (xi, qi) in x.iter_mut().zip(&q[j]) {
            *xi += l * qi;
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::Dimension;
    use valor_testkit::{Tolerance, assert_all_close, assert_close};

    fn v(x: &[f64]) -> ValueVector {
        ValueVector::new(x.to_vec()).unwrap()
    }

    fn square_space() -> ValueSpace {
        ValueSpace::uniform(&["a", "b"], DistanceMetric::L2).unwrap()
    }

    #[test]
    fn projects_onto_a_segment() {
        let space = square_space();
        let pts = [v(&[0.0, 0.0]), v(&[1.0, 0.0])];
        let p = space
            .project_hull(&pts, &v(&[0.3, 0.8]), HullOptions::default())
            .unwrap();
        assert!(p.converged);
        assert_all_close(
            "point",
            p.point.as_slice(),
            &[0.3, 0.0],
            Tolerance::abs(1e-7),
        );
        assert_all_close("weights", &p.weights, &[0.7, 0.3], Tolerance::abs(1e-7));
        assert_close("distance", p.distance_l2w, 0.8, Tolerance::abs(1e-7));
    }

    #[test]
    fn point_inside_the_hull_is_its_own_projection() {
        let space = square_space();
        let pts = [
            v(&[0.0, 0.0]),
            v(&[1.0, 0.0]),
            v(&[0.0, 1.0]),
            v(&[1.0, 1.0]),
        ];
        let y = v(&[0.25, 0.6]);
        let p = space
            .project_hull(&pts, &y, HullOptions::default())
            .unwrap();
        assert_all_close(
            "inside",
            p.point.as_slice(),
            y.as_slice(),
            Tolerance::abs(1e-7),
        );
        assert_close(
            "weights sum",
            p.weights.iter().sum(),
            1.0,
            Tolerance::abs(1e-12),
        );
    }

    #[test]
    fn projects_onto_a_triangle_face_by_hand() {
        // Triangle (0,0), (1,0), (0,1); y = (1,1) projects to (0.5, 0.5).
        let space = square_space();
        let pts = [v(&[0.0, 0.0]), v(&[1.0, 0.0]), v(&[0.0, 1.0])];
        let p = space
            .project_hull(&pts, &v(&[1.0, 1.0]), HullOptions::default())
            .unwrap();
        assert_all_close(
            "face",
            p.point.as_slice(),
            &[0.5, 0.5],
            Tolerance::abs(1e-7),
        );
        assert_close(
            "distance",
            p.distance_l2w,
            0.5f64.sqrt(),
            Tolerance::abs(1e-7),
        );
    }

    #[test]
    fn weights_change_the_projection() {
        // Segment from (0,1) to (1,0); y = (1,1). Unweighted: (0.5, 0.5).
        // Weight 4 on the first axis pulls the projection towards x_a = 1:
        // minimise 4 (t - 1)^2 + (1 - t - 1)^2 => t = 0.8.
        let dims = vec![Dimension::new("a", ""), Dimension::new("b", "")];
        let space = ValueSpace::new(dims, vec![4.0, 1.0], DistanceMetric::L2).unwrap();
        let pts = [v(&[0.0, 1.0]), v(&[1.0, 0.0])];
        let p = space
            .project_hull(&pts, &v(&[1.0, 1.0]), HullOptions::default())
            .unwrap();
        assert_all_close(
            "weighted",
            p.point.as_slice(),
            &[0.8, 0.2],
            Tolerance::abs(1e-7),
        );
    }

    #[test]
    fn converges_on_a_face_of_a_many_vertex_polygon() {
        // The optimum lies on the edge of a polygon with many vertices, where
        // classic Frank-Wolfe zig-zags.
        let space = square_space();
        let mut pts = vec![v(&[0.0, 0.5]), v(&[1.0, 0.5])];
        for k in 0..20 {
            let t = k as f64 / 20.0;
            pts.push(v(&[t, 0.5 - 0.4 * (std::f64::consts::PI * t).sin()]));
        }
        let p = space
            .project_hull(&pts, &v(&[0.4, 0.9]), HullOptions::default())
            .unwrap();
        assert!(
            p.converged,
            "gap {} after {} iterations",
            p.gap, p.iterations
        );
        assert_all_close(
            "edge",
            p.point.as_slice(),
            &[0.4, 0.5],
            Tolerance::abs(1e-6),
        );
    }

    #[test]
    fn regression_sliver_triangle_with_duplicates_is_idempotent() {
        // Found by the idempotence property test: P1 lies just inside the
        // edge P3-P5, and the origin repeats. Frank-Wolfe with away steps
        // crawled here (gap 1e-7 after 100 000 iterations).
        let dims = vec![Dimension::new("a", ""), Dimension::new("b", "")];
        let space =
            ValueSpace::new(dims, vec![0.5, 1.2854833741361353], DistanceMetric::L2).unwrap();
        let z = v(&[0.0, 0.0]);
        let pts = [
            z.clone(),
            v(&[0.397166951083595, 0.8397602636405974]),
            z.clone(),
            v(&[0.8402336022521588, 0.5867614884557982]),
            z.clone(),
            v(&[0.18819068427506153, 0.9600970906521277]),
            z.clone(),
            z,
        ];
        let y = v(&[1.912650031944906, 1.6380079852234077]);
        let p = space
            .project_hull(&pts, &y, HullOptions::default())
            .unwrap();
        assert!(p.converged, "gap {}", p.gap);
        let pp = space
            .project_hull(&pts, &p.point, HullOptions::default())
            .unwrap();
        assert!(
            pp.converged,
            "gap {} after {} iterations",
            pp.gap, pp.iterations
        );
        assert!(pp.iterations < 10, "{} iterations", pp.iterations);
        assert_all_close(
            "idempotent",
            pp.point.as_slice(),
            p.point.as_slice(),
            Tolerance::abs(1e-12),
        );
    }

    #[test]
    fn duplicate_and_single_points() {
        let space = square_space();
        let a = v(&[0.2, 0.3]);
        let p = space
            .project_hull(
                &[a.clone(), a.clone()],
                &v(&[0.9, 0.9]),
                HullOptions::default(),
            )
            .unwrap();
        assert_eq!(p.point, a);
        assert_eq!(p.weights, [1.0, 0.0]);
        let p = space
            .project_hull(std::slice::from_ref(&a), &a, HullOptions::default())
            .unwrap();
        assert!(p.converged && p.distance_l2w == 0.0);
    }

    #[test]
    fn rejects_empty_and_mismatched_input() {
        let space = square_space();
        assert!(
            space
                .project_hull(&[], &v(&[0.0, 0.0]), HullOptions::default())
                .is_err()
        );
        assert!(
            space
                .project_hull(&[v(&[0.0])], &v(&[0.0, 0.0]), HullOptions::default())
                .is_err()
        );
    }
}
