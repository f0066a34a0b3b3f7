//! One [`Source`] per input format, and the registry that detection and explicit `format = "…"`
//! settings pick from. A source knows how to recognise its format from the first bytes, how to
//! read a file's column names and units of work without reading its data, and how to stream one
//! unit's rows, projected to the columns wanted, as Arrow record batches.
//!
//! Adding a format: its file, and one line in [`SOURCES`].

use std::any::Any;
use std::io::BufRead;
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};

use super::location::Location;
use super::mapping::SpanSelection;
use super::Compression;
use crate::error::{InputError, Problem};

/// Every source, in the order detection tries them (the most specific first; CSV last, as the
/// fallback for text).
pub(crate) static SOURCES: &[&dyn Source] = &[
    &super::parquet::PARQUET,
    &super::ipc::ARROW_FILE,
    &super::ipc::ARROW_STREAM,
    &super::otlp::OTLP,
    &super::ndjson::NDJSON,
    &super::csv::CSV,
];

/// The source called `name` (as in `format = "ndjson"`).
pub(crate) fn by_name(name: &str) -> Option<&'static dyn Source> {
    SOURCES
        .iter()
        .copied()
        .find(|s| s.name() == name || s.aliases().contains(&name))
}

/// Names accepted for `format = "…"`.
pub(crate) fn names() -> Vec<&'static str> {
    SOURCES.iter().map(|s| s.name()).collect()
}

/// What inspecting a file found: its column names, its units of work, and whatever the source
/// wants to keep for reading (e.g. a Parquet footer, read once).
pub(crate) struct Layout {
    /// Source column names, in file order.
    pub(crate) columns: Vec<String>,
    /// Rows per unit, when the format splits into units (Parquet row groups); empty: the whole
    /// file is one unit.
    pub(crate) row_groups: Vec<u64>,
    pub(crate) detail: Option<Arc<dyn Any + Send + Sync>>,
}

/// A file as a source reads it.
pub(crate) struct FileRef<'a> {
    pub(crate) location: &'a Location,
    pub(crate) compression: Option<Compression>,
    pub(crate) source: &'static dyn Source,
    /// Which OTLP spans are requests.
    pub(crate) spans: SpanSelection,
}

impl FileRef<'_> {
    /// The file's bytes as text, decompressed.
    pub(crate) fn open_text(&self) -> Result<Box<dyn BufRead + Send + '_>, Problem> {
        Ok(Box::new(super::lines::LineGuard::new(
            self.location.open_text(self.compression)?,
            self.source.max_line(),
        )))
    }

    /// Rows per batch for a text file of `columns` columns: bounded so that buffers (sized rows
    /// × columns by the readers) stay small for wide files, and for small files, which cannot
    /// hold more rows than they have bytes per column.
    pub(crate) fn batch_rows(&self, columns: usize) -> usize {
        /// Fields one batch holds at most (4,000 columns: 1,024 rows).
        const FIELDS_PER_BATCH: usize = 4 << 20;
        let columns = columns.max(1);
        let mut rows = (FIELDS_PER_BATCH / columns).clamp(64, super::BATCH_ROWS);
        if let (super::location::Location::Local(p), None) = (self.location, self.compression) {
            if let Ok(meta) = std::fs::metadata(p) {
                rows = rows.min((meta.len() as usize / columns + 1).max(64));
            }
        }
        rows
    }

    /// The source could not read the file. A line past the limit, or text that is not UTF-8,
    /// gets its own message and hint whatever the format.
    pub(crate) fn problem(&self, e: impl std::fmt::Display) -> Problem {
        let name = self.source.name();
        let message = e.to_string();
        if let Some(at) = message
            .find("line ")
            .filter(|_| message.contains(super::lines::TOO_LONG))
        {
            let what = message[at..]
                .split(')')
                .next()
                .unwrap_or_default()
                .to_string();
            return Problem::new(
                format!("a {what}"),
                format!("{name} text with lines of at most {} MiB", self.source.max_line() >> 20),
            )
            .file(self.location.shown_path())
            .hint("a line that long is usually a binary or corrupt file, or a whole file without newlines; check that the file is really this format");
        }
        let hint = if message.to_ascii_lowercase().contains("utf8")
            || message.to_ascii_lowercase().contains("utf-8")
        {
            "the file must be UTF-8 text; convert it (e.g. `iconv -f latin1 -t utf-8`)"
        } else {
            self.source.hint()
        };
        Problem::new(
            format!("unreadable {name} ({message})"),
            format!("a valid {name} file"),
        )
        .file(self.location.shown_path())
        .hint(hint)
    }
}

/// Streams record batches to the caller; an error ends the read.
pub(crate) type Sink<'a> = dyn FnMut(RecordBatch) -> Result<(), InputError> + 'a;

/// A test on a few source columns that a row must pass to be worth reading whole: a source that
/// can decodes the test's columns first and the other columns only for the rows that pass.
pub(crate) struct SourceFilter {
    /// The source columns the test reads (all in the file).
    pub(crate) columns: Vec<String>,
    /// Per row of a batch of `columns` (in file order, named as in the file): whether to read it.
    pub(crate) test: Arc<dyn Fn(&RecordBatch) -> BooleanArray + Send + Sync>,
}

pub(crate) trait Source: Sync {
    /// The format's name in reports and in `format = "…"`.
    fn name(&self) -> &'static str;
    /// Other names accepted in `format = "…"`.
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }
    /// Whether the first bytes of a file (decompressed) are this format.
    fn sniff(&self, head: &[u8]) -> bool;
    /// Binary formats compress internally: a gzip or zstd file of them is refused.
    fn binary(&self) -> bool {
        false
    }
    /// What to do when a file of this format cannot be read.
    fn hint(&self) -> &'static str;
    /// The longest line a text source reads (binary sources are not read by lines).
    fn max_line(&self) -> u64 {
        super::lines::MAX_LINE_BYTES
    }
    /// The file's columns and units, without reading its data.
    fn inspect(&self, file: &FileRef<'_>) -> Result<Layout, Problem>;
    /// Streams one unit (a row group, or the whole file) projected to the source columns
    /// `wanted` (those the file has), in file order.
    fn read(
        &self,
        file: &FileRef<'_>,
        layout: &Layout,
        row_group: Option<usize>,
        wanted: &[&str],
        sink: &mut Sink<'_>,
    ) -> Result<(), InputError>;
    /// [`Source::read`], where the rows that fail `filter` need not reach `sink` (a row that
    /// passes must). Sources that cannot skip rows cheaply read them all: a filter only ever
    /// saves work, it never decides a figure.
    fn read_filtered(
        &self,
        file: &FileRef<'_>,
        layout: &Layout,
        row_group: Option<usize>,
        wanted: &[&str],
        _filter: &SourceFilter,
        sink: &mut Sink<'_>,
    ) -> Result<(), InputError> {
        self.read(file, layout, row_group, wanted, sink)
    }
}

impl std::fmt::Debug for dyn Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
