//! `backpressure`: the 429 storm subsided after the flip, queue waits are back at the baseline,
//! and no circuit breaker is still open at the end of the data.

use std::collections::BTreeMap;

use arrow::array::Array;
use serde::{Deserialize, Serialize};

use super::rows::{RowsKernel, ROWS};
use super::Lever;
use super::{num, pct, CheckInfo, CheckResult, CheckSpec, Finish, Metric, Status, ROLLBACK};
use crate::columns::{Col, Table};
use crate::engine::{Kernel, Rows, Stage, States, SIDE_NONE};
use crate::plan::Ctx;
use crate::stats::{settled_from, MinuteRates, Quantiles, Rate};
use crate::time::{Micros, MICROS_PER_SECOND};
use crate::words::plural;

pub(crate) static CHECK: CheckSpec = CheckSpec {
    info: &INFO,
    kernels: &[&BACKPRESSURE, &ROWS],
    finish,
    evidence: &[],
};

pub(crate) static INFO: CheckInfo = CheckInfo {
    id: "backpressure",
    title: "Backpressure: 429 storms, queue waits, breakers",
    modes: ROLLBACK,
    what_it_checks: "The share of status 429 in the baseline and post windows, and per minute k after \
        the flip (minute k = [flip_at + k min, flip_at + (k+1) min)): a minute whose 429 share is at \
        least storm_429_rate is a storm minute, and the storm subsided at the smallest k from which \
        every non-empty minute is below it. The p95 of queue_wait_ms in both windows and its ratio. \
        The share of post-window requests whose breaker_state is open or half_open, and the \
        requests in the last 60 s of the data whose breaker is still open or half open.",
    why_it_matters: "The rollback page warns of 429 storms that do not subside with backoff and of \
        throttling left on while the system cools: error rates can look fine while clients are being \
        turned away or queued. A breaker still open at the end means traffic is still shed.",
    what_fails_it: "It fails when the storm never subsided (storm_subsided_minute is null) or subsided \
        after recovery_within_minutes, or when queue_wait_p95_ratio > queue_wait_p95_ratio_max; it \
        warns when breaker_open_at_end > 0. Inconclusive when a window has fewer than min_requests \
        requests. It skips when the requests have neither queue_wait_ms nor breaker_state.",
    columns_it_needs: "ts; status for 429s, queue_wait_ms, breaker_state (closed, open, half_open).",
    figures: &[
        ("baseline_429_rate", "Requests with status 429 / requests with a status, in the baseline window."),
        ("post_429_rate", "The same in the post window."),
        ("storm_minutes", "Minutes k ≥ 0 after flip_at whose share of 429 is at least storm_429_rate."),
        ("storm_subsided_minute", "The smallest k such that every non-empty minute from k to the end of data is below storm_429_rate; null when never."),
        ("baseline_queue_wait_p95_ms", "Nearest-rank p95 of queue_wait_ms in the baseline window."),
        ("post_queue_wait_p95_ms", "The same in the post window."),
        ("queue_wait_p95_ratio", "post / baseline queue-wait p95."),
        ("post_breaker_open_share", "Post-window requests whose breaker_state is open or half_open / post-window requests with a breaker_state."),
        ("breaker_open_at_end", "Requests with ts > end of data − 60 s whose breaker_state is open or half_open."),
        ("breaker_unknown", "breaker_state values other than closed, open, half_open (not counted as open)."),
    ],
    remediation: "switch throttling off once the system has cooled, cap retries with backoff, and close the breakers deliberately",
    region_column: None,
    impact: Some(|status, m, _| {
        if status != Status::Fail && status != Status::Warn {
            return None;
        }
        let storms = m.get("storm_minutes").and_then(Metric::as_count).unwrap_or(0);
        let open = m.get("breaker_open_at_end").and_then(Metric::as_count).unwrap_or(0);
        match (storms, open) {
            (0, 0) => None,
            (s, 0) => Some(format!(
                "Clients were throttled (429) in {} after the flip.",
                plural(s, "storm minute", "storm minutes")
            )),
            (_, o) => Some(format!(
                "{} at the end of the data still met an open circuit breaker.",
                plural(o, "request", "requests")
            )),
        }
    }),
    events: None,
    lever: Some(|_| Some(Lever::Degrade)),
};

/// The end-of-data window for open breakers.
const TAIL: Micros = 60 * MICROS_PER_SECOND;

