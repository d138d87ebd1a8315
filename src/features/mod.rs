//! The feature stage: from clean input and a cutoff to lane statistics, training snapshots with
//! labels, and scoring rows for the shipments in flight at the cutoff.
//!
//! Where each thing is computed:
//! - PIT filtering and indexing: `prepare`
//! - shipments counted per day before the cutoff (the training and validation windows): `days`
//! - per-shipment scan state at a time t: `timeline`
//! - lane counts, quantiles, fallback and shrinkage: `lanes`
//! - recent-versus-baseline dwell ratios and disruption flags: `disruption`
//! - lane tables and series days kept from earlier nights, and when they are taken: `reuse`
//! - seller and lane leave-one-out history: `history`
//! - the feature vector itself: `snapshot`
//! - the same, computed by parts of the network (shards) exchanging what spans them: `parted`

pub mod days;
pub mod disruption;
mod grouped;
pub mod history;
pub mod lanes;
pub mod parted;
pub mod prepare;
mod radix;
mod ranks;
pub mod reuse;
pub mod snapshot;
pub mod timeline;

use polars::prelude::*;
use rayon::prelude::*;

use crate::calendar::{Holidays, Night};
use crate::config::{Config, FeatureConfig, LaneConfig};
use crate::error::Result;
use crate::io;
use crate::sampling::{hash_str, unit};
use crate::schema::{self, MICROS_PER_DAY, MICROS_PER_HOUR, N_STAGES, STAGES};
use crate::validate::CleanInput;
pub use snapshot::{FEATURE_SCHEMA_VERSION, FEATURES, N_FEATURES, feature_names};

/// Index of a named feature in the matrix; panics on a name that is not a feature (a bug).
pub fn feature_index(name: &str) -> usize {
    FEATURES.iter().position(|(n, _)| *n == name).unwrap_or_else(|| panic!("unknown feature {name}"))
}

/// What the feature stage reads from the config, checked once: the lane and feature sections,
/// the parsed holidays and the seed.
#[derive(Debug, Clone)]
pub struct FeatureParams {
    pub lanes: LaneConfig,
    pub features: FeatureConfig,
    pub holidays: Holidays,
    pub seed: u64,
    /// Resolved shipments (and of each class) the training window must hold, validation
    /// included: the model's `min_train_*` plus `min_valid_*`.
    pub window_shipments: usize,
    pub window_class: usize,
}

impl FeatureParams {
    pub fn from_config(cfg: &Config) -> Result<FeatureParams> {
        let m = &cfg.model;
        Ok(FeatureParams {
            lanes: cfg.lanes.clone(),
            features: cfg.features.clone(),
            holidays: Holidays::parse(&cfg.features.holidays)?,
            seed: cfg.pipeline.seed,
            window_shipments: m.min_train_shipments + m.min_valid_shipments,
            window_class: m.min_train_class + m.min_valid_class,
        })
    }
}

/// The training window in days: `train_window_days`, or longer until the shipments resolved
/// before the cutoff and created inside it number `need` with `need_class` of each class,
/// at most `lanes.max_window_days`. Counted per day of creation (`days`): the window ends on
/// the first day, counting back, by which the resolved shipments created since suffice.
fn training_window_days(prep: &prepare::Prepared, outcomes: &[timeline::Outcome], p: &FeatureParams) -> u32 {
    window_days(&WindowShare::of(prep, outcomes, p), p, prep.night.cutoff())
}

/// What the training window is decided from: resolved shipments per day of creation (days
/// past the longest window in one bucket) and the oldest creation. A sharded night's parts
/// each count their own, and the counts add (`add`).
#[derive(Debug, Clone)]
pub struct WindowShare {
    counts: days::DayCounts,
    oldest: Option<i64>,
}
crate::codec_struct!(WindowShare { counts, oldest });

impl WindowShare {
    pub fn of(prep: &prepare::Prepared, outcomes: &[timeline::Outcome], p: &FeatureParams) -> WindowShare {
        let cutoff = prep.night.cutoff();
        let max = p.lanes.oldest_days().max(p.features.train_window_days);
        // Days past `max` all give `max`: one bucket holds them.
        let counts = days::DayCounts::count(prep.len(), max + 1, |i| {
            outcomes[i].resolved.then(|| (days::days_before(cutoff, prep.created[i]), outcomes[i].late))
        });
        WindowShare { counts, oldest: prep.created.iter().copied().min() }
    }

