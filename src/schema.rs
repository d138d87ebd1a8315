//! The canonical input contract and the vocabulary every stage shares: statuses, milestones,
//! stages and the names of the columns lanewatch reads and writes.

/// Required and optional input columns, with the kind of value each must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Str,
    Timestamp,
    Float,
    Bool,
}

impl ValueKind {
    pub fn name(self) -> &'static str {
        match self {
            ValueKind::Str => "string",
            ValueKind::Timestamp => "timestamp",
            ValueKind::Float => "float",
            ValueKind::Bool => "bool",
        }
    }
}

pub struct ColumnSpec {
    pub name: &'static str,
    pub kind: ValueKind,
    pub required: bool,
}

const fn col(name: &'static str, kind: ValueKind, required: bool) -> ColumnSpec {
    ColumnSpec { name, kind, required }
}

pub const SHIPMENTS: &[ColumnSpec] = &[
    col("shipment_id", ValueKind::Str, true),
    col("seller_id", ValueKind::Str, true),
    col("origin", ValueKind::Str, true),
    col("destination", ValueKind::Str, true),
    col("service", ValueKind::Str, true),
    col("carrier", ValueKind::Str, false),
    col("created_at", ValueKind::Timestamp, true),
    col("promised_at", ValueKind::Timestamp, true),
    col("weight_g", ValueKind::Float, false),
    col("declared_value", ValueKind::Float, false),
    col("insured", ValueKind::Bool, false),
];

