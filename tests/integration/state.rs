//! The state between nights (`OUT/state/`): incremental nights equal full refreshes byte for
//! byte, late events and late shipments included; a damaged or mismatched state is rebuilt with
//! a warning; a night killed at any moment leaves a state that agrees with the run folders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDate};
use polars::prelude::*;

use crate::common::*;

const DAY_US: i64 = 86_400_000_000;

/// A partitioned copy of an input, by the day each row "arrives": events on the day of their
/// scan, every 9th event 12 days late (a carrier's backlog for shipments long known); shipments
/// on their creation day, every 7th a day late (its first events arrive before it).
struct Arrivals {
    /// Day → files (path relative to the input folder, rows).
    by_day: BTreeMap<NaiveDate, Vec<(String, DataFrame)>>,
    /// Day → rows arriving late that day.
    late: BTreeMap<NaiveDate, usize>,
}

fn day_of(us: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + Duration::days(us.div_euclid(DAY_US))
}

fn split(df: &DataFrame, time_col: &str, table: &str, late_every: usize, late_days: i64, out: &mut Arrivals) {
    let t = df.column(time_col).unwrap().as_materialized_series().to_physical_repr().into_owned();
    let days: Vec<NaiveDate> = t
        .i64()
        .unwrap()
        .into_no_null_iter()
        .enumerate()
        .map(|(k, us)| {
            if k % late_every == late_every - 1 {
                *out.late.entry(day_of(us) + Duration::days(late_days)).or_default() += 1;
                day_of(us) + Duration::days(late_days)
            } else {
                day_of(us)
            }
        })
        .collect();
    let mut unique = days.clone();
    unique.sort();
    unique.dedup();
    for d in unique {
        let mask: BooleanChunked = days.iter().map(|x| *x == d).collect();
        let part = df.filter(&mask).unwrap();
        let rel = format!("{table}/date={d}/part-0.parquet");
        out.by_day.entry(d).or_default().push((rel, part));
    }
}

fn arrivals(input: &Path) -> Arrivals {
    arrivals_with(input, true, true)
}

/// `arrivals`, with shipments or events each arriving on their own day where not `late_*`.
fn arrivals_with(input: &Path, late_ships: bool, late_events: bool) -> Arrivals {
    let mut a = Arrivals { by_day: BTreeMap::new(), late: BTreeMap::new() };
    let (ships, events) = (if late_ships { 7 } else { usize::MAX }, if late_events { 9 } else { usize::MAX });
    split(&read_parquet(&input.join("shipments.parquet")), "created_at", "shipments", ships, 1, &mut a);
    split(&read_parquet(&input.join("events.parquet")), "event_time", "events", events, 12, &mut a);
    a
}

impl Arrivals {
    /// Writes into `live` the partitions that arrived after `from` and up to `to`; returns how
    /// many files were written.
    fn deliver(&self, live: &Path, from: Option<NaiveDate>, to: NaiveDate) -> usize {
        let mut n = 0;
        for (d, files) in &self.by_day {
            if from.is_some_and(|f| *d <= f) || *d > to {
                continue;
            }
            for (rel, df) in files {
                let path = live.join(rel);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                write_parquet(&mut df.clone(), &path);
                n += 1;
            }
        }
        n
    }
}

fn manifest(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap()
}

fn run_full_refresh(input: &Path, out: &Path, as_of: &str) -> PathBuf {
    let o = lanewatch_fast("run", input, out, &["--as-of", as_of, "--full-refresh"]);
    expect_code(&o, 0);
    out.join(format!("as_of={as_of}"))
}

/// The generation `CURRENT` names (on its first line).
fn current_name(out: &Path) -> Option<String> {
    let text = std::fs::read_to_string(out.join("state/CURRENT")).ok()?;
    Some(text.lines().next().unwrap_or("").trim().to_string())
}

/// The generation `CURRENT` names, with every segment it lists present.
fn current_generation(out: &Path) -> Option<String> {
    let name = current_name(out)?;
    let g: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("state").join(&name)).unwrap()).unwrap();
    // Events files the kept checks hold have no segment rows (an empty name).
    let checked = ["events", "counts", "unmapped", "orphans"].map(|k| g["checked"][k].as_str().unwrap().to_string());
    for data in ["shipments", "events"]
        .iter()
        .flat_map(|t| g[*t].as_array().unwrap().iter().map(|s| s["data"].as_str().unwrap().to_string()))
        .filter(|d| !d.is_empty())
        .chain(checked)
    {
        assert!(out.join("state/segments").join(&data).is_file(), "{name} lists a missing segment {data}");
    }
    Some(name)
}

/// A kept record's JSON (`model.json`, `lane-tables.json`, `digest.json`): the file less its
/// last line, `blake3:<hex>` of the JSON.
fn record(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let (json, seal) = text.trim_end().rsplit_once('\n').unwrap();
    assert!(seal.starts_with("blake3:"), "{seal}");
    serde_json::from_str(json).unwrap()
}

/// A record as lanewatch seals it.
fn sealed(v: &serde_json::Value) -> Vec<u8> {
    let json = serde_json::to_vec(v).unwrap();
    let mut out = json.clone();
    out.extend_from_slice(format!("\nblake3:{}\n", blake3::hash(&json).to_hex()).as_bytes());
    out
}

/// The kept tables' and days' files the index names, each with its inode (a file written again
/// gets a new one), after checking that no other kept-table file is left beside them.
fn kept_tiles(out: &Path) -> BTreeMap<String, u64> {
    use std::os::unix::fs::MetadataExt;
    let dir = out.join("state");
    let ix = record(&dir.join("lane-tables.json"));
    let named: BTreeMap<String, u64> = ["tables", "days"]
        .iter()
        .flat_map(|k| ix[*k].as_array().unwrap().iter())
        .map(|t| {
            let name = t["data"].as_str().unwrap().to_string();
            let ino = std::fs::metadata(dir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}")).ino();
            (name, ino)
        })
        .collect();
    let unnamed: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".parquet") && (n.starts_with("lane-table") || n.starts_with("series-day")))
        .filter(|n| !named.contains_key(n))
        .collect();
    assert!(unnamed.is_empty(), "kept-table files the index does not name: {unnamed:?}");
    named
}

const FIRST_NIGHT: &str = "2026-09-08";

