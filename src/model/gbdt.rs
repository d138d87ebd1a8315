//! Gradient-boosted decision trees for the late/on-time label: histogram-based, weighted
//! log-loss, early stopping on a supplied validation set, behind linfa's `Fit`/`Predict`.
//!
//! Determinism at any thread count is by construction: rows are binned once (u8 per feature),
//! each feature's histogram is accumulated sequentially in row order (groups of features in
//! parallel), and ties between splits go to the lower feature, then the lower bin. Row
//! subsampling draws from a seeded stream per round, never from thread-local state.

use linfa::dataset::{AsTargets, DatasetBase, Records};
use linfa::traits::{Fit, PredictInplace};
use ndarray::{Array1, Array2, ArrayBase, Data, Ix2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::calibrate::sigmoid;

/// Hyper-parameters; `check` turns them into `GbdtValidParams`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GbdtParams {
    /// Most boosting rounds; early stopping usually ends sooner.
    pub max_rounds: usize,
    pub learning_rate: f64,
    pub max_depth: usize,
    /// Least hessian (weighted p(1−p)) a child must hold.
    pub min_child_weight: f64,
    /// L2 penalty on leaf values.
    pub l2: f64,
    /// Histogram bins per feature (2..=255).
    pub bins: usize,
    /// Rounds without a better validation average precision before stopping.
    pub early_stopping_rounds: usize,
    /// Share of training rows each round sees (drawn without replacement).
    pub subsample: f64,
    pub seed: u64,
}

impl Default for GbdtParams {
    fn default() -> Self {
        GbdtParams {
            max_rounds: 300,
            learning_rate: 0.08,
            max_depth: 5,
            min_child_weight: 5.0,
            l2: 1.0,
            bins: 64,
            early_stopping_rounds: 20,
            subsample: 0.8,
            seed: 42,
        }
    }
}

/// Checked parameters plus the validation set early stopping watches (linfa's `Fit` takes
/// only the training set).
#[derive(Debug, Clone)]
pub struct GbdtValidParams {
    params: GbdtParams,
    valid: Option<(Array2<f64>, Vec<bool>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum GbdtError {
    #[error("gbdt: {0}")]
    Params(String),
    #[error("gbdt: {0}")]
    Linfa(#[from] linfa::Error),
}

impl GbdtParams {
    pub fn check(self) -> Result<GbdtValidParams, GbdtError> {
        let bad = |m: &str| Err(GbdtError::Params(m.to_string()));
        if self.max_rounds == 0 || self.max_rounds > 10_000 {
            return bad("max_rounds must be in 1..=10000");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return bad("learning_rate must be in (0, 1]");
        }
        if self.max_depth == 0 || self.max_depth > 12 {
            return bad("max_depth must be in 1..=12");
        }
        if !(self.min_child_weight >= 0.0 && self.min_child_weight.is_finite()) {
            return bad("min_child_weight must be a non-negative number");
        }
        if !(self.l2 >= 0.0 && self.l2.is_finite()) {
            return bad("l2 must be a non-negative number");
        }
        if self.bins < 2 || self.bins > 255 {
            return bad("bins must be in 2..=255");
        }
        if !(self.subsample > 0.0 && self.subsample <= 1.0) {
            return bad("subsample must be in (0, 1]");
        }
        Ok(GbdtValidParams { params: self, valid: None })
    }
}

impl GbdtValidParams {
    /// Early stopping on this validation set (rows, labels); without one, all rounds are kept.
    pub fn with_validation(mut self, x: Array2<f64>, y: Vec<bool>) -> Self {
        self.valid = Some((x, y));
        self
    }

    pub fn params(&self) -> &GbdtParams {
        &self.params
    }
}

/// One tree node: a split (`feature`, `threshold`, children) or a leaf (`value`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// `u16::MAX` marks a leaf.
    pub feature: u16,
    /// Rows with `x[feature] <= threshold` go left.
    pub threshold: f64,
    /// Where a missing (NaN) value goes, learned from the training rows that miss it.
    pub missing_left: bool,
    pub left: u32,
    pub right: u32,
    /// Leaf value on the log-odds scale (learning rate applied).
    pub value: f64,
}

pub const LEAF: u16 = u16::MAX;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoostedTree {
    pub nodes: Vec<Node>,
}

impl BoostedTree {
    pub fn predict(&self, row: &[f64]) -> f64 {
        self.leaf(|n| left_by_values(n, row))
    }

    /// `predict` of a block of at most `WALKERS` rows (`super::walk`).
    fn predict_many(&self, block: &[&[f64]]) -> [f64; super::WALKERS] {
        let at = super::walk(block.len(), |j, k| self.step(k, |n| left_by_values(n, block[j])));
        at.map(|k| self.nodes[k].value)
    }

    /// The value of the leaf reached from the root, going left at each split where `left` says.
    fn leaf(&self, left: impl Fn(&Node) -> bool) -> f64 {
        self.nodes[self.leaf_index(left)].value
    }

    /// The index of that leaf.
    fn leaf_index(&self, left: impl Fn(&Node) -> bool) -> usize {
        let mut k = 0usize;
        while let Some(next) = self.step(k, &left) {
            k = next;
        }
        k
    }

    /// The node reached from node `k`, going left where `left` says; None at a leaf.
    fn step(&self, k: usize, left: impl Fn(&Node) -> bool) -> Option<usize> {
        let n = &self.nodes[k];
        (n.feature != LEAF).then(|| (if left(n) { n.left } else { n.right }) as usize)
    }
}

/// Whether a row of values goes left at split `n`: at most the threshold, or a missing value
/// where the split sends those.
fn left_by_values(n: &Node, row: &[f64]) -> bool {
    let v = row[n.feature as usize];
    if v.is_nan() { n.missing_left } else { v <= n.threshold }
}

/// A fitted model: log-odds = `base` + the sum of its trees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gbdt {
    pub base: f64,
    pub trees: Vec<BoostedTree>,
    /// 1 − average precision on the validation set after each kept round (empty without one).
    pub valid_loss: Vec<f64>,
}

impl Gbdt {
    /// Log-odds of the positive class.
    pub fn raw(&self, row: &[f64]) -> f64 {
        self.base + self.trees.iter().map(|t| t.predict(row)).sum::<f64>()
    }

