//! The point-in-time view of the input at a cutoff C: shipments created before C and their
//! events before C, indexed for fast per-shipment work. Nothing at or after C survives this
//! step, which is what makes every later stage leak-free by construction.

use std::borrow::Cow;

use polars::prelude::*;
use rayon::prelude::*;

use crate::calendar::Night;
use crate::error::Result;
use crate::validate::{CleanInput, Events};

/// Shipments visible at the night's cutoff, sorted by shipment_id, with their events in CSR form.
pub struct Prepared {
    /// The night this view is as of; its cutoff bounds everything below.
    pub night: Night,
    /// The visible shipments, sorted by shipment_id: their string columns other than the lane's
    /// (`shipment_id`, `seller_id`, `carrier`). Times, weights and values are the vectors
    /// below and the lane's keys are `lanes[lane[i]]` (`column` gives either as a column);
    /// keeping them here too was 80 bytes a shipment.
    pub shipments: DataFrame,
    pub created: Vec<i64>,
    pub promised: Vec<i64>,
    pub weight_g: Vec<f64>,
    pub declared_value: Vec<f64>,
    pub insured: Vec<bool>,
    pub lane: Vec<u32>,
    pub seller: Vec<u32>,
    pub lanes: Vec<LaneKey>,
    /// Seller ids by dense seller id (sorted; a missing id is "").
    sellers: Vec<String>,
    /// Events of shipment i are `ev_time[ev_start[i]..ev_start[i + 1]]`, in time order.
    pub ev_start: Vec<u32>,
    pub ev_time: Vec<i64>,
    pub ev_code: Vec<u8>,
    /// The carrier's estimate at each event (`validate::NO_ETA` where none), when the input has it.
    pub ev_eta: Option<Vec<i64>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LaneKey {
    pub origin: String,
    pub destination: String,
    pub service: String,
}

crate::codec_struct!(LaneKey { origin, destination, service });

impl LaneKey {
    /// `CN-GD` → `CN`: the first level of the fallback hierarchy groups origins by country.
    pub fn origin_country(&self) -> &str {
        self.origin.split(['-', '_', ' ']).next().unwrap_or(&self.origin)
    }

    pub fn label(&self) -> String {
        lane_label(&self.origin, &self.destination, &self.service)
    }
}

/// How a lane is named to people (summaries, logs, the report): `CN→DE standard`.
pub fn lane_label(origin: &str, destination: &str, service: &str) -> String {
    format!("{origin}→{destination} {service}")
}

impl Prepared {
    pub fn len(&self) -> usize {
        self.created.len()
    }

    pub fn is_empty(&self) -> bool {
        self.created.is_empty()
    }

    /// Seller ids by dense seller id.
    pub fn seller_names(&self) -> &[String] {
        &self.sellers
    }

    /// Distinct sellers (dense seller ids are below this).
    pub fn n_sellers(&self) -> usize {
        self.sellers.len()
    }

    /// Drops the events (see `FeatureSet::release_row_sources`).
    pub fn release_events(&mut self) {
        self.ev_start = Vec::new();
        self.ev_time = Vec::new();
        self.ev_code = Vec::new();
        self.ev_eta = None;
    }

    pub fn events(&self, i: usize) -> (&[i64], &[u8]) {
        let (a, b) = (self.ev_start[i] as usize, self.ev_start[i + 1] as usize);
        (&self.ev_time[a..b], &self.ev_code[a..b])
    }

    /// Column `name` of `scores.parquet`-style outputs for shipments `idx`: one of the frame's,
    /// or the lane's `origin`, `destination` or `service`.
    pub fn column(&self, name: &str, idx: &IdxCa) -> Result<Column> {
        let key = |f: fn(&LaneKey) -> &str| -> Column {
            let v: Vec<&str> =
                idx.into_no_null_iter().map(|i| f(&self.lanes[self.lane[i as usize] as usize])).collect();
            Column::new(name.into(), v)
        };
        Ok(match name {
            "origin" => key(|k| &k.origin),
            "destination" => key(|k| &k.destination),
            "service" => key(|k| &k.service),
            _ => self.shipments.column(name)?.take(idx)?,
        })
    }

