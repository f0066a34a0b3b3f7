//! The only module that reads input files: resolve globs, detect formats, plan the units of
//! parallel work, and turn every unit into canonical batches.
//!
//! Planning reads only schemas and footers, so that the checks know before the pass which columns
//! the table has (a column is present when any file of the table has it; files without it give
//! nulls). Reading streams one batch at a time, projected to the columns the checks need.

pub(crate) mod canon;
pub mod mapping;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use sha2::{Digest, Sha256};

use crate::columns::{CanonBatch, Col, Table};
use crate::error::Problem;
use canon::{convert, Origin};
pub use mapping::Mapping;
pub(crate) use mapping::TableMapping;

/// Rows per batch: large enough to amortise per-batch work, small enough to stream.
pub(crate) const BATCH_ROWS: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Parquet,
    ArrowFile,
    ArrowStream,
    Csv,
    Ndjson,
}

impl Format {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::ArrowFile => "arrow",
            Format::ArrowStream => "arrow-stream",
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        }
    }
}

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
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    pub(crate) table: Table,
    pub(crate) path: PathBuf,
    /// The path as shown in reports: relative to the incident folder when it is inside it.
    pub(crate) display: String,
    pub(crate) format: Format,
    pub(crate) compression: Option<Compression>,
    /// Source column names, in file order.
    pub(crate) columns: Vec<String>,
    /// Rows per Parquet row group (empty for other formats).
    pub(crate) row_groups: Vec<u64>,
}

/// A table's files and the canonical columns it has.
#[derive(Debug, Clone)]
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
}

impl UnitCounts {
    pub(crate) fn add(&mut self, other: &UnitCounts) {
        self.rows_read += other.rows_read;
        self.rejected_no_ts += other.rejected_no_ts;
    }
}

/// Expands globs (relative patterns against `base`), sorted and de-duplicated per pattern.
pub(crate) fn resolve(
    table: Table,
    patterns: &[String],
    base: &Path,
    problems: &mut Vec<Problem>,
) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let shown_base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    for pattern in patterns {
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            base.join(pattern)
        };
        let is_glob = pattern.contains(['*', '?', '[']);
        if !is_glob {
            if full.is_file() {
                out.push((full.clone(), pattern.clone()));
            } else {
                problems.push(
                    Problem::new("no such file", format!("a {} file", table.name()))
                        .file(&full)
                        .hint(format!(
                            "paths in the incident file are relative to its folder (`{}`); `--{}` paths are relative to the current folder",
                            shown_base.display(),
                            table.name()
                        )),
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
                .hint(format!("globs are relative to `{}`", base.display())),
            );
        }
        for m in matches {
            let shown = m
                .strip_prefix(base)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| m.to_string_lossy().into_owned());
            out.push((m, shown));
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

fn detect(path: &Path) -> Result<(Format, Option<Compression>), Problem> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let mut magic = [0u8; 8];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut magic))
        .map_err(|e| io_problem(path, &e))?;
    let magic = &magic[..n];
    let (stem, compression) = if let Some(s) = name.strip_suffix(".gz") {
        (s.to_string(), Some(Compression::Gzip))
    } else if let Some(s) = name.strip_suffix(".zst") {
        (s.to_string(), Some(Compression::Zstd))
    } else if magic.starts_with(&[0x1f, 0x8b]) {
        (name.clone(), Some(Compression::Gzip))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        (name.clone(), Some(Compression::Zstd))
    } else {
        (name.clone(), None)
    };
    let ext = stem.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    let by_ext = match ext {
        "parquet" | "pq" => Some(Format::Parquet),
        "arrow" | "feather" | "ipc" | "arrows" => Some(if magic.starts_with(b"ARROW1") {
            Format::ArrowFile
        } else {
            Format::ArrowStream
        }),
        "csv" => Some(Format::Csv),
        "jsonl" | "ndjson" | "json" => Some(Format::Ndjson),
        _ => None,
    };
    let format = match by_ext {
        Some(f) => f,
        None if compression.is_none() && magic.starts_with(b"PAR1") => Format::Parquet,
        None if compression.is_none() && magic.starts_with(b"ARROW1") => Format::ArrowFile,
        None if compression.is_none() && magic.starts_with(&[0xff, 0xff, 0xff, 0xff]) => Format::ArrowStream,
        None if magic.first() == Some(&b'{') => Format::Ndjson,
        None => {
            return Err(Problem::new(
                format!("a file of unknown format (name `{name}`)"),
                "Parquet, Arrow IPC, CSV or NDJSON (optionally .gz/.zst)",
            )
            .file(path)
            .hint("name the file with its format's extension: .parquet, .arrow, .csv, .jsonl (+ .gz or .zst)"))
        }
    };
    if compression.is_some()
        && matches!(
            format,
            Format::Parquet | Format::ArrowFile | Format::ArrowStream
        )
    {
        return Err(Problem::new(
            format!(
                "a {}-compressed {} file",
                compression.map(|c| c.name()).unwrap_or(""),
                format.name()
            ),
            "an uncompressed binary file (Parquet and Arrow compress internally)",
        )
        .file(path)
        .hint("decompress the file first"));
    }
    Ok((format, compression))
}

