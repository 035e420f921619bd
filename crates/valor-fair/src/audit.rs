//! `audit`: the whole fairness audit of one predictions table.

use std::collections::HashMap;

use crate::bootstrap;
use crate::config::{AuditConfig, GroupSpec, Threshold};
use crate::confusion::ConfusionMatrix;
use crate::core::{Core, CoreCtx, Section, StatKey};
use crate::error::{Error, Result};
use crate::headline::{reweighing_weight, theil_and_ge2};
use crate::ids::LabelSet;
use crate::input::AuditInput;
use crate::metrics::{Agg, MetricKind, Table};
use crate::partition::{Partition, SpecGroups};
use crate::report::{
    AuditReport, BootstrapInfo, Breach, CalibrationSummary, ConfusionSummary, DatasetMetrics,
    FourFifths, GroupInfo, Interval, Lookup, MetricIntervals, MetricSummary, OrderedMap,
    OrdinalCut, Provenance, RocSummary, SCHEMA, SpecReport, Task, Warning, WarningKind,
};
use crate::scores::{ScoreInput, SlotScores, score_metrics};

/// The four-fifths rule's bound.
pub const FOUR_FIFTHS: f64 = 0.8;

/// One audited spec: its groups, counts and results.
pub(crate) struct SpecState {
    pub spec: GroupSpec,
    pub name: String,
    pub keys: Vec<String>,
    pub values: Vec<Vec<String>>,
    pub privileged: Option<Vec<bool>>,
    pub ctx: CoreCtx,
    pub matrices: Vec<ConfusionMatrix>,
    pub core: Core,
}

/// Resolves the positive label: required for two labels, refused for more.
pub(crate) fn resolve_positive(labels: &LabelSet, wanted: Option<&str>) -> Result<Option<usize>> {
    if labels.len() == 2 {
        match wanted {
            Some(l) => {
                labels
                    .id(l)
                    .map(|id| Some(id.index()))
                    .ok_or_else(|| Error::UnknownPositiveLabel {
                        label: l.to_owned(),
                        labels: labels.names().to_vec(),
                    })
            }
            None => labels
                .default_positive()
                .map(|id| Some(id.index()))
                .ok_or_else(|| Error::PositiveLabelRequired {
                    labels: labels.names().to_vec(),
                }),
        }
    } else if let Some(l) = wanted {
        Err(Error::InvalidConfig {
            setting: "positive_label".into(),
            why: format!(
                "`{l}` given but there are {} labels; a positive label needs a binary task \
                 (use ordinal cuts for ordered labels)",
                labels.len()
            ),
        })
    } else {
        Ok(None)
    }
}

