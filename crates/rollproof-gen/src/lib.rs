//! A deterministic, seeded generator of incidents: request logs and receipts with planted faults.
//!
//! Small scenarios (the committed fixtures) are built in memory, faults are planted on chosen rows,
//! and the expected figures are computed by a naive oracle over the generated rows (sort for
//! quantiles, plain loops for counts) — independent of the tool's kernels, so tests compare the
//! tool against it. Large benchmark data is streamed batch by batch.
//!
//! The RNG is a self-contained SplitMix64 so that output never changes with a dependency upgrade.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, RecordBatch, StringArray,
    StringDictionaryBuilder, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, TimeUnit};
use serde_json::{json, Value};

pub mod bench;
pub mod harness;
pub mod otlp;
pub mod page;
pub mod seeds;
pub mod time;

use crate::time::{
    format_millis, format_seconds, parse_rfc3339, Micros, MICROS_PER_MINUTE, MICROS_PER_SECOND,
};

/// SplitMix64: tiny, fast, and fixed forever.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub const PIN_NAMES: [&str; 8] = [
    "build_id",
    "git_sha",
    "model_ver",
    "prompt_ver",
    "index_hash",
    "rerank_conf",
    "tok_ver",
    "analyzer_conf",
];
/// The last known good pins.
pub const GOOD: [&str; 8] = [
    "b-1041",
    "9f2c1e0",
    "m-2026-10",
    "p-6",
    "ih-a41f",
    "rr-3",
    "tok-12",
    "an-2",
];
/// The bad rollout's pins.
pub const BAD: [&str; 8] = [
    "b-1042",
    "4d7e9a1",
    "m-2026-10",
    "p-7",
    "ih-b77c",
    "rr-3",
    "tok-12",
    "an-2",
];
/// Pins the incident files name (the contract's example set).
pub const EXPECTED_PINS: usize = 5;
pub const REGIONS: [&str; 3] = ["eu-west", "us-east", "ap-south"];
const EFFECTS: [&str; 3] = ["email.send", "payment.charge", "ticket.create"];

pub(crate) fn namespace(pins: &[String; 8]) -> String {
    format!("ns:{}:{}", pins[4], pins[3])
}

pub(crate) fn pins_of(values: &[&str; 8]) -> [String; 8] {
    values.map(|s| s.to_string())
}

/// One request row.
#[derive(Debug, Clone)]
pub struct Request {
    pub ts: Micros,
    pub request_id: String,
    pub region: String,
    pub arm: Option<String>,
    pub user_id: String,
    pub pins: [String; 8],
    pub cache_ns: String,
    pub cache_hit: bool,
    pub status: i32,
    pub latency_ms: f64,
    pub delta_s: f64,
    pub coverage: f64,
    pub lambda_state: String,
    /// The rest of the page (see `page`): written only when some row has a value.
    pub client_flags: Option<String>,
    pub server_flags: Option<String>,
    pub queue_wait_ms: Option<f64>,
    pub breaker_state: Option<String>,
}

/// One receipt row.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub ts: Micros,
    pub receipt_id: String,
    pub request_id: String,
    pub idempotency_key: String,
    pub effect: String,
    pub writer_id: String,
    pub decision: Option<String>,
}

/// Faults to plant, each on distinct rows, counted exactly.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Post-flip requests in `eu-west` still carrying the bad `index_hash`.
    pub wrong_index_hash: usize,
    /// Post-flip requests with an empty `prompt_ver`.
    pub missing_prompt_ver: usize,
    /// Post-flip cache hits served from the bad namespace.
    pub stale_cache_hits: usize,
    /// Post-flip cache misses that looked up the bad namespace (must not count).
    pub stale_ns_misses: usize,
    /// Minutes after the flip with an error rate of 10%.
    pub error_minutes_after_flip: usize,
    /// Post window latency multiplier (1.0: same as baseline).
    pub post_latency_factor: f64,
    /// Added to post-flip ΔS.
    pub post_delta_s_shift: f64,
    /// Subtracted from post-flip coverage.
    pub post_coverage_drop: f64,
    /// Share of post-flip requests whose λ state is divergent (baseline: 5%).
    pub post_lambda_divergent: f64,
    /// Keys executed twice / three times (same writer, retries).
    pub doubled_keys: usize,
    pub tripled_keys: usize,
    /// Receipts with decision = duplicate (dedupe hits), never executions.
    pub dedupe_hits: usize,
    /// Executions inside the freeze window.
    pub freeze_writes: usize,
    /// Keys executed by writer-a and writer-b within ±60 s of the flip.
    pub two_writer_keys: usize,
    /// Receipts naming request ids that are not in the request logs.
    pub orphan_receipts: usize,
    /// Executions attached to requests that returned an error.
    pub effects_on_failed_requests: usize,
    /// Canary: cache hits of the canary arm served from the stable namespace.
    pub foreign_cache_hits: usize,
    /// Canary: users routed to the other arm once.
    pub users_on_both_arms: usize,
}

/// A scenario: the incident's shape and its faults.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub title: &'static str,
    pub seed: u64,
    pub canary: bool,
    pub start: Micros,
    pub end: Micros,
    pub bad_rollout_at: Micros,
    pub flip_at: Micros,
    pub baseline: (Micros, Micros),
    pub post: (Micros, Micros),
    pub freeze: Option<(Micros, Micros)>,
    pub requests_per_minute: u64,
    pub users: u64,
    pub receipt_share: f64,
    pub root_cause_url: Option<&'static str>,
    pub faults: Faults,
    /// Expected check statuses, by design of the scenario.
    pub statuses: &'static [(&'static str, &'static str)],
    pub verdict: &'static str,
    /// Region flips, flags, backpressure, gold set, captured state.
    pub page: page::Page,
}

fn t(s: &str) -> Micros {
    parse_rfc3339(s).expect("valid generator time")
}

impl Scenario {
    /// A rollback on 2026-11-27: baseline 08:30–09:00, bad rollout 09:30, flip 10:15, freeze
    /// 10:10–10:40, post window 10:25–11:00, data until 11:00, 60 requests a minute.
    pub fn rollback(name: &'static str, title: &'static str, seed: u64) -> Scenario {
        Scenario {
            name,
            title,
            seed,
            canary: false,
            start: t("2026-11-27T08:30:00Z"),
            end: t("2026-11-27T11:00:00Z"),
            bad_rollout_at: t("2026-11-27T09:30:00Z"),
            flip_at: t("2026-11-27T10:15:00Z"),
            baseline: (t("2026-11-27T08:30:00Z"), t("2026-11-27T09:00:00Z")),
            post: (t("2026-11-27T10:25:00Z"), t("2026-11-27T11:00:00Z")),
            freeze: Some((t("2026-11-27T10:10:00Z"), t("2026-11-27T10:40:00Z"))),
            requests_per_minute: 60,
            users: 400,
            receipt_share: 0.1,
            root_cause_url: Some("https://tracker.example/INC-2041"),
            faults: Faults {
                error_minutes_after_flip: 2,
                post_latency_factor: 1.0,
                ..Faults::default()
            },
            statuses: &[],
            verdict: "pass",
            page: page::Page::default(),
        }
    }

