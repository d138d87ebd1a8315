//! The offline HTML report: one file, inline SVG drawn with plotters, no scripts, no network.
//! Every string that came from input data is escaped (plotters escapes what it draws).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use polars::prelude::*;

use crate::config::Config;
use crate::error::Result;
use crate::evaluate::BacktestSummary;
use crate::model::Metrics;
use crate::output::RunOutputs;
use crate::schema::STAGES;
use crate::validate::Report;

pub mod svg;

use svg::Series;

/// One night in the report's trend charts (`output::trends` reads them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrendNight {
    pub as_of: chrono::NaiveDate,
    pub late: u64,
    pub stalled: u64,
    pub at_risk: u64,
    /// Of the at-risk alerts, those whose outcome is known at the report's cutoff, and of
    /// them the late ones.
    pub at_risk_resolved: u64,
    pub at_risk_late: u64,
    /// 1 − late / resolved over every lane's window.
    pub on_time_rate: f64,
    pub disrupted_lanes: u64,
}

/// HTML-escapes text, and shows control and invisible formatting characters as U+FFFD: they
/// have no business in a report, and a bidirectional override in an id (`\u{202E}`) would
/// reverse how the rest of its line reads (other lanes, their numbers) without any markup.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if hidden(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Control characters, and the invisible ones that change how text around them is shown:
/// bidirectional marks, embeddings, overrides and isolates, zero-width characters, the BOM
/// (one rule with the terminal's, `error::printable`).
pub(crate) use crate::error::hidden;

/// At most this many service panels, and origins (rows) and destinations (columns) in each:
/// the busiest by shipments, so that a page stays readable on a network of thousands of lanes.
const HEATMAP_SERVICES: usize = 8;
const HEATMAP_ORIGINS: usize = 30;
const HEATMAP_DESTINATIONS: usize = 40;

/// The `keep` names with the most shipments (ties by name), in name order; `volume` holds each
/// name's shipments.
fn busiest(volume: &BTreeMap<&str, i64>, keep: usize) -> Vec<String> {
    let mut by: Vec<(&str, i64)> = volume.iter().map(|(k, v)| (*k, *v)).collect();
    by.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut names: Vec<String> = by.into_iter().take(keep).map(|(k, _)| k.to_string()).collect();
    names.sort_unstable();
    names
}

/// On-time rate per origin → destination, one panel per service: the busiest services, origins
/// and destinations by shipments, with a note saying what was left out.
pub fn lane_heatmap(lanes: &DataFrame) -> Result<String> {
    let o = lanes.column("origin")?.str()?;
    let d = lanes.column("destination")?.str()?;
    let s = lanes.column("service")?.str()?;
    let r = lanes.column("on_time_rate")?.f64()?;
    let n = lanes.column("shipments")?.i64()?;
    // Per service: its cells (origin, destination, rate, shipments).
    let mut services: BTreeMap<&str, Vec<(&str, &str, f64, i64)>> = BTreeMap::new();
    for k in 0..lanes.height() {
        services.entry(s.get(k).unwrap_or("")).or_default().push((
            o.get(k).unwrap_or(""),
            d.get(k).unwrap_or(""),
            r.get(k).unwrap_or(f64::NAN),
            n.get(k).unwrap_or(0),
        ));
    }
    if services.is_empty() {
        return Ok(svg::empty("lane_heatmap", "Lane on-time rate", "lanes"));
    }
    let volume: BTreeMap<&str, i64> = services.iter().map(|(k, c)| (*k, c.iter().map(|c| c.3).sum())).collect();
    let shown = busiest(&volume, HEATMAP_SERVICES);
    let mut out = String::new();
    if shown.len() < services.len() {
        let _ = writeln!(
            out,
            "<p class=\"note\" data-note=\"heatmap-services\">The {} busiest of {} services by shipments; every lane is in <code>lanes.parquet</code>.</p>",
            shown.len(),
            services.len()
        );
    }
    for service in &shown {
        let cells = &services[service.as_str()];
        let mut by_origin: BTreeMap<&str, i64> = BTreeMap::new();
        let mut by_dest: BTreeMap<&str, i64> = BTreeMap::new();
        for c in cells {
            *by_origin.entry(c.0).or_default() += c.3;
            *by_dest.entry(c.1).or_default() += c.3;
        }
        let origins = busiest(&by_origin, HEATMAP_ORIGINS);
        let dests = busiest(&by_dest, HEATMAP_DESTINATIONS);
        let drawn: Vec<(usize, usize, f64, f64)> = cells
            .iter()
            .filter_map(|(oo, dd, rate, _)| {
                let i = origins.binary_search_by(|v| v.as_str().cmp(oo)).ok()?;
                let j = dests.binary_search_by(|v| v.as_str().cmp(dd)).ok()?;
                // The shade spans 70–100 % on time, where lanes differ in practice.
                Some((i, j, *rate, (*rate - 0.7) / 0.3))
            })
            .collect();
        if origins.len() < by_origin.len() || dests.len() < by_dest.len() {
            let _ = writeln!(
                out,
                "<p class=\"note\" data-note=\"heatmap-cut\">{}: the {} busiest of {} origins and the {} busiest of {} destinations by shipments ({} of {} lanes drawn).</p>",
                esc(service),
                origins.len(),
                by_origin.len(),
                dests.len(),
                by_dest.len(),
                drawn.len(),
                cells.len()
            );
        }
        out += &svg::heatmap(
            "lane_heatmap",
            &format!("On-time rate (%) by lane: {service} (rows: origin, columns: destination)"),
            &origins,
            &dests,
            &drawn,
            "On-time rate",
        );
    }
    Ok(out)
}

