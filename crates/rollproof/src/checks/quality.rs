//! `quality`: ΔS p95 drift, coverage and λ flip rate of the subject side against the baseline.

use arrow::array::Array;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::criteria::{self, Criterion};
use super::rows::{RowsKernel, ROWS};
use super::Lever;
use super::{count, num, pct, CheckInfo, CheckResult, CheckSpec, Finish, Metric, Status, BOTH};
use crate::columns::{Col, Table};
use crate::engine::{Kernel, Rows, Stage, States, SIDE_NONE};
use crate::plan::Ctx;
use crate::stats::intervals::Bound;
use crate::stats::{Ci, ExactSum, Quantiles, Rate};

pub(crate) static CHECK: CheckSpec = CheckSpec {
    info: &INFO,
    kernels: &[&QUALITY, &ROWS],
    finish,
    evidence: &[],
};

pub(crate) static INFO: CheckInfo = CheckInfo {
    id: "quality",
    title: "Answer quality: ΔS, coverage, λ",
    modes: BOTH,
    what_it_checks: "ΔS p95 (semantic distance between question and retrieved context, 1 − cos) of both sides and \
        its drift (post − baseline); mean coverage of both sides; the λ flip rate, the share of requests whose \
        λ state is not convergent (states: convergent/→, divergent/←, recursive/<>, chaotic/×).",
    why_it_matters: "An LLM/RAG service can answer fast and without errors and still answer worse: the wrong \
        index or prompt pack shows up as larger ΔS, lower coverage and more divergent reasoning. A rollback \
        is done when quality is back at the pinned baseline.",
    what_fails_it: "Fails when delta_s_p95_drift > delta_s_p95_drift_max, post coverage mean < coverage_min, \
        baseline − post coverage > coverage_drop_max, or post λ flip rate > lambda_flip_rate_max; warns when \
        the drift > delta_s_p95_drift_warn, or when values were rejected (ΔS or coverage outside [0, 1], \
        unknown λ states — counted, never silently taken as convergent). Inconclusive when a side has fewer \
        than min_requests requests. With [statistics] method = \"interval\" each criterion judges the figure's interval instead: past the threshold fails, within passes, across it is inconclusive.",
    columns_it_needs: "ts and any of delta_s, coverage, lambda_state (each figure needs its own column).",
    figures: &[
        ("baseline_delta_s_p95", "Nearest-rank p95 of delta_s in the baseline (values in [0, 1])."),
        ("post_delta_s_p95", "Rollback: the same in the post window (canary: canary_delta_s_p95)."),
        ("canary_delta_s_p95", "Canary: the same on the canary arm."),
        ("delta_s_p95_drift", "post (or canary) ΔS p95 − baseline ΔS p95."),
        ("baseline_coverage_mean", "Mean coverage in the baseline (values in [0, 1])."),
        ("post_coverage_mean", "Rollback: the same in the post window."),
        ("canary_coverage_mean", "Canary: the same on the canary arm."),
        ("baseline_lambda_flip_rate", "Share of baseline requests with a λ state whose state is not convergent."),
        ("post_lambda_flip_rate", "Rollback: the same in the post window."),
        ("canary_lambda_flip_rate", "Canary: the same on the canary arm."),
        ("lambda_unknown", "Requests whose λ state is none of the known words or symbols (not counted)."),
        ("lambda_unknown_values", "Up to 20 of those unknown values (the smallest, sorted) → their counts."),
        ("delta_s_out_of_range", "ΔS values outside [0, 1] (not counted)."),
        ("coverage_out_of_range", "Coverage values outside [0, 1] (not counted)."),
        ("delta_s_p95_drift_ci", "Interval of delta_s_p95_drift at [statistics] confidence: [low, high]."),
        ("baseline_coverage_mean_ci", "Interval of baseline_coverage_mean."),
        ("post_coverage_mean_ci", "Rollback: interval of post_coverage_mean (canary: canary_coverage_mean_ci)."),
        ("canary_coverage_mean_ci", "Canary: interval of canary_coverage_mean."),
        ("baseline_lambda_flip_rate_ci", "Interval of baseline_lambda_flip_rate."),
        ("post_lambda_flip_rate_ci", "Rollback: interval of post_lambda_flip_rate."),
        ("canary_lambda_flip_rate_ci", "Canary: interval of canary_lambda_flip_rate."),
        ("n_baseline", "Requests in the baseline (each figure uses the rows with its own column set)."),
        ("n_post", "Rollback: requests in the post window."),
        ("n_canary", "Canary: requests of the canary arm."),
        ("lambda_flips_baseline", "Baseline requests whose λ state is not convergent: the flip rate's numerator."),
        ("lambda_flips_post", "Rollback: the same in the post window."),
        ("lambda_flips_canary", "Canary: the same on the canary arm."),
    ],
    remediation: "compare retrieval and prompts with the baseline: ΔS, coverage and λ did not return",
    region_column: None,
    impact: None,
    events: None,
    lever: Some(|_| Some(Lever::RevertPromptOrModel)),
};

