//! Lane statistics as of the cutoff: counts, on-time rate, transit and stage-dwell quantiles,
//! with sparse lanes shrunk towards the first parent level that has enough support.
//!
//! Source: shipments whose outcome is known before C (terminal or promise passed) and was known
//! within the trailing window. Quantiles interpolate linearly between order statistics, as
//! polars' `QuantileMethod::Linear` does. Many cutoffs share one source, so the work is done
//! here with selection per group rather than a polars group-by per cutoff and level, and the
//! lane level (nearly all of the work) goes lane by lane through every cutoff at once.

use std::collections::HashMap;

use rayon::prelude::*;

use super::prepare::{LaneKey, Prepared};
use super::timeline::{self, NONE, Outcome};
use crate::config::LaneConfig;
use crate::error::Result;
use crate::memory;
use crate::schema::{MICROS_PER_DAY, N_STAGES, days};

pub mod parents;
pub use parents::{ParentCounts, ParentKey, ParentValues, Parents, Wanted};

/// How many rows ahead the lane statistics' source asks for a row's events.
const AHEAD: usize = 8;

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
    /// Delivered shipments scanned at each milestone before their delivery.
    pub scanned: [u32; 9],
    pub v: [f64; N_Q],
}
crate::codec_struct!(Group { shipments, delivered, on_time, late, scanned, v });

impl Group {
    fn empty() -> Group {
        Group { shipments: 0, delivered: 0, on_time: 0, late: 0, scanned: [0; 9], v: [f64::NAN; N_Q] }
    }

    fn add_counts(&mut self, g: &Group) {
        self.shipments += g.shipments;
        self.delivered += g.delivered;
        self.late += g.late;
        self.on_time += g.on_time;
        for (a, b) in self.scanned.iter_mut().zip(&g.scanned) {
            *a += b;
        }
    }

    /// Milestones at least half of the delivered shipments were scanned at.
    fn milestones_tracked(&self) -> u8 {
        self.scanned.iter().filter(|&&n| self.delivered > 0 && 2 * n >= self.delivered).count() as u8
    }
}

/// Final statistics of one lane after fallback and shrinkage. A quantile no level has data for
/// is NaN (unknown), never a made-up default.
#[derive(Debug, Clone)]
pub struct LaneStats {
    pub level: Level,
    pub shipments: u32,
    pub delivered: u32,
    pub late: u32,
    pub on_time_rate: f64,
    /// Milestones (of 9) at least half the lane's delivered shipments report, from the level
    /// its statistics come from.
    pub milestones_tracked: u8,
    /// Days of resolutions the lane's own window spans (more than `lanes.window_days` when the
    /// lane needed a longer history to reach `lanes.min_support`).
    pub window_days: f64,
    pub v: [f64; N_Q],
}

