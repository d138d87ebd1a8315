//! `lanewatch run`: the nightly job, written atomically into `OUT/as_of=DATE/`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Result;
use crate::features::reuse::Kept;
use crate::io;
use crate::night::{self, Timings};
use crate::output::{self, OutputLock, RunOutputs, Staging, manifest::Manifest};
use crate::schema::STAGES;
use crate::settings::Settings;
use crate::shard::Shard;

/// What the binary prints after a run.
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
    /// On a training schedule, the model's training night when it is not this night, and
    /// whether it was the model kept in the state.
    pub trained_on: Option<String>,
    pub model_kept: bool,
    pub fallback: Option<String>,
    pub warnings: u64,
}

/// Where a night's clean input comes from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// The input folder, through the state unless `full_refresh` (or `state.incremental` off).
    Input { full_refresh: bool },
    /// The partials `run --shard` wrote for each of `shards` shards (`lanewatch merge`).
    Partials { dir: &'a Path, shards: u32 },
}

/// The nightly job. With `state.incremental` (the default) the input is read through the state
/// in `OUT/state/`; `full_refresh` decodes every file and rebuilds it.
pub fn run(s: &Settings, full_refresh: bool) -> Result<RunSummary> {
    night_run(s, Source::Input { full_refresh })
}

/// What `run --shard` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ShardSummary {
    pub shard: String,
    pub as_of: String,
    pub shipments: u64,
    pub events: u64,
    pub warnings: u64,
    pub partial: PathBuf,
}

/// `run --shard i/N`: validates the part of the input shard i owns and writes its partial into
/// `dir` (see `partials`); `lanewatch merge` finishes the night from the N partials.
pub fn run_shard(s: &Settings, shard: Shard, dir: &Path) -> Result<ShardSummary> {
    let night = s.night()?;
    let mut t = Timings::default();
    let (report, clean) = night::load_shard(s, shard, &mut t)?;
    let partial = t.time(
        "partial",
        || crate::partials::write(dir, shard, night, &s.config, &report, &clean),
        |_| clean.shipments.height() as u64,
    )?;
    Ok(ShardSummary {
        shard: shard.to_string(),
        as_of: night.to_string(),
        shipments: report.shipments,
        events: report.events,
        warnings: report.warnings.len() as u64,
        partial,
    })
}

/// `run --shard i/N --round NAME`: shard i's share of one round of the night's features and
/// model (see `rounds`), timed.
pub fn run_shard_round(s: &Settings, shard: Shard, dir: &Path, round: crate::rounds::Round) -> Result<PathBuf> {
    Timings::default().time(&format!("round {round}"), || crate::rounds::shard_round(s, dir, shard, round), |_| 0)
}

