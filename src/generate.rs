//! Synthetic tracking histories for a cross-border marketplace, with ground truth.
//!
//! Every shipment draws from its own RNG, seeded from (seed, shipment number), so the output
//! does not depend on the thread count or on how the work is split.

use std::path::Path;

use chrono::NaiveDate;
use polars::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::calendar::{self, day_index, weekday};
use crate::error::{Error, Result};
use crate::io;
use crate::schema::{MICROS_PER_DAY, MICROS_PER_HOUR};
use crate::validate::NO_ETA;

#[derive(Debug, Clone)]
pub struct GenerateParams {
    pub shipments: usize,
    pub seed: u64,
    pub start: NaiveDate,
    pub days: u32,
    pub profile: Profile,
    /// Write statuses in this preset's vocabulary (`upu-emsevt`, `aftership`); canonical when
    /// `None`.
    pub vocabulary: Option<String>,
    /// Give milestone scans the carrier's estimated delivery (`carrier_estimated_delivery_at`).
    pub carrier_estimates: bool,
}

impl GenerateParams {
    /// The default shape with these sizes, canonical statuses, no carrier estimates.
    pub fn new(shipments: usize, seed: u64, start: NaiveDate, days: u32) -> GenerateParams {
        GenerateParams {
            shipments,
            seed,
            start,
            days,
            profile: Profile::Default,
            vocabulary: None,
            carrier_estimates: false,
        }
    }
}

/// Shapes of history the generator makes, to test lanewatch on data unlike its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A cross-border marketplace: nine milestones, days of transit, thousands a day at scale.
    Default,
    /// About 100 shipments a month over years, weeks to months of transit, and only CREATED and
    /// DELIVERED scans (a procurement feed).
    Sparse,
    /// CREATED, PICKED_UP and DELIVERED only (a marketplace that sees its carrier's handover and
    /// the delivery, nothing between).
    FewMilestones,
    /// The default network with a network-wide slowdown of six weeks mid-period (a national
    /// strike, a peak season) on every lane at once.
    RegimeShift,
}

impl Profile {
    pub const ALL: [Profile; 4] = [Profile::Default, Profile::Sparse, Profile::FewMilestones, Profile::RegimeShift];

    pub fn name(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::Sparse => "sparse",
            Profile::FewMilestones => "few-milestones",
            Profile::RegimeShift => "regime-shift",
        }
    }

    pub fn parse(name: &str) -> Result<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == name).ok_or_else(|| {
            let known: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
            Error::Config(format!("--profile: unknown profile {name:?} ({})", known.join(", ")))
        })
    }

    /// Shipments and days when the command line gives none.
    pub fn default_size(self) -> (usize, u32) {
        match self {
            Profile::Sparse => (6_000, 1_825),
            _ => (20_000, 180),
        }
    }

    /// Door-to-door times are this many times the default network's.
    fn time_scale(self) -> f64 {
        if self == Profile::Sparse { 3.5 } else { 1.0 }
    }

    /// Whether scans of `status` are kept.
    fn keeps(self, status: &str) -> bool {
        match self {
            Profile::Sparse => matches!(status, "CREATED" | "DELIVERED"),
            Profile::FewMilestones => matches!(status, "CREATED" | "PICKED_UP" | "DELIVERED"),
            _ => true,
        }
    }
}

/// The network-wide slowdown of the regime-shift profile: from 55 % of the period, six weeks
/// (or a quarter of a shorter period), during which parcels move at 1 / (1 + REGIME_EXTRA) of
/// their usual pace.
const REGIME_EXTRA: f64 = 0.5;
pub const REGIME_ID: &str = "R1-network-slowdown";

fn regime_window(start: i64, days: u32) -> (i64, i64) {
    let a = start + ((days as f64 * 0.55).round() as i64) * MICROS_PER_DAY;
    (a, a + (42 * MICROS_PER_DAY).min((days as i64).max(4) * MICROS_PER_DAY / 4))
}

