//! The live monitor of a served model: fairness and drift over a sliding
//! window of decisions, with outcomes joined as feedback arrives.
//!
//! The server calls [`LiveMonitor::observe`] per decision and
//! [`LiveMonitor::feedback`] per `/feedback`, and [`LiveMonitor::report`]
//! for `GET /fairness`; `valor monitor` replays a decision log through the
//! same calls, so both compute the same numbers.
//!
//! Fairness numbers are [`crate::audit`]'s on the window's rows, so they are
//! the numbers `valor audit` gives on the same rows: the selection audit
//! runs on every decision of the window (true labels are not needed for
//! selection rates, demographic parity, disparate impact; the audit sees the
//! predictions as labels too), the outcome audit on the decisions whose true
//! outcome came back (equalized odds, accuracy, every label-based metric).
//! Drift compares the window with a [`Reference`] sample by Evidently's
//! default rules ([`crate::drift::drift_test`]).

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::config::{AuditConfig, GroupSpec, Limit, Threshold};
use crate::drift::{DriftTest, Sample, drift_test};
use crate::error::{Error, Result};
use crate::ids::{LabelId, LabelSet};
use crate::input::AuditInput;
use crate::report::{AuditReport, Lookup, OrderedMap};

/// Schema of [`LiveReport`].
pub const LIVE_SCHEMA: &str = "valor.monitor.window/1";
/// Schema of [`Reference`] as JSON.
pub const REFERENCE_SCHEMA: &str = "valor.monitor.reference/1";

/// How many decisions the window holds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// The last `n` decisions.
    Count(usize),
    /// Decisions of the last `seconds` (by their time), at most `max_rows`.
    Span { seconds: f64, max_rows: usize },
}

/// What the monitor watches and when it checks.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// The model's labels, in its order (probabilities come in this order).
    pub labels: Vec<String>,
    /// Group attributes each decision carries, in this order.
    pub group_columns: Vec<String>,
    pub window: Window,
    /// Specs, privileged groups, positive label (two labels without one
    /// named, and neither 0/1 nor false/true: the second label), known
    /// groups, and the
    /// fairness thresholds (`paths::DEMOGRAPHIC_PARITY_DIFFERENCE`, …) whose
    /// breaches become events. Bootstrap settings are ignored.
    pub audit: AuditConfig,
    /// Thresholds are checked every this many decisions (1: after every
    /// decision; the selection audit of a 1,000-decision window takes
    /// about 60 µs in a debug build).
    pub check_every: u64,
    /// No check before the window holds this many decisions (a count
    /// window checks once it is full, whatever this says).
    pub min_rows: usize,
    /// Outcome metrics (equalized odds, accuracy) are checked once this
    /// many decisions of the window have feedback.
    pub min_feedback_rows: usize,
    /// Report drift as events (`drift.<feature>` breached while the
    /// feature drifts).
    pub drift_events: bool,
    /// Drift events are checked every this many decisions (a drift check
    /// of a 1,000-decision window against a 1,000-row reference costs
    /// about half a millisecond, ten times a fairness check).
    pub drift_every: u64,
}

impl LiveConfig {
    /// A count window of `window` decisions, checks after every decision.
    pub fn new(labels: Vec<String>, group_columns: Vec<String>, window: usize) -> Self {
        Self {
            labels,
            group_columns,
            window: Window::Count(window),
            audit: AuditConfig::default(),
            check_every: 1,
            min_rows: 1,
            min_feedback_rows: 30,
            drift_events: true,
            drift_every: 100,
        }
    }
}

/// One decision as the monitor sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// The decision id (what feedback refers to).
    pub id: String,
    /// Unix seconds.
    pub time_s: f64,
    /// Group values in [`LiveConfig::group_columns`] order.
    pub groups: Vec<String>,
    /// The decided label.
    pub label: String,
    /// Class probabilities in label order.
    pub probabilities: Vec<f64>,
    /// Characters of the input text.
    pub text_chars: Option<f64>,
    /// Share of `[UNK]` tokens in the input.
    pub unknown_rate: Option<f64>,
}

/// The sample drift is measured against: predictions of the model on data
/// it was validated on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// [`REFERENCE_SCHEMA`].
    pub schema: String,
    pub labels: Vec<String>,
    /// Predicted label per row (index into `labels`).
    pub predicted: Vec<u32>,
    /// Per label, its probability on every row.
    pub scores: Vec<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_chars: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_rate: Option<Vec<f64>>,
}

