//! A sharded night's partials (README "Running on a cluster"). `run --shard i/N` validates what
//! shard i owns (see `shard`) and writes it, checked and repaired, to the partials folder:
//!
//! ```text
//! PARTIALS/shard-3-of-7.shipments.parquet   the shard's clean shipments, by shipment_id
//! PARTIALS/shard-3-of-7.events.parquet      their events: shipment row, time, code, estimate
//! PARTIALS/shard-3-of-7.json                what it covers (night, config digest, counts,
//!                                           warnings, files) and the data files' BLAKE3
//! ```
//!
//! The JSON is written last, each file through a rename: a shard killed half-way leaves no
//! JSON, hence no partial, and a retried shard replaces its files with the same bytes. `merge`
//! reads the N partials and assembles exactly the clean input and report a single run over the
//! whole input gets: shipments in shipment_id order with their events in the same order, the
//! same counts and the same warnings (with counts summed). It refuses, writing nothing, a
//! missing or duplicate shard, a partial of another night, config, shard count or tool
//! version, and a data file whose BLAKE3 does not match.
//!
//! What goes through the partials is the validated input, compact (about 17 bytes an event):
//! the shards do the decoding and checking, which read every event; the features, the model
//! and the alerts run once, after the merge, on the merged input. The shards can also compute
//! the features and model from their own partials, in rounds (`rounds`, `read_shard`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::calendar::Night;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::ingest::{FileInfo, Finding};
use crate::night::TOOL_VERSION;
use crate::schema::Table;
use crate::shard::Shard;
use crate::validate::{CleanInput, Events, NO_ETA, Report, Unmapped, Warning, empty_table};

/// Layout version of a partial; the merge refuses another.
const FORMAT: u32 = 1;

