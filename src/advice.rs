//! Advice before shipping, from the night's point-in-time view of every lane:
//!
//! - `service_advice.parquet`: per origin × destination × service (and weight band), transit
//!   percentiles in calendar and business days, the promise given today, the on-time rate
//!   against it, the probability that a parcel shipped tomorrow meets it, and the cheapest
//!   service (by `advice.services`) that meets it with `advice.confidence`.
//! - `promise_advice.parquet`: per lane, the shortest promise in business days that would have
//!   been kept `advice.target_on_time_rate` of the time over the lane window, with a confidence
//!   interval, next to the promise given today.
//! - `seller_advice.parquet`: per seller and lane shipped on, the seller's own on-time rate and
//!   handling time beside the network's, and whether the seller's handling alone misses the
//!   promise.
//!
//! Only shipments resolved before the cutoff are read (the same `Outcome` the labels use), in
//! the same windows as the lane statistics (`lanes.window_days`, reaching back to
//! `lanes.min_support` resolutions at most `lanes.max_window_days`), so nothing at or after the
//! cutoff reaches the advice. A parcel resolved late without a delivery (lost, or past its
//! promise and still moving) misses every promise the on-time rates test; the promise advice
//! reads a Kaplan–Meier delivery curve (`Delivered`), where a parcel still moving counts as
//! "longer than its age so far" rather than "never".
//!
//! Tomorrow's parcel has none of the in-flight features the model reads (no scans, no stage,
//! no age), so the probability of meeting the promise is the lane's own rate against today's
//! promise, shrunk towards its parent level by `features.prior_strength` pseudo-shipments; the
//! backtest measures its calibration against later outcomes.

use std::collections::{BTreeMap, BTreeSet};

use polars::prelude::*;
use rayon::prelude::*;

use crate::calendar::{DayTable, Night};
use crate::codec::{Codec, Reader};
use crate::config::{AdviceConfig, LaneConfig};
use crate::error::Result;
use crate::features::FeatureSet;
use crate::features::lanes::{Q_TRANSIT_SCAN, window_bounds, window_range};
use crate::features::prepare::LaneKey;
use crate::features::timeline::NONE;
use crate::schema::{self, outputs};

/// What the advice stage reads from the config.
#[derive(Debug, Clone)]
pub struct AdviceParams {
    pub advice: AdviceConfig,
    pub lanes: LaneConfig,
    pub prior_strength: f64,
}

/// The night's three advice tables. Read-only once built: their files (`files`) are encoded
/// from them once, for every clone.
#[derive(Debug, Clone)]
pub struct Advice {
    /// The night whose point-in-time view the rows are from (each row's `advice_as_of`): the
    /// training night's on a night that publishes kept advice. Held here, not read from a row,
    /// because a night before every shipment has no row.
    as_of: chrono::NaiveDate,
    service: DataFrame,
    promise: DataFrame,
    sellers: DataFrame,
    files: Files,
}

/// The three tables' Parquet files as a run folder publishes them, encoded at most once and
/// shared by the clones of an `Advice`: a training night's run folder and the state that keeps
/// its advice write the same bytes, and a night that publishes kept advice writes the kept bytes
/// as they are. Encoding the seller advice (399k rows at 1M shipments) was about 0.08 s of the
/// 1M night's write stage, on the path that sets its length.
#[derive(Clone, Default)]
struct Files(std::sync::Arc<std::sync::OnceLock<std::sync::Arc<[Vec<u8>; 3]>>>);

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() { "Files(encoded)" } else { "Files(not yet encoded)" })
    }
}

/// The file names of the three tables, in `Advice::files`' order.
pub const FILES: [&str; 3] = ["service_advice.parquet", "promise_advice.parquet", "seller_advice.parquet"];

impl Advice {
    pub fn new(as_of: chrono::NaiveDate, service: DataFrame, promise: DataFrame, sellers: DataFrame) -> Advice {
        Advice { as_of, service, promise, sellers, files: Files::default() }
    }

    /// The night the advice is as of (`advice_as_of`).
    pub fn as_of(&self) -> chrono::NaiveDate {
        self.as_of
    }

    /// `service_advice.parquet`'s table.
    pub fn service(&self) -> &DataFrame {
        &self.service
    }

    /// `promise_advice.parquet`'s table.
    pub fn promise(&self) -> &DataFrame {
        &self.promise
    }

    /// `seller_advice.parquet`'s table.
    pub fn sellers(&self) -> &DataFrame {
        &self.sellers
    }

    /// The three tables (service, promise, seller advice), taken out.
    pub fn into_tables(self) -> (DataFrame, DataFrame, DataFrame) {
        (self.service, self.promise, self.sellers)
    }

    /// The tables of three files `files` wrote (service, promise, seller advice) as of `as_of`,
    /// with those bytes (shared, not copied) as their files. `Err`: bytes that do not decode,
    /// with polars' message, or rows as of another night.
    pub fn from_files(
        as_of: chrono::NaiveDate,
        bytes: std::sync::Arc<[Vec<u8>; 3]>,
    ) -> std::result::Result<Advice, String> {
        let decode = crate::io::decode_parquet;
        let a = Advice::new(as_of, decode(&bytes[0])?, decode(&bytes[1])?, decode(&bytes[2])?);
        let want = Night::new(as_of).as_of_day();
        for (name, df) in FILES.iter().zip([&a.service, &a.promise, &a.sellers]) {
            let days = df.column("advice_as_of").and_then(|c| c.date().map(|d| d.physical().clone()));
            let days = days.map_err(|e| format!("{name}: {}", crate::error::one_line(e.to_string())))?;
            if let Some(d) = days.iter().find(|d| *d != Some(want)) {
                let d = d.map_or("none".into(), |d| crate::calendar::date_of_day(d as i64).to_string());
                return Err(format!("{name} holds advice as of {d}, not {as_of}"));
            }
        }
        let _ = a.files.0.set(bytes);
        Ok(a)
    }

    /// The three tables' files (service, promise, seller advice; `FILES`), as `io::write_parquet`
    /// writes them: encoded on the first call of any clone, then shared.
    pub fn files(&self) -> Result<&[Vec<u8>; 3]> {
        if let Some(f) = self.files.0.get() {
            return Ok(&**f);
        }
        let encode = |name: &str, df: &DataFrame| crate::io::parquet_bytes(std::path::Path::new(name), &mut df.clone());
        let bytes =
            [encode(FILES[0], &self.service)?, encode(FILES[1], &self.promise)?, encode(FILES[2], &self.sellers)?];
        // Another clone may have set them meanwhile: the same frames give the same bytes.
        Ok(&**self.files.0.get_or_init(|| std::sync::Arc::new(bytes)))
    }
}

/// A resolved shipment as the advice reads it.
#[derive(Debug, Clone, Copy)]
struct Obs {
    resolved_at: i64,
    /// Days and business days from creation to delivery; infinite when resolved undelivered.
    transit: f64,
    transit_b: f64,
    /// For an undelivered parcel still in flight at the cutoff: business days from creation to
    /// the cutoff, the transit it is known to exceed (right-censored). Infinite for a parcel
    /// returned or lost, which never arrives.
    censored_b: f64,
    /// Days from creation to the first carrier scan (NaN when none was seen).
    handling: f64,
    seller: u32,
    /// The shipment (index into the part's prepared shipments): a service pool's observations
    /// from several parts are put in the whole network's order by its id (`merge_services`).
    ship: u32,
    /// Index into the weight bands (`None`: weight unknown).
    band: Option<u8>,
    /// Delivered by its own promise.
    met_own: bool,
}

/// The weight bands' labels: edges `[500, 2000]` → `<500g`, `500-2000g`, `>=2000g`.
pub fn band_labels(edges: &[f64]) -> Vec<String> {
    let g = |v: f64| if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v}") };
    let mut out = Vec::with_capacity(edges.len() + 1);
    for (k, e) in edges.iter().enumerate() {
        out.push(if k == 0 { format!("<{}g", g(*e)) } else { format!("{}-{}g", g(edges[k - 1]), g(*e)) });
    }
    if let Some(last) = edges.last() {
        out.push(format!(">={}g", g(*last)));
    }
    out
}

/// The band of a weight, `None` when unknown or when there are no bands (`advice.weight_bands_g`
/// empty: band 0 had no label, and the backtest's advice panicked looking it up).
pub fn band_of(weight_g: f64, edges: &[f64]) -> Option<usize> {
    (weight_g.is_finite() && !edges.is_empty()).then(|| edges.partition_point(|e| *e <= weight_g))
}

/// Services in the order `advice.services` ranks them (cheapest first), others after it.
pub fn service_rank(service: &str, ranking: &[String]) -> usize {
    ranking.iter().position(|s| s == service).unwrap_or(ranking.len())
}

/// The resolved shipments of a pool (sorted by `resolved_at`) inside the lane window ending at
/// `cutoff` (`lanes::window_range`, the rule of the lane statistics).
fn window<'a>(obs: &'a [Obs], cutoff: i64, cfg: &LaneConfig) -> &'a [Obs] {
    let (a, b) = window_range(|t| obs.partition_point(|o| o.resolved_at < t), cutoff, cfg);
    &obs[a..b]
}

