//! The mapping file: canonical column ← source column, per table, with what real logs need to be
//! read as they are — a unit on durations and on `ts`, which number to take from a list
//! (`pick`), source tokens that mean missing (`null = ["-"]`), and rows to leave out when a
//! source column is missing (`drop_if_missing`). `[otlp]` says which spans are requests.
//!
//! ```toml
//! [requests]
//! ts = { column = "msec", unit = "s" }
//! latency_ms = { column = "upstream_response_time", unit = "s", pick = "last" }
//! cache_hit = "upstream_cache_status"
//! null = ["-"]
//! drop_if_missing = ["upstream_addr"]
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use crate::columns::{Col, Kind, Table};
use crate::error::{InputError, Problem};

/// Unit of a duration (converted to milliseconds) or of an epoch timestamp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Unit {
    Ns,
    Us,
    Ms,
    S,
}

impl Unit {
    pub(crate) fn to_millis_factor(self) -> f64 {
        match self {
            Unit::Ns => 1e-6,
            Unit::Us => 1e-3,
            Unit::Ms => 1.0,
            Unit::S => 1e3,
        }
    }

    /// Decimal digits of one unit below a microsecond (ns: 3) or above it (s: −6), as the
    /// power of ten that turns the unit into microseconds.
    pub(crate) fn micros_exponent(self) -> i32 {
        match self {
            Unit::Ns => -3,
            Unit::Us => 0,
            Unit::Ms => 3,
            Unit::S => 6,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Unit::Ns => "ns",
            Unit::Us => "us",
            Unit::Ms => "ms",
            Unit::S => "s",
        }
    }

    fn parse(s: &str) -> Option<Unit> {
        match s {
            "ns" => Some(Unit::Ns),
            "us" | "µs" => Some(Unit::Us),
            "ms" => Some(Unit::Ms),
            "s" => Some(Unit::S),
            _ => None,
        }
    }
}

/// Which number to take from a field that lists several (`"0.018, 0.029"`, `"502 : 200"`: nginx
/// after retrying another upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pick {
    First,
    Last,
    Sum,
    Max,
}

impl Pick {
    fn parse(s: &str) -> Option<Pick> {
        match s {
            "first" => Some(Pick::First),
            "last" => Some(Pick::Last),
            "sum" => Some(Pick::Sum),
            "max" => Some(Pick::Max),
            _ => None,
        }
    }
}

/// Where a canonical column comes from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Source {
    pub(crate) column: String,
    pub(crate) unit: Option<Unit>,
    pub(crate) pick: Option<Pick>,
}

/// The mapping of one table. Columns not named map to their canonical names.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TableMapping {
    explicit: BTreeMap<Col, Source>,
    /// Source tokens that mean missing, e.g. nginx's `-`.
    pub(crate) null_tokens: Vec<String>,
    /// Source columns whose absence in a row leaves the row out (counted).
    pub(crate) drop_if_missing: Vec<String>,
}

impl TableMapping {
    /// The source column name for `col`.
    pub(crate) fn source(&self, col: Col) -> &str {
        self.explicit
            .get(&col)
            .map(|s| s.column.as_str())
            .unwrap_or(col.name())
    }

    pub(crate) fn unit(&self, col: Col) -> Option<Unit> {
        self.explicit.get(&col).and_then(|s| s.unit)
    }

    pub(crate) fn pick(&self, col: Col) -> Option<Pick> {
        self.explicit.get(&col).and_then(|s| s.pick)
    }

    pub(crate) fn is_explicit(&self, col: Col) -> bool {
        self.explicit.contains_key(&col)
    }

    /// Maps `col` to `column`, when the user's mapping does not name it (a preset).
    pub(crate) fn default_source(&mut self, col: Col, column: &str, unit: Option<Unit>) {
        self.explicit.entry(col).or_insert_with(|| Source {
            column: column.to_string(),
            unit,
            pick: None,
        });
    }

    /// Whether `value` (trimmed) means missing: empty, or one of the mapping's null tokens.
    #[inline]
    pub(crate) fn is_null_token(&self, value: &str) -> bool {
        value.is_empty() || self.null_tokens.iter().any(|t| t == value)
    }
}

/// Which OTLP spans are requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum SpanSelection {
    /// Spans of kind SERVER (the default).
    #[default]
    Server,
    /// Spans without a parent.
    Root,
    /// Every span.
    All,
}