impl LaneStats {
    /// What is known of any lane before the first table: nothing (every quantile NaN).
    pub const UNKNOWN: LaneStats = LaneStats {
        level: Level::Global,
        shipments: 0,
        delivered: 0,
        late: 0,
        on_time_rate: f64::NAN,
        milestones_tracked: 0,
        window_days: f64::NAN,
        v: [f64::NAN; N_Q],
    };

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

/// What a source row keeps of its shipment: the milestone times, creation and first carrier
/// scan, from which every quantity is derived as a window reads it (`row_values`). Twenty
/// precomputed value columns and six "known at" columns took 2.3 times the memory (1.9 GB at
/// 10M shipments), for values that are cheap to derive.
#[derive(Debug, Clone, Copy)]
struct Facts {
    first: [i64; 9],
    created: i64,
    first_carrier_scan: i64,
}

/// The quantities aggregated per group, in `row_values` order: transit from creation, transit
/// from the first carrier scan, then per stage its dwell, the time from its start to delivery,
/// and the share of the transit spent before it.
const N_QUANTITIES: usize = 2 + 3 * N_STAGES;

/// Values a parent group's pass over its rows buffers at most (8 bytes each: 128 MiB per
/// cutoff computed in parallel); a larger group takes several passes, a few quantities each.
const PARENT_VALUES: usize = 1 << 24;

/// Quantiles taken of each quantity (in `row_values` order), and where they go in `Group::v`.
fn quantity_outputs() -> Vec<Vec<(f64, usize)>> {
    let mut out = vec![
        vec![(0.5, Q_TRANSIT), (0.9, Q_TRANSIT + 1), (0.95, Q_TRANSIT + 2)],
        vec![(0.5, Q_TRANSIT_SCAN), (0.9, Q_TRANSIT_SCAN + 1), (0.95, Q_TRANSIT_SCAN + 2)],
    ];
    for s in 0..N_STAGES {
        out.push(vec![(0.5, Q_DWELL50 + s), (0.9, Q_DWELL90 + s)]);
        out.push(vec![(0.5, Q_REM50 + s), (0.9, Q_REM90 + s)]);
        out.push(vec![(0.5, Q_FRAC50 + s)]);
    }
    out
}

/// Every quantity of one source row: when it became known, and its value (NaN when it has
/// none). A stage dwell is known when the stage ends; the rest when the parcel is delivered.
#[inline]
fn row_values(f: &Facts, delivered: i64) -> [(i64, f64); N_QUANTITIES] {
    row_values_in(f, delivered, 0..N_QUANTITIES)
}

/// `row_values`, derived only for the quantities in `qs` (the others are left unknown).
#[inline]
fn row_values_in(f: &Facts, delivered: i64, qs: std::ops::Range<usize>) -> [(i64, f64); N_QUANTITIES] {
    let mut out = [(delivered, f64::NAN); N_QUANTITIES];
    let d = delivered != NONE;
    if d && qs.start < 2 {
        out[0].1 = days(delivered - f.created);
        if f.first_carrier_scan != NONE {
            out[1].1 = days(delivered - f.first_carrier_scan);
        }
    }
    // Stages whose three quantities (2 + 3s ..= 4 + 3s) meet `qs`.
    let stages = qs.start.saturating_sub(4).div_ceil(3)..qs.end.saturating_sub(2).div_ceil(3).min(N_STAGES);
    for s in stages {
        let k = 2 + 3 * s;
        out[k] = (timeline::stage_exit(&f.first, s), timeline::stage_dwell(&f.first, s).map(days).unwrap_or(f64::NAN));
        let (e, c) = (timeline::stage_entry(&f.first, s), f.created);
        if d && e != NONE && delivered >= e {
            out[k + 1].1 = days(delivered - e);
        }
        // A stage scanned after the delivery (a late, out-of-order scan) says nothing of the
        // share: without this guard it read 1, and a table recomputed after that scan arrived
        // differed from the one computed before it.
        if d && e != NONE && delivered > c && e >= c && e <= delivered {
            out[k + 2].1 = ((e - c) as f64 / (delivered - c) as f64).min(1.0);
        }
    }
    out
}

/// The lane-statistics source: one row per shipment resolved since `earliest`, sorted by lane
/// and then by resolution time, with the time each value became known, so statistics can be
/// taken as of any later cutoff without looking past it. Lane-major order makes a lane's window
/// one contiguous slice; a parent group reads the slices of its member lanes.
pub struct Source {
    resolved_at: Vec<i64>,
    late: Vec<bool>,
    delivered_at: Vec<i64>,
    /// Milestones scanned before delivery (bit m), for delivered rows.
    scanned: Vec<u16>,
    /// The facts of the rows read (see `read`), in row order; `fact_at[r]` is row r's place.
    facts: Vec<Facts>,
    fact_at: Vec<u32>,
    /// Rows of lane `l` are `lane_start[l]..lane_start[l + 1]`.
    lane_start: Vec<usize>,
    /// Member lanes of each group at each level above the lane: origin country, destination ×
    /// service, service, global.
    members: [Vec<Vec<u32>>; 4],
    outputs: Vec<Vec<(f64, usize)>>,
    hierarchy: Hierarchy,
    /// Each service key's name (`hierarchy.keys[2]`): a part of the network names the service
    /// groups it shares with other parts (`parents`).
    service_names: Vec<String>,
    n_lanes: usize,
    /// Values a parent group's pass buffers at most (`PARENT_VALUES`; see `groups_at`).
    parent_values: usize,
    /// Each lane's rows whose facts (and `delivered_at`, `scanned`) were taken: every window
    /// read lies within (`for_cutoffs`).
    read: Vec<(usize, usize)>,
}

/// `Source::fact_at` of a row whose facts were not taken.
const UNREAD: u32 = u32::MAX;

impl Source {
    /// The source as of the night's cutoff (`prep.night`), from `outcomes` at that cutoff. Each
    /// row's scan state is taken again from its events (the same `state_at`) rather than read
    /// from every shipment's state, so a night need not hold those (1.6 GB at 10M) with this.
    pub fn new(prep: &Prepared, outcomes: &[Outcome], earliest: i64) -> Result<Source> {
        Source::build(prep, outcomes, earliest, None)
    }

    /// The source for the tables at `cutoffs` alone: each row's scan state (the costly part of
    /// a source) is taken only where a lane's window at one of them reads it. A night that
    /// computes only its latest table reads each busy lane's last `window_days`, not every row
    /// resolved since `max_window_days`, so its cost follows the window rather than the
    /// history. Tables at other cutoffs must not be computed from it.
    pub fn for_cutoffs(prep: &Prepared, outcomes: &[Outcome], cutoffs: &[i64], cfg: &LaneConfig) -> Result<Source> {
        let first = cutoffs.iter().copied().min().unwrap_or(i64::MAX);
        let earliest = first.saturating_sub(cfg.oldest_days() as i64 * MICROS_PER_DAY);
        Source::build(prep, outcomes, earliest, Some((cutoffs, cfg)))
    }

