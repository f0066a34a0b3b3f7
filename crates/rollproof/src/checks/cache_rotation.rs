//! `cache_rotation`: after the flip, no cache hit is served from a stale namespace.
//!
//! The kernel (cache hits whose namespace is not their pin set's rendered namespace) is shared
//! with `cache_isolation`, which groups rows by arm instead of by time.

use crate::words::plural;
use arrow::array::Array;
use serde::{Deserialize, Serialize};

use super::Lever;
use super::{
    region_of, CheckInfo, CheckResult, CheckSpec, Event, EventKind, Evidence, Fields, Finish,
    Metric, Status, ROLLBACK, SAMPLE_CAP,
};
use crate::columns::{Col, Table};
use crate::engine::{Kernel, Rows, Stage, States};
use crate::plan::Ctx;
use crate::stats::{Counts, Keyed, SampleKey, Strata};
use crate::time::format_millis;

pub(crate) static CHECK: CheckSpec = CheckSpec {
    info: &INFO,
    kernels: &[&CACHE],
    finish,
    evidence: &[&WRONG_HITS],
};

pub(crate) static INFO: CheckInfo = CheckInfo {
    id: "cache_rotation",
    title: "Cache namespace rotation",
    modes: ROLLBACK,
    what_it_checks: "Every cache hit after the flip was served from the namespace rendered from [cache].namespace \
        with the expected pins (e.g. ns:{index_hash}:{prompt_ver}). A hit from any other namespace is stale; a \
        stale namespace on a cache miss does not count.",
    why_it_matters: "Answers cached by the bad build keep reaching users after the rollback until the cache \
        namespace rotates. Rolling back the code without rotating the cache serves the regression from memory.",
    what_fails_it: "Any stale hit (stale_hits > 0). `last_stale_at` says when the last one was served.",
    columns_it_needs: "ts, cache_hit, cache_ns, and a [cache] namespace template in the incident; region and \
        request_id for breakdowns and samples.",
    figures: &[
        ("hits_checked", "Cache hits (cache_hit true) among requests with ts >= flip_at."),
        ("stale_hits", "Of those, hits whose cache_ns differs from the expected namespace (missing counts as different)."),
        ("by_region", "Region → stale hits."),
        ("hits_by_region", "Region → hits checked: the denominators of by_region."),
        ("last_stale_at", "The latest stale hit's ts; null without stale hits."),
        ("expected_namespace", "[cache].namespace rendered with the expected pins."),
    ],
    remediation: "purge or rotate the cache namespace in {regions}; make namespace rotation part of the rollback runbook",
    region_column: Some(("stale cache hits", "hits_by_region")),
    impact: Some(|_, m, _| {
        let s = m.get("stale_hits").and_then(Metric::as_count).unwrap_or(0);
        (s > 0).then(|| {
            format!(
                "{} after the flip served answers cached by the bad version.",
                crate::words::plural(s, "cache hit", "cache hits")
            )
        })
    }),
    events: Some(|m, _| {
        m.get("last_stale_at")
            .and_then(Metric::as_time)
            .map(|at| Event {
                at,
                what: "last stale cache hit".into(),
                kind: EventKind::Bad,
            })
            .into_iter()
            .collect()
    }),
    lever: Some(|_| Some(Lever::AliasIndexBack)),
};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct Sample {
    ts: i64,
    request_id: Option<String>,
    found: Option<String>,
    set: u8,
    region: String,
}

impl Keyed for Sample {
    fn key(&self) -> SampleKey<'_> {
        (self.ts, self.request_id.as_deref())
    }
}

/// Cache hits checked against their own set's namespace.
#[derive(Serialize, Deserialize)]
pub(crate) struct State {
    pub(crate) hits_checked: u64,
    pub(crate) wrong_hits: u64,
    pub(crate) by_region: Counts,
    /// Audited cache hits per region: the denominators of `by_region`.
    pub(crate) hits_by_region: Counts,
    pub(crate) by_set: [u64; 2],
    pub(crate) last_wrong_at: Option<i64>,
    /// The earliest and latest stale hits of each region.
    samples: Strata<Sample>,
}

