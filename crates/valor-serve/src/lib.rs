//! `valor serve`: a Valor model folder over HTTP, with the fair decision
//! rule, explanations, scoped API keys and Prometheus metrics.
//!
//! Owns: the HTTP API (text-embeddings-inference's `POST /predict`,
//! Valor's `POST /decide` and `/feedback`, `GET /health`, `/info`,
//! `/metrics`, `/openapi.json`) and its status codes ([`api`]); dynamic
//! batching on one model thread behind one bounded queue ([`engine`]);
//! API keys `valor_<id>_<secret>` with scopes, expiry, revocation and
//! per-key rate limits, stored hashed and compared in constant time
//! ([`keys`]); the middleware (request ids, the per-request record,
//! draining, authentication, body limits, timeouts) and thin handlers
//! ([`routes`]); start, SIGHUP reload of the keys, SIGTERM drain
//! ([`server`]); HTTPS with rustls behind the `tls` feature.
//!
//! Does not know about: training, data files, fairness metric definitions
//! (valor-fair), the command line. The model folder is loaded through
//! `valor_train::Classifier` and its `thresholds.json` applied through
//! `valor_train::ThresholdsFile`, exactly as `valor predict` does. It prints
//! nothing: the process log goes through `tracing` (the CLI installs the
//! subscriber), and the bound address is [`Server::local_addr`]'s to print.
//!
//! Main types: [`ServeConfig`] (what `valor serve` was asked), [`Server`]
//! ([`Server::bind`], then [`Server::run`]), [`KeysFile`] and [`KeyStore`].

pub mod alert;
pub mod api;
pub mod engine;
mod error;
pub mod keys;
pub mod log;
pub mod metrics;
pub mod monitor;
pub mod routes;
pub mod server;
mod tls;

pub use error::{Error, Result};
pub use keys::{KeyRecord, KeyStore, KeysFile, NewKey, Scope};
pub use monitor::MonitorSettings;
pub use server::{ServeConfig, Server};
