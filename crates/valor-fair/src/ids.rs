//! Label and group ids, and the ordered label set.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// [`LabelId`]: a label's index in a [`LabelSet`] (0-based, in the set's
/// order); [`GroupId`]: a group's index (one value of a group column, or one
/// combination of values for an intersection, in sorted order of the
/// values). Both live in valor-base, shared with valor-data.
pub use valor_base::{GroupId, LabelId};

/// The labels of a task, in a fixed order that every confusion matrix and
/// per-class metric follows. For ordinal audits the order is the ordinal
/// order (`conservative < balanced < growth`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSet {
    names: Vec<String>,
    index: HashMap<String, LabelId>,
}

/// The most labels a [`LabelSet`] holds. Per-label storage (confusion
/// matrices, per-class rates) grows with the square of the label count, so a
/// column of ids or scores mistaken for labels would otherwise make an audit
/// allocate without bound.
pub const MAX_LABELS: usize = 1024;

fn too_many_labels<'a>(names: impl Iterator<Item = &'a str>) -> Error {
    Error::TooManyLabels {
        limit: MAX_LABELS,
        examples: names.take(3).map(str::to_owned).collect(),
    }
}

impl LabelSet {
    /// Labels in the given order; they must be distinct and at least two.
    pub fn new<S: AsRef<str>>(names: &[S]) -> Result<Self> {
        if names.len() > MAX_LABELS {
            return Err(too_many_labels(names.iter().map(AsRef::as_ref)));
        }
        let names: Vec<String> = names.iter().map(|s| s.as_ref().to_owned()).collect();
        if names.len() < 2 {
            return Err(Error::TooFewLabels { found: names });
        }
        let mut index = HashMap::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let id = LabelId::new(u32::try_from(i).map_err(|_| Error::InvalidConfig {
                setting: "labels".into(),
                why: "more than 2^32 labels".into(),
            })?);
            if index.insert(name.clone(), id).is_some() {
                return Err(Error::DuplicateLabel {
                    label: name.clone(),
                });
            }
        }
        Ok(Self { names, index })
    }

    /// The distinct values of both columns, sorted as the Python peers sort
    /// them: numerically when every label is an integer (pandas reads such a
    /// column as integers), otherwise by string.
    pub fn infer<S: AsRef<str>>(y_true: &[S], y_pred: &[S]) -> Result<Self> {
        let mut seen: HashMap<&str, ()> = HashMap::new();
        for s in y_true.iter().chain(y_pred) {
            seen.entry(s.as_ref()).or_insert(());
            if seen.len() > MAX_LABELS {
                return Err(too_many_labels(seen.keys().copied()));
            }
        }
        let mut names: Vec<&str> = seen.into_keys().collect();
        sort_values(&mut names);
        Self::new(&names)
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Always false: a label set holds at least two labels.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The labels in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The id of a label name.
    pub fn id(&self, name: &str) -> Option<LabelId> {
        self.index.get(name).copied()
    }

    /// The name of a label id (`None` when out of range).
    pub fn name(&self, id: LabelId) -> Option<&str> {
        self.names.get(id.index()).map(String::as_str)
    }

    /// Maps a column of label strings to ids; an unknown label is an error
    /// that names `column` and the row.
    pub fn encode<S: AsRef<str>>(&self, column: &str, values: &[S]) -> Result<Vec<LabelId>> {
        values
            .iter()
            .enumerate()
            .map(|(row, v)| {
                self.id(v.as_ref()).ok_or_else(|| Error::UnknownLabel {
                    column: column.to_owned(),
                    row,
                    value: v.as_ref().to_owned(),
                    labels: self.names.clone(),
                })
            })
            .collect()
    }

    /// The positive label of a binary task when the labels make it plain:
    /// `{0, 1}`, `{-1, 1}` or `{false, true}` (any case), as fairlearn
    /// accepts without a `pos_label`.
    pub fn default_positive(&self) -> Option<LabelId> {
        if self.len() != 2 {
            return None;
        }
        let lower: Vec<String> = self.names.iter().map(|s| s.to_ascii_lowercase()).collect();
        let pick = |pos: &str, neg: &str| -> Option<LabelId> {
            let p = lower.iter().position(|s| s == pos)?;
            lower.iter().position(|s| s == neg)?;
            Some(LabelId::new(p as u32))
        };
        pick("1", "0")
            .or_else(|| pick("1", "-1"))
            .or_else(|| pick("true", "false"))
            .or_else(|| pick("1.0", "0.0"))
    }
}

/// Sorts values as pandas sorts a column read from CSV: numerically when
/// every value parses as a number, otherwise by string (code point order).
pub(crate) fn sort_values<S: AsRef<str>>(values: &mut [S]) {
    let numeric: Option<Vec<f64>> = values
        .iter()
        .map(|s| {
            s.as_ref()
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
        })
        .collect();
    if numeric.is_some() {
        values.sort_by(|a, b| {
            let x: f64 = a.as_ref().trim().parse().unwrap_or(f64::NAN);
            let y: f64 = b.as_ref().trim().parse().unwrap_or(f64::NAN);
            x.total_cmp(&y).then_with(|| a.as_ref().cmp(b.as_ref()))
        });
    } else {
        values.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infer_sorts_numbers_numerically_and_strings_by_code_point() {
        let l = LabelSet::infer(&["10", "2"], &["1", "2"]).unwrap();
        assert_eq!(l.names(), ["1", "2", "10"]);
        let l = LabelSet::infer(&["growth", "balanced"], &["conservative"]).unwrap();
        assert_eq!(l.names(), ["balanced", "conservative", "growth"]);
    }

    #[test]
    fn unknown_label_names_row_and_column() {
        let l = LabelSet::new(&["0", "1"]).unwrap();
        let e = l.encode("y_pred", &["0", "1", "2"]).unwrap_err();
        assert!(matches!(e, Error::UnknownLabel { row: 2, ref column, .. } if column == "y_pred"));
    }

    #[test]
    fn default_positive_only_for_plain_labels() {
        assert_eq!(
            LabelSet::new(&["0", "1"]).unwrap().default_positive(),
            Some(LabelId::new(1))
        );
        assert_eq!(
            LabelSet::new(&["True", "False"])
                .unwrap()
                .default_positive(),
            Some(LabelId::new(0))
        );
        assert_eq!(
            LabelSet::new(&["no", "yes"]).unwrap().default_positive(),
            None
        );
    }

    #[test]
    fn rejects_duplicates_and_single_labels() {
        assert!(matches!(
            LabelSet::new(&["a", "a"]),
            Err(Error::DuplicateLabel { .. })
        ));
        assert!(matches!(
            LabelSet::new(&["a"]),
            Err(Error::TooFewLabels { .. })
        ));
    }
}
