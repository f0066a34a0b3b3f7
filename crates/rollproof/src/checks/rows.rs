//! Not a check: the row accounting every audit keeps beside the checks — rows per side, rows
//! outside every window, the span of the data. Windowed checks read it to decide whether a side
//! has enough requests.

use serde::{Deserialize, Serialize};

use crate::columns::{Col, Table};
use crate::engine::{Kernel, Rows, Stage, States, SIDE_NONE};
use crate::plan::Ctx;
use crate::time::Micros;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct RowCounts {
    pub(crate) rows: u64,
    pub(crate) audited: u64,
    pub(crate) side_rows: [u64; 2],
    pub(crate) other_arm: u64,
    pub(crate) min_ts: Option<Micros>,
    pub(crate) max_ts: Option<Micros>,
    /// Rows outside every window and not audited.
    pub(crate) outside: u64,
}

pub(crate) struct RowsKernel;
pub(crate) static ROWS: RowsKernel = RowsKernel;

impl Kernel for RowsKernel {
    type State = RowCounts;
    const NAME: &'static str = "rows";
    const TABLE: Table = Table::Requests;
    const STAGE: Stage = Stage::Requests;

    fn columns(&self, _ctx: &Ctx) -> Vec<Col> {
        Vec::new()
    }

    fn init(&self, _ctx: &Ctx, _prior: &States) -> RowCounts {
        RowCounts::default()
    }

    fn update(&self, _ctx: &Ctx, state: &mut RowCounts, rows: &Rows<'_>) {
        state.rows += rows.len() as u64;
        for (&set, &side) in rows.set.iter().zip(&rows.side) {
            state.audited += (set != 0) as u64;
            if side != SIDE_NONE {
                state.side_rows[side as usize - 1] += 1;
            }
            state.outside += (set == 0 && side == SIDE_NONE) as u64;
        }
        state.other_arm += rows.other_arm;
        let ts = rows.batch.ts();
        if let (Some(lo), Some(hi)) = (ts.iter().min(), ts.iter().max()) {
            state.min_ts = Some(state.min_ts.map_or(*lo, |m| m.min(*lo)));
            state.max_ts = Some(state.max_ts.map_or(*hi, |m| m.max(*hi)));
        }
    }

    fn merge(&self, state: &mut RowCounts, other: RowCounts) {
        state.rows += other.rows;
        state.audited += other.audited;
        state.side_rows[0] += other.side_rows[0];
        state.side_rows[1] += other.side_rows[1];
        state.other_arm += other.other_arm;
        state.outside += other.outside;
        state.min_ts = min_option(state.min_ts, other.min_ts);
        state.max_ts = max_option(state.max_ts, other.max_ts);
    }
}

pub(crate) fn min_option(a: Option<Micros>, b: Option<Micros>) -> Option<Micros> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub(crate) fn max_option(a: Option<Micros>, b: Option<Micros>) -> Option<Micros> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl RowCounts {
    /// `inconclusive` reason when a side has fewer than `min_requests` rows.
    pub(crate) fn too_few(&self, ctx: &Ctx) -> Option<String> {
        let min = ctx.thresholds.min_requests;
        let names = ctx.plan.side_names();
        let short: Vec<String> = (0..2)
            .filter(|&i| self.side_rows[i] < min)
            .map(|i| format!("{} has {} requests", names[i], self.side_rows[i]))
            .collect();
        (!short.is_empty()).then(|| {
            format!(
                "too little data: {} (min_requests = {min})",
                short.join(", ")
            )
        })
    }
}
