//! The HTML page of a [`MonitorTimeline`]: fairness and drift per window
//! as inline-SVG line charts (the audit page's helpers and style).

use std::fmt::Write;

use super::svg::{escape, line_chart};
use crate::live::{LiveReport, MonitorTimeline};

type Series = Vec<(String, Vec<(f64, f64)>)>;

/// x in [0, 1] for window `i` of `n`.
fn x_of(i: usize, n: usize) -> f64 {
    if n <= 1 {
        0.5
    } else {
        i as f64 / (n - 1) as f64
    }
}

fn series(windows: &[LiveReport], f: impl Fn(&LiveReport) -> Vec<(String, Option<f64>)>) -> Series {
    let n = windows.len();
    let mut out: Series = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        for (name, v) in f(w) {
            let Some(v) = v else { continue };
            let pos = match out.iter().position(|(s, _)| *s == name) {
                Some(p) => p,
                None => {
                    out.push((name, Vec::new()));
                    out.len() - 1
                }
            };
            out[pos].1.push((x_of(i, n), v.clamp(0.0, 1.0)));
        }
    }
    out
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |x| format!("{x:.4}"))
}

impl MonitorTimeline {
    /// A self-contained HTML page (no scripts): a summary, the events, and
    /// per-window charts of demographic parity, selection rates, outcome
    /// metrics and drift scores (values above 1 are drawn at 1; the JSON
    /// holds them).
    pub fn to_html(&self) -> String {
        let mut o = String::new();
        o.push_str(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Live fairness and drift</title>\
             <style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}\
             table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px}\
             td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}\
             .breach{color:#b00020}.charts{display:flex;flex-wrap:wrap;gap:12px}\
             section{border-top:2px solid #ddd;margin-top:2em}</style></head><body>\n",
        );
        let _ = writeln!(
            o,
            "<h1>Live fairness and drift</h1><p>{} decisions and {} feedback outcomes ({} outside the window) replayed from <code>{}</code>; window {}; a window every {} decisions; {} windows.</p>",
            self.decisions,
            self.feedback,
            self.feedback_not_in_window,
            escape(&self.source),
            escape(&match self.window {
                crate::Window::Count(n) => format!("the last {n} decisions"),
                crate::Window::Span { seconds, max_rows } =>
                    format!("the last {seconds} s (at most {max_rows} decisions)"),
            }),
            self.every,
            self.windows.len()
        );
        if !self.skipped.is_empty() {
            o.push_str("<p>Records not replayed: ");
            let parts: Vec<String> = self
                .skipped
                .iter()
                .map(|(k, v)| format!("{} {}", v, escape(k)))
                .collect();
            o.push_str(&parts.join(", "));
            o.push_str(".</p>\n");
        }
        o.push_str("<section><h2>Events</h2>");
        if self.events.is_empty() {
            o.push_str("<p>No threshold was breached and no feature drifted.</p>");
        } else {
            o.push_str("<table><tr><th>decision</th><th>event</th><th>spec</th><th>metric</th><th>value</th><th>limit</th></tr>");
            for e in &self.events {
                let _ = write!(
                    o,
                    "<tr><td class=\"n\">{}</td><td class=\"{}\">{:?}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                    e.rows_seen,
                    if e.kind == crate::MonitorEventKind::Breached {
                        "breach"
                    } else {
                        ""
                    },
                    e.kind,
                    escape(e.spec.as_deref().unwrap_or("")),
                    escape(&e.metric),
                    fmt(e.value),
                    escape(&e.limit.to_string())
                );
            }
            o.push_str("</table>");
        }
        o.push_str("</section>\n<section><h2>Fairness per window</h2><div class=\"charts\">");
        let w = &self.windows;
        let dp = series(w, |r| {
            r.selection
                .iter()
                .flat_map(|s| {
                    [
                        (
                            format!("{} DP difference", s.spec),
                            s.demographic_parity_difference,
                        ),
                        (format!("{} DP ratio", s.spec), s.demographic_parity_ratio),
                        (
                            format!("{} class gap", s.spec),
                            s.multiclass_selection_rate_gap,
                        ),
                    ]
                })
                .collect()
        });
        o.push_str(&line_chart(
            "Demographic parity",
            "window",
            "value",
            &dp,
            false,
            true,
        ));
        for (si, spec) in w
            .first()
            .map(|r| r.selection.as_slice())
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let rates = series(w, |r| {
                r.selection
                    .get(si)
                    .map(|s| {
                        s.rates
                            .iter()
                            .flat_map(|(g, m)| {
                                m.iter()
                                    .map(move |(l, v)| (format!("{g}: {l}"), Some(*v)))
                                    .collect::<Vec<_>>()
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            });
            o.push_str(&line_chart(
                &format!("Selection rate by {} and class", spec.spec),
                "window",
                "rate",
                &rates,
                false,
                true,
            ));
        }
        let outc = series(w, |r| {
            r.outcomes
                .iter()
                .flat_map(|s| {
                    [
                        (format!("{} accuracy", s.spec), s.accuracy),
                        (
                            format!("{} EO difference", s.spec),
                            s.equalized_odds_difference,
                        ),
                    ]
                })
                .collect()
        });
        if !outc.is_empty() {
            o.push_str(&line_chart(
                "Outcomes (feedback)",
                "window",
                "value",
                &outc,
                false,
                true,
            ));
        }
        o.push_str("</div></section>\n");
        let drift = series(w, |r| {
            r.drift
                .as_ref()
                .map(|d| {
                    d.features
                        .iter()
                        .map(|f| (format!("{} ({:?})", f.feature, f.method), Some(f.score)))
                        .collect()
                })
                .unwrap_or_default()
        });
        if !drift.is_empty() {
            o.push_str("<section><h2>Drift per window</h2><p>p-values (KS, chi-square, Z-test: drift below 0.05) and distances (Wasserstein normed, Jensen–Shannon: drift from 0.1), Evidently's default rules.</p><div class=\"charts\">");
            o.push_str(&line_chart(
                "Drift scores",
                "window",
                "score",
                &drift,
                false,
                true,
            ));
            o.push_str("</div>");
            if let Some(last) = w.last().and_then(|r| r.drift.as_ref()) {
                o.push_str("<table><tr><th>feature (last window)</th><th>method</th><th>score</th><th>threshold</th><th>drift</th><th>PSI</th></tr>");
                for f in &last.features {
                    let _ = write!(
                        o,
                        "<tr><td>{}</td><td>{:?}</td><td class=\"n\">{:.4e}</td><td class=\"n\">{}</td><td class=\"{}\">{}</td><td class=\"n\">{:.4}</td></tr>",
                        escape(&f.feature),
                        f.method,
                        f.score,
                        f.threshold,
                        if f.drifted { "breach" } else { "" },
                        if f.drifted { "yes" } else { "no" },
                        f.psi
                    );
                }
                o.push_str("</table>");
            }
            o.push_str("</section>\n");
        }
        o.push_str("</body></html>\n");
        o
    }
}
