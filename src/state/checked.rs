//! The clean events kept in the state: on a night that writes the sorted shipments again (a
//! first night, a full refresh, and about once every few weeks of history), its checked events
//! and what the checks counted (`validate::Checked`), so that the nights after it decode and
//! check only the events files read since, and the shipments those name.
//!
//! ```text
//! segments/seg-<id>-checked-events.parquet    time, code, estimate: every shipment's clean
//!                                              events, shipment after shipment
//! segments/seg-<id>-checked-counts.parquet    events: each sorted shipment's number of them
//! segments/seg-<id>-checked-unmapped.parquet  ship (its sorted row), time, status (index
//!                                              into `statuses`): the rows of unmapped statuses
//! segments/seg-<id>-checked-orphans.parquet   id, time, status, estimate: the rows of ids
//!                                              not among the shipments, as decoded
//! ```
//!
//! Exact, as the segments are: a night through them gives the events and counts a night that
//! checks every row gives (`validate::Checked`; tests in `validate` and `tests/integration`).
//! The rows of unknown shipments are kept as decoded and decoded again by every night after:
//! a shipment that arrives later (a feed that sends a parcel's first scans before the parcel)
//! takes its rows as a full read gives them.

use std::collections::HashMap;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::validate::{Checked, Checks, Events, IdIndex, KeptEvents, ORPHAN, Pieces, RawEvents, Tally, UnmappedRows};

/// A generation's kept checks: what `state-<id>.json` records of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The files under `segments/` and the BLAKE3 of their bytes.
    pub events: String,
    pub events_blake3: String,
    pub counts: String,
    pub counts_blake3: String,
    pub unmapped: String,
    pub unmapped_blake3: String,
    pub orphans: String,
    pub orphans_blake3: String,
    /// The statuses the unmapped rows index (the night's numbering).
    pub statuses: Vec<String>,
    /// The sorted shipments they belong to (`Sorted::data`; their rows are its rows) and the
    /// events files they cover (the first of the generation's).
    pub sorted: String,
    pub shipments: u64,
    pub event_files: u64,
    pub has_eta: bool,
    pub tally: Tally,
}

/// What reading kept checks needs of the night that reads them.
pub struct Tonight<'a> {
    /// Per sorted row of the kept night (the sorted shipments' rows), its arrival row.
    pub arrival: &'a [u32],
    /// Arrival row → tonight's sorted index.
    pub sorted_of: &'a [u32],
    /// Tonight's status numbering (`RawEvents::statuses`), holding every kept status.
    pub status_of: &'a HashMap<String, u32>,
}

/// The kept night's rows of ids not among its shipments, statuses in tonight's numbering: to be
/// appended to tonight's decoded rows (`append_to`).
#[derive(Default)]
pub struct Orphans {
    id: Vec<String>,
    time: Vec<i64>,
    status: Vec<u32>,
    eta: Option<Vec<i64>>,
}

impl Orphans {
    pub fn len(&self) -> usize {
        self.id.len()
    }

    /// Appends the rows to `out` as decoding them tonight does: each id looked up among
    /// tonight's shipments (`index`), the ones still unknown numbered in first-use order.
    pub fn append_to(self, out: &mut RawEvents, index: Option<&IdIndex<'_>>, orphan_of: &mut HashMap<String, u32>) {
        let before = out.len();
        for (id, (&t, &st)) in self.id.into_iter().zip(self.time.iter().zip(&self.status)) {
            let ship = match index.and_then(|ix| ix.get(&id)) {
                Some(i) => i,
                None => {
                    let next = out.orphans.len() as u32;
                    ORPHAN
                        | *orphan_of.entry(id).or_insert_with_key(|id| {
                            out.orphans.push(id.clone());
                            next
                        })
                }
            };
            out.ship.push(ship);
            out.time.push(t);
            out.status.push(st);
        }
        out.extend_eta(before, self.eta.as_deref());
    }
}

