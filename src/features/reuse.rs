//! Lane tables and disruption series days carried from night to night (kept in the state, see
//! `state::tables`; the backtest carries them in memory).
//!
//! A night keeps a lane table at the cutoffs of the nights on a calendar grid of
//! `stats_every_days` up to and including itself across the training window (18 at the default
//! settings: the Mondays, see `Span`; a night off the grid has no table of its own), and a
//! disruption series point per lane, stage and cutoff day over that window (about 120 days);
//! they are the expensive part of its lane statistics. A lane
//! table as of cutoff C, and a series day's points before the two-night rule, depend on
//! `[lanes]` and on the rows known before C alone: shipments created before C and, of
//! their events, those before C (the point-in-time rule;
//! `each_earlier_lane_table_equals_the_table_of_its_own_night` and the future-data tests hold
//! it). So night N's table at a grid night G's cutoff is the table G computed as its latest (or
//! any night after G computed at that cutoff), its series days are night N − 1's, and a night
//! that finds them kept need not compute them again.
//!
//! A kept table or day is reused only when the rows known before its cutoff are still the same,
//! which a [`Digest`] of exactly those rows checks: 128 bits of order-independent fingerprint (a
//! wrapping sum of two independent 64-bit hashes per row) and the row count. Data arriving late
//! for an old day (an event scanned before C, a shipment created before C that came in a later
//! file) changes the digest of every cutoff after it, and those tables and days, and only
//! those, are computed again. The digest is taken of the decoded rows, not of files: the status
//! vocabulary, time zone and column mapping are in it, and a file rewritten with the same rows
//! still matches. The digests are sums over rows, so a night need not take them over every
//! row: where the kept ones are known to hold (`Kept::holds_until`), it takes them and adds the
//! rows dated since (`digests_from`). Reuse is exact: a reused table or day is the one computing it would give, bit
//! for bit (`kept_lane_tables_are_reused_only_where_nothing_known_before_their_cutoff_changed`,
//! and the ten-night state test compares every night with a full refresh).

use std::collections::HashMap;
use std::sync::Arc;

use polars::prelude::*;
use rayon::prelude::*;

use super::disruption::{self, DayPoints, Point, Series};
use super::lanes::{LaneStats, Level, N_Q};
use super::prepare::{LaneKey, Prepared};
use super::timeline::HeldVisits;
use crate::error::{Error, Result};
use crate::sampling::{hash_str, mix};
use crate::schema::{MICROS_PER_DAY, N_STAGES};
use crate::validate::NO_ETA;

/// A fingerprint of the rows known before one cutoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Digest {
    pub rows: u64,
    pub a: u64,
    pub b: u64,
}

impl Digest {
    pub(super) fn add(&mut self, o: &Digest) {
        self.rows = self.rows.wrapping_add(o.rows);
        self.a = self.a.wrapping_add(o.a);
        self.b = self.b.wrapping_add(o.b);
    }

    pub(super) fn row(&mut self, (a, b): (u64, u64)) {
        self.rows += 1;
        self.a = self.a.wrapping_add(a);
        self.b = self.b.wrapping_add(b);
    }
}

/// Seeds of the two hashes, and tags keeping a shipment's row apart from an event's.
pub(super) const SEED_A: u64 = 0x6c61_6e65_7761_7463;
pub(super) const SEED_B: u64 = 0x7461_626c_6573_2131;
pub(super) const SHIPMENT: u64 = 1;
pub(super) const EVENT: u64 = 2;

fn fold(h: u64, x: u64) -> u64 {
    mix(h ^ x)
}

pub(super) fn fold2(h: (u64, u64), x: u64) -> (u64, u64) {
    (fold(h.0, x), fold(h.1, x.rotate_left(17)))
}

/// The digests of the rows known before each of `cutoffs` (ascending): a shipment row counts
/// before C when it was created before C, an event when it was scanned before C and its
/// shipment created before C (what `prepare` keeps at C). Of each row, what lane statistics and
/// the series read: a shipment's id, lane, creation and promise; an event's shipment id, time,
/// milestone code and carrier estimate.
pub fn digests(prep: &Prepared, cutoffs: &[i64]) -> Result<Vec<Digest>> {
    digests_from(prep, cutoffs, &vec![None; cutoffs.len()])
}

