//! Source columns → canonical columns: one Arrow type per canonical column (see `Kind`).
//!
//! Conversions are strict: a value that does not parse is an input error naming the row, and the
//! first bad value of every column of a batch is reported (not only the first column's). Strings
//! are never copied when they are already Utf8, Utf8View or Dictionary(Int32, Utf8). What the
//! mapping says is applied here: units, `pick` for lists of numbers, null tokens, and rows left
//! out by `drop_if_missing` (counted).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, DictionaryArray, Float64Array, Int64Array,
    Int64Builder, RecordBatch, StringArray,
};
use arrow::buffer::ScalarBuffer;
use arrow::compute::{cast, filter, filter_record_batch, nullif};
use arrow::datatypes::{DataType, Int32Type, TimeUnit};

use crate::columns::{CanonBatch, Col, Kind};
use crate::error::{InputError, Problem};
use crate::ingest::mapping::{Pick, TableMapping, Unit};
use crate::time::{parse_rfc3339, Micros, TIME_LIMIT};

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
    /// Rows left out by the mapping's `drop_if_missing`.
    pub(crate) dropped: u64,
}

/// Converts `batch` (source names) to canonical form. `columns` are the canonical columns wanted
/// (all present in the table); ones absent from this file become all-null columns.
pub(crate) fn convert(
    batch: &RecordBatch,
    columns: &[Col],
    mapping: &TableMapping,
    origin: &Origin<'_>,
) -> Result<Converted, InputError> {
    let (batch, kept_rows, dropped) = drop_rows(batch, mapping);
    let ts_col = columns
        .iter()
        .copied()
        .find(|c| c.kind() == Kind::Time)
        .expect("ts is always wanted");
    let ctx = Conv {
        mapping,
        origin,
        rows: kept_rows.as_deref(),
    };
    let mut problems = Vec::new();
    let ts = batch
        .column_by_name(mapping.source(ts_col))
        .expect("plan checked that every file has ts");
    let ts = to_time(ts.as_ref(), &ctx, ts_col).unwrap_or_else(|p| {
        problems.push(p);
        Int64Array::new_null(batch.num_rows())
    });
    let mut out = Vec::with_capacity(columns.len());
    for &col in columns {
        if col == ts_col {
            continue;
        }
        let source_name = mapping.source(col);
        let arr = match batch.column_by_name(source_name) {
            Some(arr) => convert_column(col, arr, &ctx).unwrap_or_else(|p| {
                problems.push(p);
                null_column(col, batch.num_rows())
            }),
            None => null_column(col, batch.num_rows()),
        };
        out.push((col, arr));
    }
    if !problems.is_empty() {
        return Err(InputError { problems });
    }
    let rejected = ts.null_count() as u64;
    if rejected == 0 {
        return Ok(Converted {
            batch: CanonBatch::new(ts, out),
            rejected_no_ts: 0,
            dropped,
        });
    }
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
    Ok(Converted {
        batch: CanonBatch::new(ts, out),
        rejected_no_ts: rejected,
        dropped,
    })
}

/// What a column conversion needs besides the column.
struct Conv<'a> {
    mapping: &'a TableMapping,
    origin: &'a Origin<'a>,
    /// Row numbers (within the batch as read) of the rows kept, when `drop_if_missing` left
    /// some out: messages name rows as they are in the file.
    rows: Option<&'a [u64]>,
}

impl Conv<'_> {
    fn row_number(&self, i: usize) -> u64 {
        let within = self.rows.map_or(i as u64, |rows| rows[i]);
        self.origin.row_offset + within + 1
    }
}

