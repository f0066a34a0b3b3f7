//! OpenTelemetry files (OTLP/JSON): one `ExportTraceServiceRequest` or `ExportLogsServiceRequest`
//! JSON object a line, as the Collector's file exporter writes them (hex ids, integer enums) and
//! as protobuf's `MessageToJson` writes them (base64 ids, enum names; camelCase or the proto
//! field names). Streamed a line at a time: a large span file is never held as JSON in memory.
//!
//! Traces: each span of the selected kind (SERVER by default, see `[otlp] spans`) is a row;
//! logs: each log record. Columns are every resource and span/record attribute under its dotted
//! name (the span's or record's own attribute wins over the resource's), plus the fields below;
//! every value is text except `ts` (a nanosecond timestamp), `duration_ms` and `status.code`.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringBuilder, TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::mapping::{SpanSelection, TableMapping, Unit};
use super::source::{FileRef, Layout, Sink, Source, SourceFilter};
use super::BATCH_ROWS;
use crate::columns::{Col, Table};
use crate::error::{InputError, Problem};

pub(crate) struct Otlp;
pub(crate) static OTLP: Otlp = Otlp;

/// Lines parsed side by side: an export request is typically hundreds of spans.
const LINES_PER_GROUP: usize = 8;
/// A group also ends once its lines reach this many bytes, so that the two groups alive at once
/// (one parsed, the next read) stay small whatever the lines' length.
const GROUP_BYTES: usize = 8 << 20;

/// Columns every span row has, besides its attributes.
const SPAN_FIELDS: [&str; 6] = [
    "ts",
    "trace_id",
    "span_id",
    "name",
    "duration_ms",
    "status.code",
];
/// Columns every log-record row has, besides its attributes.
const LOG_FIELDS: [&str; 5] = ["ts", "trace_id", "span_id", "body", "severity_text"];

/// The OpenTelemetry preset: canonical column ← the semantic-convention attributes, in order of
/// preference (the first one a file has is taken). The user's mapping wins.
pub(crate) const PRESET: &[(Col, &[&str], Option<Unit>)] = &[
    (Col::RequestId, &["trace_id"], None),
    (Col::LatencyMs, &["duration_ms"], None),
    (
        Col::Status,
        &["http.response.status_code", "http.status_code"],
        None,
    ),
    (Col::Region, &["cloud.region"], None),
    (Col::UserId, &["enduser.id", "user.id"], None),
    (
        Col::GitSha,
        &["vcs.ref.head.revision", "vcs.repository.ref.revision"],
        None,
    ),
    (Col::BuildId, &["service.version"], None),
    (
        Col::ModelVer,
        &["gen_ai.response.model", "gen_ai.request.model"],
        None,
    ),
];

/// The preset of the receipts: a log record written inside a request's trace carries its id.
const RECEIPTS_PRESET: &[(Col, &[&str], Option<Unit>)] = &[(Col::RRequestId, &["trace_id"], None)];

/// Applies the preset to a table whose files include OTLP: every canonical column the mapping
/// does not name maps to the first of its attributes that a file has.
pub(crate) fn apply_preset(table: Table, mapping: &mut TableMapping, columns: &BTreeSet<&str>) {
    let preset = match table {
        Table::Requests => PRESET,
        Table::Receipts => RECEIPTS_PRESET,
    };
    for (col, candidates, unit) in preset {
        if let Some(found) = candidates.iter().find(|c| columns.contains(**c)) {
            mapping.default_source(*col, found, *unit);
        }
    }
}

