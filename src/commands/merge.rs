//! `lanewatch merge`: the night of a sharded run, from the partials `run --shard i/N` wrote for
//! each shard, written like `run` writes it (`OUT/as_of=DATE/`, atomically) and equal to it.

use std::path::{Path, PathBuf};

use super::run::{RunSummary, Source, night_run};
use crate::error::Result;
use crate::night::Timings;
use crate::rounds::{self, Round};
use crate::settings::Settings;

/// Merges the `shards` partials in `dir` and finishes the night: features, model, scores,
/// alerts, report. Refuses (exit 65, nothing written) a missing, duplicate or mismatched partial.
pub fn merge(s: &Settings, dir: &Path, shards: u32) -> Result<RunSummary> {
    night_run(s, Source::Partials { dir, shards })
}

/// `merge --rounds`: the night's run folder from the merged rounds (`rounds::outputs`), the
/// shards' data not read. Refuses (exit 65, nothing written) a missing or stale round.
pub fn merge_rounds(s: &Settings, dir: &Path, shards: u32) -> Result<RunSummary> {
    super::run::rounds_run(s, dir, shards)
}

/// `merge --round NAME`: one round's merge of the shards' shares (see `rounds`), timed.
pub fn merge_round(s: &Settings, dir: &Path, shards: u32, round: Round) -> Result<PathBuf> {
    Timings::default().time(&format!("merge {round}"), || rounds::merge_round(s, dir, shards, round), |_| 0)
}
