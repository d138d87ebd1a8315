//! Sharded nights (`run --shard i/N` then `merge`): the merged run folder equals the single
//! run's byte for byte for N in {1, 2, 3, 7}, with a shard that owns no shipments; a shard
//! killed before it publishes leaves no partial and its rerun completes the same night; the
//! merge refuses missing, duplicate, corrupt and mismatched partials and writes nothing.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use polars::prelude::*;

use crate::common::*;
use crate::tools::require_spark;

/// The night the tests shard.
const AS_OF: &str = SMALL_AS_OF;

/// `small_input` without the destination × service groups shard 6 of 7 would own (so that
/// shard owns nothing), plus what exercises every shard-summed count: events of an unknown
/// shipment (shard 0 reports them), an exact duplicate event, an unmapped status.
fn input() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        fixture("shards", |dir| {
            let src = small_input();
            let ships = read_parquet(&src.join("shipments.parquet"));
            let d = ships.column("destination").unwrap().str().unwrap().clone();
            let s = ships.column("service").unwrap().str().unwrap().clone();
            let keep: BooleanChunked = d
                .iter()
                .zip(s.iter())
                .map(|(d, s)| Some(lanewatch::shard::shard_of(d.unwrap(), s.unwrap(), 7) != 6))
                .collect();
            let mut ships = ships.filter(&keep).unwrap();
            assert!(ships.height() > 1000 && ships.height() < 3000, "kept {} shipments", ships.height());
            let ids: std::collections::HashSet<String> =
                ships.column("shipment_id").unwrap().str().unwrap().iter().flatten().map(String::from).collect();
            let events = read_parquet(&src.join("events.parquet"));
            let mine: BooleanChunked = events
                .column("shipment_id")
                .unwrap()
                .str()
                .unwrap()
                .iter()
                .map(|id| Some(ids.contains(id.unwrap())))
                .collect();
            let mut events = events.filter(&mine).unwrap();
            // A duplicate of the first event, an unknown shipment's events, an unmapped status.
            let mut extra = events.slice(0, 3);
            let mut set = |column: &str, row: usize, value: &str| {
                let mut v: Vec<String> =
                    extra.column(column).unwrap().str().unwrap().iter().flatten().map(String::from).collect();
                v[row] = value.to_string();
                extra.with_column(Column::new(column.into(), v)).unwrap();
            };
            set("shipment_id", 1, "NOT-A-SHIPMENT");
            set("status", 2, "BAG_SCANNED_AT_KIOSK");
            events.vstack_mut(&extra).unwrap();
            write_parquet(&mut ships, &dir.join("shipments.parquet"));
            write_parquet(&mut events, &dir.join("events.parquet"));
        })
    })
}

fn cfg() -> String {
    fast_config().to_str().unwrap().to_string()
}

/// `lanewatch run --shard i/n` on the input into `partials`.
fn shard(i: u32, n: u32, partials: &Path, as_of: &str, env: &[(&str, &str)]) -> std::process::Output {
    shard_of_input(input(), i, n, partials, as_of, env)
}

fn shard_of_input(
    input: &Path,
    i: u32,
    n: u32,
    partials: &Path,
    as_of: &str,
    env: &[(&str, &str)],
) -> std::process::Output {
    shard_with_config(input, i, n, partials, as_of, &cfg(), env)
}

/// `lanewatch run --shard i/n` of `input` into `partials` with the config file `config`.
fn shard_with_config(
    input: &Path,
    i: u32,
    n: u32,
    partials: &Path,
    as_of: &str,
    config: &str,
    env: &[(&str, &str)],
) -> std::process::Output {
    let spec = format!("{i}/{n}");
    let args = [
        "run",
        "--shard",
        &spec,
        "--partials",
        partials.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--as-of",
        as_of,
        "--config",
        config,
    ];
    lanewatch_env(&args, env)
}

/// `lanewatch merge` of `n` shards into `out`.
fn merge(partials: &Path, n: u32, out: &Path, extra: &[&str]) -> std::process::Output {
    let n = n.to_string();
    let mut args = vec![
        "merge",
        "--partials",
        partials.to_str().unwrap(),
        "--shards",
        &n,
        "--out",
        out.to_str().unwrap(),
        "--as-of",
        AS_OF,
        "--config",
    ];
    let c = cfg();
    args.push(&c);
    args.extend_from_slice(extra);
    lanewatch(&args)
}

/// Partials of every shard of `n` in a new folder.
fn all_shards(n: u32) -> tempfile::TempDir {
    all_shards_with(n, &cfg())
}

fn meta(partials: &Path, i: u32, n: u32) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(partials.join(format!("shard-{i}-of-{n}.json"))).unwrap()).unwrap()
}

