//! `duplicate_effects`: no side effect (idempotency key) was executed more than once.
//!
//! The kernel keeps one compact entry per execution, keyed by a 128-bit hash of the idempotency
//! key (no owned strings: tens of millions of keys fit in memory), sorted by key once it is
//! settled. It also carries what `writer_freeze` needs, so one pass over the receipts feeds both
//! checks. Samples come from a targeted look-up of the few keys shown.

use crate::words::plural;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Lever;
use super::{
    CheckInfo, CheckResult, CheckSpec, Evidence, Fields, Finish, Metric, Status, BOTH, SAMPLE_CAP,
};
use crate::columns::{hash_str, hash_str_128, Col, Table};
use crate::engine::lookup::{Found, Lookup, LookupSpec};
use crate::engine::{Kernel, Rows, Stage, States};
use crate::plan::Ctx;
use crate::stats::{Counts, Keyed, SampleKey, Samples, Strata, Targets};
use crate::time::{format_millis, Micros, MICROS_PER_SECOND};

pub(crate) static CHECK: CheckSpec = CheckSpec {
    info: &INFO,
    kernels: &[&EFFECTS, &KEY_LOOKUP],
    finish,
    evidence: &[&Evidence {
        kind: "executions_of_duplicated_keys",
        table: Table::Receipts,
        select: |ctx, states, rows| {
            let s = &states.get::<EffectsKernel>().summary;
            executions_of_keys(ctx, rows, &s.duplicated, |_| true)
        },
    }],
};

/// Per row: an execution (decision missing or `new`) in scope.
pub(crate) fn executions(ctx: &Ctx, rows: &Rows<'_>) -> Vec<bool> {
    let batch = rows.batch;
    let ts = batch.ts();
    let decision = batch.str(Col::Decision);
    (0..batch.len())
        .map(|i| {
            ctx.plan.receipt_in_scope(ts[i])
                && decision_code(decision.as_ref().and_then(|d| d.get(i))) == 0
        })
        .collect()
}

/// Per row: an execution in scope whose idempotency key is among `keys` (sorted) and passes
/// `and`.
pub(crate) fn executions_of_keys(
    ctx: &Ctx,
    rows: &Rows<'_>,
    keys: &[u128],
    and: impl Fn(Micros) -> bool,
) -> Vec<bool> {
    let batch = rows.batch;
    let ts = batch.ts();
    let (Some(key), false) = (batch.str(Col::IdempotencyKey), keys.is_empty()) else {
        return vec![false; batch.len()];
    };
    let decision = batch.str(Col::Decision);
    (0..batch.len())
        .map(|i| {
            ctx.plan.receipt_in_scope(ts[i])
                && decision_code(decision.as_ref().and_then(|d| d.get(i))) == 0
                && key
                    .get(i)
                    .is_some_and(|k| keys.binary_search(&hash_str_128(k)).is_ok())
                && and(ts[i])
        })
        .collect()
}

pub(crate) static INFO: CheckInfo = CheckInfo {
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
    figures: &[
        ("receipts", "Receipts in scope (canary: in the window)."),
        ("executions", "Receipts in scope whose decision is missing or `new` (case-insensitive)."),
        ("dedupe_hits", "Receipts in scope whose decision is `duplicate` or `conflict`: the fence worked."),
        ("keys", "Distinct idempotency keys among executions."),
        ("duplicate_keys", "Keys executed more than once."),
        ("extra_executions", "Sum over keys of (executions − 1)."),
        ("extra_executions_by_effect", "Effect → extra executions (the effect of each execution after a key's first)."),
        ("extra_executions_by_phase", "Phase → extra executions: before_freeze, during_freeze, after_freeze with a freeze window, else before_flip, after_flip (canary: unused)."),
        ("multi_writer_keys", "Keys executed by more than one distinct writer_id."),
        ("multi_effect_id_keys", "Keys whose executions carry more than one distinct effect_id."),
        ("unknown_decisions", "Receipts in scope whose decision is none of new, duplicate, conflict: neither executions nor dedupe hits (the check warns)."),
        ("executions_without_key", "Executions without an idempotency_key (not counted as keys)."),
    ],
    remediation: "reconcile the duplicated side effects with the affected users (refunds, corrections); enforce the idempotency fence on every retry path",
    region_column: None,
    impact: Some(|_, m, _| {
        let e = m.get("extra_executions").and_then(Metric::as_count).unwrap_or(0);
        (e > 0).then(|| {
            format!(
                "{} executed more than once ({}).",
                plural(e, "side effect was", "side effects were"),
                plural(
                    m.get("duplicate_keys").and_then(Metric::as_count).unwrap_or(0),
                    "idempotency key",
                    "idempotency keys"
                )
            )
        })
    }),
    events: None,
    lever: Some(|_| Some(Lever::FenceAndReconcile)),
};

