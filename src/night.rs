//! What one night is: validate → features → model → alerts, computed without writing anything.
//! The nightly `run`, the `backtest` and the `features`/`train`/`score` commands are siblings
//! over these steps; the sequence itself is written once, in `compute`.

use std::borrow::Cow;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::advice::Advice;
use crate::alerts::{self, AlertOutput, Previous};
use crate::calendar::Night;
use crate::config::InputConfig;
use crate::error::{Error, Result};
use crate::features::Purpose;
use crate::features::reuse::Kept;
use crate::features::{self, FeatureSet};
use crate::model::{self, SavedModel, TrainedOn};
use crate::settings::Settings;
use crate::shard::Shard;
use crate::state;
use crate::state::model::{KeptAdvice, KeptTraining};
use crate::statuses::Vocabulary;
use crate::validate::{self, CleanInput, Report};

/// The package version and the fingerprint of the sources built (`src/build.rs`): what the
/// state keeps, and a sharded night's partials, are read only by the build that wrote them.
pub const TOOL_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+src.", env!("LW_SOURCE_FINGERPRINT"));

/// Stage timings and row counts, logged as they happen and kept for the manifest.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Timings {
    pub stages: Vec<StageTiming>,
    /// Debug-level logs and no spinner (a backtest replays many nights).
    #[serde(skip)]
    quiet: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageTiming {
    pub stage: String,
    pub seconds: f64,
    pub rows: u64,
    /// The peak resident memory so far (Linux only), in MB: the process's, or the largest
    /// child's it waited for (the steps of an out-of-core night) when that is higher.
    pub peak_rss_mb: Option<f64>,
}

impl Timings {
    pub fn quiet() -> Timings {
        Timings { stages: Vec::new(), quiet: true }
    }

    pub fn time<T>(&mut self, stage: &str, f: impl FnOnce() -> Result<T>, rows: impl Fn(&T) -> u64) -> Result<T> {
        let bar = (!self.quiet).then(|| crate::progress::spinner(stage));
        let start = Instant::now();
        crate::fault::point(stage);
        let out = f();
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let out = out?;
        let seconds = start.elapsed().as_secs_f64();
        let n = rows(&out);
        // This process's peak, or a step's it ran as a child process (out of core) if higher.
        let peak_rss_mb = match (crate::memory::peak_rss_mb(), crate::memory::children_peak_rss_mb()) {
            (Some(own), Some(steps)) => Some(own.max(steps)),
            (own, steps) => own.or(steps),
        };
        if self.quiet {
            tracing::debug!(stage, rows = n, seconds = format!("{seconds:.3}"), peak_rss_mb, "stage done");
        } else {
            tracing::info!(stage, rows = n, seconds = format!("{seconds:.3}"), peak_rss_mb, "stage done");
        }
        self.stages.push(StageTiming { stage: stage.to_string(), seconds, rows: n, peak_rss_mb });
        Ok(out)
    }
}

/// Validation: the report, and clean data or the first error. Findings are logged.
pub fn load(input: &Path, cfg: &InputConfig, vocab: &Vocabulary) -> Result<(Report, CleanInput)> {
    let (report, clean) = validate::validate(input, cfg, vocab)?;
    settle(report, clean)
}

/// Logs a validation's findings; clean data, or its first error.
fn settle(report: Report, clean: Option<CleanInput>) -> Result<(Report, CleanInput)> {
    crate::memory::release_free_memory();
    for e in &report.errors {
        tracing::error!("{}", e.line());
    }
    for w in &report.warnings {
        tracing::warn!("{}", w.line());
    }
    match (report.first_error(), clean) {
        (Some(e), _) => Err(e),
        (None, Some(c)) => Ok((report, c)),
        (None, None) => Err(Error::internal("validation returned neither data nor an error")),
    }
}

/// The `validate` stage, timed.
pub fn load_timed(s: &Settings, t: &mut Timings) -> Result<(Report, CleanInput)> {
    crate::ingest::check_input_folder(&s.input)?;
    t.time("validate", || load(&s.input, &s.input_cfg, &s.vocab), |r| r.0.shipments + r.0.events)
}

