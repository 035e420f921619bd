//! Differentiable fairness penalties on a batch of predicted probabilities
//! (in the spirit of the "prejudice remover" and demographic-parity /
//! equalized-odds regularisers of Kamishima et al. 2012, Zafar et al. 2017
//! and fairlearn's reductions: a relaxation of the rate gaps, computed on
//! probabilities instead of hard predictions so that gradients flow).
//!
//! Group means are one matrix product: a `[groups, batch]` averaging
//! matrix (built on the host from the batch's group ids) times the
//! `[batch, classes]` probabilities. The gap of a class is `max − min` over
//! the groups present (the sub-gradient flows to the two extreme groups),
//! the same `max − min` convention as the reported selection-rate gap.

use burn::tensor::{Device, Tensor, TensorData};

use crate::config::Penalty;

/// `[rows.len(), batch]` averaging matrix: row `k` holds `1/|S_k|` on the
/// members of set `S_k`.
fn averaging_matrix(sets: &[Vec<usize>], batch: usize, device: &Device) -> Tensor<2> {
    let mut m = vec![0f32; sets.len() * batch];
    for (k, members) in sets.iter().enumerate() {
        let w = 1.0 / members.len() as f32;
        for &i in members {
            m[k * batch + i] = w;
        }
    }
    Tensor::from_data(TensorData::new(m, [sets.len(), batch]), device)
}

/// Rows of each group present among `rows`, in group-id order.
fn members_by_group(groups: &[u32], rows: impl Iterator<Item = usize>) -> Vec<Vec<usize>> {
    let mut by: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
    for i in rows {
        by.entry(groups[i]).or_default().push(i);
    }
    by.into_values().collect()
}

/// `[1, classes]` gaps (max − min over the sets) of the mean probabilities.
fn gaps(probs: &Tensor<2>, sets: &[Vec<usize>]) -> Tensor<2> {
    let [batch, _] = probs.dims();
    let means = averaging_matrix(sets, batch, &probs.device()).matmul(probs.clone());
    means.clone().max_dim(0) - means.min_dim(0)
}

/// Demographic-parity penalty: for each class `c`, `max_g m_gc − min_g
/// m_gc` where `m_gc` is the mean predicted probability of `c` over the
/// batch rows of group `g`; averaged over classes. `None` when fewer than
/// two groups are in the batch.
pub fn demographic_parity_penalty(probs: &Tensor<2>, groups: &[u32]) -> Option<Tensor<1>> {
    let sets = members_by_group(groups, 0..groups.len());
    (sets.len() >= 2).then(|| gaps(probs, &sets).mean())
}

/// Equalized-odds penalty: the demographic-parity gap computed within the
/// rows of each true label `y` (a relaxation of the gaps in P(ŷ = c | y,
/// group), i.e. true- and false-positive rates one-vs-rest); averaged over
/// the (label, class) pairs whose label has two or more groups in the
/// batch. `None` when no label has.
pub fn equalized_odds_penalty(
    probs: &Tensor<2>,
    groups: &[u32],
    labels: &[u32],
) -> Option<Tensor<1>> {
    let mut per_label = Vec::new();
    let mut ys: Vec<u32> = labels.to_vec();
    ys.sort_unstable();
    ys.dedup();
    for y in ys {
        let sets = members_by_group(groups, (0..labels.len()).filter(|&i| labels[i] == y));
        if sets.len() >= 2 {
            per_label.push(gaps(probs, &sets));
        }
    }
    (!per_label.is_empty()).then(|| Tensor::cat(per_label, 0).mean())
}

/// The configured penalty averaged over the group columns that have two
/// or more groups in the batch (`columns[k][i]` is row `i`'s group in
/// column `k`). `None` when no column has.
pub fn fairness_penalty(
    kind: Penalty,
    probs: &Tensor<2>,
    columns: &[Vec<u32>],
    labels: &[u32],
) -> Option<Tensor<1>> {
    let terms: Vec<Tensor<1>> = columns
        .iter()
        .filter_map(|groups| match kind {
            Penalty::DemographicParity => demographic_parity_penalty(probs, groups),
            Penalty::EqualizedOdds => equalized_odds_penalty(probs, groups, labels),
        })
        .collect();
    (!terms.is_empty()).then(|| Tensor::cat(terms, 0).mean())
}
