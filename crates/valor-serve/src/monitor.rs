//! Live fairness and drift: every `/decide` decision goes into
//! valor-fair's [`LiveMonitor`] (a sliding window; the same audit
//! `valor audit` runs, on the window's rows), `/feedback` outcomes are
//! joined to their decisions, and `GET /fairness` returns the window's
//! report: selection rates by group, demographic parity, equalized odds
//! and accuracy once outcomes came back, the `valor.fair.audit/1` audits,
//! and drift against `--reference`. Breaches of `--max-dp-difference` and
//! the like are counted (Prometheus) and logged as they start and end;
//! `/metrics` carries the window's headline numbers as gauges.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use valor_fair::{
    LiveConfig, LiveEvent, LiveMonitor, LiveReport, Observation, Reference, Threshold,
};

use crate::alert::Alerter;
use crate::error::{Error, Result};
use crate::log::LoggedDecision;

/// What `valor serve` was asked to monitor.
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    /// Decisions in the window (with `window_seconds`: at most).
    pub window: usize,
    /// A time window instead: the decisions of the last this many seconds.
    pub window_seconds: Option<f64>,
    /// Predictions to measure drift against: a `valor predict` output
    /// (`label`, `p_<label>` columns; CSV, TSV, JSONL, Parquet) or a
    /// `valor.monitor.reference/1` JSON file.
    pub reference: Option<PathBuf>,
    /// Fairness targets whose breaches are counted and logged.
    pub thresholds: Vec<Threshold>,
    /// Outcome metrics need this many decisions with feedback.
    pub min_feedback_rows: usize,
    /// POST each breach and recovery here as JSON.
    pub alert_webhook: Option<String>,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        Self {
            window: 1000,
            window_seconds: None,
            reference: None,
            thresholds: Vec::new(),
            min_feedback_rows: 30,
            alert_webhook: None,
        }
    }
}

/// Reads `--reference` (before the model loads, so a bad file stops the
/// start): a `valor.monitor.reference/1` JSON file, a predictions table,
/// or a `valor train` run folder (its `reference.json`, the exported
/// model's validation predictions).
pub fn load_reference(path: &Path) -> Result<Reference> {
    if path.is_dir() {
        let file = path.join("reference.json");
        if !file.is_file() {
            return Err(Error::Monitor(format!(
                "{}: a folder, but it holds no reference.json (the validation predictions \
                 that `valor train` writes into its run folder); give a run folder or a \
                 predictions file",
                path.display()
            )));
        }
        return load_reference(&file);
    }
    let err = |message: String| Error::Monitor(format!("{}: {message}", path.display()));
    if path.extension().is_some_and(|e| e == "json") {
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        return Reference::from_json(&text).map_err(|e| err(e.to_string()));
    }
    let table = valor_data::read_table(path).map_err(|e| err(e.to_string()))?;
    let header = table.column_names();
    let columns: Vec<Vec<Option<String>>> = header
        .iter()
        .map(|h| table.strings(h))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    let rows: Vec<Vec<String>> = (0..table.n_rows())
        .map(|r| {
            columns
                .iter()
                .map(|c| c[r].clone().unwrap_or_default())
                .collect()
        })
        .collect();
    Reference::from_table(&header, &rows, None).map_err(|e| err(e.to_string()))
}

/// The live monitor of one server.
#[derive(Debug)]
pub struct Monitor {
    inner: Mutex<LiveMonitor>,
    columns: Vec<String>,
    alerter: Option<Alerter>,
}

impl Monitor {
    /// A monitor of `columns` for a model with `labels`.
    pub fn new(
        labels: &[String],
        columns: Vec<String>,
        settings: &MonitorSettings,
        reference: Option<Reference>,
    ) -> Result<Self> {
        let mut config = LiveConfig::new(labels.to_vec(), columns.clone(), settings.window);
        config.audit.thresholds = settings.thresholds.clone();
        config.min_feedback_rows = settings.min_feedback_rows;
        if let Some(seconds) = settings.window_seconds {
            config.window = valor_fair::Window::Span {
                seconds,
                max_rows: settings.window,
            };
        }
        let inner = LiveMonitor::new(config, reference)
            .map_err(|e| Error::Monitor(format!("the live monitor: {e}")))?;
        let alerter = settings
            .alert_webhook
            .as_deref()
            .map(Alerter::start)
            .transpose()?;
        Ok(Self {
            inner: Mutex::new(inner),
            columns,
            alerter,
        })
    }

