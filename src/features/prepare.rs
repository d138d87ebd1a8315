//! The point-in-time view of the input at a cutoff C: shipments created before C and their
//! events before C, indexed for fast per-shipment work. Nothing at or after C survives this
//! step, which is what makes every later stage leak-free by construction.

use std::collections::HashMap;

use polars::prelude::*;

use crate::error::Result;

/// Shipments visible at the cutoff, sorted by shipment_id, with their events in CSR form.
pub struct Prepared {
    pub cutoff: i64,
    /// The visible shipments (canonical columns), sorted by shipment_id.
    pub shipments: DataFrame,
    pub created: Vec<i64>,
    pub promised: Vec<i64>,
    pub weight_g: Vec<f64>,
    pub declared_value: Vec<f64>,
    pub insured: Vec<bool>,
    pub lane: Vec<u32>,
    pub seller: Vec<u32>,
    pub lanes: Vec<LaneKey>,
    pub n_sellers: usize,
    /// Events of shipment i are `ev_time[ev_start[i]..ev_start[i + 1]]`, in time order.
    pub ev_start: Vec<u32>,
    pub ev_time: Vec<i64>,
    pub ev_code: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LaneKey {
    pub origin: String,
    pub destination: String,
    pub service: String,
}

impl LaneKey {
    /// `CN-GD` → `CN`: the first level of the fallback hierarchy groups origins by country.
    pub fn origin_country(&self) -> &str {
        self.origin.split(['-', '_', ' ']).next().unwrap_or(&self.origin)
    }

    pub fn label(&self) -> String {
        format!("{}→{} {}", self.origin, self.destination, self.service)
    }
}

impl Prepared {
    pub fn len(&self) -> usize {
        self.created.len()
    }

    pub fn is_empty(&self) -> bool {
        self.created.is_empty()
    }

    pub fn events(&self, i: usize) -> (&[i64], &[u8]) {
        let (a, b) = (self.ev_start[i] as usize, self.ev_start[i + 1] as usize);
        (&self.ev_time[a..b], &self.ev_code[a..b])
    }
}

fn micros(df: &DataFrame, name: &str) -> Result<Vec<i64>> {
    let s = df.column(name)?.as_materialized_series().to_physical_repr().into_owned();
    Ok(s.i64()?.into_no_null_iter().collect())
}

/// `shipments` are the clean canonical shipments; `events` hold shipment_id, event_time, code
/// sorted by shipment_id then time (as `validate` leaves them).
pub fn prepare(shipments: &DataFrame, events: &DataFrame, cutoff: i64) -> Result<Prepared> {
    let ts_cut = lit(cutoff).cast(crate::io::utc_dtype());
    let shipments = shipments
        .clone()
        .lazy()
        .filter(col("created_at").lt(ts_cut.clone()))
        .sort(["shipment_id"], SortMultipleOptions::default())
        .collect()?;
    let events = events
        .clone()
        .lazy()
        .filter(col("event_time").lt(ts_cut))
        .sort(["shipment_id", "event_time", "code"], SortMultipleOptions::default().with_maintain_order(true))
        .collect()?;

    let n = shipments.height();
    let created = micros(&shipments, "created_at")?;
    let promised = micros(&shipments, "promised_at")?;
    let weight_g: Vec<f64> = shipments.column("weight_g")?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
    let declared_value: Vec<f64> =
        shipments.column("declared_value")?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
    let insured: Vec<bool> = shipments.column("insured")?.bool()?.iter().map(|v| v.unwrap_or(false)).collect();

    // Lanes and sellers get dense ids in sorted key order, so ids never depend on row order.
    let o = shipments.column("origin")?.str()?;
    let d = shipments.column("destination")?.str()?;
    let s = shipments.column("service")?.str()?;
    let mut lane_map: HashMap<(&str, &str, &str), u32> = HashMap::new();
    let mut raw_lane = Vec::with_capacity(n);
    for ((a, b), c) in o.iter().zip(d.iter()).zip(s.iter()) {
        let key = (a.unwrap_or(""), b.unwrap_or(""), c.unwrap_or(""));
        let next = lane_map.len() as u32;
        raw_lane.push(*lane_map.entry(key).or_insert(next));
    }
    let mut keys: Vec<((&str, &str, &str), u32)> = lane_map.into_iter().collect();
    keys.sort();
    let mut remap = vec![0u32; keys.len()];
    for (new, (_, old)) in keys.iter().enumerate() {
        remap[*old as usize] = new as u32;
    }
    let lane: Vec<u32> = raw_lane.into_iter().map(|l| remap[l as usize]).collect();
    let lanes = keys
        .iter()
        .map(|((a, b, c), _)| LaneKey { origin: a.to_string(), destination: b.to_string(), service: c.to_string() })
        .collect();

    let sellers = shipments.column("seller_id")?.str()?;
    let mut seller_map: HashMap<&str, u32> = HashMap::new();
    let mut raw_seller = Vec::with_capacity(n);
    for v in sellers.iter() {
        let next = seller_map.len() as u32;
        raw_seller.push(*seller_map.entry(v.unwrap_or("")).or_insert(next));
    }
    let mut skeys: Vec<(&str, u32)> = seller_map.into_iter().collect();
    skeys.sort();
    let mut sremap = vec![0u32; skeys.len()];
    for (new, (_, old)) in skeys.iter().enumerate() {
        sremap[*old as usize] = new as u32;
    }
    let seller: Vec<u32> = raw_seller.into_iter().map(|x| sremap[x as usize]).collect();
    let n_sellers = skeys.len();

    // Both tables are sorted by shipment_id, so one merge walk attaches events to shipments.
    let ev_ids = events.column("shipment_id")?.str()?;
    let ev_time = micros(&events, "event_time")?;
    let ev_code: Vec<u8> = events.column("code")?.u8()?.into_no_null_iter().collect();
    let mut ev_start = Vec::with_capacity(n + 1);
    let mut keep = Vec::with_capacity(ev_time.len());
    {
        let ship_ids = shipments.column("shipment_id")?.str()?;
        let mut ids = ship_ids.iter();
        let mut current = ids.next().flatten();
        let mut pos = 0u32;
        ev_start.push(0);
        for (k, id) in ev_ids.iter().enumerate() {
            let id = id.unwrap_or("");
            while let Some(c) = current {
                if c < id {
                    ev_start.push(pos);
                    current = ids.next().flatten();
                } else {
                    break;
                }
            }
            if current == Some(id) {
                keep.push(k);
                pos += 1;
            }
        }
        while ev_start.len() < n + 1 {
            ev_start.push(pos);
        }
    }
    let ev_time: Vec<i64> = keep.iter().map(|&k| ev_time[k]).collect();
    let ev_code: Vec<u8> = keep.iter().map(|&k| ev_code[k]).collect();

    Ok(Prepared {
        cutoff,
        shipments,
        created,
        promised,
        weight_g,
        declared_value,
        insured,
        lane,
        seller,
        lanes,
        n_sellers,
        ev_start,
        ev_time,
        ev_code,
    })
}
