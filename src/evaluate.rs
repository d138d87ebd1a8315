//! Scoring lanewatch against later outcomes: alert precision, recall and lead time from the
//! input's own later events (`Backtest`, fed one replayed night at a time), and lane-disruption
//! detection against `disruptions.parquet`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::Serialize;

use crate::alerts::{AlertKind, AlertOutput};
use crate::calendar::{self, Night};
use crate::error::{Error, Result};
use crate::features::FeatureSet;
use crate::features::prepare::LaneKey;
use crate::model::SavedModel;
use crate::schema::{MICROS_PER_DAY, STAGES};
use crate::validate::CleanInput;

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
    /// The model and the baselines scored point-in-time over every replayed night, pooled.
    pub pooled: Pooled,
    /// Each night's advice against the outcomes of the parcels shipped after it.
    pub advice: AdviceScore,
    pub out: PathBuf,
}

/// The advice before shipping, replayed: on each night, every parcel created in the following
/// `every` days on an origin × destination the night advised on, against its final outcome
/// (whether it met its own promise). Undecided outcomes are left out. The figures come from the
/// outcomes in the data, never from the advice's own estimates.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AdviceScore {
    /// Parcels judged (shipped after a night, advice available, outcome decided).
    pub shipments: u64,
    /// Sent with the advised service, and of them delivered by the promise.
    pub followed: u64,
    pub followed_on_time: u64,
    pub followed_on_time_rate: Option<f64>,
    pub not_followed: u64,
    pub not_followed_on_time: u64,
    pub not_followed_on_time_rate: Option<f64>,
    /// The advice's probability of meeting the promise (the row of the parcel's own service
    /// and weight band) against whether it did.
    pub p_meet_calibration: Vec<crate::model::metrics::Bin>,
    #[serde(with = "crate::model::nan")]
    pub p_meet_brier: f64,
    /// On the last replayed night: lanes with promise advice, those whose advised promise
    /// differs from today's, and those keeping today's promise less than the target.
    pub promise_lanes: u64,
    pub promise_lanes_changed: u64,
    pub promise_lanes_below_target: u64,
}

/// Accumulates `AdviceScore`.
#[derive(Default)]
pub struct AdviceBacktest {
    p: Vec<f64>,
    met: Vec<bool>,
    followed: Vec<bool>,
    last_promise: (u64, u64, u64),
}

impl AdviceBacktest {
    /// Adds one night: its advice, and the parcels of `clean` created in `[cutoff, cutoff +
    /// every days)`.
    pub fn add(
        &mut self,
        night: Night,
        every: u32,
        advice: &crate::advice::Advice,
        edges: &[f64],
        clean: &CleanInput,
        finals: &HashMap<String, Final>,
    ) -> Result<()> {
        let sa = advice.service();
        let col = |c: &str| -> Result<StringChunked> { Ok(sa.column(c)?.str()?.clone()) };
        let (o, d, s, band, adv) =
            (col("origin")?, col("destination")?, col("service")?, col("weight_band")?, col("advised_service")?);
        let pm = sa.column("p_meet_promise")?.f64()?.clone();
        // (origin, destination, band) → advised service; (…, service) → p_meet.
        let mut advised: HashMap<(&str, &str, &str), &str> = HashMap::new();
        let mut p_meet: HashMap<(&str, &str, &str, &str), f64> = HashMap::new();
        for k in 0..sa.height() {
            let key = (o.get(k).unwrap_or(""), d.get(k).unwrap_or(""), band.get(k).unwrap_or(""));
            if let Some(a) = adv.get(k) {
                advised.insert(key, a);
            }
            p_meet.insert((key.0, key.1, key.2, s.get(k).unwrap_or("")), pm.get(k).unwrap_or(f64::NAN));
        }
        let labels = crate::advice::band_labels(edges);
        let sh = &clean.shipments;
        let ids = sh.column("shipment_id")?.str()?;
        let (so, sd, ss) =
            (sh.column("origin")?.str()?, sh.column("destination")?.str()?, sh.column("service")?.str()?);
        let created = sh.column("created_at")?.as_materialized_series().to_physical_repr().into_owned();
        let created = created.i64()?;
        let weight = sh.column("weight_g")?.f64()?;
        let (from, to) = (night.cutoff(), night.cutoff() + every as i64 * crate::schema::MICROS_PER_DAY);
        for i in 0..sh.height() {
            let Some(c) = created.get(i) else { continue };
            if c < from || c >= to {
                continue;
            }
            let Some(f) = ids.get(i).and_then(|id| finals.get(id)) else { continue };
            if !f.decided {
                continue;
            }
            let (oo, dd, svc) = (so.get(i).unwrap_or(""), sd.get(i).unwrap_or(""), ss.get(i).unwrap_or(""));
            let b = crate::advice::band_of(weight.get(i).unwrap_or(f64::NAN), edges).map(|b| labels[b].as_str());
            // The band's advice where the night gave one, else the all-weights advice.
            let band = b.filter(|b| advised.contains_key(&(oo, dd, *b))).unwrap_or("all");
            let Some(a) = advised.get(&(oo, dd, band)) else { continue };
            self.followed.push(*a == svc);
            self.met.push(!f.late);
            self.p.push(p_meet.get(&(oo, dd, band, svc)).copied().unwrap_or(f64::NAN));
        }
        let pa = advice.promise();
        let changed = pa
            .column("change_business_days")?
            .f64()?
            .iter()
            .filter(|v| v.is_some_and(|v| v.is_finite() && v != 0.0))
            .count();
        let below = pa.column("below_target")?.bool()?.sum().unwrap_or(0);
        self.last_promise = (pa.height() as u64, changed as u64, below as u64);
        Ok(())
    }

