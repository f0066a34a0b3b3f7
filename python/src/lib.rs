//! `rollproof._native`: the audit engine for Python. Reports cross as JSON text (the JSON report
//! the CLI writes, byte for byte), partial states as bytes. Input errors raise
//! `rollproof.InputError` with every problem; the GIL is released while the engine works.

use std::path::{Path, PathBuf};

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use rollproof::{AuditOptions, FrameSchemas, FrameSource, InputError, InputOverrides, Table};

create_exception!(
    _native,
    InputErrorPy,
    PyException,
    "The input cannot be audited as given (the CLI's exit 2); `args[0]` lists every problem."
);

fn input_error(e: InputError) -> PyErr {
    let text: Vec<String> = e.problems.iter().map(|p| p.to_string()).collect();
    InputErrorPy::new_err(text.join("\n"))
}

fn overrides(
    requests: Option<Vec<String>>,
    receipts: Option<Vec<String>>,
    mapping: Option<PathBuf>,
    thresholds: Option<Vec<(String, String)>>,
) -> InputOverrides {
    InputOverrides {
        requests: requests.unwrap_or_default(),
        receipts: receipts.unwrap_or_default(),
        mapping,
        thresholds: thresholds.unwrap_or_default(),
        outputs: Vec::new(),
    }
}

fn pool(threads: Option<usize>) -> PyResult<rayon::ThreadPool> {
    let mut b = rayon::ThreadPoolBuilder::new();
    if let Some(n) = threads.filter(|n| *n > 0) {
        b = b.num_threads(n);
    }
    b.build()
        .map_err(|e| PyException::new_err(format!("could not start the worker threads: {e}")))
}

fn quiet(_: Table, _: u64, _: u64) {}

/// The rendered report, and the per-minute series when they were built.
type Rendered = (String, Option<String>);

fn rendered(fmt: rollproof::Format, report: &rollproof::Report) -> Rendered {
    (
        rollproof::render(fmt, report),
        report.series_json().map(|v| v.to_string()),
    )
}

fn options(series: bool) -> AuditOptions {
    AuditOptions {
        series,
        hash_inputs: false,
        evidence: false,
    }
}

fn table(name: &str) -> PyResult<Table> {
    match name {
        "requests" => Ok(Table::Requests),
        "receipts" => Ok(Table::Receipts),
        other => Err(PyException::new_err(format!(
            "table `{other}`: expected `requests` or `receipts`"
        ))),
    }
}

/// The JSON report of an audit (`rollproof audit INCIDENT --format json`), and its rendering in
/// `format` (text, markdown, junit, html) when asked.
#[pyfunction]
#[pyo3(signature = (incident, requests=None, receipts=None, mapping=None, thresholds=None, threads=None, format=None, series=false, evidence_dir=None))]
#[allow(clippy::too_many_arguments)]
fn audit(
    py: Python<'_>,
    incident: PathBuf,
    requests: Option<Vec<String>>,
    receipts: Option<Vec<String>>,
    mapping: Option<PathBuf>,
    thresholds: Option<Vec<(String, String)>>,
    threads: Option<usize>,
    format: Option<String>,
    series: bool,
    evidence_dir: Option<PathBuf>,
) -> PyResult<Rendered> {
    let o = overrides(requests, receipts, mapping, thresholds);
    let fmt = render_format(format.as_deref())?;
    let pool = pool(threads)?;
    let mut opts = options(series || fmt == rollproof::Format::Html);
    opts.evidence = evidence_dir.is_some();
    let report = py
        .detach(|| pool.install(|| rollproof::audit_path(&incident, &o, opts, &quiet)))
        .map_err(input_error)?;
    if let Some(dir) = &evidence_dir {
        report
            .write_evidence(dir)
            .map_err(|e| PyException::new_err(format!("could not write the evidence: {e:#}")))?;
    }
    Ok(rendered(fmt, &report))
}

fn render_format(name: Option<&str>) -> PyResult<rollproof::Format> {
    Ok(match name.unwrap_or("json") {
        "json" => rollproof::Format::Json,
        "text" => rollproof::Format::Text,
        "markdown" => rollproof::Format::Markdown,
        "junit" => rollproof::Format::Junit,
        "html" => rollproof::Format::Html,
        other => {
            return Err(PyException::new_err(format!(
                "format `{other}`: expected json, text, markdown, junit or html"
            )))
        }
    })
}

