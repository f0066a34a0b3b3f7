//! `evidence`: what the postmortem can cite — inputs with row counts and hashes, expected pins,
//! the root cause link.

use super::Lever;
use super::{CheckInfo, CheckResult, CheckSpec, Finish, Metric, Status, BOTH};
use crate::plan::Mode;
use crate::words::plural;

pub(crate) static CHECK: CheckSpec = CheckSpec {
    info: &INFO,
    kernels: &[],
    finish,
    evidence: &[],
};

pub(crate) static INFO: CheckInfo = CheckInfo {
    id: "evidence",
    title: "Evidence for the postmortem",
    modes: BOTH,
    what_it_checks: "That the audit has what a postmortem cites: every input file with its row count and SHA-256 \
        (in the report's `inputs`), the expected pins, a root cause link, and every table the checks need \
        (requests, receipts).",
    why_it_matters: "An audit is evidence only if someone else can re-run it on the same bytes and follow the \
        link to the cause. A missing receipts table means the side-effect questions went unanswered.",
    what_fails_it: "It never fails. It warns when root_cause_url is absent or a table the checks need is missing.",
    columns_it_needs: "none.",
    figures: &[
        ("input_files", "Input files read: requests, receipts, gold files and the captured state."),
        ("input_rows", "Rows read from the requests, receipts and gold files."),
        ("rows_rejected", "Of those, rows without a usable ts (not used)."),
        ("rows_dropped_by_mapping", "Of those, rows the mapping's drop_if_missing left out."),
        ("root_cause_url", "The incident file's root_cause_url, or null."),
        ("receipts_given", "Whether receipts were given."),
        ("expected_pins", "The pins named in [expected_pins]."),
    ],
    remediation: "link the root cause and attach the receipts so the postmortem is complete",
    region_column: None,
    impact: None,
    events: None,
    lever: Some(|_| Some(Lever::CaptureEvidence)),
};

fn finish(f: &Finish<'_>) -> CheckResult {
    let ctx = f.ctx;
    let requests = &f.inputs.requests;
    let receipts = f.inputs.receipts.as_ref();
    let mut status = Status::Pass;
    let mut notes = Vec::new();
    if ctx.root_cause_url.is_none() {
        status = Status::Warn;
        notes.push("no root_cause_url in the incident file".to_string());
    }
    if receipts.is_none() {
        status = Status::Warn;
        notes.push("no receipts table: the side-effect checks were skipped".to_string());
    }
    let tables = [Some(requests), receipts, f.inputs.gold.as_ref()];
    let sum = |field: fn(&super::TableTotals) -> u64| -> u64 {
        tables.iter().flatten().map(|t| field(t)).sum()
    };
    let files = sum(|t| t.files) + u64::from(f.inputs.captured);
    let rows = sum(|t| t.rows);
    let summary = if notes.is_empty() {
        format!(
            "{} ({}) hashed; root cause linked",
            plural(files, "input file", "input files"),
            plural(rows, "row", "rows")
        )
    } else {
        format!(
            "{} ({}) hashed; {}",
            plural(files, "input file", "input files"),
            plural(rows, "row", "rows"),
            notes.join("; ")
        )
    };
    let expected: Vec<String> = ctx
        .plan
        .pin_sets()
        .iter()
        .enumerate()
        .flat_map(|(s, set)| {
            set.pins.iter().map(move |(c, v)| match ctx.plan.mode() {
                Mode::Rollback => format!("{}={v}", c.name()),
                Mode::Canary => format!("{}.{}={v}", ctx.plan.set_label(s), c.name()),
            })
        })
        .collect();
    CheckResult::new(INFO.id, status, summary)
        .metric("input_files", Metric::Count(files))
        .metric("input_rows", Metric::Count(rows))
        .metric("rows_rejected", Metric::Count(sum(|t| t.rejected)))
        .metric("rows_dropped_by_mapping", Metric::Count(sum(|t| t.dropped)))
        .metric("root_cause_url", Metric::Text(ctx.root_cause_url.clone()))
        .metric("receipts_given", Metric::Flag(receipts.is_some()))
        .metric("expected_pins", Metric::Texts(expected))
        .cells(
            format!(
                "{}, {}",
                plural(files, "file", "files"),
                plural(rows, "row", "rows")
            ),
            "",
            "root cause linked, all tables given",
        )
        .sample_size(rows.to_string())
}
