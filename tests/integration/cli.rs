//! Documented command-line behaviour: settings from the environment, usage and config errors,
//! the run summary, the per-seller cap, terminal safety, the import and the shared contract.

use std::collections::{BTreeMap, HashMap};

use polars::prelude::*;

use crate::common::*;
use crate::tools::{contract, require_shared};

/// `LANEWATCH_INPUT`, `LANEWATCH_OUT`, `LANEWATCH_AS_OF` and `LANEWATCH_SEED` stand in for the
/// flags; flags still win.
#[test]
fn settings_come_from_the_environment() {
    let out = tempfile::tempdir().unwrap();
    let input = small_input().to_str().unwrap();
    let o = lanewatch_env(
        &["run", "--config", fast_config().to_str().unwrap()],
        &[
            ("LANEWATCH_INPUT", input),
            ("LANEWATCH_OUT", out.path().to_str().unwrap()),
            ("LANEWATCH_AS_OF", SMALL_AS_OF),
            ("LANEWATCH_SEED", "1234"),
        ],
    );
    expect_code(&o, 0);
    let run = out.path().join(format!("as_of={SMALL_AS_OF}"));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["seed"], 1234);
    assert_eq!(m["config"]["pipeline"]["input"], input);
    // A flag beats the environment.
    let o = lanewatch_env(
        &["run", "--config", fast_config().to_str().unwrap(), "--seed", "5", "--as-of", "2026-09-19"],
        &[("LANEWATCH_INPUT", input), ("LANEWATCH_OUT", out.path().to_str().unwrap()), ("LANEWATCH_SEED", "1234")],
    );
    expect_code(&o, 0);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("as_of=2026-09-19/manifest.json")).unwrap()).unwrap();
    assert_eq!(m["seed"], 5);
}

/// `--as-of yesterday` (and `as_of = "yesterday"` in a config) is the UTC date before today's.
#[test]
fn yesterday_is_the_utc_date_before_today() {
    let out = tempfile::tempdir().unwrap();
    let before = chrono::Utc::now().date_naive().pred_opt().unwrap();
    let o = lanewatch_fast("run", small_input(), out.path(), &["--as-of", "yesterday"]);
    expect_code(&o, 0);
    let after = chrono::Utc::now().date_naive().pred_opt().unwrap();
    let made: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("as_of="))
        .collect();
    assert!(made == [format!("as_of={before}")] || made == [format!("as_of={after}")], "{made:?}");
    let cfg = out.path().join("y.toml");
    std::fs::write(&cfg, "[pipeline]\nas_of = \"yesterday\"\n").unwrap();
    let s = lanewatch::settings::Settings::resolve(
        lanewatch::config::Config::load(
            Some(&cfg),
            &[],
            &lanewatch::config::Overrides { input: Some(small_input().to_path_buf()), ..Default::default() },
        )
        .unwrap(),
    )
    .unwrap();
    assert!([before, after].contains(&s.night().unwrap().as_of()));
}

