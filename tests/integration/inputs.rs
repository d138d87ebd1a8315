//! The same data in other legal encodings gives the same outputs; ambiguous or out-of-contract
//! layouts are refused with one clear line.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, AsArray, DictionaryArray, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType as A, Int32Type, TimeUnit as AU};

use crate::common::*;

const NIGHT: &str = "2026-07-25";

/// A tiny input (900 shipments over 60 days) and its run folder for NIGHT, made once.
fn clean() -> &'static (tempfile::TempDir, tempfile::TempDir, std::path::PathBuf) {
    static CLEAN: OnceLock<(tempfile::TempDir, tempfile::TempDir, std::path::PathBuf)> = OnceLock::new();
    CLEAN.get_or_init(|| {
        let input = tempfile::tempdir().unwrap();
        lanewatch::generate::generate(
            &lanewatch::generate::GenerateParams::new(900, 8, date("2026-06-01"), 60),
            input.path(),
        )
        .unwrap();
        let out = tempfile::tempdir().unwrap();
        let run = run_night(input.path(), out.path(), NIGHT, &[]);
        (input, out, run)
    })
}

/// The values of a string column of any Arrow string type.
fn texts(a: &ArrayRef) -> Vec<Option<String>> {
    let u = cast(a, &A::Utf8).unwrap();
    u.as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect()
}

/// A copy of the clean input with `f` applied to one table's record batch (arrow-rs, so any
/// Arrow type can be written).
fn variant(
    table: &str,
    f: impl FnOnce(arrow::record_batch::RecordBatch) -> arrow::record_batch::RecordBatch,
) -> tempfile::TempDir {
    let dir = copy_input(clean().0.path());
    let path = dir.path().join(format!("{table}.parquet"));
    let batch = f(read_arrow(&path));
    write_arrow(&batch, &path);
    dir
}

fn assert_same_as_clean(input: &Path, env: &[(&str, &str)], what: &str) {
    let out = tempfile::tempdir().unwrap();
    let run = run_night(input, out.path(), NIGHT, env);
    assert_same_data(&clean().2, &run, what);
}

/// Timestamps with fixed-offset zones (`+05:30`, `-03:00`, legal in Arrow and Parquet, written by
/// pyarrow and Spark) hold the same instants as UTC ones and give the same outputs.
#[test]
fn fixed_offset_time_zones_read_like_utc() {
    let zoned = |tz: &'static str, unit: AU| move |a: &ArrayRef| cast(a, &A::Timestamp(unit, Some(tz.into()))).unwrap();
    let ships = variant("shipments", |b| {
        let b = map_arrow_column(&b, "created_at", zoned("+05:30", AU::Microsecond));
        map_arrow_column(&b, "promised_at", zoned("-03:00", AU::Nanosecond))
    });
    std::fs::copy(
        variant("events", |b| map_arrow_column(&b, "event_time", zoned("+05:45", AU::Microsecond)))
            .path()
            .join("events.parquet"),
        ships.path().join("events.parquet"),
    )
    .unwrap();
    let t = read_arrow(&ships.path().join("shipments.parquet"));
    assert_eq!(
        t.schema().field_with_name("created_at").unwrap().data_type(),
        &A::Timestamp(AU::Microsecond, Some("+05:30".into()))
    );
    assert_same_as_clean(ships.path(), &[], "fixed-offset zones");
}

/// Dictionary-encoded strings (pyarrow's categoricals, Spark's dictionary pages) are strings.
#[test]
fn dictionary_encoded_strings_read_as_strings() {
    let dict = |a: &ArrayRef| -> ArrayRef {
        let d: DictionaryArray<Int32Type> = texts(a).iter().map(|v| v.as_deref()).collect();
        Arc::new(d)
    };
    let dir = variant("shipments", |b| {
        let b = map_arrow_column(&b, "seller_id", dict);
        map_arrow_column(&b, "destination", dict)
    });
    std::fs::copy(
        variant("events", |b| map_arrow_column(&b, "status", dict)).path().join("events.parquet"),
        dir.path().join("events.parquet"),
    )
    .unwrap();
    assert!(matches!(
        read_arrow(&dir.path().join("events.parquet")).schema().field_with_name("status").unwrap().data_type(),
        A::Dictionary(..)
    ));
    assert_same_as_clean(dir.path(), &[], "dictionary strings");
}

