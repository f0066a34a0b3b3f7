//! Parquet: the unit of work is a row group; the footer is read once, when the file is planned.
//! An object in a store is read with ranged requests: the footer, then only the projected column
//! chunks of each row group read.

use std::sync::Arc;

use futures::StreamExt;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};

use super::location::Location;
use super::parquet_pages;
use super::remote::block_on;
use super::source::{FileRef, Layout, Sink, Source};
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
        let meta = match file.location {
            Location::Remote(r) => block_on(ArrowReaderMetadata::load_async(
                &mut r.parquet_reader(),
                ArrowReaderOptions::new(),
            )),
            Location::Local(_) => {
                ArrowReaderMetadata::load(&file.location.open()?, ArrowReaderOptions::new())
            }
        }
        .map_err(|e| file.problem(e))?;
        Ok(Layout {
            columns: meta
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
            row_groups: meta
                .metadata()
                .row_groups()
                .iter()
                .map(|rg| rg.num_rows().max(0) as u64)
                .collect(),
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
        let chunks_of =
            |rg: usize| parquet_pages::chunks(meta.metadata().row_group(rg), &projection);
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
            let mask = ProjectionMask::roots(builder.parquet_schema(), projection);
            let mut builder = builder.with_projection(mask).with_batch_size(BATCH_ROWS);
            if let Some(rg) = row_group {
                builder = builder.with_row_groups(vec![rg]);
            }
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
        let mask = ProjectionMask::roots(builder.parquet_schema(), projection);
        let mut builder = builder.with_projection(mask).with_batch_size(BATCH_ROWS);
        if let Some(rg) = row_group {
            builder = builder.with_row_groups(vec![rg]);
        }
        for batch in builder.build().map_err(|e| file.problem(e))? {
            sink(batch.map_err(|e| file.problem(e))?)?;
        }
        Ok(())
    }
}
