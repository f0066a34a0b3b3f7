//! `error_recovery`: after the flip, the user-visible error rate fell under the threshold and
//! stayed there, within `recovery_within_minutes`.
//!
//! The kernel (error shares per side, and per minute after the flip) is shared with `error_rate`.

use arrow::array::Array;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::criteria::{self, IntervalRow};
use super::rows::{RowsKernel, ROWS};
use super::{
    num, pct, CheckInfo, CheckResult, CheckSpec, Event, EventKind, Finish, Metric, Status, ROLLBACK,
};
use crate::columns::{Col, Table};
use crate::engine::{Kernel, Rows, Stage, States, SIDE_NONE};
use crate::plan::Ctx;
use crate::stats::{MinuteRates, Rate};
use crate::time::MICROS_PER_MINUTE;

pub(crate) static CHECK: CheckSpec = CheckSpec {
    info: &INFO,
    kernels: &[&ERRORS, &ROWS],
    finish,
    evidence: &[&super::Evidence {
        kind: "errors_after_the_flip",
        table: Table::Requests,
        select: |ctx, _, rows| {
            let n = rows.len();
            let (Some(status), Some(flip)) = (rows.batch.int(Col::Status), ctx.plan.flip_at())
            else {
                return vec![false; n];
            };
            let ts = rows.batch.ts();
            (0..n)
                .map(|i| ts[i] >= flip && status.is_valid(i) && is_error(status.value(i)))
                .collect()
        },
    }],
};

pub(crate) static INFO: CheckInfo = CheckInfo {
    id: "error_recovery",
    title: "Error recovery",
    modes: ROLLBACK,
    what_it_checks: "User-visible errors (status >= 500 or status == 429) per minute after the flip, minute k \
        being [flip_at + k min, flip_at + (k+1) min). recovery_minutes is the smallest k such that every \
        non-empty minute from k to the end of data has an error rate under error_rate_max. Also reports the \
        error share of the baseline and post windows.",
    why_it_matters: "The rollback is done when users stop seeing errors, not when the deploy finished. A \
        recovery that takes too long, or error rates that flap back up, mean the rollback did not fix the cause.",
    what_fails_it: "recovery_minutes is null (the last minute of data is still over the threshold) or greater \
        than recovery_within_minutes. Inconclusive when the baseline or post window has fewer than \
        min_requests requests.",
    columns_it_needs: "ts, status.",
    figures: &[
        ("recovery_minutes", "The smallest k such that every non-empty minute from k to the end of data has an error rate under error_rate_max; null when never."),
        ("recovery_within_minutes", "The threshold it is compared with."),
        ("error_rate_max", "The per-minute error rate threshold."),
        ("baseline_error_rate", "Errors / requests with a status, in the baseline window."),
        ("post_error_rate", "Errors / requests with a status, in the post window."),
        ("minutes_observed", "Non-empty minutes from the flip to the end of data."),
        ("peak_minute", "The minute k (after the flip) with the highest error rate; the earliest on ties."),
        ("peak_minute_error_rate", "That minute's error rate."),
        ("status_missing", "Requests without a status (not counted)."),
        ("status_invalid", "Requests with a status outside 100..=599, e.g. 0 from a client that gave up (not counted)."),
        ("baseline_error_rate_ci", "Interval of baseline_error_rate at [statistics] confidence (Clopper–Pearson, or a confidence sequence); reported, not judged: the check judges minutes."),
        ("post_error_rate_ci", "Interval of post_error_rate."),
        ("n_baseline", "Requests with a valid status in the baseline: the rate's denominator."),
        ("n_post", "The same in the post window."),
        ("errors_baseline", "User-visible errors in the baseline."),
        ("errors_post", "User-visible errors in the post window."),
    ],
    remediation: "find what still errors after the flip (region, dependency, cache) before reopening writes",
    region_column: None,
    impact: Some(|status, m, _| {
        match m.get("recovery_minutes").and_then(Metric::as_count) {
            Some(k) if k > 0 => Some(format!(
                "After the flip, errors took {} to fall back under the threshold for good.",
                crate::words::minutes(k)
            )),
            Some(_) => None,
            None if status == Status::Fail => {
                Some("The error rate had not recovered by the end of the data.".to_string())
            }
            None => None,
        }
    }),
    events: Some(|m, flip_at| {
        match (flip_at, m.get("recovery_minutes").and_then(Metric::as_count)) {
            (Some(flip), Some(k)) => vec![Event {
                at: flip + k as i64 * MICROS_PER_MINUTE,
                what: format!("errors back under the threshold for good ({k} min after the flip)"),
                kind: EventKind::Good,
            }],
            _ => Vec::new(),
        }
    }),
    lever: None,
};