    /// The group attributes each decision must carry.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Adds decisions to the window (each carries every monitored group;
    /// `/decide` checked that).
    pub fn observe(&self, time_s: f64, decisions: &[LoggedDecision]) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for d in decisions {
            let Some(id) = &d.decision_id else { continue };
            let obs = Observation {
                id: id.clone(),
                time_s,
                groups: self
                    .columns
                    .iter()
                    .map(|c| d.groups.get(c).cloned().unwrap_or_default())
                    .collect(),
                label: d.label.clone(),
                probabilities: d.probabilities.clone(),
                text_chars: Some(d.input.chars as f64),
                unknown_rate: Some(if d.input.tokens == 0 {
                    0.0
                } else {
                    d.input.unknown_tokens as f64 / d.input.tokens as f64
                }),
            };
            match m.observe(obs) {
                Ok(events) => {
                    for e in &events {
                        announce(e);
                        if let Some(a) = &self.alerter {
                            a.send(&serde_json::json!({
                                "source": "valor serve",
                                "event": e,
                            }));
                        }
                    }
                }
                Err(e) => tracing::error!("live monitor: decision {id}: {e}"),
            }
        }
    }

    /// Joins a true outcome to its decision.
    pub fn feedback(&self, decision_id: &str, outcome: &str) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = m.feedback(decision_id, outcome) {
            tracing::error!("live monitor: feedback for {decision_id}: {e}");
        }
    }

    /// The window's report.
    pub fn report(&self) -> std::result::Result<LiveReport, String> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.report().map_err(|e| e.to_string())
    }

    /// Sets the fairness and drift gauges from the window (called when
    /// `/metrics` is rendered). Labels: spec names and feature names, both
    /// bounded by the configuration.
    pub fn publish(&self) {
        let Ok(r) = self.report() else { return };
        use crate::metrics as m;
        metrics::gauge!(m::WINDOW_ROWS).set(r.rows as f64);
        metrics::gauge!(m::WINDOW_FEEDBACK_ROWS).set(r.feedback_rows as f64);
        metrics::gauge!(m::BREACHED).set(r.breached.len() as f64);
        let gauge = |name: &'static str, spec: &str, v: Option<f64>| {
            if let Some(v) = v {
                metrics::gauge!(name, "spec" => spec.to_string()).set(v);
            }
        };
        for s in &r.selection {
            gauge(m::DP_DIFFERENCE, &s.spec, s.demographic_parity_difference);
            gauge(m::DP_RATIO, &s.spec, s.demographic_parity_ratio);
            gauge(m::DISPARATE_IMPACT, &s.spec, s.disparate_impact);
        }
        for o in &r.outcomes {
            gauge(m::EO_DIFFERENCE, &o.spec, o.equalized_odds_difference);
            gauge(m::ACCURACY, &o.spec, o.accuracy);
        }
        if let Some(d) = &r.drift {
            metrics::gauge!(m::DRIFTED_FEATURES).set(d.drifted as f64);
            for f in &d.features {
                metrics::gauge!(m::DRIFT_SCORE, "feature" => f.feature.clone()).set(f.score);
            }
        }
    }
}

/// Logs and counts a breach starting or ending.
fn announce(e: &LiveEvent) {
    let kind = match e.kind {
        valor_fair::MonitorEventKind::Breached => "breached",
        valor_fair::MonitorEventKind::Recovered => "recovered",
    };
    metrics::counter!(crate::metrics::FAIRNESS_EVENTS, "kind" => kind).increment(1);
    tracing::warn!(
        metric = %e.metric,
        spec = e.spec.as_deref().unwrap_or("-"),
        value = e.value.unwrap_or(f64::NAN),
        limit = ?e.limit,
        rows_seen = e.rows_seen,
        "live monitor: {kind}"
    );
}
