//! Classification trees (the `tree` candidate and the forest's trees) with a probability in
//! each leaf.
//!
//! The split rule is linfa-trees' (0.8) CART rule, kept exactly so models do not change: gini
//! impurity on class weights in `f32`, thresholds at the midpoint to the next value in the
//! column's global sort order, equal values (within 1e-5) never separated, `min_weight_leaf`
//! weight on each side, nodes with fewer than `min_weight_split` rows or at `max_depth` left
//! as leaves, a split kept only if it lowers impurity by 1e-5, and sibling leaves of the same
//! class pruned into their parent. linfa's fit scans every row of the data set at every node
//! (O(nodes × rows × features)); this one keeps each node's rows per column in sort order and
//! partitions them, O(depth × rows × features). `tests::same_trees_as_linfa` holds the two
//! equal on random data with ties and duplicates.
//!
//! linfa's trees only store a class per leaf. Late-risk needs a probability, so after fitting we
//! route the training rows through the tree and keep each leaf's smoothed share of late rows (as
//! scikit-learn's `predict_proba` does).

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Node {
    /// Feature index into the full feature vector; in leaves, what linfa left there (the split
    /// of a pruned node, else the tree's first feature).
    pub feature: u32,
    pub threshold: f64,
    /// Children indices; 0 marks a leaf (the root is never a child).
    pub left: u32,
    pub right: u32,
    pub p_late: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

/// Checked tree hyper-parameters.
#[derive(Debug, Clone, Copy)]
pub struct TreeParams {
    pub max_depth: usize,
    /// Least class weight on each side of a split.
    pub min_weight_leaf: f32,
    /// Least rows (a count, as in linfa) a node needs to be split.
    pub min_weight_split: f32,
}

/// Splits that lower impurity by less than this are not made (linfa's default).
const MIN_IMPURITY_DECREASE: f64 = 0.00001;
/// Neighbouring values closer than this are never separated (linfa's rule).
const SAME_VALUE: f64 = 1e-5;

impl Tree {
    /// Fits a tree on rows `x` (its columns are `features[k]` of the full vector) with labels
    /// `y` and class weights `w`, then fills leaf probabilities from `x_leaf`/`y_leaf` (full
    /// feature vectors).
    pub fn fit<'a>(
        x: ArrayView2<'a, f64>,
        y: &'a [bool],
        w: &'a [f32],
        features: &[usize],
        p: &TreeParams,
        x_leaf: ArrayView2<f64>,
        y_leaf: &[bool],
    ) -> Tree {
        let fitted = Fitter::new(x, y, w, *p).fit();
        let mut nodes = Vec::new();
        flatten(&fitted, features, &mut nodes);
        Tree::with_leaf_probabilities(nodes, x_leaf, y_leaf)
    }

    /// `nodes` with each leaf's smoothed share of late rows among `x`/`y`.
    fn with_leaf_probabilities(mut nodes: Vec<Node>, x: ArrayView2<f64>, y: &[bool]) -> Tree {
        let mut pos = vec![0.0f64; nodes.len()];
        let mut all = vec![0.0f64; nodes.len()];
        for (r, row) in x.rows().into_iter().enumerate() {
            let leaf = leaf_of(&nodes, |f| row[f]);
            all[leaf] += 1.0;
            pos[leaf] += y[r] as u8 as f64;
        }
        for (i, n) in nodes.iter_mut().enumerate() {
            // Laplace smoothing keeps empty or pure leaves away from 0 and 1.
            n.p_late = (pos[i] + 1.0) / (all[i] + 2.0);
        }
        Tree { nodes }
    }

    pub fn predict(&self, row: &[f64]) -> f64 {
        self.nodes[leaf_of(&self.nodes, |f| row[f])].p_late
    }

    /// `predict` of a block of at most `WALKERS` rows (`super::walk`).
    pub fn p_late_many(&self, block: &[&[f64]]) -> [f64; super::WALKERS] {
        let at = super::walk(block.len(), |j, k| {
            let n = &self.nodes[k];
            (n.left != 0).then(|| {
                let v = block[j][n.feature as usize];
                let v = if v.is_nan() { super::MISSING } else { v };
                (if v < n.threshold { n.left } else { n.right }) as usize
            })
        });
        at.map(|k| self.nodes[k].p_late)
    }
}

