//! Validation of the canonical input and the repairs the pipeline may make to usable data.
//! Errors make the input unusable; warnings describe data that is repaired or kept as is.

use std::path::Path;

use polars::prelude::*;
use rayon::prelude::*;
use serde::Serialize;

use crate::config::InputConfig;
use crate::error::{Error, Result, quote};
use crate::id_map::IdMap;
use crate::ingest::{self, FileInfo, Finding, Level};
use crate::schema::{self, Table};
use crate::shard::Shard;
use crate::statuses::Vocabulary;

/// Longest id accepted. Ids reach file names, CSV cells and HTML; a megabyte id is an upstream bug.
pub const MAX_ID_BYTES: usize = 512;
/// Timestamps outside these years are treated as corrupt rather than as real parcels.
const MIN_TS: i64 = 631_152_000_000_000; // 1990-01-01
pub(crate) const MAX_TS: i64 = 7_258_118_400_000_000; // 2200-01-01
const MAX_WEIGHT_G: f64 = 1_000_000.0;
const MAX_VALUE_USD: f64 = 10_000_000.0;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub input: String,
    pub valid: bool,
    pub shipments: u64,
    pub events: u64,
    pub files: Vec<FileInfo>,
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
    /// Statuses nothing maps (kept as generic scans), most frequent first (at most 20).
    pub unmapped_statuses: Vec<Unmapped>,
}

/// A status the vocabulary does not map, with what helps map it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Unmapped {
    pub status: String,
    pub count: u64,
    /// First and last event time, RFC 3339.
    pub first_seen: String,
    pub last_seen: String,
    /// The milestones this status most often sits between in a shipment's history (the last
    /// milestone before it, the first after it; `none` at either end), and how often.
    pub after: String,
    pub before: String,
    pub share_between: f64,
    /// A mapping to review (from the words in the status) and why.
    pub suggestion: String,
    pub reason: String,
}

/// Input that passed validation, repaired: invalid weights and values nulled, duplicate events
/// and events of unknown shipments dropped, statuses coded through the vocabulary.
#[derive(Clone)]
pub struct CleanInput {
    /// Shipments sorted by shipment_id; row i is shipment index i.
    pub shipments: DataFrame,
    pub events: Events,
}

impl CleanInput {
    /// The part of this input that `shard` owns (`crate::shard`): its shipments, still sorted
    /// by shipment_id, with their events; what the shard's own validation gives.
    pub fn part(&self, shard: Shard) -> Result<CleanInput> {
        let owned = owned_rows(&self.shipments, shard)?;
        let keep: Vec<(usize, usize)> = owned
            .iter()
            .enumerate()
            .filter(|&(_, o)| o == Some(true))
            .map(|(i, _)| (i, self.events.of(i).0.len()))
            .collect();
        Ok(CleanInput { shipments: self.shipments.filter(&owned)?, events: self.events.prefixes(&keep) })
    }
}

/// Every shipment's events in time order (then by status code), compactly: the events of
/// shipment i are `time[start[i]..start[i + 1]]` and `code[..]` alike; `eta[..]` too when the
/// input has the carrier's estimate (`NO_ETA` where a scan carries none).
#[derive(Debug, Clone, Default)]
pub struct Events {
    pub start: Vec<u32>,
    pub time: Vec<i64>,
    pub code: Vec<u8>,
    pub eta: Option<Vec<i64>>,
}

/// A scan without a carrier estimate.
pub const NO_ETA: i64 = i64::MIN;

/// An earlier night's clean events as the state's file decoded them (`Checked`): laid out as
/// `Events`, each column in the pieces it was read in (a row group each), copied from there
/// straight into tonight's order. Gathered into one vector first, the kept events of a 1M
/// shipment night (9M rows) were copied once more, into memory faulted in for that alone.
pub struct KeptEvents {
    pub start: Vec<u32>,
    pub time: Pieces<Int64Type>,
    pub code: Pieces<UInt8Type>,
    pub eta: Option<Pieces<Int64Type>>,
}

/// A null-free numeric column in the chunks it was decoded in, read by row.
pub struct Pieces<T: PolarsNumericType> {
    ca: ChunkedArray<T>,
    /// Each chunk's end row.
    ends: Vec<usize>,
}

impl<T: PolarsNumericType> Pieces<T> {
    /// `None` when the column has nulls.
    pub fn new(ca: ChunkedArray<T>) -> Option<Pieces<T>> {
        if ca.null_count() > 0 {
            return None;
        }
        let mut end = 0;
        let ends = ca
            .downcast_iter()
            .map(|a| {
                end += a.len();
                end
            })
            .collect();
        Some(Pieces { ca, ends })
    }

    pub fn len(&self) -> usize {
        self.ends.last().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every row in one vector.
    pub fn to_vec(&self) -> Vec<T::Native> {
        let mut out = Vec::with_capacity(self.len());
        for arr in self.ca.downcast_iter() {
            out.extend_from_slice(arr.values().as_slice());
        }
        out
    }

    /// Copies the `dst.len()` rows from row `from` on into `dst`, across chunks.
    pub fn copy_to(&self, from: usize, dst: &mut [T::Native]) {
        let (mut row, mut done) = (from, 0);
        let mut k = self.ends.partition_point(|&e| e <= row);
        while done < dst.len() {
            let begin = if k == 0 { 0 } else { self.ends[k - 1] };
            let values = self.ca.downcast_get(k).expect("rows within the column").values().as_slice();
            let n = (self.ends[k] - row).min(dst.len() - done);
            dst[done..done + n].copy_from_slice(&values[row - begin..row - begin + n]);
            (row, done, k) = (row + n, done + n, k + 1);
        }
    }
}

impl Events {
    pub fn of(&self, i: usize) -> (&[i64], &[u8]) {
        let (a, b) = (self.start[i] as usize, self.start[i + 1] as usize);
        (&self.time[a..b], &self.code[a..b])
    }

    /// The carrier estimates of shipment i's events, when the input has them.
    pub fn eta_of(&self, i: usize) -> Option<&[i64]> {
        let (a, b) = (self.start[i] as usize, self.start[i + 1] as usize);
        self.eta.as_ref().map(|e| &e[a..b])
    }

    /// A copy holding the first `n` events of shipment `i` for each `(i, n)`; shipment `k` of
    /// the result is the `k`-th pair.
    pub fn prefixes(&self, keep: &[(usize, usize)]) -> Events {
        let total = keep.iter().map(|k| k.1).sum();
        let mut out = Events {
            start: Vec::with_capacity(keep.len() + 1),
            time: Vec::with_capacity(total),
            code: Vec::with_capacity(total),
            eta: self.eta.as_ref().map(|_| Vec::with_capacity(total)),
        };
        out.start.push(0);
        for &(i, n) in keep {
            let (t, c) = self.of(i);
            out.time.extend_from_slice(&t[..n]);
            out.code.extend_from_slice(&c[..n]);
            if let (Some(dst), Some(src)) = (out.eta.as_mut(), self.eta_of(i)) {
                dst.extend_from_slice(&src[..n]);
            }
            out.start.push(out.time.len() as u32);
        }
        out
    }

    /// Splits off every shipment's events after its first `keep[i]`, in place: `self` keeps the
    /// first `keep[i]` of each shipment (moved left), and the rest come back as `Events` over the
    /// same shipments. Only the rest is copied; `rejoin` puts them back.
    pub fn split_tails(&mut self, keep: &[u32]) -> Events {
        let n = self.start.len() - 1;
        debug_assert_eq!(keep.len(), n);
        let total: usize = (0..n).map(|i| (self.start[i + 1] - self.start[i] - keep[i]) as usize).sum();
        let mut tails = Events {
            start: Vec::with_capacity(n + 1),
            time: Vec::with_capacity(total),
            code: Vec::with_capacity(total),
            eta: self.eta.as_ref().map(|_| Vec::with_capacity(total)),
        };
        tails.start.push(0);
        let mut at = 0usize;
        let mut new_start = Vec::with_capacity(n + 1);
        new_start.push(0u32);
        for (i, &k) in keep.iter().enumerate() {
            let (a, b) = (self.start[i] as usize, self.start[i + 1] as usize);
            let k = k as usize;
            debug_assert!(a + k <= b && at <= a);
            tails.time.extend_from_slice(&self.time[a + k..b]);
            tails.code.extend_from_slice(&self.code[a + k..b]);
            self.time.copy_within(a..a + k, at);
            self.code.copy_within(a..a + k, at);
            if let (Some(dst), Some(src)) = (tails.eta.as_mut(), self.eta.as_mut()) {
                dst.extend_from_slice(&src[a + k..b]);
                src.copy_within(a..a + k, at);
            }
            at += k;
            new_start.push(at as u32);
            tails.start.push(tails.time.len() as u32);
        }
        self.start = new_start;
        self.time.truncate(at);
        self.code.truncate(at);
        if let Some(e) = self.eta.as_mut() {
            e.truncate(at);
        }
        tails
    }

    /// Undoes `split_tails` after `keep_prefixes` kept the shipments `listed` (in order) whole:
    /// `kept` holds shipment i's first events when `listed[i]`, `tails` the rest of every
    /// shipment. Shipment by shipment from the last, each kept block moves right into place (never
    /// over a block still to be moved) and its tail follows it.
    pub fn rejoin(kept: Events, listed: &[bool], tails: Events) -> Events {
        let n = listed.len();
        let Events { start: kept_start, mut time, mut code, mut eta } = kept;
        let mut start = Vec::with_capacity(n + 1);
        start.push(0u32);
        let mut k = 0;
        for (i, &l) in listed.iter().enumerate() {
            let own = if l { kept_start[k + 1] - kept_start[k] } else { 0 };
            k += l as usize;
            start.push(start[i] + own + (tails.start[i + 1] - tails.start[i]));
        }
        let total = start[n] as usize;
        time.resize(total, 0);
        code.resize(total, 0);
        if let Some(e) = eta.as_mut() {
            e.resize(total, 0);
        }
        for i in (0..n).rev() {
            let dest = start[i] as usize;
            let mut own = 0;
            if listed[i] {
                k -= 1;
                let (a, b) = (kept_start[k] as usize, kept_start[k + 1] as usize);
                time.copy_within(a..b, dest);
                code.copy_within(a..b, dest);
                if let Some(e) = eta.as_mut() {
                    e.copy_within(a..b, dest);
                }
                own = b - a;
            }
            let (a, b) = (tails.start[i] as usize, tails.start[i + 1] as usize);
            let at = dest + own;
            time[at..at + b - a].copy_from_slice(&tails.time[a..b]);
            code[at..at + b - a].copy_from_slice(&tails.code[a..b]);
            if let (Some(dst), Some(src)) = (eta.as_mut(), tails.eta.as_ref()) {
                dst[at..at + b - a].copy_from_slice(&src[a..b]);
            }
        }
        Events { start, time, code, eta }
    }