/// Leaves out the rows where a `drop_if_missing` source column is missing (null, empty or a null
/// token). Returns the batch kept, the original row numbers of the kept rows (when any were
/// dropped), and how many were dropped.
fn drop_rows(batch: &RecordBatch, mapping: &TableMapping) -> (RecordBatch, Option<Vec<u64>>, u64) {
    if mapping.drop_if_missing.is_empty() {
        return (batch.clone(), None, 0);
    }
    let mut keep = vec![true; batch.num_rows()];
    for name in &mapping.drop_if_missing {
        let Some(arr) = batch.column_by_name(name) else {
            // A file without the column has it missing everywhere.
            keep.iter_mut().for_each(|k| *k = false);
            continue;
        };
        let present = present_values(arr.as_ref(), mapping);
        for (k, p) in keep.iter_mut().zip(present) {
            *k &= p;
        }
    }
    let dropped = keep.iter().filter(|k| !**k).count() as u64;
    if dropped == 0 {
        return (batch.clone(), None, 0);
    }
    let rows = keep
        .iter()
        .enumerate()
        .filter(|(_, k)| **k)
        .map(|(i, _)| i as u64)
        .collect();
    let mask = BooleanArray::from(keep);
    let kept = filter_record_batch(batch, &mask).expect("filter of equal lengths");
    (kept, Some(rows), dropped)
}

/// Per row: whether the value is present (not null, not empty, not a null token).
fn present_values(arr: &dyn Array, mapping: &TableMapping) -> Vec<bool> {
    if is_string_like(arr.data_type()) {
        let strings = as_plain_strings(arr);
        (0..strings.len())
            .map(|i| strings.is_valid(i) && !mapping.is_null_token(strings.value(i).trim()))
            .collect()
    } else {
        (0..arr.len()).map(|i| arr.is_valid(i)).collect()
    }
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

fn value_problem(
    ctx: &Conv<'_>,
    col: Col,
    row: usize,
    value: &str,
    expected: &str,
    hint: Option<String>,
) -> Problem {
    Problem::new(format!("`{}`", crate::error::shown(value, 60)), expected)
        .file(ctx.origin.file)
        .column(ctx.mapping.source(col))
        .canonical(col.name())
        .location(format!("row {}", ctx.row_number(row)))
        .hint(hint.unwrap_or_else(|| {
            if matches!(value, "-" | "null" | "NULL" | "None" | "none" | "N/A" | "n/a" | "NaN") {
                format!(
                    "if `{value}` means missing, declare it in the mapping: null = [\"{value}\"] in the table's section"
                )
            } else {
                "fix or drop the row in the export (rows are counted from 1 in file order; a CSV header is not a row)"
                    .to_string()
            }
        }))
}

fn is_string_type(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn is_string_like(dt: &DataType) -> bool {
    match dt {
        DataType::Dictionary(_, v) => is_string_type(v),
        other => is_string_type(other),
    }
}

/// Any string layout as a plain Utf8 array (a cast only for LargeUtf8, views and dictionaries).
fn as_plain_strings(arr: &dyn Array) -> StringArray {
    let plain = cast(arr, &DataType::Utf8).expect("string types cast to Utf8");
    plain
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8 gives StringArray")
        .clone()
}

/// The one string parser of ingest: every value of a string column through `parse`. A missing
/// value (null, empty, blank or a null token) is null; a value `parse` rejects is an input error
/// naming its row, with `parse`'s reason when it gives one.
fn parse_strings<T>(
    arr: &dyn Array,
    ctx: &Conv<'_>,
    col: Col,
    expected: &str,
    parse: impl Fn(&str) -> Result<Option<T>, Option<String>>,
) -> Result<Vec<Option<T>>, Problem> {
    let strings = as_plain_strings(arr);
    let mut out = Vec::with_capacity(strings.len());
    for i in 0..strings.len() {
        let s = if strings.is_null(i) {
            ""
        } else {
            strings.value(i).trim()
        };
        if ctx.mapping.is_null_token(s) {
            out.push(None);
            continue;
        }
        match parse(s) {
            Ok(v) => out.push(v),
            Err(hint) => return Err(value_problem(ctx, col, i, s, expected, hint)),
        }
    }
    Ok(out)
}

/// A boolean as logs write it: `true`/`false`, `1`/`0`, `yes`/`no`, and the cache statuses of
/// nginx (`HIT`, `STALE`, `UPDATING`, `REVALIDATED` were served from the cache; `MISS`, `EXPIRED`,
/// `BYPASS` were not), in any case.
fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "t" | "1" | "yes" | "y" | "hit" | "stale" | "updating" | "revalidated" => {
            Some(true)
        }
        "false" | "f" | "0" | "no" | "n" | "miss" | "expired" | "bypass" => Some(false),
        _ => None,
    }
}

