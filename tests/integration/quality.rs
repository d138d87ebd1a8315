//! Predictions on histories of other shapes: adaptive windows, few milestones, the boosted
//! trees, the simple-model floor.

use std::path::Path;

use lanewatch::generate::{GenerateParams, Profile, generate};

use crate::common::*;

fn metrics(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("metrics.json")).unwrap()).unwrap()
}

fn profile_input(profile: Profile, shipments: usize, days: u32, start: &str, seed: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = GenerateParams { profile, ..GenerateParams::new(shipments, seed, date(start), days) };
    generate(&p, dir.path()).unwrap();
    dir
}

/// About 30 shipments a month for three years, weeks to months of transit: the fixed 120-day
/// training and 21-day validation windows hold too few rows and fall back to the rule; the
/// adaptive windows reach back and fit a model. Both sides of the line, on the same history.
#[test]
fn a_sparse_history_is_modelled_not_ruled() {
    let input = profile_input(Profile::Sparse, 1100, 1095, "2023-01-01", 4);
    let as_of = "2025-11-15";
    // Fixed windows: nothing may reach past 120 days.
    let fixed = tempfile::tempdir().unwrap();
    let run = run_night(
        input.path(),
        fixed.path(),
        as_of,
        &[("LANEWATCH_LANES__MAX_WINDOW_DAYS", "120"), ("LANEWATCH_MODEL__MIN_VALID_SHIPMENTS", "0")],
    );
    let m = metrics(&run);
    assert_eq!(m["chosen_model"], "lane_rule", "{}", m["fallback"]);
    assert!(m["n_train"].as_u64().unwrap() < 200, "fixed windows hold {} rows", m["n_train"]);
    // Adaptive windows (the defaults).
    let adaptive = tempfile::tempdir().unwrap();
    let run = run_night(input.path(), adaptive.path(), as_of, &[]);
    let m = metrics(&run);
    assert!(m["fallback"].is_null(), "{}", m["fallback"]);
    assert_ne!(m["chosen_model"], "lane_rule");
    let w = &m["windows"];
    assert!(w["training_days"].as_u64().unwrap() > 120, "{w}");
    assert!(w["validation_days"].as_u64().unwrap() > 21, "{w}");
    assert!(w["validation_shipments"].as_u64().unwrap() >= 100, "{w}");
    assert!(w["lane_days_max"].as_f64().unwrap() > 90.0, "{w}");
    // The windows are also in the manifest and the report.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["model"]["windows"], m["windows"]);
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains(&format!("validation: resolved in the last {} days", w["validation_days"])));
}

/// A history with only CREATED, PICKED_UP and DELIVERED: the stage features the feed cannot
/// support are missing, not zero, and the model still beats the lane rule and the floor.
#[test]
fn a_few_milestone_history_is_first_class() {
    let input = profile_input(Profile::FewMilestones, 6000, 150, "2026-01-01", 5);
    let out = tempfile::tempdir().unwrap();
    let as_of = "2026-05-10";
    let run = run_night(input.path(), out.path(), as_of, &[]);
    let m = metrics(&run);
    assert!(m["fallback"].is_null(), "{}", m["fallback"]);
    let model = m["model"]["pr_auc"].as_f64().unwrap();
    let rule = m["baselines"]["lane_rule"]["pr_auc"].as_f64().unwrap();
    assert!(model > rule + 0.05, "model {model} vs lane rule {rule}");
    assert!(m["floor"]["beaten"].as_bool().unwrap(), "{}", m["floor"]);
    let lanes = read_parquet(&run.join("lanes.parquet"));
    let tracked: Vec<i32> = lanes.column("milestones_tracked").unwrap().i32().unwrap().into_no_null_iter().collect();
    assert!(tracked.iter().all(|&t| t == 3), "{tracked:?}");
    // Stages the feed never reports have unknown statistics, not made-up ones; the two it
    // does (handling, and pickup to delivery) are known.
    let col = |c: &str| -> Vec<f64> { lanes.column(c).unwrap().f64().unwrap().into_no_null_iter().collect() };
    for stage in ["export", "linehaul", "import", "last_mile"] {
        assert!(col(&format!("{stage}_p90_days")).iter().all(|v| v.is_nan()), "{stage} has made-up dwell");
    }
    for stage in ["handling", "origin"] {
        assert!(col(&format!("{stage}_p90_days")).iter().all(|v| v.is_finite()), "{stage} dwell unknown");
    }
}