    fn build(
        prep: &Prepared,
        outcomes: &[Outcome],
        earliest: i64,
        read_at: Option<(&[i64], &LaneConfig)>,
    ) -> Result<Source> {
        // Logged as its own stage: times from the source's start, not the features stage's.
        let t0 = std::time::Instant::now();
        let hierarchy = Hierarchy::new(&prep.lanes);
        let n_lanes = prep.lanes.len();
        let lane_of = |i: usize| prep.lane[i] as usize;
        // Rows in (lane, resolution time, shipment) order. Shipment indices as u32, as
        // everywhere a shipment is indexed per row.
        let (lane_start, pairs) = super::grouped::sorted_by_group(
            n_lanes,
            prep.len(),
            |i| {
                let o = &outcomes[i];
                (o.resolved && o.resolved_at >= earliest).then(|| (lane_of(i), (o.resolved_at, i as u32)))
            },
            |a: &(i64, u32), b: &(i64, u32)| a.cmp(b),
        );
        // The rows whose facts are read: every row, or each lane's rows from its earliest
        // window start to its latest window end over `read_at`'s cutoffs (parent groups read
        // their member lanes' windows, `windows_at`, so nothing else).
        let resolved_at: Vec<i64> = pairs.iter().map(|p| p.0).collect();
        let read: Vec<(usize, usize)> = (0..n_lanes)
            .map(|l| {
                let (lo, hi) = (lane_start[l], lane_start[l + 1]);
                let Some((cutoffs, cfg)) = read_at else { return (lo, hi) };
                let windows = cutoffs.iter().map(|&c| lane_window(&resolved_at[lo..hi], c, cfg));
                let (a, b) = windows.filter(|w| w.0 < w.1).fold((usize::MAX, 0), |(a, b), w| (a.min(w.0), b.max(w.1)));
                if a < b { (lo + a, lo + b) } else { (lo, lo) }
            })
            .collect();
        // Each row's place among the rows read (`UNREAD` elsewhere), so that only those hold
        // facts: 88 bytes a row, most of the source's memory when a long history is not read.
        let mut fact_at = vec![UNREAD; pairs.len()];
        let mut n_read = 0u32;
        for &(a, b) in &read {
            for slot in &mut fact_at[a..b] {
                *slot = n_read;
                n_read += 1;
            }
        }
        memory::log_step("lane source", "rows", t0);
        // Only the indices are held through the facts below (the pairs are 16 bytes a row).
        let rows: Vec<u32> = pairs.iter().map(|&(_, i)| i).collect();
        drop(pairs);
        let members: [Vec<Vec<u32>>; 4] = std::array::from_fn(|lvl| {
            let keys = &hierarchy.keys[lvl];
            let n = keys.iter().map(|&k| k as usize + 1).max().unwrap_or(0).max(1);
            let mut m = vec![Vec::new(); n];
            for (l, &k) in keys.iter().enumerate() {
                m[k as usize].push(l as u32);
            }
            m
        });
        let mut service_names = vec![String::new(); members[2].len()];
        for (lane, &k) in prep.lanes.iter().zip(&hierarchy.keys[2]) {
            service_names[k as usize] = lane.service.clone();
        }
        let cutoff = prep.night.cutoff();
        let r = rows.len();
        // Filled in place, in parallel over pieces of the rows read: they lie in lane order, so
        // each piece's facts (in `fact_at` order), delivery times and scans are disjoint slices.
        // (Collected as tuples and then split, they held every row's facts a second time, at the
        // step that holds a 10M-shipment night's peak.)
        let blank = Facts { first: [NONE; 9], created: NONE, first_carrier_scan: NONE };
        let (mut facts, mut delivered_at, mut scanned) = (vec![blank; n_read as usize], vec![NONE; r], vec![0u16; r]);
        const PIECE: usize = 1 << 16;
        let mut pieces: Vec<(usize, &mut [Facts], &mut [i64], &mut [u16])> = Vec::new();
        let (mut f_rest, mut d_rest, mut s_rest) = (&mut facts[..], &mut delivered_at[..], &mut scanned[..]);
        let mut at = 0;
        for &(a, b) in &read {
            for start in (a..b).step_by(PIECE) {
                let n = PIECE.min(b - start);
                let (_, d) = std::mem::take(&mut d_rest).split_at_mut(start - at);
                let (_, sc) = std::mem::take(&mut s_rest).split_at_mut(start - at);
                let (d, d_next) = d.split_at_mut(n);
                let (sc, s_next) = sc.split_at_mut(n);
                let (f, f_next) = std::mem::take(&mut f_rest).split_at_mut(n);
                pieces.push((start, f, d, sc));
                (f_rest, d_rest, s_rest, at) = (f_next, d_next, s_next, start + n);
            }
        }
        pieces.into_par_iter().for_each(|(start, f, d, sc)| {
            for j in 0..f.len() {
                // Rows in lane order are shipments all over the events: a row's event offsets
                // and creation are asked for two strides ahead, its events one stride ahead
                // (their offsets arrived by then), so that the reads of memory overlap.
                if let Some(&far) = rows.get(start + j + 2 * AHEAD) {
                    memory::prefetch(&prep.ev_start[far as usize]);
                    memory::prefetch(&prep.created[far as usize]);
                }
                if let Some(&near) = rows.get(start + j + AHEAD) {
                    let a = prep.ev_start[near as usize] as usize;
                    memory::prefetch(prep.ev_time.as_ptr().wrapping_add(a));
                    memory::prefetch(prep.ev_code.as_ptr().wrapping_add(a));
                }
                let i = rows[start + j] as usize;
                let (times, codes) = prep.events(i);
                let st = timeline::state_at(prep.created[i], times, codes, prep.etas(i), cutoff);
                f[j] = Facts { first: st.first, created: prep.created[i], first_carrier_scan: st.first_carrier_scan };
                d[j] = st.delivered;
                // Milestones scanned before the delivery.
                sc[j] = (0..9)
                    .filter(|&k| st.first[k] != NONE && st.first[k] <= st.delivered)
                    .fold(0u16, |a, k| a | 1 << k);
            }
        });
        memory::log_step("lane source", "facts", t0);
        Ok(Source {
            resolved_at,
            late: rows.iter().map(|&i| outcomes[i as usize].late).collect(),
            delivered_at,
            scanned,
            facts,
            fact_at,
            lane_start,
            members,
            outputs: quantity_outputs(),
            hierarchy,
            service_names,
            n_lanes,
            parent_values: PARENT_VALUES,
            read,
        })
    }

