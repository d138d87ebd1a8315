//! Pipeline configuration. Precedence, highest first: command-line flags, `LANEWATCH_*`
//! environment variables, the pipeline file, built-in defaults. Unknown keys are errors, so a
//! typo in a cron job's config fails loudly instead of silently running on defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub pipeline: PipelineConfig,
    pub input: InputConfig,
    pub lanes: LaneConfig,
    pub features: FeatureConfig,
    pub model: ModelConfig,
    pub alerts: AlertConfig,
    pub backtest: BacktestConfig,
    pub report: ReportConfig,
    pub advice: AdviceConfig,
    pub state: StateConfig,
}

/// The state between nights (`OUT/state/`, see README "Operating lanewatch").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// `run` keeps the decoded input in `OUT/state/` and decodes only new input files the next
    /// night. Off: every night decodes the whole input and no state is kept.
    pub incremental: bool,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig { incremental: true }
    }
}

/// Advice before shipping (`service_advice.parquet`, `promise_advice.parquet`,
/// `seller_advice.parquet`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdviceConfig {
    /// Services from cheapest to dearest (costs are not in the input); services not listed
    /// rank after these, alphabetically.
    pub services: Vec<String>,
    /// The advised service is the cheapest whose probability of meeting the promise reaches this.
    pub confidence: f64,
    /// On-time rate the advised promise must have kept over the lane window.
    pub target_on_time_rate: f64,
    /// Weight band edges in grams: `[500, 2000]` makes `<500g`, `500-2000g`, `>=2000g`.
    pub weight_bands_g: Vec<f64>,
    /// Shipments (the latest created) whose median promise is the promise given today.
    pub promise_sample: usize,
    /// A seller is told their handling alone misses a lane's promise only with at least this
    /// many resolved shipments on it.
    pub min_seller_shipments: usize,
}

impl Default for AdviceConfig {
    fn default() -> Self {
        AdviceConfig {
            services: vec!["economy".into(), "standard".into(), "express".into()],
            confidence: 0.9,
            target_on_time_rate: 0.95,
            weight_bands_g: vec![500.0, 2000.0],
            promise_sample: 50,
            min_seller_shipments: 5,
        }
    }
}

/// What the HTML report shows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Nights the trend charts cover: this night and the complete earlier runs beside it.
    pub trend_nights: u32,
    /// Lanes (most parcels in flight first) in the transit-percentile chart.
    pub percentile_lanes: usize,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig { trend_nights: 30, percentile_lanes: 12 }
    }
}

/// Nights replayed by `lanewatch backtest` (flags override).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BacktestConfig {
    /// First and last night, YYYY-MM-DD.
    pub from: Option<String>,
    pub to: Option<String>,
    /// Days between replayed nights.
    pub every: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Name shown in logs and the manifest.
    pub name: String,
    /// Input folder (holds shipments and events). Relative paths are taken from the working directory.
    pub input: Option<PathBuf>,
    /// Output folder; each run writes `OUT/as_of=YYYY-MM-DD/`.
    pub out: Option<PathBuf>,
    /// `YYYY-MM-DD`, or `yesterday` (the UTC date before the wall clock's) for cron.
    pub as_of: Option<String>,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// Zone of timestamps stored without one. Empty: such timestamps are rejected.
    pub naive_timezone: String,
    /// Canonical column name → the input's column name, per table.
    pub columns: ColumnMapping,
    /// A built-in status vocabulary (`upu-emsevt`, `aftership`); empty: canonical names only.
    pub status_preset: String,
    /// Raw status → milestone, exception or `SCAN`; extends and overrides the preset. A key
    /// ending in `*` matches by prefix.
    pub statuses: BTreeMap<String, String>,
    /// Memory budget in GB (README, "Memory budget"): `run` splits a night whose estimate (from
    /// the footers' row counts) is above it; the other commands refuse such an input. 0 = no limit.
    pub max_memory_gb: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ColumnMapping {
    pub shipments: BTreeMap<String, String>,
    pub events: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LaneConfig {
    /// Trailing window of resolved shipments that feed lane statistics (the minimum: see
    /// `max_window_days`).
    pub window_days: u32,
    /// How far back any adaptive window reaches: a lane's statistics, a seller's or lane's
    /// history, and the training and validation windows extend back from their configured days
    /// until they hold enough resolved shipments, but never past this many days.
    pub max_window_days: u32,
    /// Below this many resolved shipments a lane borrows from its parent level.
    pub min_support: u32,
    /// Window of the "recent" dwell compared with the baseline.
    pub recent_days: u32,
    /// Recent p50 / baseline p50 at or above which a lane stage counts as disrupted.
    pub disruption_ratio: f64,
    /// Stage observations needed in the recent window before a lane can be flagged.
    pub disruption_min_recent: u32,
    /// The recent p50 must also exceed the baseline p50 by this many days.
    pub disruption_min_increase_days: f64,
    /// ... and the share of recent parcels outstaying the baseline p50 must exceed one half by
    /// this many standard errors (a binomial z-score), so small lanes' noise raises no flags.
    pub disruption_min_z: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureConfig {
    /// Snapshot times drawn per resolved shipment for training.
    pub snapshots_per_shipment: u32,
    /// Resolved shipments created within this many days before the cutoff become training rows.
    pub train_window_days: u32,
    /// Pseudo-count pulling a seller's or lane's late rate towards the global rate.
    pub prior_strength: f64,
    /// Training snapshots and the night's scores read lane statistics as of the latest of a
    /// series of cutoffs this many days apart, on a calendar grid (so their own outcomes never
    /// enter them, and the nights between two grid nights share the tables and compute none);
    /// smaller is fresher and slower.
    pub stats_every_days: u32,
    /// Peak and holiday days, `MM-DD`, or `black-friday` for the day after the fourth Thursday of November.
    pub holidays: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Any of `logistic`, `tree`, `forest`, `gbdt` (checked into `model::Candidate` by `Settings`).
    pub candidates: Vec<String>,
    /// The most recent days of resolutions form the validation window.
    pub holdout_days: u32,
    /// Cap on training rows after class balancing (documented sampling, see README).
    pub max_train_rows: usize,
    /// Cap on validation rows; a larger window is sampled by shipment.
    pub max_valid_rows: usize,
    /// Fewer training rows (or positives / negatives) than this: use the lane-quantile rule.
    pub min_train_rows: usize,
    pub min_class_rows: usize,
    /// The validation window (`holdout_days` at least) reaches back until it holds this many
    /// resolved shipments and this many of each class, up to `lanes.max_window_days`.
    pub min_valid_shipments: usize,
    pub min_valid_class: usize,
    /// The training window (`features.train_window_days` at least) reaches back until, besides
    /// the validation window, it holds this many resolved shipments and this many of each class.
    pub min_train_shipments: usize,
    pub min_train_class: usize,
    pub logistic_alpha: f64,
    pub logistic_max_iterations: u64,
    pub tree_max_depth: usize,
    pub tree_min_weight_leaf: f32,
    pub forest_trees: usize,
    pub forest_max_depth: usize,
    pub forest_feature_fraction: f64,
    /// Gradient-boosted trees: most rounds (early stopping usually ends sooner), step size,
    /// depth, least hessian per leaf, L2 on leaves, histogram bins, rounds without improvement
    /// before stopping, share of rows per round.
    pub gbdt_max_rounds: usize,
    pub gbdt_learning_rate: f64,
    pub gbdt_max_depth: usize,
    pub gbdt_min_child_weight: f64,
    pub gbdt_l2: f64,
    pub gbdt_bins: usize,
    pub gbdt_early_stopping_rounds: usize,
    pub gbdt_subsample: f64,
    /// Alert budget for evaluation: the top fraction of validation rows by risk.
    pub alert_budget_fraction: f64,
    pub calibration_bins: usize,
    /// Nights the model is trained on: every night (1), or every N days counted from Monday
    /// 1970-01-05 (7: Mondays). The nights between score with the model of the last training
    /// night, as trained on the input known before its cutoff, and publish that night's advice
    /// (both kept in the state, or computed again when the state has none or late rows changed
    /// that input).
    pub retrain_every_days: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// Calibrated risk at or above which an in-flight parcel is `at_risk`.
    pub risk_threshold: f64,
    pub high_risk: f64,
    pub medium_risk: f64,
    /// `stalled`: no scan for this many times the lane's p90 of the current stage ...
    pub stalled_factor: f64,
    /// ... and for at least this many days.
    pub stalled_min_days: f64,
    /// Alerts per seller per night; the rest are counted in the index but not listed.
    pub max_per_seller: usize,
    /// Declared value (USD) from which an insured parcel is "high value".
    pub high_value_usd: f64,
    /// Days after the promise from which a late parcel is high severity.
    pub late_high_days: f64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig { name: "adhoc".into(), input: None, out: None, as_of: None, seed: 42 }
    }
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            naive_timezone: String::new(),
            columns: ColumnMapping::default(),
            status_preset: String::new(),
            statuses: BTreeMap::new(),
            max_memory_gb: 16.0,
        }
    }
}

