//! Typed errors at the input boundary: "your input is wrong" (exit 2), as opposed to bugs.
//!
//! Every problem names the file, the column (or key), what was found, what was expected and a
//! hint. Problems are collected so that one bad file does not hide the others.

use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong with the user's input: a file, a column, a value, an incident key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: Option<PathBuf>,
    /// Column (for tables) or key (for TOML files).
    pub column: Option<String>,
    /// The canonical column a mapped source column stands for.
    pub canonical: Option<String>,
    /// Row number (1-based, data rows) or other location, when known.
    pub location: Option<String>,
    pub found: String,
    pub expected: String,
    pub hint: String,
}

impl Problem {
    pub fn new(found: impl Into<String>, expected: impl Into<String>) -> Problem {
        Problem {
            file: None,
            column: None,
            canonical: None,
            location: None,
            found: found.into(),
            expected: expected.into(),
            hint: String::new(),
        }
    }
    pub(crate) fn file(mut self, file: &Path) -> Problem {
        self.file = Some(file.to_path_buf());
        self
    }
    pub(crate) fn column(mut self, column: impl Into<String>) -> Problem {
        self.column = Some(column.into());
        self
    }
    pub(crate) fn canonical(mut self, canonical: impl Into<String>) -> Problem {
        self.canonical = Some(canonical.into());
        self
    }
    pub(crate) fn location(mut self, location: impl Into<String>) -> Problem {
        self.location = Some(location.into());
        self
    }
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Problem {
        self.hint = hint.into();
        self
    }
}

/// Bytes of one part of a message echoed at most (file names, columns, values).
const SHOWN_PART: usize = 300;
/// Bytes of the expected text and the hint at most (they may list columns).
const SHOWN_TEXT: usize = 2000;

impl fmt::Display for Problem {
    /// Every part goes through the escaping policy: log text cannot inject into a terminal or a
    /// CI log, and a huge value is shown capped with its length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::escape::shown;
        let mut place = Vec::new();
        if let Some(file) = &self.file {
            place.push(format!(
                "`{}`",
                shown(&file.display().to_string(), SHOWN_PART)
            ));
        }
        match (&self.column, &self.canonical) {
            (Some(column), Some(canonical)) if column != canonical => place.push(format!(
                "column `{}` (canonical `{canonical}`)",
                shown(column, SHOWN_PART)
            )),
            (Some(column), _) => place.push(format!("column `{}`", shown(column, SHOWN_PART))),
            (None, _) => {}
        }
        if let Some(location) = &self.location {
            place.push(shown(location, SHOWN_PART));
        }
        let found = shown(&self.found, SHOWN_TEXT);
        let expected = shown(&self.expected, SHOWN_TEXT);
        if place.is_empty() {
            write!(f, "found {found}, expected {expected}")?;
        } else {
            write!(
                f,
                "{}: found {found}, expected {expected}",
                place.join(", ")
            )?;
        }
        if !self.hint.is_empty() {
            write!(f, "\n  hint: {}", shown(&self.hint, SHOWN_TEXT))?;
        }
        Ok(())
    }
}

/// The input cannot be audited as given. Maps to exit code 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InputError {
    pub problems: Vec<Problem>,
}

impl InputError {
    pub(crate) fn one(problem: Problem) -> InputError {
        InputError {
            problems: vec![problem],
        }
    }
}

impl From<Problem> for InputError {
    fn from(problem: Problem) -> InputError {
        InputError::one(problem)
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// A value from the input as a message shows it: at most `max` characters, with `…` when cut.
pub(crate) fn shown(value: &str, max: usize) -> String {
    let mut shown: String = value.chars().take(max).collect();
    if shown.len() < value.len() {
        shown.push_str(&format!("… ({} bytes)", value.len()));
    }
    crate::escape::neutral(&shown).into_owned()
}

/// An I/O error as a short reason, without the OS error number.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    }
}

/// What a path is, when it is not a regular file.
pub(crate) fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// The candidate closest to `name`, for a "did you mean" hint: case, `_`, `-`, `.` and spaces
/// are ignored (`PromptVer` is `prompt_ver`), then the edit distance must be small.
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    fn norm(s: &str) -> Vec<char> {
        s.chars()
            .filter(|c| !matches!(c, '_' | '-' | '.' | ' '))
            .flat_map(char::to_lowercase)
            .collect()
    }
    /// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
    /// neighbours (`titel` → `title`) cost 1.
    fn distance(a: &[char], b: &[char]) -> usize {
        let (n, m) = (a.len(), b.len());
        let mut d = vec![vec![0usize; m + 1]; n + 1];
        for (i, row) in d.iter_mut().enumerate() {
            row[0] = i;
        }
        for j in 0..=m {
            d[0][j] = j;
        }
        for i in 1..=n {
            for j in 1..=m {
                let cost = (a[i - 1] != b[j - 1]) as usize;
                d[i][j] = (d[i - 1][j] + 1)
                    .min(d[i][j - 1] + 1)
                    .min(d[i - 1][j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
                }
            }
        }
        d[n][m]
    }
    let target = norm(name);
    if target.is_empty() || target.len() > 200 {
        return None;
    }
    let candidates: Vec<&str> = candidates.into_iter().collect();
    let by_distance = candidates
        .iter()
        .map(|c| (distance(&target, &norm(c)), *c))
        .filter(|(d, c)| *d <= (norm(c).len() / 3).max(1))
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c);
    // Else the one candidate sharing a prefix of 4 or more with the name (`flip_time` → `flip_at`).
    by_distance.or_else(|| {
        let shared = |c: &str| {
            target
                .iter()
                .zip(norm(c))
                .take_while(|(a, b)| **a == *b)
                .count()
        };
        let best = candidates
            .iter()
            .map(|c| shared(c))
            .max()
            .filter(|n| *n >= 4)?;
        let mut with_best = candidates.iter().filter(|c| shared(c) == best);
        let first = with_best.next()?;
        with_best.next().is_none().then_some(*first)
    })
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn did_you_mean() {
        let pins = ["build_id", "prompt_ver", "index_hash"];
        assert_eq!(closest("PromptVer", pins), Some("prompt_ver"));
        assert_eq!(closest("prompt-version", pins), Some("prompt_ver"));
        assert_eq!(closest("indexhash", pins), Some("index_hash"));
        assert_eq!(
            closest("flip_time", ["flip_at", "id", "title"]),
            Some("flip_at")
        );
        assert_eq!(
            closest("cache_thing", ["cache_ns", "cache_hit"]),
            None,
            "two share the prefix"
        );
        assert_eq!(closest("flipat", ["flip_at", "id"]), Some("flip_at"));
        assert_eq!(closest("bulid_id", pins), Some("build_id"));
        assert_eq!(closest("zzz", pins), None);
        assert_eq!(closest("titel", ["mode", "id", "title"]), Some("title"));
    }
}
