//! `reconciliation`: receipts joined to requests — orphan receipts, and side effects executed for
//! requests that failed (the retry-duplicate risk).
//!
//! The receipts are read first; the request ids they name (64-bit hashes) are indexed when their
//! state settles, and the request pass looks each request id up in that index, marking the ids it
//! sees and whether a request with the id failed. The join itself happens when the request side
//! settles.

use crate::words::{count, plural};
use rayon::slice::ParallelSliceMut;
use std::sync::Arc;

use arrow::array::Array;
use serde::{Deserialize, Serialize};

use super::Lever;
use super::{
    CheckInfo, CheckResult, CheckSpec, Evidence, Fields, Finish, Metric, Status, BOTH, SAMPLE_CAP,
};
use crate::columns::{hash_str, Col, Table};
use crate::engine::lookup::{Found, Lookup, LookupSpec};
use crate::engine::{Kernel, Rows, Stage, States};
use crate::plan::Ctx;
use crate::stats::hash_index::HashIndex;
use crate::stats::{concat_runs, Samples, Targets, AHEAD};
use crate::time::format_millis;

pub(crate) static CHECK: CheckSpec = CheckSpec {
    info: &INFO,
    kernels: &[&RECEIPT_SIDE, &REQUEST_SIDE, &REQUEST_LOOKUP],
    finish,
    evidence: &[
        &Evidence {
            kind: "receipts_of_requests_not_in_the_logs",
            table: Table::Receipts,
            select: |ctx, states, rows| receipts_of(ctx, states, rows, |j| &j.orphans, false),
        },
        &Evidence {
            kind: "executions_for_failed_requests",
            table: Table::Receipts,
            select: |ctx, states, rows| receipts_of(ctx, states, rows, |j| &j.failed, true),
        },
    ],
};

pub(crate) static INFO: CheckInfo = CheckInfo {
    id: "reconciliation",
    title: "Receipts reconciled with requests",
    modes: BOTH,
    what_it_checks: "Joins receipts to requests by request_id. Orphans: receipts whose request_id is not among \
        the requests. Executions on failed requests: executions (decision missing or `new`) whose request \
        returned a user-visible error (status >= 500 or 429).",
    why_it_matters: "A side effect executed for a request the user saw fail is the classic retry-duplicate \
        risk: the client retries, and unless the idempotency fence holds, the effect runs twice. Orphan \
        receipts mean the request logs are incomplete (sampling, a missing region, a lost file), so every \
        other figure may be missing evidence.",
    what_fails_it: "It never fails: it warns when orphan receipts or executions on failed requests exist. \
        Neither proves harm on its own; both are evidence a postmortem must explain.",
    columns_it_needs: "receipts: ts, request_id (decision, receipt_id, idempotency_key, effect for samples); \
        requests: request_id, status.",
    figures: &[
        ("orphan_receipts", "Receipts (in scope) whose request_id is not among the requests."),
        ("orphan_request_ids", "Distinct request_id values of those receipts."),
        ("executions_on_failed_requests", "Executions whose request returned a user-visible error (status >= 500 or 429)."),
        ("failed_requests_with_executions", "Distinct failed requests with at least one execution."),
    ],
    remediation: "explain the orphan receipts (missing logs?) and check the effects of failed requests for retries",
    region_column: None,
    impact: None,
    events: None,
    lever: Some(|_| Some(Lever::FenceAndReconcile)),
};

/// The receipts' request ids: (request id hash, is execution) per receipt, in runs that merge by
/// concatenation; indexed once settled.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct ReceiptSide {
    runs: Vec<Vec<(u64, bool)>>,
    #[serde(skip)]
    table: Option<Arc<ReceiptTable>>,
}

/// The receipts' request ids, indexed, with their counts per slot.
#[derive(Debug)]
pub(crate) struct ReceiptTable {
    index: HashIndex,
    counts: SlotCounts,
}

