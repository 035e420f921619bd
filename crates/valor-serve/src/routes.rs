//! The router: middleware (request ids, timing, metrics and the request
//! record; draining; authentication, scopes and rate limits; body limits;
//! timeouts) and thin handlers that validate, hand typed jobs to the
//! [`Engine`](crate::engine::Engine) and map its answers to HTTP.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, oneshot};
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use valor_data::Encoded;
use valor_train::ThresholdsFile;

use crate::api::{
    ApiError, DecideRequest, DecideResponse, Decision, ErrorBody, ErrorNote, Explanation,
    FeedbackRequest, FeedbackResponse, Health, Inputs, LabelScore, PredictRequest, PredictResponse,
    WordAttribution,
};
use crate::engine::{Engine, Inference, Job, ModelInfo, RuleInput, SubmitError};
use crate::keys::{KeyStore, Scope, rate_limited};
use crate::log::{LoggedDecision, LoggedFeedback, RequestLog, RequestRecord};
use crate::metrics as m;

/// Request limits (TEI's flags).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Requests in flight at once; more are a 429.
    pub max_concurrent_requests: usize,
    /// Texts per request; more are a 413.
    pub max_client_batch_size: usize,
    /// Bytes per request body; more are a 413.
    pub payload_limit: usize,
    /// A request that takes longer is answered 408.
    pub request_timeout: Duration,
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct App {
    pub limits: Limits,
    /// `None`: authentication is off (loopback only, or --insecure-no-auth).
    pub keys: Option<RwLock<Arc<KeyStore>>>,
    pub engine: Engine,
    pub thresholds: Option<ThresholdsFile>,
    /// Group attributes a `/decide` input may carry.
    pub group_attributes: Vec<String>,
    pub draining: AtomicBool,
    pub permits: Arc<Semaphore>,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub decisions: Mutex<DecisionCache>,
    pub log: RequestLog,
    /// Random per start, so decision ids of two runs never collide.
    pub id_prefix: String,
    pub next_id: AtomicU64,
    pub version: &'static str,
    /// The model folder, as given.
    pub model_id: String,
    pub max_batch_tokens: usize,
    pub ig_steps: usize,
    /// The live monitor, once the model is loaded (none without group
    /// attributes).
    pub monitor: std::sync::OnceLock<crate::monitor::Monitor>,
    /// V_T of a remodelled folder (its `../remodel.json`), for `/info`.
    pub value_profile: Option<serde_json::Value>,
}

/// The last decisions, so that `/feedback` can find what was decided.
#[derive(Debug, Default)]
pub struct DecisionCache {
    capacity: usize,
    order: VecDeque<String>,
    map: HashMap<String, (String, BTreeMap<String, String>)>,
}

impl DecisionCache {
    /// Holds the last `capacity` decisions.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            ..Self::default()
        }
    }
    fn insert(&mut self, id: String, label: String, groups: BTreeMap<String, String>) {
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.map.remove(&old);
        }
        self.order.push_back(id.clone());
        self.map.insert(id, (label, groups));
    }
    fn get(&self, id: &str) -> Option<&(String, BTreeMap<String, String>)> {
        self.map.get(id)
    }
}

/// Who is calling: the key id and scopes, or nobody when auth is off.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: Option<String>,
    scopes: Option<std::collections::BTreeSet<Scope>>,
}

impl Caller {
    fn allows(&self, scope: Scope) -> bool {
        self.scopes
            .as_ref()
            .is_none_or(|s| s.contains(&scope) || s.contains(&Scope::Admin))
    }
}

/// The request's id (from `x-request-id`, or made here).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The API's paths: metric labels are these or `other`.
const ROUTES: [&str; 9] = [
    "/predict",
    "/decide",
    "/feedback",
    "/fairness",
    "/health",
    "/info",
    "/metrics",
    "/openapi.json",
    "/",
];

fn route_label(path: &str) -> &'static str {
    ROUTES.into_iter().find(|r| *r == path).unwrap_or("other")
}

