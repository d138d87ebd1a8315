//! Real feeds as they come: status vocabularies and the carrier's own estimate.

use std::path::Path;

use lanewatch::config::InputConfig;
use lanewatch::generate::{GenerateParams, generate, in_vocabulary};
use lanewatch::schema;
use lanewatch::statuses::Vocabulary;
use polars::prelude::*;

use crate::common::*;

const AS_OF: &str = "2026-09-20";

fn history(dir: &Path, vocabulary: Option<&str>, carrier_estimates: bool) {
    let p = GenerateParams {
        vocabulary: vocabulary.map(str::to_string),
        carrier_estimates,
        ..GenerateParams::new(3000, 11, date("2026-06-01"), 120)
    };
    generate(&p, dir).unwrap();
}

/// What a preset makes of each status the generator writes in its vocabulary, as canonical
/// names: the canonical history a vendor feed describes.
fn collapsed(vocabulary: &str, canonical: &str) -> String {
    let v =
        Vocabulary::from_config(&InputConfig { status_preset: vocabulary.into(), ..InputConfig::default() }).unwrap();
    let status: &'static str = Box::leak(canonical.to_string().into_boxed_str());
    let written = in_vocabulary(Some(vocabulary), status).unwrap();
    match v.resolve(written) {
        Some(c) if c == schema::UNKNOWN_STATUS => "SCAN".to_string(),
        Some(c) => schema::status_name(c).to_string(),
        None => written.to_string(),
    }
}

/// A history written in each preset's vocabulary gives the outputs of the same history in
/// canonical statuses. UPU EMSEVT can say every status the generator uses, so the canonical
/// history is the generator's own; AfterShip cannot tell an origin hub, export clearance or
/// departure from other in-transit scans, so its canonical twin is the history as the preset
/// reads it.
#[test]
fn each_presets_vocabulary_gives_the_canonical_outputs() {
    for vocabulary in ["upu-emsevt", "aftership"] {
        let (canon, vendor) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        history(canon.path(), None, false);
        history(vendor.path(), Some(vocabulary), false);
        // The canonical twin: each status as the preset reads the vocabulary's word for it.
        let path = canon.path().join("events.parquet");
        let mut ev = read_parquet(&path);
        let twin: Vec<String> =
            ev.column("status").unwrap().str().unwrap().iter().map(|s| collapsed(vocabulary, s.unwrap())).collect();
        let changed = ev
            .column("status")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .zip(&twin)
            .filter(|(a, b)| a.unwrap() != b.as_str() && a.unwrap() != "IN_TRANSIT")
            .count();
        if vocabulary == "upu-emsevt" {
            assert_eq!(changed, 0, "UPU EMSEVT should express every canonical status");
        } else {
            assert!(changed > 1000, "AfterShip collapses the origin-side milestones");
        }
        ev.with_column(Column::new("status".into(), twin)).unwrap();
        write_parquet(&mut ev, &path);
        let vendor_statuses = read_parquet(&vendor.path().join("events.parquet"));
        assert!(vendor_statuses.column("status").unwrap().str().unwrap().iter().all(|s| {
            let s = s.unwrap();
            schema::status_code(s) == schema::UNKNOWN_STATUS || s == "IN_TRANSIT"
        }));

        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // The twin's "SCAN" is a status mapped to a generic scan, as the preset maps it.
        let ra = run_night(canon.path(), a.path(), AS_OF, &[("LANEWATCH_INPUT__STATUSES__SCAN", "SCAN")]);
        let rb = run_night(vendor.path(), b.path(), AS_OF, &[("LANEWATCH_INPUT__STATUS_PRESET", vocabulary)]);
        assert_same_data(&ra, &rb, vocabulary);
        // Without the preset the same feed is mostly generic scans: another result.
        let c = tempfile::tempdir().unwrap();
        let rc = run_night(vendor.path(), c.path(), AS_OF, &[]);
        assert_ne!(data_files(&ra)["scores.parquet"], data_files(&rc)["scores.parquet"]);
    }
}