    /// Shipment i's carrier estimates, aligned with `events(i)`, when the input has them.
    pub fn etas(&self, i: usize) -> Option<&[i64]> {
        let (a, b) = (self.ev_start[i] as usize, self.ev_start[i + 1] as usize);
        self.ev_eta.as_ref().map(|e| &e[a..b])
    }
}

fn micros(df: &DataFrame, name: &str) -> Result<Vec<i64>> {
    let s = df.column(name)?.as_materialized_series().to_physical_repr().into_owned();
    Ok(s.i64()?.into_no_null_iter().collect())
}

/// Interns keys in sorted order: each row's dense id, and the distinct keys by id.
fn dense_ids<K: Ord + std::hash::Hash + Copy>(values: impl Iterator<Item = K>) -> (Vec<u32>, Vec<K>) {
    let mut seen = FirstSeen::default();
    let raw: Vec<u32> = values.map(|v| seen.number(v)).collect();
    let keys = seen.keys;
    let mut order: Vec<u32> = (0..keys.len() as u32).collect();
    order.sort_unstable_by_key(|&k| keys[k as usize]);
    let mut remap = vec![0u32; keys.len()];
    for (new, &old) in order.iter().enumerate() {
        remap[old as usize] = new as u32;
    }
    (raw.into_iter().map(|x| remap[x as usize]).collect(), order.into_iter().map(|k| keys[k as usize]).collect())
}

/// A row's string as a key of its 16-byte view, hashed rather than the string's bytes. A string
/// of up to 12 bytes sits in its view; a longer one is named by its chunk, buffer and offset.
/// Rows of equal keys hold equal strings, and the same string stored twice may get two keys,
/// which `dense_ids` over the keys' strings merges. Hashing and comparing every shipment's lane
/// and seller strings was most of this step on a night that reads a kept state.
type ViewKey = (u32, u128);

/// The key of "" (an all-zero view) and of a null, which reads as "".
const EMPTY_KEY: ViewKey = (ANY_CHUNK, 0);

/// The chunk part of an inline view's key: it reads no buffer.
const ANY_CHUNK: u32 = u32::MAX;

/// Calls `each(row, code)` for every row of a string column in order, `code` the number of the
/// row's key as first seen; returns each number's string.
fn view_codes<'a>(col: &'a StringChunked, mut each: impl FnMut(usize, u32)) -> Vec<&'a str> {
    use crate::io::INLINE_VIEW_BYTES as INLINE;
    let mut code_of: PlHashMap<ViewKey, u32> = PlHashMap::new();
    let mut values: Vec<&str> = Vec::new();
    let mut row = 0;
    for (c, (arr, chunk)) in col.downcast_iter().zip(col.chunks()).enumerate() {
        // Read through the chunk as a `dyn Array`, whose methods need no import.
        let validity = chunk.validity();
        for (r, view) in arr.views().iter().enumerate() {
            let key = match (validity.is_some_and(|v| !v.get_bit(r)), view.length <= INLINE) {
                (true, _) => EMPTY_KEY,
                (false, true) => (ANY_CHUNK, view.as_u128()),
                (false, false) => (c as u32, view.as_u128()),
            };
            let next = values.len() as u32;
            let code = *code_of.entry(key).or_insert_with(|| {
                values.push(if key == EMPTY_KEY { "" } else { arr.value(r) });
                next
            });
            each(row, code);
            row += 1;
        }
    }
    values
}

/// `dense_ids` of a string column's values (a null reads as ""), through their views' keys.
fn dense_names(col: &StringChunked) -> (Vec<u32>, Vec<&str>) {
    let mut codes = Vec::with_capacity(col.len());
    let values = view_codes(col, |_, c| codes.push(c));
    let (remap, keys) = dense_ids(values.into_iter());
    (codes.into_iter().map(|c| remap[c as usize]).collect(), keys)
}

