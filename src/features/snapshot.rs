//! Snapshot features of one shipment at one moment t ≤ C. Training rows (t inside a resolved
//! shipment's life) and scoring rows (t = C) go through `features_at`, the one code path.

use super::disruption::Series;
use super::history::{History, Own, Seen};
use super::lanes::{LaneStats, LaneTables};
use super::prepare::Prepared;
use super::timeline::{CutoffStates, NONE, Outcome, State, state_at};
use crate::calendar::{DayTable, Holidays, day_index, weekday};
use crate::schema::{N_STAGES, days};

/// Days between two µs times, or missing when either is unknown.
fn days_between(from: i64, to: i64) -> f64 {
    if from == NONE || to == NONE { f64::NAN } else { days(to - from) }
}

/// Bumped whenever a feature is added, removed, reordered or redefined. Saved models record it.
/// 2: features may be missing (NaN) instead of filled with made-up values; handling excess,
/// milestones tracked and the carrier's estimate added. 3: handling excess missing for a
/// parcel scanned past pickup without a pickup scan (was its whole age).
pub const FEATURE_SCHEMA_VERSION: u32 = 3;

/// Feature names in matrix order, with what each means (also in FEATURES.md). A feature whose
/// inputs are unknown (a stage the lane never reports, a carrier that sends no estimate) is
/// missing (NaN), never a made-up number; every model handles missing values.
pub const FEATURES: [(&str, &str); 41] = [
    ("age_days", "days since created_at"),
    ("time_to_promise_days", "days from t to promised_at (negative once passed)"),
    ("promise_horizon_days", "days from created_at to promised_at"),
    ("stage_index", "current stage, 0 handling … 5 last mile"),
    ("milestone_index", "furthest milestone reached, 0 CREATED … 7 OUT_FOR_DELIVERY"),
    ("days_since_last_scan", "days since the last scan of any kind (since created_at if none)"),
    ("stage_dwell_days", "days in the current stage so far"),
    ("dwell_vs_p50", "stage dwell / the lane's p50 dwell for this stage"),
    ("dwell_vs_p90", "stage dwell / the lane's p90 dwell for this stage"),
    ("expected_remaining_p50_days", "lane p50 of time from this stage to delivery, less time already spent"),
    ("expected_remaining_p90_days", "the same from the lane's p90"),
    ("slack_p50_days", "time_to_promise − expected_remaining_p50"),
    ("slack_p90_days", "time_to_promise − expected_remaining_p90"),
    ("scans", "number of scans so far"),
    ("customs_hold_seen", "1 if a CUSTOMS_HOLD scan was seen"),
    ("delivery_failures", "number of DELIVERY_FAILED scans"),
    ("exception_seen", "1 if an EXCEPTION scan was seen"),
    ("seller_handling_days", "seller's mean handling days (created → picked up), smoothed, leave-one-out"),
    ("seller_late_rate", "seller's late rate over resolved shipments, smoothed, leave-one-out"),
    ("seller_log_shipments", "ln(1 + seller's resolved shipments, leave-one-out)"),
    ("lane_late_rate", "lane's late rate over resolved shipments, smoothed, leave-one-out"),
    ("lane_disruption_ratio", "max recent/baseline dwell ratio over the current and later stages, as of t's night"),
    ("lane_disrupted_ahead", "1 if the current or a later stage of the lane is flagged disrupted as of t's night"),
    ("day_of_week", "day of week of t, Monday 0"),
    ("business_days_to_promise", "business days from t's day to the promise day"),
    ("holiday_in_window", "1 if a configured holiday or peak day falls between t and the promise"),
    ("weight_kg", "parcel weight in kg; missing when unknown"),
    ("log_declared_value", "ln(1 + declared value in USD); missing when unknown"),
    ("insured", "1 if insured"),
    ("promise_margin_p90_days", "promise horizon − lane p90 transit"),
    ("lane_transit_p50_days", "lane p50 transit from created_at"),
    ("is_express", "1 if the service name contains 'express'"),
    ("is_economy", "1 if the service name contains 'economy'"),
    ("promise_elapsed_share", "age / promise horizon: the share of the promised time already used"),
    (
        "progress_eta_vs_promise",
        "(time to reach the current stage / the lane's p50 share of transit spent by then) / promise horizon",
    ),
    (
        "handling_excess_days",
        "days from created to pickup (to t while not picked up) less the seller's usual handling; missing without pickup scans, or for a parcel scanned past pickup without one",
    ),
    ("milestones_tracked", "milestones (of 9) that at least half of the lane's delivered shipments were scanned at"),
    ("carrier_eta_slack_days", "promised_at − the carrier's latest estimate known at t; missing without an estimate"),
    ("carrier_eta_remaining_days", "the carrier's latest estimate − t; missing without an estimate"),
    ("carrier_eta_updates", "how often the carrier's estimate changed before t; missing without an estimate"),
    ("carrier_eta_shift_days", "latest − first carrier estimate; missing without an estimate"),
];
pub const N_FEATURES: usize = FEATURES.len();

