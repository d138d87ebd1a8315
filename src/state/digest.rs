//! The digest of the input known before the training night's cutoff (`prepare::digest`, by which
//! a night decides whether the kept model still holds), kept with the generation it was taken
//! over: `OUT/state/digest.json`. A row is known before a cutoff only if it is dated before it (a
//! shipment created, an event scanned), so a night that reads that same generation, and whose
//! newly read files hold no row dated before the cutoff, knows exactly what it knew before the
//! cutoff: the digest is the kept one, and the pass over every shipment and event that computes
//! it (0.25 s at 2M shipments) is skipped. Anything else computes it, as before.
//!
//! Like the kept lane tables and model it only saves work: written after the generation is
//! published, so it can only name a generation that was current; a file that does not parse,
//! is of another lanewatch, or names another generation or cutoff is not used (no warning: the
//! digest is computed, which gives the same night).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::calendar::Night;
use crate::error::{Error, Result};
use crate::features::reuse::Digest;

use super::StateInfo;
use super::record::{self, Header};

/// Layout version of `digest.json`; another value is not used.
const FORMAT: u32 = 1;
const FILE: &str = "digest.json";

#[derive(Debug, Serialize, Deserialize)]
struct Kept {
    #[serde(flatten)]
    header: Header,
    /// The generation the digest was taken over (the input it read, and the `[input]` settings
    /// that shaped it: a generation is only used under the settings it was written with).
    generation: String,
    training_night: chrono::NaiveDate,
    /// The training night's cutoff, in microseconds.
    cutoff: i64,
    digest: Digest,
}

/// The digest at `training`'s cutoff of the input a night read through the state (`info`), when
/// the kept one still holds for it.
pub fn load(out: &Path, info: &StateInfo, training: Night) -> Option<Digest> {
    let used = info.used.as_deref()?;
    let k = record::read(out, FILE, FORMAT, |k: &Kept| &k.header).ok()??;
    let holds = k.generation == used
        && k.training_night == training.as_of()
        && k.cutoff == training.cutoff()
        && info.new_rows_from >= k.cutoff;
    holds.then_some(k.digest)
}

/// Keeps the digest a night took at `training`'s cutoff over the generation it wrote
/// (`written`), atomically.
pub fn write(out: &Path, written: &str, training: Night, digest: Digest) -> Result<()> {
    let k = Kept {
        header: Header::new(FORMAT),
        generation: written.to_string(),
        training_night: training.as_of(),
        cutoff: training.cutoff(),
        digest,
    };
    let json = record::seal(serde_json::to_vec(&k).map_err(Error::internal)?);
    crate::io::write_atomic(&out.join(super::DIR).join(FILE), &json)
}
