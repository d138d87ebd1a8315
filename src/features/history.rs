//! Seller and lane history as seen at the snapshot time t: late rates over shipments resolved
//! in the trailing window before t, and the seller's handling times over pickups before t,
//! smoothed towards the network's rates at t.
//!
//! A training snapshot is always taken before its own shipment resolves, so its own label can
//! never enter these rates; the shipment's own handling time is left out as well
//! (leave-one-out). Rates computed as of the cutoff with only the own row removed would not do:
//! a leave-one-out rate is lower exactly when the row is late, which a tree learns within a
//! small lane or seller (target leakage).

use std::cmp::Ordering;

use rayon::prelude::*;

use super::prepare::Prepared;
use super::timeline::Outcome;
use super::timeline::{CutoffStates, NONE};
use crate::config::LaneConfig;
use crate::schema::{MICROS_PER_DAY, days};

/// A value observed over time whose prefix sums give window sums. Late flags are counted in
/// `u32` (a window's count of late rows is the same integer an `f64` running sum of 0s and 1s
/// gives, at half the memory); handling times are summed in integer microseconds, so a
/// window's sum is exact and the same in any order: parts of the network that each hold some
/// of a seller's shipments give, added, the sum of the whole.
trait Value: Copy + Send + Sync {
    const ZERO: Self;
    fn plus(self, other: Self) -> Self;
    /// `hi − lo` of two prefix sums: a count of late rows, or microseconds.
    fn diff(hi: Self, lo: Self) -> i64;
    fn order(&self, other: &Self) -> Ordering;
}

/// Microseconds. A track's running sum may pass `i64::MAX` (the network's, past about 10⁸
/// shipments at a day of handling each): it wraps, and a window's sum, the difference of two
/// running sums, is still exact while the window's own sum fits.
impl Value for i64 {
    const ZERO: i64 = 0;
    fn plus(self, other: i64) -> i64 {
        self.wrapping_add(other)
    }
    fn diff(hi: i64, lo: i64) -> i64 {
        hi.wrapping_sub(lo)
    }
    fn order(&self, other: &i64) -> Ordering {
        self.cmp(other)
    }
}

impl Value for u32 {
    const ZERO: u32 = 0;
    fn plus(self, other: u32) -> u32 {
        self + other
    }
    fn diff(hi: u32, lo: u32) -> i64 {
        (hi - lo) as i64
    }
    fn order(&self, other: &u32) -> Ordering {
        self.cmp(other)
    }
}

/// The observations of many groups (sellers, lanes, or one group for the network), each group's
/// ordered by (time, value) with prefix sums, in three flat arrays: a `Vec` per group cost a
/// header and up to half its capacity again for each of a million sellers.
#[derive(Debug, Clone, Default)]
struct Tracks<V> {
    /// Group g's observations are `t[start[g]..start[g + 1]]`.
    start: Vec<usize>,
    t: Vec<i64>,
    /// Group g's prefix sums are `cum[start[g] + g..=start[g + 1] + g]`: a leading zero, then the
    /// sum of its first k values at k.
    cum: Vec<V>,
}

/// One group's observations, as `Tracks::group` gives them.
struct Track<'a, V> {
    t: &'a [i64],
    cum: &'a [V],
}

impl<V: Value> Tracks<V> {
    /// Tracks of `groups` groups from `obs(i)` for i in 0..n: the group, time and value of item
    /// i's observation, if it has one.
    fn build(groups: usize, n: usize, obs: impl Fn(usize) -> Option<(usize, i64, V)>) -> Tracks<V> {
        // Each group sorted on its own (by time, then value: the order decides the prefix sums
        // a count-based window boundary falls between). Equal (time, value) pairs are alike.
        let (start, pairs) = super::grouped::sorted_by_group(
            groups,
            n,
            |i| obs(i).map(|(g, t, v)| (g, (t, v))),
            |a: &(i64, V), b: &(i64, V)| a.0.cmp(&b.0).then(a.1.order(&b.1)),
        );
        let mut cum = Vec::with_capacity(pairs.len() + groups);
        for g in 0..groups {
            let mut acc = V::ZERO;
            cum.push(acc);
            for &(_, v) in &pairs[start[g]..start[g + 1]] {
                acc = acc.plus(v);
                cum.push(acc);
            }
        }
        let t = pairs.iter().map(|p| p.0).collect();
        Tracks { start, t, cum }
    }

    fn group(&self, g: usize) -> Track<'_, V> {
        let (a, b) = (self.start[g], self.start[g + 1]);
        Track { t: &self.t[a..b], cum: &self.cum[a + g..=b + g] }
    }
}

