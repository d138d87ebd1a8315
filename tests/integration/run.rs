//! `lanewatch run`: outputs, seller files, night-over-night state, reasons, evaluation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use lanewatch::commands::backtest::backtest;
use lanewatch::config::Overrides;
use polars::prelude::*;

use crate::common::*;

/// Runs the nightly job and returns the run folder.
fn run(input: &Path, out: &Path, as_of: &str) -> PathBuf {
    expect_code(&lanewatch_fast("run", input, out, &["--as-of", as_of]), 0);
    out.join(format!("as_of={as_of}"))
}

fn floats(df: &DataFrame, c: &str) -> Vec<f64> {
    df.column(c).unwrap().f64().unwrap().iter().map(|v| v.unwrap()).collect()
}

fn is_sorted(v: &[String]) -> bool {
    v.windows(2).all(|w| w[0] <= w[1])
}

/// Parses our CSV files (RFC 4180 quoting) into rows of cells.
fn read_csv(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cell.is_empty() => quoted = true,
            (',', false) => row.push(std::mem::take(&mut cell)),
            ('\r', false) => {}
            ('\n', false) => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (c, _) => cell.push(c),
        }
    }
    rows
}

#[test]
fn run_writes_the_documented_outputs() {
    let out = tempfile::tempdir().unwrap();
    let dir = run(small_input(), out.path(), SMALL_AS_OF);
    for f in [
        "scores.parquet",
        "alerts.parquet",
        "recovered.parquet",
        "lane_alerts.parquet",
        "capped_alerts.parquet",
        "lanes.parquet",
        "metrics.json",
        "model.json",
        "manifest.json",
        "report.html",
        "_SUCCESS",
        "sellers/index.csv",
    ] {
        assert!(dir.join(f).exists(), "missing {f}");
    }
    let scores = read_parquet(&dir.join("scores.parquet"));
    let utc = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
    for c in ["last_event_at", "promised_at", "expected_delivery_at", "expected_delivery_p90_at", "created_at"] {
        assert_eq!(scores.column(c).unwrap().dtype(), &utc, "{c}");
        assert_eq!(scores.column(c).unwrap().null_count(), 0, "{c}");
    }
    let ids = strings(&scores, "shipment_id");
    assert!(is_sorted(&ids) && ids.iter().collect::<HashSet<_>>().len() == ids.len());
    let risk = floats(&scores, "risk");
    assert!(risk.iter().all(|r| (0.0..=1.0).contains(r)));
    // Past the promise means risk 1 and a `late` alert.
    let to_promise = floats(&scores, "days_to_promise");
    let alerts = read_parquet(&dir.join("alerts.parquet"));
    let alert_of: HashMap<String, String> =
        strings(&alerts, "shipment_id").into_iter().zip(strings(&alerts, "alert")).collect();
    for k in 0..ids.len() {
        if to_promise[k] <= 0.0 {
            assert_eq!(risk[k], 1.0);
            assert_eq!(alert_of.get(&ids[k]).map(String::as_str), Some("late"), "{}", ids[k]);
        }
    }
    assert!(alerts.height() > 0);
    assert!(is_sorted(&strings(&alerts, "shipment_id")));
    assert_eq!(alerts.column("first_alerted_on").unwrap().dtype(), &DataType::Date);
    let scored: HashSet<String> = ids.into_iter().collect();
    assert!(strings(&alerts, "shipment_id").iter().all(|s| scored.contains(s)));
    for (c, allowed) in [("alert", vec!["late", "at_risk", "stalled"]), ("severity", vec!["high", "medium", "low"])] {
        assert!(strings(&alerts, c).iter().all(|v| allowed.contains(&v.as_str())), "{c}");
    }
    let lane_alerts = read_parquet(&dir.join("lane_alerts.parquet"));
    let keys: Vec<String> = (0..lane_alerts.height())
        .map(|k| {
            ["origin", "destination", "service", "seller_id"]
                .iter()
                .map(|c| lane_alerts.column(c).unwrap().str().unwrap().get(k).unwrap().to_string())
                .collect::<Vec<_>>()
                .join("\u{1}")
        })
        .collect();
    assert!(is_sorted(&keys));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["as_of"], SMALL_AS_OF);
    assert_eq!(manifest["cutoff"], "2026-09-21T00:00:00+00:00");
    assert_eq!(manifest["inputs"].as_array().unwrap().len(), 2);
    assert!(manifest["inputs"][0]["blake3"].as_str().unwrap().len() == 64);
    let outputs: Vec<&str> =
        manifest["outputs"].as_array().unwrap().iter().map(|o| o["file"].as_str().unwrap()).collect();
    // Regression: once the data files were written beside the seller files, the list came back
    // without report.html and with model.json after the seller index.
    let written = [
        "scores.parquet",
        "alerts.parquet",
        "recovered.parquet",
        "lane_alerts.parquet",
        "capped_alerts.parquet",
        "lanes.parquet",
        "service_advice.parquet",
        "promise_advice.parquet",
        "seller_advice.parquet",
        "metrics.json",
        "model.json",
        "sellers/index.csv",
        "report.html",
    ];
    assert_eq!(outputs, written);
    // Every file of the run folder is listed, but the manifest, the success marker and the
    // per-seller files the index lists.
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| !["manifest.json", "_SUCCESS", "sellers"].contains(&f.as_str()))
        .collect();
    files.push("sellers/index.csv".into());
    files.sort();
    let mut listed: Vec<String> = outputs.iter().map(|f| f.to_string()).collect();
    listed.sort();
    assert_eq!(files, listed);
    assert!(manifest["timings"]["stages"].as_array().unwrap().len() >= 5);
}