/// `digests`, given the digests already `known` at some of the cutoffs (one entry per cutoff).
/// The digests are sums over rows, so the digest at a later cutoff is the one at an earlier
/// cutoff plus the rows dated between them: from the last known cutoff before the first unknown
/// one, only the rows dated at or after it are read (a night whose earlier cutoffs are all
/// known reads the shipments active since yesterday's cutoff, not the whole history). The
/// known digests are taken as they are; without any below the first unknown one, every row is
/// read.
pub fn digests_from(prep: &Prepared, cutoffs: &[i64], known: &[Option<Digest>]) -> Result<Vec<Digest>> {
    debug_assert!(cutoffs.windows(2).all(|w| w[0] < w[1]));
    debug_assert_eq!(cutoffs.len(), known.len());
    let m = cutoffs.len();
    let Some(first_unknown) = known.iter().position(Option::is_none) else {
        return Ok(known.iter().flatten().copied().collect());
    };
    // The base: the digest at the cutoff just before the first unknown one, and the rows dated
    // from that cutoff on. (Every row when there is none: `from` below every date.)
    let (base, from) = match first_unknown.checked_sub(1) {
        Some(j) => (known[j].expect("known below the first unknown"), cutoffs[j]),
        None => (Digest::default(), i64::MIN),
    };
    let lane_hash: Vec<u64> = prep
        .lanes
        .iter()
        .map(|l| hash_str(SEED_A, &format!("{}\u{1f}{}\u{1f}{}", l.origin, l.destination, l.service)))
        .collect();
    // In one chunk, so that a row's id is found directly (only rows dated from `from` read it).
    let ids = prep.shipments.column("shipment_id")?.str()?.rechunk();
    let id_of = |i: usize| ids.get(i).unwrap_or("");
    // Per bucket b: the rows dated in [cutoffs[b - 1], cutoffs[b]); they count towards every
    // cutoff from b on. A row's date is its shipment's creation, or an event's scan when later.
    let buckets = (0..prep.len())
        .into_par_iter()
        .fold(
            || vec![Digest::default(); m + 1],
            |mut acc, i| {
                let created = prep.created[i];
                let (times, codes) = prep.events(i);
                // Events come in time order: those dated from `from` on are a suffix, and a
                // shipment created before it with no such event adds nothing.
                let first = if created >= from { 0 } else { times.partition_point(|&t| t < from) };
                if created < from && first == times.len() {
                    return acc;
                }
                let bucket_of = |t: i64| cutoffs.partition_point(|&c| c <= t);
                let id = id_hashes(id_of(i));
                if created >= from {
                    let row = fold2(fold2(id, SHIPMENT), lane_hash[prep.lane[i] as usize]);
                    acc[bucket_of(created)].row(fold2(fold2(row, created as u64), prep.promised[i] as u64));
                }
                let etas = prep.etas(i);
                let ev = fold2(id, EVENT);
                // The bucket only moves forward.
                let mut b = bucket_of(created);
                for (k, (&t, &code)) in times.iter().zip(codes).enumerate().skip(first) {
                    while b < m && cutoffs[b] <= t {
                        b += 1;
                    }
                    let eta = etas.map_or(NO_ETA, |e| e[k]);
                    acc[b].row(fold2(fold2(fold2(ev, t as u64), code as u64), eta as u64));
                }
                acc
            },
        )
        .reduce(
            || vec![Digest::default(); m + 1],
            |mut x, y| {
                x.iter_mut().zip(&y).for_each(|(a, b)| a.add(b));
                x
            },
        );
    let mut out: Vec<Digest> = known[..first_unknown].iter().flatten().copied().collect();
    let mut running = base;
    for b in &buckets[first_unknown..m] {
        running.add(b);
        out.push(running);
    }
    Ok(out)
}

/// A shipment id's two hashes.
fn id_hashes(id: &str) -> (u64, u64) {
    (hash_str(SEED_A, id), hash_str(SEED_B, id))
}

/// A lane table kept between nights: its cutoff, the digest of the rows it was computed from,
/// and its rows by lane key.
#[derive(Debug, Clone)]
pub struct KeptTable {
    pub cutoff: i64,
    pub digest: Digest,
    pub lanes: Arc<Vec<LaneKey>>,
    pub stats: Vec<LaneStats>,
}

/// One cutoff day of the disruption series kept between nights: every lane's points before the
/// two-night rule (which the night reading them applies over its own range).
#[derive(Debug, Clone)]
pub struct KeptDay {
    pub day: i64,
    pub digest: Digest,
    pub lanes: Arc<Vec<LaneKey>>,
    pub points: DayPoints,
}

/// Kept tables and series days read from the state, found by cutoff.
#[derive(Debug, Clone, Default)]
pub struct Kept {
    pub tables: Vec<KeptTable>,
    pub days: Vec<KeptDay>,
    /// A cutoff up to which the kept digests are this night's too: the rows known before any
    /// cutoff at or before it are the rows the keeping night knew. The state sets it when the
    /// night reads the generation the tables were kept with and no row it decoded anew is
    /// dated before it (`state::tables::load`); the backtest, whose nights read one input, to
    /// the night before's cutoff; a night's training features, for the night after them, to
    /// the training night's cutoff at least (`Reused::hand_on`). Those digests are then taken,
    /// not computed again (`Check`).
    pub holds_until: Option<i64>,
}

impl Kept {
    /// The digest of the rows known before `cutoff`, when a kept table or day at `cutoff` has
    /// it and it still holds (`holds_until`; kept things that disagree give none).
    fn holding_digest(&self, cutoff: i64) -> Option<Digest> {
        if self.holds_until.is_none_or(|h| cutoff > h) {
            return None;
        }
        let tables = self.tables.iter().filter(|t| t.cutoff == cutoff).map(|t| t.digest);
        let days = self.days.iter().filter(|d| d.day * MICROS_PER_DAY == cutoff).map(|d| d.digest);
        let mut at = tables.chain(days);
        let first = at.next()?;
        at.all(|d| d == first).then_some(first)
    }

    /// The kept table at `cutoff` with digest `digest`, in the order of `lanes`, when it has
    /// every one of them (a lane first seen after the table was kept sends it back to be
    /// computed: its fallback values are not in it).
    pub fn find(&self, cutoff: i64, digest: Digest, lanes: &[LaneKey]) -> Option<Vec<LaneStats>> {
        let t = self.tables.iter().find(|t| t.cutoff == cutoff && t.digest == digest)?;
        in_order(&t.lanes, &t.stats, lanes)
    }

