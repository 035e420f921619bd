//! The self-contained HTML view of a [`RemodelReport`]: inline CSS and SVG,
//! no scripts, no external resources.

use std::f64::consts::PI;
use std::fmt::Write;

use crate::report::RemodelReport;
use crate::space::{ACCURACY, FAIRNESS, Profile};

const V0_COLOR: &str = "#1f77b4";
const VT_COLOR: &str = "#2ca02c";
const VD_COLOR: &str = "#d62728";
const CANDIDATE_COLOR: &str = "#9a9a9a";
const FRONT_COLOR: &str = "#ff7f0e";

pub(crate) use valor_base::html::escape;

fn score(v: Option<f64>) -> String {
    v.map_or_else(
        || "<span class=\"nm\">NOT MEASURED</span>".to_owned(),
        |x| format!("{x:.3}"),
    )
}

fn settings_text(settings: &std::collections::BTreeMap<String, serde_json::Value>) -> String {
    settings
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl RemodelReport {
    /// A self-contained HTML page: verdict, profile table, a radar chart of
    /// `V0`, `V_T` and `V_D`, the Pareto front (accuracy vs fairness), the
    /// chosen settings, all candidates and the search trajectory.
    pub fn to_html(&self) -> String {
        let mut h = String::new();
        let verdict_class = if self.reachable { "reached" } else { "out" };
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>Valor remodel report</title>\n<style>\n\
             body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}\n\
             table{{border-collapse:collapse;margin:1rem 0}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}}\n\
             th:first-child,td:first-child{{text-align:left}}\n\
             .verdict{{padding:.8rem 1rem;border-radius:.3rem}}.reached{{background:#e6f4ea}}.out{{background:#fdecea}}\n\
             .nm{{color:#a33;font-weight:600}}svg{{background:#fff;border:1px solid #eee}}\n\
             </style>\n</head>\n<body>\n<h1>Valor remodel report</h1>\n\
             <p class=\"verdict {verdict_class}\">{}</p>\n",
            escape(&self.message)
        );

        // Profile table.
        let _ = write!(
            h,
            "<h2>Value profiles ({} split)</h2>\n<table>\n<tr><th>dimension</th><th>V0</th><th>V_T</th>\
             <th>V_D</th><th>weight</th><th>measure</th></tr>\n",
            escape(&self.split)
        );
        for (dim, target) in &self.vd {
            let info = self.dimensions.get(dim);
            let _ = writeln!(
                h,
                "<tr><td title=\"{}\">{}</td><td>{}</td><td>{}</td><td>{target:.3}</td><td>{}</td><td>{}</td></tr>",
                escape(info.map_or("", |d| d.description.as_str())),
                escape(dim),
                score(self.v0.value(dim)),
                score(self.vt.value(dim)),
                info.map_or("-".to_owned(), |d| format!("{:.3}", d.weight)),
                escape(info.map_or("", |d| d.formula.as_str())),
            );
        }
        let _ = write!(
            h,
            "</table>\n<p>{} distance over {}: d(V0, V_D) = {:.4}, d(V_T, V_D) = {:.4} \
             (tolerance {:.4}).</p>\n",
            escape(self.metric.name()),
            escape(&self.distance_dimensions.join(", ")),
            self.distance_v0_vd,
            self.distance_vt_vd,
            self.tolerance
        );
        if !self.not_measured.is_empty() {
            h.push_str("<p>NOT MEASURED (left out of every distance):</p>\n<ul>\n");
            for (dim, reason) in &self.not_measured {
                let _ = writeln!(h, "<li><b>{}</b>: {}</li>", escape(dim), escape(reason));
            }
            h.push_str("</ul>\n");
        }

        h.push_str("<h2>Radar: V0, V_T and V_D</h2>\n");
        h.push_str(&self.radar_svg());
        let _ = write!(
            h,
            "<h2>Pareto front: accuracy vs fairness (validation split)</h2>\n{}",
            self.pareto_svg()
        );

        // Chosen settings.
        let _ = write!(
            h,
            "<h2>Chosen model</h2>\n<p><b>{}</b> (candidate {}, rule {}): {}. Validation distance to V_D {:.4}.</p>\n",
            escape(&self.chosen.label),
            self.chosen.index,
            escape(self.chosen.rule.name()),
            escape(&settings_text(&self.chosen.settings)),
            self.chosen.validation_distance_to_vd
        );

        // Candidates.
        let dims: Vec<&String> = self.vd.keys().collect();
        h.push_str("<h2>Candidates (validation split)</h2>\n<table>\n<tr><th>#</th><th>label</th><th>settings</th>");
        for d in &dims {
            let _ = write!(h, "<th>{}</th>", escape(d));
        }
        h.push_str("<th>d(·, V_D)</th><th>Pareto</th></tr>\n");
        for c in &self.candidates {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td>",
                c.index,
                escape(&c.label),
                escape(&settings_text(&c.settings))
            );
            for d in &dims {
                let _ = write!(h, "<td>{}</td>", score(c.profile.value(d)));
            }
            let _ = writeln!(
                h,
                "<td>{:.4}</td><td>{}</td></tr>",
                c.distance_to_vd,
                if c.on_pareto_front { "yes" } else { "" }
            );
        }
        h.push_str("</table>\n");
        let _ = writeln!(
            h,
            "<p>Convex-hull bound: no mixture of the measured models is closer to V_D than {:.4} \
             (weighted L2).</p>",
            self.hull.distance_l2w_to_vd
        );

        // Trajectory.
        if !self.trajectory.is_empty() {
            h.push_str(
                "<h2>Search trajectory</h2>\n<table>\n<tr><th>round</th><th>status</th><th>measured</th>\
                 <th>anchor</th><th>d(anchor, V_D)</th><th>rung</th><th>d(goal, V_D)</th><th>search point</th></tr>\n",
            );
            for t in &self.trajectory {
                let point = t
                    .search_point
                    .iter()
                    .map(|(k, s)| {
                        format!(
                            "{k}={}",
                            s.value().map_or("-".into(), |v| format!("{v:.3}"))
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>{:.4}</td><td>{}</td></tr>",
                    t.round,
                    escape(&format!("{:?}", t.status)),
                    t.candidates_measured,
                    t.anchor.map_or("baseline".to_owned(), |a| a.to_string()),
                    t.anchor_distance,
                    t.rung,
                    t.goal_distance,
                    escape(&point)
                );
            }
            h.push_str("</table>\n");
        }

        if !self.provenance.is_empty() {
            h.push_str("<h2>Provenance</h2>\n<table>\n");
            for (k, v) in &self.provenance {
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td>{}</td></tr>",
                    escape(k),
                    escape(&v.to_string())
                );
            }
            h.push_str("</table>\n");
        }
        h.push_str("</body>\n</html>\n");
        h
    }

    /// Radar chart over the distance dimensions, one closed polygon per
    /// profile, radius 1 = score 1.
    fn radar_svg(&self) -> String {
        let dims = &self.distance_dimensions;
        let n = dims.len();
        if n < 3 {
            return self.bars_svg();
        }
        let (cx, cy, r) = (260.0, 230.0, 160.0);
        let angle = |i: usize| -PI / 2.0 + 2.0 * PI * i as f64 / n as f64;
        let at = |i: usize, v: f64| (cx + r * v * angle(i).cos(), cy + r * v * angle(i).sin());
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"520\" height=\"440\" viewBox=\"0 0 520 440\" \
             role=\"img\" aria-label=\"radar chart of V0, V_T and V_D\">"
        );
        for level in [0.25, 0.5, 0.75, 1.0] {
            let pts: Vec<String> = (0..n)
                .map(|i| {
                    let (x, y) = at(i, level);
                    format!("{x:.1},{y:.1}")
                })
                .collect();
            let _ = writeln!(
                s,
                "<polygon points=\"{}\" fill=\"none\" stroke=\"#ddd\"/>",
                pts.join(" ")
            );
        }
        for level in [0.5, 1.0] {
            let (x, y) = at(0, level);
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#888\">{level}</text>",
                x + 4.0,
                y + 10.0
            );
        }
        for (i, d) in dims.iter().enumerate() {
            let (x, y) = at(i, 1.0);
            let (lx, ly) = at(i, 1.13);
            let anchor = if (lx - cx).abs() < 1.0 {
                "middle"
            } else if lx > cx {
                "start"
            } else {
                "end"
            };
            let _ = writeln!(
                s,
                "<line x1=\"{cx}\" y1=\"{cy}\" x2=\"{x:.1}\" y2=\"{y:.1}\" stroke=\"#bbb\"/>\
                 <text x=\"{lx:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" font-size=\"13\">{}</text>",
                ly + 4.0,
                escape(d)
            );
        }
        let vd = Profile::from_values(self.vd.iter().map(|(k, v)| (k.as_str(), *v)));
        let series = [
            ("V0", V0_COLOR, &self.v0, ""),
            ("V_T", VT_COLOR, &self.vt, ""),
            ("V_D", VD_COLOR, &vd, " stroke-dasharray=\"6 4\""),
        ];
        for (k, (name, color, profile, dash)) in series.iter().enumerate() {
            let values: Vec<Option<f64>> = dims.iter().map(|d| profile.value(d)).collect();
            if values.iter().all(Option::is_some) {
                let pts: Vec<String> = values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let (x, y) = at(i, v.unwrap_or(0.0).clamp(0.0, 1.0));
                        format!("{x:.1},{y:.1}")
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "<polygon points=\"{}\" fill=\"{color}\" fill-opacity=\"0.08\" stroke=\"{color}\" \
                     stroke-width=\"2\"{dash}><title>{name}</title></polygon>",
                    pts.join(" ")
                );
                for p in &pts {
                    let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
                    let _ = writeln!(
                        s,
                        "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{color}\"/>"
                    );
                }
            }
            let ly = 20.0 + 18.0 * k as f64;
            let _ = writeln!(
                s,
                "<rect x=\"12\" y=\"{:.1}\" width=\"14\" height=\"4\" fill=\"{color}\"/>\
                 <text x=\"32\" y=\"{:.1}\" font-size=\"13\">{name}</text>",
                ly - 4.0,
                ly + 1.0
            );
        }
        s.push_str("</svg>\n");
        s
    }

    /// The three profiles as grouped horizontal bars: the fallback for one or
    /// two dimensions, where a radar chart degenerates to a line.
    fn bars_svg(&self) -> String {
        let vd = Profile::from_values(self.vd.iter().map(|(k, v)| (k.as_str(), *v)));
        let series = [
            ("V0", V0_COLOR, &self.v0),
            ("V_T", VT_COLOR, &self.vt),
            ("V_D", VD_COLOR, &vd),
        ];
        let (left, width, bar, gap) = (120.0, 360.0, 14.0, 16.0);
        let group = 3.0 * bar + gap;
        let height = 40.0 + group * self.distance_dimensions.len() as f64;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"560\" height=\"{height:.0}\" \
             viewBox=\"0 0 560 {height:.0}\" role=\"img\" aria-label=\"radar chart of V0, V_T and V_D\">\n\
             <text x=\"8\" y=\"16\" font-size=\"11\" fill=\"#666\">(bars: a radar chart needs three or more dimensions)</text>"
        );
        for (g, dim) in self.distance_dimensions.iter().enumerate() {
            let y0 = 28.0 + group * g as f64;
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\" text-anchor=\"end\">{}</text>",
                left - 8.0,
                y0 + 1.5 * bar + 4.0,
                escape(dim)
            );
            for (k, (name, color, profile)) in series.iter().enumerate() {
                let y = y0 + bar * k as f64;
                let value = profile.value(dim).unwrap_or(0.0).clamp(0.0, 1.0);
                let _ = writeln!(
                    s,
                    "<rect x=\"{left}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\">\
                     <title>{name}</title></rect><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{name} {value:.3}</text>",
                    width * value,
                    bar - 2.0,
                    left + width * value + 4.0,
                    y + bar - 4.0
                );
            }
        }
        s.push_str("</svg>\n");
        s
    }

    /// Scatter of accuracy (x) against fairness (y) for every candidate, the
    /// Pareto front joined by a line, and V0, V_T, V_D marked.
    fn pareto_svg(&self) -> String {
        let xy = |p: &Profile| Some((p.value(ACCURACY)?, p.value(FAIRNESS)?));
        let cands: Option<Vec<(f64, f64, bool, String)>> = self
            .candidates
            .iter()
            .map(|c| xy(&c.profile).map(|(x, y)| (x, y, c.on_pareto_front, c.label.clone())))
            .collect();
        let vd = (
            self.vd.get(ACCURACY).copied(),
            self.vd.get(FAIRNESS).copied(),
        );
        let (Some(cands), Some(v0), Some(vt), (Some(dx), Some(dy))) =
            (cands, xy(&self.validation.v0), xy(&self.validation.vt), vd)
        else {
            return "<p>The Pareto chart needs measured <b>accuracy</b> and <b>fairness</b> \
                    dimensions with targets; this report does not have both.</p>\n"
                .to_owned();
        };
        let all: Vec<(f64, f64)> = cands
            .iter()
            .map(|c| (c.0, c.1))
            .chain([v0, vt, (dx, dy)])
            .collect();
        let range = |sel: fn(&(f64, f64)) -> f64| {
            let lo = all.iter().map(sel).fold(f64::INFINITY, f64::min);
            let hi = all.iter().map(sel).fold(f64::NEG_INFINITY, f64::max);
            let mut lo = ((lo - 0.02) * 20.0).floor() / 20.0;
            let mut hi = ((hi + 0.02) * 20.0).ceil() / 20.0;
            lo = lo.max(0.0);
            hi = hi.min(1.0);
            if hi - lo < 0.1 {
                lo = (lo - 0.05).max(0.0);
                hi = (lo + 0.1).min(1.0);
            }
            (lo, hi)
        };
        let (x0, x1) = range(|p| p.0);
        let (y0, y1) = range(|p| p.1);
        let (left, top, w, hgt) = (60.0, 20.0, 440.0, 340.0);
        let px = |x: f64| left + w * (x - x0) / (x1 - x0);
        let py = |y: f64| top + hgt * (1.0 - (y - y0) / (y1 - y0));
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"410\" viewBox=\"0 0 640 410\" \
             role=\"img\" aria-label=\"Pareto front, accuracy against fairness\">"
        );
        let _ = writeln!(
            s,
            "<rect x=\"{left}\" y=\"{top}\" width=\"{w}\" height=\"{hgt}\" fill=\"none\" stroke=\"#999\"/>"
        );
        for gx in ticks(x0, x1) {
            let _ = writeln!(
                s,
                "<line x1=\"{0:.1}\" y1=\"{top}\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"#eee\"/>\
                 <text x=\"{0:.1}\" y=\"{2}\" font-size=\"11\" text-anchor=\"middle\">{gx:.2}</text>",
                px(gx),
                top + hgt,
                top + hgt + 15.0,
            );
        }
        for gy in ticks(y0, y1) {
            let _ = writeln!(
                s,
                "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#eee\"/>\
                 <text x=\"{2}\" y=\"{3:.1}\" font-size=\"11\" text-anchor=\"end\">{gy:.2}</text>",
                py(gy),
                left + w,
                left - 6.0,
                py(gy) + 4.0
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"402\" font-size=\"13\" text-anchor=\"middle\">accuracy</text>\
             <text x=\"14\" y=\"{:.1}\" font-size=\"13\" text-anchor=\"middle\" \
             transform=\"rotate(-90 14 {:.1})\">fairness</text>",
            left + w / 2.0,
            top + hgt / 2.0,
            top + hgt / 2.0
        );
        let mut front: Vec<(f64, f64)> = cands.iter().filter(|c| c.2).map(|c| (c.0, c.1)).collect();
        front.sort_by(|a, b| a.0.total_cmp(&b.0));
        if front.len() > 1 {
            let pts: Vec<String> = front
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
                .collect();
            let _ = writeln!(
                s,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{FRONT_COLOR}\" stroke-width=\"1.5\"/>",
                pts.join(" ")
            );
        }
        for (x, y, on_front, label) in &cands {
            let color = if *on_front {
                FRONT_COLOR
            } else {
                CANDIDATE_COLOR
            };
            let _ = writeln!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4.5\" fill=\"{color}\"><title>{} (accuracy {x:.3}, fairness {y:.3})</title></circle>",
                px(*x),
                py(*y),
                escape(label)
            );
        }
        let (ax, ay) = (px(v0.0), py(v0.1));
        let _ = writeln!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"none\" stroke=\"{V0_COLOR}\" stroke-width=\"2\"><title>V0</title></rect>",
            ax - 5.0,
            ay - 5.0
        );
        let (bx, by) = (px(vt.0), py(vt.1));
        let _ = writeln!(
            s,
            "<polygon points=\"{:.1},{:.1} {:.1},{:.1} {:.1},{:.1} {:.1},{:.1}\" fill=\"none\" stroke=\"{VT_COLOR}\" stroke-width=\"2\"><title>V_T</title></polygon>",
            bx,
            by - 7.0,
            bx + 7.0,
            by,
            bx,
            by + 7.0,
            bx - 7.0,
            by
        );
        let (cx, cy) = (px(dx), py(dy));
        let _ = writeln!(
            s,
            "<path d=\"M{:.1},{:.1} L{:.1},{:.1} M{:.1},{:.1} L{:.1},{:.1}\" stroke=\"{VD_COLOR}\" stroke-width=\"2.5\"><title>V_D</title></path>",
            cx - 6.0,
            cy - 6.0,
            cx + 6.0,
            cy + 6.0,
            cx - 6.0,
            cy + 6.0,
            cx + 6.0,
            cy - 6.0
        );
        let legend = [
            ("candidate", CANDIDATE_COLOR),
            ("Pareto front", FRONT_COLOR),
            ("V0", V0_COLOR),
            ("V_T", VT_COLOR),
            ("V_D", VD_COLOR),
        ];
        for (k, (name, color)) in legend.iter().enumerate() {
            let y = 30.0 + 18.0 * k as f64;
            let _ = writeln!(
                s,
                "<circle cx=\"520\" cy=\"{:.1}\" r=\"5\" fill=\"{color}\"/><text x=\"532\" y=\"{:.1}\" font-size=\"12\">{name}</text>",
                y,
                y + 4.0
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// Round tick positions in `[lo, hi]`: multiples of 0.05, 0.1 or 0.2,
/// whichever gives at most 8 ticks.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let step = [0.05, 0.1, 0.2]
        .into_iter()
        .find(|s| (hi - lo) / s <= 8.0)
        .unwrap_or(0.25);
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside_the_range() {
        let t = ticks(0.65, 0.95);
        assert_eq!(t.len(), 7);
        assert!((t[0] - 0.65).abs() < 1e-12 && (t[6] - 0.95).abs() < 1e-12);
        assert_eq!(ticks(0.0, 1.0).len(), 6);
        assert_eq!(ticks(0.32, 0.38).len(), 1);
    }
}