/// Recent versus baseline p50 dwell of each disrupted lane's worst stage.
pub fn disrupted_chart(rows: &[(String, String, f64, f64)]) -> Result<String> {
    let title = "Disrupted lanes: recent vs baseline p50 dwell (days)";
    if rows.is_empty() {
        return Ok(svg::empty("disrupted_lanes", title, "disrupted lanes"));
    }
    let bars: Vec<(String, Vec<f64>)> = rows.iter().map(|r| (format!("{} · {}", r.0, r.1), vec![r.3, r.2])).collect();
    Ok(svg::hbars(
        "disrupted_lanes",
        title,
        "days",
        &[Series { name: "baseline p50", color: svg::GREY }, Series { name: "recent p50", color: svg::VERMILLION }],
        &bars,
        false,
    ))
}

pub fn risk_histogram(risk: &[f64]) -> Result<String> {
    let title = "Risk distribution of in-flight shipments";
    if risk.is_empty() {
        return Ok(svg::empty("risk_distribution", title, "scored shipments"));
    }
    let mut bins = [0u32; 20];
    for r in risk {
        bins[((r * 20.0) as usize).min(19)] += 1;
    }
    let bins: Vec<(f64, f64, f64)> =
        bins.iter().enumerate().map(|(b, n)| (b as f64 / 20.0, (b + 1) as f64 / 20.0, *n as f64)).collect();
    Ok(svg::histogram("risk_distribution", title, "risk", "shipments", &bins))
}

pub fn reliability(metrics: &Metrics) -> Result<String> {
    let pts: Vec<(f64, f64)> =
        metrics.calibration_bins.iter().filter_map(|b| Some((b.mean_predicted?, b.observed_rate?))).collect();
    Ok(svg::unit_curves(
        "reliability",
        "Reliability on the validation window (cross-fitted calibration)",
        "predicted",
        "observed late rate",
        &[(Series { name: "model", color: svg::BLUE }, pts)],
        true,
        true,
    ))
}

pub fn pr_curves(metrics: &Metrics) -> Result<String> {
    let mut series = Vec::new();
    for (name, color) in [("model", svg::BLUE), ("lane_rule", svg::ORANGE), ("base_rate", svg::GREY)] {
        let Some(curve) = metrics.pr_curves.get(name) else {
            continue;
        };
        let pts: Vec<(f64, f64)> = curve.iter().skip(1).map(|p| (p.recall, p.precision)).collect();
        if !pts.is_empty() {
            series.push((Series { name, color }, pts));
        }
    }
    Ok(svg::unit_curves(
        "pr_curve",
        "Precision-recall on the validation window",
        "recall",
        "precision",
        &series,
        false,
        false,
    ))
}

/// Grouped bars: alerts by kind, split by severity. Every kind has its group and label, even
/// with no alerts of it.
pub fn alerts_chart(counts: &BTreeMap<(String, String), u64>) -> Result<String> {
    let title = "Alerts by kind and severity";
    if counts.is_empty() {
        return Ok(svg::empty("alerts_by_kind", title, "alerts"));
    }
    let kinds = ["late", "stalled", "at_risk"];
    let sev = [
        Series { name: "high", color: svg::VERMILLION },
        Series { name: "medium", color: svg::ORANGE },
        Series { name: "low", color: svg::YELLOW },
    ];
    let values: Vec<Vec<f64>> = kinds
        .iter()
        .map(|k| {
            sev.iter().map(|s| counts.get(&(k.to_string(), s.name.to_string())).copied().unwrap_or(0) as f64).collect()
        })
        .collect();
    Ok(svg::grouped_bars("alerts_by_kind", title, "alerts", &kinds, &sev, &values, true))
}

pub fn top_sellers_chart(top: &[(String, u64)]) -> Result<String> {
    let title = "Sellers with the most alerts";
    if top.is_empty() {
        return Ok(svg::empty("top_sellers", title, "alerts"));
    }
    let rows: Vec<(String, Vec<f64>)> = top.iter().map(|(s, n)| (s.clone(), vec![*n as f64])).collect();
    Ok(svg::hbars("top_sellers", title, "alerts", &[Series { name: "alerts", color: svg::BLUE }], &rows, true))
}

/// The x-axis labels of nights: `MM-DD` while they fall in one year, the whole date when they
/// span more (the trends keep the last nights by count, a backtest may replay years: nights a
/// year apart shared a label).
fn night_labels(nights: &[chrono::NaiveDate]) -> Vec<String> {
    use chrono::Datelike;
    let one_year = nights.windows(2).all(|w| w[0].year() == w[1].year());
    let format = if one_year { "%m-%d" } else { "%Y-%m-%d" };
    nights.iter().map(|d| d.format(format).to_string()).collect()
}