/// `shard-i-of-N.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    format: u32,
    tool_version: String,
    shard: u32,
    shards: u32,
    as_of: String,
    /// BLAKE3 of the config as it shapes results (`Config::digest`).
    config: String,
    /// Rows read (the report's counts): the shard's shipments, and its events including those
    /// dropped for null values and, on shard 0, those of unknown shipments.
    shipments_read: u64,
    events_read: u64,
    /// The input folder the shard read, canonicalised: shards given one folder read the same
    /// files, shards given their own parts (as the Spark job gives them) may hold files of
    /// the same relative name.
    #[serde(default)]
    input: String,
    files: Vec<PartFile>,
    warnings: Vec<PartFinding>,
    unmapped: Vec<Unmapped>,
    shipments: DataFile,
    events: DataFile,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DataFile {
    file: String,
    blake3: String,
    rows: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartFile {
    table: String,
    path: String,
    rows: u64,
    bytes: u64,
    blake3: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartFinding {
    file: String,
    column: String,
    check: String,
    message: String,
    count: u64,
}

/// Writes shard `shard`'s partial into `dir`; returns the JSON's path.
pub fn write(
    dir: &Path,
    shard: Shard,
    night: Night,
    cfg: &Config,
    report: &Report,
    clean: &CleanInput,
) -> Result<PathBuf> {
    crate::io::create_dir_all(dir)?;
    let stem = shard.stem();
    let ev = &clean.events;
    let ship: Vec<u32> =
        (0..clean.shipments.height()).flat_map(|i| std::iter::repeat_n(i as u32, ev.of(i).0.len())).collect();
    let mut cols = vec![
        Column::new("ship".into(), ship),
        Column::new("time".into(), ev.time.clone()),
        Column::new("code".into(), ev.code.clone()),
    ];
    if let Some(eta) = &ev.eta {
        cols.push(Column::new("eta".into(), eta.clone()));
    }
    let mut events = DataFrame::new(ev.time.len(), cols)?;
    let mut shipments = clean.shipments.clone();
    let data = |name: String, df: &mut DataFrame| -> Result<DataFile> {
        let blake3 = crate::io::write_compact(&dir.join(&name), df)?;
        Ok(DataFile { file: name, blake3, rows: df.height() as u64 })
    };
    let meta = Meta {
        format: FORMAT,
        tool_version: TOOL_VERSION.to_string(),
        shard: shard.index,
        shards: shard.count,
        as_of: night.to_string(),
        config: cfg.digest(),
        shipments_read: report.shipments,
        events_read: report.events,
        input: cfg.pipeline.input.as_deref().map(crate::state::canonical_input).unwrap_or_default(),
        files: report
            .files
            .iter()
            .map(|f| PartFile {
                table: f.table.to_string(),
                path: f.path.clone(),
                rows: f.rows,
                bytes: f.bytes,
                blake3: f.blake3.clone(),
            })
            .collect(),
        warnings: report
            .warnings
            .iter()
            .map(|w| PartFinding {
                file: w.file.clone(),
                column: w.column.clone(),
                check: w.check.to_string(),
                message: w.message.clone(),
                count: w.count,
            })
            .collect(),
        unmapped: report.unmapped_statuses.clone(),
        shipments: data(format!("{stem}.shipments.parquet"), &mut shipments)?,
        events: data(format!("{stem}.events.parquet"), &mut events)?,
    };
    let mut json = serde_json::to_vec_pretty(&meta).map_err(Error::internal)?;
    json.push(b'\n');
    let path = dir.join(format!("{stem}.json"));
    crate::fault::point("partial:json");
    crate::io::write_atomic(&path, &json)?;
    Ok(path)
}

/// What the manifest of a merged night records of its partials.
#[derive(Debug, Clone, Serialize)]
pub struct Merged {
    pub shards: u32,
    pub partials: Vec<MergedPartial>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MergedPartial {
    pub shard: u32,
    /// BLAKE3 of the partial's JSON (which holds its data files' BLAKE3).
    pub blake3: String,
    pub shipments: u64,
    pub events: u64,
}

/// Reads the `shards` partials of `night` in `dir` and merges them into the report and clean
/// input of the whole night; refuses (exit 65) anything but exactly one matching partial per shard.
pub fn merge(
    dir: &Path,
    shards: u32,
    night: Night,
    cfg: &Config,
    input: &Path,
) -> Result<(Report, CleanInput, Merged)> {
    let (metas, digests) = read_metas(dir, shards, night, cfg)?;
    let merged = merged(shards, &metas, digests);
    let mut parts = Vec::with_capacity(metas.len());
    for m in &metas {
        let shipments = read_data(dir, &m.shipments, &format!("{}.shipments.parquet", stem(m)))?;
        let events = read_data(dir, &m.events, &format!("{}.events.parquet", stem(m)))?;
        // One shard's events frame at a time is held beside the arrays taken from it.
        parts.push(Part::new(shipments, events)?);
    }
    let clean = merge_clean(parts)?;
    if clean.shipments.height() == 0 {
        return Err(empty_table().into_error());
    }
    Ok((merge_reports(&metas, input)?, clean, merged))
}

/// The whole night's validation report from the `shards` partials' JSON alone (their data is
/// not read: `merge --rounds`); refuses as `merge` does, an input without shipments too.
pub fn report(dir: &Path, shards: u32, night: Night, cfg: &Config, input: &Path) -> Result<(Report, Merged)> {
    let (metas, digests) = read_metas(dir, shards, night, cfg)?;
    if metas.iter().all(|m| m.shipments.rows == 0) {
        return Err(empty_table().into_error());
    }
    Ok((merge_reports(&metas, input)?, merged(shards, &metas, digests)))
}

/// What the manifest records of the partials.
fn merged(shards: u32, metas: &[Meta], digests: Vec<String>) -> Merged {
    Merged {
        shards,
        partials: metas
            .iter()
            .zip(digests)
            .map(|(m, blake3)| MergedPartial {
                shard: m.shard,
                blake3,
                shipments: m.shipments_read,
                events: m.events_read,
            })
            .collect(),
    }
}

/// One shard's clean input as read back: its shipments (by shipment_id) and their events in
/// the compact form of `Events`.
struct Part {
    shipments: DataFrame,
    events: Events,
}

impl Part {
    fn new(shipments: DataFrame, ev: DataFrame) -> Result<Part> {
        let n = shipments.height();
        let mut start = vec![0u32; n + 1];
        for s in ev.column("ship")?.u32()?.into_no_null_iter() {
            let slot =
                start.get_mut(s as usize + 1).ok_or_else(|| Error::internal("a partial's event names no shipment"))?;
            *slot += 1;
        }
        for k in 0..n {
            start[k + 1] += start[k];
        }
        let eta = match ev.column("eta") {
            Ok(c) => Some(c.i64()?.into_no_null_iter().collect()),
            Err(_) => None,
        };
        let events = Events {
            start,
            time: ev.column("time")?.i64()?.into_no_null_iter().collect(),
            code: ev.column("code")?.u8()?.into_no_null_iter().collect(),
            eta,
        };
        Ok(Part { shipments, events })
    }
}

fn stem(m: &Meta) -> String {
    Shard { index: m.shard, count: m.shards }.stem()
}

/// Every `*.json` in `dir` (hidden and `_` names aside), checked against the night and config,
/// one per shard, in shard order, with the BLAKE3 of each.
fn read_metas(dir: &Path, shards: u32, night: Night, cfg: &Config) -> Result<(Vec<Meta>, Vec<String>)> {
    let shown = |name: &str| dir.join(name).display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::MissingInput { path: dir.to_path_buf() },
        _ => Error::bad_file(dir.display().to_string(), format!("cannot list the partials: {e}")),
    })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && !n.starts_with(['.', '_']))
        .collect();
    names.sort();
    let digest = cfg.digest();
    let mut by_shard: BTreeMap<u32, (String, Meta, String)> = BTreeMap::new();
    for name in names {
        let bytes =
            std::fs::read(dir.join(&name)).map_err(|e| Error::bad_file(shown(&name), format!("unreadable: {e}")))?;
        let m = parse_meta(&shown(&name), &bytes, shards, night, &digest)?;
        if let Some((other, _, _)) = by_shard.get(&m.shard) {
            return Err(Error::bad_file(
                shown(&name),
                format!("shard {}/{shards} is also in {other}: duplicate partials", m.shard),
            ));
        }
        let blake3 = blake3::hash(&bytes).to_hex().to_string();
        by_shard.insert(m.shard, (name, m, blake3));
    }
    let missing: Vec<String> = (0..shards).filter(|k| !by_shard.contains_key(k)).map(|k| k.to_string()).collect();
    if !missing.is_empty() {
        return Err(Error::bad_file(
            dir.display().to_string(),
            format!("missing partials: shard {} of {shards} (run lanewatch run --shard for each)", missing.join(", ")),
        ));
    }
    Ok(by_shard.into_values().map(|(_, m, b)| (m, b)).unzip())
}