/// The preset as a mapping file to start from (`rollproof explain otlp`).
pub(crate) fn preset_mapping_file() -> String {
    let mut out = String::from(
        "# The OpenTelemetry preset: how rollproof reads OTLP/JSON files (traces → requests,\n\
         # logs → receipts or requests) when the mapping does not say otherwise. Copy it to a\n\
         # mapping file to change an entry; the other pins come from your own attributes.\n\
         #\n\
         # Columns of a span row: every resource and span attribute under its dotted name, and\n\
         # ts (start time), trace_id, span_id (lower-case hex), name, duration_ms, status.code\n\
         # (0 unset, 1 ok, 2 error). A log-record row: resource and record attributes, ts\n\
         # (timeUnixNano, else observedTimeUnixNano), trace_id, span_id, body, severity_text.\n\n\
         [otlp]\n\
         spans = \"server\"   # which spans are requests: \"server\" (kind SERVER), \"root\" or \"all\"\n\n\
         [requests]\n",
    );
    for (col, candidates, _) in PRESET {
        let line = format!("{} = \"{}\"", col.name(), candidates[0]);
        if candidates.len() > 1 {
            out.push_str(&format!(
                "{line:<40} # else {}\n",
                candidates[1..].join(", else ")
            ));
        } else {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out.push_str(
        "# prompt_ver = \"app.prompt.version\"     # your attributes for the other pins\n\
         # index_hash = \"app.index.hash\"\n\n\
         [receipts]\n\
         request_id = \"trace_id\"                 # a receipt logged inside the request's trace\n\
         # idempotency_key = \"app.idempotency_key\"\n",
    );
    out
}

impl Source for Otlp {
    fn name(&self) -> &'static str {
        "otlp"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["otlp-json"]
    }

    fn sniff(&self, head: &[u8]) -> bool {
        let start = head
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(head.len());
        let rest = &head[start..];
        let Some(rest) = rest.strip_prefix(b"{") else {
            return false;
        };
        let key = rest
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .map_or(&rest[rest.len()..], |i| &rest[i..]);
        [
            &b"\"resourceSpans\""[..],
            b"\"resourceLogs\"",
            b"\"resource_spans\"",
            b"\"resource_logs\"",
        ]
        .iter()
        .any(|k| key.starts_with(k))
    }

    fn hint(&self) -> &'static str {
        "every line must be one OTLP/JSON export request (as the Collector's file exporter writes)"
    }

    /// One line is one export request: the Collector batches a few MiB at most.
    fn max_line(&self) -> u64 {
        64 << 20
    }

    /// Reads the whole file once for the names of the columns (attributes may appear late),
    /// skipping every attribute's value.
    fn inspect(&self, file: &FileRef<'_>) -> Result<Layout, Problem> {
        use rayon::prelude::*;
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut kinds = BTreeSet::new();
        // Lines are read in groups and their names collected on the worker threads.
        let names_of = |n: u64, line: &str| -> Result<(bool, BTreeSet<String>), Problem> {
            let request: keys::Request<'_> = parse_line(file, n, line)?;
            let mut found = BTreeSet::new();
            let mut add = |attributes: &[keys::Key<'_>]| {
                for kv in attributes {
                    if !found.contains(kv.key.as_ref()) {
                        found.insert(kv.key.to_string());
                    }
                }
            };
            // The names of the rows `rows_of` makes: their own, and their resource's.
            request.for_each_row(file.spans, |resource, own| {
                add(resource);
                add(own);
            });
            Ok((!request.resource_logs.is_empty(), found))
        };
        for_each_group(file, &mut |group: Vec<(u64, String)>| {
            let found: Vec<Result<(bool, BTreeSet<String>), Problem>> = group
                .par_iter()
                .map(|(n, line)| names_of(*n, line))
                .collect();
            for f in found {
                let (logs, found) = f?;
                kinds.insert(logs);
                names.extend(found);
            }
            Ok::<(), Problem>(())
        })?;
        let mut columns: Vec<String> = match kinds.iter().next() {
            Some(true) => LOG_FIELDS.iter().map(|s| s.to_string()).collect(),
            _ => SPAN_FIELDS.iter().map(|s| s.to_string()).collect(),
        };
        if kinds.len() > 1 {
            return Err(file.problem("both traces and logs in one file"));
        }
        let fixed: BTreeSet<String> = columns.iter().cloned().collect();
        columns.extend(names.into_iter().filter(|n| !fixed.contains(n)));
        Ok(Layout {
            columns,
            row_groups: Vec::new(),
            detail: None,
        })
    }

    fn read(
        &self,
        file: &FileRef<'_>,
        _layout: &Layout,
        _row_group: Option<usize>,
        wanted: &[&str],
        sink: &mut Sink<'_>,
    ) -> Result<(), InputError> {
        read_lines(file, wanted, None, sink)
    }

    /// Each line's filter columns are read first, through the model `inspect` uses (values kept
    /// unparsed); a line is parsed whole only when one of its rows passes, and then all of its
    /// rows are pushed. A sample look-up (the rows of a few users) so parses most lines once
    /// cheaply instead of whole. Only attribute columns can be tested this way: a filter on a
    /// fixed field (`trace_id`, …) reads every line.
    fn read_filtered(
        &self,
        file: &FileRef<'_>,
        _layout: &Layout,
        _row_group: Option<usize>,
        wanted: &[&str],
        filter: &SourceFilter,
        sink: &mut Sink<'_>,
    ) -> Result<(), InputError> {
        let fixed =
            |c: &String| SPAN_FIELDS.contains(&c.as_str()) || LOG_FIELDS.contains(&c.as_str());
        let filter = (!filter.columns.iter().any(fixed)).then_some(filter);
        read_lines(file, wanted, filter, sink)
    }
}

