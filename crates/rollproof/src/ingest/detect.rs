//! Which source reads a file, from its content whatever its name: gzip and zstd magic bytes
//! first, then each source's own sniff in registry order (Parquet, Arrow IPC file and stream,
//! NDJSON, and CSV as the fallback for text). An explicit `format = "…"` replaces the sniff.

use std::io::Read;

use super::location::Location;
use super::source::{Source, SOURCES};
use super::Compression;
use crate::error::Problem;

/// Bytes of the (decompressed) start of a file the sniffs look at.
const HEAD: usize = 4096;

/// How a file is read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Detected {
    pub(crate) source: &'static dyn Source,
    pub(crate) compression: Option<Compression>,
}

pub(crate) fn detect(
    location: &Location,
    explicit: Option<&'static dyn Source>,
) -> Result<Detected, Problem> {
    let raw = location.head(HEAD)?;
    if raw.is_empty() {
        return Err(
            Problem::new("an empty file", "a file with a header or data")
                .file(location.shown_path())
                .hint("the export wrote nothing; check the job that produced it"),
        );
    }
    let compression = if raw.starts_with(&[0x1f, 0x8b]) {
        Some(Compression::Gzip)
    } else if raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Compression::Zstd)
    } else {
        None
    };
    let head = match compression {
        None => raw,
        Some(c) => {
            let mut head = Vec::with_capacity(HEAD);
            // A corrupt stream shows up when the file is read; the head is what decompressed.
            let _ = location
                .open_text(Some(c))?
                .take(HEAD as u64)
                .read_to_end(&mut head);
            head
        }
    };
    let source = match explicit {
        Some(source) => source,
        None => sniff(location, &head)?,
    };
    if let (Some(c), true) = (compression, source.binary()) {
        return Err(Problem::new(
            format!("a {}-compressed {} file", c.name(), source.name()),
            "an uncompressed binary file (Parquet and Arrow compress internally)",
        )
        .file(location.shown_path())
        .hint("decompress the file first"));
    }
    Ok(Detected {
        source,
        compression,
    })
}

fn sniff(location: &Location, head: &[u8]) -> Result<&'static dyn Source, Problem> {
    let source = SOURCES
        .iter()
        .copied()
        .find(|s| s.sniff(head))
        .expect("CSV accepts any text");
    if source.binary() {
        return Ok(source);
    }
    let first = head.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        return Err(Problem::new(
            "a JSON array",
            "one JSON object per line (NDJSON), Parquet, Arrow IPC or CSV",
        )
        .file(location.shown_path())
        .hint("write one object per line, e.g. `jq -c '.[]' file.json > file.jsonl`"));
    }
    if head.starts_with(&[0xff, 0xfe]) || head.starts_with(&[0xfe, 0xff]) {
        return Err(
            Problem::new("UTF-16 text", "UTF-8 text, Parquet or Arrow IPC")
                .file(location.shown_path())
                .hint("convert it, e.g. `iconv -f utf-16 -t utf-8 in.csv > out.csv`"),
        );
    }
    if !looks_like_text(head) {
        return Err(Problem::new(
            "a binary file of unknown format",
            "Parquet, Arrow IPC, NDJSON or CSV (optionally gzip- or zstd-compressed)",
        )
        .file(location.shown_path())
        .hint("check that the path names the log export, and that it finished writing"));
    }
    Ok(source)
}

/// Text: no NUL byte, and few control bytes. Text that is not valid UTF-8 (Latin-1, say) is
/// still text: its reader then names the line that is not UTF-8, which says more than "binary".
fn looks_like_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    let control = head
        .iter()
        .filter(|b| b.is_ascii_control() && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c))
        .count();
    control * 20 < head.len().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_binary_heads() {
        assert!(looks_like_text(b"ts,status\n1,200\n"));
        assert!(looks_like_text("ΔS,λ\n".as_bytes()));
        // A multi-byte character cut by the end of the head is still text.
        assert!(looks_like_text(&"ts,Δ".as_bytes()[..4]));
        assert!(!looks_like_text(b"FEA1\0\0\x01"));
        assert!(
            looks_like_text(b"caf\xe9,1\n"),
            "Latin-1 is text (its reader names the line)"
        );
        assert!(!looks_like_text(b"\x01\x02\x03\x04ab"));
    }
}
