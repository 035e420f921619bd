//! Faithfulness of attributions, as ERASER (DeYoung et al. 2020, "ERASER: A
//! Benchmark to Evaluate Rationalized NLP Models") measures it, over a sample
//! of examples and fractions `k` of each example's tokens:
//!
//! - comprehensiveness `p(c | x) − p(c | x \ top_k)`: delete the `k` most
//!   attributed tokens; a faithful explanation makes the probability of the
//!   explained class `c` drop;
//! - sufficiency `p(c | x) − p(c | top_k)`: keep only them; a faithful
//!   explanation keeps the probability (small gap).
//!
//! Each is averaged over the fractions (ERASER's AOPC) and over examples.
//! Tokens are *deleted* (the sequence gets shorter; `[CLS]`, `[SEP]` and
//! other special tokens always stay), as in ERASER. `k` tokens are
//! `ceil(fraction · n)` of the `n` non-special tokens.
//!
//! To give the numbers a zero point the same is measured for random
//! attributions (a seeded permutation per example: Fisher–Yates driven by
//! SplitMix64 (Steele et al. 2014) from valor-base, bit-exact across
//! machines, so that this crate needs no `rand`). The transparency
//! score is the margin over random, folded into `[0, 1]`:
//!
//! `score = clamp(½ · ((comp − comp_random) + (suff_random − suff)), 0, 1)`
//!
//! 0: no better than random. 1: deleting the top tokens takes the
//! probability from 1 to 0 while random deletions change nothing, and the top
//! tokens alone keep it at 1 while random ones lose it all. This is the value
//! of `valor_values::Evaluation::faithfulness` (range `[0, 1]`, higher is
//! better); the clamp only ever acts on worse-than-random explanations.

use serde::Serialize;
use valor_base::splitmix::SplitMix64;

use super::{input_err, pad_batch, predict_proba};
use crate::classifier::BertForSequenceClassification;
use crate::error::Result;

/// One explained example.
#[derive(Debug, Clone, PartialEq)]
pub struct FaithfulnessItem {
    /// Real tokens only (no padding), `[CLS]`/`[SEP]` included.
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
    /// Tokens that are never removed (`[CLS]`, `[SEP]`).
    pub special: Vec<bool>,
    /// Attribution per token (special tokens' values are ignored).
    pub attributions: Vec<f64>,
    /// The explained class.
    pub target: usize,
}

/// Settings of [`faithfulness`].
#[derive(Debug, Clone, PartialEq)]
pub struct FaithfulnessConfig {
    /// Fractions of tokens (ERASER's bins): 1, 5, 10, 20, 50 %.
    pub fractions: Vec<f64>,
    /// Seed of the random baseline attributions.
    pub seed: u64,
    /// Random permutations per example (averaged).
    pub random_repeats: usize,
    /// Sequences per forward pass.
    pub batch_size: usize,
}

impl Default for FaithfulnessConfig {
    fn default() -> Self {
        Self {
            fractions: vec![0.01, 0.05, 0.10, 0.20, 0.50],
            seed: 0,
            random_repeats: 1,
            batch_size: 32,
        }
    }
}

/// Scores at one fraction, averaged over examples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FractionScores {
    pub fraction: f64,
    pub comprehensiveness: f64,
    pub sufficiency: f64,
    pub random_comprehensiveness: f64,
    pub random_sufficiency: f64,
}

/// ERASER faithfulness of a set of explanations, and the transparency score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaithfulnessReport {
    pub n_examples: usize,
    /// AOPC comprehensiveness (mean over fractions and examples); higher is better.
    pub comprehensiveness: f64,
    /// AOPC sufficiency; lower is better.
    pub sufficiency: f64,
    pub random_comprehensiveness: f64,
    pub random_sufficiency: f64,
    /// The `[0, 1]` score of the module docs (`Evaluation::faithfulness`).
    pub score: f64,
    pub per_fraction: Vec<FractionScores>,
}