/// Receipts and executions per slot of the index, in one byte a slot: the receipts in the low
/// four bits, the executions in the high four, while both are below [`SlotCounts::ESCAPE`]'s
/// nibble (15); a slot that passes it holds `ESCAPE` and its exact counts live in `large`. A
/// request id has a receipt or a few, so `large` stays empty on real logs, and the table costs
/// a byte a slot instead of eight (on the 10M benchmark's 0.8M receipts 1 MB instead of
/// 8.6 MB; with 4M receipts 5 MB instead of 43 MB).
#[derive(Debug, Default)]
struct SlotCounts {
    small: Vec<u8>,
    /// Exact (receipts, executions) of the escaped slots, counted saturating.
    large: std::collections::BTreeMap<usize, (u32, u32)>,
}

impl SlotCounts {
    const ESCAPE: u8 = 0xff;

    fn with_capacity(n: usize) -> SlotCounts {
        SlotCounts {
            small: Vec::with_capacity(n),
            large: Default::default(),
        }
    }

    fn len(&self) -> usize {
        self.small.len()
    }

    /// Counts one receipt at `slot` (an execution when `execution`).
    fn add(&mut self, slot: usize, execution: bool) {
        if slot >= self.small.len() {
            self.small.resize(slot + 1, 0);
        }
        let (receipts, executions) = self.get(slot);
        let receipts = receipts.saturating_add(1);
        let executions = executions.saturating_add(execution as u32);
        // An escaped slot's counts passed 14 already, so it stays escaped.
        if receipts < 15 && executions < 15 {
            self.small[slot] = receipts as u8 | (executions as u8) << 4;
        } else {
            self.small[slot] = Self::ESCAPE;
            self.large.insert(slot, (receipts, executions));
        }
    }

    /// (receipts, executions) at `slot`.
    fn get(&self, slot: usize) -> (u32, u32) {
        match self.small.get(slot) {
            Some(&Self::ESCAPE) => self.large[&slot],
            Some(&b) => ((b & 15) as u32, (b >> 4) as u32),
            None => (0, 0),
        }
    }
}

/// Request side: the receipts' request ids the requests have, and whether they failed.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct RequestSide {
    /// The receipts' index, to skip every other request id (not part of the state).
    #[serde(skip)]
    filter: Option<Arc<ReceiptTable>>,
    /// Per slot of `filter`'s index, while this process folds rows: [`SEEN`] when a request has
    /// the id, [`FAILED`] when one of them failed. A byte per receipt id (merged by OR) instead
    /// of an entry per matching request: on the 10M benchmark, 1 MB per worker instead of 13 MB,
    /// and no sort when the join walks it. Empty, or as long as `filter`'s counts. Moved into
    /// `found` ([`RequestSide::spill`]) when the state leaves the process or splits into ranges.
    #[serde(skip)]
    marks: Vec<u8>,
    /// (request id hash, failed) per matching request (or, spilled from `marks`, per matching
    /// request id), in runs. The only form a partial-state file carries: a process that merges
    /// partials has no receipts' index of its own.
    found: Vec<Vec<(u64, bool)>>,
    /// The join, once settled.
    #[serde(skip)]
    joined: Option<Joined>,
    /// The joins of complete key ranges ([`Kernel::compact`]), added in when settled.
    compacted: Option<Joined>,
}

/// Bits of [`RequestSide::marks`].
const SEEN: u8 = 1;
const FAILED: u8 = 2;

impl RequestSide {
    /// Moves the marks into `found`, as one run of (hash, failed) in ascending order of hash.
    fn spill(&mut self) {
        let marks = std::mem::take(&mut self.marks);
        let Some(table) = self.filter.as_ref().filter(|_| !marks.is_empty()) else {
            return;
        };
        let run: Vec<(u64, bool)> = table
            .index
            .members()
            .filter_map(|(slot, h)| {
                let m = marks.get(slot).copied().unwrap_or(0);
                (m & SEEN != 0).then_some((h, m & FAILED != 0))
            })
            .collect();
        if !run.is_empty() {
            self.found.push(run);
        }
    }
}