#[test]
fn merged_shards_equal_the_single_run_for_1_2_3_and_7_shards() {
    let single_out = tempfile::tempdir().unwrap();
    let single = run_night(input(), single_out.path(), AS_OF, &[]);
    let warnings = manifest_warnings(&single);
    for check in ["for shipments not in shipments", "duplicate events", "outside the vocabulary"] {
        assert!(warnings.iter().any(|w| w.contains(check)), "the input lacks {check:?}: {warnings:?}");
    }
    for n in [1u32, 2, 3, 7] {
        let partials = all_shards(n);
        let rows: Vec<u64> =
            (0..n).map(|i| meta(partials.path(), i, n)["shipments"]["rows"].as_u64().unwrap()).collect();
        if n == 7 {
            assert_eq!(rows[6], 0, "shard 6/7 should own no shipments: {rows:?}");
        }
        assert!(rows.iter().filter(|&&r| r > 0).count() > 1 || n == 1, "{n} shards: {rows:?}");
        let out = tempfile::tempdir().unwrap();
        let o = merge(partials.path(), n, out.path(), &[]);
        expect_code(&o, 0);
        let merged = out.path().join(format!("as_of={AS_OF}"));
        assert_same_data(&single, &merged, &format!("{n} shards"));
        // The manifest's warnings are the single run's too, counts summed across shards.
        assert_eq!(manifest_warnings(&merged), warnings, "{n} shards: warnings");
        // And it names the partials it merged, by the BLAKE3 of each.
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(merged.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(m["shards"]["shards"], n);
        for (i, p) in m["shards"]["partials"].as_array().unwrap().iter().enumerate() {
            let json = std::fs::read(partials.path().join(format!("shard-{i}-of-{n}.json"))).unwrap();
            assert_eq!(p["blake3"], blake3::hash(&json).to_hex().as_str(), "{n} shards: partial {i}");
            assert_eq!(p["shipments"], rows[i]);
        }
    }
}

/// The same with the input in several files per table (as date partitions are): each shard
/// reads every file and keeps its rows.
#[test]
fn merged_shards_equal_the_single_run_on_an_input_of_many_files() {
    let dir = tempfile::tempdir().unwrap();
    for table in ["shipments", "events"] {
        let df = read_parquet(&input().join(format!("{table}.parquet")));
        let step = df.height().div_ceil(4);
        for k in 0..4 {
            let path = dir.path().join(format!("{table}/date=2026-0{}-01/part-0.parquet", k + 1));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            write_parquet(&mut df.slice((k * step) as i64, step), &path);
        }
    }
    let single_out = tempfile::tempdir().unwrap();
    let single = run_night(dir.path(), single_out.path(), AS_OF, &[]);
    let partials = tempfile::tempdir().unwrap();
    for i in 0..3 {
        expect_code(&shard_of_input(dir.path(), i, 3, partials.path(), AS_OF, &[]), 0);
    }
    let out = tempfile::tempdir().unwrap();
    expect_code(&merge(partials.path(), 3, out.path(), &[]), 0);
    assert_same_data(&single, &out.path().join(format!("as_of={AS_OF}")), "3 shards over 8 files");
}

#[test]
fn a_shard_killed_before_it_publishes_leaves_no_partial_and_its_rerun_completes_the_night() {
    let partials = tempfile::tempdir().unwrap();
    expect_code(&shard(0, 2, partials.path(), AS_OF, &[]), 0);
    let killed = shard(1, 2, partials.path(), AS_OF, &[("LANEWATCH_FAULT", "kill:partial:json")]);
    assert_eq!(killed.status.code(), None, "the shard was not killed: {}", stderr(&killed));
    assert!(!partials.path().join("shard-1-of-2.json").exists());
    let out = tempfile::tempdir().unwrap();
    let o = merge(partials.path(), 2, out.path(), &[]);
    expect_code(&o, 65);
    assert!(stderr(&o).contains("missing partials: shard 1 of 2"), "{}", stderr(&o));
    // The engine's retry: the same shard again, over what the killed attempt left.
    expect_code(&shard(1, 2, partials.path(), AS_OF, &[]), 0);
    expect_code(&merge(partials.path(), 2, out.path(), &[]), 0);
    let single_out = tempfile::tempdir().unwrap();
    let single = run_night(input(), single_out.path(), AS_OF, &[]);
    assert_same_data(&single, &out.path().join(format!("as_of={AS_OF}")), "after a retried shard");
}

/// A shard's partial is the same bytes whatever the thread count and however often it runs:
/// what makes a retried or speculative task's rewrite harmless.
#[test]
fn a_shards_partial_is_byte_identical_across_reruns_and_thread_counts() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    expect_code(&shard(1, 3, a.path(), AS_OF, &[]), 0);
    expect_code(&shard(1, 3, a.path(), AS_OF, &[]), 0);
    expect_code(&shard(1, 3, b.path(), AS_OF, &[("RAYON_NUM_THREADS", "1"), ("POLARS_MAX_THREADS", "1")]), 0);
    let (ta, tb) = (tree(a.path()), tree(b.path()));
    assert_eq!(
        ta.keys().collect::<Vec<_>>(),
        ["shard-1-of-3.events.parquet", "shard-1-of-3.json", "shard-1-of-3.shipments.parquet"]
    );
    for (name, bytes) in &ta {
        assert!(bytes == &tb[name], "{name} differs between 2 threads and 1");
    }
}