/// Audited cache hits against their pin set's rendered namespace.
pub(crate) struct CacheKernel;
pub(crate) static CACHE: CacheKernel = CacheKernel;

impl Kernel for CacheKernel {
    type State = State;
    const NAME: &'static str = "cache";
    const TABLE: Table = Table::Requests;
    const STAGE: Stage = Stage::Requests;

    fn columns(&self, _ctx: &Ctx) -> Vec<Col> {
        vec![Col::CacheHit, Col::CacheNs, Col::Region, Col::RequestId]
    }

    fn init(&self, _ctx: &Ctx, _prior: &States) -> State {
        State {
            hits_checked: 0,
            wrong_hits: 0,
            by_region: Counts::default(),
            hits_by_region: Counts::default(),
            by_set: [0; 2],
            last_wrong_at: None,
            samples: Strata::new(2),
        }
    }

    fn update(&self, ctx: &Ctx, state: &mut State, rows: &Rows<'_>) {
        state.update(ctx, rows)
    }

    fn merge(&self, state: &mut State, other: State) {
        state.hits_checked += other.hits_checked;
        state.wrong_hits += other.wrong_hits;
        state.by_set[0] += other.by_set[0];
        state.by_set[1] += other.by_set[1];
        state.last_wrong_at = super::rows::max_option(state.last_wrong_at, other.last_wrong_at);
        state.by_region.merge(other.by_region);
        state.hits_by_region.merge(other.hits_by_region);
        state.samples.merge(other.samples);
    }
}

/// Per row: an audited cache hit, and whether its namespace is not its set's.
fn hits_and_wrong(ctx: &Ctx, rows: &Rows<'_>) -> (Vec<bool>, Vec<bool>) {
    let batch = rows.batch;
    let n = batch.len();
    let (Some(hit), Some(ns)) = (batch.bool(Col::CacheHit), batch.str(Col::CacheNs)) else {
        return (vec![false; n], vec![false; n]);
    };
    let expected: Vec<&str> = ctx
        .plan
        .pin_sets()
        .iter()
        .map(|s| s.namespace.as_deref().unwrap_or_default())
        .collect();
    // Bit s: the namespace differs from set s's.
    let differs = ns.map_rows(|v| {
        expected
            .iter()
            .enumerate()
            .fold(0u8, |acc, (s, e)| acc | (((v != Some(*e)) as u8) << s))
    });
    let hits = hit.values();
    let audited_hit: Vec<bool> = (0..n)
        .map(|i| rows.set[i] != 0 && hit.is_valid(i) && hits.value(i))
        .collect();
    let wrong = (0..n)
        .map(|i| audited_hit[i] && (differs[i] >> (rows.set[i] - 1)) & 1 == 1)
        .collect();
    (audited_hit, wrong)
}

/// Evidence: the stale (rollback) or foreign (canary) cache hits.
pub(crate) static WRONG_HITS: Evidence = Evidence {
    kind: "cache_hits_from_another_namespace",
    table: Table::Requests,
    select: |ctx, _, rows| {
        if State::skip_reason(ctx).is_some() {
            return vec![false; rows.len()];
        }
        hits_and_wrong(ctx, rows).1
    },
};

impl State {
    /// Why the kernel cannot run, if it cannot.
    pub(crate) fn skip_reason(ctx: &Ctx) -> Option<String> {
        let mut missing = Vec::new();
        for col in [Col::CacheHit, Col::CacheNs] {
            if !ctx.has(col) {
                missing.push(format!("`{}`", col.name()));
            }
        }
        if !missing.is_empty() {
            return Some(format!(
                "the requests have no {} column",
                missing.join(" or ")
            ));
        }
        if ctx.plan.pin_sets().iter().any(|s| s.namespace.is_none()) {
            return Some("the incident has no [cache] namespace template".to_string());
        }
        None
    }

