#!/usr/bin/env bash
# Benchmark: generate inputs of several sizes once, then time `lanewatch run` end to end (wall
# time and peak RSS from /usr/bin/time -v) and per stage (from the run's manifest.json), plus
# `lanewatch generate` and `lanewatch features` on their own.
#
#   scripts/bench.sh                 # 100k, 1M and 10M shipments
#   scripts/bench.sh 1000000         # one size
#   BENCH_FEATURES=0 scripts/bench.sh 10000000   # skip `lanewatch features` (it writes every
#                                                # training row: about 2 GB of RSS per 1M shipments)
#
# Needs GNU time (/usr/bin/time; Debian package `time`). Data and outputs go to $BENCH_DIR
# (default /tmp/lanewatch-bench); generated inputs are kept and reused between runs.
#
# Old outputs are moved aside and deleted only after the last measurement: on ext4 without a
# journal, creating files right after deleting thousands (a run writes one per seller) makes
# each create scan past the recently freed inodes, which once cost a run two extra seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(100000 1000000 10000000)
work="${BENCH_DIR:-/tmp/lanewatch-bench}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lanewatch-target}"
mkdir -p "$work"

if [ ! -x /usr/bin/time ]; then
  echo "bench: /usr/bin/time is missing (apt-get install time)" >&2
  exit 69
fi

# BENCH_BIN measures an existing binary instead of building the release one.
bin="${BENCH_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked --quiet
  bin="$CARGO_TARGET_DIR/release/lanewatch"
fi
as_of=2026-06-20

# Prints "seconds peak_MB" from a GNU time -v log.
measure() {
  awk -F': ' '
    /Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; wall = s }
    /Maximum resident set size/ { rss = $2 / 1024 }
    END { printf "%.2f %.0f\n", wall, rss }' "$1"
}

trash="$work/trash.$$"
set_aside() { if [ -e "$1" ]; then mkdir -p "$trash" && mv "$1" "$trash/$(basename "$1")"; fi; }
trap 'rm -rf "$trash"' EXIT

printf '%-10s %-10s %10s %10s %10s %10s  %s\n' shipments command wall_s peak_MB events out_MB stages
for n in "${sizes[@]}"; do
  data="$work/data-$n"
  if [ ! -f "$data/events.parquet" ]; then
    /usr/bin/time -v "$bin" generate --out "$data" --shipments "$n" --seed 1 --start 2026-01-01 --days 180 \
      > "$work/generate-$n.out" 2> "$work/generate-$n.time"
    read -r wall rss < <(measure "$work/generate-$n.time")
    events=$(sed -n 's/.* shipments, \([0-9]*\) events.*/\1/p' "$work/generate-$n.out")
    printf '%-10s %-10s %10s %10s %10s %10s\n' "$n" generate "$wall" "$rss" "$events" "$(du -sm "$data" | cut -f1)"
  fi

  out="$work/out-$n"
  set_aside "$out"
  /usr/bin/time -v "$bin" run --input "$data" --out "$out" --as-of "$as_of" --log-format json \
    > "$work/run-$n.out" 2> "$work/run-$n.time"
  read -r wall rss < <(measure "$work/run-$n.time")
  stages=$(python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
print(" ".join("%s=%.2fs/%sMB" % (s["stage"], s["seconds"], s.get("peak_rss_mb")) for s in m["timings"]["stages"]))
' "$out/as_of=$as_of/manifest.json")
  printf '%-10s %-10s %10s %10s %10s %10s  %s\n' "$n" run "$wall" "$rss" "-" "$(du -sm "$out" | cut -f1)" "$stages"

  [ "${BENCH_FEATURES:-1}" = 0 ] && continue
  fout="$work/features-$n"
  set_aside "$fout"
  /usr/bin/time -v "$bin" features --input "$data" --out "$fout" --as-of "$as_of" --log-format json \
    > "$work/features-$n.out" 2> "$work/features-$n.time"
  read -r wall rss < <(measure "$work/features-$n.time")
  printf '%-10s %-10s %10s %10s %10s %10s\n' "$n" features "$wall" "$rss" "-" "$(du -sm "$fout" | cut -f1)"
done