    /// A canary: both arms side by side 10:00–10:30.
    pub fn canary(name: &'static str, title: &'static str, seed: u64) -> Scenario {
        Scenario {
            canary: true,
            start: t("2026-11-27T10:00:00Z"),
            end: t("2026-11-27T10:30:00Z"),
            bad_rollout_at: t("2026-11-27T10:00:00Z"),
            flip_at: t("2026-11-27T10:00:00Z"),
            baseline: (t("2026-11-27T10:00:00Z"), t("2026-11-27T10:30:00Z")),
            post: (t("2026-11-27T10:00:00Z"), t("2026-11-27T10:30:00Z")),
            freeze: None,
            requests_per_minute: 40,
            users: 300,
            faults: Faults {
                post_latency_factor: 1.0,
                ..Faults::default()
            },
            ..Scenario::rollback(name, title, seed)
        }
    }

    fn arm_pins(&self, canary_arm: bool) -> [String; 8] {
        let mut pins = pins_of(&GOOD);
        if canary_arm {
            pins[3] = "p-7".to_string();
        }
        pins
    }
}

/// Deterministic latency, ΔS and coverage values: a fixed spread, shuffled by the RNG.
fn base_values(rng: &mut Rng) -> (f64, f64, f64) {
    let latency =
        80.0 + rng.below(2000) as f64 * 0.1 + if rng.below(50) == 0 { 150.0 } else { 0.0 };
    let delta_s = 0.20 + rng.below(2000) as f64 * 0.0001;
    let coverage = 0.70 + rng.below(2000) as f64 * 0.0001;
    (latency, delta_s, coverage)
}

/// Generates the rows of a small scenario and plants its faults.
pub fn generate(s: &Scenario) -> (Vec<Request>, Vec<Receipt>) {
    let mut rng = Rng::new(s.seed);
    let mut requests = Vec::new();
    let minutes = (s.end - s.start) / MICROS_PER_MINUTE;
    let step = MICROS_PER_MINUTE / s.requests_per_minute as i64;
    for m in 0..minutes {
        for j in 0..s.requests_per_minute as i64 {
            let ts = s.start
                + m * MICROS_PER_MINUTE
                + j * step
                + rng.below(step as u64) as i64 / 1000 * 1000;
            let i = requests.len();
            let user = rng.below(s.users);
            let region = REGIONS[(user % 3) as usize].to_string();
            let (mut latency, mut delta_s, mut coverage) = base_values(&mut rng);
            let (arm, pins) = if s.canary {
                let canary_arm = user % 4 == 0;
                (
                    Some(if canary_arm { "canary" } else { "stable" }.to_string()),
                    s.arm_pins(canary_arm),
                )
            } else if ts >= s.bad_rollout_at && ts < s.flip_at {
                (None, pins_of(&BAD))
            } else {
                (None, pins_of(&GOOD))
            };
            let bad_window = !s.canary && ts >= s.bad_rollout_at && ts < s.flip_at;
            let after_flip = !s.canary && ts >= s.flip_at;
            let subject = after_flip || arm.as_deref() == Some("canary");
            if subject {
                latency *= s.faults.post_latency_factor;
                delta_s = (delta_s + s.faults.post_delta_s_shift).min(1.0);
                coverage = (coverage - s.faults.post_coverage_drop).max(0.0);
            }
            if bad_window {
                latency *= 1.6;
                delta_s = (delta_s + 0.2).min(1.0);
            }
            let divergent_share = if subject && s.faults.post_lambda_divergent > 0.0 {
                s.faults.post_lambda_divergent
            } else {
                0.05
            };
            let lambda = if rng.unit() < divergent_share {
                ["divergent", "recursive", "chaotic"][rng.below(3) as usize]
            } else {
                "convergent"
            };
            let mut status = 200;
            if bad_window && j % 5 == 0 {
                status = 500;
            }
            let minute_after_flip = (ts - s.flip_at) / MICROS_PER_MINUTE;
            if after_flip
                && (minute_after_flip as usize) < s.faults.error_minutes_after_flip
                && j % 10 == 0
            {
                status = if j % 20 == 0 { 429 } else { 503 };
            }
            let cache_hit = rng.below(10) < 3;
            requests.push(Request {
                ts,
                request_id: format!("r-{i:06}"),
                region,
                arm,
                user_id: format!("u-{user:05}"),
                cache_ns: namespace(&pins),
                pins,
                cache_hit,
                status,
                latency_ms: (latency * 1000.0).round() / 1000.0,
                delta_s: (delta_s * 1e6).round() / 1e6,
                coverage: (coverage * 1e6).round() / 1e6,
                lambda_state: lambda.to_string(),
                client_flags: None,
                server_flags: None,
                queue_wait_ms: None,
                breaker_state: None,
            });
        }
    }
    plant_request_faults(s, &mut rng, &mut requests);
    page::plant(s, &mut requests);
    let receipts = generate_receipts(s, &mut rng, &requests);
    (requests, receipts)
}

/// Picks `n` distinct rows among `candidates` not used yet.
pub(crate) fn pick(
    rng: &mut Rng,
    candidates: &[usize],
    used: &mut BTreeSet<usize>,
    n: usize,
) -> Vec<usize> {
    let mut out = Vec::new();
    let mut guard = 0;
    while out.len() < n && guard < candidates.len() * 20 + 100 {
        guard += 1;
        let c = candidates[rng.below(candidates.len() as u64) as usize];
        if used.insert(c) {
            out.push(c);
        }
    }
    assert_eq!(out.len(), n, "not enough rows to plant {n} faults");
    out
}

fn plant_request_faults(s: &Scenario, rng: &mut Rng, rows: &mut [Request]) {
    let f = &s.faults;
    let mut used = BTreeSet::new();
    if s.canary {
        let canary_rows: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].arm.as_deref() == Some("canary"))
            .collect();
        for i in pick(rng, &canary_rows, &mut used, f.foreign_cache_hits) {
            rows[i].cache_hit = true;
            rows[i].cache_ns = namespace(&s.arm_pins(false));
        }
        // Users routed once to the other arm: one request each, with that arm's pins.
        let mut by_user: BTreeMap<String, usize> = BTreeMap::new();
        for (i, r) in rows.iter().enumerate() {
            by_user.entry(r.user_id.clone()).or_insert(i);
        }
        let firsts: Vec<usize> = by_user.values().copied().collect();
        for i in pick(rng, &firsts, &mut used, f.users_on_both_arms) {
            let to_canary = rows[i].arm.as_deref() == Some("stable");
            rows[i].arm = Some(if to_canary { "canary" } else { "stable" }.to_string());
            rows[i].pins = s.arm_pins(to_canary);
            rows[i].cache_ns = namespace(&rows[i].pins);
            rows[i].cache_hit = false;
        }
        return;
    }
    let post_flip: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].ts >= s.flip_at)
        .collect();
    let eu: Vec<usize> = post_flip
        .iter()
        .copied()
        .filter(|&i| rows[i].region == "eu-west")
        .collect();
    for i in pick(rng, &eu, &mut used, f.wrong_index_hash) {
        rows[i].pins[4] = BAD[4].to_string();
        rows[i].cache_hit = false;
    }
    for i in pick(rng, &post_flip, &mut used, f.missing_prompt_ver) {
        rows[i].pins[3] = String::new();
        rows[i].cache_hit = false;
    }
    for i in pick(rng, &post_flip, &mut used, f.stale_cache_hits) {
        rows[i].cache_hit = true;
        rows[i].cache_ns = namespace(&pins_of(&BAD));
    }
    for i in pick(rng, &post_flip, &mut used, f.stale_ns_misses) {
        rows[i].cache_hit = false;
        rows[i].cache_ns = namespace(&pins_of(&BAD));
    }
}

