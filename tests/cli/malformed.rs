//! The malformed-input matrix (docs/malformed-input.md): every case either exits 2 with a message
//! naming the file (and column and row where there is one), or is audited with the problem
//! counted in the report. Cases that already have a snapshot live in `bad_input.rs`.

use crate::util::{audit_json, checks, code, run_in, stderr};

const INCIDENT: &str = r#"id = "INC-M"
flip_at = "2026-11-27T10:15:00Z"
root_cause_url = "https://tracker.example/M"
[inputs]
requests = "requests.csv"
[windows]
baseline = ["2026-11-27T08:30:00Z", "2026-11-27T09:00:00Z"]
[expected_pins]
build_id = "b-1"
"#;

const HEADER: &str =
    "ts,request_id,user_id,build_id,status,latency_ms,delta_s,coverage,lambda_state\n";

/// 300 clean requests in the baseline window and 300 in the post window.
fn clean_rows() -> String {
    let mut csv = String::from(HEADER);
    for i in 0..300 {
        let (m, s) = (i / 60, i % 60);
        csv.push_str(&format!(
            "2026-11-27T08:3{m}:{s:02}Z,b-{i},u-{},b-1,200,100.5,0.3,0.8,convergent\n",
            i % 40
        ));
        csv.push_str(&format!(
            "2026-11-27T10:3{m}:{s:02}Z,p-{i},u-{},b-1,200,101.5,0.3,0.8,convergent\n",
            i % 40
        ));
    }
    csv
}

/// Exit 2, nothing on stdout, a hint, and each of `mentions` in the message.
fn rejected(incident: &str, files: &[(&str, &[u8])], mentions: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("incident.toml"), incident).unwrap();
    for (name, content) in files {
        std::fs::write(tmp.path().join(name), content).unwrap();
    }
    let out = run_in(tmp.path(), &["audit", "incident.toml", "--quiet"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "expected exit 2: {err}");
    assert!(out.stdout.is_empty());
    assert!(err.contains("hint:"), "{err}");
    for m in mentions {
        assert!(err.contains(m), "should mention {m:?}: {err}");
    }
}

/// The audit goes on; returns the report.
fn audited(csv: &str) -> (i32, serde_json::Value) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("incident.toml"), INCIDENT).unwrap();
    std::fs::write(tmp.path().join("requests.csv"), csv).unwrap();
    audit_json(&tmp.path().join("incident.toml"), &[])
}

#[test]
fn empty_parquet_file() {
    let incident = INCIDENT.replace("requests.csv", "requests.parquet");
    rejected(
        &incident,
        &[("requests.parquet", b"")],
        &["requests.parquet", "an empty file"],
    );
}

#[test]
fn json_array_is_not_ndjson() {
    let incident = INCIDENT.replace("requests.csv", "requests.json");
    rejected(
        &incident,
        &[("requests.json", b"[{\"ts\": \"2026-11-27T10:16:00Z\"}]\n")],
        &["requests.json", "a JSON array", "jq -c"],
    );
}

#[test]
fn empty_csv_file() {
    rejected(
        INCIDENT,
        &[("requests.csv", b"")],
        &["requests.csv", "an empty file"],
    );
}

#[test]
fn wrong_magic_behind_an_arrow_extension() {
    let incident = INCIDENT.replace("requests.csv", "requests.arrow");
    rejected(
        &incident,
        &[("requests.arrow", b"PAR1 not really")],
        &["requests.arrow", "arrow"],
    );
}

#[test]
fn ragged_csv_row() {
    let csv = format!("{}2026-11-27T10:31:00Z,p-x,u-1\n", clean_rows());
    rejected(
        INCIDENT,
        &[("requests.csv", csv.as_bytes())],
        &["requests.csv", "csv"],
    );
}

#[test]
fn invalid_utf8_in_csv() {
    let mut csv = clean_rows().into_bytes();
    csv.extend_from_slice(b"2026-11-27T10:31:00Z,p-\xff\xfe,u-1,b-1,200,1,0.3,0.8,convergent\n");
    rejected(INCIDENT, &[("requests.csv", &csv)], &["requests.csv"]);
}

