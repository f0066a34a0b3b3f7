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

/// Text: no NUL byte, and valid UTF-8 (but for a character cut at the end of the head).
fn looks_like_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    }
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
        assert!(!looks_like_text(&[0xff, 0xfe, 0x41, 0x42]));
    }
}
