//! NDJSON: one JSON object a line. An absent key is null; dotted names such as
//! `http.response.status_code` are flat top-level keys. Every value is read as text and parsed by
//! `canon`.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};

use super::source::{FileRef, Layout, Sink, Source};
use crate::error::{InputError, Problem};

pub(crate) struct Ndjson;
pub(crate) static NDJSON: Ndjson = Ndjson;

impl Source for Ndjson {
    fn name(&self) -> &'static str {
        "ndjson"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["jsonl", "json"]
    }

    fn sniff(&self, head: &[u8]) -> bool {
        head.iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{')
    }

    fn hint(&self) -> &'static str {
        "every line must be one JSON object"
    }

    /// NDJSON has no header: a key is present when any line has it.
    fn inspect(&self, file: &FileRef<'_>) -> Result<Layout, Problem> {
        let (schema, _) = arrow::json::reader::infer_json_schema(
            super::lines::SkipBlank::new(file.open_text()?),
            None,
        )
        .map_err(|e| locate(file).unwrap_or_else(|| file.problem(e)))?;
        Ok(Layout {
            columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
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
        let schema = Arc::new(Schema::new(
            wanted
                .iter()
                .filter(|s| layout.columns.iter().any(|c| c == *s))
                .map(|name| Field::new(*name, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let reader = arrow::json::ReaderBuilder::new(schema)
            .with_batch_size(file.batch_rows(layout.columns.len()))
            .with_coerce_primitive(true)
            .build(super::lines::SkipBlank::new(file.open_text()?))
            .map_err(|e| file.problem(e))?;
        for batch in reader {
            sink(batch.map_err(|e| locate(file).unwrap_or_else(|| file.problem(e)))?)?;
        }
        Ok(())
    }
}

/// The first line that is not UTF-8 or not one JSON object, for a message with its real line
/// number (the JSON decoder reads ahead in blocks and cannot say which line failed). `None`
/// when every line is a JSON object (the error was about a value's type).
fn locate(file: &FileRef<'_>) -> Option<Problem> {
    use std::io::BufRead;
    let mut reader = file.open_text().ok()?;
    let mut line = Vec::new();
    for number in 1u64.. {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => return Some(file.problem(e)),
        }
        let problem = |found: String, hint: &str| {
            Some(
                Problem::new(found, "an ndjson file: one JSON object per line, in UTF-8")
                    .file(file.location.shown_path())
                    .location(format!("line {number}"))
                    .hint(hint),
            )
        };
        let text = match std::str::from_utf8(&line) {
            Ok(t) => t.trim(),
            Err(e) => {
                return problem(
                    format!(
                        "bytes that are not UTF-8 (at byte {} of the line)",
                        e.valid_up_to()
                    ),
                    "the file must be UTF-8 text; convert it (e.g. `iconv -f latin1 -t utf-8`)",
                )
            }
        };
        if text.is_empty() {
            continue;
        }
        if !text.starts_with('{') {
            return problem(
                format!("`{}`", crate::error::shown(text, 60)),
                "every line must be one JSON object; a JSON array can be turned into lines with `jq -c '.[]'`",
            );
        }
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
            return problem(
                format!("invalid JSON ({e})"),
                "every line must be one complete JSON object",
            );
        }
    }
    None
}
