//! Serving: `valor serve` beside the FastAPI + transformers server a Python
//! team would deploy (`../shared/bench/serve_peer.py`), both with the same
//! MiniLM classifier, driven by one closed-loop load generator of our own on
//! loopback.
//!
//! - The model: the shared MiniLM checkpoint plus the parity fixture's
//!   3-label head (`fixtures/hf-parity/head.safetensors`), laid out as an HF
//!   folder whose `model.safetensors.index.json` names the two files as
//!   shards (links, nothing copied), so both servers load the same weights.
//! - The load: Financial PhraseBank sentences (≤ 128 tokens), requests of 1
//!   and 8 sentences (`{"inputs": [...]}`, TEI's `/predict`), at concurrency
//!   1, 8 and 32: each client thread keeps one HTTP/1.1 connection alive and
//!   sends its next request when the answer to the last has arrived. A
//!   cell is bounded in count and time (at most `MAX_REQUESTS` requests and
//!   `CELL_SECONDS` s after a warm-up) and stops by itself.
//! - Throughput (requests/s and sentences/s) and p50/p99 latency per cell;
//!   Valor's offline batched forward on the same sentences (`valor predict`
//!   at batch 32, timed at two sizes so that start-up cancels out) as the
//!   ceiling serving should reach; and the cost of API keys + the decision
//!   log (`--keys`, `--log-dir`): one client alternating requests between a
//!   server with both and one without, the median of the paired
//!   differences, measured twice with the start order swapped (crossover).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::sys::round;

/// Requests per cell after the warm-up, at most.
const MAX_REQUESTS: usize = 2000;
/// Seconds per cell after the warm-up, at most.
const CELL_SECONDS: f64 = 8.0;
/// Concurrency levels and sentences per request.
const CONCURRENCY: [usize; 3] = [1, 8, 32];
const BATCH: [usize; 2] = [1, 8];

/// Runs the serving comparison; `python` is the peers' interpreter (or why
/// there is none). The result goes under `serving` in results.json.
pub(super) fn run(
    shared: &Path,
    data_dir: &Path,
    python: std::result::Result<&Path, &str>,
    quick: bool,
) -> Result<Value> {
    let valor = build_valor()?;
    let model = classifier_folder(shared, &data_dir.join("minilm-classifier"))?;
    let sentences = phrasebank(shared, 512)?;
    let (max_requests, seconds) = if quick {
        (100, 1.0)
    } else {
        (MAX_REQUESTS, CELL_SECONDS)
    };

    eprintln!("[bench] serve: Valor's offline batched forward (valor predict, batch 32)");
    let offline = offline_rate(&valor, &model, &sentences, data_dir)?;

    eprintln!("[bench] serve: valor serve");
    let server = ValorServer::start(&valor, &model, &[])?;
    let valor_cells = matrix(&server.addr, &sentences, None, max_requests, seconds);
    drop(server);

    eprintln!("[bench] serve: valor serve with API keys and the decision log");
    let keys = data_dir.join("serve-keys.toml");
    let _ = std::fs::remove_file(&keys);
    let key = create_key(&valor, &keys)?;
    let log_dir = data_dir.join("serve-log");
    let _ = std::fs::remove_dir_all(&log_dir);
    let keys_s = keys.display().to_string();
    let log_s = log_dir.display().to_string();
    let guarded_args = ["--keys", keys_s.as_str(), "--log-dir", log_s.as_str()];
    // Two identical servers differ by a millisecond or more in the first
    // one started's disfavour (measured: two plain servers, 1.2–2.6 ms
    // "cost" at 20 ms a request), which would swamp a cost of microseconds.
    // So a crossover: one half with the guarded server started first, one
    // with it started second, and the cost is the mean of the halves (the
    // start-order effect enters them with opposite signs).
    let mut halves = Vec::new();
    for guarded_first in [true, false] {
        let (guarded, plain) = if guarded_first {
            let g = ValorServer::start(&valor, &model, &guarded_args)?;
            (g, ValorServer::start(&valor, &model, &[])?)
        } else {
            let p = ValorServer::start(&valor, &model, &[])?;
            (ValorServer::start(&valor, &model, &guarded_args)?, p)
        };
        let mut half = paired_cost(
            &guarded.addr,
            guarded.child.id(),
            &key,
            &plain.addr,
            &sentences,
            max_requests,
            seconds * 2.0,
        );
        half["guarded_started_first"] = json!(guarded_first);
        halves.push(half);
    }
    let crossover = |k: &str| -> Value {
        match (
            halves[0].pointer(k).and_then(Value::as_f64),
            halves[1].pointer(k).and_then(Value::as_f64),
        ) {
            (Some(a), Some(b)) => json!(round((a + b) / 2.0, 1)),
            _ => Value::Null,
        }
    };
    let guard = json!({
        "p50_cost_us": crossover("/p50_cost_us"),
        "median_paired_difference_us": crossover("/median_paired_difference_us"),
        "in_process_p50_us": {
            "authenticate": crossover("/in_process_p50_us/authenticate"),
            "decision_log_append": crossover("/in_process_p50_us/decision_log_append"),
        },
        "writer_thread_cpu_us_per_request": crossover("/writer_thread_cpu_us_per_request"),
        "halves": halves,
    });

    let peer = match python {
        Err(why) => json!({"not_run": why}),
        Ok(py) => {
            eprintln!("[bench] serve: serve_peer.py (FastAPI + transformers)");
            match PeerServer::start(py, shared, &model) {
                Ok(p) => json!({"cells": matrix(&p.addr, &sentences, None, max_requests, seconds)}),
                Err(e) => json!({"failed": format!("{e:#}")}),
            }
        }
    };

    Ok(json!({
        "model": "all-MiniLM-L6-v2 + hf-parity 3-label head",
        "sentences": "Financial PhraseBank (AllAgree), at most 128 tokens",
        "offline_sentences_per_s": round(offline, 1),
        "valor": {"cells": valor_cells},
        "peer": peer,
        "auth_and_log": guard,
        "bounds": {"max_requests_per_cell": max_requests, "seconds_per_cell": seconds},
    }))
}

