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

use super::record::{self, Header};

/// Layout version of `model.json`; another value is not used.
const FORMAT: u32 = 1;
const FILE: &str = "model.json";

#[derive(Debug, Serialize, Deserialize)]
struct Kept {
    #[serde(flatten)]
    header: Header,
    /// `Config::digest`: every setting that can change a result.
    config: String,
    training_night: chrono::NaiveDate,
    digest: Digest,
    model: SavedModel,
}

/// The kept model: `Ok(None)` when there is none, `Err(why)` when there is one that cannot be
/// used (the night then trains, and says why in a warning).
pub fn load(out: &Path, cfg: &Config) -> std::result::Result<Option<TrainedOn>, String> {
    let Some(k) = record::read(out, FILE, FORMAT, |k: &Kept| &k.header)? else { return Ok(None) };
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
        #[serde(flatten)]
        header: Header,
        config: String,
        training_night: chrono::NaiveDate,
        digest: Digest,
        model: &'a SavedModel,
    }
    let k = KeptRef {
        header: Header::new(FORMAT),
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