/// A malformed `--as-of` is a usage error (exit 2, as the README's table says); a malformed
/// value in the environment or a config file is a config error (78) naming the key and where
/// it was set.
#[test]
fn usage_and_config_errors_name_what_to_fix() {
    let out = tempfile::tempdir().unwrap();
    let input = small_input().to_str().unwrap();
    for bad in ["2026-13-01", "tomorrow", "20260101", "2026\u{1b}[31m"] {
        let o = lanewatch(&["run", "--input", input, "--out", out.path().to_str().unwrap(), "--as-of", bad]);
        expect_code(&o, 2);
        // One line, control characters escaped (regression: clap's block of usage lines).
        let err = stderr(&o);
        assert!(err.contains("--as-of") && err.lines().count() == 1 && !err.contains('\u{1b}'), "{err}");
        let o = lanewatch(&["run", "--as-of", bad, "--log-format", "json"]);
        expect_code(&o, 2);
        let err = stderr(&o);
        let v: serde_json::Value = serde_json::from_str(err.trim_end()).unwrap_or_else(|e| panic!("{e}: {err}"));
        assert_eq!(v["exit_code"], 2, "{err}");
    }
    let o = lanewatch(&["backtest", "--input", input, "--from", "2026-02-30", "--to", "2026-03-01"]);
    expect_code(&o, 2);
    // Out-of-range flag values are usage errors too (regression: these exited 78, the code of
    // a config file's or variable's value), each on one line naming the flag.
    let generated = out.path().join("gen");
    let g = generated.to_str().unwrap();
    for (args, flag) in [
        (vec!["backtest", "--input", input, "--from", "2026-03-01", "--to", "2026-03-02", "--every", "0"], "--every"),
        (vec!["generate", "--out", g, "--shipments", "0"], "--shipments"),
        (vec!["generate", "--out", g, "--days", "0"], "--days"),
        (vec!["generate", "--out", g, "--profile", "bogus"], "--profile"),
        (vec!["generate", "--out", g, "--vocabulary", "bogus"], "--vocabulary"),
        // Regressions: more shipments than memory holds aborted with a backtrace (134), and a
        // start or span leaving 1990..2200 wrote an input `run` refused.
        (vec!["generate", "--out", g, "--shipments", "99999999999999"], "--shipments"),
        (vec!["generate", "--out", g, "--start", "2188-11-29"], "--start"),
        (vec!["generate", "--out", g, "--start", "1989-12-31"], "--start"),
        (vec!["generate", "--out", g, "--days", "3651"], "--days"),
        (vec!["import", "cargo2000", "--src", g, "--out", g, "--days", "0"], "--days"),
        // Regression: a start whose span leaves 1990..2200 failed as bad data (65), naming the file.
        (vec!["import", "cargo2000", "--src", g, "--out", g, "--start", "2199-12-01"], "--start"),
        (vec!["import", "cargo2000", "--src", g, "--out", g, "--start", "1980-01-01"], "--start"),
        (vec!["import", "cargo2000", "--src", g, "--out", g, "--days", "3651"], "--days"),
    ] {
        let o = lanewatch(&args);
        expect_code(&o, 2);
        let err = stderr(&o);
        assert!(err.contains(flag) && err.lines().count() == 1, "{args:?}: {err}");
    }
    assert!(!generated.exists());
    let o = lanewatch_env(
        &["run", "--input", input, "--out", out.path().to_str().unwrap(), "--as-of", SMALL_AS_OF],
        &[("LANEWATCH_ALERTS__RISK_THRESHOLD", "abc")],
    );
    expect_code(&o, 78);
    let last = stderr(&o).lines().last().unwrap().to_string();
    assert!(last.contains("alerts.risk_threshold") && last.contains("LANEWATCH_ALERTS__RISK_THRESHOLD"), "{last}");
    let o = lanewatch_env(
        &["run", "--input", input, "--out", out.path().to_str().unwrap()],
        &[("LANEWATCH_AS_OF", "2026-13-01")],
    );
    expect_code(&o, 78);
    let cfg = out.path().join("bad.toml");
    std::fs::write(&cfg, "[alerts]\nrisk_threshold = \"high\"\n").unwrap();
    let o = lanewatch(&[
        "run",
        "--input",
        input,
        "--out",
        out.path().to_str().unwrap(),
        "--as-of",
        SMALL_AS_OF,
        "--config",
        cfg.to_str().unwrap(),
    ]);
    expect_code(&o, 78);
    let last = stderr(&o).lines().last().unwrap().to_string();
    assert!(last.contains("alerts.risk_threshold") && last.contains("bad.toml"), "{last}");
    assert!(!out.path().join(format!("as_of={SMALL_AS_OF}")).exists());
    // A file's value of the wrong type is refused though a flag or a variable overrides it
    // (regression: it passed, and the first night run without the override failed); likewise
    // a variable's under a flag, and values of the right type out of their range.
    let refused = |args: &[&str], env: &[(&str, &str)]| -> String {
        let o = lanewatch_env(args, env);
        expect_code(&o, 78);
        stderr(&o).lines().last().unwrap().to_string()
    };
    let run = ["run", "--input", input, "--out", out.path().to_str().unwrap(), "--as-of", SMALL_AS_OF];
    let with_cfg = [&run[..], &["--config", cfg.to_str().unwrap()]].concat();
    let backtest = ["backtest", "--input", input, "--out", out.path().to_str().unwrap()];
    let backtest = [&backtest[..], &["--from", SMALL_AS_OF, "--to", SMALL_AS_OF]].concat();
    let seed = [&run[..], &["--seed", "5"]].concat();
    for (file, args, env, says) in [
        ("[pipeline]\nas_of = 20260720\n", &with_cfg, vec![], vec!["pipeline.as_of (set by", "bad.toml"]),
        (
            "[alerts]\nrisk_threshold = true\n",
            &with_cfg,
            vec![("LANEWATCH_ALERTS__RISK_THRESHOLD", "0.5")],
            vec!["alerts.risk_threshold (set by", "bad.toml"],
        ),
        ("", &seed, vec![("LANEWATCH_SEED", "abc")], vec!["pipeline.seed (set by LANEWATCH_SEED)"]),
        // A date that is no date under a flag, a threshold out of range under a variable.
        ("", &run.to_vec(), vec![("LANEWATCH_AS_OF", "2026-13-01")], vec!["pipeline.as_of: bad date", "set by LANEWATCH_AS_OF"]),
        (
            "",
            &backtest,
            vec![("LANEWATCH_BACKTEST__FROM", "2026-02-30")],
            vec!["backtest.from: bad date", "set by LANEWATCH_BACKTEST__FROM"],
        ),
        (
            "[alerts]\nrisk_threshold = 1.5\n",
            &with_cfg,
            vec![("LANEWATCH_ALERTS__RISK_THRESHOLD", "0.5")],
            vec!["alerts.risk_threshold must be in [0, 1], got 1.5", "bad.toml"],
        ),
    ] {
        std::fs::write(&cfg, file).unwrap();
        let last = refused(args, &env);
        assert!(says.iter().all(|s| last.contains(s)), "{args:?} {env:?}: {last}");
    }
    assert!(!out.path().join(format!("as_of={SMALL_AS_OF}")).exists());
    // Regression: an empty output path (`LANEWATCH_OUT=$OUT`, `$OUT` unset) ran in the current
    // folder and exited 73 after publishing there; an empty input path is refused alike.
    let here = tempfile::tempdir().unwrap();
    for (var, args) in [("LANEWATCH_OUT", vec!["--input", input]), ("LANEWATCH_INPUT", vec!["--out", "o"])] {
        let o = std::process::Command::new(bin())
            .args(["run", "--as-of", SMALL_AS_OF])
            .args(&args)
            .env(var, "")
            .current_dir(here.path())
            .output()
            .unwrap();
        expect_code(&o, 78);
        let key = var.strip_prefix("LANEWATCH_").unwrap().to_ascii_lowercase();
        assert!(stderr(&o).contains(&format!("{key} is empty")), "{}", stderr(&o));
        assert!(stderr(&o).contains(var), "the message does not name {var}: {}", stderr(&o));
        assert_eq!(std::fs::read_dir(here.path()).unwrap().count(), 0, "{var}: something was written");
    }
}

