//! The human and CI reports: HTML in a real browser, Markdown, JUnit (parsed back), GitHub
//! annotations. Hostile strings from the logs must stay text in every format.

use std::path::{Path, PathBuf};
use std::process::Command;

use rollproof_gen::{
    fixture_scenarios, incident_toml, receipts_batch, requests_batch, write_batches, Naming,
    OutFormat,
};

use crate::util::{code, fixture, run, run_in, stdout};

const SCRIPT: &str = "<script>alert('pwned')</script>";
const IMG: &str = "\"><img src=x onerror=alert(1)>";

/// The demo incident with markup planted in a request id, a pin value and a cache namespace of
/// rows that the report will show as samples.
fn hostile_incident(dir: &Path) -> PathBuf {
    let demo = fixture_scenarios()
        .into_iter()
        .find(|s| s.name == "demo")
        .unwrap();
    let (mut requests, receipts) = rollproof_gen::generate(&demo);
    let flip = rollproof_gen::time::parse_rfc3339("2026-11-27T10:15:00Z").unwrap();
    let first = requests.iter().position(|r| r.ts >= flip).unwrap();
    requests[first].request_id = SCRIPT.to_string();
    requests[first].pins[4] = IMG.to_string();
    requests[first].region = format!("eu{SCRIPT}");
    write_batches(
        &dir.join("requests.parquet"),
        OutFormat::Parquet,
        &[requests_batch(&requests, Naming::Canonical)],
        4096,
    )
    .unwrap();
    write_batches(
        &dir.join("receipts.parquet"),
        OutFormat::Parquet,
        &[receipts_batch(&receipts)],
        4096,
    )
    .unwrap();
    let incident = dir.join("incident.toml");
    std::fs::write(
        &incident,
        incident_toml(&demo, "requests.parquet", Some("receipts.parquet"), None),
    )
    .unwrap();
    rollproof_gen::page::write_files(&demo, dir, Naming::Canonical).unwrap();
    incident
}

pub(crate) fn chromium() -> PathBuf {
    for candidate in [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("this test renders the HTML report in headless Chromium: install it (`apt-get install chromium`); .ci/run does");
}

/// Runs headless Chromium on `page` with `args`, logging every network request to a NetLog.
fn chromium_run(page: &Path, work: &Path, args: &[String]) -> (String, serde_json::Value) {
    let netlog = work.join("netlog.json");
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--hide-scrollbars",
        ])
        .arg(format!(
            "--user-data-dir={}",
            work.join("profile").display()
        ))
        .arg(format!("--log-net-log={}", netlog.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(&netlog).expect("chromium wrote its NetLog");
    // A NetLog cut short at exit lacks the closing brackets.
    let log = if log.trim_end().ends_with('}') {
        log
    } else {
        format!("{}]}}", log.trim_end().trim_end_matches(','))
    };
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        serde_json::from_str(&log).expect("NetLog is JSON"),
    )
}

/// Every URL the page itself asked the network stack for. The browser's own background calls
/// (updater, accounts) have no initiator ("not an origin"); the page's carry its `file://` site.
fn page_requests(netlog: &serde_json::Value) -> Vec<String> {
    let types = &netlog["constants"]["logEventTypes"];
    let start_job = types["URL_REQUEST_START_JOB"]
        .as_i64()
        .expect("NetLog names its event types");
    let mut urls = Vec::new();
    for event in netlog["events"].as_array().unwrap() {
        let params = &event["params"];
        let from_page = params["network_isolation_key"]
            .as_str()
            .is_some_and(|k| k.contains("file://"));
        if event["type"].as_i64() == Some(start_job) && from_page {
            urls.push(params["url"].as_str().unwrap_or_default().to_string());
        }
    }
    urls.sort();
    urls.dedup();
    urls
}