    /// `raw` of each of `rows`, the same bits (the trees' values added in the same order).
    pub fn raw_many(&self, rows: &[&[f64]]) -> Vec<f64> {
        let sums = super::sum_over_trees(rows, &self.trees, |tree, block| tree.predict_many(block));
        sums.into_iter().map(|s| self.base + s).collect()
    }
}

impl<D: Data<Elem = f64>> PredictInplace<ArrayBase<D, Ix2>, Array1<f64>> for Gbdt {
    /// Probabilities of the positive class.
    fn predict_inplace(&self, x: &ArrayBase<D, Ix2>, y: &mut Array1<f64>) {
        for (r, out) in x.rows().into_iter().zip(y.iter_mut()) {
            let row: Vec<f64> = r.iter().copied().collect();
            *out = sigmoid(self.raw(&row));
        }
    }

    fn default_target(&self, x: &ArrayBase<D, Ix2>) -> Array1<f64> {
        Array1::zeros(x.nrows())
    }
}

/// Bin edges per feature: upper bounds of each bin but the last, from the training values'
/// quantiles (by rank, over distinct values), so every bin holds data. Missing values (NaN)
/// take a bin of their own after the last (`missing_bin`).
fn bin_edges(x: &Array2<f64>, bins: usize) -> Vec<Vec<f64>> {
    (0..x.ncols())
        .into_par_iter()
        .map(|j| {
            let mut v: Vec<f64> = x.column(j).iter().copied().filter(|v| !v.is_nan()).collect();
            v.sort_by(f64::total_cmp);
            v.dedup();
            if v.len() <= bins {
                // Every distinct value its own bin; split points half-way between neighbours.
                return v.windows(2).map(|w| w[0] + (w[1] - w[0]) / 2.0).collect();
            }
            let mut edges: Vec<f64> = (1..bins)
                .map(|b| {
                    let k = (b * v.len() / bins).min(v.len() - 1);
                    v[k - 1] + (v[k] - v[k - 1]) / 2.0
                })
                .collect();
            edges.dedup();
            edges
        })
        .collect()
}

fn bin_of(edges: &[f64], v: f64) -> u8 {
    if v.is_nan() { missing_bin(edges) } else { edges.partition_point(|&e| e < v) as u8 }
}

/// Row-major bins of `x`: row i's are `[i * x.ncols()..(i + 1) * x.ncols()]`.
/// Row `i`'s bins in row-major `bins` of `features` columns (what `binned` writes).
fn row_bins(bins: &[u8], i: usize, features: usize) -> &[u8] {
    &bins[i * features..(i + 1) * features]
}

fn binned(x: &Array2<f64>, edges: &[Vec<f64>]) -> Vec<u8> {
    let features = x.ncols();
    let mut bins = vec![0u8; x.nrows() * features];
    bins.par_chunks_mut(features.max(1)).enumerate().for_each(|(i, out)| {
        for ((b, &v), e) in out.iter_mut().zip(x.row(i).iter()).zip(edges) {
            *b = bin_of(e, v);
        }
    });
    bins
}

/// The value of the leaf a row reaches, from its bins: the path its values take. A split's
/// threshold is an edge, and a value bin b holds values above `e[b − 1]` and at most `e[b]`,
/// so `v <= threshold` exactly when `e[b] <= threshold` (`BoostedTree::predict` on the values).
fn leaf_value(tree: &BoostedTree, row: &[u8], edges: &[Vec<f64>]) -> f64 {
    tree.nodes[leaf_of_bins(tree, row, edges)].value
}

/// The index of that leaf. The last value bin lies above every edge: its values go left only
/// under a split that sends every known value left (`ALL_VALUES`).
fn leaf_of_bins(tree: &BoostedTree, row: &[u8], edges: &[Vec<f64>]) -> usize {
    tree.leaf_index(|n| {
        let b = row[n.feature as usize];
        let e = &edges[n.feature as usize];
        match e.get(b as usize) {
            _ if b == missing_bin(e) => n.missing_left,
            Some(&edge) => edge <= n.threshold,
            None => n.threshold == ALL_VALUES,
        }
    })
}

/// The threshold of a split that sends every known value left and the missing ones right: a
/// feature whose known values say nothing can still split on whether it is known. Features
/// are never infinite, so every value is at most this; and it writes to JSON, as infinity
/// (`null`) would not read back.
const ALL_VALUES: f64 = f64::MAX;

/// `leaf_of` of a row the tree was not grown on.
const NOT_GROWN: u32 = u32::MAX;

/// The bin of missing values: one past the last value bin (`edges.len()` + 1 bins hold values).
fn missing_bin(edges: &[f64]) -> u8 {
    (edges.len() + 1) as u8
}

/// Every feature's histogram of one node, in one buffer: feature j's (sum of gradients, sum
/// of hessians) per bin are `[at[j]..at[j + 1]]` (`Grower::at`, `hist_offsets`). Apart, each
/// row's pass looked each feature's histogram up behind a pointer of its own.
type Hists = Vec<(f64, f64)>;

/// Where each feature's histogram starts in `Hists`, and (last) their total length: a
/// feature's value bins and its missing bin (`missing_bin`).
fn hist_offsets(edges: &[Vec<f64>]) -> Vec<usize> {
    let mut at = Vec::with_capacity(edges.len() + 1);
    at.push(0);
    for e in edges {
        at.push(at[at.len() - 1] + e.len() + 2);
    }
    at
}

/// A pass over a node's rows fills the histograms of this many features (a pass per group, the
/// groups in parallel): each row's gradient and hessian are read once per group rather than
/// once per feature, and its bins are adjacent (`Grower::bins` is row-major). A node with fewer
/// rows than `SMALL_NODE` fills every feature in one pass on its own thread.
const FEATURES_PER_PASS: usize = 8;
const SMALL_NODE: usize = 2048;

struct Grower<'a> {
    /// Row-major bins: row i's are `row_bins(bins, i, features)`.
    bins: &'a [u8],
    edges: &'a [Vec<f64>],
    /// `hist_offsets(edges)`.
    at: &'a [usize],
    g: &'a [f64],
    h: &'a [f64],
    p: &'a GbdtParams,
}

