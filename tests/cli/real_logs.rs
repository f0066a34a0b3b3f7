//! Logs as real software writes them, through the mapping additions: epoch seconds as strings
//! with a unit on `ts`, numbers written as strings, `HIT`/`MISS`, lists of upstream values with
//! `pick`, `-` as missing, and rows the proxy answered itself left out with `drop_if_missing`.
//! (The nginx, Envoy and OpenTelemetry fixtures written by the real software are in
//! `recipes.rs`.)

use serde_json::{json, Value};

use crate::util::{audit_json, checks, code, run_in, stderr};

const FLIP: f64 = 1_796_029_200.0; // 2026-11-30T09:00:00Z

fn incident(mapping: bool) -> String {
    format!(
        r#"id = "NGINX"
flip_at = "2026-11-30T09:00:00Z"
root_cause_url = "https://tracker.example/NGINX"
[inputs]
requests = "access.log"
{}
[windows]
baseline = ["2026-11-30T08:00:00Z", "2026-11-30T08:30:00Z"]
post = ["2026-11-30T09:10:00Z", "2026-11-30T09:40:00Z"]
[expected_pins]
prompt_ver = "p-6"
[cache]
namespace = "ns:{{prompt_ver}}"
"#,
        if mapping {
            "mapping = \"mapping.toml\""
        } else {
            ""
        }
    )
}

const MAPPING: &str = r#"[requests]
ts = { column = "msec", unit = "s" }
request_id = "request_id"
status = { column = "upstream_status", pick = "last" }
latency_ms = { column = "upstream_response_time", unit = "s", pick = "last" }
cache_hit = "upstream_cache_status"
cache_ns = "upstream_http_x_cache_ns"
prompt_ver = "upstream_http_x_prompt_ver"
null = ["-"]
drop_if_missing = ["upstream_addr"]
"#;

/// One nginx `log_format … escape=json` line: every variable a string, `-` for an absent
/// upstream value.
fn line(
    t: f64,
    id: usize,
    status: &str,
    time: &str,
    cache: &str,
    prompt: &str,
    upstream: &str,
) -> String {
    json!({
        "msec": format!("{t:.3}"),
        "request_id": format!("r-{id}"),
        "status": status.rsplit(' ').next().unwrap(),
        "upstream_status": status,
        "upstream_response_time": time,
        "upstream_cache_status": cache,
        "upstream_http_x_cache_ns": if prompt == "-" { "-".to_string() } else { format!("ns:{prompt}") },
        "upstream_http_x_prompt_ver": prompt,
        "upstream_addr": upstream,
    })
    .to_string()
}

/// 300 baseline and 300 post requests (p-6, 100 ms, a HIT every third), with faults planted after
/// the flip: 5 requests on the old prompt pack `p-7` (2 of them stale cache hits), 10 retried
/// upstreams (`"0.100, 0.300"`, `"502 : 200"`), and 4 requests nginx answered itself (499, no
/// upstream, `-` everywhere) that the mapping leaves out.
fn access_log() -> String {
    let mut lines = Vec::new();
    for i in 0..300 {
        let cache = if i % 3 == 0 { "HIT" } else { "MISS" };
        lines.push(line(
            FLIP - 3600.0 + i as f64 * 5.0,
            i,
            "200",
            "0.100",
            cache,
            "p-6",
            "10.0.0.1:80",
        ));
    }
    for i in 0..300 {
        let t = FLIP + 600.0 + i as f64 * 5.0 + 0.25;
        let id = 1000 + i;
        let l = match i {
            0..=4 => line(
                t,
                id,
                "200",
                "0.100",
                if i < 2 { "HIT" } else { "MISS" },
                "p-7",
                "10.0.0.2:80",
            ),
            5..=14 => line(
                t,
                id,
                "502 : 200",
                "0.100, 0.300",
                "MISS",
                "p-6",
                "10.0.0.1:80, 10.0.0.3:80",
            ),
            15..=18 => line(t, id, "499", "-", "-", "-", "-"),
            _ => line(
                t,
                id,
                "200",
                "0.100",
                if i % 3 == 0 { "HIT" } else { "-" },
                "p-6",
                "10.0.0.1:80",
            ),
        };
        lines.push(l);
    }
    lines.join("\n") + "\n"
}

fn write(dir: &std::path::Path, files: &[(&str, &str)]) {
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
}

