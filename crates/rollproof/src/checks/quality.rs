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

fn finish(f: &Finish<'_>) -> CheckResult {
    let ctx = f.ctx;
    let partial = f.states.get::<QualityKernel>();
    let counts = f.states.get::<RowsKernel>();
    let has_ds = ctx.has(Col::DeltaS);
    let has_cov = ctx.has(Col::Coverage);
    let has_lambda = ctx.has(Col::LambdaState);
    if !has_ds && !has_cov && !has_lambda {
        return CheckResult::skip(
            INFO.id,
            "the requests have no `delta_s`, `coverage` or `lambda_state` column",
        );
    }
    let t = &ctx.thresholds;
    let subject = ctx.plan.subject();
    let b_ds = partial.delta_s[0].quantile(950);
    let s_ds = partial.delta_s[1].quantile(950);
    let drift = match (b_ds, s_ds) {
        (Some(b), Some(s)) => Some(s - b),
        _ => None,
    };
    let b_cov = partial.coverage[0].mean();
    let s_cov = partial.coverage[1].mean();
    let b_flip = partial.lambda_flips[0].value();
    let s_flip = partial.lambda_flips[1].value();

    let stats = &ctx.statistics;
    let level = stats.level();
    let drift_ci = (partial.delta_s[0].len() > 0 && partial.delta_s[1].len() > 0).then(|| {
        Ci::difference(
            partial.delta_s[1].interval(950, level.halved()),
            partial.delta_s[0].interval(950, level.halved()),
        )
    });
    let mean_ci =
        |i: usize| (partial.coverage[i].count > 0).then(|| partial.coverage[i].interval(level));
    let flip_ci = |i: usize| {
        (partial.lambda_flips[i].total > 0).then(|| partial.lambda_flips[i].interval(level))
    };
    let drop_ci = (partial.coverage[0].count > 0 && partial.coverage[1].count > 0).then(|| {
        Ci::difference(
            partial.coverage[0].interval(level.halved()),
            partial.coverage[1].interval(level.halved()),
        )
    });
    let (n_base, n_post) = (counts.side_rows[0], counts.side_rows[1]);
    let mut criteria = Vec::new();
    let criterion =
        |label: String, estimate: f64, ci: Option<Ci>, bound, threshold, fails| Criterion {
            label,
            estimate,
            ci: ci.unwrap_or(Ci::UNBOUNDED),
            bound,
            threshold,
            n: n_post,
            fails,
        };
    if let Some(d) = drift {
        criteria.push(criterion(
            "ΔS p95 drift".into(),
            d,
            drift_ci,
            Bound::AtMost,
            t.delta_s_p95_drift_max,
            true,
        ));
        criteria.push(criterion(
            "ΔS p95 drift (warn level)".into(),
            d,
            drift_ci,
            Bound::AtMost,
            t.delta_s_p95_drift_warn,
            false,
        ));
    }
    if let Some(c) = s_cov {
        criteria.push(criterion(
            format!("{subject} coverage"),
            c,
            mean_ci(1),
            Bound::AtLeast,
            t.coverage_min,
            true,
        ));
        if let Some(b) = b_cov {
            criteria.push(criterion(
                "coverage drop".into(),
                b - c,
                drop_ci,
                Bound::AtMost,
                t.coverage_drop_max,
                true,
            ));
        }
    }
    if let Some(f) = s_flip {
        criteria.push(criterion(
            format!("{subject} λ flip rate"),
            f,
            flip_ci(1),
            Bound::AtMost,
            t.lambda_flip_rate_max,
            true,
        ));
    }
    let mut notes: Vec<String> = Vec::new();
    let mut status = Status::Pass;
    if partial.lambda_unknown > 0 {
        status = status.worst(Status::Warn);
        let shown: Vec<String> = partial
            .unknown_values
            .keys()
            .map(|k| format!("`{k}`"))
            .collect();
        notes.push(format!(
            "{} rows with an unknown λ state ({})",
            partial.lambda_unknown,
            shown.join(", ")
        ));
    }
    if partial.delta_s_out_of_range + partial.coverage_out_of_range > 0 {
        status = status.worst(Status::Warn);
        notes.push(format!(
            "{} ΔS and {} coverage values outside [0, 1] rejected",
            partial.delta_s_out_of_range, partial.coverage_out_of_range
        ));
    }
    let mut result = CheckResult::new(INFO.id, Status::Pass, String::new())
        .metric("baseline_delta_s_p95", Metric::Number(b_ds))
        .metric(&format!("{subject}_delta_s_p95"), Metric::Number(s_ds))
        .metric("delta_s_p95_drift", Metric::Number(drift))
        .metric("baseline_coverage_mean", Metric::Number(b_cov))
        .metric(&format!("{subject}_coverage_mean"), Metric::Number(s_cov))
        .metric("baseline_lambda_flip_rate", Metric::Number(b_flip))
        .metric(
            &format!("{subject}_lambda_flip_rate"),
            Metric::Number(s_flip),
        )
        .metric("lambda_unknown", Metric::Count(partial.lambda_unknown))
        .metric(
            "lambda_unknown_values",
            Metric::Counts(partial.unknown_values.clone()),
        )
        .metric(
            "delta_s_out_of_range",
            Metric::Count(partial.delta_s_out_of_range),
        )
        .metric(
            "coverage_out_of_range",
            Metric::Count(partial.coverage_out_of_range),
        )
        .cells(
            format!(
                "ΔS p95 {} ({:+}), cov {}, λ flips {}",
                num(s_ds, 3),
                num(drift, 3),
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
        );
    result = result
        .metric("delta_s_p95_drift_ci", criteria::ci_metric(drift_ci))
        .metric("baseline_coverage_mean_ci", criteria::ci_metric(mean_ci(0)))
        .metric(
            &format!("{subject}_coverage_mean_ci"),
            criteria::ci_metric(mean_ci(1)),
        )
        .metric(
            "baseline_lambda_flip_rate_ci",
            criteria::ci_metric(flip_ci(0)),
        )
        .metric(
            &format!("{subject}_lambda_flip_rate_ci"),
            criteria::ci_metric(flip_ci(1)),
        )
        .metric("n_baseline", Metric::Count(n_base))
        .metric(&format!("n_{subject}"), Metric::Count(n_post))
        .metric(
            "lambda_flips_baseline",
            Metric::Count(partial.lambda_flips[0].hits),
        )
        .metric(
            &format!("lambda_flips_{subject}"),
            Metric::Count(partial.lambda_flips[1].hits),
        );
    if let Some(reason) = counts.too_few(ctx) {
        result.status = Status::Inconclusive;
        result.summary = reason;
        return result;
    }
    let n = format!("n = {} / {}", count(n_base), count(n_post));
    let interval_note = |c: &Criterion| {
        if stats.interval() {
            format!(
                ", {}",
                criteria::interval_words(
                    c.ci,
                    stats,
                    if c.label.contains("rate") {
                        None
                    } else {
                        Some(3)
                    }
                )
            )
        } else {
            String::new()
        }
    };
    let mut drift_failed = false;
    let mut parts = Vec::new();
    for c in &criteria {
        // The warn level of the drift only speaks when the fail level did not.
        if !c.fails && c.label.starts_with("ΔS p95 drift") && drift_failed {
            continue;
        }
        let before = result.status;
        let texts = criteria::apply(&mut result, std::slice::from_ref(c), stats, &n, |c| match (
            c.label.as_str(),
            c.bound,
        ) {
            ("ΔS p95 drift", _) => format!(
                "ΔS p95 drift {:+.3} > {}{}",
                c.estimate,
                c.threshold,
                interval_note(c)
            ),
            ("ΔS p95 drift (warn level)", _) => format!(
                "ΔS p95 drift {:+.3} > {} (warn){}",
                c.estimate,
                c.threshold,
                interval_note(c)
            ),
            ("coverage drop", _) => format!(
                "coverage dropped {:.3} (> {}){}",
                c.estimate,
                c.threshold,
                interval_note(c)
            ),
            (_, Bound::AtLeast) => format!(
                "{} {:.3} < {}{}",
                c.label,
                c.estimate,
                c.threshold,
                interval_note(c)
            ),
            _ => format!(
                "{} {} > {}{}",
                c.label,
                pct(c.estimate),
                pct(c.threshold),
                interval_note(c)
            ),
        });
        if c.fails && c.label == "ΔS p95 drift" && result.status != before {
            drift_failed = true;
        }
        parts.extend(texts);
    }
    result.status = result.status.worst(status);
    if parts.is_empty() {
        let mut ok = Vec::new();
        if let Some(d) = drift {
            ok.push(format!("ΔS p95 drift {d:+.3}"));
        }
        if let Some(c) = s_cov {
            ok.push(format!("coverage {c:.3}"));
        }
        if let Some(f) = s_flip {
            ok.push(format!("λ flip rate {}", pct(f)));
        }
        parts.push(format!("{} within bounds", ok.join(", ")));
    }
    parts.extend(notes);
    result.summary = parts.join("; ");
    result
}
