//! The config resolved once (ripgrep's low-level → high-level arguments): paths, the night,
//! parsed holidays and every stage's checked parameters. Commands receive `Settings` and never
//! re-read or re-check the raw config.

use std::path::{Path, PathBuf};

use crate::calendar::Night;
use crate::config::{self, AlertConfig, Config, InputConfig};
use crate::error::{Error, Result};
use crate::features::FeatureParams;
use crate::model::{ModelParams, ValidParams};
use crate::statuses::Vocabulary;

/// The nights a backtest replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BacktestRange {
    pub from: Night,
    pub to: Night,
    pub every: u32,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// The config as given (after precedence), recorded in manifests.
    pub config: Config,
    pub input: PathBuf,
    out: Option<PathBuf>,
    night: Option<Night>,
    pub input_cfg: InputConfig,
    /// Raw statuses → codes: canonical names, the preset, `[input.statuses]`.
    pub vocab: Vocabulary,
    pub features: FeatureParams,
    pub model: ValidParams,
    pub alerts: AlertConfig,
    pub advice: crate::advice::AdviceParams,
    backtest: Option<BacktestRange>,
}

impl Settings {
    /// Resolves a loaded config. `yesterday` is read from the wall clock here, once.
    pub fn resolve(config: Config) -> Result<Settings> {
        let input = config
            .pipeline
            .input
            .clone()
            .ok_or_else(|| Error::Config("input is not set (use --input DIR or pipeline.input)".into()))?;
        // An empty path (`LANEWATCH_OUT=$OUT` with `$OUT` unset) is no folder: taken as one, the
        // run folder was published in the current folder, its parent "" could not be synced
        // (exit 73 after the commit), the state was never published, and earlier runs were
        // never found (alerts started afresh each night).
        for (key, path) in [("input", Some(&input)), ("out", config.pipeline.out.as_ref())] {
            if path.is_some_and(|p| p.as_os_str().is_empty()) {
                // Named with its environment variable: that is how an empty path usually comes.
                let var = key.to_uppercase();
                return Err(Error::Config(format!(
                    "{key} is empty (use --{key} DIR or pipeline.{key}; is LANEWATCH_{var} set to an empty value?)"
                )));
            }
        }
        let night = match config.pipeline.as_of.as_deref() {
            None => None,
            Some("yesterday") => Some(Night::new(chrono::Utc::now().date_naive().pred_opt().expect("date range"))),
            Some(s) => Some(Night::new(config::parse_date(s)?)),
        };
        let features = FeatureParams::from_config(&config)?;
        let model =
            ModelParams::from_config(&config.model, &config.alerts, &config.lanes, config.pipeline.seed)?.check()?;
        let b = &config.backtest;
        let backtest = match (&b.from, &b.to) {
            (Some(from), Some(to)) => {
                let (from, to) = (Night::new(config::parse_date(from)?), Night::new(config::parse_date(to)?));
                let every = b.every.unwrap_or(7);
                if to < from {
                    return Err(Error::Config(format!("backtest: to {to} is before from {from}")));
                }
                Some(BacktestRange { from, to, every })
            }
            _ => None,
        };
        Ok(Settings {
            input,
            out: config.pipeline.out.clone(),
            night,
            input_cfg: config.input.clone(),
            vocab: Vocabulary::from_config(&config.input)?,
            features,
            model,
            alerts: config.alerts.clone(),
            advice: crate::advice::AdviceParams {
                advice: config.advice.clone(),
                lanes: config.lanes.clone(),
                prior_strength: config.features.prior_strength,
            },
            backtest,
            config,
        })
    }

    /// The night to compute; a config error when neither `--as-of` nor `pipeline.as_of` set it.
    pub fn night(&self) -> Result<Night> {
        self.night.ok_or_else(|| Error::Config("as_of is not set (use --as-of YYYY-MM-DD or pipeline.as_of)".into()))
    }

    pub fn out(&self) -> Result<&Path> {
        self.out.as_deref().ok_or_else(|| Error::Config("out is not set (use --out DIR or pipeline.out)".into()))
    }

    pub fn backtest(&self) -> Result<BacktestRange> {
        self.backtest.ok_or_else(|| {
            Error::Config("backtest needs --from and --to, or backtest.from and backtest.to in the config".into())
        })
    }

    pub fn seed(&self) -> u64 {
        self.config.pipeline.seed
    }
}
