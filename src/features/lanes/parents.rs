//! The lane tables' parent levels that span parts of the network. A part (a shard, see
//! `crate::shard`) holds whole destination × service groups, so a lane, its origin-country
//! group and its destination × service group all sit on one part; the service and global
//! groups do not. A lane reads one of those when its own groups lack `lanes.min_support`
//! deliveries, and their quantiles are order statistics of the whole group's values, which no
//! sketch reproduces exactly. So the parts exchange, for the tables' cutoffs:
//!
//! 1. each service group's counts (`Source::parent_counts`; the parts' counts add, and the
//!    global group's are their sum): from them every part knows how far each of its lanes falls
//!    back;
//! 2. the service or global groups its lanes read (`Source::wanted_parents`; the parts' sets
//!    unite);
//! 3. the values of those groups' rows known before each cutoff (`Source::parent_values`; the
//!    parts' lists concatenate), whose quantiles (`ParentValues::finish`) every part's tables
//!    then take (`LaneTables::build_parted`).
//!
//! The third carries values only for the parents some lane reads: on a network whose groups
//! mostly have support of their own, a few. Every step is exact: each part's tables equal the
//! whole network's, lane for lane and bit for bit (tested in `tests/integration/features.rs`).

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;

use super::{Group, LaneConfig, N_Q, N_QUANTITIES, Source, push_known, quantiles_into, quantity_outputs, row_values};
use crate::codec::Codec;
use crate::error::{Error, Result};

/// A group that spans parts: one service's lanes, or every lane.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ParentKey {
    Service(String),
    Global,
}

impl Codec for ParentKey {
    fn put(&self, out: &mut Vec<u8>) {
        // As an `Option<String>`: the service's name, or none for the global group.
        match self {
            ParentKey::Service(name) => {
                true.put(out);
                name.put(out);
            }
            ParentKey::Global => false.put(out),
        }
    }
    fn take(r: &mut crate::codec::Reader<'_>) -> Result<Self> {
        Ok(<Option<String> as Codec>::take(r)?.map_or(ParentKey::Global, ParentKey::Service))
    }
}

/// Step 1: each service group's counts at each cutoff (values unknown).
#[derive(Debug, Clone)]
pub struct ParentCounts {
    pub cutoffs: Vec<i64>,
    services: BTreeMap<String, Vec<Group>>,
}
crate::codec_struct!(ParentCounts { cutoffs, services });

impl ParentCounts {
    /// Adds another part's counts (of the same cutoffs).
    pub fn add(&mut self, other: ParentCounts) -> Result<()> {
        same_cutoffs(&self.cutoffs, &other.cutoffs)?;
        for (name, groups) in other.services {
            match self.services.get_mut(&name) {
                Some(mine) => mine.iter_mut().zip(&groups).for_each(|(a, b)| a.add_counts(b)),
                None => {
                    self.services.insert(name, groups);
                }
            }
        }
        Ok(())
    }

    /// Service `name`'s counts at cutoff index `k`.
    pub(super) fn service(&self, k: usize, name: &str) -> Result<Group> {
        self.services
            .get(name)
            .map(|g| g[k].clone())
            .ok_or_else(|| Error::internal(format!("lane tables: no exchanged counts for service {name:?}")))
    }

    /// The global group's counts at cutoff index `k`: every service's.
    pub(super) fn global(&self, k: usize) -> Group {
        let mut g = Group::empty();
        for groups in self.services.values() {
            g.add_counts(&groups[k]);
        }
        g
    }
}

/// Step 2: the parents some lane reads, by cutoff index.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub cutoffs: Vec<i64>,
    set: BTreeSet<(usize, ParentKey)>,
}
crate::codec_struct!(Wanted { cutoffs, set });

impl Wanted {
    /// Adds the parents another part's lanes read.
    pub fn add(&mut self, other: Wanted) -> Result<()> {
        same_cutoffs(&self.cutoffs, &other.cutoffs)?;
        self.set.extend(other.set);
        Ok(())
    }

    /// How many (cutoff, parent) pairs are wanted.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// Step 3: per wanted parent and cutoff, each quantity's values known before the cutoff, in
/// `row_values` order; every wanted pair has an entry, if only of empty lists.
#[derive(Debug, Clone)]
pub struct ParentValues {
    pub cutoffs: Vec<i64>,
    values: BTreeMap<(usize, ParentKey), Vec<Vec<f64>>>,
}
crate::codec_struct!(ParentValues { cutoffs, values });

impl ParentValues {
    /// Adds another part's values of the same wanted parents.
    pub fn add(&mut self, other: ParentValues) -> Result<()> {
        same_cutoffs(&self.cutoffs, &other.cutoffs)?;
        for (key, lists) in other.values {
            match self.values.get_mut(&key) {
                Some(mine) => mine.iter_mut().zip(lists).for_each(|(a, mut b)| a.append(&mut b)),
                None => {
                    self.values.insert(key, lists);
                }
            }
        }
        Ok(())
    }

