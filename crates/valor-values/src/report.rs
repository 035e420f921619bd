//! Choosing `V_T` and the `remodel.json` / HTML report.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::algebra::pareto_front;
use crate::error::{Error, Result};
use crate::hull::{HullOptions, HullProjection};
use crate::planner::{PlanStatus, Proposal, meets_targets};
use crate::space::{DistanceMetric, Profile, ValueSpace, ValueVector};
use crate::spec::{SearchConfig, SelectRule, ValuesSpec};

/// A measured candidate model: its lever settings and validation profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Short human label (e.g. `"lambda=0.3"`, `"baseline"`).
    pub label: String,
    /// The settings that produced it (lambda, reweighing, thresholds, ...).
    pub settings: BTreeMap<String, serde_json::Value>,
    /// Its value profile on the validation split.
    pub profile: Profile,
}

/// The outcome of [`select`]: the comparison space, the Pareto front, the
/// chosen `V_T` and the reachability verdict, all on the validation split.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The space of the dimensions measured for the baseline and every
    /// candidate (weights and metric from `values.toml`).
    pub space: ValueSpace,
    /// Target dimensions left out of distances, with the reason.
    pub not_measured: BTreeMap<String, String>,
    /// `V_D` on every target dimension.
    pub targets: BTreeMap<String, f64>,
    /// `V_D` in `space`.
    pub vd: ValueVector,
    /// The baseline profile.
    pub v0: Profile,
    /// The baseline in `space`.
    pub v0_vector: ValueVector,
    /// The candidates, as given.
    pub candidates: Vec<Candidate>,
    /// The candidates in `space`.
    pub vectors: Vec<ValueVector>,
    /// `d(candidate, V_D)` for each candidate.
    pub distances: Vec<f64>,
    /// Indices of the non-dominated candidates.
    pub pareto_front: Vec<usize>,
    /// Index of `V_T` among the candidates.
    pub chosen: usize,
    /// The rule that chose it.
    pub rule: SelectRule,
    /// `d(V0, V_D)`.
    pub distance_v0_vd: f64,
    /// `d(V_T, V_D)`.
    pub distance_vt_vd: f64,
    /// The tolerance from `values.toml`.
    pub tolerance: f64,
    /// Whether `V_T` reaches `V_D`: within tolerance, or meeting every target.
    pub reachable: bool,
    /// `V_D` projected onto the convex hull of `V0` and the candidates.
    pub hull: HullProjection,
}

/// Chooses `V_T` among `candidates` (validation profiles; include the
/// baseline as a candidate when keeping it is acceptable, as remodel does).
///
/// Distances use the dimensions measured for `v0` and every candidate; the
/// others are listed in [`Selection::not_measured`]. Under
/// `select = "pareto_nearest"` `V_T` is the Pareto-front candidate nearest to
/// `V_D`; under `"nearest"`, the nearest of all. Ties go to the earliest
/// candidate.
pub fn select(spec: &ValuesSpec, v0: &Profile, candidates: &[Candidate]) -> Result<Selection> {
    if candidates.is_empty() {
        return Err(Error::Empty { context: "select" });
    }
    let mut profiles = vec![v0];
    profiles.extend(candidates.iter().map(|c| &c.profile));
    let (space, not_measured) = spec.space().measured_in(&profiles)?;
    let vd = spec.target_vector(&space)?;
    let v0_vector = space.vector(v0)?;
    let vectors = candidates
        .iter()
        .map(|c| space.vector(&c.profile))
        .collect::<Result<Vec<_>>>()?;
    let distances = vectors
        .iter()
        .map(|v| space.distance(v, &vd))
        .collect::<Result<Vec<_>>>()?;
    let front = pareto_front(&vectors)?;
    let rule = spec.search().select;
    let pool: Vec<usize> = match rule {
        SelectRule::ParetoNearest => front.clone(),
        SelectRule::Nearest => (0..candidates.len()).collect(),
    };
    let chosen = pool
        .iter()
        .copied()
        .min_by(|&a, &b| distances[a].total_cmp(&distances[b]).then(a.cmp(&b)))
        .ok_or(Error::Empty {
            context: "select (Pareto front)",
        })?;
    let distance_v0_vd = space.distance(&v0_vector, &vd)?;
    let distance_vt_vd = distances[chosen];
    let tolerance = spec.search().tolerance;
    let reachable = distance_vt_vd <= tolerance || meets_targets(&vectors[chosen], &vd);
    let mut hull_points = vec![v0_vector.clone()];
    hull_points.extend(vectors.iter().cloned());
    let hull = space.project_hull(&hull_points, &vd, HullOptions::default())?;
    Ok(Selection {
        targets: spec.targets(),
        space,
        not_measured,
        vd,
        v0: v0.clone(),
        v0_vector,
        candidates: candidates.to_vec(),
        vectors,
        distances,
        pareto_front: front,
        chosen,
        rule,
        distance_v0_vd,
        distance_vt_vd,
        tolerance,
        reachable,
        hull,
    })
}

