//! Property tests of the value algebra: solver convergence and monotone
//! distance, the blend's edges, projections (idempotent, non-expansive,
//! optimal), Pareto fronts and nearest.

use proptest::prelude::*;
use valor_values::{
    Dimension, DistanceMetric, HullOptions, PlanStatus, Planner, Proposal, SearchConfig, Solver,
    ValueSpace, ValueVector, blend, dominates, in_box, meets_targets, pareto_front, project_box,
};

/// Slack for floating-point rounding in exact identities.
const ROUND: f64 = 1e-12;
/// Slack for the iterative hull projection (its duality gap bounds the error
/// by sqrt(2 gap) ~ 1.5e-7 per unit weight).
const HULL: f64 = 1e-6;

fn space(weights: Vec<f64>, metric: DistanceMetric) -> ValueSpace {
    let dims = (0..weights.len())
        .map(|i| Dimension::new(format!("d{i}"), ""))
        .collect();
    ValueSpace::new(dims, weights, metric).unwrap()
}

fn v(x: Vec<f64>) -> ValueVector {
    ValueVector::new(x).unwrap()
}

fn norm_metric() -> impl Strategy<Value = DistanceMetric> {
    prop_oneof![
        Just(DistanceMetric::L1),
        Just(DistanceMetric::L2),
        Just(DistanceMetric::Linf)
    ]
}

fn any_metric() -> impl Strategy<Value = DistanceMetric> {
    prop_oneof![norm_metric(), Just(DistanceMetric::Cosine)]
}

/// Weights >= 0 (some exactly 0), the first positive so not all are zero.
fn weights(d: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(prop_oneof![1 => Just(0.0), 4 => 0.05f64..3.0], d).prop_map(|mut w| {
        w[0] = w[0].max(0.5);
        w
    })
}

fn unit(d: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(0.0f64..=1.0, d)
}

fn wide(d: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-1.0f64..2.0, d)
}

/// A space and two points in the unit box.
fn space_and_pair() -> impl Strategy<Value = (ValueSpace, ValueVector, ValueVector)> {
    (1usize..=5).prop_flat_map(|d| {
        (weights(d), norm_metric(), unit(d), unit(d))
            .prop_map(|(w, m, a, b)| (space(w, m), v(a), v(b)))
    })
}