impl LaneConfig {
    /// The oldest day any adaptive window may reach back to (at least `window_days`).
    pub fn oldest_days(&self) -> u32 {
        self.max_window_days.max(self.window_days)
    }
}

impl Default for LaneConfig {
    fn default() -> Self {
        LaneConfig {
            window_days: 90,
            max_window_days: 1095,
            min_support: 30,
            recent_days: 7,
            disruption_ratio: 1.4,
            disruption_min_recent: 8,
            disruption_min_increase_days: 0.75,
            disruption_min_z: 3.0,
        }
    }
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            snapshots_per_shipment: 3,
            train_window_days: 120,
            prior_strength: 20.0,
            stats_every_days: 7,
            holidays: ["01-01", "11-11", "black-friday", "12-24", "12-25", "12-26", "12-31"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            candidates: ["logistic", "tree", "forest", "gbdt"].iter().map(|s| s.to_string()).collect(),
            holdout_days: 21,
            max_train_rows: 20_000,
            max_valid_rows: 100_000,
            min_train_rows: 200,
            min_class_rows: 20,
            min_valid_shipments: 300,
            min_valid_class: 30,
            min_train_shipments: 1500,
            min_train_class: 60,
            logistic_alpha: 1.0,
            logistic_max_iterations: 60,
            tree_max_depth: 8,
            tree_min_weight_leaf: 20.0,
            forest_trees: 24,
            forest_max_depth: 8,
            forest_feature_fraction: 0.5,
            gbdt_max_rounds: 300,
            gbdt_learning_rate: 0.08,
            gbdt_max_depth: 5,
            gbdt_min_child_weight: 5.0,
            gbdt_l2: 1.0,
            gbdt_bins: 64,
            gbdt_early_stopping_rounds: 20,
            gbdt_subsample: 0.8,
            alert_budget_fraction: 0.05,
            calibration_bins: 10,
            retrain_every_days: 1,
        }
    }
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            risk_threshold: 0.5,
            high_risk: 0.8,
            medium_risk: 0.65,
            stalled_factor: 2.0,
            stalled_min_days: 4.0,
            max_per_seller: 200,
            high_value_usd: 100.0,
            late_high_days: 5.0,
        }
    }
}

/// `LANEWATCH_*` variables that are not config keys: the log settings, the fault-injection
/// testing aid, and what the tests and notebooks use (README, "Environment"). Every other
/// `LANEWATCH_*` variable is a config key, and an unknown one is an error.
pub const NOT_CONFIG: &[&str] = &[
    "LOG",
    "LOG_FORMAT",
    "FAULT",
    "STATE_SLICE_ROWS",
    "SPILL_ABOVE_MB",
    "PYTHON",
    "SHARED",
    "VENV",
    "SAMPLE_DIR",
    "RUN_DIR",
    "RUNS_DIR",
    "BACKTEST_DIR",
];