/// A partial's JSON, checked against the night, config, shard count and tool version.
fn parse_meta(shown: &str, bytes: &[u8], shards: u32, night: Night, digest: &str) -> Result<Meta> {
    let m: Meta =
        serde_json::from_slice(bytes).map_err(|e| Error::bad_file(shown, format!("not a lanewatch partial: {e}")))?;
    let mismatch = |what: &str, got: &str, want: &str| {
        Error::bad_file(shown, format!("a partial of another {what} ({got}; this merge: {want})"))
    };
    if m.format != FORMAT {
        return Err(mismatch("layout", &m.format.to_string(), &FORMAT.to_string()));
    }
    if m.tool_version != TOOL_VERSION {
        return Err(mismatch("lanewatch version", &m.tool_version, TOOL_VERSION));
    }
    if m.as_of != night.to_string() {
        return Err(mismatch("night", &m.as_of, &night.to_string()));
    }
    if m.shards != shards || m.shard >= shards {
        return Err(mismatch("shard count", &format!("shard {}/{}", m.shard, m.shards), &format!("{shards} shards")));
    }
    if m.config != digest {
        return Err(mismatch("config", &format!("digest {:.12}", m.config), &digest[..12]));
    }
    Ok(m)
}

/// Shard `shard`'s clean input from its partial in `dir` (checked as `merge` checks it): what
/// the shard's later rounds (`rounds`) compute from.
pub fn read_shard(dir: &Path, shard: Shard, night: Night, cfg: &Config) -> Result<CleanInput> {
    let name = format!("{}.json", shard.stem());
    let path = dir.join(&name);
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::bad_file(
            dir.display().to_string(),
            format!("missing partial: shard {shard} (run lanewatch run --shard {shard} first)"),
        ),
        _ => Error::bad_file(path.display().to_string(), format!("unreadable: {e}")),
    })?;
    let m = parse_meta(&path.display().to_string(), &bytes, shard.count, night, &cfg.digest())?;
    if m.shard != shard.index {
        return Err(Error::bad_file(path.display().to_string(), format!("the partial of shard {}", m.shard)));
    }
    let shipments = read_data(dir, &m.shipments, &format!("{}.shipments.parquet", shard.stem()))?;
    let events = read_data(dir, &m.events, &format!("{}.events.parquet", shard.stem()))?;
    let Part { shipments, events } = Part::new(shipments, events)?;
    Ok(CleanInput { shipments, events })
}

