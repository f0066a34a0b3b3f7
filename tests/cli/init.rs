//! `rollproof init`: a first incident file from the logs, whose guesses match what the fixtures'
//! hand-written incident files say, and which audits (or stops with a clear error).

use std::path::Path;

use serde_json::Value;

use crate::util::{checks, code, fixture, run_in, stderr, stdout};

fn copy_fixture(name: &str, dir: &Path) {
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
}

fn toml_file(path: &Path) -> toml::Table {
    std::fs::read_to_string(path).unwrap().parse().unwrap()
}

fn audit_json(dir: &Path, incident: &str) -> (i32, Value) {
    let out = run_in(dir, &["audit", incident, "-q", "--format", "json"]);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", stderr(&out)));
    (code(&out), report)
}

#[test]
fn init_guesses_the_demo_incident() {
    let tmp = tempfile::tempdir().unwrap();
    copy_fixture("demo", tmp.path());
    let out = run_in(
        tmp.path(),
        &[
            "init",
            "requests.parquet",
            "--receipts",
            "receipts.parquet",
            "-o",
            "guessed.toml",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "the incident went to the file");
    assert!(
        stderr(&out).contains("requests: 1 file, 9,000 rows"),
        "{}",
        stderr(&out)
    );
    let guessed = toml_file(&tmp.path().join("guessed.toml"));
    let written = toml_file(&tmp.path().join("incident.toml"));
    assert_eq!(guessed["flip_at"], written["flip_at"]);
    assert_eq!(guessed["cache"]["namespace"], written["cache"]["namespace"]);
    let pins = guessed["expected_pins"].as_table().unwrap();
    for (pin, value) in written["expected_pins"].as_table().unwrap() {
        assert_eq!(&pins[pin], value, "{pin}");
    }
    assert!(
        !tmp.path().join("mapping.toml").exists(),
        "canonical names need no mapping"
    );
    // The guessed incident audits to the same pin and cache findings as the hand-written one.
    let (code_g, guessed) = audit_json(tmp.path(), "guessed.toml");
    let (code_w, written) = audit_json(tmp.path(), "incident.toml");
    assert_eq!((code_g, code_w), (1, 1));
    let (g, w) = (checks(&guessed), checks(&written));
    for check in [
        "pins",
        "cache_rotation",
        "duplicate_effects",
        "reconciliation",
    ] {
        assert_eq!(g[check]["status"], w[check]["status"], "{check}");
        let mut metrics = g[check]["metrics"].clone();
        if check == "pins" {
            // init pins all eight columns the logs carry; the hand-written file names five.
            assert_eq!(metrics["pins_checked"].as_array().unwrap().len(), 8);
            metrics["pins_checked"] = w[check]["metrics"]["pins_checked"].clone();
        }
        if check == "duplicate_effects" {
            // Phases are relative to the freeze window, which init cannot guess.
            metrics["extra_executions_by_phase"] =
                w[check]["metrics"]["extra_executions_by_phase"].clone();
        }
        assert_eq!(metrics, w[check]["metrics"], "{check}");
    }
    // And it is written for a person to read.
    let out = run_in(
        tmp.path(),
        &["init", "requests.parquet", "--receipts", "receipts.parquet"],
    );
    insta::assert_snapshot!("init_demo", stdout(&out));
}

#[test]
fn init_maps_other_column_names() {
    let tmp = tempfile::tempdir().unwrap();
    copy_fixture("demo-otel", tmp.path());
    std::fs::remove_file(tmp.path().join("mapping.toml")).unwrap();
    std::fs::create_dir(tmp.path().join("audit")).unwrap();
    let out = run_in(
        tmp.path(),
        &[
            "init",
            "requests.jsonl.zst",
            "--receipts",
            "receipts.jsonl.zst",
            "-o",
            "audit/incident.toml",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mapping = toml_file(&tmp.path().join("audit/mapping.toml"));
    let requests = mapping["requests"].as_table().unwrap();
    assert_eq!(requests["ts"].as_str(), Some("timestamp"));
    assert_eq!(
        requests["status"].as_str(),
        Some("http.response.status_code")
    );
    assert_eq!(requests["git_sha"].as_str(), Some("vcs.ref.head.revision"));
    assert_eq!(
        requests["model_ver"].as_str(),
        Some("gen_ai.response.model")
    );
    assert_eq!(requests["region"].as_str(), Some("cloud.region"));
    let incident = toml_file(&tmp.path().join("audit/incident.toml"));
    // Outside the incident's folder, so absolute.
    let requests = incident["inputs"]["requests"].as_str().unwrap();
    assert!(
        Path::new(requests).is_absolute() && requests.ends_with("requests.jsonl.zst"),
        "{requests}"
    );
    let (code, report) = audit_json(&tmp.path().join("audit"), "incident.toml");
    assert_eq!(code, 1);
    assert_eq!(checks(&report)["pins"]["metrics"]["violations"], 42);
    assert_eq!(
        checks(&report)["error_recovery"]["status"],
        "pass",
        "status was mapped"
    );
}

#[test]
fn init_writes_a_canary_incident() {
    let tmp = tempfile::tempdir().unwrap();
    copy_fixture("canary-fail", tmp.path());
    let out = run_in(
        tmp.path(),
        &[
            "init",
            "requests.parquet",
            "--receipts",
            "receipts.parquet",
            "--canary",
            "-o",
            "guessed.toml",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let guessed = toml_file(&tmp.path().join("guessed.toml"));
    let written = toml_file(&tmp.path().join("incident.toml"));
    assert_eq!(guessed["mode"].as_str(), Some("canary"));
    for key in ["baseline_arm", "canary_arm", "window"] {
        assert_eq!(guessed["canary"][key], written["canary"][key], "{key}");
    }
    for arm in ["stable", "canary"] {
        for (pin, value) in written["expected_pins"][arm].as_table().unwrap() {
            assert_eq!(&guessed["expected_pins"][arm][pin], value, "{arm}.{pin}");
        }
    }
    let (code, _) = audit_json(tmp.path(), "guessed.toml");
    assert_eq!(code, 1);
}

#[test]
fn init_leaves_out_what_it_cannot_guess_and_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    // Two hours of traffic on one version: no rollout to find a flip in.
    let mut csv = String::from("ts,request_id,build_id,status\n");
    for i in 0..240 {
        csv.push_str(&format!(
            "2026-11-27T{:02}:{:02}:00Z,r-{i},b-1,200\n",
            8 + i / 60 / 2,
            (i / 2) % 60
        ));
    }
    std::fs::write(tmp.path().join("requests.csv"), csv).unwrap();
    let out = run_in(tmp.path(), &["init", "requests.csv", "-o", "incident.toml"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = std::fs::read_to_string(tmp.path().join("incident.toml")).unwrap();
    assert!(text.contains("# flip_at = "), "{text}");
    assert!(text.contains("build_id = \"b-1\""), "{text}");
    let out = run_in(tmp.path(), &["audit", "incident.toml", "-q"]);
    assert_eq!(
        code(&out),
        2,
        "no guessed flip: the audit stops, it does not pass"
    );
    assert!(stderr(&out).contains("flip_at"), "{}", stderr(&out));

    let out = run_in(tmp.path(), &["init", "requests.csv", "-o", "incident.toml"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("incident.toml")).unwrap(),
        text
    );
    let out = run_in(
        tmp.path(),
        &["init", "requests.csv", "-o", "incident.toml", "--force"],
    );
    assert_eq!(code(&out), 0);
    let out = run_in(tmp.path(), &["init", "nothing-*.csv"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}
