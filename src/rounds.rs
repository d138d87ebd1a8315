//! A sharded night's features and model computed by the shards, in rounds through files (README
//! "Running on a cluster"). After `run --shard i/N` has written shard i's validated input to
//! the partials folder (`partials`), every round is two steps:
//!
//! 1. each shard computes its share of the round from its own input and the rounds merged
//!    before (`shard_round`), and writes `PARTIALS/round-NAME/shard-i-of-N.bin`;
//! 2. one merge combines the N shares (`merge_round`) into `PARTIALS/round-NAME/merged.bin`,
//!    which every shard reads in the next round.
//!
//! The rounds, and what goes through each (the shares are those of `features::parted` and
//! `model::parts`, exact: counts, integer sums, value lists, keys):
//!
//! | round          | a shard sends                                   | the merge keeps                      |
//! |----------------|-------------------------------------------------|--------------------------------------|
//! | `window`       | resolved shipments per day of creation          | the training window's days           |
//! | `parents`      | service groups' counts; disruption ratios       | the counts; the network's medians    |
//! | `wanted`       | service and global groups its sparse lanes read | their union                          |
//! | `values`       | those groups' values                            | their quantiles (`Parents`)          |
//! | `queries`      | last resolution day; its scoring rows' sellers  | the latest day; the sellers, sorted  |
//! | `shares`       | resolutions per day; history shares of the queries | the validation window; the queries' history windows, merged |
//! | `split`        | training rows before and in the validation window | their sums                         |
//! | `offer`        | its first rows of each sample: keys and labels  | the rows drawn, and their sellers    |
//! | `train-shares` | history shares of the drawn rows' queries       | their history windows, merged       |
//! | `train-rows`   | the features of its drawn rows                  | the model, trained once              |
//! | `score`        | its rows' risk and alerts; its cap share (`alerts::parted`); its lanes | scores, alerts capped across shards, recovered, lane alerts, lanes |
//! | `advice-pools` | its service pools' observations (`advice::Part`) | each service's window; every lane   |
//! | `advice`       | its advice rows, those service pools read        | the advice tables, services ranked across shards |
//!
//! A shard reads its own input again each round (rounds are separate processes, on any
//! machine) and the merged results it needs. History shares are a seller's windows per query
//! (seller, time) and the network's per distinct time; the merge combines them once per query
//! and time, so a shard reads one merged window pair per query, not every shard's shares. Each file carries the tool version, night, config digest, round and shard, and a
//! BLAKE3 of its bytes: a round refuses (exit 65, nothing written) a missing, corrupt or
//! mismatched file. A file is written through a rename, so a retried shard replaces its share
//! with the same bytes. The model and every shard's risks equal the single run's, bit for bit
//! (tests/integration/shards.rs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::advice;
use crate::alerts;
use crate::calendar::Night;
use crate::codec::{Codec, Reader};
use crate::error::{Error, Result};
use crate::features::days::DayCounts;
use crate::features::disruption::{NetworkMedians, NetworkRatios};
use crate::features::history::Bounds;
use crate::features::lanes::{ParentCounts, ParentValues, Parents, Wanted};
use crate::features::parted::{HistoryShares, HistoryWindows, Part, Windowed, combine, finish_history, sum};
use crate::features::{Disrupted, FeatureSet, Span, WindowShare, window_days};
use crate::model::parts::{self, Offer};
use crate::model::{self, SavedModel, SplitCounts, TrainFrame};
use crate::night::TOOL_VERSION;
use crate::settings::Settings;
use crate::shard::Shard;

/// Layout version of a round's file; a round refuses another.
const FORMAT: u32 = 1;
const MAGIC: &[u8; 8] = b"LWROUND\n";

/// A round of a sharded night, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Round {
    Window,
    Parents,
    Wanted,
    Values,
    Queries,
    Shares,
    Split,
    Offer,
    TrainShares,
    TrainRows,
    Score,
    AdvicePools,
    Advice,
}

impl Round {
    pub const ALL: [Round; 13] = [
        Round::Window,
        Round::Parents,
        Round::Wanted,
        Round::Values,
        Round::Queries,
        Round::Shares,
        Round::Split,
        Round::Offer,
        Round::TrainShares,
        Round::TrainRows,
        Round::Score,
        Round::AdvicePools,
        Round::Advice,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Round::Window => "window",
            Round::Parents => "parents",
            Round::Wanted => "wanted",
            Round::Values => "values",
            Round::Queries => "queries",
            Round::Shares => "shares",
            Round::Split => "split",
            Round::Offer => "offer",
            Round::TrainShares => "train-shares",
            Round::TrainRows => "train-rows",
            Round::Score => "score",
            Round::AdvicePools => "advice-pools",
            Round::Advice => "advice",
        }
    }
}

