//! The one place where stages are wired together. Each command is a short sequence of stage
//! calls; each stage is a function of frames (or of the previous stage's values) to frames.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDate;
use polars::prelude::*;
use rayon::prelude::*;
use serde::Serialize;

use crate::alerts::{self, Previous};
use crate::calendar;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::features::{self, FeatureSet};
use crate::ingest::FileInfo;
use crate::io;
use crate::model::{self, ModelParams, SavedModel};
use crate::output::{self, OutputLock, Staging};
use crate::report;
use crate::validate::{self, CleanInput, Report};

pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Stage timings and row counts, logged as they happen and kept for the manifest.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Timings {
    pub stages: Vec<StageTiming>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageTiming {
    pub stage: String,
    pub seconds: f64,
    pub rows: u64,
    /// The process's peak resident memory so far (Linux only), in MB.
    pub peak_rss_mb: Option<f64>,
}

impl Timings {
    pub fn time<T>(&mut self, stage: &str, f: impl FnOnce() -> Result<T>, rows: impl Fn(&T) -> u64) -> Result<T> {
        let bar = crate::progress::spinner(stage);
        let start = Instant::now();
        fault_injection(stage);
        let out = f();
        bar.finish_and_clear();
        let out = out?;
        let seconds = start.elapsed().as_secs_f64();
        let n = rows(&out);
        let peak_rss_mb = crate::memory::peak_rss_mb();
        tracing::info!(stage, rows = n, seconds = format!("{seconds:.3}"), peak_rss_mb, "stage done");
        self.stages.push(StageTiming { stage: stage.to_string(), seconds, rows: n, peak_rss_mb });
        Ok(out)
    }
}

/// `LANEWATCH_FAULT=panic:<stage>` panics as that stage starts. The operations tests use it to
/// prove that a panic becomes exit 70 and leaves no partial output.
fn fault_injection(stage: &str) {
    if let Ok(f) = std::env::var("LANEWATCH_FAULT") {
        if f.strip_prefix("panic:") == Some(stage) {
            panic!("injected fault in stage {stage}");
        }
    }
}

/// Validation as a stage: the report, and clean data or the first error.
pub fn load(input: &Path, cfg: &Config) -> Result<(Report, CleanInput)> {
    let (report, clean) = validate::validate(input, &cfg.input)?;
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

pub fn model_params(cfg: &Config) -> Result<model::ValidParams> {
    ModelParams::from_config(&cfg.model, &cfg.alerts, cfg.pipeline.seed).check()
}

/// Everything a nightly run produces, before it is written.
pub struct RunResult {
    pub as_of: NaiveDate,
    pub features: FeatureSet,
    pub model: SavedModel,
    pub alerts: alerts::AlertOutput,
    pub report: Report,
    pub previous: Option<NaiveDate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub as_of: String,
    pub out: PathBuf,
    pub scored: u64,
    pub alerts: u64,
    pub by_kind: BTreeMap<String, u64>,
    pub by_kind_severity: BTreeMap<String, u64>,
    pub recovered: u64,
    pub disrupted_lanes: Vec<String>,
    pub top_lanes: Vec<(String, u64)>,
    pub model: String,
    pub fallback: Option<String>,
    pub warnings: u64,
}

#[derive(Serialize)]
struct Manifest<'a> {
    tool: &'static str,
    tool_version: &'static str,
    pipeline: &'a str,
    as_of: String,
    cutoff: String,
    seed: u64,
    config: &'a Config,
    previous_run: Option<String>,
    inputs: &'a [FileInfo],
    outputs: Vec<OutputInfo>,
    model: ManifestModel<'a>,
    warnings: Vec<String>,
    timings: &'a Timings,
    started_at: String,
    finished_at: String,
}

#[derive(Serialize)]
struct ManifestModel<'a> {
    kind: &'a str,
    fallback: &'a Option<String>,
    feature_schema_version: u32,
}

#[derive(Serialize)]
struct OutputInfo {
    file: String,
    rows: u64,
}

