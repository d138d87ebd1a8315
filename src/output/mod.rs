//! Writing outputs, in one place: the run folder (`run_dir`: lock, staging, previous run), its
//! data files and report (`write_run`), the seller CSVs (`sellers`), the manifest (`manifest`),
//! and the backtest's files (`write_backtest`).

pub mod csv;
pub mod manifest;
pub mod run_dir;
pub mod sellers;
pub mod trends;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::NaiveDate;
use polars::prelude::*;

use crate::advice::Advice;
use crate::alerts::AlertKind;
use crate::calendar::Night;
use crate::error::{Error, Result};
use crate::evaluate::{BacktestSummary, NightRow};
use crate::features::Disrupted;
use crate::io;
use crate::model::SavedModel;
use crate::night::NightResult;
use crate::report;
use crate::schema::outputs;
use crate::settings::Settings;
use crate::validate::Report;
pub use run_dir::{BACKTEST_LOCK_FILE, CAPPED_FILE, LOCK_FILE, OutputLock, Staging, previous_alerts, previous_run, run_dir_name};

/// What a night's run folder is written from: a single run's `NightResult` (`RunOutputs::of`)
/// or the merged rounds of a sharded night (`rounds::outputs`). Frames are shared, not copied.
pub struct RunOutputs {
    pub night: Night,
    pub model: SavedModel,
    /// The night the model was trained on, when not this one (a training schedule), and
    /// whether it was the model kept in the state.
    pub trained_on: Option<String>,
    pub model_kept: bool,
    /// The run whose alerts tonight's continued from.
    pub previous: Option<NaiveDate>,
    pub scores: DataFrame,
    /// `alerts.parquet`.
    pub alerts: DataFrame,
    pub recovered: DataFrame,
    pub lane_alerts: DataFrame,
    pub lanes: DataFrame,
    pub advice: Advice,
    /// Alerts dropped by the per-seller cap, per seller_id.
    pub suppressed: HashMap<String, u64>,
    /// `capped_alerts.parquet`: those alerts, for the next night's memory.
    pub capped: DataFrame,
    pub disrupted: Vec<Disrupted>,
    /// Per lane, the median promise of its parcels in flight (`report::promise_days`).
    pub promise_days: BTreeMap<(String, String, String), f64>,
}

impl RunOutputs {
    pub fn of(res: &NightResult) -> Result<RunOutputs> {
        let a = &res.alerts;
        Ok(RunOutputs {
            night: res.night,
            model: res.model.clone(),
            trained_on: res.trained_on().map(str::to_string),
            model_kept: res.trained.as_ref().is_some_and(|t| t.reused),
            previous: res.previous,
            scores: a.scores.clone(),
            alerts: a.frame()?,
            recovered: a.recovered.clone(),
            lane_alerts: a.lane_alerts.clone(),
            lanes: res.features.lanes_frame()?,
            advice: res.advice.clone(),
            suppressed: a.suppressed.clone(),
            capped: a.capped.clone(),
            disrupted: res.features.disrupted(),
            promise_days: report::promise_days(&res.features),
        })
    }
}

