//! Mergeable partial statistics: quantiles, exact sums, rates, bounded sample sets.
//!
//! Every type here merges exactly, so partial states built per batch, per thread or per shard give
//! the same figures whatever the order they are merged in.

pub mod hash_index;
mod quantiles;
mod samples;

pub use quantiles::Quantiles;
pub use samples::{Samples, Targets};

/// Sum of values in `[0, 1]` (or any small non-negative range) as fixed-point integers, so that the
/// sum does not depend on the order of additions. Resolution 2⁻⁴⁰ per value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExactSum {
    scaled: i128,
    pub count: u64,
}

const SCALE: f64 = (1u64 << 40) as f64;

impl ExactSum {
    #[inline]
    pub fn add(&mut self, v: f64) {
        // Values are in [0, 1] here: +0.5 then truncation rounds without a libm call.
        self.scaled += (v * SCALE + 0.5) as i64 as i128;
        self.count += 1;
    }

    pub fn merge(&mut self, other: &ExactSum) {
        self.scaled += other.scaled;
        self.count += other.count;
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| (self.scaled as f64 / SCALE) / self.count as f64)
    }
}

/// A count of events out of a count of trials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rate {
    pub hits: u64,
    pub total: u64,
}

impl Rate {
    #[inline]
    pub fn add(&mut self, hit: bool) {
        self.total += 1;
        self.hits += hit as u64;
    }

    pub fn merge(&mut self, other: &Rate) {
        self.hits += other.hits;
        self.total += other.total;
    }

    pub fn value(&self) -> Option<f64> {
        (self.total > 0).then(|| self.hits as f64 / self.total as f64)
    }
}

/// Adds `other`'s counts into `into`, key by key.
pub fn merge_counts<K: Ord + Clone>(
    into: &mut std::collections::BTreeMap<K, u64>,
    other: std::collections::BTreeMap<K, u64>,
) {
    for (k, v) in other {
        *into.entry(k).or_insert(0) += v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_sum_is_order_independent() {
        let values: Vec<f64> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f64 / 997.0)
            .collect();
        let mut forward = ExactSum::default();
        values.iter().for_each(|v| forward.add(*v));
        let mut backward = ExactSum::default();
        values.iter().rev().for_each(|v| backward.add(*v));
        let mut halves = ExactSum::default();
        let mut second = ExactSum::default();
        values[..500].iter().for_each(|v| halves.add(*v));
        values[500..].iter().for_each(|v| second.add(*v));
        halves.merge(&second);
        assert_eq!(forward, backward);
        assert_eq!(forward, halves);
        let exact: f64 = values.iter().sum::<f64>() / 1000.0;
        assert!((forward.mean().unwrap() - exact).abs() < 1e-9);
    }
}

/// A hasher for keys that are already good hashes (xxh3 of the value): passes them through.
#[derive(Debug, Default, Clone, Copy)]
pub struct PrehashedHasher(u64);

impl std::hash::Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = (v as u64) ^ ((v >> 64) as u64);
    }
}

/// A map keyed by a precomputed hash.
pub type PrehashedMap<K, V> =
    std::collections::HashMap<K, V, std::hash::BuildHasherDefault<PrehashedHasher>>;