impl Reference {
    /// From predicted label names and per-row probabilities (label order).
    pub fn from_rows<S: AsRef<str>>(
        labels: &[String],
        predicted: &[S],
        probabilities: &[Vec<f64>],
        text_chars: Option<Vec<f64>>,
        unknown_rate: Option<Vec<f64>>,
    ) -> Result<Self> {
        let set = LabelSet::new(labels)?;
        if predicted.is_empty() {
            return Err(Error::Empty {
                what: "reference (no rows)".into(),
            });
        }
        let ids = set.encode("reference label", predicted)?;
        if probabilities.len() != predicted.len() {
            return Err(Error::LengthMismatch {
                column: "reference probabilities".into(),
                expected: predicted.len(),
                actual: probabilities.len(),
            });
        }
        let mut scores = vec![Vec::with_capacity(predicted.len()); labels.len()];
        for (row, p) in probabilities.iter().enumerate() {
            check_probs(labels, p, &format!("reference row {}", row + 1))?;
            for (c, v) in p.iter().enumerate() {
                scores[c].push(*v);
            }
        }
        for (name, col) in [("text_chars", &text_chars), ("unknown_rate", &unknown_rate)] {
            if let Some(c) = col
                && c.len() != predicted.len()
            {
                return Err(Error::LengthMismatch {
                    column: format!("reference {name}"),
                    expected: predicted.len(),
                    actual: c.len(),
                });
            }
        }
        Ok(Self {
            schema: REFERENCE_SCHEMA.into(),
            labels: labels.to_vec(),
            predicted: ids.iter().map(|l| l.get()).collect(),
            scores,
            text_chars,
            unknown_rate,
        })
    }

    /// From a predictions table as `valor predict` writes it: a `label`
    /// column and one `p_<label>` column per label (their order is the
    /// label order unless `labels` is given), and optionally `text_chars`
    /// and `unknown_rate` columns, or a `text` column whose lengths are
    /// taken. `rows` are the table's rows as strings, in `header` order.
    pub fn from_table(
        header: &[String],
        rows: &[Vec<String>],
        labels: Option<&[String]>,
    ) -> Result<Self> {
        let col = |name: &str| header.iter().position(|h| h == name);
        let missing = |name: &str| Error::UnknownGroupColumn {
            column: name.into(),
            available: header
                .iter()
                .map(|h| format!("`{h}`"))
                .collect::<Vec<_>>()
                .join(", "),
        };
        let label_col = col("label").ok_or_else(|| missing("label"))?;
        let labels: Vec<String> = match labels {
            Some(l) => l.to_vec(),
            None => header
                .iter()
                .filter_map(|h| h.strip_prefix("p_").map(str::to_owned))
                .collect(),
        };
        if labels.is_empty() {
            return Err(missing("p_<label>"));
        }
        let p_cols: Vec<usize> = labels
            .iter()
            .map(|l| col(&format!("p_{l}")).ok_or_else(|| missing(&format!("p_{l}"))))
            .collect::<Result<_>>()?;
        let parse = |row: usize, c: usize, v: &str| -> Result<f64> {
            v.trim().parse::<f64>().map_err(|_| Error::Mismatch {
                what: format!("reference row {}, column `{}`", row + 1, header[c]),
                why: format!("`{v}` is not a number"),
            })
        };
        let mut predicted = Vec::with_capacity(rows.len());
        let mut probs = Vec::with_capacity(rows.len());
        for (r, row) in rows.iter().enumerate() {
            predicted.push(row[label_col].clone());
            probs.push(
                p_cols
                    .iter()
                    .map(|&c| parse(r, c, &row[c]))
                    .collect::<Result<Vec<f64>>>()?,
            );
        }
        let numeric = |name: &str| -> Result<Option<Vec<f64>>> {
            match col(name) {
                None => Ok(None),
                Some(c) => rows
                    .iter()
                    .enumerate()
                    .map(|(r, row)| parse(r, c, &row[c]))
                    .collect::<Result<Vec<f64>>>()
                    .map(Some),
            }
        };
        let text_chars = match numeric("text_chars")? {
            Some(v) => Some(v),
            None => col("text").map(|c| {
                rows.iter()
                    .map(|row| row[c].chars().count() as f64)
                    .collect()
            }),
        };
        Self::from_rows(
            &labels,
            &predicted,
            &probs,
            text_chars,
            numeric("unknown_rate")?,
        )
    }