#[test]
fn multibyte_character_split_by_a_csv_delimiter() {
    // `\xe2\x86` and `\x92` are each invalid, but the row without its commas is valid UTF-8
    // (`→`): arrow-csv validates only that, so rollproof checks each field (a fuzz finding).
    let mut csv = clean_rows().into_bytes();
    csv.extend_from_slice(b"2026-11-27T10:31:00Z,p-\xe2\x86,\x92,b-1,200,1,0.3,0.8,convergent\n");
    let records = clean_rows().lines().count();
    rejected(
        INCIDENT,
        &[("requests.csv", &csv)],
        &[
            "requests.csv",
            &format!("invalid UTF-8 data for record {records} and field request_id"),
            "must be UTF-8 text",
        ],
    );
}

#[test]
fn mixed_types_in_an_ndjson_column() {
    let incident = INCIDENT.replace("requests.csv", "requests.jsonl");
    let lines = "{\"ts\": \"2026-11-27T10:16:00Z\", \"status\": 200}\n{\"ts\": \"2026-11-27T10:16:01Z\", \"status\": \"teapot\"}\n";
    rejected(
        &incident,
        &[("requests.jsonl", lines.as_bytes())],
        &["requests.jsonl", "column `status`", "row 2", "`teapot`"],
    );
}

#[test]
fn ndjson_line_that_is_not_json() {
    let incident = INCIDENT.replace("requests.csv", "requests.jsonl");
    let lines = "{\"ts\": \"2026-11-27T10:16:00Z\"}\nthis is not json\n";
    rejected(
        &incident,
        &[("requests.jsonl", lines.as_bytes())],
        &["requests.jsonl", "ndjson"],
    );
}

#[test]
fn timestamp_without_a_zone() {
    let csv = format!("{HEADER}2026-11-27 10:16:00,p-1,u-1,b-1,200,1,0.3,0.8,convergent\n");
    rejected(
        INCIDENT,
        &[("requests.csv", csv.as_bytes())],
        &["column `ts`", "row 1", "with a zone"],
    );
}

#[test]
fn swapped_windows_are_refused_with_their_values() {
    // Post before the flip and baseline after it: a pass here would compare the wrong traffic.
    let incident = INCIDENT.replace(
        "baseline = [\"2026-11-27T08:30:00Z\", \"2026-11-27T09:00:00Z\"]",
        "baseline = [\"2026-11-27T10:30:00Z\", \"2026-11-27T11:00:00Z\"]\npost = [\"2026-11-27T08:30:00Z\", \"2026-11-27T09:00:00Z\"]",
    );
    rejected(
        &incident,
        &[("requests.csv", clean_rows().as_bytes())],
        &[
            "`windows.baseline`",
            "ending at 2026-11-27T11:00:00Z after the flip at 2026-11-27T10:15:00Z",
            "`windows.post`",
            "starting at 2026-11-27T08:30:00Z before the flip",
            "swapped",
        ],
    );
}

#[test]
fn a_canary_with_a_flip_or_rollback_windows_is_refused() {
    let incident = r#"mode = "canary"
id = "C"
flip_at = "2026-11-27T10:15:00Z"
[inputs]
requests = "requests.csv"
[windows]
baseline = ["2026-11-27T08:30:00Z", "2026-11-27T09:00:00Z"]
[canary]
baseline_arm = "stable"
canary_arm = "canary"
[expected_pins.stable]
build_id = "b-1"
[expected_pins.canary]
build_id = "b-2"
"#;
    rejected(
        incident,
        &[("requests.csv", clean_rows().as_bytes())],
        &[
            "`flip_at` in a canary audit",
            "[windows] table in a canary audit",
        ],
    );
}

#[test]
fn window_that_ends_before_it_starts() {
    let incident = INCIDENT.replace(
        "baseline = [\"2026-11-27T08:30:00Z\", \"2026-11-27T09:00:00Z\"]",
        "baseline = [\"2026-11-27T09:00:00Z\", \"2026-11-27T08:30:00Z\"]",
    );
    rejected(
        &incident,
        &[("requests.csv", clean_rows().as_bytes())],
        &["`windows.baseline`", "end is after its start"],
    );
}