pub const EVENTS: &[ColumnSpec] = &[
    col("shipment_id", ValueKind::Str, true),
    col("event_time", ValueKind::Timestamp, true),
    col("status", ValueKind::Str, true),
    col("location", ValueKind::Str, false),
    // The carrier's (or aggregator's) expected delivery as known at this scan.
    col("carrier_estimated_delivery_at", ValueKind::Timestamp, false),
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

/// The columns of each output, in order: the one place their names and order are defined. The
/// builders fill columns by these names, the writers check frames against them, and a test
/// checks OUTPUTS.md against them.
pub mod outputs {
    /// `scores.parquet`: one row per in-flight shipment.
    pub const SCORES: &[&str] = &[
        "shipment_id",
        "seller_id",
        "origin",
        "destination",
        "service",
        "carrier",
        "status",
        "stage",
        "created_at",
        "last_event_at",
        "promised_at",
        "risk",
        "expected_delivery_at",
        "expected_delivery_p90_at",
        "days_to_promise",
        "days_since_last_scan",
        "stage_dwell_days",
        "slack_p50_days",
        "lane_disrupted",
        "insured",
        "declared_value",
    ];

    /// `alerts.parquet` adds these to the scores' columns.
    pub const ALERT_EXTRA: &[&str] = &["alert", "severity", "reasons", "action", "first_alerted_on"];

    /// What the next night remembers of an alert (`alerts::Previous`): these columns of
    /// `alerts.parquet`, and the whole of `capped_alerts.parquet`.
    pub const ALERT_MEMORY: &[&str] = &["shipment_id", "seller_id", "alert", "severity", "first_alerted_on"];

    /// `capped_alerts.parquet`: the memory of the alerts the per-seller cap cut.
    pub const CAPPED: &[&str] = ALERT_MEMORY;

    /// `recovered.parquet`.
    pub const RECOVERED: &[&str] = &[
        "shipment_id",
        "seller_id",
        "previous_alert",
        "previous_severity",
        "first_alerted_on",
        "recovered_reason",
        "status",
        "delivered_at",
    ];

    /// `lane_alerts.parquet`.
    pub const LANE_ALERTS: &[&str] = &[
        "origin",
        "destination",
        "service",
        "disrupted_stage",
        "disrupted_since",
        "disruption_ratio",
        "seller_id",
        "in_flight",
        "alerted",
    ];

    /// `service_advice.parquet`.
    pub const SERVICE_ADVICE: &[&str] = &[
        "origin",
        "destination",
        "weight_band",
        "service",
        "service_rank",
        "basis",
        "weight_basis",
        "support",
        "transit_p50_days",
        "transit_p90_days",
        "transit_p95_days",
        "transit_p50_business_days",
        "transit_p90_business_days",
        "transit_p95_business_days",
        "promise_days",
        "on_time_rate",
        "p_meet_promise",
        "advised_service",
        "is_advised",
        "advice_meets_confidence",
        "advice_as_of",
    ];

    /// `promise_advice.parquet`.
    pub const PROMISE_ADVICE: &[&str] = &[
        "origin",
        "destination",
        "service",
        "basis",
        "support",
        "promise_business_days",
        "kept_rate",
        "target_on_time_rate",
        "advised_promise_business_days",
        "advised_promise_low",
        "advised_promise_high",
        "change_business_days",
        "below_target",
        "advice_as_of",
    ];

    /// `seller_advice.parquet`.
    pub const SELLER_ADVICE: &[&str] = &[
        "seller_id",
        "origin",
        "destination",
        "service",
        "shipments",
        "on_time_rate",
        "network_on_time_rate",
        "handling_p50_days",
        "network_handling_p50_days",
        "transit_from_scan_p90_days",
        "promise_days",
        "handling_misses_promise",
        "p_meet_promise",
        "advised_service",
        "advice_as_of",
    ];

    /// `sellers/<file>.csv`.
    pub const SELLER_CSV: &[&str] = &[
        "shipment_id",
        "seller_id",
        "alert",
        "severity",
        "risk",
        "status",
        "origin",
        "destination",
        "service",
        "promised_at",
        "expected_delivery_at",
        "last_event_at",
        "first_alerted_on",
        "reasons",
        "action",
    ];

    /// `sellers/index.csv`.
    pub const SELLER_INDEX: &[&str] = &["seller_id", "file", "alerts", "suppressed"];

    /// `backtest.parquet`: one row per replayed night.
    pub const BACKTEST: &[&str] = &[
        "as_of",
        "scored",
        "alerts_late",
        "alerts_stalled",
        "alerts_at_risk",
        "disrupted_lanes",
        "model",
        "valid_pr_auc",
    ];

    /// `lanes.parquet`: lane keys and counts, transit quantiles, per-stage dwell quantiles,
    /// per-stage recent-versus-baseline series, and the lane's disruption flag.
    pub fn lanes() -> Vec<String> {
        let mut c: Vec<String> = [
            "origin",
            "destination",
            "service",
            "stats_as_of",
            "shipments",
            "delivered",
            "late",
            "in_flight",
            "on_time_rate",
            "fallback_level",
            "window_days",
            "milestones_tracked",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for q in ["p50", "p90", "p95"] {
            c.push(format!("transit_{q}_days"));
        }
        for q in ["p50", "p90", "p95"] {
            c.push(format!("transit_from_scan_{q}_days"));
        }
        for st in super::STAGES.iter() {
            c.push(format!("{}_p50_days", st.key));
            c.push(format!("{}_p90_days", st.key));
        }
        for st in super::STAGES.iter() {
            for s in ["recent_p50_days", "baseline_p50_days", "recent_n", "ratio"] {
                c.push(format!("{}_{s}", st.key));
            }
        }
        for s in ["disruption_ratio", "disrupted", "disrupted_stage", "disrupted_since"] {
            c.push(s.to_string());
        }
        c
    }

    /// An internal error unless `df`'s columns are exactly `want`, in order: a builder that
    /// drifted from the documented contract fails loudly instead of writing it.
    pub fn check<S: AsRef<str>>(output: &str, df: &polars::prelude::DataFrame, want: &[S]) -> crate::Result<()> {
        let got: Vec<&str> = df.get_column_names().iter().map(|n| n.as_str()).collect();
        let want: Vec<&str> = want.iter().map(|s| s.as_ref()).collect();
        if got != want {
            return Err(crate::Error::internal(format!("{output}: columns {got:?} differ from the contract {want:?}")));
        }
        Ok(())
    }
}
