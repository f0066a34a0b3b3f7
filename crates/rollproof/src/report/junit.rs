//! JUnit XML (`--junit FILE`) for CI systems: one test case per check, so that a CI dashboard's
//! failure count is the number of failed checks. A failure carries the observed value against the
//! threshold, and the check's per-region breakdown when it has one. A warning passes (JUnit has
//! no warning state) and says so in the case's output.

use quick_junit::{NonSuccessKind, Report as JunitReport, TestCase, TestCaseStatus, TestSuite};

use super::{Renderer, Report};
use crate::checks::{Metric, Status};

pub(crate) struct Junit;

fn case(name: String, status: Status, message: &str, detail: String) -> TestCase {
    let case_status = match status {
        Status::Fail => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(message)
                .set_type("rollproof.fail")
                .set_description(detail);
            s
        }
        Status::Inconclusive => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_message(message)
                .set_type("rollproof.inconclusive")
                .set_description(detail);
            s
        }
        Status::Skip => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(message);
            s
        }
        Status::Pass | Status::Warn => TestCaseStatus::success(),
    };
    let mut tc = TestCase::new(name, case_status);
    tc.set_classname("rollproof");
    if matches!(status, Status::Pass | Status::Warn) {
        tc.set_system_out(format!("{}: {message}", status.name()));
    }
    tc
}

impl Renderer for Junit {
    fn render(&self, r: &Report) -> String {
        // Every text goes through the escaping policy: XML cannot hold U+FFFE or most C0
        // characters, and CI systems print these texts into their logs.
        let clean = |s: &str| crate::escape::neutral(s).into_owned();
        let mut suite = TestSuite::new(format!("rollproof {} {}", r.mode, clean(&r.incident.id)));
        for check in &r.checks {
            // Only the cells the check fills (most checks have no baseline).
            let mut detail: String = [
                ("observed", &check.observed),
                ("baseline", &check.baseline),
                ("threshold", &check.threshold),
            ]
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}: {}\n", clean(v)))
            .collect();
            detail.push_str(&clean(&check.summary));
            if let Some(by_region) = check
                .metrics
                .get("by_region")
                .and_then(Metric::as_counts)
                .filter(|m| !m.is_empty())
            {
                let regions: Vec<String> = by_region
                    .iter()
                    .map(|(k, v)| format!("{} {v}", clean(k)))
                    .collect();
                detail.push_str(&format!("\nby region: {}", regions.join(", ")));
            }
            suite.add_test_case(case(
                check.id.to_string(),
                check.status,
                &clean(&check.summary),
                detail,
            ));
        }
        let mut report = JunitReport::new("rollproof");
        report.add_test_suite(suite);
        report.to_string().expect("JUnit XML serializes")
    }
}
