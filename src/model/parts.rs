//! Training once for a night whose features the parts of the network computed
//! (`features::parted`): the model reads a sample of the training rows, and each sample is the
//! first rows of its kind in the order of a seeded hash, so each part offers only its own first
//! rows of each kind (with the whole network's sample sizes) and its validation rows; their
//! union holds every row the whole network's sample takes. In rounds:
//!
//! 1. the training rows' shipments by day of resolution (`resolution_counts_to`, added): the
//!    validation window. Every part counts up to the same day, the largest of the parts'
//!    `resolution_last` (a round of its own: one number per part), so the counts add bucket
//!    for bucket;
//! 2. the split's counts (`SplitCounts`, added): the sample sizes and the validation rows'
//!    keep rate;
//! 3. each part's offer (`offer`): its candidate rows with their features, history merged from
//!    every part's shares;
//!
//! then `train_on` the union, in the whole network's row order (shipment id, then time). The
//! model equals the whole network's, byte for byte (tested in `tests/integration/model.rs`).

use super::{
    Drawn, Pool, SavedModel, SplitCounts, TrainFrame, ValidParams, WholePool, draw, lane_windows, resolution_counts_to,
    resolution_last, train_on, validation_window,
};
use crate::error::{Error, Result};
use crate::features::{FeatureSet, N_FEATURES, Rows};
use crate::schema::MICROS_PER_DAY;

/// Rows a part offers, with what training reads of them.
#[derive(Debug, Clone, Default)]
pub struct Offer {
    pub id: Vec<String>,
    pub t: Vec<i64>,
    pub label: Vec<bool>,
    pub resolved_at: Vec<i64>,
    /// Row-major features.
    pub x: Vec<f64>,
}

impl Pool for Offer {
    fn len(&self) -> usize {
        self.id.len()
    }
    fn id(&self, r: usize) -> &str {
        &self.id[r]
    }
    fn t(&self, r: usize) -> i64 {
        self.t[r]
    }
    fn label(&self, r: usize) -> bool {
        self.label[r]
    }
    fn resolved_at(&self, r: usize) -> i64 {
        self.resolved_at[r]
    }
    fn features(&self, idx: &[usize]) -> Vec<f64> {
        idx.iter().flat_map(|&r| self.x[r * N_FEATURES..(r + 1) * N_FEATURES].iter().copied()).collect()
    }
}

/// Round 3: part `k`'s offer: its first training rows of each kind the sample draws (rule
/// baseline, late, on-time, early stopping) in the order of the seeded hash, with the whole
/// network's sample sizes, and its validation rows as the keep rate leaves them, with their
/// features (their history from every part's shares).
pub fn offer(sets: &[FeatureSet], k: usize, split: &SplitCounts, valid_days: u32, p: &ValidParams) -> Result<Offer> {
    let fs = &sets[k];
    let rows = &fs.train;
    let pool = WholePool { fs, ids: fs.prep.shipments.column("shipment_id")?.str()?.clone() };
    let Drawn { va, samples } = draw(&pool, fs.cutoff(), valid_days, split, p);
    let mut offered: Vec<usize> = samples.into_iter().flatten().chain(va).collect();
    offered.sort_unstable();
    offered.dedup();
    let mut subset = Rows {
        ship: offered.iter().map(|&r| rows.ship[r]).collect(),
        t: offered.iter().map(|&r| rows.t[r]).collect(),
        ..Rows::default()
    };
    let (queries, which) = fs.history_queries(&subset);
    let shares: Vec<_> = sets.iter().map(|s| s.history_shares(&queries)).collect();
    fs.fill_parted(&mut subset, &which, &shares)?;
    Ok(Offer {
        id: offered.iter().map(|&r| pool.id(r).to_string()).collect(),
        t: subset.t,
        label: offered.iter().map(|&r| rows.label[r]).collect(),
        resolved_at: offered.iter().map(|&r| rows.resolved_at[r]).collect(),
        x: subset.x,
    })
}

/// The model of a night whose parts computed its features (`features::parted::build_parts`):
/// every round over `sets` held in one process, then `train_on` the parts' offers.
pub fn train_parts(sets: &[FeatureSet], p: &ValidParams) -> Result<SavedModel> {
    let first = sets.first().ok_or_else(|| Error::internal("model: a night of no parts"))?;
    let last = sets.iter().filter_map(resolution_last).max().unwrap_or(1);
    let mut counts = resolution_counts_to(first, last);
    for s in &sets[1..] {
        counts.merge(&resolution_counts_to(s, last));
    }
    let valid_days = validation_window(&counts, p);
    let holdout_start = first.cutoff() - valid_days as i64 * MICROS_PER_DAY;
    let mut split = SplitCounts::of(first, holdout_start);
    for s in &sets[1..] {
        split.add(&SplitCounts::of(s, holdout_start));
    }
    let offers: Vec<Offer> = (0..sets.len()).map(|k| offer(sets, k, &split, valid_days, p)).collect::<Result<_>>()?;
    let pool = union(offers);
    let frame = TrainFrame {
        night: first.night(),
        train_window_days: first.train_window_days,
        lanes: lane_windows(sets.iter().flat_map(|s| s.lanes().iter().map(|l| l.window_days))),
        valid_days,
        split,
    };
    train_on(&pool, &frame, p)
}

/// The parts' offers as one pool in the whole network's row order: by shipment id, then time
/// (a shipment's rows are on one part, in time order).
fn union(offers: Vec<Offer>) -> Offer {
    let mut at: Vec<(usize, usize)> =
        offers.iter().enumerate().flat_map(|(k, o)| (0..o.id.len()).map(move |r| (k, r))).collect();
    at.sort_by(|a, b| {
        let (x, y) = (&offers[a.0], &offers[b.0]);
        x.id[a.1].cmp(&y.id[b.1]).then(x.t[a.1].cmp(&y.t[b.1])).then(a.cmp(b))
    });
    let mut pool = Offer::default();
    for (k, r) in at {
        let o = &offers[k];
        pool.id.push(o.id[r].clone());
        pool.t.push(o.t[r]);
        pool.label.push(o.label[r]);
        pool.resolved_at.push(o.resolved_at[r]);
        pool.x.extend_from_slice(&o.x[r * N_FEATURES..(r + 1) * N_FEATURES]);
    }
    pool
}
