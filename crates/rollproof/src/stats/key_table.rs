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
//!
//! Invariant: entries moved from one table into another go through [`KeyTable::merge_from`],
//! [`KeyTable::split_ranges`], [`KeyTable::take_range`] or an iterator whose length is known
//! ([`Extend`] reserves it), never through [`KeyTable::entry`] one at a time into a table without
//! room for them all. A table's slot order is its keys' home order in every table (homes rise
//! with `key * SPREAD`), so such entries arrive as a sweep from the front of the table: with
//! room reserved the swept part is at most 3/4 full, but without it the swept part holds more
//! keys than slots until the table grows, and every insert probes to the end of one run that
//! spans it. That is quadratic: merging two workers' tables of disjoint users (a `user_id` as
//! distinct as a session id) took 90% of the CPU of a 1M-request audit and 32 s at 4M requests,
//! ~2,700 probes per key (see BENCHMARKS.md).

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

// Probes made by this thread's tables (`KeyTable::entry` and look-ups), for the tests that hold
// bulk inserts to a bounded number of probes per key.
#[cfg(test)]
thread_local! {
    static PROBES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[inline]
fn count_probe() {
    #[cfg(test)]
    PROBES.with(|p| p.set(p.get() + 1));
}

impl<V: Copy + Default> KeyTable<V> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// An empty table with room for `n` entries.
    pub(crate) fn with_capacity(n: usize) -> KeyTable<V> {
        let mut table = KeyTable::default();
        table.reserve(n);
        table
    }

    /// Room for `additional` more entries without growing (see the module's invariant).
    pub(crate) fn reserve(&mut self, additional: usize) {
        let need = self.len.saturating_add(additional);
        if need.saturating_mul(4) > self.slots.len().saturating_mul(3) {
            self.resize(need.saturating_mul(4).div_ceil(3).max(16));
        }
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
            count_probe();
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
        self.find(key).map(|i| &self.slots[i].1)
    }

    /// The slot of `key` (not 0), if the table has it.
    #[inline]
    fn find(&self, key: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let n = self.slots.len();
        let mut i = home(key, n);
        loop {
            count_probe();
            match self.slots[i].0 {
                k if k == key => return Some(i),
                0 => return None,
                _ => i = next(i, n),
            }
        }
    }

    /// Folds every entry of `other` into this table: `fold(mine, theirs)`, where `mine` is
    /// `V::default()` for a key this table lacks (as `entry` then folding would). The keys
    /// both have are folded in a first pass, look-ups in `other`'s slot order, which walks
    /// this table front to back as well; the rest are inserted after room was reserved for
    /// exactly them (see the module's invariant).
    pub(crate) fn merge_from(&mut self, mut other: KeyTable<V>, mut fold: impl FnMut(&mut V, V)) {
        if let Some(theirs) = other.zero.take() {
            fold(self.entry(0).0, theirs);
        }
        let mut fresh = 0;
        for slot in &mut other.slots {
            if slot.0 == 0 {
                continue;
            }
            match self.find(slot.0) {
                Some(i) => {
                    fold(&mut self.slots[i].1, slot.1);
                    slot.0 = 0;
                }
                None => fresh += 1,
            }
        }
        self.reserve(fresh);
        for (key, theirs) in other.slots {
            if key != 0 {
                fold(self.entry(key).0, theirs);
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        // 1.5× rather than 2×: the table is then between 1/2 and 3/4 full, not 3/8 and 3/4,
        // which at hundreds of thousands of users per worker is megabytes per table.
        self.resize((self.slots.len() * 3 / 2).max(16));
    }

    /// Moves the entries into `size` slots (more than there are entries).
    fn resize(&mut self, size: usize) {
        // Written here, not allocated zeroed: a zeroed allocation maps every page to the shared
        // zero page, the probes below read it before they write, and every page's first write
        // then faults again and makes the kernel flush the other threads' TLBs (at 100M, 4% of
        // the audit's samples were those flushes, all from here).
        let mut slots = Vec::with_capacity(size);
        slots.resize(size, (0, V::default()));
        let old = std::mem::replace(&mut self.slots, slots);
        // In the old slots' order, which is home order here too: a sweep from the front, into a
        // table at most half full after a growth, and at most 3/4 after `reserve`.
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

    /// Moves every entry into the table of its key range (`crate::engine::range_of`): one pass
    /// to count each range's entries, one to move them into tables with room for them.
    pub(crate) fn split_ranges(&mut self, ranges: usize) -> Vec<KeyTable<V>> {
        let mut sizes = vec![0usize; ranges];
        for (k, _) in self.iter() {
            sizes[crate::engine::range_of(k, ranges)] += 1;
        }
        let mut parts: Vec<KeyTable<V>> = sizes.into_iter().map(KeyTable::with_capacity).collect();
        for (k, v) in std::mem::take(self) {
            *parts[crate::engine::range_of(k, ranges)].entry(k).0 = v;
        }
        parts
    }

    /// Moves the entries of key range `range` of `ranges` out of the table.
    pub(crate) fn take_range(&mut self, range: usize, ranges: usize) -> KeyTable<V> {
        let in_range = |k: u64| crate::engine::range_of(k, ranges) == range;
        let n = self.iter().filter(|&(k, _)| in_range(k)).count();
        let mut taken = KeyTable::with_capacity(n);
        let mut kept = KeyTable::with_capacity(self.len - n);
        for (k, v) in std::mem::take(self) {
            let to = if in_range(k) { &mut taken } else { &mut kept };
            *to.entry(k).0 = v;
        }
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

/// Reserves the iterator's lower bound of entries first (see the module's invariant).
impl<V: Copy + Default> Extend<(u64, V)> for KeyTable<V> {
    fn extend<I: IntoIterator<Item = (u64, V)>>(&mut self, iter: I) {
        let iter = iter.into_iter();
        self.reserve(iter.size_hint().0);
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
        let mut next = crate::stats::xorshift(0x2545_f491_4f6c_dd1d);
        for step in 0..200_000u64 {
            let x = next();
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

    /// Probes made by this thread's tables while `f` runs, per key of `keys`.
    fn probes_per_key(keys: usize, f: impl FnOnce()) -> f64 {
        let before = super::PROBES.with(|p| p.get());
        f();
        (super::PROBES.with(|p| p.get()) - before) as f64 / keys as f64
    }

    fn sorted(table: &KeyTable<u64>) -> Vec<(u64, u64)> {
        let mut entries: Vec<(u64, u64)> = table.iter().map(|(k, v)| (k, *v)).collect();
        entries.sort_unstable();
        entries
    }

    /// Entries moved out of a table come in its slot order, which is their home order in any
    /// table. Inserted one at a time into a table without room for them all, each probes to
    /// the end of one run that grows through the table (the first half below: dozens of
    /// probes per key). `merge_from`, `split_ranges`, `take_range` and `Extend` reserve room
    /// first and stay at the probes of a look-up and an insertion, with the same entries.
    #[test]
    fn moves_between_tables_stay_at_a_few_probes_per_key() {
        let mut next = crate::stats::xorshift(0x9e37_79b9_7f4a_7c15);
        let keys: Vec<u64> = (0..100_000).map(|_| next()).collect();
        // Two workers' tables of disjoint keys (distinct users in each).
        let half = |top: u64| -> KeyTable<u64> {
            let entries: Vec<(u64, u64)> = keys
                .iter()
                .filter(|&&k| k >> 63 == top)
                .map(|&k| (k, k ^ 1))
                .collect();
            entries.into_iter().collect()
        };
        let (low, high) = (half(0), half(1));

        let mut naive = low.clone();
        let one_at_a_time = probes_per_key(high.len(), || {
            for (k, v) in high.clone() {
                *naive.entry(k).0 = v;
            }
        });
        assert!(one_at_a_time > 40.0, "{one_at_a_time} probes per key");
        // A look-up that misses and an insertion, each at most 3/4 full: (1 + 4²) / 2 probes
        // expected per miss at 3/4 (Knuth), so up to ~17 for both.

        let mut merged = low.clone();
        let merge = probes_per_key(high.len(), || {
            merged.merge_from(high.clone(), |mine, theirs| *mine = theirs)
        });
        assert!(merge < 20.0, "merge_from: {merge} probes per key");
        assert_eq!(sorted(&merged), sorted(&naive));
        assert_eq!(merged.len(), keys.len());

        let mut parts = Vec::new();
        let split = probes_per_key(keys.len(), || parts = merged.clone().split_ranges(3));
        assert!(split < 20.0, "split_ranges: {split} probes per key");
        let mut rest = merged.clone();
        let mut taken = KeyTable::default();
        let take = probes_per_key(keys.len(), || taken = rest.take_range(1, 3));
        assert!(take < 20.0, "take_range: {take} probes per key");
        assert_eq!(sorted(&taken), sorted(&parts[1]));
        assert_eq!(taken.len() + rest.len(), keys.len());

        let entries: Vec<(u64, u64)> = merged.clone().into_iter().collect();
        let mut copy = KeyTable::default();
        let extend = probes_per_key(keys.len(), || copy = entries.into_iter().collect());
        assert!(extend < 20.0, "extend: {extend} probes per key");
        assert_eq!(sorted(&copy), sorted(&merged));
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
