//! `lanewatch merge`: the night of a sharded run, from the partials `run --shard i/N` wrote for
//! each shard, written like `run` writes it (`OUT/as_of=DATE/`, atomically) and equal to it.

use std::path::Path;

use super::run::{RunSummary, Source, night_run};
use crate::error::Result;
use crate::settings::Settings;

/// Merges the `shards` partials in `dir` and finishes the night: features, model, scores,
/// alerts, report. Refuses (exit 65, nothing written) a missing, duplicate or mismatched partial.
pub fn merge(s: &Settings, dir: &Path, shards: u32) -> Result<RunSummary> {
    night_run(s, Source::Partials { dir, shards })
}