#[test]
fn an_nginx_json_access_log_is_audited_with_one_mapping() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[
            ("incident.toml", &incident(true)),
            ("mapping.toml", MAPPING),
            ("access.log", &access_log()),
        ],
    );
    let (code, report) = audit_json(&tmp.path().join("incident.toml"), &[]);
    assert_eq!(code, 1);
    assert_eq!(
        report["inputs"][0]["format"], "ndjson",
        "detected from the content"
    );
    let rows = &report["rows"];
    assert_eq!(rows["requests_read"], 600);
    assert_eq!(
        rows["requests_dropped"], 4,
        "the 499s nginx answered itself"
    );
    assert_eq!(report["inputs"][0]["rows_dropped"], 4);
    let c = checks(&report);
    let pins = &c["pins"]["metrics"];
    assert_eq!(pins["requests_checked"], 296);
    assert_eq!(pins["violations"], 5, "only the planted p-7 requests");
    assert_eq!(
        pins["missing"], 0,
        "the 499s were left out, not counted as missing pins"
    );
    let cache = &c["cache_rotation"]["metrics"];
    assert_eq!(cache["stale_hits"], 2);
    // HITs after the flip: 2 planted + every third of rows 19..300 (`-` is missing, not a miss).
    let hits = 2 + (19..300).filter(|i| i % 3 == 0).count();
    assert_eq!(cache["hits_checked"], hits as u64);
    // `pick = "last"`: the retried requests took 300 ms and answered 200.
    let latency = &c["latency"]["metrics"];
    assert!((latency["baseline_p95_ms"].as_f64().unwrap() - 100.0).abs() < 0.2);
    assert!((latency["post_p99_ms"].as_f64().unwrap() - 300.0).abs() < 0.5);
    let errors = &c["error_recovery"]["metrics"];
    assert_eq!(errors["post_error_rate"], 0.0, "`502 : 200` answered 200");
    assert_eq!(errors["status_missing"], 0);
}

#[test]
fn every_problem_of_the_logs_shows_in_one_run() {
    // The mapping a new user writes first: no unit on `ts`, no `pick`, a misspelt column, and a
    // second file that has no timestamp at all.
    let mapping = r#"[requests]
ts = "msec"
latency_ms = { column = "upstream_response_time", unit = "s" }
cache_hit = "upstream_cache_status"
prompt_ver = "upstream_http_x_prompt_ver"
promt_ver = "x"
"#;
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[
            (
                "incident.toml",
                &incident(true).replace(
                    "requests = \"access.log\"",
                    "requests = [\"access.log\", \"access.log.1\"]",
                ),
            ),
            ("mapping.toml", mapping),
            ("access.log", &access_log()),
            ("access.log.1", "{\"time\": \"later\"}\n"),
        ],
    );
    let out = run_in(tmp.path(), &["audit", "incident.toml", "--quiet"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    for expected in [
        // the misspelt canonical column, with a did-you-mean
        "`requests.promt_ver`",
        "did you mean `prompt_ver`",
        // the second file has no `msec`
        "`access.log.1`, column `msec`: found no `msec` column",
        // the epoch seconds need their unit
        "`1796025600.000`",
        "unit = \\\"s\\\"",
        // the retried upstream needs a `pick`
        "`0.100, 0.300`",
        "pick = \\\"last\\\"",
        // nginx's `-` needs declaring as missing
        "row 316: found `-`",
        "null = [\\\"-\\\"]",
    ] {
        assert!(
            err.contains(&expected.replace("\\\"", "\"")),
            "should mention {expected}: {err}"
        );
    }
}

#[test]
fn problems_of_the_incident_and_of_its_inputs_come_together() {
    // Problems of the incident and of its inputs together: a bad threshold and a missing file.
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[(
            "incident.toml",
            &incident(false).replace("[windows]", "[thresholds]\np95_ratio = 2\n[windows]"),
        )],
    );
    let out = run_in(tmp.path(), &["audit", "incident.toml", "--quiet"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 2);
    assert!(err.contains("unknown threshold `p95_ratio`"), "{err}");
    assert!(err.contains("`access.log`: found no such file"), "{err}");
}

#[test]
fn timestamps_in_every_unit_and_spelling() {
    let tmp = tempfile::tempdir().unwrap();
    let rows: Vec<Value> = vec![
        json!({"t": "1796029800.5", "prompt_ver": "p-6", "cache_hit": false}),
        json!({"t": 1796029800.5, "prompt_ver": "p-6", "cache_hit": false}),
        json!({"t": "1796029800", "prompt_ver": "p-6", "cache_hit": false}),
        json!({"t": "2026-11-30T09:10:00.500Z", "prompt_ver": "p-6", "cache_hit": false}),
    ];
    let log: String = rows.iter().map(|r| r.to_string() + "\n").collect();
    write(
        tmp.path(),
        &[
            ("incident.toml", &incident(true)),
            (
                "mapping.toml",
                "[requests]\nts = { column = \"t\", unit = \"s\" }\n",
            ),
            ("access.log", &log),
        ],
    );
    let (_, report) = audit_json(&tmp.path().join("incident.toml"), &[]);
    assert_eq!(report["windows"]["data_start"], "2026-11-30T09:10:00.000Z");
    assert_eq!(report["windows"]["data_end"], "2026-11-30T09:10:00.500Z");
    assert_eq!(checks(&report)["pins"]["metrics"]["requests_checked"], 4);
}