    pub fn finish(&self) -> AdviceScore {
        let count = |want: bool| {
            let n = self.followed.iter().filter(|f| **f == want).count() as u64;
            let ok = self.followed.iter().zip(&self.met).filter(|(f, m)| **f == want && **m).count() as u64;
            (n, ok, (n > 0).then(|| ok as f64 / n as f64))
        };
        let (fo, fo_ok, fo_rate) = count(true);
        let (nf, nf_ok, nf_rate) = count(false);
        let (p, y): (Vec<f64>, Vec<bool>) =
            self.p.iter().zip(&self.met).filter(|(p, _)| p.is_finite()).map(|(p, m)| (*p, *m)).unzip();
        AdviceScore {
            shipments: self.met.len() as u64,
            followed: fo,
            followed_on_time: fo_ok,
            followed_on_time_rate: fo_rate,
            not_followed: nf,
            not_followed_on_time: nf_ok,
            not_followed_on_time_rate: nf_rate,
            p_meet_calibration: crate::model::metrics::reliability(&p, &y, 10),
            p_meet_brier: crate::model::metrics::brier(&p, &y),
            promise_lanes: self.last_promise.0,
            promise_lanes_changed: self.last_promise.1,
            promise_lanes_below_target: self.last_promise.2,
        }
    }
}

/// A point-in-time evaluation pooled over nights: on each night, the risk of every in-flight
/// shipment still before its promise (as that night's model and baselines gave it), against
/// its final outcome; undecided outcomes are left out.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Pooled {
    pub nights: u64,
    /// Nights whose model fell back to the lane rule.
    pub fallback_nights: u64,
    pub rows: u64,
    pub late: u64,
    /// "model" (each night's chosen model), then each baseline.
    pub scores: BTreeMap<String, PooledScore>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PooledScore {
    #[serde(with = "crate::model::nan")]
    pub roc_auc: f64,
    #[serde(with = "crate::model::nan")]
    pub pr_auc: f64,
    #[serde(with = "crate::model::nan")]
    pub brier: f64,
    pub calibration: Vec<crate::model::metrics::Bin>,
}

/// One replayed night, as `backtest.parquet` records it.
#[derive(Debug, Clone)]
pub struct NightRow {
    pub night: Night,
    pub scored: u64,
    pub alerts: BTreeMap<AlertKind, u64>,
    pub disrupted_lanes: u64,
    pub model: String,
    pub valid_pr_auc: f64,
    pub seconds: f64,
}

fn quantile(v: &mut [f64], q: f64) -> Option<f64> {
    (!v.is_empty()).then(|| crate::features::lanes::quantile(v, q))
}

/// Replayed nights, accumulated: each night's alerts and in-flight population, scored at the end
/// against the final outcomes.
#[derive(Default)]
pub struct Backtest {
    pub nights: Vec<NightRow>,
    /// shipment_id → first night (cutoff µs) per alert kind
    first_alert: HashMap<String, BTreeMap<AlertKind, i64>>,
    /// shipments in flight before their promise on some night
    population: HashSet<String>,
    per_seller_night: Vec<u64>,
    active_seller_nights: u64,
    flags: Vec<(i64, LaneKey, usize)>,
    lane_nights: u64,
    /// Pooled rows: each model's risk, and the final outcome.
    pooled_risk: BTreeMap<String, Vec<f64>>,
    pooled_late: Vec<bool>,
    fallback_nights: u64,
}