fn io_problem(path: &Path, e: &std::io::Error) -> Problem {
    Problem::new(format!("an unreadable file ({e})"), "a readable file")
        .file(path)
        .hint("check the path and its permissions")
}

fn read_problem(path: &Path, format: Format, e: impl std::fmt::Display) -> Problem {
    let hint = match format {
        Format::Parquet => "the file may be truncated or not Parquet; re-export it",
        Format::ArrowFile | Format::ArrowStream => {
            "the file may be truncated or not Arrow IPC; re-export it"
        }
        Format::Csv => "every row must have as many fields as the header",
        Format::Ndjson => "every line must be one JSON object",
    };
    Problem::new(
        format!("unreadable {} ({e})", format.name()),
        format!("a valid {} file", format.name()),
    )
    .file(path)
    .hint(hint)
}

fn open_text(path: &Path, compression: Option<Compression>) -> Result<Box<dyn BufRead>, Problem> {
    let file = File::open(path).map_err(|e| io_problem(path, &e))?;
    Ok(match compression {
        None => Box::new(BufReader::with_capacity(1 << 20, file)),
        Some(Compression::Gzip) => Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(BufReader::new(file)),
        )),
        Some(Compression::Zstd) => Box::new(BufReader::with_capacity(
            1 << 20,
            zstd::stream::read::Decoder::new(file).map_err(|e| io_problem(path, &e))?,
        )),
    })
}

/// Reads a file's column names (and Parquet row groups) without reading its data.
fn inspect(table: Table, path: PathBuf, display: String) -> Result<SourceFile, Problem> {
    let (format, compression) = detect(&path)?;
    let mut row_groups = Vec::new();
    let columns: Vec<String> = match format {
        Format::Parquet => {
            let file = File::open(&path).map_err(|e| io_problem(&path, &e))?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| read_problem(&path, format, e))?;
            row_groups = builder
                .metadata()
                .row_groups()
                .iter()
                .map(|rg| rg.num_rows().max(0) as u64)
                .collect();
            builder
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        }
        Format::ArrowFile => {
            let file = File::open(&path).map_err(|e| io_problem(&path, &e))?;
            let reader = arrow::ipc::reader::FileReader::try_new(BufReader::new(file), None)
                .map_err(|e| read_problem(&path, format, e))?;
            reader
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        }
        Format::ArrowStream => {
            let file = File::open(&path).map_err(|e| io_problem(&path, &e))?;
            let reader = arrow::ipc::reader::StreamReader::try_new(BufReader::new(file), None)
                .map_err(|e| read_problem(&path, format, e))?;
            reader
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        }
        Format::Csv => {
            let reader = open_text(&path, compression)?;
            let (schema, _) = arrow::csv::reader::Format::default()
                .with_header(true)
                .infer_schema(reader, Some(0))
                .map_err(|e| read_problem(&path, format, e))?;
            schema.fields().iter().map(|f| f.name().clone()).collect()
        }
        Format::Ndjson => {
            // NDJSON has no header: a key is present when any line has it.
            let reader = open_text(&path, compression)?;
            let (schema, _) = arrow::json::reader::infer_json_schema(reader, None)
                .map_err(|e| read_problem(&path, format, e))?;
            schema.fields().iter().map(|f| f.name().clone()).collect()
        }
    };
    Ok(SourceFile {
        table,
        path,
        display,
        format,
        compression,
        columns,
        row_groups,
    })
}