/// The `validate` stage of shard `shard` (`run --shard`): only what the shard owns is read and
/// checked; a shard may own no shipments.
pub fn load_shard(s: &Settings, shard: Shard, t: &mut Timings) -> Result<(Report, CleanInput)> {
    crate::ingest::check_input_folder(&s.input)?;
    t.time(
        "validate",
        || {
            let (raw, findings) = validate::read_raw_shard(&s.input, &s.input_cfg, Some(shard))?;
            let ((report, clean), _) = validate::check(&s.input, raw, findings, &s.vocab, true)?;
            settle(report, clean)
        },
        |r| r.0.shipments + r.0.events,
    )
}

/// The `merge` stage of `lanewatch merge`: the shards' partials in `dir` as one night's report
/// and clean input, exactly as validating the whole input gives them.
pub fn load_partials(
    s: &Settings,
    dir: &Path,
    shards: u32,
    t: &mut Timings,
) -> Result<(Report, CleanInput, crate::partials::Merged)> {
    let night = s.night()?;
    let (report, clean, merged) = t.time(
        "merge",
        || crate::partials::merge(dir, shards, night, &s.config, &s.input),
        |r| r.0.shipments + r.0.events,
    )?;
    let (report, clean) = settle(report, Some(clean))?;
    Ok((report, clean, merged))
}

/// The `merge` stage of `lanewatch merge --rounds`: the night's report from the shards'
/// partials' JSON, their data not read; findings logged as validation logs them.
pub fn load_partial_reports(
    s: &Settings,
    dir: &Path,
    shards: u32,
    t: &mut Timings,
) -> Result<(Report, crate::partials::Merged)> {
    let night = s.night()?;
    let (report, merged) = t.time(
        "merge",
        || crate::partials::report(dir, shards, night, &s.config, &s.input),
        |r| r.0.shipments + r.0.events,
    )?;
    for w in &report.warnings {
        tracing::warn!("{}", w.line());
    }
    Ok((report, merged))
}

/// The `validate` stage of a nightly run through the state in `OUT/state/` (only files new
/// since the state are decoded), then the `state` stage writing the next generation. The
/// generation is not current until `state::publish` (after the run folder is committed).
pub fn load_with_state(
    s: &Settings,
    out: &Path,
    full_refresh: bool,
    t: &mut Timings,
) -> Result<(Report, CleanInput, Option<state::Pending>, state::StateInfo)> {
    crate::ingest::check_input_folder(&s.input)?;
    let (report, clean, raw, checks, keep) = t.time(
        "validate",
        || {
            let loaded = state::load(&s.input, &s.input_cfg, out, full_refresh)?;
            if let Some(why) = &loaded.keep.info.full_refresh {
                tracing::info!(reason = %why, "state: full refresh");
            }
            let ((report, clean), raw, checks) =
                validate::check_with(&s.input, loaded.raw, loaded.findings, &s.vocab, false, loaded.checked)?;
            let (report, clean) = settle(report, clean)?;
            Ok((report, clean, raw, checks, loaded.keep))
        },
        |r| r.0.shipments + r.0.events,
    )?;
    let night = s.night()?.to_string();
    // A generation that cannot be written (a full disk, a `state/` made read-only) only costs
    // the next night work: it starts from the state before, as after a state that could not be
    // published. The night itself goes on; its segments written so far are collected later.
    let before = keep.info.clone();
    let written = t.time(
        "state",
        || Ok(state::write(out, keep, &raw, &clean, &checks, &night)),
        |w| w.as_ref().map_or(0, |w| w.1.files_read),
    )?;
    let (pending, info) = match written {
        Ok((pending, info)) => (Some(pending), info),
        Err(e) => {
            let why = crate::error::one_line(e.to_string());
            (None, state::StateInfo { not_written: Some(why), written: None, ..before })
        }
    };
    drop((raw, checks));
    crate::memory::release_free_memory();
    Ok((report, clean, pending, info))
}

/// The `features` stage, timed. An owned input is cut down in place (lower peak memory).
/// With `kept`, lane tables of earlier nights are taken where they still hold and the night's
/// are handed on (`FeatureSet::reused`).
pub fn features(
    s: &Settings,
    input: Cow<'_, CleanInput>,
    night: Night,
    kept: Option<&Kept>,
    purpose: features::Purpose,
    t: &mut Timings,
) -> Result<FeatureSet> {
    t.time(
        "features",
        || features::build_keeping(input, &s.features, night, kept, purpose),
        |f| (f.train.len() + f.score.len()) as u64,
    )
}

/// The `train` stage, timed.
pub fn train(s: &Settings, fs: &FeatureSet, t: &mut Timings) -> Result<SavedModel> {
    t.time("train", || model::train(fs, &s.model), |m| m.metrics.n_train_sampled)
}

