//! Recent versus baseline stage dwell per lane, for every nightly cutoff in a range of days.
//!
//! At cutoff c, for one lane and stage:
//! - baseline: p50 dwell of stage visits that ended in [c − window, c − recent);
//! - recent: the Kaplan–Meier median dwell of the cohort of parcels that entered the stage in
//!   [c − recent − 2·baseline p50, c). Parcels still in the stage at c are censored at their
//!   open dwell, so a backlog shows as soon as its parcels outstay the usual dwell, without
//!   waiting for them to leave. When fewer than half have left, the median is only known to
//!   exceed the longest open dwell, which is used (a lower bound);
//! - z: a binomial test that more of the cohort than the usual half outstayed the baseline p50,
//!   which keeps small lanes' noise from raising flags.
//!
//! The ratio recent / baseline is the raw disruption signal. Only facts known before c are
//! used, so the series for a past day is what that night's run saw.

use rayon::prelude::*;

use super::prepare::Prepared;
use super::timeline::{HeldVisits, NONE, State, Visits};
use crate::config::LaneConfig;
use crate::schema::{MICROS_PER_DAY, N_STAGES, days};

#[derive(Debug, Clone, Copy, Default)]
pub struct Point {
    pub recent_p50: f64,
    pub baseline_p50: f64,
    /// Parcels in the recent cohort.
    pub recent_n: u32,
    /// Those of them judged against the baseline median (in the stage for that long): the
    /// cohort's support, which `recent_n` overstates by the parcels that entered too recently.
    pub known: u32,
    pub baseline_n: u32,
    /// recent / baseline, or 1 when either side lacks support.
    pub ratio: f64,
    /// Standardised excess of the cohort outstaying the baseline p50 (0 when not computable).
    pub z: f64,
    pub disrupted: bool,
    /// The numbers are the destination × service group's, pooled over origins.
    pub pooled: bool,
    /// The flag's condition on this night alone; `disrupted` also needs it the night before.
    pub condition: bool,
}

/// Daily series for cutoff days `first_day..=last_day` (day numbers since the epoch).
pub struct Series {
    pub first_day: i64,
    pub last_day: i64,
    /// [lane][stage][day - first_day]
    pub points: Vec<[Vec<Point>; N_STAGES]>,
}

impl Series {
    /// The point seen by a run whose cutoff is the start of `day` (clamped to the range).
    pub fn at(&self, lane: usize, stage: usize, day: i64) -> &Point {
        let k = (day.clamp(self.first_day, self.last_day) - self.first_day) as usize;
        &self.points[lane][stage][k]
    }

    /// The point seen by a run whose cutoff is the start of `day`; none before the series'
    /// first day (its points hold what was known only later). Later days read the last.
    pub fn seen_at(&self, lane: usize, stage: usize, day: i64) -> Option<&Point> {
        (day >= self.first_day).then(|| self.at(lane, stage, day))
    }

    /// First day of the current unbroken run of disrupted days ending at `day`, if disrupted.
    pub fn disrupted_since(&self, lane: usize, stage: usize, day: i64) -> Option<i64> {
        if !self.at(lane, stage, day).disrupted {
            return None;
        }
        let mut d = day.min(self.last_day);
        while d > self.first_day && self.at(lane, stage, d - 1).disrupted {
            d -= 1;
        }
        Some(d)
    }
}

/// One stage visit: entry, and when it ended (exit or abandonment), `NONE` while open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Visit {
    entry: i64,
    end: i64,
    /// The visit ended by reaching a later milestone (not by a return or loss).
    completed: bool,
}

struct Spans {
    /// All visits, sorted by entry in `points_of`.
    visits: Vec<Visit>,
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    let mid = n / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
    let hi = *m;
    if n % 2 == 1 {
        hi
    } else {
        let lo = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo + hi) / 2.0
    }
}

/// One (time, censored) observation packed as `2·time + censored`: the packed values sort as
/// the pairs do (at equal times events, censored = false, first), and plain integers sort
/// faster than pairs. The series sorts a cohort per lane, stage and day, which made this sort
/// its largest cost (the step went from about 1.1 s to 0.9 s at 1M shipments).
fn packed(t: i64, censored: bool) -> i64 {
    2 * t + censored as i64
}