/// `window` of a pool held as indices into a part's observations (`Part::observed`).
fn window_of<'a>(observed: &'a [Obs], pool: &'a [u32], cutoff: i64, cfg: &LaneConfig) -> Win<'a> {
    let (a, b) = window_range(|t| pool.partition_point(|&i| observed[i as usize].resolved_at < t), cutoff, cfg);
    Win::Picked(observed, &pool[a..b])
}

/// A pool's window, observations in resolution order: a part's own pools pick theirs out of
/// the part's observations by index (4 bytes where a copy took 56, and an observation is in
/// three pools: at 10M shipments the copies were 0.8 GB of fresh pages each night); the whole
/// network's service windows are their own observations.
#[derive(Clone, Copy)]
enum Win<'a> {
    Picked(&'a [Obs], &'a [u32]),
    Slice(&'a [Obs]),
}

impl<'a> Win<'a> {
    const EMPTY: Win<'static> = Win::Slice(&[]);

    fn len(self) -> usize {
        match self {
            Win::Picked(_, idx) => idx.len(),
            Win::Slice(obs) => obs.len(),
        }
    }

    fn is_empty(self) -> bool {
        self.len() == 0
    }

    fn iter(self) -> WinIter<'a> {
        match self {
            Win::Picked(obs, idx) => WinIter::Picked(obs, idx.iter()),
            Win::Slice(obs) => WinIter::Slice(obs.iter()),
        }
    }
}

/// `Win::iter`: a plain iterator per kind, rather than an index matched at every step.
#[derive(Clone)]
enum WinIter<'a> {
    Picked(&'a [Obs], std::slice::Iter<'a, u32>),
    Slice(std::slice::Iter<'a, Obs>),
}

impl<'a> Iterator for WinIter<'a> {
    type Item = &'a Obs;

    #[inline]
    fn next(&mut self) -> Option<&'a Obs> {
        match self {
            WinIter::Picked(obs, idx) => idx.next().map(|&i| &obs[i as usize]),
            WinIter::Slice(it) => it.next(),
        }
    }
}

/// Linear-interpolation quantile of the finite values (NaN when none).
fn finite_quantile(v: impl Iterator<Item = f64>, q: f64) -> f64 {
    finite_quantile_in(&mut Vec::new(), v, q)
}

/// `finite_quantile` in a buffer the caller reuses (one per lane rather than one per seller).
fn finite_quantile_in(buf: &mut Vec<f64>, v: impl Iterator<Item = f64>, q: f64) -> f64 {
    finite_quantiles_in(buf, v, [q])[0]
}

