//! The report's charts, written as SVG by hand: every mark carries its data (`data-*`
//! attributes and a `<title>` tooltip), so a browser test can check what is drawn against what
//! was meant, and every chart comes with its numbers as a table (screen readers, printing,
//! copying into a spreadsheet). Colours are the Okabe–Ito palette, which reads for the common
//! colour-vision deficiencies; no meaning rests on red against green alone.

use std::fmt::Write as _;

use super::{esc, table};

pub const BLUE: &str = "#0072B2";
pub const ORANGE: &str = "#E69F00";
pub const VERMILLION: &str = "#D55E00";
pub const SKY: &str = "#56B4E9";
pub const GREEN: &str = "#009E73";
pub const YELLOW: &str = "#F0E442";
pub const PURPLE: &str = "#CC79A7";
pub const GREY: &str = "#8C8C8C";
const INK: &str = "#222";
/// Grid lines stay lighter than any data mark.
const GRID: &str = "#ececec";
const FONT: &str = "font-family=\"system-ui,sans-serif\" font-size=\"12\"";

/// One data series: its name (legend, data attribute) and colour.
#[derive(Clone, Copy)]
pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
}

/// Text for a label inside a chart: control and invisible formatting characters dropped
/// (`super::hidden`), at most 40 characters. Escaped when written.
pub fn label(s: &str) -> String {
    let t: String = s.chars().filter(|&c| !super::hidden(c)).take(40).collect();
    if s.chars().count() > 40 { format!("{t}…") } else { t }
}

/// A number as an axis or a tooltip shows it: counts as integers, the rest to a sensible precision.
pub fn num(v: f64, integer: bool) -> String {
    if !v.is_finite() {
        "–".into()
    } else if integer {
        format!("{}", v.round() as i64)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Round tick values covering `lo..=hi`, about five of them, steps of 1, 2 or 5 × 10^k. For
/// counts (`integer`) the step is a whole number, so no tick reads "2.5 alerts".
pub fn ticks(lo: f64, hi: f64, integer: bool) -> Vec<f64> {
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo, lo + 1.0) };
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let mut step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw * 0.999).unwrap_or(10.0 * mag);
    if integer {
        step = step.round().max(1.0);
    }
    let first = (lo / step).floor();
    let mut out = Vec::new();
    for k in 0.. {
        let v = (first + k as f64) * step;
        // Multiples of the step, not a running sum, so ticks are exact.
        let v = if integer { v.round() } else { (v / step).round() * step };
        out.push(v);
        if v >= hi - step * 1e-9 || k > 50 {
            break;
        }
    }
    out
}

/// A tick's text: as many decimals as the step between ticks needs, none for counts.
fn tick_text(v: f64, t: &[f64], integer: bool) -> String {
    let step = if t.len() > 1 { t[1] - t[0] } else { 1.0 };
    let decimals = if integer { 0 } else { (-step.log10()).ceil().max(0.0) as usize };
    format!("{v:.decimals$}")
}

/// The plotting area inside a figure, and the linear maps into it.
#[derive(Clone, Copy)]
struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Frame {
    /// x pixel of value `v` on an axis from `lo` to `hi`.
    fn x(&self, v: f64, lo: f64, hi: f64) -> f64 {
        self.x0 + (v - lo) / (hi - lo) * (self.x1 - self.x0)
    }
    /// y pixel of value `v` (upwards) on an axis from `lo` to `hi`.
    fn y(&self, v: f64, lo: f64, hi: f64) -> f64 {
        self.y1 - (v - lo) / (hi - lo) * (self.y1 - self.y0)
    }
}

fn text(out: &mut String, x: f64, y: f64, anchor: &str, class: &str, extra: &str, s: &str) {
    let _ = write!(
        out,
        "<text class=\"{class}\" x=\"{x:.1}\" y=\"{y:.1}\" dy=\"0.35em\" text-anchor=\"{anchor}\" fill=\"{INK}\"{extra}>{}</text>",
        esc(s)
    );
}

