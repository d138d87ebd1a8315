//! The late-risk model: candidates fitted with linfa on the training snapshots (logistic
//! regression, a decision tree, a random forest, and gradient-boosted trees behind linfa's
//! `Fit`), chosen on a time-based validation window, calibrated with Platt scaling, compared
//! with three baselines (the base rate, the lane-quantile rule, and a small logistic regression
//! that is the floor the chosen model must beat), and saved as JSON with everything needed to
//! refuse a mismatched binary. Features may be missing (NaN): logistic models impute the
//! training mean, the CART trees a sentinel below every value, the boosted trees learn a side.

pub mod calibrate;
pub mod gbdt;
pub mod metrics;
pub mod params;
pub mod parts;
pub mod tree;

use std::collections::BTreeMap;
use std::path::Path;

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2, ShapeBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::features::{self, FEATURE_SCHEMA_VERSION, FeatureSet, N_FEATURES, Rows, feature_index};
use crate::sampling::{hash_str, unit};
use crate::schema::MICROS_PER_DAY;
use calibrate::{Platt, logit};
use metrics::{Bin, PrPoint, Scores};
pub use params::{Candidate, ModelParams, ValidParams};
use tree::Tree;

pub const MODEL_FORMAT: &str = "lanewatch-model";
/// 2: boosted trees, missing features, the simple-logistic floor and adaptive windows.
pub const MODEL_FORMAT_VERSION: u32 = 2;

/// What the CART trees see for a missing feature: below every real value, so a split can
/// separate missing rows from the rest.
pub const MISSING: f64 = -1e12;

/// The simple-model floor's name among the baselines.
pub const SIMPLE_LOGISTIC: &str = "simple_logistic";

/// The simple-model floor: a logistic regression on these basic features.
pub const SIMPLE_FEATURES: [&str; 7] = [
    "age_days",
    "time_to_promise_days",
    "promise_horizon_days",
    "lane_late_rate",
    "seller_late_rate",
    "handling_excess_days",
    "slack_p50_days",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Estimator {
    /// linfa-logistic on standardised features; `coef` and `intercept` give log-odds of late.
    /// `features` lists the feature indices it reads (all when empty); a missing value counts
    /// as the training mean.
    Logistic {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        features: Vec<usize>,
        mean: Vec<f64>,
        scale: Vec<f64>,
        coef: Vec<f64>,
        intercept: f64,
    },
    /// Gradient-boosted trees (`gbdt`), log-odds.
    Gbdt { model: gbdt::Gbdt },
    /// A constant probability (the base-rate baseline).
    Constant { p: f64 },
    /// One decision tree (linfa-trees' split rule, `model::tree`) with leaf probabilities.
    Tree { tree: Tree },
    /// A random forest of such trees; risk is the mean of its trees' leaf probabilities.
    Forest { trees: Vec<Tree> },
    /// The lane-quantile rule: fires when the stage dwell is past the lane's p90 or the p50
    /// slack is negative. Used as a baseline and as the fallback model.
    LaneRule { p_fired: f64, p_quiet: f64 },
}

impl Estimator {
    pub fn kind(&self) -> &'static str {
        match self {
            Estimator::Logistic { features, .. } if !features.is_empty() => SIMPLE_LOGISTIC,
            Estimator::Logistic { .. } => "logistic",
            Estimator::Gbdt { .. } => "gbdt",
            Estimator::Constant { .. } => "base_rate",
            Estimator::Tree { .. } => "tree",
            Estimator::Forest { .. } => "forest",
            Estimator::LaneRule { .. } => "lane_rule",
        }
    }

    /// Whether its structure can score a row of `N_FEATURES` values: every split's children
    /// after it and among its tree's nodes (so every walk ends at a leaf), every feature read
    /// among the features, the logistic vectors of one length, probabilities in [0, 1].
    fn check(&self) -> std::result::Result<(), String> {
        let probability = |p: f64| (0.0..=1.0).contains(&p);
        match self {
            Estimator::Logistic { features, mean, scale, coef, intercept } => {
                let n = if features.is_empty() { N_FEATURES } else { features.len() };
                let ok = [mean.len(), scale.len(), coef.len()].iter().all(|&l| l == n)
                    && features.iter().all(|&f| f < N_FEATURES)
                    && intercept.is_finite();
                ok.then_some(()).ok_or_else(|| "logistic coefficients of mismatched lengths or features".into())
            }
            Estimator::Gbdt { model } => model.trees.iter().try_for_each(|t| {
                check_splits(t.nodes.len(), &|k| {
                    let n = &t.nodes[k];
                    (n.feature != gbdt::LEAF).then_some((n.feature as usize, n.left as usize, n.right as usize))
                })
            }),
            Estimator::Tree { tree } => check_tree(tree),
            Estimator::Forest { trees } if trees.is_empty() => Err("a forest without trees".into()),
            Estimator::Forest { trees } => trees.iter().try_for_each(|t| check_tree(t)),
            Estimator::Constant { p } => {
                probability(*p).then_some(()).ok_or_else(|| "a probability outside [0, 1]".into())
            }
            Estimator::LaneRule { p_fired, p_quiet } => (probability(*p_fired) && probability(*p_quiet))
                .then_some(())
                .ok_or_else(|| "a probability outside [0, 1]".into()),
        }
    }

    /// `raw` of each of `rows`, the same bits; the tree ensembles walk each tree with a block
    /// of rows at once (`walk`).
    pub fn raw_many(&self, rows: &[&[f64]]) -> Vec<f64> {
        match self {
            Estimator::Gbdt { model } => model.raw_many(rows),
            Estimator::Forest { trees } => {
                let sums = sum_over_trees(rows, trees, |tree, block| tree.p_late_many(block));
                sums.into_iter().map(|s| forest_log_odds(s, trees.len())).collect()
            }
            _ => rows.iter().map(|r| self.raw(r)).collect(),
        }
    }

    /// The uncalibrated score, on the log-odds scale.
    pub fn raw(&self, row: &[f64]) -> f64 {
        match self {
            Estimator::Logistic { features, mean, scale, coef, intercept } => {
                let x = |k: usize| {
                    let v = row[if features.is_empty() { k } else { features[k] }];
                    if v.is_nan() { mean[k] } else { v }
                };
                intercept + (0..coef.len()).map(|k| coef[k] * (x(k) - mean[k]) / scale[k]).sum::<f64>()
            }
            Estimator::Gbdt { model } => model.raw(row),
            Estimator::Constant { p } => logit(*p),
            Estimator::Tree { tree } => logit(tree.predict(row)),
            Estimator::Forest { trees } => forest_log_odds(trees.iter().map(|t| t.predict(row)).sum(), trees.len()),
            Estimator::LaneRule { p_fired, p_quiet } => logit(if rule_fires(row) { *p_fired } else { *p_quiet }),
        }
    }
}

/// `Estimator::check` of a CART tree: a node with `left` 0 is a leaf; leaves hold probabilities.
fn check_tree(tree: &Tree) -> std::result::Result<(), String> {
    if tree.nodes.iter().any(|n| !(0.0..=1.0).contains(&n.p_late)) {
        return Err("a leaf probability outside [0, 1]".into());
    }
    check_splits(tree.nodes.len(), &|k| {
        let n = &tree.nodes[k];
        (n.left != 0).then_some((n.feature as usize, n.left as usize, n.right as usize))
    })
}

/// `Estimator::check` of one tree of `n` nodes; `split(k)` is node `k`'s (feature, left, right)
/// when it is a split. Children come after their parent (the trees are stored in preorder).
fn check_splits(n: usize, split: &dyn Fn(usize) -> Option<(usize, usize, usize)>) -> std::result::Result<(), String> {
    if n == 0 {
        return Err("a tree without nodes".into());
    }
    for k in 0..n {
        if let Some((feature, left, right)) = split(k) {
            if feature >= N_FEATURES || !(k < left && left < n && k < right && right < n) {
                return Err(format!("node {k} of a tree of {n} reads feature {feature}, children {left} and {right}"));
            }
        }
    }
    Ok(())
}

/// A forest's log-odds from the sum of its `trees` trees' leaf probabilities: their mean's.
fn forest_log_odds(sum: f64, trees: usize) -> f64 {
    logit(sum / trees.max(1) as f64)
}

/// `items` split into the `n_left` that `goes_left` accepts and the others, each side in its
/// input order. Which side an item goes is a coin toss to the branch predictor, so there is no
/// branch: each item is written to both sides and kept on its own (a slot past each side's end
/// takes the other side's writes).
fn split_by(items: &[u32], n_left: usize, goes_left: impl Fn(u32) -> bool) -> (Vec<u32>, Vec<u32>) {
    let n_right = items.len() - n_left;
    let (mut l, mut r) = (vec![0u32; n_left + 1], vec![0u32; n_right + 1]);
    let (mut a, mut b) = (0usize, 0usize);
    for &i in items {
        let goes = goes_left(i) as usize;
        l[a] = i;
        r[b] = i;
        a += goes;
        b += 1 - goes;
    }
    l.truncate(n_left);
    r.truncate(n_right);
    (l, r)
}

/// Rows walked through a tree at once (`walk`).
const WALKERS: usize = 8;

/// Rows a parallel task scores with `Estimator::raw_many` (tonight's and the validation rows).
const SCORE_BLOCK: usize = 256;

