//! Items bucketed by a dense group and sorted within each group: the lane-major and
//! group-major arrays that lane tables and history tracks read a group's rows from as one
//! contiguous slice.

use std::cmp::Ordering;

use rayon::prelude::*;

/// A group of at least this many items is sorted in parallel itself (sorted in one task, the
/// network's group held a whole step up); smaller groups are sorted one per task.
const LARGE_GROUP: usize = 1 << 18;

/// The items of `item(i)` for i in 0..n (its group below `groups` and its value, if it has
/// one), bucketed by group in one counting pass and sorted by `by` within each group.
/// Returns the values and `start`: group g's are `start[g]..start[g + 1]`. Sorting indices by
/// a looked-up key instead reads scattered arrays at every comparison.
///
/// The sort is unstable: items `by` calls equal must be alike for the order to be unique.
pub(crate) fn sorted_by_group<T: Copy + Send>(
    groups: usize,
    n: usize,
    item: impl Fn(usize) -> Option<(usize, T)>,
    by: impl Fn(&T, &T) -> Ordering + Sync,
) -> (Vec<usize>, Vec<T>) {
    let mut start = vec![0usize; groups + 1];
    for (g, _) in (0..n).filter_map(&item) {
        start[g + 1] += 1;
    }
    for g in 0..groups {
        start[g + 1] += start[g];
    }
    let mut next = start.clone();
    let mut values: Vec<T> = Vec::with_capacity(start[groups]);
    // Every slot is written below (each item once, at its group's next free slot); the first
    // item stands in for the slots until then.
    if let Some((_, first)) = (0..n).find_map(&item) {
        values.resize(start[groups], first);
    }
    for (g, v) in (0..n).filter_map(&item) {
        values[next[g]] = v;
        next[g] += 1;
    }
    drop(next);
    let mut rest: &mut [T] = &mut values;
    let mut slices: Vec<&mut [T]> = Vec::with_capacity(groups);
    for g in 0..groups {
        let (head, tail) = rest.split_at_mut(start[g + 1] - start[g]);
        slices.push(head);
        rest = tail;
    }
    let (large, small): (Vec<_>, Vec<_>) = slices.into_iter().partition(|s| s.len() >= LARGE_GROUP);
    for s in large {
        s.par_sort_unstable_by(&by);
    }
    small.into_par_iter().for_each(|s| s.sort_unstable_by(&by));
    (start, values)
}