    /// The kept points of cutoff day `day` with digest `digest`, in the order of `lanes`, when
    /// they have every one of them.
    pub fn find_day(&self, day: i64, digest: Digest, lanes: &[LaneKey]) -> Option<DayPoints> {
        let d = self.days.iter().find(|d| d.day == day && d.digest == digest)?;
        in_order(&d.lanes, &d.points, lanes)
    }
}

/// `items` (one per lane of `kept_lanes`) in the order of `lanes`, when every one is there.
fn in_order<T: Clone>(kept_lanes: &[LaneKey], items: &[T], lanes: &[LaneKey]) -> Option<Vec<T>> {
    let index: HashMap<&LaneKey, usize> = kept_lanes.iter().enumerate().map(|(k, l)| (l, k)).collect();
    lanes.iter().map(|l| index.get(l).map(|&k| items[k].clone())).collect()
}

const LEVELS: [Level; 5] =
    [Level::Lane, Level::OriginCountry, Level::DestinationService, Level::Service, Level::Global];

/// Kept tables as one frame (one row per table and lane), for the state to store.
pub fn to_frame(tables: &[KeptTable]) -> Result<DataFrame> {
    let rows: Vec<(&KeptTable, usize)> = tables.iter().flat_map(|t| (0..t.stats.len()).map(move |k| (t, k))).collect();
    let col_i64 = |name: &str, f: &dyn Fn(&KeptTable, usize) -> i64| {
        Column::new(name.into(), rows.iter().map(|&(t, k)| f(t, k)).collect::<Vec<i64>>())
    };
    let col_str = |name: &str, f: &dyn Fn(&LaneKey) -> &str| {
        Column::new(name.into(), rows.iter().map(|&(t, k)| f(&t.lanes[k])).collect::<Vec<&str>>())
    };
    let mut cols = vec![
        col_i64("cutoff", &|t, _| t.cutoff),
        col_i64("digest_rows", &|t, _| t.digest.rows as i64),
        col_i64("digest_a", &|t, _| t.digest.a as i64),
        col_i64("digest_b", &|t, _| t.digest.b as i64),
        col_str("origin", &|l| &l.origin),
        col_str("destination", &|l| &l.destination),
        col_str("service", &|l| &l.service),
        col_i64("level", &|t, k| LEVELS.iter().position(|&l| l == t.stats[k].level).unwrap_or(0) as i64),
        col_i64("shipments", &|t, k| t.stats[k].shipments as i64),
        col_i64("delivered", &|t, k| t.stats[k].delivered as i64),
        col_i64("late", &|t, k| t.stats[k].late as i64),
        col_i64("milestones_tracked", &|t, k| t.stats[k].milestones_tracked as i64),
        Column::new("on_time_rate".into(), rows.iter().map(|&(t, k)| t.stats[k].on_time_rate).collect::<Vec<f64>>()),
        Column::new("window_days".into(), rows.iter().map(|&(t, k)| t.stats[k].window_days).collect::<Vec<f64>>()),
    ];
    for j in 0..N_Q {
        cols.push(Column::new(
            format!("v{j}").into(),
            rows.iter().map(|&(t, k)| t.stats[k].v[j]).collect::<Vec<f64>>(),
        ));
    }
    Ok(DataFrame::new(rows.len(), cols)?)
}

/// Reads the columns of a stored frame; an error names the frame and the column.
struct Columns<'a> {
    df: &'a DataFrame,
    what: &'static str,
}

impl Columns<'_> {
    fn bad(&self, what: String) -> Error {
        Error::internal(format!("{}: {what}", self.what))
    }
    fn i64s(&self, name: &str) -> Result<Vec<i64>> {
        self.df.column(name)?.i64()?.iter().map(|v| v.ok_or_else(|| self.bad(format!("{name} is null")))).collect()
    }
    fn f64s(&self, name: &str) -> Result<Vec<f64>> {
        Ok(self.df.column(name)?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    }
    fn bools(&self, name: &str) -> Result<Vec<bool>> {
        Ok(self.df.column(name)?.bool()?.iter().map(|v| v.unwrap_or(false)).collect())
    }
    /// Every row's key (column `key`: the cutoff or the day) and digest, and the lane of every
    /// `every`-th row (a series day's rows come `N_STAGES` to a lane): the columns both stored
    /// frames begin with.
    fn keyed(&self, key: &str, every: usize) -> Result<Keyed> {
        let (rows, a, b) = (self.i64s("digest_rows")?, self.i64s("digest_a")?, self.i64s("digest_b")?);
        let [origin, destination, service] = ["origin", "destination", "service"].map(|c| self.df.column(c));
        let (origin, destination, service) = (origin?.str()?, destination?.str()?, service?.str()?);
        let lanes = (0..self.df.height())
            .step_by(every)
            .map(|r| {
                let at = |c: &StringChunked| c.get(r).unwrap_or("").to_string();
                LaneKey { origin: at(origin), destination: at(destination), service: at(service) }
            })
            .collect();
        let digests =
            (0..rows.len()).map(|r| Digest { rows: rows[r] as u64, a: a[r] as u64, b: b[r] as u64 }).collect();
        Ok(Keyed { key: self.i64s(key)?, digests, lanes })
    }
}

/// The leading columns of a stored frame, per row.
struct Keyed {
    key: Vec<i64>,
    digests: Vec<Digest>,
    /// The lane of every `every`-th row (`Columns::keyed`).
    lanes: Vec<LaneKey>,
}