struct Split {
    gain: f64,
    feature: usize,
    bin: usize,
    missing_left: bool,
}

impl Grower<'_> {
    /// The bin of row `i` for feature `j`.
    fn bin(&self, i: u32, j: usize) -> u8 {
        row_bins(self.bins, i as usize, self.edges.len())[j]
    }

    /// Each feature's histogram of `rows`; every bin's sums are added in row order, whichever
    /// group of features a pass fills (`FEATURES_PER_PASS`), so they do not depend on it.
    fn histograms(&self, rows: &[u32]) -> Hists {
        let features = self.edges.len();
        let mut hists: Hists = vec![(0.0, 0.0); self.at[features]];
        // Features `first..last` into `part`, their histograms.
        let fill = |first: usize, last: usize, part: &mut [(f64, f64)]| {
            let (at, base) = (&self.at[first..last], self.at[first]);
            for &i in rows {
                let i = i as usize;
                let (g, h) = (self.g[i], self.h[i]);
                for (&a, &b) in at.iter().zip(&row_bins(self.bins, i, features)[first..last]) {
                    let e = &mut part[a - base + b as usize];
                    e.0 += g;
                    e.1 += h;
                }
            }
        };
        if rows.len() < SMALL_NODE {
            fill(0, features, &mut hists);
        } else {
            let mut parts = Vec::with_capacity(features.div_ceil(FEATURES_PER_PASS));
            let mut rest = &mut hists[..];
            for first in (0..features).step_by(FEATURES_PER_PASS) {
                let last = (first + FEATURES_PER_PASS).min(features);
                let (part, tail) = rest.split_at_mut(self.at[last] - self.at[first]);
                parts.push((first, last, part));
                rest = tail;
            }
            parts.into_par_iter().for_each(|(first, last, part)| fill(first, last, part));
        }
        hists
    }

    fn best_split(&self, hists: &[(f64, f64)], g: f64, h: f64) -> Option<Split> {
        let l2 = self.p.l2;
        let parent = g * g / (h + l2);
        let mut best: Option<Split> = None;
        for j in 0..self.edges.len() {
            let hist = &hists[self.at[j]..self.at[j + 1]];
            // Value bins are 0..=E; the last entry holds the missing values.
            let (mg, mh) = hist[hist.len() - 1];
            let values = hist.len() - 2;
            let (mut gl, mut hl) = (0.0, 0.0);
            for (b, &(bg, bh)) in hist.iter().enumerate().take(values) {
                gl += bg;
                hl += bh;
                // Missing values go right, then (if there are any) left; the better side is learned.
                let sides: &[bool] = if mh > 0.0 { &[false, true] } else { &[false] };
                for &missing_left in sides {
                    let (gl, hl) = if missing_left { (gl + mg, hl + mh) } else { (gl, hl) };
                    let (gr, hr) = (g - gl, h - hl);
                    if hl < self.p.min_child_weight || hr < self.p.min_child_weight {
                        continue;
                    }
                    let gain = gl * gl / (hl + l2) + gr * gr / (hr + l2) - parent;
                    if gain > 1e-12 && best.as_ref().is_none_or(|s| gain > s.gain) {
                        best = Some(Split { gain, feature: j, bin: b, missing_left });
                    }
                }
            }
            // Every known value left, the missing ones right (bin `values`: past the edges).
            if mh > 0.0 {
                let (gl, hl, gr, hr) = (g - mg, h - mh, mg, mh);
                if hl >= self.p.min_child_weight && hr >= self.p.min_child_weight {
                    let gain = gl * gl / (hl + l2) + gr * gr / (hr + l2) - parent;
                    if gain > 1e-12 && best.as_ref().is_none_or(|s| gain > s.gain) {
                        best = Some(Split { gain, feature: j, bin: values, missing_left: false });
                    }
                }
            }
        }
        best
    }

    /// Grows one tree on `rows` depth-first; children's histograms come from the smaller child
    /// and the parent by subtraction. Each of the rows' leaf is written to `leaf_of` (the leaf
    /// `leaf_of_bins` finds: the partitions below follow the same bins).
    fn grow(&self, rows: Vec<u32>, leaf_of: &mut [u32]) -> BoostedTree {
        let mut nodes = Vec::new();
        let hist = self.histograms(&rows);
        self.node(&mut nodes, rows, hist, 0, leaf_of);
        BoostedTree { nodes }
    }

    fn node(&self, nodes: &mut Vec<Node>, rows: Vec<u32>, hist: Hists, depth: usize, leaf_of: &mut [u32]) -> u32 {
        let (g, h) = hist[..self.at[1]].iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        let id = nodes.len() as u32;
        let leaf = Node {
            feature: LEAF,
            threshold: 0.0,
            missing_left: false,
            left: 0,
            right: 0,
            value: -g / (h + self.p.l2) * self.p.learning_rate,
        };
        nodes.push(leaf);
        let split = if depth >= self.p.max_depth || rows.len() < 2 { None } else { self.best_split(&hist, g, h) };
        let Some(split) = split else {
            for &i in &rows {
                leaf_of[i as usize] = id;
            }
            return id;
        };
        let missing = missing_bin(&self.edges[split.feature]);
        let goes_left = |b: u8| if b == missing { split.missing_left } else { b as usize <= split.bin };
        // Both sides stay in row order, which the histograms add in.
        let goes = |i: u32| goes_left(self.bin(i, split.feature));
        let n_left = rows.iter().map(|&i| goes(i) as usize).sum();
        let (left, right) = super::split_by(&rows, n_left, goes);
        drop(rows);
        let (small, small_is_left) = if left.len() <= right.len() { (&left, true) } else { (&right, false) };
        let small_hist = self.histograms(small);
        let big_hist: Hists = hist.iter().zip(&small_hist).map(|(a, b)| (a.0 - b.0, a.1 - b.1)).collect();
        let (lh, rh) = if small_is_left { (small_hist, big_hist) } else { (big_hist, small_hist) };
        let l = self.node(nodes, left, lh, depth + 1, leaf_of);
        let r = self.node(nodes, right, rh, depth + 1, leaf_of);
        nodes[id as usize] = Node {
            feature: split.feature as u16,
            threshold: self.edges[split.feature].get(split.bin).copied().unwrap_or(ALL_VALUES),
            missing_left: split.missing_left,
            left: l,
            right: r,
            value: 0.0,
        };
        id
    }
}