#[test]
fn the_request_detector_catches_a_page_that_loads_from_outside() {
    // The control for the test below: a page with an outside image must be caught.
    let tmp = tempfile::tempdir().unwrap();
    let page = tmp.path().join("probe.html");
    std::fs::write(
        &page,
        "<html><body><img src=\"http://example.invalid/x.png\"></body></html>",
    )
    .unwrap();
    let (_, netlog) = chromium_run(&page, tmp.path(), &["--dump-dom".to_string()]);
    assert_eq!(page_requests(&netlog), ["http://example.invalid/x.png"]);
}

#[test]
fn html_report_in_a_real_browser_makes_no_request_and_keeps_markup_as_text() {
    let tmp = tempfile::tempdir().unwrap();
    let incident = hostile_incident(tmp.path());
    let html = tmp.path().join("report.html");
    let out = run(&[
        "audit",
        incident.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code(&out), 1);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Content-Security-Policy"));
    assert!(
        !page.contains("<script"),
        "no script element may reach the page"
    );
    assert!(
        page.contains("&lt;script&gt;"),
        "the planted request id shows, escaped"
    );

    let (dom, netlog) = chromium_run(&html, tmp.path(), &["--dump-dom".to_string()]);
    let urls = page_requests(&netlog);
    let outside: Vec<&String> = urls
        .iter()
        .filter(|u| !u.starts_with("file://") && !u.starts_with("data:"))
        .collect();
    assert!(
        outside.is_empty(),
        "the report made outside requests: {outside:?}"
    );
    // In the DOM the browser built, the planted markup is text: no script or img element.
    assert!(!dom.contains("<script"), "a script element reached the DOM");
    assert!(!dom.contains("<img"), "an img element reached the DOM");
    assert!(
        dom.contains("&lt;script&gt;alert('pwned')&lt;/script&gt;"),
        "the request id shows as text"
    );
    assert!(
        dom.contains("onerror=alert(1)&gt;"),
        "the pin value shows as text"
    );
    assert!(
        dom.contains("Production is not back"),
        "the verdict banner renders"
    );

    let shot = tmp.path().join("report.png");
    chromium_run(
        &html,
        tmp.path(),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,2600".into(),
        ],
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 50_000,
        "a real screenshot, {} bytes",
        png.len()
    );
}

#[test]
fn hostile_strings_stay_inert_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let incident = hostile_incident(tmp.path());
    let dir = tmp.path();
    let (md, xml, json) = (dir.join("r.md"), dir.join("r.xml"), dir.join("r.json"));
    let out = run(&[
        "audit",
        incident.to_str().unwrap(),
        "--markdown",
        md.to_str().unwrap(),
        "--junit",
        xml.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--github",
    ]);
    assert_eq!(code(&out), 1);
    let md = std::fs::read_to_string(md).unwrap();
    assert!(
        !md.contains("<script") && !md.contains("<img"),
        "Markdown renders HTML: markup must be escaped"
    );
    assert!(md.contains("&lt;script&gt;"));
    let xml = std::fs::read_to_string(xml).unwrap();
    let parsed = quick_junit::Report::deserialize_from_str(&xml).expect("JUnit parses back");
    let pins = parsed.test_suites[0]
        .test_cases
        .iter()
        .find(|t| t.name.as_str() == "pins")
        .unwrap();
    let quick_junit::TestCaseStatus::NonSuccess { description, .. } = &pins.status else {
        panic!("pins failed")
    };
    assert!(
        description
            .as_ref()
            .unwrap()
            .contains("eu<script>alert('pwned')</script>"),
        "region names survive XML escaping: {description:?}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    // JSON is data: the value is kept exactly, for tools to escape as they need.
    let pins = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "pins")
        .unwrap();
    assert!(pins["samples"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["request_id"] == SCRIPT && s["found"] == IMG));
    // Annotations are one line each: the planted text cannot start a workflow command.
    let text = stdout(&out);
    for line in text.lines().filter(|l| l.starts_with("::")) {
        assert!(
            line.starts_with("::error ")
                || line.starts_with("::warning ")
                || line.starts_with("::notice "),
            "{line}"
        );
    }
}

