//! Per-minute series around the flip (rollback mode), for the postmortem's charts: error rate,
//! p95 latency, share of requests carrying the expected pins, stale cache hits, ΔS p95, coverage.
//!
//! Not a check: a partial state like the others (update → merge → finish), so the series is as
//! deterministic as every other figure.

use arrow::array::Array;

use super::Ctx;
use crate::columns::{CanonBatch, Col};
use crate::incident::Mode;
use crate::stats::{ExactSum, Quantiles};
use crate::time::{Micros, MICROS_PER_MINUTE};

/// At most this many buckets; longer spans use wider buckets.
const MAX_BUCKETS: i64 = 360;

#[derive(Debug, Clone, Default)]
pub struct Bucket {
    pub requests: u64,
    pub with_status: u64,
    pub errors: u64,
    pub pins_checked: u64,
    pub pins_ok: u64,
    pub hits: u64,
    pub stale_hits: u64,
    pub latency: Option<Quantiles>,
    pub delta_s: Option<Quantiles>,
    pub coverage: ExactSum,
}

impl Bucket {
    fn merge(&mut self, o: Bucket) {
        self.requests += o.requests;
        self.with_status += o.with_status;
        self.errors += o.errors;
        self.pins_checked += o.pins_checked;
        self.pins_ok += o.pins_ok;
        self.hits += o.hits;
        self.stale_hits += o.stale_hits;
        for (mine, theirs) in [
            (&mut self.latency, o.latency),
            (&mut self.delta_s, o.delta_s),
        ] {
            match (mine.as_mut(), theirs) {
                (Some(m), Some(t)) => m.merge(&t),
                (None, Some(t)) => *mine = Some(t),
                _ => {}
            }
        }
        self.coverage.merge(&o.coverage);
    }
}

/// The chart range: from the baseline (or 30 min before the flip) to the end of the post window
/// (or 90 min after the flip).
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub start: Micros,
    pub end: Micros,
    pub bucket: Micros,
    pub origin: Micros,
}

pub fn range(ctx: &Ctx) -> Option<Range> {
    if ctx.mode != Mode::Rollback || !ctx.timeline {
        return None;
    }
    let flip = ctx.flip_at?;
    let start = ctx
        .baseline
        .map_or(flip, |b| b.start)
        .min(flip - 30 * MICROS_PER_MINUTE);
    let end = match ctx.post {
        Some(p) if !ctx.post_is_default => p.end,
        _ => flip + 90 * MICROS_PER_MINUTE,
    }
    .max(flip + 30 * MICROS_PER_MINUTE);
    // Both positive: end > start.
    let minutes = (end - start + MICROS_PER_MINUTE - 1) / MICROS_PER_MINUTE;
    let bucket = ((minutes + MAX_BUCKETS - 1) / MAX_BUCKETS).max(1) * MICROS_PER_MINUTE;
    Some(Range {
        start,
        end,
        bucket,
        origin: flip,
    })
}

/// Buckets by index from the chart's first bucket (dense: the range is fixed before the pass).
#[derive(Default)]
pub struct Partial {
    pub buckets: Vec<Bucket>,
    /// Bucket number (relative to the flip) of `buckets[0]`.
    pub first: i64,
}

