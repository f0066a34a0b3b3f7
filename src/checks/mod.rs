//! The checks: one file per check, this registry, and the fused partial state of one pass.
//!
//! Each check keeps a partial state that is updated per batch, merged across batches, threads and
//! shards, and evaluated once (`update → merge → finish`). The two modes share every kernel: they
//! differ only in how rows are classified ([`RowClasses`]): by time around the flip (rollback) or
//! by arm (canary).

pub mod cache_isolation;
pub mod cache_rotation;
pub mod duplicate_effects;
pub mod error_rate;
pub mod error_recovery;
pub mod evidence;
pub mod latency;
pub mod mixed_versions;
pub mod pins;
pub mod quality;
pub mod reconciliation;
pub mod sticky_routing;
pub mod timeline;
pub mod writer_freeze;

use std::collections::{BTreeMap, BTreeSet};

use crate::columns::{CanonBatch, Col};
use crate::incident::{Canary, Incident, Mode, PinSet, Thresholds, Window};
use crate::time::{Micros, MICROS_PER_MINUTE};

/// How many samples a check keeps.
pub const SAMPLE_CAP: usize = 10;

/// A check's documentation, printed by `rollproof explain ID`.
#[derive(Debug)]
pub struct CheckInfo {
    pub id: &'static str,
    pub title: &'static str,
    pub modes: &'static [Mode],
    pub what_it_checks: &'static str,
    pub why_it_matters: &'static str,
    pub what_fails_it: &'static str,
    pub columns_it_needs: &'static str,
}

const BOTH: &[Mode] = &[Mode::Rollback, Mode::Canary];
const ROLLBACK: &[Mode] = &[Mode::Rollback];
const CANARY: &[Mode] = &[Mode::Canary];

/// Every check, in report order.
pub static REGISTRY: &[&CheckInfo] = &[
    &pins::INFO,
    &cache_rotation::INFO,
    &cache_isolation::INFO,
    &mixed_versions::INFO,
    &sticky_routing::INFO,
    &duplicate_effects::INFO,
    &writer_freeze::INFO,
    &reconciliation::INFO,
    &error_recovery::INFO,
    &error_rate::INFO,
    &latency::INFO,
    &quality::INFO,
    &evidence::INFO,
];

pub fn find(id: &str) -> Option<&'static CheckInfo> {
    REGISTRY.iter().copied().find(|c| c.id == id)
}

impl CheckInfo {
    pub fn explain(&self) -> String {
        let modes: Vec<&str> = self.modes.iter().map(|m| m.name()).collect();
        format!(
            "{id} — {title}\n(modes: {modes})\n\nWhat it checks\n  {what}\n\nWhy it matters\n  {why}\n\nWhat fails it\n  {fails}\n\nColumns it needs\n  {cols}\n",
            id = self.id,
            title = self.title,
            modes = modes.join(", "),
            what = wrap(self.what_it_checks),
            why = wrap(self.why_it_matters),
            fails = wrap(self.what_fails_it),
            cols = wrap(self.columns_it_needs),
        )
    }
}

fn wrap(text: &str) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split_whitespace() {
        if line > 0 && line + word.len() > 92 {
            out.push_str("\n  ");
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.len();
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pass,
    Warn,
    Fail,
    Skip,
    Inconclusive,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
            Status::Inconclusive => "inconclusive",
        }
    }

    /// The worse of two statuses, for checks with several conditions.
    pub fn worst(self, other: Status) -> Status {
        fn rank(s: Status) -> u8 {
            match s {
                Status::Skip => 0,
                Status::Pass => 1,
                Status::Warn => 2,
                Status::Inconclusive => 3,
                Status::Fail => 4,
            }
        }
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// A metric value. Converted to JSON by the report model.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    Count(u64),
    /// A count that may be unknown (e.g. recovery minutes when never recovered).
    MaybeCount(Option<u64>),
    Number(Option<f64>),
    Text(Option<String>),
    Flag(bool),
    Counts(BTreeMap<String, u64>),
    Texts(Vec<String>),
}

pub type Fields = BTreeMap<String, Metric>;

/// What a check concluded. Internal; the report model is built from it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub id: &'static str,
    pub status: Status,
    /// One line a person reads first: the observed value against its threshold.
    pub summary: String,
    pub metrics: Fields,
    pub samples: Vec<Fields>,
    /// Table cells for the human formats.
    pub observed: String,
    pub baseline: String,
    pub threshold: String,
}

