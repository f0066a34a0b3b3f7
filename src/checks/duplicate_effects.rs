//! `duplicate_effects`: no side effect (idempotency key) was executed more than once.
//!
//! The partial state is one compact entry per idempotency key, keyed by a 128-bit hash of the key
//! (no owned strings: tens of millions of keys fit in memory). It also carries what
//! `writer_freeze` needs, so one pass over the receipts feeds both checks. Samples come from a
//! second, targeted pass over the receipts for the few keys shown.

use std::collections::{BTreeMap, HashMap};

use super::{
    bump, merge_map, CheckInfo, CheckResult, Ctx, Fields, Metric, Status, BOTH, SAMPLE_CAP,
};
use crate::columns::{hash_str, hash_str_128, CanonBatch, Col};
use crate::incident::Mode;
use crate::stats::{Samples, Targets};
use crate::time::{format_millis, Micros, MICROS_PER_SECOND};

pub static INFO: CheckInfo = CheckInfo {
    id: "duplicate_effects",
    title: "Duplicate side effects",
    modes: BOTH,
    what_it_checks: "Side-effect receipts: an execution is a receipt whose decision is missing or `new` \
        (case-insensitive); `duplicate` and `conflict` rows are dedupe decisions (the fence worked) and are \
        counted as dedupe_hits, never as executions. Counts idempotency keys executed more than once \
        (duplicate_keys), the extra executions, keys executed by more than one writer, and keys that map to \
        more than one effect_id; breaks the extra executions down by effect and by phase (before, during and \
        after the freeze window, or before/after the flip). In canary mode only receipts in the window count.",
    why_it_matters: "The rollback runbook's rule: duplicate side effects equal zero during and after the \
        rollback. A charge or an email executed twice is user harm that no latency figure shows.",
    what_fails_it: "extra_executions > 0, or an idempotency key mapped to more than one effect_id. Receipts \
        with an unknown decision value make it warn.",
    columns_it_needs: "receipts: ts, idempotency_key; decision, effect, writer_id, effect_id, receipt_id and \
        request_id for breakdowns and samples.",
};

/// Phases an execution can fall in, for the breakdown of extra executions.
pub const PHASES_FREEZE: [&str; 3] = ["before_freeze", "during_freeze", "after_freeze"];
pub const PHASES_FLIP: [&str; 3] = ["before_flip", "after_flip", "unused"];

/// One execution: 40 bytes, sorted by key at the end of the pass (no per-key hash map, whose
/// power-of-two growth would cost ~2× the memory at tens of millions of keys).
#[derive(Debug, Clone, Copy)]
struct Exec {
    key: [u64; 2],
    ts: Micros,
    /// 32-bit hashes of names (0 = none); names are kept once per distinct value.
    writer: u32,
    effect: u32,
    effect_id: u32,
    near_flip: bool,
}

#[inline]
fn small_hash(s: Option<&str>) -> u32 {
    match s {
        None => 0,
        Some(s) => (hash_str(Some(s)) as u32).max(1),
    }
}

#[inline]
fn split(h: u128) -> [u64; 2] {
    [(h >> 64) as u64, h as u64]
}

#[inline]
fn join(k: [u64; 2]) -> u128 {
    ((k[0] as u128) << 64) | k[1] as u128
}

/// Partial state of the receipt checks.
#[derive(Default)]
pub struct Partial {
    runs: Vec<Vec<Exec>>,
    pub receipts: u64,
    pub receipts_in_scope: u64,
    pub executions: u64,
    pub dedupe_hits: u64,
    pub unknown_decisions: u64,
    pub executions_without_key: u64,
    /// 32-bit hash → name, once per distinct effect.
    effect_names: HashMap<u32, String>,
    /// Executions inside the freeze window, by writer and by effect.
    pub freeze_by_writer: HashMap<String, u64>,
    pub freeze_by_effect: HashMap<String, u64>,
    pub writes_during_freeze: u64,
    pub executions_after_freeze: u64,
    pub max_ts: Option<Micros>,
}

/// Phase of an execution: index into PHASES_FREEZE (with a freeze window) or PHASES_FLIP.
#[inline]
fn phase(ctx: &Ctx, ts: Micros) -> usize {
    match (ctx.freeze, ctx.flip_at) {
        (Some(f), _) if ts < f.start => 0,
        (Some(f), _) if ts < f.end => 1,
        (Some(_), _) => 2,
        (None, Some(flip)) => (ts >= flip) as usize,
        (None, None) => 0,
    }
}

/// Whether a receipt row is in scope: canary mode audits only the window.
#[inline]
fn in_scope(ctx: &Ctx, ts: Micros) -> bool {
    ctx.mode == Mode::Rollback || ctx.canary_window_contains(ts)
}

