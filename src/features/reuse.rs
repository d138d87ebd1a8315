//! Lane tables carried from night to night (the state's `lane-tables`, see `state`).
//!
//! A night keeps a lane table at its cutoff and at every `stats_every_days` before it across the
//! training window (18 at the default settings), and each is the expensive part of the lane
//! statistics. A lane table as of cutoff C depends on `[lanes]` and on the rows known before C
//! alone: shipments created before C and, of their events, those before C (the point-in-time
//! rule; `each_earlier_lane_table_equals_the_table_of_its_own_night` and the future-data tests
//! hold it). So night N's table at N − 7k is the table night N − 7k computed as its latest, and
//! a night that finds it in the state need not compute it again.
//!
//! A kept table is reused only when the rows known before its cutoff are still the same, which a
//! [`Digest`] of exactly those rows checks: 128 bits of order-independent fingerprint (a
//! wrapping sum of two independent 64-bit hashes per row) and the row count. Data arriving
//! late for an old day (an event scanned before C, a shipment created before C that came in a
//! later file) changes the digest of every cutoff after it, and those tables, and only those,
//! are computed again. The digest is taken of the decoded rows, not of files: the status
//! vocabulary, time zone and column mapping are in it, and a file rewritten with the same rows
//! still matches. Reuse is exact: a reused table is the one computing it would give, bit for
//! bit (the ten-night state test compares every night with a full refresh).

use std::collections::HashMap;
use std::sync::Arc;

use polars::prelude::*;
use rayon::prelude::*;

use super::lanes::{LaneStats, Level, N_Q};
use super::prepare::{LaneKey, Prepared};
use crate::error::{Error, Result};
use crate::sampling::{hash_str, mix};
use crate::schema::MICROS_PER_DAY;
use crate::validate::NO_ETA;

/// A fingerprint of the rows known before one cutoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Digest {
    pub rows: u64,
    pub a: u64,
    pub b: u64,
}

impl Digest {
    fn add(&mut self, o: &Digest) {
        self.rows = self.rows.wrapping_add(o.rows);
        self.a = self.a.wrapping_add(o.a);
        self.b = self.b.wrapping_add(o.b);
    }

    fn row(&mut self, (a, b): (u64, u64)) {
        self.rows += 1;
        self.a = self.a.wrapping_add(a);
        self.b = self.b.wrapping_add(b);
    }
}

/// Seeds of the two hashes, and tags keeping a shipment's row apart from an event's.
const SEED_A: u64 = 0x6c61_6e65_7761_7463;
const SEED_B: u64 = 0x7461_626c_6573_2131;
const SHIPMENT: u64 = 1;
const EVENT: u64 = 2;

fn fold(h: u64, x: u64) -> u64 {
    mix(h ^ x)
}

fn fold2(h: (u64, u64), x: u64) -> (u64, u64) {
    (fold(h.0, x), fold(h.1, x.rotate_left(17)))
}