/// Phases an execution can fall in, for the breakdown of extra executions.
const PHASES_FREEZE: [&str; 3] = ["before_freeze", "during_freeze", "after_freeze"];
const PHASES_FLIP: [&str; 3] = ["before_flip", "after_flip", "unused"];

/// One execution: 40 bytes, sorted by key when settled (no per-key hash map, whose
/// power-of-two growth would cost ~2× the memory at tens of millions of keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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

/// The state of the receipt checks.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct State {
    runs: Vec<Vec<Exec>>,
    pub(crate) receipts: u64,
    pub(crate) receipts_in_scope: u64,
    pub(crate) executions: u64,
    pub(crate) dedupe_hits: u64,
    pub(crate) unknown_decisions: u64,
    pub(crate) executions_without_key: u64,
    /// 32-bit hash → name, once per distinct effect.
    effect_names: BTreeMap<u32, String>,
    /// Executions inside the freeze window, by writer and by effect.
    pub(crate) freeze_by_writer: Counts,
    pub(crate) freeze_by_effect: Counts,
    pub(crate) writes_during_freeze: u64,
    pub(crate) executions_after_freeze: u64,
    /// Executions during the freeze: the earliest and latest of each writer.
    pub(crate) freeze_samples: Strata<FreezeWrite>,
    pub(crate) max_ts: Option<Micros>,
    /// What the executions add up to per key; computed when the state is settled.
    #[serde(skip)]
    pub(crate) summary: Summary,
    /// The summaries of complete key ranges ([`Kernel::compact`]), added in when settled.
    compacted: Summary,
}

/// An execution during the write freeze, as a sample shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct FreezeWrite {
    pub(crate) ts: Micros,
    pub(crate) receipt_id: Option<String>,
    pub(crate) writer: Option<String>,
    pub(crate) effect: Option<String>,
    pub(crate) idempotency_key: Option<String>,
}

impl Keyed for FreezeWrite {
    fn key(&self) -> SampleKey<'_> {
        (self.ts, self.receipt_id.as_deref())
    }
}

/// Phase of an execution: index into PHASES_FREEZE (with a freeze window) or PHASES_FLIP.
#[inline]
fn phase(ctx: &Ctx, ts: Micros) -> usize {
    match (ctx.plan.freeze(), ctx.plan.flip_at()) {
        (Some(f), _) if ts < f.start => 0,
        (Some(f), _) if ts < f.end => 1,
        (Some(_), _) => 2,
        (None, Some(flip)) => (ts >= flip) as usize,
        (None, None) => 0,
    }
}

/// 0 execution, 1 dedupe decision, 2 unknown decision.
fn decision_code(v: Option<&str>) -> u8 {
    match v.map(str::trim) {
        None => 0,
        Some(s) if s.eq_ignore_ascii_case("new") => 0,
        Some(s) if s.eq_ignore_ascii_case("duplicate") || s.eq_ignore_ascii_case("conflict") => 1,
        Some(_) => 2,
    }
}

/// What the executions of all keys add up to.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Summary {
    pub(crate) keys: u64,
    pub(crate) duplicate_keys: u64,
    pub(crate) extra_executions: u64,
    pub(crate) multi_writer_keys: u64,
    pub(crate) multi_effect_id_keys: u64,
    pub(crate) two_writer_effects: u64,
    pub(crate) extra_by_phase: [u64; 3],
    pub(crate) extra_by_effect: BTreeMap<String, u64>,
    /// Smallest hashes of keys executed more than once / by two writers at the flip.
    pub(crate) duplicate_targets: Vec<u128>,
    pub(crate) flip_targets: Vec<u128>,
    /// Executions of the keys above.
    pub(crate) target_executions: BTreeMap<u128, u64>,
    /// Every key executed more than once / by two writers at the flip, sorted: what
    /// `--evidence-dir` selects receipts by.
    pub(crate) duplicated: Vec<u128>,
    pub(crate) two_writer: Vec<u128>,
}