/// Reads the alerts of the newest earlier run in `out`, if any.
pub fn previous_alerts(out: &Path, as_of: NaiveDate) -> (Previous, Option<String>) {
    let Some((date, dir)) = output::previous_run(out, as_of) else {
        return (Previous::default(), None);
    };
    let path = dir.join("alerts.parquet");
    let read = || -> Result<Previous> {
        let file =
            std::fs::File::open(&path).map_err(|e| Error::bad_file(path.display().to_string(), e.to_string()))?;
        let df = ParquetReader::new(file)
            .with_columns(Some(vec![
                "shipment_id".into(),
                "seller_id".into(),
                "alert".into(),
                "severity".into(),
                "first_alerted_on".into(),
            ]))
            .finish()?;
        Previous::from_alerts(&df, date)
    };
    match read() {
        Ok(p) => (p, None),
        Err(e) => {
            (Previous::default(), Some(format!("previous run {} unreadable, alerts start fresh: {e}", dir.display())))
        }
    }
}

/// Computes a night's results without writing anything.
pub fn compute(cfg: &Config, as_of: NaiveDate, prev: &Previous, timings: &mut Timings) -> Result<RunResult> {
    let input = cfg.input_dir()?;
    let params = model_params(cfg)?;
    let (report, clean) = timings.time("validate", || load(input, cfg), |r| r.0.shipments + r.0.events)?;
    let fs = timings.time(
        "features",
        || features::build_owned(clean, cfg, as_of),
        |f| (f.train.len() + f.score.len()) as u64,
    )?;
    let model = timings.time("train", || model::train(&fs, &params), |m| m.metrics.n_train_sampled)?;
    let risk = timings.time("score", || Ok(model.predict(&fs.score)), |r| r.len() as u64)?;
    let alert_out =
        timings.time("alerts", || alerts::build(&fs, &risk, &cfg.alerts, prev), |a| a.alerts.height() as u64)?;
    Ok(RunResult { as_of, features: fs, model, alerts: alert_out, report, previous: prev.as_of })
}

/// `lanewatch run`: the nightly job, written atomically into `OUT/as_of=DATE/`.
pub fn run(cfg: &Config) -> Result<RunSummary> {
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let as_of = cfg.as_of()?;
    let input = cfg.input_dir()?;
    let out = cfg.out_dir()?;
    if !input.is_dir() {
        return Err(Error::MissingInput { path: input.to_path_buf() });
    }
    let lock = OutputLock::acquire(out, &started)?;
    let staging = Staging::new(out, as_of, &lock)?;
    let mut timings = Timings::default();
    let (prev, prev_warning) = previous_alerts(out, as_of);
    let res = compute(cfg, as_of, &prev, &mut timings)?;

    let written = timings.time("write", || write_run(cfg, &res, &staging), |w| w.len() as u64)?;
    let mut warnings: Vec<String> = res.report.warnings.iter().map(|w| w.line()).collect();
    warnings.extend(prev_warning);
    if let Some(f) = &res.model.metrics.fallback {
        warnings.push(format!("model fell back to the lane-quantile rule: {f}"));
    }
    let finished = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let manifest = Manifest {
        tool: "lanewatch",
        tool_version: TOOL_VERSION,
        pipeline: &cfg.pipeline.name,
        as_of: as_of.to_string(),
        cutoff: calendar::date_of_micros(res.features.cutoff)
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
            .to_rfc3339(),
        seed: cfg.pipeline.seed,
        config: cfg,
        previous_run: res.previous.map(|d| d.to_string()),
        inputs: &res.report.files,
        outputs: written.iter().map(|(f, r)| OutputInfo { file: f.clone(), rows: *r }).collect(),
        model: ManifestModel {
            kind: &res.model.kind,
            fallback: &res.model.metrics.fallback,
            feature_schema_version: res.model.feature_schema_version,
        },
        warnings: warnings.clone(),
        timings: &timings,
        started_at: started,
        finished_at: finished,
    };
    let mut json = serde_json::to_vec_pretty(&manifest).map_err(Error::internal)?;
    json.push(b'\n');
    io::write_file(&staging.path("manifest.json"), &json)?;
    let final_dir = staging.commit()?;
    drop(lock);
    Ok(summary(&res, final_dir, warnings.len() as u64)?)
}

