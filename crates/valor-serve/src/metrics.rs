//! Prometheus metrics, rendered on the authenticated `GET /metrics`.
//!
//! Label values are bounded: the route (one of the API's paths, or
//! `other`), the status code, a refusal reason. Nothing per request, per
//! key or per user (TEI#271), and never a key or secret.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Requests answered, by `route` and `status`.
pub const REQUESTS: &str = "valor_requests_total";
/// Seconds from request to answer, by `route`.
pub const REQUEST_SECONDS: &str = "valor_request_duration_seconds";
/// Requests refused by authentication, by `reason`.
pub const AUTH_REFUSED: &str = "valor_auth_refused_total";
/// Seconds to authenticate a request's key (parse, SHA-256, constant-time
/// comparison, expiry): the request-path cost of `--keys`.
pub const AUTH_SECONDS: &str = "valor_auth_duration_seconds";
/// Seconds to hand a request's records to the decision log's writer: the
/// request-path cost of `--log-dir` (the writer serialises, chains and
/// syncs on its own thread).
pub const LOG_APPEND_SECONDS: &str = "valor_decision_log_append_duration_seconds";
/// Requests refused by a key's rate limit.
pub const RATE_LIMITED: &str = "valor_rate_limited_total";
/// Requests refused because the server was full.
pub const OVERLOADED: &str = "valor_overloaded_total";
/// Jobs waiting for the model thread.
pub const QUEUE_DEPTH: &str = "valor_queue_depth";
/// Seconds a job waited in the queue.
pub const QUEUE_SECONDS: &str = "valor_queue_duration_seconds";
/// Texts per forward pass.
pub const BATCH_SIZE: &str = "valor_batch_size";
/// Seconds per forward pass.
pub const INFERENCE_SECONDS: &str = "valor_inference_duration_seconds";
/// Seconds per integrated-gradients explanation.
pub const EXPLAIN_SECONDS: &str = "valor_explain_duration_seconds";
/// Jobs dropped before inference because their client went away.
pub const DROPPED: &str = "valor_dropped_requests_total";
/// Texts decided, by `label` (labels come from the model: bounded).
pub const DECISIONS: &str = "valor_decisions_total";
/// Feedback outcomes received.
pub const FEEDBACK: &str = "valor_feedback_total";
/// Decisions in the live monitor's window.
pub const WINDOW_ROWS: &str = "valor_window_decisions";
/// Of those, decisions whose outcome came back.
pub const WINDOW_FEEDBACK_ROWS: &str = "valor_window_feedback_decisions";
/// Fairness thresholds breached now.
pub const BREACHED: &str = "valor_fairness_breached";
/// fairlearn's demographic-parity difference of the window, by `spec`.
pub const DP_DIFFERENCE: &str = "valor_demographic_parity_difference";
/// fairlearn's demographic-parity ratio of the window, by `spec`.
pub const DP_RATIO: &str = "valor_demographic_parity_ratio";
/// AIF360's disparate impact of the window, by `spec`.
pub const DISPARATE_IMPACT: &str = "valor_disparate_impact";
/// fairlearn's equalized-odds difference of the decisions with feedback.
pub const EO_DIFFERENCE: &str = "valor_equalized_odds_difference";
/// Accuracy of the decisions with feedback, by `spec`.
pub const ACCURACY: &str = "valor_feedback_accuracy";
/// Features that drift from the reference.
pub const DRIFTED_FEATURES: &str = "valor_drifted_features";
/// Each feature's drift score (p-value or distance), by `feature`.
pub const DRIFT_SCORE: &str = "valor_drift_score";
/// Breaches starting (`kind="breached"`) and ending (`recovered`).
pub const FAIRNESS_EVENTS: &str = "valor_fairness_events_total";
/// Alerts to `--alert-webhook`, by `result` (sent, failed, dropped).
pub const ALERTS: &str = "valor_alerts_total";
/// Whether the model is loaded (1) or not (0).
pub const READY: &str = "valor_ready";

/// The process's Prometheus recorder (installed once, on first use).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder installed first (an embedding program's)
            // keeps receiving; ours then renders nothing.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(REQUESTS, "Requests answered, by route and status.");
    describe_histogram!(REQUEST_SECONDS, "Seconds from request to answer, by route.");
    describe_counter!(
        AUTH_REFUSED,
        "Requests refused by authentication, by reason."
    );
    describe_histogram!(AUTH_SECONDS, "Seconds to authenticate a request's key.");
    describe_histogram!(
        LOG_APPEND_SECONDS,
        "Seconds to queue a request's records for the decision log's writer."
    );
    describe_counter!(RATE_LIMITED, "Requests refused by a key's rate limit.");
    describe_counter!(OVERLOADED, "Requests refused because the server was full.");
    describe_gauge!(QUEUE_DEPTH, "Jobs waiting for the model thread.");
    describe_histogram!(QUEUE_SECONDS, "Seconds a job waited in the queue.");
    describe_histogram!(BATCH_SIZE, "Texts per forward pass.");
    describe_histogram!(INFERENCE_SECONDS, "Seconds per forward pass.");
    describe_histogram!(
        EXPLAIN_SECONDS,
        "Seconds per integrated-gradients explanation."
    );
    describe_counter!(
        DROPPED,
        "Jobs dropped before inference: the client went away."
    );
    describe_counter!(DECISIONS, "Texts decided, by label.");
    describe_counter!(FEEDBACK, "Feedback outcomes received.");
    describe_gauge!(
        READY,
        "1 when the model is loaded and the server is not draining."
    );
    describe_gauge!(WINDOW_ROWS, "Decisions in the live monitor's window.");
    describe_gauge!(
        WINDOW_FEEDBACK_ROWS,
        "Decisions of the window whose outcome came back."
    );
    describe_gauge!(BREACHED, "Fairness thresholds breached now.");
    describe_gauge!(
        DP_DIFFERENCE,
        "Demographic-parity difference of the window (fairlearn), by spec."
    );
    describe_gauge!(
        DP_RATIO,
        "Demographic-parity ratio of the window (fairlearn), by spec."
    );
    describe_gauge!(
        DISPARATE_IMPACT,
        "Disparate impact of the window (AIF360), by spec."
    );
    describe_gauge!(
        EO_DIFFERENCE,
        "Equalized-odds difference of the decisions with feedback, by spec."
    );
    describe_gauge!(
        ACCURACY,
        "Accuracy of the decisions with feedback, by spec."
    );
    describe_gauge!(DRIFTED_FEATURES, "Features that drift from the reference.");
    describe_gauge!(
        DRIFT_SCORE,
        "Drift score per feature (p-value or distance)."
    );
    describe_counter!(FAIRNESS_EVENTS, "Fairness breaches starting and ending.");
    describe_counter!(ALERTS, "Alerts to --alert-webhook, by result.");
}
