//! Bad input gets exit 2 and one message naming the file, the column, what was found, what was
//! expected, and a hint. Never a panic.

use std::path::Path;

use crate::util::{code, fixture, run_in, stderr, stdout};

const INCIDENT: &str = r#"id = "INC-T"
flip_at = "2026-11-27T10:15:00Z"
root_cause_url = "https://tracker.example/T"
[inputs]
requests = "requests.csv"
[windows]
baseline = ["2026-11-27T08:30:00Z", "2026-11-27T09:00:00Z"]
[expected_pins]
build_id = "b-1041"
[cache]
namespace = "ns:{build_id}"
"#;

const HEADER: &str = "ts,request_id,region,user_id,build_id,cache_ns,cache_hit,status,latency_ms\n";

/// Writes `incident.toml` (with `incident`) and `files` into a temp folder, runs the audit there.
fn audit(incident: &str, files: &[(&str, &[u8])]) -> (i32, String, String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("incident.toml"), incident).unwrap();
    for (name, content) in files {
        std::fs::write(tmp.path().join(name), content).unwrap();
    }
    let out = run_in(tmp.path(), &["audit", "incident.toml", "--quiet"]);
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "panic: {err}");
    (code(&out), stdout(&out), err, tmp)
}

fn redact(text: &str, dir: &Path) -> String {
    text.replace(&dir.display().to_string(), "[TMP]")
        .replace(env!("CARGO_MANIFEST_DIR"), "[ROOT]")
}

/// Asserts exit 2 and snapshots the message.
fn assert_input_error(name: &str, incident: &str, files: &[(&str, &[u8])], must_mention: &[&str]) {
    let (code, out, err, tmp) = audit(incident, files);
    assert_eq!(code, 2, "{name}: expected exit 2, stderr: {err}");
    assert!(out.is_empty(), "{name}: nothing on stdout on error");
    assert!(err.contains("hint:"), "{name}: a hint: {err}");
    for m in must_mention {
        assert!(
            err.contains(m),
            "{name}: stderr should mention {m:?}: {err}"
        );
    }
    insta::assert_snapshot!(name, redact(&err, tmp.path()));
}

fn parquet_bytes() -> Vec<u8> {
    std::fs::read(fixture("demo").join("requests.parquet")).unwrap()
}

#[test]
fn missing_file() {
    assert_input_error(
        "missing_file",
        INCIDENT,
        &[],
        &["requests.csv", "no such file"],
    );
}

#[test]
fn truncated_parquet() {
    let bytes = parquet_bytes();
    let incident = INCIDENT.replace("requests.csv", "requests.parquet");
    assert_input_error(
        "truncated_parquet",
        &incident,
        &[("requests.parquet", &bytes[..bytes.len() / 2])],
        &["requests.parquet", "parquet"],
    );
}

#[test]
fn not_parquet_at_all() {
    // The content decides the format; bytes that are no known format and not text are refused.
    let incident = INCIDENT.replace("requests.csv", "requests.parquet");
    assert_input_error(
        "not_parquet",
        &incident,
        &[("requests.parquet", b"\x00\x01\x02 not a log export")],
        &["requests.parquet", "binary file of unknown format"],
    );
}

#[test]
fn missing_ts_column() {
    let csv = "request_id,status\nr-1,200\n";
    assert_input_error(
        "missing_ts",
        INCIDENT,
        &[("requests.csv", csv.as_bytes())],
        &["requests.csv", "`ts`", "`request_id`"],
    );
}

#[test]
fn unparseable_value_names_the_row() {
    let csv = format!("{HEADER}2026-11-27T10:16:00Z,r-1,eu,u-1,b-1041,ns:b-1041,true,200,10.5\n2026-11-27T10:16:01Z,r-2,eu,u-1,b-1041,ns:b-1041,true,abc,11.0\n");
    assert_input_error(
        "unparseable_status",
        INCIDENT,
        &[("requests.csv", csv.as_bytes())],
        &["column `status`", "row 2", "`abc`", "an integer"],
    );
}

