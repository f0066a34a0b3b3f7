//! Command-line conventions: output formats from extensions, `-` for stdout, no output written
//! twice or over an input, JSON errors, threshold overrides, `--fail-on`, colour, man pages and
//! the evidence folder.

use std::path::Path;

use serde_json::Value;

use crate::util::{checks, code, fixture, parquet_rows, run_env, run_in, stderr, stdout};

/// A temp folder with a copy of the demo fixture (so that outputs land beside its inputs).
fn demo_copy() -> tempfile::TempDir {
    crate::util::copy_fixture("demo")
}

fn audit_in(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["audit", "incident.toml", "--quiet"];
    args.extend_from_slice(extra);
    run_in(dir, &args)
}

#[test]
fn the_output_format_comes_from_the_extension() {
    let tmp = demo_copy();
    for (name, starts) in [
        ("report.html", "<!DOCTYPE html>"),
        ("report.json", "{"),
        ("report.md", "## "),
        ("report.xml", "<?xml"),
        ("report.txt", "rollproof "),
    ] {
        let out = audit_in(tmp.path(), &["-o", name]);
        assert_eq!(code(&out), 1, "{name}: {}", stderr(&out));
        assert!(
            stdout(&out).is_empty(),
            "{name}: the report went to the file, not stdout"
        );
        let written = std::fs::read_to_string(tmp.path().join(name)).unwrap();
        assert!(
            written.starts_with(starts),
            "{name} starts with {:?}",
            &written[..40.min(written.len())]
        );
    }
    // `--format` wins over the extension.
    let out = audit_in(tmp.path(), &["--output", "report.out", "--format", "json"]);
    assert_eq!(code(&out), 1);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("report.out")).unwrap())
            .unwrap();
    assert_eq!(report["verdict"], "fail");
    // An unknown extension without `--format` is a usage error, and nothing is written.
    let out = audit_in(tmp.path(), &["-o", "report.pdf"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("cannot tell the format of `--output report.pdf`"),
        "{}",
        stderr(&out)
    );
    assert!(!tmp.path().join("report.pdf").exists());
}

#[test]
fn a_dash_is_stdout_and_never_a_file_named_dash() {
    let tmp = demo_copy();
    let out = audit_in(tmp.path(), &["--output", "-"]);
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).starts_with("rollproof "), "text on stdout");
    let out = audit_in(tmp.path(), &["--json", "-"]);
    assert_eq!(code(&out), 1);
    let report: Value =
        serde_json::from_slice(&out.stdout).expect("stdout is only the JSON report");
    assert_eq!(report["verdict"], "fail");
    assert!(
        stderr(&out).contains("verdict: FAIL"),
        "the summary moves to stderr: {}",
        stderr(&out)
    );
    let out = audit_in(tmp.path(), &["--html", "-", "--format", "json"]);
    assert_eq!(code(&out), 2, "two renderings cannot share stdout");
    assert!(
        stderr(&out).contains("2 renderings would go to stdout"),
        "{}",
        stderr(&out)
    );
    assert!(!tmp.path().join("-").exists(), "no file named `-`");
}

#[test]
fn two_outputs_to_one_file_or_an_output_over_an_input_are_refused() {
    let tmp = demo_copy();
    let out = audit_in(
        tmp.path(),
        &["--markdown", "same.md", "--junit", "./same.md"],
    );
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("is named by two outputs"),
        "{}",
        stderr(&out)
    );
    assert!(!tmp.path().join("same.md").exists(), "nothing written");

    let before = std::fs::read(tmp.path().join("requests.parquet")).unwrap();
    let out = audit_in(tmp.path(), &["--json", "requests.parquet"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("requests.parquet"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(tmp.path().join("requests.parquet")).unwrap(),
        before,
        "the input is untouched"
    );
}

#[test]
fn errors_are_a_json_object_when_stdout_is_json() {
    let tmp = demo_copy();
    // The incident file does not exist.
    let out = run_in(tmp.path(), &["audit", "missing.toml", "--format", "json"]);
    assert_eq!(code(&out), 2);
    let err: Value = serde_json::from_slice(&out.stdout).expect("a JSON error object");
    assert_eq!(err["exit_code"], 2);
    assert_eq!(err["schema_version"], 1);
    assert_eq!(err["error"]["problems"][0]["file"], "missing.toml", "{err}");
    // A usage error.
    let out = run_in(
        tmp.path(),
        &[
            "audit",
            "incident.toml",
            "--format",
            "json",
            "--threads",
            "0",
        ],
    );
    assert_eq!(code(&out), 2);
    let err: Value = serde_json::from_slice(&out.stdout).expect("a JSON error object");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--threads"),
        "{err}"
    );
    // An input error: every problem with its file and column.
    let incident = std::fs::read_to_string(tmp.path().join("incident.toml")).unwrap();
    std::fs::write(
        tmp.path().join("incident.toml"),
        incident.replace("prompt_ver = \"p-6\"", "promt_ver = \"p-6\""),
    )
    .unwrap();
    let out = run_in(
        tmp.path(),
        &["audit", "incident.toml", "-o", "-", "--format", "json"],
    );
    assert_eq!(code(&out), 2);
    let err: Value = serde_json::from_slice(&out.stdout).expect("a JSON error object");
    let problems = err["error"]["problems"].as_array().unwrap();
    assert_eq!(
        problems.len(),
        2,
        "the pin, and the namespace placeholder it leaves unnamed: {err}"
    );
    assert_eq!(problems[0]["column"], "expected_pins.promt_ver");
    assert_eq!(problems[0]["location"], "line 23");
    assert_eq!(problems[1]["column"], "cache.namespace");
    assert!(
        problems[0]["hint"].as_str().unwrap().contains("prompt_ver"),
        "did-you-mean: {err}"
    );
    assert!(
        stderr(&out).contains("promt_ver"),
        "the human message stays on stderr"
    );
    // With text on stdout, an error leaves stdout empty.
    let out = run_in(tmp.path(), &["audit", "incident.toml"]);
    assert_eq!(code(&out), 2);
    assert!(stdout(&out).is_empty());
}

