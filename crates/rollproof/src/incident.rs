//! The incident file (TOML): mode, flip, windows, expected pins, cache namespace, thresholds.
//!
//! Parsing validates everything up front so that checks can rely on it: times are parsed to epoch
//! microseconds, pin names are known, the namespace template only names expected pins, windows are
//! non-empty.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::columns::{Col, PIN_COLUMNS};
use crate::error::{InputError, Problem};
use crate::ingest::InputSpec;
pub use crate::plan::Mode;
use crate::plan::{Canary, Plan, Rollback, DEFAULT_POST_DELAY};
use crate::time::{format_seconds, parse_rfc3339, Micros};

/// A half-open time window `[start, end)` in epoch microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) start: Micros,
    pub(crate) end: Micros,
}

impl Window {
    #[inline]
    pub(crate) fn contains(&self, ts: Micros) -> bool {
        ts >= self.start && ts < self.end
    }
}

/// One set of expected pins (the last known good set, or one arm's set in canary mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PinSet {
    /// Pins named in the incident file, in contract order.
    pub(crate) pins: Vec<(Col, String)>,
    /// The cache namespace rendered with these pins, when `[cache]` is given.
    pub(crate) namespace: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Thresholds {
    pub(crate) error_rate_max: f64,
    pub(crate) recovery_within_minutes: u32,
    pub(crate) p95_latency_ratio_max: f64,
    pub(crate) p99_latency_ratio_max: f64,
    pub(crate) delta_s_p95_drift_warn: f64,
    pub(crate) delta_s_p95_drift_max: f64,
    pub(crate) coverage_min: f64,
    pub(crate) coverage_drop_max: f64,
    pub(crate) lambda_flip_rate_max: f64,
    pub(crate) min_requests: u64,
    /// `backpressure`: a minute with at least this share of 429s is part of a storm.
    pub(crate) storm_429_rate: f64,
    pub(crate) queue_wait_p95_ratio_max: f64,
    /// `gold_set`: a question whose ΔS rose by more than this regressed.
    pub(crate) gold_delta_s_regress: f64,
    /// `writer_freeze`: minutes green must hold before writers are unfrozen.
    pub(crate) green_hold_minutes: f64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            error_rate_max: 0.005,
            recovery_within_minutes: 10,
            p95_latency_ratio_max: 1.15,
            p99_latency_ratio_max: 2.0,
            delta_s_p95_drift_warn: 0.05,
            delta_s_p95_drift_max: 0.10,
            coverage_min: 0.60,
            coverage_drop_max: 0.10,
            lambda_flip_rate_max: 0.20,
            min_requests: 200,
            storm_429_rate: 0.05,
            queue_wait_p95_ratio_max: 2.0,
            gold_delta_s_regress: 0.10,
            green_hold_minutes: 10.0,
        }
    }
}

impl Thresholds {
    /// Every threshold by name with its value, in the order of [`THRESHOLD_KEYS`].
    pub(crate) fn entries(&self) -> [(&'static str, f64); 14] {
        [
            ("error_rate_max", self.error_rate_max),
            (
                "recovery_within_minutes",
                f64::from(self.recovery_within_minutes),
            ),
            ("p95_latency_ratio_max", self.p95_latency_ratio_max),
            ("p99_latency_ratio_max", self.p99_latency_ratio_max),
            ("delta_s_p95_drift_warn", self.delta_s_p95_drift_warn),
            ("delta_s_p95_drift_max", self.delta_s_p95_drift_max),
            ("coverage_min", self.coverage_min),
            ("coverage_drop_max", self.coverage_drop_max),
            ("lambda_flip_rate_max", self.lambda_flip_rate_max),
            ("min_requests", self.min_requests as f64),
            ("storm_429_rate", self.storm_429_rate),
            ("queue_wait_p95_ratio_max", self.queue_wait_p95_ratio_max),
            ("gold_delta_s_regress", self.gold_delta_s_regress),
            ("green_hold_minutes", self.green_hold_minutes),
        ]
    }
}

/// Input paths as written in the incident file (relative to its folder).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct InputPaths {
    pub(crate) requests: Vec<InputSpec>,
    pub(crate) receipts: Vec<InputSpec>,
    pub(crate) mapping: Option<String>,
    /// The gold set run after the rollback, and the same questions on the last known good stack.
    pub(crate) gold: Vec<InputSpec>,
    pub(crate) gold_baseline: Vec<InputSpec>,
    /// The state dump made before the flip (TOML or JSON).
    pub(crate) captured_state: Option<String>,
}