fn generate_receipts(s: &Scenario, rng: &mut Rng, requests: &[Request]) -> Vec<Receipt> {
    let f = &s.faults;
    let in_freeze = |ts: Micros| s.freeze.is_some_and(|(a, b)| ts >= a && ts < b);
    let near_flip = |ts: Micros| !s.canary && (ts - s.flip_at).abs() <= 60 * MICROS_PER_SECOND;
    let writer = |ts: Micros| {
        if s.canary || ts < s.flip_at {
            "writer-a"
        } else {
            "writer-b"
        }
    };
    let mut receipts: Vec<Receipt> = Vec::new();
    let mut next_id = 0usize;
    let mut push = |receipts: &mut Vec<Receipt>,
                    ts: Micros,
                    req: &Request,
                    key: &str,
                    effect: &str,
                    w: &str,
                    d: Option<&str>| {
        receipts.push(Receipt {
            ts,
            receipt_id: format!("rc-{next_id:06}"),
            request_id: req.request_id.clone(),
            idempotency_key: key.to_string(),
            effect: effect.to_string(),
            writer_id: w.to_string(),
            decision: d.map(str::to_string),
        });
        next_id += 1;
    };
    // Normal executions: a share of requests outside the freeze and away from the flip.
    let mut executed: Vec<usize> = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        if in_freeze(r.ts)
            || near_flip(r.ts)
            || rng.unit() >= s.receipt_share
            || r.status >= 500
            || r.status == 429
        {
            continue;
        }
        let effect = EFFECTS[rng.below(3) as usize];
        let decision = if rng.below(2) == 0 { Some("new") } else { None };
        push(
            &mut receipts,
            r.ts + 5_000,
            r,
            &format!("k-{}", r.request_id),
            effect,
            writer(r.ts),
            decision,
        );
        executed.push(i);
    }
    let executed_set: BTreeSet<usize> = executed.iter().copied().collect();
    let mut used = BTreeSet::new();
    // Retries executed again by the same writer.
    let outside: Vec<usize> = executed
        .iter()
        .copied()
        .filter(|&i| !in_freeze(requests[i].ts + 2 * MICROS_PER_SECOND))
        .collect();
    for (n, extra) in [(f.doubled_keys, 1), (f.tripled_keys, 2)] {
        for i in pick(rng, &outside, &mut used, n) {
            let r = &requests[i];
            let original = receipts
                .iter()
                .find(|x| x.request_id == r.request_id)
                .expect("executed")
                .clone();
            for e in 0..extra {
                let ts = original.ts + (e + 1) * 700_000;
                push(
                    &mut receipts,
                    ts,
                    r,
                    &original.idempotency_key,
                    &original.effect,
                    &original.writer_id,
                    Some("new"),
                );
            }
        }
    }
    // Dedupe decisions: the fence caught a retry.
    for i in pick(rng, &executed, &mut used, f.dedupe_hits) {
        let r = &requests[i];
        let original = receipts
            .iter()
            .find(|x| x.request_id == r.request_id)
            .expect("executed")
            .clone();
        let d = if i % 2 == 0 { "duplicate" } else { "CONFLICT" };
        push(
            &mut receipts,
            original.ts + 1_000_000,
            r,
            &original.idempotency_key,
            &original.effect,
            &original.writer_id,
            Some(d),
        );
    }
    // Writes during the freeze, each a new key.
    if let Some((a, b)) = s.freeze {
        let frozen: Vec<usize> = (0..requests.len())
            .filter(|&i| {
                requests[i].ts >= a
                    && requests[i].ts < b
                    && !near_flip(requests[i].ts)
                    && !executed_set.contains(&i)
            })
            .collect();
        for i in pick(rng, &frozen, &mut used, f.freeze_writes) {
            let r = &requests[i];
            push(
                &mut receipts,
                r.ts,
                r,
                &format!("k-{}", r.request_id),
                "email.send",
                "writer-a",
                None,
            );
        }
    }
    // Two writers at the flip: the old and the new writer both execute the key.
    let at_flip: Vec<usize> = (0..requests.len())
        .filter(|&i| (requests[i].ts - s.flip_at).abs() <= 30 * MICROS_PER_SECOND)
        .collect();
    for i in pick(rng, &at_flip, &mut used, f.two_writer_keys) {
        let r = &requests[i];
        let key = format!("k-{}", r.request_id);
        push(
            &mut receipts,
            r.ts,
            r,
            &key,
            "payment.charge",
            "writer-a",
            Some("new"),
        );
        push(
            &mut receipts,
            r.ts + 20 * MICROS_PER_SECOND,
            r,
            &key,
            "payment.charge",
            "writer-b",
            Some("new"),
        );
    }
    // Orphans: receipts whose request is not in the logs (e.g. a region's logs were lost).
    let quiet_from = s.freeze.map_or(s.post.0, |(_, end)| end.max(s.post.0));
    let after: Vec<usize> = (0..requests.len())
        .filter(|&i| requests[i].ts >= quiet_from)
        .collect();
    for (n, i) in pick(rng, &after, &mut used, f.orphan_receipts)
        .into_iter()
        .enumerate()
    {
        let mut ghost = requests[i].clone();
        ghost.request_id = format!("r-lost-{n:03}");
        push(
            &mut receipts,
            ghost.ts + 3_000,
            &ghost,
            &format!("k-{}", ghost.request_id),
            "email.send",
            writer(ghost.ts),
            None,
        );
    }
    // Executions for requests the user saw fail (a retry will follow).
    let failed: Vec<usize> = (0..requests.len())
        .filter(|&i| {
            (requests[i].status >= 500 || requests[i].status == 429)
                && !in_freeze(requests[i].ts)
                && !near_flip(requests[i].ts)
        })
        .collect();
    for i in pick(rng, &failed, &mut used, f.effects_on_failed_requests) {
        let r = &requests[i];
        push(
            &mut receipts,
            r.ts + 4_000,
            r,
            &format!("k-{}", r.request_id),
            "ticket.create",
            writer(r.ts),
            Some("new"),
        );
    }
    receipts.sort_by(|a, b| (a.ts, &a.receipt_id).cmp(&(b.ts, &b.receipt_id)));
    receipts
}

