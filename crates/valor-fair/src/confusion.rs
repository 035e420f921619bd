//! Confusion matrices: the sufficient statistic of every label-based metric.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A K×K confusion matrix of counts; rows are true labels, columns are
/// predicted labels, both in [`LabelSet`](crate::LabelSet) order (as
/// scikit-learn's `confusion_matrix(labels=...)`).
///
/// Label indices passed to the accessors must be below `k()`; like slice
/// indexing they panic otherwise (data never reaches them unchecked:
/// [`AuditInput`](crate::AuditInput) and
/// [`ConfusionCounts`](crate::ConfusionCounts) validate ids first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    k: usize,
    cells: Vec<u64>,
}

/// The one-vs-rest 2×2 view of a confusion matrix for one positive class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryCounts {
    /// True label positive, predicted positive.
    pub true_positives: u64,
    /// True label negative, predicted positive.
    pub false_positives: u64,
    /// True label negative, predicted negative.
    pub true_negatives: u64,
    /// True label positive, predicted negative.
    pub false_negatives: u64,
}

impl BinaryCounts {
    /// Number of rows.
    pub fn total(&self) -> u64 {
        self.true_positives + self.false_positives + self.true_negatives + self.false_negatives
    }
    /// Rows whose true label is positive.
    pub fn positives(&self) -> u64 {
        self.true_positives + self.false_negatives
    }
    /// Rows whose true label is negative.
    pub fn negatives(&self) -> u64 {
        self.false_positives + self.true_negatives
    }
    /// Rows predicted positive.
    pub fn predicted_positives(&self) -> u64 {
        self.true_positives + self.false_positives
    }
}

impl ConfusionMatrix {
    /// An all-zero K×K matrix.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            cells: vec![0; k * k],
        }
    }

    /// From rows of counts (rows = true, columns = predicted).
    pub fn from_rows(rows: &[Vec<u64>]) -> Result<Self> {
        let k = rows.len();
        if let Some(r) = rows.iter().find(|r| r.len() != k) {
            return Err(Error::Mismatch {
                what: "confusion matrix".into(),
                why: format!("{k} rows but a row of {} columns", r.len()),
            });
        }
        Ok(Self {
            k,
            cells: rows.iter().flatten().copied().collect(),
        })
    }

    pub(crate) fn from_cells(k: usize, cells: Vec<u64>) -> Self {
        debug_assert_eq!(cells.len(), k * k);
        Self { k, cells }
    }

    /// Number of labels.
    pub fn k(&self) -> usize {
        self.k
    }
    /// Count of rows with true label `t` predicted as `p`.
    pub fn get(&self, t: usize, p: usize) -> u64 {
        self.cells[t * self.k + p]
    }
    /// Adds `n` rows to cell (`t`, `p`).
    pub fn add(&mut self, t: usize, p: usize, n: u64) {
        self.cells[t * self.k + p] += n;
    }
    /// Removes `n` rows from cell (`t`, `p`) (saturating at zero).
    pub fn remove(&mut self, t: usize, p: usize, n: u64) {
        let c = &mut self.cells[t * self.k + p];
        *c = c.saturating_sub(n);
    }
    /// Adds another matrix of the same size.
    pub fn merge(&mut self, other: &Self) {
        debug_assert_eq!(self.k, other.k);
        for (a, b) in self.cells.iter_mut().zip(&other.cells) {
            *a += b;
        }
    }
    /// The cells in row-major order.
    pub fn cells(&self) -> &[u64] {
        &self.cells
    }
    /// Rows of counts (rows = true, columns = predicted).
    pub fn rows(&self) -> Vec<Vec<u64>> {
        self.cells
            .chunks(self.k.max(1))
            .map(<[u64]>::to_vec)
            .collect()
    }
    /// Total number of rows.
    pub fn total(&self) -> u64 {
        self.cells.iter().sum()
    }
    /// Rows whose true label is `t` (the support of `t`).
    pub fn true_total(&self, t: usize) -> u64 {
        self.cells[t * self.k..(t + 1) * self.k].iter().sum()
    }
    /// Rows predicted as `p`.
    pub fn pred_total(&self, p: usize) -> u64 {
        (0..self.k).map(|t| self.get(t, p)).sum()
    }
    /// Rows predicted correctly.
    pub fn correct(&self) -> u64 {
        (0..self.k).map(|i| self.get(i, i)).sum()
    }
    /// One-vs-rest counts with `pos` as the positive class.
    pub fn one_vs_rest(&self, pos: usize) -> BinaryCounts {
        let tp = self.get(pos, pos);
        let support = self.true_total(pos);
        let predicted = self.pred_total(pos);
        let total = self.total();
        BinaryCounts {
            true_positives: tp,
            false_negatives: support - tp,
            false_positives: predicted - tp,
            true_negatives: total + tp - support - predicted,
        }
    }
    /// The 2×2 ordinal view "at least label `cut`": class 1 is every label
    /// with index `>= cut`, class 0 every label below it.
    pub fn at_least(&self, cut: usize) -> Self {
        let mut m = Self::new(2);
        for t in 0..self.k {
            for p in 0..self.k {
                m.add(usize::from(t >= cut), usize::from(p >= cut), self.get(t, p));
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_vs_rest_and_ordinal_views_add_up() {
        let m = ConfusionMatrix::from_rows(&[vec![5, 1, 2], vec![3, 7, 1], vec![0, 2, 9]]).unwrap();
        let b = m.one_vs_rest(1);
        assert_eq!(
            (
                b.true_positives,
                b.false_negatives,
                b.false_positives,
                b.true_negatives
            ),
            (7, 4, 3, 16)
        );
        assert_eq!(b.total(), m.total());
        let o = m.at_least(1);
        assert_eq!(o.rows(), vec![vec![5, 3], vec![3, 19]]);
    }
}
