//! A compact, read-only index of 64-bit hashes: slot numbers for a set built once, and a
//! cache-sized blocked Bloom filter in front of it so that the common "not in the set" answer
//! costs one cache line.
//!
//! Used for the reconciliation join: the receipts name a few million request ids; the request
//! pass asks, for each of up to hundreds of millions of rows, whether its id is one of them.
//!
//! The hashes are added in ascending order. A hash's home slot grows with the hash (the slot is
//! `h * n / 2^64`), so linear probing then places every hash after the previous one: the slots
//! are written front to back (no cache miss per key while building), the slots hold the set in
//! ascending order (so a join can walk it beside another sorted list), and a probe never wraps
//! (the few hashes pushed past the last home slot go to slots appended at the end).

use super::reduce;

/// Slots per key: ~0.75 load, linear probing.
const SLOTS_PER_KEY_NUM: usize = 4;
const SLOTS_PER_KEY_DEN: usize = 3;
/// Bloom filter bits per key (in 512-bit blocks, 3 bits set per key): ~3% false positives.
const BLOOM_BITS_PER_KEY: usize = 10;

#[derive(Debug, Clone)]
pub(crate) struct HashIndex {
    /// 0 = empty; stored hashes are never 0 (see `nonzero`). Non-empty slots ascend.
    slots: Vec<u64>,
    /// The number of home slots (`slots` may be longer: the overflow at the end).
    homes: usize,
    bloom: Vec<u64>,
    len: usize,
    /// The slot of the last hash pushed.
    last: Option<usize>,
}

/// Slots kept free after `homes` home slots for the hashes pushed past the last home. At
/// 3/4 load the run of occupied slots at the end is a few dozen long; a longer one (a crafted
/// input) still works, by growing the vector.
fn overflow_room(homes: usize) -> usize {
    64 + homes / 1024
}

#[inline]
fn nonzero(h: u64) -> u64 {
    h.max(1)
}

impl HashIndex {
    /// An empty index for at most `upper_bound` distinct hashes, filled by [`HashIndex::push`].
    pub(crate) fn with_capacity(upper_bound: usize) -> HashIndex {
        let n = upper_bound.max(1);
        let homes = n * SLOTS_PER_KEY_NUM / SLOTS_PER_KEY_DEN + 1;
        // Room for the overflow past the last home slot, so that pushing it does not double
        // the allocation (nor the callers' per-slot arrays sized by `capacity`).
        let mut slots = Vec::with_capacity(homes + overflow_room(homes));
        slots.resize(homes, 0);
        HashIndex {
            slots,
            homes,
            bloom: vec![0; (n * BLOOM_BITS_PER_KEY).div_ceil(512) * 8],
            len: 0,
            last: None,
        }
    }

    /// Adds `h`, which is no smaller than any hash added before, and returns its slot (the
    /// same slot again when `h` equals the last hash added).
    ///
    /// # Panics
    /// When `h` is smaller than the last hash added: a caller's bug, not an input's.
    pub(crate) fn push(&mut self, h: u64) -> usize {
        let h = nonzero(h);
        let home = self.home(h);
        let at = match self.last {
            Some(last) if self.slots[last] == h => return last,
            Some(last) => {
                assert!(self.slots[last] < h, "hashes pushed out of order");
                home.max(last + 1)
            }
            None => home,
        };
        if at >= self.slots.len() {
            self.slots.resize(at + 1, 0);
        }
        self.slots[at] = h;
        self.last = Some(at);
        self.len += 1;
        let (block, bits) = self.bloom_bits(h);
        for b in bits {
            self.bloom[block + b / 64] |= 1 << (b % 64);
        }
        at
    }

    /// The home slot of `h` (already [`nonzero`]): where [`HashIndex::push`] starts placing it
    /// and [`HashIndex::find`] starts looking for it.
    #[inline]
    fn home(&self, h: u64) -> usize {
        reduce(h, self.homes)
    }

    #[inline]
    fn bloom_bits(&self, h: u64) -> (usize, [usize; 3]) {
        let blocks = self.bloom.len() / 8;
        // The high bits pick the block (as for the slots); three 9-bit fields pick bits in it.
        let g = h.rotate_left(29).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let block = reduce(g, blocks) * 8;
        (
            block,
            [
                (h & 511) as usize,
                ((h >> 9) & 511) as usize,
                ((h >> 18) & 511) as usize,
            ],
        )
    }

    /// Whether `h` may be in the set (no false negatives). Branch-free, so that a loop over many
    /// hashes keeps several cache misses in flight.
    #[inline]
    pub(crate) fn may_contain(&self, h: u64) -> bool {
        let h = nonzero(h);
        let (block, bits) = self.bloom_bits(h);
        let bit = |b: usize| (self.bloom[block + b / 64] >> (b % 64)) & 1;
        bit(bits[0]) & bit(bits[1]) & bit(bits[2]) != 0
    }