/// Streams the rows of a file's lines, the `wanted` columns, in file order, leaving out the lines
/// none of whose rows passes `filter`. Lines are parsed a group at a time on the worker threads (a
/// large span file is one unit: without this, one thread would parse it all).
fn read_lines(
    file: &FileRef<'_>,
    wanted: &[&str],
    filter: Option<&SourceFilter>,
    sink: &mut Sink<'_>,
) -> Result<(), InputError> {
    use rayon::prelude::*;
    let mut batch = BatchBuilder::new(wanted);
    for_each_group(file, &mut |group: Vec<(u64, String)>| {
        let parsed: Vec<Result<Vec<Row<'_>>, Problem>> = group
            .par_iter()
            .map(|(n, line)| {
                if let Some(filter) = filter {
                    if !line_passes(file, *n, line, filter)? {
                        return Ok(Vec::new());
                    }
                }
                let request: Request<'_> = parse_line(file, *n, line)?;
                rows_of(request, file.spans, wanted).map_err(|e| line_problem(file, *n, e))
            })
            .collect();
        for rows in parsed {
            for row in rows? {
                batch.push(row);
                if batch.len() >= BATCH_ROWS {
                    sink(batch.finish())?;
                }
            }
        }
        Ok::<(), InputError>(())
    })?;
    if batch.len() > 0 {
        sink(batch.finish())?;
    }
    Ok(())
}

/// Whether a row of the line passes `filter`, whose columns are all attributes: their values per
/// row as [`rows_of`] makes them (the resource's, then the row's own), tested as one batch. A value
/// that does not parse passes, so that the whole parse reports it.
fn line_passes(
    file: &FileRef<'_>,
    n: u64,
    line: &str,
    filter: &SourceFilter,
) -> Result<bool, Problem> {
    let request: keys::Request<'_> = parse_line(file, n, line)?;
    let mut columns: Vec<StringBuilder> = filter
        .columns
        .iter()
        .map(|_| StringBuilder::new())
        .collect();
    let mut rows = 0;
    let mut unparsed = false;
    // Per filter column, the value of a row: the resource's, replaced by the row's own.
    let mut values = |resource: &[keys::Key<'_>], own: &[keys::Key<'_>]| {
        for (name, column) in filter.columns.iter().zip(columns.iter_mut()) {
            // As `rows_of` has it: the last of the row's own, else the first of the resource's.
            let kv = own
                .iter()
                .rev()
                .find(|kv| kv.key == name.as_str())
                .or_else(|| resource.iter().find(|kv| kv.key == name.as_str()));
            let value = kv.map(|kv| value_text(kv.value).ok());
            match value {
                None => column.append_null(),
                Some(Some(text)) => column.append_value(text),
                Some(None) => {
                    unparsed = true;
                    column.append_null();
                }
            }
        }
        rows += 1;
    };
    request.for_each_row(file.spans, &mut values);
    if unparsed {
        return Ok(true);
    }
    if rows == 0 {
        return Ok(false);
    }
    let fields: Vec<Field> = filter
        .columns
        .iter()
        .map(|c| Field::new(c, DataType::Utf8, true))
        .collect();
    let arrays: Vec<ArrayRef> = columns
        .iter_mut()
        .map(|c| Arc::new(c.finish()) as ArrayRef)
        .collect();
    let batch =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("columns of one length");
    Ok((filter.test)(&batch).true_count() > 0)
}

/// Calls `each` with the file's non-blank lines, numbered, a group at a time, streaming the file:
/// a thread of its own reads (and decompresses) the next group while `each` parses this one.
fn for_each_group<E: From<Problem>>(
    file: &FileRef<'_>,
    each: &mut dyn FnMut(Vec<(u64, String)>) -> Result<(), E>,
) -> Result<(), E> {
    type Group = Result<Vec<(u64, String)>, (u64, std::io::Error)>;
    let mut reader = file.open_text()?;
    std::thread::scope(|scope| {
        // One group waits in the channel at most: two are alive while `each` runs.
        let (send, receive) = std::sync::mpsc::sync_channel::<Group>(0);
        let reading = scope.spawn(move || {
            let (mut n, mut longest) = (0u64, 0usize);
            loop {
                let mut group = Vec::with_capacity(LINES_PER_GROUP);
                let mut bytes = 0;
                let mut end = false;
                while group.len() < LINES_PER_GROUP && bytes < GROUP_BYTES {
                    // Sized like the longest line so far: a line is not copied as it grows.
                    let mut line = String::with_capacity(longest);
                    match reader.read_line(&mut line) {
                        Ok(0) => {
                            end = true;
                            break;
                        }
                        Ok(read) => {
                            n += 1;
                            (bytes, longest) = (bytes + read, longest.max(read));
                            if !line.trim().is_empty() {
                                group.push((n, line));
                            }
                        }
                        Err(e) => {
                            let _ = send.send(Err((n + 1, e)));
                            return;
                        }
                    }
                }
                // The receiver is gone when `each` failed: nothing more to read.
                if (!group.is_empty() && send.send(Ok(group)).is_err()) || end {
                    return;
                }
            }
        });
        // `receive` is dropped when this returns, early or not, so the thread ends either way.
        let parsed = (|| {
            for group in receive {
                let group = group.map_err(|(n, e)| {
                    file.problem(format!("line {n}: {}", crate::error::io_reason(&e)))
                })?;
                each(group)?;
            }
            Ok(())
        })();
        // Joined, not only waited for as the scope's end does: the scope returns once the
        // closure has, while the thread may still be freeing its thread-local state (the
        // channel's); LeakSanitizer then reported it as a leak (fuzzing, once in ~40K runs).
        if let Err(panic) = reading.join() {
            std::panic::resume_unwind(panic);
        }
        parsed
    })
}

