//! One spec's section of the report: metric summaries with their
//! intervals, the fairlearn, AIF360 and multiclass views, the four-fifths
//! verdict, reweighing weights, ordinal cuts, ROC and calibration.

use std::collections::HashMap;

use crate::confusion::ConfusionMatrix;
use crate::core::{Core, CoreCtx, Section, StatKey};
use crate::headline::{Aif360Metrics, FairlearnMetrics, reweighing_weight};
use crate::metrics::{Agg, MetricKind, Table};
use crate::report::{
    CalibrationSummary, ConfusionSummary, FourFifths, GroupInfo, Interval, MetricIntervals,
    MetricSummary, OrderedMap, OrdinalCut, RocSummary, SpecReport,
};
use crate::scores::SlotScores;

use super::SpecState;

/// The four-fifths rule's bound.
pub const FOUR_FIFTHS: f64 = 0.8;

fn keyed<T: Clone>(keys: &[String], values: impl IntoIterator<Item = T>) -> OrderedMap<T> {
    keys.iter().cloned().zip(values).collect()
}

/// Builds the summaries of a core's tables (intervals from `ivs` at `cut`).
fn summaries(
    ctx: &CoreCtx,
    core: &Core,
    keys: &[String],
    ivs: Option<&HashMap<StatKey, Interval>>,
    cut: u16,
) -> OrderedMap<MetricSummary> {
    let mut out = OrderedMap::new();
    for (m, (def, t)) in ctx.defs.iter().zip(&core.tables).enumerate() {
        let metric = m as u16;
        let intervals = ivs.filter(|_| def.kind != MetricKind::Count).map(|iv| {
            let agg = |a| {
                iv.get(&StatKey::Agg {
                    cut,
                    metric,
                    agg: a,
                })
                .copied()
            };
            MetricIntervals {
                overall: iv.get(&StatKey::Overall { cut, metric }).copied(),
                by_group: keyed(
                    keys,
                    (0..keys.len()).map(|g| {
                        iv.get(&StatKey::Group {
                            cut,
                            metric,
                            group: g as u32,
                        })
                        .copied()
                    }),
                ),
                difference_between_groups: agg(Agg::DifferenceBetweenGroups),
                difference_to_overall: agg(Agg::DifferenceToOverall),
                ratio_between_groups: agg(Agg::RatioBetweenGroups),
                ratio_to_overall: agg(Agg::RatioToOverall),
                group_min: agg(Agg::GroupMin),
                group_max: agg(Agg::GroupMax),
            }
        });
        out.push(def.name.clone(), summary_of(t, keys, intervals));
    }
    out
}

fn summary_of(t: &Table, keys: &[String], intervals: Option<MetricIntervals>) -> MetricSummary {
    MetricSummary {
        overall: t.overall,
        by_group: keyed(keys, t.by_group.iter().copied()),
        difference_between_groups: t.agg.difference_between_groups,
        difference_to_overall: t.agg.difference_to_overall,
        ratio_between_groups: t.agg.ratio_between_groups,
        ratio_to_overall: t.agg.ratio_to_overall,
        group_min: t.agg.group_min,
        group_max: t.agg.group_max,
        intervals,
    }
}

