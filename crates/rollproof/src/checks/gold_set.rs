//! `gold_set`: the warmed gold set, run after the rollback, is back at what the same questions
//! gave on the last known good stack.
//!
//! Gold rows are read like requests (`ts`, `question_id`, `delta_s`, `coverage`, `lambda_state`,
//! pins); each file keeps one row per question, its latest by `ts`. The sets are small (a gold
//! set is hundreds of questions), so the figures are exact: quantiles by sorting, means by sums in
//! question order.

use std::collections::BTreeMap;

use arrow::array::Array;
use serde::{Deserialize, Serialize};

use super::quality::lambda_code;
use super::Lever;
use super::{
    num, pct, CheckInfo, CheckResult, CheckSpec, Fields, Finish, Metric, Status, ROLLBACK,
};
use crate::columns::{CanonBatch, Col, PIN_COLUMNS};
use crate::plan::Ctx;

pub(crate) static CHECK: CheckSpec = CheckSpec {
    info: &INFO,
    kernels: &[],
    finish,
    evidence: &[],
};

pub(crate) static INFO: CheckInfo = CheckInfo {
    id: "gold_set",
    title: "Gold set after the rollback",
    modes: ROLLBACK,
    what_it_checks: "The gold set run after the rollback ([inputs] gold) against the same questions on the \
        last known good stack ([inputs] gold_baseline): one row per question (its latest by ts), ΔS p95, \
        mean coverage and λ flip rate of each file as in `quality`, the questions missing from the run, the \
        questions that regressed, and the run's rows whose pins differ from [expected_pins].",
    why_it_matters: "Validating ΔS, coverage and λ on the warmed gold set is the strongest quality evidence a \
        rollback has: the same questions, answered before and after, with no traffic mix in between.",
    what_fails_it: "Thresholds as in `quality` (ΔS p95 drift warns past delta_s_p95_drift_warn and fails past \
        delta_s_p95_drift_max; mean coverage under coverage_min or dropping by more than coverage_drop_max \
        fails; a λ flip rate over lambda_flip_rate_max fails); it also fails when missing_questions > 0 or \
        pin_violations > 0, and warns when regressed_questions > 0. It skips without both gold files.",
    columns_it_needs: "gold files: ts, question_id, delta_s, coverage, lambda_state, and any pins.",
    figures: &[
        ("questions", "Distinct question_id values present in both files."),
        ("missing_questions", "Question ids in the baseline file but not in the run."),
        ("baseline_delta_s_p95", "Nearest-rank p95 of delta_s over the baseline file's questions (one row each)."),
        ("post_delta_s_p95", "The same over the run's questions."),
        ("delta_s_p95_drift", "post − baseline ΔS p95."),
        ("baseline_coverage_mean", "Mean coverage over the baseline file's questions."),
        ("post_coverage_mean", "The same over the run's questions."),
        ("baseline_lambda_flip_rate", "Share of the baseline file's questions with a λ state whose state is not convergent."),
        ("post_lambda_flip_rate", "The same over the run's questions."),
        ("regressed_questions", "Questions in both whose ΔS rose by more than gold_delta_s_regress, or whose coverage fell by more than coverage_drop_max."),
        ("pin_violations", "The run's rows (one per question) with a pin of [expected_pins] different or missing."),
    ],
    remediation: "revert the prompt pack or model by flag, warm the cache, and re-run the gold set",
    region_column: None,
    impact: Some(|status, m, _| {
        if status == Status::Pass || status == Status::Skip {
            return None;
        }
        let r = m.get("regressed_questions").and_then(Metric::as_count).unwrap_or(0);
        Some(format!(
            "{} of the gold set answered worse after the rollback than on the last known good stack.",
            crate::words::plural(r, "question", "questions")
        ))
    }),
    events: None,
    lever: Some(|_| Some(Lever::RevertPromptOrModel)),
};

/// The columns a gold file is read for (besides `ts`): the question, its quality figures and the
/// version pins.
pub(crate) fn columns() -> Vec<Col> {
    [
        Col::QuestionId,
        Col::DeltaS,
        Col::Coverage,
        Col::LambdaState,
    ]
    .into_iter()
    .chain(crate::columns::PIN_COLUMNS)
    .collect()
}

