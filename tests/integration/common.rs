//! Helpers shared by the integration tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use chrono::NaiveDate;
use lanewatch::calendar::Night;
use lanewatch::config::{Config, Overrides};
use lanewatch::generate::generate;
use lanewatch::settings::Settings;
use lanewatch::validate::CleanInput;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lanewatch"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fast_config() -> PathBuf {
    repo().join("tests/fixtures/fast.toml")
}

pub fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

pub fn night(s: &str) -> Night {
    Night::new(date(s))
}

/// Settings from a config file (or the defaults), `LANEWATCH_*`-style settings and overrides.
pub fn settings_with(file: Option<&Path>, env: &[(&str, &str)], over: Overrides) -> Settings {
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Settings::resolve(Config::load(file, &env, &over).unwrap()).unwrap()
}

/// Settings for `input` with the fast test config and extra `LANEWATCH_*` settings.
pub fn fast_settings(input: &Path, env: &[(&str, &str)]) -> Settings {
    settings_with(Some(&fast_config()), env, Overrides { input: Some(input.to_path_buf()), ..Default::default() })
}

/// The validated input the settings point at.
pub fn load(s: &Settings) -> CleanInput {
    lanewatch::night::load(&s.input, &s.input_cfg, &s.vocab).unwrap().1
}

/// Runs the binary with `args`, no inherited LANEWATCH_* settings.
pub fn lanewatch(args: &[&str]) -> Output {
    lanewatch_env(args, &[])
}

pub fn lanewatch_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("LANEWATCH_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run lanewatch")
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `lanewatch COMMAND --input INPUT --out OUT ARGS… --config tests/fixtures/fast.toml`.
pub fn lanewatch_fast(command: &str, input: &Path, out: &Path, args: &[&str]) -> Output {
    lanewatch_fast_env(command, input, out, args, &[])
}

/// `lanewatch_fast` with extra `LANEWATCH_*` variables.
pub fn lanewatch_fast_env(command: &str, input: &Path, out: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let cfg = fast_config();
    let mut all = vec![command, "--input", input.to_str().unwrap(), "--out", out.to_str().unwrap()];
    all.extend_from_slice(args);
    all.extend(["--config", cfg.to_str().unwrap()]);
    lanewatch_env(&all, env)
}

/// Fails with the command's output when it did not exit as expected.
pub fn expect_code(o: &Output, want: i32) {
    assert_eq!(code(o), want, "stdout:\n{}\nstderr:\n{}", stdout(o), stderr(o));
    assert!(!stderr(o).contains("panicked"), "panic message leaked: {}", stderr(o));
}

/// A fixture folder that `build` fills once per test binary, shared by the processes nextest
/// starts (one per test) under CARGO_TARGET_TMPDIR, rather than built again by each and left
/// in /tmp. Its name carries the test executable's size and modification time: a rebuilt test
/// binary (whose generator may differ) builds its own, and removes the older ones.
pub fn fixture(name: &str, build: impl FnOnce(&Path)) -> PathBuf {
    let exe = std::fs::metadata(std::env::current_exe().unwrap()).unwrap();
    let mtime = exe.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
    std::fs::create_dir_all(&root).unwrap();
    let current = format!("{name}-{}-{mtime}", exe.len());
    let dir = root.join(&current);
    if !dir.is_dir() {
        let tmp = tempfile::Builder::new().prefix(&format!(".{name}-")).tempdir_in(&root).unwrap();
        build(tmp.path());
        let tmp = tmp.keep();
        // Another process may have published the same fixture first: keep theirs.
        if std::fs::rename(&tmp, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        for old in std::fs::read_dir(&root).unwrap().flatten() {
            let n = old.file_name().to_string_lossy().into_owned();
            if n.starts_with(&format!("{name}-")) && n != current {
                let _ = std::fs::remove_dir_all(old.path());
            }
        }
    }
    assert!(dir.is_dir(), "fixture {name} was not built");
    dir
}

/// A small synthetic input (3,000 shipments over 120 days), generated once per test binary.
pub fn small_input() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        fixture("small", |dir| {
            generate(&lanewatch::generate::GenerateParams::new(3000, 11, date("2026-06-01"), 120), dir).unwrap();
        })
    })
}

/// The night used with `small_input`: after most shipments have resolved, with some in flight.
pub const SMALL_AS_OF: &str = "2026-09-20";

pub fn sample_data() -> PathBuf {
    repo().join("sample_data")
}

/// Copies the folder `from`, subfolders too, to `to` (created).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Copies the files of an input folder (not subfolders) into a new temporary folder.
pub fn copy_input(from: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
    }
    dir
}

