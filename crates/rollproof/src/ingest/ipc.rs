//! Arrow IPC: the file format (`ARROW1` magic, random access) and the stream format.

use std::io::BufReader;

use arrow::ipc::reader::{FileReader, StreamReader};

use super::source::{FileRef, Layout, Sink, Source};
use crate::error::{InputError, Problem};

const HINT: &str = "the file may be truncated or not Arrow IPC; re-export it";

pub(crate) struct ArrowFile;
pub(crate) static ARROW_FILE: ArrowFile = ArrowFile;

pub(crate) struct ArrowStream;
pub(crate) static ARROW_STREAM: ArrowStream = ArrowStream;

/// An IPC read error as a problem; compressed buffers (pyarrow's Feather default is LZ4) get
/// their own message: rollproof does not decompress them, because a buffer declares its
/// decompressed size and the reader allocates it before it can be checked.
fn problem(file: &FileRef<'_>, e: arrow::error::ArrowError) -> Problem {
    let message = e.to_string();
    for codec in ["lz4", "zstd"] {
        if message.contains(&format!("{codec} IPC decompression")) {
            return Problem::new(
                format!("an Arrow IPC file with {}-compressed buffers", codec.to_uppercase()),
                "an uncompressed Arrow IPC file, or Parquet",
            )
            .file(file.location.shown_path())
            .hint("re-export without compression (pyarrow: `feather.write_feather(table, path, compression=\"uncompressed\")`) or as Parquet, which rollproof reads with checked page sizes");
        }
    }
    file.problem(message)
}

fn columns(schema: &arrow::datatypes::Schema) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

impl Source for ArrowFile {
    fn name(&self) -> &'static str {
        "arrow"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["feather", "ipc"]
    }

    fn sniff(&self, head: &[u8]) -> bool {
        head.starts_with(b"ARROW1")
    }

    fn binary(&self) -> bool {
        true
    }

    fn hint(&self) -> &'static str {
        HINT
    }

    fn inspect(&self, file: &FileRef<'_>) -> Result<Layout, Problem> {
        let reader = FileReader::try_new(BufReader::new(file.location.open()?), None)
            .map_err(|e| problem(file, e))?;
        Ok(Layout {
            columns: columns(&reader.schema()),
            row_groups: Vec::new(),
            detail: None,
        })
    }

    fn read(
        &self,
        file: &FileRef<'_>,
        layout: &Layout,
        _row_group: Option<usize>,
        wanted: &[&str],
        sink: &mut Sink<'_>,
    ) -> Result<(), InputError> {
        let projection = super::projection(&layout.columns, wanted);
        let reader = FileReader::try_new(BufReader::new(file.location.open()?), Some(projection))
            .map_err(|e| problem(file, e))?;
        for batch in reader {
            sink(batch.map_err(|e| problem(file, e))?)?;
        }
        Ok(())
    }
}

impl Source for ArrowStream {
    fn name(&self) -> &'static str {
        "arrow-stream"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["arrows"]
    }

    /// A stream starts with a message: the continuation marker, then its length.
    fn sniff(&self, head: &[u8]) -> bool {
        head.starts_with(&[0xff, 0xff, 0xff, 0xff])
    }

    fn binary(&self) -> bool {
        true
    }

    fn hint(&self) -> &'static str {
        HINT
    }

    fn inspect(&self, file: &FileRef<'_>) -> Result<Layout, Problem> {
        let reader = StreamReader::try_new(BufReader::new(file.location.open()?), None)
            .map_err(|e| problem(file, e))?;
        Ok(Layout {
            columns: columns(&reader.schema()),
            row_groups: Vec::new(),
            detail: None,
        })
    }

    fn read(
        &self,
        file: &FileRef<'_>,
        layout: &Layout,
        _row_group: Option<usize>,
        wanted: &[&str],
        sink: &mut Sink<'_>,
    ) -> Result<(), InputError> {
        let projection = super::projection(&layout.columns, wanted);
        let reader = StreamReader::try_new(BufReader::new(file.location.open()?), Some(projection))
            .map_err(|e| problem(file, e))?;
        for batch in reader {
            sink(batch.map_err(|e| problem(file, e))?)?;
        }
        Ok(())
    }
}