/// What the executions of all keys add up to; computed once, after the pass.
#[derive(Debug, Default)]
pub struct Summary {
    pub keys: u64,
    pub duplicate_keys: u64,
    pub extra_executions: u64,
    pub multi_writer_keys: u64,
    pub multi_effect_id_keys: u64,
    pub two_writer_effects: u64,
    pub extra_by_phase: [u64; 3],
    pub extra_by_effect: BTreeMap<String, u64>,
    /// Smallest hashes of keys executed more than once / by two writers at the flip.
    pub duplicate_targets: Vec<u128>,
    pub flip_targets: Vec<u128>,
    /// Executions of the keys above.
    pub target_executions: BTreeMap<u128, u64>,
}

impl Partial {
    pub fn skip_reason(ctx: &Ctx) -> Option<String> {
        match &ctx.receipts_present {
            None => Some("no receipts were given ([inputs] receipts or --receipts)".to_string()),
            Some(p) if !p.contains(&Col::IdempotencyKey) => {
                Some("the receipts have no `idempotency_key` column".to_string())
            }
            Some(_) => None,
        }
    }

    pub fn update(&mut self, ctx: &Ctx, batch: &CanonBatch) {
        let n = batch.len();
        let ts = batch.ts();
        self.receipts += n as u64;
        if let Some(hi) = ts.iter().max() {
            self.max_ts = Some(self.max_ts.map_or(*hi, |m| m.max(*hi)));
        }
        let Some(key) = batch.str(Col::IdempotencyKey) else {
            return;
        };
        // 0 execution, 1 dedupe decision, 2 unknown decision.
        let decision = match batch.str(Col::Decision) {
            Some(d) => d.map_rows(|v| match v.map(str::trim) {
                None => 0u8,
                Some(s) if s.eq_ignore_ascii_case("new") => 0,
                Some(s)
                    if s.eq_ignore_ascii_case("duplicate")
                        || s.eq_ignore_ascii_case("conflict") =>
                {
                    1
                }
                Some(_) => 2,
            }),
            None => vec![0; n],
        };
        let writer = batch.str(Col::WriterId);
        let writers = writer.as_ref().map(|w| w.map_rows(small_hash));
        let effect = batch.str(Col::Effect);
        let effects = effect.as_ref().map(|e| e.map_rows(small_hash));
        let effect_ids = batch.str(Col::EffectId).map(|e| e.map_rows(small_hash));
        let flip_range = ctx
            .flip_at
            .map(|f| (f - 60 * MICROS_PER_SECOND, f + 60 * MICROS_PER_SECOND));
        let mut run = Vec::with_capacity(n);
        for i in 0..n {
            if !in_scope(ctx, ts[i]) {
                continue;
            }
            self.receipts_in_scope += 1;
            match decision[i] {
                1 => {
                    self.dedupe_hits += 1;
                    continue;
                }
                2 => {
                    self.unknown_decisions += 1;
                    continue;
                }
                _ => {}
            }
            self.executions += 1;
            if let (Some(e), Some(effect)) = (effects.as_ref(), effect.as_ref()) {
                if e[i] != 0 && !self.effect_names.contains_key(&e[i]) {
                    self.effect_names
                        .insert(e[i], effect.get(i).unwrap_or_default().to_string());
                }
            }
            if let Some(freeze) = ctx.freeze {
                if freeze.contains(ts[i]) {
                    self.writes_during_freeze += 1;
                    bump(
                        &mut self.freeze_by_writer,
                        writer.as_ref().and_then(|c| c.get(i)).unwrap_or("unknown"),
                    );
                    bump(
                        &mut self.freeze_by_effect,
                        effect.as_ref().and_then(|c| c.get(i)).unwrap_or("unknown"),
                    );
                } else if ts[i] >= freeze.end {
                    self.executions_after_freeze += 1;
                }
            }
            let Some(k) = key.get(i) else {
                self.executions_without_key += 1;
                continue;
            };
            run.push(Exec {
                key: split(hash_str_128(k)),
                ts: ts[i],
                writer: writers.as_ref().map_or(0, |w| w[i]),
                effect: effects.as_ref().map_or(0, |e| e[i]),
                effect_id: effect_ids.as_ref().map_or(0, |e| e[i]),
                near_flip: flip_range.is_some_and(|(lo, hi)| ts[i] >= lo && ts[i] <= hi),
            });
        }
        self.runs.push(run);
    }

    pub fn merge(&mut self, other: Partial) {
        self.runs.extend(other.runs);
        self.receipts += other.receipts;
        self.receipts_in_scope += other.receipts_in_scope;
        self.executions += other.executions;
        self.dedupe_hits += other.dedupe_hits;
        self.unknown_decisions += other.unknown_decisions;
        self.executions_without_key += other.executions_without_key;
        self.writes_during_freeze += other.writes_during_freeze;
        self.executions_after_freeze += other.executions_after_freeze;
        self.max_ts = match (self.max_ts, other.max_ts) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        for (h, name) in other.effect_names {
            self.effect_names.entry(h).or_insert(name);
        }
        merge_map(&mut self.freeze_by_writer, other.freeze_by_writer);
        merge_map(&mut self.freeze_by_effect, other.freeze_by_effect);
    }