/// Ten consecutive nights on an input that grows by a day of partitions each night, late
/// events and late shipments included: every night read through the state equals a full
/// refresh of the same input, byte for byte (manifest aside), and decodes only the new files.
#[test]
fn incremental_nights_equal_full_refreshes_with_late_arrivals() {
    let arr = arrivals(small_input());
    let live = tempfile::tempdir().unwrap();
    let (inc, full) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = date(FIRST_NIGHT);
    let mut prev: Option<NaiveDate> = None;
    let mut late_rows_read = 0;
    let mut tiles_before = BTreeMap::new();
    for k in 0..10 {
        let night = first + Duration::days(k);
        let delivered = arr.deliver(live.path(), prev, night);
        // Late rows: events of shipments created weeks before, shipments after their events.
        late_rows_read += arr.late.get(&night).copied().unwrap_or(0) * (k > 0) as usize;
        let as_of = night.to_string();
        let a = run_night(live.path(), inc.path(), &as_of, &[]);
        let b = run_full_refresh(live.path(), full.path(), &as_of);
        assert_same_data(&a, &b, &format!("night {as_of}"));
        let st = &manifest(&a)["state"];
        if k == 0 {
            assert!(st["used"].is_null() && st["full_refresh"].is_null(), "{st}");
        } else {
            assert_eq!(st["files_read"], delivered as u64, "night {as_of} decoded more than the new files: {st}");
            assert!(st["files_reused"].as_u64().unwrap() > 50, "{st}");
            assert!(st["full_refresh"].is_null(), "{st}");
            assert!(manifest_warnings(&a).iter().all(|w| !w.contains("state")), "{:?}", manifest_warnings(&a));
        }
        assert_eq!(current_generation(inc.path()).as_deref(), st["written"].as_str());
        assert!(manifest(&b)["state"]["full_refresh"].as_str().unwrap().contains("--full-refresh"));
        // Lane tables: a night's tables are on a calendar grid (the Mondays, its own on a
        // Monday), taken from the state from the second night on, except where late rows
        // changed what was known before their cutoff (events 12 days late: the grid's latest
        // one or two tables are computed).
        let (reused, computed) =
            (st["lane_tables_reused"].as_u64().unwrap(), st["lane_tables_computed"].as_u64().unwrap());
        if k == 0 {
            assert_eq!(reused, 0, "night {as_of}: {st}");
        } else {
            assert!(reused >= 10 && computed >= 1, "night {as_of}: {st}");
        }
        // Series days are the night before's, up to the first day late rows touched.
        let (days_reused, days_computed) =
            (st["series_days_reused"].as_u64().unwrap(), st["series_days_computed"].as_u64().unwrap());
        if k == 0 {
            assert_eq!(days_reused, 0, "night {as_of}: {st}");
        } else {
            assert!(days_reused >= 60 && days_computed >= 12, "night {as_of}: {st}");
        }
        // A file per kept table and day: a night writes the ones it computed, at most, and
        // leaves the files of those it hands on unchanged (the same inode).
        let tiles = kept_tiles(inc.path());
        let written = tiles.iter().filter(|(name, ino)| tiles_before.get(*name) != Some(*ino)).count() as u64;
        assert!(tiles.len() as u64 >= reused + days_reused, "night {as_of}: {} files, {st}", tiles.len());
        if k > 0 {
            assert!(written <= computed + days_computed, "night {as_of}: {written} files written, {st}");
        }
        tiles_before = tiles;
        prev = Some(night);
    }
    assert!(late_rows_read > 100, "{late_rows_read}");
    // Only the current generation and its segments are kept.
    let gens = std::fs::read_dir(inc.path().join("state")).unwrap().flatten();
    let gens: Vec<String> =
        gens.map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with("state-")).collect();
    assert_eq!(gens.len(), 1, "{gens:?}");
}

/// Regression: a state that could not be published after the run folder was committed (here
/// `CURRENT` is a folder a rename cannot replace) failed the night with exit 73, although its
/// run folder was written. It is a warning now; the next night starts from the state before.
#[test]
fn a_state_that_cannot_be_published_after_the_commit_is_a_warning() {
    let arr = arrivals(small_input());
    let (live, out) = bootstrapped(&arr, FIRST_NIGHT, &[]);
    let current = out.path().join("state/CURRENT");
    std::fs::remove_file(&current).unwrap();
    std::fs::create_dir_all(current.join("blocked")).unwrap();
    let next = (date(FIRST_NIGHT) + Duration::days(1)).to_string();
    arr.deliver(live.path(), Some(date(FIRST_NIGHT)), date(&next));
    let o = lanewatch_fast("run", live.path(), out.path(), &["--as-of", &next]);
    expect_code(&o, 0);
    assert!(stderr(&o).contains("the state was not published"), "{}", stderr(&o));
    assert!(out.path().join(format!("as_of={next}/_SUCCESS")).is_file());
}

/// Regression: a generation that could not be written (here `state/segments` is a file, as
/// a full disk or a read-only `state/` would fail it) failed the night with exit 73 before its
/// features. The night goes on with a warning and equals a night keeping no state; the state
/// before stays current, and the next night reads through it.
#[test]
fn a_state_that_cannot_be_written_is_a_warning() {
    let arr = arrivals(small_input());
    let next = (date(FIRST_NIGHT) + Duration::days(1)).to_string();
    let (_keep, want) = reference(&arr, FIRST_NIGHT, &next, None);
    let (live, out) = bootstrapped(&arr, FIRST_NIGHT, &[]);
    let before = std::fs::read(out.path().join("state/CURRENT")).unwrap();
    let used = current_name(out.path()).unwrap();
    let segments = out.path().join("state/segments");
    let moved = out.path().join("segments-aside");
    std::fs::rename(&segments, &moved).unwrap();
    std::fs::write(&segments, b"not a folder").unwrap();
    arr.deliver(live.path(), Some(date(FIRST_NIGHT)), date(&next));
    let run = run_night(live.path(), out.path(), &next, &[]);
    let w = manifest_warnings(&run);
    assert!(w.iter().any(|w| w.contains("the state was not written")), "{w:?}");
    assert!(manifest(&run)["state"]["not_written"].is_string());
    assert_same_data(&run, &want, "a state not written");
    assert_eq!(std::fs::read(out.path().join("state/CURRENT")).unwrap(), before);
    std::fs::remove_file(&segments).unwrap();
    std::fs::rename(&moved, &segments).unwrap();
    let again = run_night(live.path(), out.path(), &next, &[]);
    assert_eq!(manifest(&again)["state"]["used"], used);
    assert_same_data(&again, &want, "the night after");
}

/// The current generation's kept checks file `what` (`events`, `counts`, `unmapped`).
fn kept_checks(out: &Path, what: &str) -> PathBuf {
    let g: serde_json::Value = serde_json::from_slice(&std::fs::read(current_path(out)).unwrap()).unwrap();
    out.join("state/segments").join(g["checked"][what].as_str().unwrap())
}

