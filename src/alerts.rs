//! From scored in-flight shipments to seller alerts: kind, severity, reasons (most important
//! first) and the action that fits the platform's guarantees. Also the night-over-night view:
//! first_alerted_on carried from the previous run, recovered shipments, disrupted-lane exposure.

use std::collections::HashMap;

use polars::prelude::*;

use crate::calendar::{self, day_index};
use crate::config::AlertConfig;
use crate::error::Result;
use crate::features::{FeatureSet, N_FEATURES};
use crate::io;
use crate::model::feature_index;
use crate::schema::{self, MICROS_PER_DAY, STAGES};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Late,
    Stalled,
    AtRisk,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Late => "late",
            Kind::Stalled => "stalled",
            Kind::AtRisk => "at_risk",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    High,
    Medium,
    Low,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

/// One alert before it becomes a row.
#[derive(Debug, Clone)]
pub struct Alert {
    /// Index into the scoring rows.
    pub row: usize,
    pub kind: Kind,
    pub severity: Severity,
    pub reasons: String,
    pub action: String,
}

/// What the previous night's run alerted, keyed by shipment_id.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    pub as_of: Option<chrono::NaiveDate>,
    /// shipment_id → (seller_id, alert, severity, first_alerted_on as days since epoch)
    pub alerts: HashMap<String, (String, String, String, i32)>,
}

impl Previous {
    /// From an alerts frame (a run's `alerts.parquet`, or the night before in a backtest).
    /// Rows without a shipment_id or first_alerted_on carry nothing over.
    pub fn from_alerts(df: &DataFrame, as_of: chrono::NaiveDate) -> Result<Previous> {
        let id = df.column("shipment_id")?.str()?;
        let seller = df.column("seller_id")?.str()?;
        let alert = df.column("alert")?.str()?;
        let sev = df.column("severity")?.str()?;
        let first = df.column("first_alerted_on")?.as_materialized_series().to_physical_repr().into_owned();
        let first = first.i32()?;
        let mut alerts = HashMap::with_capacity(df.height());
        for k in 0..df.height() {
            let (Some(i), Some(f)) = (id.get(k), first.get(k)) else {
                continue;
            };
            let text = |c: &StringChunked| c.get(k).unwrap_or("").to_string();
            alerts.insert(i.to_string(), (text(seller), text(alert), text(sev), f));
        }
        Ok(Previous { as_of: Some(as_of), alerts })
    }
}

pub struct AlertOutput {
    pub scores: DataFrame,
    pub alerts: DataFrame,
    pub recovered: DataFrame,
    pub lane_alerts: DataFrame,
    /// Alerts dropped by the per-seller budget, per seller_id.
    pub suppressed: HashMap<String, u64>,
}