/// `a` and `b`, each sorted, merged into `out` (sorted).
fn merge_sorted(a: &[i64], b: &[i64], out: &mut Vec<i64>) {
    out.clear();
    out.reserve(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] <= b[j] {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
}

/// Kaplan–Meier median of `packed` observations; the largest time when survival stays above 1/2.
#[cfg(test)]
fn km_median(obs: &mut [i64]) -> Option<i64> {
    obs.sort_unstable();
    km_median_sorted(obs)
}

/// `km_median` of observations already sorted.
fn km_median_sorted(obs: &[i64]) -> Option<i64> {
    if obs.is_empty() {
        return None;
    }
    let mut at_risk = obs.len() as f64;
    let mut surv = 1.0;
    let mut i = 0;
    while i < obs.len() {
        // An arithmetic shift floors, so negative times unpack too.
        let t = obs[i] >> 1;
        let (mut events, mut gone) = (0.0, 0.0);
        while i < obs.len() && obs[i] >> 1 == t {
            events += (obs[i] & 1 == 0) as u8 as f64;
            gone += 1.0;
            i += 1;
        }
        if events > 0.0 {
            surv *= 1.0 - events / at_risk;
            if surv <= 0.5 {
                return Some(t);
            }
        }
        at_risk -= gone;
    }
    obs.last().map(|o| o >> 1)
}

/// Whether the series keeps a stage visit that ended at `exit` (`NONE`: not yet): one that had
/// not left its stage before `earliest`. `lane_spans` and the shipments `raw` hands it both
/// ask this, so the prefilter skips exactly the shipments that would give no visits.
fn reaches(exit: i64, earliest: i64) -> bool {
    exit == NONE || exit >= earliest
}

/// Whether `lane_spans` keeps any visit of this shipment.
pub fn has_visit_from(v: &Visits, earliest: i64) -> bool {
    v.spans().any(|(_, _, exit)| reaches(exit, earliest))
}

/// `has_visit_from` of a whole state: which shipments' visits a series reading stage exits
/// from `earliest` on needs held (`timeline::take_states`, `timeline::hold_visits`).
pub fn reads_visits_from(earliest: i64) -> impl Fn(&State) -> bool + Sync {
    move |st| has_visit_from(&Visits::of(st), earliest)
}

/// The earliest stage exit a series from cutoff day `first_day` reads: a baseline window and
/// the recent days before its first cutoff.
pub fn earliest(cfg: &LaneConfig, first_day: i64) -> i64 {
    first_day * MICROS_PER_DAY - cfg.window_days as i64 * MICROS_PER_DAY - cfg.recent_days as i64 * MICROS_PER_DAY
}

/// How many shipments ahead `lane_spans` asks for their visits.
const AHEAD: usize = 8;

/// The stage visits of one lane's shipments (their handles in `held`; the visits that had not
/// left the stage before `earliest`).
fn lane_spans(ships: &[u32], held: &HeldVisits, earliest: i64) -> [Spans; N_STAGES] {
    let mut spans: [Spans; N_STAGES] = std::array::from_fn(|_| Spans { visits: vec![] });
    // A lane's shipments lie all over the network's held visits, so each read was a wait for
    // memory (the largest single cost of a training night's series): the visits a few
    // shipments ahead are asked for while this one is read, and the waits overlap.
    for (j, &i) in ships.iter().enumerate() {
        if let Some(&ahead) = ships.get(j + AHEAD) {
            crate::memory::prefetch_all(held.get(ahead));
        }
        let st = held.get(i);
        for (s, entry, exit) in st.spans() {
            if !reaches(exit, earliest) {
                continue;
            }
            spans[s].visits.push(visit(entry, exit, st.returned_or_lost));
        }
    }
    spans
}

/// A stage visit from its entry, its exit and when the parcel was returned or lost (`NONE`:
/// not yet, or never). A returned or lost parcel's stage never completes: the visit ends,
/// censored, when it was abandoned, even where a later scan (a parcel found again) shows an
/// exit. Every night between the loss and that scan saw the visit ended at the loss, and a
/// series day must read the same whichever later night computes it (kept days are reused,
/// `reuse`): taking the later exit made a night after it see that day's visit still open. A loss
/// before the stage was entered (the parcel went on after it) does not end the visit.
fn visit(entry: i64, exit: i64, abandoned: i64) -> Visit {
    let lost_in_it = abandoned != NONE && abandoned >= entry && (exit == NONE || abandoned < exit);
    match (lost_in_it, exit) {
        (true, _) => Visit { entry, end: abandoned, completed: false },
        (false, NONE) => Visit { entry, end: NONE, completed: false },
        (false, exit) => Visit { entry, end: exit, completed: true },
    }
}

/// The daily points of one group and stage. Over many days the baseline window slides (a set
/// of ranks keeps its median, `RankWindow`) and the cohorts are read off the visits sorted by
/// entry; a night that computes only a day or two of series (an incremental night's new day)
/// takes each day's baseline by selection and sorts only the visits that can reach its cohort,
/// rather than sorting every visit of the window (three sorts of the group's visits cost most
/// of a new series day: about 13 s at 10M shipments). Both give the same points, bit for bit.
fn points_of(sp: &mut Spans, cfg: &LaneConfig, first_day: i64, n_days: usize, of: Of) -> Vec<Point> {
    if n_days <= FEW_DAYS {
        return (0..n_days).map(|k| point_at(&sp.visits, cfg, (first_day + k as i64) * MICROS_PER_DAY, of)).collect();
    }
    let recent = cfg.recent_days as i64 * MICROS_PER_DAY;
    let window = cfg.window_days as i64 * MICROS_PER_DAY;
    // Sorted by one key each (radix sorts): what reads these reads sets of visits between key
    // bounds (cohorts by entry, the baseline window by exit, its median by dwell), never the
    // order among equal keys, so the points are those of sorting by every field.
    if !sp.visits.is_sorted_by_key(|v| v.entry) {
        super::radix::sort_by_key(&mut sp.visits, |v| v.entry);
    }
    // (exit, dwell) of completed visits, by the day of their exit: the baseline's source. The
    // window's bounds below are whole days (cutoffs at midnight, whole days back), so it takes
    // and drops a day's exits together and never reads their order within the day: sorted by
    // day, one radix pass over a few hundred days instead of four over microseconds.
    let mut done: Vec<(i64, i64)> =
        sp.visits.iter().filter(|v| v.completed).map(|v| (v.end, v.end - v.entry)).collect();
    super::radix::sort_by_key(&mut done, |d| d.0.div_euclid(MICROS_PER_DAY));
    let mut scratch = Cohort::default();
    // The baseline window slides one day per cutoff: a set of dwell ranks keeps its median
    // without re-sorting the window every day.
    let mut by_value: Vec<(i64, usize)> = done.iter().enumerate().map(|(k, d)| (d.1, k)).collect();
    super::radix::sort_by_key(&mut by_value, |d| d.0);
    let mut rank = vec![0usize; done.len()];
    for (r, (_, k)) in by_value.iter().enumerate() {
        rank[*k] = r;
    }
    let mut window_set = super::ranks::RankWindow::new(done.len());
    let (mut lo, mut hi) = (0usize, 0usize);
    (0..n_days)
        .map(|k| {
            let c = (first_day + k as i64) * MICROS_PER_DAY;
            while hi < done.len() && done[hi].0 < c - recent {
                window_set.insert(rank[hi]);
                hi += 1;
            }
            while lo < hi && done[lo].0 < c - window {
                window_set.remove(rank[lo]);
                lo += 1;
            }
            let n = window_set.len();
            let baseline_p50 = p50_days(n, |k| by_value[window_set.kth(k)].0);
            cohort_point(&sp.visits, cfg, c, n as u32, baseline_p50, &mut scratch, of)
        })
        .collect()
}

/// Up to this many days, `points_of` computes each day on its own (see there): a week, the
/// days a night on a weekly training schedule computes after its training night's. A day on
/// its own passes over the group's visits; the sliding series sorts them three times, which
/// costs about what eight such passes cost (1M shipments: a full refresh's five days after its
/// training night took 0.31 s on their own against 0.43 s sliding).
const FEW_DAYS: usize = 7;

/// The point at cutoff `c` from the group's visits in any order (`points_of` for few days).
fn point_at(visits: &[Visit], cfg: &LaneConfig, c: i64, of: Of) -> Point {
    let recent = cfg.recent_days as i64 * MICROS_PER_DAY;
    let window = cfg.window_days as i64 * MICROS_PER_DAY;
    // The baseline: dwells of completed visits that ended in [c − window, c − recent).
    let mut dwell: Vec<i64> = visits
        .iter()
        .filter(|v| v.completed && v.end >= c - window && v.end < c - recent)
        .map(|v| v.end - v.entry)
        .collect();
    let n = dwell.len();
    let baseline_p50 = if n == 0 {
        f64::NAN
    } else {
        let (left, &mut upper, _) = dwell.select_nth_unstable(n / 2);
        let lower = if n.is_multiple_of(2) { left.iter().copied().max().unwrap_or(upper) } else { upper };
        p50_days(n, |k| if k == n / 2 { upper } else { lower })
    };
    // Only visits that entered since the earliest cohort start can count: sorted, they give
    // the cohort what all the sorted visits give it (it reads differences of their counts).
    let earliest = (c - p50_micros(baseline_p50) - recent).max(c - window);
    let mut near: Vec<Visit> = visits.iter().filter(|v| v.entry >= earliest && v.entry < c).copied().collect();
    near.sort_unstable_by_key(|v| v.entry);
    cohort_point(&near, cfg, c, n as u32, baseline_p50, &mut Cohort::default(), of)
}

/// The median of `n` dwells in days, from the k-th smallest (`kth(k)`, µs): the middle one, or
/// the mean of the middle two.
fn p50_days(n: usize, mut kth: impl FnMut(usize) -> i64) -> f64 {
    match n {
        0 => f64::NAN,
        n if n % 2 == 1 => days(kth(n / 2)),
        n => (days(kth(n / 2 - 1)) + days(kth(n / 2))) / 2.0,
    }
}

/// The baseline median in µs, rounded: truncated, a whole-minute median (13 min, 780,000,000
/// µs, as 0.0090277… d) came back a microsecond short for about one in thirteen medians, and
/// every visit of exactly the median's length counted as outstaying it.
fn p50_micros(baseline_p50: f64) -> i64 {
    if baseline_p50.is_finite() { (baseline_p50 * MICROS_PER_DAY as f64).round() as i64 } else { 0 }
}

/// Whose points `points_of` computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Of {
    /// A lane's: every field is kept and published.
    Lane,
    /// A destination × service group's: only a flagged point is ever read (`Series::finish`
    /// gives it to the group's lanes), so a point that cannot be flagged whatever its cohort's
    /// median is left without one (`cohort_point`).
    Group,
}

