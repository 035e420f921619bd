//! Constrained training's side of the loop (see [`crate::constraint`] for
//! the method): after every optimizer step the gaps are measured with hard
//! predictions on a constraint batch — training rows outside the step's
//! gradient batch, drawn with a seed that is a function of the run's seed
//! and the step — and the multipliers take one projected ascent step; at
//! every epoch's end each constraint is checked on validation with its
//! selection margin; the tested model's constraints are reported on test
//! with 95% bootstrap intervals.
//!
//! Multipliers are indexed constraint-major over the fairness group
//! columns: `j = constraint · columns + column`.

use serde::Serialize;
use valor_base::splitmix::SplitMix64;
use valor_bert::BertForSequenceClassification;

use super::eval::predict_rows;
use super::prepare::Context;
use super::step::mix;
use crate::checkpoint::ConstraintCheck;
use crate::checkpoint::TrainState;
use crate::constraint::{bootstrap_gap, decay_and_add, dual_update, gap_of_cells};
use crate::error::Result;
use crate::metrics::EvalCounts;

/// Stream tag of the constraint batches' seeds.
const CONSTRAINT_STREAM: u64 = 0xC057_47A1;

/// Number of multipliers of the run (0 without constraints).
pub(super) fn multiplier_count(ctx: &Context) -> usize {
    ctx.config.fairness.constraints.len() * ctx.fair_columns.len()
}

/// One step's line of `metrics.jsonl` (`"event": "constraints"`).
#[derive(Debug, Serialize)]
pub(super) struct StepRecord {
    pub(super) event: &'static str,
    pub(super) step: u64,
    /// `demographic_parity <= 0.05 @ gender`, one per multiplier.
    pub(super) names: Vec<String>,
    /// The multipliers after this step's ascent.
    pub(super) multipliers: Vec<f64>,
    /// The differentiable surrogate on the gradient batch (mean over its
    /// micro-batches), the gap the model player descends.
    pub(super) surrogate_gap: Vec<Option<f64>>,
    /// The gap of hard predictions on the decayed counts of the constraint
    /// batches, the one the multipliers ascend.
    pub(super) measured_gap: Vec<Option<f64>>,
    pub(super) constraint_rows: usize,
}

/// The names of the multipliers, in their order.
pub(super) fn multiplier_names(ctx: &Context) -> Vec<String> {
    ctx.config
        .fairness
        .constraints
        .iter()
        .flat_map(|c| ctx.fair_names.iter().map(move |g| format!("{c} @ {g}")))
        .collect()
}

/// The constraint batch of optimizer step `step`: up to
/// `constraint_batch_size` distinct training rows, none of them in
/// `gradient_rows`, drawn by a partial Fisher–Yates shuffle seeded from
/// the run's seed and the step (so a resumed run draws the same ones).
pub(super) fn constraint_batch(
    ctx: &Context,
    step: u64,
    gradient_rows: &[Vec<usize>],
) -> Vec<usize> {
    let n = ctx.train.len();
    let mut excluded = vec![false; n];
    for &i in gradient_rows.iter().flatten() {
        excluded[i] = true;
    }
    let mut pool: Vec<usize> = (0..n).filter(|&i| !excluded[i]).collect();
    let m = ctx
        .config
        .fairness
        .constrained
        .constraint_batch_size
        .min(pool.len());
    let mut rng = SplitMix64::new(mix(ctx.config.seed ^ CONSTRAINT_STREAM, step));
    for k in 0..m {
        let r = k + (rng.next() % (pool.len() - k) as u64) as usize;
        pool.swap(k, r);
    }
    pool.truncate(m);
    pool.sort_unstable();
    pool
}

