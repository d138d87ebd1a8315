//! Which shard owns a shipment when a night is split across machines (README "Running on a
//! cluster"). A shipment belongs to the shard its destination × service hashes to, so every
//! lane and every destination × service fallback group lives on one shard. Events belong to
//! their shipment's shard; events whose shipment is unknown (or whose id is null) belong to
//! shard 0, so the single run's count of them is reported exactly once.
//!
//! The hash is FNV-1a (64-bit) over `destination`, a 0x1F byte and `service`, as UTF-8, then
//! modulo the shard count: simple to reproduce in any engine (the Spark job in
//! `pipelines/spark/` does it in Python), and stable across versions and platforms.

use std::fmt;
use std::str::FromStr;

/// Shard `index` of `count`, as `--shard index/count` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Whether this shard owns shipments of this destination and service.
    pub fn owns(&self, destination: &str, service: &str) -> bool {
        shard_of(destination, service, self.count) == self.index
    }

    /// Shard 0 reports the events no shipment owns.
    pub fn owns_orphans(&self) -> bool {
        self.index == 0
    }

    /// The file-name stem of this shard's partial: `shard-3-of-7`.
    pub fn stem(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("expected I/N with 0 <= I < N (e.g. 3/8), got {s:?}");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (i.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// The shard of a destination × service among `count`.
pub fn shard_of(destination: &str, service: &str, count: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in destination.as_bytes().iter().chain([0x1f].iter()).chain(service.as_bytes()) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % count.max(1) as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_index_and_count() {
        assert_eq!("3/7".parse::<Shard>(), Ok(Shard { index: 3, count: 7 }));
        assert_eq!("0/1".parse::<Shard>().map(|s| s.stem()), Ok("shard-0-of-1".to_string()));
        for bad in ["7/7", "1/0", "3", "-1/4", "a/b", "1/2/3", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_key_hash_is_fnv1a_over_destination_and_service() {
        // FNV-1a of the bytes "a", 0x1F (computed independently, in Python), modulo 2^32 - 1.
        assert_eq!(shard_of("a", "", u32::MAX), (0x089b_e907_b544_fdc9u64 % u32::MAX as u64) as u32);
        assert_eq!(shard_of("FR", "economy", 1), 0);
        // The separator keeps ("FR", "Xeconomy") and ("FRX", "economy") apart.
        assert_ne!(shard_of("FR", "Xeconomy", 1 << 31), shard_of("FRX", "economy", 1 << 31));
    }
}
