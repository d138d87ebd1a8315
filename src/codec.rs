//! A compact, exact binary encoding for what a sharded night's parts exchange between rounds
//! (`rounds`): counts, integer sums, timestamps, float lists and keys. Floats travel as their
//! IEEE bits (NaN and -0.0 included, which JSON cannot carry), integers little-endian, lists
//! with their length first. A type lists its fields once (`codec_struct!`), in the module that
//! defines it, so private fields stay private.
//!
//! Only lanewatch reads these bytes back, in the same version (`rounds` checks the version and
//! a BLAKE3 of every file before decoding): there is no schema evolution here on purpose.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};

/// A value that can be written to and read back from the exchange's bytes, exactly.
pub trait Codec: Sized {
    fn put(&self, out: &mut Vec<u8>);
    fn take(r: &mut Reader<'_>) -> Result<Self>;
}

/// Reads values from a byte slice; running past its end is an error, never a panic.
pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, at: 0 }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(short)?;
        let out = &self.buf[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.bytes(N)?.try_into().expect("N bytes"))
    }

    /// A list's length, no larger than the bytes left could hold (each item takes at least
    /// one byte but for empty tuples, which nothing exchanged is), so a bad length cannot
    /// ask for a huge allocation.
    fn len(&mut self) -> Result<usize> {
        let n = u64::take(self)?;
        usize::try_from(n).ok().filter(|&n| n <= self.buf.len() - self.at).ok_or_else(short)
    }

    /// Skips the bytes left (a value not wanted).
    pub fn skip_rest(&mut self) {
        self.at = self.buf.len();
    }

    /// Whether every byte was read.
    pub fn finished(&self) -> bool {
        self.at == self.buf.len()
    }
}

fn short() -> Error {
    Error::internal("exchange: a value runs past the end of its bytes")
}

/// Encodes one value.
pub fn to_bytes<T: Codec>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    v.put(&mut out);
    out
}

/// Decodes one value that fills `bytes` exactly.
pub fn from_bytes<T: Codec>(bytes: &[u8]) -> Result<T> {
    let mut r = Reader::new(bytes);
    let v = T::take(&mut r)?;
    if !r.finished() {
        return Err(Error::internal("exchange: bytes left over after a value"));
    }
    Ok(v)
}

macro_rules! codec_le {
    ($($t:ty),*) => {$(
        impl Codec for $t {
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn take(r: &mut Reader<'_>) -> Result<Self> {
                Ok(<$t>::from_le_bytes(r.array()?))
            }
        }
    )*};
}
codec_le!(u8, u32, u64, i32, i64);