/// The tables `to_frame` stored; an error names what is wrong with the frame.
pub fn from_frame(df: &DataFrame) -> Result<Kept> {
    let cols = Columns { df, what: "kept lane tables" };
    let bad = |what: String| cols.bad(what);
    let Keyed { key: cutoff, digests, lanes: lane_keys } = cols.keyed("cutoff", 1)?;
    let (level, shipments, delivered, late, tracked) = (
        cols.i64s("level")?,
        cols.i64s("shipments")?,
        cols.i64s("delivered")?,
        cols.i64s("late")?,
        cols.i64s("milestones_tracked")?,
    );
    let (on_time, window) = (cols.f64s("on_time_rate")?, cols.f64s("window_days")?);
    let v: Vec<Vec<f64>> = (0..N_Q).map(|j| cols.f64s(&format!("v{j}"))).collect::<Result<_>>()?;
    let mut tables: Vec<KeptTable> = Vec::new();
    let mut lanes: Vec<LaneKey> = Vec::new();
    for r in 0..df.height() {
        let digest = digests[r];
        let starts = tables.last().is_none_or(|t: &KeptTable| t.cutoff != cutoff[r] || t.digest != digest);
        if starts {
            if let Some(t) = tables.last_mut() {
                t.lanes = Arc::new(std::mem::take(&mut lanes));
            }
            tables.push(KeptTable { cutoff: cutoff[r], digest, lanes: Arc::new(Vec::new()), stats: Vec::new() });
        }
        let t = tables.last_mut().expect("pushed above");
        lanes.push(lane_keys[r].clone());
        let level = *LEVELS.get(level[r] as usize).ok_or_else(|| bad(format!("level {} out of range", level[r])))?;
        let mut vals = [f64::NAN; N_Q];
        for (j, x) in vals.iter_mut().enumerate() {
            *x = v[j][r];
        }
        t.stats.push(LaneStats {
            level,
            shipments: shipments[r] as u32,
            delivered: delivered[r] as u32,
            late: late[r] as u32,
            on_time_rate: on_time[r],
            milestones_tracked: tracked[r] as u8,
            window_days: window[r],
            v: vals,
        });
    }
    if let Some(t) = tables.last_mut() {
        t.lanes = Arc::new(lanes);
    }
    Ok(Kept { tables, days: Vec::new(), holds_until: None })
}

/// What a night did with kept tables and series days, and what it hands on to the next night.
#[derive(Debug, Clone, Default)]
pub struct Reused {
    pub reused: usize,
    pub computed: usize,
    /// This night's tables, then the kept tables still valid that a later night may need (by
    /// cutoff, ascending).
    pub keep: Vec<KeptTable>,
    pub days_reused: usize,
    pub days_computed: usize,
    /// This night's disruption series days, then the kept days still valid (by day).
    pub keep_days: Vec<KeptDay>,
}

impl Reused {
    /// What this night (at `cutoff`, given `kept`) hands on to a later night reading the same
    /// input. Every table and day it hands on at or before `cutoff` was computed from, or
    /// checked against, the rows that input knows before `cutoff`, so their digests hold up to
    /// it; those after it are kept ones as they were handed in. Of the kept things it did not
    /// hand on, the ones whose digests `kept` says hold (older than this night reads, a later
    /// night may) are handed on beside them, where this night has nothing at their cutoff.
    pub fn hand_on(&mut self, cutoff: i64, kept: Option<&Kept>) -> Kept {
        let mut tables = std::mem::take(&mut self.keep);
        let mut days = std::mem::take(&mut self.keep_days);
        let kept_holds = kept.and_then(|k| k.holds_until);
        if let (Some(k), Some(h)) = (kept, kept_holds) {
            let has_table: std::collections::HashSet<i64> = tables.iter().map(|t| t.cutoff).collect();
            let has_day: std::collections::HashSet<i64> = days.iter().map(|d| d.day).collect();
            tables.extend(k.tables.iter().filter(|t| t.cutoff <= h && !has_table.contains(&t.cutoff)).cloned());
            days.extend(k.days.iter().filter(|d| d.day * MICROS_PER_DAY <= h && !has_day.contains(&d.day)).cloned());
        }
        Kept { tables, days, holds_until: Some(kept_holds.map_or(cutoff, |h| h.max(cutoff))) }
    }
}

/// One night's view of what was kept: the digests of the rows known before every cutoff it
/// may take something at.
pub struct Check<'a> {
    kept: &'a Kept,
    cutoffs: Vec<i64>,
    digests: Vec<Digest>,
    lanes: Arc<Vec<LaneKey>>,
    /// Kept things older than this are not handed on (no later night reads them).
    horizon: i64,
    /// The night's cutoff: kept things after it are handed on unchecked.
    cutoff: i64,
}

