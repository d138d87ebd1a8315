"""A lanewatch night on Apache Spark: Spark moves the data, lanewatch computes.

    spark-submit pipelines/spark/lanewatch_spark.py \
        --input /data/lanewatch/input --out /data/lanewatch/out --as-of 2026-11-14 \
        --config pipelines/nightly.toml --shards 64 --lanewatch /opt/lanewatch/bin/lanewatch

1. Spark reads the input's `shipments` and `events` Parquet and gives every shipment its shard:
   FNV-1a (64-bit) of `destination`, a 0x1F byte and `service` (UTF-8), modulo the shard count,
   exactly as `lanewatch run --shard` computes it (src/shard.rs). Only the distinct
   destination × service pairs are hashed, on the driver; a broadcast join spreads the result.
   Events take their shipment's shard; events of unknown shipments go to shard 0.
2. Spark writes both tables partitioned by shard into PARTIALS/_input/{shipments,events}/shard=i/
   (a streamed write that spills as needed: no shard is ever one in-memory batch), counts the
   rows of each shard, and runs one task per shard: `lanewatch run --shard i/N --partials
   PARTIALS` on that shard's files, which validates the shard and publishes its partial
   atomically (a retried task rewrites the same bytes). The task then checks that lanewatch
   kept every row Spark gave it (the two shard functions agree).
3. With --rounds, the shards then compute the night's features and model in rounds (src/rounds.rs):
   for each round, one Spark stage of one task per shard runs `lanewatch run --shard i/N
   --round NAME` (the shard's share, from its partial and the rounds merged before), then the
   driver runs `lanewatch merge --round NAME`. The model is trained once, in the merge of
   `train-rows`; each shard scores and alerts its own rows in `score` and computes its advice
   in `advice`. Spark itself checks that no shipment id is in two shards (exit 65).
4. The driver runs `lanewatch merge`, which refuses a missing, duplicate or mismatched partial,
   and writes OUT/as_of=DATE/ as a single `lanewatch run` would, byte for byte (manifest aside):
   with --rounds from the merged rounds (`merge --rounds`: no machine holds the night's input),
   without from the merged partials' data.

Task failures are Spark's to retry (`spark.task.maxFailures`; for local mode the master
`local[N,F]` allows F attempts). PARTIALS and OUT must be visible to every executor and the
driver under the same path (a shared mount); the partials folder belongs to the job: it is
emptied before the shards run and removed after a successful merge (--keep-partials keeps it).

Columns are named as lanewatch resolves `[input.columns]` (`lanewatch config`: the --config file,
then LANEWATCH_* variables; canonical names by default). `SPARK_LANEWATCH_KILL_SHARD=k` is a test hook:
the first attempt of shard k's task has its lanewatch killed before it publishes;
`SPARK_LANEWATCH_KILL_ROUND=NAME:k` does the same to shard k's task of round NAME.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

SEPARATOR = b"\x1f"
# The rounds of a sharded night's features and model, in order (src/rounds.rs, `Round::ALL`).
ROUNDS = ["window", "parents", "wanted", "values", "queries", "shares", "split", "offer", "train-shares",
          "train-rows", "score", "advice-pools", "advice"]


def shard_of(destination, service, shards):
    """The shard of a destination x service (src/shard.rs: FNV-1a 64 over the UTF-8 bytes)."""
    h = 0xCBF29CE484222325
    for b in (destination or "").encode() + SEPARATOR + (service or "").encode():
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h % shards


def column_names(lanewatch, config, input_dir):
    """Canonical name -> the input's name per table, as lanewatch resolves `[input.columns]`
    (config file, then LANEWATCH_* variables): asked of `lanewatch config`, which also checks
    the config as the shards' runs will, before Spark starts."""
    cmd = [lanewatch, "config", "--format", "json", "--input", input_dir] + (["--config", config] if config else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"lanewatch_spark: {' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()}")
    names = json.loads(done.stdout)["input"]["columns"]
    return lambda table, canonical: names[table].get(canonical, canonical)