impl<V: Value> Track<'_, V> {
    /// (count, sum) of observations with time in [from, to).
    #[cfg(test)]
    fn window(&self, from: i64, to: i64) -> (f64, i64) {
        let a = self.t.partition_point(|&x| x < from);
        let b = self.t.partition_point(|&x| x < to);
        ((b - a) as f64, V::diff(self.cum[b], self.cum[a]))
    }

    /// The window's start, and (count, sum), for observations before `to`: from `to − window`,
    /// reaching back until `need` observations are inside, but not before `oldest`.
    fn adaptive(&self, to: i64, window: i64, oldest: i64, need: usize) -> Window {
        let b = self.t.partition_point(|&x| x < to);
        let a = self.t.partition_point(|&x| x < to - window);
        let a = if b - a >= need { a } else { b.saturating_sub(need).max(self.t.partition_point(|&x| x < oldest)) };
        let from = if a < b { self.t[a].min(to - window) } else { to - window };
        (from, (b - a) as f64, V::diff(self.cum[b], self.cum[a]))
    }

    /// This track's share of the window `adaptive` takes before `to` on a track of which it
    /// holds some observations (a seller's shipments on one part of the network).
    fn part(&self, to: i64, window: i64, oldest: i64, need: usize) -> WindowPart {
        let b = self.t.partition_point(|&x| x < to);
        let a = self.t.partition_point(|&x| x < to - window);
        // With `need` in the plain window here, the whole track has them too: nothing before.
        let from = if b - a >= need { b } else { b.saturating_sub(need).max(self.t.partition_point(|&x| x < oldest)) };
        let recent = (from..b).map(|k| (self.t[k], V::diff(self.cum[k + 1], self.cum[k]))).collect();
        WindowPart { count: (b - a) as u64, sum: V::diff(self.cum[b], self.cum[a]), recent }
    }
}

/// One part's share of a track's window before some time (`Track::part`): how many of its
/// observations fall in the plain window and their exact sum, and, when they are fewer than the
/// window needs, its last `need` observations (time, value) since the oldest time a window
/// reaches. Added over the parts (`merge_window`), these give the window of the whole track:
/// counts and integer sums add, and the observations a sparse window reaches back for are the
/// latest `need` of every part's latest `need`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowPart {
    pub count: u64,
    pub sum: i64,
    pub recent: Vec<(i64, i64)>,
}
crate::codec_struct!(WindowPart { count, sum, recent });

impl WindowPart {
    /// Adds another part's share of the same window, so that parts merge one at a time (a
    /// merge then holds one share, not every part's): counts and sums add, and of the
    /// observations a sparse window reaches back for the latest `need` are kept, all that
    /// `merge_window` reads of them.
    fn absorb(&mut self, other: WindowPart, need: usize) {
        self.count += other.count;
        self.sum += other.sum;
        if self.count >= need as u64 {
            // The plain window has enough: `merge_window` reads no observation.
            self.recent = Vec::new();
            return;
        }
        if other.recent.is_empty() {
            return;
        }
        self.recent.extend(other.recent);
        self.recent.sort_unstable();
        let stale = self.recent.len().saturating_sub(need);
        self.recent.drain(..stale);
    }
}

/// The window of a whole track before `to` from every part's share: what `Track::adaptive`
/// gives on the track of all the parts' observations.
fn merge_window(parts: &[&WindowPart], to: i64, window: i64, need: usize) -> Window {
    let count: u64 = parts.iter().map(|p| p.count).sum();
    if count >= need as u64 {
        return (to - window, count as f64, parts.iter().map(|p| p.sum).sum());
    }
    // Fewer than `need` in the plain window: the latest `need` observations since the oldest
    // time, ordered as a track orders them (time, then value).
    let mut recent: Vec<(i64, i64)> = parts.iter().flat_map(|p| p.recent.iter().copied()).collect();
    recent.sort_unstable();
    let recent = &recent[recent.len().saturating_sub(need)..];
    let from = recent.first().map_or(to - window, |r| r.0.min(to - window));
    (from, recent.len() as f64, recent.iter().map(|r| r.1).sum())
}

/// A track's window before some time: where it starts, its observations and their exact sum
/// (late rows, or microseconds of handling), as `Track::adaptive` gives it.
type Window = (i64, f64, i64);