/// A data file of a partial, its name and BLAKE3 checked.
fn read_data(dir: &Path, d: &DataFile, want: &str) -> Result<DataFrame> {
    let path = dir.join(want);
    if d.file != want {
        return Err(Error::bad_file(
            path.display().to_string(),
            format!("the partial names another data file: {:?}", d.file),
        ));
    }
    let df = crate::io::read_checked(&path, &d.blake3).map_err(|e| Error::bad_file(path.display().to_string(), e))?;
    if df.height() as u64 != d.rows {
        return Err(Error::bad_file(
            path.display().to_string(),
            format!("{} rows, the partial says {}", df.height(), d.rows),
        ));
    }
    Ok(df)
}

/// The shards' clean inputs as one: shipments in shipment_id order (a k-way merge: each shard's
/// are sorted already), each with its events. A shipment_id in two shards is an error, as the
/// single run's duplicate-id check makes it.
fn merge_clean(parts: Vec<Part>) -> Result<CleanInput> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    let ids: Vec<StringChunked> =
        parts.iter().map(|p| Ok(p.shipments.column("shipment_id")?.str()?.clone())).collect::<Result<_>>()?;
    let id = |s: usize, i: usize| ids[s].get(i).unwrap_or("");
    // (shard, row) in shipment_id order.
    let total: usize = parts.iter().map(|p| p.shipments.height()).sum();
    let mut order: Vec<(u32, u32)> = Vec::with_capacity(total);
    let mut heap: BinaryHeap<Reverse<(&str, usize, usize)>> =
        (0..parts.len()).filter(|&s| !ids[s].is_empty()).map(|s| Reverse((id(s, 0), s, 0))).collect();
    while let Some(Reverse((key, s, i))) = heap.pop() {
        if let Some(&(ps, pi)) = order.last() {
            if id(ps as usize, pi as usize) == key {
                return Err(Error::data(
                    "shipments",
                    "shipment_id",
                    format!(
                        "shipment ids in more than one shard (e.g. {}): rows share a shipment_id with another row",
                        crate::error::quote(key)
                    ),
                ));
            }
        }
        order.push((s as u32, i as u32));
        if i + 1 < ids[s].len() {
            heap.push(Reverse((id(s, i + 1), s, i + 1)));
        }
    }
    let has_eta = parts.iter().any(|p| p.events.eta.is_some());
    let n_events: usize = parts.iter().map(|p| p.events.len()).sum();
    let mut events = Events {
        start: Vec::with_capacity(total + 1),
        time: Vec::with_capacity(n_events),
        code: Vec::with_capacity(n_events),
        eta: has_eta.then(|| Vec::with_capacity(n_events)),
    };
    events.start.push(0);
    for &(s, i) in &order {
        let ev = &parts[s as usize].events;
        let (time, code) = ev.of(i as usize);
        events.time.extend_from_slice(time);
        events.code.extend_from_slice(code);
        if let Some(out) = events.eta.as_mut() {
            match ev.eta_of(i as usize) {
                Some(e) => out.extend_from_slice(e),
                None => out.extend(std::iter::repeat_n(NO_ETA, time.len())),
            }
        }
        events.start.push(events.time.len() as u32);
    }
    drop(ids);
    // The shipments in the same order: stacked in shard order, then taken.
    let mut base = Vec::with_capacity(parts.len());
    let mut all = DataFrame::empty();
    for p in parts {
        base.push(all.height() as IdxSize);
        if all.width() == 0 {
            all = p.shipments;
        } else {
            all.vstack_mut(&p.shipments)?;
        }
    }
    let idx = IdxCa::from_vec("idx".into(), order.iter().map(|&(s, i)| base[s as usize] + i as IdxSize).collect());
    Ok(CleanInput { shipments: all.take(&idx)?, events })
}

