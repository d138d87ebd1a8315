//! What a shipment's scans say at a moment t: furthest milestone, current stage, dwell, scans
//! and exceptions. Only events strictly before t are read.

use crate::schema::{self, N_STAGES, STAGES};

pub const NONE: i64 = i64::MIN;
/// Index of the PICKED_UP milestone in `State::first` (`schema::MILESTONES`).
pub const PICKED_UP: usize = 1;

#[derive(Debug, Clone)]
pub struct State {
    /// First time each milestone was reached (`NONE` if not yet). CREATED defaults to created_at.
    pub first: [i64; 9],
    /// Furthest milestone reached (index into `schema::MILESTONES`).
    pub furthest: u8,
    pub stage: usize,
    /// When the current stage began.
    pub stage_start: i64,
    pub last_scan: i64,
    pub first_carrier_scan: i64,
    pub scans: u32,
    pub customs_holds: u32,
    pub failed_deliveries: u32,
    pub exceptions: u32,
    /// Time of a terminal event: delivered, returned or lost.
    pub delivered: i64,
    pub returned_or_lost: i64,
    /// Whether the event at `returned_or_lost` said LOST (else RETURNED).
    pub lost: bool,
    /// The carrier's estimates seen so far: the first, the latest, and how often it changed
    /// (`NONE` and 0 without estimates).
    pub eta_first: i64,
    pub eta_last: i64,
    pub eta_updates: u32,
}

impl State {
    pub fn is_terminal(&self) -> bool {
        self.delivered != NONE || self.returned_or_lost != NONE
    }

    /// When the outcome became final (delivery, return or loss), if it did.
    pub fn terminal_at(&self) -> i64 {
        match (self.delivered, self.returned_or_lost) {
            (NONE, r) => r,
            (d, NONE) => d,
            (d, r) => d.min(r),
        }
    }

    /// Start of stage `s` (first milestone of the stage group reached), if reached.
    #[inline]
    pub fn stage_entry(&self, s: usize) -> i64 {
        stage_entry(&self.first, s)
    }

    /// Completed dwell of stage `s` in µs, if both ends were scanned in order.
    pub fn stage_dwell(&self, s: usize) -> Option<i64> {
        stage_dwell(&self.first, s)
    }
}

/// `State::stage_entry` from the milestone times alone (lane statistics keep only those).
#[inline]
pub fn stage_entry(first: &[i64; 9], s: usize) -> i64 {
    let st = &STAGES[s];
    earliest(first, st.first as usize, st.last as usize)
}

/// `State::stage_exit` from the milestone times alone.
#[inline]
pub fn stage_exit(first: &[i64; 9], s: usize) -> i64 {
    earliest(first, STAGES[s].last as usize + 1, schema::DELIVERED as usize)
}

/// `State::stage_dwell` from the milestone times alone.
#[inline]
pub fn stage_dwell(first: &[i64; 9], s: usize) -> Option<i64> {
    let (a, b) = (stage_entry(first, s), stage_exit(first, s));
    (a != NONE && b != NONE && b >= a).then(|| b - a)
}

/// The earliest time any of milestones `from..=to` was reached, `NONE` if none was. A plain
/// loop rather than an iterator chain over a `RangeInclusive<u8>`: lane statistics call this
/// tens of millions of times a night, and the chain did not inline.
#[inline]
fn earliest(first: &[i64; 9], from: usize, to: usize) -> i64 {
    let mut best = NONE;
    let mut m = from;
    while m <= to {
        let t = first[m];
        if t != NONE && (best == NONE || t < best) {
            best = t;
        }
        m += 1;
    }
    best
}