/// A value axis along x (bottom) with light vertical grid lines.
fn x_axis(out: &mut String, f: Frame, t: &[f64], integer: bool, desc: &str) {
    let (lo, hi) = (t[0], t[t.len() - 1]);
    for &v in t {
        let x = f.x(v, lo, hi);
        let _ =
            write!(out, "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{GRID}\"/>", f.y0, f.y1);
        text(out, x, f.y1 + 12.0, "middle", "tick", " data-axis=\"x\"", &tick_text(v, t, integer));
    }
    let _ = write!(
        out,
        "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{INK}\"/>",
        f.x0,
        f.x1,
        y = f.y1
    );
    text(out, (f.x0 + f.x1) / 2.0, f.y1 + 30.0, "middle", "axis-title", "", desc);
}

/// A value axis along y (left) with light horizontal grid lines.
fn y_axis(out: &mut String, f: Frame, t: &[f64], integer: bool, desc: &str) {
    let (lo, hi) = (t[0], t[t.len() - 1]);
    for &v in t {
        let y = f.y(v, lo, hi);
        let _ =
            write!(out, "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{GRID}\"/>", f.x0, f.x1);
        text(out, f.x0 - 6.0, y, "end", "tick", " data-axis=\"y\"", &tick_text(v, t, integer));
    }
    let _ = write!(
        out,
        "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{INK}\"/>",
        f.y0,
        f.y1,
        x = f.x0
    );
    let (x, y) = (f.x0 - 44.0, (f.y0 + f.y1) / 2.0);
    text(out, x, y, "middle", "axis-title", &format!(" transform=\"rotate(-90 {x:.1} {y:.1})\""), desc);
}

/// A legend in one row above the plot.
fn legend(out: &mut String, x: f64, y: f64, series: &[Series]) {
    let mut x = x;
    for s in series {
        let _ =
            write!(out, "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>", y - 6.0, s.color);
        text(out, x + 16.0, y, "start", "legend", "", s.name);
        x += 30.0 + 7.0 * s.name.chars().count() as f64;
    }
}

/// Wraps drawn marks into a figure: caption, an SVG with a title and a text description, and
/// the numbers as a table.
fn figure(name: &str, title: &str, w: f64, h: f64, marks: &str, desc: &str, numbers: &str) -> String {
    format!(
        "<figure data-plot=\"{name}\"><figcaption>{t}</figcaption>\
<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" role=\"img\" aria-label=\"{t}\" {FONT}>\
<title>{t}</title><desc>{d}</desc><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>{marks}</svg>\
<details class=\"numbers\"><summary>The numbers</summary>{numbers}</details></figure>\n",
        name = esc(name),
        t = esc(title),
        d = esc(desc),
    )
}

/// A figure saying there is nothing to draw.
pub fn empty(name: &str, title: &str, what: &str) -> String {
    let mut m = String::new();
    text(&mut m, 200.0, 40.0, "middle", "no-data", "", &format!("no {what}"));
    figure(name, title, 400.0, 80.0, &m, &format!("No {what}."), "")
}