/// The row a question counts with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct GoldRow {
    ts: i64,
    delta_s: Option<f64>,
    coverage: Option<f64>,
    lambda: Option<String>,
    /// The pins, in PIN_COLUMNS order (`None`: missing or no column).
    pins: Vec<Option<String>>,
}

impl GoldRow {
    /// Whether `self` replaces `other` as its question's row: the later one, and on a tie of ts
    /// the larger by content, so that the choice never depends on row order.
    fn supersedes(&self, other: &GoldRow) -> bool {
        let key = |r: &GoldRow| {
            (
                r.ts,
                r.delta_s.map(f64::to_bits),
                r.coverage.map(f64::to_bits),
                r.lambda.clone(),
                r.pins.clone(),
            )
        };
        key(self) > key(other)
    }
}

/// One gold file's questions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct GoldSide {
    questions: BTreeMap<String, GoldRow>,
    pub(crate) rows_without_question: u64,
}

impl GoldSide {
    pub(crate) fn update(&mut self, batch: &CanonBatch) {
        let ts = batch.ts();
        let Some(ids) = batch.str(Col::QuestionId) else {
            self.rows_without_question += ts.len() as u64;
            return;
        };
        let delta = batch.float(Col::DeltaS);
        let coverage = batch.float(Col::Coverage);
        let lambda = batch.str(Col::LambdaState);
        let pins: Vec<_> = PIN_COLUMNS.iter().map(|c| batch.str(*c)).collect();
        let unit = |a: Option<&arrow::array::Float64Array>, i: usize| {
            a.filter(|a| a.is_valid(i))
                .map(|a| a.value(i))
                .filter(|v| (0.0..=1.0).contains(v))
        };
        for i in 0..ts.len() {
            let Some(id) = ids.get(i) else {
                self.rows_without_question += 1;
                continue;
            };
            let row = GoldRow {
                ts: ts[i],
                delta_s: unit(delta, i),
                coverage: unit(coverage, i),
                lambda: lambda.as_ref().and_then(|l| l.get(i)).map(str::to_string),
                pins: pins
                    .iter()
                    .map(|p| p.as_ref().and_then(|p| p.get(i)).map(str::to_string))
                    .collect(),
            };
            self.offer(id.to_string(), row);
        }
    }

    fn offer(&mut self, id: String, row: GoldRow) {
        match self.questions.get(&id) {
            Some(have) if !row.supersedes(have) => {}
            _ => {
                self.questions.insert(id, row);
            }
        }
    }

    pub(crate) fn merge(&mut self, other: GoldSide) {
        self.rows_without_question += other.rows_without_question;
        for (id, row) in other.questions {
            self.offer(id, row);
        }
    }

    fn delta_p95(&self) -> Option<f64> {
        let mut v: Vec<f64> = self.questions.values().filter_map(|r| r.delta_s).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let rank = (v.len() * 95).div_ceil(100).max(1);
        Some(v[rank - 1])
    }

    fn coverage_mean(&self) -> Option<f64> {
        let v: Vec<f64> = self.questions.values().filter_map(|r| r.coverage).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    fn lambda_flip_rate(&self) -> Option<f64> {
        let known: Vec<bool> = self
            .questions
            .values()
            .filter_map(|r| r.lambda.as_deref().and_then(lambda_code))
            .collect();
        (!known.is_empty())
            .then(|| known.iter().filter(|c| !**c).count() as f64 / known.len() as f64)
    }
}

/// Both gold files, as read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Gold {
    pub(crate) run: GoldSide,
    pub(crate) baseline: GoldSide,
}

