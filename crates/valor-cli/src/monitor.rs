//! `valor monitor`: replays a decision log through the live monitor that
//! `valor serve` runs (`valor_fair::LiveMonitor`), window by window, and
//! renders fairness and drift over time as JSON or an HTML page of inline
//! SVG charts. Anyone holding the log reproduces what the server reported.
//!
//! What is replayed: `decision` records that made a decision (status 200,
//! a decision id, a label and probabilities), in log order, and `feedback`
//! records (status 200), joined to their decision while it is in the
//! window. Refusals and the writer's own records are counted as skipped.
//! The chain is checked as the log is read: a broken chain is an error
//! (run `valor log verify`), a torn final record a warning.
//!
//! Exit 1 when a declared threshold (`--max-dp-difference`, …) was breached
//! in some window; drift alone does not change the exit code.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use valor_fair::{
    AuditConfig, LiveConfig, LiveMonitor, MonitorEventKind, MonitorTimeline, Observation, Window,
};
use valor_ledger::{Entry, LedgerReader};

use crate::Outcome;
use crate::common::MonitorFlags;

#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// The decision log folder (`valor serve --log-dir`).
    #[arg(long, value_name = "DIR")]
    pub log_dir: PathBuf,
    #[command(flatten)]
    pub live: MonitorFlags,
    /// Report a window every N decisions (default: --window).
    #[arg(long, value_name = "N")]
    pub every: Option<u64>,
    /// Group attributes to audit (repeatable; default: those of the first
    /// decision).
    #[arg(long = "group", value_name = "NAME")]
    pub groups: Vec<String>,
    /// Privileged group for AIF360's metrics, as `attribute=value`.
    #[arg(long, value_name = "ATTR=VALUE")]
    pub privileged: Vec<String>,
    /// The positive (favourable) label of a binary model (default: 1, true,
    /// or the second label).
    #[arg(long, value_name = "LABEL")]
    pub positive: Option<String>,
    /// Drift events are checked every N decisions (the server's default).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub drift_every: u64,
    /// Output file: `.json` (`valor.monitor.timeline/1`) or `.html`.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// A decision record as the monitor sees it, or why it is skipped.
fn observation(
    d: &valor_ledger::Decision,
    groups: &[String],
) -> std::result::Result<Observation, &'static str> {
    if d.status != 200 {
        return Err("refused requests");
    }
    let (Some(id), Some(label), Some(p)) = (&d.decision_id, &d.label, &d.probabilities) else {
        return Err("decision records without a decision");
    };
    let mut g = Vec::with_capacity(groups.len());
    for name in groups {
        match d.groups.get(name) {
            Some(v) => g.push(v.clone()),
            None => return Err("decisions without every group attribute"),
        }
    }
    Ok(Observation {
        id: id.clone(),
        time_s: d.time.unix_seconds(),
        groups: g,
        label: label.clone(),
        probabilities: p.values(),
        text_chars: d.input.map(|s| s.chars as f64),
        unknown_rate: d.input.map(|s| s.unknown_rate()),
    })
}

/// The configuration `args` describe, for a model with `labels` and
/// `groups`.
fn live_config(a: &MonitorArgs, labels: Vec<String>, groups: Vec<String>) -> Result<LiveConfig> {
    let mut config = LiveConfig::new(labels, groups, a.live.window);
    if let Some(s) = a.live.window_seconds {
        config.window = Window::Span {
            seconds: s,
            max_rows: a.live.window,
        };
        config.min_rows = 1;
    }
    config.min_feedback_rows = a.live.min_feedback;
    config.check_every = 1;
    config.drift_every = a.drift_every;
    let mut audit = AuditConfig::default();
    audit.positive_label = a.positive.clone();
    for p in &a.privileged {
        let (spec, value) = p
            .split_once('=')
            .with_context(|| format!("--privileged `{p}`: expected attribute=value"))?;
        audit = audit.privilege(spec, value);
    }
    audit.thresholds.extend(a.live.thresholds());
    config.audit = audit;
    Ok(config)
}