/// How each vocabulary writes the generator's statuses: for UPU EMSEVT, the code of each event
/// (ITMATT, the electronic pre-advice, for an order created); for AfterShip, the subtag an
/// aggregator reports, which cannot tell an origin hub, export clearance or departure from any
/// other in-transit scan (their preset mappings say what lanewatch makes of them).
fn vocabulary_table(name: &str) -> Result<&'static [(&'static str, &'static str)]> {
    const UPU: &[(&str, &str)] = &[
        ("CREATED", "ITMATT"),
        ("PICKED_UP", "EMA"),
        ("ORIGIN_HUB", "EMB"),
        ("EXPORT_CLEARED", "EXC"),
        ("DEPARTED", "EMC"),
        ("IN_TRANSIT", "IN_TRANSIT"),
        ("ARRIVED", "EMD"),
        ("CUSTOMS_HOLD", "EME"),
        ("IMPORT_CLEARED", "EDC"),
        ("OUT_FOR_DELIVERY", "EDG"),
        ("DELIVERY_FAILED", "EMH"),
        ("DELIVERED", "EMI"),
        ("RETURNED", "EDX"),
    ];
    const AFTERSHIP: &[(&str, &str)] = &[
        ("CREATED", "InfoReceived_001"),
        ("PICKED_UP", "InTransit_002"),
        ("ORIGIN_HUB", "InTransit_003"),
        ("EXPORT_CLEARED", "InTransit_005"),
        ("DEPARTED", "InTransit_007"),
        ("IN_TRANSIT", "InTransit_001"),
        ("ARRIVED", "InTransit_004"),
        ("CUSTOMS_HOLD", "Exception_004"),
        ("IMPORT_CLEARED", "InTransit_005"),
        ("OUT_FOR_DELIVERY", "OutForDelivery_001"),
        ("DELIVERY_FAILED", "AttemptFail_001"),
        ("DELIVERED", "Delivered_001"),
        ("RETURNED", "Exception_011"),
    ];
    match name {
        "upu-emsevt" => Ok(UPU),
        "aftership" => Ok(AFTERSHIP),
        other => Err(Error::Config(format!("--vocabulary: unknown vocabulary {other:?} (upu-emsevt, aftership)"))),
    }
}