/// Seller ids reach file names and CSV cells: hostile ones stay inside sellers/, get distinct
/// files, and their rows stay theirs.
#[test]
fn hostile_seller_ids_are_isolated() {
    let base_out = tempfile::tempdir().unwrap();
    let base = run(small_input(), base_out.path(), SMALL_AS_OF);
    let alerted = strings(&read_parquet(&base.join("alerts.parquet")), "shipment_id");
    let hostile: Vec<String> = vec![
        "../../etc".into(),
        "a/b".into(),
        "".into(),
        "x".repeat(400),
        "Ünïcødé 販売者".into(),
        "=HYPERLINK(\"http://evil\")".into(),
        "line\nbreak".into(),
        "nul\u{0}byte".into(),
        "<script>alert(1)</script>".into(),
        "..".into(),
        "a_b".into(),
        "-2+3".into(),
        "+1 555".into(),
        "@SUM(A1:A9)".into(),
        "\tindent".into(),
        "\rreturn".into(),
        ".hidden".into(),
    ];
    assert!(alerted.len() >= hostile.len());
    // Give each hostile id to one alerted shipment.
    let input = copy_input(small_input());
    let path = input.path().join("shipments.parquet");
    let mut ships = read_parquet(&path);
    let target: HashMap<&str, &str> =
        alerted.iter().map(String::as_str).zip(hostile.iter().map(String::as_str)).collect();
    let ids = strings(&ships, "shipment_id");
    let sellers: Vec<String> = strings(&ships, "seller_id")
        .into_iter()
        .zip(&ids)
        .map(|(s, id)| target.get(id.as_str()).map(|h| h.to_string()).unwrap_or(s))
        .collect();
    ships.with_column(Column::new("seller_id".into(), sellers)).unwrap();
    write_parquet(&mut ships, &path);

    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("out");
    let dir = run(input.path(), &out, SMALL_AS_OF);
    // Nothing outside the output folder.
    let top: Vec<String> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(top, ["out"]);
    let sellers_dir = dir.join("sellers");
    for e in std::fs::read_dir(&sellers_dir).unwrap() {
        let e = e.unwrap();
        assert!(e.file_type().unwrap().is_file());
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            name.ends_with(".csv")
                && !name.starts_with('.')
                && !name.starts_with('-')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "{name:?}"
        );
    }
    let alerts = read_parquet(&dir.join("alerts.parquet"));
    let mut by_seller: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for (s, id) in strings(&alerts, "seller_id").into_iter().zip(strings(&alerts, "shipment_id")) {
        by_seller.entry(s).or_default().insert(id);
    }
    let index = read_csv(&sellers_dir.join("index.csv"));
    assert_eq!(index[0], ["seller_id", "file", "alerts", "suppressed"]);
    let mut files = HashSet::new();
    let mut seen = HashSet::new();
    for row in &index[1..] {
        let (cell, file) = (&row[0], &row[1]);
        // Formula-looking ids are neutralised with a leading apostrophe.
        let neutralised = cell.starts_with('\'') && cell[1..].starts_with(['=', '+', '-', '@', '\t', '\r', '\n']);
        let sid = if neutralised { cell[1..].to_string() } else { cell.clone() };
        assert!(files.insert(file.clone()), "two sellers share {file}");
        let rows = read_csv(&sellers_dir.join(file));
        let want = by_seller.get(&sid).cloned().unwrap_or_default();
        let got: HashSet<String> = rows[1..].iter().map(|r| r[0].clone()).collect();
        assert_eq!(got, want, "{file} does not hold exactly {sid:?}'s alerts");
        assert!(rows[1..].iter().all(|r| r[1] == *cell), "{file} holds another seller's rows");
        seen.insert(sid);
    }
    // Rerunning with the hostile ids changes sellers' histories, so a few may lose their
    // alert; every one that has alerts has its file, and most of them do.
    let with_alerts: Vec<&String> = hostile.iter().filter(|h| by_seller.contains_key(*h)).collect();
    assert!(with_alerts.len() * 4 >= hostile.len() * 3, "only {} hostile sellers kept alerts", with_alerts.len());
    for h in with_alerts {
        assert!(seen.contains(h), "seller {h:?} has alerts but no file");
    }
    assert!(by_seller.keys().all(|s| seen.contains(s)));
    // No cell of any CSV starts like a formula (=, +, -, @, tab, CR): text cells are
    // neutralised, and number cells are never negative.
    for e in std::fs::read_dir(&sellers_dir).unwrap() {
        let path = e.unwrap().path();
        for row in read_csv(&path) {
            for cell in row {
                assert!(!cell.starts_with(['=', '+', '-', '@', '\t', '\r']), "{}: cell {cell:?}", path.display());
            }
        }
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(!html.contains("<script>"));
}