/// Per row: a receipt in scope whose request id is in the set `which` picks from the join (and an
/// execution, when `executions_only`).
fn receipts_of(
    ctx: &Ctx,
    states: &States,
    rows: &Rows<'_>,
    which: fn(&Joined) -> &Vec<u64>,
    executions_only: bool,
) -> Vec<bool> {
    let batch = rows.batch;
    let n = batch.len();
    let joined = states
        .try_get::<RequestSideKernel>()
        .and_then(|r| r.joined.as_ref());
    let (Some(joined), Some(request)) = (joined, batch.str(Col::RRequestId)) else {
        return vec![false; n];
    };
    let ids = which(joined);
    let decision = batch.str(Col::Decision);
    let ts = batch.ts();
    (0..n)
        .map(|i| {
            ctx.plan.receipt_in_scope(ts[i])
                && (!executions_only || is_execution(decision.as_ref().and_then(|d| d.get(i))))
                && request
                    .get(i)
                    .is_some_and(|id| ids.binary_search(&hash_str(Some(id))).is_ok())
        })
        .collect()
}

fn applies(ctx: &Ctx) -> bool {
    ctx.has_receipt(Col::RRequestId) && ctx.has(Col::RequestId)
}

#[inline]
fn is_execution(decision: Option<&str>) -> bool {
    decision.is_none_or(|d| d.trim().eq_ignore_ascii_case("new"))
}

pub(crate) struct ReceiptSideKernel;
pub(crate) static RECEIPT_SIDE: ReceiptSideKernel = ReceiptSideKernel;

impl Kernel for ReceiptSideKernel {
    type State = ReceiptSide;
    const NAME: &'static str = "receipt_requests";
    const TABLE: Table = Table::Receipts;
    const STAGE: Stage = Stage::Receipts;

    fn canonicalize(&self, state: &mut ReceiptSide) {
        let mut all = concat_runs(std::mem::take(&mut state.runs));
        all.sort_unstable();
        state.runs = vec![all];
    }

    fn columns(&self, _ctx: &Ctx) -> Vec<Col> {
        vec![Col::RRequestId, Col::Decision]
    }

    fn init(&self, _ctx: &Ctx, _prior: &States) -> ReceiptSide {
        ReceiptSide::default()
    }

    fn update(&self, ctx: &Ctx, state: &mut ReceiptSide, rows: &Rows<'_>) {
        if !applies(ctx) {
            return;
        }
        let batch = rows.batch;
        let request = batch.str(Col::RRequestId).expect("projected");
        let hashes = request.map_rows(|r| r.map(|r| hash_str(Some(r))));
        let decision = batch.str(Col::Decision);
        let ts = batch.ts();
        let mut run = Vec::with_capacity(batch.len());
        for i in 0..batch.len() {
            let Some(h) = hashes[i] else { continue };
            if ctx.plan.receipt_in_scope(ts[i]) {
                run.push((h, is_execution(decision.as_ref().and_then(|d| d.get(i)))));
            }
        }
        state.runs.push(run);
    }

    fn merge(&self, state: &mut ReceiptSide, other: ReceiptSide) {
        state.runs.extend(other.runs);
    }

    const KEYED: bool = true;

    fn take_range(
        &self,
        state: &mut ReceiptSide,
        range: usize,
        ranges: usize,
    ) -> Option<ReceiptSide> {
        Some(ReceiptSide {
            runs: vec![take_range_of(&mut state.runs, range, ranges)],
            table: None,
        })
    }

    fn split_ranges(&self, state: &mut ReceiptSide, ranges: usize) -> Option<Vec<ReceiptSide>> {
        let parts = split_runs(&mut state.runs, ranges);
        Some(
            parts
                .into_iter()
                .map(|run| ReceiptSide {
                    runs: vec![run],
                    table: None,
                })
                .collect(),
        )
    }

    /// The range's receipts are joined ([`RequestSideKernel`]'s compaction holds the result).
    fn compact(&self, _ctx: &Ctx, state: &mut ReceiptSide) {
        *state = ReceiptSide::default();
    }