impl<'a> Check<'a> {
    /// For a night with lane tables at `table_cutoffs` (ascending; the grid's through the
    /// night, `Span`) and a series over cutoff days `first_day..=last_day`.
    pub fn new(
        prep: &Prepared,
        kept: &'a Kept,
        table_cutoffs: &[i64],
        first_day: i64,
        last_day: i64,
        step: i64,
    ) -> Result<Check<'a>> {
        // The night's own cutoff: its series days reach it, and its tables' last may be before.
        let cutoff = prep.night.cutoff();
        let horizon = (table_cutoffs[0] - step).min(first_day * MICROS_PER_DAY - step);
        let mut cutoffs: Vec<i64> = table_cutoffs.to_vec();
        cutoffs.extend((first_day..=last_day).map(|d| d * MICROS_PER_DAY));
        cutoffs.extend(kept.tables.iter().map(|t| t.cutoff));
        cutoffs.extend(kept.days.iter().map(|d| d.day * MICROS_PER_DAY));
        cutoffs.retain(|&c| c >= horizon && c <= cutoff);
        cutoffs.sort_unstable();
        cutoffs.dedup();
        let known: Vec<Option<Digest>> = cutoffs.iter().map(|&c| kept.holding_digest(c)).collect();
        let digests = digests_from(prep, &cutoffs, &known)?;
        Ok(Check { kept, cutoffs, digests, lanes: Arc::new(prep.lanes.clone()), horizon, cutoff })
    }

    fn digest(&self, c: i64) -> Digest {
        self.digests[self.cutoffs.binary_search(&c).expect("every checked cutoff has a digest")]
    }

    /// A kept thing at `c` (not among the night's own, which replace it) is handed on when a
    /// later night may read it and it still holds, or when it is after this night.
    fn hand_on(&self, c: i64, digest: Digest) -> bool {
        c > self.cutoff || (c >= self.horizon && digest == self.digest(c))
    }
}

/// The lane tables at `cutoffs` (ascending; the grid's, see `Span`). With `check`,
/// each table is taken from the kept ones when its digest still matches, and the tables to
/// keep are returned; without, every table is computed and nothing is kept (the commands that
/// keep no state).
pub fn lane_tables(
    prep: &Prepared,
    outcomes: &[super::timeline::Outcome],
    cutoffs: Vec<i64>,
    cfg: &crate::config::LaneConfig,
    check: Option<&Check>,
    reused: &mut Reused,
) -> Result<super::lanes::LaneTables> {
    use super::lanes::{LaneTables, Source};
    let known: Vec<Option<Vec<LaneStats>>> = match check {
        Some(check) => cutoffs.iter().map(|&c| check.kept.find(c, check.digest(c), &prep.lanes)).collect(),
        None => vec![None; cutoffs.len()],
    };
    reused.reused = known.iter().filter(|t| t.is_some()).count();
    reused.computed = cutoffs.len() - reused.reused;
    // Only the rows the tables to compute read (a night computing its latest table alone reads
    // each busy lane's last window, not its history).
    let tables = LaneTables::build_with(|at| Source::for_cutoffs(prep, outcomes, at, cfg), cutoffs, cfg, known)?;
    let Some(check) = check else { return Ok(tables) };
    let mut keep: Vec<KeptTable> = tables
        .cutoffs
        .iter()
        .zip(&tables.tables)
        .map(|(&c, t)| KeptTable { cutoff: c, digest: check.digest(c), lanes: check.lanes.clone(), stats: t.clone() })
        .collect();
    for t in &check.kept.tables {
        if tables.cutoffs.binary_search(&t.cutoff).is_err() && check.hand_on(t.cutoff, t.digest) {
            keep.push(t.clone());
        }
    }
    once_each(&mut keep, |t| (t.cutoff, t.digest, t.lanes.len()));
    reused.keep = keep;
    Ok(tables)
}

/// The disruption series over cutoff days `first_day..=last_day`; with `check`, the days from
/// the first through the last whose kept points still hold are taken (the rest computed), and
/// the days to keep are returned. `held(from)`: the visits of at least every shipment with a
/// stage visit the days from `from` on read (`disruption::has_visit_from`), asked for once the
/// first day to compute is known.
pub fn series(
    prep: &Prepared,
    held: impl FnOnce(i64) -> HeldVisits,
    cfg: &crate::config::LaneConfig,
    first_day: i64,
    last_day: i64,
    check: Option<&Check>,
    reused: &mut Reused,
) -> Series {
    let n = (last_day - first_day + 1).max(0) as usize;
    let Some(check) = check else {
        reused.days_computed = n;
        return disruption::series(prep, &held(first_day), cfg, first_day, last_day);
    };
    let mut known: Vec<Option<DayPoints>> = Vec::with_capacity(n);
    for d in first_day..=last_day {
        match check.kept.find_day(d, check.digest(d * MICROS_PER_DAY), &prep.lanes) {
            Some(p) => known.push(Some(p)),
            None => break,
        }
    }
    reused.days_reused = known.len();
    reused.days_computed = n - known.len();
    let from = first_day + known.len() as i64;
    known.resize(n, None);
    // Every day kept, nothing reads a visit.
    let held = if from <= last_day { held(from) } else { HeldVisits::default() };
    let series = disruption::series_with(prep, &held, cfg, first_day, last_day, known);
    drop(held);
    let mut keep: Vec<KeptDay> = (first_day..=last_day)
        .map(|d| KeptDay {
            day: d,
            digest: check.digest(d * MICROS_PER_DAY),
            lanes: check.lanes.clone(),
            points: (0..prep.lanes.len()).map(|l| std::array::from_fn(|s| *series.at(l, s, d))).collect(),
        })
        .collect();
    for k in &check.kept.days {
        let own = (first_day..=last_day).contains(&k.day);
        if !own && check.hand_on(k.day * MICROS_PER_DAY, k.digest) {
            keep.push(k.clone());
        }
    }
    once_each(&mut keep, |d| (d.day, d.digest, d.lanes.len()));
    reused.keep_days = keep;
    series
}