impl Summary {
    /// Adds the summary of other keys (another key range): exact, because no key is in both.
    /// Saturating: a crafted partial may carry any count (honest ones cannot get near).
    fn absorb(&mut self, o: Summary) {
        for (mine, theirs) in [
            (&mut self.keys, o.keys),
            (&mut self.duplicate_keys, o.duplicate_keys),
            (&mut self.extra_executions, o.extra_executions),
            (&mut self.multi_writer_keys, o.multi_writer_keys),
            (&mut self.multi_effect_id_keys, o.multi_effect_id_keys),
            (&mut self.two_writer_effects, o.two_writer_effects),
        ] {
            *mine = mine.saturating_add(theirs);
        }
        for (mine, theirs) in self.extra_by_phase.iter_mut().zip(o.extra_by_phase) {
            *mine = mine.saturating_add(theirs);
        }
        for (effect, n) in o.extra_by_effect {
            let e = self.extra_by_effect.entry(effect).or_insert(0);
            *e = e.saturating_add(n);
        }
        Samples::smallest_of(SAMPLE_CAP, &mut self.duplicate_targets, o.duplicate_targets);
        Samples::smallest_of(SAMPLE_CAP, &mut self.flip_targets, o.flip_targets);
        self.target_executions.extend(o.target_executions);
        let (dups, flips) = (&self.duplicate_targets, &self.flip_targets);
        self.target_executions
            .retain(|k, _| dups.contains(k) || flips.contains(k));
        self.duplicated.extend(o.duplicated);
        self.duplicated.sort_unstable();
        self.two_writer.extend(o.two_writer);
        self.two_writer.sort_unstable();
    }
}

/// Why the receipt checks cannot run, if they cannot.
pub(crate) fn skip_reason(ctx: &Ctx) -> Option<String> {
    match &ctx.columns.receipts {
        None => Some("no receipts were given ([inputs] receipts or --receipts)".to_string()),
        Some(p) if !p.contains(&Col::IdempotencyKey) => {
            Some("the receipts have no `idempotency_key` column".to_string())
        }
        Some(_) => None,
    }
}

/// Executions per idempotency key, and the freeze figures.
pub(crate) struct EffectsKernel;
pub(crate) static EFFECTS: EffectsKernel = EffectsKernel;

impl Kernel for EffectsKernel {
    type State = State;
    const NAME: &'static str = "effects";
    const TABLE: Table = Table::Receipts;
    const STAGE: Stage = Stage::Receipts;

    fn canonicalize(&self, state: &mut State) {
        let mut all = crate::stats::concat_runs(std::mem::take(&mut state.runs));
        all.sort_unstable();
        state.runs = vec![all];
    }

    fn columns(&self, _ctx: &Ctx) -> Vec<Col> {
        vec![
            Col::IdempotencyKey,
            Col::Decision,
            Col::WriterId,
            Col::Effect,
            Col::EffectId,
            Col::ReceiptId,
        ]
    }

    fn init(&self, _ctx: &Ctx, _prior: &States) -> State {
        State::default()
    }

    fn update(&self, ctx: &Ctx, state: &mut State, rows: &Rows<'_>) {
        state.update(ctx, rows)
    }

    fn merge(&self, state: &mut State, other: State) {
        state.runs.extend(other.runs);
        state.receipts += other.receipts;
        state.receipts_in_scope += other.receipts_in_scope;
        state.executions += other.executions;
        state.dedupe_hits += other.dedupe_hits;
        state.unknown_decisions += other.unknown_decisions;
        state.executions_without_key += other.executions_without_key;
        state.writes_during_freeze += other.writes_during_freeze;
        state.executions_after_freeze += other.executions_after_freeze;
        state.max_ts = super::rows::max_option(state.max_ts, other.max_ts);
        for (h, name) in other.effect_names {
            state.effect_names.entry(h).or_insert(name);
        }
        state.freeze_by_writer.merge(other.freeze_by_writer);
        state.freeze_by_effect.merge(other.freeze_by_effect);
        state.freeze_samples.merge(other.freeze_samples);
        state.compacted.absorb(other.compacted);
    }

