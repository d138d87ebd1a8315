//! Hyper-parameters, linfa style: a `ModelParams` builder checked into `ValidParams` before
//! any fitting, so a bad value fails before minutes of work.

use serde::{Deserialize, Serialize};

use super::gbdt::GbdtParams;
use crate::config::{AlertConfig, LaneConfig, ModelConfig};
use crate::error::{Error, Result};

/// The model families lanewatch can fit; one is chosen per night on validation PR-AUC.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Candidate {
    /// linfa-logistic on standardised features.
    Logistic,
    /// One decision tree (linfa-trees' split rule, `model::tree`).
    Tree,
    /// A random forest of those trees (bootstrap rows, a random share of the features).
    Forest,
    /// Gradient-boosted trees (`model::gbdt`, behind linfa's `Fit`).
    Gbdt,
}

impl Candidate {
    pub const ALL: [Candidate; 4] = [Candidate::Logistic, Candidate::Tree, Candidate::Forest, Candidate::Gbdt];

    pub fn name(self) -> &'static str {
        match self {
            Candidate::Logistic => "logistic",
            Candidate::Tree => "tree",
            Candidate::Forest => "forest",
            Candidate::Gbdt => "gbdt",
        }
    }

    /// The candidate named `name` in a config; the one place candidate names are checked.
    pub fn parse(name: &str) -> Result<Candidate> {
        Candidate::ALL.into_iter().find(|c| c.name() == name).ok_or_else(|| {
            let known: Vec<&str> = Candidate::ALL.iter().map(|c| c.name()).collect();
            Error::Config(format!("model.candidates: unknown model {name:?} ({})", known.join(", ")))
        })
    }
}

impl std::fmt::Display for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelParams {
    pub candidates: Vec<Candidate>,
    pub holdout_days: u32,
    pub max_train_rows: usize,
    pub max_valid_rows: usize,
    pub min_train_rows: usize,
    pub min_class_rows: usize,
    pub min_valid_shipments: usize,
    pub min_valid_class: usize,
    pub min_train_shipments: usize,
    pub min_train_class: usize,
    pub logistic_alpha: f64,
    pub logistic_max_iterations: u64,
    pub tree_max_depth: usize,
    pub tree_min_weight_leaf: f32,
    pub forest_trees: usize,
    pub forest_max_depth: usize,
    pub forest_feature_fraction: f64,
    pub gbdt: GbdtParams,
    pub alert_budget_fraction: f64,
    pub alert_threshold: f64,
    pub calibration_bins: usize,
    pub seed: u64,
    /// `lanes.window_days`: lanes whose statistics reached back further count as extended.
    /// (Absent from models saved before it, which read as 0: only training reads it.)
    #[serde(default)]
    pub lane_window_days: u32,
}

/// Parameters that passed `ModelParams::check`.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidParams(ModelParams);

impl std::ops::Deref for ValidParams {
    type Target = ModelParams;
    fn deref(&self) -> &ModelParams {
        &self.0
    }
}