/// Integer columns where floats are expected are read as floats.
/// Regression: a decimal128 `declared_value` (how money is usually stored) was refused, "expected
/// float, got Decimal128", while decimal32 and decimal64 were read.
#[test]
fn decimal_values_read_as_floats() {
    for decimal in [A::Decimal128(12, 2), A::Decimal256(40, 2)] {
        let what = format!("{decimal}");
        let dir = variant("shipments", |b| map_arrow_column(&b, "declared_value", |a| cast(a, &decimal).unwrap()));
        assert_same_as_clean(dir.path(), &[], &what);
    }
}

#[test]
fn integer_weights_and_values_read_as_floats() {
    // Reference: the clean input with whole-gram weights, as floats.
    let round = |a: &ArrayRef| -> ArrayRef {
        Arc::new(
            a.as_primitive::<arrow::datatypes::Float64Type>().unary::<_, arrow::datatypes::Float64Type>(|v| v.round()),
        )
    };
    let as_int = |a: &ArrayRef| -> ArrayRef {
        let f = a.as_primitive::<arrow::datatypes::Float64Type>();
        Arc::new(f.iter().map(|v| v.map(|v| v.round() as i64)).collect::<Int64Array>())
    };
    let floats = variant("shipments", |b| map_arrow_column(&b, "weight_g", round));
    let ints = variant("shipments", |b| map_arrow_column(&b, "weight_g", as_int));
    assert_eq!(
        read_arrow(&ints.path().join("shipments.parquet")).schema().field_with_name("weight_g").unwrap().data_type(),
        &A::Int64
    );
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ra = run_night(floats.path(), a.path(), NIGHT, &[]);
    let rb = run_night(ints.path(), b.path(), NIGHT, &[]);
    assert_same_data(&ra, &rb, "integer weights");
}

/// Statuses are matched ignoring case and surrounding blanks.
#[test]
fn statuses_are_case_insensitive() {
    let dir = variant("events", |b| {
        map_arrow_column(&b, "status", |a| {
            Arc::new(
                texts(a)
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| v.map(|v| if i % 2 == 0 { v.to_lowercase() } else { format!(" {v} ") }))
                    .collect::<StringArray>(),
            )
        })
    });
    let out = tempfile::tempdir().unwrap();
    let run = run_night(dir.path(), out.path(), NIGHT, &[]);
    assert_same_data(&clean().2, &run, "lower-case statuses");
    // Only statuses outside the vocabulary stay unknown, as many as in the clean input.
    let unknown = |run: &Path| -> Vec<String> {
        manifest_warnings(run)
            .into_iter()
            .filter(|w| w.contains("outside the vocabulary"))
            .map(|w| w.split(" scans").next().unwrap().to_string())
            .collect()
    };
    assert_eq!(unknown(&run), unknown(&clean().2));
}