#[derive(Serialize, Deserialize)]
pub(crate) struct State {
    /// 429 share of the baseline and post windows.
    sides: [Rate; 2],
    /// Minute k ≥ 0 after the flip → 429 share.
    minutes: BTreeMap<i64, Rate>,
    queue: [Quantiles; 2],
    post_breaker: Rate,
    breaker_unknown: u64,
    max_ts: Option<Micros>,
    /// Open-breaker requests near the end of what was seen: ts → count; pruned to ts > `max_ts`
    /// − 60 s on every update and merge (which is exactly what `open_at_end` sums).
    tail: BTreeMap<Micros, u64>,
}

impl State {
    fn prune(&mut self) {
        if let Some(max) = self.max_ts {
            self.tail = self.tail.split_off(&(max - TAIL + 1));
        }
    }

    fn open_at_end(&self) -> u64 {
        let Some(max) = self.max_ts else { return 0 };
        self.tail.range(max - TAIL + 1..).map(|(_, n)| *n).sum()
    }
}

pub(crate) struct BackpressureKernel;
pub(crate) static BACKPRESSURE: BackpressureKernel = BackpressureKernel;

/// Open (or half open) = 1, closed = 0, another value = 2, missing = 3.
pub(crate) fn breaker(v: Option<&str>) -> u8 {
    match v.map(|s| s.trim().to_ascii_lowercase().replace(['-', ' '], "_")) {
        None => 3,
        Some(s) if s == "open" || s == "half_open" || s == "halfopen" => 1,
        Some(s) if s == "closed" => 0,
        Some(_) => 2,
    }
}

impl Kernel for BackpressureKernel {
    type State = State;
    const NAME: &'static str = "backpressure";
    const TABLE: Table = Table::Requests;
    const STAGE: Stage = Stage::Requests;

    fn columns(&self, _ctx: &Ctx) -> Vec<Col> {
        vec![Col::Status, Col::QueueWaitMs, Col::BreakerState]
    }

    fn init(&self, _ctx: &Ctx, _prior: &States) -> State {
        State {
            sides: [Rate::default(), Rate::default()],
            minutes: BTreeMap::new(),
            queue: [Quantiles::latency_ms(), Quantiles::latency_ms()],
            post_breaker: Rate::default(),
            breaker_unknown: 0,
            max_ts: None,
            tail: BTreeMap::new(),
        }
    }

    fn update(&self, ctx: &Ctx, state: &mut State, rows: &Rows<'_>) {
        let Some(flip) = ctx.plan.flip_at() else {
            return;
        };
        let batch = rows.batch;
        let ts = batch.ts();
        if let Some(hi) = ts.iter().copied().max() {
            state.max_ts = Some(state.max_ts.map_or(hi, |m| m.max(hi)));
        }
        if let Some(status) = batch.int(Col::Status) {
            let mut minutes = MinuteRates::after_flip(ts, flip);
            for i in 0..batch.len() {
                if !status.is_valid(i) || !(100..=599).contains(&status.value(i)) {
                    continue;
                }
                let throttled = status.value(i) == 429;
                let side = rows.side[i];
                if side != SIDE_NONE {
                    state.sides[side as usize - 1].add(throttled);
                }
                minutes.add(&mut state.minutes, ts[i], throttled);
            }
            minutes.finish(&mut state.minutes);
        }
        if let Some(q) = batch.float(Col::QueueWaitMs) {
            for i in 0..batch.len() {
                let side = rows.side[i];
                if side != SIDE_NONE && q.is_valid(i) && q.value(i) >= 0.0 {
                    state.queue[side as usize - 1].record(q.value(i));
                }
            }
        }
        if let Some(b) = batch.str(Col::BreakerState) {
            let states = b.map_rows(breaker);
            let cutoff = state.max_ts.unwrap_or(Micros::MIN) - TAIL;
            for i in 0..batch.len() {
                let s = states[i];
                state.breaker_unknown += (s == 2) as u64;
                if s > 1 {
                    continue;
                }
                if rows.side[i] == crate::engine::SIDE_SUBJECT {
                    state.post_breaker.add(s == 1);
                }
                if s == 1 && ts[i] > cutoff {
                    *state.tail.entry(ts[i]).or_default() += 1;
                }
            }
            state.prune();
        }
    }

    fn merge(&self, state: &mut State, other: State) {
        for i in 0..2 {
            state.sides[i].merge(&other.sides[i]);
            state.queue[i].merge(&other.queue[i]);
        }
        for (k, r) in other.minutes {
            state.minutes.entry(k).or_default().merge(&r);
        }
        state.post_breaker.merge(&other.post_breaker);
        state.breaker_unknown += other.breaker_unknown;
        state.max_ts = [state.max_ts, other.max_ts].into_iter().flatten().max();
        for (t, n) in other.tail {
            *state.tail.entry(t).or_default() += n;
        }
        state.prune();
    }
}

