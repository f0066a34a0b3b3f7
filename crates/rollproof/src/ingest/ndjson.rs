//! NDJSON: one JSON object a line. An absent key is null; dotted names such as
//! `http.response.status_code` are flat top-level keys. Every value is read as text and parsed by
//! `canon`.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};

use super::source::{FileRef, Layout, Sink, Source};
use super::BATCH_ROWS;
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
        let (schema, _) = arrow::json::reader::infer_json_schema(file.open_text()?, None)
            .map_err(|e| file.problem(e))?;
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
            .with_batch_size(BATCH_ROWS)
            .with_coerce_primitive(true)
            .build(file.open_text()?)
            .map_err(|e| file.problem(e))?;
        for batch in reader {
            sink(batch.map_err(|e| file.problem(e))?)?;
        }
        Ok(())
    }
}
