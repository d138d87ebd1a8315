//! The `lanewatch` binary: parses arguments, calls the library, maps errors to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use lanewatch::commands;
use lanewatch::config::{self, Config, Overrides};
use lanewatch::error::{Error, exit, printable};
use lanewatch::generate;
use lanewatch::settings::Settings;

const EXIT_CODES: &str = "\
Exit codes (sysexits):
  0   ok
  2   usage error (unknown flag, malformed flag value such as --as-of)
  65  bad input data (also a model whose feature schema does not match)
  66  input missing, or not a folder
  70  internal error (including any panic)
  73  cannot write output
  75  output locked by another run; try later
  78  config error (a bad value in the config file or a LANEWATCH_* variable)";

#[derive(Parser)]
#[command(name = "lanewatch", version = lanewatch::night::TOOL_VERSION, about = "Early warning for late cross-border parcels", after_help = EXIT_CODES)]
struct Cli {
    /// Log format on stderr: human, or json for cron and log shippers.
    #[arg(long, value_enum, default_value = "human", global = true, env = "LANEWATCH_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Format {
    Text,
    Json,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// Pipeline config (TOML), e.g. pipelines/nightly.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Input folder holding shipments and events.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Seed for sampling and models.
    #[arg(long)]
    seed: Option<u64>,
}