/// `finite_quantile` at each of `qs`, the values read into the buffer once (a quantile depends
/// on the values alone, not on the order selection leaves them in; `quantiles_at`).
fn finite_quantiles_in<const N: usize>(buf: &mut Vec<f64>, v: impl Iterator<Item = f64>, qs: [f64; N]) -> [f64; N] {
    buf.clear();
    buf.extend(v.filter(|x| x.is_finite()));
    let mut out = [f64::NAN; N];
    for (o, x) in out.iter_mut().zip(crate::features::lanes::quantiles_at(buf, qs.into_iter())) {
        *o = x;
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    crate::features::lanes::quantile(&mut v, 0.5)
}

/// The distribution of business-day transit over a pool, as a Kaplan–Meier curve: a parcel
/// delivered is an event at its transit; one still in flight past its promise is censored at
/// its age (it will take at least that long, and counting it as "never" would overstate a
/// slow lane's transit, while dropping it would understate it); one returned or lost never
/// arrives and stays at risk throughout, so the curve never reaches it.
pub struct Delivered {
    /// (transit, share delivered within it, its Greenwood standard error) at each event time.
    steps: Vec<(f64, f64, f64)>,
}

impl Delivered {
    /// `(event time or NaN, censoring time)` per parcel: delivered parcels give their transit;
    /// the others `NaN` and the time they are known to exceed (∞ for returned or lost).
    pub fn new(parcels: &[(f64, f64)]) -> Delivered {
        let mut events: Vec<f64> = parcels.iter().filter(|p| p.0.is_finite()).map(|p| p.0).collect();
        events.sort_by(f64::total_cmp);
        let mut censored: Vec<f64> = parcels.iter().filter(|p| !p.0.is_finite()).map(|p| p.1).collect();
        censored.sort_by(f64::total_cmp);
        let n = parcels.len();
        let (mut surv, mut green) = (1.0f64, 0.0f64);
        let mut steps = Vec::new();
        let (mut e, mut c) = (0usize, 0usize);
        while e < events.len() {
            let t = events[e];
            // Censored strictly before t have left the risk set; events before t too.
            while c < censored.len() && censored[c] < t {
                c += 1;
            }
            let at_risk = (n - e - c) as f64;
            let d = events[e..].iter().take_while(|v| **v == t).count();
            if at_risk > d as f64 {
                green += d as f64 / (at_risk * (at_risk - d as f64));
            }
            surv *= 1.0 - d as f64 / at_risk;
            steps.push((t, 1.0 - surv, surv * green.sqrt()));
            e += d;
        }
        Delivered { steps }
    }

    /// Share delivered within `t` (NaN for an empty pool).
    pub fn within(&self, t: f64) -> f64 {
        if self.steps.is_empty() {
            return if t.is_nan() { f64::NAN } else { 0.0 };
        }
        self.steps.iter().take_while(|s| s.0 <= t).last().map(|s| s.1).unwrap_or(0.0)
    }

    /// The shortest whole number of days within which `target` of parcels are delivered, and a
    /// 95 % interval for it (the first days at which the curve's upper and lower 95 % bounds
    /// reach the target). NaN where the curve never reaches the target.
    pub fn shortest_promise(&self, target: f64) -> (f64, f64, f64) {
        let first = |f: &dyn Fn(&(f64, f64, f64)) -> f64| {
            self.steps.iter().find(|s| f(s) >= target - 1e-12).map(|s| s.0.ceil()).unwrap_or(f64::NAN)
        };
        (first(&|s| s.1), first(&|s| s.1 + 1.96 * s.2), first(&|s| s.1 - 1.96 * s.2))
    }
}

/// One pool's statistics against a promise of `promise` days (`promise_b` business days).
#[derive(Debug, Clone, Copy)]
struct PoolStats {
    n: usize,
    met: usize,
    transit: [f64; 3],
    transit_b: [f64; 3],
}

/// A pool's window, or its observations of one weight band, as the service advice reads it:
/// taken once however many rows read it (a destination × service window is read for every
/// origin, a service's for every group it backs), so that a row costs a pass over its
/// window's transit times alone rather than over its observations.
struct View {
    /// Each observation's transit in days.
    transit: Vec<f64>,
    quantiles: TransitQuantiles,
}

impl View {
    /// The view of observations given as (transit, business-day transit).
    fn of(w: impl Iterator<Item = (f64, f64)> + Clone) -> View {
        let transit: Vec<f64> = w.clone().map(|o| o.0).collect();
        // p50, p90 and p95 of each, from one buffer.
        let (mut buf, qs) = (Vec::new(), [0.5, 0.9, 0.95]);
        let quantiles = (
            finite_quantiles_in(&mut buf, transit.iter().copied(), qs),
            finite_quantiles_in(&mut buf, w.map(|o| o.1), qs),
        );
        View { transit, quantiles }
    }

    /// Observations.
    fn n(&self) -> usize {
        self.transit.len()
    }

    /// Observations delivered within `promise` days.
    fn met(&self, promise: f64) -> usize {
        self.transit.iter().filter(|&&t| t <= promise).count()
    }

    fn stats(&self, promise: f64) -> PoolStats {
        PoolStats { n: self.n(), met: self.met(promise), transit: self.quantiles.0, transit_b: self.quantiles.1 }
    }
}

/// A pool's window viewed whole and by each of the weight bands.
struct Views {
    all: View,
    bands: Vec<View>,
}

/// The views of a pool's window `w` with `n_bands` weight bands: one pass over the window
/// (whose observations a part's pool picks out at random), then each band's view from that
/// compact copy.
fn views(n_bands: usize, w: Win<'_>) -> Views {
    let rows: Vec<(f64, f64, Option<u8>)> = w.iter().map(|o| (o.transit, o.transit_b, o.band)).collect();
    let of_band = |b: usize| rows.iter().filter(move |r| r.2 == Some(b as u8)).map(|r| (r.0, r.1));
    Views {
        all: View::of(rows.iter().map(|r| (r.0, r.1))),
        bands: (0..n_bands).map(|b| View::of(of_band(b))).collect(),
    }
}

/// One origin × destination × service of the service advice: the pool it reads (`usize::MAX`
/// with none: no level has support) and the one above it, whose on-time rate is its prior.
struct Pick<'a> {
    o: &'a str,
    d: &'a str,
    s: &'a str,
    promise: f64,
    basis: &'static str,
    pool: usize,
    w: Win<'a>,
    parent: Option<(usize, Win<'a>)>,
}

/// p50, p90 and p95 of a pool's transit in days and in business days.
type TransitQuantiles = ([f64; 3], [f64; 3]);

/// Shipments of a pool by creation time, for "the promise given today".
#[derive(Default)]
struct Promises {
    /// (promise days, promise business days) of the pool's latest `advice.promise_sample`
    /// shipments (`latest_by_creation`).
    rows: Vec<(f64, f64)>,
}

impl Promises {
    /// Median promise (days, business days) of the pool's latest shipments.
    fn today(&self) -> (f64, f64) {
        (median(self.rows.iter().map(|r| r.0).collect()), median(self.rows.iter().map(|r| r.1).collect()))
    }
}

/// Shipments per block of the advice's parallel passes.
const BLOCK: usize = 1 << 16;

/// Per pool, its latest `sample` shipments by (creation, index), in that order: all its promise
/// median reads (`Promises::today`). One parallel pass keeps each pool's latest in a heap of
/// `sample` (`sampling::smallest_per_thread`); walking every shipment in creation order did the
/// same through a sort and three reads a shipment at random. `pools_of(i)` are shipment i's
/// pools (of `n_pools`).
fn latest_by_creation(
    created: &[i64],
    pools_of: impl Fn(usize) -> [usize; 3] + Sync,
    n_pools: usize,
    sample: usize,
) -> Vec<Vec<(i64, u32)>> {
    use std::cmp::Reverse;
    // The latest are the smallest in reverse order (the keys are distinct: the index is one).
    let heaps = crate::sampling::smallest_per_thread(created.len(), &vec![sample; n_pools], |i, heaps| {
        for k in pools_of(i) {
            heaps[k].push(Reverse((created[i], i as u32)));
        }
    });
    heaps.into_iter().map(|heap| heap.into_iter().rev().map(|r| r.0).collect()).collect()
}

/// Which observations each pool keeps, as (row, mask of the row's three pools: bit j for its
/// j-th pool) for the rows some pool keeps (8 bytes a row; the pool ids themselves were 56, and
/// at 10M shipments this list set the night's peak, 65–106 MiB higher); `row(r)` gives row r's
/// pools and resolution time, rows in resolution order. A
/// pool's window (`window`) is a suffix of its observations in resolution order: those since
/// the window's start, plus at most `min_support` older ones, none before `oldest`. Keeping only
/// that suffix makes memory follow the window rather than the history (every resolved shipment
/// in three pools was 2 GB at 10M shipments) and leaves every window, and so the advice, as it
/// was. Of a pool's observations between `oldest` and the window's start, the first ones in
/// resolution order are dropped, as many as it has there beyond `min_support`: each is ranked
/// among them by counts over blocks of rows, so blocks are taken in parallel (one pass in
/// order was most of the advice's time at 10M shipments).
fn kept_rows(
    n: usize,
    row: impl Fn(usize) -> ([usize; 3], i64) + Sync,
    n_pools: usize,
    cutoff: i64,
    cfg: &LaneConfig,
    block: usize,
) -> Vec<(u32, u8)> {
    let (since, oldest) = window_bounds(cutoff, cfg);
    let blocks: Vec<std::ops::Range<usize>> = (0..n).step_by(block.max(1)).map(|a| a..(a + block).min(n)).collect();
    // Each pool's observations between `oldest` and `since` in each block.
    let counts: Vec<Vec<u32>> = blocks
        .par_iter()
        .map(|b| {
            let mut c = vec![0u32; n_pools];
            for r in b.clone() {
                let (pools, at) = row(r);
                if (oldest..since).contains(&at) {
                    for k in pools {
                        c[k] += 1;
                    }
                }
            }
            c
        })
        .collect();
    // Where each block's ranks start, and how many each pool drops.
    let mut starts = Vec::with_capacity(blocks.len());
    let mut total = vec![0u32; n_pools];
    for c in &counts {
        starts.push(total.clone());
        for (t, &x) in total.iter_mut().zip(c) {
            *t += x;
        }
    }
    drop(counts);
    let skip: Vec<u32> = total.iter().map(|&t| t.saturating_sub(cfg.min_support)).collect();
    blocks
        .into_par_iter()
        .zip(starts)
        .flat_map_iter(|(b, mut rank)| {
            let skip = &skip;
            let row = &row;
            b.filter_map(move |r| {
                let (pools, at) = row(r);
                let mask = (0..3).fold(0u8, |m, j| {
                    let keep = if at < oldest {
                        false
                    } else if at >= since {
                        true
                    } else {
                        let k = pools[j];
                        rank[k] += 1;
                        rank[k] > skip[k]
                    };
                    m | (keep as u8) << j
                });
                (mask != 0).then_some((r as u32, mask))
            })
        })
        .collect()
}

/// Appends each kept row k (the index of its observation) to the pools its mask names
/// (`pools_of(k)`: kept row k's pools, one per level; `levels`: the first pool of each level).
/// Each pool is sized once (grown by doubling, the pools were copied about twice over), then
/// the three levels are filled side by side, each pool taking its rows in order.
fn fill_pools(
    kept: &[(u32, u8)],
    pools_of: impl Fn(usize) -> [usize; 3] + Sync,
    levels: [usize; 3],
    obs: &mut [Vec<u32>],
) {
    let mut sizes = vec![0usize; obs.len()];
    for (k, &(_, mask)) in kept.iter().enumerate() {
        for (j, &pool) in pools_of(k).iter().enumerate() {
            sizes[pool] += (mask >> j & 1) as usize;
        }
    }
    for (v, &n) in obs.iter_mut().zip(&sizes) {
        v.reserve_exact(n);
    }
    debug_assert_eq!(levels[0], 0);
    let (lanes, rest) = obs.split_at_mut(levels[1]);
    let (groups, services) = rest.split_at_mut(levels[2] - levels[1]);
    let parts: Vec<(usize, &mut [Vec<u32>])> = vec![(0, lanes), (levels[1], groups), (levels[2], services)];
    parts.into_par_iter().enumerate().for_each(|(j, (start, level))| {
        for (k, &(_, mask)) in kept.iter().enumerate() {
            if mask >> j & 1 != 0 {
                level[pools_of(k)[j] - start].push(k as u32);
            }
        }
    });
}

/// Pools of resolved shipments (sorted by resolution) and of promises (sorted by creation),
/// per lane, per destination × service and per service: `lane`, then `lane_count + ds`, then
/// `lane_count + ds_count + s` index one flat list.
struct Pools {
    /// Each pool's observations (indices into `Part::observed`, ascending: resolution order).
    obs: Vec<Vec<u32>>,
    promises: Vec<Promises>,
    n_lanes: usize,
    /// destination × service and service ids, and each lane's.
    ds: BTreeMap<(String, String), usize>,
    services: BTreeMap<String, usize>,
    lane_ds: Vec<usize>,
    lane_s: Vec<usize>,
}

impl Pools {
    fn new(lanes: &[crate::features::prepare::LaneKey]) -> Pools {
        let mut ds = BTreeMap::new();
        let mut services = BTreeMap::new();
        for k in lanes {
            let n = ds.len();
            ds.entry((k.destination.clone(), k.service.clone())).or_insert(n);
            let n = services.len();
            services.entry(k.service.clone()).or_insert(n);
        }
        let lane_ds: Vec<usize> = lanes.iter().map(|k| ds[&(k.destination.clone(), k.service.clone())]).collect();
        let lane_s: Vec<usize> = lanes.iter().map(|k| services[&k.service]).collect();
        let total = lanes.len() + ds.len() + services.len();
        Pools {
            obs: vec![Vec::new(); total],
            promises: (0..total).map(|_| Promises::default()).collect(),
            n_lanes: lanes.len(),
            ds,
            services,
            lane_ds,
            lane_s,
        }
    }
    /// The first pool of each level: lanes, destination × service groups, services.
    fn levels(&self) -> [usize; 3] {
        [0, self.n_lanes, self.n_lanes + self.ds.len()]
    }
    /// The three pools a shipment of lane `l` belongs to.
    fn of_lane(&self, l: usize) -> [usize; 3] {
        [l, self.n_lanes + self.lane_ds[l], self.n_lanes + self.ds.len() + self.lane_s[l]]
    }
    fn key_ds(&self, d: &str, s: &str) -> Option<usize> {
        self.ds.get(&(d.to_string(), s.to_string())).map(|k| self.n_lanes + k)
    }
}

/// Builds the night's advice. Pure: the feature set in, three sorted frames out. The whole
/// network is one part (`Part`) whose service pools are its own.
pub fn build(fs: &FeatureSet, p: &AdviceParams) -> Result<Advice> {
    finish(vec![Part::of(fs, p).rows(None, |_, _| true)?], p, fs.night())
}

/// The pools of one part of the network (a shard owns whole destination × service groups, so
/// its lane and destination × service pools are complete; a service pool is complete only in
/// the whole network, `merge_services`).
pub struct Part<'a> {
    fs: &'a FeatureSet,
    p: &'a AdviceParams,
    pools: Pools,
    /// The observations some pool keeps, in resolution order.
    observed: Vec<Obs>,
}

impl<'a> Part<'a> {
    /// Every pool of the part's shipments: their latest promises and the observations their
    /// windows may read.
    pub fn of(fs: &'a FeatureSet, p: &'a AdviceParams) -> Part<'a> {
        let t0 = std::time::Instant::now();
        let prep = &fs.prep;
        let cutoff = fs.cutoff();
        let cfg = &p.advice;
        let first_day = prep.created.iter().copied().min().map(crate::calendar::day_index).unwrap_or(0);
        let days = DayTable::new(&fs.holidays, first_day - 1, crate::calendar::day_index(cutoff) + 400);

