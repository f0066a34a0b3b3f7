//! Per-minute series around the flip (rollback mode), for the postmortem's charts: error rate,
//! p95 latency, share of requests carrying the expected pins, stale cache hits, ΔS p95, coverage.
//!
//! Not a check: a kernel like the others (update → merge → settle), so the series is as
//! deterministic as every other figure. Built only when the HTML report is asked for, and never
//! part of the JSON (so the JSON does not depend on which reports a run writes).

use arrow::array::Array;
use serde::{Deserialize, Serialize};

use crate::columns::{Col, Table};
use std::collections::BTreeMap;

use super::error_recovery::is_error;
use crate::engine::{Kernel, Rows, Stage, States, SIDE_BASELINE, SIDE_SUBJECT};
use crate::plan::{Ctx, Plan};
use crate::stats::{ExactSum, Quantiles};
use crate::time::{Micros, MICROS_PER_MINUTE};

/// Per-bucket figures around the flip (rollback), or over the window per arm (canary); and
/// per-region figures of the two sides.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub bucket_minutes: i64,
    /// Rollback: every request. Canary: the baseline (stable) arm.
    pub points: Vec<TimelinePoint>,
    /// Canary: the canary arm, bucket by bucket with `points`. Empty in rollback mode.
    pub canary_points: Vec<TimelinePoint>,
    /// Region → figures of [baseline window, after the flip] (rollback) or [baseline arm, canary
    /// arm] (canary), sorted by region.
    pub regions: Vec<(String, [RegionFigures; 2])>,
    /// The two sides over every region.
    pub totals: [RegionFigures; 2],
    /// Rollback: per region, the share of requests on the expected pins bucket by bucket (with
    /// `points`), and the region's flip; sorted by region. Empty without a region column.
    pub region_pins: Vec<RegionPins>,
    /// More than [`MAX_REGIONS`] regions had rows: `regions` and `region_pins` are then empty,
    /// and `totals` still covers every row.
    pub regions_dropped: bool,
}

/// One region's convergence.
#[derive(Debug, Clone, Serialize)]
pub struct RegionPins {
    pub region: String,
    /// Its flip, in minutes from flip_at (0 unless `[flip_at_by_region]` names it).
    pub flip_minute: f64,
    pub shares: Vec<Option<f64>>,
}

