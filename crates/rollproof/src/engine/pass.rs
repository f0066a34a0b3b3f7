//! One parallel pass over a table: every unit (a Parquet row group or a whole file) is read once
//! and fed to all the kernels of the pass; one worker per thread folds the units it takes into its
//! own states, and the workers' states are merged at the end. Merges are exact, so the result does not depend on the thread count or on the order
//! units finish in.

use std::any::Any;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use rayon::prelude::*;

use super::{AnyKernel, Rows, States};
use crate::columns::{Col, Table};
use crate::error::{InputError, Problem};
use crate::ingest::{RowFilter, TablePlan, Unit, UnitCounts};
use crate::plan::Ctx;
use crate::time::Micros;

/// Called with progress: (table, units done, units total).
pub(crate) type Progress<'a> = &'a (dyn Fn(Table, u64, u64) + Sync);

/// The merged states of a pass (in the order of its kernels) and what each unit counted (in the
/// order of the units it was given).
pub(crate) struct PassOutput {
    pub(crate) states: Vec<Box<dyn Any + Send + Sync>>,
    pub(crate) counts: Vec<UnitCounts>,
    /// Per unit, the `ts` range of its rows ([`UnitCounts::ts_range`]), when the caller keeps
    /// them for a later pass; else empty.
    pub(crate) ts_ranges: Vec<Option<(Micros, Micros)>>,
    /// How many units the pass read (0 when it merged partials instead).
    pub(crate) units_read: usize,
}

impl PassOutput {
    /// The counts summed per file of `table`.
    pub(crate) fn per_file(&self, table: &TablePlan, units: &[Unit]) -> Vec<UnitCounts> {
        let mut files = vec![UnitCounts::default(); table.files.len()];
        for (unit, c) in units.iter().zip(&self.counts) {
            files[unit.file].add(c);
        }
        files
    }
}

struct Acc {
    states: Vec<Box<dyn Any + Send + Sync>>,
    counts: Vec<UnitCounts>,
    problems: Vec<Problem>,
}

/// The columns a pass reads: what the row classes need, and the union of its kernels' columns,
/// sorted.
pub(crate) fn columns(ctx: &Ctx, table: Table, kernels: &[&dyn AnyKernel]) -> Vec<Col> {
    let mut cols: Vec<Col> = Rows::columns(ctx, table);
    cols.extend(kernels.iter().flat_map(|k| k.columns(ctx)));
    cols.sort();
    cols.dedup();
    cols
}

/// The rows worth reading whole when every kernel of the pass has a key test (look-ups by key):
/// those where some kernel's key passes its test.
fn row_filter(
    kernels: &[&dyn AnyKernel],
    states: &[Box<dyn Any + Send + Sync>],
) -> Option<RowFilter> {
    let keys = kernels
        .iter()
        .zip(states)
        .map(|(k, s)| k.key_test(s.as_ref()))
        .collect::<Option<Vec<_>>>()?;
    (!keys.is_empty()).then_some(RowFilter { keys })
}

/// Folds `units` of `table` into fresh states of `kernels`, collecting the problems of all
/// units.
pub(crate) fn run(
    ctx: &Ctx,
    table: &TablePlan,
    units: &[Unit],
    kernels: &[&dyn AnyKernel],
    prior: &States,
    progress: Progress<'_>,
) -> Result<PassOutput, InputError> {
    let wanted = columns(ctx, table.table, kernels);
    let total = units.len() as u64;
    let done = AtomicU64::new(0);
    let empty = || Acc {
        states: kernels.iter().map(|k| k.init(ctx, prior)).collect(),
        counts: vec![UnitCounts::default(); units.len()],
        problems: Vec::new(),
    };
    let fold = |acc: &mut Acc, filter: Option<&RowFilter>, at: usize| {
        let unit = &units[at];
        let read = table.read_unit_filtered(*unit, &wanted, filter, |batch| {
            let rows = Rows::new(ctx, table.table, batch);
            for (kernel, state) in kernels.iter().zip(acc.states.iter_mut()) {
                kernel.update(ctx, state.as_mut(), &rows);
            }
        });
        match read {
            Ok(c) => acc.counts[at].add(&c),
            Err(e) => acc.problems.extend(e.problems),
        }
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        progress(table.table, n, total);
    };
    // One accumulator per worker, each pulling the next unit: at most `threads` states are alive,
    // however many units there are (rayon's fold keeps one per split, up to one per unit, and a
    // state that grows with keys — users, idempotency keys — then exists once per row group).
    let workers = rayon::current_num_threads().clamp(1, units.len().max(1));
    let next = AtomicUsize::new(0);
    let accs: Vec<Acc> = (0..workers)
        .into_par_iter()
        .map(|_| {
            let mut acc = empty();
            let filter = row_filter(kernels, &acc.states);
            loop {
                let at = next.fetch_add(1, Ordering::Relaxed);
                if at >= units.len() {
                    break;
                }
                fold(&mut acc, filter.as_ref(), at);
            }
            for (kernel, state) in kernels.iter().zip(acc.states.iter_mut()) {
                kernel.flush(state.as_mut());
            }
            acc
        })
        .collect();
    let mut accs = accs.into_iter();
    let mut result = accs.next().unwrap_or_else(empty);
    for b in accs {
        for (x, y) in result.counts.iter_mut().zip(&b.counts) {
            x.add(y);
        }
        result.problems.extend(b.problems);
        for ((kernel, mine), theirs) in kernels.iter().zip(result.states.iter_mut()).zip(b.states) {
            kernel.merge(mine.as_mut(), theirs);
        }
    }
    if !result.problems.is_empty() {
        let mut problems = result.problems;
        problems.sort_by(|a, b| (&a.file, &a.location).cmp(&(&b.file, &b.location)));
        problems.dedup();
        return Err(InputError { problems });
    }
    Ok(PassOutput {
        states: result.states,
        counts: result.counts,
        ts_ranges: Vec::new(),
        units_read: units.len(),
    })
}