/// Buffers a cohort is sorted in, reused from day to day.
#[derive(Default)]
struct Cohort {
    ended: Vec<i64>,
    open: Vec<i64>,
    merged: Vec<i64>,
}

/// The point at cutoff `c` given its baseline, from `visits` sorted by entry: every visit that
/// entered since the earliest cohort start `c − p50 − recent` (or the window's start), at least.
fn cohort_point(
    visits: &[Visit],
    cfg: &LaneConfig,
    c: i64,
    baseline_n: u32,
    baseline_p50: f64,
    buf: &mut Cohort,
    of: Of,
) -> Point {
    let recent = cfg.recent_days as i64 * MICROS_PER_DAY;
    let window = cfg.window_days as i64 * MICROS_PER_DAY;
    let p50_us = p50_micros(baseline_p50);
    // The cohort reaches back from c − p50 by whole days until it holds twice
    // `disruption_min_recent` parcels old enough to judge (enough for the z-test to pass when
    // all of them outstay), at most `recent_days`: busy lanes look at the last two days, quiet
    // lanes at up to a week.
    // The cohort never reaches back past the lane window, so a day's point depends on what was
    // known before its cutoff alone, not on how far back the series starts (visits that ended
    // before the window are not kept); the clamp binds only where the baseline median dwell
    // exceeds `window_days − recent_days`.
    let judged_end = visits.partition_point(|v| v.entry < c - p50_us);
    let mut from = (c - p50_us - recent).max(c - window);
    for d in MIN_COHORT_DAYS..=cfg.recent_days as i64 {
        let lo = (c - p50_us - d * MICROS_PER_DAY).max(c - window);
        let n = judged_end.saturating_sub(visits.partition_point(|v| v.entry < lo));
        if n >= 2 * cfg.disruption_min_recent as usize {
            from = lo;
            break;
        }
    }
    let a = visits.partition_point(|v| v.entry < from);
    let b = visits.partition_point(|v| v.entry < c);
    // A group's point that too few parcels support, or too few of them outstay, is never
    // flagged: it is not read, and its cohort is neither sorted nor given a median (the sorts
    // and medians of the groups' cohorts were about half the series' cohort work).
    let count_judged = || {
        let (mut known, mut outstayed) = (0u32, 0u32);
        for v in &visits[a..b] {
            if let Some(out) = judged(v, c, p50_us) {
                known += 1;
                outstayed += out as u32;
            }
        }
        (known, outstayed)
    };
    // A lane's cohort is judged in the pass below that sorts it; a group's here, once.
    let gate = (of == Of::Group).then(count_judged);
    if let Some((known, outstayed)) = gate {
        let (supported, z) = support(cfg, known, outstayed, baseline_n);
        if !(supported && z >= cfg.disruption_min_z) {
            let recent_n = (b - a) as u32;
            return Point {
                recent_p50: f64::NAN,
                baseline_p50,
                recent_n,
                known,
                baseline_n,
                ratio: 1.0,
                z,
                ..Point::default()
            };
        }
    }
    let Cohort { ended: cohort, open, merged } = buf;
    cohort.clear();
    open.clear();
    let (mut known, mut outstayed) = gate.unwrap_or((0, 0));
    for v in &visits[a..b] {
        // What was known at c: ended before c, or still in the stage.
        let ended = v.end != NONE && v.end < c;
        let (t, event) = if ended { (v.end - v.entry, v.completed) } else { (c - v.entry, false) };
        if ended {
            cohort.push(packed(t, !event))
        } else {
            open.push(packed(t, true))
        }
        if gate.is_none()
            && let Some(out) = judged(v, c, p50_us)
        {
            known += 1;
            outstayed += out as u32;
        }
    }
    let recent_n = (cohort.len() + open.len()) as u32;
    // Visits still open at c are censored at c − entry, and they come by ascending entry, so
    // reversed they are already sorted: only the ended ones need a sort, and the two runs are
    // merged (the same sorted cohort as sorting all of it).
    cohort.sort_unstable();
    open.reverse();
    merge_sorted(cohort, open, merged);
    let recent_p50 = km_median_sorted(merged).map(days).unwrap_or(f64::NAN);
    let (supported, z) = support(cfg, known, outstayed, baseline_n);
    let ratio = if supported && baseline_p50 > 0.0 { recent_p50 / baseline_p50.max(1.0 / 24.0) } else { 1.0 };
    // Final flags are set in `finish`, once the day's network-wide ratio is known.
    let disrupted = supported
        && ratio >= cfg.disruption_ratio
        && z >= cfg.disruption_min_z
        && recent_p50 - baseline_p50 >= cfg.disruption_min_increase_days;
    Point {
        recent_p50,
        baseline_p50,
        recent_n,
        known,
        baseline_n,
        ratio,
        z,
        disrupted,
        pooled: false,
        condition: false,
    }
}