/// The leaf each row of `block` (at most `WALKERS`) reaches, the rows walking side by side: one
/// row's walk is a chain of dependent loads and compares, and a block's chains overlap.
/// `next(j, k)`: the node row j goes to from node k, or None at a leaf.
fn walk(block: usize, next: impl Fn(usize, usize) -> Option<usize>) -> [usize; WALKERS] {
    let mut at = [0usize; WALKERS];
    loop {
        let mut moved = false;
        for (j, k) in at.iter_mut().enumerate().take(block) {
            if let Some(n) = next(j, *k) {
                *k = n;
                moved = true;
            }
        }
        if !moved {
            return at;
        }
    }
}

/// Each row's sum of its trees' values in tree order, as `trees.iter().map(..).sum::<f64>()`
/// adds them (from the same start), with `values(tree, block)` a tree's values for a block of
/// at most `WALKERS` rows.
fn sum_over_trees<T>(rows: &[&[f64]], trees: &[T], values: impl Fn(&T, &[&[f64]]) -> [f64; WALKERS]) -> Vec<f64> {
    let start = std::iter::empty::<f64>().sum::<f64>();
    let mut out = Vec::with_capacity(rows.len());
    for block in rows.chunks(WALKERS) {
        let mut sums = [start; WALKERS];
        for tree in trees {
            for (s, v) in sums.iter_mut().zip(values(tree, block)) {
                *s += v;
            }
        }
        out.extend_from_slice(&sums[..block.len()]);
    }
    out
}

pub fn rule_fires(row: &[f64]) -> bool {
    thread_local! {
        static IDX: (usize, usize) = (feature_index("dwell_vs_p90"), feature_index("slack_p50_days"));
    }
    IDX.with(|(d, s)| row[*d] > 1.0 || row[*s] < 0.0)
}

/// f64 fields that may be NaN (an AUC with one class) are written as JSON null.
pub(crate) mod nan {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() { s.serialize_f64(*v) } else { s.serialize_none() }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Evaluation {
    #[serde(with = "nan")]
    pub roc_auc: f64,
    #[serde(with = "nan")]
    pub pr_auc: f64,
    #[serde(with = "nan")]
    pub brier: f64,
    #[serde(with = "nan")]
    pub log_loss: f64,
    pub base_rate: f64,
    pub budget_fraction: f64,
    pub precision_at_budget: f64,
    pub recall_at_budget: f64,
    pub threshold: f64,
    pub precision_at_threshold: f64,
    pub recall_at_threshold: f64,
    pub alerts_at_threshold: u64,
    pub n: u64,
    pub positives: u64,
}

impl From<Scores> for Evaluation {
    fn from(s: Scores) -> Self {
        Evaluation {
            roc_auc: s.roc_auc,
            pr_auc: s.pr_auc,
            brier: s.brier,
            log_loss: s.log_loss,
            base_rate: s.base_rate,
            budget_fraction: s.budget_fraction,
            precision_at_budget: s.precision_at_budget,
            recall_at_budget: s.recall_at_budget,
            threshold: s.threshold,
            precision_at_threshold: s.precision_at_threshold,
            recall_at_threshold: s.recall_at_threshold,
            alerts_at_threshold: s.alerts_at_threshold,
            n: s.n,
            positives: s.positives,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    pub chosen_model: String,
    /// Why the lane-quantile rule replaced a fitted model, if it did.
    pub fallback: Option<String>,
    pub n_train: u64,
    pub n_train_sampled: u64,
    pub n_valid: u64,
    pub train_late_rate: f64,
    pub valid_late_rate: f64,
    /// The chosen model on the validation window (calibration cross-fitted, see README).
    pub model: Option<Evaluation>,
    pub candidates: BTreeMap<String, Evaluation>,
    pub baselines: BTreeMap<String, Evaluation>,
    pub calibration_bins: Vec<Bin>,
    pub pr_curves: BTreeMap<String, Vec<PrPoint>>,
    /// The windows this night actually used (adaptive: see README, "Model").
    pub windows: Windows,
    /// Whether the chosen model beat the simple-logistic floor on validation PR-AUC.
    pub floor: Option<Floor>,
    /// Candidates whose fit failed (left out of the choice), with why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failed_candidates: BTreeMap<String, String>,
    /// How the boosted trees' rounds were chosen, when they were fitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gbdt_rounds: Option<GbdtRounds>,
    pub hyper_parameters: ModelParams,
}

/// How many rounds the boosted trees ran and what chose them. Early stopping needs both classes
/// among its rows and among the sample rows before them; without them the trees boost up to
/// `gbdt.max_rounds`, which a person reading the model must be able to see.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GbdtRounds {
    /// Trees in the fitted model.
    pub trees: usize,
    /// Rows early stopping watched (the latest training resolutions); 0 when it was off.
    pub early_stopping_rows: u64,
    /// Why early stopping was off, or null when it chose the rounds.
    pub early_stopping_off: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Windows {
    /// Days of shipment creation the training snapshots come from.
    pub training_days: u32,
    /// Days of resolutions the validation window covers.
    pub validation_days: u32,
    /// Resolved shipments (and late ones) in the validation window.
    pub validation_shipments: u64,
    pub validation_late: u64,
    /// Lane statistics windows at the cutoff: shortest, median, longest (days).
    #[serde(with = "nan")]
    pub lane_days_min: f64,
    #[serde(with = "nan")]
    pub lane_days_median: f64,
    #[serde(with = "nan")]
    pub lane_days_max: f64,
    /// Lanes whose window reached back past `lanes.window_days`.
    pub lanes_extended: u64,
}

/// Whether candidate `a` is chosen over `b`: the higher validation PR-AUC, then the lower
/// Brier score. An undefined PR-AUC (no late parcels in the validation window) ranks below any
/// defined one and ties with another undefined one, so the Brier score still decides.
fn beats(a: &Scores, b: &Scores) -> bool {
    let key = |x: f64| if x.is_nan() { f64::NEG_INFINITY } else { x };
    let (pa, pb) = (key(a.pr_auc), key(b.pr_auc));
    pa > pb || (pa == pb && key(-a.brier) > key(-b.brier))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Floor {
    pub baseline: String,
    #[serde(with = "nan")]
    pub baseline_pr_auc: f64,
    #[serde(with = "nan")]
    pub model_pr_auc: f64,
    pub beaten: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Window {
    pub snapshots_of_shipments_created_from: String,
    pub train_resolved_before: String,
    pub valid_resolved_from: String,
    pub valid_resolved_before: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SavedModel {
    pub format: String,
    pub format_version: u32,
    pub feature_schema_version: u32,
    pub features: Vec<String>,
    pub as_of: String,
    pub window: Window,
    pub seed: u64,
    pub kind: String,
    pub estimator: Estimator,
    pub calibration: Platt,
    /// The baselines as fitted this night, so evaluations can score them beside the model.
    pub baseline_models: BTreeMap<String, Calibrated>,
    pub metrics: Metrics,
}

/// A model as trained on its training night (`model.retrain_every_days`), with the digest of the
/// input known before that night's cutoff it was trained from: a later night of the same
/// schedule scores with it when its own input gives the same digest there (`night::compute`).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedOn {
    pub night: crate::calendar::Night,
    pub digest: crate::features::reuse::Digest,
    pub model: SavedModel,
}

/// An estimator with its calibration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Calibrated {
    pub estimator: Estimator,
    pub calibration: Platt,
}

impl Calibrated {
    pub fn risk(&self, row: &[f64]) -> f64 {
        self.calibration.apply(self.estimator.raw(row))
    }
}

impl SavedModel {
    pub fn risk(&self, row: &[f64]) -> f64 {
        self.calibration.apply(self.estimator.raw(row))
    }

    pub fn predict(&self, rows: &Rows) -> Vec<f64> {
        rows.x
            .par_chunks(N_FEATURES * SCORE_BLOCK)
            .flat_map_iter(|x| {
                let block: Vec<&[f64]> = x.chunks(N_FEATURES).collect();
                self.estimator.raw_many(&block).into_iter().map(|z| self.calibration.apply(z))
            })
            .collect()
    }

    /// Each baseline's calibrated risk for `rows`, by name.
    pub fn predict_baselines(&self, rows: &Rows) -> BTreeMap<String, Vec<f64>> {
        self.baseline_models
            .iter()
            .map(|(name, m)| (name.clone(), rows.x.par_chunks(N_FEATURES).map(|r| m.risk(r)).collect()))
            .collect()
    }

    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut v = serde_json::to_vec_pretty(self).map_err(Error::internal)?;
        v.push(b'\n');
        Ok(v)
    }

    /// Loads a model and refuses it unless its feature schema is exactly this binary's.
    pub fn load(path: &Path) -> Result<SavedModel> {
        // A folder where the file should be is a missing model (66), as a missing input is.
        let bytes = crate::io::read_regular(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::MissingInput { path: path.to_path_buf() },
            _ if path.is_dir() => Error::MissingInput { path: path.to_path_buf() },
            _ => Error::Model { path: path.to_path_buf(), message: format!("cannot read: {e}") },
        })?;
        SavedModel::parse(&bytes, path)
    }

    /// A model from its JSON (`path` names where it came from), checked as `load` checks it.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<SavedModel> {
        let refuse = |m: String| Error::Model { path: path.to_path_buf(), message: crate::error::one_line(m) };
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| refuse(format!("not a model file: {e}")))?;
        if value.get("format").and_then(|v| v.as_str()) != Some(MODEL_FORMAT) {
            return Err(refuse("not a lanewatch model file".into()));
        }
        let version = value.get("feature_schema_version").and_then(|v| v.as_u64());
        if version != Some(FEATURE_SCHEMA_VERSION as u64) {
            return Err(refuse(format!(
                "feature schema version {} does not match this binary's {FEATURE_SCHEMA_VERSION}; retrain with `lanewatch train`",
                version.map(|v| v.to_string()).unwrap_or_else(|| "missing".into())
            )));
        }
        let model: SavedModel = serde_json::from_value(value).map_err(|e| refuse(format!("malformed model: {e}")))?;
        if model.features != features::feature_names() {
            let first = model
                .features
                .iter()
                .zip(features::feature_names())
                .position(|(a, b)| *a != b)
                .unwrap_or(model.features.len().min(N_FEATURES));
            return Err(refuse(format!(
                "feature list differs from this binary's ({} vs {N_FEATURES} features, first difference at position {first}); retrain",
                model.features.len()
            )));
        }
        if model.format_version != MODEL_FORMAT_VERSION {
            return Err(refuse(format!("model format {} is not {MODEL_FORMAT_VERSION}", model.format_version)));
        }
        // The estimators' structure, before any row walks it: a damaged or hand-edited file
        // whose node points back at itself would loop forever, one past its nodes or features
        // would panic; both are a bad model file (exit 65).
        let models = std::iter::once(("the model", &model.estimator, &model.calibration))
            .chain(model.baseline_models.iter().map(|(n, m)| (n.as_str(), &m.estimator, &m.calibration)));
        for (name, estimator, calibration) in models {
            estimator
                .check()
                .and_then(|()| {
                    (calibration.a.is_finite() && calibration.b.is_finite())
                        .then_some(())
                        .ok_or_else(|| "its calibration is not finite".to_string())
                })
                .map_err(|why| refuse(format!("malformed model: {name}: {why}")))?;
        }
        Ok(model)
    }
}