/// A number, or — with `pick` — a list of numbers as nginx writes them after retrying another
/// upstream (`"0.018, 0.029"`, `"502 : 200"`). Null tokens in a list are skipped.
fn parse_numbers<T: std::str::FromStr + Copy + PartialOrd + std::ops::Add<Output = T>>(
    s: &str,
    pick: Option<Pick>,
    mapping: &TableMapping,
    source_name: &str,
) -> Result<Option<T>, Option<String>> {
    if !s.contains([',', ':']) {
        return s.parse().map(Some).map_err(|_| None);
    }
    let Some(pick) = pick else {
        return Err(Some(format!(
            "the field lists several numbers (nginx writes one per upstream tried); say which to take: {{ column = \"{source_name}\", pick = \"last\" }} (first, last, sum or max)"
        )));
    };
    let mut values = Vec::new();
    for part in s.split([',', ':']).map(str::trim) {
        if mapping.is_null_token(part) {
            continue;
        }
        values.push(part.parse::<T>().map_err(|_| None)?);
    }
    Ok(match pick {
        Pick::First => values.first().copied(),
        Pick::Last => values.last().copied(),
        Pick::Sum => values.into_iter().reduce(|a, b| a + b),
        Pick::Max => values.into_iter().reduce(|a, b| if b > a { b } else { a }),
    })
}

/// Nulls the values of a string column that are null tokens (`-`), keeping its layout.
fn null_tokens_to_nulls(arr: &ArrayRef, mapping: &TableMapping) -> ArrayRef {
    if mapping.null_tokens.is_empty() {
        return arr.clone();
    }
    if let Some(dict) = arr.as_any().downcast_ref::<DictionaryArray<Int32Type>>() {
        let values = null_tokens_to_nulls(dict.values(), mapping);
        return Arc::new(
            DictionaryArray::<Int32Type>::try_new(dict.keys().clone(), values)
                .expect("same keys, same number of values"),
        );
    }
    let strings = as_plain_strings(arr.as_ref());
    let is_token = BooleanArray::from_iter((0..strings.len()).map(|i| {
        Some(
            strings.is_valid(i)
                && mapping
                    .null_tokens
                    .iter()
                    .any(|t| t == strings.value(i).trim()),
        )
    }));
    if is_token.true_count() == 0 {
        return arr.clone();
    }
    nullif(arr.as_ref(), &is_token).expect("a mask of the same length")
}

/// Whether a signed or unsigned integer array holds a value that does not fit an i64.
fn first_out_of_i64(arr: &dyn Array) -> Option<(usize, String)> {
    let unsigned = arr.as_any().downcast_ref::<arrow::array::UInt64Array>()?;
    (0..unsigned.len())
        .find(|&i| unsigned.is_valid(i) && unsigned.value(i) > i64::MAX as u64)
        .map(|i| (i, unsigned.value(i).to_string()))
}

/// The canonical form of the string column `col` read as `arr`, as [`convert`] makes it; `None`
/// where `convert` would refuse the column (it is then refused when the batch is converted).
pub(crate) fn str_column(col: Col, arr: &ArrayRef, mapping: &TableMapping) -> Option<ArrayRef> {
    debug_assert_eq!(col.kind(), Kind::Str);
    let origin = Origin {
        file: std::path::Path::new(""),
        row_offset: 0,
    };
    let ctx = Conv {
        mapping,
        origin: &origin,
        rows: None,
    };
    convert_column(col, arr, &ctx).ok()
}