/// A validated incident file.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub(crate) path: PathBuf,
    pub(crate) id: String,
    pub(crate) title: Option<String>,
    pub(crate) root_cause_url: Option<String>,
    pub(crate) inputs: InputPaths,
    pub(crate) thresholds: Thresholds,
    pub(crate) plan: Plan,
    /// `[flags]`: the state every listed flag must be in after the rollback.
    pub(crate) flags: Vec<(String, String)>,
    /// `[statistics]`: how sure the verdict must be.
    pub(crate) statistics: Statistics,
}

/// `[statistics]`: how the thresholds judge an estimate, and the intervals' construction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Statistics {
    pub(crate) method: StatMethod,
    /// Two-sided level of every interval.
    pub(crate) confidence: f64,
    /// Confidence sequences (valid at every sample size) instead of fixed-sample intervals.
    pub(crate) sequential: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatMethod {
    /// Thresholds judge the point estimate.
    Point,
    /// Thresholds judge the interval: fail past, pass within, inconclusive across.
    Interval,
}

impl Default for Statistics {
    fn default() -> Statistics {
        Statistics {
            method: StatMethod::Point,
            confidence: 0.95,
            sequential: false,
        }
    }
}

impl Statistics {
    pub(crate) fn level(&self) -> crate::stats::intervals::Level {
        crate::stats::intervals::Level::new(self.confidence, self.sequential)
    }