impl Backtest {
    /// Adds one night's features, model and alerts (`risk`: the model's risk per scoring row).
    pub fn add(
        &mut self,
        fs: &FeatureSet,
        model: &SavedModel,
        risk: &[f64],
        alerts: &AlertOutput,
        finals: &HashMap<String, Final>,
        seconds: f64,
    ) -> Result<()> {
        let cutoff = fs.cutoff();
        let p = &fs.prep;
        let ids = p.shipments.column("shipment_id")?.str()?;
        // The pooled evaluation: in flight, before the promise, outcome decided.
        let baselines = model.predict_baselines(&fs.score);
        for (r, &i) in fs.score.ship.iter().enumerate() {
            let i = i as usize;
            if p.promised[i] <= cutoff {
                continue;
            }
            let Some(f) = finals.get(ids.get(i).unwrap_or("")).filter(|f| f.decided) else { continue };
            self.pooled_risk.entry("model".into()).or_default().push(risk[r]);
            // A baseline the night could not fit (too little data) scores the base rate.
            for name in ["base_rate", "lane_rule", "simple_logistic"] {
                let b = baselines.get(name).or_else(|| baselines.get("base_rate"));
                self.pooled_risk.entry(name.into()).or_default().push(b.map(|b| b[r]).unwrap_or(f64::NAN));
            }
            self.pooled_late.push(f.late);
        }
        self.fallback_nights += model.metrics.fallback.is_some() as u64;
        let mut active = HashSet::new();
        for &i in &fs.score.ship {
            active.insert(p.seller[i as usize]);
            if p.promised[i as usize] > cutoff {
                self.population.insert(ids.get(i as usize).unwrap_or("").to_string());
            }
        }
        self.active_seller_nights += active.len() as u64;
        let mut counts: BTreeMap<AlertKind, u64> = BTreeMap::new();
        let mut by_seller: HashMap<u32, u64> = HashMap::new();
        for a in &alerts.alerts {
            *counts.entry(a.kind).or_insert(0) += 1;
            *by_seller.entry(p.seller[a.ship as usize]).or_insert(0) += 1;
            self.first_alert
                .entry(ids.get(a.ship as usize).unwrap_or("").to_string())
                .or_default()
                .entry(a.kind)
                .or_insert(cutoff);
        }
        self.per_seller_night.extend(by_seller.values().copied());
        let day = fs.night().cutoff_day();
        let disrupted = fs.disrupted_lanes().iter().filter(|d| d.is_some()).count() as u64;
        self.flags.extend(flags_from_series(fs, &[day]));
        self.lane_nights += p.lanes.len() as u64;
        self.nights.push(NightRow {
            night: fs.night(),
            scored: fs.score.len() as u64,
            alerts: counts,
            disrupted_lanes: disrupted,
            model: model.kind.clone(),
            valid_pr_auc: model.metrics.model.as_ref().map(|e| e.pr_auc).unwrap_or(f64::NAN),
            seconds,
        });
        Ok(())
    }

