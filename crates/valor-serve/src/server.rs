//! Starting, running and stopping a server: bind first (so the address is
//! known and `/health` answers `loading` at once), load the model on its
//! thread, serve until SIGTERM or SIGINT, then drain: refuse new requests
//! with 503, finish those in flight, let the model thread answer what is
//! queued, and return. SIGHUP re-reads the keys file.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot};
use valor_bert::Backend;
use valor_fair::Reference;
use valor_train::ThresholdsFile;

use crate::engine::{Engine, EngineConfig};
use crate::error::{Error, Result};
use crate::keys::KeyStore;
use crate::log::RequestLog;
use crate::monitor::{Monitor, MonitorSettings, load_reference};
use crate::routes::{App, DecisionCache, Limits, router};

/// Everything `valor serve` was asked to do.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The model folder.
    pub model_dir: PathBuf,
    /// A PEFT LoRA adapter folder applied to the model folder (the base).
    pub adapter: Option<PathBuf>,
    /// The keys file; `None` turns authentication off (loopback only,
    /// unless `insecure_no_auth`).
    pub keys: Option<PathBuf>,
    pub addr: SocketAddr,
    pub insecure_no_auth: bool,
    pub backend: Backend,
    /// Arithmetic of the encoder's Linear layers for decisions (fp32,
    /// bf16, int8; the CPU backend only).
    pub precision: valor_bert::Precision,
    /// Maximum tokens per text.
    pub max_len: usize,
    pub max_batch_tokens: usize,
    /// Tokens per forward pass (`None`: 2048 on the CPU, the whole batch on
    /// a GPU).
    pub max_forward_tokens: Option<usize>,
    pub max_concurrent_requests: usize,
    pub max_client_batch_size: usize,
    pub payload_limit: usize,
    pub request_timeout: Duration,
    /// Load a differentiable copy of the model so `/decide` can explain.
    pub explain: bool,
    pub ig_steps: usize,
    /// Group attributes `/decide` accepts (the thresholds' group column is
    /// always one).
    pub groups: Vec<String>,
    /// Decisions `/feedback` can still find.
    pub feedback_window: usize,
    /// The decision log's folder.
    pub log_dir: Option<PathBuf>,
    /// Write input texts to the decision log (else only their SHA-256).
    pub log_inputs: bool,
    /// HTTPS certificate chain and private key (PEM), with the `tls` feature.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The live fairness and drift monitor (on when there are group
    /// attributes to monitor).
    pub monitor: MonitorSettings,
}

impl ServeConfig {
    /// The defaults of `valor serve` for `model_dir`.
    pub fn new(model_dir: PathBuf) -> Self {
        Self {
            model_dir,
            adapter: None,
            keys: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
            insecure_no_auth: false,
            backend: Backend::Cpu,
            precision: valor_bert::Precision::Fp32,
            max_len: 128,
            max_batch_tokens: 16384,
            max_forward_tokens: None,
            max_concurrent_requests: 512,
            max_client_batch_size: 32,
            payload_limit: 2_000_000,
            request_timeout: Duration::from_secs(60),
            explain: true,
            ig_steps: 50,
            groups: Vec::new(),
            feedback_window: 100_000,
            log_dir: None,
            log_inputs: false,
            tls: None,
            monitor: MonitorSettings::default(),
        }
    }

    fn check(&self) -> Result<()> {
        let positive = [
            ("--max-len", self.max_len),
            ("--max-batch-tokens", self.max_batch_tokens),
            ("--max-concurrent-requests", self.max_concurrent_requests),
            ("--max-client-batch-size", self.max_client_batch_size),
            ("--payload-limit", self.payload_limit),
            ("--ig-steps", self.ig_steps),
            ("--max-forward-tokens", self.max_forward_tokens.unwrap_or(1)),
        ];
        for (flag, v) in positive {
            if v == 0 {
                return Err(Error::Config {
                    flag,
                    message: "must be at least 1".into(),
                });
            }
        }
        if self.max_len < 2 {
            return Err(Error::Config {
                flag: "--max-len",
                message: "must leave room for [CLS] and [SEP] (at least 2)".into(),
            });
        }
        if self.keys.is_none() && !self.addr.ip().is_loopback() && !self.insecure_no_auth {
            return Err(Error::Unauthenticated { addr: self.addr });
        }
        if let Some(url) = &self.monitor.alert_webhook
            && !(url.starts_with("http://")
                || (url.starts_with("https://") && cfg!(feature = "tls")))
        {
            return Err(Error::Config {
                flag: "--alert-webhook",
                message: "must be an http:// URL (https:// needs the cargo feature `tls`)".into(),
            });
        }
        if self.tls.is_some() && !cfg!(feature = "tls") {
            return Err(Error::Config {
                flag: "--tls-cert",
                message: "this valor was built without TLS; rebuild with the cargo feature `tls`"
                    .into(),
            });
        }
        Ok(())
    }
}