/// Whether `LANEWATCH_<rest>` is not a config key (logging, faults, test switches).
pub(crate) fn is_not_config(rest: &str) -> bool {
    NOT_CONFIG.contains(&rest) || (rest.starts_with("SKIP_") && rest.ends_with("_TESTS"))
}

/// Overrides collected from the command line; `None` leaves lower layers alone.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub input: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub as_of: Option<String>,
    pub seed: Option<u64>,
    /// `backtest --from/--to/--every`.
    pub from: Option<String>,
    pub to: Option<String>,
    pub every: Option<u32>,
}

/// `value` as a `Config`, or a config error naming the key whose value has the wrong type and
/// the layer that set it (`origin`).
fn typed(value: &toml::Value, origin: &BTreeMap<String, String>) -> Result<Config> {
    value.clone().try_into().map_err(|e: toml::de::Error| {
        let why = crate::error::one_line(e.message().to_string());
        Error::Config(match bad_key(value) {
            Some(key) => {
                let from = origin.get(&key).map(|o| format!(" (set by {o})")).unwrap_or_default();
                format!("{key}{from}: {why}")
            }
            None => why,
        })
    })
}

impl Config {
    /// BLAKE3 of the config without what may differ between the machines or nights of one job
    /// and does not change results: the paths, the night (checked on its own), the memory
    /// budget and the state settings. Sharded nights' partials and the kept model carry it.
    pub fn digest(&self) -> String {
        let mut c = self.clone();
        c.pipeline.input = None;
        c.pipeline.out = None;
        c.pipeline.as_of = None;
        c.input.max_memory_gb = 0.0;
        c.state = Default::default();
        let json = serde_json::to_vec(&c).unwrap_or_default();
        blake3::hash(&json).to_hex().to_string()
    }

