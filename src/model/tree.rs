//! Fitted linfa decision trees, flattened into a compact form with a probability in each leaf.
//!
//! linfa's trees only store a class per leaf. Late-risk needs a probability, so after fitting we
//! walk the tree once, route the training rows through it and keep each leaf's smoothed share of
//! late rows (as scikit-learn's `predict_proba` does).

use linfa_trees::{DecisionTree, TreeNode};
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Node {
    /// Feature index into the full feature vector; unused in leaves.
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

impl Tree {
    /// Flattens `tree`, whose feature `k` is `features[k]` of the full vector, and fills leaf
    /// probabilities from the rows `x` with labels `y`.
    pub fn from_linfa(tree: &DecisionTree<f64, usize>, features: &[usize], x: ArrayView2<f64>, y: &[bool]) -> Tree {
        let mut nodes = Vec::new();
        flatten(tree.root_node(), features, &mut nodes);
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
}

fn leaf_of(nodes: &[Node], value: impl Fn(usize) -> f64) -> usize {
    let mut i = 0usize;
    loop {
        let n = &nodes[i];
        if n.left == 0 {
            return i;
        }
        // linfa sends `x < split` left; a missing value is the sentinel the tree was fitted with.
        let v = value(n.feature as usize);
        let v = if v.is_nan() { super::MISSING } else { v };
        i = if v < n.threshold { n.left as usize } else { n.right as usize };
    }
}

fn flatten(node: &TreeNode<f64, usize>, features: &[usize], out: &mut Vec<Node>) -> u32 {
    let me = out.len();
    let (f, threshold, _) = node.split();
    out.push(Node { feature: features.get(f).copied().unwrap_or(0) as u32, threshold, left: 0, right: 0, p_late: 0.5 });
    if node.is_leaf() {
        return me as u32;
    }
    let children = node.children();
    match (children[0].as_deref(), children[1].as_deref()) {
        (Some(l), Some(r)) => {
            let li = flatten(l, features, out);
            let ri = flatten(r, features, out);
            out[me].left = li;
            out[me].right = ri;
        }
        _ => {}
    }
    me as u32
}
