//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can stop a training run. Variants name the file, the
/// configuration field, the epoch and step they concern.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid.
    #[error("invalid training configuration: `{field}` {message}")]
    Config { field: String, message: String },
    /// The dataset cannot be trained on as configured (e.g. an empty split,
    /// a fairness group column that does not exist).
    #[error("{}: {message}", path.display())]
    Data { path: PathBuf, message: String },
    /// Loading, validating, splitting or tokenizing the data failed.
    #[error(transparent)]
    Dataset(#[from] valor_data::Error),
    /// Building, loading, running or saving the model failed.
    #[error(transparent)]
    Model(#[from] valor_bert::Error),
    /// Computing fairness metrics, or fitting or applying a
    /// post-processing rule (`valor remodel`), failed.
    #[error("fairness: {0}")]
    Fairness(#[from] valor_fair::Error),
    /// The value algebra (`valor-values`) refused a number or a setting:
    /// a `values.toml` that cannot be read, or a profile it cannot score.
    #[error("values: {0}")]
    Values(#[from] valor_values::Error),
    /// A target dimension of a `values.toml` is measured by a number
    /// `valor remodel` never computes.
    #[error(
        "{file}: dimension `{dimension}` is measured by `{measure}`, which `valor remodel` cannot compute; it computes {supported}"
    )]
    Unmeasurable {
        file: String,
        dimension: String,
        measure: String,
        supported: String,
    },
    /// A run folder or a file in it cannot be used as asked (e.g. remodeled
    /// into a folder that already holds a remodeling, a thresholds file of
    /// another schema).
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file of the run folder is unreadable.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A checkpoint file is truncated, corrupt or from another format.
    #[error("{}: not a usable checkpoint: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    /// The run folder already holds a run and neither resume nor overwrite
    /// was asked for.
    #[error(
        "{} already holds a training run; continue it with `--resume {}` or start over with `--overwrite`",
        dir.display(),
        dir.display()
    )]
    RunExists { dir: PathBuf },
    /// A folder that Valor would write into holds files Valor did not
    /// write there (a `config.json` of something else, a user's files where
    /// Valor must replace a folder); nothing was changed.
    #[error("{}: {why}", dir.display())]
    NotValorsFolder { dir: PathBuf, why: String },
    /// `--resume` found nothing to continue from.
    #[error("{}: nothing to resume: {message}", dir.display())]
    NothingToResume { dir: PathBuf, message: String },
    /// The loss or the gradient norm became NaN or infinite. The run stops;
    /// the last good checkpoint is kept.
    #[error(
        "the {what} became {value} at epoch {epoch}, optimizer step {step}; the run stopped{}. Lower the learning rate (--lr), clip gradients (--max-grad-norm) or check the example weights",
        last_checkpoint.as_ref().map(|p| format!(" and kept the last good checkpoint {}", p.display())).unwrap_or_else(|| " before any checkpoint was written".into())
    )]
    NonFinite {
        what: &'static str,
        value: f64,
        epoch: usize,
        step: u64,
        last_checkpoint: Option<PathBuf>,
    },
    /// Reading a tensor back from the device failed.
    #[error("reading `{name}` from the device failed: {message}")]
    TensorRead { name: String, message: String },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(field: &str, message: impl Into<String>) -> Self {
        Error::Config {
            field: field.to_string(),
            message: message.into(),
        }
    }
}
