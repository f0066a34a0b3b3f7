//! Parquet: the unit of work is a row group; the footer is read once, when the file is planned.
//! An object in a store is read with ranged requests: the footer, then only the projected column
//! chunks of each row group read.

use std::sync::Arc;

use futures::StreamExt;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderBuilder, ArrowReaderMetadata, ArrowReaderOptions,
    ParquetRecordBatchReaderBuilder, RowFilter,
};
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};

use super::location::Location;
use super::parquet_pages;
use super::remote::block_on;
use super::source::{FileRef, Layout, Sink, Source, SourceFilter};
use super::BATCH_ROWS;
use crate::error::{InputError, Problem};

pub(crate) struct Parquet;
pub(crate) static PARQUET: Parquet = Parquet;

impl Source for Parquet {
    fn name(&self) -> &'static str {
        "parquet"
    }

    fn sniff(&self, head: &[u8]) -> bool {
        head.starts_with(b"PAR1")
    }

    fn binary(&self) -> bool {
        true
    }

    fn hint(&self) -> &'static str {
        "the file may be truncated or not Parquet; re-export it"
    }

    fn inspect(&self, file: &FileRef<'_>) -> Result<Layout, Problem> {
        // The footer, and the file's size to weigh the rows it declares against.
        let (meta, size) = match file.location {
            Location::Remote(r) => (
                block_on(ArrowReaderMetadata::load_async(
                    &mut r.parquet_reader(),
                    ArrowReaderOptions::new(),
                )),
                r.meta.size,
            ),
            Location::Local(_) => {
                let local = file.location.open()?;
                let size = local
                    .metadata()
                    .map_err(|e| file.location.io_problem(&e))?
                    .len();
                (
                    ArrowReaderMetadata::load(&local, ArrowReaderOptions::new()),
                    size,
                )
            }
        };
        let meta = meta.map_err(|e| file.problem(e))?;
        let row_groups: Vec<u64> = meta
            .metadata()
            .row_groups()
            .iter()
            .map(|rg| rg.num_rows().max(0) as u64)
            .collect();
        check_rows_per_byte(&row_groups, size).map_err(|p| {
            p.file(file.location.shown_path())
                .hint("the file is corrupt or was written to exhaust time; re-export it")
        })?;
        let meta = dictionary_hint(meta);
        Ok(Layout {
            columns: meta
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
            row_groups,
            detail: Some(Arc::new(meta)),
        })
    }

    fn read(
        &self,
        file: &FileRef<'_>,
        layout: &Layout,
        row_group: Option<usize>,
        wanted: &[&str],
        sink: &mut Sink<'_>,
    ) -> Result<(), InputError> {
        read(file, layout, row_group, wanted, None, sink)
    }

    /// Through a Parquet `RowFilter`: the filter's columns are decoded first, and the other
    /// columns' pages only where a row passes (whole pages of rows that fail are skipped
    /// undecompressed).
    fn read_filtered(
        &self,
        file: &FileRef<'_>,
        layout: &Layout,
        row_group: Option<usize>,
        wanted: &[&str],
        filter: &SourceFilter,
        sink: &mut Sink<'_>,
    ) -> Result<(), InputError> {
        read(file, layout, row_group, wanted, Some(filter), sink)
    }
}

/// The builder of a reader of `row_group` (every row group when `None`), projected to
/// `projection`, filtered by `filter`.
fn configure<T>(
    builder: ArrowReaderBuilder<T>,
    layout: &Layout,
    projection: Vec<usize>,
    row_group: Option<usize>,
    filter: Option<&SourceFilter>,
) -> ArrowReaderBuilder<T> {
    let mask = ProjectionMask::roots(builder.parquet_schema(), projection);
    let mut builder = builder.with_projection(mask).with_batch_size(BATCH_ROWS);
    if let Some(rg) = row_group {
        builder = builder.with_row_groups(vec![rg]);
    }
    if let Some(filter) = filter {
        let names: Vec<&str> = filter.columns.iter().map(String::as_str).collect();
        let mask = ProjectionMask::roots(
            builder.parquet_schema(),
            super::projection(&layout.columns, &names),
        );
        let test = filter.test.clone();
        let predicate = ArrowPredicateFn::new(mask, move |batch| Ok(test(&batch)));
        builder = builder.with_row_filter(RowFilter::new(vec![Box::new(predicate)]));
    }
    builder
}