    pub fn add(&mut self, other: &WindowShare) {
        self.counts.merge(&other.counts);
        self.oldest = self.oldest.into_iter().chain(other.oldest).min();
    }
}

/// The training window in days from the whole network's `WindowShare`.
pub fn window_days(share: &WindowShare, p: &FeatureParams, cutoff: i64) -> u32 {
    let min = p.features.train_window_days;
    let max = p.lanes.oldest_days().max(min);
    if let Some(day) = share.counts.first_day_with(p.window_shipments as u64, p.window_class as u64) {
        return day.clamp(min, max);
    }
    // The whole history is short of the target: all of it, as far as the maximum allows.
    let oldest = share.oldest.unwrap_or(cutoff);
    (((cutoff - oldest + MICROS_PER_DAY - 1) / MICROS_PER_DAY).max(0) as u32).clamp(min, max)
}

/// What the training window decides: its days and start, the lane tables' cutoffs and the
/// disruption series' days.
#[derive(Debug, Clone)]
pub struct Span {
    pub train_days: u32,
    pub train_from: i64,
    /// Lane statistics at the cutoffs of the nights on a calendar grid of `stats_every_days`
    /// (`Night::grid_cutoffs_through`: with 7, the Mondays, the weekly training nights) up to
    /// and including the night, across the training window, ascending. Training snapshots read
    /// the latest at or before their time, and the night scores and publishes the last one (its
    /// own on a grid night, its week's Monday's otherwise): every night of a week reads the same
    /// tables, which the state keeps, so a night off the grid computes none (issue 13, item 4),
    /// and the staleness of what scoring reads is the staleness training saw.
    pub cutoffs: Vec<i64>,
    pub step: i64,
    pub first_day: i64,
    pub last_day: i64,
}

impl Span {
    pub fn new(night: Night, train_days: u32, p: &FeatureParams) -> Span {
        let cutoff = night.cutoff();
        let train_from = cutoff - train_days as i64 * MICROS_PER_DAY;
        let step = p.features.stats_every_days.max(1) as i64 * MICROS_PER_DAY;
        let mut cutoffs: Vec<i64> =
            night.grid_cutoffs_through(p.features.stats_every_days).take_while(|c| *c > train_from - step).collect();
        cutoffs.reverse();
        let last_day = night.cutoff_day();
        Span { train_days, train_from, cutoffs, step, first_day: last_day - train_days as i64 - 1, last_day }
    }
}

/// A set of (shipment, time) rows with their feature matrix (row-major, `N_FEATURES` wide).
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub ship: Vec<u32>,
    pub t: Vec<i64>,
    pub x: Vec<f64>,
    pub extras: Vec<snapshot::Extras>,
    /// Training rows only: late or not, and when that became known.
    pub label: Vec<bool>,
    pub resolved_at: Vec<i64>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.ship.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ship.is_empty()
    }
    pub fn row(&self, r: usize) -> &[f64] {
        &self.x[r * N_FEATURES..(r + 1) * N_FEATURES]
    }
}

pub struct FeatureSet {
    /// The point-in-time view; it carries the night.
    pub prep: prepare::Prepared,
    /// Scan states at the cutoff: whole for the shipments in flight (see `CutoffStates`).
    pub states: timeline::CutoffStates,
    pub outcomes: Vec<timeline::Outcome>,
    /// Lane statistics as of the cutoff and earlier cutoffs, for training snapshots.
    pub lane_tables: lanes::LaneTables,
    pub series: disruption::Series,
    pub history: history::History,
    pub train: Rows,
    pub score: Rows,
    pub holidays: Holidays,
    /// Days of creation the training snapshots cover (`train_window_days` or more).
    pub train_window_days: u32,
    /// Per lane, its disrupted stage with the highest ratio as of the night, if any.
    disrupted: Vec<Option<usize>>,
    /// `Score`: no training rows, and no feature rows but at the cutoff.
    pub purpose: Purpose,
    /// Set by `release_row_sources`: no new feature row can be computed.
    released: bool,
    /// Lane tables and series days taken from earlier nights or computed, and the ones to keep
    /// for later nights.
    pub reused: reuse::Reused,
}