/// The `advice` stage, timed.
fn advice(s: &Settings, fs: &FeatureSet, t: &mut Timings) -> Result<Advice> {
    t.time("advice", || crate::advice::build(fs, &s.advice), |a| a.service().height() as u64)
}

/// Everything a night computes, before anything is written.
pub struct NightResult {
    pub night: Night,
    pub features: FeatureSet,
    pub model: SavedModel,
    /// Calibrated risk per scoring row, as the model gave it (before `late` rows are set to 1).
    pub risk: Vec<f64>,
    pub alerts: AlertOutput,
    /// Advice before shipping: from the night's point-in-time view, or on a training schedule
    /// from its training night's, as its model is (`Trained::advice`).
    pub advice: Advice,
    /// As-of date of the run whose alerts `alerts` continued from.
    pub previous: Option<chrono::NaiveDate>,
    /// With a training schedule (`model.retrain_every_days` above 1): the model's training
    /// night and digest, for a later night to score with it.
    pub trained: Option<Trained>,
}

impl NightResult {
    /// The night the model was trained on, when it is not this night (a training schedule).
    pub fn trained_on(&self) -> Option<&str> {
        (self.model.as_of != self.night.to_string()).then_some(self.model.as_of.as_str())
    }
}

/// How a scheduled night came by its model, and its advice.
#[derive(Debug, Clone)]
pub struct Trained {
    pub on: TrainedOn,
    /// The training night's advice, which the nights of its schedule publish with its model:
    /// both are as of the training night's cutoff, and a night that takes them from the state
    /// computes neither. The advice reads every shipment resolved over the lane windows (at
    /// 10M shipments about 2 s of an incremental night) and moves as slowly as the lane tables
    /// it is read beside.
    pub advice: Advice,
    /// Taken from an earlier night (not trained by this one).
    pub reused: bool,
}

impl Trained {
    /// What a later night of the schedule takes from it (the backtest's next night).
    pub fn kept(&self) -> KeptTraining {
        KeptTraining { on: self.on.clone(), advice: KeptAdvice::Tables(self.advice.clone()) }
    }
}

/// What a caller of `compute` does with the night's features afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Writes the night's outputs: what only new feature rows need is freed once the model is
    /// trained, before the alerts and advice (a lower peak).
    Write,
    /// Also computes feature rows at other times (the backtest's evaluation): all is kept.
    Evaluate,
}

