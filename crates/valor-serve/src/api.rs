//! The HTTP API's request and response bodies (serde, with OpenAPI schemas)
//! and its error answer.
//!
//! `/predict` is text-embeddings-inference's: `{"inputs": str | [str],
//! "truncate"?, "raw_scores"?}` answered, per input, by every label with its
//! score sorted by score (a single string gets one list, a list of strings
//! a list of lists). Errors are TEI's `{"error": …, "error_type": …}` with
//! TEI's status codes, plus 401/403/404.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /predict` (TEI's request).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    /// One text, or a list of texts.
    pub inputs: Inputs,
    /// Truncate texts longer than the maximum input length (default true,
    /// as `valor predict` does); with `false` such a text is a 413.
    #[serde(default)]
    pub truncate: Option<bool>,
    /// Logits instead of softmax probabilities.
    #[serde(default)]
    pub raw_scores: bool,
}

/// One text or a batch of texts.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Inputs {
    /// One text.
    Single(String),
    /// Several texts.
    Batch(Vec<String>),
}

/// A label and its score.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LabelScore {
    pub label: String,
    pub score: f64,
}

/// `POST /predict`'s answer: one list for a single text, a list of lists
/// for a batch; each list sorted by score, highest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PredictResponse {
    Single(Vec<LabelScore>),
    Batch(Vec<Vec<LabelScore>>),
}

/// `POST /decide`: texts with their groups, decided by the model folder's
/// rule (thresholds.json) as `valor predict` decides them.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideRequest {
    /// The texts to decide.
    pub inputs: Vec<DecideInput>,
    /// Add integrated-gradients attributions and the top words (needs the
    /// `explain` scope).
    #[serde(default)]
    pub explain: bool,
    /// As in `/predict` (default true).
    #[serde(default)]
    pub truncate: Option<bool>,
}

/// One text to decide.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideInput {
    /// The text.
    pub text: String,
    /// Group attribute → value (e.g. `{"gender": "female"}`); a model
    /// folder with thresholds.json needs the group its rule reads.
    #[serde(default)]
    pub groups: BTreeMap<String, String>,
    /// The caller's own id for this input, echoed back and logged.
    #[serde(default)]
    pub id: Option<String>,
}

/// `POST /decide`'s answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DecideResponse {
    /// One decision per input, in input order.
    pub decisions: Vec<Decision>,
}

/// One decision.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Decision {
    /// The server's id of this decision (for `/feedback` and the log).
    pub decision_id: String,
    /// The caller's id, when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The decided label.
    pub label: String,
    /// The model's class probabilities, label → probability, in the
    /// model's label order.
    #[schema(value_type = Object)]
    pub probabilities: serde_json::Map<String, serde_json::Value>,
    /// Which rule chose the label: `thresholds` or `class_offsets` (the
    /// model folder's thresholds.json), or `argmax`.
    pub rule: String,
    /// With `"explain": true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
}

/// Why the model leaned towards the decided label.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Explanation {
    /// `integrated_gradients`.
    pub method: String,
    /// The label explained (the decided one).
    pub target: String,
    /// Integration points (Gauss-Legendre).
    pub steps: usize,
    /// Every word with its attribution to `target`, in text order.
    pub words: Vec<WordAttribution>,
    /// The words that pushed the decision most, strongest first.
    pub top_words: Vec<String>,
    /// Captum's convergence delta.
    pub delta: f64,
}

/// One word's attribution.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WordAttribution {
    pub word: String,
    pub attribution: f64,
}

/// `POST /feedback`: the true outcome of an earlier decision.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// A `decision_id` from `/decide`.
    pub id: String,
    /// The true label.
    pub outcome: String,
}

/// `POST /feedback`'s answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FeedbackResponse {
    pub id: String,
    pub outcome: String,
    /// The label the server decided.
    pub decided: String,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `loading`, `draining` or `decision_log_failed`.
    pub status: String,
}

/// Every error answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, naming the field, input or limit.
    pub error: String,
    /// `empty`, `validation`, `tokenizer`, `overloaded`, `unhealthy`,
    /// `backend`, `timeout`, `unauthorized`, `forbidden`, `not_found`.
    pub error_type: String,
}

/// An error answer: status, kind, message and, for 429, when to retry.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    /// Seconds, for the `Retry-After` header.
    pub retry_after: Option<u64>,
}

/// The error message of an answer, kept in the response's extensions so the
/// request log can record it.
#[derive(Debug, Clone)]
pub struct ErrorNote(pub String);

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
    /// 400: nothing to do.
    pub fn empty(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "empty", message)
    }
    /// 400: a body that is not JSON.
    pub fn syntax(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "validation", message)
    }
    /// 413: too many inputs, a body or an input too large.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "validation", message)
    }
    /// 422: a well-formed request that cannot be served as asked.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", message)
    }
    /// 422: the tokenizer refused a text.
    pub fn tokenizer(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "tokenizer", message)
    }
    /// 429 with `Retry-After`.
    pub fn overloaded(message: impl Into<String>, retry_after_s: u64) -> Self {
        Self {
            retry_after: Some(retry_after_s.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", message)
        }
    }
    /// 503: loading or draining.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unhealthy", message)
    }
    /// 424: the model failed on a well-formed request.
    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FAILED_DEPENDENCY, "backend", message)
    }
    /// 408: the request took longer than the server's timeout.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "timeout", message)
    }
    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message.clone(),
            error_type: self.kind.to_string(),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"valor\""),
            );
        }
        response.extensions_mut().insert(ErrorNote(self.message));
        response
    }
}