fn date(micros: i64) -> String {
    crate::calendar::date_of_micros(micros).to_string()
}

fn matrix<'a>(idx: &[usize], row: impl Fn(usize) -> &'a [f64]) -> Array2<f64> {
    let mut x = Array2::zeros((idx.len(), N_FEATURES));
    for (r, &i) in idx.iter().enumerate() {
        x.row_mut(r).assign(&ndarray::ArrayView1::from(row(i)));
    }
    x
}

/// Rows the rule baseline is fitted on: a uniform sample of the training rows.
const RULE_ROWS: usize = 50_000;

/// Rows of the time-split early-stopping set the boosted trees watch (the latest training
/// resolutions, never the validation window).
const EARLY_STOP_ROWS: usize = 20_000;

/// The validation window in days: `holdout_days`, or longer until the shipments resolved in it
/// number `min_valid_shipments` with `min_valid_class` of each class, while what is left before
/// it keeps `min_train_shipments`. When the whole history is too short for both, the newest
/// 30 % of its shipments validate (even under `holdout_days`), so a young history gets a model
/// rather than the rule.
fn validation_days(fs: &FeatureSet, p: &ValidParams) -> u32 {
    validation_window(&resolution_counts(fs), p)
}

/// The training rows' shipments by the day they resolved, as far back as the oldest (one
/// promised before its creation resolves then): what the validation window is decided from.
/// A sharded night's parts each count their own; the counts add (`DayCounts::merge`, sized
/// alike by `last_day`).
fn resolution_counts(fs: &FeatureSet) -> crate::features::days::DayCounts {
    resolution_counts_to(fs, resolution_bound([resolution_last(fs)]))
}

/// The day every part counts resolutions up to (`resolution_counts_to`): the latest of the
/// parts' `resolution_last`, or 1 without training rows.
pub fn resolution_bound(lasts: impl IntoIterator<Item = Option<u32>>) -> u32 {
    lasts.into_iter().flatten().max().unwrap_or(1)
}

/// Where the validation window `valid_days` long before `cutoff` starts: training rows resolved
/// before it, validation rows from it.
pub fn holdout_start(cutoff: i64, valid_days: u32) -> i64 {
    cutoff - valid_days as i64 * MICROS_PER_DAY
}

/// The most days before the cutoff a training row resolved (`None` without rows): the parts of
/// a sharded night count up to the largest of theirs.
pub fn resolution_last(fs: &FeatureSet) -> Option<u32> {
    let cutoff = fs.cutoff();
    fs.train.resolved_at.par_iter().map(|&t| crate::features::days::days_before(cutoff, t)).max()
}

/// `resolution_counts` with buckets up to `last` days before the cutoff.
pub fn resolution_counts_to(fs: &FeatureSet, last: u32) -> crate::features::days::DayCounts {
    use crate::features::days::{DayCounts, days_before};
    let rows = &fs.train;
    let cutoff = fs.cutoff();
    // A shipment's rows are consecutive: its first row counts it.
    DayCounts::count(rows.len(), last, |r| {
        (r == 0 || rows.ship[r] != rows.ship[r - 1]).then(|| (days_before(cutoff, rows.resolved_at[r]), rows.label[r]))
    })
}

/// `validation_days` from the shipments' counts by day of resolution.
pub fn validation_window(counts: &crate::features::days::DayCounts, p: &ValidParams) -> u32 {
    let total = counts.total() as usize;
    let want_train = p.min_train_shipments.max(p.min_train_rows);
    if total < want_train + p.min_valid_shipments
        && total > 0
        && total - (counts.within(p.holdout_days) as usize) < want_train
    {
        // Young history: split it 70/30 in time.
        let k = (total * 3 / 10).max(1).min(total - 1);
        return counts.day_of_kth(k.max(1) as u64).unwrap_or(1).max(1);
    }
    // The window takes whole days, nearest first, beyond `holdout_days` while it lacks
    // shipments of either class and what is left before it keeps enough for training.
    let (mut n, mut late) = (0usize, 0usize);
    let mut days = p.holdout_days;
    for (d, day_n, day_late) in counts.days() {
        if d > days {
            if n >= p.min_valid_shipments && late >= p.min_valid_class && n - late >= p.min_valid_class {
                break;
            }
            // What training keeps once this day validates (not before it: the guard was a
            // day short and could leave training nothing).
            if total - n - (day_n as usize) < want_train {
                break;
            }
            days = d;
        }
        n += day_n as usize;
        late += day_late as usize;
    }
    days
}

/// The training rows `train_on` reads, in the order of (shipment id, time): every row of one
/// feature set (`train`), or the rows the parts of a sharded night offer (`train_parts`).
pub trait Pool: Sync {
    fn len(&self) -> usize;
    fn id(&self, r: usize) -> &str;
    fn t(&self, r: usize) -> i64;
    fn label(&self, r: usize) -> bool;
    fn resolved_at(&self, r: usize) -> i64;
    /// The features of rows `idx`, row-major.
    fn features(&self, idx: &[usize]) -> Vec<f64>;
}

/// Every training row of one feature set.
struct WholePool<'a> {
    fs: &'a FeatureSet,
    ids: polars::prelude::StringChunked,
}

impl Pool for WholePool<'_> {
    fn len(&self) -> usize {
        self.fs.train.len()
    }
    fn id(&self, r: usize) -> &str {
        self.ids.get(self.fs.train.ship[r] as usize).unwrap_or("")
    }
    fn t(&self, r: usize) -> i64 {
        self.fs.train.t[r]
    }
    fn label(&self, r: usize) -> bool {
        self.fs.train.label[r]
    }
    fn resolved_at(&self, r: usize) -> i64 {
        self.fs.train.resolved_at[r]
    }
    fn features(&self, idx: &[usize]) -> Vec<f64> {
        self.fs.features_of(&self.fs.train, idx)
    }
}

/// Counts over every training row that `train_on` reads where its pool may hold only some
/// rows; a sharded night's parts add theirs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SplitCounts {
    /// Rows resolved before the validation window, and the late ones among them.
    pub n_train: usize,
    pub n_pos: usize,
    /// Rows resolved in the validation window, their shipments and the late ones.
    pub n_valid: usize,
    pub valid_shipments: u64,
    pub valid_late: u64,
    /// The earliest row's time.
    pub earliest_t: Option<i64>,
}
crate::codec_struct!(SplitCounts { n_train, n_pos, n_valid, valid_shipments, valid_late, earliest_t });

impl SplitCounts {
    /// The counts of `fs`'s training rows with the validation window from `holdout_start`.
    pub fn of(fs: &FeatureSet, holdout_start: i64) -> SplitCounts {
        let rows = &fs.train;
        let mut c = SplitCounts { earliest_t: rows.t.iter().copied().min(), ..SplitCounts::default() };
        for r in 0..rows.len() {
            if rows.resolved_at[r] < holdout_start {
                c.n_train += 1;
                c.n_pos += rows.label[r] as usize;
            } else {
                c.n_valid += 1;
                // A shipment's rows are consecutive and share its resolution: its first row
                // counts it.
                if r == 0 || rows.ship[r] != rows.ship[r - 1] {
                    c.valid_shipments += 1;
                    c.valid_late += rows.label[r] as u64;
                }
            }
        }
        c
    }

    pub fn add(&mut self, o: &SplitCounts) {
        self.n_train += o.n_train;
        self.n_pos += o.n_pos;
        self.n_valid += o.n_valid;
        self.valid_shipments += o.valid_shipments;
        self.valid_late += o.valid_late;
        self.earliest_t = self.earliest_t.into_iter().chain(o.earliest_t).min();
    }
}

/// What `train_on` reads of the night besides its pool.
pub struct TrainFrame {
    pub night: crate::calendar::Night,
    pub train_window_days: u32,
    /// The lane windows at the cutoff (`lane_windows`).
    pub lanes: Windows,
    pub valid_days: u32,
    pub split: SplitCounts,
}