/// The nights `backtest` and `evaluate` replay, and where they write.
#[derive(clap::Args, Clone)]
struct Nights {
    /// First night (as-of date); or backtest.from in the config.
    #[arg(long, value_parser = date_arg)]
    from: Option<String>,
    /// Last night (as-of date); or backtest.to in the config.
    #[arg(long, value_parser = date_arg)]
    to: Option<String>,
    /// Days between replayed nights; or backtest.every in the config (default 7).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    every: Option<u32>,
    /// Folder for backtest.parquet, backtest.json (with the pooled evaluation) and
    /// backtest.html; or pipeline.out.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the nightly job: features, model, scores, alerts, seller files and report.
    #[command(after_help = EXIT_CODES)]
    Run {
        #[command(flatten)]
        common: Common,
        /// Output folder; the run writes OUT/as_of=DATE/.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The night to run: YYYY-MM-DD or `yesterday`.
        #[arg(long, value_parser = night_arg)]
        as_of: Option<String>,
        /// Decode every input file and rebuild the state in OUT/state/ instead of reading the
        /// files it already holds.
        #[arg(long, conflicts_with = "shard")]
        full_refresh: bool,
        /// Run only shard I of N (I/N): validate the shipments it owns and write its partial
        /// into --partials; `lanewatch merge` finishes the night.
        #[arg(long, requires = "partials")]
        shard: Option<lanewatch::shard::Shard>,
        /// Folder of a sharded night's partials (with --shard).
        #[arg(long, requires = "shard")]
        partials: Option<PathBuf>,
        /// With --shard: compute the shard's share of this round of the night from its partial
        /// and the rounds merged before (window, parents, wanted, values, queries, shares,
        /// split, offer, train-shares, train-rows, score, advice-pools, advice).
        #[arg(long, requires = "shard")]
        round: Option<lanewatch::rounds::Round>,
    },
    /// Finish a sharded night: merge the partials of every shard and write OUT/as_of=DATE/ as
    /// `run` would.
    #[command(after_help = EXIT_CODES)]
    Merge {
        /// Pipeline config (TOML), the one the shards ran with.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        seed: Option<u64>,
        /// The folder the shards wrote their partials into.
        #[arg(long)]
        partials: PathBuf,
        /// How many shards the night was split into.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        shards: u32,
        /// Output folder; the merge writes OUT/as_of=DATE/.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The night: YYYY-MM-DD or `yesterday`.
        #[arg(long, value_parser = night_arg)]
        as_of: Option<String>,
        /// Merge only this round's shares (see `run --round`), into PARTIALS/round-NAME/. From
        /// round `score` on, --out names the output folder whose earlier runs tonight's alerts
        /// continue from (the shards' `run --round` too).
        #[arg(long)]
        round: Option<lanewatch::rounds::Round>,
        /// Write OUT/as_of=DATE/ from the merged rounds (every round merged), reading only the
        /// partials' JSON: no machine holds the night's input.
        #[arg(long, conflicts_with = "round")]
        rounds: bool,
    },
    /// Check an input folder against the contract.
    #[command(after_help = EXIT_CODES)]
    Validate {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Print a TOML snippet mapping every unmapped status, to review and paste into the
        /// pipeline config.
        #[arg(long)]
        suggest_statuses: bool,
    },
    /// Print the config a command would run with: defaults, then the file, then LANEWATCH_*
    /// variables, then flags; checked as a run checks it (an input must be set). Text is TOML,
    /// loadable with --config.
    #[command(after_help = EXIT_CODES)]
    Config {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Write realistic synthetic tracking histories with ground truth.
    #[command(after_help = EXIT_CODES)]
    Generate {
        #[arg(long)]
        out: PathBuf,
        /// Shipments (default 20000; 6000 for the sparse profile).
        #[arg(long, value_parser = shipments_arg)]
        shipments: Option<usize>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// First day orders are created (1990-01-01 to 2188-11-28).
        #[arg(long, value_parser = generate_start_arg, default_value = "2026-06-01")]
        start: String,
        /// Days over which orders are created (default 180; 1825 for the sparse profile; at most 3650).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=lanewatch::generate::MAX_DAYS as i64))]
        days: Option<u32>,
        /// The shape of history: default, sparse, few-milestones, regime-shift.
        #[arg(long, default_value = "default", value_parser = profile_arg)]
        profile: String,
        /// Write statuses in a preset's vocabulary: upu-emsevt or aftership.
        #[arg(long, value_parser = vocabulary_arg)]
        vocabulary: Option<String>,
        /// Give milestone scans the carrier's estimated delivery.
        #[arg(long)]
        carrier_estimates: bool,
    },
    /// Write lanes.parquet, features.parquet (scoring rows) and training.parquet.
    #[command(after_help = EXIT_CODES)]
    Features {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_parser = night_arg)]
        as_of: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Train and save the late-risk model.
    #[command(after_help = EXIT_CODES)]
    Train {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_parser = night_arg)]
        as_of: Option<String>,
        #[arg(long)]
        model_out: PathBuf,
        /// Also write the metrics here.
        #[arg(long)]
        metrics_out: Option<PathBuf>,
    },
    /// Replay nightly runs over history and score them against later outcomes.
    #[command(after_help = EXIT_CODES)]
    Backtest {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        nights: Nights,
    },
    /// Pooled point-in-time evaluation: replays nights like backtest and scores the model and
    /// the baselines on every in-flight shipment still before its promise.
    #[command(after_help = EXIT_CODES)]
    Evaluate {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        nights: Nights,
    },
    /// Write one seller's page from a finished run: their alerts, their lanes against the
    /// network, the advice (OUT/seller_pages/as_of=DATE/<file>.html).
    #[command(after_help = EXIT_CODES)]
    Report {
        /// The seller's id, as in the input.
        #[arg(long)]
        seller: String,
        /// The output folder holding OUT/as_of=DATE/.
        #[arg(long)]
        out: PathBuf,
        /// The night whose run to read.
        #[arg(long, value_parser = date_arg)]
        as_of: String,
    },
    /// Convert a public dataset to the canonical input.
    #[command(subcommand, after_help = EXIT_CODES)]
    Import(Import),
    /// Score in-flight shipments with a saved model.
    #[command(after_help = EXIT_CODES)]
    Score {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_parser = night_arg)]
        as_of: Option<String>,
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum Import {
    /// UCI Cargo 2000 (c2k_data_comma.csv) to shipments, events and truth Parquet.
    Cargo2000 {
        /// Path to c2k_data_comma.csv.
        #[arg(long)]
        src: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Day the first process instance starts (1990-01-01 to 2189-12-31).
        #[arg(long, value_parser = import_start_arg, default_value = "2026-01-05")]
        start: String,
        /// Days over which instances are spread, in file order (1 to 3650).
        #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
    },
}