    /// Row r's facts; a row the source was not built to read has none (a bug: panics).
    fn facts(&self, r: usize) -> &Facts {
        self.facts.get(self.fact_at[r] as usize).expect("a row the source was not built to read")
    }

    /// The source with parent groups' passes buffering at most `values` values (at least one
    /// quantity a pass): the tables are the same whatever it is, only memory and passes change.
    pub fn with_parent_values(mut self, values: usize) -> Source {
        self.parent_values = values;
        self
    }

    /// Every quantile of `bufs` (one buffer per quantity), in `Group::v` order; reorders them.
    fn quantiles(&self, bufs: &mut [Vec<f64>]) -> [f64; N_Q] {
        let mut v = [f64::NAN; N_Q];
        self.quantiles_into(bufs, 0..N_QUANTITIES, &mut v);
        v
    }

    /// The quantiles of the quantities `qs` (`bufs[q]` holds quantity q's values) into their
    /// slots of `v`; reorders the buffers.
    fn quantiles_into(&self, bufs: &mut [Vec<f64>], qs: std::ops::Range<usize>, v: &mut [f64; N_Q]) {
        quantiles_into(&self.outputs, bufs, qs, v);
    }

    /// The lane-level quantiles of lane `l` as of each of `cutoffs` (NaN where its window is
    /// empty). The tables' windows overlap (a 90-day window, a table a week), so each row's
    /// values are derived once for every cutoff rather than once per table, which was most of
    /// the tables' cost; the values a window keeps, and so the quantiles, are the same.
    fn lane_values(&self, l: usize, cutoffs: &[i64], cfg: &LaneConfig) -> Vec<[f64; N_Q]> {
        let (lo, hi) = (self.lane_start[l], self.lane_start[l + 1]);
        let resolved = &self.resolved_at[lo..hi];
        let windows: Vec<(usize, usize)> = cutoffs.iter().map(|&c| lane_window(resolved, c, cfg)).collect();
        let Some(first) = windows.iter().filter(|w| w.0 < w.1).map(|w| w.0).min() else {
            return vec![[f64::NAN; N_Q]; cutoffs.len()];
        };
        // Empty windows read nothing (their bounds may lie past the rows read).
        let last = windows.iter().filter(|w| w.0 < w.1).map(|w| w.1).max().unwrap_or(first);
        let values: Vec<[(i64, f64); N_QUANTITIES]> =
            (lo + first..lo + last).map(|r| row_values(self.facts(r), self.delivered_at[r])).collect();
        let mut bufs: Vec<Vec<f64>> = vec![Vec::new(); N_QUANTITIES];
        windows
            .iter()
            .zip(cutoffs)
            .map(|(&(a, b), &cutoff)| {
                if a >= b {
                    return [f64::NAN; N_Q];
                }
                bufs.iter_mut().for_each(Vec::clear);
                for row in &values[a - first..b - first] {
                    push_known(&mut bufs, row, cutoff);
                }
                self.quantiles(&mut bufs)
            })
            .collect()
    }

    /// Each lane's rows in the window ending at `cutoff`, as a range of the lane-major source.
    fn windows_at(&self, cutoff: i64, cfg: &LaneConfig) -> Vec<(usize, usize)> {
        (0..self.n_lanes)
            .map(|l| {
                let (lo, hi) = (self.lane_start[l], self.lane_start[l + 1]);
                let (a, b) = lane_window(&self.resolved_at[lo..hi], cutoff, cfg);
                let (a, b) = (lo + a, lo + b);
                assert!(a == b || self.read[l].0 <= a && b <= self.read[l].1, "a window the source was not built for");
                (a, b)
            })
            .collect()
    }

