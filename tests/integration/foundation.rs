//! The input contract, `validate` and `generate`.

use std::path::Path;

use polars::prelude::*;

use crate::common::*;

/// A copy of the small input with `edit` applied to one table.
fn edited(table: &str, edit: impl FnOnce(DataFrame) -> DataFrame) -> tempfile::TempDir {
    let dir = copy_input(small_input());
    let path = dir.path().join(format!("{table}.parquet"));
    let mut df = edit(read_parquet(&path));
    write_parquet(&mut df, &path);
    dir
}

/// Runs validate and returns (exit code, error lines).
fn validate(dir: &Path) -> (i32, Vec<String>) {
    let o = lanewatch(&["validate", "--input", dir.to_str().unwrap()]);
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    let errors = stdout(&o).lines().filter(|l| l.starts_with("error:")).map(str::to_string).collect();
    (code(&o), errors)
}

fn assert_rejected(dir: &Path, file: &str, column: &str) {
    let (code, errors) = validate(dir);
    assert_eq!(code, 65, "{errors:?}");
    assert!(!errors.is_empty());
    let line = &errors[0];
    assert!(line.contains(file) && line.contains(column), "error does not name {file} and {column}: {line}");
    assert!(!line.contains('\n'));
}

#[test]
fn sample_input_is_valid() {
    let (code, errors) = validate(small_input());
    assert_eq!(code, 0, "{errors:?}");
}

#[test]
fn missing_column_is_rejected() {
    let dir = edited("shipments", |df| df.drop("promised_at").unwrap());
    assert_rejected(dir.path(), "shipments.parquet", "promised_at");
}

#[test]
fn wrong_type_is_rejected() {
    let dir = edited("events", |mut df| {
        let s = df.column("event_time").unwrap().cast(&DataType::String).unwrap();
        df.with_column(s).unwrap();
        df
    });
    assert_rejected(dir.path(), "events.parquet", "event_time");
    let (_, errors) = validate(dir.path());
    assert!(errors[0].contains("expected timestamp"), "{errors:?}");
}

#[test]
fn null_shipment_id_is_rejected() {
    let dir = edited("shipments", |mut df| {
        let ids = df.column("shipment_id").unwrap().str().unwrap().clone();
        let with_null: StringChunked = ids.iter().enumerate().map(|(i, v)| if i == 5 { None } else { v }).collect();
        df.with_column(with_null.with_name("shipment_id".into()).into_column()).unwrap();
        df
    });
    assert_rejected(dir.path(), "shipments.parquet", "shipment_id");
}

#[test]
fn duplicate_shipment_id_is_rejected() {
    let dir = edited("shipments", |df| {
        let head = df.head(Some(3));
        df.vstack(&head).unwrap()
    });
    assert_rejected(dir.path(), "shipments", "shipment_id");
    let (_, errors) = validate(dir.path());
    assert!(errors[0].contains("6 rows share a shipment_id"), "{errors:?}");
}

#[test]
fn truncated_and_corrupt_parquet_are_rejected() {
    let dir = copy_input(small_input());
    let path = dir.path().join("events.parquet");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_rejected(dir.path(), "events.parquet", "");

    // Footer intact, data pages overwritten.
    let mut bad = bytes.clone();
    for b in bad[100..bytes.len() / 2].iter_mut() {
        *b = 0x5a;
    }
    std::fs::write(&path, &bad).unwrap();
    let (code, errors) = validate(dir.path());
    assert_eq!(code, 65, "{errors:?}");
    assert!(errors[0].contains("events.parquet"), "{errors:?}");
}