/// Fits the candidates and returns the chosen, calibrated model with its metrics.
pub fn train(fs: &FeatureSet, p: &ValidParams) -> Result<SavedModel> {
    if fs.purpose != crate::features::Purpose::Train {
        return Err(Error::internal("a model was to be trained on features built for scoring alone"));
    }
    let valid_days = validation_days(fs, p);
    let split = SplitCounts::of(fs, holdout_start(fs.cutoff(), valid_days));
    let pool = WholePool { fs, ids: fs.prep.shipments.column("shipment_id")?.str()?.clone() };
    let frame = TrainFrame {
        night: fs.night(),
        train_window_days: fs.train_window_days,
        lanes: lane_windows(fs.lanes().iter().map(|l| l.window_days), p.lane_window_days),
        valid_days,
        split,
    };
    train_on(&pool, &frame, p)
}

/// `train` on the rows of `pool`, with the counts of every training row in `frame`.
pub fn train_on(pool: &dyn Pool, frame: &TrainFrame, p: &ValidParams) -> Result<SavedModel> {
    let t0 = std::time::Instant::now();
    let cutoff = frame.night.cutoff();
    let valid_days = frame.valid_days;
    let holdout_start = holdout_start(cutoff, valid_days);
    if pool.len() > u32::MAX as usize {
        return Err(crate::error::Error::internal(format!("{} training rows: more than 2^32", pool.len())));
    }
    let Drawn { va, samples: [rule_rows, pos, neg, early], es_start } = draw(pool, cutoff, valid_days, &frame.split, p);
    crate::memory::log_step("train", "samples ordered", t0);
    let mut windows = frame.lanes.clone();
    windows.training_days = frame.train_window_days;
    windows.validation_days = valid_days;
    windows.validation_shipments = frame.split.valid_shipments;
    windows.validation_late = frame.split.valid_late;
    let y_va: Vec<bool> = va.iter().map(|&r| pool.label(r)).collect();
    let (n_train, pos_tr) = (frame.split.n_train, frame.split.n_pos);
    let pos_va = y_va.iter().filter(|v| **v).count();
    let rate = |pos: usize, n: usize| if n == 0 { 0.0 } else { pos as f64 / n as f64 };
    let train_late_rate = rate(pos_tr, n_train);

    let first_created =
        cutoff - (frame.split.earliest_t.map_or(0, |t| cutoff - t) / MICROS_PER_DAY + 1) * MICROS_PER_DAY;
    let window = Window {
        snapshots_of_shipments_created_from: date(first_created.min(cutoff)),
        train_resolved_before: date(holdout_start),
        valid_resolved_from: date(holdout_start),
        valid_resolved_before: date(cutoff),
    };

    // Only when the whole history (not a fixed window) lacks data does the rule take over.
    let fallback = if n_train < p.min_train_rows {
        Some(format!("only {n_train} training rows in the whole history (min_train_rows {})", p.min_train_rows))
    } else if pos_tr < p.min_class_rows || n_train - pos_tr < p.min_class_rows {
        Some(format!(
            "training rows have {pos_tr} late and {} on-time in the whole history (min_class_rows {})",
            n_train - pos_tr,
            p.min_class_rows
        ))
    } else if pos_va == 0 || pos_va == va.len() {
        Some(format!(
            "validation window has a single class ({} rows, {pos_va} late) although it reached back {valid_days} days",
            va.len()
        ))
    } else {
        None
    };

    // Only the rows the model reads get features: the class-balanced training sample, a
    // uniform sample for the rule baseline, the early-stopping rows and the validation rows.
    // Class balance by resampling: late rows are kept (up to a quarter of the cap) and on-time
    // rows are drawn to at most NEG_PER_POS per late row; Platt scaling on the untouched
    // validation window maps the scores back to true probabilities.
    let mut sample = pos;
    sample.extend(neg);
    sample.sort_unstable();
    let mut early = early;
    early.sort_unstable();
    let mut need: Vec<usize> = sample.iter().chain(&rule_rows).chain(&va).chain(&early).copied().collect();
    need.sort_unstable();
    need.dedup();
    let feats = pool.features(&need);
    crate::memory::log_step("train", "features of the rows read", t0);
    let row = |r: usize| -> &[f64] {
        let k = need.binary_search(&r).expect("features computed for every row read");
        &feats[k * N_FEATURES..(k + 1) * N_FEATURES]
    };

    // Calibration for the reported metrics is cross-fitted over two halves of the validation
    // shipments; the saved calibrator is then fitted on the whole window.
    let fold: Vec<bool> = va.iter().map(|&r| hash_str(p.seed, pool.id(r)) & 1 == 1).collect();
    let x_va_rows: Vec<&[f64]> = va.iter().map(|&r| row(r)).collect();
    // Ranked by the raw scores, calibrated by the cross-fitted probabilities
    // (`metrics::evaluate_ranked`).
    let eval =
        |raw: &[f64], s: &[f64]| metrics::evaluate_ranked(raw, s, &y_va, p.alert_budget_fraction, p.alert_threshold);

    // Baselines are fitted on training rows and scored on the validation rows, beside the
    // candidates' fits (below) when there are any: on its own the step kept one core busy.
    let y_rule: Vec<bool> = rule_rows.iter().map(|&r| pool.label(r)).collect();
    let rule = fit_rule(&rule_rows, &y_rule, &row);
    let fit_baselines = || -> Result<Baselines> {
        let mut baseline_fits: Vec<(Estimator, bool)> =
            vec![(Estimator::Constant { p: train_late_rate.clamp(1e-6, 1.0 - 1e-6) }, false), (rule.clone(), false)];
        let y_sample: Vec<bool> = sample.iter().map(|&r| pool.label(r)).collect();
        let mut out = Baselines::default();
        if y_sample.iter().any(|v| *v) && y_sample.iter().any(|v| !*v) {
            // A fit that fails (LBFGS's line search can) or panics costs the night its floor,
            // not the night: it is named in `failed_candidates` and the manifest warns.
            match caught(|| fit_simple_logistic(&matrix(&sample, &row), &y_sample, p), SIMPLE_LOGISTIC) {
                Ok(est) => baseline_fits.push((est, true)),
                Err(e) => out.failed = Some(crate::error::one_line(e.to_string())),
            }
        }
        for (est, calibrate_it) in baseline_fits {
            let name = est.kind().to_string();
            let raw: Vec<f64> = x_va_rows.iter().map(|r| est.raw(r)).collect();
            // The simple logistic regression is calibrated like a candidate (its scores come
            // from a class-balanced sample); the rule and the base rate are probabilities already.
            // Ranked as the candidates are: by the raw scores; the curve at the saved calibration.
            let (scores, platt, rank, curve) = if calibrate_it {
                let platt = Platt::fit(&raw, &y_va);
                let curve: Vec<f64> = raw.iter().map(|&z| platt.apply(z)).collect();
                (cross_fit(&raw, &y_va, &fold), platt, raw.clone(), curve)
            } else {
                let probabilities: Vec<f64> = raw.iter().map(|&z| calibrate::sigmoid(z)).collect();
                (probabilities.clone(), Platt::identity(), probabilities.clone(), probabilities)
            };
            out.scores.insert(name.clone(), Evaluation::from(eval(&rank, &scores)));
            out.pr_curves.insert(name.clone(), metrics::thin_curve(&metrics::pr_curve(&curve, &y_va), 200));
            out.models.insert(name, Calibrated { estimator: est, calibration: platt });
        }
        Ok(out)
    };
    let new_metrics = |baselines, pr_curves| Metrics {
        chosen_model: "lane_rule".into(),
        fallback: fallback.clone(),
        n_train: n_train as u64,
        n_train_sampled: 0,
        n_valid: va.len() as u64,
        train_late_rate,
        valid_late_rate: rate(pos_va, va.len()),
        model: None,
        candidates: BTreeMap::new(),
        baselines,
        calibration_bins: vec![],
        pr_curves,
        windows: windows.clone(),
        floor: None,
        failed_candidates: BTreeMap::new(),
        gbdt_rounds: None,
        hyper_parameters: (**p).clone(),
    };

    if fallback.is_some() {
        let Baselines { scores, pr_curves, models: baseline_models, failed } = fit_baselines()?;
        crate::memory::log_step("train", "baselines", t0);
        let mut metrics = new_metrics(scores, pr_curves);
        metrics.failed_candidates.extend(failed.map(|why| (SIMPLE_LOGISTIC.to_string(), why)));
        // The saved rule's probabilities come from all labelled rows read, smoothed towards
        // fixed priors. Its reported metrics are the rule fitted on the training rows alone,
        // scored on the validation rows it has not seen, as a candidate's are: the saved
        // rule has seen them, and on its own rows it looked better than it will at night.
        let all: Vec<usize> = rule_rows.iter().chain(&va).copied().collect();
        let y_all: Vec<bool> = all.iter().map(|&r| pool.label(r)).collect();
        let saved_rule = fit_rule(&all, &y_all, &row);
        let s: Vec<f64> = x_va_rows.iter().map(|r| calibrate::sigmoid(rule.raw(r))).collect();
        if !va.is_empty() {
            metrics.model = Some(eval(&s, &s).into());
            metrics.calibration_bins = metrics::reliability(&s, &y_va, p.calibration_bins);
        }
        return Ok(SavedModel {
            format: MODEL_FORMAT.into(),
            format_version: MODEL_FORMAT_VERSION,
            feature_schema_version: FEATURE_SCHEMA_VERSION,
            features: features::feature_names(),
            as_of: frame.night.to_string(),
            window,
            seed: p.seed,
            kind: saved_rule.kind().into(),
            estimator: saved_rule,
            calibration: Platt::identity(),
            baseline_models,
            metrics,
        });
    }

    let x = matrix(&sample, &row);
    let y: Vec<bool> = sample.iter().map(|&r| pool.label(r)).collect();
    // The early-stopping rows are kept out of the boosted trees' first fit (the sample draws from
    // the same training period), which picks the number of rounds; the refit uses every row.
    let early_set = EarlyStop {
        x: matrix(&early, &row),
        y: early.iter().map(|&r| pool.label(r)).collect(),
        in_period: sample.iter().map(|&r| pool.resolved_at(r) >= es_start).collect(),
    };

    // Fitted longest first (the boosted trees' rounds are sequential, so they set the stage's
    // length unless they start at once; the others share the second core), then listed back in
    // the configured order, which the choice below reads. Each candidate is scored on the
    // validation rows as soon as it is fitted, while the others still fit.
    let mut order: Vec<usize> = (0..p.candidates.len()).collect();
    order.sort_by_key(|&k| fit_cost_rank(p.candidates[k]));
    let fit_all = || -> Vec<(usize, std::result::Result<Scored, (Candidate, Error)>)> {
        order
            .par_iter()
            .map(|&k| {
                let c = p.candidates[k];
                let t = std::time::Instant::now();
                // A candidate whose fit fails or panics loses its place in the choice; the
                // others still compete.
                let e = caught(|| fit_candidate(c, &x, &y, &early_set, p), c.name())
                    .map(|(est, rounds)| {
                        let raw: Vec<f64> =
                            x_va_rows.par_chunks(SCORE_BLOCK).flat_map_iter(|rows| est.raw_many(rows)).collect();
                        let crossed = cross_fit(&raw, &y_va, &fold);
                        let s = eval(&raw, &crossed);
                        Scored { est, rounds, raw, crossed, s }
                    })
                    .map_err(|e| (c, e));
                tracing::debug!(candidate = c.name(), rows = x.nrows(), seconds = t.elapsed().as_secs_f64(), "fitted");
                (k, e)
            })
            .collect()
    };
    let (b, mut fitted) = rayon::join(fit_baselines, fit_all);
    let Baselines { scores, pr_curves, models: baseline_models, failed } = b?;
    let mut metrics = new_metrics(scores, pr_curves);
    metrics.failed_candidates.extend(failed.map(|why| (SIMPLE_LOGISTIC.to_string(), why)));
    metrics.n_train_sampled = sample.len() as u64;
    fitted.sort_by_key(|f| f.0);

    crate::memory::log_step("train", "candidates fitted", t0);
    let mut best: Option<Scored> = None;
    for scored in fitted.into_iter().map(|f| f.1) {
        let scored = match scored {
            Ok(e) => e,
            Err((c, e)) => {
                tracing::warn!("model candidate {c} left out: {e}");
                metrics.failed_candidates.insert(c.name().to_string(), crate::error::one_line(e.to_string()));
                continue;
            }
        };
        metrics.candidates.insert(scored.est.kind().to_string(), scored.s.clone().into());
        if scored.rounds.is_some() {
            metrics.gbdt_rounds = scored.rounds.clone();
        }
        let better = match &best {
            None => true,
            Some(b) => beats(&scored.s, &b.s),
        };
        if better {
            best = Some(scored);
        }
    }
    let best = best.map(|b| {
        let platt = Platt::fit(&b.raw, &y_va);
        (b.est, platt, b.crossed, b.s, b.raw)
    });
    let (est, platt, crossed, s, est_raw) = best.ok_or_else(|| {
        Error::internal(match metrics.failed_candidates.iter().next() {
            Some((c, why)) => format!("every model candidate failed (first, {c}: {why})"),
            None => "no model candidates".into(),
        })
    })?;
    metrics.chosen_model = est.kind().into();
    if let Some(b) = metrics.baselines.get(SIMPLE_LOGISTIC) {
        metrics.floor = Some(Floor {
            baseline: SIMPLE_LOGISTIC.into(),
            baseline_pr_auc: b.pr_auc,
            model_pr_auc: s.pr_auc,
            beaten: s.pr_auc > b.pr_auc,
        });
    }
    metrics.model = Some(s.into());
    metrics.calibration_bins = metrics::reliability(&crossed, &y_va, p.calibration_bins);
    // In the model's order, at the saved calibration's probabilities (the order of the raw
    // scores when the calibration is increasing, as fitted ones are).
    let ranked: Vec<f64> = est_raw.iter().map(|&z| platt.apply(z)).collect();
    metrics.pr_curves.insert("model".into(), metrics::thin_curve(&metrics::pr_curve(&ranked, &y_va), 200));
    Ok(SavedModel {
        format: MODEL_FORMAT.into(),
        format_version: MODEL_FORMAT_VERSION,
        feature_schema_version: FEATURE_SCHEMA_VERSION,
        features: features::feature_names(),
        as_of: frame.night.to_string(),
        window,
        seed: p.seed,
        kind: est.kind().into(),
        estimator: est,
        calibration: platt,
        baseline_models,
        metrics,
    })
}