/// Every group's window before `to` as `Track::adaptive` gives it on the group's track, taken
/// straight from the observations, with no track, for K kinds of observation at once (kind k's
/// groups are `groups[k]`; `obs(i)[k]` is shipment i's (group, time, value) of kind k): one pass
/// counts and sums each group's plain window, and a second gathers, for the groups with fewer
/// than `need` there, their older observations since `oldest`, of which the latest (by time,
/// then value, as a track orders them) complete the window. Sums wrap as a track's prefix sums
/// do, so they are the same integers. The kinds share the two passes: taken one kind at a time,
/// each kind's pair read every shipment again (ten passes for a night's five kinds).
fn windows_before_all<const K: usize>(
    groups: [usize; K],
    n: usize,
    obs: impl Fn(usize) -> [Option<(usize, i64, i64)>; K] + Sync,
    to: i64,
    window: i64,
    oldest: i64,
    need: usize,
) -> [Vec<Window>; K] {
    let start = to - window;
    let empty = || groups.map(|g| vec![(0u64, 0i64); g]);
    let add = |mut a: [Vec<(u64, i64)>; K], b: [Vec<(u64, i64)>; K]| {
        for (a, b) in a.iter_mut().zip(b) {
            a.iter_mut().zip(b).for_each(|(x, y)| *x = (x.0 + y.0, x.1.wrapping_add(y.1)));
        }
        a
    };
    let plain = (0..n)
        .into_par_iter()
        .with_min_len(1 << 14)
        .fold(empty, |mut acc, i| {
            for (acc, o) in acc.iter_mut().zip(obs(i)) {
                if let Some((g, _, v)) = o.filter(|&(_, t, _)| t >= start && t < to) {
                    acc[g] = (acc[g].0 + 1, acc[g].1.wrapping_add(v));
                }
            }
            acc
        })
        .reduce(empty, add);
    // A track reaches back from `to` for its latest `need` observations, no further than
    // `oldest`; the plain window's are among them (it reaches back only when they are fewer).
    // The sparse groups' older observations are gathered by group (a counting sort: kind k's
    // groups are numbered after the earlier kinds'), and of each group's the latest are
    // selected in place. Sorting them all was most of this step on a long history: a sparse
    // seller reaches back up to `lanes.max_window_days`, and only its latest few are read.
    let sparse = |k: usize, g: usize| plain[k][g].0 < need as u64;
    let mut base = [0usize; K];
    for k in 1..K {
        base[k] = base[k - 1] + groups[k - 1];
    }
    let older: Vec<(usize, i64, i64)> = (0..n)
        .into_par_iter()
        .with_min_len(1 << 14)
        .flat_map_iter(|i| {
            obs(i).into_iter().enumerate().filter_map(|(k, o)| {
                o.filter(|&(g, t, _)| t >= oldest && t < start.min(to) && sparse(k, g))
                    .map(|(g, t, v)| (base[k] + g, t, v))
            })
        })
        .collect();
    let mut first = vec![0usize; groups.iter().sum::<usize>() + 1];
    for o in &older {
        first[o.0 + 1] += 1;
    }
    for key in 1..first.len() {
        first[key] += first[key - 1];
    }
    let mut by_group = vec![(0i64, 0i64); older.len()];
    let mut next = first.clone();
    for &(key, t, v) in &older {
        by_group[next[key]] = (t, v);
        next[key] += 1;
    }
    drop((older, next));
    let mut out: [Vec<Window>; K] =
        std::array::from_fn(|k| plain[k].iter().map(|&(count, sum)| (start, count as f64, sum)).collect());
    for (k, out) in out.iter_mut().enumerate() {
        for (g, w) in out.iter_mut().enumerate() {
            let run = &mut by_group[first[base[k] + g]..first[base[k] + g + 1]];
            let (count, sum) = plain[k][g];
            // Observations here only for a sparse group, so `count < need`.
            let take = need.saturating_sub(count as usize).min(run.len());
            if take == 0 {
                continue;
            }
            // The latest `take` by (time, value), as a track orders them: equal pairs are
            // alike, so the set selected, its sum and its earliest time are a sort's.
            let cut = run.len() - take;
            if cut > 0 {
                run.select_nth_unstable(cut);
            }
            let latest = &run[cut..];
            let sum = latest.iter().fold(sum, |s, o| s.wrapping_add(o.1));
            let from = latest.iter().map(|o| o.0).min().unwrap_or(start);
            *w = (from.min(start), (count as usize + take) as f64, sum);
        }
    }
    out
}

/// One part's share of a seller's or the network's two windows before some time (handling,
/// late): what a sharded night's parts exchange (`History::seller_share`, `network_share`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairShare {
    pub handling: WindowPart,
    pub late: WindowPart,
}
crate::codec_struct!(PairShare { handling, late });

/// A seller's or the network's two windows before some time on the whole network, merged
/// from every part's `PairShare` (`PairShare::merge`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PairWindows {
    handling: Window,
    late: Window,
}
crate::codec_struct!(PairWindows { handling, late });

/// What bounds a window: `lanes.window_days`, and the `lanes.min_support` observations a
/// sparse one reaches back for.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    window: i64,
    need: usize,
}

impl Bounds {
    pub fn of(cfg: &LaneConfig) -> Bounds {
        Bounds { window: cfg.window_days as i64 * MICROS_PER_DAY, need: cfg.min_support as usize }
    }
}

impl PairShare {
    /// Adds another part's share of the same two windows (`WindowPart::absorb`).
    pub fn absorb(&mut self, other: PairShare, b: Bounds) {
        self.handling.absorb(other.handling, b.need);
        self.late.absorb(other.late, b.need);
    }

    /// The whole network's windows before `t` from every part's share of them.
    pub fn merge(parts: &[&PairShare], t: i64, b: Bounds) -> PairWindows {
        let merged = |f: fn(&PairShare) -> &WindowPart| {
            let parts: Vec<&WindowPart> = parts.iter().map(|p| f(p)).collect();
            merge_window(&parts, t, b.window, b.need)
        };
        PairWindows { handling: merged(|p| &p.handling), late: merged(|p| &p.late) }
    }
}

/// The windows of one shipment's history before some time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Windows {
    global_handling: Window,
    global_late: Window,
    seller_handling: Window,
    seller_late: Window,
    lane_late: Window,
}