fn finish(f: &Finish<'_>) -> CheckResult {
    let ctx = f.ctx;
    let (status_col, queue_col, breaker_col) = (
        ctx.has(Col::Status),
        ctx.has(Col::QueueWaitMs),
        ctx.has(Col::BreakerState),
    );
    // It runs when the logs carry backpressure signals; on logs with only a status it skips, so
    // that an incident audited before this check existed keeps its verdict.
    if !queue_col && !breaker_col {
        return CheckResult::skip(
            INFO.id,
            "the requests have no `queue_wait_ms` or `breaker_state` column",
        );
    }
    let s = f.states.get::<BackpressureKernel>();
    let counts = f.states.get::<RowsKernel>();
    let t = &ctx.thresholds;
    let storm_minutes = s
        .minutes
        .values()
        .filter(|r| r.value().is_some_and(|v| v >= t.storm_429_rate))
        .count() as u64;
    let subsided = settled_from(&s.minutes, t.storm_429_rate);
    let q95 = |i: usize| s.queue[i].quantile(950);
    let ratio = match (q95(1), q95(0)) {
        (Some(p), Some(b)) if b > 0.0 => Some(p / b),
        _ => None,
    };
    let open_at_end = s.open_at_end();
    let mut status = Status::Pass;
    let mut parts = Vec::new();
    if status_col {
        match subsided {
            None => {
                status = Status::Fail;
                parts.push(format!(
                    "the 429 share was still at or over {} at the end of the data",
                    pct(t.storm_429_rate)
                ));
            }
            Some(k) if k > i64::from(t.recovery_within_minutes) => {
                status = Status::Fail;
                parts.push(format!(
                    "the 429 storm subsided only {k} min after the flip (allowed: {} min)",
                    t.recovery_within_minutes
                ));
            }
            Some(k) => parts.push(format!(
                "429s under {} from minute {k} after the flip on ({})",
                pct(t.storm_429_rate),
                plural(storm_minutes, "storm minute", "storm minutes")
            )),
        }
    }
    if let Some(r) = ratio {
        if r > t.queue_wait_p95_ratio_max {
            status = Status::Fail;
            parts.push(format!(
                "queue-wait p95 ×{r:.2} the baseline (max ×{})",
                t.queue_wait_p95_ratio_max
            ));
        } else {
            parts.push(format!("queue-wait p95 ×{r:.2} the baseline"));
        }
    }
    if open_at_end > 0 {
        status = status.worst(Status::Warn);
        parts.push(format!(
            "{} in the last 60 s of data met an open breaker: throttling is still on",
            plural(open_at_end, "request", "requests")
        ));
    } else if breaker_col {
        parts.push("no breaker open at the end of the data".to_string());
    }
    let min = t.min_requests;
    if status != Status::Fail && (counts.side_rows[0] < min || counts.side_rows[1] < min) {
        status = Status::Inconclusive;
        parts.push(format!(
            "too few requests to judge ({} baseline, {} post; min_requests {min})",
            counts.side_rows[0], counts.side_rows[1]
        ));
    }
    CheckResult::new(INFO.id, status, parts.join("; "))
        .metric("baseline_429_rate", Metric::Number(s.sides[0].value()))
        .metric("post_429_rate", Metric::Number(s.sides[1].value()))
        .metric("storm_minutes", Metric::Count(storm_minutes))
        .metric(
            "storm_subsided_minute",
            Metric::MaybeCount(subsided.map(|k| k as u64)),
        )
        .metric("baseline_queue_wait_p95_ms", Metric::Number(q95(0)))
        .metric("post_queue_wait_p95_ms", Metric::Number(q95(1)))
        .metric("queue_wait_p95_ratio", Metric::Number(ratio))
        .metric(
            "post_breaker_open_share",
            Metric::Number(s.post_breaker.value()),
        )
        .metric("breaker_open_at_end", Metric::Count(open_at_end))
        .metric("breaker_unknown", Metric::Count(s.breaker_unknown))
        .cells(
            format!(
                "storm subsided at {}, queue p95 ×{}, {} open at end",
                subsided.map_or("never".to_string(), |k| format!("+{k} min")),
                num(ratio, 2),
                open_at_end
            ),
            format!("429 {}", s.sides[0].value().map_or("n/a".to_string(), pct)),
            format!(
                "storm ≤ {} min, queue ratio ≤ {}, 0 open (warn)",
                t.recovery_within_minutes, t.queue_wait_p95_ratio_max
            ),
        )
}
