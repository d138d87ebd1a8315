//! The state between nights, `OUT/state/`: the decoded input kept as one segment per input
//! file, so a night decodes only the files that are new since the night before. Decoding
//! (Parquet pages, string ids looked up among the shipments, statuses interned) is most of the
//! `validate` stage; a segment is the result in compact numeric form.
//!
//! ```text
//! OUT/state/CURRENT               name of the generation in use and when the night that
//!                                 wrote it began taking stamps, replaced atomically
//! OUT/state/state-<id>.json       a generation: the input files it covers and their segments
//! OUT/state/segments/*.parquet    one per events file read since the checked events
//!                                 (below), written once and never changed; the shipments
//!                                 sorted (below), and one per shipments file read since;
//!                                 with the sorted shipments, that night's checked events
//! ```
//!
//! A night loads the generation `CURRENT` names (its bytes' BLAKE3 must match its name) and
//! checks it against the input: the same tool version and `[input]` settings, the same input
//! folder, every covered file still there with the same size and either the same times and
//! inode (`ingest::Stamp`, unless too recent to trust: `Stamp::racy`) or the same bytes (a
//! file only touched, linked or given a mode), every new file sorting after the covered files
//! of its table (date partitions `date=YYYY-MM-DD/` do), and every segment's BLAKE3 intact. It then decodes only
//! the new files and assembles exactly the `RawInput` that decoding every file gives: the same
//! rows in the same order, the same status and unknown-id numbering. Anything
//! else is a full refresh, with a warning that names the reason; `run --full-refresh` asks for
//! one. A night's generation is written (new segments, then its JSON) before its run folder is
//! committed, and `CURRENT` moves to it only after: a night killed at any moment leaves
//! `CURRENT` on a complete generation, the one before or its own.
//!
//! Shipments are kept sorted by id in one file (`Sorted`), each row with its arrival row (its
//! row in file order), and the shipments files read after it as one segment each: the next
//! night reads the sorted rows in order and merges the later ones in (sorting every shipment id
//! again was a quarter of its `validate` stage at 10M shipments, and gathering the rows from
//! their day files' segments in id order most of the rest). A night writes the sorted file
//! again, holding every file, when the later files' rows pass an eighth of it. Nothing trusts
//! its order: rows that are not sorted are sorted.
//!
//! The night that writes the sorted shipments also keeps its checked events (`checked`): every
//! shipment's clean events and what the checks counted. The nights after it read those in
//! place of the events segments they cover, and decode and check only the rows of the events
//! files read since (`validate::Checked`). The files they cover stay listed (their sizes,
//! times and hashes tell a changed input file, their statuses and counts are the night's)
//! without rows: a night that writes checked events writes no segment rows for them.
//!
//! Segments are exact: event times and estimates as integer microseconds, shipments as decoded.
//! Nothing in the state depends on the as-of date, so nights may be rerun in any order.

mod checked;
pub mod digest;
pub mod model;
mod record;
pub mod tables;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::InputConfig;
use crate::error::{Error, Result};
use crate::ingest::{self, FileInfo, Finding, Level, Stamp};
use crate::night::TOOL_VERSION;
use crate::schema::Table;
use crate::validate::{self, EventCounts, ORPHAN, RawEvents, RawInput};

/// Layout version of a generation file; another value is a full refresh. 4: implausible
/// carrier estimates are decoded as none and counted (`EventCounts::bad_etas`); a segment of
/// layout 3 holds them as estimates. 5: statuses are matched without marks no one sees
/// (`statuses::normal`), and findings name a file as it is in the input; a segment of layout 4
/// holds such statuses unmapped and findings under `table/file`.
const FORMAT: u32 = 5;
pub const DIR: &str = "state";
const CURRENT: &str = "CURRENT";
const SEGMENTS: &str = "segments";

/// One generation of the state: what `state-<id>.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Generation {
    format: u32,
    tool_version: String,
    /// The input folder, canonicalised.
    input: String,
    /// `[input]` as it shapes decoding (the memory budget aside).
    input_config: serde_json::Value,
    /// The night that wrote this generation (for people; nothing depends on it).
    written_by: String,
    shipments: Vec<Segment>,
    events: Vec<Segment>,
    /// The shipments of the first `files` shipment files, sorted: read in place of their
    /// segments (each of those names this file). Every generation this layout writes has it.
    sorted: Option<Sorted>,
    /// The clean events of the night that wrote `sorted` and what its checks counted: the
    /// nights after it check only the events files read since (`checked`).
    #[serde(default)]
    checked: Option<checked::Entry>,
}

/// The shipments of a generation's first `files` shipment files (`rows` of them) in one file,
/// in the order a night sorts them, each with its arrival row (`ARRIVAL`). A night reads them
/// in order and merges the later files' rows in: gathering every shipment from its day file's
/// segment in id order read the files all over (at 10M shipments, 2.3 s of the incremental
/// night). Written again, covering every file, when the later files' rows exceed an eighth of
/// it (`rewrites_sorted`), so a night writes it about once every few weeks of history.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sorted {
    data: String,
    data_blake3: String,
    rows: u64,
    files: u64,
}

/// The arrival row of each of `Sorted`'s rows (sorted row → row in file order).
const ARRIVAL: &str = "__lanewatch_arrival";

/// Whether a generation of `rows` shipments writes its sorted file again, when the one it
/// read holds `sorted_rows` of them (`None`: it read none).
fn rewrites_sorted(rows: u64, sorted_rows: Option<u64>) -> bool {
    sorted_rows.is_none_or(|r| rows.saturating_sub(r).saturating_mul(8) > r)
}

/// One input file's decoded rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Segment {
    /// As the manifest records the file: path relative to the input folder, rows, bytes, BLAKE3.
    path: String,
    /// The path as `ingest::exact` writes it, when that differs from `path` (a name with
    /// control characters, a backslash or bytes that are not UTF-8): files are matched by it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    exact: String,
    rows: u64,
    bytes: u64,
    blake3: String,
    /// The file's stamp when it was read, or when its bytes were last found the same again:
    /// with `bytes`, how a changed file is noticed without reading it.
    #[serde(flatten)]
    stamp: Stamp,
    /// File under `segments/` and the BLAKE3 of its bytes.
    data: String,
    data_blake3: String,
    /// Events only: statuses and unknown shipment ids in the order the file first used them
    /// (the segment's rows index these), and the counts the id and time checks need.
    #[serde(default)]
    statuses: Vec<String>,
    #[serde(default)]
    orphans: Vec<String>,
    #[serde(default)]
    counts: Counts,
}

impl Segment {
    /// The file's exact name, which the input's files are matched against.
    fn name(&self) -> &str {
        if self.exact.is_empty() { &self.path } else { &self.exact }
    }
}

/// An events segment's decoded counts (its JSON fields are `EventCounts`' beside `has_eta`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Counts {
    #[serde(flatten)]
    events: EventCounts,
    has_eta: bool,
}

/// What a night read: the whole decoded input, plus what it needs to keep the state.
pub struct Loaded {
    /// The decoded input; with `checked`, its events are the rows of the files after those the
    /// kept checks cover (their counts are every file's).
    pub raw: RawInput,
    /// The kept checks, when they hold for tonight (`validate::check_with`).
    pub checked: Option<validate::Checked>,
    /// File-level findings, in the order a full read reports them.
    pub findings: Vec<Finding>,
    pub keep: Keep,
}

/// What writing the next generation needs besides the raw input.
pub struct Keep {
    pub info: StateInfo,
    carry: Carry,
}

/// What the manifest records of the state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StateInfo {
    /// The generation read, when one was used.
    pub used: Option<String>,
    /// The generation written, once it is.
    pub written: Option<String>,
    pub files_reused: u64,
    pub files_read: u64,
    /// Events files whose rows were not read: the kept checks hold them (`checked`).
    pub events_files_checked_before: u64,
    /// Why an existing state was not used (also a warning of the run).
    pub full_refresh: Option<String>,
    /// Lane tables taken from the state and computed (`tables`).
    pub lane_tables_reused: u64,
    pub lane_tables_computed: u64,
    /// Disruption series days taken from the state and computed.
    pub series_days_reused: u64,
    pub series_days_computed: u64,
    /// Why kept lane tables were not used (also a warning of the run).
    pub lane_tables_not_used: Option<String>,
    /// With a training schedule (`model.retrain_every_days` above 1): the model's training
    /// night, whether it was the kept model (`model`) or trained by this night, and why a kept
    /// model could not be read (also a warning).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_training_night: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_reused: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_not_used: Option<String>,
    /// Why the night's generation could not be written (also a warning): the night went on
    /// without one, and the next starts from the state before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_written: Option<String>,
    /// The earliest time among the rows of the files decoded tonight: shipments' creation
    /// (`i64::MIN` for one left null), events' scan; `i64::MAX` when there are none. A row at
    /// or after a cutoff is not known before it, so when the generation `used` was read, what
    /// was known before a cutoff at or before this is what that generation knew
    /// (`state::digest`).
    #[serde(skip)]
    pub new_rows_from: i64,
}

/// The reused segments, the new files' decoded rows and how shipment rows moved, kept from
/// loading until the state is written.
struct Carry {
    reused_ships: Vec<Segment>,
    reused_events: Vec<Segment>,
    /// Per new shipments file: its info and its rows' range in arrival order.
    new_ships: Vec<(FileInfo, std::ops::Range<usize>)>,
    /// Per new events file: its info, its rows' range in the assembled events and its
    /// counts.
    new_events: Vec<(FileInfo, std::ops::Range<usize>, Counts)>,
    /// Sorted shipment index → arrival row (shipment rows stacked in file order).
    arrival_of: Vec<u32>,
    /// The read generation's sorted shipments, when it had them, and its kept checks.
    sorted: Option<Sorted>,
    checked: Option<checked::Entry>,
    origin: Origin,
}

