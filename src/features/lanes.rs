//! Lane statistics as of the cutoff: counts, on-time rate, transit and stage-dwell quantiles,
//! with sparse lanes shrunk towards the first parent level that has enough support.
//!
//! Source: shipments whose outcome is known before C (terminal or promise passed) and was known
//! within the trailing window. Quantiles are polars' linear-interpolation quantiles.

use std::collections::HashMap;

use polars::prelude::*;

use super::prepare::{LaneKey, Prepared};
use super::timeline::{NONE, State};
use crate::config::LaneConfig;
use crate::error::Result;
use crate::schema::{MICROS_PER_DAY, N_STAGES, days};

/// Fallback levels, most specific first. `Lane` means the lane had enough support itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Lane,
    OriginCountry,
    DestinationService,
    Service,
    Global,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Lane => "lane",
            Level::OriginCountry => "origin_country",
            Level::DestinationService => "destination_service",
            Level::Service => "service",
            Level::Global => "global",
        }
    }
}

/// Quantities aggregated per group; the order is the order of `Stats::v`.
pub const Q_TRANSIT: usize = 0; // p50, p90, p95
pub const Q_TRANSIT_SCAN: usize = 3; // p50, p90, p95
pub const Q_DWELL50: usize = 6;
pub const Q_DWELL90: usize = 6 + N_STAGES;
pub const Q_REM50: usize = 6 + 2 * N_STAGES;
pub const Q_REM90: usize = 6 + 3 * N_STAGES;
/// p50 share of the door-to-door time already spent when a parcel enters each stage.
pub const Q_FRAC50: usize = 6 + 4 * N_STAGES;
pub const N_Q: usize = 6 + 5 * N_STAGES;

/// Raw aggregates of one group at one level.
#[derive(Debug, Clone)]
pub struct Group {
    pub shipments: u32,
    pub delivered: u32,
    pub on_time: u32,
    pub late: u32,
    pub v: [f64; N_Q],
}

/// Final statistics of one lane after fallback and shrinkage.
#[derive(Debug, Clone)]
pub struct LaneStats {
    pub level: Level,
    pub shipments: u32,
    pub delivered: u32,
    pub late: u32,
    pub on_time_rate: f64,
    pub v: [f64; N_Q],
}

impl LaneStats {
    pub fn transit(&self, q: usize) -> f64 {
        self.v[Q_TRANSIT + q]
    }
    pub fn dwell_p50(&self, s: usize) -> f64 {
        self.v[Q_DWELL50 + s]
    }
    pub fn dwell_p90(&self, s: usize) -> f64 {
        self.v[Q_DWELL90 + s]
    }
    /// Days from entering stage `s` to delivery; 0 past the last stage.
    pub fn rem_p50(&self, s: usize) -> f64 {
        if s < N_STAGES { self.v[Q_REM50 + s] } else { 0.0 }
    }
    /// Typical share of the whole transit already spent on entering stage `s`.
    pub fn frac_p50(&self, s: usize) -> f64 {
        self.v[Q_FRAC50 + s.min(N_STAGES - 1)]
    }
    pub fn rem_p90(&self, s: usize) -> f64 {
        if s < N_STAGES { self.v[Q_REM90 + s] } else { 0.0 }
    }
}

/// Per-shipment outcome facts at the cutoff, shared by lane statistics and history features.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Outcome known before C: terminal before C, or the promise passed before C.
    pub resolved: bool,
    /// When it became known.
    pub resolved_at: i64,
    /// Not delivered by the promise (the training label).
    pub late: bool,
    pub delivered: bool,
}

pub fn outcome(st: &State, promised: i64, cutoff: i64) -> Outcome {
    let terminal = st.terminal_at();
    let known_at = if terminal == NONE { promised } else { terminal.min(promised) };
    let delivered_on_time = st.delivered != NONE && st.delivered <= promised;
    Outcome {
        resolved: known_at < cutoff,
        resolved_at: known_at,
        late: !delivered_on_time,
        delivered: st.delivered != NONE,
    }
}

/// Group keys of each lane at every level, as dense ids.
pub struct Hierarchy {
    pub keys: [Vec<u32>; 4],
}