/// Refuses shards that read one input folder whole (`whole`) but listed other files: a file
/// appeared or went while they ran, and one shard's night holds rows the other's lacks.
fn refuse_other_file_sets<'a>(whole: impl Iterator<Item = &'a Meta>, input: &Path) -> Result<()> {
    let mut first: std::collections::HashMap<&str, (&Meta, std::collections::BTreeSet<(&str, &str)>)> =
        std::collections::HashMap::new();
    for m in whole {
        let set: std::collections::BTreeSet<(&str, &str)> =
            m.files.iter().map(|f| (f.table.as_str(), f.path.as_str())).collect();
        let Some((a, a_set)) = first.get(m.input.as_str()) else {
            first.insert(m.input.as_str(), (m, set));
            continue;
        };
        let (has, lacks, path) = match (a_set.difference(&set).next(), set.difference(a_set).next()) {
            (Some(&(_, path)), _) => (a.shard, m.shard, path),
            (None, Some(&(_, path))) => (m.shard, a.shard, path),
            (None, None) => continue,
        };
        return Err(Error::bad_file(
            input.join(path).display().to_string(),
            format!(
                "shard {has} of {} read this file and shard {lacks} did not: the input changed while the \
                 shards ran (run them again on one input)",
                m.shards
            ),
        ));
    }
    Ok(())
}