/// Kept tables or days sorted by their cutoff, each (cutoff, digest) once. One may be kept
/// twice with one digest (the state's and a training night's computed tonight, see
/// `night::compute`): the same values, of which the one with the most lanes is handed on;
/// kept twice, a later night could not read them back. `key`: cutoff, digest, lanes.
fn once_each<T>(keep: &mut Vec<T>, key: impl Fn(&T) -> (i64, Digest, usize)) {
    let order = |t: &T| {
        let (c, d, lanes) = key(t);
        (c, d.rows, d.a, d.b, std::cmp::Reverse(lanes))
    };
    keep.sort_by(|a, b| order(a).cmp(&order(b)));
    keep.dedup_by(|later, first| {
        let (l, f) = (key(later), key(first));
        (l.0, l.1) == (f.0, f.1)
    });
}

/// A fingerprint of what `to_frame` stores of one kept table: tables of one fingerprint are
/// stored as the same bytes. The state names a table's file by it, so a night that hands a
/// table on unchanged does not write it again (`state::tables`).
pub fn table_fingerprint(t: &KeptTable) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    keyed_fingerprint(&mut h, b"lane table", t.cutoff, t.digest, &t.lanes);
    for s in &t.stats {
        let level = LEVELS.iter().position(|&l| l == s.level).unwrap_or(0) as u64;
        for x in [level, s.shipments as u64, s.delivered as u64, s.late as u64, s.milestones_tracked as u64] {
            h.update(&x.to_le_bytes());
        }
        for x in [s.on_time_rate, s.window_days].iter().chain(&s.v) {
            h.update(&x.to_bits().to_le_bytes());
        }
    }
    h.finalize()
}

/// `table_fingerprint` of one kept series day: what `days_to_frame` stores of it.
pub fn day_fingerprint(d: &KeptDay) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    keyed_fingerprint(&mut h, b"series day", d.day, d.digest, &d.lanes);
    for p in d.points.iter().flatten() {
        for x in [p.recent_p50.to_bits(), p.baseline_p50.to_bits(), p.ratio.to_bits(), p.z.to_bits()] {
            h.update(&x.to_le_bytes());
        }
        for x in [p.recent_n as u64, p.known as u64, p.baseline_n as u64, p.pooled as u64, p.condition as u64] {
            h.update(&x.to_le_bytes());
        }
    }
    h.finalize()
}

