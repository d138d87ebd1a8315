//! Shipments counted by how many days before a cutoff something happened to them (created,
//! resolved), with how many of them were late: what the training and validation windows are
//! sized from. Both windows grow day by day until they hold enough shipments of each class, so
//! per-day counts decide them exactly, where they used to sort every resolved shipment.
//!
//! Counts add: blocks of shipments are counted in parallel and summed, and a sharded night
//! (README "Running on a cluster") can size the windows from its shards' counts, a few
//! kilobytes each, rather than from every shipment in one place.

use rayon::prelude::*;

use crate::schema::MICROS_PER_DAY;

/// Whole days from `at` to `cutoff`, rounded up and at least 1: an instant in the last day
/// before the cutoff is 1 day before it.
pub fn days_before(cutoff: i64, at: i64) -> u32 {
    let d = cutoff.saturating_sub(at).saturating_add(MICROS_PER_DAY - 1) / MICROS_PER_DAY;
    d.clamp(1, u32::MAX as i64) as u32
}

/// Per day before the cutoff: shipments, and late ones among them. Days past the last bucket
/// are counted in it (callers size it so that days past it all mean the same thing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCounts {
    n: Vec<u64>,
    late: Vec<u64>,
}
crate::codec_struct!(DayCounts { n, late });

impl DayCounts {
    /// Counts for days `0..=last` (day `last` also holds every later day).
    pub fn new(last: u32) -> DayCounts {
        let len = last as usize + 1;
        DayCounts { n: vec![0; len], late: vec![0; len] }
    }

    /// Counts of the items `0..items` that `day_of` gives a day for, with whether each was late;
    /// counted in parallel, in a few parts per thread (each part zeroes its own counts, which
    /// span decades when a timestamp lies that far back).
    pub fn count(items: usize, last: u32, day_of: impl Fn(usize) -> Option<(u32, bool)> + Sync) -> DayCounts {
        let parts = 4 * rayon::current_num_threads().max(1);
        (0..items)
            .into_par_iter()
            .with_min_len(items.div_ceil(parts).max(1 << 14))
            .fold(
                || DayCounts::new(last),
                |mut c, i| {
                    if let Some((day, late)) = day_of(i) {
                        c.add(day, late);
                    }
                    c
                },
            )
            .reduce(
                || DayCounts::new(last),
                |mut a, b| {
                    a.merge(&b);
                    a
                },
            )
    }

    pub fn add(&mut self, day: u32, late: bool) {
        let k = (day as usize).min(self.n.len() - 1);
        self.n[k] += 1;
        self.late[k] += late as u64;
    }

    /// Adds another's counts (of the same days).
    pub fn merge(&mut self, other: &DayCounts) {
        assert_eq!(self.n.len(), other.n.len(), "day counts of other lengths merged");
        for (a, b) in self.n.iter_mut().zip(&other.n) {
            *a += b;
        }
        for (a, b) in self.late.iter_mut().zip(&other.late) {
            *a += b;
        }
    }

    /// The first day, counting back from the cutoff, by which the shipments counted number
    /// `n` with `each_class` late and on time; None if they never do.
    pub fn first_day_with(&self, n: u64, each_class: u64) -> Option<u32> {
        let (mut seen, mut late) = (0u64, 0u64);
        self.days()
            .find(|&(_, day_n, day_late)| {
                seen += day_n;
                late += day_late;
                seen >= n && late >= each_class && seen - late >= each_class
            })
            .map(|(d, _, _)| d)
    }

    pub fn total(&self) -> u64 {
        self.n.iter().sum()
    }

    /// (day, shipments, late) of the days holding any, nearest the cutoff first.
    pub fn days(&self) -> impl Iterator<Item = (u32, u64, u64)> + '_ {
        (0..self.n.len()).filter(|&d| self.n[d] > 0).map(|d| (d as u32, self.n[d], self.late[d]))
    }

    /// The day of the k-th shipment counting back from the cutoff (k from 1), if there are k.
    pub fn day_of_kth(&self, k: u64) -> Option<u32> {
        let mut seen = 0;
        self.days()
            .find(|&(_, n, _)| {
                seen += n;
                seen >= k
            })
            .map(|(d, _, _)| d)
    }

    /// Shipments at most `days` days before the cutoff.
    pub fn within(&self, days: u32) -> u64 {
        self.n.iter().take(days as usize + 1).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_up_from_the_cutoff() {
        let c = 100 * MICROS_PER_DAY;
        assert_eq!(days_before(c, c - 1), 1);
        assert_eq!(days_before(c, c - MICROS_PER_DAY), 1);
        assert_eq!(days_before(c, c - MICROS_PER_DAY - 1), 2);
        assert_eq!(days_before(c, c), 1, "at least one day");
        assert_eq!(days_before(c, i64::MIN), (i64::MAX / MICROS_PER_DAY) as u32, "saturated, no overflow");
    }

    /// The first day by which the counts suffice is the day of the shipment, newest first,
    /// at which a walk over every shipment sorted by time first has enough.
    #[test]
    fn first_day_with_enough_is_the_sorted_walks() {
        let mut rng = crate::TestRng::new(3);
        let cutoff = 500 * MICROS_PER_DAY;
        for round in 0..300 {
            let n = (rng.next() % 2_000) as usize;
            let span = 1 + ((rng.next() << 31) | rng.next()) % (300 * MICROS_PER_DAY as u64);
            let late_per_mille = rng.next() % 1_001;
            let mut ships: Vec<(i64, bool)> = (0..n)
                .map(|_| {
                    (
                        cutoff - 1 - (((rng.next() << 31) | rng.next()) % span) as i64,
                        rng.next() % 1_000 < late_per_mille,
                    )
                })
                .collect();
            let (need, class) = (rng.next() % 1_500, rng.next() % 300);
            let counts = DayCounts::count(n, 400, |i| Some((days_before(cutoff, ships[i].0), ships[i].1)));
            ships.sort_unstable_by(|a, b| b.0.cmp(&a.0));
            let (mut seen, mut late) = (0u64, 0u64);
            let want = ships.iter().find_map(|&(at, is_late)| {
                seen += 1;
                late += is_late as u64;
                (seen >= need && late >= class && seen - late >= class).then(|| days_before(cutoff, at))
            });
            assert_eq!(counts.first_day_with(need, class), want, "round {round}");
        }
    }

    #[test]
    fn counts_add_up_whatever_the_split() {
        let items: Vec<(u32, bool)> = (0..200_000u64).map(|i| ((i * 7919 % 400) as u32, i % 3 == 0)).collect();
        let whole = DayCounts::count(items.len(), 300, |i| Some(items[i]));
        let mut split = DayCounts::new(300);
        for part in items.chunks(999) {
            split.merge(&DayCounts::count(part.len(), 300, |i| Some(part[i])));
        }
        assert_eq!(whole, split);
        assert_eq!(whole.total(), 200_000);
        // Days past the last are counted in it.
        let past = items.iter().filter(|(d, _)| *d >= 300).count() as u64;
        assert_eq!(whole.days().last().map(|(d, n, _)| (d, n)), Some((300, past)));
        assert_eq!(whole.within(299), 200_000 - past);
        assert_eq!(whole.day_of_kth(1), Some(0));
        assert_eq!(whole.day_of_kth(200_001), None);
    }
}