impl std::str::FromStr for Round {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Round, String> {
        Round::ALL.into_iter().find(|r| r.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Round::ALL.iter().map(|r| r.name()).collect();
            format!("expected one of {}, got {s:?}", names.join(", "))
        })
    }
}

impl std::fmt::Display for Round {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What each round's file says it is.
#[derive(Debug, Clone, PartialEq)]
struct Header {
    format: u32,
    tool_version: String,
    as_of: String,
    config: String,
    round: String,
    /// The shard whose share this is; none for the merged result.
    shard: Option<u32>,
    shards: u32,
    /// Lineage: the chain of the previous round's merge the file was computed after (empty for
    /// the first round). A share's `inputs` is the BLAKE3 of its shard's partial JSON; a
    /// merged file's is its chain: BLAKE3 of `after` and every share's BLAKE3, in shard order.
    after: String,
    inputs: String,
}
crate::codec_struct!(Header { format, tool_version, as_of, config, round, shard, shards, after, inputs });

/// A value not decoded (a file read for its header).
struct Skipped;

impl Codec for Skipped {
    fn put(&self, _: &mut Vec<u8>) {}
    fn take(r: &mut Reader<'_>) -> Result<Self> {
        r.skip_rest();
        Ok(Skipped)
    }
}

/// One night's rounds in one partials folder.
struct Rounds<'a> {
    s: &'a Settings,
    dir: &'a Path,
    night: Night,
    shards: u32,
    config: String,
}

