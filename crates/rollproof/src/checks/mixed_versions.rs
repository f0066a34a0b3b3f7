//! `mixed_versions`: no user sees more than one version tuple after the flip.
//!
//! Its figures come from the users table (`users.rs`): each user's one value, or mixed. Here the
//! value is the tuple of expected pins; `sticky_routing` reads the same table, where the value is
//! the arm. This file adds the check's figures, its samples (a look-up of the mixed users'
//! requests) and its evidence.

use super::users::{UsersKernel, USERS};
use super::{
    CheckInfo, CheckResult, CheckSpec, Evidence, Fields, Finish, Lever, Metric, Status, ROLLBACK,
    SAMPLE_CAP,
};
use crate::columns::{Col, Table};
use crate::engine::lookup::{Found, Lookup, LookupSpec};
use crate::engine::{Rows, States};
use crate::plan::{Ctx, Plan};
use crate::stats::Targets;
use crate::time::format_millis;

pub(crate) static CHECK: CheckSpec = CheckSpec {
    info: &INFO,
    kernels: &[&USERS, &USER_LOOKUP],
    finish,
    evidence: &[&Evidence {
        kind: "requests_of_users_on_several_versions",
        table: Table::Requests,
        select: mixed_users_requests,
    }],
};

pub(crate) static INFO: CheckInfo = CheckInfo {
    id: "mixed_versions",
    title: "Users on mixed versions",
    modes: ROLLBACK,
    what_it_checks: "For each user with post-flip requests, the distinct tuples of the expected pins their \
        requests carried. A user whose post-flip requests carry more than one tuple is mixed.",
    why_it_matters: "A user who gets answers from two builds in one session sees the product contradict itself, \
        and sticky sessions or per-user caches can keep a user on the bad version long after the fleet moved. \
        It also shows a rollout that is still converging.",
    what_fails_it: "It warns when users_mixed > 0; it does not fail (the pins check fails the wrong pins).",
    columns_it_needs: "ts, user_id and the pin columns named in [expected_pins]; request_id for samples.",
    figures: &[
        ("users_checked", "Distinct user_id values among requests with ts >= flip_at."),
        ("users_mixed", "Of those, users whose requests carried more than one tuple of the named pins (missing is a value)."),
        ("requests_without_user", "Audited requests without a user_id (not counted)."),
    ],
    remediation: "find what keeps users on the old version (sticky sessions, per-user caches) and drain it",
    region_column: None,
    impact: Some(|_, m, _| {
        let n = m.get("users_mixed").and_then(Metric::as_count).unwrap_or(0);
        (n > 0).then(|| {
            format!(
                "{} more than one version after the flip.",
                crate::words::plural(n, "user was served", "users were served")
            )
        })
    }),
    events: None,
    lever: Some(|_| Some(Lever::AliasIndexBack)),
};

/// Why the kernel cannot run, if it cannot.
pub(crate) fn skip_reason(ctx: &Ctx) -> Option<String> {
    if !ctx.has(Col::UserId) {
        return Some("the requests have no `user_id` column".to_string());
    }
    if matches!(ctx.plan, Plan::Rollback(_)) && !ctx.plan.pins_named().iter().any(|c| ctx.has(*c)) {
        return Some("none of the expected pins is a column of the requests".to_string());
    }
    None
}

/// Evidence: the audited requests of every user who saw more than one value.
pub(crate) fn mixed_users_requests(ctx: &Ctx, states: &States, rows: &Rows<'_>) -> Vec<bool> {
    let n = rows.len();
    let (Some(users), None) = (rows.user_hashes(), skip_reason(ctx)) else {
        return vec![false; n];
    };
    let state = states.get::<UsersKernel>();
    (0..n)
        .map(|i| rows.set[i] != 0 && users[i].is_some_and(|u| state.is_mixed(u)))
        .collect()
}

/// The requests of the sampled mixed users, to show what they saw: per user and value shown,
/// the earliest (ts, request id).
pub(crate) struct UserLookup;
pub(crate) static USER_LOOKUP: Lookup<UserLookup> = Lookup(UserLookup);

impl LookupSpec for UserLookup {
    type Key = u64;
    type Group = String;
    type Item = (i64, String);
    const NAME: &'static str = "user_lookup";
    const TABLE: Table = Table::Requests;
    const ITEMS: usize = 1;
    // `scan` skips rows whose `set` is 0.
    const AUDITED_ONLY: bool = true;
    const KEY: Option<Col> = Some(Col::UserId);

    fn is_target(key: &str, targets: &Targets<u64>) -> bool {
        // As `Rows::user_hashes` hashes it.
        targets.contains(&crate::columns::hash_str(Some(key)))
    }

    fn columns(&self, ctx: &Ctx) -> Vec<Col> {
        // Without request ids: decoding them again would double the cost of this pass, and the
        // `pins` samples already carry them.
        let mut cols = vec![Col::UserId, Col::Arm];
        cols.extend(ctx.plan.pins_named());
        cols
    }

    fn targets(&self, ctx: &Ctx, prior: &States) -> Vec<u64> {
        if skip_reason(ctx).is_some() {
            return Vec::new();
        }
        let users = prior.get::<UsersKernel>();
        let targets = users.sample_targets();
        if ctx.first_pass_samples && users.keeps_whole(&targets) {
            // The first pass kept these users' samples.
            return Vec::new();
        }
        targets
    }

