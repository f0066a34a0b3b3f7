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

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut place = Vec::new();
        if let Some(file) = &self.file {
            place.push(format!("`{}`", file.display()));
        }
        match (&self.column, &self.canonical) {
            (Some(column), Some(canonical)) if column != canonical => {
                place.push(format!("column `{column}` (canonical `{canonical}`)"))
            }
            (Some(column), _) => place.push(format!("column `{column}`")),
            (None, _) => {}
        }
        if let Some(location) = &self.location {
            place.push(location.clone());
        }
        if place.is_empty() {
            write!(f, "found {}, expected {}", self.found, self.expected)?;
        } else {
            write!(
                f,
                "{}: found {}, expected {}",
                place.join(", "),
                self.found,
                self.expected
            )?;
        }
        if !self.hint.is_empty() {
            write!(f, "\n  hint: {}", self.hint)?;
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
