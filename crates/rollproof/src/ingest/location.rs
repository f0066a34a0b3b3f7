//! Where an input's bytes live, and the two ways sources read them: as a (decompressed) text
//! stream, or with random access for the binary formats.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::Compression;
use crate::error::Problem;

/// An input file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Location {
    Local(PathBuf),
}

impl Location {
    /// The path messages name.
    pub(crate) fn shown_path(&self) -> &Path {
        match self {
            Location::Local(p) => p,
        }
    }

    pub(crate) fn io_problem(&self, e: &std::io::Error) -> Problem {
        Problem::new(format!("an unreadable file ({e})"), "a readable file")
            .file(self.shown_path())
            .hint("check the path and its permissions")
    }

    /// The raw bytes, from the start.
    pub(crate) fn open(&self) -> Result<File, Problem> {
        match self {
            Location::Local(p) => File::open(p).map_err(|e| self.io_problem(&e)),
        }
    }

    /// The first bytes (at most `n`), raw.
    pub(crate) fn head(&self, n: usize) -> Result<Vec<u8>, Problem> {
        let mut buf = Vec::with_capacity(n);
        self.open()?
            .take(n as u64)
            .read_to_end(&mut buf)
            .map_err(|e| self.io_problem(&e))?;
        Ok(buf)
    }

    /// The bytes as a buffered stream, decompressed.
    pub(crate) fn open_text(
        &self,
        compression: Option<Compression>,
    ) -> Result<Box<dyn BufRead + Send + '_>, Problem> {
        let file = self.open()?;
        Ok(match compression {
            None => Box::new(BufReader::with_capacity(1 << 20, file)),
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
