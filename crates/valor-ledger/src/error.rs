//! The crate's one error type.

use std::path::PathBuf;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong opening, writing or reading a decision log. A broken
/// chain found by [`crate::verify`] is not an error but a
/// [`crate::Failure`] in its report; the reader returns it as
/// [`Error::Broken`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder could not be read, written, synced or listed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The log folder does not exist or holds no log file.
    #[error("{} holds no decision log (no `ledger-NNNNNN.jsonl` file)", path.display())]
    NoLog { path: PathBuf },
    /// An entry could not be logged: a number that JSON cannot hold, or an
    /// empty required field.
    #[error("cannot log this entry: {why}")]
    InvalidEntry { why: String },
    /// The writer's queue is full ([`crate::Ledger::try_append`]).
    #[error("the decision log's queue is full ({capacity} entries waiting to be written)")]
    QueueFull { capacity: usize },
    /// The writer thread stopped after an I/O failure; nothing more is
    /// logged. The message names the file and the cause.
    #[error("the decision log writer stopped: {why}")]
    WriterFailed { why: String },
    /// The writer was closed.
    #[error("the decision log is closed")]
    Closed,
    /// The chain is broken at a record (see [`crate::Failure`]).
    #[error("{0}")]
    Broken(crate::Failure),
    /// The last file ends inside a record (a write cut short by a crash).
    #[error("{0}")]
    TornTail(crate::TornTail),
}

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
