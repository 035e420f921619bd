//! Everything computable from per-group confusion matrices, for one group
//! spec. The audit runs it on the data and again on every bootstrap
//! resample; the streaming counters run it on their counts.

use crate::confusion::ConfusionMatrix;
use crate::entropy::{BenefitCounts, between_group_entropy};
use crate::headline::{Aif360Metrics, FairlearnMetrics, MulticlassDisparities};
use crate::metrics::{Agg, MetricDef, MetricKind, Table, metric_defs};

/// What [`Core::compute`] needs to know besides the counts.
#[derive(Clone, Debug)]
pub(crate) struct CoreCtx {
    pub labels: Vec<String>,
    /// Positive class index of a binary task (`None`: multiclass).
    pub positive: Option<usize>,
    /// Per group: whether it is privileged (`None`: no AIF360 section).
    pub privileged: Option<Vec<bool>>,
    pub defs: Vec<MetricDef>,
    /// For ordinal audits: the context of the binary "at least" views.
    pub cut: Option<Box<CoreCtx>>,
}

impl CoreCtx {
    pub(crate) fn new(
        labels: &[String],
        positive: Option<usize>,
        privileged: Option<Vec<bool>>,
        ordinal: bool,
    ) -> Self {
        let cut = (ordinal && labels.len() > 2).then(|| {
            Box::new(CoreCtx::new(
                &["0".to_owned(), "1".to_owned()],
                Some(1),
                privileged.clone(),
                false,
            ))
        });
        Self {
            labels: labels.to_vec(),
            positive,
            privileged,
            defs: metric_defs(labels, positive),
            cut,
        }
    }

    pub(crate) fn metric_index(&self, kind: MetricKind) -> Option<usize> {
        self.defs.iter().position(|d| d.kind == kind)
    }
}

/// Results for one spec (or one ordinal cut of it).
#[derive(Clone, Debug)]
pub(crate) struct Core {
    pub tables: Vec<Table>,
    pub fairlearn: Option<FairlearnMetrics>,
    pub aif360: Option<Aif360Metrics>,
    pub multiclass: Option<MulticlassDisparities>,
    /// Between-group Theil index over every group (binary tasks).
    pub between_group_theil_index: Option<f64>,
    /// Ordinal cuts "at least label i", i = 1..K.
    pub cuts: Vec<Core>,
}

/// Names a scalar of a [`Core`] so that bootstrap intervals can be matched
/// to the point estimate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum StatKey {
    Overall {
        cut: u16,
        metric: u16,
    },
    Group {
        cut: u16,
        metric: u16,
        group: u32,
    },
    Agg {
        cut: u16,
        metric: u16,
        agg: Agg,
    },
    Named {
        cut: u16,
        section: Section,
        name: &'static str,
    },
}

/// Section of a named scalar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Section {
    Fairlearn,
    Aif360,
    Multiclass,
    Spec,
}