def table_path(spark, input_dir, name):
    """Where lanewatch finds a table: NAME.parquet (file or folder) or NAME/, on any file system
    Spark reads (a local path, hdfs://, s3a://, ...)."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()

    def exists(path):
        p = jvm.org.apache.hadoop.fs.Path(path)
        return p.getFileSystem(conf).exists(p)

    found = [f"{input_dir.rstrip('/')}/{p}" for p in (f"{name}.parquet", name)]
    found = [p for p in found if exists(p)]
    if len(found) != 1:
        sys.exit(f"lanewatch_spark: {input_dir}: expected one of {name}.parquet or {name}/, found {found or 'none'}")
    return found[0]


def run(cmd, env=None):
    """Runs lanewatch; returns None, or (exit code, its one-line error) when it refused the
    input or config (a sysexits code, 64 to 78): that is deterministic, so the task returns it
    for the driver to exit with, rather than raising and having Spark retry it for nothing.
    Any other failure (a crash, a kill) raises, and Spark retries the task."""
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if 64 <= done.returncode <= 78:
        lines = (done.stderr or "").strip().splitlines()
        return (done.returncode, lines[-1] if lines else f"exited {done.returncode}")
    if done.returncode != 0:
        tail = "\n".join((done.stderr or "").strip().splitlines()[-5:])
        raise RuntimeError(f"{' '.join(cmd[:4])} … exited {done.returncode}: {tail}")
    return None


def exit_if_refused(what, done):
    """Exits the job with the first refusal among the tasks' results (their last item), printing
    lanewatch's line."""
    for r in done:
        if r[-1] is not None:
            code, line = r[-1]
            print(f"lanewatch_spark: {what} {r[0]}: {line}", file=sys.stderr)
            sys.exit(code)


def shard_task(args, counts, schemas):
    """What runs for shard i on an executor: lanewatch on the shard's staged files."""
    import pyarrow.parquet as pq
    from pyspark import TaskContext

    def task(shard):
        with tempfile.TemporaryDirectory(prefix=f"lanewatch-shard-{shard}-") as tmp:
            for name in ("shipments", "events"):
                staged = os.path.join(args.stage, name, f"shard={shard}")
                if os.path.isdir(staged):
                    os.symlink(staged, os.path.join(tmp, name))
                else:  # Spark writes no folder for a shard without rows of this table
                    pq.write_table(schemas[name].empty_table(), os.path.join(tmp, f"{name}.parquet"))
            env = dict(os.environ)
            kill = env.pop("SPARK_LANEWATCH_KILL_SHARD", None)
            env.pop("SPARK_LANEWATCH_KILL_ROUND", None)
            env.pop("LANEWATCH_FAULT", None)
            ctx = TaskContext.get()
            attempt = ctx.attemptNumber() if ctx else 0
            if kill == str(shard) and attempt == 0:
                env["LANEWATCH_FAULT"] = "kill:partial:json"
            cmd = [args.lanewatch, "run", "--shard", f"{shard}/{args.shards}", "--partials", args.partials,
                   "--input", tmp, "--as-of", args.as_of]
            if args.config:
                cmd += ["--config", args.config]
            started = time.monotonic()
            refused = run(cmd, env)
            seconds = time.monotonic() - started
        if refused:
            return (shard, 0, 0, attempt, seconds, refused)
        n_ships, n_events = counts.get(shard, (0, 0))
        # lanewatch keeps only what it owns: had this job's shard function disagreed with
        # lanewatch's, rows would be missing from the night. Fail loudly instead.
        with open(os.path.join(args.partials, f"shard-{shard}-of-{args.shards}.json")) as f:
            meta = json.load(f)
        if (meta["shipments_read"], meta["events_read"]) != (n_ships, n_events):
            raise RuntimeError(
                f"shard {shard}: Spark gave {n_ships} shipments and {n_events} events, lanewatch kept "
                f"{meta['shipments_read']} and {meta['events_read']}: the shard functions disagree"
            )
        return (shard, n_ships, n_events, attempt, seconds, None)

    return task


def round_task(args, name):
    """What runs for shard i in round `name` on an executor: its share of the round."""
    from pyspark import TaskContext

    def task(shard):
        env = dict(os.environ)
        env.pop("SPARK_LANEWATCH_KILL_SHARD", None)
        kill = env.pop("SPARK_LANEWATCH_KILL_ROUND", None)
        env.pop("LANEWATCH_FAULT", None)
        ctx = TaskContext.get()
        attempt = ctx.attemptNumber() if ctx else 0
        if kill == f"{name}:{shard}" and attempt == 0:
            env["LANEWATCH_FAULT"] = f"kill:round:{name}"
        # The round reads the shard's partial and merged rounds, not the input.
        cmd = [args.lanewatch, "run", "--shard", f"{shard}/{args.shards}", "--partials", args.partials,
               "--as-of", args.as_of, "--round", name, "--out", args.out]
        if args.config:
            cmd += ["--config", args.config]
        started = time.monotonic()
        refused = run(cmd, env)
        return (shard, attempt, time.monotonic() - started, refused)

    return task


