//! The one error type of `valor-data`. Every variant says where the problem is
//! (file, row, column) and, where we know it, how to fix it.

use std::path::PathBuf;

/// Errors from reading, validating, splitting, tokenizing and writing data.
///
/// Row numbers are 1-based data rows (the header, when there is one, is not
/// counted), so `row 1` is the first record of the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: unsupported file extension `{ext}`; use .csv, .tsv, .parquet, .jsonl or .ndjson"
    )]
    UnknownFormat { path: PathBuf, ext: String },
    #[error("{path}: the file is not {expected}: {why}")]
    WrongFormat {
        path: PathBuf,
        expected: &'static str,
        why: String,
    },
    #[error("{path}: row {row}: bytes that are not valid UTF-8 (byte offset {offset})")]
    NotUtf8 {
        path: PathBuf,
        row: usize,
        offset: usize,
    },
    #[error("{path}: could not parse: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "{path}: row {row}: a quote `\"` opens a field that is never closed (the rest of the file would be read as one value); double a quote inside a quoted field (`\"\"`) or quote the whole field"
    )]
    UnterminatedQuote { path: PathBuf, row: usize },
    #[error(
        "{path}: row {row} is longer than {limit_mib} MiB; a row that long is not a dataset row (an unterminated quote?)"
    )]
    RowTooLong {
        path: PathBuf,
        row: usize,
        limit_mib: usize,
    },
    #[error("{path}: column `{column}` not found; columns are: {}{}", available.join(", "), hint.as_deref().map(|h| format!("; {h}")).unwrap_or_default())]
    MissingColumn {
        path: PathBuf,
        column: String,
        available: Vec<String>,
        hint: Option<String>,
    },
    #[error("{path}: row {row}, column `{column}`: {message}")]
    BadValue {
        path: PathBuf,
        row: usize,
        column: String,
        message: String,
    },
    #[error("{path}: row {row}, column `{column}`: unknown label `{value}`; known labels are: {}", known.join(", "))]
    UnknownLabel {
        path: PathBuf,
        row: usize,
        column: String,
        value: String,
        known: Vec<String>,
    },
    #[error("{path}: row {row}, column `{column}`: empty value (null or blank){}", hint.as_deref().map(|h| format!("; {h}")).unwrap_or_default())]
    Empty {
        path: PathBuf,
        row: usize,
        column: String,
        hint: Option<String>,
    },
    #[error("{path}: the file has no data rows")]
    NoRows { path: PathBuf },
    #[error("dataset spec {origin}: {message}")]
    Spec { origin: String, message: String },
    #[error("tokenizer {origin}: {message}")]
    Tokenizer { origin: String, message: String },
    #[error("split: {0}")]
    Split(String),
    /// A problem with the three files of explicit splits (`--train`,
    /// `--valid`, `--test`): `path` is the file at fault.
    #[error("{path}: {message}")]
    SplitFiles { path: PathBuf, message: String },
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn parse(path: impl Into<PathBuf>, message: impl ToString) -> Self {
        Self::Parse {
            path: path.into(),
            message: message.to_string(),
        }
    }
}