/// A night from its source to its committed run folder (and, through the state, the state's
/// next generation).
pub(crate) fn night_run(s: &Settings, source: Source<'_>) -> Result<RunSummary> {
    let started = output::manifest::now();
    let night = s.night()?;
    let out = s.out()?;
    let full_refresh = matches!(source, Source::Input { full_refresh: true });
    if let Source::Input { .. } = source {
        crate::ingest::check_input_folder(&s.input)?;
        match night_need(s)? {
            Some((ships, events, need)) if need > s.input_cfg.max_memory_gb => {
                return out_of_core_run(s, (ships, events, need));
            }
            Some((_, _, need)) if crate::memory::keeps_freed(need, s.input_cfg.max_memory_gb) => {
                let kept = crate::memory::keep_freed_memory();
                tracing::debug!(need_gb = need, kept, "memory: freed memory kept for later steps");
            }
            _ => {}
        }
    }
    let lock = OutputLock::acquire(out, &started)?;
    let staging = Staging::new(out, night.as_of(), &lock)?;
    let mut t = Timings::default();
    // Steps outside the timed stages (loading what earlier nights kept, committing), logged
    // at debug level: the manifest is written before the last of them.
    let t0 = std::time::Instant::now();
    let log = |step: &str| crate::memory::log_step("night", step, t0);
    let (prev, prev_warning) = output::previous_alerts(out, night.as_of());
    log("previous alerts read");
    let (report, clean, mut state, merged) = match source {
        Source::Input { .. } if s.config.state.incremental => {
            let (report, clean, pending, info) = night::load_with_state(s, out, full_refresh, &mut t)?;
            (report, clean, Some((pending, info)), None)
        }
        Source::Input { .. } => {
            let (report, clean) = night::load_timed(s, &mut t)?;
            (report, clean, None, None)
        }
        Source::Partials { dir, shards } => {
            let (report, clean, merged) = night::load_partials(s, dir, shards, &mut t)?;
            (report, clean, None, Some(merged))
        }
    };
    // Lane tables kept by earlier nights (a full refresh reuses none, and keeps its own).
    let mut kept_warning = None;
    let mut stored = crate::state::tables::Stored::default();
    let kept = match &state {
        None => None,
        Some(_) if full_refresh => Some(Kept::default()),
        Some((_, info)) => match crate::state::tables::load(out, &s.config.lanes, info) {
            Ok(Some((k, files))) => {
                stored = files;
                Some(k)
            }
            Ok(None) => Some(Kept::default()),
            Err(why) => {
                kept_warning = Some(why);
                Some(Kept::default())
            }
        },
    };
    // Likewise the model and advice of the training night, on a training schedule (a training
    // night computes its own).
    let scheduled = night.training_night(s.config.model.retrain_every_days) != night;
    let mut model_warning = None;
    let kept_model = match &state {
        Some(_) if scheduled && !full_refresh => crate::state::model::load(out, &s.config).unwrap_or_else(|why| {
            model_warning = Some(why);
            None
        }),
        _ => None,
    };
    // And the digest of what was known before the training night's cutoff, when the state
    // still knows it.
    let known_digest = match &state {
        Some((_, info)) if scheduled && !full_refresh => {
            crate::state::digest::load(out, info, night.training_night(s.config.model.retrain_every_days))
        }
        _ => None,
    };
    log("kept tables and model read");
    let from = night::ModelFrom::Schedule { kept: kept_model.as_ref(), digest: known_digest };
    // The staging folder holds the spill (removed by the run, or with the folder if it dies).
    let spill = staging.path(".spill-shipments.parquet");
    let res = night::compute(
        s,
        Cow::Owned(clean),
        night,
        &prev,
        from,
        night::Then::Write,
        kept.as_ref(),
        Some(&spill),
        &mut t,
    )?;
    drop(kept);
    drop(kept_model);
    if let Some((_, info)) = &mut state {
        info.lane_tables_reused = res.features.reused.reused as u64;
        info.lane_tables_computed = res.features.reused.computed as u64;
        info.series_days_reused = res.features.reused.days_reused as u64;
        info.series_days_computed = res.features.reused.days_computed as u64;
        info.lane_tables_not_used = kept_warning.clone();
        info.model_training_night = res.trained.as_ref().map(|t| t.on.night.to_string());
        info.model_reused = res.trained.as_ref().map(|t| t.reused);
        info.model_not_used = model_warning.clone();
    }

    let run = RunOutputs::of(&res)?;
    let mut before = Vec::new();
    if let Some(why) = state.as_ref().and_then(|(_, i)| i.full_refresh.as_ref()).filter(|_| !full_refresh) {
        let line = format!("state not used, every input file decoded (full refresh): {why}");
        tracing::warn!("{line}");
        before.push(line);
    }
    if let Some(why) = state.as_ref().and_then(|(_, i)| i.not_written.as_ref()) {
        let line = format!("the state was not written; the next night starts from the one before: {why}");
        tracing::warn!("{line}");
        before.push(line);
    }
    if let Some(why) = &kept_warning {
        let line = format!("lane tables kept in the state not used, every table computed: {why}");
        tracing::warn!("{line}");
        before.push(line);
    }
    if let Some(why) = &model_warning {
        let line = format!("model and advice kept in the state not used, computed again on the training night: {why}");
        tracing::warn!("{line}");
        before.push(line);
    }
    let known = |id: &str| res.features.known_outcome(id);
    let folder = Folder {
        staging,
        started,
        before,
        prev_warning,
        state: state.as_ref().map(|(_, i)| i),
        shards: merged.as_ref(),
    };
    let written = state.as_ref().and_then(|(_, i)| i.written.clone());
    log("outputs computed");
    let (final_dir, warnings) = write_folder(s, out, &run, &report, &known, folder, &mut t)?;
    log("run folder committed");
    // The run folder is committed: a state that cannot be published (a full disk) only costs
    // the next night work (it reads the generation before, or refreshes in full), and what is
    // kept beside it (tables, model, digest) names the generation that was not published, so
    // it is not written either. An exit 73 here told the scheduler nothing was written when
    // the night was.
    let published = state.and_then(|(pending, _)| pending).map(crate::state::publish);
    if let Some(Err(e)) = &published {
        tracing::warn!("the state was not published; the next night starts from the one before: {e}");
    }
    if let Some(Ok(())) = published {
        log("state published");
        // Kept tables only save work: a night that cannot write them has still succeeded.
        let reused = &res.features.reused;
        if let Err(e) = crate::state::tables::write(
            out,
            &s.config.lanes,
            &reused.keep,
            &reused.keep_days,
            &stored,
            written.as_deref(),
            night.cutoff(),
        ) {
            tracing::warn!("lane tables not kept for the next night: {}", e);
        }
        // Likewise the model and advice a scheduled night computed (reused ones are there).
        if let Some(trained) = res.trained.as_ref().filter(|t| !t.reused)
            && let Err(e) = crate::state::model::write(out, &s.config, &trained.on, &trained.advice)
        {
            tracing::warn!("model and advice not kept for the next nights: {}", e);
        }
        // And the digest it took at the training night's cutoff, with the generation it read.
        if let (Some(trained), Some(written)) = (res.trained.as_ref(), written.as_deref())
            && let Err(e) = crate::state::digest::write(out, written, trained.on.night, trained.on.digest)
        {
            tracing::warn!("digest not kept for the next nights: {}", e);
        }
        log("lane tables and model kept");
    }
    drop(lock);
    summary(&run, final_dir, warnings)
}