/// Horizontal bars, one band per row and one bar per series within it; the row's label sits
/// at the band's middle.
pub fn hbars(
    name: &str,
    title: &str,
    x_desc: &str,
    series: &[Series],
    rows: &[(String, Vec<f64>)],
    integer: bool,
) -> String {
    if rows.is_empty() {
        return empty(name, title, "data");
    }
    let band = if series.len() > 1 { 34.0 } else { 24.0 };
    let top = if series.len() > 1 { 30.0 } else { 10.0 };
    let f = Frame { x0: 230.0, x1: 760.0, y0: top, y1: top + band * rows.len() as f64 };
    let max = rows.iter().flat_map(|r| r.1.iter()).copied().filter(|v| v.is_finite()).fold(0.0, f64::max);
    let t = ticks(0.0, max, integer);
    let hi = t[t.len() - 1];
    let mut m = String::new();
    x_axis(&mut m, f, &t, integer, x_desc);
    if series.len() > 1 {
        legend(&mut m, f.x0, 12.0, series);
    }
    let inner = band * 0.72 / series.len() as f64;
    for (i, (lab, values)) in rows.iter().enumerate() {
        let y = f.y0 + band * i as f64;
        let mid = y + band / 2.0;
        text(&mut m, f.x0 - 8.0, mid, "end", "row-label", &format!(" data-row=\"{i}\""), &label(lab));
        for (j, (s, v)) in series.iter().zip(values).enumerate() {
            if !v.is_finite() {
                continue;
            }
            let by = mid - band * 0.36 + inner * j as f64;
            let _ = write!(
                m,
                "<rect class=\"bar\" data-row=\"{i}\" data-series=\"{}\" data-value=\"{v}\" x=\"{:.2}\" y=\"{by:.2}\" width=\"{:.2}\" height=\"{inner:.2}\" fill=\"{}\"><title>{}: {} {}</title></rect>",
                esc(s.name),
                f.x0,
                f.x(*v, 0.0, hi) - f.x0,
                s.color,
                esc(&label(lab)),
                esc(s.name),
                num(*v, integer)
            );
        }
    }
    let mut header = vec![""];
    header.extend(series.iter().map(|s| s.name));
    let data: Vec<Vec<String>> = rows
        .iter()
        .map(|(l, v)| std::iter::once(l.clone()).chain(v.iter().map(|x| num(*x, integer))).collect())
        .collect();
    figure(
        name,
        title,
        800.0,
        f.y1 + 42.0,
        &m,
        &format!("Horizontal bars of {x_desc}, one per row; the values are in the table below."),
        &table(&header, &data),
    )
}

/// Vertical bars in groups (one group per category, one bar per series), each group labelled
/// under its middle.
pub fn grouped_bars(
    name: &str,
    title: &str,
    y_desc: &str,
    groups: &[&str],
    series: &[Series],
    values: &[Vec<f64>],
    integer: bool,
) -> String {
    let f = Frame { x0: 60.0, x1: 540.0, y0: 30.0, y1: 270.0 };
    let max = values.iter().flatten().copied().filter(|v| v.is_finite()).fold(0.0, f64::max);
    let t = ticks(0.0, max, integer);
    let hi = t[t.len() - 1];
    let mut m = String::new();
    y_axis(&mut m, f, &t, integer, y_desc);
    legend(&mut m, f.x0, 12.0, series);
    let gw = (f.x1 - f.x0) / groups.len().max(1) as f64;
    let bw = gw * 0.75 / series.len().max(1) as f64;
    for (g, gname) in groups.iter().enumerate() {
        let gx = f.x0 + gw * g as f64;
        text(&mut m, gx + gw / 2.0, f.y1 + 12.0, "middle", "group-label", &format!(" data-group=\"{g}\""), gname);
        for (j, s) in series.iter().enumerate() {
            let v = values[g][j];
            let x = gx + gw * 0.125 + bw * j as f64;
            let y = f.y(v, 0.0, hi);
            let _ = write!(
                m,
                "<rect class=\"bar\" data-group=\"{g}\" data-series=\"{}\" data-value=\"{v}\" x=\"{x:.2}\" y=\"{y:.2}\" width=\"{:.2}\" height=\"{:.2}\" fill=\"{}\" stroke=\"{INK}\" stroke-width=\"0.5\"><title>{} {}: {}</title></rect>",
                esc(s.name),
                bw - 2.0,
                f.y1 - y,
                s.color,
                esc(gname),
                esc(s.name),
                num(v, integer)
            );
        }
    }
    let mut header = vec![""];
    header.extend(series.iter().map(|s| s.name));
    let data: Vec<Vec<String>> = groups
        .iter()
        .zip(values)
        .map(|(g, v)| std::iter::once(g.to_string()).chain(v.iter().map(|x| num(*x, integer))).collect())
        .collect();
    figure(
        name,
        title,
        560.0,
        300.0,
        &m,
        &format!("Grouped bars of {y_desc} for {}.", groups.join(", ")),
        &table(&header, &data),
    )
}

