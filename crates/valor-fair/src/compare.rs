//! Two audits of the same rows compared: a model before and after a change
//! that should not change its decisions much (quantisation, lower
//! precision). [`compare_audits`] reads accuracy and every fairness gap of
//! each group spec from both [`AuditReport`]s, with their bootstrap
//! intervals, and flags each gap that moved by more than a stated shift.
//!
//! The gaps compared are the differences a spec has: for binary tasks
//! fairlearn's demographic-parity, equalized-odds (worst case and mean)
//! and equal-opportunity differences; for multiclass tasks the one-vs-rest
//! selection-rate, recall and false-positive-rate gaps and the
//! conditional-confusion gap; for both the accuracy difference between
//! groups. A gap defined on one side only counts as moved (it appeared or
//! vanished).

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use valor_base::html::escape;

use crate::io::write_atomic;
use crate::report::{AuditReport, Interval, Lookup, SpecReport, Task};
use crate::{Error, Result};

/// Schema of [`AuditComparison`]'s JSON.
pub const COMPARISON_SCHEMA: &str = "valor.fair.comparison/1";

/// The gap paths compared for a binary task (see [`SpecReport::lookup`]).
const BINARY_GAPS: &[&str] = &[
    "fairlearn.demographic_parity_difference",
    "fairlearn.equalized_odds_difference_worst_case",
    "fairlearn.equalized_odds_difference_mean",
    "fairlearn.equal_opportunity_difference",
    "metrics.accuracy.difference_between_groups",
];
/// The gap paths compared for a multiclass task.
const MULTICLASS_GAPS: &[&str] = &[
    "multiclass.selection_rate_gap",
    "multiclass.recall_gap",
    "multiclass.false_positive_rate_gap",
    "multiclass.conditional_confusion_gap",
    "metrics.accuracy.difference_between_groups",
];

/// One number before and after.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shift {
    /// The group spec (`None` for whole-data numbers such as accuracy).
    pub spec: Option<String>,
    /// The metric path.
    pub metric: String,
    pub before: Option<f64>,
    pub before_interval: Option<Interval>,
    pub after: Option<f64>,
    pub after_interval: Option<Interval>,
    /// `after − before` (`None` when either is undefined).
    pub shift: Option<f64>,
    /// Whether the gap moved by more than the allowed shift (always false
    /// for accuracy, which is reported, not gated).
    pub exceeds: bool,
}

/// Accuracy and the fairness gaps of two audits of the same rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditComparison {
    /// [`COMPARISON_SCHEMA`].
    pub schema: String,
    /// What the first audit is of (e.g. `fp32`).
    pub before_name: String,
    /// What the second audit is of (e.g. `int8-per-channel`).
    pub after_name: String,
    pub rows: u64,
    /// The largest allowed `|after − before|` of a gap.
    pub max_fairness_shift: f64,
    /// Overall accuracy before and after.
    pub accuracy: Shift,
    /// Every gap of every spec, in spec then metric order.
    pub gaps: Vec<Shift>,
    /// Lines the caller adds about the change (sizes, agreement), shown
    /// above the table.
    pub notes: Vec<String>,
}

impl AuditComparison {
    /// The gaps that moved by more than [`max_fairness_shift`](Self::max_fairness_shift).
    pub fn exceeded(&self) -> impl Iterator<Item = &Shift> {
        self.gaps.iter().filter(|g| g.exceeds)
    }

    /// Whether no gap moved by more than the allowed shift.
    pub fn passed(&self) -> bool {
        self.exceeded().next().is_none()
    }

    /// A self-contained HTML page: the accuracy and gap table.
    pub fn to_html(&self) -> String {
        let mut o = String::new();
        let _ = write!(
            o,
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Audited compression: {b} vs {a}</title>\
             <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
             td,th{{border:1px solid #ccc;padding:4px 8px}}td.n{{text-align:right;font-family:monospace}}\
             tr.bad td{{background:#fdd}}</style></head><body>\
             <h1>Audited compression</h1><p>{rows} rows; before: <b>{b}</b>, after: <b>{a}</b>; \
             a gap may move by at most {m}. Intervals are the audits' bootstrap intervals.</p>\
             <p><b>{verdict}</b></p>",
            b = escape(&self.before_name),
            a = escape(&self.after_name),
            rows = self.rows,
            m = self.max_fairness_shift,
            verdict = if self.passed() {
                "passed: no gap moved by more than the allowed shift"
            } else {
                "FAILED: a gap moved by more than the allowed shift"
            },
        );
        if !self.notes.is_empty() {
            o.push_str("<ul>");
            for n in &self.notes {
                let _ = write!(o, "<li>{}</li>", escape(n));
            }
            o.push_str("</ul>");
        }
        o.push_str(
            "<table><tr><th>spec</th><th>metric</th><th>before</th><th>interval</th>\
             <th>after</th><th>interval</th><th>shift</th></tr>",
        );
        for s in std::iter::once(&self.accuracy).chain(&self.gaps) {
            let _ = write!(
                o,
                "<tr{}><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                if s.exceeds { " class=\"bad\"" } else { "" },
                escape(s.spec.as_deref().unwrap_or("(all rows)")),
                escape(&s.metric),
                num(s.before),
                interval(s.before_interval),
                num(s.after),
                interval(s.after_interval),
                num(s.shift),
            );
        }
        o.push_str("</table></body></html>\n");
        o
    }

    /// Pretty JSON.
    pub fn to_json_pretty(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|source| Error::Json {
            what: "audit comparison".into(),
            source,
        })
    }

    /// Writes the JSON atomically.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let mut text = self.to_json_pretty()?;
        text.push('\n');
        write_atomic(path, text.as_bytes())
    }

    /// Writes the HTML page atomically.
    pub fn write_html(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.to_html().as_bytes())
    }
}