fn named_intervals(
    ivs: Option<&HashMap<StatKey, Interval>>,
    cut: u16,
    section: Section,
    entries: &[(&'static str, Option<f64>)],
) -> Option<OrderedMap<Option<Interval>>> {
    ivs.map(|iv| {
        entries
            .iter()
            .map(|(name, _)| {
                (
                    (*name).to_owned(),
                    iv.get(&StatKey::Named { cut, section, name }).copied(),
                )
            })
            .collect()
    })
}

/// One spec's section of the report.
pub(crate) fn spec_report(
    st: &SpecState,
    labels: &[String],
    overall: &ConfusionMatrix,
    constant: bool,
    ivs: Option<&HashMap<StatKey, Interval>>,
    slots: Option<(&[SlotScores], Option<&SlotScores>)>,
    ece_bins: usize,
) -> SpecReport {
    let core = &st.core;
    let keys = &st.keys;
    let privileged = privileged_names(st);
    let four_fifths = st
        .ctx
        .metric_index(MetricKind::SelectionRate)
        .map(|i| four_fifths(&core.tables[i], keys, constant));
    let between_group_theil_index_interval = ivs.and_then(|iv| {
        iv.get(&StatKey::Named {
            cut: 0,
            section: Section::Spec,
            name: "between_group_theil_index",
        })
        .copied()
    });
    SpecReport {
        name: st.name.clone(),
        columns: st.spec.columns.clone(),
        groups: group_infos(st),
        metrics: metric_summaries(st, ivs, slots),
        confusion_matrix: ConfusionSummary {
            labels: labels.to_vec(),
            overall: overall.rows(),
            by_group: keyed(keys, st.matrices.iter().map(ConfusionMatrix::rows)),
        },
        fairlearn: fairlearn_section(core.fairlearn.as_ref(), ivs, 0),
        aif360: aif360_section(core.aif360.as_ref(), &privileged, ivs, 0),
        four_fifths,
        multiclass: core.multiclass.clone().map(|mut m| {
            m.intervals = named_intervals(ivs, 0, Section::Multiclass, &m.entries());
            m
        }),
        between_group_theil_index: core.between_group_theil_index,
        between_group_theil_index_interval,
        reweighing: reweighing_table(st, labels, overall),
        ordinal: ordinal_cuts(st, labels, &privileged, ivs),
        roc: slots.map(|(groups, all)| RocSummary {
            overall: all.and_then(|s| s.roc.clone()),
            by_group: keyed(keys, groups.iter().map(|s| s.roc.clone())),
        }),
        calibration: calibration(keys, slots, ece_bins),
    }
}

/// Each group's key, values, row count and privileged flag.
fn group_infos(st: &SpecState) -> Vec<GroupInfo> {
    st.keys
        .iter()
        .zip(&st.values)
        .zip(&st.matrices)
        .enumerate()
        .map(|(g, ((key, values), m))| GroupInfo {
            key: key.clone(),
            values: values.clone(),
            count: m.total(),
            privileged: st.privileged.as_ref().map(|p| p[g]),
        })
        .collect()
}

/// The keys of the spec's privileged groups.
fn privileged_names(st: &SpecState) -> Vec<String> {
    st.privileged
        .iter()
        .flat_map(|f| {
            f.iter()
                .zip(&st.keys)
                .filter(|(p, _)| **p)
                .map(|(_, k)| k.clone())
        })
        .collect()
}

/// The summaries of the spec's metric tables, then ROC AUC and (scores in
/// [0, 1]) the expected calibration error when there are scores.
fn metric_summaries(
    st: &SpecState,
    ivs: Option<&HashMap<StatKey, Interval>>,
    slots: Option<(&[SlotScores], Option<&SlotScores>)>,
) -> OrderedMap<MetricSummary> {
    let keys = &st.keys;
    let mut metrics = summaries(&st.ctx, &st.core, keys, ivs, 0);
    if let Some((groups, all)) = slots {
        let auc = Table::new(
            all.and_then(|s| s.auc),
            groups.iter().map(|s| s.auc).collect(),
        );
        metrics.push("roc_auc", summary_of(&auc, keys, None));
        if all.is_some_and(|s| s.ece.is_some()) {
            let ece = Table::new(
                all.and_then(|s| s.ece),
                groups.iter().map(|s| s.ece).collect(),
            );
            metrics.push("expected_calibration_error", summary_of(&ece, keys, None));
        }
    }
    metrics
}

/// fairlearn's headline numbers with their intervals at `cut`.
fn fairlearn_section(
    f: Option<&FairlearnMetrics>,
    ivs: Option<&HashMap<StatKey, Interval>>,
    cut: u16,
) -> Option<FairlearnMetrics> {
    f.cloned().map(|mut f| {
        f.intervals = named_intervals(ivs, cut, Section::Fairlearn, &f.entries());
        f
    })
}

/// AIF360's headline numbers with the privileged groups and intervals at `cut`.
fn aif360_section(
    a: Option<&Aif360Metrics>,
    privileged: &[String],
    ivs: Option<&HashMap<StatKey, Interval>>,
    cut: u16,
) -> Option<Aif360Metrics> {
    a.cloned().map(|mut a| {
        a.privileged = privileged.to_vec();
        a.intervals = named_intervals(ivs, cut, Section::Aif360, &a.entries());
        a
    })
}

/// Kamiran & Calders' weight of each (group, label) cell.
fn reweighing_table(
    st: &SpecState,
    labels: &[String],
    overall: &ConfusionMatrix,
) -> OrderedMap<OrderedMap<Option<f64>>> {
    let n = overall.total();
    keyed(
        &st.keys,
        st.matrices.iter().map(|m| {
            labels
                .iter()
                .enumerate()
                .map(|(y, l)| {
                    (
                        l.clone(),
                        reweighing_weight(m.true_total(y), m.total(), overall.true_total(y), n),
                    )
                })
                .collect::<OrderedMap<_>>()
        }),
    )
}

/// The ordinal view: one binary audit per cut "at least label k".
fn ordinal_cuts(
    st: &SpecState,
    labels: &[String],
    privileged: &[String],
    ivs: Option<&HashMap<StatKey, Interval>>,
) -> Vec<OrdinalCut> {
    let Some(cut_ctx) = &st.ctx.cut else {
        return Vec::new();
    };
    st.core
        .cuts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let cut = i as u16 + 1;
            let label = labels[i + 1].clone();
            OrdinalCut {
                name: format!("at_least_{label}"),
                label,
                metrics: summaries(cut_ctx, c, &st.keys, ivs, cut),
                fairlearn: fairlearn_section(c.fairlearn.as_ref(), ivs, cut),
                aif360: aif360_section(c.aif360.as_ref(), privileged, ivs, cut),
            }
        })
        .collect()
}

