//! Scoring lanewatch against later outcomes: alert precision, recall and lead time from the
//! input's own later events, and lane-disruption detection against `disruptions.parquet`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use polars::prelude::*;
use serde::Serialize;

use crate::calendar;
use crate::error::{Error, Result};
use crate::features::FeatureSet;
use crate::features::prepare::LaneKey;
use crate::schema::{MICROS_PER_DAY, STAGES};
use crate::validate::CleanInput;

/// Final outcome of a shipment from all the data there is (no cutoff).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Final {
    pub promised: i64,
    pub delivered: Option<i64>,
    /// Late is decided: delivered (on time or not), or the promise passed before the data ends.
    pub decided: bool,
    pub late: bool,
}

/// Outcomes of every shipment from the full input, keyed by shipment_id. The data's end is its
/// last event; a shipment still undelivered with its promise after that end is undecided.
pub fn final_outcomes(clean: &CleanInput) -> Result<HashMap<String, Final>> {
    let ev = &clean.events;
    let end = ev.time.iter().copied().max().unwrap_or(i64::MIN);
    let ids = clean.shipments.column("shipment_id")?.str()?;
    let prom = clean.shipments.column("promised_at")?.as_materialized_series().to_physical_repr().into_owned();
    let prom = prom.i64()?;
    let mut out = HashMap::with_capacity(clean.shipments.height());
    for (i, (id, p)) in ids.iter().zip(prom.iter()).enumerate() {
        let (Some(id), Some(p)) = (id, p) else { continue };
        let (t, c) = ev.of(i);
        let d = t.iter().zip(c).find(|(_, c)| **c == crate::schema::DELIVERED).map(|(t, _)| *t);
        let decided = d.is_some() || p < end;
        let late = d.is_none_or(|d| d > p);
        out.insert(id.to_string(), Final { promised: p, delivered: d, decided, late });
    }
    Ok(out)
}

/// An injected disruption on one lane, as listed in `disruptions.parquet`.
#[derive(Debug, Clone, Serialize)]
pub struct TrueDisruption {
    pub id: String,
    pub lane: String,
    #[serde(skip)]
    pub key: LaneKey,
    pub stage: String,
    pub start: i64,
    pub end: i64,
}

/// Reads `disruptions.parquet` from the input folder, if there is one.
pub fn read_disruptions(input: &Path) -> Result<Option<Vec<TrueDisruption>>> {
    let path = input.join("disruptions.parquet");
    if !path.is_file() {
        return Ok(None);
    }
    let file = std::fs::File::open(&path).map_err(|e| Error::bad_file(path.display().to_string(), e.to_string()))?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|e| Error::bad_file(path.display().to_string(), crate::error::one_line(e.to_string())))?;
    let s = |c: &str| -> Result<StringChunked> {
        Ok(df.column(c).map_err(|_| Error::data("disruptions.parquet", c, "missing column"))?.str()?.clone())
    };
    let t = |c: &str| -> Result<Int64Chunked> {
        let col = df.column(c).map_err(|_| Error::data("disruptions.parquet", c, "missing column"))?;
        Ok(col.as_materialized_series().to_physical_repr().cast(&DataType::Int64)?.i64()?.clone())
    };
    let (id, o, d, sv, st) = (s("disruption_id")?, s("origin")?, s("destination")?, s("service")?, s("stage")?);
    let (start, end) = (t("start")?, t("end")?);
    let mut out = Vec::new();
    for k in 0..df.height() {
        let key = LaneKey {
            origin: o.get(k).unwrap_or("").into(),
            destination: d.get(k).unwrap_or("").into(),
            service: sv.get(k).unwrap_or("").into(),
        };
        out.push(TrueDisruption {
            id: id.get(k).unwrap_or("").into(),
            lane: key.label(),
            key,
            stage: st.get(k).unwrap_or("").into(),
            start: start.get(k).unwrap_or(0),
            end: end.get(k).unwrap_or(0),
        });
    }
    Ok(Some(out))
}

