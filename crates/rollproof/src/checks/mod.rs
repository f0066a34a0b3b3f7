//! The checks: one file per check (its documentation, its kernels, its finish) and this registry.
//!
//! A check is a [`CheckSpec`]: what it is ([`CheckInfo`], printed by `rollproof explain`), the
//! kernels whose settled states it reads, and `finish`, which turns those states into a
//! [`CheckResult`]. The audit runs the kernels of every check of the incident's mode, fused into
//! one pass per table, and calls each `finish` once. Canary checks that share a kernel with a
//! rollback check (`cache_isolation` ↔ `cache_rotation`, `sticky_routing` ↔ `mixed_versions`,
//! `error_rate` ↔ `error_recovery`) list the same kernel and read it differently.
//!
//! Adding a check: its file, and one line in [`CHECKS`].

pub(crate) mod cache_isolation;
pub(crate) mod cache_rotation;
pub(crate) mod duplicate_effects;
pub(crate) mod error_rate;
pub(crate) mod error_recovery;
pub(crate) mod evidence;
pub(crate) mod impact;
pub(crate) mod latency;
pub(crate) mod mixed_versions;
pub(crate) mod pins;
pub(crate) mod quality;
pub(crate) mod reconciliation;
pub(crate) mod rows;
pub(crate) mod series;
pub(crate) mod sticky_routing;
pub(crate) mod writer_freeze;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::columns::Table;
use crate::engine::{AnyKernel, Rows, States};
use crate::plan::{Ctx, Mode};
use crate::time::{format_millis, Micros};

/// How many samples a check keeps.
pub(crate) const SAMPLE_CAP: usize = 10;

/// Every check, in report order.
pub(crate) static CHECKS: &[&CheckSpec] = &[
    &pins::CHECK,
    &cache_rotation::CHECK,
    &cache_isolation::CHECK,
    &mixed_versions::CHECK,
    &sticky_routing::CHECK,
    &duplicate_effects::CHECK,
    &writer_freeze::CHECK,
    &reconciliation::CHECK,
    &error_recovery::CHECK,
    &error_rate::CHECK,
    &latency::CHECK,
    &quality::CHECK,
    &evidence::CHECK,
];

/// Kernels every audit runs besides the checks' own: the row accounting.
pub(crate) static ALWAYS: &[&dyn AnyKernel] = &[&rows::ROWS];

/// A check: its documentation, the kernels it reads, and how it concludes.
pub(crate) struct CheckSpec {
    pub(crate) info: &'static CheckInfo,
    /// The kernels whose settled states `finish` reads (shared kernels are run once).
    pub(crate) kernels: &'static [&'static dyn AnyKernel],
    pub(crate) finish: fn(&Finish<'_>) -> CheckResult,
    /// The rows behind the check's findings, for `--evidence-dir`: each kind selects rows of
    /// one table (written when the check fails or warns).
    pub(crate) evidence: &'static [&'static Evidence],
}

/// A kind of finding whose rows `--evidence-dir` writes: every row `select` picks.
pub(crate) struct Evidence {
    /// The file's name (without extension) in the evidence folder.
    pub(crate) kind: &'static str,
    pub(crate) table: Table,
    pub(crate) select: fn(&Ctx, &States, &Rows<'_>) -> Vec<bool>,
}

/// What a check's `finish` reads.
pub(crate) struct Finish<'a> {
    pub(crate) ctx: &'a Ctx,
    pub(crate) states: &'a States,
    pub(crate) inputs: &'a InputTotals,
}

/// What was read, per table, as the evidence check reports it.
#[derive(Debug, Clone, Default)]
pub(crate) struct InputTotals {
    pub(crate) requests: TableTotals,
    /// `None` when no receipts were given.
    pub(crate) receipts: Option<TableTotals>,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TableTotals {
    pub(crate) files: u64,
    pub(crate) rows: u64,
    pub(crate) rejected: u64,
    pub(crate) dropped: u64,
}

/// The checks of `mode`, in report order.
pub(crate) fn of_mode(mode: Mode) -> impl Iterator<Item = &'static CheckSpec> {
    CHECKS
        .iter()
        .copied()
        .filter(move |c| c.info.modes.contains(&mode))
}