/// A mapping file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapping {
    pub(crate) requests: TableMapping,
    pub(crate) receipts: TableMapping,
    pub(crate) spans: SpanSelection,
}

/// The mapping file's size limit: a mapping is a few lines; anything larger is a wrong path.
const MAX_BYTES: u64 = 1 << 20;

impl Mapping {
    pub(crate) fn table(&self, table: Table) -> &TableMapping {
        match table {
            Table::Requests => &self.requests,
            Table::Receipts => &self.receipts,
        }
    }

    pub(crate) fn table_mut(&mut self, table: Table) -> &mut TableMapping {
        match table {
            Table::Requests => &mut self.requests,
            Table::Receipts => &mut self.receipts,
        }
    }

    /// Reads a mapping file; the entries that are valid are kept when others are not, so that
    /// the inputs can still be checked and every problem reported together.
    /// `from_incident`: the path was written in the incident file (relative to its folder), not
    /// given as `--mapping` (relative to the current folder); the hint says which.
    pub(crate) fn load_lenient(path: &Path, from_incident: bool) -> (Mapping, Vec<Problem>) {
        match crate::incident::read_small_text(path, MAX_BYTES, "a readable mapping TOML file") {
            Ok(text) => Mapping::parse_lenient(path, &text),
            Err(p) => (
                Mapping::default(),
                vec![p.hint(if from_incident {
                    "[inputs] mapping is relative to the incident file's folder"
                } else {
                    "`--mapping` is relative to the current folder"
                })],
            ),
        }
    }

    pub fn parse(path: &Path, text: &str) -> Result<Mapping, InputError> {
        match Mapping::parse_lenient(path, text) {
            (mapping, problems) if problems.is_empty() => Ok(mapping),
            (_, problems) => Err(InputError { problems }),
        }
    }

    fn parse_lenient(path: &Path, text: &str) -> (Mapping, Vec<Problem>) {
        let root: Result<toml::Table, Problem> = text.parse().map_err(|e: toml::de::Error| {
            let mut p = Problem::new(
                format!("invalid TOML ({})", e.message()),
                "a mapping file with [requests] and [receipts] tables",
            )
            .file(path)
            .hint("write e.g. [requests] status = \"http.response.status_code\"");
            if let Some(span) = e.span() {
                p = p.location(crate::incident::line_of(text, span.start));
            }
            p
        });
        let root = match root {
            Ok(root) => root,
            Err(p) => return (Mapping::default(), vec![p]),
        };
        let mut mapping = Mapping::default();
        let mut problems = Vec::new();
        for (section, value) in &root {
            let problem = |found: String, expected: &str, key: &str, hint: &str| {
                Problem::new(found, expected)
                    .file(path)
                    .column(key)
                    .hint(hint)
            };
            if section == "otlp" {
                match parse_otlp(value) {
                    Ok(spans) => mapping.spans = spans,
                    Err((found, key)) => problems.push(problem(
                        found,
                        "`spans = \"server\"`, `\"root\"` or `\"all\"`",
                        &key,
                        "which spans are requests: SERVER spans (the default), root spans, or all",
                    )),
                }
                continue;
            }
            let table = match section.as_str() {
                "requests" => Table::Requests,
                "receipts" => Table::Receipts,
                other => {
                    problems.push(problem(
                        format!("a table `[{other}]`"),
                        "`[requests]`, `[receipts]` or `[otlp]`",
                        other,
                        "the mapping has one table per input table",
                    ));
                    continue;
                }
            };
            let Some(entries) = value.as_table() else {
                problems.push(problem(
                    format!("`{section} = {value}`"),
                    "a table",
                    section,
                    "write the section as [requests] or [receipts]",
                ));
                continue;
            };
            let target = mapping.table_mut(table);
            for (canonical, source) in entries {
                let key = format!("{section}.{canonical}");
                match canonical.as_str() {
                    "null" => match string_list(source) {
                        Some(tokens) => target.null_tokens = tokens,
                        None => problems.push(problem(
                            format!("`{source}`"),
                            "a list of strings",
                            &key,
                            "write e.g. null = [\"-\"]: source values that mean missing",
                        )),
                    },
                    "drop_if_missing" => match string_list(source) {
                        Some(columns) => target.drop_if_missing = columns,
                        None => problems.push(problem(
                            format!("`{source}`"),
                            "a list of source column names",
                            &key,
                            "write e.g. drop_if_missing = [\"upstream_addr\"]",
                        )),
                    },
                    _ => {
                        let Some(col) = Col::by_name(table, canonical) else {
                            let valid: Vec<&str> = Col::of_table(table).map(|c| c.name()).collect();
                            let mut hint = format!(
                                "valid columns are {}, and `null`, `drop_if_missing`",
                                valid.join(", ")
                            );
                            if let Some(close) =
                                crate::error::closest(canonical, valid.iter().copied())
                            {
                                hint = format!("did you mean `{close}`? {hint}");
                            }
                            problems.push(problem(
                                format!("an unknown canonical column `{canonical}`"),
                                "a canonical column name on the left",
                                &key,
                                &hint,
                            ));
                            continue;
                        };
                        match parse_source(col, source) {
                            Ok(src) => {
                                target.explicit.insert(col, src);
                            }
                            Err((found, expected, hint)) => {
                                problems.push(problem(found, &expected, &key, &hint))
                            }
                        }
                    }
                }
            }
        }
        (mapping, problems)
    }
}