fn list(names: impl Iterator<Item = String>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

/// Audits `input` as `config` says: disaggregated metrics for every group
/// spec, headline disparities in fairlearn's and AIF360's conventions,
/// multiclass and ordinal views, score-based metrics, bootstrap intervals,
/// warnings, and the thresholds that were breached.
pub fn audit(input: &AuditInput, config: &AuditConfig) -> Result<AuditReport> {
    config.validate()?;
    if input.groups().is_empty() {
        return Err(Error::NoGroups);
    }
    let labels: Vec<String> = input.labels().names().to_vec();
    let k = labels.len();
    let positive = resolve_positive(input.labels(), config.positive_label.as_deref())?;
    let task = if positive.is_some() {
        Task::Binary
    } else {
        Task::Multiclass
    };
    let available = || list(input.groups().iter().map(|g| format!("`{}`", g.name())));
    let specs: Vec<GroupSpec> = if config.specs.is_empty() {
        input
            .groups()
            .iter()
            .map(|g| GroupSpec::single(g.name()))
            .collect()
    } else {
        config.specs.clone()
    };
    let mut used: Vec<usize> = Vec::new();
    for spec in &specs {
        if spec.columns.is_empty() {
            return Err(Error::InvalidConfig {
                setting: "specs".into(),
                why: "a group spec has no columns".into(),
            });
        }
        for c in &spec.columns {
            let idx = input
                .groups()
                .iter()
                .position(|g| g.name() == c)
                .ok_or_else(|| Error::UnknownGroupColumn {
                    column: c.clone(),
                    available: available(),
                })?;
            if !used.contains(&idx) {
                used.push(idx);
            }
        }
    }
    used.sort_unstable();
    let spec_names: Vec<String> = specs.iter().map(GroupSpec::name).collect();
    for (i, n) in spec_names.iter().enumerate() {
        if spec_names[..i].contains(n) {
            return Err(Error::InvalidConfig {
                setting: "specs".into(),
                why: format!("`{n}` is listed twice"),
            });
        }
    }
    for s in config.privileged.keys() {
        if !spec_names.contains(s) {
            return Err(Error::PrivilegedSpecNotAudited {
                spec: s.clone(),
                available: list(spec_names.iter().map(|n| format!("`{n}`"))),
            });
        }
    }
    let mut warnings = Vec::new();
    check_known_groups(input, config, &mut warnings)?;

    let part = Partition::build(input, used.clone());
    let mut states = Vec::with_capacity(specs.len());
    let mut spec_groups: Vec<SpecGroups> = Vec::with_capacity(specs.len());
    for (spec, name) in specs.into_iter().zip(spec_names) {
        let cols: Vec<usize> = spec
            .columns
            .iter()
            .map(|c| {
                input
                    .groups()
                    .iter()
                    .position(|g| g.name() == c)
                    .unwrap_or_default()
            })
            .collect();
        let positions: Vec<usize> = cols
            .iter()
            .map(|c| used.iter().position(|u| u == c).unwrap_or_default())
            .collect();
        let groups = part.spec_groups(&positions);
        let values: Vec<Vec<String>> = groups
            .codes
            .iter()
            .map(|codes| {
                codes
                    .iter()
                    .zip(&cols)
                    .map(|(&code, &c)| input.groups()[c].levels()[code as usize].clone())
                    .collect()
            })
            .collect();
        let keys: Vec<String> = values.iter().map(|v| v.join("|")).collect();
        let privileged = match config.privileged.get(&name) {
            Some(wanted) => {
                let mut flags = vec![false; keys.len()];
                for w in wanted {
                    let g = keys.iter().position(|k| k == w).ok_or_else(|| {
                        Error::UnknownPrivilegedGroup {
                            spec: name.clone(),
                            group: w.clone(),
                            available: list(keys.iter().map(|k| format!("`{k}`"))),
                        }
                    })?;
                    flags[g] = true;
                }
                if flags.iter().all(|f| *f) {
                    return Err(Error::NoUnprivilegedGroup { spec: name });
                }
                Some(flags)
            }
            None => None,
        };
        let ctx = CoreCtx::new(&labels, positive, privileged.clone(), config.ordinal);
        let matrices = part.spec_matrices(&part.counts, &groups);
        let core = Core::compute(&ctx, &matrices);
        spec_groups.push(groups);
        states.push(SpecState {
            spec,
            name,
            keys,
            values,
            privileged,
            ctx,
            matrices,
            core,
        });
    }

    let mut overall = ConfusionMatrix::new(k);
    for m in &states[0].matrices {
        overall.merge(m);
    }

    // Score-based metrics: one slot per (spec, group), then the overall slot.
    let scored = match (input.scores(), positive) {
        (Some(scores), Some(pos)) => {
            let in_unit = scores.iter().all(|s| (0.0..=1.0).contains(s));
            if !in_unit {
                warnings.push(Warning {
                    kind: WarningKind::ScoresOutOfRange,
                    spec: None,
                    group: None,
                    message: "scores fall outside [0, 1]: calibration is skipped (ROC AUC only \
                              needs an ordering and is still reported)"
                        .into(),
                });
            }
            Some(score_slots(
                input,
                &part,
                &states,
                &spec_groups,
                &overall,
                pos,
                in_unit.then_some(config.ece_bins),
                scores,
            ))
        }
        _ => None,
    };

    let dataset_values = |m: &ConfusionMatrix| -> [(&'static str, Option<f64>); 2] {
        let (t, g) = match positive {
            Some(pos) => theil_and_ge2(&m.one_vs_rest(pos)),
            None => (None, None),
        };
        [("theil_index", t), ("generalized_entropy_index_alpha2", g)]
    };

    // Bootstrap: every scalar of every spec plus the dataset indices.
    let mut spec_intervals: Vec<Option<HashMap<StatKey, Interval>>> =
        states.iter().map(|_| None).collect();
    let mut dataset_intervals = None;
    let bootstrap_info = if let Some(b) = &config.bootstrap {
        let mut layout: Vec<Vec<StatKey>> = Vec::with_capacity(states.len());
        for st in &states {
            let mut kv = Vec::new();
            st.core.collect(&st.ctx, 0, &mut kv);
            layout.push(kv.into_iter().map(|(key, _)| key).collect());
        }
        let n_spec_stats: usize = layout.iter().map(Vec::len).sum();
        let n_stats = n_spec_stats + 2;
        let kk = k * k;
        let stat = |counts: &[u64]| -> Vec<f64> {
            let mut out = Vec::with_capacity(n_stats);
            let mut kv = Vec::new();
            for (st, groups) in states.iter().zip(&spec_groups) {
                let mats = part.spec_matrices(counts, groups);
                let core = Core::compute(&st.ctx, &mats);
                kv.clear();
                core.collect(&st.ctx, 0, &mut kv);
                out.extend(kv.iter().map(|(_, v)| *v));
            }
            let mut all = vec![0u64; kk];
            for chunk in counts.chunks(kk) {
                for (a, c) in all.iter_mut().zip(chunk) {
                    *a += c;
                }
            }
            let m = ConfusionMatrix::from_cells(k, all);
            out.extend(
                dataset_values(&m)
                    .iter()
                    .map(|(_, v)| v.unwrap_or(f64::NAN)),
            );
            out
        };
        let samples = bootstrap::resample(&part.counts, b, stat);
        let ivs = bootstrap::intervals(&samples, n_stats, b.level);
        let mut at = 0;
        for (si, keys) in layout.iter().enumerate() {
            let mut map = HashMap::with_capacity(keys.len());
            for key in keys {
                if let Some(iv) = ivs[at] {
                    map.insert(*key, iv);
                }
                at += 1;
            }
            spec_intervals[si] = Some(map);
        }
        let mut d = OrderedMap::new();
        for (i, (name, _)) in dataset_values(&overall).iter().enumerate() {
            d.push(*name, ivs[at + i]);
        }
        dataset_intervals = Some(d);
        Some(BootstrapInfo {
            resamples: b.resamples,
            seed: b.seed,
            level: b.level,
            method: "multinomial_cells".into(),
        })
    } else {
        None
    };

    let constant = (0..k).filter(|&p| overall.pred_total(p) > 0).count() == 1;
    if constant {
        let only = (0..k)
            .find(|&p| overall.pred_total(p) > 0)
            .map(|p| labels[p].clone())
            .unwrap_or_default();
        warnings.push(Warning {
            kind: WarningKind::ConstantClassifier,
            spec: None,
            group: None,
            message: format!(
                "the classifier predicts `{only}` for every row: parity metrics (disparate \
                 impact 1.0, demographic parity difference 0) are then trivially perfect and \
                 say nothing about fairness"
            ),
        });
    }

    let mut slot_offset = 0;
    let mut spec_reports = Vec::with_capacity(states.len());
    for (si, st) in states.iter().enumerate() {
        let n_groups = st.keys.len();
        let slots = scored.as_ref().map(|s| {
            let by_group = &s[slot_offset..slot_offset + n_groups];
            (by_group, s.last())
        });
        slot_offset += n_groups;
        let report = spec_report(
            st,
            &labels,
            &overall,
            constant,
            spec_intervals[si].as_ref(),
            slots,
            config.ece_bins,
        );
        spec_warnings(&report, st, config, &mut warnings);
        spec_reports.push(report);
    }

    let dataset = {
        let vals = dataset_values(&overall);
        DatasetMetrics {
            theil_index: vals[0].1,
            generalized_entropy_index_alpha2: vals[1].1,
            intervals: dataset_intervals,
            true_label_counts: labels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.clone(), overall.true_total(i)))
                .collect(),
            predicted_label_counts: labels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.clone(), overall.pred_total(i)))
                .collect(),
        }
    };

    if let Some(b) = &bootstrap_info {
        bootstrap_warnings(&spec_reports, b.resamples, &mut warnings);
    }
    let breaches = check_thresholds(&config.thresholds, &spec_reports, &dataset, &mut warnings)?;

    Ok(AuditReport {
        schema: SCHEMA.to_owned(),
        provenance: Provenance {
            crate_version: env!("CARGO_PKG_VERSION").to_owned(),
            ..Provenance::default()
        },
        task,
        labels: labels.clone(),
        positive_label: positive.map(|p| labels[p].clone()),
        ordinal: config.ordinal,
        rows: input.len() as u64,
        config: config.clone(),
        bootstrap: bootstrap_info,
        dataset,
        specs: spec_reports,
        warnings,
        breaches,
    })
}

