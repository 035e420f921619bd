//! Confusion counts fed batch by batch (a training or evaluation loop), and
//! the headline metrics read off them without keeping any logits.

use serde::{Deserialize, Serialize};

use crate::audit::{SpecState, resolve_positive, spec_report};
use crate::config::GroupSpec;
use crate::confusion::ConfusionMatrix;
use crate::core::{Core, CoreCtx};
use crate::error::{Error, Result};
use crate::ids::{GroupId, LabelId, LabelSet};
use crate::report::SpecReport;

/// Per-group K×K confusion counts over named groups of one group column.
/// Add batches as they come; [`merge`](Self::merge) counts from other
/// workers; [`summary`](Self::summary) gives the same [`SpecReport`] an
/// [`audit`](crate::audit) gives for that column (without score metrics
/// and intervals).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfusionCounts {
    labels: Vec<String>,
    groups: Vec<String>,
    matrices: Vec<ConfusionMatrix>,
}

/// How to summarise [`ConfusionCounts`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CountsSummaryConfig {
    /// Name of the grouping (the group column), e.g. `sex`.
    pub name: String,
    /// Positive label of a binary task (`None` recognises 0/1, -1/1, false/true).
    pub positive_label: Option<String>,
    /// Privileged groups (for AIF360's metrics).
    pub privileged: Vec<String>,
    /// Labels are ordered: add the "at least" cuts.
    pub ordinal: bool,
}

impl ConfusionCounts {
    /// Empty counts for `labels` and the named groups (distinct, at least one).
    pub fn new(labels: &LabelSet, groups: Vec<String>) -> Result<Self> {
        if groups.is_empty() {
            return Err(Error::NoGroups);
        }
        for (i, g) in groups.iter().enumerate() {
            if groups[..i].contains(g) {
                return Err(Error::DuplicateGroupLevel {
                    column: "groups".into(),
                    level: g.clone(),
                });
            }
        }
        let k = labels.len();
        Ok(Self {
            labels: labels.names().to_vec(),
            matrices: vec![ConfusionMatrix::new(k); groups.len()],
            groups,
        })
    }

    fn check(&self, t: LabelId, p: LabelId, g: GroupId, row: usize) -> Result<()> {
        let k = self.labels.len();
        for (column, id) in [("y_true", t), ("y_pred", p)] {
            if id.index() >= k {
                return Err(Error::LabelIdOutOfRange {
                    column: column.into(),
                    row,
                    id: id.get(),
                    n_labels: k,
                });
            }
        }
        if g.index() >= self.groups.len() {
            return Err(Error::GroupCodeOutOfRange {
                column: "group".into(),
                row,
                code: g.get(),
                n_levels: self.groups.len(),
            });
        }
        Ok(())
    }

    /// Adds one row.
    pub fn add(&mut self, t: LabelId, p: LabelId, g: GroupId) -> Result<()> {
        self.check(t, p, g, 0)?;
        self.matrices[g.index()].add(t.index(), p.index(), 1);
        Ok(())
    }

    /// Removes one row that was added before (sliding windows).
    pub fn remove(&mut self, t: LabelId, p: LabelId, g: GroupId) -> Result<()> {
        self.check(t, p, g, 0)?;
        let m = &mut self.matrices[g.index()];
        if m.get(t.index(), p.index()) == 0 {
            return Err(Error::Mismatch {
                what: "remove".into(),
                why: format!(
                    "no row (true {}, predicted {}) of group `{}` to remove",
                    self.labels[t.index()],
                    self.labels[p.index()],
                    self.groups[g.index()]
                ),
            });
        }
        m.remove(t.index(), p.index(), 1);
        Ok(())
    }

    /// Adds a batch; the whole batch is checked before anything is counted.
    pub fn add_batch(
        &mut self,
        y_true: &[LabelId],
        y_pred: &[LabelId],
        groups: &[GroupId],
    ) -> Result<()> {
        for (column, len) in [("y_pred", y_pred.len()), ("groups", groups.len())] {
            if len != y_true.len() {
                return Err(Error::LengthMismatch {
                    column: column.into(),
                    expected: y_true.len(),
                    actual: len,
                });
            }
        }
        for (row, ((t, p), g)) in y_true.iter().zip(y_pred).zip(groups).enumerate() {
            self.check(*t, *p, *g, row)?;
        }
        for ((t, p), g) in y_true.iter().zip(y_pred).zip(groups) {
            self.matrices[g.index()].add(t.index(), p.index(), 1);
        }
        Ok(())
    }