/// `merge --rounds`: a sharded night's run folder from its merged rounds (`rounds::outputs`),
/// the shards' partials read for their validation reports only: no machine holds the night's
/// input. Equal to the single run's (tests/integration/shards.rs).
pub(crate) fn rounds_run(s: &Settings, dir: &Path, shards: u32) -> Result<RunSummary> {
    let started = output::manifest::now();
    let night = s.night()?;
    let out = s.out()?;
    let lock = OutputLock::acquire(out, &started)?;
    let staging = Staging::new(out, night.as_of(), &lock)?;
    let (final_dir, run, warnings) = finish_rounds(s, dir, shards, staging, started, Vec::new(), Timings::default())?;
    drop(lock);
    summary(&run, final_dir, warnings)
}

/// The run folder from merged rounds in `dir` (call with the output's lock held).
fn finish_rounds(
    s: &Settings,
    dir: &Path,
    shards: u32,
    staging: Staging,
    started: String,
    before: Vec<String>,
    mut t: Timings,
) -> Result<(PathBuf, RunOutputs, u64)> {
    let out = s.out()?;
    let (prev, prev_warning) = output::previous_alerts(out, s.night()?.as_of());
    let (report, merged) = night::load_partial_reports(s, dir, shards, &mut t)?;
    let (run, known) =
        t.time("rounds", || crate::rounds::outputs(s, dir, shards, &prev), |r| r.0.scores.height() as u64)?;
    let known = |id: &str| known.get(id).copied();
    // Parts inside the staging folder are scratch, not outputs (a dead run's go with it).
    if dir.starts_with(&staging.dir) {
        std::fs::remove_dir_all(dir).map_err(|e| crate::error::Error::output(dir, e))?;
    }
    let folder = Folder { staging, started, before, prev_warning, state: None, shards: Some(&merged) };
    let (final_dir, warnings) = write_folder(s, out, &run, &report, &known, folder, &mut t)?;
    Ok((final_dir, run, warnings))
}