/// A histogram: counts over adjacent bins `(lower, upper, count)`.
pub fn histogram(name: &str, title: &str, x_desc: &str, y_desc: &str, bins: &[(f64, f64, f64)]) -> String {
    if bins.is_empty() {
        return empty(name, title, "data");
    }
    let f = Frame { x0: 60.0, x1: 620.0, y0: 12.0, y1: 250.0 };
    let (lo, hi) = (bins[0].0, bins[bins.len() - 1].1);
    let t = ticks(0.0, bins.iter().map(|b| b.2).fold(0.0, f64::max), true);
    let top = t[t.len() - 1];
    let mut m = String::new();
    y_axis(&mut m, f, &t, true, y_desc);
    x_axis(&mut m, f, &ticks(lo, hi, false), false, x_desc);
    for (k, (a, b, n)) in bins.iter().enumerate() {
        let (xa, xb, y) = (f.x(*a, lo, hi), f.x(*b, lo, hi), f.y(*n, 0.0, top));
        let _ = write!(
            m,
            "<rect class=\"bar\" data-bin=\"{k}\" data-value=\"{n}\" x=\"{:.2}\" y=\"{y:.2}\" width=\"{:.2}\" height=\"{:.2}\" fill=\"{BLUE}\"><title>{}–{}: {}</title></rect>",
            xa + 0.5,
            (xb - xa - 1.0).max(0.5),
            f.y1 - y,
            num(*a, false),
            num(*b, false),
            num(*n, true)
        );
    }
    let data: Vec<Vec<String>> =
        bins.iter().map(|(a, b, n)| vec![format!("{}–{}", num(*a, false), num(*b, false)), num(*n, true)]).collect();
    figure(name, title, 640.0, 290.0, &m, &format!("Histogram of {x_desc}."), &table(&[x_desc, y_desc], &data))
}

/// Lines over evenly spaced categories (nights), one point per value; missing values (NaN)
/// leave a gap, their marker saying why night `i` has none (`missing[i]`, else "not known yet").
#[allow(clippy::too_many_arguments)]
pub fn lines(
    name: &str,
    title: &str,
    y_desc: &str,
    xs: &[String],
    series: &[(Series, Vec<f64>)],
    y_range: Option<(f64, f64)>,
    integer: bool,
    missing: &[&str],
) -> String {
    if xs.is_empty() {
        return empty(name, title, "data");
    }
    let f = Frame { x0: 64.0, x1: 480.0, y0: 30.0, y1: 200.0 };
    let t = match y_range {
        Some((lo, hi)) => ticks(lo, hi, integer),
        None => {
            let max = series.iter().flat_map(|s| s.1.iter()).copied().filter(|v| v.is_finite()).fold(0.0, f64::max);
            ticks(0.0, max, integer)
        }
    };
    let (lo, hi) = (t[0], t[t.len() - 1]);
    let mut m = String::new();
    y_axis(&mut m, f, &t, integer, y_desc);
    let _ = write!(
        m,
        "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{INK}\"/>",
        f.x0,
        f.x1,
        y = f.y1
    );
    let n = xs.len();
    let px = |i: usize| {
        if n == 1 { (f.x0 + f.x1) / 2.0 } else { f.x0 + 12.0 + (f.x1 - f.x0 - 24.0) * i as f64 / (n - 1) as f64 }
    };
    let every = n.div_ceil(6).max(1);
    for (i, x) in xs.iter().enumerate() {
        if i % every == 0 || i + 1 == n {
            text(&mut m, px(i), f.y1 + 12.0, "middle", "tick", "", x);
        }
    }
    if series.len() > 1 {
        legend(&mut m, f.x0, 12.0, &series.iter().map(|s| s.0).collect::<Vec<_>>());
    }
    for (s, values) in series {
        let mut path = String::new();
        let mut pen_up = true;
        for (i, v) in values.iter().enumerate() {
            if !v.is_finite() {
                pen_up = true;
                continue;
            }
            let _ = write!(path, "{}{:.2},{:.2} ", if pen_up { "M" } else { "L" }, px(i), f.y(*v, lo, hi));
            pen_up = false;
        }
        let _ = write!(
            m,
            "<path class=\"line\" data-series=\"{}\" d=\"{path}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>",
            esc(s.name),
            s.color
        );
        for (i, v) in values.iter().enumerate() {
            if !v.is_finite() {
                // A night without a value (say, precision before any outcome is known) keeps
                // its place: a hollow marker on the axis, saying why.
                let _ = write!(
                    m,
                    "<circle class=\"point missing\" data-series=\"{}\" data-x=\"{}\" cx=\"{:.2}\" cy=\"{:.2}\" r=\"3.5\" fill=\"#fff\" stroke=\"{}\"><title>{} {}: {}</title></circle>",
                    esc(s.name),
                    esc(&xs[i]),
                    px(i),
                    f.y1,
                    s.color,
                    esc(&xs[i]),
                    esc(s.name),
                    esc(missing.get(i).copied().unwrap_or("not known yet"))
                );
            } else {
                let _ = write!(
                    m,
                    "<circle class=\"point\" data-series=\"{}\" data-x=\"{}\" data-value=\"{v}\" cx=\"{:.2}\" cy=\"{:.2}\" r=\"3.5\" fill=\"{}\"><title>{} {}: {}</title></circle>",
                    esc(s.name),
                    esc(&xs[i]),
                    px(i),
                    f.y(*v, lo, hi),
                    s.color,
                    esc(&xs[i]),
                    esc(s.name),
                    num(*v, integer)
                );
            }
        }
    }
    let mut header = vec![""];
    header.extend(series.iter().map(|s| s.0.name));
    let data: Vec<Vec<String>> = xs
        .iter()
        .enumerate()
        .map(|(i, x)| std::iter::once(x.clone()).chain(series.iter().map(|s| num(s.1[i], integer))).collect())
        .collect();
    figure(name, title, 500.0, 236.0, &m, &format!("{y_desc} per night, {n} nights."), &table(&header, &data))
}

