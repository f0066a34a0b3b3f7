//! `rollproof init`: survey the logs (files, columns, time range, the values of the pin, cache,
//! region and arm columns and when each was seen) and write a first incident file from them.
//!
//! Every value the incident file gets is a guess from the data and is marked as one, with what it
//! was guessed from. A guess that cannot be made is left commented out, so that `rollproof audit`
//! stops with "missing …" instead of auditing against a made-up value.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use rayon::prelude::*;

use crate::columns::{CanonBatch, Col, Table, PIN_COLUMNS};
use crate::error::{closest, InputError, Problem};
use crate::incident::{Thresholds, THRESHOLD_KEYS};
use crate::ingest::mapping::Unit;
use crate::ingest::{self, InputSpec, Mapping, TablePlan};
use crate::plan::Mode;
use crate::time::{format_seconds, Micros, MICROS_PER_MINUTE};
use crate::words::{count, plural};

/// Distinct values kept per column; rarer ones beyond this are counted together.
const MAX_VALUES: usize = 64;
/// The last-known-good pins are the values most requests carried in this last share of the data.
const TAIL_SHARE: f64 = 0.10;
/// A minute whose share of requests off the last-known-good pins reaches this is in the incident.
const ONSET_SHARE: f64 = 0.05;
/// The flip is guessed as the end of the last minute in which at least this share was off-pin.
const MAJORITY_SHARE: f64 = 0.5;
/// The longest baseline window guessed before the incident started.
const BASELINE_MINUTES: i64 = 60;

/// The columns whose values are surveyed, per table.
fn surveyed(table: Table) -> Vec<Col> {
    match table {
        Table::Requests => {
            let mut cols = PIN_COLUMNS.to_vec();
            cols.extend([Col::CacheNs, Col::Region, Col::Arm]);
            cols
        }
        Table::Receipts => vec![Col::Effect, Col::WriterId, Col::Decision],
    }
}

/// Names a timestamp column is often given, for a table whose files have no `ts`.
const TS_NAMES: &[&str] = &[
    "timestamp",
    "time",
    "@timestamp",
    "time_iso8601",
    "start_time",
    "datetime",
    "date",
    "event_time",
];

/// Names real logs give canonical columns (OpenTelemetry's semantic conventions, nginx, Envoy),
/// in order of preference, with the unit a duration is in.
const KNOWN_NAMES: &[(Col, &str, Option<Unit>)] = &[
    (Col::Status, "http.response.status_code", None),
    (Col::Status, "http.status_code", None),
    (Col::Status, "status_code", None),
    (Col::Status, "response_code", None),
    (Col::Status, "http_status", None),
    (Col::LatencyMs, "duration_ms", None),
    (Col::LatencyMs, "latency", None),
    (Col::LatencyMs, "elapsed_ms", None),
    (Col::LatencyMs, "request_time", Some(Unit::S)),
    (Col::Region, "cloud.region", None),
    (Col::UserId, "enduser.id", None),
    (Col::UserId, "user.id", None),
    (Col::GitSha, "vcs.ref.head.revision", None),
    (Col::GitSha, "vcs.repository.ref.revision", None),
    (Col::GitSha, "git_commit", None),
    (Col::BuildId, "service.version", None),
    (Col::ModelVer, "gen_ai.response.model", None),
    (Col::ModelVer, "gen_ai.request.model", None),
    (Col::RequestId, "x_request_id", None),
    (Col::RequestId, "trace_id", None),
];

/// One value of a column: how many rows carried it, when first and last, and per minute.
#[derive(Debug, Clone, Default)]
struct Seen {
    rows: u64,
    first: Micros,
    last: Micros,
    per_minute: BTreeMap<i64, u64>,
}

impl Seen {
    fn add(&mut self, other: &Seen) {
        if self.rows == 0 {
            self.first = other.first;
            self.last = other.last;
        } else if other.rows > 0 {
            self.first = self.first.min(other.first);
            self.last = self.last.max(other.last);
        }
        self.rows += other.rows;
        for (m, n) in &other.per_minute {
            *self.per_minute.entry(*m).or_default() += n;
        }
    }
}

/// The values of one column.
#[derive(Debug, Clone, Default)]
struct Values {
    seen: BTreeMap<String, Seen>,
    /// Rows whose value was not kept (beyond [`MAX_VALUES`] distinct values).
    other_rows: u64,
}