        // Every shipment created before the cutoff gives a promise; the resolved ones an observation.
        let mut pools = Pools::new(&prep.lanes);
        let latest = latest_by_creation(
            &prep.created,
            |i| pools.of_lane(prep.lane[i] as usize),
            pools.promises.len(),
            cfg.promise_sample,
        );
        crate::memory::log_step("advice", "latest promises", t0);
        for (k, latest) in latest.into_iter().enumerate() {
            pools.promises[k].rows = latest
                .into_iter()
                .map(|(created, i)| {
                    let promised = prep.promised[i as usize];
                    (schema::days(promised - created), days.business_days_between(created, promised))
                })
                .collect();
        }
        // Observations in resolution order, as (time, shipment) pairs sorted by value: sorting
        // shipment indices by a looked-up key, then reading each shipment's columns in that order,
        // was a cache miss a read (several seconds at 10M). Rows resolved before the oldest window
        // start are never kept (`kept_rows`), so they are left out here.
        // Each row carries its shipment's lane, read here in shipment order: the passes below
        // go in resolution order, where reading it was a cache miss a row, every pass over (in
        // the padding of the pair, so no more memory).
        let oldest = window_bounds(cutoff, &p.lanes).1;
        let mut resolved: Vec<(i64, u32, u32)> = (0..prep.len())
            .filter(|&i| fs.outcomes[i].resolved && fs.outcomes[i].resolved_at >= oldest)
            .map(|i| (fs.outcomes[i].resolved_at, i as u32, prep.lane[i]))
            .collect();
        // (time, shipment) is unique: the lane never decides the order.
        resolved.par_sort_unstable();
        crate::memory::log_step("advice", "resolved sorted", t0);
        let of_lane: Vec<[usize; 3]> = (0..prep.lanes.len()).map(|l| pools.of_lane(l)).collect();
        // Which of its pools keep each row, then the kept rows' observations, in parallel.
        let kept = kept_rows(
            resolved.len(),
            |r| (of_lane[resolved[r].2 as usize], resolved[r].0),
            pools.obs.len(),
            cutoff,
            &p.lanes,
            BLOCK,
        );
        crate::memory::log_step("advice", "kept rows", t0);
        let observed: Vec<Obs> = kept
            .par_iter()
            .map(|&(r, _)| {
                let r = r as usize;
                let (at, i) = (resolved[r].0, resolved[r].1 as usize);
                let st = &fs.states;
                let (delivered_at, abandoned_at, carrier_scan) =
                    (st.delivered(i), st.returned_or_lost(i), st.first_carrier_scan(i));
                // Delivered as its first end, as outcomes are settled (`timeline::outcome`): a
                // parcel lost or returned before a delivery never arrived in time for its buyer.
                let delivered = delivered_at != NONE
                    && delivered_at < cutoff
                    && (abandoned_at == NONE || delivered_at <= abandoned_at);
                let (transit, transit_b) = if delivered {
                    (
                        schema::days(delivered_at - prep.created[i]),
                        days.business_days_between(prep.created[i], delivered_at),
                    )
                } else {
                    (f64::INFINITY, f64::INFINITY)
                };
                let censored_b = if delivered || abandoned_at != NONE && abandoned_at < cutoff {
                    f64::INFINITY
                } else {
                    days.business_days_between(prep.created[i], cutoff - 1)
                };
                let handling = if carrier_scan != NONE && carrier_scan < cutoff {
                    schema::days(carrier_scan - prep.created[i])
                } else {
                    f64::NAN
                };
                Obs {
                    resolved_at: at,
                    transit,
                    transit_b,
                    censored_b,
                    handling,
                    seller: prep.seller[i],
                    ship: i as u32,
                    band: band_of(prep.weight_g[i], &cfg.weight_bands_g).map(|b| b as u8),
                    met_own: !fs.outcomes[i].late,
                }
            })
            .collect();
        let row_pools = |k: usize| of_lane[resolved[kept[k].0 as usize].2 as usize];
        crate::memory::log_step("advice", "observed", t0);
        fill_pools(&kept, row_pools, pools.levels(), &mut pools.obs);
        crate::memory::log_step("advice", "pools", t0);
        Part { fs, p, pools, observed }
    }

    fn win(&self, k: usize) -> Win<'_> {
        window_of(&self.observed, &self.pools.obs[k], self.fs.cutoff(), &self.p.lanes)
    }

    fn promise_of(&self, k: usize) -> Option<(f64, f64)> {
        let rows = &self.pools.promises[k].rows;
        (!rows.is_empty()).then(|| self.pools.promises[k].today())
    }

    /// The window of each service pool of the part, by service.
    fn service_windows(&self) -> BTreeMap<&str, Win<'_>> {
        self.pools
            .services
            .iter()
            .map(|(s, &k)| (s.as_str(), self.win(self.pools.n_lanes + self.pools.ds.len() + k)))
            .collect()
    }

    /// What the part sends towards the whole network's service pools (`merge_services`): the
    /// observations each of its service pools keeps (every one the network's pool keeps is
    /// among them), and its lanes.
    pub fn service_share(&self) -> Result<ServiceShare> {
        let ids = self.fs.prep.shipments.column("shipment_id")?.str()?;
        let services = self
            .pools
            .services
            .iter()
            .map(|(s, &k)| {
                let obs = &self.pools.obs[self.pools.n_lanes + self.pools.ds.len() + k];
                let sent = obs
                    .iter()
                    .map(|&k| {
                        let o = self.observed[k as usize];
                        (ids.get(o.ship as usize).unwrap_or("").to_string(), o)
                    })
                    .collect();
                (s.clone(), sent)
            })
            .collect();
        Ok(ServiceShare { services, lanes: self.fs.prep.lanes.iter().cloned().collect() })
    }

    /// The part's rows of the three tables: service advice for the destination × service
    /// groups it `owns` (of every origin × destination the network ships), promise advice and
    /// seller advice for its lanes. `network`: the whole network's service pools and lanes
    /// (`merge_services`); none when the part is the whole network.
    pub fn rows(&self, network: Option<&Services>, owns: impl Fn(&str, &str) -> bool) -> Result<AdviceRows> {
        let t0 = std::time::Instant::now();
        let (fs, p, pools) = (self.fs, self.p, &self.pools);
        let own_lanes: BTreeSet<LaneKey>;
        let (services, lanes) = match network {
            Some(n) => (n.windows(), &n.lanes),
            None => {
                own_lanes = fs.prep.lanes.iter().cloned().collect();
                (self.service_windows(), &own_lanes)
            }
        };
        let prep = &fs.prep;
        let cfg = &p.advice;
        let bands = band_labels(&cfg.weight_bands_g);
        let need = p.lanes.min_support as usize;
        let service_win = |s: &str| services.get(s).copied().unwrap_or(Win::EMPTY);

        // The lane index of each origin × destination × service of the part.
        let mut lane_of: BTreeMap<(&str, &str, &str), u32> = BTreeMap::new();
        for (l, k) in prep.lanes.iter().enumerate() {
            lane_of.insert((&k.origin, &k.destination, &k.service), l as u32);
        }
        let pairs: BTreeSet<(&str, &str)> = lanes.iter().map(|k| (k.origin.as_str(), k.destination.as_str())).collect();
        let mut services_to: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for k in lanes {
            services_to.entry(&k.destination).or_default().insert(&k.service);
        }

        // ---- service advice ----
        // A service pool is `pools.obs.len()` + its service's place.
        let service_pool =
            |s: &str| pools.obs.len() + services.keys().position(|x| *x == s).unwrap_or(usize::MAX - pools.obs.len());
        // Each origin × destination × service's pools, most specific first, and which of them
        // it reads: the first with support, and the one above it (for the prior).
        let mut picks: Vec<Pick> = Vec::new();
        for &(o, d) in &pairs {
            let mut services_d: Vec<&str> = services_to[d].iter().copied().filter(|s| owns(d, s)).collect();
            services_d.sort_by_key(|s| (service_rank(s, &cfg.services), *s));
            for s in services_d {
                let lane = lane_of.get(&(o, d, s)).copied();
                // A part owns whole destination × service groups, so it has the group's pool;
                // partials cut another way are refused rather than advised on.
                let k_ds = pools.key_ds(d, s).ok_or_else(|| {
                    crate::error::Error::data(
                        "shipments",
                        "destination, service",
                        format!("the part owns {d:?} × {s:?} but none of its shipments: its partial was not cut by the shard key"),
                    )
                })?;
                let (k_lane, k_s) = (lane.map(|l| l as usize), service_pool(s));
                let promise = k_lane.and_then(|k| self.promise_of(k)).or_else(|| self.promise_of(k_ds));
                let (promise, _) = promise.unwrap_or((f64::NAN, f64::NAN));
                let levels: Vec<(&'static str, usize, Win)> = [
                    k_lane.map(|k| ("lane", k, self.win(k))),
                    Some(("destination_service", k_ds, self.win(k_ds))),
                    Some(("service", k_s, service_win(s))),
                ]
                .into_iter()
                .flatten()
                .collect();
                let chosen = levels.iter().position(|(_, _, w)| w.len() >= need);
                let parent =
                    chosen.and_then(|k| levels.get(k + 1)).filter(|(_, _, w)| !w.is_empty()).map(|l| (l.1, l.2));
                let (basis, pool, w) = match chosen {
                    Some(k) => levels[k],
                    None => ("none", usize::MAX, Win::EMPTY),
                };
                picks.push(Pick { o, d, s, promise, basis, pool, w, parent });
            }
        }
        // Every pool read, viewed once, in parallel (one at a time, they were most of the
        // service advice at 10M shipments).
        let mut wanted: BTreeMap<usize, Win> = BTreeMap::new();
        // A pool's window is its level's, the same wherever it is picked.
        for (k, w) in picks.iter().flat_map(|pk| std::iter::once((pk.pool, pk.w)).chain(pk.parent)) {
            let had = *wanted.entry(k).or_insert(w);
            debug_assert_eq!(had.len(), w.len(), "pool {k} picked with two windows");
        }
        let memo: std::collections::HashMap<usize, Views> =
            wanted.into_par_iter().map(|(k, w)| (k, views(bands.len(), w))).collect();
        let mut rows: Vec<Row> = Vec::new();
        for pk in picks {
            let (promise, basis) = (pk.promise, pk.basis);
            let parent_rate =
                pk.parent.map(|(k, w)| memo[&k].all.met(promise) as f64 / w.len() as f64).filter(|r| r.is_finite());
            let shrink = |v: &View| -> f64 {
                let (n, met) = (v.n(), v.met(promise));
                if n == 0 || !promise.is_finite() {
                    return f64::NAN;
                }
                match parent_rate {
                    Some(pr) => (met as f64 + p.prior_strength * pr) / (n as f64 + p.prior_strength),
                    None => met as f64 / n as f64,
                }
            };
            let vs = &memo[&pk.pool];
            let v = &vs.all;
            let all = Row {
                o: pk.o.into(),
                d: pk.d.into(),
                s: pk.s.into(),
                band: "all".into(),
                basis,
                weight_basis: "all_weights",
                st: v.stats(promise),
                promise,
                p_meet: shrink(v),
            };
            for (b, label) in bands.iter().enumerate() {
                let vb = &vs.bands[b];
                if vb.n() == 0 {
                    continue;
                }
                let own = vb.n() >= need;
                rows.push(Row {
                    band: label.clone(),
                    weight_basis: if own { "band" } else { "all_weights" },
                    st: if own { vb.stats(promise) } else { all.st },
                    p_meet: if own { shrink(vb) } else { all.p_meet },
                    o: all.o.clone(),
                    d: all.d.clone(),
                    s: all.s.clone(),
                    basis,
                    promise,
                });
            }
            rows.push(all);
        }

        crate::memory::log_step("advice", "service rows", t0);

        // ---- promise advice ----
        let mut lane_order: Vec<usize> = (0..prep.lanes.len()).collect();
        lane_order.sort_by(|&a, &b| prep.lanes[a].cmp(&prep.lanes[b]));
        let mut promise = Vec::new();
        for &l in &lane_order {
            let Some((_, promise_b)) = self.promise_of(l) else { continue };
            let [kl, kds, _] = pools.of_lane(l);
            let levels = [
                ("lane", self.win(kl)),
                ("destination_service", self.win(kds)),
                ("service", service_win(&prep.lanes[l].service)),
            ];
            let (basis, w) = levels.iter().copied().find(|(_, w)| w.len() >= need).unwrap_or(("none", Win::EMPTY));
            let curve = Delivered::new(
                &w.iter()
                    .map(|o| (if o.transit_b.is_finite() { o.transit_b } else { f64::NAN }, o.censored_b))
                    .collect::<Vec<_>>(),
            );
            let kept = if w.is_empty() { f64::NAN } else { curve.within(promise_b) };
            promise.push(PRow {
                lane: prep.lanes[l].clone(),
                basis,
                n: w.len(),
                promise_b,
                kept,
                advised: curve.shortest_promise(cfg.target_on_time_rate),
            });
        }

        crate::memory::log_step("advice", "promise rows", t0);

        // ---- seller advice (without the advised service, which `finish` adds) ----
        let per_lane: Vec<Vec<SRow>> = lane_order
            .par_iter()
            .enumerate()
            .map(|(rank, &l)| {
                let w = self.win(l);
                if w.is_empty() {
                    return Vec::new();
                }
                let promise = self.promise_of(l).map(|p| p.0).unwrap_or(f64::NAN);
                // One pass over the lane's window (its observations picked out of the part's at
                // random), then its sellers' runs from that compact copy, in window order within
                // a seller (a stable sort).
                let mut by_seller: Vec<(u32, bool, f64)> =
                    w.iter().map(|o| (o.seller, o.met_own, o.handling)).collect();
                let net_on_time = by_seller.iter().filter(|r| r.1).count() as f64 / by_seller.len() as f64;
                let net_handling = finite_quantile(by_seller.iter().map(|r| r.2), 0.5);
                let from_scan_p90 = fs.lanes()[l].v[Q_TRANSIT_SCAN + 1];
                by_seller.sort_by_key(|r| r.0);
                let mut handling: Vec<f64> = Vec::new();
                by_seller
                    .chunk_by(|a, b| a.0 == b.0)
                    .map(|run| {
                        let n = run.len();
                        let met = run.iter().filter(|r| r.1).count();
                        SRow {
                            seller: run[0].0,
                            lane: rank as u32,
                            n,
                            on_time: met as f64 / n as f64,
                            handling: finite_quantile_in(&mut handling, run.iter().map(|r| r.2), 0.5),
                            net_on_time,
                            net_handling,
                            from_scan_p90,
                            promise,
                        }
                    })
                    .collect()
            })
            .collect();
        // In the table's order, (seller, lane): dense seller ids follow the ids' order and
        // `lane_order` the lanes', so integer keys sort the rows as their strings would, and
        // `finish` finds them sorted (comparing 0.4M rows' strings took 0.2 s at 1M).
        let mut sellers: Vec<SRow> = per_lane.into_iter().flatten().collect();
        sellers.par_sort_unstable_by_key(|r| (r.seller, r.lane));
        crate::memory::log_step("advice", "seller rows", t0);
        Ok(AdviceRows {
            service: rows,
            promise,
            sellers,
            seller_names: prep.seller_names().to_vec(),
            lanes: lane_order.iter().map(|&l| prep.lanes[l].clone()).collect(),
        })
    }
}

