//! The alert rules, each a small pure function over one parcel's `Facts`: which kind of alert
//! (if any), its reasons (most important first), its severity, and the action to take. The
//! per-seller cap is here too. `Facts` are gathered from the feature set once (`facts`), so the
//! rules can be read and tested without one.

use std::collections::HashMap;

use super::{AlertKind, Severity};
use crate::config::AlertConfig;
use crate::features::{FeatureSet, feature_index};
use crate::schema::STAGES;

/// Everything the rules read about one in-flight parcel at the cutoff.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// Calibrated risk (1 once past the promise).
    pub risk: f64,
    /// Days from the cutoff to the promise; ≤ 0 once it has passed.
    pub to_promise: f64,
    /// Days since the last scan.
    pub silent: f64,
    /// Current stage (index into `STAGES`) and days spent in it.
    pub stage: usize,
    pub stage_dwell: f64,
    /// The lane's p90 dwell of the current stage (days, at least 0.05).
    pub stage_p90: f64,
    /// Stage dwell / that p90.
    pub dwell_vs_p90: f64,
    /// Time to promise less the lane's p50 and p90 remaining time.
    pub slack_p50: f64,
    pub slack_p90: f64,
    pub customs_hold: bool,
    pub delivery_failures: f64,
    pub seller_late_rate: f64,
    pub lane_late_rate: f64,
    pub seller_handling_days: f64,
    /// Insured and declared at or above `alerts.high_value_usd`.
    pub high_value: bool,
    /// A scan other than the creation was seen: a carrier has had the parcel.
    pub carrier_scanned: bool,
    /// The lane's worst disrupted stage at or after the parcel's current one, if any.
    pub disruption: Option<Disruption>,
}

/// A lane disruption ahead of the parcel, as a reason shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Disruption {
    pub lane: String,
    pub stage: usize,
    /// As-of date of the first night of the current run of disrupted nights.
    pub since: Option<String>,
    pub recent_p50: f64,
    pub baseline_p50: f64,
    pub ratio: f64,
}

/// Gathers the facts of scoring row `r` with calibrated `risk`.
pub fn facts(fs: &FeatureSet, r: usize, risk: f64, cfg: &AlertConfig) -> Facts {
    let x = fs.score.row(r);
    let f = |name: &str| x[feature_index(name)];
    let e = &fs.score.extras[r];
    let i = fs.score.ship[r] as usize;
    let p = &fs.prep;
    let lane_id = p.lane[i] as usize;
    let lane = &fs.lanes()[lane_id];
    let day = fs.night().cutoff_day();
    let value = p.declared_value[i];
    let disruption = fs.disrupted_ahead(lane_id, e.stage).map(|s| {
        let pt = fs.series.at(lane_id, s, day);
        Disruption {
            lane: p.lanes[lane_id].label(),
            stage: s,
            since: fs
                .series
                .disrupted_since(lane_id, s, day)
                .map(|d| crate::calendar::as_of_of_cutoff_day(d).to_string()),
            recent_p50: pt.recent_p50,
            baseline_p50: pt.baseline_p50,
            ratio: pt.ratio,
        }
    });
    Facts {
        risk,
        to_promise: f("time_to_promise_days"),
        silent: f("days_since_last_scan"),
        stage: e.stage,
        stage_dwell: e.stage_dwell_days,
        stage_p90: floored_p90(lane.dwell_p90(e.stage)),
        dwell_vs_p90: f("dwell_vs_p90"),
        slack_p50: f("slack_p50_days"),
        slack_p90: f("slack_p90_days"),
        customs_hold: f("customs_hold_seen") > 0.0,
        delivery_failures: f("delivery_failures"),
        seller_late_rate: f("seller_late_rate"),
        lane_late_rate: f("lane_late_rate"),
        seller_handling_days: f("seller_handling_days"),
        high_value: p.insured[i] && value.is_finite() && value >= cfg.high_value_usd,
        carrier_scanned: e.carrier_scanned,
        disruption,
    }
}

/// A lane's p90 dwell floored as the features floor it (an hour and a bit); unknown stays
/// unknown: `f64::max` made it 0.05 d, printed as the lane's p90 in the stall reason.
fn floored_p90(p90: f64) -> f64 {
    if p90.is_nan() { p90 } else { p90.max(0.05) }
}