/// The trend charts over `nights` (oldest first), or a note when there is only tonight.
pub fn trend_charts(nights: &[TrendNight]) -> String {
    if nights.len() < 2 {
        return "<p class=\"note\" data-note=\"no-earlier-runs\">No earlier runs in this output folder: the trends across nights start with the next night.</p>\n".into();
    }
    let xs = night_labels(&nights.iter().map(|t| t.as_of).collect::<Vec<_>>());
    let col = |f: &dyn Fn(&TrendNight) -> f64| nights.iter().map(f).collect::<Vec<f64>>();
    let mut out = svg::lines(
        "trend_alerts",
        "Alerts by kind per night",
        "alerts",
        &xs,
        &[
            (Series { name: "late", color: svg::VERMILLION }, col(&|t| t.late as f64)),
            (Series { name: "stalled", color: svg::PURPLE }, col(&|t| t.stalled as f64)),
            (Series { name: "at_risk", color: svg::ORANGE }, col(&|t| t.at_risk as f64)),
        ],
        None,
        true,
        &[],
    );
    // A night without at-risk alerts has no precision, ever: said so, not "not known yet".
    let why: Vec<&str> =
        nights.iter().map(|t| if t.at_risk == 0 { "no at-risk alerts" } else { "not known yet" }).collect();
    out += &svg::lines(
        "trend_precision",
        "At-risk precision, once outcomes are known (late / resolved)",
        "precision",
        &xs,
        &[(
            Series { name: "at_risk precision", color: svg::BLUE },
            col(&|t| if t.at_risk_resolved > 0 { t.at_risk_late as f64 / t.at_risk_resolved as f64 } else { f64::NAN }),
        )],
        Some((0.0, 1.0)),
        false,
        &why,
    );
    out += &svg::lines(
        "trend_on_time",
        "Network on-time rate (resolved shipments in the lane windows)",
        "on-time rate",
        &xs,
        &[(Series { name: "on-time rate", color: svg::GREEN }, col(&|t| t.on_time_rate))],
        Some((0.0, 1.0)),
        false,
        &[],
    );
    out += &svg::lines(
        "trend_disrupted",
        "Disrupted lanes per night",
        "lanes",
        &xs,
        &[(Series { name: "disrupted lanes", color: svg::VERMILLION }, col(&|t| t.disrupted_lanes as f64))],
        None,
        true,
        &[],
    );
    out
}

/// A service-advice row's own resolved shipments: its support when its statistics are the
/// lane's own, else none. A pooled row's support is its whole pool's, which spans other origins:
/// summed per pair it counted the same shipments under every pair that borrowed the pool and
/// ranked pairs without data of their own as the busiest.
fn own_support(basis: &str, support: i64) -> i64 {
    if basis == "lane" { support } else { 0 }
}

