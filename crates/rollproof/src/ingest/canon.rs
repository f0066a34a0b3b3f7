//! Source columns → canonical columns: one Arrow type per canonical column (see `Kind`).
//!
//! Conversions are strict: a value that does not parse is an input error naming the row. Strings
//! are never copied when they are already Utf8, Utf8View or Dictionary(Int32, Utf8).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Float64Array, Int64Array, Int64Builder,
    RecordBatch, StringArray,
};
use arrow::compute::{cast, filter};
use arrow::datatypes::{DataType, TimeUnit};

use crate::columns::{CanonBatch, Col, Kind};
use crate::error::Problem;
use crate::ingest::mapping::TableMapping;
use crate::time::{parse_rfc3339, MICROS_PER_MILLI};

/// Where a batch comes from, for error messages.
pub(crate) struct Origin<'a> {
    pub(crate) file: &'a std::path::Path,
    /// Data rows of this file before this batch.
    pub(crate) row_offset: u64,
}

/// The result of converting one batch.
pub(crate) struct Converted {
    pub(crate) batch: CanonBatch,
    /// Rows dropped because `ts` was missing.
    pub(crate) rejected_no_ts: u64,
}

/// Converts `batch` (source names) to canonical form. `columns` are the canonical columns wanted
/// (all present in the table); ones absent from this file become all-null columns.
pub(crate) fn convert(
    batch: &RecordBatch,
    columns: &[Col],
    mapping: &TableMapping,
    origin: &Origin<'_>,
) -> Result<Converted, Problem> {
    let ts_col = columns
        .iter()
        .copied()
        .find(|c| c.kind() == Kind::Time)
        .expect("ts is always wanted");
    let ts_source = batch
        .column_by_name(mapping.source(ts_col))
        .expect("plan checked that every file has ts");
    let ts = to_time(ts_source.as_ref(), origin, mapping.source(ts_col))?;
    let mut out = Vec::with_capacity(columns.len());
    for &col in columns {
        if col == ts_col {
            continue;
        }
        let source_name = mapping.source(col);
        let arr = match batch.column_by_name(source_name) {
            Some(arr) => convert_column(col, arr, mapping, origin, source_name)?,
            None => null_column(col, batch.num_rows()),
        };
        out.push((col, arr));
    }
    let rejected = ts.null_count() as u64;
    if rejected > 0 {
        let keep = BooleanArray::from_iter((0..ts.len()).map(|i| Some(ts.is_valid(i))));
        let ts = filter(&ts, &keep).expect("filter of equal lengths");
        let ts = ts
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("filter keeps the type")
            .clone();
        let out = out
            .into_iter()
            .map(|(c, a)| {
                (
                    c,
                    filter(a.as_ref(), &keep).expect("filter of equal lengths"),
                )
            })
            .collect();
        return Ok(Converted {
            batch: CanonBatch::new(ts, out),
            rejected_no_ts: rejected,
        });
    }
    Ok(Converted {
        batch: CanonBatch::new(ts, out),
        rejected_no_ts: 0,
    })
}

fn null_column(col: Col, len: usize) -> ArrayRef {
    match col.kind() {
        Kind::Str => Arc::new(StringArray::new_null(len)),
        Kind::Bool => Arc::new(BooleanArray::new_null(len)),
        Kind::Int | Kind::Time => Arc::new(Int64Array::new_null(len)),
        Kind::Float => Arc::new(Float64Array::new_null(len)),
    }
}

fn type_problem(col: Col, source_name: &str, found: &DataType, origin: &Origin<'_>) -> Problem {
    Problem::new(format!("type {found}"), col.kind().describe())
        .file(origin.file)
        .column(source_name)
        .canonical(col.name())
        .hint(format!(
            "`{}` must hold {}; fix the export or map another column in the mapping file",
            col.name(),
            col.kind().describe()
        ))
}

/// Source and canonical name of a column, for messages.
struct Label<'a> {
    source: &'a str,
    canonical: &'a str,
}

fn value_problem(
    label: &Label<'_>,
    row: usize,
    value: &str,
    expected: &str,
    origin: &Origin<'_>,
) -> Problem {
    let mut shown: String = value.chars().take(60).collect();
    if shown.len() < value.len() {
        shown.push('…');
    }
    Problem::new(format!("`{shown}`"), expected)
        .file(origin.file)
        .column(label.source)
        .canonical(label.canonical)
        .location(format!("row {}", origin.row_offset + row as u64 + 1))
        .hint("fix or drop the row in the export; rows are counted from 1, without a CSV header")
}