/// Files are planned and decoded side by side (day partitions, a few at a time), yet what
/// they are found to hold is reported in file order, as reading them one after the other
/// reports it: a table split over eight files with bad files among them lists each file's error
/// in the order of the files, the first of them on the first line.
#[test]
fn findings_of_many_files_come_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let parts = 8usize;
    for table in ["shipments", "events"] {
        let df = read_parquet(&small_input().join(format!("{table}.parquet")));
        std::fs::create_dir(dir.path().join(table)).unwrap();
        let n = df.height();
        for k in 0..parts {
            let mut part = df.slice((n * k / parts) as i64, n * (k + 1) / parts - n * k / parts);
            write_parquet(&mut part, &dir.path().join(table).join(format!("part-{k}.parquet")));
        }
    }
    let path = |table: &str, k: usize| dir.path().join(table).join(format!("part-{k}.parquet"));
    let rewrite = |table: &str, k: usize, edit: &dyn Fn(DataFrame) -> DataFrame| {
        let mut df = edit(read_parquet(&path(table, k)));
        write_parquet(&mut df, &path(table, k));
    };
    // Footers that cannot be read, a missing column, a wrong type (found from the footers) and
    // data pages overwritten under an intact footer (found decoding).
    let truncate = |p: std::path::PathBuf| {
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    };
    let overwrite_pages = |p: std::path::PathBuf| {
        let mut bytes = std::fs::read(&p).unwrap();
        let end = bytes.len() / 2;
        bytes[100..end].iter_mut().for_each(|b| *b = 0x5a);
        std::fs::write(&p, &bytes).unwrap();
    };
    overwrite_pages(path("shipments", 1));
    truncate(path("shipments", 2));
    overwrite_pages(path("shipments", 3));
    rewrite("shipments", 5, &|df| df.drop("promised_at").unwrap());
    truncate(path("shipments", 6));
    rewrite("events", 3, &|mut df| {
        let s = df.column("event_time").unwrap().cast(&DataType::String).unwrap();
        df.with_column(s).unwrap();
        df
    });
    overwrite_pages(path("events", 4));
    truncate(path("events", 7));

    let o = lanewatch(&["validate", "--input", dir.path().to_str().unwrap(), "--format", "json"]);
    expect_code(&o, 65);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let errors: Vec<(String, String)> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["file"].as_str().unwrap().to_string(), e["check"].as_str().unwrap().to_string()))
        .collect();
    // Per table: what the footers showed, file by file, then what decoding found, file by file.
    let expected_errors = [
        ("shipments/part-2.parquet", "corrupt_file"),
        ("shipments/part-5.parquet", "missing_column"),
        ("shipments/part-6.parquet", "corrupt_file"),
        ("shipments/part-1.parquet", "corrupt_file"),
        ("shipments/part-3.parquet", "corrupt_file"),
        ("events/part-3.parquet", "wrong_type"),
        ("events/part-7.parquet", "corrupt_file"),
        ("events/part-4.parquet", "corrupt_file"),
    ];
    let expected_errors: Vec<(String, String)> =
        expected_errors.iter().map(|(f, c)| (f.to_string(), c.to_string())).collect();
    assert_eq!(errors, expected_errors);
    // The files list covers every file, in order, bad ones included.
    let files: Vec<String> =
        v["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_string()).collect();
    let expected: Vec<String> =
        ["shipments", "events"].iter().flat_map(|t| (0..parts).map(move |k| format!("{t}/part-{k}.parquet"))).collect();
    assert_eq!(files, expected);

    // The text report's first line names the first bad file.
    let (code, lines) = validate(dir.path());
    assert_eq!(code, 65);
    assert!(lines[0].contains("shipments/part-2.parquet"), "{lines:?}");
}

#[test]
fn missing_input_is_66() {
    let o = lanewatch(&["validate", "--input", "/nonexistent/lanewatch-input"]);
    expect_code(&o, 66);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(small_input().join("shipments.parquet"), dir.path().join("shipments.parquet")).unwrap();
    let o = lanewatch(&["validate", "--input", dir.path().to_str().unwrap()]);
    expect_code(&o, 66);
    assert!(stderr(&o).contains("events"), "{}", stderr(&o));
}