/// Whether a cohort visit is judged at `c` against the baseline median `p50_us`, and if so
/// whether it outstayed it: judged once it has been in the stage for the median, unless it was
/// abandoned before.
fn judged(v: &Visit, c: i64, p50_us: i64) -> Option<bool> {
    let ended = v.end != NONE && v.end < c;
    let t = if ended { v.end - v.entry } else { c - v.entry };
    let abandoned_early = ended && !v.completed && t < p50_us;
    (p50_us > 0 && c - v.entry >= p50_us && !abandoned_early).then_some(t > p50_us)
}

/// Whether a point has support on both sides, and the z of its judged parcels outstaying.
fn support(cfg: &LaneConfig, known: u32, outstayed: u32, baseline_n: u32) -> (bool, f64) {
    let supported = enough(cfg, known, baseline_n);
    let z = if known > 0 { (outstayed as f64 - 0.5 * known as f64) / (0.5 * (known as f64).sqrt()) } else { 0.0 };
    (supported, z)
}

/// The shortest cohort window: one day would let weekday effects (closed offices) pass for
/// disruptions.
const MIN_COHORT_DAYS: i64 = 2;

/// Per lane, its points of one cutoff day at every stage.
pub type DayPoints = Vec<[Point; N_STAGES]>;

/// The series for cutoff days `first_day..=last_day`.
pub fn series(prep: &Prepared, held: &HeldVisits, cfg: &LaneConfig, first_day: i64, last_day: i64) -> Series {
    let n = (last_day - first_day + 1).max(0) as usize;
    series_with(prep, held, cfg, first_day, last_day, vec![None; n])
}

