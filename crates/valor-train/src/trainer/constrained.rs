//! Constrained training's side of the loop (see [`crate::constraint`] for
//! the method): after every optimizer step the gaps are measured with hard
//! predictions on a constraint batch — training rows outside the step's
//! gradient batch, drawn with a seed that is a function of the run's seed
//! and the step — and the multipliers take one projected ascent step; at
//! every epoch's end each constraint is checked on validation with its
//! selection margin; the tested model's constraints are reported on test
//! with 95% bootstrap intervals.
//!
//! Multipliers are one per [`Slot`]: a signed rate difference between two
//! groups of one fairness column ([`RateTerm`]), constraint-major, then
//! column, then the order of [`constraint_terms`]. The model player's side
//! (each row's prediction costs, carried by its cross-entropy target and
//! weight) is [`row_target`].

use serde::Serialize;
use valor_base::splitmix::SplitMix64;
use valor_bert::BertForSequenceClassification;

use super::eval::predict_rows;
use super::prepare::Context;
use super::step::mix;
use crate::checkpoint::ConstraintCheck;
use crate::checkpoint::TrainState;
use crate::constraint::{
    RateTerm, RowSet, applied_multipliers, bootstrap_gap, bootstrap_margin, constraint_terms,
    cost_target, decay_and_add, dual_update, gap_of_cells, prediction_costs, term_gap,
};
use crate::error::Result;
use crate::metrics::EvalCounts;

/// Gaps, one per (constraint, column) or per multiplier; `None` where
/// undefined.
type Gaps = Vec<Option<f64>>;

/// Stream tag of the constraint batches' seeds.
const CONSTRAINT_STREAM: u64 = 0xC057_47A1;

/// One multiplier's place: constraint `constraint` (index into the
/// configured constraints) on fairness column `column`, term `term`, and
/// the shares of training rows in the term's high and low groups (and its
/// rows' labels).
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub(super) constraint: usize,
    pub(super) column: usize,
    pub(super) term: RateTerm,
    shares: (f64, f64),
}

/// What constrained training needs beyond the configuration: the
/// multipliers' slots.
#[derive(Debug, Default)]
pub(super) struct Setup {
    pub(super) slots: Vec<Slot>,
}

impl Setup {
    /// Empty without constraints.
    pub(super) fn new(
        constraints: &[crate::constraint::Constraint],
        fair_columns: &[Vec<u32>],
        groups_per_column: &[usize],
        labels: &[u32],
        k: usize,
        positive: Option<u32>,
    ) -> Self {
        if constraints.is_empty() {
            return Self::default();
        }
        let n = labels.len().max(1) as f64;
        let shares: Vec<Vec<Vec<f64>>> = fair_columns
            .iter()
            .zip(groups_per_column)
            .map(|(column, &groups)| {
                let mut s = vec![vec![0.0; k]; groups];
                for (&g, &y) in column.iter().zip(labels) {
                    s[g as usize][y as usize] += 1.0 / n;
                }
                s
            })
            .collect();
        let mut slots = Vec::new();
        for (ci, c) in constraints.iter().enumerate() {
            for (column, &groups) in groups_per_column.iter().enumerate() {
                for term in constraint_terms(c.kind, k, positive.map(|p| p as usize), groups) {
                    let share = |g: usize| -> f64 {
                        shares[column][g]
                            .iter()
                            .enumerate()
                            .filter(|&(y, _)| term.rows.contains(y))
                            .map(|(_, s)| s)
                            .sum()
                    };
                    slots.push(Slot {
                        constraint: ci,
                        column,
                        term,
                        shares: (share(term.high), share(term.low)),
                    });
                }
            }
        }
        Setup { slots }
    }
}

/// Number of multipliers of the run (0 without constraints).
pub(super) fn multiplier_count(ctx: &Context) -> usize {
    ctx.constraints.slots.len()
}

/// The cross-entropy target (a distribution over labels) and weight of
/// training row `i` under the multipliers: its label and example weight
/// when no multiplier touches it, else the cheapest predictions of its
/// Lagrangian costs ([`prediction_costs`], [`cost_target`]).
pub(super) fn row_target(ctx: &Context, i: usize, multipliers: &[f64]) -> (Vec<f64>, f64) {
    let k = ctx.labels.len();
    let label = ctx.train.data.labels[i].0 as usize;
    let weight = ctx.weights[i];
    let mut costs: Vec<f64> = (0..k)
        .map(|c| if c == label { 0.0 } else { weight })
        .collect();
    for (column, groups) in ctx.fair_columns.iter().enumerate() {
        let terms = ctx
            .constraints
            .slots
            .iter()
            .zip(multipliers)
            .filter(|(s, _)| s.column == column)
            .map(|(s, &mu)| (s.term, mu, s.shares));
        let extra = prediction_costs(k, label, 0.0, groups[i] as usize, terms);
        for (c, e) in costs.iter_mut().zip(extra) {
            *c += e;
        }
    }
    cost_target(&costs)
}

