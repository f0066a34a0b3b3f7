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

/// Runs `rollproof ARGS` from the crate root with a minimal environment.
pub fn run(args: &[&str]) -> Output {
    run_in(&root(), args)
}

pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    assert_cmd::Command::new(assert_cmd::cargo::cargo_bin!("rollproof"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
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
    (code, report)
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