impl Core {
    pub(crate) fn compute(ctx: &CoreCtx, groups: &[ConfusionMatrix]) -> Self {
        let k = ctx.labels.len();
        let mut overall = ConfusionMatrix::new(k);
        for g in groups {
            overall.merge(g);
        }
        let tables: Vec<Table> = ctx
            .defs
            .iter()
            .map(|d| Table::of(d.kind, &overall, groups, ctx.positive))
            .collect();
        let table = |kind| ctx.metric_index(kind).map(|i| &tables[i]);
        let fairlearn = match (
            table(MetricKind::SelectionRate),
            table(MetricKind::TruePositiveRate),
            table(MetricKind::FalsePositiveRate),
        ) {
            (Some(sr), Some(tpr), Some(fpr)) => Some(FairlearnMetrics::from_tables(sr, tpr, fpr)),
            _ => None,
        };
        let aif360 = match (ctx.positive, &ctx.privileged) {
            (Some(pos), Some(privileged)) => {
                let mut p = ConfusionMatrix::new(k);
                let mut u = ConfusionMatrix::new(k);
                for (g, is_priv) in groups.iter().zip(privileged) {
                    if *is_priv {
                        p.merge(g);
                    } else {
                        u.merge(g);
                    }
                }
                Some(Aif360Metrics::compute(&ctx.labels, pos, &u, &p))
            }
            _ => None,
        };
        let between_group_theil_index = ctx.positive.and_then(|pos| {
            let b: Vec<BenefitCounts> = groups
                .iter()
                .map(|g| BenefitCounts::of(&g.one_vs_rest(pos)))
                .collect();
            between_group_entropy(&b, 1.0)
        });
        let multiclass = if ctx.positive.is_none() {
            let per_class = |f: fn(usize) -> MetricKind| -> Vec<&Table> {
                (0..k).filter_map(|c| table(f(c))).collect()
            };
            Some(MulticlassDisparities::compute(
                &ctx.labels,
                groups,
                &per_class(MetricKind::ClassSelectionRate),
                &per_class(MetricKind::ClassRecall),
                &per_class(MetricKind::ClassFalsePositiveRate),
            ))
        } else {
            None
        };
        let cuts = match &ctx.cut {
            Some(cut_ctx) => (1..k)
                .map(|c| {
                    let views: Vec<ConfusionMatrix> =
                        groups.iter().map(|g| g.at_least(c)).collect();
                    Core::compute(cut_ctx, &views)
                })
                .collect(),
            None => Vec::new(),
        };
        Self {
            tables,
            fairlearn,
            aif360,
            multiclass,
            between_group_theil_index,
            cuts,
        }
    }

    /// Every scalar with its key, NaN where undefined, in a fixed order.
    /// `count` is left out (it is not estimated).
    pub(crate) fn collect(&self, ctx: &CoreCtx, cut: u16, out: &mut Vec<(StatKey, f64)>) {
        let val = |v: Option<f64>| v.unwrap_or(f64::NAN);
        for (m, (def, t)) in ctx.defs.iter().zip(&self.tables).enumerate() {
            if def.kind == MetricKind::Count {
                continue;
            }
            let metric = m as u16;
            out.push((StatKey::Overall { cut, metric }, val(t.overall)));
            for (g, v) in t.by_group.iter().enumerate() {
                let group = g as u32;
                out.push((StatKey::Group { cut, metric, group }, val(*v)));
            }
            for agg in Agg::ALL {
                out.push((StatKey::Agg { cut, metric, agg }, val(t.agg.get(agg))));
            }
        }
        let mut named = |section, entries: &[(&'static str, Option<f64>)]| {
            for (name, v) in entries {
                out.push((StatKey::Named { cut, section, name }, val(*v)));
            }
        };
        if let Some(f) = &self.fairlearn {
            named(Section::Fairlearn, &f.entries());
        }
        if let Some(a) = &self.aif360 {
            named(Section::Aif360, &a.entries());
        }
        if let Some(m) = &self.multiclass {
            named(Section::Multiclass, &m.entries());
        }
        named(
            Section::Spec,
            &[("between_group_theil_index", self.between_group_theil_index)],
        );
        if let Some(cut_ctx) = &ctx.cut {
            for (i, c) in self.cuts.iter().enumerate() {
                c.collect(cut_ctx, i as u16 + 1, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinal_cuts_and_multiclass_sections_appear() {
        let labels: Vec<String> = ["low", "mid", "high"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let ctx = CoreCtx::new(&labels, None, Some(vec![true, false]), true);
        let a = ConfusionMatrix::from_rows(&[vec![5, 1, 0], vec![1, 5, 1], vec![0, 1, 5]]).unwrap();
        let b = ConfusionMatrix::from_rows(&[vec![3, 2, 1], vec![2, 3, 2], vec![1, 2, 3]]).unwrap();
        let core = Core::compute(&ctx, &[a, b]);
        assert!(core.multiclass.is_some());
        assert!(core.fairlearn.is_none());
        assert_eq!(core.cuts.len(), 2);
        assert!(core.cuts[0].aif360.is_some());
        let mut out = Vec::new();
        core.collect(&ctx, 0, &mut out);
        let keys: std::collections::HashSet<_> = out.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys.len(), out.len(), "keys are unique");
    }
}