    /// Rows in the sample.
    pub fn len(&self) -> usize {
        self.predicted.len()
    }

    /// Whether the sample is empty (never, once built).
    pub fn is_empty(&self) -> bool {
        self.predicted.is_empty()
    }

    /// Parses [`REFERENCE_SCHEMA`] JSON.
    pub fn from_json(text: &str) -> Result<Self> {
        let r: Self = serde_json::from_str(text).map_err(|e| Error::Mismatch {
            what: "reference JSON".into(),
            why: e.to_string(),
        })?;
        if r.schema != REFERENCE_SCHEMA {
            return Err(Error::Mismatch {
                what: "reference JSON".into(),
                why: format!("schema `{}`, expected `{REFERENCE_SCHEMA}`", r.schema),
            });
        }
        let probs: Vec<Vec<f64>> = (0..r.predicted.len())
            .map(|i| {
                r.scores
                    .iter()
                    .map(|c| c.get(i).copied().unwrap_or(f64::NAN))
                    .collect()
            })
            .collect();
        let names: Vec<&str> = r
            .predicted
            .iter()
            .map(|&p| r.labels.get(p as usize).map_or("", String::as_str))
            .collect();
        Self::from_rows(&r.labels, &names, &probs, r.text_chars, r.unknown_rate)
    }
}

fn check_probs(labels: &[String], p: &[f64], what: &str) -> Result<()> {
    if p.len() != labels.len() {
        return Err(Error::Mismatch {
            what: what.into(),
            why: format!("{} probabilities for {} labels", p.len(), labels.len()),
        });
    }
    if let Some((i, v)) = p.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::Mismatch {
            what: what.into(),
            why: format!("the probability of `{}` is {v}", labels[i]),
        });
    }
    Ok(())
}

struct Row {
    seq: u64,
    id: String,
    time_s: f64,
    groups: Vec<String>,
    label: u32,
    probs: Vec<f64>,
    text_chars: Option<f64>,
    unknown_rate: Option<f64>,
    outcome: Option<u32>,
}

/// A threshold started or stopped being breached, or a feature started or
/// stopped drifting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveEvent {
    /// Decisions observed when it happened.
    pub rows_seen: u64,
    /// Time of the decision that caused it (unix seconds).
    pub time_s: f64,
    pub kind: crate::MonitorEventKind,
    /// The spec (`None` for dataset and drift metrics).
    pub spec: Option<String>,
    /// The metric path, or `drift.<feature>`.
    pub metric: String,
    pub value: Option<f64>,
    /// The threshold (for drift: the rule's).
    pub limit: Limit,
}

/// Selection rates of one spec's groups.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SelectionSpec {
    /// Spec name (`sex`, `sex+race`).
    pub spec: String,
    /// Group key → label → share of the group's decisions with that label.
    pub rates: OrderedMap<OrderedMap<f64>>,
    /// Group key → decisions.
    pub counts: OrderedMap<u64>,
    /// fairlearn's demographic-parity difference and ratio (binary tasks,
    /// at the positive label), as [`crate::audit`] computes them.
    pub demographic_parity_difference: Option<f64>,
    pub demographic_parity_ratio: Option<f64>,
    /// AIF360's disparate impact (privileged groups declared).
    pub disparate_impact: Option<f64>,
    /// Largest one-vs-rest selection-rate gap over classes (multiclass).
    pub multiclass_selection_rate_gap: Option<f64>,
}

/// Outcome metrics of the decisions with feedback.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutcomeSpec {
    pub spec: String,
    pub accuracy: Option<f64>,
    pub equalized_odds_difference: Option<f64>,
    pub equalized_odds_ratio: Option<f64>,
    pub equal_opportunity_difference: Option<f64>,
}

/// Drift of the window against the reference.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DriftReport {
    pub reference_rows: usize,
    pub current_rows: usize,
    pub features: Vec<DriftTest>,
    /// Features that drift.
    pub drifted: usize,
}