fn is_string_type(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// Reads any string layout as `(row, Option<&str>)` without copying, via a cast to Utf8 only for
/// the rare LargeUtf8 and dictionary cases.
fn as_plain_strings(arr: &dyn Array) -> StringArray {
    let plain = cast(arr, &DataType::Utf8).expect("string types cast to Utf8");
    plain
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8 gives StringArray")
        .clone()
}

/// The one string parser of ingest: every value of a string column through `parse`. A missing
/// value (null, empty or blank) is null; a value `parse` rejects is an input error naming its row.
fn parse_strings<T>(
    arr: &dyn Array,
    label: &Label<'_>,
    origin: &Origin<'_>,
    expected: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<Option<T>>, Problem> {
    let strings = as_plain_strings(arr);
    let mut out = Vec::with_capacity(strings.len());
    for i in 0..strings.len() {
        let s = if strings.is_null(i) {
            ""
        } else {
            strings.value(i).trim()
        };
        if s.is_empty() {
            out.push(None);
            continue;
        }
        match parse(s) {
            Some(v) => out.push(Some(v)),
            None => return Err(value_problem(label, i, s, expected, origin)),
        }
    }
    Ok(out)
}

fn is_string_like(dt: &DataType) -> bool {
    match dt {
        DataType::Dictionary(_, v) => is_string_type(v),
        other => is_string_type(other),
    }
}

fn convert_column(
    col: Col,
    arr: &ArrayRef,
    mapping: &TableMapping,
    origin: &Origin<'_>,
    source_name: &str,
) -> Result<ArrayRef, Problem> {
    let dt = arr.data_type();
    let label = Label {
        source: source_name,
        canonical: col.name(),
    };
    match col.kind() {
        Kind::Time => unreachable!("ts is converted by to_time"),
        Kind::Str => match dt {
            DataType::Utf8 | DataType::Utf8View => Ok(arr.clone()),
            DataType::Null => Ok(null_column(col, arr.len())),
            DataType::LargeUtf8 => Ok(cast(arr, &DataType::Utf8).expect("LargeUtf8 casts to Utf8")),
            DataType::Dictionary(_, v) if is_string_type(v) => {
                let want =
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
                if dt == &want {
                    Ok(arr.clone())
                } else {
                    cast(arr, &want).map_err(|_| type_problem(col, source_name, dt, origin))
                }
            }
            // Identifiers exported as integers are still identifiers: the cast is lossless.
            dt if dt.is_integer() => Ok(cast(arr, &DataType::Utf8).expect("integers cast to Utf8")),
            _ => Err(type_problem(col, source_name, dt, origin)),
        },
        Kind::Bool => match dt {
            DataType::Boolean => Ok(arr.clone()),
            DataType::Null => Ok(null_column(col, arr.len())),
            dt if dt.is_integer() => {
                let ints = cast(arr, &DataType::Int64).expect("integers cast to Int64");
                let ints = ints.as_any().downcast_ref::<Int64Array>().expect("Int64");
                let mut b = BooleanBuilder::with_capacity(ints.len());
                for (i, v) in ints.iter().enumerate() {
                    match v {
                        None => b.append_null(),
                        Some(0) => b.append_value(false),
                        Some(1) => b.append_value(true),
                        Some(other) => {
                            return Err(value_problem(
                                &label,
                                i,
                                &other.to_string(),
                                "a boolean (0 or 1)",
                                origin,
                            ))
                        }
                    }
                }
                Ok(Arc::new(b.finish()))
            }
            dt if is_string_like(dt) => {
                let values = parse_strings(
                    arr.as_ref(),
                    &label,
                    origin,
                    "a boolean (`true` or `false`)",
                    |s| match s.to_ascii_lowercase().as_str() {
                        "true" | "t" | "1" | "yes" => Some(true),
                        "false" | "f" | "0" | "no" => Some(false),
                        _ => None,
                    },
                )?;
                Ok(Arc::new(BooleanArray::from(values)))
            }
            _ => Err(type_problem(col, source_name, dt, origin)),
        },
        Kind::Int => match dt {
            DataType::Int64 => Ok(arr.clone()),
            DataType::Null => Ok(null_column(col, arr.len())),
            dt if dt.is_integer() => {
                cast(arr, &DataType::Int64).map_err(|_| type_problem(col, source_name, dt, origin))
            }
            dt if dt.is_floating() => {
                let floats = cast(arr, &DataType::Float64).expect("floats cast to Float64");
                let floats = floats
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .expect("Float64");
                let mut b = Int64Builder::with_capacity(floats.len());
                for (i, v) in floats.iter().enumerate() {
                    match v {
                        None => b.append_null(),
                        Some(f) if f.fract() == 0.0 && f.abs() < 9e15 => b.append_value(f as i64),
                        Some(f) => {
                            return Err(value_problem(
                                &label,
                                i,
                                &f.to_string(),
                                "an integer",
                                origin,
                            ))
                        }
                    }
                }
                Ok(Arc::new(b.finish()))
            }
            dt if is_string_like(dt) => {
                let values = parse_strings(arr.as_ref(), &label, origin, "an integer", |s| {
                    s.parse().ok()
                })?;
                Ok(Arc::new(Int64Array::from(values)))
            }
            _ => Err(type_problem(col, source_name, dt, origin)),
        },
        Kind::Float => {
            let factor = mapping
                .unit(col)
                .map(|u| u.to_millis_factor())
                .unwrap_or(1.0);
            let floats: Float64Array = match dt {
                DataType::Float64 => arr
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .expect("Float64")
                    .clone(),
                DataType::Null => Float64Array::new_null(arr.len()),
                dt if dt.is_numeric() => {
                    let c = cast(arr, &DataType::Float64)
                        .map_err(|_| type_problem(col, source_name, dt, origin))?;
                    c.as_any()
                        .downcast_ref::<Float64Array>()
                        .expect("Float64")
                        .clone()
                }
                dt if is_string_like(dt) => Float64Array::from(parse_strings(
                    arr.as_ref(),
                    &label,
                    origin,
                    "a number",
                    |s| s.parse().ok(),
                )?),
                _ => return Err(type_problem(col, source_name, dt, origin)),
            };
            if let Some(i) =
                (0..floats.len()).find(|&i| floats.is_valid(i) && !floats.value(i).is_finite())
            {
                return Err(value_problem(
                    &label,
                    i,
                    &floats.value(i).to_string(),
                    "a finite number",
                    origin,
                ));
            }
            if factor != 1.0 {
                let scaled: Float64Array = floats.unary(|v| v * factor);
                return Ok(Arc::new(scaled));
            }
            Ok(Arc::new(floats))
        }
    }
}

/// Converts a timestamp column to Int64 epoch microseconds; nulls stay null (rejected later).
fn to_time(arr: &dyn Array, origin: &Origin<'_>, source_name: &str) -> Result<Int64Array, Problem> {
    let label = Label {
        source: source_name,
        canonical: "ts",
    };
    match arr.data_type() {
        DataType::Timestamp(unit, _) => {
            let raw = cast(arr, &DataType::Int64).expect("timestamps cast to Int64");
            let raw = raw.as_any().downcast_ref::<Int64Array>().expect("Int64");
            let micros: Int64Array = match unit {
                TimeUnit::Second => raw.unary(|v| v.saturating_mul(1_000_000)),
                TimeUnit::Millisecond => raw.unary(|v| v.saturating_mul(1_000)),
                TimeUnit::Microsecond => raw.clone(),
                TimeUnit::Nanosecond => raw.unary(|v| v.div_euclid(1_000)),
            };
            Ok(micros)
        }
        dt if dt.is_integer() => {
            let raw = cast(arr, &DataType::Int64).expect("integers cast to Int64");
            let raw = raw.as_any().downcast_ref::<Int64Array>().expect("Int64");
            Ok(raw.unary(|v| v.saturating_mul(MICROS_PER_MILLI)))
        }
        dt if is_string_like(dt) => Ok(Int64Array::from(parse_strings(
            arr,
            &label,
            origin,
            "an RFC 3339 time with a zone (e.g. `2026-11-27T10:15:00Z`) or integer epoch milliseconds",
            |s| {
                if s.bytes().all(|c| c.is_ascii_digit()) {
                    s.parse::<i64>()
                        .ok()
                        .map(|ms| ms.saturating_mul(MICROS_PER_MILLI))
                } else {
                    parse_rfc3339(s)
                }
            },
        )?)),
        DataType::Null => Ok(Int64Array::new_null(arr.len())),
        dt => Err(Problem::new(format!("type {dt}"), Kind::Time.describe())
            .file(origin.file)
            .column(label.source)
            .canonical("ts")
            .hint("export `ts` as a timestamp, an RFC 3339 string or epoch milliseconds")),
    }
}