impl Values {
    fn offer(&mut self, value: &str, ts: Micros) {
        if !self.seen.contains_key(value) {
            if self.seen.len() >= MAX_VALUES {
                self.other_rows += 1;
                return;
            }
            self.seen.insert(value.to_string(), Seen::default());
        }
        let seen = self.seen.get_mut(value).expect("inserted above");
        if seen.rows == 0 {
            seen.first = ts;
            seen.last = ts;
        }
        seen.rows += 1;
        seen.first = seen.first.min(ts);
        seen.last = seen.last.max(ts);
        *seen
            .per_minute
            .entry(ts.div_euclid(MICROS_PER_MINUTE))
            .or_default() += 1;
    }

    fn merge(&mut self, other: Values) {
        self.other_rows += other.other_rows;
        for (value, seen) in other.seen {
            if let Some(mine) = self.seen.get_mut(&value) {
                mine.add(&seen);
            } else if self.seen.len() < MAX_VALUES {
                self.seen.insert(value, seen);
            } else {
                self.other_rows += seen.rows;
            }
        }
    }

    /// Values by rows, most first (ties by value).
    fn ranked(&self) -> Vec<(&str, &Seen)> {
        let mut v: Vec<(&str, &Seen)> = self.seen.iter().map(|(k, s)| (k.as_str(), s)).collect();
        v.sort_by(|a, b| b.1.rows.cmp(&a.1.rows).then(a.0.cmp(b.0)));
        v
    }

    /// The value with the most rows in minutes from `from` on.
    fn dominant_from(&self, from_minute: i64) -> Option<&str> {
        self.seen
            .iter()
            .map(|(v, s)| {
                (
                    s.per_minute
                        .range(from_minute..)
                        .map(|(_, n)| n)
                        .sum::<u64>(),
                    v,
                )
            })
            .filter(|(n, _)| *n > 0)
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(a.1)))
            .map(|(_, v)| v.as_str())
    }
}

/// The mergeable state of the survey pass over one table.
#[derive(Debug, Clone, Default)]
struct Tally {
    rows: u64,
    first: Option<Micros>,
    last: Option<Micros>,
    per_minute: BTreeMap<i64, u64>,
    values: BTreeMap<Col, Values>,
    /// Requests with an arm: per arm, per pin, the values.
    by_arm: BTreeMap<String, BTreeMap<Col, Values>>,
    /// Requests with a region: per region, rows per minute and the pins' values (to guess a
    /// region that flipped late).
    by_region: BTreeMap<String, RegionTally>,
}

#[derive(Debug, Clone, Default)]
struct RegionTally {
    per_minute: BTreeMap<i64, u64>,
    pins: BTreeMap<Col, Values>,
}

impl Tally {
    fn update(&mut self, batch: &CanonBatch, cols: &[Col]) {
        let ts = batch.ts();
        if ts.is_empty() {
            return;
        }
        self.rows += ts.len() as u64;
        let (lo, hi) = ts
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
        self.first = Some(self.first.map_or(lo, |f| f.min(lo)));
        self.last = Some(self.last.map_or(hi, |l| l.max(hi)));
        for &t in ts {
            *self
                .per_minute
                .entry(t.div_euclid(MICROS_PER_MINUTE))
                .or_default() += 1;
        }
        let arms = batch.str(Col::Arm);
        let regions = batch.str(Col::Region);
        // Per row, the region's tally (None: no region, or past MAX_VALUES regions).
        let mut slots: Vec<Option<String>> = Vec::new();
        if let Some(regions) = &regions {
            slots = (0..ts.len())
                .map(|i| {
                    let r = regions.get(i)?;
                    (self.by_region.contains_key(r) || self.by_region.len() < MAX_VALUES)
                        .then(|| r.to_string())
                })
                .collect();
            for (slot, &t) in slots.iter().zip(ts) {
                if let Some(r) = slot {
                    *self
                        .by_region
                        .entry(r.clone())
                        .or_default()
                        .per_minute
                        .entry(t.div_euclid(MICROS_PER_MINUTE))
                        .or_default() += 1;
                }
            }
        }
        for &col in cols {
            let Some(column) = batch.str(col) else {
                continue;
            };
            let values = self.values.entry(col).or_default();
            for (i, &t) in ts.iter().enumerate() {
                if let Some(v) = column.get(i) {
                    values.offer(v, t);
                }
            }
            if !PIN_COLUMNS.contains(&col) {
                continue;
            }
            for (i, slot) in slots.iter().enumerate() {
                if let (Some(r), Some(v)) = (slot, column.get(i)) {
                    let tally = self.by_region.get_mut(r).expect("counted above");
                    tally.pins.entry(col).or_default().offer(v, ts[i]);
                }
            }
            if let Some(arms) = &arms {
                for (i, &t) in ts.iter().enumerate() {
                    let (Some(arm), Some(v)) = (arms.get(i), column.get(i)) else {
                        continue;
                    };
                    if !self.by_arm.contains_key(arm) && self.by_arm.len() >= MAX_VALUES {
                        continue;
                    }
                    self.by_arm
                        .entry(arm.to_string())
                        .or_default()
                        .entry(col)
                        .or_default()
                        .offer(v, t);
                }
            }
        }
    }

