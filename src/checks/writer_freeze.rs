//! `writer_freeze` (rollback): no writes during the freeze, one writer at the flip, jobs unfrozen.
//!
//! Reads the same partial state as `duplicate_effects` (one pass over the receipts).

use super::{
    duplicate_effects, sorted_counts, CheckInfo, CheckResult, Ctx, Fields, Metric, Status, ROLLBACK,
};
use crate::time::format_millis;

pub static INFO: CheckInfo = CheckInfo {
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
        end of data and no execution has ts at or after the freeze end (jobs never unfrozen).",
    columns_it_needs: "receipts: ts, idempotency_key, writer_id; decision and effect for breakdowns; a [windows] \
        freeze for the freeze figures.",
};

pub fn finish(
    partial: &duplicate_effects::Partial,
    summary: &duplicate_effects::Summary,
    ctx: &Ctx,
    end_of_data: Option<i64>,
    samples: Vec<Fields>,
) -> CheckResult {
    if let Some(reason) = duplicate_effects::Partial::skip_reason(ctx) {
        return CheckResult::skip(INFO.id, reason);
    }
    let two_writers = summary.two_writer_effects;
    let mut status = Status::Pass;
    let mut parts = Vec::new();
    if partial.writes_during_freeze > 0 {
        status = Status::Fail;
        parts.push(format!(
            "{} executions during the write freeze",
            partial.writes_during_freeze
        ));
    }
    if two_writers > 0 {
        status = Status::Fail;
        parts.push(format!(
            "{two_writers} side effect{} executed by two or more writers within ±60 s of the flip",
            if two_writers == 1 { "" } else { "s" }
        ));
    }
    let never_unfrozen = match (ctx.freeze, end_of_data) {
        (Some(f), Some(end)) => f.end <= end && partial.executions_after_freeze == 0,
        _ => false,
    };
    if never_unfrozen {
        status = status.worst(Status::Warn);
        parts.push(format!(
            "no execution since the freeze ended at {}: were the jobs unfrozen?",
            ctx.freeze.map(|f| format_millis(f.end)).unwrap_or_default()
        ));
    }
    if parts.is_empty() {
        parts.push(match ctx.freeze {
            Some(_) => format!(
                "no execution during the freeze, one writer per side effect at the flip, {} executions after the freeze",
                partial.executions_after_freeze
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
        .metric("freeze_by_writer", sorted_counts(&partial.freeze_by_writer))
        .metric("freeze_by_effect", sorted_counts(&partial.freeze_by_effect))
        .metric(
            "executions_after_freeze",
            Metric::Count(partial.executions_after_freeze),
        )
        .metric("never_unfrozen", Metric::Flag(never_unfrozen))
        .metric("freeze_window", Metric::Flag(ctx.freeze.is_some()))
        .cells(
            format!(
                "{} writes in freeze, {two_writers} two-writer effects",
                partial.writes_during_freeze
            ),
            "",
            "0 and 0",
        );
    result.samples = samples;
    result
}
