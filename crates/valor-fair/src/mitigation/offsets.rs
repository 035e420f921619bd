//! Per-group class-score offsets for three or more labels: the multiclass
//! counterpart of the threshold optimizer. Each group `g` gets offsets `δ_g`
//! and predicts `argmax_c (score_c + δ_g,c)` (ties to the first label).
//! Offsets are fitted on validation scores so that every group reaches the
//! same per-class rates. Demographic parity (each group's predicted-class
//! shares equal the shares of the unadjusted argmax over all rows) is always
//! reachable up to ties. Equal per-class recall is not offered: offsets only
//! trade recall between classes, so a group the model serves worse cannot
//! reach the overall recall of every class without randomisation (the
//! binary [`ThresholdOptimizer`](crate::ThresholdOptimizer) randomises; a
//! multiclass equivalent is future work).
//!
//! Fitting is coordinate-wise: for one class at a time the exact offset that
//! hits its target (an order statistic of the score margins) is taken,
//! sweeping over classes until every rate is within `tolerance` of its
//! target or `max_sweeps` is reached. The achieved rates are recorded so a
//! residual gap is visible.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{LabelId, LabelSet};
use crate::mitigation::{intern, load_json, lookup_groups, save_json};
use crate::report::OrderedMap;

/// Schema tag of saved offsets.
pub const OFFSETS_SCHEMA: &str = "valor.fair.class_offsets/1";

/// Which rates to equalise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OffsetConstraint {
    /// Equal predicted-class shares.
    DemographicParity,
}

/// Fitting settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OffsetConfig {
    pub constraint: OffsetConstraint,
    /// Coordinate sweeps at most.
    pub max_sweeps: usize,
    /// Stop when every rate is this close to its target.
    pub tolerance: f64,
}

impl Default for OffsetConfig {
    fn default() -> Self {
        Self {
            constraint: OffsetConstraint::DemographicParity,
            max_sweeps: 50,
            tolerance: 0.005,
        }
    }
}

/// Fitted per-group offsets (serialisable; see [`OFFSETS_SCHEMA`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassOffsets {
    pub schema: String,
    pub labels: Vec<String>,
    pub constraint: OffsetConstraint,
    /// Target rate per label.
    pub targets: Vec<f64>,
    /// Offsets per group (sorted by name), one per label.
    pub offsets: OrderedMap<Vec<f64>>,
    /// Rates per group after the offsets, on the fitting data.
    pub achieved: OrderedMap<Vec<Option<f64>>>,
}

fn argmax(row: &[f64], delta: &[f64]) -> usize {
    let mut best = 0;
    let mut v = f64::NEG_INFINITY;
    for (c, (s, d)) in row.iter().zip(delta).enumerate() {
        if s + d > v {
            v = s + d;
            best = c;
        }
    }
    best
}

/// Rates of one group under `delta` (predicted-class shares).
fn rates(
    rows: &[(&[f64], usize)],
    delta: &[f64],
    k: usize,
    c: OffsetConstraint,
) -> Vec<Option<f64>> {
    let mut hit = vec![0u64; k];
    let mut den = vec![0u64; k];
    for (s, _) in rows {
        let p = argmax(s, delta);
        match c {
            OffsetConstraint::DemographicParity => {
                hit[p] += 1;
                for d in den.iter_mut() {
                    *d += 1;
                }
            }
        }
    }
    hit.iter()
        .zip(&den)
        .map(|(h, d)| (*d > 0).then(|| *h as f64 / *d as f64))
        .collect()
}

fn validate(labels: &LabelSet, scores: &[f64], n: usize) -> Result<()> {
    let k = labels.len();
    if scores.len() != n * k {
        return Err(Error::LengthMismatch {
            column: "scores (rows × labels)".into(),
            expected: n * k,
            actual: scores.len(),
        });
    }
    if let Some((i, &value)) = scores.iter().enumerate().find(|(_, s)| !s.is_finite()) {
        return Err(Error::NonFiniteScore {
            column: format!("score[{}]", labels.names()[i % k]),
            row: i / k,
            value,
        });
    }
    Ok(())
}