fn summary(res: &RunResult, out: PathBuf, warnings: u64) -> Result<RunSummary> {
    let a = &res.alerts.alerts;
    let kinds = a.column("alert")?.str()?;
    let sev = a.column("severity")?.str()?;
    let mut by_kind = BTreeMap::new();
    let mut by_kind_severity = BTreeMap::new();
    for (k, s) in kinds.iter().zip(sev.iter()) {
        let (k, s) = (k.unwrap_or(""), s.unwrap_or(""));
        *by_kind.entry(k.to_string()).or_insert(0) += 1;
        *by_kind_severity.entry(format!("{k}/{s}")).or_insert(0) += 1;
    }
    let lanes = a
        .clone()
        .lazy()
        .group_by([col("origin"), col("destination"), col("service")])
        .agg([len().alias("n")])
        .sort_by_exprs(
            [col("n"), col("origin"), col("destination"), col("service")],
            SortMultipleOptions::default().with_order_descending_multi([true, false, false, false]),
        )
        .limit(5)
        .collect()?;
    let mut top_lanes = Vec::new();
    for r in 0..lanes.height() {
        let g = |c: &str| {
            lanes
                .column(c)
                .ok()
                .and_then(|c| c.str().ok().and_then(|s| s.get(r).map(str::to_string)))
                .unwrap_or_default()
        };
        let n = lanes.column("n")?.as_materialized_series().cast(&DataType::UInt64)?.u64()?.get(r).unwrap_or(0);
        top_lanes.push((format!("{}→{} {}", g("origin"), g("destination"), g("service")), n));
    }
    let fs = &res.features;
    let day = calendar::day_index(fs.cutoff);
    let disrupted_lanes = (0..fs.prep.lanes.len())
        .filter_map(|l| {
            fs.worst_disrupted_stage(l, day).map(|s| {
                format!(
                    "{} ({} ×{:.1})",
                    fs.prep.lanes[l].label(),
                    crate::schema::STAGES[s].label,
                    fs.series.at(l, s, day).ratio
                )
            })
        })
        .collect();
    Ok(RunSummary {
        as_of: res.as_of.to_string(),
        out,
        scored: res.alerts.scores.height() as u64,
        alerts: a.height() as u64,
        by_kind,
        by_kind_severity,
        recovered: res.alerts.recovered.height() as u64,
        disrupted_lanes,
        top_lanes,
        model: res.model.kind.clone(),
        fallback: res.model.metrics.fallback.clone(),
        warnings,
    })
}

/// Writes every data file of a run into the staging folder; returns (file, rows) pairs.
fn write_run(cfg: &Config, res: &RunResult, staging: &Staging) -> Result<Vec<(String, u64)>> {
    let mut written = Vec::new();
    let mut put = |name: &str, df: &DataFrame| -> Result<()> {
        let mut df = df.clone();
        let rows = io::write_parquet(&mut df, &staging.path(name))?;
        written.push((name.to_string(), rows));
        Ok(())
    };
    let a = &res.alerts;
    put("scores.parquet", &a.scores)?;
    put("alerts.parquet", &a.alerts)?;
    put("recovered.parquet", &a.recovered)?;
    put("lane_alerts.parquet", &a.lane_alerts)?;
    let lanes = res.features.lanes_frame()?;
    put("lanes.parquet", &lanes)?;
    let t0 = std::time::Instant::now();

    let mut metrics = serde_json::to_vec_pretty(&res.model.metrics).map_err(Error::internal)?;
    metrics.push(b'\n');
    io::write_file(&staging.path("metrics.json"), &metrics)?;
    io::write_file(&staging.path("model.json"), &res.model.to_json()?)?;
    written.push(("metrics.json".into(), 1));
    written.push(("model.json".into(), 1));

    let sellers = write_sellers(&staging.path("sellers"), &a.alerts, &a.suppressed)?;
    written.push(("sellers/index.csv".into(), sellers));
    tracing::debug!(seconds = t0.elapsed().as_secs_f64(), "write: sellers");
    let html = report::run_report(cfg, res, &lanes)?;
    tracing::debug!(seconds = t0.elapsed().as_secs_f64(), "write: report");
    io::write_file(&staging.path("report.html"), html.as_bytes())?;
    written.push(("report.html".into(), 1));
    Ok(written)
}

