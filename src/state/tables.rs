//! The lane tables and disruption series days kept between nights (`OUT/state/lane-tables.json`
//! and the Parquet files it names): what a night computed at its cutoffs, found again by cutoff
//! and by the digest of the rows known before it (`features::reuse` says why that is exact). Unlike the segments they
//! are not part of a generation: every kept table carries the digest it is valid for, so a
//! file left by a night killed half-way, or by a night run out of order, can only be used
//! where it still holds. They are written after the night's run folder is committed, with the
//! generation that night wrote: a night reading that generation takes the kept digests up to
//! its first newly read row instead of computing them (`load`).
//!
//! ```text
//! OUT/state/lane-tables.json                 format, tool version, [lanes], the files below in order
//! OUT/state/lane-table-<fingerprint>.parquet one kept lane table: a row per lane
//! OUT/state/series-day-<fingerprint>.parquet one kept series day: a row per lane and stage
//! ```
//!
//! One file per table and per day, named by a fingerprint of what it holds (tiles, as Chronon
//! stores its windowed aggregations by day): a night hands on the tables and days it read
//! unchanged, so it writes only the ones it computed (its own day, and its table on a grid
//! night), where one file of every kept day was written again each night.

use std::collections::HashMap;
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::LaneConfig;
use crate::error::Result;
use crate::features::reuse::{self, Kept, KeptDay, KeptTable};

use super::StateInfo;
use super::record::{self, Header};

/// Layout version of the kept tables; another value is not used (and is rebuilt). 3: a
/// delivery after a loss or return no longer counts as on time, and a loss during a stage ends
/// its visit (`timeline::outcome`, `disruption::visit`): tables and days kept before hold the
/// old counts.
const FORMAT: u32 = 3;
const INDEX: &str = "lane-tables.json";
const TABLE_PREFIX: &str = "lane-table-";
const DAY_PREFIX: &str = "series-day-";
/// Data files of the first layout (one file of every table, one of every day): removed when
/// a night writes the kept tables.
const OLD_PREFIXES: [&str; 2] = ["lane-tables-", "series-days-"];

#[derive(Debug, Serialize, Deserialize)]
struct Index {
    #[serde(flatten)]
    header: Header,
    /// `[lanes]`, which every table depends on.
    lanes: serde_json::Value,
    /// The kept tables by cutoff, then the kept series days by day: a file each.
    tables: Vec<Tile>,
    days: Vec<Tile>,
    /// The generation the keeping night wrote (the input it read) and its cutoff: a night
    /// reading that same generation takes the kept digests at cutoffs up to both this cutoff
    /// and its newly read rows as its own (`Kept::holds_until`). Absent in files written
    /// by a night without a generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    generation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cutoff: Option<i64>,
}

/// One kept table or day: its cutoff (or day), its file and the BLAKE3 of the file's bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tile {
    key: i64,
    data: String,
    blake3: String,
}

/// The files a night read and checked (name → BLAKE3): a table or day it hands on unchanged
/// is in one of them already, and `write` names that file again rather than writing it.
#[derive(Debug, Default)]
pub struct Stored {
    checked: HashMap<String, String>,
}

fn lanes_key(cfg: &LaneConfig) -> serde_json::Value {
    serde_json::to_value(cfg).unwrap_or(serde_json::Value::Null)
}

/// The kept tables in `OUT/state/`: `Ok(None)` when there are none yet, `Err(why)` when there
/// are some that cannot be used (every table is then computed, and the night warns). With
/// them, the files they were read from, for `write`.
///
/// `info` is the night's state. When it read the generation the tables were kept with, the
/// rows it knows before a cutoff are the keeping night's, unless a row it decoded anew is dated
/// before that cutoff (as `state::digest` reasons): the kept digests hold up to the earlier of
/// the keeping night's cutoff and tonight's first new row.
pub fn load(out: &Path, cfg: &LaneConfig, info: &StateInfo) -> std::result::Result<Option<(Kept, Stored)>, String> {
    let dir = out.join(super::DIR);
    let Some(ix) = record::read(out, INDEX, FORMAT, |ix: &Index| &ix.header)? else { return Ok(None) };
    if ix.lanes != lanes_key(cfg) {
        return Err(format!("state/{INDEX} was computed with other [lanes] settings"));
    }
    for (tiles, prefix) in [(&ix.tables, TABLE_PREFIX), (&ix.days, DAY_PREFIX)] {
        if let Some(t) = tiles.iter().find(|t| !valid_data_name(&t.data, prefix)) {
            return Err(format!("state/{INDEX} names {:?}, not a kept-tables file", t.data));
        }
    }
    // Each file holds the one table or day the index lists it for, under its key.
    let read = |t: &Tile, parse: &(dyn Fn(&polars::prelude::DataFrame, &mut Kept) -> Result<()> + Sync)| {
        let df = crate::io::map_checked(&dir.join(&t.data), &t.blake3).map_err(|e| format!("state/{} {e}", t.data))?;
        let mut kept = Kept::default();
        parse(&df, &mut kept).map_err(|e| format!("state/{} is corrupt: {e}", t.data))?;
        Ok::<Kept, String>(kept)
    };
    let keys = |k: &Kept| k.tables.iter().map(|t| t.cutoff).chain(k.days.iter().map(|d| d.day)).collect::<Vec<_>>();
    let parts = ix
        .tables
        .par_iter()
        .map(|t| (t, read(t, &|df, k| reuse::from_frame(df).map(|f| k.tables = f.tables))))
        .chain(ix.days.par_iter().map(|t| (t, read(t, &reuse::days_from_frame))))
        .map(|(t, kept)| {
            let kept = kept?;
            if keys(&kept) != [t.key] {
                return Err(format!("state/{} does not hold the table or day state/{INDEX} lists it for", t.data));
            }
            Ok(kept)
        })
        .collect::<std::result::Result<Vec<Kept>, String>>()?;
    let mut kept = Kept::default();
    for mut p in parts {
        kept.tables.append(&mut p.tables);
        kept.days.append(&mut p.days);
    }
    kept.holds_until = match (&ix.generation, ix.cutoff) {
        (Some(g), Some(c)) if info.used.as_ref() == Some(g) => Some(c.min(info.new_rows_from)),
        _ => None,
    };
    let checked = ix.tables.into_iter().chain(ix.days).map(|t| (t.data, t.blake3)).collect();
    Ok(Some((kept, Stored { checked })))
}