/// One line as an export request of model `T`.
fn parse_line<'a, T: Deserialize<'a>>(
    file: &FileRef<'_>,
    n: u64,
    line: &'a str,
) -> Result<T, Problem> {
    serde_json::from_str(line).map_err(|e| line_problem(file, n, e))
}

/// What is wrong with line `n` of `file`.
fn line_problem(file: &FileRef<'_>, n: u64, reason: impl std::fmt::Display) -> Problem {
    file.problem(format!("line {n}: {reason}"))
        .location(format!("line {n}"))
}

/// One row: the fixed fields and the attributes (resource attributes first, so that the span's
/// own, pushed later, win).
struct Row<'a> {
    ts: Option<i64>,
    trace_id: Option<String>,
    span_id: Option<String>,
    name: Option<Cow<'a, str>>,
    duration_ms: Option<f64>,
    status_code: Option<i64>,
    body: Option<String>,
    severity_text: Option<Cow<'a, str>>,
    attributes: Attributes<'a>,
}

/// Attributes by name, their values as text.
type Attributes<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// Whether a span (its parent and kind) is a request, as `[otlp] spans` says.
fn selected(parent: Option<&str>, kind: Option<&SpanKind<'_>>, spans: SpanSelection) -> bool {
    match spans {
        SpanSelection::All => true,
        SpanSelection::Root => parent.is_none_or(str::is_empty),
        SpanSelection::Server => kind.is_some_and(IntOrText::is_server),
    }
}

/// The text of an attribute's value (none: the empty text), parsed from its JSON here: only the
/// values of wanted attributes are parsed, and a malformed one fails only when it is wanted.
fn value_text<'a>(value: Option<&'a RawValue>) -> Result<Cow<'a, str>, serde_json::Error> {
    match value {
        None => Ok(Cow::Borrowed("")),
        Some(raw) => Ok(serde_json::from_str::<AnyValue<'a>>(raw.get())?.into_text()),
    }
}

/// The text of a wanted attribute's value, or what is wrong with it.
fn attribute_text<'a>(kv: &keys::Key<'a>) -> Result<Cow<'a, str>, String> {
    value_text(kv.value).map_err(|e| {
        // The position serde gives is within the value, not the line: left out.
        let reason = e.to_string();
        let at = format!(" at line {} column {}", e.line(), e.column());
        let reason = reason.strip_suffix(&at).unwrap_or(&reason);
        format!("the value of attribute `{}`: {reason}", kv.key)
    })
}

/// The rows of one export request; only the `wanted` attributes are kept (and their values
/// parsed). An error names the attribute whose value is malformed.
fn rows_of<'a>(
    request: Request<'a>,
    spans: SpanSelection,
    wanted: &[&str],
) -> Result<Vec<Row<'a>>, String> {
    let keep = |k: &str| wanted.contains(&k);
    // The wanted attributes of a resource, as text, once per resource.
    let resource_text = |resource: Vec<keys::Key<'a>>| -> Result<Attributes<'a>, String> {
        resource
            .into_iter()
            .filter(|kv| keep(&kv.key))
            .map(|kv| {
                let text = attribute_text(&kv)?;
                Ok((kv.key, text))
            })
            .collect()
    };
    let attributes = |resource: &[(Cow<'a, str>, Cow<'a, str>)], own: Vec<keys::Key<'a>>| {
        let mut out: Attributes<'a> = resource.to_vec();
        for kv in own {
            if !keep(&kv.key) {
                continue;
            }
            let value = attribute_text(&kv)?;
            match out.iter_mut().find(|(k, _)| *k == kv.key) {
                Some(slot) => slot.1 = value,
                None => out.push((kv.key, value)),
            }
        }
        Ok::<_, String>(out)
    };
    let mut rows = Vec::new();
    if !request.resource_logs.is_empty() {
        for rl in request.resource_logs {
            let resource = resource_text(rl.resource.map(|r| r.attributes).unwrap_or_default())?;
            for sl in rl
                .scope_logs
                .into_iter()
                .chain(rl.instrumentation_library_logs)
            {
                for record in sl.log_records {
                    let ts = record
                        .time_unix_nano
                        .and_then(|t| t.value())
                        .filter(|t| *t != 0)
                        .or_else(|| record.observed_time_unix_nano.and_then(|t| t.value()));
                    rows.push(Row {
                        ts,
                        trace_id: id_hex(record.trace_id.as_deref(), 16),
                        span_id: id_hex(record.span_id.as_deref(), 8),
                        name: None,
                        duration_ms: None,
                        status_code: None,
                        body: record.body.map(|b| b.into_text().into_owned()),
                        severity_text: record.severity_text,
                        attributes: attributes(&resource, record.attributes)?,
                    });
                }
            }
        }
        return Ok(rows);
    }
    for rs in request.resource_spans {
        let resource = resource_text(rs.resource.map(|r| r.attributes).unwrap_or_default())?;
        for ss in rs
            .scope_spans
            .into_iter()
            .chain(rs.instrumentation_library_spans)
        {
            for span in ss.spans {
                if !selected(span.parent_span_id.as_deref(), span.kind.as_ref(), spans) {
                    continue;
                }
                let start = span.start_time_unix_nano.and_then(|t| t.value());
                let end = span.end_time_unix_nano.and_then(|t| t.value());
                rows.push(Row {
                    ts: start,
                    trace_id: id_hex(span.trace_id.as_deref(), 16),
                    span_id: id_hex(span.span_id.as_deref(), 8),
                    name: span.name,
                    duration_ms: match (start, end) {
                        (Some(s), Some(e)) => Some(e.saturating_sub(s) as f64 / 1e6),
                        _ => None,
                    },
                    status_code: span.status.and_then(|s| s.code).map(|c| c.status_code()),
                    body: None,
                    severity_text: None,
                    attributes: attributes(&resource, span.attributes)?,
                });
            }
        }
    }
    Ok(rows)
}

