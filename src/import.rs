//! Converters from public datasets to the canonical input.
//!
//! Cargo 2000 (UCI, CC BY 4.0): air-freight process instances with planned and effective
//! minutes per step, up to three incoming legs and one outgoing leg, but no calendar dates.
//!
//! - Start times: instance `nr` starts at `start + floor(nr · days · 1440 / N)` minutes, an even
//!   spread over `days` days in file order (default 120 days from 2026-01-05).
//! - promised_at = start + planned end-to-end minutes: the slowest incoming leg's planned total
//!   plus the outgoing leg's planned total.
//! - Events follow the effective minutes. The consolidated shipment reaches a milestone when its
//!   slowest incoming leg does: PICKED_UP = all legs checked in (RCS), ORIGIN_HUB = all legs'
//!   last arrivals (RCF), EXPORT_CLEARED = all legs delivered to the hub (DLV), DEPARTED = first
//!   outgoing departure, ARRIVED = last outgoing arrival, DELIVERED = outgoing delivery.
//!   Intermediate hops are kept as generic scans with their Cargo 2000 codes (RCS, DEP, RCF).
//! - carrier_estimated_delivery_at on every event: the forwarder's plan as it stands at that
//!   moment. Each incoming leg is expected to finish at its last completed step plus its
//!   planned remaining minutes (at its planned total before it starts); the consolidated
//!   shipment leaves when the slowest leg is expected in, and the outgoing leg adds its
//!   planned minutes, or, once under way, its last completed step plus its planned remainder.
//!   At booking this is the promise itself; it moves as legs run early or late.
//! - Lane: origin = the hub where the outgoing leg departs, destination = its final airport,
//!   service = number of incoming legs; the outgoing leg is what the lane's statistics can
//!   predict. Seller = the first incoming leg's departure airport (the data has no shippers).

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::prelude::*;

use crate::error::{Error, Result};
use crate::io;

const MIN: i64 = 60_000_000;

pub struct Cargo2000Summary {
    pub shipments: usize,
    pub events: usize,
    pub late_rate: f64,
}

/// The most minutes one step of a leg may take (about 19 years).
const MAX_STEP_MINUTES: i64 = 10_000_000;
/// Shipments are placed at most this far (2200-01-01, where validation's window ends).
const MAX_TIME: i64 = crate::validate::MAX_TS;

