//! One [`Source`] per input format, and the registry that detection and explicit `format = "…"`
//! settings pick from. A source knows how to recognise its format from the first bytes, how to
//! read a file's column names and units of work without reading its data, and how to stream one
//! unit's rows, projected to the columns wanted, as Arrow record batches.
//!
//! Adding a format: its file, and one line in [`SOURCES`].

use std::any::Any;
use std::io::BufRead;
use std::sync::Arc;

use arrow::array::RecordBatch;

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
        self.location.open_text(self.compression)
    }

    /// The source could not read the file.
    pub(crate) fn problem(&self, e: impl std::fmt::Display) -> Problem {
        let name = self.source.name();
        Problem::new(
            format!("unreadable {name} ({e})"),
            format!("a valid {name} file"),
        )
        .file(self.location.shown_path())
        .hint(self.source.hint())
    }
}

/// Streams record batches to the caller; an error ends the read.
pub(crate) type Sink<'a> = dyn FnMut(RecordBatch) -> Result<(), InputError> + 'a;

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
}

impl std::fmt::Debug for dyn Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