fn fmt_d(v: f64) -> String {
    format!("{v:.1} d")
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// Decides the alert, if any, for scoring row `r` with calibrated `risk`.
pub fn decide(fs: &FeatureSet, r: usize, risk: f64, cfg: &AlertConfig) -> Option<Alert> {
    let x = fs.score.row(r);
    debug_assert_eq!(x.len(), N_FEATURES);
    let f = |name: &str| x[feature_index(name)];
    let e = &fs.score.extras[r];
    let i = fs.score.ship[r] as usize;
    let p = &fs.prep;
    let lane_id = p.lane[i] as usize;
    let lane = &fs.lanes()[lane_id];
    let lane_key = &p.lanes[lane_id];
    let stage = &STAGES[e.stage];
    let day = day_index(fs.cutoff);

    let to_promise = f("time_to_promise_days");
    let silent = f("days_since_last_scan");
    let p90 = lane.dwell_p90(e.stage).max(0.05);
    let stall_limit = (cfg.stalled_factor * p90).max(cfg.stalled_min_days);
    let stalled = silent > stall_limit;
    let late = to_promise <= 0.0;
    let kind = if late {
        Kind::Late
    } else if stalled {
        Kind::Stalled
    } else if risk >= cfg.risk_threshold {
        Kind::AtRisk
    } else {
        return None;
    };

    let value = p.declared_value[i];
    let high_value = p.insured[i] && value.is_finite() && value >= cfg.high_value_usd;
    let worst = fs.worst_disrupted_stage(lane_id, day).filter(|&s| s >= e.stage);

    // (weight, text): heavier first. Weights only order reasons, in bands: past the promise
    // 100, silence 90–99, stage dwell 70–79, lane disruption 60–69, customs hold and failed
    // deliveries 44–46, slack 20–44, seller 15, lane 10, the model's risk 5.
    let mut reasons: Vec<(f64, String)> = Vec::new();
    if late {
        reasons.push((100.0, format!("past the promise by {}", fmt_d(-to_promise))));
    }
    if stalled {
        reasons.push((
            90.0 + (silent / stall_limit).min(9.0),
            format!("no scan for {} ({} stage, lane p90 {})", fmt_d(silent), stage.label, fmt_d(p90)),
        ));
    }
    let over = f("dwell_vs_p90");
    if over > 1.0 {
        reasons.push((
            70.0 + over.min(9.0),
            format!("{} dwell {} vs lane p90 {}", stage.label, fmt_d(e.stage_dwell_days), fmt_d(p90)),
        ));
    }
    if let Some(s) = worst {
        let pt = fs.series.at(lane_id, s, day);
        let since = fs.series.disrupted_since(lane_id, s, day).map(|d| calendar::date_of_day(d - 1).to_string());
        reasons.push((
            60.0 + pt.ratio.min(9.0),
            format!(
                "lane {} disrupted{}: {} p50 {} vs {} baseline",
                lane_key.label(),
                since.map(|d| format!(" since {d}")).unwrap_or_default(),
                STAGES[s].label,
                fmt_d(pt.recent_p50),
                fmt_d(pt.baseline_p50)
            ),
        ));
    }
    let slack50 = f("slack_p50_days");
    let slack90 = f("slack_p90_days");
    if !late && slack50 < 0.0 {
        reasons.push((
            40.0 + (-slack50).min(4.0),
            format!("expected delivery {} after the promise (lane p50)", fmt_d(-slack50)),
        ));
    } else if !late && slack90 < 0.0 {
        reasons.push((
            20.0 + (-slack90).min(4.0),
            format!("slow-case delivery {} after the promise (lane p90)", fmt_d(-slack90)),
        ));
    }
    if f("customs_hold_seen") > 0.0 {
        reasons.push((45.0, "customs hold scanned".to_string()));
    }
    let fails = f("delivery_failures");
    if fails > 0.0 {
        reasons.push((
            44.0 + fails.min(1.0),
            format!("{} failed delivery attempt{}", fails as u32, if fails > 1.0 { "s" } else { "" }),
        ));
    }
    let seller_rate = f("seller_late_rate");
    let lane_rate = f("lane_late_rate");
    if seller_rate > 1.5 * lane_rate && seller_rate > 0.1 {
        reasons.push((
            15.0 + seller_rate,
            format!("seller's recent late rate {} vs lane {}", pct(seller_rate), pct(lane_rate)),
        ));
    }
    if e.stage == 0 {
        let handling = f("seller_handling_days");
        if e.stage_dwell_days > handling && e.stage_dwell_days > 1.0 {
            reasons.push((
                30.0,
                format!("not picked up after {} (seller usually {})", fmt_d(e.stage_dwell_days), fmt_d(handling)),
            ));
        }
    }
    if lane_rate > 0.2 {
        reasons.push((10.0, format!("lane late rate {}", pct(lane_rate))));
    }
    if kind == Kind::AtRisk || reasons.is_empty() {
        reasons.push((5.0, format!("model risk {risk:.2}")));
    }
    reasons.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let reasons: Vec<String> = reasons.into_iter().map(|r| r.1).collect();

    let severity = match kind {
        Kind::Late => {
            if -to_promise >= cfg.late_high_days || high_value || stalled {
                Severity::High
            } else if -to_promise >= 1.0 {
                Severity::Medium
            } else {
                Severity::Low
            }
        }
        Kind::Stalled => {
            if silent >= 2.0 * stall_limit || high_value {
                Severity::High
            } else {
                Severity::Medium
            }
        }
        Kind::AtRisk => {
            if risk >= cfg.high_risk {
                Severity::High
            } else if risk >= cfg.medium_risk {
                Severity::Medium
            } else {
                Severity::Low
            }
        }
    };

    let mut actions: Vec<&str> = Vec::new();
    match kind {
        Kind::Late => {
            if stalled && high_value {
                actions.push("prepare an insurance claim for this insured high-value parcel presumed lost");
            }
            if stalled {
                actions.push("open a carrier trace");
            }
            actions.push("message the buyer with the tracking status");
            actions.push("collect tracking evidence for a likely dispute");
        }
        Kind::Stalled => {
            actions.push("open a carrier trace");
            if high_value {
                actions.push("prepare an insurance claim for this insured high-value parcel presumed lost");
            }
            actions.push("message the buyer before they complain");
        }
        Kind::AtRisk => {
            if severity == Severity::High || slack50 < 0.0 {
                actions.push("request a delivery-time extension before the promise passes");
            }
            actions.push("message the buyer before they complain");
            if f("customs_hold_seen") > 0.0 {
                actions.push("send the carrier the customs documents");
            }
        }
    }
    if worst.is_some() {
        actions.push("ship new orders on this lane with another service");
    }
    let mut action = actions.join("; ");
    if let Some(c) = action.get(..1) {
        action = c.to_uppercase() + &action[1..];
    }
    Some(Alert { row: r, kind, severity, reasons: reasons.join("; "), action })
}

/// Builds scores, alerts, recovered and lane exposure frames for one night.
pub fn build(fs: &FeatureSet, risk: &[f64], cfg: &AlertConfig, prev: &Previous) -> Result<AlertOutput> {
    let p = &fs.prep;
    let rows = &fs.score;
    let n = rows.len();
    let cutoff = fs.cutoff;
    let risk: Vec<f64> = (0..n)
        .map(|r| if p.promised[rows.ship[r] as usize] <= cutoff { 1.0 } else { risk[r].clamp(0.0, 1.0) })
        .collect();

    let idx = IdxCa::from_vec("idx".into(), rows.ship.iter().map(|&i| i as IdxSize).collect());
    let base =
        p.shipments.select(["shipment_id", "seller_id", "origin", "destination", "service", "carrier"])?.take(&idx)?;
    let status: Vec<&str> = rows.extras.iter().map(|e| schema::status_name(e.furthest)).collect();
    let stage: Vec<&str> = rows.extras.iter().map(|e| STAGES[e.stage].key).collect();
    let feat = |name: &str| -> Vec<f64> {
        let j = feature_index(name);
        (0..n).map(|r| rows.x[r * N_FEATURES + j]).collect()
    };
    let day = day_index(cutoff);
    let lane_disrupted: Vec<bool> =
        rows.ship.iter().map(|&i| fs.worst_disrupted_stage(p.lane[i as usize] as usize, day).is_some()).collect();
    let mut scores = base;
    let mut add = |c: Column| scores.with_column(c).map(|_| ());
    add(Column::new("status".into(), status))?;
    add(Column::new("stage".into(), stage))?;
    add(io::ts_column_req("created_at", rows.ship.iter().map(|&i| p.created[i as usize]).collect()))?;
    add(io::ts_column_req("last_event_at", rows.extras.iter().map(|e| e.last_event_at).collect()))?;
    add(io::ts_column_req("promised_at", rows.ship.iter().map(|&i| p.promised[i as usize]).collect()))?;
    add(Column::new("risk".into(), risk.clone()))?;
    add(io::ts_column_req(
        "expected_delivery_at",
        rows.extras.iter().map(|e| cutoff + (e.expected_remaining_p50 * MICROS_PER_DAY as f64) as i64).collect(),
    ))?;
    add(io::ts_column_req(
        "expected_delivery_p90_at",
        rows.extras.iter().map(|e| cutoff + (e.expected_remaining_p90 * MICROS_PER_DAY as f64) as i64).collect(),
    ))?;
    add(Column::new("days_to_promise".into(), feat("time_to_promise_days")))?;
    add(Column::new("days_since_last_scan".into(), feat("days_since_last_scan")))?;
    add(Column::new("stage_dwell_days".into(), rows.extras.iter().map(|e| e.stage_dwell_days).collect::<Vec<_>>()))?;
    add(Column::new("slack_p50_days".into(), feat("slack_p50_days")))?;
    add(Column::new("lane_disrupted".into(), lane_disrupted))?;
    add(Column::new("insured".into(), rows.ship.iter().map(|&i| p.insured[i as usize]).collect::<Vec<_>>()))?;
    add(Column::new(
        "declared_value".into(),
        rows.ship.iter().map(|&i| Some(p.declared_value[i as usize]).filter(|v| v.is_finite())).collect::<Vec<_>>(),
    ))?;
    // Scoring rows follow the prepared shipments, which are sorted by shipment_id.

    // Alerts, then the per-seller budget: most severe and riskiest first.
    let mut alerts: Vec<Alert> = (0..n).filter_map(|r| decide(fs, r, risk[r], cfg)).collect();
    let seller_of = |r: usize| p.seller[rows.ship[r] as usize];
    alerts.sort_by(|a, b| {
        seller_of(a.row)
            .cmp(&seller_of(b.row))
            .then(a.severity.cmp(&b.severity))
            .then(risk[b.row].total_cmp(&risk[a.row]))
            .then(a.kind.cmp(&b.kind))
            .then(rows.ship[a.row].cmp(&rows.ship[b.row]))
    });
    let seller_names = p.shipments.column("seller_id")?.str()?.clone();
    let ship_ids = p.shipments.column("shipment_id")?.str()?.clone();
    let mut kept = Vec::with_capacity(alerts.len());
    let mut suppressed: HashMap<String, u64> = HashMap::new();
    let mut count_for: HashMap<u32, usize> = HashMap::new();
    for a in alerts {
        let s = seller_of(a.row);
        let c = count_for.entry(s).or_insert(0);
        if *c < cfg.max_per_seller {
            *c += 1;
            kept.push(a);
        } else {
            let name = seller_names.get(rows.ship[a.row] as usize).unwrap_or("").to_string();
            *suppressed.entry(name).or_insert(0) += 1;
        }
    }

    let as_of_day = (day - 1) as i32;
    kept.sort_by_key(|a| a.row);
    let alert_idx = IdxCa::from_vec("idx".into(), kept.iter().map(|a| a.row as IdxSize).collect());
    let mut alert_df = scores.take(&alert_idx)?;
    let first: Vec<Option<i32>> = kept
        .iter()
        .map(|a| {
            let id = ship_ids.get(rows.ship[a.row] as usize).unwrap_or("");
            Some(prev.alerts.get(id).map(|x| x.3).unwrap_or(as_of_day))
        })
        .collect();
    alert_df.with_column(Column::new("alert".into(), kept.iter().map(|a| a.kind.name()).collect::<Vec<_>>()))?;
    alert_df.with_column(Column::new("severity".into(), kept.iter().map(|a| a.severity.name()).collect::<Vec<_>>()))?;
    alert_df.with_column(Column::new("reasons".into(), kept.iter().map(|a| a.reasons.as_str()).collect::<Vec<_>>()))?;
    alert_df.with_column(Column::new("action".into(), kept.iter().map(|a| a.action.as_str()).collect::<Vec<_>>()))?;
    alert_df.with_column(io::date_column("first_alerted_on", first))?;

    let recovered = recovered_frame(fs, prev, &kept, &ship_ids)?;
    let lane_alerts = lane_exposure(fs, &kept)?;
    Ok(AlertOutput { scores, alerts: alert_df, recovered, lane_alerts, suppressed })
}

/// Shipments alerted last time that are no longer alerted, with why.
fn recovered_frame(fs: &FeatureSet, prev: &Previous, kept: &[Alert], ship_ids: &StringChunked) -> Result<DataFrame> {
    let alerted: std::collections::HashSet<&str> =
        kept.iter().map(|a| ship_ids.get(fs.score.ship[a.row] as usize).unwrap_or("")).collect();
    // Shipment ids are unique and sorted (validation sorts them), so the few previously
    // alerted ids are found by binary search rather than by indexing every shipment.
    let find = |id: &str| -> Option<usize> {
        let (mut lo, mut hi) = (0usize, ship_ids.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match ship_ids.get(mid).unwrap_or("").cmp(id) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    };
    let mut ids: Vec<&String> = prev.alerts.keys().filter(|id| !alerted.contains(id.as_str())).collect();
    ids.sort();
    let (mut sid, mut seller, mut prev_alert, mut prev_sev, mut first, mut why, mut status, mut delivered) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for id in ids {
        let (s, a, sev, f) = &prev.alerts[id];
        let (reason, st_name, dlv) = match find(id) {
            Some(i) => {
                let st = &fs.states[i];
                if st.delivered != super::features::timeline::NONE {
                    ("delivered", schema::status_name(schema::DELIVERED), Some(st.delivered))
                } else if st.returned_or_lost != super::features::timeline::NONE {
                    ("returned_or_lost", "RETURNED", None)
                } else {
                    ("back_on_track", schema::status_name(st.furthest), None)
                }
            }
            None => ("no_longer_in_input", "UNKNOWN", None),
        };
        sid.push(id.clone());
        seller.push(s.clone());
        prev_alert.push(a.clone());
        prev_sev.push(sev.clone());
        first.push(Some(*f));
        why.push(reason);
        status.push(st_name);
        delivered.push(dlv);
    }
    let n = sid.len();
    Ok(DataFrame::new(
        n,
        vec![
            Column::new("shipment_id".into(), sid),
            Column::new("seller_id".into(), seller),
            Column::new("previous_alert".into(), prev_alert),
            Column::new("previous_severity".into(), prev_sev),
            io::date_column("first_alerted_on", first),
            Column::new("recovered_reason".into(), why),
            Column::new("status".into(), status),
            io::ts_column("delivered_at", delivered),
        ],
    )?)
}

/// For each lane flagged disrupted, each seller's in-flight and alerted parcels on it.
fn lane_exposure(fs: &FeatureSet, kept: &[Alert]) -> Result<DataFrame> {
    let p = &fs.prep;
    let day = day_index(fs.cutoff);
    let mut alerted = std::collections::HashSet::new();
    for a in kept {
        alerted.insert(fs.score.ship[a.row]);
    }
    // (lane, seller) → (in flight, alerted)
    let mut counts: std::collections::BTreeMap<(u32, u32), (u32, u32)> = Default::default();
    for &i in &fs.score.ship {
        let lane = p.lane[i as usize];
        if fs.worst_disrupted_stage(lane as usize, day).is_none() {
            continue;
        }
        let e = counts.entry((lane, p.seller[i as usize])).or_insert((0, 0));
        e.0 += 1;
        e.1 += alerted.contains(&i) as u32;
    }
    let mut seller_name: Vec<&str> = vec![""; p.n_sellers];
    let sellers = p.shipments.column("seller_id")?.str()?;
    for (i, s) in sellers.iter().enumerate() {
        seller_name[p.seller[i] as usize] = s.unwrap_or("");
    }
    let mut cols: (
        Vec<&str>,
        Vec<&str>,
        Vec<&str>,
        Vec<&str>,
        Vec<Option<i32>>,
        Vec<f64>,
        Vec<&str>,
        Vec<i64>,
        Vec<i64>,
    ) = Default::default();
    for ((lane, seller), (inflight, al)) in &counts {
        let l = *lane as usize;
        let key = &p.lanes[l];
        let s = fs.worst_disrupted_stage(l, day).expect("filtered above");
        cols.0.push(&key.origin);
        cols.1.push(&key.destination);
        cols.2.push(&key.service);
        cols.3.push(STAGES[s].key);
        cols.4.push(fs.series.disrupted_since(l, s, day).map(|d| (d - 1) as i32));
        cols.5.push(fs.series.at(l, s, day).ratio);
        cols.6.push(seller_name[*seller as usize]);
        cols.7.push(*inflight as i64);
        cols.8.push(*al as i64);
    }
    let n = cols.0.len();
    let mut df = DataFrame::new(
        n,
        vec![
            Column::new("origin".into(), cols.0),
            Column::new("destination".into(), cols.1),
            Column::new("service".into(), cols.2),
            Column::new("disrupted_stage".into(), cols.3),
            io::date_column("disrupted_since", cols.4),
            Column::new("disruption_ratio".into(), cols.5),
            Column::new("seller_id".into(), cols.6),
            Column::new("in_flight".into(), cols.7),
            Column::new("alerted".into(), cols.8),
        ],
    )?;
    df = df.sort(["origin", "destination", "service", "seller_id"], SortMultipleOptions::default())?;
    Ok(df)
}