/// `series`, taking `known[k]` as the points of day `first_day + k` where given (days kept from
/// earlier nights, see `reuse`: each day's points before the two-night rule depend only on what
/// was known before its cutoff) and computing the days from the first one not given.
pub fn series_with(
    prep: &Prepared,
    held: &HeldVisits,
    cfg: &LaneConfig,
    first_day: i64,
    last_day: i64,
    known: Vec<Option<DayPoints>>,
) -> Series {
    let n_lanes = prep.lanes.len();
    let from = known.iter().position(|d| d.is_none()).map(|k| first_day + k as i64);
    let mut points: Vec<[Vec<Point>; N_STAGES]> =
        (0..n_lanes).map(|_| std::array::from_fn(|_| Vec::with_capacity(known.len()))).collect();
    for day in known.into_iter().map_while(|d| d) {
        for (lane, p) in points.iter_mut().zip(day) {
            for (s, v) in lane.iter_mut().enumerate() {
                v.push(p[s]);
            }
        }
    }
    if let Some(from) = from {
        let computed = raw_points(prep, held, cfg, from, last_day);
        for (lane, c) in points.iter_mut().zip(computed) {
            for (v, c) in lane.iter_mut().zip(c) {
                v.extend(c);
            }
        }
    }
    let mut series = Series { first_day, last_day, points };
    series.two_nights();
    series
}

/// Every lane's points for cutoff days `first_day..=last_day` before the two-night rule.
fn raw_points(
    prep: &Prepared,
    held: &HeldVisits,
    cfg: &LaneConfig,
    first_day: i64,
    last_day: i64,
) -> Vec<[Vec<Point>; N_STAGES]> {
    let raw = raw(prep, held, cfg, first_day, last_day);
    let network = raw.network_ratios(cfg).medians();
    raw.finished_points(cfg, &network)
}

/// Every lane's points and every destination × service group's for cutoff days
/// `first_day..=last_day`, before the network's ratios apply: a part of the network (a shard)
/// computes these, exchanges `Raw::network_ratios` with the other parts, and finishes
/// (`Raw::finish`).
pub fn raw(prep: &Prepared, held: &HeldVisits, cfg: &LaneConfig, first_day: i64, last_day: i64) -> Raw {
    let n_lanes = prep.lanes.len();
    let earliest = earliest(cfg, first_day);
    let n_days = (last_day - first_day + 1).max(0) as usize;

    // Lanes, and destination × service groups pooled over origins: a customs backlog hits every
    // origin, and the pooled group sees it even where each lane alone is too thin to.
    let parent = super::lanes::Hierarchy::new(&prep.lanes).keys[1].clone();
    let n_parents = parent.iter().map(|&p| p as usize + 1).max().unwrap_or(0);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_parents];
    for (l, &g) in parent.iter().enumerate() {
        members[g as usize].push(l);
    }
    // Only shipments with a visit `lane_spans` keeps: found in one parallel pass over the held
    // visits in order, so that the lanes' passes (each over its shipments, all over the held
    // visits) skip the history that ended before the series' reach. The lanes' visits are the
    // same, in the same order, however many more shipments are held.
    let kept: Vec<bool> = held.par_map(|v| has_visit_from(v, earliest));
    let mut by_lane: Vec<Vec<u32>> = vec![Vec::new(); n_lanes];
    for ((handle, i, _), _) in held.iter().zip(&kept).filter(|(_, k)| **k) {
        by_lane[prep.lane[i as usize] as usize].push(handle);
    }
    drop(kept);
    // One destination × service group at a time per thread: its lanes' visits are gathered,
    // give the lanes' points, and are then moved into the group's (the two copies never
    // coexist), which gives the pooled points. Only the groups in progress hold visits, not
    // the whole network (at 10M shipments, holding every lane's at once was 2.2 GB).
    let done: Vec<(Vec<[Vec<Point>; N_STAGES]>, [Vec<Point>; N_STAGES])> = members
        .par_iter()
        .map(|lanes| {
            let mut group: [Spans; N_STAGES] = std::array::from_fn(|_| Spans { visits: vec![] });
            let mut lane_points = Vec::with_capacity(lanes.len());
            for &l in lanes {
                let mut spans = lane_spans(&by_lane[l], held, earliest);
                lane_points.push(std::array::from_fn(|s| points_of(&mut spans[s], cfg, first_day, n_days, Of::Lane)));
                for (g, lane) in group.iter_mut().zip(spans) {
                    if g.visits.is_empty() {
                        g.visits = lane.visits;
                    } else {
                        g.visits.extend(lane.visits);
                    }
                }
            }
            // Over many days the group's visits are its lanes' runs, each sorted by entry in
            // `points_of`: a stable sort merges the runs, and `points_of` then finds them in
            // order. Over a few days `points_of` reads them in any order (`point_at` selects
            // and sorts what it needs), and sorting every visit of the group's history was most
            // of a new series day.
            let pooled = std::array::from_fn(|s| {
                if n_days > FEW_DAYS {
                    group[s].visits.sort_by_key(|v| v.entry);
                }
                points_of(&mut group[s], cfg, first_day, n_days, Of::Group)
            });
            (lane_points, pooled)
        })
        .collect();
    drop(by_lane);
    let mut points: Vec<Option<[Vec<Point>; N_STAGES]>> = (0..n_lanes).map(|_| None).collect();
    let mut pooled = Vec::with_capacity(n_parents);
    for (lanes, (lane_points, group)) in members.iter().zip(done) {
        for (&l, p) in lanes.iter().zip(lane_points) {
            points[l] = Some(p);
        }
        pooled.push(group);
    }
    let points = points.into_iter().map(|p| p.expect("every lane is in its destination × service group")).collect();
    Raw { series: Series { first_day, last_day, points }, pooled, parent }
}

/// A part's series before the network-wide ratios are known: its lanes' points and its
/// destination × service groups' (a shard holds whole groups), as `raw` gives them.
pub struct Raw {
    series: Series,
    pooled: Vec<[Vec<Point>; N_STAGES]>,
    parent: Vec<u32>,
}

