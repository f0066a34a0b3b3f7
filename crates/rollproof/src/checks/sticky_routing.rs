//! `sticky_routing` (canary): each user stays on one arm.
//!
//! Same kernel as `mixed_versions`, with the arm as the value.

use super::mixed_versions::{skip_reason, user_samples, USER_LOOKUP};
use super::users::{UsersKernel, USERS};
use super::{CheckInfo, CheckResult, CheckSpec, Finish, Metric, Status, CANARY};

pub(crate) static CHECK: CheckSpec = CheckSpec {
    info: &INFO,
    kernels: &[&USERS, &USER_LOOKUP],
    finish,
    evidence: &[&super::Evidence {
        kind: "requests_of_users_on_both_arms",
        table: crate::columns::Table::Requests,
        select: super::mixed_versions::mixed_users_requests,
    }],
};

pub(crate) static INFO: CheckInfo = CheckInfo {
    id: "sticky_routing",
    title: "Sticky routing",
    modes: CANARY,
    what_it_checks:
        "For each user with requests in the window, whether their requests went to both arms.",
    why_it_matters:
        "A canary comparison assumes independent populations. Users bouncing between arms see \
        inconsistent answers and contaminate both arms' figures (caches, sessions, feedback).",
    what_fails_it: "It warns when users_both_arms > 0.",
    columns_it_needs: "ts, arm, user_id; request_id for samples.",
    figures: &[
        (
            "users_checked",
            "Distinct user_id values among requests of either arm in the window.",
        ),
        (
            "users_both_arms",
            "Of those, users with requests on both arms.",
        ),
        (
            "requests_without_user",
            "Requests of either arm without a user_id (not counted).",
        ),
    ],
    remediation: "make arm assignment sticky per user before comparing arms",
    region_column: None,
    impact: Some(|_, m, _| {
        let n = m
            .get("users_both_arms")
            .and_then(Metric::as_count)
            .unwrap_or(0);
        (n > 0).then(|| {
            format!(
                "{} both arms, so their answers switched versions mid-session.",
                crate::words::plural(n, "user saw", "users saw")
            )
        })
    }),
    events: None,
    lever: None,
};

fn finish(f: &Finish<'_>) -> CheckResult {
    if let Some(reason) = skip_reason(f.ctx) {
        return CheckResult::skip(INFO.id, reason);
    }
    let partial = f.states.get::<UsersKernel>();
    let checked = partial.users_checked();
    let both = partial.users_mixed();
    let (status, summary) = if both > 0 {
        (
            Status::Warn,
            format!(
                "{} of {} users saw both arms",
                super::count(both),
                super::count(checked)
            ),
        )
    } else {
        (
            Status::Pass,
            format!("each of {} users stayed on one arm", super::count(checked)),
        )
    };
    let mut result = CheckResult::new(INFO.id, status, summary)
        .metric("users_checked", Metric::Count(checked))
        .metric("users_both_arms", Metric::Count(both))
        .metric(
            "requests_without_user",
            Metric::Count(partial.requests_without_user()),
        )
        .cells(format!("{both} users on both arms"), "", "0 (warn)")
        .sample_size(checked.to_string());
    result.samples = user_samples(f.ctx, f.states);
    result
}
