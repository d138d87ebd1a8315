//! Hyper-parameters, linfa style: a `ModelParams` builder checked into `ValidParams` before
//! any fitting, so a bad value fails before minutes of work.

use serde::{Deserialize, Serialize};

use crate::config::{AlertConfig, ModelConfig};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelParams {
    pub candidates: Vec<String>,
    pub holdout_days: u32,
    pub max_train_rows: usize,
    pub max_valid_rows: usize,
    pub min_train_rows: usize,
    pub min_class_rows: usize,
    pub logistic_alpha: f64,
    pub logistic_max_iterations: u64,
    pub tree_max_depth: usize,
    pub tree_min_weight_leaf: f32,
    pub forest_trees: usize,
    pub forest_max_depth: usize,
    pub forest_feature_fraction: f64,
    pub alert_budget_fraction: f64,
    pub alert_threshold: f64,
    pub calibration_bins: usize,
    pub seed: u64,
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
    pub fn from_config(m: &ModelConfig, a: &AlertConfig, seed: u64) -> ModelParams {
        ModelParams {
            candidates: m.candidates.clone(),
            holdout_days: m.holdout_days,
            max_train_rows: m.max_train_rows,
            max_valid_rows: m.max_valid_rows,
            min_train_rows: m.min_train_rows,
            min_class_rows: m.min_class_rows,
            logistic_alpha: m.logistic_alpha,
            logistic_max_iterations: m.logistic_max_iterations,
            tree_max_depth: m.tree_max_depth,
            tree_min_weight_leaf: m.tree_min_weight_leaf,
            forest_trees: m.forest_trees,
            forest_max_depth: m.forest_max_depth,
            forest_feature_fraction: m.forest_feature_fraction,
            alert_budget_fraction: m.alert_budget_fraction,
            alert_threshold: a.risk_threshold,
            calibration_bins: m.calibration_bins,
            seed,
        }
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn candidates(mut self, c: &[&str]) -> Self {
        self.candidates = c.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn max_train_rows(mut self, n: usize) -> Self {
        self.max_train_rows = n;
        self
    }

    pub fn check(self) -> Result<ValidParams> {
        let bad = |m: &str| Err(Error::Config(format!("model: {m}")));
        if self.candidates.is_empty() {
            return bad("no candidates");
        }
        if let Some(c) = self.candidates.iter().find(|c| !["logistic", "tree", "forest"].contains(&c.as_str())) {
            return bad(&format!("unknown candidate {c:?}"));
        }
        if self.max_train_rows < 10 {
            return bad("max_train_rows must be at least 10");
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
        if !(self.tree_min_weight_leaf >= 1.0) {
            return bad("tree_min_weight_leaf must be at least 1");
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
        if self.calibration_bins < 2 {
            return bad("calibration_bins must be at least 2");
        }
        Ok(ValidParams(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AlertConfig, ModelConfig};

    #[test]
    fn defaults_are_valid_and_bad_values_are_refused() {
        let p = ModelParams::from_config(&ModelConfig::default(), &AlertConfig::default(), 7);
        assert!(p.clone().check().is_ok());
        assert!(p.clone().candidates(&["svm"]).check().is_err());
        assert!(p.clone().max_train_rows(1).check().is_err());
        let mut q = p;
        q.forest_feature_fraction = 0.0;
        assert_eq!(q.check().unwrap_err().exit_code(), 78);
    }
}