/// The network's, every seller's and every lane's windows before the cutoff, which every
/// scoring row reads: taken once, where each of a million scoring rows searched the tracks
/// again (the network's hold every shipment) in most of the time spent filling them.
#[derive(Debug, Clone, Default, PartialEq)]
struct AtCutoff {
    t: i64,
    global_handling: Window,
    global_late: Window,
    /// Per seller: handling, late.
    seller: Vec<(Window, Window)>,
    lane_late: Vec<Window>,
}

/// `Default` is a history with no observations (what `FeatureSet::release_row_sources` leaves).
#[derive(Default)]
pub struct History {
    window: i64,
    /// Adaptive windows reach back at most this far, until `need` observations are inside.
    max_window: i64,
    need: usize,
    prior_strength: f64,
    /// Per seller: (resolved_at, late) and (picked_up_at, handling µs); per lane (resolved_at,
    /// late); and the network's, as one group each.
    seller_late: Tracks<u32>,
    seller_handling: Tracks<i64>,
    lane_late: Tracks<u32>,
    global_late: Tracks<u32>,
    global_handling: Tracks<i64>,
    at_cutoff: AtCutoff,
}

/// What a shipment itself adds to its seller's and lane's history, which its own features leave
/// out (read from the shipment's state and outcome rather than kept twice).
#[derive(Debug, Clone, Copy)]
pub struct Own {
    /// Pickup time (`NONE` without a pickup at or after creation), and the handling time to it
    /// in microseconds.
    picked: i64,
    handling: i64,
    /// Resolution time (`NONE` while unresolved), and whether late.
    resolved: i64,
    late: bool,
}

impl Own {
    pub fn of(created: i64, picked_up: i64, outcome: &Outcome) -> Own {
        let picked = if picked_up != NONE && picked_up >= created { picked_up } else { NONE };
        let handling = if picked != NONE { picked - created } else { 0 };
        let (resolved, late) = if outcome.resolved { (outcome.resolved_at, outcome.late) } else { (NONE, false) };
        Own { picked, handling, resolved, late }
    }

    /// The shipment's handling observation (pickup time, handling µs), when it was picked up.
    fn handling_seen(&self) -> Option<(i64, i64)> {
        (self.picked != NONE).then_some((self.picked, self.handling))
    }

