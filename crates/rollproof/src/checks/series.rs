//! Per-minute series around the flip (rollback mode), for the postmortem's charts: error rate,
//! p95 latency, share of requests carrying the expected pins, stale cache hits, ΔS p95, coverage.
//!
//! Not a check: a kernel like the others (update → merge → settle), so the series is as
//! deterministic as every other figure. Built only when the HTML report is asked for, and never
//! part of the JSON (so the JSON does not depend on which reports a run writes).

use arrow::array::Array;
use serde::{Deserialize, Serialize};

use crate::columns::{Col, Table};
use crate::engine::{Kernel, Rows, Stage, States};
use crate::plan::{Ctx, Plan};
use crate::stats::{ExactSum, Quantiles};
use crate::time::{Micros, MICROS_PER_MINUTE};

/// Per-bucket figures around the flip.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub bucket_minutes: i64,
    pub points: Vec<TimelinePoint>,
}

#[derive(Debug, Clone)]
pub struct TimelinePoint {
    /// Start of the bucket, epoch µs.
    pub start: i64,
    /// Minutes from the flip to the start of the bucket.
    pub minute: i64,
    pub error_rate: Option<f64>,
    pub p95_latency_ms: Option<f64>,
    pub pins_ok_share: Option<f64>,
    pub stale_hits: u64,
    pub delta_s_p95: Option<f64>,
    pub coverage_mean: Option<f64>,
}

/// At most this many buckets; longer spans use wider buckets.
const MAX_BUCKETS: i64 = 360;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Bucket {
    requests: u64,
    with_status: u64,
    errors: u64,
    pins_checked: u64,
    pins_ok: u64,
    hits: u64,
    stale_hits: u64,
    latency: Option<Quantiles>,
    delta_s: Option<Quantiles>,
    coverage: ExactSum,
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
struct Range {
    start: Micros,
    end: Micros,
    bucket: Micros,
    origin: Micros,
}

fn range(ctx: &Ctx) -> Option<Range> {
    let Plan::Rollback(r) = &ctx.plan else {
        return None;
    };
    if !ctx.series {
        return None;
    }
    let flip = r.flip_at;
    let start = r.baseline.start.min(flip - 30 * MICROS_PER_MINUTE);
    let end = if r.post_is_default {
        flip + 90 * MICROS_PER_MINUTE
    } else {
        r.post.end
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
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct State {
    buckets: Vec<Bucket>,
    /// Bucket number (relative to the flip) of `buckets[0]`.
    first: i64,
}

/// The per-minute series the HTML charts draw.
pub(crate) struct SeriesKernel;
pub(crate) static SERIES: SeriesKernel = SeriesKernel;

impl Kernel for SeriesKernel {
    type State = State;
    const NAME: &'static str = "series";
    const TABLE: Table = Table::Requests;
    const STAGE: Stage = Stage::Requests;

    fn columns(&self, ctx: &Ctx) -> Vec<Col> {
        if range(ctx).is_none() {
            return Vec::new();
        }
        let mut cols = vec![
            Col::Status,
            Col::LatencyMs,
            Col::CacheHit,
            Col::CacheNs,
            Col::DeltaS,
            Col::Coverage,
        ];
        cols.extend(ctx.plan.pins_named());
        cols
    }

    fn init(&self, _ctx: &Ctx, _prior: &States) -> State {
        State::default()
    }

    fn update(&self, ctx: &Ctx, state: &mut State, rows: &Rows<'_>) {
        state.update(ctx, rows)
    }

    fn merge(&self, state: &mut State, other: State) {
        if state.buckets.is_empty() {
            *state = other;
            return;
        }
        for (mine, theirs) in state.buckets.iter_mut().zip(other.buckets) {
            mine.merge(theirs);
        }
    }
}

impl State {
    fn update(&mut self, ctx: &Ctx, rows: &Rows<'_>) {
        let Some(r) = range(ctx) else { return };
        let batch = rows.batch;
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
        let set = &ctx.plan.pin_sets()[0];
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

    /// The series as the report shows it.
    pub(crate) fn timeline(&self, ctx: &Ctx) -> Option<Timeline> {
        let r = range(ctx)?;
        let points = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let k = self.first + i as i64;
                let rate = |num: u64, den: u64| (den > 0).then(|| num as f64 / den as f64);
                TimelinePoint {
                    start: r.origin + k * r.bucket,
                    minute: k * r.bucket / MICROS_PER_MINUTE,
                    error_rate: rate(b.errors, b.with_status),
                    p95_latency_ms: b.latency.as_ref().and_then(|q| q.quantile(950)),
                    pins_ok_share: rate(b.pins_ok, b.pins_checked),
                    stale_hits: b.stale_hits,
                    delta_s_p95: b.delta_s.as_ref().and_then(|q| q.quantile(950)),
                    coverage_mean: b.coverage.mean(),
                }
            })
            .collect();
        Some(Timeline {
            bucket_minutes: r.bucket / MICROS_PER_MINUTE,
            points,
        })
    }
}
