//! CSV with a header row. Every column is read as text and parsed by `canon`, so that a bad
//! value is reported with its row instead of an inference guess.

use std::sync::Arc;

use arrow::array::{Array, RecordBatch, StringArray};
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
        let mut records = 0;
        for batch in reader {
            let batch = batch.map_err(|e| file.problem(e))?;
            check_fields_utf8(&batch, records).map_err(|e| file.problem(e))?;
            records += batch.num_rows();
            sink(batch)?;
        }
        Ok(())
    }
}

/// arrow-csv checks that a batch's text *as a whole* is UTF-8, then cuts it into fields without
/// checking each field: a multi-byte character split by a delimiter (`\xe2\x86,\x92`) passes as
/// two fields that are not UTF-8 on their own. Such a field must be an input error, not a string
/// that breaks every later `&str` operation. `first` is the number of records before this batch.
fn check_fields_utf8(batch: &RecordBatch, first: usize) -> Result<(), String> {
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let Some(strings) = column.as_any().downcast_ref::<StringArray>() else {
            continue;
        };
        let data = strings.value_data();
        for (row, pair) in strings.value_offsets().windows(2).enumerate() {
            let bytes = &data[pair[0] as usize..pair[1] as usize];
            if std::str::from_utf8(bytes).is_err() {
                return Err(format!(
                    "Encountered invalid UTF-8 data for record {} and field {}",
                    first + row + 1,
                    field.name()
                ));
            }
        }
    }
    Ok(())
}