fn finish(f: &Finish<'_>) -> CheckResult {
    let ctx = f.ctx;
    let Some(gold) = f.gold else {
        return CheckResult::skip(INFO.id, "no gold set ([inputs] gold and gold_baseline)");
    };
    let t = &ctx.thresholds;
    let (run, base) = (&gold.run, &gold.baseline);
    let questions = run
        .questions
        .keys()
        .filter(|q| base.questions.contains_key(*q))
        .count() as u64;
    let missing = base
        .questions
        .keys()
        .filter(|q| !run.questions.contains_key(*q))
        .count() as u64;
    let regressed = run
        .questions
        .iter()
        .filter_map(|(q, r)| base.questions.get(q).map(|b| (r, b)))
        .filter(|(r, b)| {
            let ds = matches!((r.delta_s, b.delta_s), (Some(x), Some(y)) if x - y > t.gold_delta_s_regress);
            let cov = matches!((r.coverage, b.coverage), (Some(x), Some(y)) if y - x > t.coverage_drop_max);
            ds || cov
        })
        .count() as u64;
    let pin_violations = pin_violations(ctx, run);
    let (b_ds, r_ds) = (base.delta_p95(), run.delta_p95());
    let drift = r_ds.zip(b_ds).map(|(r, b)| r - b);
    let (b_cov, r_cov) = (base.coverage_mean(), run.coverage_mean());
    let (b_flip, r_flip) = (base.lambda_flip_rate(), run.lambda_flip_rate());
    let mut status = Status::Pass;
    let mut parts = Vec::new();
    let mut fail = |why: String, parts: &mut Vec<String>| {
        status = Status::Fail;
        parts.push(why);
    };
    if missing > 0 {
        fail(
            format!("{missing} baseline questions missing from the run"),
            &mut parts,
        );
    }
    if pin_violations > 0 {
        fail(
            format!("{pin_violations} gold rows ran on other pins"),
            &mut parts,
        );
    }
    if let Some(d) = drift.filter(|d| *d > t.delta_s_p95_drift_max) {
        fail(
            format!("ΔS p95 drift {d:+.3} > {}", t.delta_s_p95_drift_max),
            &mut parts,
        );
    }
    if let Some(c) = r_cov.filter(|c| *c < t.coverage_min) {
        fail(format!("coverage {c:.3} < {}", t.coverage_min), &mut parts);
    }
    if let (Some(r), Some(b)) = (r_cov, b_cov) {
        if b - r > t.coverage_drop_max {
            fail(format!("coverage dropped by {:.3}", b - r), &mut parts);
        }
    }
    if let Some(l) = r_flip.filter(|l| *l > t.lambda_flip_rate_max) {
        fail(
            format!("λ flip rate {} > {}", pct(l), pct(t.lambda_flip_rate_max)),
            &mut parts,
        );
    }
    if let Some(d) =
        drift.filter(|d| *d > t.delta_s_p95_drift_warn && *d <= t.delta_s_p95_drift_max)
    {
        status = status.worst(Status::Warn);
        parts.push(format!(
            "ΔS p95 drift {d:+.3} > {} (warn)",
            t.delta_s_p95_drift_warn
        ));
    }
    if regressed > 0 {
        status = status.worst(Status::Warn);
        parts.push(format!(
            "{} regressed",
            crate::words::plural(regressed, "question", "questions")
        ));
    }
    if parts.is_empty() {
        parts.push(format!(
            "{} of the gold set back at the last known good figures (ΔS p95 drift {}, coverage {})",
            crate::words::plural(questions, "question", "questions"),
            drift.map_or("n/a".to_string(), |d| format!("{d:+.3}")),
            num(r_cov, 3)
        ));
    }
    let mut result = CheckResult::new(INFO.id, status, parts.join("; "))
        .metric("questions", Metric::Count(questions))
        .metric("missing_questions", Metric::Count(missing))
        .metric("baseline_delta_s_p95", Metric::Number(b_ds))
        .metric("post_delta_s_p95", Metric::Number(r_ds))
        .metric("delta_s_p95_drift", Metric::Number(drift))
        .metric("baseline_coverage_mean", Metric::Number(b_cov))
        .metric("post_coverage_mean", Metric::Number(r_cov))
        .metric("baseline_lambda_flip_rate", Metric::Number(b_flip))
        .metric("post_lambda_flip_rate", Metric::Number(r_flip))
        .metric("regressed_questions", Metric::Count(regressed))
        .metric("pin_violations", Metric::Count(pin_violations))
        .cells(
            format!(
                "ΔS p95 {} ({}), coverage {}",
                num(r_ds, 3),
                drift.map_or("n/a".to_string(), |d| format!("{d:+.3}")),
                num(r_cov, 3)
            ),
            format!("ΔS p95 {}, coverage {}", num(b_ds, 3), num(b_cov, 3)),
            format!(
                "drift ≤ {}, coverage ≥ {}, 0 missing, 0 on other pins",
                t.delta_s_p95_drift_max, t.coverage_min
            ),
        )
        .sample_size(questions.to_string());
    result.samples = samples(ctx, run, base);
    result
}

