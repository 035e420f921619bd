//! `valor data inspect`: what a dataset holds, in numbers. Schema, label and
//! group counts, the label rate by group with the selection-rate gap between
//! groups (how far the labels themselves are from demographic parity), text
//! length distribution, and warnings.

use std::fmt::Write as _;

use serde::Serialize;

use crate::dataset::{Dataset, LabelId, Warning};
use crate::table::Table;

/// Summary statistics of a distribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Distribution {
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Distribution {
    /// Nearest-rank percentiles of `values` (empty gives zeros).
    pub fn of(values: &mut [f64]) -> Self {
        if values.is_empty() {
            return Self {
                min: 0.0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                max: 0.0,
                mean: 0.0,
            };
        }
        values.sort_by(f64::total_cmp);
        let q =
            |p: f64| values[((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        Self {
            min: values[0],
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            max: values[values.len() - 1],
            mean: values.iter().sum::<f64>() / values.len() as f64,
        }
    }
}

/// One group value's rows and label distribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStats {
    pub value: String,
    pub rows: usize,
    /// Share of the group's rows with each label (label-name order).
    pub label_rates: Vec<f64>,
}

/// The per-class gap in label rates between the groups of one column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateGap {
    pub label: String,
    /// max − min over groups of P(label | group) (fairlearn's demographic
    /// parity difference, applied to the labels).
    pub gap: f64,
    pub highest_group: String,
    pub lowest_group: String,
}

/// Label rates by group for one group column and one label column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupSummary {
    pub column: String,
    pub label_column: String,
    pub groups: Vec<GroupStats>,
    pub gaps: Vec<RateGap>,
}

/// Everything `valor data inspect` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InspectReport {
    pub path: String,
    pub sha256: String,
    pub rows: usize,
    pub schema: Vec<(String, String)>,
    pub label_names: Vec<String>,
    pub label_counts: Vec<usize>,
    pub group_summaries: Vec<GroupSummary>,
    pub text_chars: Distribution,
    pub text_words: Distribution,
    pub warnings: Vec<String>,
}

fn summarise(data: &Dataset, labels: &[LabelId], label_column: &str) -> Vec<GroupSummary> {
    let k = data.num_labels();
    data.groups
        .iter()
        .map(|g| {
            let mut counts = vec![vec![0usize; k]; g.values.len()];
            for (gid, l) in g.ids.iter().zip(labels) {
                counts[gid.0 as usize][l.0 as usize] += 1;
            }
            let groups: Vec<GroupStats> = g
                .values
                .iter()
                .zip(&counts)
                .map(|(v, c)| {
                    let rows: usize = c.iter().sum();
                    GroupStats {
                        value: v.clone(),
                        rows,
                        label_rates: c.iter().map(|&x| x as f64 / rows.max(1) as f64).collect(),
                    }
                })
                .collect();
            let gaps = (0..k)
                .map(|c| {
                    let (mut hi, mut lo) = (0, 0);
                    for (i, s) in groups.iter().enumerate() {
                        if s.label_rates[c] > groups[hi].label_rates[c] {
                            hi = i;
                        }
                        if s.label_rates[c] < groups[lo].label_rates[c] {
                            lo = i;
                        }
                    }
                    RateGap {
                        label: data.label_names[c].clone(),
                        gap: groups[hi].label_rates[c] - groups[lo].label_rates[c],
                        highest_group: groups[hi].value.clone(),
                        lowest_group: groups[lo].value.clone(),
                    }
                })
                .collect();
            GroupSummary {
                column: g.name.clone(),
                label_column: label_column.to_string(),
                groups,
                gaps,
            }
        })
        .collect()
}

/// Builds the report. `label_column`/`reference_column` name the label
/// columns in the output.
pub fn inspect(
    data: &Dataset,
    table: &Table,
    warnings: &[Warning],
    label_column: &str,
    reference_column: Option<&str>,
) -> InspectReport {
    let mut label_counts = vec![0usize; data.num_labels()];
    for l in &data.labels {
        label_counts[l.0 as usize] += 1;
    }
    let mut group_summaries = summarise(data, &data.labels, label_column);
    if let (Some(r), Some(col)) = (&data.reference_labels, reference_column) {
        group_summaries.extend(summarise(data, r, col));
    }
    let mut chars: Vec<f64> = data
        .texts
        .iter()
        .map(|t| t.chars().count() as f64)
        .collect();
    let mut words: Vec<f64> = data
        .texts
        .iter()
        .map(|t| t.split_whitespace().count() as f64)
        .collect();
    InspectReport {
        path: data.source.display().to_string(),
        sha256: data.sha256.clone(),
        rows: data.len(),
        schema: table.schema(),
        label_names: data.label_names.clone(),
        label_counts,
        group_summaries,
        text_chars: Distribution::of(&mut chars),
        text_words: Distribution::of(&mut words),
        warnings: warnings.iter().map(ToString::to_string).collect(),
    }
}

impl InspectReport {
    /// A plain-text rendering for terminals.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}  ({} rows, sha256 {})",
            self.path,
            self.rows,
            &self.sha256[..12.min(self.sha256.len())]
        );
        let _ = writeln!(s, "\ncolumns:");
        for (name, ty) in &self.schema {
            let _ = writeln!(s, "  {name:<24} {ty}");
        }
        let _ = writeln!(s, "\nlabels:");
        for (name, c) in self.label_names.iter().zip(&self.label_counts) {
            let _ = writeln!(
                s,
                "  {name:<24} {c:>8}  ({:.1}%)",
                100.0 * *c as f64 / self.rows as f64
            );
        }
        for g in &self.group_summaries {
            let _ = writeln!(s, "\nlabel `{}` rate by `{}`:", g.label_column, g.column);
            let _ = write!(s, "  {:<16} {:>8}", "group", "rows");
            for l in &self.label_names {
                let _ = write!(s, " {:>13}", l);
            }
            let _ = writeln!(s);
            for st in &g.groups {
                let _ = write!(s, "  {:<16} {:>8}", st.value, st.rows);
                for r in &st.label_rates {
                    let _ = write!(s, " {:>13.3}", r);
                }
                let _ = writeln!(s);
            }
            let _ = write!(s, "  {:<16} {:>8}", "gap (max-min)", "");
            for gap in &g.gaps {
                let _ = write!(s, " {:>13.3}", gap.gap);
            }
            let _ = writeln!(s);
        }
        let d = |x: &Distribution| {
            format!(
                "min {:.0}, median {:.0}, p90 {:.0}, p99 {:.0}, max {:.0}, mean {:.1}",
                x.min, x.p50, x.p90, x.p99, x.max, x.mean
            )
        };
        let _ = writeln!(s, "\ntext length (characters): {}", d(&self.text_chars));
        let _ = writeln!(s, "text length (words):      {}", d(&self.text_words));
        if !self.warnings.is_empty() {
            let _ = writeln!(s, "\nwarnings:");
            for w in &self.warnings {
                let _ = writeln!(s, "  - {w}");
            }
        }
        s
    }
}