/// The state of a shipment created at `created` given its time-ordered events (and the carrier's
/// estimates on them, if any), counting only events before `t`. An event dated before the
/// shipment's creation (a skewed clock; validation keeps such rows) counts as scanned at the
/// creation: nothing about a shipment is known before it exists. Read at its own time, a scan a
/// minute before a creation just after midnight reached the lane tables, series day and
/// history of the night before, which could not have seen the shipment (and whose kept tables
/// the digests, which date such rows at the creation, would have reused).
pub fn state_at(created: i64, times: &[i64], codes: &[u8], etas: Option<&[i64]>, t: i64) -> State {
    let mut st = State {
        first: [NONE; 9],
        furthest: 0,
        stage: 0,
        stage_start: created,
        last_scan: NONE,
        first_carrier_scan: NONE,
        scans: 0,
        customs_holds: 0,
        failed_deliveries: 0,
        exceptions: 0,
        delivered: NONE,
        returned_or_lost: NONE,
        lost: false,
        eta_first: NONE,
        eta_last: NONE,
        eta_updates: 0,
    };
    for (k, (&time, &code)) in times.iter().zip(codes).enumerate() {
        let time = time.max(created);
        if time >= t {
            break;
        }
        if let Some(&e) = etas.and_then(|e| e.get(k)).filter(|&&e| e != NONE) {
            if st.eta_first == NONE {
                st.eta_first = e;
            } else if e != st.eta_last {
                st.eta_updates += 1;
            }
            st.eta_last = e;
        }
        st.scans += 1;
        st.last_scan = time;
        if code != 0 && st.first_carrier_scan == NONE {
            st.first_carrier_scan = time;
        }
        match code {
            0..=8 => {
                let m = code as usize;
                if st.first[m] == NONE {
                    st.first[m] = time;
                }
                st.furthest = st.furthest.max(code);
                if code == schema::DELIVERED && st.delivered == NONE {
                    st.delivered = time;
                }
            }
            schema::CUSTOMS_HOLD => st.customs_holds += 1,
            schema::DELIVERY_FAILED => st.failed_deliveries += 1,
            schema::EXCEPTION => st.exceptions += 1,
            schema::RETURNED | schema::LOST => {
                st.exceptions += 1;
                if st.returned_or_lost == NONE {
                    st.returned_or_lost = time;
                    st.lost = code == schema::LOST;
                }
            }
            _ => {}
        }
    }
    // CREATED is the creation: a scan can be no earlier (above), and a later one does not move it.
    st.first[0] = created;
    st.stage = schema::stage_of(st.furthest.min(schema::DELIVERED - 1));
    let entry = st.stage_entry(st.stage);
    st.stage_start = if entry == NONE { created } else { entry };
    st
}

/// The scan states at the cutoff that outlive the feature stage, compactly: the whole state of
/// each shipment still in flight (scoring reads it), and for every shipment only when it was
/// delivered, returned or lost, first scanned by a carrier (the advice reads those) and picked
/// up (the seller's handling history). Keeping every whole state instead was 160 bytes a
/// shipment (1.6 GB at 10M shipments) through the history, training, scoring, alerts and advice.
#[derive(Debug, Clone, Default)]
pub struct CutoffStates {
    /// Per shipment: (delivered, returned or lost, first carrier scan, picked up), `NONE` where
    /// not.
    ends: Vec<[i64; 4]>,
    /// Per shipment: whether it ended lost rather than returned (`recovered.parquet` says
    /// which; a byte a shipment beside the 32 of `ends`).
    lost: Vec<bool>,
    /// The shipments in flight (not terminal), ascending, and their states.
    open_ship: Vec<u32>,
    open: Vec<State>,
}

/// What the disruption series reads of a shipment's state: its milestone times and when it was
/// returned or lost (80 bytes of the state's 160).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visits {
    pub first: [i64; 9],
    pub returned_or_lost: i64,
}

impl Visits {
    pub fn of(st: &State) -> Visits {
        Visits { first: st.first, returned_or_lost: st.returned_or_lost }
    }

    /// The stage observations (`spans_of`) of the state these were taken from.
    pub fn spans(&self) -> impl Iterator<Item = (usize, i64, i64)> + '_ {
        spans_of(&self.first)
    }
}

/// Shipments per block of `take_states`; a block's held visits are at most this many, so a
/// handle (`HeldVisits::get`) is its block times this plus its place in the block. Large enough
/// that a block whose visits are all held (a full refresh: 5 MiB) is mapped on its own and goes
/// back to the system when dropped (`memory`'s 4 MiB threshold): blocks of 2^14 (1.25 MiB) were
/// carved from the heaps, and the training night's lane tables, built after they were freed,
/// peaked 250 MiB higher at 10M shipments.
const STATE_BLOCK: usize = 1 << 16;

/// The `Visits` of the shipments `take_states` was asked to hold, in shipment order, in the
/// blocks they were taken in: gathered into one vector they would be copied whole, beside the
/// blocks (0.8 GB at 10M shipments, on a full refresh where every one is held).
#[derive(Debug, Clone, Default)]
pub struct HeldVisits {
    /// Per block: its held shipments (ascending) and their visits.
    blocks: Vec<(Vec<u32>, Vec<Visits>)>,
}