pub fn feature_names() -> Vec<String> {
    FEATURES.iter().map(|(n, _)| n.to_string()).collect()
}

/// Everything features need, as of one cutoff.
pub struct Context<'a> {
    pub prep: &'a Prepared,
    pub states: &'a CutoffStates,
    /// Outcomes as of the cutoff: a shipment's own is left out of its seller's and lane's history.
    pub outcomes: &'a [Outcome],
    pub lanes: &'a LaneTables,
    pub history: &'a History,
    pub series: &'a Series,
    pub holidays: &'a Holidays,
    pub service_kind: Vec<(bool, bool)>,
    days: DayTable,
}

/// Derived values the alert stage reuses for reasons, alongside the feature vector.
#[derive(Debug, Clone, Copy)]
pub struct Extras {
    pub stage: usize,
    pub furthest: u8,
    pub last_event_at: i64,
    pub stage_dwell_days: f64,
    pub expected_remaining_p50: f64,
    pub expected_remaining_p90: f64,
    /// A scan other than the creation was seen (before t): a carrier has had the parcel,
    /// whatever its furthest milestone.
    pub carrier_scanned: bool,
}

impl<'a> Context<'a> {
    pub fn new(
        prep: &'a Prepared,
        states: &'a CutoffStates,
        outcomes: &'a [Outcome],
        lanes: &'a LaneTables,
        history: &'a History,
        series: &'a Series,
        holidays: &'a Holidays,
    ) -> Self {
        let service_kind = prep
            .lanes
            .iter()
            .map(|l| {
                let s = l.service.to_ascii_lowercase();
                (s.contains("express"), s.contains("economy"))
            })
            .collect();
        // Promises reach at most a few months past the latest creation; beyond the table the
        // calendar is walked.
        let cutoff_day = prep.night.cutoff_day();
        let lo = prep.created.iter().copied().min().map(day_index).unwrap_or(0).min(cutoff_day) - 1;
        let hi = prep.promised.iter().copied().max().map(day_index).unwrap_or(0).clamp(lo, cutoff_day + 400) + 1;
        let days = DayTable::new(holidays, lo, hi);
        Context { prep, states, outcomes, lanes, history, series, holidays, service_kind, days }
    }

    /// Features of shipment `i` at time `t` (t ≤ cutoff), written into `out`.
    pub fn features_at(&self, i: usize, t: i64, out: &mut [f64]) -> Extras {
        self.features_seen(i, t, out, None)
    }

