//! `valor serve` and `valor keys` end to end: the real binary on
//! 127.0.0.1 port 0, a real HTTP client (ureq). Status codes by route and
//! scope, probabilities and decisions equal to `valor predict`'s, SIGHUP
//! revocation, SIGTERM drain, no secret in the server's output. Every wait
//! is bounded in count and time.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use valor_testkit::{Tolerance, assert_all_close};

use crate::predict::{TEXTS, tiny_model};
use crate::valor;

/// A running `valor serve`; stopped (SIGTERM, then SIGKILL) when dropped.
pub(crate) struct Served {
    child: Child,
    base: String,
}

impl Served {
    /// Starts `valor serve --model MODEL --addr 127.0.0.1:0 EXTRA…`, reads
    /// the address it prints and waits until `/health` says ok.
    pub(crate) fn start(model: &Path, extra: &[&str], stderr: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_valor"))
            .args(["serve", "--model", model.to_str().unwrap()])
            .args(["--addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(File::create(stderr).unwrap())
            .spawn()
            .expect("valor serve starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no address within 60 s: {}", read(stderr)));
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line `{line}`; stderr: {}", read(stderr)))
            .to_string();
        let served = Self { child, base };
        let started = Instant::now();
        loop {
            let (status, _, _) = served.get("/health", None);
            if status == 200 {
                break;
            }
            assert_eq!(status, 503, "health while loading");
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "not ready in 120 s: {}",
                read(stderr)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        served
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn get(&self, path: &str, key: Option<&str>) -> (u16, Option<String>, String) {
        let mut req = agent().get(self.url(path));
        if let Some(k) = key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        answer(req.call())
    }

    pub(crate) fn post(
        &self,
        path: &str,
        key: Option<&str>,
        body: &str,
    ) -> (u16, Option<String>, String) {
        let mut req = agent().post(self.url(path));
        if let Some(k) = key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        answer(req.content_type("application/json").send(body))
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name}");
    }

    /// SIGTERM, then the exit code (within 30 s).
    pub(crate) fn stop(mut self) -> i32 {
        self.signal("TERM");
        let started = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "valor serve did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// Status, `Retry-After`, body.
fn answer(
    r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> (u16, Option<String>, String) {
    let mut r = r.expect("the server answers");
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body = r.body_mut().read_to_string().unwrap();
    (r.status().as_u16(), retry, body)
}

pub(crate) fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Asserts an error answer: status, JSON body whose `error` contains `needle`.
fn assert_error(got: (u16, Option<String>, String), status: u16, needle: &str, what: &str) {
    let (code, _, body) = got;
    assert_eq!(code, status, "{what}: {body}");
    let v = json_of(&body);
    let msg = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {body}"));
    assert!(v["error_type"].is_string(), "{what}: {body}");
    assert!(msg.contains(needle), "{what}: `{needle}` not in {msg}");
}

/// `valor keys create --keys FILE --scopes SCOPES EXTRA…` → the key.
fn create_key(keys: &Path, scopes: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "keys",
        "create",
        "--keys",
        keys.to_str().unwrap(),
        "--scopes",
        scopes,
    ];
    args.extend(extra);
    let (code, stdout, stderr) = valor(&args);
    assert_eq!(code, 0, "{stderr}");
    let key = stdout.trim().to_string();
    assert!(
        key.starts_with("valor_") && key.len() == 6 + 16 + 1 + 64,
        "{key}"
    );
    key
}

fn key_id(key: &str) -> &str {
    &key[6..22]
}

fn secret(key: &str) -> &str {
    &key[23..]
}

/// [`TEXTS`] as a CSV file with a `text` column and, given `groups`, a
/// `gender` column.
fn texts_csv(path: &Path, groups: Option<&[&str]>) {
    let mut s = String::from(if groups.is_some() {
        "text,gender\n"
    } else {
        "text\n"
    });
    for (i, t) in TEXTS.iter().enumerate() {
        s.push_str(&format!("\"{}\"", t.replace('"', "\"\"")));
        if let Some(g) = groups {
            s.push_str(&format!(",{}", g[i]));
        }
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

/// `valor predict --model model --input input`: its JSON Lines output (at
/// `input` with the extension `jsonl`), one value a row.
fn predict_rows(model: &Path, input: &Path) -> Vec<Value> {
    let out = input.with_extension("jsonl");
    let (code, _, stderr) = crate::predict_file(model, input, &out, &[]);
    assert_eq!(code, 0, "{stderr}");
    read(&out).lines().map(json_of).collect()
}

/// A `/predict` answer's scores, row-major in `deny`, `approve` order.
/// `/decide` with `"explain": true` answers with word attributions (on the
/// server's f32 copy, whatever its precision); then the server stops
/// cleanly.
pub(crate) fn explains_then_stops(s: Served) {
    let body = json!({"inputs": [{"text": TEXTS[0]}], "explain": true}).to_string();
    let (code, _, body) = s.post("/decide", None, &body);
    assert_eq!(code, 200, "{body}");
    assert!(json_of(&body)["decisions"][0]["explanation"]["words"].is_array());
    assert_eq!(s.stop(), 0);
}

pub(crate) fn predict_scores(body: &str) -> Vec<f64> {
    json_of(body)
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|list| {
            let score = |l: &str| {
                list.as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x["label"] == l)
                    .unwrap()["score"]
                    .as_f64()
                    .unwrap()
            };
            [score("deny"), score("approve")]
        })
        .collect()
}

/// `valor predict`'s probabilities for [`TEXTS`], row-major.
pub(crate) fn predict_probs(dir: &Path, model: &Path) -> Vec<f64> {
    let input = dir.join("texts.csv");
    texts_csv(&input, None);
    predict_rows(model, &input)
        .iter()
        .flat_map(|v| {
            [
                v["p_deny"].as_f64().unwrap(),
                v["p_approve"].as_f64().unwrap(),
            ]
        })
        .collect()
}

#[test]
fn serve_answers_by_scope_and_matches_predict() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let keys = dir.path().join("keys.toml");
    let predict = create_key(&keys, "predict", &["--name", "app"]);
    let audit = create_key(&keys, "audit:read", &[]);
    let explain = create_key(&keys, "predict,explain", &[]);
    let feedback = create_key(&keys, "feedback", &["--expires", "30d"]);
    let limited = create_key(&keys, "predict", &["--rate-limit", "2"]);
    let admin = create_key(&keys, "admin", &[]);
    let all = [&predict, &audit, &explain, &feedback, &limited, &admin];
    let file = read(&keys);
    let (code, listed, _) = valor(&["keys", "list", "--keys", keys.to_str().unwrap()]);
    assert_eq!(code, 0);
    for k in all {
        assert!(!file.contains(secret(k)), "a secret is in the keys file");
        assert!(!listed.contains(secret(k)), "a secret is listed");
        assert!(listed.contains(key_id(k)), "{listed}");
    }

    let stderr = dir.path().join("serve.err");
    let args = [
        "--keys",
        keys.to_str().unwrap(),
        "--payload-limit",
        "20000",
        "--max-client-batch-size",
        "8",
        "--group",
        "gender",
        "--ig-steps",
        "8",
    ];
    let s = Served::start(&model, &args, &stderr);

    // Public routes.
    let (code, _, body) = s.get("/health", None);
    assert_eq!((code, json_of(&body)["status"].as_str()), (200, Some("ok")));
    let (code, _, body) = s.get("/openapi.json", None);
    assert_eq!(code, 200);
    let doc = json_of(&body);
    for p in ["/predict", "/decide", "/feedback", "/info", "/metrics"] {
        assert!(doc["paths"][p].is_object(), "{p} in openapi.json");
    }

    // 401 and 403, route by route.
    let one = r#"{"inputs": "the loan was approved"}"#;
    let decide = r#"{"inputs": [{"text": "stable job", "groups": {"gender": "f"}}]}"#;
    let forged = format!("valor_{}_{}", key_id(&predict), "0".repeat(64));
    assert_error(
        s.post("/predict", None, one),
        401,
        "missing API key",
        "no key",
    );
    assert_error(
        s.post("/predict", Some("abc"), one),
        401,
        "malformed",
        "malformed",
    );
    assert_error(
        s.post("/predict", Some(&forged), one),
        401,
        "unknown",
        "forged",
    );
    assert_error(
        s.post("/predict", Some(&audit), one),
        403,
        "predict",
        "audit key",
    );
    assert_error(
        s.post("/decide", Some(&feedback), decide),
        403,
        "predict",
        "decide",
    );
    assert_error(
        s.get("/metrics", Some(&predict)),
        403,
        "audit:read",
        "metrics",
    );
    assert_error(
        s.post(
            "/feedback",
            Some(&predict),
            r#"{"id": "x", "outcome": "deny"}"#,
        ),
        403,
        "feedback",
        "feedback",
    );
    assert_error(s.get("/info", None), 401, "missing", "info");
    let explained =
        r#"{"inputs": [{"text": "stable job", "groups": {"gender": "f"}}], "explain": true}"#;
    assert_error(
        s.post("/decide", Some(&predict), explained),
        403,
        "explain",
        "explain",
    );

    // 400, 413, 422.
    assert_error(
        s.post("/predict", Some(&predict), r#"{"inputs": []}"#),
        400,
        "empty",
        "[]",
    );
    assert_error(
        s.post("/predict", Some(&predict), ""),
        400,
        "empty",
        "no body",
    );
    assert_error(
        s.post("/predict", Some(&predict), "{"),
        400,
        "JSON",
        "broken JSON",
    );
    let nine = json!({"inputs": vec!["a"; 9]}).to_string();
    assert_error(
        s.post("/predict", Some(&predict), &nine),
        413,
        "--max-client-batch-size",
        "9",
    );
    let huge = json!({"inputs": "x ".repeat(15_000)}).to_string();
    assert_error(
        s.post("/predict", Some(&predict), &huge),
        413,
        "payload",
        "body",
    );
    let long = json!({"inputs": "debt ".repeat(200), "truncate": false}).to_string();
    assert_error(
        s.post("/predict", Some(&predict), &long),
        413,
        "tokens",
        "truncate",
    );
    assert_error(
        s.post("/predict", Some(&predict), r#"{"inputs": 5}"#),
        422,
        "invalid",
        "5",
    );
    let race = r#"{"inputs": [{"text": "a", "groups": {"race": "x"}}]}"#;
    assert_error(
        s.post("/decide", Some(&predict), race),
        422,
        "`race`",
        "unknown group",
    );
    assert_error(s.get("/nowhere", Some(&admin)), 404, "/nowhere", "404");

    // 200: /predict equals `valor predict` to 1e-6.
    let want = predict_probs(dir.path(), &model);
    let batch = json!({"inputs": TEXTS}).to_string();
    let (code, _, body) = s.post("/predict", Some(&predict), &batch);
    assert_eq!(code, 200, "{body}");
    for list in json_of(&body).as_array().unwrap() {
        assert!(
            list[0]["score"].as_f64().unwrap() >= list[1]["score"].as_f64().unwrap(),
            "sorted by score"
        );
    }
    let got = predict_scores(&body);
    assert_all_close(
        "/predict vs valor predict",
        &got,
        &want,
        Tolerance::abs(1e-6),
    );
    let (code, _, body) = s.post(
        "/predict",
        Some(&admin),
        &json!({"inputs": TEXTS[0]}).to_string(),
    );
    assert_eq!(code, 200);
    assert_eq!(
        json_of(&body).as_array().unwrap().len(),
        2,
        "one list: {body}"
    );

    // /decide with an explanation, then feedback on it.
    let texts: Vec<Value> = TEXTS
        .iter()
        .map(|t| json!({"text": t, "groups": {"gender": "f"}, "id": "c1"}))
        .collect();
    let body = json!({"inputs": texts, "explain": true}).to_string();
    let (code, _, answer) = s.post("/decide", Some(&explain), &body);
    assert_eq!(code, 200, "{answer}");
    let decisions = json_of(&answer)["decisions"].as_array().unwrap().clone();
    assert_eq!(decisions.len(), TEXTS.len());
    let mut got = Vec::new();
    for d in &decisions {
        assert_eq!(d["rule"], "argmax");
        assert_eq!(d["id"], "c1");
        let p = &d["probabilities"];
        got.extend([p["deny"].as_f64().unwrap(), p["approve"].as_f64().unwrap()]);
        let e = &d["explanation"];
        assert_eq!(e["target"], d["label"]);
        assert_eq!(e["method"], "integrated_gradients");
        assert!(!e["words"].as_array().unwrap().is_empty(), "{e}");
        assert!(!e["top_words"].as_array().unwrap().is_empty(), "{e}");
    }
    assert_all_close(
        "/decide vs valor predict",
        &got,
        &want,
        Tolerance::abs(1e-6),
    );
    let id = decisions[0]["decision_id"].as_str().unwrap();
    let fb = json!({"id": id, "outcome": "approve"}).to_string();
    let (code, _, body) = s.post("/feedback", Some(&feedback), &fb);
    assert_eq!(code, 200, "{body}");
    assert_eq!(json_of(&body)["decided"], decisions[0]["label"]);
    let bad = json!({"id": id, "outcome": "maybe"}).to_string();
    assert_error(
        s.post("/feedback", Some(&feedback), &bad),
        422,
        "maybe",
        "outcome",
    );
    let unknown = r#"{"id": "d-none", "outcome": "deny"}"#;
    assert_error(
        s.post("/feedback", Some(&feedback), unknown),
        404,
        "d-none",
        "unknown id",
    );

    // /info and /metrics.
    let (code, _, body) = s.get("/info", Some(&predict));
    assert_eq!(code, 200, "{body}");
    let info = json_of(&body);
    assert_eq!(info["labels"], json!(["deny", "approve"]));
    assert_eq!(info["model_sha256"].as_str().unwrap().len(), 64);
    let (code, _, metrics) = s.get("/metrics", Some(&audit));
    assert_eq!(code, 200);
    assert!(metrics.contains("valor_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"/predict\""), "{metrics}");
    assert!(metrics.contains("valor_auth_refused_total"), "{metrics}");
    // The request-path cost of --keys, timed per request.
    assert!(
        metrics.contains("valor_auth_duration_seconds{quantile=\"0.5\"}"),
        "{metrics}"
    );

    // 429 from a key's rate limit (2 per second), with Retry-After.
    let mut limited_seen = None;
    for _ in 0..10 {
        let got = s.post("/predict", Some(&limited), one);
        if got.0 == 429 {
            limited_seen = Some(got);
            break;
        }
        assert_eq!(got.0, 200, "{}", got.2);
    }
    let got = limited_seen.expect("the rate limit answered 429 within 10 requests");
    assert!(got.1.is_some(), "Retry-After");
    assert_error(got, 429, "rate limit", "rate limit");

    // Revocation takes effect on SIGHUP, without a restart.
    assert_eq!(s.post("/predict", Some(&predict), one).0, 200);
    let (code, _, err) = valor(&[
        "keys",
        "revoke",
        "--keys",
        keys.to_str().unwrap(),
        key_id(&predict),
    ]);
    assert_eq!(code, 0, "{err}");
    s.signal("HUP");
    let started = Instant::now();
    loop {
        let got = s.post("/predict", Some(&predict), one);
        if got.0 == 401 {
            assert_error(got, 401, "revoked", "revoked");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still accepted after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        s.post("/predict", Some(&admin), one).0,
        200,
        "other keys still work"
    );
    let (_, _, metrics) = s.get("/metrics", Some(&admin));

    assert_eq!(s.stop(), 0, "SIGTERM drains and exits 0");
    let log = read(&stderr);
    assert!(
        log.contains(key_id(&predict)),
        "the log names key ids: {log}"
    );
    for k in all {
        assert!(!log.contains(secret(k)), "a secret is in the server's log");
        assert!(!metrics.contains(secret(k)) && !metrics.contains(key_id(k)));
    }
}

#[test]
fn serve_decides_with_the_thresholds_as_predict_does() {
    use valor_fair::{
        Constraint, Cut, GroupRule, Objective, OrderedMap, THRESHOLD_SCHEMA, ThresholdOptimizer,
    };
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let probs = predict_probs(dir.path(), &model);
    // `f` approves with probability 1/2 (the seeded draws decide), `m`
    // above the median P(approve).
    let mut p1: Vec<f64> = probs.chunks(2).map(|p| p[1]).collect();
    p1.sort_by(f64::total_cmp);
    let cut = (p1[3] + p1[4]) / 2.0;
    let rule = |cuts: Vec<Cut>, constant: f64| GroupRule { cuts, constant };
    let groups: OrderedMap<GroupRule> = [
        ("f".to_string(), rule(vec![], 0.5)),
        (
            "m".to_string(),
            rule(
                vec![Cut {
                    above: Some(cut),
                    weight: 1.0,
                }],
                0.0,
            ),
        ),
    ]
    .into_iter()
    .collect();
    let file = valor_train::ThresholdsFile {
        schema: valor_train::THRESHOLDS_SCHEMA.into(),
        group_column: "gender".into(),
        seed: 11,
        post: valor_train::PostProcess::Thresholds(ThresholdOptimizer {
            schema: THRESHOLD_SCHEMA.into(),
            constraint: Constraint::DemographicParity,
            objective: Objective::Accuracy,
            grid_size: 10,
            target: [("selection_rate".to_string(), 0.5)].into_iter().collect(),
            objective_value: 0.5,
            groups,
            fit: OrderedMap::new(),
        }),
    };
    std::fs::write(
        model.join(valor_train::THRESHOLDS_FILE),
        serde_json::to_string(&file).unwrap(),
    )
    .unwrap();
    let gender: Vec<&str> = (0..TEXTS.len()).map(|i| ["f", "m", "m"][i % 3]).collect();

    // `valor predict` on the file…
    let input = dir.path().join("grouped.csv");
    texts_csv(&input, Some(&gender));
    let want: Vec<String> = predict_rows(&model, &input)
        .iter()
        .map(|v| v["label"].as_str().unwrap().to_string())
        .collect();

    // …and a fresh server deciding the same rows in one request, in order.
    let stderr = dir.path().join("serve.err");
    // As `valor remodel` leaves it: the model folder beside remodel.json.
    let profile = json!({"fairness": 0.93, "accuracy": 0.81});
    std::fs::write(
        dir.path().join("remodel.json"),
        json!({"vt": profile, "vd": {"fairness": 1.0}, "distance_vt_vd": 0.07, "reachable": true})
            .to_string(),
    )
    .unwrap();
    let served = Served::start(
        &model,
        &["--no-explain", "--window-seconds", "3600"],
        &stderr,
    );
    let (_, _, info) = served.get("/info", None);
    let info = json_of(&info);
    assert_eq!(info["value_profile"]["vt"], profile, "{info}");
    assert_eq!(info["thresholds"]["kind"], "thresholds");
    let missing = r#"{"inputs": [{"text": "a"}]}"#;
    assert_error(
        served.post("/decide", None, missing),
        422,
        "gender",
        "no group",
    );
    let unknown = r#"{"inputs": [{"text": "a", "groups": {"gender": "x"}}]}"#;
    assert_error(
        served.post("/decide", None, unknown),
        422,
        "`x`",
        "unknown group",
    );
    let explain = r#"{"inputs": [{"text": "a", "groups": {"gender": "f"}}], "explain": true}"#;
    assert_error(
        served.post("/decide", None, explain),
        422,
        "--no-explain",
        "no explain",
    );
    let inputs: Vec<Value> = TEXTS
        .iter()
        .zip(&gender)
        .map(|(t, g)| json!({"text": t, "groups": {"gender": g}}))
        .collect();
    let (code, _, body) = served.post("/decide", None, &json!({"inputs": inputs}).to_string());
    assert_eq!(code, 200, "{body}");
    let decisions = json_of(&body)["decisions"].as_array().unwrap().clone();
    let got: Vec<String> = decisions
        .iter()
        .map(|d| d["label"].as_str().unwrap().to_string())
        .collect();
    assert!(decisions.iter().all(|d| d["rule"] == "thresholds"));
    assert_eq!(
        got, want,
        "the same labels as valor predict, draws included"
    );
    let argmax: Vec<&str> = probs
        .chunks(2)
        .map(|p| if p[1] > p[0] { "approve" } else { "deny" })
        .collect();
    assert_ne!(got, argmax, "the rule, not argmax, decided");
    // The thresholds' group column is monitored, over a time window.
    let (code, _, body) = served.get("/fairness", None);
    assert_eq!(code, 200, "{body}");
    let live = json_of(&body);
    assert_eq!(
        live["window"],
        json!({"span": {"seconds": 3600.0, "max_rows": 1000}})
    );
    assert_eq!(live["rows"], TEXTS.len());
    assert_eq!(served.stop(), 0);
}

#[test]
fn serve_answers_429_when_full() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let stderr = dir.path().join("serve.err");
    let args = ["--max-concurrent-requests", "1", "--ig-steps", "400"];
    let s = Served::start(&model, &args, &stderr);
    // One slow request (explanations of 8 texts at 400 steps) holds the
    // only slot while others are refused.
    let texts: Vec<Value> = TEXTS.iter().map(|t| json!({"text": t})).collect();
    let slow = json!({"inputs": texts, "explain": true}).to_string();
    let url = s.url("/decide");
    let worker = std::thread::spawn(move || {
        // Retried if a probe below took the slot first (bounded).
        for _ in 0..50 {
            let got = answer(
                agent()
                    .post(&url)
                    .content_type("application/json")
                    .send(&slow),
            );
            if got.0 != 429 {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the slow request never got the slot");
    });
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    let mut refused = None;
    while refused.is_none() && !worker.is_finished() {
        assert!(started.elapsed() < Duration::from_secs(120));
        let got = s.post("/predict", None, r#"{"inputs": "a"}"#);
        if got.0 == 429 {
            refused = Some(got);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (code, _, body) = worker.join().unwrap();
    assert_eq!(code, 200, "{body}");
    let got = refused.expect("a request was refused while the slot was taken");
    assert_eq!(got.1.as_deref(), Some("1"), "Retry-After");
    assert_error(got, 429, "--max-concurrent-requests", "full");
    assert_eq!(s.post("/predict", None, r#"{"inputs": "a"}"#).0, 200);
    assert_eq!(s.stop(), 0);
}

#[test]
fn serve_refuses_a_public_address_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let (code, _, stderr) = valor(&[
        "serve",
        "--model",
        model.to_str().unwrap(),
        "--addr",
        "0.0.0.0:0",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--insecure-no-auth") && stderr.contains("--keys"),
        "{stderr}"
    );
    // A keys file that does not parse is an error before anything is served.
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, "[[key]]\nid = 1\n").unwrap();
    let (code, _, stderr) = valor(&[
        "serve",
        "--model",
        model.to_str().unwrap(),
        "--keys",
        keys.to_str().unwrap(),
        "--addr",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("keys.toml"), "{stderr}");
}

#[test]
fn keys_create_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    let k = create_key(
        &keys,
        "predict,audit:read",
        &["--rate-limit", "5", "--expires", "2h"],
    );
    let path = keys.to_str().unwrap();
    let (code, _, stderr) = valor(&["keys", "create", "--keys", path, "--scopes", "root"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("root") && stderr.contains("audit:read"),
        "{stderr}"
    );
    let (code, _, stderr) = valor(&[
        "keys",
        "create",
        "--keys",
        path,
        "--scopes",
        "predict",
        "--expires",
        "yesterday",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("yesterday"), "{stderr}");
    let (code, out, _) = valor(&["keys", "list", "--keys", path, "--json"]);
    assert_eq!(code, 0);
    let list = json_of(&out);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], key_id(&k));
    assert_eq!(list[0]["scopes"], json!(["predict", "audit:read"]));
    assert_eq!(list[0]["rate_limit_per_s"], 5);
    assert!(list[0]["expires"].is_string() && list[0]["revoked"].is_null());
    let (code, _, stderr) = valor(&["keys", "revoke", "--keys", path, "0123456789abcdef"]);
    assert_eq!(code, 2);
    assert!(stderr.contains(key_id(&k)), "names the known ids: {stderr}");
    let (code, _, _) = valor(&["keys", "revoke", "--keys", path, key_id(&k)]);
    assert_eq!(code, 0);
    let (_, out, _) = valor(&["keys", "list", "--keys", path, "--json"]);
    assert!(json_of(&out)[0]["revoked"].is_string());
    assert!(!read(&keys).contains(secret(&k)));
}

/// Every line of the decision log files in `dir`, parsed.
fn log_records(dir: &Path) -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| read(f).lines().map(json_of).collect::<Vec<_>>())
        .collect()
}

#[test]
fn serve_logs_every_request_in_a_chain_that_verifies_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let keys = dir.path().join("keys.toml");
    let key = create_key(&keys, "predict,feedback", &[]);
    let audit = create_key(&keys, "audit:read", &[]);
    let log = dir.path().join("log");
    let stderr = dir.path().join("serve.err");
    let args = [
        "--keys",
        keys.to_str().unwrap(),
        "--log-dir",
        log.to_str().unwrap(),
        "--group",
        "gender",
        "--no-explain",
    ];
    let s = Served::start(&model, &args, &stderr);
    let two = json!({"inputs": [TEXTS[0], TEXTS[1]]}).to_string();
    assert_eq!(s.post("/predict", Some(&key), &two).0, 200);
    let one = json!({"inputs": [{"text": TEXTS[2], "groups": {"gender": "f"}, "id": "c9"}]});
    let (code, _, body) = s.post("/decide", Some(&key), &one.to_string());
    assert_eq!(code, 200, "{body}");
    let decision = json_of(&body)["decisions"][0].clone();
    let fb = json!({"id": decision["decision_id"], "outcome": "deny"}).to_string();
    assert_eq!(s.post("/feedback", Some(&key), &fb).0, 200);
    assert_eq!(s.post("/predict", None, &two).0, 401);
    assert_eq!(s.get("/metrics", Some(&key)).0, 403);
    assert_eq!(s.get("/health", None).0, 200);
    let (_, _, info) = s.get("/info", Some(&key));
    let sha = json_of(&info)["model_sha256"].as_str().unwrap().to_string();
    // The request-path cost of --log-dir, timed per logged request (a
    // successful /metrics read is not a decision: not logged).
    let (code, _, metrics) = s.get("/metrics", Some(&audit));
    assert_eq!(code, 200);
    assert!(
        metrics.contains("valor_decision_log_append_duration_seconds{quantile=\"0.5\"}"),
        "{metrics}"
    );
    assert_eq!(s.stop(), 0);

    let report = valor_ledger::verify(&log).unwrap();
    assert!(report.ok(), "{:?}", report.failure);
    // 2 + 1 decided texts, 2 refusals, 1 feedback; /health and /info are not decisions.
    assert_eq!((report.decisions, report.feedback), (5, 1));
    let records = log_records(&log);
    let decided: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "decision" && r["status"] == 200)
        .collect();
    assert_eq!(decided.len(), 3);
    for r in &decided {
        assert_eq!(r["model_sha256"], sha.as_str());
        assert_eq!(r["key_id"], key_id(&key));
        assert!(r["input_sha256"].as_str().unwrap().len() == 64 && r["text"].is_null());
    }
    let d = decided[2];
    assert_eq!(d["decision_id"], decision["decision_id"]);
    assert_eq!(d["groups"], json!({"gender": "f"}));
    assert_eq!(d["label"], decision["label"]);
    assert_eq!(d["rule"], "argmax");
    assert_eq!(d["probabilities"], decision["probabilities"]);
    let refused: Vec<&Value> = records.iter().filter(|r| r["status"] == 401).collect();
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0]["error"]
            .as_str()
            .unwrap()
            .contains("missing API key")
    );
    let text = read(&log.join(report.files[0].file_name().unwrap()));
    assert!(!text.contains(secret(&key)), "a secret in the decision log");
    assert!(
        !text.contains(TEXTS[0]),
        "raw text logged without --log-inputs"
    );

    // SIGKILL under load, restart: the log still verifies and goes on.
    let before = report.records;
    let s = Served::start(&model, &args, &stderr);
    let url = s.url("/predict");
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (url, key) = (url.clone(), key.clone());
            std::thread::spawn(move || {
                let mut ok = 0;
                for _ in 0..200 {
                    let r = agent()
                        .post(&url)
                        .header("Authorization", format!("Bearer {key}"))
                        .content_type("application/json")
                        .send(r#"{"inputs": ["the loan was approved", "debt is high"]}"#);
                    match r {
                        Ok(r) if r.status() == 200 => ok += 1,
                        _ => break,
                    }
                }
                ok
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    s.signal("KILL");
    let served: u32 = load.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(served > 0, "no request was served before the kill");
    drop(s);
    let report = valor_ledger::verify(&log).unwrap();
    assert!(report.ok(), "after SIGKILL: {:?}", report.failure);
    assert!(
        report.records > before,
        "the killed run's records are there"
    );
    let s = Served::start(&model, &args, &stderr);
    assert_eq!(s.post("/predict", Some(&key), &two).0, 200);
    assert_eq!(s.stop(), 0);
    let after = valor_ledger::verify(&log).unwrap();
    assert!(after.ok(), "after the restart: {:?}", after.failure);
    assert!(after.records > report.records);
}

#[test]
fn serve_drops_requests_whose_client_left_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let stderr = dir.path().join("serve.err");
    let s = Served::start(&model, &["--ig-steps", "400"], &stderr);
    let texts: Vec<Value> = TEXTS.iter().map(|t| json!({"text": t})).collect();
    let slow = json!({"inputs": texts, "explain": true}).to_string();
    let slow_request = |url: String, body: String| {
        std::thread::spawn(move || {
            answer(
                agent()
                    .post(&url)
                    .content_type("application/json")
                    .send(&body),
            )
        })
    };
    // A slow request occupies the model thread; one queued behind it whose
    // client gives up after 50 ms is dropped, not computed.
    let first = slow_request(s.url("/decide"), slow.clone());
    std::thread::sleep(Duration::from_millis(50));
    let impatient = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_millis(50)))
        .build();
    let gave_up = ureq::Agent::from(impatient)
        .post(s.url("/predict"))
        .content_type("application/json")
        .send(r#"{"inputs": "the loan was approved"}"#);
    assert!(gave_up.is_err(), "the 50 ms client gave up");
    assert_eq!(first.join().unwrap().0, 200);
    let started = Instant::now();
    loop {
        let (_, _, metrics) = s.get("/metrics", None);
        if metrics.contains("valor_dropped_requests_total 1") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no dropped request counted: {metrics}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // SIGTERM while a request is in flight: it is answered, then the
    // server exits 0.
    let in_flight = slow_request(s.url("/decide"), slow);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(s.stop(), 0);
    let (code, _, body) = in_flight.join().unwrap();
    assert_eq!(code, 200, "the request in flight at SIGTERM: {body}");
    assert!(read(&stderr).contains("draining"));
}

/// `valor audit --json` on a CSV of (true label, decided label, gender).
fn audit_json(dir: &Path, name: &str, rows: &[(String, String, String)]) -> Value {
    let path = dir.join(name);
    let mut s = String::from("y_true,y_pred,gender\n");
    for (t, p, g) in rows {
        s.push_str(&format!("{t},{p},{g}\n"));
    }
    std::fs::write(&path, s).unwrap();
    let (code, stdout, stderr) = valor(&[
        "audit",
        "--predictions",
        path.to_str().unwrap(),
        "--label-col",
        "y_true",
        "--pred-col",
        "y_pred",
        "--group",
        "gender",
        "--labels",
        "deny,approve",
        "--positive",
        "approve",
        "--json",
    ]);
    assert!(code == 0 || code == 1, "{stderr}");
    json_of(&stdout)
}

#[test]
fn serve_fairness_equals_valor_audit_on_the_same_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    // Drift against `valor predict`'s output on the texts.
    predict_probs(dir.path(), &model);
    // (predict_rows writes it beside its input texts.csv)
    let reference = dir.path().join("texts.jsonl");
    // Class offsets that approve every `f` and deny every `m`: a
    // demographic-parity difference of 1, whatever the tiny model says.
    let offsets = valor_train::PostProcess::ClassOffsets(valor_fair::ClassOffsets {
        schema: valor_fair::OFFSETS_SCHEMA.into(),
        labels: vec!["deny".into(), "approve".into()],
        constraint: valor_fair::OffsetConstraint::DemographicParity,
        targets: vec![0.5, 0.5],
        offsets: [("f", vec![0.0, 2.0]), ("m", vec![2.0, 0.0])]
            .into_iter()
            .map(|(g, o)| (g.to_string(), o))
            .collect(),
        achieved: valor_fair::OrderedMap::new(),
    });
    let file = valor_train::ThresholdsFile {
        schema: valor_train::THRESHOLDS_SCHEMA.into(),
        group_column: "gender".into(),
        seed: 1,
        post: offsets,
    };
    std::fs::write(
        model.join(valor_train::THRESHOLDS_FILE),
        serde_json::to_string(&file).unwrap(),
    )
    .unwrap();
    // A webhook that takes what the server POSTs (bounded: 4 connections, 60 s).
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_url = format!("http://{}/alerts", hook.local_addr().unwrap());
    let (alerts_tx, alerts) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in hook.incoming().take(4) {
            let mut stream = stream.unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let n = stream.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break Some(text[end + 4..end + 4 + len].to_string());
                    }
                }
            };
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            if let Some(b) = body {
                let _ = alerts_tx.send(b);
            }
        }
    });
    let stderr = dir.path().join("serve.err");
    let args = [
        "--alert-webhook",
        &hook_url,
        "--reference",
        reference.to_str().unwrap(),
        "--window",
        "16",
        "--min-feedback",
        "4",
        "--max-dp-difference",
        "0.0",
        "--no-explain",
    ];
    let s = Served::start(&model, &args, &stderr);
    let gender = |i: usize| ["f", "m", "m"][i % 3];
    let inputs: Vec<Value> = (0..16)
        .map(|i| json!({"text": TEXTS[i % TEXTS.len()], "groups": {"gender": gender(i)}}))
        .collect();
    let missing = r#"{"inputs": [{"text": "a"}]}"#;
    assert_error(
        s.post("/decide", None, missing),
        422,
        "`gender`",
        "monitored group",
    );
    let (code, _, body) = s.post("/decide", None, &json!({"inputs": inputs}).to_string());
    assert_eq!(code, 200, "{body}");
    let decisions = json_of(&body)["decisions"].as_array().unwrap().clone();
    let (code, _, body) = s.get("/fairness", None);
    assert_eq!(code, 200, "{body}");
    let live = json_of(&body);
    assert_eq!(live["rows"], 16);
    assert_eq!(live["feedback_rows"], 0);

    // The same numbers as `valor audit` on the decided rows.
    let rows: Vec<(String, String, String)> = decisions
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let l = d["label"].as_str().unwrap().to_string();
            (l.clone(), l, gender(i).to_string())
        })
        .collect();
    let offline = audit_json(dir.path(), "selection.csv", &rows);
    let path = |v: &Value| v["specs"][0]["fairlearn"]["demographic_parity_difference"].clone();
    assert!(path(&offline).is_number(), "{offline}");
    assert_eq!(path(&live["selection_audit"]), path(&offline));
    assert_eq!(
        live["selection"][0]["demographic_parity_difference"],
        path(&offline)
    );
    assert_eq!(live["selection_audit"]["schema"], "valor.fair.audit/1");
    let drift = &live["drift"];
    assert_eq!(drift["reference_rows"], TEXTS.len());
    assert_eq!(drift["current_rows"], 16);
    let features: Vec<&str> = drift["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["feature"].as_str().unwrap())
        .collect();
    assert!(
        features.len() >= 3,
        "the label and each class's score: {features:?}"
    );

    // Feedback turns on the outcome metrics: equalized odds as valor audit.
    let mut with_truth = Vec::new();
    for (i, d) in decisions.iter().enumerate().take(8) {
        let outcome = if i % 2 == 0 { "approve" } else { "deny" };
        let fb = json!({"id": d["decision_id"], "outcome": outcome}).to_string();
        assert_eq!(s.post("/feedback", None, &fb).0, 200);
        with_truth.push((outcome.to_string(), rows[i].1.clone(), rows[i].2.clone()));
    }
    let (_, _, body) = s.get("/fairness", None);
    let live = json_of(&body);
    assert_eq!(live["feedback_rows"], 8);
    let offline = audit_json(dir.path(), "outcomes.csv", &with_truth);
    let eo = |v: &Value| v["specs"][0]["fairlearn"]["equalized_odds_difference_worst_case"].clone();
    assert!(eo(&offline).is_number(), "{offline}");
    assert_eq!(eo(&live["outcome_audit"]), eo(&offline));
    assert_eq!(
        live["outcomes"][0]["equalized_odds_difference"],
        eo(&offline)
    );

    // The gauges, and the breach of --max-dp-difference 0.
    let (_, _, metrics) = s.get("/metrics", None);
    assert!(
        metrics.contains("valor_demographic_parity_difference{spec=\"gender\"}"),
        "{metrics}"
    );
    assert_eq!(path(&live["selection_audit"]), json!(1.0));
    let breached = live["breached"].as_array().unwrap();
    assert!(
        breached
            .iter()
            .any(|e| e["metric"] == "fairlearn.demographic_parity_difference"),
        "{live}"
    );
    assert!(
        metrics.contains("valor_fairness_events_total{kind=\"breached\"} 1"),
        "{metrics}"
    );
    assert!(read(&stderr).contains("live monitor: breached"));
    let alert = alerts
        .recv_timeout(Duration::from_secs(30))
        .expect("the breach was POSTed to the webhook");
    let alert = json_of(&alert);
    assert_eq!(alert["event"]["kind"], "breached", "{alert}");
    assert_eq!(
        alert["event"]["metric"],
        "fairlearn.demographic_parity_difference"
    );
    assert_eq!(s.stop(), 0);
}

