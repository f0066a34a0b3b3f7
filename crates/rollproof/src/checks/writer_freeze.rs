//! `writer_freeze` (rollback): no writes during the freeze, one writer at the flip, jobs unfrozen.
//!
//! Reads the same partial state as `duplicate_effects` (one pass over the receipts).

use super::duplicate_effects::{key_samples, skip_reason, EffectsKernel, EFFECTS, KEY_LOOKUP};
use super::rows::{RowsKernel, ROWS};
use super::Lever;
use super::{
    CheckInfo, CheckResult, CheckSpec, Fields, Finish, Metric, Status, ROLLBACK, SAMPLE_CAP,
};
use crate::time::format_millis;
use crate::words::plural;

pub(crate) static CHECK: CheckSpec = CheckSpec {
    info: &INFO,
    kernels: &[&EFFECTS, &KEY_LOOKUP, &ROWS, &super::error_recovery::ERRORS],
    finish,
    evidence: &[
        &super::Evidence {
            kind: "executions_during_the_freeze",
            table: crate::columns::Table::Receipts,
            select: |ctx, _, rows| {
                let Some(freeze) = ctx.plan.freeze() else {
                    return vec![false; rows.len()];
                };
                super::duplicate_effects::executions(ctx, rows)
                    .into_iter()
                    .zip(rows.batch.ts())
                    .map(|(exec, t)| exec && freeze.contains(*t))
                    .collect()
            },
        },
        &super::Evidence {
            kind: "executions_by_two_writers_at_the_flip",
            table: crate::columns::Table::Receipts,
            select: |ctx, states, rows| {
                let s = &states.get::<EffectsKernel>().summary;
                let flip = ctx.plan.flip_at().unwrap_or_default();
                let near = 60 * crate::time::MICROS_PER_SECOND;
                super::duplicate_effects::executions_of_keys(ctx, rows, &s.two_writer, |t| {
                    (t - flip).abs() <= near
                })
            },
        },
    ],
};

pub(crate) static INFO: CheckInfo = CheckInfo {
    id: "writer_freeze",
    title: "Write freeze and writers at the flip",
    modes: ROLLBACK,
    what_it_checks: "Executions (receipts whose decision is missing or `new`) with ts inside the freeze window, \
        by writer and effect; idempotency keys executed by two or more distinct writers within ±60 s of \
        flip_at (two writers active during the flip); and whether any execution follows the end of the freeze.",
    why_it_matters: "The runbook's pitfalls: \"two writers active during the flip\" and \"forgetting to unfreeze \
        jobs after stability returns\". Writes during the freeze are side effects made while the system was \
        declared read-only; two writers at the flip are how duplicates and lost updates happen.",
    what_fails_it: "writes_during_freeze > 0 or two_writer_effects > 0. Warns when the freeze ended before the \
        end of data and no execution has ts at or after the freeze end (jobs never unfrozen), and when green \
        did not hold green_hold_minutes (default 10) before the unfreeze, or never came.",
    columns_it_needs: "receipts: ts, idempotency_key, writer_id; decision and effect for breakdowns; a [windows] \
        freeze for the freeze figures.",
    figures: &[
        ("writes_during_freeze", "Executions with ts inside the freeze window."),
        ("freeze_by_writer", "Writer → executions during the freeze."),
        ("freeze_by_effect", "Effect → executions during the freeze."),
        ("two_writer_effects", "Idempotency keys executed by two or more distinct writers with ts within ±60 s of flip_at."),
        ("executions_after_freeze", "Executions with ts at or after the freeze's end."),
        ("never_unfrozen", "True when the freeze ended before the end of the data and no execution followed it."),
        ("freeze_window", "Whether the incident file gives a freeze window."),
        ("green_at", "With a freeze window: flip_at + error_recovery's recovery_minutes (errors back under error_rate_max for good); null when never recovered or without a status column."),
        ("unfreeze_at", "With a freeze window: its end, when writers were unfrozen."),
        ("held_minutes_before_unfreeze", "With a freeze window: (unfreeze_at − green_at) in minutes; negative when writers were unfrozen before errors recovered; null when never green."),
    ],
    remediation: "audit the writes made during the freeze and at the flip; make the freeze a hard fence and hand over writers with a lease",
    region_column: None,
    impact: Some(|_, m, _| {
        let f = m.get("writes_during_freeze").and_then(Metric::as_count).unwrap_or(0);
        (f > 0).then(|| {
            format!(
                "{} executed during the write freeze.",
                plural(f, "side effect was", "side effects were")
            )
        })
    }),
    events: None,
    lever: Some(|_| Some(Lever::FenceAndReconcile)),
};

