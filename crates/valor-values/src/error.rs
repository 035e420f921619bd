//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in `valor-values`. Variants say where: the
/// `values.toml` file (`file`), the key or dimension, the offending value.
/// Messages say how to fix the problem when we know.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a file failed.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing a file (atomically) failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax errors, unknown keys in fixed tables, wrong value types.
    /// `message` is the TOML parser's, which names the key, line and column.
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    /// A key in `[target]`, `[weights]` or `[measure]` that is not a known
    /// dimension.
    #[error(
        "{file}: unknown dimension `{key}` in [{table}]{hint}; known dimensions: {known}. \
         Declare a custom one under [dimensions.{key}] with a description and map it in [measure]"
    )]
    UnknownDimension {
        file: String,
        table: &'static str,
        key: String,
        known: String,
        /// ` (did you mean `x`?)` when a known name is close, else empty.
        hint: String,
    },
    /// A dimension named in `[weights]`, `[measure]` or `[dimensions]` that
    /// has no target.
    #[error(
        "{file}: [{table}] names `{dimension}`, which has no entry in [target]; add `{dimension} = <0..1>` to [target] or remove it"
    )]
    NotTargeted {
        file: String,
        table: &'static str,
        dimension: String,
    },
    /// A target outside `[0, 1]` (or not finite).
    #[error("{file}: target for `{dimension}` is {value}; targets must lie in [0, 1]")]
    TargetOutOfRange {
        file: String,
        dimension: String,
        value: f64,
    },
    /// A negative or non-finite weight.
    #[error("{file}: weight for `{dimension}` is {value}; weights must be finite and >= 0")]
    InvalidWeight {
        file: String,
        dimension: String,
        value: f64,
    },
    /// Every weight is zero, so every distance would be zero.
    #[error(
        "{file}: every weight is 0, so all profiles would be at distance 0; give at least one dimension a positive weight"
    )]
    AllWeightsZero { file: String },
    /// `[target]` is empty.
    #[error("{file}: [target] is empty; name at least one dimension, e.g. `fairness = 0.9`")]
    NoTarget { file: String },
    /// An unknown name for a distance metric, measure or policy.
    #[error("{file}: unknown {what} `{value}` for `{key}`; expected one of: {expected}")]
    UnknownName {
        file: String,
        what: &'static str,
        key: String,
        value: String,
        expected: String,
    },
    /// A measure that cannot score this dimension (e.g. `fairness = "macro_f1"`).
    #[error(
        "{file}: measure `{measure}` cannot score dimension `{dimension}`; choose one of: {allowed}"
    )]
    MeasureNotForDimension {
        file: String,
        dimension: String,
        measure: String,
        allowed: String,
    },
    /// A custom dimension without a measure: it could never be measured.
    #[error(
        "{file}: custom dimension `{dimension}` has no measure; add `{dimension} = \"extra.<metric>\"` (or another measure) to [measure]"
    )]
    MissingMeasure { file: String, dimension: String },
    /// A measure that needs a budget which is not set.
    #[error(
        "{file}: dimension `{dimension}` uses measure `{measure}`, which needs `{key}` > 0 under [efficiency]"
    )]
    MissingBudget {
        file: String,
        dimension: String,
        measure: String,
        key: &'static str,
    },
    /// Any other setting with an invalid value.
    #[error("{file}: `{key}` = {value} is invalid: {reason}")]
    InvalidSetting {
        file: String,
        key: String,
        value: String,
        reason: String,
    },
    /// Under `unmeasured = "error"`, a dimension could not be measured.
    #[error(
        "dimension `{dimension}` cannot be measured: {reason} (values.toml sets `unmeasured = \"error\"`; set it to \"exclude\" to report it as NOT MEASURED instead)"
    )]
    NotMeasured { dimension: String, reason: String },
    /// No dimension at all could be measured.
    #[error(
        "none of the target dimensions can be measured ({reasons}); there is nothing to optimise"
    )]
    NothingMeasured { reasons: String },
    /// An evaluation result outside the range its measure needs.
    #[error(
        "dimension `{dimension}`: {field} = {value} is outside {expected}; check how the evaluation computed it"
    )]
    MetricOutOfRange {
        dimension: String,
        field: String,
        value: f64,
        expected: &'static str,
    },
    /// Vectors (or a vector and a space) with different numbers of dimensions.
    #[error("{context}: expected {expected} dimensions, got {actual}")]
    DimensionMismatch {
        context: &'static str,
        expected: usize,
        actual: usize,
    },
    /// A profile lacks a dimension the space needs (or has it NOT MEASURED).
    #[error("{context}: dimension `{dimension}` is missing or NOT MEASURED")]
    MissingDimension {
        context: &'static str,
        dimension: String,
    },
    /// A NaN or infinite coordinate or parameter.
    #[error("{what}: value {value} at index {index} is not finite")]
    NonFinite {
        what: &'static str,
        index: usize,
        value: f64,
    },
    /// A parameter outside its documented range (eta, alpha, tolerance, ...).
    #[error("{name} = {value} is outside {expected}")]
    ParameterOutOfRange {
        name: &'static str,
        value: f64,
        expected: &'static str,
    },
    /// An operation that needs at least one point got none.
    #[error("{context}: no candidates given")]
    Empty { context: &'static str },
    /// Two dimensions with the same name, or an invalid name.
    #[error("invalid dimension name `{name}`: {reason}")]
    InvalidDimensionName { name: String, reason: &'static str },
    /// Serialising a report failed.
    #[error("cannot serialise the report: {0}")]
    Json(#[from] serde_json::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