proptest! {
    #[test]
    fn solver_converges_for_every_eta_in_0_2(
        (s, v0, vd) in space_and_pair(),
        eta in 0.02f64..1.98,
        project in any::<bool>(),
    ) {
        let tol = 1e-9;
        let solver = Solver::new(eta, tol, 5_000, project).unwrap();
        let tr = solver.run(&s, &v0, &vd).unwrap();
        prop_assert!(tr.converged(), "eta {eta}: stopped after {} steps", tr.last().step);
        prop_assert!((2.0 * tr.last().loss).sqrt() <= tol);
        // Never slower than the linear rate |1 - eta| predicts.
        let e0 = (2.0 * tr.steps[0].loss).sqrt();
        if e0 > tol {
            let bound = ((tol / e0).ln() / (1.0 - eta).abs().ln()).ceil() as usize + 1;
            prop_assert!(tr.last().step <= bound, "{} steps > bound {bound}", tr.last().step);
        }
    }

    #[test]
    fn solver_distance_never_grows(
        (s, v0, vd) in space_and_pair(),
        eta in 0.02f64..1.98,
        project in any::<bool>(),
    ) {
        let tr = Solver::new(eta, 0.0, 60, project).unwrap().run(&s, &v0, &vd).unwrap();
        for w in tr.steps.windows(2) {
            prop_assert!(w[1].distance <= w[0].distance + ROUND,
                "step {}: {} > {}", w[1].step, w[1].distance, w[0].distance);
            prop_assert!(w[1].loss <= w[0].loss + ROUND);
            if !project {
                // Unprojected, the error contracts by exactly |1 - eta|.
                let expected = (1.0 - eta).abs() * w[0].distance;
                prop_assert!((w[1].distance - expected).abs() <= 1e-9 * (1.0 + w[0].distance));
            }
        }
        if project {
            prop_assert!(tr.steps.iter().all(|st| in_box(&st.point)));
        }
    }

    #[test]
    fn blend_edges_and_contraction(
        (s, target, current) in space_and_pair(),
        alpha in 0.0f64..=1.0,
    ) {
        prop_assert_eq!(blend(0.0, &target, &current).unwrap(), current.clone());
        prop_assert_eq!(blend(1.0, &target, &current).unwrap(), target.clone());
        let b = blend(alpha, &target, &current).unwrap();
        let before = s.distance(&current, &target).unwrap();
        let after = s.distance(&b, &target).unwrap();
        prop_assert!((after - (1.0 - alpha) * before).abs() <= ROUND * (1.0 + before));
        // The blend of two box points stays in the box.
        prop_assert!(in_box(&b));
        // It is one solver step with eta = alpha.
        if alpha > 0.0 {
            let step = Solver::new(alpha, 0.0, 1, false).unwrap().step(&current, &target).unwrap();
            for (x, y) in step.as_slice().iter().zip(b.as_slice()) {
                prop_assert!((x - y).abs() <= ROUND);
            }
        }
    }

    #[test]
    fn box_projection_is_idempotent_and_non_expansive(
        (s, a, b) in (1usize..=5).prop_flat_map(|d| {
            (weights(d), norm_metric(), wide(d), wide(d)).prop_map(|(w, m, a, b)| (space(w, m), v(a), v(b)))
        }),
    ) {
        let pa = project_box(&a);
        prop_assert!(in_box(&pa));
        prop_assert_eq!(project_box(&pa), pa.clone());
        let pb = project_box(&b);
        prop_assert!(s.distance(&pa, &pb).unwrap() <= s.distance(&a, &b).unwrap() + ROUND);
    }

    #[test]
    fn box_projection_fixes_box_points((_s, a, _b) in space_and_pair()) {
        prop_assert_eq!(project_box(&a), a);
    }

    #[test]
    fn metrics_are_symmetric_and_zero_on_equal_points(
        (d, w, m) in (1usize..=5).prop_flat_map(|d| (Just(d), weights(d), any_metric())),
        a in unit(5), b in unit(5), c in unit(5),
    ) {
        let s = space(w, m);
        let (a, b, c) = (v(a[..d].to_vec()), v(b[..d].to_vec()), v(c[..d].to_vec()));
        let ab = s.distance(&a, &b).unwrap();
        prop_assert!(ab >= 0.0);
        prop_assert!((ab - s.distance(&b, &a).unwrap()).abs() <= ROUND);
        prop_assert!(s.distance(&a, &a).unwrap() <= ROUND);
        if m == DistanceMetric::Cosine {
            prop_assert!(ab <= 2.0);
        } else {
            let ac = s.distance(&a, &c).unwrap();
            let cb = s.distance(&c, &b).unwrap();
            prop_assert!(ab <= ac + cb + ROUND, "triangle inequality");
        }
    }
}

/// Coordinates on a grid of step 1/2: duplicates and degenerate
/// (collinear, coplanar) point sets.
fn coarse(d: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec((0u8..=2).prop_map(|k| f64::from(k) / 2.0), d)
}

/// A space with up to 6 dimensions, up to 16 points in the box (some on a
/// coarse grid) and two targets anywhere nearby.
fn hull_case() -> impl Strategy<Value = (ValueSpace, Vec<ValueVector>, ValueVector, ValueVector)> {
    (1usize..=6, 1usize..=16).prop_flat_map(|(d, n)| {
        (
            weights(d),
            prop::collection::vec(prop_oneof![unit(d), coarse(d)], n),
            wide(d),
            wide(d),
        )
            .prop_map(|(w, pts, y1, y2)| {
                (
                    space(w, DistanceMetric::L2),
                    pts.into_iter().map(v).collect(),
                    v(y1),
                    v(y2),
                )
            })
    })
}