#[test]
fn merge_refuses_missing_duplicate_corrupt_and_mismatched_partials_and_writes_nothing() {
    let good = all_shards(2);
    type Damage = Box<dyn Fn(&Path)>;
    let none = || -> Damage { Box::new(|_| {}) };
    // What is done to a copy of good partials, the merge's shard count and extra flags, and
    // what its error says.
    let cases: Vec<(&str, Damage, u32, &[&str], &str)> = vec![
        (
            "missing",
            Box::new(|p| std::fs::remove_file(p.join("shard-1-of-2.json")).unwrap()),
            2,
            &[],
            "missing partials",
        ),
        (
            "duplicate",
            Box::new(|p| std::fs::copy(p.join("shard-0-of-2.json"), p.join("retry-shard-0.json")).map(|_| ()).unwrap()),
            2,
            &[],
            "duplicate partials",
        ),
        ("other night", Box::new(|p| expect_code(&shard(1, 2, p, "2026-09-19", &[]), 0)), 2, &[], "another night"),
        ("other shard count", none(), 3, &[], "another shard count"),
        ("other config", none(), 2, &["--seed", "8"], "another config"),
        (
            "other version",
            Box::new(|p| {
                let path = p.join("shard-1-of-2.json");
                let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                m["tool_version"] = "0.0.1".into();
                std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
            }),
            2,
            &[],
            "another lanewatch version",
        ),
        (
            "corrupt data",
            Box::new(|p| {
                let path = p.join("shard-0-of-2.events.parquet");
                let mut b = std::fs::read(&path).unwrap();
                let mid = b.len() / 2;
                b[mid] ^= 0xff;
                std::fs::write(&path, b).unwrap();
            }),
            2,
            &[],
            "is corrupt",
        ),
        (
            "not a partial",
            Box::new(|p| std::fs::write(p.join("notes.json"), "{}").unwrap()),
            2,
            &[],
            "not a lanewatch partial",
        ),
    ];
    for (what, damage, n, extra, message) in cases {
        let partials = tempfile::tempdir().unwrap();
        for (name, bytes) in tree(good.path()) {
            std::fs::write(partials.path().join(name), bytes).unwrap();
        }
        damage(partials.path());
        let out = tempfile::tempdir().unwrap();
        let o = merge(partials.path(), n, out.path(), extra);
        expect_code(&o, 65);
        assert!(stderr(&o).contains(message), "{what}: {}", stderr(&o));
        let written: Vec<String> = tree(out.path()).into_keys().filter(|k| k.contains("as_of=")).collect();
        assert!(written.is_empty(), "{what}: the merge wrote {written:?}");
    }
    // The good partials themselves merge.
    let out = tempfile::tempdir().unwrap();
    expect_code(&merge(good.path(), 2, out.path(), &[]), 0);
}

/// A shipment id on two lanes of different shards fails as the single run fails (exit 65): each
/// shard keeps the other shards' ids, so the shard of either row sees the twin. The merge keeps
/// its own check, for shards that read only their own rows (the Spark job's), and writes
/// nothing; shards of two inputs stand in for those here.
#[test]
fn a_shipment_id_in_two_shards_fails_the_shards_and_the_merge_as_it_fails_the_single_run() {
    let dir = tempfile::tempdir().unwrap();
    let ships = read_parquet(&input().join("shipments.parquet"));
    let mut twin = ships.slice(0, 1);
    let service = twin.column("service").unwrap().str().unwrap().get(0).unwrap().to_string();
    let dest = twin.column("destination").unwrap().str().unwrap().get(0).unwrap().to_string();
    let here = lanewatch::shard::shard_of(&dest, &service, 2);
    let other = ships
        .column("destination")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .find(|d| lanewatch::shard::shard_of(d, &service, 2) != here)
        .expect("a destination on the other shard")
        .to_string();
    twin.with_column(Column::new("destination".into(), [other])).unwrap();
    let mut both = ships.clone();
    both.vstack_mut(&twin).unwrap();
    write_parquet(&mut both, &dir.path().join("shipments.parquet"));
    std::fs::copy(input().join("events.parquet"), dir.path().join("events.parquet")).unwrap();

    let single = tempfile::tempdir().unwrap();
    let o = lanewatch_fast("run", dir.path(), single.path(), &["--as-of", AS_OF]);
    expect_code(&o, 65);
    assert!(stderr(&o).contains("share a shipment_id"), "{}", stderr(&o));
    let partials = tempfile::tempdir().unwrap();
    for i in 0..2 {
        let o = shard_of_input(dir.path(), i, 2, partials.path(), AS_OF, &[]);
        expect_code(&o, 65);
        assert!(stderr(&o).contains("share a shipment_id"), "shard {i}: {}", stderr(&o));
    }
    assert_eq!(std::fs::read_dir(partials.path()).unwrap().count(), 0, "a failed shard wrote a partial");

    // Shard `here` from the input as it was, the other from one where the row moved to the
    // other shard's lane: neither sees a twin, the merge does.
    let moved = tempfile::tempdir().unwrap();
    let mut rest = ships.slice(1, ships.height() - 1);
    rest.vstack_mut(&twin).unwrap();
    write_parquet(&mut rest, &moved.path().join("shipments.parquet"));
    std::fs::copy(input().join("events.parquet"), moved.path().join("events.parquet")).unwrap();
    expect_code(&shard_of_input(input(), here, 2, partials.path(), AS_OF, &[]), 0);
    expect_code(&shard_of_input(moved.path(), 1 - here, 2, partials.path(), AS_OF, &[]), 0);
    let out = tempfile::tempdir().unwrap();
    let o = merge(partials.path(), 2, out.path(), &[]);
    expect_code(&o, 65);
    assert!(stderr(&o).contains("share a shipment_id"), "{}", stderr(&o));
    assert!(!out.path().join(format!("as_of={AS_OF}")).exists());
}

