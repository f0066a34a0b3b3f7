//! Arrow IPC: the file format (`ARROW1` magic, random access) and the stream format.

use std::fs::File;
use std::io::BufReader;

use arrow::error::ArrowError;
use arrow::ipc::reader::{FileReader, StreamReader};
use arrow::record_batch::RecordBatchReader;

use super::source::{FileRef, Layout, Sink, Source};
use crate::error::{InputError, Problem};

const HINT: &str = "the file may be truncated or not Arrow IPC; re-export it";

pub(crate) struct ArrowFile;
pub(crate) static ARROW_FILE: ArrowFile = ArrowFile;

pub(crate) struct ArrowStream;
pub(crate) static ARROW_STREAM: ArrowStream = ArrowStream;

/// Every block the footer lists (dictionaries, record batches) must lie inside the file: the
/// reader allocates a block's declared length before reading it, so a corrupt footer could make it
/// ask for gigabytes for a file of kilobytes.
fn check_blocks(file: &FileRef<'_>) -> Result<(), Problem> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = file.location.open()?;
    let size = f
        .seek(SeekFrom::End(0))
        .map_err(|e| corrupt(file, e.to_string()))?;
    let mut tail = [0u8; 10];
    if size < 10 + 6 {
        return Ok(()); // the reader's own error names what is missing
    }
    f.seek(SeekFrom::End(-10))
        .and_then(|_| f.read_exact(&mut tail))
        .map_err(|e| corrupt(file, e.to_string()))?;
    let Ok(footer_len) = arrow::ipc::reader::read_footer_length(tail) else {
        return Ok(());
    };
    if footer_len as u64 + 10 > size {
        return Err(corrupt(
            file,
            format!("a footer of {footer_len} bytes in a file of {size}"),
        ));
    }
    let mut footer = vec![0u8; footer_len];
    f.seek(SeekFrom::End(-10 - footer_len as i64))
        .and_then(|_| f.read_exact(&mut footer))
        .map_err(|e| corrupt(file, e.to_string()))?;
    let Ok(footer) = arrow::ipc::root_as_footer(&footer) else {
        return Ok(()); // the reader reports an unreadable footer itself
    };
    let blocks = footer
        .dictionaries()
        .into_iter()
        .flatten()
        .chain(footer.recordBatches().into_iter().flatten());
    for b in blocks {
        let end = b
            .offset()
            .checked_add(b.metaDataLength() as i64)
            .and_then(|e| e.checked_add(b.bodyLength()));
        let inside = b.offset() >= 0
            && b.metaDataLength() >= 0
            && b.bodyLength() >= 0
            && end.is_some_and(|e| e as u64 <= size);
        if !inside {
            return Err(corrupt(
                file,
                format!(
                    "a block at offset {} of {} + {} bytes in a file of {size}",
                    b.offset(),
                    b.metaDataLength(),
                    b.bodyLength()
                ),
            ));
        }
    }
    Ok(())
}

fn corrupt(file: &FileRef<'_>, found: String) -> Problem {
    Problem::new(
        found,
        "an Arrow IPC file whose footer lists blocks inside the file",
    )
    .file(file.location.shown_path())
    .hint(HINT)
}

/// An IPC read error as a problem; compressed buffers (pyarrow's Feather default is LZ4) get
/// their own message: rollproof does not decompress them, because a buffer declares its
/// decompressed size and the reader allocates it before it can be checked.
fn problem(file: &FileRef<'_>, e: ArrowError) -> Problem {
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

/// How either format's reader is made over an open file, projected (all columns when `None`).
type Open<R> = fn(BufReader<File>, Option<Vec<usize>>) -> Result<R, ArrowError>;

/// The columns of the file, as the schema of the reader `open` makes.
fn layout<R: RecordBatchReader>(file: &FileRef<'_>, open: Open<R>) -> Result<Layout, Problem> {
    let reader = open(BufReader::new(file.location.open()?), None).map_err(|e| problem(file, e))?;
    Ok(Layout {
        columns: reader
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
        row_groups: Vec::new(),
        detail: None,
    })
}

/// Every batch of the file, the `wanted` columns, through the reader `open` makes.
fn read_batches<R: RecordBatchReader>(
    file: &FileRef<'_>,
    layout: &Layout,
    wanted: &[&str],
    sink: &mut Sink<'_>,
    open: Open<R>,
) -> Result<(), InputError> {
    let projection = super::projection(&layout.columns, wanted);
    let reader = open(BufReader::new(file.location.open()?), Some(projection))
        .map_err(|e| problem(file, e))?;
    for batch in reader {
        sink(batch.map_err(|e| problem(file, e))?)?;
    }
    Ok(())
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
        check_blocks(file)?;
        layout(file, FileReader::try_new)
    }

    fn read(
        &self,
        file: &FileRef<'_>,
        layout: &Layout,
        _row_group: Option<usize>,
        wanted: &[&str],
        sink: &mut Sink<'_>,
    ) -> Result<(), InputError> {
        read_batches(file, layout, wanted, sink, FileReader::try_new)
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
        layout(file, StreamReader::try_new)
    }

    fn read(
        &self,
        file: &FileRef<'_>,
        layout: &Layout,
        _row_group: Option<usize>,
        wanted: &[&str],
        sink: &mut Sink<'_>,
    ) -> Result<(), InputError> {
        read_batches(file, layout, wanted, sink, StreamReader::try_new)
    }
}
