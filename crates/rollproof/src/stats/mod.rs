//! Mergeable partial statistics: quantiles, exact sums, rates, bounded sample sets.
//!
//! Every type here merges exactly, so partial states built per batch, per thread or per shard give
//! the same figures whatever the order they are merged in.

pub(crate) mod hash_index;
pub(crate) mod intervals;
pub(crate) mod key_table;
mod quantiles;
mod samples;
mod strata;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::time::Micros;

pub(crate) use intervals::Ci;
pub(crate) use quantiles::Quantiles;
pub(crate) use samples::{Samples, Targets};
pub(crate) use strata::{Keyed, SampleKey, Strata};

/// Sum of values in `[0, 1]` (or any small non-negative range) as fixed-point integers, so that the
/// sum does not depend on the order of additions. Resolution 2⁻⁴⁰ per value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExactSum {
    scaled: i128,
    /// The sum of squares at the same resolution, for the variance of the mean.
    #[serde(default)]
    squares: i128,
    pub(crate) count: u64,
}

const SCALE: f64 = (1u64 << 40) as f64;

impl ExactSum {
    #[inline]
    pub(crate) fn add(&mut self, v: f64) {
        // Values are in [0, 1] here: +0.5 then truncation rounds without a libm call.
        self.scaled += (v * SCALE + 0.5) as i64 as i128;
        self.squares += (v * v * SCALE + 0.5) as i64 as i128;
        self.count += 1;
    }

    pub(crate) fn merge(&mut self, other: &ExactSum) {
        self.scaled += other.scaled;
        self.squares += other.squares;
        self.count += other.count;
    }

    pub(crate) fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| (self.scaled as f64 / SCALE) / self.count as f64)
    }

    /// An interval for the mean (values in [0, 1]).
    pub(crate) fn interval(&self, level: intervals::Level) -> Ci {
        intervals::mean_unit(
            self.scaled as f64 / SCALE,
            self.squares as f64 / SCALE,
            self.count,
            level,
        )
    }
}

/// What [`DenseMinutes`] counts per minute: a tally that merges, and knows when it counted
/// nothing (such minutes are not added to the map).
pub(crate) trait Tally: Default + Clone {
    fn merge_from(&mut self, other: &Self);
    fn is_empty(&self) -> bool;
}

/// The most minutes one batch counts densely (a week); the rest go to the map directly.
const DENSE_MINUTES: i64 = 7 * 24 * 60;

/// One batch's per-minute tallies, counted densely (a batch's minutes are few: a tree look-up
/// per row cost more than the rest of the row), then added to a map of flip-aligned minutes.
/// Minute k is [flip + k min, flip + (k+1) min), negative before the flip. At most
/// [`DENSE_MINUTES`] are dense (a batch may span millennia: hostile or corrupt timestamps);
/// minutes past them go to the map directly.
pub(crate) struct DenseMinutes<T> {
    flip: Micros,
    /// Rows before this instant are not counted.
    from: Micros,
    first: i64,
    dense: Vec<T>,
}

impl<T: Tally> DenseMinutes<T> {
    /// For a batch with timestamps `ts`, minutes aligned to `flip`; rows before `from` are not
    /// counted (`Micros::MIN`: every row).
    pub(crate) fn new(ts: &[Micros], flip: Micros, from: Micros) -> DenseMinutes<T> {
        let (lo, hi) = ts
            .iter()
            .filter(|&&t| t >= from)
            .fold((i64::MAX, i64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
        let (first, dense) = if lo <= hi {
            let first = crate::time::minute_since(lo, flip);
            let span = crate::time::minute_since(hi, flip)
                .saturating_sub(first)
                .saturating_add(1);
            (first, vec![T::default(); span.min(DENSE_MINUTES) as usize])
        } else {
            (0, Vec::new())
        };
        DenseMinutes {
            flip,
            from,
            first,
            dense,
        }
    }

    /// The tally of the minute of a row at `t` (`None` before `from`).
    #[inline]
    pub(crate) fn at<'a>(
        &'a mut self,
        minutes: &'a mut BTreeMap<i64, T>,
        t: Micros,
    ) -> Option<&'a mut T> {
        if t < self.from {
            return None;
        }
        let k = crate::time::minute_since(t, self.flip);
        Some(
            match self.dense.get_mut(k.saturating_sub(self.first) as usize) {
                Some(tally) => tally,
                None => minutes.entry(k).or_default(),
            },
        )
    }

    /// Adds the batch's counted minutes to `minutes`.
    pub(crate) fn finish(self, minutes: &mut BTreeMap<i64, T>) {
        for (offset, tally) in self.dense.iter().enumerate() {
            if !tally.is_empty() {
                minutes
                    .entry(self.first + offset as i64)
                    .or_default()
                    .merge_from(tally);
            }
        }
    }
}

/// Per-minute [`Rate`]s after a flip (rows before it are not counted).
pub(crate) type MinuteRates = DenseMinutes<Rate>;