fn print_pooled(p: &lanewatch::evaluate::Pooled) {
    println!(
        "  pooled point-in-time evaluation: {} rows ({} late) over {} nights ({} fell back to the lane rule)",
        p.rows, p.late, p.nights, p.fallback_nights
    );
    for (name, s) in &p.scores {
        println!("    {name:<16} roc_auc {:.3}  pr_auc {:.3}  brier {:.4}", s.roc_auc, s.pr_auc, s.brier);
    }
}

/// Multi-line text from data for the terminal: each line made printable, line breaks kept.
fn printable_lines(s: &str) -> String {
    s.lines().map(|l| printable(l) + "\n").collect()
}

/// `--as-of`: a date or `yesterday`; anything else is a usage error (exit 2).
fn night_arg(s: &str) -> Result<String, String> {
    if s == "yesterday" { Ok(s.to_string()) } else { date_arg(s) }
}

/// A `YYYY-MM-DD` flag; a malformed one is a usage error (exit 2).
/// A flag's value checked as the library checks it, so that a bad one is a usage error (exit
/// 2, as README's table says of flags) rather than a config error (78).
fn flag_value(checked: lanewatch::error::Result<()>, s: &str) -> Result<String, String> {
    checked.map(|()| s.to_string()).map_err(|e| match e {
        Error::Config(m) => m,
        other => other.to_string(),
    })
}

fn profile_arg(s: &str) -> Result<String, String> {
    flag_value(generate::Profile::parse(s).map(|_| ()), s)
}

fn vocabulary_arg(s: &str) -> Result<String, String> {
    flag_value(generate::in_vocabulary(Some(s), "DELIVERED").map(|_| ()), s)
}

fn date_arg(s: &str) -> Result<String, String> {
    flag_value(config::parse_date(s).map(|_| ()), s)
}

/// `generate --shipments`: at least one, and no more than this machine's memory holds while
/// they are generated (an allocation that failed aborted with a backtrace).
fn shipments_arg(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|_| format!("{:?} is not a number of shipments", printable(s)))?;
    if n == 0 {
        return Err("at least 1 shipment".into());
    }
    match lanewatch::generate::too_many(n, lanewatch::memory::available_bytes()) {
        Some(why) => Err(format!("{why}: generate fewer")),
        None => Ok(n),
    }
}

/// `generate --start`: a day from which the longest history (`--days` 3650) keeps every time
/// inside the 1990..2200 that validation accepts: a later one wrote an input `run` refused.
fn generate_start_arg(s: &str) -> Result<String, String> {
    date_arg(s)?;
    let start = config::parse_date(s).map_err(|e| e.to_string())?;
    match lanewatch::generate::out_of_range(start, lanewatch::generate::MAX_DAYS) {
        Some(_) => Err(format!("{s:?} is outside 1990-01-01..=2188-11-28, the days a generated history can start")),
        None => Ok(s.to_string()),
    }
}

/// `import --start`: a date whose span of at most 3650 days (`--days`) keeps every imported time
/// inside the 1990..2200 that validation accepts. A later start failed the import as bad data
/// ("places the shipment out of range", exit 65), blaming the file for the flag.
fn import_start_arg(s: &str) -> Result<String, String> {
    date_arg(s)?;
    let day = |d: &str| config::parse_date(d).ok();
    if !(day("1990-01-01")..day("2190-01-01")).contains(&day(s)) {
        return Err(format!("{s:?} is outside 1990-01-01..=2189-12-31, the days an import can start"));
    }
    Ok(s.to_string())
}

/// Flags, environment and config file, resolved once into the settings a command runs with.
fn settings(common: &Common, more: Overrides) -> Result<Settings, Error> {
    let env = lanewatch_env(std::env::vars_os())?;
    let cfg = Config::load(
        common.config.as_deref(),
        &env,
        &Overrides { input: common.input.clone(), seed: common.seed, ..more },
    )?;
    Settings::resolve(cfg)
}

