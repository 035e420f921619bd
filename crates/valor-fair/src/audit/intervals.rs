//! Bootstrap intervals of an audit: every scalar of every spec plus the
//! dataset indices, recomputed on multinomial resamples of the cell counts.

use std::collections::HashMap;

use crate::bootstrap;
use crate::confusion::ConfusionMatrix;
use crate::core::{Core, StatKey};
use crate::report::{BootstrapInfo, Interval, OrderedMap};

use super::{Counted, dataset_values};

/// The intervals per spec (by statistic) and of the dataset indices, and
/// how they were made; all `None` without a bootstrap configuration.
pub(super) struct Intervals {
    pub(super) specs: Vec<Option<HashMap<StatKey, Interval>>>,
    pub(super) dataset: Option<OrderedMap<Option<Interval>>>,
    pub(super) info: Option<BootstrapInfo>,
}

/// Resamples the partition's cell counts as `config.bootstrap` says and
/// reads every statistic's interval off the resamples.
pub(super) fn bootstrap_intervals(counted: &Counted<'_>) -> Intervals {
    let Counted {
        config,
        part,
        states,
        spec_groups,
        overall,
        positive,
    } = *counted;
    let mut spec_intervals: Vec<Option<HashMap<StatKey, Interval>>> =
        states.iter().map(|_| None).collect();
    let Some(b) = &config.bootstrap else {
        return Intervals {
            specs: spec_intervals,
            dataset: None,
            info: None,
        };
    };
    let k = overall.k();
    let mut layout: Vec<Vec<StatKey>> = Vec::with_capacity(states.len());
    for st in states {
        let mut kv = Vec::new();
        st.core.collect(&st.ctx, 0, &mut kv);
        layout.push(kv.into_iter().map(|(key, _)| key).collect());
    }
    let n_spec_stats: usize = layout.iter().map(Vec::len).sum();
    let n_stats = n_spec_stats + 2;
    let kk = k * k;
    let stat = |counts: &[u64]| -> Vec<f64> {
        let mut out = Vec::with_capacity(n_stats);
        let mut kv = Vec::new();
        for (st, groups) in states.iter().zip(spec_groups) {
            let mats = part.spec_matrices(counts, groups);
            let core = Core::compute(&st.ctx, &mats);
            kv.clear();
            core.collect(&st.ctx, 0, &mut kv);
            out.extend(kv.iter().map(|(_, v)| *v));
        }
        let mut all = vec![0u64; kk];
        for chunk in counts.chunks(kk) {
            for (a, c) in all.iter_mut().zip(chunk) {
                *a += c;
            }
        }
        let m = ConfusionMatrix::from_cells(k, all);
        out.extend(
            dataset_values(&m, positive)
                .iter()
                .map(|(_, v)| v.unwrap_or(f64::NAN)),
        );
        out
    };
    let samples = bootstrap::resample(&part.counts, b, stat);
    let ivs = bootstrap::intervals(&samples, n_stats, b.level);
    let mut at = 0;
    for (si, keys) in layout.iter().enumerate() {
        let mut map = HashMap::with_capacity(keys.len());
        for key in keys {
            if let Some(iv) = ivs[at] {
                map.insert(*key, iv);
            }
            at += 1;
        }
        spec_intervals[si] = Some(map);
    }
    let mut d = OrderedMap::new();
    for (i, (name, _)) in dataset_values(overall, positive).iter().enumerate() {
        d.push(*name, ivs[at + i]);
    }
    Intervals {
        specs: spec_intervals,
        dataset: Some(d),
        info: Some(BootstrapInfo {
            resamples: b.resamples,
            seed: b.seed,
            level: b.level,
            method: "multinomial_cells".into(),
        }),
    }
}
