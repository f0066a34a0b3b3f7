//! `error_rate` (canary): the canary arm's user-visible error share stays under the threshold.
//!
//! Same kernel as `error_recovery`, over the whole window per arm instead of per minute.

use arrow::array::Array;

use super::error_recovery::{is_error, ErrorsKernel, ERRORS};
use super::rows::{RowsKernel, ROWS};
use super::{pct, CheckInfo, CheckResult, CheckSpec, Finish, Metric, Status, CANARY};
use crate::columns::{Col, Table};
use crate::engine::SIDE_SUBJECT;

pub(crate) static CHECK: CheckSpec = CheckSpec {
    info: &INFO,
    kernels: &[&ERRORS, &ROWS],
    finish,
    evidence: &[&super::Evidence {
        kind: "errors_of_the_canary_arm",
        table: Table::Requests,
        select: |_, _, rows| {
            let n = rows.len();
            let Some(status) = rows.batch.int(Col::Status) else {
                return vec![false; n];
            };
            (0..n)
                .map(|i| {
                    rows.side[i] == SIDE_SUBJECT && status.is_valid(i) && is_error(status.value(i))
                })
                .collect()
        },
    }],
};

pub(crate) static INFO: CheckInfo = CheckInfo {
    id: "error_rate",
    title: "Canary error rate",
    modes: CANARY,
    what_it_checks: "The share of user-visible errors (status >= 500 or status == 429) of each arm over the \
        whole window.",
    why_it_matters: "A canary that errors more than the threshold must not graduate, whatever its other figures.",
    what_fails_it: "canary_error_rate >= error_rate_max. Inconclusive when either arm has fewer than \
        min_requests requests in the window.",
    columns_it_needs: "ts, arm, status.",
    figures: &[
        ("baseline_error_rate", "Errors / requests with a status, on the baseline arm in the window."),
        ("canary_error_rate", "The same on the canary arm."),
        ("baseline_errors", "User-visible errors (status >= 500 or 429) on the baseline arm."),
        ("canary_errors", "The same on the canary arm."),
        ("baseline_requests", "Requests with a valid status on the baseline arm: the rate's denominator."),
        ("canary_requests", "The same on the canary arm."),
        ("error_rate_max", "The threshold canary_error_rate is compared with."),
        ("status_missing", "Requests without a status (not counted)."),
        ("status_invalid", "Requests with a status outside 100..=599 (not counted)."),
    ],
    remediation: "find what still errors after the flip (region, dependency, cache) before reopening writes",
    region_column: None,
    impact: Some(|_, m, _| {
        let rate = |k: &str| m.get(k).and_then(Metric::as_number);
        let (Some(c), Some(b)) = (rate("canary_error_rate"), rate("baseline_error_rate")) else {
            return None;
        };
        Some(format!(
            "The canary's users saw errors on {} of requests, the stable arm's on {}.",
            super::pct(c),
            super::pct(b)
        ))
    }),
    events: None,
    lever: None,
};

fn finish(f: &Finish<'_>) -> CheckResult {
    let ctx = f.ctx;
    let partial = f.states.get::<ErrorsKernel>();
    let counts = f.states.get::<RowsKernel>();
    if !ctx.has(Col::Status) {
        return CheckResult::skip(INFO.id, "the requests have no `status` column");
    }
    let max = ctx.thresholds.error_rate_max;
    let baseline = partial.sides[0].value();
    let canary = partial.sides[1].value();
    let result = |status, summary: String| {
        CheckResult::new(INFO.id, status, summary)
            .metric("baseline_error_rate", Metric::Number(baseline))
            .metric("canary_error_rate", Metric::Number(canary))
            .metric("baseline_errors", Metric::Count(partial.sides[0].hits))
            .metric("canary_errors", Metric::Count(partial.sides[1].hits))
            .metric("baseline_requests", Metric::Count(partial.sides[0].total))
            .metric("canary_requests", Metric::Count(partial.sides[1].total))
            .metric("error_rate_max", Metric::Number(Some(max)))
            .metric("status_missing", Metric::Count(partial.status_missing))
            .metric("status_invalid", Metric::Count(partial.status_invalid))
            .cells(
                canary.map(pct).unwrap_or_else(|| "n/a".into()),
                baseline.map(pct).unwrap_or_else(|| "n/a".into()),
                format!("< {}", pct(max)),
            )
    };
    if let Some(reason) = counts.too_few(ctx) {
        return result(Status::Inconclusive, reason);
    }
    match canary {
        Some(rate) if rate >= max => result(
            Status::Fail,
            format!(
                "canary error rate {} is at or over {} (baseline {})",
                pct(rate),
                pct(max),
                baseline.map(pct).unwrap_or_default()
            ),
        ),
        Some(rate) => result(
            Status::Pass,
            format!(
                "canary error rate {} under {} (baseline {})",
                pct(rate),
                pct(max),
                baseline.map(pct).unwrap_or_default()
            ),
        ),
        None => result(
            Status::Inconclusive,
            "no canary request with a status".to_string(),
        ),
    }
}
