//! Byte-identical JSON whatever the thread count, the row order or the batching.

use rollproof_gen::{
    fixture_scenarios, incident_toml, receipts_batch, requests_batch, write_batches, Naming,
    OutFormat,
};

use crate::util::{fixture, run, stdout};

fn json_with_threads(incident: &str, threads: &str) -> String {
    let out = run(&["audit", incident, "--format", "json", "--threads", threads]);
    stdout(&out)
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
    let tmp = tempfile::tempdir().unwrap();
    write_batches(
        &tmp.path().join("requests.parquet"),
        OutFormat::Parquet,
        &[requests_batch(&requests, Naming::Canonical)],
        777,
    )
    .unwrap();
    write_batches(
        &tmp.path().join("receipts.parquet"),
        OutFormat::Parquet,
        &[receipts_batch(&receipts)],
        100,
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("incident.toml"),
        incident_toml(&demo, "requests.parquet", Some("receipts.parquet"), None),
    )
    .unwrap();
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
