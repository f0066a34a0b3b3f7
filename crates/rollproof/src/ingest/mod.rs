//! The only module that reads input files: resolve globs, detect formats, plan the units of
//! parallel work, and turn every unit into canonical batches.
//!
//! Planning reads only schemas and footers, so that the checks know before the pass which columns
//! the table has (a column is present when any file of the table has it; files without it give
//! nulls). Reading streams one batch at a time, projected to the columns the checks need. Each
//! format is a [`source::Source`] of its own; this module does what is common to all of them.

pub(crate) mod canon;
mod csv;
mod detect;
mod ipc;
pub(crate) mod location;
pub mod mapping;
mod ndjson;
pub(crate) mod otlp;
mod parquet;
pub(crate) mod remote;
pub(crate) mod source;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;

use crate::columns::{CanonBatch, Col, Table};
use crate::error::{InputError, Problem};
use canon::{convert, Origin};
use location::Location;
pub use mapping::Mapping;
pub(crate) use mapping::TableMapping;
use source::{FileRef, Layout, Source};

/// Rows per batch: large enough to amortise per-batch work, small enough to stream.
pub(crate) const BATCH_ROWS: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    Gzip,
    Zstd,
}

impl Compression {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// One input file, after planning.
pub(crate) struct SourceFile {
    pub(crate) table: Table,
    /// Which OTLP spans are requests (from the mapping).
    pub(crate) spans: mapping::SpanSelection,
    pub(crate) location: Location,
    /// The path as shown in reports: relative to the incident folder when it is inside it.
    pub(crate) display: String,
    pub(crate) source: &'static dyn Source,
    pub(crate) compression: Option<Compression>,
    pub(crate) layout: Layout,
}

impl SourceFile {
    /// Source column names, in file order.
    pub(crate) fn columns(&self) -> &[String] {
        &self.layout.columns
    }

    fn file_ref(&self) -> FileRef<'_> {
        FileRef {
            location: &self.location,
            compression: self.compression,
            source: self.source,
            spans: self.spans,
        }
    }
}

/// A table's files and the canonical columns it has.
pub(crate) struct TablePlan {
    pub(crate) table: Table,
    pub(crate) files: Vec<SourceFile>,
    pub(crate) present: BTreeSet<Col>,
    pub(crate) mapping: TableMapping,
}

/// A unit of parallel work: a whole file, or one Parquet row group.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unit {
    pub(crate) file: usize,
    pub(crate) row_group: Option<usize>,
    pub(crate) row_offset: u64,
}

/// What reading one unit counted.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct UnitCounts {
    pub(crate) rows_read: u64,
    pub(crate) rejected_no_ts: u64,
    /// Rows left out by the mapping's `drop_if_missing`.
    pub(crate) dropped: u64,
}

impl UnitCounts {
    pub(crate) fn add(&mut self, other: &UnitCounts) {
        self.rows_read += other.rows_read;
        self.rejected_no_ts += other.rejected_no_ts;
        self.dropped += other.dropped;
    }
}

/// An input as named in the incident file or on the command line: a path or glob, and its format
/// when it is given explicitly (else it is detected from the content).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InputSpec {
    pub(crate) pattern: String,
    pub(crate) source: Option<&'static dyn Source>,
}

impl PartialEq for &'static dyn Source {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

/// An input file found by [`resolve`].
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) location: Location,
    /// The path as shown in reports.
    pub(crate) display: String,
    pub(crate) source: Option<&'static dyn Source>,
}