/// Measures comprehensiveness and sufficiency of `items`' attributions on
/// `model` (any device), against seeded random attributions.
pub fn faithfulness(
    model: &BertForSequenceClassification,
    items: &[FaithfulnessItem],
    config: &FaithfulnessConfig,
) -> Result<FaithfulnessReport> {
    if items.is_empty() {
        return Err(input_err(
            "faithfulness needs at least one explained example".into(),
        ));
    }
    if config.fractions.is_empty() || config.fractions.iter().any(|f| !(*f > 0.0 && *f <= 1.0)) {
        return Err(input_err(format!(
            "fractions must lie in (0, 1]; got {:?}",
            config.fractions
        )));
    }
    let device = model.classifier.weight.val().device();
    let nf = config.fractions.len();
    let repeats = config.random_repeats.max(1);
    let mut rng = SplitMix64::new(config.seed);
    // Sums over examples: [fraction][comp, suff, rcomp, rsuff].
    let mut sums = vec![[0.0f64; 4]; nf];
    for (e, item) in items.iter().enumerate() {
        let n = item.input_ids.len();
        if item.token_type_ids.len() != n || item.special.len() != n || item.attributions.len() != n
        {
            return Err(input_err(format!(
                "example {e}: {n} ids but {} token types, {} special flags, {} attributions",
                item.token_type_ids.len(),
                item.special.len(),
                item.attributions.len()
            )));
        }
        let candidates: Vec<usize> = (0..n).filter(|&i| !item.special[i]).collect();
        if candidates.is_empty() {
            return Err(input_err(format!("example {e} has no non-special tokens")));
        }
        let mut ranked = candidates.clone();
        ranked.sort_by(|&a, &b| {
            item.attributions[b]
                .total_cmp(&item.attributions[a])
                .then(a.cmp(&b))
        });
        let mut orders = vec![ranked];
        for _ in 0..repeats {
            let mut r = candidates.clone();
            rng.shuffle(&mut r);
            orders.push(r);
        }
        // Variants: the full input, then per order and fraction: without top, only top.
        let full = (item.input_ids.clone(), item.token_type_ids.clone());
        let mut rows = vec![full];
        for order in &orders {
            for &f in &config.fractions {
                let k = ((f * candidates.len() as f64).ceil() as usize).clamp(1, candidates.len());
                let top = &order[..k];
                let pick = |keep: &dyn Fn(usize) -> bool| -> (Vec<u32>, Vec<u32>) {
                    (0..n)
                        .filter(|&i| keep(i))
                        .map(|i| (item.input_ids[i], item.token_type_ids[i]))
                        .unzip()
                };
                rows.push(pick(&|i| !top.contains(&i)));
                rows.push(pick(&|i| item.special[i] || top.contains(&i)));
            }
        }
        let mut probs = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(config.batch_size.max(1)) {
            for p in predict_proba(model, pad_batch(chunk, &device)?)? {
                let Some(&v) = p.get(item.target) else {
                    return Err(input_err(format!(
                        "example {e}: target class {} but the model has {} classes",
                        item.target,
                        p.len()
                    )));
                };
                probs.push(v);
            }
        }
        let p0 = probs[0];
        for (o, _) in orders.iter().enumerate() {
            for (fi, sum) in sums.iter_mut().enumerate() {
                let at = 1 + 2 * (o * nf + fi);
                let comp = p0 - probs[at];
                let suff = p0 - probs[at + 1];
                if o == 0 {
                    sum[0] += comp;
                    sum[1] += suff;
                } else {
                    sum[2] += comp / repeats as f64;
                    sum[3] += suff / repeats as f64;
                }
            }
        }
    }
    let m = items.len() as f64;
    let per_fraction: Vec<FractionScores> = config
        .fractions
        .iter()
        .zip(&sums)
        .map(|(&fraction, s)| FractionScores {
            fraction,
            comprehensiveness: s[0] / m,
            sufficiency: s[1] / m,
            random_comprehensiveness: s[2] / m,
            random_sufficiency: s[3] / m,
        })
        .collect();
    let mean = |g: fn(&FractionScores) -> f64| per_fraction.iter().map(g).sum::<f64>() / nf as f64;
    let comprehensiveness = mean(|f| f.comprehensiveness);
    let sufficiency = mean(|f| f.sufficiency);
    let random_comprehensiveness = mean(|f| f.random_comprehensiveness);
    let random_sufficiency = mean(|f| f.random_sufficiency);
    let score = score(
        comprehensiveness,
        sufficiency,
        random_comprehensiveness,
        random_sufficiency,
    );
    Ok(FaithfulnessReport {
        n_examples: items.len(),
        comprehensiveness,
        sufficiency,
        random_comprehensiveness,
        random_sufficiency,
        score,
        per_fraction,
    })
}

/// The transparency score of the module docs.
pub fn score(comp: f64, suff: f64, random_comp: f64, random_suff: f64) -> f64 {
    (0.5 * ((comp - random_comp) + (random_suff - suff))).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::score;

    #[test]
    fn score_is_zero_at_random_and_one_at_ideal() {
        assert_eq!(score(0.2, 0.3, 0.2, 0.3), 0.0);
        assert_eq!(score(1.0, 0.0, 0.0, 1.0), 1.0);
        assert_eq!(
            score(0.0, 0.5, 0.3, 0.2),
            0.0,
            "worse than random clamps to 0"
        );
        assert!((score(0.5, 0.1, 0.1, 0.3) - 0.3).abs() < 1e-12);
    }
}