/// The night's input rows and what they need in memory (GB, from the files' footers), when
/// `input.max_memory_gb` sets a budget to hold them against (`budget::night_need_gb`).
fn night_need(s: &Settings) -> Result<Option<(u64, u64, f64)>> {
    let budget = s.input_cfg.max_memory_gb;
    if budget <= 0.0 {
        return Ok(None);
    }
    let ships = crate::ingest::footer_rows(&s.input, crate::schema::Table::Shipments)?;
    let events = crate::ingest::footer_rows(&s.input, crate::schema::Table::Events)?;
    Ok(Some((ships, events, crate::budget::night_need_gb(ships, events))))
}

/// A night above `input.max_memory_gb`, out of core (see `budget`): the input split into parts
/// by the shard key, each part validated and then computed in rounds, every step a child
/// process of this binary (`run --shard`, `run --shard --round`, `merge --round`: what a
/// cluster runs, here one after another), so that a step's memory goes back to the system when
/// it ends and the night's peak is its largest step's. Their files are scratch in the staging
/// folder; the run folder is written here from the merged rounds. The outputs are the
/// in-memory run's. The state is neither read nor written (the next night within the budget
/// continues or rebuilds it).
fn out_of_core_run(s: &Settings, (ships, events, need): (u64, u64, f64)) -> Result<RunSummary> {
    let budget = s.input_cfg.max_memory_gb;
    if s.config.model.retrain_every_days > 1 {
        return Err(crate::error::Error::Config(format!(
            "the night needs about {need:.2} GB, above input.max_memory_gb = {budget}, so it runs out of core in \
             rounds, which train every night: set model.retrain_every_days = 1 or raise the limit"
        )));
    }
    crate::budget::check_floor(ships, events, budget)?;
    let started = output::manifest::now();
    let night = s.night()?;
    let out = s.out()?;
    let lock = OutputLock::acquire(out, &started)?;
    let staging = Staging::new(out, night.as_of(), &lock)?;
    let mut t = Timings::default();
    let plan = t.time("plan", || crate::budget::plan(&shipment_groups(s)?, events, budget), |p| p.parts as u64)?;
    crate::memory::release_free_memory();
    let line = format!(
        "the night needs about {need:.2} GB ({ships} shipments, {events} events), above input.max_memory_gb = \
         {budget}: run out of core in {} parts (the largest {} shipments, about {:.2} GB); state not used",
        plan.parts, plan.largest, plan.largest_gb
    );
    tracing::warn!("{line}");
    let dir = staging.path(".parts");
    std::fs::create_dir_all(&dir).map_err(|e| crate::error::Error::output(&dir, e))?;
    // Every step reads the night's effective config (file, variables and flags resolved), so
    // every part computes with this run's settings.
    let config = dir.join("config.toml");
    io::write_file(&config, toml::to_string(&s.config).map_err(crate::error::Error::internal)?.as_bytes())?;
    let step = Step { dir: &dir, config: &config, night: night.to_string(), parts: plan.parts };
    crate::memory::started_steps();
    let parts = plan.parts;
    t.time(
        "validate",
        || (0..parts).try_for_each(|i| step.run(&["run", "--shard", &step.shard(i)], ("--input", &s.input))),
        |_| ships + events,
    )?;
    t.time(
        "parts",
        || {
            for round in crate::rounds::Round::ALL {
                let r = round.name();
                for i in 0..parts {
                    step.run(&["run", "--shard", &step.shard(i), "--round", r], ("--out", out))?;
                }
                step.run(&["merge", "--shards", &parts.to_string(), "--round", r], ("--out", out))?;
            }
            Ok(())
        },
        |_| parts as u64,
    )?;
    let (final_dir, run, warnings) = finish_rounds(s, &dir, parts, staging, started, vec![line], t)?;
    drop(lock);
    summary(&run, final_dir, warnings)
}