impl Hierarchy {
    pub fn new(lanes: &[LaneKey]) -> Hierarchy {
        let mut maps: [HashMap<String, u32>; 4] = Default::default();
        let mut keys: [Vec<u32>; 4] = Default::default();
        for l in lanes {
            let names = [
                format!("{}\u{1f}{}\u{1f}{}", l.origin_country(), l.destination, l.service),
                format!("{}\u{1f}{}", l.destination, l.service),
                l.service.clone(),
                String::new(),
            ];
            for (lvl, name) in names.into_iter().enumerate() {
                let next = maps[lvl].len() as u32;
                keys[lvl].push(*maps[lvl].entry(name).or_insert(next));
            }
        }
        Hierarchy { keys }
    }
}

/// The lane-statistics source table: one row per shipment resolved since `earliest`, with the
/// time each value became known, so statistics can be taken as of any later cutoff.
pub struct Source {
    frame: DataFrame,
    hierarchy: Hierarchy,
    n_lanes: usize,
}

impl Source {
    pub fn new(prep: &Prepared, states: &[State], outcomes: &[Outcome], earliest: i64) -> Result<Source> {
        let hierarchy = Hierarchy::new(&prep.lanes);
        let h = &hierarchy;
        let rows: Vec<usize> =
            (0..prep.len()).filter(|&i| outcomes[i].resolved && outcomes[i].resolved_at >= earliest).collect();
        let mut cols: Vec<Column> = Vec::with_capacity(16 + 3 * N_STAGES);
        let lane = |lvl: Option<usize>| -> Vec<u32> {
            rows.iter()
                .map(|&i| {
                    let l = prep.lane[i];
                    match lvl {
                        None => l,
                        Some(k) => h.keys[k][l as usize],
                    }
                })
                .collect()
        };
        cols.push(Column::new("k0".into(), lane(None)));
        for k in 0..4 {
            cols.push(Column::new(format!("k{}", k + 1).into(), lane(Some(k))));
        }
        let time = |f: &dyn Fn(usize) -> i64| -> Vec<Option<i64>> {
            rows.iter().map(|&i| Some(f(i)).filter(|t| *t != NONE)).collect()
        };
        cols.push(Column::new("resolved_at".into(), time(&|i| outcomes[i].resolved_at)));
        cols.push(Column::new("late".into(), rows.iter().map(|&i| outcomes[i].late as u32).collect::<Vec<_>>()));
        cols.push(Column::new("delivered_at".into(), time(&|i| states[i].delivered)));
        let opt = |f: &dyn Fn(usize) -> Option<f64>| -> Vec<Option<f64>> { rows.iter().map(|&i| f(i)).collect() };
        cols.push(Column::new(
            "transit".into(),
            opt(&|i| (states[i].delivered != NONE).then(|| days(states[i].delivered - prep.created[i]))),
        ));
        cols.push(Column::new(
            "transit_scan".into(),
            opt(&|i| {
                let st = &states[i];
                (st.delivered != NONE && st.first_carrier_scan != NONE)
                    .then(|| days(st.delivered - st.first_carrier_scan))
            }),
        ));
        for s in 0..N_STAGES {
            cols.push(Column::new(format!("dwell{s}").into(), opt(&|i| states[i].stage_dwell(s).map(days))));
            cols.push(Column::new(format!("exit{s}").into(), time(&|i| states[i].stage_exit(s))));
        }
        for s in 0..N_STAGES {
            cols.push(Column::new(
                format!("rem{s}").into(),
                opt(&|i| {
                    let st = &states[i];
                    let e = st.stage_entry(s);
                    (st.delivered != NONE && e != NONE && st.delivered >= e).then(|| days(st.delivered - e))
                }),
            ));
        }
        for s in 0..N_STAGES {
            cols.push(Column::new(
                format!("frac{s}").into(),
                opt(&|i| {
                    let st = &states[i];
                    let (e, c) = (st.stage_entry(s), prep.created[i]);
                    if st.delivered == NONE || e == NONE || st.delivered <= c || e < c {
                        return None;
                    }
                    Some(((e - c) as f64 / (st.delivered - c) as f64).min(1.0))
                }),
            ));
        }
        Ok(Source { frame: DataFrame::new(rows.len(), cols)?, hierarchy, n_lanes: prep.lanes.len() })
    }