proptest! {
    #[test]
    fn hull_projection_is_a_feasible_optimal_point((s, pts, y, _) in hull_case(), mix in prop::collection::vec(0.0f64..1.0, 16)) {
        let p = s.project_hull(&pts, &y, HullOptions::default()).unwrap();
        prop_assert!(p.converged, "gap {} after {} iterations", p.gap, p.iterations);
        // λ on the simplex, and the point is their mixture.
        prop_assert!(p.weights.iter().all(|&l| l >= 0.0));
        prop_assert!((p.weights.iter().sum::<f64>() - 1.0).abs() <= 1e-9);
        for i in 0..s.len() {
            let x: f64 = p.weights.iter().zip(&pts).map(|(l, q)| l * q.as_slice()[i]).sum();
            prop_assert!((x - p.point.as_slice()[i]).abs() <= 1e-9);
        }
        // No vertex and no other mixture is closer (weighted L2).
        let best = s.l2_w(&p.point, &y).unwrap();
        prop_assert!((best - p.distance_l2w).abs() <= 1e-12);
        for q in &pts {
            prop_assert!(best <= s.l2_w(q, &y).unwrap() + 1e-9);
        }
        let total: f64 = mix[..pts.len()].iter().sum::<f64>().max(1e-9);
        let other: Vec<f64> = (0..s.len())
            .map(|i| pts.iter().zip(&mix).map(|(q, m)| m / total * q.as_slice()[i]).sum())
            .collect();
        if mix[..pts.len()].iter().sum::<f64>() > 1e-6 {
            prop_assert!(best <= s.l2_w(&v(other), &y).unwrap() + 1e-9);
        }
    }

    #[test]
    fn hull_projection_is_idempotent((s, pts, y, _) in hull_case()) {
        let p = s.project_hull(&pts, &y, HullOptions::default()).unwrap();
        let pp = s.project_hull(&pts, &p.point, HullOptions::default()).unwrap();
        prop_assert!(s.l2_w(&pp.point, &p.point).unwrap() <= HULL, "moved by {}", s.l2_w(&pp.point, &p.point).unwrap());
        prop_assert!(pp.distance_l2w <= HULL);
    }

    #[test]
    fn hull_projection_is_non_expansive((s, pts, y1, y2) in hull_case()) {
        let p1 = s.project_hull(&pts, &y1, HullOptions::default()).unwrap();
        let p2 = s.project_hull(&pts, &y2, HullOptions::default()).unwrap();
        let moved = s.l2_w(&p1.point, &p2.point).unwrap();
        let apart = s.l2_w(&y1, &y2).unwrap();
        prop_assert!(moved <= apart + 2.0 * HULL, "{moved} > {apart}");
    }
}

/// Up to 14 points (at least `min`) on a coarse grid, so ties and
/// duplicates are common.
fn grid_points(min: usize) -> impl Strategy<Value = Vec<ValueVector>> {
    (1usize..=4).prop_flat_map(move |d| {
        prop::collection::vec(
            prop::collection::vec((0u8..=4).prop_map(|k| f64::from(k) / 4.0), d),
            min..15,
        )
        .prop_map(|pts| pts.into_iter().map(v).collect())
    })
}

proptest! {
    #[test]
    fn pareto_front_is_exactly_the_non_dominated_set(pts in grid_points(0)) {
        let front = pareto_front(&pts).unwrap();
        prop_assert_eq!(front.is_empty(), pts.is_empty());
        for (i, p) in pts.iter().enumerate() {
            let dominated = pts.iter().any(|q| dominates(q, p).unwrap());
            prop_assert_eq!(front.contains(&i), !dominated);
            if dominated {
                // Some front member dominates it (dominance is transitive).
                prop_assert!(front.iter().any(|&f| dominates(&pts[f], p).unwrap()));
            }
        }
        // Independent of the order of the points.
        let reversed: Vec<ValueVector> = pts.iter().rev().cloned().collect();
        let mut a: Vec<Vec<f64>> = front.iter().map(|&i| pts[i].as_slice().to_vec()).collect();
        let mut b: Vec<Vec<f64>> = pareto_front(&reversed).unwrap().iter().map(|&i| reversed[i].as_slice().to_vec()).collect();
        a.sort_by(|x, y| x.partial_cmp(y).unwrap());
        b.sort_by(|x, y| x.partial_cmp(y).unwrap());
        prop_assert_eq!(a, b);
    }

    #[test]
    fn nearest_is_the_first_argmin(
        pts in grid_points(1),
        m in any_metric(),
        t in unit(4),
    ) {
        let d = pts[0].len();
        let s = space(vec![1.0; d], m);
        let target = v(t[..d].to_vec());
        let i = s.nearest(&pts, &target).unwrap();
        let di = s.distance(&pts[i], &target).unwrap();
        for (j, p) in pts.iter().enumerate() {
            let dj = s.distance(p, &target).unwrap();
            prop_assert!(di <= dj);
            if j < i {
                prop_assert!(dj > di);
            }
        }
    }
}

