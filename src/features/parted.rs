//! The feature stage of a night split into parts of the network (shards, `crate::shard`), each
//! holding whole destination × service groups and computing the features of its own shipments,
//! exactly as the whole network's night computes them. What spans parts is exchanged as small
//! mergeable shares, in rounds (each part's share of a round, combined, is what every part
//! reads in the next):
//!
//! 1. `Part::start`, then `Part::window_share`: resolved shipments per day of creation (added)
//!    decide the training window (`window_days`, `Span`).
//! 2. `Part::windowed`, then `Windowed::parent_counts` (the lane tables' service groups'
//!    counts, added) and `Windowed::network_ratios` (the disruption series' supported ratios,
//!    concatenated into the network's medians).
//! 3. `Windowed::wanted_parents`: the service and global groups its sparse lanes read (united).
//! 4. `Windowed::parent_values`: those groups' values (concatenated, finished into quantiles).
//! 5. `Windowed::finish`: the part's lane tables, series, history and rows, not yet filled;
//!    `FeatureSet::history_queries` lists the seller and time of each row to fill.
//! 6. `FeatureSet::history_shares`: every part's shares of those sellers' windows, and of the
//!    network's at each distinct time (counts, exact sums, a sparse window's latest
//!    observations), merged once per query and time (`merge_history`).
//! 7. `FeatureSet::fill_queried`: the rows' features, their history merged from the shares.
//!
//! `build_parts` runs the rounds over parts held in one process; the tests compare every part's
//! rows with the whole network's, bit for bit.

use std::borrow::Cow;

use rayon::prelude::*;

use super::disruption::{self, NetworkMedians, NetworkRatios};
use super::history::{Bounds, Own, PairShare, PairWindows};
use super::lanes::{self, ParentCounts, ParentValues, Parents, Wanted};
use super::prepare::{self, Prepared};
use super::timeline::{CutoffStates, HeldVisits, Outcome};
use super::{FeatureParams, FeatureSet, Rows, Span, WindowShare, scan_states, window_days};
use crate::calendar::Night;
use crate::error::{Error, Result};
use crate::schema::MICROS_PER_DAY;
use crate::validate::CleanInput;

/// Round 1: a part's point-in-time view, scan states and outcomes at the cutoff, and every
/// shipment's visits (the span, which decides the series' reach, is not known yet).
pub struct Part {
    prep: Prepared,
    states: CutoffStates,
    outcomes: Vec<Outcome>,
    held: HeldVisits,
}

impl Part {
    pub fn start(clean: CleanInput, night: Night) -> Result<Part> {
        let prep = prepare::prepare(Cow::Owned(clean), night)?;
        let cutoff = night.cutoff();
        let (states, outcomes, held) = scan_states(&prep, cutoff, |_| true);
        Ok(Part { prep, states, outcomes, held })
    }

    /// This part's share of what decides the training window.
    pub fn window_share(&self, p: &FeatureParams) -> WindowShare {
        WindowShare::of(&self.prep, &self.outcomes, p)
    }

    /// Round 2: the part's raw disruption series and lane-statistics source for the night's
    /// `span` (from every part's window shares).
    pub fn windowed(self, span: Span, p: &FeatureParams) -> Result<Windowed> {
        let Part { prep, states, outcomes, held } = self;
        let raw = disruption::raw(&prep, &held, &p.lanes, span.first_day, span.last_day);
        drop(held);
        let earliest = span.cutoffs[0] - p.lanes.oldest_days() as i64 * MICROS_PER_DAY;
        let source = lanes::Source::new(&prep, &outcomes, earliest)?;
        Ok(Windowed { prep, states, outcomes, span, raw, source })
    }
}

/// Rounds 2 to 5: a part with its span, raw series and lane-statistics source.
pub struct Windowed {
    prep: Prepared,
    states: CutoffStates,
    outcomes: Vec<Outcome>,
    span: Span,
    raw: disruption::Raw,
    source: lanes::Source,
}

impl Windowed {
    pub fn parent_counts(&self, p: &FeatureParams) -> Result<ParentCounts> {
        self.source.parent_counts(&self.span.cutoffs, &p.lanes)
    }

    pub fn network_ratios(&self, p: &FeatureParams) -> NetworkRatios {
        self.raw.network_ratios(&p.lanes)
    }

    pub fn wanted_parents(&self, p: &FeatureParams, counts: &ParentCounts) -> Result<Wanted> {
        self.source.wanted_parents(&p.lanes, counts)
    }

    pub fn parent_values(&self, p: &FeatureParams, wanted: &Wanted) -> ParentValues {
        self.source.parent_values(&p.lanes, wanted)
    }

