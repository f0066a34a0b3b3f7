//! A bounded set of samples that keeps the smallest items by their order, so that the samples a
//! report shows do not depend on row order, batching or thread count.

use serde::{Deserialize, Serialize};

/// Keeps the `cap` smallest items seen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Samples<T: Ord> {
    cap: usize,
    items: Vec<T>,
}

impl<T: Ord> Samples<T> {
    pub(crate) fn new(cap: usize) -> Samples<T> {
        Samples {
            cap,
            items: Vec::new(),
        }
    }

    /// Whether an item that orders as `probe` would be kept: lets callers skip building items
    /// (allocating strings) that would be thrown away.
    #[inline]
    pub(crate) fn would_keep(&self, probe: impl FnOnce(&T) -> bool) -> bool {
        self.items.len() < self.cap || self.items.last().is_some_and(probe)
    }

    pub(crate) fn push(&mut self, item: T) {
        if self.cap == 0 {
            return;
        }
        if self.items.len() == self.cap {
            if self.items.last().is_some_and(|last| item >= *last) {
                return;
            }
            self.items.pop();
        }
        let at = self.items.partition_point(|x| *x < item);
        self.items.insert(at, item);
    }

    pub(crate) fn merge(&mut self, other: Samples<T>) {
        for item in other.items {
            self.push(item);
        }
    }

    /// The `cap` smallest of two lists of kept items (the samples of two key ranges).
    pub(crate) fn smallest_of(cap: usize, a: &mut Vec<T>, b: Vec<T>) {
        let mut s = Samples::new(cap);
        for item in a.drain(..).chain(b) {
            s.push(item);
        }
        *a = s.into_vec();
    }

    /// The kept items, smallest first.
    pub(crate) fn items(&self) -> &[T] {
        &self.items
    }

    pub(crate) fn into_vec(self) -> Vec<T> {
        self.items
    }
}

/// The hashes a targeted sample pass looks for: sorted once, searched per row.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Targets<T: Ord>(Vec<T>);

impl<T: Ord> Targets<T> {
    pub(crate) fn new(mut hashes: Vec<T>) -> Targets<T> {
        hashes.sort_unstable();
        hashes.dedup();
        Targets(hashes)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    #[inline]
    pub(crate) fn contains(&self, hash: &T) -> bool {
        self.0.binary_search(hash).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_smallest_whatever_the_order() {
        let mut a = Samples::new(3);
        let mut b = Samples::new(3);
        for v in [5, 1, 9, 3, 7] {
            a.push(v);
        }
        for v in [7, 3, 9, 1, 5] {
            b.push(v);
        }
        assert_eq!(a.clone().into_vec(), vec![1, 3, 5]);
        assert_eq!(b.into_vec(), vec![1, 3, 5]);
        let mut c = Samples::new(3);
        c.push(0);
        c.merge(a);
        assert_eq!(c.into_vec(), vec![0, 1, 3]);
    }
}