    /// The shipment's late observation (resolution time, 1 when late), when it resolved.
    fn late_seen(&self) -> Option<(i64, u32)> {
        (self.resolved != NONE).then_some((self.resolved, self.late as u32))
    }
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
        let own = |i: usize| Own::of(prep.created[i], states.picked_up(i), &outcomes[i]);
        let handling = |i: usize| own(i).handling_seen();
        let late = |i: usize| own(i).late_seen();
        let seller = |i: usize| prep.seller[i] as usize;
        // The sellers' tracks on one side, the lanes' and the network's on the other: a build's
        // counting and filling passes run on one thread, so two at a time use both cores, and
        // no more than two builds' buffers are alive at once.
        let ((seller_late, seller_handling), (lane_late, (global_late, global_handling))) = rayon::join(
            || {
                (
                    Tracks::build(prep.n_sellers(), n, |i| late(i).map(|(t, v)| (seller(i), t, v))),
                    Tracks::build(prep.n_sellers(), n, |i| handling(i).map(|(t, v)| (seller(i), t, v))),
                )
            },
            || {
                (
                    Tracks::build(prep.lanes.len(), n, |i| late(i).map(|(t, v)| (prep.lane[i] as usize, t, v))),
                    (
                        Tracks::build(1, n, |i| late(i).map(|(t, v)| (0, t, v))),
                        Tracks::build(1, n, |i| handling(i).map(|(t, v)| (0, t, v))),
                    ),
                )
            },
        );
        let mut history = History {
            seller_late,
            seller_handling,
            lane_late,
            global_late,
            global_handling,
            ..History::bounded(cfg, prior_strength)
        };
        history.at_cutoff = history.windows_at(prep.night.cutoff(), prep.n_sellers(), prep.lanes.len());
        history
    }

    /// The history at the cutoff alone: the windows `build` keeps for it, taken straight from
    /// the shipments (`windows_before_all`) rather than searched for on tracks sorted by time,
    /// which only rows at other times read. For a night whose model comes from elsewhere: its
    /// scoring rows read history at the cutoff only. Asked at another time, it panics.
    pub fn at_cutoff(
        prep: &Prepared,
        states: &CutoffStates,
        outcomes: &[Outcome],
        cfg: &LaneConfig,
        prior_strength: f64,
    ) -> History {
        let n = prep.len();
        let own: Vec<Own> =
            (0..n).into_par_iter().map(|i| Own::of(prep.created[i], states.picked_up(i), &outcomes[i])).collect();
        let handling = |i: usize| own[i].handling_seen();
        let late = |i: usize| own[i].late_seen().map(|(t, late)| (t, late as i64));
        let bounded = History::bounded(cfg, prior_strength);
        let to = prep.night.cutoff();
        let (window, oldest, need) = (bounded.window, to - bounded.max_window, bounded.need);
        let [seller_handling, seller_late, lane_late, global_handling, global_late] = windows_before_all(
            [prep.n_sellers(), prep.n_sellers(), prep.lanes.len(), 1, 1],
            n,
            |i| {
                let (seller, lane) = (prep.seller[i] as usize, prep.lane[i] as usize);
                let (h, l) = (handling(i), late(i));
                [
                    h.map(|(t, v)| (seller, t, v)),
                    l.map(|(t, v)| (seller, t, v)),
                    l.map(|(t, v)| (lane, t, v)),
                    h.map(|(t, v)| (0, t, v)),
                    l.map(|(t, v)| (0, t, v)),
                ]
            },
            to,
            window,
            oldest,
            need,
        );
        let at_cutoff = AtCutoff {
            t: to,
            global_handling: global_handling[0],
            global_late: global_late[0],
            seller: seller_handling.into_iter().zip(seller_late).collect(),
            lane_late,
        };
        History { at_cutoff, ..bounded }
    }

    /// A history with `cfg`'s bounds and no observations, for the constructors to fill.
    fn bounded(cfg: &LaneConfig, prior_strength: f64) -> History {
        let Bounds { window, need } = Bounds::of(cfg);
        History {
            window,
            max_window: cfg.oldest_days() as i64 * MICROS_PER_DAY,
            need,
            prior_strength,
            ..History::default()
        }
    }

    /// The network's and every seller's and lane's windows before `t`, searched for.
    fn windows_at(&self, t: i64, sellers: usize, lanes: usize) -> AtCutoff {
        let (global_handling, global_late) = self.global_windows(t);
        AtCutoff {
            t,
            global_handling,
            global_late,
            seller: (0..sellers).into_par_iter().map(|s| self.seller_windows(s, t)).collect(),
            lane_late: (0..lanes).into_par_iter().map(|l| self.adaptive(self.lane_late.group(l), t)).collect(),
        }
    }

    /// The network's handling and late windows before `t`, searched for.
    fn global_windows(&self, t: i64) -> (Window, Window) {
        (self.adaptive(self.global_handling.group(0), t), self.adaptive(self.global_late.group(0), t))
    }

    /// Seller `s`'s handling and late windows before `t`, searched for.
    fn seller_windows(&self, s: usize, t: i64) -> (Window, Window) {
        (self.adaptive(self.seller_handling.group(s), t), self.adaptive(self.seller_late.group(s), t))
    }

    /// A track's window before `t`: `lanes.window_days`, reaching back for `lanes.min_support`
    /// observations up to `lanes.max_window_days`.
    fn adaptive<V: Value>(&self, track: Track<'_, V>, t: i64) -> Window {
        track.adaptive(t, self.window, t - self.max_window, self.need)
    }

    /// The windows of a shipment of `seller` on `lane` before `t`: kept for the cutoff,
    /// searched for at other times.
    fn windows(&self, seller: usize, lane: usize, t: i64) -> Windows {
        let c = &self.at_cutoff;
        match (c.seller.get(seller), c.lane_late.get(lane)) {
            (Some(&(seller_handling, seller_late)), Some(&lane_late)) if c.t == t => Windows {
                global_handling: c.global_handling,
                global_late: c.global_late,
                seller_handling,
                seller_late,
                lane_late,
            },
            _ => {
                // Tracks hold every observation: the network's has one group when built.
                assert!(self.global_late.start.len() == 2, "history kept for its cutoff alone, asked at {t}");
                let ((global_handling, global_late), (seller_handling, seller_late)) =
                    (self.global_windows(t), self.seller_windows(seller, t));
                let lane_late = self.adaptive(self.lane_late.group(lane), t);
                Windows { global_handling, global_late, seller_handling, seller_late, lane_late }
            }
        }
    }

    /// History of a shipment (`own`: what it adds itself) of `seller` on `lane` as known just
    /// before time `t`. Each rate covers `lanes.window_days` before t, or more for a seller or
    /// lane with fewer than `lanes.min_support` observations there (up to
    /// `lanes.max_window_days`), so a sparse business is measured on its own history rather than
    /// on the prior alone. Unknown (NaN) when the network itself has no observation.
    pub fn seen(&self, own: Own, seller: usize, lane: usize, t: i64) -> Seen {
        self.seen_in(own, self.windows(seller, lane, t), t)
    }

    /// This part's share of the windows before `t` of the seller with local index `seller`
    /// (`None` when this part has no shipment of theirs): a sharded night's exchange.
    pub fn seller_share(&self, seller: Option<usize>, t: i64) -> PairShare {
        seller
            .map(|s| PairShare {
                handling: self.share(self.seller_handling.group(s), t),
                late: self.share(self.seller_late.group(s), t),
            })
            .unwrap_or_default()
    }

    /// This part's share of the network's windows before `t`.
    pub fn network_share(&self, t: i64) -> PairShare {
        PairShare {
            handling: self.share(self.global_handling.group(0), t),
            late: self.share(self.global_late.group(0), t),
        }
    }

    /// The bounds of this history's windows, for merging parts' shares of them.
    pub fn bounds(&self) -> Bounds {
        Bounds { window: self.window, need: self.need }
    }

    /// This part's share of a track's window before `t` (`adaptive`'s window).
    fn share<V: Value>(&self, track: Track<'_, V>, t: i64) -> WindowPart {
        track.part(t, self.window, t - self.max_window, self.need)
    }

    /// `seen` for a row of this part of the network, its seller's and the network's windows
    /// merged from every part's shares (`PairShare::merge`) and its lane's from this part,
    /// which holds the whole lane: equal to `seen` on the whole network.
    pub fn seen_merged(&self, own: Own, seller: &PairWindows, network: &PairWindows, lane: usize, t: i64) -> Seen {
        let windows = Windows {
            global_handling: network.handling,
            global_late: network.late,
            seller_handling: seller.handling,
            seller_late: seller.late,
            lane_late: self.adaptive(self.lane_late.group(lane), t),
        };
        self.seen_in(own, windows, t)
    }

    fn seen_in(&self, own: Own, w: Windows, t: i64) -> Seen {
        let k = self.prior_strength;
        // The shipment's own contributions, removed where they fall inside a window.
        let own_in = |from: i64, x: i64, v: i64| if x != NONE && x >= from && x < t { (1.0, v) } else { (0.0, 0) };
        let handling = |from: i64| own_in(from, own.picked, own.handling);
        let resolved = |from: i64| own_in(from, own.resolved, own.late as i64);

        // Sums less the own contribution are exact integers (late rows, or microseconds of
        // handling, in days once exact).
        let (from, gn, gs) = w.global_handling;
        let (h_n, h_sum) = handling(from);
        let g_handling = if gn - h_n > 0.0 { days(gs - h_sum) / (gn - h_n) } else { f64::NAN };
        let (from, gn, gs) = w.global_late;
        let (r_n, r_sum) = resolved(from);
        let g_late = if gn - r_n > 0.0 { (gs - r_sum) as f64 / (gn - r_n) } else { f64::NAN };

        let (from, sn, ss) = w.seller_handling;
        let (h_n, h_sum) = handling(from);
        let (sn, ss) = (sn - h_n, days(ss - h_sum));
        let seller_handling_days = (ss + k * g_handling) / (sn + k).max(1e-9);
        let (from, rn, rs) = w.seller_late;
        let (r_n, r_sum) = resolved(from);
        let (rn, rs) = (rn - r_n, (rs - r_sum) as f64);
        let seller_late_rate = (rs + k * g_late) / (rn + k).max(1e-9);
        let (from, ln, ls) = w.lane_late;
        let (r_n, r_sum) = resolved(from);
        let (ln, ls) = (ln - r_n, (ls - r_sum) as f64);
        let lane_late_rate = (ls + k * g_late) / (ln + k).max(1e-9);
        Seen { seller_handling_days, seller_late_rate, seller_shipments: rn.max(0.0), lane_late_rate }
    }
}

