//! `mixed_versions`: no user sees more than one version tuple after the flip.
//!
//! The kernel — users whose audited requests carry more than one distinct value — is shared with
//! `sticky_routing`, where the value is the arm instead of the tuple of expected pins.

use std::collections::BTreeMap;

use super::{
    CheckInfo, CheckResult, Ctx, Fields, Metric, RowClasses, Status, ROLLBACK, SAMPLE_CAP,
};
use crate::columns::{hash_str, CanonBatch, Col};
use crate::incident::{pins_named_in, Mode};
use crate::stats::{PrehashedMap, Targets};
use crate::time::format_millis;

pub static INFO: CheckInfo = CheckInfo {
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
};

/// A user's one value so far, or `MIXED` (16 bytes a user with the key).
const MIXED: u64 = u64::MAX;

/// Users → the one value seen so far, or `MIXED`.
#[derive(Default)]
pub struct Partial {
    users: PrehashedMap<u64, u64>,
    requests_without_user: u64,
}

/// The value a row contributes: the hash of its tuple of expected pins (rollback) or its arm.
fn row_values(ctx: &Ctx, batch: &CanonBatch, rows: &RowClasses) -> Vec<u64> {
    match ctx.mode {
        Mode::Canary => rows.set.iter().map(|&s| s as u64).collect(),
        Mode::Rollback => {
            let mut values = vec![0xcbf2_9ce4_8422_2325u64; batch.len()];
            for col in pins_named_in(&ctx.pin_sets) {
                let Some(arr) = batch.str(col) else { continue };
                let hashes = arr.map_rows(hash_str);
                for (v, h) in values.iter_mut().zip(hashes) {
                    *v = (v.rotate_left(23) ^ h).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                }
            }
            values
        }
    }
}

impl Partial {
    pub fn skip_reason(ctx: &Ctx) -> Option<String> {
        if !ctx.has(Col::UserId) {
            return Some("the requests have no `user_id` column".to_string());
        }
        if ctx.mode == Mode::Rollback && !pins_named_in(&ctx.pin_sets).iter().any(|c| ctx.has(*c)) {
            return Some("none of the expected pins is a column of the requests".to_string());
        }
        None
    }

    pub fn update(&mut self, ctx: &Ctx, batch: &CanonBatch, rows: &RowClasses) {
        if Partial::skip_reason(ctx).is_some() {
            return;
        }
        let user = batch.str(Col::UserId).expect("projected");
        let user_hashes = user.map_rows(|u| u.map(|u| hash_str(Some(u))));
        let values = row_values(ctx, batch, rows);
        for i in 0..batch.len() {
            if rows.set[i] == 0 {
                continue;
            }
            let Some(u) = user_hashes[i] else {
                self.requests_without_user += 1;
                continue;
            };
            let value = values[i].min(MIXED - 1);
            self.users
                .entry(u)
                .and_modify(|e| {
                    if *e != value {
                        *e = MIXED;
                    }
                })
                .or_insert(value);
        }
    }

    pub fn merge(&mut self, other: Partial) {
        self.requests_without_user += other.requests_without_user;
        if other.users.len() > self.users.len() {
            let mine = std::mem::replace(&mut self.users, other.users);
            return self.merge(Partial {
                users: mine,
                requests_without_user: 0,
            });
        }
        for (u, e) in other.users {
            self.users
                .entry(u)
                .and_modify(|m| {
                    if *m != e {
                        *m = MIXED;
                    }
                })
                .or_insert(e);
        }
    }

    pub fn users_checked(&self) -> u64 {
        self.users.len() as u64
    }

    pub fn users_mixed(&self) -> u64 {
        self.users.values().filter(|e| **e == MIXED).count() as u64
    }

    /// The mixed users to show as samples: the smallest hashes, so the choice is deterministic.
    pub fn sample_targets(&self) -> Vec<u64> {
        let mut mixed: Vec<u64> = self
            .users
            .iter()
            .filter(|(_, e)| **e == MIXED)
            .map(|(u, _)| *u)
            .collect();
        mixed.sort_unstable();
        mixed.truncate(SAMPLE_CAP);
        mixed
    }

