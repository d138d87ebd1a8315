//! From scored in-flight shipments to seller alerts: kind, severity, reasons (most important
//! first) and the action that fits the platform's guarantees (`rules`). Also the night-over-night
//! view: first_alerted_on carried from the previous run (`previous`), recovered shipments,
//! disrupted-lane exposure. Alerts stay typed (`Vec<Alert>`) until `AlertOutput::frame` writes
//! them.

pub mod parted;
pub mod previous;
pub mod rules;

use std::collections::{HashMap, HashSet};

use polars::prelude::*;
use rayon::prelude::*;

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
    /// `capped_alerts.parquet`: those alerts themselves, with their `first_alerted_on`.
    pub capped: DataFrame,
}

impl AlertOutput {
    /// `alerts.parquet`: the alerted rows of the scores with the alert's columns.
    pub fn frame(&self) -> Result<DataFrame> {
        let cols: Vec<AlertColumns<'_>> = self
            .alerts
            .iter()
            .map(|a| AlertColumns {
                row: a.row,
                kind: a.kind,
                severity: a.severity,
                reasons: &a.reasons,
                action: &a.action,
                first_alerted_on: a.first_alerted_on,
            })
            .collect();
        alerts_frame(&self.scores, &cols)
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
    let t0 = std::time::Instant::now();
    let p = &fs.prep;
    let rows = &fs.score;
    let risk = written_risk(fs, risk);
    let scores = scores_frame(fs, &risk)?;
    crate::memory::log_step("alerts", "scores frame", t0);

    // Alerts, then the per-seller budget: most severe and riskiest first.
    // Each row decided on its own, in parallel (in row order: the order the sort below starts from).
    let mut alerts: Vec<Alert> = (0..rows.len()).into_par_iter().filter_map(|r| decide(fs, r, risk[r], cfg)).collect();
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
    let ship_ids = p.shipments.column("shipment_id")?.str()?.clone();
    let id_of = |ship: u32| ship_ids.get(ship as usize).unwrap_or("");
    // Recovered (below): the previous run's alerts that raise none tonight. One still raised
    // but cut by the per-seller cap has not recovered (it once was written `back_on_track`).
    let alerted: HashSet<&str> = alerts.iter().map(|a| id_of(a.ship)).collect();
    let capped_rows: Vec<Capped> = alerts
        .iter()
        .zip(&keep_mask)
        .filter(|(_, k)| !**k)
        .map(|(a, _)| Capped {
            shipment_id: id_of(a.ship).to_string(),
            seller_id: p.seller_names()[p.seller[a.ship as usize] as usize].clone(),
            kind: a.kind,
            severity: a.severity,
        })
        .collect();
    let capped_frame = capped_frame(capped_rows, prev, fs.night().as_of_day())?;
    let mut kept: Vec<Alert> = alerts.into_iter().zip(keep_mask).filter(|(_, k)| *k).map(|(a, _)| a).collect();
    kept.sort_by_key(|a| a.row);
    crate::memory::log_step("alerts", "alerts decided", t0);
    let seller_name = p.seller_names();
    let suppressed: HashMap<String, u64> =
        suppressed_by_seller.into_iter().map(|(s, n)| (seller_name[s as usize].to_string(), n)).collect();
    for a in &mut kept {
        if let Some(x) = prev.alerts.get(id_of(a.ship)) {
            a.first_alerted_on = x.first_alerted_on;
        }
    }

    let recovered = recovered_frame(prev, &alerted, |id| fs.find_shipment(id).map(|i| recovery(fs, i)))?;
    crate::memory::log_step("alerts", "recovered", t0);
    let lane_key = |a: &Alert| {
        let k = &p.lanes[p.lane[a.ship as usize] as usize];
        (
            k.origin.as_str(),
            k.destination.as_str(),
            k.service.as_str(),
            seller_name[p.seller[a.ship as usize] as usize].as_str(),
        )
    };
    let lane_alerts = lane_alerts_frame(exposure(fs), &alerted_by_lane(kept.iter().map(lane_key)))?;
    crate::memory::log_step("alerts", "lane alerts", t0);
    Ok(AlertOutput { scores, alerts: kept, recovered, lane_alerts, suppressed, capped: capped_frame })
}

/// An alert the per-seller cap cut, as the next night needs to remember it.
#[derive(Debug, Clone, PartialEq)]
pub struct Capped {
    pub shipment_id: String,
    pub seller_id: String,
    pub kind: AlertKind,
    pub severity: Severity,
}

/// `capped_alerts.parquet`: the alerts the per-seller cap cut tonight, sorted by shipment_id,
/// each with the night it was first alerted (carried from `prev`, else tonight, `as_of_day`).
/// The next night reads them with the kept alerts (`output::previous_alerts`): an alert cut
/// one night and kept the next lost its `first_alerted_on`, and one cut and then delivered was
/// never listed as recovered.
pub fn capped_frame(mut rows: Vec<Capped>, prev: &Previous, as_of_day: i32) -> Result<DataFrame> {
    rows.sort_by(|a, b| a.shipment_id.cmp(&b.shipment_id));
    let first: Vec<Option<i32>> = rows
        .iter()
        .map(|c| Some(prev.alerts.get(&c.shipment_id).map_or(as_of_day, |x| x.first_alerted_on)))
        .collect();
    let df = DataFrame::new(
        rows.len(),
        vec![
            Column::new("shipment_id".into(), rows.iter().map(|c| c.shipment_id.as_str()).collect::<Vec<_>>()),
            Column::new("seller_id".into(), rows.iter().map(|c| c.seller_id.as_str()).collect::<Vec<_>>()),
            Column::new("alert".into(), rows.iter().map(|c| c.kind.name()).collect::<Vec<_>>()),
            Column::new("severity".into(), rows.iter().map(|c| c.severity.name()).collect::<Vec<_>>()),
            io::date_column("first_alerted_on", first),
        ],
    )?;
    outputs::check("capped_alerts.parquet", &df, outputs::CAPPED)?;
    Ok(df)
}

/// The risk `scores.parquet` gives each scoring row: the model's, within [0, 1], and 1 where
/// the promise has passed by the cutoff (the parcel is late already).
pub fn written_risk(fs: &FeatureSet, risk: &[f64]) -> Vec<f64> {
    let (p, rows, cutoff) = (&fs.prep, &fs.score, fs.cutoff());
    (0..rows.len())
        .map(|r| if p.promised[rows.ship[r] as usize] <= cutoff { 1.0 } else { risk[r].clamp(0.0, 1.0) })
        .collect()
}

/// What `alerts.parquet` adds to an alerted row of the scores (`row`, its index there).
pub struct AlertColumns<'a> {
    pub row: usize,
    pub kind: AlertKind,
    pub severity: Severity,
    pub reasons: &'a str,
    pub action: &'a str,
    pub first_alerted_on: i32,
}