/// One side's figures in one region.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RegionFigures {
    pub requests: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    pub p95_latency_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelinePoint {
    /// Minutes from the flip to the start of the bucket.
    pub minute: i64,
    pub error_rate: Option<f64>,
    pub p95_latency_ms: Option<f64>,
    pub pins_ok_share: Option<f64>,
    pub stale_hits: u64,
    pub delta_s_p95: Option<f64>,
    pub coverage_mean: Option<f64>,
    pub requests: u64,
    /// Share of status 429 among requests with a status.
    pub throttled_share: Option<f64>,
    pub queue_p95_ms: Option<f64>,
    /// Share of open or half-open breakers among requests with a known breaker state.
    pub breaker_open_share: Option<f64>,
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
    throttled: u64,
    queue: Option<Quantiles>,
    breaker_known: u64,
    breaker_open: u64,
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
        self.throttled += o.throttled;
        self.breaker_known += o.breaker_known;
        self.breaker_open += o.breaker_open;
        for (mine, theirs) in [
            (&mut self.latency, o.latency),
            (&mut self.delta_s, o.delta_s),
            (&mut self.queue, o.queue),
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

/// The chart range. Rollback: from the baseline (or 30 min before the flip) to the end of the
/// post window (or 90 min after the flip), origin the flip. Canary: the window (no window, no
/// per-minute series), origin its start.
#[derive(Debug, Clone, Copy)]
struct Range {
    start: Micros,
    end: Micros,
    bucket: Micros,
    origin: Micros,
}

fn range(ctx: &Ctx) -> Option<Range> {
    if !ctx.series {
        return None;
    }
    let (start, end, origin) = match &ctx.plan {
        Plan::Rollback(r) => {
            let flip = r.flip_at;
            let start = r.baseline.start.min(flip - 30 * MICROS_PER_MINUTE);
            let end = if r.post_is_default {
                flip + 90 * MICROS_PER_MINUTE
            } else {
                r.post.end
            }
            .max(flip + 30 * MICROS_PER_MINUTE);
            (start, end, flip)
        }
        Plan::Canary(c) => {
            let w = c.window?;
            (w.start, w.end, w.start)
        }
    };
    // Both positive: end > start.
    let minutes = (end - start + MICROS_PER_MINUTE - 1) / MICROS_PER_MINUTE;
    let bucket = ((minutes + MAX_BUCKETS - 1) / MAX_BUCKETS).max(1) * MICROS_PER_MINUTE;
    Some(Range {
        start,
        end,
        bucket,
        origin,
    })
}

/// The most regions the series keeps apart (the HTML report's table by region and its chart of
/// pins by region). A region column with more distinct values is not a region (a host, a pod,
/// or an id mapped as `region` by mistake), and each kept region costs two latency histograms
/// and a vector of buckets: a column of a million distinct values once took 24 GB and the
/// out-of-memory killer. Past this many, the series keeps the totals only. Whether it does
/// depends only on how many regions have counted rows, not on the order of rows or merges.
pub const MAX_REGIONS: usize = 256;

/// The key of [`State::regions`] that holds the rows of every region once more than
/// [`MAX_REGIONS`] had rows; its presence is what says so (in a partial too, whose shape is
/// then unchanged). Never a region's name: `checks::region_of` names a missing or empty region
/// `unknown`.
const OTHER_REGIONS: &str = "";

/// Requests, errors and latency of one side in one region.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RegionCell {
    requests: u64,
    with_status: u64,
    errors: u64,
    latency: Option<Quantiles>,
}

impl RegionCell {
    fn merge(&mut self, o: RegionCell) {
        self.requests += o.requests;
        self.with_status += o.with_status;
        self.errors += o.errors;
        match (self.latency.as_mut(), o.latency) {
            (Some(m), Some(t)) => m.merge(&t),
            (None, Some(t)) => self.latency = Some(t),
            _ => {}
        }
    }

    fn figures(&self) -> RegionFigures {
        RegionFigures {
            requests: self.requests,
            errors: self.errors,
            error_rate: (self.with_status > 0)
                .then(|| self.errors as f64 / self.with_status as f64),
            p95_latency_ms: self.latency.as_ref().and_then(|q| q.quantile(950)),
        }
    }
}

fn latency_histogram() -> Quantiles {
    Quantiles::new_with_precision(1000.0, 3_600_000.0, 2)
}

/// Which of a batch's regions have a cell (made by the region's first counted row), so that the
/// loops that count per region make no more cells than the room left under [`MAX_REGIONS`].
struct BatchSlots {
    /// Per region id of the batch, its cell (`u32::MAX`: none yet).
    slot: Vec<u32>,
    /// Per cell, its region id.
    ids: Vec<usize>,
    /// How many more regions the state has no entry for may get a cell.
    room: usize,
    /// A region without room had a row: the caller keeps the totals only.
    full: bool,
}

impl BatchSlots {
    fn new(regions: usize, room: usize) -> BatchSlots {
        BatchSlots {
            slot: vec![u32::MAX; regions],
            ids: Vec::new(),
            room,
            full: false,
        }
    }

    /// Region `id`'s cell among `cells`, made by `make` on its first row if there is room (a
    /// region the state has an entry for needs none: `fresh` says whether it has not); `None`
    /// once a region found no room.
    #[inline]
    fn cell<'c, T>(
        &mut self,
        id: usize,
        cells: &'c mut Vec<T>,
        fresh: impl FnOnce() -> bool,
        make: impl FnOnce() -> T,
    ) -> Option<&'c mut T> {
        if let Some(&s) = self.slot.get(id).filter(|&&s| s != u32::MAX) {
            return cells.get_mut(s as usize);
        }
        if self.full {
            return None;
        }
        if fresh() {
            if self.room == 0 {
                self.full = true;
                return None;
            }
            self.room -= 1;
        }
        self.slot[id] = cells.len() as u32;
        self.ids.push(id);
        cells.push(make());
        cells.last_mut()
    }
}