/// The kept checks (`state::checked`): every night after one that wrote the sorted shipments
/// reads that night's clean events instead of the events segments it covers, and checks only
/// the rows of the files read since (late events for shipments checked nights before among
/// them), equal to a full refresh byte for byte. Kept checks that are damaged or do not add up
/// lead to a full refresh that names the reason, with the same outputs.
#[test]
fn nights_check_only_the_rows_after_their_kept_checks() {
    let arr = arrivals_with(small_input(), false, true);
    let live = tempfile::tempdir().unwrap();
    let (inc, full) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut prev: Option<NaiveDate> = None;
    let mut late_rows = 0;
    type Damage = (&'static str, fn(&Path), &'static str);
    let damages: [Option<Damage>; 11] = [
        None,
        None,
        Some(("a later events segment's bytes flipped", |out| flip(&events_segment(out).1, 3, 0x5a), "is corrupt")),
        None,
        Some((
            // Whole and matching its recorded hash, but not events: read as events it would be
            // nonsense, so the columns are checked before any segment is decoded.
            "a later events segment of other columns",
            |out| {
                let (k, seg) = events_segment(out);
                let mut df = df!("ship" => [1i64, 2], "time" => [3i64, 4]).unwrap();
                write_parquet(&mut df, &seg);
                let hash = blake3::hash(&std::fs::read(&seg).unwrap()).to_hex().to_string();
                let p = current_path(out);
                let mut g: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                g["events"][k]["data_blake3"] = hash.into();
                write_generation(out, &g);
            },
            "does not hold events",
        )),
        None,
        None,
        Some(("kept clean events' bytes flipped", |out| flip(&kept_checks(out, "events"), 3, 0x5a), "is corrupt")),
        None,
        Some((
            "kept counts that do not add up",
            |out| {
                let p = kept_checks(out, "counts");
                let mut df = read_parquet(&p);
                let mut n: Vec<u32> = df.column("events").unwrap().u32().unwrap().into_no_null_iter().collect();
                n[0] += 1;
                df.with_column(Column::new("events".into(), n)).unwrap();
                write_parquet(&mut df, &p);
                let hash = blake3::hash(&std::fs::read(&p).unwrap()).to_hex().to_string();
                let gp = current_path(out);
                let mut g: serde_json::Value = serde_json::from_slice(&std::fs::read(&gp).unwrap()).unwrap();
                g["checked"]["counts_blake3"] = hash.into();
                write_generation(out, &g);
            },
            "does not match its generation",
        )),
        None,
    ];
    for (k, damage) in damages.into_iter().enumerate() {
        let night = date("2026-08-01") + Duration::days(2 * k as i64);
        arr.deliver(live.path(), prev, night);
        late_rows += arr
            .late
            .iter()
            .filter(|(d, _)| prev.is_some_and(|p| **d > p) && **d <= night)
            .map(|(_, n)| n)
            .sum::<usize>();
        if let Some((_, d, _)) = damage {
            d(inc.path());
        }
        let as_of = night.to_string();
        let a = run_night(live.path(), inc.path(), &as_of, &[]);
        let b = run_full_refresh(live.path(), full.path(), &as_of);
        assert_same_data(&a, &b, &format!("night {as_of}"));
        let st = &manifest(&a)["state"];
        let before = st["events_files_checked_before"].as_u64().unwrap();
        match damage {
            _ if k == 0 => assert_eq!(before, 0, "night {as_of}: {st}"),
            Some((what, _, reason)) => {
                let w = manifest_warnings(&a);
                assert!(
                    w.iter().any(|w| w.contains("full refresh") && w.contains(reason)),
                    "{what}: no warning naming {reason:?}: {w:?}"
                );
                assert_eq!(before, 0, "{what}: {st}");
            }
            None => {
                assert!(before > 30, "night {as_of}: {st}");
                assert!(st["full_refresh"].is_null(), "night {as_of}: {st}");
            }
        }
        prev = Some(night);
    }
    assert!(late_rows > 100, "{late_rows}");
}

/// A live input holding the arrivals up to `night` and an output folder with that night's run
/// (`env` e.g. keeps no state).
fn bootstrapped(arr: &Arrivals, night: &str, env: &[(&str, &str)]) -> (tempfile::TempDir, tempfile::TempDir) {
    let live = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    arr.deliver(live.path(), None, date(night));
    run_night(live.path(), out.path(), night, env);
    (live, out)
}

const NO_STATE: [(&str, &str); 1] = [("LANEWATCH_STATE__INCREMENTAL", "false")];

/// `night`, then `next` after a day of arrivals (and `damage` to the input), keeping no state:
/// what a night through any state must equal.
fn reference(arr: &Arrivals, night: &str, next: &str, damage: Option<fn(&Path)>) -> (tempfile::TempDir, PathBuf) {
    let (live, out) = bootstrapped(arr, night, &NO_STATE);
    arr.deliver(live.path(), Some(date(night)), date(next));
    if let Some(d) = damage {
        d(live.path());
    }
    let run = run_night(live.path(), out.path(), next, &NO_STATE);
    assert!(!out.path().join("state").exists(), "state kept although incremental = false");
    (out, run)
}

enum Damage {
    State(fn(&Path)),
    Input(fn(&Path)),
}

/// Drops the current generation's kept checks (as a generation without them): a night then
/// reads every events segment.
fn forget_checks(out: &Path) {
    let p = current_path(out);
    let mut g: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    g["checked"] = serde_json::Value::Null;
    write_generation(out, &g);
}

/// The current generation's last events segment with rows (one read since the kept checks):
/// its place in the generation's list and its file.
fn events_segment(out: &Path) -> (usize, PathBuf) {
    let g: serde_json::Value = serde_json::from_slice(&std::fs::read(current_path(out)).unwrap()).unwrap();
    let list = g["events"].as_array().unwrap();
    let k = list.iter().rposition(|s| !s["data"].as_str().unwrap().is_empty()).expect("no events segment with rows");
    (k, out.join("state/segments").join(list[k]["data"].as_str().unwrap()))
}

fn current_path(out: &Path) -> PathBuf {
    out.join("state").join(current_name(out).expect("a state/CURRENT"))
}

/// Makes `g` the current generation, under the name its bytes' BLAKE3 gives (as lanewatch
/// names one): a generation edited where it lies no longer matches its name.
fn write_generation(out: &Path, g: &serde_json::Value) {
    let bytes = serde_json::to_vec(g).unwrap();
    let name = format!("state-{}.json", &blake3::hash(&bytes).to_hex()[..16]);
    std::fs::write(out.join("state").join(&name), bytes).unwrap();
    std::fs::write(out.join("state/CURRENT"), format!("{name}\n")).unwrap();
}