/// The release `valor` binary, built with the default features.
fn build_valor() -> Result<PathBuf> {
    crate::run_cmd(crate::cargo().args(["build", "--release", "--quiet", "-p", "valor-cli"]))?;
    Ok(crate::train::target_dir().join("release").join("valor"))
}

/// The MiniLM classifier folder (see the module doc), made once.
fn classifier_folder(shared: &Path, dir: &Path) -> Result<PathBuf> {
    let base = shared.join("models").join("all-MiniLM-L6-v2");
    let head = shared
        .join("fixtures")
        .join("hf-parity")
        .join("head.safetensors");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut config: Value = serde_json::from_str(
        &std::fs::read_to_string(base.join("config.json")).context("reading MiniLM's config")?,
    )?;
    let labels = ["negative", "neutral", "positive"];
    config["architectures"] = json!(["BertForSequenceClassification"]);
    config["id2label"] = json!(
        labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), json!(l)))
            .collect::<serde_json::Map<_, _>>()
    );
    config["label2id"] = json!(
        labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.to_string(), json!(i)))
            .collect::<serde_json::Map<_, _>>()
    );
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    let shards = [
        (
            "model-00001-of-00002.safetensors",
            base.join("model.safetensors"),
        ),
        ("model-00002-of-00002.safetensors", head),
    ];
    let mut weight_map = serde_json::Map::new();
    for (name, src) in &shards {
        link(src, &dir.join(name))?;
        for tensor in tensor_names(src)? {
            weight_map.insert(tensor, json!(name));
        }
    }
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_string_pretty(&json!({"metadata": {}, "weight_map": weight_map}))?,
    )?;
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
    ] {
        if base.join(f).exists() {
            link(&base.join(f), &dir.join(f))?;
        }
    }
    Ok(dir.to_path_buf())
}

fn link(src: &Path, dst: &Path) -> Result<()> {
    let _ = std::fs::remove_file(dst);
    #[cfg(unix)]
    std::os::unix::fs::symlink(src, dst)
        .with_context(|| format!("linking {} to {}", dst.display(), src.display()))?;
    #[cfg(not(unix))]
    std::fs::copy(src, dst).with_context(|| format!("copying {}", src.display()))?;
    Ok(())
}

/// The tensor names in a safetensors file's header.
fn tensor_names(path: &Path) -> Result<Vec<String>> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        bail!("{}: a {len}-byte safetensors header", path.display());
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header)?;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&header)
        .with_context(|| format!("{}: safetensors header", path.display()))?;
    Ok(header
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k != "__metadata__")
        .collect())
}

