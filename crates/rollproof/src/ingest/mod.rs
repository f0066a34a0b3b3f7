//! The only module that reads input files: resolve globs, detect formats, plan the units of
//! parallel work, and turn every unit into canonical batches.
//!
//! Planning reads only schemas and footers, so that the checks know before the pass which columns
//! the table has (a column is present when any file of the table has it; files without it give
//! nulls). Reading streams one batch at a time, projected to the columns the checks need. Each
//! format is a [`source::Source`] of its own; this module does what is common to all of them.

pub(crate) mod canon;
pub(crate) mod captured;
mod csv;
mod detect;
mod ipc;
pub(crate) mod lines;
pub(crate) mod location;
pub mod mapping;
mod ndjson;
pub(crate) mod otlp;
mod parquet;
pub(crate) mod parquet_pages;
pub(crate) mod remote;
pub(crate) mod source;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::buffer::BooleanBuffer;

use crate::columns::{CanonBatch, Col, StrCol, Table};
use crate::error::{InputError, Problem};
use crate::time::Micros;
use canon::{convert, Origin};
use location::Location;
pub use mapping::Mapping;
pub(crate) use mapping::TableMapping;
use source::{FileRef, Layout, Source, SourceFilter};

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
    /// Which OTLP spans are requests (from the mapping).
    pub(crate) spans: mapping::SpanSelection,
    pub(crate) location: Location,
    /// The path as shown in reports: relative to the incident folder when it is inside it.
    pub(crate) display: String,
    pub(crate) source: &'static dyn Source,
    pub(crate) compression: Option<Compression>,
    pub(crate) layout: Layout,
    /// A local file's size and modification time when it was planned: a file replaced during
    /// the audit would give hashes of one file and figures of another.
    pub(crate) stamp: Option<(u64, std::time::SystemTime)>,
}

/// A local file's size and modification time.
pub(crate) fn stamp(location: &Location) -> Option<(u64, std::time::SystemTime)> {
    match location {
        Location::Local(p) => std::fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.len(), m.modified().ok()?))),
        Location::Remote(_) => None,
    }
}

