//! The model thread and its queue: dynamic batching as text-embeddings-
//! inference does it.
//!
//! Handlers tokenise on the blocking pool (never on the model thread) and
//! send a [`Job`] into one bounded queue. The model thread takes the first
//! job, then every job already waiting while their tokens fit the budget
//! (`--max-batch-tokens`) — while the batch is smaller than the last one
//! it waits for the rest of those clients as long as they keep arriving
//! (gaps under 5 ms; at most a quarter of the last batch's time and
//! 50 ms) — drops the jobs whose client has gone away (the
//! handler's future was dropped, so nobody waits for the answer), runs
//! their texts in arrival order through unpadded forward passes (the whole
//! batch in one on a GPU, about [`FORWARD_TOKENS`] tokens each on the CPU),
//! applies the model folder's decision rule job by job in arrival order (the
//! randomised thresholds' draws continue from job to job, as `valor
//! predict`'s continue from row to row), explains the jobs that asked for
//! it, and answers each job on its own channel as soon as its last text is
//! scored. While it computes, new jobs queue up and form the next batch.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use valor_bert::explain::top_k;
use valor_bert::{Backend, Precision};
use valor_data::{Encoded, TextTokenizer};
use valor_train::{Classifier, Scores, ThresholdsFile, WordExplanation};

use crate::metrics as m;

/// What the engine needs to load and run a model folder.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub model_dir: PathBuf,
    /// A PEFT LoRA adapter folder on top of `model_dir`.
    pub adapter: Option<PathBuf>,
    pub backend: Backend,
    /// Arithmetic of the encoder's Linear layers for decisions on the CPU
    /// (explanations stay fp32: they need gradients); on a GPU backend the
    /// device's float dtype, for decisions and explanations alike.
    pub precision: Precision,
    /// Maximum tokens per text.
    pub max_len: usize,
    /// Token budget of one batch.
    pub max_batch_tokens: usize,
    /// Tokens per forward pass (`None`: [`FORWARD_TOKENS`] on the CPU, the
    /// whole batch on a GPU).
    pub max_forward_tokens: Option<usize>,
    /// Jobs that may wait in the queue.
    pub queue_capacity: usize,
    /// Load a differentiable copy of the model for `/decide` with explain.
    pub explain: bool,
    /// Integration points of integrated gradients.
    pub ig_steps: usize,
    /// The model folder's decision rule.
    pub thresholds: Option<ThresholdsFile>,
}

/// What handlers know about the loaded model.
#[derive(Debug)]
pub struct ModelInfo {
    /// Label names, `id2label` order.
    pub labels: Vec<String>,
    /// The tokenizer, truncating at `max_len` (shared: each request's
    /// tokenisation task holds a reference; a clone would copy the whole
    /// vocabulary per request).
    pub tokenizer: Arc<TextTokenizer>,
    /// The same tokenizer truncating at `max_len + 1`, to tell texts that
    /// were truncated (`"truncate": false`).
    pub untruncated: Arc<TextTokenizer>,
    /// Maximum tokens per text.
    pub max_len: usize,
    /// `model_type` of config.json.
    pub model_type: String,
    /// SHA-256 of the weights (see [`weights_sha256`]).
    pub model_sha256: String,
    /// Whether `/decide` can explain.
    pub explain: bool,
    /// The id of `[UNK]`, for the unknown-token rate.
    pub unk_id: Option<u32>,
    /// The precision decisions are computed in.
    pub precision: Precision,
}

/// The rule applied to one job's texts.
#[derive(Debug, Clone)]
pub enum RuleInput {
    /// The most probable class.
    Argmax,
    /// The model folder's thresholds.json, with each text's group value.
    Thresholds(Vec<String>),
}

/// One request's texts on their way to the model.
#[derive(Debug)]
pub struct Job {
    pub encodings: Vec<Encoded>,
    pub rule: RuleInput,
    pub explain: bool,
    pub reply: oneshot::Sender<Result<Vec<Inference>, String>>,
    pub enqueued: Instant,
}

impl Job {
    fn tokens(&self) -> usize {
        self.encodings.iter().map(Encoded::len).sum()
    }
}

/// The model's answer for one text.
#[derive(Debug, Clone)]
pub struct Inference {
    pub scores: Scores,
    /// The decided label id.
    pub label: usize,
    pub explanation: Option<WordExplanation>,
}