/// The scope a path needs; `None` for public paths, `Some(None)` for any
/// valid key.
fn required_scope(path: &str) -> Option<Option<Scope>> {
    match path {
        "/health" | "/openapi.json" => None,
        "/predict" | "/decide" => Some(Some(Scope::Predict)),
        "/feedback" => Some(Some(Scope::Feedback)),
        "/fairness" | "/metrics" => Some(Some(Scope::AuditRead)),
        _ => Some(None),
    }
}

/// The router with every route and middleware.
pub fn router(app: Arc<App>) -> Router {
    let limit = app.limits.payload_limit;
    let timeout = app.limits.request_timeout;
    Router::new()
        .route("/predict", post(predict))
        .route("/decide", post(decide))
        .route("/feedback", post(feedback))
        .route("/fairness", get(fairness))
        .route("/health", get(health))
        .route("/info", get(info))
        .route("/metrics", get(render_metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), guard))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), observe))
        .with_state(app)
}

/// Outermost: request id, timing, metrics, the request record.
async fn observe(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let arrived = SystemTime::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| format!("r-{}-{}", app.id_prefix, app.next_id()));
    req.extensions_mut().insert(RequestId(id.clone()));
    let route = route_label(req.uri().path());
    let method = req.method().clone();
    let mut response = next.run(req).await;
    if response.status() == StatusCode::REQUEST_TIMEOUT
        && response.extensions().get::<ErrorNote>().is_none()
    {
        // tower-http's timeout answers with an empty body; ours name the cause.
        response = ApiError::timeout(format!(
            "no answer within {} s (--request-timeout)",
            app.limits.request_timeout.as_secs()
        ))
        .into_response();
    }
    let status = response.status();
    let elapsed = started.elapsed();
    metrics::counter!(m::REQUESTS, "route" => route, "status" => status.as_str().to_string())
        .increment(1);
    metrics::histogram!(m::REQUEST_SECONDS, "route" => route).record(elapsed.as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    let ext = response.extensions();
    let record = RequestRecord {
        time: arrived,
        request_id: id,
        key_id: ext.get::<Caller>().and_then(|c| c.key_id.clone()),
        route: route.to_string(),
        method: method.to_string(),
        status: status.as_u16(),
        latency_ms: elapsed.as_secs_f64() * 1e3,
        error: ext.get::<ErrorNote>().map(|e| e.0.clone()),
        model_sha256: app.engine.info().map(|i| i.model_sha256.clone()),
        decisions: ext
            .get::<Vec<LoggedDecision>>()
            .cloned()
            .unwrap_or_default(),
        feedback: ext.get::<LoggedFeedback>().cloned(),
    };
    app.log.record(record);
    response
}