/// Curves in the unit square (reliability, precision-recall), optionally with the diagonal.
pub fn unit_curves(
    name: &str,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(Series, Vec<(f64, f64)>)],
    diagonal: bool,
    markers: bool,
) -> String {
    let f = Frame { x0: 60.0, x1: 400.0, y0: 30.0, y1: 330.0 };
    let t = ticks(0.0, 1.0, false);
    let mut m = String::new();
    y_axis(&mut m, f, &t, false, y_desc);
    x_axis(&mut m, f, &t, false, x_desc);
    if diagonal {
        let _ = write!(
            m,
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{GREY}\" stroke-dasharray=\"4 3\"/>",
            f.x0, f.y1, f.x1, f.y0
        );
    }
    legend(&mut m, f.x0, 12.0, &series.iter().map(|s| s.0).collect::<Vec<_>>());
    let mut data = Vec::new();
    for (s, pts) in series {
        let d: String = pts
            .iter()
            .enumerate()
            .map(|(i, (x, y))| {
                format!("{}{:.2},{:.2} ", if i == 0 { "M" } else { "L" }, f.x(*x, 0.0, 1.0), f.y(*y, 0.0, 1.0))
            })
            .collect();
        let _ = write!(
            m,
            "<path class=\"line\" data-series=\"{}\" d=\"{d}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>",
            esc(s.name),
            s.color
        );
        if markers {
            for (x, y) in pts {
                let _ = write!(
                    m,
                    "<circle class=\"point\" data-series=\"{}\" cx=\"{:.2}\" cy=\"{:.2}\" r=\"3.5\" fill=\"{}\"><title>{}: {:.3}, {:.3}</title></circle>",
                    esc(s.name),
                    f.x(*x, 0.0, 1.0),
                    f.y(*y, 0.0, 1.0),
                    s.color,
                    esc(s.name),
                    x,
                    y
                );
                data.push(vec![s.name.to_string(), format!("{x:.3}"), format!("{y:.3}")]);
            }
        }
    }
    let numbers = if markers { table(&["series", x_desc, y_desc], &data) } else { String::new() };
    figure(name, title, 420.0, 370.0, &m, &format!("{y_desc} against {x_desc}."), &numbers)
}