/// The boosted trees alone: the same run at one and two threads writes the same bytes, and the
/// saved model scores exactly as the run did.
#[test]
fn boosted_trees_are_deterministic_and_round_trip() {
    let env = [("LANEWATCH_MODEL__CANDIDATES", "[\"gbdt\"]")];
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = fast_config();
    for (out, n) in [(&a, "1"), (&b, "2")] {
        let args = [
            "run",
            "--input",
            small_input().to_str().unwrap(),
            "--out",
            out.path().to_str().unwrap(),
            "--as-of",
            SMALL_AS_OF,
            "--config",
            cfg.to_str().unwrap(),
        ];
        let o = lanewatch_env(&args, &[env[0], ("RAYON_NUM_THREADS", n), ("POLARS_MAX_THREADS", n)]);
        expect_code(&o, 0);
    }
    let night = format!("as_of={SMALL_AS_OF}");
    assert_same_run(&a.path().join(&night), &b.path().join(&night));
    let m = metrics(&a.path().join(&night));
    assert_eq!(m["chosen_model"], "gbdt");
    // The saved model, loaded back, gives the run's scores.
    let scored = tempfile::tempdir().unwrap();
    let model = a.path().join(&night).join("model.json");
    let o = lanewatch(&[
        "score",
        "--input",
        small_input().to_str().unwrap(),
        "--as-of",
        SMALL_AS_OF,
        "--model",
        model.to_str().unwrap(),
        "--out",
        scored.path().to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    expect_code(&o, 0);
    let risk = |p: &Path| -> Vec<u64> {
        read_parquet(p).column("risk").unwrap().f64().unwrap().into_no_null_iter().map(f64::to_bits).collect()
    };
    assert_eq!(risk(&a.path().join(&night).join("scores.parquet")), risk(&scored.path().join("scores.parquet")));
}

/// The floor is measured every night: the simple logistic regression is a baseline in
/// metrics.json, and the report says whether the model beat it.
#[test]
fn the_simple_model_floor_is_reported() {
    let out = tempfile::tempdir().unwrap();
    let run = run_night(small_input(), out.path(), SMALL_AS_OF, &[]);
    let m = metrics(&run);
    let simple = &m["baselines"]["simple_logistic"];
    assert!(simple["pr_auc"].as_f64().unwrap() > m["baselines"]["base_rate"]["pr_auc"].as_f64().unwrap());
    assert_eq!(m["floor"]["baseline"], "simple_logistic");
    assert_eq!(m["floor"]["baseline_pr_auc"], simple["pr_auc"]);
    let beaten = m["floor"]["beaten"].as_bool().unwrap();
    assert_eq!(beaten, m["model"]["pr_auc"].as_f64().unwrap() > simple["pr_auc"].as_f64().unwrap());
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains(if beaten { "simple-model floor</td><td>beaten" } else { "NOT beaten" }));
    // Forcing a weak model shows the warning.
    let weak = tempfile::tempdir().unwrap();
    let run = run_night(
        small_input(),
        weak.path(),
        SMALL_AS_OF,
        &[("LANEWATCH_MODEL__CANDIDATES", "[\"tree\"]"), ("LANEWATCH_MODEL__TREE_MAX_DEPTH", "1")],
    );
    let m = metrics(&run);
    assert!(!m["floor"]["beaten"].as_bool().unwrap(), "a stump beat the floor: {}", m["floor"]);
    assert!(manifest_warnings(&run).iter().any(|w| w.contains("does not beat the simple logistic floor")));
}

/// Regression: at a 500k-row training cap linfa-trees panicked ("assertion failed: n_samples >
/// 0.0") and took the whole night down with exit 70. A candidate whose fit fails is now left
/// out of the choice, named in metrics.json and the manifest; only when every candidate fails
/// does the night fail.
#[test]
fn regression_a_failing_candidate_is_left_out_not_fatal() {
    let out = tempfile::tempdir().unwrap();
    let run = run_night(small_input(), out.path(), SMALL_AS_OF, &[("LANEWATCH_FAULT", "panic:fit:forest")]);
    let m = metrics(&run);
    assert!(
        m["failed_candidates"]["forest"].as_str().unwrap().contains("injected fault"),
        "{}",
        m["failed_candidates"]
    );
    assert!(m["candidates"].get("forest").is_none());
    assert_ne!(m["chosen_model"], "forest");
    assert!(manifest_warnings(&run).iter().any(|w| w.contains("model candidate forest failed")));
    // The simple-logistic floor's fit too: the night goes on without a floor.
    let out = tempfile::tempdir().unwrap();
    let run = run_night(small_input(), out.path(), SMALL_AS_OF, &[("LANEWATCH_FAULT", "panic:fit:simple_logistic")]);
    let m = metrics(&run);
    assert!(m["failed_candidates"]["simple_logistic"].as_str().unwrap().contains("injected fault"));
    assert!(m["baselines"].get("simple_logistic").is_none() && m["floor"].is_null(), "{}", m["floor"]);
    assert!(manifest_warnings(&run).iter().any(|w| w.contains("simple logistic floor failed to fit")));
    let all = "panic:fit:logistic,panic:fit:tree,panic:fit:forest,panic:fit:gbdt";
    let out = tempfile::tempdir().unwrap();
    let o =
        lanewatch_fast_env("run", small_input(), out.path(), &["--as-of", SMALL_AS_OF], &[("LANEWATCH_FAULT", all)]);
    expect_code(&o, 70);
    assert!(stderr(&o).contains("every model candidate failed"), "{}", stderr(&o));
}

/// The pooled evaluation: the model's risk and each baseline's, on every in-flight shipment
/// before its promise, every night, against final outcomes.
#[test]
fn the_pooled_evaluation_scores_model_and_baselines() {
    let out = tempfile::tempdir().unwrap();
    let o = lanewatch_fast(
        "evaluate",
        small_input(),
        out.path(),
        &["--from", "2026-08-20", "--to", "2026-09-19", "--every", "6"],
    );
    expect_code(&o, 0);
    assert!(stdout(&o).contains("pooled point-in-time evaluation"), "{}", stdout(&o));
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("backtest.json")).unwrap()).unwrap();
    let p = &j["pooled"];
    assert_eq!(p["nights"], 6);
    assert!(p["rows"].as_u64().unwrap() > 500 && p["late"].as_u64().unwrap() > 20, "{p}");
    for name in ["model", "base_rate", "lane_rule", "simple_logistic"] {
        let s = &p["scores"][name];
        assert!(s["pr_auc"].as_f64().is_some() && !s["calibration"].as_array().unwrap().is_empty(), "{name}: {s}");
    }
    let model = p["scores"]["model"]["pr_auc"].as_f64().unwrap();
    for name in ["base_rate", "lane_rule", "simple_logistic"] {
        assert!(model > p["scores"][name]["pr_auc"].as_f64().unwrap(), "the model is below {name}: {p}");
    }
    let html = std::fs::read_to_string(out.path().join("backtest.html")).unwrap();
    assert!(html.contains("Pooled point-in-time evaluation"));
}