/// A preset extended and overridden by the config: an override wins over the preset's
/// judgement, a prefix key maps a family, and the validation report no longer lists them.
#[test]
fn a_preset_can_be_extended_and_overridden() {
    let dir = tempfile::tempdir().unwrap();
    history(dir.path(), Some("aftership"), false);
    // A carrier's own texts beside the AfterShip tags.
    let path = dir.path().join("events.parquet");
    let mut ev = read_parquet(&path);
    let statuses: Vec<String> = ev
        .column("status")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, s)| if i % 17 == 0 { format!("HUB-SCAN-{}", i % 5) } else { s.unwrap().to_string() })
        .collect();
    ev.with_column(Column::new("status".into(), statuses)).unwrap();
    write_parquet(&mut ev, &path);
    let validate = |config: &str| -> serde_json::Value {
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, config).unwrap();
        validate_json(dir.path(), &cfg)
    };
    let unmapped = |v: &serde_json::Value| -> Vec<String> {
        v["unmapped_statuses"].as_array().unwrap().iter().map(|u| u["status"].as_str().unwrap().to_string()).collect()
    };
    let plain = validate("[input]\nstatus_preset = \"aftership\"\n");
    assert!(unmapped(&plain).iter().any(|s| s.starts_with("HUB-SCAN-")), "{plain}");
    let extended = validate(
        "[input]\nstatus_preset = \"aftership\"\n[input.statuses]\n\"hub-scan-*\" = \"SCAN\"\nInTransit_005 = \"IMPORT_CLEARED\"\n",
    );
    assert!(unmapped(&extended).is_empty(), "{extended}");
    // The override changes what InTransit_005 means, and so the outputs.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ra = run_night(dir.path(), a.path(), AS_OF, &[("LANEWATCH_INPUT__STATUS_PRESET", "aftership")]);
    let cfg = dir.path().join("override.toml");
    let mut text = std::fs::read_to_string(fast_config()).unwrap();
    text.push_str("\n[input]\nstatus_preset = \"aftership\"\n[input.statuses]\nInTransit_005 = \"IMPORT_CLEARED\"\n");
    std::fs::write(&cfg, text).unwrap();
    let o = lanewatch(&[
        "run",
        "--input",
        dir.path().to_str().unwrap(),
        "--out",
        b.path().to_str().unwrap(),
        "--as-of",
        AS_OF,
        "--config",
        cfg.to_str().unwrap(),
    ]);
    expect_code(&o, 0);
    let rb = b.path().join(format!("as_of={AS_OF}"));
    assert_ne!(data_files(&ra)["lanes.parquet"], data_files(&rb)["lanes.parquet"]);
    // A bad target is a config error naming the key.
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[input.statuses]\nEMX = \"ARRIVING\"\n").unwrap();
    let o = lanewatch(&["validate", "--input", dir.path().to_str().unwrap(), "--config", cfg.to_str().unwrap()]);
    expect_code(&o, 78);
    assert!(stderr(&o).contains("EMX") && stderr(&o).contains("ARRIVING"), "{}", stderr(&o));
}