/// A colour for a rate cell: a blue (kept) to orange (missed) scale, safe for colour-blind
/// readers and in grey print (lightness changes along it); `v` in 0..=1.
pub fn rate_color(v: f64) -> String {
    let v = v.clamp(0.0, 1.0);
    // Orange #E66101 → light #F7F7F7 → blue #2166AC.
    let (a, b, t) = if v < 0.5 {
        ((230.0, 97.0, 1.0), (247.0, 247.0, 247.0), v * 2.0)
    } else {
        ((247.0, 247.0, 247.0), (33.0, 102.0, 172.0), v * 2.0 - 1.0)
    };
    let c = |x: f64, y: f64| (x + (y - x) * t).round() as u8;
    format!("#{:02X}{:02X}{:02X}", c(a.0, b.0), c(a.1, b.1), c(a.2, b.2))
}

/// A heat map: one row per `rows`, one column per `cols`, cells `(row, col, value, shade in
/// 0..=1)`, the value printed in each cell. Row labels sit at their rows' middles.
pub fn heatmap(
    name: &str,
    title: &str,
    rows: &[String],
    cols: &[String],
    cells: &[(usize, usize, f64, f64)],
    value_desc: &str,
) -> String {
    if rows.is_empty() || cols.is_empty() {
        return empty(name, title, "data");
    }
    let (cw, rh) = (42.0, 26.0);
    let f = Frame { x0: 110.0, x1: 110.0 + cw * cols.len() as f64, y0: 40.0, y1: 40.0 + rh * rows.len() as f64 };
    let mut m = String::new();
    for (j, c) in cols.iter().enumerate() {
        let x = f.x0 + cw * (j as f64 + 0.5);
        text(&mut m, x, f.y0 - 10.0, "middle", "col-label", &format!(" data-col=\"{j}\""), &label(c));
    }
    for (i, r) in rows.iter().enumerate() {
        text(
            &mut m,
            f.x0 - 8.0,
            f.y0 + rh * (i as f64 + 0.5),
            "end",
            "row-label",
            &format!(" data-row=\"{i}\""),
            &label(r),
        );
    }
    for &(i, j, v, shade) in cells {
        let (x, y) = (f.x0 + cw * j as f64, f.y0 + rh * i as f64);
        let fill = if shade.is_finite() { rate_color(shade) } else { "#dddddd".into() };
        let dark = shade.is_finite() && !(0.2..=0.8).contains(&shade);
        let _ = write!(
            m,
            "<rect class=\"cell\" data-row=\"{i}\" data-col=\"{j}\" data-value=\"{v}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\" stroke=\"#fff\"><title>{} → {}: {}</title></rect>",
            cw,
            rh,
            esc(&label(&rows[i])),
            esc(&label(&cols[j])),
            num(v * 100.0, true)
        );
        if v.is_finite() {
            let _ = write!(
                m,
                "<text x=\"{:.1}\" y=\"{:.1}\" dy=\"0.35em\" text-anchor=\"middle\" font-size=\"11\" fill=\"{}\">{}</text>",
                x + cw / 2.0,
                y + rh / 2.0,
                if dark { "#fff" } else { INK },
                num(v * 100.0, true)
            );
        }
    }
    let mut header: Vec<&str> = vec![""];
    header.extend(cols.iter().map(|c| c.as_str()));
    let mut grid = vec![vec![String::from("–"); cols.len() + 1]; rows.len()];
    for (i, r) in rows.iter().enumerate() {
        grid[i][0] = r.clone();
    }
    for &(i, j, v, _) in cells {
        grid[i][j + 1] = num(v * 100.0, true);
    }
    figure(
        name,
        title,
        f.x1 + 20.0,
        f.y1 + 12.0,
        &m,
        &format!("{value_desc} (percent) per origin (rows) and destination (columns)."),
        &table(&header, &grid),
    )
}