/// What a generation records of the night's input besides its files, and when the night began
/// taking the files' stamps (`Stamp::racy`), which `CURRENT` records with the generation.
#[derive(Clone)]
struct Origin {
    /// `canonical_input`.
    input: String,
    /// `input_key`.
    input_config: serde_json::Value,
    stamps_from: i64,
}

fn state_dir(out: &Path) -> PathBuf {
    out.join(DIR)
}

/// `[input]` as a JSON value without the memory budget (a budget change decodes nothing
/// differently), with the BLAKE3 of the status preset it names: the preset is built into the
/// binary, and a build whose preset maps a status otherwise decodes the same files otherwise
/// under the same name and version.
fn input_key(cfg: &InputConfig) -> serde_json::Value {
    let mut c = cfg.clone();
    c.max_memory_gb = 0.0;
    let mut key = serde_json::to_value(&c).unwrap_or(serde_json::Value::Null);
    let preset = crate::statuses::PRESETS.iter().find(|(name, _)| *name == cfg.status_preset);
    if let (serde_json::Value::Object(map), Some((_, text))) = (&mut key, preset) {
        map.insert("status_preset_blake3".into(), blake3::hash(text.as_bytes()).to_hex().to_string().into());
    }
    key
}

pub(crate) fn canonical_input(input: &Path) -> String {
    std::fs::canonicalize(input).unwrap_or_else(|_| input.to_path_buf()).to_string_lossy().into_owned()
}

/// What `CURRENT` says: the generation in use, and when the night that wrote it began taking
/// its stamps (`stamps_from`; absent from a `CURRENT` written before it was recorded).
struct Current {
    name: String,
    generation: Generation,
    stamps_from: Option<i64>,
}

/// The line of `CURRENT` after the generation's name: `stamps_from <ns since the epoch>`.
const STAMPS_FROM: &str = "stamps_from ";

/// The generation `CURRENT` names, or `Ok(None)` when there is no state yet; `Err(why)` when
/// there is one that cannot be used.
fn read_current(dir: &Path) -> std::result::Result<Option<Current>, String> {
    let text = match std::fs::read_to_string(dir.join(CURRENT)) {
        Ok(n) => n,
        // No state yet, unless generations are there: then `CURRENT` was lost (deleted by
        // hand, a copy that left it out), and the night says why it decodes every file.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let generations = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .any(|f| f.file_name().to_str().is_some_and(valid_generation_name));
            return if generations {
                Err(format!("state/{CURRENT} is missing beside its generations"))
            } else {
                Ok(None)
            };
        }
        Err(e) => return Err(format!("cannot read state/{CURRENT}: {e}")),
    };
    let mut lines = text.lines();
    let name = lines.next().unwrap_or("").trim().to_string();
    if !valid_generation_name(&name) {
        return Err(format!("state/{CURRENT} names {name:?}, not a generation file"));
    }
    // Unknown, every kept stamp is taken as too recent to trust (`Stamp::racy`): each file is
    // hashed once more, never taken unread. One ahead of now (a damaged line, a clock set
    // back) would trust stamps it should not: unknown too.
    let stamps_from = lines
        .find_map(|l| l.strip_prefix(STAMPS_FROM))
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|&t| t <= ingest::now_ns());
    let text = std::fs::read(dir.join(&name)).map_err(|e| format!("cannot read state/{name}: {e}"))?;
    // A generation is named by its bytes' BLAKE3 (`write`), as segments are checked by theirs:
    // a change that still parses (a count, a status name) would otherwise be taken as written.
    if name != generation_name(&text) {
        return Err(format!("state/{name} is corrupt (its BLAKE3 does not match its name)"));
    }
    let generation: Generation = serde_json::from_slice(&text)
        .map_err(|e| format!("state/{name} is corrupt: {}", crate::error::one_line(e.to_string())))?;
    Ok(Some(Current { name, generation, stamps_from }))
}

/// The name of the generation file of these bytes.
fn generation_name(json: &[u8]) -> String {
    format!("state-{}.json", &blake3::hash(json).to_hex()[..16])
}

