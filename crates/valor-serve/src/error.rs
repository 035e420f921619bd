//! The one error type of this crate: what stops a server from starting or
//! a keys file from being read or written. Errors of single requests are
//! HTTP answers ([`crate::api::ApiError`]), not this type.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can stop `valor serve` or `valor keys`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A serve setting is invalid (names the flag).
    #[error("{flag}: {message}")]
    Config { flag: &'static str, message: String },
    /// The keys file cannot be read, parsed or used.
    #[error("{}: {message}", path.display())]
    Keys { path: PathBuf, message: String },
    /// Writing the keys file failed.
    #[error(transparent)]
    Write(#[from] valor_fsio::WriteError),
    /// Binding the listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Binding a non-loopback address without `--keys`.
    #[error(
        "refusing to serve {addr} without --keys: any host that reaches it could use the model. \
         Pass --keys FILE (make one with `valor keys create`), bind a loopback address \
         (127.0.0.1), or pass --insecure-no-auth"
    )]
    Unauthenticated { addr: SocketAddr },
    /// Loading the model folder failed.
    #[error("loading the model folder {}: {source}", dir.display())]
    Model {
        dir: PathBuf,
        #[source]
        source: Box<valor_train::Error>,
    },
    /// The decision log (`--log-dir`) cannot be opened.
    #[error("the decision log: {0}")]
    Log(String),
    /// The live monitor cannot be set up (`--reference`, thresholds).
    #[error("{0}")]
    Monitor(String),
    /// The TLS certificate or key cannot be used.
    #[error("{}: {message}", path.display())]
    Tls { path: PathBuf, message: String },
    /// Serving failed (an I/O error of the listener or the runtime).
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