impl CheckResult {
    pub fn new(id: &'static str, status: Status, summary: impl Into<String>) -> CheckResult {
        CheckResult {
            id,
            status,
            summary: summary.into(),
            metrics: Fields::new(),
            samples: Vec::new(),
            observed: String::new(),
            baseline: String::new(),
            threshold: String::new(),
        }
    }

    pub fn skip(id: &'static str, reason: impl Into<String>) -> CheckResult {
        CheckResult::new(id, Status::Skip, reason)
    }

    pub fn metric(mut self, key: &str, value: Metric) -> CheckResult {
        self.metrics.insert(key.to_string(), value);
        self
    }

    pub fn cells(
        mut self,
        observed: impl Into<String>,
        baseline: impl Into<String>,
        threshold: impl Into<String>,
    ) -> CheckResult {
        self.observed = observed.into();
        self.baseline = baseline.into();
        self.threshold = threshold.into();
        self
    }
}

/// Everything a check may know besides the data: validated incident, resolved windows, which
/// columns the tables have. Built once before the pass.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub mode: Mode,
    pub thresholds: Thresholds,
    pub flip_at: Option<Micros>,
    pub baseline: Option<Window>,
    /// Resolved post window (rollback): the incident's, or [flip_at + 10 min, ∞).
    pub post: Option<Window>,
    pub post_is_default: bool,
    pub freeze: Option<Window>,
    pub pin_sets: Vec<PinSet>,
    pub canary: Option<Canary>,
    pub requests_present: BTreeSet<Col>,
    /// `None` when no receipts were given.
    pub receipts_present: Option<BTreeSet<Col>>,
    pub root_cause_url: Option<String>,
    /// Request ids the receipts name (64-bit hashes), for the reconciliation join. Set after the
    /// receipts pass, before the request pass.
    pub receipt_requests: Option<std::sync::Arc<reconciliation::ReceiptTable>>,
    /// Whether to build the per-minute series (only the HTML report draws it).
    pub timeline: bool,
}

impl Ctx {
    pub fn new(
        incident: &Incident,
        requests_present: BTreeSet<Col>,
        receipts_present: Option<BTreeSet<Col>>,
    ) -> Ctx {
        let (post, post_is_default) = match (incident.mode, incident.post, incident.flip_at) {
            (Mode::Rollback, Some(p), _) => (Some(p), false),
            (Mode::Rollback, None, Some(flip)) => (
                Some(Window {
                    start: flip + 10 * MICROS_PER_MINUTE,
                    end: Micros::MAX,
                }),
                true,
            ),
            _ => (None, false),
        };
        Ctx {
            mode: incident.mode,
            thresholds: incident.thresholds.clone(),
            flip_at: incident.flip_at,
            baseline: incident.baseline,
            post,
            post_is_default,
            freeze: incident.freeze,
            pin_sets: incident.pin_sets.clone(),
            canary: incident.canary.clone(),
            requests_present,
            receipts_present,
            root_cause_url: incident.root_cause_url.clone(),
            receipt_requests: None,
            timeline: false,
        }
    }

    pub fn has(&self, col: Col) -> bool {
        self.requests_present.contains(&col)
    }

    pub fn has_receipt(&self, col: Col) -> bool {
        self.receipts_present
            .as_ref()
            .is_some_and(|p| p.contains(&col))
    }

    /// `post` or `canary`: the prefix of the subject side's metrics.
    pub fn subject(&self) -> &'static str {
        match self.mode {
            Mode::Rollback => "post",
            Mode::Canary => "canary",
        }
    }

    /// Name of the audited rows, for summaries.
    pub fn audited_noun(&self) -> &'static str {
        match self.mode {
            Mode::Rollback => "post-flip requests",
            Mode::Canary => "requests of both arms",
        }
    }

    /// Label of pin set `s` (0-based) in breakdowns.
    pub fn set_label(&self, s: usize) -> String {
        match &self.canary {
            Some(c) if s == 0 => c.baseline_arm.clone(),
            Some(c) => c.canary_arm.clone(),
            None => "expected".to_string(),
        }
    }

    /// Window of canary mode: receipts and requests outside it are not audited.
    pub fn canary_window_contains(&self, ts: Micros) -> bool {
        match self.canary.as_ref().and_then(|c| c.window) {
            Some(w) => w.contains(ts),
            None => true,
        }
    }

    /// Columns the request checks read.
    pub fn request_columns(&self) -> Vec<Col> {
        let mut cols: Vec<Col> = vec![
            Col::RequestId,
            Col::Region,
            Col::UserId,
            Col::CacheNs,
            Col::CacheHit,
            Col::Status,
            Col::LatencyMs,
            Col::DeltaS,
            Col::Coverage,
            Col::LambdaState,
        ];
        if self.mode == Mode::Canary {
            cols.push(Col::Arm);
        }
        cols.extend(crate::incident::pins_named_in(&self.pin_sets));
        cols.retain(|c| self.has(*c));
        cols.sort();
        cols.dedup();
        cols
    }
}