/// The baseline and chosen model measured on the test split.
#[derive(Debug, Clone, PartialEq)]
pub struct TestConfirmation {
    /// Baseline profile on the test split.
    pub v0: Profile,
    /// Chosen model's profile on the test split.
    pub vt: Profile,
}

/// One candidate in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateReport {
    /// Position in the candidate list.
    pub index: usize,
    /// Its label.
    pub label: String,
    /// Its lever settings.
    pub settings: BTreeMap<String, serde_json::Value>,
    /// Its validation profile.
    pub profile: Profile,
    /// `d(profile, V_D)` on validation.
    pub distance_to_vd: f64,
    /// Whether it is on the Pareto front.
    pub on_pareto_front: bool,
}

/// The chosen model in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChosenReport {
    /// Position in the candidate list.
    pub index: usize,
    /// Its label.
    pub label: String,
    /// Its lever settings.
    pub settings: BTreeMap<String, serde_json::Value>,
    /// The selection rule (`pareto_nearest` or `nearest`).
    pub rule: SelectRule,
    /// Its validation profile.
    pub validation_profile: Profile,
    /// `d(V_T, V_D)` on validation.
    pub validation_distance_to_vd: f64,
}

/// `V0` and `V_T` on the validation split (where `V_T` was chosen).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitSummary {
    /// Baseline profile.
    pub v0: Profile,
    /// Chosen model's profile.
    pub vt: Profile,
    /// `d(V0, V_D)`.
    pub distance_v0_vd: f64,
    /// `d(V_T, V_D)`.
    pub distance_vt_vd: f64,
}

/// One term of the hull mixture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixtureTerm {
    /// `baseline` or a candidate's label.
    pub label: String,
    /// Its weight in the mixture.
    pub weight: f64,
}

/// `V_D` projected onto the convex hull of the measured profiles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HullReport {
    /// `‖x* - V_D‖_W`: no mixture of the measured models gets closer to
    /// `V_D` in the weighted Euclidean norm.
    pub distance_l2w_to_vd: f64,
    /// The projected point.
    pub point: Profile,
    /// The mixture weights (non-zero terms only).
    pub mixture: Vec<MixtureTerm>,
    /// Whether the projection met its tolerance.
    pub converged: bool,
}

/// Meaning, measure, target and weight of one dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimensionReport {
    /// What it means.
    pub description: String,
    /// The measure's name in `values.toml`.
    pub measure: String,
    /// The measure's formula.
    pub formula: String,
    /// The target.
    pub target: f64,
    /// The weight.
    pub weight: f64,
}

/// One planner step in the report (profiles keyed by dimension).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryStep {
    /// Proposal number.
    pub round: usize,
    /// What the planner advised.
    pub status: PlanStatus,
    /// Candidates measured so far.
    pub candidates_measured: usize,
    /// Anchor: `None` for the baseline, else the planner's candidate index.
    pub anchor: Option<usize>,
    /// `d(anchor, V_D)`.
    pub anchor_distance: f64,
    /// Ladder rung.
    pub rung: usize,
    /// The rung's target.
    pub goal: Profile,
    /// `d(goal, V_D)`.
    pub goal_distance: f64,
    /// Where the next candidate aimed.
    pub search_point: Profile,
}

