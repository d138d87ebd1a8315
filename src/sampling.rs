//! Seeded hashing for reproducible sampling: every draw depends only on a seed and a key (a
//! shipment id, say), never on row order or thread count.

/// Deterministic 64-bit hash of a string and a seed (FNV-1a, then splitmix64 finalisation).
pub fn hash_str(seed: u64, s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in s.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// splitmix64's finaliser: spreads every input bit over the output.
pub fn mix(h: u64) -> u64 {
    let mut z = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash as a uniform number in [0, 1).
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The `m` smallest items pushed so far, in a max-heap of at most `m`: what "the first m in
/// key order" samples keep in one pass, without sorting everything (the training samples, the
/// advice's latest shipments per pool). Ties need distinct items (a row index in the key).
#[derive(Debug, Clone)]
pub struct Smallest<T> {
    m: usize,
    heap: std::collections::BinaryHeap<T>,
}

impl<T: Ord> Smallest<T> {
    pub fn new(m: usize) -> Smallest<T> {
        Smallest { m, heap: std::collections::BinaryHeap::new() }
    }

    pub fn push(&mut self, item: T) {
        if self.m == 0 || self.heap.len() == self.m && self.heap.peek().is_some_and(|top| item >= *top) {
            return;
        }
        if self.heap.len() == self.m {
            self.heap.pop();
        }
        self.heap.push(item);
    }

    /// Keeps the `m` smallest of both.
    pub fn merge(&mut self, other: Smallest<T>) {
        for item in other.heap {
            self.push(item);
        }
    }

    /// The kept items, ascending.
    pub fn into_sorted(self) -> Vec<T> {
        self.heap.into_sorted_vec()
    }
}

/// Per heap, the `sizes[h]` smallest items that `offer` pushes into heap h over the items
/// `0..n`, ascending: `offer(i, heaps)` pushes item i's values into the heaps it belongs to
/// (the training samples, the advice's latest shipments per pool). The items are taken in one
/// part per thread, each into heaps of its own, merged after: the smallest of a union are the
/// smallest of its parts' smallest, so the heaps hold the same items at any thread count.
///
/// One part per thread rather than many small ones: a heap takes almost every item it is
/// offered until it holds its m, so parts of a few times m items sifted nearly every item into
/// a heap and again into the merges (64K-row parts made the training samples' draw twice as
/// long).
pub fn smallest_per_thread<T: Ord + Send>(
    n: usize,
    sizes: &[usize],
    offer: impl Fn(usize, &mut [Smallest<T>]) + Sync,
) -> Vec<Vec<T>> {
    use rayon::prelude::*;
    let empty = || -> Vec<Smallest<T>> { sizes.iter().map(|&m| Smallest::new(m)).collect() };
    let parts = rayon::current_num_threads().max(1);
    let heaps = (0..parts)
        .into_par_iter()
        .map(|p| {
            let mut heaps = empty();
            for i in n * p / parts..n * (p + 1) / parts {
                offer(i, &mut heaps);
            }
            heaps
        })
        .reduce(empty, |mut a, b| {
            for (heap, other) in a.iter_mut().zip(b) {
                heap.merge(other);
            }
            a
        });
    heaps.into_iter().map(Smallest::into_sorted).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_and_seed_dependent() {
        // Pinned: sampling (and so every model) depends on these exact values.
        assert_eq!(hash_str(0, ""), mix(0xcbf2_9ce4_8422_2325));
        assert_ne!(hash_str(1, "S1"), hash_str(2, "S1"));
        assert_ne!(hash_str(1, "S1"), hash_str(1, "S2"));
        let u = unit(hash_str(7, "x"));
        assert!((0.0..1.0).contains(&u));
        assert_eq!(unit(0), 0.0);
        assert!(unit(u64::MAX) < 1.0);
    }

    /// Whatever the thread count (one part per thread, their heaps merged), each heap holds
    /// the smallest of what was offered to it, as sorting everything offered to it gives.
    #[test]
    fn the_smallest_per_heap_are_those_sorting_gives_at_any_thread_count() {
        let mut rng = crate::TestRng::new(11);
        // Values with many ties, made distinct by the item (as the callers' keys are).
        let values: Vec<u64> = (0..60_000).map(|_| rng.next() % 2_000).collect();
        // Item i goes to heap i % 3 and, when even, to heap 3.
        let heaps_of = |i: usize| [Some(i % 3), i.is_multiple_of(2).then_some(3)];
        for (m, threads) in [(0, 2), (1, 3), (7, 1), (7, 2), (5_000, 2), (5_000, 3), (100_000, 2)] {
            let sizes = [m, m / 2, m, m];
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let got = pool.install(|| {
                smallest_per_thread(values.len(), &sizes, |i, heaps| {
                    for h in heaps_of(i).into_iter().flatten() {
                        heaps[h].push((values[i], i));
                    }
                })
            });
            assert_eq!(got.len(), sizes.len());
            for (h, got) in got.iter().enumerate() {
                let mut all: Vec<(u64, usize)> =
                    (0..values.len()).filter(|&i| heaps_of(i).contains(&Some(h))).map(|i| (values[i], i)).collect();
                all.sort_unstable();
                all.truncate(sizes[h]);
                assert_eq!(got, &all, "heap {h}, m = {m}, {threads} threads");
            }
        }
    }
}