    /// Indexes the request ids with their counts: sorted first, so that the index and the
    /// counts are written front to back (see [`HashIndex`]); the runs are freed as they are
    /// gathered.
    fn settle(&self, ctx: &Ctx, state: &mut ReceiptSide, _prior: &States) {
        if !applies(ctx) {
            return;
        }
        let mut all = concat_runs(std::mem::take(&mut state.runs));
        all.par_sort_unstable();
        let mut index = HashIndex::with_capacity(all.len());
        let mut counts = SlotCounts::with_capacity(index.capacity());
        for (i, &(h, exec)) in all.iter().enumerate() {
            // The slots are written front to back, but each hash's Bloom filter block is
            // anywhere: with millions of receipts the filter is megabytes, and each push waited
            // for its block (86% of this loop's samples at 8M receipts). Ask for it ahead.
            if let Some(&(later, _)) = all.get(i + AHEAD) {
                index.prefetch_filter(later);
            }
            counts.add(index.push(h), exec);
        }
        state.table = Some(Arc::new(ReceiptTable { index, counts }));
    }
}

pub(crate) struct RequestSideKernel;
pub(crate) static REQUEST_SIDE: RequestSideKernel = RequestSideKernel;

impl Kernel for RequestSideKernel {
    type State = RequestSide;
    const NAME: &'static str = "request_ids";
    const TABLE: Table = Table::Requests;
    const STAGE: Stage = Stage::Requests;

    fn canonicalize(&self, state: &mut RequestSide) {
        state.spill();
        let mut all = concat_runs(std::mem::take(&mut state.found));
        all.sort_unstable();
        state.found = vec![all];
    }

    fn columns(&self, _ctx: &Ctx) -> Vec<Col> {
        vec![Col::RequestId, Col::Status]
    }

    fn init(&self, _ctx: &Ctx, prior: &States) -> RequestSide {
        RequestSide {
            filter: prior
                .try_get::<ReceiptSideKernel>()
                .and_then(|r| r.table.clone()),
            marks: Vec::new(),
            found: Vec::new(),
            joined: None,
            compacted: None,
        }
    }