/// Two consecutive nights on one output: first_alerted_on carries over, recoveries are listed.
#[test]
fn consecutive_nights_carry_first_alert_and_report_recoveries() {
    let out = tempfile::tempdir().unwrap();
    let d1 = run(small_input(), out.path(), "2026-09-10");
    let d2 = run(small_input(), out.path(), "2026-09-11");
    let a1 = read_parquet(&d1.join("alerts.parquet"));
    let a2 = read_parquet(&d2.join("alerts.parquet"));
    let day = |df: &DataFrame| -> HashMap<String, i32> {
        let f = df.column("first_alerted_on").unwrap().as_materialized_series().to_physical_repr().into_owned();
        strings(df, "shipment_id").into_iter().zip(f.i32().unwrap().iter().map(|v| v.unwrap())).collect()
    };
    let (f1, f2) = (day(&a1), day(&a2));
    let night1 = (date("2026-09-10") - date("1970-01-01")).num_days() as i32;
    let night2 = night1 + 1;
    assert!(f1.values().all(|d| *d == night1), "a first run has nothing to carry");
    let mut carried = 0;
    for (id, d) in &f2 {
        match f1.get(id) {
            Some(prev) => {
                assert_eq!(d, prev, "{id}: first_alerted_on not carried over");
                carried += 1;
            }
            None => assert_eq!(*d, night2, "{id}: new alert not dated today"),
        }
    }
    assert!(carried > 0);
    let rec = read_parquet(&d2.join("recovered.parquet"));
    let rec_ids = strings(&rec, "shipment_id");
    let gone: HashSet<&String> = f1.keys().filter(|id| !f2.contains_key(*id)).collect();
    assert_eq!(
        rec_ids.iter().collect::<HashSet<_>>(),
        gone,
        "recovered must be exactly last night's alerts that are gone"
    );
    assert!(!rec_ids.is_empty(), "no recoveries between the two nights");
    assert!(is_sorted(&rec_ids));
    let reasons = strings(&rec, "recovered_reason");
    assert!(
        reasons
            .iter()
            .all(|r| ["delivered", "back_on_track", "returned_or_lost", "no_longer_in_input"].contains(&r.as_str()))
    );
    for (r, s) in reasons.iter().zip(strings(&rec, "status")) {
        if r == "delivered" {
            assert_eq!(s, "DELIVERED");
        }
    }
    // A rerun of the first night is unaffected by the later night.
    let before = tree(&d1);
    let d1_again = run(small_input(), out.path(), "2026-09-10");
    assert_same_run(&d1_again, &d1);
    assert_eq!(tree(&d1).keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>());
}