/// Whether `n` is a name `write` (or `model::write`) gives a file starting with `prefix`: the
/// prefix, hexadecimal digits, `.parquet`.
pub(super) fn valid_data_name(n: &str, prefix: &str) -> bool {
    n.strip_prefix(prefix)
        .and_then(|r| r.strip_suffix(".parquet"))
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A file of kept tables this layout or the first one wrote (the ones `write` may remove).
fn kept_file(n: &str) -> bool {
    [TABLE_PREFIX, DAY_PREFIX].iter().chain(&OLD_PREFIXES).any(|p| valid_data_name(n, p))
}

/// The tile of one table or day: the file `stored` read it from when it holds the same (named
/// by the fingerprint), else a new file written (not yet synced). Returns whether it wrote.
fn tile(
    dir: &Path,
    prefix: &str,
    key: i64,
    fingerprint: blake3::Hash,
    stored: &Stored,
    frame: impl FnOnce() -> Result<polars::prelude::DataFrame>,
) -> Result<(Tile, bool)> {
    let data = format!("{prefix}{}.parquet", &fingerprint.to_hex()[..16]);
    if let Some(blake3) = stored.checked.get(&data) {
        return Ok((Tile { key, data, blake3: blake3.clone() }, false));
    }
    let path = dir.join(&data);
    let bytes = crate::io::compact_bytes(&path, &mut frame()?)?;
    let blake3 = blake3::hash(&bytes).to_hex().to_string();
    crate::io::write_renamed(&path, &bytes)?;
    Ok((Tile { key, data, blake3 }, true))
}

/// Replaces the kept tables and days: the files of those `stored` does not hold, then (synced)
/// the index, through a rename; then files of kept tables the index does not name are removed.
/// `generation`: the one the night wrote (and published), with the night's `cutoff`.
pub fn write(
    out: &Path,
    cfg: &LaneConfig,
    tables: &[KeptTable],
    days: &[KeptDay],
    stored: &Stored,
    generation: Option<&str>,
    cutoff: i64,
) -> Result<()> {
    let dir = out.join(super::DIR);
    crate::io::create_dir_all(&dir)?;
    let tables: Vec<(Tile, bool)> = tables
        .par_iter()
        .map(|t| {
            let frame = || reuse::to_frame(std::slice::from_ref(t));
            tile(&dir, TABLE_PREFIX, t.cutoff, reuse::table_fingerprint(t), stored, frame)
        })
        .collect::<Result<_>>()?;
    let days: Vec<(Tile, bool)> = days
        .par_iter()
        .map(|d| {
            tile(&dir, DAY_PREFIX, d.day, reuse::day_fingerprint(d), stored, || {
                reuse::days_to_frame(std::slice::from_ref(d))
            })
        })
        .collect::<Result<_>>()?;
    // The new files reach the disk before the index that names them.
    if tables.iter().chain(&days).any(|t| t.1) {
        crate::io::sync_filesystem(&dir)?;
    }
    crate::fault::point("state:tables");
    let ix = Index {
        header: Header::new(FORMAT),
        lanes: lanes_key(cfg),
        tables: tables.into_iter().map(|t| t.0).collect(),
        days: days.into_iter().map(|t| t.0).collect(),
        generation: generation.map(str::to_string),
        cutoff: generation.map(|_| cutoff),
    };
    let json = record::seal(serde_json::to_vec_pretty(&ix).map_err(crate::error::Error::internal)?);
    crate::io::write_atomic(&dir.join(INDEX), &json)?;
    // The index's rename is durable before the files it no longer names are removed.
    crate::io::sync_dir(&dir)?;
    let named: std::collections::HashSet<&str> = ix.tables.iter().chain(&ix.days).map(|t| t.data.as_str()).collect();
    remove_unnamed(&dir, kept_file, &named);
    Ok(())
}

/// Removes the files in `dir` of a kind (`kind`: a name a writer gives them) that a record just
/// written does not name (`named`): those of the records before it. Best effort, like any
/// clean-up of what only saves work.
pub(super) fn remove_unnamed(dir: &Path, kind: impl Fn(&str) -> bool, named: &std::collections::HashSet<&str>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if kind(&name) && !named.contains(name.as_str()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