/// Rewrites the Parquet file `path` in place without some of its last rows, padded back to its
/// size, and puts its modification time back (`touch -r`): only its contents, and its
/// status-change time, say it changed.
fn rewrite_keeping_size_and_time(path: &Path) {
    use parquet::file::metadata::KeyValue;
    let meta = std::fs::metadata(path).unwrap();
    let (size, modified) = (meta.len() as usize, meta.modified().unwrap());
    let batch = read_arrow(path);
    let footer =
        parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&std::fs::File::open(path).unwrap());
    let codec = footer.unwrap().row_group(0).column(0).compression();
    let encode = |rows: usize, pad: usize| -> Vec<u8> {
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(codec)
            .set_key_value_metadata(Some(vec![KeyValue::new("pad".into(), "x".repeat(pad))]))
            .build();
        let mut w = parquet::arrow::ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props)).unwrap();
        w.write(&batch.slice(0, rows)).unwrap();
        w.into_inner().unwrap()
    };
    // Rows off the end until the file is smaller (this writer's encoding is not the input's).
    let mut cut = 1;
    while encode(batch.num_rows() - cut, 0).len() >= size {
        assert!(cut < batch.num_rows() - 1, "{}: no fewer rows make it smaller", path.display());
        cut = (2 * cut).min(batch.num_rows() - 1);
    }
    let rows = batch.num_rows() - cut;
    // The padding's length prefix grows with it: a few tries settle on the size.
    let mut pad = 0usize;
    let bytes = (0..50)
        .find_map(|_| {
            let b = encode(rows, pad);
            match b.len().cmp(&size) {
                std::cmp::Ordering::Equal => return Some(b),
                std::cmp::Ordering::Less => pad += size - b.len(),
                std::cmp::Ordering::Greater => pad -= 1,
            }
            None
        })
        .unwrap_or_else(|| panic!("{}: no padding gives {size} bytes", path.display()));
    std::fs::write(path, bytes).unwrap();
    std::fs::File::options().write(true).open(path).unwrap().set_modified(modified).unwrap();
    let after = std::fs::metadata(path).unwrap();
    assert_eq!((after.len() as usize, after.modified().unwrap()), (size, modified), "{}", path.display());
}

/// Flips the bits `mask` of the byte at `1 / at` of the file.
fn flip(path: &Path, at: usize, mask: u8) {
    let mut b = std::fs::read(path).unwrap();
    let k = b.len() / at;
    b[k] ^= mask;
    std::fs::write(path, b).unwrap();
}

/// The current generation's sorted shipments: the file, the rows it holds and the shipments
/// files it holds; and the data file of each shipments file.
fn sorted_shipments(out: &Path) -> (PathBuf, u64, usize, Vec<String>) {
    let g: serde_json::Value = serde_json::from_slice(&std::fs::read(current_path(out)).unwrap()).unwrap();
    let s = &g["sorted"];
    let data = g["shipments"].as_array().unwrap().iter().map(|s| s["data"].as_str().unwrap().to_string()).collect();
    (
        out.join("state/segments").join(s["data"].as_str().unwrap()),
        s["rows"].as_u64().unwrap(),
        s["files"].as_u64().unwrap() as usize,
        data,
    )
}

/// The sequence numbers of the segments the current generation wrote itself (the names
/// `seg-<stem>-<n>-<table>.parquet` with the stem of its last events segment: a generation
/// that read new events files and did not write kept checks), sorted.
fn tonights_numbers(out: &Path) -> Vec<u32> {
    let g: serde_json::Value = serde_json::from_slice(&std::fs::read(current_path(out)).unwrap()).unwrap();
    let names: Vec<String> = ["shipments", "events"]
        .iter()
        .flat_map(|t| g[*t].as_array().unwrap().iter().map(|s| s["data"].as_str().unwrap().to_string()))
        .filter(|d| !d.is_empty())
        .collect();
    if names.is_empty() {
        return vec![];
    }
    let stem = |n: &str| n.split('-').nth(1).unwrap_or("").to_string();
    let tonight = stem(names.last().unwrap());
    let mut seq: Vec<u32> =
        names.iter().filter(|n| stem(n) == tonight).filter_map(|n| n.split('-').nth(2)?.parse().ok()).collect();
    seq.sort_unstable();
    seq.dedup();
    seq
}

/// Rewrites the current generation's sorted shipments through `change`, its hash (and the
/// hash the entries of the files it holds name) made to match.
fn rewrite_sorted(out: &Path, change: fn(&mut DataFrame)) {
    let p = sorted_shipments(out).0;
    let mut df = read_parquet(&p);
    change(&mut df);
    write_parquet(&mut df, &p);
    let hash = blake3::hash(&std::fs::read(&p).unwrap()).to_hex().to_string();
    let gp = current_path(out);
    let mut g: serde_json::Value = serde_json::from_slice(&std::fs::read(&gp).unwrap()).unwrap();
    g["sorted"]["data_blake3"] = hash.clone().into();
    for s in g["shipments"].as_array_mut().unwrap() {
        s["data_blake3"] = hash.clone().into();
    }
    write_generation(out, &g);
}

/// The shipments are kept sorted in one file, which nights after it read with the shipments
/// files read since (one segment each) until those pass an eighth of its rows; then a night
/// writes it again, holding every file. Each night equals a full refresh byte for byte.
#[test]
fn sorted_shipments_are_kept_until_the_files_after_them_pass_an_eighth_of_them() {
    let arr = arrivals(small_input());
    let live = tempfile::tempdir().unwrap();
    let (inc, full) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut prev: Option<NaiveDate> = None;
    let mut last: Option<PathBuf> = None;
    let (mut kept, mut rewritten) = (0, 0);
    for night in ["2026-08-01", "2026-08-02", "2026-08-04", "2026-08-10", "2026-08-11", "2026-08-25"] {
        arr.deliver(live.path(), prev, date(night));
        let a = run_night(live.path(), inc.path(), night, &[]);
        let b = run_full_refresh(live.path(), full.path(), night);
        assert_same_data(&a, &b, &format!("night {night}"));
        let st = &manifest(&a)["state"];
        assert!(st["full_refresh"].is_null(), "night {night}: {st}");
        let (file, rows, files, data) = sorted_shipments(inc.path());
        let total: u64 = read_parquet(&file).height() as u64;
        assert_eq!(total, rows, "night {night}");
        // Files it holds name it; every later one has its own segment.
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(data[..files].iter().all(|d| *d == name), "night {night}: {data:?}");
        assert!(data[files..].iter().all(|d| *d != name && d.ends_with("-shipments.parquet")), "night {night}");
        let later: u64 = data[files..]
            .iter()
            .map(|d| read_parquet(&inc.path().join("state/segments").join(d)).height() as u64)
            .sum();
        assert!(later * 8 <= rows, "night {night}: {later} rows after {rows} sorted ones");
        // Tonight's segments are numbered from 1 without gaps; a night that writes the sorted
        // shipments again (and the kept checks, which hold every events file) names none.
        let numbers = tonights_numbers(inc.path());
        assert_eq!(numbers, (1..=numbers.len() as u32).collect::<Vec<u32>>(), "night {night}: names with gaps");
        if last.as_ref() == Some(&file) {
            kept += 1;
            assert!(files < data.len(), "night {night}: kept, yet no file after it");
            assert!(!numbers.is_empty(), "night {night}: no segment written");
        } else {
            rewritten += 1;
            assert_eq!(files, data.len(), "night {night}: written again without every file");
            assert!(numbers.is_empty(), "night {night}: segments {numbers:?} beside the kept checks");
        }
        last = Some(file);
        prev = Some(date(night));
    }
    assert!(kept >= 2 && rewritten >= 2, "kept {kept}, rewritten {rewritten}");
}

