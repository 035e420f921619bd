//! Score-based metrics by group in one sorted pass: ROC AUC (exact, the
//! Mann–Whitney form with ties counted one half, which is what
//! scikit-learn's `roc_auc_score` integrates), ROC curves for plots, and
//! calibration (reliability curve and expected calibration error).
//!
//! A "slot" is one (spec, group) pair or the overall population; each row
//! belongs to one slot per spec plus the overall slot.

use rayon::prelude::*;

use crate::counts::{CellValue, ScoreBins};
use crate::report::{ReliabilityBin, RocCurve};

/// Smallest step between kept ROC points (in FPR or TPR).
const ROC_STEP: f64 = 1.0 / 256.0;

/// Per-slot results.
#[derive(Clone, Debug, Default)]
pub(crate) struct SlotScores {
    pub auc: Option<f64>,
    pub roc: Option<RocCurve>,
    pub calibration: Vec<ReliabilityBin>,
    pub ece: Option<f64>,
}

/// Inputs of [`score_metrics`].
pub(crate) struct ScoreInput<'a> {
    pub scores: &'a [f64],
    /// Per row: whether the true label is the positive one.
    pub positive: &'a [bool],
    pub row_combo: &'a [u32],
    /// Per combination: the slots its rows belong to.
    pub combo_slots: &'a [Vec<u32>],
    pub n_slots: usize,
    /// Positives and negatives per slot.
    pub slot_pos: &'a [u64],
    pub slot_neg: &'a [u64],
    /// Calibration bins, or `None` to skip calibration.
    pub bins: Option<usize>,
}

/// scikit-learn's calibration bin of a score: edges are
/// `np.linspace(0, 1, bins + 1)` and the bin is
/// `np.searchsorted(edges[1:-1], score)` (left side), so a score on an
/// inner edge falls in the lower bin.
pub(crate) fn calibration_bin(score: f64, edges: &[f64]) -> usize {
    let bins = edges.len() - 1;
    // count of inner edges strictly below the score
    let inner = &edges[1..bins];
    inner.partition_point(|&e| e < score)
}

/// `np.linspace(0, 1, bins + 1)`.
pub(crate) fn linspace_edges(bins: usize) -> Vec<f64> {
    let step = 1.0 / bins as f64;
    let mut v: Vec<f64> = (0..=bins).map(|i| i as f64 * step).collect();
    if let Some(last) = v.last_mut() {
        *last = 1.0;
    }
    v
}