/// Side of a row in the comparison: baseline, subject (post window / canary arm) or neither.
pub const SIDE_NONE: u8 = 0;
pub const SIDE_BASELINE: u8 = 1;
pub const SIDE_SUBJECT: u8 = 2;

/// The classification of one batch's rows: the only place where the modes differ.
pub struct RowClasses {
    /// 0: not audited; `s + 1`: audited against pin set `s`.
    pub set: Vec<u8>,
    /// `SIDE_*`.
    pub side: Vec<u8>,
    /// Canary: rows in the window whose arm is neither arm.
    pub other_arm: u64,
}

impl RowClasses {
    pub fn classify(ctx: &Ctx, batch: &CanonBatch) -> RowClasses {
        let ts = batch.ts();
        match ctx.mode {
            Mode::Rollback => {
                let flip = ctx.flip_at.expect("rollback has flip_at");
                let set = ts.iter().map(|&t| (t >= flip) as u8).collect();
                let side = ts
                    .iter()
                    .map(|&t| {
                        if ctx.baseline.is_some_and(|w| w.contains(t)) {
                            SIDE_BASELINE
                        } else if ctx.post.is_some_and(|w| w.contains(t)) {
                            SIDE_SUBJECT
                        } else {
                            SIDE_NONE
                        }
                    })
                    .collect();
                RowClasses {
                    set,
                    side,
                    other_arm: 0,
                }
            }
            Mode::Canary => {
                let canary = ctx.canary.as_ref().expect("canary mode has [canary]");
                let arms: Vec<u8> = match batch.str(Col::Arm) {
                    Some(arm) => arm.map_rows(|v| match v {
                        Some(a) if a == canary.baseline_arm => 1,
                        Some(a) if a == canary.canary_arm => 2,
                        _ => 0,
                    }),
                    None => vec![0; batch.len()],
                };
                let mut other_arm = 0;
                let set: Vec<u8> = arms
                    .iter()
                    .zip(ts)
                    .map(|(&a, &t)| {
                        if !ctx.canary_window_contains(t) {
                            0
                        } else {
                            other_arm += (a == 0) as u64;
                            a
                        }
                    })
                    .collect();
                let side = set.clone();
                RowClasses {
                    set,
                    side,
                    other_arm,
                }
            }
        }
    }
}

/// Counts kept beside the checks: rows per side, the span of the data.
#[derive(Debug, Clone, Default)]
pub struct RowCounts {
    pub rows: u64,
    pub audited: u64,
    pub side_rows: [u64; 2],
    pub other_arm: u64,
    pub min_ts: Option<Micros>,
    pub max_ts: Option<Micros>,
    /// Rows outside every window and not audited.
    pub outside: u64,
}

impl RowCounts {
    fn update(&mut self, batch: &CanonBatch, rows: &RowClasses) {
        self.rows += batch.len() as u64;
        for (&set, &side) in rows.set.iter().zip(&rows.side) {
            self.audited += (set != 0) as u64;
            if side != SIDE_NONE {
                self.side_rows[side as usize - 1] += 1;
            }
            self.outside += (set == 0 && side == SIDE_NONE) as u64;
        }
        self.other_arm += rows.other_arm;
        let ts = batch.ts();
        if let (Some(lo), Some(hi)) = (ts.iter().min(), ts.iter().max()) {
            self.min_ts = Some(self.min_ts.map_or(*lo, |m| m.min(*lo)));
            self.max_ts = Some(self.max_ts.map_or(*hi, |m| m.max(*hi)));
        }
    }