    fn merge(mut self, other: Tally) -> Tally {
        self.rows += other.rows;
        self.first = [self.first, other.first].into_iter().flatten().min();
        self.last = [self.last, other.last].into_iter().flatten().max();
        for (m, n) in other.per_minute {
            *self.per_minute.entry(m).or_default() += n;
        }
        for (col, values) in other.values {
            self.values.entry(col).or_default().merge(values);
        }
        for (arm, pins) in other.by_arm {
            let mine = self.by_arm.entry(arm).or_default();
            for (col, values) in pins {
                mine.entry(col).or_default().merge(values);
            }
        }
        for (region, tally) in other.by_region {
            if !self.by_region.contains_key(&region) && self.by_region.len() >= MAX_VALUES {
                continue;
            }
            let mine = self.by_region.entry(region).or_default();
            for (m, n) in tally.per_minute {
                *mine.per_minute.entry(m).or_default() += n;
            }
            for (col, values) in tally.pins {
                mine.pins.entry(col).or_default().merge(values);
            }
        }
        self
    }
}

/// One table of the survey.
#[derive(Debug, Clone)]
struct TableSurvey {
    table: Table,
    patterns: Vec<String>,
    /// (file as shown, format name)
    files: Vec<(String, &'static str)>,
    /// Every source column, sorted.
    columns: Vec<String>,
    tally: Tally,
}

/// A column mapping the survey applied because the files have no column of the canonical name.
#[derive(Debug, Clone, PartialEq)]
struct Suggestion {
    table: Table,
    col: Col,
    source: String,
    unit: Option<Unit>,
}

/// What `rollproof init` found in the logs; renders a first incident file and, when the columns
/// need one, a mapping file.
#[derive(Debug, Clone)]
pub struct Survey {
    requests: TableSurvey,
    receipts: Option<TableSurvey>,
    suggestions: Vec<Suggestion>,
    /// A mapping file the user gave.
    mapping: Option<String>,
}

/// Surveys the logs: `requests` and `receipts` are paths, globs or URLs (relative to the current
/// folder); `mapping` an optional mapping file.
pub fn survey(
    requests: &[String],
    receipts: &[String],
    mapping: Option<&Path>,
) -> Result<Survey, InputError> {
    let mut problems = Vec::new();
    let mut mapping_file = match mapping {
        Some(path) => {
            let (m, found) = Mapping::load_lenient(path, false);
            problems.extend(found);
            m
        }
        None => Mapping::default(),
    };
    let specs = |patterns: &[String]| -> Vec<InputSpec> {
        patterns
            .iter()
            .map(|p| InputSpec {
                pattern: p.clone(),
                source: None,
            })
            .collect()
    };
    let mut inspected = Vec::new();
    for (table, patterns) in [(Table::Requests, requests), (Table::Receipts, receipts)] {
        let files = ingest::resolve(
            table.name(),
            &specs(patterns),
            Path::new(""),
            false,
            &mut problems,
        );
        inspected.push(ingest::inspect_all(files, mapping_file.spans));
    }
    if !problems.is_empty() {
        return Err(InputError { problems });
    }
    let mut suggestions = Vec::new();
    for (table, files) in [Table::Requests, Table::Receipts]
        .into_iter()
        .zip(&inspected)
    {
        let columns: Vec<String> = sorted_columns(files.iter().flatten().map(|f| f.columns()));
        suggest(table, &columns, &mut mapping_file, &mut suggestions);
    }
    let mut tables = Vec::new();
    for ((table, patterns), files) in [(Table::Requests, requests), (Table::Receipts, receipts)]
        .into_iter()
        .zip(inspected)
    {
        if patterns.is_empty() {
            continue;
        }
        let plan = ingest::plan_inspected(table, table.name(), files, &mapping_file, &mut problems);
        tables.push((patterns.to_vec(), plan));
    }
    if !problems.is_empty() {
        return Err(InputError { problems });
    }
    let mut surveyed_tables = Vec::new();
    for (patterns, plan) in tables {
        surveyed_tables.push(survey_table(patterns, &plan)?);
    }
    let mut it = surveyed_tables.into_iter();
    let requests = it.next().expect("the requests are always surveyed");
    Ok(Survey {
        requests,
        receipts: it.next(),
        suggestions,
        mapping: mapping.map(|p| p.display().to_string()),
    })
}

fn sorted_columns<'a>(lists: impl Iterator<Item = &'a [String]>) -> Vec<String> {
    let mut columns: Vec<String> = lists.flat_map(|c| c.iter().cloned()).collect();
    columns.sort();
    columns.dedup();
    columns
}

