//! The late-risk model: determinism, persistence, fallback, quality on sample_data and the
//! real-data regression on Cargo 2000.

use std::path::Path;

use lanewatch::config::Overrides;
use lanewatch::evaluate;
use lanewatch::features;
use lanewatch::model::{self, SavedModel};
use lanewatch::schema::MICROS_PER_DAY;
use lanewatch::settings::Settings;

use crate::common::*;

fn config(input: &Path, extra: &[(&str, &str)]) -> Settings {
    fast_settings(input, extra)
}

#[test]
fn training_is_deterministic_and_models_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let input = small_input().to_str().unwrap();
    let cfg = fast_config();
    for (m, threads) in [(&a, "1"), (&b, "2")] {
        let o = lanewatch_env(
            &[
                "train",
                "--input",
                input,
                "--as-of",
                SMALL_AS_OF,
                "--model-out",
                m.to_str().unwrap(),
                "--config",
                cfg.to_str().unwrap(),
            ],
            &[("RAYON_NUM_THREADS", threads), ("POLARS_MAX_THREADS", threads)],
        );
        expect_code(&o, 0);
    }
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "model files differ between runs");

    let (sa, sb) = (dir.path().join("sa"), dir.path().join("sb"));
    for out in [&sa, &sb] {
        let o = lanewatch_fast("score", small_input(), out, &["--as-of", SMALL_AS_OF, "--model", a.to_str().unwrap()]);
        expect_code(&o, 0);
    }
    assert_eq!(tree(&sa), tree(&sb));
    let scores = read_parquet(&sa.join("scores.parquet"));
    assert!(scores.height() > 50);

    let m = SavedModel::load(&a).unwrap();
    assert_eq!(m.features, features::feature_names());
    assert_eq!(m.feature_schema_version, features::FEATURE_SCHEMA_VERSION);
    assert_eq!(m.seed, 7);
    assert!(m.metrics.model.is_some());
    assert_eq!(m.window.valid_resolved_before, "2026-09-21");
}

/// The root node of the first tree in a saved estimator's JSON.
fn first_tree_root(v: &mut serde_json::Value) -> Option<&mut serde_json::Value> {
    if v.get("nodes").is_some() {
        return v.get_mut("nodes")?.get_mut(0);
    }
    match v {
        serde_json::Value::Object(m) => m.values_mut().find_map(first_tree_root),
        serde_json::Value::Array(a) => a.iter_mut().find_map(first_tree_root),
        _ => None,
    }
}

