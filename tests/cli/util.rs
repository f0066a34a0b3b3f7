//! Running the binary in a clean environment, and reading its JSON.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("fixtures").join(name)
}

/// A fixture's inputs (all but `expected.json`) copied into a new temporary folder.
pub fn copy_fixture(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.file_name().unwrap() != "expected.json" {
            std::fs::copy(&path, tmp.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    tmp
}

/// Runs `rollproof ARGS` from the crate root with a minimal environment.
pub fn run(args: &[&str]) -> Output {
    run_in(&root(), args)
}

pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    run_env(dir, args, &[])
}

/// [`run_in`] with environment variables set.
pub fn run_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    assert_cmd::Command::new(assert_cmd::cargo::cargo_bin!("rollproof"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("rollproof runs")
}

pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("utf-8 stderr")
}

/// `rollproof audit INCIDENT --format json` → (exit code, report).
pub fn audit_json(incident: &Path, extra: &[&str]) -> (i32, Value) {
    let incident = incident.to_str().expect("utf-8 path");
    let mut args = vec!["audit", incident, "--format", "json", "--quiet"];
    args.extend_from_slice(extra);
    let out = run(&args);
    let code = code(&out);
    assert!(
        code == 0 || code == 1 || code == 3,
        "audit of {incident} exited {code}: {}",
        stderr(&out)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("stdout is the JSON report");
    assert_schema(&report);
    (code, report)
}

/// Asserts that `report` is valid against docs/reference/report.schema.json: every report a
/// test reads goes through this, so the published schema is tested against real reports.
pub fn assert_schema(report: &Value) {
    use std::sync::OnceLock;
    static SCHEMA: OnceLock<(boon::Schemas, boon::SchemaIndex)> = OnceLock::new();
    let (schemas, index) = SCHEMA.get_or_init(|| {
        let path = root().join("docs/reference/report.schema.json");
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler
            .add_resource("rollproof-report.schema.json", schema)
            .unwrap();
        let index = compiler
            .compile("rollproof-report.schema.json", &mut schemas)
            .expect("the published schema compiles");
        (schemas, index)
    });
    if let Err(e) = schemas.validate(report, *index) {
        panic!("the report does not match docs/reference/report.schema.json: {e:#}");
    }
}

/// The report's checks as id → check object.
pub fn checks(report: &Value) -> std::collections::BTreeMap<String, Value> {
    report["checks"]
        .as_array()
        .expect("checks array")
        .iter()
        .map(|c| (c["id"].as_str().expect("id").to_string(), c.clone()))
        .collect()
}

/// The rows of a Parquet file and its column names.
pub fn parquet_rows(path: &Path) -> (usize, Vec<String>) {
    let file = std::fs::File::open(path).unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let columns = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let rows = reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
    (rows, columns)
}

/// Copies a Parquet file with one more column, `payload`: `bytes` of text per row, that no check
/// reads (for tests of what a reader fetches).
pub fn widen_parquet(from: &Path, to: &Path, bytes: usize) {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;

    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(from).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut writer = None;
    for batch in reader {
        let batch = batch.unwrap();
        let payload: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..batch.num_rows()).map(|i| format!("{i:0>width$}", width = bytes)),
        ));
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("payload", DataType::Utf8, false));
        let mut columns = batch.columns().to_vec();
        columns.push(payload);
        let wide = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        writer
            .get_or_insert_with(|| {
                ArrowWriter::try_new(std::fs::File::create(to).unwrap(), wide.schema(), None)
                    .unwrap()
            })
            .write(&wide)
            .unwrap();
    }
    writer.unwrap().close().unwrap();
}

/// The first `max` bytes of `s` (at a character boundary), for assertion messages.
pub fn clip(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
