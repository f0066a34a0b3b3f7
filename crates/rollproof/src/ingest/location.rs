//! Where an input's bytes live — a local file or an object in a store — and the ways sources
//! read them: the first bytes, a (decompressed) text stream, or a file. An object is read as a
//! file through its local spool (see `remote`); Parquet reads objects with ranged requests
//! itself.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::remote::Remote;
use super::Compression;
use crate::error::Problem;

/// An input file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Location {
    Local(PathBuf),
    Remote(Arc<Remote>),
}

impl Location {
    /// The path messages name (a URL for an object).
    pub(crate) fn shown_path(&self) -> &Path {
        match self {
            Location::Local(p) => p,
            Location::Remote(r) => r.shown_path(),
        }
    }

    pub(crate) fn io_problem(&self, e: &std::io::Error) -> Problem {
        Problem::new(format!("an unreadable file ({e})"), "a readable file")
            .file(self.shown_path())
            .hint("check the path and its permissions")
    }

    /// The raw bytes, from the start (an object's local copy).
    pub(crate) fn open(&self) -> Result<File, Problem> {
        match self {
            Location::Local(p) => File::open(p).map_err(|e| self.io_problem(&e)),
            Location::Remote(r) => File::open(r.spooled()?).map_err(|e| self.io_problem(&e)),
        }
    }

    /// The first bytes (at most `n`), raw.
    pub(crate) fn head(&self, n: usize) -> Result<Vec<u8>, Problem> {
        if let Location::Remote(r) = self {
            return r.get_range(0..(n as u64).min(r.meta.size));
        }
        let mut buf = Vec::with_capacity(n);
        self.open()?
            .take(n as u64)
            .read_to_end(&mut buf)
            .map_err(|e| self.io_problem(&e))?;
        Ok(buf)
    }

    /// A read buffer sized to the file: 1 MiB for large files, less for small ones (thousands of
    /// small files must not cost a megabyte of fresh memory each).
    pub(crate) fn buffer_size(&self, file: &File) -> usize {
        let len = file.metadata().map_or(1 << 20, |m| m.len());
        len.clamp(4096, 1 << 20) as usize
    }

    /// The bytes as a buffered stream, decompressed.
    pub(crate) fn open_text(
        &self,
        compression: Option<Compression>,
    ) -> Result<Box<dyn BufRead + Send + '_>, Problem> {
        let file = self.open()?;
        let capacity = self.buffer_size(&file);
        Ok(match compression {
            None => Box::new(BufReader::with_capacity(capacity, file)),
            Some(Compression::Gzip) => Box::new(BufReader::with_capacity(
                1 << 20,
                flate2::read::MultiGzDecoder::new(BufReader::new(file)),
            )),
            Some(Compression::Zstd) => Box::new(BufReader::with_capacity(
                1 << 20,
                zstd::stream::read::Decoder::new(file).map_err(|e| self.io_problem(&e))?,
            )),
        })
    }
}

impl Location {
    /// SHA-256 of the bytes as lowercase hex: always for a local file; for an object, when it was
    /// read whole (or `read_whole` asks for it), else `None`.
    pub(crate) fn sha256(&self, read_whole: bool) -> Result<Option<String>, Problem> {
        use sha2::{Digest, Sha256};
        if let Location::Remote(r) = self {
            return r.sha256(read_whole);
        }
        let mut file = self.open()?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; self.buffer_size(&file)];
        loop {
            let n = file.read(&mut buf).map_err(|e| self.io_problem(&e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(Some(super::remote::hex(&hasher.finalize())))
    }
}