    /// Counts of every group at every level over the lanes' `window` as of `cutoff` (values
    /// unknown). With `above` exchanged, the service and global groups are the whole network's
    /// counts the parts exchanged rather than this source's.
    fn counts_at(
        &self,
        cutoff: i64,
        window: &[(usize, usize)],
        above: Option<(&ParentCounts, usize)>,
    ) -> Result<[Vec<Group>; 5]> {
        let lanes: Vec<Group> = window
            .iter()
            .map(|&(a, b)| {
                let mut grp = Group::empty();
                grp.shipments = (b - a) as u32;
                for r in a..b {
                    let delivered = self.delivered_at[r] != NONE && self.delivered_at[r] < cutoff;
                    grp.delivered += delivered as u32;
                    grp.late += self.late[r] as u32;
                    grp.on_time += (delivered && !self.late[r]) as u32;
                    if delivered {
                        for (m, n) in grp.scanned.iter_mut().enumerate() {
                            *n += (self.scanned[r] >> m & 1) as u32;
                        }
                    }
                }
                grp
            })
            .collect();
        let mut out: [Vec<Group>; 5] = std::array::from_fn(|lvl| {
            if lvl == 0 {
                return lanes.clone();
            }
            self.members[lvl - 1]
                .iter()
                .map(|m| {
                    let mut grp = Group::empty();
                    for &l in m {
                        grp.add_counts(&lanes[l as usize]);
                    }
                    grp
                })
                .collect()
        });
        if let Some((counts, k)) = above {
            for (key, name) in self.service_names.iter().enumerate() {
                if !self.members[2][key].is_empty() {
                    out[3][key] = counts.service(k, name)?;
                }
            }
            out[4] = vec![counts.global(k)];
        }
        Ok(out)
    }

    /// The key of lane `l`'s group at level `lvl` (0: the lane itself).
    fn key_of(&self, l: usize, lvl: usize) -> usize {
        if lvl == 0 { l } else { self.hierarchy.keys[lvl - 1][l] as usize }
    }

    /// The level lane `l` falls back to when it is sparse: the first above it with `m`
    /// delivered shipments, else global.
    fn parent_level(&self, levels: &[Vec<Group>; 5], l: usize, m: f64) -> usize {
        (1..5).find(|&k| levels[k].get(self.key_of(l, k)).is_some_and(|g| g.delivered as f64 >= m)).unwrap_or(4)
    }

    /// The groups whose quantiles a table reads: every lane with rows, and the parent of each
    /// lane with fewer than `m` delivered.
    fn wanted(&self, levels: &[Vec<Group>; 5], m: f64) -> [Vec<bool>; 5] {
        let mut want: [Vec<bool>; 5] = std::array::from_fn(|lvl| vec![false; levels[lvl].len()]);
        for l in 0..self.n_lanes {
            let own = levels[0].get(l);
            if own.is_some_and(|g| g.shipments > 0) {
                want[0][l] = true;
            }
            if own.is_none_or(|g| (g.delivered as f64) < m) {
                let k = self.parent_level(levels, l, m);
                if let Some(w) = want[k].get_mut(self.key_of(l, k)) {
                    *w = true;
                }
            }
        }
        want
    }

