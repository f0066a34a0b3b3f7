//! Byte-identical JSON whatever the thread count, the row order or the batching.

use rollproof_gen::{
    fixture_scenarios, incident_toml, receipts_batch, requests_batch, write_batches, Naming,
    OutFormat,
};

use crate::util::{checks, fixture, run, run_env, stderr, stdout};

fn json_with_threads(incident: &str, threads: &str) -> String {
    let out = run(&["audit", incident, "--format", "json", "--threads", threads]);
    stdout(&out)
}

/// The demo incident with these rows, as Parquet in row groups of the given sizes, in a new
/// folder (`incident.toml` and the page's files beside them).
fn write_incident(
    demo: &rollproof_gen::Scenario,
    requests: &[rollproof_gen::Request],
    receipts: &[rollproof_gen::Receipt],
    request_rows_per_group: usize,
    receipt_rows_per_group: usize,
) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    write_batches(
        &tmp.path().join("requests.parquet"),
        OutFormat::Parquet,
        &[requests_batch(requests, Naming::Canonical)],
        request_rows_per_group,
    )
    .unwrap();
    write_batches(
        &tmp.path().join("receipts.parquet"),
        OutFormat::Parquet,
        &[receipts_batch(receipts)],
        receipt_rows_per_group,
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("incident.toml"),
        incident_toml(demo, "requests.parquet", Some("receipts.parquet"), None),
    )
    .unwrap();
    rollproof_gen::page::write_files(demo, tmp.path(), Naming::Canonical).unwrap();
    tmp
}

#[test]
fn thread_counts_give_byte_identical_json() {
    for name in ["demo", "canary-fail", "clean"] {
        let incident = fixture(name).join("incident.toml");
        let incident = incident.to_str().unwrap();
        let one = json_with_threads(incident, "1");
        assert!(one.contains("\"schema_version\": 1"));
        assert_eq!(
            one,
            json_with_threads(incident, "2"),
            "{name}: --threads 1 vs 2"
        );
        assert_eq!(
            one,
            json_with_threads(incident, "7"),
            "{name}: --threads 1 vs 7"
        );
    }
}

#[test]
fn row_order_and_batch_size_do_not_change_the_report() {
    let demo = fixture_scenarios()
        .into_iter()
        .find(|s| s.name == "demo")
        .unwrap();
    let (mut requests, mut receipts) = rollproof_gen::generate(&demo);
    // A deterministic shuffle, and different row group sizes.
    let mut rng = rollproof_gen::Rng::new(99);
    for i in (1..requests.len()).rev() {
        requests.swap(i, rng.below(i as u64 + 1) as usize);
    }
    receipts.reverse();
    let tmp = write_incident(&demo, &requests, &receipts, 777, 100);
    let shuffled: serde_json::Value = serde_json::from_str(&json_with_threads(
        tmp.path().join("incident.toml").to_str().unwrap(),
        "2",
    ))
    .unwrap();
    let original: serde_json::Value = serde_json::from_str(&json_with_threads(
        fixture("demo").join("incident.toml").to_str().unwrap(),
        "2",
    ))
    .unwrap();
    assert_eq!(shuffled["checks"], original["checks"]);
    assert_eq!(shuffled["rows"], original["rows"]);
}

/// Rows tied on (ts, request_id) but different in everything else: the samples must be chosen by
/// content, so that the report is the same for any thread count, file split or row order.
#[test]
fn ties_on_time_and_id_are_decided_by_content() {
    let mut rows: Vec<String> = Vec::new();
    for i in 0..400 {
        let minute = 20 + (i / 10 % 30);
        // Ten rows share each (ts, request_id, region); they differ in pins and namespace.
        let id = i / 10;
        rows.push(format!(
            "2026-11-27T10:{minute:02}:00Z,r-{id},region-{},u-{},b-{},p-{},ns:{},true,200",
            id % 3,
            i % 13,
            i % 3,
            i % 5,
            i % 4
        ));
    }
    for i in 0..300 {
        rows.push(format!(
            "2026-11-27T09:{:02}:{:02}Z,q-{i},region-0,u-{},b-0,p-0,ns:0,false,200",
            i / 60 % 60,
            i % 60,
            i % 13
        ));
    }
    let header = "ts,request_id,region,user_id,build_id,prompt_ver,cache_ns,cache_hit,status\n";
    let incident = r#"id = "TIES"
flip_at = "2026-11-27T10:15:00Z"
root_cause_url = "https://x.example"
[inputs]
requests = "part-*.csv"
[windows]
baseline = ["2026-11-27T09:00:00Z", "2026-11-27T10:00:00Z"]
[expected_pins]
build_id = "b-0"
prompt_ver = "p-0"
[cache]
namespace = "ns:{build_id}"
"#;
    let report = |order: &[usize], parts: usize, threads: &str| -> String {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("incident.toml"), incident).unwrap();
        for p in 0..parts {
            let mut csv = String::from(header);
            for (k, &i) in order.iter().enumerate() {
                if k % parts == p {
                    csv.push_str(&rows[i]);
                    csv.push('\n');
                }
            }
            std::fs::write(tmp.path().join(format!("part-{p}.csv")), csv).unwrap();
        }
        let out = crate::util::run_in(
            tmp.path(),
            &[
                "audit",
                "incident.toml",
                "--format",
                "json",
                "-q",
                "--threads",
                threads,
            ],
        );
        let mut json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // Paths and row counts per file differ with the split; everything else must not.
        json.as_object_mut().unwrap().remove("inputs");
        json["checks"]
            .as_array_mut()
            .unwrap()
            .retain(|c| c["id"] != "evidence");
        serde_json::to_string_pretty(&json).unwrap()
    };
    let forward: Vec<usize> = (0..rows.len()).collect();
    let mut shuffled = forward.clone();
    let mut rng = rollproof_gen::Rng::new(7);
    for i in (1..shuffled.len()).rev() {
        shuffled.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let reference = report(&forward, 1, "1");
    assert!(reference.contains("\"samples\""));
    for (order, parts, threads) in [(&forward, 4, "2"), (&shuffled, 1, "1"), (&shuffled, 7, "2")] {
        assert_eq!(
            report(order, parts, threads),
            reference,
            "{parts} files, {threads} threads"
        );
    }
}