/// Every way a state can be unusable leads to a full refresh whose warning names the reason,
/// with outputs equal to nights that kept no state; the state is whole again afterwards.
#[test]
fn a_damaged_or_mismatched_state_is_rebuilt_with_a_warning() {
    let arr = arrivals(small_input());
    let (night, next) = ("2026-09-10", "2026-09-11");
    let cases: Vec<(&str, Damage, &str)> = vec![
        ("kept checks' bytes flipped", Damage::State(|out| flip(&kept_checks(out, "counts"), 2, 0xff)), "is corrupt"),
        // Events files the kept checks cover have no segment rows: without the kept checks
        // (damaged segments after them: `nights_check_only_the_rows_after_their_kept_checks`).
        ("kept checks dropped from the generation", Damage::State(forget_checks), "only in its checked events"),
        (
            "the sorted shipments' bytes flipped",
            Damage::State(|out| flip(&sorted_shipments(out).0, 2, 0xa5)),
            "is corrupt",
        ),
        (
            // Whole and matching its recorded hash, but without each row's arrival row.
            "sorted shipments without their arrival rows",
            Damage::State(|out| {
                rewrite_sorted(out, |df| {
                    df.drop_in_place("__lanewatch_arrival").unwrap();
                })
            }),
            "does not hold the sorted shipments",
        ),
        (
            // Each row's arrival row once: a repeated one would map two rows to one.
            "sorted shipments whose arrival rows repeat one",
            Damage::State(|out| {
                rewrite_sorted(out, |df| {
                    let mut a: Vec<u32> =
                        df.column("__lanewatch_arrival").unwrap().u32().unwrap().into_no_null_iter().collect();
                    a[1] = a[0];
                    df.with_column(Column::new("__lanewatch_arrival".into(), a)).unwrap();
                })
            }),
            "does not hold the sorted shipments",
        ),
        (
            "an earlier layout",
            Damage::State(|out| {
                let p = current_path(out);
                let mut g: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                g["format"] = 1.into();
                write_generation(out, &g);
            }),
            "the state has layout 1",
        ),
        (
            "segment missing",
            Damage::State(|out| std::fs::remove_file(kept_checks(out, "orphans")).unwrap()),
            "is unreadable",
        ),
        (
            "generation truncated",
            Damage::State(|out| {
                let p = current_path(out);
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..b.len() / 2]).unwrap();
            }),
            "is corrupt",
        ),
        (
            "generation edited where it lies",
            Damage::State(|out| {
                let p = current_path(out);
                let mut g: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                g["written_by"] = "someone else".into();
                std::fs::write(&p, serde_json::to_vec(&g).unwrap()).unwrap();
            }),
            "does not match its name",
        ),
        (
            // Regression: a full refresh without a word.
            "CURRENT deleted",
            Damage::State(|out| std::fs::remove_file(out.join("state/CURRENT")).unwrap()),
            "state/CURRENT is missing beside its generations",
        ),
        (
            "CURRENT names something else",
            Damage::State(|out| std::fs::write(out.join("state/CURRENT"), "../../etc/passwd\n").unwrap()),
            "not a generation file",
        ),
        (
            "another tool version",
            Damage::State(|out| {
                let p = current_path(out);
                let mut g: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                g["tool_version"] = "0.0.1".into();
                write_generation(out, &g);
            }),
            "written by lanewatch 0.0.1",
        ),
        (
            "an input file rewritten",
            Damage::Input(|live| {
                let p = live.join("events/date=2026-09-01/part-0.parquet");
                let df = read_parquet(&p);
                let mut df = df.slice(0, df.height() - 1);
                write_parquet(&mut df, &p);
            }),
            "changed since the state was written",
        ),
        (
            // Regression: the state matched covered files by size and modification time, and
            // kept the old rows of a file rewritten with both kept.
            "an input file rewritten with its size and modification time kept",
            Damage::Input(|live| rewrite_keeping_size_and_time(&live.join("events/date=2026-09-01/part-0.parquet"))),
            "changed since the state was written",
        ),
        (
            "an input file removed",
            Damage::Input(|live| std::fs::remove_file(live.join("events/date=2026-09-02/part-0.parquet")).unwrap()),
            "is gone",
        ),
        (
            "a new file among old ones",
            Damage::Input(|live| {
                let dir = live.join("events/date=2026-09-03");
                std::fs::copy(dir.join("part-0.parquet"), dir.join("part-00.parquet")).unwrap();
            }),
            "sorts before files already read",
        ),
    ];
    let (_keep, plain) = reference(&arr, night, next, None);
    for (what, damage, reason) in cases {
        let (live, out) = bootstrapped(&arr, night, &[]);
        arr.deliver(live.path(), Some(date(night)), date(next));
        let (_keep, want) = match damage {
            Damage::State(d) => {
                d(out.path());
                (None, plain.clone())
            }
            Damage::Input(d) => {
                d(live.path());
                let (o, r) = reference(&arr, night, next, Some(d));
                (Some(o), r)
            }
        };
        let run = run_night(live.path(), out.path(), next, &[]);
        let w = manifest_warnings(&run);
        assert!(
            w.iter().any(|w| w.contains("full refresh") && w.contains(reason)),
            "{what}: no warning naming {reason:?}: {w:?}"
        );
        assert_same_data(&run, &want, what);
        // The rebuilt state is whole again: the night after reads through it without a warning.
        let again = run_night(live.path(), out.path(), "2026-09-12", &[]);
        assert!(manifest(&again)["state"]["full_refresh"].is_null(), "{what}: {}", manifest(&again)["state"]);
    }
    // Regression: a covered file only linked elsewhere and made read-only (a backup's snapshot,
    // a chmod) moved its status-change time, and the night was a full refresh. Its bytes are
    // the same: the night reads through the state.
    let (live, out) = bootstrapped(&arr, night, &[]);
    arr.deliver(live.path(), Some(date(night)), date(next));
    let covered = live.path().join("events/date=2026-09-01/part-0.parquet");
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::hard_link(&covered, elsewhere.path().join("snapshot.parquet")).unwrap();
    let mut mode = std::fs::metadata(&covered).unwrap().permissions();
    mode.set_readonly(true);
    std::fs::set_permissions(&covered, mode).unwrap();
    let run = run_night(live.path(), out.path(), next, &[]);
    assert!(manifest(&run)["state"]["full_refresh"].is_null(), "{}", manifest(&run)["state"]);
    assert_same_data(&run, &plain, "a covered file linked elsewhere and made read-only");
    // A change of the [input] settings that shape decoding.
    let (live, out) = bootstrapped(&arr, night, &[]);
    let run = run_night(live.path(), out.path(), next, &[("LANEWATCH_INPUT__NAIVE_TIMEZONE", "Asia/Shanghai")]);
    let w = manifest_warnings(&run);
    assert!(w.iter().any(|w| w.contains("[input] settings changed")), "{w:?}");
}

