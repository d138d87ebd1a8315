//! Recent versus baseline stage dwell per lane, for every nightly cutoff in a range of days.
//!
//! At cutoff c, for one lane and stage:
//! - recent: dwells of stage visits that ended in [c − recent, c), plus the open dwell (c − entry)
//!   of parcels that entered in [c − 2·recent, c) and had not left by c. Open parcels matter:
//!   in a customs backlog few parcels leave, so completed dwells alone see it late.
//! - baseline: dwells of visits that ended in [c − window, c − recent).
//!
//! Only facts known before c are used, so the series for a past day is what that night's run saw.

use rayon::prelude::*;

use super::prepare::Prepared;
use super::timeline::{NONE, State, stage_spans};
use crate::config::LaneConfig;
use crate::schema::{MICROS_PER_DAY, N_STAGES, days};

#[derive(Debug, Clone, Copy, Default)]
pub struct Point {
    pub recent_p50: f64,
    pub baseline_p50: f64,
    pub recent_n: u32,
    pub baseline_n: u32,
    /// recent / baseline, or 1 when either side lacks support.
    pub ratio: f64,
    pub disrupted: bool,
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

struct Spans {
    /// (exit, dwell) of completed visits, sorted by exit.
    done: Vec<(i64, i64)>,
    /// (entry, exit or abandonment, NONE while open) of all visits, sorted by entry.
    by_entry: Vec<(i64, i64)>,
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

pub fn series(
    prep: &Prepared,
    states: &[State],
    cfg: &LaneConfig,
    first_day: i64,
    last_day: i64,
) -> Series {
    let n_lanes = prep.lanes.len();
    let recent = cfg.recent_days as i64 * MICROS_PER_DAY;
    let window = cfg.window_days as i64 * MICROS_PER_DAY;
    let earliest = first_day * MICROS_PER_DAY - window - recent;

    let mut spans: Vec<[Spans; N_STAGES]> = (0..n_lanes)
        .map(|_| {
            std::array::from_fn(|_| Spans {
                done: vec![],
                by_entry: vec![],
            })
        })
        .collect();
    for (i, st) in states.iter().enumerate() {
        // A returned or lost parcel's last stage never ends, so it gives no completed dwell; until
        // the return was scanned it looked like any open parcel, and counts as one.
        let abandoned = st.returned_or_lost;
        let lane = prep.lane[i] as usize;
        for (s, entry, exit) in stage_spans(st) {
            if exit != NONE && exit < earliest {
                continue;
            }
            if exit != NONE {
                spans[lane][s].done.push((exit, exit - entry));
            }
            let end = if exit != NONE { exit } else { abandoned };
            spans[lane][s].by_entry.push((entry, end));
        }
    }

    let n_days = (last_day - first_day + 1).max(0) as usize;
    let points = spans
        .into_par_iter()
        .map(|mut per_stage| {
            std::array::from_fn(|s| {
                let sp = &mut per_stage[s];
                sp.done.sort_unstable();
                sp.by_entry.sort_unstable();
                let mut buf: Vec<f64> = Vec::new();
                (0..n_days)
                    .map(|k| {
                        let c = (first_day + k as i64) * MICROS_PER_DAY;
                        let range = |lo: i64, hi: i64| {
                            let a = sp.done.partition_point(|x| x.0 < lo);
                            let b = sp.done.partition_point(|x| x.0 < hi);
                            &sp.done[a..b]
                        };
                        buf.clear();
                        buf.extend(range(c - window, c - recent).iter().map(|x| days(x.1)));
                        let baseline_n = buf.len() as u32;
                        let baseline_p50 = median(&mut buf);
                        buf.clear();
                        buf.extend(range(c - recent, c).iter().map(|x| days(x.1)));
                        let a = sp.by_entry.partition_point(|x| x.0 < c - 2 * recent);
                        let b = sp.by_entry.partition_point(|x| x.0 < c);
                        buf.extend(
                            sp.by_entry[a..b]
                                .iter()
                                .filter(|x| x.1 == NONE || x.1 >= c)
                                .map(|x| days(c - x.0)),
                        );
                        let recent_n = buf.len() as u32;
                        let recent_p50 = median(&mut buf);
                        let supported = recent_n >= cfg.disruption_min_recent
                            && baseline_n >= cfg.disruption_min_recent;
                        let ratio = if supported && baseline_p50 > 0.0 {
                            recent_p50 / baseline_p50.max(1.0 / 24.0)
                        } else {
                            1.0
                        };
                        let disrupted = supported
                            && ratio >= cfg.disruption_ratio
                            && recent_p50 - baseline_p50 >= cfg.disruption_min_increase_days;
                        Point {
                            recent_p50,
                            baseline_p50,
                            recent_n,
                            baseline_n,
                            ratio,
                            disrupted,
                        }
                    })
                    .collect()
            })
        })
        .collect();
    Series {
        first_day,
        last_day,
        points,
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_matches_sorted_definition() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }
}