/// The baselines' validation scores, curves and fitted models, by name.
#[derive(Default)]
struct Baselines {
    scores: BTreeMap<String, Evaluation>,
    pr_curves: BTreeMap<String, Vec<metrics::PrPoint>>,
    models: BTreeMap<String, Calibrated>,
    /// Why the simple-logistic floor could not be fitted, when it could not.
    failed: Option<String>,
}

/// A fit whose panic is its error: a learner that panics on some data (the trees assert, as
/// linfa-trees does, that a side's weight is positive, which f32 sums can break on large
/// samples) loses its place instead of failing the night.
fn caught<T>(fit: impl FnOnce() -> Result<T>, name: &str) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(fit)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the learner panicked".into());
        Err(Error::internal(format!("{name}: {why}")))
    })
}

/// A fitted candidate with its raw and cross-fitted validation scores and their evaluation.
struct Scored {
    est: Estimator,
    /// The boosted trees' rounds, for that candidate.
    rounds: Option<GbdtRounds>,
    raw: Vec<f64>,
    crossed: Vec<f64>,
    s: Scores,
}

/// The lane statistics windows at the cutoff: shortest, median and longest, and how many lanes
/// reached back past `configured` (`lanes.window_days`; not past the shortest window, which is
/// itself extended when every lane needed more history).
pub fn lane_windows(window_days: impl Iterator<Item = f64>, configured: u32) -> Windows {
    let mut d: Vec<f64> = window_days.filter(|v| v.is_finite()).collect();
    d.sort_by(f64::total_cmp);
    let min_days = d.first().copied().unwrap_or(f64::NAN);
    Windows {
        lane_days_min: min_days,
        lane_days_median: if d.is_empty() { f64::NAN } else { d[d.len() / 2] },
        lane_days_max: d.last().copied().unwrap_or(f64::NAN),
        lanes_extended: d.iter().filter(|&&v| v > configured as f64 + 1e-9).count() as u64,
        ..Windows::default()
    }
}

fn cross_fit(raw: &[f64], y: &[bool], fold: &[bool]) -> Vec<f64> {
    let mut out = vec![0.0; raw.len()];
    for side in [false, true] {
        let (fit_idx, apply_idx): (Vec<usize>, Vec<usize>) = (0..raw.len()).partition(|&i| fold[i] != side);
        let s: Vec<f64> = fit_idx.iter().map(|&i| raw[i]).collect();
        let t: Vec<bool> = fit_idx.iter().map(|&i| y[i]).collect();
        let c = Platt::fit(&s, &t);
        for i in apply_idx {
            out[i] = c.apply(raw[i]);
        }
    }
    out
}

/// The lane-quantile rule with the late rate among rows where it fires and where it does not,
/// smoothed towards 0.6 and 0.08 so it behaves sensibly on tiny data.
fn fit_rule<'a>(idx: &[usize], y: &[bool], row: impl Fn(usize) -> &'a [f64]) -> Estimator {
    let (mut nf, mut pf, mut nq, mut pq) = (0.0, 0.0, 0.0, 0.0);
    for (k, &r) in idx.iter().enumerate() {
        if rule_fires(row(r)) {
            nf += 1.0;
            pf += y[k] as u8 as f64;
        } else {
            nq += 1.0;
            pq += y[k] as u8 as f64;
        }
    }
    let prior = 10.0;
    Estimator::LaneRule { p_fired: (pf + prior * 0.6) / (nf + prior), p_quiet: (pq + prior * 0.08) / (nq + prior) }
}

/// The rows `train_on` reads of a pool: its validation rows as the keep rate leaves them, and
/// the samples of its training rows (rule baseline, late, on-time, early stopping).
struct Drawn {
    va: Vec<usize>,
    samples: [Vec<usize>; 4],
    /// Where the early-stopping rows start (the boosted trees' time split).
    es_start: i64,
}

impl Drawn {
    /// Every row drawn (validation or any sample), once, ascending.
    fn rows(self) -> Vec<usize> {
        let mut rows: Vec<usize> = self.samples.into_iter().flatten().chain(self.va).collect();
        rows.sort_unstable();
        rows.dedup();
        rows
    }
}

