//! Nightly operation: bad inputs, crashes, locks, concurrency, determinism, panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use polars::prelude::*;
use rand::{Rng, SeedableRng};

use crate::common::*;

const PREV: &str = "2026-07-24";
const NIGHT: &str = "2026-07-25";

/// A tiny input (800 shipments over 60 days) for the malformed-input corpus.
fn tiny_input() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        fixture("tiny", |dir| {
            let p = lanewatch::generate::GenerateParams::new(800, 5, date("2026-06-01"), 60);
            lanewatch::generate::generate(&p, dir).unwrap();
        })
    })
}

fn run_args<'a>(input: &'a str, out: &'a str, as_of: &'a str) -> Vec<&'a str> {
    vec!["run", "--input", input, "--out", out, "--as-of", as_of, "--config", FAST.get().unwrap().as_str()]
}

static FAST: OnceLock<String> = OnceLock::new();

fn fast() {
    FAST.get_or_init(|| fast_config().to_string_lossy().into_owned());
}

fn edit(dir: &Path, table: &str, f: impl FnOnce(DataFrame) -> DataFrame) {
    let p = dir.join(format!("{table}.parquet"));
    let mut df = f(read_parquet(&p));
    write_parquet(&mut df, &p);
}

fn set_f64(df: &mut DataFrame, col: &str, f: impl Fn(usize, f64) -> f64) {
    let v: Vec<f64> =
        df.column(col).unwrap().f64().unwrap().iter().enumerate().map(|(i, v)| f(i, v.unwrap())).collect();
    df.with_column(Column::new(col.into(), v)).unwrap();
}

fn cast(df: &mut DataFrame, col: &str, dt: DataType) {
    let c = df.column(col).unwrap().cast(&dt).unwrap();
    df.with_column(c).unwrap();
}

type Mutation = Box<dyn Fn(&Path)>;

