#!/usr/bin/env bash
# Benchmark: generate inputs of several sizes once, then time `lanewatch run` end to end (wall
# time and peak RSS from /usr/bin/time -v) and per stage (from the run's manifest.json), plus
# `lanewatch generate` and `lanewatch features` on their own.
#
#   scripts/bench.sh                 # 100k, 1M and 10M shipments
#   scripts/bench.sh 1000000         # one size
#   BENCH_FEATURES=0 scripts/bench.sh 10000000   # skip `lanewatch features` (it writes every
#                                                # training row: about 2 GB of RSS per 1M shipments)
#   BENCH_INCREMENTAL=0 scripts/bench.sh          # skip the incremental nights
#   LANEWATCH_MODEL__RETRAIN_EVERY_DAYS=7 scripts/bench.sh 1000000   # the weekly training
#                                                # schedule (any LANEWATCH_* setting applies)
#
# Incremental nights: the input is copied into day partitions (scripts/partition_by_day.py,
# needs Python with polars: $LANEWATCH_PYTHON or python3), the night a week before the as-of
# is run on the partitions up to it (a full refresh that writes the state, "bootstrap"), then
# the night before the as-of after six more days ("week_later"), then the as-of's day is added
# and the night run again through the state ("incremental"), then the same night with
# --full-refresh ("full_refresh"). `BENCH_DOUBLE=1` also measures an input with twice the
# history (2N shipments over 360 days ending on the same day). A `targets` line ends each size:
# the incremental night against the full refresh, and against the doubled history's, and the
# least time writing the incremental night's run folder takes on this machine with nothing
# computed (scripts/write_floor.py: its files created, written and synced), which no night
# that writes that folder can beat.
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
measure() { awk -F': ' -f scripts/time_v.awk "$1"; }

# Wall seconds of the incremental nights' runs by "label-size", for the summary (`targets`),
# and the seconds writing an incremental night's run folder alone takes, by size.
declare -A walls floors

trash="$work/trash.$$"
set_aside() { if [ -e "$1" ]; then mkdir -p "$trash" && mv "$1" "$trash/$(basename "$1")"; fi; }
trap 'rm -rf "$trash"' EXIT

# One timed run: label, output folder, extra arguments; prints a row with the stage times.
timed_run() {
  local label="$1" size="$2" input="$3" out="$4" night="$5"
  shift 5
  /usr/bin/time -v "$bin" run --input "$input" --out "$out" --as-of "$night" --log-format json "$@" \
    > "$work/$label-$size.out" 2> "$work/$label-$size.time"
  read -r wall rss < <(measure "$work/$label-$size.time")
  walls["$label-$size"]="$wall"
  stages=$(python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
st = m.get("state") or {}
print(" ".join("%s=%.2fs/%sMB" % (s["stage"], s["seconds"], s.get("peak_rss_mb")) for s in m["timings"]["stages"]),
      "files_read=%s files_reused=%s tables=%s/%s days=%s/%s" % (st.get("files_read"), st.get("files_reused"),
      st.get("lane_tables_reused"), st.get("lane_tables_computed"), st.get("series_days_reused"),
      st.get("series_days_computed")))
' "$out/as_of=$night/manifest.json")
  printf '%-10s %-12s %10s %10s %10s %10s  %s\n' "$size" "$label" "$wall" "$rss" "-" "$(du -sm "$out" | cut -f1)" "$stages"
}

# Incremental nights on a day-partitioned copy of an input (see the header).
incremental() {
  local size="$1" data="$2"
  local parts="$work/parts-$size" live="$work/live-$size" before week
  before=$(date -d "$as_of - 1 day" +%F)
  week=$(date -d "$as_of - 7 days" +%F)
  if [ ! -d "$parts/events" ]; then
    "${LANEWATCH_PYTHON:-python3}" scripts/partition_by_day.py "$data" "$parts"
  fi
  set_aside "$live"
  mkdir -p "$live/events" "$live/shipments"
  # Partitions of the days up to $1 (inclusive) that are not in the live input yet.
  deliver() {
    for t in events shipments; do
      for d in "$parts/$t"/date=*; do
        [[ ! "${d##*date=}" > "$1" && ! -e "$live/$t/${d##*/}" ]] && cp -al "$d" "$live/$t/"
      done
    done
    return 0
  }
  local inc="$work/inc-$size" full="$work/full-$size"
  set_aside "$inc"
  set_aside "$full"
  # A week before, then the night before: the state then holds what a nightly schedule keeps
  # (the lane tables at every weekly offset, the series days).
  deliver "$week"
  timed_run bootstrap "$size" "$live" "$inc" "$week"
  deliver "$before"
  timed_run week_later "$size" "$live" "$inc" "$before"
  for t in events shipments; do
    [ -d "$parts/$t/date=$as_of" ] && cp -al "$parts/$t/date=$as_of" "$live/$t/"
  done
  timed_run incremental "$size" "$live" "$inc" "$as_of"
  timed_run full_refresh "$size" "$live" "$full" "$as_of" --full-refresh
  floors["$size"]=$(python3 scripts/write_floor.py "$inc/as_of=$as_of" 3 "$trash/floor-$size" | sed -n 's/^floor \([0-9.]*\) s$/\1/p')
}

# Issue 13's targets for size $1, from the incremental nights' walls: the incremental night
# against the full refresh (at most 0.1), the full refresh at 1M (at most 2.5 s), and with
# BENCH_DOUBLE the incremental night on twice the history against this one (barely more);
# then the least time writing the incremental night's run folder takes, against a tenth of
# the full refresh (the most the incremental night may take) and a tenth of 2.5 s at 1M.
targets() {
  local n="$1" inc="${walls[incremental-$1]}" full="${walls[full_refresh-$1]}"
  local double="${walls[incremental-$((2 * $1))x360d]:-}" floor="${floors[$1]}"
  awk -v n="$n" -v inc="$inc" -v full="$full" -v double="$double" -v floor="$floor" 'BEGIN {
    printf "targets %s: incremental / full refresh = %.2f (target <= 0.1); full refresh %.2f s", n, inc / full, full
    if (n == 1000000) printf " (target <= 2.5 s at 1M)"
    if (double != "") printf "; twice the history: incremental %.2fx as long (target: barely more)", double / inc
    printf "\n"
    printf "floor %s: writing the incremental night'"'"'s run folder alone takes %.3f s, %.2f of the full refresh", n, floor, floor / full
    if (n == 1000000) printf " and %.2f of 2.5 s", floor / 2.5
    printf "\n"
  }'
}

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

  if [ "${BENCH_INCREMENTAL:-1}" = 1 ]; then
    incremental "$n" "$data"
    if [ "${BENCH_DOUBLE:-0}" = 1 ]; then
      double="$work/data-$((2 * n))-360d"
      if [ ! -f "$double/events.parquet" ]; then
        "$bin" generate --out "$double" --shipments "$((2 * n))" --seed 1 --start 2025-07-05 --days 360 > /dev/null
      fi
      incremental "$((2 * n))x360d" "$double"
    fi
    targets "$n"
  fi

  [ "${BENCH_FEATURES:-1}" = 0 ] && continue
  fout="$work/features-$n"
  set_aside "$fout"
  /usr/bin/time -v "$bin" features --input "$data" --out "$fout" --as-of "$as_of" --log-format json \
    > "$work/features-$n.out" 2> "$work/features-$n.time"
  read -r wall rss < <(measure "$work/features-$n.time")
  printf '%-10s %-10s %10s %10s %10s %10s\n' "$n" features "$wall" "$rss" "-" "$(du -sm "$fout" | cut -f1)"
done