    /// The source as of `cutoff`: shipments resolved in the trailing window, and only values
    /// observed before the cutoff (a delivery or stage exit at or after it is unknown then).
    fn at(&self, cutoff: i64, cfg: &LaneConfig) -> Result<DataFrame> {
        let since = cutoff - cfg.window_days as i64 * MICROS_PER_DAY;
        let c = || lit(cutoff);
        let seen = col("delivered_at").lt(c()).fill_null(lit(false));
        let mut exprs = vec![
            seen.clone().cast(DataType::UInt32).alias("delivered"),
            when(seen.clone()).then(col("transit")).otherwise(lit(NULL).cast(DataType::Float64)).alias("transit"),
            when(seen.clone())
                .then(col("transit_scan"))
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias("transit_scan"),
        ];
        for s in 0..N_STAGES {
            exprs.push(
                when(col(format!("exit{s}")).lt(c()).fill_null(lit(false)))
                    .then(col(format!("dwell{s}")))
                    .otherwise(lit(NULL).cast(DataType::Float64))
                    .alias(format!("dwell{s}")),
            );
            for q in ["rem", "frac"] {
                exprs.push(
                    when(seen.clone())
                        .then(col(format!("{q}{s}")))
                        .otherwise(lit(NULL).cast(DataType::Float64))
                        .alias(format!("{q}{s}")),
                );
            }
        }
        Ok(self
            .frame
            .clone()
            .lazy()
            .filter(col("resolved_at").gt_eq(lit(since)).and(col("resolved_at").lt(c())))
            .with_columns(exprs)
            .collect()?)
    }
}

fn aggregate(src: &DataFrame, key: &str) -> Result<HashMap<u32, Group>> {
    let q = |c: &str, p: f64, name: String| {
        col(c).quantile(lit(p), QuantileMethod::Linear).cast(DataType::Float64).alias(name)
    };
    let mut aggs = vec![
        len().cast(DataType::UInt32).alias("n"),
        col("delivered").sum().cast(DataType::UInt32).alias("nd"),
        col("late").sum().cast(DataType::UInt32).alias("nl"),
        (col("delivered").cast(DataType::Int64) - col("late").cast(DataType::Int64))
            .clip_min(lit(0))
            .sum()
            .cast(DataType::UInt32)
            .alias("nt"),
    ];
    for (c, base) in [("transit", "t"), ("transit_scan", "ts")] {
        for p in [0.5, 0.9, 0.95] {
            aggs.push(q(c, p, format!("{base}{p}")));
        }
    }
    for p in [0.5, 0.9] {
        for s in 0..N_STAGES {
            aggs.push(q(&format!("dwell{s}"), p, format!("d{s}_{p}")));
        }
    }
    for p in [0.5, 0.9] {
        for s in 0..N_STAGES {
            aggs.push(q(&format!("rem{s}"), p, format!("r{s}_{p}")));
        }
    }
    for s in 0..N_STAGES {
        aggs.push(q(&format!("frac{s}"), 0.5, format!("f{s}")));
    }
    let out = src.clone().lazy().group_by([col(key)]).agg(aggs).collect()?;
    let keys: Vec<u32> = out.column(key)?.u32()?.into_no_null_iter().collect();
    let u = |name: &str| -> Result<Vec<u32>> { Ok(out.column(name)?.u32()?.iter().map(|v| v.unwrap_or(0)).collect()) };
    let (n, nd, nl, nt) = (u("n")?, u("nd")?, u("nl")?, u("nt")?);
    let mut vals: Vec<Vec<f64>> = Vec::with_capacity(N_Q);
    for c in out.get_column_names().iter().skip(5) {
        vals.push(out.column(c.as_str())?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect());
    }
    debug_assert_eq!(vals.len(), N_Q);
    let mut map = HashMap::with_capacity(keys.len());
    for (r, k) in keys.iter().enumerate() {
        let mut v = [f64::NAN; N_Q];
        for (j, col) in vals.iter().enumerate() {
            v[j] = col[r];
        }
        map.insert(*k, Group { shipments: n[r], delivered: nd[r], on_time: nt[r], late: nl[r], v });
    }
    Ok(map)
}