/// What a feature set is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Training and scoring: training rows are drawn, and the history answers at any time.
    Train,
    /// Scoring alone, for a night whose model comes from elsewhere (kept, saved, or trained on
    /// its training night's own features): no training rows, and the history is kept for the
    /// cutoff alone (`History::at_cutoff`), where the scoring rows read it. The same scoring
    /// rows as `Train` gives, bit for bit.
    Score,
}

/// Builds every feature as of `night`.
pub fn build(clean: &CleanInput, p: &FeatureParams, night: Night) -> Result<FeatureSet> {
    build_keeping(std::borrow::Cow::Borrowed(clean), p, night, None, Purpose::Train)
}

/// `build` for a caller that is done with the input: its arrays are reused, not copied, which
/// lowers the nightly run's peak memory.
pub fn build_owned(clean: CleanInput, p: &FeatureParams, night: Night) -> Result<FeatureSet> {
    build_keeping(std::borrow::Cow::Owned(clean), p, night, None, Purpose::Train)
}

/// `build`, taking the lane tables and series days `kept` from earlier nights where they still
/// hold (see `reuse`), and handing on the ones to keep (`FeatureSet::reused`); for `purpose`.
pub fn build_keeping(
    clean: std::borrow::Cow<'_, CleanInput>,
    p: &FeatureParams,
    night: Night,
    kept: Option<&reuse::Kept>,
    purpose: Purpose,
) -> Result<FeatureSet> {
    let t0 = std::time::Instant::now();
    let log = |step: &str| crate::memory::log_step("features", step, t0);
    let lane_cfg = &p.lanes;
    let cutoff = night.cutoff();
    let prep = prepare::prepare(clean, night)?;
    log("prepare");
    // The series reads the visits of shipments with a stage exit since its first computed
    // day's window (`disruption::earliest`). Which day that is is known once the kept days are
    // checked, after the states: they are held from the day after the latest kept series day
    // (an incremental night's own), or every shipment's when none is kept; should the kept
    // days not hold that far, the series takes them again (`hold_visits`).
    let guess =
        kept.and_then(|k| k.days.iter().map(|d| d.day.saturating_add(1)).max()).map(|d| d.min(night.cutoff_day()));
    let hold_from = guess.map_or(i64::MIN, |d| disruption::earliest(lane_cfg, d));
    let (states, outcomes, held) = scan_states(&prep, cutoff, disruption::reads_visits_from(hold_from));
    log("states");
    let span = Span::new(night, training_window_days(&prep, &outcomes, p), p);
    let Span { step, first_day, last_day, .. } = span;
    // What earlier nights kept (lane tables, series days) is taken where it still holds.
    let check = kept.map(|k| reuse::Check::new(&prep, k, &span.cutoffs, first_day, last_day, step)).transpose()?;
    log("digests");
    let mut reused = reuse::Reused::default();
    let held = |from: i64| {
        let earliest = disruption::earliest(lane_cfg, from);
        if earliest >= hold_from {
            return held;
        }
        drop(held);
        hold_visits(&prep, cutoff, disruption::reads_visits_from(earliest))
    };
    // The series is the last reader of the held visits: they are dropped before the lane
    // tables and the history are built, so neither adds its memory to theirs (the lane-table
    // source scans its rows again instead).
    let series = reuse::series(&prep, held, lane_cfg, first_day, last_day, check.as_ref(), &mut reused);
    crate::memory::release_free_memory();
    log("series");
    let lane_tables =
        reuse::lane_tables(&prep, &outcomes, span.cutoffs.clone(), lane_cfg, check.as_ref(), &mut reused)?;
    drop(check);
    crate::memory::release_free_memory();
    log("lane_tables");
    let mut fs = FeatureSet::assemble(prep, states, outcomes, lane_tables, series, &span, p, purpose)?;
    log("history");
    fs.reused = reused;
    // Training rows get features on demand (`features_of`): the model reads a sample of them.
    let mut score = std::mem::take(&mut fs.score);
    fill(&fs.context(), &mut score);
    fs.score = score;
    log("fill_score");
    Ok(fs)
}