/// The units a phase of the audit read, from its `ROLLPROOF_TIMINGS` line:
/// `timing: 0.1 s  sample look-ups (receipts 1 unit, requests 3 units)  (RSS …)`.
fn units_read(timings: &str, phase: &str, table: &str) -> u64 {
    let line = timings
        .lines()
        .find(|l| l.contains(&format!("{phase} (")))
        .unwrap_or_else(|| panic!("no `{phase}` line in:\n{timings}"));
    let counts = &line[line.find(&format!("{phase} (")).unwrap() + phase.len()..];
    let at = counts
        .find(&format!("{table} "))
        .expect("the table's count")
        + table.len()
        + 1;
    let digits: String = counts[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

/// Logs written in time order, in small row groups: the look-up of the mixed users' requests
/// reads only the row groups that reach the flip (as the first pass saw them), and every
/// figure and sample is the same as from the committed fixture. The demo's few hundred users
/// are all kept by the first pass (`users::Captured`), which then makes the look-up needless:
/// `ROLLPROOF_NO_SAMPLE_CAPTURE` makes it run, and both ways give the same report, byte for byte.
#[test]
fn sample_look_ups_skip_the_row_groups_before_the_flip() {
    let demo = fixture_scenarios()
        .into_iter()
        .find(|s| s.name == "demo")
        .unwrap();
    let (mut requests, receipts) = rollproof_gen::generate(&demo);
    requests.sort_by(|a, b| (a.ts, &a.request_id).cmp(&(b.ts, &b.request_id)));
    let rows_per_group = 500;
    let tmp = write_incident(&demo, &requests, &receipts, rows_per_group, 100_000);

    let args = [
        "audit",
        "incident.toml",
        "--format",
        "json",
        "--threads",
        "2",
    ];
    let captured = run_env(tmp.path(), &args, &[("ROLLPROOF_TIMINGS", "1")]);
    let out = run_env(
        tmp.path(),
        &args,
        &[
            ("ROLLPROOF_TIMINGS", "1"),
            ("ROLLPROOF_NO_SAMPLE_CAPTURE", "1"),
        ],
    );
    assert_eq!(stdout(&captured), stdout(&out));
    assert_eq!(
        units_read(&stderr(&captured), "sample look-ups", "requests"),
        0,
        "the first pass kept the samples"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let original: serde_json::Value = serde_json::from_str(&json_with_threads(
        fixture("demo").join("incident.toml").to_str().unwrap(),
        "2",
    ))
    .unwrap();
    assert_eq!(report["checks"], original["checks"]);
    let mixed = checks(&report)["mixed_versions"].clone();
    assert!(
        mixed["samples"].as_array().is_some_and(|s| s.len() >= 5),
        "the look-up found the mixed users' requests: {mixed}"
    );

    // The row groups holding a row at or after the earliest flip of any region.
    let earliest_flip = demo
        .page
        .region_flips
        .iter()
        .map(|(_, at)| *at)
        .fold(demo.flip_at, i64::min);
    let total = requests.chunks(rows_per_group).len() as u64;
    let reaching = requests
        .chunks(rows_per_group)
        .filter(|g| g.last().unwrap().ts >= earliest_flip)
        .count() as u64;
    let timings = stderr(&out);
    if cfg!(target_os = "linux") {
        // Each phase line ends with the CPU used so far, which never goes down.
        let cpu: Vec<f64> = timings
            .lines()
            .filter(|l| l.starts_with("timing:"))
            .map(|l| {
                let at = l.rfind("CPU ").unwrap_or_else(|| panic!("no CPU in {l}"));
                l[at + 4..].trim_end_matches(" s)").parse().unwrap()
            })
            .collect();
        assert!(cpu.len() >= 3, "{timings}");
        assert!(cpu.windows(2).all(|w| w[0] <= w[1]), "{timings}");
    }
    assert_eq!(units_read(&timings, "requests pass", "requests"), total);
    assert_eq!(
        units_read(&timings, "sample look-ups", "requests"),
        reaching
    );
    assert!(
        reaching < total,
        "{reaching} of {total}: the test must skip some"
    );
}
