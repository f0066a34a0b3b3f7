//! `reconciliation`: receipts joined to requests — orphan receipts, and side effects executed for
//! requests that failed (the retry-duplicate risk).
//!
//! The receipts are read first; the set of request ids they name (64-bit hashes) is handed to the
//! request pass, which marks the ones it sees and the ones that failed.

use std::collections::BTreeMap;

use arrow::array::Array;

use super::{CheckInfo, CheckResult, Ctx, Fields, Metric, Status, BOTH, SAMPLE_CAP};
use crate::columns::{hash_str, CanonBatch, Col};
use crate::incident::Mode;
use crate::stats::hash_index::{Bits, HashIndex};
use crate::stats::{Samples, Targets};
use crate::time::{format_millis, Micros};

pub static INFO: CheckInfo = CheckInfo {
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
};

/// Receipt side, during the receipts pass: (request id hash, is execution) per receipt, in runs
/// that merge by concatenation.
#[derive(Default)]
pub struct ReceiptSide {
    runs: Vec<Vec<(u64, bool)>>,
}

/// The receipts' request ids, indexed once after the receipts pass, with their counts per slot.
#[derive(Debug)]
pub struct ReceiptTable {
    pub index: HashIndex,
    receipts: Vec<u32>,
    executions: Vec<u32>,
}

/// Request side: which of the receipts' request ids were seen, and which failed (bits by slot).
#[derive(Default)]
pub struct RequestSide {
    seen: Bits,
    failed: Bits,
}

pub fn applies(ctx: &Ctx) -> bool {
    ctx.has_receipt(Col::RRequestId) && ctx.has(Col::RequestId)
}

#[inline]
fn in_scope(ctx: &Ctx, ts: Micros) -> bool {
    ctx.mode == Mode::Rollback || ctx.canary_window_contains(ts)
}

#[inline]
fn is_execution(decision: Option<&str>) -> bool {
    decision.is_none_or(|d| d.trim().eq_ignore_ascii_case("new"))
}

impl ReceiptSide {
    pub fn update(&mut self, ctx: &Ctx, batch: &CanonBatch) {
        if !applies(ctx) {
            return;
        }
        let request = batch.str(Col::RRequestId).expect("projected");
        let hashes = request.map_rows(|r| r.map(|r| hash_str(Some(r))));
        let decision = batch.str(Col::Decision);
        let ts = batch.ts();
        let mut run = Vec::with_capacity(batch.len());
        for i in 0..batch.len() {
            let Some(h) = hashes[i] else { continue };
            if in_scope(ctx, ts[i]) {
                run.push((h, is_execution(decision.as_ref().and_then(|d| d.get(i)))));
            }
        }
        self.runs.push(run);
    }

    pub fn merge(&mut self, other: ReceiptSide) {
        self.runs.extend(other.runs);
    }

    /// Indexes the request ids; the runs are freed as they are counted.
    pub fn into_table(self) -> ReceiptTable {
        let total: usize = self.runs.iter().map(Vec::len).sum();
        let index = HashIndex::build(self.runs.iter().flatten().map(|(h, _)| *h), total);
        let mut receipts = vec![0u32; index.capacity()];
        let mut executions = vec![0u32; index.capacity()];
        for run in self.runs {
            for (h, exec) in run {
                let slot = index.find(h).expect("indexed above");
                receipts[slot] = receipts[slot].saturating_add(1);
                executions[slot] = executions[slot].saturating_add(exec as u32);
            }
        }
        ReceiptTable {
            index,
            receipts,
            executions,
        }
    }
}

impl RequestSide {
    pub fn update(&mut self, ctx: &Ctx, batch: &CanonBatch) {
        let Some(table) = ctx.receipt_requests.as_ref() else {
            return;
        };
        let Some(request) = batch.str(Col::RequestId) else {
            return;
        };
        let status = batch.int(Col::Status);
        let capacity = table.index.capacity();
        // Three passes over the batch instead of one branchy loop: hash, test the filter (its
        // loads are independent, so misses overlap), then probe the few candidates.
        let hashes = request.map_rows(|v| v.map(|s| hash_str(Some(s))));
        let candidates: Vec<bool> = hashes
            .iter()
            .map(|h| h.is_some_and(|h| table.index.may_contain(h)))
            .collect();
        for (i, _) in candidates.iter().enumerate().filter(|(_, c)| **c) {
            let Some(slot) = hashes[i].and_then(|h| table.index.find(h)) else {
                continue;
            };
            self.seen.set(slot, capacity);
            let failed = status.is_some_and(|s| {
                s.is_valid(i) && {
                    let v = s.values()[i];
                    v >= 500 || v == 429
                }
            });
            if failed {
                self.failed.set(slot, capacity);
            }
        }
    }

    pub fn merge(&mut self, other: RequestSide) {
        self.seen.merge(other.seen);
        self.failed.merge(other.failed);
    }
}