/// The units of work of the incident's inputs, as JSON (`rollproof plan`).
#[pyfunction]
#[pyo3(signature = (incident, requests=None, receipts=None, mapping=None, thresholds=None))]
fn plan(
    py: Python<'_>,
    incident: PathBuf,
    requests: Option<Vec<String>>,
    receipts: Option<Vec<String>>,
    mapping: Option<PathBuf>,
    thresholds: Option<Vec<(String, String)>>,
) -> PyResult<String> {
    let o = overrides(requests, receipts, mapping, thresholds);
    let plan = py
        .detach(|| rollproof::plan(&incident, &o))
        .map_err(input_error)?;
    serde_json::to_string(&plan).map_err(|e| PyException::new_err(e.to_string()))
}

/// A partial state of the given units (`rollproof partial --unit …`), as bytes.
#[pyfunction]
#[pyo3(signature = (incident, units, requests=None, receipts=None, mapping=None, thresholds=None, samples_from=None, receipts_from=None, threads=None, key_partitions=1))]
#[allow(clippy::too_many_arguments)]
fn partial<'py>(
    py: Python<'py>,
    incident: PathBuf,
    units: Vec<String>,
    requests: Option<Vec<String>>,
    receipts: Option<Vec<String>>,
    mapping: Option<PathBuf>,
    thresholds: Option<Vec<(String, String)>>,
    samples_from: Option<Vec<u8>>,
    receipts_from: Option<Vec<u8>>,
    threads: Option<usize>,
    key_partitions: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let o = overrides(requests, receipts, mapping, thresholds);
    let request = rollproof::PartialRequest {
        units,
        samples_from: samples_from.map(|b| (PathBuf::from("samples_from"), b)),
        receipts_from: receipts_from.map(|b| (PathBuf::from("receipts_from"), b)),
        key_partitions: key_partitions_arg(key_partitions)?,
        ..Default::default()
    };
    let pool = pool(threads)?;
    let bytes = py
        .detach(|| pool.install(|| rollproof::partial(&incident, &o, &request, &quiet)))
        .map_err(input_error)?;
    Ok(PyBytes::new(py, &bytes))
}

/// 1 to `MAX_KEY_PARTITIONS` key ranges, as the CLI takes them.
fn key_partitions_arg(n: usize) -> PyResult<usize> {
    if (1..=rollproof::MAX_KEY_PARTITIONS).contains(&n) {
        Ok(n)
    } else {
        Err(pyo3::exceptions::PyValueError::new_err(format!(
            "key_partitions must be between 1 and {}, not {n}",
            rollproof::MAX_KEY_PARTITIONS
        )))
    }
}

fn named(parts: Vec<Vec<u8>>) -> Vec<(PathBuf, Vec<u8>)> {
    parts
        .into_iter()
        .enumerate()
        .map(|(i, b)| (PathBuf::from(format!("partial #{i}")), b))
        .collect()
}

/// The report of merged partial states (`rollproof merge`), as JSON or `format`.
#[pyfunction]
#[pyo3(signature = (incident, parts, requests=None, receipts=None, mapping=None, thresholds=None, threads=None, format=None, series=false, key_partitions=None))]
#[allow(clippy::too_many_arguments)]
fn merge(
    py: Python<'_>,
    incident: PathBuf,
    parts: Vec<Vec<u8>>,
    requests: Option<Vec<String>>,
    receipts: Option<Vec<String>>,
    mapping: Option<PathBuf>,
    thresholds: Option<Vec<(String, String)>>,
    threads: Option<usize>,
    format: Option<String>,
    series: bool,
    key_partitions: Option<usize>,
) -> PyResult<Rendered> {
    let o = overrides(requests, receipts, mapping, thresholds);
    let fmt = render_format(format.as_deref())?;
    let key_partitions = key_partitions.map(key_partitions_arg).transpose()?;
    let parts = named(parts);
    let pool = pool(threads)?;
    let report = py
        .detach(|| {
            pool.install(|| {
                rollproof::merge(
                    &incident,
                    &o,
                    parts,
                    options(series || fmt == rollproof::Format::Html),
                    key_partitions,
                    &quiet,
                )
            })
        })
        .map_err(input_error)?;
    Ok(rendered(fmt, &report))
}