    /// Defaults, then the file, then `LANEWATCH_*` variables from `env`, then `cli`.
    pub fn load(file: Option<&Path>, env: &[(String, String)], cli: &Overrides) -> Result<Config> {
        let mut value = toml::Value::try_from(Config::default()).map_err(Error::internal)?;
        // Where each key was last set, so an error can say which line of which layer to fix.
        let mut origin: BTreeMap<String, String> = BTreeMap::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
            let parsed: toml::Value = text
                .parse::<toml::Table>()
                .map(toml::Value::Table)
                .map_err(|e| Error::Config(format!("{}: {}", path.display(), crate::error::one_line(e.to_string()))))?;
            for leaf in leaves(&parsed, "") {
                origin.insert(leaf, path.display().to_string());
            }
            merge(&mut value, parsed, "")?;
            // Each layer is checked before the next may override it: a file's `as_of = 20260720`
            // under `--as-of` passed, and broke the first night run without the flag.
            checked(&value, &origin)?;
        }
        for (key, raw) in env {
            let Some(rest) = key.strip_prefix("LANEWATCH_") else {
                continue;
            };
            if is_not_config(rest) {
                continue;
            }
            let mut path: Vec<String> = match rest {
                "INPUT" | "OUT" | "AS_OF" | "SEED" => {
                    vec!["pipeline".into(), rest.to_ascii_lowercase()]
                }
                _ => rest.split("__").map(|p| p.to_ascii_lowercase()).collect(),
            };
            // A variable's name is in capitals, read as lower case; statuses match whatever
            // their case, so one the file names in another case is the one it overrides
            // (`LANEWATCH_INPUT__STATUSES__HELD` over the file's `"Held"`: both were kept, and
            // refused as one status mapped twice).
            if let [section, table, status] = &path[..]
                && section == "input"
                && table == "statuses"
                && let Some(named) = value
                    .get("input")
                    .and_then(|i| i.get("statuses"))
                    .and_then(toml::Value::as_table)
                    .and_then(|t| t.keys().find(|k| k.to_lowercase() == *status))
            {
                path[2] = named.clone();
            }
            // A value for a text key stays text: a column named `2026` or a pipeline named
            // `1.0` set from the environment is not a number.
            let scalar = if is_text_key(&value, &path) { toml::Value::String(raw.clone()) } else { parse_scalar(raw) };
            set_path(&mut value, &path, scalar, key)?;
            origin.insert(path.join("."), key.clone());
        }
        // Likewise the variables' values under the flags (`LANEWATCH_AS_OF=2026-13-01` passed
        // under `--as-of`).
        checked(&value, &origin)?;
        let mut set = |section: &str, name: &str, v: toml::Value| {
            let flag = format!("--{}", name.replace('_', "-"));
            origin.insert(format!("{section}.{name}"), flag.clone());
            set_path(&mut value, &[section.into(), name.into()], v, &flag)
        };
        let text = |s: &str| toml::Value::String(s.to_string());
        // The config holds paths as text (TOML, the manifest). A path that is not UTF-8 was
        // read lossily: a night then looked for another folder and named it with U+FFFD.
        let utf8 = |flag: &str, p: &Path| -> Result<toml::Value> {
            p.to_str().map(text).ok_or_else(|| {
                Error::Config(format!("{flag} {}: the path is not UTF-8 text; rename or link it", p.display()))
            })
        };
        if let Some(p) = &cli.input {
            set("pipeline", "input", utf8("--input", p)?)?;
        }
        if let Some(p) = &cli.out {
            set("pipeline", "out", utf8("--out", p)?)?;
        }
        if let Some(a) = &cli.as_of {
            set("pipeline", "as_of", text(a))?;
        }
        if let Some(s) = cli.seed {
            // TOML integers are signed 64-bit, so a config file cannot hold a larger seed
            // either; a cast would wrap it to a negative number and a confusing message.
            let s = i64::try_from(s)
                .map_err(|_| Error::Config(format!("--seed {s}: at most {} (a 64-bit signed integer)", i64::MAX)))?;
            set("pipeline", "seed", toml::Value::Integer(s))?;
        }
        if let Some(f) = &cli.from {
            set("backtest", "from", text(f))?;
        }
        if let Some(t) = &cli.to {
            set("backtest", "to", text(t))?;
        }
        if let Some(e) = cli.every {
            set("backtest", "every", toml::Value::Integer(e as i64))?;
        }
        checked(&value, &origin)
    }

    /// Range checks that serde cannot express.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        let l = &self.lanes;
        if l.window_days == 0 || l.recent_days == 0 || l.recent_days >= l.window_days {
            return bad(format!(
                "lanes.recent_days ({}) must be at least 1 and below lanes.window_days ({})",
                l.recent_days, l.window_days
            ));
        }
        // Infinite, no lane could ever be flagged: the rule off without a word.
        if !(l.disruption_ratio > 1.0 && l.disruption_ratio.is_finite()) {
            return bad(format!("lanes.disruption_ratio must be a number above 1, got {}", l.disruption_ratio));
        }
        // At 0 a lane stage with an empty cohort passed the support test: its recent median
        // (of nothing) was NaN, written as its ratio and taken into the network's median.
        if l.disruption_min_recent == 0 {
            return bad("lanes.disruption_min_recent must be at least 1".into());
        }
        if self.features.snapshots_per_shipment == 0 || self.features.snapshots_per_shipment > 50 {
            return bad("features.snapshots_per_shipment must be in 1..=50".into());
        }
        if self.features.stats_every_days == 0 || self.features.stats_every_days > 60 {
            return bad("features.stats_every_days must be in 1..=60".into());
        }
        if !(self.features.prior_strength >= 0.0 && self.features.prior_strength.is_finite()) {
            return bad("features.prior_strength must be a non-negative number".into());
        }
        // Thresholds a comparison reads: NaN compares false and turned the rule off unseen (a
        // NaN `stalled_min_days` dropped the floor, a NaN `disruption_min_z` flagged nothing).
        let a = &self.alerts;
        for (name, v) in [
            ("alerts.stalled_min_days", a.stalled_min_days),
            ("alerts.late_high_days", a.late_high_days),
            ("alerts.high_value_usd", a.high_value_usd),
            ("lanes.disruption_min_increase_days", l.disruption_min_increase_days),
            ("lanes.disruption_min_z", l.disruption_min_z),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(format!("{name} must be a non-negative number, got {v}"));
            }
        }
        // Days become microseconds (`days * MICROS_PER_DAY` overflows past 106 million days)
        // and per-day arrays: a window past a century is a typo, refused here rather than
        // wrapping into empty statistics or exhausting memory.
        for (name, v) in [
            ("lanes.window_days", l.window_days),
            ("lanes.max_window_days", l.max_window_days),
            ("features.train_window_days", self.features.train_window_days),
            ("backtest.every", self.backtest.every.unwrap_or(1)),
        ] {
            if v > MAX_DAYS {
                return bad(format!("{name} must be at most {MAX_DAYS} days, got {v}"));
            }
        }
        // Checked here, not only where a backtest reads it: `every = 0` passed `config` and
        // every nightly run, and failed only the first backtest.
        if self.backtest.every == Some(0) {
            return bad("backtest.every must be at least 1".into());
        }
        // Below, every adaptive window was quietly widened to `window_days` (`oldest_days`).
        if l.max_window_days < l.window_days {
            return bad(format!(
                "lanes.max_window_days ({}) must be at least lanes.window_days ({})",
                l.max_window_days, l.window_days
            ));
        }
        // The model's own ranges are checked by `ModelParams::check`; this is the one check
        // that spans two sections.
        if self.model.holdout_days >= self.features.train_window_days {
            return bad("model.holdout_days must be below features.train_window_days".into());
        }
        if self.model.retrain_every_days == 0 || self.model.retrain_every_days > 28 {
            return bad(format!("model.retrain_every_days must be in 1..=28, got {}", self.model.retrain_every_days));
        }
        if self.report.trend_nights == 0 || self.report.trend_nights > 366 {
            return bad(format!("report.trend_nights must be in 1..=366, got {}", self.report.trend_nights));
        }
        if self.report.percentile_lanes > 200 {
            return bad(format!("report.percentile_lanes must be at most 200, got {}", self.report.percentile_lanes));
        }
        let ad = &self.advice;
        for (name, v) in [("confidence", ad.confidence), ("target_on_time_rate", ad.target_on_time_rate)] {
            if !(v > 0.0 && v < 1.0) {
                return bad(format!("advice.{name} must be in (0, 1), got {v}"));
            }
        }
        if !ad.weight_bands_g.windows(2).all(|w| w[0] < w[1]) || ad.weight_bands_g.iter().any(|v| !(*v > 0.0)) {
            return bad("advice.weight_bands_g must be positive and increasing".into());
        }
        // A band travels as a byte (`advice::Obs`).
        if ad.weight_bands_g.len() > 254 {
            return bad(format!("advice.weight_bands_g has {} edges; at most 254", ad.weight_bands_g.len()));
        }
        if ad.promise_sample == 0 {
            return bad("advice.promise_sample must be at least 1".into());
        }
        let a = &self.alerts;
        for (name, v) in
            [("risk_threshold", a.risk_threshold), ("high_risk", a.high_risk), ("medium_risk", a.medium_risk)]
        {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("alerts.{name} must be in [0, 1], got {v}"));
            }
        }
        // Reversed, no alert could be of medium severity.
        if a.high_risk < a.medium_risk {
            return bad(format!(
                "alerts.high_risk ({}) must be at least alerts.medium_risk ({})",
                a.high_risk, a.medium_risk
            ));
        }
        if !(a.stalled_factor >= 1.0) {
            return bad("alerts.stalled_factor must be at least 1".into());
        }
        if a.max_per_seller == 0 {
            return bad("alerts.max_per_seller must be at least 1".into());
        }
        if !(self.input.max_memory_gb >= 0.0 && self.input.max_memory_gb.is_finite()) {
            return bad("input.max_memory_gb must be a non-negative number (0 for no limit)".into());
        }
        NaiveZone::parse(&self.input.naive_timezone)?;
        for (table, map) in [("shipments", &self.input.columns.shipments), ("events", &self.input.columns.events)] {
            let spec = if table == "shipments" { crate::schema::SHIPMENTS } else { crate::schema::EVENTS };
            for k in map.keys() {
                if !spec.iter().any(|c| c.name == k) {
                    return bad(format!("input.columns.{table}: {k:?} is not a canonical column"));
                }
            }
        }
        let dates = [
            ("pipeline.as_of", &self.pipeline.as_of),
            ("backtest.from", &self.backtest.from),
            ("backtest.to", &self.backtest.to),
        ];
        for (key, date) in dates {
            if let Some(d) = date.as_deref().filter(|d| !(key == "pipeline.as_of" && *d == "yesterday")) {
                parse_date(d).map_err(|e| match e {
                    Error::Config(m) => Error::Config(format!("{key}: {m}")),
                    other => other,
                })?;
            }
        }
        Ok(())
    }
}