/// The naive oracle: every figure the tests check, computed over the generated rows by plain loops.
pub fn expected(s: &Scenario, requests: &[Request], receipts: &[Receipt]) -> Value {
    let mut checks = serde_json::Map::new();
    let max = 0.005;
    let end_of_data = requests.iter().map(|r| r.ts).max().unwrap_or(0);
    let subject = |r: &Request| {
        if s.canary {
            r.arm.as_deref() == Some("canary")
        } else {
            r.ts >= s.post.0 && r.ts < s.post.1
        }
    };
    let baseline = |r: &Request| {
        if s.canary {
            r.arm.as_deref() == Some("stable")
        } else {
            r.ts >= s.baseline.0 && r.ts < s.baseline.1
        }
    };
    // After the flip of the request's region (`[flip_at_by_region]`, else flip_at).
    let audited = |r: &Request| {
        if s.canary {
            r.arm.is_some()
        } else {
            r.ts >= s.page.flip_of(s, &r.region)
        }
    };
    let expected_pins = |r: &Request| -> [String; 8] {
        if s.canary {
            s.arm_pins(r.arm.as_deref() == Some("canary"))
        } else {
            pins_of(&GOOD)
        }
    };

    // pins
    let (mut checked, mut violations, mut missing) = (0u64, 0u64, 0u64);
    let mut by_pin: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_region: BTreeMap<String, u64> = BTreeMap::new();
    for r in requests.iter().filter(|r| audited(r)) {
        checked += 1;
        let want = expected_pins(r);
        let mut bad = false;
        let mut miss = false;
        for p in 0..EXPECTED_PINS {
            if r.pins[p] != want[p] {
                bad = true;
                *by_pin.entry(PIN_NAMES[p].to_string()).or_insert(0) += 1;
                miss |= r.pins[p].is_empty();
            }
        }
        if bad {
            violations += 1;
            missing += miss as u64;
            *by_region.entry(r.region.clone()).or_insert(0) += 1;
        }
    }
    checks.insert("pins".into(), json!({"requests_checked": checked, "violations": violations, "missing": missing, "by_pin": by_pin, "by_region": by_region}));

    // cache
    let (mut hits, mut wrong) = (0u64, 0u64);
    let mut last: Option<Micros> = None;
    let mut cache_by_region: BTreeMap<String, u64> = BTreeMap::new();
    for r in requests.iter().filter(|r| audited(r) && r.cache_hit) {
        hits += 1;
        if r.cache_ns != namespace(&expected_pins(r)) {
            wrong += 1;
            last = Some(last.map_or(r.ts, |l| l.max(r.ts)));
            *cache_by_region.entry(r.region.clone()).or_insert(0) += 1;
        }
    }
    if s.canary {
        checks.insert(
            "cache_isolation".into(),
            json!({"hits_checked": hits, "foreign_hits": wrong}),
        );
    } else {
        checks.insert(
            "cache_rotation".into(),
            json!({"hits_checked": hits, "stale_hits": wrong, "by_region": cache_by_region, "last_stale_at": last.map(format_millis)}),
        );
    }

    // users
    let mut seen: HashMap<&str, BTreeSet<String>> = HashMap::new();
    for r in requests.iter().filter(|r| audited(r)) {
        let value = if s.canary {
            r.arm.clone().unwrap_or_default()
        } else {
            r.pins[..EXPECTED_PINS].join("|")
        };
        seen.entry(&r.user_id).or_default().insert(value);
    }
    let mixed = seen.values().filter(|v| v.len() > 1).count() as u64;
    if s.canary {
        checks.insert(
            "sticky_routing".into(),
            json!({"users_checked": seen.len(), "users_both_arms": mixed}),
        );
    } else {
        checks.insert(
            "mixed_versions".into(),
            json!({"users_checked": seen.len(), "users_mixed": mixed}),
        );
    }

    // errors
    let mut green_at: Option<Micros> = None;
    let is_error = |r: &Request| r.status >= 500 || r.status == 429;
    let share = |f: &dyn Fn(&Request) -> bool| {
        let rows: Vec<&Request> = requests.iter().filter(|r| f(r)).collect();
        (!rows.is_empty())
            .then(|| rows.iter().filter(|r| is_error(r)).count() as f64 / rows.len() as f64)
    };
    if s.canary {
        checks.insert(
            "error_rate".into(),
            json!({"baseline_error_rate": share(&baseline), "canary_error_rate": share(&subject)}),
        );
    } else {
        let mut minutes: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
        for r in requests.iter().filter(|r| r.ts >= s.flip_at) {
            let e = minutes
                .entry((r.ts - s.flip_at) / MICROS_PER_MINUTE)
                .or_insert((0, 0));
            e.0 += is_error(r) as u64;
            e.1 += 1;
        }
        let last_minute = minutes.keys().next_back().copied().unwrap_or(0);
        let recovery = (0..=last_minute).find(|&k| {
            minutes
                .range(k..)
                .all(|(_, (e, n))| (*e as f64 / *n as f64) < max)
        });
        checks.insert(
            "error_recovery".into(),
            json!({"recovery_minutes": recovery, "baseline_error_rate": share(&baseline), "post_error_rate": share(&subject)}),
        );
        green_at = recovery.map(|k| s.flip_at + k * MICROS_PER_MINUTE);
    }

    // latency and quality
    let nearest_rank = |mut v: Vec<f64>, q: f64| -> Option<f64> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let rank = ((q * v.len() as f64) - 1e-9).ceil().max(1.0) as usize;
        Some(v[rank - 1])
    };
    let values = |f: &dyn Fn(&Request) -> bool, g: &dyn Fn(&Request) -> f64| {
        requests
            .iter()
            .filter(|r| f(r))
            .map(g)
            .collect::<Vec<f64>>()
    };
    let lat_b = values(&baseline, &|r| r.latency_ms);
    let lat_s = values(&subject, &|r| r.latency_ms);
    let sub = if s.canary { "canary" } else { "post" };
    let mut latency = serde_json::Map::new();
    for (q, name) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")] {
        latency.insert(
            format!("baseline_{name}_ms"),
            json!(nearest_rank(lat_b.clone(), q)),
        );
        latency.insert(
            format!("{sub}_{name}_ms"),
            json!(nearest_rank(lat_s.clone(), q)),
        );
    }
    let ratio = |q| match (
        nearest_rank(lat_s.clone(), q),
        nearest_rank(lat_b.clone(), q),
    ) {
        (Some(a), Some(b)) => Some(a / b),
        _ => None,
    };
    latency.insert("p95_ratio".into(), json!(ratio(0.95)));
    latency.insert("p99_ratio".into(), json!(ratio(0.99)));
    checks.insert("latency".into(), Value::Object(latency));
    let ds_b = nearest_rank(values(&baseline, &|r| r.delta_s), 0.95);
    let ds_s = nearest_rank(values(&subject, &|r| r.delta_s), 0.95);
    let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let flips = |f: &dyn Fn(&Request) -> bool| {
        let v = values(f, &|r| (r.lambda_state != "convergent") as u8 as f64);
        mean(v)
    };
    let mut quality = serde_json::Map::new();
    quality.insert("baseline_delta_s_p95".into(), json!(ds_b));
    quality.insert(format!("{sub}_delta_s_p95"), json!(ds_s));
    quality.insert(
        "delta_s_p95_drift".into(),
        json!(ds_s.zip(ds_b).map(|(a, b)| a - b)),
    );
    quality.insert(
        "baseline_coverage_mean".into(),
        json!(mean(values(&baseline, &|r| r.coverage))),
    );
    quality.insert(
        format!("{sub}_coverage_mean"),
        json!(mean(values(&subject, &|r| r.coverage))),
    );
    quality.insert("baseline_lambda_flip_rate".into(), json!(flips(&baseline)));
    quality.insert(format!("{sub}_lambda_flip_rate"), json!(flips(&subject)));
    checks.insert("quality".into(), Value::Object(quality));

    // receipts
    let in_scope = |r: &Receipt| !s.canary || (r.ts >= s.start && r.ts < s.end);
    let executions: Vec<&Receipt> = receipts
        .iter()
        .filter(|r| {
            in_scope(r)
                && r.decision
                    .as_deref()
                    .is_none_or(|d| d.eq_ignore_ascii_case("new"))
        })
        .collect();
    let dedupe = receipts.iter().filter(|r| in_scope(r)).count() - executions.len();
    let mut per_key: BTreeMap<&str, Vec<&Receipt>> = BTreeMap::new();
    for r in &executions {
        per_key.entry(&r.idempotency_key).or_default().push(r);
    }
    let duplicate_keys = per_key.values().filter(|v| v.len() > 1).count();
    let extra: usize = per_key.values().map(|v| v.len() - 1).sum();
    let multi_writer = per_key
        .values()
        .filter(|v| {
            v.iter()
                .map(|r| &r.writer_id)
                .collect::<BTreeSet<_>>()
                .len()
                > 1
        })
        .count();
    checks.insert(
        "duplicate_effects".into(),
        json!({"executions": executions.len(), "dedupe_hits": dedupe, "duplicate_keys": duplicate_keys, "extra_executions": extra, "multi_writer_keys": multi_writer}),
    );
    if !s.canary {
        let during = executions
            .iter()
            .filter(|r| s.freeze.is_some_and(|(a, b)| r.ts >= a && r.ts < b))
            .count();
        let lo = s.flip_at - 60 * MICROS_PER_SECOND;
        let hi = s.flip_at + 60 * MICROS_PER_SECOND;
        let mut writers_at_flip: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for r in executions.iter().filter(|r| r.ts >= lo && r.ts <= hi) {
            writers_at_flip
                .entry(&r.idempotency_key)
                .or_default()
                .insert(&r.writer_id);
        }
        let two = writers_at_flip.values().filter(|w| w.len() > 1).count();
        let mut freeze = json!({"writes_during_freeze": during, "two_writer_effects": two});
        if let Some((_, end)) = s.freeze {
            // "Hold ten to fifteen minutes. Confirm targets are met. Then unfreeze writers."
            freeze["green_at"] = json!(green_at.map(format_millis));
            freeze["unfreeze_at"] = json!(format_millis(end));
            freeze["held_minutes_before_unfreeze"] =
                json!(green_at.map(|g| (end - g) as f64 / MICROS_PER_MINUTE as f64));
        }
        checks.insert("writer_freeze".into(), freeze);
    }
    let _ = end_of_data;
    let ids: HashMap<&str, &Request> = requests
        .iter()
        .map(|r| (r.request_id.as_str(), r))
        .collect();
    let scoped: Vec<&Receipt> = receipts.iter().filter(|r| in_scope(r)).collect();
    let orphans = scoped
        .iter()
        .filter(|r| !ids.contains_key(r.request_id.as_str()))
        .count();
    let on_failed = executions
        .iter()
        .filter(|r| ids.get(r.request_id.as_str()).is_some_and(|q| is_error(q)))
        .count();
    checks.insert(
        "reconciliation".into(),
        json!({"orphan_receipts": orphans, "executions_on_failed_requests": on_failed}),
    );

    page::expected(s, requests, &mut checks);
    let impact = (!s.canary).then(|| impact_oracle(s, requests));
    let statuses: BTreeMap<&str, &str> = s.statuses.iter().copied().collect();
    let exit_code = match s.verdict {
        "fail" => 1,
        "inconclusive" => 3,
        _ => 0,
    };
    json!({
        "scenario": s.name,
        "verdict": s.verdict,
        "exit_code": exit_code,
        "statuses": statuses,
        "figures": checks,
        "impact": impact,
    })
}

