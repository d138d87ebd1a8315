//! The model and advice kept between nights when the model is trained on a schedule
//! (`model.retrain_every_days` above 1): `OUT/state/model.json`, the model of the latest
//! training night with the digest of the input known before that night's cutoff it was trained
//! from, and the three advice tables that night computed, a file each. A night between training
//! nights scores with the model and publishes the advice when they are its training night's and
//! its own input gives the same digest there; otherwise (none kept, another night's, late rows
//! that change what was known before the cutoff, another config or lanewatch version, a damaged
//! file) the night computes its training night's features itself, which give the same model and
//! advice the kept ones would have been. Like the kept lane tables they only save work: written
//! after the run folder is committed, and never part of a generation.
//!
//! ```text
//! OUT/state/model.json                      format, tool version, config digest, training night,
//!                                           digest, model, and the advice files below with their BLAKE3
//! OUT/state/advice-<fingerprint>.parquet    one advice table (service, promise, seller),
//!                                           encoded as the run folder publishes it
//! ```
//!
//! A night that takes the kept advice publishes those files as they are, so `model.json` also
//! records the writer that encoded them (`io::output_writer_tag`); under another writer they are
//! not used.
//!
//! The advice files are named by a fingerprint of their bytes and written before `model.json`
//! names them: a night killed in between leaves the record before it, whose files are still there.

use std::path::Path;
use std::sync::Arc;

use polars::prelude::{ParquetReader, SerReader};
use serde::{Deserialize, Serialize};

use crate::advice::Advice;
use crate::calendar::Night;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::features::reuse::Digest;
use crate::model::{SavedModel, TrainedOn};
use crate::schema::outputs::{PROMISE_ADVICE, SELLER_ADVICE, SERVICE_ADVICE};

use super::record::{self, Header};

/// Layout version of `model.json`; another value is not used. Layout 3: the advice files are
/// the run folder's (zstd, statistics), published as they are; layout 2's were compact (LZ4).
/// Layout 4: a model trained since labels a parcel delivered after a loss or return late
/// (`timeline::outcome`).
const FORMAT: u32 = 4;
const FILE: &str = "model.json";
const ADVICE_PREFIX: &str = "advice-";

/// What a training night hands the nights of its schedule: its model, with the digest it was
/// trained from, and its advice.
#[derive(Debug, Clone)]
pub struct KeptTraining {
    pub on: TrainedOn,
    pub advice: KeptAdvice,
}

/// Kept advice: the tables, or the checked bytes of their files, decoded when the night
/// publishes them (`read`). A night's features peak with what it holds: the 10M night's decoded
/// seller advice, held through them, raised its peak by 140–240 MB; its file's bytes were 42 MB
/// in layout 2's compact form, and are a little over half that in the run folder's (23.9 MB;
/// at 1M shipments 9.3 → 5.0 MB).
#[derive(Debug, Clone)]
pub enum KeptAdvice {
    Tables(Advice),
    Files(Arc<[Vec<u8>; 3]>),
}

