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
//! 3. each part's offer (`offer`): its candidate rows' keys and labels, no features;
//! 4. the merge draws the samples from the union of the offers, in the whole network's row
//!    order (shipment id, then time), which takes the rows the whole network's draw takes;
//! 5. each part computes the features of its rows drawn (`features_of`), their history merged
//!    from every part's shares;
//!
//! then `train_on` the drawn rows. The model equals the whole network's, byte for byte (tested
//! in `tests/integration/model.rs`).

use super::{
    Pool, SavedModel, SplitCounts, TrainFrame, ValidParams, WholePool, draw, holdout_start, lane_windows,
    resolution_bound, resolution_counts_to, resolution_last, train_on, validation_window,
};
use crate::error::{Error, Result};
use crate::features::days::DayCounts;
use crate::features::parted::sum;
use crate::features::{FeatureSet, N_FEATURES, Rows};

/// Rows a part offers, with what training reads of them.
#[derive(Debug, Clone, Default)]
pub struct Offer {
    pub id: Vec<String>,
    pub t: Vec<i64>,
    pub label: Vec<bool>,
    pub resolved_at: Vec<i64>,
    /// Each row's seller, for the queries of its history (`FeatureSet::history_queries`).
    pub seller: Vec<String>,
    /// Each row's part and its index among that part's training rows.
    pub from: Vec<(u32, u32)>,
    /// Row-major features, once computed (round 5).
    pub x: Vec<f64>,
}
crate::codec_struct!(Offer { id, t, label, resolved_at, seller, from, x });

