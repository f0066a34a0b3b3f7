//! `[statistics]` end to end: intervals in every report, the interval method's decisions and
//! words, confidence sequences, and bad settings. The statistical properties themselves (coverage,
//! false-fail rates, power) are tested by simulation in the library (stats/intervals/tests.rs).

use crate::util::{audit_json, checks, code, copy_fixture, run_in, stderr, stdout};

/// The canary fixture with `[statistics]` appended.
fn canary_with(statistics: &str) -> tempfile::TempDir {
    let dir = copy_fixture("canary-fail");
    let path = dir.path().join("incident.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!("\n[statistics]\n{statistics}\n"));
    std::fs::write(&path, text).unwrap();
    dir
}

fn ci(check: &serde_json::Value, key: &str) -> (Option<f64>, Option<f64>) {
    let v = &check["metrics"][key];
    assert!(v.is_array(), "{key}: {v}");
    (v[0].as_f64(), v[1].as_f64())
}

#[test]
fn intervals_are_reported_with_their_sample_sizes_under_the_point_method() {
    let dir = canary_with("");
    let (exit, report) = audit_json(&dir.path().join("incident.toml"), &[]);
    assert_eq!(exit, 1);
    assert_eq!(report["statistics"]["method"], "point");
    let c = checks(&report);
    let latency = &c["latency"];
    let (low, high) = ci(latency, "p95_ratio_ci");
    let estimate = latency["metrics"]["p95_ratio"].as_f64().unwrap();
    assert!(
        low.unwrap() < estimate && estimate < high.unwrap(),
        "{latency}"
    );
    // A p99 of 280 values has no upper bound at 95%.
    assert_eq!(ci(latency, "p99_ratio_ci").1, None);
    assert_eq!(latency["metrics"]["n_baseline"], 920);
    assert_eq!(latency["metrics"]["n_canary"], 280);
    let errors = &c["error_rate"];
    // 0 errors in 280 requests is not a rate of exactly 0: Clopper–Pearson gives [0, 1.31%].
    assert_eq!(errors["metrics"]["errors_canary"], 0);
    let (low, high) = ci(errors, "canary_error_rate_ci");
    assert_eq!(low, Some(0.0));
    assert!((high.unwrap() - 0.013084).abs() < 1e-5, "{high:?}");
    assert!(errors["metrics"]["error_rate_diff_ci"].is_array());
    for key in [
        "delta_s_p95_drift_ci",
        "baseline_coverage_mean_ci",
        "canary_coverage_mean_ci",
        "baseline_lambda_flip_rate_ci",
        "canary_lambda_flip_rate_ci",
    ] {
        ci(&c["quality"], key);
    }
    // The point method judges estimates: the same verdicts as without [statistics].
    assert_eq!(latency["status"], "fail");
    assert_eq!(errors["status"], "pass");
}

#[test]
fn the_interval_method_fails_past_passes_within_and_is_inconclusive_across() {
    let dir = canary_with("method = \"interval\"");
    let incident = dir.path().join("incident.toml");
    // p95 ratio 1.49 with interval [1.43, 1.54]: wholly past 1.15 → fail.
    let (_, report) = audit_json(&incident, &[]);
    assert_eq!(checks(&report)["latency"]["status"], "fail");
    // Wholly within 1.6 → the p95 criterion passes (the p99's open end keeps latency undecided
    // unless its own threshold is unreachable).
    let (_, report) = audit_json(
        &incident,
        &[
            "--threshold",
            "p95_latency_ratio_max=1.6",
            "--threshold",
            "p99_latency_ratio_max=1000",
        ],
    );
    let latency = &checks(&report)["latency"];
    assert_eq!(latency["status"], "inconclusive", "{latency}");
    // Across 1.5 → inconclusive, with the criterion, the interval and how much more data.
    let out = run_in(
        dir.path(),
        &[
            "audit",
            "incident.toml",
            "--threshold",
            "p95_latency_ratio_max=1.5",
            "--quiet",
        ],
    );
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.contains(" latency "))
        .expect("a latency line");
    assert!(line.contains("INCON"), "{line}");
    assert!(
        line.contains("p95 ratio 1.488, 95% interval [1.429, 1.542] straddles ≤ 1.5: inconclusive — need about"),
        "{line}"
    );
    assert!(text.contains("how sure (interval method)"), "{text}");
    // The canary error rate: 0 of 280 cannot show a rate under 0.5% → inconclusive (exit 1
    // still, cache_isolation fails).
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(text.contains("canary error rate 0.00%, 95% interval [0.00%, 1.31%] straddles < 0.50%"));
}