/// Regression: one variable in the environment that is not Unicode, anyone's, made every
/// command that reads the config panic (exit 70). Ours with such a value is a config error, and
/// so is a path flag that is not UTF-8.
#[cfg(unix)]
#[test]
fn text_that_is_not_unicode_is_ignored_unless_it_is_ours() {
    use std::os::unix::ffi::OsStrExt;
    let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9");
    let config = |key: &str| {
        let mut cmd = std::process::Command::new(bin());
        cmd.args(["config", "--input", "x"]).env(key, latin1);
        cmd.output().unwrap()
    };
    expect_code(&config("SOMEONE_ELSES"), 0);
    let o = config("LANEWATCH_PIPELINE__NAME");
    expect_code(&o, 78);
    assert!(stderr(&o).contains("LANEWATCH_PIPELINE__NAME"), "{}", stderr(&o));
    // Regression: a path flag that is not UTF-8 was read lossily (another folder, named with
    // U+FFFD); it is a config error naming the flag, and nothing is written.
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    std::fs::create_dir(&odd).unwrap();
    let out = dir.path().join("out");
    for (flag, input, out) in [("--input", odd.as_path(), out.as_path()), ("--out", small_input(), odd.as_path())] {
        let o = std::process::Command::new(bin())
            .args(["run", "--as-of", SMALL_AS_OF])
            .arg("--input")
            .arg(input)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap();
        expect_code(&o, 78);
        let last = stderr(&o).lines().last().unwrap().to_string();
        assert!(last.contains(flag) && last.contains("not UTF-8"), "{last}");
    }
    assert!(!dir.path().join("out").exists());
}