/// The `LANEWATCH_*` variables of an environment. Others are not read: `std::env::vars` panics
/// on any variable that is not Unicode, which took every command down (exit 70) when cron's
/// environment held one Latin-1 value. Such a value of our own variables is a config error.
fn lanewatch_env(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Vec<(String, String)>, Error> {
    let mut env = Vec::new();
    for (k, v) in vars {
        if !k.to_string_lossy().starts_with("LANEWATCH_") {
            continue;
        }
        match (k.into_string(), v.into_string()) {
            (Ok(k), Ok(v)) => env.push((k, v)),
            (k, _) => {
                let k = k.unwrap_or_else(|k| k.to_string_lossy().into_owned());
                return Err(Error::Config(format!("environment variable {}: not valid UTF-8", printable(&k))));
            }
        }
    }
    Ok(env)
}

/// The log filter `LANEWATCH_LOG` asks for: unset or empty, `info`; else a level or a list of
/// `target=level` directives. A word that is neither is refused: tracing reads a lone word as a
/// target, so `LANEWATCH_LOG=debgu` logged nothing at all, every warning of a cron night with it.
fn log_filter() -> Result<tracing_subscriber::EnvFilter, Error> {
    use tracing_subscriber::EnvFilter;
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let value = match std::env::var("LANEWATCH_LOG") {
        Err(std::env::VarError::NotPresent) => String::new(),
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(Error::Config("environment variable LANEWATCH_LOG: not valid UTF-8".into()));
        }
        Ok(v) => v,
    };
    if value.trim().is_empty() {
        return Ok(EnvFilter::new("info"));
    }
    let bad = |why: String| {
        Error::Config(format!(
            "LANEWATCH_LOG={}: {why} (a level: {}, or target=level, …)",
            printable(&value),
            LEVELS.join(", ")
        ))
    };
    for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !directive.contains('=') && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(bad(format!("{} is not a log level", printable(directive))));
        }
    }
    EnvFilter::try_new(value.trim()).map_err(|e| bad(lanewatch::error::one_line(e.to_string())))
}

/// A command's failure: its one line (a JSON record with `--log-format json`) and its exit code.
fn failed(json_logs: bool, e: &Error) -> ExitCode {
    if json_logs {
        json_failure(e.exit_code(), &e.to_string());
    } else {
        eprintln!("lanewatch: {}", printable(&e.to_string()));
    }
    ExitCode::from(e.exit_code() as u8)
}

fn init_logs(format: LogFormat, filter: tracing_subscriber::EnvFilter) {
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Human => {
            use std::io::IsTerminal;
            builder.with_ansi(std::io::stderr().is_terminal()).with_target(false).try_init()
        }
    };
    lanewatch::progress::enable_if_terminal(matches!(format, LogFormat::Json));
}

/// The summary `run` and `merge` print.
/// The night's summary on stdout, written once. The night is committed by now: a stdout that
/// is gone (`| head -1`, a full disk under cron's log) loses the summary, not the night;
/// `println!` panicked on it and the night exited 70.
fn print_run(s: &commands::run::RunSummary) {
    use std::fmt::Write as _;
    let trained = match (&s.trained_on, s.model_kept) {
        (Some(d), true) => format!(", trained on {d}, kept in the state"),
        (Some(d), false) => format!(", trained on {d}"),
        (None, true) => ", kept in the state".to_string(),
        (None, false) => String::new(),
    };
    let mut text = String::new();
    let _ = writeln!(
        text,
        "lanewatch run {} ({} model{trained}{})",
        s.as_of,
        s.model,
        s.fallback.as_ref().map(|f| format!(", fallback: {}", printable(f))).unwrap_or_default()
    );
    let _ = writeln!(
        text,
        "  scored {} in-flight shipments, {} alerts, {} recovered, {} warnings",
        s.scored, s.alerts, s.recovered, s.warnings
    );
    for (k, n) in &s.by_kind {
        let sev: Vec<String> = ["high", "medium", "low"]
            .iter()
            .filter_map(|v| s.by_kind_severity.get(&format!("{k}/{v}")).map(|n| format!("{v} {n}")))
            .collect();
        let _ = writeln!(text, "  {k:<8} {n:>6}  ({})", sev.join(", "));
    }
    if !s.top_lanes.is_empty() {
        let _ = writeln!(text, "  top lanes by alerts:");
        for (l, n) in &s.top_lanes {
            let _ = writeln!(text, "    {:<32} {n}", printable(l));
        }
    }
    if !s.disrupted_lanes.is_empty() {
        let _ = writeln!(text, "  disrupted lanes: {}", printable(&s.disrupted_lanes.join("; ")));
    }
    let _ = writeln!(text, "  outputs: {}", printable(&s.out.display().to_string()));
    let _ = writeln!(text, "  report:  {}", printable(&s.out.join("report.html").display().to_string()));
    let mut out = std::io::stdout().lock();
    if let Err(e) = std::io::Write::write_all(&mut out, text.as_bytes()).and_then(|()| std::io::Write::flush(&mut out))
    {
        tracing::warn!("the night is written; its summary could not be printed: {e}");
    }
}

