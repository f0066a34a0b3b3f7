//! The fuzz targets' harness, shared with the tests that replay the committed fuzz seeds: one
//! input file audited through the public API, as a user would run it. Errors are the expected
//! outcome for most inputs; only a panic (or an abort) is a finding.

use std::path::PathBuf;

/// An incident that names every pin and a cache namespace, so that every check reads its columns.
pub(crate) const INCIDENT: &str = r#"id = "FUZZ"
flip_at = "2026-11-27T10:15:00Z"
[inputs]
requests = "REQUESTS"
[windows]
baseline = ["2026-11-27T08:30:00Z", "2026-11-27T09:00:00Z"]
freeze = ["2026-11-27T10:10:00Z", "2026-11-27T10:40:00Z"]
[expected_pins]
build_id = "b-1041"
git_sha = "9f2c1e0"
model_ver = "m-2026-10"
prompt_ver = "p-6"
index_hash = "ih-a41f"
rerank_conf = "r-1"
tok_ver = "t-1"
analyzer_conf = "a-1"
[cache]
namespace = "ns:{index_hash}:{prompt_ver}"
"#;

/// Every figure, the per-minute series and the evidence: all the code a report can reach.
const OPTIONS: rollproof::AuditOptions = rollproof::AuditOptions {
    series: true,
    hash_inputs: false,
    evidence: true,
};

/// The human renderings, which read every part of the report.
fn render_all(report: &rollproof::Report) {
    for format in [rollproof::Format::Text, rollproof::Format::Html] {
        let _ = rollproof::render(format, report);
    }
}

/// Writes `data` to a file named `name` in a scratch folder and audits it as the requests.
pub fn audit_one_file(name: &str, data: &[u8]) {
    audit_with_mapping(name, data, None)
}

/// The OTLP target's input: a mapping file, a NUL byte, then the requests (OTLP/JSON lines).
pub fn audit_mapping_and_file(name: &str, data: &[u8]) {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let mapping = String::from_utf8_lossy(&data[..split]).into_owned();
    let rest = data.get(split + 1..).unwrap_or_default();
    audit_with_mapping(name, rest, Some(&mapping))
}

fn audit_with_mapping(name: &str, data: &[u8], mapping: Option<&str>) {
    thread_local! {
        static DIR: PathBuf = {
            let dir = std::env::temp_dir().join(format!("rollproof-fuzz-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&dir);
            dir
        };
    }
    let (path, incident, mapping_path) = DIR.with(|d| {
        (
            d.join(name),
            d.join("incident.toml"),
            d.join("mapping.toml"),
        )
    });
    let mut text = INCIDENT.replace("REQUESTS", name);
    if let Some(m) = mapping {
        if std::fs::write(&mapping_path, m).is_err() {
            return;
        }
        text = text.replace("[windows]", "mapping = \"mapping.toml\"\n[windows]");
    }
    if std::fs::write(&path, data).is_err() || std::fs::write(&incident, text).is_err() {
        return;
    }
    let Ok(incident) = rollproof::Incident::load(&incident) else {
        return;
    };
    if let Ok(report) = rollproof::audit(
        &incident,
        &rollproof::InputOverrides::default(),
        OPTIONS,
        &|_, _, _| {},
    ) {
        render_all(&report);
    }
}

/// The partial target's input: the body of a partial-state file (sealed here with a valid header
/// and checksum), merged against a small Parquet requests file of the seed rows.
pub fn merge_partial_body(body: &[u8]) {
    thread_local! {
        static SETUP: Option<PathBuf> = {
            let dir = std::env::temp_dir().join(format!("rollproof-fuzz-partial-{}", std::process::id()));
            crate::seeds::write_partial_setup(&dir).ok().map(|_| dir.join("incident.toml"))
        };
    }
    let Some(incident) = SETUP.with(|s| s.clone()) else {
        return;
    };
    let file = rollproof::fuzzing::seal_partial(body);
    if let Ok(report) = rollproof::merge(
        &incident,
        &rollproof::InputOverrides::default(),
        vec![(PathBuf::from("fuzz.rpp"), file)],
        OPTIONS,
        None,
        &|_, _, _| {},
    ) {
        render_all(&report);
    }
}
