//! A stable least-significant-digit radix sort by an `i64` key, for the disruption series'
//! large sorts (a group's stage visits by entry, its completed visits by exit and by dwell).
//! Those sorts were most of a training night's series (about a quarter of its CPU at 1M
//! shipments, comparison sorts of tens of thousands of visits per group and stage); a radix
//! sort passes over the keys' varying bits only, 11 at a time.

/// Below this many items a comparison sort is faster than the radix passes' fixed costs.
const SMALL: usize = 256;
/// Bits per pass: 2,048 counters per pass stay in the first-level cache.
const BITS: u32 = 11;
const BUCKETS: usize = 1 << BITS;

/// Sorts `v` by `key`, stably (items with equal keys keep their order), as `v.sort_by_key(key)`
/// does.
pub fn sort_by_key<T: Copy>(v: &mut Vec<T>, key: impl Fn(&T) -> i64) {
    let n = v.len();
    if n < SMALL {
        v.sort_by_key(key);
        return;
    }
    let keys: Vec<i64> = v.iter().map(&key).collect();
    let (lo, hi) = keys.iter().fold((i64::MAX, i64::MIN), |(lo, hi), &k| (lo.min(k), hi.max(k)));
    // Offsets from the least key: non-negative, and only as wide as the keys' range.
    let range = hi.wrapping_sub(lo) as u64;
    if range == 0 {
        return;
    }
    let passes = (64 - range.leading_zeros()).div_ceil(BITS) as usize;
    let mut keys: Vec<u64> = keys.into_iter().map(|k| k.wrapping_sub(lo) as u64).collect();
    // Every pass's counts in one read of the keys.
    let mut counts = vec![[0u32; BUCKETS]; passes];
    for &k in &keys {
        for (p, c) in counts.iter_mut().enumerate() {
            c[digit(k, p)] += 1;
        }
    }
    let mut items_to: Vec<T> = v.clone();
    let mut keys_to: Vec<u64> = vec![0; n];
    for (p, c) in counts.iter().enumerate() {
        // A digit every key shares moves nothing.
        if c.iter().any(|&x| x as usize == n) {
            continue;
        }
        let mut at = [0u32; BUCKETS];
        let mut sum = 0u32;
        for (a, &x) in at.iter_mut().zip(c) {
            *a = sum;
            sum += x;
        }
        for (&k, item) in keys.iter().zip(v.iter()) {
            let slot = &mut at[digit(k, p)];
            keys_to[*slot as usize] = k;
            items_to[*slot as usize] = *item;
            *slot += 1;
        }
        std::mem::swap(&mut keys, &mut keys_to);
        std::mem::swap(v, &mut items_to);
    }
}

fn digit(k: u64, pass: usize) -> usize {
    ((k >> (pass as u32 * BITS)) as usize) & (BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn sorts_as_a_stable_comparison_sort_does() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for case in 0..400 {
            let n = match case % 4 {
                0 => rng.gen_range(0..SMALL),
                _ => rng.gen_range(SMALL..5_000),
            };
            // Keys over narrow and wide ranges, negative ones, ties, and the extremes of i64.
            let spread: i64 = [1, 3, 1 << 12, 1 << 40, i64::MAX][case % 5];
            let mut v: Vec<(i64, u32)> = (0..n as u32)
                .map(|i| {
                    let k = match rng.gen_range(0..20) {
                        0 => i64::MIN,
                        1 => i64::MAX,
                        _ => rng.gen_range(-spread..=spread / 2),
                    };
                    (k, i)
                })
                .collect();
            let mut want = v.clone();
            want.sort_by_key(|x| x.0);
            sort_by_key(&mut v, |x| x.0);
            assert_eq!(v, want, "case {case}: {n} items over ±{spread}");
        }
    }
}
