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

/// Where request records go: the process log always; the decision log
/// (valor-ledger) with `--log-dir`.
///
/// What the decision log holds: every request to `/predict`, `/decide` and
/// `/feedback`, and every refused request (status 400 and above) to any
/// other route but `/health`, so that an access attempt with a bad key is
/// on record. Successful reads of `/info`, `/metrics`, `/fairness` and
/// `/openapi.json`, and `/health` (a liveness probe), are not decisions and
/// stay out. A request with several
/// texts is one record per text, all with its request id; a refusal is one
/// record with its status and error message; a `/feedback` outcome is a
/// feedback record.
#[derive(Debug, Default)]
pub struct RequestLog {
    ledger: Option<valor_ledger::Ledger>,
    log_inputs: bool,
    failed: std::sync::atomic::AtomicBool,
}

/// Routes whose every request is a decision-log record.
const DECISION_ROUTES: [&str; 3] = ["/predict", "/decide", "/feedback"];

impl RequestLog {
    /// Opens the decision log in `dir` (`None`: the process log only).
    pub fn open(dir: Option<&std::path::Path>, log_inputs: bool) -> crate::Result<Self> {
        let ledger = dir
            .map(|d| valor_ledger::Ledger::open(d, valor_ledger::LedgerConfig::default()))
            .transpose()
            .map_err(|e| crate::Error::Log(e.to_string()))?;
        if let Some(r) = ledger.as_ref().and_then(|l| l.recovered()) {
            tracing::warn!(
                "decision log: cut {} bytes of a torn record off {} at byte {} (a crash during a write)",
                r.bytes,
                r.file,
                r.offset
            );
        }
        Ok(Self {
            ledger,
            log_inputs,
            failed: Default::default(),
        })
    }

    /// Why the decision log can no longer record (a failed write), if so:
    /// the server then refuses requests rather than decide unrecorded.
    pub fn failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::SeqCst)
    }

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
        let Some(ledger) = &self.ledger else { return };
        let route = r.route.as_str();
        if !(DECISION_ROUTES.contains(&route) || (r.status >= 400 && route != "/health")) {
            return;
        }
        let started = std::time::Instant::now();
        self.append(ledger, r);
        metrics::histogram!(crate::metrics::LOG_APPEND_SECONDS)
            .record(started.elapsed().as_secs_f64());
    }

    /// Queues the request's entries for the writer; on a failed write,
    /// marks the log failed (see [`RequestLog::failed`]).
    fn append(&self, ledger: &valor_ledger::Ledger, r: RequestRecord) {
        for entry in self.entries(r) {
            let appended = match ledger.try_append(entry.clone()) {
                Err(valor_ledger::Error::QueueFull { .. }) => {
                    // Back-pressure: wait for the writer rather than drop a record.
                    tokio::task::block_in_place(|| ledger.append(entry))
                }
                other => other,
            };
            if let Err(e) = appended {
                if !self.failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    tracing::error!("decision log: {e}; refusing requests from now on");
                }
                return;
            }
        }
    }

    fn entries(&self, r: RequestRecord) -> Vec<valor_ledger::Entry> {
        let time = timestamp(r.time);
        let model_sha256 = r.model_sha256.clone().unwrap_or_default();
        if let Some(f) = r.feedback {
            return vec![valor_ledger::Entry::Feedback(valor_ledger::Feedback {
                time,
                request_id: r.request_id,
                key_id: r.key_id,
                status: r.status,
                decision_id: f.decision_id,
                outcome: f.outcome,
                error: r.error,
            })];
        }
        let base = valor_ledger::Decision {
            time,
            request_id: r.request_id,
            decision_id: None,
            key_id: r.key_id,
            route: r.route,
            status: r.status,
            model_sha256,
            input_sha256: None,
            text: None,
            input: None,
            groups: BTreeMap::new(),
            probabilities: None,
            label: None,
            rule: None,
            latency_ms: r.latency_ms,
            error: r.error,
        };
        if r.decisions.is_empty() {
            return vec![base.into()];
        }
        r.decisions
            .into_iter()
            .map(|d| {
                valor_ledger::Decision {
                    decision_id: d.decision_id,
                    input_sha256: Some(d.text_sha256),
                    text: self.log_inputs.then_some(d.text),
                    input: Some(valor_ledger::InputStats {
                        chars: d.input.chars,
                        tokens: d.input.tokens,
                        unknown_tokens: d.input.unknown_tokens,
                    }),
                    groups: d.groups,
                    probabilities: Some(valor_ledger::Probabilities::new(
                        &d.labels,
                        &d.probabilities,
                    )),
                    label: Some(d.label),
                    rule: Some(d.rule),
                    ..base.clone()
                }
                .into()
            })
            .collect()
    }

    /// Writes and syncs what is queued and closes the decision log; says
    /// where its chain ends (the head hash to keep elsewhere).
    pub fn close(&self) {
        if let Some(ledger) = &self.ledger {
            match ledger.close() {
                Ok(head) => tracing::info!(
                    "decision log {} closed: last record {}, hash {}",
                    ledger.dir().display(),
                    head.seq,
                    head.hash
                ),
                Err(e) => tracing::error!("decision log: closing failed: {e}"),
            }
        }
    }
}

fn timestamp(t: SystemTime) -> valor_ledger::Timestamp {
    let micros = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    };
    valor_ledger::Timestamp::from_unix_micros(micros)
}