    /// Scores the accumulated nights against `finals` (and `truth`, when the input has it).
    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        &self,
        advice: AdviceScore,
        from: Night,
        to: Night,
        every: u32,
        finals: &HashMap<String, Final>,
        truth: Option<&[TrueDisruption]>,
        out: PathBuf,
    ) -> BacktestSummary {
        let decided: Vec<(&String, &Final)> = self
            .population
            .iter()
            .filter_map(|id| finals.get(id).map(|f| (id, f)))
            .filter(|(_, f)| f.decided)
            .collect();
        let late_total = decided.iter().filter(|(_, f)| f.late).count() as u64;
        let score_kind = |pick: &dyn Fn(&BTreeMap<AlertKind, i64>) -> Option<i64>| -> KindScore {
            let (mut alerted, mut alerted_decided, mut tp) = (0u64, 0u64, 0u64);
            let mut leads = Vec::new();
            for (id, kinds) in &self.first_alert {
                let Some(at) = pick(kinds) else { continue };
                alerted += 1;
                let Some(f) = finals.get(id).filter(|f| f.decided) else { continue };
                alerted_decided += 1;
                if f.late {
                    tp += 1;
                    leads.push(crate::schema::days(f.promised - at));
                }
            }
            let recall_hits = decided
                .iter()
                .filter(|(id, f)| f.late && self.first_alert.get(*id).and_then(|k| pick(k)).is_some())
                .count() as u64;
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
        for k in [AlertKind::AtRisk, AlertKind::Stalled, AlertKind::Late] {
            kinds.insert(k.name().to_string(), score_kind(&|m: &BTreeMap<AlertKind, i64>| m.get(&k).copied()));
        }
        let any_alert = score_kind(&|m: &BTreeMap<AlertKind, i64>| m.values().copied().min());
        let undelivered: Vec<&String> =
            decided.iter().filter(|(_, f)| f.delivered.is_none()).map(|(id, _)| *id).collect();
        let stalled_recall = (!undelivered.is_empty()).then(|| {
            undelivered
                .iter()
                .filter(|id| self.first_alert.get(**id).is_some_and(|k| k.contains_key(&AlertKind::Stalled)))
                .count() as f64
                / undelivered.len() as f64
        });
        let mut psn: Vec<f64> = self.per_seller_night.iter().map(|&v| v as f64).collect();
        let total_alerts: u64 = self.per_seller_night.iter().sum();
        let fatigue = Fatigue {
            mean_per_alerted_seller_night: if psn.is_empty() { 0.0 } else { total_alerts as f64 / psn.len() as f64 },
            p95_per_alerted_seller_night: quantile(&mut psn, 0.95).unwrap_or(0.0),
            max_per_seller_night: self.per_seller_night.iter().copied().max().unwrap_or(0),
            mean_per_active_seller_night: if self.active_seller_nights == 0 {
                0.0
            } else {
                total_alerts as f64 / self.active_seller_nights as f64
            },
        };
        let detection = truth.map(|t| detection(&self.flags, self.nights.len() as u64, self.lane_nights, t, 7));
        let y = &self.pooled_late;
        let pooled = Pooled {
            nights: self.nights.len() as u64,
            fallback_nights: self.fallback_nights,
            rows: y.len() as u64,
            late: y.iter().filter(|v| **v).count() as u64,
            scores: self
                .pooled_risk
                .iter()
                .filter(|(_, r)| r.len() == y.len())
                .map(|(name, r)| {
                    let s = crate::model::metrics::evaluate(r, y, 0.05, 0.5);
                    (
                        name.clone(),
                        PooledScore {
                            roc_auc: s.roc_auc,
                            pr_auc: s.pr_auc,
                            brier: s.brier,
                            calibration: crate::model::metrics::reliability(r, y, 10),
                        },
                    )
                })
                .collect(),
        };
        BacktestSummary {
            from: from.to_string(),
            to: to.to_string(),
            every_days: every,
            nights: self.nights.len() as u64,
            population: decided.len() as u64,
            population_late: late_total,
            kinds,
            any_alert,
            stalled_recall_of_undelivered: stalled_recall,
            fatigue,
            disruption_detection: detection,
            pooled,
            advice,
            out,
        }
    }
}