/// `typed` and `Config::check` of the layers so far. A value a later layer overrides is checked
/// all the same: the night started without that layer reads it. The error says where each key
/// it names was set (`origins`).
fn checked(value: &toml::Value, origin: &BTreeMap<String, String>) -> Result<Config> {
    let config = typed(value, origin)?;
    config.check().map_err(|e| match e {
        Error::Config(m) => Error::Config(origins(m, origin)),
        other => other,
    })?;
    Ok(config)
}

/// `message` followed by where each key it names was set: `(alerts.high_risk set by
/// LANEWATCH_ALERTS__HIGH_RISK)`. Keys left at their defaults are not named.
fn origins(message: String, origin: &BTreeMap<String, String>) -> String {
    let part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    let names = |key: &str| {
        message.match_indices(key).any(|(at, _)| {
            let before = message[..at].chars().next_back();
            let after = message[at + key.len()..].chars().next();
            !before.is_some_and(part) && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    };
    let set: Vec<String> = origin.iter().filter(|(k, _)| names(k)).map(|(k, o)| format!("{k} set by {o}")).collect();
    if set.is_empty() { message } else { format!("{message} ({})", set.join(", ")) }
}

/// The longest window in days any `*_days` key may ask for: a century.
pub const MAX_DAYS: u32 = 36_500;

pub fn parse_date(s: &str) -> Result<NaiveDate> {
    let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| Error::Config(format!("bad date {:?}: expected YYYY-MM-DD", s)))?;
    // chrono's `%Y` takes a signed year of any width: `+262142-12-31` parsed, and the night's
    // cutoff (the day after) panicked once the night was computed.
    if !(MIN_YEAR..=MAX_YEAR).contains(&chrono::Datelike::year(&d)) {
        return Err(Error::Config(format!("bad date {s:?}: years {MIN_YEAR} to {MAX_YEAR} only")));
    }
    Ok(d)
}

/// The years a date flag or key may name.
pub const MIN_YEAR: i32 = 1900;
pub const MAX_YEAR: i32 = 2999;

/// The zone of timestamps stored without one (`input.naive_timezone`): a zone of the IANA
/// database (`Asia/Shanghai`), or a fixed offset from UTC as zoned timestamps' own annotations
/// write it (`+05:30`, `-0300`, `+08`). An offset was refused as an unknown zone, although the
/// README lists it beside the names for zoned columns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NaiveZone {
    Named(chrono_tz::Tz),
    /// Seconds east of UTC.
    Fixed(i32),
}

impl NaiveZone {
    /// The setting read as ingest reads it (trimmed): `None` when empty (naive timestamps are
    /// refused) or UTC (read as they are); a config error for what is neither zone nor offset.
    pub fn parse(setting: &str) -> Result<Option<NaiveZone>> {
        let zone = setting.trim();
        if zone.is_empty() || is_utc(zone) {
            return Ok(None);
        }
        if let Ok(tz) = zone.parse::<chrono_tz::Tz>() {
            return Ok(Some(NaiveZone::Named(tz)));
        }
        fixed_offset(zone).map(|s| Some(NaiveZone::Fixed(s))).ok_or_else(|| {
            Error::Config(format!(
                "input.naive_timezone: unknown zone {setting:?} (an IANA zone such as \"Asia/Shanghai\", or an offset such as \"+05:30\")"
            ))
        })
    }

    /// Wall-clock µs in this zone to UTC µs.
    pub fn to_utc(&self, local_us: i64) -> i64 {
        match self {
            NaiveZone::Named(tz) => local_to_utc(local_us, tz),
            NaiveZone::Fixed(secs) => local_us.saturating_sub(*secs as i64 * 1_000_000),
        }
    }
}

/// The spellings of UTC read as UTC besides the zone names.
pub fn is_utc(tz: &str) -> bool {
    matches!(tz, "UTC" | "utc" | "Etc/UTC" | "+00:00" | "Z")
}

/// Wall-clock µs in `tz` to UTC µs. Ambiguous times take the earlier instant; times in a
/// spring-forward gap are read in the offset before the gap (standard time). The offset at the
/// UTC instant numerically equal to the wall time was standard time west of Greenwich and
/// summer time east of it (Berlin's 02:30 read as 00:30Z, an hour early).
fn local_to_utc(local_us: i64, tz: &chrono_tz::Tz) -> i64 {
    use chrono::{LocalResult, Offset, TimeZone as _};
    let secs = local_us.div_euclid(1_000_000);
    let sub = local_us.rem_euclid(1_000_000);
    let Some(naive) = chrono::DateTime::from_timestamp(secs, 0).map(|d| d.naive_utc()) else {
        return local_us;
    };
    let offset = match tz.offset_from_local_datetime(&naive) {
        LocalResult::Single(o) | LocalResult::Ambiguous(o, _) => o.fix().local_minus_utc() as i64,
        LocalResult::None => {
            let before = naive.checked_sub_signed(chrono::Duration::hours(26)).unwrap_or(naive);
            tz.offset_from_utc_datetime(&before).fix().local_minus_utc() as i64
        }
    };
    (secs - offset) * 1_000_000 + sub
}