/// A server that is bound but not yet serving.
#[derive(Debug)]
pub struct Server {
    config: ServeConfig,
    listener: TcpListener,
    keys: Option<KeyStore>,
    thresholds: Option<ThresholdsFile>,
    log: RequestLog,
    reference: Option<Reference>,
}

impl Server {
    /// Checks the configuration, reads the keys file and the model folder's
    /// thresholds.json, binds the address and opens the decision log. The
    /// model loads in [`run`](Self::run).
    pub fn bind(config: ServeConfig) -> Result<Self> {
        config.check()?;
        let keys = config.keys.as_deref().map(KeyStore::load).transpose()?;
        let thresholds =
            ThresholdsFile::load(&config.model_dir).map_err(|source| Error::Model {
                dir: config.model_dir.clone(),
                source: Box::new(source),
            })?;
        if let (Some(adapter), Some(_)) = (&config.adapter, &thresholds) {
            return Err(Error::Model {
                dir: config.model_dir.clone(),
                source: Box::new(valor_train::Error::Invalid {
                    path: config.model_dir.join(valor_train::THRESHOLDS_FILE),
                    message: format!(
                        "the decision rule of the base model, not of the adapter in {}; merge \
                         the adapter (`valor merge`) and remodel the merged model",
                        adapter.display()
                    ),
                }),
            });
        }
        let listener = TcpListener::bind(config.addr).map_err(|source| Error::Bind {
            addr: config.addr,
            source,
        })?;
        listener.set_nonblocking(true)?;
        let reference = config
            .monitor
            .reference
            .as_deref()
            .map(load_reference)
            .transpose()?;
        let log = RequestLog::open(config.log_dir.as_deref(), config.log_inputs)?;
        Ok(Self {
            config,
            listener,
            keys,
            thresholds,
            log,
            reference,
        })
    }

    /// The address it listens on (the port chosen when 0 was asked for).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Whether requests need a key.
    pub fn authenticated(&self) -> bool {
        self.keys.is_some()
    }

    /// Serves until SIGTERM or SIGINT, then drains and returns. An error
    /// when the model folder cannot be loaded.
    pub fn run(self) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("valor-http")
            .build()?;
        runtime.block_on(self.serve())
    }

    async fn serve(self) -> Result<()> {
        let Server {
            config,
            listener,
            keys,
            thresholds,
            log,
            reference,
        } = self;
        let (loaded_tx, loaded_rx) = oneshot::channel();
        let engine = Engine::start(
            EngineConfig {
                model_dir: config.model_dir.clone(),
                adapter: config.adapter.clone(),
                backend: config.backend,
                precision: config.precision,
                max_len: config.max_len,
                max_batch_tokens: config.max_batch_tokens,
                max_forward_tokens: config.max_forward_tokens,
                queue_capacity: config.max_concurrent_requests,
                explain: config.explain,
                ig_steps: config.ig_steps,
                thresholds: thresholds.clone(),
            },
            loaded_tx,
        )?;
        let mut groups = config.groups.clone();
        if let Some(t) = &thresholds
            && !groups.contains(&t.group_column)
        {
            groups.insert(0, t.group_column.clone());
        }
        let app = Arc::new(App {
            limits: Limits {
                max_concurrent_requests: config.max_concurrent_requests,
                max_client_batch_size: config.max_client_batch_size,
                payload_limit: config.payload_limit,
                request_timeout: config.request_timeout,
            },
            keys: keys.map(|k| RwLock::new(Arc::new(k))),
            engine,
            thresholds,
            group_attributes: groups,
            draining: AtomicBool::new(false),
            permits: Arc::new(Semaphore::new(config.max_concurrent_requests)),
            metrics: crate::metrics::handle(),
            decisions: Mutex::new(DecisionCache::new(config.feedback_window)),
            log,
            id_prefix: random_prefix(),
            next_id: AtomicU64::new(1),
            version: env!("CARGO_PKG_VERSION"),
            model_id: config.model_dir.display().to_string(),
            max_batch_tokens: config.max_batch_tokens,
            ig_steps: config.ig_steps,
            monitor: OnceLock::new(),
            value_profile: value_profile(&config.model_dir),
        });
        metrics::gauge!(crate::metrics::READY).set(0.0);
        let upkeep = {
            let handle = app.metrics.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    handle.run_upkeep();
                }
            })
        };
        let hangup = tokio::spawn(reload_keys_on_hangup(Arc::clone(&app), config.keys.clone()));
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let load_failed = Arc::new(Mutex::new(None));
        let watcher = {
            use tokio::signal::unix::{SignalKind, signal};
            // Registered before the model loads: a SIGTERM while loading
            // drains too.
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            let app = Arc::clone(&app);
            let load_failed = Arc::clone(&load_failed);
            let monitor_settings = config.monitor.clone();
            let model_dir = config.model_dir.clone();
            let mut reference = reference;
            tokio::spawn(async move {
                let mut loaded_rx = loaded_rx;
                let mut ready = false;
                loop {
                    tokio::select! {
                        r = &mut loaded_rx, if !ready => match r {
                            Ok(Ok(())) => {
                                match start_monitor(&app, &monitor_settings, reference.take()) {
                                    Ok(()) => {
                                        ready = true;
                                        tracing::info!("model loaded; serving");
                                        metrics::gauge!(crate::metrics::READY).set(1.0);
                                    }
                                    Err(e) => {
                                        *load_failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                                        break;
                                    }
                                }
                            }
                            Ok(Err(e)) => {
                                *load_failed.lock().unwrap_or_else(|p| p.into_inner()) =
                                    Some(Error::Model { dir: model_dir.clone(), source: e });
                                break;
                            }
                            Err(_) => break,
                        },
                        _ = term.recv() => break,
                        _ = int.recv() => break,
                    }
                }
                tracing::info!("draining");
                app.draining.store(true, Ordering::SeqCst);
                metrics::gauge!(crate::metrics::READY).set(0.0);
                let _ = stop_tx.send(());
            })
        };
        let shutdown = async move {
            let _ = stop_rx.await;
        };
        let routes = router(Arc::clone(&app));
        crate::tls::serve(listener, routes, shutdown, config.tls.as_ref()).await?;
        watcher.abort();
        hangup.abort();
        upkeep.abort();
        // Every handler has answered; the model thread finishes its queue.
        app.engine.shutdown();
        app.log.close();
        if let Some(e) = load_failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        tracing::info!("drained; stopped");
        Ok(())
    }
}

