//! Evaluation metrics for probabilistic binary predictions. Ties are handled exactly, so a
//! constant or two-valued score (the baselines) gets its true ROC and PR values.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Scores {
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub brier: f64,
    pub log_loss: f64,
    pub base_rate: f64,
    /// Top `budget_fraction` of rows by risk.
    pub budget_fraction: f64,
    pub precision_at_budget: f64,
    pub recall_at_budget: f64,
    /// Rows with risk at or above the alert threshold.
    pub threshold: f64,
    pub precision_at_threshold: f64,
    pub recall_at_threshold: f64,
    pub alerts_at_threshold: u64,
    pub n: u64,
    pub positives: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bin {
    pub lower: f64,
    pub upper: f64,
    pub n: u64,
    pub mean_predicted: Option<f64>,
    pub observed_rate: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PrPoint {
    pub recall: f64,
    pub precision: f64,
    /// The score at which this point is reached; the first point (recall 0) has none.
    #[serde(with = "crate::model::nan")]
    pub threshold: f64,
}

/// Row order by score, highest first; equal scores keep row order so results are reproducible.
fn order(p: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    idx
}

/// Scores in one tie group: equal, or both NaN. A NaN score (a baseline a night could not fit
/// is pooled as NaN) equals nothing under `==`, and a tie loop keyed on it never advanced: the
/// backtest hung with its memory growing.
pub(crate) fn tied(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

pub fn roc_auc(p: &[f64], y: &[bool]) -> f64 {
    let pos = y.iter().filter(|v| **v).count() as f64;
    let neg = y.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    // Mann–Whitney U with average ranks for ties.
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && tied(p[idx[j + 1]], p[idx[i]]) {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            if y[idx[k]] {
                rank_sum += avg;
            }
        }
        i = j + 1;
    }
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// Average precision over tie groups: Σ (R_k − R_{k−1}) · P_k.
/// Average precision; NaN without positives, where it is undefined (as `roc_auc`): 0.0 read
/// as a model that found none of the late parcels there were.
pub fn pr_auc(p: &[f64], y: &[bool]) -> f64 {
    if !y.iter().any(|v| *v) {
        return f64::NAN;
    }
    pr_curve(p, y).windows(2).map(|w| (w[1].recall - w[0].recall) * w[1].precision).sum()
}

/// Precision-recall points, one per distinct score, starting at recall 0.
pub fn pr_curve(p: &[f64], y: &[bool]) -> Vec<PrPoint> {
    let pos = y.iter().filter(|v| **v).count() as f64;
    let mut out = vec![PrPoint { recall: 0.0, precision: 1.0, threshold: f64::INFINITY }];
    if pos == 0.0 {
        return out;
    }
    let idx = order(p);
    let (mut tp, mut seen) = (0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let score = p[idx[i]];
        while i < idx.len() && tied(p[idx[i]], score) {
            tp += y[idx[i]] as u8 as f64;
            seen += 1.0;
            i += 1;
        }
        out.push(PrPoint { recall: tp / pos, precision: tp / seen, threshold: score });
    }
    out
}

/// At most `max` points of the curve, evenly spaced by recall, for reports.
pub fn thin_curve(curve: &[PrPoint], max: usize) -> Vec<PrPoint> {
    if curve.len() <= max {
        return curve.to_vec();
    }
    let mut out: Vec<PrPoint> = Vec::with_capacity(max);
    let step = 1.0 / (max - 1) as f64;
    let mut next = 0.0;
    for pt in curve {
        if pt.recall >= next {
            out.push(pt.clone());
            next = pt.recall + step;
        }
    }
    if out.last().map(|l| l.recall) != curve.last().map(|l| l.recall) {
        out.push(curve.last().expect("non-empty").clone());
    }
    out
}

pub fn brier(p: &[f64], y: &[bool]) -> f64 {
    if p.is_empty() {
        return f64::NAN;
    }
    p.iter().zip(y).map(|(p, y)| (p - (*y as u8 as f64)).powi(2)).sum::<f64>() / p.len() as f64
}

pub fn log_loss(p: &[f64], y: &[bool]) -> f64 {
    if p.is_empty() {
        return f64::NAN;
    }
    p.iter()
        .zip(y)
        .map(|(p, y)| {
            let p = p.clamp(1e-12, 1.0 - 1e-12);
            if *y { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum::<f64>()
        / p.len() as f64
}

pub fn evaluate(p: &[f64], y: &[bool], budget_fraction: f64, threshold: f64) -> Scores {
    evaluate_ranked(p, p, y, budget_fraction, threshold)
}

/// `evaluate` with the ranking metrics (ROC and PR AUC, the top of the budget) read from
/// `rank`, any score in the model's order, and the rest (Brier, log-loss, the alert threshold)
/// from the probabilities `p`. Cross-fitted probabilities come from two calibrations, one per
/// half of the rows: each half keeps the model's order, the two together need not (a half
/// with no late rows maps every score to one value), so their ranking was not the model's.
pub fn evaluate_ranked(rank: &[f64], p: &[f64], y: &[bool], budget_fraction: f64, threshold: f64) -> Scores {
    assert_eq!(rank.len(), p.len(), "one rank per probability");
    let n = p.len();
    let positives = y.iter().filter(|v| **v).count();
    let idx = order(rank);
    let k = ((n as f64 * budget_fraction).ceil() as usize).min(n);
    let tp_budget = top_k_positives(rank, y, &idx, k);
    let flagged: Vec<usize> = (0..n).filter(|&i| p[i] >= threshold).collect();
    let tp_thr = flagged.iter().filter(|&&i| y[i]).count();
    let div = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Scores {
        roc_auc: roc_auc(rank, y),
        pr_auc: pr_auc(rank, y),
        brier: brier(p, y),
        log_loss: log_loss(p, y),
        base_rate: div(positives, n),
        budget_fraction,
        precision_at_budget: if k == 0 { 0.0 } else { tp_budget / k as f64 },
        recall_at_budget: if positives == 0 { 0.0 } else { tp_budget / positives as f64 },
        threshold,
        precision_at_threshold: div(tp_thr, flagged.len()),
        recall_at_threshold: div(tp_thr, positives),
        alerts_at_threshold: flagged.len() as u64,
        n: n as u64,
        positives: positives as u64,
    }
}

/// The positives among the top `k` rows by `rank` (`idx`: the rows in that order), the tie
/// group the cut falls in counted in proportion: its rows are alike to the score, so which of
/// them are in the top k is not the model's to say. Taken in row order, the constant baseline's
/// precision was the late share among the first shipment ids.
fn top_k_positives(rank: &[f64], y: &[bool], idx: &[usize], k: usize) -> f64 {
    if k == 0 {
        return 0.0;
    }
    let cut = rank[idx[k - 1]];
    let start = idx.iter().position(|&i| tied(rank[i], cut)).expect("the cut's own row");
    let end = start + idx[start..].iter().take_while(|&&i| tied(rank[i], cut)).count();
    let above = idx[..start].iter().filter(|&&i| y[i]).count() as f64;
    let in_tie = idx[start..end].iter().filter(|&&i| y[i]).count() as f64;
    above + in_tie * (k - start) as f64 / (end - start) as f64
}

/// Reliability table: equal-width bins of predicted probability.
pub fn reliability(p: &[f64], y: &[bool], bins: usize) -> Vec<Bin> {
    let mut n = vec![0u64; bins];
    let mut sp = vec![0.0; bins];
    let mut sy = vec![0.0; bins];
    for (p, y) in p.iter().zip(y) {
        let b = ((p * bins as f64) as usize).min(bins - 1);
        n[b] += 1;
        sp[b] += p;
        sy[b] += *y as u8 as f64;
    }
    (0..bins)
        .map(|b| Bin {
            lower: b as f64 / bins as f64,
            upper: (b + 1) as f64 / bins as f64,
            n: n[b],
            mean_predicted: (n[b] > 0).then(|| sp[b] / n[b] as f64),
            observed_rate: (n[b] > 0).then(|| sy[b] / n[b] as f64),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_random_and_constant_scores() {
        let y = [false, false, true, true];
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &y), 1.0);
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &y), 0.0);
        assert_eq!(roc_auc(&[0.5; 4], &y), 0.5);
        assert_eq!(pr_auc(&[0.1, 0.2, 0.8, 0.9], &y), 1.0);
        // A constant score's average precision is the prevalence.
        assert_eq!(pr_auc(&[0.5; 4], &y), 0.5);
    }

    /// Regression: a NaN score (the backtest pools a baseline a night could not fit as NaN)
    /// made the tie loops of the PR curve and the boosted trees' average precision spin
    /// forever. Run on a thread, so that the old behaviour fails rather than hangs the suite.
    #[test]
    fn without_positives_the_auc_are_undefined() {
        let y = [false, false, false];
        assert!(pr_auc(&[0.9, 0.5, 0.1], &y).is_nan());
        assert!(roc_auc(&[0.9, 0.5, 0.1], &y).is_nan());
        assert_eq!(pr_auc(&[0.9, 0.5, 0.1], &[true, false, false]), 1.0);
    }

    #[test]
    fn nan_scores_form_one_tie_group_and_the_metrics_finish() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let y = [true, false, true, false];
            let p = [f64::NAN, 0.2, 0.7, f64::NAN];
            let curve = pr_curve(&p, &y);
            let ap = crate::model::gbdt::average_precision(&p, &y);
            tx.send((curve.len(), roc_auc(&p, &y), ap)).unwrap();
        });
        let (points, auc, ap) = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("the metrics never finished");
        // The origin, the two NaN rows as one threshold (ranked first), then 0.7 and 0.2.
        assert_eq!(points, 4);
        // Ranks from the lowest: 0.2 (1), 0.7 (2, positive), the NaN pair tied (3.5 each, one
        // positive): U = 2 + 3.5 − 3 over 2 × 2 pairs.
        assert_eq!(auc, 0.625);
        assert!(ap.is_finite());
    }

    #[test]
    fn auc_matches_pairwise_count() {
        let p = [0.3, 0.3, 0.5, 0.1, 0.9, 0.5, 0.2];
        let y = [true, false, true, false, true, false, false];
        let mut wins = 0.0;
        let mut pairs = 0.0;
        for i in 0..p.len() {
            for j in 0..p.len() {
                if y[i] && !y[j] {
                    pairs += 1.0;
                    wins += if p[i] > p[j] {
                        1.0
                    } else if p[i] == p[j] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        assert!((roc_auc(&p, &y) - wins / pairs).abs() < 1e-12);
    }

    #[test]
    fn budget_and_reliability() {
        let p = [0.9, 0.8, 0.1, 0.05];
        let y = [true, false, true, false];
        let s = evaluate(&p, &y, 0.25, 0.5);
        assert_eq!(s.precision_at_budget, 1.0);
        assert_eq!(s.recall_at_budget, 0.5);
        assert_eq!(s.alerts_at_threshold, 2);
        let bins = reliability(&p, &y, 2);
        assert_eq!(bins[0].n, 2);
        assert_eq!(bins[1].observed_rate, Some(0.5));
    }

    /// Regression: the top of the budget took tied rows in row order, so a constant score's
    /// precision was the late share among the first rows. A tie group cut by the budget counts
    /// in proportion: a constant score's precision is the base rate, whatever the order.
    #[test]
    fn the_budget_splits_the_tie_it_cuts_in_proportion() {
        let y: Vec<bool> = (0..100).map(|i| i < 10).collect();
        let constant = vec![0.3; 100];
        for rows in [y.clone(), y.iter().rev().copied().collect()] {
            let s = evaluate(&constant, &rows, 0.05, 0.5);
            assert!((s.precision_at_budget - 0.1).abs() < 1e-12, "{}", s.precision_at_budget);
            assert!((s.recall_at_budget - 0.05).abs() < 1e-12, "{}", s.recall_at_budget);
        }
        // Two levels: the top 5 are the 4 rows above the tie and 1 of the 6 tied (3 late).
        let p = [0.9, 0.9, 0.8, 0.7, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5];
        let y = [true, false, true, true, true, false, true, false, false, true];
        let s = evaluate(&p, &y, 0.5, 0.95);
        assert!((s.precision_at_budget - (3.0 + 3.0 / 6.0) / 5.0).abs() < 1e-12, "{}", s.precision_at_budget);
    }
}