pub(crate) fn score_metrics(inp: &ScoreInput<'_>) -> Vec<SlotScores> {
    let n = inp.scores.len();
    let mut order: Vec<(f64, u32)> = inp
        .scores
        .par_iter()
        .enumerate()
        .map(|(i, &s)| (s + 0.0, i as u32))
        .collect();
    order.par_sort_unstable_by(|a, b| a.0.total_cmp(&b.0));

    let slots = inp.n_slots;
    let mut neg_below = vec![0u64; slots];
    let mut pos_below = vec![0u64; slots];
    let mut auc2 = vec![0u128; slots];
    let mut block_pos = vec![0u64; slots];
    let mut block_neg = vec![0u64; slots];
    let mut touched: Vec<u32> = Vec::new();
    let mut is_touched = vec![false; slots];
    // ROC points (fpr, tpr) from (1, 1) downwards.
    let mut roc: Vec<Vec<(f64, f64)>> = vec![Vec::new(); slots];
    let edges = inp.bins.map(linspace_edges);
    let nb = inp.bins.unwrap_or(0);
    let mut cal_count = vec![0u64; slots * nb];
    let mut cal_score = vec![0f64; slots * nb];
    let mut cal_pos = vec![0u64; slots * nb];

    let mut i = 0;
    while i < n {
        let v = order[i].0;
        let mut j = i;
        while j < n && order[j].0 == v {
            let row = order[j].1 as usize;
            let pos = inp.positive[row];
            for &slot in &inp.combo_slots[inp.row_combo[row] as usize] {
                let s = slot as usize;
                if !is_touched[s] {
                    is_touched[s] = true;
                    touched.push(slot);
                }
                if pos {
                    block_pos[s] += 1;
                } else {
                    block_neg[s] += 1;
                }
            }
            j += 1;
        }
        let bin = edges.as_ref().map(|e| calibration_bin(v, e));
        for &slot in &touched {
            let s = slot as usize;
            let (bp, bn) = (block_pos[s], block_neg[s]);
            let (p, q) = (inp.slot_pos[s], inp.slot_neg[s]);
            if p > 0 && q > 0 {
                let point = (
                    (q - neg_below[s]) as f64 / q as f64,
                    (p - pos_below[s]) as f64 / p as f64,
                );
                let keep = roc[s].last().is_none_or(|&(f, t)| {
                    (f - point.0).abs() >= ROC_STEP || (t - point.1).abs() >= ROC_STEP
                });
                if keep {
                    roc[s].push(point);
                }
            }
            auc2[s] +=
                2 * u128::from(bp) * u128::from(neg_below[s]) + u128::from(bp) * u128::from(bn);
            neg_below[s] += bn;
            pos_below[s] += bp;
            if let Some(b) = bin {
                let c = s * nb + b;
                cal_count[c] += bp + bn;
                cal_score[c] += v * (bp + bn) as f64;
                cal_pos[c] += bp;
            }
            block_pos[s] = 0;
            block_neg[s] = 0;
            is_touched[s] = false;
        }
        touched.clear();
        i = j;
    }

    (0..slots)
        .map(|s| {
            let (p, q) = (inp.slot_pos[s], inp.slot_neg[s]);
            let auc = (p > 0 && q > 0).then(|| auc2[s] as f64 / (2.0 * p as f64 * q as f64));
            let roc_curve = (p > 0 && q > 0).then(|| {
                let mut pts = std::mem::take(&mut roc[s]);
                if pts.last() != Some(&(0.0, 0.0)) {
                    pts.push((0.0, 0.0));
                }
                pts.reverse();
                RocCurve {
                    false_positive_rate: pts.iter().map(|p| p.0).collect(),
                    true_positive_rate: pts.iter().map(|p| p.1).collect(),
                }
            });
            let (calibration, ece) = match &edges {
                Some(e) => {
                    let total = p + q;
                    let mut bins = Vec::new();
                    let mut gap = 0.0;
                    for b in 0..nb {
                        let c = s * nb + b;
                        if cal_count[c] == 0 {
                            continue;
                        }
                        let cnt = cal_count[c] as f64;
                        gap += (cal_score[c] - cal_pos[c] as f64).abs();
                        bins.push(ReliabilityBin {
                            lower: e[b],
                            upper: e[b + 1],
                            count: cal_count[c],
                            mean_score: cal_score[c] / cnt,
                            fraction_positive: cal_pos[c] as f64 / cnt,
                        });
                    }
                    let ece = (total > 0).then(|| gap / total as f64);
                    (bins, ece)
                }
                None => (Vec::new(), None),
            };
            SlotScores {
                auc,
                roc: roc_curve,
                calibration,
                ece,
            }
        })
        .collect()
}

/// Score histograms of a partition's combinations, from counts: per
/// combination and class (positive or not) the rows per score bin, and per
/// calibration bin the rows and the sum of their scores.
#[derive(Debug)]
pub(crate) struct BinnedScores {
    pub bins: ScoreBins,
    /// `[(combo * 2 + positive) * B + score_bin]`
    pub fine: Vec<u64>,
    /// `[(combo * 2 + positive) * E + calibration_bin]`
    pub cal_n: Vec<u64>,
    pub cal_sum: Vec<f64>,
}

impl BinnedScores {
    pub(crate) fn new(bins: ScoreBins, combos: usize) -> Self {
        let (b, e) = (bins.score_bins(), bins.calibration_bins());
        Self {
            bins,
            fine: vec![0; combos * 2 * b],
            cal_n: vec![0; combos * 2 * e],
            cal_sum: vec![0.0; combos * 2 * e],
        }
    }

    pub(crate) fn add(&mut self, combo: usize, positive: bool, cal: u32, bin: u32, v: &CellValue) {
        let (b, e) = (self.bins.score_bins(), self.bins.calibration_bins());
        let row = combo * 2 + usize::from(positive);
        self.fine[row * b + bin as usize] += v.n;
        self.cal_n[row * e + cal as usize] += v.n;
        self.cal_sum[row * e + cal as usize] += v.score_sum;
    }
}