/// Days of silence after which a parcel counts as stalled: `stalled_factor` × the lane's p90
/// dwell of its stage, and at least `stalled_min_days` (alone when the p90 is unknown).
pub fn stall_limit(f: &Facts, cfg: &AlertConfig) -> f64 {
    (cfg.stalled_factor * f.stage_p90).max(cfg.stalled_min_days)
}

pub fn is_stalled(f: &Facts, cfg: &AlertConfig) -> bool {
    f.silent > stall_limit(f, cfg)
}

pub fn is_late(f: &Facts) -> bool {
    f.to_promise <= 0.0
}

/// The alert kind: late beats stalled beats at-risk; `None` raises no alert.
pub fn kind(f: &Facts, cfg: &AlertConfig) -> Option<AlertKind> {
    if is_late(f) {
        Some(AlertKind::Late)
    } else if is_stalled(f, cfg) {
        Some(AlertKind::Stalled)
    } else if f.risk >= cfg.risk_threshold {
        Some(AlertKind::AtRisk)
    } else {
        None
    }
}

fn fmt_d(v: f64) -> String {
    format!("{v:.1} d")
}

/// The lane's p90 dwell for a reason: `unknown` where no level has one.
fn fmt_p90(v: f64) -> String {
    if v.is_nan() { "unknown".into() } else { fmt_d(v) }
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// The reasons behind an alert, heaviest first. Weights only order reasons, in bands: past the
/// promise 100, silence 90–99, stage dwell 70–79, lane disruption 60–69, customs hold and
/// failed deliveries 44–46, slack 20–44, seller 15, lane 10, the model's risk 5.
pub fn reasons(f: &Facts, kind: AlertKind, cfg: &AlertConfig) -> Vec<String> {
    let late = is_late(f);
    let limit = stall_limit(f, cfg);
    let stage = &STAGES[f.stage];
    let mut reasons: Vec<(f64, String)> = Vec::new();
    if late {
        // `+ 0.0`: at the promise itself the negation is -0.0, printed "-0.0 d".
        reasons.push((100.0, format!("past the promise by {}", fmt_d(-f.to_promise + 0.0))));
    }
    if is_stalled(f, cfg) {
        reasons.push((
            90.0 + (f.silent / limit).min(9.0),
            format!("no scan for {} ({} stage, lane p90 {})", fmt_d(f.silent), stage.label, fmt_p90(f.stage_p90)),
        ));
    }
    if f.dwell_vs_p90 > 1.0 {
        reasons.push((
            70.0 + f.dwell_vs_p90.min(9.0),
            format!("{} dwell {} vs lane p90 {}", stage.label, fmt_d(f.stage_dwell), fmt_p90(f.stage_p90)),
        ));
    }
    if let Some(d) = &f.disruption {
        reasons.push((
            60.0 + d.ratio.min(9.0),
            format!(
                "lane {} disrupted{}: {} p50 {} vs {} baseline",
                d.lane,
                d.since.as_ref().map(|s| format!(" since {s}")).unwrap_or_default(),
                STAGES[d.stage].label,
                fmt_d(d.recent_p50),
                fmt_d(d.baseline_p50)
            ),
        ));
    }
    if !late && f.slack_p50 < 0.0 {
        reasons.push((
            40.0 + (-f.slack_p50).min(4.0),
            format!("expected delivery {} after the promise (lane p50)", fmt_d(-f.slack_p50)),
        ));
    } else if !late && f.slack_p90 < 0.0 {
        reasons.push((
            20.0 + (-f.slack_p90).min(4.0),
            format!("slow-case delivery {} after the promise (lane p90)", fmt_d(-f.slack_p90)),
        ));
    }
    if f.customs_hold {
        reasons.push((45.0, "customs hold scanned".to_string()));
    }
    let fails = f.delivery_failures;
    if fails > 0.0 {
        reasons.push((
            44.0 + fails.min(1.0),
            format!("{} failed delivery attempt{}", fails as u32, if fails > 1.0 { "s" } else { "" }),
        ));
    }
    if f.seller_late_rate > 1.5 * f.lane_late_rate && f.seller_late_rate > 0.1 {
        reasons.push((
            15.0 + f.seller_late_rate,
            format!("seller's recent late rate {} vs lane {}", pct(f.seller_late_rate), pct(f.lane_late_rate)),
        ));
    }
    if f.stage == 0 && f.stage_dwell > f.seller_handling_days && f.stage_dwell > 1.0 {
        reasons.push((
            30.0,
            format!("not picked up after {} (seller usually {})", fmt_d(f.stage_dwell), fmt_d(f.seller_handling_days)),
        ));
    }
    if f.lane_late_rate > 0.2 {
        reasons.push((10.0, format!("lane late rate {}", pct(f.lane_late_rate))));
    }
    if kind == AlertKind::AtRisk || reasons.is_empty() {
        reasons.push((5.0, format!("model risk {:.2}", f.risk)));
    }
    reasons.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    reasons.into_iter().map(|r| r.1).collect()
}

/// Severity: for `late`, days past the promise (high from `late_high_days`, medium from one
/// day), high also when insured and valuable or silent too; for `stalled`, high at twice the
/// stall limit or when valuable; for `at_risk`, the risk against `high_risk` and `medium_risk`.
pub fn severity(f: &Facts, kind: AlertKind, cfg: &AlertConfig) -> Severity {
    match kind {
        AlertKind::Late => {
            if -f.to_promise >= cfg.late_high_days || f.high_value || is_stalled(f, cfg) {
                Severity::High
            } else if -f.to_promise >= 1.0 {
                Severity::Medium
            } else {
                Severity::Low
            }
        }
        AlertKind::Stalled => {
            if f.silent >= 2.0 * stall_limit(f, cfg) || f.high_value {
                Severity::High
            } else {
                Severity::Medium
            }
        }
        AlertKind::AtRisk => {
            if f.risk >= cfg.high_risk {
                Severity::High
            } else if f.risk >= cfg.medium_risk {
                Severity::Medium
            } else {
                Severity::Low
            }
        }
    }
}

pub const ACTION_CLAIM: &str = "prepare an insurance claim for this insured high-value parcel presumed lost";
pub const ACTION_TRACE: &str = "open a carrier trace";
pub const ACTION_EXTEND: &str = "request a delivery-time extension before the promise passes";
pub const ACTION_REROUTE: &str = "ship new orders on this lane with another service";
pub const ACTION_HAND_OVER: &str = "hand the parcel to the carrier or book a pickup";

/// The last stage in which a customs hold may still wait for documents: import customs. Once
/// import clearance is scanned, a hold seen earlier is over.
const LAST_CUSTOMS_STAGE: usize = 4;

/// The action, in the order a seller should take its steps, joined with "; " and capitalised.
pub fn action(f: &Facts, kind: AlertKind, severity: Severity, cfg: &AlertConfig) -> String {
    let stalled = is_stalled(f, cfg);
    // In the seller-handling stage with no scan but the creation, no carrier has had the
    // parcel: there is nothing to trace and nothing lost to claim for; it is the seller's to
    // hand over. The reasons say "not picked up"; a trace and a claim contradicted them. One a
    // carrier scanned (an exception, an unmapped status) without a pickup milestone is traced.
    let handed_over = f.stage > 0 || f.carrier_scanned;
    let mut actions: Vec<&str> = Vec::new();
    if !handed_over {
        actions.push(ACTION_HAND_OVER);
    }
    match kind {
        AlertKind::Late => {
            if handed_over && stalled && f.high_value {
                actions.push(ACTION_CLAIM);
            }
            if handed_over && stalled {
                actions.push(ACTION_TRACE);
            }
            actions.push("message the buyer with the tracking status");
            actions.push("collect tracking evidence for a likely dispute");
        }
        AlertKind::Stalled => {
            if handed_over {
                actions.push(ACTION_TRACE);
                if f.high_value {
                    actions.push(ACTION_CLAIM);
                }
            }
            actions.push("message the buyer before they complain");
        }
        AlertKind::AtRisk => {
            if severity == Severity::High || f.slack_p50 < 0.0 {
                actions.push(ACTION_EXTEND);
            }
            actions.push("message the buyer before they complain");
            // A hold seen before import clearance may still wait for documents; one seen
            // earlier on a parcel now in the last mile is over.
            if f.customs_hold && f.stage <= LAST_CUSTOMS_STAGE {
                actions.push("send the carrier the customs documents");
            }
        }
    }
    if f.disruption.is_some() {
        actions.push(ACTION_REROUTE);
    }
    let action = actions.join("; ");
    match action.get(..1) {
        Some(c) => c.to_uppercase() + &action[1..],
        None => action,
    }
}

/// The per-seller budget: each seller keeps its first `max_per_seller` alerts in the given
/// order (most severe and riskiest first); the rest are counted per seller as suppressed.
/// Returns the kept positions (ascending) and the suppressed counts by seller.
pub fn cap_per_seller(sellers_in_order: &[u32], max_per_seller: usize) -> (Vec<usize>, HashMap<u32, u64>) {
    let mut kept = Vec::with_capacity(sellers_in_order.len());
    let mut suppressed: HashMap<u32, u64> = HashMap::new();
    let mut count_for: HashMap<u32, usize> = HashMap::new();
    for (k, &s) in sellers_in_order.iter().enumerate() {
        let c = count_for.entry(s).or_insert(0);
        if *c < max_per_seller {
            *c += 1;
            kept.push(k);
        } else {
            *suppressed.entry(s).or_insert(0) += 1;
        }
    }
    (kept, suppressed)
}

/// An alert as the per-seller cap orders a seller's alerts: most severe first, then riskiest,
/// then by kind and shipment id (the whole network's shipment order).
#[derive(Debug, Clone, PartialEq)]
pub struct CapKey {
    pub severity: Severity,
    pub risk: f64,
    pub kind: AlertKind,
    pub shipment_id: String,
}

impl CapKey {
    fn order(&self, other: &CapKey) -> std::cmp::Ordering {
        cap_order((self.severity, self.risk, self.kind), (other.severity, other.risk, other.kind))
            .then(self.shipment_id.cmp(&other.shipment_id))
    }
}

/// The cap's order of one seller's alerts before the shipment decides: most severe, then
/// riskiest, then by kind (`alerts::build` and `CapKey` both sort by it).
pub fn cap_order(a: (Severity, f64, AlertKind), b: (Severity, f64, AlertKind)) -> std::cmp::Ordering {
    a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(&b.2))
}