/// Regression: `recovered.parquet` said RETURNED for every parcel that ended returned or lost;
/// a lost parcel is now LOST. Last night's alerts are half lost, half returned by tonight.
#[test]
fn recovered_parcels_say_whether_they_were_lost_or_returned() {
    let input = copy_input(small_input());
    let out = tempfile::tempdir().unwrap();
    let d1 = run(input.path(), out.path(), "2026-09-10");
    let mut alerted = strings(&read_parquet(&d1.join("alerts.parquet")), "shipment_id");
    alerted.sort();
    assert!(alerted.len() >= 20, "too few alerts to test: {}", alerted.len());
    let ended: Vec<(String, &str)> =
        alerted.iter().enumerate().map(|(k, id)| (id.clone(), if k % 2 == 0 { "LOST" } else { "RETURNED" })).collect();
    let path = input.path().join("events.parquet");
    let events = read_parquet(&path);
    // Between the two nights' cutoffs (the first night's is 2026-09-11 00:00 UTC).
    let at = chrono::NaiveDateTime::parse_from_str("2026-09-11 12:00:00", "%Y-%m-%d %H:%M:%S")
        .unwrap()
        .and_utc()
        .timestamp_micros();
    // Every fourth lost parcel is then delivered (back to its sender) an hour later: the first
    // ending decides, as it decides the label (regression: a delivery at any time won).
    let then_delivered: Vec<String> = ended.iter().step_by(4).map(|(id, _)| id.clone()).collect();
    let mut rows: Vec<(String, i64, &str)> = ended.iter().map(|(id, s)| (id.clone(), at, *s)).collect();
    rows.extend(then_delivered.iter().map(|id| (id.clone(), at + 3_600_000_000, "DELIVERED")));
    let m = rows.len();
    let extra = DataFrame::new(
        m,
        vec![
            Column::new("shipment_id".into(), rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>()),
            lanewatch::io::ts_column_req("event_time", rows.iter().map(|r| r.1).collect()),
            Column::new("status".into(), rows.iter().map(|r| r.2).collect::<Vec<_>>()),
            Column::new("location".into(), vec![Some("hub"); m]),
        ],
    )
    .unwrap();
    let names: Vec<String> = events.get_column_names().iter().map(|c| c.to_string()).collect();
    let mut all = events.vstack(&extra.select(names).unwrap()).unwrap();
    write_parquet(&mut all, &path);
    let d2 = run(input.path(), out.path(), "2026-09-11");
    let rec = read_parquet(&d2.join("recovered.parquet"));
    let how: HashMap<String, String> = strings(&rec, "shipment_id")
        .into_iter()
        .zip(strings(&rec, "recovered_reason").into_iter().zip(strings(&rec, "status")))
        .filter(|(_, (reason, _))| reason == "returned_or_lost")
        .map(|(id, (_, status))| (id, status))
        .collect();
    let ids = strings(&rec, "shipment_id");
    let later = then_delivered.iter().filter(|id| ids.contains(id)).count();
    assert!(
        later >= 3
            && then_delivered
                .iter()
                .filter(|id| ids.contains(id))
                .all(|id| how.get(id).map(String::as_str) == Some("LOST")),
        "lost, then delivered: {:?}",
        then_delivered.iter().map(|id| (id, how.get(id))).collect::<Vec<_>>()
    );
    let mut seen = HashMap::new();
    for (id, want) in &ended {
        if let Some(status) = how.get(id) {
            assert_eq!(status, want, "{id}");
            *seen.entry(*want).or_insert(0) += 1;
        }
    }
    assert!(seen.get("LOST").copied().unwrap_or(0) >= 5 && seen.get("RETURNED").copied().unwrap_or(0) >= 5, "{seen:?}");
}

/// Reasons are non-empty, ordered, and say what the numbers in the same row say.
#[test]
fn reasons_agree_with_the_features() {
    let out = tempfile::tempdir().unwrap();
    let dir = run(&sample_data(), out.path(), "2026-10-25");
    let a = read_parquet(&dir.join("alerts.parquet"));
    let (kind, reasons, action) = (strings(&a, "alert"), strings(&a, "reasons"), strings(&a, "action"));
    let (to_promise, silent, dwell) =
        (floats(&a, "days_to_promise"), floats(&a, "days_since_last_scan"), floats(&a, "stage_dwell_days"));
    let num_after = |text: &str, marker: &str| -> Option<f64> {
        let rest = &text[text.find(marker)? + marker.len()..];
        rest.split(' ').next()?.parse().ok()
    };
    let lane_disrupted: Vec<bool> =
        a.column("lane_disrupted").unwrap().bool().unwrap().iter().map(|v| v.unwrap()).collect();
    let mut dwell_checked = 0;
    let mut disrupted = 0;
    for k in 0..a.height() {
        let r = &reasons[k];
        // The column reads the stages the reason reads: the current and later ones
        // (regression: it read every stage, a passed one too).
        assert_eq!(lane_disrupted[k], r.contains(" disrupted"), "lane_disrupted vs {r}");
        assert!(!r.is_empty() && !action[k].is_empty());
        if kind[k] == "late" {
            assert!(r.starts_with("past the promise by "), "{r}");
            let d = num_after(r, "past the promise by ").unwrap();
            assert!((d + to_promise[k]).abs() <= 0.051, "{r} vs days_to_promise {}", to_promise[k]);
        }
        if kind[k] == "stalled" {
            let d = num_after(r, "no scan for ").unwrap();
            assert!((d - silent[k]).abs() <= 0.051, "{r} vs {}", silent[k]);
        }
        if kind[k] == "at_risk" {
            assert!(r.contains("model risk"), "{r}");
        }
        if let Some(i) = r.find(" dwell ") {
            let d: f64 = r[i + 7..].split(' ').next().unwrap().parse().unwrap();
            assert!((d - dwell[k]).abs() <= 0.051, "{r} vs stage_dwell_days {}", dwell[k]);
            dwell_checked += 1;
        }
        if r.contains("disrupted") {
            disrupted += 1;
            assert!(action[k].contains("another service"), "{}", action[k]);
        }
    }
    assert!(dwell_checked > 0 && disrupted > 0, "dwell {dwell_checked}, disrupted {disrupted}");
}