impl Codec for f64 {
    fn put(&self, out: &mut Vec<u8>) {
        self.to_bits().put(out);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self> {
        Ok(f64::from_bits(u64::take(r)?))
    }
}

impl Codec for usize {
    fn put(&self, out: &mut Vec<u8>) {
        (*self as u64).put(out);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self> {
        usize::try_from(u64::take(r)?).map_err(|_| Error::internal("exchange: a count too large for this machine"))
    }
}

impl Codec for bool {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(*self as u8);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self> {
        match u8::take(r)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(Error::internal(format!("exchange: {b} is not a bool"))),
        }
    }
}

impl Codec for String {
    fn put(&self, out: &mut Vec<u8>) {
        self.len().put(out);
        out.extend_from_slice(self.as_bytes());
    }
    fn take(r: &mut Reader<'_>) -> Result<Self> {
        let n = r.len()?;
        String::from_utf8(r.bytes(n)?.to_vec()).map_err(|_| Error::internal("exchange: a string not UTF-8"))
    }
}

/// A list: its length, then its items.
fn put_list<'a, T: Codec + 'a>(items: impl ExactSizeIterator<Item = &'a T>, out: &mut Vec<u8>) {
    items.len().put(out);
    for v in items {
        v.put(out);
    }
}

fn take_list<T: Codec, C: FromIterator<T>>(r: &mut Reader<'_>) -> Result<C> {
    let n = r.len()?;
    (0..n).map(|_| T::take(r)).collect()
}

impl<T: Codec> Codec for Vec<T> {
    fn put(&self, out: &mut Vec<u8>) {
        put_list(self.iter(), out);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self> {
        take_list(r)
    }
}

/// A frame (a shard's rows of an output) as the compact Parquet bytes lanewatch writes for
/// itself (`io::compact_bytes`): exact (floats, nulls, time zones), and of the frame's dtypes.
impl Codec for polars::prelude::DataFrame {
    fn put(&self, out: &mut Vec<u8>) {
        let bytes = crate::io::compact_bytes(std::path::Path::new("exchange"), &mut self.clone())
            .expect("a frame in memory encodes as Parquet");
        bytes.len().put(out);
        out.extend_from_slice(&bytes);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self> {
        use polars::prelude::SerReader;
        let n = r.len()?;
        polars::prelude::ParquetReader::new(std::io::Cursor::new(r.bytes(n)?))
            .finish()
            .map_err(|e| Error::internal(format!("exchange: a frame unreadable: {e}")))
    }
}

impl<T: Codec> Codec for Option<T> {
    fn put(&self, out: &mut Vec<u8>) {
        self.is_some().put(out);
        if let Some(v) = self {
            v.put(out);
        }
    }
    fn take(r: &mut Reader<'_>) -> Result<Self> {
        Ok(if bool::take(r)? { Some(T::take(r)?) } else { None })
    }
}

impl<T: Codec + Copy + Default, const N: usize> Codec for [T; N] {
    fn put(&self, out: &mut Vec<u8>) {
        for v in self {
            v.put(out);
        }
    }
    fn take(r: &mut Reader<'_>) -> Result<Self> {
        let mut a = [T::default(); N];
        for v in &mut a {
            *v = T::take(r)?;
        }
        Ok(a)
    }
}

impl<A: Codec, B: Codec> Codec for (A, B) {
    fn put(&self, out: &mut Vec<u8>) {
        self.0.put(out);
        self.1.put(out);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self> {
        Ok((A::take(r)?, B::take(r)?))
    }
}

impl<A: Codec, B: Codec, C: Codec> Codec for (A, B, C) {
    fn put(&self, out: &mut Vec<u8>) {
        self.0.put(out);
        self.1.put(out);
        self.2.put(out);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self> {
        Ok((A::take(r)?, B::take(r)?, C::take(r)?))
    }
}

impl<K: Codec + Ord, V: Codec> Codec for BTreeMap<K, V> {
    fn put(&self, out: &mut Vec<u8>) {
        self.len().put(out);
        for (k, v) in self {
            k.put(out);
            v.put(out);
        }
    }
    fn take(r: &mut Reader<'_>) -> Result<Self> {
        let pairs: Vec<(K, V)> = take_list(r)?;
        ascending(pairs.iter().map(|p| &p.0))?;
        Ok(pairs.into_iter().collect())
    }
}

impl<T: Codec + Ord> Codec for BTreeSet<T> {
    fn put(&self, out: &mut Vec<u8>) {
        put_list(self.iter(), out);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self> {
        let items: Vec<T> = take_list(r)?;
        ascending(items.iter())?;
        Ok(items.into_iter().collect())
    }
}

/// A map's keys or a set's items as they are written: strictly ascending. Anything else is
/// not what `put` wrote (and would decode to other bytes than it came from).
fn ascending<'a, T: Ord + 'a>(keys: impl Iterator<Item = &'a T>) -> Result<()> {
    let mut prev: Option<&T> = None;
    for k in keys {
        if prev.is_some_and(|p| p >= k) {
            return Err(Error::internal("exchange: keys out of order or repeated"));
        }
        prev = Some(k);
    }
    Ok(())
}

/// `Codec` for a struct, its fields listed in order: `codec_struct!(Type { a, b, c });`.
#[macro_export]
macro_rules! codec_struct {
    ($t:ty { $($f:ident),* $(,)? }) => {
        impl $crate::codec::Codec for $t {
            fn put(&self, out: &mut Vec<u8>) {
                $( $crate::codec::Codec::put(&self.$f, out); )*
            }
            fn take(r: &mut $crate::codec::Reader<'_>) -> $crate::error::Result<Self> {
                Ok(Self { $( $f: $crate::codec::Codec::take(r)?, )* })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct S {
        a: Vec<(String, i64)>,
        b: Option<[f64; 3]>,
        c: BTreeMap<(usize, String), Vec<Vec<f64>>>,
        d: BTreeSet<(u32, bool)>,
        e: Option<u8>,
    }
    codec_struct!(S { a, b, c, d, e });

    #[test]
    fn values_come_back_exactly() {
        let s = S {
            a: vec![("ünï".into(), i64::MIN), (String::new(), -1)],
            b: Some([f64::NAN, -0.0, f64::from_bits(1)]),
            c: [((3, "x".into()), vec![vec![1.5, f64::INFINITY], vec![]])].into_iter().collect(),
            d: [(7, true), (0, false)].into_iter().collect(),
            e: None,
        };
        let bytes = to_bytes(&s);
        let back: S = from_bytes(&bytes).unwrap();
        // NaN != NaN: compare the bits of the floats, and everything else as it is.
        let bits = |v: &Option<[f64; 3]>| v.map(|a| a.map(f64::to_bits));
        assert_eq!(bits(&back.b), bits(&s.b));
        assert_eq!((&back.a, &back.c, &back.d, &back.e), (&s.a, &s.c, &s.d, &s.e));
        assert_eq!(to_bytes(&back), bytes, "encoding is deterministic");
    }

    #[test]
    fn truncated_or_padded_bytes_are_errors() {
        let bytes = to_bytes(&vec![String::from("abc"); 4]);
        for n in 0..bytes.len() {
            assert!(from_bytes::<Vec<String>>(&bytes[..n]).is_err(), "{n} of {} bytes decoded", bytes.len());
        }
        let mut more = bytes.clone();
        more.push(0);
        assert!(from_bytes::<Vec<String>>(&more).is_err());
        // A length claiming more items than bytes left is refused before allocating.
        assert!(from_bytes::<Vec<u64>>(&to_bytes(&(u64::MAX / 2))).is_err());
        assert!(from_bytes::<bool>(&[2]).is_err());
        // Keys out of order or repeated are not what a map or set writes.
        for keys in [vec![2u64, 1], vec![1, 1]] {
            assert!(from_bytes::<BTreeSet<u64>>(&to_bytes(&keys)).is_err(), "{keys:?}");
            let pairs: Vec<(u64, bool)> = keys.iter().map(|&k| (k, true)).collect();
            assert!(from_bytes::<BTreeMap<u64, bool>>(&to_bytes(&pairs)).is_err(), "{keys:?}");
        }
        assert!(from_bytes::<BTreeSet<u64>>(&to_bytes(&vec![1u64, 2])).is_ok());
    }
}