/// Draining, authentication, scope, rate limit.
async fn guard(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if app.draining.load(Ordering::SeqCst) && path != "/health" {
        return ApiError::unavailable("the server is shutting down").into_response();
    }
    if app.log.failed() && path != "/health" {
        return ApiError::unavailable(
            "the decision log can no longer be written (see the server's log); \
             nothing is decided unrecorded",
        )
        .into_response();
    }
    let Some(scope) = required_scope(&path) else {
        return next.run(req).await;
    };
    let caller = match &app.keys {
        None => Caller {
            key_id: None,
            scopes: None,
        },
        Some(store) => {
            let store = Arc::clone(&store.read().unwrap_or_else(|e| e.into_inner()));
            let header = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let started = Instant::now();
            let authenticated = store.authenticate(header, SystemTime::now());
            metrics::histogram!(m::AUTH_SECONDS).record(started.elapsed().as_secs_f64());
            let key = match authenticated {
                Ok(k) => k,
                Err(refusal) => {
                    metrics::counter!(m::AUTH_REFUSED, "reason" => refusal.reason()).increment(1);
                    return ApiError::unauthorized(refusal.to_string()).into_response();
                }
            };
            let caller = Caller {
                key_id: Some(key.record.id.clone()),
                scopes: Some(key.record.scopes.clone()),
            };
            if let Some(s) = scope
                && !key.record.allows(s)
            {
                let mut r = ApiError::forbidden(format!(
                    "API key `{}` lacks the `{s}` scope that {path} needs (it has: {})",
                    key.record.id,
                    key.record
                        .scopes
                        .iter()
                        .map(|s| s.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .into_response();
                r.extensions_mut().insert(caller);
                return r;
            }
            if let Some(wait) = rate_limited(key) {
                metrics::counter!(m::RATE_LIMITED).increment(1);
                let mut r = ApiError::overloaded(
                    format!(
                        "API key `{}` is over its rate limit of {} requests per second",
                        key.record.id,
                        key.record.rate_limit_per_s.unwrap_or_default()
                    ),
                    wait.as_secs_f64().ceil() as u64,
                )
                .into_response();
                r.extensions_mut().insert(caller);
                return r;
            }
            caller
        }
    };
    req.extensions_mut().insert(caller.clone());
    let mut response = next.run(req).await;
    response.extensions_mut().insert(caller);
    response
}

impl App {
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The loaded model, or 503 while it loads.
    fn model(&self) -> Result<&ModelInfo, ApiError> {
        self.engine
            .info()
            .ok_or_else(|| ApiError::unavailable("the model is loading; retry shortly"))
    }

    fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.permits).try_acquire_owned().map_err(|_| {
            metrics::counter!(m::OVERLOADED).increment(1);
            ApiError::overloaded(
                format!(
                    "the server is full: {} requests in flight (--max-concurrent-requests)",
                    self.limits.max_concurrent_requests
                ),
                1,
            )
        })
    }

    fn check_batch(&self, n: usize) -> Result<(), ApiError> {
        if n == 0 {
            return Err(ApiError::empty("`inputs` is empty"));
        }
        if n > self.limits.max_client_batch_size {
            return Err(ApiError::too_large(format!(
                "{n} inputs, more than the {} a request may hold (--max-client-batch-size)",
                self.limits.max_client_batch_size
            )));
        }
        Ok(())
    }

    /// Tokenises on the blocking pool, queues the job and waits for the
    /// model thread's answer.
    async fn infer(
        &self,
        texts: Vec<String>,
        truncate: bool,
        rule: RuleInput,
        explain: bool,
    ) -> Result<(Vec<Encoded>, Vec<Inference>), ApiError> {
        let info = self.model()?;
        let tokenizer = if truncate {
            Arc::clone(&info.tokenizer)
        } else {
            Arc::clone(&info.untruncated)
        };
        let max_len = info.max_len;
        let encodings = tokio::task::spawn_blocking(move || tokenizer.encode_batch(&texts))
            .await
            .map_err(|e| ApiError::backend(format!("tokenisation stopped: {e}")))?
            .map_err(|e| ApiError::tokenizer(e.to_string()))?;
        if !truncate && let Some(i) = encodings.iter().position(|e| e.len() > max_len) {
            return Err(ApiError::too_large(format!(
                "input {i} is longer than the maximum input length of {max_len} tokens; send \
                 \"truncate\": true to truncate it"
            )));
        }
        let (tx, rx) = oneshot::channel();
        let job = Job {
            encodings: encodings.clone(),
            rule,
            explain,
            reply: tx,
            enqueued: Instant::now(),
        };
        self.engine.submit(job).map_err(|e| match e {
            SubmitError::Full => {
                metrics::counter!(m::OVERLOADED).increment(1);
                ApiError::overloaded("the model's queue is full", 1)
            }
            SubmitError::Stopped => ApiError::unavailable("the model has stopped"),
        })?;
        let answer = rx
            .await
            .map_err(|_| ApiError::unavailable("the model stopped before answering"))?
            .map_err(ApiError::backend)?;
        Ok((encodings, answer))
    }
}

/// Parses a JSON body: 413 past the payload limit, 400 for broken JSON,
/// 422 for JSON of the wrong shape (axum's mapping), each naming the cause.
struct JsonBody<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(format!(
                    "the request body is larger than the payload limit (--payload-limit): {}",
                    e.body_text()
                ))
            } else {
                ApiError::syntax(format!("cannot read the request body: {}", e.body_text()))
            }
        })?;
        if bytes.is_empty() {
            return Err(ApiError::empty("the request body is empty"));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            if e.is_data() {
                ApiError::invalid(format!("invalid request: {e}"))
            } else {
                ApiError::syntax(format!("the body is not valid JSON: {e}"))
            }
        })
    }
}