fn valid_generation_name(n: &str) -> bool {
    n.strip_prefix("state-")
        .and_then(|r| r.strip_suffix(".json"))
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The reused part of the state, read and checked; `Err(why)` means a full refresh.
struct Reused {
    sorted: Option<SortedRead>,
    /// The shipment segments after it, read.
    ships: Vec<(Segment, DataFrame)>,
    /// Events segments, not yet read: `assemble` reads, checks and decodes them a few at a
    /// time, as it appends them.
    events: Vec<Segment>,
    checked: Option<checked::Entry>,
    new_ship_paths: Vec<PathBuf>,
    new_event_paths: Vec<PathBuf>,
}

fn check_generation(g: &Generation, input: &str, key: &serde_json::Value) -> std::result::Result<(), String> {
    if g.format != FORMAT {
        return Err(format!("the state has layout {}, this lanewatch reads {FORMAT}", g.format));
    }
    if g.tool_version != TOOL_VERSION {
        return Err(format!("the state was written by lanewatch {}, this is {TOOL_VERSION}", g.tool_version));
    }
    if g.input != input {
        return Err("the state was written for another input folder".into());
    }
    if &g.input_config != key {
        return Err("the [input] settings changed since the state was written".into());
    }
    Ok(())
}

/// Matches the input's files against a generation's segments: every segment's file unchanged,
/// new files after them. Returns the new files of the table. A segment whose file's stamp moved
/// without a byte changing takes the new stamp, so the next generation does not hash it again.
/// `stamps_from`: when the night that wrote the generation began taking stamps (`Stamp::racy`).
fn new_files(
    input: &Path,
    table: Table,
    paths: &[PathBuf],
    segments: &mut [Segment],
    stamps_from: Option<i64>,
) -> std::result::Result<Vec<PathBuf>, String> {
    let names: Vec<String> = paths.iter().map(|p| ingest::exact(input, p)).collect();
    let mut current: HashMap<&str, &PathBuf> = names.iter().map(String::as_str).zip(paths).collect();
    for s in segments.iter_mut() {
        let Some(p) = current.remove(s.name()) else {
            return Err(format!("input file {} is gone since the state was written", crate::error::printable(&s.path)));
        };
        let meta = std::fs::metadata(p).ok();
        let bytes = meta.as_ref().map_or(u64::MAX, |m| m.len());
        // An unknown time (a file system that keeps none) leaves only the size to compare,
        // which a rewrite can keep: such a file is read again. Any other moved stamp is a
        // rewrite (even one that puts its times back: `touch -r`, `cp -p`) or only a `touch`, a
        // new link, mode or owner: its bytes tell which (the rule `ingest` checks a decoded file
        // by). So do they for a stamp too recent to trust (`Stamp::racy`).
        let stamp = meta.as_ref().map(Stamp::of).unwrap_or_default();
        if bytes != s.bytes
            || !s.stamp.known()
            || !ingest::unchanged(p, s.stamp, stamps_from, stamp, s.bytes, &s.blake3)
        {
            return Err(format!("input file {} changed since the state was written", crate::error::printable(&s.path)));
        }
        // Taken before the bytes were found the same; a rewrite after that moves it, or, in the
        // same tick of a coarse clock, leaves it racy for the next night, which hashes it again.
        s.stamp = stamp;
    }
    // `locate` lists files in byte order of their paths; the covered files must be a prefix.
    let covered = segments.len();
    let mut fresh = Vec::new();
    for (k, (p, name)) in paths.iter().zip(&names).enumerate() {
        if current.contains_key(name.as_str()) {
            if k < covered {
                return Err(format!(
                    "new {} file {} sorts before files already read (new files must sort after them, \
                     as date partitions do)",
                    table.name(),
                    crate::error::printable(&ingest::shown(input, p))
                ));
            }
            fresh.push(p.clone());
        }
    }
    Ok(fresh)
}

/// Reads one segment, checking its bytes against the generation.
fn read_segment(dir: &Path, s: &Segment) -> std::result::Result<DataFrame, String> {
    read_file(dir, &s.data, &s.data_blake3)
}

/// Reads the file `data` under `segments/` (a segment or an order), checking its bytes.
fn read_file(dir: &Path, data: &str, blake3: &str) -> std::result::Result<DataFrame, String> {
    crate::io::map_checked(&segment_path(dir, data)?, blake3).map_err(|e| format!("state segment {data} {e}"))
}

/// Where the segment file `data` is, if its name is one lanewatch writes.
fn segment_path(dir: &Path, data: &str) -> std::result::Result<PathBuf, String> {
    if !data.starts_with("seg-") || data.contains(['/', '\\']) || data.contains("..") {
        return Err(format!("a segment name in the state is not one lanewatch writes: {data:?}"));
    }
    Ok(dir.join(SEGMENTS).join(data))
}

fn reuse(
    out: &Path,
    input: &Path,
    g: &mut Generation,
    stamps_from: Option<i64>,
    ship_paths: &[PathBuf],
    event_paths: &[PathBuf],
) -> std::result::Result<Reused, String> {
    let dir = state_dir(out);
    let new_ship_paths = new_files(input, Table::Shipments, ship_paths, &mut g.shipments, stamps_from)?;
    let new_event_paths = new_files(input, Table::Events, event_paths, &mut g.events, stamps_from)?;
    // Segments are independent files: read and checked in parallel, kept in file order.
    let read_all = |segs: &[Segment]| -> std::result::Result<Vec<(Segment, DataFrame)>, String> {
        segs.par_iter().map(|s| Ok((s.clone(), read_segment(&dir, s)?))).collect()
    };
    let from = g.sorted.as_ref().map_or(0, |s| s.files as usize);
    if from > g.shipments.len() {
        return Err("the state's sorted shipments cover more files than it lists".into());
    }
    // The sorted shipments beside the later files' segments.
    let (sorted, ships) = rayon::join(
        || g.sorted.as_ref().map(|s| read_sorted(&dir, s, &g.shipments[..from])).transpose(),
        || read_all(&g.shipments[from..]),
    );
    let (sorted, ships) = (sorted?, ships?);
    // Events segments (nine tenths of the state) are read and checked only as `assemble`
    // appends them, a few at a time: checked here first, every one was read and hashed twice,
    // and decoded here, they held the night's events twice (5 GiB at 10M shipments).
    Ok(Reused { sorted, ships, events: g.events.clone(), checked: g.checked.clone(), new_ship_paths, new_event_paths })
}

/// The sorted shipments as read: the entry, the segments of the files it holds, its rows and
/// each row's arrival row.
struct SortedRead {
    entry: Sorted,
    covered: Vec<Segment>,
    rows: DataFrame,
    arrival: Vec<u32>,
}

/// Reads the sorted shipments `s` of the segments `covered`, checking that each of those names
/// it, that it holds their rows and each row's arrival row once, and splits off the arrival rows.
fn read_sorted(dir: &Path, s: &Sorted, covered: &[Segment]) -> std::result::Result<SortedRead, String> {
    let wrong = || format!("state segment {} does not hold the sorted shipments", s.data);
    let names_it = |c: &Segment| c.data == s.data && c.data_blake3 == s.data_blake3;
    if !covered.iter().all(names_it) || covered.iter().map(|c| c.rows).sum::<u64>() != s.rows {
        return Err(wrong());
    }
    let mut df = read_file(dir, &s.data, &s.data_blake3)?;
    let arrival = df.column(ARRIVAL).and_then(|c| c.u32().cloned()).ok().filter(|a| a.null_count() == 0);
    let Some(arrival) = arrival.filter(|a| a.len() as u64 == s.rows) else { return Err(wrong()) };
    let arrival: Vec<u32> = arrival.into_no_null_iter().collect();
    if !is_permutation(&arrival) {
        return Err(wrong());
    }
    df.drop_in_place(ARRIVAL).map_err(|_| wrong())?;
    Ok(SortedRead { entry: s.clone(), covered: covered.to_vec(), rows: df, arrival })
}

/// Reads the input through the state in `OUT/state/`: the segments of files it covers, the
/// new files decoded. With `full_refresh`, or when the state cannot be used, every file is
/// decoded (and `info.full_refresh` says why, except on a first night).
pub fn load(input: &Path, cfg: &InputConfig, out: &Path, full_refresh: bool) -> Result<Loaded> {
    let t0 = std::time::Instant::now();
    // Before any file's stamp is taken (`Stamp::racy`).
    let stamps_from = ingest::now_ns();
    let ship_paths = ingest::locate(input, Table::Shipments)?;
    let event_paths = ingest::locate(input, Table::Events)?;
    let origin = Origin { input: canonical_input(input), input_config: input_key(cfg), stamps_from };
    let mut info = StateInfo { new_rows_from: i64::MAX, ..StateInfo::default() };
    let prior = if full_refresh {
        info.full_refresh = Some("--full-refresh was given".into());
        None
    } else {
        match read_current(&state_dir(out)) {
            Ok(None) => None,
            Ok(Some(Current { name, generation: mut g, stamps_from: then })) => {
                match check_generation(&g, &origin.input, &origin.input_config)
                    .and_then(|()| reuse(out, input, &mut g, then, &ship_paths, &event_paths))
                {
                    Ok(r) => {
                        info.used = Some(name);
                        Some(r)
                    }
                    Err(why) => {
                        info.full_refresh = Some(why);
                        None
                    }
                }
            }
            Err(why) => {
                info.full_refresh = Some(why);
                None
            }
        }
    };
    tracing::debug!(seconds = t0.elapsed().as_secs_f64(), "state: segments read");
    let everything = |ship_paths: Vec<PathBuf>, event_paths: Vec<PathBuf>| Reused {
        sorted: None,
        ships: vec![],
        events: vec![],
        checked: None,
        new_ship_paths: ship_paths,
        new_event_paths: event_paths,
    };
    let reused = prior.unwrap_or_else(|| everything(ship_paths.clone(), event_paths.clone()));
    // The memory refusal, from the rows the state recorded and the new files' footers (the
    // covered files are not opened again).
    let covered = |segs: &mut dyn Iterator<Item = &Segment>| segs.map(|s| s.rows).sum::<u64>();
    validate::check_memory_estimate(
        input,
        cfg,
        reused.sorted.as_ref().map_or(0, |s| s.entry.rows)
            + covered(&mut reused.ships.iter().map(|(s, _)| s))
            + ingest::footer_rows_of(&reused.new_ship_paths),
        covered(&mut reused.events.iter()) + ingest::footer_rows_of(&reused.new_event_paths),
    )?;
    let dir = state_dir(out);
    let loaded = match assemble(input, cfg, &dir, reused, info.clone(), origin.clone())? {
        Ok(loaded) => loaded,
        // An events segment found damaged as it was appended: the same full refresh as one
        // found before, every file decoded (none of the state is read again).
        Err(why) => {
            info.used = None;
            info.full_refresh = Some(why);
            assemble(input, cfg, &dir, everything(ship_paths, event_paths), info, origin)?
                .map_err(|why| Error::internal(format!("a full refresh read the state: {why}")))?
        }
    };
    tracing::debug!(seconds = t0.elapsed().as_secs_f64(), "state: input assembled");
    Ok(loaded)
}

fn assemble(
    input: &Path,
    cfg: &InputConfig,
    dir: &Path,
    reused: Reused,
    mut info: StateInfo,
    origin: Origin,
) -> Result<std::result::Result<Loaded, String>> {
    let t0 = std::time::Instant::now();
    let Reused { sorted, ships, events: old_events, checked: kept_checks, new_ship_paths, new_event_paths } = reused;
    let (sorted, covered, sorted_df, sorted_arrival) = match sorted {
        Some(r) => (Some(r.entry), r.covered, Some(r.rows), Some(r.arrival)),
        None => (None, Vec::new(), None, None),
    };
    info.files_reused = (covered.len() + ships.len() + old_events.len()) as u64;
    info.files_read = (new_ship_paths.len() + new_event_paths.len()) as u64;

    // Shipments: covered files' rows, then the new files', stacked in file order (arrival
    // order) and sorted as a full read sorts them.
    let parts = if new_ship_paths.is_empty() {
        ingest::FileParts { files: vec![], plan_findings: vec![], decoded: vec![] }
    } else {
        ingest::read_file_parts(input, Table::Shipments, cfg, Some(&new_ship_paths))?
    };
    let mut findings = parts.plan_findings;
    let mut files: Vec<FileInfo> =
        covered.iter().chain(ships.iter().map(|(s, _)| s)).map(|s| file_info(Table::Shipments, s)).collect();
    files.extend(parts.files);
    // The sorted shipments first: their rows are the covered files' rows, sorted.
    let mut frames: Vec<DataFrame> = Vec::with_capacity(1 + ships.len() + parts.decoded.len());
    frames.extend(sorted_df);
    let mut reused_ships = covered;
    reused_ships.reserve(ships.len());
    for (s, df) in ships {
        frames.push(df);
        reused_ships.push(s);
    }
    // A new file's rows are kept as their range of arrival rows, not as its frame: its segment
    // is taken from the sorted shipments when the state is written, so the decoded frames are
    // freed once stacked (at 10M shipments they were 1.3 GB held through the events' decoding).
    let mut new_ships = Vec::new();
    let covered_rows: usize = frames.iter().map(|f| f.height()).sum();
    let mut at = covered_rows;
    for d in parts.decoded {
        findings.extend(d.findings);
        if let Some(df) = d.df {
            info.new_rows_from = info.new_rows_from.min(earliest_creation(&df)?);
            new_ships.push((d.info, at..at + df.height()));
            at += df.height();
            frames.push(df);
        }
    }
    let ship_errors = findings.iter().any(|f| f.level == Level::Error);
    // Left in its files' chunks: the merge into the sorted shipments (`sort_after_sorted`), or
    // the sort by id (`sort_with_arrival`), gathers it into one.
    let stacked = ingest::stack_chunks(Table::Shipments, frames)?;
    crate::memory::log_step("validate", "shipments stacked", t0);
    let (shipments, arrival_of) = match &sorted_arrival {
        Some(at) => sort_after_sorted(stacked, at)?,
        None => sort_with_arrival(stacked)?,
    };
    crate::memory::release_free_memory();
    crate::memory::log_step("validate", "shipments sorted", t0);
    // Events: covered segments translated to tonight's shipment indices and numbering, then
    // the new files decoded after them, as a full read decodes them in file order.
    let sorted_of = inverse(&arrival_of);
    let planned =
        (!new_event_paths.is_empty()).then(|| ingest::plan_table(input, Table::Events, cfg, Some(&new_event_paths)));
    let planned = planned.transpose()?;
    // Ids looked up: the new files' events and the covered segments' unknown ids.
    let lookups = planned.iter().flat_map(|p| &p.plans).map(|p| p.info.rows as usize).sum::<usize>()
        + old_events.iter().map(|s| s.orphans.len()).sum::<usize>();
    let index = (!ship_errors).then(|| validate::IdIndex::for_lookups(&shipments, lookups)).transpose()?;
    crate::memory::log_step("validate", "shipments assembled", t0);
    // The kept checks, when they belong to the sorted shipments read. The events segments they
    // cover are then not read (a night that writes kept checks writes no rows for the files
    // they cover): their statuses and counts are taken from the generation, in order, and
    // their rows are in the kept checks.
    let base = kept_checks.clone().filter(|c| {
        sorted.as_ref().is_some_and(|s| s.data == c.sorted && s.rows == c.shipments)
            && c.event_files as usize <= old_events.len()
    });
    let covered_events = base.as_ref().map_or(0, |c| c.event_files as usize);
    info.events_files_checked_before = covered_events as u64;
    let mut events = RawEvents::default();
    let mut status_of: HashMap<String, u32> = HashMap::new();
    let mut orphan_of: HashMap<String, u32> = HashMap::new();
    let mut reused_events = Vec::with_capacity(old_events.len());
    for s in &old_events[..covered_events] {
        for name in &s.statuses {
            let next = events.statuses.len() as u32;
            status_of.entry(name.clone()).or_insert_with(|| {
                events.statuses.push(name.clone());
                next
            });
        }
        events.counts.add(&s.counts.events);
        files.push(file_info(Table::Events, s));
        reused_events.push(s.clone());
    }
    let old_events = &old_events[covered_events..];
    // The kept checks in tonight's numbering (every status they hold is numbered above: the
    // segments they cover were). Their rows of unknown shipments are decoded rows again: a
    // shipment that arrived since may be theirs.
    let (checked, kept_orphans) = match &base {
        Some(c) => {
            let tonight = checked::Tonight {
                arrival: sorted_arrival.as_deref().unwrap_or_default(),
                sorted_of: &sorted_of,
                status_of: &status_of,
            };
            match checked::read(c, |data, blake3| read_file(dir, data, blake3), &tonight) {
                Ok((k, o)) => (Some(k), o),
                Err(why) => return Ok(Err(why)),
            }
        }
        None => (None, checked::Orphans::default()),
    };
    // Sized once for every row (segments and new files' footers), rather than grown by doubling.
    let rows = old_events
        .iter()
        .map(|s| usize::try_from(s.rows).unwrap_or(usize::MAX))
        .chain(planned.iter().flat_map(|p| &p.plans).map(|p| usize::try_from(p.info.rows).unwrap_or(usize::MAX)))
        .fold(0usize, usize::saturating_add);
    events.reserve(rows.saturating_add(kept_orphans.len()));
    kept_orphans.append_to(&mut events, index.as_ref(), &mut orphan_of);
    // Decoded a segment per thread at a time, appended in order, freed before the next ones. The
    // next batch is read while the last one is appended: one after the other, the appends (two
    // threads) and the reads (a segment per thread) each left a core idle part of the time. Two
    // batches in flight hold what one batch of two segments per thread held before.
    // A segment damaged or not of events is the state's fault, not the input's: the caller
    // starts again with a full refresh.
    let read = |batch: &&[Segment]| -> std::result::Result<Vec<DataFrame>, String> {
        batch.par_iter().map(|s| read_events_segment(dir, s)).collect()
    };
    let batches: Vec<&[Segment]> = old_events.chunks(rayon::current_num_threads().max(1)).collect();
    let appended = crate::ahead::read_ahead(&batches, read, |batch, frames| {
        let frames = frames?;
        let rows = batch
            .iter()
            .zip(&frames)
            .map(|(s, df)| SegmentRows::of(s, df))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        append_segments(&rows, &sorted_of, index.as_ref(), &mut events, &mut status_of, &mut orphan_of)?;
        for s in batch.iter() {
            files.push(file_info(Table::Events, s));
            reused_events.push(s.clone());
        }
        Ok(())
    });
    if let Err(why) = appended {
        return Ok(Err(why));
    }
    let mut new_events = Vec::new();
    let reused_rows = events.len();
    if let Some(planned) = planned {
        files.extend(planned.files.iter().cloned());
        findings.extend(planned.findings.iter().cloned());
        let decoded = validate::decode_event_files(&planned.plans, index.as_ref(), true, &mut events)?;
        for (plan, d) in planned.plans.iter().zip(decoded) {
            findings.extend(d.findings);
            // Sums are the file's own; the longest id is the running maximum, which is the true
            // maximum over any prefix of files (all a later night reuses).
            new_events.push((plan.info.clone(), d.rows, Counts { events: d.counts, has_eta: false }));
        }
    }
    if let Some(&first) = events.time[reused_rows..].iter().min() {
        info.new_rows_from = info.new_rows_from.min(first);
    }
    crate::memory::log_step("validate", "events assembled", t0);
    drop(index);
    let carry =
        Carry { reused_ships, reused_events, new_ships, new_events, arrival_of, sorted, checked: kept_checks, origin };
    Ok(Ok(Loaded { raw: RawInput { shipments, events, files }, checked, findings, keep: Keep { info, carry } }))
}

/// Reads an events segment, checking its bytes and that its columns are an events segment's
/// (whole and matching its hash, a file of other columns read as events would be nonsense).
fn read_events_segment(dir: &Path, s: &Segment) -> std::result::Result<DataFrame, String> {
    if s.data.is_empty() {
        return Err(format!(
            "the state keeps the rows of {} only in its checked events, which are not there",
            crate::error::printable(&s.path)
        ));
    }
    let mut df = read_segment(dir, s)?;
    // One chunk per column, read as plain slices (`SegmentRows`); a segment written in slices
    // of rows reads back in as many chunks.
    df.rechunk_mut();
    let typed = |c: &str, t: DataType| df.schema().get(c) == Some(&t);
    if !(typed("ship", DataType::UInt32) && typed("time", DataType::Int64) && typed("status", DataType::UInt32))
        || (s.counts.has_eta && !typed("eta", DataType::Int64))
    {
        return Err(format!("state segment {} does not hold events", s.data));
    }
    Ok(df)
}

/// The earliest creation among a shipments file's rows (`i64::MIN` when one is null).
fn earliest_creation(df: &DataFrame) -> Result<i64> {
    let created = df.column("created_at")?.as_materialized_series().to_physical_repr().into_owned();
    let created = created.i64()?;
    Ok(if created.null_count() > 0 { i64::MIN } else { created.min().unwrap_or(i64::MAX) })
}

/// Whether `order` holds each of `0..order.len()` once.
fn is_permutation(order: &[u32]) -> bool {
    let mut seen = vec![false; order.len()];
    order.iter().all(|&r| (r as usize) < seen.len() && !std::mem::replace(&mut seen[r as usize], true))
}

/// The inverse of a permutation: for sorted row → arrival row, arrival row → sorted row.
fn inverse(perm: &[u32]) -> Vec<u32> {
    let mut inv = vec![0u32; perm.len()];
    for (k, &p) in perm.iter().enumerate() {
        inv[p as usize] = k as u32;
    }
    inv
}

fn file_info(table: Table, s: &Segment) -> FileInfo {
    FileInfo {
        table: table.name(),
        path: s.path.clone(),
        name: s.name().to_string(),
        rows: s.rows,
        bytes: s.bytes,
        blake3: s.blake3.clone(),
        stamp: s.stamp,
    }
}

/// Sorts shipments as `validate::sort_shipments` does and returns, per sorted row, the row it
/// came from. Without null ids that is the stable sort of the rows by id (`merged_order` with
/// no row covered), gathered from the frame's chunks as the kept order is (`ingest::gather`).
fn sort_with_arrival(df: DataFrame) -> Result<(DataFrame, Vec<u32>)> {
    match merged_order(&df, Vec::new())? {
        Some(order) => Ok((ingest::gather(&df, &order)?, order)),
        None => sort_by_polars(df),
    }
}

/// `sort_with_arrival` through `validate::sort_shipments` itself (null ids sort first).
fn sort_by_polars(df: DataFrame) -> Result<(DataFrame, Vec<u32>)> {
    const ARRIVAL: &str = "__lanewatch_arrival";
    let n = df.height();
    let mut df = df;
    df.rechunk_mut();
    df.with_column(Column::new(ARRIVAL.into(), (0..n as u32).collect::<Vec<u32>>()))?;
    let mut sorted = validate::sort_shipments(df)?;
    let arrival: Vec<u32> = sorted.column(ARRIVAL)?.u32()?.into_no_null_iter().collect();
    sorted.drop_in_place(ARRIVAL)?;
    Ok((sorted, arrival))
}

/// `sort_with_arrival` of shipments whose first rows are the state's sorted shipments (`at`:
/// each one's arrival row) and whose later rows are the files read after them, in arrival
/// order. Rows at 0..r sit at their place in the sorted order, every later row at its arrival
/// row; sorting by (id, place) is sorting by (id, arrival row), as the places of the sorted
/// rows follow their arrival rows among equal ids and every later row arrived after them. So
/// the merge gives the full sort, reading the sorted rows in order, and the places map back
/// to arrival rows.
///
/// Kept rows that are not sorted are put back in arrival order and sorted as a first night
/// sorts them. (Rows of one id are not checked for arrival order: a repeated id is an error
/// of the input, on which no night runs.)
fn sort_after_sorted(stacked: DataFrame, at: &[u32]) -> Result<(DataFrame, Vec<u32>)> {
    let r = at.len() as u32;
    let arrival = |p: u32| if p < r { at[p as usize] } else { p };
    match merged_order(&stacked, (0..r).collect())? {
        Some(by_place) => Ok((ingest::gather(&stacked, &by_place)?, by_place.into_iter().map(arrival).collect())),
        None => {
            tracing::debug!("state: the sorted shipments are not sorted; sorting every row");
            let place_of: Vec<u32> = inverse(&(0..stacked.height() as u32).map(arrival).collect::<Vec<u32>>());
            sort_with_arrival(ingest::gather(&stacked, &place_of)?)
        }
    }
}

/// The sorted row → row order of all of `df`'s rows when its first `order.len()` rows are
/// covered and `order` sorts them by (id, row): checked in one pass, then the later rows, sorted
/// among themselves, are merged in. None where `order` does not sort the covered rows or an id
/// is null.
fn merged_order(df: &DataFrame, order: Vec<u32>) -> Result<Option<Vec<u32>>> {
    let n = df.height();
    // The ids alone in one chunk, read by row below (the frame keeps its files' chunks).
    let ids = df.column("shipment_id")?.str()?.rechunk();
    let arr = match ids.downcast_iter().next() {
        Some(a) if ids.null_count() == 0 => a,
        _ => return Ok(None),
    };
    let id = |r: u32| arr.value(r as usize);
    let covered = order.len();
    // A permutation of the covered rows, in (id, arrival row) order: the stable sort's order.
    if !(is_permutation(&order) && order.par_windows(2).all(|w| (id(w[0]), w[0]) < (id(w[1]), w[1]))) {
        return Ok(None);
    }
    let mut fresh: Vec<u32> = (covered as u32..n as u32).collect();
    fresh.par_sort_by(|&a, &b| id(a).cmp(id(b)));
    // Each new row goes after the covered rows whose ids sort before or equal to its own (they
    // arrived first); the new rows are in order, so their places only move forward. A place is
    // found by galloping from the last one, then a binary search within the last stride: the
    // new rows' places are spread over the covered rows, and a binary search over all the rest
    // read ids all over them (0.5 s for a week's new rows among 10M shipments).
    let mut merged = Vec::with_capacity(n);
    let mut from = 0usize;
    for &r in &fresh {
        let (rest, key) = (&order[from..], id(r));
        let mut stride = 1usize;
        while stride <= rest.len() && id(rest[stride - 1]) <= key {
            stride *= 2;
        }
        // rest[..stride / 2] sort before or equal to the key; the place is at most `stride - 1`.
        let (lo, hi) = (stride / 2, stride.min(rest.len()));
        let at = from + lo + rest[lo..hi].partition_point(|&o| id(o) <= key);
        merged.extend_from_slice(&order[from..at]);
        merged.push(r);
        from = at;
    }
    merged.extend_from_slice(&order[from..]);
    Ok(Some(merged))
}

/// One stored events segment's columns, checked: contiguous (`read_events_segment` rechunks)
/// and null-free (the segment was written so), of one length.
struct SegmentRows<'a> {
    segment: &'a Segment,
    ship: &'a [u32],
    time: &'a [i64],
    status: &'a [u32],
    eta: Option<&'a [i64]>,
}