/// λ states the contract knows, by their words and symbols.
pub(crate) fn lambda_code(state: &str) -> Option<bool> {
    // Some(true): convergent; Some(false): a known non-convergent state; None: unknown.
    match state.trim() {
        "→" => Some(true),
        "←" | "<>" | "×" => Some(false),
        s if s.eq_ignore_ascii_case("convergent") => Some(true),
        s if s.eq_ignore_ascii_case("divergent")
            || s.eq_ignore_ascii_case("recursive")
            || s.eq_ignore_ascii_case("chaotic") =>
        {
            Some(false)
        }
        _ => None,
    }
}

const UNKNOWN_KEPT: usize = 20;

#[derive(Serialize, Deserialize)]
pub(crate) struct State {
    delta_s: [Quantiles; 2],
    coverage: [ExactSum; 2],
    lambda_flips: [Rate; 2],
    lambda_unknown: u64,
    /// A few distinct unknown λ values, for the message.
    unknown_values: BTreeMap<String, u64>,
    delta_s_out_of_range: u64,
    coverage_out_of_range: u64,
}

/// ΔS quantiles, coverage sums and λ flip rates of the two sides.
pub(crate) struct QualityKernel;
pub(crate) static QUALITY: QualityKernel = QualityKernel;

impl Kernel for QualityKernel {
    type State = State;
    const NAME: &'static str = "quality";
    const TABLE: Table = Table::Requests;
    const STAGE: Stage = Stage::Requests;

    fn columns(&self, _ctx: &Ctx) -> Vec<Col> {
        vec![Col::DeltaS, Col::Coverage, Col::LambdaState]
    }

    fn init(&self, _ctx: &Ctx, _prior: &States) -> State {
        State {
            delta_s: [Quantiles::unit_interval(), Quantiles::unit_interval()],
            coverage: [ExactSum::default(); 2],
            lambda_flips: [Rate::default(); 2],
            lambda_unknown: 0,
            unknown_values: BTreeMap::new(),
            delta_s_out_of_range: 0,
            coverage_out_of_range: 0,
        }
    }

    fn update(&self, _ctx: &Ctx, state: &mut State, rows: &Rows<'_>) {
        state.update(rows)
    }

    fn merge(&self, state: &mut State, other: State) {
        state.merge(other)
    }
}

impl State {
    fn update(&mut self, rows: &Rows<'_>) {
        let batch = rows.batch;
        let sides = &rows.side;
        if let Some(ds) = batch.float(Col::DeltaS) {
            let values = ds.values();
            for i in 0..batch.len() {
                if sides[i] == SIDE_NONE || ds.is_null(i) {
                    continue;
                }
                let v = values[i];
                if !(0.0..=1.0).contains(&v) {
                    self.delta_s_out_of_range += 1;
                    continue;
                }
                self.delta_s[sides[i] as usize - 1].record(v);
            }
        }
        if let Some(cov) = batch.float(Col::Coverage) {
            let values = cov.values();
            for i in 0..batch.len() {
                if sides[i] == SIDE_NONE || cov.is_null(i) {
                    continue;
                }
                let v = values[i];
                if !(0.0..=1.0).contains(&v) {
                    self.coverage_out_of_range += 1;
                    continue;
                }
                self.coverage[sides[i] as usize - 1].add(v);
            }
        }
        if let Some(lambda) = batch.str(Col::LambdaState) {
            // 0 missing, 1 convergent, 2 not convergent, 3 unknown.
            let codes = lambda.map_rows(|v| match v.map(lambda_code) {
                None => 0u8,
                Some(Some(true)) => 1,
                Some(Some(false)) => 2,
                Some(None) => 3,
            });
            for i in 0..batch.len() {
                if sides[i] == SIDE_NONE {
                    continue;
                }
                match codes[i] {
                    0 => {}
                    1 | 2 => self.lambda_flips[sides[i] as usize - 1].add(codes[i] == 2),
                    _ => {
                        self.lambda_unknown += 1;
                        let v = lambda.get(i).unwrap_or_default();
                        if let Some(c) = self.unknown_values.get_mut(v) {
                            *c += 1;
                        } else if self.unknown_values.len() < UNKNOWN_KEPT {
                            self.unknown_values.insert(v.to_string(), 1);
                        }
                    }
                }
            }
        }
    }