/// The report's `impact` section, by plain loops over the rows (the definitions of
/// docs/reference/figures.md, written independently of rollproof's kernel).
fn impact_oracle(s: &Scenario, requests: &[Request]) -> Value {
    let good = pins_of(&GOOD);
    let off_pin =
        |r: &Request| (0..EXPECTED_PINS).any(|p| !r.pins[p].is_empty() && r.pins[p] != good[p]);
    let is_error = |r: &Request| r.status >= 500 || r.status == 429;
    let affected = |r: &Request| off_pin(r) || is_error(r);
    let minute = |t: Micros| (t - s.flip_at).div_euclid(MICROS_PER_MINUTE);
    let in_minute = |k: i64| requests.iter().filter(move |r| minute(r.ts) == k);
    let degraded = |k: i64| {
        let rows: Vec<&Request> = in_minute(k).collect();
        let n = rows.len() as f64;
        !rows.is_empty()
            && (rows.iter().filter(|r| is_error(r)).count() as f64 / n > 0.005
                || rows.iter().filter(|r| off_pin(r)).count() as f64 / n >= 0.05)
    };
    let candidates: Vec<i64> = (minute(s.baseline.1)..0)
        .filter(|&k| s.flip_at + k * MICROS_PER_MINUTE >= s.baseline.1)
        .filter(|&k| in_minute(k).next().is_some())
        .collect();
    let start = candidates.iter().enumerate().find_map(|(i, &k)| {
        (degraded(k) && candidates.get(i + 1).is_none_or(|&n| degraded(n))).then_some(k)
    });
    let window = |from: Micros, to: Micros| {
        let rows: Vec<&Request> = requests
            .iter()
            .filter(|r| r.ts >= from && r.ts < to)
            .collect();
        let users: BTreeSet<&str> = rows.iter().map(|r| r.user_id.as_str()).collect();
        let hit: BTreeSet<&str> = rows
            .iter()
            .filter(|r| affected(r))
            .map(|r| r.user_id.as_str())
            .collect();
        json!({
            "requests": rows.len(),
            "errors": rows.iter().filter(|r| is_error(r)).count(),
            "off_pin_requests": rows.iter().filter(|r| off_pin(r)).count(),
            "affected_requests": rows.iter().filter(|r| affected(r)).count(),
            "users": users.len(),
            "affected_users": hit.len(),
        })
    };
    let mut windows = serde_json::Map::new();
    windows.insert("baseline".into(), window(s.baseline.0, s.baseline.1));
    if let Some(k) = start {
        windows.insert(
            "incident".into(),
            window(s.flip_at + k * MICROS_PER_MINUTE, s.flip_at),
        );
    }
    if s.post.0 > s.flip_at {
        windows.insert("settling".into(), window(s.flip_at, s.post.0));
    }
    windows.insert("post".into(), window(s.post.0, s.post.1));
    let peak = (start.unwrap_or(0)..=minute(s.end))
        .filter_map(|k| {
            let rows: Vec<&Request> = in_minute(k).collect();
            (!rows.is_empty())
                .then(|| rows.iter().filter(|r| is_error(r)).count() as f64 / rows.len() as f64)
        })
        .fold(None, |m: Option<f64>, e| Some(m.map_or(e, |m| m.max(e))));
    json!({
        "incident_start": start.map(|k| format_seconds(s.flip_at + k * MICROS_PER_MINUTE)),
        "peak_error_rate": peak,
        "windows": windows,
    })
}

/// The incident file of a scenario.
pub fn incident_toml(
    s: &Scenario,
    requests_path: &str,
    receipts_path: Option<&str>,
    mapping: Option<&str>,
) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# Generated by `rollproof-gen fixtures` (scenario `{}`, seed {}).\n",
        s.name, s.seed
    ));
    if s.canary {
        out.push_str("mode = \"canary\"\n");
    }
    out.push_str(&format!(
        "id = \"{}\"\ntitle = \"{}\"\n",
        if s.canary {
            "canary-prompt-pack-v7"
        } else {
            "INC-2041"
        },
        s.title
    ));
    if !s.canary {
        out.push_str(&format!("flip_at = \"{}\"\n", format_seconds(s.flip_at)));
    }
    if let Some(url) = s.root_cause_url {
        out.push_str(&format!("root_cause_url = \"{url}\"\n"));
    }
    out.push_str(&format!("\n[inputs]\nrequests = \"{requests_path}\"\n"));
    if let Some(r) = receipts_path {
        out.push_str(&format!("receipts = \"{r}\"\n"));
    }
    if let Some(m) = mapping {
        out.push_str(&format!("mapping = \"{m}\"\n"));
    }
    if s.page.gold.is_some() {
        out.push_str(&format!(
            "gold = \"{}\"\ngold_baseline = \"{}\"\n",
            page::GOLD_RUN,
            page::GOLD_BASELINE
        ));
    }
    if s.page.captured.is_some() {
        out.push_str(&format!("captured_state = \"{}\"\n", page::CAPTURED));
    }
    let w = |(a, b): (Micros, Micros)| {
        format!("[\"{}\", \"{}\"]", format_seconds(a), format_seconds(b))
    };
    if s.canary {
        out.push_str(&format!(
            "\n[canary]\nbaseline_arm = \"stable\"\ncanary_arm = \"canary\"\nwindow = {}\n",
            w((s.start, s.end))
        ));
        for (arm, canary) in [("stable", false), ("canary", true)] {
            out.push_str(&format!("\n[expected_pins.{arm}]\n"));
            let pins = s.arm_pins(canary);
            for p in [3, 4] {
                out.push_str(&format!("{} = \"{}\"\n", PIN_NAMES[p], pins[p]));
            }
        }
    } else {
        out.push_str(&format!(
            "\n[windows]\nbaseline = {}\npost = {}\n",
            w(s.baseline),
            w(s.post)
        ));
        if let Some(f) = s.freeze {
            out.push_str(&format!("freeze = {}\n", w(f)));
        }
        out.push_str("\n[expected_pins]\n");
        for p in 0..EXPECTED_PINS {
            out.push_str(&format!("{} = \"{}\"\n", PIN_NAMES[p], GOOD[p]));
        }
    }
    out.push_str("\n[cache]\nnamespace = \"ns:{index_hash}:{prompt_ver}\"\n");
    out.push_str(&page::incident_sections(s));
    out
}