    /// Sorts the executions by key and adds them up per key. Takes the runs (freeing them).
    pub fn summarize(&mut self, ctx: &Ctx) -> Summary {
        let total = self.runs.iter().map(Vec::len).sum();
        let mut all: Vec<Exec> = Vec::with_capacity(total);
        for run in std::mem::take(&mut self.runs) {
            all.extend_from_slice(&run);
        }
        {
            use rayon::slice::ParallelSliceMut;
            all.par_sort_unstable_by_key(|e| e.key);
        }
        let mut s = Summary::default();
        let mut duplicates = Samples::new(SAMPLE_CAP);
        let mut flips = Samples::new(SAMPLE_CAP);
        for group in all.chunk_by(|a, b| a.key == b.key) {
            s.keys += 1;
            let distinct = |f: fn(&Exec) -> u32, only: fn(&Exec) -> bool| {
                let mut first = 0;
                group
                    .iter()
                    .filter(|e| only(e))
                    .map(f)
                    .filter(|&v| v != 0)
                    .any(|v| {
                        if first == 0 {
                            first = v;
                        }
                        v != first
                    })
            };
            let multi_writer = distinct(|e| e.writer, |_| true);
            s.multi_writer_keys += multi_writer as u64;
            s.multi_effect_id_keys += distinct(|e| e.effect_id, |_| true) as u64;
            let key = join(group[0].key);
            if distinct(|e| e.writer, |e| e.near_flip) {
                s.two_writer_effects += 1;
                flips.push(key);
            }
            let count = group.len() as u64;
            if count < 2 {
                continue;
            }
            s.duplicate_keys += 1;
            s.extra_executions += count - 1;
            duplicates.push(key);
            let first = group
                .iter()
                .min_by_key(|e| (e.ts, e.effect))
                .expect("non-empty group");
            let effect = self
                .effect_names
                .get(&first.effect)
                .cloned()
                .unwrap_or_else(|| "unknown".to_string());
            *s.extra_by_effect.entry(effect).or_insert(0) += count - 1;
            let first_phase = phase(ctx, first.ts);
            for e in group {
                s.extra_by_phase[phase(ctx, e.ts)] += 1;
            }
            s.extra_by_phase[first_phase] -= 1;
        }
        s.duplicate_targets = duplicates.into_vec();
        s.flip_targets = flips.into_vec();
        for target in s.duplicate_targets.iter().chain(&s.flip_targets) {
            let k = split(*target);
            let start = all.partition_point(|e| e.key < k);
            let end = all.partition_point(|e| e.key <= k);
            s.target_executions.insert(*target, (end - start) as u64);
        }
        s
    }
}

/// One execution of a sampled key: (ts, receipt id, writer, effect).
type Execution = (Micros, String, String, String);

/// A second, targeted pass over the receipts: every execution of the sampled keys.
pub struct Lookup {
    targets: Targets<u128>,
    /// key hash → (key, executions as (ts, receipt id, writer, effect)).
    found: BTreeMap<u128, (String, Vec<Execution>)>,
}

/// Executions listed per sampled key.
const EXECUTIONS_SHOWN: usize = 5;

impl Lookup {
    pub fn new(targets: Vec<u128>) -> Lookup {
        Lookup {
            targets: Targets::new(targets),
            found: BTreeMap::new(),
        }
    }