/// A row of `service_advice` before the advised service is chosen.
struct Row {
    o: String,
    d: String,
    s: String,
    band: String,
    basis: &'static str,
    weight_basis: &'static str,
    st: PoolStats,
    promise: f64,
    p_meet: f64,
}

/// A row of `promise_advice`.
struct PRow {
    lane: LaneKey,
    basis: &'static str,
    n: usize,
    promise_b: f64,
    kept: f64,
    /// The advised promise and its interval (`Delivered::shortest_promise`).
    advised: (f64, f64, f64),
}

/// A row of `seller_advice` before the lane's advised service is added: its seller and lane
/// as indices into its part's `AdviceRows::seller_names` and `lanes` (a row's four strings,
/// cloned for each of 0.4M rows at 1M, cost more than the rest of the row).
struct SRow {
    seller: u32,
    lane: u32,
    n: usize,
    on_time: f64,
    handling: f64,
    net_on_time: f64,
    net_handling: f64,
    from_scan_p90: f64,
    promise: f64,
}

/// A part's rows of the three advice tables (`Part::rows`), which `finish` puts together.
pub struct AdviceRows {
    service: Vec<Row>,
    promise: Vec<PRow>,
    sellers: Vec<SRow>,
    /// The part's seller ids and lanes, which `sellers` index; `sellers` is sorted by
    /// (seller, lane), as the ids and lanes sort.
    seller_names: Vec<String>,
    lanes: Vec<LaneKey>,
}