    /// Keeps the first `n` events of shipment `i` for each `(i, n)`, `i` ascending, in place:
    /// every kept event moves left, never over one still to be read. Shipment `k` of the result
    /// is the `k`-th pair. Events already in place are not moved (until the first cut nothing
    /// is), and the arrays shrink only when something was cut: keeping every event (a nightly
    /// run on input up to its as-of) costs no pass over them.
    pub fn keep_prefixes(self, keep: impl IntoIterator<Item = (usize, usize)>) -> Events {
        let Events { mut start, mut time, mut code, mut eta } = self;
        // The new offsets overwrite the old ones in place: after k pairs, entries up to k are
        // new, and shipment i >= k is read at its old offset (`saved` holds the old entry k).
        let mut saved = start[0];
        let mut k = 0usize;
        let mut at = 0usize;
        for (i, n) in keep {
            let a = if i == k { saved } else { start[i] } as usize;
            debug_assert!(i >= k && a + n <= start[i + 1] as usize && at <= a);
            if at != a {
                time.copy_within(a..a + n, at);
                code.copy_within(a..a + n, at);
                if let Some(e) = eta.as_mut() {
                    e.copy_within(a..a + n, at);
                }
            }
            at += n;
            saved = start[k + 1];
            start[k + 1] = at as u32;
            k += 1;
        }
        if k + 1 < start.len() {
            start.truncate(k + 1);
            start.shrink_to_fit();
        }
        if at < time.len() {
            time.truncate(at);
            code.truncate(at);
            time.shrink_to_fit();
            code.shrink_to_fit();
            if let Some(e) = eta.as_mut() {
                e.truncate(at);
                e.shrink_to_fit();
            }
        }
        Events { start, time, code, eta }
    }

    pub fn len(&self) -> usize {
        self.time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }
}

/// The decoded input before its checks and repairs: the shipments as read (sorted by
/// shipment_id) and the events in compact form. A night validates this; the state between
/// nights keeps it, so an incremental night decodes only new files.
#[derive(Clone)]
pub struct RawInput {
    pub shipments: DataFrame,
    pub events: RawEvents,
    pub files: Vec<FileInfo>,
}

/// Events as decoded, compactly: per row its shipment (index into the sorted shipments, or
/// `ORPHAN | k` for the k-th id not among the shipments), time, status (index into
/// `statuses`) and carrier estimate; and the counts the id and time checks need.
#[derive(Debug, Clone, Default)]
pub struct RawEvents {
    pub ship: Vec<u32>,
    pub time: Vec<i64>,
    pub status: Vec<u32>,
    /// Present when some scan carries an estimate; `NO_ETA` elsewhere.
    pub eta: Option<Vec<i64>>,
    pub statuses: Vec<String>,
    pub orphans: Vec<String>,
    pub counts: EventCounts,
}

/// What decoding counted in some events rows: the rows decoded (including those dropped for
/// null required values) and what the id and time checks found. Named fields rather than a
/// row of numbers: four of them are `u64` counts, easy to pass in the wrong order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct EventCounts {
    pub rows: u64,
    pub long_ids: u64,
    /// The longest id, in bytes: a maximum, where the others are sums.
    pub longest_id: u32,
    pub empty_ids: u64,
    pub bad_times: u64,
    /// Carrier estimates outside `MIN_TS..=MAX_TS`, read as no estimate (a 1970 placeholder for
    /// "none" would otherwise be an estimate 20,000 days early, and a value near the type's
    /// limits overflowed the features' day arithmetic).
    #[serde(default)]
    pub bad_etas: u64,
}

impl EventCounts {
    /// The counts of these rows and `other`'s together.
    pub fn add(&mut self, other: &EventCounts) {
        self.rows += other.rows;
        self.long_ids += other.long_ids;
        self.longest_id = self.longest_id.max(other.longest_id);
        self.empty_ids += other.empty_ids;
        self.bad_times += other.bad_times;
        self.bad_etas += other.bad_etas;
    }
}

/// Marks `RawEvents::ship` entries that index `orphans` rather than shipments.
pub const ORPHAN: u32 = 1 << 31;
/// In a shard's id index: a shipment another shard owns (its events are skipped, uncounted).
pub const FOREIGN: u32 = u32::MAX;

/// What the event checks counted over every row, besides the clean events: kept by the state
/// beside a night's clean events, so that a later night counts only its new rows (`Checked`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Tally {
    pub duplicates: u64,
    pub early: u64,
    pub disorder: u64,
}

/// Rows of shipments whose status the vocabulary does not map: shipment, time and status
/// (index into `RawEvents::statuses`). What describing those statuses reads
/// (`describe_unmapped`), and what the state keeps of them.
#[derive(Debug, Clone, Default)]
pub struct UnmappedRows {
    pub ship: Vec<u32>,
    pub time: Vec<i64>,
    pub status: Vec<u32>,
}

impl UnmappedRows {
    pub fn len(&self) -> usize {
        self.ship.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ship.is_empty()
    }
}

/// An earlier night's checks, kept by the state (`state`): the clean events of that night's
/// shipments (by its shipment index), each of those shipments' index tonight (ascending:
/// shipments only join), what its checks counted, and its unmapped rows in tonight's numbering.
/// Its rows of unknown ids are not in it: they come again among the decoded rows.
/// With it, the checks read only the rows of files decoded after that night: a shipment none
/// of them names keeps its clean events and its counts as they were, and one they name is
/// checked whole again (its clean events and its new rows), its earlier counts taken back.
/// That gives the events and counts checking every row gives, because a shipment's clean
/// events are its rows sorted and deduplicated, whatever order the rows come in.
pub struct Checked {
    pub events: KeptEvents,
    pub at: Vec<u32>,
    pub tally: Tally,
    pub unmapped: UnmappedRows,
}

/// What the checks leave for the state besides the clean events (see `Checked`): the counts,
/// the earlier night's unmapped rows, and which statuses are unmapped (by `RawEvents::statuses`
/// index). The night's unmapped rows are these and the decoded rows of unmapped statuses; they
/// are gathered only when the state keeps them (a list of them was 0.2 GB at 10M shipments,
/// where a tenth of the events are unmapped scans).
#[derive(Debug, Clone, Default)]
pub struct Checks {
    pub tally: Tally,
    pub kept_unmapped: UnmappedRows,
    pub unmapped_status: Vec<bool>,
}

/// Reads and checks the input. Returns the report and, when there are no errors, clean data.
pub fn validate(input: &Path, cfg: &InputConfig, vocab: &Vocabulary) -> Result<(Report, Option<CleanInput>)> {
    let (raw, file_findings) = read_raw(input, cfg)?;
    Ok(check(input, raw, file_findings, vocab, false)?.0)
}

/// Decodes the whole input into `RawInput`, with the file-level findings (unreadable files,
/// missing or mistyped columns, nulls in required columns).
pub fn read_raw(input: &Path, cfg: &InputConfig) -> Result<(RawInput, Vec<Finding>)> {
    read_raw_shard(input, cfg, None)
}

/// `read_raw` keeping only what `shard` owns (see `shard`): its shipments, their events and,
/// on shard 0, the events of unknown shipments. Another shard's rows are skipped and not
/// counted, so the shards' counts add up to the whole input's.
pub fn read_raw_shard(input: &Path, cfg: &InputConfig, shard: Option<Shard>) -> Result<(RawInput, Vec<Finding>)> {
    let t0 = std::time::Instant::now();
    let Some(shard) = shard else {
        check_memory_budget(input, cfg)?;
        let ingest::ReadTable { df, files, findings } = ingest::read_table(input, Table::Shipments, cfg)?;
        let raw = read_events(input, cfg, (files, findings), sort_shipments(df)?, Vec::new(), true)?;
        crate::memory::log_step("validate", "read", t0);
        return Ok(raw);
    };
    // A shard holds its own rows (the memory estimate is a whole night's, so it is not checked
    // here): each decoded batch of shipments is cut to the shard's as it is read, and of the
    // others only the ids are kept, which tell another shard's events from events of no
    // shipment, and a shipment_id in two shards.
    let mut foreign: Vec<StringChunked> = Vec::new();
    let ships = ingest::read_files_with(input, Table::Shipments, cfg, &mut |df| {
        let own = owned_rows(&df, shard)?;
        foreign.push(df.column("shipment_id")?.str()?.filter(&!&own)?);
        Ok(df.filter(&own)?)
    })?;
    let ingest::ReadTable { df, files, findings } = ships;
    let raw = read_events(input, cfg, (files, findings), sort_shipments(df)?, foreign, shard.owns_orphans())?;
    crate::memory::log_step("validate", "read", t0);
    Ok(raw)
}

/// The events of `shipments` (sorted: the shipments the night or shard holds, with the files
/// and findings of reading them) decoded into `RawInput`; `foreign` are the ids of the
/// shipments another shard holds, whose events are skipped. A shipment_id both here and there
/// is an error, the single run's duplicate id.
fn read_events(
    input: &Path,
    cfg: &InputConfig,
    (mut files, mut findings): (Vec<FileInfo>, Vec<Finding>),
    shipments: DataFrame,
    foreign: Vec<StringChunked>,
    keep_orphans: bool,
) -> Result<(RawInput, Vec<Finding>)> {
    let planned = ingest::plan_table(input, Table::Events, cfg, None)?;
    files.extend(planned.files.iter().cloned());
    let ship_errors = findings.iter().any(|f| f.level == Level::Error);
    let mut events = RawEvents::default();
    let mut index = (!ship_errors).then(|| id_index(&shipments)).transpose()?;
    if let Some(index) = index.as_mut() {
        for id in foreign.iter().flat_map(|c| c.iter()).flatten() {
            if index.insert_first(id, FOREIGN) != FOREIGN {
                return Err(Error::data(
                    "shipments",
                    "shipment_id",
                    format!(
                        "shipment ids in more than one shard (e.g. {}): rows share a shipment_id with another row",
                        quote(id)
                    ),
                ));
            }
        }
    }
    let mut event_findings = planned.findings.clone();
    let index = index.map(IdIndex::Hash);
    for f in decode_event_files(&planned.plans, index.as_ref(), keep_orphans, &mut events)? {
        event_findings.extend(f.findings);
    }
    drop(index);
    findings.extend(event_findings);
    Ok((RawInput { shipments, events, files }, findings))
}

/// Which of these shipments `shard` owns, by their destination and service.
fn owned_rows(shipments: &DataFrame, shard: Shard) -> Result<BooleanChunked> {
    let d = shipments.column("destination")?.str()?;
    let s = shipments.column("service")?.str()?;
    Ok(d.iter().zip(s.iter()).map(|(d, s)| Some(shard.owns(d.unwrap_or(""), s.unwrap_or("")))).collect())
}

/// Shipment ids → their row in the sorted shipments (an id's first row), as decoding looks up
/// the events' ids.
pub enum IdIndex<'a> {
    /// A map of every id (`id_index`), for looking up a whole input's events.
    Hash(IdMap<'a>),
    /// Binary search among the sorted ids, for a night through the state: it looks up only the
    /// new files' ids, and a map of every id was most of the cost (1.9 s at 10M shipments, for
    /// half a million lookups). The array is the sorted `shipment_id` column (nulls first, as
    /// `sort_shipments` puts them).
    Sorted(&'a <StringType as PolarsDataType>::Array),
}

impl IdIndex<'_> {
    pub fn get(&self, id: &str) -> Option<u32> {
        match self {
            IdIndex::Hash(map) => map.get(id),
            IdIndex::Sorted(ids) => {
                let at = |i: usize| StaticArray::get(*ids, i);
                let (mut lo, mut hi) = (0usize, ids.len());
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if at(mid).is_none_or(|v| v < id) {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                (at(lo) == Some(id)).then_some(lo as u32)
            }
        }
    }

    /// `get` of every id (`None` for a null one).
    pub fn get_many(&self, ids: &[Option<&str>]) -> Vec<Option<u32>> {
        match self {
            IdIndex::Hash(map) => map.get_many(ids),
            IdIndex::Sorted(_) => ids.iter().map(|id| id.and_then(|id| self.get(id))).collect(),
        }
    }

    /// The index for `lookups` ids among `shipments` (sorted by `sort_shipments`): binary search
    /// when they are few against the shipments, else a map.
    pub fn for_lookups(shipments: &DataFrame, lookups: usize) -> Result<IdIndex<'_>> {
        let ids = shipments.column("shipment_id")?.str()?;
        if lookups.saturating_mul(8) < ids.len()
            && ids.chunks().len() == 1
            && let Some(arr) = ids.downcast_iter().next()
        {
            return Ok(IdIndex::Sorted(arr));
        }
        Ok(IdIndex::Hash(id_index(shipments)?))
    }
}