    /// How many values the parts exchanged.
    pub fn len(&self) -> usize {
        self.values.values().flatten().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The wanted parents' quantiles (in `Group::v` order) with every part's counts: what each
    /// part's tables read (`LaneTables::build_parted`). Quantiles are order statistics, so the
    /// order in which the parts' values arrived does not matter.
    pub fn finish(self, counts: ParentCounts) -> Result<Parents> {
        same_cutoffs(&self.cutoffs, &counts.cutoffs)?;
        let outputs = quantity_outputs();
        let stats = self
            .values
            .into_par_iter()
            .map(|(key, mut lists)| {
                let mut v = [f64::NAN; N_Q];
                quantiles_into(&outputs, &mut lists, 0..N_QUANTITIES, &mut v);
                (key, v)
            })
            .collect();
        Ok(Parents { counts, stats })
    }
}

/// The whole network's service and global groups at each cutoff: counts of all, quantiles of
/// the wanted ones.
#[derive(Debug, Clone)]
pub struct Parents {
    pub(super) counts: ParentCounts,
    stats: BTreeMap<(usize, ParentKey), [f64; N_Q]>,
}
crate::codec_struct!(Parents { counts, stats });

impl Parents {
    pub fn cutoffs(&self) -> &[i64] {
        &self.counts.cutoffs
    }

    /// The quantiles of parent `key` at cutoff index `k`, when some lane reads them (NaN, as
    /// for a group no lane reads on the whole network, otherwise).
    pub(super) fn values(&self, k: usize, key: &ParentKey) -> [f64; N_Q] {
        self.stats.get(&(k, key.clone())).copied().unwrap_or([f64::NAN; N_Q])
    }
}

fn same_cutoffs(a: &[i64], b: &[i64]) -> Result<()> {
    if a == b { Ok(()) } else { Err(Error::internal("lane tables: parts exchanged parents of other cutoffs")) }
}

impl Source {
    /// Step 1: this part's service groups' counts at each of `cutoffs`.
    pub fn parent_counts(&self, cutoffs: &[i64], cfg: &LaneConfig) -> Result<ParentCounts> {
        let per_cutoff: Vec<[Vec<Group>; 5]> =
            cutoffs.par_iter().map(|&c| self.counts_at(c, &self.windows_at(c, cfg), None)).collect::<Result<_>>()?;
        let mut services = BTreeMap::new();
        for (key, name) in self.service_names.iter().enumerate() {
            if !self.members[2][key].is_empty() {
                services.insert(name.clone(), per_cutoff.iter().map(|levels| levels[3][key].clone()).collect());
            }
        }
        Ok(ParentCounts { cutoffs: cutoffs.to_vec(), services })
    }

    /// Step 2: the service and global groups this part's lanes read, given every part's counts.
    pub fn wanted_parents(&self, cfg: &LaneConfig, counts: &ParentCounts) -> Result<Wanted> {
        let m = cfg.min_support as f64;
        let per_cutoff: Vec<Vec<(usize, ParentKey)>> = (0..counts.cutoffs.len())
            .into_par_iter()
            .map(|k| {
                let c = counts.cutoffs[k];
                let levels = self.counts_at(c, &self.windows_at(c, cfg), Some((counts, k)))?;
                let want = self.wanted(&levels, m);
                let mut out: Vec<(usize, ParentKey)> = (0..want[3].len())
                    .filter(|&key| want[3][key])
                    .map(|key| (k, ParentKey::Service(self.service_names[key].clone())))
                    .collect();
                if want[4].iter().any(|&w| w) {
                    out.push((k, ParentKey::Global));
                }
                Ok(out)
            })
            .collect::<Result<_>>()?;
        Ok(Wanted { cutoffs: counts.cutoffs.clone(), set: per_cutoff.into_iter().flatten().collect() })
    }

    /// Step 3: the values of this part's rows in the wanted groups, known before each cutoff.
    pub fn parent_values(&self, cfg: &LaneConfig, wanted: &Wanted) -> ParentValues {
        let service_key: BTreeMap<&str, usize> =
            self.service_names.iter().enumerate().map(|(k, name)| (name.as_str(), k)).collect();
        let all: Vec<u32> = (0..self.n_lanes as u32).collect();
        let values = wanted
            .set
            .par_iter()
            .map(|(k, key)| {
                let c = wanted.cutoffs[*k];
                let lanes: &[u32] = match key {
                    ParentKey::Global => &all,
                    ParentKey::Service(name) => service_key.get(name.as_str()).map_or(&[], |&s| &self.members[2][s]),
                };
                let mut lists: Vec<Vec<f64>> = vec![Vec::new(); N_QUANTITIES];
                if !lanes.is_empty() {
                    let window = self.windows_at(c, cfg);
                    for &l in lanes {
                        let (a, b) = window[l as usize];
                        for r in a..b {
                            push_known(&mut lists, &row_values(self.facts(r), self.delivered_at[r]), c);
                        }
                    }
                }
                ((*k, key.clone()), lists)
            })
            .collect();
        ParentValues { cutoffs: wanted.cutoffs.clone(), values }
    }
}
