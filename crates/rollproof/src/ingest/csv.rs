//! CSV with a header row. Every column is read as text and parsed by `canon`, so that a bad
//! value is reported with its row instead of an inference guess.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};

use super::source::{FileRef, Layout, Sink, Source};
use crate::error::{InputError, Problem};

pub(crate) struct Csv;
pub(crate) static CSV: Csv = Csv;

impl Source for Csv {
    fn name(&self) -> &'static str {
        "csv"
    }

    /// The fallback for text: anything that is not another format is read as CSV.
    fn sniff(&self, _head: &[u8]) -> bool {
        true
    }

    fn hint(&self) -> &'static str {
        "every row must have as many fields as the header"
    }

    fn inspect(&self, file: &FileRef<'_>) -> Result<Layout, Problem> {
        let (schema, _) = arrow::csv::reader::Format::default()
            .with_header(true)
            .infer_schema(file.open_text()?, Some(0))
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
            layout
                .columns
                .iter()
                .map(|name| Field::new(name, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let reader = arrow::csv::ReaderBuilder::new(schema)
            .with_header(true)
            .with_batch_size(file.batch_rows(layout.columns.len()))
            .with_projection(super::projection(&layout.columns, wanted))
            .build(file.open_text()?)
            .map_err(|e| file.problem(e))?;
        for batch in reader {
            sink(batch.map_err(|e| file.problem(e))?)?;
        }
        Ok(())
    }
}