/// The `remodel.json` report: `V0`, `V_T` and `V_D`, their distances, the
/// Pareto front and the chosen settings, with an honest reachability verdict.
/// Maps are ordered, so the JSON is stable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemodelReport {
    /// Baseline profile (on `split`).
    pub v0: Profile,
    /// Chosen model's profile (on `split`).
    pub vt: Profile,
    /// The target.
    pub vd: BTreeMap<String, f64>,
    /// `d(V0, V_D)` over `distance_dimensions` (on `split`).
    pub distance_v0_vd: f64,
    /// `d(V_T, V_D)` over `distance_dimensions` (on `split`).
    pub distance_vt_vd: f64,
    /// The distance metric.
    pub metric: DistanceMetric,
    /// The Pareto front (validation).
    pub pareto_front: Vec<CandidateReport>,
    /// The chosen model.
    pub chosen: ChosenReport,
    /// Whether `V_T` reaches `V_D` on `split`: within `tolerance`, or meeting
    /// every target.
    pub reachable: bool,
    /// One paragraph saying what was achieved and, when `V_D` is out of reach,
    /// by how much and where.
    pub message: String,
    /// Split of `v0`, `vt` and the top-level distances: `test` when
    /// confirmed on the test split, else `validation`.
    pub split: String,
    /// The tolerance from `values.toml`.
    pub tolerance: f64,
    /// Dimensions the distances are computed over.
    pub distance_dimensions: Vec<String>,
    /// Weights of those dimensions.
    pub weights: BTreeMap<String, f64>,
    /// Target dimensions that are NOT MEASURED, with the reason.
    pub not_measured: BTreeMap<String, String>,
    /// Meaning, measure, target and weight of every target dimension.
    pub dimensions: BTreeMap<String, DimensionReport>,
    /// The search settings from `values.toml`.
    pub search: SearchConfig,
    /// Validation-split profiles and distances (where `V_T` was chosen).
    pub validation: SplitSummary,
    /// Every candidate measured (validation).
    pub candidates: Vec<CandidateReport>,
    /// `V_D` projected onto the convex hull of the measured profiles.
    pub hull: HullReport,
    /// The planner's proposals.
    pub trajectory: Vec<TrajectoryStep>,
    /// Config, seed, commit, versions, dataset hash, ... (filled by the
    /// caller; `valor_values_version` and `values_toml` are added here).
    pub provenance: BTreeMap<String, serde_json::Value>,
}