/// The whole night's report from the shards': counts summed, each warning once with its count
/// summed, in the order a single validation reports them; the unmapped statuses combined.
fn merge_reports(metas: &[Meta], input: &Path) -> Result<Report> {
    // Shards given the whole input all list its files: each once (a set, as a Spark input has
    // thousands of part files). A file two shards read in one input folder with different
    // bytes changed while the shards ran: their partials are of two inputs, which no single
    // run reads, and are refused. (Shards given their own folders may hold one name each.)
    // Shards read one whole input folder when some shard's shipments files there hold rows it
    // did not keep (another shard's): those shards are compared (one of them may own every
    // row). Shards given their own parts keep every row they list, and may each hold a folder
    // of one path (on their own machines) with other files and bytes.
    let whole_inputs: std::collections::HashSet<&str> = metas
        .iter()
        .filter(|m| {
            let listed = m.files.iter().filter(|f| f.table == Table::Shipments.name()).map(|f| f.rows);
            listed.fold(0, u64::saturating_add) > m.shipments_read
        })
        .map(|m| m.input.as_str())
        .collect();
    let whole = |m: &Meta| whole_inputs.contains(m.input.as_str());
    refuse_other_file_sets(metas.iter().filter(|m| whole(m)), input)?;
    type Key<'a> = (&'a str, Option<u32>, &'a str, &'a str);
    let mut seen: std::collections::HashMap<Key<'_>, (&str, u32)> = std::collections::HashMap::new();
    let mut files: Vec<FileInfo> = Vec::new();
    for (m, f) in metas.iter().flat_map(|m| m.files.iter().map(move |f| (m, f))) {
        let own_part = (!whole(m)).then_some(m.shard);
        let key = (m.input.as_str(), own_part, f.table.as_str(), f.path.as_str());
        if let Some(&(blake3, shard)) = seen.get(&key) {
            if blake3 != f.blake3 {
                return Err(Error::bad_file(
                    input.join(&f.path).display().to_string(),
                    format!(
                        "shards {shard} and {} of {} read different contents of this file: the input changed \
                         while the shards ran (run them again on one input)",
                        m.shard, m.shards
                    ),
                ));
            }
            continue;
        }
        seen.insert(key, (&f.blake3, m.shard));
        let table = if f.table == Table::Shipments.name() { Table::Shipments } else { Table::Events };
        files.push(FileInfo {
            table: table.name(),
            path: f.path.clone(),
            name: f.path.clone(),
            rows: f.rows,
            bytes: f.bytes,
            blake3: f.blake3.clone(),
            stamp: Default::default(),
        });
    }
    // Each warning once, its count summed, rendered through the single validation's words.
    let unmapped = merge_unmapped(metas);
    let mut counts = [0u64; Warning::ALL.len()];
    for w in metas.iter().flat_map(|m| &m.warnings) {
        let known = Warning::find(&w.check, &w.column).ok_or_else(|| {
            Error::internal(format!("a partial holds a warning this merge does not know: {} ({})", w.check, w.column))
        })?;
        counts[Warning::ALL.iter().position(|&k| k == known).expect("ALL lists every warning")] += w.count;
    }
    let statuses: Vec<(String, u64)> = unmapped.iter().map(|u| (u.status.clone(), u.count)).collect();
    let warnings: Vec<Finding> =
        Warning::ALL.iter().zip(counts).filter(|(_, n)| *n > 0).map(|(w, n)| w.finding(n, &statuses)).collect();
    Ok(Report {
        input: input.display().to_string(),
        valid: true,
        shipments: metas.iter().map(|m| m.shipments_read).sum(),
        events: metas.iter().map(|m| m.events_read).sum(),
        files,
        errors: Vec::new(),
        warnings,
        unmapped_statuses: unmapped,
    })
}