/// Partial states merged into one (`rollproof merge --partial-out`), as bytes.
#[pyfunction]
#[pyo3(signature = (incident, parts, requests=None, receipts=None, mapping=None, thresholds=None, key_partitions=None))]
#[allow(clippy::too_many_arguments)]
fn combine<'py>(
    py: Python<'py>,
    incident: PathBuf,
    parts: Vec<Vec<u8>>,
    requests: Option<Vec<String>>,
    receipts: Option<Vec<String>>,
    mapping: Option<PathBuf>,
    thresholds: Option<Vec<(String, String)>>,
    key_partitions: Option<usize>,
) -> PyResult<Bound<'py, PyBytes>> {
    let o = overrides(requests, receipts, mapping, thresholds);
    let key_partitions = key_partitions.map(key_partitions_arg).transpose()?;
    let parts = named(parts);
    let bytes = py
        .detach(|| rollproof::combine(&incident, &o, parts, key_partitions))
        .map_err(input_error)?;
    Ok(PyBytes::new(py, &bytes))
}

/// A partial written with key ranges, split for a shuffle by range: (the partial without its
/// key ranges, [one piece per range]).
#[pyfunction]
#[pyo3(signature = (incident, part, requests=None, receipts=None, mapping=None, thresholds=None))]
#[allow(clippy::type_complexity)]
fn split_key_ranges<'py>(
    py: Python<'py>,
    incident: PathBuf,
    part: Vec<u8>,
    requests: Option<Vec<String>>,
    receipts: Option<Vec<String>>,
    mapping: Option<PathBuf>,
    thresholds: Option<Vec<(String, String)>>,
) -> PyResult<(Bound<'py, PyBytes>, Vec<Bound<'py, PyBytes>>)> {
    let o = overrides(requests, receipts, mapping, thresholds);
    let part = (PathBuf::from("partial"), part);
    let (rest, pieces) = py
        .detach(|| rollproof::split_key_ranges(&incident, &o, &part))
        .map_err(input_error)?;
    Ok((
        PyBytes::new(py, &rest),
        pieces.iter().map(|p| PyBytes::new(py, p)).collect(),
    ))
}

/// Key range `range` of `ranges`, finished over partials (or their pieces) of every unit
/// (`rollproof merge --key-range`), as bytes for the final merge.
#[pyfunction]
#[pyo3(signature = (incident, parts, range, ranges, requests=None, receipts=None, mapping=None, thresholds=None))]
#[allow(clippy::too_many_arguments)]
fn finish_key_range<'py>(
    py: Python<'py>,
    incident: PathBuf,
    parts: Vec<Vec<u8>>,
    range: usize,
    ranges: usize,
    requests: Option<Vec<String>>,
    receipts: Option<Vec<String>>,
    mapping: Option<PathBuf>,
    thresholds: Option<Vec<(String, String)>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let o = overrides(requests, receipts, mapping, thresholds);
    let parts = named(parts);
    let bytes = py
        .detach(|| rollproof::finish_key_range(&incident, &o, parts, range, ranges))
        .map_err(input_error)?;
    Ok(PyBytes::new(py, &bytes))
}

fn schemas(requests_schema: PathBuf, receipts_schema: Option<PathBuf>) -> FrameSchemas {
    FrameSchemas {
        requests: requests_schema,
        receipts: receipts_schema,
    }
}

/// A partial of one frame (the Arrow IPC file of one partition of `table`), as unit `unit`.
#[pyfunction]
#[pyo3(signature = (incident, table, file, unit, expected_units, requests_schema, receipts_schema=None, mapping=None, thresholds=None, samples_from=None, receipts_from=None))]
#[allow(clippy::too_many_arguments)]
fn partial_frame<'py>(
    py: Python<'py>,
    incident: PathBuf,
    table: &str,
    file: PathBuf,
    unit: String,
    expected_units: Vec<String>,
    requests_schema: PathBuf,
    receipts_schema: Option<PathBuf>,
    mapping: Option<PathBuf>,
    thresholds: Option<Vec<(String, String)>>,
    samples_from: Option<Vec<u8>>,
    receipts_from: Option<Vec<u8>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let o = overrides(None, None, mapping, thresholds);
    let t = self::table(table)?;
    let s = schemas(requests_schema, receipts_schema);
    let bytes = py
        .detach(|| {
            rollproof::partial_frame(
                &incident,
                &o,
                &s,
                t,
                Path::new(&file),
                &unit,
                samples_from.map(|b| (PathBuf::from("samples_from"), b)),
                receipts_from.map(|b| (PathBuf::from("receipts_from"), b)),
                &expected_units,
            )
        })
        .map_err(input_error)?;
    Ok(PyBytes::new(py, &bytes))
}