/// A check's documentation, printed by `rollproof explain ID`, and what the human reports say
/// about it.
#[derive(Debug)]
pub struct CheckInfo {
    pub id: &'static str,
    pub title: &'static str,
    pub modes: &'static [Mode],
    pub what_it_checks: &'static str,
    pub why_it_matters: &'static str,
    pub what_fails_it: &'static str,
    pub columns_it_needs: &'static str,
    /// The postmortem's action item when the check fails or warns; `{regions}` is replaced by the
    /// regions of its `by_region` breakdown (or "every region").
    pub remediation: &'static str,
    /// Its `by_region` breakdown in the per-region table, if it has one: the column label, and
    /// the metric holding each region's denominator (for rates and totals).
    pub region_column: Option<(&'static str, &'static str)>,
    /// The postmortem's impact sentence, from the check's status and figures.
    pub(crate) impact: Option<ImpactFn>,
    /// Events the check adds to the incident timeline.
    pub(crate) events: Option<EventsFn>,
}

/// The impact sentence of a check, from its status, figures and the audit's mode.
pub(crate) type ImpactFn = fn(Status, &Fields, Mode) -> Option<String>;
/// The timeline events of a check, from its figures and the flip.
pub(crate) type EventsFn = fn(&Fields, Option<Micros>) -> Vec<Event>;

pub(crate) const BOTH: &[Mode] = &[Mode::Rollback, Mode::Canary];
pub(crate) const ROLLBACK: &[Mode] = &[Mode::Rollback];
pub(crate) const CANARY: &[Mode] = &[Mode::Canary];

/// The documentation of every check, in report order.
pub fn infos() -> impl Iterator<Item = &'static CheckInfo> {
    CHECKS.iter().map(|c| c.info)
}

pub fn find(id: &str) -> Option<&'static CheckInfo> {
    infos().find(|c| c.id == id)
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

/// A check's outcome, in one order of severity: `Skip < Pass < Warn < Inconclusive < Fail`.
/// The verdict of a run is the most severe status (skip counting as pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Skip,
    Pass,
    Warn,
    Inconclusive,
    Fail,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Pass,
        Status::Warn,
        Status::Fail,
        Status::Skip,
        Status::Inconclusive,
    ];

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
        self.max(other)
    }

    /// The verdict over all checks: fail > inconclusive > warn > pass; skip does not count.
    pub fn verdict(statuses: impl IntoIterator<Item = Status>) -> Status {
        statuses.into_iter().fold(Status::Pass, Status::worst)
    }

    /// Failed, warned or inconclusive: something a reader must look at.
    pub fn needs_attention(self) -> bool {
        matches!(self, Status::Warn | Status::Fail | Status::Inconclusive)
    }

    /// How the process ends when this is the verdict.
    pub fn exit_status(self) -> ExitStatus {
        match self {
            Status::Fail => ExitStatus::Failed,
            Status::Inconclusive => ExitStatus::Inconclusive,
            Status::Pass | Status::Warn | Status::Skip => ExitStatus::Success,
        }
    }
}

/// How the process ends; [`ExitStatus::code`] gives the documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Verdict pass or warn.
    Success,
    /// Verdict fail: the gate is closed.
    Failed,
    /// Usage, configuration or input error.
    Error,
    /// Verdict inconclusive: too little data.
    Inconclusive,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failed => 1,
            ExitStatus::Error => 2,
            ExitStatus::Inconclusive => 3,
        }
    }
}

/// A metric value, as the report shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    Count(u64),
    /// A count that may be unknown (e.g. recovery minutes when never recovered).
    MaybeCount(Option<u64>),
    Number(Option<f64>),
    Text(Option<String>),
    /// An instant, shown as RFC 3339 UTC with milliseconds.
    Time(Option<Micros>),
    Flag(bool),
    Counts(BTreeMap<String, u64>),
    /// Instants by name (region → its last violation), shown as RFC 3339 UTC with milliseconds.
    Times(BTreeMap<String, Micros>),
    Texts(Vec<String>),
}