/// A trace or span id as lower-case hex: the Collector writes hex, `MessageToJson` base64.
fn id_hex(id: Option<&str>, bytes: usize) -> Option<String> {
    let id = id.filter(|s| !s.is_empty())?;
    if id.len() == bytes * 2 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(id.to_ascii_lowercase());
    }
    match base64::engine::general_purpose::STANDARD.decode(id) {
        Ok(raw) if raw.len() == bytes => Some(raw.iter().map(|b| format!("{b:02x}")).collect()),
        // Neither spelling: keep it as written rather than lose it.
        _ => Some(id.to_string()),
    }
}

/// Columns of one record batch, built row by row for the wanted source columns.
struct BatchBuilder<'w> {
    wanted: &'w [&'w str],
    ts: Vec<Option<i64>>,
    duration: Vec<Option<f64>>,
    status: Vec<Option<i64>>,
    text: BTreeMap<&'w str, StringBuilder>,
    rows: usize,
}

impl<'w> BatchBuilder<'w> {
    fn new(wanted: &'w [&'w str]) -> BatchBuilder<'w> {
        let text = wanted
            .iter()
            .filter(|w| !matches!(**w, "ts" | "duration_ms" | "status.code"))
            .map(|w| (*w, StringBuilder::new()))
            .collect();
        BatchBuilder {
            wanted,
            ts: Vec::new(),
            duration: Vec::new(),
            status: Vec::new(),
            text,
            rows: 0,
        }
    }

    fn len(&self) -> usize {
        self.rows
    }

    fn push(&mut self, row: Row<'_>) {
        self.rows += 1;
        self.ts.push(row.ts);
        self.duration.push(row.duration_ms);
        self.status.push(row.status_code);
        for (name, builder) in self.text.iter_mut() {
            let fixed = match *name {
                "trace_id" => Some(row.trace_id.as_deref()),
                "span_id" => Some(row.span_id.as_deref()),
                "name" => Some(row.name.as_deref()),
                "body" => Some(row.body.as_deref()),
                "severity_text" => Some(row.severity_text.as_deref()),
                _ => None,
            };
            let value = match fixed {
                Some(v) => v,
                None => row
                    .attributes
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_ref()),
            };
            builder.append_option(value);
        }
    }

    fn finish(&mut self) -> RecordBatch {
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for name in self.wanted {
            let (field, column): (Field, ArrayRef) = match *name {
                "ts" => (
                    Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
                    Arc::new(TimestampNanosecondArray::from(std::mem::take(&mut self.ts))),
                ),
                "duration_ms" => (
                    Field::new("duration_ms", DataType::Float64, true),
                    Arc::new(Float64Array::from(std::mem::take(&mut self.duration))),
                ),
                "status.code" => (
                    Field::new("status.code", DataType::Int64, true),
                    Arc::new(Int64Array::from(std::mem::take(&mut self.status))),
                ),
                other => (
                    Field::new(other, DataType::Utf8, true),
                    Arc::new(
                        self.text
                            .get_mut(other)
                            .expect("a builder per wanted text column")
                            .finish(),
                    ),
                ),
            };
            fields.push(field);
            columns.push(column);
        }
        self.ts.clear();
        self.duration.clear();
        self.status.clear();
        let rows = std::mem::take(&mut self.rows);
        RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .expect("columns of one length")
    }
}

/// The model `inspect` and the filtered read parse: attribute names and what selects a span or
/// record; every attribute's value is kept as its JSON text, unparsed (`RawValue`), and the rest
/// is skipped. The whole model's attributes are [`keys::Key`]s too: a value is parsed only when
/// its attribute is wanted ([`value_text`]).
mod keys {
    use std::borrow::Cow;

    use serde::Deserialize;
    use serde_json::value::RawValue;