fn text_stats(info: &ModelInfo, text: &str, enc: &Encoded) -> crate::log::InputStats {
    crate::log::InputStats {
        chars: text.chars().count() as u64,
        tokens: enc.len() as u64,
        unknown_tokens: info
            .unk_id
            .map_or(0, |u| enc.ids.iter().filter(|&&i| i == u).count() as u64),
    }
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[utoipa::path(post, path = "/predict", request_body = PredictRequest,
    responses((status = 200, body = PredictResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = ["predict"])))]
async fn predict(
    State(app): State<Arc<App>>,
    JsonBody(body): JsonBody<PredictRequest>,
) -> Result<Response, ApiError> {
    let info = app.model()?;
    let (single, texts) = match body.inputs {
        Inputs::Single(t) => (true, vec![t]),
        Inputs::Batch(v) => (false, v),
    };
    app.check_batch(texts.len())?;
    let _permit = app.permit()?;
    let truncate = body.truncate.unwrap_or(true);
    let (encodings, answers) = app
        .infer(texts.clone(), truncate, RuleInput::Argmax, false)
        .await?;
    let mut logged = Vec::with_capacity(answers.len());
    let mut lists = Vec::with_capacity(answers.len());
    for ((a, text), enc) in answers.iter().zip(&texts).zip(&encodings) {
        let values = if body.raw_scores {
            &a.scores.logits
        } else {
            &a.scores.probabilities
        };
        let mut list: Vec<LabelScore> = info
            .labels
            .iter()
            .zip(values)
            .map(|(l, &s)| LabelScore {
                label: l.clone(),
                score: s,
            })
            .collect();
        list.sort_by(|a, b| b.score.total_cmp(&a.score));
        lists.push(list);
        logged.push(LoggedDecision {
            decision_id: None,
            client_id: None,
            text: text.clone(),
            text_sha256: sha256_hex(text),
            input: text_stats(info, text, enc),
            groups: BTreeMap::new(),
            labels: info.labels.clone(),
            probabilities: a.scores.probabilities.clone(),
            label: info.labels[a.label].clone(),
            rule: "argmax".into(),
        });
    }
    let body = if single {
        PredictResponse::Single(lists.remove(0))
    } else {
        PredictResponse::Batch(lists)
    };
    let mut response = Json(body).into_response();
    response.extensions_mut().insert(logged);
    Ok(response)
}

#[utoipa::path(post, path = "/decide", request_body = DecideRequest,
    responses((status = 200, body = DecideResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = ["predict", "explain"])))]