fn leaf_of(nodes: &[Node], value: impl Fn(usize) -> f64) -> usize {
    let mut i = 0usize;
    loop {
        let n = &nodes[i];
        if n.left == 0 {
            return i;
        }
        // Prediction sends `x < split` left (fitting sent `<=`, as linfa does); a missing value
        // is the sentinel the tree was fitted with.
        let v = value(n.feature as usize);
        let v = if v.is_nan() { super::MISSING } else { v };
        i = if v < n.threshold { n.left as usize } else { n.right as usize };
    }
}

/// A fitted node before flattening, with linfa's fields.
struct Fitted {
    /// Column of the fitted matrix (0 in a leaf that was never split).
    feature: usize,
    split: f64,
    leaf: bool,
    /// The modal class; only pruning reads it.
    late: bool,
    left: Option<Box<Fitted>>,
    right: Option<Box<Fitted>>,
}

impl Fitted {
    fn leaf(late: bool) -> Fitted {
        Fitted { feature: 0, split: 0.0, leaf: true, late, left: None, right: None }
    }

    /// linfa's prune: a node whose children both end in leaves of one class becomes a leaf.
    fn prune(&mut self) -> Option<bool> {
        if self.leaf {
            return Some(self.late);
        }
        let l = self.left.as_mut().and_then(|c| c.prune());
        let r = self.right.as_mut().and_then(|c| c.prune());
        match (l, r) {
            (Some(a), Some(b)) if a == b => {
                self.late = a;
                self.left = None;
                self.right = None;
                self.leaf = true;
                Some(a)
            }
            _ => None,
        }
    }
}

fn flatten(node: &Fitted, features: &[usize], out: &mut Vec<Node>) -> u32 {
    let me = out.len();
    let feature = features.get(node.feature).copied().unwrap_or(0) as u32;
    out.push(Node { feature, threshold: node.split, left: 0, right: 0, p_late: 0.5 });
    if node.leaf {
        return me as u32;
    }
    if let (Some(l), Some(r)) = (node.left.as_deref(), node.right.as_deref()) {
        let li = flatten(l, features, out);
        let ri = flatten(r, features, out);
        out[me].left = li;
        out[me].right = ri;
    }
    me as u32
}

/// Class weights as linfa keeps them: `[on time, late]`, summed in `f32`.
type Freq = [f32; 2];

/// linfa's gini impurity of a class-weight pair (the sum over two classes is the same in either
/// order, so the hash-map order linfa sums in does not matter).
fn gini(f: &Freq) -> f32 {
    assert!(f[0] + f[1] > 0.0, "gini impurity of an empty side");
    impurity(f[0], f[1])
}

/// The gini impurity of a side with class weights `a` and `b`, unchecked (`gini` checks; the
/// split search checks each candidate's sides before it scores them in a pass of their own).
#[inline]
fn impurity(a: f32, b: f32) -> f32 {
    let n = a + b;
    1.0 - ((a / n) * (a / n) + (b / n) * (b / n))
}

struct Fitter<'a> {
    x: ArrayView2<'a, f64>,
    y: &'a [bool],
    w: &'a [f32],
    p: TreeParams,
    /// Per column: rows and values in ascending order of value, ties by row (a stable sort,
    /// as linfa's).
    rows: Vec<Vec<u32>>,
    values: Vec<Vec<f64>>,
    /// Per column, by the same positions: what moving that row left moves (`Move`).
    moves: Vec<Vec<Move>>,
    /// Scratch: which side each row of the node being split goes to.
    left: Vec<bool>,
    /// Scratch: one column's candidate splits (`best_split`).
    candidates: Candidates,
}