/// (name, mutation of a copy of the tiny input, expected exit code, text the error must contain)
fn corpus() -> Vec<(&'static str, Mutation, i32, &'static str)> {
    let ms = |f: fn(&mut DataFrame)| -> Mutation {
        Box::new(move |d: &Path| {
            edit(d, "shipments", |mut df| {
                f(&mut df);
                df
            })
        })
    };
    let me = |f: fn(&mut DataFrame)| -> Mutation {
        Box::new(move |d: &Path| {
            edit(d, "events", |mut df| {
                f(&mut df);
                df
            })
        })
    };
    vec![
        // Files
        (
            "truncated shipments",
            Box::new(|d: &Path| {
                let p = d.join("shipments.parquet");
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..b.len() * 2 / 3]).unwrap();
            }),
            65,
            "shipments.parquet",
        ),
        (
            "zero-byte events",
            Box::new(|d: &Path| std::fs::write(d.join("events.parquet"), b"").unwrap()),
            65,
            "events.parquet",
        ),
        (
            "garbage events",
            Box::new(|d: &Path| std::fs::write(d.join("events.parquet"), vec![7u8; 4096]).unwrap()),
            65,
            "events.parquet",
        ),
        (
            "corrupt data pages",
            Box::new(|d: &Path| {
                let p = d.join("events.parquet");
                let mut b = std::fs::read(&p).unwrap();
                let n = b.len();
                for x in b[64..n / 2].iter_mut() {
                    *x = !*x;
                }
                std::fs::write(&p, b).unwrap();
            }),
            65,
            "events.parquet",
        ),
        ("empty shipments table", ms(|df| *df = df.head(Some(0))), 65, "shipments"),
        ("empty events table", me(|df| *df = df.head(Some(0))), 0, ""),
        ("missing events", Box::new(|d: &Path| std::fs::remove_file(d.join("events.parquet")).unwrap()), 66, "events"),
        (
            "non-UTF-8 file name in a partition folder",
            Box::new(|d: &Path| {
                use std::os::unix::ffi::OsStrExt;
                let part = d.join("events");
                std::fs::create_dir_all(&part).unwrap();
                std::fs::rename(
                    d.join("events.parquet"),
                    part.join(std::ffi::OsStr::from_bytes(b"part-\xff\xfe.parquet")),
                )
                .unwrap();
            }),
            0,
            "",
        ),
        (
            "stray non-Parquet file in a folder",
            Box::new(|d: &Path| {
                let part = d.join("shipments");
                std::fs::create_dir_all(&part).unwrap();
                std::fs::rename(d.join("shipments.parquet"), part.join("part-0.parquet")).unwrap();
                std::fs::write(part.join("README.txt"), "not data").unwrap();
                std::fs::write(part.join("_SUCCESS"), "").unwrap();
            }),
            0,
            "",
        ),
        // Schema
        ("missing required column", ms(|df| *df = df.drop("promised_at").unwrap()), 65, "promised_at"),
        ("created_at as text", ms(|df| cast(df, "created_at", DataType::String)), 65, "created_at"),
        ("insured as text", ms(|df| cast(df, "insured", DataType::String)), 65, "insured"),
        (
            "naive timestamps",
            me(|df| cast(df, "event_time", DataType::Datetime(TimeUnit::Microseconds, None))),
            65,
            "event_time",
        ),
        (
            "time zone other than UTC",
            ms(|df| {
                let tz = TimeZone::opt_try_new(Some("Asia/Shanghai")).unwrap();
                cast(df, "created_at", DataType::Datetime(TimeUnit::Microseconds, tz))
            }),
            0,
            "",
        ),
        (
            "mixed time units across files",
            Box::new(|d: &Path| {
                let ev = read_parquet(&d.join("events.parquet"));
                std::fs::remove_file(d.join("events.parquet")).unwrap();
                std::fs::create_dir_all(d.join("events")).unwrap();
                let n = ev.height();
                let mut a = ev.slice(0, n / 2);
                let mut b = ev.slice((n / 2) as i64, n - n / 2);
                // Lossless: the µs values are kept exactly in ns.
                cast(&mut b, "event_time", DataType::Datetime(TimeUnit::Nanoseconds, Some(TimeZone::UTC)));
                write_parquet(&mut a, &d.join("events/date=a/part-0.parquet").tap_dir());
                write_parquet(&mut b, &d.join("events/date=b/part-0.parquet").tap_dir());
            }),
            0,
            "",
        ),
        (
            "event times in milliseconds",
            me(|df| cast(df, "event_time", DataType::Datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC)))),
            0,
            "",
        ),
        (
            "dictionary-encoded strings",
            Box::new(|d: &Path| {
                use arrow::array::{ArrayRef, AsArray, DictionaryArray};
                let dict = |a: &ArrayRef| -> ArrayRef {
                    let u = arrow::compute::cast(a, &arrow::datatypes::DataType::Utf8).unwrap();
                    let d: DictionaryArray<arrow::datatypes::Int32Type> = u.as_string::<i32>().iter().collect();
                    std::sync::Arc::new(d)
                };
                for (table, col) in [("shipments", "origin"), ("events", "status")] {
                    let p = d.join(format!("{table}.parquet"));
                    let b = map_arrow_column(&read_arrow(&p), col, dict);
                    write_arrow(&b, &p);
                }
            }),
            0,
            "",
        ),
        (
            "partition lacking an optional column",
            Box::new(|d: &Path| split_events(d, |b| *b = b.drop("location").unwrap())),
            0,
            "",
        ),
        (
            "partition lacking a required column",
            Box::new(|d: &Path| split_events(d, |b| *b = b.drop("status").unwrap())),
            65,
            "status",
        ),
        (
            "extra unknown columns",
            ms(|df| {
                let n = df.height();
                df.with_column(Column::new("colour".into(), vec!["blue"; n])).unwrap();
            }),
            0,
            "",
        ),
        // Identifiers
        (
            "null shipment_id",
            ms(|df| set_str(df, "shipment_id", |i, s| (i != 3).then(|| s.unwrap().to_string()))),
            65,
            "shipment_id",
        ),
        (
            "null event shipment_id",
            me(|df| set_str(df, "shipment_id", |i, s| (i != 3).then(|| s.unwrap().to_string()))),
            65,
            "shipment_id",
        ),
        (
            "empty shipment_id",
            ms(|df| {
                set_str(df, "shipment_id", |i, s| Some(if i == 2 { String::new() } else { s.unwrap().to_string() }))
            }),
            65,
            "shipment_id",
        ),
        ("duplicate shipments", ms(|df| *df = df.vstack(&df.head(Some(4))).unwrap()), 65, "shipment_id"),
        (
            "1 MB shipment id",
            ms(|df| {
                set_str(df, "shipment_id", |i, s| {
                    Some(if i == 0 { "x".repeat(1 << 20) } else { s.unwrap().to_string() })
                })
            }),
            65,
            "shipment_id",
        ),
        (
            "seller ids with separators, NUL and newlines",
            ms(|df| {
                let bad = ["../../etc/passwd", "a/b", "nul\u{0}x", "two\nlines", "..", ""];
                set_str(df, "seller_id", |i, s| {
                    Some(if i % 7 == 0 { bad[(i / 7) % bad.len()].to_string() } else { s.unwrap().to_string() })
                })
            }),
            0,
            "",
        ),
        // Events
        ("duplicate events", me(|df| *df = df.vstack(&df.head(Some(50))).unwrap()), 0, ""),
        (
            "rows in reverse order",
            Box::new(|d: &Path| {
                for table in ["shipments", "events"] {
                    edit(d, table, |df| {
                        let idx = IdxCa::from_vec("i".into(), (0..df.height() as IdxSize).rev().collect());
                        df.take(&idx).unwrap()
                    });
                }
            }),
            0,
            "",
        ),
        (
            "milestones scanned backwards",
            me(|df| {
                set_time(df, "event_time", |i, v| v.map(|v| v - if i % 11 == 0 { 5 * 86_400_000_000 } else { 0 }));
            }),
            0,
            "",
        ),
        (
            "events in the future",
            me(|df| {
                set_time(df, "event_time", |i, v| if i % 9 == 0 { Some(4_000_000_000_000_000) } else { v });
            }),
            0,
            "",
        ),
        (
            "events for unknown shipments",
            me(|df| {
                set_str(df, "shipment_id", |i, s| {
                    Some(if i % 13 == 0 { format!("GHOST-{i}") } else { s.unwrap().to_string() })
                })
            }),
            0,
            "",
        ),
        (
            "unknown statuses",
            me(|df| {
                set_str(df, "status", |i, s| {
                    Some(if i % 5 == 0 { "HANDED_TO_NEIGHBOUR".into() } else { s.unwrap().to_string() })
                })
            }),
            0,
            "",
        ),
        (
            "null event_time",
            me(|df| {
                set_time(df, "event_time", |i, v| if i == 10 { None } else { v });
            }),
            65,
            "event_time",
        ),
        (
            "event in 1900",
            me(|df| {
                set_time(df, "event_time", |i, v| if i == 10 { Some(-2_208_988_800_000_000) } else { v });
            }),
            65,
            "event_time",
        ),
        // Values
        (
            "NaN weights",
            ms(|df| {
                set_f64(df, "weight_g", |i, v| if i % 3 == 0 { f64::NAN } else { v });
            }),
            0,
            "",
        ),
        (
            "negative and huge weights and values",
            ms(|df| {
                set_f64(df, "weight_g", |i, v| match i % 4 {
                    0 => -5.0,
                    1 => 1e300,
                    _ => v,
                });
                set_f64(df, "declared_value", |i, v| if i % 5 == 0 { f64::INFINITY } else { v });
            }),
            0,
            "",
        ),
        (
            "promised before created",
            ms(|df| {
                let c = df.column("created_at").unwrap().as_materialized_series().to_physical_repr().into_owned();
                let c: Vec<Option<i64>> = c.i64().unwrap().iter().collect();
                set_time(df, "promised_at", |i, p| if i % 10 == 0 { c[i].map(|c| c - 86_400_000_000) } else { p });
            }),
            0,
            "",
        ),
        (
            "null promised_at",
            ms(|df| {
                set_time(df, "promised_at", |i, v| if i == 1 { None } else { v });
            }),
            65,
            "promised_at",
        ),
    ]
}

