//! The README's recipes on logs written by real software: nginx's JSON access log (a real nginx
//! wrote it), Envoy's JSON access log, and OTLP/JSON from the OpenTelemetry Python SDK in both
//! spellings. Each fixture folder under `fixtures/real/` has the script that made it and the
//! figures that script planted (`expected.json`, its own oracle); these tests audit the committed
//! files and, with the real components, files made afresh.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::util::{audit_json, checks, root};

fn expected(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap()
}

fn real(name: &str) -> std::path::PathBuf {
    root().join("fixtures").join("real").join(name)
}

/// Runs a fixture script into `out`; the real software must be installed (`.ci/run` does it).
fn regenerate(name: &str, out: &Path) {
    let script = real(name).join("make.py");
    let status = Command::new("python3")
        .arg(&script)
        .arg(out)
        .status()
        .expect("python3 runs");
    assert!(
        status.success(),
        "{} failed: the test needs the real components (see README, Development)",
        script.display()
    );
}

fn assert_nginx(dir: &Path) {
    let want = expected(dir);
    let (code, report) = audit_json(&dir.join("incident.toml"), &[]);
    assert_eq!(code, 1, "the planted faults fail the gate");
    let c = checks(&report);
    for key in ["requests_checked", "violations"] {
        assert_eq!(c["pins"]["metrics"][key], want["pins"][key], "pins.{key}");
    }
    for key in ["hits_checked", "stale_hits"] {
        assert_eq!(
            c["cache_rotation"]["metrics"][key], want["cache_rotation"][key],
            "cache_rotation.{key}"
        );
    }
    // Health checks nginx answered itself and abandoned requests (499): left out, counted.
    let left_out =
        want["nginx_answered_itself"].as_u64().unwrap() + want["abandoned"].as_u64().unwrap();
    assert_eq!(report["rows"]["requests_dropped"], left_out);
    assert_eq!(report["rows"]["requests_read"], want["client_requests"]);
    let formats: Vec<&str> = report["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["format"].as_str().unwrap())
        .collect();
    assert_eq!(
        formats,
        ["ndjson", "ndjson"],
        "access-*.log* read by content"
    );
    assert_eq!(report["inputs"][0]["compression"], "gzip");
}

#[test]
fn nginx_json_access_log() {
    assert_nginx(&real("nginx"));
}

#[test]
fn nginx_json_access_log_written_afresh_by_a_real_nginx() {
    let tmp = tempfile::tempdir().unwrap();
    regenerate("nginx", tmp.path());
    assert_nginx(tmp.path());
}

#[test]
fn envoy_json_access_log() {
    let dir = real("envoy");
    let want = expected(&dir);
    let (code, report) = audit_json(&dir.join("incident.toml"), &[]);
    assert_eq!(code, 1);
    let pins = &checks(&report)["pins"]["metrics"];
    assert_eq!(pins["requests_checked"], want["pins"]["requests_checked"]);
    assert_eq!(pins["violations"], want["pins"]["violations"]);
    assert_eq!(report["rows"]["requests_dropped"], want["local_replies"]);
    assert_eq!(report["rows"]["requests_read"], want["requests"]);
}

fn assert_otlp(dir: &Path) {
    let want = expected(dir);
    let (code, collector) = audit_json(&dir.join("incident.toml"), &[]);
    let (_, protojson) = audit_json(&dir.join("incident-protojson.toml"), &[]);
    assert_eq!(code, 1);
    assert_eq!(
        collector["checks"], protojson["checks"],
        "hex ids and integer enums read as base64 ids and enum names"
    );
    let c = checks(&collector);
    // One request per SERVER span: the INTERNAL children are not requests.
    assert_eq!(collector["rows"]["requests_read"], want["requests"]);
    assert_eq!(collector["rows"]["receipts_read"], want["receipts"]);
    for key in ["requests_checked", "violations", "by_region"] {
        assert_eq!(c["pins"]["metrics"][key], want["pins"][key], "pins.{key}");
    }
    for key in ["executions", "duplicate_keys", "extra_executions"] {
        assert_eq!(
            c["duplicate_effects"]["metrics"][key], want["duplicate_effects"][key],
            "duplicate_effects.{key}"
        );
    }
    for key in ["baseline_p95_ms", "post_p95_ms"] {
        let (got, exact) = (
            c["latency"]["metrics"][key].as_f64().unwrap(),
            want["latency"][key].as_f64().unwrap(),
        );
        assert!(
            (got - exact).abs() <= exact * 0.01,
            "{key}: {got} vs {exact}"
        );
    }
    // The receipts joined to the requests by trace id (the preset), found in the logs.
    assert_eq!(c["reconciliation"]["metrics"]["orphan_receipts"], 0);
}

#[test]
fn opentelemetry_spans_and_logs_in_both_json_spellings() {
    assert_otlp(&real("otlp"));
}

#[test]
fn opentelemetry_files_written_afresh_by_the_sdk() {
    let tmp = tempfile::tempdir().unwrap();
    regenerate("otlp", tmp.path());
    assert_otlp(tmp.path());
}

#[test]
fn which_spans_are_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = real("otlp");
    for file in ["spans.jsonl.gz", "receipts.jsonl", "incident.toml"] {
        std::fs::copy(dir.join(file), tmp.path().join(file)).unwrap();
    }
    let mapping = std::fs::read_to_string(dir.join("mapping.toml")).unwrap();
    let want = expected(&dir)["spans_written"].as_u64().unwrap();
    for (spans, rows) in [("all", want), ("root", want / 2), ("server", want / 2)] {
        std::fs::write(
            tmp.path().join("mapping.toml"),
            format!("[otlp]\nspans = \"{spans}\"\n\n{mapping}"),
        )
        .unwrap();
        let (_, report) = audit_json(&tmp.path().join("incident.toml"), &[]);
        assert_eq!(report["rows"]["requests_read"], rows, "spans = {spans}");
    }
}

#[test]
fn the_otlp_preset_printed_by_explain_is_a_valid_mapping() {
    let out = crate::util::run(&["explain", "otlp"]);
    assert_eq!(crate::util::code(&out), 0);
    let text = crate::util::stdout(&out);
    assert!(text.contains("request_id = \"trace_id\""));
    rollproof::fuzzing::Mapping::parse(Path::new("preset.toml"), &text)
        .expect("the preset parses as a mapping file");
}