/// Regression: thresholds that are NaN, infinite or negative, and windows of more days than
/// microseconds can count, were accepted and quietly turned rules off or wrapped around.
#[test]
fn thresholds_that_are_not_numbers_and_windows_past_a_century_are_config_errors() {
    for (key, value, name) in [
        ("LANEWATCH_ALERTS__STALLED_MIN_DAYS", "nan", "alerts.stalled_min_days"),
        ("LANEWATCH_ALERTS__LATE_HIGH_DAYS", "-3", "alerts.late_high_days"),
        ("LANEWATCH_ALERTS__HIGH_VALUE_USD", "inf", "alerts.high_value_usd"),
        ("LANEWATCH_LANES__DISRUPTION_MIN_Z", "nan", "lanes.disruption_min_z"),
        ("LANEWATCH_LANES__DISRUPTION_MIN_INCREASE_DAYS", "-1", "lanes.disruption_min_increase_days"),
        ("LANEWATCH_FEATURES__PRIOR_STRENGTH", "inf", "features.prior_strength"),
        ("LANEWATCH_LANES__MAX_WINDOW_DAYS", "200000000", "lanes.max_window_days"),
        ("LANEWATCH_LANES__WINDOW_DAYS", "36501", "lanes.window_days"),
        ("LANEWATCH_FEATURES__TRAIN_WINDOW_DAYS", "40000", "features.train_window_days"),
        // Regressions: contradictory or rule-disabling values were accepted without a word.
        ("LANEWATCH_LANES__DISRUPTION_RATIO", "inf", "lanes.disruption_ratio"),
        ("LANEWATCH_LANES__MAX_WINDOW_DAYS", "60", "lanes.max_window_days (60) must be at least lanes.window_days"),
        ("LANEWATCH_ALERTS__HIGH_RISK", "0.6", "alerts.high_risk (0.6) must be at least alerts.medium_risk"),
        // Regression: checked only where a backtest read it.
        ("LANEWATCH_BACKTEST__EVERY", "0", "backtest.every must be at least 1 (backtest.every set by LANEWATCH_BACKTEST__EVERY)"),
    ] {
        let o = lanewatch_env(&["config", "--input", "x"], &[(key, value)]);
        expect_code(&o, 78);
        assert!(stderr(&o).contains(name), "{key}={value}: {}", stderr(&o));
    }
    // The bounds themselves are accepted.
    let o = lanewatch_env(
        &["config", "--input", "x"],
        &[("LANEWATCH_LANES__MAX_WINDOW_DAYS", "36500"), ("LANEWATCH_ALERTS__STALLED_MIN_DAYS", "0")],
    );
    expect_code(&o, 0);
    // Regression: the spellings of UTC ingest reads were refused by the config's check.
    for zone in ["Z", "+00:00", " utc ", "Europe/Berlin"] {
        expect_code(&lanewatch_env(&["config", "--input", "x"], &[("LANEWATCH_INPUT__NAIVE_TIMEZONE", zone)]), 0);
    }
    expect_code(
        &lanewatch_env(&["config", "--input", "x"], &[("LANEWATCH_INPUT__NAIVE_TIMEZONE", "Mars/Olympus")]),
        78,
    );
}