fn read(
    file: &FileRef<'_>,
    layout: &Layout,
    row_group: Option<usize>,
    wanted: &[&str],
    filter: Option<&SourceFilter>,
    sink: &mut Sink<'_>,
) -> Result<(), InputError> {
    let meta = layout
        .detail
        .as_ref()
        .and_then(|d| d.downcast_ref::<ArrowReaderMetadata>())
        .expect("inspect keeps the Parquet footer")
        .clone();
    let projection = super::projection(&layout.columns, wanted);
    // The page headers of every chunk about to be decoded are checked first (locally) or
    // as they are fetched (objects): a header decides what the decoder allocates.
    let row_groups: Vec<usize> = match row_group {
        Some(rg) => vec![rg],
        None => (0..meta.metadata().num_row_groups()).collect(),
    };
    let chunks_of = |rg: usize| parquet_pages::chunks(meta.metadata().row_group(rg), &projection);
    let refused = |rg: usize, (column, reason): (String, String)| -> InputError {
        Problem::new(reason, "page headers that fit the data and the limits")
            .file(file.location.shown_path())
            .column(column)
            .location(format!("row group {rg}"))
            .hint("the file is corrupt or was written to exhaust memory; re-export it (pages up to 128 MiB, dictionaries up to 16M values)")
            .into()
    };
    if let Location::Remote(r) = file.location {
        // Ranged requests: only the projected column chunks of this row group.
        let mut reader = r.parquet_reader();
        reader.checked = row_groups.iter().flat_map(|&rg| chunks_of(rg)).collect();
        let refusal = reader.refused.clone();
        let taken = |rg: usize| {
            refusal
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .map(|r| refused(rg, r))
        };
        let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta.clone());
        let builder = configure(builder, layout, projection, row_group, filter);
        let mut stream = builder.build().map_err(|e| file.problem(e))?;
        return block_on(async {
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(|e| match taken(row_groups[0]) {
                    Some(problem) => problem,
                    None => file.problem(e).into(),
                })?;
                sink(batch)?;
            }
            Ok(())
        });
    }
    let local = file.location.open()?;
    for &rg in &row_groups {
        parquet_pages::check_unit(&chunks_of(rg), |at| {
            parquet_pages::header_at_file(&local, at)
        })
        .map_err(|r| refused(rg, r))?;
    }
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(local, meta);
    let builder = configure(builder, layout, projection, row_group, filter);
    for batch in builder.build().map_err(|e| file.problem(e))? {
        sink(batch.map_err(|e| file.problem(e))?)?;
    }
    Ok(())
}

/// The most rows a Parquet file may declare per byte of file. Run-length encoding lets a page of
/// a few bytes claim two billion values, and decoding them takes minutes however few bytes they
/// came from. A request log cannot be that small, because its ids are distinct per row: a million
/// rows with sequential ids and every other column constant, zstd-compressed, is 1.4 rows per byte
/// (the test below), so the limit leaves a margin of more than 40.
pub(crate) const MAX_ROWS_PER_BYTE: u64 = 64;

/// Refuses a footer whose row groups (`row_groups`: rows of each) declare more rows than
/// [`MAX_ROWS_PER_BYTE`] allows for the file's size.
fn check_rows_per_byte(row_groups: &[u64], size: u64) -> Result<(), Problem> {
    let rows = row_groups.iter().fold(0u64, |n, r| n.saturating_add(*r));
    let limit = size.saturating_mul(MAX_ROWS_PER_BYTE);
    if rows > limit {
        return Err(Problem::new(
            format!("a footer declaring {rows} rows in a file of {size} bytes"),
            format!("at most {MAX_ROWS_PER_BYTE} rows per byte of file ({limit} rows)"),
        ));
    }
    Ok(())
}

/// Whether every data page of a column chunk is dictionary-encoded (the footer's encoding mask).
fn all_dictionary(chunk: &parquet::file::metadata::ColumnChunkMetaData) -> bool {
    use parquet::basic::Encoding;
    chunk.dictionary_page_offset().is_some()
        && chunk.page_encoding_stats_mask().is_some_and(|mask| {
            mask.is_only(Encoding::PLAIN_DICTIONARY) || mask.is_only(Encoding::RLE_DICTIONARY)
        })
}