/// Why a job was not queued.
#[derive(Debug)]
pub enum SubmitError {
    /// The queue is full (429).
    Full,
    /// The model thread has stopped (503).
    Stopped,
}

/// The model thread, its queue, and what it published once loaded.
#[derive(Debug)]
pub struct Engine {
    tx: RwLock<Option<SyncSender<Job>>>,
    info: Arc<OnceLock<ModelInfo>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Engine {
    /// Starts the model thread, which loads the folder and then serves the
    /// queue. `loaded` hears once: Ok when the model is ready, or why
    /// loading failed.
    pub fn start(
        config: EngineConfig,
        loaded: oneshot::Sender<Result<(), Box<valor_train::Error>>>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(config.queue_capacity.max(1));
        let info = Arc::new(OnceLock::new());
        let published = Arc::clone(&info);
        let thread = std::thread::Builder::new()
            .name("valor-model".into())
            .spawn(move || match load(&config) {
                Err(e) => {
                    let _ = loaded.send(Err(e));
                }
                Ok((model, explainer, model_info)) => {
                    let _ = published.set(model_info);
                    let _ = loaded.send(Ok(()));
                    serve_queue(&config, &model, explainer.as_ref(), rx);
                }
            })?;
        Ok(Self {
            tx: RwLock::new(Some(tx)),
            info,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The model, once loaded.
    pub fn info(&self) -> Option<&ModelInfo> {
        self.info.get()
    }

    /// Queues a job without waiting.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        let tx = self.tx.read().unwrap_or_else(|e| e.into_inner());
        let tx = tx.as_ref().ok_or(SubmitError::Stopped)?;
        match tx.try_send(job) {
            Ok(()) => {
                metrics::gauge!(m::QUEUE_DEPTH).increment(1.0);
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(SubmitError::Full),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Stopped),
        }
    }

    /// Closes the queue and waits until the model thread has answered
    /// every queued job.
    pub fn shutdown(&self) {
        self.tx.write().unwrap_or_else(|e| e.into_inner()).take();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

type Loaded = (Classifier, Option<Classifier>, ModelInfo);

fn load(config: &EngineConfig) -> Result<Loaded, Box<valor_train::Error>> {
    let dir = &config.model_dir;
    let adapter = config.adapter.as_deref();
    let model = Classifier::load_at(
        dir,
        adapter,
        config.backend,
        config.max_len,
        false,
        config.precision,
    )?;
    // The explainer is differentiated: fp32 on the CPU (its low-precision
    // kernels have no gradients); on a GPU it shares the device, and with it
    // the device's float dtype.
    let explainer = if config.explain {
        let explainer =
            Classifier::load_with_adapter(dir, adapter, config.backend, config.max_len, true)?;
        // On the CPU its frozen layers take the f32 weights packed once, as
        // `valor explain`'s do.
        Some(if config.backend == valor_bert::Backend::Cpu {
            explainer.with_precision(valor_bert::Precision::Fp32)?
        } else {
            explainer
        })
    } else {
        None
    };
    if let Some(t) = &config.thresholds {
        t.check_labels(model.labels())
            .map_err(|why| valor_train::Error::Invalid {
                path: dir.join(valor_train::THRESHOLDS_FILE),
                message: format!("does not fit the model: {why}"),
            })?;
    }
    let max_len = model.tokenizer.max_len();
    let untruncated =
        TextTokenizer::from_model_dir(dir, max_len + 1).map_err(valor_train::Error::from)?;
    let info = ModelInfo {
        labels: model.labels().to_vec(),
        tokenizer: Arc::new(model.tokenizer.clone()),
        untruncated: Arc::new(untruncated),
        max_len,
        model_type: model
            .config
            .extra
            .get("model_type")
            .and_then(|v| v.as_str())
            .unwrap_or("bert")
            .to_string(),
        model_sha256: weights_sha256(dir).map_err(|source| valor_train::Error::Io {
            path: dir.clone(),
            source,
        })?,
        explain: explainer.is_some(),
        unk_id: model.tokenizer.token_to_id("[UNK]"),
        precision: config.precision,
    };
    Ok((model, explainer, info))
}

/// SHA-256 (hex) of the model's weights: `model.safetensors`, as
/// `sha256sum model.safetensors` prints it; for a sharded checkpoint, of its
/// `*.safetensors` files one after another in name order.
pub fn weights_sha256(dir: &Path) -> std::io::Result<String> {
    let single = dir.join("model.safetensors");
    let files: Vec<PathBuf> = if single.is_file() {
        vec![single]
    } else {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        v.sort();
        v
    };
    let mut h = Sha256::new();
    for f in files {
        std::io::copy(&mut std::fs::File::open(&f)?, &mut h)?;
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Longest a batch waits for the rest of the last batch's clients, and the
/// longest gap between two of them (see [`serve_queue`]).
const MAX_GATHER: Duration = Duration::from_millis(50);
const MAX_GAP: Duration = Duration::from_millis(5);

fn serve_queue(
    config: &EngineConfig,
    model: &Classifier,
    explainer: Option<&Classifier>,
    rx: Receiver<Job>,
) {
    let mut rule = config.thresholds.as_ref().map(ThresholdsFile::predictor);
    let mut pending: Option<Job> = None;
    // Jobs in the previous batch and how long it took.
    let mut last = (0usize, Duration::ZERO);
    loop {
        let first = match pending.take() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        metrics::gauge!(m::QUEUE_DEPTH).decrement(1.0);
        let mut tokens = first.tokens();
        let mut batch = vec![first];
        // Clients that were answered together come back together, a few
        // milliseconds apart: taking only what is queued now would run the
        // first of them alone and the rest as the next batch, alternating a
        // batch of one with a full one. So while this batch holds fewer jobs
        // than the last one and they keep coming (no gap over MAX_GAP), wait
        // for more, in all at most a quarter of the last batch's time and
        // MAX_GATHER. A lone client (last batch of one) never waits.
        let gather_until = (last.0 > 1).then(|| Instant::now() + (last.1 / 4).min(MAX_GATHER));
        while tokens < config.max_batch_tokens {
            let next = match rx.try_recv() {
                Ok(j) => Some(j),
                Err(TryRecvError::Disconnected) => None,
                Err(TryRecvError::Empty) => match gather_until {
                    Some(until) if batch.len() < last.0 => {
                        let now = Instant::now();
                        if now >= until {
                            None
                        } else {
                            rx.recv_timeout((until - now).min(MAX_GAP)).ok()
                        }
                    }
                    _ => None,
                },
            };
            let Some(j) = next else { break };
            metrics::gauge!(m::QUEUE_DEPTH).decrement(1.0);
            if tokens + j.tokens() > config.max_batch_tokens {
                // Counted out of the queue above; it leads the next batch.
                metrics::gauge!(m::QUEUE_DEPTH).increment(1.0);
                pending = Some(j);
                break;
            }
            tokens += j.tokens();
            batch.push(j);
        }
        let before = batch.len();
        batch.retain(|j| !j.reply.is_closed());
        let dropped = before - batch.len();
        if dropped > 0 {
            metrics::counter!(m::DROPPED).increment(dropped as u64);
        }
        if batch.is_empty() {
            continue;
        }
        for j in &batch {
            metrics::histogram!(m::QUEUE_SECONDS).record(j.enqueued.elapsed().as_secs_f64());
        }
        let started = Instant::now();
        last.0 = batch.len();
        run_batch(config, model, explainer, rule.as_mut(), batch);
        last.1 = started.elapsed();
    }
}

/// Tokens in one forward pass on the CPU. A batch is gathered up to
/// `--max-batch-tokens` (16384, TEI's default, sized for a GPU), but on the
/// CPU one forward over all of it is slower per text than several smaller
/// ones (the feed-forward activations of 16k tokens are 100 MB and leave the
/// cache), and nobody in it is answered before the last text is done. So
/// the batch runs as forwards of about this many tokens, in arrival order,
/// and each job is answered as soon as its last text has its scores.
pub const FORWARD_TOKENS: usize = 2048;

/// Tokens per forward pass: `--max-forward-tokens`, or by default
/// [`FORWARD_TOKENS`] on the CPU and the whole batch on a GPU.
fn forward_tokens(config: &EngineConfig) -> usize {
    match config.max_forward_tokens {
        Some(n) => n.max(1),
        None if config.backend == Backend::Cpu => FORWARD_TOKENS,
        None => config.max_batch_tokens,
    }
}

fn run_batch(
    config: &EngineConfig,
    model: &Classifier,
    explainer: Option<&Classifier>,
    mut rule: Option<&mut valor_train::ThresholdsPredictor<'_>>,
    batch: Vec<Job>,
) {
    let total: usize = batch.iter().map(|j| j.encodings.len()).sum();
    metrics::histogram!(m::BATCH_SIZE).record(total as f64);
    let limit = forward_tokens(config);
    let mut jobs = batch.into_iter();
    // Jobs taken into forwards and not answered yet (each with its number
    // of texts), the texts of the last one still to take, and the scores
    // (with their texts) of the texts computed and not yet answered.
    let mut waiting: VecDeque<(Job, usize)> = VecDeque::new();
    let mut texts: Vec<Encoded> = Vec::new();
    let mut scored: VecDeque<(Scores, Encoded)> = VecDeque::new();
    loop {
        // Fill one forward with texts in arrival order until it holds
        // `limit` tokens; a job's texts may span several forwards.
        let mut chunk: Vec<Encoded> = Vec::new();
        let mut tokens = 0;
        while tokens < limit {
            if let Some(e) = texts.pop() {
                tokens += e.len();
                chunk.push(e);
                continue;
            }
            let Some(mut j) = jobs.next() else { break };
            if j.reply.is_closed() {
                // Its client went away while earlier forwards ran.
                metrics::counter!(m::DROPPED).increment(1);
                continue;
            }
            texts = std::mem::take(&mut j.encodings);
            texts.reverse();
            let n = texts.len();
            waiting.push_back((j, n));
        }
        let last = chunk.is_empty();
        if !last {
            let started = Instant::now();
            // One unpadded forward: requests arrive in any order of length,
            // and a padded forward would compute every text to the longest
            // one's length (see valor_bert's `packed` module).
            let result = model.scores(chunk.clone(), chunk.len());
            metrics::histogram!(m::INFERENCE_SECONDS).record(started.elapsed().as_secs_f64());
            match result {
                Ok(s) => scored.extend(s.into_iter().zip(chunk)),
                Err(e) => {
                    // Every job not answered yet fails with this forward.
                    let msg = format!("the model failed on this batch: {e}");
                    for j in waiting.into_iter().map(|(j, _)| j).chain(jobs) {
                        let _ = j.reply.send(Err(msg.clone()));
                    }
                    return;
                }
            }
        }
        // Answer every job whose texts all have their scores, in order.
        while let Some(&(_, n)) = waiting.front()
            && n <= scored.len()
        {
            let (j, _) = waiting.pop_front().expect("front");
            let (s, encs): (Vec<Scores>, Vec<Encoded>) = scored.drain(..n).unzip();
            let answer = decide(config, explainer, rule.as_deref_mut(), &j, s, &encs);
            let _ = j.reply.send(answer);
        }
        if last {
            return;
        }
    }
}

fn decide(
    config: &EngineConfig,
    explainer: Option<&Classifier>,
    rule: Option<&mut valor_train::ThresholdsPredictor<'_>>,
    job: &Job,
    scores: Vec<Scores>,
    encodings: &[Encoded],
) -> Result<Vec<Inference>, String> {
    let labels: Vec<usize> = match (&job.rule, rule) {
        (RuleInput::Thresholds(groups), Some(rule)) => {
            let flat: Vec<f64> = scores
                .iter()
                .flat_map(|s| s.probabilities.iter().copied())
                .collect();
            rule.predict(&flat, groups)
                .map_err(|e| format!("applying thresholds.json: {e}"))?
                .into_iter()
                .map(|l| l as usize)
                .collect()
        }
        _ => scores
            .iter()
            .map(|s| top_k(&s.probabilities, 1)[0])
            .collect(),
    };
    let mut out = Vec::with_capacity(scores.len());
    for ((s, label), enc) in scores.into_iter().zip(labels).zip(encodings) {
        let explanation = match (job.explain, explainer) {
            (true, Some(x)) => {
                if job.reply.is_closed() {
                    return Err("the client went away".into());
                }
                let started = Instant::now();
                let e = x
                    .explain_words(enc, label, config.ig_steps)
                    .map_err(|e| format!("integrated gradients failed: {e}"))?;
                metrics::histogram!(m::EXPLAIN_SECONDS).record(started.elapsed().as_secs_f64());
                Some(e)
            }
            _ => None,
        };
        out.push(Inference {
            scores: s,
            label,
            explanation,
        });
    }
    Ok(out)
}
