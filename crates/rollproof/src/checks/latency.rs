//! `latency`: p95 (and p99) latency of the subject side against the baseline.

use arrow::array::Array;
use serde::{Deserialize, Serialize};

use super::criteria::{self, Criterion};
use super::rows::{RowsKernel, ROWS};
use super::Lever;
use super::{count, num, CheckInfo, CheckResult, CheckSpec, Finish, Metric, Status, BOTH};
use crate::columns::{Col, Table};
use crate::engine::{Kernel, Rows, Stage, States, SIDE_NONE};
use crate::plan::{Ctx, Mode};
use crate::stats::intervals::Bound;
use crate::stats::{Ci, Quantiles};

pub(crate) static CHECK: CheckSpec = CheckSpec {
    info: &INFO,
    kernels: &[&LATENCY, &ROWS],
    finish,
    evidence: &[],
};

pub(crate) static INFO: CheckInfo = CheckInfo {
    id: "latency",
    title: "Latency against the baseline",
    modes: BOTH,
    what_it_checks: "p50, p95 and p99 latency of the baseline (window, or stable arm) and of the post window \
        (or canary arm), nearest-rank quantiles from HDR histograms within 1% of the exact value, and the \
        ratios post/baseline.",
    why_it_matters: "A rollback that restores correctness but leaves the service slower (cold caches, a \
        leftover feature flag, an index rebuilt without its tuning) is not back at baseline; a canary that \
        is slower must not graduate.",
    what_fails_it: "p95_ratio > p95_latency_ratio_max; in canary mode also p99_ratio > p99_latency_ratio_max. \
        Inconclusive when a side has fewer than min_requests requests. With [statistics] method = \"interval\" each criterion judges the figure's interval instead: past the threshold fails, within passes, across it is inconclusive.",
    columns_it_needs: "ts, latency_ms (or a duration mapped with a unit).",
    figures: &[
        ("baseline_p50_ms", "Nearest-rank p50 of latency_ms in the baseline window (canary: baseline arm), within 1%."),
        ("baseline_p95_ms", "The same at p95."),
        ("baseline_p99_ms", "The same at p99."),
        ("post_p50_ms", "Rollback: p50 in the post window (canary mode names these canary_p50_ms …)."),
        ("post_p95_ms", "Rollback: p95 in the post window."),
        ("post_p99_ms", "Rollback: p99 in the post window."),
        ("canary_p50_ms", "Canary: p50 of the canary arm."),
        ("canary_p95_ms", "Canary: p95 of the canary arm."),
        ("canary_p99_ms", "Canary: p99 of the canary arm."),
        ("p95_ratio", "post (or canary) p95 / baseline p95."),
        ("p99_ratio", "post (or canary) p99 / baseline p99."),
        ("baseline_samples", "Latency values in the baseline."),
        ("post_samples", "Rollback: latency values in the post window."),
        ("canary_samples", "Canary: latency values of the canary arm."),
        ("negative_latency_rejected", "Negative latency values (not counted)."),
        ("p95_ratio_ci", "Interval of p95_ratio at [statistics] confidence (`rollproof explain statistics`): [low, high], an unbounded end null."),
        ("p99_ratio_ci", "The same for p99_ratio."),
        ("n_baseline", "Latency values in the baseline: the sample size of its intervals."),
        ("n_post", "Rollback: latency values in the post window."),
        ("n_canary", "Canary: latency values of the canary arm."),
    ],
    remediation: "compare the slow path with the baseline (cold caches, leftover flags, index tuning)",
    region_column: None,
    impact: Some(|status, m, mode| {
        let ratio = |k: &str| m.get(k).and_then(Metric::as_number);
        let p95 = ratio("p95_ratio")?;
        match mode {
            Mode::Canary => Some(format!(
                "Canary p95 latency was ×{p95:.2} the stable arm's{}.",
                ratio("p99_ratio").map(|r| format!(" (p99 ×{r:.2})")).unwrap_or_default()
            )),
            Mode::Rollback => (status != Status::Pass && status != Status::Skip).then(|| {
                format!("After the flip, p95 latency was still ×{p95:.2} the baseline.")
            }),
        }
    }),
    events: None,
    lever: Some(|_| Some(Lever::Degrade)),
};

