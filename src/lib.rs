//! lanewatch: the nightly early-warning job for late cross-border parcels.
//!
//! Modules depend only on modules below them in this list (data flows down it):
//!
//! - `commands`: one module per command, short wiring of the layers below;
//! - `output` (the run folder, seller files, manifest, backtest files) and `report` (HTML);
//! - `night`: what one night computes: validate → features → model → alerts;
//! - `state`: the decoded input kept between nights in `OUT/state/` (a night decodes new files only),
//!   with the lane tables, series days and (on a training schedule) the model kept beside it;
//! - `rounds`: a sharded night's features and model computed by the shards, in rounds of
//!   exchanged shares through the partials folder;
//! - `partials`: a sharded night's per-shard validated input, written by `run --shard` and
//!   merged by `merge`;
//! - `settings`: the config resolved once into every stage's checked parameters;
//! - `evaluate`: scoring nights against later outcomes;
//! - the stages: `alerts` → `model` → `features` → `validate` (with `statuses`, `shard`,
//!   which shard owns a shipment, and `id_map`, the events' shipment lookup) → `ingest`;
//! - beneath all of them: `schema`, `config`, `calendar`, `sampling`, `io`, `memory`, `ahead`,
//!   `progress`, `fault`, `error`.
//!
//! `generate` and `import` write inputs and stand apart.

pub mod advice;
pub mod ahead;
pub mod alerts;
pub mod budget;
pub mod calendar;
pub mod codec;
pub mod commands;
pub mod config;
pub mod error;
pub mod evaluate;
pub mod fault;
pub mod features;
pub mod generate;
pub mod id_map;
pub mod import;
pub mod ingest;
pub mod io;
pub mod memory;
pub mod model;
pub mod night;
pub mod output;
pub mod partials;
pub mod progress;
pub mod report;
pub mod rounds;
pub mod sampling;
pub mod schema;
pub mod settings;
pub mod shard;
pub mod state;
pub mod statuses;
pub mod validate;

pub use error::{Error, Result};

/// The unit tests' reproducible pseudo-random numbers: a 64-bit linear congruential generator
/// (Knuth's MMIX constants), of which `next` gives the high 31 bits.
#[cfg(test)]
pub(crate) struct TestRng(u64);

#[cfg(test)]
impl TestRng {
    pub(crate) fn new(seed: u64) -> TestRng {
        TestRng(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}
