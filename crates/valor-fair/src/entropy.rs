//! Individual-fairness inequality indices in AIF360's definitions (Speicher
//! et al. 2018, "A unified approach to quantifying algorithmic unfairness").
//!
//! AIF360 gives each row the benefit `b = ŷ − y + 1` (0 for a false negative,
//! 1 for a correct prediction, 2 for a false positive) and measures the
//! inequality of `b` with the generalized entropy index
//! `GE(α) = mean((b/μ)^α − 1) / (α(α−1))`; `α = 1` is the Theil index
//! `mean((b/μ)·ln(b/μ))`, computed as AIF360 does with `0·ln 0 = 0`.
//! With binary labels `b` takes three values, so the index is a function of
//! the counts of each.

use crate::confusion::BinaryCounts;

/// Counts of the benefit values 0, 1 and 2.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct BenefitCounts {
    pub weights: [f64; 3],
}

impl BenefitCounts {
    pub(crate) fn of(b: &BinaryCounts) -> Self {
        Self {
            weights: [
                b.false_negatives as f64,
                (b.true_positives + b.true_negatives) as f64,
                b.false_positives as f64,
            ],
        }
    }
}

/// AIF360's `generalized_entropy_index(alpha)` over a population given as
/// (benefit value, number of rows) pairs. `None` when empty or when the
/// mean benefit is zero.
pub(crate) fn generalized_entropy(values: &[(f64, f64)], alpha: f64) -> Option<f64> {
    let n: f64 = values.iter().map(|(_, w)| w).sum();
    if n <= 0.0 {
        return None;
    }
    let mu = values.iter().map(|(b, w)| b * w).sum::<f64>() / n;
    if mu <= 0.0 {
        return None;
    }
    let total: f64 = if alpha == 1.0 {
        // AIF360: np.mean(np.log((b / mu) ** b) / mu)
        values
            .iter()
            .filter(|(_, w)| *w > 0.0)
            .map(|(b, w)| w * ((b / mu).powf(*b)).ln() / mu)
            .sum()
    } else if alpha == 0.0 {
        // AIF360: -np.mean(np.log(b / mu) / mu)
        -values
            .iter()
            .filter(|(_, w)| *w > 0.0)
            .map(|(b, w)| w * (b / mu).ln() / mu)
            .sum::<f64>()
    } else {
        // AIF360: np.mean((b / mu) ** alpha - 1) / (alpha * (alpha - 1))
        values
            .iter()
            .filter(|(_, w)| *w > 0.0)
            .map(|(b, w)| w * ((b / mu).powf(alpha) - 1.0))
            .sum::<f64>()
            / (alpha * (alpha - 1.0))
    };
    Some(total / n)
}

/// AIF360's `generalized_entropy_index(alpha)` of a classifier: inequality
/// of `b = ŷ − y + 1` over every row.
pub(crate) fn classifier_entropy(b: &BenefitCounts, alpha: f64) -> Option<f64> {
    let values = [
        (0.0, b.weights[0]),
        (1.0, b.weights[1]),
        (2.0, b.weights[2]),
    ];
    generalized_entropy(&values, alpha)
}

/// AIF360's `between_group_generalized_entropy_index(alpha)`: every row's
/// benefit is replaced by its group's mean benefit, then the index is taken
/// over rows. Groups without rows are ignored (as AIF360 ignores them).
pub(crate) fn between_group_entropy(groups: &[BenefitCounts], alpha: f64) -> Option<f64> {
    let values: Vec<(f64, f64)> = groups
        .iter()
        .filter_map(|g| {
            let n: f64 = g.weights.iter().sum();
            (n > 0.0).then(|| ((g.weights[1] + 2.0 * g.weights[2]) / n, n))
        })
        .collect();
    generalized_entropy(&values, alpha)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(bs: &[f64], alpha: f64) -> f64 {
        let mu = bs.iter().sum::<f64>() / bs.len() as f64;
        if alpha == 1.0 {
            bs.iter()
                .map(|b| ((b / mu).powf(*b)).ln() / mu)
                .sum::<f64>()
                / bs.len() as f64
        } else {
            bs.iter().map(|b| (b / mu).powf(alpha) - 1.0).sum::<f64>()
                / bs.len() as f64
                / (alpha * (alpha - 1.0))
        }
    }

    #[test]
    fn counts_form_equals_row_form() {
        let rows = [0.0, 1.0, 1.0, 2.0, 1.0, 2.0, 1.0, 1.0, 0.0, 1.0];
        let b = BenefitCounts {
            weights: [2.0, 6.0, 2.0],
        };
        for alpha in [1.0, 2.0, 3.0] {
            let a = classifier_entropy(&b, alpha).unwrap();
            assert!((a - direct(&rows, alpha)).abs() < 1e-14, "alpha {alpha}");
        }
        // a perfect classifier has no inequality
        let p = BenefitCounts {
            weights: [0.0, 10.0, 0.0],
        };
        assert_eq!(classifier_entropy(&p, 1.0), Some(0.0));
    }
}