/// Replays the log of `a` into a timeline.
pub fn replay(a: &MonitorArgs) -> Result<MonitorTimeline> {
    let every = a.every.unwrap_or(a.live.window as u64).max(1);
    let window = match a.live.window_seconds {
        Some(s) => Window::Span {
            seconds: s,
            max_rows: a.live.window,
        },
        None => Window::Count(a.live.window),
    };
    let mut timeline = MonitorTimeline::new(&a.log_dir.display().to_string(), window, every);
    let reader = LedgerReader::open(&a.log_dir)
        .with_context(|| format!("reading the decision log {}", a.log_dir.display()))?;
    let mut monitor: Option<LiveMonitor> = None;
    let mut groups = a.groups.clone();
    for rec in reader {
        let rec = match rec {
            Ok(r) => r,
            Err(valor_ledger::Error::TornTail(t)) => {
                eprintln!("warning: {t}");
                break;
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "reading the decision log {} (run `valor log verify` on it)",
                        a.log_dir.display()
                    )
                });
            }
        };
        let at = || format!("{}, line {}", rec.file.display(), rec.line);
        match &rec.entry {
            Entry::Decision(d) => {
                if monitor.is_none()
                    && d.status == 200
                    && let Some(p) = &d.probabilities
                {
                    if groups.is_empty() {
                        groups = d.groups.keys().cloned().collect();
                    }
                    if groups.is_empty() {
                        bail!(
                            "{}: the first decision carries no group attribute, so there is nothing to audit",
                            at()
                        );
                    }
                    let labels: Vec<String> = p.labels().map(str::to_owned).collect();
                    // read as `valor serve --reference` reads it
                    let reference = match &a.live.reference {
                        Some(path) => {
                            Some(valor_serve::monitor::load_reference(path).with_context(|| {
                                format!("reading the reference {}", path.display())
                            })?)
                        }
                        None => None,
                    };
                    let config = live_config(a, labels, groups.clone())?;
                    monitor = Some(LiveMonitor::new(config, reference)?);
                }
                let Some(m) = monitor.as_mut() else {
                    timeline.skip(if d.status != 200 {
                        "refused requests"
                    } else {
                        "decision records without a decision"
                    });
                    continue;
                };
                match observation(d, &groups) {
                    Ok(o) => {
                        let events = m.observe(o).with_context(at)?;
                        timeline.events.extend(events);
                        timeline.decisions += 1;
                        let ready = match window {
                            Window::Count(n) => m.window_len() >= n,
                            Window::Span { .. } => true,
                        };
                        if ready && m.rows_seen().is_multiple_of(every) {
                            timeline.push_window(m.report().with_context(at)?);
                        }
                    }
                    Err(reason) => timeline.skip(reason),
                }
            }
            Entry::Feedback(f) => {
                let Some(m) = monitor.as_mut() else {
                    timeline.skip("records before the first decision");
                    continue;
                };
                if f.status != 200 {
                    timeline.skip("refused feedback");
                    continue;
                }
                timeline.feedback += 1;
                if m.feedback(&f.decision_id, &f.outcome).with_context(at)?
                    == valor_fair::FeedbackMatch::NotInWindow
                {
                    timeline.feedback_not_in_window += 1;
                }
            }
            _ => timeline.skip("open and segment records"),
        }
    }
    let Some(m) = monitor else {
        bail!(
            "{} holds no decision to monitor (no record with status 200 and probabilities)",
            a.log_dir.display()
        );
    };
    if m.window_len() > 0 {
        let last = m.report()?;
        let already = timeline
            .windows
            .last()
            .is_some_and(|w| w.rows_seen == last.rows_seen);
        if !already {
            timeline.push_window(last.clone());
        }
        timeline.last = Some(last);
    }
    Ok(timeline)
}

pub fn run(a: MonitorArgs) -> Result<Outcome> {
    let html = match a.out.extension().and_then(|e| e.to_str()) {
        Some("html") => true,
        Some("json") => false,
        _ => bail!(
            "--out {}: the report is written as .json or .html",
            a.out.display()
        ),
    };
    let timeline = replay(&a)?;
    let bytes = if html {
        timeline.to_html()
    } else {
        timeline.to_json_pretty()?
    };
    valor_fair::write_atomic(&a.out, bytes.as_bytes())
        .with_context(|| format!("writing {}", a.out.display()))?;
    let breaches = timeline
        .events
        .iter()
        .filter(|e| e.kind == MonitorEventKind::Breached && !e.metric.starts_with("drift."))
        .count();
    let drifts = timeline
        .events
        .iter()
        .filter(|e| e.kind == MonitorEventKind::Breached && e.metric.starts_with("drift."))
        .count();
    eprintln!(
        "{} decisions, {} feedback, {} windows; {breaches} threshold breaches, {drifts} drift onsets; wrote {}",
        timeline.decisions,
        timeline.feedback,
        timeline.windows.len(),
        a.out.display()
    );
    Ok(if breaches > 0 {
        Outcome::TargetMissed
    } else {
        Outcome::Ok
    })
}