/// Event columns with other names are mapped by the config, never by code. A name may hold a
/// dot (as pandas' `json_normalize` writes them): such a column was never read.
#[test]
fn event_columns_are_mapped_by_config() {
    let dir = variant("events", |b| {
        let schema = b.schema();
        let fields: Vec<arrow::datatypes::Field> = schema
            .fields()
            .iter()
            .map(|f| {
                let name = match f.name().as_str() {
                    "shipment_id" => "tracking.number",
                    "event_time" => "scanned_at",
                    "status" => "scan_code",
                    n => n,
                };
                f.as_ref().clone().with_name(name)
            })
            .collect();
        arrow::record_batch::RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), b.columns().to_vec())
            .unwrap()
    });
    let out = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("map.toml");
    // The fast test config plus the mapping.
    let mut text = std::fs::read_to_string(fast_config()).unwrap();
    text.push_str(
        "\n[input.columns.events]\nshipment_id = \"tracking.number\"\nevent_time = \"scanned_at\"\nstatus = \"scan_code\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    // Unmapped, the renamed columns are missing.
    let o = lanewatch(&["validate", "--input", dir.path().to_str().unwrap()]);
    expect_code(&o, 65);
    let o = lanewatch(&[
        "run",
        "--input",
        dir.path().to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--as-of",
        NIGHT,
        "--config",
        cfg.to_str().unwrap(),
    ]);
    expect_code(&o, 0);
    assert_same_data(&clean().2, &out.path().join(format!("as_of={NIGHT}")), "mapped event columns");
}

/// Naive timestamps are read in `input.naive_timezone`: a zone with an offset of +08:00, or
/// that offset itself.
#[test]
fn naive_timestamps_in_a_configured_zone() {
    // Wall-clock times in Asia/Shanghai (no daylight saving): UTC + 8 h, stored without a zone.
    let local = |a: &ArrayRef| -> ArrayRef {
        let us = cast(a, &A::Int64).unwrap();
        let us = us
            .as_primitive::<arrow::datatypes::Int64Type>()
            .unary::<_, arrow::datatypes::Int64Type>(|v| v + 8 * 3_600_000_000);
        cast(&(Arc::new(us) as ArrayRef), &A::Timestamp(AU::Microsecond, None)).unwrap()
    };
    let dir = variant("events", |b| map_arrow_column(&b, "event_time", local));
    let o = lanewatch(&["validate", "--input", dir.path().to_str().unwrap()]);
    expect_code(&o, 65);
    assert!(stdout(&o).contains("naive_timezone"), "{}", stdout(&o));
    assert_same_as_clean(dir.path(), &[("LANEWATCH_INPUT__NAIVE_TIMEZONE", "Asia/Shanghai")], "naive Shanghai times");
    // Regression: a fixed offset, which zoned columns may carry, was refused as an unknown zone.
    assert_same_as_clean(dir.path(), &[("LANEWATCH_INPUT__NAIVE_TIMEZONE", "+08:00")], "naive times at +08:00");
}

/// Files and folders starting with `.` or `_` inside a table's folder are skipped (Spark's and
/// Hive's markers, editors' temporary files), whatever they hold.
#[test]
fn hidden_and_underscore_files_are_skipped() {
    let dir = copy_input(clean().0.path());
    let events = dir.path().join("events");
    std::fs::create_dir_all(events.join("_temporary")).unwrap();
    std::fs::create_dir_all(events.join(".spark-staging")).unwrap();
    std::fs::rename(dir.path().join("events.parquet"), events.join("part-0.parquet")).unwrap();
    std::fs::write(events.join(".part-1.parquet.crc"), b"junk").unwrap();
    std::fs::write(events.join("_SUCCESS"), b"").unwrap();
    std::fs::write(events.join(".hidden.parquet"), b"not parquet at all").unwrap();
    std::fs::write(events.join("_temporary/part-9.parquet"), b"junk").unwrap();
    std::fs::write(events.join(".spark-staging/part-8.parquet"), b"junk").unwrap();
    assert_same_as_clean(dir.path(), &[], "hidden files");
    // Regression: an upper-case extension was skipped without a word (its rows lost).
    std::fs::rename(events.join("part-0.parquet"), events.join("PART-0.PARQUET")).unwrap();
    assert_same_as_clean(dir.path(), &[], "an upper-case extension");
}