#[test]
fn canary_without_an_arm_column() {
    let incident = "mode = \"canary\"\nid = \"C\"\n[inputs]\nrequests = \"requests.csv\"\n[canary]\nbaseline_arm = \"stable\"\ncanary_arm = \"canary\"\n[expected_pins.stable]\nbuild_id = \"b-1\"\n[expected_pins.canary]\nbuild_id = \"b-2\"\n";
    rejected(
        incident,
        &[("requests.csv", clean_rows().as_bytes())],
        &["`arm`"],
    );
}

#[test]
fn absurd_values_are_counted_not_used() {
    let mut csv = clean_rows();
    csv.push_str("2026-11-27T10:31:00Z,p-a,u-1,b-1,0,-5,1.5,-0.2,sideways\n");
    csv.push_str("2026-11-27T10:31:01Z,p-b,u-1,b-1,200,100,0.3,0.8,\u{2192}\n");
    let (_, report) = audited(&csv);
    let c = checks(&report);
    let e = &c["error_recovery"]["metrics"];
    assert_eq!(e["status_invalid"], 1, "status 0 is excluded and counted");
    assert_eq!(c["latency"]["metrics"]["negative_latency_rejected"], 1);
    let q = &c["quality"]["metrics"];
    assert_eq!(q["delta_s_out_of_range"], 1);
    assert_eq!(q["coverage_out_of_range"], 1);
    assert_eq!(
        q["lambda_unknown"], 1,
        "an unknown λ state is never silently convergent"
    );
    assert_eq!(q["lambda_unknown_values"]["sideways"], 1);
    assert_eq!(c["quality"]["status"], "warn");
    // The symbol → is convergent: 301 known states in the post window, none flipped.
    assert_eq!(q["post_lambda_flip_rate"], 0.0);
}

#[test]
fn all_null_column_is_inconclusive_not_pass() {
    let csv = clean_rows().replace(",200,", ",,");
    let (code, report) = audited(&csv);
    let c = checks(&report);
    assert_eq!(
        c["error_recovery"]["status"], "inconclusive",
        "{}",
        c["error_recovery"]["summary"]
    );
    assert_eq!(c["error_recovery"]["metrics"]["status_missing"], 600);
    assert_eq!(code, 3);
}

#[test]
fn flip_outside_the_data_is_inconclusive() {
    let incident = INCIDENT.replace(
        "flip_at = \"2026-11-27T10:15:00Z\"",
        "flip_at = \"2026-11-28T10:15:00Z\"",
    );
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("incident.toml"), incident).unwrap();
    std::fs::write(tmp.path().join("requests.csv"), clean_rows()).unwrap();
    let (code, report) = audit_json(&tmp.path().join("incident.toml"), &[]);
    let c = checks(&report);
    assert_eq!(c["pins"]["status"], "inconclusive");
    assert!(c["pins"]["summary"].as_str().unwrap().contains("flip_at"));
    assert_eq!(code, 3);
}

#[test]
fn duplicate_request_ids_and_timestamps_are_separate_requests() {
    let mut csv = clean_rows();
    csv.push_str("2026-11-27T10:31:00Z,dup,u-1,b-2,200,1,0.3,0.8,convergent\n");
    csv.push_str("2026-11-27T10:31:00Z,dup,u-1,b-2,200,1,0.3,0.8,convergent\n");
    let (_, report) = audited(&csv);
    let pins = &checks(&report)["pins"]["metrics"];
    assert_eq!(pins["requests_checked"], 302);
    assert_eq!(pins["violations"], 2);
}

#[test]
fn every_row_is_accounted_for() {
    let mut csv = clean_rows();
    csv.push_str(",no-ts,u-1,b-1,200,1,0.3,0.8,convergent\n");
    csv.push_str("2026-11-27T07:00:00Z,early,u-1,b-1,200,1,0.3,0.8,convergent\n");
    let (_, report) = audited(&csv);
    let rows = &report["rows"];
    let read = rows["requests_read"].as_u64().unwrap();
    let used = rows["requests_used"].as_u64().unwrap();
    let outside = rows["requests_outside"].as_u64().unwrap();
    let rejected = rows["requests_rejected"].as_u64().unwrap();
    let dropped = rows["requests_dropped"].as_u64().unwrap();
    assert_eq!(
        (read, used, outside, rejected, dropped),
        (602, 600, 1, 1, 0)
    );
    assert_eq!(read, used + outside + rejected + dropped);
}

