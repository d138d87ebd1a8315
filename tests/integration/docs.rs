//! Every output column is documented (OUTPUTS.md, FEATURES.md), and every Parquet output is
//! flat and readable by independent readers (pyarrow, DuckDB, pandas).

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use crate::common::*;

/// Column names in the tables of one `## heading` section of a markdown file.
fn documented(doc: &str, heading: &str) -> HashSet<String> {
    let start = doc.find(&format!("\n## {heading}")).unwrap_or_else(|| panic!("no section {heading}"));
    let rest = &doc[start + 4..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    rest[..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(" |").next())
        .map(|c| c.trim().to_string())
        .collect()
}

fn columns(path: &Path) -> Vec<String> {
    read_parquet(path).get_column_names().iter().map(|c| c.to_string()).collect()
}

#[test]
fn every_output_column_is_documented() {
    let doc = std::fs::read_to_string(repo().join("OUTPUTS.md")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = lanewatch_fast("run", small_input(), out.path(), &["--as-of", SMALL_AS_OF]);
    expect_code(&o, 0);
    let run = out.path().join(format!("as_of={SMALL_AS_OF}"));
    let scores = documented(&doc, "scores.parquet");
    for (file, allowed) in [
        ("scores.parquet", scores.clone()),
        ("alerts.parquet", scores.union(&documented(&doc, "alerts.parquet")).cloned().collect()),
        ("recovered.parquet", documented(&doc, "recovered.parquet")),
        ("capped_alerts.parquet", documented(&doc, "capped_alerts.parquet")),
        ("lane_alerts.parquet", documented(&doc, "lane_alerts.parquet")),
        ("lanes.parquet", documented(&doc, "lanes.parquet")),
        ("service_advice.parquet", documented(&doc, "service_advice.parquet")),
        ("promise_advice.parquet", documented(&doc, "promise_advice.parquet")),
        ("seller_advice.parquet", documented(&doc, "seller_advice.parquet")),
    ] {
        for c in columns(&run.join(file)) {
            assert!(allowed.contains(&c), "{file}: column {c} is not documented in OUTPUTS.md");
        }
    }
    // Feature tables: identifying columns, then FEATURES.md in order.
    let features_doc = std::fs::read_to_string(repo().join("FEATURES.md")).unwrap();
    let listed: Vec<String> = features_doc
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            cells[0].parse::<usize>().ok().map(|_| cells[1].to_string())
        })
        .collect();
    assert_eq!(listed, lanewatch::features::feature_names(), "FEATURES.md is out of date");
    let fdir = tempfile::tempdir().unwrap();
    let o = lanewatch_fast("features", small_input(), fdir.path(), &["--as-of", SMALL_AS_OF]);
    expect_code(&o, 0);
    for (file, extra) in [("features.parquet", vec![]), ("training.parquet", vec!["late", "resolved_at"])] {
        let cols = columns(&fdir.path().join(file));
        let mut want: Vec<String> = ["shipment_id", "seller_id", "origin", "destination", "service", "snapshot_at"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        want.extend(extra.iter().map(|s| s.to_string()));
        want.extend(listed.iter().cloned());
        assert_eq!(cols, want, "{file}");
    }
    // Backtest table.
    let bt = tempfile::tempdir().unwrap();
    let o = lanewatch_fast(
        "backtest",
        small_input(),
        bt.path(),
        &["--from", "2026-09-01", "--to", "2026-09-15", "--every", "7"],
    );
    expect_code(&o, 0);
    let allowed = documented(&doc, "Backtest (`lanewatch backtest`)");
    for c in columns(&bt.path().join("backtest.parquet")) {
        assert!(allowed.contains(&c), "backtest.parquet: {c} undocumented");
    }
}

#[test]
fn parquet_outputs_are_flat_and_readable_by_pyarrow_duckdb_and_pandas() {
    let Some(py) = crate::tools::require_python(&["pyarrow", "duckdb", "pandas"]) else { return };
    let out = tempfile::tempdir().unwrap();
    let o = lanewatch_fast("run", small_input(), out.path(), &["--as-of", SMALL_AS_OF]);
    expect_code(&o, 0);
    let run = out.path().join(format!("as_of={SMALL_AS_OF}"));
    let script = r#"
import sys, glob, os
import pyarrow.parquet as pq, pyarrow as pa, duckdb, pandas as pd
files = sorted(glob.glob(os.path.join(sys.argv[1], "*.parquet")))
names = sorted(os.path.basename(f) for f in files)
assert names == sorted(["scores.parquet", "alerts.parquet", "recovered.parquet", "lane_alerts.parquet",
    "capped_alerts.parquet", "lanes.parquet", "service_advice.parquet", "promise_advice.parquet",
    "seller_advice.parquet"]), names
for f in files:
    t = pq.read_table(f)
    for field in t.schema:
        assert not pa.types.is_nested(field.type), (f, field)
        if pa.types.is_timestamp(field.type):
            assert field.type.tz == "UTC" and field.type.unit == "us", (f, field)
    n = duckdb.sql(f"select count(*) from read_parquet('{f}')").fetchall()[0][0]
    d = pd.read_parquet(f)
    assert n == t.num_rows == len(d), (f, n, t.num_rows, len(d))
    assert list(d.columns) == t.schema.names
    print(os.path.basename(f), t.num_rows)
"#;
    let o = Command::new(py).args(["-c", script, run.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
}