/// Final outcome of a shipment from all the data there is (no cutoff).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Final {
    pub promised: i64,
    pub delivered: Option<i64>,
    /// Late is decided: ended (delivered, returned or lost; the first end settles it), or the
    /// promise passed before the data ends.
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
        let first = |codes: &[u8]| t.iter().zip(c).find(|(_, c)| codes.contains(c)).map(|(t, _)| *t);
        use crate::schema::{DELIVERED, LOST, RETURNED};
        let d = first(&[DELIVERED]);
        // The first end settles the outcome, as the labels are settled (`timeline::outcome`): a
        // parcel lost or returned before a delivery is late, and decided when it ended.
        let end_of_life = first(&[DELIVERED, RETURNED, LOST]);
        let decided = end_of_life.is_some() || p < end;
        let late = !(d.is_some_and(|d| d <= p) && d == end_of_life);
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
    let column = |c: &str| df.column(c).map_err(|_| Error::data("disruptions.parquet", c, "missing column"));
    // A column of another type is bad data in the input (65), not an internal error.
    let s = |c: &str| -> Result<StringChunked> {
        let col = column(c)?;
        match col.dtype() {
            DataType::String => Ok(col.str()?.clone()),
            other => Err(Error::data("disruptions.parquet", c, format!("expected text, found {other}"))),
        }
    };
    // Times in microseconds whatever the unit stored: pandas writes nanoseconds, and their raw
    // values read as microseconds put every disruption centuries away.
    let t = |c: &str| -> Result<Int64Chunked> {
        let col = column(c)?;
        let raw = col.as_materialized_series().to_physical_repr().cast(&DataType::Int64)?;
        let raw = raw.i64()?;
        let scaled = match col.dtype() {
            DataType::Datetime(TimeUnit::Microseconds, _) => raw.clone(),
            DataType::Datetime(TimeUnit::Nanoseconds, _) => raw.apply_values(|v| v.div_euclid(1_000)),
            DataType::Datetime(TimeUnit::Milliseconds, _) => raw.apply_values(|v| v.saturating_mul(1_000)),
            DataType::Date => raw.apply_values(|v| v.saturating_mul(MICROS_PER_DAY)),
            other => return Err(Error::data("disruptions.parquet", c, format!("expected a timestamp, found {other}"))),
        };
        Ok(scaled)
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
            first_flagged_night: first.map(|d| calendar::as_of_of_cutoff_day(d).to_string()),
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
    let detected = lanes_out.iter().filter(|l| l.detected).count() as u64;
    DetectionReport {
        nights,
        recall: if truth.is_empty() { f64::NAN } else { detected as f64 / truth.len() as f64 },
        detected,
        disrupted_lanes: truth.len() as u64,
        disruptions_detected: by_id.values().filter(|v| **v).count() as u64,
        disruptions: by_id.len() as u64,
        // Interpolated, as every other median of the backtest (the upper middle value was read).
        median_delay_days: quantile(&mut delays, 0.5),
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
pub fn auc_at_fraction(fs: &FeatureSet, model: &SavedModel, from: i64, fraction: f64) -> (f64, usize, usize) {
    let p = &fs.prep;
    let mut pairs = Vec::new();
    let mut labels = Vec::new();
    for i in 0..p.len() {
        let o = &fs.outcomes[i];
        if !o.resolved || o.resolved_at < from {
            continue;
        }
        let t = p.created[i] + ((p.promised[i] - p.created[i]) as f64 * fraction) as i64;
        let end = fs.states.terminal_at(i);
        if t >= fs.cutoff() || (end != crate::features::timeline::NONE && end <= t) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a truth file written by pandas (nanosecond times) read its times as
    /// microseconds, and a column of another type was an internal error (exit 70).
    #[test]
    fn disruptions_are_read_whatever_the_time_unit() {
        let dir = tempfile::tempdir().unwrap();
        let start_us = 1_780_000_000_000_000i64;
        let text = |name: &str, v: &str| Column::new(name.into(), [v]);
        let write = |unit: TimeUnit, stage: Column| {
            let time = |name: &str, us: i64| {
                let v = match unit {
                    TimeUnit::Nanoseconds => us * 1_000,
                    TimeUnit::Microseconds => us,
                    TimeUnit::Milliseconds => us / 1_000,
                };
                Column::new(name.into(), [v])
                    .cast(&DataType::Datetime(unit, Some(polars::prelude::TimeZone::UTC)))
                    .unwrap()
            };
            let mut df = DataFrame::new(
                1,
                vec![
                    text("disruption_id", "d1"),
                    text("origin", "CN-GD"),
                    text("destination", "FR"),
                    text("service", "economy"),
                    stage,
                    time("start", start_us),
                    time("end", start_us + MICROS_PER_DAY),
                ],
            )
            .unwrap();
            crate::io::write_parquet(&mut df, &dir.path().join("disruptions.parquet")).unwrap();
        };
        for unit in [TimeUnit::Nanoseconds, TimeUnit::Milliseconds, TimeUnit::Microseconds] {
            write(unit, text("stage", "customs"));
            let t = read_disruptions(dir.path()).unwrap().unwrap();
            assert_eq!((t[0].start, t[0].end, t[0].stage.as_str()), (start_us, start_us + MICROS_PER_DAY, "customs"), "{unit:?}");
        }
        let mut df = DataFrame::new(1, vec![Column::new("disruption_id".into(), [7i64])]).unwrap();
        crate::io::write_parquet(&mut df, &dir.path().join("disruptions.parquet")).unwrap();
        assert_eq!(read_disruptions(dir.path()).unwrap_err().exit_code(), 65);
    }

    #[test]
    fn the_median_detection_delay_is_interpolated() {
        let key = LaneKey { origin: "CN".into(), destination: "FR".into(), service: "economy".into() };
        let truth: Vec<TrueDisruption> = (0..2)
            .map(|k| TrueDisruption {
                id: format!("d{k}"),
                lane: key.label(),
                key: key.clone(),
                stage: STAGES[2].key.into(),
                start: k * 100 * MICROS_PER_DAY,
                end: (k * 100 + 30) * MICROS_PER_DAY,
            })
            .collect();
        // Flagged 2 and 6 days after each start.
        let flags = [(2, key.clone(), 2), (106, key.clone(), 2)];
        let r = detection(&flags, 10, 1, &truth, 0);
        assert_eq!(r.median_delay_days, Some(4.0));
    }
}