impl Raw {
    /// This part's supported lanes' ratios per stage and day, for the network-wide median.
    pub fn network_ratios(&self, cfg: &LaneConfig) -> NetworkRatios {
        let n_days = (self.series.last_day - self.series.first_day + 1).max(0) as usize;
        let ratios = (0..N_STAGES)
            .map(|s| {
                (0..n_days)
                    .map(|k| {
                        self.series
                            .points
                            .iter()
                            .map(|lane| &lane[s][k])
                            .filter(|p| supported(p, cfg))
                            .map(|p| p.ratio)
                            .collect()
                    })
                    .collect()
            })
            .collect();
        NetworkRatios { first_day: self.series.first_day, last_day: self.series.last_day, ratios }
    }

    /// The points with the network's median ratios applied (`Series::finish`), before the
    /// two-night rule.
    fn finished_points(mut self, cfg: &LaneConfig, network: &NetworkMedians) -> Vec<[Vec<Point>; N_STAGES]> {
        self.series.finish(cfg, &self.pooled, &self.parent, &network.medians);
        self.series.points
    }

    /// A part's series, given every part's ratios (`NetworkRatios::medians`): each lane's
    /// points are the whole network's.
    pub fn finish(self, cfg: &LaneConfig, network: &NetworkMedians) -> crate::error::Result<Series> {
        if (network.first_day, network.last_day) != (self.series.first_day, self.series.last_day) {
            return Err(crate::error::Error::internal("disruption: network ratios of other days"));
        }
        let (first_day, last_day) = (self.series.first_day, self.series.last_day);
        let mut series = Series { first_day, last_day, points: self.finished_points(cfg, network) };
        series.two_nights();
        Ok(series)
    }
}

/// Supported lanes' ratios per stage and day (`[stage][day - first_day]`); the parts' lists
/// concatenate.
#[derive(Debug, Clone)]
pub struct NetworkRatios {
    pub first_day: i64,
    pub last_day: i64,
    ratios: Vec<Vec<Vec<f64>>>,
}
crate::codec_struct!(NetworkRatios { first_day, last_day, ratios });

impl NetworkRatios {
    /// Adds another part's ratios (of the same days).
    pub fn add(&mut self, other: NetworkRatios) -> crate::error::Result<()> {
        if (other.first_day, other.last_day) != (self.first_day, self.last_day) {
            return Err(crate::error::Error::internal("disruption: parts exchanged ratios of other days"));
        }
        for (mine, theirs) in self.ratios.iter_mut().flatten().zip(other.ratios.into_iter().flatten()) {
            mine.extend(theirs);
        }
        Ok(())
    }

