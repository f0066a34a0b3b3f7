//! Inputs in object storage, against a real S3 API: moto's server on loopback behind a proxy that
//! records every request and fails on demand (`tests/support/s3.py`), and a second moto that
//! checks credentials.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

use crate::util::{code, fixture, root, stderr};

struct S3 {
    proxy: u16,
    auth: u16,
    _server: Mutex<Child>,
    /// The proxy's log and its failures are shared: the tests take turns.
    turn: Mutex<()>,
}

/// The S3 servers, started once for the test binary; they exit when it does (their stdin closes).
fn s3() -> &'static S3 {
    static S3: OnceLock<S3> = OnceLock::new();
    S3.get_or_init(|| {
        let mut child = Command::new("python3")
            .arg(root().join("tests/support/s3.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs tests/support/s3.py (pip install -r .ci/requirements.txt)");
        let mut line = String::new();
        let mut out = child.stdout.take().unwrap();
        let mut byte = [0u8; 1];
        while out.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0] as char);
        }
        let ports: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!("moto did not start: {line:?} (pip install \"moto[server]\")")
        });
        S3 {
            proxy: ports["proxy"].as_u64().unwrap() as u16,
            auth: ports["auth"].as_u64().unwrap() as u16,
            _server: Mutex::new(child),
            turn: Mutex::new(()),
        }
    })
}

/// One HTTP/1.1 request; returns (status, body).
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let status = String::from_utf8_lossy(&response[9..12]).parse().unwrap();
    (status, response[head_end + 4..].to_vec())
}