/// Reads kept checks (`read_file` reads a file under `segments/` and checks its BLAKE3) in
/// tonight's numbering, and the kept night's rows of unknown ids. `Err(why)`: they are
/// damaged, and the night starts again from a full refresh.
pub fn read(
    e: &Entry,
    read_file: impl Fn(&str, &str) -> std::result::Result<DataFrame, String> + Sync,
    tonight: &Tonight<'_>,
) -> std::result::Result<(Checked, Orphans), String> {
    let ((events, counts), (unmapped, orphans)) = rayon::join(
        || rayon::join(|| read_file(&e.events, &e.events_blake3), || read_file(&e.counts, &e.counts_blake3)),
        || rayon::join(|| read_file(&e.unmapped, &e.unmapped_blake3), || read_file(&e.orphans, &e.orphans_blake3)),
    );
    let (events, counts, unmapped, orphans) = (events?, counts?, unmapped?, orphans?);
    let corrupt = |what: &str| format!("state segment {what} does not match its generation");
    let n = usize::try_from(e.shipments).map_err(|_| corrupt(&e.counts))?;
    if tonight.arrival.len() != n {
        return Err(corrupt(&e.counts));
    }
    let at: Vec<u32> = tonight
        .arrival
        .iter()
        .map(|&a| tonight.sorted_of.get(a as usize).copied())
        .collect::<Option<_>>()
        .ok_or_else(|| corrupt(&e.counts))?;

    // Each shipment's range from the counts.
    let per_ship: Vec<u32> = column(&counts, "events", |s| s.u32().ok().cloned()).ok_or_else(|| corrupt(&e.counts))?;
    if per_ship.len() != n {
        return Err(corrupt(&e.counts));
    }
    let mut start = Vec::with_capacity(n + 1);
    start.push(0u32);
    for &c in &per_ship {
        let next = start.last().copied().unwrap_or(0).checked_add(c).ok_or_else(|| corrupt(&e.counts))?;
        start.push(next);
    }
    let bad = || corrupt(&e.events);
    let time = pieces(&events, "time", |s| s.i64().ok().cloned()).ok_or_else(bad)?;
    let code = pieces(&events, "code", |s| s.u8().ok().cloned()).ok_or_else(bad)?;
    let eta = match e.has_eta {
        true => Some(pieces(&events, "eta", |s| s.i64().ok().cloned()).ok_or_else(bad)?),
        false => None,
    };
    let rows = start[n] as usize;
    if time.len() != rows || code.len() != rows || eta.as_ref().is_some_and(|v| v.len() != rows) {
        return Err(bad());
    }
    let events = KeptEvents { start, time, code, eta };

    let bad = || corrupt(&e.unmapped);
    let ship: Vec<u32> = column(&unmapped, "ship", |s| s.u32().ok().cloned()).ok_or_else(bad)?;
    let time: Vec<i64> = column(&unmapped, "time", |s| s.i64().ok().cloned()).ok_or_else(bad)?;
    let status: Vec<u32> = column(&unmapped, "status", |s| s.u32().ok().cloned()).ok_or_else(bad)?;
    if time.len() != ship.len() || status.len() != ship.len() {
        return Err(bad());
    }
    let numbered: Vec<u32> =
        e.statuses.iter().map(|name| tonight.status_of.get(name).copied()).collect::<Option<_>>().ok_or_else(bad)?;
    let renumber =
        |status: &[u32]| -> Option<Vec<u32>> { status.iter().map(|&s| numbered.get(s as usize).copied()).collect() };
    let rows = UnmappedRows {
        ship: ship.iter().map(|&s| at.get(s as usize).copied()).collect::<Option<_>>().ok_or_else(bad)?,
        time,
        status: renumber(&status).ok_or_else(bad)?,
    };

    let orphans = orphans_of(&orphans, renumber).ok_or_else(|| corrupt(&e.orphans))?;
    Ok((Checked { events, at, tally: e.tally, unmapped: rows }, orphans))
}

/// The kept rows of unknown ids (`orphan_rows`), statuses renumbered. Their estimates are there
/// when the night that kept them had any in its decoded rows, which the kept clean events'
/// `has_eta` does not tell (those may hold an earlier night's estimates).
fn orphans_of(df: &DataFrame, renumber: impl Fn(&[u32]) -> Option<Vec<u32>>) -> Option<Orphans> {
    let id: Vec<String> = df
        .column("id")
        .ok()
        .and_then(|c| c.str().ok())
        .filter(|c| c.null_count() == 0)
        .map(|c| c.iter().map(|v| v.unwrap_or_default().to_string()).collect())?;
    let time: Vec<i64> = column(df, "time", |s| s.i64().ok().cloned())?;
    let status: Vec<u32> = column(df, "status", |s| s.u32().ok().cloned())?;
    let eta: Option<Vec<i64>> = match df.column("eta") {
        Ok(_) => Some(column(df, "eta", |s| s.i64().ok().cloned())?),
        Err(_) => None,
    };
    if time.len() != id.len() || status.len() != id.len() || eta.as_ref().is_some_and(|v| v.len() != id.len()) {
        return None;
    }
    Some(Orphans { id, time, status: renumber(&status)?, eta })
}

/// A null-free numeric column of a kept file, copied chunk by chunk into one vector (a file
/// written in slices reads back in as many chunks; made one chunk first, it was copied twice).
fn column<T: PolarsNumericType>(
    df: &DataFrame,
    name: &str,
    typed: impl Fn(&Series) -> Option<ChunkedArray<T>>,
) -> Option<Vec<T::Native>> {
    pieces(df, name, typed).map(|p| p.to_vec())
}