fn check_known_groups(
    input: &AuditInput,
    config: &AuditConfig,
    warnings: &mut Vec<Warning>,
) -> Result<()> {
    for (col, known) in &config.known_groups {
        let column = input.group(col).ok_or_else(|| Error::UnknownGroupColumn {
            column: col.clone(),
            available: list(input.groups().iter().map(|g| format!("`{}`", g.name()))),
        })?;
        for (code, level) in column.levels().iter().enumerate() {
            if !known.contains(level) {
                let row = column
                    .codes()
                    .iter()
                    .position(|&c| c as usize == code)
                    .unwrap_or_default();
                return Err(Error::UnseenGroup {
                    column: col.clone(),
                    row,
                    value: level.clone(),
                    known: known.clone(),
                });
            }
        }
        for k in known {
            if !column.levels().contains(k) {
                warnings.push(Warning {
                    kind: WarningKind::DeclaredGroupAbsent,
                    spec: Some(col.clone()),
                    group: Some(k.clone()),
                    message: format!(
                        "declared group `{k}` of `{col}` has no rows: no metric can be computed for it"
                    ),
                });
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn score_slots(
    input: &AuditInput,
    part: &Partition,
    states: &[SpecState],
    spec_groups: &[SpecGroups],
    overall: &ConfusionMatrix,
    pos: usize,
    bins: Option<usize>,
    scores: &[f64],
) -> Vec<SlotScores> {
    let mut offsets = Vec::with_capacity(states.len());
    let mut n_slots = 0u32;
    for st in states {
        offsets.push(n_slots);
        n_slots += st.keys.len() as u32;
    }
    let overall_slot = n_slots;
    let n_slots = n_slots as usize + 1;
    let combo_slots: Vec<Vec<u32>> = (0..part.combos.len())
        .map(|c| {
            let mut v: Vec<u32> = spec_groups
                .iter()
                .zip(&offsets)
                .map(|(g, off)| off + g.combo_group[c])
                .collect();
            v.push(overall_slot);
            v
        })
        .collect();
    let mut slot_pos = Vec::with_capacity(n_slots);
    let mut slot_neg = Vec::with_capacity(n_slots);
    for st in states {
        for m in &st.matrices {
            let b = m.one_vs_rest(pos);
            slot_pos.push(b.positives());
            slot_neg.push(b.negatives());
        }
    }
    let b = overall.one_vs_rest(pos);
    slot_pos.push(b.positives());
    slot_neg.push(b.negatives());
    let positive: Vec<bool> = input.y_true().iter().map(|t| t.index() == pos).collect();
    score_metrics(&ScoreInput {
        scores,
        positive: &positive,
        row_combo: &part.row_combo,
        combo_slots: &combo_slots,
        n_slots,
        slot_pos: &slot_pos,
        slot_neg: &slot_neg,
        bins,
    })
}

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
    let ctx = &st.ctx;
    let keys = &st.keys;
    let mut metrics = summaries(ctx, core, keys, ivs, 0);
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
    let fairlearn = core.fairlearn.clone().map(|mut f| {
        f.intervals = named_intervals(ivs, 0, Section::Fairlearn, &f.entries());
        f
    });
    let privileged_names = |flags: &Option<Vec<bool>>| -> Vec<String> {
        flags
            .iter()
            .flat_map(|f| {
                f.iter()
                    .zip(keys)
                    .filter(|(p, _)| **p)
                    .map(|(_, k)| k.clone())
            })
            .collect()
    };
    let aif360 = core.aif360.clone().map(|mut a| {
        a.privileged = privileged_names(&st.privileged);
        a.intervals = named_intervals(ivs, 0, Section::Aif360, &a.entries());
        a
    });
    let multiclass = core.multiclass.clone().map(|mut m| {
        m.intervals = named_intervals(ivs, 0, Section::Multiclass, &m.entries());
        m
    });
    let four_fifths = ctx
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
    let n = overall.total();
    let reweighing = keyed(
        keys,
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
    );
    let ordinal = match &ctx.cut {
        Some(cut_ctx) => core
            .cuts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let cut = i as u16 + 1;
                let label = labels[i + 1].clone();
                OrdinalCut {
                    name: format!("at_least_{label}"),
                    label,
                    metrics: summaries(cut_ctx, c, keys, ivs, cut),
                    fairlearn: c.fairlearn.clone().map(|mut f| {
                        f.intervals = named_intervals(ivs, cut, Section::Fairlearn, &f.entries());
                        f
                    }),
                    aif360: c.aif360.clone().map(|mut a| {
                        a.privileged = privileged_names(&st.privileged);
                        a.intervals = named_intervals(ivs, cut, Section::Aif360, &a.entries());
                        a
                    }),
                }
            })
            .collect(),
        None => Vec::new(),
    };
    let roc = slots.map(|(groups, all)| RocSummary {
        overall: all.and_then(|s| s.roc.clone()),
        by_group: keyed(keys, groups.iter().map(|s| s.roc.clone())),
    });
    let calibration = slots
        .filter(|(_, all)| all.is_some_and(|s| s.ece.is_some()))
        .map(|(groups, all)| CalibrationSummary {
            bins: ece_bins,
            overall: all.map(|s| s.calibration.clone()).unwrap_or_default(),
            by_group: keyed(keys, groups.iter().map(|s| s.calibration.clone())),
        });
    SpecReport {
        name: st.name.clone(),
        columns: st.spec.columns.clone(),
        groups: st
            .keys
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
            .collect(),
        metrics,
        confusion_matrix: ConfusionSummary {
            labels: labels.to_vec(),
            overall: overall.rows(),
            by_group: keyed(keys, st.matrices.iter().map(ConfusionMatrix::rows)),
        },
        fairlearn,
        aif360,
        four_fifths,
        multiclass,
        between_group_theil_index: core.between_group_theil_index,
        between_group_theil_index_interval,
        reweighing,
        ordinal,
        roc,
        calibration,
    }
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

pub(crate) fn spec_warnings(
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

fn bootstrap_warnings(specs: &[SpecReport], resamples: usize, warnings: &mut Vec<Warning>) {
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

pub(crate) fn check_thresholds(
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