impl SourceFile {
    /// A problem when the file changed since it was planned.
    pub(crate) fn changed(&self) -> Option<Problem> {
        let before = self.stamp?;
        (stamp(&self.location) != Some(before)).then(|| {
            Problem::new(
                "a file that changed while it was audited",
                "input files that stay the same during the audit",
            )
            .file(self.location.shown_path())
            .hint("audit a copy, or wait until the export has finished writing: the figures and the SHA-256 must describe the same bytes")
        })
    }

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
    /// The role of its files in the report's `inputs` (`requests`, `receipts`, `gold`, …).
    pub(crate) role: &'static str,
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

/// Which rows of a unit a reader may leave out: those where no key column holds a value that
/// passes its test. It only ever saves work: every row a caller wants must pass, and rows that
/// pass needlessly are simply read (a source that cannot skip rows reads them all).
#[derive(Clone)]
pub(crate) struct RowFilter {
    /// String columns, each with the test of its canonical values (missing values never pass).
    pub(crate) keys: Vec<(Col, KeyTest)>,
}

/// Whether a key (a canonical, non-empty string) may be wanted.
pub(crate) type KeyTest = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What reading one unit counted (of a filtered read: of the rows the filter kept).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct UnitCounts {
    pub(crate) rows_read: u64,
    pub(crate) rejected_no_ts: u64,
    /// Rows left out by the mapping's `drop_if_missing`.
    pub(crate) dropped: u64,
    /// The earliest and latest `ts` of the rows kept (µs); `None` when none was kept.
    pub(crate) ts_range: Option<(Micros, Micros)>,
}

impl UnitCounts {
    pub(crate) fn add(&mut self, other: &UnitCounts) {
        self.rows_read += other.rows_read;
        self.rejected_no_ts += other.rejected_no_ts;
        self.dropped += other.dropped;
        self.ts_range = match (self.ts_range, other.ts_range) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (a, b) => a.or(b),
        };
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
    role: &str,
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
            match std::fs::metadata(&full) {
                Ok(meta) if meta.is_file() => out.push(found(full.clone(), pattern.clone())),
                Ok(meta) if meta.is_dir() => problems.push(
                    Problem::new("a folder", format!("a {} file, or a glob", role))
                        .file(&full)
                        .hint(format!(
                            "name the files, or a glob such as `{}/*.parquet`",
                            pattern.trim_end_matches('/')
                        )),
                ),
                // A FIFO could block forever and a device never ends: refused before opening.
                Ok(meta) => problems.push(
                    Problem::new(
                        crate::error::file_kind(&meta),
                        format!("a regular {} file", role),
                    )
                    .file(&full)
                    .hint("copy the data to a file first; rollproof reads regular files (and objects in a store)"),
                ),
                Err(e) if e.raw_os_error() == Some(40) => problems.push(
                    Problem::new("a symbolic link loop", format!("a {} file", role))
                        .file(&full)
                        .hint("the path is a chain of symbolic links that never reaches a file"),
                ),
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => problems.push(
                    Problem::new(
                        format!("an unreadable path ({})", crate::error::io_reason(&e)),
                        format!("a {} file", role),
                    )
                    .file(&full)
                    .hint("check the path and its permissions"),
                ),
                Err(_) => problems.push(
                    Problem::new("no such file", format!("a {} file", role))
                        .file(&full)
                        .hint(if from_incident {
                            format!(
                                "paths in the incident file are relative to its folder (`{}`)",
                                shown_base.display()
                            )
                        } else {
                            format!(
                                "`--{}` paths are relative to the current folder",
                                role
                            )
                        }),
                ),
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
                    format!("at least one {} file", role),
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
fn inspect(input: Resolved, spans: mapping::SpanSelection) -> Result<SourceFile, Problem> {
    let location = input.location;
    let display = input.display;
    let detected = detect::detect(&location, input.source)?;
    let file = FileRef {
        location: &location,
        compression: detected.compression,
        source: detected.source,
        spans,
    };
    let stamp = stamp(&location);
    let layout = crate::contain::contain(|| detected.source.inspect(&file))
        .map_err(|panic| corrupt(&file, &panic))??;
    Ok(SourceFile {
        stamp,
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
    role: &'static str,
    files: Vec<Resolved>,
    mapping: &Mapping,
    problems: &mut Vec<Problem>,
) -> TablePlan {
    let inspected = inspect_all(files, mapping.spans);
    plan_inspected(table, role, inspected, mapping, problems)
}

/// Inspects every file, in parallel (a remote file's footer is a round trip).
pub(crate) fn inspect_all(
    files: Vec<Resolved>,
    spans: mapping::SpanSelection,
) -> Vec<Result<SourceFile, Problem>> {
    use rayon::prelude::*;
    files
        .into_par_iter()
        .map(|input| inspect(input, spans))
        .collect()
}

/// [`plan`] for files already inspected.
pub(crate) fn plan_inspected(
    table: Table,
    role: &'static str,
    inspected: Vec<Result<SourceFile, Problem>>,
    mapping: &Mapping,
    problems: &mut Vec<Problem>,
) -> TablePlan {
    let table_mapping = mapping.table(table).clone();
    let mut plan = TablePlan {
        table,
        role,
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
            Ok(file) if duplicate_column(file.columns()).is_some() => {
                let (name, first, second) =
                    duplicate_column(file.columns()).expect("checked in the guard");
                problems.push(
                    Problem::new(
                        format!("a column `{name}` twice (columns {} and {})", first + 1, second + 1),
                        "distinct column names",
                    )
                    .file(file.location.shown_path())
                    .column(name)
                    .hint("rename or drop one of them in the export: rollproof cannot tell which one is meant"),
                );
            }
            Ok(file) => {
                let ts_source = plan.mapping.source(ts_of(table));
                if !file.columns().iter().any(|c| c == ts_source) {
                    problems.push(
                        Problem::new(
                            format!("no `{ts_source}` column (columns are {})", list_columns(file.columns())),
                            format!("a `{ts_source}` timestamp column in every {role} file"),
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
    // A gold file is read with the requests' mapping but has only some of their columns.
    let read: Vec<Col> = if role == table.name() {
        Col::of_table(table).collect()
    } else {
        crate::checks::gold_set::columns()
    };
    for col in read {
        if plan.mapping.is_explicit(col) && !plan.present.contains(&col) && !plan.files.is_empty() {
            let source = plan.mapping.source(col);
            let columns: BTreeSet<&String> =
                plan.files.iter().flat_map(|f| f.columns().iter()).collect();
            let columns: Vec<String> = columns.into_iter().cloned().collect();
            problems.push(
                Problem::new(
                    format!("a mapping to `{source}`, which no {role} file has"),
                    format!(
                        "a column of the {role} files (valid columns are {})",
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

/// A reader that panicked on a file: the file is corrupt in a way the reader did not check.
fn corrupt(file: &FileRef<'_>, panic: &str) -> Problem {
    let name = file.source.name();
    Problem::new(
        format!(
            "a corrupt {name} file (the reader stopped: {})",
            crate::escape::shown(panic, 200)
        ),
        format!("a valid {name} file"),
    )
    .file(file.location.shown_path())
    .hint("the file is damaged (truncated, bit flips) or not what it claims to be; re-export it")
}

/// The first column name that appears twice, with both positions.
fn duplicate_column(columns: &[String]) -> Option<(String, usize, usize)> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, c) in columns.iter().enumerate() {
        if let Some(&first) = seen.get(c.as_str()) {
            return Some((c.clone(), first, i));
        }
        seen.insert(c, i);
    }
    None
}

/// Column names for a message: the first 30, in backticks.
pub(crate) fn list_columns<'a>(columns: impl IntoIterator<Item = &'a String>) -> String {
    let columns: Vec<&String> = columns.into_iter().collect();
    const SHOWN: usize = 30;
    let mut s: Vec<String> = columns
        .iter()
        .take(SHOWN)
        .map(|c| format!("`{}`", crate::escape::shown(c, 80)))
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
        each: impl FnMut(&CanonBatch),
    ) -> Result<UnitCounts, InputError> {
        self.read_unit_filtered(unit, wanted, None, each)
    }

    /// [`TablePlan::read_unit`], leaving out rows that fail `filter` where the source can.
    pub(crate) fn read_unit_filtered(
        &self,
        unit: Unit,
        wanted: &[Col],
        filter: Option<&RowFilter>,
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
            let ts = converted.batch.ts();
            if let (Some(lo), Some(hi)) = (ts.iter().min(), ts.iter().max()) {
                counts.add(&UnitCounts {
                    ts_range: Some((*lo, *hi)),
                    ..UnitCounts::default()
                });
            }
            row_offset += batch.num_rows() as u64;
            if !converted.batch.is_empty() {
                each(&converted.batch);
            }
            Ok(())
        };
        let file_ref = file.file_ref();
        let filter = filter.and_then(|f| self.source_filter(file, f));
        crate::contain::contain(|| match &filter {
            Some(filter) => file.source.read_filtered(
                &file_ref,
                &file.layout,
                unit.row_group,
                &sources,
                filter,
                &mut on_batch,
            ),
            None => file.source.read(
                &file_ref,
                &file.layout,
                unit.row_group,
                &sources,
                &mut on_batch,
            ),
        })
        .map_err(|panic| InputError::from(corrupt(&file_ref, &panic)))??;
        Ok(counts)
    }

    /// `filter` on the source columns of `file`: each key column's values made canonical as
    /// [`canon::convert`] makes them, then tested. `None` (read every row) when a key column is
    /// not in the file.
    fn source_filter(&self, file: &SourceFile, filter: &RowFilter) -> Option<SourceFilter> {
        let mut keys = Vec::new();
        for (col, test) in &filter.keys {
            let name = self.mapping.source(*col);
            if !file.columns().iter().any(|c| c == name) {
                return None;
            }
            keys.push((name.to_string(), *col, test.clone()));
        }
        let columns = keys.iter().map(|(name, _, _)| name.clone()).collect();
        let mapping = self.mapping.clone();
        let test = move |batch: &RecordBatch| {
            let mut keep = vec![false; batch.num_rows()];
            for (name, col, test) in &keys {
                let canonical = batch
                    .column_by_name(name)
                    .and_then(|arr| canon::str_column(*col, arr, &mapping));
                let Some(canonical) = canonical else {
                    // Left for the conversion of the batch to refuse.
                    return BooleanArray::from(vec![true; batch.num_rows()]);
                };
                let passed =
                    StrCol::new(canonical.as_ref()).map_rows(|v| v.is_some_and(|v| test(v)));
                for (k, p) in keep.iter_mut().zip(passed) {
                    *k |= p;
                }
            }
            // Packed 64 rows a word (`From<Vec<bool>>` sets the bits one row at a time).
            BooleanArray::new(BooleanBuffer::collect_bool(keep.len(), |i| keep[i]), None)
        };
        Some(SourceFilter {
            columns,
            test: Arc::new(test),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_replaced_after_planning_is_noticed() {
        let dir = std::env::temp_dir().join(format!("rollproof-stamp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("requests.csv");
        std::fs::write(&path, "ts,status\n2026-11-27T10:00:00Z,200\n").unwrap();
        let resolved = Resolved {
            location: Location::Local(path.clone()),
            display: "requests.csv".into(),
            source: None,
        };
        let file = inspect_all(vec![resolved], mapping::SpanSelection::default())
            .pop()
            .unwrap()
            .unwrap();
        assert!(file.changed().is_none(), "unchanged");
        std::fs::write(
            &path,
            "ts,status\n2026-11-27T10:00:00Z,500\n2026-11-27T10:01:00Z,500\n",
        )
        .unwrap();
        let problem = file.changed().expect("a longer file is a changed file");
        assert!(problem.found.contains("changed while it was audited"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod filter_tests {
    use super::*;
    use ::parquet::arrow::ArrowWriter;
    use ::parquet::file::properties::WriterProperties;
    use arrow::array::StringArray;
    use arrow::datatypes::{DataType, Field, Schema};

    /// 10,000 requests of users `u-0` … `u-99` (row `i` is user `i % 100`), except that row 7
    /// has no user and row 107 an empty one, in two row groups of pages of 500 rows.
    fn write_requests(dir: &Path) -> PathBuf {
        let path = dir.join("requests.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Utf8, false),
            Field::new("user_id", DataType::Utf8, true),
            Field::new("status", DataType::Utf8, false),
        ]));
        let users: Vec<Option<String>> = (0..10_000)
            .map(|i| match i {
                7 => None,
                107 => Some(String::new()),
                i => Some(format!("u-{}", i % 100)),
            })
            .collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values((0..10_000).map(|i| {
                    format!("2026-11-27T10:{:02}:{:02}Z", i / 600, i / 10 % 60)
                }))),
                Arc::new(StringArray::from(users)),
                Arc::new(StringArray::from_iter_values(
                    (0..10_000).map(|i| format!("{}", 200 + i % 3)),
                )),
            ],
        )
        .unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(5_000))
            .set_data_page_row_count_limit(500)
            .set_write_batch_size(500)
            .set_dictionary_enabled(false)
            .build();
        let file = std::fs::File::create(&path).unwrap();
        let mut w = ArrowWriter::try_new(file, schema, Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        path
    }

    fn plan_of(path: PathBuf) -> TablePlan {
        let resolved = Resolved {
            location: Location::Local(path),
            display: "requests".into(),
            source: None,
        };
        let mut problems = Vec::new();
        let plan = plan(
            Table::Requests,
            "requests",
            vec![resolved],
            &Mapping::default(),
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        plan
    }

    /// (ts, user) of every row read through `filter`.
    fn read(plan: &TablePlan, filter: Option<&RowFilter>) -> Vec<(i64, Option<String>)> {
        let mut rows = Vec::new();
        for unit in plan.units() {
            plan.read_unit_filtered(unit, &[Col::Ts, Col::UserId, Col::Status], filter, |b| {
                let users = b.str(Col::UserId).unwrap();
                for i in 0..b.len() {
                    rows.push((b.ts()[i], users.get(i).map(str::to_string)));
                }
            })
            .unwrap();
        }
        rows
    }

    #[test]
    fn a_filtered_parquet_read_keeps_exactly_the_rows_whose_key_passes() {
        let dir = std::env::temp_dir().join(format!("rollproof-filter-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plan = plan_of(write_requests(&dir));
        assert_eq!(plan.units().len(), 2);
        let all = read(&plan, None);
        assert_eq!(all.len(), 10_000);
        // Only values reach the test: neither the missing user nor the empty one.
        let seen = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
        let tested = seen.clone();
        let filter = RowFilter {
            keys: vec![(
                Col::UserId,
                Arc::new(move |u: &str| {
                    tested.lock().unwrap().insert(u.to_string());
                    u == "u-7" || u == "u-4242"
                }),
            )],
        };
        let kept = read(&plan, Some(&filter));
        let want: Vec<_> = all
            .iter()
            .filter(|(_, u)| u.as_deref() == Some("u-7"))
            .cloned()
            .collect();
        assert_eq!(want.len(), 98, "rows 7 and 107 have no user");
        assert_eq!(kept, want);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 100, "u-0 … u-99");
        assert!(!seen.contains(""));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// An OTLP span file: (resource user, [(kind, own users, user shown)]) per line.
    fn write_spans(dir: &Path) -> PathBuf {
        type Line<'a> = (Option<&'a str>, Vec<(u8, Vec<&'a str>)>);
        let lines: Vec<Line<'_>> = vec![
            // The resource's user, replaced by a span's own.
            (Some("u-7"), vec![(2, vec!["u-1"]), (2, vec![])]),
            // u-7 only on a client span, which is not a request.
            (None, vec![(2, vec!["u-2"]), (3, vec!["u-7"])]),
            // A span's last value of an attribute wins.
            (None, vec![(2, vec!["u-3"]), (2, vec!["u-7", "u-4"])]),
            (None, vec![(2, vec!["u-4", "u-7"]), (2, vec!["u-5"])]),
        ];
        let attr = |u: &str| format!(r#"{{"key":"enduser.id","value":{{"stringValue":"{u}"}}}}"#);
        let mut text = String::new();
        let mut t = 1_795_768_200_000_000_000u64;
        for (resource, spans) in &lines {
            let resource: Vec<String> = resource.iter().map(|u| attr(u)).collect();
            let spans: Vec<String> = spans
                .iter()
                .map(|(kind, users)| {
                    t += 1_000_000;
                    let own: Vec<String> = users.iter().map(|u| attr(u)).collect();
                    format!(
                        r#"{{"kind":{kind},"startTimeUnixNano":"{t}","endTimeUnixNano":"{}","attributes":[{}]}}"#,
                        t + 5_000_000,
                        own.join(",")
                    )
                })
                .collect();
            text.push_str(&format!(
                r#"{{"resourceSpans":[{{"resource":{{"attributes":[{}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
                resource.join(","),
                spans.join(",")
            ));
            text.push('\n');
        }
        let path = dir.join("spans.jsonl");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_filtered_otlp_read_keeps_the_lines_where_a_request_passes() {
        let dir =
            std::env::temp_dir().join(format!("rollproof-otlp-filter-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plan = plan_of(write_spans(&dir));
        let users = |rows: Vec<(i64, Option<String>)>| -> Vec<String> {
            rows.into_iter()
                .map(|(_, u)| u.unwrap_or_default())
                .collect()
        };
        let all = users(read(&plan, None));
        assert_eq!(all, ["u-1", "u-7", "u-2", "u-3", "u-4", "u-7", "u-5"]);
        let filter = RowFilter {
            keys: vec![(Col::UserId, Arc::new(|u: &str| u == "u-7"))],
        };
        // Whole lines: the first and the last; not the client span's, nor the overridden value's.
        let kept = users(read(&plan, Some(&filter)));
        assert_eq!(kept, ["u-1", "u-7", "u-7", "u-5"]);
        // A filter on a fixed field (`trace_id`, the preset's request id) reads every line.
        let on_trace = RowFilter {
            keys: vec![(Col::RequestId, Arc::new(|_: &str| false))],
        };
        assert_eq!(read(&plan, Some(&on_trace)).len(), 7);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_filter_on_a_column_the_file_lacks_reads_every_row() {
        let dir = std::env::temp_dir().join(format!("rollproof-nofilter-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plan = plan_of(write_requests(&dir));
        let filter = RowFilter {
            keys: vec![
                (Col::UserId, Arc::new(|_: &str| false)),
                (Col::Region, Arc::new(|_: &str| false)),
            ],
        };
        assert_eq!(read(&plan, Some(&filter)).len(), 10_000);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