    /// Raw group aggregates at every level as of `cutoff`: shipments resolved in the trailing
    /// window, and only values observed before the cutoff (a delivery or stage exit at or after
    /// it was unknown then). Counts are taken for every group; quantiles only for the groups
    /// `wanted` says a lane reads (its own lane, and its parent when it is sparse), which on a
    /// large network is the lane level alone. Service and global groups come from the source's
    /// own rows (the source is the whole network), or with `exchanged`, from what the parts of
    /// the network exchanged (`parents`) as of its cutoff of that index.
    fn groups_at(
        &self,
        cutoff: i64,
        cfg: &LaneConfig,
        lane_values: impl Fn(usize) -> [f64; N_Q],
        exchanged: Option<(&Parents, usize)>,
    ) -> Result<([Vec<Group>; 5], Vec<Option<i64>>)> {
        let window = self.windows_at(cutoff, cfg);
        let mut out = self.counts_at(cutoff, &window, exchanged.map(|(p, k)| (&p.counts, k)))?;
        // The service and global groups' quantiles, as the whole network has them. Only lanes
        // without support of their own read them (a lane with it falls back no further than its
        // origin-country group, which holds it), and every part asked for those lanes' groups.
        if let Some((p, k)) = exchanged {
            for (key, name) in self.service_names.iter().enumerate() {
                out[3][key].v = p.values(k, &ParentKey::Service(name.clone()));
            }
            out[4][0].v = p.values(k, &ParentKey::Global);
        }
        let want = self.wanted(&out, cfg.min_support as f64);
        for k in (0..out[0].len()).filter(|&k| want[0][k]) {
            out[0][k].v = lane_values(k);
        }
        // A pass over a parent group's rows fills the buffers of as many quantities as
        // `parent_values` holds (all of them for most groups); a value counts only if it was
        // known before the cutoff (a delivery or stage exit at or after it was not). A parent
        // can hold most of the network's rows: when nearly every lane leaves one origin country,
        // a sparse lane's parent is all of them, and twenty buffers of the 5M rows a 10M-shipment
        // window resolves would be 0.8 GB for each cutoff computed in parallel.
        let mut bufs: Vec<Vec<f64>> = vec![Vec::new(); N_QUANTITIES];
        // Exchanged, the service and global levels are finished above.
        let own_levels = if exchanged.is_some() { 1..3 } else { 1..5 };
        for lvl in own_levels {
            for k in (0..out[lvl].len()).filter(|&k| want[lvl][k]) {
                let spans: Vec<(usize, usize)> = self.members[lvl - 1][k].iter().map(|&l| window[l as usize]).collect();
                let rows: usize = spans.iter().map(|&(a, b)| b - a).sum();
                let per_pass = (self.parent_values / rows.max(1)).clamp(1, N_QUANTITIES);
                if per_pass < N_QUANTITIES {
                    // The buffers earlier groups left are freed first: kept beside this group's
                    // passes they held up to `parent_values` more (at 10M shipments the night's
                    // peak was reached here, two cutoffs in parallel).
                    bufs.iter_mut().for_each(|b| *b = Vec::new());
                }
                let mut v = [f64::NAN; N_Q];
                for first in (0..N_QUANTITIES).step_by(per_pass) {
                    let qs = first..(first + per_pass).min(N_QUANTITIES);
                    let several = per_pass < N_QUANTITIES;
                    for q in qs.clone() {
                        // One pass: buffers are reused from group to group (no fresh pages).
                        bufs[q].clear();
                        if several {
                            bufs[q].reserve_exact(rows);
                        }
                    }
                    for &(a, b) in &spans {
                        for r in a..b {
                            let row = row_values_in(self.facts(r), self.delivered_at[r], qs.clone());
                            push_known(&mut bufs[qs.clone()], &row[qs.clone()], cutoff);
                        }
                    }
                    self.quantiles_into(&mut bufs, qs.clone(), &mut v);
                    if several {
                        for q in qs {
                            bufs[q] = Vec::new();
                        }
                    }
                }
                out[lvl][k].v = v;
            }
        }
        Ok((out, window.iter().map(|&(a, b)| (a < b).then(|| self.resolved_at[a])).collect()))
    }
}

/// The quantiles `outputs` names of the quantities `qs` (`bufs[q]` holds quantity q's values)
/// into their slots of `v`; reorders the buffers.
fn quantiles_into(
    outputs: &[Vec<(f64, usize)>],
    bufs: &mut [Vec<f64>],
    qs: std::ops::Range<usize>,
    v: &mut [f64; N_Q],
) {
    for q in qs {
        let ps = outputs[q].iter().map(|o| o.0);
        for (x, &(_, slot)) in quantiles_at(&mut bufs[q], ps).zip(&outputs[q]) {
            v[slot] = x;
        }
    }
}

/// Adds a row's values to their quantities' buffers: only values known before the cutoff (a
/// delivery or stage exit at or after it was not) and defined.
#[inline]
fn push_known(bufs: &mut [Vec<f64>], row: &[(i64, f64)], cutoff: i64) {
    for (&(t, v), buf) in row.iter().zip(bufs) {
        if t != NONE && t < cutoff && v.is_finite() {
            buf.push(v);
        }
    }
}

/// The bounds of the lane window ending at `cutoff`: `since` starts the last `window_days`,
/// `oldest` is as far back as a sparse group may reach (`max_window_days`).
pub(crate) fn window_bounds(cutoff: i64, cfg: &LaneConfig) -> (i64, i64) {
    let since = cutoff - cfg.window_days as i64 * MICROS_PER_DAY;
    let oldest = cutoff - cfg.max_window_days.max(cfg.window_days) as i64 * MICROS_PER_DAY;
    (since, oldest)
}

/// The lane window ending at `cutoff`, as a range of rows sorted by resolution time, where
/// `before(t)` counts the rows resolved before `t`: the last `window_days`, or, with fewer than
/// `min_support` rows in them, further back to `min_support` rows, never past `max_window_days`.
/// The lane statistics and the advice both window by this rule.
pub(crate) fn window_range(before: impl Fn(i64) -> usize, cutoff: i64, cfg: &LaneConfig) -> (usize, usize) {
    let (since, oldest) = window_bounds(cutoff, cfg);
    let need = cfg.min_support as usize;
    let (a, b) = (before(since), before(cutoff));
    let a = if b - a >= need { a } else { b.saturating_sub(need).max(before(oldest)) };
    (a, b)
}

/// `window_range` over one lane's resolution times (ascending): the range of its rows a table
/// at `cutoff` reads. What the source takes (`Source::for_cutoffs`) and what its tables read
/// are both this, so they agree.
fn lane_window(resolved: &[i64], cutoff: i64, cfg: &LaneConfig) -> (usize, usize) {
    window_range(|x| resolved.partition_point(|&y| y < x), cutoff, cfg)
}

/// Linear-interpolation quantile (position p·(n−1)) by selection; reorders `v`.
pub(crate) fn quantile(v: &mut [f64], p: f64) -> f64 {
    quantile_from(v, p, 0).0
}

/// `quantile` of `v` at each of `ps`; reorders `v`. Where the probabilities ascend, each
/// selection after the first searches only the values above the previous one (a selection
/// leaves every smaller value before it): the lane tables' median, p90 and p95 of a quantity
/// cost one pass over its values and a little more, not three. Each quantile is an order
/// statistic of the values or lies between two, so it is the same whatever order earlier
/// selections left them in.
pub(crate) fn quantiles_at(v: &mut [f64], ps: impl Iterator<Item = f64>) -> impl Iterator<Item = f64> {
    // Every value before `done` is at most every value from it on (in `total_cmp` order).
    let mut done = 0;
    ps.map(move |p| {
        // Whichever values that selection searched, it left the smaller ones before its place.
        let x;
        (x, done) = quantile_from(v, p, done);
        x
    })
}

/// `quantile`, given that each of the first `done` values is at most each later one, so that
/// an order statistic from `done` on is found among the later values alone; with the place it
/// selected (every value before it is at most every value from it on), `done` when empty.
fn quantile_from(v: &mut [f64], p: f64, done: usize) -> (f64, usize) {
    if v.is_empty() {
        return (f64::NAN, done);
    }
    let pos = p * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let from = if lo >= done { done } else { 0 };
    let (_, x, right) = v[from..].select_nth_unstable_by(lo - from, |a, b| a.total_cmp(b));
    let x = *x;
    if pos == lo as f64 || right.is_empty() {
        return (x, lo);
    }
    let y = right.iter().copied().fold(f64::INFINITY, f64::min);
    (x + (y - x) * (pos - lo as f64), lo)
}

/// Lane statistics as of `cutoff` for every lane (also lanes with no resolved shipments yet).
/// `lane_values(l)` gives lane `l`'s own quantiles at this cutoff (`Source::lane_values`).
fn lane_stats(
    source: &Source,
    cutoff: i64,
    cfg: &LaneConfig,
    lane_values: impl Fn(usize) -> [f64; N_Q],
    above: Option<(&Parents, usize)>,
) -> Result<Vec<LaneStats>> {
    let h = &source.hierarchy;
    let m = cfg.min_support as f64;
    let (levels, window_start) = source.groups_at(cutoff, cfg, lane_values, above)?;
    let empty = Group::empty();
    let all = [Level::Lane, Level::OriginCountry, Level::DestinationService, Level::Service, Level::Global];

    Ok((0..source.n_lanes)
        .map(|l| {
            let group = |lvl: usize| -> &Group {
                let key = if lvl == 0 { l as u32 } else { h.keys[lvl - 1][l] };
                levels[lvl].get(key as usize).unwrap_or(&empty)
            };
            let own = group(0);
            let parent_lvl = source.parent_level(&levels, l, m);
            let parent = group(parent_lvl);
            let n = own.delivered as f64;
            let level = if n >= m { Level::Lane } else { all[parent_lvl] };
            let mut v = [f64::NAN; N_Q];
            for j in 0..N_Q {
                let (a, b) = (own.v[j], parent.v[j]);
                // A lane with its own support keeps its own value, unknown too (a stage its
                // feed never scans): the parent's quantiles exist only when a sparse lane asks
                // for them, so taking them made a lane's table depend on the lanes beside it,
                // lanes first seen after the cutoff among them.
                v[j] = if n >= m {
                    a
                } else if a.is_finite() && b.is_finite() {
                    (n * a + m * b) / (n + m)
                } else if b.is_finite() {
                    b
                } else {
                    // The lane's own value, or unknown (NaN) when no level has data: a stage
                    // the network never reports stays unknown rather than get a made-up value.
                    a
                };
            }
            let milestones_tracked = if n >= m { own.milestones_tracked() } else { parent.milestones_tracked() };
            let window_days = window_start[l].map(|a| days(cutoff - a).max(cfg.window_days as f64)).unwrap_or(f64::NAN);
            let rate = |g: &Group| {
                if g.shipments > 0 { g.on_time as f64 / g.shipments as f64 } else { f64::NAN }
            };
            let on_time_rate = shrunk_rate(own.shipments as f64, rate(own), rate(parent), m);
            LaneStats {
                level,
                shipments: own.shipments,
                delivered: own.delivered,
                late: own.late,
                on_time_rate,
                milestones_tracked,
                window_days,
                v,
            }
        })
        .collect())
}

/// Every lane's statistics at each of `at`; the service and global levels from `parents` when
/// given (a part of the network), else from `source` (the whole of it).
fn compute(source: &Source, at: &[i64], cfg: &LaneConfig, parents: Option<&Parents>) -> Result<Vec<Vec<LaneStats>>> {
    if parents.is_some_and(|p| p.cutoffs() != at) {
        return Err(crate::error::Error::internal("lane tables: parents exchanged for other cutoffs"));
    }
    let above = |j: usize| parents.map(|p| (p, j));
    // Lane-major first: every lane's own quantiles at every cutoff, lanes in parallel.
    let per_lane: Vec<Vec<[f64; N_Q]>> =
        (0..source.n_lanes).into_par_iter().map(|l| source.lane_values(l, at, cfg)).collect();
    (0..at.len()).into_par_iter().map(|j| lane_stats(source, at[j], cfg, |l| per_lane[l][j], above(j))).collect()
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
        let none = vec![None; cutoffs.len()];
        LaneTables::build_with(|_| Ok(source), cutoffs, cfg, none)
    }