    fn settle(&self, ctx: &Ctx, state: &mut State, _prior: &States) {
        let mut summary = state.summarize(ctx);
        summary.absorb(std::mem::take(&mut state.compacted));
        state.summary = summary;
    }

    const KEYED: bool = true;

    /// The executions of the range's keys, with the effect names their summary needs.
    fn take_range(&self, state: &mut State, range: usize, ranges: usize) -> Option<State> {
        let mut taken = Vec::new();
        for run in &mut state.runs {
            run.retain(|e| {
                let keep = crate::engine::range_of(e.key[0], ranges) != range;
                if !keep {
                    taken.push(*e);
                }
                keep
            });
        }
        state.runs.retain(|r| !r.is_empty());
        Some(State {
            runs: vec![taken],
            effect_names: state.effect_names.clone(),
            ..State::default()
        })
    }

    fn split_ranges(&self, state: &mut State, ranges: usize) -> Option<Vec<State>> {
        let mut parts: Vec<Vec<Exec>> = vec![Vec::new(); ranges];
        for e in std::mem::take(&mut state.runs).into_iter().flatten() {
            parts[crate::engine::range_of(e.key[0], ranges)].push(e);
        }
        Some(
            parts
                .into_iter()
                .map(|run| State {
                    runs: vec![run],
                    effect_names: state.effect_names.clone(),
                    ..State::default()
                })
                .collect(),
        )
    }

    fn compact(&self, _ctx: &Ctx, state: &mut State) {
        state.compacted = std::mem::take(&mut state.summary);
        state.effect_names.clear();
    }
}

