//! The same incident in every input format gives the same verdict and figures.

use std::path::{Path, PathBuf};

use rollproof_gen::{fixture_scenarios, write_scenario, Naming, OutFormat, Request};
use serde_json::Value;

use crate::util::{audit_json, parquet_rows};

fn demo_in(dir: &Path, format: OutFormat, naming: Naming) -> Value {
    let demo = fixture_scenarios()
        .into_iter()
        .find(|s| s.name == "demo")
        .unwrap();
    write_scenario(&demo, dir, format, naming).unwrap();
    let (code, report) = audit_json(&dir.join("incident.toml"), &[]);
    assert_eq!(code, 1);
    report
}

#[test]
fn every_format_gives_identical_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = demo_in(
        &tmp.path().join("parquet"),
        OutFormat::Parquet,
        Naming::Canonical,
    );
    for (name, format) in [
        ("csv.gz", OutFormat::CsvGz),
        ("ndjson", OutFormat::Ndjson),
        ("ndjson.zst", OutFormat::NdjsonZst),
        ("arrow", OutFormat::ArrowFile),
        ("arrow-stream", OutFormat::ArrowStream),
    ] {
        let report = demo_in(&tmp.path().join(name), format, Naming::Canonical);
        assert_eq!(report["verdict"], reference["verdict"], "{name}");
        assert_eq!(
            report["checks"], reference["checks"],
            "{name}: checks differ from Parquet"
        );
        assert_eq!(report["rows"], reference["rows"], "{name}: row accounting");
    }
}

#[test]
fn opentelemetry_names_through_a_mapping_give_identical_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = demo_in(
        &tmp.path().join("canonical"),
        OutFormat::Parquet,
        Naming::Canonical,
    );
    for format in [OutFormat::Parquet, OutFormat::NdjsonZst, OutFormat::CsvGz] {
        let report = demo_in(
            &tmp.path().join(format.extension()),
            format,
            Naming::OpenTelemetry,
        );
        assert_eq!(
            report["checks"], reference["checks"],
            "{format:?} with OpenTelemetry names"
        );
    }
}

/// Writes the demo into `dir` with its requests in several files, `logs/requests-{i}.{ext}`,
/// one per part that `split` makes of them (a format and its rows), and the receipts, gold files
/// and captured state as the fixture has them. Returns the incident's path and the requests.
fn demo_split(
    dir: &Path,
    split: impl Fn(&[Request]) -> Vec<(OutFormat, Vec<Request>)>,
) -> (PathBuf, Vec<Request>) {
    let demo = fixture_scenarios()
        .into_iter()
        .find(|s| s.name == "demo")
        .unwrap();
    let (requests, receipts) = rollproof_gen::generate(&demo);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    for (i, (format, rows)) in split(&requests).into_iter().enumerate() {
        let batch = rollproof_gen::requests_batch(&rows, Naming::Canonical);
        let path = logs.join(format!("requests-{i}.{}", format.extension()));
        rollproof_gen::write_batches(&path, format, &[batch], 1000).unwrap();
    }
    let batch = rollproof_gen::receipts_batch(&receipts);
    let receipts_path = dir.join("receipts.parquet");
    rollproof_gen::write_batches(&receipts_path, OutFormat::Parquet, &[batch], 1000).unwrap();
    let incident =
        rollproof_gen::incident_toml(&demo, "logs/requests-*", Some("receipts.parquet"), None);
    std::fs::write(dir.join("incident.toml"), incident).unwrap();
    rollproof_gen::page::write_files(&demo, dir, Naming::Canonical).unwrap();
    (dir.join("incident.toml"), requests)
}

#[test]
fn globs_and_several_files_per_table() {
    let tmp = tempfile::tempdir().unwrap();
    // Three request files in three formats, split at arbitrary rows.
    let (incident, requests) = demo_split(tmp.path(), |requests| {
        vec![
            (OutFormat::Parquet, requests[..2500].to_vec()),
            (OutFormat::CsvGz, requests[2500..6100].to_vec()),
            (OutFormat::Ndjson, requests[6100..].to_vec()),
        ]
    });
    let (_, split) = audit_json(&incident, &[]);
    let (_, whole) = audit_json(&crate::util::fixture("demo").join("incident.toml"), &[]);
    // Everything but the evidence (which counts files) is the same.
    let without_evidence = |r: &Value| {
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["id"] != "evidence")
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(without_evidence(&split), without_evidence(&whole));
    // Three request files, the receipts, two gold files and the captured state.
    assert_eq!(
        crate::util::checks(&split)["evidence"]["metrics"]["input_files"],
        7
    );
    assert_eq!(split["inputs"].as_array().unwrap().len(), 7);
    let rows: u64 = split["inputs"].as_array().unwrap()[..3]
        .iter()
        .map(|i| i["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(rows, requests.len() as u64);
}

/// The evidence rows of one kind of finding may come from files of different formats: Parquet
/// hands low-cardinality strings over as dictionaries, CSV and NDJSON as plain strings. Each
/// evidence file holds the rows of every input file, as many as the single-file demo's.
#[test]
fn evidence_gathers_rows_from_files_of_different_formats() {
    let tmp = tempfile::tempdir().unwrap();
    // Every third row in each file, so that every kind of finding draws on all three.
    let formats = [OutFormat::Parquet, OutFormat::CsvGz, OutFormat::Ndjson];
    let (incident, _) = demo_split(tmp.path(), |requests| {
        let every_third = |i: usize| requests.iter().skip(i).step_by(3).cloned().collect();
        formats
            .iter()
            .enumerate()
            .map(|(i, f)| (*f, every_third(i)))
            .collect()
    });
    let evidence = |incident: &Path, dir: &Path| -> Vec<(String, u64)> {
        let dir_arg = dir.to_str().unwrap();
        let (code, _) = audit_json(incident, &["--evidence-dir", dir_arg]);
        assert_eq!(code, 1);
        let index: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap())
                .unwrap();
        index["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let name = format!("{}.{}", e["check"].as_str().unwrap(), e["kind"]);
                let rows = e["rows"].as_u64().unwrap();
                if let Some(file) = e["file"].as_str() {
                    let (in_file, _) = parquet_rows(&dir.join(file));
                    assert_eq!(in_file as u64, rows, "{name}: index and file agree");
                }
                (name, rows)
            })
            .collect()
    };
    let split = evidence(&incident, &tmp.path().join("ev-split"));
    let whole = evidence(
        &crate::util::fixture("demo").join("incident.toml"),
        &tmp.path().join("ev-whole"),
    );
    assert!(
        split.iter().filter(|(_, rows)| *rows > 0).count() >= 3,
        "{split:?}"
    );
    assert_eq!(split, whole);
}