/// `±HH:MM`, `±HHMM` or `±HH` as seconds east of UTC, within ±14:00 (the widest offset in use).
fn fixed_offset(s: &str) -> Option<i32> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    if !rest.is_ascii() {
        return None;
    }
    fn digits(t: &str) -> Option<&str> {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())).then_some(t)
    }
    let (h, m) = match (rest.len(), rest.find(':')) {
        (2, None) => (digits(rest)?, "0"),
        (4, None) => (digits(&rest[..2])?, digits(&rest[2..])?),
        (5, Some(2)) => (digits(&rest[..2])?, digits(&rest[3..])?),
        _ => return None,
    };
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && h * 60 + m <= 14 * 60).then_some(sign * (h * 3600 + m * 60))
}

/// Keys absent from the serialised defaults (unset by default) that hold text.
const OPTIONAL_TEXT_KEYS: [&str; 5] =
    ["pipeline.input", "pipeline.out", "pipeline.as_of", "backtest.from", "backtest.to"];

/// Tables whose keys are the user's (column names, raw statuses), text to text.
const FREE_FORM_TABLES: [&str; 2] = ["input.columns", "input.statuses"];

/// Whether the key at `path` holds text: a text default, one of the optional text keys, or a
/// key of a free-form table.
fn is_text_key(value: &toml::Value, path: &[String]) -> bool {
    let dotted = path.join(".");
    if OPTIONAL_TEXT_KEYS.contains(&dotted.as_str())
        || FREE_FORM_TABLES.iter().any(|t| dotted.strip_prefix(t).is_some_and(|rest| rest.starts_with('.')))
    {
        return true;
    }
    let mut slot = value;
    for p in path {
        match slot.get(p) {
            Some(next) => slot = next,
            None => return false,
        }
    }
    slot.is_str()
}

fn parse_scalar(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = raw.parse::<f64>() {
        return toml::Value::Float(f);
    }
    match raw {
        "true" => return toml::Value::Boolean(true),
        "false" => return toml::Value::Boolean(false),
        _ => {}
    }
    if raw.starts_with('[') {
        if let Ok(t) = format!("v = {raw}").parse::<toml::Table>() {
            if let Some(v) = t.get("v") {
                return v.clone();
            }
        }
    }
    toml::Value::String(raw.to_string())
}

/// Dotted paths of the values in a config table (arrays count as values).
fn leaves(v: &toml::Value, at: &str) -> Vec<String> {
    match v {
        toml::Value::Table(t) => t
            .iter()
            .flat_map(|(k, v)| leaves(v, &if at.is_empty() { k.clone() } else { format!("{at}.{k}") }))
            .collect(),
        _ => vec![at.to_string()],
    }
}

/// The first key whose value alone makes the defaults fail to deserialize: the key a type
/// error (a string where a number belongs, say) is about. serde's message names the type, not
/// the key.
fn bad_key(value: &toml::Value) -> Option<String> {
    let defaults = toml::Value::try_from(Config::default()).ok()?;
    for key in leaves(value, "") {
        let parts: Vec<&str> = key.split('.').collect();
        let mut leaf = value;
        for p in &parts {
            leaf = leaf.get(p)?;
        }
        let mut candidate = defaults.clone();
        let mut slot = &mut candidate;
        for p in &parts[..parts.len() - 1] {
            let table = slot.as_table_mut()?;
            slot = table.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        }
        slot.as_table_mut()?.insert(parts[parts.len() - 1].to_string(), leaf.clone());
        if candidate.try_into::<Config>().is_err() {
            return Some(key);
        }
    }
    None
}

/// Merges `over` into `base`, refusing keys the defaults do not have (maps excepted).
fn merge(base: &mut toml::Value, over: toml::Value, at: &str) -> Result<()> {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                // Optional keys are absent from the serialised defaults but still known.
                let free_form = FREE_FORM_TABLES.iter().any(|t| at.starts_with(t))
                    || OPTIONAL_TEXT_KEYS.contains(&path.as_str())
                    || path == "backtest.every";
                match b.get_mut(&k) {
                    // Tables merge key by key, free-form ones too: a variable mapping one
                    // column of a table replaced the file's whole mapping of that table.
                    Some(slot) if slot.is_table() && v.is_table() => merge(slot, v, &path)?,
                    Some(slot) => *slot = v,
                    None if free_form => {
                        b.insert(k, v);
                    }
                    None => return Err(Error::Config(format!("unknown key {path:?}"))),
                }
            }
            Ok(())
        }
        (b, o) => {
            *b = o;
            Ok(())
        }
    }
}