    /// `features_at`, with the seller and lane history `seen` when given (a sharded night's
    /// part merges it from every part's shares) rather than from `history`.
    pub fn features_seen(&self, i: usize, t: i64, out: &mut [f64], seen: Option<Seen>) -> Extras {
        let p = self.prep;
        let created = p.created[i];
        let promised = p.promised[i];
        let st_owned;
        // At the cutoff, a shipment in flight has its state kept; any other is scanned again
        // (the same `state_at`, so the same state). Training rows (before the cutoff) never
        // look the kept states up.
        let kept = if t == p.night.cutoff() { self.states.open(i) } else { None };
        let st: &State = if let Some(st) = kept {
            st
        } else {
            let (times, codes) = p.events(i);
            st_owned = state_at(created, times, codes, p.etas(i), t);
            &st_owned
        };
        let lane = p.lane[i] as usize;
        // Lane statistics as of the latest cutoff at or before t: never the row's own outcome,
        // and nothing at all before the first table.
        let ls = self.lanes.at(t).map_or(&LaneStats::UNKNOWN, |table| &table[lane]);
        let s = st.stage;
        let dwell = days(t - st.stage_start).max(0.0);
        // Floored at an hour and a bit, so that a stage most parcels clear at once gives no
        // huge ratio; unknown stays unknown (`f64::max` would floor NaN to the floor itself).
        let p50 = if ls.dwell_p50(s).is_nan() { f64::NAN } else { ls.dwell_p50(s).max(0.05) };
        let p90 = if ls.dwell_p90(s).is_nan() { f64::NAN } else { ls.dwell_p90(s).max(p50) };
        // Unknown when the lane never saw a delivery from this stage (NaN propagates).
        let remaining = |now: f64, next: f64| if now.is_nan() { f64::NAN } else { (now - dwell).max(next).max(0.0) };
        let rem50 = remaining(ls.rem_p50(s), ls.rem_p50(s + 1));
        let rem90 = remaining(ls.rem_p90(s), ls.rem_p90(s + 1));
        let to_promise = days(promised - t);
        let horizon = days(promised - created).max(1.0 / 24.0);
        // Door-to-door time extrapolated from how long the parcel took to reach its stage.
        let progress_eta =
            if s == 0 { ls.transit(0) } else { progress_eta(days(st.stage_start - created), ls.frac_p50(s)) };
        let last_scan = if st.last_scan == NONE { created } else { st.last_scan };
        let day = day_index(t);
        let mut ratio: f64 = 1.0;
        let mut ahead = false;
        // Before the series' first day nothing is known: no ratio above 1, no flag.
        for pt in (s..N_STAGES).filter_map(|s2| self.series.seen_at(lane, s2, day)) {
            ratio = ratio.max(pt.ratio);
            ahead |= pt.disrupted;
        }
        let own = Own::of(created, self.states.picked_up(i), &self.outcomes[i]);
        let seen = seen.unwrap_or_else(|| self.history.seen(own, p.seller[i] as usize, lane, t));
        let (express, economy) = self.service_kind[lane];
        let picked = st.first[1];
        let handling_so_far = handling_so_far(created, picked, st.furthest, t);
        let eta_known = st.eta_last != NONE;
        let w = p.weight_g[i];
        let v = p.declared_value[i];
        let values: [f64; N_FEATURES] = [
            days(t - created),
            to_promise,
            days(promised - created),
            s as f64,
            st.furthest as f64,
            days(t - last_scan).max(0.0),
            dwell,
            dwell / p50,
            dwell / p90,
            rem50,
            rem90,
            to_promise - rem50,
            to_promise - rem90,
            st.scans as f64,
            (st.customs_holds > 0) as u8 as f64,
            st.failed_deliveries as f64,
            (st.exceptions > 0) as u8 as f64,
            seen.seller_handling_days,
            seen.seller_late_rate,
            seen.seller_shipments.ln_1p(),
            seen.lane_late_rate,
            ratio,
            ahead as u8 as f64,
            weekday(day) as f64,
            self.days.business_days_between(t, promised),
            self.days.any_between(t, promised) as u8 as f64,
            w / 1000.0,
            v.ln_1p(),
            p.insured[i] as u8 as f64,
            days(promised - created) - ls.transit(1),
            ls.transit(0),
            express as u8 as f64,
            economy as u8 as f64,
            days(t - created) / horizon,
            progress_eta / horizon,
            handling_so_far - seen.seller_handling_days,
            ls.milestones_tracked as f64,
            days_between(st.eta_last, promised),
            days_between(t, st.eta_last),
            if eta_known { st.eta_updates as f64 } else { f64::NAN },
            days_between(st.eta_first, st.eta_last),
        ];
        for (o, v) in out.iter_mut().zip(values) {
            // Missing stays missing; infinities (a division by a zero quantile) are missing too.
            *o = if v.is_finite() { v } else { f64::NAN };
        }
        Extras {
            stage: s,
            furthest: st.furthest,
            last_event_at: last_scan,
            stage_dwell_days: dwell,
            expected_remaining_p50: rem50,
            expected_remaining_p90: rem90,
            carrier_scanned: st.first_carrier_scan != super::timeline::NONE,
        }
    }
}

/// Door-to-door time extrapolated from the days a parcel took to reach its stage and the share
/// of the transit the lane's parcels spend before it (floored at 5 %). An unknown share stays
/// unknown: `f64::max` floored NaN to 0.05 and made up twenty times the days so far.
fn progress_eta(days_to_stage: f64, share_before: f64) -> f64 {
    if share_before.is_nan() { f64::NAN } else { days_to_stage.max(0.0) / share_before.max(0.05) }
}

/// Days the seller has held the parcel: created to pickup, or to `t` while it waits for
/// pickup. A parcel scanned past pickup without a pickup scan (a feed or lane that skips it)
/// was picked up at an unknown time: missing, not its whole age, which read as a seller weeks
/// late for a parcel already abroad.
fn handling_so_far(created: i64, picked: i64, furthest: u8, t: i64) -> f64 {
    if picked != NONE {
        days(picked - created)
    } else if furthest > 1 {
        f64::NAN
    } else {
        days(t - created)
    }
}

#[cfg(test)]
mod tests {
    use super::{handling_so_far, progress_eta};
    use super::NONE;
    use crate::schema::MICROS_PER_DAY;

    #[test]
    fn handling_is_unknown_for_a_parcel_past_pickup_without_a_pickup_scan() {
        let d = MICROS_PER_DAY;
        assert_eq!(handling_so_far(0, 2 * d, 5, 10 * d), 2.0);
        assert_eq!(handling_so_far(0, NONE, 1, 3 * d), 3.0);
        assert_eq!(handling_so_far(0, NONE, 0, 3 * d), 3.0);
        assert!(handling_so_far(0, NONE, 4, 10 * d).is_nan());
    }

    #[test]
    fn an_unknown_share_of_the_transit_makes_no_estimate() {
        assert!(progress_eta(5.0, f64::NAN).is_nan());
        assert_eq!(progress_eta(5.0, 0.5), 10.0);
        assert_eq!(progress_eta(5.0, 0.01), 100.0);
        assert_eq!(progress_eta(-1.0, 0.5), 0.0);
    }
}