async fn decide(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<DecideRequest>,
) -> Result<Response, ApiError> {
    let info = app.model()?;
    app.check_batch(body.inputs.len())?;
    if body.explain {
        if !caller.allows(Scope::Explain) {
            return Err(ApiError::forbidden(format!(
                "API key `{}` lacks the `explain` scope that /decide with \"explain\": true needs",
                caller.key_id.as_deref().unwrap_or_default()
            )));
        }
        if !info.explain {
            return Err(ApiError::invalid(
                "this server does not explain (started with --no-explain)",
            ));
        }
    }
    for (i, input) in body.inputs.iter().enumerate() {
        if let Some(attr) = input
            .groups
            .keys()
            .find(|k| !app.group_attributes.contains(k))
        {
            return Err(ApiError::invalid(format!(
                "input {i}: unknown group attribute `{attr}`; this server knows: {}",
                if app.group_attributes.is_empty() {
                    "none (start it with --group NAME)".to_string()
                } else {
                    app.group_attributes.join(", ")
                }
            )));
        }
    }
    if let Some(m) = app.monitor.get() {
        for (i, input) in body.inputs.iter().enumerate() {
            if let Some(c) = m.columns().iter().find(|c| !input.groups.contains_key(*c)) {
                return Err(ApiError::invalid(format!(
                    "input {i}: no value for the group attribute `{c}`; the server monitors \
                     fairness over {}, so each input carries \"groups\": {{…}} with each",
                    m.columns().join(", ")
                )));
            }
        }
    }
    let rule = match &app.thresholds {
        None => RuleInput::Argmax,
        Some(t) => {
            let known = t.groups();
            let mut values = Vec::with_capacity(body.inputs.len());
            for (i, input) in body.inputs.iter().enumerate() {
                let Some(v) = input.groups.get(&t.group_column) else {
                    return Err(ApiError::invalid(format!(
                        "input {i}: the model's thresholds.json decides per group of \
                         `{column}`, so each input needs \"groups\": {{\"{column}\": …}}",
                        column = t.group_column
                    )));
                };
                if !known.contains(&v.as_str()) {
                    return Err(ApiError::invalid(format!(
                        "input {i}: unknown group `{v}` of `{}`; thresholds.json knows: {}",
                        t.group_column,
                        known.join(", ")
                    )));
                }
                values.push(v.clone());
            }
            RuleInput::Thresholds(values)
        }
    };
    let rule_name = match (&rule, &app.thresholds) {
        (RuleInput::Thresholds(_), Some(t)) => t.kind(),
        _ => "argmax",
    };
    let _permit = app.permit()?;
    let texts: Vec<String> = body.inputs.iter().map(|i| i.text.clone()).collect();
    let truncate = body.truncate.unwrap_or(true);
    let (encodings, answers) = app.infer(texts, truncate, rule, body.explain).await?;
    let mut decisions = Vec::with_capacity(answers.len());
    let mut logged = Vec::with_capacity(answers.len());
    for ((a, input), enc) in answers.into_iter().zip(body.inputs).zip(&encodings) {
        let decision_id = format!("d-{}-{}", app.id_prefix, app.next_id());
        let label = info.labels[a.label].clone();
        let probabilities = info
            .labels
            .iter()
            .zip(&a.scores.probabilities)
            .map(|(l, &p)| (l.clone(), serde_json::Value::from(p)))
            .collect();
        let explanation = a.explanation.map(|e| Explanation {
            method: "integrated_gradients".into(),
            target: label.clone(),
            steps: app.ig_steps,
            top_words: e.top_words(3),
            words: e
                .words
                .into_iter()
                .map(|w| WordAttribution {
                    word: w.word,
                    attribution: w.attribution,
                })
                .collect(),
            delta: e.delta,
        });
        metrics::counter!(m::DECISIONS, "label" => label.clone()).increment(1);
        app.decisions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(decision_id.clone(), label.clone(), input.groups.clone());
        logged.push(LoggedDecision {
            decision_id: Some(decision_id.clone()),
            client_id: input.id.clone(),
            text_sha256: sha256_hex(&input.text),
            input: text_stats(info, &input.text, enc),
            text: input.text,
            groups: input.groups,
            labels: info.labels.clone(),
            probabilities: a.scores.probabilities,
            label: label.clone(),
            rule: rule_name.into(),
        });
        decisions.push(Decision {
            decision_id,
            id: input.id,
            label,
            probabilities,
            rule: rule_name.into(),
            explanation,
        });
    }
    if let Some(m) = app.monitor.get() {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        m.observe(now, &logged);
    }
    let mut response = Json(DecideResponse { decisions }).into_response();
    response.extensions_mut().insert(logged);
    Ok(response)
}

#[utoipa::path(post, path = "/feedback", request_body = FeedbackRequest,
    responses((status = 200, body = FeedbackResponse), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = ["feedback"])))]
async fn feedback(
    State(app): State<Arc<App>>,
    JsonBody(body): JsonBody<FeedbackRequest>,
) -> Result<Response, ApiError> {
    let info = app.model()?;
    if !info.labels.contains(&body.outcome) {
        return Err(ApiError::invalid(format!(
            "outcome `{}` is not a label of the model; its labels are: {}",
            body.outcome,
            info.labels.join(", ")
        )));
    }
    let decided = {
        let cache = app.decisions.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(&body.id).map(|(label, _)| label.clone())
    };
    let Some(decided) = decided else {
        return Err(ApiError::not_found(format!(
            "no decision `{}` among this server's recent decisions",
            body.id
        )));
    };
    metrics::counter!(m::FEEDBACK).increment(1);
    if let Some(monitor) = app.monitor.get() {
        monitor.feedback(&body.id, &body.outcome);
    }
    let mut response = Json(FeedbackResponse {
        id: body.id.clone(),
        outcome: body.outcome.clone(),
        decided,
    })
    .into_response();
    response.extensions_mut().insert(LoggedFeedback {
        decision_id: body.id,
        outcome: body.outcome,
    });
    Ok(response)
}