fn set_path(value: &mut toml::Value, path: &[String], v: toml::Value, origin: &str) -> Result<()> {
    let mut over = v;
    for k in path.iter().rev() {
        let mut t = toml::Table::new();
        t.insert(k.clone(), over);
        over = toml::Value::Table(t);
    }
    merge(value, over, "").map_err(|e| match e {
        Error::Config(m) => Error::Config(format!("{origin}: {m}")),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wall times in a spring-forward gap read in the offset before it, east and west of
    /// Greenwich alike; ordinary and repeated times as before.
    #[test]
    fn times_in_a_spring_forward_gap_read_as_standard_time() {
        let us =
            |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap().and_utc().timestamp_micros();
        let zone = |z: &str| z.parse::<chrono_tz::Tz>().unwrap();
        let cases = [
            ("Europe/Berlin", "2026-03-29 02:30", "2026-03-29 01:30"),
            ("America/New_York", "2026-03-08 02:30", "2026-03-08 07:30"),
            ("Australia/Sydney", "2026-10-04 02:30", "2026-10-03 16:30"),
            ("Europe/Berlin", "2026-03-29 03:30", "2026-03-29 01:30"),
            ("Europe/Berlin", "2026-07-01 12:00", "2026-07-01 10:00"),
            // Repeated in the autumn: the earlier instant.
            ("Europe/Berlin", "2026-10-25 02:30", "2026-10-25 00:30"),
        ];
        for (z, local, want) in cases {
            assert_eq!(local_to_utc(us(local), &zone(z)), us(want), "{z} {local}");
        }
    }

    /// `input.naive_timezone` names a zone or a fixed offset; the spellings of UTC and an empty
    /// setting convert nothing. Regression: `+05:30` was refused as an unknown zone.
    #[test]
    fn a_naive_zone_is_a_name_or_a_fixed_offset() {
        let hour = 3_600_000_000i64;
        let to_utc = |z: &str| NaiveZone::parse(z).unwrap().map(|z| z.to_utc(10 * hour));
        for (z, want) in [
            ("+05:30", 10 * hour - 11 * hour / 2),
            (" -0300 ", 13 * hour),
            ("+08", 2 * hour),
            ("-00:00", 10 * hour),
            ("+14:00", -4 * hour),
            ("Asia/Kolkata", 10 * hour - 11 * hour / 2),
        ] {
            assert_eq!(to_utc(z), Some(want), "{z:?}");
        }
        for z in ["", "UTC", "+00:00", "Z"] {
            assert_eq!(to_utc(z), None, "{z:?}");
        }
        for z in
            ["+5:30", "+05:60", "+14:30", "+15", "05:30", "+05:3", "+0530x", "++0530", "+05-30", "+1é1", "Mars/Base"]
        {
            let e = NaiveZone::parse(z).unwrap_err();
            assert_eq!(e.exit_code(), 78, "{z:?}");
            assert!(e.to_string().contains("input.naive_timezone"), "{e}");
        }
    }

    #[test]
    fn unknown_key_in_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[alerts]\nrisk_treshold = 0.3\n").unwrap();
        let e = Config::load(Some(&p), &[], &Overrides::default()).unwrap_err();
        assert_eq!(e.exit_code(), 78);
        assert!(e.to_string().contains("alerts.risk_treshold"), "{e}");
    }

    #[test]
    fn precedence_cli_env_file_default() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "[pipeline]\nseed = 1\nas_of = \"2026-01-01\"\n[alerts]\nrisk_threshold = 0.3\nhigh_risk = 0.9\n",
        )
        .unwrap();
        let env = vec![
            ("LANEWATCH_SEED".to_string(), "2".to_string()),
            ("LANEWATCH_ALERTS__RISK_THRESHOLD".to_string(), "0.4".to_string()),
        ];
        let c = Config::load(Some(&p), &env, &Overrides::default()).unwrap();
        assert_eq!(c.pipeline.seed, 2);
        assert_eq!(c.alerts.risk_threshold, 0.4);
        assert_eq!(c.alerts.high_risk, 0.9);
        assert_eq!(c.alerts.medium_risk, AlertConfig::default().medium_risk);
        let c = Config::load(Some(&p), &env, &Overrides { seed: Some(3), ..Default::default() }).unwrap();
        assert_eq!(c.pipeline.seed, 3);
        assert_eq!(c.pipeline.as_of.as_deref(), Some("2026-01-01"));
    }

    #[test]
    fn type_errors_name_the_key_and_where_it_was_set() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[alerts]\nrisk_threshold = \"high\"\n").unwrap();
        let e = Config::load(Some(&p), &[], &Overrides::default()).unwrap_err();
        assert_eq!(e.exit_code(), 78);
        let m = e.to_string();
        assert!(m.contains("alerts.risk_threshold") && m.contains(&p.display().to_string()), "{m}");
        let env = vec![("LANEWATCH_ALERTS__RISK_THRESHOLD".to_string(), "abc".to_string())];
        let m = Config::load(None, &env, &Overrides::default()).unwrap_err().to_string();
        assert!(m.contains("alerts.risk_threshold (set by LANEWATCH_ALERTS__RISK_THRESHOLD)"), "{m}");
        let env = vec![("LANEWATCH_FEATURES__HOLIDAYS".to_string(), "7".to_string())];
        let m = Config::load(None, &env, &Overrides::default()).unwrap_err().to_string();
        assert!(m.contains("features.holidays"), "{m}");
    }

    #[test]
    fn environment_text_that_looks_like_a_number_stays_text() {
        let env = vec![
            ("LANEWATCH_PIPELINE__NAME".to_string(), "2026".to_string()),
            ("LANEWATCH_AS_OF".to_string(), "2026-06-01".to_string()),
            ("LANEWATCH_INPUT__COLUMNS__SHIPMENTS__SHIPMENT_ID".to_string(), "10".to_string()),
            ("LANEWATCH_INPUT__STATUSES__7".to_string(), "DELIVERED".to_string()),
            ("LANEWATCH_ALERTS__RISK_THRESHOLD".to_string(), "0.4".to_string()),
        ];
        let c = Config::load(None, &env, &Overrides::default()).unwrap();
        assert_eq!(c.pipeline.name, "2026");
        assert_eq!(c.alerts.risk_threshold, 0.4);
        assert_eq!(c.input.statuses.get("7").map(String::as_str), Some("DELIVERED"));
        let mapped = serde_json::to_string(&c.input.columns).unwrap();
        assert!(mapped.contains("\"10\""), "{mapped}");
    }

    /// Regression: a variable mapping one column replaced the file's other mappings of the
    /// same table.
    #[test]
    fn one_column_mapped_by_a_variable_keeps_the_files_others() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[input.columns.shipments]\nshipment_id = \"parcel_no\"\nseller_id = \"merchant\"\n")
            .unwrap();
        let env = vec![("LANEWATCH_INPUT__COLUMNS__SHIPMENTS__PROMISED_AT".to_string(), "promise_ts".to_string())];
        let c = Config::load(Some(&p), &env, &Overrides::default()).unwrap();
        let mapped: Vec<(&str, &str)> =
            c.input.columns.shipments.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(mapped, [("promised_at", "promise_ts"), ("seller_id", "merchant"), ("shipment_id", "parcel_no")]);
    }

    /// Regression: a variable for a status the file names in another case was kept beside it,
    /// and the two refused as one status mapped twice.
    #[test]
    fn a_variable_overrides_the_files_status_whatever_its_case() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[input.statuses]\n\"Held\" = \"CUSTOMS_HOLD\"\n\"Gone\" = \"LOST\"\n").unwrap();
        let env = vec![
            ("LANEWATCH_INPUT__STATUSES__HELD".to_string(), "SCAN".to_string()),
            ("LANEWATCH_INPUT__STATUSES__NEW".to_string(), "CREATED".to_string()),
        ];
        let c = Config::load(Some(&p), &env, &Overrides::default()).unwrap();
        let mapped: Vec<(&str, &str)> = c.input.statuses.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(mapped, [("Gone", "LOST"), ("Held", "SCAN"), ("new", "CREATED")]);
    }

    #[test]
    fn a_seed_beyond_64_bit_signed_is_a_config_error() {
        let e = Config::load(None, &[], &Overrides { seed: Some(u64::MAX), ..Default::default() }).unwrap_err();
        assert_eq!(e.exit_code(), 78);
        // Said as a bound, not as the negative number a cast wrapped it to.
        assert!(e.to_string().contains("--seed") && e.to_string().contains(&i64::MAX.to_string()), "{e}");
        let c = Config::load(None, &[], &Overrides { seed: Some(i64::MAX as u64), ..Default::default() }).unwrap();
        assert_eq!(c.pipeline.seed, i64::MAX as u64);
    }

    /// Regression: a year of any width parsed (chrono's `%Y`), and the night's cutoff, the day
    /// after, panicked after the night was computed; a replay step of a hundred million days
    /// panicked stepping to the second night.
    #[test]
    fn dates_and_steps_out_of_range_are_config_errors() {
        assert_eq!(parse_date("+262142-12-31").unwrap_err().exit_code(), 78);
        assert_eq!(parse_date("1899-12-31").unwrap_err().exit_code(), 78);
        assert!(parse_date("2026-06-20").is_ok() && parse_date("2999-12-31").is_ok());
        let cli = Overrides { every: Some(100_000_000), ..Default::default() };
        let e = Config::load(None, &[], &cli).unwrap_err();
        assert!(e.exit_code() == 78 && e.to_string().contains("backtest.every"), "{e}");
    }

    /// A message names where each key it mentions was set, and only the keys it mentions.
    #[test]
    fn errors_name_where_their_keys_were_set() {
        let origin: BTreeMap<String, String> = [
            ("lanes.window_days", "lanes.toml"),
            ("lanes.max_window_days", "LANEWATCH_LANES__MAX_WINDOW_DAYS"),
            ("alerts.high_risk", "LANEWATCH_ALERTS__HIGH_RISK"),
        ]
        .into_iter()
        .map(|(k, o)| (k.to_string(), o.to_string()))
        .collect();
        let m = origins("lanes.max_window_days (60) must be at least lanes.window_days (90)".into(), &origin);
        assert_eq!(
            m,
            "lanes.max_window_days (60) must be at least lanes.window_days (90) (lanes.max_window_days set by \
             LANEWATCH_LANES__MAX_WINDOW_DAYS, lanes.window_days set by lanes.toml)"
        );
        // `lanes.window_days` is not named inside `lanes.max_window_days`, nor `alerts.high_risk`
        // inside a longer key.
        let m = origins("lanes.max_window_days and alerts.high_risk_x".into(), &origin);
        assert_eq!(
            m,
            "lanes.max_window_days and alerts.high_risk_x (lanes.max_window_days set by LANEWATCH_LANES__MAX_WINDOW_DAYS)"
        );
        assert_eq!(origins("nothing named".into(), &origin), "nothing named");
    }

    #[test]
    fn unknown_env_key_is_an_error() {
        let env = vec![("LANEWATCH_ALERTS__NOPE".to_string(), "1".to_string())];
        let e = Config::load(None, &env, &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("alerts.nope"), "{e}");
    }

    #[test]
    fn bad_values_are_config_errors() {
        let env = vec![("LANEWATCH_ALERTS__RISK_THRESHOLD".to_string(), "1.5".to_string())];
        assert_eq!(Config::load(None, &env, &Overrides::default()).unwrap_err().exit_code(), 78);
        let env = vec![("LANEWATCH_INPUT__NAIVE_TIMEZONE".to_string(), "Mars/Olympus".to_string())];
        assert_eq!(Config::load(None, &env, &Overrides::default()).unwrap_err().exit_code(), 78);
        // A fixed offset is a zone (regression: refused as unknown).
        let env = vec![("LANEWATCH_INPUT__NAIVE_TIMEZONE".to_string(), "+05:30".to_string())];
        Config::load(None, &env, &Overrides::default()).unwrap();
        // Regression: 0 let an empty cohort's NaN median through as a lane's ratio.
        let env = vec![("LANEWATCH_LANES__DISRUPTION_MIN_RECENT".to_string(), "0".to_string())];
        let e = Config::load(None, &env, &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("lanes.disruption_min_recent"), "{e}");
        let env = vec![("LANEWATCH_LANES__DISRUPTION_MIN_RECENT".to_string(), "1".to_string())];
        Config::load(None, &env, &Overrides::default()).unwrap();
    }
}
