//! Writing outputs, in one place: the run folder (`run_dir`: lock, staging, previous run), its
//! data files and report (`write_run`), the seller CSVs (`sellers`), the manifest (`manifest`),
//! and the backtest's files (`write_backtest`).

pub mod csv;
pub mod manifest;
pub mod run_dir;
pub mod sellers;
pub mod trends;

use std::path::Path;

use polars::prelude::*;

use crate::alerts::AlertKind;
use crate::error::{Error, Result};
use crate::evaluate::{BacktestSummary, NightRow};
use crate::io;
use crate::night::NightResult;
use crate::report;
use crate::schema::outputs;
use crate::settings::Settings;
use crate::validate::Report;
pub use run_dir::{LOCK_FILE, OutputLock, Staging, previous_alerts, previous_run, run_dir_name};

/// Writes every data file of a night into the staging folder; returns (file, rows) pairs, always
/// in the same order.
pub fn write_run(
    s: &Settings,
    res: &NightResult,
    input: &Report,
    earlier: &[report::TrendNight],
    staging: &Staging,
) -> Result<Vec<(String, u64)>> {
    let a = &res.alerts;
    let alerts = a.frame()?;
    let lanes = res.features.lanes_frame()?;
    // The seller files are created one at a time (see `write_sellers`), which left a core idle:
    // the data files and the report are written beside them.
    let (sellers, data) = rayon::join(
        || sellers::write_sellers(&staging.path("sellers"), &alerts, &a.suppressed),
        || -> Result<Vec<(String, u64)>> {
            let mut written = Vec::new();
            let mut put = |name: &str, df: &DataFrame| -> Result<()> {
                let mut df = df.clone();
                let rows = io::write_parquet(&mut df, &staging.path(name))?;
                written.push((name.to_string(), rows));
                Ok(())
            };
            put("scores.parquet", &a.scores)?;
            put("alerts.parquet", &alerts)?;
            put("recovered.parquet", &a.recovered)?;
            put("lane_alerts.parquet", &a.lane_alerts)?;
            put("lanes.parquet", &lanes)?;
            put("service_advice.parquet", &res.advice.service)?;
            put("promise_advice.parquet", &res.advice.promise)?;
            put("seller_advice.parquet", &res.advice.sellers)?;

            let mut metrics = serde_json::to_vec_pretty(&res.model.metrics).map_err(Error::internal)?;
            metrics.push(b'\n');
            io::write_file(&staging.path("metrics.json"), &metrics)?;
            io::write_file(&staging.path("model.json"), &res.model.to_json()?)?;
            written.push(("metrics.json".into(), 1));
            written.push(("model.json".into(), 1));

            let mut trend = earlier.to_vec();
            trend.push(trends::summarise(res.night.as_of(), &alerts, &lanes, &res.features)?);
            let html = report::run_report(&s.config, res, input, &lanes, &trend)?;
            io::write_file(&staging.path("report.html"), html.as_bytes())?;
            Ok(written)
        },
    );
    // Listed in the order they were always written.
    let mut written = data?;
    written.push(("sellers/index.csv".into(), sellers?));
    written.push(("report.html".into(), 1));
    Ok(written)
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
    io::write_parquet_atomic(&mut df, &out.join("backtest.parquet"))?;
    let mut json = serde_json::to_vec_pretty(summary).map_err(Error::internal)?;
    json.push(b'\n');
    io::write_atomic(&out.join("backtest.json"), &json)?;
    io::write_atomic(&out.join("backtest.html"), report::backtest_report(summary, &df)?.as_bytes())?;
    Ok(())
}