    pub fn update(&mut self, ctx: &Ctx, batch: &CanonBatch) {
        let Some(key) = batch.str(Col::IdempotencyKey) else {
            return;
        };
        let decision = batch.str(Col::Decision);
        let receipt = batch.str(Col::ReceiptId);
        let writer = batch.str(Col::WriterId);
        let effect = batch.str(Col::Effect);
        let ts = batch.ts();
        for i in 0..batch.len() {
            if !in_scope(ctx, ts[i]) {
                continue;
            }
            let is_execution = decision
                .as_ref()
                .and_then(|d| d.get(i))
                .is_none_or(|d| d.trim().eq_ignore_ascii_case("new"));
            if !is_execution {
                continue;
            }
            let Some(k) = key.get(i) else { continue };
            let h = hash_str_128(k);
            if !self.targets.contains(&h) {
                continue;
            }
            let get = |c: &Option<crate::columns::StrCol<'_>>| {
                c.as_ref().and_then(|c| c.get(i)).unwrap_or("").to_string()
            };
            let entry = self
                .found
                .entry(h)
                .or_insert_with(|| (k.to_string(), Vec::new()));
            entry
                .1
                .push((ts[i], get(&receipt), get(&writer), get(&effect)));
            entry.1.sort();
            entry.1.truncate(EXECUTIONS_SHOWN);
        }
    }

    pub fn merge(mut self, other: Lookup) -> Lookup {
        for (h, (k, execs)) in other.found {
            let entry = self.found.entry(h).or_insert_with(|| (k, Vec::new()));
            entry.1.extend(execs);
            entry.1.sort();
            entry.1.truncate(EXECUTIONS_SHOWN);
        }
        self
    }

    /// Samples for the given keys (in key order).
    pub fn samples(&self, keys: &[u128], summary: &Summary) -> Vec<Fields> {
        let mut out: Vec<(String, Fields)> = keys
            .iter()
            .filter_map(|h| self.found.get(h).map(|f| (h, f)))
            .map(|(h, (key, execs))| {
                let count = summary.target_executions.get(h);
                let mut f = Fields::new();
                f.insert("idempotency_key".into(), Metric::Text(Some(key.clone())));
                f.insert(
                    "executions".into(),
                    Metric::Count(count.copied().unwrap_or(execs.len() as u64)),
                );
                f.insert(
                    "receipt_ids".into(),
                    Metric::Texts(execs.iter().map(|e| e.1.clone()).collect()),
                );
                let mut writers: Vec<String> = execs.iter().map(|e| e.2.clone()).collect();
                writers.sort();
                writers.dedup();
                f.insert("writers".into(), Metric::Texts(writers));
                f.insert(
                    "times".into(),
                    Metric::Texts(execs.iter().map(|e| format_millis(e.0)).collect()),
                );
                f.insert(
                    "effect".into(),
                    Metric::Text(execs.first().map(|e| e.3.clone())),
                );
                (key.clone(), f)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.into_iter().map(|(_, f)| f).collect()
    }
}

pub fn finish(
    partial: &Partial,
    summary: &Summary,
    ctx: &Ctx,
    samples: Vec<Fields>,
) -> CheckResult {
    if let Some(reason) = Partial::skip_reason(ctx) {
        return CheckResult::skip(INFO.id, reason);
    }
    let phases: &[&str] = if ctx.freeze.is_some() {
        &PHASES_FREEZE
    } else if ctx.flip_at.is_some() {
        &PHASES_FLIP[..2]
    } else {
        &[]
    };
    let duplicate_keys = summary.duplicate_keys;
    let extra = summary.extra_executions;
    let multi_writer = summary.multi_writer_keys;
    let multi_effect_id = summary.multi_effect_id_keys;
    let by_effect = summary.extra_by_effect.clone();
    let by_phase = summary.extra_by_phase;
    let mut status = Status::Pass;
    let mut parts = Vec::new();
    if extra > 0 {
        status = Status::Fail;
        parts.push(format!("{extra} extra executions over {duplicate_keys} idempotency keys executed more than once"));
    }
    if multi_effect_id > 0 {
        status = Status::Fail;
        parts.push(format!(
            "{multi_effect_id} idempotency keys map to more than one effect_id"
        ));
    }
    if partial.unknown_decisions > 0 {
        status = status.worst(Status::Warn);
        parts.push(format!(
            "{} receipts have an unknown decision (not new/duplicate/conflict)",
            partial.unknown_decisions
        ));
    }
    if parts.is_empty() {
        parts.push(format!(
            "{} executions, each idempotency key executed once ({} dedupe hits: the fence held)",
            partial.executions, partial.dedupe_hits
        ));
    }
    let phase_counts: BTreeMap<String, u64> = phases
        .iter()
        .enumerate()
        .filter(|(p, _)| by_phase[*p] > 0)
        .map(|(p, name)| (name.to_string(), by_phase[p]))
        .collect();
    let mut result = CheckResult::new(INFO.id, status, parts.join("; "))
        .metric("receipts", Metric::Count(partial.receipts_in_scope))
        .metric("executions", Metric::Count(partial.executions))
        .metric("dedupe_hits", Metric::Count(partial.dedupe_hits))
        .metric("keys", Metric::Count(summary.keys))
        .metric("duplicate_keys", Metric::Count(duplicate_keys))
        .metric("extra_executions", Metric::Count(extra))
        .metric("multi_writer_keys", Metric::Count(multi_writer))
        .metric("multi_effect_id_keys", Metric::Count(multi_effect_id))
        .metric("extra_executions_by_phase", Metric::Counts(phase_counts))
        .metric("extra_executions_by_effect", Metric::Counts(by_effect))
        .metric(
            "unknown_decisions",
            Metric::Count(partial.unknown_decisions),
        )
        .metric(
            "executions_without_key",
            Metric::Count(partial.executions_without_key),
        )
        .cells(
            format!("{extra} extra executions"),
            "",
            "0 extra executions",
        );
    result.samples = samples;
    result
}