/// The current window: what `GET /fairness` returns and `valor monitor`
/// plots.
#[derive(Clone, Debug, Serialize)]
pub struct LiveReport {
    /// [`LIVE_SCHEMA`].
    pub schema: String,
    pub window: Window,
    /// Decisions in the window, and of those with feedback.
    pub rows: usize,
    pub feedback_rows: usize,
    /// Decisions observed since the start.
    pub rows_seen: u64,
    /// Times of the window's first and last decisions (unix seconds).
    pub first_time_s: Option<f64>,
    pub last_time_s: Option<f64>,
    pub selection: Vec<SelectionSpec>,
    pub outcomes: Vec<OutcomeSpec>,
    pub drift: Option<DriftReport>,
    /// Thresholds breached now.
    pub breached: Vec<LiveEvent>,
    /// The selection audit ([`crate::audit`] on the window, predictions
    /// as labels): its fairness-of-selection numbers are valid, its
    /// label-based metrics are not.
    pub selection_audit: Option<AuditReport>,
    /// The audit of the decisions with feedback (`valor.fair.audit/1`).
    pub outcome_audit: Option<AuditReport>,
}

/// Metrics that depend on predictions only: checked on every decision of
/// the window; others need outcomes.
fn selection_only(metric: &str) -> bool {
    let m = metric.rsplit('.').next().unwrap_or(metric);
    m.starts_with("demographic_parity")
        || m.starts_with("selection_rate")
        || m == "disparate_impact"
        || m == "statistical_parity_difference"
}

/// Fairness and drift over a sliding window of decisions. See the module
/// doc.
pub struct LiveMonitor {
    config: LiveConfig,
    labels: LabelSet,
    specs: Vec<GroupSpec>,
    reference: Option<Reference>,
    ring: VecDeque<Row>,
    index: HashMap<String, u64>,
    next_seq: u64,
    rows_seen: u64,
    feedback_rows: usize,
    breached: HashSet<(String, Option<String>)>,
    breached_events: Vec<LiveEvent>,
}

impl std::fmt::Debug for LiveMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveMonitor")
            .field("window", &self.config.window)
            .field("rows", &self.ring.len())
            .field("rows_seen", &self.rows_seen)
            .finish_non_exhaustive()
    }
}

/// What became of a feedback outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackMatch {
    /// Joined to a decision in the window.
    Joined,
    /// The decision already left the window (or was never seen): kept out
    /// of the outcome metrics.
    NotInWindow,
}

impl LiveMonitor {
    /// A monitor; `reference` enables drift.
    pub fn new(config: LiveConfig, reference: Option<Reference>) -> Result<Self> {
        let labels = LabelSet::new(&config.labels)?;
        let mut audit = config.audit.clone();
        audit.bootstrap = None;
        if labels.len() == 2
            && audit.positive_label.is_none()
            && crate::audit::resolve_positive(&labels, None).is_err()
        {
            // as `valor audit` does: the second label is the favourable one
            audit.positive_label = Some(config.labels[1].clone());
        }
        audit.validate()?;
        if config.group_columns.is_empty() {
            return Err(Error::NoGroups);
        }
        match config.window {
            Window::Count(0) => {
                return Err(Error::InvalidConfig {
                    setting: "window".into(),
                    why: "needs at least one decision".into(),
                });
            }
            Window::Span { seconds, max_rows }
                if !(seconds > 0.0 && seconds.is_finite()) || max_rows == 0 =>
            {
                return Err(Error::InvalidConfig {
                    setting: "window".into(),
                    why: "a time span needs seconds > 0 and max_rows > 0".into(),
                });
            }
            _ => {}
        }
        let specs = if audit.specs.is_empty() {
            config
                .group_columns
                .iter()
                .map(|c| GroupSpec::single(c))
                .collect()
        } else {
            audit.specs.clone()
        };
        for s in &specs {
            for c in &s.columns {
                if !config.group_columns.contains(c) {
                    return Err(Error::UnknownGroupColumn {
                        column: c.clone(),
                        available: config.group_columns.join(", "),
                    });
                }
            }
        }
        if let Some(r) = &reference
            && r.labels != config.labels
        {
            return Err(Error::Mismatch {
                what: "reference".into(),
                why: format!(
                    "its labels {:?} are not the model's {:?}",
                    r.labels, config.labels
                ),
            });
        }
        let config = LiveConfig {
            audit,
            check_every: config.check_every.max(1),
            drift_every: config.drift_every.max(1),
            ..config
        };
        Ok(Self {
            config,
            labels,
            specs,
            reference,
            ring: VecDeque::new(),
            index: HashMap::new(),
            next_seq: 0,
            rows_seen: 0,
            feedback_rows: 0,
            breached: HashSet::new(),
            breached_events: Vec::new(),
        })
    }