    fn update(&self, ctx: &Ctx, state: &mut RequestSide, rows: &Rows<'_>) {
        let batch = rows.batch;
        let Some(request) = batch.str(Col::RequestId) else {
            return;
        };
        let status = batch.int(Col::Status);
        let failed = |i: usize| {
            status.is_some_and(|s| {
                s.is_valid(i) && {
                    let v = s.values()[i];
                    v >= 500 || v == 429
                }
            })
        };
        let Some(table) = state.filter.as_ref() else {
            // Sharded: the receipts are folded elsewhere, so every request id is kept for the
            // join at the merge (see docs/scale-out.md for the cost).
            if ctx.sharded && applies(ctx) {
                let run: Vec<(u64, bool)> = request
                    .map_rows(|v| v.map(|s| hash_str(Some(s))))
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, h)| h.map(|h| (h, failed(i))))
                    .collect();
                if !run.is_empty() {
                    state.found.push(run);
                }
            }
            return;
        };
        // Three passes over the batch instead of one branchy loop: hash, test the filter, then
        // probe the few candidates. The tests and the probes ask for the cache lines of the row
        // `AHEAD` (the filter and the index of millions of receipts are past the cache beside a
        // large audit's other tables, and each test then waited for memory alone).
        let hashes = request.map_rows(|v| v.map(|s| hash_str(Some(s))));
        let mut candidates: Vec<(u64, usize)> = Vec::new();
        for (i, h) in hashes.iter().enumerate() {
            if let Some(Some(later)) = hashes.get(i + AHEAD) {
                table.index.prefetch_filter(*later);
            }
            if let Some(h) = h.filter(|&h| table.index.may_contain(h)) {
                candidates.push((h, i));
            }
        }
        if state.marks.is_empty() {
            state.marks = vec![0; table.counts.len()];
        }
        for (j, &(h, i)) in candidates.iter().enumerate() {
            if let Some(&(later, _)) = candidates.get(j + AHEAD) {
                table.index.prefetch(later, &state.marks);
            }
            if let Some(slot) = table.index.find(h) {
                state.marks[slot] |= SEEN | if failed(i) { FAILED } else { 0 };
            }
        }
    }

    fn merge(&self, state: &mut RequestSide, mut other: RequestSide) {
        if state.filter.is_none() {
            state.filter = other.filter.take();
        }
        if state.marks.len() < other.marks.len() {
            std::mem::swap(&mut state.marks, &mut other.marks);
        }
        for (mine, theirs) in state.marks.iter_mut().zip(other.marks) {
            *mine |= theirs;
        }
        state.found.extend(other.found);
        if let Some(theirs) = other.compacted {
            state
                .compacted
                .get_or_insert_with(Joined::default)
                .absorb(theirs);
        }
    }

    fn settle(&self, _ctx: &Ctx, state: &mut RequestSide, prior: &States) {
        let Some(table) = prior
            .try_get::<ReceiptSideKernel>()
            .and_then(|r| r.table.as_ref())
        else {
            return;
        };
        let mut joined = if state.found.is_empty() {
            // Every request id came through this process's index: join the marks directly.
            let marks = std::mem::take(&mut state.marks);
            join_by(table, |slot, _| marks.get(slot).copied().unwrap_or(0))
        } else {
            state.spill();
            let mut found = concat_runs(std::mem::take(&mut state.found));
            found.par_sort_unstable();
            join(table, &found)
        };
        if let Some(ranges) = state.compacted.take() {
            joined.absorb(ranges);
        }
        state.joined = Some(joined);
    }

    const KEYED: bool = true;

    fn take_range(
        &self,
        state: &mut RequestSide,
        range: usize,
        ranges: usize,
    ) -> Option<RequestSide> {
        state.spill();
        Some(RequestSide {
            found: vec![take_range_of(&mut state.found, range, ranges)],
            ..RequestSide::default()
        })
    }

    fn split_ranges(&self, state: &mut RequestSide, ranges: usize) -> Option<Vec<RequestSide>> {
        state.spill();
        let parts = split_runs(&mut state.found, ranges);
        Some(
            parts
                .into_iter()
                .map(|run| RequestSide {
                    found: vec![run],
                    ..RequestSide::default()
                })
                .collect(),
        )
    }

    /// The range's join is complete: keep its figures, drop its request ids.
    fn compact(&self, _ctx: &Ctx, state: &mut RequestSide) {
        state.compacted = state.joined.take();
        state.found.clear();
        state.marks = Vec::new();
    }
}

/// Moves every entry of runs of (request id hash, flag) into the run of its key range.
fn split_runs(runs: &mut Vec<Vec<(u64, bool)>>, ranges: usize) -> Vec<Vec<(u64, bool)>> {
    let mut parts = vec![Vec::new(); ranges];
    for (h, flag) in std::mem::take(runs).into_iter().flatten() {
        parts[crate::engine::range_of(h, ranges)].push((h, flag));
    }
    parts
}

/// Moves the entries of a key range out of runs of (request id hash, flag).
fn take_range_of(
    runs: &mut Vec<Vec<(u64, bool)>>,
    range: usize,
    ranges: usize,
) -> Vec<(u64, bool)> {
    let mut taken = Vec::new();
    for run in runs.iter_mut() {
        run.retain(|&(h, flag)| {
            let keep = crate::engine::range_of(h, ranges) != range;
            if !keep {
                taken.push((h, flag));
            }
            keep
        });
    }
    runs.retain(|r| !r.is_empty());
    taken
}

/// Figures of the join, and the request ids to show as samples.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Joined {
    pub(crate) orphan_receipts: u64,
    pub(crate) orphan_request_ids: u64,
    pub(crate) executions_on_failed_requests: u64,
    pub(crate) failed_requests_with_executions: u64,
    pub(crate) orphan_targets: Vec<u64>,
    pub(crate) failed_targets: Vec<u64>,
    /// Every orphan request id, and every failed request id with executions (sorted hashes).
    pub(crate) orphans: Vec<u64>,
    pub(crate) failed: Vec<u64>,
}