impl Metric {
    pub fn as_count(&self) -> Option<u64> {
        match self {
            Metric::Count(n) | Metric::MaybeCount(Some(n)) => Some(*n),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<f64> {
        match self {
            Metric::Number(v) => *v,
            Metric::Count(n) | Metric::MaybeCount(Some(n)) => Some(*n as f64),
            _ => None,
        }
    }

    pub fn as_time(&self) -> Option<Micros> {
        match self {
            Metric::Time(t) => *t,
            _ => None,
        }
    }

    pub fn as_times(&self) -> Option<&BTreeMap<String, Micros>> {
        match self {
            Metric::Times(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_counts(&self) -> Option<&BTreeMap<String, u64>> {
        match self {
            Metric::Counts(m) => Some(m),
            _ => None,
        }
    }

    /// The value as text for the human formats: strings as they are, `∅` for null, lists joined
    /// with commas, maps as `key: value` pairs. Callers escape for their format.
    pub fn display(&self) -> String {
        match self {
            Metric::Count(n) | Metric::MaybeCount(Some(n)) => n.to_string(),
            Metric::Number(Some(v)) => serde_json::to_string(&rounded(*v)).unwrap_or_default(),
            Metric::Text(Some(s)) => s.clone(),
            Metric::Time(Some(t)) => format_millis(*t),
            Metric::Flag(b) => b.to_string(),
            Metric::Counts(m) => m
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            Metric::Times(m) => m
                .iter()
                .map(|(k, v)| format!("{k}: {}", format_millis(*v)))
                .collect::<Vec<_>>()
                .join(", "),
            Metric::Texts(v) => v.join(", "),
            Metric::MaybeCount(None)
            | Metric::Number(None)
            | Metric::Text(None)
            | Metric::Time(None) => "∅".to_string(),
        }
    }
}

/// A float as the report writes it: rounded to 9 decimals so that representation noise does not
/// show.
fn rounded(v: f64) -> f64 {
    (v * 1e9).round() / 1e9
}

impl Serialize for Metric {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Metric::Count(n) | Metric::MaybeCount(Some(n)) => s.serialize_u64(*n),
            Metric::Number(Some(v)) if rounded(*v).is_finite() => s.serialize_f64(rounded(*v)),
            Metric::Text(Some(t)) => s.serialize_str(t),
            Metric::Time(Some(t)) => s.serialize_str(&format_millis(*t)),
            Metric::Flag(b) => s.serialize_bool(*b),
            Metric::Counts(m) => m.serialize(s),
            Metric::Times(m) => s.collect_map(m.iter().map(|(k, v)| (k, format_millis(*v)))),
            Metric::Texts(v) => v.serialize(s),
            Metric::MaybeCount(None)
            | Metric::Number(_)
            | Metric::Text(None)
            | Metric::Time(None) => s.serialize_none(),
        }
    }
}

pub type Fields = BTreeMap<String, Metric>;

/// An event a check adds to the incident timeline.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) at: Micros,
    pub(crate) what: String,
    pub(crate) kind: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// Something went wrong (or was still wrong) at this instant.
    Bad,
    /// Something recovered.
    Good,
}

/// What a check concluded. Internal; the report model is built from it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CheckResult {
    pub(crate) id: &'static str,
    pub(crate) status: Status,
    /// One line a person reads first: the observed value against its threshold.
    pub(crate) summary: String,
    pub(crate) metrics: Fields,
    pub(crate) samples: Vec<Fields>,
    /// Table cells for the human formats.
    pub(crate) observed: String,
    pub(crate) baseline: String,
    pub(crate) threshold: String,
    pub(crate) sample_size: String,
}

impl CheckResult {
    pub(crate) fn new(id: &'static str, status: Status, summary: impl Into<String>) -> CheckResult {
        CheckResult {
            id,
            status,
            summary: summary.into(),
            metrics: Fields::new(),
            samples: Vec::new(),
            observed: String::new(),
            baseline: String::new(),
            threshold: String::new(),
            sample_size: String::new(),
        }
    }

    pub(crate) fn skip(id: &'static str, reason: impl Into<String>) -> CheckResult {
        CheckResult::new(id, Status::Skip, reason)
    }

    pub(crate) fn metric(mut self, key: &str, value: Metric) -> CheckResult {
        self.metrics.insert(key.to_string(), value);
        self
    }

    pub(crate) fn cells(
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

    /// The sample size the HTML checks table shows.
    pub(crate) fn sample_size(mut self, size: impl Into<String>) -> CheckResult {
        self.sample_size = size.into();
        self
    }
}

pub(crate) use crate::words::{count, num, pct};

/// Region of row `i` for breakdowns: `all` when the logs have no region, `unknown` when missing.
#[inline]
pub(crate) fn region_of<'a>(region: Option<&crate::columns::StrCol<'a>>, i: usize) -> &'a str {
    match region {
        None => "all",
        Some(r) => r.get(i).unwrap_or("unknown"),
    }
}