    /// The tables at `cutoffs`, taking `known[k]` as the table at `cutoffs[k]` where given (a
    /// table kept from an earlier night, see `reuse`) and computing the others from the source
    /// `source(at)` gives for their cutoffs `at` (asked for only when some table is unknown).
    pub fn build_with<S: std::borrow::Borrow<Source>>(
        source: impl FnOnce(&[i64]) -> Result<S>,
        cutoffs: Vec<i64>,
        cfg: &LaneConfig,
        mut known: Vec<Option<Vec<LaneStats>>>,
    ) -> Result<LaneTables> {
        let todo: Vec<usize> = (0..cutoffs.len()).filter(|&k| known[k].is_none()).collect();
        if !todo.is_empty() {
            let at: Vec<i64> = todo.iter().map(|&k| cutoffs[k]).collect();
            let source = source(&at)?;
            for (k, table) in todo.into_iter().zip(compute(source.borrow(), &at, cfg, None)?) {
                known[k] = Some(table);
            }
        }
        let tables = known.into_iter().map(|t| t.expect("every table known or computed")).collect();
        Ok(LaneTables { cutoffs, tables })
    }

    /// The tables of one part of the network (whole destination × service groups, a shard's)
    /// at the parents' cutoffs, its lanes' service and global parents taken from what every
    /// part exchanged (`parents`): each lane's statistics are the whole network's.
    pub fn build_parted(source: &Source, cfg: &LaneConfig, parents: &Parents) -> Result<LaneTables> {
        let cutoffs = parents.cutoffs().to_vec();
        let tables = compute(source, &cutoffs, cfg, Some(parents))?;
        Ok(LaneTables { cutoffs, tables })
    }

