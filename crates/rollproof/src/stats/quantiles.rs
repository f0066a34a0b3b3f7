//! Nearest-rank quantiles from an HDR histogram with bounds that fit the data.

use hdrhistogram::serialization::{Deserializer as HdrDeserializer, Serializer as _, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// A mergeable quantile sketch of non-negative values, recorded as integers at a fixed `scale`
/// (e.g. latency in ms × 1000 = µs). Three significant digits: a quantile is within 0.1% (plus
/// one unit of the scale) of the exact nearest-rank value.
#[derive(Debug, Clone)]
pub(crate) struct Quantiles {
    hist: Histogram<u64>,
    scale: f64,
    /// Values above the histogram's upper bound, clamped to it (counted, so reports can say so).
    pub(crate) clamped: u64,
}

impl Quantiles {
    /// `scale`: integer units per value unit; `max_value`: the largest value (in value units) kept
    /// exactly, above which values are clamped.
    pub(crate) fn new(scale: f64, max_value: f64) -> Quantiles {
        Quantiles::new_with_precision(scale, max_value, 3)
    }

    /// As `new`, with `sigfig` significant digits (2: 1% buckets and ~8× less memory, for the
    /// per-minute chart series).
    pub(crate) fn new_with_precision(scale: f64, max_value: f64, sigfig: u8) -> Quantiles {
        let high = ((max_value * scale) as u64).max(2);
        Quantiles {
            hist: Histogram::new_with_bounds(1, high, sigfig).expect("valid HDR bounds"),
            scale,
            clamped: 0,
        }
    }

    /// Latency in milliseconds, recorded in microseconds, up to one hour.
    pub(crate) fn latency_ms() -> Quantiles {
        Quantiles::new(1000.0, 3_600_000.0)
    }

    /// Fractions in [0, 1] (ΔS), recorded in millionths.
    pub(crate) fn unit_interval() -> Quantiles {
        Quantiles::new(1_000_000.0, 1.0)
    }

    #[inline]
    pub(crate) fn record(&mut self, value: f64) {
        // Non-negative values: +0.5 then truncation rounds without a libm call; `as` saturates.
        let scaled = (value * self.scale + 0.5).max(0.0) as u64;
        if self.hist.record(scaled).is_err() {
            self.clamped += 1;
            self.hist.saturating_record(scaled);
        }
    }

    pub(crate) fn merge(&mut self, other: &Quantiles) {
        if self.hist.add(&other.hist).is_err() {
            // Only a histogram decoded from a damaged or crafted partial has other bounds: its
            // values are clamped into ours, as recording them would have.
            for v in other.hist.iter_recorded() {
                self.hist
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        self.clamped += other.clamped;
    }

    pub(crate) fn len(&self) -> u64 {
        self.hist.len()
    }

    /// The nearest-rank quantile: the ⌈q·n⌉-th smallest value. `q_permille` in 1..=1000 (p95 = 950),
    /// integer so that the rank is exact.
    pub(crate) fn quantile(&self, q_permille: u64) -> Option<f64> {
        let n = self.hist.len();
        if n == 0 {
            return None;
        }
        let rank = ((q_permille * n).div_ceil(1000)).max(1);
        let mut seen = 0u64;
        for v in self.hist.iter_recorded() {
            seen += v.count_at_value();
            if seen >= rank {
                // The middle of the bucket the rank falls in: the closest single estimate.
                let value = self.hist.median_equivalent(v.value_iterated_to());
                return Some(value as f64 / self.scale);
            }
        }
        unreachable!("rank ≤ n")
    }

    /// The bucket holding the `rank`-th smallest value (1-based): its lowest and highest values.
    fn bucket_at_rank(&self, rank: u64) -> Option<(u64, u64)> {
        let mut seen = 0u64;
        for v in self.hist.iter_recorded() {
            seen += v.count_at_value();
            if seen >= rank {
                let at = v.value_iterated_to();
                return Some((
                    self.hist.lowest_equivalent(at),
                    self.hist.highest_equivalent(at),
                ));
            }
        }
        None
    }

    /// A confidence interval (or sequence) for the `q_permille` quantile: order statistics at ranks
    /// from the binomial distribution (`intervals::quantile_ranks`), widened to the ends of their
    /// HDR buckets so that the histogram's own precision is covered too.
    pub(crate) fn interval(&self, q_permille: u64, level: super::intervals::Level) -> super::Ci {
        let n = self.hist.len();
        let (low, high) = super::intervals::quantile_ranks(n, q_permille as f64 / 1000.0, level);
        super::Ci {
            low: low
                .and_then(|r| self.bucket_at_rank(r))
                .map(|(lo, _)| lo as f64 / self.scale),
            high: high
                .and_then(|r| self.bucket_at_rank(r))
                .map(|(_, hi)| hi as f64 / self.scale),
        }
    }
}

/// The serialized form: the histogram in HdrHistogram's V2 encoding (the format other HDR
/// implementations read), its scale and the clamped count.
#[derive(Serialize, Deserialize)]
struct Encoded {
    scale: f64,
    clamped: u64,
    #[serde(with = "serde_bytes_vec")]
    v2: Vec<u8>,
}

/// Bytes as one length-prefixed blob rather than a sequence of numbers.
mod serde_bytes_vec {
    pub(super) fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(Visitor)
    }
}

impl Serialize for Quantiles {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v2 = Vec::new();
        V2Serializer::new()
            .serialize(&self.hist, &mut v2)
            .map_err(|e| serde::ser::Error::custom(format!("HDR V2 encoding: {e:?}")))?;
        Encoded {
            scale: self.scale,
            clamped: self.clamped,
            v2,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Quantiles {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Quantiles, D::Error> {
        let e = Encoded::deserialize(d)?;
        check_v2_header(&e.v2).map_err(serde::de::Error::custom)?;
        let hist: Histogram<u64> = HdrDeserializer::new()
            .deserialize(&mut std::io::Cursor::new(&e.v2))
            .map_err(|err| serde::de::Error::custom(format!("HDR V2 decoding: {err:?}")))?;
        Ok(Quantiles {
            hist,
            scale: e.scale,
            clamped: e.clamped,
        })
    }
}

/// The V2 header's figures, checked before the decoder allocates by them: the payload must be
/// in the bytes, and the bounds those `Quantiles` are made with (lowest 1, 2–3 significant
/// digits, highest under 2^40), so that a damaged or crafted partial cannot ask for gigabytes.
fn check_v2_header(v2: &[u8]) -> Result<(), String> {
    const HEADER: usize = 40;
    let field = |at: usize, n: usize| -> u64 {
        v2[at..at + n]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    };
    if v2.len() < HEADER {
        return Err(format!("HDR V2 encoding of {} bytes", v2.len()));
    }
    let payload = field(4, 4);
    let sigfig = field(12, 4);
    let lowest = field(16, 8);
    let highest = field(24, 8);
    if payload > (v2.len() - HEADER) as u64 {
        return Err(format!(
            "HDR V2 payload of {payload} bytes in {} bytes",
            v2.len()
        ));
    }
    if !(2..=3).contains(&sigfig) || lowest != 1 || !(2..1 << 40).contains(&highest) {
        return Err(format!(
            "HDR V2 bounds [{lowest}, {highest}] at {sigfig} digits, which no rollproof histogram has"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(values: &[f64], q_permille: u64) -> f64 {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = ((q_permille * v.len() as u64).div_ceil(1000)).max(1) as usize;
        v[rank - 1]
    }

    #[test]
    fn within_one_percent_of_nearest_rank() {
        let values: Vec<f64> = (1..=10_000)
            .map(|i| ((i * 7919) % 10_007) as f64 * 0.37 + 0.5)
            .collect();
        let mut q = Quantiles::latency_ms();
        values.iter().for_each(|v| q.record(*v));
        for p in [500, 950, 990, 1000, 1] {
            let got = q.quantile(p).unwrap();
            let want = exact(&values, p);
            assert!((got - want).abs() <= want * 0.01, "p{p}: {got} vs {want}");
        }
    }

    #[test]
    fn nearest_rank_on_small_sets() {
        let mut q = Quantiles::latency_ms();
        for v in [100.0, 200.0, 300.0, 400.0] {
            q.record(v);
        }
        // ⌈0.5·4⌉ = 2nd smallest; ⌈0.95·4⌉ = 4th.
        assert!((q.quantile(500).unwrap() - 200.0).abs() < 0.2);
        assert!((q.quantile(950).unwrap() - 400.0).abs() < 0.4);
    }

    #[test]
    fn large_values_are_not_silently_zero() {
        let mut q = Quantiles::latency_ms();
        q.record(250_000.0);
        assert!((q.quantile(950).unwrap() - 250_000.0).abs() < 250.0);
        q.record(10_000_000.0);
        assert_eq!(q.clamped, 1);
    }
}