/// Lane statistics as of `cutoff` for every lane (also lanes with no resolved shipments yet).
pub fn lane_stats(source: &Source, cutoff: i64, cfg: &LaneConfig) -> Result<Vec<LaneStats>> {
    let h = &source.hierarchy;
    let src = source.at(cutoff, cfg)?;
    let levels: Vec<HashMap<u32, Group>> =
        ["k0", "k1", "k2", "k3", "k4"].iter().map(|k| aggregate(&src, k)).collect::<Result<_>>()?;
    let m = cfg.min_support as f64;
    let empty = Group { shipments: 0, delivered: 0, on_time: 0, late: 0, v: [f64::NAN; N_Q] };
    let all = [Level::Lane, Level::OriginCountry, Level::DestinationService, Level::Service, Level::Global];

    Ok((0..source.n_lanes)
        .map(|l| {
            let group = |lvl: usize| -> &Group {
                let key = if lvl == 0 { l as u32 } else { h.keys[lvl - 1][l] };
                levels[lvl].get(&key).unwrap_or(&empty)
            };
            let own = group(0);
            // The parent is the first level above the lane with enough delivered support.
            let parent_lvl = (1..5).find(|&k| group(k).delivered as f64 >= m).unwrap_or(4);
            let parent = group(parent_lvl);
            let n = own.delivered as f64;
            let level = if n >= m { Level::Lane } else { all[parent_lvl] };
            let mut v = [f64::NAN; N_Q];
            for j in 0..N_Q {
                let (a, b) = (own.v[j], parent.v[j]);
                v[j] = if n >= m && a.is_finite() {
                    a
                } else if a.is_finite() && b.is_finite() {
                    (n * a + m * b) / (n + m)
                } else if b.is_finite() {
                    b
                } else if a.is_finite() {
                    a
                } else {
                    // No data anywhere yet (a brand-new network): neutral values keep features finite.
                    default_value(j)
                };
            }
            let rate = |g: &Group| {
                if g.shipments > 0 { g.on_time as f64 / g.shipments as f64 } else { f64::NAN }
            };
            let (ns, ro, rp) = (own.shipments as f64, rate(own), rate(parent));
            let on_time_rate = if ns >= m || !rp.is_finite() {
                if ro.is_finite() { ro } else { 1.0 }
            } else if ro.is_finite() {
                (ns * ro + m * rp) / (ns + m)
            } else {
                rp
            };
            LaneStats { level, shipments: own.shipments, delivered: own.delivered, late: own.late, on_time_rate, v }
        })
        .collect())
}

fn default_value(j: usize) -> f64 {
    match j {
        Q_TRANSIT..=2 | 3..=5 => 15.0,
        _ if j >= Q_FRAC50 => (j - Q_FRAC50) as f64 / N_STAGES as f64,
        _ if j >= Q_REM50 => 10.0,
        _ => 1.0,
    }
}

/// Lane statistics at several cutoffs: training snapshots read the table of the latest cutoff
/// at or before their time, so a shipment's own outcome (known only later) never enters them.
pub struct LaneTables {
    /// Cutoffs in µs, ascending; the last is the run's cutoff.
    pub cutoffs: Vec<i64>,
    pub tables: Vec<Vec<LaneStats>>,
}

impl LaneTables {
    pub fn build(source: &Source, cutoffs: Vec<i64>, cfg: &LaneConfig) -> Result<LaneTables> {
        let tables = cutoffs.iter().map(|&c| lane_stats(source, c, cfg)).collect::<Result<_>>()?;
        Ok(LaneTables { cutoffs, tables })
    }

    /// The table as of the latest cutoff at or before `t` (the earliest table for older times).
    pub fn at(&self, t: i64) -> &[LaneStats] {
        let k = self.cutoffs.partition_point(|&c| c <= t);
        &self.tables[k.saturating_sub(1)]
    }

    pub fn latest(&self) -> &[LaneStats] {
        self.tables.last().expect("at least the run's cutoff")
    }
}