/// `sellers/index.csv` and one CSV per seller with alerts. Returns the number of sellers.
pub fn write_sellers(
    dir: &Path,
    alerts: &DataFrame,
    suppressed: &std::collections::HashMap<String, u64>,
) -> Result<u64> {
    io::create_dir_all(dir)?;
    let t0 = std::time::Instant::now();
    let sellers = alerts.column("seller_id")?.str()?;
    let mut ids: Vec<&str> = sellers.iter().map(|s| s.unwrap_or("")).collect();
    ids.extend(suppressed.keys().map(String::as_str));
    let files = output::seller_files(ids.iter().copied());
    tracing::debug!(seconds = t0.elapsed().as_secs_f64(), "sellers: names");
    let cols = [
        "shipment_id",
        "seller_id",
        "alert",
        "severity",
        "risk",
        "status",
        "origin",
        "destination",
        "service",
        "promised_at",
        "expected_delivery_at",
        "last_event_at",
        "first_alerted_on",
        "reasons",
        "action",
    ];
    let header = output::csv_line(&cols.iter().map(|c| c.to_string()).collect::<Vec<_>>());
    let mut rows_by_seller: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (r, s) in sellers.iter().enumerate() {
        rows_by_seller.entry(s.unwrap_or("")).or_default().push(r);
    }
    let sev_rank = |s: Option<&str>| -> u8 {
        match s {
            Some("high") => 0,
            Some("medium") => 1,
            _ => 2,
        }
    };
    let text: Vec<Vec<String>> = cols
        .iter()
        .map(|c| -> Result<Vec<String>> {
            let s = alerts.column(c)?.as_materialized_series();
            let s = match s.dtype() {
                DataType::Datetime(_, _) => {
                    s.cast(&DataType::Int64)?.i64()?.iter().map(|v| v.map(ts_text).unwrap_or_default()).collect()
                }
                DataType::Date => s
                    .to_physical_repr()
                    .cast(&DataType::Int32)?
                    .i32()?
                    .iter()
                    .map(|v| v.map(|d| calendar::date_of_day(d as i64).to_string()).unwrap_or_default())
                    .collect(),
                DataType::Float64 => {
                    s.f64()?.iter().map(|v| v.map(|x| format!("{x:.4}")).unwrap_or_default()).collect()
                }
                _ => s.cast(&DataType::String)?.str()?.iter().map(|v| output::csv_cell(v.unwrap_or(""))).collect(),
            };
            Ok(s)
        })
        .collect::<Result<_>>()?;
    let severity = alerts.column("severity")?.str()?;
    let risk = alerts.column("risk")?.f64()?;
    let mut index = output::csv_line(&["seller_id".into(), "file".into(), "alerts".into(), "suppressed".into()]);
    tracing::debug!(seconds = t0.elapsed().as_secs_f64(), "sellers: cells");
    // Bodies are built in parallel but files created one at a time: parallel creates in one
    // directory contend on its lock and were ten times slower than a single thread.
    let sev: Vec<u8> = severity.iter().map(sev_rank).collect();
    let risk: Vec<f64> = risk.iter().map(|v| v.unwrap_or(0.0)).collect();
    let entries: Vec<(&String, &String)> = files.iter().collect();
    let bodies: Vec<(usize, String)> = entries
        .par_iter()
        .map(|(id, _)| {
            let mut rows = rows_by_seller.get(id.as_str()).cloned().unwrap_or_default();
            rows.sort_by(|&a, &b| sev[a].cmp(&sev[b]).then(risk[b].total_cmp(&risk[a])).then(a.cmp(&b)));
            let mut body = header.clone();
            for r in &rows {
                body.push_str(&output::csv_line(&text.iter().map(|c| c[*r].clone()).collect::<Vec<_>>()));
            }
            (rows.len(), body)
        })
        .collect();
    for ((id, file), (n, body)) in entries.iter().zip(&bodies) {
        let path = dir.join(file);
        // seller_files only yields plain names, but a name must never leave sellers/.
        if path.parent() != Some(dir) {
            return Err(Error::internal(format!("seller file name escapes sellers/: {file:?}")));
        }
        io::write_file(&path, body.as_bytes())?;
        index.push_str(&output::csv_line(&[
            output::csv_cell(id),
            (*file).clone(),
            n.to_string(),
            suppressed.get(*id).copied().unwrap_or(0).to_string(),
        ]));
    }
    io::write_file(&dir.join("index.csv"), index.as_bytes())?;
    Ok(files.len() as u64)
}

