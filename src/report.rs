//! The offline HTML report: one file, inline SVG drawn with plotters, no scripts, no network.
//! Every string that came from input data is escaped (plotters escapes what it draws).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::*;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::evaluate::BacktestSummary;
use crate::model::Metrics;
use crate::night::NightResult;
use crate::schema::STAGES;
use crate::validate::Report;

type PlotResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// HTML-escapes text, and drops control characters that have no business in a report.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Text handed to plotters (which escapes it): control characters removed, length bounded.
fn label(s: &str) -> String {
    let t: String = s.chars().filter(|c| !c.is_control()).take(40).collect();
    if s.chars().count() > 40 { format!("{t}…") } else { t }
}

/// Renders one SVG figure; `name` becomes `data-plot`, which the browser test looks for.
pub fn figure(
    name: &str,
    title: &str,
    w: u32,
    h: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> PlotResult,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| Error::internal(format!("plot {name}: {e}")))?;
        draw(&root).map_err(|e| Error::internal(format!("plot {name}: {e}")))?;
        root.present().map_err(|e| Error::internal(format!("plot {name}: {e}")))?;
    }
    Ok(format!("<figure data-plot=\"{}\"><figcaption>{}</figcaption>{svg}</figure>\n", esc(name), esc(title)))
}

fn no_data(root: &DrawingArea<SVGBackend, Shift>, what: &str) -> PlotResult {
    let (w, h) = root.dim_in_pixel();
    root.draw(&Text::new(
        format!("no {what}"),
        (w as i32 / 2 - 40, h as i32 / 2),
        ("sans-serif", 16).into_font().color(&BLACK),
    ))?;
    Ok(())
}

fn ramp(v: f64) -> RGBColor {
    // Red (bad) through yellow to green (good).
    let v = v.clamp(0.0, 1.0);
    let (r, g) = if v < 0.5 { (230.0, 60.0 + 340.0 * v) } else { (230.0 - 380.0 * (v - 0.5), 230.0) };
    RGBColor(r.clamp(0.0, 255.0) as u8, g.clamp(0.0, 255.0) as u8, 70)
}

/// On-time rate per origin → destination, one panel per service.
pub fn lane_heatmap(lanes: &DataFrame) -> Result<String> {
    let o = lanes.column("origin")?.str()?;
    let d = lanes.column("destination")?.str()?;
    let s = lanes.column("service")?.str()?;
    let r = lanes.column("on_time_rate")?.f64()?;
    let mut services: BTreeMap<String, Vec<(String, String, f64)>> = BTreeMap::new();
    for k in 0..lanes.height() {
        services.entry(s.get(k).unwrap_or("").to_string()).or_default().push((
            o.get(k).unwrap_or("").to_string(),
            d.get(k).unwrap_or("").to_string(),
            r.get(k).unwrap_or(f64::NAN),
        ));
    }
    let mut out = String::new();
    if services.is_empty() {
        return figure("lane_heatmap", "Lane on-time rate", 600, 200, |root| no_data(root, "lanes"));
    }
    for (service, cells) in services.iter().take(8) {
        let mut origins: Vec<&str> = cells.iter().map(|c| c.0.as_str()).collect();
        origins.sort_unstable();
        origins.dedup();
        let mut dests: Vec<&str> = cells.iter().map(|c| c.1.as_str()).collect();
        dests.sort_unstable();
        dests.dedup();
        origins.truncate(30);
        dests.truncate(40);
        let (no, nd) = (origins.len() as i32, dests.len() as i32);
        let w = (160 + 42 * nd).clamp(400, 1400) as u32;
        let h = (90 + 28 * no).clamp(160, 900) as u32;
        out += &figure("lane_heatmap", &format!("On-time rate by lane: {service}"), w, h, |root| {
            let mut chart = ChartBuilder::on(root)
                .margin(8)
                .x_label_area_size(40)
                .y_label_area_size(90)
                .build_cartesian_2d(0..nd, 0..no)?;
            let ol: Vec<String> = origins.iter().map(|x| label(x)).collect();
            let dl: Vec<String> = dests.iter().map(|x| label(x)).collect();
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(nd as usize)
                .y_labels(no as usize)
                .x_label_formatter(&|v| dl.get(*v as usize).cloned().unwrap_or_default())
                .y_label_formatter(&|v| ol.get(*v as usize).cloned().unwrap_or_default())
                .x_desc("destination")
                .y_desc("origin")
                .draw()?;
            chart.draw_series(cells.iter().filter_map(|(oo, dd, rate)| {
                let x = dests.iter().position(|v| v == dd)? as i32;
                let y = origins.iter().position(|v| v == oo)? as i32;
                let color = if rate.is_finite() { ramp((*rate - 0.7) / 0.3) } else { RGBColor(220, 220, 220) };
                Some(Rectangle::new([(x, y), (x + 1, y + 1)], color.filled()))
            }))?;
            chart.draw_series(cells.iter().filter_map(|(oo, dd, rate)| {
                let x = dests.iter().position(|v| v == dd)? as i32;
                let y = origins.iter().position(|v| v == oo)? as i32;
                rate.is_finite()
                    .then(|| Text::new(format!("{:.0}", rate * 100.0), (x, y + 1), ("sans-serif", 11).into_font()))
            }))?;
            Ok(())
        })?;
    }
    Ok(out)
}