    fn merge(&mut self, other: State) {
        for s in 0..2 {
            self.delta_s[s].merge(&other.delta_s[s]);
            self.coverage[s].merge(&other.coverage[s]);
            self.lambda_flips[s].merge(&other.lambda_flips[s]);
        }
        self.lambda_unknown += other.lambda_unknown;
        self.delta_s_out_of_range += other.delta_s_out_of_range;
        self.coverage_out_of_range += other.coverage_out_of_range;
        for (k, v) in other.unknown_values {
            *self.unknown_values.entry(k).or_insert(0) += v;
        }
        // Keep the smallest values, so the kept set does not depend on merge order.
        while self.unknown_values.len() > UNKNOWN_KEPT {
            let last = self
                .unknown_values
                .keys()
                .next_back()
                .cloned()
                .expect("non-empty");
            self.unknown_values.remove(&last);
        }
    }
}

/// The figures of the two sides (index 0 baseline, 1 subject) and their intervals.
struct Figures {
    ds_p95: [Option<f64>; 2],
    drift: Option<f64>,
    coverage: [Option<f64>; 2],
    flips: [Option<f64>; 2],
    drift_ci: Option<Ci>,
    coverage_ci: [Option<Ci>; 2],
    flips_ci: [Option<Ci>; 2],
    drop_ci: Option<Ci>,
}

impl Figures {
    fn new(state: &State, level: crate::stats::intervals::Level) -> Figures {
        let ds_p95 = [0, 1].map(|s| state.delta_s[s].quantile(950));
        let has_ds = state.delta_s.iter().all(|q| q.len() > 0);
        let has_cov = state.coverage.iter().all(|c| c.count > 0);
        Figures {
            ds_p95,
            drift: ds_p95[0].zip(ds_p95[1]).map(|(b, s)| s - b),
            coverage: [0, 1].map(|s| state.coverage[s].mean()),
            flips: [0, 1].map(|s| state.lambda_flips[s].value()),
            drift_ci: has_ds.then(|| {
                Ci::difference(
                    state.delta_s[1].interval(950, level.halved()),
                    state.delta_s[0].interval(950, level.halved()),
                )
            }),
            coverage_ci: [0, 1]
                .map(|s| (state.coverage[s].count > 0).then(|| state.coverage[s].interval(level))),
            flips_ci: [0, 1].map(|s| {
                (state.lambda_flips[s].total > 0).then(|| state.lambda_flips[s].interval(level))
            }),
            drop_ci: has_cov.then(|| {
                Ci::difference(
                    state.coverage[0].interval(level.halved()),
                    state.coverage[1].interval(level.halved()),
                )
            }),
        }
    }

    /// What the thresholds judge, in the order the summary names them.
    fn criteria(&self, t: &crate::incident::Thresholds, subject: &str, n: u64) -> Vec<Criterion> {
        let criterion =
            |label: String, estimate, ci: Option<Ci>, bound, threshold, fails| Criterion {
                label,
                estimate,
                ci: ci.unwrap_or(Ci::UNBOUNDED),
                bound,
                threshold,
                n,
                fails,
            };
        let mut criteria = Vec::new();
        if let Some(d) = self.drift {
            let max = t.delta_s_p95_drift_max;
            criteria.push(criterion(
                DRIFT.into(),
                d,
                self.drift_ci,
                Bound::AtMost,
                max,
                true,
            ));
            let warn = t.delta_s_p95_drift_warn;
            criteria.push(criterion(
                DRIFT_WARN.into(),
                d,
                self.drift_ci,
                Bound::AtMost,
                warn,
                false,
            ));
        }
        if let Some(c) = self.coverage[1] {
            let label = format!("{subject} coverage");
            criteria.push(criterion(
                label,
                c,
                self.coverage_ci[1],
                Bound::AtLeast,
                t.coverage_min,
                true,
            ));
            if let Some(b) = self.coverage[0] {
                let max = t.coverage_drop_max;
                criteria.push(criterion(
                    DROP.into(),
                    b - c,
                    self.drop_ci,
                    Bound::AtMost,
                    max,
                    true,
                ));
            }
        }
        if let Some(f) = self.flips[1] {
            let label = format!("{subject} λ flip rate");
            let max = t.lambda_flip_rate_max;
            criteria.push(criterion(
                label,
                f,
                self.flips_ci[1],
                Bound::AtMost,
                max,
                true,
            ));
        }
        criteria
    }