/// `alerts.parquet`: the alerted rows of `scores`, in the order given, with the alert's columns.
pub fn alerts_frame(scores: &DataFrame, a: &[AlertColumns<'_>]) -> Result<DataFrame> {
    let idx = IdxCa::from_vec("idx".into(), a.iter().map(|a| a.row as IdxSize).collect());
    let mut df = scores.take(&idx)?;
    for name in outputs::ALERT_EXTRA {
        let c = match *name {
            "alert" => Column::new((*name).into(), a.iter().map(|a| a.kind.name()).collect::<Vec<_>>()),
            "severity" => Column::new((*name).into(), a.iter().map(|a| a.severity.name()).collect::<Vec<_>>()),
            "reasons" => Column::new((*name).into(), a.iter().map(|a| a.reasons).collect::<Vec<_>>()),
            "action" => Column::new((*name).into(), a.iter().map(|a| a.action).collect::<Vec<_>>()),
            "first_alerted_on" => io::date_column(name, a.iter().map(|a| Some(a.first_alerted_on)).collect()),
            other => return Err(crate::Error::internal(format!("alerts.parquet: no builder for {other}"))),
        };
        df.with_column(c)?;
    }
    let want: Vec<&str> = outputs::SCORES.iter().chain(outputs::ALERT_EXTRA).copied().collect();
    outputs::check("alerts.parquet", &df, &want)?;
    Ok(df)
}

/// When a parcel is expected, `days` after the cutoff: none when no delivery from its stage has
/// been seen on any level of the lane hierarchy (`days` is NaN). A cast takes NaN to 0, which
/// told the seller "now".
fn expected_at(cutoff: i64, days: f64) -> Option<i64> {
    days.is_finite().then(|| cutoff + (days * MICROS_PER_DAY as f64) as i64)
}

/// `scores.parquet`, column by column in the contract's order (`schema::outputs::SCORES`).
/// Scoring rows follow the prepared shipments, which are sorted by shipment_id.
pub(crate) fn scores_frame(fs: &FeatureSet, risk: &[f64]) -> Result<DataFrame> {
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
    let at = |days: &dyn Fn(&crate::features::snapshot::Extras) -> f64| -> Vec<Option<i64>> {
        rows.extras.iter().map(|e| expected_at(cutoff, days(e))).collect()
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
            "expected_delivery_at" => io::ts_column(name, at(&|e| e.expected_remaining_p50)),
            "expected_delivery_p90_at" => io::ts_column(name, at(&|e| e.expected_remaining_p90)),
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
                    .zip(&rows.extras)
                    .map(|(&i, e)| fs.disrupted_ahead(p.lane[i as usize] as usize, e.stage).is_some())
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

/// Where a shipment alerted last time stands tonight, when it is no longer alerted.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    pub reason: String,
    pub status: String,
    pub delivered: Option<i64>,
}
crate::codec_struct!(Recovery { reason, status, delivered });

/// Shipment `i`'s `Recovery` (it is in the input).
pub fn recovery(fs: &FeatureSet, i: usize) -> Recovery {
    let (st, none) = (&fs.states, crate::features::timeline::NONE);
    // The first ending decides, as it decides the label: a parcel lost, then delivered back to
    // its sender, was not delivered to the buyer.
    let (d, r) = (st.delivered(i), st.returned_or_lost(i));
    let delivered_first = d != none && (r == none || d <= r);
    let (reason, status, delivered) = match st.open(i) {
        Some(open) => ("back_on_track", schema::status_name(open.furthest), None),
        None if delivered_first => ("delivered", schema::status_name(schema::DELIVERED), Some(d)),
        None if st.lost(i) => ("returned_or_lost", schema::status_name(schema::LOST), None),
        None => ("returned_or_lost", schema::status_name(schema::RETURNED), None),
    };
    Recovery { reason: reason.into(), status: status.into(), delivered }
}

/// `recovered.parquet`: shipments alerted last time that are not in `alerted` tonight, with
/// where each stands (`status_of`: its `Recovery`, none when it is no longer in the input).
fn recovered_frame(
    prev: &Previous,
    alerted: &HashSet<&str>,
    status_of: impl Fn(&str) -> Option<Recovery>,
) -> Result<DataFrame> {
    let mut ids: Vec<&String> = prev.alerts.keys().filter(|id| !alerted.contains(id.as_str())).collect();
    ids.sort();
    let (mut sid, mut seller, mut prev_alert, mut prev_sev, mut first, mut why, mut status, mut delivered) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for id in ids {
        let PreviousAlert { seller_id: s, alert: a, severity: sev, first_alerted_on: f } = &prev.alerts[id];
        let r = status_of(id).unwrap_or_else(|| Recovery {
            reason: "no_longer_in_input".into(),
            status: "UNKNOWN".into(),
            delivered: None,
        });
        sid.push(id.clone());
        seller.push(s.clone());
        prev_alert.push(a.clone());
        prev_sev.push(sev.clone());
        first.push(Some(*f));
        why.push(r.reason);
        status.push(r.status);
        delivered.push(r.delivered);
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

/// A seller's parcels in flight on a lane flagged disrupted (a row of `lane_alerts.parquet`
/// before its alerted count).
#[derive(Debug, Clone, PartialEq)]
pub struct Exposure {
    pub origin: String,
    pub destination: String,
    pub service: String,
    pub stage: String,
    /// As-of day the disruption started, when known.
    pub since: Option<i32>,
    pub ratio: f64,
    pub seller: String,
    pub in_flight: i64,
}
crate::codec_struct!(Exposure { origin, destination, service, stage, since, ratio, seller, in_flight });

/// For each lane flagged disrupted, each seller's parcels in flight on it.
pub fn exposure(fs: &FeatureSet) -> Vec<Exposure> {
    let p = &fs.prep;
    let day = fs.night().cutoff_day();
    // (lane, seller) → in flight
    let mut counts: std::collections::BTreeMap<(u32, u32), i64> = Default::default();
    for &i in &fs.score.ship {
        let lane = p.lane[i as usize];
        if fs.disrupted_lanes()[lane as usize].is_some() {
            *counts.entry((lane, p.seller[i as usize])).or_insert(0) += 1;
        }
    }
    let seller_name = p.seller_names();
    counts
        .into_iter()
        .map(|((lane, seller), in_flight)| {
            let l = lane as usize;
            let key = &p.lanes[l];
            let s = fs.disrupted_lanes()[l].expect("filtered above");
            Exposure {
                origin: key.origin.clone(),
                destination: key.destination.clone(),
                service: key.service.clone(),
                stage: STAGES[s].key.to_string(),
                since: fs.series.disrupted_since(l, s, day).map(crate::calendar::as_of_day_of_cutoff_day),
                ratio: fs.series.at(l, s, day).ratio,
                seller: seller_name[seller as usize].clone(),
                in_flight,
            }
        })
        .collect()
}

/// Alerts per (origin, destination, service, seller) of the alerts given.
pub fn alerted_by_lane<'a>(
    alerts: impl Iterator<Item = (&'a str, &'a str, &'a str, &'a str)>,
) -> HashMap<(&'a str, &'a str, &'a str, &'a str), i64> {
    let mut m = HashMap::new();
    for k in alerts {
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

/// `lane_alerts.parquet`: the exposure rows with their alerts (`alerted`, by lane and seller),
/// sorted by lane and seller.
fn lane_alerts_frame(rows: Vec<Exposure>, alerted: &HashMap<(&str, &str, &str, &str), i64>) -> Result<DataFrame> {
    let n = rows.len();
    let al: Vec<i64> = rows
        .iter()
        .map(|r| {
            let k = (r.origin.as_str(), r.destination.as_str(), r.service.as_str(), r.seller.as_str());
            alerted.get(&k).copied().unwrap_or(0)
        })
        .collect();
    let col = |f: fn(&Exposure) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
    let mut df = DataFrame::new(
        n,
        vec![
            Column::new("origin".into(), col(|r| &r.origin)),
            Column::new("destination".into(), col(|r| &r.destination)),
            Column::new("service".into(), col(|r| &r.service)),
            Column::new("disrupted_stage".into(), col(|r| &r.stage)),
            io::date_column("disrupted_since", rows.iter().map(|r| r.since).collect()),
            Column::new("disruption_ratio".into(), rows.iter().map(|r| r.ratio).collect::<Vec<_>>()),
            Column::new("seller_id".into(), col(|r| &r.seller)),
            Column::new("in_flight".into(), rows.iter().map(|r| r.in_flight).collect::<Vec<_>>()),
            Column::new("alerted".into(), al),
        ],
    )?;
    df = df.sort(["origin", "destination", "service", "seller_id"], SortMultipleOptions::default())?;
    outputs::check("lane_alerts.parquet", &df, outputs::LANE_ALERTS)?;
    Ok(df)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parcel whose time left is unknown (no delivery from its stage seen on any level) has
    /// no expected delivery (null in `scores.parquet`), not the cutoff.
    #[test]
    fn an_unknown_time_left_is_no_expected_delivery() {
        let c = 1_790_000_000_000_000;
        assert_eq!(expected_at(c, f64::NAN), None);
        assert_eq!(expected_at(c, 1.5), Some(c + 3 * MICROS_PER_DAY / 2));
        assert_eq!(expected_at(c, 0.0), Some(c));
    }
}