/// The child processes of an out-of-core night.
struct Step<'a> {
    dir: &'a Path,
    config: &'a Path,
    night: String,
    parts: u32,
}

impl Step<'_> {
    fn shard(&self, i: u32) -> String {
        format!("{i}/{}", self.parts)
    }

    /// Runs `lanewatch ARGS FLAG PATH --partials DIR --config FILE --as-of NIGHT`; its failure
    /// is this run's, with its one line and exit code.
    fn run(&self, args: &[&str], (flag, path): (&str, &Path)) -> Result<()> {
        use crate::error::Error;
        let exe = std::env::current_exe().map_err(|e| Error::internal(format!("cannot find this binary: {e}")))?;
        let shown = args.join(" ");
        let mut cmd = std::process::Command::new(exe);
        // The config file is this run's effective config, variables and flags applied: the
        // variables again would undo a flag that overrode one (`--seed` over LANEWATCH_SEED),
        // and the step's error line is read in the human log format.
        for (key, _) in std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v))) {
            let config_key = key.strip_prefix("LANEWATCH_").is_some_and(|rest| !crate::config::is_not_config(rest));
            if config_key || key == "LANEWATCH_LOG_FORMAT" {
                cmd.env_remove(&key);
            }
        }
        ends_with_this_process(&mut cmd);
        let out = cmd
            .args(args)
            .arg(flag)
            .arg(path)
            .arg("--partials")
            .arg(self.dir)
            .arg("--config")
            .arg(self.config)
            .args(["--as-of", &self.night])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .map_err(|e| Error::internal(format!("cannot start `lanewatch {shown}`: {e}")))?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
        let message = match killed_by(&out.status) {
            Some(sig) => format!("killed by signal {sig}"),
            None => last.strip_prefix("lanewatch: ").unwrap_or(last).to_string(),
        };
        let code = out.status.code().unwrap_or(crate::error::exit::SOFTWARE);
        tracing::debug!(step = %shown, %stderr, "out-of-core step failed");
        Err(Error::Step { step: format!("out-of-core step `lanewatch {shown}`"), code, message })
    }
}

/// The signal that ended a process, where processes end by signals.
fn killed_by(status: &std::process::ExitStatus) -> Option<i32> {
    #[cfg(unix)]
    return std::os::unix::process::ExitStatusExt::signal(status);
    #[cfg(not(unix))]
    {
        let _ = status;
        None
    }
}