#[test]
fn junit_parses_back_with_one_case_per_check() {
    let tmp = tempfile::tempdir().unwrap();
    let xml = tmp.path().join("r.xml");
    let out = run(&[
        "audit",
        "fixtures/demo/incident.toml",
        "--junit",
        xml.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code(&out), 1);
    let text = std::fs::read_to_string(&xml).unwrap();
    insta::assert_snapshot!("demo_junit", text);
    let report = quick_junit::Report::deserialize_from_str(&text).expect("JUnit parses back");
    let cases = &report.test_suites[0].test_cases;
    let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    for id in [
        "pins",
        "cache_rotation",
        "duplicate_effects",
        "writer_freeze",
        "error_recovery",
        "latency",
        "quality",
        "flag_drift",
        "backpressure",
        "gold_set",
        "captured_state",
        "evidence",
    ] {
        assert!(names.contains(&id), "{id} in {names:?}");
    }
    assert_eq!(cases.len(), 14, "one case per check: {names:?}");
    let failures: Vec<&quick_junit::TestCase> = cases
        .iter()
        .filter(|c| matches!(c.status, quick_junit::TestCaseStatus::NonSuccess { .. }))
        .collect();
    assert_eq!(failures.len(), 4, "4 failed checks");
    let pins = cases.iter().find(|c| c.name.as_str() == "pins").unwrap();
    let quick_junit::TestCaseStatus::NonSuccess { description, .. } = &pins.status else {
        panic!("pins failed")
    };
    assert!(
        description
            .as_ref()
            .unwrap()
            .contains("by region: eu-west 40, us-east 2"),
        "the breakdown is in the failure: {description:?}"
    );
}

#[test]
fn markdown_snapshot_and_size_bound() {
    let out = run(&[
        "audit",
        "fixtures/demo/incident.toml",
        "--format",
        "markdown",
    ]);
    assert_eq!(code(&out), 1);
    let md = stdout(&out);
    insta::assert_snapshot!("demo_markdown", md);
    // The Markdown stays under GitHub's step-summary limit (rollproof caps it at 512 KiB).
    assert!(md.len() < 512 * 1024);
}

#[test]
fn github_annotations_and_step_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let summary = tmp.path().join("summary.md");
    std::fs::write(&summary, "earlier step\n").unwrap();
    let out = assert_cmd::Command::new(assert_cmd::cargo::cargo_bin!("rollproof"))
        .current_dir(crate::util::root())
        .env_clear()
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .args(["audit", "fixtures/demo/incident.toml"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    let annotations: Vec<&str> = text.lines().filter(|l| l.starts_with("::")).collect();
    assert!(annotations.len() <= 10);
    assert!(annotations
        .iter()
        .any(|l| l.starts_with("::error title=rollproof pins::")));
    assert!(annotations
        .last()
        .unwrap()
        .starts_with("::error title=rollproof verdict::FAIL"));
    let appended = std::fs::read_to_string(&summary).unwrap();
    assert!(appended.starts_with("earlier step\n## ❌ rollproof: FAIL"));
    // With JSON on stdout, annotations go to stderr and stdout stays pure JSON.
    let out = assert_cmd::Command::new(assert_cmd::cargo::cargo_bin!("rollproof"))
        .current_dir(crate::util::root())
        .env_clear()
        .env("GITHUB_ACTIONS", "true")
        .args(["audit", "fixtures/demo/incident.toml", "--format", "json"])
        .output()
        .unwrap();
    serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("stdout is only JSON");
    assert!(String::from_utf8_lossy(&out.stderr).contains("::error title=rollproof verdict::"));
}

#[test]
fn html_on_stdout_and_canary_html() {
    let out = run_in(
        &fixture("canary-fail"),
        &["audit", "incident.toml", "--format", "html"],
    );
    assert_eq!(code(&out), 1);
    let page = stdout(&out);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("Canary gate"));
    assert!(page.contains("The canary must not graduate"));
    assert!(
        !page.contains("rollback"),
        "a canary page does not talk of a rollback"
    );
    assert!(page.contains("cache_isolation"));
}

#[test]
fn completions_and_man_page() {
    let out = run(&["completions", "bash"]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("rollproof"));
    let out = run(&["man"]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains(".TH rollproof"));
}