/// Buckets by index from the chart's first bucket (dense: the range is fixed before the pass),
/// one vector per side (rollback: one), and the per-region cells.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct State {
    sides: Vec<Vec<Bucket>>,
    /// Bucket number (relative to the origin) of `sides[_][0]`.
    first: i64,
    /// Region → its two sides; at most [`MAX_REGIONS`] regions, else only [`OTHER_REGIONS`].
    regions: BTreeMap<String, [RegionCell; 2]>,
    /// Rollback: region → (requests checked, on the expected pins) per bucket, like `sides[0]`;
    /// at most [`MAX_REGIONS`] regions, else empty.
    region_pins: BTreeMap<String, Vec<(u64, u64)>>,
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
        if !ctx.series {
            return Vec::new();
        }
        let mut cols = vec![
            Col::Region,
            Col::Status,
            Col::LatencyMs,
            Col::CacheHit,
            Col::CacheNs,
            Col::DeltaS,
            Col::Coverage,
            Col::QueueWaitMs,
            Col::BreakerState,
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
        for (region, buckets) in other.region_pins {
            let mine = state.region_pins.entry(region).or_default();
            if mine.len() < buckets.len() {
                mine.resize(buckets.len(), (0, 0));
            }
            for (m, t) in mine.iter_mut().zip(buckets) {
                m.0 += t.0;
                m.1 += t.1;
            }
        }
        for (region, cells) in other.regions {
            let mine = state.regions.entry(region).or_default();
            for (m, t) in mine.iter_mut().zip(cells) {
                m.merge(t);
            }
        }
        if state.regions_dropped()
            || state.regions.len() > MAX_REGIONS
            || state.region_pins.len() > MAX_REGIONS
        {
            state.drop_regions();
        }
        if state.sides.is_empty() {
            state.sides = other.sides;
            state.first = other.first;
            return;
        }
        for (mine, theirs) in state.sides.iter_mut().zip(other.sides) {
            for (m, t) in mine.iter_mut().zip(theirs) {
                m.merge(t);
            }
        }
    }
}

