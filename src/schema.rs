//! The canonical input contract and the vocabulary every stage shares: statuses, milestones,
//! stages and the names of the columns lanewatch reads and writes.

/// Required and optional input columns, with the kind of value each must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Timestamp,
    Float,
    Bool,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Str => "string",
            Kind::Timestamp => "timestamp",
            Kind::Float => "float",
            Kind::Bool => "bool",
        }
    }
}

pub struct ColumnSpec {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
}

const fn col(name: &'static str, kind: Kind, required: bool) -> ColumnSpec {
    ColumnSpec { name, kind, required }
}

pub const SHIPMENTS: &[ColumnSpec] = &[
    col("shipment_id", Kind::Str, true),
    col("seller_id", Kind::Str, true),
    col("origin", Kind::Str, true),
    col("destination", Kind::Str, true),
    col("service", Kind::Str, true),
    col("carrier", Kind::Str, false),
    col("created_at", Kind::Timestamp, true),
    col("promised_at", Kind::Timestamp, true),
    col("weight_g", Kind::Float, false),
    col("declared_value", Kind::Float, false),
    col("insured", Kind::Bool, false),
];

pub const EVENTS: &[ColumnSpec] = &[
    col("shipment_id", Kind::Str, true),
    col("event_time", Kind::Timestamp, true),
    col("status", Kind::Str, true),
    col("location", Kind::Str, false),
];

/// The two input tables. Their names are also their file or folder names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Shipments,
    Events,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Shipments => "shipments",
            Table::Events => "events",
        }
    }
    pub fn columns(self) -> &'static [ColumnSpec] {
        match self {
            Table::Shipments => SHIPMENTS,
            Table::Events => EVENTS,
        }
    }
}

/// Milestones in the order a parcel passes them. The index is the milestone's rank.
pub const MILESTONES: [&str; 9] = [
    "CREATED",
    "PICKED_UP",
    "ORIGIN_HUB",
    "EXPORT_CLEARED",
    "DEPARTED",
    "ARRIVED",
    "IMPORT_CLEARED",
    "OUT_FOR_DELIVERY",
    "DELIVERED",
];
pub const DELIVERED: u8 = 8;

/// Exception statuses get codes after the milestones; anything else is a generic scan.
pub const CUSTOMS_HOLD: u8 = 9;
pub const DELIVERY_FAILED: u8 = 10;
pub const EXCEPTION: u8 = 11;
pub const RETURNED: u8 = 12;
pub const LOST: u8 = 13;
pub const UNKNOWN_STATUS: u8 = 14;
pub const EXCEPTIONS: [&str; 5] = ["CUSTOMS_HOLD", "DELIVERY_FAILED", "EXCEPTION", "RETURNED", "LOST"];

/// Status code: milestones 0..=8, exceptions 9..=13, anything else 14. Case and surrounding
/// blanks are ignored because carriers differ in both.
pub fn status_code(status: &str) -> u8 {
    let s = status.trim();
    for (i, m) in MILESTONES.iter().enumerate() {
        if s.eq_ignore_ascii_case(m) {
            return i as u8;
        }
    }
    for (i, e) in EXCEPTIONS.iter().enumerate() {
        if s.eq_ignore_ascii_case(e) {
            return CUSTOMS_HOLD + i as u8;
        }
    }
    UNKNOWN_STATUS
}

pub fn status_name(code: u8) -> &'static str {
    match code {
        0..=8 => MILESTONES[code as usize],
        9..=13 => EXCEPTIONS[(code - CUSTOMS_HOLD) as usize],
        _ => "SCAN",
    }
}

/// Stages between consecutive milestones, grouped the way sellers talk about them.
/// `first..=last` are the milestones that mean the parcel is in this stage; the stage
/// ends when the milestone after `last` is reached.
pub struct Stage {
    pub key: &'static str,
    pub label: &'static str,
    pub first: u8,
    pub last: u8,
}

pub const STAGES: [Stage; 6] = [
    Stage { key: "handling", label: "seller handling", first: 0, last: 0 },
    Stage { key: "origin", label: "origin processing", first: 1, last: 1 },
    Stage { key: "export", label: "export", first: 2, last: 2 },
    Stage { key: "linehaul", label: "linehaul", first: 3, last: 4 },
    Stage { key: "import", label: "import customs", first: 5, last: 5 },
    Stage { key: "last_mile", label: "last mile", first: 6, last: 7 },
];
pub const N_STAGES: usize = STAGES.len();

/// The stage a parcel is in once `milestone` is its furthest milestone.
pub fn stage_of(milestone: u8) -> usize {
    STAGES.iter().position(|s| milestone >= s.first && milestone <= s.last).unwrap_or(N_STAGES - 1)
}

/// Services are free text in the input; these three get platform-style names in reports.
pub const SERVICES: [&str; 3] = ["economy", "standard", "express"];

pub const MICROS_PER_DAY: i64 = 86_400_000_000;
pub const MICROS_PER_HOUR: i64 = 3_600_000_000;

pub fn days(micros: i64) -> f64 {
    micros as f64 / MICROS_PER_DAY as f64
}
