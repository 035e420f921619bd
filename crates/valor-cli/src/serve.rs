//! `valor serve`: a model folder over HTTP (see the `valor_serve` crate).
//! Prints the bound address on standard output as its first line
//! (`listening on http://127.0.0.1:3000`), so scripts and tests that ask
//! for port 0 can read the port; the request log goes to standard error.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use valor_bert::Backend;
use valor_serve::{ServeConfig, Server};

use crate::Outcome;
use crate::common::MonitorFlags;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Model folder, any that `valor predict` accepts; its thresholds.json
    /// decides `/decide`'s labels as `valor predict` does.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// A PEFT LoRA adapter folder applied to --model, the base (as `valor
    /// predict --adapter`).
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// Keys file (make one with `valor keys create`); requests then need
    /// `Authorization: Bearer valor_<id>_<secret>`. Re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub keys: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// Serve a non-loopback address without --keys (anyone who reaches it
    /// can use the model).
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Compute backend: cpu, wgpu, cuda (the latter two need the cargo feature).
    #[arg(long, value_name = "NAME", default_value = "cpu")]
    pub backend: Backend,
    /// Arithmetic of the encoder's Linear layers for decisions, as `valor
    /// predict --precision`: fp32, bf16 or int8 on the CPU (explanations
    /// stay fp32); fp32, bf16 or f16 on wgpu and cuda (the device's float
    /// dtype, explanations included). `/info`'s model_dtype names it. Default:
    /// int8 for a folder `valor quantize` wrote (its stored int8 weights,
    /// as `valor predict` runs it), fp32 otherwise.
    #[arg(long, value_name = "P")]
    pub precision: Option<valor_bert::Precision>,
    /// Maximum tokens per text (longer texts are truncated, or refused with
    /// "truncate": false).
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub max_len: usize,
    /// Token budget of one batch: queued requests are batched up to it.
    #[arg(long, value_name = "N", default_value_t = 16384)]
    pub max_batch_tokens: usize,
    /// Tokens per forward pass: a batch runs as forwards of about this many
    /// tokens in arrival order, each request answered once its last text is
    /// scored. Default: 2048 on the CPU (smaller forwards stay in the cache
    /// and answer sooner), the whole batch on a GPU.
    #[arg(long, value_name = "N")]
    pub max_forward_tokens: Option<usize>,
    /// Requests in flight at once; more are answered 429.
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub max_concurrent_requests: usize,
    /// Texts per request; more are answered 413.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub max_client_batch_size: usize,
    /// Largest request body in bytes; larger are answered 413.
    #[arg(long, value_name = "BYTES", default_value_t = 2_000_000)]
    pub payload_limit: usize,
    /// Seconds before a request is answered 408.
    #[arg(long, value_name = "S", default_value_t = 60)]
    pub request_timeout: u64,
    /// Integration points of integrated gradients for "explain": true.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub ig_steps: usize,
    /// Do not load the differentiable copy of the model that explanations
    /// need (saves its memory; "explain": true is then a 422).
    #[arg(long)]
    pub no_explain: bool,
    /// A group attribute `/decide` inputs may carry (repeatable); the
    /// column thresholds.json reads is always one.
    #[arg(long = "group", value_name = "NAME")]
    pub groups: Vec<String>,
    /// Decisions that `/feedback` can still find.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub feedback_window: usize,
    /// Folder of the decision log.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Write input texts to the decision log (by default only their SHA-256).
    #[arg(long)]
    pub log_inputs: bool,
    #[command(flatten)]
    pub live: MonitorFlags,
    /// POST each fairness breach and recovery here as JSON (http://, or
    /// https:// with the cargo feature `tls`).
    #[arg(long, value_name = "URL")]
    pub alert_webhook: Option<String>,
    /// HTTPS certificate chain (PEM; needs the cargo feature `tls`).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// HTTPS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

pub fn run(args: ServeArgs) -> Result<Outcome> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    let mut config = ServeConfig::new(args.model.clone());
    config.adapter = args.adapter;
    config.keys = args.keys;
    config.addr = args.addr;
    config.insecure_no_auth = args.insecure_no_auth;
    config.backend = args.backend;
    config.precision = match args.precision {
        Some(p) => p,
        None => crate::quantize::default_precision(
            &config.model_dir,
            args.backend,
            config.adapter.is_none(),
        )?,
    };
    config.max_len = args.max_len;
    config.max_batch_tokens = args.max_batch_tokens;
    config.max_forward_tokens = args.max_forward_tokens;
    config.max_concurrent_requests = args.max_concurrent_requests;
    config.max_client_batch_size = args.max_client_batch_size;
    config.payload_limit = args.payload_limit;
    config.request_timeout = Duration::from_secs(args.request_timeout.max(1));
    config.explain = !args.no_explain;
    config.ig_steps = args.ig_steps;
    config.groups = args.groups;
    config.feedback_window = args.feedback_window;
    config.log_dir = args.log_dir;
    config.log_inputs = args.log_inputs;
    config.tls = args.tls_cert.zip(args.tls_key);
    config.monitor.thresholds = args.live.thresholds();
    config.monitor.window = args.live.window;
    config.monitor.window_seconds = args.live.window_seconds;
    config.monitor.reference = args.live.reference;
    config.monitor.min_feedback_rows = args.live.min_feedback;
    config.monitor.alert_webhook = args.alert_webhook;
    let https = config.tls.is_some();
    let server = Server::bind(config)?;
    let addr = server.local_addr()?;
    let scheme = if https { "https" } else { "http" };
    println!("listening on {scheme}://{addr}");
    if !server.authenticated() {
        eprintln!(
            "serve: no --keys: every client that reaches {addr} may use every route{}",
            if addr.ip().is_loopback() {
                " (loopback only)"
            } else {
                " (--insecure-no-auth)"
            }
        );
    }
    server
        .run()
        .with_context(|| format!("serving {}", args.model.display()))?;
    Ok(Outcome::Ok)
}