impl<'a> Rounds<'a> {
    fn new(s: &'a Settings, dir: &'a Path, shards: u32) -> Result<Rounds<'a>> {
        // The rounds train on the night itself; a training schedule's earlier training night
        // is the plain merge's (`lanewatch merge` without --rounds).
        if s.config.model.retrain_every_days > 1 {
            return Err(Error::Config(
                "the rounds train the night's own model: model.retrain_every_days above 1 needs lanewatch merge without --rounds".into(),
            ));
        }
        Ok(Rounds { s, dir, night: s.night()?, shards, config: s.config.digest() })
    }

    fn header(&self, round: Round, shard: Option<u32>) -> Header {
        Header {
            format: FORMAT,
            tool_version: TOOL_VERSION.to_string(),
            as_of: self.night.to_string(),
            config: self.config.clone(),
            round: round.name().to_string(),
            shard,
            shards: self.shards,
            after: String::new(),
            inputs: String::new(),
        }
    }

    fn path(&self, round: Round, shard: Option<u32>) -> PathBuf {
        let name = match shard {
            Some(index) => format!("{}.bin", Shard { index, count: self.shards }.stem()),
            None => "merged.bin".to_string(),
        };
        self.dir.join(format!("round-{round}")).join(name)
    }

    /// Writes a round's file through a rename; returns its path and whether its bytes changed.
    fn write<T: Codec>(
        &self,
        round: Round,
        shard: Option<u32>,
        lineage: (String, String),
        value: &T,
    ) -> Result<(PathBuf, bool)> {
        let path = self.path(round, shard);
        let mut bytes = MAGIC.to_vec();
        Header { after: lineage.0, inputs: lineage.1, ..self.header(round, shard) }.put(&mut bytes);
        value.put(&mut bytes);
        let hash = blake3::hash(&bytes);
        bytes.extend_from_slice(hash.as_bytes());
        if std::fs::read(&path).is_ok_and(|old| old == bytes) {
            return Ok((path, false));
        }
        crate::io::create_dir_all(path.parent().expect("a round's folder"))?;
        crate::fault::point(&format!("round:{round}"));
        crate::io::write_atomic(&path, &bytes)?;
        Ok((path, true))
    }

    /// Shard `shard`'s share of `round`, computed after `after`: the chain of the merges before
    /// it (`chain_before`) and the digest of the shard's partial, both read before anything the
    /// share is computed from. The partial must still be that one: a share that recorded the
    /// partial of its writing (one republished while the round ran) claimed data it was not
    /// computed from, and the merge took it.
    fn write_share<T: Codec>(&self, round: Round, shard: Shard, after: (String, String), value: &T) -> Result<PathBuf> {
        if self.partial_digest(shard.index)? != after.1 {
            let name = format!("{}.json", shard.stem());
            return Err(Error::bad_file(name, format!("changed while round {round} ran; run the round again")));
        }
        Ok(self.write(round, Some(shard.index), after, value)?.0)
    }

    /// The merge of `round` (`merge_shares` gave its lineage). A merge whose result changed
    /// removes the later rounds' merges, which were computed from the old one.
    fn write_merged<T: Codec>(&self, round: Round, lineage: (String, String), value: &T) -> Result<PathBuf> {
        let (path, changed) = self.write(round, None, lineage, value)?;
        if changed {
            for later in Round::ALL.into_iter().filter(|r| *r > round) {
                let stale = self.path(later, None);
                match std::fs::remove_file(&stale) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::output(&stale, e)),
                    _ => {}
                }
            }
        }
        Ok(path)
    }

    /// BLAKE3 of shard `k`'s partial JSON (which holds its data files' BLAKE3).
    fn partial_digest(&self, k: u32) -> Result<String> {
        let path = self.dir.join(format!("{}.json", Shard { index: k, count: self.shards }.stem()));
        let bytes = std::fs::read(&path)
            .map_err(|e| Error::bad_file(path.display().to_string(), format!("missing or unreadable partial: {e}")))?;
        Ok(blake3::hash(&bytes).to_hex().to_string())
    }

    /// The chain of the merge of the round before `round` (empty for the first round).
    fn chain_before(&self, round: Round) -> Result<String> {
        match Round::ALL.into_iter().rev().find(|r| *r < round) {
            Some(prev) => Ok(self.read_full::<Skipped>(prev, None)?.0.inputs),
            None => Ok(String::new()),
        }
    }

    /// Every shard's share of `round` for its merge, refused unless computed after the current
    /// merge of the round before and from the shard's current partial; with the lineage of
    /// the merge: (after, chain).
    fn merge_shares<T: Codec>(&self, round: Round) -> Result<(Vec<T>, (String, String))> {
        let mut values = Vec::with_capacity(self.shards as usize);
        let lineage = self.fold_shares(round, |v| {
            values.push(v);
            Ok(())
        })?;
        Ok((values, lineage))
    }

    /// The shares of `round` handed to `add` one at a time, in shard order, each checked as
    /// `merge_shares` checks them: a merge that adds them up holds one share at a time, not
    /// all of them (the history rounds' shares grow with the shards).
    fn fold_shares<T: Codec>(&self, round: Round, mut add: impl FnMut(T) -> Result<()>) -> Result<(String, String)> {
        let after = self.chain_before(round)?;
        let mut chain = blake3::Hasher::new();
        chain.update(after.as_bytes());
        for k in 0..self.shards {
            let (h, digest, v) = self.read_full(round, Some(k))?;
            let stale = |what: &str| {
                Error::bad_file(
                    self.path(round, Some(k)).display().to_string(),
                    format!(
                        "stale: computed from {what}; rerun lanewatch run --shard {k}/{} --round {round}",
                        self.shards
                    ),
                )
            };
            if h.after != after {
                return Err(stale("an earlier merge of the round before"));
            }
            if h.inputs != self.partial_digest(k)? {
                return Err(stale("another partial of the shard"));
            }
            chain.update(digest.as_bytes());
            add(v)?;
        }
        Ok((after, chain.finalize().to_hex().to_string()))
    }

    fn read<T: Codec>(&self, round: Round, shard: Option<u32>) -> Result<T> {
        Ok(self.read_full(round, shard)?.2)
    }

    /// A round's file: its header (checked against this night), the BLAKE3 of its bytes, and
    /// its value.
    fn read_full<T: Codec>(&self, round: Round, shard: Option<u32>) -> Result<(Header, String, T)> {
        let path = self.path(round, shard);
        let shown = path.display().to_string();
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::bad_file(
                &shown,
                match shard {
                    Some(k) => format!(
                        "missing: shard {k}/{}'s share of round {round} (run lanewatch run --shard {k}/{} --round {round})",
                        self.shards, self.shards
                    ),
                    None => format!("missing: round {round} is not merged (run lanewatch merge --round {round})"),
                },
            ),
            _ => Error::bad_file(&shown, format!("unreadable: {e}")),
        })?;
        let body = bytes.len().checked_sub(32).filter(|&n| n >= MAGIC.len() && bytes.starts_with(MAGIC));
        let body = body.ok_or_else(|| Error::bad_file(&shown, "not a lanewatch round file"))?;
        if blake3::hash(&bytes[..body]).as_bytes() != &bytes[body..] {
            return Err(Error::bad_file(&shown, "corrupt: its BLAKE3 does not match its bytes"));
        }
        let mismatch = |what: &str, got: &dyn std::fmt::Display, want: &dyn std::fmt::Display| {
            Err(Error::bad_file(&shown, format!("a round file of another {what} ({got}; this night: {want})")))
        };
        // The layout first, on its own: a file of another layout may not decode further.
        let format = u32::take(&mut Reader::new(&bytes[MAGIC.len()..body]))
            .map_err(|_| Error::bad_file(&shown, "not a lanewatch round file"))?;
        if format != FORMAT {
            return mismatch("layout", &format, &FORMAT);
        }
        let mut r = Reader::new(&bytes[MAGIC.len()..body]);
        let got = Header::take(&mut r).map_err(|_| Error::bad_file(&shown, "not a lanewatch round file"))?;
        let want = self.header(round, shard);
        if got.tool_version != want.tool_version {
            return mismatch("lanewatch version", &got.tool_version, &want.tool_version);
        }
        if got.as_of != want.as_of {
            return mismatch("night", &got.as_of, &want.as_of);
        }
        if got.config != want.config {
            return mismatch("config", &format!("digest {:.12}", got.config), &format!("digest {:.12}", want.config));
        }
        if (got.round.as_str(), got.shard, got.shards) != (want.round.as_str(), want.shard, want.shards) {
            let of = |h: &Header| format!("round {} of {:?} in {} shards", h.round, h.shard, h.shards);
            return mismatch("round or shard", &of(&got), &of(&want));
        }
        let value = T::take(&mut r).map_err(|e| Error::bad_file(&shown, format!("unreadable: {e}")))?;
        if !r.finished() {
            return Err(Error::bad_file(&shown, "unreadable: bytes left over"));
        }
        let digest = blake3::Hash::from_bytes(bytes[body..].try_into().expect("32 bytes")).to_hex().to_string();
        Ok((got, digest, value))
    }

    fn merged<T: Codec>(&self, round: Round) -> Result<T> {
        self.read(round, None)
    }

    /// The alerts of the newest complete run before this night in the output folder, which
    /// tonight's alerts continue from, the earlier runs as compared, and the shipments the
    /// trends score (`trend_ids`; none without an output folder). A shard reads them for where
    /// those shipments stand tonight; the merges check they read the same runs.
    fn earlier(&self) -> (alerts::Previous, Earlier, std::collections::BTreeSet<String>) {
        let prev = match self.s.out() {
            Ok(out) => crate::output::previous_alerts(out, self.night.as_of()).0,
            Err(_) => alerts::Previous::default(),
        };
        let previous = self.s.out().ok().and_then(|out| crate::output::previous_run(out, self.night.as_of()));
        let previous = previous.map(|(d, dir)| format!("as_of={d} ({})", crate::output::trends::alerts_digest(&dir)));
        let (trend_ids, trend_runs) = self.trend_ids();
        (prev, Earlier { previous, trend_runs }, trend_ids)
    }

    /// The shipments of the at-risk alerts of the runs the report's trends read, and those
    /// runs (`trends::at_risk_ids`; none without an output folder).
    fn trend_ids(&self) -> (std::collections::BTreeSet<String>, Vec<String>) {
        match self.s.out() {
            Ok(out) => crate::output::trends::at_risk_ids(out, self.night.as_of(), self.s.config.report.trend_nights),
            Err(_) => Default::default(),
        }
    }

    /// The model the merge of `train-rows` trained, checked as a saved model is.
    fn model(&self) -> Result<SavedModel> {
        let json: String = self.merged(Round::TrainRows)?;
        SavedModel::parse(json.as_bytes(), &self.path(Round::TrainRows, None))
    }

    // What a shard computes again each round from its input and the rounds merged before.

    fn part(&self, shard: Shard) -> Result<Part> {
        let clean = crate::partials::read_shard(self.dir, shard, self.night, &self.s.config)?;
        Part::start(clean, self.night)
    }

    fn span(&self) -> Result<Span> {
        Ok(Span::new(self.night, self.merged(Round::Window)?, &self.s.features))
    }

    fn windowed(&self, shard: Shard) -> Result<Windowed> {
        self.part(shard)?.windowed(self.span()?, &self.s.features)
    }

    fn feature_set(&self, shard: Shard) -> Result<FeatureSet> {
        let w = self.windowed(shard)?;
        let (_, network): (ParentCounts, NetworkMedians) = self.merged(Round::Parents)?;
        let parents: Parents = self.merged(Round::Values)?;
        w.finish(&self.s.features, &parents, &network)
    }
}