#[derive(Serialize, Deserialize)]
pub(crate) struct State {
    sides: [Quantiles; 2],
    negative: u64,
}

/// Latency quantiles of the two sides.
pub(crate) struct LatencyKernel;
pub(crate) static LATENCY: LatencyKernel = LatencyKernel;

impl Kernel for LatencyKernel {
    type State = State;
    const NAME: &'static str = "latency";
    const TABLE: Table = Table::Requests;
    const STAGE: Stage = Stage::Requests;

    fn columns(&self, _ctx: &Ctx) -> Vec<Col> {
        vec![Col::LatencyMs]
    }

    fn init(&self, _ctx: &Ctx, _prior: &States) -> State {
        State {
            sides: [Quantiles::latency_ms(), Quantiles::latency_ms()],
            negative: 0,
        }
    }

    fn update(&self, _ctx: &Ctx, state: &mut State, rows: &Rows<'_>) {
        let Some(latency) = rows.batch.float(Col::LatencyMs) else {
            return;
        };
        let values = latency.values();
        for i in 0..rows.len() {
            let side = rows.side[i];
            if side == SIDE_NONE || latency.is_null(i) {
                continue;
            }
            let v = values[i];
            if v < 0.0 {
                state.negative += 1;
                continue;
            }
            state.sides[side as usize - 1].record(v);
        }
    }

    fn merge(&self, state: &mut State, other: State) {
        state.sides[0].merge(&other.sides[0]);
        state.sides[1].merge(&other.sides[1]);
        state.negative += other.negative;
    }
}