/// Error shares per side, and per minute after the flip.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct State {
    pub(crate) sides: [Rate; 2],
    pub(crate) minutes: BTreeMap<i64, Rate>,
    pub(crate) status_missing: u64,
    /// Status codes outside 100..=599 (e.g. 0 from a client that gave up): excluded, counted.
    pub(crate) status_invalid: u64,
}

/// A user-visible error: a 5xx, or 429 (throttled).
#[inline]
pub(crate) fn is_error(status: i64) -> bool {
    status >= 500 || status == 429
}

/// Error shares per side, and per minute after the flip.
pub(crate) struct ErrorsKernel;
pub(crate) static ERRORS: ErrorsKernel = ErrorsKernel;

impl Kernel for ErrorsKernel {
    type State = State;
    const NAME: &'static str = "errors";
    const TABLE: Table = Table::Requests;
    const STAGE: Stage = Stage::Requests;

    fn columns(&self, _ctx: &Ctx) -> Vec<Col> {
        vec![Col::Status]
    }

    fn init(&self, _ctx: &Ctx, _prior: &States) -> State {
        State::default()
    }

    fn update(&self, ctx: &Ctx, state: &mut State, rows: &Rows<'_>) {
        state.update(ctx, rows)
    }

    fn merge(&self, state: &mut State, other: State) {
        state.sides[0].merge(&other.sides[0]);
        state.sides[1].merge(&other.sides[1]);
        state.status_missing += other.status_missing;
        state.status_invalid += other.status_invalid;
        for (k, rate) in other.minutes {
            state.minutes.entry(k).or_default().merge(&rate);
        }
    }
}

impl State {
    fn update(&mut self, ctx: &Ctx, rows: &Rows<'_>) {
        let batch = rows.batch;
        let Some(status) = batch.int(Col::Status) else {
            return;
        };
        let values = status.values();
        let ts = batch.ts();
        let mut minutes = ctx
            .plan
            .flip_at()
            .map(|flip| MinuteRates::after_flip(ts, flip));
        for i in 0..batch.len() {
            if status.is_null(i) {
                self.status_missing += 1;
                continue;
            }
            if !(100..=599).contains(&values[i]) {
                self.status_invalid += 1;
                continue;
            }
            let err = is_error(values[i]);
            let side = rows.side[i];
            if side != SIDE_NONE {
                self.sides[side as usize - 1].add(err);
            }
            if let Some(m) = minutes.as_mut() {
                m.add(&mut self.minutes, ts[i], err);
            }
        }
        if let Some(m) = minutes {
            m.finish(&mut self.minutes);
        }
    }

    /// The smallest minute k from which every non-empty minute is under `max`; `None` when the last
    /// non-empty minute is not (the service never recovered within the data).
    pub(crate) fn recovery_minutes(&self, max: f64) -> Option<i64> {
        crate::stats::settled_from(&self.minutes, max)
    }
}

