//! `valor audit --monitor`: fairness metrics over a sliding window of a
//! prediction stream, with breaches reported as they start and end.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::audit::resolve_positive;
use crate::config::{AuditConfig, GroupSpec, Limit};
use crate::confusion::ConfusionMatrix;
use crate::error::{Error, Result};
use crate::headline::theil_and_ge2;
use crate::ids::{LabelId, LabelSet};
use crate::report::{DatasetMetrics, Lookup, SpecReport};
use crate::streaming::{Grouped, summarise};

/// Whether a threshold started or stopped being breached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorEventKind {
    /// The metric crossed its limit.
    Breached,
    /// The metric is back within its limit.
    Recovered,
}

/// A change of breach state, at the row that caused it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonitorEvent {
    /// 0-based index, in the stream, of the row after which it happened.
    pub row: u64,
    pub kind: MonitorEventKind,
    /// The spec (`None` for a `dataset.` metric).
    pub spec: Option<String>,
    pub metric: String,
    pub value: Option<f64>,
    pub limit: Limit,
}

struct SpecWindow {
    spec: GroupSpec,
    positions: Vec<usize>,
    keys: Vec<String>,
    values: Vec<Vec<String>>,
    index: HashMap<String, u32>,
    matrices: Vec<ConfusionMatrix>,
}

struct Row {
    t: u32,
    p: u32,
    groups: Vec<u32>,
}

/// Per-group confusion counts over the last `window` rows of a stream.
/// Checks the configuration's thresholds once the window is full (every
/// `check_every` rows) and returns an event when a threshold starts or stops
/// being breached. Updating the counts is O(1) per row; each check computes
/// the spec reports (microseconds for a handful of groups).
pub struct WindowMonitor {
    window: usize,
    labels: LabelSet,
    columns: Vec<String>,
    specs: Vec<SpecWindow>,
    positive: Option<usize>,
    config: AuditConfig,
    ring: VecDeque<Row>,
    rows_seen: u64,
    check_every: u64,
    breached: HashSet<(usize, Option<usize>)>,
}

impl std::fmt::Debug for WindowMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowMonitor")
            .field("window", &self.window)
            .field("columns", &self.columns)
            .field("rows_seen", &self.rows_seen)
            .finish_non_exhaustive()
    }
}