#[test]
fn an_unbounded_p99_is_inconclusive_under_the_interval_method() {
    let dir = canary_with("method = \"interval\"");
    let (_, report) = audit_json(
        &dir.path().join("incident.toml"),
        &["--threshold", "p95_latency_ratio_max=1.6"],
    );
    let latency = &checks(&report)["latency"];
    assert_eq!(latency["status"], "inconclusive");
    let summary = latency["summary"].as_str().unwrap();
    assert!(
        summary.contains("p99 ratio 1.485, 95% interval [1.059, ∞] straddles ≤ 2: inconclusive — too few values to bound it on that side"),
        "{summary}"
    );
}

#[test]
fn confidence_sequences_are_wider_than_fixed_intervals() {
    let fixed = canary_with("confidence = 0.95");
    let sequential = canary_with("confidence = 0.95\nsequential = true");
    let (_, a) = audit_json(&fixed.path().join("incident.toml"), &[]);
    let (_, b) = audit_json(&sequential.path().join("incident.toml"), &[]);
    assert_eq!(b["statistics"]["sequential"], true);
    for (check, key) in [
        ("latency", "p95_ratio_ci"),
        ("error_rate", "canary_error_rate_ci"),
        ("quality", "canary_coverage_mean_ci"),
    ] {
        let (fl, fh) = ci(&checks(&a)[check], key);
        let (sl, sh) = ci(&checks(&b)[check], key);
        assert!(
            sl.unwrap() <= fl.unwrap() && sh.unwrap() >= fh.unwrap(),
            "{check}.{key}"
        );
        assert!(
            sh.unwrap() - sl.unwrap() > fh.unwrap() - fl.unwrap(),
            "{check}.{key}"
        );
    }
    let out = run_in(sequential.path(), &["audit", "incident.toml", "--quiet"]);
    assert!(stdout(&out).contains("95% CS ["), "{}", stdout(&out));
}

#[test]
fn a_higher_confidence_gives_wider_intervals() {
    let a = canary_with("confidence = 0.9");
    let b = canary_with("confidence = 0.99");
    let (_, a) = audit_json(&a.path().join("incident.toml"), &[]);
    let (_, b) = audit_json(&b.path().join("incident.toml"), &[]);
    let (al, ah) = ci(&checks(&a)["latency"], "p95_ratio_ci");
    let (bl, bh) = ci(&checks(&b)["latency"], "p95_ratio_ci");
    assert!(bl.unwrap() < al.unwrap() && bh.unwrap() > ah.unwrap());
}

#[test]
fn bad_statistics_settings_are_input_errors() {
    let dir = canary_with("method = \"bayes\"\nconfidence = 1.5\nsequentail = true");
    let out = run_in(dir.path(), &["audit", "incident.toml"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains("sequentail"), "{err}");
    let dir = canary_with("method = \"bayes\"\nconfidence = 1.5");
    let out = run_in(dir.path(), &["audit", "incident.toml"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.contains("`statistics.method`") && err.contains("`bayes`"),
        "{err}"
    );
    assert!(
        err.contains("`statistics.confidence`") && err.contains("`1.5`"),
        "{err}"
    );
}

#[test]
fn the_html_report_draws_each_interval_against_its_threshold() {
    let dir = canary_with("method = \"interval\"");
    let out = run_in(
        dir.path(),
        &["audit", "incident.toml", "--html", "report.html", "--quiet"],
    );
    assert!(code(&out) <= 3, "{}", stderr(&out));
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("<h2>How sure</h2>"));
    // One drawing per interval row: 9 in the canary (error rate and its difference, p95 and p99
    // ratios, five of quality), each with its estimate; 8 with a threshold line.
    assert_eq!(html.matches("<circle class=\"ci-dot\"").count(), 9);
    assert_eq!(html.matches("<line class=\"ci-threshold\"").count(), 8);
    assert!(html.contains("class=\"decision violated\""));
}
