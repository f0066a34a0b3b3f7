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
        if let Location::Remote(r) = file.location {
            // Ranged requests: only the projected column chunks of this row group.
            let builder =
                ParquetRecordBatchStreamBuilder::new_with_metadata(r.parquet_reader(), meta);
            let mask = ProjectionMask::roots(builder.parquet_schema(), projection);
            let mut builder = builder.with_projection(mask).with_batch_size(BATCH_ROWS);
            if let Some(rg) = row_group {
                builder = builder.with_row_groups(vec![rg]);
            }
            let mut stream = builder.build().map_err(|e| file.problem(e))?;
            return block_on(async {
                while let Some(batch) = stream.next().await {
                    sink(batch.map_err(|e| file.problem(e))?)?;
                }
                Ok(())
            });
        }
        let builder =
            ParquetRecordBatchReaderBuilder::new_with_metadata(file.location.open()?, meta);
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