impl WindowMonitor {
    /// A monitor over `window` rows whose group values come in `columns`
    /// order. Specs, privileged groups, known groups, positive label and
    /// thresholds come from `config` (bootstrap and calibration settings are
    /// not used on a stream).
    pub fn new(
        labels: LabelSet,
        columns: Vec<String>,
        window: usize,
        config: &AuditConfig,
    ) -> Result<Self> {
        config.validate()?;
        if window == 0 {
            return Err(Error::InvalidConfig {
                setting: "window".into(),
                why: "needs at least one row".into(),
            });
        }
        if columns.is_empty() {
            return Err(Error::NoGroups);
        }
        let positive = resolve_positive(&labels, config.positive_label.as_deref())?;
        let specs: Vec<GroupSpec> = if config.specs.is_empty() {
            columns.iter().map(|c| GroupSpec::single(c)).collect()
        } else {
            config.specs.clone()
        };
        let available = || {
            columns
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut windows = Vec::with_capacity(specs.len());
        for spec in specs {
            let positions =
                spec.columns
                    .iter()
                    .map(|c| {
                        columns.iter().position(|x| x == c).ok_or_else(|| {
                            Error::UnknownGroupColumn {
                                column: c.clone(),
                                available: available(),
                            }
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
            windows.push(SpecWindow {
                spec,
                positions,
                keys: Vec::new(),
                values: Vec::new(),
                index: HashMap::new(),
                matrices: Vec::new(),
            });
        }
        for name in config.privileged.keys() {
            if !windows.iter().any(|w| &w.spec.name() == name) {
                return Err(Error::PrivilegedSpecNotAudited {
                    spec: name.clone(),
                    available: windows
                        .iter()
                        .map(|w| w.spec.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        for col in config.known_groups.keys() {
            if !columns.contains(col) {
                return Err(Error::UnknownGroupColumn {
                    column: col.clone(),
                    available: available(),
                });
            }
        }
        Ok(Self {
            window,
            labels,
            columns,
            specs: windows,
            positive,
            config: config.clone(),
            ring: VecDeque::with_capacity(window + 1),
            rows_seen: 0,
            check_every: 1,
            breached: HashSet::new(),
        })
    }

    /// Checks thresholds every `n` rows instead of after every row.
    pub fn with_check_every(mut self, n: u64) -> Self {
        self.check_every = n.max(1);
        self
    }

    /// Rows pushed so far.
    pub fn rows_seen(&self) -> u64 {
        self.rows_seen
    }

    /// Rows in the window now.
    pub fn window_len(&self) -> usize {
        self.ring.len()
    }

    /// Adds one row (labels as strings, group values in column order) and
    /// returns the breach events it caused.
    pub fn push(
        &mut self,
        y_true: &str,
        y_pred: &str,
        groups: &[&str],
    ) -> Result<Vec<MonitorEvent>> {
        let row = self.rows_seen as usize;
        let label = |column: &str, v: &str| -> Result<LabelId> {
            self.labels.id(v).ok_or_else(|| Error::UnknownLabel {
                column: column.into(),
                row,
                value: v.to_owned(),
                labels: self.labels.names().to_vec(),
            })
        };
        let t = label("y_true", y_true)?;
        let p = label("y_pred", y_pred)?;
        if groups.len() != self.columns.len() {
            return Err(Error::Mismatch {
                what: format!("row {row}"),
                why: format!(
                    "{} group values for {} group columns",
                    groups.len(),
                    self.columns.len()
                ),
            });
        }
        for (col, value) in self.columns.iter().zip(groups) {
            if let Some(known) = self.config.known_groups.get(col)
                && !known.iter().any(|k| k == value)
            {
                return Err(Error::UnseenGroup {
                    column: col.clone(),
                    row,
                    value: (*value).to_owned(),
                    known: known.clone(),
                });
            }
        }
        let k = self.labels.len();
        let mut ids = Vec::with_capacity(self.specs.len());
        for s in &mut self.specs {
            let values: Vec<String> = s.positions.iter().map(|&i| groups[i].to_owned()).collect();
            let key = values.join("|");
            let next = s.keys.len() as u32;
            let id = *s.index.entry(key.clone()).or_insert(next);
            if id == next {
                s.keys.push(key);
                s.values.push(values);
                s.matrices.push(ConfusionMatrix::new(k));
            }
            s.matrices[id as usize].add(t.index(), p.index(), 1);
            ids.push(id);
        }
        self.ring.push_back(Row {
            t: t.get(),
            p: p.get(),
            groups: ids,
        });
        if self.ring.len() > self.window
            && let Some(old) = self.ring.pop_front()
        {
            for (s, g) in self.specs.iter_mut().zip(&old.groups) {
                s.matrices[*g as usize].remove(old.t as usize, old.p as usize, 1);
            }
        }
        self.rows_seen += 1;
        if self.ring.len() == self.window && self.rows_seen.is_multiple_of(self.check_every) {
            self.check(row as u64)
        } else {
            Ok(Vec::new())
        }
    }

    /// The spec reports of the current window (groups with rows in it, in
    /// sorted value order).
    pub fn snapshot(&self) -> Result<Vec<SpecReport>> {
        if self.ring.is_empty() {
            return Err(Error::Empty {
                what: "summarise (the window is empty)".into(),
            });
        }
        Ok(self.specs.iter().map(|s| self.spec_snapshot(s)).collect())
    }

    fn spec_snapshot(&self, s: &SpecWindow) -> SpecReport {
        let mut order: Vec<usize> = (0..s.keys.len())
            .filter(|&g| s.matrices[g].total() > 0)
            .collect();
        order.sort_by(|&a, &b| s.values[a].cmp(&s.values[b]));
        let keys: Vec<String> = order.iter().map(|&g| s.keys[g].clone()).collect();
        let privileged = self
            .config
            .privileged
            .get(&s.spec.name())
            .and_then(|wanted| {
                let flags: Vec<bool> = keys.iter().map(|k| wanted.contains(k)).collect();
                (flags.iter().any(|f| *f) && !flags.iter().all(|f| *f)).then_some(flags)
            });
        summarise(
            Grouped {
                spec: s.spec.clone(),
                keys,
                values: order.iter().map(|&g| s.values[g].clone()).collect(),
                matrices: order.iter().map(|&g| s.matrices[g].clone()).collect(),
            },
            self.labels.names(),
            self.positive,
            privileged,
            self.config.ordinal,
        )
    }

    fn dataset(&self) -> DatasetMetrics {
        let mut overall = ConfusionMatrix::new(self.labels.len());
        if let Some(s) = self.specs.first() {
            for m in &s.matrices {
                overall.merge(m);
            }
        }
        let (theil, ge2) = match self.positive {
            Some(pos) => theil_and_ge2(&overall.one_vs_rest(pos)),
            None => (None, None),
        };
        DatasetMetrics {
            theil_index: theil,
            generalized_entropy_index_alpha2: ge2,
            ..DatasetMetrics::default()
        }
    }

    fn check(&mut self, row: u64) -> Result<Vec<MonitorEvent>> {
        let mut events = Vec::new();
        if self.config.thresholds.is_empty() {
            return Ok(events);
        }
        let reports = self.snapshot()?;
        let dataset = self.dataset();
        for (ti, t) in self.config.thresholds.iter().enumerate() {
            let lookups: Vec<(Option<usize>, Lookup)> = if t.metric.starts_with("dataset.") {
                vec![(None, dataset.lookup(&t.metric))]
            } else {
                reports
                    .iter()
                    .enumerate()
                    .map(|(si, r)| (Some(si), r.lookup(&t.metric)))
                    .collect()
            };
            for (si, l) in lookups {
                let Lookup::Value { value: Some(v), .. } = l else {
                    continue;
                };
                let now = t.limit.breached_by(v);
                let key = (ti, si);
                let was = self.breached.contains(&key);
                if now != was {
                    if now {
                        self.breached.insert(key);
                    } else {
                        self.breached.remove(&key);
                    }
                    events.push(MonitorEvent {
                        row,
                        kind: if now {
                            MonitorEventKind::Breached
                        } else {
                            MonitorEventKind::Recovered
                        },
                        spec: si.map(|i| reports[i].name.clone()),
                        metric: t.metric.clone(),
                        value: Some(v),
                        limit: t.limit,
                    });
                }
            }
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Threshold, paths};

    #[test]
    fn breach_starts_and_ends_with_the_window() {
        let labels = LabelSet::new(&["0", "1"]).unwrap();
        let mut config = AuditConfig::default();
        config.thresholds.push(Threshold::at_most(
            paths::DEMOGRAPHIC_PARITY_DIFFERENCE,
            0.2,
        ));
        let mut m = WindowMonitor::new(labels, vec!["sex".into()], 20, &config).unwrap();
        let mut events = Vec::new();
        // fair phase: both groups selected half the time
        for i in 0..40 {
            let g = if i % 2 == 0 { "f" } else { "m" };
            let p = if (i / 2) % 2 == 0 { "1" } else { "0" };
            events.extend(m.push("1", p, &[g]).unwrap());
        }
        assert!(events.is_empty(), "{events:?}");
        // unfair phase: m always selected, f never
        for i in 0..40 {
            let (g, p) = if i % 2 == 0 { ("f", "0") } else { ("m", "1") };
            events.extend(m.push("1", p, &[g]).unwrap());
        }
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, MonitorEventKind::Breached);
        // fair again
        for i in 0..40 {
            let g = if i % 2 == 0 { "f" } else { "m" };
            events.extend(m.push("1", "1", &[g]).unwrap());
        }
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].kind, MonitorEventKind::Recovered);
        assert_eq!(m.window_len(), 20);
        let snap = m.snapshot().unwrap();
        assert_eq!(snap[0].groups.iter().map(|g| g.count).sum::<u64>(), 20);
    }
}
