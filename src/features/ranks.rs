//! A window over ranked values: values are ranked once (sorted), then a window that slides
//! through time adds and removes ranks and asks for order statistics. The disruption series'
//! baseline slides its window a day at a time over dwells that mostly stay in it, so keeping
//! the window beats sorting it again at every cutoff.

/// A set of distinct ranks 0..n (a bitset) whose k-th smallest is found by walking a cursor
/// from where the last question left it, a word (64 ranks) at a time where it can: a question
/// close to the last one (a median a day later) costs a few words, and insert and remove cost
/// one. A Fenwick tree's `log n` scattered reads per insert, removal and question were a third
/// of the sliding series' own time (1M shipments).
pub struct RankWindow {
    bits: Vec<u64>,
    len: usize,
    /// The cursor: a rank in 0..=n, and how many present ranks lie below it.
    at: usize,
    below: usize,
}

impl RankWindow {
    pub fn new(n: usize) -> RankWindow {
        RankWindow { bits: vec![0; n.div_ceil(64)], len: 0, at: 0, below: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    fn contains(&self, rank: usize) -> bool {
        self.bits[rank / 64] >> (rank % 64) & 1 == 1
    }

    /// Adds `rank`, which is not present.
    pub fn insert(&mut self, rank: usize) {
        debug_assert!(!self.contains(rank), "rank {rank} inserted twice");
        self.bits[rank / 64] |= 1 << (rank % 64);
        self.len += 1;
        self.below += (rank < self.at) as usize;
    }

    /// Removes `rank`, which is present.
    pub fn remove(&mut self, rank: usize) {
        debug_assert!(self.contains(rank), "rank {rank} removed while absent");
        self.bits[rank / 64] &= !(1 << (rank % 64));
        self.len -= 1;
        self.below -= (rank < self.at) as usize;
    }

    /// The k-th smallest rank present (0-based); k < len.
    pub fn kth(&mut self, k: usize) -> usize {
        assert!(k < self.len, "rank {k} of a window of {}", self.len);
        // Back a word (or the part of one below the cursor) at a time, to a word's start with
        // at most k present ranks below it.
        while self.below > k {
            let top = self.at - 1;
            let w = top / 64;
            self.below -= (self.bits[w] & (u64::MAX >> (63 - top % 64))).count_ones() as usize;
            self.at = w * 64;
        }
        // Forward past whole words, then to the right bit of the word that holds the k-th (one
        // does: k < len present ranks, at most k of them below the cursor).
        loop {
            let w = self.at / 64;
            let mut word = self.bits[w] & (u64::MAX << (self.at % 64));
            let here = word.count_ones() as usize;
            if self.below + here <= k {
                self.below += here;
                self.at = (w + 1) * 64;
                continue;
            }
            for _ in self.below..k {
                word &= word - 1;
            }
            let r = w * 64 + word.trailing_zeros() as usize;
            (self.at, self.below) = (r, k);
            return r;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn kth_matches_sorting() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for case in 0..60 {
            // Sizes across word boundaries; sparse and dense windows.
            let n = [1, 63, 64, 65, 200, 1000][case % 6];
            let mut set = RankWindow::new(n);
            let mut present = vec![false; n];
            for _ in 0..2000 {
                let r = rng.gen_range(0..n);
                if present[r] {
                    set.remove(r);
                } else {
                    set.insert(r);
                }
                present[r] = !present[r];
                let sorted: Vec<usize> = (0..n).filter(|&r| present[r]).collect();
                assert_eq!(set.len(), sorted.len());
                // Questions anywhere, so the cursor walks both ways, near and far.
                for _ in 0..2 {
                    if sorted.is_empty() {
                        break;
                    }
                    let k = rng.gen_range(0..sorted.len());
                    assert_eq!(set.kth(k), sorted[k], "case {case}: rank {k} of {}", sorted.len());
                }
            }
        }
    }
}