/// Recent versus baseline p50 dwell of each disrupted lane's worst stage.
pub fn disrupted_chart(rows: &[(String, String, f64, f64)]) -> Result<String> {
    let h = (80 + 30 * rows.len() as u32).clamp(180, 900);
    figure("disrupted_lanes", "Disrupted lanes: recent vs baseline p50 dwell (days)", 820, h, |root| {
        if rows.is_empty() {
            return no_data(root, "disrupted lanes");
        }
        let max = rows.iter().map(|r| r.2.max(r.3)).fold(1.0, f64::max) * 1.15;
        let n = rows.len() as i32;
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(260)
            .build_cartesian_2d(0.0..max, 0..n)?;
        let names: Vec<String> = rows.iter().map(|r| label(&format!("{} · {}", r.0, r.1))).collect();
        chart
            .configure_mesh()
            .y_labels(n as usize)
            .y_label_formatter(&|v| names.get(*v as usize).cloned().unwrap_or_default())
            .x_desc("days")
            .draw()?;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                let y = i as i32;
                Rectangle::new([(0.0, y), (r.3, y + 1)], RGBColor(150, 150, 150).filled())
            }))?
            .label("baseline p50")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], RGBColor(150, 150, 150).filled()));
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                let y = i as i32;
                Rectangle::new([(0.0, y), (r.2, y + 1)], RGBColor(214, 69, 65).mix(0.55).filled())
            }))?
            .label("recent p50")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], RGBColor(214, 69, 65).mix(0.55).filled()));
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
        Ok(())
    })
}

pub fn risk_histogram(risk: &[f64]) -> Result<String> {
    figure("risk_distribution", "Risk distribution of in-flight shipments", 640, 300, |root| {
        if risk.is_empty() {
            return no_data(root, "scored shipments");
        }
        let mut bins = [0u32; 20];
        for r in risk {
            bins[((r * 20.0) as usize).min(19)] += 1;
        }
        let top = *bins.iter().max().unwrap_or(&1) as f64 * 1.1;
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..1.0, 0.0..top.max(1.0))?;
        chart.configure_mesh().x_desc("risk").y_desc("shipments").draw()?;
        chart.draw_series(bins.iter().enumerate().map(|(b, n)| {
            Rectangle::new(
                [(b as f64 / 20.0, 0.0), ((b + 1) as f64 / 20.0, *n as f64)],
                RGBColor(66, 114, 196).filled(),
            )
        }))?;
        Ok(())
    })
}

pub fn reliability(metrics: &Metrics) -> Result<String> {
    figure("reliability", "Reliability on the validation window (cross-fitted calibration)", 420, 380, |root| {
        let pts: Vec<(f64, f64)> =
            metrics.calibration_bins.iter().filter_map(|b| Some((b.mean_predicted?, b.observed_rate?))).collect();
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
        chart.configure_mesh().x_desc("predicted").y_desc("observed late rate").draw()?;
        chart.draw_series(LineSeries::new(vec![(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.4)))?;
        if pts.is_empty() {
            return Ok(());
        }
        chart.draw_series(LineSeries::new(pts.clone(), RGBColor(66, 114, 196).stroke_width(2)))?;
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, RGBColor(66, 114, 196).filled())))?;
        Ok(())
    })
}

