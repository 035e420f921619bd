//! Small inline-SVG charts (no scripts, no external assets).

use std::fmt::Write;

/// Colour-blind-friendly palette (Okabe–Ito, then greys).
const PALETTE: [&str; 10] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
    "#999999", "#666666",
];

pub(crate) fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

pub(crate) use valor_base::html::escape;

/// One series of a bar chart: a value and an optional interval per category.
pub(crate) struct Bars {
    pub name: String,
    pub values: Vec<Option<f64>>,
    pub intervals: Vec<Option<(f64, f64)>>,
}

const W: f64 = 560.0;
/// Height of the plotting area of a bar chart.
const PLOT_H: f64 = 208.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;

fn y_axis(svg: &mut String, y_max: f64) {
    let ph = PLOT_H;
    let decimals = if y_max < 0.1 { 3 } else { 2 };
    for i in 0..=4 {
        let v = y_max * i as f64 / 4.0;
        let y = TOP + ph - ph * i as f64 / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{v:.decimals$}</text>"##,
            W - RIGHT,
            LEFT - 4.0,
            y + 3.0
        );
    }
}

/// Grouped bars with error bars; `reference` draws a dashed line (overall).
pub(crate) fn bar_chart(
    title: &str,
    categories: &[String],
    series: &[Bars],
    reference: Option<f64>,
) -> String {
    let mut y_max: f64 = 0.0;
    for s in series {
        for (v, i) in s.values.iter().zip(&s.intervals) {
            y_max = y_max.max(v.unwrap_or(0.0));
            if let Some((_, hi)) = i {
                y_max = y_max.max(*hi);
            }
        }
    }
    y_max = y_max.max(reference.unwrap_or(0.0));
    let y_max = if y_max <= 0.0 {
        1.0
    } else {
        (y_max * 1.1).min(1.0).max(y_max)
    };
    // room below the plot for the rotated category labels (about 4.8 px of
    // drop per character at -60°)
    let longest = categories
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(0) as f64;
    let bottom = (20.0 + 4.8 * longest).clamp(40.0, 200.0);
    let h = TOP + PLOT_H + bottom;
    let pw = W - LEFT - RIGHT;
    let ph = PLOT_H;
    let y = |v: f64| TOP + ph - ph * (v / y_max);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img"><title>{t}</title><text x="{LEFT}" y="16" font-size="13" font-weight="bold">{t}</text>"#,
        t = escape(title)
    );
    y_axis(&mut svg, y_max);
    let nc = categories.len().max(1) as f64;
    let slot = pw / nc;
    let ns = series.len().max(1) as f64;
    let bw = (slot * 0.8 / ns).min(40.0);
    for (ci, cat) in categories.iter().enumerate() {
        let x0 = LEFT + slot * ci as f64 + (slot - bw * ns) / 2.0;
        for (si, s) in series.iter().enumerate() {
            let x = x0 + bw * si as f64;
            if let Some(v) = s.values.get(ci).copied().flatten() {
                let _ = write!(
                    svg,
                    r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {v:.4}</title></rect>"#,
                    y(v),
                    bw * 0.92,
                    (y(0.0) - y(v)).max(0.0),
                    colour(si),
                    escape(&format!("{} / {}", cat, s.name))
                );
            }
            if let Some((lo, hi)) = s.intervals.get(ci).copied().flatten() {
                let cx = x + bw * 0.46;
                let _ = write!(
                    svg,
                    r##"<path d="M{cx:.1} {:.1}V{:.1}M{:.1} {:.1}H{:.1}M{:.1} {:.1}H{:.1}" stroke="#222" stroke-width="1.2" fill="none"/>"##,
                    y(lo),
                    y(hi),
                    cx - 4.0,
                    y(lo),
                    cx + 4.0,
                    cx - 4.0,
                    y(hi),
                    cx + 4.0
                );
            }
        }
        let lx = LEFT + slot * (ci as f64 + 0.5);
        let _ = write!(
            svg,
            r#"<text x="{lx:.1}" y="{:.1}" font-size="10" text-anchor="end" transform="rotate(-60 {lx:.1} {:.1})">{}</text>"#,
            TOP + PLOT_H + 14.0,
            TOP + PLOT_H + 14.0,
            escape(cat)
        );
    }
    if let Some(r) = reference {
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{yr:.1}" x2="{:.1}" y2="{yr:.1}" stroke="#444" stroke-dasharray="4 3"><title>overall: {r:.4}</title></line>"##,
            W - RIGHT,
            yr = y(r)
        );
    }
    if series.len() > 1 {
        legend(&mut svg, series.iter().map(|s| s.name.as_str()));
    }
    svg.push_str("</svg>");
    svg
}