/// What an exit-0 case of the corpus must show besides a complete output.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The input differs from the clean one only in encoding: the same data files, and no
    /// warning the clean run did not give.
    Same,
    /// The same data files, and this warning (the repair undid the difference); the report,
    /// which counts the rows read, aside.
    SameWarn(&'static str),
    /// The data changed on purpose; this warning says what was repaired.
    Warn(&'static str),
    /// The data changed on purpose and nothing needs repairing.
    Changed,
}

fn expectation(name: &str) -> Expect {
    match name {
        "non-UTF-8 file name in a partition folder"
        | "stray non-Parquet file in a folder"
        | "time zone other than UTC"
        | "mixed time units across files"
        | "dictionary-encoded strings"
        | "partition lacking an optional column"
        | "extra unknown columns"
        | "rows in reverse order"
        // The tiny input's times are whole milliseconds, so milliseconds lose nothing.
        | "event times in milliseconds" => Expect::Same,
        "duplicate events" => Expect::SameWarn("duplicate events"),
        "empty events table" => Expect::Warn("shipments have no events"),
        "milestones scanned backwards" => Expect::Warn("milestones out of order"),
        "events for unknown shipments" => Expect::Warn("events for shipments not in shipments"),
        "unknown statuses" => Expect::Warn("statuses outside the vocabulary"),
        "NaN weights" | "negative and huge weights and values" => Expect::Warn("treated as unknown"),
        "promised before created" => Expect::Warn("promised before they were created"),
        // Other seller ids; some events moved past the cutoff.
        "seller ids with separators, NUL and newlines" | "events in the future" => Expect::Changed,
        other => panic!("exit-0 case {other:?} has no expectation"),
    }
}

trait TapDir {
    fn tap_dir(self) -> PathBuf;
}

impl TapDir for PathBuf {
    /// Creates the parent folder and returns the path.
    fn tap_dir(self) -> PathBuf {
        std::fs::create_dir_all(self.parent().unwrap()).unwrap();
        self
    }
}

/// Splits events into two partitions and lets `f` alter the second.
fn split_events(d: &Path, f: impl Fn(&mut DataFrame)) {
    let ev = read_parquet(&d.join("events.parquet"));
    std::fs::remove_file(d.join("events.parquet")).unwrap();
    let n = ev.height();
    let mut a = ev.slice(0, n / 2);
    let mut b = ev.slice((n / 2) as i64, n - n / 2);
    f(&mut b);
    write_parquet(&mut a, &d.join("events/day=1/part-0.parquet").tap_dir());
    write_parquet(&mut b, &d.join("events/day=2/part-0.parquet").tap_dir());
}

/// Every malformed input gets its documented exit code and one clear line, never a panic, and
/// never touches the previous night's output. Inputs that run are checked further: those that
/// differ from the clean input only in encoding give its outputs byte for byte, and those that
/// need a repair say so in a warning (`expectation`).
#[test]
fn malformed_inputs_fail_cleanly_or_run_with_warnings() {
    fast();
    let out = tempfile::tempdir().unwrap();
    let o = lanewatch(&run_args(tiny_input().to_str().unwrap(), out.path().to_str().unwrap(), PREV));
    expect_code(&o, 0);
    let previous = tree(&out.path().join(format!("as_of={PREV}")));
    // The clean night, continuing from the same previous night, for the encoding-only cases.
    let clean_out = tempfile::tempdir().unwrap();
    for night in [PREV, NIGHT] {
        expect_code(
            &lanewatch(&run_args(tiny_input().to_str().unwrap(), clean_out.path().to_str().unwrap(), night)),
            0,
        );
    }
    let clean = clean_out.path().join(format!("as_of={NIGHT}"));
    let clean_warnings = manifest_warnings(&clean);
    let cases = corpus();
    assert!(cases.len() >= 30, "corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for (name, mutate, want, mention) in &cases {
        let input = copy_input(tiny_input());
        mutate(input.path());
        // Each case is another input folder: a full refresh (the state read the clean input).
        let mut args = run_args(input.path().to_str().unwrap(), out.path().to_str().unwrap(), NIGHT);
        args.push("--full-refresh");
        let o = lanewatch(&args);
        let err = stderr(&o);
        let last = err.lines().last().unwrap_or("").to_string();
        let night = out.path().join(format!("as_of={NIGHT}"));
        let mut problems = Vec::new();
        if code(&o) != *want {
            problems.push(format!("exit {} (want {want})", code(&o)));
        }
        if err.contains("panicked") || code(&o) == 70 {
            problems.push("panic".into());
        }
        if *want != 0 {
            if !last.starts_with("lanewatch: ") || !last.contains(mention) {
                problems.push(format!("last line {last:?} does not name {mention:?}"));
            }
            if night.exists() {
                problems.push("partial output left".into());
            }
        } else if !night.join("_SUCCESS").is_file() {
            problems.push("no complete output".into());
        } else {
            let warnings = manifest_warnings(&night);
            let same = data_files(&night) == data_files(&clean);
            let warned = |text: &str| warnings.iter().any(|w| w.contains(text));
            match expectation(name) {
                Expect::Same => {
                    if !same {
                        problems.push("outputs differ from the clean run's".into());
                    }
                    let new: Vec<&String> = warnings.iter().filter(|w| !clean_warnings.contains(w)).collect();
                    if !new.is_empty() {
                        problems.push(format!("warnings the clean run did not give: {new:?}"));
                    }
                }
                Expect::SameWarn(text) => {
                    let (mut a, mut b) = (data_files(&night), data_files(&clean));
                    a.remove("report.html");
                    b.remove("report.html");
                    if a != b {
                        problems.push("outputs differ from the clean run's".into());
                    }
                    if !warned(text) {
                        problems.push(format!("no warning about {text:?}: {warnings:?}"));
                    }
                }
                Expect::Warn(text) => {
                    if !warned(text) {
                        problems.push(format!("no warning about {text:?}: {warnings:?}"));
                    }
                }
                Expect::Changed => {
                    if same {
                        problems.push("outputs equal the clean run's although the data changed".into());
                    }
                }
            }
        }
        if tree(&out.path().join(format!("as_of={PREV}"))) != previous {
            problems.push("previous night changed".into());
        }
        let leftovers: Vec<String> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-") || n.contains(".old-"))
            .collect();
        if !leftovers.is_empty() {
            problems.push(format!("staging left behind: {leftovers:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!("{name}: {}", problems.join("; ")));
        }
        let _ = std::fs::remove_dir_all(&night);
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// Regression: the kernel keeps a process's children's peak memory across `exec`, so a night
/// started by `cargo run` right after a build (cargo execs the binary once rustc, its child,
/// has linked it) recorded rustc's 1.4 GB as its own peak in the manifest. Here a shell runs a
/// 400 MB child, then execs the night: its recorded peak is its own.
#[test]
fn the_manifests_peak_memory_is_the_nights_own() {
    let Some(py) = crate::tools::require_python(&["os"]) else { return };
    let out = tempfile::tempdir().unwrap();
    let script = format!(
        "'{}' -c 'b = bytearray(400 << 20); b[::4096] = b\"x\" * len(b[::4096])' && exec \"$@\"",
        py.display()
    );
    let o = Command::new("sh")
        .args(["-c", &script, "sh"])
        .arg(bin())
        .args(["run", "--input", small_input().to_str().unwrap(), "--out", out.path().to_str().unwrap()])
        .args(["--as-of", SMALL_AS_OF, "--config", fast_config().to_str().unwrap()])
        .output()
        .unwrap();
    expect_code(&o, 0);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.path().join(format!("as_of={SMALL_AS_OF}")).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let peaks: Vec<f64> =
        manifest["timings"]["stages"].as_array().unwrap().iter().map(|s| s["peak_rss_mb"].as_f64().unwrap()).collect();
    assert!(!peaks.is_empty() && peaks.iter().all(|&p| p < 300.0), "{peaks:?}");
}

#[test]
fn bad_config_and_unwritable_output_have_their_codes() {
    fast();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[alerts]\nrisk_treshold = 0.2\n").unwrap();
    let input = tiny_input().to_str().unwrap();
    let o = lanewatch(&[
        "run",
        "--input",
        input,
        "--out",
        dir.path().join("o").to_str().unwrap(),
        "--as-of",
        NIGHT,
        "--config",
        cfg.to_str().unwrap(),
    ]);
    expect_code(&o, 78);
    assert!(stderr(&o).contains("alerts.risk_treshold"));
    let o = lanewatch_env(
        &run_args(input, dir.path().join("o").to_str().unwrap(), NIGHT),
        &[("LANEWATCH_MODEL__HOLDOUT_DAYS", "oops")],
    );
    expect_code(&o, 78);
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let o = lanewatch(&run_args(input, file.to_str().unwrap(), NIGHT));
    expect_code(&o, 73);
    let o = lanewatch(&["run", "--bogus"]);
    expect_code(&o, 2);
    let o = lanewatch(&["--help"]);
    expect_code(&o, 0);
    assert!(stdout(&o).contains("75  output locked"));
}

#[test]
fn a_panic_is_exit_70_and_leaves_nothing_behind() {
    fast();
    let out = tempfile::tempdir().unwrap();
    let input = tiny_input().to_str().unwrap();
    expect_code(&lanewatch(&run_args(input, out.path().to_str().unwrap(), PREV)), 0);
    let before = tree(out.path());
    for stage in ["features", "train", "write"] {
        let o = lanewatch_env(
            &run_args(input, out.path().to_str().unwrap(), PREV),
            &[("LANEWATCH_FAULT", &format!("panic:{stage}"))],
        );
        assert_eq!(code(&o), 70, "{}", stderr(&o));
        let last = stderr(&o).lines().last().unwrap_or("").to_string();
        assert!(last.starts_with("lanewatch: internal error: panic") && last.contains(stage), "{last}");
        assert!(!stderr(&o).contains("stack backtrace"));
        let mut after = tree(out.path());
        after.remove(".lanewatch.lock");
        let mut b = before.clone();
        b.remove(".lanewatch.lock");
        assert_eq!(after, b, "a panic in {stage} changed the output folder");
    }
}

/// The same run at one and two threads writes the same bytes.
#[test]
fn runs_are_identical_at_any_thread_count() {
    fast();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let input = small_input().to_str().unwrap();
    for (out, n) in [(&a, "1"), (&b, "2")] {
        let o = lanewatch_env(
            &run_args(input, out.path().to_str().unwrap(), SMALL_AS_OF),
            &[("RAYON_NUM_THREADS", n), ("POLARS_MAX_THREADS", n)],
        );
        expect_code(&o, 0);
    }
    let night = format!("as_of={SMALL_AS_OF}");
    assert_same_run(&a.path().join(&night), &b.path().join(&night));
}

/// Large enough (over 1,048,576 events) that validation maps event ids to shipments in several
/// parallel slices: 1, 2 and 4 threads still write the same bytes.
#[test]
fn large_runs_are_identical_at_1_2_and_4_threads() {
    fast();
    let input = tempfile::tempdir().unwrap();
    lanewatch::generate::generate(
        &lanewatch::generate::GenerateParams::new(125_000, 12, date("2026-03-01"), 120),
        input.path(),
    )
    .unwrap();
    let as_of = "2026-06-10";
    let outs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    for (out, n) in outs.iter().zip(["1", "2", "4"]) {
        let o = lanewatch_env(
            &run_args(input.path().to_str().unwrap(), out.path().to_str().unwrap(), as_of),
            &[("RAYON_NUM_THREADS", n), ("POLARS_MAX_THREADS", n)],
        );
        expect_code(&o, 0);
    }
    let night = format!("as_of={as_of}");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(outs[0].path().join(&night).join("manifest.json")).unwrap()).unwrap();
    let events: u64 = m["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["table"] == "events")
        .map(|f| f["rows"].as_u64().unwrap())
        .sum();
    assert!(events > 1 << 20, "{events} events do not reach a second slice");
    assert_same_run(&outs[0].path().join(&night), &outs[1].path().join(&night));
    assert_same_run(&outs[0].path().join(&night), &outs[2].path().join(&night));
}

#[test]
fn a_held_lock_is_exit_75_naming_the_holder() {
    fast();
    let out = tempfile::tempdir().unwrap();
    let lock = lanewatch::output::OutputLock::acquire(out.path(), "2026-11-27T02:15:00Z").unwrap();
    let o = lanewatch(&run_args(tiny_input().to_str().unwrap(), out.path().to_str().unwrap(), NIGHT));
    expect_code(&o, 75);
    let last = stderr(&o).lines().last().unwrap().to_string();
    assert!(last.contains(&format!("pid {}", std::process::id())) && last.contains("2026-11-27T02:15:00Z"), "{last}");
    drop(lock);
    expect_code(&lanewatch(&run_args(tiny_input().to_str().unwrap(), out.path().to_str().unwrap(), NIGHT)), 0);
}

/// Regression: a backtest took no lock, so two on one folder interleaved the renames of their
/// three files. A held backtest lock is 75; a nightly run's lock does not hold a backtest back.
#[test]
fn a_backtest_takes_its_own_lock() {
    fast();
    let out = tempfile::tempdir().unwrap();
    let args = ["--from", "2026-09-01", "--to", "2026-09-01"];
    let lock = lanewatch::output::OutputLock::acquire_file(
        out.path(),
        lanewatch::output::BACKTEST_LOCK_FILE,
        "2026-11-27T02:15:00Z",
    )
    .unwrap();
    let o = lanewatch_fast("backtest", small_input(), out.path(), &args);
    expect_code(&o, 75);
    assert!(stderr(&o).contains("2026-11-27T02:15:00Z"), "{}", stderr(&o));
    assert!(!out.path().join("backtest.json").exists());
    drop(lock);
    let nightly = lanewatch::output::OutputLock::acquire(out.path(), "2026-11-27T02:15:00Z").unwrap();
    expect_code(&lanewatch_fast("backtest", small_input(), out.path(), &args), 0);
    assert!(out.path().join("backtest.json").exists());
    drop(nightly);
    // A missing input is 66 before the lock: no output folder, no lock file left behind.
    let fresh = out.path().join("fresh");
    expect_code(&lanewatch_fast("backtest", &out.path().join("no-such-input"), &fresh, &args), 66);
    assert!(!fresh.exists());
}

/// Two runs started together on one output: one succeeds, the other is turned away with 75.
#[test]
fn concurrent_runs_one_wins_one_gets_75() {
    fast();
    let out = tempfile::tempdir().unwrap();
    let input = sample_data();
    let spawn = || {
        Command::new(bin())
            .args(run_args(input.to_str().unwrap(), out.path().to_str().unwrap(), "2026-11-20"))
            .env_remove("LANEWATCH_FAULT")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (p1, p2) = (spawn(), spawn());
    let (o1, o2) = (p1.wait_with_output().unwrap(), p2.wait_with_output().unwrap());
    let mut codes = vec![code(&o1), code(&o2)];
    codes.sort();
    assert_eq!(codes, [0, 75], "{}\n{}", stderr(&o1), stderr(&o2));
    assert!(out.path().join("as_of=2026-11-20/_SUCCESS").is_file());
}

/// What the night's folder holds after a kill: the earlier complete output, the new one, or
/// something else (a failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Previous,
    New,
}

fn seen(
    out: &Path,
    night: &str,
    previous: &std::collections::BTreeMap<String, Vec<u8>>,
    new: &std::collections::BTreeMap<String, Vec<u8>>,
    what: &str,
) -> Seen {
    let dir = out.join(night);
    assert!(dir.join("_SUCCESS").is_file(), "{what}: the night has no complete folder");
    let got = data_files(&dir);
    if &got == previous {
        Seen::Previous
    } else {
        assert!(&got == new, "{what}: the night is neither the earlier output nor the new one");
        Seen::New
    }
}

/// SIGKILL in every stage and at every step of the commit, with and without an atomic exchange
/// of folders (the fallback publishes through a symbolic link), and at random moments: the
/// night's folder is always the earlier complete output (byte for byte) until the new one is in
/// place, then the new one; a rerun matches an uninterrupted run.
#[test]
fn killed_runs_never_leave_a_partial_night() {
    fast();
    let input = small_input().to_str().unwrap();
    let reference = tempfile::tempdir().unwrap();
    let started = Instant::now();
    expect_code(&lanewatch(&run_args(input, reference.path().to_str().unwrap(), SMALL_AS_OF)), 0);
    let full = started.elapsed();
    let night = format!("as_of={SMALL_AS_OF}");
    let want = data_files(&reference.path().join(&night));

    for fallback in [false, true] {
        let mode = if fallback { "no_exchange" } else { "exchange" };
        let extra = if fallback { ",no_exchange" } else { "" };
        // The crash folder starts with an older output of the same night (another seed).
        let out = tempfile::tempdir().unwrap();
        let older = |out: &Path| {
            let mut args = run_args(input, out.to_str().unwrap(), SMALL_AS_OF);
            args.extend(["--seed", "99"]);
            expect_code(&lanewatch_env(&args, &[("LANEWATCH_FAULT", extra.trim_start_matches(','))]), 0);
        };
        older(out.path());
        let previous = data_files(&out.path().join(&night));
        assert_ne!(previous, want);
        if fallback {
            let link = std::fs::symlink_metadata(out.path().join(&night)).unwrap();
            assert!(link.file_type().is_symlink(), "the fallback publishes the night as a link");
        }
        // Kills at every stage and commit step, in order: the new output appears exactly when
        // the swap has happened.
        let points = [
            "validate",
            "features",
            "train",
            "score",
            "alerts",
            "write",
            "commit:begin",
            "commit:success",
            "commit:swapped",
        ];
        let mut outcome = Vec::new();
        for point in points {
            let o = lanewatch_env(
                &run_args(input, out.path().to_str().unwrap(), SMALL_AS_OF),
                &[("LANEWATCH_FAULT", &format!("kill:{point}{extra}"))],
            );
            assert_eq!(o.status.code(), None, "{mode} {point}: the run was not killed: {}", stderr(&o));
            let s = seen(out.path(), &night, &previous, &want, &format!("{mode}, kill at {point}"));
            outcome.push((point, s));
            if s == Seen::New {
                older(out.path());
            }
        }
        let expected: Vec<(&str, Seen)> =
            points.iter().map(|&p| (p, if p == "commit:swapped" { Seen::New } else { Seen::Previous })).collect();
        assert_eq!(outcome, expected, "{mode}");

        // Random moments, for whatever the fixed points miss.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026 + fallback as u64);
        for _ in 0..8 {
            let delay = Duration::from_micros(rng.gen_range(0..(full.as_micros() as u64 * 11 / 10).max(1)));
            let mut child = Command::new(bin())
                .args(run_args(input, out.path().to_str().unwrap(), SMALL_AS_OF))
                .env("LANEWATCH_FAULT", extra.trim_start_matches(','))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(delay);
            let _ = child.kill();
            let _ = child.wait();
            if seen(out.path(), &night, &previous, &want, &format!("{mode}, kill after {delay:?}")) == Seen::New {
                older(out.path());
            }
        }
        let o = lanewatch_env(
            &run_args(input, out.path().to_str().unwrap(), SMALL_AS_OF),
            &[("LANEWATCH_FAULT", extra.trim_start_matches(','))],
        );
        expect_code(&o, 0);
        assert_same_run(&out.path().join(&night), &reference.path().join(&night));
        let stale: Vec<String> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-") || n.contains(".old-") || n.contains(".link-") || n.contains(".v-aside-"))
            .collect();
        assert!(stale.is_empty(), "{mode}: a completed run should clear what crashed runs left: {stale:?}");
        let versions = std::fs::read_dir(out.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".v-"))
            .count();
        assert_eq!(versions, fallback as usize, "{mode}: exactly the published version is kept");
    }
}

/// Without an atomic exchange, an output folder from a run that had one is migrated to a link;
/// a kill in that one window is repaired by the next run before it does anything else.
#[test]
fn an_interrupted_migration_to_the_link_layout_is_repaired() {
    fast();
    let input = tiny_input().to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    expect_code(&lanewatch(&run_args(input, out.path().to_str().unwrap(), PREV)), 0);
    let night = format!("as_of={PREV}");
    let before = data_files(&out.path().join(&night));
    let o = lanewatch_env(
        &run_args(input, out.path().to_str().unwrap(), PREV),
        &[("LANEWATCH_FAULT", "kill:commit:migrate,no_exchange")],
    );
    assert_eq!(o.status.code(), None);
    // The documented window: the folder is aside, complete.
    assert!(std::fs::symlink_metadata(out.path().join(&night)).is_err());
    // Any later run on the output restores it first, even one that then fails.
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(bad.path().join("shipments.parquet"), b"junk").unwrap();
    std::fs::write(bad.path().join("events.parquet"), b"junk").unwrap();
    expect_code(&lanewatch(&run_args(bad.path().to_str().unwrap(), out.path().to_str().unwrap(), NIGHT)), 65);
    assert_eq!(data_files(&out.path().join(&night)), before);
    // A run that fails in that window (here a panic) puts the folder back itself
    // (regression: the night had no folder until the next run).
    let o = lanewatch_env(
        &run_args(input, out.path().to_str().unwrap(), PREV),
        &[("LANEWATCH_FAULT", "panic:commit:migrate,no_exchange")],
    );
    expect_code(&o, 70);
    assert!(std::fs::symlink_metadata(out.path().join(&night)).unwrap().is_dir());
    assert_eq!(data_files(&out.path().join(&night)), before);
}

#[test]
fn json_logs_have_one_object_per_line_with_stage_timings() {
    fast();
    let out = tempfile::tempdir().unwrap();
    let mut args = run_args(tiny_input().to_str().unwrap(), out.path().to_str().unwrap(), NIGHT);
    args.push("--log-format");
    args.push("json");
    let o = lanewatch(&args);
    expect_code(&o, 0);
    let mut stages = Vec::new();
    for line in stderr(&o).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if let Some(s) = v.get("stage").and_then(|s| s.as_str()) {
            assert!(v.get("rows").is_some() && v.get("seconds").is_some(), "{line}");
            stages.push(s.to_string());
        }
    }
    assert_eq!(stages, ["validate", "state", "features", "train", "score", "alerts", "advice", "write"]);
}

/// Regression: the failure line of a night logging JSON went through the log filter, and
/// `LANEWATCH_LOG=off` (or a filter naming one module) left cron's log without it.
#[test]
fn a_json_night_reports_its_failure_whatever_the_log_filter() {
    fast();
    let out = tempfile::tempdir().unwrap();
    let missing = out.path().join("nowhere");
    let mut args = run_args(missing.to_str().unwrap(), out.path().to_str().unwrap(), NIGHT);
    args.extend(["--log-format", "json"]);
    for filter in ["off", "", "lanewatch::state=debug"] {
        let o = lanewatch_env(&args, &[("LANEWATCH_LOG", filter)]);
        expect_code(&o, 66);
        let last = stderr(&o).lines().last().map(str::to_string).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&last).unwrap_or_else(|e| panic!("{filter:?}: not JSON ({e}): {last}"));
        assert_eq!((v["level"].as_str(), v["exit_code"].as_i64()), (Some("ERROR"), Some(66)), "{filter:?}: {last}");
        assert!(v["message"].as_str().unwrap().contains("nowhere"), "{last}");
    }
}

/// Regression: `LANEWATCH_LOG` set to a word that is no level (`debgu`) was read as a target's
/// filter, and an empty one as no filter: either hid every warning of a cron night. A word that
/// is no level is a config error; empty logs at info.
#[test]
fn a_log_filter_that_names_no_level_is_refused() {
    fast();
    let dir = tempfile::tempdir().unwrap();
    let night = |name: &str, filter: &str| {
        let out = dir.path().join(name);
        let o = lanewatch_env(&run_args(tiny_input().to_str().unwrap(), out.to_str().unwrap(), NIGHT), &[(
            "LANEWATCH_LOG",
            filter,
        )]);
        (o, out)
    };
    for (k, filter) in ["debgu", "warn,nonsense"].into_iter().enumerate() {
        let (o, out) = night(&format!("refused{k}"), filter);
        expect_code(&o, 78);
        let last = stderr(&o).lines().last().unwrap_or_default().to_string();
        assert!(last.contains("LANEWATCH_LOG=") && last.contains("is not a log level"), "{filter}: {last}");
        assert!(!out.exists(), "{filter}: the night ran");
    }
    for (k, filter) in ["", "WARN", "lanewatch=debug"].into_iter().enumerate() {
        let (o, _) = night(&format!("ran{k}"), filter);
        expect_code(&o, 0);
        if filter.is_empty() {
            assert!(stderr(&o).contains("stage done"), "an empty filter does not log at info: {}", stderr(&o));
        }
    }
}

/// Regression: the previous night's alerts, unreadable, were named in the manifest only (as an
/// internal error): a cron log showed nothing while every alert started afresh.
#[test]
fn an_unreadable_previous_night_is_a_logged_warning() {
    fast();
    let out = tempfile::tempdir().unwrap();
    let input = tiny_input().to_str().unwrap();
    let o = lanewatch_env(&run_args(input, out.path().to_str().unwrap(), "2026-07-24"), &[]);
    expect_code(&o, 0);
    let alerts = out.path().join("as_of=2026-07-24/alerts.parquet");
    let bytes = std::fs::read(&alerts).unwrap();
    std::fs::write(&alerts, &bytes[..100]).unwrap();
    let o = lanewatch_env(&run_args(input, out.path().to_str().unwrap(), NIGHT), &[]);
    expect_code(&o, 0);
    let line = stderr(&o).lines().find(|l| l.contains("unreadable, alerts start fresh")).map(str::to_string);
    let line = line.unwrap_or_else(|| panic!("no warning logged: {}", stderr(&o)));
    assert!(line.contains("WARN") && line.contains("alerts.parquet") && !line.contains("internal error"), "{line}");
}

/// Regression: a night whose stdout was gone by the time it printed its summary (`| head`,
/// a full disk under cron's log) panicked in `println!` and exited 70 with its night committed.
#[test]
fn a_night_whose_stdout_is_gone_still_succeeds() {
    fast();
    let out = tempfile::tempdir().unwrap();
    let args = run_args(tiny_input().to_str().unwrap(), out.path().to_str().unwrap(), NIGHT);
    let mut cmd = std::process::Command::new(bin());
    cmd.args(&args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LANEWATCH_")) {
        cmd.env_remove(k);
    }
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    expect_code(&o, 0);
    assert!(out.path().join(format!("as_of={NIGHT}/_SUCCESS")).exists());
}

/// A memory budget no split of the night can meet (tests/integration/budget.rs runs one that
/// can) is refused from the footers, before anything is decoded, and the previous output stays.
#[test]
fn a_memory_budget_below_any_part_is_refused_up_front() {
    fast();
    let out = tempfile::tempdir().unwrap();
    let input = tiny_input().to_str().unwrap();
    expect_code(&lanewatch(&run_args(input, out.path().to_str().unwrap(), PREV)), 0);
    let before = tree(out.path());
    let o = lanewatch_env(
        &run_args(input, out.path().to_str().unwrap(), NIGHT),
        &[("LANEWATCH_INPUT__MAX_MEMORY_GB", "0.00001")],
    );
    expect_code(&o, 78);
    assert!(stderr(&o).lines().last().unwrap().contains("input.max_memory_gb"), "{}", stderr(&o));
    let mut after = tree(out.path());
    after.remove(".lanewatch.lock");
    let mut b = before;
    b.remove(".lanewatch.lock");
    assert_eq!(after, b);
}