impl FeatureSet {
    /// A night's feature set from its view, states, outcomes, lane tables and series: the
    /// seller and lane history, the training rows (for `Purpose::Train`) and the scoring rows
    /// (the shipments in flight), none of them filled yet.
    #[allow(clippy::too_many_arguments)]
    fn assemble(
        prep: prepare::Prepared,
        states: timeline::CutoffStates,
        outcomes: Vec<timeline::Outcome>,
        lane_tables: lanes::LaneTables,
        series: disruption::Series,
        span: &Span,
        p: &FeatureParams,
        purpose: Purpose,
    ) -> Result<FeatureSet> {
        let (history, train) = match purpose {
            Purpose::Train => (
                history::History::build(&prep, &states, &outcomes, &p.lanes, p.features.prior_strength),
                training_rows(&prep, &outcomes, span.train_from, p)?,
            ),
            Purpose::Score => (
                history::History::at_cutoff(&prep, &states, &outcomes, &p.lanes, p.features.prior_strength),
                Rows::default(),
            ),
        };
        let cutoff = prep.night.cutoff();
        let score =
            Rows { ship: states.in_flight().to_vec(), t: vec![cutoff; states.in_flight().len()], ..Rows::default() };
        let disrupted = (0..prep.lanes.len()).map(|l| worst_disrupted_stage(&series, l, span.last_day, 0)).collect();
        Ok(FeatureSet {
            prep,
            states,
            outcomes,
            lane_tables,
            series,
            history,
            train,
            score,
            holidays: p.holidays.clone(),
            train_window_days: span.train_days,
            disrupted,
            purpose,
            released: false,
            reused: reuse::Reused::default(),
        })
    }
}

/// Training snapshots: for each shipment resolved before the cutoff and created since `since`,
/// `snapshots_per_shipment` times drawn by seeded hash over its life (before its outcome).
fn training_rows(
    prep: &prepare::Prepared,
    outcomes: &[timeline::Outcome],
    since: i64,
    p: &FeatureParams,
) -> Result<Rows> {
    let (n, cutoff) = (prep.len(), prep.night.cutoff());
    let feat_cfg = &p.features;
    let ids = prep.shipments.column("shipment_id")?.str()?.clone();
    let k = feat_cfg.snapshots_per_shipment as usize;
    let seed = p.seed;
    // Each shipment's snapshot span, or None: resolved, created inside the window, and alive
    // more than an hour before its outcome (after delivery, return or promise there is
    // nothing to predict).
    let span = |i: usize| -> Option<(i64, i64)> {
        let o = &outcomes[i];
        let (start, end) = (prep.created[i] + MICROS_PER_HOUR, o.resolved_at.min(cutoff));
        (o.resolved && prep.created[i] >= since && end > start).then_some((start, end))
    };
    // Drawn in parallel over blocks of shipments into their own slices of rows sized once (17M
    // rows at 10M shipments): a first pass counts each block's rows.
    const BLOCK: usize = 1 << 16;
    let blocks: Vec<std::ops::Range<usize>> = (0..n).step_by(BLOCK).map(|a| a..(a + BLOCK).min(n)).collect();
    let counts: Vec<usize> = blocks.par_iter().map(|b| b.clone().filter(|&i| span(i).is_some()).count() * k).collect();
    let snapshots: usize = counts.iter().sum();
    let mut train = Rows {
        ship: vec![0; snapshots],
        t: vec![0; snapshots],
        label: vec![false; snapshots],
        resolved_at: vec![0; snapshots],
        ..Rows::default()
    };
    let slot_names: Vec<String> = (0..k).map(|j| j.to_string()).collect();
    {
        let mut parts = Vec::with_capacity(blocks.len());
        let (mut ship, mut t, mut label, mut resolved_at) =
            (&mut train.ship[..], &mut train.t[..], &mut train.label[..], &mut train.resolved_at[..]);
        for (b, &c) in blocks.iter().zip(&counts) {
            let (s0, s1) = ship.split_at_mut(c);
            let (t0, t1) = t.split_at_mut(c);
            let (l0, l1) = label.split_at_mut(c);
            let (r0, r1) = resolved_at.split_at_mut(c);
            parts.push((b.clone(), s0, t0, l0, r0));
            (ship, t, label, resolved_at) = (s1, t1, l1, r1);
        }
        parts.into_par_iter().for_each(|(b, ship, t, label, resolved_at)| {
            let mut at = 0;
            for i in b {
                let Some((start, end)) = span(i) else { continue };
                let h = hash_str(seed, ids.get(i).unwrap_or(""));
                for (j, name) in slot_names.iter().enumerate() {
                    // One draw per equal slice of the life, so snapshots cover early and late stages.
                    let u = (j as f64 + unit(hash_str(h, name))) / k as f64;
                    let draw = start + ((end - start) as f64 * u) as i64;
                    (ship[at], t[at], label[at]) = (i as u32, draw.min(end - 1), outcomes[i].late);
                    resolved_at[at] = outcomes[i].resolved_at;
                    at += 1;
                }
            }
        });
    }
    Ok(train)
}

