//! A night under a memory budget (`input.max_memory_gb`, README "Memory"). An input whose
//! estimated need is above the budget is not refused: the night runs out of core, split into
//! parts by the shard key (`shard`: destination × service, so a lane and its fallback group are
//! never split), each part validated and then computed in rounds (`rounds`) through files in
//! the run's staging folder, one part in memory at a time; the run folder is written from the
//! merged rounds. It is the sharded night of a cluster, on one machine, one shard after
//! another, and its outputs are the in-memory run's, byte for byte (tests/integration/budget.rs).
//!
//! This module only plans: how many parts, from the input's size and how its shipments spread
//! over the destination × service groups (the parts are as uneven as the groups).

use crate::error::{Error, Result};
use crate::shard::shard_of;

/// A whole night's peak memory from its input's rows, with headroom: measured (BENCHMARKS.md,
/// "every 10M night within 4 GiB") at 0.72 GB for 1M shipments and 9.2M events and 4.17 GB for
/// 10M and 92M, which this puts at 0.91 and 6.43 GB (28 % and 54 % above). The base is what a
/// run holds whatever its input (the model candidates, the pools, the binary).
const NIGHT_BASE: f64 = 0.3e9;
const NIGHT_PER_EVENT: f64 = 45.0;
const NIGHT_PER_SHIPMENT: f64 = 200.0;

/// What the largest process of a part holds: a base, every shipment of the night (each part's
/// validation keeps the other parts' ids), and the part's own rows.
const PART_BASE: f64 = 0.15e9;
const PART_PER_NIGHT_SHIPMENT: f64 = 60.0;
const PART_PER_EVENT: f64 = 45.0;
const PART_PER_SHIPMENT: f64 = 200.0;

/// What the steps that hold the whole night's exchange need however many parts there are (the
/// merges of the training sample's rounds, the run folder written from the merged rounds):
/// the floor of any budget.
const NIGHT_FLOOR_BASE: f64 = 0.1e9;
const NIGHT_FLOOR_PER_SHIPMENT: f64 = 210.0;

// Against the largest process measured (BENCHMARKS.md, "a night under a memory budget",
// default config): at 1M shipments and 3, 5 and 11 parts 426, 366 and 300 MB, estimated 449,
// 397 and 310 (the floor); at 10M and 4 parts 2,196 MB, estimated 2,790.

/// The share of the budget the plan fills: the rest is headroom for what varies between runs
/// of the same night (how the threads' work interleaves, the allocator): in the tests, under
/// load, the same night's largest step varied by tens of MB around 300.
const PLANNED_SHARE: f64 = 0.85;

/// At most this many parts: past it the per-part base and floor dominate, and a budget that
/// needs more is too small for the input.
pub const MAX_PARTS: u32 = 256;

/// What the night needs in memory, in GB, run whole.
pub fn night_need_gb(shipments: u64, events: u64) -> f64 {
    (NIGHT_BASE + shipments as f64 * NIGHT_PER_SHIPMENT + events as f64 * NIGHT_PER_EVENT) / 1e9
}

/// What the largest process of an out-of-core night needs, in GB, when its largest part has
/// this many of the night's shipments (its events taken in proportion): the part's steps or
/// the night's floor, whichever is more.
fn part_need_gb(night_shipments: u64, night_events: u64, part_shipments: u64) -> f64 {
    let part_events = night_events as f64 * part_shipments as f64 / (night_shipments.max(1) as f64);
    let part = PART_BASE
        + night_shipments as f64 * PART_PER_NIGHT_SHIPMENT
        + part_shipments as f64 * PART_PER_SHIPMENT
        + part_events * PART_PER_EVENT;
    let floor = NIGHT_FLOOR_BASE + night_shipments as f64 * NIGHT_FLOOR_PER_SHIPMENT;
    part.max(floor) / 1e9
}

/// Refuses (a config error, exit 78), from the footers' row counts alone, a budget below what
/// an out-of-core night needs however many parts it has: each part's validation keeps every
/// shipment id of the night, and the merges hold the night's exchange.
pub fn check_floor(night_shipments: u64, night_events: u64, budget_gb: f64) -> Result<()> {
    let floor = part_need_gb(night_shipments, night_events, 0);
    if floor > budget_gb * PLANNED_SHARE {
        return Err(Error::Config(format!(
            "input.max_memory_gb = {budget_gb} is below what any part of this night needs however it is split: \
             about {floor:.2} GB for {night_shipments} shipments, and parts are planned for {:.0} % of the budget; \
             raise the limit or keep less history (README, Memory budget)",
            PLANNED_SHARE * 100.0
        )));
    }
    Ok(())
}