/// `lanewatch config` prints the config after precedence (file, then LANEWATCH_* variables),
/// as TOML that loads back to itself and as JSON; a bad value exits 78 as a run would.
#[test]
fn config_prints_the_resolved_config() {
    let dir = tempfile::tempdir().unwrap();
    let sample = repo().join("pipelines/sample.toml");
    let sample = sample.to_str().unwrap();
    let env =
        [("LANEWATCH_ALERTS__RISK_THRESHOLD", "0.61"), ("LANEWATCH_INPUT__COLUMNS__EVENTS__SHIPMENT_ID", "parcel")];
    let o = lanewatch_env(&["config", "--config", sample], &env);
    expect_code(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("risk_threshold = 0.61"), "{text}");
    let saved = dir.path().join("resolved.toml");
    std::fs::write(&saved, &text).unwrap();
    let again = lanewatch(&["config", "--config", saved.to_str().unwrap()]);
    expect_code(&again, 0);
    assert_eq!(stdout(&again), text, "the printed TOML does not load back to itself");

    let o = lanewatch_env(&["config", "--config", sample, "--format", "json", "--seed", "9"], &env);
    expect_code(&o, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(json["input"]["columns"]["events"]["shipment_id"], "parcel");
    assert_eq!(json["pipeline"]["seed"], 9);
    assert_eq!(json["pipeline"]["name"], "sample");

    let o = lanewatch_env(&["config", "--input", "x"], &[("LANEWATCH_ALERTS__RISK_THRESHOLD", "abc")]);
    expect_code(&o, 78);
    assert!(stderr(&o).contains("alerts.risk_threshold"), "{}", stderr(&o));
}

/// The summary printed after a run agrees with the files it wrote.
#[test]
fn the_run_summary_matches_the_outputs() {
    let out = tempfile::tempdir().unwrap();
    let o = lanewatch_fast("run", small_input(), out.path(), &["--as-of", SMALL_AS_OF]);
    expect_code(&o, 0);
    let text = stdout(&o);
    let run = out.path().join(format!("as_of={SMALL_AS_OF}"));
    let scores = read_parquet(&run.join("scores.parquet"));
    let alerts = read_parquet(&run.join("alerts.parquet"));
    let recovered = read_parquet(&run.join("recovered.parquet"));
    assert!(
        text.contains(&format!(
            "scored {} in-flight shipments, {} alerts, {} recovered",
            scores.height(),
            alerts.height(),
            recovered.height()
        )),
        "{text}"
    );
    let mut by: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (k, s) in strings(&alerts, "alert").into_iter().zip(strings(&alerts, "severity")) {
        *by.entry((k, s)).or_insert(0) += 1;
    }
    for kind in ["late", "stalled", "at_risk"] {
        let n: usize = by.iter().filter(|((k, _), _)| k == kind).map(|(_, n)| n).sum();
        if n == 0 {
            continue;
        }
        let line = text.lines().find(|l| l.trim_start().starts_with(&format!("{kind} "))).unwrap();
        assert!(line.contains(&format!(" {n} ")), "{line} vs {n}");
        for sev in ["high", "medium", "low"] {
            if let Some(m) = by.get(&(kind.to_string(), sev.to_string())) {
                assert!(line.contains(&format!("{sev} {m}")), "{line}");
            }
        }
    }
    // Top lanes: the most alerted lane comes first with its count.
    let mut lanes: HashMap<String, usize> = HashMap::new();
    for ((o, d), s) in
        strings(&alerts, "origin").into_iter().zip(strings(&alerts, "destination")).zip(strings(&alerts, "service"))
    {
        *lanes.entry(format!("{o}→{d} {s}")).or_insert(0) += 1;
    }
    let top = lanes.values().max().unwrap();
    let first = text.lines().skip_while(|l| !l.contains("top lanes by alerts")).nth(1).unwrap();
    let (label, n) = first.trim().rsplit_once(' ').unwrap();
    assert_eq!(n.parse::<usize>().unwrap(), *top);
    assert_eq!(lanes[label.trim()], *top);
    assert!(text.contains(&format!("outputs: {}", run.display())));
}

/// Lane names reach the run summary on stdout; control characters in them are shown escaped,
/// never sent to the terminal (no screen clearing, carriage returns or forged lines).
#[test]
fn data_strings_reach_the_terminal_escaped() {
    let base_out = tempfile::tempdir().unwrap();
    let base = run_night(small_input(), base_out.path(), SMALL_AS_OF, &[]);
    let alerts = read_parquet(&base.join("alerts.parquet"));
    // The origin of the most alerted lane, renamed everywhere to something hostile.
    let mut count: HashMap<String, usize> = HashMap::new();
    for o in strings(&alerts, "origin") {
        *count.entry(o).or_insert(0) += 1;
    }
    let origin = count.into_iter().max_by_key(|(o, n)| (*n, o.clone())).unwrap().0;
    let hostile = format!("{origin}\u{1b}[2J\r\nlanewatch: forged line\u{0}\u{7}");
    let input = copy_input(small_input());
    let path = input.path().join("shipments.parquet");
    let mut ships = read_parquet(&path);
    let renamed: Vec<String> =
        strings(&ships, "origin").into_iter().map(|o| if o == origin { hostile.clone() } else { o }).collect();
    ships.with_column(Column::new("origin".into(), renamed)).unwrap();
    write_parquet(&mut ships, &path);
    let out = tempfile::tempdir().unwrap();
    let o = lanewatch_fast("run", input.path(), out.path(), &["--as-of", SMALL_AS_OF]);
    expect_code(&o, 0);
    let text = stdout(&o);
    assert!(text.contains(&format!("{origin}\\u{{1b}}[2J\\r\\nlanewatch: forged line\\u{{0}}\\u{{7}}")), "{text}");
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "control characters on stdout: {text:?}");
    assert!(!text.lines().any(|l| l.starts_with("lanewatch: forged")), "{text}");
}