fn string_list(value: &toml::Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn parse_otlp(value: &toml::Value) -> Result<SpanSelection, (String, String)> {
    let Some(table) = value.as_table() else {
        return Err((format!("`otlp = {value}`"), "otlp".to_string()));
    };
    let mut spans = SpanSelection::default();
    for (k, v) in table {
        if k != "spans" {
            return Err((format!("an unknown key `{k}`"), format!("otlp.{k}")));
        }
        spans = match v.as_str() {
            Some("server") => SpanSelection::Server,
            Some("root") => SpanSelection::Root,
            Some("all") => SpanSelection::All,
            _ => return Err((format!("`{v}`"), "otlp.spans".to_string())),
        };
    }
    Ok(spans)
}

const SOURCE_HINT: &str =
    "write e.g. { column = \"upstream_response_time\", unit = \"s\", pick = \"last\" }";

fn parse_source(col: Col, value: &toml::Value) -> Result<Source, (String, String, String)> {
    match value {
        toml::Value::String(s) if !s.is_empty() => Ok(Source {
            column: s.clone(),
            unit: None,
            pick: None,
        }),
        toml::Value::Table(t) => {
            let column = t.get("column").and_then(|c| c.as_str()).ok_or_else(|| {
                (
                    format!("`{value}`"),
                    "a table with a `column` name".to_string(),
                    SOURCE_HINT.to_string(),
                )
            })?;
            if let Some(key) = t
                .keys()
                .find(|k| !matches!(k.as_str(), "column" | "unit" | "pick"))
            {
                return Err((
                    format!("an unknown key `{key}`"),
                    "`column`, `unit` and `pick`".to_string(),
                    SOURCE_HINT.to_string(),
                ));
            }
            let unit = match t.get("unit") {
                None => None,
                Some(u) => {
                    if !matches!(col.kind(), Kind::Float | Kind::Time) {
                        return Err((
                            format!("a unit on `{}`", col.name()),
                            "a unit only on `ts` and on durations such as `latency_ms`".to_string(),
                            "units convert durations to milliseconds and epoch numbers to times"
                                .to_string(),
                        ));
                    }
                    Some(u.as_str().and_then(Unit::parse).ok_or_else(|| {
                        (
                            format!("the unit `{u}`"),
                            "one of `ns`, `us`, `ms`, `s`".to_string(),
                            "the unit of the source column's values".to_string(),
                        )
                    })?)
                }
            };
            let pick = match t.get("pick") {
                None => None,
                Some(p) => {
                    if !matches!(col.kind(), Kind::Float | Kind::Int) {
                        return Err((
                            format!("a `pick` on `{}`", col.name()),
                            "`pick` only on numeric columns".to_string(),
                            "`pick` says which number to take from a list such as \"0.018, 0.029\""
                                .to_string(),
                        ));
                    }
                    Some(p.as_str().and_then(Pick::parse).ok_or_else(|| {
                        (
                            format!("`pick = {p}`"),
                            "one of `first`, `last`, `sum`, `max`".to_string(),
                            "nginx lists one value per upstream tried; `last` is the one that answered"
                                .to_string(),
                        )
                    })?)
                }
            };
            Ok(Source {
                column: column.to_string(),
                unit,
                pick,
            })
        }
        other => Err((
            format!("`{other}`"),
            "the source column's name as a string".to_string(),
            "write e.g. status = \"http.response.status_code\"".to_string(),
        )),
    }
}
