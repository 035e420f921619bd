//! The finest partition of the rows: one cell per observed combination of
//! the audited group columns. One parallel pass counts (combination, true,
//! predicted); every spec's confusion matrices are sums of these counts, and
//! the bootstrap resamples them.

use std::collections::HashMap;

use rayon::prelude::*;

use crate::confusion::ConfusionMatrix;
use crate::input::AuditInput;

/// Rows per rayon task in counting passes.
const MIN_CHUNK: usize = 1 << 15;
/// Most cells counted with one accumulator per rayon task.
const PARALLEL_CELLS: usize = 1 << 16;
/// Largest key space compacted through a dense table.
const DENSE_KEYS: u64 = 1 << 24;

/// Observed combinations of the used group columns and their counts.
#[derive(Debug)]
pub(crate) struct Partition {
    /// Per combination: the level code of each used column; sorted.
    pub combos: Vec<Vec<u32>>,
    /// Per row: its combination.
    pub row_combo: Vec<u32>,
    /// Counts indexed `(combo * k + true) * k + pred`.
    pub counts: Vec<u64>,
    pub k: usize,
}

/// The groups of one spec and how combinations map onto them.
#[derive(Debug, Clone)]
pub(crate) struct SpecGroups {
    /// Per group: level codes in spec column order; sorted.
    pub codes: Vec<Vec<u32>>,
    /// Per combination: its group.
    pub combo_group: Vec<u32>,
}

impl Partition {
    pub(crate) fn build(input: &AuditInput, columns: Vec<usize>) -> Self {
        let n = input.len();
        let k = input.labels().len();
        let mut row_combo: Vec<u32> = vec![0; n];
        let mut combos: Vec<Vec<u32>> = vec![Vec::new()];
        for &c in &columns {
            let col = &input.groups()[c];
            let card = col.levels().len() as u64;
            let keys: Vec<u64> = row_combo
                .par_iter()
                .zip(col.codes().par_iter())
                .with_min_len(MIN_CHUNK)
                .map(|(&id, &code)| u64::from(id) * card + u64::from(code))
                .collect();
            let key_space = combos.len() as u64 * card;
            let (ids, uniq) = compact(&keys, key_space);
            combos = uniq
                .iter()
                .map(|&key| {
                    let mut v = combos[(key / card) as usize].clone();
                    v.push((key % card) as u32);
                    v
                })
                .collect();
            row_combo = ids;
        }
        let cells = combos.len() * k * k;
        let y_true = input.y_true();
        let y_pred = input.y_pred();
        let cell =
            |i: usize| (row_combo[i] as usize * k + y_true[i].index()) * k + y_pred[i].index();
        let counts = if cells <= PARALLEL_CELLS {
            (0..n)
                .into_par_iter()
                .with_min_len(MIN_CHUNK)
                .fold(
                    || vec![0u64; cells],
                    |mut acc, i| {
                        acc[cell(i)] += 1;
                        acc
                    },
                )
                .reduce(
                    || vec![0u64; cells],
                    |mut a, b| {
                        for (x, y) in a.iter_mut().zip(b) {
                            *x += y;
                        }
                        a
                    },
                )
        } else {
            // Many combinations (high-cardinality groups): one accumulator,
            // not one per task.
            let mut acc = vec![0u64; cells];
            for i in 0..n {
                acc[cell(i)] += 1;
            }
            acc
        };
        Self {
            combos,
            row_combo,
            counts,
            k,
        }
    }

    /// Groups of a spec whose columns are `positions` (indices into
    /// `self.columns`, in spec order).
    pub(crate) fn spec_groups(&self, positions: &[usize]) -> SpecGroups {
        let tuples: Vec<Vec<u32>> = self
            .combos
            .iter()
            .map(|c| positions.iter().map(|&p| c[p]).collect())
            .collect();
        let mut codes = tuples.clone();
        codes.sort();
        codes.dedup();
        let index: HashMap<&[u32], u32> = codes
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_slice(), i as u32))
            .collect();
        let combo_group = tuples.iter().map(|t| index[t.as_slice()]).collect();
        SpecGroups { codes, combo_group }
    }

    /// Per-group confusion matrices of a spec from (possibly resampled)
    /// combination counts.
    pub(crate) fn spec_matrices(
        &self,
        counts: &[u64],
        groups: &SpecGroups,
    ) -> Vec<ConfusionMatrix> {
        let kk = self.k * self.k;
        let mut cells = vec![vec![0u64; kk]; groups.codes.len()];
        for (combo, &g) in groups.combo_group.iter().enumerate() {
            let src = &counts[combo * kk..(combo + 1) * kk];
            for (d, s) in cells[g as usize].iter_mut().zip(src) {
                *d += s;
            }
        }
        cells
            .into_iter()
            .map(|c| ConfusionMatrix::from_cells(self.k, c))
            .collect()
    }
}

/// Maps keys to dense ids in ascending key order; returns the ids and the
/// sorted distinct keys.
fn compact(keys: &[u64], key_space: u64) -> (Vec<u32>, Vec<u64>) {
    if key_space <= DENSE_KEYS {
        let mut table = vec![u32::MAX; key_space as usize];
        for &k in keys {
            table[k as usize] = 0;
        }
        let mut uniq = Vec::new();
        for (key, slot) in table.iter_mut().enumerate() {
            if *slot == 0 {
                *slot = uniq.len() as u32;
                uniq.push(key as u64);
            }
        }
        let ids = keys
            .par_iter()
            .with_min_len(MIN_CHUNK)
            .map(|&k| table[k as usize])
            .collect();
        (ids, uniq)
    } else {
        let mut uniq = keys.to_vec();
        uniq.par_sort_unstable();
        uniq.dedup();
        let ids = keys
            .par_iter()
            .with_min_len(MIN_CHUNK)
            .map(|k| uniq.binary_search(k).unwrap_or_default() as u32)
            .collect();
        (ids, uniq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_paths_agree() {
        let keys = vec![7, 3, 7, 100, 3, 0];
        let dense = compact(&keys, 101);
        let sparse = compact(&keys, u64::MAX);
        assert_eq!(dense, sparse);
        assert_eq!(dense.1, vec![0, 3, 7, 100]);
        assert_eq!(dense.0, vec![2, 1, 2, 3, 1, 0]);
    }

    #[test]
    fn spec_matrices_sum_to_rows() {
        let input = AuditInput::from_strings(&["0", "1", "1", "0"], &["0", "1", "0", "0"], None)
            .unwrap()
            .with_group("a", &["x", "y", "x", "y"])
            .unwrap()
            .with_group("b", &["p", "p", "q", "q"])
            .unwrap();
        let p = Partition::build(&input, vec![0, 1]);
        assert_eq!(p.combos.len(), 4);
        let g = p.spec_groups(&[1]);
        assert_eq!(g.codes, vec![vec![0], vec![1]]);
        let m = p.spec_matrices(&p.counts, &g);
        assert_eq!(m[0].rows(), vec![vec![1, 0], vec![0, 1]]);
        assert_eq!(m[1].rows(), vec![vec![1, 0], vec![1, 0]]);
    }
}