/// `Drawn` for `pool`, with the validation window of `valid_days` before `cutoff` and the
/// counts over every training row in `split`. A sharded night's part draws the same from its
/// own rows (`parts::offer`): the rows the whole network's draw takes are among the parts'.
fn draw(pool: &dyn Pool, cutoff: i64, valid_days: u32, split: &SplitCounts, p: &ValidParams) -> Drawn {
    let holdout_start = holdout_start(cutoff, valid_days);
    // Training rows as u32 (17M at 10M shipments: half the memory of usize indices).
    let (tr, va): (Vec<u32>, Vec<u32>) =
        (0..pool.len() as u32).partition(|&r| pool.resolved_at(r as usize) < holdout_start);
    let mut va: Vec<usize> = va.into_iter().map(|r| r as usize).collect();
    // A large validation window is sampled by shipment (all of a shipment's snapshots or none),
    // by a seeded hash: selection and calibration need tens of thousands of rows, not millions.
    if split.n_valid > p.max_valid_rows {
        let keep = p.max_valid_rows as f64 / split.n_valid as f64;
        va.retain(|&r| unit(hash_str(p.seed ^ 0x7a11d, pool.id(r))) < keep);
    }
    // Training rows are drawn in the order of a seeded hash, so the samples are reproducible and
    // independent of row order: each sample is the first rows of its kind in (key, row) order,
    // picked in one parallel pass with a bounded heap per sample (`first_by_key`), which gives
    // the rows sorting every training row by key gave (17M at 10M shipments: two seconds and
    // 0.3 GB).
    let (take_pos, take_neg) = class_sample_sizes(split, p);
    // The boosted trees stop early on the latest training resolutions (a time split inside the
    // training window, as long as the validation window), then refit on the whole sample.
    let es_start = holdout_start - valid_days as i64 * MICROS_PER_DAY;
    let samples = first_by_key(
        &tr,
        |r| hash_str(p.seed ^ pool.t(r) as u64, pool.id(r)),
        [
            (RULE_ROWS, &|_| true),
            (take_pos, &|r| pool.label(r)),
            (take_neg, &|r| !pool.label(r)),
            (EARLY_STOP_ROWS, &|r| pool.resolved_at(r) >= es_start),
        ],
    );
    Drawn { va, samples, es_start }
}

/// How many late and on-time training rows the class-balanced sample takes: late rows up to a
/// quarter of `max_train_rows`, on-time ones up to `NEG_PER_POS` per late row and the cap.
fn class_sample_sizes(split: &SplitCounts, p: &ValidParams) -> (usize, usize) {
    let (n_train, n_pos) = (split.n_train, split.n_pos);
    let take_pos = n_pos.min(p.max_train_rows / (1 + NEG_PER_POS));
    (take_pos, (n_train - n_pos).min(p.max_train_rows - take_pos).min(take_pos * NEG_PER_POS))
}

/// For each `(m, keep)`: the first `m` rows `keep` accepts in the order of `(key(row), row)`,
/// in that order. One parallel pass over `rows` into a bounded heap per selection
/// (`sampling::smallest_per_thread`), so nothing of the size of `rows` is allocated (a heap per
/// part, all held until the merge, was 0.3 GB at 10M).
fn first_by_key<const K: usize>(
    rows: &[u32],
    key: impl Fn(usize) -> u64 + Sync,
    picks: [(usize, &(dyn Fn(usize) -> bool + Sync)); K],
) -> [Vec<usize>; K] {
    let sizes = picks.map(|(m, _)| m);
    let drawn = crate::sampling::smallest_per_thread(rows.len(), &sizes, |j, heaps| {
        let r = rows[j];
        let k = (key(r as usize), r);
        for (heap, (_, keep)) in heaps.iter_mut().zip(&picks) {
            if keep(r as usize) {
                heap.push(k);
            }
        }
    });
    let mut drawn = drawn.into_iter().map(|heap| heap.into_iter().map(|(_, r)| r as usize).collect());
    std::array::from_fn(|_| drawn.next().expect("one heap per pick"))
}

/// linfa-logistic on the columns `cols` of `x` (all when empty), standardised, with missing
/// values at the column mean.
fn fit_logistic(x: &Array2<f64>, y: &[bool], cols: &[usize], p: &ValidParams) -> Result<Estimator> {
    let cols: Vec<usize> = if cols.is_empty() { (0..x.ncols()).collect() } else { cols.to_vec() };
    let n = x.nrows();
    let mean: Vec<f64> = cols
        .iter()
        .map(|&j| {
            let (s, k) = x.column(j).iter().filter(|v| !v.is_nan()).fold((0.0, 0usize), |a, v| (a.0 + v, a.1 + 1));
            if k > 0 { s / k as f64 } else { 0.0 }
        })
        .collect();
    // Column-major: linfa's gradient multiplies the transposed matrix by a vector, which walks
    // each column; row by row that read a cache line per value, and the fit took 0.4 s of a
    // 1M-shipment training night against 0.2 s this way. The coefficients move in their last
    // bits only (ndarray adds up each gradient component in another order).
    let mut xs = Array2::zeros((n, cols.len()).f());
    for (k, &j) in cols.iter().enumerate() {
        for i in 0..n {
            let v = x[[i, j]];
            xs[[i, k]] = if v.is_nan() { mean[k] } else { v };
        }
    }
    let scale: Vec<f64> = (0..cols.len())
        .map(|k| {
            let m = mean[k];
            let var = xs.column(k).iter().map(|v| (v - m).powi(2)).sum::<f64>() / n.max(1) as f64;
            if var > 1e-12 { var.sqrt() } else { 1.0 }
        })
        .collect();
    for k in 0..cols.len() {
        xs.column_mut(k).mapv_inplace(|v| (v - mean[k]) / scale[k]);
    }
    let ds = Dataset::new(xs, Array1::from(y.to_vec()));
    let fitted = LogisticRegression::default()
        .alpha(p.logistic_alpha)
        .max_iterations(p.logistic_max_iterations)
        .fit(&ds)
        .map_err(|e| Error::internal(format!("logistic: {e}")))?;
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    let all = cols.len() == x.ncols();
    Ok(Estimator::Logistic {
        features: if all { vec![] } else { cols },
        mean,
        scale,
        coef: fitted.params().iter().map(|w| sign * w).collect(),
        intercept: sign * fitted.intercept(),
    })
}

/// The simple-model floor: logistic regression on `SIMPLE_FEATURES`.
fn fit_simple_logistic(x: &Array2<f64>, y: &[bool], p: &ValidParams) -> Result<Estimator> {
    crate::fault::point(&format!("fit:{SIMPLE_LOGISTIC}"));
    let cols: Vec<usize> = SIMPLE_FEATURES.iter().map(|f| feature_index(f)).collect();
    fit_logistic(x, y, &cols, p)
}

/// Missing values as `MISSING`, for the CART trees.
fn with_sentinel(x: &Array2<f64>) -> Array2<f64> {
    x.mapv(|v| if v.is_nan() { MISSING } else { v })
}

/// The boosted trees' time split inside the training window: rows and labels of the latest
/// training resolutions, and which sample rows fall in that period.
struct EarlyStop {
    x: Array2<f64>,
    y: Vec<bool>,
    in_period: Vec<bool>,
}

fn fit_candidate(
    candidate: Candidate,
    x: &Array2<f64>,
    y: &[bool],
    early: &EarlyStop,
    p: &ValidParams,
) -> Result<(Estimator, Option<GbdtRounds>)> {
    crate::fault::point(&format!("fit:{candidate}"));
    let alone = |est: Estimator| (est, None);
    match candidate {
        Candidate::Logistic => fit_logistic(x, y, &[], p).map(alone),
        Candidate::Tree => {
            let xs = with_sentinel(x);
            let all: Vec<usize> = (0..N_FEATURES).collect();
            let params = tree_params(p.tree_max_depth, p.tree_min_weight_leaf);
            Ok(alone(Estimator::Tree { tree: Tree::fit(xs.view(), y, &tree_weights(y), &all, &params, xs.view(), y) }))
        }
        Candidate::Forest => {
            let x = &with_sentinel(x);
            // Each tree fits a bootstrap sample of rows (drawn here, with the class weights of
            // that sample) on a random subset of the features.
            let n = x.nrows();
            let rows = ((n as f64 * FOREST_BOOTSTRAP).ceil() as usize).max(1);
            let n_feat = ((N_FEATURES as f64 * p.forest_feature_fraction).ceil() as usize).clamp(1, N_FEATURES);
            let params = tree_params(p.forest_max_depth, p.tree_min_weight_leaf);
            let trees = (0..p.forest_trees)
                .into_par_iter()
                .map(|k| {
                    // Each tree draws from its own seeded stream: the forest does not depend on
                    // the thread count.
                    let mut rng = ChaCha8Rng::seed_from_u64(p.seed ^ (0xf0_2e57_u64 << 20) ^ k as u64);
                    let idx: Vec<usize> = (0..rows).map(|_| rng.gen_range(0..n)).collect();
                    let mut feats: Vec<usize> = rand::seq::index::sample(&mut rng, N_FEATURES, n_feat).into_vec();
                    feats.sort_unstable();
                    let xs = x.select(ndarray::Axis(0), &idx).select(ndarray::Axis(1), &feats);
                    let ys: Vec<bool> = idx.iter().map(|&i| y[i]).collect();
                    Tree::fit(xs.view(), &ys, &tree_weights(&ys), &feats, &params, x.view(), y)
                })
                .collect();
            Ok(alone(Estimator::Forest { trees }))
        }
        Candidate::Gbdt => {
            let gp = p.gbdt.clone();
            let err = |e: gbdt::GbdtError| Error::internal(e.to_string());
            let ds = gbdt_dataset(x.clone(), y);
            // Rounds chosen on the early-stopping rows (with the sample rows of that period left
            // out of the fit), then the whole sample refitted with them.
            let before: Vec<usize> = (0..y.len()).filter(|&k| !early.in_period[k]).collect();
            let y_before: Vec<bool> = before.iter().map(|&k| y[k]).collect();
            let usable = |v: &[bool]| v.iter().any(|t| *t) && v.iter().any(|t| !*t);
            let off = if early.y.is_empty() {
                Some("no training row resolved late enough to watch (the latest training resolutions)".to_string())
            } else if !usable(&early.y) {
                Some(format!("its {} rows (the latest training resolutions) hold a single class", early.y.len()))
            } else if !usable(&y_before) {
                Some(format!("the {} sample rows resolved before its rows hold a single class", y_before.len()))
            } else {
                None
            };
            let watched = if off.is_none() {
                let ds_before = gbdt_dataset(x.select(ndarray::Axis(0), &before), &y_before);
                let m = gp
                    .clone()
                    .check()
                    .map_err(err)?
                    .with_validation(early.x.clone(), early.y.clone())
                    .fit(&ds_before)
                    .map_err(err)?;
                Some(m.trees.len().max(1))
            } else {
                None
            };
            let rounds = watched.unwrap_or(gp.max_rounds);
            let model = gbdt::GbdtParams { max_rounds: rounds, ..gp }.check().map_err(err)?.fit(&ds).map_err(err)?;
            let rounds = GbdtRounds {
                trees: model.trees.len(),
                early_stopping_rows: if off.is_none() { early.y.len() as u64 } else { 0 },
                early_stopping_off: off,
            };
            Ok((Estimator::Gbdt { model }, Some(rounds)))
        }
    }
}