/// The three advice tables from every part's rows: the advised service of each origin ×
/// destination × band is chosen across services (which several parts hold), and each seller
/// row gets its lane's; rows sorted as the tables are. `night`: the night whose point-in-time
/// view the rows are from (`advice_as_of`).
pub fn finish(mut parts: Vec<AdviceRows>, p: &AdviceParams, night: Night) -> Result<Advice> {
    let t0 = std::time::Instant::now();
    let cfg = &p.advice;
    let as_of = night.as_of_day();
    let (mut rows, mut prow) = (Vec::new(), Vec::new());
    for part in &mut parts {
        rows.append(&mut part.service);
        prow.append(&mut part.promise);
    }
    rows.sort_by(|a, b| {
        (&a.o, &a.d, &a.band, service_rank(&a.s, &cfg.services), &a.s).cmp(&(
            &b.o,
            &b.d,
            &b.band,
            service_rank(&b.s, &cfg.services),
            &b.s,
        ))
    });
    let mut advised: BTreeMap<(String, String, String), (String, bool)> = BTreeMap::new();
    for group in rows.chunk_by(|a, b| (&a.o, &a.d, &a.band) == (&b.o, &b.d, &b.band)) {
        let pick = group.iter().find(|r| r.p_meet >= cfg.confidence).map(|r| (r.s.clone(), true)).or_else(|| {
            group
                .iter()
                .filter(|r| r.p_meet.is_finite())
                .fold(None::<&Row>, |best, r| match best {
                    Some(b) if b.p_meet >= r.p_meet => Some(b),
                    _ => Some(r),
                })
                .map(|r| (r.s.clone(), false))
        });
        if let Some(a) = pick {
            advised.insert((group[0].o.clone(), group[0].d.clone(), group[0].band.clone()), a);
        }
    }
    let adv = |r: &Row| advised.get(&(r.o.clone(), r.d.clone(), r.band.clone()));
    let f = |g: &dyn Fn(&Row) -> f64| rows.iter().map(g).collect::<Vec<f64>>();
    let mut cols = Vec::new();
    for &name in outputs::SERVICE_ADVICE {
        cols.push(match name {
            "origin" => Column::new(name.into(), rows.iter().map(|r| r.o.as_str()).collect::<Vec<_>>()),
            "destination" => Column::new(name.into(), rows.iter().map(|r| r.d.as_str()).collect::<Vec<_>>()),
            "service" => Column::new(name.into(), rows.iter().map(|r| r.s.as_str()).collect::<Vec<_>>()),
            "weight_band" => Column::new(name.into(), rows.iter().map(|r| r.band.as_str()).collect::<Vec<_>>()),
            "basis" => Column::new(name.into(), rows.iter().map(|r| r.basis).collect::<Vec<_>>()),
            "weight_basis" => Column::new(name.into(), rows.iter().map(|r| r.weight_basis).collect::<Vec<_>>()),
            "support" => Column::new(name.into(), rows.iter().map(|r| r.st.n as i64).collect::<Vec<_>>()),
            "transit_p50_days" => Column::new(name.into(), f(&|r| r.st.transit[0])),
            "transit_p90_days" => Column::new(name.into(), f(&|r| r.st.transit[1])),
            "transit_p95_days" => Column::new(name.into(), f(&|r| r.st.transit[2])),
            "transit_p50_business_days" => Column::new(name.into(), f(&|r| r.st.transit_b[0])),
            "transit_p90_business_days" => Column::new(name.into(), f(&|r| r.st.transit_b[1])),
            "transit_p95_business_days" => Column::new(name.into(), f(&|r| r.st.transit_b[2])),
            "promise_days" => Column::new(name.into(), f(&|r| r.promise)),
            "on_time_rate" => {
                Column::new(name.into(), f(&|r| if r.st.n > 0 { r.st.met as f64 / r.st.n as f64 } else { f64::NAN }))
            }
            "p_meet_promise" => Column::new(name.into(), f(&|r| r.p_meet)),
            "service_rank" => Column::new(
                name.into(),
                rows.iter().map(|r| service_rank(&r.s, &cfg.services) as i32).collect::<Vec<_>>(),
            ),
            "advised_service" => {
                Column::new(name.into(), rows.iter().map(|r| adv(r).map(|a| a.0.as_str())).collect::<Vec<_>>())
            }
            "is_advised" => {
                Column::new(name.into(), rows.iter().map(|r| adv(r).is_some_and(|a| a.0 == r.s)).collect::<Vec<_>>())
            }
            "advice_meets_confidence" => {
                Column::new(name.into(), rows.iter().map(|r| adv(r).is_some_and(|a| a.1)).collect::<Vec<_>>())
            }
            "advice_as_of" => crate::io::date_column(name, vec![Some(as_of); rows.len()]),
            other => return Err(crate::error::Error::internal(format!("service_advice: no builder for {other}"))),
        });
    }
    let service = DataFrame::new(rows.len(), cols)?;
    outputs::check(FILES[0], &service, outputs::SERVICE_ADVICE)?;
    crate::memory::log_step("advice", "service", t0);

    prow.sort_by(|a, b| a.lane.cmp(&b.lane));
    let pf = |g: &dyn Fn(&PRow) -> f64| prow.iter().map(g).collect::<Vec<f64>>();
    let mut cols = Vec::new();
    for &name in outputs::PROMISE_ADVICE {
        cols.push(match name {
            "origin" => Column::new(name.into(), prow.iter().map(|r| r.lane.origin.as_str()).collect::<Vec<_>>()),
            "destination" => {
                Column::new(name.into(), prow.iter().map(|r| r.lane.destination.as_str()).collect::<Vec<_>>())
            }
            "service" => Column::new(name.into(), prow.iter().map(|r| r.lane.service.as_str()).collect::<Vec<_>>()),
            "basis" => Column::new(name.into(), prow.iter().map(|r| r.basis).collect::<Vec<_>>()),
            "support" => Column::new(name.into(), prow.iter().map(|r| r.n as i64).collect::<Vec<_>>()),
            "promise_business_days" => Column::new(name.into(), pf(&|r| r.promise_b)),
            "kept_rate" => Column::new(name.into(), pf(&|r| r.kept)),
            "target_on_time_rate" => Column::new(name.into(), vec![cfg.target_on_time_rate; prow.len()]),
            "advised_promise_business_days" => Column::new(name.into(), pf(&|r| r.advised.0)),
            "advised_promise_low" => Column::new(name.into(), pf(&|r| r.advised.1)),
            "advised_promise_high" => Column::new(name.into(), pf(&|r| r.advised.2)),
            "change_business_days" => Column::new(name.into(), pf(&|r| r.advised.0 - r.promise_b)),
            "below_target" => Column::new(
                name.into(),
                prow.iter().map(|r| r.kept.is_finite() && r.kept < cfg.target_on_time_rate).collect::<Vec<_>>(),
            ),
            "advice_as_of" => crate::io::date_column(name, vec![Some(as_of); prow.len()]),
            other => return Err(crate::error::Error::internal(format!("promise_advice: no builder for {other}"))),
        });
    }
    let promise = DataFrame::new(prow.len(), cols)?;
    outputs::check(FILES[1], &promise, outputs::PROMISE_ADVICE)?;
    crate::memory::log_step("advice", "promise", t0);

    // Each seller row's lane advice, found once per lane of each part by a hashed lookup (an
    // ordered map keyed by three strings compared strings for most of the seller table's build).
    let mut lane_advice: PlHashMap<(&str, &str, &str), (f64, Option<&str>)> = PlHashMap::new();
    for r in rows.iter().filter(|r| r.band == "all") {
        lane_advice.insert((r.o.as_str(), r.d.as_str(), r.s.as_str()), (r.p_meet, adv(r).map(|a| a.0.as_str())));
    }
    /// A row of the table: its numbers, and its seller among every part's seller ids (`names`)
    /// and its lane among every part's lanes (`lanes`, each with its lane advice). The table's
    /// string columns are gathered from those short columns, rather than built a string per row
    /// (five strings for each of 0.4M rows at 1M).
    struct Seller<'a> {
        row: &'a SRow,
        name_at: IdxSize,
        lane_at: IdxSize,
    }
    let mut srows: Vec<Seller<'_>> = Vec::with_capacity(parts.iter().map(|p| p.sellers.len()).sum());
    let mut names: Vec<&str> = Vec::new();
    let mut lanes: Vec<(&LaneKey, Option<(f64, Option<&str>)>)> = Vec::new();
    for part in &parts {
        let (names_before, lanes_before) = (names.len(), lanes.len());
        names.extend(part.seller_names.iter().map(String::as_str));
        lanes.extend(
            part.lanes.iter().map(|k| {
                (k, lane_advice.get(&(k.origin.as_str(), k.destination.as_str(), k.service.as_str())).copied())
            }),
        );
        for row in &part.sellers {
            let (l, id) = (row.lane as usize, row.seller as usize);
            if l >= part.lanes.len() || id >= part.seller_names.len() {
                return Err(crate::error::Error::internal("seller_advice: a row's seller or lane is not its part's"));
            }
            srows.push(Seller { row, name_at: (names_before + id) as IdxSize, lane_at: (lanes_before + l) as IdxSize });
        }
    }
    let lane_of = |s: &Seller<'_>| &lanes[s.lane_at as usize];
    // One part's rows come sorted (`Part::rows`: its dense seller ids and lane ranks follow the
    // strings' order), so only several parts' rows, which interleave, are sorted, rather than
    // every neighbour's four strings compared to find out (a pass over 0.4M rows at 1M).
    let seller_order = |a: &Seller<'_>, b: &Seller<'_>| {
        (names[a.name_at as usize], lane_of(a).0).cmp(&(names[b.name_at as usize], lane_of(b).0))
    };
    if parts.len() > 1 {
        srows.par_sort_unstable_by(seller_order);
    }
    debug_assert!(srows.is_sorted_by(|a, b| seller_order(a, b).is_le()), "seller_advice rows out of order");
    let misses = |s: &Seller<'_>| {
        let r = s.row;
        r.n >= cfg.min_seller_shipments
            && r.handling + r.from_scan_p90 > r.promise
            && r.net_handling + r.from_scan_p90 <= r.promise
    };
    let sf = |g: &dyn Fn(&SRow) -> f64| srows.iter().map(|s| g(s.row)).collect::<Vec<f64>>();
    // A string column of the table: `values` (one per seller id, or per lane) taken at each
    // row's place among them.
    let gather = |name: &str, values: &mut dyn Iterator<Item = Option<&str>>, at: fn(&Seller<'_>) -> IdxSize| {
        let values: StringChunked = values.collect();
        let idx = IdxCa::from_vec("".into(), srows.iter().map(at).collect());
        Ok::<Column, crate::error::Error>(values.take(&idx)?.with_name(name.into()).into_column())
    };
    let lane_str = |f: fn(&LaneKey) -> &str| lanes.iter().map(move |(k, _)| Some(f(k)));
    let cols = outputs::SELLER_ADVICE
        .par_iter()
        .map(|&name| -> Result<Column> {
            Ok(match name {
                "seller_id" => gather(name, &mut names.iter().map(|s| Some(*s)), |s| s.name_at)?,
                "origin" => gather(name, &mut lane_str(|k| k.origin.as_str()), |s| s.lane_at)?,
                "destination" => gather(name, &mut lane_str(|k| k.destination.as_str()), |s| s.lane_at)?,
                "service" => gather(name, &mut lane_str(|k| k.service.as_str()), |s| s.lane_at)?,
                "shipments" => Column::new(name.into(), srows.iter().map(|s| s.row.n as i64).collect::<Vec<_>>()),
                "on_time_rate" => Column::new(name.into(), sf(&|r| r.on_time)),
                "network_on_time_rate" => Column::new(name.into(), sf(&|r| r.net_on_time)),
                "handling_p50_days" => Column::new(name.into(), sf(&|r| r.handling)),
                "network_handling_p50_days" => Column::new(name.into(), sf(&|r| r.net_handling)),
                "transit_from_scan_p90_days" => Column::new(name.into(), sf(&|r| r.from_scan_p90)),
                "promise_days" => Column::new(name.into(), sf(&|r| r.promise)),
                "handling_misses_promise" => Column::new(name.into(), srows.iter().map(misses).collect::<Vec<_>>()),
                "p_meet_promise" => Column::new(
                    name.into(),
                    srows.iter().map(|s| lane_of(s).1.map(|a| a.0).unwrap_or(f64::NAN)).collect::<Vec<f64>>(),
                ),
                "advised_service" => gather(name, &mut lanes.iter().map(|(_, a)| a.and_then(|a| a.1)), |s| s.lane_at)?,
                "advice_as_of" => crate::io::date_column(name, vec![Some(as_of); srows.len()]),
                other => return Err(crate::error::Error::internal(format!("seller_advice: no builder for {other}"))),
            })
        })
        .collect::<Result<Vec<Column>>>()?;
    let sellers = DataFrame::new(srows.len(), cols)?;
    outputs::check(FILES[2], &sellers, outputs::SELLER_ADVICE)?;
    crate::memory::log_step("advice", "seller", t0);
    Ok(Advice::new(night.as_of(), service, promise, sellers))
}

