//! `lanewatch backtest`: replays nightly runs over history, each strictly point-in-time, and
//! scores their alerts against the outcomes later in the same data.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::prelude::*;
use serde::Serialize;

use crate::alerts::{self, Previous};
use crate::calendar;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::evaluate::{self, DetectionReport, Final};
use crate::features;
use crate::io;
use crate::model;
use crate::pipeline::{self, Timings};
use crate::report;

#[derive(Debug, Clone)]
pub struct BacktestParams {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub every: u32,
    pub out: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct KindScore {
    /// Distinct shipments that got this alert on some night.
    pub alerted: u64,
    /// Of those, with a decided outcome, the share that ended late.
    pub precision: f64,
    /// Of the late shipments that were in flight before their promise on some night, the share alerted.
    pub recall: f64,
    /// Days from the first alert of this kind to the promise, over alerted shipments that ended late.
    pub lead_days_median: Option<f64>,
    pub lead_days_p10: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fatigue {
    /// Alerts per seller per night, over (seller, night) pairs with at least one alert.
    pub mean_per_alerted_seller_night: f64,
    pub p95_per_alerted_seller_night: f64,
    pub max_per_seller_night: u64,
    /// Alerts per seller per night over every seller with parcels in flight that night.
    pub mean_per_active_seller_night: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BacktestSummary {
    pub from: String,
    pub to: String,
    pub every_days: u32,
    pub nights: u64,
    pub population: u64,
    pub population_late: u64,
    pub kinds: BTreeMap<String, KindScore>,
    pub any_alert: KindScore,
    /// Share of shipments never delivered that got a `stalled` alert.
    pub stalled_recall_of_undelivered: Option<f64>,
    pub fatigue: Fatigue,
    pub disruption_detection: Option<DetectionReport>,
    pub out: PathBuf,
}

struct NightRow {
    as_of: NaiveDate,
    scored: u64,
    alerts: BTreeMap<&'static str, u64>,
    disrupted_lanes: u64,
    model: String,
    valid_pr_auc: f64,
    seconds: f64,
}

fn quantile(v: &mut [f64], q: f64) -> Option<f64> {
    (!v.is_empty()).then(|| crate::features::lanes::quantile(v, q))
}

pub fn backtest(cfg: &Config, p: &BacktestParams) -> Result<BacktestSummary> {
    if p.to < p.from {
        return Err(Error::Config(format!("--to {} is before --from {}", p.to, p.from)));
    }
    if p.every == 0 {
        return Err(Error::Config("--every must be at least 1".into()));
    }
    let input = cfg.input_dir()?;
    let params = pipeline::model_params(cfg)?;
    let mut t = Timings::default();
    let (_, clean) = t.time("validate", || pipeline::load(input, cfg), |r| r.0.shipments + r.0.events)?;
    let finals = evaluate::final_outcomes(&clean)?;
    let truth = evaluate::read_disruptions(input)?;

    let mut nights: Vec<NightRow> = Vec::new();
    let mut prev = Previous::default();
    // shipment_id → first night (cutoff µs) per alert kind
    let mut first_alert: HashMap<String, BTreeMap<&'static str, i64>> = HashMap::new();
    // shipments in flight before their promise on some night
    let mut population: HashMap<String, ()> = HashMap::new();
    let mut per_seller_night: Vec<u64> = Vec::new();
    let mut active_seller_nights = 0u64;
    let mut flags = Vec::new();
    let mut lane_nights = 0u64;
    let mut d = p.from;
    while d <= p.to {
        let started = std::time::Instant::now();
        let fs = features::build(&clean, cfg, d)?;
        let m = model::train(&fs, &params)?;
        let risk = m.predict(&fs.score);
        let out = alerts::build(&fs, &risk, &cfg.alerts, &prev)?;
        let cutoff = fs.cutoff;

        let ids = fs.prep.shipments.column("shipment_id")?.str()?;
        let mut active = std::collections::HashSet::new();
        for &i in &fs.score.ship {
            active.insert(fs.prep.seller[i as usize]);
            if fs.prep.promised[i as usize] > cutoff {
                population.insert(ids.get(i as usize).unwrap_or("").to_string(), ());
            }
        }
        active_seller_nights += active.len() as u64;

        let a = &out.alerts;
        let (aid, kind, seller) =
            (a.column("shipment_id")?.str()?, a.column("alert")?.str()?, a.column("seller_id")?.str()?);
        let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut by_seller: HashMap<&str, u64> = HashMap::new();
        for k in 0..a.height() {
            let kd: &'static str = match kind.get(k) {
                Some("late") => "late",
                Some("stalled") => "stalled",
                _ => "at_risk",
            };
            *counts.entry(kd).or_insert(0) += 1;
            *by_seller.entry(seller.get(k).unwrap_or("")).or_insert(0) += 1;
            first_alert.entry(aid.get(k).unwrap_or("").to_string()).or_default().entry(kd).or_insert(cutoff);
        }
        per_seller_night.extend(by_seller.values().copied());

        let day = calendar::day_index(cutoff);
        let disrupted = (0..fs.prep.lanes.len()).filter(|&l| fs.worst_disrupted_stage(l, day).is_some()).count() as u64;
        flags.extend(evaluate::flags_from_series(&fs, &[day]));
        lane_nights += fs.prep.lanes.len() as u64;

        // The next night carries first_alerted_on from this one, as the nightly job does.
        prev = Previous::from_alerts(a, d)?;

        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(as_of = %d, scored = fs.score.len(), alerts = a.height(), seconds = format!("{seconds:.2}"), "backtest night");
        nights.push(NightRow {
            as_of: d,
            scored: fs.score.len() as u64,
            alerts: counts,
            disrupted_lanes: disrupted,
            model: m.kind.clone(),
            valid_pr_auc: m.metrics.model.as_ref().map(|e| e.pr_auc).unwrap_or(f64::NAN),
            seconds,
        });
        d = d + chrono::Days::new(p.every as u64);
    }

    let decided: Vec<(&String, &Final)> =
        population.keys().filter_map(|id| finals.get(id).map(|f| (id, f))).filter(|(_, f)| f.decided).collect();
    let late_total = decided.iter().filter(|(_, f)| f.late).count() as u64;
    let score_kind = |pick: &dyn Fn(&BTreeMap<&'static str, i64>) -> Option<i64>| -> KindScore {
        let (mut alerted, mut alerted_decided, mut tp) = (0u64, 0u64, 0u64);
        let mut leads = Vec::new();
        for (id, kinds) in &first_alert {
            let Some(at) = pick(kinds) else { continue };
            alerted += 1;
            let Some(f) = finals.get(id).filter(|f| f.decided) else { continue };
            alerted_decided += 1;
            if f.late {
                tp += 1;
                leads.push(crate::schema::days(f.promised - at));
            }
        }
        let recall_hits =
            decided.iter().filter(|(id, f)| f.late && first_alert.get(*id).and_then(|k| pick(k)).is_some()).count()
                as u64;
        let lead_median = quantile(&mut leads, 0.5);
        let lead_p10 = quantile(&mut leads, 0.1);
        KindScore {
            alerted,
            precision: if alerted_decided == 0 { f64::NAN } else { tp as f64 / alerted_decided as f64 },
            recall: if late_total == 0 { f64::NAN } else { recall_hits as f64 / late_total as f64 },
            lead_days_median: lead_median,
            lead_days_p10: lead_p10,
        }
    };
    let mut kinds = BTreeMap::new();
    for k in ["at_risk", "stalled", "late"] {
        kinds.insert(k.to_string(), score_kind(&|m: &BTreeMap<&'static str, i64>| m.get(k).copied()));
    }
    let any_alert = score_kind(&|m: &BTreeMap<&'static str, i64>| m.values().copied().min());
    let undelivered: Vec<&String> = decided.iter().filter(|(_, f)| f.delivered.is_none()).map(|(id, _)| *id).collect();
    let stalled_recall = (!undelivered.is_empty()).then(|| {
        undelivered.iter().filter(|id| first_alert.get(**id).is_some_and(|k| k.contains_key("stalled"))).count() as f64
            / undelivered.len() as f64
    });
    let mut psn: Vec<f64> = per_seller_night.iter().map(|&v| v as f64).collect();
    let total_alerts: u64 = per_seller_night.iter().sum();
    let fatigue = Fatigue {
        mean_per_alerted_seller_night: if psn.is_empty() { 0.0 } else { total_alerts as f64 / psn.len() as f64 },
        p95_per_alerted_seller_night: quantile(&mut psn, 0.95).unwrap_or(0.0),
        max_per_seller_night: per_seller_night.iter().copied().max().unwrap_or(0),
        mean_per_active_seller_night: if active_seller_nights == 0 {
            0.0
        } else {
            total_alerts as f64 / active_seller_nights as f64
        },
    };
    let detection = truth.as_ref().map(|t| evaluate::detection(&flags, nights.len() as u64, lane_nights, t, 7));

    let summary = BacktestSummary {
        from: p.from.to_string(),
        to: p.to.to_string(),
        every_days: p.every,
        nights: nights.len() as u64,
        population: decided.len() as u64,
        population_late: late_total,
        kinds,
        any_alert,
        stalled_recall_of_undelivered: stalled_recall,
        fatigue,
        disruption_detection: detection,
        out: p.out.clone(),
    };
    write(&summary, &nights, &p.out)?;
    Ok(summary)
}

fn write(summary: &BacktestSummary, nights: &[NightRow], out: &Path) -> Result<()> {
    io::create_dir_all(out)?;
    let n = nights.len();
    let kind = |k: &str| nights.iter().map(|r| r.alerts.get(k).copied().unwrap_or(0) as i64).collect::<Vec<_>>();
    let mut df = DataFrame::new(
        n,
        vec![
            io::date_column(
                "as_of",
                nights
                    .iter()
                    .map(|r| Some((calendar::day_index(calendar::cutoff_micros(r.as_of)) - 1) as i32))
                    .collect(),
            ),
            Column::new("scored".into(), nights.iter().map(|r| r.scored as i64).collect::<Vec<_>>()),
            Column::new("alerts_late".into(), kind("late")),
            Column::new("alerts_stalled".into(), kind("stalled")),
            Column::new("alerts_at_risk".into(), kind("at_risk")),
            Column::new("disrupted_lanes".into(), nights.iter().map(|r| r.disrupted_lanes as i64).collect::<Vec<_>>()),
            Column::new("model".into(), nights.iter().map(|r| r.model.as_str()).collect::<Vec<_>>()),
            Column::new("valid_pr_auc".into(), nights.iter().map(|r| r.valid_pr_auc).collect::<Vec<_>>()),
        ],
    )?;
    io::write_parquet_atomic(&mut df, &out.join("backtest.parquet"))?;
    let mut json = serde_json::to_vec_pretty(summary).map_err(Error::internal)?;
    json.push(b'\n');
    io::write_atomic(&out.join("backtest.json"), &json)?;
    let timings: Vec<f64> = nights.iter().map(|r| r.seconds).collect();
    tracing::info!(nights = n, total_seconds = format!("{:.1}", timings.iter().sum::<f64>()), "backtest done");
    io::write_atomic(&out.join("backtest.html"), report::backtest_report(summary, &df)?.as_bytes())?;
    Ok(())
}