/// Regression: Spark's default timestamps (INT96, no time-zone annotation, instants in UTC)
/// were refused as naive ("store them as UTC or set input.naive_timezone", whose zone would have
/// shifted them). They read as UTC, whatever `input.naive_timezone` says.
#[test]
fn spark_int96_timestamps_read_as_utc() {
    let Some(py) = crate::tools::require_python(&["pyarrow"]) else { return };
    let dir = copy_input(clean().0.path());
    let script = "import sys, pyarrow.parquet as pq\n\
                  for p in sys.argv[1:]:\n    \
                  t = pq.read_table(p)\n    \
                  pq.write_table(t, p, use_deprecated_int96_timestamps=True, store_schema=False)\n    \
                  f = pq.ParquetFile(p)\n    \
                  assert any(f.schema.column(i).physical_type == 'INT96' for i in range(len(f.schema))), p\n";
    let tables = ["shipments", "events"].map(|t| dir.path().join(format!("{t}.parquet")).to_str().unwrap().to_string());
    let o = std::process::Command::new(py).arg("-c").arg(script).args(&tables).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_as_clean(dir.path(), &[], "INT96 timestamps");
    assert_same_as_clean(
        dir.path(),
        &[("LANEWATCH_INPUT__NAIVE_TIMEZONE", "Asia/Shanghai")],
        "INT96 with a naive zone",
    );
}

/// Regression: a mistyped column of a top-level file was reported in
/// `shipments/shipments.parquet`, a path that does not exist.
#[test]
fn messages_name_the_file_as_it_is_in_the_input() {
    let dir = variant("shipments", |b| map_arrow_column(&b, "declared_value", |a| cast(a, &A::Utf8).unwrap()));
    let o = lanewatch(&["validate", "--input", dir.path().to_str().unwrap()]);
    expect_code(&o, 65);
    let out = stdout(&o);
    let line = out.lines().find(|l| l.starts_with("error:") && l.contains("declared_value")).expect("an error line");
    assert!(line.contains("shipments.parquet") && !line.contains("shipments/shipments.parquet"), "{line}");
}

/// Timestamps after 2200-01-01 are corrupt data, named with their column; just before is fine.
#[test]
fn timestamps_after_2200_are_refused() {
    const Y2200: i64 = 7_258_118_400_000_000;
    for (offset, want) in [(-1i64, 0), (86_400_000_000, 65)] {
        let dir = variant("shipments", |b| {
            map_arrow_column(&b, "promised_at", |a| {
                let us = cast(a, &A::Int64).unwrap();
                let v: Int64Array = us
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .iter()
                    .enumerate()
                    .map(|(i, v)| if i == 3 { Some(Y2200 + offset) } else { v })
                    .collect();
                cast(&(Arc::new(v) as ArrayRef), &A::Timestamp(AU::Microsecond, Some("UTC".into()))).unwrap()
            })
        });
        let o = lanewatch(&["validate", "--input", dir.path().to_str().unwrap()]);
        expect_code(&o, want);
        if want == 65 {
            assert!(
                stdout(&o).lines().any(|l| l.starts_with("error:") && l.contains("promised_at") && l.contains("2200")),
                "{}",
                stdout(&o)
            );
        }
    }
}