/// A name among `names` (a basis or weight basis read back from a share).
fn known(r: &mut Reader<'_>, names: &[&'static str]) -> Result<&'static str> {
    let s = String::take(r)?;
    names
        .iter()
        .copied()
        .find(|n| *n == s)
        .ok_or_else(|| crate::error::Error::internal(format!("exchange: unknown name {s:?}")))
}

const BASES: [&str; 4] = ["lane", "destination_service", "service", "none"];

impl Codec for Row {
    fn put(&self, out: &mut Vec<u8>) {
        for text in [&self.o, &self.d, &self.s, &self.band] {
            text.put(out);
        }
        self.basis.to_string().put(out);
        self.weight_basis.to_string().put(out);
        (self.st.n, self.st.met).put(out);
        (self.st.transit, self.st.transit_b).put(out);
        (self.promise, self.p_meet).put(out);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self> {
        let (o, d, s) = <(String, String, String)>::take(r)?;
        let band = String::take(r)?;
        let basis = known(r, &BASES)?;
        let weight_basis = known(r, &["band", "all_weights"])?;
        let (n, met) = <(usize, usize)>::take(r)?;
        let (transit, transit_b) = <([f64; 3], [f64; 3])>::take(r)?;
        let (promise, p_meet) = <(f64, f64)>::take(r)?;
        Ok(Row { o, d, s, band, basis, weight_basis, st: PoolStats { n, met, transit, transit_b }, promise, p_meet })
    }
}

impl Codec for PRow {
    fn put(&self, out: &mut Vec<u8>) {
        self.lane.put(out);
        self.basis.to_string().put(out);
        (self.n, self.promise_b, self.kept).put(out);
        self.advised.put(out);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self> {
        let lane = LaneKey::take(r)?;
        let basis = known(r, &BASES)?;
        let (n, promise_b, kept) = <(usize, f64, f64)>::take(r)?;
        Ok(PRow { lane, basis, n, promise_b, kept, advised: <(f64, f64, f64)>::take(r)? })
    }
}

crate::codec_struct!(SRow { seller, lane, n, on_time, handling, net_on_time, net_handling, from_scan_p90, promise });
crate::codec_struct!(AdviceRows { service, promise, sellers, seller_names, lanes });

/// An observation as a service pool's exchange carries it. The seller and shipment are the
/// sending part's (a service pool's observations are read for transit only): not sent.
impl Codec for Obs {
    fn put(&self, out: &mut Vec<u8>) {
        (self.resolved_at, self.transit, self.transit_b).put(out);
        (self.censored_b, self.handling, self.met_own).put(out);
        self.band.put(out);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self> {
        let (resolved_at, transit, transit_b) = <(i64, f64, f64)>::take(r)?;
        let (censored_b, handling, met_own) = <(f64, f64, bool)>::take(r)?;
        let band = <Option<u8> as Codec>::take(r)?;
        let (seller, ship) = (u32::MAX, u32::MAX);
        Ok(Obs { resolved_at, transit, transit_b, censored_b, handling, seller, ship, band, met_own })
    }
}

/// A service pool's observation as a part sends it, with its shipment's id (which orders ties
/// as the single run does, `merge_services`).
type Sent = (String, Obs);

/// A part's share of the whole network's service pools (`Part::service_share`).
pub struct ServiceShare {
    services: BTreeMap<String, Vec<Sent>>,
    lanes: BTreeSet<LaneKey>,
}
crate::codec_struct!(ServiceShare { services, lanes });

/// The whole network's service pools' windows and lanes, from every part's share.
pub struct Services {
    windows: BTreeMap<String, Vec<Obs>>,
    pub lanes: BTreeSet<LaneKey>,
}

impl Services {
    /// Each service's window, as `Part::rows` reads it.
    fn windows(&self) -> BTreeMap<&str, Win<'_>> {
        self.windows.iter().map(|(s, w)| (s.as_str(), Win::Slice(w))).collect()
    }
}

crate::codec_struct!(Services { windows, lanes });

/// The whole network's service pools from every part's share: each pool's observations in the
/// single run's order (resolution time, then shipment id, the order of the shipments), then
/// its window. A part sends what its own pool keeps (`kept_rows`: of those before the window's
/// start, its last `min_support`), which holds every observation the network's pool keeps, so
/// the window is the single run's.
pub fn merge_services(shares: Vec<ServiceShare>, cutoff: i64, cfg: &LaneConfig) -> Services {
    let mut pooled: BTreeMap<String, Vec<Sent>> = BTreeMap::new();
    let mut lanes = BTreeSet::new();
    for share in shares {
        for (s, sent) in share.services {
            pooled.entry(s).or_default().extend(sent);
        }
        lanes.extend(share.lanes);
    }
    let windows = pooled
        .into_iter()
        .map(|(s, mut sent)| {
            sent.sort_by(|a, b| (a.1.resolved_at, &a.0).cmp(&(b.1.resolved_at, &b.0)));
            let obs: Vec<Obs> = sent.into_iter().map(|x| x.1).collect();
            (s, window(&obs, cutoff, cfg).to_vec())
        })
        .collect();
    Services { windows, lanes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::MICROS_PER_DAY;

    fn obs_at(resolved_at: i64) -> Obs {
        Obs {
            resolved_at,
            transit: 1.0,
            transit_b: 1.0,
            censored_b: f64::INFINITY,
            handling: 0.5,
            seller: 0,
            ship: 0,
            band: None,
            met_own: true,
        }
    }

    /// Keeping only what `kept_rows` keeps leaves every pool's window as it was, for dense and
    /// sparse pools (those reaching back past `window_days` to `min_support` observations).
    #[test]
    fn retention_keeps_every_window() {
        let cfg = LaneConfig { window_days: 10, max_window_days: 40, min_support: 5, ..LaneConfig::default() };
        let cutoff = 100 * MICROS_PER_DAY;
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for round in 0..200 {
            // Observations over days 0..100 in resolution order; pools 0..4, three per observation.
            let n = (next() % 60) as usize;
            let mut ats: Vec<i64> = (0..n).map(|_| (next() % (100 * MICROS_PER_DAY as u64)) as i64).collect();
            ats.sort_unstable();
            let pools: Vec<[usize; 3]> =
                (0..n).map(|_| [(next() % 2) as usize, 2, 3 + (next() % 2) as usize]).collect();
            let mut all: Vec<Vec<Obs>> = vec![Vec::new(); 5];
            for (ks, &at) in pools.iter().zip(&ats) {
                for &k in ks {
                    all[k].push(obs_at(at));
                }
            }
            // As `build` fills its pools, in blocks of every size down to one row.
            let block = [1, 2, 7, 64][round % 4];
            let rows_kept = kept_rows(n, |r| (pools[r], ats[r]), 5, cutoff, &cfg, block);
            assert_eq!(rows_kept, in_one_pass(&pools, &ats, 5, cutoff, &cfg), "round {round}, blocks of {block}");
            let observed: Vec<Obs> = rows_kept.iter().map(|&(row, _)| obs_at(ats[row as usize])).collect();
            let mut kept: Vec<Vec<u32>> = vec![Vec::new(); 5];
            fill_pools(&rows_kept, |k| pools[rows_kept[k].0 as usize], [0, 2, 3], &mut kept);
            for k in 0..5 {
                let times = |w: Win| w.iter().map(|o| o.resolved_at).collect::<Vec<_>>();
                let full = Win::Slice(window(&all[k], cutoff, &cfg));
                let short = window_of(&observed, &kept[k], cutoff, &cfg);
                assert_eq!(times(full), times(short), "round {round}, pool {k}");
                assert!(kept[k].len() <= full.len() + cfg.min_support as usize, "round {round}, pool {k}");
            }
        }
    }

    /// A view answers what a pass over its window answers (count, on-time count against any
    /// promise, quantiles), for every pool and band, asked in any order and again: the service
    /// rows ask for a pool's band views after its own, and for a pool once per row reading it.
    #[test]
    fn views_answer_as_passes_over_their_windows() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |m: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % m
        };
        let bits = |q: TransitQuantiles| q.0.iter().chain(&q.1).map(|x| x.to_bits()).collect::<Vec<_>>();
        for round in 0..100 {
            // Whole-day transits meet whole-day promises exactly; some never arrive.
            let observed: Vec<Obs> = (0..200)
                .map(|k| {
                    let transit = if next(8) == 0 { f64::INFINITY } else { next(20) as f64 };
                    let band = match next(4) {
                        3 => None,
                        b => Some(b as u8),
                    };
                    Obs { transit, transit_b: transit * 0.7, band, ..obs_at(k) }
                })
                .collect();
            let pools: Vec<Vec<u32>> = (0..4).map(|_| (0..200).filter(|_| next(3) == 0).collect()).collect();
            for ask in 0..30 {
                let k = next(4) as usize;
                let band = match next(4) {
                    3 => None,
                    b => Some(b as usize),
                };
                let vs = views(3, Win::Picked(&observed, &pools[k]));
                let v = match band {
                    None => &vs.all,
                    Some(b) => &vs.bands[b],
                };
                let mine: Vec<Obs> = pools[k]
                    .iter()
                    .map(|&i| observed[i as usize])
                    .filter(|o| band.is_none_or(|b| o.band == Some(b as u8)))
                    .collect();
                let at = format!("round {round}, ask {ask}, pool {k}, band {band:?}");
                assert_eq!(v.n(), mine.len(), "{at}");
                let promise = next(22) as f64;
                assert_eq!(v.met(promise), mine.iter().filter(|o| o.transit <= promise).count(), "{at}");
                let q = |f: fn(&Obs) -> f64| [0.5, 0.9, 0.95].map(|p| finite_quantile(mine.iter().map(f), p));
                assert_eq!(bits(v.quantiles), bits((q(|o| o.transit), q(|o| o.transit_b))), "{at}");
            }
        }
    }

