//! Group fairness evaluation of any classifier's predictions: disaggregated
//! metrics, disparities in the conventions of fairlearn and AIF360 (matching
//! their numbers to 1e-9), bootstrap intervals, threshold checks, streaming
//! counters, and mitigations that need no retraining.
//!
//! Does not know about: tensors, models, burn, polars, files of predictions
//! (the CLI reads those through `valor-data`), terminals. It works on label,
//! prediction, score and group arrays, and on confusion counts streamed in
//! batches; it builds in seconds and can be embedded anywhere.
//!
//! # Main types
//!
//! An [`AuditInput`] holds true labels and predictions (as [`LabelId`]s of a
//! [`LabelSet`]), optional scores (P(positive) per row) and named
//! [`GroupColumn`]s; building it checks lengths, labels and scores and names
//! the row of the first problem. [`audit`] runs an [`AuditConfig`] (group
//! specs with intersections, privileged groups, bootstrap, thresholds) over
//! it and returns an [`AuditReport`]: for every [`GroupSpec`] a
//! [`SpecReport`] with a fairlearn-`MetricFrame`-style [`MetricSummary`] per
//! metric, confusion matrices, [`FairlearnMetrics`], [`Aif360Metrics`], the
//! [`FourFifths`] verdict, [`MulticlassDisparities`] and ordinal cuts, ROC
//! and calibration data; warnings; and the [`Breach`]es of declared
//! [`Threshold`]s. The report serialises to a stable JSON schema
//! ([`SCHEMA`], documented in `SCHEMA.md`) and renders as Markdown
//! ([`AuditReport::to_markdown`]) or a self-contained HTML page with inline
//! SVG plots ([`AuditReport::to_html`]).
//!
//! [`ConfusionCounts`] accumulates (label, prediction, group) batches, as a
//! training loop sees them, and turns them into the same headline metrics
//! without keeping any logits; [`WindowMonitor`] keeps them over a sliding
//! window of a prediction stream and reports breaches as they happen.
//!
//! [`AuditCounts`] are an audit's sufficient statistics: rows per (group
//! values × true × predicted label) cell, with scores also per calibration
//! and score bin ([`ScoreBins`]). [`CountsBuilder`] counts rows one at a
//! time in memory that grows with the cells, not the rows; counts of parts
//! [`merge`](AuditCounts::merge); [`audit_counts`] gives the report that
//! [`audit`] gives for the same rows (count-based numbers and the bootstrap
//! identical, ROC AUC within a stated bound); [`counts_sql`] is the GROUP
//! BY that counts a table in a SQL engine.
//!
//! Mitigations: [`Reweighing`] (Kamiran & Calders) weights for training;
//! [`ThresholdOptimizer`] (Hardt et al. 2016 post-processing, as fairlearn's
//! `ThresholdOptimizer`) fitted on validation scores, saved as JSON and
//! applied with seeded randomisation; [`ClassOffsets`], per-group class-score
//! offsets for three or more labels. [`counterfactual_fairness`] measures
//! flip rates and probability shifts on text pairs with the group swapped.
//!
//! # Example
//!
//! ```
//! use valor_fair::{AuditConfig, AuditInput, Threshold, audit, paths};
//!
//! let input = AuditInput::from_strings(&["1", "0", "1", "0"], &["1", "0", "0", "0"], None)?
//!     .with_scores(vec![0.9, 0.2, 0.4, 0.1])?
//!     .with_group("sex", &["f", "f", "m", "m"])?;
//! let mut config = AuditConfig::default().privilege("sex", "m");
//! config
//!     .thresholds
//!     .push(Threshold::at_most(paths::DEMOGRAPHIC_PARITY_DIFFERENCE, 0.1));
//! let report = audit(&input, &config)?;
//! let sex = report.spec("sex").expect("audited");
//! let dp = sex.fairlearn.as_ref().and_then(|f| f.demographic_parity_difference);
//! assert_eq!(dp, Some(0.5)); // f selected at 1/2, m at 0/2
//! assert!(!report.passed()); // exit code 1 in the CLI
//! let _json = report.to_json_pretty()?; // schema in SCHEMA.md
//! # Ok::<(), valor_fair::Error>(())
//! ```
//!
//! # Conventions
//!
//! fairlearn's differences are `max − min` over groups (≥ 0) and its ratios
//! `min / max` (≤ 1); AIF360's differences are signed `unprivileged −
//! privileged` and its disparate impact is `unprivileged / privileged`. A
//! metric undefined for a group (no positives, say) is `None` (`null`) and
//! left out of aggregates, where fairlearn would report 0.

mod audit;
mod bootstrap;
pub mod compare;
mod config;
mod confusion;
mod core;
mod counterfactual;
mod counts;
pub mod drift;
mod entropy;
mod error;
mod headline;
mod ids;
mod input;
mod io;
mod kstwo;
mod live;
mod metrics;
mod mitigation;
mod monitor;
mod partition;
mod render;
mod report;
mod scores;
mod streaming;

pub use audit::{FOUR_FIFTHS, audit, audit_counts};
pub use compare::{AuditComparison, COMPARISON_SCHEMA, Shift, compare_audits};
pub use config::{AuditConfig, BootstrapConfig, GroupSpec, Limit, MAX_RESAMPLES, Threshold, paths};
pub use confusion::{BinaryCounts, ConfusionMatrix};
pub use counterfactual::{
    CounterfactualReport, DirectionSummary, counterfactual_fairness, counterfactual_flip_rate,
};
pub use counts::{
    AuditCounts, CellKey, CellValue, CodedChunk, CodedColumn, CountsBuilder, DEFAULT_SCORE_BINS,
    MAX_SCORE_BINS, ScoreBins, SqlColumns, SqlDialect, counts_sql,
};
pub use error::{Error, Result};
pub use headline::{Aif360Metrics, ConfusionCell, FairlearnMetrics, MulticlassDisparities};
pub use ids::{GroupId, LabelId, LabelSet, MAX_LABELS};
pub use input::{AuditInput, GroupColumn, MAX_GROUP_CELLS};
pub use io::write_atomic;
pub use live::{
    DriftReport, FeedbackMatch, LIVE_SCHEMA, LiveConfig, LiveEvent, LiveMonitor, LiveReport,
    MonitorTimeline, Observation, OutcomeSpec, REFERENCE_SCHEMA, Reference, SelectionSpec,
    TIMELINE_SCHEMA, Window,
};
pub use mitigation::offsets::{ClassOffsets, OFFSETS_SCHEMA, OffsetConfig, OffsetConstraint};
pub use mitigation::reweighing::{Reweighing, reweighing_weights};
pub use mitigation::threshold::{
    Constraint, Cut, DecisionStream, GroupFit, GroupRule, Objective, THRESHOLD_SCHEMA,
    ThresholdOptimizer, ThresholdOptimizerConfig,
};
pub use monitor::{MonitorEvent, MonitorEventKind, WindowMonitor};
pub use report::{
    AuditReport, BootstrapInfo, Breach, CalibrationSummary, ConfusionSummary, DatasetMetrics,
    FourFifths, GroupInfo, Interval, Lookup, MetricIntervals, MetricSummary, OrderedMap,
    OrdinalCut, Provenance, ReliabilityBin, RocCurve, RocSummary, SCHEMA, SpecReport, Task,
    Warning, WarningKind,
};
pub use streaming::{ConfusionCounts, CountsSummaryConfig};