/// The Spark job (pipelines/spark/lanewatch_spark.py) in local mode, 3 shards, the first attempt
/// of shard 1's task killed: Spark retries it and the night equals the single run. With
/// --rounds (the first run) the shards compute the night in rounds, a round task killed and
/// retried too, and the run folder is written from the merged rounds (`merge --rounds`); the
/// second run (2 shards, no --rounds) merges the partials' data. The input's
/// destination and event shipment_id columns carry other names, mapped by the config's
/// `[input.columns]` and by a `LANEWATCH_INPUT__COLUMNS__…` variable, which the job applies as
/// lanewatch does.
#[test]
fn the_spark_job_in_local_mode_equals_the_single_run_and_retries_a_killed_shard() {
    let Some(py) = require_spark() else { return };
    let dir = tempfile::tempdir().unwrap();
    let renamed = dir.path().join("input");
    std::fs::create_dir(&renamed).unwrap();
    for (table, from, to) in [("shipments", "destination", "dest_country"), ("events", "shipment_id", "parcel")] {
        let mut df = read_parquet(&input().join(format!("{table}.parquet")));
        df.rename(from, to.into()).unwrap();
        write_parquet(&mut df, &renamed.join(format!("{table}.parquet")));
    }
    let config = dir.path().join("mapped.toml");
    let mapping = "\n[input.columns.shipments]\ndestination = \"dest_country\"\n";
    let env = [("LANEWATCH_INPUT__COLUMNS__EVENTS__SHIPMENT_ID", "parcel")];
    std::fs::write(&config, std::fs::read_to_string(fast_config()).unwrap() + mapping).unwrap();
    let config = config.to_str().unwrap();

    let single_out = tempfile::tempdir().unwrap();
    let args = ["run", "--input", renamed.to_str().unwrap(), "--out", single_out.path().to_str().unwrap()];
    expect_code(&lanewatch_env(&[&args[..], &["--as-of", AS_OF, "--config", config]].concat(), &env), 0);
    let single = single_out.path().join(format!("as_of={AS_OF}"));
    let out = tempfile::tempdir().unwrap();
    let job = repo().join("pipelines/spark/lanewatch_spark.py");
    let o = std::process::Command::new(&py)
        .arg(&job)
        .args(["--input", renamed.to_str().unwrap(), "--out", out.path().to_str().unwrap()])
        .args(["--as-of", AS_OF, "--shards", "3", "--config", config, "--master", "local[2,4]"])
        .args(["--rounds", "--keep-partials"])
        .arg("--lanewatch")
        .arg(bin())
        .env("SPARK_LANEWATCH_KILL_SHARD", "1")
        .env("SPARK_LANEWATCH_KILL_ROUND", "offer:2")
        .envs(env)
        .env_remove("LANEWATCH_FAULT")
        .output()
        .unwrap();
    expect_code(&o, 0);
    let printed = stdout(&o);
    let line = printed.lines().find(|l| l.starts_with("shard 1/3:")).unwrap_or_default();
    assert!(line.ends_with("(attempt 2)"), "shard 1 was not retried: {printed}");
    let line = printed.lines().find(|l| l.starts_with("round offer:")).unwrap_or_default();
    assert!(line.ends_with("retried: shard 2 (attempt 2)"), "shard 2 was not retried in round offer: {printed}");
    assert_same_data(&single, &out.path().join(format!("as_of={AS_OF}")), "Spark, 3 shards");
    // The shards' rounds trained the single run's model and scored its risks.
    let s = settings_with(
        Some(Path::new(config)),
        &env,
        lanewatch::config::Overrides {
            input: Some(renamed.clone()),
            as_of: Some(AS_OF.to_string()),
            ..Default::default()
        },
    );
    let partials = out.path().join(format!("_partials/as_of={AS_OF}"));
    assert!(rounds_model_and_risks(&s, &partials, 3) == single_model_and_risks(&s), "Spark's rounds differ");
    // The same night as the canonical input's: the mapping changed names, not data.
    let canonical_out = tempfile::tempdir().unwrap();
    assert_same_data(&single, &run_night(input(), canonical_out.path(), AS_OF, &[]), "renamed columns");
    // Without --keep-partials the job removes its partials after the merge. Its input's
    // shipments are two files, the first without the optional weight_g: Spark, given one
    // file's schema, dropped the column from every file (regression).
    let split = dir.path().join("split");
    std::fs::create_dir_all(split.join("shipments")).unwrap();
    std::fs::copy(renamed.join("events.parquet"), split.join("events.parquet")).unwrap();
    let ships = read_parquet(&renamed.join("shipments.parquet"));
    let half = ships.height() / 2;
    let mut first = ships.slice(0, half).drop("weight_g").unwrap();
    write_parquet(&mut first, &split.join("shipments/part-0.parquet"));
    write_parquet(&mut ships.slice(half as i64, ships.height() - half), &split.join("shipments/part-1.parquet"));
    let split_out = tempfile::tempdir().unwrap();
    let args = ["run", "--input", split.to_str().unwrap(), "--out", split_out.path().to_str().unwrap()];
    expect_code(&lanewatch_env(&[&args[..], &["--as-of", AS_OF, "--config", config]].concat(), &env), 0);
    let single = split_out.path().join(format!("as_of={AS_OF}"));
    // The job on 2 shards, without --rounds or faults.
    let two_shards = |input: &Path, out: &Path| {
        std::process::Command::new(&py)
            .arg(&job)
            .args(["--input", input.to_str().unwrap(), "--out", out.to_str().unwrap()])
            .args(["--as-of", AS_OF, "--shards", "2", "--config", config, "--master", "local[2]"])
            .arg("--lanewatch")
            .arg(bin())
            .envs(env)
            .env_remove("LANEWATCH_FAULT")
            .env_remove("SPARK_LANEWATCH_KILL_SHARD")
            .env_remove("SPARK_LANEWATCH_KILL_ROUND")
            .output()
            .unwrap()
    };
    let out = tempfile::tempdir().unwrap();
    let o = two_shards(&split, out.path());
    expect_code(&o, 0);
    assert_same_data(&single, &out.path().join(format!("as_of={AS_OF}")), "Spark, 2 shards");
    assert!(!out.path().join("_partials").exists(), "the partials were left behind");
    // A shard that refuses its data (a null promise, exit 65) ends the job with lanewatch's
    // code and line, not a retried task and a Python traceback (regression: exit 1).
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(renamed.join("events.parquet"), bad.join("events.parquet")).unwrap();
    let mut ships = read_parquet(&renamed.join("shipments.parquet"));
    let promised = ships.column("promised_at").unwrap().as_materialized_series().clone();
    let raw = promised.to_physical_repr().i64().unwrap().clone();
    let nulled: Int64Chunked = raw.iter().enumerate().map(|(i, v)| if i == 0 { None } else { v }).collect();
    ships.with_column(nulled.into_series().with_name("promised_at".into()).cast(promised.dtype()).unwrap().into()).unwrap();
    write_parquet(&mut ships, &bad.join("shipments.parquet"));
    let out = tempfile::tempdir().unwrap();
    let o = two_shards(&bad, out.path());
    expect_code(&o, 65);
    let err = stderr(&o);
    assert!(err.lines().any(|l| l.contains("lanewatch_spark: shard ") && l.contains("promised_at")), "{err}");
    assert!(!err.contains("Traceback"), "{err}");
}