#[test]
fn thresholds_can_be_overridden_on_the_command_line() {
    let tmp = demo_copy();
    let out = audit_in(
        tmp.path(),
        &[
            "--format",
            "json",
            "--threshold",
            "p95_latency_ratio_max=1.01",
        ],
    );
    assert_eq!(code(&out), 1);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["thresholds"]["p95_latency_ratio_max"], 1.01);
    assert_eq!(
        checks(&report)["latency"]["status"],
        "fail",
        "demo p95 is ×1.05 the baseline"
    );
    let out = audit_in(tmp.path(), &["--format", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        checks(&report)["latency"]["status"],
        "pass",
        "the default ×1.15 passes"
    );

    let out = audit_in(tmp.path(), &["--threshold", "p95_latency_ratio=1.2"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("p95_latency_ratio_max"),
        "did-you-mean: {}",
        stderr(&out)
    );
    for bad in ["min_requests=many", "min_requests=1.5", "min_requests"] {
        let out = audit_in(tmp.path(), &["--threshold", bad]);
        assert_eq!(code(&out), 2, "{bad}: {}", stderr(&out));
    }
}

#[test]
fn fail_on_warn_closes_the_gate_on_a_warning() {
    let incident = fixture("requests-only").join("incident.toml");
    let incident = incident.to_str().unwrap();
    let root = crate::util::root();
    let out = run_in(&root, &["audit", incident, "-q"]);
    assert_eq!(code(&out), 0, "a warning keeps the gate open by default");
    assert!(stdout(&out).contains("verdict: WARN"));
    let out = run_in(&root, &["audit", incident, "-q", "--fail-on", "warn"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let tmp = demo_copy();
    let esc = "\u{1b}[";
    let out = audit_in(tmp.path(), &[]);
    assert!(!stdout(&out).contains(esc), "no colour into a pipe");
    let out = audit_in(tmp.path(), &["--color", "always"]);
    assert!(
        stdout(&out).contains(&format!("{esc}1;31mFAIL")),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains(&format!("{esc}32mPASS")),
        "{}",
        stdout(&out)
    );
    let out = run_env(
        tmp.path(),
        &["audit", "incident.toml", "-q", "--color", "auto"],
        &[("NO_COLOR", "1")],
    );
    assert!(!stdout(&out).contains(esc));
    // Colour never reaches a file or a machine format.
    let out = audit_in(
        tmp.path(),
        &["--color", "always", "-o", "report.txt", "--json", "-"],
    );
    assert!(!stdout(&out).contains(esc));
    assert!(!std::fs::read_to_string(tmp.path().join("report.txt"))
        .unwrap()
        .contains(esc));
}

#[test]
fn man_pages_for_every_subcommand_with_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_in(tmp.path(), &["man", "audit"]);
    assert_eq!(code(&out), 0);
    let page = stdout(&out);
    assert!(page.contains(".TH rollproof-audit 1"), "{}", &page[..200]);
    assert!(page.contains("Exit codes"));
    assert!(page.contains("expected_pins"), "the incident format");
    let out = run_in(tmp.path(), &["man", "--dir", "man"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut pages: Vec<String> = std::fs::read_dir(tmp.path().join("man"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert_eq!(
        pages,
        [
            "rollproof-audit.1",
            "rollproof-completions.1",
            "rollproof-explain.1",
            "rollproof-init.1",
            "rollproof-man.1",
            "rollproof-merge.1",
            "rollproof-partial.1",
            "rollproof-plan.1",
            "rollproof.1"
        ]
    );
    let out = run_in(tmp.path(), &["man", "audti"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("subcommands are"), "{}", stderr(&out));
}

#[test]
fn the_evidence_folder_holds_every_counted_finding() {
    let tmp = demo_copy();
    let out = audit_in(
        tmp.path(),
        &["--format", "json", "--evidence-dir", "evidence"],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = checks(&report);
    let dir = tmp.path().join("evidence");
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    let entries = index["evidence"].as_array().unwrap();
    let rows_of = |check: &str, kind: &str| -> usize {
        let entry = entries
            .iter()
            .find(|e| e["check"] == check && e["kind"] == kind)
            .unwrap_or_else(|| panic!("{check}.{kind} in {index}"));
        let (rows, columns) = parquet_rows(&dir.join(entry["file"].as_str().unwrap()));
        assert_eq!(entry["rows"], rows, "{check}.{kind}: index and file agree");
        assert!(
            columns.iter().any(|c| c == "ts"),
            "{check}.{kind}: {columns:?}"
        );
        rows
    };
    let metric =
        |check: &str, name: &str| checks[check]["metrics"][name].as_u64().unwrap() as usize;
    assert_eq!(
        rows_of("pins", "requests_with_wrong_pins"),
        metric("pins", "violations")
    );
    assert_eq!(
        rows_of("cache_rotation", "cache_hits_from_another_namespace"),
        metric("cache_rotation", "stale_hits")
    );
    assert_eq!(
        rows_of("writer_freeze", "executions_during_the_freeze"),
        metric("writer_freeze", "writes_during_freeze")
    );
    let dup = rows_of("duplicate_effects", "executions_of_duplicated_keys");
    assert_eq!(
        dup,
        metric("duplicate_effects", "extra_executions")
            + metric("duplicate_effects", "duplicate_keys"),
        "every execution of a duplicated key: the first and the extra ones"
    );
    assert_eq!(
        rows_of("reconciliation", "receipts_of_requests_not_in_the_logs"),
        metric("reconciliation", "orphan_receipts")
    );
    // A passing check leaves no file.
    assert!(entries.iter().all(|e| e["check"] != "latency"));
}

#[test]
fn a_folder_a_misspelt_mapping_column_and_an_output_over_the_mapping_are_explained() {
    let tmp = demo_copy();
    std::fs::create_dir(tmp.path().join("logs")).unwrap();
    let out = audit_in(tmp.path(), &["--requests", "logs"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.contains("found a folder") && err.contains("`logs/*.parquet`"),
        "{err}"
    );
    assert!(!err.contains("no such file"), "{err}");

    // The mapping is relative to the current folder on the command line, and says so.
    let out = audit_in(tmp.path(), &["--mapping", "nope.toml"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("`--mapping` is relative to the current folder"),
        "{}",
        stderr(&out)
    );

    // A mapping to a column the files do not have gets a did-you-mean from the files' columns.
    std::fs::write(
        tmp.path().join("mapping.toml"),
        "[requests]\nregion = \"regoin\"\n",
    )
    .unwrap();
    let out = audit_in(tmp.path(), &["--mapping", "mapping.toml"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("did you mean `region`?"),
        "{}",
        stderr(&out)
    );

    // The mapping file is an input: an output over it is refused.
    std::fs::write(tmp.path().join("mapping.toml"), "[requests]\n").unwrap();
    let before = std::fs::read(tmp.path().join("mapping.toml")).unwrap();
    let out = audit_in(
        tmp.path(),
        &["--mapping", "mapping.toml", "--json", "mapping.toml"],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_eq!(
        std::fs::read(tmp.path().join("mapping.toml")).unwrap(),
        before
    );
}

#[test]
fn canary_evidence_holds_the_canary_arm_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut csv = String::from("ts,request_id,arm,user_id,prompt_ver,status\n");
    for i in 0..600 {
        let arm = if i % 2 == 0 { "stable" } else { "canary" };
        let status = if arm == "canary" && i % 20 == 1 {
            503
        } else {
            200
        };
        csv.push_str(&format!(
            "2026-11-27T10:{:02}:{:02}Z,r-{i},{arm},u-{},p-6,{status}\n",
            i / 60,
            i % 60,
            i % 50
        ));
    }
    std::fs::write(tmp.path().join("requests.csv"), csv).unwrap();
    std::fs::write(
        tmp.path().join("incident.toml"),
        "mode = \"canary\"\nid = \"C\"\nroot_cause_url = \"https://x.example\"\n[inputs]\nrequests = \"requests.csv\"\n[canary]\nbaseline_arm = \"stable\"\ncanary_arm = \"canary\"\n[expected_pins.stable]\nprompt_ver = \"p-6\"\n[expected_pins.canary]\nprompt_ver = \"p-6\"\n",
    )
    .unwrap();
    let out = audit_in(tmp.path(), &["--format", "json", "--evidence-dir", "ev"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = checks(&report)["error_rate"]["metrics"]["canary_errors"]
        .as_u64()
        .unwrap();
    assert_eq!(errors, 30);
    let (rows, _) = parquet_rows(
        &tmp.path()
            .join("ev/error_rate.errors_of_the_canary_arm.parquet"),
    );
    assert_eq!(rows as u64, errors);
}
