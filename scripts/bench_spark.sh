#!/usr/bin/env bash
# Benchmark: one night single-machine (`lanewatch run`, no state) against the same night through
# the Spark job (pipelines/spark/lanewatch_spark.py) in local mode on this machine, and the
# outputs compared byte for byte (manifest aside).
#
#   scripts/bench_spark.sh 1000000 [SHARDS] [MASTER]     # default 8 shards, local[2,4]
#   BENCH_SPARK_ROUNDS=1 scripts/bench_spark.sh 1000000  # the shards also compute features, model,
#                                                        # scores and advice (the job's --rounds)
#
# Reuses the inputs scripts/bench.sh generates ($BENCH_DIR/data-SIZE, default
# /tmp/lanewatch-bench), generating one if missing. Needs GNU time, Java and Python with PySpark
# ($LANEWATCH_PYTHON or python3). Spark's driver memory is $BENCH_SPARK_MEMORY (default 6g).
set -euo pipefail
cd "$(dirname "$0")/.."

size="${1:?usage: scripts/bench_spark.sh SIZE [SHARDS] [MASTER]}"
shards="${2:-8}"
master="${3:-local[2,4]}"
work="${BENCH_DIR:-/tmp/lanewatch-bench}"
py="${LANEWATCH_PYTHON:-python3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lanewatch-target}"
bin="${BENCH_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked --quiet
  bin="$CARGO_TARGET_DIR/release/lanewatch"
fi
as_of=2026-06-20
data="$work/data-$size"
if [ ! -d "$data" ]; then
  "$bin" generate --out "$data" --shipments "$size" --seed 1 --start 2026-01-01 --days 180 >/dev/null
fi
measure() {
  read -r wall rss < <(awk -F': ' -f scripts/time_v.awk "$1")
  echo "$wall s, peak $rss MiB (largest process)"
}
cfg="$work/spark-bench.toml"
printf '[state]\nincremental = false\n' >"$cfg"
single="$work/spark-single-$size" spark="$work/spark-job-$size"
rm -rf "$single" "$spark"

/usr/bin/time -v "$bin" run --input "$data" --out "$single" --as-of "$as_of" --config "$cfg" \
  >/dev/null 2>"$work/single.time"
echo "single machine: $(measure "$work/single.time")"

export PYSPARK_SUBMIT_ARGS="--driver-memory ${BENCH_SPARK_MEMORY:-6g} pyspark-shell"
rounds=()
[ "${BENCH_SPARK_ROUNDS:-0}" = 1 ] && rounds=(--rounds)
/usr/bin/time -v "$py" pipelines/spark/lanewatch_spark.py --input "$data" --out "$spark" --as-of "$as_of" \
  --shards "$shards" --config "$cfg" --lanewatch "$bin" --master "$master" --keep-partials "${rounds[@]}" \
  >"$work/spark.out" 2>"$work/spark.time"
echo "spark $master, $shards shards${rounds:+, ${rounds[0]}}: $(measure "$work/spark.time")"
# The job's own lines: each shard's rows and time, each round's stage and merge, the final merge.
grep -E '^(shard|round|merge)' "$work/spark.out" || true
du -sh "$spark/_partials/as_of=$as_of" | awk '{print "partials: " $1}'
"$py" - "$spark/as_of=$as_of/manifest.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
print("merge stages: " + ", ".join(f"{s['stage']} {s['seconds']:.1f} s" for s in m["timings"]["stages"]))
EOF
same=yes
for f in $(cd "$single/as_of=$as_of" && find . -type f ! -name manifest.json | sort); do
  cmp -s "$single/as_of=$as_of/$f" "$spark/as_of=$as_of/$f" || { same=no; echo "differs: $f"; }
done
echo "outputs byte-identical (manifest aside): $same"