/// Reads string columns that are dictionary-encoded in every row group as Arrow dictionaries
/// (`Dictionary(Int32, Utf8)`): the decoder then keeps the file's dictionary instead of
/// materialising one string per row, and the checks evaluate once per distinct value. Chosen from
/// the footer, not by name: a high-cardinality id whose writer fell back to plain pages stays
/// plain. Files written from Arrow dictionaries (with their Arrow schema) already read this way;
/// files from Spark, Hive or DuckDB carry no Arrow schema and would otherwise decode to one
/// string per row. The metadata is returned unchanged when no column qualifies.
fn dictionary_hint(meta: ArrowReaderMetadata) -> ArrowReaderMetadata {
    use arrow::datatypes::{DataType, Field, Schema};
    let parquet_meta = meta.metadata();
    let schema_descr = parquet_meta.file_metadata().schema_descr();
    if parquet_meta.num_row_groups() == 0 {
        return meta;
    }
    let mut changed = false;
    let fields: Vec<Arc<Field>> = meta
        .schema()
        .fields()
        .iter()
        .map(|f| {
            // A top-level string column is one leaf; find it by name among the leaves.
            let leaf = (f.data_type() == &DataType::Utf8)
                .then(|| {
                    (0..schema_descr.num_columns()).find(|&i| {
                        let c = schema_descr.column(i);
                        c.path().parts().len() == 1 && c.name() == f.name()
                    })
                })
                .flatten();
            let dictionary = leaf.is_some_and(|i| {
                parquet_meta
                    .row_groups()
                    .iter()
                    .all(|rg| all_dictionary(rg.column(i)))
            });
            if dictionary {
                changed = true;
                Arc::new(f.as_ref().clone().with_data_type(DataType::Dictionary(
                    Box::new(DataType::Int32),
                    Box::new(DataType::Utf8),
                )))
            } else {
                f.clone()
            }
        })
        .collect();
    if !changed {
        return meta;
    }
    let schema = Arc::new(Schema::new_with_metadata(
        fields,
        meta.schema().metadata().clone(),
    ));
    ArrowReaderMetadata::try_new(
        parquet_meta.clone(),
        ArrowReaderOptions::new().with_schema(schema),
    )
    .unwrap_or(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::arrow_writer::{ArrowWriter, ArrowWriterOptions};
    use parquet::file::properties::WriterProperties;
    use parquet::schema::types::ColumnPath;

    #[test]
    fn dictionary_columns_are_chosen_from_the_footer() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("region", DataType::Utf8, false),
            Field::new("request_id", DataType::Utf8, false),
        ]));
        let region = StringArray::from_iter_values((0..1000).map(|i| ["eu", "us"][i % 2]));
        let ids = StringArray::from_iter_values((0..1000).map(|i| format!("r-{i}")));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(region), Arc::new(ids)]).unwrap();
        let mut bytes = Vec::new();
        // No Arrow schema in the file (as Spark writes it); request_id in plain pages.
        let props = WriterProperties::builder()
            .set_column_dictionary_enabled(ColumnPath::from("request_id"), false)
            .build();
        let options = ArrowWriterOptions::new()
            .with_skip_arrow_metadata(true)
            .with_properties(props);
        let mut w = ArrowWriter::try_new_with_options(&mut bytes, schema, options).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let bytes = bytes::Bytes::from(bytes);
        let meta = ArrowReaderMetadata::load(&bytes, ArrowReaderOptions::new()).unwrap();
        assert_eq!(meta.schema().field(0).data_type(), &DataType::Utf8);
        let hinted = dictionary_hint(meta);
        assert_eq!(
            hinted.schema().field(0).data_type(),
            &DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
        );
        assert_eq!(hinted.schema().field(1).data_type(), &DataType::Utf8);
        // And the file reads through the hinted schema.
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, hinted)
            .build()
            .unwrap();
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 1000);
    }

    /// The densest a request log gets: a million rows whose ids are sequential and every other
    /// column constant, zstd-compressed. Its footer passes; the same footer in a file a
    /// hundredth the size (as a hostile file's run-length-encoded pages would be) does not.
    #[test]
    fn a_footer_may_declare_only_so_many_rows_per_byte() {
        use arrow::array::Int64Array;
        use parquet::basic::{Compression, ZstdLevel};
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Int64, false),
            Field::new("request_id", DataType::Utf8, false),
            Field::new("status", DataType::Int64, false),
            Field::new("build_id", DataType::Utf8, false),
        ]));
        let mut bytes = Vec::new();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(9).unwrap()))
            .build();
        let mut w = ArrowWriter::try_new(&mut bytes, schema.clone(), Some(props)).unwrap();
        for part in 0..10i64 {
            let rows = (0..100_000i64).map(|i| part * 100_000 + i);
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(
                        rows.clone().map(|_| 1_700_000_000_000),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        rows.map(|i| format!("r-{i:08}")),
                    )),
                    Arc::new(Int64Array::from_iter_values((0..100_000).map(|_| 200))),
                    Arc::new(StringArray::from_iter_values((0..100_000).map(|_| "b-1"))),
                ],
            )
            .unwrap();
            w.write(&batch).unwrap();
        }
        w.close().unwrap();
        let size = bytes.len() as u64;
        let bytes = bytes::Bytes::from(bytes);
        let meta = ArrowReaderMetadata::load(&bytes, ArrowReaderOptions::new()).unwrap();
        let row_groups: Vec<u64> = meta
            .metadata()
            .row_groups()
            .iter()
            .map(|rg| rg.num_rows() as u64)
            .collect();
        let density = 1_000_000 / size;
        assert!(density <= 2, "{density} rows per byte");
        check_rows_per_byte(&row_groups, size).unwrap();
        let refused = check_rows_per_byte(&row_groups, size / 100).unwrap_err();
        assert_eq!(
            refused.found,
            format!(
                "a footer declaring 1000000 rows in a file of {} bytes",
                size / 100
            )
        );
    }
}
