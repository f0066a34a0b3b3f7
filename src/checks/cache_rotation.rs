//! `cache_rotation`: after the flip, no cache hit is served from a stale namespace.
//!
//! The kernel (cache hits whose namespace is not their pin set's rendered namespace) is shared
//! with `cache_isolation`, which groups rows by arm instead of by time.

use arrow::array::Array;
use std::collections::HashMap;

use super::{
    bump, merge_map, region_of, sorted_counts, CheckInfo, CheckResult, Ctx, Fields, Metric,
    RowClasses, Status, ROLLBACK, SAMPLE_CAP,
};
use crate::columns::{CanonBatch, Col};
use crate::stats::Samples;
use crate::time::format_millis;

pub static INFO: CheckInfo = CheckInfo {
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
};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sample {
    ts: i64,
    request_id: Option<String>,
    found: Option<String>,
    set: u8,
    region: String,
}

/// Cache hits checked against their own set's namespace.
pub struct Partial {
    pub hits_checked: u64,
    pub wrong_hits: u64,
    pub by_region: HashMap<String, u64>,
    pub by_set: [u64; 2],
    pub last_wrong_at: Option<i64>,
    samples: Samples<Sample>,
}

impl Partial {
    pub fn new() -> Partial {
        Partial {
            hits_checked: 0,
            wrong_hits: 0,
            by_region: HashMap::new(),
            by_set: [0; 2],
            last_wrong_at: None,
            samples: Samples::new(SAMPLE_CAP),
        }
    }

    /// Why the kernel cannot run, if it cannot.
    pub fn skip_reason(ctx: &Ctx) -> Option<String> {
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
        if ctx.pin_sets.iter().any(|s| s.namespace.is_none()) {
            return Some("the incident has no [cache] namespace template".to_string());
        }
        None
    }

    pub fn update(&mut self, ctx: &Ctx, batch: &CanonBatch, rows: &RowClasses) {
        if Partial::skip_reason(ctx).is_some() {
            return;
        }
        let hit = batch.bool(Col::CacheHit).expect("projected");
        let ns = batch.str(Col::CacheNs).expect("projected");
        let expected: Vec<&str> = ctx
            .pin_sets
            .iter()
            .map(|s| s.namespace.as_deref().expect("checked"))
            .collect();
        // Bit s: the namespace differs from set s's.
        let wrong = ns.map_rows(|v| {
            expected
                .iter()
                .enumerate()
                .fold(0u8, |acc, (s, e)| acc | (((v != Some(*e)) as u8) << s))
        });
        let region = batch.str(Col::Region);
        let request_id = batch.str(Col::RequestId);
        let ts = batch.ts();
        let hits = hit.values();
        for i in 0..batch.len() {
            let set = rows.set[i];
            if set == 0 || !hit.is_valid(i) || !hits.value(i) {
                continue;
            }
            self.hits_checked += 1;
            if (wrong[i] >> (set - 1)) & 1 == 0 {
                continue;
            }
            self.wrong_hits += 1;
            self.by_set[set as usize - 1] += 1;
            self.last_wrong_at = Some(self.last_wrong_at.map_or(ts[i], |t| t.max(ts[i])));
            let r = region_of(region.as_ref(), i);
            bump(&mut self.by_region, r);
            let id = request_id.as_ref().and_then(|c| c.get(i));
            if self
                .samples
                .would_keep(|last| (ts[i], id) < (last.ts, last.request_id.as_deref()))
            {
                self.samples.push(Sample {
                    ts: ts[i],
                    request_id: id.map(str::to_string),
                    found: ns.get(i).map(str::to_string),
                    set,
                    region: r.to_string(),
                });
            }
        }
    }

    pub fn merge(&mut self, other: Partial) {
        self.hits_checked += other.hits_checked;
        self.wrong_hits += other.wrong_hits;
        self.by_set[0] += other.by_set[0];
        self.by_set[1] += other.by_set[1];
        self.last_wrong_at = match (self.last_wrong_at, other.last_wrong_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        merge_map(&mut self.by_region, other.by_region);
        self.samples.merge(other.samples);
    }

    pub fn samples(self, ctx: &Ctx) -> Vec<Fields> {
        self.samples
            .into_vec()
            .into_iter()
            .map(|s| {
                let mut f = Fields::new();
                f.insert("request_id".into(), Metric::Text(s.request_id));
                f.insert("ts".into(), Metric::Text(Some(format_millis(s.ts))));
                f.insert("cache_ns".into(), Metric::Text(s.found));
                f.insert(
                    "expected".into(),
                    Metric::Text(ctx.pin_sets[s.set as usize - 1].namespace.clone()),
                );
                f.insert("region".into(), Metric::Text(Some(s.region)));
                if ctx.canary.is_some() {
                    f.insert(
                        "arm".into(),
                        Metric::Text(Some(ctx.set_label(s.set as usize - 1))),
                    );
                }
                f
            })
            .collect()
    }

    /// The rollback rendering: stale hits after the flip.
    pub fn finish(self, ctx: &Ctx) -> CheckResult {
        if let Some(reason) = Partial::skip_reason(ctx) {
            return CheckResult::skip(INFO.id, reason);
        }
        let namespace = ctx.pin_sets[0].namespace.clone().unwrap_or_default();
        let (status, summary) = if self.wrong_hits > 0 {
            (
                Status::Fail,
                format!(
                    "{} of {} post-flip cache hits came from a stale namespace (expected `{namespace}`; last at {})",
                    self.wrong_hits,
                    self.hits_checked,
                    self.last_wrong_at.map(format_millis).unwrap_or_default()
                ),
            )
        } else {
            (
                Status::Pass,
                format!(
                    "all {} post-flip cache hits came from `{namespace}`",
                    self.hits_checked
                ),
            )
        };
        let mut result = CheckResult::new(INFO.id, status, summary)
            .metric("hits_checked", Metric::Count(self.hits_checked))
            .metric("stale_hits", Metric::Count(self.wrong_hits))
            .metric("by_region", sorted_counts(&self.by_region))
            .metric(
                "last_stale_at",
                Metric::Text(self.last_wrong_at.map(format_millis)),
            )
            .metric("expected_namespace", Metric::Text(Some(namespace)))
            .cells(
                format!("{} stale hits", self.wrong_hits),
                "",
                "0 stale hits",
            );
        result.samples = self.samples(ctx);
        result
    }
}

impl Default for Partial {
    fn default() -> Self {
        Partial::new()
    }
}