/// Kept lane tables that cannot be used (damaged, or computed under other `[lanes]` settings)
/// are not used, with a warning that says why: every table is computed, the outputs equal a
/// night that keeps no state, and the tables are kept whole again for the night after.
#[test]
fn damaged_or_mismatched_kept_lane_tables_are_computed_again_with_a_warning() {
    let arr = arrivals(small_input());
    let (night, next) = ("2026-09-10", "2026-09-11");
    let (_keep, want) = reference(&arr, night, next, None);
    // One kept series day's file (the index names a file per table and per day).
    let data_file = |out: &Path| {
        let ix = record(&out.join("state/lane-tables.json"));
        out.join("state").join(ix["days"][0]["data"].as_str().unwrap())
    };
    let cases: Vec<(&str, fn(&Path, &Path), &str)> = vec![
        (
            "bytes flipped",
            |_, data| {
                let mut b = std::fs::read(data).unwrap();
                let mid = b.len() / 2;
                b[mid] ^= 0xff;
                std::fs::write(data, b).unwrap();
            },
            "is corrupt",
        ),
        ("data file missing", |_, data| std::fs::remove_file(data).unwrap(), "is unreadable"),
        (
            "index from another version",
            |out, _| {
                let p = out.join("state/lane-tables.json");
                let mut ix = record(&p);
                ix["tool_version"] = "0.0.1".into();
                std::fs::write(&p, sealed(&ix)).unwrap();
            },
            "written by lanewatch 0.0.1",
        ),
        (
            "index of the first layout (an upgrade)",
            |out, _| {
                // As the first layout kept them: one file of every table, one of every day.
                let p = out.join("state/lane-tables.json");
                let mut ix = record(&p);
                for (count, name, file) in [
                    ("tables", "data", "lane-tables-00112233aabbccdd.parquet"),
                    ("days", "days_data", "series-days-00112233aabbccdd.parquet"),
                ] {
                    std::fs::write(out.join("state").join(file), b"PAR1").unwrap();
                    (ix[count], ix[name]) = (3.into(), file.into());
                }
                ix["format"] = 1.into();
                std::fs::write(&p, sealed(&ix)).unwrap();
            },
            "has layout 1, this lanewatch reads 3",
        ),
        (
            // Regression: a change that still parses was taken as written.
            "index edited, still JSON",
            |out, _| {
                let p = out.join("state/lane-tables.json");
                let text = std::fs::read_to_string(&p).unwrap();
                let at = text.find("\"cutoff\"").expect("the index names its cutoff");
                let digit = at + text[at..].find(|c: char| c.is_ascii_digit()).unwrap();
                let mut bytes = text.into_bytes();
                bytes[digit] = if bytes[digit] == b'9' { b'8' } else { bytes[digit] + 1 };
                std::fs::write(&p, bytes).unwrap();
            },
            "its BLAKE3 does not match",
        ),
    ];
    for (what, damage, reason) in cases {
        let (live, out) = bootstrapped(&arr, night, &[]);
        arr.deliver(live.path(), Some(date(night)), date(next));
        damage(out.path(), &data_file(out.path()));
        let run = run_night(live.path(), out.path(), next, &[]);
        let w = manifest_warnings(&run);
        assert!(
            w.iter().any(|w| w.contains("lane tables kept in the state not used") && w.contains(reason)),
            "{what}: {w:?}"
        );
        let st = &manifest(&run)["state"];
        assert_eq!(st["lane_tables_reused"], 0, "{what}: {st}");
        assert_same_data(&run, &want, what);
        // Every kept-table file left is one the new index names (a first layout's are gone).
        kept_tiles(out.path());
        let again = run_night(live.path(), out.path(), next, &[]);
        let st = &manifest(&again)["state"];
        assert!(st["lane_tables_not_used"].is_null() && st["lane_tables_computed"] == 0, "{what}: {st}");
        assert_same_data(&again, &want, what);
    }
    // Other [lanes] settings: the kept tables do not apply.
    let (live, out) = bootstrapped(&arr, night, &[]);
    let run = run_night(live.path(), out.path(), next, &[("LANEWATCH_LANES__MIN_SUPPORT", "25")]);
    let w = manifest_warnings(&run);
    assert!(w.iter().any(|w| w.contains("other [lanes] settings")), "{w:?}");
}

/// A night killed while it writes its state, commits its run folder or publishes the state
/// leaves `CURRENT` on a whole generation: the one the night before wrote, or its own once its
/// run folder is visible. The next night reads through it and equals a full refresh.
#[test]
fn a_killed_night_leaves_a_state_that_agrees_with_the_run_folders() {
    let arr = arrivals(small_input());
    let (night, next) = ("2026-09-10", "2026-09-11");
    let (_keep, want) = reference(&arr, night, next, None);
    for point in [
        "validate",
        "state",
        "state:segments",
        "state:generation",
        "commit:success",
        "state:current",
        "state:published",
        "state:tables",
    ] {
        let (live, out) = bootstrapped(&arr, night, &[]);
        let before = current_generation(out.path()).unwrap();
        arr.deliver(live.path(), Some(date(night)), date(next));
        let fault = format!("kill:{point}");
        let o = lanewatch_fast_env("run", live.path(), out.path(), &["--as-of", next], &[("LANEWATCH_FAULT", &fault)]);
        assert_ne!(code(&o), 0, "{point}: the fault did not fire");
        let visible = out.path().join(format!("as_of={next}"));
        let now = current_generation(out.path()).expect("CURRENT gone");
        if visible.join("_SUCCESS").is_file() {
            let m = manifest(&visible);
            let written = m["state"]["written"].as_str().unwrap();
            assert!(now == before || now == written, "{point}: CURRENT {now}, run wrote {written}, before {before}");
        } else {
            assert_eq!(now, before, "{point}: CURRENT moved without its run folder");
        }
        // The next attempt reads through whatever state is current and equals a night that
        // keeps none.
        let rerun = run_night(live.path(), out.path(), next, &[]);
        assert!(manifest(&rerun)["state"]["full_refresh"].is_null(), "{point}: {}", manifest(&rerun)["state"]);
        assert_same_data(&rerun, &want, point);
    }
}

/// A live input holding every day partition of the small input (over 200 files), and how many.
fn every_partition() -> (tempfile::TempDir, usize) {
    let live = tempfile::tempdir().unwrap();
    let files = arrivals(small_input()).deliver(live.path(), None, date("2099-01-01"));
    assert!(files > 200, "{files}");
    (live, files)
}