    fn merge(&mut self, other: &RowCounts) {
        self.rows += other.rows;
        self.audited += other.audited;
        self.side_rows[0] += other.side_rows[0];
        self.side_rows[1] += other.side_rows[1];
        self.other_arm += other.other_arm;
        self.outside += other.outside;
        self.min_ts = match (self.min_ts, other.min_ts) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max_ts = match (self.max_ts, other.max_ts) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// `inconclusive` reason when a side has fewer than `min_requests` rows.
    pub fn too_few(&self, ctx: &Ctx) -> Option<String> {
        let min = ctx.thresholds.min_requests;
        let names = match ctx.mode {
            Mode::Rollback => ["baseline window", "post window"],
            Mode::Canary => ["baseline arm", "canary arm"],
        };
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

/// The fused partial state of the request checks: one update per batch feeds all of them.
pub struct RequestPartial {
    pub counts: RowCounts,
    pub pins: pins::Partial,
    pub cache: cache_rotation::Partial,
    pub users: mixed_versions::Partial,
    pub errors: error_recovery::Partial,
    pub latency: latency::Partial,
    pub quality: quality::Partial,
    pub reconcile: reconciliation::RequestSide,
    pub timeline: timeline::Partial,
}

impl RequestPartial {
    pub fn new(ctx: &Ctx) -> RequestPartial {
        RequestPartial {
            counts: RowCounts::default(),
            pins: pins::Partial::new(ctx),
            cache: cache_rotation::Partial::new(),
            users: mixed_versions::Partial::default(),
            errors: error_recovery::Partial::default(),
            latency: latency::Partial::new(),
            quality: quality::Partial::new(),
            reconcile: reconciliation::RequestSide::default(),
            timeline: timeline::Partial::default(),
        }
    }

    pub fn update(&mut self, ctx: &Ctx, batch: &CanonBatch) {
        let rows = RowClasses::classify(ctx, batch);
        self.counts.update(batch, &rows);
        self.pins.update(ctx, batch, &rows);
        self.cache.update(ctx, batch, &rows);
        self.users.update(ctx, batch, &rows);
        self.errors.update(ctx, batch, &rows);
        self.latency.update(ctx, batch, &rows);
        self.quality.update(ctx, batch, &rows);
        self.reconcile.update(ctx, batch);
        self.timeline.update(ctx, batch);
    }

    pub fn merge(mut self, other: RequestPartial) -> RequestPartial {
        self.counts.merge(&other.counts);
        self.pins.merge(other.pins);
        self.cache.merge(other.cache);
        self.users.merge(other.users);
        self.errors.merge(other.errors);
        self.latency.merge(other.latency);
        self.quality.merge(other.quality);
        self.reconcile.merge(other.reconcile);
        self.timeline.merge(other.timeline);
        self
    }
}

/// The fused partial state of the receipt checks.
pub struct ReceiptPartial {
    pub rows: u64,
    pub effects: duplicate_effects::Partial,
    pub requests: reconciliation::ReceiptSide,
}

impl ReceiptPartial {
    pub fn new() -> ReceiptPartial {
        ReceiptPartial {
            rows: 0,
            effects: duplicate_effects::Partial::default(),
            requests: reconciliation::ReceiptSide::default(),
        }
    }

    pub fn update(&mut self, ctx: &Ctx, batch: &CanonBatch) {
        self.rows += batch.len() as u64;
        self.effects.update(ctx, batch);
        self.requests.update(ctx, batch);
    }

    pub fn merge(mut self, other: ReceiptPartial) -> ReceiptPartial {
        self.rows += other.rows;
        self.effects.merge(other.effects);
        self.requests.merge(other.requests);
        self
    }
}

impl Default for ReceiptPartial {
    fn default() -> Self {
        ReceiptPartial::new()
    }
}

/// Formats a fraction as a percentage with two decimals.
pub fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

/// Formats an optional number with `digits` decimals, or `n/a`.
pub fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.digits$}"))
}

/// Increments `map[key]` without allocating when the key is already there.
#[inline]
pub fn bump(map: &mut std::collections::HashMap<String, u64>, key: &str) {
    if let Some(c) = map.get_mut(key) {
        *c += 1;
    } else {
        map.insert(key.to_string(), 1);
    }
}

/// A `HashMap<String, u64>` as a sorted metric.
pub fn sorted_counts(map: &std::collections::HashMap<String, u64>) -> Metric {
    Metric::Counts(map.iter().map(|(k, v)| (k.clone(), *v)).collect())
}

/// Adds `other` into `into`.
pub fn merge_map(
    into: &mut std::collections::HashMap<String, u64>,
    other: std::collections::HashMap<String, u64>,
) {
    for (k, v) in other {
        *into.entry(k).or_insert(0) += v;
    }
}

/// Region of row `i` for breakdowns: `all` when the logs have no region, `unknown` when missing.
#[inline]
pub fn region_of<'a>(region: Option<&crate::columns::StrCol<'a>>, i: usize) -> &'a str {
    match region {
        None => "all",
        Some(r) => r.get(i).unwrap_or("unknown"),
    }
}
