//! Side-effect receipts on a hand-written table, every figure counted by hand.

use crate::util::{audit_json, checks};

const INCIDENT: &str = r#"id = "INC-R"
flip_at = "2026-11-27T10:15:00Z"
root_cause_url = "https://tracker.example/R"
[inputs]
requests = "requests.csv"
receipts = "receipts.csv"
[windows]
baseline = ["2026-11-27T08:30:00Z", "2026-11-27T09:00:00Z"]
freeze = ["2026-11-27T10:10:00Z", "2026-11-27T10:40:00Z"]
[expected_pins]
build_id = "b-1"
"#;

const RECEIPTS: &str = "\
ts,receipt_id,request_id,idempotency_key,effect,writer_id,decision,effect_id
2026-11-27T10:00:00Z,rc-1,r-1,k1,email.send,w-a,new,
2026-11-27T10:01:00Z,rc-2,r-1,k1,email.send,w-a,duplicate,
2026-11-27T10:02:00Z,rc-3,r-1,k1,email.send,w-a,CONFLICT,
2026-11-27T09:00:00Z,rc-4,r-2,k2,payment.charge,w-a,,
2026-11-27T10:20:00Z,rc-5,r-2,k2,payment.charge,w-b,new,
2026-11-27T11:00:00Z,rc-6,r-3,k3,ticket.create,w-b,new,e-1
2026-11-27T11:01:00Z,rc-7,r-3,k3,ticket.create,w-b,New,e-2
2026-11-27T11:02:00Z,rc-8,r-4,k4,email.send,w-b,maybe,
2026-11-27T10:14:30Z,rc-9,r-5,k5,payment.charge,w-a,new,
2026-11-27T10:15:30Z,rc-10,r-5,k5,payment.charge,w-b,new,
2026-11-27T11:03:00Z,rc-11,r-404,k6,email.send,w-b,new,
";

fn requests_csv() -> String {
    let mut csv = String::from("ts,request_id,build_id,status\n");
    for (i, status) in [(1, 200), (2, 200), (3, 503), (4, 200), (5, 200)] {
        csv.push_str(&format!("2026-11-27T10:5{i}:00Z,r-{i},b-1,{status}\n"));
    }
    csv
}

#[test]
fn receipts_figures_counted_by_hand() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("incident.toml"), INCIDENT).unwrap();
    std::fs::write(tmp.path().join("requests.csv"), requests_csv()).unwrap();
    std::fs::write(tmp.path().join("receipts.csv"), RECEIPTS).unwrap();
    let (_, report) = audit_json(&tmp.path().join("incident.toml"), &[]);
    let c = checks(&report);
    let d = &c["duplicate_effects"]["metrics"];
    // k1: one `new` + a `duplicate` and a `CONFLICT` decision: one execution, two dedupe hits.
    // k2 (null + new), k3 (new + New), k5 (two writers), k6: executions; k4 `maybe` is unknown.
    assert_eq!(d["executions"], 8);
    assert_eq!(d["dedupe_hits"], 2);
    assert_eq!(d["unknown_decisions"], 1);
    assert_eq!(d["duplicate_keys"], 3);
    assert_eq!(d["extra_executions"], 3);
    assert_eq!(d["multi_writer_keys"], 2);
    assert_eq!(d["multi_effect_id_keys"], 1);
    // Extra executions: k2's second at 10:20 and k5's second at 10:15:30 in the freeze, k3's after it.
    assert_eq!(d["extra_executions_by_phase"]["during_freeze"], 2);
    assert_eq!(d["extra_executions_by_phase"]["after_freeze"], 1);
    assert_eq!(d["extra_executions_by_effect"]["payment.charge"], 2);
    assert_eq!(d["extra_executions_by_effect"]["ticket.create"], 1);
    assert_eq!(c["duplicate_effects"]["status"], "fail");
    let samples = c["duplicate_effects"]["samples"].as_array().unwrap();
    let keys: Vec<&str> = samples
        .iter()
        .map(|s| s["idempotency_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["k2", "k3", "k5"]);
    assert_eq!(
        samples[0]["receipt_ids"],
        serde_json::json!(["rc-4", "rc-5"])
    );

    let w = &c["writer_freeze"]["metrics"];
    assert_eq!(w["writes_during_freeze"], 3);
    assert_eq!(w["freeze_by_writer"]["w-a"], 1);
    assert_eq!(w["freeze_by_writer"]["w-b"], 2);
    assert_eq!(w["two_writer_effects"], 1);
    assert_eq!(w["never_unfrozen"], false);
    assert_eq!(c["writer_freeze"]["status"], "fail");
    assert_eq!(c["writer_freeze"]["samples"][0]["idempotency_key"], "k5");

    let r = &c["reconciliation"]["metrics"];
    assert_eq!(r["orphan_receipts"], 1);
    // r-3 returned 503 and its key k3 was executed twice.
    assert_eq!(r["executions_on_failed_requests"], 2);
    assert_eq!(c["reconciliation"]["status"], "warn");
}

#[test]
fn jobs_never_unfrozen_warn() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("incident.toml"), INCIDENT).unwrap();
    std::fs::write(tmp.path().join("requests.csv"), requests_csv()).unwrap();
    // Executions before and during the freeze only; requests go on until 10:55.
    let receipts = "ts,receipt_id,request_id,idempotency_key,writer_id\n2026-11-27T10:00:00Z,rc-1,r-1,k1,w-a\n";
    std::fs::write(tmp.path().join("receipts.csv"), receipts).unwrap();
    let (code, report) = audit_json(&tmp.path().join("incident.toml"), &[]);
    let c = checks(&report);
    assert_eq!(
        c["writer_freeze"]["status"], "warn",
        "{}",
        c["writer_freeze"]["summary"]
    );
    assert_eq!(c["writer_freeze"]["metrics"]["never_unfrozen"], true);
    assert_eq!(c["duplicate_effects"]["status"], "pass");
    assert_ne!(code, 1);
}