impl MinuteRates {
    pub(crate) fn after_flip(ts: &[Micros], flip: Micros) -> MinuteRates {
        DenseMinutes::new(ts, flip, flip)
    }

    /// Counts a row at `t` (ignored before the flip).
    #[inline]
    pub(crate) fn add(&mut self, minutes: &mut BTreeMap<i64, Rate>, t: Micros, hit: bool) {
        if let Some(rate) = self.at(minutes, t) {
            rate.add(hit);
        }
    }
}

impl Tally for Rate {
    fn merge_from(&mut self, other: &Rate) {
        self.merge(other);
    }
    fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// A count of events out of a count of trials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rate {
    pub(crate) hits: u64,
    pub(crate) total: u64,
}

impl Rate {
    #[inline]
    pub(crate) fn add(&mut self, hit: bool) {
        self.total += 1;
        self.hits += hit as u64;
    }

    pub(crate) fn merge(&mut self, other: &Rate) {
        self.hits += other.hits;
        self.total += other.total;
    }

    pub(crate) fn value(&self) -> Option<f64> {
        (self.total > 0).then(|| self.hits as f64 / self.total as f64)
    }

    pub(crate) fn interval(&self, level: intervals::Level) -> Ci {
        intervals::rate(self.hits, self.total, level)
    }
}

/// Counts by name (region, writer, effect): a hash map while counting, sorted whenever it leaves
/// (serialized, or shown), so that nothing unordered reaches a report or a partial-state file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Counts(HashMap<String, u64>);

impl Counts {
    /// Adds one to `key`, without allocating when the key is already there.
    #[inline]
    pub(crate) fn bump(&mut self, key: &str) {
        if let Some(c) = self.0.get_mut(key) {
            *c += 1;
        } else {
            self.0.insert(key.to_string(), 1);
        }
    }

    pub(crate) fn merge(&mut self, other: Counts) {
        for (k, v) in other.0 {
            *self.0.entry(k).or_insert(0) += v;
        }
    }