/// One OTLP export request (collector spelling) of one SERVER span with `attributes`.
fn otlp_line(attributes: &str) -> String {
    format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"d269b633813fc60c","kind":2,"startTimeUnixNano":"1795767600000000000","endTimeUnixNano":"1795767600010000000","attributes":[{attributes}]}}]}}]}}]}}"#
    ) + "\n"
}

#[test]
fn a_malformed_otlp_value_is_an_error_only_where_it_is_read() {
    let incident = INCIDENT
        .replace("requests.csv", "spans.jsonl")
        .replace("[cache]\nnamespace = \"ns:{build_id}\"\n", "");
    // `service.version` is the preset's `build_id`: its value is read, and `{}` is no integer.
    let mapped = otlp_line(r#"{"key":"service.version","value":{"intValue":{}}}"#);
    assert_input_error(
        "otlp_malformed_mapped_value",
        &incident,
        &[("spans.jsonl", mapped.as_bytes())],
        &["spans.jsonl", "line 1", "attribute `service.version`"],
    );
    // An attribute no column maps is never parsed: the same value there is no error.
    let unmapped = otlp_line(
        r#"{"key":"service.version","value":{"stringValue":"b-1041"}},{"key":"x.unmapped","value":{"intValue":{}}}"#,
    );
    let (code, _, err, _tmp) = audit(&incident, &[("spans.jsonl", unmapped.as_bytes())]);
    assert_ne!(code, 2, "an unmapped attribute's value is not read: {err}");
}

#[test]
fn unparseable_timestamp() {
    let csv = format!("{HEADER}27/11/2026 10:16,r-1,eu,u-1,b-1041,ns:b-1041,true,200,10.5\n");
    assert_input_error(
        "unparseable_ts",
        INCIDENT,
        &[("requests.csv", csv.as_bytes())],
        &["column `ts`", "row 1", "RFC 3339"],
    );
}

#[test]
fn wrong_column_type_in_parquet() {
    // The demo's `region` is a string: map `latency_ms` to it.
    let incident = INCIDENT
        .replace("requests.csv", "requests.parquet")
        .replace("[inputs]\n", "[inputs]\nmapping = \"mapping.toml\"\n");
    let mapping = b"[requests]\ncache_hit = \"latency_ms\"\n";
    assert_input_error(
        "wrong_type_parquet",
        &incident,
        &[
            ("requests.parquet", &parquet_bytes()),
            ("mapping.toml", mapping),
        ],
        &["column `latency_ms` (canonical `cache_hit`)", "a boolean"],
    );
}

#[test]
fn unparseable_date_in_incident() {
    let incident = INCIDENT.replace("2026-11-27T10:15:00Z", "yesterday at ten");
    assert_input_error(
        "incident_bad_flip",
        &incident,
        &[],
        &["incident.toml", "`flip_at`", "`yesterday at ten`"],
    );
}

#[test]
fn invalid_incident_toml() {
    assert_input_error(
        "incident_bad_toml",
        "id = \"x\"\nflip_at = \n",
        &[],
        &["incident.toml", "line 2"],
    );
}

#[test]
fn unknown_threshold_lists_valid_ones() {
    let incident = format!("{INCIDENT}[thresholds]\np95_ratio = 1.2\n");
    assert_input_error(
        "unknown_threshold",
        &incident,
        &[],
        &["`thresholds.p95_ratio`", "valid thresholds are"],
    );
}

#[test]
fn glob_matching_nothing() {
    let incident = INCIDENT.replace("requests.csv", "logs/requests-*.parquet");
    assert_input_error(
        "glob_matches_nothing",
        &incident,
        &[],
        &["requests-*.parquet", "matched no file"],
    );
}

#[test]
fn mapping_to_a_column_that_does_not_exist() {
    let incident = INCIDENT.replace("[inputs]\n", "[inputs]\nmapping = \"mapping.toml\"\n");
    let csv = format!("{HEADER}2026-11-27T10:16:00Z,r-1,eu,u-1,b-1041,ns:b-1041,true,200,10.5\n");
    assert_input_error(
        "mapping_missing_column",
        &incident,
        &[
            ("requests.csv", csv.as_bytes()),
            ("mapping.toml", b"[requests]\nstatus = \"http.status\"\n"),
        ],
        &["`http.status`", "valid columns are"],
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let incident = INCIDENT.replace(
        "requests = \"requests.csv\"",
        "requests = [\"a.csv\", \"b.csv\"]",
    );
    let (code, _, err, _) = audit(
        &incident,
        &[("a.csv", b"status\n200\n"), ("b.csv", b"request_id\nr-1\n")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("a.csv") && err.contains("b.csv"), "{err}");
}

#[test]
fn absent_optional_columns_skip_their_checks() {
    // No cache, latency, quality or user columns: those checks skip, the others run.
    let mut csv = String::from("ts,request_id,build_id,status\n");
    for i in 0..300 {
        csv.push_str(&format!(
            "2026-11-27T08:{:02}:{:02}Z,b-{i},b-1041,200\n",
            30 + i / 60,
            i % 60
        ));
        csv.push_str(&format!(
            "2026-11-27T10:{:02}:{:02}Z,p-{i},b-1041,200\n",
            25 + i / 60,
            i % 60
        ));
    }
    let tmp = tempfile::tempdir().unwrap();
    // No [cache]: with it, cache columns are required (see the next test).
    let incident = INCIDENT.replace("[cache]\nnamespace = \"ns:{build_id}\"\n", "");
    std::fs::write(tmp.path().join("incident.toml"), incident).unwrap();
    std::fs::write(tmp.path().join("requests.csv"), csv).unwrap();
    let (code, report) = crate::util::audit_json(&tmp.path().join("incident.toml"), &[]);
    let checks = crate::util::checks(&report);
    for id in [
        "cache_rotation",
        "mixed_versions",
        "latency",
        "quality",
        "duplicate_effects",
        "writer_freeze",
    ] {
        assert_eq!(
            checks[id]["status"], "skip",
            "{id}: {}",
            checks[id]["summary"]
        );
    }
    assert_eq!(checks["pins"]["status"], "pass");
    assert_eq!(checks["pins"]["metrics"]["requests_checked"], 300);
    assert_eq!(checks["error_recovery"]["status"], "pass");
    assert_eq!(checks["evidence"]["status"], "warn");
    assert_eq!(report["verdict"], "warn");
    assert_eq!(code, 0);
}

#[test]
fn header_only_csv_is_inconclusive_not_pass() {
    let (code, out, err, _) = audit(INCIDENT, &[("requests.csv", HEADER.as_bytes())]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("INCONCLUSIVE"), "{out}");
}

#[test]
fn rows_without_ts_are_counted_as_rejected() {
    let csv = format!("{HEADER}2026-11-27T10:16:00Z,r-1,eu,u-1,b-1041,ns:b-1041,true,200,10.5\n,r-2,eu,u-1,b-1041,ns:b-1041,true,200,11.0\n");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("incident.toml"), INCIDENT).unwrap();
    std::fs::write(tmp.path().join("requests.csv"), csv).unwrap();
    let (_, report) = crate::util::audit_json(&tmp.path().join("incident.toml"), &[]);
    assert_eq!(report["inputs"][0]["rows"], 2);
    assert_eq!(report["inputs"][0]["rows_rejected"], 1);
    assert_eq!(report["rows"]["requests_rejected"], 1);
    assert_eq!(report["checks"][0]["metrics"]["requests_checked"], 1);
}

#[test]
fn usage_errors_exit_2() {
    let out = crate::util::run(&["audit"]);
    assert_eq!(code(&out), 2);
    let out = crate::util::run(&["audit", "fixtures/demo/incident.toml", "--threads", "0"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--threads"));
    let out = crate::util::run(&["explain", "no-such-check"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("checks are pins"));
}

#[test]
fn pins_under_other_names_are_an_input_error_not_a_skip() {
    // A gate that opens because nothing was checked is the worst outcome: columns named
    // `BuildID` instead of `build_id` must stop the run, with the fix.
    let incident = INCIDENT.replace("[cache]\nnamespace = \"ns:{build_id}\"\n", "");
    let csv = "ts,request_id,BuildID,status\n2026-11-27T10:16:00Z,r-1,b-1041,200\n";
    assert_input_error(
        "pins_under_other_names",
        &incident,
        &[("requests.csv", csv.as_bytes())],
        &[
            "no column of the expected pins (`build_id`)",
            "`BuildID`",
            "build_id = \"BuildID\"",
        ],
    );
}

#[test]
fn a_cache_section_without_cache_columns_is_an_input_error() {
    let csv = "ts,request_id,build_id,status\n2026-11-27T10:16:00Z,r-1,b-1041,200\n";
    assert_input_error(
        "cache_without_columns",
        INCIDENT,
        &[("requests.csv", csv.as_bytes())],
        &["neither cache column (`cache_ns`, `cache_hit`)", "[cache]"],
    );
}

#[test]
fn receipts_given_as_the_requests_are_an_input_error() {
    let demo = fixture("demo");
    let tmp = tempfile::tempdir().unwrap();
    let out = run_in(
        tmp.path(),
        &[
            "audit",
            demo.join("incident.toml").to_str().unwrap(),
            "--requests",
            demo.join("receipts.parquet").to_str().unwrap(),
        ],
    );
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(err.contains("receipts given as the requests"), "{err}");
    let out = run_in(
        tmp.path(),
        &[
            "audit",
            demo.join("incident.toml").to_str().unwrap(),
            "--receipts",
            demo.join("requests.parquet").to_str().unwrap(),
        ],
    );
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(err.contains("request logs given as the receipts"), "{err}");
}

#[test]
fn region_flip_inside_the_baseline() {
    let incident = format!("{INCIDENT}[flip_at_by_region]\neu-west = \"2026-11-27T08:45:00Z\"\n");
    assert_input_error(
        "region_flip_in_baseline",
        &incident,
        &[],
        &[
            "`flip_at_by_region.eu-west`",
            "2026-11-27T08:45:00Z",
            "before the baseline ends",
        ],
    );
}

#[test]
fn captured_state_with_a_bad_pin_and_time() {
    let incident = INCIDENT.replace(
        "requests = \"requests.csv\"",
        "requests = \"requests.csv\"\ncaptured_state = \"captured.toml\"",
    );
    let requests =
        format!("{HEADER}2026-11-27T08:31:00Z,r-1,eu,u-1,b-1041,ns:b-1041,true,200,12\n");
    assert_input_error(
        "captured_state_bad_values",
        &incident,
        &[
            ("requests.csv", requests.as_bytes()),
            (
                "captured.toml",
                b"captured_at = \"10:14\"\nprompt_ver = 7\n",
            ),
        ],
        &[
            "captured.toml",
            "`captured_at`",
            "`prompt_ver`",
            "as a string",
        ],
    );
}

#[test]
fn gold_file_without_question_id() {
    let incident = INCIDENT.replace(
        "requests = \"requests.csv\"",
        "requests = \"requests.csv\"\ngold = \"gold.csv\"\ngold_baseline = \"gold_lkg.csv\"",
    );
    let requests =
        format!("{HEADER}2026-11-27T08:31:00Z,r-1,eu,u-1,b-1041,ns:b-1041,true,200,12\n");
    let gold = b"ts,question,delta_s,coverage\n2026-11-27T10:30:00Z,q-1,0.3,0.8\n";
    assert_input_error(
        "gold_without_question_id",
        &incident,
        &[
            ("requests.csv", requests.as_bytes()),
            ("gold.csv", gold),
            ("gold_lkg.csv", gold),
        ],
        &["gold.csv", "question_id"],
    );
}