def run_rounds(spark, args):
    """Every round: a stage of one task per shard, then the merge of its shares on the driver."""
    for name in ROUNDS:
        started = time.monotonic()
        done = sorted(spark.sparkContext.parallelize(range(args.shards), args.shards).map(round_task(args, name)).collect())
        if [r[0] for r in done] != list(range(args.shards)):
            sys.exit(f"lanewatch_spark: round {name}: shards that ran: {[r[0] for r in done]}")
        exit_if_refused(f"round {name}: shard", done)
        cmd = [args.lanewatch, "merge", "--partials", args.partials, "--shards", str(args.shards),
               "--as-of", args.as_of, "--round", name, "--out", args.out]
        if args.config:
            cmd += ["--config", args.config]
        merged = subprocess.run(cmd)  # its one-line error on stderr; its exit code is the job's
        if merged.returncode != 0:
            sys.exit(merged.returncode)
        retried = [f"shard {s} (attempt {a + 1})" for s, a, _, _ in done if a]
        slowest = max(r[2] for r in done)
        print(f"round {name}: {time.monotonic() - started:.1f} s, slowest shard {slowest:.1f} s"
              + (f", retried: {', '.join(retried)}" if retried else ""))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", required=True, help="a path, or a URI Spark reads (hdfs://, s3a://, ...)")
    p.add_argument("--out", required=True)
    p.add_argument("--as-of", required=True)
    p.add_argument("--shards", type=int, required=True)
    p.add_argument("--config")
    p.add_argument("--lanewatch", default=shutil.which("lanewatch") or "lanewatch")
    p.add_argument("--partials", help="default: OUT/_partials/as_of=DATE")
    p.add_argument("--keep-partials", action="store_true")
    p.add_argument("--rounds", action="store_true",
                   help="the shards also compute the features and model in rounds (src/rounds.rs)")
    p.add_argument("--master", help="when not run by spark-submit, e.g. local[2,4] (default)")
    args = p.parse_args(argv)
    if args.shards < 1:
        sys.exit("lanewatch_spark: --shards must be at least 1")
    if args.as_of == "yesterday":
        # Resolved once here, as lanewatch resolves it (the UTC date before today): every shard,
        # round and merge process of the job then names the same night, past midnight too.
        import datetime
        args.as_of = (datetime.datetime.now(datetime.timezone.utc).date() - datetime.timedelta(days=1)).isoformat()
    if "://" not in args.input:  # a local (or shared-mount) path, whatever the default FS
        args.input = "file://" + os.path.abspath(args.input)
    args.out = os.path.abspath(args.out)
    args.lanewatch = os.path.abspath(args.lanewatch) if os.path.sep in args.lanewatch else args.lanewatch
    args.config = os.path.abspath(args.config) if args.config else None
    name = column_names(args.lanewatch, args.config, args.input)
    args.partials = os.path.abspath(args.partials or os.path.join(args.out, "_partials", f"as_of={args.as_of}"))
    shutil.rmtree(args.partials, ignore_errors=True)
    os.makedirs(args.partials)
    # The input regrouped by shard; inside the partials folder (the merge reads only its *.json).
    args.stage = os.path.join(args.partials, "_input")

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession, functions as F
    from pyspark.sql.pandas.types import to_arrow_schema

    builder = SparkSession.builder.appName(f"lanewatch {args.as_of}")
    if args.master or "PYSPARK_GATEWAY_PORT" not in os.environ:  # not started by spark-submit
        # Local mode: few shuffle partitions (each writes a file per shard it holds).
        builder = builder.master(args.master or "local[2,4]").config("spark.sql.shuffle.partitions", "8")
    spark = (
        builder.config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .getOrCreate()
    )
    try:
        def read(name):
            # mergeSchema: the union of every file's columns. Without it Spark takes one file's
            # schema, and an optional column the older partitions lack (the carrier's estimate)
            # was dropped from every file; lanewatch reads each file with its own columns.
            return (
                spark.read.option("recursiveFileLookup", "true")
                .option("mergeSchema", "true")
                .parquet(table_path(spark, args.input, name))
            )

        ships, events = read("shipments"), read("events")
        dest, service = name("shipments", "destination"), name("shipments", "service")
        ship_id, event_ship_id = name("shipments", "shipment_id"), name("events", "shipment_id")
        for col, table, cols in ((dest, "shipments", ships.columns), (service, "shipments", ships.columns),
                                 (ship_id, "shipments", ships.columns), (event_ship_id, "events", events.columns)):
            if col not in cols:
                sys.exit(f"lanewatch_spark: {table}: column {col} missing (see [input.columns]; `lanewatch config` prints the mapping)")

        # The shard of each destination x service, computed once per pair on the driver.
        pairs = ships.select(F.col(dest).alias("d"), F.col(service).alias("s")).distinct().collect()
        keys = spark.createDataFrame(
            [(r.d, r.s, shard_of(r.d, r.s, args.shards)) for r in pairs], "_d string, _s string, _shard int"
        )
        on = (ships[dest] == keys["_d"]) & (ships[service] == keys["_s"])
        ships = ships.join(F.broadcast(keys), on, "left").drop("_d", "_s")
        # A null destination or service is an input error lanewatch reports; shard 0 reads it.
        ships = ships.withColumn("_shard", F.coalesce("_shard", F.lit(0)))
        if args.rounds:
            # `merge --rounds` never holds the whole input, so a shipment id in two shards (the
            # single run's duplicate-id error) is looked for here, by Spark.
            dup = ships.groupBy(ship_id).count().filter(F.col("count") > 1).limit(1).collect()
            if dup:
                print(f"lanewatch_spark: shipments: shipment_id {dup[0][0]!r} appears more than once", file=sys.stderr)
                sys.exit(65)
        owner = ships.select(F.col(ship_id).alias("_sid"), "_shard")
        events = events.join(owner, events[event_ship_id] == owner["_sid"], "left").drop("_sid")
        events = events.withColumn("_shard", F.coalesce("_shard", F.lit(0)))

        # The engine moves the data: both tables written partitioned by shard (streamed, spilled
        # as needed; no shard is ever one in-memory batch), then one task per shard.
        for name, df in (("shipments", ships), ("events", events)):
            df.withColumnRenamed("_shard", "shard").write.partitionBy("shard").parquet(
                "file://" + os.path.join(args.stage, name)  # a POSIX path the executors share
            )
        counts = {}
        for name, k in (("shipments", 0), ("events", 1)):
            staged = spark.read.parquet("file://" + os.path.join(args.stage, name)).groupBy("shard").count().collect()
            for r in staged:
                counts.setdefault(r["shard"], [0, 0])[k] = r["count"]
        schemas = {"shipments": to_arrow_schema(ships.drop("_shard").schema),
                   "events": to_arrow_schema(events.drop("_shard").schema)}
        task = shard_task(args, {s: tuple(c) for s, c in counts.items()}, schemas)
        done = sorted(spark.sparkContext.parallelize(range(args.shards), args.shards).map(task).collect())
        if [r[0] for r in done] != list(range(args.shards)):
            sys.exit(f"lanewatch_spark: shards that ran: {[r[0] for r in done]}, expected 0..{args.shards - 1}")
        exit_if_refused("shard", done)
        for shard, ships, events, attempt, seconds, _ in done:
            retried = f" (attempt {attempt + 1})" if attempt else ""
            print(f"shard {shard}/{args.shards}: {ships} shipments, {events} events, lanewatch {seconds:.1f} s{retried}")
        if args.rounds:
            run_rounds(spark, args)
    finally:
        spark.stop()

    cmd = [args.lanewatch, "merge", "--partials", args.partials, "--shards", str(args.shards), "--out", args.out,
           "--as-of", args.as_of] + (["--rounds"] if args.rounds else [])
    if args.config:
        cmd += ["--config", args.config]
    started = time.monotonic()
    merged = subprocess.run(cmd)
    print(f"merge: {time.monotonic() - started:.1f} s")
    if merged.returncode != 0:
        sys.exit(merged.returncode)
    if not args.keep_partials:
        shutil.rmtree(args.partials, ignore_errors=True)
        try:
            os.rmdir(os.path.dirname(args.partials))  # OUT/_partials, once no night uses it
        except OSError:
            pass


if __name__ == "__main__":
    main()
