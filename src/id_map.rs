//! Shipment id → row, for looking up every event's shipment while decoding (`validate`).
//!
//! A whole input's events are looked up one by one, 9M at 1M shipments. In inputs whose rows
//! come grouped by shipment most ids repeat the previous row's, but in date partitions a day's
//! events belong to shipments all over the table, and each lookup was cache misses: a map
//! keyed by the frame's `&str` read its control bytes, its bucket and then the candidate's
//! string bytes elsewhere, and the lookups were 40 % of decoding such an input.
//!
//! Here ids of up to `SHORT_ID` bytes (tracking numbers are 13) are keys by value with their
//! length, in an open-addressing table whose slot holds key and row side by side: a lookup
//! reads a slot or two, and `get_many` asks the memory for the slots of the
//! lookups ahead while it answers the current one, so the misses of a batch overlap instead
//! of following each other. Longer ids go to a map that borrows the frame's strings (a million
//! shipments would otherwise be a million allocations).

use polars::prelude::PlHashMap;

use crate::memory::prefetch;
use crate::sampling::mix;

/// Ids of up to this many bytes are kept by value.
pub const SHORT_ID: usize = 15;

/// A key's last byte is the id's length (at most `SHORT_ID`); this one marks a free slot.
const FREE: u8 = u8::MAX;

/// How many lookups ahead `get_many` prefetches.
const AHEAD: usize = 16;

#[derive(Clone, Copy)]
struct Slot {
    key: [u8; 16],
    row: u32,
}

const EMPTY: Slot = Slot { key: free_key(), row: 0 };

const fn free_key() -> [u8; 16] {
    let mut k = [0u8; 16];
    k[SHORT_ID] = FREE;
    k
}

pub struct IdMap<'a> {
    slots: Vec<Slot>,
    /// `slots.len() - 1` (a power of two).
    mask: usize,
    /// Slots in use.
    used: usize,
    long: PlHashMap<&'a str, u32>,
    /// Mixed into every hash, different in every map: ids come from the input, and ids chosen
    /// to share slots under a fixed hash would make each lookup walk a long run of them.
    seed: u64,
}

/// `id`'s bytes and length as one key, when it is short.
#[inline]
fn short_key(id: &str) -> Option<[u8; 16]> {
    let b = id.as_bytes();
    (b.len() <= SHORT_ID).then(|| {
        let mut k = [0u8; 16];
        k[..b.len()].copy_from_slice(b);
        k[SHORT_ID] = b.len() as u8;
        k
    })
}

#[inline]
fn hash(k: &[u8; 16], seed: u64) -> u64 {
    let (a, b) = k.split_at(8);
    let a = u64::from_le_bytes(a.try_into().expect("8 bytes"));
    let b = u64::from_le_bytes(b.try_into().expect("8 bytes"));
    mix(mix(a ^ seed) ^ b)
}

/// A seed no two maps are likely to share: std's random hash keys, new for every `RandomState`.
fn fresh_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x0069_646d_6170); // "idmap"
    h.finish()
}