#[derive(Debug, Clone, Serialize)]
pub struct LaneDetection {
    pub disruption_id: String,
    pub lane: String,
    pub stage: String,
    pub start: String,
    pub end: String,
    pub detected: bool,
    pub first_flagged_night: Option<String>,
    pub delay_days: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DetectionReport {
    pub nights: u64,
    /// Disrupted lane-stages flagged on at least one night from the start to `grace_days` after the end.
    pub recall: f64,
    pub detected: u64,
    pub disrupted_lanes: u64,
    /// Disruptions (by id) with at least one lane detected.
    pub disruptions_detected: u64,
    pub disruptions: u64,
    pub median_delay_days: Option<f64>,
    /// Lane-nights flagged with no true disruption of that lane and stage around them.
    pub false_flag_lane_nights: u64,
    pub flagged_lane_nights: u64,
    pub lane_nights: u64,
    pub false_flag_lanes: Vec<String>,
    pub lanes: Vec<LaneDetection>,
}

/// Flags seen by each night in `nights` (day numbers of cutoffs), from one feature set whose
/// series covers them; the series is point-in-time per night.
pub fn flags_from_series(fs: &FeatureSet, nights: &[i64]) -> Vec<(i64, LaneKey, usize)> {
    let mut out = Vec::new();
    for &day in nights {
        for (l, key) in fs.prep.lanes.iter().enumerate() {
            for s in 0..STAGES.len() {
                if fs.series.at(l, s, day).disrupted {
                    out.push((day, key.clone(), s));
                }
            }
        }
    }
    out
}

/// Compares flags (cutoff day, lane, stage) with the truth. A flag counts as true while its
/// lane-stage is disrupted or up to `grace_days` after the disruption's end (parcels caught in
/// it are still slow).
pub fn detection(
    flags: &[(i64, LaneKey, usize)],
    nights: u64,
    lanes: u64,
    truth: &[TrueDisruption],
    grace_days: i64,
) -> DetectionReport {
    let grace = grace_days * MICROS_PER_DAY;
    let covers = |t: &TrueDisruption, day: i64| {
        let c = day * MICROS_PER_DAY;
        c > t.start && c <= t.end + grace
    };
    let mut lanes_out = Vec::new();
    let mut delays = Vec::new();
    let mut by_id: BTreeMap<&str, bool> = BTreeMap::new();
    for t in truth {
        let first = flags
            .iter()
            .filter(|(day, key, s)| *key == t.key && STAGES[*s].key == t.stage && covers(t, *day))
            .map(|f| f.0)
            .min();
        let delay = first.map(|d| crate::schema::days(d * MICROS_PER_DAY - t.start));
        if let Some(d) = delay {
            delays.push(d);
        }
        *by_id.entry(t.id.as_str()).or_insert(false) |= first.is_some();
        lanes_out.push(LaneDetection {
            disruption_id: t.id.clone(),
            lane: t.lane.clone(),
            stage: t.stage.clone(),
            start: calendar::date_of_micros(t.start).to_string(),
            end: calendar::date_of_micros(t.end).to_string(),
            detected: first.is_some(),
            first_flagged_night: first.map(|d| calendar::date_of_day(d - 1).to_string()),
            delay_days: delay,
        });
    }
    let mut flagged_nights: BTreeMap<(i64, &LaneKey), bool> = BTreeMap::new();
    for (day, key, s) in flags {
        let explained = truth.iter().any(|t| t.key == *key && STAGES[*s].key == t.stage && covers(t, *day));
        let e = flagged_nights.entry((*day, key)).or_insert(false);
        *e |= explained;
    }
    let mut false_lanes: Vec<String> =
        flagged_nights.iter().filter(|(_, ok)| !**ok).map(|((_, k), _)| k.label()).collect();
    false_lanes.sort();
    false_lanes.dedup();
    delays.sort_by(f64::total_cmp);
    let detected = lanes_out.iter().filter(|l| l.detected).count() as u64;
    DetectionReport {
        nights,
        recall: if truth.is_empty() { f64::NAN } else { detected as f64 / truth.len() as f64 },
        detected,
        disrupted_lanes: truth.len() as u64,
        disruptions_detected: by_id.values().filter(|v| **v).count() as u64,
        disruptions: by_id.len() as u64,
        median_delay_days: (!delays.is_empty()).then(|| delays[delays.len() / 2]),
        false_flag_lane_nights: flagged_nights.values().filter(|ok| !**ok).count() as u64,
        flagged_lane_nights: flagged_nights.len() as u64,
        lane_nights: lanes,
        false_flag_lanes: false_lanes,
        lanes: lanes_out,
    }
}

/// Discrimination at a fixed point of the process: every shipment resolved in the validation
/// window (resolved at or after `from`) is scored once, at created + `fraction` × its promise
/// horizon, if it was still in flight then. Returns (ROC-AUC, rows, late rows).
pub fn auc_at_fraction(
    fs: &FeatureSet,
    model: &crate::model::SavedModel,
    from: i64,
    fraction: f64,
) -> (f64, usize, usize) {
    let p = &fs.prep;
    let mut pairs = Vec::new();
    let mut labels = Vec::new();
    for i in 0..p.len() {
        let o = &fs.outcomes[i];
        if !o.resolved || o.resolved_at < from {
            continue;
        }
        let t = p.created[i] + ((p.promised[i] - p.created[i]) as f64 * fraction) as i64;
        let end = fs.states[i].terminal_at();
        if t >= fs.cutoff || (end != crate::features::timeline::NONE && end <= t) {
            continue;
        }
        pairs.push((i as u32, t));
        labels.push(o.late);
    }
    let rows = fs.rows_at(&pairs);
    let risk = model.predict(&rows);
    let late = labels.iter().filter(|l| **l).count();
    (crate::model::metrics::roc_auc(&risk, &labels), labels.len(), late)
}
