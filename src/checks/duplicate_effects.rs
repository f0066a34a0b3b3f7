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
use crate::stats::PrehashedMap;
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

const MULTI_WRITER: u8 = 1;
const MULTI_FLIP_WRITER: u8 = 2;
const MULTI_EFFECT_ID: u8 = 4;

/// One idempotency key: 56 bytes with its 16-byte key hash.
#[derive(Debug, Clone, Copy)]
pub struct KeyEntry {
    first_ts: Micros,
    count: u32,
    /// 32-bit hashes of names (0 = none seen); names themselves are kept once per distinct value.
    writer: u32,
    flip_writer: u32,
    effect_id: u32,
    effect: u32,
    phase_counts: [u16; 3],
    flags: u8,
}

#[inline]
fn small_hash(s: Option<&str>) -> u32 {
    match s {
        None => 0,
        Some(s) => (hash_str(Some(s)) as u32).max(1),
    }
}

/// Combines two 32-bit name hashes: same, one side unknown, or different (sets `flag`).
#[inline]
fn join(a: &mut u32, b: u32, flags: &mut u8, flag: u8) {
    if *a == 0 {
        *a = b;
    } else if b != 0 && *a != b {
        *flags |= flag;
    }
}

impl KeyEntry {
    fn merge(&mut self, o: &KeyEntry) {
        self.first_ts = self.first_ts.min(o.first_ts);
        self.count = self.count.saturating_add(o.count);
        self.flags |= o.flags;
        join(&mut self.writer, o.writer, &mut self.flags, MULTI_WRITER);
        join(
            &mut self.flip_writer,
            o.flip_writer,
            &mut self.flags,
            MULTI_FLIP_WRITER,
        );
        join(
            &mut self.effect_id,
            o.effect_id,
            &mut self.flags,
            MULTI_EFFECT_ID,
        );
        let mut ignored = 0;
        join(&mut self.effect, o.effect, &mut ignored, 0);
        for p in 0..3 {
            self.phase_counts[p] = self.phase_counts[p].saturating_add(o.phase_counts[p]);
        }
    }
}

/// Partial state of the receipt checks.
#[derive(Default)]
pub struct Partial {
    keys: PrehashedMap<u128, KeyEntry>,
    pub receipts: u64,
    pub receipts_in_scope: u64,
    pub executions: u64,
    pub dedupe_hits: u64,
    pub unknown_decisions: u64,
    pub executions_without_key: u64,
    /// 32-bit hash → name, once per distinct effect / writer.
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
            let w = writers.as_ref().map_or(0, |w| w[i]);
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
            let near_flip = flip_range.is_some_and(|(lo, hi)| ts[i] >= lo && ts[i] <= hi);
            let mut entry = KeyEntry {
                first_ts: ts[i],
                count: 1,
                writer: w,
                flip_writer: if near_flip { w } else { 0 },
                effect_id: effect_ids.as_ref().map_or(0, |e| e[i]),
                effect: effects.as_ref().map_or(0, |e| e[i]),
                phase_counts: [0; 3],
                flags: 0,
            };
            entry.phase_counts[phase(ctx, ts[i])] = 1;
            self.keys
                .entry(hash_str_128(k))
                .and_modify(|e| e.merge(&entry))
                .or_insert(entry);
        }
    }

    pub fn merge(&mut self, other: Partial) {
        let (mut big, small) = if other.keys.len() > self.keys.len() {
            (other.keys, std::mem::take(&mut self.keys))
        } else {
            (std::mem::take(&mut self.keys), other.keys)
        };
        for (k, e) in small {
            big.entry(k).and_modify(|m| m.merge(&e)).or_insert(e);
        }
        self.keys = big;
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

    /// Keys with more than one execution, smallest hashes first: the ones shown as samples.
    pub fn sample_targets(&self) -> Vec<u128> {
        let mut dup: Vec<u128> = self
            .keys
            .iter()
            .filter(|(_, e)| e.count > 1)
            .map(|(k, _)| *k)
            .collect();
        dup.sort_unstable();
        dup.truncate(SAMPLE_CAP);
        dup
    }

    /// Keys executed by two or more writers within ±60 s of the flip, smallest hashes first.
    pub fn flip_targets(&self) -> Vec<u128> {
        let mut keys: Vec<u128> = self
            .keys
            .iter()
            .filter(|(_, e)| e.flags & MULTI_FLIP_WRITER != 0)
            .map(|(k, _)| *k)
            .collect();
        keys.sort_unstable();
        keys.truncate(SAMPLE_CAP);
        keys
    }

    pub fn two_writer_effects(&self) -> u64 {
        self.keys
            .values()
            .filter(|e| e.flags & MULTI_FLIP_WRITER != 0)
            .count() as u64
    }
}

/// One execution of a sampled key: (ts, receipt id, writer, effect).
type Execution = (Micros, String, String, String);

/// A second, targeted pass over the receipts: every execution of the sampled keys.
pub struct Lookup {
    targets: Vec<u128>,
    /// key hash → (key, executions as (ts, receipt id, writer, effect)).
    found: BTreeMap<u128, (String, Vec<Execution>)>,
}

/// Executions listed per sampled key.
const EXECUTIONS_SHOWN: usize = 5;

impl Lookup {
    pub fn new(mut targets: Vec<u128>) -> Lookup {
        targets.sort_unstable();
        targets.dedup();
        Lookup {
            targets,
            found: BTreeMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
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
            if self.targets.binary_search(&h).is_err() {
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
    pub fn samples(&self, keys: &[u128], partial: &Partial) -> Vec<Fields> {
        let mut out: Vec<(String, Fields)> = keys
            .iter()
            .filter_map(|h| self.found.get(h).map(|f| (h, f)))
            .map(|(h, (key, execs))| {
                let entry = partial.keys.get(h);
                let mut f = Fields::new();
                f.insert("idempotency_key".into(), Metric::Text(Some(key.clone())));
                f.insert(
                    "executions".into(),
                    Metric::Count(entry.map_or(execs.len() as u64, |e| e.count as u64)),
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

pub fn finish(partial: &Partial, ctx: &Ctx, samples: Vec<Fields>) -> CheckResult {
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
    let mut duplicate_keys = 0u64;
    let mut extra = 0u64;
    let mut multi_writer = 0u64;
    let mut multi_effect_id = 0u64;
    let mut by_effect: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_phase = [0u64; 3];
    for e in partial.keys.values() {
        multi_writer += (e.flags & MULTI_WRITER != 0) as u64;
        multi_effect_id += (e.flags & MULTI_EFFECT_ID != 0) as u64;
        if e.count > 1 {
            duplicate_keys += 1;
            extra += e.count as u64 - 1;
            let effect = partial
                .effect_names
                .get(&e.effect)
                .cloned()
                .unwrap_or_else(|| "unknown".to_string());
            *by_effect.entry(effect).or_insert(0) += e.count as u64 - 1;
            let first = phase(ctx, e.first_ts);
            for (p, n) in e.phase_counts.iter().enumerate() {
                by_phase[p] += *n as u64 - (p == first) as u64;
            }
        }
    }
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
        .metric("keys", Metric::Count(partial.keys.len() as u64))
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