/// A step is sent SIGTERM when the night that started it dies (cron's timeout, a SIGTERM or
/// SIGKILL of the night): left running, it went on writing into the dead night's staging folder
/// while the next night, free to take the lock, cleared that folder as stale. Linux tells a
/// child when the thread that started it exits (`PR_SET_PDEATHSIG`); the steps are started and
/// waited for by one thread, which lives until they end.
fn ends_with_this_process(cmd: &mut std::process::Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id();
        // SAFETY: between fork and exec the closure makes only async-signal-safe calls (prctl,
        // getppid) and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The night may have died before the request took effect: then end at once.
                if libc::getppid() as u32 != parent {
                    libc::_exit(crate::error::exit::SOFTWARE);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// The night's shipments per destination × service (the shard key), as the plan splits them:
/// only those two columns decoded, a batch at a time.
fn shipment_groups(s: &Settings) -> Result<Vec<(String, String, u64)>> {
    use crate::schema::Table;
    let planned = crate::ingest::plan_table(&s.input, Table::Shipments, &s.input_cfg, None)?;
    let mut groups: BTreeMap<(String, String), u64> = BTreeMap::new();
    for plan in planned.plans {
        let plan = plan.only(&["destination", "service"]);
        crate::ingest::decode_file(&plan, Table::Shipments, &mut |df| {
            let text = |c: &str| -> Result<polars::prelude::StringChunked> {
                Ok(df.column(c)?.cast(&polars::prelude::DataType::String)?.str()?.clone())
            };
            let (d, sv) = (text("destination")?, text("service")?);
            for (d, sv) in d.iter().zip(sv.iter()) {
                let key = (d.unwrap_or("").to_string(), sv.unwrap_or("").to_string());
                *groups.entry(key).or_insert(0) += 1;
            }
            Ok(())
        })?;
    }
    Ok(groups.into_iter().map(|((d, sv), n)| (d, sv, n)).collect())
}

/// A run folder being written, and what its manifest records beside the outputs.
struct Folder<'a> {
    staging: Staging,
    started: String,
    /// Warnings after the validation's and before the previous run's (the state's).
    before: Vec<String>,
    prev_warning: Option<String>,
    state: Option<&'a crate::state::StateInfo>,
    shards: Option<&'a crate::partials::Merged>,
}

/// Writes the night's files, report and manifest into the staging folder and commits it;
/// returns the run folder and the number of warnings.
fn write_folder(
    s: &Settings,
    out: &Path,
    run: &RunOutputs,
    report: &crate::validate::Report,
    known: &dyn Fn(&str) -> Option<bool>,
    f: Folder<'_>,
    t: &mut Timings,
) -> Result<(PathBuf, u64)> {
    let t0 = std::time::Instant::now();
    let (trend, trend_warnings) = output::trend(s, out, run, known)?;
    crate::memory::log_step("commit", "trend read", t0);
    let staging = &f.staging;
    let written = t.time("write", || output::write_run(s, run, report, &trend, staging), |w| w.len() as u64)?;
    let mut warnings: Vec<String> = report.warnings.iter().map(|w| w.line()).collect();
    warnings.extend(f.before);
    // Logged as well as kept in the manifest (the input's and the state's are logged where
    // they arise): a cron log showed nothing when the previous night's alerts could not be
    // read and every alert started afresh.
    let model = model_warnings(&run.model.metrics, &run.model.kind);
    for line in f.prev_warning.iter().chain(&trend_warnings).chain(&model) {
        tracing::warn!("{line}");
    }
    warnings.extend(f.prev_warning);
    warnings.extend(trend_warnings);
    warnings.extend(model);
    let mut manifest = Manifest::new(&s.config, run, &report.files, &written, &warnings, t, f.started);
    manifest.state = f.state;
    manifest.shards = f.shards;
    io::write_file(&staging.path("manifest.json"), &manifest.to_json()?)?;
    crate::memory::log_step("commit", "manifest written", t0);
    Ok((f.staging.commit()?, warnings.len() as u64))
}

/// The manifest's warnings about the night's model: a fallback to the rule, candidates left out,
/// boosted trees chosen without early stopping, a model that does not beat the floor.
fn model_warnings(m: &crate::model::Metrics, kind: &str) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(fallback) = &m.fallback {
        warnings.push(format!("model fell back to the lane-quantile rule: {fallback}"));
    }
    for (c, why) in &m.failed_candidates {
        warnings.push(if c == crate::model::SIMPLE_LOGISTIC {
            format!("the simple logistic floor failed to fit, so no floor was checked: {why}")
        } else {
            format!("model candidate {c} failed and was left out of the choice: {why}")
        });
    }
    // Only when the boosted trees are the model scoring tonight: as a losing candidate, their
    // rounds are in metrics.json alone.
    let off = m.gbdt_rounds.as_ref().and_then(|r| r.early_stopping_off.as_ref());
    if let Some(why) = off.filter(|_| kind == "gbdt") {
        warnings
            .push(format!("the chosen model (gbdt) boosted up to model.gbdt_max_rounds without early stopping: {why}"));
    }
    if let Some(floor) = m.floor.as_ref().filter(|f| !f.beaten) {
        warnings.push(format!(
            "the chosen model ({kind}) does not beat the simple logistic floor on validation PR-AUC: {:.3} vs {:.3}",
            floor.model_pr_auc, floor.baseline_pr_auc
        ));
    }
    warnings
}