impl<'a> SegmentRows<'a> {
    fn of(s: &'a Segment, df: &'a DataFrame) -> std::result::Result<SegmentRows<'a>, String> {
        let corrupt = || corrupt_segment(s);
        let column = |name: &str| -> std::result::Result<&'a Series, String> {
            Ok(df.column(name).map_err(|_| corrupt())?.as_materialized_series())
        };
        fn u32s(c: &Series) -> Option<&[u32]> {
            c.u32().ok()?.cont_slice().ok()
        }
        fn i64s(c: &Series) -> Option<&[i64]> {
            c.i64().ok()?.cont_slice().ok()
        }
        let ship = u32s(column("ship")?).ok_or_else(corrupt)?;
        let time = i64s(column("time")?).ok_or_else(corrupt)?;
        let status = u32s(column("status")?).ok_or_else(corrupt)?;
        let eta = if s.counts.has_eta { Some(i64s(column("eta")?).ok_or_else(corrupt)?) } else { None };
        if time.len() != ship.len() || status.len() != ship.len() || eta.is_some_and(|e| e.len() != ship.len()) {
            return Err(corrupt());
        }
        Ok(SegmentRows { segment: s, ship, time, status, eta })
    }
}

fn corrupt_segment(s: &Segment) -> String {
    format!("state segment {} does not match its generation", s.data)
}