#[cfg(test)]
mod tests {
    use super::{AtCutoff, History, Own, Tracks, Window, WindowPart, merge_window, windows_before_all};
    use crate::schema::MICROS_PER_DAY;

    /// Every group's window before `to` as `Track::adaptive` gives it on the group's track, taken
    /// straight from the observations `obs(i)` (group, time, value) for i in 0..n, with no track
    /// (`windows_before_all` of one kind of observation).
    fn windows_before(
        groups: usize,
        n: usize,
        obs: impl Fn(usize) -> Option<(usize, i64, i64)> + Sync,
        to: i64,
        window: i64,
        oldest: i64,
        need: usize,
    ) -> Vec<Window> {
        let [w] = windows_before_all([groups], n, |i| [obs(i)], to, window, oldest, need);
        w
    }

    /// The windows kept for the cutoff (the network's, each seller's and lane's) give every
    /// shipment the history searching the tracks gives, at the cutoff; at other times the
    /// tracks are searched.
    #[test]
    fn windows_kept_for_the_cutoff_are_the_ones_searched_for() {
        let mut rng = crate::TestRng::new(9);
        let (n, sellers, lanes, day) = (4_000usize, 60usize, 15usize, MICROS_PER_DAY);
        let cutoff = 400 * day;
        let when =
            |rng: &mut crate::TestRng| cutoff + day - (((rng.next() << 31) | rng.next()) % (300 * day as u64)) as i64;
        // (seller, lane, resolved_at, picked_up_at, late, handling µs)
        let obs: Vec<(usize, usize, i64, i64, bool, i64)> = (0..n)
            .map(|_| {
                let (s, l) = ((rng.next() % sellers as u64) as usize, (rng.next() % lanes as u64) as usize);
                (s, l, when(&mut rng), when(&mut rng), rng.next() % 4 == 0, (rng.next() % 1_000) as i64 * 1_000_003)
            })
            .collect();
        let mut h = History {
            window: 30 * day,
            max_window: 200 * day,
            need: 25,
            prior_strength: 5.0,
            seller_late: Tracks::build(sellers, n, |i| Some((obs[i].0, obs[i].2, obs[i].4 as u32))),
            seller_handling: Tracks::build(sellers, n, |i| Some((obs[i].0, obs[i].3, obs[i].5))),
            lane_late: Tracks::build(lanes, n, |i| Some((obs[i].1, obs[i].2, obs[i].4 as u32))),
            global_late: Tracks::build(1, n, |i| Some((0, obs[i].2, obs[i].4 as u32))),
            global_handling: Tracks::build(1, n, |i| Some((0, obs[i].3, obs[i].5))),
            at_cutoff: AtCutoff::default(),
        };
        let all_seen = |h: &History, t: i64| -> Vec<String> {
            (0..n)
                .map(|i| {
                    let (s, l, resolved, picked, late, handling) = obs[i];
                    format!("{:?}", h.seen(Own { picked, handling, resolved, late }, s, l, t))
                })
                .collect()
        };
        let (searched, searched_before) = (all_seen(&h, cutoff), all_seen(&h, cutoff - 3 * day));
        h.at_cutoff = h.windows_at(cutoff, sellers, lanes);
        assert_eq!(all_seen(&h, cutoff), searched);
        assert_eq!(all_seen(&h, cutoff - 3 * day), searched_before);
        assert_ne!(searched, searched_before, "the two times see different histories");
    }