/// The honest evaluation: nightly runs replayed over the sample, at_risk alerts scored against
/// what happened later (the input's own later events, cross-checked with truth.parquet).
#[test]
fn at_risk_alerts_against_later_outcomes() {
    let input = sample_data();
    let out = tempfile::tempdir().unwrap();
    let settings = settings_with(
        Some(&repo().join("pipelines/backtest.toml")),
        &[],
        Overrides {
            input: Some(input.clone()),
            out: Some(out.path().to_path_buf()),
            from: Some("2026-08-01".into()),
            to: Some("2026-11-20".into()),
            every: Some(7),
            ..Default::default()
        },
    );
    let s = backtest(&settings).unwrap();
    let at = &s.kinds["at_risk"];
    eprintln!(
        "sample_data backtest {}..{} every {} d ({} nights): at_risk precision {:.3} recall {:.3} lead median {:?} d p10 {:?} d; any alert precision {:.3} recall {:.3}; late rate {:.3}",
        s.from,
        s.to,
        s.every_days,
        s.nights,
        at.precision,
        at.recall,
        at.lead_days_median,
        at.lead_days_p10,
        s.any_alert.precision,
        s.any_alert.recall,
        s.population_late as f64 / s.population as f64
    );
    // Measured (2026-11-30, boosted trees stopped on average precision): at_risk precision 0.693,
    // recall 0.449, median lead 4.1 d (4.8 d with the logistic model, which alerted fewer
    // parcels, mostly early ones), against a late rate of 0.117; any alert precision 0.759,
    // recall 0.633. Floors about 10 % below.
    let base = s.population_late as f64 / s.population as f64;
    assert!(at.precision > 3.0 * base, "at_risk precision {} vs base rate {base}", at.precision);
    assert!(at.precision >= 0.62, "at_risk precision {:.3} below the 0.62 floor (measured 0.693)", at.precision);
    assert!(at.recall >= 0.40, "at_risk recall {:.3} below the 0.40 floor (measured 0.449)", at.recall);
    assert!(at.lead_days_median.unwrap() >= 3.7, "median lead {:?} below 3.7 d (measured 4.1)", at.lead_days_median);
    assert!(s.any_alert.recall >= 0.57, "any-alert recall {:.3} below 0.57 (measured 0.633)", s.any_alert.recall);
    // The outcomes the backtest used agree with the generator's truth.
    let clean = load(&settings_with(None, &[], Overrides { input: Some(input.clone()), ..Default::default() }));
    let finals = lanewatch::evaluate::final_outcomes(&clean).unwrap();
    let truth = read_parquet(&input.join("truth.parquet"));
    let late = truth.column("late").unwrap().bool().unwrap();
    let mut compared = 0;
    for (k, id) in strings(&truth, "shipment_id").iter().enumerate() {
        let f = finals[id];
        if f.decided {
            assert_eq!(f.late, late.get(k).unwrap(), "{id}");
            compared += 1;
        }
    }
    assert!(compared > 19_000);
    for f in ["backtest.parquet", "backtest.json", "backtest.html"] {
        assert!(out.path().join(f).is_file(), "{f}");
    }
}

