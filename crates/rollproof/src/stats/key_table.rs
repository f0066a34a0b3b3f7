//! A growable map from 64-bit key hashes to small `Copy` values, for the per-key states that
//! grow with users (the users table that `mixed_versions` and the impact section share).
//!
//! Why not a `HashMap`: a per-row update into a map of hundreds of thousands of keys misses the
//! cache on nearly every row, and in a general-purpose map a look-up touches two places (control
//! bytes, then the bucket). Here a key and its value share one slot, so a look-up is one cache
//! line (two for a slot that straddles a line, which the prefetch asks for together). (Measured
//! on the 10M benchmark: 5% less CPU for the whole audit.) Where a table outgrows the last-level
//! cache (5M users in the 100M benchmark) every look-up still misses; callers ask for the slots
//! of later items ahead ([`KeyTable::prefetch`]) so that the misses overlap.
//!
//! Open addressing with linear probing, at most 3/4 full and grown by half; key
//! 0 marks an empty slot, so the key 0 itself is kept aside. Iteration order is the slots' order:
//! callers that print or serialize sort first (serde does: entries are written in key order,
//! the same bytes as a sorted `HashMap` of the same entries).

use serde::{Deserialize, Serialize};

use super::prefetch;

#[derive(Clone, Debug, Default)]
pub(crate) struct KeyTable<V> {
    slots: Vec<(u64, V)>,
    /// The value of key 0, which cannot live in a slot.
    zero: Option<V>,
    len: usize,
}

/// A slot's home among `n`: the key times an odd constant (keys are hashes already, but a crafted
/// partial could choose them; multiplying spreads patterns in the low bits), scaled to `0..n` by
/// its high bits, so that `n` need not be a power of two.
#[inline]
fn home(key: u64, n: usize) -> usize {
    super::reduce(key.wrapping_mul(SPREAD), n)
}

/// The odd constant of [`home`].
const SPREAD: u64 = 0x9e37_79b9_7f4a_7c15;

/// The slot after `i` among `n`, wrapping.
#[inline]
fn next(i: usize, n: usize) -> usize {
    if i + 1 == n {
        0
    } else {
        i + 1
    }
}

impl<V: Copy + Default> KeyTable<V> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The value of `key`, inserted as `V::default()` when absent; `true` when it was inserted.
    #[inline]
    pub(crate) fn entry(&mut self, key: u64) -> (&mut V, bool) {
        if key == 0 {
            let inserted = self.zero.is_none();
            self.len += inserted as usize;
            return (self.zero.get_or_insert_with(V::default), inserted);
        }
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let n = self.slots.len();
        let mut i = home(key, n);
        loop {
            let k = self.slots[i].0;
            if k == key {
                return (&mut self.slots[i].1, false);
            }
            if k == 0 {
                self.slots[i] = (key, V::default());
                self.len += 1;
                return (&mut self.slots[i].1, true);
            }
            i = next(i, n);
        }
    }

    /// Asks the processor to bring `key`'s home slot into the cache, ahead of a look-up.
    #[inline]
    pub(crate) fn prefetch(&self, key: u64) {
        prefetch(&self.slots, home(key, self.slots.len()));
    }

    pub(crate) fn get(&self, key: u64) -> Option<&V> {
        if key == 0 {
            return self.zero.as_ref();
        }
        if self.slots.is_empty() {
            return None;
        }
        let n = self.slots.len();
        let mut i = home(key, n);
        loop {
            match self.slots[i].0 {
                k if k == key => return Some(&self.slots[i].1),
                0 => return None,
                _ => i = next(i, n),
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        // 1.5× rather than 2×: the table is then between 1/2 and 3/4 full, not 3/8 and 3/4,
        // which at hundreds of thousands of users per worker is megabytes per table.
        let size = (self.slots.len() * 3 / 2).max(16);
        // Written here, not allocated zeroed: a zeroed allocation maps every page to the shared
        // zero page, the probes below read it before they write, and every page's first write
        // then faults again and makes the kernel flush the other threads' TLBs (at 100M, 4% of
        // the audit's samples were those flushes, all from here).
        let mut slots = Vec::with_capacity(size);
        slots.resize(size, (0, V::default()));
        let old = std::mem::replace(&mut self.slots, slots);
        for (key, value) in old {
            if key != 0 {
                let mut i = home(key, size);
                while self.slots[i].0 != 0 {
                    i = next(i, size);
                }
                self.slots[i] = (key, value);
            }
        }
    }

    /// The entries, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        self.zero
            .iter()
            .map(|v| (0, v))
            .chain(self.slots.iter().filter(|s| s.0 != 0).map(|(k, v)| (*k, v)))
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// Moves every entry into the table of its key range (`crate::engine::range_of`), in one pass.
    pub(crate) fn split_ranges(&mut self, ranges: usize) -> Vec<KeyTable<V>> {
        let mut parts: Vec<KeyTable<V>> = (0..ranges).map(|_| KeyTable::default()).collect();
        for (k, v) in std::mem::take(self) {
            *parts[crate::engine::range_of(k, ranges)].entry(k).0 = v;
        }
        parts
    }

    /// Moves the entries of key range `range` of `ranges` out of the table.
    pub(crate) fn take_range(&mut self, range: usize, ranges: usize) -> KeyTable<V> {
        let (taken, kept) = std::mem::take(self)
            .into_iter()
            .partition(|(k, _)| crate::engine::range_of(*k, ranges) == range);
        *self = kept;
        taken
    }
}

impl<V: Copy + Default> IntoIterator for KeyTable<V> {
    type Item = (u64, V);
    type IntoIter = std::iter::Chain<
        std::iter::Map<std::option::IntoIter<V>, fn(V) -> (u64, V)>,
        std::iter::Filter<std::vec::IntoIter<(u64, V)>, fn(&(u64, V)) -> bool>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        let zero: fn(V) -> (u64, V) = |v| (0, v);
        let occupied: fn(&(u64, V)) -> bool = |s| s.0 != 0;
        self.zero
            .into_iter()
            .map(zero)
            .chain(self.slots.into_iter().filter(occupied))
    }
}