#[test]
fn ndjson_absent_key_is_null() {
    let incident = INCIDENT.replace("requests.csv", "requests.jsonl");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("incident.toml"), incident).unwrap();
    let lines = "{\"ts\": \"2026-11-27T10:16:00Z\", \"build_id\": \"b-1\", \"status\": 200}\n{\"ts\": 1795774561000, \"build_id\": \"b-1\"}\n";
    std::fs::write(tmp.path().join("requests.jsonl"), lines).unwrap();
    let (_, report) = audit_json(&tmp.path().join("incident.toml"), &[]);
    let c = checks(&report);
    assert_eq!(
        c["pins"]["metrics"]["requests_checked"], 2,
        "epoch milliseconds parse as ts"
    );
    assert_eq!(c["error_recovery"]["metrics"]["status_missing"], 1);
}

#[test]
fn fuzz_corpus_replays_without_panic() {
    // Every input the fuzzers kept (and every crash they found, once fixed) runs through the
    // same harnesses here, so a regression shows up in `cargo test`, not only under libFuzzer.
    let root = crate::util::root().join("fuzz/seeds");
    let mut replayed = 0;
    for (target, name) in [
        ("ingest_csv", "requests.csv"),
        ("ingest_ndjson", "requests.jsonl"),
        ("ingest_parquet", "requests.parquet"),
        ("ingest_ipc", "requests.arrow"),
    ] {
        for entry in std::fs::read_dir(root.join(target)).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            rollproof_gen::harness::audit_one_file(name, &data);
            // Bit flips at a few places of every seed, as the fuzzer makes them.
            for at in (0..data.len()).step_by(data.len().div_ceil(64).max(1)) {
                let mut flipped = data.clone();
                flipped[at] ^= 0x5a;
                rollproof_gen::harness::audit_one_file(name, &flipped);
            }
            replayed += 1;
        }
    }
    for entry in std::fs::read_dir(root.join("otlp_mapping")).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        rollproof_gen::harness::audit_mapping_and_file("spans.jsonl", &data);
        replayed += 1;
    }
    for entry in std::fs::read_dir(root.join("partial")).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        rollproof_gen::harness::merge_partial_body(&data);
        for at in (0..data.len()).step_by(data.len().div_ceil(64).max(1)) {
            let mut flipped = data.clone();
            flipped[at] ^= 0x5a;
            rollproof_gen::harness::merge_partial_body(&flipped);
        }
        replayed += 1;
    }
    for (target, parse) in [
        (
            "incident",
            (|t: &str| {
                drop(rollproof::Incident::parse(
                    std::path::Path::new("i.toml"),
                    t,
                ))
            }) as fn(&str),
        ),
        ("mapping", |t: &str| {
            drop(rollproof::fuzzing::Mapping::parse(
                std::path::Path::new("m.toml"),
                t,
            ))
        }),
    ] {
        for entry in std::fs::read_dir(root.join(target)).unwrap() {
            if let Ok(text) = String::from_utf8(std::fs::read(entry.unwrap().path()).unwrap()) {
                parse(&text);
                replayed += 1;
            }
        }
    }
    assert!(replayed >= 10, "the corpus is committed: {replayed}");
}

#[test]
fn binary_fuzz_seeds_are_what_the_generator_writes() {
    let tmp = tempfile::tempdir().unwrap();
    rollproof_gen::seeds::write_seeds(tmp.path()).unwrap();
    for (sub, name) in [
        ("ingest_parquet", "seed.parquet"),
        ("ingest_ipc", "seed.arrow"),
        ("ingest_ipc", "seed.arrows"),
        ("otlp_mapping", "seed.bin"),
        ("partial", "seed.bin"),
        ("partial", "key-ranges.bin"),
    ] {
        let committed = crate::util::root().join("fuzz/seeds").join(sub).join(name);
        assert!(
            std::fs::read(&committed).ok()
                == Some(std::fs::read(tmp.path().join(sub).join(name)).unwrap()),
            "{} differs from what `cargo run -p rollproof-gen -- seeds` writes",
            committed.display()
        );
    }
}