/// Hostile strings placed where the report shows them: seller ids with the most alerts (the
/// top-sellers chart), and origin, destination, service and carrier on every lane (heat maps,
/// lane tables). The report holds their escaped forms and no markup from data survives.
#[test]
fn the_report_escapes_hostile_strings_where_it_shows_them() {
    let base_out = tempfile::tempdir().unwrap();
    let base = run(small_input(), base_out.path(), SMALL_AS_OF);
    let alerts = read_parquet(&base.join("alerts.parquet"));
    let mut per_seller: HashMap<String, usize> = HashMap::new();
    for s in strings(&alerts, "seller_id") {
        *per_seller.entry(s).or_insert(0) += 1;
    }
    let mut top: Vec<(String, usize)> = per_seller.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let (s1, s2) = (top[0].0.clone(), top[1].0.clone());
    let seller_1 = "<script>alert(1)</script>";
    let seller_2 = "\"><img src=x onerror=alert(2)>";
    let origin = "CN-GD<b>bold</b>";
    let destination = "F&R\"'<i>";
    let service = "eco<svg onload=alert(3)>";
    let carrier = "<iframe src=javascript:alert(4)>";

    let input = copy_input(small_input());
    let path = input.path().join("shipments.parquet");
    let mut ships = read_parquet(&path);
    let set = |ships: &mut DataFrame, c: &str, f: &dyn Fn(String) -> String| {
        let v: Vec<String> = strings(ships, c).into_iter().map(f).collect();
        ships.with_column(Column::new(c.into(), v)).unwrap();
    };
    set(&mut ships, "seller_id", &|s| {
        if s == s1 {
            seller_1.to_string()
        } else if s == s2 {
            seller_2.to_string()
        } else {
            s
        }
    });
    set(&mut ships, "origin", &|o| if o == "CN-GD" { origin.to_string() } else { o });
    set(&mut ships, "destination", &|d| if d == "FR" { destination.to_string() } else { d });
    set(&mut ships, "service", &|s| if s == "economy" { service.to_string() } else { s });
    set(&mut ships, "carrier", &|_| carrier.to_string());
    write_parquet(&mut ships, &path);
    let out = tempfile::tempdir().unwrap();
    let dir = run(input.path(), out.path(), SMALL_AS_OF);
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();

    // The hostile values are shown, escaped (plotters escapes text it draws, `esc` the rest).
    for shown in [
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "&gt;&lt;img src=x onerror=alert(2)&gt;",
        "CN-GD&lt;b&gt;bold&lt;/b&gt;",
        "F&amp;R",
        "eco&lt;svg onload=alert(3)&gt;",
    ] {
        assert!(html.contains(shown), "the report does not show {shown:?}");
    }
    // No markup from data survives anywhere.
    for raw in [seller_1, "<img", "<b>bold", "<i>", "<svg onload", "<iframe"] {
        assert!(!html.contains(raw), "raw markup {raw:?} reached the report");
    }
    assert_only_page_tags(&html);
    // The seller pages of both hostile sellers: shown escaped, no markup from data, safe names.
    for (seller, shown) in
        [(seller_1, "&lt;script&gt;alert(1)&lt;/script&gt;"), (seller_2, "&gt;&lt;img src=x onerror=alert(2)&gt;")]
    {
        let o =
            lanewatch(&["report", "--seller", seller, "--out", out.path().to_str().unwrap(), "--as-of", SMALL_AS_OF]);
        expect_code(&o, 0);
        let pages = out.path().join("seller_pages").join(format!("as_of={SMALL_AS_OF}"));
        let page = std::fs::read_dir(&pages)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| stdout(&o).contains(p.file_name().unwrap().to_str().unwrap()))
            .expect("the printed page exists");
        let name = page.file_name().unwrap().to_str().unwrap();
        assert!(!name.starts_with(['-', '.']) && !name.contains(['<', '>', '"', '/']), "{name}");
        let html = std::fs::read_to_string(&page).unwrap();
        assert!(html.contains(shown), "the seller page does not show {shown:?}");
        assert!(html.contains("CN-GD&lt;b&gt;bold&lt;/b&gt;") || html.contains("F&amp;R"), "lanes not shown escaped");
        for raw in [seller, "<img", "<b>bold", "<i>", "<svg onload", "<iframe"] {
            assert!(!html.contains(raw), "raw markup {raw:?} reached the seller page");
        }
        assert_only_page_tags(&html);
    }
    // An unknown seller is a data error naming it, not an empty page.
    let o = lanewatch(&["report", "--seller", "nobody", "--out", out.path().to_str().unwrap(), "--as-of", SMALL_AS_OF]);
    expect_code(&o, 65);
    assert!(stderr(&o).contains("no seller \"nobody\""), "{}", stderr(&o));
    // Regression: a run file that is not Parquet, or lacks the seller column, was an internal
    // error (70); it is bad data (65) naming the file, and a file gone is missing input (66).
    let run = out.path().join(format!("as_of={SMALL_AS_OF}"));
    let ask =
        || lanewatch(&["report", "--seller", seller_1, "--out", out.path().to_str().unwrap(), "--as-of", SMALL_AS_OF]);
    let advice = std::fs::read(run.join("seller_advice.parquet")).unwrap();
    std::fs::write(run.join("seller_advice.parquet"), b"not parquet").unwrap();
    let o = ask();
    expect_code(&o, 65);
    assert!(stderr(&o).contains("seller_advice.parquet"), "{}", stderr(&o));
    let alerts = read_parquet(&run.join("alerts.parquet"));
    let mut no_seller = alerts.drop("seller_id").unwrap();
    std::fs::write(run.join("seller_advice.parquet"), &advice).unwrap();
    write_parquet(&mut no_seller, &run.join("alerts.parquet"));
    let o = ask();
    expect_code(&o, 65);
    assert!(stderr(&o).contains("seller_id"), "{}", stderr(&o));
    // Regression: any other column the page reads missing (a run folder of an older lanewatch)
    // or of another type was an internal error (70) too.
    write_parquet(&mut alerts.drop("expected_delivery_at").unwrap(), &run.join("alerts.parquet"));
    let o = ask();
    expect_code(&o, 65);
    assert!(stderr(&o).contains("no column expected_delivery_at"), "{}", stderr(&o));
    let mut risk_as_text = alerts.clone();
    let text = risk_as_text.column("risk").unwrap().cast(&DataType::String).unwrap();
    risk_as_text.replace("risk", text).unwrap();
    write_parquet(&mut risk_as_text, &run.join("alerts.parquet"));
    let o = ask();
    expect_code(&o, 65);
    assert!(stderr(&o).contains("another type"), "{}", stderr(&o));
    std::fs::remove_file(run.join("alerts.parquet")).unwrap();
    expect_code(&ask(), 66);
}