/// A row as `best_split` moves it left, by its place in a column's order: its weight under its
/// class (`+0.0` under the other, which leaves the other side's sums as they are, bit for bit),
/// and whether a split may fall after it. Read in order, these replace a look-up of the row's
/// class and weight at every place, and keep the class sums out of an array indexed by class
/// (whose stores and reloads chained one row's sums to the last one's).
#[derive(Clone, Copy)]
struct Move {
    weight: [f32; 2],
    /// Not the last place (linfa never moves that row), and the next value in the column is
    /// not the same (within `SAME_VALUE`: equal values are never separated).
    cut: bool,
}

/// The splits `best_split` scores in one column, a field per array: the class weights on
/// either side after the row at `at` moved left, and the right side's total. Scored in one
/// pass of their own, the score's divisions run side by side (vector instructions) rather than
/// one after another behind the running sums.
#[derive(Default)]
struct Candidates {
    at: Vec<u32>,
    right: [Vec<f32>; 2],
    left: [Vec<f32>; 2],
    w_right: Vec<f32>,
    score: Vec<f32>,
}

impl Candidates {
    fn clear(&mut self) {
        self.at.clear();
        for v in self.right.iter_mut().chain(&mut self.left) {
            v.clear();
        }
        self.w_right.clear();
    }

    /// Every candidate's weighted gini: `share * gini(right) + (1 − share) * gini(left)`, the
    /// same operations in the same order as `gini`, so the same bits.
    fn score(&mut self, total: f32) {
        let ([r0, r1], [l0, l1]) = (&self.right, &self.left);
        self.score.clear();
        self.score.extend(r0.iter().zip(r1).zip(l0.iter().zip(l1)).zip(&self.w_right).map(
            |(((&r0, &r1), (&l0, &l1)), &w_right)| {
                let share = w_right / total;
                share * impurity(r0, r1) + (1.0 - share) * impurity(l0, l1)
            },
        ));
    }
}

