//! A compact, read-only index of 64-bit hashes: slot numbers for a set built once, and a
//! cache-sized blocked Bloom filter in front of it so that the common "not in the set" answer
//! costs one cache line.
//!
//! Used for the reconciliation join: the receipts name a few million request ids; the request
//! pass asks, for each of up to hundreds of millions of rows, whether its id is one of them.

/// Slots per key: ~0.75 load, linear probing.
const SLOTS_PER_KEY_NUM: usize = 4;
const SLOTS_PER_KEY_DEN: usize = 3;
/// Bloom filter bits per key (in 512-bit blocks, 3 bits set per key): ~3% false positives.
const BLOOM_BITS_PER_KEY: usize = 10;

#[derive(Debug, Clone)]
pub(crate) struct HashIndex {
    /// 0 = empty; stored hashes are never 0 (see `nonzero`).
    slots: Vec<u64>,
    bloom: Vec<u64>,
    len: usize,
}

#[inline]
fn nonzero(h: u64) -> u64 {
    h.max(1)
}

#[inline]
fn reduce(h: u64, n: usize) -> usize {
    ((h as u128 * n as u128) >> 64) as usize
}

impl HashIndex {
    /// Builds the index of the distinct hashes among `hashes`.
    pub(crate) fn build(
        hashes: impl Iterator<Item = u64> + Clone,
        upper_bound: usize,
    ) -> HashIndex {
        let n = upper_bound.max(1);
        let mut index = HashIndex {
            slots: vec![0; n * SLOTS_PER_KEY_NUM / SLOTS_PER_KEY_DEN + 1],
            bloom: vec![0; (n * BLOOM_BITS_PER_KEY).div_ceil(512) * 8],
            len: 0,
        };
        for h in hashes {
            index.insert(nonzero(h));
        }
        index
    }

    fn insert(&mut self, h: u64) {
        let n = self.slots.len();
        let mut i = reduce(h, n);
        loop {
            match self.slots[i] {
                0 => {
                    self.slots[i] = h;
                    self.len += 1;
                    break;
                }
                x if x == h => return,
                _ => i = if i + 1 == n { 0 } else { i + 1 },
            }
        }
        let (block, bits) = self.bloom_bits(h);
        for b in bits {
            self.bloom[block + b / 64] |= 1 << (b % 64);
        }
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

    /// The slot of `h`, if `h` is in the set.
    #[inline]
    pub(crate) fn find(&self, h: u64) -> Option<usize> {
        if !self.may_contain(h) {
            return None;
        }
        let h = nonzero(h);
        let n = self.slots.len();
        let mut i = reduce(h, n);
        loop {
            match self.slots[i] {
                0 => return None,
                x if x == h => return Some(i),
                _ => i = if i + 1 == n { 0 } else { i + 1 },
            }
        }
    }

    /// Number of slots: slot numbers are below it.
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Distinct members.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    /// (slot, hash) of every member.
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

    #[test]
    fn finds_members_and_only_members() {
        let members: Vec<u64> = (0..10_000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xabc)
            .collect();
        let index = HashIndex::build(
            members.iter().copied().chain(members.iter().copied()),
            20_000,
        );
        assert_eq!(index.len(), 10_000);
        let mut slots = std::collections::BTreeSet::new();
        for h in &members {
            slots.insert(index.find(*h).expect("member"));
        }
        assert_eq!(slots.len(), 10_000);
        let strangers = (10_000..60_000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xabc);
        assert_eq!(strangers.filter(|h| index.find(*h).is_some()).count(), 0);
        assert!(HashIndex::build(std::iter::empty(), 0).find(5).is_none());
    }
}