impl<'a> IdMap<'a> {
    /// A map with room for `n` ids (at most three quarters of its slots in use).
    pub fn with_capacity(n: usize) -> IdMap<'a> {
        let len = n.saturating_mul(4).div_ceil(3).max(16).next_power_of_two();
        IdMap { slots: vec![EMPTY; len], mask: len - 1, used: 0, long: PlHashMap::default(), seed: fresh_seed() }
    }

    /// The slot holding `k`, or the free slot where it would go.
    #[inline]
    fn find(&self, k: &[u8; 16], h: u64) -> usize {
        let mut at = h as usize & self.mask;
        loop {
            let s = &self.slots[at];
            if s.key == *k || s.key[SHORT_ID] == FREE {
                return at;
            }
            at = (at + 1) & self.mask;
        }
    }

    #[inline]
    fn get_short(&self, k: &[u8; 16], h: u64) -> Option<u32> {
        let s = &self.slots[self.find(k, h)];
        (s.key[SHORT_ID] != FREE).then_some(s.row)
    }

    pub fn get(&self, id: &str) -> Option<u32> {
        match short_key(id) {
            Some(k) => self.get_short(&k, hash(&k, self.seed)),
            None => self.long.get(id).copied(),
        }
    }

    /// `get` of every id (`None` for a null one), the slots of the lookups ahead prefetched.
    pub fn get_many(&self, ids: &[Option<&str>]) -> Vec<Option<u32>> {
        let keys: Vec<Option<([u8; 16], u64)>> =
            ids.iter().map(|id| id.and_then(short_key).map(|k| (k, hash(&k, self.seed)))).collect();
        let slot_at = |h: u64| &self.slots[h as usize & self.mask] as *const Slot;
        for (_, h) in keys.iter().take(AHEAD).flatten() {
            prefetch(slot_at(*h));
        }
        (0..ids.len())
            .map(|j| {
                if let Some(Some((_, h))) = keys.get(j + AHEAD) {
                    prefetch(slot_at(*h));
                }
                match (&keys[j], ids[j]) {
                    (Some((k, h)), _) => self.get_short(k, *h),
                    (None, Some(id)) => self.long.get(id).copied(),
                    (None, None) => None,
                }
            })
            .collect()
    }

    /// Maps `id` to `row` unless it is mapped already; the row it maps to now.
    pub fn insert_first(&mut self, id: &'a str, row: u32) -> u32 {
        match short_key(id) {
            Some(k) => self.insert_short(k, hash(&k, self.seed), row),
            None => *self.long.entry(id).or_insert(row),
        }
    }

    /// `insert_first(id, row)` of every id in turn, its row its place in `ids` (null ones
    /// skipped), the slots of the inserts ahead prefetched as `get_many` prefetches its
    /// lookups. A whole input's ids land all over the table, and inserted one by one each
    /// waited for its own miss: the largest single-threaded step of reading a 1M-shipment input.
    pub fn insert_rows_first(&mut self, ids: impl Iterator<Item = Option<&'a str>>) {
        // Keys of a block at a time, so that the batch costs no memory that grows with the input.
        const BLOCK: usize = 4096;
        let mut block: Vec<(u32, &'a str, Option<([u8; 16], u64)>)> = Vec::with_capacity(BLOCK);
        let seed = self.seed;
        let mut ids = ids.enumerate().peekable();
        while ids.peek().is_some() {
            block.clear();
            block.extend(ids.by_ref().take(BLOCK).filter_map(|(row, id)| {
                let id = id?;
                Some((row as u32, id, short_key(id).map(|k| (k, hash(&k, seed)))))
            }));
            for (_, _, key) in block.iter().take(AHEAD) {
                if let Some((_, h)) = key {
                    prefetch(&self.slots[*h as usize & self.mask]);
                }
            }
            for j in 0..block.len() {
                if let Some((_, _, Some((_, h)))) = block.get(j + AHEAD) {
                    prefetch(&self.slots[*h as usize & self.mask]);
                }
                let (row, id, key) = block[j];
                match key {
                    Some((k, h)) => self.insert_short(k, h, row),
                    None => *self.long.entry(id).or_insert(row),
                };
            }
        }
    }

    /// `insert_first` of a short id's key and its hash.
    #[inline]
    fn insert_short(&mut self, k: [u8; 16], h: u64, row: u32) -> u32 {
        let at = self.find(&k, h);
        if self.slots[at].key[SHORT_ID] != FREE {
            return self.slots[at].row;
        }
        self.slots[at] = Slot { key: k, row };
        self.used += 1;
        self.grow_if_full();
        row
    }

    /// Doubles the table once more than three quarters of it is in use (`with_capacity` sizes
    /// it so that a whole input's ids never need this).
    fn grow_if_full(&mut self) {
        if self.used * 4 <= self.slots.len() * 3 {
            return;
        }
        let doubled = vec![EMPTY; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        self.mask = self.slots.len() - 1;
        for s in old.into_iter().filter(|s| s.key[SHORT_ID] != FREE) {
            let at = self.find(&s.key, hash(&s.key, self.seed));
            self.slots[at] = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each map hashes with its own seed: the same ids land in other slots of another map.
    #[test]
    fn maps_place_the_same_ids_differently() {
        let ids: Vec<String> = (0..64).map(|k| format!("LP{k:011}")).collect();
        let layout = || {
            let mut map = IdMap::with_capacity(ids.len());
            map.insert_rows_first(ids.iter().map(|id| Some(id.as_str())));
            map.slots.iter().map(|s| s.row).collect::<Vec<u32>>()
        };
        let first = layout();
        assert!((0..3).any(|_| layout() != first), "three more maps placed 64 ids exactly as the first");
    }

    #[test]
    fn the_id_map_finds_the_rows_a_map_of_strings_finds() {
        let mut rng = crate::TestRng::new(31);
        let mut next = |m: u64| rng.next() % m;
        for round in 0..300 {
            // Lengths around the 15 bytes kept by value, from an alphabet with NUL in it, so
            // that "a" and "a\0" (the same bytes padded with zeros) both occur.
            let id = |next: &mut dyn FnMut(u64) -> u64| -> String {
                let len = match next(3) {
                    0 => next(4) as usize,
                    1 => SHORT_ID - 1 + next(3) as usize,
                    _ => next(22) as usize,
                };
                (0..len).map(|_| ['a', 'b', '\0', 'é'][next(4) as usize]).collect()
            };
            // One round past a block of `insert_rows_first`.
            let n = if round == 0 { 9000 } else { next(60) };
            let ids: Vec<String> = (0..n).map(|_| id(&mut next)).collect();
            // Sized for fewer ids than it gets in some rounds: it grows.
            let mut map = IdMap::with_capacity(if round % 2 == 0 { ids.len() } else { 0 });
            let mut want: PlHashMap<&str, u32> = PlHashMap::default();
            for (i, id) in ids.iter().enumerate() {
                let row = if next(5) == 0 { u32::MAX } else { i as u32 };
                assert_eq!(map.insert_first(id, row), *want.entry(id).or_insert(row), "round {round}: {id:?}");
            }
            // Inserted in one batch, rows being places (a null id takes a place, not a row).
            let mut batch = IdMap::with_capacity(if round % 2 == 0 { ids.len() } else { 0 });
            let mut placed: Vec<Option<&str>> = ids.iter().map(|id| Some(id.as_str())).collect();
            placed.insert(placed.len() / 3, None);
            batch.insert_rows_first(placed.iter().copied());
            let mut first: PlHashMap<&str, u32> = PlHashMap::default();
            for (r, id) in placed.iter().enumerate() {
                if let Some(id) = id {
                    first.entry(id).or_insert(r as u32);
                }
            }
            for id in &ids {
                assert_eq!(batch.get(id), first.get(id.as_str()).copied(), "round {round}: {id:?} inserted in a batch");
            }
            let probes: Vec<String> = ids.iter().cloned().chain((0..40).map(|_| id(&mut next))).collect();
            let mut asked: Vec<Option<&str>> = probes.iter().map(|p| Some(p.as_str())).collect();
            asked.insert(asked.len() / 2, None);
            let many = map.get_many(&asked);
            for (p, got) in asked.iter().zip(&many) {
                let want = p.and_then(|p| want.get(p).copied());
                assert_eq!(p.map(|p| map.get(p)).unwrap_or(None), want, "round {round}: {p:?}");
                assert_eq!(*got, want, "round {round}: {p:?} in a batch");
            }
        }
    }
}
