//! Training once for a night whose features the parts of the network computed
//! (`features::parted`): the model reads a sample of the training rows, and each sample is the
//! first rows of its kind in the order of a seeded hash, so each part offers only its own first
//! rows of each kind (with the whole network's sample sizes) and its validation rows; their
//! union holds every row the whole network's sample takes. In rounds:
//!
//! 1. the training rows' shipments by day of resolution (`resolution_counts_to`, added): the
//!    validation window;
//! 2. the split's counts (`SplitCounts`, added): the sample sizes and the validation rows'
//!    keep rate;
//! 3. each part's offer (`offer`): its candidate rows with their features, history merged from
//!    every part's shares;
//!
//! then `train_on` the union, in the whole network's row order (shipment id, then time). The
//! model equals the whole network's, byte for byte (tested in `tests/integration/model.rs`).

use super::{
    EARLY_STOP_ROWS, Pool, RULE_ROWS, SavedModel, SplitCounts, TrainFrame, ValidParams, class_sample_sizes,
    first_by_key, lane_windows, resolution_counts_to, resolution_last, train_on, validation_window,
};
use crate::error::{Error, Result};
use crate::features::{FeatureSet, N_FEATURES, Rows};
use crate::sampling::{hash_str, unit};
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
    let ids = fs.prep.shipments.column("shipment_id")?.str()?.clone();
    let id = |r: usize| ids.get(rows.ship[r] as usize).unwrap_or("");
    let holdout_start = fs.cutoff() - valid_days as i64 * MICROS_PER_DAY;
    let es_start = holdout_start - valid_days as i64 * MICROS_PER_DAY;
    let (tr, mut va): (Vec<u32>, Vec<u32>) =
        (0..rows.len() as u32).partition(|&r| rows.resolved_at[r as usize] < holdout_start);
    if split.n_valid > p.max_valid_rows {
        let keep = p.max_valid_rows as f64 / split.n_valid as f64;
        va.retain(|&r| unit(hash_str(p.seed ^ 0x7a11d, id(r as usize))) < keep);
    }
    let (take_pos, take_neg) = class_sample_sizes(split, p);
    let row_key = |r: usize| hash_str(p.seed ^ rows.t[r] as u64, id(r));
    let picks = first_by_key(
        &tr,
        row_key,
        [
            (RULE_ROWS, &|_| true),
            (take_pos, &|r| rows.label[r]),
            (take_neg, &|r| !rows.label[r]),
            (EARLY_STOP_ROWS, &|r| rows.resolved_at[r] >= es_start),
        ],
    );
    let mut offered: Vec<usize> = picks.into_iter().flatten().chain(va.into_iter().map(|r| r as usize)).collect();
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
        id: offered.iter().map(|&r| id(r).to_string()).collect(),
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