fn num(x: Option<f64>) -> String {
    x.map_or_else(|| "–".into(), |v| format!("{v:.4}"))
}

fn interval(i: Option<Interval>) -> String {
    i.map_or_else(String::new, |i| format!("[{:.4}, {:.4}]", i.lower, i.upper))
}

fn value(spec: &SpecReport, path: &str) -> Option<(Option<f64>, Option<Interval>)> {
    match spec.lookup(path) {
        Lookup::Value { value, interval } => Some((value, interval)),
        _ => None,
    }
}

fn shift(
    spec: Option<&str>,
    metric: &str,
    before: (Option<f64>, Option<Interval>),
    after: (Option<f64>, Option<Interval>),
    max: Option<f64>,
) -> Shift {
    let delta = before.0.zip(after.0).map(|(b, a)| a - b);
    let exceeds = match max {
        None => false,
        Some(m) => match delta {
            Some(d) => d.abs() > m,
            // Defined on one side only: the gap appeared or vanished.
            None => before.0.is_some() != after.0.is_some(),
        },
    };
    Shift {
        spec: spec.map(str::to_string),
        metric: metric.to_string(),
        before: before.0,
        before_interval: before.1,
        after: after.0,
        after_interval: after.1,
        shift: delta,
        exceeds,
    }
}

/// Compares two audits of the same rows with the same configuration
/// (`before` and `after` name what each audited). Errors when they do not
/// audit the same rows, labels and specs.
pub fn compare_audits(
    before: &AuditReport,
    after: &AuditReport,
    before_name: &str,
    after_name: &str,
    max_fairness_shift: f64,
) -> Result<AuditComparison> {
    let names = |r: &AuditReport| r.specs.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    if before.rows != after.rows || before.labels != after.labels || names(before) != names(after) {
        return Err(Error::InvalidConfig {
            setting: "audit comparison".into(),
            why: format!(
                "the two audits are not of the same rows: {} and {} rows, labels {:?} and {:?}, specs {:?} and {:?}",
                before.rows,
                after.rows,
                before.labels,
                after.labels,
                names(before),
                names(after)
            ),
        });
    }
    if !(max_fairness_shift.is_finite() && max_fairness_shift >= 0.0) {
        return Err(Error::InvalidConfig {
            setting: "max_fairness_shift".into(),
            why: format!(
                "the allowed fairness shift must be a number >= 0, not {max_fairness_shift}"
            ),
        });
    }
    let accuracy_of = |r: &AuditReport| {
        r.specs
            .first()
            .and_then(|s| value(s, "metrics.accuracy.overall"))
            .unwrap_or((None, None))
    };
    let accuracy = shift(
        None,
        "metrics.accuracy.overall",
        accuracy_of(before),
        accuracy_of(after),
        None,
    );
    let paths = match before.task {
        Task::Binary => BINARY_GAPS,
        _ => MULTICLASS_GAPS,
    };
    let mut gaps = Vec::new();
    for (b, a) in before.specs.iter().zip(&after.specs) {
        for path in paths {
            if let (Some(vb), Some(va)) = (value(b, path), value(a, path)) {
                gaps.push(shift(Some(&b.name), path, vb, va, Some(max_fairness_shift)));
            }
        }
    }
    Ok(AuditComparison {
        schema: COMPARISON_SCHEMA.into(),
        before_name: before_name.into(),
        after_name: after_name.into(),
        rows: before.rows,
        max_fairness_shift,
        accuracy,
        gaps,
        notes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditConfig, AuditInput, BootstrapConfig, GroupSpec, audit};

    fn report(pred: &[&str]) -> AuditReport {
        let y_true = ["a", "b", "c", "a", "b", "c", "a", "b"];
        let groups = ["x", "x", "x", "x", "y", "y", "y", "y"];
        let input = AuditInput::from_strings(&y_true, pred, None)
            .unwrap()
            .with_group("g", &groups)
            .unwrap();
        let cfg = AuditConfig {
            specs: GroupSpec::from_columns(&["g".to_string()], false),
            bootstrap: Some(BootstrapConfig::new(50, 1)),
            ..AuditConfig::default()
        };
        audit(&input, &cfg).unwrap()
    }

    #[test]
    fn identical_audits_do_not_move() {
        let r = report(&["a", "b", "c", "a", "b", "c", "b", "b"]);
        let c = compare_audits(&r, &r, "fp32", "int8", 0.0).unwrap();
        assert!(c.passed());
        assert!(!c.gaps.is_empty());
        assert!(c.gaps.iter().all(|g| g.shift.is_none_or(|d| d == 0.0)));
        assert_eq!(c.accuracy.shift, Some(0.0));
        assert!(c.gaps.iter().any(|g| g.before_interval.is_some()));
    }

    #[test]
    fn a_moved_gap_exceeds() {
        let before = report(&["a", "b", "c", "a", "b", "c", "a", "b"]);
        let after = report(&["a", "b", "c", "a", "a", "a", "a", "a"]);
        let c = compare_audits(&before, &after, "fp32", "int8", 0.01).unwrap();
        assert!(!c.passed());
        let moved: Vec<_> = c.exceeded().map(|g| g.metric.as_str()).collect();
        assert!(moved.contains(&"metrics.accuracy.difference_between_groups"));
        assert!(c.accuracy.shift.unwrap() < 0.0);
        assert!(c.to_html().contains("FAILED"));
    }

    #[test]
    fn audits_of_other_rows_are_refused() {
        let a = report(&["a", "b", "c", "a", "b", "c", "a", "b"]);
        let mut b = a.clone();
        b.rows += 1;
        assert!(compare_audits(&a, &b, "x", "y", 0.01).is_err());
    }
}
