//! What an audit reads: labels, predictions, optional scores and group
//! columns, validated once on construction.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::ids::{LabelId, LabelSet, sort_values};

/// The most confusion-matrix cells (groups × labels × labels) one group
/// column may need: 2^24 cells (128 MiB of counts). A column with more
/// distinct values is not a sensitive attribute (an id? free text?).
pub const MAX_GROUP_CELLS: usize = 1 << 24;

/// One group (sensitive feature) column, dictionary-encoded: `levels` are
/// the distinct values in sorted order and `codes[row]` indexes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupColumn {
    name: String,
    levels: Vec<String>,
    codes: Vec<u32>,
}

impl GroupColumn {
    /// Encodes a column of strings; levels are sorted as pandas sorts group
    /// keys (numerically when every value is a number, else by string).
    pub fn from_values<S: AsRef<str>>(name: &str, values: &[S]) -> Self {
        let mut first: HashMap<&str, u32> = HashMap::new();
        let mut raw: Vec<u32> = Vec::with_capacity(values.len());
        let mut order: Vec<&str> = Vec::new();
        for v in values {
            let v = v.as_ref();
            let next = order.len() as u32;
            let code = *first.entry(v).or_insert_with(|| {
                order.push(v);
                next
            });
            raw.push(code);
        }
        let mut sorted = order.clone();
        sort_values(&mut sorted);
        let rank: HashMap<&str, u32> = sorted
            .iter()
            .enumerate()
            .map(|(i, s)| (*s, i as u32))
            .collect();
        let remap: Vec<u32> = order.iter().map(|s| rank[s]).collect();
        let codes = raw.into_iter().map(|c| remap[c as usize]).collect();
        Self {
            name: name.to_owned(),
            levels: sorted.into_iter().map(str::to_owned).collect(),
            codes,
        }
    }

    /// A column already encoded by the caller. `levels` must be distinct and
    /// every code in range; levels are re-sorted (codes follow) so that group
    /// order is the same however the caller numbered them.
    pub fn from_codes(name: &str, levels: Vec<String>, codes: Vec<u32>) -> Result<Self> {
        let mut seen = HashMap::with_capacity(levels.len());
        for l in &levels {
            if seen.insert(l.as_str(), ()).is_some() {
                return Err(Error::DuplicateGroupLevel {
                    column: name.to_owned(),
                    level: l.clone(),
                });
            }
        }
        if let Some((row, &code)) = codes
            .iter()
            .enumerate()
            .find(|(_, c)| **c as usize >= levels.len())
        {
            return Err(Error::GroupCodeOutOfRange {
                column: name.to_owned(),
                row,
                code,
                n_levels: levels.len(),
            });
        }
        let mut sorted: Vec<&str> = levels.iter().map(String::as_str).collect();
        sort_values(&mut sorted);
        let rank: HashMap<&str, u32> = sorted
            .iter()
            .enumerate()
            .map(|(i, s)| (*s, i as u32))
            .collect();
        let remap: Vec<u32> = levels.iter().map(|l| rank[l.as_str()]).collect();
        let codes = codes.into_iter().map(|c| remap[c as usize]).collect();
        Ok(Self {
            name: name.to_owned(),
            levels: sorted.into_iter().map(str::to_owned).collect(),
            codes,
        })
    }

    /// The column name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Distinct values, sorted; `codes` index this.
    pub fn levels(&self) -> &[String] {
        &self.levels
    }
    /// Per-row index into [`levels`](Self::levels).
    pub fn codes(&self) -> &[u32] {
        &self.codes
    }
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.codes.len()
    }
    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }
}

/// The rows to audit: true labels, predictions, optional scores
/// (P(positive label) per row, binary tasks only) and group columns.
/// Construction checks lengths, labels and scores, and names the row and
/// column of the first problem.
#[derive(Clone, Debug)]
pub struct AuditInput {
    labels: LabelSet,
    y_true: Vec<LabelId>,
    y_pred: Vec<LabelId>,
    scores: Option<Vec<f64>>,
    groups: Vec<GroupColumn>,
}

impl AuditInput {
    /// From label strings. `labels` fixes the label set and its order (give
    /// it for ordinal labels, or when the data may miss a label); `None`
    /// infers the sorted union of both columns.
    pub fn from_strings<S: AsRef<str>>(
        y_true: &[S],
        y_pred: &[S],
        labels: Option<LabelSet>,
    ) -> Result<Self> {
        if y_true.len() != y_pred.len() {
            return Err(Error::LengthMismatch {
                column: "y_pred".into(),
                expected: y_true.len(),
                actual: y_pred.len(),
            });
        }
        let labels = match labels {
            Some(l) => l,
            None => LabelSet::infer(y_true, y_pred)?,
        };
        let t = labels.encode("y_true", y_true)?;
        let p = labels.encode("y_pred", y_pred)?;
        Self::from_ids(labels, t, p)
    }