/// Unmapped statuses across shards: counts summed, first and last seen over all; where it sits
/// between milestones, from the shard that saw it most. Most frequent first, at most 20.
fn merge_unmapped(metas: &[Meta]) -> Vec<Unmapped> {
    let mut by: BTreeMap<String, Unmapped> = BTreeMap::new();
    for u in metas.iter().flat_map(|m| &m.unmapped) {
        match by.get_mut(&u.status) {
            None => {
                by.insert(u.status.clone(), u.clone());
            }
            Some(v) => {
                let (first, last) =
                    (v.first_seen.clone().min(u.first_seen.clone()), v.last_seen.clone().max(u.last_seen.clone()));
                let count = v.count + u.count;
                if u.count > v.count {
                    *v = u.clone();
                }
                (v.count, v.first_seen, v.last_seen) = (count, first, last);
            }
        }
    }
    let mut out: Vec<Unmapped> = by.into_values().collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.status.cmp(&b.status)));
    out.truncate(20);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(unmapped: Vec<Unmapped>, warnings: Vec<PartFinding>) -> Meta {
        Meta {
            format: FORMAT,
            tool_version: TOOL_VERSION.into(),
            shard: 0,
            shards: 2,
            as_of: "2026-11-14".into(),
            config: String::new(),
            shipments_read: 0,
            events_read: 0,
            input: String::new(),
            files: vec![],
            warnings,
            unmapped,
            shipments: DataFile { file: String::new(), blake3: String::new(), rows: 0 },
            events: DataFile { file: String::new(), blake3: String::new(), rows: 0 },
        }
    }

    /// Regression: a partial whose config digest held multibyte text (a hand-edited or foreign
    /// file) panicked the merge (exit 70) where the digest was cut to 12 bytes for the message.
    #[test]
    fn a_partial_of_another_config_is_refused_whatever_its_digest_holds() {
        let night = Night::new(chrono::NaiveDate::from_ymd_opt(2026, 11, 14).unwrap());
        let want = "0123456789abcdef0123";
        // Byte 12 of the first falls inside a character.
        for config in ["aééééééééé", "", "abc"] {
            let bytes = serde_json::to_vec(&Meta { config: config.into(), ..meta(vec![], vec![]) }).unwrap();
            let err = parse_meta("p.json", &bytes, 2, night, want).unwrap_err();
            assert_eq!(err.exit_code(), 65, "{config:?}: {err}");
            assert!(err.to_string().contains("another config"), "{err}");
        }
    }

    fn part_warning(w: Warning, count: u64) -> PartFinding {
        let f = w.finding(count, &[]);
        PartFinding { file: f.file, column: f.column, check: f.check.into(), message: f.message, count }
    }

    #[test]
    fn merged_warnings_are_summed_and_worded_as_one_validation_words_them() {
        let a = meta(
            vec![],
            vec![part_warning(Warning::ShipmentWithoutEvents, 3), part_warning(Warning::DuplicateEvent, 12)],
        );
        let b = meta(vec![], vec![part_warning(Warning::DuplicateEvent, 28), part_warning(Warning::InvalidWeight, 1)]);
        let r = merge_reports(&[a, b], Path::new("in")).unwrap();
        let expected: Vec<Finding> =
            [(Warning::InvalidWeight, 1), (Warning::DuplicateEvent, 40), (Warning::ShipmentWithoutEvents, 3)]
                .into_iter()
                .map(|(w, n)| w.finding(n, &[]))
                .collect();
        assert_eq!(r.warnings, expected);
        assert!(r.warnings[1].message.starts_with("40 duplicate events"), "{}", r.warnings[1].message);

        let odd = PartFinding { check: "made_up".into(), ..part_warning(Warning::DuplicateEvent, 1) };
        let err = merge_reports(&[meta(vec![], vec![odd])], Path::new("in")).unwrap_err();
        assert!(err.to_string().contains("does not know: made_up"), "{err}");
    }

    /// Shards that read a file list it once; a file two shards read with different bytes
    /// (rewritten while they ran) refuses the merge, naming the file.
    #[test]
    fn a_file_the_shards_read_with_different_bytes_refuses_the_merge() {
        let file = |path: &str, blake3: &str| PartFile {
            table: "events".into(),
            path: path.into(),
            rows: 1,
            bytes: 1,
            blake3: blake3.into(),
        };
        // Each shard keeps 4 of the shipments file's 10 rows: both read the whole input.
        let ships = || PartFile { table: "shipments".into(), rows: 10, ..file("s", "0") };
        let shard = |k: u32, input: &str, mut files: Vec<PartFile>| Meta {
            shard: k,
            input: input.into(),
            shipments_read: 4,
            files: {
                files.insert(0, ships());
                files
            },
            ..meta(vec![], vec![])
        };
        let same = [
            shard(0, "/in", vec![file("e/a", "1"), file("e/b", "2")]),
            shard(1, "/in", vec![file("e/a", "1"), file("e/b", "2")]),
        ];
        let r = merge_reports(&same, Path::new("in")).unwrap();
        assert_eq!(r.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["s", "e/a", "e/b"]);
        let changed = [
            shard(0, "/in", vec![file("e/a", "1"), file("e/b", "2")]),
            shard(1, "/in", vec![file("e/a", "1"), file("e/b", "3")]),
        ];
        let err = merge_reports(&changed, Path::new("in")).unwrap_err();
        assert_eq!(err.exit_code(), 65, "{err}");
        assert!(err.to_string().contains("e/b") && err.to_string().contains("shards 0 and 1"), "{err}");
        // Regression: a file that appeared (or went) between two shards' reads of one folder
        // was not compared, and the merge joined two inputs.
        for (a, b) in [(vec![file("e/a", "1"), file("e/b", "2")], vec![file("e/a", "1")]), (vec![], vec![file("e/c", "4")])]
        {
            let err = merge_reports(&[shard(0, "/in", a), shard(1, "/in", b)], Path::new("in")).unwrap_err();
            assert_eq!(err.exit_code(), 65, "{err}");
            assert!(err.to_string().contains("did not: the input changed"), "{err}");
        }
        // Shards given their own folders (the Spark job's parts) may each hold a file of one
        // name, even at one path (their own machines'): they keep every row they read.
        let own_part = |k: u32, input: &str, files: Vec<PartFile>| Meta { shipments_read: 10, ..shard(k, input, files) };
        let own = [own_part(0, "/p/0", vec![file("e/a", "1")]), own_part(1, "/p/1", vec![file("e/a", "2")])];
        assert_eq!(merge_reports(&own, Path::new("in")).unwrap().files.len(), 4);
        let own = [own_part(0, "/in", vec![file("e/a", "1")]), own_part(1, "/in", vec![file("e/b", "2")])];
        assert_eq!(merge_reports(&own, Path::new("in")).unwrap().files.len(), 4);
        // One shard of a whole input may own every row (shard 1 keeps none): still one input,
        // its files listed once and compared.
        let none = |k: u32, files: Vec<PartFile>| Meta { shipments_read: 0, ..shard(k, "/in", files) };
        let all = [own_part(0, "/in", vec![file("e/a", "1")]), none(1, vec![file("e/a", "1")])];
        assert_eq!(merge_reports(&all, Path::new("in")).unwrap().files.len(), 2);
        let err = merge_reports(&[own_part(0, "/in", vec![file("e/a", "1")]), none(1, vec![])], Path::new("in"))
            .unwrap_err();
        assert!(err.to_string().contains("did not: the input changed"), "{err}");
    }

    fn unmapped(status: &str, count: u64, first: &str, last: &str, after: &str) -> Unmapped {
        Unmapped {
            status: status.into(),
            count,
            first_seen: first.into(),
            last_seen: last.into(),
            after: after.into(),
            before: "none".into(),
            share_between: 1.0,
            suggestion: String::new(),
            reason: String::new(),
        }
    }

    #[test]
    fn unmapped_statuses_combine_across_shards() {
        let a = meta(
            vec![unmapped("X", 2, "2026-01-02", "2026-01-05", "PICKED_UP"), unmapped("Y", 5, "a", "b", "")],
            vec![],
        );
        let b = meta(vec![unmapped("X", 4, "2026-01-01", "2026-01-03", "DEPARTED")], vec![]);
        let m = merge_unmapped(&[a, b]);
        assert_eq!(m.iter().map(|u| (u.status.as_str(), u.count)).collect::<Vec<_>>(), vec![("X", 6), ("Y", 5)]);
        assert_eq!((m[0].first_seen.as_str(), m[0].last_seen.as_str()), ("2026-01-01", "2026-01-05"));
        // Where it sits between milestones: from the shard that saw it most.
        assert_eq!(m[0].after, "DEPARTED");
    }
}