/// `alerts.max_per_seller` lists each seller's most severe, riskiest alerts and counts the rest
/// in `sellers/index.csv` as suppressed.
#[test]
fn the_per_seller_cap_keeps_the_worst_and_counts_the_rest() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let all = run_night(small_input(), a.path(), SMALL_AS_OF, &[]);
    let capped = run_night(small_input(), b.path(), SMALL_AS_OF, &[("LANEWATCH_ALERTS__MAX_PER_SELLER", "1")]);
    let full = read_parquet(&all.join("alerts.parquet"));
    let kept = read_parquet(&capped.join("alerts.parquet"));
    let rank = |s: &str| ["high", "medium", "low"].iter().position(|x| *x == s).unwrap();
    let risk =
        |df: &DataFrame| -> Vec<f64> { df.column("risk").unwrap().f64().unwrap().iter().map(|v| v.unwrap()).collect() };
    // Per seller in the uncapped run: (alerts, best (severity rank, -risk, shipment)).
    let mut per: BTreeMap<String, (usize, (usize, i64, String))> = BTreeMap::new();
    let (fr, fs, fid) = (risk(&full), strings(&full, "severity"), strings(&full, "shipment_id"));
    for (k, s) in strings(&full, "seller_id").into_iter().enumerate() {
        let key = (rank(&fs[k]), -(fr[k] * 1e9) as i64, fid[k].clone());
        let e = per.entry(s).or_insert((0, key.clone()));
        e.0 += 1;
        if key < e.1 {
            e.1 = key;
        }
    }
    assert!(per.values().any(|p| p.0 > 1), "no seller has two alerts: the cap cannot be seen");
    assert_eq!(kept.height(), per.len());
    let kept_by: HashMap<String, String> =
        strings(&kept, "seller_id").into_iter().zip(strings(&kept, "shipment_id")).collect();
    for (seller, (_, best)) in &per {
        assert_eq!(&kept_by[seller], &best.2, "{seller}: not its most severe, riskiest alert");
    }
    let index = std::fs::read_to_string(capped.join("sellers/index.csv")).unwrap();
    let mut rows = 0;
    for line in index.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        let (seller, alerts, suppressed) = (cells[0], cells[2], cells[3]);
        let n = per[seller].0;
        assert_eq!((alerts, suppressed.parse::<usize>().unwrap()), ("1", n - 1), "{line}");
        rows += 1;
    }
    assert_eq!(rows, per.len());
}

/// `lanewatch import cargo2000` regenerates `sample_data/cargo2000` byte for byte from the shared
/// UCI file, with the command sample_data/README.md gives.
#[test]
fn cargo2000_import_regenerates_the_bundled_sample() {
    let Some(shared) = require_shared() else { return };
    let src = shared.join("data/cargo2000/c2k_data_comma.csv");
    assert!(src.is_file(), "{} is missing", src.display());
    let readme = std::fs::read_to_string(sample_data().join("README.md")).unwrap();
    assert!(readme.contains(
        "lanewatch import cargo2000 --src ../shared/data/cargo2000/c2k_data_comma.csv --out sample_data/cargo2000"
    ));
    let out = tempfile::tempdir().unwrap();
    let o = lanewatch(&["import", "cargo2000", "--src", src.to_str().unwrap(), "--out", out.path().to_str().unwrap()]);
    expect_code(&o, 0);
    let (want, got) = (tree(&sample_data().join("cargo2000")), tree(out.path()));
    let parquet =
        |t: &BTreeMap<String, Vec<u8>>| t.keys().filter(|k| k.ends_with(".parquet")).cloned().collect::<Vec<_>>();
    assert_eq!(parquet(&want), parquet(&got));
    for f in parquet(&want) {
        assert!(want[&f] == got[&f], "sample_data/cargo2000/{f} differs from a fresh import");
    }
}