    /// The summary when no criterion spoke.
    fn within_bounds(&self) -> String {
        let mut ok = Vec::new();
        if let Some(d) = self.drift {
            ok.push(format!("ΔS p95 drift {d:+.3}"));
        }
        if let Some(c) = self.coverage[1] {
            ok.push(format!("coverage {c:.3}"));
        }
        if let Some(f) = self.flips[1] {
            ok.push(format!("λ flip rate {}", pct(f)));
        }
        format!("{} within bounds", ok.join(", "))
    }
}

const DRIFT: &str = "ΔS p95 drift";
const DRIFT_WARN: &str = "ΔS p95 drift (warn level)";
const DROP: &str = "coverage drop";

/// Rejected values: a warning and a note each.
fn rejected(state: &State) -> (Status, Vec<String>) {
    let mut notes: Vec<String> = Vec::new();
    let mut status = Status::Pass;
    if state.lambda_unknown > 0 {
        status = status.worst(Status::Warn);
        let shown: Vec<String> = state
            .unknown_values
            .keys()
            .map(|k| format!("`{k}`"))
            .collect();
        notes.push(format!(
            "{} rows with an unknown λ state ({})",
            state.lambda_unknown,
            shown.join(", ")
        ));
    }
    if state.delta_s_out_of_range + state.coverage_out_of_range > 0 {
        status = status.worst(Status::Warn);
        notes.push(format!(
            "{} ΔS and {} coverage values outside [0, 1] rejected",
            state.delta_s_out_of_range, state.coverage_out_of_range
        ));
    }
    (status, notes)
}

/// The result with every figure, before any criterion is applied.
fn with_figures(f: &Finish<'_>, state: &State, fig: &Figures, n: [u64; 2]) -> CheckResult {
    let t = &f.ctx.thresholds;
    let subject = f.ctx.plan.subject();
    let [b_ds, s_ds] = fig.ds_p95;
    let [b_cov, s_cov] = fig.coverage;
    let [b_flip, s_flip] = fig.flips;
    CheckResult::new(INFO.id, Status::Pass, String::new())
        .metric("baseline_delta_s_p95", Metric::Number(b_ds))
        .metric(&format!("{subject}_delta_s_p95"), Metric::Number(s_ds))
        .metric("delta_s_p95_drift", Metric::Number(fig.drift))
        .metric("baseline_coverage_mean", Metric::Number(b_cov))
        .metric(&format!("{subject}_coverage_mean"), Metric::Number(s_cov))
        .metric("baseline_lambda_flip_rate", Metric::Number(b_flip))
        .metric(
            &format!("{subject}_lambda_flip_rate"),
            Metric::Number(s_flip),
        )
        .metric("lambda_unknown", Metric::Count(state.lambda_unknown))
        .metric(
            "lambda_unknown_values",
            Metric::Counts(state.unknown_values.clone()),
        )
        .metric(
            "delta_s_out_of_range",
            Metric::Count(state.delta_s_out_of_range),
        )
        .metric(
            "coverage_out_of_range",
            Metric::Count(state.coverage_out_of_range),
        )
        .cells(
            format!(
                "ΔS p95 {} ({:+}), cov {}, λ flips {}",
                num(s_ds, 3),
                num(fig.drift, 3),
                num(s_cov, 3),
                s_flip.map(pct).unwrap_or("n/a".into())
            ),
            format!(
                "ΔS p95 {}, cov {}, λ flips {}",
                num(b_ds, 3),
                num(b_cov, 3),
                b_flip.map(pct).unwrap_or("n/a".into())
            ),
            format!(
                "drift ≤ {} (warn {}), cov ≥ {}, drop ≤ {}, λ ≤ {}",
                t.delta_s_p95_drift_max,
                t.delta_s_p95_drift_warn,
                t.coverage_min,
                t.coverage_drop_max,
                pct(t.lambda_flip_rate_max)
            ),
        )
        .metric("delta_s_p95_drift_ci", criteria::ci_metric(fig.drift_ci))
        .metric(
            "baseline_coverage_mean_ci",
            criteria::ci_metric(fig.coverage_ci[0]),
        )
        .metric(
            &format!("{subject}_coverage_mean_ci"),
            criteria::ci_metric(fig.coverage_ci[1]),
        )
        .metric(
            "baseline_lambda_flip_rate_ci",
            criteria::ci_metric(fig.flips_ci[0]),
        )
        .metric(
            &format!("{subject}_lambda_flip_rate_ci"),
            criteria::ci_metric(fig.flips_ci[1]),
        )
        .metric("n_baseline", Metric::Count(n[0]))
        .metric(&format!("n_{subject}"), Metric::Count(n[1]))
        .metric(
            "lambda_flips_baseline",
            Metric::Count(state.lambda_flips[0].hits),
        )
        .metric(
            &format!("lambda_flips_{subject}"),
            Metric::Count(state.lambda_flips[1].hits),
        )
}

