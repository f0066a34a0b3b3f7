//! Every committed fixture: the tool's figures against the generator's oracle, exactly for counts.

use serde_json::Value;

use crate::util::{audit_json, checks, fixture, root};

/// Quantile figures are within 1% of the exact nearest-rank value (the contract's promise);
/// ratios of two quantiles within 2%; other figures are exact (rates to 1e-9).
fn tolerance(key: &str) -> Tolerance {
    if key.ends_with("_ratio") {
        Tolerance::Relative(0.02)
    } else if key.ends_with("_ms") || key.ends_with("delta_s_p95") {
        Tolerance::Relative(0.01)
    } else if key == "delta_s_p95_drift" {
        Tolerance::Absolute(0.008)
    } else {
        Tolerance::Absolute(1e-9)
    }
}

enum Tolerance {
    Relative(f64),
    Absolute(f64),
}

fn assert_figure(scenario: &str, check: &str, key: &str, want: &Value, got: &Value) {
    let context = format!("{scenario}: {check}.{key}: expected {want}, got {got}");
    match (want, got) {
        (Value::Number(w), Value::Number(g)) if w.is_u64() && g.is_u64() => {
            assert_eq!(w, g, "{context}")
        }
        (Value::Number(w), Value::Number(g)) => {
            let (w, g) = (w.as_f64().unwrap(), g.as_f64().unwrap());
            let ok = match tolerance(key) {
                Tolerance::Relative(r) => (w - g).abs() <= w.abs() * r,
                Tolerance::Absolute(a) => (w - g).abs() <= a,
            };
            assert!(ok, "{context}");
        }
        _ => assert_eq!(want, got, "{context}"),
    }
}

#[test]
fn every_fixture_matches_its_planted_figures() {
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("fixtures")).unwrap() {
        let dir = entry.unwrap().path();
        let expected_path = dir.join("expected.json");
        if !expected_path.exists() {
            continue;
        }
        seen += 1;
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
        let (code, report) = audit_json(&dir.join("incident.toml"), &[]);
        assert_eq!(
            code as i64,
            expected["exit_code"].as_i64().unwrap(),
            "{name}: exit code"
        );
        assert_eq!(report["verdict"], expected["verdict"], "{name}: verdict");
        assert_eq!(
            report["exit_code"], expected["exit_code"],
            "{name}: exit_code in the report"
        );
        let checks = checks(&report);
        for (id, status) in expected["statuses"].as_object().unwrap() {
            assert_eq!(
                &checks[id]["status"], status,
                "{name}: status of {id}: {}",
                checks[id]["summary"]
            );
        }
        if let Some(impact) = expected["impact"].as_object() {
            let got = &report["impact"];
            for key in ["incident_start", "peak_error_rate"] {
                assert_figure(&name, "impact", key, &impact[key], &got[key]);
            }
            let windows: Vec<&str> = got["windows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w["name"].as_str().unwrap())
                .collect();
            let want: Vec<&str> = impact["windows"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let mut sorted = windows.clone();
            sorted.sort();
            assert_eq!(sorted, want, "{name}: impact windows");
            for w in got["windows"].as_array().unwrap() {
                let wname = w["name"].as_str().unwrap();
                for (key, value) in impact["windows"][wname].as_object().unwrap() {
                    assert_figure(&name, &format!("impact.{wname}"), key, value, &w[key]);
                }
            }
        } else {
            assert!(
                report.get("impact").is_none(),
                "{name}: no impact section in canary mode"
            );
        }
        for (id, figures) in expected["figures"].as_object().unwrap() {
            let check = checks
                .get(id)
                .unwrap_or_else(|| panic!("{name}: no check {id}"));
            if check["status"] == "skip" {
                continue;
            }
            for (key, want) in figures.as_object().unwrap() {
                let got = &check["metrics"][key];
                assert_figure(&name, id, key, want, got);
            }
        }
    }
    assert!(
        seen >= 14,
        "expected every fixture to be checked, saw {seen}"
    );
}

#[test]
fn fixtures_are_what_the_generator_writes() {
    let dir = tempfile::tempdir().unwrap();
    rollproof_gen::write_fixtures(dir.path()).unwrap();
    let mut compared = 0;
    for scenario in std::fs::read_dir(dir.path()).unwrap() {
        let scenario = scenario.unwrap().path();
        for file in std::fs::read_dir(&scenario).unwrap() {
            let file = file.unwrap().path();
            let committed = root()
                .join("fixtures")
                .join(scenario.file_name().unwrap())
                .join(file.file_name().unwrap());
            assert!(
                std::fs::read(&committed).ok() == Some(std::fs::read(&file).unwrap()),
                "{} differs from what `cargo run --bin rollproof-gen -- fixtures` writes",
                committed.display()
            );
            compared += 1;
        }
    }
    assert!(compared > 40);
}

#[test]
fn demo_figures_are_the_planted_ones() {
    // The README's demo, spelled out: these numbers are planted by the generator's scenario.
    let (code, report) = audit_json(&fixture("demo").join("incident.toml"), &[]);
    assert_eq!(code, 1);
    let c = checks(&report);
    assert_eq!(c["pins"]["metrics"]["by_pin"]["index_hash"], 37);
    assert_eq!(c["pins"]["metrics"]["by_pin"]["prompt_ver"], 5);
    assert_eq!(c["pins"]["metrics"]["missing"], 5);
    assert_eq!(c["cache_rotation"]["metrics"]["stale_hits"], 12);
    // 3 keys executed twice, 1 three times, 1 by two writers at the flip: 3 + 2 + 1 extra.
    assert_eq!(c["duplicate_effects"]["metrics"]["extra_executions"], 6);
    assert_eq!(c["duplicate_effects"]["metrics"]["duplicate_keys"], 5);
    assert_eq!(c["duplicate_effects"]["metrics"]["dedupe_hits"], 6);
    // 2 planted freeze writes + the 2 executions of the two-writer key at the flip.
    assert_eq!(c["writer_freeze"]["metrics"]["writes_during_freeze"], 4);
    assert_eq!(c["writer_freeze"]["metrics"]["two_writer_effects"], 1);
    assert_eq!(c["error_recovery"]["metrics"]["recovery_minutes"], 3);
    // 3 receipts whose requests are not in the logs, 2 executions for requests that failed.
    assert_eq!(c["reconciliation"]["metrics"]["orphan_receipts"], 3);
    assert_eq!(
        c["reconciliation"]["metrics"]["executions_on_failed_requests"],
        2
    );
    assert_eq!(c["reconciliation"]["status"], "warn");
}