    use super::SpanSelection;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub(super) struct Request<'a> {
        #[serde(borrow, alias = "resource_spans", rename = "resourceSpans")]
        pub(super) resource_spans: Vec<ResourceSpans<'a>>,
        #[serde(borrow, alias = "resource_logs", rename = "resourceLogs")]
        pub(super) resource_logs: Vec<ResourceLogs<'a>>,
    }

    impl<'a> Request<'a> {
        /// Calls `f(resource attributes, own attributes)` for every row [`super::rows_of`]
        /// makes of the request, in its order: each log record when there are logs, else each
        /// span that `spans` selects.
        pub(super) fn for_each_row(
            &self,
            spans: SpanSelection,
            mut f: impl FnMut(&[Key<'a>], &[Key<'a>]),
        ) {
            fn attributes<'r, 'a>(r: &'r Option<Resource<'a>>) -> &'r [Key<'a>] {
                r.as_ref().map_or(&[], |r| &r.attributes)
            }
            if !self.resource_logs.is_empty() {
                for rl in &self.resource_logs {
                    let resource = attributes(&rl.resource);
                    for sl in rl.scope_logs.iter().chain(&rl.instrumentation_library_logs) {
                        sl.log_records
                            .iter()
                            .for_each(|r| f(resource, &r.attributes));
                    }
                }
                return;
            }
            for rs in &self.resource_spans {
                let resource = attributes(&rs.resource);
                for ss in rs
                    .scope_spans
                    .iter()
                    .chain(&rs.instrumentation_library_spans)
                {
                    let rows = ss.spans.iter().filter(|s| {
                        super::selected(s.parent_span_id.as_deref(), s.kind.as_ref(), spans)
                    });
                    rows.for_each(|s| f(resource, &s.attributes));
                }
            }
        }
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub(super) struct Resource<'a> {
        #[serde(borrow)]
        pub(super) attributes: Vec<Key<'a>>,
    }

    #[derive(Deserialize)]
    pub(super) struct Key<'a> {
        #[serde(borrow)]
        pub(super) key: Cow<'a, str>,
        #[serde(borrow, default)]
        pub(super) value: Option<&'a RawValue>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub(super) struct ResourceSpans<'a> {
        #[serde(borrow)]
        pub(super) resource: Option<Resource<'a>>,
        #[serde(borrow, alias = "scope_spans", rename = "scopeSpans")]
        pub(super) scope_spans: Vec<ScopeSpans<'a>>,
        #[serde(
            borrow,
            alias = "instrumentation_library_spans",
            rename = "instrumentationLibrarySpans"
        )]
        pub(super) instrumentation_library_spans: Vec<ScopeSpans<'a>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub(super) struct ScopeSpans<'a> {
        #[serde(borrow)]
        pub(super) spans: Vec<Span<'a>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub(super) struct Span<'a> {
        #[serde(borrow, alias = "parent_span_id", rename = "parentSpanId")]
        pub(super) parent_span_id: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub(super) kind: Option<super::SpanKind<'a>>,
        #[serde(borrow)]
        pub(super) attributes: Vec<Key<'a>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub(super) struct ResourceLogs<'a> {
        #[serde(borrow)]
        pub(super) resource: Option<Resource<'a>>,
        #[serde(borrow, alias = "scope_logs", rename = "scopeLogs")]
        pub(super) scope_logs: Vec<ScopeLogs<'a>>,
        #[serde(
            borrow,
            alias = "instrumentation_library_logs",
            rename = "instrumentationLibraryLogs"
        )]
        pub(super) instrumentation_library_logs: Vec<ScopeLogs<'a>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub(super) struct ScopeLogs<'a> {
        #[serde(borrow, alias = "log_records", rename = "logRecords")]
        pub(super) log_records: Vec<Record<'a>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub(super) struct Record<'a> {
        #[serde(borrow)]
        pub(super) attributes: Vec<Key<'a>>,
    }
}

// ---- the OTLP/JSON model: only the fields rollproof reads, in both spellings ----

#[derive(Deserialize, Default)]
#[serde(default)]
struct Request<'a> {
    #[serde(borrow, alias = "resource_spans", rename = "resourceSpans")]
    resource_spans: Vec<ResourceSpans<'a>>,
    #[serde(borrow, alias = "resource_logs", rename = "resourceLogs")]
    resource_logs: Vec<ResourceLogs<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Resource<'a> {
    #[serde(borrow)]
    attributes: Vec<keys::Key<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResourceSpans<'a> {
    #[serde(borrow)]
    resource: Option<Resource<'a>>,
    #[serde(borrow, alias = "scope_spans", rename = "scopeSpans")]
    scope_spans: Vec<ScopeSpans<'a>>,
    #[serde(
        borrow,
        alias = "instrumentation_library_spans",
        rename = "instrumentationLibrarySpans"
    )]
    instrumentation_library_spans: Vec<ScopeSpans<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ScopeSpans<'a> {
    #[serde(borrow)]
    spans: Vec<Span<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Span<'a> {
    #[serde(borrow, alias = "trace_id", rename = "traceId")]
    trace_id: Option<Cow<'a, str>>,
    #[serde(borrow, alias = "span_id", rename = "spanId")]
    span_id: Option<Cow<'a, str>>,
    #[serde(borrow, alias = "parent_span_id", rename = "parentSpanId")]
    parent_span_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kind: Option<SpanKind<'a>>,
    #[serde(borrow, alias = "start_time_unix_nano", rename = "startTimeUnixNano")]
    start_time_unix_nano: Option<Nanos<'a>>,
    #[serde(borrow, alias = "end_time_unix_nano", rename = "endTimeUnixNano")]
    end_time_unix_nano: Option<Nanos<'a>>,
    #[serde(borrow)]
    attributes: Vec<keys::Key<'a>>,
    #[serde(borrow)]
    status: Option<Status<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Status<'a> {
    #[serde(borrow)]
    code: Option<StatusCode<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResourceLogs<'a> {
    #[serde(borrow)]
    resource: Option<Resource<'a>>,
    #[serde(borrow, alias = "scope_logs", rename = "scopeLogs")]
    scope_logs: Vec<ScopeLogs<'a>>,
    #[serde(
        borrow,
        alias = "instrumentation_library_logs",
        rename = "instrumentationLibraryLogs"
    )]
    instrumentation_library_logs: Vec<ScopeLogs<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ScopeLogs<'a> {
    #[serde(borrow, alias = "log_records", rename = "logRecords")]
    log_records: Vec<LogRecord<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LogRecord<'a> {
    #[serde(borrow, alias = "time_unix_nano", rename = "timeUnixNano")]
    time_unix_nano: Option<Nanos<'a>>,
    #[serde(
        borrow,
        alias = "observed_time_unix_nano",
        rename = "observedTimeUnixNano"
    )]
    observed_time_unix_nano: Option<Nanos<'a>>,
    #[serde(borrow, alias = "severity_text", rename = "severityText")]
    severity_text: Option<Cow<'a, str>>,
    body: Option<AnyValue<'a>>,
    #[serde(borrow)]
    attributes: Vec<keys::Key<'a>>,
    #[serde(borrow, alias = "trace_id", rename = "traceId")]
    trace_id: Option<Cow<'a, str>>,
    #[serde(borrow, alias = "span_id", rename = "spanId")]
    span_id: Option<Cow<'a, str>>,
}

