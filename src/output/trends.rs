//! The nights the report's trend charts show: this night and the complete earlier runs beside
//! it in the output folder, each summarised from its own files the same way, so a trend is
//! the same whether a night was just computed or read back.

use std::path::Path;

use chrono::NaiveDate;
use polars::prelude::*;

use crate::error::Result;
use crate::report::TrendNight;

/// One night's summary from its alerts and lane frames. At-risk alerts are scored against the
/// outcomes `known` at tonight's cutoff (`FeatureSet::known_outcome`) (point in time: what tonight's data knows), so an earlier
/// night's precision fills in as its parcels resolve; tonight's own alerts have none yet.
pub fn summarise(
    as_of: NaiveDate,
    alerts: &DataFrame,
    lanes: &DataFrame,
    known: &dyn Fn(&str) -> Option<bool>,
) -> Result<TrendNight> {
    let kind = alerts.column("alert")?.str()?;
    let ids = alerts.column("shipment_id")?.str()?;
    let mut t = TrendNight { as_of, ..TrendNight::default() };
    for k in 0..alerts.height() {
        match kind.get(k) {
            Some("late") => t.late += 1,
            Some("stalled") => t.stalled += 1,
            Some("at_risk") => {
                t.at_risk += 1;
                if let Some(late) = ids.get(k).and_then(known) {
                    t.at_risk_resolved += 1;
                    t.at_risk_late += late as u64;
                }
            }
            _ => {}
        }
    }
    let shipments: i64 = lanes.column("shipments")?.i64()?.sum().unwrap_or(0);
    let late: i64 = lanes.column("late")?.i64()?.sum().unwrap_or(0);
    t.on_time_rate = if shipments > 0 { 1.0 - late as f64 / shipments as f64 } else { f64::NAN };
    t.disrupted_lanes = lanes.column("disrupted")?.bool()?.sum().unwrap_or(0) as u64;
    Ok(t)
}

/// Up to `nights − 1` complete runs before `as_of` in `out`, newest last, summarised against
/// tonight's outcomes; a run whose files cannot be read is left out and named in the returned
/// warnings (a trend chart is no reason to fail a night).
pub fn earlier(
    out: &Path,
    as_of: NaiveDate,
    nights: u32,
    known: &dyn Fn(&str) -> Option<bool>,
) -> (Vec<TrendNight>, Vec<String>) {
    let (mut found, mut warnings) = (Vec::new(), Vec::new());
    for (d, dir) in &runs(out, as_of, nights) {
        let read = |name: &str, cols: &[&str]| -> Result<DataFrame> {
            let path = dir.join(name);
            let f = std::fs::File::open(&path)
                .map_err(|e| crate::error::Error::bad_file(path.display().to_string(), e.to_string()))?;
            Ok(ParquetReader::new(f).with_columns(Some(cols.iter().map(|c| (*c).into()).collect())).finish()?)
        };
        let summary = read("alerts.parquet", &["shipment_id", "alert"])
            .and_then(|a| Ok((a, read("lanes.parquet", &["shipments", "late", "disrupted"])?)))
            .and_then(|(a, l)| summarise(*d, &a, &l, known));
        match summary {
            Ok(t) => found.push(t),
            Err(e) => warnings.push(format!("run {} left out of the report's trends: {e}", dir.display())),
        }
    }
    (found, warnings)
}

/// The complete runs before `as_of` in `out` that a report of `nights` nights shows, oldest
/// first.
fn runs(out: &Path, as_of: NaiveDate, nights: u32) -> Vec<(NaiveDate, std::path::PathBuf)> {
    let mut runs: Vec<(NaiveDate, std::path::PathBuf)> =
        super::run_dir::complete_runs(out).into_iter().filter(|r| r.0 < as_of).collect();
    let keep = runs.len().saturating_sub(nights.saturating_sub(1) as usize);
    runs.drain(..keep);
    runs
}

/// The shipments of the at-risk alerts of the runs `earlier` reads, and those runs (date and
/// their alerts' BLAKE3): a
/// sharded night's shards tell the merge which of these turned out late (`summarise` scores
/// them), and the merge checks it read the same runs. A run that cannot be read is left out,
/// as `earlier` leaves it out.
pub fn at_risk_ids(out: &Path, as_of: NaiveDate, nights: u32) -> (std::collections::BTreeSet<String>, Vec<String>) {
    let (mut ids, mut dates) = (std::collections::BTreeSet::new(), Vec::new());
    for (d, dir) in runs(out, as_of, nights) {
        let Ok(bytes) = std::fs::read(dir.join("alerts.parquet")) else { continue };
        let read = ParquetReader::new(std::io::Cursor::new(&bytes))
            .with_columns(Some(vec!["shipment_id".into(), "alert".into()]))
            .finish();
        let Ok(a) = read else { continue };
        let (Ok(id), Ok(kind)) =
            (a.column("shipment_id").and_then(|c| c.str()), a.column("alert").and_then(|c| c.str()))
        else {
            continue;
        };
        ids.extend(
            id.iter().zip(kind.iter()).filter(|(_, k)| *k == Some("at_risk")).filter_map(|(i, _)| i.map(String::from)),
        );
        dates.push(format!("as_of={d} (alerts.parquet BLAKE3 {})", blake3::hash(&bytes).to_hex()));
    }
    (ids, dates)
}

/// A run's alerts as the rounds name them: the BLAKE3 of its `alerts.parquet` and of its
/// `capped_alerts.parquet` (absent in a run of an earlier build), or why one is unreadable.
/// Both are the next night's memory: a rerun that only adds capped alerts changes it too.
pub fn alerts_digest(dir: &Path) -> String {
    let digest = |name: &str| match std::fs::read(dir.join(name)) {
        Ok(bytes) => format!("{name} BLAKE3 {}", blake3::hash(&bytes).to_hex()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && name == super::CAPPED_FILE => format!("no {name}"),
        Err(e) => format!("{name} unreadable: {e}"),
    };
    format!("{}, {}", digest("alerts.parquet"), digest(super::CAPPED_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rounds compare an earlier run by both files of its alerts: a rerun of that night that
    /// only adds alerts the cap cut changes the next night's memory, and the digest.
    #[test]
    fn the_alerts_digest_reads_the_capped_alerts_too() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("alerts.parquet"), b"listed").unwrap();
        let without = alerts_digest(dir.path());
        assert!(without.ends_with("no capped_alerts.parquet"), "{without}");
        std::fs::write(dir.path().join(super::super::CAPPED_FILE), b"cut").unwrap();
        let one = alerts_digest(dir.path());
        std::fs::write(dir.path().join(super::super::CAPPED_FILE), b"cut, and one more").unwrap();
        let two = alerts_digest(dir.path());
        assert!(one != without && two != one, "{without} / {one} / {two}");
        assert!(one.starts_with(&without[..without.find(',').unwrap()]), "{without} / {one}");
    }
}