    /// Round 5: the part's feature set, its rows not filled yet (`fill_queried`).
    pub fn finish(self, p: &FeatureParams, parents: &Parents, network: &NetworkMedians) -> Result<FeatureSet> {
        let Windowed { prep, states, outcomes, span, raw, source } = self;
        let lane_tables = lanes::LaneTables::build_parted(&source, &p.lanes, parents)?;
        drop(source);
        let series = raw.finish(&p.lanes, network)?;
        // The parts exchange shares of the history at any time (`History::seller_share`): tracks.
        FeatureSet::assemble(prep, states, outcomes, lane_tables, series, &span, p, super::Purpose::Train)
    }
}

impl FeatureSet {
    /// Round 5's queries: the distinct (seller id, time) pairs `rows` read (scoring rows share
    /// the cutoff, so a seller's are one query), and for each row the index of its pair.
    pub fn history_queries(&self, rows: &Rows) -> (Vec<(String, i64)>, Vec<u32>) {
        let names = self.prep.seller_names();
        let of_row: Vec<(u32, i64)> =
            rows.ship.iter().zip(&rows.t).map(|(&i, &t)| (self.prep.seller[i as usize], t)).collect();
        let mut pairs = of_row.clone();
        pairs.sort_unstable();
        pairs.dedup();
        let which = of_row.iter().map(|q| pairs.binary_search(q).expect("every row's pair") as u32).collect();
        (pairs.into_iter().map(|(s, t)| (names[s as usize].clone(), t)).collect(), which)
    }

    /// Round 6: this part's shares of the windows `queries` read: each query's seller's (as
    /// far as this part has shipments of theirs), and the network's at each distinct time
    /// among them (`query_times`).
    pub fn history_shares(&self, queries: &[(String, i64)]) -> HistoryShares {
        let names = self.prep.seller_names();
        HistoryShares {
            sellers: queries
                .par_iter()
                .map(|(seller, t)| self.history.seller_share(names.binary_search(seller).ok(), *t))
                .collect(),
            network: query_times(queries).par_iter().map(|&t| self.history.network_share(t)).collect(),
        }
    }

    /// Round 7: the features of `rows`, each row's seller and network history from `windows`,
    /// merged from every part's shares of `queries` (`merge_history`): a sorted list holding
    /// every row's (seller, time), this part's own `history_queries` or the union of every
    /// part's.
    pub fn fill_queried(&self, rows: &mut Rows, queries: &[(String, i64)], windows: &HistoryWindows) -> Result<()> {
        let missing = || Error::internal("features: a row's seller and time are not among the queries shared");
        if windows.sellers.len() != queries.len() {
            return Err(Error::internal("features: merged history of other queries"));
        }
        let (mine, which) = self.history_queries(rows);
        let at: Vec<u32> = mine
            .iter()
            .map(|q| queries.binary_search(q).map(|i| i as u32).map_err(|_| missing()))
            .collect::<Result<_>>()?;
        let time: Vec<u32> = rows
            .t
            .iter()
            .map(|t| windows.times.binary_search(t).map(|i| i as u32).map_err(|_| missing()))
            .collect::<Result<_>>()?;
        let ctx = self.context();
        let seen = |r: usize| {
            let i = rows.ship[r] as usize;
            let own = Own::of(self.prep.created[i], self.states.picked_up(i), &self.outcomes[i]);
            let seller = &windows.sellers[at[which[r] as usize] as usize];
            let network = &windows.network[time[r] as usize];
            self.history.seen_merged(own, seller, network, self.prep.lane[i] as usize, rows.t[r])
        };
        let (x, extras) = super::fill_rows(&ctx, rows, |r| Some(seen(r)));
        rows.x = x;
        rows.extras = extras;
        Ok(())
    }
}

/// The distinct times among `queries` (sorted by seller then time), ascending: the network's
/// windows depend on the time only.
pub fn query_times(queries: &[(String, i64)]) -> Vec<i64> {
    let mut times: Vec<i64> = queries.iter().map(|q| q.1).collect();
    times.sort_unstable();
    times.dedup();
    times
}

/// A part's shares of the history windows some queries read (`FeatureSet::history_shares`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryShares {
    /// Per query: its seller's windows.
    pub sellers: Vec<PairShare>,
    /// Per distinct time of the queries (`query_times`): the network's windows.
    pub network: Vec<PairShare>,
}
crate::codec_struct!(HistoryShares { sellers, network });

/// The whole network's history windows for some queries, merged once from every part's shares
/// (`merge_history`): what each part's rows read (`FeatureSet::fill_queried`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryWindows {
    pub sellers: Vec<PairWindows>,
    pub times: Vec<i64>,
    pub network: Vec<PairWindows>,
}
crate::codec_struct!(HistoryWindows { sellers, times, network });