    /// From label ids of `labels`.
    pub fn from_ids(labels: LabelSet, y_true: Vec<LabelId>, y_pred: Vec<LabelId>) -> Result<Self> {
        if y_true.is_empty() {
            return Err(Error::Empty {
                what: "audit".into(),
            });
        }
        if y_true.len() != y_pred.len() {
            return Err(Error::LengthMismatch {
                column: "y_pred".into(),
                expected: y_true.len(),
                actual: y_pred.len(),
            });
        }
        for (column, ids) in [("y_true", &y_true), ("y_pred", &y_pred)] {
            if let Some((row, id)) = ids
                .iter()
                .enumerate()
                .find(|(_, id)| id.index() >= labels.len())
            {
                return Err(Error::LabelIdOutOfRange {
                    column: column.into(),
                    row,
                    id: id.get(),
                    n_labels: labels.len(),
                });
            }
        }
        Ok(Self {
            labels,
            y_true,
            y_pred,
            scores: None,
            groups: Vec::new(),
        })
    }

    /// Adds scores: the probability (or any monotone score) of the positive
    /// label, one per row, finite. Binary tasks only.
    pub fn with_scores(mut self, scores: Vec<f64>) -> Result<Self> {
        if self.labels.len() != 2 {
            return Err(Error::ScoresNeedBinary {
                n_labels: self.labels.len(),
            });
        }
        if scores.len() != self.len() {
            return Err(Error::LengthMismatch {
                column: "y_score".into(),
                expected: self.len(),
                actual: scores.len(),
            });
        }
        if let Some((row, &value)) = scores.iter().enumerate().find(|(_, s)| !s.is_finite()) {
            return Err(Error::NonFiniteScore {
                column: "y_score".into(),
                row,
                value,
            });
        }
        self.scores = Some(scores);
        Ok(self)
    }

    /// Adds a group column from one string per row.
    pub fn with_group<S: AsRef<str>>(self, name: &str, values: &[S]) -> Result<Self> {
        let column = GroupColumn::from_values(name, values);
        self.with_group_column(column)
    }

    /// Adds an encoded group column.
    pub fn with_group_column(mut self, column: GroupColumn) -> Result<Self> {
        if column.len() != self.len() {
            return Err(Error::LengthMismatch {
                column: column.name().to_owned(),
                expected: self.len(),
                actual: column.len(),
            });
        }
        if self.groups.iter().any(|g| g.name() == column.name()) {
            return Err(Error::DuplicateGroupColumn {
                column: column.name().to_owned(),
            });
        }
        let k = self.labels.len();
        if column.levels().len().saturating_mul(k * k) > MAX_GROUP_CELLS {
            return Err(Error::TooManyGroups {
                column: column.name().to_owned(),
                levels: column.levels().len(),
                labels: k,
                limit: MAX_GROUP_CELLS,
            });
        }
        self.groups.push(column);
        Ok(self)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.y_true.len()
    }
    /// Always false: construction rejects empty input.
    pub fn is_empty(&self) -> bool {
        self.y_true.is_empty()
    }
    /// The label set.
    pub fn labels(&self) -> &LabelSet {
        &self.labels
    }
    /// True labels.
    pub fn y_true(&self) -> &[LabelId] {
        &self.y_true
    }
    /// Predicted labels.
    pub fn y_pred(&self) -> &[LabelId] {
        &self.y_pred
    }
    /// Scores, when given.
    pub fn scores(&self) -> Option<&[f64]> {
        self.scores.as_deref()
    }
    /// Group columns in the order they were added.
    pub fn groups(&self) -> &[GroupColumn] {
        &self.groups
    }
    /// A group column by name.
    pub fn group(&self, name: &str) -> Option<&GroupColumn> {
        self.groups.iter().find(|g| g.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_codes_follow_sorted_levels() {
        let c = GroupColumn::from_values("sex", &["Male", "Female", "Male"]);
        assert_eq!(c.levels(), ["Female", "Male"]);
        assert_eq!(c.codes(), [1, 0, 1]);
        let d = GroupColumn::from_codes("sex", vec!["Male".into(), "Female".into()], vec![0, 1, 0])
            .unwrap();
        assert_eq!(c, d);
    }

    #[test]
    fn validation_names_the_problem() {
        let i = AuditInput::from_strings(&["0", "1"], &["1", "1"], None).unwrap();
        assert!(matches!(
            i.clone().with_scores(vec![0.1, f64::NAN]),
            Err(Error::NonFiniteScore { row: 1, .. })
        ));
        assert!(matches!(
            i.clone().with_group("sex", &["a"]),
            Err(Error::LengthMismatch { .. })
        ));
        let i = i.with_group("sex", &["a", "b"]).unwrap();
        assert!(matches!(
            i.with_group("sex", &["a", "b"]),
            Err(Error::DuplicateGroupColumn { .. })
        ));
        assert!(matches!(
            AuditInput::from_strings::<&str>(&[], &[], LabelSet::new(&["0", "1"]).ok()),
            Err(Error::Empty { .. })
        ));
    }
}