/// Reliability data per group, when calibration was measured.
fn calibration(
    keys: &[String],
    slots: Option<(&[SlotScores], Option<&SlotScores>)>,
    ece_bins: usize,
) -> Option<CalibrationSummary> {
    slots
        .filter(|(_, all)| all.is_some_and(|s| s.ece.is_some()))
        .map(|(groups, all)| CalibrationSummary {
            bins: ece_bins,
            overall: all.map(|s| s.calibration.clone()).unwrap_or_default(),
            by_group: keyed(keys, groups.iter().map(|s| s.calibration.clone())),
        })
}

fn four_fifths(sr: &Table, keys: &[String], constant: bool) -> FourFifths {
    let defined: Vec<(usize, f64)> = sr
        .by_group
        .iter()
        .enumerate()
        .filter_map(|(g, v)| v.map(|v| (g, v)))
        .collect();
    let lowest = defined
        .iter()
        .copied()
        .reduce(|a, b| if b.1 < a.1 { b } else { a });
    let highest = defined
        .iter()
        .copied()
        .reduce(|a, b| if b.1 > a.1 { b } else { a });
    let ratio = sr.agg.ratio_between_groups;
    let groups_below = match highest {
        Some((_, hi)) if hi > 0.0 => defined
            .iter()
            .filter(|(_, v)| v / hi < FOUR_FIFTHS)
            .map(|(g, _)| keys[*g].clone())
            .collect(),
        _ => Vec::new(),
    };
    FourFifths {
        threshold: FOUR_FIFTHS,
        ratio,
        passes: ratio.map(|r| r >= FOUR_FIFTHS),
        lowest_group: lowest.map(|(g, _)| keys[g].clone()),
        highest_group: highest.map(|(g, _)| keys[g].clone()),
        groups_below,
        constant_classifier: constant,
    }
}