impl State {
    fn update(&mut self, ctx: &Ctx, rows: &Rows<'_>) {
        if !ctx.series {
            return;
        }
        let batch = rows.batch;
        let region = batch.str(Col::Region);
        // Each row's region (`region_of`'s name) as an index into the batch's distinct names,
        // found once per dictionary value: the loops below index per-batch cells by it instead
        // of comparing names per row.
        let (region_ids, regions) = super::region_ids(region.as_ref(), batch.len());
        self.update_regions(ctx, rows, &region_ids, &regions);
        let Some(r) = range(ctx) else { return };
        let canary = matches!(ctx.plan, Plan::Canary(_));
        if self.sides.is_empty() {
            self.first = (r.start - r.origin).div_euclid(r.bucket);
            let last = (r.end - 1 - r.origin).div_euclid(r.bucket);
            let n = (last - self.first + 1) as usize;
            self.sides = vec![vec![Bucket::default(); n]; if canary { 2 } else { 1 }];
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
        // Canary: the side of each row (0 stable, 1 canary, None another arm or outside).
        let side_of = |i: usize| -> Option<usize> {
            if canary {
                rows.side
                    .get(i)
                    .and_then(|&s| (s > 0).then(|| s as usize - 1))
            } else {
                Some(0)
            }
        };
        let sets = ctx.plan.pin_sets();
        let mut pins_ok = vec![true; n];
        let mut any_pin = false;
        let mut stale = vec![false; n];
        let mut any_stale = false;
        for (s, set) in sets.iter().enumerate() {
            let mine = |i: usize| !canary || side_of(i) == Some(s);
            for (col, want) in &set.pins {
                let Some(arr) = batch.str(*col) else { continue };
                any_pin = true;
                let ok = arr.map_rows(|v| v == Some(want.as_str()));
                for (i, (o, k)) in pins_ok.iter_mut().zip(ok).enumerate() {
                    if mine(i) {
                        *o &= k;
                    }
                }
            }
            if let (Some(hit), Some(ns), Some(want)) = (
                batch.bool(Col::CacheHit),
                batch.str(Col::CacheNs),
                set.namespace.as_deref(),
            ) {
                any_stale = true;
                let wrong = ns.map_rows(|v| v != Some(want));
                for i in 0..n {
                    if mine(i) {
                        stale[i] = hit.is_valid(i) && hit.value(i) && wrong[i];
                    }
                }
            }
        }
        let stale = any_stale.then_some(stale);
        let hit = batch.bool(Col::CacheHit);
        let status = batch.int(Col::Status);
        let latency = batch.float(Col::LatencyMs);
        let delta_s = batch.float(Col::DeltaS);
        let coverage = batch.float(Col::Coverage);
        let queue = batch.float(Col::QueueWaitMs);
        let breaker = batch
            .str(Col::BreakerState)
            .map(|b| b.map_rows(super::backpressure::breaker));
        if any_pin && !canary && region.is_some() && !self.regions_dropped() {
            let len = self.sides[0].len();
            // Per region of this batch, created by its first row in the chart (a region with
            // none gets no entry), unless that makes more than `MAX_REGIONS` in all.
            let room = MAX_REGIONS.saturating_sub(self.region_pins.len());
            let mut slots = BatchSlots::new(regions.len(), room);
            let mut cells: Vec<Vec<(u64, u64)>> = Vec::new();
            for i in 0..n {
                let Some(k) = index[i] else { continue };
                let id = region_ids[i] as usize;
                let fresh = || !self.region_pins.contains_key(regions[id]);
                let Some(c) = slots.cell(id, &mut cells, fresh, || vec![(0, 0); len]) else {
                    continue;
                };
                c[k].0 += 1;
                c[k].1 += pins_ok[i] as u64;
            }
            if slots.full {
                self.drop_regions();
                cells.clear();
            }
            for (&id, c) in slots.ids.iter().zip(cells) {
                let name = regions[id];
                let mine = match self.region_pins.get_mut(name) {
                    Some(m) => m,
                    None => self
                        .region_pins
                        .entry(name.to_string())
                        .or_insert_with(|| vec![(0, 0); len]),
                };
                for (m, t) in mine.iter_mut().zip(c) {
                    m.0 += t.0;
                    m.1 += t.1;
                }
            }
        }
        for i in 0..n {
            let Some(k) = index[i] else { continue };
            let Some(side) = side_of(i) else { continue };
            let b = &mut self.sides[side][k];
            b.requests += 1;
            if let Some(s) = status.filter(|s| s.is_valid(i)) {
                let v = s.values()[i];
                b.with_status += 1;
                b.errors += is_error(v) as u64;
                b.throttled += (v == 429) as u64;
            }
            if let Some(q) = queue.filter(|q| q.is_valid(i) && q.values()[i] >= 0.0) {
                b.queue
                    .get_or_insert_with(latency_histogram)
                    .record(q.values()[i]);
            }
            if let Some(state) = breaker.as_ref().map(|b| b[i]).filter(|s| *s <= 1) {
                b.breaker_known += 1;
                b.breaker_open += state as u64;
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
                    .get_or_insert_with(latency_histogram)
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

    /// Per region, the two sides: rollback [baseline window, after the flip], canary [baseline
    /// arm, canary arm].
    fn update_regions(&mut self, ctx: &Ctx, rows: &Rows<'_>, region_ids: &[u32], regions: &[&str]) {
        let batch = rows.batch;
        let status = batch.int(Col::Status);
        let latency = batch.float(Col::LatencyMs);
        let canary = matches!(ctx.plan, Plan::Canary(_));
        // Per region of this batch, created by its first counted row; once more than
        // `MAX_REGIONS` regions have rows, every row counts in the totals only.
        let dropped = self.regions_dropped();
        let room = MAX_REGIONS.saturating_sub(self.regions.len());
        let mut slots = BatchSlots::new(if dropped { 0 } else { regions.len() }, room);
        slots.full = dropped;
        let mut cells: Vec<[RegionCell; 2]> = Vec::new();
        let mut rest: [RegionCell; 2] = Default::default();
        for i in 0..batch.len() {
            let side = if canary {
                match rows.side[i] {
                    SIDE_BASELINE => 0,
                    SIDE_SUBJECT => 1,
                    _ => continue,
                }
            } else if rows.set[i] > 0 {
                1
            } else if rows.side[i] == SIDE_BASELINE {
                0
            } else {
                continue;
            };
            let id = region_ids[i] as usize;
            let fresh = || !self.regions.contains_key(regions[id]);
            let c = match slots.cell(id, &mut cells, fresh, Default::default) {
                Some(c) => &mut c[side],
                None => &mut rest[side],
            };
            c.requests += 1;
            if let Some(s) = status.filter(|s| s.is_valid(i)) {
                c.with_status += 1;
                c.errors += is_error(s.values()[i]) as u64;
            }
            if let Some(l) = latency.filter(|l| l.is_valid(i) && l.values()[i] >= 0.0) {
                c.latency
                    .get_or_insert_with(latency_histogram)
                    .record(l.values()[i]);
            }
        }
        if slots.full {
            self.drop_regions();
            cells.push(rest);
        }
        for (k, c) in cells.into_iter().enumerate() {
            let name = match slots.ids.get(k) {
                Some(&id) if !slots.full => regions[id],
                _ => OTHER_REGIONS,
            };
            let mine = match self.regions.get_mut(name) {
                Some(m) => m,
                None => self.regions.entry(name.to_string()).or_default(),
            };
            for (m, t) in mine.iter_mut().zip(c) {
                m.merge(t);
            }
        }
    }

    /// Whether more than [`MAX_REGIONS`] regions had rows (the totals are kept, not the regions).
    fn regions_dropped(&self) -> bool {
        self.regions.contains_key(OTHER_REGIONS)
    }

    /// Keeps the totals only: every region's cells fold into [`OTHER_REGIONS`], and the pins by
    /// region go (their totals are the buckets').
    fn drop_regions(&mut self) {
        let mut all: [RegionCell; 2] = Default::default();
        for cells in std::mem::take(&mut self.regions).into_values() {
            for (m, t) in all.iter_mut().zip(cells) {
                m.merge(t);
            }
        }
        self.regions.insert(OTHER_REGIONS.to_string(), all);
        self.region_pins.clear();
    }

    /// The series as the report shows it.
    pub(crate) fn timeline(&self, ctx: &Ctx) -> Option<Timeline> {
        if !ctx.series {
            return None;
        }
        let regions = self
            .regions
            .iter()
            .filter(|(k, _)| k.as_str() != OTHER_REGIONS)
            .map(|(k, c)| (k.clone(), [c[0].figures(), c[1].figures()]))
            .collect();
        let regions_dropped = self.regions_dropped();
        let mut all = [RegionCell::default(), RegionCell::default()];
        for cells in self.regions.values() {
            for (a, c) in all.iter_mut().zip(cells) {
                a.merge(c.clone());
            }
        }
        let totals = [all[0].figures(), all[1].figures()];
        let Some(r) = range(ctx) else {
            return Some(Timeline {
                bucket_minutes: 1,
                points: Vec::new(),
                canary_points: Vec::new(),
                regions,
                totals,
                region_pins: Vec::new(),
                regions_dropped,
            });
        };
        let points = |buckets: &[Bucket]| -> Vec<TimelinePoint> {
            buckets
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let k = self.first + i as i64;
                    let rate = |num: u64, den: u64| (den > 0).then(|| num as f64 / den as f64);
                    TimelinePoint {
                        minute: k * r.bucket / MICROS_PER_MINUTE,
                        error_rate: rate(b.errors, b.with_status),
                        p95_latency_ms: b.latency.as_ref().and_then(|q| q.quantile(950)),
                        pins_ok_share: rate(b.pins_ok, b.pins_checked),
                        stale_hits: b.stale_hits,
                        delta_s_p95: b.delta_s.as_ref().and_then(|q| q.quantile(950)),
                        coverage_mean: b.coverage.mean(),
                        requests: b.requests,
                        throttled_share: rate(b.throttled, b.with_status),
                        queue_p95_ms: b.queue.as_ref().and_then(|q| q.quantile(950)),
                        breaker_open_share: rate(b.breaker_open, b.breaker_known),
                    }
                })
                .collect()
        };
        Some(Timeline {
            bucket_minutes: r.bucket / MICROS_PER_MINUTE,
            points: self.sides.first().map(|b| points(b)).unwrap_or_default(),
            canary_points: self.sides.get(1).map(|b| points(b)).unwrap_or_default(),
            regions,
            totals,
            region_pins: self.region_pins(ctx),
            regions_dropped,
        })
    }

    fn region_pins(&self, ctx: &Ctx) -> Vec<RegionPins> {
        let Plan::Rollback(r) = &ctx.plan else {
            return Vec::new();
        };
        self.region_pins
            .iter()
            .map(|(region, cells)| RegionPins {
                region: region.clone(),
                flip_minute: (r.flip_of(Some(region.as_str())) - r.flip_at) as f64
                    / MICROS_PER_MINUTE as f64,
                shares: cells
                    .iter()
                    .map(|(n, ok)| (*n > 0).then(|| *ok as f64 / *n as f64))
                    .collect(),
            })
            .collect()
    }
}