/// Appends stored events segments to `out`, in order: shipments by arrival row become
/// tonight's sorted indices; unknown ids are looked up again (a later shipments file may hold
/// them); statuses and still-unknown ids take tonight's numbering in first-use order.
///
/// The shipment column (a lookup per row) is translated beside the other columns' copies, on
/// two threads: one after the other, the appends were half of assembling a night's events.
fn append_segments(
    segments: &[SegmentRows<'_>],
    sorted_of: &[u32],
    index: Option<&validate::IdIndex<'_>>,
    out: &mut RawEvents,
    status_of: &mut HashMap<String, u32>,
    orphan_of: &mut HashMap<String, u32>,
) -> std::result::Result<(), String> {
    // Written straight into the night's arrays (sized for every row): a segment's rows copied
    // into arrays of its own first were written twice, 2 GB of fresh memory at 10M shipments.
    // On an error the night starts again with a full refresh, so rows half appended are dropped.
    let before = out.len();
    let after = before + segments.iter().map(|r| r.ship.len()).sum::<usize>();
    let capacity = out.ship.capacity();
    let RawEvents { ship: out_ship, time: out_time, status: out_status, eta: out_eta, statuses, orphans, .. } = out;
    let ships = || -> std::result::Result<(), String> {
        for r in segments {
            let (s, corrupt) = (r.segment, || corrupt_segment(r.segment));
            // Orphans: resolved lazily, in first-use order, as a full read numbers them.
            let mut orphan_map: Vec<Option<u32>> = vec![None; s.orphans.len()];
            for &sh in r.ship {
                let mapped = if sh & ORPHAN != 0 {
                    let local = (sh & !ORPHAN) as usize;
                    match orphan_map.get(local).ok_or_else(corrupt)? {
                        Some(m) => *m,
                        None => {
                            let id = &s.orphans[local];
                            let m = match index.and_then(|ix| ix.get(id.as_str())) {
                                Some(i) => i,
                                None => {
                                    let next = orphans.len() as u32;
                                    ORPHAN
                                        | *orphan_of.entry(id.clone()).or_insert_with(|| {
                                            orphans.push(id.clone());
                                            next
                                        })
                                }
                            };
                            orphan_map[local] = Some(m);
                            m
                        }
                    }
                } else {
                    *sorted_of.get(sh as usize).ok_or_else(corrupt)?
                };
                out_ship.push(mapped);
            }
        }
        Ok(())
    };
    let rest = || -> std::result::Result<(), String> {
        let mut at = before;
        for r in segments {
            let status_map: Vec<u32> = r
                .segment
                .statuses
                .iter()
                .map(|name| {
                    let next = statuses.len() as u32;
                    *status_of.entry(name.clone()).or_insert_with(|| {
                        statuses.push(name.clone());
                        next
                    })
                })
                .collect();
            out_time.extend_from_slice(r.time);
            for &c in r.status {
                out_status.push(status_map.get(c as usize).copied().ok_or_else(|| corrupt_segment(r.segment))?);
            }
            at += r.ship.len();
            validate::extend_eta_to(out_eta, at - r.ship.len(), at, capacity, r.eta);
        }
        debug_assert_eq!(at, after);
        Ok(())
    };
    let (shipped, copied) = rayon::join(ships, rest);
    shipped?;
    copied?;
    for r in segments {
        out.counts.add(&r.segment.counts.events);
    }
    Ok(())
}

/// A generation written and waiting for its run folder: `publish` makes it current.
pub struct Pending {
    dir: PathBuf,
    name: String,
    stamps_from: i64,
}

/// Writes the new files' segments and the generation that covers every file (not yet current).
/// Call with the raw input, clean input and checks `validate::check_with` returned, only for an
/// input without errors; a night that writes the sorted shipments keeps its checks with them.
pub fn write(
    out: &Path,
    keep: Keep,
    raw: &RawInput,
    clean: &validate::CleanInput,
    checks: &validate::Checks,
    as_of: &str,
) -> Result<(Pending, StateInfo)> {
    let t0 = std::time::Instant::now();
    let Keep { info: mut loaded_info, carry } = keep;
    let dir = state_dir(out);
    let seg_dir = dir.join(SEGMENTS);
    crate::io::create_dir_all(&seg_dir)?;
    // Segment names: unique to this generation's content, so a rerun writes the same names
    // with the same bytes and never touches a segment another generation reads.
    let mut h = blake3::Hasher::new();
    h.update(TOOL_VERSION.as_bytes());
    h.update(carry.origin.input_config.to_string().as_bytes());
    h.update(loaded_info.used.as_deref().unwrap_or("").as_bytes());
    for (i, _) in &carry.new_ships {
        h.update(i.path.as_bytes());
        h.update(i.blake3.as_bytes());
    }
    for (i, _, _) in &carry.new_events {
        h.update(i.path.as_bytes());
        h.update(i.blake3.as_bytes());
    }
    let stem = h.finalize().to_hex()[..16].to_string();
    let mut seq = 0usize;
    let mut next_name = |table: Table| {
        seq += 1;
        format!("seg-{stem}-{seq:05}-{}.parquet", table.name())
    };

    // New segments are written in parallel (each through its own temporary file), listed in
    // file order.
    let slice_rows = slice_rows();
    let arrival_of = &carry.arrival_of;
    let sorted_of = inverse(arrival_of);
    // The sorted shipments are written again, holding every file's rows, when the files after
    // the ones they hold have grown past an eighth of them: the new files then get no segments
    // of their own (nor names).
    let rewrite = rewrites_sorted(arrival_of.len() as u64, carry.sorted.as_ref().map(|s| s.rows));
    let ship_names: Vec<String> =
        if rewrite { vec![] } else { carry.new_ships.iter().map(|_| next_name(Table::Shipments)).collect() };
    // The kept checks written with the sorted shipments hold every events file's rows: those
    // files get no segment data (nor names), only their entries.
    let event_names: Vec<String> =
        if rewrite { vec![] } else { carry.new_events.iter().map(|_| next_name(Table::Events)).collect() };
    let sorted_name = format!("seg-{stem}-sorted-shipments.parquet");
    // With the sorted shipments, the night's clean events and what its checks counted.
    let checked_name = |what: &str| format!("seg-{stem}-checked-{what}.parquet");
    let (checked_events, checked_counts, checked_unmapped, checked_orphans) =
        (checked_name("events"), checked_name("counts"), checked_name("unmapped"), checked_name("orphans"));
    // Shipment and event files in one list, so that a single large file of each (a first night
    // on one file per table) writes its two segments side by side rather than one after the other.
    enum New {
        Shipments(FileInfo, std::ops::Range<usize>),
        Sorted,
        Events(FileInfo, std::ops::Range<usize>, Counts),
        CheckedEvents,
        CheckedCounts,
        CheckedUnmapped,
        CheckedOrphans,
    }
    enum Written {
        Shipments(Segment),
        Sorted(String),
        Events(Segment),
        CheckedEvents(String),
        CheckedCounts(String),
        CheckedUnmapped(String),
        CheckedOrphans(String),
    }
    // The new files' entries of a rewrite night, which name the sorted file.
    let new_ship_infos: Vec<FileInfo> =
        if rewrite { carry.new_ships.iter().map(|(i, _)| i.clone()).collect() } else { vec![] };
    let ship_jobs: Vec<(New, String)> = if rewrite {
        vec![
            (New::Sorted, sorted_name.clone()),
            (New::CheckedEvents, checked_events.clone()),
            (New::CheckedCounts, checked_counts.clone()),
            (New::CheckedUnmapped, checked_unmapped.clone()),
            (New::CheckedOrphans, checked_orphans.clone()),
        ]
    } else {
        carry.new_ships.into_iter().map(|(info, rows)| New::Shipments(info, rows)).zip(ship_names).collect()
    };
    let new_events = carry.new_events;
    let has_eta = raw.events.eta.is_some();
    let (event_jobs, covered): (Vec<(New, String)>, Vec<Segment>) = if rewrite {
        let entry = |(info, range, counts): &(FileInfo, std::ops::Range<usize>, Counts)| {
            let mut n = Numbering::default();
            number_rows(raw, range.clone(), arrival_of, &mut n, |_, _| {});
            events_entry(segment(info, String::new(), String::new()), n, Counts { has_eta, ..*counts })
        };
        (vec![], new_events.iter().map(entry).collect())
    } else {
        let jobs = new_events
            .into_iter()
            .map(|(info, range, counts)| New::Events(info, range, counts))
            .zip(event_names)
            .collect();
        (jobs, vec![])
    };
    let jobs: Vec<(New, String)> = ship_jobs.into_iter().chain(event_jobs).collect();
    // A frame built whole (the kept checks' small files), written in slices as the rest.
    let frame = |path: &Path, df: DataFrame| {
        crate::io::write_compact_slices(path, df.height(), slice_rows, |r| Ok(df.slice(r.start as i64, r.len())))
    };
    let written = each(jobs, |(job, data)| match job {
        New::Shipments(info, rows) => {
            // The file's rows in its own order, as it was decoded, taken from the sorted rows.
            let of_file = &sorted_of[rows];
            let data_blake3 = crate::io::write_compact_slices(&seg_dir.join(&data), of_file.len(), slice_rows, |r| {
                let idx = IdxCa::from_vec("".into(), of_file[r].iter().map(|&i| i as IdxSize).collect());
                // Column by column: `DataFrame::take` runs in polars' pool, and a worker of the
                // global pool waiting on it steals the next file's write onto its stack (see
                // `io::compact_bytes`).
                let cols = raw.shipments.columns().iter().map(|c| c.take(&idx)).collect::<PolarsResult<Vec<_>>>()?;
                Ok(DataFrame::new(idx.len(), cols)?)
            })?;
            Ok(Written::Shipments(segment(&info, data, data_blake3)))
        }
        New::Sorted => {
            // The sorted rows as they are, each with its arrival row.
            let rows = raw.shipments.height();
            let data_blake3 = crate::io::write_compact_slices(&seg_dir.join(&data), rows, slice_rows, |r| {
                let mut df = raw.shipments.slice(r.start as i64, r.len());
                df.with_column(Column::new(ARRIVAL.into(), arrival_of[r].to_vec()))?;
                Ok(df)
            })?;
            Ok(Written::Sorted(data_blake3))
        }
        New::Events(info, range, counts) => {
            let mut numbering = Numbering::default();
            let data_blake3 = crate::io::write_compact_slices(&seg_dir.join(&data), range.len(), slice_rows, |r| {
                event_segment(raw, range.start + r.start..range.start + r.end, arrival_of, &mut numbering)
            })?;
            Ok(Written::Events(events_entry(
                segment(&info, data, data_blake3),
                numbering,
                Counts { has_eta, ..counts },
            )))
        }
        New::CheckedEvents => {
            let ev = &clean.events;
            let data_blake3 = crate::io::write_plain_slices(&seg_dir.join(&data), ev.len(), slice_rows, |r| {
                checked::events_slice(ev, r)
            })?;
            Ok(Written::CheckedEvents(data_blake3))
        }
        New::CheckedCounts => {
            let ev = &clean.events;
            let n = ev.start.len().saturating_sub(1);
            let data_blake3 =
                crate::io::write_compact_slices(&seg_dir.join(&data), n, slice_rows, |r| checked::counts_slice(ev, r))?;
            Ok(Written::CheckedCounts(data_blake3))
        }
        New::CheckedUnmapped => {
            Ok(Written::CheckedUnmapped(frame(&seg_dir.join(&data), checked::unmapped_rows(checks, &raw.events)?)?))
        }
        New::CheckedOrphans => {
            Ok(Written::CheckedOrphans(frame(&seg_dir.join(&data), checked::orphan_rows(&raw.events)?)?))
        }
    })?;
    drop(sorted_of);
    // Listed as the jobs were: the shipment files' segments (or the sorted shipments), then the
    // event files'.
    let new_segments = written.len();
    let (mut shipments, mut events, mut sorted) = (carry.reused_ships, carry.reused_events, carry.sorted);
    let (mut events_blake3, mut counts_blake3, mut unmapped_blake3, mut orphans_blake3) = (None, None, None, None);
    for w in written {
        match w {
            Written::Shipments(s) => shipments.push(s),
            Written::Events(s) => events.push(s),
            Written::Sorted(data_blake3) => {
                // Every shipments file's rows are in it, and each file's entry names it.
                shipments.extend(new_ship_infos.iter().map(|info| segment(info, String::new(), String::new())));
                for s in &mut shipments {
                    (s.data, s.data_blake3) = (sorted_name.clone(), data_blake3.clone());
                }
                let rows = arrival_of.len() as u64;
                sorted = Some(Sorted { data: sorted_name.clone(), data_blake3, rows, files: shipments.len() as u64 });
            }
            Written::CheckedEvents(h) => events_blake3 = Some(h),
            Written::CheckedCounts(h) => counts_blake3 = Some(h),
            Written::CheckedUnmapped(h) => unmapped_blake3 = Some(h),
            Written::CheckedOrphans(h) => orphans_blake3 = Some(h),
        }
    }
    if rewrite {
        // Every events file is in the kept checks: the segments read tonight are not needed
        // again (their files go with the generation before), and the new files have none.
        for s in &mut events {
            (s.data, s.data_blake3) = (String::new(), String::new());
        }
        events.extend(covered);
    }
    // Kept checks belong to the sorted shipments they were written with: a night that does not
    // write those again hands the read generation's on.
    let checked = match (events_blake3, counts_blake3, unmapped_blake3, orphans_blake3) {
        (Some(events_blake3), Some(counts_blake3), Some(unmapped_blake3), Some(orphans_blake3)) => {
            Some(checked::Entry {
                events: checked_events,
                events_blake3,
                counts: checked_counts,
                counts_blake3,
                unmapped: checked_unmapped,
                unmapped_blake3,
                orphans: checked_orphans,
                orphans_blake3,
                statuses: raw.events.statuses.clone(),
                sorted: sorted_name.clone(),
                shipments: arrival_of.len() as u64,
                event_files: events.len() as u64,
                has_eta: clean.events.eta.is_some(),
                tally: checks.tally,
            })
        }
        _ => carry.checked.filter(|c| sorted.as_ref().is_some_and(|s| s.data == c.sorted)),
    };
    crate::memory::log_step("state", "segments written", t0);
    // The new segments (written unsynced) reach the disk before the generation that names
    // them: one sync of the file system rather than an fsync per segment.
    if new_segments > 0 {
        crate::io::sync_filesystem(&seg_dir)?;
    }
    crate::fault::point("state:segments");
    let stamps_from = carry.origin.stamps_from;
    let g = Generation {
        format: FORMAT,
        tool_version: TOOL_VERSION.to_string(),
        input: carry.origin.input,
        input_config: carry.origin.input_config,
        written_by: as_of.to_string(),
        shipments,
        events,
        sorted,
        checked,
    };
    let mut json = serde_json::to_vec_pretty(&g).map_err(Error::internal)?;
    json.push(b'\n');
    let name = generation_name(&json);
    crate::io::write_atomic(&dir.join(&name), &json)?;
    crate::fault::point("state:generation");
    loaded_info.written = Some(name.clone());
    Ok((Pending { dir, name, stamps_from }, loaded_info))
}

/// Rows per slice of a segment as it is written (`io::write_compact_slices`). The tests' inputs
/// fit in one slice, so `LANEWATCH_STATE_SLICE_ROWS` sets a smaller one for them (a test knob:
/// the bytes differ, the rows do not).
fn slice_rows() -> usize {
    std::env::var("LANEWATCH_STATE_SLICE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(crate::io::COMPACT_SLICE_ROWS)
}

/// `f` over `items` in order: in parallel when there are several (each file then serialises its
/// columns alone, see `io::compact_bytes`); a single one runs on this thread, where polars
/// serialises its columns in parallel (a first night on one large file).
fn each<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> Result<R> + Sync + Send) -> Result<Vec<R>> {
    use rayon::prelude::*;
    if items.len() > 1 { items.into_par_iter().map(f).collect() } else { items.into_iter().map(f).collect() }
}

fn segment(info: &FileInfo, data: String, data_blake3: String) -> Segment {
    Segment {
        path: info.path.clone(),
        exact: if info.name == info.path { String::new() } else { info.name.clone() },
        rows: info.rows,
        bytes: info.bytes,
        blake3: info.blake3.clone(),
        stamp: info.stamp,
        data,
        data_blake3,
        statuses: vec![],
        orphans: vec![],
        counts: Counts::default(),
    }
}

/// A segment's statuses and unknown ids, numbered in first-use order as its rows are written.
#[derive(Default)]
struct Numbering {
    statuses: Vec<String>,
    /// The file's number of each assembled status (`NONE` until first used): a lookup per
    /// event, so an array rather than a map (the statuses are a handful).
    status_local: Vec<u32>,
    orphans: Vec<String>,
    orphan_local: HashMap<u32, u32>,
}

impl Numbering {
    const NONE: u32 = u32::MAX;
}

/// Rows `range` of the assembled events as rows of a new file's segment: shipments by arrival
/// row, unknown ids and statuses numbered in the file's first-use order (`n` carries the
/// numbering from one slice of the file to the next).
fn event_segment(
    raw: &RawInput,
    range: std::ops::Range<usize>,
    arrival_of: &[u32],
    n: &mut Numbering,
) -> Result<DataFrame> {
    let ev = &raw.events;
    let mut ship = Vec::with_capacity(range.len());
    let mut status = Vec::with_capacity(range.len());
    number_rows(raw, range.clone(), arrival_of, n, |sh, st| {
        ship.push(sh);
        status.push(st);
    });
    let mut cols = vec![
        Column::new("ship".into(), ship),
        Column::new("time".into(), ev.time[range.clone()].to_vec()),
        Column::new("status".into(), status),
    ];
    if let Some(eta) = &ev.eta {
        cols.push(Column::new("eta".into(), eta[range.clone()].to_vec()));
    }
    Ok(DataFrame::new(range.len(), cols)?)
}

/// An events file's entry `s` with its statuses and unknown ids in first-use order and its
/// counts: with segment rows, or (a night that writes the kept checks) without.
fn events_entry(mut s: Segment, n: Numbering, counts: Counts) -> Segment {
    (s.statuses, s.orphans, s.counts) = (n.statuses, n.orphans, counts);
    s
}

/// Numbers the statuses and unknown ids of rows `range` of the assembled events in the file's
/// first-use order (`n`), handing `row` each row's shipment (arrival row, or `ORPHAN` | the
/// file's number of its id) and status (the file's number).
fn number_rows(
    raw: &RawInput,
    range: std::ops::Range<usize>,
    arrival_of: &[u32],
    n: &mut Numbering,
    mut row: impl FnMut(u32, u32),
) {
    let ev = &raw.events;
    for k in range {
        let s = ev.ship[k];
        let ship = if s & ORPHAN != 0 {
            let g = s & !ORPHAN;
            let next = n.orphans.len() as u32;
            ORPHAN
                | *n.orphan_local.entry(g).or_insert_with(|| {
                    n.orphans.push(ev.orphans[g as usize].clone());
                    next
                })
        } else {
            arrival_of[s as usize]
        };
        let g = ev.status[k] as usize;
        if n.status_local.len() < ev.statuses.len() {
            n.status_local.resize(ev.statuses.len(), Numbering::NONE);
        }
        if n.status_local[g] == Numbering::NONE {
            n.status_local[g] = n.statuses.len() as u32;
            n.statuses.push(ev.statuses[g].clone());
        }
        row(ship, n.status_local[g]);
    }
}

/// Makes a written generation current (after its run folder is committed), then removes
/// generations and segments it does not use, and temporary files a killed night left.
pub fn publish(p: Pending) -> Result<()> {
    crate::fault::point("state:current");
    // The time goes here, not in the generation: a rerun on the same input writes the same
    // generation, byte for byte, whenever it runs.
    let current = format!("{}\n{STAMPS_FROM}{}\n", p.name, p.stamps_from);
    crate::io::write_atomic(&p.dir.join(CURRENT), current.as_bytes())?;
    // The rename reaches the disk before the generation it replaces is removed: a file system
    // that kept the removals but not the rename would leave `CURRENT` on a generation whose
    // files are gone (a full refresh, but a needless one).
    crate::io::sync_dir(&p.dir)?;
    crate::fault::point("state:published");
    collect_garbage(&p.dir, &p.name);
    Ok(())
}

/// Best effort: a file left behind costs disk, never correctness (nothing reads a generation
/// `CURRENT` does not name).
fn collect_garbage(dir: &Path, current: &str) {
    let Ok(text) = std::fs::read(dir.join(current)) else { return };
    let Ok(g) = serde_json::from_slice::<Generation>(&text) else { return };
    let keep: std::collections::HashSet<&str> = g
        .shipments
        .iter()
        .chain(g.events.iter())
        .map(|s| s.data.as_str())
        .chain(g.sorted.as_ref().map(|s| s.data.as_str()))
        .chain(g.checked.iter().flat_map(|c| [&c.events, &c.counts, &c.unmapped, &c.orphans].map(String::as_str)))
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir.join(SEGMENTS)) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(name.as_str()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale_generation = valid_generation_name(&name) && name != current;
            if stale_generation || name.contains(".tmp-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A generated input of 40 shipments in `dir/in`, an output folder `dir/out`, and the
    /// settings a night reads it with.
    fn small_night(dir: &Path) -> (PathBuf, PathBuf, InputConfig, crate::statuses::Vocabulary) {
        let (input, out) = (dir.join("in"), dir.join("out"));
        let start = chrono::NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
        crate::generate::generate(&crate::generate::GenerateParams::new(40, 1, start, 20), &input).unwrap();
        (input, out, InputConfig::default(), crate::statuses::Vocabulary::canonical())
    }

    /// One night's state read, checked, written and published; why it was a full refresh, if
    /// it was.
    fn state_night(input: &Path, out: &Path, cfg: &InputConfig, vocab: &crate::statuses::Vocabulary) -> Option<String> {
        let loaded = load(input, cfg, out, false).unwrap();
        let why = loaded.keep.info.full_refresh.clone();
        let ((_, clean), raw, checks) =
            validate::check_with(input, loaded.raw, loaded.findings, vocab, false, loaded.checked).unwrap();
        let (pending, _) = write(out, loaded.keep, &raw, &clean.unwrap(), &checks, "2026-06-21").unwrap();
        publish(pending).unwrap();
        why
    }

    /// Sleeps until a night beginning now would not find `stamp` racy (`Stamp::racy`).
    fn sleep_past_racy(stamp: Stamp) {
        let past = stamp.changed_ns() + ingest::RACY_NS + 10_000_000;
        let wait = past - ingest::now_ns();
        if wait > 0 {
            std::thread::sleep(std::time::Duration::from_nanos(wait as u64));
        }
    }

    /// The generation `CURRENT` names in `out`'s state.
    fn current(out: &Path) -> Current {
        read_current(&state_dir(out)).unwrap().expect("a current generation")
    }

    /// Makes `g` the current generation of `out`'s state, `CURRENT` saying `stamps_from` (or,
    /// as one written before it was recorded, nothing).
    fn make_current(out: &Path, g: &Generation, stamps_from: Option<i64>) {
        let dir = state_dir(out);
        let json = serde_json::to_vec_pretty(g).unwrap();
        std::fs::write(dir.join(generation_name(&json)), &json).unwrap();
        let from = stamps_from.map(|t| format!("{STAMPS_FROM}{t}\n")).unwrap_or_default();
        std::fs::write(dir.join(CURRENT), format!("{}\n{from}", generation_name(&json))).unwrap();
    }

    /// The status preset a config names is in the state's key by its text, not its name alone.
    #[test]
    fn the_state_key_holds_the_status_presets_text() {
        for (name, text) in crate::statuses::PRESETS {
            let cfg = InputConfig { status_preset: name.to_string(), ..InputConfig::default() };
            assert_eq!(input_key(&cfg)["status_preset_blake3"], blake3::hash(text.as_bytes()).to_hex().to_string());
        }
        assert!(input_key(&InputConfig::default()).get("status_preset_blake3").is_none());
    }

    /// A file whose times are unknown (0, as a file system that keeps none reports them) is
    /// read again each night: its size alone cannot tell a rewrite. A file with a time is
    /// reused, and one only touched too, by its bytes; one whose modification time is 0 (a
    /// reproducible build's) by its status-change time, which a rewrite moves.
    #[test]
    fn a_file_without_a_time_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let (input, out, cfg, vocab) = small_night(dir.path());
        let night = |expect_reuse: bool| {
            let why = state_night(&input, &out, &cfg, &vocab);
            if expect_reuse {
                assert_eq!(why, None);
            }
            why
        };
        night(false);
        night(true);
        // Regression: a file only touched (its bytes the same) was a full refresh.
        let events = std::fs::OpenOptions::new().write(true).open(input.join("events.parquet")).unwrap();
        events.set_modified(std::time::UNIX_EPOCH).unwrap();
        night(true);
        let kept = current(&out).generation.events.iter().find(|s| s.path == "events.parquet").unwrap().stamp;
        assert_eq!(kept, Stamp::of_path(&input.join("events.parquet")), "the touched file's times are kept");
        // Regression: a modification time of 0 was taken for no time at all, and every night
        // after was a full refresh.
        #[cfg(unix)]
        night(true);
        // Known to no one: only the size is left, and the file is read again.
        let Current { mut generation, stamps_from, .. } = current(&out);
        for s in &mut generation.events {
            s.stamp = Stamp::default();
        }
        make_current(&out, &generation, stamps_from);
        let why = night(false).expect("a full refresh");
        assert!(why.contains("events.parquet") && why.contains("changed"), "{why}");
    }

    /// A file given only a new hard link (a backup's snapshot) is reused, and the generation
    /// keeps its new stamp. Regression: the generation kept the stamp the file was first read
    /// with, so such a file was hashed again every night until the next full refresh. A stamp
    /// that moved less than `ingest::RACY_NS` before the night began is racy: the next night
    /// hashes the file once more; one that moved longer before is not.
    #[cfg(unix)]
    #[test]
    fn a_file_only_linked_is_hashed_once() {
        let dir = tempfile::tempdir().unwrap();
        let (input, out, cfg, vocab) = small_night(dir.path());
        let events = input.join("events.parquet");
        let kept = || {
            let c = current(&out);
            let s = c.generation.events.iter().find(|s| s.path == "events.parquet").expect("the events file's segment");
            (s.stamp, s.stamp.racy(c.stamps_from))
        };
        for night in ["first", "linked", "settled", "after"] {
            if night == "linked" {
                std::thread::sleep(std::time::Duration::from_millis(30));
                std::fs::hard_link(&events, dir.path().join("snapshot.parquet")).unwrap();
                assert_ne!(Stamp::of_path(&events), kept().0, "a link moves the status-change time");
            }
            if night == "settled" {
                sleep_past_racy(Stamp::of_path(&events));
            }
            let why = state_night(&input, &out, &cfg, &vocab);
            if night != "first" {
                assert_eq!(why, None, "{night}: the same bytes are reused");
            }
            let (stamp, is_racy) = kept();
            assert_eq!(stamp, Stamp::of_path(&events), "{night}: the generation keeps the file's stamp");
            // Generated or linked just before the night: hashed again by the next one.
            assert_eq!(is_racy, matches!(night, "first" | "linked"), "{night}: racy");
        }
    }

    /// A file whose bytes differ from the ones its kept stamp was taken with (a rewrite in the
    /// same tick of a coarse clock, just after the file was hashed) is found changed while that
    /// stamp is racy, by its bytes. Regression: a new file's stamp was kept as read, and the
    /// rewrite was never seen. Once no longer racy, a stamp is trusted unread.
    #[cfg(unix)]
    #[test]
    fn a_rewrite_that_kept_its_stamp_is_found_while_the_stamp_is_racy() {
        let dir = tempfile::tempdir().unwrap();
        let (input, out, cfg, vocab) = small_night(dir.path());
        assert_eq!(state_night(&input, &out, &cfg, &vocab), None);
        let mut g = current(&out).generation;
        // The file's bytes as another file's: its BLAKE3 kept for other bytes, with its stamp.
        let s = g.events.iter_mut().find(|s| s.path == "events.parquet").unwrap();
        s.blake3 = "0".repeat(64);
        let stamp = s.stamp;
        let changed_at = stamp.changed_ns();
        for (stamps_from, racy) in [
            (Some(changed_at + ingest::RACY_NS - 1_000_000), true),
            (None, true),
            // Ahead of now (a damaged line, a clock set back): not believed.
            (Some(ingest::now_ns() + 3_600_000_000_000), true),
            (Some(changed_at + ingest::RACY_NS + 1_000_000), false),
        ] {
            if !racy {
                // A night that began then is not in the future.
                sleep_past_racy(stamp);
            }
            make_current(&out, &g, stamps_from);
            let why = state_night(&input, &out, &cfg, &vocab);
            if racy {
                let why = why.expect("a full refresh");
                assert!(why.contains("events.parquet") && why.contains("changed"), "{stamps_from:?}: {why}");
            } else {
                assert_eq!(why, None, "a stamp no longer racy is trusted");
            }
        }
    }

    /// New segments are written unsynced and made durable by one sync of the file system
    /// before the generation that names them is written (synced before its rename); a night
    /// with nothing new syncs no segments.
    #[test]
    fn new_segments_reach_the_disk_before_the_generation_that_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let (input, out, cfg, vocab) = small_night(dir.path());
        let seg_dir = state_dir(&out).join(SEGMENTS);
        for night in ["first", "again"] {
            let loaded = load(&input, &cfg, &out, false).unwrap();
            let ((_, clean), raw, checks) =
                validate::check_with(&input, loaded.raw, loaded.findings, &vocab, false, loaded.checked).unwrap();
            crate::io::tests::SYNCED.with(|s| s.borrow_mut().clear());
            let (pending, _) = write(&out, loaded.keep, &raw, &clean.unwrap(), &checks, "2026-06-21").unwrap();
            let synced = crate::io::tests::SYNCED.with(|s| s.borrow().clone());
            let generation = synced.iter().position(|p| p.to_string_lossy().contains(&pending.name));
            let segments = synced.iter().position(|p| *p == seg_dir);
            match night {
                "first" => assert!(
                    matches!((segments, generation), (Some(s), Some(g)) if s < g),
                    "the segments' sync, then the generation's: {synced:?}"
                ),
                _ => assert_eq!(segments, None, "nothing new, nothing to sync: {synced:?}"),
            }
            crate::io::tests::SYNCED.with(|s| s.borrow_mut().clear());
            publish(pending).unwrap();
            // `CURRENT` written, then the folder's rename of it synced, before anything is removed.
            let synced = crate::io::tests::SYNCED.with(|s| s.borrow().clone());
            assert!(
                matches!(&synced[..], [tmp, folder] if tmp.to_string_lossy().contains(".CURRENT.tmp") && *folder == state_dir(&out)),
                "{synced:?}"
            );
        }
    }

    /// Regression: two input files whose names are shown alike (control characters shown as
    /// `?`: `a\x01` and `a\x02` are both `a?`) were one file to the state, so every night found
    /// one of them gone and refreshed in full.
    #[test]
    fn files_whose_names_are_shown_alike_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (input, out, cfg, vocab) = small_night(dir.path());
        // Both tables: a shipments file's time was once read at its shown name, which is no file.
        for table in ["events", "shipments"] {
            let whole = input.join(format!("{table}.parquet"));
            let rows = ParquetReader::new(std::fs::File::open(&whole).unwrap()).finish().unwrap();
            std::fs::remove_file(&whole).unwrap();
            std::fs::create_dir(input.join(table)).unwrap();
            let half = rows.height() / 2;
            for (name, rows) in
                [("a\x01.parquet", rows.slice(0, half)), ("a\x02.parquet", rows.slice(half as i64, usize::MAX))]
            {
                crate::io::write_parquet(&mut rows.clone(), &input.join(table).join(name)).unwrap();
            }
        }
        for night in ["first", "again"] {
            let why = state_night(&input, &out, &cfg, &vocab);
            if night == "again" {
                assert_eq!(why, None, "both files are the state's");
            }
        }
    }

    #[test]
    fn merging_new_shipments_into_the_sorted_ones_gives_the_full_sort() {
        let mut rng = crate::TestRng::new(41);
        let mut next = |m: u64| rng.next() % m;
        for case in 0..300usize {
            // Ids with repeats (within and across the two parts) and prefixes of each other.
            let n = case % 41;
            let ids: Vec<String> = (0..n).map(|_| "s".repeat(next(3) as usize) + &next(9).to_string()).collect();
            let covered = if n == 0 { 0 } else { next(n as u64 + 1) as usize };
            let frame = |rows: &[String]| {
                let k: Vec<u32> = (0..rows.len() as u32).collect();
                DataFrame::new(
                    rows.len(),
                    vec![Column::new("shipment_id".into(), rows.to_vec()), Column::new("k".into(), k)],
                )
                .unwrap()
            };
            let want = sort_by_polars(frame(&ids)).unwrap();
            let sorted = sort_with_arrival(frame(&ids)).unwrap();
            assert!(sorted.0.equals(&want.0) && sorted.1 == want.1, "{ids:?}: sorted by id, not by polars");
            let (_, mut order) = sort_with_arrival(frame(&ids[..covered])).unwrap();
            let merged = merged_order(&frame(&ids), order.clone()).unwrap();
            assert_eq!(merged.as_ref(), Some(&want.1), "{ids:?}, {covered} covered");
            // The covered rows kept sorted (as the state keeps them, each with its arrival
            // row), the later ones after them in arrival order: the same sort.
            let mut stacked = ingest::gather(&frame(&ids), &order).unwrap();
            stacked.vstack_mut(&frame(&ids).slice(covered as i64, n - covered)).unwrap();
            let later: Vec<u32> =
                (0..n as u32).map(|k| if (k as usize) < covered { order[k as usize] } else { k }).collect();
            let k: Vec<u32> = stacked.column("k").unwrap().u32().unwrap().into_no_null_iter().collect();
            assert_eq!(k, later, "{ids:?}");
            let got = sort_after_sorted(stacked, &order).unwrap();
            assert!(got.0.equals(&want.0) && got.1 == want.1, "{ids:?}, {covered} kept sorted");
            // An order that does not sort the covered rows is not used: nor are kept rows out
            // of id order (rows of one id out of arrival order are not seen, but repeated ids
            // are an error of the input, which no night runs on).
            if covered >= 2 {
                let distinct = ids[order[0] as usize] != ids[order[covered - 1] as usize];
                order.swap(0, covered - 1);
                assert!(merged_order(&frame(&ids), order.clone()).unwrap().is_none(), "{ids:?}, {covered} covered");
                if !distinct {
                    continue;
                }
                let mut stacked = ingest::gather(&frame(&ids), &order).unwrap();
                stacked.vstack_mut(&frame(&ids).slice(covered as i64, n - covered)).unwrap();
                let got = sort_after_sorted(stacked, &order).unwrap();
                assert!(got.0.equals(&want.0) && got.1 == want.1, "{ids:?}, {covered} kept, swapped");
            }
        }
    }
}
