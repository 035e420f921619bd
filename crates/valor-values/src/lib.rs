//! Value algebra for Valor: value spaces, profiles, distances, the seed's
//! solver and blend, projections, Pareto fronts, measurement from evaluation
//! results, `values.toml`, the search planner and the `remodel.json` report.
//!
//! Owns: what a *value profile* is (one score in `[0, 1]` per named,
//! documented dimension; higher is better), how profiles are compared,
//! how evaluation numbers become scores, how stakeholders state a target in
//! `values.toml`, how `valor remodel` decides where to search next and which
//! model becomes `V_T`, and how that decision is reported.
//!
//! Does not know about: tensors, burn, polars, datasets, training, how
//! fairness metrics or explanations are computed (it receives them as plain
//! numbers in an [`Evaluation`]), the command line.
//!
//! Main types. A [`ValueSpace`] is an ordered set of [`Dimension`]s with
//! weights and a [`DistanceMetric`] (weighted l1, l2, linf, cosine); a
//! [`ValueVector`] is a point in it and a [`Profile`] the same keyed by name,
//! where a dimension may be [`Score::NotMeasured`] (never an invented
//! number). The algebra: [`project_box`], [`ValueSpace::project_hull`]
//! (Wolfe's nearest-point algorithm), [`blend`] (`V_T <- alpha V_D + (1 - alpha)
//! V_T`), the gradient [`Solver`] on `L(V) = 1/2 ‖V - V_D‖^2` with its
//! [`Trajectory`], [`pareto_front`] and [`ValueSpace::nearest`]. A
//! [`ValuesSpec`] is a validated `values.toml` ([`default_values_toml`]);
//! [`measure`] turns an [`Evaluation`] into a [`Profile`] through each
//! dimension's [`Measure`]. A [`Planner`] proposes intermediate targets and
//! search points and picks the next fairness-penalty weight; [`select`]
//! chooses `V_T` and [`RemodelReport`] writes `remodel.json` and its HTML
//! page. The [`planner`] module documents the `valor remodel` loop.
//!
//! ```
//! use valor_values::{Candidate, Evaluation, ValuesSpec, measure, select};
//!
//! let spec = ValuesSpec::parse("[target]\nfairness = 0.9\naccuracy = 0.8\n", "values.toml")?;
//! let eval = |f1: f64, eod: f64| Evaluation {
//!     macro_f1: f1,
//!     equalized_odds_difference: Some(eod),
//!     ..Evaluation::default()
//! };
//! let v0 = measure(&eval(0.85, 0.20), &spec)?; // fairness 0.80, accuracy 0.85
//! let candidates = vec![
//!     Candidate { label: "baseline".into(), settings: Default::default(), profile: v0.clone() },
//!     Candidate { label: "lambda=1".into(), settings: Default::default(), profile: measure(&eval(0.82, 0.08), &spec)? },
//! ];
//! let selection = select(&spec, &v0, &candidates)?;
//! assert_eq!(selection.chosen, 1);
//! assert!(selection.reachable); // 0.92 >= 0.9 and 0.82 >= 0.8
//! assert!(selection.distance_vt_vd < selection.distance_v0_vd);
//! # Ok::<(), valor_values::Error>(())
//! ```

mod algebra;
mod error;
mod fsio;
mod html;
pub mod hull;
mod measure;
pub mod planner;
mod report;
mod space;
mod spec;

pub use algebra::{
    Solver, SolverStep, SolverStop, Trajectory, blend, dominates, in_box, pareto_front, project_box,
};
pub use error::{Error, Result};
pub use fsio::write_atomic;
pub use hull::{HullOptions, HullProjection};
pub use measure::{EvalField, Evaluation, Measure, measure};
pub use planner::{PlanStatus, Planner, Proposal, meets_targets};
pub use report::{
    Candidate, CandidateReport, ChosenReport, DimensionReport, HullReport, MixtureTerm,
    RemodelReport, Selection, SplitSummary, TestConfirmation, TrajectoryStep, select,
};
pub use space::{
    ACCURACY, Dimension, DistanceMetric, EFFICIENCY, FAIRNESS, Profile, Score, TRANSPARENCY,
    ValueSpace, ValueVector, builtin_dimension, builtin_dimensions, validate_dimension_name,
};
pub use spec::{
    DimensionSpec, EfficiencyBudget, FairnessPenalty, SearchConfig, SelectRule, TrainSettings,
    UnmeasuredPolicy, ValuesSpec, default_values_toml,
};