/// Column names of the requests, canonical or OpenTelemetry-style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    Canonical,
    OpenTelemetry,
}

pub(crate) fn dict(values: impl Iterator<Item = Option<String>>) -> ArrayRef {
    let mut b = StringDictionaryBuilder::<Int32Type>::new();
    for v in values {
        match v {
            Some(v) => b.append_value(v),
            None => b.append_null(),
        }
    }
    Arc::new(b.finish())
}

pub(crate) fn strings(values: impl Iterator<Item = Option<String>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

/// The timestamp column: `ts` in milliseconds, or OpenTelemetry's `timestamp` as RFC 3339 text.
pub(crate) fn ts_column(
    naming: Naming,
    ts: impl Iterator<Item = Micros>,
) -> (&'static str, ArrayRef) {
    match naming {
        Naming::OpenTelemetry => ("timestamp", strings(ts.map(|t| Some(format_millis(t))))),
        Naming::Canonical => (
            "ts",
            Arc::new(
                TimestampMillisecondArray::from_iter_values(ts.map(|t| t / 1000))
                    .with_timezone("+00:00"),
            ),
        ),
    }
}

/// The column name of pin `p` (OpenTelemetry names two of them by semantic convention).
pub(crate) fn pin_column(naming: Naming, p: usize) -> &'static str {
    match (naming, PIN_NAMES[p]) {
        (Naming::OpenTelemetry, "model_ver") => "gen_ai.response.model",
        (Naming::OpenTelemetry, "git_sha") => "vcs.ref.head.revision",
        (_, n) => n,
    }
}

/// Requests as one Arrow batch. Pins, region and cache namespace are dictionary-encoded, as a
/// log exporter writes them; an empty pin is written as null.
pub fn requests_batch(rows: &[Request], naming: Naming) -> RecordBatch {
    let otel = naming == Naming::OpenTelemetry;
    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    let mut add = |name: &str, arr: ArrayRef| {
        fields.push(Field::new(name, arr.data_type().clone(), true));
        columns.push(arr);
    };
    let (name, ts) = ts_column(naming, rows.iter().map(|r| r.ts));
    add(name, ts);
    add(
        "request_id",
        strings(rows.iter().map(|r| Some(r.request_id.clone()))),
    );
    add(
        if otel { "cloud.region" } else { "region" },
        dict(rows.iter().map(|r| Some(r.region.clone()))),
    );
    if rows.iter().any(|r| r.arm.is_some()) {
        add("arm", dict(rows.iter().map(|r| r.arm.clone())));
    }
    add(
        "user_id",
        strings(rows.iter().map(|r| Some(r.user_id.clone()))),
    );
    for p in 0..PIN_NAMES.len() {
        add(
            pin_column(naming, p),
            dict(
                rows.iter()
                    .map(|r| Some(r.pins[p].clone()).filter(|v| !v.is_empty())),
            ),
        );
    }
    add(
        "cache_ns",
        dict(rows.iter().map(|r| Some(r.cache_ns.clone()))),
    );
    add(
        "cache_hit",
        Arc::new(
            rows.iter()
                .map(|r| Some(r.cache_hit))
                .collect::<BooleanArray>(),
        ),
    );
    add(
        if otel {
            "http.response.status_code"
        } else {
            "status"
        },
        Arc::new(rows.iter().map(|r| Some(r.status)).collect::<Int32Array>()),
    );
    if otel {
        add(
            "duration",
            Arc::new(
                rows.iter()
                    .map(|r| Some(r.latency_ms / 1000.0))
                    .collect::<Float64Array>(),
            ),
        );
    } else {
        add(
            "latency_ms",
            Arc::new(
                rows.iter()
                    .map(|r| Some(r.latency_ms))
                    .collect::<Float64Array>(),
            ),
        );
    }
    add(
        "delta_s",
        Arc::new(
            rows.iter()
                .map(|r| Some(r.delta_s))
                .collect::<Float64Array>(),
        ),
    );
    add(
        "coverage",
        Arc::new(
            rows.iter()
                .map(|r| Some(r.coverage))
                .collect::<Float64Array>(),
        ),
    );
    add(
        "lambda_state",
        dict(rows.iter().map(|r| Some(r.lambda_state.clone()))),
    );
    if rows.iter().any(|r| r.server_flags.is_some()) {
        add(
            "server_flags",
            dict(rows.iter().map(|r| r.server_flags.clone())),
        );
        add(
            "client_flags",
            dict(rows.iter().map(|r| r.client_flags.clone())),
        );
    }
    if rows.iter().any(|r| r.queue_wait_ms.is_some()) {
        add(
            "queue_wait_ms",
            Arc::new(
                rows.iter()
                    .map(|r| r.queue_wait_ms)
                    .collect::<Float64Array>(),
            ),
        );
        add(
            "breaker_state",
            dict(rows.iter().map(|r| r.breaker_state.clone())),
        );
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("consistent batch")
}

pub fn receipts_batch(rows: &[Receipt]) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
            false,
        ),
        Field::new("receipt_id", DataType::Utf8, true),
        Field::new("request_id", DataType::Utf8, true),
        Field::new("idempotency_key", DataType::Utf8, true),
        Field::new("effect", DataType::Utf8, true),
        Field::new("writer_id", DataType::Utf8, true),
        Field::new("decision", DataType::Utf8, true),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.ts / 1000))
                .with_timezone("+00:00"),
        ),
        strings(rows.iter().map(|r| Some(r.receipt_id.clone()))),
        strings(rows.iter().map(|r| Some(r.request_id.clone()))),
        strings(rows.iter().map(|r| Some(r.idempotency_key.clone()))),
        strings(rows.iter().map(|r| Some(r.effect.clone()))),
        strings(rows.iter().map(|r| Some(r.writer_id.clone()))),
        strings(rows.iter().map(|r| r.decision.clone())),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).expect("consistent batch")
}

/// Output formats the generator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFormat {
    Parquet,
    ArrowFile,
    ArrowStream,
    Csv,
    CsvGz,
    Ndjson,
    NdjsonZst,
}