impl RemodelReport {
    /// Builds the report from a [`Selection`], the optional test-split
    /// confirmation, the planner's history and the caller's provenance.
    /// Without `test`, `v0`, `vt` and the top-level distances are the
    /// validation ones.
    pub fn new(
        spec: &ValuesSpec,
        selection: &Selection,
        test: Option<&TestConfirmation>,
        trajectory: &[Proposal],
        mut provenance: BTreeMap<String, serde_json::Value>,
    ) -> Result<Self> {
        let s = selection;
        let space = &s.space;
        let chosen_candidate = &s.candidates[s.chosen];
        let candidate_report = |i: usize| CandidateReport {
            index: i,
            label: s.candidates[i].label.clone(),
            settings: s.candidates[i].settings.clone(),
            profile: s.candidates[i].profile.clone(),
            distance_to_vd: s.distances[i],
            on_pareto_front: s.pareto_front.contains(&i),
        };
        let validation = SplitSummary {
            v0: s.v0.clone(),
            vt: chosen_candidate.profile.clone(),
            distance_v0_vd: s.distance_v0_vd,
            distance_vt_vd: s.distance_vt_vd,
        };
        let (split, v0, vt, d0, dt, vt_vector) = match test {
            Some(t) => {
                let v0v = space.vector(&t.v0)?;
                let vtv = space.vector(&t.vt)?;
                (
                    "test",
                    t.v0.clone(),
                    t.vt.clone(),
                    space.distance(&v0v, &s.vd)?,
                    space.distance(&vtv, &s.vd)?,
                    vtv,
                )
            }
            None => (
                "validation",
                s.v0.clone(),
                chosen_candidate.profile.clone(),
                s.distance_v0_vd,
                s.distance_vt_vd,
                s.vectors[s.chosen].clone(),
            ),
        };
        let reachable = dt <= s.tolerance || meets_targets(&vt_vector, &s.vd);
        let mut not_measured = s.not_measured.clone();
        if let Some(t) = test {
            for (k, r) in t.v0.not_measured().into_iter().chain(t.vt.not_measured()) {
                not_measured.entry(k).or_insert(r);
            }
        }
        let message = verdict(
            space,
            s,
            split,
            reachable,
            dt,
            d0,
            &vt_vector,
            &not_measured,
        );
        let mut labels = vec!["baseline".to_owned()];
        labels.extend(s.candidates.iter().map(|c| c.label.clone()));
        let hull = HullReport {
            distance_l2w_to_vd: s.hull.distance_l2w,
            point: space.profile(&s.hull.point)?,
            mixture: labels
                .into_iter()
                .zip(&s.hull.weights)
                .filter(|(_, w)| **w > 1e-9)
                .map(|(label, &weight)| MixtureTerm { label, weight })
                .collect(),
            converged: s.hull.converged,
        };
        let dimensions = spec
            .dimensions()
            .iter()
            .map(|d| {
                (
                    d.dimension.name.clone(),
                    DimensionReport {
                        description: d.dimension.description.clone(),
                        measure: d.measure.name(),
                        formula: d.measure.formula(),
                        target: d.target,
                        weight: d.weight,
                    },
                )
            })
            .collect();
        let trajectory = trajectory
            .iter()
            .map(|p| {
                Ok(TrajectoryStep {
                    round: p.round,
                    status: p.status,
                    candidates_measured: p.candidates_measured,
                    anchor: p.anchor,
                    anchor_distance: p.anchor_distance,
                    rung: p.rung,
                    goal: space.profile(&p.goal)?,
                    goal_distance: p.goal_distance,
                    search_point: space.profile(&p.search_point)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        provenance.insert(
            "valor_values_version".into(),
            env!("CARGO_PKG_VERSION").into(),
        );
        provenance.insert("values_toml".into(), spec.origin().into());
        Ok(Self {
            v0,
            vt,
            vd: s.targets.clone(),
            distance_v0_vd: d0,
            distance_vt_vd: dt,
            metric: space.metric(),
            pareto_front: s
                .pareto_front
                .iter()
                .map(|&i| candidate_report(i))
                .collect(),
            chosen: ChosenReport {
                index: s.chosen,
                label: chosen_candidate.label.clone(),
                settings: chosen_candidate.settings.clone(),
                rule: s.rule,
                validation_profile: chosen_candidate.profile.clone(),
                validation_distance_to_vd: s.distance_vt_vd,
            },
            reachable,
            message,
            split: split.to_owned(),
            tolerance: s.tolerance,
            distance_dimensions: space.names().iter().map(|n| (*n).to_owned()).collect(),
            weights: space
                .names()
                .iter()
                .zip(space.weights())
                .map(|(n, &w)| ((*n).to_owned(), w))
                .collect(),
            not_measured,
            dimensions,
            search: spec.search().clone(),
            validation,
            candidates: (0..s.candidates.len()).map(candidate_report).collect(),
            hull,
            trajectory,
            provenance,
        })
    }

    /// The report as pretty JSON (stable key order).
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Writes [`RemodelReport::to_json`] to `path` atomically.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let mut text = self.to_json()?;
        text.push('\n');
        crate::fsio::write_atomic(path, text.as_bytes())
    }

    /// Writes [`RemodelReport::to_html`] to `path` atomically.
    pub fn write_html(&self, path: &Path) -> Result<()> {
        crate::fsio::write_atomic(path, self.to_html().as_bytes())
    }
}

/// The report's message: what was reached, or how far off and where.
#[allow(clippy::too_many_arguments)]
fn verdict(
    space: &ValueSpace,
    s: &Selection,
    split: &str,
    reachable: bool,
    dt: f64,
    d0: f64,
    vt: &ValueVector,
    not_measured: &BTreeMap<String, String>,
) -> String {
    let metric = space.metric();
    let mut msg = if reachable && dt <= s.tolerance {
        format!(
            "Target reached on the {split} split: V_T is at {metric} distance {dt:.4} from V_D \
             (tolerance {:.4}; the baseline was at {d0:.4}).",
            s.tolerance
        )
    } else if reachable {
        format!(
            "Target reached on the {split} split: V_T meets or exceeds every target \
             ({metric} distance {dt:.4}; the baseline was at {d0:.4})."
        )
    } else {
        let shortfalls: Vec<String> = space
            .names()
            .iter()
            .zip(vt.as_slice().iter().zip(s.vd.as_slice()))
            .filter(|(_, (v, t))| v < t)
            .map(|(n, (v, t))| format!("{n} {v:.3} < {t:.3}"))
            .collect();
        let progress = if d0 > 0.0 {
            format!(
                " ({:.0}% of the way from the baseline)",
                100.0 * (1.0 - dt / d0)
            )
        } else {
            String::new()
        };
        format!(
            "Target OUT OF REACH on the {split} split: the nearest achievable profile V_T is at \
             {metric} distance {dt:.4} from V_D, against {d0:.4} for the baseline{progress}. \
             Below target: {}. No mixture of the measured models comes closer than {:.4} \
             (weighted L2 distance to the convex hull of their profiles).",
            if shortfalls.is_empty() {
                "none (V_T overshoots some targets)".to_owned()
            } else {
                shortfalls.join(", ")
            },
            s.hull.distance_l2w
        )
    };
    for (dim, reason) in not_measured {
        msg.push_str(&format!(
            " {dim} is NOT MEASURED ({reason}) and left out of the distances."
        ));
    }
    msg
}