/// Shard `shard`'s share of `round`, written to the partials folder `dir`; returns its path.
pub fn shard_round(s: &Settings, dir: &Path, shard: Shard, round: Round) -> Result<PathBuf> {
    let n = Rounds::new(s, dir, shard.count)?;
    let (p, m) = (&s.features, &s.model);
    // What this share is computed after, read before anything it is computed from.
    let after = (n.chain_before(round)?, n.partial_digest(shard.index)?);
    match round {
        Round::Window => n.write_share(round, shard, after, &n.part(shard)?.window_share(p)),
        Round::Parents => {
            let w = n.windowed(shard)?;
            n.write_share(round, shard, after, &(w.parent_counts(p)?, w.network_ratios(p)))
        }
        Round::Wanted => {
            let (counts, _): (ParentCounts, NetworkMedians) = n.merged(Round::Parents)?;
            n.write_share(round, shard, after, &n.windowed(shard)?.wanted_parents(p, &counts)?)
        }
        Round::Values => {
            let wanted: Wanted = n.merged(Round::Wanted)?;
            n.write_share(round, shard, after, &n.windowed(shard)?.parent_values(p, &wanted))
        }
        Round::Queries => {
            let fs = n.feature_set(shard)?;
            let last = model::resolution_last(&fs);
            n.write_share(round, shard, after, &(last, fs.history_queries(&fs.score).0))
        }
        Round::Shares => {
            let (last, queries): (u32, Vec<(String, i64)>) = n.merged(Round::Queries)?;
            let fs = n.feature_set(shard)?;
            n.write_share(round, shard, after, &(model::resolution_counts_to(&fs, last), fs.history_shares(&queries)))
        }
        Round::Split => {
            let (valid_days, _): (u32, HistoryWindows) = n.merged(Round::Shares)?;
            let fs = n.feature_set(shard)?;
            n.write_share(round, shard, after, &SplitCounts::of(&fs, model::holdout_start(fs.cutoff(), valid_days)))
        }
        Round::Offer => {
            let (valid_days, split): (u32, SplitCounts) = n.merged(Round::Split)?;
            n.write_share(round, shard, after, &parts::offer(&n.feature_set(shard)?, &split, valid_days, m)?)
        }
        Round::TrainShares => {
            let (_, queries): (Offer, Vec<(String, i64)>) = n.merged(Round::Offer)?;
            n.write_share(round, shard, after, &n.feature_set(shard)?.history_shares(&queries))
        }
        Round::TrainRows => {
            let (pool, queries): (Offer, Vec<(String, i64)>) = n.merged(Round::Offer)?;
            let history: HistoryWindows = n.merged(Round::TrainShares)?;
            let fs = n.feature_set(shard)?;
            let mut rows = parts::drawn_rows(&fs, &parts::rows_of(&pool, shard.index as usize));
            fs.fill_queried(&mut rows, &queries, &history)?;
            let windows: Vec<f64> = fs.lanes().iter().map(|l| l.window_days).collect();
            n.write_share(round, shard, after, &(rows.x, windows))
        }
        Round::Score => {
            let model = n.model()?;
            let (_, queries): (u32, Vec<(String, i64)>) = n.merged(Round::Queries)?;
            let (_, history): (u32, HistoryWindows) = n.merged(Round::Shares)?;
            let mut fs = n.feature_set(shard)?;
            let mut rows = std::mem::take(&mut fs.score);
            fs.fill_queried(&mut rows, &queries, &history)?;
            fs.score = rows;
            let risk = model.predict(&fs.score);
            let ids = fs.prep.shipments.column("shipment_id")?.str()?.clone();
            let ids: Vec<String> =
                fs.score.ship.iter().map(|&i| ids.get(i as usize).unwrap_or("").to_string()).collect();
            let (prev, earlier, trend_ids) = n.earlier();
            let alerts = alerts::parted::share(&fs, &risk, &s.alerts, &prev)?;
            // Outcomes known tonight of the earlier runs' at-risk alerts it has (the report's
            // trends), and of its own alerts.
            let own = alerts.cap.sellers.values().flat_map(|(_, keys)| keys.iter().map(|k| k.shipment_id.clone()));
            let known = trend_ids
                .into_iter()
                .chain(own)
                .filter_map(|id| fs.known_outcome(&id).map(|late| (id, late)))
                .collect();
            let share = ScoreShare {
                alerts,
                lanes: fs.lanes_frame()?,
                disrupted: fs.disrupted(),
                promise_days: crate::report::promise_days(&fs),
                known,
                earlier,
                ids,
                risk,
            };
            n.write_share(round, shard, after, &share)
        }
        Round::AdvicePools => {
            let fs = n.feature_set(shard)?;
            n.write_share(round, shard, after, &advice::Part::of(&fs, &s.advice).service_share()?)
        }
        Round::Advice => {
            let services: advice::Services = n.merged(Round::AdvicePools)?;
            let fs = n.feature_set(shard)?;
            let owns = |d: &str, sv: &str| crate::shard::shard_of(d, sv, shard.count) == shard.index;
            n.write_share(round, shard, after, &advice::Part::of(&fs, &s.advice).rows(Some(&services), owns)?)
        }
    }
}