/// `n` PhraseBank sentences (ISO-8859-1 file, `sentence@label` per line).
fn phrasebank(shared: &Path, n: usize) -> Result<Vec<String>> {
    let path = shared
        .join("datasets")
        .join("financial-phrasebank")
        .join("Sentences_AllAgree.txt");
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let text: String = bytes.iter().map(|&b| b as char).collect();
    let out: Vec<String> = text
        .lines()
        .filter_map(|l| l.rsplit_once('@').map(|(s, _)| s.trim().to_string()))
        .filter(|s| !s.is_empty())
        .take(n)
        .collect();
    if out.len() < n {
        bail!("{}: only {} sentences", path.display(), out.len());
    }
    Ok(out)
}

/// Sentences per second of `valor predict` at batch 32: two sizes, the
/// difference of their times over the difference of their rows, so process
/// start-up and model loading cancel out.
fn offline_rate(valor: &Path, model: &Path, sentences: &[String], dir: &Path) -> Result<f64> {
    let time = |rows: usize| -> Result<f64> {
        let input = dir.join(format!("serve-offline-{rows}.csv"));
        let mut csv = String::from("text\n");
        for s in sentences.iter().cycle().take(rows) {
            csv.push_str(&format!("\"{}\"\n", s.replace('"', "\"\"")));
        }
        std::fs::write(&input, csv)?;
        let output = dir.join(format!("serve-offline-{rows}.out.csv"));
        let start = Instant::now();
        let status = Command::new(valor)
            .args(["predict", "--overwrite", "--batch-size", "32", "--model"])
            .arg(model)
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .env("RAYON_NUM_THREADS", super::THREADS.to_string())
            .stderr(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("valor predict failed on {}", input.display());
        }
        Ok(start.elapsed().as_secs_f64())
    };
    let (small, large) = (64, 64 + sentences.len());
    time(small)?; // warm the page cache
    let best = |rows| -> Result<f64> { Ok(time(rows)?.min(time(rows)?)) };
    let (t_small, t_large) = (best(small)?, best(large)?);
    Ok((large - small) as f64 / (t_large - t_small).max(1e-9))
}

/// `valor serve` on 127.0.0.1, port 0; killed on drop.
struct ValorServer {
    child: Child,
    addr: String,
}