/// One row per lane: the transit percentiles as stacked segments (0–p50, p50–p90, p90–p95) and
/// the promise as a black tick across the row.
pub fn percentiles(name: &str, title: &str, rows: &[(String, [f64; 3], f64)]) -> String {
    if rows.is_empty() {
        return empty(name, title, "lanes with parcels in flight");
    }
    let band = 26.0;
    let f = Frame { x0: 250.0, x1: 760.0, y0: 30.0, y1: 30.0 + band * rows.len() as f64 };
    let max = rows
        .iter()
        .flat_map(|r| r.1.iter().chain(std::iter::once(&r.2)))
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let t = ticks(0.0, max, false);
    let hi = t[t.len() - 1];
    let mut m = String::new();
    x_axis(&mut m, f, &t, false, "days from order to delivery");
    let segs = [
        Series { name: "p50", color: BLUE },
        Series { name: "p90", color: SKY },
        Series { name: "p95", color: "#BFDDF2" },
    ];
    legend(&mut m, f.x0, 12.0, &segs);
    let _ = write!(
        m,
        "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"6\" y2=\"18\" stroke=\"#000\" stroke-width=\"3\"/>",
        x = f.x0 + 190.0
    );
    text(&mut m, f.x0 + 196.0, 12.0, "start", "legend", "", "promise (median)");
    for (i, (lab, q, promise)) in rows.iter().enumerate() {
        let y = f.y0 + band * i as f64;
        text(&mut m, f.x0 - 8.0, y + band / 2.0, "end", "row-label", &format!(" data-row=\"{i}\""), &label(lab));
        let mut from = 0.0;
        for (k, s) in segs.iter().enumerate() {
            let v = q[k];
            if !v.is_finite() {
                continue;
            }
            let (xa, xb) = (f.x(from, 0.0, hi), f.x(v.max(from), 0.0, hi));
            let _ = write!(
                m,
                "<rect class=\"bar\" data-row=\"{i}\" data-series=\"{}\" data-value=\"{v}\" x=\"{xa:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{:.2}\" fill=\"{}\"><title>{}: {} {} days</title></rect>",
                s.name,
                y + band * 0.18,
                xb - xa,
                band * 0.64,
                s.color,
                esc(&label(lab)),
                s.name,
                num(v, false)
            );
            from = v.max(from);
        }
        if promise.is_finite() {
            let x = f.x(*promise, 0.0, hi);
            let _ = write!(
                m,
                "<line class=\"promise\" data-row=\"{i}\" data-value=\"{promise}\" x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"{:.2}\" y2=\"{:.2}\" stroke=\"#000\" stroke-width=\"3\"><title>promise {} days</title></line>",
                y + 2.0,
                y + band - 2.0,
                num(*promise, false)
            );
        }
    }
    let data: Vec<Vec<String>> = rows
        .iter()
        .map(|(l, q, p)| vec![l.clone(), num(q[0], false), num(q[1], false), num(q[2], false), num(*p, false)])
        .collect();
    figure(
        name,
        title,
        800.0,
        f.y1 + 42.0,
        &m,
        "Transit percentiles and the promise per lane, in days.",
        &table(&["lane", "p50 days", "p90 days", "p95 days", "promise days"], &data),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_ticks_are_whole_numbers() {
        for max in [0.0, 1.0, 2.0, 3.0, 7.0, 13.0, 120.0, 999.0] {
            let t = ticks(0.0, max, true);
            assert!(t.iter().all(|v| v.fract() == 0.0), "{max}: {t:?}");
            assert!(*t.last().unwrap() >= max, "{max}: {t:?}");
            assert!(t.len() >= 2 && t.len() <= 12, "{max}: {t:?}");
        }
        let t = ticks(0.0, 1.0, false);
        assert_eq!(
            t,
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
                .iter()
                .map(|v| (v / 0.2f64).round() * 0.2)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn labels_and_titles_are_escaped() {
        let f = hbars("x", "<t>", "n", &[Series { name: "a", color: BLUE }], &[("<script>".into(), vec![2.0])], true);
        assert!(!f.contains("<script>") && !f.contains("<t>"));
        assert!(f.contains("&lt;script&gt;"));
    }

    #[test]
    fn rate_colours_run_from_orange_to_blue() {
        assert_eq!(rate_color(0.0), "#E66101");
        assert_eq!(rate_color(0.5), "#F7F7F7");
        assert_eq!(rate_color(1.0), "#2166AC");
    }
}