/// Figures of the join, and the request ids to show as samples.
pub struct Joined {
    pub orphan_receipts: u64,
    pub orphan_request_ids: u64,
    pub executions_on_failed_requests: u64,
    pub failed_requests_with_executions: u64,
    pub orphan_targets: Vec<u64>,
    pub failed_targets: Vec<u64>,
}

pub fn join(table: &ReceiptTable, requests: &RequestSide) -> Joined {
    let mut j = Joined {
        orphan_receipts: 0,
        orphan_request_ids: 0,
        executions_on_failed_requests: 0,
        failed_requests_with_executions: 0,
        orphan_targets: Vec::new(),
        failed_targets: Vec::new(),
    };
    let mut orphans = Samples::new(SAMPLE_CAP);
    let mut failed = Samples::new(SAMPLE_CAP);
    for (slot, h) in table.index.members() {
        if !requests.seen.get(slot) {
            j.orphan_receipts += table.receipts[slot] as u64;
            j.orphan_request_ids += 1;
            orphans.push(h);
        } else if requests.failed.get(slot) && table.executions[slot] > 0 {
            j.executions_on_failed_requests += table.executions[slot] as u64;
            j.failed_requests_with_executions += 1;
            failed.push(h);
        }
    }
    j.orphan_targets = orphans.into_vec();
    j.failed_targets = failed.into_vec();
    j
}

/// Targeted pass over the receipts for the sampled request ids.
pub struct Lookup {
    targets: Targets<u64>,
    /// request id hash → receipts as (ts, receipt id, request id, key, effect, decision).
    found: BTreeMap<u64, Vec<[String; 5]>>,
}

impl Lookup {
    pub fn new(targets: Vec<u64>) -> Lookup {
        Lookup {
            targets: Targets::new(targets),
            found: BTreeMap::new(),
        }
    }

    pub fn update(&mut self, ctx: &Ctx, batch: &CanonBatch) {
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
            if !self.targets.contains(&h) || !in_scope(ctx, ts[i]) {
                continue;
            }
            let row = [
                format_millis(ts[i]),
                get(Col::ReceiptId, i),
                id.to_string(),
                get(Col::IdempotencyKey, i),
                get(Col::Effect, i),
            ];
            let v = self.found.entry(h).or_default();
            v.push(row);
            v.sort();
            v.truncate(3);
        }
    }

    pub fn merge(mut self, other: Lookup) -> Lookup {
        for (h, rows) in other.found {
            let v = self.found.entry(h).or_default();
            v.extend(rows);
            v.sort();
            v.truncate(3);
        }
        self
    }

    pub fn samples(&self, targets: &[u64], kind: &str) -> Vec<Fields> {
        let mut out: Vec<Fields> = targets
            .iter()
            .filter_map(|h| self.found.get(h))
            .filter_map(|rows| rows.first())
            .map(|[ts, receipt, request, key, effect]| {
                let mut f = Fields::new();
                f.insert("kind".into(), Metric::Text(Some(kind.to_string())));
                f.insert("request_id".into(), Metric::Text(Some(request.clone())));
                f.insert("receipt_id".into(), Metric::Text(Some(receipt.clone())));
                f.insert("idempotency_key".into(), Metric::Text(Some(key.clone())));
                f.insert("effect".into(), Metric::Text(Some(effect.clone())));
                f.insert("ts".into(), Metric::Text(Some(ts.clone())));
                f
            })
            .collect();
        out.sort_by(|a, b| {
            format!("{:?}", a.get("request_id")).cmp(&format!("{:?}", b.get("request_id")))
        });
        out
    }
}

pub fn finish(ctx: &Ctx, joined: Option<&Joined>, samples: Vec<Fields>) -> CheckResult {
    if ctx.receipts_present.is_none() {
        return CheckResult::skip(INFO.id, "no receipts were given");
    }
    if !ctx.has_receipt(Col::RRequestId) {
        return CheckResult::skip(INFO.id, "the receipts have no `request_id` column");
    }
    if !ctx.has(Col::RequestId) {
        return CheckResult::skip(INFO.id, "the requests have no `request_id` column");
    }
    let j = joined.expect("joined when both tables have request_id");
    let mut parts = Vec::new();
    if j.orphan_receipts > 0 {
        parts.push(format!(
            "{} receipts name {} request ids that are not in the request logs",
            j.orphan_receipts, j.orphan_request_ids
        ));
    }
    if j.executions_on_failed_requests > 0 {
        parts.push(format!(
            "{} executions belong to {} requests that returned an error (retry-duplicate risk)",
            j.executions_on_failed_requests, j.failed_requests_with_executions
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
                "{} orphans, {} on failed requests",
                j.orphan_receipts, j.executions_on_failed_requests
            ),
            "",
            "0 and 0 (warn)",
        );
    result.samples = samples;
    result
}