    /// `kept_rows` as one pass in resolution order: of each pool's observations between `oldest`
    /// and the window's start, the first ones beyond `min_support` are dropped as they come.
    fn in_one_pass(pools: &[[usize; 3]], ats: &[i64], n_pools: usize, cutoff: i64, cfg: &LaneConfig) -> Vec<(u32, u8)> {
        let (since, oldest) = window_bounds(cutoff, cfg);
        let mut skip = vec![0u32; n_pools];
        for (ks, at) in pools.iter().zip(ats) {
            if (oldest..since).contains(at) {
                for &k in ks {
                    skip[k] += 1;
                }
            }
        }
        skip.iter_mut().for_each(|c| *c = c.saturating_sub(cfg.min_support));
        let mut out = Vec::new();
        for (r, (ks, &at)) in pools.iter().zip(ats).enumerate() {
            let mut mask = 0u8;
            for (j, &k) in ks.iter().enumerate() {
                let keep = if at < oldest {
                    false
                } else if at >= since || skip[k] == 0 {
                    true
                } else {
                    skip[k] -= 1;
                    false
                };
                mask |= (keep as u8) << j;
            }
            if mask != 0 {
                out.push((r as u32, mask));
            }
        }
        out
    }

    /// The heap pass keeps, per pool, what the walk in creation order kept: the latest `sample`
    /// shipments by (creation, index), ties in creation broken by index.
    #[test]
    fn each_pool_keeps_its_latest_shipments_by_creation() {
        // 500 shipments over 60 distinct times (many ties), 7 lanes in 3 destination groups.
        let created: Vec<i64> = (0..500u64).map(|i| (i.wrapping_mul(2_654_435_761) % 60) as i64).collect();
        let pools_of = |i: usize| [i % 7, 7 + i % 7 % 3, 10];
        for (sample, threads) in [(1, 1), (5, 3), (50, 2), (600, 2), (5, 1), (50, 3)] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let got = pool.install(|| super::latest_by_creation(&created, pools_of, 11, sample));
            for (k, latest) in got.iter().enumerate() {
                let mut all: Vec<(i64, u32)> =
                    (0..created.len()).filter(|&i| pools_of(i).contains(&k)).map(|i| (created[i], i as u32)).collect();
                all.sort_unstable();
                let want = &all[all.len().saturating_sub(sample)..];
                assert_eq!(latest.as_slice(), want, "pool {k}, sample {sample}, {threads} threads");
            }
        }
    }

    /// Only finite values count, and a reused buffer keeps nothing from its last use.
    #[test]
    fn finite_quantiles_skip_unknown_values_and_stale_ones() {
        let mut buf = vec![100.0, 200.0];
        let v = [3.0, f64::NAN, 1.0, f64::INFINITY, 2.0, f64::NEG_INFINITY];
        assert_eq!(finite_quantile_in(&mut buf, v.iter().copied(), 0.5), 2.0);
        assert_eq!(finite_quantile(v.iter().copied(), 0.5), 2.0);
        assert_eq!(finite_quantile_in(&mut buf, [4.0, 6.0].into_iter(), 0.5), 5.0);
        assert!(finite_quantile_in(&mut buf, [f64::NAN].into_iter(), 0.5).is_nan());
    }

    #[test]
    fn bands_are_labelled_and_found() {
        assert_eq!(band_labels(&[500.0, 2000.0]), ["<500g", "500-2000g", ">=2000g"]);
        assert_eq!(band_of(499.9, &[500.0, 2000.0]), Some(0));
        assert_eq!(band_of(500.0, &[500.0, 2000.0]), Some(1));
        assert_eq!(band_of(2500.0, &[500.0, 2000.0]), Some(2));
        assert_eq!(band_of(f64::NAN, &[500.0, 2000.0]), None);
        // No bands: none to be in, and no label to look up.
        assert_eq!(band_of(700.0, &[]), None);
        assert!(band_labels(&[]).is_empty());
    }

    #[test]
    fn shortest_promise_reads_the_delivery_curve() {
        // 1..=100 days, all delivered: 95 % arrive within 95 days.
        let all: Vec<(f64, f64)> = (1..=100).map(|d| (f64::from(d), f64::NAN)).collect();
        let c = Delivered::new(&all);
        let (d, lo, hi) = c.shortest_promise(0.95);
        assert_eq!(d, 95.0);
        assert!(lo < 95.0 && lo >= 89.0 && (hi.is_nan() || hi > 95.0), "{lo} {hi}");
        assert!((c.within(50.0) - 0.5).abs() < 1e-12);
        // A tenth lost: the curve stops at 90 %, so no promise keeps 95 %, 80 % within 80 days.
        let mut lost: Vec<(f64, f64)> = (1..=90).map(|d| (f64::from(d), f64::NAN)).collect();
        lost.extend([(f64::NAN, f64::INFINITY); 10]);
        let c = Delivered::new(&lost);
        assert!(c.shortest_promise(0.95).0.is_nan());
        assert_eq!(c.shortest_promise(0.8).0, 80.0);
        // Still in flight at 50 days: known to take longer than 50, not "never". Ten of them
        // among 90 delivered in 1..=90 days leave the curve reaching 95 % after day 50.
        let mut open: Vec<(f64, f64)> = (1..=90).map(|d| (f64::from(d), f64::NAN)).collect();
        open.extend([(f64::NAN, 50.0); 10]);
        let c = Delivered::new(&open);
        assert!((c.within(50.0) - 0.5).abs() < 1e-9, "{}", c.within(50.0));
        assert!(c.within(90.0) > 0.999);
        let d = c.shortest_promise(0.95).0;
        assert!(d > 50.0 && d <= 90.0, "{d}");
    }
}