    /// How many ratios the parts exchanged.
    pub fn len(&self) -> usize {
        self.ratios.iter().flatten().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Per stage and day, the median ratio over supported lanes, at least 1 (a median is an
    /// order statistic: the order the parts' ratios arrived in does not matter).
    pub fn medians(mut self) -> NetworkMedians {
        let medians = self
            .ratios
            .iter_mut()
            .map(|days| {
                days.iter_mut()
                    .map(|r| {
                        let m = median(r);
                        if m.is_finite() { m.max(1.0) } else { 1.0 }
                    })
                    .collect()
            })
            .collect();
        NetworkMedians { first_day: self.first_day, last_day: self.last_day, medians }
    }
}

/// The network-wide median ratio per stage and day (`[stage][day - first_day]`).
#[derive(Debug, Clone)]
pub struct NetworkMedians {
    pub first_day: i64,
    pub last_day: i64,
    medians: Vec<Vec<f64>>,
}
crate::codec_struct!(NetworkMedians { first_day, last_day, medians });

/// A point with enough parcels on both sides to count towards the network's median: its ratio
/// is its own (`cohort_point` sets it to 1 otherwise). By the cohort's judged parcels, as the
/// point's own flag reads it; by all of its parcels, the network's median took in the 1s of
/// cohorts whose parcels had mostly entered too recently to judge, which pulled it towards 1.
fn supported(p: &Point, cfg: &LaneConfig) -> bool {
    enough(cfg, p.known, p.baseline_n)
}

/// Enough parcels judged in the cohort and in the baseline for a ratio of their own.
fn enough(cfg: &LaneConfig, known: u32, baseline_n: u32) -> bool {
    known >= cfg.disruption_min_recent && baseline_n >= cfg.disruption_min_recent
}

impl Series {
    /// A slowdown everywhere at once (a holiday peak, say) is not a lane disruption: a group is
    /// flagged only when its ratio also stands out from the median ratio of all supported
    /// lanes for that stage and day. A lane then takes its destination group's flag (and
    /// numbers, marked `pooled`) when it has too little support of its own or leans the same way.
    fn finish(&mut self, cfg: &LaneConfig, pooled: &[[Vec<Point>; N_STAGES]], parent: &[u32], network: &[Vec<f64>]) {
        let lean = 1.0 + (cfg.disruption_ratio - 1.0) / 2.0;
        for (l, lane) in self.points.iter_mut().enumerate() {
            for (s, days) in lane.iter_mut().enumerate() {
                for (k, p) in days.iter_mut().enumerate() {
                    let net = network[s][k];
                    p.disrupted = p.disrupted && p.ratio / net >= cfg.disruption_ratio;
                    if !p.disrupted {
                        let g = &pooled[parent[l] as usize][s][k];
                        let group_flag = g.disrupted && g.ratio / net >= cfg.disruption_ratio;
                        let thin = !supported(p, cfg);
                        if group_flag && (thin || p.ratio >= lean) {
                            *p = Point { pooled: true, ..*g };
                        }
                    }
                    p.condition = p.disrupted;
                }
            }
        }
    }

    /// One night's blip is noise: a flag needs the condition on the night before too (the
    /// series' first day has no night before, and is not flagged).
    fn two_nights(&mut self) {
        for lane in &mut self.points {
            for days in lane.iter_mut() {
                let mut before = false;
                for p in days.iter_mut() {
                    p.disrupted = p.condition && before;
                    before = p.condition;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn km(obs: &[(i64, bool)]) -> Option<i64> {
        km_median(&mut obs.iter().map(|&(t, c)| packed(t, c)).collect::<Vec<_>>())
    }

    /// Regression: a median of whole minutes went from days back to µs a microsecond short
    /// (truncated), for 1,076 of the 14,400 whole-minute medians up to ten days.
    #[test]
    fn a_median_in_days_comes_back_to_its_microseconds() {
        for minutes in 1..=14_400i64 {
            let us = minutes * 60_000_000;
            assert_eq!(p50_micros(p50_days(1, |_| us)), us, "{minutes} min");
            assert_eq!(p50_micros(p50_days(2, |k| us + k as i64 * 120_000_000)), us + 60_000_000, "{minutes} min");
        }
        assert_eq!(p50_micros(f64::NAN), 0);
    }

    /// Regression: the network's median ratio took in every point with enough parcels in its
    /// cohort, also those with too few judged to have a ratio of their own (it is 1 then), and
    /// a slowdown everywhere read as lanes' disruptions once enough such lanes pulled it to 1.
    #[test]
    fn the_networks_median_reads_only_ratios_of_judged_cohorts() {
        let cfg = LaneConfig { disruption_min_recent: 3, ..LaneConfig::default() };
        let slow = Point { ratio: 2.0, recent_n: 10, known: 8, baseline_n: 10, ..Point::default() };
        // Ten parcels, one of them in the stage long enough to be judged: no ratio of its own.
        let young = Point { ratio: 1.0, recent_n: 10, known: 1, baseline_n: 10, ..Point::default() };
        let lanes = [slow, slow, young, young, young];
        let points = lanes.iter().map(|&p| std::array::from_fn(|_| vec![p])).collect();
        let raw = Raw { series: Series { first_day: 0, last_day: 0, points }, pooled: vec![], parent: vec![] };
        let ratios = raw.network_ratios(&cfg);
        assert_eq!(ratios.len(), 2 * N_STAGES);
        assert!(ratios.medians().medians.iter().all(|days| days == &[2.0]));
    }

    /// A row before the series' first day sees no point (the first day's holds what was known
    /// only later); from the first day on it sees that day's, and past the last the last.
    #[test]
    fn a_day_before_the_series_sees_no_point() {
        let days = |ratios: &[f64]| {
            ratios.iter().map(|&ratio| Point { ratio, disrupted: ratio > 2.0, ..Default::default() }).collect()
        };
        let points: [Vec<Point>; N_STAGES] = std::array::from_fn(|_| days(&[2.5, 1.0, 3.0]));
        let series = Series { first_day: 100, last_day: 102, points: vec![points] };
        assert!(series.seen_at(0, 1, 99).is_none());
        assert_eq!(series.seen_at(0, 1, 100).map(|p| p.ratio), Some(2.5));
        assert_eq!(series.seen_at(0, 1, 101).map(|p| p.ratio), Some(1.0));
        assert_eq!(series.seen_at(0, 1, 140).map(|p| p.ratio), Some(3.0));
    }

    #[test]
    fn a_day_computed_on_its_own_is_the_day_of_the_sliding_series() {
        let mut rng = crate::TestRng::new(3);
        let mut next = |m: i64| (rng.next() as i64).rem_euclid(m);
        let hour = MICROS_PER_DAY / 24;
        let bits = |p: &Point| {
            let f = |x: f64| if x.is_nan() { u64::MAX } else { x.to_bits() };
            (f(p.recent_p50), f(p.baseline_p50), p.recent_n, p.known, p.baseline_n, f(p.ratio), f(p.z), p.disrupted)
        };
        let (mut supported, mut flagged, mut skipped) = (0, 0, 0);
        for case in 0..120 {
            let cfg = LaneConfig {
                window_days: 10 + next(30) as u32,
                recent_days: 2 + next(6) as u32,
                disruption_min_recent: 1 + next(6) as u32,
                ..LaneConfig::default()
            };
            let first_day = 20_000;
            let start = (first_day - 60) * MICROS_PER_DAY;
            // Visits entering over 80 days, in hours (ties), dwelling up to a week: completed,
            // abandoned (a return) or still open; a slow stretch in some cases.
            let visits: Vec<Visit> = (0..next(400))
                .map(|_| {
                    let entry = start + next(80 * 24) * hour;
                    let slow = if case % 3 == 0 && entry > (first_day + 5) * MICROS_PER_DAY { 4 } else { 1 };
                    let end = entry + next(7 * 24 * slow) * hour;
                    match next(10) {
                        0 => Visit { entry, end: NONE, completed: false },
                        1 => Visit { entry, end, completed: false },
                        _ => Visit { entry, end, completed: true },
                    }
                })
                .collect();
            let n_days = 15;
            let sliding = points_of(&mut Spans { visits: visits.clone() }, &cfg, first_day, n_days, Of::Lane);
            for (k, want) in sliding.iter().enumerate() {
                supported += (want.ratio != 1.0) as u32;
                flagged += want.disrupted as u32;
                let got = point_at(&visits, &cfg, (first_day + k as i64) * MICROS_PER_DAY, Of::Lane);
                assert_eq!(bits(&got), bits(want), "case {case}, day {k}: {got:?} vs {want:?}");
            }
            let few = points_of(&mut Spans { visits: visits.clone() }, &cfg, first_day + 4, FEW_DAYS, Of::Lane);
            assert!(few.iter().zip(&sliding[4..]).all(|(a, b)| bits(a) == bits(b)), "case {case}");
            // A group's points, which only a flag makes read, are flagged as a lane's are and,
            // flagged, are a lane's; sliding and day by day.
            for group in [
                points_of(&mut Spans { visits: visits.clone() }, &cfg, first_day, n_days, Of::Group),
                (0..n_days)
                    .map(|k| point_at(&visits, &cfg, (first_day + k as i64) * MICROS_PER_DAY, Of::Group))
                    .collect(),
            ] {
                for (k, (g, l)) in group.iter().zip(&sliding).enumerate() {
                    assert_eq!(g.disrupted, l.disrupted, "case {case}, day {k}: {g:?} vs {l:?}");
                    assert!(!g.disrupted || bits(g) == bits(l), "case {case}, day {k}: {g:?} vs {l:?}");
                    skipped += (g.recent_p50.is_nan() && !l.recent_p50.is_nan()) as u32;
                }
            }
            // The visits are sorted by one key each (entry, exit, dwell): equal keys (the hours
            // here tie often) come in the order the visits came, which must not matter.
            let mut reversed = visits.clone();
            reversed.reverse();
            let other = points_of(&mut Spans { visits: reversed }, &cfg, first_day, n_days, Of::Lane);
            assert!(other.iter().zip(&sliding).all(|(a, b)| bits(a) == bits(b)), "case {case}: visits reversed");
        }
        // The cases reach supported ratios and flags, not only empty points.
        assert!(supported > 200 && flagged > 10, "{supported} supported, {flagged} flagged");
        // And groups' points that no flag reads, left without a median.
        assert!(skipped > 100, "{skipped} groups' medians skipped");
    }

    /// A visit as any night after its entry sees it at cutoff `c` is the visit built from what
    /// was known before `c`: a loss during a stage ends it there even when a later scan shows
    /// an exit, so a series day is the same whichever later night computes it.
    #[test]
    fn a_visit_seen_at_a_cutoff_is_the_visit_known_before_it() {
        let mut rng = crate::TestRng::new(5);
        let mut next = |m: i64| (rng.next() as i64).rem_euclid(m);
        let seen = |v: Visit, c: i64| (v.end != NONE && v.end < c).then_some((v.end, v.completed));
        let known = |t: i64, c: i64| if t != NONE && t < c { t } else { NONE };
        let mut lost_then_scanned = 0;
        for _ in 0..20_000 {
            let entry = next(50);
            let exit = if next(4) == 0 { NONE } else { entry + next(30) };
            let abandoned = if next(2) == 0 { NONE } else { next(90) };
            lost_then_scanned += (abandoned != NONE && exit != NONE && entry <= abandoned && abandoned < exit) as u32;
            let later = visit(entry, exit, abandoned);
            for c in entry + 1..100 {
                let then = visit(entry, known(exit, c), known(abandoned, c));
                assert_eq!(seen(later, c), seen(then, c), "entry {entry}, exit {exit}, lost {abandoned}, cutoff {c}");
            }
        }
        assert!(lost_then_scanned > 1000, "{lost_then_scanned}");
        // A visit that exits first completes; one lost in the stage ends there, censored.
        assert!(visit(10, 20, 30).completed && visit(10, 20, 30).end == 20);
        assert_eq!((visit(10, 20, 15).end, visit(10, 20, 15).completed), (15, false));
        assert_eq!((visit(10, NONE, NONE).end, visit(10, 20, 5).end), (NONE, 20));
    }

    #[test]
    fn merging_two_sorted_runs_sorts_their_union() {
        let mut rng = crate::TestRng::new(7);
        let mut next = || rng.next() as i64 % 50 - 10;
        for n in 0..200usize {
            let mut a: Vec<i64> = (0..n % 17).map(|_| next()).collect();
            let mut b: Vec<i64> = (0..n % 11).map(|_| next()).collect();
            a.sort_unstable();
            b.sort_unstable();
            let mut want: Vec<i64> = a.iter().chain(&b).copied().collect();
            want.sort_unstable();
            let mut got = vec![99];
            merge_sorted(&a, &b, &mut got);
            assert_eq!(got, want, "{a:?} {b:?}");
        }
    }

    #[test]
    fn km_median_without_censoring_is_the_lower_median() {
        // (time, censored)
        let obs: Vec<(i64, bool)> = [3, 1, 2, 4].iter().map(|&t| (t, false)).collect();
        assert_eq!(km(&obs), Some(2));
    }

    #[test]
    fn km_median_uses_censored_parcels() {
        // Two left after 1 day; six still in the stage after 5 days: the median exceeds 5.
        let obs = [(1, false), (1, false), (5, true), (5, true), (5, true), (5, true), (5, true), (5, true)];
        assert_eq!(km(&obs), Some(5));
        // A parcel censored at 1 leaves the risk set without counting as an event.
        let obs = [(1, true), (2, false), (4, false), (6, false)];
        assert_eq!(km(&obs), Some(4));
        // Negative times (a return scanned before the stage's entry) unpack as they went in.
        assert_eq!(km(&[(-3, false), (-2, false), (5, false)]), Some(-2));
        assert_eq!(km(&[(-3, false), (-1, true), (2, false)]), Some(2));
        assert_eq!(km(&[(-5, true), (-5, false), (-2, false)]), Some(-2));
    }

    #[test]
    fn median_matches_sorted_definition() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }
}