impl HeldVisits {
    /// Every held shipment's handle (for `get`), shipment and visits, in shipment order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32, &Visits)> + '_ {
        self.blocks.iter().enumerate().flat_map(|(b, (ships, visits))| {
            ships.iter().zip(visits).enumerate().map(move |(k, (&i, v))| ((b * STATE_BLOCK + k) as u32, i, v))
        })
    }

    /// `f` of every held shipment's visits, in shipment order, in parallel over the blocks.
    pub fn par_map<T: Send>(&self, f: impl Fn(&Visits) -> T + Sync + Send) -> Vec<T> {
        use rayon::prelude::*;
        let parts: Vec<Vec<T>> = self.blocks.par_iter().map(|(_, v)| v.iter().map(&f).collect()).collect();
        parts.into_iter().flatten().collect()
    }

    /// The visits of the shipment with this handle (`iter`).
    pub fn get(&self, handle: u32) -> &Visits {
        let h = handle as usize;
        &self.blocks[h / STATE_BLOCK].1[h % STATE_BLOCK]
    }

    /// Shipments held.
    pub fn len(&self) -> usize {
        self.blocks.iter().map(|b| b.0.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every shipment's scan state at `cutoff` (`state(i)`; `promised` has one entry a shipment),
/// taken once, in parallel over blocks of shipments, and kept only as later stages read it:
/// the `CutoffStates`, the outcomes, and the visits of the shipments `hold` asks for (those
/// the disruption series reads). No vector of every whole state is made: at 10M shipments it
/// was 1.6 GB of fresh pages a night, for the few fields kept.
pub fn take_states(
    promised: &[i64],
    cutoff: i64,
    state: impl Fn(usize) -> State + Sync,
    hold: impl Fn(&State) -> bool + Sync,
) -> (CutoffStates, Vec<Outcome>, HeldVisits) {
    use rayon::prelude::*;
    let n = promised.len();
    let mut ends = vec![[NONE; 4]; n];
    let mut lost = vec![false; n];
    let unknown = Outcome { resolved: false, resolved_at: NONE, late: false, delivered: false };
    let mut outcomes = vec![unknown; n];
    type Block = (Vec<(u32, State)>, (Vec<u32>, Vec<Visits>));
    let blocks: Vec<Block> = ends
        .par_chunks_mut(STATE_BLOCK)
        .zip(outcomes.par_chunks_mut(STATE_BLOCK))
        .zip(lost.par_chunks_mut(STATE_BLOCK))
        .enumerate()
        .map(|(b, ((ends, outcomes), lost))| {
            let (mut open, mut held) = (Vec::new(), (Vec::new(), Vec::new()));
            for (k, ((end, out), lost)) in ends.iter_mut().zip(outcomes.iter_mut()).zip(lost.iter_mut()).enumerate() {
                let i = b * STATE_BLOCK + k;
                let st = state(i);
                *end = [st.delivered, st.returned_or_lost, st.first_carrier_scan, st.first[PICKED_UP]];
                *lost = st.lost;
                *out = outcome(&st, promised[i], cutoff);
                hold_into(&mut held, i, &st, &hold);
                if !st.is_terminal() {
                    open.push((i as u32, st));
                }
            }
            (open, held)
        })
        .collect();
    let (mut open_ship, mut open) = (Vec::new(), Vec::new());
    let mut held = HeldVisits { blocks: Vec::with_capacity(blocks.len()) };
    for (o, h) in blocks {
        for (i, st) in o {
            open_ship.push(i);
            open.push(st);
        }
        held.blocks.push(h);
    }
    (CutoffStates { ends, lost, open_ship, open }, outcomes, held)
}

/// The visits of the shipments `hold` asks for, of `n` shipments' states (`state(i)`), as
/// `take_states` holds them.
pub fn hold_visits(
    n: usize,
    state: impl Fn(usize) -> State + Sync,
    hold: impl Fn(&State) -> bool + Sync,
) -> HeldVisits {
    use rayon::prelude::*;
    let blocks = (0..n.div_ceil(STATE_BLOCK))
        .into_par_iter()
        .map(|b| {
            let mut held = (Vec::new(), Vec::new());
            for i in b * STATE_BLOCK..((b + 1) * STATE_BLOCK).min(n) {
                hold_into(&mut held, i, &state(i), &hold);
            }
            held
        })
        .collect();
    HeldVisits { blocks }
}

/// Shipment i's visits added to its block's held ones when `hold` asks for them: one rule for
/// `take_states` and `hold_visits`, whose blocks must agree for the handles to.
fn hold_into(held: &mut (Vec<u32>, Vec<Visits>), i: usize, st: &State, hold: impl Fn(&State) -> bool) {
    if hold(st) {
        held.0.push(i as u32);
        held.1.push(Visits::of(st));
    }
}

impl CutoffStates {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The shipments in flight at the cutoff, ascending.
    pub fn in_flight(&self) -> &[u32] {
        &self.open_ship
    }

    /// Shipment i's state at the cutoff when it is in flight; `None` when it is terminal.
    pub fn open(&self, i: usize) -> Option<&State> {
        self.open_ship.binary_search(&(i as u32)).ok().map(|k| &self.open[k])
    }

    /// When shipment i was delivered (`NONE` if not before the cutoff).
    pub fn delivered(&self, i: usize) -> i64 {
        self.ends[i][0]
    }

    /// When shipment i was returned or lost (`NONE` if not before the cutoff).
    pub fn returned_or_lost(&self, i: usize) -> i64 {
        self.ends[i][1]
    }

    /// Whether shipment i's return or loss (`returned_or_lost`) was a loss.
    pub fn lost(&self, i: usize) -> bool {
        self.lost[i]
    }

    /// When shipment i was first scanned by a carrier (`NONE` if not before the cutoff).
    pub fn first_carrier_scan(&self, i: usize) -> i64 {
        self.ends[i][2]
    }

    /// When shipment i was first picked up (`NONE` if not before the cutoff).
    pub fn picked_up(&self, i: usize) -> i64 {
        self.ends[i][3]
    }

    /// `State::terminal_at` of shipment i.
    pub fn terminal_at(&self, i: usize) -> i64 {
        match (self.ends[i][0], self.ends[i][1]) {
            (NONE, r) => r,
            (d, NONE) => d,
            (d, r) => d.min(r),
        }
    }
}

/// Per-shipment outcome facts at the cutoff, shared by lane statistics and history features.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Outcome known before C: terminal before C, or the promise passed before C.
    pub resolved: bool,
    /// When it became known.
    pub resolved_at: i64,
    /// Not delivered by the promise (the training label).
    pub late: bool,
    pub delivered: bool,
}

/// The label and when it became known, as of `cutoff`: late unless delivered by the promise;
/// known at the earlier of the terminal event and the promise. The first terminal event
/// settles it: a delivery after a return or loss (a parcel found again) does not make it on
/// time. The outcome is known from the loss on, and every night between the loss and that
/// delivery saw it late; counting it on time afterwards made a later night's lane tables,
/// history and series of those nights differ from the ones the nights kept.
///
/// Nothing is known before the shipment exists (`State::first[0]` is its creation): a promise
/// dated before the creation is known, late, at the creation.
pub fn outcome(st: &State, promised: i64, cutoff: i64) -> Outcome {
    let terminal = st.terminal_at();
    let known_at = if terminal == NONE { promised } else { terminal.min(promised) }.max(st.first[0]);
    let delivered_on_time = st.delivered != NONE && st.delivered <= promised && st.delivered == terminal;
    Outcome {
        resolved: known_at < cutoff,
        resolved_at: known_at,
        late: !delivered_on_time,
        delivered: st.delivered != NONE,
    }
}

/// Stage observations for lane dwell statistics, from the milestone times alone: (stage, entry,
/// exit or `NONE` when still open).
fn spans_of(first: &[i64; 9]) -> impl Iterator<Item = (usize, i64, i64)> + '_ {
    (0..N_STAGES).filter_map(move |s| {
        let entry = stage_entry(first, s);
        if entry == NONE {
            return None;
        }
        let exit = stage_exit(first, s);
        if exit != NONE && exit < entry {
            return None;
        }
        Some((s, entry, exit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    const H: i64 = schema::MICROS_PER_HOUR;

    /// A parcel lost, then delivered by its promise (found again): every cutoff from the loss
    /// on sees the same outcome, late and known at the loss, whether the delivery is known yet
    /// or not; so do cutoffs before the loss, which see none. A plain on-time delivery, and a
    /// delivery followed by a return, stay on time.
    #[test]
    fn the_first_terminal_event_settles_the_outcome() {
        let promised = 60 * H;
        let (times, codes) = ([0, 4 * H, 7 * H, 30 * H], [0, 2, schema::LOST, schema::DELIVERED]);
        let at = |t: i64| outcome(&state_at(0, &times, &codes, None, t), promised, t);
        for t in [8 * H, 20 * H, 31 * H, 100 * H] {
            let o = at(t);
            assert_eq!((o.resolved, o.resolved_at, o.late), (true, 7 * H, true), "cutoff {t}");
        }
        assert!(!at(6 * H).resolved);
        let on_time = |codes: &[u8]| outcome(&state_at(0, &times, codes, None, 100 * H), promised, 100 * H);
        assert!(!on_time(&[0, 2, 5, schema::DELIVERED]).late);
        let (times, codes) = ([0, 4 * H, 30 * H, 40 * H], [0, 2, schema::DELIVERED, schema::RETURNED]);
        assert!(!outcome(&state_at(0, &times, &codes, None, 100 * H), promised, 100 * H).late);
    }

    /// What `take_states` keeps answers as the states it took: the whole state of exactly the
    /// shipments in flight; each shipment's ends, carrier scan, pickup and outcome; and the
    /// visits of exactly the shipments asked for, in order, across blocks.
    #[test]
    fn taken_states_answer_as_the_states_they_were_taken_from() {
        let t = 100 * H;
        let lives: [(&[i64], &[u8]); 5] = [
            (&[0, 2 * H, 5 * H, 40 * H], &[0, 1, 3, 8]),  // delivered
            (&[0, 3 * H, 9 * H], &[0, 1, 12]),            // returned
            (&[0, 4 * H, 7 * H, 30 * H], &[0, 2, 13, 8]), // lost, then a delivery scan
            (&[0, 6 * H, 8 * H], &[0, 1, 4]),             // in flight
            (&[], &[]),                                   // in flight, never scanned
        ];
        let promised = [50 * H, 5 * H, 60 * H, 200 * H, 10 * H];
        // Two blocks and a few shipments more, each a copy of one of the lives.
        let n = 2 * STATE_BLOCK + 5;
        let states: Vec<State> = (0..n).map(|i| state_at(0, lives[i % 5].0, lives[i % 5].1, None, t)).collect();
        let promised: Vec<i64> = (0..n).map(|i| promised[i % 5]).collect();
        let holds: [fn(&State) -> bool; 3] = [|_| true, |_| false, |st| st.scans == 3];
        for hold in holds {
            let (kept, outcomes, held) = take_states(&promised, t, |i| states[i].clone(), hold);
            check_kept(&kept, &states);
            for (i, st) in states.iter().enumerate() {
                let want = outcome(st, promised[i], t);
                let got = outcomes[i];
                assert_eq!(
                    (got.resolved, got.resolved_at, got.late, got.delivered),
                    (want.resolved, want.resolved_at, want.late, want.delivered),
                    "shipment {i}"
                );
            }
            let want: Vec<u32> = (0..n as u32).filter(|&i| hold(&states[i as usize])).collect();
            let got: Vec<u32> = held.iter().map(|(_, i, _)| i).collect();
            assert_eq!(got, want);
            assert_eq!(held.len(), want.len());
            for (h, i, v) in held.iter() {
                assert_eq!(*v, Visits::of(&states[i as usize]), "shipment {i}");
                assert_eq!(held.get(h), v, "shipment {i}");
            }
            let alone: Vec<(u32, u32, Visits)> =
                hold_visits(n, |i| states[i].clone(), hold).iter().map(|(h, i, v)| (h, i, *v)).collect();
            assert_eq!(alone, held.iter().map(|(h, i, v)| (h, i, *v)).collect::<Vec<_>>());
            let spans = |v: &Visits| v.spans().collect::<Vec<_>>();
            let by_handle: Vec<_> = held.iter().map(|(_, _, v)| spans(v)).collect();
            assert_eq!(held.par_map(spans), by_handle);
        }
    }

    fn check_kept(kept: &CutoffStates, states: &[State]) {
        assert_eq!(kept.len(), states.len());
        let open: Vec<u32> = (0..states.len() as u32).filter(|&i| i % 5 >= 3).collect();
        assert_eq!(kept.in_flight(), &open[..]);
        for (i, st) in states.iter().enumerate() {
            assert_eq!(kept.open(i).is_some(), !st.is_terminal(), "shipment {i}");
            if let Some(open) = kept.open(i) {
                assert_eq!((open.furthest, open.stage_start, open.scans), (st.furthest, st.stage_start, st.scans));
            }
            assert_eq!(kept.delivered(i), st.delivered, "shipment {i}");
            assert_eq!(kept.returned_or_lost(i), st.returned_or_lost, "shipment {i}");
            assert_eq!(kept.first_carrier_scan(i), st.first_carrier_scan, "shipment {i}");
            assert_eq!(kept.picked_up(i), st.first[PICKED_UP], "shipment {i}");
            assert_eq!(kept.terminal_at(i), st.terminal_at(), "shipment {i}");
        }
        assert_eq!(kept.terminal_at(2), 7 * H, "lost before its delivery scan");
        assert_eq!((kept.lost(1), kept.lost(2)), (false, true), "returned, then lost");
        for (i, st) in states.iter().enumerate() {
            assert_eq!(kept.lost(i), st.lost, "shipment {i}");
        }
    }

    /// A scan dated before the shipment's creation is seen at the creation, not before; a
    /// promise dated before it is known, late, at the creation.
    #[test]
    fn nothing_is_known_before_the_creation() {
        let created = 10 * H;
        let (times, codes) = ([8 * H, 9 * H, 12 * H], [1, schema::DELIVERED, 3]);
        let before = state_at(created, &times, &codes, None, 10 * H);
        assert_eq!((before.scans, before.first[1], before.delivered), (0, NONE, NONE));
        let after = state_at(created, &times, &codes, None, 11 * H);
        assert_eq!((after.scans, after.first[1], after.delivered, after.last_scan), (2, created, created, created));
        let o = outcome(&after, 5 * H, 11 * H);
        assert_eq!((o.resolved, o.resolved_at, o.late), (true, created, true));
        assert!(!outcome(&before, 5 * H, 10 * H).resolved, "not known before the creation");
    }

    /// The first of a parcel's returns and losses says which it was.
    #[test]
    fn the_first_return_or_loss_says_which() {
        let times = [0, 4 * H, 7 * H, 9 * H];
        let ended = |a: u8, b: u8, t: i64| state_at(0, &times, &[0, 2, a, b], None, t);
        assert!(ended(schema::LOST, schema::RETURNED, 100 * H).lost);
        assert!(!ended(schema::RETURNED, schema::LOST, 100 * H).lost);
        // Before the cutoff only: the loss at 9h is not seen at 8h.
        assert!(!ended(schema::RETURNED, schema::LOST, 8 * H).lost);
        assert!(!ended(5, schema::LOST, 8 * H).lost);
        assert!(ended(5, schema::LOST, 10 * H).lost);
    }

    #[test]
    fn state_counts_only_events_before_t() {
        let times = [0, 10 * H, 20 * H, 30 * H];
        let codes = [0u8, 1, 2, 9];
        let st = state_at(0, &times, &codes, None, 20 * H);
        assert_eq!(st.furthest, 1);
        assert_eq!(st.stage, 1);
        assert_eq!(st.stage_start, 10 * H);
        assert_eq!(st.scans, 2);
        assert_eq!(st.customs_holds, 0);
        let st = state_at(0, &times, &codes, None, 31 * H);
        assert_eq!(st.furthest, 2);
        assert_eq!(st.customs_holds, 1);
        assert_eq!(st.stage_dwell(0), Some(10 * H));
        assert_eq!(st.stage_dwell(1), Some(10 * H));
    }

    #[test]
    fn carrier_estimates_before_t_only() {
        let d = 24 * H;
        let times = [0, 10 * H, 20 * H, 30 * H];
        let etas = [10 * d, NONE, 12 * d, 11 * d];
        let st = state_at(0, &times, &[0, 1, 2, 3], Some(&etas), 30 * H);
        assert_eq!((st.eta_first, st.eta_last, st.eta_updates), (10 * d, 12 * d, 1));
        let st = state_at(0, &times, &[0, 1, 2, 3], Some(&etas), 31 * H);
        assert_eq!((st.eta_last, st.eta_updates), (11 * d, 2));
        let st = state_at(0, &times, &[0, 1, 2, 3], None, 31 * H);
        assert_eq!((st.eta_first, st.eta_updates), (NONE, 0));
    }

    #[test]
    fn skipped_milestones_join_stages() {
        // PICKED_UP then straight to EXPORT_CLEARED: origin processing spans both.
        let st = state_at(0, &[5 * H, 9 * H], &[1, 3], None, i64::MAX);
        assert_eq!(st.stage_dwell(1), Some(4 * H));
        assert_eq!(st.stage_dwell(2), None);
        assert_eq!(st.stage, 3);
        assert_eq!(st.stage_start, 9 * H);
    }
}