/// What one part of the network (a shard) contributes to the per-seller cap: per seller, how
/// many alerts it raised and its first `max_per_seller` of them in the cap's order. A seller
/// ships on many lanes, so on many parts; an alert past a part's first `max_per_seller` is
/// suppressed whatever the other parts raise, so these are all the cap needs
/// (`cap_across_parts`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CapShare {
    pub sellers: std::collections::BTreeMap<String, (u64, Vec<CapKey>)>,
}

/// A part's `CapShare` from its alerts (seller id and key), in any order.
pub fn cap_share(alerts: impl IntoIterator<Item = (String, CapKey)>, max_per_seller: usize) -> CapShare {
    let mut share = CapShare::default();
    for (seller, key) in alerts {
        let e = share.sellers.entry(seller).or_default();
        e.0 += 1;
        e.1.push(key);
    }
    for (_, keys) in share.sellers.values_mut() {
        keys.sort_by(CapKey::order);
        keys.truncate(max_per_seller);
    }
    share
}

/// The per-seller cap over every part's share: the shipment ids of the alerts kept (each
/// seller's first `max_per_seller` in the cap's order over all parts) and the suppressed
/// counts by seller, as `cap_per_seller` gives them on the whole network.
pub fn cap_across_parts(
    shares: Vec<CapShare>,
    max_per_seller: usize,
) -> (std::collections::BTreeSet<String>, HashMap<String, u64>) {
    let mut all: std::collections::BTreeMap<String, (u64, Vec<CapKey>)> = Default::default();
    for share in shares {
        for (seller, (n, keys)) in share.sellers {
            let e = all.entry(seller).or_default();
            e.0 += n;
            e.1.extend(keys);
        }
    }
    let (mut kept, mut suppressed) = (std::collections::BTreeSet::new(), HashMap::new());
    for (seller, (n, mut keys)) in all {
        keys.sort_by(CapKey::order);
        keys.truncate(max_per_seller);
        if n > keys.len() as u64 {
            suppressed.insert(seller, n - keys.len() as u64);
        }
        kept.extend(keys.into_iter().map(|k| k.shipment_id));
    }
    (kept, suppressed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Alerts split among parts however their shipments fall (a seller's alerts on several):
    /// the cap over the parts' shares keeps the alerts and counts the suppressed ones the cap
    /// over the whole network's sorted alerts does, with ties of severity and risk.
    #[test]
    fn the_cap_across_parts_keeps_what_the_cap_on_the_whole_network_keeps() {
        let mut rng = crate::TestRng::new(3);
        let mut suppressed_somewhere = 0;
        for case in 0..500 {
            let n = (rng.next() % 300) as usize;
            let sellers = 1 + (rng.next() % 12) as u32;
            let max = 1 + (rng.next() % 6) as usize;
            let parts = 1 + (rng.next() % 5) as usize;
            // (seller, key, part): risks from a few values, so ties are common.
            let alerts: Vec<(u32, CapKey, usize)> = (0..n)
                .map(|i| {
                    let key = CapKey {
                        severity: Severity::ALL[(rng.next() % 3) as usize],
                        risk: (rng.next() % 5) as f64 / 4.0,
                        kind: AlertKind::ALL[(rng.next() % 3) as usize],
                        shipment_id: format!("S{i:05}"),
                    };
                    ((rng.next() % sellers as u64) as u32, key, (rng.next() % parts as u64) as usize)
                })
                .collect();
            // The whole network, as `alerts::build` sorts it (shipment indices follow the ids),
            // then capped.
            let mut whole: Vec<(usize, &(u32, CapKey, usize))> = alerts.iter().enumerate().collect();
            whole.sort_by(|(i, a), (j, b)| {
                a.0.cmp(&b.0)
                    .then(a.1.severity.cmp(&b.1.severity))
                    .then(b.1.risk.total_cmp(&a.1.risk))
                    .then(a.1.kind.cmp(&b.1.kind))
                    .then(i.cmp(j))
            });
            let whole: Vec<&(u32, CapKey, usize)> = whole.into_iter().map(|(_, a)| a).collect();
            let (keep, suppressed) = cap_per_seller(&whole.iter().map(|a| a.0).collect::<Vec<_>>(), max);
            let want: std::collections::BTreeSet<String> =
                keep.iter().map(|&k| whole[k].1.shipment_id.clone()).collect();
            let want_suppressed: HashMap<String, u64> =
                suppressed.into_iter().map(|(s, n)| (format!("seller{s}"), n)).collect();
            let shares = (0..parts)
                .map(|p| {
                    let mine = alerts.iter().filter(|a| a.2 == p).map(|a| (format!("seller{}", a.0), a.1.clone()));
                    cap_share(mine, max)
                })
                .collect();
            let (kept, suppressed) = cap_across_parts(shares, max);
            assert_eq!(kept, want, "case {case}");
            assert_eq!(suppressed, want_suppressed, "case {case}");
            suppressed_somewhere += !want_suppressed.is_empty() as usize;
        }
        assert!(suppressed_somewhere > 200, "only {suppressed_somewhere} cases capped anything");
    }

    fn cfg() -> AlertConfig {
        AlertConfig::default()
    }

    /// An unremarkable parcel in linehaul, on time, with a calm lane.
    fn calm() -> Facts {
        Facts {
            risk: 0.1,
            to_promise: 8.0,
            silent: 1.0,
            stage: 3,
            stage_dwell: 1.0,
            stage_p90: 3.0,
            dwell_vs_p90: 0.33,
            slack_p50: 3.0,
            slack_p90: 1.0,
            customs_hold: false,
            delivery_failures: 0.0,
            seller_late_rate: 0.05,
            lane_late_rate: 0.05,
            seller_handling_days: 1.0,
            high_value: false,
            carrier_scanned: true,
            disruption: None,
        }
    }

    #[test]
    fn kind_table() {
        let c = cfg();
        // (facts, expected kind)
        let cases: Vec<(Facts, Option<AlertKind>)> = vec![
            (calm(), None),
            (Facts { risk: 0.5, ..calm() }, Some(AlertKind::AtRisk)),
            (Facts { risk: 0.499, ..calm() }, None),
            (Facts { to_promise: 0.0, ..calm() }, Some(AlertKind::Late)),
            (Facts { to_promise: -0.01, silent: 30.0, ..calm() }, Some(AlertKind::Late)),
            // Stall limit: max(2 × p90 3.0, 4.0) = 6.0; strictly more silence than that.
            (Facts { silent: 6.0, ..calm() }, None),
            (Facts { silent: 6.01, risk: 0.9, ..calm() }, Some(AlertKind::Stalled)),
            // A short p90 still needs `stalled_min_days` of silence.
            (Facts { silent: 3.9, stage_p90: 0.5, ..calm() }, None),
            (Facts { silent: 4.1, stage_p90: 0.5, ..calm() }, Some(AlertKind::Stalled)),
        ];
        for (k, (f, want)) in cases.iter().enumerate() {
            assert_eq!(kind(f, &c), *want, "case {k}: {f:?}");
        }
    }

    /// Regression: an unknown p90 dwell became 0.05 d, and the stall reason said "lane p90
    /// 0.1 d". The stall limit is then `stalled_min_days` alone, and the reason says unknown.
    #[test]
    fn an_unknown_stage_p90_stays_unknown_in_the_stall_reason() {
        let c = cfg();
        assert!(floored_p90(f64::NAN).is_nan());
        assert_eq!((floored_p90(0.01), floored_p90(3.0)), (0.05, 3.0));
        let f = Facts { silent: 4.1, stage_p90: floored_p90(f64::NAN), dwell_vs_p90: f64::NAN, ..calm() };
        assert_eq!(stall_limit(&f, &c), c.stalled_min_days);
        assert_eq!(kind(&f, &c), Some(AlertKind::Stalled));
        let r = reasons(&f, AlertKind::Stalled, &c);
        assert!(r[0].contains("lane p90 unknown"), "{r:?}");
    }

    #[test]
    fn severity_table() {
        let c = cfg();
        let cases: Vec<(Facts, AlertKind, Severity)> = vec![
            (Facts { to_promise: -0.5, ..calm() }, AlertKind::Late, Severity::Low),
            (Facts { to_promise: -1.0, ..calm() }, AlertKind::Late, Severity::Medium),
            (Facts { to_promise: -4.99, ..calm() }, AlertKind::Late, Severity::Medium),
            (Facts { to_promise: -5.0, ..calm() }, AlertKind::Late, Severity::High),
            (Facts { to_promise: -0.5, high_value: true, ..calm() }, AlertKind::Late, Severity::High),
            (Facts { to_promise: -0.5, silent: 7.0, ..calm() }, AlertKind::Late, Severity::High),
            (Facts { silent: 7.0, ..calm() }, AlertKind::Stalled, Severity::Medium),
            (Facts { silent: 12.0, ..calm() }, AlertKind::Stalled, Severity::High),
            (Facts { silent: 7.0, high_value: true, ..calm() }, AlertKind::Stalled, Severity::High),
            (Facts { risk: 0.5, ..calm() }, AlertKind::AtRisk, Severity::Low),
            (Facts { risk: 0.65, ..calm() }, AlertKind::AtRisk, Severity::Medium),
            (Facts { risk: 0.8, ..calm() }, AlertKind::AtRisk, Severity::High),
        ];
        for (k, (f, kind, want)) in cases.iter().enumerate() {
            assert_eq!(severity(f, *kind, &c), *want, "case {k}: {f:?}");
        }
    }

    #[test]
    fn reasons_are_ordered_by_weight() {
        let c = cfg();
        let f = Facts {
            to_promise: -2.0,
            silent: 9.0,
            customs_hold: true,
            lane_late_rate: 0.3,
            disruption: Some(Disruption {
                lane: "CN-GD→FR economy".into(),
                stage: 4,
                since: Some("2026-11-10".into()),
                recent_p50: 4.0,
                baseline_p50: 1.5,
                ratio: 2.7,
            }),
            ..calm()
        };
        let r = reasons(&f, AlertKind::Late, &c);
        assert_eq!(
            r,
            [
                "past the promise by 2.0 d",
                "no scan for 9.0 d (linehaul stage, lane p90 3.0 d)",
                "lane CN-GD→FR economy disrupted since 2026-11-10: import customs p50 4.0 d vs 1.5 d baseline",
                "customs hold scanned",
                "lane late rate 30%",
            ]
        );
        // Regression: a parcel at its promise was "past the promise by -0.0 d".
        let at_promise = Facts { to_promise: 0.0, ..calm() };
        assert_eq!(reasons(&at_promise, AlertKind::Late, &c)[0], "past the promise by 0.0 d");
        // An at-risk alert always shows the model's risk, last.
        let r = reasons(&Facts { risk: 0.7, ..calm() }, AlertKind::AtRisk, &c);
        assert_eq!(r, ["model risk 0.70"]);
        // Negative p50 slack beats negative p90 slack; only one of them is shown.
        let r = reasons(&Facts { risk: 0.7, slack_p50: -1.0, slack_p90: -3.0, ..calm() }, AlertKind::AtRisk, &c);
        assert_eq!(r, ["expected delivery 1.0 d after the promise (lane p50)", "model risk 0.70"]);
        // Not picked up for longer than the seller's usual handling.
        let f = Facts { stage: 0, stage_dwell: 3.0, seller_handling_days: 1.2, risk: 0.6, ..calm() };
        assert_eq!(reasons(&f, AlertKind::AtRisk, &c)[0], "not picked up after 3.0 d (seller usually 1.2 d)");
    }

    #[test]
    fn action_table() {
        let c = cfg();
        let late_lost = Facts { to_promise: -3.0, silent: 20.0, high_value: true, ..calm() };
        assert_eq!(
            action(&late_lost, AlertKind::Late, Severity::High, &c),
            "Prepare an insurance claim for this insured high-value parcel presumed lost; open a carrier trace; \
             message the buyer with the tracking status; collect tracking evidence for a likely dispute"
        );
        let stalled = Facts { silent: 7.0, ..calm() };
        assert_eq!(
            action(&stalled, AlertKind::Stalled, Severity::Medium, &c),
            "Open a carrier trace; message the buyer before they complain"
        );
        let risky = Facts { risk: 0.9, customs_hold: true, ..calm() };
        assert_eq!(
            action(&risky, AlertKind::AtRisk, Severity::High, &c),
            "Request a delivery-time extension before the promise passes; message the buyer before they complain; \
             send the carrier the customs documents"
        );
        // Regression: a hold seen before import clearance is over in the last mile; the
        // action still asked for the customs documents.
        let cleared = Facts { stage: 5, ..risky.clone() };
        assert_eq!(
            action(&cleared, AlertKind::AtRisk, Severity::High, &c),
            "Request a delivery-time extension before the promise passes; message the buyer before they complain"
        );
        let held = Facts { stage: 4, ..risky.clone() };
        assert!(action(&held, AlertKind::AtRisk, Severity::High, &c).ends_with("send the carrier the customs documents"));
        // Regression: a parcel never picked up (seller handling) was to be traced and, insured
        // and valuable, claimed for as lost; it is the seller's to hand over.
        let unshipped = Facts { stage: 0, carrier_scanned: false, ..late_lost.clone() };
        assert_eq!(
            action(&unshipped, AlertKind::Late, Severity::High, &c),
            "Hand the parcel to the carrier or book a pickup; message the buyer with the tracking status; \
             collect tracking evidence for a likely dispute"
        );
        let unshipped = Facts { stage: 0, high_value: true, carrier_scanned: false, ..stalled.clone() };
        assert_eq!(
            action(&unshipped, AlertKind::Stalled, Severity::High, &c),
            "Hand the parcel to the carrier or book a pickup; message the buyer before they complain"
        );
        // Scanned by a carrier (an exception) without a pickup milestone: traced as before.
        let scanned = Facts { carrier_scanned: true, ..unshipped.clone() };
        assert!(action(&scanned, AlertKind::Stalled, Severity::High, &c).starts_with("Open a carrier trace"));
        let mild = Facts { risk: 0.55, ..calm() };
        assert_eq!(action(&mild, AlertKind::AtRisk, Severity::Low, &c), "Message the buyer before they complain");
        let disrupted = Facts {
            disruption: Some(Disruption {
                lane: "l".into(),
                stage: 3,
                since: None,
                recent_p50: 1.0,
                baseline_p50: 1.0,
                ratio: 1.5,
            }),
            ..mild
        };
        assert!(action(&disrupted, AlertKind::AtRisk, Severity::Low, &c).ends_with(ACTION_REROUTE));
    }

    #[test]
    fn cap_keeps_the_first_alerts_of_each_seller_and_counts_the_rest() {
        // Sellers in the order the alerts were ranked.
        let (kept, suppressed) = cap_per_seller(&[1, 1, 1, 2, 3, 3], 2);
        assert_eq!(kept, [0, 1, 3, 4, 5]);
        assert_eq!(suppressed.get(&1), Some(&1));
        assert_eq!(suppressed.len(), 1);
        let (kept, suppressed) = cap_per_seller(&[4, 4, 4], 1);
        assert_eq!((kept, suppressed.get(&4).copied()), (vec![0], Some(2)));
        let (kept, suppressed) = cap_per_seller(&[], 5);
        assert!(kept.is_empty() && suppressed.is_empty());
    }
}