/// A null-free numeric column of a kept file as it was decoded (`Pieces`: read in place).
fn pieces<T: PolarsNumericType>(
    df: &DataFrame,
    name: &str,
    typed: impl Fn(&Series) -> Option<ChunkedArray<T>>,
) -> Option<Pieces<T>> {
    Pieces::new(typed(df.column(name).ok()?.as_materialized_series())?)
}

/// Rows `rows` of the kept events file of a night's clean events.
pub fn events_slice(events: &Events, rows: std::ops::Range<usize>) -> Result<DataFrame> {
    let mut cols = vec![
        Column::new("time".into(), events.time[rows.clone()].to_vec()),
        Column::new("code".into(), events.code[rows.clone()].to_vec()),
    ];
    if let Some(eta) = &events.eta {
        cols.push(Column::new("eta".into(), eta[rows.clone()].to_vec()));
    }
    Ok(DataFrame::new(rows.len(), cols)?)
}

/// Rows `rows` of the kept counts file: each of those shipments' number of clean events.
pub fn counts_slice(events: &Events, rows: std::ops::Range<usize>) -> Result<DataFrame> {
    let counts: Vec<u32> = events.start[rows.start..=rows.end].windows(2).map(|w| w[1] - w[0]).collect();
    Ok(DataFrame::new(rows.len(), vec![Column::new("events".into(), counts)])?)
}

/// Every unmapped row of a night's shipments: the kept night's (already in this night's
/// numbering) and the decoded rows of unmapped statuses (those of unknown ids are kept with
/// them, `orphan_rows`).
pub fn unmapped_rows(checks: &Checks, raw: &RawEvents) -> Result<DataFrame> {
    let kept = &checks.kept_unmapped;
    let mut rows = UnmappedRows { ship: kept.ship.clone(), time: kept.time.clone(), status: kept.status.clone() };
    let unmapped = |s: u32| checks.unmapped_status.get(s as usize).copied().unwrap_or(false);
    for k in (0..raw.len()).filter(|&k| unmapped(raw.status[k]) && raw.ship[k] & ORPHAN == 0) {
        rows.ship.push(raw.ship[k]);
        rows.time.push(raw.time[k]);
        rows.status.push(raw.status[k]);
    }
    let n = rows.len();
    let cols = vec![
        Column::new("ship".into(), rows.ship),
        Column::new("time".into(), rows.time),
        Column::new("status".into(), rows.status),
    ];
    Ok(DataFrame::new(n, cols)?)
}

/// A night's decoded rows of ids not among its shipments, as decoded: id, time, status (the
/// night's numbering) and estimate.
pub fn orphan_rows(raw: &RawEvents) -> Result<DataFrame> {
    let rows: Vec<usize> = (0..raw.len()).filter(|&k| raw.ship[k] & ORPHAN != 0).collect();
    let id: Vec<&str> = rows.iter().map(|&k| raw.orphans[(raw.ship[k] & !ORPHAN) as usize].as_str()).collect();
    let mut cols = vec![
        Column::new("id".into(), id),
        Column::new("time".into(), rows.iter().map(|&k| raw.time[k]).collect::<Vec<i64>>()),
        Column::new("status".into(), rows.iter().map(|&k| raw.status[k]).collect::<Vec<u32>>()),
    ];
    if let Some(eta) = &raw.eta {
        cols.push(Column::new("eta".into(), rows.iter().map(|&k| eta[k]).collect::<Vec<i64>>()));
    }
    Ok(DataFrame::new(rows.len(), cols)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A night's rows of unknown ids read back as they were decoded, with their estimates when
    /// its decoded rows had any and without them otherwise (regression: the read took the kept
    /// clean events' `has_eta`, true when an earlier night's rows had estimates, and found the
    /// kept rows of a night without any "corrupt", a full refresh on every such night).
    #[test]
    fn kept_rows_of_unknown_ids_read_back_with_or_without_estimates() {
        for with_eta in [false, true] {
            let raw = RawEvents {
                ship: vec![0, ORPHAN | 1, 2, ORPHAN],
                time: vec![10, 20, 30, 40],
                status: vec![0, 1, 0, 2],
                eta: with_eta.then(|| vec![7, crate::validate::NO_ETA, 8, 9]),
                statuses: ["A", "B", "C"].map(String::from).into(),
                orphans: ["x", "y"].map(String::from).into(),
                ..RawEvents::default()
            };
            let df = orphan_rows(&raw).unwrap();
            let back = orphans_of(&df, |s| Some(s.iter().map(|&k| k + 100).collect())).unwrap();
            assert_eq!(back.id, ["y", "x"], "with estimates: {with_eta}");
            assert_eq!((back.time, back.status), (vec![20, 40], vec![101, 102]));
            assert_eq!(back.eta, with_eta.then(|| vec![crate::validate::NO_ETA, 9]));
        }
    }
}