impl<'a> Fitter<'a> {
    fn new(x: ArrayView2<'a, f64>, y: &'a [bool], w: &'a [f32], p: TreeParams) -> Fitter<'a> {
        let (rows, values): (Vec<Vec<u32>>, Vec<Vec<f64>>) = (0..x.ncols())
            .map(|k| {
                let mut pairs: Vec<(u32, f64)> = x.column(k).iter().enumerate().map(|(i, &v)| (i as u32, v)).collect();
                pairs.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Greater));
                pairs.into_iter().unzip()
            })
            .unzip();
        let n = x.nrows();
        let moves = rows
            .iter()
            .zip(&values)
            .map(|(rows, values)| {
                (0..n)
                    .map(|p| {
                        // The last place's row never moves: no weight, no split after it.
                        if p + 1 >= n {
                            return Move { weight: [0.0; 2], cut: false };
                        }
                        let r = rows[p] as usize;
                        let mut weight = [0.0; 2];
                        weight[y[r] as usize] = w[r];
                        // The neighbour is the next value in the whole column, as in linfa
                        // (a NaN difference is not "the same value" there either).
                        let d = (values[p] - values[p + 1]).abs();
                        Move { weight, cut: d >= SAME_VALUE || d.is_nan() }
                    })
                    .collect()
            })
            .collect();
        Fitter { x, y, w, p, rows, values, moves, left: vec![false; n], candidates: Candidates::default() }
    }

    fn fit(mut self) -> Fitted {
        let n = self.x.nrows() as u32;
        let members: Vec<u32> = (0..n).collect();
        let positions: Vec<Vec<u32>> = (0..self.x.ncols()).map(|_| (0..n).collect()).collect();
        let mut root = self.node(members, positions, 0);
        root.prune();
        root
    }

    /// Fits the node holding rows `members` (ascending); `positions[k]` are their places in
    /// column k's sort order, ascending.
    fn node(&mut self, members: Vec<u32>, positions: Vec<Vec<u32>>, depth: usize) -> Fitted {
        let mut parent: Freq = [0.0; 2];
        for &r in &members {
            parent[self.y[r as usize] as usize] += self.w[r as usize];
        }
        // linfa's modal class; the late class's weights carry a hair extra so there is no tie.
        let late = parent[1] > parent[0];
        if (members.len() as f32) < self.p.min_weight_split || depth >= self.p.max_depth {
            return Fitted::leaf(late);
        }
        let Some((feature, split, score)) = self.best_split(&parent, &positions) else {
            return Fitted::leaf(late);
        };
        if (gini(&parent) as f64) - (score as f64) < MIN_IMPURITY_DECREASE {
            return Fitted::leaf(late);
        }
        let (mut l_members, mut r_members) = (Vec::new(), Vec::new());
        for &r in &members {
            let goes_left = self.x[(r as usize, feature)] <= split;
            self.left[r as usize] = goes_left;
            if goes_left { l_members.push(r) } else { r_members.push(r) }
        }
        drop(members);
        let (mut l_pos, mut r_pos) = (Vec::with_capacity(positions.len()), Vec::with_capacity(positions.len()));
        for (k, pos) in positions.into_iter().enumerate() {
            let rows = &self.rows[k];
            let (l, r) = super::split_by(&pos, l_members.len(), |p| self.left[rows[p as usize] as usize]);
            l_pos.push(l);
            r_pos.push(r);
        }
        let left = (!l_members.is_empty()).then(|| Box::new(self.node(l_members, l_pos, depth + 1)));
        let right = (!r_members.is_empty()).then(|| Box::new(self.node(r_members, r_pos, depth + 1)));
        let leaf = left.is_none() || right.is_none();
        Fitted { feature, split, leaf, late, left, right }
    }

    /// linfa's search: rows move left one at a time in each column's sort order; the first
    /// strictly best weighted gini wins (lower column, then lower value, on ties).
    fn best_split(&mut self, parent: &Freq, positions: &[Vec<u32>]) -> Option<(usize, f64, f32)> {
        let total = parent[0] + parent[1];
        let min_leaf = self.p.min_weight_leaf;
        let mut best: Option<(usize, f64, f32)> = None;
        let c = &mut self.candidates;
        for (k, pos) in positions.iter().enumerate() {
            let (moves, values) = (&self.moves[k], &self.values[k]);
            // The running sums first, in row order (their rounding is the search's), keeping
            // the splits that may be made; then their scores, in a pass of their own.
            c.clear();
            let ([mut right0, mut right1], [mut left0, mut left1]) = (*parent, [0.0f32; 2]);
            let (mut w_right, mut w_left) = (total, 0.0f32);
            for &p in pos {
                let m = moves[p as usize];
                let [w0, w1] = m.weight;
                // One of the two is +0.0: the row's own weight, exactly.
                let w = w0 + w1;
                right0 -= w0;
                right1 -= w1;
                w_right -= w;
                left0 += w0;
                left1 += w1;
                w_left += w;
                if !m.cut || w_right < min_leaf || w_left < min_leaf {
                    continue;
                }
                // `gini`'s check, on the sides of every split scored, as before: f32 sums can
                // leave a side's class weights at zero or below while its running total is not,
                // and the panic leaves this candidate out of the night's choice (`train_on`).
                assert!(right0 + right1 > 0.0 && left0 + left1 > 0.0, "gini impurity of an empty side");
                c.at.push(p);
                c.right[0].push(right0);
                c.right[1].push(right1);
                c.left[0].push(left0);
                c.left[1].push(left1);
                c.w_right.push(w_right);
            }
            c.score(total);
            for (&p, &score) in c.at.iter().zip(&c.score) {
                if best.is_none_or(|b| score < b.2) {
                    let p = p as usize;
                    best = Some((k, (values[p] + values[p + 1]) / 2.0, score));
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::prelude::*;
    use linfa_trees::{DecisionTree, TreeNode};
    use ndarray::{Array1, Array2};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// linfa's tree flattened the way models stored it before this fitter.
    fn flatten_linfa(node: &TreeNode<f64, usize>, features: &[usize], out: &mut Vec<Node>) -> u32 {
        let me = out.len();
        let (f, threshold, _) = node.split();
        out.push(Node {
            feature: features.get(f).copied().unwrap_or(0) as u32,
            threshold,
            left: 0,
            right: 0,
            p_late: 0.5,
        });
        if node.is_leaf() {
            return me as u32;
        }
        let children = node.children();
        if let (Some(l), Some(r)) = (children[0].as_deref(), children[1].as_deref()) {
            let li = flatten_linfa(l, features, out);
            let ri = flatten_linfa(r, features, out);
            out[me].left = li;
            out[me].right = ri;
        }
        me as u32
    }

    /// A side whose class weights f32 rounding left at zero while its running total is not
    /// still stops the fit, as `gini`'s check always did (`train_on` then leaves the candidate
    /// out), rather than scoring a split by a NaN gini.
    #[test]
    #[should_panic(expected = "gini impurity of an empty side")]
    fn an_empty_side_stops_the_fit() {
        // Late weights 1e8 and 3 sum to 1e8 in f32; with the on-time 5 the total rounds to
        // 1e8 + 8. After the first two rows move left, the right side holds the late 3 by its
        // running total (3) and nothing by its class weights (1e8 − 1e8 and 5 − 5).
        let x = ndarray::array![[0.0], [1.0], [2.0]];
        let (y, w) = ([true, false, true], [1e8f32, 5.0, 3.0]);
        let p = TreeParams { max_depth: 3, min_weight_leaf: 1.0, min_weight_split: 2.0 };
        Fitter::new(x.view(), &y, &w, p).fit();
    }

    #[test]
    fn same_trees_as_linfa() {
        for round in 0..300u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(round);
            let n = rng.gen_range(1..1500);
            let cols = rng.gen_range(1..6);
            // Few distinct values in some columns (ties and duplicates), near-equal ones in others.
            let x = Array2::from_shape_fn((n, cols), |(_, c)| match c % 3 {
                0 => rng.gen_range(0..6) as f64,
                1 => rng.gen_range(0..1000) as f64 * 1e-6,
                _ => rng.gen_range(-3.0..3.0),
            });
            let y: Vec<bool> = (0..n).map(|i| (x[(i, 0)] + rng.gen_range(-2.0..2.0)) > 2.5).collect();
            let pos = y.iter().filter(|v| **v).count().max(1) as f32;
            let neg = (n as f32 - pos).max(1.0);
            let w_pos = (neg / pos) * (1.0 + 1.0 / 3.0e3);
            let w: Vec<f32> = y.iter().map(|&v| if v { w_pos } else { 1.0 }).collect();
            let p = TreeParams {
                max_depth: rng.gen_range(1..9),
                min_weight_leaf: rng.gen_range(0.5..8.0),
                min_weight_split: rng.gen_range(2..16) as f32,
            };
            let features: Vec<usize> = (0..cols).map(|k| k * 2 + 1).collect();
            let ds = Dataset::new(x.clone(), Array1::from(y.iter().map(|&v| v as usize).collect::<Vec<_>>()))
                .with_weights(Array1::from(w.clone()));
            let linfa = DecisionTree::params()
                .max_depth(Some(p.max_depth))
                .min_weight_leaf(p.min_weight_leaf)
                .min_weight_split(p.min_weight_split)
                .fit(&ds)
                .unwrap();
            let mut want = Vec::new();
            flatten_linfa(linfa.root_node(), &features, &mut want);
            let fitted = Fitter::new(x.view(), &y, &w, p).fit();
            let mut got = Vec::new();
            flatten(&fitted, &features, &mut got);
            assert_eq!(got, want, "round {round}: n {n}, {cols} columns, {p:?}");
        }
    }
}