    /// Asks the processor to bring the home slot of `h` into the cache, ahead of a
    /// [`HashIndex::find`] (see [`super::prefetch`]), and the same slot of `per_slot`, an array
    /// the caller indexes by the slots `find` returns (a member almost always sits in its home
    /// slot's cache line).
    #[inline]
    pub(crate) fn prefetch<T>(&self, h: u64, per_slot: &[T]) {
        let home = self.home(nonzero(h));
        super::prefetch(&self.slots, home);
        super::prefetch(per_slot, home);
    }

    /// Asks the processor to bring the Bloom filter block of `h` into the cache, ahead of a
    /// [`HashIndex::may_contain`]. The filter of millions of receipts is megabytes; beside the
    /// users' tables of a large audit it falls out of the cache, and a test per row then waits
    /// for memory.
    #[inline]
    pub(crate) fn prefetch_filter(&self, h: u64) {
        let (block, _) = self.bloom_bits(nonzero(h));
        super::prefetch(&self.bloom, block);
    }

    /// The slot of `h`, if `h` is in the set.
    #[inline]
    pub(crate) fn find(&self, h: u64) -> Option<usize> {
        if !self.may_contain(h) {
            return None;
        }
        let h = nonzero(h);
        let from = self.home(h);
        // Slots ascend, so the probe ends at an empty slot or at a larger hash.
        self.slots[from..]
            .iter()
            .position(|x| *x == 0 || *x >= h)
            .map(|i| from + i)
            .filter(|i| self.slots[*i] == h)
    }

    /// The slots the index has room for without growing: every slot `push` or `find` has
    /// returned is below it (and every slot `push` will return, unless the overflow past the
    /// last home slot is unusually long).
    pub(crate) fn capacity(&self) -> usize {
        self.slots.capacity()
    }

    /// Distinct members.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    /// (slot, hash) of every member, in ascending order of hash.
    pub(crate) fn members(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, h)| **h != 0)
            .map(|(i, h)| (i, *h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_of(hashes: &[u64]) -> HashIndex {
        let mut sorted = hashes.to_vec();
        sorted.sort_unstable();
        let mut index = HashIndex::with_capacity(sorted.len());
        for h in sorted {
            index.push(h);
        }
        index
    }

    #[test]
    fn finds_members_and_only_members() {
        let members: Vec<u64> = (0..10_000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xabc)
            .collect();
        let doubled: Vec<u64> = members.iter().chain(&members).copied().collect();
        let index = index_of(&doubled);
        assert_eq!(index.len(), 10_000);
        let mut slots = std::collections::BTreeSet::new();
        for h in &members {
            slots.insert(index.find(*h).expect("member"));
        }
        assert_eq!(slots.len(), 10_000);
        let strangers = (10_000..60_000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xabc);
        assert_eq!(strangers.filter(|h| index.find(*h).is_some()).count(), 0);
        assert!(HashIndex::with_capacity(0).find(5).is_none());
        let listed: Vec<u64> = index.members().map(|(_, h)| h).collect();
        let mut sorted = members.clone();
        sorted.sort_unstable();
        assert_eq!(listed, sorted, "members ascend");
    }

    /// Spread hashes leave the slots within the room reserved at the start: the index and the
    /// per-slot arrays sized by `capacity` are allocated once, not doubled by the overflow.
    #[test]
    fn spread_hashes_stay_within_the_first_allocation() {
        let mut next = crate::stats::xorshift(0x2545_f491_4f6c_dd1d);
        let hashes: Vec<u64> = (0..300_000).map(|_| next()).collect();
        let room = HashIndex::with_capacity(hashes.len()).capacity();
        let index = index_of(&hashes);
        assert!(index.slots.len() > index.homes, "some hashes overflow");
        assert_eq!(index.capacity(), room);
    }

    /// Hashes crowded at the top of the range spill past the last home slot, and are found.
    #[test]
    fn hashes_past_the_last_home_slot_are_kept_and_found() {
        let top: Vec<u64> = (0..50u64).map(|i| u64::MAX - i).collect();
        let index = index_of(&top);
        assert!(index.slots.len() > index.homes);
        for h in &top {
            assert_eq!(index.slots[index.find(*h).expect("member")], *h);
        }
        assert!(index.find(u64::MAX - 50).is_none());
        // 0 and 1 share a slot, as they always did (0 is the empty mark).
        let low = index_of(&[0, 1, 2]);
        assert_eq!(low.len(), 2);
        assert_eq!(low.find(0), low.find(1));
    }
}