impl State {
    fn update(&mut self, ctx: &Ctx, rows: &Rows<'_>) {
        let batch = rows.batch;
        let n = batch.len();
        let ts = batch.ts();
        self.receipts += n as u64;
        if let Some(hi) = ts.iter().max() {
            self.max_ts = Some(self.max_ts.map_or(*hi, |m| m.max(*hi)));
        }
        let Some(key) = batch.str(Col::IdempotencyKey) else {
            return;
        };
        let decision = match batch.str(Col::Decision) {
            Some(d) => d.map_rows(decision_code),
            None => vec![0; n],
        };
        let writer = batch.str(Col::WriterId);
        let writers = writer.as_ref().map(|w| w.map_rows(small_hash));
        let effect = batch.str(Col::Effect);
        let effects = effect.as_ref().map(|e| e.map_rows(small_hash));
        let effect_ids = batch.str(Col::EffectId).map(|e| e.map_rows(small_hash));
        let receipt = batch.str(Col::ReceiptId);
        let flip_range = ctx
            .plan
            .flip_at()
            .map(|f| (f - 60 * MICROS_PER_SECOND, f + 60 * MICROS_PER_SECOND));
        let freeze = ctx.plan.freeze();
        let mut run = Vec::with_capacity(n);
        for i in 0..n {
            if !ctx.plan.receipt_in_scope(ts[i]) {
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
            if let Some(freeze) = freeze {
                if freeze.contains(ts[i]) {
                    self.writes_during_freeze += 1;
                    let w = writer.as_ref().and_then(|c| c.get(i));
                    self.freeze_by_writer.bump(w.unwrap_or("unknown"));
                    self.freeze_by_effect
                        .bump(effect.as_ref().and_then(|c| c.get(i)).unwrap_or("unknown"));
                    let id = receipt.as_ref().and_then(|c| c.get(i));
                    self.freeze_samples
                        .offer(w.unwrap_or("unknown"), (ts[i], id), || FreezeWrite {
                            ts: ts[i],
                            receipt_id: id.map(str::to_string),
                            writer: w.map(str::to_string),
                            effect: effect.as_ref().and_then(|c| c.get(i)).map(str::to_string),
                            idempotency_key: key.get(i).map(str::to_string),
                        });
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

    /// Sorts the executions by key and adds them up per key. Takes the runs (freeing them).
    fn summarize(&mut self, ctx: &Ctx) -> Summary {
        let mut all = crate::stats::concat_runs(std::mem::take(&mut self.runs));
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
                s.two_writer.push(key);
            }
            let count = group.len() as u64;
            if count < 2 {
                continue;
            }
            s.duplicate_keys += 1;
            s.extra_executions += count - 1;
            duplicates.push(key);
            s.duplicated.push(key);
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
        s.duplicated.sort_unstable();
        s.two_writer.sort_unstable();
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

/// Every execution of the sampled keys (the first few, by time).
pub(crate) struct KeyLookup;
pub(crate) static KEY_LOOKUP: Lookup<KeyLookup> = Lookup(KeyLookup);

impl LookupSpec for KeyLookup {
    type Key = u128;
    type Group = ();
    type Item = Execution;
    const NAME: &'static str = "key_lookup";
    const TABLE: Table = Table::Receipts;
    /// Executions listed per sampled key.
    const ITEMS: usize = 5;
    const KEY: Option<Col> = Some(Col::IdempotencyKey);

    fn is_target(key: &str, targets: &Targets<u128>) -> bool {
        targets.contains(&hash_str_128(key))
    }

    fn columns(&self, _ctx: &Ctx) -> Vec<Col> {
        Col::of_table(Table::Receipts).collect()
    }

    fn targets(&self, ctx: &Ctx, prior: &States) -> Vec<u128> {
        if skip_reason(ctx).is_some() {
            return Vec::new();
        }
        let s = &prior.get::<EffectsKernel>().summary;
        s.duplicate_targets
            .iter()
            .chain(&s.flip_targets)
            .copied()
            .collect()
    }

    fn scan(
        &self,
        ctx: &Ctx,
        rows: &Rows<'_>,
        targets: &Targets<u128>,
        found: &mut Found<'_, Self>,
    ) {
        let batch = rows.batch;
        let Some(key) = batch.str(Col::IdempotencyKey) else {
            return;
        };
        let decision = batch.str(Col::Decision);
        let receipt = batch.str(Col::ReceiptId);
        let writer = batch.str(Col::WriterId);
        let effect = batch.str(Col::Effect);
        let ts = batch.ts();
        for i in 0..batch.len() {
            if !ctx.plan.receipt_in_scope(ts[i]) {
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
            if !targets.contains(&h) {
                continue;
            }
            let get = |c: &Option<crate::columns::StrCol<'_>>| {
                c.as_ref().and_then(|c| c.get(i)).unwrap_or("").to_string()
            };
            found(h, k, (), (ts[i], get(&receipt), get(&writer), get(&effect)));
        }
    }
}

/// Samples for the given keys, ordered by key.
pub(crate) fn key_samples(states: &States, keys: &[u128]) -> Vec<Fields> {
    let Some(lookup) = states.try_get::<Lookup<KeyLookup>>() else {
        return Vec::new();
    };
    let summary = &states.get::<EffectsKernel>().summary;
    let mut out: Vec<(String, Fields)> = keys
        .iter()
        .filter_map(|h| lookup.found.get(h).map(|f| (h, f)))
        .map(|(h, found)| {
            let execs: &[Execution] = found.groups.get(&()).map_or(&[], |s| s.items());
            let count = summary.target_executions.get(h);
            let mut f = Fields::new();
            f.insert(
                "idempotency_key".into(),
                Metric::Text(Some(found.text.clone())),
            );
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
            (found.text.clone(), f)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, f)| f).collect()
}

fn finish(f: &Finish<'_>) -> CheckResult {
    let ctx = f.ctx;
    if let Some(reason) = skip_reason(ctx) {
        return CheckResult::skip(INFO.id, reason);
    }
    let partial = f.states.get::<EffectsKernel>();
    let summary = &partial.summary;
    let phases: &[&str] = if ctx.plan.freeze().is_some() {
        &PHASES_FREEZE
    } else if ctx.plan.flip_at().is_some() {
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
        parts.push(format!(
            "{} over {} executed more than once",
            plural(extra, "extra execution", "extra executions"),
            plural(duplicate_keys, "idempotency key", "idempotency keys")
        ));
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
            "{} an unknown decision (not new/duplicate/conflict)",
            plural(partial.unknown_decisions, "receipt has", "receipts have")
        ));
    }
    if parts.is_empty() {
        parts.push(format!(
            "{}, each idempotency key executed once ({}: the fence held)",
            plural(partial.executions, "execution", "executions"),
            plural(partial.dedupe_hits, "dedupe hit", "dedupe hits")
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
            plural(extra, "extra execution", "extra executions"),
            "",
            "0 extra executions",
        )
        .sample_size(partial.executions.to_string());
    result.samples = key_samples(f.states, &summary.duplicate_targets);
    result
}
