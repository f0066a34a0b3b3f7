//! Snapshots of the user-visible output: the terminal summary, the JSON report, `explain`.

use crate::util::{code, run, stdout};

#[test]
fn demo_text() {
    let out = run(&["audit", "fixtures/demo/incident.toml"]);
    assert_eq!(code(&out), 1);
    insta::assert_snapshot!("demo_text", stdout(&out));
}

#[test]
fn demo_json() {
    let out = run(&["audit", "fixtures/demo/incident.toml", "--format", "json"]);
    assert_eq!(code(&out), 1);
    insta::assert_snapshot!("demo_json", stdout(&out));
}

#[test]
fn canary_fail_text() {
    let out = run(&["audit", "fixtures/canary-fail/incident.toml"]);
    assert_eq!(code(&out), 1);
    insta::assert_snapshot!("canary_fail_text", stdout(&out));
}

#[test]
fn explain_pins() {
    let out = run(&["explain", "pins"]);
    assert_eq!(code(&out), 0);
    insta::assert_snapshot!("explain_pins", stdout(&out));
}

#[test]
fn explain_lists_every_check() {
    let out = run(&["explain"]);
    assert_eq!(code(&out), 0);
    for info in rollproof::check_infos() {
        assert!(stdout(&out).contains(info.id));
    }
}

#[test]
fn json_file_and_output_file_in_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("r.json");
    let text = tmp.path().join("r.txt");
    let out = run(&[
        "audit",
        "fixtures/demo/incident.toml",
        "--json",
        json.to_str().unwrap(),
        "--output",
        text.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1);
    assert!(out.stdout.is_empty());
    let stdout_json = stdout(&run(&[
        "audit",
        "fixtures/demo/incident.toml",
        "--format",
        "json",
    ]));
    assert_eq!(std::fs::read_to_string(json).unwrap(), stdout_json);
    assert!(std::fs::read_to_string(text)
        .unwrap()
        .starts_with("rollproof "));
}