/// An attribute value; arrays and key-value lists become their JSON text.
#[derive(Deserialize, Default)]
#[serde(default)]
struct AnyValue<'a> {
    #[serde(borrow, alias = "string_value", rename = "stringValue")]
    string_value: Option<Cow<'a, str>>,
    #[serde(borrow, alias = "int_value", rename = "intValue")]
    int_value: Option<Nanos<'a>>,
    #[serde(alias = "double_value", rename = "doubleValue")]
    double_value: Option<serde_json::Value>,
    #[serde(alias = "bool_value", rename = "boolValue")]
    bool_value: Option<bool>,
    #[serde(borrow, alias = "bytes_value", rename = "bytesValue")]
    bytes_value: Option<Cow<'a, str>>,
    #[serde(alias = "array_value", rename = "arrayValue")]
    array_value: Option<serde_json::Value>,
    #[serde(alias = "kvlist_value", rename = "kvlistValue")]
    kvlist_value: Option<serde_json::Value>,
}

impl<'a> AnyValue<'a> {
    /// The value as text: a string value stays borrowed from the line when it can.
    fn into_text(self) -> Cow<'a, str> {
        if let Some(s) = self.string_value {
            return s;
        }
        Cow::Owned(self.to_text())
    }

    fn to_text(&self) -> String {
        if let Some(s) = &self.string_value {
            return s.to_string();
        }
        if let Some(i) = &self.int_value {
            return i.value().map(|v| v.to_string()).unwrap_or_default();
        }
        if let Some(d) = &self.double_value {
            return match d {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
        }
        if let Some(b) = self.bool_value {
            return b.to_string();
        }
        if let Some(b) = &self.bytes_value {
            return b.to_string();
        }
        if let Some(v) = self.array_value.as_ref().or(self.kvlist_value.as_ref()) {
            return simplify(v).to_string();
        }
        String::new()
    }
}

/// An OTLP array or key-value list as plain JSON: `{"values": [{"stringValue": "a"}]}` → `["a"]`,
/// `{"values": [{"key": "k", "value": …}]}` → `{"k": …}`.
fn simplify(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let values = v.get("values").and_then(Value::as_array);
    match values {
        Some(items) if items.iter().all(|i| i.get("key").is_some()) && !items.is_empty() => {
            Value::Object(
                items
                    .iter()
                    .map(|i| {
                        (
                            i["key"].as_str().unwrap_or_default().to_string(),
                            i.get("value").map(simplify_any).unwrap_or(Value::Null),
                        )
                    })
                    .collect(),
            )
        }
        Some(items) => Value::Array(items.iter().map(simplify_any).collect()),
        None => Value::Array(Vec::new()),
    }
}

