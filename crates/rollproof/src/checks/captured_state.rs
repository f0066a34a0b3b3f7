//! `captured_state`: the state dump made before the flip exists, was made before it, names the
//! eight pins, and matches what the logs show was live.

use serde::{Deserialize, Serialize};

use super::Lever;
use super::{CheckInfo, CheckResult, CheckSpec, Finish, Metric, Status, ROLLBACK};
use crate::columns::{Col, Table, PIN_COLUMNS};
use crate::engine::{Kernel, Rows, Stage, States};
use crate::plan::Ctx;
use crate::stats::Counts;
use crate::time::MICROS_PER_MINUTE;

pub(crate) static CHECK: CheckSpec = CheckSpec {
    info: &INFO,
    kernels: &[&LIVE_PINS],
    finish,
    evidence: &[],
};

pub(crate) static INFO: CheckInfo = CheckInfo {
    id: "captured_state",
    title: "Captured state",
    modes: ROLLBACK,
    what_it_checks: "The file of [inputs] captured_state (TOML or JSON): captured_at, the eight pins as top-level \
        keys (the set that was live, the bad one), optional delta_s_samples and coverage_samples. Each captured pin \
        is compared with the most frequent value of that pin among requests in the 10 minutes before flip_at \
        (ties: the smaller string). The file's content is copied into the report.",
    why_it_matters: "Step 1 of the rollback checklist is to capture the live state for the postmortem. A dump \
        made after the flip, or one that does not match what the logs show was serving, is not evidence of what \
        went wrong.",
    what_fails_it: "It warns when captured_at is after flip_at (or absent), when the file names fewer than the \
        eight pins, or when a pin does not match the logs. It never fails. It skips when no file is given.",
    columns_it_needs: "the captured-state file; ts and the pin columns of the requests.",
    figures: &[
        ("captured", "Whether a captured-state file was given (always true when the check runs)."),
        ("captured_at", "Its captured_at."),
        ("pins_captured", "How many of the eight pins it names."),
        ("pins_matching_logs", "Captured pins equal to the most frequent value of that pin among requests in [flip_at − 10 min, flip_at)."),
        ("mismatched_pins", "The other captured pins, sorted."),
    ],
    remediation: "capture the live state (pins, ΔS and coverage samples) before the next flip, and keep it with the postmortem",
    region_column: None,
    impact: None,
    events: None,
    lever: Some(|_| Some(Lever::CaptureEvidence)),
};

/// Per pin, the values of the requests in the 10 minutes before the flip.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct State {
    values: Vec<Counts>,
}

pub(crate) struct LivePinsKernel;
pub(crate) static LIVE_PINS: LivePinsKernel = LivePinsKernel;

impl Kernel for LivePinsKernel {
    type State = State;
    const NAME: &'static str = "live_pins";
    const TABLE: Table = Table::Requests;
    const STAGE: Stage = Stage::Requests;

    fn columns(&self, ctx: &Ctx) -> Vec<Col> {
        if ctx.captured_state {
            PIN_COLUMNS.to_vec()
        } else {
            Vec::new()
        }
    }

    fn init(&self, _ctx: &Ctx, _prior: &States) -> State {
        State {
            values: vec![Counts::default(); PIN_COLUMNS.len()],
        }
    }

    fn update(&self, ctx: &Ctx, state: &mut State, rows: &Rows<'_>) {
        let (true, Some(flip)) = (ctx.captured_state, ctx.plan.flip_at()) else {
            return;
        };
        let from = flip - 10 * MICROS_PER_MINUTE;
        let ts = rows.batch.ts();
        let inside: Vec<usize> = (0..ts.len())
            .filter(|&i| ts[i] >= from && ts[i] < flip)
            .collect();
        if inside.is_empty() {
            return;
        }
        for (p, col) in PIN_COLUMNS.iter().enumerate() {
            let Some(values) = rows.batch.str(*col) else {
                continue;
            };
            for &i in &inside {
                if let Some(v) = values.get(i) {
                    state.values[p].bump(v);
                }
            }
        }
    }

    fn merge(&self, state: &mut State, other: State) {
        for (a, b) in state.values.iter_mut().zip(other.values) {
            a.merge(b);
        }
    }
}

fn finish(f: &Finish<'_>) -> CheckResult {
    let ctx = f.ctx;
    // Without the file the check skips: an incident file that does not name one keeps the
    // verdict it had before this check existed.
    let Some(captured) = f.captured else {
        return CheckResult::skip(INFO.id, "no captured state ([inputs] captured_state)");
    };
    let live = f.states.get::<LivePinsKernel>();
    let mut matching = 0u64;
    let mut mismatched = Vec::new();
    for (p, col) in PIN_COLUMNS.iter().enumerate() {
        let Some(value) = captured.pins.get(col) else {
            continue;
        };
        // The most frequent value; ties go to the smaller string.
        let top = live.values[p]
            .sorted()
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|(v, _)| v);
        if top.as_deref() == Some(value.as_str()) {
            matching += 1;
        } else {
            mismatched.push(col.name().to_string());
        }
    }
    mismatched.sort();
    let flip = ctx.plan.flip_at();
    let late = matches!((captured.captured_at, flip), (Some(c), Some(fl)) if c > fl);
    let pins_captured = captured.pins.len() as u64;
    let mut parts = Vec::new();
    if late {
        parts.push("captured after the flip".to_string());
    }
    if captured.captured_at.is_none() {
        parts.push("no captured_at".to_string());
    }
    if pins_captured < PIN_COLUMNS.len() as u64 {
        parts.push(format!("{pins_captured} of 8 pins captured"));
    }
    if !mismatched.is_empty() {
        parts.push(format!(
            "{} the logs' live values before the flip",
            if mismatched.len() == 1 {
                format!("`{}` differs from", mismatched[0])
            } else {
                format!("{} differ from", mismatched.join(", "))
            }
        ));
    }
    let status = if parts.is_empty() {
        Status::Pass
    } else {
        Status::Warn
    };
    if parts.is_empty() {
        parts.push(
            "the 8 captured pins match the live values of the 10 minutes before the flip"
                .to_string(),
        );
    }
    CheckResult::new(INFO.id, status, parts.join("; "))
        .metric("captured", Metric::Flag(true))
        .metric("captured_at", Metric::Time(captured.captured_at))
        .metric("pins_captured", Metric::Count(pins_captured))
        .metric("pins_matching_logs", Metric::Count(matching))
        .metric("mismatched_pins", Metric::Texts(mismatched))
        .cells(
            format!("{matching} of {pins_captured} pins match"),
            "",
            "8 of 8 before the flip (warn)",
        )
}