/// `dense_ids` of rows' (origin, destination, service), through each column's views' keys. One
/// number per row, of its origin, then of its (origin, destination) and then of its triple, each
/// as first seen: a column's numbers are never held beside another's (40 MB each at 10M).
fn dense_lanes<'a>(
    o: &'a StringChunked,
    d: &'a StringChunked,
    s: &'a StringChunked,
) -> (Vec<u32>, Vec<(&'a str, &'a str, &'a str)>) {
    let mut lane = Vec::with_capacity(o.len());
    let o_values = view_codes(o, |_, c| lane.push(c));
    let mut pairs = FirstSeen::default();
    let d_values = view_codes(d, |i, c| lane[i] = pairs.number((lane[i], c)));
    let mut triples = FirstSeen::default();
    let s_values = view_codes(s, |i, c| lane[i] = triples.number((lane[i], c)));
    // Each triple's strings, numbered as `dense_ids` numbers strings.
    let named = triples.keys.iter().map(|&(p, c)| {
        let (a, b) = pairs.keys[p as usize];
        (o_values[a as usize], d_values[b as usize], s_values[c as usize])
    });
    let (remap, keys) = dense_ids(named);
    (lane.into_iter().map(|t| remap[t as usize]).collect(), keys)
}

/// Numbers values in the order they are first seen, keeping the values by number.
struct FirstSeen<K> {
    // polars' hasher, not SipHash: `dense_ids` numbers the keys again in key order, so the
    // hasher cannot change ids, and at 10M shipments SipHash was most of `prepare`.
    map: PlHashMap<K, u32>,
    keys: Vec<K>,
}

impl<K> Default for FirstSeen<K> {
    fn default() -> Self {
        FirstSeen { map: PlHashMap::default(), keys: Vec::new() }
    }
}

impl<K: std::hash::Hash + Eq + Copy> FirstSeen<K> {
    fn number(&mut self, v: K) -> u32 {
        let FirstSeen { map, keys } = self;
        let next = keys.len() as u32;
        *map.entry(v).or_insert_with(|| {
            keys.push(v);
            next
        })
    }
}

/// A fingerprint of everything `prepare` reads of `clean` at `night`'s cutoff: of each shipment
/// created before it, every column `Prepared` keeps (nulls apart from empty strings), and of its
/// events before it, time, milestone code and carrier estimate. Two inputs with the same digest
/// at a cutoff give the same `Prepared` there, so the same features and model (the training
/// schedule keeps a model by it, see `night`); a sum over shipments, so blocks of them are
/// taken in parallel.
pub fn digest(clean: &CleanInput, night: Night) -> Result<super::reuse::Digest> {
    use super::reuse::{Digest, EVENT, SEED_A, SEED_B, SHIPMENT, fold2};
    use crate::sampling::hash_str;
    let cutoff = night.cutoff();
    let ev = &clean.events;
    // Blocks of shipments in parallel; in each, one running hash per shipment folded column by
    // column over the block's slice of the frame (a zero-copy view), then its events.
    const BLOCK: usize = 1 << 16;
    let n = clean.shipments.height();
    let blocks: Vec<usize> = (0..n).step_by(BLOCK).collect();
    let parts = blocks
        .into_par_iter()
        .map(|at| -> Result<Digest> {
            let sh = clean.shipments.slice(at as i64, BLOCK);
            let created = micros(&sh, "created_at")?;
            let mut h: Vec<(u64, u64)> = vec![(SEED_A ^ SHIPMENT, SEED_B ^ SHIPMENT); created.len()];
            let mut fold_all = |values: &mut dyn Iterator<Item = u64>| {
                for (x, v) in h.iter_mut().zip(values) {
                    *x = fold2(*x, v);
                }
            };
            fold_all(&mut created.iter().map(|&t| t as u64));
            fold_all(&mut micros(&sh, "promised_at")?.into_iter().map(|t| t as u64));
            for name in ["weight_g", "declared_value"] {
                fold_all(&mut sh.column(name)?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN).to_bits()));
            }
            fold_all(&mut sh.column("insured")?.bool()?.iter().map(|v| v.unwrap_or(false) as u64));
            for name in ["shipment_id", "seller_id", "carrier", "origin", "destination", "service"] {
                let col = sh.column(name)?.str()?;
                fold_all(&mut col.iter().map(|v| v.map_or(0, |s| hash_str(SEED_A, s) | 1)));
            }
            let mut d = Digest::default();
            for k in (0..created.len()).filter(|&k| created[k] < cutoff) {
                let (times, codes) = ev.of(at + k);
                let etas = ev.eta_of(at + k);
                let m = times.partition_point(|&t| t < cutoff);
                let mut row = fold2(h[k], m as u64);
                for (j, (&t, &code)) in times[..m].iter().zip(codes).enumerate() {
                    let eta = etas.map_or(crate::validate::NO_ETA, |e| e[j]);
                    row = fold2(fold2(fold2(fold2(row, EVENT), t as u64), code as u64), eta as u64);
                }
                d.row(row);
            }
            Ok(d)
        })
        .collect::<Result<Vec<Digest>>>()?;
    let mut total = Digest::default();
    for d in &parts {
        total.add(d);
    }
    Ok(total)
}

