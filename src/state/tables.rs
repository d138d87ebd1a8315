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
//! OUT/state/lane-tables.json                 format, tool version, [lanes], the data file and its BLAKE3
//! OUT/state/lane-tables-<blake3>.parquet     one row per kept table and lane
//! OUT/state/series-days-<blake3>.parquet     one row per kept series day, lane and stage
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::LaneConfig;
use crate::error::Result;
use crate::features::reuse::{self, Kept, KeptDay, KeptTable};

use super::StateInfo;
use super::record::{self, Header};

/// Layout version of the kept tables; another value is not used (and is rebuilt).
const FORMAT: u32 = 1;
const INDEX: &str = "lane-tables.json";
const PREFIX: &str = "lane-tables-";
const DAYS_PREFIX: &str = "series-days-";

#[derive(Debug, Serialize, Deserialize)]
struct Index {
    #[serde(flatten)]
    header: Header,
    /// `[lanes]`, which every table depends on.
    lanes: serde_json::Value,
    data: String,
    data_blake3: String,
    tables: usize,
    /// The disruption series' days, likewise.
    days_data: String,
    days_blake3: String,
    days: usize,
    /// The generation the keeping night wrote (the input it read) and its cutoff: a night
    /// reading that same generation takes the kept digests at cutoffs up to both this cutoff
    /// and its newly read rows as its own (`Kept::holds_until`). Absent in files written
    /// before it, and by a night without a generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    generation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cutoff: Option<i64>,
}

fn lanes_key(cfg: &LaneConfig) -> serde_json::Value {
    serde_json::to_value(cfg).unwrap_or(serde_json::Value::Null)
}

/// The kept tables in `OUT/state/`: `Ok(None)` when there are none yet, `Err(why)` when there
/// are some that cannot be used (every table is then computed, and the night warns).
///
/// `info` is the night's state. When it read the generation the tables were kept with, the
/// rows it knows before a cutoff are the keeping night's, unless a row it decoded anew is dated
/// before that cutoff (as `state::digest` reasons): the kept digests hold up to the earlier of
/// the keeping night's cutoff and tonight's first new row.
pub fn load(out: &Path, cfg: &LaneConfig, info: &StateInfo) -> std::result::Result<Option<Kept>, String> {
    let dir = out.join(super::DIR);
    let Some(ix) = record::read(out, INDEX, FORMAT, |ix: &Index| &ix.header)? else { return Ok(None) };
    if ix.lanes != lanes_key(cfg) {
        return Err(format!("state/{INDEX} was computed with other [lanes] settings"));
    }
    for name in [&ix.data, &ix.days_data] {
        if !valid_data_name(name) {
            return Err(format!("state/{INDEX} names {name:?}, not a kept-tables file"));
        }
    }
    let read = |name: &str, blake3: &str| {
        crate::io::read_checked(&dir.join(name), blake3).map_err(|e| format!("state/{name} {e}"))
    };
    let mut kept = reuse::from_frame(&read(&ix.data, &ix.data_blake3)?)
        .map_err(|e| format!("state/{} is corrupt: {e}", ix.data))?;
    reuse::days_from_frame(&read(&ix.days_data, &ix.days_blake3)?, &mut kept)
        .map_err(|e| format!("state/{} is corrupt: {e}", ix.days_data))?;
    if kept.tables.len() != ix.tables || kept.days.len() != ix.days {
        return Err(format!(
            "state/{INDEX} lists {} tables and {} days, its files hold {} and {}",
            ix.tables,
            ix.days,
            kept.tables.len(),
            kept.days.len()
        ));
    }
    kept.holds_until = match (&ix.generation, ix.cutoff) {
        (Some(g), Some(c)) if info.used.as_ref() == Some(g) => Some(c.min(info.new_rows_from)),
        _ => None,
    };
    Ok(Some(kept))
}

fn valid_data_name(n: &str) -> bool {
    [PREFIX, DAYS_PREFIX].iter().any(|p| {
        n.strip_prefix(p)
            .and_then(|r| r.strip_suffix(".parquet"))
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// Replaces the kept tables and days: the data files (named by their content), then the index,
/// each through a rename; then data files the index does not name are removed. `generation`:
/// the one the night wrote (and published), with the night's `cutoff`.
pub fn write(
    out: &Path,
    cfg: &LaneConfig,
    tables: &[KeptTable],
    days: &[KeptDay],
    generation: Option<&str>,
    cutoff: i64,
) -> Result<()> {
    let dir = out.join(super::DIR);
    crate::io::create_dir_all(&dir)?;
    let write_data = |prefix: &str, mut df: polars::prelude::DataFrame| -> Result<(String, String)> {
        let bytes = crate::io::compact_bytes(&dir, &mut df)?;
        let blake3 = blake3::hash(&bytes).to_hex().to_string();
        let name = format!("{prefix}{}.parquet", &blake3[..16]);
        crate::io::write_atomic(&dir.join(&name), &bytes)?;
        Ok((name, blake3))
    };
    let (data, data_blake3) = write_data(PREFIX, reuse::to_frame(tables)?)?;
    let (days_data, days_blake3) = write_data(DAYS_PREFIX, reuse::days_to_frame(days)?)?;
    crate::fault::point("state:tables");
    let ix = Index {
        header: Header::new(FORMAT),
        lanes: lanes_key(cfg),
        data: data.clone(),
        data_blake3,
        tables: tables.len(),
        days_data: days_data.clone(),
        days_blake3,
        days: days.len(),
        generation: generation.map(str::to_string),
        cutoff: generation.map(|_| cutoff),
    };
    let mut json = serde_json::to_vec_pretty(&ix).map_err(crate::error::Error::internal)?;
    json.push(b'\n');
    crate::io::write_atomic(&dir.join(INDEX), &json)?;
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if valid_data_name(&name) && name != data && name != days_data {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}
