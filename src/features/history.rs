//! Seller and lane history as of the cutoff, leave-one-out: a shipment's own handling time and
//! label are subtracted before its features are computed, so a training row never sees them.

use super::lanes::{Outcome, in_window};
use super::prepare::Prepared;
use super::timeline::{NONE, State};
use crate::config::LaneConfig;
use crate::schema::{MICROS_PER_DAY, days};

#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    handling_sum: f64,
    handling_n: u32,
    late: u32,
    resolved: u32,
}

pub struct History {
    seller: Vec<Sums>,
    lane: Vec<Sums>,
    global: Sums,
    /// Per shipment: its own contribution, subtracted for leave-one-out.
    own_handling: Vec<f64>,
    own_resolved: Vec<bool>,
    own_late: Vec<bool>,
    prior_strength: f64,
}

/// Smoothed leave-one-out history of one shipment's seller and lane.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub seller_handling_days: f64,
    pub seller_late_rate: f64,
    pub seller_shipments: f64,
    pub lane_late_rate: f64,
}

impl History {
    /// `labels` are the outcomes at the cutoff; passing them in makes the leave-one-out
    /// property testable by flipping one label.
    pub fn build(
        prep: &Prepared,
        states: &[State],
        outcomes: &[Outcome],
        cfg: &LaneConfig,
        prior_strength: f64,
    ) -> History {
        let cutoff = prep.cutoff;
        let since = cutoff - cfg.window_days as i64 * MICROS_PER_DAY;
        let mut seller = vec![Sums::default(); prep.n_sellers];
        let mut lane = vec![Sums::default(); prep.lanes.len()];
        let mut global = Sums::default();
        let n = prep.len();
        let mut own_handling = vec![f64::NAN; n];
        let mut own_resolved = vec![false; n];
        let mut own_late = vec![false; n];
        for i in 0..n {
            let st = &states[i];
            let picked = st.first[1];
            let (s, l) = (prep.seller[i] as usize, prep.lane[i] as usize);
            if picked != NONE && picked >= since && picked >= prep.created[i] {
                let h = days(picked - prep.created[i]);
                own_handling[i] = h;
                for acc in [&mut seller[s], &mut global] {
                    acc.handling_sum += h;
                    acc.handling_n += 1;
                }
            }
            let o = &outcomes[i];
            if in_window(o, cutoff, cfg) {
                own_resolved[i] = true;
                own_late[i] = o.late;
                for acc in [&mut seller[s], &mut lane[l], &mut global] {
                    acc.resolved += 1;
                    acc.late += o.late as u32;
                }
            }
        }
        History {
            seller,
            lane,
            global,
            own_handling,
            own_resolved,
            own_late,
            prior_strength,
        }
    }

    pub fn seen(&self, i: usize, seller: usize, lane: usize) -> Seen {
        let k = self.prior_strength;
        let h_own = self.own_handling[i];
        let (h_sub, h_n) = if h_own.is_finite() {
            (h_own, 1.0)
        } else {
            (0.0, 0.0)
        };
        let (l_sub, r_sub) = if self.own_resolved[i] {
            (self.own_late[i] as u32 as f64, 1.0)
        } else {
            (0.0, 0.0)
        };

        let g = &self.global;
        let g_handling = if g.handling_n as f64 - h_n > 0.0 {
            (g.handling_sum - h_sub) / (g.handling_n as f64 - h_n)
        } else {
            1.0
        };
        let g_late = if g.resolved as f64 - r_sub > 0.0 {
            (g.late as f64 - l_sub) / (g.resolved as f64 - r_sub)
        } else {
            0.1
        };

        let s = &self.seller[seller];
        let sn = s.handling_n as f64 - h_n;
        let seller_handling_days = (s.handling_sum - h_sub + k * g_handling) / (sn + k).max(1e-9);
        let sr = s.resolved as f64 - r_sub;
        let seller_late_rate = (s.late as f64 - l_sub + k * g_late) / (sr + k).max(1e-9);
        let l = &self.lane[lane];
        let lr = l.resolved as f64 - r_sub;
        let lane_late_rate = (l.late as f64 - l_sub + k * g_late) / (lr + k).max(1e-9);
        Seen {
            seller_handling_days,
            seller_late_rate,
            seller_shipments: sr.max(0.0),
            lane_late_rate,
        }
    }
}