/// Shipment ids → their index in the sorted shipments (an id's first row).
pub fn id_index(shipments: &DataFrame) -> Result<IdMap<'_>> {
    let ids = shipments.column("shipment_id")?.str()?;
    let mut index = IdMap::with_capacity(ids.len());
    index.insert_rows_first(ids.iter());
    Ok(index)
}

/// Shipments in shipment_id order (stable): row i is shipment index i in every later stage.
pub fn sort_shipments(df: DataFrame) -> Result<DataFrame> {
    Ok(df.sort(["shipment_id"], SortMultipleOptions::default().with_maintain_order(true))?)
}

/// Decodes one events file, a few row groups at a time, straight into compact rows: each
/// shipment id is looked up once and never kept. A file with a corrupt page adds no rows.
pub fn decode_events(
    plan: &ingest::FilePlan,
    index: Option<&IdIndex<'_>>,
    keep_orphans: bool,
    out: &mut RawEvents,
) -> Result<Vec<Finding>> {
    let mut part = RawEvents { statuses: std::mem::take(&mut out.statuses), ..RawEvents::default() };
    let mut orphan_of: PlHashMap<String, u32> =
        out.orphans.iter().enumerate().map(|(k, s)| (s.clone(), k as u32)).collect();
    let mut orphans = std::mem::take(&mut out.orphans);
    let mut status_of: PlHashMap<String, u32> =
        part.statuses.iter().enumerate().map(|(k, s)| (s.clone(), k as u32)).collect();
    // The footer's row count sizes the arrays once: grown by doubling they would hold up to
    // twice the rows, and copy them at every step (most of the read's peak on a large file).
    let rows = usize::try_from(plan.info.rows).unwrap_or(0);
    part.reserve(rows);
    let errors = ingest::decode_file(plan, Table::Events, &mut |df| {
        let ids = df.column("shipment_id")?.str()?;
        let t = df.column("event_time")?.as_materialized_series().to_physical_repr().into_owned();
        let t = t.i64()?;
        let st = df.column("status")?.str()?;
        let eta = df.column("carrier_estimated_delivery_at")?.as_materialized_series().to_physical_repr().into_owned();
        let eta = eta.i64()?;
        // The id → shipment lookups are most of the work: done in parallel over the batch
        // (the index is read-only), the rest of the row in order.
        let ids: Vec<Option<&str>> = ids.iter().collect();
        let found: Vec<Option<u32>> = match index {
            Some(ix) => {
                use rayon::prelude::*;
                // Exports that list a shipment's events together repeat the previous row's id
                // in most rows: that one comparison replaces most of the lookups there, and
                // the rest are looked up as a batch (`IdIndex::get_many`).
                ids.par_chunks(1 << 14)
                    .flat_map_iter(|c| {
                        let repeats: Vec<bool> =
                            (0..c.len()).map(|j| j > 0 && c[j].is_some() && c[j] == c[j - 1]).collect();
                        let asked: Vec<Option<&str>> =
                            c.iter().zip(&repeats).filter(|&(_, &r)| !r).map(|(id, _)| *id).collect();
                        let mut answers = ix.get_many(&asked).into_iter();
                        let mut last = None;
                        repeats.into_iter().map(move |r| {
                            if !r {
                                last = answers.next().expect("an answer for every id asked");
                            }
                            last
                        })
                    })
                    .collect()
            }
            None => vec![None; df.height()],
        };
        // Statuses repeat: the last one seen is checked before the map, and the map is
        // probed without allocating.
        let mut last: Option<(&str, u32)> = None;
        // The columns walked side by side (reading each by index looked its chunk up per value).
        let columns = ids.iter().zip(t.iter()).zip(st.iter()).zip(eta.iter()).zip(&found);
        for ((((&id, tv), sv), e), &found) in columns {
            // A shard reads only its rows: its shipments' events and, on shard 0, the rest.
            let mine = match found {
                Some(FOREIGN) => false,
                Some(_) => true,
                None => keep_orphans,
            };
            if !mine {
                continue;
            }
            let counts = &mut part.counts;
            counts.rows += 1;
            if let Some(id) = id {
                let len = id.len() as u32;
                counts.longest_id = counts.longest_id.max(len);
                counts.long_ids += (len as usize > MAX_ID_BYTES) as u64;
                counts.empty_ids += id.is_empty() as u64;
            }
            if let Some(tv) = tv {
                counts.bad_times += !(MIN_TS..=MAX_TS).contains(&tv) as u64;
            }
            let (Some(id), Some(tv), Some(sv)) = (id, tv, sv) else { continue };
            let e = e.filter(|v| {
                let plausible = (MIN_TS..=MAX_TS).contains(v);
                part.counts.bad_etas += !plausible as u64;
                plausible
            });
            let ship = match found {
                Some(i) => i,
                None => match orphan_of.get(id) {
                    Some(&o) => ORPHAN | o,
                    None => {
                        let o = orphans.len() as u32;
                        orphans.push(id.to_string());
                        orphan_of.insert(id.to_string(), o);
                        ORPHAN | o
                    }
                },
            };
            let status = match last {
                Some((name, code)) if name == sv => code,
                _ => {
                    let code = match status_of.get(sv) {
                        Some(&c) => c,
                        None => {
                            let c = part.statuses.len() as u32;
                            part.statuses.push(sv.to_string());
                            status_of.insert(sv.to_string(), c);
                            c
                        }
                    };
                    last = Some((sv, code));
                    code
                }
            };
            part.ship.push(ship);
            part.time.push(tv);
            part.status.push(status);
            if e.is_some() && part.eta.is_none() {
                let mut v = Vec::new();
                let _ = v.try_reserve_exact(rows.max(part.ship.len()));
                v.resize(part.ship.len() - 1, NO_ETA);
                part.eta = Some(v);
            }
            if let Some(v) = part.eta.as_mut() {
                v.push(e.unwrap_or(NO_ETA));
            }
        }
        Ok(())
    })?;
    out.statuses = std::mem::take(&mut part.statuses);
    out.orphans = orphans;
    if errors.iter().any(|e| e.check == "corrupt_file") {
        return Ok(errors);
    }
    out.append(part);
    Ok(errors)
}

/// What decoding one events file added to a `RawEvents`.
pub struct DecodedEvents {
    pub findings: Vec<Finding>,
    /// Its rows in the merged events.
    pub rows: std::ops::Range<usize>,
    /// Its counts (sums of its own; `longest_id` is the longest
    /// in it and the files before).
    pub counts: EventCounts,
}

/// Decodes events files a few at a time in parallel, each with its own status and unknown-id
/// numbering, and appends them to `out` in file order, renumbered: the result is exactly what
/// decoding them one after another gives. (Daily partitions are files of one row group, so
/// the parallelism inside a file does not help them.)
pub fn decode_event_files(
    plans: &[ingest::FilePlan],
    index: Option<&IdIndex<'_>>,
    keep_orphans: bool,
    out: &mut RawEvents,
) -> Result<Vec<DecodedEvents>> {
    let mut status_of: PlHashMap<String, u32> =
        out.statuses.iter().enumerate().map(|(k, s)| (s.clone(), k as u32)).collect();
    let mut orphan_of: PlHashMap<String, u32> =
        out.orphans.iter().enumerate().map(|(k, s)| (s.clone(), k as u32)).collect();
    let mut done = Vec::with_capacity(plans.len());
    // A file per thread at once, the next batch decoded while the last one is renumbered and
    // appended (one thread), which one after the other left a core idle: parallel, yet only two
    // files per thread held twice (batches of two files per thread, in flight two at a time,
    // raised the 10M full refresh's peak by 220 MiB).
    let decode = |batch: &&[ingest::FilePlan]| -> Result<Vec<(RawEvents, Vec<Finding>)>> {
        batch
            .par_iter()
            .map(|plan| {
                let mut part = RawEvents::default();
                let findings = decode_events(plan, index, keep_orphans, &mut part)?;
                Ok((part, findings))
            })
            .collect()
    };
    let batches: Vec<&[ingest::FilePlan]> = plans.chunks(rayon::current_num_threads().max(1)).collect();
    crate::ahead::read_ahead(&batches, decode, |_, parts| {
        let parts = parts?;
        for (mut part, findings) in parts {
            if findings.iter().any(|e| e.check == "corrupt_file") {
                // As a sequential read: no rows (its numbering never reaches a report, since
                // a corrupt file fails the night before events are checked).
                part = RawEvents::default();
            }
            let status_map: Vec<u32> =
                part.statuses.iter().map(|n| intern(n, &mut status_of, &mut out.statuses)).collect();
            let orphan_map: Vec<u32> =
                part.orphans.iter().map(|n| intern(n, &mut orphan_of, &mut out.orphans)).collect();
            for st in part.status.iter_mut() {
                *st = status_map[*st as usize];
            }
            for sh in part.ship.iter_mut() {
                if *sh & ORPHAN != 0 {
                    *sh = ORPHAN | orphan_map[(*sh & !ORPHAN) as usize];
                }
            }
            let before = out.len();
            let counts = EventCounts { longest_id: part.counts.longest_id.max(out.counts.longest_id), ..part.counts };
            part.statuses.clear();
            part.orphans.clear();
            out.append(part);
            done.push(DecodedEvents { findings, rows: before..out.len(), counts });
        }
        Ok::<(), Error>(())
    })?;
    Ok(done)
}

/// The number of `name` in a first-use numbering, adding it at the end when new.
fn intern(name: &str, of: &mut PlHashMap<String, u32>, names: &mut Vec<String>) -> u32 {
    if let Some(&k) = of.get(name) {
        return k;
    }
    let k = names.len() as u32;
    names.push(name.to_string());
    of.insert(name.to_string(), k);
    k
}

impl RawEvents {
    /// Room for `rows` rows, as a hint: the count comes from a file's footer, which is not
    /// trusted, so a size that cannot be had leaves the arrays to grow as rows arrive (rather
    /// than aborting the process).
    pub fn reserve(&mut self, rows: usize) {
        let _ = self.ship.try_reserve_exact(rows);
        let _ = self.time.try_reserve_exact(rows);
        let _ = self.status.try_reserve_exact(rows);
    }

    /// Appends the rows and counts of `other` (whose status and orphan indices are already
    /// this one's).
    pub fn append(&mut self, other: RawEvents) {
        if self.ship.is_empty() && self.eta.is_none() && self.ship.capacity() <= other.ship.capacity() {
            // The first part is moved, not copied, when it has at least the room reserved here
            // (a single large file, sized from its own footer): copying its rows would hold them
            // twice. A small first part (one day's partition) is copied into the reserved room.
            let (statuses, orphans) = (std::mem::take(&mut self.statuses), std::mem::take(&mut self.orphans));
            let counts = self.counts;
            *self = RawEvents { statuses, orphans, ..other };
            self.counts.add(&counts);
            return;
        }
        let before = self.ship.len();
        self.ship.extend(other.ship);
        self.time.extend(other.time);
        self.status.extend(other.status);
        self.extend_eta(before, other.eta.as_deref());
        self.counts.add(&other.counts);
    }