/// Expands globs (relative patterns against `base`), sorted and de-duplicated.
pub(crate) fn resolve(
    table: Table,
    specs: &[InputSpec],
    base: &Path,
    from_incident: bool,
    problems: &mut Vec<Problem>,
) -> Vec<Resolved> {
    let mut out = Vec::new();
    let shown_base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    for spec in specs {
        let pattern = &spec.pattern;
        if remote::is_url(pattern) {
            for object in remote::resolve(pattern, problems) {
                out.push(Resolved {
                    display: object.url.clone(),
                    location: Location::Remote(std::sync::Arc::new(object)),
                    source: spec.source,
                });
            }
            continue;
        }
        let found = |path: PathBuf, display: String| Resolved {
            location: Location::Local(path),
            display,
            source: spec.source,
        };
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            base.join(pattern)
        };
        let is_glob = pattern.contains(['*', '?', '[']);
        if !is_glob {
            if full.is_file() {
                out.push(found(full.clone(), pattern.clone()));
            } else if full.is_dir() {
                problems.push(
                    Problem::new("a folder", format!("a {} file, or a glob", table.name()))
                        .file(&full)
                        .hint(format!(
                            "name the files, or a glob such as `{}/*.parquet`",
                            pattern.trim_end_matches('/')
                        )),
                );
            } else {
                problems.push(
                    Problem::new("no such file", format!("a {} file", table.name()))
                        .file(&full)
                        .hint(if from_incident {
                            format!(
                                "paths in the incident file are relative to its folder (`{}`)",
                                shown_base.display()
                            )
                        } else {
                            format!(
                                "`--{}` paths are relative to the current folder",
                                table.name()
                            )
                        }),
                );
            }
            continue;
        }
        let matches = match glob::glob(&full.to_string_lossy()) {
            Ok(paths) => {
                let mut m: Vec<PathBuf> = paths
                    .filter_map(Result::ok)
                    .filter(|p| p.is_file())
                    .collect();
                m.sort();
                m
            }
            Err(e) => {
                problems.push(
                    Problem::new(
                        format!("an invalid glob ({e})"),
                        "a glob such as `logs/requests-*.parquet`",
                    )
                    .file(&full)
                    .hint("quote the pattern in the incident file"),
                );
                continue;
            }
        };
        if matches.is_empty() {
            problems.push(
                Problem::new(
                    "a glob that matched no file",
                    format!("at least one {} file", table.name()),
                )
                .file(&full)
                .hint(format!(
                    "globs are relative to `{}` (the {}); check the folder and the pattern",
                    shown_base.display(),
                    if from_incident {
                        "incident file's folder"
                    } else {
                        "current folder"
                    }
                )),
            );
        }
        for m in matches {
            let shown = m
                .strip_prefix(base)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| m.to_string_lossy().into_owned());
            out.push(found(m, shown));
        }
    }
    out.sort_by(|a, b| (&a.location, &a.display).cmp(&(&b.location, &b.display)));
    out.dedup_by(|a, b| a.location == b.location);
    out
}

/// The indices of `columns` named in `wanted`, in file order: a source's projection.
fn projection(columns: &[String], wanted: &[&str]) -> Vec<usize> {
    columns
        .iter()
        .enumerate()
        .filter(|(_, name)| wanted.contains(&name.as_str()))
        .map(|(i, _)| i)
        .collect()
}

/// Detects a file's format and reads its columns and units, without reading its data.
fn inspect(
    table: Table,
    input: Resolved,
    spans: mapping::SpanSelection,
) -> Result<SourceFile, Problem> {
    let location = input.location;
    let display = input.display;
    let detected = detect::detect(&location, input.source)?;
    let file = FileRef {
        location: &location,
        compression: detected.compression,
        source: detected.source,
        spans,
    };
    let layout = detected.source.inspect(&file)?;
    Ok(SourceFile {
        table,
        spans,
        location,
        display,
        source: detected.source,
        compression: detected.compression,
        layout,
    })
}

/// Plans one table: inspects every file, checks that each has `ts`, and works out which canonical
/// columns the table has. All problems are collected.
pub(crate) fn plan(
    table: Table,
    files: Vec<Resolved>,
    mapping: &Mapping,
    problems: &mut Vec<Problem>,
) -> TablePlan {
    let inspected = inspect_all(table, files, mapping.spans);
    plan_inspected(table, inspected, mapping, problems)
}

/// Inspects every file, in parallel (a remote file's footer is a round trip).
pub(crate) fn inspect_all(
    table: Table,
    files: Vec<Resolved>,
    spans: mapping::SpanSelection,
) -> Vec<Result<SourceFile, Problem>> {
    use rayon::prelude::*;
    files
        .into_par_iter()
        .map(|input| inspect(table, input, spans))
        .collect()
}

