//! Seller and lane history as seen at the snapshot time t: late rates over shipments resolved
//! in the trailing window before t, and the seller's handling times over pickups before t,
//! smoothed towards the network's rates at t.
//!
//! A training snapshot is always taken before its own shipment resolves, so its own label can
//! never enter these rates; the shipment's own handling time is left out as well
//! (leave-one-out). Rates computed as of the cutoff with only the own row removed would not do:
//! a leave-one-out rate is lower exactly when the row is late, which a tree learns within a
//! small lane or seller (target leakage).

use super::prepare::Prepared;
use super::timeline::Outcome;
use super::timeline::{CutoffStates, NONE};
use crate::config::LaneConfig;
use crate::schema::{MICROS_PER_DAY, days};

/// Time-ordered observations with prefix sums, for sums over any time window.
#[derive(Debug, Clone, Default)]
struct Track {
    t: Vec<i64>,
    /// cum[k] = sum of the first k values.
    cum: Vec<f64>,
}

impl Track {
    fn from(mut obs: Vec<(i64, f64)>) -> Track {
        obs.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let mut cum = Vec::with_capacity(obs.len() + 1);
        cum.push(0.0);
        let mut acc = 0.0;
        for (_, v) in &obs {
            acc += v;
            cum.push(acc);
        }
        Track { t: obs.into_iter().map(|o| o.0).collect(), cum }
    }

    /// (count, sum) of observations with time in [from, to).
    #[cfg(test)]
    fn window(&self, from: i64, to: i64) -> (f64, f64) {
        let a = self.t.partition_point(|&x| x < from);
        let b = self.t.partition_point(|&x| x < to);
        ((b - a) as f64, self.cum[b] - self.cum[a])
    }

    /// The window's start, and (count, sum), for observations before `to`: from `to − window`,
    /// reaching back until `need` observations are inside, but not before `oldest`.
    fn adaptive(&self, to: i64, window: i64, oldest: i64, need: usize) -> (i64, f64, f64) {
        let b = self.t.partition_point(|&x| x < to);
        let a = self.t.partition_point(|&x| x < to - window);
        let a = if b - a >= need { a } else { b.saturating_sub(need).max(self.t.partition_point(|&x| x < oldest)) };
        let from = if a < b { self.t[a].min(to - window) } else { to - window };
        (from, (b - a) as f64, self.cum[b] - self.cum[a])
    }
}

/// `Default` is a history with no observations (what `FeatureSet::release_row_sources` leaves).
#[derive(Default)]
pub struct History {
    window: i64,
    /// Adaptive windows reach back at most this far, until `need` observations are inside.
    max_window: i64,
    need: usize,
    prior_strength: f64,
    /// Per seller: (resolved_at, late) and (picked_up_at, handling days).
    seller_late: Vec<Track>,
    seller_handling: Vec<Track>,
    lane_late: Vec<Track>,
    global_late: Track,
    global_handling: Track,
    own_picked: Vec<i64>,
    own_handling: Vec<f64>,
    own_resolved: Vec<i64>,
    own_late: Vec<bool>,
}

/// Smoothed history of one shipment's seller and lane at one time.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub seller_handling_days: f64,
    pub seller_late_rate: f64,
    pub seller_shipments: f64,
    pub lane_late_rate: f64,
}

impl History {
    /// `outcomes` are the outcomes as of the cutoff; passing them in makes the label-independence
    /// of features testable by flipping one.
    pub fn build(
        prep: &Prepared,
        states: &CutoffStates,
        outcomes: &[Outcome],
        cfg: &LaneConfig,
        prior_strength: f64,
    ) -> History {
        let n = prep.len();
        let mut seller_late: Vec<Vec<(i64, f64)>> = vec![vec![]; prep.n_sellers];
        let mut seller_handling: Vec<Vec<(i64, f64)>> = vec![vec![]; prep.n_sellers];
        let mut lane_late: Vec<Vec<(i64, f64)>> = vec![vec![]; prep.lanes.len()];
        let (mut g_late, mut g_handling) = (Vec::new(), Vec::new());
        let mut own_picked = vec![NONE; n];
        let mut own_handling = vec![0.0; n];
        let mut own_resolved = vec![NONE; n];
        let mut own_late = vec![false; n];
        for i in 0..n {
            let (s, l) = (prep.seller[i] as usize, prep.lane[i] as usize);
            let picked = states.picked_up(i);
            if picked != NONE && picked >= prep.created[i] {
                let h = days(picked - prep.created[i]);
                seller_handling[s].push((picked, h));
                g_handling.push((picked, h));
                own_picked[i] = picked;
                own_handling[i] = h;
            }
            let o = &outcomes[i];
            if o.resolved {
                let y = o.late as u8 as f64;
                seller_late[s].push((o.resolved_at, y));
                lane_late[l].push((o.resolved_at, y));
                g_late.push((o.resolved_at, y));
                own_resolved[i] = o.resolved_at;
                own_late[i] = o.late;
            }
        }
        History {
            window: cfg.window_days as i64 * MICROS_PER_DAY,
            max_window: cfg.oldest_days() as i64 * MICROS_PER_DAY,
            need: cfg.min_support as usize,
            prior_strength,
            seller_late: seller_late.into_iter().map(Track::from).collect(),
            seller_handling: seller_handling.into_iter().map(Track::from).collect(),
            lane_late: lane_late.into_iter().map(Track::from).collect(),
            global_late: Track::from(g_late),
            global_handling: Track::from(g_handling),
            own_picked,
            own_handling,
            own_resolved,
            own_late,
        }
    }