/// The leading columns both stored frames share: the kind of record, its key (a cutoff or a
/// day), its digest and its lanes, each string with its length first.
fn keyed_fingerprint(h: &mut blake3::Hasher, kind: &[u8], key: i64, digest: Digest, lanes: &[LaneKey]) {
    h.update(kind);
    for x in [key as u64, digest.rows, digest.a, digest.b, lanes.len() as u64] {
        h.update(&x.to_le_bytes());
    }
    for l in lanes {
        for s in [&l.origin, &l.destination, &l.service] {
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
    }
}

/// Kept series days as one frame (one row per day, lane and stage), for the state to store.
pub fn days_to_frame(days: &[KeptDay]) -> Result<DataFrame> {
    let rows: Vec<(&KeptDay, usize, usize)> = days
        .iter()
        .flat_map(|d| (0..d.points.len()).flat_map(move |l| (0..N_STAGES).map(move |s| (d, l, s))))
        .collect();
    let i64s = |name: &str, f: &dyn Fn(&KeptDay, usize, usize) -> i64| {
        Column::new(name.into(), rows.iter().map(|&(d, l, s)| f(d, l, s)).collect::<Vec<i64>>())
    };
    let f64s = |name: &str, f: &dyn Fn(&Point) -> f64| {
        Column::new(name.into(), rows.iter().map(|&(d, l, s)| f(&d.points[l][s])).collect::<Vec<f64>>())
    };
    let bools = |name: &str, f: &dyn Fn(&Point) -> bool| {
        Column::new(name.into(), rows.iter().map(|&(d, l, s)| f(&d.points[l][s])).collect::<Vec<bool>>())
    };
    let strs = |name: &str, f: &dyn Fn(&LaneKey) -> &str| {
        Column::new(name.into(), rows.iter().map(|&(d, l, _)| f(&d.lanes[l])).collect::<Vec<&str>>())
    };
    let cols = vec![
        i64s("day", &|d, _, _| d.day),
        i64s("digest_rows", &|d, _, _| d.digest.rows as i64),
        i64s("digest_a", &|d, _, _| d.digest.a as i64),
        i64s("digest_b", &|d, _, _| d.digest.b as i64),
        strs("origin", &|l| &l.origin),
        strs("destination", &|l| &l.destination),
        strs("service", &|l| &l.service),
        i64s("stage", &|_, _, s| s as i64),
        f64s("recent_p50", &|p| p.recent_p50),
        f64s("baseline_p50", &|p| p.baseline_p50),
        i64s("recent_n", &|d, l, s| d.points[l][s].recent_n as i64),
        i64s("known", &|d, l, s| d.points[l][s].known as i64),
        i64s("baseline_n", &|d, l, s| d.points[l][s].baseline_n as i64),
        f64s("ratio", &|p| p.ratio),
        f64s("z", &|p| p.z),
        bools("pooled", &|p| p.pooled),
        bools("condition", &|p| p.condition),
    ];
    Ok(DataFrame::new(rows.len(), cols)?)
}

/// The series days `days_to_frame` stored, added to `kept`.
pub fn days_from_frame(df: &DataFrame, kept: &mut Kept) -> Result<()> {
    let cols = Columns { df, what: "kept series days" };
    let bad = |what: String| cols.bad(what);
    let Keyed { key: day, digests, lanes: lane_keys } = cols.keyed("day", N_STAGES)?;
    let stage = cols.i64s("stage")?;
    let (recent_p50, baseline_p50, ratio, z) =
        (cols.f64s("recent_p50")?, cols.f64s("baseline_p50")?, cols.f64s("ratio")?, cols.f64s("z")?);
    let (recent_n, known, baseline_n) = (cols.i64s("recent_n")?, cols.i64s("known")?, cols.i64s("baseline_n")?);
    let (pooled, condition) = (cols.bools("pooled")?, cols.bools("condition")?);
    if !df.height().is_multiple_of(N_STAGES) {
        return Err(bad(format!("{} rows, not whole lanes of {N_STAGES} stages", df.height())));
    }
    let mut lanes: Vec<LaneKey> = Vec::new();
    for r0 in (0..df.height()).step_by(N_STAGES) {
        let digest = digests[r0];
        let starts = kept.days.last().is_none_or(|d| d.day != day[r0] || d.digest != digest);
        if starts {
            if let Some(d) = kept.days.last_mut() {
                d.lanes = Arc::new(std::mem::take(&mut lanes));
            }
            kept.days.push(KeptDay { day: day[r0], digest, lanes: Arc::new(Vec::new()), points: Vec::new() });
        }
        lanes.push(lane_keys[r0 / N_STAGES].clone());
        let mut p = [Point::default(); N_STAGES];
        for (s, pt) in p.iter_mut().enumerate() {
            let r = r0 + s;
            if stage[r] != s as i64 || day[r] != day[r0] {
                return Err(bad(format!("row {r} is not stage {s} of its lane and day")));
            }
            *pt = Point {
                recent_p50: recent_p50[r],
                baseline_p50: baseline_p50[r],
                recent_n: recent_n[r] as u32,
                known: known[r] as u32,
                baseline_n: baseline_n[r] as u32,
                ratio: ratio[r],
                z: z[r],
                disrupted: false,
                pooled: pooled[r],
                condition: condition[r],
            };
        }
        kept.days.last_mut().expect("pushed above").points.push(p);
    }
    if let Some(d) = kept.days.last_mut() {
        d.lanes = Arc::new(lanes);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes() -> Arc<Vec<LaneKey>> {
        let lane = |o: &str| LaneKey { origin: o.into(), destination: "DE".into(), service: "standard".into() };
        Arc::new(vec![lane("CN"), lane("HK")])
    }

    type Edit<T> = Box<dyn Fn(&mut T)>;

    /// Edits `base` each way in turn: every edit changes the fingerprint. `width`: the columns
    /// the frame stores, one edit each (a column added to a frame and not to its fingerprint,
    /// or not edited here, fails the count).
    fn each_edit_changes<T: Clone>(base: &T, edits: Vec<Edit<T>>, width: usize, print: fn(&T) -> blake3::Hash) {
        assert_eq!(edits.len(), width, "a stored column without an edit here");
        assert_eq!(print(&base.clone()), print(base));
        for (k, edit) in edits.iter().enumerate() {
            let mut t = base.clone();
            edit(&mut t);
            assert_ne!(print(&t), print(base), "edit {k} left the fingerprint as it was");
        }
    }

    /// The fingerprint names a kept table's or day's file, and a night names again the file of
    /// a fingerprint it read: two tables or days a stored column tells apart must never share
    /// one, or a changed table would be read back as the old one's values.
    #[test]
    fn every_stored_field_changes_a_kept_tables_fingerprint() {
        let stats = LaneStats {
            level: Level::Lane,
            shipments: 10,
            delivered: 8,
            late: 2,
            on_time_rate: 0.75,
            milestones_tracked: 5,
            window_days: 90.0,
            v: std::array::from_fn(|j| j as f64),
        };
        let table =
            KeptTable { cutoff: 1_000, digest: Digest { rows: 3, a: 4, b: 5 }, lanes: lanes(), stats: vec![stats; 2] };
        fn lane(t: &mut KeptTable) -> &mut LaneKey {
            &mut Arc::make_mut(&mut t.lanes)[1]
        }
        let mut edits: Vec<Edit<KeptTable>> = vec![
            Box::new(|t| t.cutoff += 1),
            Box::new(|t| t.digest.rows += 1),
            Box::new(|t| t.digest.a += 1),
            Box::new(|t| t.digest.b += 1),
            Box::new(|t| lane(t).origin = "TW".into()),
            Box::new(|t| lane(t).destination = "FR".into()),
            Box::new(|t| lane(t).service = "express".into()),
            Box::new(|t| t.stats[1].level = Level::Global),
            Box::new(|t| t.stats[1].shipments += 1),
            Box::new(|t| t.stats[1].delivered += 1),
            Box::new(|t| t.stats[1].late += 1),
            Box::new(|t| t.stats[1].milestones_tracked += 1),
            Box::new(|t| t.stats[1].on_time_rate = 0.5),
            Box::new(|t| t.stats[1].window_days = f64::NAN),
        ];
        for j in 0..N_Q {
            edits.push(Box::new(move |t| t.stats[1].v[j] += 0.5));
        }
        let width = to_frame(std::slice::from_ref(&table)).unwrap().width();
        each_edit_changes(&table, edits, width, table_fingerprint);
    }

    /// `every_stored_field_changes_a_kept_tables_fingerprint` for a series day; the flag the
    /// two-night rule sets is not stored (a night applies it again), so it changes nothing.
    #[test]
    fn every_stored_field_changes_a_kept_days_fingerprint() {
        let point = |s: usize| Point { recent_p50: s as f64, recent_n: 9, baseline_n: 12, ..Point::default() };
        let day = KeptDay {
            day: 20_000,
            digest: Digest { rows: 3, a: 4, b: 5 },
            lanes: lanes(),
            points: vec![std::array::from_fn(point); 2],
        };
        fn lane(d: &mut KeptDay) -> &mut LaneKey {
            &mut Arc::make_mut(&mut d.lanes)[1]
        }
        let edits: Vec<Edit<KeptDay>> = vec![
            Box::new(|d| d.day += 1),
            Box::new(|d| d.digest.rows += 1),
            Box::new(|d| d.digest.a += 1),
            Box::new(|d| d.digest.b += 1),
            Box::new(|d| lane(d).origin = "TW".into()),
            Box::new(|d| lane(d).destination = "FR".into()),
            Box::new(|d| lane(d).service = "express".into()),
            // The stage column: a lane's points in another stage order.
            Box::new(|d| d.points[1].swap(0, 1)),
            Box::new(|d| d.points[1][2].recent_p50 += 0.5),
            Box::new(|d| d.points[1][2].baseline_p50 += 0.5),
            Box::new(|d| d.points[1][2].recent_n += 1),
            Box::new(|d| d.points[1][2].known += 1),
            Box::new(|d| d.points[1][2].baseline_n += 1),
            Box::new(|d| d.points[1][2].ratio += 0.5),
            Box::new(|d| d.points[1][2].z += 0.5),
            Box::new(|d| d.points[1][2].pooled = true),
            Box::new(|d| d.points[1][2].condition = true),
        ];
        let width = days_to_frame(std::slice::from_ref(&day)).unwrap().width();
        each_edit_changes(&day, edits, width, day_fingerprint);
        let mut flagged = day.clone();
        flagged.points[1][2].disrupted = true;
        assert_eq!(day_fingerprint(&flagged), day_fingerprint(&day));
    }

    /// What a training night hands on to the night after it is trusted only as far as it holds:
    /// its own tables and days up to its cutoff, and of the kept things it did not hand on, only
    /// those the kept `holds_until` covers (a stale one, trusted, would be read for tonight's).
    #[test]
    fn a_training_night_hands_on_only_what_holds_up_to_its_cutoff() {
        let day = MICROS_PER_DAY;
        let table = |c: i64, a: u64| KeptTable {
            cutoff: c * day,
            digest: Digest { rows: 1, a, b: 0 },
            lanes: lanes(),
            stats: vec![],
        };
        let kept_day =
            |d: i64, a: u64| KeptDay { day: d, digest: Digest { rows: 1, a, b: 0 }, lanes: lanes(), points: vec![] };
        // The state's: tables at days 10, 20, 30 and series days 10, 20, 30, holding up to day 20.
        let kept = Kept {
            tables: vec![table(10, 1), table(20, 1), table(30, 1)],
            days: vec![kept_day(10, 1), kept_day(20, 1), kept_day(30, 1)],
            holds_until: Some(20 * day),
        };
        // The training night at day 25 computed day 20's again (other digest) and day 25's, and
        // handed on day 30's unchecked.
        let mut reused = Reused {
            keep: vec![table(20, 2), table(25, 2), table(30, 1)],
            keep_days: vec![kept_day(20, 2), kept_day(25, 2), kept_day(30, 1)],
            ..Reused::default()
        };
        let on = reused.clone().hand_on(25 * day, Some(&kept));
        assert_eq!(on.holds_until, Some(25 * day));
        let tables: Vec<(i64, u64)> = on.tables.iter().map(|t| (t.cutoff / day, t.digest.a)).collect();
        assert_eq!(tables, vec![(20, 2), (25, 2), (30, 1), (10, 1)]);
        let days: Vec<(i64, u64)> = on.days.iter().map(|d| (d.day, d.digest.a)).collect();
        assert_eq!(days, vec![(20, 2), (25, 2), (30, 1), (10, 1)]);
        // Taken as tonight's up to day 25: day 20's is the training night's, not the state's.
        assert_eq!(on.holding_digest(20 * day).map(|d| d.a), Some(2));
        assert_eq!(on.holding_digest(25 * day).map(|d| d.a), Some(2));
        assert_eq!(on.holding_digest(30 * day), None);
        // A state holding less far than the kept day 10: it is not handed on.
        let stale = Kept { holds_until: Some(5 * day), ..kept.clone() };
        let on = reused.clone().hand_on(25 * day, Some(&stale));
        assert!(on.tables.iter().all(|t| t.cutoff != 10 * day));
        assert!(on.days.iter().all(|d| d.day != 10));
        // A state holding further than the training night: it holds as far.
        let further = Kept { holds_until: Some(30 * day), ..kept.clone() };
        let on = reused.clone().hand_on(25 * day, Some(&further));
        assert_eq!(on.holds_until, Some(30 * day));
        assert_eq!(on.holding_digest(30 * day).map(|d| d.a), Some(1));
        // Nothing kept: what the night hands on holds up to its cutoff.
        let on = reused.hand_on(25 * day, None);
        assert_eq!((on.holds_until, on.tables.len(), on.days.len()), (Some(25 * day), 3, 3));
    }
}