/// `v` as an integer that sorts as `f64::total_cmp` sorts the values.
fn total_order_key(v: f64) -> u64 {
    let b = v.to_bits();
    if b >> 63 == 1 { !b } else { b | 1 << 63 }
}

/// Average precision of scores `s` for labels `y` (ties resolved as one threshold).
pub(crate) fn average_precision(s: &[f64], y: &[bool]) -> f64 {
    // Highest score first, then by row: sorted as integer pairs rather than by looking the
    // scores up at every comparison (early stopping sorts the validation rows every round).
    let mut keyed: Vec<(u64, u32)> = s.iter().enumerate().map(|(k, &v)| (!total_order_key(v), k as u32)).collect();
    keyed.sort_unstable();
    let idx: Vec<usize> = keyed.into_iter().map(|(_, k)| k as usize).collect();
    let pos = y.iter().filter(|v| **v).count();
    if pos == 0 {
        return 0.0;
    }
    let (mut tp, mut fp, mut ap, mut last_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut k = 0;
    while k < idx.len() {
        let v = s[idx[k]];
        while k < idx.len() && super::metrics::tied(s[idx[k]], v) {
            if y[idx[k]] {
                tp += 1;
            } else {
                fp += 1;
            }
            k += 1;
        }
        let recall = tp as f64 / pos as f64;
        ap += (recall - last_recall) * tp as f64 / (tp + fp) as f64;
        last_recall = recall;
    }
    ap
}

impl<T> Fit<Array2<f64>, T, GbdtError> for GbdtValidParams
where
    T: AsTargets<Elem = bool>,
{
    type Object = Gbdt;

    /// Fits on the dataset's rows, labels and weights (sample weights carry the class balance).
    fn fit(&self, ds: &DatasetBase<Array2<f64>, T>) -> Result<Gbdt, GbdtError> {
        let p = &self.params;
        let x = ds.records();
        let y: Vec<bool> = ds.as_targets().iter().copied().collect();
        let n = x.nsamples();
        if n == 0 || y.len() != n {
            return Err(GbdtError::Params("no training rows".into()));
        }
        let w: Vec<f64> = match ds.weights() {
            Some(w) if w.len() == n => w.iter().map(|&v| v as f64).collect(),
            _ => vec![1.0; n],
        };
        let edges = bin_edges(x, p.bins);
        let features = x.ncols();
        let bins = binned(x, &edges);
        let (sw, swy) = w.iter().zip(&y).fold((0.0, 0.0), |a, (&wi, &yi)| (a.0 + wi, a.1 + wi * yi as u8 as f64));
        let prior = (swy / sw).clamp(1e-6, 1.0 - 1e-6);
        let base = (prior / (1.0 - prior)).ln();
        let mut f = vec![base; n];
        // The validation rows binned too: each round walks them through its tree, and their
        // bins are an eighth of their values' bytes.
        if let Some((vx, vy)) = &self.valid
            && (vx.ncols() != features || vx.nrows() != vy.len())
        {
            return Err(GbdtError::Params(format!(
                "validation set of {} rows, {} columns and {} labels against {features} columns",
                vx.nrows(),
                vx.ncols(),
                vy.len()
            )));
        }
        let valid: Option<(Vec<u8>, &[bool])> = self.valid.as_ref().map(|(vx, vy)| (binned(vx, &edges), vy.as_slice()));
        let mut fv: Vec<f64> = valid.as_ref().map(|v| vec![base; v.1.len()]).unwrap_or_default();
        let mut trees = Vec::new();
        let mut losses = Vec::new();
        let (mut best_loss, mut best_len) = (f64::INFINITY, 0usize);
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed ^ 0x6bd7_0001);
        let (mut g, mut h) = (vec![0.0; n], vec![0.0; n]);
        let mut leaf_of = vec![NOT_GROWN; n];
        let at = hist_offsets(&edges);
        for _round in 0..p.max_rounds {
            for i in 0..n {
                let q = sigmoid(f[i]);
                g[i] = w[i] * (q - y[i] as u8 as f64);
                h[i] = w[i] * (q * (1.0 - q)).max(1e-12);
            }
            let rows: Vec<u32> = if p.subsample < 1.0 {
                (0..n as u32).filter(|_| rng.r#gen::<f64>() < p.subsample).collect()
            } else {
                (0..n as u32).collect()
            };
            // A subsample that drew no row grows no tree: the round is skipped. Grown, its one
            // leaf (0 over 0 plus l2: zero, or NaN without l2) ended the boosting or made every
            // score NaN.
            if rows.is_empty() {
                continue;
            }
            let grower = Grower { bins: &bins, edges: &edges, at: &at, g: &g, h: &h, p };
            leaf_of.fill(NOT_GROWN);
            let tree = grower.grow(rows, &mut leaf_of);
            if tree.nodes.len() == 1 && tree.nodes[0].value == 0.0 {
                break;
            }
            // Training scores from the binned rows: the same path a row's value takes, which
            // the tree's growth took for the rows it was grown on.
            for (i, (fi, &leaf)) in f.iter_mut().zip(&leaf_of).enumerate() {
                let leaf = if leaf == NOT_GROWN {
                    leaf_of_bins(&tree, row_bins(&bins, i, features), &edges)
                } else {
                    leaf as usize
                };
                *fi += tree.nodes[leaf].value;
            }
            if let Some((vbins, vy)) = &valid {
                for (r, fr) in fv.iter_mut().enumerate() {
                    *fr += leaf_value(&tree, row_bins(vbins, r, features), &edges);
                }
                // Stop on the ranking the model is chosen by (average precision, as a loss);
                // log-loss keeps improving with calibration long after the ranking stops.
                let loss = 1.0 - average_precision(&fv, vy);
                tracing::trace!(round = trees.len() + 1, average_precision = 1.0 - loss, "gbdt");
                losses.push(loss);
                trees.push(tree);
                if loss < best_loss - 1e-9 {
                    best_loss = loss;
                    best_len = trees.len();
                } else if trees.len() - best_len >= p.early_stopping_rounds {
                    break;
                }
            } else {
                trees.push(tree);
                best_len = trees.len();
            }
        }
        trees.truncate(best_len);
        losses.truncate(best_len);
        Ok(Gbdt { base, trees, valid_loss: losses })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::Dataset;
    use linfa::traits::Predict;

    /// Two informative features (an interaction a linear model misses) and one of noise.
    fn data(n: usize, seed: u64) -> (Array2<f64>, Vec<bool>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = Array2::zeros((n, 3));
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let (a, b, c): (f64, f64, f64) = (rng.r#gen(), rng.r#gen(), rng.r#gen());
            x[[i, 0]] = a;
            x[[i, 1]] = b;
            x[[i, 2]] = c;
            let p = if (a > 0.5) ^ (b > 0.5) { 0.85 } else { 0.1 };
            y.push(rng.r#gen::<f64>() < p);
        }
        (x, y)
    }

    fn auc(p: &[f64], y: &[bool]) -> f64 {
        crate::model::metrics::roc_auc(p, y)
    }

    #[test]
    fn learns_an_interaction_and_stops_early() {
        let (x, y) = data(4000, 1);
        let (vx, vy) = data(1000, 2);
        let params = GbdtParams { max_rounds: 500, ..GbdtParams::default() }.check().unwrap();
        let m = params.with_validation(vx.clone(), vy.clone()).fit(&Dataset::new(x, Array1::from(y))).unwrap();
        let p = m.predict(&vx);
        let a = auc(p.as_slice().unwrap(), &vy);
        assert!(a > 0.8, "AUC {a}");
        assert!(m.trees.len() < 500, "early stopping never fired");
        assert_eq!(m.valid_loss.len(), m.trees.len());
    }

    /// Keys sort as `f64::total_cmp` does, signed zeros, infinities and NaNs included.
    #[test]
    fn total_order_keys_sort_as_total_cmp() {
        let mut v = vec![-0.0, 0.0, 1.5, -1.5, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, -f64::NAN, 1e-310, -1e-310];
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        v.extend((0..200).map(|_| (rng.r#gen::<f64>() - 0.5) * 1e3));
        let mut by_cmp = v.clone();
        by_cmp.sort_by(f64::total_cmp);
        v.sort_by_key(|&x| total_order_key(x));
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&v), bits(&by_cmp));
    }

    /// A node's histograms, filled a group of features per pass (in parallel for a large node,
    /// in one pass for a small one), are each feature's sums added in row order, bit for bit;
    /// and a row's bins lead it to the leaf its values do.
    #[test]
    fn histograms_add_in_row_order_and_bins_take_the_values_path() {
        let (mut x, _) = data(3 * SMALL_NODE, 5);
        // Wide enough for several groups of features, with missing values.
        x = ndarray::concatenate(ndarray::Axis(1), &[x.view(), x.view(), x.view(), x.view()]).unwrap();
        let columns = x.ncols();
        for i in (0..x.nrows()).step_by(7) {
            x[[i, (i / 7) % columns]] = f64::NAN;
        }
        let edges = bin_edges(&x, 64);
        let bins = binned(&x, &edges);
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let g: Vec<f64> = (0..x.nrows()).map(|_| rng.r#gen::<f64>() - 0.5).collect();
        let h: Vec<f64> = (0..x.nrows()).map(|_| rng.r#gen::<f64>() * 1e3).collect();
        let p = GbdtParams::default();
        let at = hist_offsets(&edges);
        let grower = Grower { bins: &bins, edges: &edges, at: &at, g: &g, h: &h, p: &p };
        for rows in [(0..x.nrows() as u32).collect::<Vec<u32>>(), (0..x.nrows() as u32).step_by(5).collect()] {
            assert_eq!(rows.len() >= SMALL_NODE, rows.len() == x.nrows());
            let hists = grower.histograms(&rows);
            assert_eq!(hists.len(), at[columns]);
            for j in 0..columns {
                let hist = &hists[at[j]..at[j + 1]];
                let mut want = vec![(0.0f64, 0.0f64); edges[j].len() + 2];
                for &i in &rows {
                    let b = &mut want[bin_of(&edges[j], x[[i as usize, j]]) as usize];
                    b.0 += g[i as usize];
                    b.1 += h[i as usize];
                }
                let bits = |v: &[(f64, f64)]| v.iter().map(|(a, b)| (a.to_bits(), b.to_bits())).collect::<Vec<_>>();
                assert_eq!(bits(hist), bits(&want), "feature {j}, {} rows", rows.len());
            }
        }
        // Grown on every other row: those are given their leaves, the rest are not.
        let mut leaf_of = vec![NOT_GROWN; x.nrows()];
        let tree = grower.grow((0..x.nrows() as u32).step_by(2).collect(), &mut leaf_of);
        assert!(tree.nodes.len() > 7, "{}", tree.nodes.len());
        let features = x.ncols();
        for (i, &grown) in leaf_of.iter().enumerate() {
            let row: Vec<f64> = x.row(i).to_vec();
            let leaf = leaf_of_bins(&tree, row_bins(&bins, i, features), &edges);
            let by_bins = leaf_value(&tree, row_bins(&bins, i, features), &edges);
            assert_eq!(by_bins.to_bits(), tree.predict(&row).to_bits(), "row {i}");
            assert_eq!(grown, if i % 2 == 0 { leaf as u32 } else { NOT_GROWN }, "row {i}");
        }
    }

    #[test]
    fn identical_at_any_thread_count_and_round_trips() {
        let (x, y) = data(3000, 3);
        let (vx, vy) = data(500, 4);
        let fit = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                GbdtParams::default()
                    .check()
                    .unwrap()
                    .with_validation(vx.clone(), vy.clone())
                    .fit(&Dataset::new(x.clone(), Array1::from(y.clone())))
                    .unwrap()
            })
        };
        let (a, b) = (fit(1), fit(2));
        let (ja, jb) = (serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
        assert_eq!(ja, jb);
        let back: Gbdt = serde_json::from_str(&ja).unwrap();
        let row = [0.3, 0.7, 0.1];
        assert_eq!(back.raw(&row).to_bits(), a.raw(&row).to_bits());
    }

    /// 2000 rows, 30 % late; feature 0 is missing exactly for the late rows and `known` of the
    /// generator otherwise, feature 1 is noise.
    fn missing_when_late(known: impl Fn(&mut ChaCha8Rng) -> f64) -> (Array2<f64>, Vec<bool>) {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let n = 2000;
        let mut x = Array2::zeros((n, 2));
        let mut y = Vec::new();
        for i in 0..n {
            let late = rng.r#gen::<f64>() < 0.3;
            x[[i, 0]] = if late { f64::NAN } else { known(&mut rng) };
            x[[i, 1]] = rng.r#gen();
            y.push(late);
        }
        (x, y)
    }

    #[test]
    fn missing_values_go_to_the_side_that_fits_them() {
        // Feature 0 is missing exactly for the late rows: a split on missingness separates them.
        let (x, y) = missing_when_late(|rng| rng.r#gen());
        let m = GbdtParams { max_rounds: 30, subsample: 1.0, ..GbdtParams::default() }
            .check()
            .unwrap()
            .fit(&Dataset::new(x, Array1::from(y)))
            .unwrap();
        assert!(m.raw(&[f64::NAN, 0.5]) > 2.0, "missing → late: {}", m.raw(&[f64::NAN, 0.5]));
        assert!(m.raw(&[0.4, 0.5]) < -2.0, "present → on time: {}", m.raw(&[0.4, 0.5]));
    }

    /// Regression: a round whose subsample drew no row ended the boosting (its empty tree read
    /// as converged), or with no l2 made every score NaN. Such rounds are skipped.
    #[test]
    fn rounds_that_sample_no_row_are_skipped() {
        let (x, y) = data(8, 3);
        for l2 in [1.0, 0.0] {
            let p = GbdtParams { max_rounds: 300, subsample: 0.02, l2, ..GbdtParams::default() };
            let m = p.check().unwrap().fit(&Dataset::new(x.clone(), Array1::from(y.clone()))).unwrap();
            assert!(!m.trees.is_empty(), "l2 {l2}: no tree");
            assert!(m.raw(&[0.1, 0.2, 0.3]).is_finite(), "l2 {l2}: {}", m.raw(&[0.1, 0.2, 0.3]));
        }
    }

    /// Regression: a feature constant whenever it is known can still split on whether it is
    /// (every known value left, the missing ones right); the trees never tried that split.
    #[test]
    fn a_feature_known_only_on_time_splits_on_being_known() {
        let (x, y) = missing_when_late(|_| 0.5);
        let n = x.nrows();
        let p = GbdtParams { max_rounds: 30, subsample: 1.0, ..GbdtParams::default() };
        let m = p.clone().check().unwrap().fit(&Dataset::new(x.clone(), Array1::from(y))).unwrap();
        assert!(m.raw(&[f64::NAN, 0.5]) > 2.0, "missing → late: {}", m.raw(&[f64::NAN, 0.5]));
        assert!(m.raw(&[0.5, 0.5]) < -2.0, "known → on time: {}", m.raw(&[0.5, 0.5]));
        // Rows the trees were not grown on find their leaves by their bins: the same leaves.
        let edges = bin_edges(&x, p.bins);
        let bins = binned(&x, &edges);
        for tree in &m.trees {
            for i in 0..n {
                let row: Vec<f64> = x.row(i).to_vec();
                let by_values = tree.leaf_index(|node| left_by_values(node, &row));
                assert_eq!(leaf_of_bins(tree, row_bins(&bins, i, 2), &edges), by_values, "row {i}");
            }
        }
        // The model reads back from JSON and predicts the same.
        let back: Gbdt = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back.raw(&[0.5, 0.5]).to_bits(), m.raw(&[0.5, 0.5]).to_bits());
    }

    #[test]
    fn weights_shift_the_base_rate() {
        let (x, y) = data(2000, 5);
        let pos = y.iter().filter(|v| **v).count() as f32;
        let w: Vec<f32> = y.iter().map(|&v| if v { (2000.0 - pos) / pos } else { 1.0 }).collect();
        let p = GbdtParams { max_rounds: 1, ..GbdtParams::default() }.check().unwrap();
        let m = p.fit(&Dataset::new(x, Array1::from(y)).with_weights(Array1::from(w))).unwrap();
        assert!(m.base.abs() < 1e-6, "balanced weights give a zero prior log-odds, got {}", m.base);
    }

    #[test]
    fn bad_params_are_refused() {
        assert!(GbdtParams { bins: 1, ..GbdtParams::default() }.check().is_err());
        assert!(GbdtParams { learning_rate: 0.0, ..GbdtParams::default() }.check().is_err());
        assert!(GbdtParams { subsample: 1.5, ..GbdtParams::default() }.check().is_err());
    }
}