fn real_main(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Run { mut common, out, as_of, full_refresh, shard, partials, round } => {
            // A round reads the shard's partial and the merged rounds, not the input.
            if round.is_some() && common.input.is_none() {
                common.input.clone_from(&partials);
            }
            let settings = settings(&common, Overrides { out, as_of, ..Default::default() })?;
            if let (Some(shard), Some(dir), Some(round)) = (shard, &partials, round) {
                let path = commands::run::run_shard_round(&settings, shard, dir, round)?;
                println!("lanewatch run shard {shard} round {round}: {}", printable(&path.display().to_string()));
                return Ok(());
            }
            if let (Some(shard), Some(dir)) = (shard, partials) {
                let s = commands::run::run_shard(&settings, shard, &dir)?;
                println!(
                    "lanewatch run {} shard {}: {} shipments, {} events read, {} warnings",
                    s.as_of, s.shard, s.shipments, s.events, s.warnings
                );
                println!("  partial: {}", printable(&s.partial.display().to_string()));
                return Ok(());
            }
            print_run(&commands::run::run(&settings, full_refresh)?);
        }
        Command::Merge { config, seed, partials, shards, out, as_of, round, rounds } => {
            // The merge reads no input folder: its input is the partials.
            let common = Common { config, input: Some(partials.clone()), seed };
            let settings = settings(&common, Overrides { out, as_of, ..Default::default() })?;
            if let Some(round) = round {
                let path = commands::merge::merge_round(&settings, &partials, shards, round)?;
                println!("lanewatch merge round {round}: {}", printable(&path.display().to_string()));
                return Ok(());
            }
            if rounds {
                print_run(&commands::merge::merge_rounds(&settings, &partials, shards)?);
                return Ok(());
            }
            print_run(&commands::merge::merge(&settings, &partials, shards)?);
        }
        Command::Config { common, format } => {
            let settings = settings(&common, Overrides::default())?;
            let text = match format {
                Format::Json => serde_json::to_string_pretty(&settings.config).map_err(Error::internal)? + "\n",
                Format::Text => toml::to_string(&settings.config).map_err(Error::internal)?,
            };
            print!("{text}");
        }
        Command::Validate { common, format, suggest_statuses } => {
            let settings = settings(&common, Overrides::default())?;
            let report = commands::validate::validate(&settings)?;
            if suggest_statuses {
                print!("{}", printable_lines(&lanewatch::validate::suggest_statuses(&report)));
            } else if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&report).map_err(Error::internal)?);
            } else {
                for l in report.lines() {
                    println!("{}", printable(&l));
                }
                println!(
                    "{}: {} shipments, {} events in {} files; {} errors, {} warnings",
                    if report.valid { "valid" } else { "invalid" },
                    report.shipments,
                    report.events,
                    report.files.len(),
                    report.errors.len(),
                    report.warnings.len()
                );
            }
            if let Some(e) = report.first_error() {
                return Err(e);
            }
        }
        Command::Generate { out, shipments, seed, start, days, profile, vocabulary, carrier_estimates } => {
            let start = config::parse_date(&start)?;
            let profile = generate::Profile::parse(&profile)?;
            let (default_shipments, default_days) = profile.default_size();
            let p = generate::GenerateParams {
                shipments: shipments.unwrap_or(default_shipments),
                seed,
                start,
                days: days.unwrap_or(default_days),
                profile,
                vocabulary,
                carrier_estimates,
            };
            let t = std::time::Instant::now();
            let s = generate::generate(&p, &out)?;
            println!(
                "generated {} shipments, {} events, {} sellers in {:.1}s: late rate {:.1}%, {} lost, {} returned, {} disruptions",
                s.shipments,
                s.events,
                s.sellers,
                t.elapsed().as_secs_f64(),
                s.late_rate * 100.0,
                s.lost,
                s.returned,
                s.disruptions.len()
            );
        }
        Command::Features { common, as_of, out } => {
            let settings = settings(&common, Overrides { as_of, ..Default::default() })?;
            let fs = commands::features::features(&settings, &out)?;
            println!(
                "features as of {}: {} lanes, {} scoring rows, {} training rows → {}",
                fs.night(),
                fs.lanes().len(),
                fs.score.len(),
                fs.train.len(),
                printable(&out.display().to_string())
            );
        }
        Command::Train { common, as_of, model_out, metrics_out } => {
            let settings = settings(&common, Overrides { as_of, ..Default::default() })?;
            let m = commands::train::train(&settings, &model_out, metrics_out.as_deref())?;
            let e = m.metrics.model.as_ref();
            println!(
                "trained {} as of {} on {} rows (validated on {}): pr_auc {:.3}, roc_auc {:.3}, brier {:.4} → {}",
                m.kind,
                m.as_of,
                m.metrics.n_train_sampled,
                m.metrics.n_valid,
                e.map(|e| e.pr_auc).unwrap_or(f64::NAN),
                e.map(|e| e.roc_auc).unwrap_or(f64::NAN),
                e.map(|e| e.brier).unwrap_or(f64::NAN),
                printable(&model_out.display().to_string())
            );
        }
        Command::Backtest { common, nights: Nights { from, to, every, out } } => {
            let settings = settings(&common, Overrides { out, from, to, every, ..Default::default() })?;
            let s = commands::backtest::backtest(&settings)?;
            println!(
                "backtest {} → {}: {} nights, {} shipments in flight before their promise, {} late",
                s.from, s.to, s.nights, s.population, s.population_late
            );
            for (k, v) in s.kinds.iter().map(|(k, v)| (k.as_str(), v)).chain(std::iter::once(("any", &s.any_alert))) {
                println!(
                    "  {k:<8} alerted {:>6}  precision {:.3}  recall {:.3}  lead median {} d, p10 {} d",
                    v.alerted,
                    v.precision,
                    v.recall,
                    v.lead_days_median.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into()),
                    v.lead_days_p10.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into())
                );
            }
            println!(
                "  alerts per seller per night: mean {:.2} (sellers with alerts), p95 {:.1}, max {}",
                s.fatigue.mean_per_alerted_seller_night,
                s.fatigue.p95_per_alerted_seller_night,
                s.fatigue.max_per_seller_night
            );
            if let Some(d) = &s.disruption_detection {
                println!(
                    "  disruption detection: {}/{} lane-stages (recall {:.2}), {}/{} disruptions, median delay {} d, false-flag lane-nights {} of {} flagged",
                    d.detected,
                    d.disrupted_lanes,
                    d.recall,
                    d.disruptions_detected,
                    d.disruptions,
                    d.median_delay_days.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into()),
                    d.false_flag_lane_nights,
                    d.flagged_lane_nights
                );
            }
            let a = &s.advice;
            let pct = |v: Option<f64>| v.map(|x| format!("{:.1}%", x * 100.0)).unwrap_or_else(|| "-".into());
            println!(
                "  advice: {} parcels shipped after a night; advised service used by {} (on time {}), another by {} (on time {}); p_meet brier {:.3}; promise advice would change {} of {} lanes",
                a.shipments,
                a.followed,
                pct(a.followed_on_time_rate),
                a.not_followed,
                pct(a.not_followed_on_time_rate),
                a.p_meet_brier,
                a.promise_lanes_changed,
                a.promise_lanes
            );
            print_pooled(&s.pooled);
            println!("  outputs: {}", printable(&s.out.display().to_string()));
        }
        Command::Evaluate { common, nights: Nights { from, to, every, out } } => {
            let settings = settings(&common, Overrides { out, from, to, every, ..Default::default() })?;
            let s = commands::backtest::backtest(&settings)?;
            println!("evaluate {} → {} every {} d: {} nights", s.from, s.to, s.every_days, s.nights);
            print_pooled(&s.pooled);
            println!("  outputs: {}", printable(&s.out.display().to_string()));
        }
        Command::Report { seller, out, as_of } => {
            let path = commands::seller_report::seller_report(&out, config::parse_date(&as_of)?, &seller)?;
            println!("seller page → {}", printable(&path.display().to_string()));
        }
        Command::Import(Import::Cargo2000 { src, out, start, days }) => {
            let start = config::parse_date(&start)?;
            let s = lanewatch::import::cargo2000(&src, &out, start, days)?;
            println!(
                "converted {} Cargo 2000 shipments ({} events, late rate {:.1}%) → {}",
                s.shipments,
                s.events,
                s.late_rate * 100.0,
                printable(&out.display().to_string())
            );
        }
        Command::Score { common, as_of, model, out } => {
            let settings = settings(&common, Overrides { as_of, ..Default::default() })?;
            let (m, n) = commands::score::score(&settings, &model, &out)?;
            println!(
                "scored {n} in-flight shipments with the {} model → {}",
                m.kind,
                printable(&out.display().to_string())
            );
        }
    }
    Ok(())
}