fn finish(f: &Finish<'_>) -> CheckResult {
    let ctx = f.ctx;
    if let Some(reason) = skip_reason(ctx) {
        return CheckResult::skip(INFO.id, reason);
    }
    let partial = f.states.get::<EffectsKernel>();
    let summary = &partial.summary;
    let end_of_data = f.states.get::<RowsKernel>().max_ts;
    let freeze = ctx.plan.freeze();
    let two_writers = summary.two_writer_effects;
    let mut status = Status::Pass;
    let mut parts = Vec::new();
    if partial.writes_during_freeze > 0 {
        status = Status::Fail;
        parts.push(format!(
            "{} during the write freeze",
            plural(partial.writes_during_freeze, "execution", "executions")
        ));
    }
    if two_writers > 0 {
        status = Status::Fail;
        parts.push(format!(
            "{} executed by two or more writers within ±60 s of the flip",
            plural(two_writers, "side effect", "side effects")
        ));
    }
    let never_unfrozen = match (freeze, end_of_data) {
        (Some(f), Some(end)) => f.end <= end && partial.executions_after_freeze == 0,
        _ => false,
    };
    if never_unfrozen {
        status = status.worst(Status::Warn);
        parts.push(format!(
            "no execution since the freeze ended at {}: were the jobs unfrozen?",
            freeze.map(|f| format_millis(f.end)).unwrap_or_default()
        ));
    }
    // "Hold ten to fifteen minutes. Confirm targets are met. Then unfreeze writers."
    let errors = f.states.get::<super::error_recovery::ErrorsKernel>();
    let flip = ctx.plan.flip_at().unwrap_or_default();
    let green_at = ctx
        .has(crate::columns::Col::Status)
        .then(|| errors.recovery_minutes(ctx.thresholds.error_rate_max))
        .flatten()
        .map(|k| flip + k * crate::time::MICROS_PER_MINUTE);
    let held = match (freeze, green_at) {
        (Some(fr), Some(g)) => Some((fr.end - g) as f64 / crate::time::MICROS_PER_MINUTE as f64),
        _ => None,
    };
    if let Some(fr) = freeze {
        let hold = ctx.thresholds.green_hold_minutes;
        match held {
            Some(h) if h >= hold => {}
            Some(h) => {
                status = status.worst(Status::Warn);
                parts.push(format!(
                    "writers were unfrozen {} after errors recovered (hold at least {hold} min)",
                    if h < 0.0 {
                        format!("{:.0} min before, not", -h)
                    } else {
                        format!("only {h:.0} min")
                    }
                ));
            }
            None => {
                status = status.worst(Status::Warn);
                parts.push(format!(
                    "writers were unfrozen at {} though errors never recovered for good",
                    format_millis(fr.end)
                ));
            }
        }
    }
    if parts.is_empty() {
        parts.push(match freeze {
            Some(_) => format!(
                "no execution during the freeze, one writer per side effect at the flip, {} after the freeze",
                plural(partial.executions_after_freeze, "execution", "executions")
            ),
            None => "one writer per side effect at the flip (no freeze window given)".to_string(),
        });
    }
    let mut result = CheckResult::new(INFO.id, status, parts.join("; "))
        .metric(
            "writes_during_freeze",
            Metric::Count(partial.writes_during_freeze),
        )
        .metric("two_writer_effects", Metric::Count(two_writers))
        .metric(
            "freeze_by_writer",
            Metric::Counts(partial.freeze_by_writer.sorted()),
        )
        .metric(
            "freeze_by_effect",
            Metric::Counts(partial.freeze_by_effect.sorted()),
        )
        .metric(
            "executions_after_freeze",
            Metric::Count(partial.executions_after_freeze),
        )
        .metric("never_unfrozen", Metric::Flag(never_unfrozen))
        .metric("freeze_window", Metric::Flag(freeze.is_some()));
    if let Some(fr) = freeze {
        result = result
            .metric("green_at", Metric::Time(green_at))
            .metric("unfreeze_at", Metric::Time(Some(fr.end)))
            .metric("held_minutes_before_unfreeze", Metric::Number(held));
    }
    let mut result = result.cells(
        format!(
            "{} in the freeze, {}",
            plural(partial.writes_during_freeze, "write", "writes"),
            plural(two_writers, "two-writer effect", "two-writer effects")
        ),
        "",
        "0 writes in the freeze, 0 two-writer effects",
    );
    let mut samples: Vec<Fields> = partial
        .freeze_samples
        .pick(SAMPLE_CAP)
        .into_iter()
        .map(|w| {
            let mut f = Fields::new();
            f.insert("kind".into(), Metric::Text(Some("during_freeze".into())));
            f.insert("ts".into(), Metric::Time(Some(w.ts)));
            f.insert("receipt_id".into(), Metric::Text(w.receipt_id));
            f.insert("writer".into(), Metric::Text(w.writer));
            f.insert("effect".into(), Metric::Text(w.effect));
            f.insert("idempotency_key".into(), Metric::Text(w.idempotency_key));
            f
        })
        .collect();
    samples.extend(
        key_samples(f.states, &summary.flip_targets)
            .into_iter()
            .map(|mut f| {
                f.insert("kind".into(), Metric::Text(Some("two_writers".into())));
                f
            }),
    );
    result.samples = samples;
    result
}