/// Zero counts for every fairness column (none without constraints).
pub(super) fn empty_counts(ctx: &Context) -> Vec<Vec<Vec<f64>>> {
    if ctx.config.fairness.constraints.is_empty() {
        return Vec::new();
    }
    let k = ctx.labels.len();
    ctx.fair_index
        .iter()
        .map(|&gi| vec![vec![0.0; k * k]; ctx.group_columns[gi].1.len()])
        .collect()
}

/// Adds the constraint batch `rows` (predicted by the model as it is
/// after the step) to the decayed counts, measures every (constraint,
/// column) gap on them, and moves the multipliers. Returns the gaps.
pub(super) fn ascend(
    ctx: &Context,
    model: &BertForSequenceClassification,
    rows: &[usize],
    state: &mut TrainState,
) -> Result<Vec<Option<f64>>> {
    let predicted = predict_rows(ctx, model, &ctx.train, rows)?;
    let k = ctx.labels.len();
    let settings = &ctx.config.fairness.constrained;
    for (col, cells) in state.constraint_counts.iter_mut().enumerate() {
        let column = &ctx.fair_columns[col];
        let labels = &ctx.train.data.labels;
        decay_and_add(
            cells,
            settings.constraint_decay,
            k,
            rows.iter()
                .zip(&predicted)
                .map(|(&i, &p)| (column[i] as usize, labels[i].0 as usize, p as usize)),
        );
    }
    let mut gaps = Vec::new();
    let mut bounds = Vec::new();
    for c in &ctx.config.fairness.constraints {
        for cells in &state.constraint_counts {
            gaps.push(gap_of_cells(
                c.kind,
                cells,
                k,
                ctx.positive.map(|p| p as usize),
            ));
            bounds.push(c.bound * settings.train_bound_ratio);
        }
    }
    dual_update(
        &mut state.multipliers,
        &gaps,
        &bounds,
        settings.multiplier_lr,
    );
    Ok(gaps)
}

/// Every (constraint, column) on an evaluated split. `one_sided`: the
/// validation margin (the `selection_confidence` quantile is `upper`, and
/// a constraint holds when it is at or under the bound); otherwise the
/// test report (a two-sided 95% interval, holding when the point gap is at
/// or under the bound). An undefined gap never holds.
pub(super) fn checks(
    ctx: &Context,
    counts: &EvalCounts,
    one_sided: bool,
    seed: u64,
) -> Vec<ConstraintCheck> {
    let settings = &ctx.config.fairness.constrained;
    let (level, quantiles) = if one_sided {
        let c = settings.selection_confidence;
        (c, (1.0 - c, c))
    } else {
        (0.95, (0.025, 0.975))
    };
    let mut out = Vec::new();
    for (ci, c) in ctx.config.fairness.constraints.iter().enumerate() {
        for (gi, name) in ctx.fair_names.iter().enumerate() {
            let interval = counts.column_matrices(name).and_then(|m| {
                bootstrap_gap(
                    c.kind,
                    &m,
                    ctx.positive.map(|p| p as usize),
                    settings.resamples,
                    mix(seed, (ci * 1000 + gi) as u64),
                    quantiles,
                )
            });
            let holds = interval.is_some_and(|i| {
                if one_sided {
                    i.upper <= c.bound
                } else {
                    i.gap <= c.bound
                }
            });
            out.push(ConstraintCheck {
                constraint: c.to_string(),
                bound: c.bound,
                group: name.clone(),
                gap: interval.map(|i| i.gap),
                lower: interval.map(|i| i.lower),
                upper: interval.map(|i| i.upper),
                level,
                holds,
            });
        }
    }
    out
}

/// The largest excess of a validation margin over its bound (0 when every
/// check holds; an undefined gap counts as an excess of 1).
pub(super) fn violation(checks: &[ConstraintCheck]) -> f64 {
    checks
        .iter()
        .map(|c| match c.upper {
            Some(_) if c.holds => 0.0,
            Some(u) => (u - c.bound).max(f64::MIN_POSITIVE),
            None => 1.0,
        })
        .fold(0.0, f64::max)
}