/// Later entries of a repeated key replace earlier ones (as when collecting into a `HashMap`).
impl<V: Copy + Default> FromIterator<(u64, V)> for KeyTable<V> {
    fn from_iter<I: IntoIterator<Item = (u64, V)>>(iter: I) -> KeyTable<V> {
        let mut table = KeyTable::default();
        table.extend(iter);
        table
    }
}

impl<V: Copy + Default> Extend<(u64, V)> for KeyTable<V> {
    fn extend<I: IntoIterator<Item = (u64, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            *self.entry(k).0 = v;
        }
    }
}

/// Written as the sequence of `(key, value)` pairs in key order.
impl<V: Copy + Default + Serialize> Serialize for KeyTable<V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut entries: Vec<(u64, &V)> = self.iter().collect();
        entries.sort_unstable_by_key(|e| e.0);
        s.collect_seq(entries)
    }
}

impl<'de, V: Copy + Default + Deserialize<'de>> Deserialize<'de> for KeyTable<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<KeyTable<V>, D::Error> {
        Ok(Vec::<(u64, V)>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::KeyTable;
    use std::collections::HashMap;

    /// The table against a `HashMap` on the same operations, key 0 and colliding homes included.
    #[test]
    fn agrees_with_a_hash_map() {
        let mut table: KeyTable<u64> = KeyTable::default();
        let mut map: HashMap<u64, u64> = HashMap::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for step in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Few distinct keys, some 0, some equal in their high bits (same home).
            let key = match step % 7 {
                0 => 0,
                1 => (x % 64) << 40,
                _ => x % 50_000,
            };
            let (v, inserted) = table.entry(key);
            assert_eq!(inserted, !map.contains_key(&key));
            *v += step;
            *map.entry(key).or_default() += step;
        }
        assert_eq!(table.len(), map.len());
        for (k, v) in &map {
            assert_eq!(table.get(*k), Some(v));
        }
        assert_eq!(table.get(u64::MAX), None);
        let mut entries: Vec<(u64, u64)> = table.clone().into_iter().collect();
        entries.sort_unstable();
        let mut expected: Vec<(u64, u64)> = map.clone().into_iter().collect();
        expected.sort_unstable();
        assert_eq!(entries, expected);

        table = table.into_iter().filter(|(k, _)| k % 3 == 0).collect();
        map.retain(|k, _| k % 3 == 0);
        assert_eq!(table.len(), map.len());
        let parts = table.clone().split_ranges(5);
        assert_eq!(parts.iter().map(KeyTable::len).sum::<usize>(), map.len());
        for (r, part) in parts.iter().enumerate() {
            let mut rest = table.clone();
            let taken = rest.take_range(r, 5);
            assert_eq!(taken.len(), part.len());
            assert_eq!(taken.len() + rest.len(), map.len());
            for (k, v) in part.iter() {
                assert_eq!(crate::engine::range_of(k, 5), r);
                assert_eq!(taken.get(k), Some(v));
                assert_eq!(rest.get(k), None);
            }
        }
    }

    /// Serialized in key order: the bytes do not depend on the order of insertion.
    #[test]
    fn serializes_in_key_order() {
        let a: KeyTable<u8> = [(5, 1), (0, 2), (u64::MAX, 3), (9, 4)]
            .into_iter()
            .collect();
        let b: KeyTable<u8> = [(9, 4), (u64::MAX, 3), (5, 1), (0, 2)]
            .into_iter()
            .collect();
        let bytes = postcard::to_allocvec(&a).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&b).unwrap());
        let expected: Vec<(u64, u8)> = vec![(0, 2), (5, 1), (9, 4), (u64::MAX, 3)];
        assert_eq!(bytes, postcard::to_allocvec(&expected).unwrap());
        let back: KeyTable<u8> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.len(), 4);
        assert_eq!(back.get(u64::MAX), Some(&3));
    }
}