/// Advice before shipping: the advised service on the busiest origin × destination pairs, and
/// the lanes whose promise is kept less often than the target, with the promise that would be.
/// `night`: the run's; advice of an earlier night (a training schedule's) says so.
pub fn advice_section(advice: &crate::advice::Advice, cfg: &Config, night: chrono::NaiveDate) -> Result<String> {
    let mut body = String::from("<h2>Advice before shipping</h2>\n");
    let sa = advice.service();
    let d = advice.as_of();
    if d != night {
        let _ = writeln!(
            body,
            "<p>As of {d}, the model's training night: the nights of a training schedule publish its advice with its model (<code>advice_as_of</code>).</p>"
        );
    }
    let txt = |df: &DataFrame, c: &str| -> Result<Vec<String>> {
        Ok(df.column(c)?.str()?.iter().map(|v| v.unwrap_or("").to_string()).collect())
    };
    let num = |df: &DataFrame, c: &str| -> Result<Vec<f64>> {
        Ok(df.column(c)?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    };
    let (o, d, s, band) = (txt(sa, "origin")?, txt(sa, "destination")?, txt(sa, "service")?, txt(sa, "weight_band")?);
    let (pm, promise, basis) = (num(sa, "p_meet_promise")?, num(sa, "promise_days")?, txt(sa, "basis")?);
    let advised = txt(sa, "advised_service")?;
    let support: Vec<i64> = sa.column("support")?.i64()?.iter().map(|v| v.unwrap_or(0)).collect();
    // Per origin × destination (all weights): the services with their chance, and the advice.
    let mut pairs: BTreeMap<(String, String), (String, i64, Vec<String>)> = BTreeMap::new();
    for k in (0..sa.height()).filter(|&k| band[k] == "all") {
        let e = pairs.entry((o[k].clone(), d[k].clone())).or_insert_with(|| (advised[k].clone(), 0, Vec::new()));
        e.1 += own_support(&basis[k], support[k]);
        e.2.push(format!(
            "{} {} in {} d{}",
            s[k],
            if pm[k].is_finite() { format!("{:.0} %", pm[k] * 100.0) } else { "–".into() },
            whole(promise[k]),
            if basis[k] == "lane" { String::new() } else { format!(" (from {})", basis[k]) }
        ));
    }
    let mut busiest: Vec<(&(String, String), &(String, i64, Vec<String>))> = pairs.iter().collect();
    busiest.sort_by(|a, b| b.1.1.cmp(&a.1.1).then(a.0.cmp(b.0)));
    let rows: Vec<Vec<String>> = busiest
        .iter()
        .take(cfg.report.percentile_lanes.max(1))
        .map(|((o, d), (a, n, services))| {
            let n = if *n > 0 { n.to_string() } else { "too few of its own".into() };
            vec![format!("{o} → {d}"), n, a.clone(), services.join("; ")]
        })
        .collect();
    let _ = write!(
        body,
        "<p>The cheapest service (ranked {}) whose chance of meeting its promise reaches {:.0} %, for a parcel shipped tomorrow; busiest pairs first, by their own resolved shipments (over the services with enough of their own; a service marked \"from\" borrows a wider pool's numbers). Every pair, service and weight band is in <code>service_advice.parquet</code>.</p>\n",
        esc(&cfg.advice.services.join(" < ")),
        cfg.advice.confidence * 100.0
    );
    body += &table(
        &["origin → destination", "resolved shipments", "advised service", "chance of meeting the promise"],
        &rows,
    );

    let pa = advice.promise();
    let (po, pd, ps) = (txt(pa, "origin")?, txt(pa, "destination")?, txt(pa, "service")?);
    let (cur, kept, adv, lo, hi) = (
        num(pa, "promise_business_days")?,
        num(pa, "kept_rate")?,
        num(pa, "advised_promise_business_days")?,
        num(pa, "advised_promise_low")?,
        num(pa, "advised_promise_high")?,
    );
    let below: Vec<bool> = pa.column("below_target")?.bool()?.iter().map(|v| v.unwrap_or(false)).collect();
    let psupport: Vec<i64> = pa.column("support")?.i64()?.iter().map(|v| v.unwrap_or(0)).collect();
    let mut flagged: Vec<usize> = (0..pa.height()).filter(|&k| below[k]).collect();
    flagged.sort_by(|&a, &b| kept[a].total_cmp(&kept[b]).then(a.cmp(&b)));
    let _ = write!(
        body,
        "<p>{} of {} lanes kept today's promise less than {:.0} % of the time over the lane window. The shortest promise that would have kept it (business days, 95 % interval; – where lost or unfinished parcels make no promise enough):</p>\n",
        flagged.len(),
        pa.height(),
        cfg.advice.target_on_time_rate * 100.0
    );
    let chart: Vec<(String, Vec<f64>)> = flagged
        .iter()
        .take(15)
        .map(|&k| (format!("{} → {} · {}", po[k], pd[k], ps[k]), vec![cur[k], adv[k]]))
        .collect();
    if !chart.is_empty() {
        body += &svg::hbars(
            "promise_advice",
            "Promise today against the promise the lane would have kept (business days)",
            "business days",
            &[Series { name: "today", color: svg::GREY }, Series { name: "advised", color: svg::BLUE }],
            &chart,
            false,
        );
    }
    let rows: Vec<Vec<String>> = flagged
        .iter()
        .take(30)
        .map(|&k| {
            vec![
                format!("{} → {} · {}", po[k], pd[k], ps[k]),
                whole(cur[k]),
                format!("{:.0} %", kept[k] * 100.0),
                whole(adv[k]),
                // An upper bound the curve's lower band never reaches has no end.
                if hi[k].is_finite() {
                    format!("{}–{}", whole(lo[k]), whole(hi[k]))
                } else {
                    format!("≥ {}", whole(lo[k]))
                },
                psupport[k].to_string(),
            ]
        })
        .collect();
    body += &table(&["lane", "promise today", "kept", "advised promise", "interval", "support"], &rows);
    Ok(body)
}

/// One seller's page: their alerts with reasons and actions, and their lanes against the
/// network with the advice for each. Everything from the data is escaped.
pub fn seller_page(seller_id: &str, as_of: chrono::NaiveDate, alerts: &DataFrame, lanes: &DataFrame) -> Result<String> {
    let txt = |df: &DataFrame, c: &str| -> Result<Vec<String>> {
        Ok(df.column(c)?.str()?.iter().map(|v| v.unwrap_or("").to_string()).collect())
    };
    let num = |df: &DataFrame, c: &str| -> Result<Vec<f64>> {
        Ok(df.column(c)?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    };
    let when = |df: &DataFrame, c: &str| -> Result<Vec<String>> {
        let s = df.column(c)?.as_materialized_series().to_physical_repr().into_owned();
        Ok(s.i64()?
            .iter()
            .map(|v| {
                v.and_then(chrono::DateTime::from_timestamp_micros)
                    .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default()
            })
            .collect())
    };
    let mut body = String::new();
    let _ = write!(body, "<h1>Seller {}: night of {}</h1>\n", esc(seller_id), as_of);

    body += "<h2>Your alerts</h2>\n";
    if alerts.height() == 0 {
        body += "<p class=\"note\">No alerts tonight.</p>\n";
    } else {
        let (id, kind, sev, status) =
            (txt(alerts, "shipment_id")?, txt(alerts, "alert")?, txt(alerts, "severity")?, txt(alerts, "status")?);
        let (o, d, svc) = (txt(alerts, "origin")?, txt(alerts, "destination")?, txt(alerts, "service")?);
        let (reasons, action, risk) = (txt(alerts, "reasons")?, txt(alerts, "action")?, num(alerts, "risk")?);
        let (promised, expected) = (when(alerts, "promised_at")?, when(alerts, "expected_delivery_at")?);
        let rows: Vec<Vec<String>> = (0..alerts.height())
            .map(|k| {
                vec![
                    id[k].clone(),
                    format!("{} ({})", kind[k], sev[k]),
                    f3(risk[k]),
                    format!("{} → {} · {}", o[k], d[k], svc[k]),
                    status[k].clone(),
                    promised[k].clone(),
                    expected[k].clone(),
                    reasons[k].clone(),
                    action[k].clone(),
                ]
            })
            .collect();
        body += &table(
            &["shipment", "alert", "risk", "lane", "status", "promised", "expected", "why", "what to do"],
            &rows,
        );
    }

    body += "<h2>Your lanes against the network</h2>\n";
    if lanes.height() == 0 {
        body += "<p class=\"note\">No resolved shipments in the lane windows.</p>\n";
        return Ok(page(&format!("lanewatch seller {seller_id} {as_of}"), &body));
    }
    let (o, d, svc) = (txt(lanes, "origin")?, txt(lanes, "destination")?, txt(lanes, "service")?);
    let n: Vec<i64> = lanes.column("shipments")?.i64()?.iter().map(|v| v.unwrap_or(0)).collect();
    let (own, net) = (num(lanes, "on_time_rate")?, num(lanes, "network_on_time_rate")?);
    let (hand, net_hand) = (num(lanes, "handling_p50_days")?, num(lanes, "network_handling_p50_days")?);
    let (promise, pm) = (num(lanes, "promise_days")?, num(lanes, "p_meet_promise")?);
    let misses: Vec<bool> =
        lanes.column("handling_misses_promise")?.bool()?.iter().map(|v| v.unwrap_or(false)).collect();
    let advised = txt(lanes, "advised_service")?;
    let mut order: Vec<usize> = (0..lanes.height()).collect();
    order.sort_by(|&a, &b| n[b].cmp(&n[a]).then(a.cmp(&b)));
    let chart: Vec<(String, Vec<f64>)> = order
        .iter()
        .take(15)
        .map(|&k| (format!("{} → {} · {}", o[k], d[k], svc[k]), vec![own[k] * 100.0, net[k] * 100.0]))
        .collect();
    body += &svg::hbars(
        "seller_on_time",
        "On-time rate (%) on your busiest lanes: you against the network",
        "percent on time",
        &[Series { name: "you", color: svg::BLUE }, Series { name: "network", color: svg::GREY }],
        &chart,
        false,
    );
    let told: Vec<usize> = order.iter().copied().filter(|&k| misses[k]).collect();
    if !told.is_empty() {
        body += "<p><strong>Your handling time alone makes these lanes miss the promise:</strong> ";
        body += &told
            .iter()
            .map(|&k| {
                esc(&format!(
                    "{} → {} · {} (you hand over in {:.1} days, the network in {:.1}; promise {:.0} days)",
                    o[k], d[k], svc[k], hand[k], net_hand[k], promise[k]
                ))
            })
            .collect::<Vec<_>>()
            .join("; ");
        body += ". Hand parcels to the carrier sooner on them.</p>\n";
    }
    let rows: Vec<Vec<String>> = order
        .iter()
        .map(|&k| {
            vec![
                format!("{} → {} · {}", o[k], d[k], svc[k]),
                n[k].to_string(),
                format!("{:.0} %", own[k] * 100.0),
                format!("{:.0} %", net[k] * 100.0),
                fixed(hand[k], 1),
                fixed(net_hand[k], 1),
                whole(promise[k]),
                if pm[k].is_finite() { format!("{:.0} %", pm[k] * 100.0) } else { "–".into() },
                advised[k].clone(),
                if misses[k] { "yes".into() } else { String::new() },
            ]
        })
        .collect();
    body += &table(
        &[
            "lane",
            "your resolved shipments",
            "your on-time",
            "network on-time",
            "your handling (d, p50)",
            "network handling (d, p50)",
            "promise (d)",
            "chance of meeting it",
            "advised service",
            "handling misses the promise",
        ],
        &rows,
    );
    Ok(page(&format!("lanewatch seller {seller_id} {as_of}"), &body))
}

/// Per lane, the median promise in days (promised − created) of its parcels in flight: the
/// promise the platform gives on that lane today.
pub fn promise_days(fs: &crate::features::FeatureSet) -> BTreeMap<(String, String, String), f64> {
    let p = &fs.prep;
    let mut per_lane: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
    for &i in &fs.score.ship {
        let i = i as usize;
        per_lane.entry(p.lane[i]).or_default().push(crate::schema::days(p.promised[i] - p.created[i]));
    }
    per_lane
        .into_iter()
        .map(|(l, mut v)| {
            let k = &p.lanes[l as usize];
            v.sort_by(f64::total_cmp);
            let n = v.len();
            let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
            ((k.origin.clone(), k.destination.clone(), k.service.clone()), median)
        })
        .collect()
}

/// The lanes with most parcels in flight: transit p50/p90/p95 against the promise, as a chart
/// and as sentences a seller can read.
pub fn lane_percentiles(
    lanes: &DataFrame,
    promise_days: &BTreeMap<(String, String, String), f64>,
    top: usize,
) -> Result<String> {
    let o = lanes.column("origin")?.str()?;
    let d = lanes.column("destination")?.str()?;
    let s = lanes.column("service")?.str()?;
    let fl = lanes.column("in_flight")?.i64()?;
    let q =
        |c: &str| -> Result<Vec<f64>> { Ok(lanes.column(c)?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect()) };
    let (p50, p90, p95) = (q("transit_p50_days")?, q("transit_p90_days")?, q("transit_p95_days")?);
    let mut order: Vec<usize> = (0..lanes.height()).filter(|&k| fl.get(k).unwrap_or(0) > 0).collect();
    order.sort_by(|&a, &b| fl.get(b).cmp(&fl.get(a)).then(a.cmp(&b)));
    order.truncate(top);
    let mut rows = Vec::new();
    let mut said = Vec::new();
    for k in order {
        let key = (
            o.get(k).unwrap_or("").to_string(),
            d.get(k).unwrap_or("").to_string(),
            s.get(k).unwrap_or("").to_string(),
        );
        let promise = promise_days.get(&key).copied().unwrap_or(f64::NAN);
        rows.push((format!("{} → {} · {}", key.0, key.1, key.2), [p50[k], p90[k], p95[k]], promise));
        let keeps = if !(p90[k].is_finite() && promise.is_finite()) {
            String::new()
        } else if p90[k] <= promise {
            "within the promise".into()
        } else {
            "beyond the promise".into()
        };
        said.push(vec![
            format!("{} → {} · {}", key.0, key.1, key.2),
            fl.get(k).unwrap_or(0).to_string(),
            format!(
                "to {} by {}, 90 % arrive within {} days; you promise {}",
                key.1,
                key.2,
                svg::num(p90[k], false),
                if promise.is_finite() { format!("{promise:.0}") } else { "–".into() }
            ),
            keeps,
        ]);
    }
    let mut out =
        svg::percentiles("lane_percentiles", "Transit percentiles of the busiest lanes, against the promise", &rows);
    out += &table(&["lane", "in flight", "in words", "p90"], &said);
    Ok(out)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1500px}\
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}\
th{background:#f3f3f3}figure{display:inline-block;margin:8px 16px 16px 0;vertical-align:top}figcaption{font-weight:600;margin-bottom:4px}\
h2{margin-top:28px;border-bottom:1px solid #ddd}.num{text-align:right}.note{color:#555;font-style:italic}\
details.numbers{font-size:12px;max-width:800px}details.numbers summary{cursor:pointer;color:#0072B2}\
@media print{body{margin:0;max-width:none}figure,table{break-inside:avoid}h2{break-after:avoid}\
details.numbers::details-content{content-visibility:visible;display:contents}details.numbers summary{display:none}}";

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

/// A number to `digits` decimals, or "–" where unknown (never "NaN": a seller with no carrier
/// scan has no handling time).
fn fixed(v: f64, digits: usize) -> String {
    if v.is_finite() { format!("{v:.digits$}") } else { "–".into() }
}

fn f3(v: f64) -> String {
    fixed(v, 3)
}

/// A whole number (days of promises and windows), or "–" where unknown.
fn whole(v: f64) -> String {
    fixed(v, 0)
}

/// The report of one nightly run.
pub fn run_report(cfg: &Config, run: &RunOutputs, input: &Report, trend: &[TrendNight]) -> Result<String> {
    let lanes = &run.lanes;
    let mut body = String::new();
    let _ = write!(body, "<h1>lanewatch: night of {}</h1>\n", esc(&run.night.to_string()));

    let text = |c: &str| -> Result<StringChunked> { Ok(run.alerts.column(c)?.str()?.clone()) };
    let (kind, severity, seller) = (text("alert")?, text("severity")?, text("seller_id")?);
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut by_seller: BTreeMap<String, u64> = BTreeMap::new();
    for k in 0..run.alerts.height() {
        let at = |c: &StringChunked| c.get(k).unwrap_or("").to_string();
        *counts.entry((at(&kind), at(&severity))).or_insert(0) += 1;
        *by_seller.entry(at(&seller)).or_insert(0) += 1;
    }
    let m = &run.model.metrics;
    let eval = m.model.as_ref();
    let summary_rows = vec![
        vec!["pipeline".into(), cfg.pipeline.name.clone()],
        // The input as read, rows dated after the cutoff included (they reach no other number
        // here): what the feed delivered, which appended rows change.
        vec!["input shipments / events (every row read)".into(), format!("{} / {}", input.shipments, input.events)],
        vec!["in-flight shipments scored".into(), run.scores.height().to_string()],
        vec!["alerts".into(), run.alerts.height().to_string()],
        vec!["recovered since the previous run".into(), run.recovered.height().to_string()],
        vec!["previous run".into(), run.previous.map(|d| d.to_string()).unwrap_or_else(|| "none".into())],
        vec![
            "model".into(),
            format!(
                "{}{}{}",
                run.model.kind,
                // On a training schedule, the night the model was trained on.
                run.trained_on
                    .as_ref()
                    .map(|d| format!(", trained on {d} (model.retrain_every_days)"))
                    .unwrap_or_default(),
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
        vec!["input warnings (every row read)".into(), input.warnings.len().to_string()],
        vec![
            "windows used".into(),
            format!(
                "training: shipments created in the last {} days; validation: resolved in the last {} days ({} shipments, {} late); lane statistics: {}–{} days (median {}), {} lanes reached back further",
                m.windows.training_days,
                m.windows.validation_days,
                m.windows.validation_shipments,
                m.windows.validation_late,
                whole(m.windows.lane_days_min),
                whole(m.windows.lane_days_max),
                whole(m.windows.lane_days_median),
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

    body += "<h2>Trends across nights</h2>\n";
    body += &trend_charts(trend);

    body += "<h2>Risk</h2>\n";
    let risk: Vec<f64> = run.scores.column("risk")?.f64()?.iter().flatten().collect();
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
    let mut disrupted = Vec::new();
    let mut disrupted_rows = Vec::new();
    for d in &run.disrupted {
        let since = d.since.map(|day| crate::calendar::as_of_of_cutoff_day(day).to_string()).unwrap_or_default();
        let stage = STAGES[d.stage].label.to_string();
        disrupted.push((d.lane.label(), stage.clone(), d.recent_p50, d.baseline_p50));
        disrupted_rows.push(vec![
            d.lane.label(),
            stage,
            since,
            format!("{:.1}", d.recent_p50),
            format!("{:.1}", d.baseline_p50),
            format!("{:.2}", d.ratio),
            d.recent_n.to_string(),
        ]);
    }
    body += &disrupted_chart(&disrupted)?;
    body += &table(
        &["lane", "stage", "disrupted since", "recent p50 (d)", "baseline p50 (d)", "ratio", "recent n"],
        &disrupted_rows,
    );
    body += &lane_heatmap(lanes)?;
    body += "<h2>Lane transit percentiles</h2>\n";
    body += &lane_percentiles(lanes, &run.promise_days, cfg.report.percentile_lanes)?;
    body += &advice_section(&run.advice, cfg, run.night.as_of())?;
    Ok(page(&format!("lanewatch {}", run.night), &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a past night without at-risk alerts was drawn "not known yet" in the precision
    /// trend, as if its outcomes were still to come.
    #[test]
    fn a_night_without_at_risk_alerts_says_so_in_the_precision_trend() {
        let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let nights = [
            TrendNight { as_of: d("2026-03-01"), at_risk: 0, ..TrendNight::default() },
            TrendNight { as_of: d("2026-03-02"), at_risk: 4, ..TrendNight::default() },
        ];
        let html = trend_charts(&nights);
        let precision = &html[html.find("trend_precision").unwrap()..];
        let precision = &precision[..precision.find("</svg>").unwrap()];
        assert!(precision.contains("03-01 at_risk precision: no at-risk alerts"), "{precision}");
        assert!(precision.contains("03-02 at_risk precision: not known yet"), "{precision}");
    }

    /// Regression: the advice table ranked and counted pairs by their services' support summed,
    /// a pooled service's being its whole pool's: pairs without data of their own came first.
    #[test]
    fn a_pair_counts_only_its_own_resolved_shipments() {
        assert_eq!(own_support("lane", 50), 50);
        for pooled in ["destination_service", "service", "none"] {
            assert_eq!(own_support(pooled, 600), 0, "{pooled}");
        }
    }

    /// Regression: nights a year apart (trends over 366 nights, a backtest of years) shared a
    /// `MM-DD` label; across years the labels carry the year.
    #[test]
    fn night_labels_carry_the_year_when_the_nights_span_years() {
        let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(night_labels(&[d("2026-03-01"), d("2026-03-02")]), ["03-01", "03-02"]);
        assert_eq!(night_labels(&[d("2025-03-01"), d("2026-03-01")]), ["2025-03-01", "2026-03-01"]);
        assert_eq!(night_labels(&[]), Vec::<String>::new());
    }

    /// The heatmap draws the busiest services, origins and destinations and says what it
    /// left out (it once drew the first 8, 30 and 40 by name, without a word).
    #[test]
    fn the_lane_heatmap_draws_the_busiest_and_says_what_it_leaves_out() {
        let (mut o, mut d, mut s, mut r, mut n) = (vec![], vec![], vec![], vec![], vec![]);
        let mut lane = |origin: String, dest: String, service: String, shipments: i64| {
            o.push(origin);
            d.push(dest);
            s.push(service);
            r.push(0.9);
            n.push(shipments);
        };
        // "big": 35 origins × 45 destinations, where "A0" and "Z0" (first by name) carry one
        // parcel each and the rest 100 + k.
        for i in 0..35 {
            for j in 0..45 {
                let few = i == 0 || j == 0;
                lane(
                    format!("O{i:02}"),
                    if j == 0 { "A0".into() } else { format!("D{j:02}") },
                    "big".into(),
                    if few { 1 } else { 100 + i + j },
                );
            }
        }
        // Nine small services: the quietest ("s0", one parcel) is left out.
        for k in 0..9 {
            lane("O01".into(), "D01".into(), format!("s{k}"), if k == 0 { 1 } else { 50 });
        }
        let df = DataFrame::new(
            o.len(),
            vec![
                Column::new("origin".into(), o),
                Column::new("destination".into(), d),
                Column::new("service".into(), s),
                Column::new("on_time_rate".into(), r),
                Column::new("shipments".into(), n),
            ],
        )
        .unwrap();
        let html = lane_heatmap(&df).unwrap();
        assert!(html.contains("The 8 busiest of 10 services by shipments"), "{html}");
        assert!(!html.contains("by lane: s0 "), "the quietest service is drawn");
        assert!(html.contains("big: the 30 busiest of 35 origins and the 40 busiest of 45 destinations by shipments (1200 of 1575 lanes drawn)"), "{html}");
        // The one-parcel origin O00 and destination A0 are the ones left out, though first by name.
        assert!(!html.contains(">O00<") && !html.contains(">A0<"), "a quiet origin or destination is drawn");
        assert!(html.contains(">O34<") && html.contains(">D44<"));
    }

    #[test]
    fn escapes_markup_and_controls() {
        assert_eq!(
            esc("<script>alert('x')</script>&\u{0}"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;\u{FFFD}"
        );
        // An id that would reverse the rest of its line, or hide characters, shows the marks
        // instead; in chart labels they are dropped.
        for mark in ['\u{202E}', '\u{2066}', '\u{200B}', '\u{200F}', '\u{FEFF}', '\u{061C}'] {
            let id = format!("{mark}moc.elgoog");
            assert_eq!(esc(&id), "\u{FFFD}moc.elgoog", "{:?}", mark);
            assert_eq!(svg::label(&id), "moc.elgoog", "{:?}", mark);
        }
        // Unknown numbers read as "–", never "NaN".
        assert_eq!(
            (fixed(f64::NAN, 1), fixed(2.25, 1), fixed(f64::INFINITY, 1)),
            ("–".into(), "2.2".into(), "–".into())
        );
        // Other text outside ASCII is kept.
        assert_eq!(esc("São Paulo → Zürich · 東京"), "São Paulo → Zürich · 東京");
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
    let days: Vec<chrono::NaiveDate> =
        dates.i32()?.iter().map(|v| crate::calendar::date_of_day(v.unwrap_or(0) as i64)).collect();
    let xs = night_labels(&days);
    let series = [("alerts_late", svg::VERMILLION), ("alerts_stalled", svg::PURPLE), ("alerts_at_risk", svg::ORANGE)]
        .iter()
        .map(|(c, color)| -> Result<_> {
            Ok((
                Series { name: c.trim_start_matches("alerts_"), color },
                nights.column(c)?.i64()?.iter().map(|v| v.unwrap_or(0) as f64).collect::<Vec<f64>>(),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(svg::lines("alerts_per_night", "Alerts per night", "alerts", &xs, &series, None, true, &[]))
}

/// A reliability table: the non-empty bins with their counts, mean prediction and outcome rate.
fn calibration_table(bins: &[crate::model::metrics::Bin], header: &[&str]) -> String {
    let rows: Vec<Vec<String>> = bins
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
    table(header, &rows)
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
        body += "<p>Calibration of the pooled risk:</p>\n";
        body += &calibration_table(&m.calibration, &["risk", "rows", "mean predicted", "observed late rate"]);
    }
    let a = &s.advice;
    body += "<h2>Advice before shipping, replayed</h2>\n";
    let rate = |v: Option<f64>| v.map(|x| format!("{:.1} %", x * 100.0)).unwrap_or_else(|| "–".into());
    let _ = write!(
        body,
        "<p>Parcels shipped in the {} days after each night, on pairs the night advised on, against whether they met their own promise ({} parcels with a decided outcome).</p>\n",
        s.every_days, a.shipments
    );
    body += &table(
        &["", "parcels", "met the promise", "on-time rate"],
        &[
            vec![
                "used the advised service".into(),
                a.followed.to_string(),
                a.followed_on_time.to_string(),
                rate(a.followed_on_time_rate),
            ],
            vec![
                "used another service".into(),
                a.not_followed.to_string(),
                a.not_followed_on_time.to_string(),
                rate(a.not_followed_on_time_rate),
            ],
        ],
    );
    let _ =
        write!(body, "<p>Calibration of the probability of meeting the promise (Brier {}):</p>\n", f3(a.p_meet_brier));
    body +=
        &calibration_table(&a.p_meet_calibration, &["probability", "parcels", "mean predicted", "observed on time"]);
    let _ = write!(
        body,
        "<p>On the last night, the promise advice would change the promise of {} of {} lanes; {} kept today's promise less often than the target.</p>\n",
        a.promise_lanes_changed, a.promise_lanes, a.promise_lanes_below_target
    );
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