/// Maps canonical columns the files lack to the closest source column (`PromptVer` →
/// `prompt_ver`), and `ts` to a usual timestamp name.
fn suggest(table: Table, columns: &[String], mapping: &mut Mapping, out: &mut Vec<Suggestion>) {
    let table_mapping = mapping.table_mut(table);
    let taken =
        |m: &ingest::TableMapping, c: &str| Col::of_table(table).any(|col| m.source(col) == c);
    for col in Col::of_table(table) {
        if table_mapping.is_explicit(col) || columns.iter().any(|c| c == col.name()) {
            continue;
        }
        let free: Vec<&str> = columns
            .iter()
            .map(String::as_str)
            .filter(|c| !taken(table_mapping, c))
            .collect();
        let named = |n: &str| free.iter().copied().find(|c| c.eq_ignore_ascii_case(n));
        let found = if col == ingest::ts_of(table) {
            TS_NAMES.iter().find_map(|n| named(n)).map(|c| (c, None))
        } else {
            free.iter()
                .copied()
                .find(|c| closest(c, [col.name()]).is_some())
                .map(|c| (c, None))
                .or_else(|| {
                    KNOWN_NAMES
                        .iter()
                        .filter(|k| k.0 == col && table == Table::Requests)
                        .find_map(|k| named(k.1).map(|c| (c, k.2)))
                })
        };
        if let Some((source, unit)) = found {
            table_mapping.default_source(col, source, unit);
            out.push(Suggestion {
                table,
                col,
                source: source.to_string(),
                unit,
            });
        }
    }
}

fn survey_table(patterns: Vec<String>, plan: &TablePlan) -> Result<TableSurvey, InputError> {
    let cols: Vec<Col> = surveyed(plan.table);
    let units = plan.units();
    let (tally, problems) = units
        .par_iter()
        .fold(
            || (Tally::default(), Vec::new()),
            |(mut tally, mut problems), unit| {
                let read = plan.read_unit(*unit, &cols, |batch| tally.update(batch, &cols));
                if let Err(e) = read {
                    problems.extend(e.problems);
                }
                (tally, problems)
            },
        )
        .reduce(
            || (Tally::default(), Vec::new()),
            |(a, mut pa), (b, pb)| {
                pa.extend(pb);
                (a.merge(b), pa)
            },
        );
    if !problems.is_empty() {
        let mut problems: Vec<Problem> = problems;
        problems.sort_by(|a, b| (&a.file, &a.location).cmp(&(&b.file, &b.location)));
        problems.dedup();
        return Err(InputError { problems });
    }
    Ok(TableSurvey {
        table: plan.table,
        patterns,
        files: plan
            .files
            .iter()
            .map(|f| (f.display.clone(), f.source.name()))
            .collect(),
        columns: plan.source_columns().into_iter().collect(),
        tally,
    })
}

/// What the survey guesses about a rollback.
struct RollbackGuess {
    /// Per pin column seen: the last-known-good value.
    lkg: Vec<(Col, String)>,
    /// The first minute with off-pin traffic, and the guessed flip.
    onset: Option<Micros>,
    flip: Option<Micros>,
    /// The pins that changed during the incident, with the value most off-pin requests carried.
    changed: Vec<(Col, String)>,
    /// Regions whose own guessed flip differs from `flip`, sorted by region.
    region_flips: Vec<(String, Micros)>,
}

/// Per minute, the largest share of requests off the last-known-good value of any pin.
fn off_shares(
    per_minute: &BTreeMap<i64, u64>,
    values: &BTreeMap<Col, Values>,
    lkg: &[(Col, String)],
) -> Vec<(i64, f64)> {
    per_minute
        .iter()
        .map(|(&minute, &total)| {
            let share = lkg
                .iter()
                .filter_map(|(col, lkg)| {
                    let off: u64 = values
                        .get(col)?
                        .seen
                        .iter()
                        .filter(|(v, _)| *v != lkg)
                        .map(|(_, s)| s.per_minute.get(&minute).copied().unwrap_or(0))
                        .sum();
                    Some(off as f64 / total.max(1) as f64)
                })
                .fold(0.0, f64::max);
            (minute, share)
        })
        .collect()
}