    pub(crate) fn interval(&self) -> bool {
        self.method == StatMethod::Interval
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatistics {
    method: Option<String>,
    confidence: Option<toml::Value>,
    sequential: Option<bool>,
}

fn parse_statistics(
    path: &Path,
    raw: Option<RawStatistics>,
    problems: &mut Vec<Problem>,
) -> Statistics {
    let mut s = Statistics::default();
    let Some(raw) = raw else {
        return s;
    };
    match raw.method.as_deref() {
        None | Some("point") => {}
        Some("interval") => s.method = StatMethod::Interval,
        Some(other) => problems.push(problem(
            path,
            "statistics.method",
            format!("`{other}`"),
            "\"point\" or \"interval\"",
            "\"point\" judges the estimate; \"interval\" judges its confidence interval",
        )),
    }
    match raw
        .confidence
        .as_ref()
        .map(|v| v.as_float().or(v.as_integer().map(|i| i as f64)))
    {
        None => {}
        Some(Some(c)) if (0.5..1.0).contains(&c) => s.confidence = c,
        Some(_) => problems.push(problem(
            path,
            "statistics.confidence",
            format!(
                "`{}`",
                raw.confidence
                    .as_ref()
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            ),
            "a number in [0.5, 1), e.g. 0.95",
            "the two-sided level of every interval: 0.95 or 0.99",
        )),
    }
    s.sequential = raw.sequential.unwrap_or(false);
    s
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIncident {
    mode: Option<String>,
    id: String,
    title: Option<String>,
    flip_at: Option<toml::Value>,
    root_cause_url: Option<String>,
    inputs: Option<RawInputs>,
    windows: Option<RawWindows>,
    expected_pins: Option<toml::Table>,
    cache: Option<RawCache>,
    thresholds: Option<toml::Table>,
    canary: Option<RawCanary>,
    flip_at_by_region: Option<toml::Table>,
    flags: Option<toml::Table>,
    statistics: Option<RawStatistics>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInputs {
    requests: Option<OneOrMany>,
    receipts: Option<OneOrMany>,
    mapping: Option<String>,
    gold: Option<OneOrMany>,
    gold_baseline: Option<OneOrMany>,
    captured_state: Option<String>,
}

/// `requests = "a.parquet"`, `["a", "b"]`, `{ path = "access.log*", format = "ndjson" }`, or a
/// list of those.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    // First: a struct also deserializes from a sequence, so `["a", "b"]` must not reach `One`.
    Many(Vec<RawInput>),
    One(RawInput),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawInput {
    Path(String),
    Spec(RawInputSpec),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInputSpec {
    path: String,
    format: Option<String>,
}

impl OneOrMany {
    fn into_specs(self, path: &Path, key: &str, problems: &mut Vec<Problem>) -> Vec<InputSpec> {
        let raw = match self {
            OneOrMany::One(r) => vec![r],
            OneOrMany::Many(v) => v,
        };
        raw.into_iter()
            .map(|r| match r {
                RawInput::Path(pattern) => InputSpec {
                    pattern,
                    source: None,
                },
                RawInput::Spec(spec) => {
                    let source = spec.format.as_deref().and_then(|name| {
                        let found = crate::ingest::source::by_name(name);
                        if found.is_none() {
                            problems.push(problem(
                                path,
                                &format!("inputs.{key}.format"),
                                format!("the format `{name}`"),
                                "a known input format",
                                &format!(
                                    "formats are {}; leave `format` out to detect it from the content",
                                    crate::ingest::source::names().join(", ")
                                ),
                            ));
                        }
                        found
                    });
                    InputSpec {
                        pattern: spec.path,
                        source,
                    }
                }
            })
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindows {
    baseline: Option<Vec<toml::Value>>,
    post: Option<Vec<toml::Value>>,
    freeze: Option<Vec<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    namespace: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCanary {
    baseline_arm: String,
    canary_arm: String,
    window: Option<Vec<toml::Value>>,
}

pub(crate) const THRESHOLD_KEYS: &[&str] = &[
    "error_rate_max",
    "recovery_within_minutes",
    "p95_latency_ratio_max",
    "p99_latency_ratio_max",
    "delta_s_p95_drift_warn",
    "delta_s_p95_drift_max",
    "coverage_min",
    "coverage_drop_max",
    "lambda_flip_rate_max",
    "min_requests",
    "storm_429_rate",
    "queue_wait_p95_ratio_max",
    "gold_delta_s_regress",
    "green_hold_minutes",
];

impl Incident {
    /// Reads and validates an incident file; every problem found is reported together.
    pub fn load(path: &Path) -> Result<Incident, InputError> {
        let text = read_small_text(path, MAX_BYTES, "a readable incident TOML file")
            .map_err(|p| p.hint("check the path; it is the first argument of `rollproof audit`"))?;
        Incident::parse(path, &text)
    }

    /// Validates an incident file's text; `path` is where its relative inputs are resolved from.
    pub fn parse(path: &Path, text: &str) -> Result<Incident, InputError> {
        match Incident::parse_lenient(path, text) {
            (Some(incident), _, problems) if problems.is_empty() => Ok(incident),
            (_, _, problems) => Err(InputError { problems }),
        }
    }

    /// Reads an incident file, also when it has problems: the inputs it names (when its TOML
    /// parses), so that the problems of the inputs can be reported with the incident's.
    pub(crate) fn load_lenient(
        path: &Path,
    ) -> (Option<Incident>, Option<InputPaths>, Vec<Problem>) {
        match read_small_text(path, MAX_BYTES, "a readable incident TOML file") {
            Ok(text) => Incident::parse_lenient(path, &text),
            Err(p) => (
                None,
                None,
                vec![p.hint("check the path; it is the first argument of `rollproof audit`")],
            ),
        }
    }

    fn parse_lenient(
        path: &Path,
        text: &str,
    ) -> (Option<Incident>, Option<InputPaths>, Vec<Problem>) {
        let raw: Result<RawIncident, Problem> = toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            let mut problem = Problem::new(
                format!("invalid incident TOML ({message})"),
                "an incident file as docs/reference/incident.md describes it",
            )
            .file(path)
            .hint("`rollproof init LOGS` writes one from the logs; `rollproof audit --help` shows the format");
            if let Some(span) = e.span() {
                problem = problem.location(line_of(text, span.start));
            }
            if let Some(hint) = unknown_field_hint(&message) {
                problem = problem.hint(hint);
            }
            problem
        });
        let raw = match raw {
            Ok(raw) => raw,
            Err(p) => return (None, None, vec![p]),
        };
        let mut problems = Vec::new();
        let (incident, inputs) = build(path, raw, &mut problems);
        for p in problems.iter_mut().filter(|p| p.location.is_none()) {
            if let Some(line) = p.column.as_deref().and_then(|key| line_of_key(text, key)) {
                p.location = Some(line);
            }
        }
        (incident, Some(inputs), problems)
    }

    /// Replaces thresholds with values from the command line (`1.2`, `200`), validated like the
    /// incident file's; returns the problems.
    pub(crate) fn override_thresholds(&mut self, values: &[(String, String)]) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut table = toml::Table::new();
        for (key, text) in values {
            match format!("v = {text}").parse::<toml::Table>() {
                Ok(mut t) => {
                    table.insert(key.clone(), t.remove("v").expect("parsed `v = …`"));
                }
                Err(_) => problems.push(
                    Problem::new(format!("`--threshold {key}={text}`"), "a number")
                        .column(format!("thresholds.{key}"))
                        .hint("write e.g. --threshold p95_latency_ratio_max=1.2"),
                ),
            }
        }
        apply_thresholds(&self.path, &mut self.thresholds, &table, &mut problems);
        for p in &mut problems {
            p.file = None;
            p.location = Some("--threshold".to_string());
        }
        problems
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn mode(&self) -> Mode {
        self.plan.mode()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Incident and mapping files are a few lines; anything larger is a wrong path.
const MAX_BYTES: u64 = 1 << 20;

/// Reads a small text file (an incident, a mapping): a regular file under `max` bytes, in UTF-8.
/// A FIFO, a device or a folder is refused before it is opened for reading, so that `/dev/zero`
/// cannot grow memory and a FIFO cannot block.
pub(crate) fn read_small_text(path: &Path, max: u64, expected: &str) -> Result<String, Problem> {
    use std::io::Read;
    let unreadable = |found: String| Problem::new(found, expected).file(path);
    let meta = std::fs::metadata(path).map_err(|e| {
        unreadable(format!(
            "an unreadable file ({})",
            crate::error::io_reason(&e)
        ))
    })?;
    if !meta.is_file() {
        return Err(unreadable(format!(
            "{}, not a regular file",
            crate::error::file_kind(&meta)
        )));
    }
    if meta.len() > max {
        return Err(unreadable(format!(
            "a file of {} bytes (the limit is {max})",
            meta.len()
        )));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max + 1).read_to_string(&mut text))
        .map_err(|e| {
            unreadable(format!(
                "an unreadable file ({})",
                crate::error::io_reason(&e)
            ))
        })?;
    if text.len() as u64 > max {
        return Err(unreadable(format!("a file over {max} bytes")));
    }
    Ok(text)
}

/// "valid X are …", led by a "did you mean" when one of them is close to `name`.
fn did_you_mean(name: &str, valid: &[&str], what: &str) -> String {
    let list = format!("valid {what} are {}", valid.join(", "));
    match crate::error::closest(name, valid.iter().copied()) {
        Some(close) => format!("did you mean `{close}`? {list}"),
        None => list,
    }
}

/// `line N` of a byte offset in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> String {
    let line = text[..offset.min(text.len())].matches('\n').count() + 1;
    format!("line {line}")
}

/// The line of a dotted key (`windows.baseline`, `thresholds.min_requests`) in a TOML text: the
/// `key =` line inside its `[table]`, or the `[table]` header itself.
fn line_of_key(text: &str, key: &str) -> Option<String> {
    let (table, leaf) = match key.rsplit_once('.') {
        Some((t, l)) => (t, l),
        None => ("", key),
    };
    let mut current = String::new();
    let mut header_line = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            current = name.trim().trim_matches('"').to_string();
            if current == key {
                header_line = Some(n + 1);
            }
            continue;
        }
        let Some((k, _)) = trimmed.split_once('=') else {
            continue;
        };
        let k = k.trim().trim_matches('"');
        if current == table && k == leaf || current.is_empty() && table.is_empty() && k == key {
            return Some(format!("line {}", n + 1));
        }
    }
    header_line.map(|n| format!("line {n}"))
}

/// A "did you mean" for serde's "unknown field `x`, expected one of `a`, `b`".
fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let close = crate::error::closest(field, expected.iter().copied())?;
    Some(format!(
        "did you mean `{close}`? valid keys here are {}",
        expected
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

fn problem(
    path: &Path,
    key: &str,
    found: impl Into<String>,
    expected: &str,
    hint: &str,
) -> Problem {
    Problem::new(found, expected)
        .file(path)
        .column(key)
        .hint(hint)
}

fn parse_time(
    path: &Path,
    key: &str,
    value: &toml::Value,
    problems: &mut Vec<Problem>,
) -> Option<Micros> {
    let text = match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) => d.to_string(),
        other => {
            problems.push(problem(
                path,
                key,
                format!("`{other}`"),
                "an RFC 3339 UTC time such as \"2026-11-27T10:15:00Z\"",
                "quote the time and give it a zone: \"2026-11-27T10:15:00Z\"",
            ));
            return None;
        }
    };
    match parse_rfc3339(&text) {
        Some(t) => Some(t),
        None => {
            problems.push(problem(
                path,
                key,
                format!("`{text}`"),
                "an RFC 3339 time with a zone, such as \"2026-11-27T10:15:00Z\"",
                "write the date, `T`, the time and `Z` (or an offset like `+01:00`)",
            ));
            None
        }
    }
}

fn parse_window(
    path: &Path,
    key: &str,
    values: &[toml::Value],
    problems: &mut Vec<Problem>,
) -> Option<Window> {
    if values.len() != 2 {
        problems.push(problem(
            path,
            key,
            format!("a list of {} values", values.len()),
            "a list of two times [start, end)",
            "write e.g. [\"2026-11-27T08:30:00Z\", \"2026-11-27T09:00:00Z\"]",
        ));
        return None;
    }
    let start = parse_time(path, key, &values[0], problems)?;
    let end = parse_time(path, key, &values[1], problems)?;
    if end <= start {
        problems.push(problem(
            path,
            key,
            "an end that is not after the start",
            "a window whose end is after its start",
            "windows are half-open [start, end)",
        ));
        return None;
    }
    Some(Window { start, end })
}

fn parse_pin_set(
    path: &Path,
    key: &str,
    table: &toml::Table,
    template: Option<&str>,
    problems: &mut Vec<Problem>,
) -> PinSet {
    let mut pins = Vec::new();
    for (name, value) in table {
        let full_key = format!("{key}.{name}");
        let Some(col) = Col::pin_by_name(name) else {
            let valid: Vec<&str> = PIN_COLUMNS.iter().map(|c| c.name()).collect();
            problems.push(problem(
                path,
                &full_key,
                format!("an unknown pin `{name}`"),
                "one of the pins",
                &did_you_mean(name, &valid, "pins"),
            ));
            continue;
        };
        match value.as_str() {
            Some(v) if !v.is_empty() => pins.push((col, v.to_string())),
            _ => problems.push(problem(
                path,
                &full_key,
                format!("`{value}`"),
                "a non-empty string",
                "quote the expected value, e.g. build_id = \"b-1041\"",
            )),
        }
    }
    pins.sort_by_key(|(col, _)| *col);
    let namespace = template.and_then(|t| render_namespace(path, t, &pins, problems));
    PinSet { pins, namespace }
}

/// Renders `ns:{index_hash}:{prompt_ver}` with the expected pins.
fn render_namespace(
    path: &Path,
    template: &str,
    pins: &[(Col, String)],
    problems: &mut Vec<Problem>,
) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            problems.push(problem(
                path,
                "cache.namespace",
                format!("`{template}` with an unclosed `{{`"),
                "a template such as \"ns:{index_hash}:{prompt_ver}\"",
                "close every `{` with `}`",
            ));
            return None;
        };
        let name = &rest[open + 1..open + close];
        match pins.iter().find(|(col, _)| col.name() == name) {
            Some((_, value)) => out.push_str(value),
            None => {
                problems.push(problem(
                    path,
                    "cache.namespace",
                    format!("the placeholder `{{{name}}}`"),
                    "placeholders that name pins given in [expected_pins]",
                    &format!("add `{name}` to [expected_pins] or remove it from the template"),
                ));
                return None;
            }
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

fn parse_thresholds(
    path: &Path,
    table: Option<&toml::Table>,
    problems: &mut Vec<Problem>,
) -> Thresholds {
    let mut t = Thresholds::default();
    if let Some(table) = table {
        apply_thresholds(path, &mut t, table, problems);
    }
    t
}

/// Sets the thresholds `table` names; unknown names and bad values are problems.
fn apply_thresholds(
    path: &Path,
    t: &mut Thresholds,
    table: &toml::Table,
    problems: &mut Vec<Problem>,
) {
    for (name, value) in table {
        let key = format!("thresholds.{name}");
        if !THRESHOLD_KEYS.contains(&name.as_str()) {
            problems.push(problem(
                path,
                &key,
                format!("an unknown threshold `{name}`"),
                "a known threshold",
                &did_you_mean(name, THRESHOLD_KEYS, "thresholds"),
            ));
            continue;
        }
        let number = match value {
            toml::Value::Float(f) => Some(*f),
            toml::Value::Integer(i) => Some(*i as f64),
            _ => None,
        };
        let Some(number) = number.filter(|n| n.is_finite() && *n >= 0.0) else {
            problems.push(problem(
                path,
                &key,
                format!("`{value}`"),
                "a non-negative number",
                "write e.g. error_rate_max = 0.005",
            ));
            continue;
        };
        let whole = |n: f64| n.fract() == 0.0;
        match name.as_str() {
            "error_rate_max" => t.error_rate_max = number,
            "p95_latency_ratio_max" => t.p95_latency_ratio_max = number,
            "p99_latency_ratio_max" => t.p99_latency_ratio_max = number,
            "delta_s_p95_drift_warn" => t.delta_s_p95_drift_warn = number,
            "delta_s_p95_drift_max" => t.delta_s_p95_drift_max = number,
            "coverage_min" => t.coverage_min = number,
            "coverage_drop_max" => t.coverage_drop_max = number,
            "lambda_flip_rate_max" => t.lambda_flip_rate_max = number,
            "storm_429_rate" => t.storm_429_rate = number,
            "queue_wait_p95_ratio_max" => t.queue_wait_p95_ratio_max = number,
            "gold_delta_s_regress" => t.gold_delta_s_regress = number,
            "green_hold_minutes" => t.green_hold_minutes = number,
            "recovery_within_minutes" | "min_requests" if !whole(number) => problems.push(problem(
                path,
                &key,
                format!("`{value}`"),
                "a whole number",
                "write e.g. min_requests = 200",
            )),
            "recovery_within_minutes" => t.recovery_within_minutes = number as u32,
            "min_requests" => t.min_requests = number as u64,
            _ => unreachable!("THRESHOLD_KEYS and this match list the same keys"),
        }
    }
}

fn build(
    path: &Path,
    raw: RawIncident,
    problems: &mut Vec<Problem>,
) -> (Option<Incident>, InputPaths) {
    let mode = match raw.mode.as_deref() {
        None | Some("rollback") => Mode::Rollback,
        Some("canary") => Mode::Canary,
        Some(other) => {
            problems.push(problem(
                path,
                "mode",
                format!("`{other}`"),
                "`rollback` or `canary`",
                "leave `mode` out for a rollback audit",
            ));
            return (None, InputPaths::default());
        }
    };
    let inputs = match raw.inputs {
        Some(inputs) => InputPaths {
            requests: inputs
                .requests
                .map(|r| r.into_specs(path, "requests", problems))
                .unwrap_or_default(),
            receipts: inputs
                .receipts
                .map(|r| r.into_specs(path, "receipts", problems))
                .unwrap_or_default(),
            mapping: inputs.mapping,
            gold: inputs
                .gold
                .map(|r| r.into_specs(path, "gold", problems))
                .unwrap_or_default(),
            gold_baseline: inputs
                .gold_baseline
                .map(|r| r.into_specs(path, "gold_baseline", problems))
                .unwrap_or_default(),
            captured_state: inputs.captured_state,
        },
        None => InputPaths::default(),
    };
    let thresholds = parse_thresholds(path, raw.thresholds.as_ref(), problems);
    let flags = parse_flags(path, raw.flags.as_ref(), problems);
    let statistics = parse_statistics(path, raw.statistics, problems);
    let common = Common {
        path,
        template: raw.cache.map(|c| c.namespace),
        expected: raw.expected_pins.unwrap_or_default(),
    };
    let plan = match mode {
        Mode::Rollback => {
            if raw.canary.is_some() {
                problems.push(problem(
                    path,
                    "canary",
                    "a [canary] table in a rollback audit",
                    "[canary] only with mode = \"canary\"",
                    "set mode = \"canary\" or remove [canary]",
                ));
            }
            rollback_plan(
                &common,
                raw.flip_at.as_ref(),
                raw.flip_at_by_region.as_ref(),
                raw.windows,
                problems,
            )
        }
        Mode::Canary => {
            if raw.flip_at.is_some() {
                problems.push(problem(
                    path,
                    "flip_at",
                    "a `flip_at` in a canary audit",
                    "no flip: a canary compares two arms side by side",
                    "remove `flip_at`, or leave `mode` out for a rollback audit",
                ));
            }
            for (key, given) in [
                ("flip_at_by_region", raw.flip_at_by_region.is_some()),
                ("flags", raw.flags.is_some()),
            ] {
                if given {
                    problems.push(problem(
                        path,
                        key,
                        format!("[{key}] in a canary audit"),
                        "rollback-only settings in a rollback audit",
                        "remove it, or leave `mode` out for a rollback audit",
                    ));
                }
            }
            if raw.windows.is_some() {
                problems.push(problem(
                    path,
                    "windows",
                    "a [windows] table in a canary audit",
                    "the canary's window in [canary] window = [start, end)",
                    "move the window to [canary], or leave `mode` out for a rollback audit",
                ));
            }
            canary_plan(&common, raw.canary, problems)
        }
    };
    let incident = plan.map(|plan| Incident {
        path: path.to_path_buf(),
        id: raw.id,
        title: raw.title,
        root_cause_url: raw.root_cause_url.filter(|u| !u.trim().is_empty()),
        inputs: inputs.clone(),
        thresholds,
        plan,
        flags,
        statistics,
    });
    (incident, inputs)
}

/// What both modes read from the incident file.
struct Common<'a> {
    path: &'a Path,
    template: Option<String>,
    expected: toml::Table,
}

/// `[flags]`: flag name → the state it must be in (a string; `true`/`false` and numbers are
/// written as text).
fn parse_flags(
    path: &Path,
    flags: Option<&toml::Table>,
    problems: &mut Vec<Problem>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, value) in flags.into_iter().flatten() {
        let state = match value {
            toml::Value::String(s) => s.trim().to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Integer(i) => i.to_string(),
            other => {
                problems.push(problem(
                    path,
                    &format!("flags.{name}"),
                    format!("`{other}`"),
                    "the flag's state as a string, e.g. \"off\"",
                    "write e.g. prompt_pack_vNplus1 = \"off\"",
                ));
                continue;
            }
        };
        if name.contains(['=', ',', ';']) || state.contains([',', ';']) {
            problems.push(problem(
                path,
                &format!("flags.{name}"),
                format!("`{name} = {state}`"),
                "a flag name without `=`, `,` or `;`, and a state without `,` or `;`",
                "flags are logged as name=value pairs separated by `,` or `;`",
            ));
            continue;
        }
        out.push((name.trim().to_string(), state));
    }
    out.sort();
    if out.len() > crate::checks::flag_drift::MAX_FLAGS {
        problems.push(problem(
            path,
            "flags",
            format!("{} flags", out.len()),
            &format!("at most {} flags", crate::checks::flag_drift::MAX_FLAGS),
            "list the flags the rollback switched; the others are not evidence of this incident",
        ));
        out.truncate(crate::checks::flag_drift::MAX_FLAGS);
    }
    out
}

fn rollback_plan(
    c: &Common<'_>,
    flip_at: Option<&toml::Value>,
    by_region: Option<&toml::Table>,
    windows: Option<RawWindows>,
    problems: &mut Vec<Problem>,
) -> Option<Plan> {
    let path = c.path;
    let flip = flip_at.and_then(|v| parse_time(path, "flip_at", v, problems));
    let mut flip_by_region = std::collections::BTreeMap::new();
    for (region, value) in by_region.into_iter().flatten() {
        if let Some(t) = parse_time(
            path,
            &format!("flip_at_by_region.{region}"),
            value,
            problems,
        ) {
            flip_by_region.insert(region.clone(), t);
        }
    }
    if flip_at.is_none() {
        problems.push(problem(
            path,
            "flip_at",
            "no `flip_at`",
            "the time of the rollback pointer flip",
            "add flip_at = \"2026-11-27T10:15:00Z\" (or set mode = \"canary\")",
        ));
    }
    let windows = windows.unwrap_or(RawWindows {
        baseline: None,
        post: None,
        freeze: None,
    });
    let window = |key: &str, w: &Option<Vec<toml::Value>>, problems: &mut Vec<Problem>| {
        w.as_ref()
            .and_then(|w| parse_window(path, &format!("windows.{key}"), w, problems))
    };
    let baseline = window("baseline", &windows.baseline, problems);
    let post = window("post", &windows.post, problems);
    let freeze = window("freeze", &windows.freeze, problems);
    if windows.baseline.is_none() {
        problems.push(problem(
            path,
            "windows.baseline",
            "no baseline window",
            "[windows] baseline = [start, end) before the bad rollout",
            "pick a quiet stretch of known-good traffic, e.g. 30 minutes before the rollout",
        ));
    }
    if let (Some(b), Some(p)) = (baseline, post) {
        if b.start < p.end && p.start < b.end {
            problems.push(problem(
                path,
                "windows",
                "overlapping baseline and post windows",
                "disjoint windows",
                "the baseline is before the bad rollout, the post window after the flip",
            ));
        }
    }
    if let Some(flip) = flip {
        if let Some(b) = baseline.filter(|b| b.end > flip) {
            problems.push(problem(
                path,
                "windows.baseline",
                format!(
                    "a baseline ending at {} after the flip at {}",
                    format_seconds(b.end),
                    format_seconds(flip)
                ),
                "a baseline that ends at or before `flip_at`",
                "the baseline is known-good traffic from before the bad rollout; are the windows swapped?",
            ));
        }
        if let Some(p) = post.filter(|p| p.start < flip) {
            problems.push(problem(
                path,
                "windows.post",
                format!(
                    "a post window starting at {} before the flip at {}",
                    format_seconds(p.start),
                    format_seconds(flip)
                ),
                "a post window that starts at or after `flip_at`",
                "the post window is traffic after the rollback; leave it out for the default (flip + 10 min to the end of data)",
            ));
        }
    }
    if let Some(b) = baseline {
        for (region, t) in flip_by_region.iter().filter(|(_, t)| **t < b.end) {
            problems.push(problem(
                path,
                &format!("flip_at_by_region.{region}"),
                format!(
                    "a flip at {} before the baseline ends at {}",
                    format_seconds(*t),
                    format_seconds(b.end)
                ),
                "a region flip at or after the end of the baseline",
                "the baseline is known-good traffic from before the bad rollout; a region cannot have rolled back inside it",
            ));
        }
    }
    let pins = parse_pin_set(
        path,
        "expected_pins",
        &c.expected,
        c.template.as_deref(),
        problems,
    );
    if pins.pins.is_empty() && problems.is_empty() {
        problems.push(no_pins(path));
    }
    let (flip_at, baseline) = (flip?, baseline?);
    Some(Plan::Rollback(Rollback {
        flip_at,
        baseline,
        post: post.unwrap_or(Window {
            start: flip_at.saturating_add(DEFAULT_POST_DELAY),
            end: Micros::MAX,
        }),
        post_is_default: post.is_none(),
        freeze,
        pins: [pins],
        flip_by_region,
    }))
}

fn canary_plan(
    c: &Common<'_>,
    canary: Option<RawCanary>,
    problems: &mut Vec<Problem>,
) -> Option<Plan> {
    let path = c.path;
    let Some(canary) = canary else {
        problems.push(problem(
            path,
            "canary",
            "no [canary] table",
            "[canary] with baseline_arm and canary_arm",
            "add [canary] baseline_arm = \"stable\" canary_arm = \"canary\"",
        ));
        return None;
    };
    let window = canary
        .window
        .as_ref()
        .and_then(|w| parse_window(path, "canary.window", w, problems));
    if canary.baseline_arm == canary.canary_arm {
        problems.push(problem(
            path,
            "canary.canary_arm",
            format!("the same arm as the baseline (`{}`)", canary.canary_arm),
            "two different values of the `arm` column",
            "name the stable arm and the canary arm",
        ));
    }
    let sets = [&canary.baseline_arm, &canary.canary_arm].map(|arm| {
        let key = format!("expected_pins.{arm}");
        let table = match c.expected.get(arm.as_str()) {
            Some(toml::Value::Table(t)) => t.clone(),
            _ => {
                problems.push(problem(
                    path,
                    &key,
                    "no table",
                    "a table of the arm's expected pins",
                    &format!("add [expected_pins.{arm}] with e.g. prompt_ver = \"p-6\""),
                ));
                toml::Table::new()
            }
        };
        parse_pin_set(path, &key, &table, c.template.as_deref(), problems)
    });
    if sets.iter().all(|s| s.pins.is_empty()) && problems.is_empty() {
        problems.push(no_pins(path));
    }
    Some(Plan::Canary(Canary {
        baseline_arm: canary.baseline_arm,
        canary_arm: canary.canary_arm,
        window,
        pins: sets,
    }))
}

fn no_pins(path: &Path) -> Problem {
    problem(
        path,
        "expected_pins",
        "no expected pins",
        "at least one pin of the last known good set",
        "add [expected_pins] with e.g. build_id = \"b-1041\"",
    )
}

/// `expected_pins` of one set as a sorted map, for the report.
pub(crate) fn pin_map(set: &PinSet) -> BTreeMap<String, String> {
    set.pins
        .iter()
        .map(|(c, v)| (c.name().to_string(), v.clone()))
        .collect()
}