/// [`score_metrics`] from histograms: slots add up their combinations'
/// bins; ROC AUC counts the pairs within a score bin one half. Returns the
/// slots and the largest bound on |AUC − exact AUC| over the slots
/// (`Σ_b pos_b · neg_b / (2 · P · Q)`).
pub(crate) fn binned_score_metrics(
    h: &BinnedScores,
    combo_slots: &[Vec<u32>],
    n_slots: usize,
) -> (Vec<SlotScores>, f64) {
    let (nb, ne) = (h.bins.score_bins(), h.bins.calibration_bins());
    let mut fine = vec![0u64; n_slots * 2 * nb];
    let mut cal_n = vec![0u64; n_slots * 2 * ne];
    let mut cal_sum = vec![0f64; n_slots * 2 * ne];
    for (combo, slots) in combo_slots.iter().enumerate() {
        for &slot in slots {
            let s = slot as usize;
            for c in 0..2 {
                let (src, dst) = ((combo * 2 + c) * nb, (s * 2 + c) * nb);
                for (d, x) in fine[dst..dst + nb].iter_mut().zip(&h.fine[src..src + nb]) {
                    *d += x;
                }
                let (src, dst) = ((combo * 2 + c) * ne, (s * 2 + c) * ne);
                for i in 0..ne {
                    cal_n[dst + i] += h.cal_n[src + i];
                    cal_sum[dst + i] += h.cal_sum[src + i];
                }
            }
        }
    }
    let edges = linspace_edges(ne);
    let mut worst = 0f64;
    let out = (0..n_slots)
        .map(|s| {
            let neg_bins = &fine[s * 2 * nb..(s * 2 + 1) * nb];
            let pos_bins = &fine[(s * 2 + 1) * nb..(s * 2 + 2) * nb];
            let p: u64 = pos_bins.iter().sum();
            let q: u64 = neg_bins.iter().sum();
            let (mut auc2, mut ties) = (0u128, 0u128);
            let (mut neg_below, mut pos_below) = (0u64, 0u64);
            let mut roc: Vec<(f64, f64)> = Vec::new();
            for (&bp, &bn) in pos_bins.iter().zip(neg_bins) {
                if bp + bn == 0 {
                    continue;
                }
                if p > 0 && q > 0 {
                    let point = (
                        (q - neg_below) as f64 / q as f64,
                        (p - pos_below) as f64 / p as f64,
                    );
                    let keep = roc.last().is_none_or(|&(f, t)| {
                        (f - point.0).abs() >= ROC_STEP || (t - point.1).abs() >= ROC_STEP
                    });
                    if keep {
                        roc.push(point);
                    }
                }
                auc2 +=
                    2 * u128::from(bp) * u128::from(neg_below) + u128::from(bp) * u128::from(bn);
                ties += u128::from(bp) * u128::from(bn);
                neg_below += bn;
                pos_below += bp;
            }
            let defined = p > 0 && q > 0;
            let auc = defined.then(|| auc2 as f64 / (2.0 * p as f64 * q as f64));
            if defined {
                worst = worst.max(ties as f64 / (2.0 * p as f64 * q as f64));
            }
            let roc = defined.then(|| {
                if roc.last() != Some(&(0.0, 0.0)) {
                    roc.push((0.0, 0.0));
                }
                roc.reverse();
                RocCurve {
                    false_positive_rate: roc.iter().map(|p| p.0).collect(),
                    true_positive_rate: roc.iter().map(|p| p.1).collect(),
                }
            });
            let mut calibration = Vec::new();
            let mut gap = 0.0;
            for b in 0..ne {
                let (neg, pos) = ((s * 2) * ne + b, (s * 2 + 1) * ne + b);
                let count = cal_n[neg] + cal_n[pos];
                if count == 0 {
                    continue;
                }
                let sum = cal_sum[neg] + cal_sum[pos];
                let cnt = count as f64;
                gap += (sum - cal_n[pos] as f64).abs();
                calibration.push(ReliabilityBin {
                    lower: edges[b],
                    upper: edges[b + 1],
                    count,
                    mean_score: sum / cnt,
                    fraction_positive: cal_n[pos] as f64 / cnt,
                });
            }
            let total = p + q;
            SlotScores {
                auc,
                roc,
                calibration,
                ece: (total > 0).then(|| gap / total as f64),
            }
        })
        .collect();
    (out, worst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_slot(scores: &[f64], pos: &[bool], bins: Option<usize>) -> SlotScores {
        let p = pos.iter().filter(|x| **x).count() as u64;
        let q = pos.len() as u64 - p;
        let row_combo = vec![0u32; scores.len()];
        let combo_slots = vec![vec![0u32]];
        let inp = ScoreInput {
            scores,
            positive: pos,
            row_combo: &row_combo,
            combo_slots: &combo_slots,
            n_slots: 1,
            slot_pos: &[p],
            slot_neg: &[q],
            bins,
        };
        score_metrics(&inp).remove(0)
    }

    fn brute_auc(scores: &[f64], pos: &[bool]) -> f64 {
        let mut num = 0.0;
        let mut den = 0.0;
        for (i, &a) in scores.iter().enumerate() {
            for (j, &b) in scores.iter().enumerate() {
                if pos[i] && !pos[j] {
                    den += 1.0;
                    if a > b {
                        num += 1.0;
                    } else if a == b {
                        num += 0.5;
                    }
                }
            }
        }
        num / den
    }

    #[test]
    fn auc_is_mann_whitney_with_ties() {
        let s = [0.1, 0.4, 0.35, 0.8, 0.4, 0.4, 0.9, 0.1];
        let y = [false, false, true, true, true, false, true, true];
        let r = one_slot(&s, &y, None);
        assert!((r.auc.unwrap() - brute_auc(&s, &y)).abs() < 1e-15);
        let roc = r.roc.unwrap();
        assert_eq!(roc.false_positive_rate.first(), Some(&0.0));
        assert_eq!(roc.true_positive_rate.last(), Some(&1.0));
    }

    #[test]
    fn binned_auc_is_within_its_bound_of_the_exact_auc() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let n = 2000;
        let mut scores = Vec::with_capacity(n);
        let mut pos = Vec::with_capacity(n);
        for _ in 0..n {
            let s = next();
            scores.push(s);
            pos.push(next() < s);
        }
        let exact = one_slot(&scores, &pos, Some(10));
        for nb in [10, 100, 1000] {
            let bins = ScoreBins::new(nb, 10).unwrap();
            let edges = bins.calibration_edges();
            let mut h = BinnedScores::new(bins, 1);
            for (&s, &p) in scores.iter().zip(&pos) {
                let cal = edges.partition_point(|&e| e < s) as u32;
                let v = CellValue { n: 1, score_sum: s };
                h.add(0, p, cal, bins.score_bin(s), &v);
            }
            let (r, bound) = binned_score_metrics(&h, &[vec![0]], 1);
            let (a, e) = (r[0].auc.unwrap(), exact.auc.unwrap());
            assert!(
                (a - e).abs() <= bound,
                "{nb} bins: {a} vs {e}, bound {bound}"
            );
            assert!(bound < 0.5 / nb as f64 * 2.0, "{nb} bins: bound {bound}");
            assert!((r[0].ece.unwrap() - exact.ece.unwrap()).abs() < 1e-12);
            assert_eq!(r[0].calibration.len(), exact.calibration.len());
        }
    }

    #[test]
    fn calibration_bins_follow_sklearn_edges() {
        let e = linspace_edges(10);
        assert_eq!(calibration_bin(0.0, &e), 0);
        assert_eq!(calibration_bin(0.1, &e), 0);
        assert_eq!(calibration_bin(0.1000001, &e), 1);
        assert_eq!(calibration_bin(1.0, &e), 9);
        let r = one_slot(
            &[0.05, 0.15, 0.95, 0.95],
            &[false, true, true, true],
            Some(10),
        );
        assert_eq!(r.calibration.len(), 3);
        // |0.05-0| + |0.15-1| + |1.9-2| over 4 rows
        assert!((r.ece.unwrap() - (0.05 + 0.85 + 0.1) / 4.0).abs() < 1e-12);
    }
}
