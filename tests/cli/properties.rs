//! Properties over generated incidents (proptest), run in-process through the library:
//! planting k faults is reported as exactly k, a clean incident never fails, and row order,
//! batch size and thread count never change the JSON.

use proptest::prelude::*;
use rollproof::Incident;
use rollproof::{AuditOptions, Format, InputOverrides, Report};
use rollproof_gen::{
    generate, incident_toml, receipts_batch, requests_batch, write_batches, Naming, OutFormat,
    Scenario,
};

fn small(seed: u64) -> Scenario {
    let mut s = Scenario::rollback("prop", "property", seed);
    s.requests_per_minute = 10;
    s.users = 60;
    s
}

fn audit(s: &Scenario, row_group: usize, threads: usize, shuffle: Option<u64>) -> Report {
    let (mut requests, mut receipts) = generate(s);
    if let Some(seed) = shuffle {
        let mut rng = rollproof_gen::Rng::new(seed);
        for i in (1..requests.len()).rev() {
            requests.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for i in (1..receipts.len()).rev() {
            receipts.swap(i, rng.below(i as u64 + 1) as usize);
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_batches(
        &dir.join("requests.parquet"),
        OutFormat::Parquet,
        &[requests_batch(&requests, Naming::Canonical)],
        row_group,
    )
    .unwrap();
    write_batches(
        &dir.join("receipts.parquet"),
        OutFormat::Parquet,
        &[receipts_batch(&receipts)],
        row_group,
    )
    .unwrap();
    std::fs::write(
        dir.join("incident.toml"),
        incident_toml(s, "requests.parquet", Some("receipts.parquet"), None),
    )
    .unwrap();
    rollproof_gen::page::write_files(s, dir, Naming::Canonical).unwrap();
    let incident = Incident::load(&dir.join("incident.toml")).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        rollproof::audit(
            &incident,
            &InputOverrides::default(),
            AuditOptions::default(),
            &|_, _, _| {},
        )
    })
    .unwrap()
}

fn metric(r: &Report, check: &str, key: &str) -> serde_json::Value {
    serde_json::to_value(&r.check(check).unwrap().metrics[key]).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    #[test]
    fn planted_faults_are_reported_exactly(seed in 0u64..1_000_000, wrong in 0usize..15, stale in 0usize..10, doubled in 0usize..6, freeze in 0usize..4) {
        let mut s = small(seed);
        s.faults.wrong_index_hash = wrong;
        s.faults.stale_cache_hits = stale;
        s.faults.doubled_keys = doubled;
        s.faults.freeze_writes = freeze;
        let r = audit(&s, 700, 2, None);
        prop_assert_eq!(metric(&r, "pins", "violations"), wrong as u64);
        prop_assert_eq!(metric(&r, "cache_rotation", "stale_hits"), stale as u64);
        prop_assert_eq!(metric(&r, "duplicate_effects", "extra_executions"), doubled as u64);
        prop_assert_eq!(metric(&r, "writer_freeze", "writes_during_freeze"), freeze as u64);
        let failing = wrong + stale + doubled + freeze > 0;
        prop_assert_eq!(r.verdict == rollproof::Status::Fail, failing);
    }

    #[test]
    fn a_clean_incident_never_fails(seed in 0u64..1_000_000) {
        let r = audit(&small(seed), 1000, 2, None);
        prop_assert_eq!(r.verdict, rollproof::Status::Pass, "{:?}", r.checks.iter().map(|c| (c.id, c.status, c.summary.clone())).collect::<Vec<_>>());
    }

    #[test]
    fn order_batches_and_threads_never_change_the_json(seed in 0u64..1_000_000, shuffle in 0u64..1_000_000, row_group in 50usize..3000, threads in 1usize..4) {
        let mut s = small(seed);
        s.faults.wrong_index_hash = 3;
        s.faults.tripled_keys = 1;
        s.faults.two_writer_keys = 1;
        let reference = rollproof::render(Format::Json, &audit(&s, 1000, 1, None));
        let other = rollproof::render(Format::Json, &audit(&s, row_group, threads, Some(shuffle)));
        // The inputs' hashes differ (other bytes on disk): compare everything but `inputs`.
        let strip = |j: &str| { let mut v: serde_json::Value = serde_json::from_str(j).unwrap(); v.as_object_mut().unwrap().remove("inputs"); v };
        prop_assert_eq!(strip(&reference), strip(&other));
    }
}