pub fn pr_curves(metrics: &Metrics) -> Result<String> {
    figure("pr_curve", "Precision-recall on the validation window", 520, 380, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
        chart.configure_mesh().x_desc("recall").y_desc("precision").draw()?;
        let colors = [
            ("model", RGBColor(66, 114, 196)),
            ("lane_rule", RGBColor(230, 126, 34)),
            ("base_rate", RGBColor(120, 120, 120)),
        ];
        for (name, color) in colors {
            let Some(curve) = metrics.pr_curves.get(name) else {
                continue;
            };
            let pts: Vec<(f64, f64)> = curve.iter().skip(1).map(|p| (p.recall, p.precision)).collect();
            if pts.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
        Ok(())
    })
}

/// Grouped bars: alerts by kind, split by severity.
pub fn alerts_chart(counts: &BTreeMap<(String, String), u64>) -> Result<String> {
    figure("alerts_by_kind", "Alerts by kind and severity", 560, 320, |root| {
        if counts.is_empty() {
            return no_data(root, "alerts");
        }
        let kinds = ["late", "stalled", "at_risk"];
        let sev =
            [("high", RGBColor(192, 57, 43)), ("medium", RGBColor(230, 126, 34)), ("low", RGBColor(241, 196, 15))];
        let top = counts.values().copied().max().unwrap_or(1) as f64 * 1.15;
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..3.0, 0.0..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(3)
            .x_label_formatter(&|v: &f64| kinds.get(v.floor() as usize).map(|k| k.to_string()).unwrap_or_default())
            .y_desc("alerts")
            .draw()?;
        for (j, (s, color)) in sev.iter().enumerate() {
            chart
                .draw_series(kinds.iter().enumerate().map(|(i, k)| {
                    let n = counts.get(&(k.to_string(), s.to_string())).copied().unwrap_or(0) as f64;
                    let x0 = i as f64 + 0.15 + 0.23 * j as f64;
                    Rectangle::new([(x0, 0.0), (x0 + 0.22, n)], color.filled())
                }))?
                .label(*s)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
        Ok(())
    })
}

pub fn top_sellers_chart(top: &[(String, u64)]) -> Result<String> {
    let h = (80 + 26 * top.len() as u32).clamp(160, 600);
    figure("top_sellers", "Sellers with the most alerts", 620, h, |root| {
        if top.is_empty() {
            return no_data(root, "alerts");
        }
        let n = top.len() as i32;
        let max = top.iter().map(|t| t.1).max().unwrap_or(1) as f64 * 1.15;
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(180)
            .build_cartesian_2d(0.0..max, 0..n)?;
        let names: Vec<String> = top.iter().map(|t| label(&t.0)).collect();
        chart
            .configure_mesh()
            .y_labels(n as usize)
            .y_label_formatter(&|v| names.get((n - 1 - *v) as usize).cloned().unwrap_or_default())
            .x_desc("alerts")
            .draw()?;
        chart.draw_series(top.iter().enumerate().map(|(i, t)| {
            let y = n - 1 - i as i32;
            Rectangle::new([(0.0, y), (t.1 as f64, y + 1)], RGBColor(66, 114, 196).filled())
        }))?;
        Ok(())
    })
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1500px}\
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}\
th{background:#f3f3f3}figure{display:inline-block;margin:8px 16px 16px 0;vertical-align:top}figcaption{font-weight:600;margin-bottom:4px}\
h2{margin-top:28px;border-bottom:1px solid #ddd}.num{text-align:right}";

pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>{}</title><style>{STYLE}</style></head><body>\n{body}</body></html>\n",
        esc(title)
    )
}

pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table><tr>");
    for h in header {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr>\n");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{}</td>", esc(c));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
    s
}

fn f3(v: f64) -> String {
    if v.is_finite() { format!("{v:.3}") } else { "–".into() }
}

fn f1(v: f64) -> String {
    if v.is_finite() { format!("{v:.0}") } else { "–".into() }
}