/// The merge of `round` from the `shards` shares in `dir`; returns the merged file's path.
pub fn merge_round(s: &Settings, dir: &Path, shards: u32, round: Round) -> Result<PathBuf> {
    let n = Rounds::new(s, dir, shards)?;
    let (p, m) = (&s.features, &s.model);
    let bounds = Bounds::of(&p.lanes);
    match round {
        Round::Window => {
            let (shares, lineage) = n.merge_shares::<WindowShare>(round)?;
            let share = sum(shares, WindowShare::add)?;
            n.write_merged(round, lineage, &window_days(&share, p, n.night.cutoff()))
        }
        Round::Parents => {
            let (shares, lineage) = n.merge_shares::<(ParentCounts, NetworkRatios)>(round)?;
            let (counts, ratios): (Vec<ParentCounts>, Vec<NetworkRatios>) = shares.into_iter().unzip();
            let counts = combine(counts, ParentCounts::add)?;
            n.write_merged(round, lineage, &(counts, combine(ratios, NetworkRatios::add)?.medians()))
        }
        Round::Wanted => {
            let (shares, lineage) = n.merge_shares::<Wanted>(round)?;
            n.write_merged(round, lineage, &combine(shares, Wanted::add)?)
        }
        Round::Values => {
            let (counts, _): (ParentCounts, NetworkMedians) = n.merged(Round::Parents)?;
            let (shares, lineage) = n.merge_shares::<ParentValues>(round)?;
            n.write_merged(round, lineage, &combine(shares, ParentValues::add)?.finish(counts)?)
        }
        Round::Queries => {
            let (shares, lineage) = n.merge_shares::<(Option<u32>, Vec<(String, i64)>)>(round)?;
            // Every part counts resolutions up to the same day, the latest of any part's.
            let last = model::resolution_bound(shares.iter().map(|s| s.0));
            let mut queries: Vec<(String, i64)> = shares.into_iter().flat_map(|s| s.1).collect();
            queries.sort_unstable();
            queries.dedup();
            n.write_merged(round, lineage, &(last, queries))
        }
        Round::Shares => {
            let (_, queries): (u32, Vec<(String, i64)>) = n.merged(Round::Queries)?;
            let (mut counts, mut history) = (None::<DayCounts>, None);
            let lineage = n.fold_shares(round, |(c, h): (DayCounts, HistoryShares)| {
                match &mut counts {
                    None => counts = Some(c),
                    Some(all) => all.merge(&c),
                }
                HistoryShares::fold(&mut history, h, bounds)
            })?;
            let counts = counts.ok_or_else(|| Error::internal("rounds: a night of no shards"))?;
            let history = history.ok_or_else(|| Error::internal("rounds: a night of no shards"))?;
            let valid_days = model::validation_window(&counts, m);
            n.write_merged(round, lineage, &(valid_days, finish_history(&queries, history, bounds)?))
        }
        Round::Split => {
            let (valid_days, _): (u32, HistoryWindows) = n.merged(Round::Shares)?;
            let (shares, lineage) = n.merge_shares::<SplitCounts>(round)?;
            let split = sum(shares, SplitCounts::add)?;
            n.write_merged(round, lineage, &(valid_days, split))
        }
        Round::Offer => {
            let (valid_days, split): (u32, SplitCounts) = n.merged(Round::Split)?;
            let (offers, lineage) = n.merge_shares(round)?;
            let pool = parts::draw_offered(offers, n.night.cutoff(), valid_days, &split, m);
            let queries = parts::drawn_queries(&pool);
            n.write_merged(round, lineage, &(pool, queries))
        }
        Round::TrainShares => {
            let (_, queries): (Offer, Vec<(String, i64)>) = n.merged(Round::Offer)?;
            let mut history = None;
            let lineage = n.fold_shares(round, |h| HistoryShares::fold(&mut history, h, bounds))?;
            let history = history.ok_or_else(|| Error::internal("rounds: a night of no shards"))?;
            n.write_merged(round, lineage, &finish_history(&queries, history, bounds)?)
        }
        Round::TrainRows => {
            let (pool, _): (Offer, Vec<(String, i64)>) = n.merged(Round::Offer)?;
            let (valid_days, split): (u32, SplitCounts) = n.merged(Round::Split)?;
            let (shares, lineage) = n.merge_shares::<(Vec<f64>, Vec<f64>)>(round)?;
            let (x, windows): (Vec<Vec<f64>>, Vec<Vec<f64>>) = shares.into_iter().unzip();
            let pool = parts::with_features(pool, &x)?;
            let frame = TrainFrame {
                night: n.night,
                train_window_days: n.span()?.train_days,
                lanes: model::lane_windows(windows.into_iter().flatten(), n.s.model.lane_window_days),
                valid_days,
                split,
            };
            let model = model::train_on(&pool, &frame, m)?;
            n.write_merged(round, lineage, &serde_json::to_string(&model).map_err(Error::internal)?)
        }
        Round::Score => {
            let (shares, lineage) = n.merge_shares::<ScoreShare>(round)?;
            // The shards and the merge continue from the same earlier runs.
            let (prev, earlier, _) = n.earlier();
            if let Some(k) = shares.iter().position(|sh| sh.earlier != earlier) {
                return Err(Error::bad_file(
                    n.path(round, Some(k as u32)).display().to_string(),
                    format!(
                        "stale: computed against {}, now {}; rerun lanewatch run --shard {k}/{shards} --round {round}",
                        shares[k].earlier, earlier
                    ),
                ));
            }
            let (mut all, mut parts, mut lanes) = (Vec::new(), Vec::new(), Vec::new());
            let (mut disrupted, mut promise_days, mut known) = (Vec::new(), BTreeMap::new(), BTreeMap::new());
            for sh in shares {
                all.extend(sh.ids.into_iter().zip(sh.risk));
                parts.push(sh.alerts);
                lanes.push(sh.lanes);
                disrupted.extend(sh.disrupted);
                promise_days.extend(sh.promise_days);
                known.extend(sh.known);
            }
            all.sort_by(|a, b| a.0.cmp(&b.0));
            disrupted.sort_by(|a, b| a.lane.cmp(&b.lane));
            let (ids, risk) = all.into_iter().unzip();
            let scored = Scored {
                ids,
                risk,
                alerts: alerts::parted::merge(parts, &s.alerts, &prev, n.night)?,
                lanes: crate::io::stacked(lanes, &["origin", "destination", "service"])?,
                disrupted,
                promise_days,
                known,
                earlier,
            };
            n.write_merged(round, lineage, &scored)
        }
        Round::AdvicePools => {
            let (shares, lineage) = n.merge_shares(round)?;
            n.write_merged(round, lineage, &advice::merge_services(shares, n.night.cutoff(), &s.advice.lanes))
        }
        Round::Advice => {
            let (shares, lineage) = n.merge_shares(round)?;
            let a = advice::finish(shares, &s.advice, n.night)?;
            n.write_merged(round, lineage, &a.into_tables())
        }
    }
}