impl Joined {
    /// Adds the join of other request ids (another key range): exact, as no id is in both.
    /// Saturating: a crafted partial may carry any count (honest ones cannot get near).
    fn absorb(&mut self, o: Joined) {
        for (mine, theirs) in [
            (&mut self.orphan_receipts, o.orphan_receipts),
            (&mut self.orphan_request_ids, o.orphan_request_ids),
            (
                &mut self.executions_on_failed_requests,
                o.executions_on_failed_requests,
            ),
            (
                &mut self.failed_requests_with_executions,
                o.failed_requests_with_executions,
            ),
        ] {
            *mine = mine.saturating_add(theirs);
        }
        Samples::smallest_of(SAMPLE_CAP, &mut self.orphan_targets, o.orphan_targets);
        Samples::smallest_of(SAMPLE_CAP, &mut self.failed_targets, o.failed_targets);
        self.orphans.extend(o.orphans);
        self.orphans.sort_unstable();
        self.failed.extend(o.failed);
        self.failed.sort_unstable();
    }
}

/// `found`: (request id hash, failed) sorted, so that a request id's entries are adjacent. The
/// index lists its members in ascending order too, so the join walks both lists once.
fn join(table: &ReceiptTable, found: &[(u64, bool)]) -> Joined {
    let mut rest = found;
    join_by(table, |_, h| {
        let skip = rest.iter().take_while(|(x, _)| *x < h).count();
        rest = &rest[skip..];
        let entries = &rest[..rest.iter().take_while(|(x, _)| *x == h).count()];
        let seen = if entries.is_empty() { 0 } else { SEEN };
        let failed = if entries.iter().any(|(_, f)| *f) {
            FAILED
        } else {
            0
        };
        seen | failed
    })
}

/// The join, given the [`RequestSide::marks`] of each receipt id: `marks(slot, hash)` is called
/// for every member of the index, in ascending order of hash.
fn join_by(table: &ReceiptTable, mut marks: impl FnMut(usize, u64) -> u8) -> Joined {
    let mut j = Joined::default();
    let mut orphans = Samples::new(SAMPLE_CAP);
    let mut failed = Samples::new(SAMPLE_CAP);
    for (slot, h) in table.index.members() {
        let m = marks(slot, h);
        let (receipts, executions) = table.counts.get(slot);
        if m & SEEN == 0 {
            j.orphan_receipts += receipts as u64;
            j.orphan_request_ids += 1;
            orphans.push(h);
            j.orphans.push(h);
        } else if m & FAILED != 0 && executions > 0 {
            j.executions_on_failed_requests += executions as u64;
            j.failed_requests_with_executions += 1;
            failed.push(h);
            j.failed.push(h);
        }
    }
    j.orphans.sort_unstable();
    j.failed.sort_unstable();
    j.orphan_targets = orphans.into_vec();
    j.failed_targets = failed.into_vec();
    j
}

/// The receipts of the sampled request ids: (ts, receipt id, request id, key, effect).
pub(crate) struct RequestLookup;
pub(crate) static REQUEST_LOOKUP: Lookup<RequestLookup> = Lookup(RequestLookup);

impl LookupSpec for RequestLookup {
    type Key = u64;
    type Group = ();
    type Item = [String; 5];
    const NAME: &'static str = "request_lookup";
    const TABLE: Table = Table::Receipts;
    const ITEMS: usize = 3;
    const KEY: Option<Col> = Some(Col::RRequestId);

    fn is_target(key: &str, targets: &Targets<u64>) -> bool {
        targets.contains(&hash_str(Some(key)))
    }

    fn columns(&self, _ctx: &Ctx) -> Vec<Col> {
        Col::of_table(Table::Receipts).collect()
    }

    fn targets(&self, _ctx: &Ctx, prior: &States) -> Vec<u64> {
        match prior
            .try_get::<RequestSideKernel>()
            .and_then(|r| r.joined.as_ref())
        {
            Some(j) => j
                .orphan_targets
                .iter()
                .chain(&j.failed_targets)
                .copied()
                .collect(),
            None => Vec::new(),
        }
    }