    fn scan(
        &self,
        ctx: &Ctx,
        rows: &Rows<'_>,
        targets: &Targets<u64>,
        found: &mut Found<'_, Self>,
    ) {
        let batch = rows.batch;
        let user = batch.str(Col::UserId).expect("projected");
        let user_hashes = rows.user_hashes().expect("projected");
        let request_id = batch.str(Col::RequestId);
        let ts = batch.ts();
        for i in 0..batch.len() {
            if rows.set[i] == 0 {
                continue;
            }
            let Some(h) = user_hashes[i].filter(|h| targets.contains(h)) else {
                continue;
            };
            let u = user.get(i).expect("a user hash has a user");
            let shown = shown(ctx, rows, i);
            let id = request_id
                .as_ref()
                .and_then(|c| c.get(i))
                .unwrap_or("")
                .to_string();
            found(h, u, shown, (ts[i], id));
        }
    }
}

/// What a sample shows of audited row `i`'s value: its arm (canary), or the expected pins it
/// differs in (rollback).
pub(crate) fn shown(ctx: &Ctx, rows: &Rows<'_>, i: usize) -> String {
    match &ctx.plan {
        Plan::Canary(_) => ctx.plan.set_label(rows.set[i] as usize - 1),
        Plan::Rollback(r) => {
            // Only the pins that differ from the expected set: the part that matters.
            let differing: Vec<String> = r.pins[0]
                .pins
                .iter()
                .filter_map(|(c, want)| {
                    let got = rows.batch.str(*c)?.get(i);
                    (got != Some(want.as_str()))
                        .then(|| format!("{}={}", c.name(), got.unwrap_or("∅")))
                })
                .collect();
            if differing.is_empty() {
                "expected pins".to_string()
            } else {
                differing.join(" ")
            }
        }
    }
}

/// One sample per user, ordered by user id: the distinct values with their first request, the
/// [`SAMPLE_CAP`] earliest of them, and how many more there were (`seen_omitted`, only when some
/// were left out). A user can have a value per request (a pin mapped to a request field, every
/// request under one user id such as `anonymous`): listing them all put 49 MB into the JSON for
/// one user with 800K requests.
pub(crate) fn user_samples(ctx: &Ctx, states: &States) -> Vec<Fields> {
    let Some(lookup) = states.try_get::<Lookup<UserLookup>>() else {
        return Vec::new();
    };
    // (user, [(first ts, request id, value shown)]) per user.
    type Seen = Vec<(i64, String, String)>;
    // Nothing found: either no user is mixed, or the look-up had no targets because the first
    // pass kept them (`UserLookup::targets` decides it; the targets are only listed again here).
    let captured = if lookup.found.is_empty() && ctx.first_pass_samples {
        let users_state = states.get::<UsersKernel>();
        users_state.captured(&users_state.sample_targets())
    } else {
        None
    };
    let mut users: Vec<(String, Seen)> = match captured {
        // The look-up does not read request ids (see `UserLookup::columns`), nor does this.
        Some(captured) => captured
            .into_iter()
            .map(|(text, first)| {
                let mut seen: Seen = first
                    .into_iter()
                    .map(|(shown, ts)| (ts, String::new(), shown))
                    .collect();
                seen.sort();
                (text.to_string(), seen)
            })
            .collect(),
        None => lookup
            .found
            .values()
            .map(|found| {
                let mut seen: Seen = found
                    .groups
                    .iter()
                    .filter_map(|(shown, first)| {
                        first
                            .items()
                            .first()
                            .map(|(ts, id)| (*ts, id.clone(), shown.clone()))
                    })
                    .collect();
                seen.sort();
                (found.text.clone(), seen)
            })
            .collect(),
    };
    users.sort();
    users
        .into_iter()
        .map(|(user, mut seen)| {
            let mut f = Fields::new();
            f.insert("user_id".into(), Metric::Text(Some(user.clone())));
            if seen.len() > SAMPLE_CAP {
                let omitted = (seen.len() - SAMPLE_CAP) as u64;
                f.insert("seen_omitted".into(), Metric::Count(omitted));
                seen.truncate(SAMPLE_CAP);
            }
            f.insert(
                "seen".into(),
                Metric::Texts(
                    seen.iter()
                        .map(|(ts, id, shown)| match id.as_str() {
                            "" => format!("{} {}", format_millis(*ts), shown),
                            id => format!("{} {} ({})", format_millis(*ts), shown, id),
                        })
                        .collect(),
                ),
            );
            f
        })
        .collect()
}

fn finish(f: &Finish<'_>) -> CheckResult {
    if let Some(reason) = skip_reason(f.ctx) {
        return CheckResult::skip(INFO.id, reason);
    }
    let partial = f.states.get::<UsersKernel>();
    let checked = partial.users_checked();
    let mixed = partial.users_mixed();
    let (status, summary) = if mixed > 0 {
        (
            Status::Warn,
            format!(
                "{} of {} users saw more than one version tuple after the flip",
                super::count(mixed),
                super::count(checked)
            ),
        )
    } else {
        (
            Status::Pass,
            format!(
                "each of {} users saw one version tuple after the flip",
                super::count(checked)
            ),
        )
    };
    let mut result = CheckResult::new(INFO.id, status, summary)
        .metric("users_checked", Metric::Count(checked))
        .metric("users_mixed", Metric::Count(mixed))
        .metric(
            "requests_without_user",
            Metric::Count(partial.requests_without_user()),
        )
        .cells(format!("{mixed} users mixed"), "", "0 users mixed (warn)")
        .sample_size(checked.to_string());
    result.samples = user_samples(f.ctx, f.states);
    result
}