/// One step's line of `metrics.jsonl` (`"event": "constraints"`).
#[derive(Debug, Serialize)]
pub(super) struct StepRecord {
    pub(super) event: &'static str,
    pub(super) step: u64,
    /// `demographic_parity <= 0.05 @ gender`, one per (constraint,
    /// column).
    pub(super) names: Vec<String>,
    /// Each (constraint, column)'s gap of hard predictions on the decayed
    /// counts of the constraint batches.
    pub(super) measured_gap: Vec<Option<f64>>,
    /// The multipliers' names ([`multiplier_names`]).
    pub(super) terms: Vec<String>,
    /// The multipliers after this step's ascent (the integral part).
    pub(super) multipliers: Vec<f64>,
    /// The multipliers the next step's loss uses (with the proportional
    /// part).
    pub(super) applied: Vec<f64>,
    /// Each multiplier's signed rate difference on the same counts, the
    /// value it ascends on.
    pub(super) term_gap: Vec<Option<f64>>,
    /// Rows of the step's gradient batch whose cross-entropy target was
    /// not (only) their label.
    pub(super) relabelled_rows: usize,
    pub(super) constraint_rows: usize,
}

/// The (constraint, column) names, in the order of [`StepRecord::names`].
pub(super) fn gap_names(ctx: &Context) -> Vec<String> {
    ctx.config
        .fairness
        .constraints
        .iter()
        .flat_map(|c| ctx.fair_names.iter().map(move |g| format!("{c} @ {g}")))
        .collect()
}

/// The names of the multipliers, in their order: `demographic_parity <=
/// 0.05 @ gender: P(ŷ=growth | female) − P(ŷ=growth | male)`, with `y=L` or
/// `y≠L` in the condition for true- and false-positive rates.
pub(super) fn multiplier_names(ctx: &Context) -> Vec<String> {
    ctx.constraints
        .slots
        .iter()
        .map(|s| {
            let c = &ctx.config.fairness.constraints[s.constraint];
            let column = &ctx.fair_names[s.column];
            let groups = &ctx.group_columns[ctx.fair_index[s.column]].1;
            let class = &ctx.labels[s.term.class];
            let rows = match s.term.rows {
                RowSet::All => String::new(),
                RowSet::Label(l) => format!("y={}, ", ctx.labels[l]),
                RowSet::NotLabel(l) => format!("y≠{}, ", ctx.labels[l]),
            };
            format!(
                "{c} @ {column}: P(ŷ={class} | {rows}{}) − P(ŷ={class} | {rows}{})",
                groups[s.term.high], groups[s.term.low]
            )
        })
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

/// Every multiplier's difference on the decayed counts of `state`, and
/// the training bound it ascends against (`ratio · bound`).
fn terms_and_bounds(ctx: &Context, state: &TrainState) -> (Gaps, Vec<f64>) {
    let k = ctx.labels.len();
    let ratio = ctx.config.fairness.constrained.train_bound_ratio;
    ctx.constraints
        .slots
        .iter()
        .map(|slot| {
            let c = &ctx.config.fairness.constraints[slot.constraint];
            (
                term_gap(&slot.term, &state.constraint_counts[slot.column], k),
                c.bound * ratio,
            )
        })
        .unzip()
}

/// The multipliers the next step's loss uses ([`applied_multipliers`]:
/// the integral plus the proportional answer to the differences measured
/// so far).
pub(super) fn applied(ctx: &Context, state: &TrainState) -> Vec<f64> {
    let (gaps, bounds) = terms_and_bounds(ctx, state);
    applied_multipliers(
        &state.multipliers,
        &gaps,
        &bounds,
        ctx.config.fairness.constrained.multiplier_gain,
    )
}

/// Adds the constraint batch `rows` (predicted by the model as it is
/// after the step) to the decayed counts, measures every (constraint,
/// column) gap and every multiplier's term on them, and moves the
/// multipliers. Returns the gaps and the terms.
pub(super) fn ascend(
    ctx: &Context,
    model: &BertForSequenceClassification,
    rows: &[usize],
    state: &mut TrainState,
) -> Result<(Gaps, Gaps)> {
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
    let (term_gaps, bounds) = terms_and_bounds(ctx, state);
    dual_update(
        &mut state.multipliers,
        &term_gaps,
        &bounds,
        settings.multiplier_lr,
    );
    let gaps =
        ctx.config
            .fairness
            .constraints
            .iter()
            .flat_map(|c| {
                state.constraint_counts.iter().map(move |cells| {
                    gap_of_cells(c.kind, cells, k, ctx.positive.map(|p| p as usize))
                })
            })
            .collect();
    Ok((gaps, term_gaps))
}

/// Every (constraint, column) on an evaluated split. `one_sided`: the
/// validation margin (`upper` is [`bootstrap_margin`] at the
/// `selection_confidence` level, the largest of the signed terms'
/// bootstrap quantiles, and a constraint holds when it is at or under the
/// bound; `lower` is the gap's `1 − confidence` quantile); otherwise the
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
            let upper = if one_sided {
                interval.and_then(|_| {
                    let m = counts.column_matrices(name)?;
                    bootstrap_margin(
                        c.kind,
                        &m,
                        ctx.positive.map(|p| p as usize),
                        settings.resamples,
                        mix(seed, (ci * 1000 + gi) as u64 + 1),
                        level,
                    )
                })
            } else {
                interval.map(|i| i.upper)
            };
            let holds = match (interval, upper) {
                (Some(_), Some(u)) if one_sided => u <= c.bound,
                (Some(i), Some(_)) => i.gap <= c.bound,
                _ => false,
            };
            out.push(ConstraintCheck {
                constraint: c.to_string(),
                bound: c.bound,
                group: name.clone(),
                gap: interval.map(|i| i.gap),
                lower: interval.map(|i| i.lower),
                upper,
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