/// Every `<` in `html` opens one of the page's own elements.
fn assert_only_page_tags(html: &str) {
    // The page's own tags are the only tags: every `<` opens a known element.
    let allowed = [
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "h1",
        "h2",
        "h3",
        "p",
        "table",
        "tr",
        "th",
        "td",
        "figure",
        "figcaption",
        "svg",
        "rect",
        "path",
        "polyline",
        "polygon",
        "circle",
        "line",
        "text",
        "g",
        "defs",
        "desc",
        "tspan",
        "a",
        "span",
        "div",
        "details",
        "summary",
        "ul",
        "li",
        "nav",
        "section",
        "small",
        "strong",
        "em",
        "code",
    ];
    for (k, _) in html.match_indices('<') {
        let rest = &html[k + 1..];
        let name: String =
            rest.trim_start_matches(['/', '!', '?']).chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        if rest.starts_with("!DOCTYPE") || rest.starts_with("?xml") || rest.starts_with("!--") {
            continue;
        }
        assert!(
            allowed.contains(&name.to_ascii_lowercase().as_str()),
            "unexpected tag <{name}> at {}",
            &html[k..(k + 60).min(html.len())]
        );
    }
}

/// Regression: the backtest's final outcomes took a parcel's first delivery whatever came
/// before it, while its labels are settled by its first end (`timeline::outcome`): a parcel
/// lost, then found and delivered before its promise was on time to the backtest and late to
/// the model it graded.
#[test]
fn a_parcel_lost_before_its_delivery_ends_late_in_the_backtests_outcomes() {
    let input = copy_input(small_input());
    let settings = |dir: &Path| fast_settings(dir, &[]);
    let before = lanewatch::evaluate::final_outcomes(&load(&settings(small_input()))).unwrap();
    let mut on_time: Vec<(String, lanewatch::evaluate::Final)> =
        before.iter().filter(|(_, f)| f.decided && !f.late).map(|(id, f)| (id.clone(), *f)).collect();
    on_time.sort_by(|a, b| a.0.cmp(&b.0));
    on_time.truncate(40);
    assert_eq!(on_time.len(), 40);
    let path = input.path().join("events.parquet");
    let events = read_parquet(&path);
    let n = on_time.len();
    let extra = DataFrame::new(
        n,
        vec![
            Column::new("shipment_id".into(), on_time.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>()),
            // A minute before the delivery.
            lanewatch::io::ts_column_req(
                "event_time",
                on_time.iter().map(|(_, f)| f.delivered.unwrap() - 60_000_000).collect(),
            ),
            Column::new("status".into(), vec!["LOST"; n]),
            Column::new("location".into(), vec![Some("hub"); n]),
        ],
    )
    .unwrap();
    let names: Vec<String> = events.get_column_names().iter().map(|c| c.to_string()).collect();
    let mut all = events.vstack(&extra.select(names).unwrap()).unwrap();
    write_parquet(&mut all, &path);
    let after = lanewatch::evaluate::final_outcomes(&load(&settings(input.path()))).unwrap();
    for (id, f) in &on_time {
        let now = after[id];
        assert!(now.decided && now.late, "{id}: lost before its delivery, yet {now:?}");
        assert_eq!(now.delivered, f.delivered, "{id}");
    }
    // Every other parcel keeps its outcome.
    let changed = before.iter().filter(|(id, f)| after[*id] != **f).count();
    assert_eq!(changed, n);
}