/// Every round, every shard then the merge, in this process: what a cluster runs as separate
/// tasks. The partials of `run --shard` must be in `dir`.
pub fn run_all(s: &Settings, dir: &Path, shards: u32) -> Result<()> {
    for round in Round::ALL {
        for index in 0..shards {
            shard_round(s, dir, Shard { index, count: shards }, round)?;
        }
        merge_round(s, dir, shards, round)?;
    }
    Ok(())
}

/// The model the rounds in `dir` trained.
pub fn model(s: &Settings, dir: &Path, shards: u32) -> Result<SavedModel> {
    Rounds::new(s, dir, shards)?.model()
}

/// Every scoring row's shipment id and risk, by shipment id, as the rounds in `dir` scored them.
pub fn risks(s: &Settings, dir: &Path, shards: u32) -> Result<(Vec<String>, Vec<f64>)> {
    let scored = scored(s, dir, shards)?;
    Ok((scored.ids, scored.risk))
}

/// What the merge of `score` gave: the risks, the alert outputs and the lane table.
pub fn scored(s: &Settings, dir: &Path, shards: u32) -> Result<Scored> {
    Rounds::new(s, dir, shards)?.merged(Round::Score)
}

/// A shard's share of round `score`: its scoring rows' risk (as the model gives it), its share
/// of the alerts (`alerts::parted`), its lanes' rows of `lanes.parquet`, and the previous run
/// it continued from (`previous_name`).
struct ScoreShare {
    ids: Vec<String>,
    risk: Vec<f64>,
    alerts: alerts::parted::AlertShare,
    lanes: polars::prelude::DataFrame,
    /// Its lanes flagged disrupted, and their promise today (the report's).
    disrupted: Vec<Disrupted>,
    promise_days: BTreeMap<(String, String, String), f64>,
    /// Whether each of the shipments the report's trends score turned out late, of those it
    /// has whose outcome is known tonight.
    known: BTreeMap<String, bool>,
    earlier: Earlier,
}
crate::codec_struct!(ScoreShare { ids, risk, alerts, lanes, disrupted, promise_days, known, earlier });