impl OutFormat {
    pub fn extension(self) -> &'static str {
        match self {
            OutFormat::Parquet => "parquet",
            OutFormat::ArrowFile => "arrow",
            OutFormat::ArrowStream => "arrows",
            OutFormat::Csv => "csv",
            OutFormat::CsvGz => "csv.gz",
            OutFormat::Ndjson => "jsonl",
            OutFormat::NdjsonZst => "jsonl.zst",
        }
    }

    /// The format's name in a report's `inputs` (and in an incident's `format = "…"`).
    pub fn format_name(self) -> &'static str {
        match self {
            OutFormat::Parquet => "parquet",
            OutFormat::ArrowFile => "arrow",
            OutFormat::ArrowStream => "arrow-stream",
            OutFormat::Csv | OutFormat::CsvGz => "csv",
            OutFormat::Ndjson | OutFormat::NdjsonZst => "ndjson",
        }
    }
}

/// Writes batches in one format. Text formats decode dictionaries to plain strings.
pub fn write_batches(
    path: &Path,
    format: OutFormat,
    batches: &[RecordBatch],
    row_group_rows: usize,
) -> anyhow::Result<()> {
    use std::fs::File;
    use std::io::{BufWriter, Write};
    let file = BufWriter::new(File::create(path)?);
    let schema = batches[0].schema();
    let plain = |b: &RecordBatch| -> anyhow::Result<RecordBatch> {
        let fields: Vec<Field> = b
            .schema()
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Dictionary(_, v) => Field::new(f.name(), v.as_ref().clone(), true),
                _ => f.as_ref().clone(),
            })
            .collect();
        let cols = b
            .columns()
            .iter()
            .zip(&fields)
            .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
    };
    match format {
        OutFormat::Parquet => {
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                .set_max_row_group_row_count(Some(row_group_rows))
                .build();
            let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, Some(props))?;
            for b in batches {
                w.write(b)?;
            }
            w.close()?;
        }
        OutFormat::ArrowFile => {
            let mut w = arrow::ipc::writer::FileWriter::try_new(file, &schema)?;
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        OutFormat::ArrowStream => {
            let mut w = arrow::ipc::writer::StreamWriter::try_new(file, &schema)?;
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        OutFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(file);
            for b in batches {
                w.write(&plain(b)?)?;
            }
            w.into_inner().flush()?;
        }
        OutFormat::CsvGz => {
            let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(gz);
            for b in batches {
                w.write(&plain(b)?)?;
            }
            w.into_inner().finish()?.flush()?;
        }
        OutFormat::Ndjson | OutFormat::NdjsonZst => {
            let sink: Box<dyn Write> = if format == OutFormat::NdjsonZst {
                Box::new(zstd::stream::write::Encoder::new(file, 3)?.auto_finish())
            } else {
                Box::new(file)
            };
            let mut w = arrow::json::LineDelimitedWriter::new(sink);
            for b in batches {
                w.write(&plain(b)?)?;
            }
            w.finish()?;
        }
    }
    Ok(())
}