/// Regression: a short line before `nr` panicked the import (exit 70), an `nr` or a step so
/// large that times overflowed wrapped silently, and the three files were written one by one.
/// Each is bad data now (65), and a refused import leaves the earlier import's files as they were.
#[test]
fn cargo2000_import_refuses_what_would_overflow_or_panic_and_keeps_the_earlier_files() {
    let Some(shared) = require_shared() else { return };
    let text = std::fs::read_to_string(shared.join("data/cargo2000/c2k_data_comma.csv")).unwrap();
    let mut lines = text.lines();
    let (header, first) = (lines.next().unwrap(), lines.next().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let import = |csv: &str| {
        let src = dir.path().join("c2k.csv");
        std::fs::write(&src, csv).unwrap();
        lanewatch(&["import", "cargo2000", "--src", src.to_str().unwrap(), "--out", out.to_str().unwrap()])
    };
    expect_code(&import(&format!("{header}\n{first}\n")), 0);
    let before = tree(&out);
    let cells: Vec<&str> = first.split(',').collect();
    let with = |col: &str, value: &str| {
        let k = header.split(',').position(|h| h == col).unwrap();
        let mut row = cells.clone();
        row[k] = value;
        format!("{header}\n{}\n", row.join(","))
    };
    // `legs` moved before `nr`, in the header and the row alike; then a line holding `legs` only.
    let legs_first = {
        let (mut names, mut row): (Vec<&str>, Vec<&str>) = (header.split(',').collect(), cells.clone());
        let legs = names.iter().position(|h| *h == "legs").unwrap();
        names.swap(0, legs);
        row.swap(0, legs);
        format!("{}\n{}\n1\n", names.join(","), row.join(","))
    };
    let long_place = "P".repeat(510);
    for (what, csv) in [
        ("nr", with("nr", "9223372036854775807")),
        ("i1_rcs_e", with("i1_rcs_e", "9000000000000000")),
        ("a short line", legs_first),
        // Regressions: these wrote inputs that `run` refused (a seller id past 512 bytes, two
        // shipments of one id).
        ("a place longer than an id may be", with("i1_dep_1_place", &long_place)),
        ("one nr twice", format!("{header}\n{first}\n{first}\n")),
    ] {
        let o = import(&csv);
        expect_code(&o, 65);
        assert!(stderr(&o).lines().count() <= 2, "{what}: {}", stderr(&o));
        assert_eq!(tree(&out), before, "{what}: the earlier import's files changed");
        let said = match what {
            "a place longer than an id may be" => "i1_dep_1_place: line 2: a place of 510 bytes (at most 509)",
            "one nr twice" => "nr: line 3: nr 0 again (first on line 2)",
            _ => "",
        };
        assert!(stderr(&o).contains(said), "{what}: {}", stderr(&o));
    }
    // Regression: a byte-order mark (spreadsheets save one) read as "missing column nr" (65).
    expect_code(&import(&format!("\u{feff}{header}\n{first}\n")), 0);
    assert_eq!(tree(&out), before, "the same rows with a byte-order mark import alike");
    // Regression: the latest --start with the longest --days placed scans and promises past
    // 2200 (only each instance's start was kept in range), which `validate` then refused.
    let src = shared.join("data/cargo2000/c2k_data_comma.csv");
    let (src, out_s) = (src.to_str().unwrap(), out.to_str().unwrap());
    let o = lanewatch(&["import", "cargo2000", "--src", src, "--out", out_s, "--start", "2189-12-31", "--days", "3650"]);
    expect_code(&o, 78);
    assert!(stderr(&o).contains("past the 2199-12-31 validation accepts"), "{}", stderr(&o));
    assert_eq!(tree(&out), before, "a refused placement changed the earlier import's files");
    // Regression: a folder given as --src was bad data (65); it is a missing input (66).
    let o = lanewatch(&["import", "cargo2000", "--src", dir.path().to_str().unwrap(), "--out", out.to_str().unwrap()]);
    expect_code(&o, 66);
}

/// The independent contract checks the README cites, on the bundled input and on a run.
#[test]
fn the_shared_contract_checks_pass() {
    let Some(text) = contract(&["input", sample_data().to_str().unwrap()]) else { return };
    assert!(text.contains("contract ok: 20000 shipments"), "{text}");
    let out = tempfile::tempdir().unwrap();
    let run = run_night(small_input(), out.path(), SMALL_AS_OF, &[]);
    let scored = read_parquet(&run.join("scores.parquet")).height();
    let text = contract(&["run", out.path().to_str().unwrap(), SMALL_AS_OF]).unwrap();
    assert!(text.contains(&format!("contract ok: {scored} scored")), "{text}");
}

/// Regression: an alert the per-seller cap cut tonight was written to `recovered.parquet` as
/// back on track, though it still raised an alert. With the cap, the previous night's alerts
/// that recovered are the same as without it.
#[test]
fn alerts_cut_by_the_per_seller_cap_have_not_recovered() {
    let before = date(SMALL_AS_OF).pred_opt().unwrap().to_string();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let listed = run_night(small_input(), a.path(), &before, &[]);
    let uncapped = run_night(small_input(), a.path(), SMALL_AS_OF, &[]);
    run_night(small_input(), b.path(), &before, &[]);
    let capped = run_night(small_input(), b.path(), SMALL_AS_OF, &[("LANEWATCH_ALERTS__MAX_PER_SELLER", "1")]);
    let ids =
        |run: &std::path::Path, file: &str| -> Vec<String> { strings(&read_parquet(&run.join(file)), "shipment_id") };
    let (yesterday, tonight, kept) =
        (ids(&listed, "alerts.parquet"), ids(&uncapped, "alerts.parquet"), ids(&capped, "alerts.parquet"));
    let cut = tonight.iter().filter(|id| yesterday.contains(id) && !kept.contains(id)).count();
    assert!(cut > 0, "no alert of the night before was cut tonight: nothing to see");
    assert_eq!(ids(&capped, "recovered.parquet"), ids(&uncapped, "recovered.parquet"));
}

/// Regression: a night remembered only the alerts the per-seller cap listed, so an alert cut
/// one night lost its `first_alerted_on` when listed again, and one cut and then recovered was
/// never in `recovered.parquet`. The cut alerts are written (`capped_alerts.parquet`) and read
/// back: with the cap, the listed and capped alerts together are the uncapped run's alerts
/// with the same `first_alerted_on`, and every night recovers what the uncapped run recovers.
#[test]
fn alerts_cut_by_the_cap_are_remembered_by_the_next_night() {
    let mut nights = vec![date(SMALL_AS_OF)];
    for _ in 0..3 {
        nights.push(nights.last().unwrap().pred_opt().unwrap());
    }
    nights.reverse();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let firsts = |run: &std::path::Path, file: &str| -> BTreeMap<String, String> {
        let df = read_parquet(&run.join(file));
        let first = df.column("first_alerted_on").unwrap().cast(&DataType::String).unwrap();
        let first: Vec<String> = first.str().unwrap().iter().map(|v| v.unwrap().to_string()).collect();
        strings(&df, "shipment_id").into_iter().zip(first).collect()
    };
    let (mut rotated, mut capped_before) = (0, BTreeMap::new());
    for n in &nights {
        let n = n.to_string();
        let uncapped = run_night(small_input(), a.path(), &n, &[]);
        let capped = run_night(small_input(), b.path(), &n, &[("LANEWATCH_ALERTS__MAX_PER_SELLER", "1")]);
        let (listed, cut) = (firsts(&capped, "alerts.parquet"), firsts(&capped, "capped_alerts.parquet"));
        assert!(!cut.is_empty(), "{n}: the cap cut nothing");
        // Listed again after a night under the cap, first alerted before that night.
        rotated += listed.iter().filter(|(id, first)| capped_before.contains_key(*id) && **first < n).count();
        let mut both = listed.clone();
        both.extend(cut.clone());
        assert_eq!(both.len(), listed.len() + cut.len(), "{n}: an alert both listed and capped");
        assert_eq!(both, firsts(&uncapped, "alerts.parquet"), "{n}: listed and capped alerts against uncapped");
        let ids = |run: &std::path::Path| strings(&read_parquet(&run.join("recovered.parquet")), "shipment_id");
        assert_eq!(ids(&capped), ids(&uncapped), "{n}: recovered");
        capped_before = cut;
    }
    assert!(rotated > 0, "no alert was capped one night and listed the next: nothing to see");
}

/// The version names the build: `--version`, the manifest, the state and the partials carry
/// the fingerprint of the sources built (`src/build.rs`), so what another build kept is not
/// read as this one's (a state kept by an older build is a full refresh, tests/state.rs).
#[test]
fn the_version_carries_the_sources_fingerprint() {
    let o = lanewatch(&["--version"]);
    expect_code(&o, 0);
    let v = lanewatch::night::TOOL_VERSION;
    assert_eq!(stdout(&o).trim_end(), format!("lanewatch {v}"));
    let (package, sources) = v.split_once("+src.").unwrap_or_else(|| panic!("{v}: no sources' fingerprint"));
    assert_eq!(package, env!("CARGO_PKG_VERSION"));
    assert!(sources.len() == 12 && sources.bytes().all(|b| b.is_ascii_hexdigit()), "{v}");
}
