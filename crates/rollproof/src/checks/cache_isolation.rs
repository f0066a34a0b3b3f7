//! `cache_isolation` (canary): neither arm is served from the other arm's cache namespace.
//!
//! Same kernel as `cache_rotation`; rows are grouped by arm, each checked against its own arm's
//! rendered namespace.

use super::cache_rotation::{CacheKernel, State, CACHE};
use super::{CheckInfo, CheckResult, CheckSpec, Finish, Metric, Status, CANARY};
use crate::words::plural;

pub(crate) static CHECK: CheckSpec = CheckSpec {
    info: &INFO,
    kernels: &[&CACHE],
    finish,
    evidence: &[&super::cache_rotation::WRONG_HITS],
};

pub(crate) static INFO: CheckInfo = CheckInfo {
    id: "cache_isolation",
    title: "Cache isolation between arms",
    modes: CANARY,
    what_it_checks: "Every cache hit of each arm in the window was served from that arm's own namespace: \
        [cache].namespace rendered with the arm's expected pins. A hit from any other namespace is foreign.",
    why_it_matters: "When the canary and the stable arm share a cache key space, each serves the other's \
        answers (mixed-arm cache poisoning): the canary's figures then describe the stable build, and the \
        stable arm's users get canary answers.",
    what_fails_it: "Any foreign hit (foreign_hits > 0).",
    columns_it_needs: "ts, arm, cache_hit, cache_ns, and a [cache] namespace template; region and request_id \
        for breakdowns and samples.",
    figures: &[
        ("hits_checked", "Cache hits of either arm in the window."),
        ("foreign_hits", "Of those, hits whose cache_ns is not their own arm's rendered namespace."),
        ("by_arm", "Arm → foreign hits."),
        ("by_region", "Region → foreign hits."),
        ("hits_by_region", "Region → hits checked: the denominators of by_region."),
        ("last_foreign_at", "The latest foreign hit's ts; null without foreign hits."),
    ],
    remediation: "give each arm its own cache namespace (render it from the arm's pins) and purge the shared entries",
    region_column: Some(("foreign cache hits", "hits_by_region")),
    impact: Some(|_, m, _| {
        let n = m.get("foreign_hits").and_then(Metric::as_count).unwrap_or(0);
        (n > 0).then(|| {
            format!(
                "{} served from the other arm's namespace: answers crossed between the arms (cache poisoning).",
                crate::words::plural(n, "cache hit was", "cache hits were")
            )
        })
    }),
    events: None,
    lever: None,
};

fn finish(f: &Finish<'_>) -> CheckResult {
    let ctx = f.ctx;
    let partial = f.states.get::<CacheKernel>();
    if let Some(reason) = State::skip_reason(ctx) {
        return CheckResult::skip(INFO.id, reason);
    }
    let (status, summary) = if partial.wrong_hits > 0 {
        (
            Status::Fail,
            format!(
                "{} of {} cache hits were served from another arm's (or an unknown) namespace",
                super::count(partial.wrong_hits),
                super::count(partial.hits_checked)
            ),
        )
    } else {
        (
            Status::Pass,
            format!(
                "all {} cache hits came from their own arm's namespace",
                super::count(partial.hits_checked)
            ),
        )
    };
    let by_arm = (0..2)
        .filter(|&s| partial.by_set[s] > 0)
        .map(|s| (ctx.plan.set_label(s), partial.by_set[s]))
        .collect();
    let mut result = CheckResult::new(INFO.id, status, summary)
        .metric("hits_checked", Metric::Count(partial.hits_checked))
        .metric("foreign_hits", Metric::Count(partial.wrong_hits))
        .metric("by_arm", Metric::Counts(by_arm))
        .metric("by_region", Metric::Counts(partial.by_region.sorted()))
        .metric(
            "hits_by_region",
            Metric::Counts(partial.hits_by_region.sorted()),
        )
        .metric("last_foreign_at", Metric::Time(partial.last_wrong_at))
        .cells(
            plural(partial.wrong_hits, "foreign hit", "foreign hits"),
            "",
            "0 foreign hits",
        )
        .sample_size(partial.hits_checked.to_string());
    result.samples = partial.samples(ctx);
    result
}