/// The merge of round `score`.
pub struct Scored {
    /// Every scoring row's shipment id and risk as the model gave it, by shipment id.
    pub ids: Vec<String>,
    pub risk: Vec<f64>,
    /// `scores`, `alerts`, `recovered` and `lane_alerts` of the run folder.
    pub alerts: alerts::parted::Merged,
    /// `lanes.parquet`.
    pub lanes: polars::prelude::DataFrame,
    /// The lanes flagged disrupted, in lane order; each lane's promise today; the outcomes
    /// known tonight of the shipments the trends score (the report's).
    pub disrupted: Vec<Disrupted>,
    pub promise_days: BTreeMap<(String, String, String), f64>,
    pub known: BTreeMap<String, bool>,
    /// The earlier runs these continued from.
    earlier: Earlier,
}
crate::codec_struct!(Scored { ids, risk, alerts, lanes, disrupted, promise_days, known, earlier });

/// The earlier runs in the output folder a night continues from, as the shards, the merge and
/// `merge --rounds` compare them: the previous run (its alerts carry over) and the runs the
/// report's trends read.
#[derive(Debug, Clone, PartialEq)]
struct Earlier {
    previous: Option<String>,
    trend_runs: Vec<String>,
}
crate::codec_struct!(Earlier { previous, trend_runs });

