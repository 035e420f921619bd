//! The one error type of `valor-fair`.

use std::path::PathBuf;

/// Everything that can go wrong in `valor-fair`. Variants carry where it
/// happened (row, column, group, file) and, where we know it, how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A column does not have as many rows as `y_true`.
    #[error("column `{column}` has {actual} rows but `y_true` has {expected}")]
    LengthMismatch {
        column: String,
        expected: usize,
        actual: usize,
    },
    /// There are no rows to audit.
    #[error("no rows to {what}")]
    Empty { what: String },
    /// A label in the data is not one of the declared labels.
    #[error(
        "row {row}: `{column}` is `{value}`, which is not one of the labels {labels:?}; \
         declare every label (--labels) or drop the row"
    )]
    UnknownLabel {
        column: String,
        row: usize,
        value: String,
        labels: Vec<String>,
    },
    /// A label id is out of range for the label set.
    #[error("row {row}: label id {id} in `{column}` is out of range for {n_labels} labels")]
    LabelIdOutOfRange {
        column: String,
        row: usize,
        id: u32,
        n_labels: usize,
    },
    /// More distinct labels than [`crate::MAX_LABELS`].
    #[error(
        "more than {limit} distinct labels (for example {}); is an id or score column given as the label or prediction column?",
        examples.iter().map(|e| format!("`{e}`")).collect::<Vec<_>>().join(", ")
    )]
    TooManyLabels { limit: usize, examples: Vec<String> },
    /// A group column with so many distinct values that its confusion
    /// matrices would exceed [`crate::MAX_GROUP_CELLS`].
    #[error(
        "group column `{column}` has {levels} distinct values; with {labels} labels its confusion matrices would need more than {limit} cells: is it an id or free-text column rather than a group?"
    )]
    TooManyGroups {
        column: String,
        levels: usize,
        labels: usize,
        limit: usize,
    },
    /// The same label was declared twice.
    #[error("label `{label}` is declared twice; labels must be distinct")]
    DuplicateLabel { label: String },
    /// Fewer than two labels: nothing to classify.
    #[error(
        "need at least two labels, found {found:?}; declare the full label set (--labels a,b) \
         when the data holds only one"
    )]
    TooFewLabels { found: Vec<String> },
    /// A score is NaN or infinite.
    #[error("row {row}: score in `{column}` is {value}, not a finite number")]
    NonFiniteScore {
        column: String,
        row: usize,
        value: f64,
    },
    /// A score outside [0, 1] where counts bin scores.
    #[error(
        "row {row}: score in `{column}` is {value}, outside [0, 1]; counts bin scores of [0, 1] \
         (probabilities of the positive label)"
    )]
    ScoreOutOfRange {
        column: String,
        row: usize,
        value: f64,
    },
    /// A row's value is missing (null, or blank after trimming) where counts
    /// need one.
    #[error("row {row}: `{column}` is empty")]
    MissingValue { column: String, row: usize },
    /// A cell of counts (a counts file's row, 0-based) that cannot be counted.
    #[error("counts row {row}: {why}")]
    InvalidCounts { row: usize, why: String },
    /// Counts hold a group value outside the declared set of known groups.
    #[error(
        "`{column}` has the value `{value}` in the counts, a group that was never declared; \
         known groups are {known:?} (the caller said all groups are known)"
    )]
    UnseenCountedGroup {
        column: String,
        value: String,
        known: Vec<String>,
    },
    /// Scores were given for a task with more than two labels.
    #[error(
        "a score column needs a binary task (P(positive) per row) but there are {n_labels} labels; \
         drop --score-col for a multiclass audit"
    )]
    ScoresNeedBinary { n_labels: usize },
    /// A group column was given twice.
    #[error("group column `{column}` is given twice")]
    DuplicateGroupColumn { column: String },
    /// A group code is out of range for its levels.
    #[error("row {row}: group code {code} in `{column}` is out of range for {n_levels} levels")]
    GroupCodeOutOfRange {
        column: String,
        row: usize,
        code: u32,
        n_levels: usize,
    },
    /// A level of a group column is listed twice.
    #[error("group column `{column}` lists level `{level}` twice")]
    DuplicateGroupLevel { column: String, level: String },
    /// A group spec or setting names a column that is not in the input.
    #[error("group column `{column}` not found; group columns are: {available}; pass --group")]
    UnknownGroupColumn { column: String, available: String },
    /// No group column at all.
    #[error("no group columns to audit; pass at least one --group")]
    NoGroups,
    /// A row holds a group value outside the declared set of known groups.
    #[error(
        "row {row}: `{column}` is `{value}`, a group that was never declared; known groups are \
         {known:?} (the caller said all groups are known)"
    )]
    UnseenGroup {
        column: String,
        row: usize,
        value: String,
        known: Vec<String>,
    },
    /// A privileged group does not occur in the data.
    #[error(
        "privileged group `{group}` of `{spec}` does not occur in the data; groups are: {available}"
    )]
    UnknownPrivilegedGroup {
        spec: String,
        group: String,
        available: String,
    },
    /// Privileged groups were declared for a group spec that is not audited.
    #[error(
        "privileged groups are declared for `{spec}`, which is not audited; audited specs: {available}"
    )]
    PrivilegedSpecNotAudited { spec: String, available: String },
    /// Every group of a spec was declared privileged: nothing to compare with.
    #[error("every group of `{spec}` is privileged; AIF360's metrics need an unprivileged group")]
    NoUnprivilegedGroup { spec: String },
    /// Binary metrics need to know which label is positive.
    #[error(
        "cannot tell which of the labels {labels:?} is the positive (favourable) one; \
         set positive_label (labels 0/1, -1/1 and false/true are recognised)"
    )]
    PositiveLabelRequired { labels: Vec<String> },
    /// The positive label is not a label of the task.
    #[error("positive label `{label}` is not one of the labels {labels:?}")]
    UnknownPositiveLabel { label: String, labels: Vec<String> },
    /// A threshold cannot be checked in this audit.
    #[error("threshold on `{metric}` cannot be checked: {why}")]
    ThresholdNotApplicable { metric: String, why: String },
    /// A threshold expression does not parse.
    #[error("cannot parse threshold `{text}`: {why}")]
    ParseThreshold { text: String, why: String },
    /// A configuration value is out of range.
    #[error("invalid setting `{setting}`: {why}")]
    InvalidConfig { setting: String, why: String },
    /// A group at prediction time was not seen when the mitigation was fitted.
    #[error("group `{group}` (row {row}) was not seen when fitting; fitted groups are: {known}")]
    UnknownGroup {
        group: String,
        row: usize,
        known: String,
    },
    /// Inputs that must pair up row by row do not.
    #[error("{what}: {why}")]
    Mismatch { what: String, why: String },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON document does not parse or does not serialise.
    #[error("{what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