    fn scan(
        &self,
        ctx: &Ctx,
        rows: &Rows<'_>,
        targets: &Targets<u64>,
        found: &mut Found<'_, Self>,
    ) {
        let batch = rows.batch;
        let Some(request) = batch.str(Col::RRequestId) else {
            return;
        };
        let get = |c: Col, i: usize| {
            batch
                .str(c)
                .and_then(|a| a.get(i))
                .unwrap_or("")
                .to_string()
        };
        let ts = batch.ts();
        for i in 0..batch.len() {
            let Some(id) = request.get(i) else { continue };
            let h = hash_str(Some(id));
            if !targets.contains(&h) || !ctx.plan.receipt_in_scope(ts[i]) {
                continue;
            }
            let row = [
                format_millis(ts[i]),
                get(Col::ReceiptId, i),
                id.to_string(),
                get(Col::IdempotencyKey, i),
                get(Col::Effect, i),
            ];
            found(h, id, (), row);
        }
    }
}

/// One sample per target request id (its first receipt), ordered by request id.
fn request_samples(states: &States, targets: &[u64], kind: &str) -> Vec<Fields> {
    let Some(lookup) = states.try_get::<Lookup<RequestLookup>>() else {
        return Vec::new();
    };
    let mut out: Vec<(String, Fields)> = targets
        .iter()
        .filter_map(|h| lookup.found.get(h))
        .filter_map(|found| found.groups.get(&()).and_then(|s| s.items().first()))
        .map(|[ts, receipt, request, key, effect]| {
            let mut f = Fields::new();
            f.insert("kind".into(), Metric::Text(Some(kind.to_string())));
            f.insert("request_id".into(), Metric::Text(Some(request.clone())));
            f.insert("receipt_id".into(), Metric::Text(Some(receipt.clone())));
            f.insert("idempotency_key".into(), Metric::Text(Some(key.clone())));
            f.insert("effect".into(), Metric::Text(Some(effect.clone())));
            f.insert("ts".into(), Metric::Text(Some(ts.clone())));
            (request.clone(), f)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, f)| f).collect()
}