impl ValorServer {
    fn start(valor: &Path, model: &Path, extra: &[&str]) -> Result<Self> {
        let mut child = Command::new(valor)
            .args(["serve", "--addr", "127.0.0.1:0", "--model"])
            .arg(model)
            .args(extra)
            .env("RAYON_NUM_THREADS", super::THREADS.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting valor serve")?;
        let stdout = child.stdout.take().context("valor serve's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening on http://") else {
            let _ = child.kill();
            bail!("valor serve did not say where it listens: {line:?}");
        };
        let addr = addr.to_string();
        wait_healthy(&addr, 120.0)?;
        Ok(Self { child, addr })
    }
}

impl Drop for ValorServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve_peer.py` on a free loopback port; killed on drop.
struct PeerServer {
    child: Child,
    addr: String,
}

impl PeerServer {
    fn start(python: &Path, shared: &Path, model: &Path) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(python)
            .arg(shared.join("bench").join("serve_peer.py"))
            .arg("--model")
            .arg(model)
            .args([
                "--port",
                &port.to_string(),
                "--threads",
                &super::THREADS.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting serve_peer.py")?;
        let server = Self {
            child,
            addr: format!("127.0.0.1:{port}"),
        };
        wait_healthy(&server.addr, 180.0)?;
        Ok(server)
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `GET /health` answers 200, at most `seconds`.
fn wait_healthy(addr: &str, seconds: f64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    while Instant::now() < deadline {
        if let Ok(mut c) = Client::connect(addr)
            && let Ok((200, _)) = c.request("GET", "/health", None, None)
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{addr}: no healthy server within {seconds} s")
}

/// `valor keys create` with the `predict` and `audit:read` scopes (the
/// latter to read `/metrics`); the key it prints once.
fn create_key(valor: &Path, keys: &Path) -> Result<String> {
    let out = Command::new(valor)
        .args(["keys", "create", "--scopes", "predict,audit:read", "--keys"])
        .arg(keys)
        .output()?;
    if !out.status.success() {
        bail!(
            "valor keys create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("valor_"))
        .map(str::to_string)
        .context("valor keys create printed no key")
}

/// Every (concurrency, sentences per request) cell against `addr`.
fn matrix(
    addr: &str,
    sentences: &[String],
    key: Option<&str>,
    max_requests: usize,
    seconds: f64,
) -> Vec<Value> {
    let mut cells = Vec::new();
    for &batch in &BATCH {
        for &conc in &CONCURRENCY {
            cells.push(cell(
                addr,
                sentences,
                conc,
                batch,
                key,
                max_requests,
                seconds,
            ));
        }
    }
    cells
}

/// One cell of closed-loop load: `conc` clients, `batch` sentences a request.
fn cell(
    addr: &str,
    sentences: &[String],
    conc: usize,
    batch: usize,
    key: Option<&str>,
    max_requests: usize,
    seconds: f64,
) -> Value {
    let bodies: Vec<String> = sentences
        .chunks(batch)
        .map(|c| json!({"inputs": c, "truncate": true}).to_string())
        .collect();
    // Warm-up: every body once per connection pool slot, bounded.
    let warm = (conc * 2).min(64);
    let _ = load(addr, &bodies, conc, key, warm, 60.0);
    let start = Instant::now();
    match load(addr, &bodies, conc, key, max_requests, seconds) {
        Err(e) => json!({"concurrency": conc, "batch": batch, "error": format!("{e:#}")}),
        Ok((mut lat, errors)) => {
            let wall = start.elapsed().as_secs_f64();
            lat.sort_by(f64::total_cmp);
            let q = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
            let n = lat.len();
            json!({
                "concurrency": conc,
                "batch": batch,
                "requests": n,
                "errors": errors,
                "requests_per_s": round(n as f64 / wall, 1),
                "sentences_per_s": round((n * batch) as f64 / wall, 1),
                "p50_ms": if n > 0 { Some(round(q(0.50) * 1e3, 2)) } else { None },
                "p99_ms": if n > 0 { Some(round(q(0.99) * 1e3, 2)) } else { None },
            })
        }
    }
}

/// The cost of API keys + the decision log per request: two servers of the
/// same model up at once, one with `--keys` and `--log-dir` (`guarded`,
/// called with `key`), one without (`plain`), and one client alternating
/// between them, the same one-sentence request to each in turn, so both
/// see the same sentences and the same state of the machine (the p50 of
/// two separate runs differs by more than the cost from drift alone). At
/// most `pairs` pairs after a warm-up, and at most `seconds`.
fn paired_cost(
    guarded: &str,
    guarded_pid: u32,
    key: &str,
    plain: &str,
    sentences: &[String],
    pairs: usize,
    seconds: f64,
) -> Value {
    let run = || -> Result<Value> {
        let mut with = Client::connect(guarded)?;
        let mut without = Client::connect(plain)?;
        let bodies: Vec<String> = sentences
            .iter()
            .map(|s| json!({"inputs": s, "truncate": true}).to_string())
            .collect();
        let time = |client: &mut Client, body: &str, key: Option<&str>| -> Result<f64> {
            let t = Instant::now();
            let (status, answer) = client.request("POST", "/predict", Some(body), key)?;
            if status != 200 {
                bail!("status {status}: {}", String::from_utf8_lossy(&answer));
            }
            Ok(t.elapsed().as_secs_f64())
        };
        for body in bodies.iter().take(32) {
            time(&mut with, body, Some(key))?;
            time(&mut without, body, None)?;
        }
        let writer_before = thread_cpu_seconds(guarded_pid, "valor-ledger");
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let (mut a, mut b, mut d) = (Vec::new(), Vec::new(), Vec::new());
        for (i, body) in bodies.iter().cycle().take(pairs).enumerate() {
            if Instant::now() >= deadline {
                break;
            }
            // Alternate which goes first, so neither always follows the other.
            let (x, y) = if i % 2 == 0 {
                let x = time(&mut with, body, Some(key))?;
                (x, time(&mut without, body, None)?)
            } else {
                let y = time(&mut without, body, None)?;
                (time(&mut with, body, Some(key))?, y)
            };
            a.push(x);
            b.push(y);
            d.push(x - y);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        if d.is_empty() {
            bail!("no pair was timed");
        }
        let n = d.len();
        let writer = match (
            writer_before,
            thread_cpu_seconds(guarded_pid, "valor-ledger"),
        ) {
            (Some(x), Some(y)) => json!(round((y - x) / n as f64 * 1e6, 1)),
            _ => Value::Null,
        };
        // The server's own p50s of the two request-path steps (its
        // histograms cover the warm-up requests too).
        let (status, metrics) = with.request("GET", "/metrics", None, Some(key))?;
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        let metrics = String::from_utf8_lossy(&metrics);
        let p50_us = |name: &str| -> Value {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}{{quantile=\"0.5\"}} ")))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map_or(Value::Null, |v| json!(round(v * 1e6, 2)))
        };
        let (pa, pb, pd) = (median(&mut a), median(&mut b), median(&mut d));
        Ok(json!({
            "in_process_p50_us": {
                "authenticate": p50_us("valor_auth_duration_seconds"),
                "decision_log_append": p50_us("valor_decision_log_append_duration_seconds"),
            },
            "writer_thread_cpu_us_per_request": writer,
            "pairs": n,
            "with_keys_and_log": {"p50_ms": round(pa * 1e3, 3)},
            "without": {"p50_ms": round(pb * 1e3, 3)},
            "p50_cost_us": round((pa - pb) * 1e6, 1),
            "median_paired_difference_us": round(pd * 1e6, 1),
        }))
    };
    run().unwrap_or_else(|e| json!({"error": format!("{e:#}")}))
}

/// CPU seconds (user + system) so far of the thread of process `pid` named
/// `name` (`/proc/PID/task/TID/stat`; Linux only, else `None`).
fn thread_cpu_seconds(pid: u32, name: &str) -> Option<f64> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        // Fields after the parenthesised name: state is field 3, utime 14,
        // stime 15 (clock ticks of 1/100 s, Linux's USER_HZ).
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        return Some(ticks / 100.0);
    }
    None
}

/// `conc` client threads sending `total` requests in all (or until
/// `seconds` pass); the latencies of the 200 answers and the count of others.
fn load(
    addr: &str,
    bodies: &[String],
    conc: usize,
    key: Option<&str>,
    total: usize,
    seconds: f64,
) -> Result<(Vec<f64>, usize)> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let results: Vec<Result<(Vec<f64>, usize)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..conc)
            .map(|_| {
                let next = &next;
                s.spawn(move || -> Result<(Vec<f64>, usize)> {
                    let mut client = Client::connect(addr)?;
                    let (mut lat, mut errors) = (Vec::new(), 0usize);
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= total || Instant::now() >= deadline {
                            return Ok((lat, errors));
                        }
                        let body = &bodies[i % bodies.len()];
                        let t = Instant::now();
                        let (status, _) = client.request("POST", "/predict", Some(body), key)?;
                        if status == 200 {
                            lat.push(t.elapsed().as_secs_f64());
                        } else {
                            errors += 1;
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a client thread panicked")))
            })
            .collect()
    });
    let (mut lat, mut errors) = (Vec::new(), 0);
    for r in results {
        let (l, e) = r?;
        lat.extend(l);
        errors += e;
    }
    Ok((lat, errors))
}

/// A minimal HTTP/1.1 client on one kept-alive connection: enough for
/// JSON requests and answers with `Content-Length` or chunked bodies.
struct Client {
    reader: BufReader<TcpStream>,
    host: String,
}

impl Client {
    fn connect(addr: &str) -> Result<Self> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Self {
            reader: BufReader::new(stream),
            host: addr.to_string(),
        })
    }

    fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
        key: Option<&str>,
    ) -> Result<(u16, Vec<u8>)> {
        let body = body.unwrap_or("");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        if let Some(k) = key {
            head.push_str(&format!("Authorization: Bearer {k}\r\n"));
        }
        head.push_str("\r\n");
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((name, value)) = l.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                if name == "content-length" {
                    length = value.trim().parse::<usize>().ok();
                } else if name == "transfer-encoding"
                    && value.to_ascii_lowercase().contains("chunked")
                {
                    chunked = true;
                }
            }
        }
        let mut out = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim(), 16)
                    .with_context(|| format!("bad chunk size {line:?}"))?;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                out.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(n) = length {
            out.resize(n, 0);
            self.reader.read_exact(&mut out)?;
        }
        Ok((status, out))
    }
}

/// The serving section of `bench/results.md`.
pub(super) fn markdown(s: &Value) -> String {
    let mut md = String::from("\n## Serving (MiniLM classifier, loopback, closed loop)\n\n");
    if let Some(e) = s["error"].as_str() {
        return md + &format!("Not measured: {e}\n");
    }
    md += &format!(
        "Valor's offline batched forward (`valor predict`, batch 32): {} sentences/s. Cells stop after {} requests or {} s.\n\n",
        s["offline_sentences_per_s"],
        s["bounds"]["max_requests_per_cell"],
        s["bounds"]["seconds_per_cell"]
    );
    md += "| sentences/request | concurrency | Valor req/s | Valor sent/s (× offline) | Valor p50 / p99 ms | peer req/s | peer p50 / p99 ms | Valor ÷ peer throughput |\n|---|---|---|---|---|---|---|---|\n";
    let empty = Vec::new();
    let valor = s["valor"]["cells"].as_array().unwrap_or(&empty);
    let peer = s["peer"]["cells"].as_array().unwrap_or(&empty);
    let offline = s["offline_sentences_per_s"].as_f64().unwrap_or(f64::NAN);
    for v in valor {
        let p = peer
            .iter()
            .find(|p| p["concurrency"] == v["concurrency"] && p["batch"] == v["batch"]);
        let f = |c: &Value, k: &str| c[k].as_f64().map(|x| format!("{x}")).unwrap_or("–".into());
        let ratio = match (
            v["requests_per_s"].as_f64(),
            p.and_then(|p| p["requests_per_s"].as_f64()),
        ) {
            (Some(a), Some(b)) if b > 0.0 => format!("**{:.2}×**", a / b),
            _ => "–".into(),
        };
        let share = v["sentences_per_s"]
            .as_f64()
            .map(|x| format!(" ({:.2}×)", x / offline))
            .unwrap_or_default();
        md += &format!(
            "| {} | {} | {} | {}{} | {} / {} | {} | {} | {} |\n",
            v["batch"],
            v["concurrency"],
            f(v, "requests_per_s"),
            f(v, "sentences_per_s"),
            share,
            f(v, "p50_ms"),
            f(v, "p99_ms"),
            p.map(|p| f(p, "requests_per_s")).unwrap_or("–".into()),
            p.map(|p| format!("{} / {}", f(p, "p50_ms"), f(p, "p99_ms")))
                .unwrap_or("–".into()),
            ratio,
        );
    }
    if let Some(why) = s["peer"]["not_run"]
        .as_str()
        .or(s["peer"]["failed"].as_str())
    {
        md += &format!("\nThe peer did not run: {why}\n");
    }
    let a = &s["auth_and_log"];
    let empty = Vec::new();
    let halves = a["halves"].as_array().unwrap_or(&empty);
    let half = |h: &Value| {
        format!(
            "started {}: {} pairs, p50 {} ms with, {} ms without, median paired difference {} µs",
            if h["guarded_started_first"] == true {
                "first"
            } else {
                "second"
            },
            h["pairs"],
            h["with_keys_and_log"]["p50_ms"],
            h["without"]["p50_ms"],
            h["median_paired_difference_us"],
        )
    };
    md += &format!(
        "\nAPI keys + decision log, measured inside the guarded server (mean of the two halves below): authenticating a key takes {} µs at p50 and handing the request's record to the decision log's writer {} µs, both on the request path; the writer thread (serialising, chaining, group commit with fsync, off the request path) spends {} µs of CPU per request.\n",
        a["in_process_p50_us"]["authenticate"],
        a["in_process_p50_us"]["decision_log_append"],
        a["writer_thread_cpu_us_per_request"],
    );
    md += &format!(
        "\nEnd to end, one client alternating one-sentence requests between a server with `--keys --log-dir` and one without, twice (crossover: the guarded server started first, then second, since the first-started of two identical servers is slower by milliseconds): **{} µs** per request, the mean of the halves' median paired differences (difference of p50s: {} µs). Halves: {}.\n",
        a["median_paired_difference_us"],
        a["p50_cost_us"],
        halves.iter().map(half).collect::<Vec<_>>().join("; "),
    );
    md
}