/// Every visible shipment's scan state at `t` (the cutoff: events before it are all `prep`
/// has), taken once (`timeline::take_states`): what later stages read of it, the outcomes, and
/// the visits of the shipments `hold` asks for.
pub fn scan_states(
    prep: &prepare::Prepared,
    t: i64,
    hold: impl Fn(&timeline::State) -> bool + Sync,
) -> (timeline::CutoffStates, Vec<timeline::Outcome>, timeline::HeldVisits) {
    timeline::take_states(&prep.promised, t, |i| state_of(prep, i, t), hold)
}

/// The visits at `t` of the shipments `hold` asks for, alone.
pub fn hold_visits(
    prep: &prepare::Prepared,
    t: i64,
    hold: impl Fn(&timeline::State) -> bool + Sync,
) -> timeline::HeldVisits {
    timeline::hold_visits(prep.len(), |i| state_of(prep, i, t), hold)
}

fn state_of(prep: &prepare::Prepared, i: usize, t: i64) -> timeline::State {
    let (times, codes) = prep.events(i);
    timeline::state_at(prep.created[i], times, codes, prep.etas(i), t)
}

/// The disrupted stage of lane `l` at or after stage `from` with the highest ratio as of cutoff
/// day `day` (the earlier stage on a tie).
fn worst_disrupted_stage(series: &disruption::Series, l: usize, day: i64, from: usize) -> Option<usize> {
    (from..N_STAGES)
        .filter(|&s| series.at(l, s, day).disrupted)
        .max_by(|&a, &b| series.at(l, a, day).ratio.total_cmp(&series.at(l, b, day).ratio).then(b.cmp(&a)))
}

fn fill(ctx: &snapshot::Context, rows: &mut Rows) {
    let (x, extras) = fill_rows(ctx, rows, |_| None);
    rows.x = x;
    rows.extras = extras;
}

/// The features and extras of `rows`, row-major, with `seen(r)` as row r's seller and lane
/// history when given (else the context's).
fn fill_rows(
    ctx: &snapshot::Context,
    rows: &Rows,
    seen: impl Fn(usize) -> Option<history::Seen> + Sync,
) -> (Vec<f64>, Vec<snapshot::Extras>) {
    let mut x = vec![0.0; rows.len() * N_FEATURES];
    let extras = x
        .par_chunks_mut(N_FEATURES)
        .enumerate()
        .map(|(r, out)| ctx.features_seen(rows.ship[r] as usize, rows.t[r], out, seen(r)))
        .collect();
    (x, extras)
}

/// A lane flagged disrupted as of the night (`FeatureSet::disrupted`): its worst stage (index
/// into `STAGES`), the cutoff day its disruption started, and the series' point that night.
#[derive(Debug, Clone, PartialEq)]
pub struct Disrupted {
    pub lane: prepare::LaneKey,
    pub stage: usize,
    pub since: Option<i64>,
    pub recent_p50: f64,
    pub baseline_p50: f64,
    pub ratio: f64,
    pub recent_n: u32,
}
crate::codec_struct!(Disrupted { lane, stage, since, recent_p50, baseline_p50, ratio, recent_n });

impl FeatureSet {
    /// The night these features are as of.
    pub fn night(&self) -> Night {
        self.prep.night
    }

