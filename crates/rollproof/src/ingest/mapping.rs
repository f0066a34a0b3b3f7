//! The mapping file: canonical column ← source column (and a unit for durations), per table.

use std::collections::BTreeMap;
use std::path::Path;

use crate::columns::{Col, Kind, Table};
use crate::error::{InputError, Problem};

/// Unit of a duration column, converted to milliseconds at ingest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum DurationUnit {
    Ns,
    Us,
    Ms,
    S,
}

impl DurationUnit {
    pub(crate) fn to_millis_factor(self) -> f64 {
        match self {
            DurationUnit::Ns => 1e-6,
            DurationUnit::Us => 1e-3,
            DurationUnit::Ms => 1.0,
            DurationUnit::S => 1e3,
        }
    }
}

/// Where a canonical column comes from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Source {
    pub(crate) column: String,
    pub(crate) unit: Option<DurationUnit>,
}

/// The mapping of one table. Columns not named map to their canonical names.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TableMapping {
    explicit: BTreeMap<Col, Source>,
}

impl TableMapping {
    /// The source column name for `col`.
    pub(crate) fn source(&self, col: Col) -> &str {
        self.explicit
            .get(&col)
            .map(|s| s.column.as_str())
            .unwrap_or(col.name())
    }

    pub(crate) fn unit(&self, col: Col) -> Option<DurationUnit> {
        self.explicit.get(&col).and_then(|s| s.unit)
    }

    pub(crate) fn is_explicit(&self, col: Col) -> bool {
        self.explicit.contains_key(&col)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapping {
    pub(crate) requests: TableMapping,
    pub(crate) receipts: TableMapping,
}

impl Mapping {
    pub(crate) fn table(&self, table: Table) -> &TableMapping {
        match table {
            Table::Requests => &self.requests,
            Table::Receipts => &self.receipts,
        }
    }

    pub(crate) fn load(path: &Path) -> Result<Mapping, InputError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Problem::new(
                format!("an unreadable file ({e})"),
                "a readable mapping TOML file",
            )
            .file(path)
            .hint("the mapping path is relative to the incident file's folder")
        })?;
        Mapping::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Mapping, InputError> {
        let root: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            Problem::new(
                format!("invalid TOML ({})", e.message()),
                "a mapping file with [requests] and [receipts] tables",
            )
            .file(path)
            .hint("write e.g. [requests] status = \"http.response.status_code\"")
        })?;
        let mut mapping = Mapping::default();
        let mut problems = Vec::new();
        for (section, value) in &root {
            let table = match section.as_str() {
                "requests" => Table::Requests,
                "receipts" => Table::Receipts,
                other => {
                    problems.push(
                        Problem::new(
                            format!("a table `[{other}]`"),
                            "`[requests]` or `[receipts]`",
                        )
                        .file(path)
                        .column(other)
                        .hint("the mapping has one table per input table"),
                    );
                    continue;
                }
            };
            let Some(entries) = value.as_table() else {
                problems.push(
                    Problem::new(format!("`{section} = {value}`"), "a table")
                        .file(path)
                        .column(section)
                        .hint("write the section as [requests] or [receipts]"),
                );
                continue;
            };
            let target = match table {
                Table::Requests => &mut mapping.requests,
                Table::Receipts => &mut mapping.receipts,
            };
            for (canonical, source) in entries {
                let key = format!("{section}.{canonical}");
                let Some(col) = Col::by_name(table, canonical) else {
                    let valid: Vec<&str> = Col::of_table(table).map(|c| c.name()).collect();
                    problems.push(
                        Problem::new(
                            format!("an unknown canonical column `{canonical}`"),
                            "a canonical column name on the left",
                        )
                        .file(path)
                        .column(&key)
                        .hint(format!("valid columns are {}", valid.join(", "))),
                    );
                    continue;
                };
                match parse_source(col, source) {
                    Ok(src) => {
                        target.explicit.insert(col, src);
                    }
                    Err((found, expected, hint)) => problems.push(
                        Problem::new(found, expected)
                            .file(path)
                            .column(&key)
                            .hint(hint),
                    ),
                }
            }
        }
        if problems.is_empty() {
            Ok(mapping)
        } else {
            Err(InputError { problems })
        }
    }
}

fn parse_source(col: Col, value: &toml::Value) -> Result<Source, (String, String, String)> {
    match value {
        toml::Value::String(s) if !s.is_empty() => Ok(Source {
            column: s.clone(),
            unit: None,
        }),
        toml::Value::Table(t) => {
            let column = t.get("column").and_then(|c| c.as_str()).ok_or_else(|| {
                (
                    format!("`{value}`"),
                    "a table with a `column` name".to_string(),
                    "write e.g. { column = \"duration\", unit = \"s\" }".to_string(),
                )
            })?;
            if let Some(key) = t.keys().find(|k| *k != "column" && *k != "unit") {
                return Err((
                    format!("an unknown key `{key}`"),
                    "`column` and `unit`".to_string(),
                    "write e.g. { column = \"duration\", unit = \"s\" }".to_string(),
                ));
            }
            let unit = match t.get("unit") {
                None => None,
                Some(u) => {
                    if col.kind() != Kind::Float || col != Col::LatencyMs {
                        return Err((
                            format!("a unit on `{}`", col.name()),
                            "a unit only on `latency_ms`".to_string(),
                            "units convert durations to milliseconds".to_string(),
                        ));
                    }
                    Some(match u.as_str() {
                        Some("ns") => DurationUnit::Ns,
                        Some("us") | Some("µs") => DurationUnit::Us,
                        Some("ms") => DurationUnit::Ms,
                        Some("s") => DurationUnit::S,
                        _ => {
                            return Err((
                                format!("the unit `{u}`"),
                                "one of `ns`, `us`, `ms`, `s`".to_string(),
                                "the unit of the source column's values".to_string(),
                            ))
                        }
                    })
                }
            };
            Ok(Source {
                column: column.to_string(),
                unit,
            })
        }
        other => Err((
            format!("`{other}`"),
            "the source column's name as a string".to_string(),
            "write e.g. status = \"http.response.status_code\"".to_string(),
        )),
    }
}