/// Unmapped statuses are reported with counts, when they were seen and the milestones around
/// them, and `--suggest-statuses` prints a TOML snippet that, pasted, maps them.
#[test]
fn unmapped_statuses_come_with_a_snippet_to_paste() {
    let dir = tempfile::tempdir().unwrap();
    history(dir.path(), None, false);
    let o = lanewatch(&["validate", "--input", dir.path().to_str().unwrap(), "--format", "json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let u = &v["unmapped_statuses"][0];
    assert_eq!(u["status"], "IN_TRANSIT");
    assert!(u["count"].as_u64().unwrap() > 100);
    assert_eq!((u["after"].as_str().unwrap(), u["before"].as_str().unwrap()), ("DEPARTED", "ARRIVED"), "{u}");
    assert!(u["first_seen"].as_str().unwrap() < u["last_seen"].as_str().unwrap());
    let o = lanewatch(&["validate", "--input", dir.path().to_str().unwrap(), "--suggest-statuses"]);
    expect_code(&o, 0);
    let snippet = stdout(&o);
    assert!(snippet.contains("[input.statuses]") && snippet.contains("\"IN_TRANSIT\" = \"SCAN\""), "{snippet}");
    assert!(snippet.contains("most often between DEPARTED and ARRIVED"), "{snippet}");
    // Pasted into a config, the snippet parses and leaves nothing unmapped.
    let cfg = dir.path().join("pasted.toml");
    std::fs::write(&cfg, &snippet).unwrap();
    let v = validate_json(dir.path(), &cfg);
    assert!(v["unmapped_statuses"].as_array().unwrap().is_empty(), "{v}");

    // Regression: where a status occurs outweighs its words for an ending. One whose words say
    // delivered but which a milestone mostly follows was suggested DELIVERED, which pasted
    // would have closed every parcel in flight at that scan.
    let path = dir.path().join("events.parquet");
    let mut ev = read_parquet(&path);
    let renamed = ev
        .column("status")
        .unwrap()
        .str()
        .unwrap()
        .apply(|s| s.map(|s| s.replace("IN_TRANSIT", "Delivered to Frankfurt").into()));
    ev.replace("status", renamed.into_column()).unwrap();
    write_parquet(&mut ev, &path);
    let o = lanewatch(&["validate", "--input", dir.path().to_str().unwrap(), "--format", "json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let u = &v["unmapped_statuses"][0];
    assert_eq!(
        (u["status"].as_str().unwrap(), u["suggestion"].as_str().unwrap()),
        ("Delivered to Frankfurt", "SCAN"),
        "{u}"
    );
    assert!(u["reason"].as_str().unwrap().contains("milestone mostly follows"), "{u}");
}

/// The carrier's estimate is point-in-time: estimates on scans at or after the cutoff (even an
/// estimate re-issued at the cutoff instant) change no feature, bit for bit; one a microsecond
/// before it does.
#[test]
fn carrier_estimates_after_the_cutoff_never_reach_features() {
    let dir = tempfile::tempdir().unwrap();
    history(dir.path(), None, true);
    let cutoff = night(AS_OF).cutoff();
    let base = features(dir.path());
    let f = read_parquet(&dir.path().join("events.parquet"));
    assert!(f.column("carrier_estimated_delivery_at").unwrap().null_count() < f.height());
    // An in-flight shipment gets new estimates: at the cutoff and after it, and (separately)
    // one a microsecond before.
    let id = in_flight(dir.path());
    let with = |extra: &[(i64, i64)]| -> tempfile::TempDir {
        let d = copy_input(dir.path());
        let path = d.path().join("events.parquet");
        let ev = read_parquet(&path);
        let n = extra.len();
        let more = DataFrame::new(
            n,
            vec![
                Column::new("shipment_id".into(), vec![id.as_str(); n]),
                lanewatch::io::ts_column_req("event_time", extra.iter().map(|e| e.0).collect()),
                Column::new("status".into(), vec!["IN_TRANSIT"; n]),
                Column::new("location".into(), vec![Some("x"); n]),
                lanewatch::io::ts_column("carrier_estimated_delivery_at", extra.iter().map(|e| Some(e.1)).collect()),
            ],
        )
        .unwrap();
        let names: Vec<String> = ev.get_column_names().iter().map(|c| c.to_string()).collect();
        let mut all = ev.vstack(&more.select(names).unwrap()).unwrap();
        write_parquet(&mut all, &path);
        d
    };
    let day = 86_400_000_000i64;
    let late = with(&[(cutoff, cutoff + 30 * day), (cutoff + 2 * day, cutoff + 40 * day)]);
    assert_eq!(features(late.path()), base, "an estimate at or after the cutoff reached the features");
    let early = with(&[(cutoff - 1, cutoff + 30 * day)]);
    assert_ne!(features(early.path())["features.parquet"], base["features.parquet"], "the edge estimate was not seen");
}

/// Every file `lanewatch features` writes for the night `AS_OF` of `input`.
fn features(input: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let out = tempfile::tempdir().unwrap();
    expect_code(&lanewatch_fast("features", input, out.path(), &["--as-of", AS_OF]), 0);
    tree(out.path())
}

/// A shipment in flight at `AS_OF` in `input` (the first its night scores).
fn in_flight(input: &Path) -> String {
    let out = tempfile::tempdir().unwrap();
    let run = run_night(input, out.path(), AS_OF, &[]);
    let scores = read_parquet(&run.join("scores.parquet"));
    scores.column("shipment_id").unwrap().str().unwrap().get(0).unwrap().to_string()
}

/// `lanewatch validate --format json` on `input` with `config`, which must succeed.
fn validate_json(input: &Path, config: &Path) -> serde_json::Value {
    let o = lanewatch(&[
        "validate",
        "--input",
        input.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--format",
        "json",
    ]);
    expect_code(&o, 0);
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Carrier estimates outside 1990..2200 (a 1970 placeholder for "none", a value near the
/// type's minimum, one in 2300) are read as no estimate: the features are those of the same
/// scans without an estimate, and validation warns with their count.
#[test]
fn implausible_carrier_estimates_are_read_as_none_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    history(dir.path(), None, true);
    let cutoff = night(AS_OF).cutoff();
    let id = in_flight(dir.path());
    // Two scans of an in-flight shipment before the cutoff, with the estimate `eta`.
    let with = |eta: Option<i64>| -> tempfile::TempDir {
        let d = copy_input(dir.path());
        let path = d.path().join("events.parquet");
        let ev = read_parquet(&path);
        let more = DataFrame::new(
            2,
            vec![
                Column::new("shipment_id".into(), vec![id.as_str(); 2]),
                lanewatch::io::ts_column_req("event_time", vec![cutoff - 7_200_000_000, cutoff - 3_600_000_000]),
                Column::new("status".into(), vec!["IN_TRANSIT"; 2]),
                Column::new("location".into(), vec![Some("x"); 2]),
                lanewatch::io::ts_column("carrier_estimated_delivery_at", vec![eta; 2]),
            ],
        )
        .unwrap();
        let names: Vec<String> = ev.get_column_names().iter().map(|c| c.to_string()).collect();
        let mut all = ev.vstack(&more.select(names).unwrap()).unwrap();
        write_parquet(&mut all, &path);
        d
    };
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "").unwrap();
    let warned = |input: &Path| -> Option<u64> {
        let v = validate_json(input, &config);
        v["warnings"].as_array().unwrap().iter().find(|w| w["check"] == "implausible_estimate").map(|w| {
            assert_eq!(w["column"], "carrier_estimated_delivery_at", "{w}");
            w["count"].as_u64().unwrap()
        })
    };
    let none = with(None);
    let want = features(none.path());
    assert_eq!(warned(none.path()), None);
    let real = with(Some(cutoff + 5 * 86_400_000_000));
    assert_ne!(features(real.path()), want, "a plausible estimate changes the features");
    for bad in [0, i64::MIN + 1, 10_445_000_000_000_000] {
        let d = with(Some(bad));
        assert_eq!(features(d.path()), want, "the estimate {bad} was read as an estimate");
        assert_eq!(warned(d.path()), Some(2), "{bad}");
    }
}
