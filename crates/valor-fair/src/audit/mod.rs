//! `audit`: the whole fairness audit of one predictions table, in steps:
//! the group specs resolved into per-spec confusion matrices (`specs`),
//! score-based metrics (`scored`), bootstrap intervals (`intervals`), one
//! `SpecReport` per spec (`spec_report`), then warnings and threshold
//! breaches (`checks`).

mod checks;
mod intervals;
mod scored;
mod spec_report;
mod specs;

use crate::config::{AuditConfig, GroupSpec};
use crate::confusion::ConfusionMatrix;
use crate::core::{Core, CoreCtx};
use crate::counts::AuditCounts;
use crate::error::{Error, Result};
use crate::headline::theil_and_ge2;
use crate::ids::LabelSet;
use crate::input::AuditInput;
use crate::partition::{Partition, SpecGroups};
use crate::report::{
    AuditReport, DatasetMetrics, Interval, OrderedMap, Provenance, SCHEMA, Task, Warning,
    WarningKind,
};
use checks::{bootstrap_warnings, check_thresholds, spec_warnings};
use intervals::{Intervals, bootstrap_intervals};
use scored::{binned_slots, scored_slots};
use specs::{check_known_groups, resolve_specs, spec_states};

pub use spec_report::FOUR_FIFTHS;
pub(crate) use spec_report::spec_report;

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

/// The audit's counts once the specs are resolved, as the score and
/// bootstrap steps read them.
pub(super) struct Counted<'a> {
    config: &'a AuditConfig,
    part: &'a Partition,
    states: &'a [SpecState],
    spec_groups: &'a [SpecGroups],
    overall: &'a ConfusionMatrix,
    positive: Option<usize>,
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

/// The group columns an audit sees: names and sorted levels.
pub(crate) struct Columns<'a> {
    pub names: Vec<&'a str>,
    pub levels: Vec<&'a [String]>,
}

impl Columns<'_> {
    pub(crate) fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| *n == name)
    }
}

/// What an audit reads: rows in memory, or their counts.
#[derive(Clone, Copy)]
enum Source<'a> {
    Rows(&'a AuditInput),
    Counts(&'a AuditCounts),
}

/// Audits `input` as `config` says: disaggregated metrics for every group
/// spec, headline disparities in fairlearn's and AIF360's conventions,
/// multiclass and ordinal views, score-based metrics, bootstrap intervals,
/// warnings, and the thresholds that were breached.
pub fn audit(input: &AuditInput, config: &AuditConfig) -> Result<AuditReport> {
    audit_source(Source::Rows(input), config)
}

/// Audits counted rows ([`AuditCounts`]) as `config` says: the report
/// [`audit`] gives for the same rows (see the module docs of the counts for
/// what is exact: every count-based number and the bootstrap are identical;
/// ROC AUC is within the bound stated in a `scores_binned` warning).
/// Counts with scores need `config.ece_bins` equal to their calibration bins.
pub fn audit_counts(counts: &AuditCounts, config: &AuditConfig) -> Result<AuditReport> {
    audit_source(Source::Counts(counts), config)
}

fn audit_source(src: Source<'_>, config: &AuditConfig) -> Result<AuditReport> {
    config.validate()?;
    let counted_levels;
    let (label_set, cols, rows) = match src {
        Source::Rows(input) => (
            input.labels().clone(),
            Columns {
                names: input.groups().iter().map(|g| g.name()).collect(),
                levels: input.groups().iter().map(|g| g.levels()).collect(),
            },
            input.len() as u64,
        ),
        Source::Counts(c) => {
            if c.rows() == 0 {
                return Err(Error::Empty {
                    what: "audit".into(),
                });
            }
            counted_levels = c.levels();
            (
                c.label_set()?,
                Columns {
                    names: c.columns().iter().map(String::as_str).collect(),
                    levels: counted_levels.iter().map(Vec::as_slice).collect(),
                },
                c.rows(),
            )
        }
    };
    if cols.names.is_empty() {
        return Err(Error::NoGroups);
    }
    let labels: Vec<String> = label_set.names().to_vec();
    let positive = resolve_positive(&label_set, config.positive_label.as_deref())?;
    let task = if positive.is_some() {
        Task::Binary
    } else {
        Task::Multiclass
    };
    let resolved = resolve_specs(&cols, config)?;
    let mut warnings = Vec::new();
    let first_row = |c: usize, code: usize| match src {
        Source::Rows(input) => Some(
            input.groups()[c]
                .codes()
                .iter()
                .position(|&x| x as usize == code)
                .unwrap_or_default(),
        ),
        Source::Counts(_) => None,
    };
    check_known_groups(&cols, config, &first_row, &mut warnings)?;

    let (part, binned) = match src {
        Source::Rows(input) => (Partition::build(input, resolved.used.clone()), None),
        Source::Counts(c) => c.partition(&cols, &label_set, &resolved.used, positive, config)?,
    };
    let (states, spec_groups) = spec_states(&cols, config, &part, resolved, &labels, positive)?;
    let mut overall = ConfusionMatrix::new(labels.len());
    for m in &states[0].matrices {
        overall.merge(m);
    }
    let counted = Counted {
        config,
        part: &part,
        states: &states,
        spec_groups: &spec_groups,
        overall: &overall,
        positive,
    };
    let scored = match (src, &binned) {
        (Source::Rows(input), _) => scored_slots(input, &counted, &mut warnings),
        (Source::Counts(_), Some(b)) => Some(binned_slots(b, &counted, &mut warnings)),
        (Source::Counts(_), None) => None,
    };
    let Intervals {
        specs: spec_intervals,
        dataset: dataset_intervals,
        info: bootstrap_info,
    } = bootstrap_intervals(&counted);
    let constant = constant_classifier(&overall, &labels, &mut warnings);

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
    let dataset = dataset_metrics(&overall, &labels, positive, dataset_intervals);

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
        rows,
        config: config.clone(),
        bootstrap: bootstrap_info,
        dataset,
        specs: spec_reports,
        warnings,
        breaches,
    })
}

/// The dataset-level indices of a confusion matrix (binary tasks only).
fn dataset_values(
    m: &ConfusionMatrix,
    positive: Option<usize>,
) -> [(&'static str, Option<f64>); 2] {
    let (t, g) = match positive {
        Some(pos) => theil_and_ge2(&m.one_vs_rest(pos)),
        None => (None, None),
    };
    [("theil_index", t), ("generalized_entropy_index_alpha2", g)]
}

/// Whether the classifier predicts one label for every row (then a warning
/// says parity metrics are trivially perfect).
fn constant_classifier(
    overall: &ConfusionMatrix,
    labels: &[String],
    warnings: &mut Vec<Warning>,
) -> bool {
    let k = labels.len();
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
    constant
}

/// The dataset section of the report: its indices, their intervals, and
/// the true and predicted label counts.
fn dataset_metrics(
    overall: &ConfusionMatrix,
    labels: &[String],
    positive: Option<usize>,
    intervals: Option<OrderedMap<Option<Interval>>>,
) -> DatasetMetrics {
    let vals = dataset_values(overall, positive);
    DatasetMetrics {
        theil_index: vals[0].1,
        generalized_entropy_index_alpha2: vals[1].1,
        intervals,
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
}