/// The failure line of a night logging JSON, written past the log filter: `LANEWATCH_LOG=off`
/// (or one naming only a module) silenced it, and cron's log showed nothing of a failed night.
/// The fields are those of the log's other lines.
fn json_failure(code: i32, message: &str) {
    let line = serde_json::json!({
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": "ERROR",
        "exit_code": code,
        "message": message,
        "target": "lanewatch",
    });
    eprintln!("{line}");
}

/// Whether JSON logs were asked for, read from the raw arguments and environment (for a
/// command line clap could not parse).
fn json_requested() -> bool {
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let flag = args.windows(2).any(|w| w[0] == "--log-format" && w[1] == "json")
        || args.iter().any(|a| a == "--log-format=json");
    flag || std::env::var("LANEWATCH_LOG_FORMAT").is_ok_and(|v| v == "json")
}

fn main() -> ExitCode {
    // Before any thread starts: large freed buffers go back to the system (see there).
    lanewatch::memory::bound_heap_reuse();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::from(exit::OK as u8);
        }
        Err(e) => {
            // One line, as every other failure: clap's block (a blank line, usage, a tip) put
            // several non-JSON lines into a JSON log, and echoed the value's control characters.
            let rendered = e.render().to_string();
            let first = rendered.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("usage error");
            let message = format!("{} (see lanewatch --help)", printable(first.trim_start_matches("error: ")));
            if json_requested() {
                json_failure(exit::USAGE, &message);
            } else {
                eprintln!("lanewatch: {message}");
            }
            return ExitCode::from(exit::USAGE as u8);
        }
    };
    let json_logs = matches!(cli.log_format, LogFormat::Json);
    match log_filter() {
        Ok(filter) => init_logs(cli.log_format, filter),
        Err(e) => return failed(json_logs, &e),
    }
    // A panic must reach cron as one line and exit 70, never as a backtrace. The hook only
    // records it: a panic caught inside (a corrupt page in one file, a model candidate that
    // fails) is reported where it is caught, and one that ends the run is printed below.
    static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let line = format!("internal error: panic{at}: {}", lanewatch::error::one_line(msg));
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(line);
        }
    }));
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| real_main(cli))) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => failed(json_logs, &e),
        Err(_) => {
            let line = LAST_PANIC
                .lock()
                .ok()
                .and_then(|mut l| l.take())
                .unwrap_or_else(|| "internal error: unknown panic".into());
            if json_logs {
                json_failure(exit::SOFTWARE, &line);
            } else {
                eprintln!("lanewatch: {line}");
            }
            ExitCode::from(exit::SOFTWARE as u8)
        }
    }
}