    /// The table as of the latest cutoff at or before `t`; none before the first cutoff (a
    /// later table would hold outcomes known only after `t`).
    pub fn at(&self, t: i64) -> Option<&[LaneStats]> {
        let k = self.cutoffs.partition_point(|&c| c <= t);
        k.checked_sub(1).map(|k| &self.tables[k][..])
    }

    pub fn latest(&self) -> &[LaneStats] {
        self.tables.last().expect("at least the run's cutoff")
    }
}

/// A lane's on-time rate `own` over `n` resolved shipments, shrunk towards its parent level's
/// `parent` by `m` pseudo-shipments while `n` is below `m`. Unknown (NaN) without resolved
/// shipments at either level: it read 1.0, a made-up 100 %.
fn shrunk_rate(n: f64, own: f64, parent: f64, m: f64) -> f64 {
    if n >= m || !parent.is_finite() {
        own
    } else if own.is_finite() {
        (n * own + m * parent) / (n + m)
    } else {
        parent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn an_on_time_rate_with_nothing_resolved_is_unknown() {
        assert!(shrunk_rate(0.0, f64::NAN, f64::NAN, 30.0).is_nan());
        assert_eq!(shrunk_rate(0.0, f64::NAN, 0.8, 30.0), 0.8);
        assert_eq!(shrunk_rate(10.0, 0.5, 0.9, 30.0), (10.0 * 0.5 + 30.0 * 0.9) / 40.0);
        assert_eq!(shrunk_rate(40.0, 0.5, 0.9, 30.0), 0.5);
    }
    use rand_chacha::ChaCha8Rng;

    /// A stage scanned after the delivery adds no share of the transit before it (it read 1)
    /// and no time from it to the delivery; one scanned before adds both.
    #[test]
    fn a_stage_scanned_after_the_delivery_adds_no_share() {
        use crate::schema::STAGES;
        const H: i64 = 3_600_000_000;
        let delivered = 100 * H;
        for s in 1..N_STAGES {
            let m = STAGES[s].first as usize;
            for (at, known) in [(delivered + 5 * H, false), (delivered - 5 * H, true)] {
                let mut first = [NONE; 9];
                first[0] = 0;
                first[m] = at;
                let f = Facts { first, created: 0, first_carrier_scan: NONE };
                let v = row_values(&f, delivered);
                let k = 2 + 3 * s;
                assert_eq!(!v[k + 2].1.is_nan(), known, "stage {s} entered at {at}: share {}", v[k + 2].1);
                assert_eq!(!v[k + 1].1.is_nan(), known, "stage {s} entered at {at}: remaining {}", v[k + 1].1);
            }
        }
    }

    #[test]
    fn quantiles_in_one_buffer_are_the_quantiles_taken_one_at_a_time() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for round in 0..500 {
            let n = rng.gen_range(0..400);
            // Few distinct values in some rounds (ties), signed zeros and spread values in others.
            let values: Vec<f64> = (0..n)
                .map(|_| match round % 3 {
                    0 => rng.gen_range(0..5) as f64,
                    1 => [0.0, -0.0, 1.5, -1.5][rng.gen_range(0..4)],
                    _ => rng.gen_range(-1e3..1e3),
                })
                .collect();
            // Ascending as the lane tables ask, and in other orders (each selection then
            // searches every value).
            let ps: Vec<f64> = match round % 5 {
                0 => vec![0.5, 0.9, 0.95],
                1 => vec![0.5, 0.5, 0.9],
                2 => vec![0.95, 0.5, 0.9, 0.1],
                // Ascending at random, often at exact positions (quarters of an odd count).
                3 => {
                    let mut ps: Vec<f64> =
                        (0..rng.gen_range(1..6)).map(|_| rng.gen_range(0..=4) as f64 / 4.0).collect();
                    ps.sort_by(f64::total_cmp);
                    ps
                }
                _ => (0..rng.gen_range(1..6)).map(|_| rng.gen_range(0.0..=1.0)).collect(),
            };
            let mut buf = values.clone();
            let got: Vec<u64> = quantiles_at(&mut buf, ps.iter().copied()).map(f64::to_bits).collect();
            let want: Vec<u64> = ps.iter().map(|&p| quantile(&mut values.clone(), p).to_bits()).collect();
            assert_eq!(got, want, "round {round}: {n} values at {ps:?}");
        }
    }
}