/// What the summary says of a violated criterion.
fn violated_text(c: &Criterion, stats: &crate::incident::Statistics) -> String {
    let interval = if stats.interval() {
        let digits = if c.label.contains("rate") {
            None
        } else {
            Some(3)
        };
        format!(", {}", criteria::interval_words(c.ci, stats, digits))
    } else {
        String::new()
    };
    match (c.label.as_str(), c.bound) {
        (DRIFT, _) => format!(
            "ΔS p95 drift {:+.3} > {}{interval}",
            c.estimate, c.threshold
        ),
        (DRIFT_WARN, _) => format!(
            "ΔS p95 drift {:+.3} > {} (warn){interval}",
            c.estimate, c.threshold
        ),
        (DROP, _) => format!(
            "coverage dropped {:.3} (> {}){interval}",
            c.estimate, c.threshold
        ),
        (_, Bound::AtLeast) => format!("{} {:.3} < {}{interval}", c.label, c.estimate, c.threshold),
        _ => format!(
            "{} {} > {}{interval}",
            c.label,
            pct(c.estimate),
            pct(c.threshold)
        ),
    }
}

fn finish(f: &Finish<'_>) -> CheckResult {
    let ctx = f.ctx;
    let state = f.states.get::<QualityKernel>();
    let counts = f.states.get::<RowsKernel>();
    if ![Col::DeltaS, Col::Coverage, Col::LambdaState]
        .iter()
        .any(|c| ctx.has(*c))
    {
        return CheckResult::skip(
            INFO.id,
            "the requests have no `delta_s`, `coverage` or `lambda_state` column",
        );
    }
    let stats = &ctx.statistics;
    let fig = Figures::new(state, stats.level());
    let n = [counts.side_rows[0], counts.side_rows[1]];
    let mut result = with_figures(f, state, &fig, n);
    if let Some(reason) = counts.too_few(ctx) {
        result.status = Status::Inconclusive;
        result.summary = reason;
        return result;
    }
    let n_text = format!("n = {} / {}", count(n[0]), count(n[1]));
    let mut drift_failed = false;
    let mut parts = Vec::new();
    for c in &fig.criteria(&ctx.thresholds, ctx.plan.subject(), n[1]) {
        // The warn level of the drift only speaks when the fail level did not.
        if c.label == DRIFT_WARN && drift_failed {
            continue;
        }
        let before = result.status;
        let texts = criteria::apply(&mut result, std::slice::from_ref(c), stats, &n_text, |c| {
            violated_text(c, stats)
        });
        drift_failed |= c.label == DRIFT && result.status != before;
        parts.extend(texts);
    }
    let (rejected_status, notes) = rejected(state);
    result.status = result.status.worst(rejected_status);
    if parts.is_empty() {
        parts.push(fig.within_bounds());
    }
    parts.extend(notes);
    result.summary = parts.join("; ");
    result
}
