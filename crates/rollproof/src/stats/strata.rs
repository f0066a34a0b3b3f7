//! Stratified samples: per stratum (a pin, a region, a kind of finding), the earliest and the
//! latest few findings, so that the samples a report shows cover every pin and region that
//! failed — not only the ten earliest findings, which are often all of one kind. Bounded and
//! deterministic like [`super::Samples`]: the choice depends on the findings, never on row order.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Samples;

/// What a finding is ordered by: its time, then its id.
pub(crate) type SampleKey<'a> = (i64, Option<&'a str>);

/// A finding that can be ordered by [`SampleKey`].
pub(crate) trait Keyed {
    fn key(&self) -> SampleKey<'_>;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "T: Serialize + serde::de::DeserializeOwned + Ord")]
pub(crate) struct Strata<T: Ord> {
    per: usize,
    earliest: BTreeMap<String, Samples<T>>,
    latest: BTreeMap<String, Samples<Reverse<T>>>,
}

impl<T: Ord + Clone + Keyed> Default for Strata<T> {
    /// Two findings a stratum, earliest and latest.
    fn default() -> Strata<T> {
        Strata::new(2)
    }
}

impl<T: Ord + Clone + Keyed> Strata<T> {
    /// Keeps `per` earliest and `per` latest findings of each stratum.
    pub(crate) fn new(per: usize) -> Strata<T> {
        Strata {
            per,
            earliest: BTreeMap::new(),
            latest: BTreeMap::new(),
        }
    }

    /// Offers a finding of `stratum` ordered by `key`; `make` builds it only when it is kept.
    pub(crate) fn offer(&mut self, stratum: &str, key: SampleKey<'_>, make: impl FnOnce() -> T) {
        let early = self
            .earliest
            .get(stratum)
            // A tie on the key is decided by the finding's full order (its content), when pushed.
            .is_none_or(|s| s.would_keep(|last| key <= last.key()));
        let late = self
            .latest
            .get(stratum)
            .is_none_or(|s| s.would_keep(|last| key >= last.0.key()));
        if !early && !late {
            return;
        }
        let item = make();
        if late {
            self.latest
                .entry(stratum.to_string())
                .or_insert_with(|| Samples::new(self.per))
                .push(Reverse(item.clone()));
        }
        if early {
            self.earliest
                .entry(stratum.to_string())
                .or_insert_with(|| Samples::new(self.per))
                .push(item);
        }
    }

    /// Every item kept, in no particular order.
    pub(crate) fn all(&self) -> impl Iterator<Item = &T> {
        self.earliest.values().flat_map(|s| s.items().iter()).chain(
            self.latest
                .values()
                .flat_map(|s| s.items().iter().map(|r| &r.0)),
        )
    }

    pub(crate) fn merge(&mut self, other: Strata<T>) {
        for (k, s) in other.earliest {
            match self.earliest.get_mut(&k) {
                Some(mine) => mine.merge(s),
                None => {
                    self.earliest.insert(k, s);
                }
            }
        }
        for (k, s) in other.latest {
            match self.latest.get_mut(&k) {
                Some(mine) => mine.merge(s),
                None => {
                    self.latest.insert(k, s);
                }
            }
        }
    }

    /// At most `limit` findings covering as many strata as fit: each stratum's earliest first,
    /// then each one's latest, then the rest; distinct, in time order.
    pub(crate) fn pick(&self, limit: usize) -> Vec<T> {
        let mut rounds: Vec<Vec<&T>> = Vec::new();
        for i in 0..self.per {
            rounds.push(
                self.earliest
                    .values()
                    .filter_map(|s| s.items().get(i))
                    .collect(),
            );
            rounds.push(
                self.latest
                    .values()
                    .filter_map(|s| s.items().get(i).map(|r| &r.0))
                    .collect(),
            );
        }
        let mut chosen: Vec<&T> = Vec::new();
        'rounds: for round in rounds {
            for item in round {
                if chosen.len() == limit {
                    break 'rounds;
                }
                if !chosen.contains(&item) {
                    chosen.push(item);
                }
            }
        }
        let mut out: Vec<T> = chosen.into_iter().cloned().collect();
        out.sort();
        out
    }

    /// The strata that have findings.
    #[cfg(test)]
    fn strata(&self) -> Vec<&String> {
        self.earliest.keys().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    struct F(i64, String);

    impl Keyed for F {
        fn key(&self) -> SampleKey<'_> {
            (self.0, Some(&self.1))
        }
    }

    #[test]
    fn covers_every_stratum_whatever_the_order() {
        let findings: Vec<(&str, i64)> = (0..50)
            .map(|i| ("a", i))
            .chain([("b", 70), ("b", 90), ("c", 100)])
            .collect();
        let mut forward = Strata::new(2);
        for (s, t) in &findings {
            forward.offer(s, (*t, Some("x")), || F(*t, "x".into()));
        }
        let mut backward = Strata::new(2);
        for (s, t) in findings.iter().rev() {
            backward.offer(s, (*t, Some("x")), || F(*t, "x".into()));
        }
        assert_eq!(forward.pick(5), backward.pick(5));
        let picked: Vec<i64> = forward.pick(5).iter().map(|f| f.0).collect();
        // The earliest of a, b, c, then the latest of a and b (c's latest is its earliest).
        assert_eq!(picked, vec![0, 49, 70, 90, 100]);
        assert_eq!(forward.strata().len(), 3);
        let mut halves = Strata::new(2);
        let mut other = Strata::new(2);
        for (i, (s, t)) in findings.iter().enumerate() {
            let target = if i % 2 == 0 { &mut halves } else { &mut other };
            target.offer(s, (*t, Some("x")), || F(*t, "x".into()));
        }
        halves.merge(other);
        assert_eq!(halves.pick(5), forward.pick(5));
    }
}