    pub(crate) fn sorted(&self) -> BTreeMap<String, u64> {
        self.0.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Adds `n` to `key`.
    pub(crate) fn add(&mut self, key: &str, n: u64) {
        if let Some(c) = self.0.get_mut(key) {
            *c += n;
        } else {
            self.0.insert(key.to_string(), n);
        }
    }
}

/// How many look-ups ahead the callers of [`prefetch`] ask for a slot (the users' tables, the
/// reconciliation join's filter and index): far enough for a miss to overlap the work of the
/// look-ups between. A look-up that misses the cache waits for memory; asked for ahead, the
/// misses of many look-ups overlap (the 100M benchmark's tables are larger than the last-level
/// cache).
pub(crate) const AHEAD: usize = 16;

/// Asks the processor to load slot `i` of `slots` into the cache; no effect elsewhere (and on
/// other processors none at all). For look-ups into tables past the cache (`key_table`,
/// `hash_index`): asked for a few look-ups ahead, their misses overlap.
///
/// The one `unsafe` block of the shipped code (its lints deny `unsafe_code` elsewhere; the floor
/// benchmark has the other): Rust has no stable safe prefetch, and a plain read ahead would make
/// the processor wait for it.
#[inline]
#[allow(unsafe_code)]
pub(crate) fn prefetch<T>(slots: &[T], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(slot) = slots.get(i) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let first: *const i8 = (slot as *const T).cast();
        // An element may straddle two cache lines (a 24-byte slot of the users' table does one
        // time in four): ask for the line of its last byte too (the same line: a no-op).
        let last = first.wrapping_add(std::mem::size_of::<T>().saturating_sub(1));
        // SAFETY: a prefetch is a hint that reads nothing the program sees and cannot fault,
        // and both pointers are into a live element of `slots`. SSE is part of every x86_64
        // target.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(first);
            if std::mem::size_of::<T>() > 8 {
                _mm_prefetch::<_MM_HINT_T0>(last);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (slots, i);
}

/// Marsaglia's xorshift64 from `seed` (not 0): the tests' deterministic stream of spread
/// 64-bit values.
#[cfg(test)]
pub(crate) fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// A 64-bit hash scaled to `0..n` by its high bits (multiply-shift): monotone in the hash, and
/// `n` need not be a power of two. The home slot of `hash_index` and `key_table`.
#[inline]
pub(crate) fn reduce(h: u64, n: usize) -> usize {
    ((h as u128 * n as u128) >> 64) as usize
}

/// The runs of a per-row state (one per batch) as one vector, each run freed once moved. The
/// first run's buffer is grown to the total, so the rows are held once plus one run, where
/// `concat` holds them twice until the runs are dropped (at 8M receipts, 320 MB more).
pub(crate) fn concat_runs<T: Copy>(runs: Vec<Vec<T>>) -> Vec<T> {
    let total = runs.iter().map(Vec::len).sum::<usize>();
    let mut runs = runs.into_iter();
    let mut all = runs.next().unwrap_or_default();
    all.reserve_exact(total - all.len());
    for run in runs {
        all.extend_from_slice(&run);
    }
    all
}

/// Per row, a small index into the distinct values of a string column (evaluated once per
/// dictionary value): counting by region with one string hash per distinct value, not per row.
pub(crate) fn intern<'a>(
    col: Option<&crate::columns::StrCol<'a>>,
    rows: usize,
    missing: &'a str,
    absent: &'a str,
) -> (Vec<u32>, Vec<&'a str>) {
    let Some(col) = col else {
        return (vec![0; rows], vec![absent]);
    };
    let mut names: Vec<&'a str> = Vec::new();
    let mut index: HashMap<&'a str, u32> = HashMap::new();
    let ids = col.map_rows(|v| {
        let name = v.unwrap_or(missing);
        *index.entry(name).or_insert_with(|| {
            names.push(name);
            (names.len() - 1) as u32
        })
    });
    (ids, names)
}

impl Serialize for Counts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.sorted().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Counts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Counts, D::Error> {
        Ok(Counts(
            BTreeMap::<String, u64>::deserialize(d)?
                .into_iter()
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::MICROS_PER_MINUTE;

    /// Rows before the flip are not counted; minutes past the dense cap still are, in the map.
    #[test]
    fn minute_rates_count_dense_and_far_minutes() {
        let flip = 1_000 * MICROS_PER_MINUTE;
        let far = flip + (1 << 21) * MICROS_PER_MINUTE;
        let ts = [
            flip - 1,
            flip,
            flip + MICROS_PER_MINUTE - 1,
            flip + MICROS_PER_MINUTE,
            far,
        ];
        let mut minutes = BTreeMap::from([(1, Rate { hits: 1, total: 1 })]);
        let mut rates = MinuteRates::after_flip(&ts, flip);
        for (i, &t) in ts.iter().enumerate() {
            rates.add(&mut minutes, t, i % 2 == 0);
        }
        rates.finish(&mut minutes);
        let got: Vec<(i64, u64, u64)> =
            minutes.iter().map(|(k, r)| (*k, r.hits, r.total)).collect();
        assert_eq!(got, vec![(0, 1, 2), (1, 1, 2), (1 << 21, 1, 1)]);
    }

    /// Counting every row: minutes before the flip are negative (floored, not truncated toward
    /// zero), and a batch spanning more than the dense cap still counts its far minutes.
    #[test]
    fn dense_minutes_count_before_the_flip() {
        let flip = 1_000 * MICROS_PER_MINUTE;
        let ts = [
            flip - 2 * MICROS_PER_MINUTE,
            flip - 1,
            flip - 1,
            flip,
            flip - (DENSE_MINUTES + 5) * MICROS_PER_MINUTE,
        ];
        let mut minutes = BTreeMap::new();
        let mut dense = DenseMinutes::<Rate>::new(&ts, flip, Micros::MIN);
        for &t in &ts {
            dense
                .at(&mut minutes, t)
                .expect("every row counts")
                .add(true);
        }
        dense.finish(&mut minutes);
        let got: Vec<(i64, u64)> = minutes.iter().map(|(k, r)| (*k, r.total)).collect();
        assert_eq!(got, vec![(-DENSE_MINUTES - 5, 1), (-2, 1), (-1, 2), (0, 1)]);
    }

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

/// The Wilson score interval of a proportion `hits / n` at `z` standard errors (1.96: 95%):
/// unlike the normal approximation it stays inside [0, 1] and is honest for 0 hits and small n.
pub(crate) fn wilson(hits: u64, n: u64, z: f64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let n = n as f64;
    let p = hits as f64 / n;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

#[cfg(test)]
mod wilson_tests {
    use super::wilson;

    #[test]
    fn wilson_interval_matches_published_values() {
        // Newcombe (1998), table I: 81/263 → 0.2553–0.3662 at 95%.
        let (lo, hi) = wilson(81, 263, 1.959964).unwrap();
        assert!(
            (lo - 0.2553).abs() < 5e-4 && (hi - 0.3662).abs() < 5e-4,
            "{lo} {hi}"
        );
        // 0 of 10: lower bound 0, upper 0.2775.
        let (lo, hi) = wilson(0, 10, 1.959964).unwrap();
        assert_eq!(lo, 0.0);
        assert!((hi - 0.2775).abs() < 5e-4, "{hi}");
        assert_eq!(wilson(0, 0, 1.96), None);
    }
}

/// The smallest minute k from which every non-empty minute's rate is under `max`; `None` when the
/// last non-empty minute is not (never settled within the data). An empty minute between the last
/// bad minute and the first good one counts as settled.
pub(crate) fn settled_from(minutes: &BTreeMap<i64, Rate>, max: f64) -> Option<i64> {
    let mut settled = None;
    for (&k, rate) in minutes.iter().rev() {
        if rate.value().is_some_and(|r| r < max) {
            settled = Some(k);
        } else {
            // The first good minute after this bad one, or the next minute if it was empty.
            return settled.map(|_| k + 1);
        }
    }
    settled.map(|_| 0)
}
