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
//! 6. `FeatureSet::history_shares`: every part's shares of those sellers' and the network's
//!    windows (counts, exact sums, a sparse window's latest observations).
//! 7. `FeatureSet::fill_queried`: the rows' features, their history merged from the shares.
//!
//! `build_parts` runs the rounds over parts held in one process; the tests compare every part's
//! rows with the whole network's, bit for bit.

use std::borrow::Cow;

use rayon::prelude::*;

use super::disruption::{self, NetworkMedians, NetworkRatios};
use super::history::{Own, SharedParts};
use super::lanes::{self, ParentCounts, ParentValues, Parents, Wanted};
use super::prepare::{self, Prepared};
use super::timeline::{self, CutoffStates, Outcome, State};
use super::{FeatureParams, FeatureSet, Rows, Span, WindowShare, states_at, window_days};
use crate::calendar::Night;
use crate::error::{Error, Result};
use crate::schema::MICROS_PER_DAY;
use crate::validate::CleanInput;

/// Round 1: a part's point-in-time view, scan states and outcomes at the cutoff.
pub struct Part {
    prep: Prepared,
    states: Vec<State>,
    outcomes: Vec<Outcome>,
}

impl Part {
    pub fn start(clean: CleanInput, night: Night) -> Result<Part> {
        let prep = prepare::prepare(Cow::Owned(clean), night)?;
        let cutoff = night.cutoff();
        let states = states_at(&prep, cutoff);
        let outcomes = (0..prep.len()).map(|i| timeline::outcome(&states[i], prep.promised[i], cutoff)).collect();
        Ok(Part { prep, states, outcomes })
    }

    /// This part's share of what decides the training window.
    pub fn window_share(&self, p: &FeatureParams) -> WindowShare {
        WindowShare::of(&self.prep, &self.outcomes, p)
    }

    /// Round 2: the part's raw disruption series and lane-statistics source for the night's
    /// `span` (from every part's window shares).
    pub fn windowed(self, span: Span, p: &FeatureParams) -> Result<Windowed> {
        let Part { prep, states, outcomes } = self;
        let raw = disruption::raw(&prep, &states, &p.lanes, span.first_day, span.last_day);
        let states = CutoffStates::new(states);
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
        FeatureSet::assemble(prep, states, outcomes, lane_tables, series, &span, p)
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

    /// Round 6: this part's shares of the windows each query reads (its seller's, as far as
    /// this part has shipments of theirs, and the network's).
    pub fn history_shares(&self, queries: &[(String, i64)]) -> Vec<SharedParts> {
        let names = self.prep.seller_names();
        queries.par_iter().map(|(seller, t)| self.history.shared_parts(names.binary_search(seller).ok(), *t)).collect()
    }

    /// Round 7: the features of `rows`, each row's seller and network history merged from
    /// every part's shares of its query: `shares[part][q]` are the shares of `queries[q]`, a
    /// sorted list holding every row's (seller, time), this part's own `history_queries` or
    /// the union of every part's.
    pub fn fill_queried(&self, rows: &mut Rows, queries: &[(String, i64)], shares: &[Vec<SharedParts>]) -> Result<()> {
        let (mine, which) = self.history_queries(rows);
        let at: Vec<u32> = mine
            .iter()
            .map(|q| queries.binary_search(q).map(|i| i as u32))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| Error::internal("features: a row's seller and time are not among the queries shared"))?;
        let which: Vec<u32> = which.iter().map(|&w| at[w as usize]).collect();
        self.fill_parted(rows, &which, shares)
    }

    /// `fill_queried` with each row's query given by its index (`shares[part][which[row]]`).
    fn fill_parted(&self, rows: &mut Rows, which: &[u32], shares: &[Vec<SharedParts>]) -> Result<()> {
        let queries = shares.first().map_or(0, Vec::len);
        if which.len() != rows.len()
            || shares.iter().any(|s| s.len() != queries)
            || which.iter().any(|&q| q as usize >= queries)
        {
            return Err(Error::internal("features: history shares of other rows"));
        }
        let ctx = self.context();
        let seen = |r: usize| {
            let i = rows.ship[r] as usize;
            let own = Own::of(self.prep.created[i], self.states.picked_up(i), &self.outcomes[i]);
            let row: Vec<&SharedParts> = shares.iter().map(|s| &s[which[r] as usize]).collect();
            self.history.seen_from(own, &row, self.prep.lane[i] as usize, rows.t[r])
        };
        let (x, extras) = super::fill_rows(&ctx, rows, |r| Some(seen(r)));
        rows.x = x;
        rows.extras = extras;
        Ok(())
    }
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
            let shares: Vec<Vec<SharedParts>> = sets.iter().map(|s| s.history_shares(&queries)).collect();
            sets[k].fill_queried(rows, &queries, &shares)?;
        }
        if fill_training {
            sets[k].train = which.pop().expect("the training rows");
        }
        sets[k].score = which.pop().expect("the scoring rows");
    }
    Ok(sets)
}
