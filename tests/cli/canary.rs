//! Canary mode runs on the same kernels as rollback mode.

use rollproof_gen::{
    fixture_scenarios, incident_toml, receipts_batch, requests_batch, write_batches, Naming,
    OutFormat,
};

use crate::util::{audit_json, checks};

#[test]
fn a_canary_identical_to_stable_passes_with_ratio_one_and_zero_drift() {
    let scenario = fixture_scenarios()
        .into_iter()
        .find(|s| s.name == "canary-pass")
        .unwrap();
    let (requests, receipts) = rollproof_gen::generate(&scenario);
    // Every stable request again, relabelled as the canary arm with the canary's pins.
    let mut both: Vec<_> = requests
        .iter()
        .filter(|r| r.arm.as_deref() == Some("stable"))
        .cloned()
        .collect();
    let copies: Vec<_> = both
        .iter()
        .map(|r| {
            let mut c = r.clone();
            c.arm = Some("canary".into());
            c.request_id = format!("{}-c", r.request_id);
            c.user_id = format!("{}-c", r.user_id);
            c.pins[3] = "p-7".into();
            c.cache_ns = format!("ns:{}:p-7", c.pins[4]);
            c
        })
        .collect();
    both.extend(copies);
    let tmp = tempfile::tempdir().unwrap();
    write_batches(
        &tmp.path().join("requests.parquet"),
        OutFormat::Parquet,
        &[requests_batch(&both, Naming::Canonical)],
        500,
    )
    .unwrap();
    write_batches(
        &tmp.path().join("receipts.parquet"),
        OutFormat::Parquet,
        &[receipts_batch(&receipts)],
        500,
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("incident.toml"),
        incident_toml(
            &scenario,
            "requests.parquet",
            Some("receipts.parquet"),
            None,
        ),
    )
    .unwrap();
    let (code, report) = audit_json(&tmp.path().join("incident.toml"), &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["mode"], "canary");
    let c = checks(&report);
    assert_eq!(c["latency"]["metrics"]["p95_ratio"], 1.0);
    assert_eq!(c["latency"]["metrics"]["p99_ratio"], 1.0);
    assert_eq!(
        c["latency"]["metrics"]["baseline_p95_ms"],
        c["latency"]["metrics"]["canary_p95_ms"]
    );
    assert_eq!(c["quality"]["metrics"]["delta_s_p95_drift"], 0.0);
    assert_eq!(
        c["quality"]["metrics"]["baseline_coverage_mean"],
        c["quality"]["metrics"]["canary_coverage_mean"]
    );
    assert_eq!(
        c["error_rate"]["metrics"]["baseline_error_rate"],
        c["error_rate"]["metrics"]["canary_error_rate"]
    );
    assert_eq!(c["pins"]["metrics"]["violations"], 0);
    assert_eq!(c["cache_isolation"]["metrics"]["foreign_hits"], 0);
    assert!(
        !c.contains_key("writer_freeze"),
        "writer_freeze does not apply to canaries"
    );
    assert!(!c.contains_key("error_recovery"));
}

#[test]
fn canary_reports_say_which_arm_is_which() {
    let (_, report) = audit_json(
        &crate::util::fixture("canary-fail").join("incident.toml"),
        &[],
    );
    assert_eq!(report["mode"], "canary");
    assert_eq!(report["expected_pins"]["canary"]["prompt_ver"], "p-7");
    let c = checks(&report);
    assert_eq!(c["cache_isolation"]["metrics"]["by_arm"]["canary"], 7);
    assert!(c["latency"]["metrics"]["canary_p99_ms"].is_number());
    assert!(c["pins"]["metrics"]["other_arm"].is_number());
}