/// The flip guessed from per-minute off-pin shares: the end of the last minute in which at least
/// half of the peak share (and at most a majority) was off the pins; `None` below the onset.
fn flip_of(shares: &[(i64, f64)]) -> Option<Micros> {
    let peak = shares.iter().map(|s| s.1).fold(0.0, f64::max);
    if peak < ONSET_SHARE {
        return None;
    }
    let level = MAJORITY_SHARE.min(peak / 2.0);
    shares
        .iter()
        .rev()
        .find(|s| s.1 >= level)
        .map(|s| (s.0 + 1) * MICROS_PER_MINUTE)
}

impl TableSurvey {
    fn values(&self, col: Col) -> Option<&Values> {
        self.tally.values.get(&col).filter(|v| !v.seen.is_empty())
    }

    fn span_minutes(&self) -> Option<(i64, i64)> {
        let first = *self.tally.per_minute.keys().next()?;
        let last = *self.tally.per_minute.keys().next_back()?;
        Some((first, last))
    }

    fn guess_rollback(&self) -> RollbackGuess {
        let mut guess = RollbackGuess {
            lkg: Vec::new(),
            onset: None,
            flip: None,
            changed: Vec::new(),
            region_flips: Vec::new(),
        };
        let Some((first, last)) = self.span_minutes() else {
            return guess;
        };
        let tail_from = last - ((last - first) as f64 * TAIL_SHARE).floor() as i64;
        for col in PIN_COLUMNS {
            let Some(values) = self.values(col) else {
                continue;
            };
            if let Some(lkg) = values.dominant_from(tail_from) {
                guess.lkg.push((col, lkg.to_string()));
            }
        }
        let shares = off_shares(&self.tally.per_minute, &self.tally.values, &guess.lkg);
        let peak = shares.iter().map(|s| s.1).fold(0.0, f64::max);
        if peak < ONSET_SHARE {
            return guess;
        }
        guess.onset = shares
            .iter()
            .find(|s| s.1 >= ONSET_SHARE)
            .map(|s| s.0 * MICROS_PER_MINUTE);
        guess.flip = flip_of(&shares);
        // A region rolled back on its own: its requests stayed off the pins after the others'.
        for (region, tally) in &self.tally.by_region {
            let own = flip_of(&off_shares(&tally.per_minute, &tally.pins, &guess.lkg));
            if let (Some(own), Some(flip)) = (own, guess.flip) {
                if own != flip && self.tally.by_region.len() > 1 {
                    guess.region_flips.push((region.clone(), own));
                }
            }
        }
        for (col, lkg) in &guess.lkg {
            let values = &self.tally.values[col];
            if let Some((bad, _)) = values.ranked().into_iter().find(|(v, _)| v != lkg) {
                guess.changed.push((*col, bad.to_string()));
            }
        }
        guess
    }
}

/// Renders a TOML key: bare when it can be.
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        s.to_string()
    } else {
        quote(s)
    }
}