/// Writes every data file of a night into the staging folder; returns (file, rows) pairs, always
/// in the same order. `trend`: the report's nights, this one last.
pub fn write_run(
    s: &Settings,
    run: &RunOutputs,
    input: &Report,
    trend: &[report::TrendNight],
    staging: &Staging,
) -> Result<Vec<(String, u64)>> {
    // The seller files are created one at a time (see `write_sellers`), which left a core idle:
    // the data files and the report are written beside them.
    let t0 = std::time::Instant::now();
    let (sellers, data) = rayon::join(
        || {
            let n = sellers::write_sellers(&staging.path("sellers"), &run.alerts, &run.suppressed);
            crate::memory::log_step("write", "seller files written", t0);
            n
        },
        || -> Result<Vec<(String, u64)>> {
            let mut written = Vec::new();
            let mut put = |name: &str, df: &DataFrame| -> Result<()> {
                let mut df = df.clone();
                let rows = io::write_parquet(&mut df, &staging.path(name))?;
                written.push((name.to_string(), rows));
                Ok(())
            };
            put("scores.parquet", &run.scores)?;
            put("alerts.parquet", &run.alerts)?;
            put("recovered.parquet", &run.recovered)?;
            put("lane_alerts.parquet", &run.lane_alerts)?;
            put(CAPPED_FILE, &run.capped)?;
            put("lanes.parquet", &run.lanes)?;
            // The advice's files are encoded once (kept advice comes encoded: `Advice::files`).
            let a = &run.advice;
            for ((name, bytes), df) in
                crate::advice::FILES.iter().zip(a.files()?).zip([a.service(), a.promise(), a.sellers()])
            {
                io::write_file(&staging.path(name), bytes)?;
                written.push((name.to_string(), df.height() as u64));
            }

            let mut metrics = serde_json::to_vec_pretty(&run.model.metrics).map_err(Error::internal)?;
            metrics.push(b'\n');
            io::write_file(&staging.path("metrics.json"), &metrics)?;
            io::write_file(&staging.path("model.json"), &run.model.to_json()?)?;
            written.push(("metrics.json".into(), 1));
            written.push(("model.json".into(), 1));

            let html = report::run_report(&s.config, run, input, trend)?;
            io::write_file(&staging.path("report.html"), html.as_bytes())?;
            crate::memory::log_step("write", "data files and report written", t0);
            Ok(written)
        },
    );
    // Listed in the order they were always written.
    let mut written = data?;
    written.push(("sellers/index.csv".into(), sellers?));
    written.push(("report.html".into(), 1));
    Ok(written)
}

/// The report's nights: up to `report.trend_nights − 1` complete runs before this one in `out`,
/// then this one, at-risk alerts scored against the outcomes `known` tonight (`trends`); with
/// a warning for each earlier run that could not be read.
pub fn trend(
    s: &Settings,
    out: &Path,
    run: &RunOutputs,
    known: &dyn Fn(&str) -> Option<bool>,
) -> Result<(Vec<report::TrendNight>, Vec<String>)> {
    let as_of = run.night.as_of();
    let (mut nights, warnings) = trends::earlier(out, as_of, s.config.report.trend_nights, known);
    nights.push(trends::summarise(as_of, &run.alerts, &run.lanes, known)?);
    Ok((nights, warnings))
}

/// `backtest.parquet`, `backtest.json` and `backtest.html` in `out`, each replaced atomically.
pub fn write_backtest(summary: &BacktestSummary, nights: &[NightRow], out: &Path) -> Result<()> {
    io::create_dir_all(out)?;
    let n = nights.len();
    let kind = |k: AlertKind| nights.iter().map(|r| r.alerts.get(&k).copied().unwrap_or(0) as i64).collect::<Vec<_>>();
    let mut cols = Vec::with_capacity(outputs::BACKTEST.len());
    for &name in outputs::BACKTEST {
        cols.push(match name {
            "as_of" => io::date_column(name, nights.iter().map(|r| Some(r.night.as_of_day())).collect()),
            "scored" => Column::new(name.into(), nights.iter().map(|r| r.scored as i64).collect::<Vec<_>>()),
            "alerts_late" => Column::new(name.into(), kind(AlertKind::Late)),
            "alerts_stalled" => Column::new(name.into(), kind(AlertKind::Stalled)),
            "alerts_at_risk" => Column::new(name.into(), kind(AlertKind::AtRisk)),
            "disrupted_lanes" => {
                Column::new(name.into(), nights.iter().map(|r| r.disrupted_lanes as i64).collect::<Vec<_>>())
            }
            "model" => Column::new(name.into(), nights.iter().map(|r| r.model.as_str()).collect::<Vec<_>>()),
            "valid_pr_auc" => Column::new(name.into(), nights.iter().map(|r| r.valid_pr_auc).collect::<Vec<_>>()),
            other => return Err(Error::internal(format!("backtest.parquet: no builder for {other}"))),
        });
    }
    let mut df = DataFrame::new(n, cols)?;
    let mut json = serde_json::to_vec_pretty(summary).map_err(Error::internal)?;
    json.push(b'\n');
    let html = report::backtest_report(summary, &df)?;
    // The three replaced together, never two of one backtest beside one of another.
    let mut files = io::FileSet::new();
    files.parquet(&mut df, &out.join("backtest.parquet"))?;
    files.bytes(&out.join("backtest.json"), &json)?;
    files.bytes(&out.join("backtest.html"), html.as_bytes())?;
    files.commit()
}
