//! Human-readable renderings of an [`AuditReport`]: aligned Markdown (reads
//! well on a terminal) and a self-contained HTML page with inline SVG plots.

mod svg;
mod timeline;

use std::fmt::Write;
use std::path::Path;

use crate::error::Result;
use crate::io::write_atomic;
use crate::report::{AuditReport, Interval, MetricSummary, OrderedMap, SpecReport, Task};
use svg::{Bars, bar_chart, escape, line_chart};

/// One headline number.
struct Headline {
    name: String,
    value: Option<f64>,
    interval: Option<Interval>,
}

/// Headline numbers in sections, each titled with its convention.
fn headlines(spec: &SpecReport) -> Vec<(String, Vec<Headline>)> {
    fn rows(
        entries: &[(&'static str, Option<f64>)],
        ivs: Option<&OrderedMap<Option<Interval>>>,
    ) -> Vec<Headline> {
        entries
            .iter()
            .map(|(name, value)| Headline {
                name: (*name).to_owned(),
                value: *value,
                interval: ivs.and_then(|i| i.get(name).copied().flatten()),
            })
            .collect()
    }
    let mut v = Vec::new();
    if let Some(f) = &spec.fairlearn {
        let mut r = rows(&f.entries(), f.intervals.as_ref());
        r.push(Headline {
            name: "between_group_theil_index (AIF360 definition, every group)".into(),
            value: spec.between_group_theil_index,
            interval: spec.between_group_theil_index_interval,
        });
        v.push((FAIRLEARN_TITLE.to_owned(), r));
    }
    if let Some(a) = &spec.aif360 {
        v.push((
            format!("{AIF360_TITLE}; privileged: {}", a.privileged.join(", ")),
            rows(&a.entries(), a.intervals.as_ref()),
        ));
    }
    if let Some(m) = &spec.multiclass {
        let mut r = rows(&m.entries(), m.intervals.as_ref());
        let at = [
            m.selection_rate_gap_label.clone(),
            m.recall_gap_label.clone(),
            m.false_positive_rate_gap_label.clone(),
            m.conditional_confusion_gap_cell
                .as_ref()
                .map(|c| format!("{} → {}", c.true_label, c.predicted_label)),
        ];
        for (h, at) in r.iter_mut().zip(at) {
            if let Some(at) = at {
                h.name = format!("{} (at {at})", h.name);
            }
        }
        v.push((
            "Multiclass: max over classes of max − min over groups".to_owned(),
            r,
        ));
    }
    for c in &spec.ordinal {
        let mut r = Vec::new();
        if let Some(f) = &c.fairlearn {
            r.extend(rows(&f.entries(), f.intervals.as_ref()));
        }
        if let Some(a) = &c.aif360 {
            let mut aif = rows(&a.entries(), a.intervals.as_ref());
            for h in &mut aif {
                h.name = format!("{} (AIF360)", h.name);
            }
            r.extend(aif);
        }
        v.push((format!("Ordinal cut `{}` ({FAIRLEARN_TITLE})", c.name), r));
    }
    v
}

const FAIRLEARN_TITLE: &str = "fairlearn: differences max − min ≥ 0, ratios min / max ≤ 1";
const AIF360_TITLE: &str =
    "AIF360: unprivileged − privileged, disparate impact unprivileged / privileged";

fn num(v: Option<f64>) -> String {
    match v {
        Some(x) if x.fract() == 0.0 && x.abs() >= 1.0 && x.abs() < 1e15 => format!("{x:.0}"),
        Some(x) if x != 0.0 && x.abs() < 1e-3 => format!("{x:.3e}"),
        Some(x) => format!("{x:.4}"),
        None => "—".into(),
    }
}

fn ci(i: Option<Interval>) -> String {
    i.map(|i| format!("{} – {}", num(Some(i.lower)), num(Some(i.upper))))
        .unwrap_or_default()
}

/// Columns of the by-group tables: (title, metric names).
fn group_tables(report: &AuditReport, spec: &SpecReport) -> Vec<(String, Vec<String>)> {
    let present = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .filter(|n| spec.metrics.get(n).is_some())
            .map(|n| (*n).to_owned())
            .collect()
    };
    match report.task {
        Task::Binary => vec![(
            "By group".into(),
            present(&[
                "count",
                "accuracy",
                "balanced_accuracy",
                "selection_rate",
                "true_positive_rate",
                "false_positive_rate",
                "precision",
                "roc_auc",
                "expected_calibration_error",
            ]),
        )],
        Task::Multiclass => {
            let mut per_class = Vec::new();
            for l in &report.labels {
                per_class.push(format!("selection_rate[{l}]"));
                per_class.push(format!("recall[{l}]"));
            }
            let per_class: Vec<&str> = per_class.iter().map(String::as_str).collect();
            vec![
                (
                    "By group".into(),
                    present(&["count", "accuracy", "balanced_accuracy", "macro_f1"]),
                ),
                (
                    "By group and class (one-vs-rest)".into(),
                    present(&per_class),
                ),
            ]
        }
    }
}

/// Rows of a by-group table; `cols` must name metrics of the spec
/// ([`group_tables`] only lists those).
fn group_rows(spec: &SpecReport, cols: &[String]) -> Vec<Vec<String>> {
    let ms: Vec<&MetricSummary> = cols.iter().filter_map(|c| spec.metrics.get(c)).collect();
    let mut rows = Vec::new();
    for (g, info) in spec.groups.iter().enumerate() {
        let mut r = vec![info.key.clone()];
        for m in &ms {
            r.push(num(m.by_group.values().nth(g).copied().flatten()));
        }
        rows.push(r);
    }
    let mut overall = vec!["overall".to_owned()];
    let mut diff = vec!["max − min".to_owned()];
    let mut ratio = vec!["min / max".to_owned()];
    for m in &ms {
        overall.push(num(m.overall));
        diff.push(num(m.difference_between_groups));
        ratio.push(num(m.ratio_between_groups));
    }
    rows.push(overall);
    rows.push(diff);
    rows.push(ratio);
    rows
}

fn md_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut s = String::from("|");
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = w - c.chars().count();
            if i == 0 {
                let _ = write!(s, " {c}{} |", " ".repeat(pad));
            } else {
                let _ = write!(s, " {}{c} |", " ".repeat(pad));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header);
    out.push('|');
    for (i, w) in widths.iter().enumerate() {
        if i == 0 {
            let _ = write!(out, " {} |", "-".repeat(*w));
        } else {
            let _ = write!(out, " {}: |", "-".repeat(w.saturating_sub(1).max(1)));
        }
    }
    out.push('\n');
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

fn summary_line(report: &AuditReport) -> String {
    let mut s = format!("{} rows · ", report.rows);
    match (&report.task, &report.positive_label) {
        (Task::Binary, Some(p)) => {
            let _ = write!(s, "binary task, positive label `{p}`");
        }
        _ => {
            let _ = write!(
                s,
                "{} labels{}",
                report.labels.len(),
                if report.ordinal { " (ordinal)" } else { "" }
            );
        }
    }
    let _ = write!(s, " · labels: {}", report.labels.join(", "));
    if let Some(b) = &report.bootstrap {
        let _ = write!(
            s,
            " · bootstrap: {} resamples, {:.0}% intervals, seed {}",
            b.resamples,
            b.level * 100.0,
            b.seed
        );
    }
    s
}

impl AuditReport {
    /// A Markdown rendering with aligned columns (readable on a terminal):
    /// breaches, warnings, then per spec the headline disparities (with
    /// intervals) and the by-group tables.
    pub fn to_markdown(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# Fairness audit\n\n{}\n", summary_line(self));
        if self.config.thresholds.is_empty() {
            o.push_str("No fairness thresholds declared.\n\n");
        } else if self.breaches.is_empty() {
            let _ = writeln!(
                o,
                "All {} declared thresholds hold.\n",
                self.config.thresholds.len()
            );
        } else {
            o.push_str("## Breaches\n\n");
            for b in &self.breaches {
                let _ = writeln!(o, "- {b}");
            }
            o.push('\n');
        }
        if !self.warnings.is_empty() {
            o.push_str("## Warnings\n\n");
            for w in &self.warnings {
                let _ = writeln!(o, "- {}", w.message);
            }
            o.push('\n');
        }
        if let Some(t) = self.dataset.theil_index {
            let _ = writeln!(
                o,
                "Theil index (AIF360, all rows): {t:.6}; generalized entropy α = 2: {}\n",
                num(self.dataset.generalized_entropy_index_alpha2)
            );
        }
        for spec in &self.specs {
            let _ = writeln!(o, "## {}\n", spec.name);
            if let Some(f) = &spec.four_fifths {
                let verdict = match f.passes {
                    Some(true) if f.constant_classifier => {
                        "passes (trivially: constant classifier)"
                    }
                    Some(true) => "passes",
                    Some(false) => "fails",
                    None => "undefined",
                };
                let _ = writeln!(
                    o,
                    "Four-fifths rule: {verdict} (lowest / highest selection rate = {}{})\n",
                    num(f.ratio),
                    if f.groups_below.is_empty() {
                        String::new()
                    } else {
                        format!("; below 4/5: {}", f.groups_below.join(", "))
                    }
                );
            }
            for (title, hs) in headlines(spec) {
                let _ = writeln!(o, "{title}:\n");
                let header: Vec<String> = ["metric", "value", "interval"]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect();
                let rows: Vec<Vec<String>> = hs
                    .iter()
                    .map(|h| vec![h.name.clone(), num(h.value), ci(h.interval)])
                    .collect();
                o.push_str(&md_table(&header, &rows));
                o.push('\n');
            }
            for (title, cols) in group_tables(self, spec) {
                let _ = writeln!(o, "{title}:\n");
                let mut header = vec!["group".to_owned()];
                header.extend(cols.iter().cloned());
                o.push_str(&md_table(&header, &group_rows(spec, &cols)));
                o.push('\n');
            }
        }
        o
    }

    /// A self-contained HTML page (inline CSS and SVG, no scripts): per-group
    /// bars with interval error bars, ROC curves and reliability curves by
    /// group, and the tables of [`to_markdown`](Self::to_markdown).
    pub fn to_html(&self) -> String {
        let mut o = String::new();
        o.push_str(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Fairness audit</title>\
             <style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}\
             table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px}\
             td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}\
             .breach{color:#b00020}.warn{color:#8a5a00}.charts{display:flex;flex-wrap:wrap;gap:12px}\
             section{border-top:2px solid #ddd;margin-top:2em}</style></head><body>\n",
        );
        let _ = writeln!(
            o,
            "<h1>Fairness audit</h1><p>{}</p>",
            escape(&summary_line(self))
        );
        if !self.breaches.is_empty() {
            o.push_str("<h2 class=\"breach\">Breaches</h2><ul>");
            for b in &self.breaches {
                let _ = write!(o, "<li class=\"breach\">{}</li>", escape(&b.to_string()));
            }
            o.push_str("</ul>\n");
        } else if !self.config.thresholds.is_empty() {
            let _ = writeln!(
                o,
                "<p>All {} declared thresholds hold.</p>",
                self.config.thresholds.len()
            );
        }
        if !self.warnings.is_empty() {
            o.push_str("<h2>Warnings</h2><ul>");
            for w in &self.warnings {
                let _ = write!(o, "<li class=\"warn\">{}</li>", escape(&w.message));
            }
            o.push_str("</ul>\n");
        }
        for spec in &self.specs {
            self.html_spec(&mut o, spec);
        }
        o.push_str("</body></html>\n");
        o
    }

    fn html_spec(&self, o: &mut String, spec: &SpecReport) {
        let _ = writeln!(o, "<section><h2>{}</h2>", escape(&spec.name));
        for (title, hs) in headlines(spec) {
            let _ = write!(
                o,
                "<h3>{}</h3><table><tr><th>metric</th><th>value</th><th>interval</th></tr>",
                escape(&title)
            );
            for h in &hs {
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                    escape(&h.name),
                    num(h.value),
                    ci(h.interval)
                );
            }
            o.push_str("</table>\n");
        }
        o.push_str("<div class=\"charts\">");
        let keys: Vec<String> = spec.groups.iter().map(|g| g.key.clone()).collect();
        let bars_of = |name: &str| -> Option<Bars> {
            let m = spec.metrics.get(name)?;
            Some(Bars {
                name: name.to_owned(),
                values: m.by_group.values().copied().collect(),
                intervals: match &m.intervals {
                    Some(i) => i
                        .by_group
                        .values()
                        .map(|iv| iv.map(|iv| (iv.lower, iv.upper)))
                        .collect(),
                    None => vec![None; keys.len()],
                },
            })
        };
        match self.task {
            Task::Binary => {
                for name in [
                    "selection_rate",
                    "true_positive_rate",
                    "false_positive_rate",
                    "accuracy",
                ] {
                    if let Some(b) = bars_of(name) {
                        let overall = spec.metrics.get(name).and_then(|m| m.overall);
                        o.push_str(&bar_chart(
                            &format!("{name} by group (dashed: overall)"),
                            &keys,
                            &[b],
                            overall,
                        ));
                    }
                }
            }
            Task::Multiclass => {
                for kind in ["selection_rate", "recall"] {
                    let series: Vec<Bars> = self
                        .labels
                        .iter()
                        .filter_map(|l| {
                            bars_of(&format!("{kind}[{l}]")).map(|mut b| {
                                b.name = l.clone();
                                b
                            })
                        })
                        .collect();
                    o.push_str(&bar_chart(
                        &format!("{kind} by group and class"),
                        &keys,
                        &series,
                        None,
                    ));
                }
                if let Some(b) = bars_of("accuracy") {
                    let overall = spec.metrics.get("accuracy").and_then(|m| m.overall);
                    o.push_str(&bar_chart("accuracy by group", &keys, &[b], overall));
                }
            }
        }
        if let Some(roc) = &spec.roc {
            let series: Vec<(String, Vec<(f64, f64)>)> = roc
                .by_group
                .iter()
                .map(|(k, c)| {
                    let pts = c
                        .as_ref()
                        .map(|c| {
                            c.false_positive_rate
                                .iter()
                                .copied()
                                .zip(c.true_positive_rate.iter().copied())
                                .collect()
                        })
                        .unwrap_or_default();
                    let auc = spec
                        .metrics
                        .get("roc_auc")
                        .and_then(|m| m.by_group.get(k).copied().flatten());
                    (format!("{k} (AUC {})", num(auc)), pts)
                })
                .collect();
            o.push_str(&line_chart(
                "ROC by group",
                "false positive rate",
                "true positive rate",
                &series,
                true,
                false,
            ));
        }
        if let Some(cal) = &spec.calibration {
            let series: Vec<(String, Vec<(f64, f64)>)> = cal
                .by_group
                .iter()
                .map(|(k, bins)| {
                    let ece = spec
                        .metrics
                        .get("expected_calibration_error")
                        .and_then(|m| m.by_group.get(k).copied().flatten());
                    (
                        format!("{k} (ECE {})", num(ece)),
                        bins.iter()
                            .map(|b| (b.mean_score, b.fraction_positive))
                            .collect(),
                    )
                })
                .collect();
            o.push_str(&line_chart(
                &format!("Calibration by group ({} bins)", cal.bins),
                "mean score",
                "fraction positive",
                &series,
                true,
                true,
            ));
        }
        o.push_str("</div>\n");
        for (title, cols) in group_tables(self, spec) {
            let _ = write!(o, "<h3>{}</h3><table><tr><th>group</th>", escape(&title));
            for c in &cols {
                let _ = write!(o, "<th>{}</th>", escape(c));
            }
            o.push_str("</tr>");
            for r in group_rows(spec, &cols) {
                let _ = write!(o, "<tr><td>{}</td>", escape(&r[0]));
                for c in &r[1..] {
                    let _ = write!(o, "<td class=\"n\">{}</td>", escape(c));
                }
                o.push_str("</tr>");
            }
            o.push_str("</table>\n");
        }
        o.push_str("</section>\n");
    }

    /// Writes the JSON report atomically.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let mut text = self.to_json_pretty()?;
        text.push('\n');
        write_atomic(path, text.as_bytes())
    }

    /// Writes the HTML page atomically.
    pub fn write_html(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.to_html().as_bytes())
    }

    /// Writes the Markdown rendering atomically.
    pub fn write_markdown(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.to_markdown().as_bytes())
    }
}