impl ModelParams {
    pub fn from_config(m: &ModelConfig, a: &AlertConfig, lanes: &LaneConfig, seed: u64) -> Result<ModelParams> {
        Ok(ModelParams {
            candidates: m.candidates.iter().map(|c| Candidate::parse(c)).collect::<Result<_>>()?,
            holdout_days: m.holdout_days,
            max_train_rows: m.max_train_rows,
            max_valid_rows: m.max_valid_rows,
            min_train_rows: m.min_train_rows,
            min_class_rows: m.min_class_rows,
            min_valid_shipments: m.min_valid_shipments,
            min_valid_class: m.min_valid_class,
            min_train_shipments: m.min_train_shipments,
            min_train_class: m.min_train_class,
            logistic_alpha: m.logistic_alpha,
            logistic_max_iterations: m.logistic_max_iterations,
            tree_max_depth: m.tree_max_depth,
            tree_min_weight_leaf: m.tree_min_weight_leaf,
            forest_trees: m.forest_trees,
            forest_max_depth: m.forest_max_depth,
            forest_feature_fraction: m.forest_feature_fraction,
            gbdt: GbdtParams {
                max_rounds: m.gbdt_max_rounds,
                learning_rate: m.gbdt_learning_rate,
                max_depth: m.gbdt_max_depth,
                min_child_weight: m.gbdt_min_child_weight,
                l2: m.gbdt_l2,
                bins: m.gbdt_bins,
                early_stopping_rounds: m.gbdt_early_stopping_rounds,
                subsample: m.gbdt_subsample,
                seed,
            },
            alert_budget_fraction: m.alert_budget_fraction,
            alert_threshold: a.risk_threshold,
            calibration_bins: m.calibration_bins,
            seed,
            lane_window_days: lanes.window_days,
        })
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn candidates(mut self, c: &[Candidate]) -> Self {
        self.candidates = c.to_vec();
        self
    }

    pub fn max_train_rows(mut self, n: usize) -> Self {
        self.max_train_rows = n;
        self
    }

    /// Every range check on the model's parameters: the one place they are validated.
    pub fn check(self) -> Result<ValidParams> {
        let bad = |m: &str| Err(Error::Config(format!("model.{m}")));
        if self.candidates.is_empty() {
            return bad("candidates is empty");
        }
        if self.max_train_rows < 10 {
            return bad("max_train_rows must be at least 10");
        }
        // At least one of each class and one row: at 0 the fallback never triggers and a
        // one-class sample ships a constant model instead of the lane rule.
        if self.min_train_rows == 0 || self.min_class_rows == 0 {
            return bad("min_train_rows and min_class_rows must be at least 1");
        }
        if self.holdout_days == 0 {
            return bad("holdout_days must be at least 1");
        }
        if self.max_valid_rows < 100 {
            return bad("max_valid_rows must be at least 100");
        }
        if !(self.logistic_alpha >= 0.0 && self.logistic_alpha.is_finite()) {
            return bad("logistic_alpha must be a non-negative number");
        }
        if self.logistic_max_iterations == 0 {
            return bad("logistic_max_iterations must be at least 1");
        }
        if self.tree_max_depth == 0
            || self.tree_max_depth > 30
            || self.forest_max_depth == 0
            || self.forest_max_depth > 30
        {
            return bad("tree depths must be in 1..=30");
        }
        // Finite too: an infinite weight trains single leaves and is written to model.json as
        // null, which no later night (nor `score --model`) can read back.
        if !(self.tree_min_weight_leaf >= 1.0 && self.tree_min_weight_leaf.is_finite()) {
            return bad("tree_min_weight_leaf must be a number of at least 1");
        }
        if self.forest_trees == 0 || self.forest_trees > 1000 {
            return bad("forest_trees must be in 1..=1000");
        }
        if !(self.forest_feature_fraction > 0.0 && self.forest_feature_fraction <= 1.0) {
            return bad("forest_feature_fraction must be in (0, 1]");
        }
        if !(self.alert_budget_fraction > 0.0 && self.alert_budget_fraction <= 1.0) {
            return bad("alert_budget_fraction must be in (0, 1]");
        }
        if self.calibration_bins < 2 || self.calibration_bins > 100 {
            return bad("calibration_bins must be in 2..=100");
        }
        if let Err(e) = self.gbdt.clone().check() {
            return bad(&e.to_string().replace("gbdt: ", "gbdt_"));
        }
        Ok(ValidParams(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AlertConfig, ModelConfig};

    /// Regression: the parameters a model saved before `lane_window_days` existed hold none;
    /// such a model (kept in the state, or given to `score --model`) still reads.
    #[test]
    fn parameters_saved_before_the_lane_window_read_back() {
        let p = ModelParams::from_config(&ModelConfig::default(), &AlertConfig::default(), &LaneConfig::default(), 7)
            .unwrap();
        let mut json = serde_json::to_value(&p).unwrap();
        json.as_object_mut().unwrap().remove("lane_window_days");
        let back: ModelParams = serde_json::from_value(json).unwrap();
        assert_eq!(back, ModelParams { lane_window_days: 0, ..p });
    }

    #[test]
    fn defaults_are_valid_and_bad_values_are_refused() {
        let p = ModelParams::from_config(&ModelConfig::default(), &AlertConfig::default(), &LaneConfig::default(), 7)
            .unwrap();
        let mut svm = ModelConfig::default();
        svm.candidates = vec!["svm".into()];
        assert_eq!(
            ModelParams::from_config(&svm, &AlertConfig::default(), &LaneConfig::default(), 7).unwrap_err().exit_code(),
            78
        );
        assert!(p.clone().check().is_ok());
        assert!(p.clone().candidates(&[]).check().is_err());
        let mut bins = p.clone();
        bins.calibration_bins = 101;
        assert!(bins.check().is_err());
        assert!(p.clone().max_train_rows(1).check().is_err());
        let mut q = p.clone();
        q.forest_feature_fraction = 0.0;
        assert_eq!(q.check().unwrap_err().exit_code(), 78);
        for leaf in [f64::INFINITY, f64::NAN, 0.5] {
            let mut q = p.clone();
            q.tree_min_weight_leaf = leaf as _;
            assert_eq!(q.check().unwrap_err().exit_code(), 78, "tree_min_weight_leaf {leaf}");
        }
        let mut q = p.clone();
        q.min_class_rows = 0;
        assert!(q.check().is_err());
        let mut q = p;
        q.min_train_rows = 0;
        assert!(q.check().is_err());
    }
}