/// The report of one nightly run.
pub fn run_report(cfg: &Config, res: &NightResult, input: &Report, lanes: &DataFrame) -> Result<String> {
    let a = &res.alerts;
    let fs = &res.features;
    let mut body = String::new();
    let _ = write!(body, "<h1>lanewatch: night of {}</h1>\n", esc(&res.night.to_string()));

    let counts: BTreeMap<(String, String), u64> =
        a.counts().into_iter().map(|((k, s), n)| ((k.name().to_string(), s.name().to_string()), n)).collect();
    let seller_name = fs.prep.seller_names()?;
    let mut by_seller: BTreeMap<String, u64> = BTreeMap::new();
    for al in &a.alerts {
        *by_seller.entry(seller_name[fs.prep.seller[al.ship as usize] as usize].to_string()).or_insert(0) += 1;
    }
    let m = &res.model.metrics;
    let eval = m.model.as_ref();
    let summary_rows = vec![
        vec!["pipeline".into(), cfg.pipeline.name.clone()],
        vec!["input shipments / events".into(), format!("{} / {}", input.shipments, input.events)],
        vec!["in-flight shipments scored".into(), a.scores.height().to_string()],
        vec!["alerts".into(), a.alerts.len().to_string()],
        vec!["recovered since the previous run".into(), a.recovered.height().to_string()],
        vec!["previous run".into(), res.previous.map(|d| d.to_string()).unwrap_or_else(|| "none".into())],
        vec![
            "model".into(),
            format!(
                "{}{}",
                res.model.kind,
                m.fallback.as_ref().map(|f| format!(" (fallback: {f})")).unwrap_or_default()
            ),
        ],
        vec![
            "validation pr_auc / roc_auc / brier".into(),
            format!(
                "{} / {} / {}",
                f3(eval.map(|e| e.pr_auc).unwrap_or(f64::NAN)),
                f3(eval.map(|e| e.roc_auc).unwrap_or(f64::NAN)),
                f3(eval.map(|e| e.brier).unwrap_or(f64::NAN))
            ),
        ],
        vec!["input warnings".into(), input.warnings.len().to_string()],
        vec![
            "windows used".into(),
            format!(
                "training: shipments created in the last {} days; validation: resolved in the last {} days ({} shipments, {} late); lane statistics: {}–{} days (median {}), {} lanes reached back further",
                m.windows.training_days,
                m.windows.validation_days,
                m.windows.validation_shipments,
                m.windows.validation_late,
                f1(m.windows.lane_days_min),
                f1(m.windows.lane_days_max),
                f1(m.windows.lane_days_median),
                m.windows.lanes_extended
            ),
        ],
        vec![
            "simple-model floor".into(),
            match &m.floor {
                Some(f) if f.beaten => format!(
                    "beaten: validation PR-AUC {} against the simple logistic regression's {}",
                    f3(f.model_pr_auc),
                    f3(f.baseline_pr_auc)
                ),
                Some(f) => format!(
                    "NOT beaten: validation PR-AUC {} against the simple logistic regression's {}",
                    f3(f.model_pr_auc),
                    f3(f.baseline_pr_auc)
                ),
                None => "not measured (the model fell back to the lane rule)".into(),
            },
        ],
    ];
    body += "<h2>Run summary</h2>\n";
    body += &table(&["", ""], &summary_rows);

    body += "<h2>Alerts</h2>\n";
    body += &alerts_chart(&counts)?;
    let mut top: Vec<(String, u64)> = by_seller.into_iter().collect();
    top.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
    top.truncate(12);
    body += &top_sellers_chart(&top)?;

    body += "<h2>Risk</h2>\n";
    let risk: Vec<f64> = a.scores.column("risk")?.f64()?.iter().flatten().collect();
    body += &risk_histogram(&risk)?;
    body += &reliability(m)?;
    body += &pr_curves(m)?;
    let mut model_rows = Vec::new();
    if let Some(e) = eval {
        model_rows.push(vec![
            format!("{} (chosen)", m.chosen_model),
            f3(e.pr_auc),
            f3(e.roc_auc),
            f3(e.brier),
            f3(e.precision_at_budget),
            f3(e.recall_at_budget),
        ]);
    }
    for (name, e) in m.candidates.iter().chain(m.baselines.iter()) {
        model_rows.push(vec![
            name.clone(),
            f3(e.pr_auc),
            f3(e.roc_auc),
            f3(e.brier),
            f3(e.precision_at_budget),
            f3(e.recall_at_budget),
        ]);
    }
    body += &table(&["model", "pr_auc", "roc_auc", "brier", "precision@budget", "recall@budget"], &model_rows);

    body += "<h2>Lanes</h2>\n";
    let day = fs.night().cutoff_day();
    let mut disrupted = Vec::new();
    let mut disrupted_rows = Vec::new();
    for (l, worst) in fs.disrupted_lanes().iter().enumerate() {
        if let Some(s) = *worst {
            let pt = fs.series.at(l, s, day);
            let since = fs
                .series
                .disrupted_since(l, s, day)
                .map(|d| crate::calendar::as_of_of_cutoff_day(d).to_string())
                .unwrap_or_default();
            disrupted.push((fs.prep.lanes[l].label(), STAGES[s].label.to_string(), pt.recent_p50, pt.baseline_p50));
            disrupted_rows.push(vec![
                fs.prep.lanes[l].label(),
                STAGES[s].label.to_string(),
                since,
                format!("{:.1}", pt.recent_p50),
                format!("{:.1}", pt.baseline_p50),
                format!("{:.2}", pt.ratio),
                pt.recent_n.to_string(),
            ]);
        }
    }
    body += &disrupted_chart(&disrupted)?;
    body += &table(
        &["lane", "stage", "disrupted since", "recent p50 (d)", "baseline p50 (d)", "ratio", "recent n"],
        &disrupted_rows,
    );
    body += &lane_heatmap(lanes)?;
    Ok(page(&format!("lanewatch {}", res.night), &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_controls() {
        assert_eq!(
            esc("<script>alert('x')</script>&\u{0}"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;\u{FFFD}"
        );
    }

    #[test]
    fn figures_are_svg_with_escaped_labels() {
        let rows = vec![("<b>lane</b>".to_string(), "import".to_string(), 5.0, 2.0)];
        let f = disrupted_chart(&rows).unwrap();
        assert!(f.contains("<svg"));
        assert!(!f.contains("<b>lane"));
        assert!(f.contains("data-plot=\"disrupted_lanes\""));
    }
}

/// Alerts of each kind per replayed night.
pub fn alerts_per_night(nights: &DataFrame) -> Result<String> {
    let dates = nights.column("as_of")?.as_materialized_series().to_physical_repr().into_owned();
    let dates: Vec<i64> = dates.i32()?.iter().map(|v| v.unwrap_or(0) as i64).collect();
    let series: Vec<(&str, Vec<i64>, RGBColor)> = [
        ("alerts_late", RGBColor(192, 57, 43)),
        ("alerts_stalled", RGBColor(142, 68, 173)),
        ("alerts_at_risk", RGBColor(230, 126, 34)),
    ]
    .iter()
    .map(|(c, color)| -> Result<_> {
        Ok((*c, nights.column(c)?.i64()?.iter().map(|v| v.unwrap_or(0)).collect(), *color))
    })
    .collect::<Result<_>>()?;
    figure("alerts_per_night", "Alerts per night", 720, 320, |root| {
        if dates.is_empty() {
            return no_data(root, "nights");
        }
        let (lo, hi) = (dates[0], *dates.last().unwrap_or(&dates[0]) + 1);
        let top = series.iter().flat_map(|s| s.1.iter().copied()).max().unwrap_or(1).max(1) as f64 * 1.15;
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(lo..hi, 0.0..top)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .x_label_formatter(&|d| crate::calendar::date_of_day(*d).format("%m-%d").to_string())
            .y_desc("alerts")
            .draw()?;
        for (name, values, color) in &series {
            let color = *color;
            chart
                .draw_series(LineSeries::new(
                    dates.iter().zip(values).map(|(d, v)| (*d, *v as f64)),
                    color.stroke_width(2),
                ))?
                .label(name.trim_start_matches("alerts_"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
        Ok(())
    })
}

/// The backtest report: per-kind precision, recall and lead time, fatigue, disruption detection.
pub fn backtest_report(s: &BacktestSummary, nights: &DataFrame) -> Result<String> {
    let mut body = String::new();
    let _ =
        write!(body, "<h1>lanewatch backtest {} → {} (every {} days)</h1>\n", esc(&s.from), esc(&s.to), s.every_days);
    body += &table(
        &["", ""],
        &[
            vec!["nights replayed".into(), s.nights.to_string()],
            vec!["shipments in flight before their promise on some night (decided)".into(), s.population.to_string()],
            vec!["of which late".into(), s.population_late.to_string()],
        ],
    );
    body += "<h2>Alerts against later outcomes</h2>\n";
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "–".into());
    let mut rows = Vec::new();
    for (k, v) in s.kinds.iter().map(|(k, v)| (k.as_str(), v)).chain(std::iter::once(("any", &s.any_alert))) {
        rows.push(vec![
            k.to_string(),
            v.alerted.to_string(),
            f3(v.precision),
            f3(v.recall),
            opt(v.lead_days_median),
            opt(v.lead_days_p10),
        ]);
    }
    body +=
        &table(&["alert", "shipments alerted", "precision", "recall", "lead days (median)", "lead days (p10)"], &rows);
    body += &alerts_per_night(nights)?;
    let p = &s.pooled;
    body += "<h2>Pooled point-in-time evaluation</h2>\n";
    let _ = write!(
        body,
        "<p>Every night's risk for each in-flight shipment still before its promise, against its final outcome: {} rows ({} late) over {} nights, {} of which fell back to the lane rule.</p>\n",
        p.rows, p.late, p.nights, p.fallback_nights
    );
    let rows: Vec<Vec<String>> = p
        .scores
        .iter()
        .map(|(name, sc)| vec![name.clone(), f3(sc.roc_auc), f3(sc.pr_auc), format!("{:.4}", sc.brier)])
        .collect();
    body += &table(&["model", "roc_auc", "pr_auc", "brier"], &rows);
    if let Some(m) = p.scores.get("model") {
        let cal: Vec<Vec<String>> = m
            .calibration
            .iter()
            .filter(|b| b.n > 0)
            .map(|b| {
                vec![
                    format!("{:.1}–{:.1}", b.lower, b.upper),
                    b.n.to_string(),
                    b.mean_predicted.map(f3).unwrap_or_default(),
                    b.observed_rate.map(f3).unwrap_or_default(),
                ]
            })
            .collect();
        body += "<p>Calibration of the pooled risk:</p>\n";
        body += &table(&["risk", "rows", "mean predicted", "observed late rate"], &cal);
    }
    let f = &s.fatigue;
    body += "<h2>Alert fatigue</h2>\n";
    body += &table(
        &["alerts per seller per night", ""],
        &[
            vec!["mean, sellers with alerts".into(), format!("{:.2}", f.mean_per_alerted_seller_night)],
            vec!["p95, sellers with alerts".into(), format!("{:.1}", f.p95_per_alerted_seller_night)],
            vec!["max".into(), f.max_per_seller_night.to_string()],
            vec!["mean, all sellers with parcels in flight".into(), format!("{:.3}", f.mean_per_active_seller_night)],
        ],
    );
    body += "<h2>Lane-disruption detection</h2>\n";
    match &s.disruption_detection {
        None => body += "<p>No disruptions.parquet in the input: detection not scored.</p>\n",
        Some(d) => {
            body += &table(
                &["", ""],
                &[
                    vec![
                        "disrupted lane-stages detected".into(),
                        format!("{} of {} (recall {})", d.detected, d.disrupted_lanes, f3(d.recall)),
                    ],
                    vec![
                        "disruptions with a lane detected".into(),
                        format!("{} of {}", d.disruptions_detected, d.disruptions),
                    ],
                    vec!["median delay (days from start)".into(), opt(d.median_delay_days)],
                    vec![
                        "false-flag lane-nights".into(),
                        format!(
                            "{} of {} flagged ({} lane-nights in all)",
                            d.false_flag_lane_nights, d.flagged_lane_nights, d.lane_nights
                        ),
                    ],
                ],
            );
            let rows: Vec<Vec<String>> = d
                .lanes
                .iter()
                .map(|l| {
                    vec![
                        l.disruption_id.clone(),
                        l.lane.clone(),
                        l.stage.clone(),
                        format!("{} → {}", l.start, l.end),
                        if l.detected { "yes".into() } else { "no".into() },
                        l.first_flagged_night.clone().unwrap_or_default(),
                        opt(l.delay_days),
                    ]
                })
                .collect();
            body += &table(
                &["disruption", "lane", "stage", "period", "detected", "first flagged night", "delay (d)"],
                &rows,
            );
        }
    }
    Ok(page(&format!("lanewatch backtest {} → {}", s.from, s.to), &body))
}
