//! From scored in-flight shipments to seller alerts: kind, severity, reasons (most important
//! first) and the action that fits the platform's guarantees (`rules`). Also the night-over-night
//! view: first_alerted_on carried from the previous run (`previous`), recovered shipments,
//! disrupted-lane exposure. Alerts stay typed (`Vec<Alert>`) until `AlertOutput::frame` writes
//! them.

pub mod previous;
pub mod rules;

use std::collections::HashMap;

use polars::prelude::*;

use crate::config::AlertConfig;
use crate::error::Result;
use crate::features::{FeatureSet, N_FEATURES, feature_index};
use crate::io;
use crate::schema::{self, MICROS_PER_DAY, STAGES, outputs};
pub use previous::{Previous, PreviousAlert};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertKind {
    Late,
    Stalled,
    AtRisk,
}

impl AlertKind {
    pub const ALL: [AlertKind; 3] = [AlertKind::Late, AlertKind::Stalled, AlertKind::AtRisk];

    pub fn name(self) -> &'static str {
        match self {
            AlertKind::Late => "late",
            AlertKind::Stalled => "stalled",
            AlertKind::AtRisk => "at_risk",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    High,
    Medium,
    Low,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::High, Severity::Medium, Severity::Low];

    pub fn name(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

/// One alert of the night.
#[derive(Debug, Clone)]
pub struct Alert {
    /// Index into the scoring rows.
    pub row: usize,
    /// Shipment index (into `prep`); its seller and lane come from there.
    pub ship: u32,
    pub kind: AlertKind,
    pub severity: Severity,
    pub reasons: String,
    pub action: String,
    /// First night this shipment was alerted (carried over), as an as-of day number.
    pub first_alerted_on: i32,
}

/// Everything the alert stage produces for one night.
pub struct AlertOutput {
    /// `scores.parquet`: every in-flight shipment, sorted by shipment_id.
    pub scores: DataFrame,
    /// The alerts kept after the per-seller cap, in scoring-row (shipment_id) order.
    pub alerts: Vec<Alert>,
    pub recovered: DataFrame,
    pub lane_alerts: DataFrame,
    /// Alerts dropped by the per-seller budget, per seller_id.
    pub suppressed: HashMap<String, u64>,
}

impl AlertOutput {
    /// `alerts.parquet`: the alerted rows of the scores with the alert's columns.
    pub fn frame(&self) -> Result<DataFrame> {
        let idx = IdxCa::from_vec("idx".into(), self.alerts.iter().map(|a| a.row as IdxSize).collect());
        let mut df = self.scores.take(&idx)?;
        let a = &self.alerts;
        for name in outputs::ALERT_EXTRA {
            let c = match *name {
                "alert" => Column::new((*name).into(), a.iter().map(|a| a.kind.name()).collect::<Vec<_>>()),
                "severity" => Column::new((*name).into(), a.iter().map(|a| a.severity.name()).collect::<Vec<_>>()),
                "reasons" => Column::new((*name).into(), a.iter().map(|a| a.reasons.as_str()).collect::<Vec<_>>()),
                "action" => Column::new((*name).into(), a.iter().map(|a| a.action.as_str()).collect::<Vec<_>>()),
                "first_alerted_on" => io::date_column(name, a.iter().map(|a| Some(a.first_alerted_on)).collect()),
                other => return Err(crate::Error::internal(format!("alerts.parquet: no builder for {other}"))),
            };
            df.with_column(c)?;
        }
        let want: Vec<&str> = outputs::SCORES.iter().chain(outputs::ALERT_EXTRA).copied().collect();
        outputs::check("alerts.parquet", &df, &want)?;
        Ok(df)
    }

    /// Alerts per (kind, severity).
    pub fn counts(&self) -> std::collections::BTreeMap<(AlertKind, Severity), u64> {
        let mut m = std::collections::BTreeMap::new();
        for a in &self.alerts {
            *m.entry((a.kind, a.severity)).or_insert(0) += 1;
        }
        m
    }
}

/// Decides the alert, if any, for scoring row `r` with calibrated `risk`.
pub fn decide(fs: &FeatureSet, r: usize, risk: f64, cfg: &AlertConfig) -> Option<Alert> {
    let f = rules::facts(fs, r, risk, cfg);
    let kind = rules::kind(&f, cfg)?;
    let severity = rules::severity(&f, kind, cfg);
    Some(Alert {
        row: r,
        ship: fs.score.ship[r],
        kind,
        severity,
        reasons: rules::reasons(&f, kind, cfg).join("; "),
        action: rules::action(&f, kind, severity, cfg),
        first_alerted_on: fs.night().as_of_day(),
    })
}

/// Builds scores, alerts, recovered and lane exposure frames for one night.
pub fn build(fs: &FeatureSet, risk: &[f64], cfg: &AlertConfig, prev: &Previous) -> Result<AlertOutput> {
    let p = &fs.prep;
    let rows = &fs.score;
    let n = rows.len();
    let cutoff = fs.cutoff();
    let risk: Vec<f64> = (0..n)
        .map(|r| if p.promised[rows.ship[r] as usize] <= cutoff { 1.0 } else { risk[r].clamp(0.0, 1.0) })
        .collect();

    let scores = scores_frame(fs, &risk)?;

    // Alerts, then the per-seller budget: most severe and riskiest first.
    let mut alerts: Vec<Alert> = (0..n).filter_map(|r| decide(fs, r, risk[r], cfg)).collect();
    let seller_of = |a: &Alert| p.seller[a.ship as usize];
    alerts.sort_by(|a, b| {
        seller_of(a)
            .cmp(&seller_of(b))
            .then(rules::cap_order((a.severity, risk[a.row], a.kind), (b.severity, risk[b.row], b.kind)))
            .then(a.ship.cmp(&b.ship))
    });
    let (keep, suppressed_by_seller) =
        rules::cap_per_seller(&alerts.iter().map(seller_of).collect::<Vec<_>>(), cfg.max_per_seller);
    let mut keep_mask = vec![false; alerts.len()];
    for k in keep {
        keep_mask[k] = true;
    }
    let mut kept: Vec<Alert> = alerts.into_iter().zip(keep_mask).filter(|(_, k)| *k).map(|(a, _)| a).collect();
    kept.sort_by_key(|a| a.row);
    let seller_name = p.seller_names();
    let suppressed: HashMap<String, u64> =
        suppressed_by_seller.into_iter().map(|(s, n)| (seller_name[s as usize].to_string(), n)).collect();
    let ship_ids = p.shipments.column("shipment_id")?.str()?.clone();
    for a in &mut kept {
        let id = ship_ids.get(a.ship as usize).unwrap_or("");
        if let Some(x) = prev.alerts.get(id) {
            a.first_alerted_on = x.first_alerted_on;
        }
    }

    let recovered = recovered_frame(fs, prev, &kept, &ship_ids)?;
    let lane_alerts = lane_exposure(fs, &kept)?;
    Ok(AlertOutput { scores, alerts: kept, recovered, lane_alerts, suppressed })
}

/// `scores.parquet`, column by column in the contract's order (`schema::outputs::SCORES`).
/// Scoring rows follow the prepared shipments, which are sorted by shipment_id.
fn scores_frame(fs: &FeatureSet, risk: &[f64]) -> Result<DataFrame> {
    let p = &fs.prep;
    let rows = &fs.score;
    let n = rows.len();
    let cutoff = fs.cutoff();
    let idx = IdxCa::from_vec("idx".into(), rows.ship.iter().map(|&i| i as IdxSize).collect());
    let feat = |name: &str| -> Vec<f64> {
        let j = feature_index(name);
        (0..n).map(|r| rows.x[r * N_FEATURES + j]).collect()
    };
    let ship = |f: &dyn Fn(usize) -> i64| -> Vec<i64> { rows.ship.iter().map(|&i| f(i as usize)).collect() };
    let at = |days: &dyn Fn(&crate::features::snapshot::Extras) -> f64| -> Vec<i64> {
        rows.extras.iter().map(|e| cutoff + (days(e) * MICROS_PER_DAY as f64) as i64).collect()
    };
    let mut cols = Vec::with_capacity(outputs::SCORES.len());
    for &name in outputs::SCORES {
        let c = match name {
            "shipment_id" | "seller_id" | "origin" | "destination" | "service" | "carrier" => p.column(name, &idx)?,
            "status" => Column::new(
                name.into(),
                rows.extras.iter().map(|e| schema::status_name(e.furthest)).collect::<Vec<_>>(),
            ),
            "stage" => Column::new(name.into(), rows.extras.iter().map(|e| STAGES[e.stage].key).collect::<Vec<_>>()),
            "created_at" => io::ts_column_req(name, ship(&|i| p.created[i])),
            "last_event_at" => io::ts_column_req(name, rows.extras.iter().map(|e| e.last_event_at).collect()),
            "promised_at" => io::ts_column_req(name, ship(&|i| p.promised[i])),
            "risk" => Column::new(name.into(), risk.to_vec()),
            "expected_delivery_at" => io::ts_column_req(name, at(&|e| e.expected_remaining_p50)),
            "expected_delivery_p90_at" => io::ts_column_req(name, at(&|e| e.expected_remaining_p90)),
            "days_to_promise" => Column::new(name.into(), feat("time_to_promise_days")),
            "days_since_last_scan" => Column::new(name.into(), feat("days_since_last_scan")),
            "stage_dwell_days" => {
                Column::new(name.into(), rows.extras.iter().map(|e| e.stage_dwell_days).collect::<Vec<_>>())
            }
            "slack_p50_days" => Column::new(name.into(), feat("slack_p50_days")),
            "lane_disrupted" => Column::new(
                name.into(),
                rows.ship
                    .iter()
                    .map(|&i| fs.disrupted_lanes()[p.lane[i as usize] as usize].is_some())
                    .collect::<Vec<_>>(),
            ),
            "insured" => Column::new(name.into(), rows.ship.iter().map(|&i| p.insured[i as usize]).collect::<Vec<_>>()),
            "declared_value" => Column::new(
                name.into(),
                rows.ship
                    .iter()
                    .map(|&i| Some(p.declared_value[i as usize]).filter(|v| v.is_finite()))
                    .collect::<Vec<_>>(),
            ),
            other => return Err(crate::Error::internal(format!("scores.parquet: no builder for {other}"))),
        };
        cols.push(c);
    }
    let df = DataFrame::new(n, cols)?;
    outputs::check("scores.parquet", &df, outputs::SCORES)?;
    Ok(df)
}

/// Shipments alerted last time that are no longer alerted, with why.
fn recovered_frame(fs: &FeatureSet, prev: &Previous, kept: &[Alert], ship_ids: &StringChunked) -> Result<DataFrame> {
    let alerted: std::collections::HashSet<&str> =
        kept.iter().map(|a| ship_ids.get(a.ship as usize).unwrap_or("")).collect();
    let mut ids: Vec<&String> = prev.alerts.keys().filter(|id| !alerted.contains(id.as_str())).collect();
    ids.sort();
    let (mut sid, mut seller, mut prev_alert, mut prev_sev, mut first, mut why, mut status, mut delivered) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for id in ids {
        let PreviousAlert { seller_id: s, alert: a, severity: sev, first_alerted_on: f } = &prev.alerts[id];
        let (reason, st_name, dlv) = match fs.find_shipment(id) {
            Some(i) => {
                let (st, none) = (&fs.states, crate::features::timeline::NONE);
                match st.open(i) {
                    Some(open) => ("back_on_track", schema::status_name(open.furthest), None),
                    None if st.delivered(i) != none => {
                        ("delivered", schema::status_name(schema::DELIVERED), Some(st.delivered(i)))
                    }
                    None => ("returned_or_lost", "RETURNED", None),
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
    let df = DataFrame::new(
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
    )?;
    outputs::check("recovered.parquet", &df, outputs::RECOVERED)?;
    Ok(df)
}

/// For each lane flagged disrupted, each seller's in-flight and alerted parcels on it.
fn lane_exposure(fs: &FeatureSet, kept: &[Alert]) -> Result<DataFrame> {
    let p = &fs.prep;
    let day = fs.night().cutoff_day();
    let mut alerted = std::collections::HashSet::new();
    for a in kept {
        alerted.insert(a.ship);
    }
    // (lane, seller) → (in flight, alerted)
    let mut counts: std::collections::BTreeMap<(u32, u32), (u32, u32)> = Default::default();
    for &i in &fs.score.ship {
        let lane = p.lane[i as usize];
        if fs.disrupted_lanes()[lane as usize].is_none() {
            continue;
        }
        let e = counts.entry((lane, p.seller[i as usize])).or_insert((0, 0));
        e.0 += 1;
        e.1 += alerted.contains(&i) as u32;
    }
    let seller_name = p.seller_names();
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
        let s = fs.disrupted_lanes()[l].expect("filtered above");
        cols.0.push(&key.origin);
        cols.1.push(&key.destination);
        cols.2.push(&key.service);
        cols.3.push(STAGES[s].key);
        cols.4.push(fs.series.disrupted_since(l, s, day).map(crate::calendar::as_of_day_of_cutoff_day));
        cols.5.push(fs.series.at(l, s, day).ratio);
        cols.6.push(seller_name[*seller as usize].as_str());
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
    outputs::check("lane_alerts.parquet", &df, outputs::LANE_ALERTS)?;
    Ok(df)
}