struct Leg {
    /// Effective and planned minutes per step, in process order: (code, effective, planned, place).
    steps: Vec<(&'static str, i64, i64, Option<String>)>,
}

impl Leg {
    fn planned(&self) -> i64 {
        self.steps.iter().map(|s| s.2).sum()
    }
}

fn parse_leg(
    row: &[&str],
    col: &dyn Fn(&str) -> Option<usize>,
    prefix: &str,
    file: &str,
    line: usize,
) -> Result<Option<Leg>> {
    let get = |name: &str| -> Result<Option<i64>> {
        let k = col(&format!("{prefix}_{name}"))
            .ok_or_else(|| Error::data(file, format!("{prefix}_{name}"), "missing column"))?;
        let v = row.get(k).copied().unwrap_or("?").trim();
        if v == "?" || v.is_empty() {
            return Ok(None);
        }
        let minutes = v.parse::<i64>().map_err(|_| {
            Error::data(
                file,
                format!("{prefix}_{name}"),
                format!("line {line}: not a number: {}", crate::error::quote(v)),
            )
        })?;
        // Minutes of a step: past 19 years is no freight leg, and the times they add up to
        // would overflow (a wrapped time can land inside the window validation accepts).
        if minutes.abs() > MAX_STEP_MINUTES {
            return Err(Error::data(
                file,
                format!("{prefix}_{name}"),
                format!("line {line}: {minutes} minutes is out of range (at most {MAX_STEP_MINUTES})"),
            ));
        }
        Ok(Some(minutes))
    };
    // A place becomes a seller id (`AP-<place>`), an origin or a destination: one longer than
    // an id may be wrote an input that `run` refused.
    let place = |name: &str| -> Result<Option<String>> {
        let Some(k) = col(&format!("{prefix}_{name}")) else { return Ok(None) };
        let v = row.get(k).copied().unwrap_or("?").trim();
        if v.len() > MAX_PLACE_BYTES {
            return Err(Error::data(
                file,
                format!("{prefix}_{name}"),
                format!("line {line}: a place of {} bytes (at most {MAX_PLACE_BYTES})", v.len()),
            ));
        }
        Ok((v != "?" && !v.is_empty()).then(|| v.to_string()))
    };
    let (Some(rcs_e), Some(rcs_p)) = (get("rcs_e")?, get("rcs_p")?) else {
        return Ok(None);
    };
    let mut steps = vec![("RCS", rcs_e, rcs_p, None)];
    for h in 1..=3 {
        let (Some(de), Some(dp)) = (get(&format!("dep_{h}_e"))?, get(&format!("dep_{h}_p"))?) else {
            break;
        };
        steps.push(("DEP", de, dp, place(&format!("dep_{h}_place"))?));
        let (Some(re), Some(rp)) = (get(&format!("rcf_{h}_e"))?, get(&format!("rcf_{h}_p"))?) else {
            break;
        };
        steps.push(("RCF", re, rp, place(&format!("rcf_{h}_place"))?));
    }
    let (Some(de), Some(dp)) = (get("dlv_e")?, get("dlv_p")?) else {
        return Ok(None);
    };
    steps.push(("DLV", de, dp, None));
    Ok(Some(Leg { steps }))
}

/// The longest place name: `AP-<place>` must fit an id (`validate::MAX_ID_BYTES`).
const MAX_PLACE_BYTES: usize = crate::validate::MAX_ID_BYTES - "AP-".len();

pub fn cargo2000(src: &Path, out: &Path, start: NaiveDate, days: u32) -> Result<Cargo2000Summary> {
    let file = src.display().to_string();
    // A folder or an unreadable file is a missing input (66), as for `run`, not bad data.
    let text = match crate::io::read_regular(src) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::MissingInput { path: src.to_path_buf() });
        }
        Err(e) => return Err(Error::MissingInput { path: PathBuf::from(format!("{file} ({e})")) }),
    };
    // A byte-order mark (spreadsheets save one) hid the first column's name: "missing column nr".
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut lines = text.lines();
    let header: Vec<&str> =
        lines.next().ok_or_else(|| Error::bad_file(&file, "empty file"))?.split(',').map(str::trim).collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (nr_col, legs_col) = (
        col("nr").ok_or_else(|| Error::data(&file, "nr", "missing column"))?,
        col("legs").ok_or_else(|| Error::data(&file, "legs", "missing column"))?,
    );
    let rows: Vec<(usize, Vec<&str>)> = lines
        .enumerate()
        .map(|(k, l)| (k + 2, l.split(',').collect::<Vec<_>>()))
        .filter(|(_, r)| r.get(legs_col).is_some_and(|v| !v.trim().is_empty()))
        .collect();
    let n = rows.len();
    if n == 0 {
        return Err(Error::bad_file(&file, "no process instances"));
    }
    let base = crate::calendar::day_start_micros(start);
    let span_min = days as i64 * 1440;

    let (mut ids, mut sellers, mut origins, mut dests, mut services, mut created, mut promised) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut ev_id, mut ev_time, mut ev_status, mut ev_loc, mut ev_eta) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut delivered, mut late) = (vec![], vec![]);
    // Each process instance once: a repeated `nr` wrote two shipments of one id, which `run`
    // refused.
    let mut line_of_nr: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    for (line, row) in &rows {
        // A short line may end before `nr` (the filter above saw `legs`).
        let cell =
            |k: usize, name: &str| row.get(k).ok_or_else(|| Error::data(&file, name, format!("line {line}: no value")));
        let nr: i64 = cell(nr_col, "nr")?
            .trim()
            .parse()
            .map_err(|_| Error::data(&file, "nr", format!("line {line}: not a number")))?;
        if let Some(first) = line_of_nr.insert(nr, *line) {
            return Err(Error::data(&file, "nr", format!("line {line}: nr {nr} again (first on line {first})")));
        }
        let legs: usize = cell(legs_col, "legs")?
            .trim()
            .parse()
            .map_err(|_| Error::data(&file, "legs", format!("line {line}: not a number")))?;
        let mut incoming = Vec::new();
        for i in 1..=legs.min(3) {
            if let Some(l) = parse_leg(row, &col, &format!("i{i}"), &file, *line)? {
                incoming.push(l);
            }
        }
        let Some(outgoing) = parse_leg(row, &col, "o", &file, *line)? else {
            return Err(Error::data(&file, "o_rcs_e", format!("line {line}: outgoing leg missing")));
        };
        if incoming.is_empty() {
            return Err(Error::data(&file, "i1_rcs_e", format!("line {line}: no incoming leg")));
        }
        let id = format!("C2K-{nr:05}");
        // The instance's place in the span, in whole minutes; an `nr` so large that the time
        // leaves the range times are kept in is bad data, not a wrapped time.
        let t0 = i64::try_from(nr as i128 * span_min as i128 / n as i128 * MIN as i128 + base as i128)
            .ok()
            .filter(|t| (0..=MAX_TIME).contains(t))
            .ok_or_else(|| Error::data(&file, "nr", format!("line {line}: {nr} places the shipment out of range")))?;
        let origin = incoming[0].steps.iter().find_map(|s| s.3.clone()).unwrap_or_else(|| "unknown".into());
        let dest = outgoing.steps.iter().rev().find_map(|s| s.3.clone()).unwrap_or_else(|| "unknown".into());
        let planned = incoming.iter().map(Leg::planned).max().unwrap_or(0) + outgoing.planned();

        // The plan as it stands at time t (see the module documentation).
        let leg_done = |leg: &Leg, start: i64, t: i64| -> i64 {
            let mut end = start;
            let mut expected = start + leg.planned() * MIN;
            for (k, (_, eff, _, _)) in leg.steps.iter().enumerate() {
                end += eff.max(&0) * MIN;
                if end > t {
                    break;
                }
                expected = end + leg.steps[k + 1..].iter().map(|s| s.2).sum::<i64>() * MIN;
            }
            expected
        };
        let at_hub_actual =
            incoming.iter().map(|l| t0 + l.steps.iter().map(|s| s.1.max(0)).sum::<i64>() * MIN).max().unwrap_or(t0);
        let estimate = |t: i64| -> i64 {
            if t < at_hub_actual {
                incoming.iter().map(|l| leg_done(l, t0, t)).max().unwrap_or(t0) + outgoing.planned() * MIN
            } else {
                leg_done(&outgoing, at_hub_actual, t)
            }
        };
        let mut push = |t: i64, status: &str, loc: Option<&String>| {
            ev_id.push(id.clone());
            ev_time.push(t);
            ev_status.push(status.to_string());
            ev_loc.push(loc.map(|p| format!("airport {p}")));
            ev_eta.push(estimate(t));
        };
        push(t0, "CREATED", None);
        // Per leg: end time of each step; milestones wait for the slowest leg.
        let (mut checked_in, mut arrived_hub, mut at_hub) = (t0, t0, t0);
        for leg in &incoming {
            let mut t = t0;
            let last_rcf = leg.steps.iter().rposition(|s| s.0 == "RCF");
            for (k, (code, eff, _, place)) in leg.steps.iter().enumerate() {
                t += eff.max(&0) * MIN;
                match *code {
                    "RCS" => checked_in = checked_in.max(t),
                    "DLV" => at_hub = at_hub.max(t),
                    _ => {
                        if Some(k) == last_rcf {
                            arrived_hub = arrived_hub.max(t);
                        }
                        push(t, code, place.as_ref());
                    }
                }
            }
        }
        push(checked_in, "PICKED_UP", None);
        push(arrived_hub, "ORIGIN_HUB", None);
        push(at_hub, "EXPORT_CLEARED", None);
        let mut t = at_hub;
        let first_dep = outgoing.steps.iter().position(|s| s.0 == "DEP");
        let last_rcf = outgoing.steps.iter().rposition(|s| s.0 == "RCF");
        let mut done = None;
        for (k, (code, eff, _, place)) in outgoing.steps.iter().enumerate() {
            t += eff.max(&0) * MIN;
            let status = if Some(k) == first_dep {
                "DEPARTED"
            } else if Some(k) == last_rcf {
                "ARRIVED"
            } else if *code == "DLV" {
                done = Some(t);
                "DELIVERED"
            } else {
                code
            };
            push(t, status, place.as_ref());
        }
        ids.push(id.clone());
        let hub = outgoing.steps.iter().find_map(|s| s.3.clone()).unwrap_or_else(|| "unknown".into());
        sellers.push(format!("AP-{origin}"));
        origins.push(format!("AP-{hub}"));
        dests.push(format!("AP-{dest}"));
        services.push(format!("air-{}leg", incoming.len()));
        created.push(t0);
        promised.push(t0 + planned * MIN);
        delivered.push(done);
        late.push(done.is_none_or(|d| d > t0 + planned * MIN));
    }
    // Only an instance's start was kept in range above: its scans and its promise come later,
    // and at the latest `--start` with the longest `--days` they passed 2200, which `validate`
    // then refused. Nothing is written for a placement that goes past it.
    if let Some(&latest) = ev_time.iter().chain(&promised).max().filter(|&&t| t >= MAX_TIME) {
        let day = crate::calendar::date_of_micros(latest);
        return Err(Error::Config(format!(
            "import cargo2000 --start {start} --days {days} places times up to {day}, past the 2199-12-31 validation \
             accepts: use an earlier --start or fewer --days"
        )));
    }

    io::create_dir_all(out)?;
    let mut ships = DataFrame::new(
        n,
        vec![
            Column::new("shipment_id".into(), ids.clone()),
            Column::new("seller_id".into(), sellers),
            Column::new("origin".into(), origins),
            Column::new("destination".into(), dests),
            Column::new("service".into(), services),
            io::ts_column_req("created_at", created),
            io::ts_column_req("promised_at", promised),
        ],
    )?;
    let n_ev = ev_id.len();
    let mut events = DataFrame::new(
        n_ev,
        vec![
            Column::new("shipment_id".into(), ev_id),
            io::ts_column_req("event_time", ev_time),
            Column::new("status".into(), ev_status),
            Column::new("location".into(), ev_loc),
            io::ts_column_req("carrier_estimated_delivery_at", ev_eta),
        ],
    )?
    .sort(["shipment_id", "event_time"], SortMultipleOptions::default().with_maintain_order(true))?;
    let late_rate = late.iter().filter(|l| **l).count() as f64 / n as f64;
    let mut truth = DataFrame::new(
        n,
        vec![
            Column::new("shipment_id".into(), ids),
            io::ts_column("delivered_at", delivered),
            Column::new("late".into(), late),
        ],
    )?;
    // The three together or none: an input with new shipments beside old events is no input.
    let mut set = io::FileSet::new();
    set.parquet(&mut ships, &out.join("shipments.parquet"))?;
    set.parquet(&mut events, &out.join("events.parquet"))?;
    set.parquet(&mut truth, &out.join("truth.parquet"))?;
    set.commit()?;
    Ok(Cargo2000Summary { shipments: n, events: n_ev, late_rate })
}