/// Every part's shares of `queries`' windows merged, once per query and once per time: added
/// up one part at a time (`HistoryShares::absorb`), then finished.
pub fn merge_history(
    queries: &[(String, i64)],
    shares: impl IntoIterator<Item = HistoryShares>,
    b: Bounds,
) -> Result<HistoryWindows> {
    let mut all = None;
    for share in shares {
        HistoryShares::fold(&mut all, share, b)?;
    }
    finish_history(queries, all.ok_or_else(|| Error::internal("features: a night of no parts"))?, b)
}

impl HistoryShares {
    /// Adds another part's shares of the same queries.
    pub fn absorb(&mut self, other: HistoryShares, b: Bounds) -> Result<()> {
        if other.sellers.len() != self.sellers.len() || other.network.len() != self.network.len() {
            return Err(Error::internal("features: a part shared the history of other queries"));
        }
        let add = |(a, o): (&mut PairShare, PairShare)| a.absorb(o, b);
        self.sellers.par_iter_mut().zip(other.sellers).for_each(add);
        self.network.par_iter_mut().zip(other.network).for_each(add);
        Ok(())
    }

    /// `share` added into `all` (the first share becomes it).
    pub fn fold(all: &mut Option<HistoryShares>, share: HistoryShares, b: Bounds) -> Result<()> {
        match all {
            None => *all = Some(share),
            Some(a) => a.absorb(share, b)?,
        }
        Ok(())
    }
}

/// The network's windows of `queries` from every part's shares added up (`HistoryShares::fold`).
pub fn finish_history(queries: &[(String, i64)], all: HistoryShares, b: Bounds) -> Result<HistoryWindows> {
    let times = query_times(queries);
    if all.sellers.len() != queries.len() || all.network.len() != times.len() {
        return Err(Error::internal("features: a part shared the history of other queries"));
    }
    Ok(HistoryWindows {
        sellers: all.sellers.par_iter().zip(queries).map(|(p, (_, t))| PairShare::merge(&[p], *t, b)).collect(),
        network: all.network.par_iter().zip(&times).map(|(p, &t)| PairShare::merge(&[p], t, b)).collect(),
        times,
    })
}

/// Adds up the parts' shares of one round with `add`, which borrows what it adds, in part order.
pub fn sum<T>(shares: impl IntoIterator<Item = T>, add: impl Fn(&mut T, &T)) -> Result<T> {
    combine(shares, |a, b| {
        add(a, &b);
        Ok(())
    })
}

/// Combines the parts' shares of one round with `add`, in part order.
pub fn combine<T>(shares: impl IntoIterator<Item = T>, add: impl Fn(&mut T, T) -> Result<()>) -> Result<T> {
    let mut shares = shares.into_iter();
    let mut all = shares.next().ok_or_else(|| Error::internal("features: a night of no parts"))?;
    for s in shares {
        add(&mut all, s)?;
    }
    Ok(all)
}

/// Every round over `parts` held in one process: each part's feature set, its scoring rows
/// filled (and its training rows too with `fill_training`), equal row for row to the whole
/// network's.
pub fn build_parts(
    parts: Vec<CleanInput>,
    p: &FeatureParams,
    night: Night,
    fill_training: bool,
) -> Result<Vec<FeatureSet>> {
    let parts: Vec<Part> = parts.into_iter().map(|c| Part::start(c, night)).collect::<Result<_>>()?;
    let share = sum(parts.iter().map(|q| q.window_share(p)), WindowShare::add)?;
    let span = Span::new(night, window_days(&share, p, night.cutoff()), p);
    let parts: Vec<Windowed> = parts.into_iter().map(|q| q.windowed(span.clone(), p)).collect::<Result<_>>()?;
    let counts = combine(parts.iter().map(|q| q.parent_counts(p)).collect::<Result<Vec<_>>>()?, ParentCounts::add)?;
    let network = combine(parts.iter().map(|q| q.network_ratios(p)), NetworkRatios::add)?.medians();
    let wanted = combine(parts.iter().map(|q| q.wanted_parents(p, &counts)).collect::<Result<Vec<_>>>()?, Wanted::add)?;
    let values = combine(parts.iter().map(|q| q.parent_values(p, &wanted)), ParentValues::add)?;
    let parents = values.finish(counts)?;
    let mut sets: Vec<FeatureSet> =
        parts.into_iter().map(|q| q.finish(p, &parents, &network)).collect::<Result<_>>()?;
    for k in 0..sets.len() {
        let mut which = vec![std::mem::take(&mut sets[k].score)];
        if fill_training {
            which.push(std::mem::take(&mut sets[k].train));
        }
        for rows in &mut which {
            let queries = sets[k].history_queries(rows).0;
            let shares = sets.iter().map(|s| s.history_shares(&queries));
            let windows = merge_history(&queries, shares, sets[k].history.bounds())?;
            sets[k].fill_queried(rows, &queries, &windows)?;
        }
        if fill_training {
            sets[k].train = which.pop().expect("the training rows");
        }
        sets[k].score = which.pop().expect("the scoring rows");
    }
    Ok(sets)
}