/// The shipments' string columns of few distinct values.
const NAME_COLUMNS: [&str; 5] = ["seller_id", "carrier", "origin", "destination", "service"];

/// Shipment columns of this size or more (polars' estimate: 732 MB at 10M shipments, 73 at 1M)
/// wait in `lend`'s scratch file; `LANEWATCH_SPILL_ABOVE_MB` sets another size (0: always).
/// Below it, writing them out and reading them back costs more than the memory it frees is
/// worth: 0.4-0.6 s of a 1M-shipment full refresh for about 120 MB of peak, where at 10M
/// shipments what it frees keeps the night within 4 GiB (3,847 MiB).
const SPILL_ABOVE_MB: usize = 512;

/// Whether `lend` sets these shipment columns aside in its scratch file.
fn worth_spilling(shipments: &DataFrame) -> bool {
    let above = std::env::var("LANEWATCH_SPILL_ABOVE_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(SPILL_ABOVE_MB);
    let mb = shipments.estimated_size() / (1 << 20);
    tracing::debug!(mb, above, "lend: shipment columns' size");
    mb >= above
}

/// Lends an owned input to `f` as the input of an earlier night's features (`night`): each
/// shipment's events at or after its cutoff, and those of shipments created after it, are set
/// aside and the input is handed to `f` cut down in place, which `prepare` then keeps as it
/// is; `f` builds that night's features from it and gives back their `Prepared`, whose events
/// are rejoined with the ones set aside. The input comes back value for value as it was. A night
/// training on an earlier training night (`night::compute`) would otherwise hold a second copy
/// of its events: 1.5 GB at 10M shipments. With `spill`, a scratch file, the input's shipment
/// columns wait there rather than in memory while `f` runs (1.3 GB at 10M shipments), when
/// they are large enough for it to pay (`worth_spilling`).
pub fn lend<T>(
    clean: CleanInput,
    night: Night,
    spill: Option<&std::path::Path>,
    f: impl FnOnce(CleanInput) -> Result<(T, Prepared)>,
) -> Result<(T, CleanInput)> {
    let cutoff = night.cutoff();
    let listed: Vec<bool> = micros(&clean.shipments, "created_at")?.into_iter().map(|c| c < cutoff).collect();
    let CleanInput { shipments, mut events } = clean;
    let keep: Vec<u32> = (0..listed.len())
        .map(|i| if listed[i] { events.of(i).0.partition_point(|&t| t < cutoff) as u32 } else { 0 })
        .collect();
    let tails = events.split_tails(&keep);
    drop(keep);
    let (out, prep, shipments) = match spill.filter(|_| worth_spilling(&shipments)) {
        Some(path) => {
            let t0 = std::time::Instant::now();
            // The names, few and repeated, are set aside as codes into their distinct values,
            // kept here: read back through them, a name's rows share its bytes again, as the
            // decoded input's do, where a plain round trip would give each row a copy of a name
            // longer than 12 bytes.
            let mut coded = shipments.clone();
            // The columns coded side by side (a pass of hashing each), then swapped in.
            let dense = NAME_COLUMNS
                .par_iter()
                .map(|&name| Ok((name, dense_ids(shipments.column(name)?.str()?.iter()))))
                .collect::<Result<Vec<_>>>()?;
            let mut names = Vec::with_capacity(NAME_COLUMNS.len());
            for (name, (codes, values)) in dense {
                names.push(StringChunked::from_iter_options(name.into(), values.into_iter()));
                coded.with_column(Column::new(name.into(), codes))?;
            }
            crate::memory::log_step("lend", "names coded", t0);
            crate::io::spill(path, &mut coded)?;
            drop(coded);
            crate::memory::log_step("lend", "shipments spilled", t0);
            let (out, prep) = f(CleanInput { shipments, events })?;
            // What `f` freed goes back first, so the columns read back do not add to it.
            crate::memory::release_free_memory();
            let t0 = std::time::Instant::now();
            let mut shipments = crate::io::unspill(path)?;
            crate::memory::log_step("lend", "shipments read back", t0);
            for values in names {
                let codes = shipments.column(values.name())?.as_materialized_series().cast(&IDX_DTYPE)?;
                shipments.with_column(values.take(codes.idx()?)?.into_series().into_column())?;
            }
            crate::memory::log_step("lend", "names decoded", t0);
            (out, prep, shipments)
        }
        None => {
            let (out, prep) = f(CleanInput { shipments: shipments.clone(), events })?;
            (out, prep, shipments)
        }
    };
    debug_assert_eq!(prep.len(), listed.iter().filter(|&&l| l).count());
    let Prepared { ev_start: start, ev_time: time, ev_code: code, ev_eta: eta, .. } = prep;
    let events = Events::rejoin(Events { start, time, code, eta }, &listed, tails);
    Ok((out, CleanInput { shipments, events }))
}

/// The point-in-time view of `clean` at `cutoff`: shipments created before it and, of their
/// events (already in time order), the ones before it. Given the input by value (a nightly run
/// is done with it), its event arrays are cut down in place rather than copied.
pub fn prepare(clean: Cow<'_, CleanInput>, night: Night) -> Result<Prepared> {
    let cutoff = night.cutoff();
    let all_created = micros(&clean.shipments, "created_at")?;
    let visible: Vec<usize> = (0..all_created.len()).filter(|&i| all_created[i] < cutoff).collect();
    drop(all_created);
    let idx = IdxCa::from_vec("idx".into(), visible.iter().map(|&i| i as IdxSize).collect());
    // The visible rows are taken a column at a time, each read into its array and dropped: a
    // whole taken copy of the input's shipments was half a gigabyte more at 10M.
    // When every shipment is visible (a nightly run's usual case) the columns are shared, not
    // copied: a take of every row copied each string.
    let all = visible.len() == clean.shipments.height();
    let take = |name: &str| -> Result<Column> {
        let c = clean.shipments.column(name)?;
        Ok(if all { c.clone() } else { c.take(&idx)? })
    };
    let frame = |names: &[&str]| -> Result<DataFrame> {
        Ok(DataFrame::new(idx.len(), names.iter().map(|n| take(n)).collect::<Result<Vec<_>>>()?)?)
    };
    let created = micros(&frame(&["created_at"])?, "created_at")?;
    let promised = micros(&frame(&["promised_at"])?, "promised_at")?;
    let weight_g: Vec<f64> = take("weight_g")?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
    let declared_value: Vec<f64> = take("declared_value")?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
    let insured: Vec<bool> = take("insured")?.bool()?.iter().map(|v| v.unwrap_or(false)).collect();

    // Lanes and sellers get dense ids in sorted key order, so ids never depend on row order.
    // Each is one pass of hashing over every shipment, and the events' cut another: the three
    // run side by side.
    let (o, d, s) = (take("origin")?, take("destination")?, take("service")?);
    let shipments = frame(&["shipment_id", "seller_id", "carrier"])?;
    drop(idx);
    // Each visible shipment keeps the prefix of its events before the cutoff.
    let counts: Vec<u32> =
        visible.par_iter().map(|&i| clean.events.of(i).0.partition_point(|&x| x < cutoff) as u32).collect();
    let lanes_of = || -> Result<(Vec<u32>, Vec<LaneKey>)> {
        let (lane, keys) = dense_lanes(o.str()?, d.str()?, s.str()?);
        let lanes = keys
            .iter()
            .map(|(a, b, c)| LaneKey { origin: a.to_string(), destination: b.to_string(), service: c.to_string() })
            .collect();
        Ok((lane, lanes))
    };
    let sellers_of = || -> Result<(Vec<u32>, Vec<String>)> {
        let sellers = shipments.column("seller_id")?.str()?;
        let (ids, keys) = dense_names(sellers);
        Ok((ids, keys.into_iter().map(str::to_string).collect()))
    };
    let cut = move || {
        let keep = visible.iter().zip(&counts).map(|(&i, &n)| (i, n as usize));
        match clean {
            Cow::Borrowed(clean) => clean.events.prefixes(&keep.collect::<Vec<_>>()),
            Cow::Owned(clean) => {
                let CleanInput { shipments: all, events } = clean;
                drop(all);
                events.keep_prefixes(keep)
            }
        }
    };
    let (lanes, (sellers, events)) = rayon::join(lanes_of, || rayon::join(sellers_of, cut));
    let ((lane, lanes), (seller, sellers)) = (lanes?, sellers?);
    let Events { start: ev_start, time: ev_time, code: ev_code, eta: ev_eta } = events;

    Ok(Prepared {
        night,
        shipments,
        created,
        promised,
        weight_g,
        declared_value,
        insured,
        lane,
        seller,
        lanes,
        sellers,
        ev_start,
        ev_time,
        ev_code,
        ev_eta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A string column of one chunk per part.
    fn column(parts: &[&[Option<&str>]]) -> StringChunked {
        let mut out = StringChunked::from_iter_options("c".into(), parts[0].iter().copied());
        for p in &parts[1..] {
            out.append(&StringChunked::from_iter_options("c".into(), p.iter().copied())).unwrap();
        }
        out
    }

    fn plain(col: &StringChunked) -> Vec<&str> {
        col.iter().map(|v| v.unwrap_or("")).collect()
    }

    #[test]
    fn names_numbered_through_their_views_are_numbered_as_their_strings() {
        let long = "a name longer than twelve bytes";
        // Long strings repeated within a chunk (each row its own copy) and across chunks,
        // nulls beside "", short strings that share a prefix with long ones.
        let col = column(&[
            &[Some("DE"), Some(long), None, Some(""), Some(long), Some("a name")],
            &[Some(long), Some("DE"), None, Some("a name longer than twelve bytez"), Some(long)],
        ]);
        assert_eq!(col.chunks().len(), 2);
        let distinct: std::collections::BTreeSet<&str> = plain(&col).into_iter().collect();
        // The same string under several keys: the merge below is exercised.
        assert!(view_codes(&col, |_, _| ()).len() > distinct.len());
        assert_eq!(dense_names(&col), dense_ids(plain(&col).into_iter()));

        let o = column(&[&[Some("CN-GD"), Some(long), Some(long)], &[None, Some("CN-GD"), Some(long)]]);
        let d = column(&[&[Some("DE"), Some("DE"), Some("FR"), Some(""), Some("DE"), Some("DE")]]);
        let s = column(&[&[Some(long), Some("standard")], &[Some(long), None, Some(long), Some("standard")]]);
        let rows = plain(&o).into_iter().zip(plain(&d)).zip(plain(&s)).map(|((a, b), c)| (a, b, c));
        assert_eq!(dense_lanes(&o, &d, &s), dense_ids(rows));
    }
}