/// The frames' partials merged into one, as bytes.
#[pyfunction]
#[pyo3(signature = (incident, parts, expected_units, requests_schema, receipts_schema=None, mapping=None, thresholds=None))]
#[allow(clippy::too_many_arguments)]
fn combine_frames<'py>(
    py: Python<'py>,
    incident: PathBuf,
    parts: Vec<Vec<u8>>,
    expected_units: Vec<String>,
    requests_schema: PathBuf,
    receipts_schema: Option<PathBuf>,
    mapping: Option<PathBuf>,
    thresholds: Option<Vec<(String, String)>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let o = overrides(None, None, mapping, thresholds);
    let s = schemas(requests_schema, receipts_schema);
    let parts = named(parts);
    let bytes = py
        .detach(|| rollproof::combine_frames(&incident, &o, &s, parts, &expected_units))
        .map_err(input_error)?;
    Ok(PyBytes::new(py, &bytes))
}

/// Whether a combined partial of frames asks for a sample round.
#[pyfunction]
#[pyo3(signature = (incident, combined, requests_schema, receipts_schema=None, mapping=None, thresholds=None))]
fn frames_need_samples(
    py: Python<'_>,
    incident: PathBuf,
    combined: Vec<u8>,
    requests_schema: PathBuf,
    receipts_schema: Option<PathBuf>,
    mapping: Option<PathBuf>,
    thresholds: Option<Vec<(String, String)>>,
) -> PyResult<bool> {
    let o = overrides(None, None, mapping, thresholds);
    let s = schemas(requests_schema, receipts_schema);
    py.detach(|| rollproof::frames_need_samples(&incident, &o, &s, &combined))
        .map_err(input_error)
}

/// The report of the frames' partials. `sources`: (table, name, input files) per table.
#[pyfunction]
#[pyo3(signature = (incident, parts, expected_units, sources, requests_schema, receipts_schema=None, mapping=None, thresholds=None, format=None, series=false))]
#[allow(clippy::too_many_arguments)]
fn merge_frames(
    py: Python<'_>,
    incident: PathBuf,
    parts: Vec<Vec<u8>>,
    expected_units: Vec<String>,
    sources: Vec<(String, String, Vec<String>)>,
    requests_schema: PathBuf,
    receipts_schema: Option<PathBuf>,
    mapping: Option<PathBuf>,
    thresholds: Option<Vec<(String, String)>>,
    format: Option<String>,
    series: bool,
) -> PyResult<Rendered> {
    let o = overrides(None, None, mapping, thresholds);
    let s = schemas(requests_schema, receipts_schema);
    let fmt = render_format(format.as_deref())?;
    let sources = sources
        .into_iter()
        .map(|(t, name, files)| {
            Ok(FrameSource {
                table: table(&t)?,
                name,
                files,
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    let parts = named(parts);
    let report = py
        .detach(|| {
            rollproof::merge_frames(
                &incident,
                &o,
                &s,
                parts,
                &expected_units,
                &sources,
                options(series || fmt == rollproof::Format::Html),
            )
        })
        .map_err(input_error)?;
    Ok(rendered(fmt, &report))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("InputError", m.py().get_type::<InputErrorPy>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(audit, m)?)?;
    m.add_function(wrap_pyfunction!(plan, m)?)?;
    m.add_function(wrap_pyfunction!(partial, m)?)?;
    m.add_function(wrap_pyfunction!(merge, m)?)?;
    m.add_function(wrap_pyfunction!(combine, m)?)?;
    m.add_function(wrap_pyfunction!(split_key_ranges, m)?)?;
    m.add_function(wrap_pyfunction!(finish_key_range, m)?)?;
    m.add_function(wrap_pyfunction!(partial_frame, m)?)?;
    m.add_function(wrap_pyfunction!(combine_frames, m)?)?;
    m.add_function(wrap_pyfunction!(frames_need_samples, m)?)?;
    m.add_function(wrap_pyfunction!(merge_frames, m)?)?;
    Ok(())
}