/// Every file under `dir`, relative path → bytes.
pub fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(p.strip_prefix(base).unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

/// Asserts two run folders hold the same files with the same bytes, except the manifest
/// (wall-clock times and the output path), whose other fields are compared instead.
pub fn assert_same_run(a: &Path, b: &Path) {
    let (ta, tb) = (tree(a), tree(b));
    let names_a: Vec<&String> = ta.keys().collect();
    let names_b: Vec<&String> = tb.keys().collect();
    assert_eq!(names_a, names_b, "different files");
    for (name, bytes) in &ta {
        if name == "manifest.json" {
            let strip = |v: &[u8]| {
                let mut j: serde_json::Value = serde_json::from_slice(v).unwrap();
                for k in ["started_at", "finished_at", "timings", "state"] {
                    j.as_object_mut().unwrap().remove(k);
                }
                // Where the run was written is not part of what it computed.
                j["config"]["pipeline"].as_object_mut().unwrap().remove("out");
                j
            };
            assert_eq!(strip(bytes), strip(&tb[name]), "manifest data differs");
        } else {
            assert!(bytes == &tb[name], "{name} differs");
        }
    }
}

pub fn read_parquet(path: &Path) -> polars::prelude::DataFrame {
    use polars::prelude::*;
    ParquetReader::new(std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .finish()
        .unwrap()
}

pub fn write_parquet(df: &mut polars::prelude::DataFrame, path: &Path) {
    lanewatch::io::write_parquet(df, path).unwrap();
}

/// Every file of a run folder but `manifest.json` (wall-clock times, input paths and hashes).
pub fn data_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut t = tree(dir);
    t.remove("manifest.json");
    t
}

/// Asserts two run folders computed the same thing: every file but the manifest byte-identical.
pub fn assert_same_data(a: &Path, b: &Path, what: &str) {
    let (ta, tb) = (data_files(a), data_files(b));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>(), "{what}: different files");
    for (name, bytes) in &ta {
        assert!(bytes == &tb[name], "{what}: {name} differs");
    }
}

/// Runs the nightly job on `input` with the fast config and extra `LANEWATCH_*` settings, and
/// returns the run folder.
pub fn run_night(input: &Path, out: &Path, as_of: &str, env: &[(&str, &str)]) -> PathBuf {
    let cfg = fast_config();
    let args = [
        "run",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--as-of",
        as_of,
        "--config",
        cfg.to_str().unwrap(),
    ];
    expect_code(&lanewatch_env(&args, env), 0);
    out.join(format!("as_of={as_of}"))
}

/// A string column's values, a null as "".
pub fn strings(df: &polars::prelude::DataFrame, c: &str) -> Vec<String> {
    df.column(c).unwrap().str().unwrap().iter().map(|v| v.unwrap_or("").to_string()).collect()
}

/// The warnings a run recorded in its manifest.
pub fn manifest_warnings(run: &Path) -> Vec<String> {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
    m["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap().to_string()).collect()
}

/// Reads a Parquet file with arrow-rs (any Arrow type, e.g. fixed-offset zones or dictionaries).
pub fn read_arrow(path: &Path) -> arrow::record_batch::RecordBatch {
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// Writes a record batch as Parquet with arrow-rs.
pub fn write_arrow(batch: &arrow::record_batch::RecordBatch, path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// Replaces column `name` of `batch` with `f(column)` (which may change its type).
pub fn map_arrow_column(
    batch: &arrow::record_batch::RecordBatch,
    name: &str,
    f: impl FnOnce(&arrow::array::ArrayRef) -> arrow::array::ArrayRef,
) -> arrow::record_batch::RecordBatch {
    use std::sync::Arc;
    let schema = batch.schema();
    let idx = schema.index_of(name).unwrap();
    let mut cols: Vec<arrow::array::ArrayRef> = batch.columns().to_vec();
    cols[idx] = f(&cols[idx]);
    let fields: Vec<arrow::datatypes::Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(k, fd)| {
            if k == idx { fd.as_ref().clone().with_data_type(cols[k].data_type().clone()) } else { fd.as_ref().clone() }
        })
        .collect();
    arrow::record_batch::RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), cols).unwrap()
}

/// Rewrites a text column from each row's value.
pub fn set_str(df: &mut polars::prelude::DataFrame, col: &str, f: impl Fn(usize, Option<&str>) -> Option<String>) {
    let v: Vec<Option<String>> =
        df.column(col).unwrap().str().unwrap().iter().enumerate().map(|(i, s)| f(i, s)).collect();
    df.with_column(polars::prelude::Column::new(col.into(), v)).unwrap();
}

/// Rewrites a timestamp column from its µs values.
pub fn set_time(df: &mut polars::prelude::DataFrame, col: &str, f: impl Fn(usize, Option<i64>) -> Option<i64>) {
    let t = df.column(col).unwrap().as_materialized_series().to_physical_repr().into_owned();
    let v: Vec<Option<i64>> = t.i64().unwrap().iter().enumerate().map(|(i, v)| f(i, v)).collect();
    df.with_column(lanewatch::io::ts_column(col, v)).unwrap();
}