fn summary(run: &RunOutputs, out: PathBuf, warnings: u64) -> Result<RunSummary> {
    let a = &run.alerts;
    let text = |c: &str| -> Result<polars::prelude::StringChunked> { Ok(a.column(c)?.str()?.clone()) };
    let (kind, severity) = (text("alert")?, text("severity")?);
    let (o, d, sv) = (text("origin")?, text("destination")?, text("service")?);
    let mut by_kind = BTreeMap::new();
    let mut by_kind_severity = BTreeMap::new();
    let mut per_lane: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for k in 0..a.height() {
        let at = |c: &polars::prelude::StringChunked| c.get(k).unwrap_or("").to_string();
        *by_kind.entry(at(&kind)).or_insert(0) += 1;
        *by_kind_severity.entry(format!("{}/{}", at(&kind), at(&severity))).or_insert(0) += 1;
        *per_lane.entry((at(&o), at(&d), at(&sv))).or_insert(0) += 1;
    }
    let mut lanes: Vec<((String, String, String), u64)> = per_lane.into_iter().collect();
    // Most alerts first, then by lane.
    lanes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let label = |(o, d, s): &(String, String, String)| crate::features::prepare::lane_label(o, d, s);
    let top_lanes = lanes.iter().take(5).map(|(l, n)| (label(l), *n)).collect();
    let disrupted_lanes = run
        .disrupted
        .iter()
        .map(|x| format!("{} ({} ×{:.1})", x.lane.label(), STAGES[x.stage].label, x.ratio))
        .collect();
    Ok(RunSummary {
        as_of: run.night.to_string(),
        out,
        scored: run.scores.height() as u64,
        alerts: a.height() as u64,
        by_kind,
        by_kind_severity,
        recovered: run.recovered.height() as u64,
        disrupted_lanes,
        top_lanes,
        model: run.model.kind.clone(),
        trained_on: run.trained_on.clone(),
        model_kept: run.model_kept,
        fallback: run.model.metrics.fallback.clone(),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::config::{AlertConfig, LaneConfig, ModelConfig};
    use crate::model::{GbdtRounds, Metrics, ModelParams};

    fn metrics(chosen: &str, early_stopping_off: Option<&str>) -> Metrics {
        Metrics {
            chosen_model: chosen.into(),
            fallback: None,
            n_train: 0,
            n_train_sampled: 0,
            n_valid: 0,
            train_late_rate: 0.0,
            valid_late_rate: 0.0,
            model: None,
            candidates: BTreeMap::new(),
            baselines: BTreeMap::new(),
            calibration_bins: vec![],
            pr_curves: BTreeMap::new(),
            windows: Default::default(),
            floor: None,
            failed_candidates: BTreeMap::new(),
            gbdt_rounds: Some(GbdtRounds {
                trees: 300,
                early_stopping_rows: if early_stopping_off.is_some() { 0 } else { 500 },
                early_stopping_off: early_stopping_off.map(String::from),
            }),
            hyper_parameters: ModelParams::from_config(
                &ModelConfig::default(),
                &AlertConfig::default(),
                &LaneConfig::default(),
                7,
            )
            .unwrap(),
        }
    }

    /// Boosted trees chosen without early stopping are a warning of the night; as a candidate
    /// that lost, or with early stopping on, they are not.
    #[test]
    fn boosted_trees_chosen_without_early_stopping_are_a_warning() {
        let why = "its 9 rows (the latest training resolutions) hold a single class";
        let warned = super::model_warnings(&metrics("gbdt", Some(why)), "gbdt");
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].contains("without early stopping") && warned[0].ends_with(why), "{warned:?}");
        assert_eq!(super::model_warnings(&metrics("forest", Some(why)), "forest"), Vec::<String>::new());
        assert_eq!(super::model_warnings(&metrics("gbdt", None), "gbdt"), Vec::<String>::new());
    }
}