fn simplify_any(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let Some(obj) = v.as_object() else {
        return v.clone();
    };
    // An AnyValue has exactly one field, its kind.
    if let Some((k, inner)) = obj.iter().next() {
        return match k.as_str() {
            "stringValue" | "string_value" | "boolValue" | "bool_value" | "doubleValue"
            | "double_value" | "bytesValue" | "bytes_value" => inner.clone(),
            "intValue" | "int_value" => match inner {
                Value::String(s) => s.parse::<i64>().map(Value::from).unwrap_or(inner.clone()),
                other => other.clone(),
            },
            "arrayValue" | "array_value" | "kvlistValue" | "kvlist_value" => simplify(inner),
            _ => v.clone(),
        };
    }
    Value::Null
}

/// A 64-bit integer or an enum as OTLP/JSON writes it: a JSON number, or a string (proto3 JSON
/// writes 64-bit integers as decimal strings, enums by name). Read by a visitor of its own rather
/// than as an untagged enum, which buffers every value before it tries the variants (a third of
/// the cost of a span's fields) and, when none fits, says only that nothing matched.
enum IntOrText<'a> {
    Text(Cow<'a, str>),
    Number(i64),
    /// A number past `i64::MAX`: no time, kind or status code.
    TooLarge,
}

/// A time in nanoseconds since the epoch.
type Nanos<'a> = IntOrText<'a>;
/// A span kind: an integer (2 is SERVER) or its enum name.
type SpanKind<'a> = IntOrText<'a>;
/// A status code: an integer (0 unset, 1 ok, 2 error) or its enum name.
type StatusCode<'a> = IntOrText<'a>;

impl<'de: 'a, 'a> Deserialize<'de> for IntOrText<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = IntOrText<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer, as a number or a string, or an enum name")
            }
            fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
                Ok(IntOrText::Number(n))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
                Ok(i64::try_from(n).map_or(IntOrText::TooLarge, IntOrText::Number))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(IntOrText::Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(IntOrText::Text(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

impl IntOrText<'_> {
    /// The integer (a time, or an `intValue`); `None` when the text is not one.
    fn value(&self) -> Option<i64> {
        match self {
            IntOrText::Text(s) => s.parse().ok(),
            IntOrText::Number(n) => Some(*n),
            IntOrText::TooLarge => None,
        }
    }

    /// As a span kind: whether it is SERVER.
    fn is_server(&self) -> bool {
        match self {
            IntOrText::Number(n) => *n == 2,
            IntOrText::Text(s) => s == "SPAN_KIND_SERVER" || s == "SERVER",
            IntOrText::TooLarge => false,
        }
    }

    /// As a status code: 0 unset, 1 ok, 2 error.
    fn status_code(&self) -> i64 {
        match self {
            IntOrText::Number(n) => *n,
            IntOrText::Text(s) => match s.as_ref() {
                "STATUS_CODE_OK" | "OK" => 1,
                "STATUS_CODE_ERROR" | "ERROR" => 2,
                _ => 0,
            },
            IntOrText::TooLarge => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_of_ids() {
        assert_eq!(
            id_hex(Some("5B8EFFF798038103D269B633813FC60C"), 16).as_deref(),
            Some("5b8efff798038103d269b633813fc60c")
        );
        // base64 of the same 16 bytes, as MessageToJson writes it
        assert_eq!(
            id_hex(Some("W47/95gDgQPSabYzgT/GDA=="), 16).as_deref(),
            Some("5b8efff798038103d269b633813fc60c")
        );
        assert_eq!(id_hex(Some(""), 16), None);
    }

    #[test]
    fn sniffs_both_kinds_and_spellings() {
        assert!(OTLP.sniff(b"{\"resourceSpans\":[]}"));
        assert!(OTLP.sniff(b"  { \"resourceLogs\": []}"));
        assert!(OTLP.sniff(b"{\"resource_spans\":[]}"));
        assert!(!OTLP.sniff(b"{\"ts\": 1}"));
    }

    #[test]
    fn attribute_values_become_text() {
        let v: AnyValue = serde_json::from_str(r#"{"intValue": "200"}"#).unwrap();
        assert_eq!(v.to_text(), "200");
        let v: AnyValue = serde_json::from_str(r#"{"doubleValue": 0.25}"#).unwrap();
        assert_eq!(v.to_text(), "0.25");
        let v: AnyValue = serde_json::from_str(r#"{"boolValue": true}"#).unwrap();
        assert_eq!(v.to_text(), "true");
        let v: AnyValue = serde_json::from_str(
            r#"{"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "2"}]}}"#,
        )
        .unwrap();
        assert_eq!(v.to_text(), r#"["a",2]"#);
        let v: AnyValue = serde_json::from_str(
            r#"{"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": false}}]}}"#,
        )
        .unwrap();
        assert_eq!(v.to_text(), r#"{"k":false}"#);
    }
}