fn ts_text(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()
}

/// `lanewatch features`: lanes.parquet, features.parquet (scoring rows) and training.parquet.
pub fn write_features(cfg: &Config, as_of: NaiveDate, out: &Path) -> Result<FeatureSet> {
    let mut t = Timings::default();
    let input = cfg.input_dir()?;
    let (_, clean) = t.time("validate", || load(input, cfg), |r| r.0.shipments + r.0.events)?;
    let mut fs =
        t.time("features", || features::build_owned(clean, cfg, as_of), |f| (f.train.len() + f.score.len()) as u64)?;
    let n_train = fs.train.len() as u64;
    t.time("training_features", || Ok(fs.fill_training()), |_| n_train)?;
    io::create_dir_all(out)?;
    for (name, mut df) in [
        ("lanes.parquet", fs.lanes_frame()?),
        ("features.parquet", fs.rows_frame(&fs.score, false)?),
        ("training.parquet", fs.rows_frame(&fs.train, true)?),
    ] {
        io::write_parquet_atomic(&mut df, &out.join(name))?;
    }
    Ok(fs)
}

/// `lanewatch train`: fits and saves the model (and its metrics beside it).
pub fn train(cfg: &Config, as_of: NaiveDate, model_out: &Path) -> Result<SavedModel> {
    let mut t = Timings::default();
    let input = cfg.input_dir()?;
    let params = model_params(cfg)?;
    let (_, clean) = t.time("validate", || load(input, cfg), |r| r.0.shipments + r.0.events)?;
    let fs =
        t.time("features", || features::build_owned(clean, cfg, as_of), |f| (f.train.len() + f.score.len()) as u64)?;
    let model = t.time("train", || model::train(&fs, &params), |m| m.metrics.n_train_sampled)?;
    if let Some(parent) = model_out.parent().filter(|p| !p.as_os_str().is_empty()) {
        io::create_dir_all(parent)?;
    }
    io::write_atomic(model_out, &model.to_json()?)?;
    Ok(model)
}

/// `lanewatch score`: scores in-flight shipments with a saved model into `out`.
pub fn score(cfg: &Config, as_of: NaiveDate, model_path: &Path, out: &Path) -> Result<(SavedModel, u64)> {
    let model = SavedModel::load(model_path)?;
    let mut t = Timings::default();
    let input = cfg.input_dir()?;
    let (_, clean) = t.time("validate", || load(input, cfg), |r| r.0.shipments + r.0.events)?;
    let fs = t.time("features", || features::build_owned(clean, cfg, as_of), |f| f.score.len() as u64)?;
    let risk = model.predict(&fs.score);
    let a = alerts::build(&fs, &risk, &cfg.alerts, &Previous::default())?;
    io::create_dir_all(out)?;
    for (name, df) in [("scores.parquet", &a.scores), ("alerts.parquet", &a.alerts)] {
        io::write_parquet_atomic(&mut df.clone(), &out.join(name))?;
    }
    Ok((model, a.scores.height() as u64))
}