fn finish(f: &Finish<'_>) -> CheckResult {
    let ctx = f.ctx;
    let partial = f.states.get::<ErrorsKernel>();
    let counts = f.states.get::<RowsKernel>();
    if !ctx.has(Col::Status) {
        return CheckResult::skip(INFO.id, "the requests have no `status` column");
    }
    let t = &ctx.thresholds;
    let recovery = partial.recovery_minutes(t.error_rate_max);
    let baseline = partial.sides[0].value();
    let post = partial.sides[1].value();
    let worst_minute = partial
        .minutes
        .iter()
        .filter_map(|(k, r)| r.value().map(|v| (v, *k)))
        .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
    let level = ctx.statistics.level();
    let ci = |i: usize| (partial.sides[i].total > 0).then(|| partial.sides[i].interval(level));
    let (b, p) = (&partial.sides[0], &partial.sides[1]);
    let rows: Vec<IntervalRow> = [
        ("baseline error rate", baseline, ci(0), b),
        ("post error rate", post, ci(1), p),
    ]
    .into_iter()
    .filter_map(|(label, estimate, ci, rate)| {
        Some(IntervalRow {
            label: label.to_string(),
            estimate: estimate?,
            ci: ci?,
            n: format!(
                "{} of {}",
                crate::words::count(rate.hits),
                crate::words::count(rate.total)
            ),
            criterion: None,
            decision: None,
        })
    })
    .collect();
    let result = |status, summary: String| {
        let mut r = CheckResult::new(INFO.id, status, summary)
            .metric(
                "recovery_minutes",
                Metric::MaybeCount(recovery.map(|k| k as u64)),
            )
            .metric("baseline_error_rate", Metric::Number(baseline))
            .metric("post_error_rate", Metric::Number(post))
            .metric("baseline_error_rate_ci", criteria::ci_metric(ci(0)))
            .metric("post_error_rate_ci", criteria::ci_metric(ci(1)))
            .metric("n_baseline", Metric::Count(b.total))
            .metric("n_post", Metric::Count(p.total))
            .metric("errors_baseline", Metric::Count(b.hits))
            .metric("errors_post", Metric::Count(p.hits))
            .metric("error_rate_max", Metric::Number(Some(t.error_rate_max)))
            .metric(
                "recovery_within_minutes",
                Metric::Count(t.recovery_within_minutes as u64),
            )
            .metric(
                "minutes_observed",
                Metric::Count(partial.minutes.len() as u64),
            )
            .metric(
                "peak_minute_error_rate",
                Metric::Number(worst_minute.map(|w| w.0)),
            )
            .metric(
                "peak_minute",
                Metric::MaybeCount(worst_minute.map(|w| w.1 as u64)),
            )
            .metric("status_missing", Metric::Count(partial.status_missing))
            .metric("status_invalid", Metric::Count(partial.status_invalid))
            .cells(
                match recovery {
                    Some(k) => format!(
                        "recovered after {k} min (post {})",
                        post.map(pct).unwrap_or("n/a".into())
                    ),
                    None => "never recovered".to_string(),
                },
                baseline.map(pct).unwrap_or_else(|| "n/a".into()),
                format!(
                    "≤ {} min, rate < {}",
                    t.recovery_within_minutes,
                    pct(t.error_rate_max)
                ),
            );
        r.intervals = rows.clone();
        r
    };
    if let Some(reason) = counts.too_few(ctx) {
        return result(Status::Inconclusive, reason);
    }
    if partial.minutes.is_empty() {
        return result(
            Status::Inconclusive,
            "no request with a status after the flip".to_string(),
        );
    }
    match recovery {
        None => result(
            Status::Fail,
            format!(
                "the error rate is still at or over {} in the last minute of data (peak {} at minute {})",
                pct(t.error_rate_max),
                worst_minute.map(|w| pct(w.0)).unwrap_or_default(),
                worst_minute.map(|w| w.1).unwrap_or_default()
            ),
        ),
        Some(k) if k > t.recovery_within_minutes as i64 => result(
            Status::Fail,
            format!(
                "errors fell under {} only {k} min after the flip (allowed: {} min)",
                pct(t.error_rate_max),
                t.recovery_within_minutes
            ),
        ),
        Some(k) => result(
            Status::Pass,
            format!(
                "errors under {} from minute {k} after the flip on (post window {}, baseline {})",
                pct(t.error_rate_max),
                num(post.map(|v| v * 100.0), 2) + "%",
                num(baseline.map(|v| v * 100.0), 2) + "%"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(minutes: &[(i64, u64, u64)]) -> State {
        let mut p = State::default();
        for &(k, hits, total) in minutes {
            p.minutes.insert(k, Rate { hits, total });
        }
        p
    }

    #[test]
    fn recovery_is_the_minute_after_the_last_bad_one() {
        let p = with(&[(0, 50, 100), (1, 10, 100), (2, 0, 100), (3, 0, 100)]);
        assert_eq!(p.recovery_minutes(0.005), Some(2));
        // An empty minute between the last bad and the first good minute counts as recovered.
        let p = with(&[(0, 50, 100), (2, 0, 100)]);
        assert_eq!(p.recovery_minutes(0.005), Some(1));
        assert_eq!(
            with(&[(0, 0, 100), (1, 0, 100)]).recovery_minutes(0.005),
            Some(0)
        );
        assert_eq!(
            with(&[(0, 0, 100), (1, 1, 100)]).recovery_minutes(0.005),
            None
        );
        // A rate equal to the threshold is not under it.
        assert_eq!(
            with(&[(0, 1, 200), (1, 0, 200)]).recovery_minutes(0.005),
            Some(1)
        );
    }
}