/// Re-reads the keys file on every SIGHUP; a file that no longer parses
/// keeps the keys in force (and says why).
async fn reload_keys_on_hangup(app: Arc<App>, path: Option<PathBuf>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        let (Some(path), Some(store)) = (&path, &app.keys) else {
            tracing::info!("SIGHUP: no keys file to re-read");
            continue;
        };
        match KeyStore::load(path) {
            Ok(keys) => {
                let active = keys.active(std::time::SystemTime::now());
                *store.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
                tracing::info!(active, "SIGHUP: re-read {}", path.display());
            }
            Err(e) => tracing::error!("SIGHUP: kept the previous keys: {e}"),
        }
    }
}

/// Starts the live monitor once the model's labels are known; without
/// group attributes there is nothing to monitor (and `/fairness` says so).
fn start_monitor(
    app: &App,
    settings: &MonitorSettings,
    reference: Option<Reference>,
) -> Result<()> {
    if app.group_attributes.is_empty() {
        if settings.reference.is_some()
            || !settings.thresholds.is_empty()
            || settings.alert_webhook.is_some()
        {
            return Err(Error::Config {
                flag: "--group",
                message: "--reference, fairness limits and --alert-webhook need a group attribute to monitor \
                          (--group NAME, or a model folder with thresholds.json)"
                    .into(),
            });
        }
        return Ok(());
    }
    let Some(info) = app.engine.info() else {
        return Ok(());
    };
    let monitor = Monitor::new(
        &info.labels,
        app.group_attributes.clone(),
        settings,
        reference,
    )?;
    let _ = app.monitor.set(monitor);
    Ok(())
}

/// The value profile of a folder `valor remodel` wrote (`<out>/model`
/// beside `<out>/remodel.json`): V_T, V_D and their distance, for `/info`.
fn value_profile(model_dir: &std::path::Path) -> Option<serde_json::Value> {
    let path = model_dir.parent()?.join("remodel.json");
    let text = valor_fsio::read_to_string_capped(&path, 64 << 20).ok()?;
    let report: serde_json::Value = serde_json::from_str(&text).ok()?;
    let field = |k: &str| report.get(k).cloned();
    Some(serde_json::json!({
        "source": path.display().to_string(),
        "vt": field("vt")?,
        "vd": field("vd"),
        "distance_vt_vd": field("distance_vt_vd"),
        "reachable": field("reachable"),
    }))
}

fn random_prefix() -> String {
    let mut b = [0u8; 4];
    // Ids stay unique within a run through the counter; the prefix only
    // separates runs, so a failing generator falls back to the clock.
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        b = t.subsec_nanos().to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}