    /// The knowledge cutoff in µs.
    pub fn cutoff(&self) -> i64 {
        self.prep.night.cutoff()
    }

    /// The index of shipment `id`. Shipment ids are unique and sorted (validation sorts them),
    /// so a few ids are found by binary search rather than by indexing every shipment.
    pub fn find_shipment(&self, id: &str) -> Option<usize> {
        let ids = self.prep.shipments.column("shipment_id").ok()?.str().ok()?;
        let (mut lo, mut hi) = (0usize, ids.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match ids.get(mid).unwrap_or("").cmp(id) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// Whether shipment `id` turned out late, when its outcome is known before the cutoff.
    pub fn known_outcome(&self, id: &str) -> Option<bool> {
        let i = self.find_shipment(id)?;
        let o = &self.outcomes[i];
        o.resolved.then_some(o.late)
    }

    /// Per lane (index into `prep.lanes`), its worst disrupted stage as of the night, if any.
    pub fn disrupted_lanes(&self) -> &[Option<usize>] {
        &self.disrupted
    }

    /// Lane `l`'s worst disrupted stage at or after stage `from` as of the night: of a parcel
    /// in stage `from`, the disruption still ahead of it. (The lane's worst stage overall may be
    /// one the parcel has passed while a later one is disrupted too.)
    pub fn disrupted_ahead(&self, l: usize, from: usize) -> Option<usize> {
        worst_disrupted_stage(&self.series, l, self.night().cutoff_day(), from)
    }

    /// The lanes flagged disrupted as of the night, in lane order, as the report and the run's
    /// summary show them.
    pub fn disrupted(&self) -> Vec<Disrupted> {
        let day = self.night().cutoff_day();
        self.disrupted
            .iter()
            .enumerate()
            .filter_map(|(l, worst)| {
                let s = (*worst)?;
                let pt = self.series.at(l, s, day);
                Some(Disrupted {
                    lane: self.prep.lanes[l].clone(),
                    stage: s,
                    since: self.series.disrupted_since(l, s, day),
                    recent_p50: pt.recent_p50,
                    baseline_p50: pt.baseline_p50,
                    ratio: pt.ratio,
                    recent_n: pt.recent_n,
                })
            })
            .collect()
    }

    fn context(&self) -> snapshot::Context<'_> {
        assert!(!self.released, "feature rows asked for after release_row_sources");
        snapshot::Context::new(
            &self.prep,
            &self.states,
            &self.outcomes,
            &self.lane_tables,
            &self.history,
            &self.series,
            &self.holidays,
        )
    }

    /// Frees what only computing new feature rows reads (the events, the seller and lane
    /// history, the training rows), for a caller done with training whose scoring rows are
    /// filled: the alerts, advice and outputs never read them, and at 10M shipments they are
    /// 2.4 GB. Asking for feature rows afterwards is a bug (a panic).
    pub fn release_row_sources(&mut self) {
        self.prep.release_events();
        self.release_history_and_training_rows();
    }

    /// `release_row_sources` but for the events, which a training night's features computed on
    /// a lent input hand back (`prepare::lend`): what its advice, computed after training, does
    /// not need. Held through it, at 10M shipments, they raised the night's peak from 3.8 to
    /// 4.7 GB.
    pub fn release_history_and_training_rows(&mut self) {
        self.history = history::History::default();
        self.train = Rows::default();
        self.released = true;
        crate::memory::release_free_memory();
    }

    /// Computes the features of every training row (the `features` command writes them all).
    pub fn fill_training(&mut self) {
        let mut train = std::mem::take(&mut self.train);
        fill(&self.context(), &mut train);
        self.train = train;
    }

    /// Features of rows `idx` of `rows`, row-major; taken from `rows.x` when already filled.
    pub fn features_of(&self, rows: &Rows, idx: &[usize]) -> Vec<f64> {
        if rows.x.len() == rows.len() * N_FEATURES {
            return idx.iter().flat_map(|&r| rows.row(r).iter().copied()).collect();
        }
        let ctx = self.context();
        let mut x = vec![0.0; idx.len() * N_FEATURES];
        x.par_chunks_mut(N_FEATURES).zip(idx.par_iter()).for_each(|(out, &r)| {
            ctx.features_at(rows.ship[r] as usize, rows.t[r], out);
        });
        x
    }

    /// Features for arbitrary (shipment index, time ≤ cutoff) pairs, through the same code path
    /// as training and scoring rows; for evaluations at chosen points of a shipment's life.
    pub fn rows_at(&self, pairs: &[(u32, i64)]) -> Rows {
        let ctx = self.context();
        let mut rows = Rows {
            ship: pairs.iter().map(|p| p.0).collect(),
            t: pairs.iter().map(|p| p.1.min(self.cutoff())).collect(),
            ..Rows::default()
        };
        fill(&ctx, &mut rows);
        rows
    }

    /// `lanes.parquet`: one row per lane seen before the cutoff, sorted by lane.
    pub fn lanes_frame(&self) -> Result<DataFrame> {
        let p = &self.prep;
        let n = p.lanes.len();
        let day = self.night().cutoff_day();
        let mut in_flight = vec![0u32; n];
        for &i in &self.score.ship {
            in_flight[p.lane[i as usize] as usize] += 1;
        }
        let f = |g: &dyn Fn(usize) -> f64| -> Vec<f64> { (0..n).map(g).collect() };
        let mut cols = vec![
            Column::new("origin".into(), p.lanes.iter().map(|l| l.origin.as_str()).collect::<Vec<_>>()),
            Column::new("destination".into(), p.lanes.iter().map(|l| l.destination.as_str()).collect::<Vec<_>>()),
            Column::new("service".into(), p.lanes.iter().map(|l| l.service.as_str()).collect::<Vec<_>>()),
            io::date_column("stats_as_of", vec![Some(self.stats_as_of_day()); n]),
            Column::new("shipments".into(), self.lanes().iter().map(|l| l.shipments as i64).collect::<Vec<_>>()),
            Column::new("delivered".into(), self.lanes().iter().map(|l| l.delivered as i64).collect::<Vec<_>>()),
            Column::new("late".into(), self.lanes().iter().map(|l| l.late as i64).collect::<Vec<_>>()),
            Column::new("in_flight".into(), in_flight.iter().map(|&v| v as i64).collect::<Vec<_>>()),
            Column::new("on_time_rate".into(), f(&|l| self.lanes()[l].on_time_rate)),
            Column::new("fallback_level".into(), self.lanes().iter().map(|l| l.level.name()).collect::<Vec<_>>()),
            Column::new("window_days".into(), f(&|l| self.lanes()[l].window_days)),
            Column::new(
                "milestones_tracked".into(),
                self.lanes().iter().map(|l| l.milestones_tracked as i32).collect::<Vec<_>>(),
            ),
        ];
        for (q, name) in [(0, "p50"), (1, "p90"), (2, "p95")] {
            cols.push(Column::new(
                format!("transit_{name}_days").into(),
                f(&|l| self.lanes()[l].v[lanes::Q_TRANSIT + q]),
            ));
        }
        for (q, name) in [(0, "p50"), (1, "p90"), (2, "p95")] {
            cols.push(Column::new(
                format!("transit_from_scan_{name}_days").into(),
                f(&|l| self.lanes()[l].v[lanes::Q_TRANSIT_SCAN + q]),
            ));
        }
        for (s, st) in STAGES.iter().enumerate() {
            cols.push(Column::new(format!("{}_p50_days", st.key).into(), f(&|l| self.lanes()[l].dwell_p50(s))));
            cols.push(Column::new(format!("{}_p90_days", st.key).into(), f(&|l| self.lanes()[l].dwell_p90(s))));
        }
        for (s, st) in STAGES.iter().enumerate() {
            let pts: Vec<&disruption::Point> = (0..n).map(|l| self.series.at(l, s, day)).collect();
            cols.push(Column::new(
                format!("{}_recent_p50_days", st.key).into(),
                pts.iter().map(|p| p.recent_p50.is_finite().then_some(p.recent_p50)).collect::<Vec<_>>(),
            ));
            cols.push(Column::new(
                format!("{}_baseline_p50_days", st.key).into(),
                pts.iter().map(|p| p.baseline_p50.is_finite().then_some(p.baseline_p50)).collect::<Vec<_>>(),
            ));
            cols.push(Column::new(
                format!("{}_recent_n", st.key).into(),
                pts.iter().map(|p| p.recent_n as i64).collect::<Vec<_>>(),
            ));
            cols.push(Column::new(format!("{}_ratio", st.key).into(), pts.iter().map(|p| p.ratio).collect::<Vec<_>>()));
        }
        let (mut disrupted, mut stage, mut since, mut ratio) = (vec![], vec![], vec![], vec![]);
        for l in 0..n {
            let worst = self.disrupted[l];
            disrupted.push(worst.is_some());
            stage.push(worst.map(|s| STAGES[s].key));
            since.push(
                worst
                    .and_then(|s| self.series.disrupted_since(l, s, day))
                    .map(crate::calendar::as_of_day_of_cutoff_day),
            );
            ratio.push((0..N_STAGES).map(|s| self.series.at(l, s, day).ratio).fold(1.0, f64::max));
        }
        cols.push(Column::new("disruption_ratio".into(), ratio));
        cols.push(Column::new("disrupted".into(), disrupted));
        cols.push(Column::new("disrupted_stage".into(), stage));
        cols.push(io::date_column("disrupted_since", since));
        let df = DataFrame::new(n, cols)?;
        schema::outputs::check("lanes.parquet", &df, &schema::outputs::lanes())?;
        Ok(df)
    }

    /// Lane statistics as of the latest cutoff on the grid at or before the night's (`Span`):
    /// what the night scores with and publishes.
    pub fn lanes(&self) -> &[lanes::LaneStats] {
        self.lane_tables.latest()
    }

    /// The as-of day (a Date column value) of the night whose cutoff `lanes` is as of.
    fn stats_as_of_day(&self) -> i32 {
        let cutoff = *self.lane_tables.cutoffs.last().expect("at least one lane table");
        crate::calendar::as_of_day_of_cutoff_day(crate::calendar::day_index(cutoff))
    }

    /// A feature table: identifying columns, then every feature. Training tables add the label.
    pub fn rows_frame(&self, rows: &Rows, with_label: bool) -> Result<DataFrame> {
        let idx = IdxCa::from_vec("idx".into(), rows.ship.iter().map(|&i| i as IdxSize).collect());
        let base = ["shipment_id", "seller_id", "origin", "destination", "service"];
        let mut df =
            DataFrame::new(idx.len(), base.iter().map(|c| self.prep.column(c, &idx)).collect::<Result<Vec<_>>>()?)?;
        df.with_column(io::ts_column_req("snapshot_at", rows.t.clone()))?;
        if with_label {
            df.with_column(Column::new("late".into(), rows.label.clone()))?;
            df.with_column(io::ts_column_req("resolved_at", rows.resolved_at.clone()))?;
        }
        for (j, (name, _)) in FEATURES.iter().enumerate() {
            let v: Vec<f64> = (0..rows.len()).map(|r| rows.x[r * N_FEATURES + j]).collect();
            df.with_column(Column::new((*name).into(), v))?;
        }
        Ok(df)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: an alert kept the lane's worst disrupted stage only when the parcel had not
    /// passed it, so a parcel between two disrupted stages lost the one still ahead of it.
    #[test]
    fn the_worst_disruption_ahead_skips_the_stages_passed() {
        let day = 100;
        let point = |ratio: f64, disrupted: bool| disruption::Point { ratio, disrupted, ..Default::default() };
        let mut stages: [Vec<disruption::Point>; N_STAGES] = Default::default();
        for (s, v) in stages.iter_mut().enumerate() {
            // Stage 0 disrupted at 2.4, stage 4 at 1.8, stage 2 raised but not flagged.
            v.push(match s {
                0 => point(2.4, true),
                2 => point(3.0, false),
                4 => point(1.8, true),
                _ => point(1.0, false),
            });
        }
        let series = disruption::Series { first_day: day, last_day: day, points: vec![stages] };
        assert_eq!(worst_disrupted_stage(&series, 0, day, 0), Some(0));
        assert_eq!(worst_disrupted_stage(&series, 0, day, 1), Some(4));
        assert_eq!(worst_disrupted_stage(&series, 0, day, 3), Some(4));
        assert_eq!(worst_disrupted_stage(&series, 0, day, 5), None);
    }
}