#[test]
fn shard_and_merge_flags_are_checked() {
    let p = tempfile::tempdir().unwrap();
    for bad in ["7/7", "1/0", "x"] {
        let o = shard_spec(bad, p.path());
        expect_code(&o, 2);
    }
    // --shard without --partials is a usage error too.
    let o = lanewatch(&["run", "--shard", "0/2", "--input", input().to_str().unwrap(), "--as-of", AS_OF]);
    expect_code(&o, 2);
    // A merge of a folder that does not exist: missing input.
    let out = tempfile::tempdir().unwrap();
    expect_code(&merge(&p.path().join("nowhere"), 2, out.path(), &[]), 66);
}

fn shard_spec(spec: &str, partials: &Path) -> std::process::Output {
    lanewatch(&[
        "run",
        "--shard",
        spec,
        "--partials",
        partials.to_str().unwrap(),
        "--input",
        input().to_str().unwrap(),
        "--as-of",
        AS_OF,
    ])
}

/// The whole network's model (as JSON) and every scoring row's (shipment id, risk bits), by id.
fn single_model_and_risks(s: &lanewatch::settings::Settings) -> (String, Vec<(String, u64)>) {
    let clean = load(s);
    let fs = lanewatch::features::build(&clean, &s.features, s.night().unwrap()).unwrap();
    let model = lanewatch::model::train(&fs, &s.model).unwrap();
    let ids = fs.prep.shipments.column("shipment_id").unwrap().str().unwrap().clone();
    let mut risks: Vec<(String, u64)> = fs
        .score
        .ship
        .iter()
        .zip(model.predict(&fs.score))
        .map(|(&i, r)| (ids.get(i as usize).unwrap().to_string(), r.to_bits()))
        .collect();
    risks.sort();
    (serde_json::to_string(&model).unwrap(), risks)
}