#[utoipa::path(get, path = "/health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn health(State(app): State<Arc<App>>) -> Response {
    let (code, status) = if app.draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if app.log.failed() {
        (StatusCode::SERVICE_UNAVAILABLE, "decision_log_failed")
    } else if app.engine.info().is_none() {
        (StatusCode::SERVICE_UNAVAILABLE, "loading")
    } else {
        (StatusCode::OK, "ok")
    };
    (
        code,
        Json(Health {
            status: status.into(),
        }),
    )
        .into_response()
}

#[utoipa::path(get, path = "/info",
    responses((status = 200, description = "TEI's /info fields, plus model_sha256, labels, thresholds, group_attributes, explain, and the value profile V_T of a remodelled folder")),
    security(("api_key" = [])))]
async fn info(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let info = app.model()?;
    let id2label: serde_json::Map<String, serde_json::Value> = info
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), l.clone().into()))
        .collect();
    let label2id: serde_json::Map<String, serde_json::Value> = info
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), i.into()))
        .collect();
    let body = serde_json::json!({
        "model_id": app.model_id,
        "model_sha": info.model_sha256,
        "model_sha256": info.model_sha256,
        "model_dtype": match info.precision {
            valor_bert::Precision::Fp32 => "float32",
            valor_bert::Precision::Bf16 => "bfloat16",
            valor_bert::Precision::F16 => "float16",
            valor_bert::Precision::Int8 => "int8",
        },
        "model_type": {"classifier": {"id2label": id2label, "label2id": label2id}},
        "max_concurrent_requests": app.limits.max_concurrent_requests,
        "max_input_length": info.max_len,
        "max_batch_tokens": app.max_batch_tokens,
        "max_client_batch_size": app.limits.max_client_batch_size,
        "payload_limit": app.limits.payload_limit,
        "version": app.version,
        "labels": info.labels,
        "architecture": info.model_type,
        "thresholds": app.thresholds,
        "group_attributes": app.group_attributes,
        "explain": info.explain,
        "value_profile": app.value_profile,
    });
    Ok(Json(body).into_response())
}

#[utoipa::path(get, path = "/fairness",
    responses((status = 200, description = "The live window (schema valor.monitor.window/1): selection rates by group, demographic parity, equalized odds and accuracy from feedback, the valor.fair.audit/1 audits, drift against --reference, thresholds breached"),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = ["audit:read"])))]
async fn fairness(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    app.model()?;
    let Some(monitor) = app.monitor.get() else {
        return Err(ApiError::invalid(
            "no live monitor: start the server with --group NAME (or serve a model folder \
             with thresholds.json) to monitor fairness over a group attribute",
        ));
    };
    let report = monitor.report().map_err(ApiError::backend)?;
    Ok(Json(report).into_response())
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, body = String)),
    security(("api_key" = ["audit:read"])))]
async fn render_metrics(State(app): State<Arc<App>>) -> Response {
    if let Some(monitor) = app.monitor.get() {
        monitor.publish();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {}; routes: POST /predict, /decide, /feedback; GET /fairness, /health, \
         /info, /metrics, /openapi.json",
        req.method(),
        req.uri().path()
    ))
}

/// The OpenAPI document of `GET /openapi.json`.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "valor serve", description = "A Valor model folder over HTTP: TEI-compatible /predict, fair decisions with explanations, feedback, live fairness."),
    paths(predict, decide, feedback, fairness, health, info, render_metrics),
    components(schemas(PredictRequest, Inputs, PredictResponse, LabelScore, DecideRequest,
        crate::api::DecideInput, DecideResponse, Decision, Explanation, WordAttribution,
        FeedbackRequest, FeedbackResponse, Health, ErrorBody)),
    modifiers(&SecurityAddon)
)]
pub struct ApiDoc;

#[derive(Debug)]
struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("valor_<id>_<secret>")
                    .build(),
            ),
        );
    }
}