    /// History of shipment `i` (of `seller` on `lane`) as known just before time `t`. Each
    /// rate covers `lanes.window_days` before t, or more for a seller or lane with fewer than
    /// `lanes.min_support` observations there (up to `lanes.max_window_days`), so a sparse
    /// business is measured on its own history rather than on the prior alone. Unknown (NaN)
    /// when the network itself has no observation.
    pub fn seen(&self, i: usize, seller: usize, lane: usize, t: i64) -> Seen {
        let k = self.prior_strength;
        let oldest = t - self.max_window;
        let adaptive = |tr: &Track| tr.adaptive(t, self.window, oldest, self.need);
        // The shipment's own contributions, removed where they fall inside a window.
        let own = |from: i64, x: i64, v: f64| if x != NONE && x >= from && x < t { (1.0, v) } else { (0.0, 0.0) };
        let handling = |from: i64| own(from, self.own_picked[i], self.own_handling[i]);
        let resolved = |from: i64| own(from, self.own_resolved[i], self.own_late[i] as u8 as f64);

        let (from, gn, gs) = adaptive(&self.global_handling);
        let (h_n, h_sum) = handling(from);
        let g_handling = if gn - h_n > 0.0 { (gs - h_sum) / (gn - h_n) } else { f64::NAN };
        let (from, gn, gs) = adaptive(&self.global_late);
        let (r_n, r_sum) = resolved(from);
        let g_late = if gn - r_n > 0.0 { (gs - r_sum) / (gn - r_n) } else { f64::NAN };

        let (from, sn, ss) = adaptive(&self.seller_handling[seller]);
        let (h_n, h_sum) = handling(from);
        let (sn, ss) = (sn - h_n, ss - h_sum);
        let seller_handling_days = (ss + k * g_handling) / (sn + k).max(1e-9);
        let (from, rn, rs) = adaptive(&self.seller_late[seller]);
        let (r_n, r_sum) = resolved(from);
        let (rn, rs) = (rn - r_n, rs - r_sum);
        let seller_late_rate = (rs + k * g_late) / (rn + k).max(1e-9);
        let (from, ln, ls) = adaptive(&self.lane_late[lane]);
        let (r_n, r_sum) = resolved(from);
        let (ln, ls) = (ln - r_n, ls - r_sum);
        let lane_late_rate = (ls + k * g_late) / (ln + k).max(1e-9);
        Seen { seller_handling_days, seller_late_rate, seller_shipments: rn.max(0.0), lane_late_rate }
    }
}

#[cfg(test)]
mod tests {
    use super::Track;

    #[test]
    fn track_windows_are_half_open() {
        let t = Track::from(vec![(5, 1.0), (1, 2.0), (3, 4.0)]);
        assert_eq!(t.window(1, 5), (2.0, 6.0));
        assert_eq!(t.window(2, 6), (2.0, 5.0));
        assert_eq!(t.window(6, 9), (0.0, 0.0));
    }

    #[test]
    fn adaptive_windows_reach_back_for_enough_observations() {
        let t = Track::from((0..10).map(|k| (k * 10, 1.0)).collect());
        // Window 15 before 100 holds 2 (80, 90); 4 are needed: back to 60.
        assert_eq!(t.adaptive(100, 15, 0, 4), (60, 4.0, 4.0));
        // Enough already: the plain window.
        assert_eq!(t.adaptive(100, 35, 0, 3), (65, 3.0, 3.0));
        // Never before `oldest`.
        assert_eq!(t.adaptive(100, 15, 75, 4), (80, 2.0, 2.0));
        // Nothing before t at all.
        assert_eq!(t.adaptive(0, 15, -100, 4), (-15, 0.0, 0.0));
    }
}