impl Partial {
    pub fn update(&mut self, ctx: &Ctx, batch: &CanonBatch) {
        let Some(r) = range(ctx) else { return };
        if self.buckets.is_empty() {
            self.first = (r.start - r.origin).div_euclid(r.bucket);
            let last = (r.end - 1 - r.origin).div_euclid(r.bucket);
            self.buckets = vec![Bucket::default(); (last - self.first + 1) as usize];
        }
        let first = self.first;
        let ts = batch.ts();
        let n = batch.len();
        // Bucket index per row (relative to the flip), or None outside the chart.
        let index: Vec<Option<usize>> = ts
            .iter()
            .map(|&t| {
                (t >= r.start && t < r.end)
                    .then(|| ((t - r.origin).div_euclid(r.bucket) - first) as usize)
            })
            .collect();
        if index.iter().all(Option::is_none) {
            return;
        }
        let set = &ctx.pin_sets[0];
        let mut pins_ok = vec![true; n];
        let mut any_pin = false;
        for (col, want) in &set.pins {
            let Some(arr) = batch.str(*col) else { continue };
            any_pin = true;
            let ok = arr.map_rows(|v| v == Some(want.as_str()));
            for (o, k) in pins_ok.iter_mut().zip(ok) {
                *o &= k;
            }
        }
        let stale: Option<Vec<bool>> = match (
            batch.bool(Col::CacheHit),
            batch.str(Col::CacheNs),
            set.namespace.as_deref(),
        ) {
            (Some(hit), Some(ns), Some(want)) => {
                let wrong = ns.map_rows(|v| v != Some(want));
                Some(
                    (0..n)
                        .map(|i| hit.is_valid(i) && hit.value(i) && wrong[i])
                        .collect(),
                )
            }
            _ => None,
        };
        let hit = batch.bool(Col::CacheHit);
        let status = batch.int(Col::Status);
        let latency = batch.float(Col::LatencyMs);
        let delta_s = batch.float(Col::DeltaS);
        let coverage = batch.float(Col::Coverage);
        for i in 0..n {
            let Some(k) = index[i] else { continue };
            let b = &mut self.buckets[k];
            b.requests += 1;
            if let Some(s) = status.filter(|s| s.is_valid(i)) {
                let v = s.values()[i];
                b.with_status += 1;
                b.errors += (v >= 500 || v == 429) as u64;
            }
            if any_pin {
                b.pins_checked += 1;
                b.pins_ok += pins_ok[i] as u64;
            }
            if let Some(h) = hit.filter(|h| h.is_valid(i) && h.value(i)) {
                let _ = h;
                b.hits += 1;
            }
            if let Some(s) = &stale {
                b.stale_hits += s[i] as u64;
            }
            if let Some(l) = latency.filter(|l| l.is_valid(i) && l.values()[i] >= 0.0) {
                b.latency
                    .get_or_insert_with(|| Quantiles::new_with_precision(1000.0, 3_600_000.0, 2))
                    .record(l.values()[i]);
            }
            if let Some(d) =
                delta_s.filter(|d| d.is_valid(i) && (0.0..=1.0).contains(&d.values()[i]))
            {
                b.delta_s
                    .get_or_insert_with(|| Quantiles::new_with_precision(1_000_000.0, 1.0, 2))
                    .record(d.values()[i]);
            }
            if let Some(c) =
                coverage.filter(|c| c.is_valid(i) && (0.0..=1.0).contains(&c.values()[i]))
            {
                b.coverage.add(c.values()[i]);
            }
        }
    }

    pub fn merge(&mut self, other: Partial) {
        if self.buckets.is_empty() {
            *self = other;
            return;
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            mine.merge(theirs);
        }
    }
}

impl Partial {
    /// The series as the report shows it.
    pub fn finish(self, ctx: &Ctx) -> Option<crate::report::Timeline> {
        let r = range(ctx)?;
        let points = self
            .buckets
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                let k = self.first + i as i64;
                let rate = |num: u64, den: u64| (den > 0).then(|| num as f64 / den as f64);
                crate::report::TimelinePoint {
                    start: r.origin + k * r.bucket,
                    minute: k * r.bucket / MICROS_PER_MINUTE,
                    requests: b.requests,
                    error_rate: rate(b.errors, b.with_status),
                    p95_latency_ms: b.latency.as_ref().and_then(|q| q.quantile(950)),
                    pins_ok_share: rate(b.pins_ok, b.pins_checked),
                    stale_hits: b.stale_hits,
                    delta_s_p95: b.delta_s.as_ref().and_then(|q| q.quantile(950)),
                    coverage_mean: b.coverage.mean(),
                }
            })
            .collect();
        Some(crate::report::Timeline {
            bucket_minutes: r.bucket / MICROS_PER_MINUTE,
            points,
        })
    }
}