/// The findings, question by question: missing, regressed, on other pins (in that order, by
/// question id, a fair share of SAMPLE_CAP each).
fn samples(ctx: &Ctx, run: &GoldSide, base: &GoldSide) -> Vec<Fields> {
    let t = &ctx.thresholds;
    let expected = &ctx.plan.pin_sets()[0].pins;
    let row = |q: &str, finding: &str, r: Option<&GoldRow>, b: Option<&GoldRow>| {
        Fields::from([
            ("question_id".to_string(), Metric::Text(Some(q.to_string()))),
            (
                "finding".to_string(),
                Metric::Text(Some(finding.to_string())),
            ),
            (
                "baseline_delta_s".to_string(),
                Metric::Number(b.and_then(|b| b.delta_s)),
            ),
            (
                "post_delta_s".to_string(),
                Metric::Number(r.and_then(|r| r.delta_s)),
            ),
            (
                "baseline_coverage".to_string(),
                Metric::Number(b.and_then(|b| b.coverage)),
            ),
            (
                "post_coverage".to_string(),
                Metric::Number(r.and_then(|r| r.coverage)),
            ),
        ])
    };
    let missing = base
        .questions
        .iter()
        .filter(|(q, _)| !run.questions.contains_key(*q))
        .map(|(q, b)| row(q, "missing from the run", None, Some(b)));
    let regressed = run
        .questions
        .iter()
        .filter_map(|(q, r)| base.questions.get(q).map(|b| (q, r, b)))
        .filter(|(_, r, b)| {
            let ds = matches!((r.delta_s, b.delta_s), (Some(x), Some(y)) if x - y > t.gold_delta_s_regress);
            let cov = matches!((r.coverage, b.coverage), (Some(x), Some(y)) if y - x > t.coverage_drop_max);
            ds || cov
        })
        .map(|(q, r, b)| row(q, "regressed", Some(r), Some(b)));
    let other_pins = run.questions.iter().filter_map(|(q, r)| {
        let (col, want) = expected.iter().find(|(col, want)| {
            let p = PIN_COLUMNS
                .iter()
                .position(|c| c == col)
                .expect("a pin column");
            r.pins[p].is_some() && r.pins[p].as_deref() != Some(want.as_str())
        })?;
        let p = PIN_COLUMNS
            .iter()
            .position(|c| c == col)
            .expect("a pin column");
        let found = r.pins[p].clone().unwrap_or_default();
        let mut f = row(
            q,
            &format!("ran on {}={found}, not {want}", col.name()),
            Some(r),
            base.questions.get(q),
        );
        f.insert(
            "pin".to_string(),
            Metric::Text(Some(col.name().to_string())),
        );
        Some(f)
    });
    let share = super::SAMPLE_CAP.div_ceil(3);
    missing
        .take(share)
        .chain(regressed.take(share))
        .chain(other_pins.take(share))
        .take(super::SAMPLE_CAP)
        .collect()
}

/// The run's rows (one per question) with a pin of `[expected_pins]` different or missing; pins
/// the gold files do not carry at all cannot be compared and are left out.
fn pin_violations(ctx: &Ctx, run: &GoldSide) -> u64 {
    let expected = &ctx.plan.pin_sets()[0].pins;
    let carried: Vec<usize> = PIN_COLUMNS
        .iter()
        .enumerate()
        .filter(|(p, _)| run.questions.values().any(|r| r.pins[*p].is_some()))
        .map(|(p, _)| p)
        .collect();
    run.questions
        .values()
        .filter(|r| {
            expected.iter().any(|(col, want)| {
                let p = PIN_COLUMNS
                    .iter()
                    .position(|c| c == col)
                    .expect("a pin column");
                carried.contains(&p) && r.pins[p].as_deref() != Some(want.as_str())
            })
        })
        .count() as u64
}
