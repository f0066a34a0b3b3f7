//! JUnit XML (`--junit FILE`) for CI systems: one test case per check, and one per region for
//! checks that break down by region. Failures carry the observed value against the threshold.

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
        let mut suite = TestSuite::new(format!("rollproof {} {}", r.mode, r.incident.id));
        for check in &r.checks {
            let detail = format!(
                "observed: {}\nbaseline: {}\nthreshold: {}\n{}",
                check.observed, check.baseline, check.threshold, check.summary
            );
            suite.add_test_case(case(
                check.id.to_string(),
                check.status,
                &check.summary,
                detail,
            ));
            let Some(by_region) = check.metrics.get("by_region").and_then(Metric::as_counts) else {
                continue;
            };
            if !matches!(check.status, Status::Pass | Status::Fail | Status::Warn) {
                continue;
            }
            for (region, &n) in by_region {
                let status = if n > 0 && check.status == Status::Fail {
                    Status::Fail
                } else {
                    Status::Pass
                };
                let message = format!("{n} findings of `{}` in region {region}", check.id);
                suite.add_test_case(case(
                    format!("{}[{region}]", check.id),
                    status,
                    &message,
                    message.clone(),
                ));
            }
        }
        let mut report = JunitReport::new("rollproof");
        report.add_test_suite(suite);
        report.to_string().expect("JUnit XML serializes")
    }
}