#[valor_testkit::shared_test]
fn serve_on_minilm_matches_predict_alone_and_batched_with_others() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, labels, sentences) = crate::minilm_parity_model(dir.path());

    // `valor predict` (batches of 4, bucketed by length).
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> = sentences
        .iter()
        .map(|s| json!({"text": s}).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("pred.jsonl");
    let (code, _, stderr) = crate::predict_file(&folder, &input, &out, &["--batch-size", "4"]);
    assert_eq!(code, 0, "{stderr}");
    let want: Vec<f64> = read(&out)
        .lines()
        .flat_map(|l| {
            let v = json_of(l);
            labels
                .iter()
                .map(|label| v[format!("p_{label}")].as_f64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();

    let stderr = dir.path().join("serve.err");
    // Forwards of at most 24 tokens: the one request below runs as several
    // forwards, one text or two each, some texts split from their request's
    // others, and is answered when its last forward is done.
    let s = Served::start(
        &folder,
        &["--no-explain", "--max-forward-tokens", "24"],
        &stderr,
    );
    let scores = |list: &Value| -> Vec<f64> {
        labels
            .iter()
            .map(|l| {
                list.as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x["label"] == *l)
                    .unwrap()["score"]
                    .as_f64()
                    .unwrap()
            })
            .collect()
    };
    // All sentences in one request: one batch, several forwards.
    let (code, _, body) = s.post("/predict", None, &json!({"inputs": sentences}).to_string());
    assert_eq!(code, 200, "{body}");
    let got: Vec<f64> = json_of(&body)
        .as_array()
        .unwrap()
        .iter()
        .flat_map(scores)
        .collect();
    assert_all_close("one request", &got, &want, Tolerance::abs(1e-6));
    // One request per sentence, all at once: the server batches them
    // together (other lengths, other padding) and answers each the same.
    let url = s.url("/predict");
    let threads: Vec<_> = sentences
        .iter()
        .map(|t| {
            let (url, body) = (url.clone(), json!({"inputs": t}).to_string());
            std::thread::spawn(move || {
                answer(
                    agent()
                        .post(&url)
                        .content_type("application/json")
                        .send(&body),
                )
            })
        })
        .collect();
    let mut got = Vec::new();
    for t in threads {
        let (code, _, body) = t.join().unwrap();
        assert_eq!(code, 200, "{body}");
        got.extend(scores(&json_of(&body)));
    }
    assert_all_close("concurrent requests", &got, &want, Tolerance::abs(1e-6));
    assert_eq!(s.stop(), 0);
}

/// A Python client (`requests`, as a team's Python service would call the
/// server). Python is there where the shared folder is (CI's machine).
#[valor_testkit::shared_test]
fn serve_answers_a_python_requests_client() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let keys = dir.path().join("keys.toml");
    let key = create_key(&keys, "predict", &[]);
    let stderr = dir.path().join("serve.err");
    let s = Served::start(
        &model,
        &["--keys", keys.to_str().unwrap(), "--no-explain"],
        &stderr,
    );
    let script = r#"
import json, sys, requests
base, key = sys.argv[1], sys.argv[2]
texts = json.loads(sys.argv[3])
auth = {"Authorization": "Bearer " + key}
refused = requests.post(base + "/predict", json={"inputs": texts})
ok = requests.post(base + "/predict", json={"inputs": texts}, headers=auth, timeout=60)
ok.raise_for_status()
print(json.dumps({"refused": [refused.status_code, refused.json()["error_type"]], "scores": ok.json()}))
"#;
    let out = Command::new("python3")
        .args(["-c", script, &s.base, &key, &json!(TEXTS).to_string()])
        .output()
        .expect("python3 runs (CI's machine has it, with requests)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = json_of(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(got["refused"], json!([401, "unauthorized"]));
    let (code, _, body) = s.post(
        "/predict",
        Some(&key),
        &json!({"inputs": TEXTS}).to_string(),
    );
    assert_eq!(code, 200);
    assert_eq!(got["scores"], json_of(&body), "Python sees what Rust sees");
    assert_eq!(s.stop(), 0);
}

/// `valor train` leaves `reference.json` (the exported model's validation
/// predictions) in its run folder, and `--reference RUN` measures drift
/// against it; a folder without one is refused before the model loads.
#[test]
fn serve_takes_a_training_run_as_its_drift_reference() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.csv");
    let (code, _, stderr) = valor(&[
        "data",
        "gen",
        "--rows",
        "200",
        "--out",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let run = dir.path().join("run");
    let (code, _, stderr) = crate::tiny_train(data.to_str().unwrap(), &run, &[]);
    assert_eq!(code, 0, "{stderr}");
    let reference = json_of(&read(&run.join("reference.json")));
    assert_eq!(reference["schema"], "valor.monitor.reference/1");
    let labels = reference["labels"].as_array().unwrap().len();
    let rows = reference["predicted"].as_array().unwrap().len();
    let report = json_of(&read(&run.join("report.json")));
    assert_eq!(
        rows as u64,
        report["rows"]["valid"].as_u64().unwrap(),
        "one row per validation row: {report}"
    );
    assert_eq!(reference["scores"].as_array().unwrap().len(), labels);
    for p in 0..rows {
        let sum: f64 = (0..labels)
            .map(|c| reference["scores"][c][p].as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-9, "row {p} sums to {sum}");
    }
    assert_eq!(reference["text_chars"].as_array().unwrap().len(), rows);
    assert_eq!(reference["unknown_rate"].as_array().unwrap().len(), rows);

    let run_s = run.to_str().unwrap();
    let s = Served::start(
        &run.join("model"),
        &["--reference", run_s, "--group", "gender"],
        &dir.path().join("serve.err"),
    );
    let inputs: Vec<Value> = (0..6)
        .map(|i| {
            let g = ["f", "m"][i % 2];
            json!({"text": TEXTS[i % TEXTS.len()], "groups": {"gender": g}})
        })
        .collect();
    let (code, _, body) = s.post("/decide", None, &json!({ "inputs": inputs }).to_string());
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = s.get("/fairness", None);
    assert_eq!(code, 200, "{body}");
    let drift = &json_of(&body)["drift"];
    assert_eq!(drift["reference_rows"], rows, "{drift}");
    assert_eq!(drift["current_rows"], 6, "{drift}");
    assert_eq!(s.stop(), 0);

    // A folder with no reference.json: exit 2, naming the file it wanted.
    let (code, _, stderr) = valor(&[
        "serve",
        "--model",
        run.join("model").to_str().unwrap(),
        "--addr",
        "127.0.0.1:0",
        "--reference",
        run.join("model").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("reference.json"), "{stderr}");
}

/// `valor serve --precision int8` decides on the int8 kernels as `valor
/// predict --precision int8` does (same probabilities), `/info` names the
/// dtype, and explanations (fp32) still work.
#[test]
fn serve_precision_int8_matches_predict_precision_int8() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let input = dir.path().join("texts.csv");
    texts_csv(&input, None);
    let out = dir.path().join("int8.jsonl");
    let (code, _, stderr) = crate::predict_file(&model, &input, &out, &["--precision", "int8"]);
    assert_eq!(code, 0, "{stderr}");
    let want: Vec<f64> = read(&out)
        .lines()
        .map(json_of)
        .flat_map(|v| {
            [
                v["p_deny"].as_f64().unwrap(),
                v["p_approve"].as_f64().unwrap(),
            ]
        })
        .collect();
    let fp32 = predict_probs(dir.path(), &model);
    assert!(
        want.iter().zip(&fp32).any(|(a, b)| a != b),
        "int8 probabilities equal fp32's: the kernels did not run"
    );

    let s = Served::start(
        &model,
        &["--precision", "int8"],
        &dir.path().join("serve.err"),
    );
    let (code, _, body) = s.get("/info", None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(json_of(&body)["model_dtype"], "int8");
    let (code, _, body) = s.post("/predict", None, &json!({ "inputs": TEXTS }).to_string());
    assert_eq!(code, 200, "{body}");
    let got = predict_scores(&body);
    assert_all_close(
        "/predict int8 vs valor predict --precision int8",
        &got,
        &want,
        Tolerance::abs(1e-6),
    );
    explains_then_stops(s);
}