/// What the rounds in `partials` trained and scored, as `single_model_and_risks` gives it.
fn rounds_model_and_risks(s: &lanewatch::settings::Settings, partials: &Path, n: u32) -> (String, Vec<(String, u64)>) {
    let model = lanewatch::rounds::model(s, partials, n).unwrap();
    let (ids, risk) = lanewatch::rounds::risks(s, partials, n).unwrap();
    (serde_json::to_string(&model).unwrap(), ids.into_iter().zip(risk.into_iter().map(f64::to_bits)).collect())
}

fn round_settings() -> lanewatch::settings::Settings {
    settings_with(
        Some(&fast_config()),
        &[],
        lanewatch::config::Overrides {
            input: Some(input().to_path_buf()),
            as_of: Some(AS_OF.to_string()),
            ..Default::default()
        },
    )
}

/// The shards compute the night's features and model in rounds through the partials folder,
/// each from its own input and the merged shares: the model is the single run's, byte for byte,
/// and every scoring row's risk is the single run's, bit for bit, for N in {1, 2, 3, 7} (shard
/// 6 of 7 owns nothing).
#[test]
fn rounds_through_files_train_the_single_runs_model_and_score_its_risks() {
    let s = round_settings();
    let (model, risks) = single_model_and_risks(&s);
    assert!(risks.len() > 100, "{} scoring rows", risks.len());
    for n in [1u32, 2, 3, 7] {
        let partials = all_shards(n);
        lanewatch::rounds::run_all(&s, partials.path(), n).unwrap();
        let (m, r) = rounds_model_and_risks(&s, partials.path(), n);
        assert!(m == model, "{n} shards: the model differs");
        assert!(r == risks, "{n} shards: the risks differ");
    }
}

/// `run --shard i/N --round NAME` and `merge --round NAME`, as a cluster runs them: the same
/// model and risks; a retried shard writes the same bytes; a missing, corrupt or misplaced
/// share is refused (exit 65) and the merge writes nothing.
#[test]
fn rounds_run_by_the_cli_equal_the_single_run_and_refuse_missing_corrupt_and_misplaced_shares() {
    let s = round_settings();
    let n = 3;
    let partials = all_shards(n);
    let dir = partials.path();
    let round = |i: u32, r: &str| {
        let spec = format!("{i}/{n}");
        let args = ["run", "--shard", &spec, "--partials", dir.to_str().unwrap(), "--input", input().to_str().unwrap()];
        lanewatch(&[&args[..], &["--as-of", AS_OF, "--config", &cfg(), "--round", r]].concat())
    };
    let merge_round = |r: &str| {
        let n = n.to_string();
        lanewatch(&[
            "merge",
            "--partials",
            dir.to_str().unwrap(),
            "--shards",
            &n,
            "--as-of",
            AS_OF,
            "--config",
            &cfg(),
            "--round",
            r,
        ])
    };
    let rounds: Vec<&str> = lanewatch::rounds::Round::ALL.iter().map(|r| r.name()).collect();
    for r in &rounds {
        for i in 0..n {
            expect_code(&round(i, r), 0);
        }
        expect_code(&merge_round(r), 0);
    }
    assert!(rounds_model_and_risks(&s, dir, n) == single_model_and_risks(&s), "the CLI's rounds differ");
    // A retried shard replaces its share with the same bytes.
    let share = dir.join("round-offer/shard-1-of-3.bin");
    let before = std::fs::read(&share).unwrap();
    expect_code(&round(1, "offer"), 0);
    assert_eq!(std::fs::read(&share).unwrap(), before, "a rerun's share differs");

    let merged = dir.join("round-split/merged.bin");
    let shard1 = dir.join("round-split/shard-1-of-3.bin");
    let good = std::fs::read(&shard1).unwrap();
    type Damage<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Damage, &str)> = vec![
        ("missing", Box::new(|| std::fs::remove_file(&shard1).unwrap()), "missing: shard 1/3's share of round split"),
        (
            "corrupt",
            Box::new(|| {
                let mut b = good.clone();
                let k = b.len() / 2;
                b[k] ^= 1;
                std::fs::write(&shard1, b).unwrap();
            }),
            "corrupt",
        ),
        (
            "another shard's",
            Box::new(|| std::fs::copy(dir.join("round-split/shard-0-of-3.bin"), &shard1).map(|_| ()).unwrap()),
            "another round or shard",
        ),
        (
            "another round's",
            Box::new(|| std::fs::copy(dir.join("round-offer/shard-1-of-3.bin"), &shard1).map(|_| ()).unwrap()),
            "another round or shard",
        ),
    ];
    for (what, damage, says) in cases {
        std::fs::remove_file(&merged).unwrap();
        damage();
        let o = merge_round("split");
        expect_code(&o, 65);
        assert!(stderr(&o).contains(says), "{what}: {}", stderr(&o));
        assert!(!merged.exists(), "{what}: the merge wrote its result");
        std::fs::write(&shard1, &good).unwrap();
        expect_code(&merge_round("split"), 0);
    }
    // A later round of a shard refuses when an earlier round is not merged.
    std::fs::remove_file(dir.join("round-queries/merged.bin")).unwrap();
    let o = round(0, "shares");
    expect_code(&o, 65);
    assert!(stderr(&o).contains("round queries is not merged"), "{}", stderr(&o));

    // Lineage. A share computed from an earlier version of its shard's partial is refused.
    let json = dir.join("shard-1-of-3.json");
    let mut text = std::fs::read(&json).unwrap();
    text.push(b'\n');
    std::fs::write(&json, text).unwrap();
    std::fs::remove_file(&merged).unwrap();
    let o = merge_round("split");
    expect_code(&o, 65);
    assert!(stderr(&o).contains("stale: computed from another partial of the shard"), "{}", stderr(&o));
    // Shard 1 computes its window share again; the window's merge changes, and the merges
    // after it, computed from the old one, are removed.
    expect_code(&round(1, "window"), 0);
    expect_code(&merge_round("window"), 0);
    for r in &rounds[1..] {
        assert!(!dir.join(format!("round-{r}/merged.bin")).exists(), "round {r}'s old merge is left");
    }
    // Shard 0's parents share, computed after the old window merge, is refused.
    expect_code(&round(1, "parents"), 0);
    expect_code(&round(2, "parents"), 0);
    let o = merge_round("parents");
    expect_code(&o, 65);
    assert!(stderr(&o).contains("computed from an earlier merge of the round before"), "{}", stderr(&o));
    // Computed again, the round merges.
    expect_code(&round(0, "parents"), 0);
    expect_code(&merge_round("parents"), 0);
}