/// [`plan`] for files already inspected.
pub(crate) fn plan_inspected(
    table: Table,
    inspected: Vec<Result<SourceFile, Problem>>,
    mapping: &Mapping,
    problems: &mut Vec<Problem>,
) -> TablePlan {
    let table_mapping = mapping.table(table).clone();
    let mut plan = TablePlan {
        table,
        files: Vec::new(),
        present: BTreeSet::new(),
        mapping: table_mapping,
    };
    // OpenTelemetry files get the semantic-convention preset, under what the mapping names.
    let otlp_columns: BTreeSet<&str> = inspected
        .iter()
        .flatten()
        .filter(|f| f.source.name() == otlp::OTLP.name())
        .flat_map(|f| f.columns().iter().map(String::as_str))
        .collect();
    if !otlp_columns.is_empty() {
        otlp::apply_preset(table, &mut plan.mapping, &otlp_columns);
    }
    for file in inspected {
        match file {
            Err(p) => problems.push(p),
            Ok(file) => {
                let ts_source = plan.mapping.source(ts_of(table));
                if !file.columns().iter().any(|c| c == ts_source) {
                    problems.push(
                        Problem::new(
                            format!("no `{ts_source}` column (columns are {})", list_columns(file.columns())),
                            format!("a `{ts_source}` timestamp column in every {} file", table.name()),
                        )
                        .file(file.location.shown_path())
                        .column(ts_source)
                        .hint("map the timestamp column in the mapping file, e.g. [requests] ts = \"timestamp\""),
                    );
                    // Without `ts` the file cannot be read; its problem is reported.
                    continue;
                }
                for col in Col::of_table(table) {
                    if file.columns().iter().any(|c| c == plan.mapping.source(col)) {
                        plan.present.insert(col);
                    }
                }
                plan.files.push(file);
            }
        }
    }
    for col in Col::of_table(table) {
        if plan.mapping.is_explicit(col) && !plan.present.contains(&col) && !plan.files.is_empty() {
            let source = plan.mapping.source(col);
            let columns: BTreeSet<&String> =
                plan.files.iter().flat_map(|f| f.columns().iter()).collect();
            let columns: Vec<String> = columns.into_iter().cloned().collect();
            problems.push(
                Problem::new(
                    format!(
                        "a mapping to `{source}`, which no {} file has",
                        table.name()
                    ),
                    format!(
                        "a column of the {} files (valid columns are {})",
                        table.name(),
                        list_columns(&columns)
                    ),
                )
                .column(format!("{}.{}", table.name(), col.name()))
                .hint(
                    match crate::error::closest(source, columns.iter().map(String::as_str)) {
                        Some(close) => format!(
                            "did you mean `{close}`? fix the source name in the mapping file"
                        ),
                        None => "fix the source name in the mapping file".to_string(),
                    },
                ),
            );
        }
    }
    plan
}

/// Column names for a message: the first 30, in backticks.
pub(crate) fn list_columns<'a>(columns: impl IntoIterator<Item = &'a String>) -> String {
    let columns: Vec<&String> = columns.into_iter().collect();
    const SHOWN: usize = 30;
    let mut s: Vec<String> = columns
        .iter()
        .take(SHOWN)
        .map(|c| format!("`{c}`"))
        .collect();
    if columns.len() > SHOWN {
        s.push(format!("… {} more", columns.len() - SHOWN));
    }
    if s.is_empty() {
        "none".to_string()
    } else {
        s.join(", ")
    }
}

pub(crate) fn ts_of(table: Table) -> Col {
    match table {
        Table::Requests => Col::Ts,
        Table::Receipts => Col::RTs,
    }
}

impl TablePlan {
    /// Every source column name of the table's files.
    pub(crate) fn source_columns(&self) -> BTreeSet<String> {
        self.files
            .iter()
            .flat_map(|f| f.columns().iter().cloned())
            .collect()
    }

    /// Units of parallel work: one per Parquet row group, one per other file.
    pub(crate) fn units(&self) -> Vec<Unit> {
        let mut units = Vec::new();
        for (i, file) in self.files.iter().enumerate() {
            if !file.layout.row_groups.is_empty() {
                let mut offset = 0;
                for (rg, rows) in file.layout.row_groups.iter().enumerate() {
                    units.push(Unit {
                        file: i,
                        row_group: Some(rg),
                        row_offset: offset,
                    });
                    offset += rows;
                }
            } else {
                units.push(Unit {
                    file: i,
                    row_group: None,
                    row_offset: 0,
                });
            }
        }
        units
    }

    /// Reads one unit, projected to `wanted` (canonical columns; absent ones are ignored), and
    /// calls `each` with every canonical batch.
    pub(crate) fn read_unit(
        &self,
        unit: Unit,
        wanted: &[Col],
        mut each: impl FnMut(&CanonBatch),
    ) -> Result<UnitCounts, InputError> {
        let file = &self.files[unit.file];
        let ts = ts_of(self.table);
        let mut columns: Vec<Col> = vec![ts];
        columns.extend(
            wanted
                .iter()
                .copied()
                .filter(|c| *c != ts && self.present.contains(c)),
        );
        let mut sources: Vec<&str> = columns.iter().map(|c| self.mapping.source(*c)).collect();
        sources.extend(self.mapping.drop_if_missing.iter().map(String::as_str));
        let mut counts = UnitCounts::default();
        let mut row_offset = unit.row_offset;
        let mut on_batch = |batch: RecordBatch| -> Result<(), InputError> {
            let origin = Origin {
                file: file.location.shown_path(),
                row_offset,
            };
            let converted = convert(&batch, &columns, &self.mapping, &origin)?;
            counts.rows_read += batch.num_rows() as u64;
            counts.rejected_no_ts += converted.rejected_no_ts;
            counts.dropped += converted.dropped;
            row_offset += batch.num_rows() as u64;
            if !converted.batch.is_empty() {
                each(&converted.batch);
            }
            Ok(())
        };
        file.source.read(
            &file.file_ref(),
            &file.layout,
            unit.row_group,
            &sources,
            &mut on_batch,
        )?;
        Ok(counts)
    }
}
