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
use crate::schema::{MICROS_PER_DAY, N_STAGES, STAGES, days};

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
pub const N_Q: usize = 6 + 4 * N_STAGES;

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
        if s < N_STAGES {
            self.v[Q_REM50 + s]
        } else {
            0.0
        }
    }
    pub fn rem_p90(&self, s: usize) -> f64 {
        if s < N_STAGES {
            self.v[Q_REM90 + s]
        } else {
            0.0
        }
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
    let known_at = if terminal == NONE {
        promised
    } else {
        terminal.min(promised)
    };
    let delivered_on_time = st.delivered != NONE && st.delivered <= promised;
    Outcome {
        resolved: known_at < cutoff,
        resolved_at: known_at,
        late: !delivered_on_time,
        delivered: st.delivered != NONE,
    }
}

/// Whether shipment i feeds lane statistics: resolved inside the trailing window.
pub fn in_window(o: &Outcome, cutoff: i64, cfg: &LaneConfig) -> bool {
    o.resolved && o.resolved_at >= cutoff - cfg.window_days as i64 * MICROS_PER_DAY
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
                format!(
                    "{}\u{1f}{}\u{1f}{}",
                    l.origin_country(),
                    l.destination,
                    l.service
                ),
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

/// The lane-statistics source table: one row per shipment resolved in the window.
fn source_frame(
    prep: &Prepared,
    states: &[State],
    outcomes: &[Outcome],
    cfg: &LaneConfig,
    h: &Hierarchy,
) -> Result<DataFrame> {
    let cutoff = prep.cutoff;
    let rows: Vec<usize> = (0..prep.len())
        .filter(|&i| in_window(&outcomes[i], cutoff, cfg))
        .collect();
    let mut cols: Vec<Column> = Vec::with_capacity(12 + N_Q);
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
    cols.push(Column::new(
        "delivered".into(),
        rows.iter()
            .map(|&i| outcomes[i].delivered as u32)
            .collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "late".into(),
        rows.iter()
            .map(|&i| outcomes[i].late as u32)
            .collect::<Vec<_>>(),
    ));
    let opt = |f: &dyn Fn(usize) -> Option<f64>| -> Vec<Option<f64>> {
        rows.iter().map(|&i| f(i)).collect()
    };
    cols.push(Column::new(
        "transit".into(),
        opt(&|i| {
            (states[i].delivered != NONE).then(|| days(states[i].delivered - prep.created[i]))
        }),
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
        cols.push(Column::new(
            format!("dwell{s}").into(),
            opt(&|i| states[i].stage_dwell(s).map(days)),
        ));
    }
    for s in 0..N_STAGES {
        cols.push(Column::new(
            format!("rem{s}").into(),
            opt(&|i| {
                let st = &states[i];
                let e = st.stage_entry(s);
                (st.delivered != NONE && e != NONE && st.delivered >= e)
                    .then(|| days(st.delivered - e))
            }),
        ));
    }
    Ok(DataFrame::new(rows.len(), cols)?)
}

fn aggregate(src: &DataFrame, key: &str) -> Result<HashMap<u32, Group>> {
    let q = |c: &str, p: f64, name: String| {
        col(c)
            .quantile(lit(p), QuantileMethod::Linear)
            .cast(DataType::Float64)
            .alias(name)
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
    let out = src
        .clone()
        .lazy()
        .group_by([col(key)])
        .agg(aggs)
        .collect()?;
    let keys: Vec<u32> = out.column(key)?.u32()?.into_no_null_iter().collect();
    let u = |name: &str| -> Result<Vec<u32>> {
        Ok(out
            .column(name)?
            .u32()?
            .iter()
            .map(|v| v.unwrap_or(0))
            .collect())
    };
    let (n, nd, nl, nt) = (u("n")?, u("nd")?, u("nl")?, u("nt")?);
    let mut vals: Vec<Vec<f64>> = Vec::with_capacity(N_Q);
    for c in out.get_column_names().iter().skip(5) {
        vals.push(
            out.column(c.as_str())?
                .f64()?
                .iter()
                .map(|v| v.unwrap_or(f64::NAN))
                .collect(),
        );
    }
    debug_assert_eq!(vals.len(), N_Q);
    let mut map = HashMap::with_capacity(keys.len());
    for (r, k) in keys.iter().enumerate() {
        let mut v = [f64::NAN; N_Q];
        for (j, col) in vals.iter().enumerate() {
            v[j] = col[r];
        }
        map.insert(
            *k,
            Group {
                shipments: n[r],
                delivered: nd[r],
                on_time: nt[r],
                late: nl[r],
                v,
            },
        );
    }
    Ok(map)
}

/// Lane statistics for every lane of `prep` (also lanes with no resolved shipments yet).
pub fn lane_stats(
    prep: &Prepared,
    states: &[State],
    outcomes: &[Outcome],
    cfg: &LaneConfig,
) -> Result<Vec<LaneStats>> {
    let h = Hierarchy::new(&prep.lanes);
    let src = source_frame(prep, states, outcomes, cfg, &h)?;
    let levels: Vec<HashMap<u32, Group>> = ["k0", "k1", "k2", "k3", "k4"]
        .iter()
        .map(|k| aggregate(&src, k))
        .collect::<Result<_>>()?;
    let m = cfg.min_support as f64;
    let empty = Group {
        shipments: 0,
        delivered: 0,
        on_time: 0,
        late: 0,
        v: [f64::NAN; N_Q],
    };
    let all = [
        Level::Lane,
        Level::OriginCountry,
        Level::DestinationService,
        Level::Service,
        Level::Global,
    ];

    Ok((0..prep.lanes.len())
        .map(|l| {
            let group = |lvl: usize| -> &Group {
                let key = if lvl == 0 {
                    l as u32
                } else {
                    h.keys[lvl - 1][l]
                };
                levels[lvl].get(&key).unwrap_or(&empty)
            };
            let own = group(0);
            // The parent is the first level above the lane with enough delivered support.
            let parent_lvl = (1..5)
                .find(|&k| group(k).delivered as f64 >= m)
                .unwrap_or(4);
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
                if g.shipments > 0 {
                    g.on_time as f64 / g.shipments as f64
                } else {
                    f64::NAN
                }
            };
            let (ns, ro, rp) = (own.shipments as f64, rate(own), rate(parent));
            let on_time_rate = if ns >= m || !rp.is_finite() {
                if ro.is_finite() { ro } else { 1.0 }
            } else if ro.is_finite() {
                (ns * ro + m * rp) / (ns + m)
            } else {
                rp
            };
            LaneStats {
                level,
                shipments: own.shipments,
                delivered: own.delivered,
                late: own.late,
                on_time_rate,
                v,
            }
        })
        .collect())
}

fn default_value(j: usize) -> f64 {
    match j {
        Q_TRANSIT..=2 | 3..=5 => 15.0,
        _ if j >= Q_REM50 => 10.0,
        _ => 1.0,
    }
}

/// Names of the per-stage columns in `lanes.parquet`.
pub fn stage_columns() -> Vec<String> {
    let mut v = Vec::new();
    for st in STAGES.iter() {
        v.push(format!("{}_p50_days", st.key));
        v.push(format!("{}_p90_days", st.key));
    }
    v
}