/// The Spark job runs the rounds lanewatch has, in their order.
#[test]
fn the_spark_jobs_rounds_are_lanewatchs() {
    let job = std::fs::read_to_string(repo().join("pipelines/spark/lanewatch_spark.py")).unwrap();
    let list = job.split_once("\nROUNDS = [").expect("ROUNDS in the Spark job").1.split_once(']').unwrap().0;
    let names: Vec<&str> = list.split(',').map(|n| n.trim().trim_matches('"')).filter(|n| !n.is_empty()).collect();
    let want: Vec<&str> = lanewatch::rounds::Round::ALL.iter().map(|r| r.name()).collect();
    assert_eq!(names, want);
}

/// `merge --rounds` writes the night's run folder from the merged rounds alone (the shards'
/// data never read by one machine), byte-identical (manifest aside) to the single run's, for N
/// in {1, 2, 3, 7}: the per-seller cap applied across shards (a cap of 1, so it binds), lanes
/// flagged disrupted (a loose rule), advice falling back to a service's pool (which spans
/// shards), first_alerted_on, recovered shipments and the report's trends continuing from the
/// same earlier run (the night before, some of whose alerts the cap cuts tonight: cut, they
/// have not recovered). Rounds whose lineage no longer holds (a partial replaced) or computed
/// against another earlier run are refused.
#[test]
fn merge_from_the_rounds_writes_the_single_runs_folder() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("capped.toml");
    // A cap that binds, and a disruption rule loose enough to flag lanes on a small input.
    let text = std::fs::read_to_string(fast_config()).unwrap()
        + "\n[alerts]\nmax_per_seller = 1\n[lanes]\ndisruption_ratio = 1.05\ndisruption_min_recent = 3\n"
        + "disruption_min_increase_days = 0.1\ndisruption_min_z = 0.5\n";
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();
    let out = dir.path().join("out");
    let input = input().to_str().unwrap();
    let earlier = (date(AS_OF) - chrono::Duration::days(1)).to_string();
    for night in [earlier.as_str(), AS_OF] {
        let args = ["run", "--input", input, "--out", out.to_str().unwrap(), "--as-of", night, "--config", config];
        expect_code(&lanewatch(&args), 0);
    }
    let single = out.join(format!("as_of={AS_OF}"));
    for (file, what) in [("alerts", "alerts"), ("recovered", "recovered shipments"), ("lane_alerts", "lane alerts")] {
        let rows = read_parquet(&single.join(format!("{file}.parquet"))).height();
        assert!(rows > 0, "the single run has no {what}");
    }
    let basis = read_parquet(&single.join("service_advice.parquet")).column("basis").unwrap().str().unwrap().clone();
    assert!(basis.iter().any(|b| b == Some("service")), "no service advice reads a service's pool");
    let first =
        read_parquet(&single.join("alerts.parquet")).column("first_alerted_on").unwrap().date().unwrap().clone();
    assert!(first.physical().iter().flatten().any(|d| d < first.physical().max().unwrap()), "no alert carried over");
    // An alert of the earlier night (listed or cut) that the cap cuts tonight: not recovered.
    let ids = |run: &Path, file: &str| strings(&read_parquet(&run.join(file)), "shipment_id");
    let before = out.join(format!("as_of={earlier}"));
    let alerted_before: std::collections::BTreeSet<String> =
        ids(&before, "alerts.parquet").into_iter().chain(ids(&before, "capped_alerts.parquet")).collect();
    assert!(
        ids(&single, "capped_alerts.parquet").iter().any(|id| alerted_before.contains(id)),
        "no alert of the night before is cut by the cap tonight"
    );

    // Each sharded night writes into an output folder holding the same earlier run.
    let sharded_out = |name: &str| {
        let o = dir.path().join(name);
        copy_tree(&out.join(format!("as_of={earlier}")), &o.join(format!("as_of={earlier}")));
        o
    };
    let settings = |o: &Path| {
        let over = lanewatch::config::Overrides {
            input: Some(input.into()),
            out: Some(o.to_path_buf()),
            as_of: Some(AS_OF.to_string()),
            ..Default::default()
        };
        settings_with(Some(Path::new(config)), &[], over)
    };
    let merge_rounds = |p: &Path, n: u32, o: &Path| {
        let n = n.to_string();
        let (p, o) = (p.to_str().unwrap(), o.to_str().unwrap());
        let args = ["merge", "--partials", p, "--shards", &n, "--out", o, "--as-of", AS_OF, "--config", config];
        lanewatch(&[&args[..], &["--rounds"]].concat())
    };
    for n in [1u32, 2, 3, 7] {
        let o = sharded_out(&format!("out-{n}"));
        let s = settings(&o);
        let partials = all_shards_with(n, config);
        lanewatch::rounds::run_all(&s, partials.path(), n).unwrap();
        let scored = lanewatch::rounds::scored(&s, partials.path(), n).unwrap();
        assert!(scored.alerts.suppressed.values().sum::<u64>() > 0, "{n} shards: the cap never bound");
        expect_code(&merge_rounds(partials.path(), n, &o), 0);
        assert_same_data(&single, &o.join(format!("as_of={AS_OF}")), &format!("{n} shards through the rounds"));
    }
    // The shards read the earlier runs when they scored; once those change, the round's merge
    // and the run folder's refuse.
    let o = sharded_out("out-stale");
    let s = settings(&o);
    let partials = all_shards_with(2, config);
    lanewatch::rounds::run_all(&s, partials.path(), 2).unwrap();
    // A shard's partial replaced after the rounds: the run folder's lineage check refuses.
    let json = partials.path().join("shard-1-of-2.json");
    let good = std::fs::read(&json).unwrap();
    std::fs::write(&json, [&good[..], b"\n"].concat()).unwrap();
    let m = merge_rounds(partials.path(), 2, &o);
    expect_code(&m, 65);
    assert!(stderr(&m).contains("stale: computed from another partial of the shard"), "{}", stderr(&m));
    assert!(!o.join(format!("as_of={AS_OF}")).exists(), "a refused merge wrote its run folder");
    std::fs::write(&json, good).unwrap();
    std::fs::rename(o.join(format!("as_of={earlier}")), o.join("moved-away")).unwrap();
    let e = lanewatch::rounds::merge_round(&s, partials.path(), 2, lanewatch::rounds::Round::Score).unwrap_err();
    assert_eq!(e.exit_code(), 65, "{e}");
    let stale = format!("stale: computed against the previous run as_of={earlier}");
    assert!(e.to_string().contains(&stale), "{e}");
    let m = merge_rounds(partials.path(), 2, &o);
    expect_code(&m, 65);
    assert!(stderr(&m).contains(&stale), "{}", stderr(&m));
    assert!(!o.join(format!("as_of={AS_OF}")).exists(), "a refused merge wrote its run folder");
}

/// Partials of every shard of `n` with the config `config`, in a new folder.
fn all_shards_with(n: u32, config: &str) -> tempfile::TempDir {
    let partials = tempfile::tempdir().unwrap();
    for i in 0..n {
        expect_code(&shard_with_config(input(), i, n, partials.path(), AS_OF, config, &[]), 0);
    }
    partials
}

/// The rounds train the night's own model: a training schedule is refused as a config error.
#[test]
fn rounds_refuse_a_training_schedule() {
    let s = settings_with(
        Some(&fast_config()),
        &[("LANEWATCH_MODEL__RETRAIN_EVERY_DAYS", "7")],
        lanewatch::config::Overrides {
            input: Some(input().to_path_buf()),
            as_of: Some(AS_OF.to_string()),
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let shard = lanewatch::shard::Shard { index: 0, count: 1 };
    let e = lanewatch::rounds::shard_round(&s, dir.path(), shard, lanewatch::rounds::Round::Window).unwrap_err();
    assert_eq!(e.exit_code(), 78, "{e}");
    assert!(e.to_string().contains("retrain_every_days"), "{e}");
}