/// Where a night's model comes from.
#[derive(Debug, Clone, Copy)]
pub enum ModelFrom<'a> {
    /// Trained on the night's training night (`Night::training_night`; the night itself unless
    /// `model.retrain_every_days` is above 1). `kept`, the model and advice an earlier night
    /// computed, is used instead when it is of that training night and the input known before
    /// its cutoff has the digest it was trained from; a night that trains on an earlier training
    /// night computes that night's features, model and advice from the same input first.
    ///
    /// `digest`: the digest of the input known before the training night's cutoff, when the
    /// state knows it already (`state::digest`); otherwise it is computed.
    Schedule { kept: Option<&'a KeptTraining>, digest: Option<features::reuse::Digest> },
    /// This model (`lanewatch score`): nothing is trained.
    Saved(&'a SavedModel),
}

/// features → model → score → alerts for one night from a loaded input; `kept` (lane tables of
/// earlier nights) as for `features`. `spill`, a scratch file in the output's file system, is
/// where an owned input's shipment columns wait while an earlier training night's features are
/// computed (`prepare::lend`).
#[allow(clippy::too_many_arguments)]
pub fn compute(
    s: &Settings,
    mut input: Cow<'_, CleanInput>,
    night: Night,
    prev: &Previous,
    model_from: ModelFrom<'_>,
    then: Then,
    kept: Option<&Kept>,
    spill: Option<&std::path::Path>,
    t: &mut Timings,
) -> Result<NightResult> {
    let every = s.config.model.retrain_every_days;
    let training = night.training_night(every);
    // Lane tables and series days kept, with those of the training night when it is computed.
    let mut with_training: Option<Kept> = None;
    // The training night's advice, on a night of a schedule other than its training night:
    // computed with its model, or kept with it and read when published.
    let mut training_advice: Option<Advice> = None;
    let mut kept_advice: Option<&KeptAdvice> = None;
    let (mut fs, model, trained) = match model_from {
        ModelFrom::Saved(m) => (features(s, input, night, kept, Purpose::Score, t)?, m.clone(), None),
        // Trained tonight; the digest only when later nights may take the model.
        ModelFrom::Schedule { .. } if training == night => {
            let digest = (every > 1)
                .then(|| t.time("digest", || features::prepare::digest(&input, night), |_| 0))
                .transpose()?;
            let fs = features(s, input, night, kept, Purpose::Train, t)?;
            let model = train(s, &fs, t)?;
            // Its advice is tonight's, computed below like any night's.
            let trained = digest.map(|digest| (TrainedOn { night, digest, model: model.clone() }, false));
            (fs, model, trained)
        }
        ModelFrom::Schedule { kept: kept_model, digest: known } => {
            let digest = match known {
                Some(d) => d,
                None => t.time("digest", || features::prepare::digest(&input, training), |_| 0)?,
            };
            let (on, reused) = match kept_model.filter(|k| k.on.night == training && k.on.digest == digest) {
                Some(k) => {
                    kept_advice = Some(&k.advice);
                    (k.on.clone(), true)
                }
                None => {
                    if let Some(k) = kept_model.filter(|k| k.on.night == training).map(|k| &k.on) {
                        tracing::info!(
                            training_night = %training,
                            rows_then = k.digest.rows,
                            rows_now = digest.rows,
                            "rows known before the training night's cutoff changed since its model was kept: trained again"
                        );
                    }
                    // The training night's features from the same input, trained on and
                    // dropped; an owned input is lent to them (`prepare::lend`: its events are
                    // not copied), a borrowed one read. Given something kept, if only nothing,
                    // so that they hand on their series days and lane tables: tonight's up to
                    // where rows known before them differ (digest-checked, as what the state
                    // keeps is), so tonight computes only the days since the training night,
                    // and no lane table: tonight's are the training night's grid's.
                    let none_kept = Kept::default();
                    let k = Some(kept.unwrap_or(&none_kept));
                    let mut fit = |cut: Cow<'_, CleanInput>| -> Result<((SavedModel, Advice), FeatureSet)> {
                        let mut fs = t.time(
                            "training night features",
                            || features::build_keeping(cut, &s.features, training, k, Purpose::Train),
                            |f| f.train.len() as u64,
                        )?;
                        let model = train(s, &fs, t)?;
                        // Tonight reads what the training night's features hand on: they read
                        // tonight's input cut at the training night's cutoff, so up to it their
                        // digests are tonight's and are taken rather than computed again.
                        with_training = Some(fs.reused.hand_on(training.cutoff(), kept));
                        // Its advice too, from the same view: tonight publishes it, as the
                        // training night did. What only feature rows read goes first (not the
                        // events: a lent input takes them back).
                        fs.release_history_and_training_rows();
                        let advice = advice(s, &fs, t)?;
                        Ok(((model, advice), fs))
                    };
                    let (model, advice) = match input {
                        Cow::Owned(clean) => {
                            let (fitted, clean) = features::prepare::lend(clean, training, spill, |cut| {
                                let (fitted, fs) = fit(Cow::Owned(cut))?;
                                Ok((fitted, fs.prep))
                            })?;
                            input = Cow::Owned(clean);
                            fitted
                        }
                        Cow::Borrowed(clean) => fit(Cow::Borrowed(clean))?.0,
                    };
                    crate::memory::release_free_memory();
                    training_advice = Some(advice);
                    (TrainedOn { night: training, digest, model }, false)
                }
            };
            // Scored with the training night's model: tonight's features are for scoring alone.
            let fs = features(s, input, night, with_training.as_ref().or(kept), Purpose::Score, t)?;
            (fs, on.model.clone(), Some((on, reused)))
        }
    };
    if then == Then::Write {
        fs.release_row_sources();
    }
    let risk = t.time("score", || Ok(model.predict(&fs.score)), |r| r.len() as u64)?;
    let alerts = t.time("alerts", || alerts::build(&fs, &risk, &s.alerts, prev), |a| a.alerts.len() as u64)?;
    let advice = match (training_advice, kept_advice) {
        (Some(a), _) => a,
        (None, Some(k)) => k.read(training)?,
        (None, None) => advice(s, &fs, t)?,
    };
    let trained = trained.map(|(on, reused)| Trained { on, advice: advice.clone(), reused });
    Ok(NightResult { night, features: fs, model, risk, alerts, advice, previous: prev.as_of, trained })
}