/// Renames every input of the demo written as `format` to a name that says nothing about it
/// (as `access.log` or `spans` do), and rewrites the incident to match.
fn demo_renamed(dir: &Path, format: OutFormat, names: [&str; 2], explicit: bool) -> Value {
    let demo = fixture_scenarios()
        .into_iter()
        .find(|s| s.name == "demo")
        .unwrap();
    write_scenario(&demo, dir, format, Naming::Canonical).unwrap();
    let mut incident = std::fs::read_to_string(dir.join("incident.toml")).unwrap();
    for (table, new) in ["requests", "receipts"].iter().zip(names) {
        let old = format!("{table}.{}", format.extension());
        std::fs::rename(dir.join(&old), dir.join(new)).unwrap();
        let spec = if explicit {
            format!(
                "{{ path = \"{new}\", format = \"{}\" }}",
                format.format_name()
            )
        } else {
            format!("\"{new}\"")
        };
        incident = incident.replace(&format!("\"{old}\""), &spec);
    }
    std::fs::write(dir.join("incident.toml"), incident).unwrap();
    let (code, report) = audit_json(&dir.join("incident.toml"), &[]);
    assert_eq!(code, 1);
    report
}

#[test]
fn the_content_decides_the_format_whatever_the_name() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = demo_in(
        &tmp.path().join("parquet"),
        OutFormat::Parquet,
        Naming::Canonical,
    );
    for (i, format) in [
        OutFormat::Parquet,
        OutFormat::NdjsonZst,
        OutFormat::CsvGz,
        OutFormat::ArrowStream,
    ]
    .into_iter()
    .enumerate()
    {
        let report = demo_renamed(
            &tmp.path().join(format!("renamed-{i}")),
            format,
            ["access.log", "receipts.log.1"],
            false,
        );
        assert_eq!(report["checks"], reference["checks"], "{format:?} renamed");
        let formats: Vec<&str> = report["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["role"] == "requests" || i["role"] == "receipts")
            .map(|i| i["format"].as_str().unwrap())
            .collect();
        assert_eq!(formats, [format.format_name(); 2], "{format:?}");
    }
}

#[test]
fn an_input_may_name_its_format() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = demo_in(
        &tmp.path().join("parquet"),
        OutFormat::Parquet,
        Naming::Canonical,
    );
    let report = demo_renamed(
        &tmp.path().join("explicit"),
        OutFormat::Ndjson,
        ["spans", "effects"],
        true,
    );
    assert_eq!(report["checks"], reference["checks"]);
}

/// Rewrites a Parquet file as Spark, Hive or DuckDB write one: every string column plain Utf8
/// (dictionary pages in the file, but no Arrow schema saying so).
fn without_arrow_schema(from: &Path, to: &Path) {
    use arrow::array::{Array, ArrayRef, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::arrow_writer::{ArrowWriter, ArrowWriterOptions};
    use std::sync::Arc;
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(from).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut writer: Option<ArrowWriter<std::fs::File>> = None;
    for batch in reader {
        let batch = batch.unwrap();
        let columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| match c.data_type() {
                DataType::Dictionary(_, v) => arrow::compute::cast(c, v).unwrap(),
                _ => c.clone(),
            })
            .collect();
        let fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .zip(&columns)
            .map(|(f, c)| {
                Field::new(
                    f.name(),
                    c.data_type().clone(),
                    c.null_count() > 0 || f.is_nullable(),
                )
            })
            .collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let w = writer.get_or_insert_with(|| {
            let options = ArrowWriterOptions::new().with_skip_arrow_metadata(true);
            ArrowWriter::try_new_with_options(
                std::fs::File::create(to).unwrap(),
                batch.schema(),
                options,
            )
            .unwrap()
        });
        w.write(&batch).unwrap();
    }
    writer.unwrap().close().unwrap();
}

#[test]
fn parquet_without_an_arrow_schema_reads_dictionary_columns_as_dictionaries() {
    // The figures must not depend on whether the writer stored an Arrow schema: dictionary
    // columns are chosen from the footer's page encodings, and read as Arrow dictionaries.
    let dir = crate::util::copy_fixture("demo");
    let (_, expected) = audit_json(&dir.path().join("incident.toml"), &[]);
    let requests = dir.path().join("requests.parquet");
    let plain = dir.path().join("plain.parquet");
    without_arrow_schema(&requests, &plain);
    std::fs::rename(&plain, &requests).unwrap();
    let (_, report) = audit_json(&dir.path().join("incident.toml"), &[]);
    assert_eq!(report["checks"], expected["checks"]);
    assert_eq!(report["rows"], expected["rows"]);
    assert_eq!(report["impact"], expected["impact"]);
}