    fn update(&mut self, ctx: &Ctx, rows: &Rows<'_>) {
        if State::skip_reason(ctx).is_some() {
            return;
        }
        let batch = rows.batch;
        let ns = batch.str(Col::CacheNs).expect("projected");
        let (hit, wrong) = hits_and_wrong(ctx, rows);
        let region = batch.str(Col::Region);
        let request_id = batch.str(Col::RequestId);
        let ts = batch.ts();
        for i in 0..batch.len() {
            if !hit[i] {
                continue;
            }
            let set = rows.set[i];
            self.hits_checked += 1;
            let r = region_of(region.as_ref(), i);
            self.hits_by_region.bump(r);
            if !wrong[i] {
                continue;
            }
            self.wrong_hits += 1;
            self.by_set[set as usize - 1] += 1;
            self.last_wrong_at = Some(self.last_wrong_at.map_or(ts[i], |t| t.max(ts[i])));
            self.by_region.bump(r);
            let id = request_id.as_ref().and_then(|c| c.get(i));
            self.samples.offer(r, (ts[i], id), || Sample {
                ts: ts[i],
                request_id: id.map(str::to_string),
                found: ns.get(i).map(str::to_string),
                set,
                region: r.to_string(),
            });
        }
    }

    pub(crate) fn samples(&self, ctx: &Ctx) -> Vec<Fields> {
        self.samples
            .pick(SAMPLE_CAP)
            .into_iter()
            .map(|s| {
                let mut f = Fields::new();
                f.insert("request_id".into(), Metric::Text(s.request_id));
                f.insert("ts".into(), Metric::Time(Some(s.ts)));
                f.insert("cache_ns".into(), Metric::Text(s.found));
                f.insert(
                    "expected".into(),
                    Metric::Text(ctx.plan.pin_sets()[s.set as usize - 1].namespace.clone()),
                );
                f.insert("region".into(), Metric::Text(Some(s.region)));
                if ctx.plan.canary().is_some() {
                    f.insert(
                        "arm".into(),
                        Metric::Text(Some(ctx.plan.set_label(s.set as usize - 1))),
                    );
                }
                f
            })
            .collect()
    }
}

/// The rollback rendering: stale hits after the flip.
fn finish(f: &Finish<'_>) -> CheckResult {
    let ctx = f.ctx;
    let state = f.states.get::<CacheKernel>();
    {
        if let Some(reason) = State::skip_reason(ctx) {
            return CheckResult::skip(INFO.id, reason);
        }
        let namespace = ctx.plan.pin_sets()[0].namespace.clone().unwrap_or_default();
        let (status, summary) = if state.wrong_hits > 0 {
            (
                Status::Fail,
                format!(
                    "{} of {} post-flip cache hits came from a stale namespace (expected `{namespace}`; last at {})",
                    super::count(state.wrong_hits),
                    super::count(state.hits_checked),
                    state.last_wrong_at.map(format_millis).unwrap_or_default()
                ),
            )
        } else {
            (
                Status::Pass,
                format!(
                    "all {} post-flip cache hits came from `{namespace}`",
                    super::count(state.hits_checked)
                ),
            )
        };
        let mut result = CheckResult::new(INFO.id, status, summary)
            .metric("hits_checked", Metric::Count(state.hits_checked))
            .metric("stale_hits", Metric::Count(state.wrong_hits))
            .metric("by_region", Metric::Counts(state.by_region.sorted()))
            .metric(
                "hits_by_region",
                Metric::Counts(state.hits_by_region.sorted()),
            )
            .metric("last_stale_at", Metric::Time(state.last_wrong_at))
            .metric("expected_namespace", Metric::Text(Some(namespace)))
            .cells(
                plural(state.wrong_hits, "stale hit", "stale hits"),
                "",
                "0 stale hits",
            )
            .sample_size(state.hits_checked.to_string());
        result.samples = state.samples(ctx);
        result
    }
}