    pub fn requests_without_user(&self) -> u64 {
        self.requests_without_user
    }
}

/// What a user was seen with → the earliest (ts, request id) they were seen with it.
type FirstSeen = BTreeMap<String, (i64, String)>;

/// A second, targeted pass: the requests of the sampled mixed users, to show what they saw.
pub struct Lookup {
    targets: Targets<u64>,
    /// user hash → (user id, value shown → earliest (ts, request id)).
    found: BTreeMap<u64, (String, FirstSeen)>,
}

impl Lookup {
    pub fn new(targets: Vec<u64>) -> Lookup {
        Lookup {
            targets: Targets::new(targets),
            found: BTreeMap::new(),
        }
    }

    pub fn update(&mut self, ctx: &Ctx, batch: &CanonBatch) {
        let rows = RowClasses::classify(ctx, batch);
        let user = batch.str(Col::UserId).expect("projected");
        let request_id = batch.str(Col::RequestId);
        let ts = batch.ts();
        for i in 0..batch.len() {
            if rows.set[i] == 0 {
                continue;
            }
            let Some(u) = user.get(i) else { continue };
            let h = hash_str(Some(u));
            if !self.targets.contains(&h) {
                continue;
            }
            let shown = match ctx.mode {
                Mode::Canary => ctx.set_label(rows.set[i] as usize - 1),
                Mode::Rollback => {
                    // Only the pins that differ from the expected set: the part that matters.
                    let differing: Vec<String> = ctx.pin_sets[0]
                        .pins
                        .iter()
                        .filter_map(|(c, want)| {
                            let got = batch.str(*c)?.get(i);
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
            };
            let id = request_id
                .as_ref()
                .and_then(|c| c.get(i))
                .unwrap_or("")
                .to_string();
            let entry = self
                .found
                .entry(h)
                .or_insert_with(|| (u.to_string(), BTreeMap::new()));
            let slot = entry.1.entry(shown).or_insert((ts[i], id.clone()));
            if (ts[i], &id) < (slot.0, &slot.1) {
                *slot = (ts[i], id);
            }
        }
    }

    pub fn merge(mut self, other: Lookup) -> Lookup {
        for (h, (user, values)) in other.found {
            let entry = self
                .found
                .entry(h)
                .or_insert_with(|| (user, BTreeMap::new()));
            for (shown, first) in values {
                let slot = entry.1.entry(shown).or_insert(first.clone());
                if first < *slot {
                    *slot = first;
                }
            }
        }
        self
    }

    /// One sample per user, ordered by user id: the distinct values with their first request.
    pub fn samples(self) -> Vec<Fields> {
        let mut users: Vec<(String, FirstSeen)> = self.found.into_values().collect();
        users.sort();
        users
            .into_iter()
            .map(|(user, values)| {
                let mut seen: Vec<(i64, String, String)> = values
                    .into_iter()
                    .map(|(shown, (ts, id))| (ts, id, shown))
                    .collect();
                seen.sort();
                let mut f = Fields::new();
                f.insert("user_id".into(), Metric::Text(Some(user)));
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
}

pub fn finish(partial: &Partial, ctx: &Ctx, samples: Vec<Fields>) -> CheckResult {
    if let Some(reason) = Partial::skip_reason(ctx) {
        return CheckResult::skip(INFO.id, reason);
    }
    let checked = partial.users_checked();
    let mixed = partial.users_mixed();
    let (status, summary) = if mixed > 0 {
        (
            Status::Warn,
            format!("{mixed} of {checked} users saw more than one version tuple after the flip"),
        )
    } else {
        (
            Status::Pass,
            format!("each of {checked} users saw one version tuple after the flip"),
        )
    };
    let mut result = CheckResult::new(INFO.id, status, summary)
        .metric("users_checked", Metric::Count(checked))
        .metric("users_mixed", Metric::Count(mixed))
        .metric(
            "requests_without_user",
            Metric::Count(partial.requests_without_user()),
        )
        .cells(format!("{mixed} users mixed"), "", "0 users mixed (warn)");
    result.samples = samples;
    result
}