    /// The estimates of the rows appended after the first `before` (`None`: they carry none),
    /// once every other column has them: `NO_ETA` where a side has no estimates.
    pub fn extend_eta(&mut self, before: usize, eta: Option<&[i64]>) {
        extend_eta_to(&mut self.eta, before, self.ship.len(), self.ship.capacity(), eta);
    }

    pub fn len(&self) -> usize {
        self.ship.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ship.is_empty()
    }
}

/// `RawEvents::extend_eta` on the estimates alone, for a caller filling the other columns at the
/// same time: rows `before..after` appended, `eta` theirs, `capacity` the room for every row.
pub fn extend_eta_to(all: &mut Option<Vec<i64>>, before: usize, after: usize, capacity: usize, eta: Option<&[i64]>) {
    match (all.as_mut(), eta) {
        (Some(a), Some(e)) => a.extend_from_slice(e),
        (Some(a), None) => a.resize(after, NO_ETA),
        (None, Some(e)) => {
            let mut a = Vec::with_capacity(capacity);
            a.resize(before, NO_ETA);
            a.extend_from_slice(e);
            *all = Some(a);
        }
        (None, None) => {}
    }
}

/// Checks and repairs a decoded input: the report and, without errors, clean data. Findings come
/// in one order: the files', the shipments', the events'. `allow_empty`: no shipments is not an
/// error (a shard may own none; the merge checks the whole).
pub fn check(
    input: &Path,
    raw: RawInput,
    file_findings: Vec<Finding>,
    vocab: &Vocabulary,
    allow_empty: bool,
) -> Result<((Report, Option<CleanInput>), RawInput)> {
    let (checked, raw, _) = check_with(input, raw, file_findings, vocab, allow_empty, None)?;
    Ok((checked, raw))
}

/// `check` of the rows of `raw` on top of an earlier night's checks (`Checked`; `raw` then holds
/// the rows of the files decoded after that night, and the counts of every file); also returns
/// what the state keeps of the checks (`Checks`, default when the events were not checked).
pub fn check_with(
    input: &Path,
    raw: RawInput,
    file_findings: Vec<Finding>,
    vocab: &Vocabulary,
    allow_empty: bool,
    base: Option<Checked>,
) -> Result<((Report, Option<CleanInput>), RawInput, Checks)> {
    let t0 = std::time::Instant::now();
    let mut findings = file_findings;
    let errors_before = findings.iter().any(|f| f.level == Level::Error);
    let ship_file_errors = findings.iter().any(|f| f.level == Level::Error && f.file.starts_with("shipments"));
    let mut report = Report {
        input: input.display().to_string(),
        valid: false,
        shipments: raw.shipments.height() as u64,
        events: raw.events.counts.rows,
        files: raw.files.clone(),
        errors: vec![],
        warnings: vec![],
        unmapped_statuses: vec![],
    };
    let mut clean = None;
    let mut checks = Checks::default();
    if !ship_file_errors {
        let shipments = check_shipments(raw.shipments.clone(), allow_empty, &mut findings)?;
        if !errors_before {
            crate::memory::log_step("validate", "shipments checked", t0);
            let (ev, unknown, c) = check_events(&raw.events, base, &shipments, vocab, &mut findings)?;
            crate::memory::log_step("validate", "events checked", t0);
            report.unmapped_statuses = unknown;
            clean = Some(CleanInput { shipments, events: ev });
            checks = c;
        }
    }
    for f in findings {
        match f.level {
            Level::Error => report.errors.push(f),
            Level::Warning => report.warnings.push(f),
        }
    }
    report.valid = report.errors.is_empty();
    if !report.valid {
        clean = None;
    }
    Ok(((report, clean), raw, checks))
}

/// Refuses, before decoding anything, an input whose size (from the footers' row counts) would
/// need more memory than `input.max_memory_gb`: a clear error beats the kernel's OOM killer in
/// the middle of the night.
pub(crate) fn check_memory_budget(input: &Path, cfg: &InputConfig) -> Result<()> {
    if cfg.max_memory_gb <= 0.0 {
        return Ok(());
    }
    let ships = ingest::footer_rows(input, Table::Shipments)?;
    let events = ingest::footer_rows(input, Table::Events)?;
    check_memory_estimate(input, cfg, ships, events)
}

/// The refusal of `check_memory_budget` for known row counts (a night through the state knows
/// the rows of the files it covers without opening them).
pub(crate) fn check_memory_estimate(input: &Path, cfg: &InputConfig, ships: u64, events: u64) -> Result<()> {
    if cfg.max_memory_gb <= 0.0 {
        return Ok(());
    }
    let need = crate::budget::night_need_gb(ships, events);
    if need > cfg.max_memory_gb {
        return Err(Error::bad_file(
            input.display().to_string(),
            format!(
                "{ships} shipments and {events} events need about {need:.1} GB, above input.max_memory_gb = {}; \
                 keep only the recent history (see README, Memory budget) or raise the limit",
                cfg.max_memory_gb
            ),
        ));
    }
    Ok(())
}

impl Report {
    /// The first error as the library error the binary maps to exit 65.
    pub fn first_error(&self) -> Option<Error> {
        self.errors.first().cloned().map(Finding::into_error)
    }

    pub fn lines(&self) -> Vec<String> {
        self.errors.iter().chain(self.warnings.iter()).map(Finding::line).collect()
    }
}

/// The `unknown_status` warning's text: how many scans, and the most frequent statuses.
fn unknown_status_message(n_unknown: u64, unknown: &[(String, u64)]) -> String {
    let mut by_count: Vec<&(String, u64)> = unknown.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let shown: Vec<String> = by_count.iter().take(5).map(|(s, n)| format!("{} ×{n}", quote(s))).collect();
    format!(
        "{n_unknown} scans with statuses outside the vocabulary, kept as generic scans: {} \
         (lanewatch validate --suggest-statuses prints a mapping to review)",
        shown.join(", ")
    )
}

/// A warning `check` can report. Its text is rendered from its count (and, for unknown
/// statuses, the most frequent ones), so a merge of shards' reports renders the summed count
/// through the same words as a single validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warning {
    PromiseBeforeCreation,
    InvalidWeight,
    InvalidValue,
    ImplausibleEstimate,
    UnknownStatus,
    UnknownShipment,
    DuplicateEvent,
    EventBeforeCreation,
    MilestonesOutOfOrder,
    ShipmentWithoutEvents,
}

impl Warning {
    /// Every warning, in the order `check` reports them: merging shards' reports restores it.
    pub const ALL: [Warning; 10] = [
        Warning::PromiseBeforeCreation,
        Warning::InvalidWeight,
        Warning::InvalidValue,
        Warning::ImplausibleEstimate,
        Warning::UnknownStatus,
        Warning::UnknownShipment,
        Warning::DuplicateEvent,
        Warning::EventBeforeCreation,
        Warning::MilestonesOutOfOrder,
        Warning::ShipmentWithoutEvents,
    ];

    pub fn check(self) -> &'static str {
        match self {
            Warning::PromiseBeforeCreation => "promise_before_creation",
            Warning::InvalidWeight | Warning::InvalidValue => "invalid_value",
            Warning::ImplausibleEstimate => "implausible_estimate",
            Warning::UnknownStatus => "unknown_status",
            Warning::UnknownShipment => "unknown_shipment",
            Warning::DuplicateEvent => "duplicate_event",
            Warning::EventBeforeCreation => "event_before_creation",
            Warning::MilestonesOutOfOrder => "milestones_out_of_order",
            Warning::ShipmentWithoutEvents => "shipment_without_events",
        }
    }

    pub fn column(self) -> &'static str {
        match self {
            Warning::PromiseBeforeCreation => "promised_at",
            Warning::InvalidWeight => "weight_g",
            Warning::InvalidValue => "declared_value",
            Warning::ImplausibleEstimate => "carrier_estimated_delivery_at",
            Warning::UnknownStatus | Warning::MilestonesOutOfOrder => "status",
            Warning::UnknownShipment | Warning::ShipmentWithoutEvents => "shipment_id",
            Warning::DuplicateEvent => "",
            Warning::EventBeforeCreation => "event_time",
        }
    }

    /// The table whose rows it counts.
    fn table(self) -> &'static str {
        match self {
            Warning::PromiseBeforeCreation | Warning::InvalidWeight | Warning::InvalidValue => "shipments",
            _ => "events",
        }
    }

    /// The largest usable value of the column an `invalid_value` warning guards.
    fn limit(self) -> f64 {
        match self {
            Warning::InvalidWeight => MAX_WEIGHT_G,
            Warning::InvalidValue => MAX_VALUE_USD,
            _ => f64::INFINITY,
        }
    }

    /// The warning a partial names by check and column.
    pub fn find(check: &str, column: &str) -> Option<Warning> {
        Warning::ALL.into_iter().find(|w| w.check() == check && w.column() == column)
    }

    /// Its finding for `n` rows; `unknown` are the unmapped statuses with their counts (read
    /// by `UnknownStatus` only).
    pub fn finding(self, n: u64, unknown: &[(String, u64)]) -> Finding {
        let message = match self {
            Warning::PromiseBeforeCreation => {
                format!("{n} shipments promised before they were created; kept, they count as late")
            }
            Warning::InvalidWeight | Warning::InvalidValue => {
                format!("{n} values are NaN, negative or above {}; treated as unknown", self.limit())
            }
            Warning::ImplausibleEstimate => {
                format!("{n} carrier estimates outside 1990..2200; read as no estimate")
            }
            Warning::UnknownStatus => unknown_status_message(n, unknown),
            Warning::UnknownShipment => format!("{n} events for shipments not in shipments; ignored"),
            Warning::DuplicateEvent => format!("{n} duplicate events (same shipment, time and status); dropped"),
            Warning::EventBeforeCreation => {
                format!("{n} events before their shipment's created_at; kept, as scanned at the creation")
            }
            Warning::MilestonesOutOfOrder => {
                format!("{n} shipments reach milestones out of order; the furthest milestone counts")
            }
            Warning::ShipmentWithoutEvents => {
                format!("{n} shipments have no events; treated as created and not yet scanned")
            }
        };
        finding(Level::Warning, self.table(), self.column(), self.check(), n, message)
    }
}

/// The error of an input without shipments.
pub fn empty_table() -> Finding {
    finding(Level::Error, "shipments", "", "empty_table", 0, "no rows: nothing to score".into())
}

fn finding(level: Level, table: &str, column: &str, check: &'static str, count: u64, message: String) -> Finding {
    Finding { level, file: table.to_string(), column: column.to_string(), check, message, count }
}

fn count_true(mask: &BooleanChunked) -> u64 {
    mask.sum().unwrap_or(0) as u64
}

/// The `id_too_long` finding's message, for shipments and events alike: it counts rows (one long
/// seller id on 351 shipments was "351 ids").
fn long_ids(n: u64, longest: u32) -> String {
    let rows = if n == 1 { "row" } else { "rows" };
    format!("{n} {rows} with an id longer than {MAX_ID_BYTES} bytes (longest {longest} bytes)")
}