impl Offer {
    /// Rows `idx` of this pool, in that order, without features.
    fn take(&self, idx: &[usize]) -> Offer {
        Offer {
            id: idx.iter().map(|&r| self.id[r].clone()).collect(),
            t: idx.iter().map(|&r| self.t[r]).collect(),
            label: idx.iter().map(|&r| self.label[r]).collect(),
            resolved_at: idx.iter().map(|&r| self.resolved_at[r]).collect(),
            seller: idx.iter().map(|&r| self.seller[r].clone()).collect(),
            from: idx.iter().map(|&r| self.from[r]).collect(),
            x: Vec::new(),
        }
    }
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
/// network's sample sizes, and its validation rows as the keep rate leaves them; keys and
/// labels only, no features yet.
pub fn offer(fs: &FeatureSet, split: &SplitCounts, valid_days: u32, p: &ValidParams) -> Result<Offer> {
    let rows = &fs.train;
    let names = fs.prep.seller_names();
    let pool = WholePool { fs, ids: fs.prep.shipments.column("shipment_id")?.str()?.clone() };
    let offered = draw(&pool, fs.cutoff(), valid_days, split, p).rows();
    Ok(Offer {
        id: offered.iter().map(|&r| pool.id(r).to_string()).collect(),
        t: offered.iter().map(|&r| rows.t[r]).collect(),
        label: offered.iter().map(|&r| rows.label[r]).collect(),
        resolved_at: offered.iter().map(|&r| rows.resolved_at[r]).collect(),
        seller: offered.iter().map(|&r| names[fs.prep.seller[rows.ship[r] as usize] as usize].clone()).collect(),
        from: offered.iter().map(|&r| (0, r as u32)).collect(),
        x: Vec::new(),
    })
}

/// Round 5: the features of part `k`'s training rows `rows` (the ones the merge picked from
/// its offer), row-major, their history merged from every part's shares.
pub fn features_of(sets: &[FeatureSet], k: usize, rows: &[u32]) -> Result<Vec<f64>> {
    let fs = &sets[k];
    let mut subset = drawn_rows(fs, rows);
    let queries = fs.history_queries(&subset).0;
    let shares = sets.iter().map(|s| s.history_shares(&queries));
    let windows = crate::features::parted::merge_history(&queries, shares, fs.history.bounds())?;
    fs.fill_queried(&mut subset, &queries, &windows)?;
    Ok(subset.x)
}

/// Part `fs`'s training rows `rows` (indices among them), their features not yet computed.
pub fn drawn_rows(fs: &FeatureSet, rows: &[u32]) -> Rows {
    Rows {
        ship: rows.iter().map(|&r| fs.train.ship[r as usize]).collect(),
        t: rows.iter().map(|&r| fs.train.t[r as usize]).collect(),
        ..Rows::default()
    }
}

/// Round 4: the rows the whole network's draw takes, all among the offered ones, in the
/// union's order (shipment id, then time), without features yet.
pub fn draw_offered(offers: Vec<Offer>, cutoff: i64, valid_days: u32, split: &SplitCounts, p: &ValidParams) -> Offer {
    let offered = union(offers);
    offered.take(&draw(&offered, cutoff, valid_days, split, p).rows())
}

/// Part `k`'s rows among the drawn ones (indices among its training rows), in the pool's order:
/// the order its features come back in (`with_features`).
pub fn rows_of(pool: &Offer, k: usize) -> Vec<u32> {
    pool.from.iter().filter(|f| f.0 as usize == k).map(|f| f.1).collect()
}

/// The distinct (seller, time) pairs the drawn rows' history reads, sorted: what every part
/// shares its windows of (round 5).
pub fn drawn_queries(pool: &Offer) -> Vec<(String, i64)> {
    let mut q: Vec<(String, i64)> = pool.seller.iter().cloned().zip(pool.t.iter().copied()).collect();
    q.sort_unstable();
    q.dedup();
    q
}

/// The drawn pool with each part's features of its rows (`per_part[k]`, row-major, in
/// `rows_of` order).
pub fn with_features(mut pool: Offer, per_part: &[Vec<f64>]) -> Result<Offer> {
    let mut next = vec![0usize; per_part.len()];
    let mut x = Vec::with_capacity(pool.len() * N_FEATURES);
    for &(k, _) in &pool.from {
        let (k, at) = (k as usize, next.get(k as usize).copied());
        let row = at.and_then(|r| per_part[k].get(r * N_FEATURES..(r + 1) * N_FEATURES));
        x.extend_from_slice(row.ok_or_else(|| Error::internal("model: a part sent features of fewer rows"))?);
        next[k] += 1;
    }
    if next.iter().zip(per_part).any(|(&n, f)| n * N_FEATURES != f.len()) {
        return Err(Error::internal("model: a part sent features of more rows than were drawn"));
    }
    pool.x = x;
    Ok(pool)
}

/// The model of a night whose parts computed its features (`features::parted::build_parts`):
/// every round over `sets` held in one process. The merge draws the samples from the union of
/// the parts' offers (round 4), the parts compute the features of the rows drawn (round 5),
/// and the model is trained on those (`train_on`: drawn again from them, it takes the same).
pub fn train_parts(sets: &[FeatureSet], p: &ValidParams) -> Result<SavedModel> {
    let first = sets.first().ok_or_else(|| Error::internal("model: a night of no parts"))?;
    let last = resolution_bound(sets.iter().map(resolution_last));
    let counts = sum(sets.iter().map(|s| resolution_counts_to(s, last)), DayCounts::merge)?;
    let valid_days = validation_window(&counts, p);
    let holdout_start = holdout_start(first.cutoff(), valid_days);
    let split = sum(sets.iter().map(|s| SplitCounts::of(s, holdout_start)), SplitCounts::add)?;
    let offers: Vec<Offer> = sets.iter().map(|s| offer(s, &split, valid_days, p)).collect::<Result<_>>()?;
    let pool = draw_offered(offers, first.cutoff(), valid_days, &split, p);
    // Round 5: each part's features of its drawn rows.
    let per_part: Vec<Vec<f64>> =
        (0..sets.len()).map(|k| features_of(sets, k, &rows_of(&pool, k))).collect::<Result<_>>()?;
    let pool = with_features(pool, &per_part)?;
    let frame = TrainFrame {
        night: first.night(),
        train_window_days: first.train_window_days,
        lanes: lane_windows(sets.iter().flat_map(|s| s.lanes().iter().map(|l| l.window_days)), p.lane_window_days),
        valid_days,
        split,
    };
    train_on(&pool, &frame, p)
}

/// The parts' offers as one pool in the whole network's row order: by shipment id, then time
/// (a shipment's rows are on one part, in time order); `from` names each row's part and row.
fn union(offers: Vec<Offer>) -> Offer {
    let mut all = Offer::default();
    for (k, mut o) in offers.into_iter().enumerate() {
        all.id.append(&mut o.id);
        all.t.append(&mut o.t);
        all.label.append(&mut o.label);
        all.resolved_at.append(&mut o.resolved_at);
        all.seller.append(&mut o.seller);
        all.from.extend(o.from.iter().map(|f| (k as u32, f.1)));
    }
    // Ties (none within a night: a shipment's rows differ in time) by part and row.
    let mut order: Vec<usize> = (0..all.id.len()).collect();
    order.sort_by(|&a, &b| all.id[a].cmp(&all.id[b]).then(all.t[a].cmp(&all.t[b])).then(all.from[a].cmp(&all.from[b])));
    all.take(&order)
}