    /// Every group's window taken straight from the observations (`windows_before`) is the one
    /// `Track::adaptive` gives on the group's track: dense and sparse groups, groups without
    /// observations, times and values that repeat (ties at the window's edges), observations at
    /// and after the time, whatever the window, oldest time and observations needed; late
    /// counts (u32 tracks) and sums that wrap (i64 tracks) alike.
    #[test]
    fn windows_taken_straight_from_observations_are_the_tracks_windows() {
        let mut rng = crate::TestRng::new(17);
        let mut reached_back = 0;
        for case in 0..2_000 {
            let groups = 1 + (rng.next() % 6) as usize;
            let n = (rng.next() % if case % 2 == 0 { 60 } else { 600 }) as usize;
            let span = 1 + (rng.next() % 200) as i64;
            let big = case % 7 == 0;
            let obs: Vec<(usize, i64, i64)> = (0..n)
                .map(|_| {
                    let g = (rng.next() % groups as u64) as usize;
                    let v = if big { i64::MAX / 3 + (rng.next() % 3) as i64 } else { (rng.next() % 4) as i64 * 1_000 };
                    (g, (rng.next() % span as u64) as i64, v)
                })
                .collect();
            let to = (rng.next() % (span as u64 + 20)) as i64 - 10;
            let window = (rng.next() % 60) as i64;
            let oldest = to - window - (rng.next() % 80) as i64;
            let need = (rng.next() % 40) as usize;
            let tracks: Tracks<i64> = Tracks::build(groups, n, |i| Some(obs[i]));
            let late: Tracks<u32> = Tracks::build(groups, n, |i| Some((obs[i].0, obs[i].1, (obs[i].2 % 2) as u32)));
            let got = windows_before(groups, n, |i| Some(obs[i]), to, window, oldest, need);
            let got_late =
                windows_before(groups, n, |i| Some((obs[i].0, obs[i].1, obs[i].2 % 2)), to, window, oldest, need);
            for g in 0..groups {
                let want = tracks.group(g).adaptive(to, window, oldest, need);
                assert_eq!(got[g], want, "case {case}, group {g}");
                assert_eq!(got_late[g], late.group(g).adaptive(to, window, oldest, need), "case {case}, group {g}");
                reached_back += (want.0 < to - window) as usize;
            }
            // Kinds taken together are each as taken alone: here a second kind with other groups
            // and some shipments without an observation of it.
            let other = 1 + (case % 3);
            let second = |i: usize| (obs[i].2 % 3 != 0).then(|| (obs[i].0 % other, obs[i].1, obs[i].2 % 2));
            let [both_first, both_second] =
                windows_before_all([groups, other], n, |i| [Some(obs[i]), second(i)], to, window, oldest, need);
            assert_eq!(both_first, got, "case {case}");
            assert_eq!(both_second, windows_before(other, n, second, to, window, oldest, need), "case {case}");
        }
        assert!(reached_back > 500, "only {reached_back} windows reached back");
    }