impl KeptAdvice {
    /// The three tables, as of `as_of` (the training night they were kept with). A file whose
    /// bytes matched its BLAKE3 and whose columns were checked (`load`) but that does not decode,
    /// or holds rows of another night, was written so: an internal error.
    pub fn read(&self, as_of: Night) -> Result<Advice> {
        match self {
            KeptAdvice::Tables(a) => Ok(a.clone()),
            // Published as they are: the files the training night's run folder wrote.
            KeptAdvice::Files(files) => Advice::from_files(as_of.as_of(), Arc::clone(files))
                .map_err(|e| Error::internal(format!("a kept advice file does not decode: {e}"))),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Kept {
    #[serde(flatten)]
    header: Header,
    /// `Config::digest`: every setting that can change a result.
    config: String,
    training_night: chrono::NaiveDate,
    digest: Digest,
    model: SavedModel,
    /// The service, promise and seller advice, in that order, as the run folder publishes them,
    /// and the writer that encoded them (`io::output_writer_tag`).
    advice: [AdviceFile; 3],
    writer: String,
}

/// One kept advice table: its file and the BLAKE3 of the file's bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AdviceFile {
    data: String,
    blake3: String,
}

/// The columns of each kept advice table, in `Kept::advice`'s order.
const TABLES: [&[&str]; 3] = [SERVICE_ADVICE, PROMISE_ADVICE, SELLER_ADVICE];

/// The kept model and advice: `Ok(None)` when there is none, `Err(why)` when there is one that
/// cannot be used (the night then trains, and says why in a warning).
pub fn load(out: &Path, cfg: &Config) -> std::result::Result<Option<KeptTraining>, String> {
    let Some(k) = record::read(out, FILE, FORMAT, |k: &Kept| &k.header)? else { return Ok(None) };
    if k.config != cfg.digest() {
        return Err(format!("state/{FILE} was trained with other settings"));
    }
    // The tool version is the crate's and does not move with every change; the feature
    // schema does, and a model of other features would score tonight's rows wrongly.
    if k.model.feature_schema_version != crate::features::FEATURE_SCHEMA_VERSION {
        return Err(format!(
            "state/{FILE} holds a model of feature schema version {}, this lanewatch computes {}",
            k.model.feature_schema_version,
            crate::features::FEATURE_SCHEMA_VERSION
        ));
    }
    if k.model.as_of != k.training_night.to_string() {
        return Err(format!("state/{FILE} holds a model of {}, not of {}", k.model.as_of, k.training_night));
    }
    // Published as they are: only when this lanewatch would encode the tables so.
    if k.writer != crate::io::output_writer_tag()? {
        let writer = crate::error::printable(&k.writer);
        return Err(format!("state/{FILE} holds advice files of another Parquet writer ({writer})"));
    }
    let dir = out.join(super::DIR);
    // Checked now (bytes, and columns from the footer), decoded when published.
    let read = |f: &AdviceFile, columns: &[&str]| -> std::result::Result<Vec<u8>, String> {
        if !valid_advice_name(&f.data) {
            return Err(format!("state/{FILE} names {:?}, not a kept advice file", f.data));
        }
        let bytes =
            crate::io::checked_bytes(&dir.join(&f.data), &f.blake3).map_err(|e| format!("state/{} {e}", f.data))?;
        let schema = ParquetReader::new(std::io::Cursor::new(bytes.as_slice()))
            .schema()
            .map_err(|e| format!("state/{} is corrupt: {}", f.data, crate::error::one_line(e.to_string())))?;
        if !schema.iter_names().map(|n| n.as_str()).eq(columns.iter().copied()) {
            return Err(format!("state/{} does not hold the advice table state/{FILE} lists it for", f.data));
        }
        Ok(bytes)
    };
    let [service, promise, sellers] = &k.advice;
    let files = [read(service, TABLES[0])?, read(promise, TABLES[1])?, read(sellers, TABLES[2])?];
    let on = TrainedOn { night: Night::new(k.training_night), digest: k.digest, model: k.model };
    Ok(Some(KeptTraining { on, advice: KeptAdvice::Files(Arc::new(files)) }))
}

/// Whether `n` is a name `write` gives an advice file.
fn valid_advice_name(n: &str) -> bool {
    super::tables::valid_data_name(n, ADVICE_PREFIX)
}

/// Replaces the kept model and advice: the advice files (synced), then `model.json` through a
/// rename; then advice files it does not name are removed.
pub fn write(out: &Path, cfg: &Config, on: &TrainedOn, a: &Advice) -> Result<()> {
    let dir = out.join(super::DIR);
    crate::io::create_dir_all(&dir)?;
    let mut files = Vec::with_capacity(3);
    // The files as the run folder publishes them (encoded once for both), so that a night
    // publishing them writes these bytes as they are.
    for bytes in a.files()? {
        // Named by its bytes: the file a name is given never changes.
        let blake3 = blake3::hash(&bytes).to_hex().to_string();
        let data = format!("{ADVICE_PREFIX}{}.parquet", &blake3[..16]);
        crate::io::write_renamed(&dir.join(&data), bytes)?;
        files.push(AdviceFile { data, blake3 });
    }
    // The files reach the disk before the record that names them.
    crate::io::sync_filesystem(&dir)?;
    crate::fault::point("state:advice");
    // `Kept`'s fields, borrowing the model rather than copying it.
    #[derive(Serialize)]
    struct KeptRef<'a> {
        #[serde(flatten)]
        header: Header,
        config: String,
        training_night: chrono::NaiveDate,
        digest: Digest,
        model: &'a SavedModel,
        advice: &'a [AdviceFile],
        writer: &'a str,
    }
    let k = KeptRef {
        header: Header::new(FORMAT),
        config: cfg.digest(),
        training_night: on.night.as_of(),
        digest: on.digest,
        model: &on.model,
        advice: &files,
        writer: crate::io::output_writer_tag().map_err(Error::internal)?,
    };
    let json = record::seal(serde_json::to_vec(&k).map_err(Error::internal)?);
    crate::fault::point("state:model");
    crate::io::write_atomic(&dir.join(FILE), &json)?;
    // The record's rename is durable before the advice files it no longer names are removed.
    crate::io::sync_dir(&dir)?;
    let named = files.iter().map(|f| f.data.as_str()).collect();
    super::tables::remove_unnamed(&dir, valid_advice_name, &named);
    Ok(())
}
