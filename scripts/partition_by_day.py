"""Copies a lanewatch input into date partitions, as a platform's export lands them:
shipments/date=YYYY-MM-DD/part-0.parquet by creation day, events/date=.../part-0.parquet by
scan day. Used by scripts/bench.sh to measure incremental nights.

    python3 scripts/partition_by_day.py INPUT_DIR OUT_DIR      (needs polars)
"""
import os
import sys

import polars as pl

src, dst = sys.argv[1], sys.argv[2]
for table, col in [("shipments", "created_at"), ("events", "event_time")]:
    df = pl.read_parquet(os.path.join(src, f"{table}.parquet"))
    df = df.with_columns(pl.col(col).dt.date().alias("__day"))
    for (day,), part in df.group_by("__day"):
        folder = os.path.join(dst, table, f"date={day}")
        os.makedirs(folder, exist_ok=True)
        part.drop("__day").write_parquet(os.path.join(folder, "part-0.parquet"), compression="zstd")