/// The committed fixtures: a demo, a clean incident, one per fault kind, and canaries.
pub fn fixture_scenarios() -> Vec<Scenario> {
    let mut out = Vec::new();
    let mut demo = Scenario::rollback("demo", "prompt pack v7 regression", 2041);
    demo.faults = Faults {
        wrong_index_hash: 37,
        missing_prompt_ver: 5,
        stale_cache_hits: 12,
        stale_ns_misses: 8,
        error_minutes_after_flip: 3,
        post_latency_factor: 1.05,
        doubled_keys: 3,
        tripled_keys: 1,
        dedupe_hits: 6,
        freeze_writes: 2,
        two_writer_keys: 1,
        orphan_receipts: 3,
        effects_on_failed_requests: 2,
        ..Faults::default()
    };
    demo.page = page::Page {
        // us-east flipped four minutes after the others.
        region_flips: vec![("us-east", demo.flip_at + 4 * MICROS_PER_MINUTE)],
        flags: true,
        client_flag_stale: 4,
        backpressure: true,
        post_queue_factor: 1.1,
        gold: Some(page::GoldSpec {
            questions: 40,
            regressed: 1,
            superseded_decoy: true,
            ..page::GoldSpec::default()
        }),
        captured: Some(page::CapturedSpec {
            after_flip: false,
            pins_named: 8,
            mismatched: 0,
        }),
        ..page::Page::default()
    };
    demo.statuses = &[
        ("pins", "fail"),
        ("cache_rotation", "fail"),
        ("mixed_versions", "warn"),
        ("duplicate_effects", "fail"),
        ("writer_freeze", "fail"),
        ("reconciliation", "warn"),
        ("error_recovery", "pass"),
        ("latency", "pass"),
        ("quality", "pass"),
        ("evidence", "pass"),
        ("flag_drift", "warn"),
        ("backpressure", "pass"),
        ("gold_set", "warn"),
        ("captured_state", "pass"),
    ];
    demo.verdict = "fail";
    out.push(demo);

    let mut clean = Scenario::rollback("clean", "a clean rollback", 7);
    clean.statuses = &[
        ("pins", "pass"),
        ("cache_rotation", "pass"),
        ("mixed_versions", "pass"),
        ("duplicate_effects", "pass"),
        ("writer_freeze", "pass"),
        ("reconciliation", "pass"),
        ("error_recovery", "pass"),
        ("latency", "pass"),
        ("quality", "pass"),
        ("evidence", "pass"),
    ];
    out.push(clean);

    let mut s = Scenario::rollback("stale-pins", "a region kept the bad index", 11);
    s.faults.wrong_index_hash = 25;
    s.faults.missing_prompt_ver = 4;
    s.statuses = &[
        ("pins", "fail"),
        ("mixed_versions", "warn"),
        ("cache_rotation", "pass"),
    ];
    s.verdict = "fail";
    out.push(s);

    let mut s = Scenario::rollback("stale-cache", "the cache namespace did not rotate", 12);
    s.faults.stale_cache_hits = 9;
    s.faults.stale_ns_misses = 14;
    s.statuses = &[("cache_rotation", "fail"), ("pins", "pass")];
    s.verdict = "fail";
    out.push(s);

    let mut s = Scenario::rollback(
        "duplicate-effects",
        "retries executed side effects twice",
        13,
    );
    s.faults.doubled_keys = 4;
    s.faults.tripled_keys = 2;
    s.faults.dedupe_hits = 10;
    s.faults.orphan_receipts = 4;
    s.faults.effects_on_failed_requests = 3;
    s.statuses = &[
        ("duplicate_effects", "fail"),
        ("writer_freeze", "pass"),
        ("reconciliation", "warn"),
    ];
    s.verdict = "fail";
    out.push(s);

    let mut s = Scenario::rollback(
        "freeze-writes",
        "writers ran during the freeze and at the flip",
        14,
    );
    s.faults.freeze_writes = 3;
    s.faults.two_writer_keys = 2;
    s.statuses = &[("writer_freeze", "fail"), ("duplicate_effects", "fail")];
    s.verdict = "fail";
    out.push(s);

    let mut s = Scenario::rollback(
        "slow-recovery",
        "errors lasted 14 minutes after the flip",
        15,
    );
    s.faults.error_minutes_after_flip = 14;
    s.statuses = &[("error_recovery", "fail")];
    s.verdict = "fail";
    out.push(s);

    let mut s = Scenario::rollback(
        "latency-regression",
        "the rolled-back service is slower",
        16,
    );
    s.faults.post_latency_factor = 1.4;
    s.statuses = &[("latency", "fail"), ("quality", "pass")];
    s.verdict = "fail";
    out.push(s);

    let mut s = Scenario::rollback("quality-drift", "answers got worse after the flip", 17);
    s.faults.post_delta_s_shift = 0.15;
    s.faults.post_lambda_divergent = 0.3;
    s.statuses = &[("quality", "fail"), ("latency", "pass")];
    s.verdict = "fail";
    out.push(s);

    let mut s = Scenario::rollback("too-little-data", "a quiet service", 18);
    s.requests_per_minute = 5;
    s.users = 50;
    s.statuses = &[
        ("latency", "inconclusive"),
        ("quality", "inconclusive"),
        ("error_recovery", "inconclusive"),
        ("pins", "pass"),
    ];
    s.verdict = "inconclusive";
    out.push(s);

    let mut s = Scenario::rollback("requests-only", "no receipts and no root cause yet", 19);
    s.receipt_share = 0.0;
    s.root_cause_url = None;
    s.statuses = &[
        ("duplicate_effects", "skip"),
        ("writer_freeze", "skip"),
        ("evidence", "warn"),
        ("pins", "pass"),
    ];
    s.verdict = "warn";
    out.push(s);

    // The rest of the rollback page.
    let mut s = Scenario::rollback(
        "region-flips",
        "ap-south flipped six minutes after the others",
        31,
    );
    s.page = page::Page {
        // Its bad pins, bad namespace and flag until its own flip must not count.
        region_flips: vec![("ap-south", s.flip_at + 6 * MICROS_PER_MINUTE)],
        flags: true,
        backpressure: true,
        // Throttling in the baseline and breakers open during the incident: not the rollback's.
        baseline_429: true,
        post_queue_factor: 1.0,
        captured: Some(page::CapturedSpec {
            after_flip: false,
            pins_named: 8,
            mismatched: 0,
        }),
        ..page::Page::default()
    };
    s.statuses = &[
        ("pins", "pass"),
        ("cache_rotation", "pass"),
        ("mixed_versions", "pass"),
        ("flag_drift", "pass"),
        ("backpressure", "pass"),
        ("captured_state", "pass"),
        ("gold_set", "skip"),
    ];
    out.push(s);

    let mut s = Scenario::rollback(
        "flag-drift",
        "the kill switch did not reach every server",
        32,
    );
    s.page = page::Page {
        flags: true,
        server_flag_wrong: 3,
        client_flag_stale: 5,
        ..page::Page::default()
    };
    s.statuses = &[
        ("flag_drift", "fail"),
        ("pins", "pass"),
        ("backpressure", "skip"),
    ];
    s.verdict = "fail";
    out.push(s);

    let mut s = Scenario::rollback(
        "backpressure",
        "429s for twelve minutes, queues still long, breakers open",
        33,
    );
    s.page = page::Page {
        backpressure: true,
        storm_minutes_after_flip: 12,
        post_queue_factor: 2.5,
        breaker_open_at_end: 4,
        ..page::Page::default()
    };
    s.statuses = &[
        ("backpressure", "fail"),
        ("error_recovery", "fail"),
        ("flag_drift", "skip"),
    ];
    s.verdict = "fail";
    out.push(s);

    let mut s = Scenario::rollback(
        "gold-set",
        "the gold set regressed and the state was captured late",
        34,
    );
    s.page = page::Page {
        gold: Some(page::GoldSpec {
            questions: 60,
            missing: 2,
            regressed: 3,
            pin_violations: 2,
            superseded_decoy: true,
        }),
        captured: Some(page::CapturedSpec {
            after_flip: true,
            pins_named: 6,
            mismatched: 1,
        }),
        ..page::Page::default()
    };
    s.statuses = &[("gold_set", "fail"), ("captured_state", "warn")];
    s.verdict = "fail";
    out.push(s);

    let mut s = Scenario::rollback(
        "early-unfreeze",
        "writers unfrozen three minutes after errors recovered",
        35,
    );
    s.freeze = Some((t("2026-11-27T10:10:00Z"), t("2026-11-27T10:20:00Z")));
    s.statuses = &[("writer_freeze", "warn"), ("error_recovery", "pass")];
    s.verdict = "warn";
    out.push(s);

    let mut s = Scenario::canary("canary-pass", "prompt pack v7 canary, healthy", 21);
    s.statuses = &[
        ("pins", "pass"),
        ("cache_isolation", "pass"),
        ("sticky_routing", "pass"),
        ("duplicate_effects", "pass"),
        ("reconciliation", "pass"),
        ("error_rate", "pass"),
        ("latency", "pass"),
        ("quality", "pass"),
        ("evidence", "pass"),
    ];
    out.push(s);

    let mut s = Scenario::canary(
        "canary-fail",
        "prompt pack v7 canary, poisoned cache and slow",
        22,
    );
    s.faults.foreign_cache_hits = 7;
    s.faults.users_on_both_arms = 5;
    s.faults.post_latency_factor = 1.5;
    s.statuses = &[
        ("cache_isolation", "fail"),
        ("sticky_routing", "warn"),
        ("latency", "fail"),
        ("pins", "pass"),
    ];
    s.verdict = "fail";
    out.push(s);
    out
}

/// Writes a scenario's files into `dir`: requests, receipts (when any), incident.toml,
/// expected.json, and mapping.toml for OpenTelemetry naming.
pub fn write_scenario(
    s: &Scenario,
    dir: &Path,
    format: OutFormat,
    naming: Naming,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let (requests, receipts) = generate(s);
    let requests_file = format!("requests.{}", format.extension());
    write_batches(
        &dir.join(&requests_file),
        format,
        &[requests_batch(&requests, naming)],
        4096,
    )?;
    let receipts_file = format!("receipts.{}", format.extension());
    let with_receipts = !receipts.is_empty();
    if with_receipts {
        write_batches(
            &dir.join(&receipts_file),
            format,
            &[receipts_batch(&receipts)],
            4096,
        )?;
    }
    let mapping = (naming == Naming::OpenTelemetry).then_some("mapping.toml");
    if mapping.is_some() {
        std::fs::write(
            dir.join("mapping.toml"),
            "# OpenTelemetry-style names → rollproof's canonical names.\n[requests]\nts = \"timestamp\"\nstatus = \"http.response.status_code\"\nmodel_ver = \"gen_ai.response.model\"\ngit_sha = \"vcs.ref.head.revision\"\nregion = \"cloud.region\"\nlatency_ms = { column = \"duration\", unit = \"s\" }\n",
        )?;
    }
    std::fs::write(
        dir.join("incident.toml"),
        incident_toml(
            s,
            &requests_file,
            with_receipts.then_some(receipts_file.as_str()),
            mapping,
        ),
    )?;
    page::write_files(s, dir, naming)?;
    let mut expected = serde_json::to_string_pretty(&expected(s, &requests, &receipts))?;
    expected.push('\n');
    std::fs::write(dir.join("expected.json"), expected)?;
    Ok(())
}

/// Writes every committed fixture under `root` (the OpenTelemetry fixture is the demo incident
/// in NDJSON with OpenTelemetry names and a mapping file).
pub fn write_fixtures(root: &Path) -> anyhow::Result<()> {
    for s in fixture_scenarios() {
        write_scenario(
            &s,
            &root.join(s.name),
            OutFormat::Parquet,
            Naming::Canonical,
        )?;
        if s.name == "demo" {
            write_scenario(
                &s,
                &root.join("demo-otel"),
                OutFormat::NdjsonZst,
                Naming::OpenTelemetry,
            )?;
        }
    }
    Ok(())
}
