//! What an audit warns about after the numbers are made (small groups,
//! undefined metrics, thin bootstrap intervals) and which configured
//! thresholds the report breaches.

use crate::config::{AuditConfig, Threshold};
use crate::error::{Error, Result};
use crate::report::{Breach, DatasetMetrics, Lookup, SpecReport, Warning, WarningKind};

use super::SpecState;

/// Small groups and metrics undefined for a group.
pub(super) fn spec_warnings(
    report: &SpecReport,
    st: &SpecState,
    config: &AuditConfig,
    warnings: &mut Vec<Warning>,
) {
    for (g, info) in report.groups.iter().enumerate() {
        if info.count < config.min_group_size {
            warnings.push(Warning {
                kind: WarningKind::SmallGroup,
                spec: Some(report.name.clone()),
                group: Some(info.key.clone()),
                message: format!(
                    "group `{}` of `{}` has {} rows (< {}): its rates are noisy; read them with \
                     their intervals",
                    info.key, report.name, info.count, config.min_group_size
                ),
            });
        }
        let undefined: Vec<&str> = report
            .metrics
            .iter()
            .filter(|(_, m)| m.by_group.values().nth(g).is_some_and(Option::is_none))
            .map(|(name, _)| name)
            .collect();
        if !undefined.is_empty() {
            let m = &st.matrices[g];
            let supports: Vec<String> = st
                .ctx
                .labels
                .iter()
                .enumerate()
                .map(|(y, l)| format!("{l}: {}", m.true_total(y)))
                .collect();
            warnings.push(Warning {
                kind: WarningKind::UndefinedMetric,
                spec: Some(report.name.clone()),
                group: Some(info.key.clone()),
                message: format!(
                    "undefined for group `{}` (zero denominator; true labels {}): {}; reported as \
                     null and left out of differences and ratios (fairlearn would report 0)",
                    info.key,
                    supports.join(", "),
                    undefined.join(", ")
                ),
            });
        }
    }
}

/// Specs whose headline intervals rest on fewer than 90% of the resamples.
pub(super) fn bootstrap_warnings(
    specs: &[SpecReport],
    resamples: usize,
    warnings: &mut Vec<Warning>,
) {
    for s in specs {
        let mut thin = Vec::new();
        let sections = [
            s.fairlearn.as_ref().and_then(|f| f.intervals.as_ref()),
            s.aif360.as_ref().and_then(|a| a.intervals.as_ref()),
            s.multiclass.as_ref().and_then(|m| m.intervals.as_ref()),
        ];
        for iv in sections.into_iter().flatten() {
            for (name, i) in iv.iter() {
                match i {
                    Some(i) if (i.resamples_used as f64) >= 0.9 * resamples as f64 => {}
                    _ => thin.push(name.to_owned()),
                }
            }
        }
        if !thin.is_empty() {
            warnings.push(Warning {
                kind: WarningKind::BootstrapDegenerate,
                spec: Some(s.name.clone()),
                group: None,
                message: format!(
                    "fewer than 90% of resamples defined: {} (small groups vanish from resamples); \
                     the intervals are unreliable",
                    thin.join(", ")
                ),
            });
        }
    }
}

/// The breaches of `thresholds`; an unknown metric path, or one that
/// applies to no spec, is an error; an undefined value is a warning.
pub(super) fn check_thresholds(
    thresholds: &[Threshold],
    specs: &[SpecReport],
    dataset: &DatasetMetrics,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<Breach>> {
    let mut breaches = Vec::new();
    for t in thresholds {
        let mut results: Vec<(Option<String>, Lookup)> = Vec::new();
        if t.metric.starts_with("dataset.") {
            results.push((None, dataset.lookup(&t.metric)));
        } else {
            for s in specs {
                results.push((Some(s.name.clone()), s.lookup(&t.metric)));
            }
        }
        if results.iter().any(|(_, l)| matches!(l, Lookup::Unknown)) {
            return Err(Error::ThresholdNotApplicable {
                metric: t.metric.clone(),
                why:
                    "unknown metric path; paths look like fairlearn.demographic_parity_difference, \
                      aif360.disparate_impact, multiclass.recall_gap, \
                      metrics.accuracy.difference_between_groups, four_fifths.ratio, \
                      dataset.theil_index (see SCHEMA.md)"
                        .into(),
            });
        }
        if let Some((_, Lookup::NotApplicable(why))) = results
            .iter()
            .find(|(_, l)| matches!(l, Lookup::NotApplicable(_)))
            .filter(|_| {
                results
                    .iter()
                    .all(|(_, l)| matches!(l, Lookup::NotApplicable(_)))
            })
        {
            return Err(Error::ThresholdNotApplicable {
                metric: t.metric.clone(),
                why: why.clone(),
            });
        }
        for (spec, l) in results {
            if let Lookup::Value { value, interval } = l {
                match value {
                    Some(v) if t.limit.breached_by(v) => breaches.push(Breach {
                        spec,
                        metric: t.metric.clone(),
                        value: v,
                        limit: t.limit,
                        interval,
                    }),
                    Some(_) => {}
                    None => warnings.push(Warning {
                        kind: WarningKind::ThresholdNotEvaluated,
                        spec,
                        group: None,
                        message: format!(
                            "threshold `{}` {} not evaluated: the metric is undefined",
                            t.metric, t.limit
                        ),
                    }),
                }
            }
        }
    }
    Ok(breaches)
}