/// Both `shipments.parquet` and `shipments/` present: lanewatch will not guess which holds the
/// table, and says so naming both; an input path that is a file is not a folder.
#[test]
fn ambiguous_or_wrong_layouts_are_refused() {
    let dir = copy_input(clean().0.path());
    std::fs::create_dir_all(dir.path().join("shipments")).unwrap();
    std::fs::copy(dir.path().join("shipments.parquet"), dir.path().join("shipments/part-0.parquet")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = lanewatch_fast("run", dir.path(), out.path(), &["--as-of", NIGHT]);
    expect_code(&o, 65);
    let last = stderr(&o).lines().last().unwrap().to_string();
    assert!(last.contains("both shipments.parquet and shipments hold shipments"), "{last}");
    assert!(!out.path().join(format!("as_of={NIGHT}")).exists());

    let file = dir.path().join("shipments.parquet");
    let o = lanewatch_fast("run", &file, out.path(), &["--as-of", NIGHT]);
    expect_code(&o, 66);
    assert!(stderr(&o).contains("input is not a folder"), "{}", stderr(&o));
    let o = lanewatch(&["validate", "--input", file.to_str().unwrap()]);
    expect_code(&o, 66);
    let o = lanewatch(&["validate", "--input", dir.path().join("nope").to_str().unwrap()]);
    expect_code(&o, 66);
    assert!(stderr(&o).contains("input not found"), "{}", stderr(&o));
}

/// A FIFO or a device among a table's files, or as the table's one file, is refused with one
/// line naming it (65, no run folder), never waited on: opening a FIFO to read waits for a
/// writer and `/dev/zero` never ends, so a night hung without a word until it was killed.
#[cfg(unix)]
#[test]
fn special_files_are_refused_not_waited_on() {
    let fifo = |path: &Path| {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo {}", path.display());
    };
    let in_folder = |special: &dyn Fn(&Path)| {
        let dir = copy_input(clean().0.path());
        std::fs::create_dir_all(dir.path().join("events")).unwrap();
        std::fs::rename(dir.path().join("events.parquet"), dir.path().join("events/part-0.parquet")).unwrap();
        special(&dir.path().join("events/part-1.parquet"));
        (dir, "events/part-1.parquet")
    };
    let cases: Vec<(&str, (tempfile::TempDir, &str))> = vec![
        ("a FIFO among the files", in_folder(&fifo)),
        ("a link to /dev/zero among the files", in_folder(&|p| std::os::unix::fs::symlink("/dev/zero", p).unwrap())),
        ("a FIFO as the table's file", {
            let dir = copy_input(clean().0.path());
            std::fs::remove_file(dir.path().join("events.parquet")).unwrap();
            fifo(&dir.path().join("events.parquet"));
            (dir, "events.parquet")
        }),
    ];
    for (what, (dir, name)) in cases {
        let out = tempfile::tempdir().unwrap();
        let cfg = fast_config();
        let args = ["run", "--input", dir.path().to_str().unwrap(), "--out", out.path().to_str().unwrap()];
        let mut child = std::process::Command::new(bin())
            .args(args)
            .args(["--as-of", NIGHT, "--config", cfg.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > std::time::Duration::from_secs(120) {
                child.kill().unwrap();
                panic!("{what}: still running after 120 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let o = child.wait_with_output().unwrap();
        expect_code(&o, 65);
        let last = stderr(&o).lines().last().unwrap_or("").to_string();
        assert!(last.contains(name) && last.contains("not a regular file"), "{what}: {last}");
        assert!(!out.path().join(format!("as_of={NIGHT}")).exists(), "{what}");
    }
}

/// Two columns of one name (a second `created_at` thirty days later, a second `status`) are
/// refused naming the column: the reader took the first without a word.
#[test]
fn columns_of_one_name_are_refused() {
    for (table, column) in [("shipments", "created_at"), ("events", "status")] {
        let dir = variant(table, |b| {
            let (schema, mut columns) = (b.schema(), b.columns().to_vec());
            let mut fields: Vec<arrow::datatypes::FieldRef> = schema.fields().iter().cloned().collect();
            let k = schema.index_of(column).unwrap();
            fields.push(fields[k].clone());
            columns.push(columns[k].clone());
            arrow::record_batch::RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns).unwrap()
        });
        let o = lanewatch(&["validate", "--input", dir.path().to_str().unwrap()]);
        expect_code(&o, 65);
        let error = stdout(&o).lines().find(|l| l.starts_with("error:")).unwrap_or("").to_string();
        assert!(error.contains(column) && error.contains("2 columns are named"), "{table}: {}", stdout(&o));
    }
}

/// seller_id, origin, destination and service share shipment_id's 512-byte limit (README): they
/// reach file names, CSV cells and HTML.
#[test]
fn long_strings_are_refused_in_every_id_column() {
    for column in ["seller_id", "origin", "destination", "service"] {
        let dir = variant("shipments", |b| {
            map_arrow_column(&b, column, |a| {
                Arc::new(
                    texts(a)
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| if i < 2 { Some("x".repeat(513)) } else { v })
                        .collect::<StringArray>(),
                )
            })
        });
        let o = lanewatch(&["validate", "--input", dir.path().to_str().unwrap()]);
        expect_code(&o, 65);
        // Rows counted as rows (regression: one long seller id on 351 shipments was "351 ids").
        let said = "2 rows with an id longer than 512 bytes";
        assert!(
            stdout(&o).lines().any(|l| l.starts_with("error:") && l.contains(column) && l.contains(said)),
            "{column}: {}",
            stdout(&o)
        );
    }
}

/// Regression: row groups are decoded two at a time, and each must read through its own file
/// descriptor. With a shared one (`File::try_clone` shares the offset) the readers' seeks raced
/// and a file of many compressed row groups failed with "Destination buffer is too small".
#[test]
fn regression_many_row_groups_decode_in_parallel() {
    let dir = copy_input(clean().0.path());
    let path = dir.path().join("events.parquet");
    let batch = read_arrow(&path);
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(257))
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), Some(props))
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let groups = parquet::file::reader::FileReader::metadata(
        &parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap(),
    )
    .num_row_groups();
    assert!(groups > 20, "only {groups} row groups");
    assert_same_as_clean(dir.path(), &[], "many row groups");
}