/// Plans one table: inspects every file, checks that each has `ts`, and works out which canonical
/// columns the table has. All problems are collected.
pub(crate) fn plan(
    table: Table,
    files: Vec<(PathBuf, String)>,
    mapping: &Mapping,
    problems: &mut Vec<Problem>,
) -> TablePlan {
    let table_mapping = mapping.table(table).clone();
    let inspected: Vec<Result<SourceFile, Problem>> = {
        use rayon::prelude::*;
        files
            .into_par_iter()
            .map(|(path, display)| inspect(table, path, display))
            .collect()
    };
    let mut plan = TablePlan {
        table,
        files: Vec::new(),
        present: BTreeSet::new(),
        mapping: table_mapping,
    };
    for file in inspected {
        match file {
            Err(p) => problems.push(p),
            Ok(file) => {
                let ts_source = plan.mapping.source(ts_of(table));
                if !file.columns.iter().any(|c| c == ts_source) {
                    problems.push(
                        Problem::new(
                            format!("no `{ts_source}` column (columns are {})", list_columns(&file.columns)),
                            format!("a `{ts_source}` timestamp column in every {} file", table.name()),
                        )
                        .file(&file.path)
                        .column(ts_source)
                        .hint("map the timestamp column in the mapping file, e.g. [requests] ts = \"timestamp\""),
                    );
                }
                for col in Col::of_table(table) {
                    if file.columns.iter().any(|c| c == plan.mapping.source(col)) {
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
                plan.files.iter().flat_map(|f| f.columns.iter()).collect();
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
                .hint("fix the source name in the mapping file"),
            );
        }
    }
    plan
}

fn list_columns(columns: &[String]) -> String {
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
    /// Units of parallel work: one per Parquet row group, one per other file.
    pub(crate) fn units(&self) -> Vec<Unit> {
        let mut units = Vec::new();
        for (i, file) in self.files.iter().enumerate() {
            if file.format == Format::Parquet {
                let mut offset = 0;
                for (rg, rows) in file.row_groups.iter().enumerate() {
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
    ) -> Result<UnitCounts, Problem> {
        let file = &self.files[unit.file];
        let ts = ts_of(self.table);
        let mut columns: Vec<Col> = vec![ts];
        columns.extend(
            wanted
                .iter()
                .copied()
                .filter(|c| *c != ts && self.present.contains(c)),
        );
        let sources: Vec<&str> = columns.iter().map(|c| self.mapping.source(*c)).collect();
        let mut counts = UnitCounts::default();
        let mut row_offset = unit.row_offset;
        let mut on_batch = |batch: RecordBatch| -> Result<(), Problem> {
            let origin = Origin {
                file: &file.path,
                row_offset,
            };
            let converted = convert(&batch, &columns, &self.mapping, &origin)?;
            counts.rows_read += batch.num_rows() as u64;
            counts.rejected_no_ts += converted.rejected_no_ts;
            row_offset += batch.num_rows() as u64;
            if !converted.batch.is_empty() {
                each(&converted.batch);
            }
            Ok(())
        };
        let path = &file.path;
        let format = file.format;
        let projection: Vec<usize> = file
            .columns
            .iter()
            .enumerate()
            .filter(|(_, name)| sources.contains(&name.as_str()))
            .map(|(i, _)| i)
            .collect();
        match format {
            Format::Parquet => {
                let f = File::open(path).map_err(|e| io_problem(path, &e))?;
                let builder = ParquetRecordBatchReaderBuilder::try_new(f)
                    .map_err(|e| read_problem(path, format, e))?;
                let mask = ProjectionMask::roots(builder.parquet_schema(), projection);
                let mut builder = builder.with_projection(mask).with_batch_size(BATCH_ROWS);
                if let Some(rg) = unit.row_group {
                    builder = builder.with_row_groups(vec![rg]);
                }
                let reader = builder.build().map_err(|e| read_problem(path, format, e))?;
                for batch in reader {
                    on_batch(batch.map_err(|e| read_problem(path, format, e))?)?;
                }
            }
            Format::ArrowFile => {
                let f = File::open(path).map_err(|e| io_problem(path, &e))?;
                let reader =
                    arrow::ipc::reader::FileReader::try_new(BufReader::new(f), Some(projection))
                        .map_err(|e| read_problem(path, format, e))?;
                for batch in reader {
                    on_batch(batch.map_err(|e| read_problem(path, format, e))?)?;
                }
            }
            Format::ArrowStream => {
                let f = File::open(path).map_err(|e| io_problem(path, &e))?;
                let reader =
                    arrow::ipc::reader::StreamReader::try_new(BufReader::new(f), Some(projection))
                        .map_err(|e| read_problem(path, format, e))?;
                for batch in reader {
                    on_batch(batch.map_err(|e| read_problem(path, format, e))?)?;
                }
            }
            Format::Csv => {
                // Every column is read as text and parsed by `canon`, so that a bad value is
                // reported with its row instead of an inference guess.
                let schema = Arc::new(Schema::new(
                    file.columns
                        .iter()
                        .map(|name| Field::new(name, DataType::Utf8, true))
                        .collect::<Vec<_>>(),
                ));
                let reader = arrow::csv::ReaderBuilder::new(schema)
                    .with_header(true)
                    .with_batch_size(BATCH_ROWS)
                    .with_projection(projection)
                    .build(open_text(path, file.compression)?)
                    .map_err(|e| read_problem(path, format, e))?;
                for batch in reader {
                    on_batch(batch.map_err(|e| read_problem(path, format, e))?)?;
                }
            }
            Format::Ndjson => {
                let schema = Arc::new(Schema::new(
                    sources
                        .iter()
                        .filter(|s| file.columns.iter().any(|c| c == *s))
                        .map(|name| Field::new(*name, DataType::Utf8, true))
                        .collect::<Vec<_>>(),
                ));
                let reader = arrow::json::ReaderBuilder::new(schema)
                    .with_batch_size(BATCH_ROWS)
                    .with_coerce_primitive(true)
                    .build(open_text(path, file.compression)?)
                    .map_err(|e| read_problem(path, format, e))?;
                for batch in reader {
                    on_batch(batch.map_err(|e| read_problem(path, format, e))?)?;
                }
            }
        }
        Ok(counts)
    }
}

/// SHA-256 of a file's bytes on disk, as lowercase hex.
pub(crate) fn sha256_file(path: &Path) -> Result<String, Problem> {
    let mut file = File::open(path).map_err(|e| io_problem(path, &e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| io_problem(path, &e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let _ = file.rewind();
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