/// A space, `V0`, `V_D`, a run of candidate profiles and planner settings.
#[allow(clippy::type_complexity)]
fn planner_case() -> impl Strategy<
    Value = (
        ValueSpace,
        ValueVector,
        ValueVector,
        Vec<ValueVector>,
        f64,
        f64,
        f64,
    ),
> {
    (1usize..=4).prop_flat_map(|d| {
        (
            weights(d),
            norm_metric(),
            unit(d),
            unit(d),
            prop::collection::vec(unit(d), 0..10),
            0.05f64..=1.0,
            0.05f64..1.95,
            0.0f64..0.05,
        )
            .prop_map(|(w, m, v0, vd, cands, alpha, eta, tol)| {
                (
                    space(w, m),
                    v(v0),
                    v(vd),
                    cands.into_iter().map(v).collect(),
                    alpha,
                    eta,
                    tol,
                )
            })
    })
}

proptest! {
    #[test]
    fn planner_ladder_and_anchor_never_lose_ground(
        (s, v0, vd, cands, alpha, eta, tolerance) in planner_case()
    ) {
        let config = SearchConfig {
            alpha,
            eta,
            tolerance,
            max_candidates: 100,
            patience: 100,
            ..SearchConfig::default()
        };
        let mut planner = Planner::new(s.clone(), v0.clone(), vd.clone(), &config).unwrap();
        let d0 = s.distance(&v0, &vd).unwrap();
        let mut seen = vec![v0.clone()];
        let mut previous: Option<Proposal> = None;
        for i in 0..=cands.len() {
            let p = planner.propose().unwrap();
            // The search point is a box point.
            prop_assert!(in_box(&p.search_point));
            // The anchor is the nearest profile seen so far.
            let nearest = seen.iter().map(|x| s.distance(x, &vd).unwrap()).fold(f64::INFINITY, f64::min);
            prop_assert!((p.anchor_distance - nearest).abs() <= ROUND);
            // Rungs lie on the segment V0 -> V_D at 1 - (1 - alpha)^k of the way
            // (or at V_D once within tolerance), and never move back.
            let c_k = if p.goal == vd { 1.0 } else { 1.0 - (1.0 - alpha).powi(p.rung as i32) };
            for ((g, a), b) in p.goal.as_slice().iter().zip(v0.as_slice()).zip(vd.as_slice()) {
                prop_assert!((g - (a + c_k * (b - a))).abs() <= 1e-9);
            }
            prop_assert!(p.goal_distance <= (1.0 - c_k) * d0 + 1e-9);
            if let Some(q) = &previous {
                prop_assert!(p.rung >= q.rung);
                prop_assert!(p.goal_distance <= q.goal_distance + ROUND);
                prop_assert!(p.anchor_distance <= q.anchor_distance + ROUND);
            }
            let reached = p.anchor_distance <= tolerance
                || meets_targets(p.anchor.map_or(&v0, |i| &cands[i]), &vd);
            prop_assert_eq!(p.status == PlanStatus::Reached, reached);
            if p.status == PlanStatus::Search {
                // A search always aims at a rung closer to V_D than the anchor.
                prop_assert!(p.goal_distance <= p.anchor_distance + ROUND);
            }
            if let Some(c) = cands.get(i) {
                planner.record(c.clone()).unwrap();
                seen.push(c.clone());
            }
            previous = Some(p);
        }
    }
}