impl State {
    /// Each side's latency distribution as (quantile, ms) points, for the HTML chart: every
    /// percent, and 99.5% and 99.9%.
    pub(crate) fn curves(&self) -> [Vec<(f64, f64)>; 2] {
        let curve = |q: &Quantiles| -> Vec<(f64, f64)> {
            (1..=99u64)
                .map(|p| p * 10)
                .chain([995, 999])
                .filter_map(|permille| q.quantile(permille).map(|v| (permille as f64 / 1000.0, v)))
                .collect()
        };
        [curve(&self.sides[0]), curve(&self.sides[1])]
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn finish(f: &Finish<'_>) -> CheckResult {
    let ctx = f.ctx;
    let partial = f.states.get::<LatencyKernel>();
    let counts = f.states.get::<RowsKernel>();
    if !ctx.has(Col::LatencyMs) {
        return CheckResult::skip(INFO.id, "the requests have no `latency_ms` column");
    }
    let t = &ctx.thresholds;
    let subject = ctx.plan.subject();
    let q = |side: usize, p: u64| partial.sides[side].quantile(p);
    let (b50, b95, b99) = (q(0, 500), q(0, 950), q(0, 990));
    let (s50, s95, s99) = (q(1, 500), q(1, 950), q(1, 990));
    let p95_ratio = ratio(s95, b95);
    let p99_ratio = ratio(s99, b99);
    let mut result = CheckResult::new(INFO.id, Status::Pass, String::new())
        .metric("baseline_p50_ms", Metric::Number(b50))
        .metric("baseline_p95_ms", Metric::Number(b95))
        .metric("baseline_p99_ms", Metric::Number(b99))
        .metric(&format!("{subject}_p50_ms"), Metric::Number(s50))
        .metric(&format!("{subject}_p95_ms"), Metric::Number(s95))
        .metric(&format!("{subject}_p99_ms"), Metric::Number(s99))
        .metric("p95_ratio", Metric::Number(p95_ratio))
        .metric("p99_ratio", Metric::Number(p99_ratio))
        .metric("baseline_samples", Metric::Count(partial.sides[0].len()))
        .metric(
            &format!("{subject}_samples"),
            Metric::Count(partial.sides[1].len()),
        )
        .metric("negative_latency_rejected", Metric::Count(partial.negative))
        .cells(
            format!("p95 {} ms (×{})", num(s95, 1), num(p95_ratio, 2)),
            format!("p95 {} ms", num(b95, 1)),
            match ctx.plan.mode() {
                Mode::Rollback => format!("p95 ratio ≤ {}", t.p95_latency_ratio_max),
                Mode::Canary => format!(
                    "p95 ratio ≤ {}, p99 ratio ≤ {}",
                    t.p95_latency_ratio_max, t.p99_latency_ratio_max
                ),
            },
        )
        .sample_size(format!(
            "{} / {}",
            partial.sides[0].len(),
            partial.sides[1].len()
        ));
    let stats = &ctx.statistics;
    let level = stats.level();
    let (base, post) = (&partial.sides[0], &partial.sides[1]);
    let ratio_ci = |p: u64| {
        (base.len() > 0 && post.len() > 0).then(|| {
            Ci::ratio(
                post.interval(p, level.halved()),
                base.interval(p, level.halved()),
            )
        })
    };
    let (p95_ci, p99_ci) = (ratio_ci(950), ratio_ci(990));
    let (n_base, n_post) = (base.len(), post.len());
    let n = format!("n = {} / {}", count(n_base), count(n_post));
    result = result
        .metric("p95_ratio_ci", criteria::ci_metric(p95_ci))
        .metric("p99_ratio_ci", criteria::ci_metric(p99_ci))
        .metric("n_baseline", Metric::Count(n_base))
        .metric(&format!("n_{subject}"), Metric::Count(n_post));
    if let Some(reason) = counts.too_few(ctx) {
        result.status = Status::Inconclusive;
        result.summary = reason;
        return result;
    }
    let (Some(p95r), Some(b95), Some(s95)) = (p95_ratio, b95, s95) else {
        result.status = Status::Inconclusive;
        result.summary = "no latency on one side, or a baseline p95 of 0 ms".to_string();
        return result;
    };
    let mut criteria = vec![Criterion {
        label: "p95 ratio".to_string(),
        estimate: p95r,
        ci: p95_ci.unwrap_or(Ci::UNBOUNDED),
        bound: Bound::AtMost,
        threshold: t.p95_latency_ratio_max,
        n: n_post,
        fails: true,
    }];
    if ctx.plan.mode() == Mode::Canary {
        if let Some(p99r) = p99_ratio {
            criteria.push(Criterion {
                label: "p99 ratio".to_string(),
                estimate: p99r,
                ci: p99_ci.unwrap_or(Ci::UNBOUNDED),
                bound: Bound::AtMost,
                threshold: t.p99_latency_ratio_max,
                n: n_post,
                fails: true,
            });
        }
    }
    let texts = criteria::apply(&mut result, &criteria, stats, &n, |c| {
        let (s, b) = if c.label == "p95 ratio" {
            (Some(s95), Some(b95))
        } else {
            (s99, b99)
        };
        format!(
            "{} {} ms is ×{:.2} the baseline {} ms (max ×{}){}",
            &c.label[..3],
            num(s, 1),
            c.estimate,
            num(b, 1),
            c.threshold,
            if stats.interval() {
                format!(", {}", criteria::interval_words(c.ci, stats, Some(2)))
            } else {
                String::new()
            }
        )
    });
    if texts.is_empty() {
        result.summary = format!(
            "{subject} p95 {s95:.1} ms is ×{p95r:.2} the baseline {b95:.1} ms (max ×{}){}",
            t.p95_latency_ratio_max,
            if stats.interval() {
                format!(
                    ", {} within it",
                    criteria::interval_words(criteria[0].ci, stats, Some(2))
                )
            } else {
                String::new()
            }
        );
    } else {
        result.summary = texts.join("; ");
    }
    result
}