fn legend<'a>(svg: &mut String, names: impl Iterator<Item = &'a str>) {
    for (i, n) in names.enumerate() {
        let x = W - RIGHT - 150.0;
        let y = TOP + 12.0 * i as f64;
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{:.1}" width="9" height="9" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="10">{}</text>"#,
            y - 8.0,
            colour(i),
            x + 13.0,
            y,
            escape(n)
        );
    }
}

/// Lines on the unit square (ROC, reliability); `diagonal` draws y = x.
pub(crate) fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    diagonal: bool,
    markers: bool,
) -> String {
    let size = 300.0;
    let (l, t, pw) = (48.0, 28.0, 220.0);
    let x = |v: f64| l + pw * v;
    let y = |v: f64| t + pw - pw * v;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {size}" width="{w}" height="{size}" role="img"><title>{tt}</title><text x="{l}" y="16" font-size="13" font-weight="bold">{tt}</text>"#,
        w = size + 260.0,
        tt = escape(title)
    );
    for i in 0..=4 {
        let v = i as f64 / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#e4e4e4"/><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{v:.2}</text><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{v:.2}</text>"##,
            x(0.0),
            y(v),
            x(1.0),
            y(v),
            x(v),
            y(0.0),
            x(v),
            y(1.0),
            l - 4.0,
            y(v) + 3.0,
            x(v),
            y(0.0) + 14.0
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text><text x="12" y="{:.1}" font-size="11" text-anchor="middle" transform="rotate(-90 12 {:.1})">{}</text>"#,
        x(0.5),
        y(0.0) + 30.0,
        escape(x_label),
        y(0.5),
        y(0.5),
        escape(y_label)
    );
    if diagonal {
        let _ = write!(
            svg,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#888" stroke-dasharray="4 3"/>"##,
            x(0.0),
            y(0.0),
            x(1.0),
            y(1.0)
        );
    }
    for (i, (name, pts)) in series.iter().enumerate() {
        if pts.is_empty() {
            continue;
        }
        let d: Vec<String> = pts
            .iter()
            .enumerate()
            .map(|(j, (a, b))| {
                format!(
                    "{}{:.1} {:.1}",
                    if j == 0 { 'M' } else { 'L' },
                    x(*a),
                    y(*b)
                )
            })
            .collect();
        let _ = write!(
            svg,
            r#"<path d="{}" stroke="{}" stroke-width="1.6" fill="none"><title>{}</title></path>"#,
            d.join(""),
            colour(i),
            escape(name)
        );
        if markers {
            for (a, b) in pts {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{}"/>"#,
                    x(*a),
                    y(*b),
                    colour(i)
                );
            }
        }
        let ly = t + 14.0 * i as f64;
        let _ = write!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="9" height="9" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="10">{}</text>"#,
            l + pw + 20.0,
            ly - 8.0,
            colour(i),
            l + pw + 33.0,
            ly,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_chart_draws_bars_and_error_bars() {
        let svg = bar_chart(
            "selection rate",
            &["<25".to_owned(), "25-60".to_owned()],
            &[Bars {
                name: "sr".into(),
                values: vec![Some(0.1), None],
                intervals: vec![Some((0.05, 0.15)), None],
            }],
            Some(0.12),
        );
        assert_eq!(svg.matches("<rect").count(), 1);
        assert_eq!(svg.matches("<path").count(), 1);
        assert!(svg.contains("&lt;25"));
    }
}