/// Candidates in the order their fits are started: longest first, as measured at 1M shipments
/// (boosted trees 1.1 s, forest 0.7, logistic 0.45, tree 0.12 CPU seconds).
fn fit_cost_rank(c: Candidate) -> u8 {
    match c {
        Candidate::Gbdt => 0,
        Candidate::Forest => 1,
        Candidate::Logistic => 2,
        Candidate::Tree => 3,
    }
}

/// The boosted trees' training set, with the classes balanced by weight.
/// The weight that balances a late row against the on-time ones: on-time rows per late row.
fn late_weight(y: &[bool]) -> f32 {
    let pos = y.iter().filter(|v| **v).count().max(1) as f32;
    let neg = (y.len() as f32 - pos).max(1.0);
    neg / pos
}

fn gbdt_dataset(x: Array2<f64>, y: &[bool]) -> Dataset<f64, bool, ndarray::Ix1> {
    let w = late_weight(y);
    let weights = Array1::from(y.iter().map(|&v| if v { w } else { 1.0 }).collect::<Vec<f32>>());
    Dataset::new(x, Array1::from(y.to_vec())).with_weights(weights)
}

fn tree_params(depth: usize, min_leaf: f32) -> tree::TreeParams {
    tree::TreeParams { max_depth: depth, min_weight_leaf: min_leaf, min_weight_split: 2.0 * min_leaf }
}

/// Class-balancing weights for a tree's rows. The late class also weighs a hair more than the
/// exact balance, so no node is ever an exact tie (linfa-trees, whose rule the trees keep,
/// broke ties in hash-map order, which differs from run to run).
fn tree_weights(y: &[bool]) -> Vec<f32> {
    let w_pos = late_weight(y) * (1.0 + 1.0 / 3.0e3);
    y.iter().map(|&v| if v { w_pos } else { 1.0 }).collect()
}

/// On-time training rows kept per late row (see `train`).
pub const NEG_PER_POS: usize = 3;

/// Each forest tree sees this share of the (balanced, capped) training sample, drawn with
/// replacement: less than the whole sample keeps trees diverse and fitting fast.
pub const FOREST_BOOTSTRAP: f64 = 0.4;

#[cfg(test)]
mod tests {
    use super::{cross_fit, first_by_key, metrics};
    use crate::features::days::{DayCounts, days_before};
    use crate::schema::MICROS_PER_DAY;

    /// The boosted trees say how their rounds were chosen. Regression: early-stopping rows of a
    /// single class turned early stopping off without a word, and the trees boosted up to
    /// `gbdt_max_rounds`.
    #[test]
    fn the_boosted_trees_say_whether_early_stopping_chose_their_rounds() {
        use super::N_FEATURES;
        use crate::config::{AlertConfig, LaneConfig, ModelConfig};
        let mut m = ModelConfig::default();
        m.gbdt_max_rounds = 40;
        m.gbdt_early_stopping_rounds = 3;
        let p = super::ModelParams::from_config(&m, &AlertConfig::default(), &LaneConfig::default(), 7)
            .unwrap()
            .check()
            .unwrap();
        // Late when the first feature is high, noisily: early stopping has a ranking to watch.
        let mut rng = crate::TestRng::new(5);
        let mut rows = |n: usize| {
            let mut x = ndarray::Array2::<f64>::zeros((n, N_FEATURES));
            let mut y = Vec::with_capacity(n);
            for i in 0..n {
                for j in 0..N_FEATURES {
                    x[[i, j]] = (rng.next() % 1000) as f64 / 1000.0;
                }
                y.push(x[[i, 0]] + (rng.next() % 1000) as f64 / 2500.0 > 0.9);
            }
            (x, y)
        };
        let (x, y) = rows(600);
        let (ex, ey) = rows(300);
        let in_period: Vec<bool> = (0..y.len()).map(|k| k % 4 == 0).collect();
        let fit = |early: &super::EarlyStop| {
            let (est, rounds) = super::fit_candidate(super::Candidate::Gbdt, &x, &y, early, &p).unwrap();
            let super::Estimator::Gbdt { model } = est else { panic!("not boosted trees") };
            let rounds = rounds.expect("the boosted trees' rounds");
            assert_eq!(rounds.trees, model.trees.len());
            rounds
        };
        let watched = fit(&super::EarlyStop { x: ex.clone(), y: ey.clone(), in_period: in_period.clone() });
        assert_eq!(watched.early_stopping_off, None);
        assert_eq!(watched.early_stopping_rows, 300);
        assert!(watched.trees < 40, "early stopping chose {} rounds", watched.trees);
        let none = fit(&super::EarlyStop {
            x: ndarray::Array2::zeros((0, N_FEATURES)),
            y: vec![],
            in_period: vec![false; y.len()],
        });
        assert!(none.early_stopping_off.as_deref().is_some_and(|w| w.starts_with("no training row")), "{none:?}");
        let one_class = fit(&super::EarlyStop { x: ex, y: vec![false; 300], in_period });
        let why = one_class.early_stopping_off.expect("early stopping off");
        assert!(why.contains("300 rows") && why.contains("single class"), "{why}");
        assert_eq!((one_class.early_stopping_rows, one_class.trees), (0, 40));
        // Every other candidate has no rounds to tell.
        for c in [super::Candidate::Logistic, super::Candidate::Tree] {
            let early = super::EarlyStop { x: ndarray::Array2::zeros((0, N_FEATURES)), y: vec![], in_period: vec![] };
            assert!(super::fit_candidate(c, &x, &y, &early, &p).unwrap().1.is_none(), "{c}");
        }
    }

    /// Regression: with no late parcels in the validation window every candidate's PR-AUC is
    /// undefined, and the lower Brier score must still choose (NaN equals nothing).
    #[test]
    fn candidates_without_a_defined_pr_auc_are_chosen_by_brier() {
        let s = |pr_auc: f64, brier: f64| metrics::Scores { pr_auc, brier, ..Default::default() };
        assert!(super::beats(&s(f64::NAN, 0.1), &s(f64::NAN, 0.2)));
        assert!(!super::beats(&s(f64::NAN, 0.2), &s(f64::NAN, 0.1)));
        assert!(super::beats(&s(0.1, 0.9), &s(f64::NAN, 0.1)));
        assert!(!super::beats(&s(f64::NAN, 0.1), &s(0.1, 0.9)));
        assert!(super::beats(&s(0.5, 0.2), &s(0.5, 0.3)) && super::beats(&s(0.6, 0.3), &s(0.5, 0.2)));
    }

