//! `error_rate` (canary): the canary arm's user-visible error share stays under the threshold.
//!
//! Same kernel as `error_recovery`, over the whole window per arm instead of per minute.

use arrow::array::Array;

use super::criteria::{self, Criterion, IntervalRow};
use super::error_recovery::{is_error, ErrorsKernel, ERRORS};
use super::rows::{RowsKernel, ROWS};
use super::{count, pct, CheckInfo, CheckResult, CheckSpec, Finish, Metric, Status, CANARY};
use crate::columns::{Col, Table};
use crate::engine::SIDE_SUBJECT;
use crate::stats::intervals::{rate_difference, Bound};
use crate::stats::Ci;

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
        min_requests requests in the window. With [statistics] method = \"interval\" each criterion judges the figure's interval instead: past the threshold fails, within passes, across it is inconclusive.",
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
        ("baseline_error_rate_ci", "Interval of baseline_error_rate at [statistics] confidence (Clopper–Pearson, or a confidence sequence)."),
        ("canary_error_rate_ci", "Interval of canary_error_rate."),
        ("error_rate_diff", "canary_error_rate − baseline_error_rate."),
        ("error_rate_diff_ci", "Interval of error_rate_diff (Newcombe's hybrid score interval)."),
        ("n_baseline", "Requests with a valid status on the baseline arm (= baseline_requests)."),
        ("n_canary", "The same on the canary arm."),
        ("errors_baseline", "Errors on the baseline arm (= baseline_errors)."),
        ("errors_canary", "Errors on the canary arm."),
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
    let stats = &ctx.statistics;
    let level = stats.level();
    let (b, c) = (&partial.sides[0], &partial.sides[1]);
    let ci = |r: &crate::stats::Rate| (r.total > 0).then(|| r.interval(level));
    let diff = baseline.zip(canary).map(|(b, c)| c - b);
    let diff_ci = diff.map(|_| rate_difference(c.hits, c.total, b.hits, b.total, level));
    let n = format!("n = {} / {}", count(b.total), count(c.total));
    let criterion = canary.map(|rate| Criterion {
        label: "canary error rate".to_string(),
        estimate: rate,
        ci: ci(c).unwrap_or(Ci::UNBOUNDED),
        bound: Bound::Below,
        threshold: max,
        n: c.total,
        fails: true,
    });
    let result = |status, summary: String| {
        let mut r = CheckResult::new(INFO.id, status, summary)
            .metric("baseline_error_rate", Metric::Number(baseline))
            .metric("canary_error_rate", Metric::Number(canary))
            .metric("baseline_error_rate_ci", criteria::ci_metric(ci(b)))
            .metric("canary_error_rate_ci", criteria::ci_metric(ci(c)))
            .metric("error_rate_diff", Metric::Number(diff))
            .metric("error_rate_diff_ci", criteria::ci_metric(diff_ci))
            .metric("n_baseline", Metric::Count(b.total))
            .metric("n_canary", Metric::Count(c.total))
            .metric("errors_baseline", Metric::Count(b.hits))
            .metric("errors_canary", Metric::Count(c.hits))
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
            );
        if let (Some(d), Some(dci)) = (diff, diff_ci) {
            r.intervals.push(IntervalRow {
                label: "error rate, canary − baseline".to_string(),
                estimate: d,
                ci: dci,
                n: n.clone(),
                criterion: None,
                decision: None,
            });
        }
        r
    };
    if let Some(reason) = counts.too_few(ctx) {
        return result(Status::Inconclusive, reason);
    }
    let Some(criterion) = criterion else {
        return result(
            Status::Inconclusive,
            "no canary request with a status".to_string(),
        );
    };
    let interval_note = if stats.interval() {
        format!(", {}", criteria::interval_words(criterion.ci, stats, None))
    } else {
        String::new()
    };
    let mut r = result(Status::Pass, String::new());
    let texts = criteria::apply(&mut r, std::slice::from_ref(&criterion), stats, &n, |c| {
        format!(
            "canary error rate {} is at or over {} (baseline {}){interval_note}",
            pct(c.estimate),
            pct(max),
            baseline.map(pct).unwrap_or_default()
        )
    });
    // The threshold's row first, then the difference.
    r.intervals.rotate_right(1);
    r.summary = if texts.is_empty() {
        format!(
            "canary error rate {} under {} (baseline {}){interval_note}",
            pct(criterion.estimate),
            pct(max),
            baseline.map(pct).unwrap_or_default()
        )
    } else {
        texts.join("; ")
    };
    r
}