    /// A track's observations split in any way among parts: the parts' shares merged give the
    /// whole track's adaptive window, for dense and sparse tracks, with times and values that
    /// repeat (ties), whatever the time, window, oldest time and observations needed.
    #[test]
    fn window_shares_of_parts_merge_into_the_whole_tracks_window() {
        let mut rng = crate::TestRng::new(5);
        let mut reached_back = 0;
        for case in 0..3_000 {
            let n = (rng.next() % if case % 2 == 0 { 40 } else { 400 }) as usize;
            let span = 1 + (rng.next() % 200) as i64;
            let obs: Vec<(i64, i64)> =
                (0..n).map(|_| ((rng.next() % span as u64) as i64, (rng.next() % 4) as i64 * 1_000)).collect();
            let k = 1 + (rng.next() % 5) as usize;
            let part_of: Vec<usize> = (0..n).map(|_| (rng.next() % k as u64) as usize).collect();
            let whole = one(obs.clone());
            let parts: Vec<Tracks<i64>> = (0..k)
                .map(|p| {
                    let mine: Vec<(i64, i64)> = (0..n).filter(|&i| part_of[i] == p).map(|i| obs[i]).collect();
                    one(mine)
                })
                .collect();
            let to = (rng.next() % (span as u64 + 20)) as i64 - 10;
            let window = (rng.next() % 60) as i64;
            let oldest = to - window - (rng.next() % 80) as i64;
            let need = (rng.next() % 40) as usize;
            let shares: Vec<WindowPart> = parts.iter().map(|t| t.group(0).part(to, window, oldest, need)).collect();
            let want = whole.group(0).adaptive(to, window, oldest, need);
            assert_eq!(merge_window(&shares.iter().collect::<Vec<_>>(), to, window, need), want, "case {case}");
            // Added up one part at a time, as a merge holding one share does.
            let mut folded = shares[0].clone();
            for s in &shares[1..] {
                folded.absorb(s.clone(), need);
            }
            assert_eq!(merge_window(&[&folded], to, window, need), want, "case {case}, folded");
            reached_back += (want.0 < to - window) as usize;
        }
        assert!(reached_back > 500, "only {reached_back} windows reached back");
    }

    fn one(obs: Vec<(i64, i64)>) -> Tracks<i64> {
        Tracks::build(1, obs.len(), |i| Some((0, obs[i].0, obs[i].1)))
    }

    #[test]
    fn track_windows_are_half_open() {
        let t = one(vec![(5, 1), (1, 2), (3, 4)]);
        let t = t.group(0);
        assert_eq!(t.window(1, 5), (2.0, 6));
        assert_eq!(t.window(2, 6), (2.0, 5));
        assert_eq!(t.window(6, 9), (0.0, 0));
    }

    /// A running sum past `i64::MAX` (a network's microseconds of handling) wraps; a window's
    /// sum is still exact.
    #[test]
    fn window_sums_are_exact_when_the_running_sum_wraps() {
        let t = one(vec![(1, i64::MAX - 5), (2, i64::MAX - 3), (3, 10), (4, 7)]);
        let t = t.group(0);
        assert_eq!(t.window(3, 5), (2.0, 17));
        assert_eq!(t.window(2, 3), (1.0, i64::MAX - 3));
        assert_eq!(t.adaptive(5, 2, 0, 2), (3, 2.0, 17));
    }

    #[test]
    fn adaptive_windows_reach_back_for_enough_observations() {
        let t = one((0..10).map(|k| (k * 10, 1)).collect());
        let t = t.group(0);
        // Window 15 before 100 holds 2 (80, 90); 4 are needed: back to 60.
        assert_eq!(t.adaptive(100, 15, 0, 4), (60, 4.0, 4));
        // Enough already: the plain window.
        assert_eq!(t.adaptive(100, 35, 0, 3), (65, 3.0, 3));
        // Never before `oldest`.
        assert_eq!(t.adaptive(100, 15, 75, 4), (80, 2.0, 2));
        // Nothing before t at all.
        assert_eq!(t.adaptive(0, 15, -100, 4), (-15, 0.0, 0));
    }

    #[test]
    fn groups_keep_their_own_observations_in_time_order() {
        // Items 0..6 alternate between groups 0 and 2; group 1 has none.
        let obs = [(0, 50, 1), (2, 10, 0), (0, 20, 1), (2, 30, 1), (0, 20, 0), (2, 40, 1)];
        let tr: Tracks<u32> = Tracks::build(3, obs.len(), |i| Some(obs[i]));
        assert_eq!(tr.group(0).t, &[20, 20, 50]);
        // Equal times are ordered by value, so the prefix sums do not depend on input order.
        assert_eq!(tr.group(0).cum, &[0, 0, 1, 2]);
        assert!(tr.group(1).t.is_empty());
        assert_eq!(tr.group(1).cum, &[0]);
        assert_eq!(tr.group(2).t, &[10, 30, 40]);
        assert_eq!(tr.group(2).window(0, 35), (2.0, 1));
    }

    #[test]
    fn a_group_sorted_in_parallel_has_the_prefix_sums_of_one_sorted_in_one_task() {
        // Group 1 is large enough to be sorted in parallel; times repeat, values differ.
        let n = 600_000usize;
        let obs = |i: usize| !i.is_multiple_of(7) as usize;
        let time = |i: usize| ((i * 7919) % 1000) as i64;
        let value = |i: usize| ((i / 997) % 5) as i64 * 250_000;
        let tr: Tracks<i64> = Tracks::build(2, n, |i| Some((obs(i), time(i), value(i))));
        for g in 0..2 {
            let mut want: Vec<(i64, i64)> = (0..n).filter(|&i| obs(i) == g).map(|i| (time(i), value(i))).collect();
            want.sort();
            let group = tr.group(g);
            assert!(group.t.iter().copied().eq(want.iter().map(|w| w.0)), "group {g}");
            let mut acc = 0;
            let cum: Vec<i64> = std::iter::once(0)
                .chain(want.iter().map(|w| {
                    acc += w.1;
                    acc
                }))
                .collect();
            assert_eq!(group.cum, &cum[..], "group {g}");
        }
    }
}