impl std::fmt::Display for Earlier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let runs = if self.trend_runs.is_empty() { "none".to_string() } else { self.trend_runs.join(", ") };
        write!(f, "the previous run {} and the trend runs {runs}", self.previous.as_deref().unwrap_or("none"))
    }
}

/// The night's run folder from the merged rounds in `dir`, continuing from `prev` (the
/// previous run's alerts, read under the output's lock), with the outcomes the report's trends
/// read. Refuses (exit 65) rounds whose lineage no longer holds or that were computed against
/// other earlier runs (each named by its date and its alerts' BLAKE3).
pub fn outputs(
    s: &Settings,
    dir: &Path,
    shards: u32,
    prev: &alerts::Previous,
) -> Result<(crate::output::RunOutputs, BTreeMap<String, bool>)> {
    let n = Rounds::new(s, dir, shards)?;
    // Every round's merge still follows from its shares, and they from the merge before and
    // the shards' current partials (a partial replaced since would otherwise go unseen).
    for round in Round::ALL {
        let (_, lineage) = n.merge_shares::<Skipped>(round)?;
        let (h, _, Skipped) = n.read_full::<Skipped>(round, None)?;
        if (h.after, h.inputs) != lineage {
            return Err(Error::bad_file(
                n.path(round, None).display().to_string(),
                format!(
                    "stale: merged from other shares than the round's now; run lanewatch merge --round {round} again"
                ),
            ));
        }
    }
    let scored: Scored = n.merged(Round::Score)?;
    let (_, earlier, _) = n.earlier();
    if scored.earlier != earlier {
        return Err(Error::bad_file(
            n.path(Round::Score, None).display().to_string(),
            format!("stale: computed against {}, now {}; run the rounds from score on again", scored.earlier, earlier),
        ));
    }
    let (service, promise, sellers) = n.merged(Round::Advice)?;
    let a = scored.alerts;
    let run = crate::output::RunOutputs {
        night: n.night,
        model: n.model()?,
        trained_on: None,
        model_kept: false,
        previous: prev.as_of,
        scores: a.scores,
        alerts: a.alerts,
        recovered: a.recovered,
        lane_alerts: a.lane_alerts,
        lanes: scored.lanes,
        advice: crate::advice::Advice::new(n.night.as_of(), service, promise, sellers),
        suppressed: a.suppressed.into_iter().collect(),
        capped: a.capped,
        disrupted: scored.disrupted,
        promise_days: scored.promise_days,
    };
    Ok((run, scored.known))
}