fn check_ids(df: &DataFrame, table: &str, column: &str, allow_empty: bool, out: &mut Vec<Finding>) -> Result<()> {
    let ids = df.column(column)?.str()?;
    let lens = ids.str_len_bytes();
    let long = lens.gt(MAX_ID_BYTES as u32);
    let n_long = count_true(&long);
    if n_long > 0 {
        let longest = lens.max().unwrap_or(0);
        out.push(finding(
            Level::Error,
            table,
            column,
            "id_too_long",
            n_long,
            long_ids(n_long, longest),
        ));
    }
    if !allow_empty {
        let empty = lens.equal(0u32);
        let n = count_true(&empty);
        if n > 0 {
            out.push(finding(Level::Error, table, column, "empty_id", n, format!("{n} empty ids")));
        }
    }
    Ok(())
}

fn check_time_range(df: &DataFrame, table: &str, column: &str, out: &mut Vec<Finding>) -> Result<()> {
    let t = df.column(column)?.as_materialized_series().to_physical_repr().into_owned();
    let t = t.i64()?;
    let bad = t.lt(MIN_TS) | t.gt(MAX_TS);
    let n = count_true(&bad);
    if n > 0 {
        out.push(finding(
            Level::Error,
            table,
            column,
            "implausible_time",
            n,
            format!("{n} timestamps outside 1990..2200"),
        ));
    }
    Ok(())
}

fn check_shipments(df: DataFrame, allow_empty: bool, out: &mut Vec<Finding>) -> Result<DataFrame> {
    const T: &str = "shipments";
    if df.height() == 0 {
        if !allow_empty {
            out.push(empty_table());
        }
        return Ok(df);
    }
    check_ids(&df, T, "shipment_id", false, out)?;
    check_ids(&df, T, "seller_id", true, out)?;
    for c in ["origin", "destination", "service"] {
        check_ids(&df, T, c, true, out)?;
    }
    check_time_range(&df, T, "created_at", out)?;
    check_time_range(&df, T, "promised_at", out)?;

    // Shipment index i is row i in shipment_id order, for every later stage. Both ways in
    // (a fresh read, the state's segments) sort already; a sort here again was a string sort of
    // every id each night (seconds at 10M), so it is done only when the rows are not in order.
    let df = if ids_sorted(df.column("shipment_id")?.str()?) { df } else { sort_shipments(df)? };
    let (n_dup, first_dup) = duplicated_ids(df.column("shipment_id")?.str()?);
    if n_dup > 0 {
        let example = first_dup.and_then(|i| df.column("shipment_id").ok()?.str().ok()?.get(i)).map(quote);
        let example = example.unwrap_or_default();
        out.push(finding(
            Level::Error,
            T,
            "shipment_id",
            "duplicate_id",
            n_dup,
            format!("{n_dup} rows share a shipment_id with another row (e.g. {example})"),
        ));
    }

    let created = df.column("created_at")?.as_materialized_series().to_physical_repr().into_owned();
    let promised = df.column("promised_at")?.as_materialized_series().to_physical_repr().into_owned();
    let before = created.i64()?.gt(promised.i64()?);
    let n = count_true(&before);
    if n > 0 {
        out.push(Warning::PromiseBeforeCreation.finding(n, &[]));
    }

    // Unusable measurements are dropped to null (unknown) rather than failing the night.
    let mut df = df;
    for warning in [Warning::InvalidWeight, Warning::InvalidValue] {
        let (c, max) = (warning.column(), warning.limit());
        let s = df.column(c)?.f64()?.clone();
        let bad = s.is_nan() | s.lt(0.0) | s.gt(max);
        let bad = bad.fill_null_with_values(false)?;
        let n = count_true(&bad);
        if n > 0 {
            out.push(warning.finding(n, &[]));
            let fixed: Float64Chunked =
                s.iter().zip(bad.iter()).map(|(v, b)| if b == Some(true) { None } else { v }).collect();
            df.with_column(fixed.with_name(c.into()).into_column())?;
        }
    }
    Ok(df)
}

/// Whether `ids` are in the order `sort_shipments` gives: nulls first, then by bytes.
fn ids_sorted(ids: &StringChunked) -> bool {
    let mut prev: Option<Option<&str>> = None;
    ids.iter().all(|id| {
        let ordered = prev.is_none_or(|p| p <= id);
        prev = Some(id);
        ordered
    })
}

/// In ids sorted by `sort_shipments`: how many rows share their id with another row (nulls
/// count as one id, as polars' `is_duplicated` has it), and the first such row. Equal ids are
/// neighbours, so one pass finds them, without hashing every id.
fn duplicated_ids(ids: &StringChunked) -> (u64, Option<usize>) {
    let (mut n, mut first) = (0u64, None);
    let mut run = 0usize;
    let mut prev: Option<Option<&str>> = None;
    let mut close = |run: usize, end: usize| {
        if end - run > 1 {
            n += (end - run) as u64;
            first.get_or_insert(run);
        }
    };
    let mut len = 0;
    for (i, id) in ids.iter().enumerate() {
        if prev.is_some_and(|p| p != id) {
            close(run, i);
            run = i;
        }
        prev = Some(id);
        len = i + 1;
    }
    close(run, len);
    (n, first)
}

/// The most frequent unmapped statuses with when they occur and the milestones around them.
fn describe_unmapped(
    unknown: &[(String, u64)],
    sources: &[(&[u32], &[i64], &[u32])],
    unmapped_of: &[u32],
    events: &Events,
) -> Vec<Unmapped> {
    let mut order: Vec<usize> = (0..unknown.len()).collect();
    order.sort_by(|&a, &b| unknown[b].1.cmp(&unknown[a].1).then(unknown[a].0.cmp(&unknown[b].0)));
    order.truncate(20);
    // Raw status → its place among the described ones (usize::MAX: not described).
    let mut place_of_unknown = vec![usize::MAX; unknown.len()];
    for (k, &u) in order.iter().enumerate() {
        place_of_unknown[u] = k;
    }
    let place: Vec<usize> =
        unmapped_of.iter().map(|&u| if u == u32::MAX { usize::MAX } else { place_of_unknown[u as usize] }).collect();
    // Per described status: first, last, and (milestone before, milestone after) counts. Read
    // straight from the rows (`sources`: (shipment, time, status) columns: the decoded rows and
    // an earlier night's unmapped rows), in parallel (at 10M shipments a tenth of the events
    // are unmapped scans, which a list of them held as 0.2 GB); minima, maxima and counts do
    // not depend on the order they are taken in.
    const NONE: u8 = u8::MAX;
    struct Seen {
        first: Vec<i64>,
        last: Vec<i64>,
        around: Vec<PlHashMap<(u8, u8), u64>>,
    }
    let empty = || Seen {
        first: vec![i64::MAX; order.len()],
        last: vec![i64::MIN; order.len()],
        around: vec![PlHashMap::new(); order.len()],
    };
    const CHUNK: usize = 1 << 16;
    let chunks: Vec<(usize, usize)> =
        sources.iter().enumerate().flat_map(|(s, src)| (0..src.0.len()).step_by(CHUNK).map(move |e| (s, e))).collect();
    let seen = chunks
        .into_par_iter()
        .flat_map_iter(|(s, e0)| {
            let (ship, time, status) = sources[s];
            (e0..(e0 + CHUNK).min(ship.len())).map(move |e| (ship[e], time[e], status[e]))
        })
        .fold(empty, |mut seen, (ship, t, status)| {
            let k = place[status as usize];
            if k == usize::MAX || ship & ORPHAN != 0 {
                return seen;
            }
            seen.first[k] = seen.first[k].min(t);
            seen.last[k] = seen.last[k].max(t);
            let (times, codes) = events.of(ship as usize);
            let before =
                times.iter().zip(codes).filter(|(x, c)| **x <= t && **c <= schema::DELIVERED).map(|(_, c)| *c).last();
            let after = times.iter().zip(codes).find(|(x, c)| **x > t && **c <= schema::DELIVERED).map(|(_, c)| *c);
            *seen.around[k].entry((before.unwrap_or(NONE), after.unwrap_or(NONE))).or_insert(0) += 1;
            seen
        })
        .reduce(empty, |mut a, b| {
            for k in 0..a.first.len() {
                a.first[k] = a.first[k].min(b.first[k]);
                a.last[k] = a.last[k].max(b.last[k]);
                for (pair, n) in &b.around[k] {
                    *a.around[k].entry(*pair).or_insert(0) += n;
                }
            }
            a
        });
    let Seen { first, last, around } = seen;
    let name = |c: u8| if c == NONE { "none".to_string() } else { schema::status_name(c).to_string() };
    let ts = |t: i64| {
        chrono::DateTime::from_timestamp_micros(t)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    order
        .iter()
        .enumerate()
        .map(|(k, &u)| {
            let (status, count) = &unknown[u];
            let total: u64 = around[k].values().sum();
            let (pair, n) = around[k]
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(p, n)| (*p, *n))
                .unwrap_or(((NONE, NONE), 0));
            let (mut suggestion, mut reason) = crate::statuses::suggest(status);
            // Where it occurs outweighs the words for an ending: a status mostly followed by a
            // milestone is a scan on the way ("Delivered to Frankfurt" between DEPARTED and
            // ARRIVED), and mapped DELIVERED or LOST would close parcels in flight.
            let followed: u64 = around[k].iter().filter(|(p, _)| p.1 != NONE).map(|(_, n)| n).sum();
            if matches!(suggestion, "DELIVERED" | "LOST") && followed * 2 > total {
                (suggestion, reason) = ("SCAN", "the words say the journey ended, but a milestone mostly follows it");
            }
            Unmapped {
                status: status.clone(),
                count: *count,
                first_seen: if total > 0 { ts(first[k]) } else { String::new() },
                last_seen: if total > 0 { ts(last[k]) } else { String::new() },
                after: name(pair.0),
                before: name(pair.1),
                share_between: if total > 0 { n as f64 / total as f64 } else { 0.0 },
                suggestion: suggestion.to_string(),
                reason: reason.to_string(),
            }
        })
        .collect()
}

