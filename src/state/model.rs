//! The model kept between nights when it is trained on a schedule (`model.retrain_every_days`
//! above 1): `OUT/state/model.json`, the model of the latest training night with the digest of
//! the input known before that night's cutoff it was trained from. A night between training
//! nights scores with it when it is its training night's and its own input gives the same digest
//! there; otherwise (no kept model, another night's, late rows that change what was known
//! before the cutoff, another config or lanewatch version, a damaged file) the night trains on
//! its training night itself, which gives the same model a kept one would have been. Like the
//! kept lane tables it only saves work: written after the run folder is committed, and never
//! part of a generation.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::calendar::Night;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::features::reuse::Digest;
use crate::model::{SavedModel, TrainedOn};
use crate::night::TOOL_VERSION;

/// Layout version of `model.json`; another value is not used.
const FORMAT: u32 = 1;
const FILE: &str = "model.json";

#[derive(Debug, Serialize, Deserialize)]
struct Kept {
    format: u32,
    tool_version: String,
    /// `Config::digest`: every setting that can change a result.
    config: String,
    training_night: chrono::NaiveDate,
    digest: Digest,
    model: SavedModel,
}

/// The kept model: `Ok(None)` when there is none, `Err(why)` when there is one that cannot be
/// used (the night then trains, and says why in a warning).
pub fn load(out: &Path, cfg: &Config) -> std::result::Result<Option<TrainedOn>, String> {
    let path = out.join(super::DIR).join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read state/{FILE}: {e}")),
    };
    let k: Kept = serde_json::from_slice(&bytes)
        .map_err(|e| format!("state/{FILE} is corrupt: {}", crate::error::one_line(e.to_string())))?;
    if k.format != FORMAT {
        return Err(format!("state/{FILE} has layout {}, this lanewatch reads {FORMAT}", k.format));
    }
    if k.tool_version != TOOL_VERSION {
        return Err(format!("state/{FILE} was written by lanewatch {}, this is {TOOL_VERSION}", k.tool_version));
    }
    if k.config != cfg.digest() {
        return Err(format!("state/{FILE} was trained with other settings"));
    }
    if k.model.as_of != k.training_night.to_string() {
        return Err(format!("state/{FILE} holds a model of {}, not of {}", k.model.as_of, k.training_night));
    }
    Ok(Some(TrainedOn { night: Night::new(k.training_night), digest: k.digest, model: k.model }))
}

/// Replaces the kept model, atomically.
pub fn write(out: &Path, cfg: &Config, trained: &TrainedOn) -> Result<()> {
    let dir = out.join(super::DIR);
    crate::io::create_dir_all(&dir)?;
    // `Kept`'s fields, borrowing the model rather than copying it.
    #[derive(Serialize)]
    struct KeptRef<'a> {
        format: u32,
        tool_version: &'a str,
        config: String,
        training_night: chrono::NaiveDate,
        digest: Digest,
        model: &'a SavedModel,
    }
    let k = KeptRef {
        format: FORMAT,
        tool_version: TOOL_VERSION,
        config: cfg.digest(),
        training_night: trained.night.as_of(),
        digest: trained.digest,
        model: &trained.model,
    };
    let mut json = serde_json::to_vec(&k).map_err(Error::internal)?;
    json.push(b'\n');
    crate::fault::point("state:model");
    crate::io::write_atomic(&dir.join(FILE), &json)
}