    /// The ensembles' scores of many rows (trees walked by blocks of rows) are their scores one
    /// row at a time, bit for bit, with missing values and a last block that is not full.
    #[test]
    fn scores_of_many_rows_are_the_scores_of_each() {
        use super::{Estimator, gbdt, tree};
        use linfa::prelude::*;
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let n = 1500;
        let x = ndarray::Array2::from_shape_fn((n, 4), |(_, c)| match c {
            0 => rng.gen_range(0..5) as f64,
            _ => rng.gen_range(-1.0..1.0),
        });
        let y: Vec<bool> = (0..n).map(|i| x[(i, 0)] + x[(i, 1)] + rng.gen_range(-1.0..1.0) > 2.0).collect();
        let ds = linfa::Dataset::new(x.clone(), ndarray::Array1::from(y.clone()));
        let boosted = gbdt::GbdtParams::default().check().unwrap().fit(&ds).unwrap();
        let w = vec![1.0f32; n];
        let p = tree::TreeParams { max_depth: 6, min_weight_leaf: 5.0, min_weight_split: 10.0 };
        let trees: Vec<tree::Tree> = (0..5)
            .map(|k| {
                let rows: Vec<usize> = (0..n).filter(|i| (i + k) % 3 != 0).collect();
                let xs = x.select(ndarray::Axis(0), &rows);
                let ys: Vec<bool> = rows.iter().map(|&i| y[i]).collect();
                tree::Tree::fit(xs.view(), &ys, &w[..rows.len()], &[0, 1, 2, 3], &p, x.view(), &y)
            })
            .collect();
        assert!(trees.iter().all(|t| t.nodes.len() > 3) && boosted.trees.len() > 3);
        // Rows scored: some with missing values, 8 × 12 + 5 of them.
        let scored: Vec<Vec<f64>> = (0..101)
            .map(|i| {
                let mut r: Vec<f64> = x.row(i * 7).to_vec();
                if i % 4 == 0 {
                    r[i % 3] = f64::NAN;
                }
                r
            })
            .collect();
        let rows: Vec<&[f64]> = scored.iter().map(|r| r.as_slice()).collect();
        for est in [
            Estimator::Gbdt { model: boosted },
            Estimator::Forest { trees: trees.clone() },
            Estimator::Tree { tree: trees[0].clone() },
            Estimator::Constant { p: 0.3 },
        ] {
            let one: Vec<u64> = rows.iter().map(|r| est.raw(r).to_bits()).collect();
            let many: Vec<u64> = est.raw_many(&rows).into_iter().map(f64::to_bits).collect();
            assert_eq!(many, one, "{}", est.kind());
        }
    }

    /// `validation_days` as it was, over one (resolved_at, late) per shipment sorted newest
    /// first: the reference the per-day counts must agree with.
    fn validation_by_sorting(mut ships: Vec<(i64, bool)>, cutoff: i64, p: &super::ValidParams) -> u32 {
        ships.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        let total = ships.len();
        let days_of = |at: i64| ((cutoff - at + MICROS_PER_DAY - 1) / MICROS_PER_DAY).max(1) as u32;
        let valid_in = |days: u32| ships.partition_point(|s| days_of(s.0) <= days);
        let want_train = p.min_train_shipments.max(p.min_train_rows);
        if total < want_train + p.min_valid_shipments && total > 0 && total - valid_in(p.holdout_days) < want_train {
            let k = (total * 3 / 10).max(1).min(total - 1);
            return days_of(ships[k.saturating_sub(1)].0).max(1);
        }
        let (mut n, mut late) = (0usize, 0usize);
        let mut days = p.holdout_days;
        for &(at, is_late) in &ships {
            let d = days_of(at);
            if d > days {
                if n >= p.min_valid_shipments && late >= p.min_valid_class && n - late >= p.min_valid_class {
                    break;
                }
                if total - valid_in(d) < want_train {
                    break;
                }
                days = d;
            }
            n += 1;
            late += is_late as usize;
        }
        days
    }

    /// The validation window from per-day counts is the one sorting every shipment gave: young
    /// histories (the 70/30 split), windows stopped by either class or by what training needs,
    /// late rates from none to all.
    /// Regression: the validation metrics ranked rows by their cross-fitted probabilities. With
    /// the one late row in one half, that half's calibration (fitted on the other, all on time)
    /// maps every score to one value, and a perfect model ranked its late row among ties. The
    /// ranking metrics now read the raw scores; the probabilities keep Brier and the threshold.
    #[test]
    fn cross_fitted_metrics_rank_rows_by_the_models_scores() {
        let n = 200;
        let y: Vec<bool> = (0..n).map(|i| i == 0).collect();
        let raw: Vec<f64> = (0..n).map(|i| if i == 0 { 3.0 } else { -3.0 + i as f64 * 1e-3 }).collect();
        let fold: Vec<bool> = (0..n).map(|i| i % 2 == 0).collect();
        let crossed = cross_fit(&raw, &y, &fold);
        let by_crossed = metrics::evaluate(&crossed, &y, 0.05, 0.5);
        assert!(by_crossed.pr_auc < 0.5, "the crossed probabilities tie the late row: {}", by_crossed.pr_auc);
        let s = metrics::evaluate_ranked(&raw, &crossed, &y, 0.05, 0.5);
        assert_eq!((s.roc_auc, s.pr_auc, s.recall_at_budget), (1.0, 1.0, 1.0));
        assert_eq!((s.brier, s.log_loss), (by_crossed.brier, by_crossed.log_loss));
        assert_eq!(s.alerts_at_threshold, by_crossed.alerts_at_threshold);
    }

    /// Regression: lanes counted as extended were those past the shortest window, so when every
    /// lane needed more than `lanes.window_days` none was counted.
    #[test]
    fn lanes_extended_are_those_past_the_configured_window() {
        let w = |days: &[f64]| super::lane_windows(days.iter().copied(), 90).lanes_extended;
        assert_eq!(w(&[120.0, 150.0, 400.0]), 3);
        assert_eq!(w(&[90.0, 90.0, 120.0, f64::NAN]), 1);
        assert_eq!(w(&[]), 0);
    }

    /// Regression: the window took a day whenever what was left before the day kept enough
    /// for training, not what was left once the day was taken: with the 13 oldest shipments
    /// all on one day it took them all, and training had none.
    #[test]
    fn the_validation_window_leaves_training_its_minimum() {
        let mut p = crate::model::params::ModelParams::from_config(
            &crate::config::ModelConfig::default(),
            &crate::config::AlertConfig::default(),
            &crate::config::LaneConfig::default(),
            7,
        )
        .unwrap();
        (p.holdout_days, p.min_valid_shipments, p.min_valid_class) = (1, 100, 1);
        (p.min_train_shipments, p.min_train_rows) = (10, 10);
        let p = p.check().unwrap();
        let mut counts = DayCounts::new(3);
        for (day, n) in [(1, 2), (2, 5), (3, 13)] {
            for _ in 0..n {
                counts.add(day, false);
            }
        }
        assert_eq!(super::validation_window(&counts, &p), 2);
    }

    #[test]
    fn validation_window_from_day_counts_is_the_sorted_walk() {
        let mut rng = crate::TestRng::new(11);
        let cutoff = 400 * MICROS_PER_DAY;
        let base = crate::model::params::ModelParams::from_config(
            &crate::config::ModelConfig::default(),
            &crate::config::AlertConfig::default(),
            &crate::config::LaneConfig::default(),
            7,
        )
        .unwrap();
        for round in 0..2_000 {
            // Odd rounds are small and dense, so that the window's limits fall exactly on a
            // day's boundary often.
            let scale = if round % 2 == 0 { 10 } else { 1 };
            let mut p = base.clone();
            p.holdout_days = 1 + (rng.next() % (4 * scale)) as u32;
            p.min_valid_shipments = (rng.next() % (40 * scale)) as usize;
            p.min_valid_class = (rng.next() % (6 * scale)) as usize;
            p.min_train_shipments = (rng.next() % (60 * scale)) as usize;
            p.min_train_rows = 1 + (rng.next() % (60 * scale)) as usize;
            let p = p.check().unwrap();
            let n = (rng.next() % (150 * scale)) as usize;
            let span = 1 + ((rng.next() << 31) | rng.next()) % (20 * scale * MICROS_PER_DAY as u64);
            let late_per_mille = rng.next() % 1_001;
            let ships: Vec<(i64, bool)> = (0..n)
                .map(|_| {
                    (
                        cutoff - 1 - (((rng.next() << 31) | rng.next()) % span) as i64,
                        rng.next() % 1_000 < late_per_mille,
                    )
                })
                .collect();
            let last = ships.iter().map(|s| days_before(cutoff, s.0)).max().unwrap_or(1);
            let counts = DayCounts::count(n, last, |i| Some((days_before(cutoff, ships[i].0), ships[i].1)));
            let want = validation_by_sorting(ships.clone(), cutoff, &p);
            assert_eq!(super::validation_window(&counts, &p), want, "round {round}: {n} shipments");
        }
    }

    #[test]
    fn first_by_key_takes_the_rows_sorting_every_row_by_key_gives() {
        let mut rng = crate::TestRng::new(5);
        let mut next = || rng.next();
        // Keys with many ties (broken by row), drawn in one, two or three parts (one per
        // thread, their heaps merged): the rows drawn must not depend on it.
        let keys: Vec<u64> = (0..150_000).map(|_| next() % 5_000).collect();
        let rows: Vec<u32> = (0..keys.len() as u32).filter(|r| r % 7 != 3).rev().collect();
        let even = |r: usize| r % 2 == 0;
        let odd = |r: usize| r % 2 == 1;
        for (m, threads) in [(0, 2), (1, 2), (9, 3), (1_000, 1), (1_000, 2), (1_000, 3), (200_000, 2)] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let got = pool.install(|| first_by_key(&rows, |r| keys[r], [(m, &|_| true), (m, &even), (m / 3, &odd)]));
            let mut sorted: Vec<(u64, u32)> = rows.iter().map(|&r| (keys[r as usize], r)).collect();
            sorted.sort_unstable();
            let first = |m: usize, keep: &dyn Fn(usize) -> bool| -> Vec<usize> {
                sorted.iter().map(|&(_, r)| r as usize).filter(|&r| keep(r)).take(m).collect()
            };
            assert_eq!(got[0], first(m, &|_| true), "m = {m}, {threads} threads");
            assert_eq!(got[1], first(m, &even), "m = {m}, {threads} threads");
            assert_eq!(got[2], first(m / 3, &odd), "m = {m}, {threads} threads");
        }
    }
}