fn finish(f: &Finish<'_>) -> CheckResult {
    let ctx = f.ctx;
    if !ctx.receipts_given() {
        return CheckResult::skip(INFO.id, "no receipts were given");
    }
    if !ctx.has_receipt(Col::RRequestId) {
        return CheckResult::skip(INFO.id, "the receipts have no `request_id` column");
    }
    if !ctx.has(Col::RequestId) {
        return CheckResult::skip(INFO.id, "the requests have no `request_id` column");
    }
    let j = f
        .states
        .get::<RequestSideKernel>()
        .joined
        .as_ref()
        .expect("joined when both tables have request_id");
    let mut parts = Vec::new();
    if j.orphan_receipts > 0 {
        parts.push(format!(
            "{} {} not in the request logs",
            plural(j.orphan_receipts, "receipt names", "receipts name"),
            plural(
                j.orphan_request_ids,
                "request id that is",
                "request ids that are"
            )
        ));
    }
    if j.executions_on_failed_requests > 0 {
        parts.push(format!(
            "{} to {} that returned an error (retry-duplicate risk)",
            plural(
                j.executions_on_failed_requests,
                "execution belongs",
                "executions belong"
            ),
            plural(j.failed_requests_with_executions, "request", "requests")
        ));
    }
    let status = if parts.is_empty() {
        Status::Pass
    } else {
        Status::Warn
    };
    if parts.is_empty() {
        parts.push(
            "every receipt matches a request; no side effect ran for a failed request".to_string(),
        );
    }
    if !ctx.has(Col::Status) {
        parts.push("(no `status` column: failed requests not checked)".to_string());
    }
    let mut result = CheckResult::new(INFO.id, status, parts.join("; "))
        .metric("orphan_receipts", Metric::Count(j.orphan_receipts))
        .metric("orphan_request_ids", Metric::Count(j.orphan_request_ids))
        .metric(
            "executions_on_failed_requests",
            Metric::Count(j.executions_on_failed_requests),
        )
        .metric(
            "failed_requests_with_executions",
            Metric::Count(j.failed_requests_with_executions),
        )
        .cells(
            format!(
                "{}, {} on failed requests",
                plural(j.orphan_receipts, "orphan", "orphans"),
                count(j.executions_on_failed_requests)
            ),
            "",
            "0 orphans, 0 on failed requests (warn)",
        );
    let mut samples = request_samples(f.states, &j.orphan_targets, "orphan");
    samples.extend(request_samples(
        f.states,
        &j.failed_targets,
        "failed_request",
    ));
    result.samples = samples;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Receipt ids 1..=60 (a few executions each, some none), and requests for ids 40..=90 (so
    /// ids 1..40 are orphans), some failed, several rows per id.
    fn table_and_requests() -> (Arc<ReceiptTable>, Vec<(u64, bool)>) {
        let ids: Vec<u64> = (1..=60u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        let mut index = HashIndex::with_capacity(sorted.len());
        let mut counts = SlotCounts::default();
        for &h in &sorted {
            let slot = index.push(h);
            // 1–3 receipts, the first `h % 4` of them executions (at most all of them).
            let receipts = 1 + h % 3;
            for r in 0..receipts {
                counts.add(slot, r < h % 4);
            }
        }
        let requests = (40..=90u64)
            .flat_map(|i| {
                let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                (0..i % 3 + 1).map(move |row| (h, (i + row) % 5 == 0))
            })
            .collect();
        let table = ReceiptTable { index, counts };
        (Arc::new(table), requests)
    }

    /// The join of per-slot marks (the pass's form) is the join of the sorted (hash, failed)
    /// entries (the partials' form), and spilling the marks into entries keeps it.
    #[test]
    fn marks_join_as_entries_do() {
        let (table, requests) = table_and_requests();
        let mut marks = vec![0u8; table.counts.len()];
        for &(h, failed) in &requests {
            if let Some(slot) = table.index.find(h) {
                marks[slot] |= SEEN | if failed { FAILED } else { 0 };
            }
        }
        let mut entries = requests.clone();
        entries.sort_unstable();
        let by_entries = join(&table, &entries);
        let by_marks = join_by(&table, |slot, _| marks[slot]);
        let mut side = RequestSide {
            filter: Some(table.clone()),
            marks,
            ..RequestSide::default()
        };
        side.spill();
        assert!(side.marks.is_empty());
        let by_spilled = join(&table, &side.found[0]);
        for j in [&by_marks, &by_spilled] {
            assert_eq!(format!("{j:?}"), format!("{by_entries:?}"));
        }
        // Ids 1..40 have receipts but no request.
        assert_eq!(by_entries.orphan_request_ids, 39);
        assert!(by_entries.failed_requests_with_executions > 0);
    }

    /// Counts kept in a byte while small and exactly once they pass it, in any order of
    /// receipts; a slot never counted reads as none.
    #[test]
    fn slot_counts_are_exact_past_a_byte() {
        let mut counts = SlotCounts::default();
        let mut plain = vec![(0u32, 0u32); 40];
        let mut next = crate::stats::xorshift(0x2545_f491_4f6c_dd1d);
        for _ in 0..5000 {
            let x = next();
            // Slots 0..8 get hundreds of receipts each; the rest a few.
            let slot = if x % 2 == 0 {
                (x >> 8) as usize % 8
            } else {
                8 + (x >> 8) as usize % 32
            };
            let execution = x >> 20 & 1 == 1;
            if slot >= 8 && plain[slot].0 >= 3 {
                continue;
            }
            counts.add(slot, execution);
            plain[slot].0 += 1;
            plain[slot].1 += execution as u32;
        }
        for (slot, want) in plain.iter().enumerate() {
            assert_eq!(counts.get(slot), *want, "slot {slot}");
        }
        assert_eq!(counts.large.len(), 8);
        assert_eq!(counts.get(1000), (0, 0));
    }
}