/// Renders a TOML string.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The value of `[inputs] requests = …`: one string, or an array.
fn inputs_value(patterns: &[String]) -> String {
    match patterns {
        [one] => quote(one),
        many => format!(
            "[{}]",
            many.iter().map(|p| quote(p)).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The cache namespace with the last-known-good pins put back as placeholders:
/// `ns:ih-a41f:p-6` → `ns:{index_hash}:{prompt_ver}`.
fn namespace_template(namespace: &str, lkg: &[(Col, String)]) -> String {
    let mut pins: Vec<&(Col, String)> = lkg.iter().filter(|(_, v)| v.len() >= 2).collect();
    // Longest values first, so that a value inside another is not replaced first.
    pins.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    let mut out = namespace.to_string();
    for (col, value) in pins {
        out = out.replace(value.as_str(), &format!("{{{}}}", col.name()));
    }
    out
}

fn time_range(first: Option<Micros>, last: Option<Micros>) -> String {
    match (first, last) {
        (Some(a), Some(b)) => format!("{} .. {}", format_seconds(a), format_seconds(b)),
        _ => "no rows".to_string(),
    }
}

impl Survey {
    /// A commented incident file for `mode`; input paths are written as given, relative to the
    /// folder the incident file will be in (`inputs` replaces them when given).
    pub fn incident_toml(&self, mode: Mode, inputs: Option<(&[String], &[String])>) -> String {
        let mut out = String::new();
        let r = &self.requests;
        let _ = writeln!(
            out,
            "# Written by `rollproof init` from {} ({} rows, {}){}.",
            plural(r.files.len() as u64, "request file", "request files"),
            count(r.tally.rows),
            time_range(r.tally.first, r.tally.last),
            match &self.receipts {
                Some(rc) => format!(
                    " and {} ({} rows)",
                    plural(rc.files.len() as u64, "receipt file", "receipt files"),
                    count(rc.tally.rows)
                ),
                None => String::new(),
            }
        );
        out.push_str(
            "# Every value below is a guess from the data, marked `guess:`; check each one.\n",
        );
        out.push_str(
            "# `rollproof audit incident.toml` audits; `rollproof explain` lists the checks.\n",
        );
        if mode == Mode::Canary {
            out.push_str("mode = \"canary\"\n");
        }
        out.push_str("id = \"INC-0000\"                 # your incident or change id\n");
        let rollback = r.guess_rollback();
        let changes: Vec<String> = rollback
            .changed
            .iter()
            .take(3)
            .map(|(col, bad)| {
                let lkg = &rollback
                    .lkg
                    .iter()
                    .find(|l| l.0 == *col)
                    .expect("changed pins have a last-known-good value")
                    .1;
                format!("{} {bad} → {lkg}", col.name())
            })
            .collect();
        let title = match mode {
            Mode::Rollback if !changes.is_empty() => format!("rollback: {}", changes.join(", ")),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "title = {}  # one line: what went wrong, or what the canary ships",
            quote(&title)
        );
        if mode == Mode::Rollback {
            match rollback.flip {
                Some(flip) => {
                    let _ = writeln!(
                        out,
                        "flip_at = {}  # guess: the end of the last minute in which most requests were off the pins below",
                        quote(&format_seconds(flip))
                    );
                }
                None => out.push_str(
                    "# flip_at = \"…\"  # the rollback's pointer flip: no version change was found in the data to guess it from\n",
                ),
            }
        }
        out.push_str("# root_cause_url = \"https://…\"  # the ticket or postmortem (its absence is a finding)\n\n");
        self.write_inputs(&mut out, inputs);
        match mode {
            Mode::Rollback => self.write_rollback(&mut out, &rollback),
            Mode::Canary => self.write_canary(&mut out),
        }
        self.write_cache(&mut out, &rollback.lkg);
        out.push_str("\n# [thresholds]  (the defaults; uncomment one to override it)\n");
        let defaults = Thresholds::default();
        for (name, value) in defaults.entries() {
            debug_assert!(THRESHOLD_KEYS.contains(&name));
            let _ = writeln!(out, "# {name} = {value}");
        }
        out
    }

    fn write_inputs(&self, out: &mut String, inputs: Option<(&[String], &[String])>) {
        let (requests, receipts) = inputs.unwrap_or((
            &self.requests.patterns,
            self.receipts.as_ref().map_or(&[][..], |r| &r.patterns[..]),
        ));
        out.push_str("[inputs]\n");
        let _ = writeln!(out, "requests = {}", inputs_value(requests));
        if receipts.is_empty() {
            out.push_str("# receipts = \"receipts.parquet\"  # side-effect receipts: duplicate, freeze and reconciliation checks need them\n");
        } else {
            let _ = writeln!(out, "receipts = {}", inputs_value(receipts));
        }
        match (&self.mapping, self.suggestions.is_empty()) {
            (Some(m), _) => {
                let _ = writeln!(out, "mapping = {}", quote(m));
            }
            (None, false) => out.push_str(
                "mapping = \"mapping.toml\"  # written beside this file: the columns it maps\n",
            ),
            (None, true) => {}
        }
        out.push('\n');
    }

    fn write_rollback(&self, out: &mut String, guess: &RollbackGuess) {
        let r = &self.requests;
        out.push_str("[windows]  # half-open [start, end), RFC 3339\n");
        match (guess.onset, r.tally.first) {
            (Some(onset), Some(first)) => {
                let first_minute = first.div_euclid(MICROS_PER_MINUTE) * MICROS_PER_MINUTE;
                let start = first_minute.max(onset - BASELINE_MINUTES * MICROS_PER_MINUTE);
                if start < onset {
                    let _ = writeln!(
                        out,
                        "baseline = [{}, {}]  # guess: before the first minute with off-pin requests",
                        quote(&format_seconds(start)),
                        quote(&format_seconds(onset))
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "# baseline = [\"…\", \"…\"]  # the data starts with off-pin requests ({}): take a window from older logs",
                        format_seconds(onset)
                    );
                }
            }
            _ => out.push_str(
                "# baseline = [\"…\", \"…\"]  # a window of healthy traffic before the incident\n",
            ),
        }
        out.push_str(
            "# post = [\"…\", \"…\"]        # default: flip_at + 10 min to the end of the data\n",
        );
        out.push_str("# freeze = [\"…\", \"…\"]      # when writers were frozen, if they were\n\n");
        out.push_str("[expected_pins]  # the last known good set\n");
        if guess.lkg.is_empty() {
            let found: Vec<&str> = PIN_COLUMNS.iter().map(|c| c.name()).collect();
            let _ = writeln!(
                out,
                "# no pin column found (looked for {}); name them in the mapping file",
                found.join(", ")
            );
        }
        for (col, lkg) in &guess.lkg {
            let values = &r.tally.values[col];
            let others: Vec<String> = values
                .ranked()
                .into_iter()
                .filter(|(v, _)| v != lkg)
                .take(3)
                .map(|(v, s)| {
                    format!(
                        "{} ({} rows, {} .. {})",
                        quote(v),
                        count(s.rows),
                        format_seconds(s.first),
                        format_seconds(s.last)
                    )
                })
                .collect();
            let note = if others.is_empty() {
                "guess: the only value seen".to_string()
            } else {
                format!(
                    "guess: most requests at the end of the data; also seen {}",
                    others.join(", ")
                )
            };
            let _ = writeln!(out, "{} = {}  # {note}", col.name(), quote(lkg));
        }
        if !guess.region_flips.is_empty() {
            out.push_str(
                "\n[flip_at_by_region]  # guess: these regions stayed off the pins after flip_at, until\n",
            );
            for (region, flip) in &guess.region_flips {
                let _ = writeln!(out, "{} = {}", key(region), quote(&format_seconds(*flip)));
            }
        }
    }

    fn write_canary(&self, out: &mut String) {
        let r = &self.requests;
        let arms: Vec<(&str, &Seen)> = r.values(Col::Arm).map(Values::ranked).unwrap_or_default();
        let pick = |words: &[&str], not: Option<&str>| {
            arms.iter()
                .map(|a| a.0)
                .filter(|a| Some(*a) != not)
                .find(|a| words.iter().any(|w| a.to_ascii_lowercase().contains(w)))
        };
        let canary =
            pick(&["canary"], None).or_else(|| (arms.len() >= 2).then(|| arms[arms.len() - 1].0));
        let baseline = pick(
            &["stable", "baseline", "control", "primary", "prod"],
            canary,
        )
        .or_else(|| arms.iter().map(|a| a.0).find(|a| Some(*a) != canary));
        out.push_str("[canary]\n");
        let seen: Vec<String> = arms
            .iter()
            .map(|(a, s)| format!("{} ({} rows)", quote(a), count(s.rows)))
            .collect();
        let arms_note = if seen.is_empty() {
            "no `arm` column found: map it in the mapping file".to_string()
        } else {
            format!("arms seen: {}", seen.join(", "))
        };
        match (baseline, canary) {
            (Some(b), Some(c)) => {
                let _ = writeln!(out, "baseline_arm = {}  # guess; {arms_note}", quote(b));
                let _ = writeln!(out, "canary_arm = {}  # guess", quote(c));
                let c_seen = arms.iter().find(|a| a.0 == c).map(|a| a.1);
                if let Some(s) = c_seen {
                    let start = s.first.div_euclid(MICROS_PER_MINUTE) * MICROS_PER_MINUTE;
                    let end = (s.last.div_euclid(MICROS_PER_MINUTE) + 1) * MICROS_PER_MINUTE;
                    let _ = writeln!(
                        out,
                        "window = [{}, {}]  # guess: the minutes the canary arm served",
                        quote(&format_seconds(start)),
                        quote(&format_seconds(end))
                    );
                }
                for arm in [b, c] {
                    let _ = writeln!(out, "\n[expected_pins.{}]", key(arm));
                    let pins = r.tally.by_arm.get(arm);
                    for col in PIN_COLUMNS {
                        let Some(values) = pins.and_then(|p| p.get(&col)) else {
                            continue;
                        };
                        let ranked = values.ranked();
                        let Some((top, s)) = ranked.first() else {
                            continue;
                        };
                        let share =
                            s.rows as f64 / ranked.iter().map(|r| r.1.rows).sum::<u64>() as f64;
                        let _ = writeln!(
                            out,
                            "{} = {}  # guess: {:.1}% of the arm's requests",
                            col.name(),
                            quote(top),
                            share * 100.0
                        );
                    }
                }
            }
            _ => {
                let _ = writeln!(out, "# baseline_arm = \"stable\"  # {arms_note}");
                out.push_str("# canary_arm = \"canary\"\n");
            }
        }
    }

    fn write_cache(&self, out: &mut String, lkg: &[(Col, String)]) {
        let r = &self.requests;
        let Some(values) = r.values(Col::CacheNs) else {
            return;
        };
        let Some((first, last)) = r.span_minutes() else {
            return;
        };
        let tail_from = last - ((last - first) as f64 * TAIL_SHARE).floor() as i64;
        let Some(ns) = values.dominant_from(tail_from) else {
            return;
        };
        let template = namespace_template(ns, lkg);
        out.push_str("\n[cache]\n");
        let _ = writeln!(
            out,
            "namespace = {}  # guess: from {}, the namespace most requests used at the end, with the pins as placeholders",
            quote(&template),
            quote(ns)
        );
    }

    /// The mapping file the survey's column guesses need, or `None` when the files use the
    /// canonical names (or a mapping file was given).
    pub fn mapping_toml(&self) -> Option<String> {
        if self.suggestions.is_empty() || self.mapping.is_some() {
            return None;
        }
        let mut out = String::from(
            "# Written by `rollproof init`: source columns whose names differ from rollproof's.\n# Check each; `rollproof explain` lists the canonical columns each check reads.\n",
        );
        for table in [Table::Requests, Table::Receipts] {
            let of_table: Vec<&Suggestion> = self
                .suggestions
                .iter()
                .filter(|s| s.table == table)
                .collect();
            if of_table.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n[{}]", table.name());
            for s in of_table {
                match s.unit {
                    Some(unit) => {
                        let _ = writeln!(
                            out,
                            "{} = {{ column = {}, unit = {} }}",
                            s.col.name(),
                            quote(&s.source),
                            quote(unit.name())
                        );
                    }
                    None => {
                        let _ = writeln!(out, "{} = {}", s.col.name(), quote(&s.source));
                    }
                }
            }
        }
        Some(out)
    }

    /// A human summary of what was found (for stderr).
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for t in std::iter::once(&self.requests).chain(&self.receipts) {
            let _ = writeln!(
                out,
                "{}: {}, {} rows, {}",
                t.table.name(),
                plural(t.files.len() as u64, "file", "files"),
                count(t.tally.rows),
                time_range(t.tally.first, t.tally.last)
            );
            let mut formats: Vec<&str> = t.files.iter().map(|f| f.1).collect();
            formats.sort();
            formats.dedup();
            let _ = writeln!(out, "  formats: {}", formats.join(", "));
            let known: Vec<&str> = t
                .columns
                .iter()
                .map(String::as_str)
                .filter(|c| Col::of_table(t.table).any(|col| col.name() == *c))
                .collect();
            let _ = writeln!(
                out,
                "  columns rollproof reads: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            );
            for s in self.suggestions.iter().filter(|s| s.table == t.table) {
                let _ = writeln!(out, "  mapped: {} = `{}` (guess)", s.col.name(), s.source);
            }
            let missing: Vec<&str> = Col::of_table(t.table)
                .filter(|col| {
                    !t.columns.iter().any(|c| c == col.name())
                        && !self
                            .suggestions
                            .iter()
                            .any(|s| s.table == t.table && s.col == *col)
                })
                .map(|c| c.name())
                .collect();
            if !missing.is_empty() {
                let _ = writeln!(out, "  not found: {}", missing.join(", "));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_template_puts_pins_back() {
        let lkg = vec![
            (Col::PromptVer, "p-6".to_string()),
            (Col::IndexHash, "ih-a41f".to_string()),
        ];
        assert_eq!(
            namespace_template("ns:ih-a41f:p-6", &lkg),
            "ns:{index_hash}:{prompt_ver}"
        );
        assert_eq!(namespace_template("static", &lkg), "static");
    }

    #[test]
    fn threshold_entries_name_every_key() {
        let names: Vec<&str> = Thresholds::default()
            .entries()
            .iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(names, THRESHOLD_KEYS);
    }
}