    /// Decisions in the window.
    pub fn window_len(&self) -> usize {
        self.ring.len()
    }

    /// Decisions observed since the start.
    pub fn rows_seen(&self) -> u64 {
        self.rows_seen
    }

    /// The configuration.
    pub fn config(&self) -> &LiveConfig {
        &self.config
    }

    fn label_id(&self, what: &str, v: &str) -> Result<LabelId> {
        self.labels.id(v).ok_or_else(|| Error::UnknownLabel {
            column: what.into(),
            row: self.rows_seen as usize,
            value: v.to_owned(),
            labels: self.labels.names().to_vec(),
        })
    }

    /// Adds a decision, evicts what left the window, and, once the window
    /// is ready, checks thresholds (every `check_every` decisions) and
    /// drift (every `drift_every`); returns the breach events that caused.
    pub fn observe(&mut self, obs: Observation) -> Result<Vec<LiveEvent>> {
        let label = self.label_id("label", &obs.label)?;
        check_probs(
            &self.config.labels,
            &obs.probabilities,
            &format!("decision `{}`", obs.id),
        )?;
        if obs.groups.len() != self.config.group_columns.len() {
            return Err(Error::Mismatch {
                what: format!("decision `{}`", obs.id),
                why: format!(
                    "{} group values for the group columns {:?}",
                    obs.groups.len(),
                    self.config.group_columns
                ),
            });
        }
        for (col, value) in self.config.group_columns.iter().zip(&obs.groups) {
            if let Some(known) = self.config.audit.known_groups.get(col)
                && !known.contains(value)
            {
                return Err(Error::UnseenGroup {
                    column: col.clone(),
                    row: self.rows_seen as usize,
                    value: value.clone(),
                    known: known.clone(),
                });
            }
        }
        if self.index.contains_key(&obs.id) {
            return Err(Error::Mismatch {
                what: format!("decision `{}`", obs.id),
                why: "a decision with this id is already in the window".into(),
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.index.insert(obs.id.clone(), seq);
        let time_s = obs.time_s;
        self.ring.push_back(Row {
            seq,
            id: obs.id,
            time_s,
            groups: obs.groups,
            label: label.get(),
            probs: obs.probabilities,
            text_chars: obs.text_chars,
            unknown_rate: obs.unknown_rate,
            outcome: None,
        });
        self.evict(time_s);
        self.rows_seen += 1;
        let ready = match self.config.window {
            Window::Count(n) => self.ring.len() >= n,
            Window::Span { .. } => self.ring.len() >= self.config.min_rows.max(1),
        };
        if ready {
            self.check(time_s)
        } else {
            Ok(Vec::new())
        }
    }

    fn evict(&mut self, now: f64) {
        while let Some(front) = self.ring.front() {
            let out = match self.config.window {
                Window::Count(n) => self.ring.len() > n,
                Window::Span { seconds, max_rows } => {
                    self.ring.len() > max_rows || front.time_s < now - seconds
                }
            };
            if !out {
                break;
            }
            if let Some(old) = self.ring.pop_front() {
                if self.index.get(&old.id) == Some(&old.seq) {
                    self.index.remove(&old.id);
                }
                if old.outcome.is_some() {
                    self.feedback_rows -= 1;
                }
            }
        }
    }

    /// Joins a true outcome to its decision, if the decision is still in
    /// the window. A second outcome for the same decision replaces the
    /// first.
    pub fn feedback(&mut self, decision_id: &str, outcome: &str) -> Result<FeedbackMatch> {
        let t = self.label_id("outcome", outcome)?;
        let Some(&seq) = self.index.get(decision_id) else {
            return Ok(FeedbackMatch::NotInWindow);
        };
        let Some(front) = self.ring.front() else {
            return Ok(FeedbackMatch::NotInWindow);
        };
        let pos = (seq - front.seq) as usize;
        let row = &mut self.ring[pos];
        if row.outcome.is_none() {
            self.feedback_rows += 1;
        }
        row.outcome = Some(t.get());
        Ok(FeedbackMatch::Joined)
    }

    fn rows_input(&self, outcomes: bool) -> Result<Option<AuditInput>> {
        let rows: Vec<&Row> = self
            .ring
            .iter()
            .filter(|r| !outcomes || r.outcome.is_some())
            .collect();
        if rows.is_empty() {
            return Ok(None);
        }
        let pred: Vec<LabelId> = rows.iter().map(|r| LabelId::new(r.label)).collect();
        let truth: Vec<LabelId> = if outcomes {
            rows.iter()
                .map(|r| LabelId::new(r.outcome.unwrap_or(r.label)))
                .collect()
        } else {
            pred.clone()
        };
        let mut input = AuditInput::from_ids(self.labels.clone(), truth, pred)?;
        if outcomes {
            // P(positive) for ROC and calibration, when binary
            if self.labels.len() == 2
                && let Some(pos) = crate::audit::resolve_positive(
                    &self.labels,
                    self.config.audit.positive_label.as_deref(),
                )?
            {
                input = input.with_scores(rows.iter().map(|r| r.probs[pos]).collect())?;
            }
        }
        for (c, name) in self.config.group_columns.iter().enumerate() {
            let values: Vec<&str> = rows.iter().map(|r| r.groups[c].as_str()).collect();
            input = input.with_group(name, &values)?;
        }
        Ok(Some(input))
    }

    fn audit_config(&self) -> AuditConfig {
        let mut c = self.config.audit.clone();
        c.thresholds.clear();
        c.bootstrap = None;
        c.specs = self.specs.clone();
        c
    }

    /// The selection audit (every decision of the window, predictions as
    /// labels) and the outcome audit (decisions with feedback, if any).
    pub fn audits(&self) -> Result<(Option<AuditReport>, Option<AuditReport>)> {
        let config = self.audit_config();
        let sel = match self.rows_input(false)? {
            Some(i) => Some(crate::audit(&i, &config)?),
            None => None,
        };
        let out = match self.rows_input(true)? {
            Some(i) => Some(crate::audit(&i, &config)?),
            None => None,
        };
        Ok((sel, out))
    }

    /// Drift of the window against the reference (`None` without one).
    pub fn drift(&self) -> Result<Option<DriftReport>> {
        let Some(r) = &self.reference else {
            return Ok(None);
        };
        if self.ring.is_empty() {
            return Ok(None);
        }
        let mut features = Vec::new();
        let cur_pred: Vec<u32> = self.ring.iter().map(|r| r.label).collect();
        features.push(drift_test(
            "predicted_class",
            Sample::Categorical(&r.predicted),
            Sample::Categorical(&cur_pred),
        )?);
        for (c, name) in self.config.labels.iter().enumerate() {
            let cur: Vec<f64> = self.ring.iter().map(|row| row.probs[c]).collect();
            features.push(drift_test(
                &format!("score.{name}"),
                Sample::Numeric(&r.scores[c]),
                Sample::Numeric(&cur),
            )?);
        }
        for (name, refv, get) in [
            (
                "text_chars",
                &r.text_chars,
                (|row: &Row| row.text_chars) as fn(&Row) -> Option<f64>,
            ),
            ("unknown_rate", &r.unknown_rate, |row: &Row| {
                row.unknown_rate
            }),
        ] {
            let cur: Vec<f64> = self.ring.iter().filter_map(get).collect();
            if let Some(refv) = refv
                && !cur.is_empty()
            {
                features.push(drift_test(
                    name,
                    Sample::Numeric(refv),
                    Sample::Numeric(&cur),
                )?);
            }
        }
        let drifted = features.iter().filter(|f| f.drifted).count();
        Ok(Some(DriftReport {
            reference_rows: r.len(),
            current_rows: self.ring.len(),
            features,
            drifted,
        }))
    }

    fn thresholds(&self) -> (Vec<Threshold>, Vec<Threshold>) {
        self.config
            .audit
            .thresholds
            .iter()
            .cloned()
            .partition(|t| selection_only(&t.metric))
    }

    /// Current values of the thresholds' metrics: (metric, spec, value, limit).
    fn measured(
        &self,
        sel: Option<&AuditReport>,
        out: Option<&AuditReport>,
    ) -> Vec<(String, Option<String>, f64, Limit)> {
        let (sel_t, out_t) = self.thresholds();
        let mut v = Vec::new();
        let enough_feedback = self.feedback_rows >= self.config.min_feedback_rows.max(1);
        for (ts, report) in [(sel_t, sel), (out_t, out.filter(|_| enough_feedback))] {
            let Some(report) = report else { continue };
            for t in ts {
                let lookups: Vec<(Option<String>, Lookup)> = if t.metric.starts_with("dataset.") {
                    vec![(None, report.dataset.lookup(&t.metric))]
                } else {
                    report
                        .specs
                        .iter()
                        .map(|s| (Some(s.name.clone()), s.lookup(&t.metric)))
                        .collect()
                };
                for (spec, l) in lookups {
                    if let Lookup::Value { value: Some(x), .. } = l {
                        v.push((t.metric.clone(), spec, x, t.limit));
                    }
                }
            }
        }
        v
    }

    fn check(&mut self, time_s: f64) -> Result<Vec<LiveEvent>> {
        let mut events = Vec::new();
        let want_drift = self.config.drift_events
            && self.reference.is_some()
            && self.rows_seen.is_multiple_of(self.config.drift_every);
        let want_thresholds = !self.config.audit.thresholds.is_empty()
            && self.rows_seen.is_multiple_of(self.config.check_every);
        if !want_thresholds && !want_drift {
            return Ok(events);
        }
        let mut now: Vec<(String, Option<String>, f64, Limit, bool)> = Vec::new();
        if want_thresholds {
            let (sel, out) = self.audits()?;
            for (m, s, x, l) in self.measured(sel.as_ref(), out.as_ref()) {
                let b = l.breached_by(x);
                now.push((m, s, x, l, b));
            }
        }
        if want_drift && let Some(d) = self.drift()? {
            for f in d.features {
                let limit = match f.method {
                    crate::drift::DriftMethod::Wasserstein
                    | crate::drift::DriftMethod::JensenShannon => Limit::AtMost(f.threshold),
                    _ => Limit::AtLeast(f.threshold),
                };
                now.push((
                    format!("drift.{}", f.feature),
                    None,
                    f.score,
                    limit,
                    f.drifted,
                ));
            }
        }
        for (metric, spec, value, limit, breached) in now {
            let key = (metric.clone(), spec.clone());
            let was = self.breached.contains(&key);
            if breached == was {
                if breached
                    && let Some(e) = self
                        .breached_events
                        .iter_mut()
                        .find(|e| e.metric == metric && e.spec == spec)
                {
                    e.value = Some(value);
                }
                continue;
            }
            let event = LiveEvent {
                rows_seen: self.rows_seen,
                time_s,
                kind: if breached {
                    crate::MonitorEventKind::Breached
                } else {
                    crate::MonitorEventKind::Recovered
                },
                spec: spec.clone(),
                metric: metric.clone(),
                value: Some(value),
                limit,
            };
            if breached {
                self.breached.insert(key);
                self.breached_events.push(event.clone());
            } else {
                self.breached.remove(&key);
                self.breached_events
                    .retain(|e| !(e.metric == metric && e.spec == spec));
            }
            events.push(event);
        }
        Ok(events)
    }

    /// Selection rates per class and group, straight from the window, in
    /// the audit's group order (`order`: its group keys).
    fn selection_rates(
        &self,
        spec: &GroupSpec,
        order: &[String],
    ) -> (OrderedMap<OrderedMap<f64>>, OrderedMap<u64>) {
        let pos: Vec<usize> = spec
            .columns
            .iter()
            .filter_map(|c| self.config.group_columns.iter().position(|x| x == c))
            .collect();
        let k = self.labels.len();
        let mut by: HashMap<String, Vec<u64>> = HashMap::new();
        for r in &self.ring {
            let key: Vec<&str> = pos.iter().map(|&i| r.groups[i].as_str()).collect();
            by.entry(key.join("|")).or_insert_with(|| vec![0; k])[r.label as usize] += 1;
        }
        let mut rates = OrderedMap::new();
        let mut counts = OrderedMap::new();
        for key in order {
            let Some(c) = by.get(key) else { continue };
            let n: u64 = c.iter().sum();
            let mut m = OrderedMap::new();
            for (i, name) in self.labels.names().iter().enumerate() {
                m.push(name.clone(), c[i] as f64 / n as f64);
            }
            rates.push(key.clone(), m);
            counts.push(key.clone(), n);
        }
        (rates, counts)
    }

    /// The window now: selection rates, demographic parity, outcome
    /// metrics, drift and the thresholds breached.
    pub fn report(&self) -> Result<LiveReport> {
        let (sel, out) = self.audits()?;
        let mut selection = Vec::new();
        if let Some(sa) = &sel {
            for (spec, sr) in self.specs.iter().zip(&sa.specs) {
                let order: Vec<String> = sr.groups.iter().map(|g| g.key.clone()).collect();
                let (rates, counts) = self.selection_rates(spec, &order);
                selection.push(SelectionSpec {
                    spec: sr.name.clone(),
                    rates,
                    counts,
                    demographic_parity_difference: sr
                        .fairlearn
                        .as_ref()
                        .and_then(|f| f.demographic_parity_difference),
                    demographic_parity_ratio: sr
                        .fairlearn
                        .as_ref()
                        .and_then(|f| f.demographic_parity_ratio),
                    disparate_impact: sr.aif360.as_ref().and_then(|a| a.disparate_impact),
                    multiclass_selection_rate_gap: sr
                        .multiclass
                        .as_ref()
                        .and_then(|m| m.selection_rate_gap),
                });
            }
        }
        let mut outcomes = Vec::new();
        if let Some(oa) = &out {
            for sr in &oa.specs {
                let val = |p: &str| match sr.lookup(p) {
                    Lookup::Value { value, .. } => value,
                    _ => None,
                };
                outcomes.push(OutcomeSpec {
                    spec: sr.name.clone(),
                    accuracy: sr.metrics.get("accuracy").and_then(|m| m.overall),
                    equalized_odds_difference: val(crate::paths::EQUALIZED_ODDS_DIFFERENCE),
                    equalized_odds_ratio: val(crate::paths::EQUALIZED_ODDS_RATIO),
                    equal_opportunity_difference: val(crate::paths::EQUAL_OPPORTUNITY_DIFFERENCE),
                });
            }
        }
        Ok(LiveReport {
            schema: LIVE_SCHEMA.into(),
            window: self.config.window,
            rows: self.ring.len(),
            feedback_rows: self.feedback_rows,
            rows_seen: self.rows_seen,
            first_time_s: self.ring.front().map(|r| r.time_s),
            last_time_s: self.ring.back().map(|r| r.time_s),
            selection,
            outcomes,
            drift: self.drift()?,
            breached: self.breached_events.clone(),
            selection_audit: sel,
            outcome_audit: out,
        })
    }
}

/// Schema of [`MonitorTimeline`].
pub const TIMELINE_SCHEMA: &str = "valor.monitor.timeline/1";

/// Windows of a replayed decision log (`valor monitor`): one
/// [`LiveReport`] every `every` decisions, the events as they happened,
/// and the last window in full (with its audits).
#[derive(Clone, Debug, Serialize)]
pub struct MonitorTimeline {
    /// [`TIMELINE_SCHEMA`].
    pub schema: String,
    /// Where the decisions came from (the log folder).
    pub source: String,
    pub window: Window,
    /// A window was reported every this many decisions.
    pub every: u64,
    /// Decisions and feedback records replayed; feedback whose decision
    /// had left the window (or was never logged).
    pub decisions: u64,
    pub feedback: u64,
    pub feedback_not_in_window: u64,
    /// Records skipped, by reason (refusals, records of other kinds).
    pub skipped: OrderedMap<u64>,
    /// The windows, without their audits.
    pub windows: Vec<LiveReport>,
    pub events: Vec<LiveEvent>,
    /// The last window, with its audits.
    pub last: Option<LiveReport>,
}

impl MonitorTimeline {
    /// An empty timeline for `source`.
    pub fn new(source: &str, window: Window, every: u64) -> Self {
        Self {
            schema: TIMELINE_SCHEMA.into(),
            source: source.into(),
            window,
            every,
            decisions: 0,
            feedback: 0,
            feedback_not_in_window: 0,
            skipped: OrderedMap::new(),
            windows: Vec::new(),
            events: Vec::new(),
            last: None,
        }
    }

    /// Adds a window (its audits are dropped from the series).
    pub fn push_window(&mut self, mut report: LiveReport) {
        report.selection_audit = None;
        report.outcome_audit = None;
        self.windows.push(report);
    }

    /// Counts a skipped record under `reason`.
    pub fn skip(&mut self, reason: &str) {
        match self.skipped.get_mut(reason) {
            Some(n) => *n += 1,
            None => self.skipped.push(reason, 1),
        }
    }

    /// Pretty JSON.
    pub fn to_json_pretty(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Mismatch {
            what: "timeline JSON".into(),
            why: e.to_string(),
        })
    }
}