impl ClassOffsets {
    /// Fits offsets on validation scores (`scores` row-major, one column per
    /// label in label-set order), true labels and one group name per row.
    pub fn fit<S: AsRef<str>>(
        labels: &LabelSet,
        scores: &[f64],
        y_true: &[LabelId],
        groups: &[S],
        config: &OffsetConfig,
    ) -> Result<Self> {
        let n = y_true.len();
        let k = labels.len();
        if n == 0 {
            return Err(Error::Empty {
                what: "fit class offsets".into(),
            });
        }
        if groups.len() != n {
            return Err(Error::LengthMismatch {
                column: "groups".into(),
                expected: n,
                actual: groups.len(),
            });
        }
        validate(labels, scores, n)?;
        if let Some((row, y)) = y_true.iter().enumerate().find(|(_, y)| y.index() >= k) {
            return Err(Error::LabelIdOutOfRange {
                column: "y_true".into(),
                row,
                id: y.get(),
                n_labels: k,
            });
        }
        let rows: Vec<(&[f64], usize)> = scores
            .chunks(k)
            .zip(y_true)
            .map(|(s, y)| (s, y.index()))
            .collect();
        let zero = vec![0.0; k];
        let targets: Vec<f64> = rates(&rows, &zero, k, config.constraint)
            .into_iter()
            .map(|r| r.unwrap_or(0.0))
            .collect();
        let (names, ids) = intern(groups);
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.sort_by(|&a, &b| names[a].cmp(&names[b]));
        let mut offsets = OrderedMap::new();
        let mut achieved = OrderedMap::new();
        for &g in &order {
            let grp: Vec<(&[f64], usize)> = rows
                .iter()
                .zip(&ids)
                .filter(|(_, id)| **id as usize == g)
                .map(|(r, _)| *r)
                .collect();
            let delta = fit_group(&grp, &targets, k, config);
            achieved.push(names[g].clone(), rates(&grp, &delta, k, config.constraint));
            offsets.push(names[g].clone(), delta);
        }
        Ok(Self {
            schema: OFFSETS_SCHEMA.into(),
            labels: labels.names().to_vec(),
            constraint: config.constraint,
            targets,
            offsets,
            achieved,
        })
    }

    /// Adjusted predictions; a group not seen when fitting is an error.
    pub fn predict<S: AsRef<str>>(&self, scores: &[f64], groups: &[S]) -> Result<Vec<LabelId>> {
        let labels = LabelSet::new(&self.labels)?;
        validate(&labels, scores, groups.len())?;
        let names: Vec<String> = self.offsets.keys().map(str::to_owned).collect();
        let ids = lookup_groups(&names, groups)?;
        let deltas: Vec<&Vec<f64>> = self.offsets.values().collect();
        Ok(scores
            .chunks(self.labels.len())
            .zip(ids)
            .map(|(s, g)| LabelId::new(argmax(s, deltas[g]) as u32))
            .collect())
    }

    /// Saves as JSON (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        save_json(self, "class offsets", path)
    }

    /// Loads offsets saved by [`save`](Self::save).
    pub fn load(path: &Path) -> Result<Self> {
        load_json("class offsets", path)
    }
}

fn fit_group(
    rows: &[(&[f64], usize)],
    targets: &[f64],
    k: usize,
    config: &OffsetConfig,
) -> Vec<f64> {
    let mut delta = vec![0.0; k];
    for _ in 0..config.max_sweeps {
        for c in 1..k {
            // margins: class c wins row i iff delta_c > m_i
            let mut m: Vec<f64> = rows
                .iter()
                .map(|(s, _)| {
                    let other = (0..k)
                        .filter(|&j| j != c)
                        .map(|j| s[j] + delta[j])
                        .fold(f64::NEG_INFINITY, f64::max);
                    other - s[c]
                })
                .collect();
            if m.is_empty() {
                continue;
            }
            m.sort_by(f64::total_cmp);
            let want = (targets[c] * m.len() as f64).round() as usize;
            delta[c] = if want == 0 {
                m[0] - 1.0
            } else if want >= m.len() {
                m[m.len() - 1] + 1.0
            } else {
                (m[want - 1] + m[want]) / 2.0
            };
        }
        let now = rates(rows, &delta, k, config.constraint);
        let worst = now
            .iter()
            .zip(targets)
            .filter_map(|(r, t)| r.map(|r| (r - t).abs()))
            .fold(0.0, f64::max);
        if worst <= config.tolerance {
            break;
        }
    }
    delta
}

#[cfg(test)]
mod tests {
    use super::*;

    use rand::{Rng, SeedableRng};

    #[test]
    fn offsets_equalise_class_shares() {
        let labels = LabelSet::new(&["a", "b", "c"]).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut scores = Vec::new();
        let mut y = Vec::new();
        let mut g = Vec::new();
        for i in 0..600u32 {
            let grp = if i % 2 == 0 { "x" } else { "z" };
            let t = (i / 2 % 3) as usize;
            let mut s: [f64; 3] = [rng.random(), rng.random(), rng.random()];
            s[t] += 0.5;
            if grp == "z" {
                s[2] += 0.4; // group z is pushed towards label c
            }
            scores.extend_from_slice(&s);
            y.push(LabelId::new(t as u32));
            g.push(grp);
        }
        let o = ClassOffsets::fit(&labels, &scores, &y, &g, &OffsetConfig::default()).unwrap();
        for (_, rates) in o.achieved.iter() {
            for (r, t) in rates.iter().zip(&o.targets) {
                assert!(
                    (r.unwrap() - t).abs() <= 0.01,
                    "{rates:?} vs {:?}",
                    o.targets
                );
            }
        }
        let p = o.predict(&scores, &g).unwrap();
        assert_eq!(p.len(), 600);
        assert!(o.predict(&scores[..3], &["w"]).is_err());
    }
}