    /// Adds counts gathered elsewhere over the same labels and groups.
    pub fn merge(&mut self, other: &Self) -> Result<()> {
        if other.labels != self.labels || other.groups != self.groups {
            return Err(Error::Mismatch {
                what: "merge".into(),
                why: "counts over different labels or groups".into(),
            });
        }
        for (a, b) in self.matrices.iter_mut().zip(&other.matrices) {
            a.merge(b);
        }
        Ok(())
    }

    /// Rows counted.
    pub fn total(&self) -> u64 {
        self.matrices.iter().map(ConfusionMatrix::total).sum()
    }
    /// Group names.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }
    /// Labels.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }
    /// The counts of one group.
    pub fn group(&self, g: GroupId) -> Option<&ConfusionMatrix> {
        self.matrices.get(g.index())
    }
    /// Counts over every group.
    pub fn overall(&self) -> ConfusionMatrix {
        let mut m = ConfusionMatrix::new(self.labels.len());
        for g in &self.matrices {
            m.merge(g);
        }
        m
    }

    /// The metrics, disparities and confusion matrices of the counts,
    /// grouped as `config.name` (groups in the order given to [`new`](Self::new)).
    pub fn summary(&self, config: &CountsSummaryConfig) -> Result<SpecReport> {
        if self.total() == 0 {
            return Err(Error::Empty {
                what: "summarise".into(),
            });
        }
        let labels = LabelSet::new(&self.labels)?;
        let positive = resolve_positive(&labels, config.positive_label.as_deref())?;
        let privileged = if config.privileged.is_empty() {
            None
        } else {
            let mut flags = vec![false; self.groups.len()];
            for p in &config.privileged {
                let g = self.groups.iter().position(|x| x == p).ok_or_else(|| {
                    Error::UnknownPrivilegedGroup {
                        spec: config.name.clone(),
                        group: p.clone(),
                        available: self.groups.join(", "),
                    }
                })?;
                flags[g] = true;
            }
            if flags.iter().all(|f| *f) {
                return Err(Error::NoUnprivilegedGroup {
                    spec: config.name.clone(),
                });
            }
            Some(flags)
        };
        Ok(summarise(
            Grouped {
                spec: GroupSpec::single(&config.name),
                keys: self.groups.clone(),
                values: self.groups.iter().map(|g| vec![g.clone()]).collect(),
                matrices: self.matrices.clone(),
            },
            &self.labels,
            positive,
            privileged,
            config.ordinal,
        ))
    }
}

/// Per-group counts of one grouping.
pub(crate) struct Grouped {
    pub spec: GroupSpec,
    pub keys: Vec<String>,
    pub values: Vec<Vec<String>>,
    pub matrices: Vec<ConfusionMatrix>,
}

/// The report of one grouping from its per-group matrices.
pub(crate) fn summarise(
    grouped: Grouped,
    labels: &[String],
    positive: Option<usize>,
    privileged: Option<Vec<bool>>,
    ordinal: bool,
) -> SpecReport {
    let Grouped {
        spec,
        keys,
        values,
        matrices,
    } = grouped;
    let ctx = CoreCtx::new(labels, positive, privileged.clone(), ordinal);
    let core = Core::compute(&ctx, &matrices);
    let mut overall = ConfusionMatrix::new(labels.len());
    for m in &matrices {
        overall.merge(m);
    }
    let constant = (0..labels.len())
        .filter(|&p| overall.pred_total(p) > 0)
        .count()
        == 1;
    let st = SpecState {
        name: spec.name(),
        spec,
        values,
        keys,
        privileged,
        ctx,
        matrices,
        core,
    };
    spec_report(&st, labels, &overall, constant, None, None, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_and_merge_add_up() {
        let labels = LabelSet::new(&["0", "1"]).unwrap();
        let mut a = ConfusionCounts::new(&labels, vec!["f".into(), "m".into()]).unwrap();
        let l = LabelId::new;
        let g = GroupId::new;
        a.add_batch(
            &[l(1), l(0), l(1)],
            &[l(1), l(1), l(0)],
            &[g(0), g(1), g(1)],
        )
        .unwrap();
        let mut b = a.clone();
        b.merge(&a).unwrap();
        assert_eq!(b.total(), 6);
        assert!(a.add_batch(&[l(2)], &[l(0)], &[g(0)]).is_err());
        assert_eq!(a.total(), 3, "a rejected batch adds nothing");
        let s = a
            .summary(&CountsSummaryConfig {
                name: "sex".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            s.metrics.get("selection_rate").unwrap().by_group.get("m"),
            Some(&Some(0.5))
        );
        assert!(a.remove(l(0), l(0), g(0)).is_err());
    }
}