/// The digests of the rows known before each of `cutoffs` (ascending): a shipment row counts
/// before C when it was created before C, an event when it was scanned before C and its
/// shipment created before C (what `prepare` keeps at C).
pub fn digests(prep: &Prepared, cutoffs: &[i64]) -> Result<Vec<Digest>> {
    debug_assert!(cutoffs.windows(2).all(|w| w[0] < w[1]));
    let m = cutoffs.len();
    let lane_hash: Vec<(u64, u64)> = prep
        .lanes
        .iter()
        .map(|l| {
            let key = format!("{}\u{1f}{}\u{1f}{}", l.origin, l.destination, l.service);
            (hash_str(SEED_A, &key), hash_str(SEED_B, &key))
        })
        .collect();
    let ids: Vec<&str> = prep.shipments.column("shipment_id")?.str()?.iter().map(|s| s.unwrap_or("")).collect();
    // Per bucket b: the rows dated in [cutoffs[b - 1], cutoffs[b]); they count towards every
    // cutoff from b on.
    let buckets = (0..prep.len())
        .into_par_iter()
        .fold(
            || vec![Digest::default(); m + 1],
            |mut acc, i| {
                let created = prep.created[i];
                let id = (hash_str(SEED_A, ids[i]), hash_str(SEED_B, ids[i]));
                let bucket_of = |t: i64| cutoffs.partition_point(|&c| c <= t);
                let mut row = fold2(fold2(id, SHIPMENT), lane_hash[prep.lane[i] as usize].0);
                row = fold2(
                    fold2(fold2(row, lane_hash[prep.lane[i] as usize].1), created as u64),
                    prep.promised[i] as u64,
                );
                acc[bucket_of(created)].row(row);
                let (times, codes) = prep.events(i);
                let etas = prep.etas(i);
                let ev = fold2(id, EVENT);
                // Events come in time order: the bucket only moves forward.
                let mut b = bucket_of(created);
                for (k, (&t, &code)) in times.iter().zip(codes).enumerate() {
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
    let mut out = Vec::with_capacity(m);
    let mut running = Digest::default();
    for b in &buckets[..m] {
        running.add(b);
        out.push(running);
    }
    Ok(out)
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

/// Kept tables read from the state, found by cutoff.
#[derive(Debug, Clone, Default)]
pub struct Kept {
    pub tables: Vec<KeptTable>,
}

impl Kept {
    /// The kept table at `cutoff` with digest `digest`, in the order of `lanes`, when it has
    /// every one of them (a lane first seen after the table was kept sends it back to be
    /// computed: its fallback values are not in it).
    pub fn find(&self, cutoff: i64, digest: Digest, lanes: &[LaneKey]) -> Option<Vec<LaneStats>> {
        let t = self.tables.iter().find(|t| t.cutoff == cutoff && t.digest == digest)?;
        let index: HashMap<&LaneKey, usize> = t.lanes.iter().enumerate().map(|(k, l)| (l, k)).collect();
        lanes.iter().map(|l| index.get(l).map(|&k| t.stats[k].clone())).collect()
    }

    /// The cutoffs of the kept tables, ascending and distinct.
    pub fn cutoffs(&self) -> Vec<i64> {
        let mut c: Vec<i64> = self.tables.iter().map(|t| t.cutoff).collect();
        c.sort_unstable();
        c.dedup();
        c
    }
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

/// The tables `to_frame` stored; an error names what is wrong with the frame.
pub fn from_frame(df: &DataFrame) -> Result<Kept> {
    let bad = |what: String| Error::internal(format!("kept lane tables: {what}"));
    let i64s = |name: &str| -> Result<Vec<i64>> {
        df.column(name)?.i64()?.iter().map(|v| v.ok_or_else(|| bad(format!("{name} is null")))).collect()
    };
    let f64s = |name: &str| -> Result<Vec<f64>> {
        Ok(df.column(name)?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    };
    let strs = |name: &str| -> Result<Vec<String>> {
        Ok(df.column(name)?.str()?.iter().map(|v| v.unwrap_or("").to_string()).collect())
    };
    let (cutoff, rows, a, b) = (i64s("cutoff")?, i64s("digest_rows")?, i64s("digest_a")?, i64s("digest_b")?);
    let (origin, destination, service) = (strs("origin")?, strs("destination")?, strs("service")?);
    let (level, shipments, delivered, late, tracked) =
        (i64s("level")?, i64s("shipments")?, i64s("delivered")?, i64s("late")?, i64s("milestones_tracked")?);
    let (on_time, window) = (f64s("on_time_rate")?, f64s("window_days")?);
    let v: Vec<Vec<f64>> = (0..N_Q).map(|j| f64s(&format!("v{j}"))).collect::<Result<_>>()?;
    let mut tables: Vec<KeptTable> = Vec::new();
    let mut lanes: Vec<LaneKey> = Vec::new();
    for r in 0..df.height() {
        let digest = Digest { rows: rows[r] as u64, a: a[r] as u64, b: b[r] as u64 };
        let starts = tables.last().is_none_or(|t: &KeptTable| t.cutoff != cutoff[r] || t.digest != digest);
        if starts {
            if let Some(t) = tables.last_mut() {
                t.lanes = Arc::new(std::mem::take(&mut lanes));
            }
            tables.push(KeptTable { cutoff: cutoff[r], digest, lanes: Arc::new(Vec::new()), stats: Vec::new() });
        }
        let t = tables.last_mut().expect("pushed above");
        lanes.push(LaneKey {
            origin: origin[r].clone(),
            destination: destination[r].clone(),
            service: service[r].clone(),
        });
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
    Ok(Kept { tables })
}

/// What a night did with kept tables, and the tables it hands on to the next night.
#[derive(Debug, Clone, Default)]
pub struct Reused {
    pub reused: usize,
    pub computed: usize,
    /// This night's tables, then the kept tables still valid that a later night may need (by
    /// cutoff, ascending).
    pub keep: Vec<KeptTable>,
}

/// The lane tables at `cutoffs` (ascending; the last is the night's cutoff). With `kept`, each
/// table is taken from it when its digest still matches, and the tables to keep are returned;
/// without, every table is computed and nothing is kept (the commands that keep no state).
pub fn lane_tables(
    prep: &Prepared,
    states: &[super::timeline::State],
    outcomes: &[super::timeline::Outcome],
    cutoffs: Vec<i64>,
    cfg: &crate::config::LaneConfig,
    step: i64,
    kept: Option<&Kept>,
) -> Result<(super::lanes::LaneTables, Reused)> {
    use super::lanes::{LaneTables, Source};
    let oldest = cfg.oldest_days() as i64 * MICROS_PER_DAY;
    let Some(kept) = kept else {
        let source = Source::new(prep, states, outcomes, cutoffs[0] - oldest)?;
        let tables = LaneTables::build(&source, cutoffs, cfg)?;
        let computed = tables.cutoffs.len();
        return Ok((tables, Reused { computed, ..Reused::default() }));
    };
    let night_cutoff = *cutoffs.last().expect("at least the night's cutoff");
    // Kept tables a later night may still need: from a step before this night's first cutoff.
    let horizon = cutoffs[0] - step;
    let mut checked: Vec<i64> = kept.cutoffs().into_iter().filter(|&c| c >= horizon && c <= night_cutoff).collect();
    checked.extend(&cutoffs);
    checked.sort_unstable();
    checked.dedup();
    let digest_list = digests(prep, &checked)?;
    let digest_at = |c: i64| digest_list[checked.binary_search(&c).expect("every checked cutoff has a digest")];
    let known: Vec<Option<Vec<LaneStats>>> = cutoffs.iter().map(|&c| kept.find(c, digest_at(c), &prep.lanes)).collect();
    let reused = known.iter().filter(|t| t.is_some()).count();
    let source = match known.iter().position(|t| t.is_none()) {
        // Rows resolved before the first table to compute, less its longest window, are never read.
        Some(k) => Some(Source::new(prep, states, outcomes, cutoffs[k] - oldest)?),
        None => None,
    };
    let tables = LaneTables::build_with(source.as_ref(), cutoffs, cfg, known)?;
    drop(source);
    let lanes = Arc::new(prep.lanes.clone());
    let mut keep: Vec<KeptTable> = tables
        .cutoffs
        .iter()
        .zip(&tables.tables)
        .map(|(&c, t)| KeptTable { cutoff: c, digest: digest_at(c), lanes: lanes.clone(), stats: t.clone() })
        .collect();
    for t in &kept.tables {
        let later = t.cutoff > night_cutoff;
        let still_valid = t.cutoff >= horizon
            && t.cutoff <= night_cutoff
            && tables.cutoffs.binary_search(&t.cutoff).is_err()
            && t.digest == digest_at(t.cutoff);
        if later || still_valid {
            keep.push(t.clone());
        }
    }
    keep.sort_by_key(|t| t.cutoff);
    let computed = tables.cutoffs.len() - reused;
    Ok((tables, Reused { reused, computed, keep }))
}