/// How an out-of-core night is split.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The number of parts (shards, run one after another).
    pub parts: u32,
    /// The largest part's shipments, and what it is estimated to need, in GB.
    pub largest: u64,
    pub largest_gb: f64,
}

/// The fewest parts whose largest fits `PLANNED_SHARE` of `budget_gb`, given the night's shipments per
/// destination × service group (`groups`, in any order) and its events. Refuses (a config
/// error, exit 78) a budget below the floor every part needs, or below the largest group's
/// need alone: no split can meet it, and the message says what would.
pub fn plan(groups: &[(String, String, u64)], night_events: u64, budget_gb: f64) -> Result<Plan> {
    let night_ships: u64 = groups.iter().map(|g| g.2).sum();
    let fill = budget_gb * PLANNED_SHARE;
    let need = |ships: u64| part_need_gb(night_ships, night_events, ships);
    let biggest = groups.iter().map(|g| g.2).max().unwrap_or(0);
    if need(biggest) > fill {
        let g = groups.iter().find(|g| g.2 == biggest).map(|g| format!(" ({} × {})", g.0, g.1)).unwrap_or_default();
        return Err(Error::Config(format!(
            "input.max_memory_gb = {budget_gb} is below what one part of this night needs however it is split: \
             about {:.2} GB for the largest destination × service group{g}, {biggest} of {night_ships} shipments, \
             and parts are planned for {:.0} % of the budget; raise the limit or keep less history (README, Memory budget)",
            need(biggest),
            PLANNED_SHARE * 100.0
        )));
    }
    for parts in 2..=MAX_PARTS {
        let mut sizes = vec![0u64; parts as usize];
        for (d, s, n) in groups {
            sizes[shard_of(d, s, parts) as usize] += n;
        }
        let largest = sizes.into_iter().max().unwrap_or(0);
        if need(largest) <= fill {
            return Ok(Plan { parts, largest, largest_gb: need(largest) });
        }
    }
    Err(Error::Config(format!(
        "input.max_memory_gb = {budget_gb} is too small for this night: {MAX_PARTS} parts would not fit it; \
         raise the limit or keep less history (README, Memory budget)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(n: usize, each: u64) -> Vec<(String, String, u64)> {
        (0..n).map(|i| (format!("D{i}"), "standard".to_string(), each)).collect()
    }

    #[test]
    fn a_larger_night_or_a_smaller_budget_takes_more_parts() {
        let g = groups(40, 25_000);
        let roomy = plan(&g, 9_000_000, 0.8).unwrap();
        let tight = plan(&g, 9_000_000, 0.45).unwrap();
        assert!(tight.parts > roomy.parts, "{roomy:?} {tight:?}");
        // Planned for a share of the budget: the rest is headroom.
        assert!(tight.largest_gb <= 0.45 * PLANNED_SHARE && roomy.largest_gb <= 0.8 * PLANNED_SHARE);
        let bigger = plan(&groups(40, 50_000), 18_000_000, 0.8).unwrap();
        assert!(bigger.parts > roomy.parts, "{roomy:?} {bigger:?}");
    }

    #[test]
    fn the_fewest_parts_that_fit_are_chosen() {
        let g = groups(40, 25_000);
        let p = plan(&g, 9_000_000, 0.5).unwrap();
        assert!(p.parts > 2, "{p:?}");
        let mut sizes = vec![0u64; (p.parts - 1) as usize];
        for (d, s, n) in &g {
            sizes[shard_of(d, s, p.parts - 1) as usize] += n;
        }
        assert!(part_need_gb(1_000_000, 9_000_000, *sizes.iter().max().unwrap()) > 0.5 * PLANNED_SHARE, "{p:?}");
    }

    #[test]
    fn a_budget_no_split_meets_is_refused_naming_the_group() {
        let mut g = groups(40, 1_000);
        g.push(("DE".into(), "express".into(), 2_000_000));
        let e = plan(&g, 20_000_000, 0.5).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");
        assert!(e.to_string().contains("DE × express"), "{e}");
        // Below the floor (0.31 GB at 1M shipments) with its headroom, and above it.
        let e = check_floor(1_000_000, 9_000_000, 0.35).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");
        check_floor(1_000_000, 9_000_000, 0.4).unwrap();
    }
}
