//! Counterfactual fairness for text: a model scores each text and its twin
//! with the group swapped (e.g. "she" ↔ "he"); a fair model gives both the
//! same label and nearly the same probabilities.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{LabelId, LabelSet};
use crate::report::OrderedMap;

/// Flip rate and probability shifts over text pairs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CounterfactualReport {
    /// Number of pairs.
    pub pairs: u64,
    /// Pairs whose predicted label (argmax) differs.
    pub flips: u64,
    /// `flips / pairs`.
    pub flip_rate: f64,
    /// Mean over pairs of the total variation distance between the two
    /// probability vectors, `½ Σ_c |p_twin,c − p_orig,c|` (for two labels,
    /// the absolute shift of the positive probability).
    pub mean_abs_probability_shift: f64,
    /// Largest such distance.
    pub max_abs_probability_shift: f64,
    /// Per label, the mean signed shift `p_twin − p_orig`.
    pub mean_probability_shift: OrderedMap<f64>,
    /// Per swap direction (when given, e.g. `female→male`): pairs, flips,
    /// flip rate and mean absolute shift.
    #[serde(default, skip_serializing_if = "OrderedMap::is_empty")]
    pub by_direction: OrderedMap<DirectionSummary>,
}

/// Counterfactual numbers of one swap direction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectionSummary {
    pub pairs: u64,
    pub flips: u64,
    pub flip_rate: f64,
    pub mean_abs_probability_shift: f64,
}

/// Fraction of pairs whose predicted labels differ.
pub fn counterfactual_flip_rate(original: &[LabelId], twin: &[LabelId]) -> Result<f64> {
    if original.is_empty() {
        return Err(Error::Empty {
            what: "compute a flip rate".into(),
        });
    }
    if twin.len() != original.len() {
        return Err(Error::LengthMismatch {
            column: "twin".into(),
            expected: original.len(),
            actual: twin.len(),
        });
    }
    let flips = original.iter().zip(twin).filter(|(a, b)| a != b).count();
    Ok(flips as f64 / original.len() as f64)
}

fn argmax(p: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in p.iter().enumerate() {
        if *v > p[best] {
            best = i;
        }
    }
    best
}

/// Flip rate and probability shifts from per-pair probabilities:
/// `original` and `twin` are row-major (pairs × labels) in label-set order.
/// `directions`, when given, names each pair's swap (e.g. `female→male`).
pub fn counterfactual_fairness<S: AsRef<str>>(
    labels: &LabelSet,
    original: &[f64],
    twin: &[f64],
    directions: Option<&[S]>,
) -> Result<CounterfactualReport> {
    let k = labels.len();
    if original.is_empty() {
        return Err(Error::Empty {
            what: "measure counterfactual fairness".into(),
        });
    }
    if !original.len().is_multiple_of(k) {
        return Err(Error::Mismatch {
            what: "original probabilities".into(),
            why: format!("{} values is not a multiple of {k} labels", original.len()),
        });
    }
    if twin.len() != original.len() {
        return Err(Error::LengthMismatch {
            column: "twin probabilities".into(),
            expected: original.len(),
            actual: twin.len(),
        });
    }
    for (column, v) in [("original", original), ("twin", twin)] {
        if let Some((i, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(Error::NonFiniteScore {
                column: column.into(),
                row: i / k,
                value,
            });
        }
    }
    let n = original.len() / k;
    if let Some(d) = directions
        && d.len() != n
    {
        return Err(Error::LengthMismatch {
            column: "directions".into(),
            expected: n,
            actual: d.len(),
        });
    }
    let mut flips = 0u64;
    let mut sum_tv = 0.0;
    let mut max_tv: f64 = 0.0;
    let mut signed = vec![0.0; k];
    let mut dirs: Vec<(String, u64, u64, f64)> = Vec::new();
    for (i, (a, b)) in original.chunks(k).zip(twin.chunks(k)).enumerate() {
        let flip = argmax(a) != argmax(b);
        let tv = 0.5 * a.iter().zip(b).map(|(x, y)| (y - x).abs()).sum::<f64>();
        flips += u64::from(flip);
        sum_tv += tv;
        max_tv = max_tv.max(tv);
        for (s, (x, y)) in signed.iter_mut().zip(a.iter().zip(b)) {
            *s += y - x;
        }
        if let Some(d) = directions {
            let name = d[i].as_ref();
            let at = match dirs.iter().position(|e| e.0 == name) {
                Some(p) => p,
                None => {
                    dirs.push((name.to_owned(), 0, 0, 0.0));
                    dirs.len() - 1
                }
            };
            dirs[at].1 += 1;
            dirs[at].2 += u64::from(flip);
            dirs[at].3 += tv;
        }
    }
    dirs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(CounterfactualReport {
        pairs: n as u64,
        flips,
        flip_rate: flips as f64 / n as f64,
        mean_abs_probability_shift: sum_tv / n as f64,
        max_abs_probability_shift: max_tv,
        mean_probability_shift: labels
            .names()
            .iter()
            .zip(&signed)
            .map(|(l, s)| (l.clone(), s / n as f64))
            .collect(),
        by_direction: dirs
            .into_iter()
            .map(|(name, p, f, tv)| {
                (
                    name,
                    DirectionSummary {
                        pairs: p,
                        flips: f,
                        flip_rate: f as f64 / p as f64,
                        mean_abs_probability_shift: tv / p as f64,
                    },
                )
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_and_shifts() {
        let labels = LabelSet::new(&["deny", "approve"]).unwrap();
        let orig = [0.7, 0.3, 0.4, 0.6, 0.5, 0.5];
        let twin = [0.4, 0.6, 0.4, 0.6, 0.45, 0.55];
        let r =
            counterfactual_fairness(&labels, &orig, &twin, Some(&["f→m", "f→m", "m→f"])).unwrap();
        assert_eq!(r.flips, 2); // first flips; third flips from a tie (argmax 0) to approve
        assert!((r.mean_abs_probability_shift - (0.3 + 0.0 + 0.05) / 3.0).abs() < 1e-12);
        assert!((r.mean_probability_shift.get("approve").unwrap() - 0.35 / 3.0).abs() < 1e-12);
        assert_eq!(r.by_direction.get("f→m").unwrap().flips, 1);
        let l = LabelId::new;
        assert_eq!(
            counterfactual_flip_rate(&[l(0), l(1)], &[l(1), l(1)]).unwrap(),
            0.5
        );
        assert!(counterfactual_fairness::<&str>(&labels, &orig, &twin[..4], None).is_err());
    }
}