/// Regression: a footer's stated row count was trusted alone (for the memory estimate and the
/// files' rows in the manifest). A footer that states more rows than its row groups hold (one
/// more here, patched in place) is a corrupt file now (65), as `validate` and `run` both say.
#[test]
fn a_footer_whose_row_count_its_row_groups_contradict_is_a_corrupt_file() {
    use parquet::file::metadata::ParquetMetaDataReader;
    let dir = copy_input(small_input());
    let path = dir.path().join("shipments.parquet");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = ParquetMetaDataReader::new()
        .parse_and_finish(&bytes::Bytes::from(bytes.clone()))
        .unwrap()
        .file_metadata()
        .num_rows();
    // The footer's `num_rows` (field 3, an i64: header 0x16 after the schema's field 2) is a
    // zigzag varint: one more row is as many bytes, so the footer keeps its length.
    let varint = |v: i64| {
        let (mut z, mut out) = (((v << 1) ^ (v >> 63)) as u64, vec![0x16u8]);
        loop {
            if z < 0x80 {
                out.push(z as u8);
                return out;
            }
            out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
    };
    let (stated, forged) = (varint(n), varint(n + 1));
    assert_eq!(stated.len(), forged.len());
    let footer_len = u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap()) as usize;
    let start = bytes.len() - 8 - footer_len;
    let hits: Vec<usize> =
        (start..bytes.len() - 8 - stated.len()).filter(|&k| bytes[k..k + stated.len()] == stated[..]).collect();
    // The first is the file's (its row groups', after its schema, say the same count).
    assert!(!hits.is_empty(), "the row count is not where the footer keeps it");
    bytes[hits[0]..hits[0] + forged.len()].copy_from_slice(&forged);
    std::fs::write(&path, bytes).unwrap();
    let o = lanewatch(&["validate", "--input", dir.path().to_str().unwrap()]);
    expect_code(&o, 65);
    assert!(stdout(&o).contains(&format!("states {} rows but its row groups hold {n}", n + 1)), "{}", stdout(&o));
    let runs = tempfile::tempdir().unwrap();
    expect_code(&lanewatch_fast("run", dir.path(), runs.path(), &["--as-of", SMALL_AS_OF]), 65);
}