fn convert_column(col: Col, arr: &ArrayRef, ctx: &Conv<'_>) -> Result<ArrayRef, Problem> {
    let dt = arr.data_type();
    let source_name = ctx.mapping.source(col);
    let origin = ctx.origin;
    match col.kind() {
        Kind::Time => unreachable!("ts is converted by to_time"),
        Kind::Str => match dt {
            DataType::Utf8 | DataType::Utf8View => Ok(null_tokens_to_nulls(arr, ctx.mapping)),
            DataType::Null => Ok(null_column(col, arr.len())),
            DataType::LargeUtf8 => Ok(null_tokens_to_nulls(
                &cast(arr, &DataType::Utf8).expect("LargeUtf8 casts to Utf8"),
                ctx.mapping,
            )),
            DataType::Dictionary(_, v) if is_string_type(v) => {
                let want =
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
                let dict = if dt == &want {
                    arr.clone()
                } else {
                    cast(arr, &want).map_err(|_| type_problem(col, source_name, dt, origin))?
                };
                Ok(null_tokens_to_nulls(&dict, ctx.mapping))
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
                                ctx,
                                col,
                                i,
                                &other.to_string(),
                                "a boolean (0 or 1)",
                                None,
                            ))
                        }
                    }
                }
                Ok(Arc::new(b.finish()))
            }
            dt if is_string_like(dt) => {
                let values = parse_strings(
                    arr.as_ref(),
                    ctx,
                    col,
                    "a boolean (`true`/`false`, `1`/`0`, `yes`/`no`, `HIT`/`MISS`)",
                    |s| parse_bool(s).map(Some).ok_or(None),
                )?;
                Ok(Arc::new(BooleanArray::from(values)))
            }
            _ => Err(type_problem(col, source_name, dt, origin)),
        },
        Kind::Int => match dt {
            DataType::Int64 => Ok(arr.clone()),
            DataType::Null => Ok(null_column(col, arr.len())),
            dt if dt.is_integer() => {
                if let Some((i, v)) = first_out_of_i64(arr.as_ref()) {
                    return Err(value_problem(
                        ctx,
                        col,
                        i,
                        &v,
                        "an integer that fits 64 bits",
                        None,
                    ));
                }
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
                                ctx,
                                col,
                                i,
                                &f.to_string(),
                                "an integer",
                                None,
                            ))
                        }
                    }
                }
                Ok(Arc::new(b.finish()))
            }
            dt if is_string_like(dt) => {
                let pick = ctx.mapping.pick(col);
                let values = parse_strings(arr.as_ref(), ctx, col, "an integer", |s| {
                    parse_numbers::<i64>(s, pick, ctx.mapping, source_name)
                })?;
                Ok(Arc::new(Int64Array::from(values)))
            }
            _ => Err(type_problem(col, source_name, dt, origin)),
        },
        Kind::Float => {
            let factor = ctx
                .mapping
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
                dt if is_string_like(dt) => {
                    let pick = ctx.mapping.pick(col);
                    Float64Array::from(parse_strings(arr.as_ref(), ctx, col, "a number", |s| {
                        parse_numbers::<f64>(s, pick, ctx.mapping, source_name)
                    })?)
                }
                _ => return Err(type_problem(col, source_name, dt, origin)),
            };
            if let Some(i) =
                (0..floats.len()).find(|&i| floats.is_valid(i) && !floats.value(i).is_finite())
            {
                return Err(value_problem(
                    ctx,
                    col,
                    i,
                    &floats.value(i).to_string(),
                    "a finite number",
                    None,
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

/// Epoch `value` in `unit` as microseconds, when it is within ±10,000 years of 1970.
fn epoch_micros(value: i64, unit: Unit) -> Option<Micros> {
    let e = unit.micros_exponent();
    let micros = if e >= 0 {
        value.checked_mul(10i64.pow(e as u32))?
    } else {
        value.div_euclid(10i64.pow((-e) as u32))
    };
    (micros.abs() <= TIME_LIMIT).then_some(micros)
}

/// A decimal epoch number written as a string (`"1764238512.347"`, nginx's `$msec`) in `unit`,
/// exactly: no float rounding. Digits below a microsecond are dropped.
fn decimal_epoch_micros(s: &str, unit: Unit) -> Option<Micros> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
        || whole.len() > 19
    {
        return None;
    }
    // The number of digits of the fraction that are microseconds or more.
    let e = unit.micros_exponent();
    let kept = frac.len().min(e.max(0) as usize);
    let mut scaled: i128 = format!("{whole}{}", &frac[..kept])
        .parse::<i128>()
        .unwrap_or(0);
    let shift = e - kept as i32;
    if shift >= 0 {
        scaled = scaled.checked_mul(10i128.pow(shift as u32))?;
    } else {
        scaled /= 10i128.pow((-shift) as u32);
    }
    let micros = if negative { -scaled } else { scaled };
    (micros.abs() <= TIME_LIMIT as i128).then_some(micros as i64)
}

const TIME_EXPECTED: &str =
    "an RFC 3339 time with a zone (e.g. `2026-11-27T10:15:00Z`) or integer epoch milliseconds";
const TIME_RANGE: &str = "a time within ±10,000 years of 1970";

/// Converts a timestamp column to Int64 epoch microseconds; nulls stay null (rejected later).
/// With a unit in the mapping, numbers (and numbers written as strings) are epoch values in that
/// unit, fractions allowed; without one, integers are epoch milliseconds, as the contract says.
fn to_time(arr: &dyn Array, ctx: &Conv<'_>, col: Col) -> Result<Int64Array, Problem> {
    let unit = ctx.mapping.unit(col);
    let out_of_range = |i: usize, v: String| value_problem(ctx, col, i, &v, TIME_RANGE, None);
    match arr.data_type() {
        DataType::Timestamp(tu, _) => {
            let raw = cast(arr, &DataType::Int64).expect("timestamps cast to Int64");
            let raw = raw.as_any().downcast_ref::<Int64Array>().expect("Int64");
            let unit = match tu {
                TimeUnit::Second => Unit::S,
                TimeUnit::Millisecond => Unit::Ms,
                TimeUnit::Microsecond => Unit::Us,
                TimeUnit::Nanosecond => Unit::Ns,
            };
            checked_times(raw, unit, &out_of_range)
        }
        dt if dt.is_integer() => {
            if let Some((i, v)) = first_out_of_i64(arr) {
                return Err(out_of_range(i, v));
            }
            let raw = cast(arr, &DataType::Int64).expect("integers cast to Int64");
            let raw = raw.as_any().downcast_ref::<Int64Array>().expect("Int64");
            checked_times(raw, unit.unwrap_or(Unit::Ms), &out_of_range)
        }
        dt if dt.is_floating() && unit.is_some() => {
            let unit = unit.expect("checked");
            let floats = cast(arr, &DataType::Float64).expect("floats cast to Float64");
            let floats = floats.as_any().downcast_ref::<Float64Array>().expect("Float64");
            let scale = 10f64.powi(unit.micros_exponent());
            let mut out = Int64Builder::with_capacity(floats.len());
            for (i, v) in floats.iter().enumerate() {
                match v {
                    None => out.append_null(),
                    Some(v) => {
                        let micros = (v * scale).round();
                        if !micros.is_finite() || micros.abs() > TIME_LIMIT as f64 {
                            return Err(out_of_range(i, v.to_string()));
                        }
                        out.append_value(micros as i64);
                    }
                }
            }
            Ok(out.finish())
        }
        dt if is_string_like(dt) => Ok(Int64Array::from(parse_strings(
            arr,
            ctx,
            col,
            match unit {
                Some(_) => "an epoch number in the mapped unit, or an RFC 3339 time with a zone",
                None => TIME_EXPECTED,
            },
            |s| {
                let numeric = s.bytes().next().is_some_and(|c| c.is_ascii_digit() || c == b'-')
                    && s.bytes().skip(1).all(|c| c.is_ascii_digit() || c == b'.');
                let parsed = match (numeric, unit) {
                    (true, Some(unit)) => decimal_epoch_micros(s, unit),
                    (true, None) if s.bytes().all(|c| c.is_ascii_digit()) => s
                        .parse::<i64>()
                        .ok()
                        .and_then(|ms| epoch_micros(ms, Unit::Ms)),
                    (true, None) => {
                        return Err(Some(
                            "a fractional epoch number needs its unit: map `ts` as { column = \"…\", unit = \"s\" }"
                                .to_string(),
                        ))
                    }
                    (false, _) => parse_rfc3339(s),
                };
                match parsed {
                    Some(t) if t.abs() <= TIME_LIMIT => Ok(Some(t)),
                    Some(_) => Err(Some(TIME_RANGE.to_string())),
                    None if numeric => Err(Some(TIME_RANGE.to_string())),
                    None => Err(None),
                }
            },
        )?)),
        DataType::Null => Ok(Int64Array::new_null(arr.len())),
        dt => Err(Problem::new(format!("type {dt}"), Kind::Time.describe())
            .file(ctx.origin.file)
            .column(ctx.mapping.source(col))
            .canonical("ts")
            .hint("export `ts` as a timestamp, an RFC 3339 string or epoch milliseconds, or map it with a unit")),
    }
}

/// Epoch values in `unit` as microseconds; a value outside ±10,000 years is an input error.
///
/// Converts the whole value slice in one branch-free loop (a saturated product is out of range
/// too) and keeps the validity bitmap as it is; only when some value is out of range does it look
/// for the first valid one (a null slot holds any value and is not an error). Per value through
/// a builder, this was 3% of a 10M audit's CPU.
fn checked_times(
    raw: &Int64Array,
    unit: Unit,
    out_of_range: &dyn Fn(usize, String) -> Problem,
) -> Result<Int64Array, Problem> {
    let e = unit.micros_exponent();
    let scale = 10i64.pow(e.unsigned_abs());
    let times: ScalarBuffer<i64> = match e {
        0 => raw.values().clone(),
        1.. => raw
            .values()
            .iter()
            .map(|v| v.saturating_mul(scale))
            .collect(),
        _ => raw.values().iter().map(|v| v.div_euclid(scale)).collect(),
    };
    let outside = |t: &i64| t.unsigned_abs() > TIME_LIMIT.unsigned_abs();
    if times.iter().any(outside) {
        let first = times
            .iter()
            .enumerate()
            .find(|(i, t)| raw.is_valid(*i) && outside(t));
        if let Some((i, _)) = first {
            return Err(out_of_range(i, raw.value(i).to_string()));
        }
    }
    Ok(Int64Array::new(times, raw.nulls().cloned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_msec_is_exact() {
        assert_eq!(
            decimal_epoch_micros("1796029584.033", Unit::S),
            Some(1_796_029_584_033_000)
        );
        assert_eq!(
            decimal_epoch_micros("1796029584", Unit::S),
            Some(1_796_029_584_000_000)
        );
        assert_eq!(
            decimal_epoch_micros("1764238512347.5", Unit::Ms),
            Some(1_764_238_512_347_500)
        );
        assert_eq!(
            decimal_epoch_micros("1764238512347123456", Unit::Ns),
            Some(1_764_238_512_347_123)
        );
        assert_eq!(decimal_epoch_micros("1.2.3", Unit::S), None);
        assert_eq!(decimal_epoch_micros("9223372036854775807", Unit::S), None);
        assert_eq!(epoch_micros(i64::MAX, Unit::Ms), None);
        assert_eq!(epoch_micros(1_000, Unit::Ms), Some(1_000_000));
        assert_eq!(epoch_micros(-1_500, Unit::Ns), Some(-2));
    }

    /// `checked_times` agrees with `epoch_micros` value by value, keeps nulls, ignores what a
    /// null slot holds, and names the first valid value out of range (overflow included).
    #[test]
    fn checked_times_converts_slices_and_names_the_first_bad_value() {
        let problem = |i: usize, v: String| Problem::new(format!("{i}={v}"), "in range");
        let values = [1_000, -1_500, 0, 1_764_238_512, -7];
        for unit in [Unit::Ns, Unit::Us, Unit::Ms, Unit::S] {
            let raw = Int64Array::from(values.iter().map(|v| Some(*v)).collect::<Vec<_>>());
            let times = checked_times(&raw, unit, &problem).expect("in range");
            let expected: Vec<Option<i64>> =
                values.iter().map(|v| epoch_micros(*v, unit)).collect();
            assert_eq!(times.iter().collect::<Vec<_>>(), expected, "{unit:?}");
        }
        // A null slot holding i64::MAX is no error, and stays null.
        let with_null = Int64Array::new(
            vec![5, i64::MAX, 7].into(),
            Some(vec![true, false, true].into()),
        );
        let times = checked_times(&with_null, Unit::Ms, &problem).expect("nulls are skipped");
        assert_eq!(
            times.iter().collect::<Vec<_>>(),
            [Some(5_000), None, Some(7_000)]
        );
        // Out of range by overflow (ms → µs) and by the ±10,000 years limit (µs).
        let bad = Int64Array::from(vec![Some(1), None, Some(i64::MIN / 10), Some(i64::MAX)]);
        let err = checked_times(&bad, Unit::Ms, &problem).expect_err("overflow");
        assert_eq!(err.found, format!("2={}", i64::MIN / 10));
        let far = Int64Array::from(vec![Some(0), Some(TIME_LIMIT + 1)]);
        let err = checked_times(&far, Unit::Us, &problem).expect_err("too far");
        assert_eq!(err.found, format!("1={}", TIME_LIMIT + 1));
    }

    #[test]
    fn numbers_and_lists() {
        let mut m = TableMapping::default();
        m.null_tokens = vec!["-".into()];
        assert_eq!(
            parse_numbers::<f64>("0.018", None, &m, "t"),
            Ok(Some(0.018))
        );
        assert!(parse_numbers::<f64>("0.018, 0.029", None, &m, "t").is_err());
        assert_eq!(
            parse_numbers::<f64>("0.018, 0.029", Some(Pick::Last), &m, "t"),
            Ok(Some(0.029))
        );
        assert_eq!(
            parse_numbers::<i64>("502 : 200", Some(Pick::Last), &m, "t"),
            Ok(Some(200))
        );
        assert_eq!(
            parse_numbers::<i64>("502 : 200", Some(Pick::First), &m, "t"),
            Ok(Some(502))
        );
        assert_eq!(
            parse_numbers::<i64>("1, 2, 3", Some(Pick::Sum), &m, "t"),
            Ok(Some(6))
        );
        assert_eq!(
            parse_numbers::<i64>("1, 7, 3", Some(Pick::Max), &m, "t"),
            Ok(Some(7))
        );
        assert_eq!(
            parse_numbers::<f64>("-, 0.029", Some(Pick::First), &m, "t"),
            Ok(Some(0.029))
        );
        assert_eq!(
            parse_numbers::<f64>("x, 1", Some(Pick::First), &m, "t"),
            Err(None)
        );
    }

    #[test]
    fn booleans_as_logs_write_them() {
        for t in [
            "true",
            "TRUE",
            "1",
            "yes",
            "HIT",
            "hit",
            "STALE",
            "REVALIDATED",
        ] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["false", "0", "no", "MISS", "EXPIRED", "BYPASS"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("maybe"), None);
    }
}