/// This test's turn at the S3 servers.
fn turn() -> std::sync::MutexGuard<'static, ()> {
    s3().turn.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh bucket with `objects` uploaded (unauthenticated: moto's open server).
fn bucket(name: &str, objects: &[(&str, Vec<u8>)]) {
    let port = s3().proxy;
    let (status, _) = http(port, "PUT", &format!("/{name}"), b"");
    assert_eq!(status, 200, "create bucket {name}");
    for (key, data) in objects {
        let (status, _) = http(port, "PUT", &format!("/{name}/{key}"), data);
        assert_eq!(status, 200, "put {key}");
    }
}

fn requests_log() -> Vec<Value> {
    let (_, body) = http(s3().proxy, "GET", "/__log", b"");
    serde_json::from_slice(&body).unwrap()
}

/// `rollproof ARGS` with an S3 environment pointing at `port`, from `dir`.
fn run_s3(dir: &Path, port: u16, secret: &str, args: &[&str]) -> std::process::Output {
    assert_cmd::Command::new(assert_cmd::cargo::cargo_bin!("rollproof"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "AKIAROLLPROOFTEST")
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_REGION", "us-east-1")
        .args(args)
        .output()
        .expect("rollproof runs")
}

fn audit_s3(dir: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["audit", "incident.toml", "--format", "json", "--quiet"];
    args.extend_from_slice(extra);
    let out = run_s3(dir, s3().proxy, "test-secret-value", &args);
    assert!(
        [0, 1, 3].contains(&code(&out)),
        "exit {}: {}",
        code(&out),
        stderr(&out)
    );
    (code(&out), serde_json::from_slice(&out.stdout).unwrap())
}

/// The demo incident with its inputs replaced by `requests` and `receipts`.
fn demo_incident(dir: &Path, requests: &str, receipts: &str) {
    let text = std::fs::read_to_string(fixture("demo").join("incident.toml"))
        .unwrap()
        .replace(
            "requests = \"requests.parquet\"",
            &format!("requests = \"{requests}\""),
        )
        .replace(
            "receipts = \"receipts.parquet\"",
            &format!("receipts = \"{receipts}\""),
        );
    std::fs::write(dir.join("incident.toml"), text).unwrap();
    copy_page_files(&fixture("demo"), dir);
}

/// The gold files and captured state an incident names next to it.
fn copy_page_files(from: &Path, to: &Path) {
    for name in ["gold.parquet", "gold_baseline.csv", "captured.toml"] {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
}

fn local_demo() -> Value {
    crate::util::audit_json(&fixture("demo").join("incident.toml"), &[]).1
}

#[test]
fn parquet_in_a_bucket_by_url_and_glob_gives_the_local_figures() {
    let _turn = turn();
    let demo = fixture("demo");
    bucket(
        "incidents-a",
        &[
            (
                "inc-2041/logs/requests-0.parquet",
                std::fs::read(demo.join("requests.parquet")).unwrap(),
            ),
            (
                "inc-2041/logs/other.csv",
                b"not matched by the glob".to_vec(),
            ),
            (
                "inc-2041/receipts.parquet",
                std::fs::read(demo.join("receipts.parquet")).unwrap(),
            ),
            (
                "inc-2041/gold/run.parquet",
                std::fs::read(demo.join("gold.parquet")).unwrap(),
            ),
            (
                "inc-2041/gold/baseline.csv",
                std::fs::read(demo.join("gold_baseline.csv")).unwrap(),
            ),
            (
                "inc-2041/captured.toml",
                std::fs::read(demo.join("captured.toml")).unwrap(),
            ),
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    demo_incident(
        tmp.path(),
        "s3://incidents-a/inc-2041/logs/requests-*.parquet",
        "s3://incidents-a/inc-2041/receipts.parquet",
    );
    // The gold set and the captured state from the bucket too.
    let incident = std::fs::read_to_string(tmp.path().join("incident.toml"))
        .unwrap()
        .replace(
            "\"gold.parquet\"",
            "\"s3://incidents-a/inc-2041/gold/run.parquet\"",
        )
        .replace(
            "\"gold_baseline.csv\"",
            "\"s3://incidents-a/inc-2041/gold/baseline.csv\"",
        )
        .replace(
            "\"captured.toml\"",
            "\"s3://incidents-a/inc-2041/captured.toml\"",
        );
    for name in ["gold.parquet", "gold_baseline.csv", "captured.toml"] {
        std::fs::remove_file(tmp.path().join(name)).unwrap();
    }
    std::fs::write(tmp.path().join("incident.toml"), incident).unwrap();
    let (code, report) = audit_s3(tmp.path(), &[]);
    assert_eq!(code, 1);
    let local = local_demo();
    assert_eq!(
        report["checks"], local["checks"],
        "the same figures as from local files"
    );
    assert_eq!(report["rows"], local["rows"]);
    assert_eq!(report["captured_state"], local["captured_state"]);
    let roles: Vec<(&str, &str)> = report["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["role"].as_str().unwrap(), i["path"].as_str().unwrap()))
        .collect();
    assert!(
        roles.contains(&("gold", "s3://incidents-a/inc-2041/gold/run.parquet"))
            && roles.contains(&("captured_state", "s3://incidents-a/inc-2041/captured.toml")),
        "{roles:?}"
    );
    let input = &report["inputs"][0];
    assert_eq!(
        input["url"],
        "s3://incidents-a/inc-2041/logs/requests-0.parquet"
    );
    assert_eq!(input["path"], input["url"]);
    assert_eq!(
        input["size"].as_u64().unwrap(),
        std::fs::metadata(demo.join("requests.parquet"))
            .unwrap()
            .len()
    );
    assert!(
        input["etag"].is_string() && input["last_modified"].is_string(),
        "{input}"
    );
    assert!(
        input["sha256"].is_null(),
        "Parquet is not read whole: no hash"
    );
    // --hash-inputs reads each object whole for its hash.
    let (_, hashed) = audit_s3(tmp.path(), &["--hash-inputs"]);
    assert_eq!(hashed["inputs"][0]["sha256"], local["inputs"][0]["sha256"]);
}

#[test]
fn parquet_objects_are_read_with_ranged_requests_only() {
    let _turn = turn();
    // A Parquet file whose largest column the audit never reads.
    let tmp = tempfile::tempdir().unwrap();
    let wide = tmp.path().join("wide.parquet");
    crate::util::widen_parquet(&fixture("demo").join("requests.parquet"), &wide, 2000);
    let size = std::fs::metadata(&wide).unwrap().len();
    bucket(
        "incidents-b",
        &[("wide/requests.parquet", std::fs::read(&wide).unwrap())],
    );
    demo_incident(tmp.path(), "s3://incidents-b/wide/requests.parquet", "none");
    let incident = std::fs::read_to_string(tmp.path().join("incident.toml"))
        .unwrap()
        .replace("receipts = \"none\"\n", "");
    std::fs::write(tmp.path().join("incident.toml"), incident).unwrap();
    http(s3().proxy, "POST", "/__log/reset", b"");
    let (_, report) = audit_s3(tmp.path(), &[]);
    assert_eq!(
        report["rows"]["requests_read"],
        local_demo()["rows"]["requests_read"]
    );
    let gets: Vec<Value> = requests_log()
        .into_iter()
        .filter(|r| r["path"] == "/incidents-b/wide/requests.parquet" && r["method"] == "GET")
        .collect();
    assert!(!gets.is_empty());
    assert!(
        gets.iter().all(|r| r["range"].is_string()),
        "every GET of the Parquet object is a ranged request: {gets:?}"
    );
    let fetched: u64 = gets.iter().map(|r| r["bytes"].as_u64().unwrap()).sum();
    assert!(
        fetched * 2 < size,
        "fetched {fetched} of {size} bytes: the unread column must not be downloaded"
    );
}

#[test]
fn text_objects_are_streamed_once_and_hashed() {
    let _turn = turn();
    let otel = fixture("demo-otel");
    bucket(
        "incidents-c",
        &[
            (
                "otel/requests.jsonl.zst",
                std::fs::read(otel.join("requests.jsonl.zst")).unwrap(),
            ),
            (
                "otel/receipts.jsonl.zst",
                std::fs::read(otel.join("receipts.jsonl.zst")).unwrap(),
            ),
            (
                "otel/mapping.toml",
                std::fs::read(otel.join("mapping.toml")).unwrap(),
            ),
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(otel.join("mapping.toml"), tmp.path().join("mapping.toml")).unwrap();
    copy_page_files(&otel, tmp.path());
    let incident = std::fs::read_to_string(otel.join("incident.toml"))
        .unwrap()
        .replace(
            "\"requests.jsonl.zst\"",
            "\"s3://incidents-c/otel/requests.jsonl.zst\"",
        )
        .replace(
            "\"receipts.jsonl.zst\"",
            "\"s3://incidents-c/otel/receipts.jsonl.zst\"",
        );
    std::fs::write(tmp.path().join("incident.toml"), incident).unwrap();
    http(s3().proxy, "POST", "/__log/reset", b"");
    let (_, report) = audit_s3(tmp.path(), &[]);
    let (_, local) = crate::util::audit_json(&otel.join("incident.toml"), &[]);
    assert_eq!(report["checks"], local["checks"]);
    assert_eq!(report["inputs"][0]["sha256"], local["inputs"][0]["sha256"]);
    assert_eq!(report["inputs"][0]["compression"], "zstd");
    let whole_gets = requests_log()
        .iter()
        .filter(|r| {
            r["path"] == "/incidents-c/otel/requests.jsonl.zst"
                && r["method"] == "GET"
                && r["range"].is_null()
        })
        .count();
    assert_eq!(
        whole_gets, 1,
        "the object is downloaded once, not once per read"
    );
}

#[test]
fn a_missing_bucket_or_object_is_an_input_error_naming_the_url() {
    let _turn = turn();
    bucket("incidents-d", &[]);
    let tmp = tempfile::tempdir().unwrap();
    demo_incident(
        tmp.path(),
        "s3://no-such-bucket/requests.parquet",
        "s3://incidents-d/nope.parquet",
    );
    let out = run_s3(
        tmp.path(),
        s3().proxy,
        "test-secret-value",
        &["audit", "incident.toml"],
    );
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(
        err.contains("`s3://no-such-bucket/requests.parquet`") && err.contains("NoSuchBucket"),
        "{err}"
    );
    assert!(
        err.contains("`s3://incidents-d/nope.parquet`: found no such object"),
        "{err}"
    );
    // A glob that matches nothing under an existing prefix.
    demo_incident(
        tmp.path(),
        "s3://incidents-d/logs/*.parquet",
        "s3://incidents-d/logs/*.parquet",
    );
    let out = run_s3(
        tmp.path(),
        s3().proxy,
        "test-secret-value",
        &["audit", "incident.toml"],
    );
    assert!(
        stderr(&out).contains("a glob that matched no object"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_credentials_are_an_input_error_that_shows_no_secret() {
    let _turn = turn();
    let tmp = tempfile::tempdir().unwrap();
    demo_incident(
        tmp.path(),
        "s3://any-bucket/requests-*.parquet",
        "s3://any-bucket/receipts.parquet",
    );
    let secret = "wJalrXUtnFEMI-secret-never-printed";
    let out = run_s3(
        tmp.path(),
        s3().auth,
        secret,
        &["audit", "incident.toml", "--format", "json"],
    );
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(
        err.contains("credentials refused (InvalidAccessKeyId)"),
        "{err}"
    );
    assert!(err.contains("s3://any-bucket/"), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for text in [&err, &stdout.to_string()] {
        assert!(!text.contains(secret), "the secret must never be printed");
        assert!(!text.contains("AKIAROLLPROOFTEST"), "nor the access key id");
    }
}

#[test]
fn transient_errors_are_retried() {
    let _turn = turn();
    let demo = fixture("demo");
    bucket(
        "incidents-e",
        &[
            (
                "requests.parquet",
                std::fs::read(demo.join("requests.parquet")).unwrap(),
            ),
            (
                "receipts.parquet",
                std::fs::read(demo.join("receipts.parquet")).unwrap(),
            ),
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    demo_incident(
        tmp.path(),
        "s3://incidents-e/requests.parquet",
        "s3://incidents-e/receipts.parquet",
    );
    http(s3().proxy, "POST", "/__log/reset", b"");
    http(s3().proxy, "POST", "/__fail?n=2", b"");
    let (code, report) = audit_s3(tmp.path(), &[]);
    assert_eq!(code, 1);
    assert_eq!(report["checks"], local_demo()["checks"]);
    let statuses: Vec<u64> = requests_log()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(
        &statuses[..2],
        [503, 503],
        "the store answered SlowDown twice: {statuses:?}"
    );
    assert!(
        statuses[2..].iter().all(|s| *s < 300),
        "then every request succeeded"
    );
}