/// Regression: a first night on hundreds of day partitions writes a segment per file, in
/// parallel; polars' parallel serialiser, installed into polars' own pool from a rayon worker,
/// let the waiting worker steal the next file's write onto the same stack, nesting writes until
/// the stack overflowed (a 2M-shipment, 360-day input crashed about two runs in three). With
/// worker stacks of 256 KiB it overflowed on every run.
#[test]
fn a_first_night_on_hundreds_of_partitions_writes_its_state_on_small_stacks() {
    let (live, files) = every_partition();
    let out = tempfile::tempdir().unwrap();
    let o =
        lanewatch_fast_env("run", live.path(), out.path(), &["--as-of", FIRST_NIGHT], &[("RUST_MIN_STACK", "262144")]);
    expect_code(&o, 0);
    assert_eq!(manifest(&out.path().join(format!("as_of={FIRST_NIGHT}")))["state"]["files_read"], files as u64);
}

/// A first night on one large file writes its segments a slice at a time (a slice is a million
/// rows; here 997, so the small input's events span dozens): the next night read through that
/// state equals a full refresh byte for byte, which holds only if every slice kept its rows in
/// order and the statuses and unknown ids kept one numbering across slices.
#[test]
fn segments_written_in_many_slices_read_back_as_the_files_they_came_from() {
    let out = tempfile::tempdir().unwrap();
    let full = tempfile::tempdir().unwrap();
    let slices = [("LANEWATCH_STATE_SLICE_ROWS", "997")];
    let first = run_night(small_input(), out.path(), FIRST_NIGHT, &slices);
    assert!(manifest(&first)["state"]["files_read"].as_u64().unwrap() >= 2);
    let events = read_parquet(&small_input().join("events.parquet")).height();
    assert!(events > 20 * 997, "{events} events fill too few slices");
    // The reference has the same night before it (alerts continue from the previous run).
    run_full_refresh(small_input(), full.path(), FIRST_NIGHT);
    let next = (date(FIRST_NIGHT) + Duration::days(1)).to_string();
    let a = run_night(small_input(), out.path(), &next, &[]);
    let st = &manifest(&a)["state"];
    assert!(st["full_refresh"].is_null() && st["files_read"] == 0, "{st}");
    let b = run_full_refresh(small_input(), full.path(), &next);
    assert_same_data(&a, &b, "a night through a state written in slices");
}

/// Regression for the parallel decode of events files (each file numbered on its own, merged in
/// file order): the same rows split over a few hundred day files, late rows included, give the
/// outputs of the single-file input byte for byte.
#[test]
fn day_partitions_read_like_the_single_file_they_came_from() {
    let (live, _) = every_partition();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let split = run_night(live.path(), a.path(), SMALL_AS_OF, &NO_STATE);
    let whole = run_night(small_input(), b.path(), SMALL_AS_OF, &NO_STATE);
    assert_same_data(&split, &whole, "day partitions");
}