#[test]
fn json_report_matches_text_report() {
    let dir = edited("shipments", |df| df.drop("seller_id").unwrap());
    let o = lanewatch(&["validate", "--input", dir.path().to_str().unwrap(), "--format", "json"]);
    expect_code(&o, 65);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["column"], "seller_id");
    assert_eq!(v["errors"][0]["check"], "missing_column");
    assert!(v["files"].as_array().unwrap().iter().all(|f| f["blake3"].as_str().unwrap().len() == 64));
}

#[test]
fn warnings_do_not_fail_validation() {
    let dir = edited("events", |df| {
        // Duplicate scans, an unknown status and events of an unknown shipment.
        let mut extra = df.head(Some(10));
        extra.with_column(Column::new("status".into(), vec!["SORTED_AT_DEPOT"; 10])).unwrap();
        let mut orphan = df.head(Some(2));
        orphan.with_column(Column::new("shipment_id".into(), vec!["NOPE-1", "NOPE-2"])).unwrap();
        df.vstack(&df.head(Some(5))).unwrap().vstack(&extra).unwrap().vstack(&orphan).unwrap()
    });
    let o = lanewatch(&["validate", "--input", dir.path().to_str().unwrap(), "--format", "json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let checks: Vec<&str> = v["warnings"].as_array().unwrap().iter().map(|w| w["check"].as_str().unwrap()).collect();
    for want in ["duplicate_event", "unknown_status", "unknown_shipment"] {
        assert!(checks.contains(&want), "{want} missing from {checks:?}");
    }
    let unknown: Vec<&str> =
        v["unmapped_statuses"].as_array().unwrap().iter().map(|u| u["status"].as_str().unwrap()).collect();
    assert!(unknown.contains(&"SORTED_AT_DEPOT"), "{unknown:?}");
}

#[test]
fn partitioned_folders_and_other_time_units_are_read() {
    // events/date=…/part-0.parquet in milliseconds, shipments in nanoseconds.
    let dir = tempfile::tempdir().unwrap();
    let mut ships = read_parquet(&small_input().join("shipments.parquet"));
    for c in ["created_at", "promised_at"] {
        let s = ships.column(c).unwrap().cast(&DataType::Datetime(TimeUnit::Nanoseconds, Some(TimeZone::UTC))).unwrap();
        ships.with_column(s).unwrap();
    }
    write_parquet(&mut ships, &dir.path().join("shipments.parquet"));
    let events = read_parquet(&small_input().join("events.parquet"));
    let n = events.height();
    for (k, (a, b)) in [(0, n / 2), (n / 2, n)].into_iter().enumerate() {
        let part = dir.path().join(format!("events/date=2026-0{}-01", k + 1));
        std::fs::create_dir_all(&part).unwrap();
        let mut slice = events.slice(a as i64, b - a);
        let s = slice
            .column("event_time")
            .unwrap()
            .cast(&DataType::Datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC)))
            .unwrap();
        slice.with_column(s).unwrap();
        write_parquet(&mut slice, &part.join("part-0.parquet"));
    }
    std::fs::write(dir.path().join("events/_SUCCESS"), b"").unwrap();
    let o = lanewatch(&["validate", "--input", dir.path().to_str().unwrap(), "--format", "json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["events"].as_u64().unwrap() as usize, n);
    assert_eq!(v["files"].as_array().unwrap().len(), 3);
}

#[test]
fn naive_timestamps_need_a_configured_zone() {
    let dir = edited("events", |mut df| {
        let s = df.column("event_time").unwrap().cast(&DataType::Datetime(TimeUnit::Microseconds, None)).unwrap();
        df.with_column(s).unwrap();
        df
    });
    assert_rejected(dir.path(), "events.parquet", "event_time");
    let o = lanewatch_env(
        &["validate", "--input", dir.path().to_str().unwrap()],
        &[("LANEWATCH_INPUT__NAIVE_TIMEZONE", "UTC")],
    );
    expect_code(&o, 0);
}

#[test]
fn renamed_columns_are_mapped_by_config() {
    let dir = edited("shipments", |mut df| {
        df.rename("shipment_id", "parcel_no".into()).unwrap();
        df
    });
    assert_rejected(dir.path(), "shipments.parquet", "shipment_id");
    let cfg = dir.path().join("map.toml");
    std::fs::write(&cfg, "[input.columns.shipments]\nshipment_id = \"parcel_no\"\n").unwrap();
    let o = lanewatch(&["validate", "--input", dir.path().to_str().unwrap(), "--config", cfg.to_str().unwrap()]);
    expect_code(&o, 0);
}

#[test]
fn generate_is_byte_identical_for_a_seed() {
    let (a, b, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (dir, seed) in [(&a, "5"), (&b, "5"), (&c, "6")] {
        let o = lanewatch(&[
            "generate",
            "--out",
            dir.path().to_str().unwrap(),
            "--shipments",
            "1500",
            "--seed",
            seed,
            "--days",
            "60",
        ]);
        expect_code(&o, 0);
    }
    assert_eq!(tree(a.path()), tree(b.path()));
    assert_ne!(tree(a.path())["events.parquet"], tree(c.path())["events.parquet"]);
}

#[test]
fn generated_data_has_the_promised_shape() {
    let dir = tempfile::tempdir().unwrap();
    let s = lanewatch::generate::generate(
        &lanewatch::generate::GenerateParams::new(20_000, 3, date("2026-06-01"), 180),
        dir.path(),
    )
    .unwrap();
    assert!((0.08..=0.15).contains(&s.late_rate), "late rate {}", s.late_rate);
    assert_eq!(s.disruptions.len(), 4);
    let ships = read_parquet(&dir.path().join("shipments.parquet"));
    let lanes = ships
        .select(["origin", "destination", "service"])
        .unwrap()
        .unique_stable(None, UniqueKeepStrategy::First, None)
        .unwrap();
    let origins = ships.column("origin").unwrap().n_unique().unwrap();
    let dests = ships.column("destination").unwrap().n_unique().unwrap();
    assert_eq!((origins, dests), (3, 20));
    assert!(lanes.height() > 150, "{} lanes", lanes.height());
    let truth = read_parquet(&dir.path().join("truth.parquet"));
    let disrupted = truth.column("disruption_id").unwrap().null_count();
    assert!(disrupted < truth.height() && truth.height() - disrupted > 100, "few parcels hit by disruptions");
    assert!(s.lost > 0 && s.returned > 0);
}

/// The committed sample data is exactly what its README's command makes.
#[test]
fn sample_data_matches_its_documented_command() {
    let dir = tempfile::tempdir().unwrap();
    let o = lanewatch(&[
        "generate",
        "--out",
        dir.path().to_str().unwrap(),
        "--shipments",
        "20000",
        "--seed",
        "42",
        "--start",
        "2026-06-01",
        "--days",
        "180",
    ]);
    expect_code(&o, 0);
    for f in ["shipments.parquet", "events.parquet", "truth.parquet", "disruptions.parquet"] {
        let want = std::fs::read(sample_data().join(f)).unwrap();
        let got = std::fs::read(dir.path().join(f)).unwrap();
        assert!(want == got, "sample_data/{f} is not what `lanewatch generate` makes; regenerate it");
    }
}

/// Exact duplicate scans are dropped and each shipment's events come out in time order,
/// whatever the rows' order in the file: the clean events of the small input with every scan
/// written twice, in reverse, equal those of the input as it is.
#[test]
fn duplicate_scans_are_dropped_and_events_sorted() {
    let want = load(&fast_settings(small_input(), &[]));
    let dir = edited("events", |df| {
        let doubled = df.vstack(&df).unwrap();
        let idx = IdxCa::from_vec("i".into(), (0..doubled.height() as IdxSize).rev().collect());
        doubled.take(&idx).unwrap()
    });
    let got = load(&fast_settings(dir.path(), &[]));
    assert!(!want.events.is_empty());
    assert_eq!(got.events.start, want.events.start, "events per shipment");
    assert_eq!(got.events.time, want.events.time);
    assert_eq!(got.events.code, want.events.code);
}