/// A TOML basic string whose marks no one sees are written as escapes (`\uFEFF`): left raw, a
/// terminal showed them as Rust escapes (`\u{feff}`), which TOML refuses, and the pasted
/// snippet broke the config.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if crate::error::hidden(c) && (c as u32) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", c as u32)),
            c if crate::error::hidden(c) => out.push_str(&format!("\\U{:08X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML snippet mapping every unmapped status, for a person to review and paste into the
/// pipeline config.
pub fn suggest_statuses(report: &Report) -> String {
    let mut s = String::from(
        "# Statuses lanewatch could not map, most frequent first, with a mapping to review.\n\
         # Values: a milestone (CREATED, PICKED_UP, ORIGIN_HUB, EXPORT_CLEARED, DEPARTED, ARRIVED,\n\
         # IMPORT_CLEARED, OUT_FOR_DELIVERY, DELIVERED), an exception (CUSTOMS_HOLD, DELIVERY_FAILED,\n\
         # EXCEPTION, RETURNED, LOST) or SCAN. A key ending in * matches by prefix.\n[input.statuses]\n",
    );
    if report.unmapped_statuses.is_empty() {
        s.push_str("# (every status is mapped)\n");
    }
    for u in &report.unmapped_statuses {
        // A key that cannot be pasted as it is stays a comment, saying why.
        let why_not = if u.status.trim().is_empty() {
            Some("an empty status cannot be mapped")
        } else if u.status.trim_end().ends_with('*') {
            Some("a key ending in * would match by prefix: review")
        } else {
            None
        };
        let key = toml_string(&u.status);
        let line = match why_not {
            None => format!("{key} = \"{}\"", u.suggestion),
            Some(why) => format!("# {key} = \"{}\" ({why})", u.suggestion),
        };
        s.push_str(&format!(
            "{line:<40} # {} scans, {} … {}; most often between {} and {} ({:.0} %); {}\n",
            u.count,
            u.first_seen.get(..10).unwrap_or(""),
            u.last_seen.get(..10).unwrap_or(""),
            u.after,
            u.before,
            u.share_between * 100.0,
            u.reason
        ));
    }
    s
}

/// The event arrays cut into one slice per range of shipments (consecutive ranges covering
/// `0..n`; shipment i's events are `start[i]..start[i + 1]`), for tasks that each own theirs.
/// Without carrier estimates each range's estimate slice is empty.
#[allow(clippy::type_complexity)]
fn slices_by_shipment<'a>(
    start: &[u32],
    ranges: impl Iterator<Item = std::ops::Range<usize>>,
    time: &'a mut [i64],
    code: &'a mut [u8],
    eta: Option<&'a mut [i64]>,
) -> Vec<(std::ops::Range<usize>, &'a mut [i64], &'a mut [u8], &'a mut [i64])> {
    let has_eta = eta.is_some();
    let (mut rest_t, mut rest_c, mut rest_e) = (time, code, eta.unwrap_or_default());
    let mut out = Vec::new();
    for r in ranges {
        let n = (start[r.end] - start[r.start]) as usize;
        let (ht, tt) = rest_t.split_at_mut(n);
        let (hc, tc) = rest_c.split_at_mut(n);
        let (he, te) = rest_e.split_at_mut(if has_eta { n } else { 0 });
        out.push((r, ht, hc, he));
        (rest_t, rest_c, rest_e) = (tt, tc, te);
    }
    out
}

/// Whether a shipment's milestones (codes up to delivered), in event order, ever step back.
fn milestones_out_of_order(codes: &[u8]) -> bool {
    let mut furthest = 0u8;
    codes.iter().filter(|&&c| c <= schema::DELIVERED).any(|&c| {
        let back = c < furthest;
        furthest = furthest.max(c);
        back
    })
}

/// Shipment rows and event offsets are `u32` (a shipment row's top bit marks an unknown id,
/// `ORPHAN`): a night with more is refused in one line rather than wrapped into wrong rows.
/// Such a night is for the sharded run (README, "Running on a cluster"), each process holding
/// a part.
fn fits_one_process(shipments: u64, events: u64) -> Result<()> {
    if shipments >= ORPHAN as u64 || events > u32::MAX as u64 {
        return Err(Error::data(
            "events",
            "",
            format!(
                "{shipments} shipments and {events} events are more than one process holds (below {} shipments, \
                 at most {} events): run the night sharded (README, \"Running on a cluster\")",
                ORPHAN,
                u32::MAX
            ),
        ));
    }
    Ok(())
}

fn check_events(
    raw: &RawEvents,
    base: Option<Checked>,
    shipments: &DataFrame,
    vocab: &Vocabulary,
    out: &mut Vec<Finding>,
) -> Result<(Events, Vec<Unmapped>, Checks)> {
    const T: &str = "events";
    let counts = &raw.counts;
    if counts.rows > 0 {
        if counts.long_ids > 0 {
            let (n, longest) = (counts.long_ids, counts.longest_id);
            out.push(finding(
                Level::Error,
                T,
                "shipment_id",
                "id_too_long",
                n,
                long_ids(n, longest),
            ));
        }
        if counts.empty_ids > 0 {
            let n = counts.empty_ids;
            out.push(finding(Level::Error, T, "shipment_id", "empty_id", n, format!("{n} empty ids")));
        }
        if counts.bad_times > 0 {
            let n = counts.bad_times;
            out.push(finding(
                Level::Error,
                T,
                "event_time",
                "implausible_time",
                n,
                format!("{n} timestamps outside 1990..2200"),
            ));
        }
        if counts.bad_etas > 0 {
            out.push(Warning::ImplausibleEstimate.finding(counts.bad_etas, &[]));
        }
    }
    let (base_events, base_at, base_tally, base_unmapped) = match base {
        Some(b) => (Some(b.events), b.at, b.tally, b.unmapped),
        None => (None, Vec::new(), Tally::default(), UnmappedRows::default()),
    };

    // Code statuses once per distinct value, not once per row. Unmapped ones get an id so their
    // events can be found again (for when and between which milestones they occur). Only the
    // unmapped statuses' counts are reported: the rows decoded tonight and an earlier night's
    // unmapped rows give them all.
    let mut per_status = vec![0u64; raw.statuses.len()];
    for &s in raw.status.iter().chain(&base_unmapped.status) {
        *per_status.get_mut(s as usize).ok_or_else(|| Error::internal("an event's status is not numbered"))? += 1;
    }
    let mut unknown: Vec<(String, u64)> = Vec::new();
    let mut code_of: Vec<u8> = Vec::with_capacity(raw.statuses.len());
    let mut unmapped_of: Vec<u32> = Vec::with_capacity(raw.statuses.len());
    for (k, name) in raw.statuses.iter().enumerate() {
        let code = vocab.resolve(name);
        code_of.push(code.unwrap_or(schema::UNKNOWN_STATUS));
        if code.is_none() && per_status[k] > 0 {
            unmapped_of.push(unknown.len() as u32);
            unknown.push((name.clone(), per_status[k]));
        } else {
            unmapped_of.push(u32::MAX);
        }
    }
    let n_unknown: u64 = unknown.iter().map(|u| u.1).sum();
    if n_unknown > 0 {
        out.push(Warning::UnknownStatus.finding(n_unknown, &unknown));
    }

    let n_ships = shipments.height();
    let n_events = raw.ship.len() as u64 + base_events.as_ref().map_or(0, |b| b.time.len() as u64);
    fits_one_process(n_ships as u64, n_events)?;
    let n_orphans = raw.ship.iter().filter(|&&s| s & ORPHAN != 0).count() as u64;
    if n_orphans > 0 {
        out.push(Warning::UnknownShipment.finding(n_orphans, &[]));
    }
    // Each shipment's row among the earlier night's, and how many clean events it had then.
    const NOT_KEPT: u32 = u32::MAX;
    let mut base_row = vec![NOT_KEPT; if base_events.is_some() { n_ships } else { 0 }];
    if let Some(be) = &base_events {
        if be.start.len() != base_at.len() + 1 {
            return Err(Error::internal("the kept checks' events and shipments differ in number"));
        }
        for (b, &k) in base_at.iter().enumerate() {
            *base_row.get_mut(k as usize).ok_or_else(|| Error::internal("a kept shipment is not tonight's"))? =
                b as u32;
        }
    }
    let base_len = |k: usize| -> u32 {
        match (&base_events, base_row.get(k)) {
            (Some(be), Some(&b)) if b != NOT_KEPT => be.start[b as usize + 1] - be.start[b as usize],
            _ => 0,
        }
    };
    // Per shipment, its kept clean events then its new rows: a counting sort by shipment, then
    // each shipment's few events by time and code.
    let mut fresh = vec![0u32; n_ships];
    for &i in raw.ship.iter().filter(|&&s| s & ORPHAN == 0) {
        fresh[i as usize] += 1;
    }
    let mut start = vec![0u32; n_ships + 1];
    for k in 0..n_ships {
        start[k + 1] = start[k] + base_len(k) + fresh[k];
    }
    let total = start[n_ships] as usize;
    let mut time = vec![0i64; total];
    let mut code = vec![0u8; total];
    let has_eta = raw.eta.is_some() || base_events.as_ref().is_some_and(|e| e.eta.is_some());
    let mut eta: Option<Vec<i64>> = has_eta.then(|| vec![NO_ETA; total]);
    // Scattered in parallel: each task owns a range of shipments (whose slots are one slice of
    // the arrays), copies their kept events in, and reads every new row, writing its
    // shipments' rows in row order, so each shipment's events come as a single pass puts them.
    // The writes land at random, which was the cost of the single pass (seconds at 10M): a task
    // per thread shares them out.
    {
        let parts = rayon::current_num_threads().clamp(1, 64);
        let ranges = (0..parts).map(|p| n_ships * p / parts..n_ships * (p + 1) / parts);
        let tasks = slices_by_shipment(&start, ranges, &mut time, &mut code, eta.as_deref_mut());
        tasks.into_par_iter().for_each(|(ships, ts, cs, es)| {
            let base = start[ships.start];
            let mut fill: Vec<u32> = start[ships.clone()].iter().map(|s| s - base).collect();
            if let Some(be) = &base_events {
                for k in ships.clone() {
                    let b = base_row[k] as usize;
                    if b == NOT_KEPT as usize {
                        continue;
                    }
                    let (from, to) = (be.start[b] as usize, be.start[b + 1] as usize);
                    let at = fill[k - ships.start] as usize;
                    let n = to - from;
                    be.time.copy_to(from, &mut ts[at..at + n]);
                    be.code.copy_to(from, &mut cs[at..at + n]);
                    if let Some(src) = &be.eta {
                        src.copy_to(from, &mut es[at..at + n]);
                    }
                    fill[k - ships.start] += n as u32;
                }
            }
            let (lo, hi) = (ships.start as u32, ships.end as u32);
            for k in 0..raw.len() {
                let i = raw.ship[k];
                // Orphans carry the top bit, above every shipment index.
                if i < lo || i >= hi || i & ORPHAN != 0 {
                    continue;
                }
                let slot = &mut fill[(i - lo) as usize];
                ts[*slot as usize] = raw.time[k];
                cs[*slot as usize] = code_of[raw.status[k] as usize];
                if let Some(src) = raw.eta.as_ref() {
                    es[*slot as usize] = src[k];
                }
                *slot += 1;
            }
        });
    }
    let created = shipments.column("created_at")?.as_materialized_series().to_physical_repr().into_owned();
    let created: Vec<i64> = created.i64()?.iter().map(|v| v.unwrap_or(i64::MIN)).collect();

    // Per shipment, in parallel over blocks of shipments: order, drop exact duplicates, and count
    // what looks wrong. Blocks rather than one task per shipment: per-shipment slices and
    // results were 80 bytes a shipment (0.8 GB at 10M), for counts that are summed anyway.
    const BLOCK: usize = 8192;
    let ranges = (0..n_ships).step_by(BLOCK).map(|k0| k0..(k0 + BLOCK).min(n_ships));
    let blocks = slices_by_shipment(&start, ranges, &mut time, &mut code, eta.as_deref_mut());
    #[derive(Default)]
    struct Counts {
        dups: u64,
        early: u64,
        disorder: u64,
        /// What the earlier night counted of the shipments checked again.
        early_then: u64,
        disorder_then: u64,
    }
    let per_block: Vec<(Vec<u32>, Counts)> = blocks
        .into_par_iter()
        .map(|(ships, ts, cs, es)| {
            let mut kept = Vec::with_capacity(ships.len());
            let mut counts = Counts::default();
            let mut ev: Vec<(i64, u8, i64)> = Vec::new();
            let base = start[ships.start] as usize;
            for k in ships {
                let (a, b) = (start[k] as usize - base, start[k + 1] as usize - base);
                let (ts, cs) = (&mut ts[a..b], &mut cs[a..b]);
                let es: &mut [i64] = if es.is_empty() { &mut [] } else { &mut es[a..b] };
                let then = base_len(k) as usize;
                if fresh[k] == 0 && base_row.get(k).is_some_and(|&r| r != NOT_KEPT) {
                    // Checked on the earlier night, and no new row since: as it was, counted then.
                    kept.push(ts.len() as u32);
                    continue;
                }
                if then > 0 {
                    counts.early_then += ts[..then].iter().filter(|&&t| t < created[k]).count() as u64;
                    counts.disorder_then += milestones_out_of_order(&cs[..then]) as u64;
                }
                let at = |j: usize| (ts[j], cs[j], if es.is_empty() { NO_ETA } else { es[j] });
                // Most shipments' events arrive in order, without duplicates: strictly
                // increasing already, they are what sorting and deduplicating would give, and
                // stay in place (copying them out and back was most of this pass).
                if (1..ts.len()).all(|j| at(j - 1) < at(j)) {
                    counts.early += ts.iter().filter(|&&t| t < created[k]).count() as u64;
                    counts.disorder += milestones_out_of_order(cs) as u64;
                    kept.push(ts.len() as u32);
                    continue;
                }
                ev.clear();
                ev.extend((0..ts.len()).map(at));
                ev.sort_unstable();
                ev.dedup();
                counts.dups += (ts.len() - ev.len()) as u64;
                counts.early += ev.iter().filter(|e| e.0 < created[k]).count() as u64;
                for (j, e) in ev.iter().enumerate() {
                    (ts[j], cs[j]) = (e.0, e.1);
                    if !es.is_empty() {
                        es[j] = e.2;
                    }
                }
                counts.disorder += milestones_out_of_order(&cs[..ev.len()]) as u64;
                kept.push(ev.len() as u32);
            }
            (kept, counts)
        })
        .collect();
    drop(base_events);
    let kept: Vec<u32> = per_block.iter().flat_map(|b| b.0.iter().copied()).collect();
    let total = |f: fn(&Counts) -> u64| per_block.iter().map(|b| f(&b.1)).sum::<u64>();
    // The earlier night's counts, less what it counted of the shipments checked again, plus
    // tonight's counts of those and of the rest.
    let carried = |then: u64, taken_back: u64| {
        then.checked_sub(taken_back).ok_or_else(|| Error::internal("the kept checks' counts do not add up"))
    };
    let n_dup = base_tally.duplicates + total(|c| c.dups);
    let n_early = carried(base_tally.early, total(|c| c.early_then))? + total(|c| c.early);
    let n_disorder = carried(base_tally.disorder, total(|c| c.disorder_then))? + total(|c| c.disorder);
    drop(per_block);

    if n_dup > 0 {
        out.push(Warning::DuplicateEvent.finding(n_dup, &[]));
    }
    if n_early > 0 {
        out.push(Warning::EventBeforeCreation.finding(n_early, &[]));
    }
    if n_disorder > 0 {
        out.push(Warning::MilestonesOutOfOrder.finding(n_disorder, &[]));
    }
    let silent = kept.iter().filter(|&&n| n == 0).count() as u64;
    if silent > 0 {
        out.push(Warning::ShipmentWithoutEvents.finding(silent, &[]));
    }

    let events =
        Events { start, time, code, eta }.keep_prefixes(kept.iter().enumerate().map(|(k, &n)| (k, n as usize)));
    // The unmapped rows: tonight's, among the rows decoded, and the earlier night's.
    let sources = [
        (&raw.ship[..], &raw.time[..], &raw.status[..]),
        (&base_unmapped.ship, &base_unmapped.time, &base_unmapped.status),
    ];
    let unmapped = describe_unmapped(&unknown, &sources, &unmapped_of, &events);
    let tally = Tally { duplicates: n_dup, early: n_early, disorder: n_disorder };
    let unmapped_status = unmapped_of.iter().map(|&u| u != u32::MAX).collect();
    Ok((events, unmapped, Checks { tally, kept_unmapped: base_unmapped, unmapped_status }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a status with a byte-order mark was printed `"\u{feff}X"` (a Rust escape
    /// TOML refuses), and an empty status as `"" = "SCAN"` (a key the config refuses): the
    /// pasted snippet broke the config. Every line of it now parses as printed, to the status.
    #[test]
    fn the_status_snippet_pastes_whatever_the_statuses() {
        let unmapped = |status: &str| Unmapped {
            status: status.into(),
            count: 1,
            first_seen: String::new(),
            last_seen: String::new(),
            after: "none".into(),
            before: "none".into(),
            share_between: 0.0,
            suggestion: "SCAN".into(),
            reason: "r".into(),
        };
        let statuses = ["\u{feff}IN_TRANSIT", "a\"b\\c", "x\u{1f}\u{202e}y", "\u{10ffff}z", "", "HUB*"];
        let report = Report {
            input: String::new(),
            valid: true,
            shipments: 0,
            events: 0,
            files: vec![],
            errors: vec![],
            warnings: vec![],
            unmapped_statuses: statuses.iter().map(|s| unmapped(s)).collect(),
        };
        let snippet = suggest_statuses(&report);
        // As a terminal shows it (`main` prints it through `printable`): nothing to escape.
        for line in snippet.lines() {
            assert_eq!(crate::error::printable(line), line);
        }
        let parsed: toml::Table = toml::from_str(&snippet).unwrap();
        let keys: Vec<&String> = parsed["input"]["statuses"].as_table().unwrap().keys().collect();
        assert_eq!(keys.len(), 4, "{snippet}");
        for s in &statuses[..4] {
            assert!(keys.contains(&&s.to_string()), "{s:?} in {snippet}");
        }
        assert!(snippet.contains("# \"\" = \"SCAN\" (an empty status") && snippet.contains("# \"HUB*\""), "{snippet}");
    }

    /// A night whose shipment rows or event offsets would not fit their `u32` is refused,
    /// with the way out, rather than wrapped; one at the limits is not.
    #[test]
    fn a_night_too_large_for_one_process_is_refused() {
        let (ships, events) = (ORPHAN as u64 - 1, u32::MAX as u64);
        assert!(fits_one_process(ships, events).is_ok());
        for (s, e) in [(ships + 1, events), (ships, events + 1)] {
            let err = fits_one_process(s, e).unwrap_err();
            assert_eq!(err.exit_code(), 65);
            assert!(err.to_string().contains("run the night sharded"), "{err}");
        }
    }

    /// Every count adds to its own (the longest id is the larger), whichever side is larger.
    #[test]
    fn event_counts_add_field_by_field() {
        let a =
            EventCounts { rows: 1, long_ids: 20, longest_id: 300, empty_ids: 4_000, bad_times: 50_000, bad_etas: 6 };
        let b = EventCounts {
            rows: 600_000,
            long_ids: 7_000_000,
            longest_id: 8,
            empty_ids: 90,
            bad_times: 100,
            bad_etas: 70,
        };
        let (mut ab, mut ba) = (a, b);
        ab.add(&b);
        ba.add(&a);
        let want = EventCounts {
            rows: 600_001,
            long_ids: 7_000_020,
            longest_id: 300,
            empty_ids: 4_090,
            bad_times: 50_100,
            bad_etas: 76,
        };
        assert_eq!((ab, ba), (want, want));
    }

    #[test]
    fn each_warning_is_found_by_its_check_and_column_and_states_its_count() {
        for w in Warning::ALL {
            assert_eq!(Warning::find(w.check(), w.column()), Some(w), "{w:?}");
            let f = w.finding(17, &[("LOST".into(), 17)]);
            assert_eq!((f.level, f.check, f.column.as_str(), f.count), (Level::Warning, w.check(), w.column(), 17));
            assert!(f.message.starts_with("17 "), "{w:?}: {}", f.message);
        }
        assert!(Warning::UnknownStatus.finding(2, &[("LOST".into(), 2)]).message.contains("\"LOST\" ×2"));
    }

    /// Events before creation, milestones out of order and duplicates are counted alike for a
    /// shipment whose events arrive in order (kept in place) and for one whose events are
    /// shuffled and doubled (sorted and deduplicated): the same events give the same counts
    /// and the same clean events either way.
    #[test]
    fn event_checks_count_alike_for_events_in_order_and_shuffled() {
        const H: i64 = crate::schema::MICROS_PER_HOUR;
        let statuses: Vec<String> =
            ["CREATED", "PICKED_UP", "DEPARTED", "ARRIVED", "DELIVERED"].map(String::from).into();
        // (hours after creation, status): one scan before creation, ARRIVED before DEPARTED.
        let life: [(i64, u32); 5] = [(-2, 0), (1, 1), (5, 3), (9, 2), (30, 4)];
        let created = 100 * H;
        let shipments = DataFrame::new(
            2,
            vec![
                Column::new("created_at".into(), vec![created, created])
                    .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
                    .unwrap(),
            ],
        )
        .unwrap();
        // Shipment 0 in order; shipment 1 reversed and every scan twice.
        let mut rows: Vec<(u32, i64, u32)> = life.iter().map(|&(h, st)| (0, created + h * H, st)).collect();
        for _ in 0..2 {
            rows.extend(life.iter().rev().map(|&(h, st)| (1, created + h * H, st)));
        }
        let raw = RawEvents {
            ship: rows.iter().map(|r| r.0).collect(),
            time: rows.iter().map(|r| r.1).collect(),
            status: rows.iter().map(|r| r.2).collect(),
            statuses,
            counts: EventCounts { rows: rows.len() as u64, ..EventCounts::default() },
            ..RawEvents::default()
        };
        let mut out = Vec::new();
        let (events, _, _) = check_events(&raw, None, &shipments, &Vocabulary::canonical(), &mut out).unwrap();
        let count = |w: Warning| out.iter().find(|f| f.check == w.check()).map(|f| f.count);
        assert_eq!(count(Warning::EventBeforeCreation), Some(2), "{out:?}");
        assert_eq!(count(Warning::MilestonesOutOfOrder), Some(2), "{out:?}");
        assert_eq!(count(Warning::DuplicateEvent), Some(5), "{out:?}");
        assert_eq!(events.of(0), events.of(1));
        assert_eq!(events.of(0).0, life.map(|(h, _)| created + h * H));
    }

    /// Checking the rows of later files on top of an earlier night's checks (`Checked`) gives
    /// the events, findings and unmapped statuses' descriptions that checking every row gives:
    /// shipments that joined since, later rows for shipments checked before (duplicates of
    /// their kept events, scans before creation, milestones out of order), unknown ids and
    /// unmapped statuses, with and without carrier estimates.
    #[test]
    fn checks_on_top_of_kept_ones_equal_checking_every_row() {
        const H: i64 = crate::schema::MICROS_PER_HOUR;
        let statuses: Vec<String> =
            ["CREATED", "PICKED_UP", "DEPARTED", "ARRIVED", "DELIVERED", "LOOKED_AT", "IN_A_VAN"]
                .map(String::from)
                .into();
        let vocab = Vocabulary::canonical();
        let mut rng = crate::TestRng::new(53);
        let mut used_kept = 0;
        for round in 0..300 {
            let mut next = |m: u64| rng.next() % m;
            let n = 1 + next(12) as usize;
            let created: Vec<i64> = (0..n).map(|_| (100 + next(20) as i64) * H).collect();
            // The shipments the earlier night knew (tonight's indices, ascending).
            let known: Vec<usize> = (0..n).filter(|_| next(4) != 0).collect();
            // Carrier estimates in neither night's files, in both, or in one of them only (a
            // file without the column gives its rows none).
            let (eta_then, eta_later) = [(false, false), (true, true), (true, false), (false, true)][round % 4];
            // The kept events' file decodes in row groups: read across them.
            let chunk_rows = 1 + next(6) as usize;
            // (shipment or ORPHAN | k, time, status, estimate): the earlier night's rows name
            // known shipments or unknown ids; later rows any shipment, some repeating earlier rows.
            let row = |ships: &[usize], with_eta: bool, next: &mut dyn FnMut(u64) -> u64| -> (u32, i64, u32, i64) {
                let ship = if ships.is_empty() || next(8) == 0 {
                    ORPHAN | next(3) as u32
                } else {
                    ships[next(ships.len() as u64) as usize] as u32
                };
                let eta = if with_eta && next(2) == 0 { (200 + next(50) as i64) * H } else { NO_ETA };
                (ship, (95 + next(40) as i64) * H, next(statuses.len() as u64) as u32, eta)
            };
            let earlier: Vec<_> = (0..next(30)).map(|_| row(&known, eta_then, &mut next)).collect();
            let all: Vec<usize> = (0..n).collect();
            let mut later: Vec<_> = (0..next(30)).map(|_| row(&all, eta_later, &mut next)).collect();
            for _ in 0..next(4) {
                if let Some(&r) = earlier.get(next(earlier.len().max(1) as u64) as usize) {
                    later.push((r.0, r.1, r.2, if eta_later { r.3 } else { NO_ETA }));
                }
            }
            // A night's rows have estimates when one of its files has the column.
            let raw_of =
                |rows: &[(u32, i64, u32, i64)], counted: usize, ship: &dyn Fn(u32) -> u32, with_eta: bool| RawEvents {
                    ship: rows.iter().map(|r| ship(r.0)).collect(),
                    time: rows.iter().map(|r| r.1).collect(),
                    status: rows.iter().map(|r| r.2).collect(),
                    eta: with_eta.then(|| rows.iter().map(|r| r.3).collect()),
                    statuses: statuses.clone(),
                    orphans: (0..3).map(|k| format!("unknown-{k}")).collect(),
                    counts: EventCounts { rows: counted as u64, ..EventCounts::default() },
                };
            let shipments_of = |ships: &[usize]| {
                let c: Vec<i64> = ships.iter().map(|&k| created[k]).collect();
                let col = Column::new("created_at".into(), c).cast(&DataType::Datetime(TimeUnit::Microseconds, None));
                DataFrame::new(ships.len(), vec![col.unwrap()]).unwrap()
            };
            let every: Vec<_> = earlier.iter().chain(&later).copied().collect();
            let (mut want_out, mut got_out, mut then_out) = (Vec::new(), Vec::new(), Vec::new());
            let same = |s: u32| s;
            let (want, want_unmapped, want_checks) = check_events(
                &raw_of(&every, every.len(), &same, eta_then || eta_later),
                None,
                &shipments_of(&all),
                &vocab,
                &mut want_out,
            )
            .unwrap();
            // The earlier night: its shipments numbered among themselves.
            let base_row = |s: u32| {
                if s & ORPHAN != 0 { s } else { known.iter().position(|&k| k == s as usize).unwrap() as u32 }
            };
            let then_raw = raw_of(&earlier, earlier.len(), &base_row, eta_then);
            let (then_events, _, then_checks) =
                check_events(&then_raw, None, &shipments_of(&known), &vocab, &mut then_out).unwrap();
            // What the state keeps of it, in tonight's numbering.
            let unmapped = |st: u32| then_checks.unmapped_status[st as usize];
            let kept: Vec<_> = earlier.iter().filter(|r| unmapped(r.2) && r.0 & ORPHAN == 0).collect();
            let base = Checked {
                events: pieces_of(then_events, chunk_rows),
                at: known.iter().map(|&k| k as u32).collect(),
                tally: then_checks.tally,
                unmapped: UnmappedRows {
                    ship: kept.iter().map(|r| r.0).collect(),
                    time: kept.iter().map(|r| r.1).collect(),
                    status: kept.iter().map(|r| r.2).collect(),
                },
            };
            used_kept += (!known.is_empty() && !later.is_empty()) as usize;
            // Tonight's rows: the earlier night's rows of unknown ids again, and the later rows.
            let again = earlier.iter().filter(|r| r.0 & ORPHAN != 0);
            let tonight: Vec<_> = again.clone().chain(&later).copied().collect();
            let tonight_eta = eta_later || (eta_then && again.count() > 0);
            let (got, got_unmapped, got_checks) = check_events(
                &raw_of(&tonight, every.len(), &same, tonight_eta),
                Some(base),
                &shipments_of(&all),
                &vocab,
                &mut got_out,
            )
            .unwrap();
            let ctx =
                format!("round {round}: {n} shipments, known {known:?}, {} + {} rows", earlier.len(), later.len());
            assert_eq!(
                (&got.start, &got.time, &got.code, &got.eta),
                (&want.start, &want.time, &want.code, &want.eta),
                "{ctx}"
            );
            assert_eq!(got_out, want_out, "{ctx}");
            assert_eq!(format!("{got_unmapped:?}"), format!("{want_unmapped:?}"), "{ctx}");
            assert_eq!(got_checks.tally, want_checks.tally, "{ctx}");
        }
        assert!(used_kept > 150, "{used_kept}");
    }

    /// `events` as the state's kept file decodes them: each column in chunks of `rows` rows.
    fn pieces_of(e: Events, rows: usize) -> KeptEvents {
        fn chunked<T: PolarsNumericType>(v: Vec<T::Native>, rows: usize) -> Pieces<T> {
            let mut parts = v.chunks(rows.max(1)).map(|p| ChunkedArray::<T>::from_vec(PlSmallStr::EMPTY, p.to_vec()));
            let mut ca = parts.next().unwrap_or_else(|| ChunkedArray::from_vec(PlSmallStr::EMPTY, Vec::new()));
            for p in parts {
                ca.append(&p).unwrap();
            }
            assert_eq!(ca.chunks().len(), v.len().div_ceil(rows).max(1));
            Pieces::new(ca).unwrap()
        }
        KeptEvents {
            start: e.start,
            time: chunked(e.time, rows),
            code: chunked(e.code, rows),
            eta: e.eta.map(|v| chunked(v, rows)),
        }
    }

    /// Rows copied out of a chunked column are the rows of the column whole, from any row and
    /// of any length, across chunk ends.
    #[test]
    fn pieces_copy_the_rows_of_the_column_whole() {
        let whole: Vec<i64> = (0..23).map(|k| k * 7 - 40).collect();
        for rows in [1, 2, 5, 23, 30] {
            let p = pieces_of(Events { start: vec![0], time: whole.clone(), code: vec![0; 23], eta: None }, rows);
            assert_eq!(p.time.len(), 23);
            for from in 0..=23 {
                for n in 0..=23 - from {
                    let mut got = vec![0i64; n];
                    p.time.copy_to(from, &mut got);
                    assert_eq!(got, whole[from..from + n], "chunks of {rows}, rows {from}..{}", from + n);
                }
            }
        }
    }

    #[test]
    fn events_split_into_prefixes_and_tails_rejoin_as_they_were() {
        let mut rng = crate::TestRng::new(41);
        for round in 0..200 {
            let n = (rng.next() % 12) as usize;
            let with_eta = round % 2 == 0;
            let mut ev = Events { start: vec![0], eta: with_eta.then(Vec::new), ..Events::default() };
            for _ in 0..n {
                for _ in 0..rng.next() % 6 {
                    ev.time.push(rng.next() as i64);
                    ev.code.push((rng.next() % 200) as u8);
                    if let Some(e) = ev.eta.as_mut() {
                        e.push(rng.next() as i64 - 7);
                    }
                }
                ev.start.push(ev.time.len() as u32);
            }
            let want = ev.clone();
            // Some shipments listed with a prefix (possibly empty or whole), the others none.
            let listed: Vec<bool> = (0..n).map(|_| rng.next() % 4 != 0).collect();
            let keep: Vec<u32> = (0..n)
                .map(|i| if listed[i] { (rng.next() % (ev.of(i).0.len() as u64 + 1)) as u32 } else { 0 })
                .collect();
            let tails = ev.split_tails(&keep);
            for i in 0..n {
                assert_eq!(ev.of(i).0, &want.of(i).0[..keep[i] as usize], "round {round}");
                assert_eq!(tails.of(i).0, &want.of(i).0[keep[i] as usize..], "round {round}");
            }
            let kept = ev.keep_prefixes((0..n).filter(|&i| listed[i]).map(|i| (i, keep[i] as usize)));
            let back = Events::rejoin(kept, &listed, tails);
            assert_eq!((back.start, back.time, back.code, back.eta), (want.start, want.time, want.code, want.eta));
        }
    }

    #[test]
    fn the_sorted_ids_binary_search_finds_the_rows_the_id_map_finds() {
        let mut rng = crate::TestRng::new(29);
        let mut next = |m: u64| rng.next() % m;
        for n in 0..200usize {
            // Few distinct ids (repeats), some null, some prefixes of others, some empty.
            let id = |k: u64, j: u64| "ab".repeat(k as usize % 3) + &j.to_string();
            let ids: Vec<Option<String>> = (0..n % 37)
                .map(|_| match next(11) {
                    0 => None,
                    1 => Some(String::new()),
                    k => Some(id(k, next(5))),
                })
                .collect();
            let df = DataFrame::new(ids.len(), vec![Column::new("shipment_id".into(), ids)]).unwrap();
            let sorted = sort_shipments(df).unwrap();
            let sorted =
                DataFrame::new(sorted.height(), vec![sorted.column("shipment_id").unwrap().rechunk()]).unwrap();
            let map = IdIndex::Hash(id_index(&sorted).unwrap());
            let search = IdIndex::for_lookups(&sorted, 0).unwrap();
            assert!(matches!(search, IdIndex::Sorted(_)) || sorted.height() == 0);
            for k in 0..12 {
                for j in 0..6 {
                    let probe = id(k, j);
                    assert_eq!(search.get(&probe), map.get(&probe), "{probe:?} in {sorted}");
                }
            }
            assert_eq!(search.get(""), map.get(""));
        }
    }

    #[test]
    fn duplicate_ids_found_by_neighbours_are_the_rows_polars_marks_duplicated() {
        let mut rng = crate::TestRng::new(11);
        let mut next = |m: u64| rng.next() % m;
        for n in 0..300usize {
            // Few distinct ids (many repeats), some null, some prefixes of others.
            let ids: Vec<Option<String>> = (0..n % 23)
                .map(|_| match next(9) {
                    0 => None,
                    k => Some("ab".repeat(k as usize % 3) + &next(4).to_string()),
                })
                .collect();
            let df = DataFrame::new(ids.len(), vec![Column::new("shipment_id".into(), ids.clone())]).unwrap();
            let sorted = sort_shipments(df.clone()).unwrap();
            let sorted_ids = sorted.column("shipment_id").unwrap().str().unwrap();
            assert!(ids_sorted(sorted_ids), "{ids:?}");
            let want = sorted.clone().lazy().select([col("shipment_id").is_duplicated()]).collect().unwrap();
            let want = want.columns()[0].bool().unwrap().clone();
            let first_want = want.iter().position(|d| d == Some(true));
            assert_eq!(duplicated_ids(sorted_ids), (count_true(&want), first_want), "{ids:?}");
            let unsorted = df.column("shipment_id").unwrap().str().unwrap();
            let in_order = ids.windows(2).all(|w| w[0] <= w[1]);
            assert_eq!(ids_sorted(unsorted), in_order, "{ids:?}");
        }
    }
}