#[test]
fn a_model_with_another_feature_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("m.json");
    let input = small_input().to_str().unwrap();
    let cfg = fast_config();
    expect_code(
        &lanewatch(&[
            "train",
            "--input",
            input,
            "--as-of",
            SMALL_AS_OF,
            "--model-out",
            good.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ]),
        0,
    );
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&good).unwrap()).unwrap();
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("version", {
            let mut j = json.clone();
            j["feature_schema_version"] = serde_json::json!(features::FEATURE_SCHEMA_VERSION + 1);
            j
        }),
        ("order", {
            let mut j = json.clone();
            j["features"].as_array_mut().unwrap().swap(0, 1);
            j
        }),
        ("missing", {
            let mut j = json.clone();
            j["features"].as_array_mut().unwrap().pop();
            j
        }),
        ("garbage", serde_json::json!({"hello": "world"})),
        // Regression: a tree whose root's right child is the root looped forever on the first
        // row scored; one reading a feature past the last panicked (exit 70).
        ("loop", {
            let mut j = json.clone();
            let root = first_tree_root(&mut j["estimator"]).expect("the chosen model is a tree ensemble");
            root["right"] = serde_json::json!(0);
            j
        }),
        ("feature", {
            let mut j = json.clone();
            let root = first_tree_root(&mut j["estimator"]).unwrap();
            root["feature"] = serde_json::json!(features::N_FEATURES);
            j
        }),
        ("logistic", {
            let mut j = json.clone();
            j["baseline_models"]["simple_logistic"]["estimator"]["mean"].as_array_mut().unwrap().pop();
            j
        }),
        ("probability", {
            let mut j = json.clone();
            j["baseline_models"]["lane_rule"]["estimator"]["p_fired"] = serde_json::json!(1.5);
            j
        }),
    ];
    for (name, j) in cases {
        let bad = dir.path().join(format!("{name}.json"));
        std::fs::write(&bad, serde_json::to_vec(&j).unwrap()).unwrap();
        let out = dir.path().join(format!("out-{name}"));
        let o = lanewatch(&[
            "score",
            "--input",
            input,
            "--as-of",
            SMALL_AS_OF,
            "--model",
            bad.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        expect_code(&o, 65);
        assert!(stderr(&o).contains(bad.file_name().unwrap().to_str().unwrap()), "{}", stderr(&o));
        assert!(!out.join("scores.parquet").exists());
    }
    // A folder where the model should be is a missing model (66), as a missing file is
    // (regression: it was bad data, 65).
    for model in [dir.path().to_path_buf(), dir.path().join("nope.json")] {
        let out = dir.path().join("out-missing");
        let args = ["score", "--input", input, "--as-of", SMALL_AS_OF, "--model", model.to_str().unwrap()];
        let o = lanewatch(&[&args[..], &["--out", out.to_str().unwrap()]].concat());
        expect_code(&o, 66);
    }
}

#[test]
fn tiny_or_single_class_data_falls_back_to_the_lane_rule() {
    // 60 shipments: too few training rows for a fitted model.
    let dir = tempfile::tempdir().unwrap();
    lanewatch::generate::generate(&lanewatch::generate::GenerateParams::new(60, 1, date("2026-06-01"), 60), dir.path())
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = lanewatch(&[
        "run",
        "--input",
        dir.path().to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--as-of",
        "2026-07-20",
    ]);
    expect_code(&o, 0);
    let run = out.path().join("as_of=2026-07-20");
    let metrics: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["chosen_model"], "lane_rule");
    assert!(metrics["fallback"].as_str().unwrap().contains("training rows"), "{}", metrics["fallback"]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["model"]["kind"], "lane_rule");
    assert!(
        manifest["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("lane-quantile rule"))
    );
    // And logged, as every warning the manifest lists is.
    assert!(
        stderr(&o).lines().any(|l| l.contains("WARN") && l.contains("fell back to the lane-quantile rule")),
        "{}",
        stderr(&o)
    );

    // Every shipment on time: one class only.
    let s = config(small_input(), &[]);
    let clean = load(&s);
    let mut fs = features::build(&clean, &s.features, night(SMALL_AS_OF)).unwrap();
    fs.train.label.iter_mut().for_each(|l| *l = false);
    let m = model::train(&fs, &s.model).unwrap();
    assert_eq!(m.kind, "lane_rule");
    assert!(m.metrics.fallback.as_ref().unwrap().contains("0 late"));
    let risk = m.predict(&fs.score);
    assert!(risk.iter().all(|r| r.is_finite() && (0.0..=1.0).contains(r)));

    // Regression: too few rows of a class in the whole history (both classes in the validation
    // window). The saved rule is fitted on every labelled row read, the validation rows too, so
    // its reported metrics are the rule fitted on the training rows alone, out of sample (the
    // lane-rule baseline's), not the saved rule scored on rows it has seen.
    let s = config(small_input(), &[("LANEWATCH_MODEL__MIN_CLASS_ROWS", "1000000")]);
    let fs = features::build(&clean, &s.features, night(SMALL_AS_OF)).unwrap();
    let m = model::train(&fs, &s.model).unwrap();
    assert_eq!(m.kind, "lane_rule");
    assert!(m.metrics.fallback.as_ref().unwrap().contains("min_class_rows"), "{:?}", m.metrics.fallback);
    let (model, rule) = (m.metrics.model.as_ref().unwrap(), &m.metrics.baselines["lane_rule"]);
    assert!(m.metrics.valid_late_rate > 0.0 && m.metrics.valid_late_rate < 1.0);
    assert_eq!((model.brier, model.log_loss), (rule.brier, rule.log_loss));
}

/// On the bundled sample the chosen model beats both baselines on PR-AUC.
#[test]
fn chosen_model_beats_baselines_on_sample_data() {
    let s = settings_with(
        Some(&repo().join("pipelines/sample.toml")),
        &[],
        Overrides { input: Some(sample_data()), ..Default::default() },
    );
    let clean = load(&s);
    let fs = features::build(&clean, &s.features, s.night().unwrap()).unwrap();
    let m = model::train(&fs, &s.model).unwrap();
    let chosen = m.metrics.model.as_ref().unwrap();
    let rule = &m.metrics.baselines["lane_rule"];
    let base = &m.metrics.baselines["base_rate"];
    eprintln!(
        "sample_data: chosen {} pr_auc {:.3} roc_auc {:.3} brier {:.4}; lane_rule pr_auc {:.3}; base_rate pr_auc {:.3}; n_train {} n_valid {}",
        m.kind,
        chosen.pr_auc,
        chosen.roc_auc,
        chosen.brier,
        rule.pr_auc,
        base.pr_auc,
        m.metrics.n_train,
        m.metrics.n_valid
    );
    assert!(m.metrics.fallback.is_none());
    // Measured (2026-11-30, seed 42): chosen logistic pr_auc 0.492, roc_auc 0.838, brier 0.0763;
    // lane rule pr_auc 0.230; base rate 0.113. Floors sit about 10 % below the measurement, so a
    // real regression trips them and the seeded, deterministic run never does.
    assert!(chosen.pr_auc >= 0.44, "pr_auc {:.3} below the 0.44 floor (measured 0.492)", chosen.pr_auc);
    assert!(chosen.roc_auc >= 0.75, "roc_auc {:.3} below the 0.75 floor (measured 0.838)", chosen.roc_auc);
    assert!(chosen.pr_auc > rule.pr_auc + 0.1, "model {} vs rule {}", chosen.pr_auc, rule.pr_auc);
    assert!(chosen.pr_auc > base.pr_auc + 0.2);
    assert!(chosen.brier < base.brier);
    // Calibrated: the mean risk on the validation window is close to the late rate.
    let bins = &m.metrics.calibration_bins;
    let n: u64 = bins.iter().map(|b| b.n).sum();
    let mean: f64 = bins.iter().filter_map(|b| b.mean_predicted.map(|p| p * b.n as f64)).sum::<f64>() / n as f64;
    assert!(
        (mean - m.metrics.valid_late_rate).abs() < 0.03,
        "mean risk {mean} vs late rate {}",
        m.metrics.valid_late_rate
    );
}

/// Real air-freight data: the model must separate late from on-time shipments mid-process.
/// Measured (2026-11-30): AUC 0.640 at booking, 0.683 at 25 %, 0.764 at 50 %, 0.797 at 75 % of
/// the planned process; validation roc_auc 0.774. Floors are about 10 % below.
#[test]
fn cargo2000_regression() {
    let input = sample_data().join("cargo2000");
    let s = config(
        &input,
        &[
            ("LANEWATCH_MODEL__MAX_TRAIN_ROWS", "40000"),
            ("LANEWATCH_MODEL__FOREST_TREES", "24"),
            ("LANEWATCH_MODEL__FOREST_MAX_DEPTH", "8"),
        ],
    );
    let as_of = date("2026-05-20");
    let clean = load(&s);
    let fs = features::build(&clean, &s.features, lanewatch::calendar::Night::new(as_of)).unwrap();
    let m = model::train(&fs, &s.model).unwrap();
    let from = fs.cutoff() - s.model.holdout_days as i64 * MICROS_PER_DAY;
    let mut results = Vec::new();
    for frac in [0.0, 0.25, 0.5, 0.75] {
        let (auc, n, late) = evaluate::auc_at_fraction(&fs, &m, from, frac);
        eprintln!(
            "cargo2000: {} model, AUC at {:.0}% of the planned process: {auc:.3} ({n} shipments, {late} late)",
            m.kind,
            frac * 100.0
        );
        results.push((frac, auc, n));
    }
    let v = m.metrics.model.as_ref().unwrap();
    eprintln!("cargo2000: validation roc_auc {:.3} pr_auc {:.3} (base rate {:.3})", v.roc_auc, v.pr_auc, v.base_rate);
    let at = |f: f64| results.iter().find(|r| r.0 == f).unwrap();
    assert!(at(0.5).2 > 200, "too few shipments scored mid-process");
    assert!(at(0.0).1 >= 0.58, "AUC at booking {:.3} below the 0.58 floor (measured 0.640)", at(0.0).1);
    assert!(at(0.25).1 >= 0.61, "AUC at a quarter {:.3} below the 0.61 floor (measured 0.683)", at(0.25).1);
    assert!(at(0.5).1 >= 0.69, "AUC at half the process {:.3} below the 0.69 floor (measured 0.764)", at(0.5).1);
    assert!(at(0.75).1 >= 0.72, "AUC at three quarters {:.3} below the 0.72 floor (measured 0.797)", at(0.75).1);
    assert!(v.roc_auc >= 0.70, "validation roc_auc {:.3} below the 0.70 floor (measured 0.774)", v.roc_auc);
}

/// Training once for a sharded night: the parts that computed the features
/// (`features::parted`) offer their first rows of each kind the sample draws, with the whole
/// network's sample sizes, and their validation rows (`model::parts`); the model trained on
/// their union is the whole network's, byte for byte, for 1, 2, 3 and 7 parts and a part owning
/// nothing. The samples are
/// cut (a 1,500-row training cap, 400 validation rows), so the parts' first rows are not all
/// taken, and the validation window is sampled; with a cap above four times the late rows, every
/// late row is taken and on-time rows three times as many, a part's share of which follows the
/// whole network's counts, not its own. The larger input has more training rows than the rule
/// baseline's uniform sample takes.
#[test]
fn a_model_trained_on_what_the_parts_offer_is_the_whole_networks_model() {
    use lanewatch::calendar::Night;
    use lanewatch::shard::Shard;
    let cut = [("LANEWATCH_MODEL__MAX_TRAIN_ROWS", "1500"), ("LANEWATCH_MODEL__MAX_VALID_ROWS", "400")];
    let per_late = [("LANEWATCH_MODEL__MAX_TRAIN_ROWS", "400000")];
    // More training rows than the rule baseline's uniform sample (50,000), which otherwise
    // takes every row a part has.
    let medium = fixture("medium", |dir| {
        lanewatch::generate::generate(
            &lanewatch::generate::GenerateParams::new(40_000, 5, date("2026-06-01"), 120),
            dir,
        )
        .unwrap();
    });
    let cases: [(std::path::PathBuf, &str, &[(&str, &str)]); 4] = [
        (small_input().to_path_buf(), SMALL_AS_OF, &cut),
        (sample_data(), "2026-11-14", &cut),
        (medium.clone(), SMALL_AS_OF, &cut),
        (medium, SMALL_AS_OF, &per_late),
    ];
    for (input, as_of, env) in cases {
        let s = fast_settings(&input, env);
        let clean = load(&s);
        let night = Night::new(date(as_of));
        let fs = features::build(&clean, &s.features, night).unwrap();
        let whole = model::train(&fs, &s.model).unwrap();
        assert!(whole.metrics.fallback.is_none(), "the whole network's model fell back to the rule");
        assert!(fs.train.len() > 4 * whole.metrics.n_train_sampled as usize / 3, "the sample takes nearly every row");
        eprintln!(
            "{}: {} training rows, {} sampled",
            input.display(),
            whole.metrics.n_train,
            whole.metrics.n_train_sampled
        );
        let whole = serde_json::to_string(&whole).unwrap();
        for n in [1, 2, 3, 7] {
            let mut parts: Vec<_> = (0..n).map(|index| clean.part(Shard { index, count: n }).unwrap()).collect();
            // A part owning nothing offers nothing.
            parts.push(lanewatch::validate::CleanInput {
                shipments: clean.shipments.head(Some(0)),
                events: clean.events.prefixes(&[]),
            });
            let sets = features::parted::build_parts(parts, &s.features, night, false).unwrap();
            let parted = model::parts::train_parts(&sets, &s.model).unwrap();
            assert!(serde_json::to_string(&parted).unwrap() == whole, "the model of {n} parts on {}", input.display());
        }
    }
}
