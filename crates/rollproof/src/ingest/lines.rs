//! A bound on line length for text inputs: a reader that fails once a line grows past the limit,
//! so that one endless line (a corrupt file, or a small compressed file that expands to
//! gigabytes without a newline) ends in an input error naming the line, not in an out-of-memory
//! abort inside a parser that buffers the line.

use std::io::{BufRead, Read};

/// The longest line of CSV or NDJSON rollproof reads.
pub(crate) const MAX_LINE_BYTES: u64 = 16 << 20;

/// The marker of the error this reader returns, recognised when the error comes back wrapped by
/// a parser.
pub(crate) const TOO_LONG: &str = "is longer than";

pub(crate) struct LineGuard<R> {
    inner: R,
    max: u64,
    /// Lines completed so far, and bytes since the last newline.
    lines: u64,
    current: u64,
}

impl<R: BufRead> LineGuard<R> {
    pub(crate) fn new(inner: R, max: u64) -> LineGuard<R> {
        LineGuard {
            inner,
            max,
            lines: 0,
            current: 0,
        }
    }

    fn too_long(&self) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("line {} {TOO_LONG} {} MiB", self.lines + 1, self.max >> 20),
        )
    }
}

/// `Read` in terms of the reader's own `BufRead` (which does the guarding or skipping).
fn read_through_buffer(r: &mut impl BufRead, buf: &mut [u8]) -> std::io::Result<usize> {
    let available = r.fill_buf()?;
    let n = available.len().min(buf.len());
    buf[..n].copy_from_slice(&available[..n]);
    r.consume(n);
    Ok(n)
}

impl<R: BufRead> Read for LineGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        read_through_buffer(self, buf)
    }
}

impl<R: BufRead> BufRead for LineGuard<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.current > self.max {
            return Err(self.too_long());
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        if let Ok(buf) = self.inner.fill_buf() {
            // Vectorised searches: a byte-at-a-time scan here was 4% of reading an OTLP file.
            let seen = &buf[..amt.min(buf.len())];
            match memchr::memrchr(b'\n', seen) {
                Some(last) => {
                    self.lines += memchr::memchr_iter(b'\n', seen).count() as u64;
                    self.current = (seen.len() - last - 1) as u64;
                }
                None => self.current += seen.len() as u64,
            }
        }
        self.inner.consume(amt);
    }
}

/// Skips whitespace between JSON values in bulk: a file of blank lines (a few KiB compressed can
/// be gigabytes of newlines) costs a scan, not a parser's work per byte.
pub(crate) struct SkipBlank<R> {
    inner: R,
}

impl<R: BufRead> SkipBlank<R> {
    pub(crate) fn new(inner: R) -> SkipBlank<R> {
        SkipBlank { inner }
    }
}

impl<R: BufRead> Read for SkipBlank<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        read_through_buffer(self, buf)
    }
}

impl<R: BufRead> BufRead for SkipBlank<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            match buf.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(0) => break,
                Some(n) => {
                    self.inner.consume(n);
                    break;
                }
                None => {
                    let n = buf.len();
                    self.inner.consume(n);
                }
            }
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_past_the_limit_is_an_error_naming_it() {
        let text = format!("a,b\n1,2\n{}\n", "x".repeat(100));
        let mut guard = LineGuard::new(std::io::BufReader::with_capacity(8, text.as_bytes()), 64);
        let mut out = Vec::new();
        let err = guard.read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("line 3 is longer than"), "{err}");
        let mut ok = LineGuard::new(std::io::BufReader::new("a\nb\n".as_bytes()), 64);
        let mut out = String::new();
        ok.read_to_string(&mut out).unwrap();
        assert_eq!(out, "a\nb\n");
    }

    #[test]
    fn blank_runs_are_skipped_whole() {
        let text = format!("\n\n  {{\"a\": 1}}{}{{\"b\": 2}}\n\n", "\n".repeat(1000));
        let mut out = String::new();
        SkipBlank::new(std::io::BufReader::with_capacity(16, text.as_bytes()))
            .read_to_string(&mut out)
            .unwrap();
        let strip = |s: &str| s.split_whitespace().collect::<String>();
        assert_eq!(strip(&out), strip(&text), "only whitespace is dropped");
        assert!(out.len() < 40, "the blank run is skipped: {out:?}");
    }
}