/// A model trained weekly (`model.retrain_every_days = 7`, Mondays): a night between training
/// nights scores with the model its training night kept in the state, and equals a full
/// refresh, which trains on the training night from the input itself; rows arriving late for
/// days before the training night's cutoff make the night train again (and still equal the
/// full refresh); a kept model that cannot be used, or a night killed while keeping it, is
/// trained again with the same result.
#[test]
fn a_weekly_model_is_kept_between_training_nights_and_equals_training_it_again() {
    const WEEKLY: [(&str, &str); 1] = [("LANEWATCH_MODEL__RETRAIN_EVERY_DAYS", "7")];
    // The full refreshes set their shipment columns aside in the scratch file while they
    // compute the training night's features (the incremental nights' are too small to): the
    // outputs are the same either way.
    const SPILLING: [(&str, &str); 3] =
        [WEEKLY[0], ("LANEWATCH_SPILL_ABOVE_MB", "0"), ("LANEWATCH_LOG", "lanewatch=debug")];
    let full_refresh = |input: &Path, out: &Path, as_of: &str| {
        let o = lanewatch_fast_env("run", input, out, &["--as-of", as_of, "--full-refresh"], &SPILLING);
        expect_code(&o, 0);
        (out.join(format!("as_of={as_of}")), stderr(&o).contains("shipments spilled"))
    };
    let model_as_of = |run: &Path| -> String {
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("model.json")).unwrap()).unwrap();
        m["as_of"].as_str().unwrap().to_string()
    };
    // 2026-09-07 and 2026-09-14 are Mondays: the nights from 09-08 to 09-15 train on 09-07
    // (the first of them, with nothing kept), keep it until 09-14 trains itself, and 09-15
    // scores with 09-14's.
    for late in [false, true] {
        let arr = arrivals_with(small_input(), late, late);
        let live = tempfile::tempdir().unwrap();
        let (inc, full) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = date(FIRST_NIGHT);
        let mut prev = None;
        let nights = if late { 3 } else { 8 };
        for k in 0..nights {
            let night = first + Duration::days(k);
            arr.deliver(live.path(), prev, night);
            let as_of = night.to_string();
            let a = run_night(live.path(), inc.path(), &as_of, &WEEKLY);
            let (b, spilled) = full_refresh(live.path(), full.path(), &as_of);
            let what = format!("late={late}, night {as_of}");
            assert_same_data(&a, &b, &what);
            let training = if night < date("2026-09-14") { "2026-09-07" } else { "2026-09-14" };
            assert_eq!(
                spilled,
                as_of != training,
                "{what}: the shipments were set aside on a night training elsewhere"
            );
            assert_eq!(model_as_of(&a), training, "{what}");
            // The report names the training night when it is not the night itself.
            let report = std::fs::read_to_string(a.join("report.html")).unwrap();
            assert_eq!(report.contains(&format!("trained on {training}")), as_of != training, "{what}");
            // And the advice's night, likewise.
            let advice_note = format!("As of {training}, the model's training night");
            assert_eq!(report.contains(&advice_note), as_of != training, "{what}");
            let st = &manifest(&a)["state"];
            assert_eq!(st["model_training_night"], training, "{what}: {st}");
            let reused = !late && k > 0 && as_of != "2026-09-14";
            assert_eq!(st["model_reused"], reused, "{what}: {st}");
            assert_eq!(manifest(&b)["state"]["model_reused"], false, "{what}");
            // What the night before kept is whole and used (a bug once kept the training night's
            // series days twice, and the next night could not read them).
            assert!(manifest_warnings(&a).iter().all(|w| !w.contains("state")), "{what}: {:?}", manifest_warnings(&a));
            if k > 0 {
                assert!(st["series_days_reused"].as_u64().unwrap() > 60, "{what}: {st}");
            }
            // Lane tables: a Monday computes its own; the other nights score with their
            // Monday's, kept in the state, and compute none (late rows aside).
            if k > 0 && !late {
                let monday = chrono::Datelike::weekday(&night) == chrono::Weekday::Mon;
                assert_eq!(st["lane_tables_computed"], monday as u64, "{what}: {st}");
            }
            // A night that trains on an earlier night computes that night's features first.
            let stages: Vec<String> = manifest(&a)["timings"]["stages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["stage"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(stages.contains(&"train".to_string()), !reused, "{what}: {stages:?}");
            // A night that takes the kept model takes the digest it was checked by from the
            // state too (the night before read the same input before the training night's
            // cutoff); one with late rows, or a training night, computes it.
            assert_eq!(stages.contains(&"digest".to_string()), !reused, "{what}: {stages:?}");
            assert_eq!(
                stages.contains(&"training night features".to_string()),
                !reused && as_of != training,
                "{what}: {stages:?}"
            );
            // The advice is the training night's, as the model is: computed by the night that
            // computes the model, kept with it and published by the nights that take it.
            assert_eq!(stages.contains(&"advice".to_string()), !reused, "{what}: {stages:?}");
            for table in ["service_advice", "promise_advice", "seller_advice"] {
                let df = read_parquet(&a.join(format!("{table}.parquet")));
                let days = df.column("advice_as_of").unwrap().cast(&polars::prelude::DataType::String).unwrap();
                let days: Vec<Option<&str>> = days.str().unwrap().iter().collect();
                assert!(!days.is_empty() && days.iter().all(|d| *d == Some(training)), "{what}: {table} {days:?}");
            }
            prev = Some(night);
        }
        if late {
            continue;
        }
        // A night that did not use the kept model and advice: it says why, and trained.
        let not_used = |run: &Path, reason: &str| {
            let w = manifest_warnings(run);
            assert!(
                w.iter().any(|w| w.contains("model and advice kept in the state not used") && w.contains(reason)),
                "{reason}: {w:?}"
            );
            assert_eq!(manifest(run)["state"]["model_reused"], false, "{reason}");
        };
        // The kept model damaged, or from another lanewatch: trained again, with a warning.
        let next = "2026-09-16";
        arr.deliver(live.path(), prev, date(next));
        let (want, _) = full_refresh(live.path(), full.path(), next);
        let o = lanewatch_fast_env("run", live.path(), inc.path(), &["--as-of", next], &WEEKLY);
        expect_code(&o, 0);
        assert!(stdout(&o).contains("trained on 2026-09-14, kept in the state"), "{}", stdout(&o));
        let model = inc.path().join("state/model.json");
        let kept = std::fs::read(&model).unwrap();
        let kept_json = record(&model);
        let other_version = String::from_utf8(kept.clone()).unwrap().replacen(
            &format!("\"tool_version\":\"{}\"", lanewatch::night::TOOL_VERSION),
            "\"tool_version\":\"0.0.1\"",
            1,
        );
        // Advice files another Parquet writer encoded (another codec, level or polars), and a
        // record of the layout before (compact advice files): published as they are, they could
        // differ from the night's own, so they are not used.
        let with = |key: &str, value: serde_json::Value| {
            let mut k = kept_json.clone();
            assert!(k.get(key).is_some(), "{key}");
            k[key] = value;
            sealed(&k)
        };
        let other_schema = {
            let mut k = kept_json.clone();
            let v = k["model"]["feature_schema_version"].as_u64().unwrap();
            assert_eq!(v, lanewatch::features::FEATURE_SCHEMA_VERSION as u64);
            k["model"]["feature_schema_version"] = (v - 1).into();
            sealed(&k)
        };
        // A digit of the model changed: still JSON, and the model of another night's scores.
        let edited = {
            let text = String::from_utf8(kept.clone()).unwrap();
            let at = text.find("\"model\"").unwrap();
            let digit = at + text[at..].find(|c: char| ('1'..='8').contains(&c)).unwrap();
            let mut bytes = text.into_bytes();
            bytes[digit] += 1;
            bytes
        };
        for (what, bytes, reason) in [
            ("truncated", kept[..kept.len() / 2].to_vec(), "is corrupt"),
            ("another version", other_version.into_bytes(), "written by lanewatch 0.0.1"),
            (
                "another writer",
                with("writer", "0123456789abcdef".into()),
                "of another Parquet writer (0123456789abcdef)",
            ),
            ("layout 2", with("format", 2.into()), "has layout 2, this lanewatch reads 4"),
            ("another feature schema", other_schema, "a model of feature schema version"),
            ("a digit changed", edited, "its BLAKE3 does not match"),
        ] {
            std::fs::write(&model, bytes).unwrap();
            let run = run_night(live.path(), inc.path(), next, &WEEKLY);
            not_used(&run, reason);
            assert_same_data(&run, &want, what);
            // Kept again whole: the night after takes it.
            let again = run_night(live.path(), inc.path(), next, &WEEKLY);
            assert_eq!(manifest(&again)["state"]["model_reused"], true, "{what}");
            assert_same_data(&again, &want, what);
        }
        // A kept advice file damaged: the model is not used either (they are one night's), and
        // both are computed again, with a warning.
        let record = record(&model);
        let advice = inc.path().join("state").join(record["advice"][2]["data"].as_str().unwrap());
        let bytes = std::fs::read(&advice).unwrap();
        std::fs::write(&advice, &bytes[..bytes.len() / 2]).unwrap();
        let run = run_night(live.path(), inc.path(), next, &WEEKLY);
        not_used(&run, "BLAKE3");
        assert_same_data(&run, &want, "damaged advice");
        let again = run_night(live.path(), inc.path(), next, &WEEKLY);
        assert_eq!(manifest(&again)["state"]["model_reused"], true, "after damaged advice");
        assert_same_data(&again, &want, "after damaged advice");
        // Kept under other settings: not used, with a warning.
        let other = [WEEKLY[0], ("LANEWATCH_ALERTS__RISK_THRESHOLD", "0.6")];
        let run = run_night(live.path(), inc.path(), next, &other);
        not_used(&run, "other settings");
        // Killed while keeping the model and advice (after its run folder is committed): the
        // night is visible, and the next run trains again or takes a whole kept model and its
        // advice, with one result.
        for point in ["kill:state:advice", "kill:state:model"] {
            // Nothing kept: the advice files too (named by their bytes, the ones left would be
            // tonight's).
            std::fs::remove_file(&model).unwrap();
            for e in std::fs::read_dir(inc.path().join("state")).unwrap().flatten() {
                if e.file_name().to_string_lossy().starts_with("advice-") {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
            let o = lanewatch_fast_env(
                "run",
                live.path(),
                inc.path(),
                &["--as-of", next],
                &[WEEKLY[0], ("LANEWATCH_FAULT", point)],
            );
            assert_ne!(code(&o), 0, "{point}: the fault did not fire");
            assert_same_data(&inc.path().join(format!("as_of={next}")), &want, point);
            let rerun = run_night(live.path(), inc.path(), next, &WEEKLY);
            assert_same_data(&rerun, &want, point);
            // What the killed night left is whole or absent: nothing kept is found damaged.
            let w = manifest_warnings(&rerun);
            assert!(w.iter().all(|w| !w.contains("state")), "{point}: {w:?}");
        }
    }
}