/// The status as `vocabulary` writes it.
pub fn in_vocabulary(vocabulary: Option<&str>, status: &'static str) -> Result<&'static str> {
    let Some(v) = vocabulary else { return Ok(status) };
    let table = vocabulary_table(v)?;
    table
        .iter()
        .find(|(c, _)| *c == status)
        .map(|(_, w)| *w)
        .ok_or_else(|| Error::internal(format!("vocabulary {v} has no word for {status}")))
}

#[derive(Debug, Clone, Serialize)]
pub struct GenerateSummary {
    pub shipments: usize,
    pub events: usize,
    pub sellers: usize,
    pub late_rate: f64,
    pub lost: usize,
    pub returned: usize,
    pub disruptions: Vec<Disruption>,
}

struct Origin {
    code: &'static str,
    city: &'static str,
    share: f64,
    /// Multiplies origin processing and export times.
    speed: f64,
}

const ORIGINS: [Origin; 3] = [
    Origin { code: "CN-GD", city: "Shenzhen", share: 0.5, speed: 1.0 },
    Origin { code: "CN-ZJ", city: "Yiwu", share: 0.3, speed: 1.15 },
    Origin { code: "CN-FJ", city: "Xiamen", share: 0.2, speed: 1.35 },
];

struct Dest {
    code: &'static str,
    city: &'static str,
    share: f64,
    /// Median linehaul days for economy.
    linehaul: f64,
    /// Median import customs days.
    customs: f64,
    /// Median last-mile days.
    last_mile: f64,
    /// Chance of a customs hold.
    hold: f64,
    /// Chance of each delivery attempt failing.
    fail: f64,
    /// Promise = expected transit × this; tighter promises make a lane later.
    slack: f64,
}

const fn d(
    code: &'static str,
    city: &'static str,
    share: f64,
    linehaul: f64,
    customs: f64,
    last_mile: f64,
    hold: f64,
    fail: f64,
    slack: f64,
) -> Dest {
    Dest { code, city, share, linehaul, customs, last_mile, hold, fail, slack }
}

const DESTS: [Dest; 20] = [
    d("FR", "Paris", 0.09, 6.0, 1.0, 2.0, 0.02, 0.05, 1.45),
    d("DE", "Frankfurt", 0.08, 6.0, 0.8, 1.6, 0.02, 0.04, 1.50),
    d("ES", "Madrid", 0.08, 6.5, 1.8, 2.2, 0.03, 0.06, 1.40),
    d("IT", "Milan", 0.06, 6.5, 2.0, 2.6, 0.03, 0.07, 1.35),
    d("NL", "Amsterdam", 0.04, 5.5, 0.8, 1.4, 0.02, 0.03, 1.50),
    d("PL", "Warsaw", 0.05, 7.0, 1.2, 2.4, 0.02, 0.05, 1.45),
    d("GB", "London", 0.07, 5.5, 1.0, 1.8, 0.02, 0.04, 1.45),
    d("BE", "Brussels", 0.03, 6.0, 1.0, 1.8, 0.02, 0.04, 1.50),
    d("SE", "Stockholm", 0.02, 7.0, 1.0, 2.6, 0.02, 0.04, 1.45),
    d("PT", "Lisbon", 0.03, 7.5, 1.6, 2.8, 0.03, 0.06, 1.35),
    d("US", "New York", 0.12, 5.0, 0.7, 2.8, 0.02, 0.05, 1.40),
    d("CA", "Toronto", 0.03, 6.0, 1.2, 3.2, 0.03, 0.05, 1.40),
    d("BR-SP", "Sao Paulo", 0.06, 10.0, 5.0, 5.5, 0.08, 0.10, 1.30),
    d("BR-RJ", "Rio de Janeiro", 0.03, 10.5, 5.5, 6.5, 0.08, 0.12, 1.25),
    d("MX", "Mexico City", 0.04, 8.0, 3.0, 4.5, 0.05, 0.10, 1.30),
    d("CL", "Santiago", 0.02, 11.0, 2.5, 3.8, 0.04, 0.07, 1.35),
    d("AU", "Sydney", 0.04, 7.0, 1.0, 3.0, 0.02, 0.05, 1.40),
    d("JP", "Tokyo", 0.04, 3.0, 0.6, 1.2, 0.01, 0.02, 1.55),
    d("KR", "Seoul", 0.04, 3.0, 0.6, 1.0, 0.01, 0.02, 1.55),
    d("SA", "Riyadh", 0.03, 7.0, 2.5, 3.0, 0.05, 0.08, 1.30),
];

struct Service {
    name: &'static str,
    share: f64,
    handling: f64,
    origin: f64,
    export: f64,
    departure_wait: f64,
    linehaul: f64,
    customs: f64,
    last_mile: f64,
    lost: f64,
    carriers: [&'static str; 2],
}

const SERVICES: [Service; 3] = [
    Service {
        name: "economy",
        share: 0.5,
        handling: 1.0,
        origin: 1.4,
        export: 1.0,
        departure_wait: 2.0,
        linehaul: 1.0,
        customs: 1.0,
        last_mile: 1.0,
        lost: 0.008,
        carriers: ["China Post", "Cainiao Economy"],
    },
    Service {
        name: "standard",
        share: 0.35,
        handling: 1.0,
        origin: 0.9,
        export: 0.7,
        departure_wait: 1.0,
        linehaul: 0.6,
        customs: 0.8,
        last_mile: 0.8,
        lost: 0.004,
        carriers: ["Cainiao Standard", "YunExpress"],
    },
    Service {
        name: "express",
        share: 0.15,
        handling: 0.8,
        origin: 0.35,
        export: 0.3,
        departure_wait: 0.4,
        linehaul: 0.25,
        customs: 0.45,
        last_mile: 0.5,
        lost: 0.0015,
        carriers: ["DHL Express", "FedEx"],
    },
];

/// An injected lane disruption, one row per affected lane in `disruptions.parquet`.
#[derive(Debug, Clone, Serialize)]
pub struct Disruption {
    pub id: String,
    pub origins: Vec<&'static str>,
    pub destination: &'static str,
    pub services: Vec<&'static str>,
    pub stage: &'static str,
    pub start: i64,
    pub end: i64,
    pub extra_days: f64,
}

impl Disruption {
    fn hits(&self, origin: &str, dest: &str, service: &str, stage: &str, t: i64) -> bool {
        self.stage == stage
            && self.destination == dest
            && self.origins.contains(&origin)
            && self.services.contains(&service)
            && t >= self.start
            && t < self.end
    }
}

/// Disruptions placed at fixed fractions of the generated period, so any `--days` gets them.
fn plan_disruptions(start: i64, days: u32) -> Vec<Disruption> {
    let at = |f: f64| start + ((days as f64 * f).round() as i64) * MICROS_PER_DAY;
    let len = |d: i64| (d * MICROS_PER_DAY).min((days as i64).max(4) * MICROS_PER_DAY / 4);
    let all_origins = vec!["CN-GD", "CN-ZJ", "CN-FJ"];
    vec![
        Disruption {
            id: "D1-BRSP-customs-backlog".into(),
            origins: all_origins.clone(),
            destination: "BR-SP",
            services: vec!["economy", "standard"],
            stage: "import",
            start: at(0.40),
            end: at(0.40) + len(18),
            extra_days: 9.0,
        },
        Disruption {
            id: "D2-GD-FR-linehaul-delay".into(),
            origins: vec!["CN-GD"],
            destination: "FR",
            services: vec!["economy"],
            stage: "linehaul",
            start: at(0.55),
            end: at(0.55) + len(14),
            extra_days: 5.0,
        },
        Disruption {
            id: "D3-DE-customs-backlog".into(),
            origins: all_origins.clone(),
            destination: "DE",
            services: vec!["economy", "standard"],
            stage: "import",
            start: at(0.75),
            end: at(0.75) + len(21),
            extra_days: 4.5,
        },
        Disruption {
            id: "D4-GB-last-mile-strike".into(),
            origins: all_origins,
            destination: "GB",
            services: vec!["economy", "standard", "express"],
            stage: "last_mile",
            start: at(0.88),
            end: at(0.88) + len(10),
            extra_days: 3.5,
        },
    ]
}

struct Seller {
    handling: f64,
    origin: usize,
    /// Sloppy sellers sometimes sit on orders for days.
    sloppy: bool,
}

fn sellers_for(n_shipments: usize, seed: u64) -> Vec<Seller> {
    let n = (n_shipments / 25).clamp(20, 50_000);
    (0..n)
        .map(|i| {
            let mut rng = ChaCha8Rng::seed_from_u64(mix(seed ^ 0x5e11e5, i as u64));
            Seller {
                handling: (1.1 * (0.55 * normal(&mut rng)).exp()).clamp(0.25, 5.0),
                origin: pick(&mut rng, &ORIGINS.map(|o| o.share)),
                sloppy: rng.r#gen::<f64>() < 0.1,
            }
        })
        .collect()
}

/// One generated shipment: its row, its events (time, status, location, carrier estimate or
/// `NO_ETA`) and its truth.
struct Generated {
    seller: u32,
    origin: u8,
    dest: u8,
    service: u8,
    carrier: &'static str,
    created: i64,
    promised: i64,
    weight: f64,
    value: f64,
    insured: bool,
    events: Vec<(i64, &'static str, String, i64)>,
    delivered: Option<i64>,
    lost: bool,
    returned: bool,
    disruption: Option<u8>,
    regime: bool,
}

fn mix(a: u64, b: u64) -> u64 {
    // splitmix64 of the pair: decorrelates neighbouring shipment numbers.
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn normal(rng: &mut impl Rng) -> f64 {
    // Box-Muller; rand 0.8 keeps normal distributions in rand_distr, one call site needs no crate.
    let u1: f64 = rng.r#gen::<f64>().max(1e-12);
    let u2: f64 = rng.r#gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn lognormal(rng: &mut impl Rng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

fn pick(rng: &mut impl Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut u = rng.r#gen::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i;
        }
        u -= w;
    }
    weights.len() - 1
}

fn days_us(d: f64) -> i64 {
    (d * MICROS_PER_DAY as f64) as i64
}

/// Offices (pickup, customs) work Monday to Saturday morning and close on the big holidays.
fn next_office_time(t: i64, rng: &mut impl Rng) -> i64 {
    let mut day = day_index(t);
    let mut moved = false;
    loop {
        let date = calendar::date_of_day(day);
        let (m, dd) = (chrono::Datelike::month(&date), chrono::Datelike::day(&date));
        let closed = weekday(day) == 6 || (m, dd) == (1, 1) || (m, dd) == (12, 25);
        if !closed {
            break;
        }
        day += 1;
        moved = true;
    }
    if moved {
        day * MICROS_PER_DAY + 8 * MICROS_PER_HOUR + (rng.r#gen::<f64>() * 9.0 * MICROS_PER_HOUR as f64) as i64
    } else {
        t
    }
}

/// Congestion multiplier for parcels created around 11.11, Black Friday and Christmas.
fn peak_factor(created: i64) -> f64 {
    let date = calendar::date_of_micros(created);
    let y = chrono::Datelike::year(&date);
    let near = |m: u32, dd: u32, before: i64, after: i64| {
        let p = NaiveDate::from_ymd_opt(y, m, dd).expect("valid date");
        let diff = (date - p).num_days();
        diff >= -before && diff <= after
    };
    let bf = calendar::black_friday(y);
    let bf_diff = (date - bf).num_days();
    if near(11, 11, 1, 8) {
        1.5
    } else if (-2..=7).contains(&bf_diff) {
        1.35
    } else if near(12, 15, 0, 16) {
        1.3
    } else {
        1.0
    }
}

fn generate_one(i: usize, p: &GenerateParams, sellers: &[Seller], disruptions: &[Disruption], start: i64) -> Generated {
    let mut g = generate_journey(i, p, sellers, disruptions, start);
    reshape(&mut g, p, start, i);
    g
}

/// Applies the profile (time scale, regime, kept scans) and the carrier's estimates to a
/// journey generated on the default network.
fn reshape(g: &mut Generated, p: &GenerateParams, start: i64, i: usize) {
    let scale = p.profile.time_scale();
    let created = g.created;
    let stretch = |t: i64| created + ((t - created) as f64 * scale) as i64;
    if scale != 1.0 {
        for e in g.events.iter_mut() {
            e.0 = stretch(e.0);
        }
        g.promised = stretch(g.promised);
        g.delivered = g.delivered.map(stretch);
    }
    if p.profile == Profile::RegimeShift {
        // Time spent in the network during the slowdown takes 1 + REGIME_EXTRA times as long.
        let (a, b) = regime_window(start, p.days);
        let slowed = |t: i64| {
            let inside = (t.min(b) - created.max(a)).max(0);
            t + (inside as f64 * REGIME_EXTRA) as i64
        };
        let before = g.events.last().map(|e| e.0).unwrap_or(created);
        for e in g.events.iter_mut() {
            e.0 = slowed(e.0);
        }
        g.delivered = g.delivered.map(slowed);
        g.regime = slowed(before) != before;
    }
    if p.carrier_estimates {
        // The carrier's estimate at each milestone scan: the scan's time plus its own plan of
        // what is left (the median of the remaining journey on an average lane day), with noise.
        let total = (g.promised - created) as f64;
        let mut rng = ChaCha8Rng::seed_from_u64(mix(p.seed ^ 0xe7a, i as u64));
        let end = g.delivered.unwrap_or(g.events.last().map(|e| e.0).unwrap_or(created));
        for e in g.events.iter_mut() {
            if let Some(k) = crate::schema::MILESTONES.iter().position(|m| *m == e.1) {
                let left = if g.delivered.is_some() { (end - e.0) as f64 } else { total * (1.0 - k as f64 / 9.0) };
                // The carrier sees about half of the delay still to come.
                let planned = total * (1.0 - k as f64 / 9.0) * 0.75;
                let est = planned + 0.5 * (left - planned) + total * 0.05 * normal(&mut rng);
                e.3 = e.0 + est.max(0.0) as i64 / 1_000_000 * 1_000_000;
            }
        }
    }
    g.events.retain(|e| p.profile.keeps(e.1));
}

fn generate_journey(
    i: usize,
    p: &GenerateParams,
    sellers: &[Seller],
    disruptions: &[Disruption],
    start: i64,
) -> Generated {
    let mut rng = ChaCha8Rng::seed_from_u64(mix(p.seed, i as u64));
    let seller_idx = ((rng.r#gen::<f64>().powf(2.2)) * sellers.len() as f64) as usize;
    let seller = &sellers[seller_idx.min(sellers.len() - 1)];
    let origin = if rng.r#gen::<f64>() < 0.85 { seller.origin } else { pick(&mut rng, &ORIGINS.map(|o| o.share)) };
    let dest = pick(&mut rng, &DESTS.map(|d| d.share));
    let service = pick(&mut rng, &SERVICES.map(|s| s.share));
    let (o, ds, sv) = (&ORIGINS[origin], &DESTS[dest], &SERVICES[service]);

    // Orders arrive more on weekdays; within a day, at any hour.
    let created = loop {
        let day = (rng.r#gen::<f64>() * p.days as f64) as i64;
        let t = start + day * MICROS_PER_DAY + (rng.r#gen::<f64>() * MICROS_PER_DAY as f64) as i64;
        if weekday(day_index(t)) < 5 || rng.r#gen::<f64>() < 0.7 {
            break t / 1_000_000 * 1_000_000;
        }
    };
    let peak = peak_factor(created);

    let value = lognormal(&mut rng, 14.0, 1.0).clamp(0.5, 5000.0);
    let weight = lognormal(&mut rng, 280.0, 0.8).clamp(15.0, 30_000.0);
    let insured = if value > 60.0 { rng.r#gen::<f64>() < 0.6 } else { rng.r#gen::<f64>() < 0.04 };
    let carrier = sv.carriers[(rng.r#gen::<f64>() < 0.5) as usize];

    // The promise is a fixed window per service and destination, as platforms publish them.
    let expected = seller_free_expectation(o, ds, sv);
    let promised = created + days_us((expected * (ds.slack - PROMISE_TIGHTENING)).ceil()) + 23 * MICROS_PER_HOUR;

    let mut events: Vec<(i64, &'static str, String, i64)> = Vec::with_capacity(12);
    let origin_loc = format!("{} {}", o.code, o.city);
    let dest_loc = format!("{} {}", ds.code, ds.city);
    events.push((created, "CREATED", origin_loc.clone(), NO_ETA));

    let mut disruption: Option<u8> = None;
    let mut disrupt = |stage: &'static str, t: i64, rng: &mut ChaCha8Rng| -> i64 {
        for (k, dd) in disruptions.iter().enumerate() {
            if dd.hits(o.code, ds.code, sv.name, stage, t) {
                disruption.get_or_insert(k as u8);
                return days_us(dd.extra_days * (0.7 + 0.6 * rng.r#gen::<f64>()));
            }
        }
        0
    };

    let lost = rng.r#gen::<f64>() < sv.lost;
    // Lost parcels vanish after a random milestone between pickup and last mile.
    let lost_after: usize = if lost { 1 + (rng.r#gen::<f64>() * 6.0) as usize } else { usize::MAX };
    let mut returned = false;
    let mut delivered = None;

    let mut handling = lognormal(&mut rng, seller.handling * sv.handling, 0.45);
    if seller.sloppy && rng.r#gen::<f64>() < 0.2 {
        handling += 2.0 + 4.0 * rng.r#gen::<f64>();
    }
    let mut t = next_office_time(created + days_us(handling), &mut rng);
    t += disrupt("handling", t, &mut rng);
    'journey: {
        events.push((t, "PICKED_UP", origin_loc.clone(), NO_ETA));
        if lost_after == 1 {
            break 'journey;
        }
        t += days_us(lognormal(&mut rng, sv.origin * o.speed * peak, 0.4));
        t += disrupt("origin", t, &mut rng);
        events.push((t, "ORIGIN_HUB", format!("{} sorting center", o.city), NO_ETA));
        if lost_after == 2 {
            break 'journey;
        }
        t = next_office_time(t + days_us(lognormal(&mut rng, sv.export * o.speed, 0.45)), &mut rng);
        t += disrupt("export", t, &mut rng);
        events.push((t, "EXPORT_CLEARED", format!("{} customs", o.city), NO_ETA));
        if lost_after == 3 {
            break 'journey;
        }
        let stage_start = t;
        t += days_us(rng.r#gen::<f64>() * sv.departure_wait * peak);
        if rng.r#gen::<f64>() > 0.03 {
            events.push((t, "DEPARTED", format!("{} airport", o.city), NO_ETA));
        }
        let flight = lognormal(&mut rng, ds.linehaul * sv.linehaul * peak, 0.3);
        if rng.r#gen::<f64>() < 0.12 {
            events.push((t + days_us(flight * 0.5), "IN_TRANSIT", "transit hub".to_string(), NO_ETA));
        }
        t += days_us(flight);
        t += disrupt("linehaul", stage_start, &mut rng);
        events.push((t, "ARRIVED", format!("{} gateway", ds.city), NO_ETA));
        if lost_after == 4 {
            break 'journey;
        }
        let arrived = t;
        t += days_us(lognormal(&mut rng, ds.customs * sv.customs, 0.5));
        let hold_p = ds.hold * if value > 150.0 { 2.5 } else { 1.0 };
        if rng.r#gen::<f64>() < hold_p {
            events.push((arrived + days_us(0.3 + 0.7 * rng.r#gen::<f64>()), "CUSTOMS_HOLD", dest_loc.clone(), NO_ETA));
            if rng.r#gen::<f64>() < 0.06 {
                returned = true;
                let back = t + days_us(5.0 + 10.0 * rng.r#gen::<f64>());
                events.push((back, "RETURNED", dest_loc.clone(), NO_ETA));
                break 'journey;
            }
            t += days_us(3.0 + 7.0 * rng.r#gen::<f64>());
        }
        t += disrupt("import", arrived, &mut rng);
        t = next_office_time(t, &mut rng);
        events.push((t, "IMPORT_CLEARED", dest_loc.clone(), NO_ETA));
        if lost_after == 5 {
            break 'journey;
        }
        let stage_start = t;
        t += days_us(lognormal(&mut rng, ds.last_mile * sv.last_mile * 0.75, 0.45));
        t += disrupt("last_mile", stage_start, &mut rng);
        if lost_after == 6 {
            events.push((t, "OUT_FOR_DELIVERY", dest_loc.clone(), NO_ETA));
            break 'journey;
        }
        let mut attempts = 0;
        loop {
            if rng.r#gen::<f64>() > 0.04 || attempts > 0 {
                events.push((t, "OUT_FOR_DELIVERY", dest_loc.clone(), NO_ETA));
            }
            t += days_us(0.1 + 0.3 * rng.r#gen::<f64>());
            if rng.r#gen::<f64>() < ds.fail * if attempts > 0 { 1.5 } else { 1.0 } {
                events.push((t, "DELIVERY_FAILED", dest_loc.clone(), NO_ETA));
                attempts += 1;
                if attempts >= 3 {
                    returned = true;
                    events.push((t + days_us(7.0 + 7.0 * rng.r#gen::<f64>()), "RETURNED", dest_loc.clone(), NO_ETA));
                    break 'journey;
                }
                t += days_us(1.0 + 2.0 * rng.r#gen::<f64>());
                continue;
            }
            events.push((t, "DELIVERED", dest_loc.clone(), NO_ETA));
            delivered = Some(t);
            break;
        }
    }
    for e in events.iter_mut() {
        e.0 = e.0 / 1_000_000 * 1_000_000;
    }
    if let Some(dv) = delivered.as_mut() {
        *dv = *dv / 1_000_000 * 1_000_000;
    }
    // A few carriers send the same scan twice.
    if rng.r#gen::<f64>() < 0.004 && events.len() > 2 {
        let k = 1 + (rng.r#gen::<f64>() * (events.len() - 1) as f64) as usize;
        let dup = events[k.min(events.len() - 1)].clone();
        events.push(dup);
    }
    events.sort_by_key(|e| e.0);
    Generated {
        seller: seller_idx.min(sellers.len() - 1) as u32,
        origin: origin as u8,
        dest: dest as u8,
        service: service as u8,
        carrier,
        created,
        promised,
        weight: (weight * 10.0).round() / 10.0,
        value: (value * 100.0).round() / 100.0,
        insured,
        events,
        delivered,
        lost,
        returned,
        disruption,
        regime: false,
    }
}

/// Median door-to-door days on a lane with an average seller, before weekends and noise.
fn seller_free_expectation(o: &Origin, ds: &Dest, sv: &Service) -> f64 {
    1.1 * sv.handling
        + sv.origin * o.speed
        + sv.export * o.speed
        + sv.departure_wait / 2.0
        + ds.linehaul * sv.linehaul
        + ds.customs * sv.customs
        + ds.last_mile * sv.last_mile * 0.75
        + 0.3
        + 1.0
}

/// Bytes of memory generating takes per shipment, about: the whole history is held until it is
/// written (2.07 GB at 1M shipments of the default profile).
const BYTES_PER_SHIPMENT: u64 = 2_200;

/// Days after the last creation day that a generated parcel's scans may still reach (a late
/// parcel's return, with room).
const LIFE_DAYS: u64 = 400;

/// The most days of creation a history spans (`--days`).
pub const MAX_DAYS: u32 = 3650;

/// Why `shipments` would not fit in `available` bytes of memory, if they would not: an
/// allocation that fails aborts the process with a backtrace.
pub fn too_many(shipments: usize, available: Option<u64>) -> Option<String> {
    let need = (shipments as u64).saturating_mul(BYTES_PER_SHIPMENT);
    let have = available.filter(|&have| need > have)?;
    let gb = |b: u64| b as f64 / 1e9;
    Some(format!(
        "{shipments} shipments need about {:.1} GB of memory to generate, more than the {:.1} GB available",
        gb(need),
        gb(have)
    ))
}

/// Why a history created from `start` over `days` days would have times outside
/// 1990-01-01..2200-01-01, which `run` refuses as corrupt, if it would: a generator must not
/// write what the pipeline rejects.
pub fn out_of_range(start: NaiveDate, days: u32) -> Option<String> {
    let first = NaiveDate::from_ymd_opt(1990, 1, 1).expect("a date");
    let end = NaiveDate::from_ymd_opt(2200, 1, 1).expect("a date");
    let last = start.checked_add_days(chrono::Days::new(u64::from(days) + LIFE_DAYS));
    (start < first || last.is_none_or(|l| l >= end)).then(|| {
        format!(
            "a history from {start} over {days} days has times outside 1990-01-01..2200-01-01, which run refuses \
             (its scans reach {LIFE_DAYS} days past the last creation day)"
        )
    })
}

pub fn generate(p: &GenerateParams, out: &Path) -> Result<GenerateSummary> {
    if p.shipments == 0 {
        return Err(Error::Config("--shipments must be at least 1".into()));
    }
    if p.days == 0 {
        return Err(Error::Config("--days must be at least 1".into()));
    }
    if let Some(v) = &p.vocabulary {
        vocabulary_table(v)?;
    }
    if let Some(why) = too_many(p.shipments, crate::memory::available_bytes()).or(out_of_range(p.start, p.days)) {
        return Err(Error::Config(why));
    }
    io::create_dir_all(out)?;
    let start = calendar::day_start_micros(p.start);
    let sellers = sellers_for(p.shipments, p.seed);
    let disruptions = plan_disruptions(start, p.days);
    let rows: Vec<Generated> =
        (0..p.shipments).into_par_iter().map(|i| generate_one(i, p, &sellers, &disruptions, start)).collect();

    let width = format!("{}", p.shipments).len().max(6);
    let ids: Vec<String> = (0..p.shipments).map(|i| format!("SH{:0width$}", i + 1)).collect();
    let seller_width = format!("{}", sellers.len()).len().max(4);
    let seller_ids: Vec<String> =
        (0..sellers.len()).map(|i| format!("SELLER-{:0w$}", i + 1, w = seller_width)).collect();

    let mut shipments = DataFrame::new(
        p.shipments,
        vec![
            Column::new("shipment_id".into(), &ids),
            Column::new(
                "seller_id".into(),
                rows.iter().map(|r| seller_ids[r.seller as usize].as_str()).collect::<Vec<_>>(),
            ),
            Column::new("origin".into(), rows.iter().map(|r| ORIGINS[r.origin as usize].code).collect::<Vec<_>>()),
            Column::new("destination".into(), rows.iter().map(|r| DESTS[r.dest as usize].code).collect::<Vec<_>>()),
            Column::new("service".into(), rows.iter().map(|r| SERVICES[r.service as usize].name).collect::<Vec<_>>()),
            Column::new("carrier".into(), rows.iter().map(|r| r.carrier).collect::<Vec<_>>()),
            io::ts_column_req("created_at", rows.iter().map(|r| r.created).collect()),
            io::ts_column_req("promised_at", rows.iter().map(|r| r.promised).collect()),
            Column::new("weight_g".into(), rows.iter().map(|r| r.weight).collect::<Vec<_>>()),
            Column::new("declared_value".into(), rows.iter().map(|r| r.value).collect::<Vec<_>>()),
            Column::new("insured".into(), rows.iter().map(|r| r.insured).collect::<Vec<_>>()),
        ],
    )?;

    let n_events: usize = rows.iter().map(|r| r.events.len()).sum();
    let mut owner: Vec<IdxSize> = Vec::with_capacity(n_events);
    let mut times: Vec<i64> = Vec::with_capacity(n_events);
    let mut statuses: Vec<&str> = Vec::with_capacity(n_events);
    let mut locations: Vec<&str> = Vec::with_capacity(n_events);
    let mut etas: Vec<Option<i64>> = Vec::with_capacity(if p.carrier_estimates { n_events } else { 0 });
    let vocabulary = p.vocabulary.as_deref();
    for (i, r) in rows.iter().enumerate() {
        for (t, s, loc, eta) in &r.events {
            owner.push(i as IdxSize);
            times.push(*t);
            statuses.push(in_vocabulary(vocabulary, s)?);
            locations.push(loc.as_str());
            if p.carrier_estimates {
                etas.push((*eta != NO_ETA).then_some(*eta));
            }
        }
    }
    let owner = IdxCa::from_vec("owner".into(), owner);
    let event_ids = shipments.column("shipment_id")?.take(&owner)?;
    let mut cols = vec![
        event_ids,
        io::ts_column_req("event_time", times),
        Column::new("status".into(), statuses),
        Column::new("location".into(), locations),
    ];
    if p.carrier_estimates {
        cols.push(io::ts_column("carrier_estimated_delivery_at", etas));
    }
    let mut events = DataFrame::new(n_events, cols)?;

    let late: Vec<bool> = rows.iter().map(|r| r.delivered.is_none_or(|dv| dv > r.promised)).collect();
    let mut truth = DataFrame::new(
        p.shipments,
        vec![
            Column::new("shipment_id".into(), &ids),
            io::ts_column("delivered_at", rows.iter().map(|r| r.delivered).collect()),
            Column::new("late".into(), late.clone()),
            Column::new("lost".into(), rows.iter().map(|r| r.lost).collect::<Vec<_>>()),
            Column::new("returned".into(), rows.iter().map(|r| r.returned).collect::<Vec<_>>()),
            Column::new(
                "disruption_id".into(),
                rows.iter()
                    .map(|r| match (r.disruption, r.regime) {
                        (Some(k), _) => Some(disruptions[k as usize].id.clone()),
                        (None, true) => Some(REGIME_ID.to_string()),
                        (None, false) => None,
                    })
                    .collect::<Vec<_>>(),
            ),
        ],
    )?;

    let mut dis_rows: (Vec<String>, Vec<&str>, Vec<&str>, Vec<&str>, Vec<&str>, Vec<i64>, Vec<i64>, Vec<f64>) =
        Default::default();
    for dd in &disruptions {
        for o in &dd.origins {
            for s in &dd.services {
                dis_rows.0.push(dd.id.clone());
                dis_rows.1.push(o);
                dis_rows.2.push(dd.destination);
                dis_rows.3.push(s);
                dis_rows.4.push(dd.stage);
                dis_rows.5.push(dd.start);
                dis_rows.6.push(dd.end);
                dis_rows.7.push(dd.extra_days);
            }
        }
    }
    let n_dis = dis_rows.0.len();
    let mut dis = DataFrame::new(
        n_dis,
        vec![
            Column::new("disruption_id".into(), dis_rows.0),
            Column::new("origin".into(), dis_rows.1),
            Column::new("destination".into(), dis_rows.2),
            Column::new("service".into(), dis_rows.3),
            Column::new("stage".into(), dis_rows.4),
            io::ts_column_req("start", dis_rows.5),
            io::ts_column_req("end", dis_rows.6),
            Column::new("extra_delay_days".into(), dis_rows.7),
        ],
    )?;

    io::write_parquet(&mut shipments, &out.join("shipments.parquet"))?;
    io::write_parquet(&mut events, &out.join("events.parquet"))?;
    io::write_parquet(&mut truth, &out.join("truth.parquet"))?;
    io::write_parquet(&mut dis, &out.join("disruptions.parquet"))?;

    Ok(GenerateSummary {
        shipments: p.shipments,
        events: n_events,
        sellers: sellers.len(),
        late_rate: late.iter().filter(|l| **l).count() as f64 / p.shipments as f64,
        lost: rows.iter().filter(|r| r.lost).count(),
        returned: rows.iter().filter(|r| r.returned).count(),
        disruptions,
    })
}

/// Subtracted from every destination's promise slack; tunes the overall late rate (~11%).
const PROMISE_TIGHTENING: f64 = 0.1;