/// Regression: a parcel never picked up (seller handling, no scan but its creation) was to be
/// traced with the carrier and, insured and valuable, claimed for as lost; it is the seller's
/// to hand over. One a carrier has scanned (here an exception) without a pickup milestone is
/// still traced.
#[test]
fn a_parcel_never_handed_over_is_to_be_handed_over_not_traced() {
    let cutoff = lanewatch::calendar::Night::new(date(SMALL_AS_OF)).cutoff();
    let handling = |input: &Path| -> Vec<(String, String)> {
        let out = tempfile::tempdir().unwrap();
        let alerts = read_parquet(&run(input, out.path(), SMALL_AS_OF).join("alerts.parquet"));
        let alerts = alerts.lazy().filter(col("status").eq(lit("CREATED"))).collect().unwrap();
        strings(&alerts, "shipment_id").into_iter().zip(strings(&alerts, "action")).collect()
    };
    let before = handling(small_input());
    // Each such alert of the generated input: scanned at creation alone (the input's events).
    let events = read_parquet(&small_input().join("events.parquet"));
    let (ids, statuses) = (strings(&events, "shipment_id"), strings(&events, "status"));
    let times = events.column("event_time").unwrap().as_materialized_series().to_physical_repr().into_owned();
    let times: Vec<i64> = times.i64().unwrap().iter().map(|t| t.unwrap()).collect();
    let scanned = |id: &str| (0..ids.len()).any(|k| ids[k] == id && times[k] < cutoff && statuses[k] != "CREATED");
    assert!(!before.is_empty(), "no alert in seller handling: nothing to see");
    for (id, action) in &before {
        assert!(!scanned(id), "{id} has carrier scans");
        assert!(action.starts_with("Hand the parcel to the carrier"), "{id}: {action}");
        assert!(!action.contains("carrier trace") && !action.contains("insurance claim"), "{id}: {action}");
    }
    // The same parcels with an exception scanned an hour after their creation: traced.
    let input = copy_input(small_input());
    let mask: BooleanChunked =
        (0..ids.len()).map(|k| statuses[k] == "CREATED" && before.iter().any(|b| b.0 == ids[k])).collect();
    let mut extra = events.filter(&mask).unwrap();
    assert_eq!(extra.height(), before.len(), "one creation scan each");
    set_time(&mut extra, "event_time", |_, t| t.map(|t| t + 3_600_000_000));
    set_str(&mut extra, "status", |_, _| Some("EXCEPTION".into()));
    let mut all = events.vstack(&extra).unwrap();
    write_parquet(&mut all, &input.path().join("events.parquet"));
    let after: BTreeMap<String, String> = handling(input.path()).into_iter().collect();
    for (id, _) in &before {
        let action = after.get(id).unwrap_or_else(|| panic!("{id}: no longer alerted in seller handling"));
        assert!(action.starts_with("Open a carrier trace"), "{id}: {action}");
    }
}

/// Regression: a night whose cutoff comes before every shipment panicked (exit 70) writing its
/// report, which read the first row of the empty advice. It is a night like any other, with
/// empty tables, whether it trains its model or takes a weekly schedule's.
#[test]
fn a_night_before_every_shipment_writes_empty_outputs() {
    // `small_input` creates its shipments from 2026-06-01 on.
    for env in [vec![], vec![("LANEWATCH_MODEL__RETRAIN_EVERY_DAYS", "7")]] {
        let out = tempfile::tempdir().unwrap();
        let run = run_night(small_input(), out.path(), "2026-05-01", &env);
        assert!(run.join("report.html").is_file(), "{env:?}");
        for table in ["scores.parquet", "alerts.parquet", "service_advice.parquet"] {
            assert_eq!(read_parquet(&run.join(table)).height(), 0, "{table} {env:?}");
        }
        // The report names the advice's night, a training schedule's earlier one, though the
        // advice has no row to read it from.
        let model: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("model.json")).unwrap()).unwrap();
        let training = model["as_of"].as_str().unwrap();
        let report = std::fs::read_to_string(run.join("report.html")).unwrap();
        let note = format!("As of {training}, the model's training night");
        assert_eq!(report.contains(&note), training != "2026-05-01", "{env:?}: trained on {training}");
        assert_eq!(env.is_empty(), training == "2026-05-01", "{env:?}: trained on {training}");
    }
}
