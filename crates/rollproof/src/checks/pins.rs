//! `pins`: every audited request carries its expected version pins.

use crate::words::plural;
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::rows::ROWS;
use super::Lever;
use super::{
    region_ids, CheckInfo, CheckResult, CheckSpec, Evidence, Fields, Finish, Metric, Status, BOTH,
    SAMPLE_CAP,
};
use crate::columns::{Col, Table, PIN_COLUMNS};
use crate::engine::{Kernel, Rows, Stage, States};
use crate::plan::{Ctx, Mode, Plan};
use crate::stats::{Counts, Keyed, SampleKey, Strata};

pub(crate) static CHECK: CheckSpec = CheckSpec {
    info: &INFO,
    kernels: &[&PINS, &ROWS],
    finish,
    evidence: &[&Evidence {
        kind: "requests_with_wrong_pins",
        table: Table::Requests,
        select: |ctx, _, rows| {
            let (wrong, _) = violations(ctx, &checked_pins(ctx), rows);
            wrong.iter().map(|w| *w != 0).collect()
        },
    }],
};

pub(crate) static INFO: CheckInfo = CheckInfo {
    id: "pins",
    title: "Version pins",
    modes: BOTH,
    what_it_checks: "Every request after the flip (canary mode: every request of either arm in the window) \
        carries the expected value of each pin named in [expected_pins]: BUILD_ID, GIT_SHA, MODEL_VER, \
        PROMPT_VER, INDEX_HASH, RERANK_CONF, TOK_VER, ANALYZER_CONF. A missing value (null or empty) is a \
        violation too. Breaks the violations down by pin, by region and (canary) by arm.",
    why_it_matters: "A rollback is only real when every replica, region and cache serves the last known good \
        build, model, prompt and index. One region still on the bad prompt pack or index is the most common \
        way a 'rolled back' incident keeps hurting users.",
    what_fails_it: "Any violation (violations > 0). Pins named in [expected_pins] but absent from the logs \
        cannot be verified: the check warns and names them.",
    columns_it_needs: "ts and the pin columns named in [expected_pins]; region, request_id (and arm in \
        canary mode) for breakdowns and samples.",
    figures: &[
        ("requests_checked", "Requests audited: ts >= flip_at (canary: either arm, in the window)."),
        ("violations", "Audited requests with at least one named pin different from its expected value or missing."),
        ("missing", "Violations where at least one named pin is missing (null or empty)."),
        ("by_pin", "Pin → audited requests where that pin is wrong or missing (a request can count under several pins)."),
        ("by_region", "Region → violations (`all` without a region column, `unknown` for a missing region)."),
        ("requests_by_region", "Region → audited requests: the denominators of by_region."),
        ("last_violation_at", "The latest violating request's ts; null without violations."),
        ("last_violation_at_by_region", "Region → its latest violating request's ts (regions without violations left out)."),
        ("pins_checked", "The pins named in [expected_pins] that the logs have, in the order of the pins list (build_id … analyzer_conf)."),
        ("pins_unverified", "Pins named in [expected_pins] that no input column carries."),
        ("flip_at_by_region", "Rollback: every region seen after its flip → that flip ([flip_at_by_region], else flip_at)."),
        ("by_arm", "Canary: arm → violations."),
        ("other_arm", "Canary: requests in the window whose arm is neither arm (not audited)."),
    ],
    remediation: "redeploy the last known good pins to {regions}; add a pin check to the deploy gate",
    region_column: Some(("requests with a wrong pin", "requests_by_region")),
    impact: Some(|_, m, mode| {
        let v = m.get("violations").and_then(Metric::as_count).unwrap_or(0);
        (v > 0).then(|| match mode {
            Mode::Rollback => format!(
                "{} after the flip {} served with a wrong or missing version pin.",
                crate::words::plural(v, "request", "requests"),
                if v == 1 { "was" } else { "were" }
            ),
            Mode::Canary => format!(
                "{} in the window carried a pin other than their arm's: that traffic did not run the version under test.",
                crate::words::plural(v, "request", "requests")
            ),
        })
    }),
    events: None,
    lever: Some(|m| {
        m.get("by_pin")
            .and_then(Metric::as_counts)
            .is_some_and(|b| b.contains_key("index_hash"))
            .then_some(Lever::AliasIndexBack)
    }),
};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct Sample {
    ts: i64,
    request_id: Option<String>,
    pin: usize,
    found: Option<String>,
    set: u8,
    region: String,
}

impl Keyed for Sample {
    fn key(&self) -> SampleKey<'_> {
        (self.ts, self.request_id.as_deref())
    }
}

/// Samples kept per pin and per region: the earliest and the latest two.
const PER_STRATUM: usize = 2;

#[derive(Serialize, Deserialize)]
pub(crate) struct State {
    /// Pins (index into PIN_COLUMNS) that some set names and the logs have.
    checked_pins: Vec<usize>,
    requests_checked: u64,
    violations: u64,
    missing: u64,
    by_pin: [u64; 8],
    by_region: Counts,
    /// Audited requests per region: the denominators of the per-region rates.
    requests_by_region: Counts,
    last_violation_by_region: BTreeMap<String, i64>,
    by_arm: [u64; 2],
    samples: Strata<Sample>,
}

/// Audited requests against their pin set.
pub(crate) struct PinsKernel;
pub(crate) static PINS: PinsKernel = PinsKernel;

impl Kernel for PinsKernel {
    type State = State;
    const NAME: &'static str = "pins";
    const TABLE: Table = Table::Requests;
    const STAGE: Stage = Stage::Requests;

    fn is_consistent(&self, ctx: &Ctx, state: &State) -> bool {
        let sets = ctx.plan.pin_sets().len();
        state.checked_pins == checked_pins(ctx)
            && state
                .samples
                .all()
                .all(|s| s.pin < PIN_COLUMNS.len() && (1..=sets).contains(&(s.set as usize)))
    }

    fn columns(&self, ctx: &Ctx) -> Vec<Col> {
        let mut cols = vec![Col::Region, Col::RequestId];
        cols.extend(ctx.plan.pins_named());
        cols
    }

    fn init(&self, ctx: &Ctx, _prior: &States) -> State {
        let checked_pins = checked_pins(ctx);
        State {
            checked_pins,
            requests_checked: 0,
            violations: 0,
            missing: 0,
            by_pin: [0; 8],
            by_region: Counts::default(),
            requests_by_region: Counts::default(),
            last_violation_by_region: BTreeMap::new(),
            by_arm: [0; 2],
            samples: Strata::new(PER_STRATUM),
        }
    }

    fn update(&self, ctx: &Ctx, state: &mut State, rows: &Rows<'_>) {
        state.update(ctx, rows)
    }

    fn merge(&self, state: &mut State, other: State) {
        state.requests_checked += other.requests_checked;
        state.violations += other.violations;
        state.missing += other.missing;
        for j in 0..8 {
            state.by_pin[j] += other.by_pin[j];
        }
        state.by_arm[0] += other.by_arm[0];
        state.by_arm[1] += other.by_arm[1];
        state.by_region.merge(other.by_region);
        state.requests_by_region.merge(other.requests_by_region);
        for (region, t) in other.last_violation_by_region {
            let slot = state.last_violation_by_region.entry(region).or_insert(t);
            *slot = (*slot).max(t);
        }
        state.samples.merge(other.samples);
    }
}

/// Per row, bit `j` set when pin `j` (of `checked_pins`) differs from the row's set or is
/// missing, and the same for missing only; rows not audited are 0.
pub(crate) fn violations(ctx: &Ctx, checked_pins: &[usize], rows: &Rows<'_>) -> (Vec<u8>, Vec<u8>) {
    let batch = rows.batch;
    // Per row: (set, wrong, absent), folded one pin column at a time.
    let mut acc: Vec<(u8, u8, u8)> = rows.set.iter().map(|&set| (set, 0, 0)).collect();
    for &j in checked_pins {
        let col = PIN_COLUMNS[j];
        let arr = batch.str(col).expect("present pin columns are projected");
        let expected: Vec<Option<&str>> = ctx
            .plan
            .pin_sets()
            .iter()
            .map(|s| {
                s.pins
                    .iter()
                    .find(|(c, _)| *c == col)
                    .map(|(_, v)| v.as_str())
            })
            .collect();
        // Per distinct value (dictionary) or per row: 2 bits per pin set, 0 ok / 1 differs / 2 missing.
        let code_of = |v: Option<&str>| {
            let mut code = 0u8;
            for (s, e) in expected.iter().enumerate() {
                if let Some(e) = e {
                    let k = match v {
                        None => 2,
                        Some(x) if x == *e => 0,
                        Some(_) => 1,
                    };
                    code |= k << (2 * s);
                }
            }
            code
        };
        arr.update_rows(&mut acc, code_of, |(set, wrong, absent), code| {
            // Rows not audited (set 0) read no code.
            let k = if *set == 0 {
                0
            } else {
                (code >> (2 * (*set - 1))) & 3
            };
            *wrong |= ((k != 0) as u8) << j;
            *absent |= ((k == 2) as u8) << j;
        });
    }
    acc.into_iter().map(|(_, w, a)| (w, a)).unzip()
}

/// The pins (indices into PIN_COLUMNS) some set names and the requests have.
pub(crate) fn checked_pins(ctx: &Ctx) -> Vec<usize> {
    (0..PIN_COLUMNS.len())
        .filter(|&j| {
            let col = PIN_COLUMNS[j];
            ctx.has(col)
                && ctx
                    .plan
                    .pin_sets()
                    .iter()
                    .any(|s| s.pins.iter().any(|(c, _)| *c == col))
        })
        .collect()
}

impl State {
    fn update(&mut self, ctx: &Ctx, rows: &Rows<'_>) {
        if self.checked_pins.is_empty() {
            return;
        }
        let batch = rows.batch;
        let (wrong, absent) = violations(ctx, &self.checked_pins, rows);
        let (region_ids, regions) = region_ids(batch.str(Col::Region).as_ref(), batch.len());
        let mut checked_by_region = vec![0u64; regions.len()];
        let request_id = batch.str(Col::RequestId);
        let ts = batch.ts();
        for i in 0..batch.len() {
            let set = rows.set[i];
            if set == 0 {
                continue;
            }
            self.requests_checked += 1;
            let r = region_ids[i] as usize;
            checked_by_region[r] += 1;
            let mask = wrong[i];
            if mask == 0 {
                continue;
            }
            self.violations += 1;
            self.missing += (absent[i] != 0) as u64;
            for (j, count) in self.by_pin.iter_mut().enumerate() {
                *count += ((mask >> j) & 1) as u64;
            }
            self.by_arm[set as usize - 1] += 1;
            let region = regions[r];
            self.by_region.bump(region);
            match self.last_violation_by_region.get_mut(region) {
                Some(t) => *t = (*t).max(ts[i]),
                None => {
                    self.last_violation_by_region
                        .insert(region.to_string(), ts[i]);
                }
            }
            let id = request_id.as_ref().and_then(|c| c.get(i));
            let sample = |pin: usize| {
                move || Sample {
                    ts: ts[i],
                    request_id: id.map(str::to_string),
                    pin,
                    found: batch
                        .str(PIN_COLUMNS[pin])
                        .and_then(|c| c.get(i))
                        .map(str::to_string),
                    set,
                    region: region.to_string(),
                }
            };
            for j in (0..8).filter(|j| mask >> j & 1 == 1) {
                self.samples
                    .offer(PIN_COLUMNS[j].name(), (ts[i], id), sample(j));
            }
            self.samples.offer(
                &format!("region {region}"),
                (ts[i], id),
                sample(mask.trailing_zeros() as usize),
            );
        }
        for (r, n) in checked_by_region.into_iter().enumerate() {
            if n > 0 {
                self.requests_by_region.add(regions[r], n);
            }
        }
    }
}

fn finish(f: &Finish<'_>) -> CheckResult {
    let ctx = f.ctx;
    let state = f.states.get::<PinsKernel>();
    let other_arm = f.states.get::<super::rows::RowsKernel>().other_arm;
    let (named, unverified) = named_and_unverified(ctx, state);
    if state.checked_pins.is_empty() {
        return CheckResult::skip(
            INFO.id,
            format!(
                "none of the expected pins ({}) is a column of the requests",
                named.join(", ")
            ),
        );
    }
    let by_pin: BTreeMap<String, u64> = state
        .checked_pins
        .iter()
        .filter(|&&j| state.by_pin[j] > 0)
        .map(|&j| (PIN_COLUMNS[j].name().to_string(), state.by_pin[j]))
        .collect();
    let (status, summary) = verdict(ctx, state, &by_pin, &unverified);
    let mut result = CheckResult::new(INFO.id, status, summary)
        .metric("requests_checked", Metric::Count(state.requests_checked))
        .metric("violations", Metric::Count(state.violations))
        .metric("missing", Metric::Count(state.missing))
        .metric("by_pin", Metric::Counts(by_pin))
        .metric("by_region", Metric::Counts(state.by_region.sorted()))
        .metric(
            "requests_by_region",
            Metric::Counts(state.requests_by_region.sorted()),
        )
        .metric(
            "last_violation_at",
            Metric::Time(state.last_violation_by_region.values().max().copied()),
        )
        .metric(
            "last_violation_at_by_region",
            Metric::Times(state.last_violation_by_region.clone()),
        )
        .metric(
            "pins_checked",
            Metric::Texts(
                state
                    .checked_pins
                    .iter()
                    .map(|&j| PIN_COLUMNS[j].name().to_string())
                    .collect(),
            ),
        )
        .metric(
            "pins_unverified",
            Metric::Texts(unverified.iter().map(|s| s.to_string()).collect()),
        )
        .cells(
            plural(state.violations, "violation", "violations"),
            "",
            "0 violations",
        )
        .sample_size(state.requests_checked.to_string());
    if let Plan::Rollback(r) = &ctx.plan {
        // Every region seen after its flip, with that flip (its own, or flip_at).
        let flips = state
            .requests_by_region
            .sorted()
            .into_keys()
            .map(|region| {
                let flip = r.flip_of(Some(&region));
                (region, flip)
            })
            .collect();
        result = result.metric("flip_at_by_region", Metric::Times(flips));
    }
    if ctx.plan.mode() == Mode::Canary {
        let by_arm = (0..2)
            .filter(|&s| state.by_arm[s] > 0)
            .map(|s| (ctx.plan.set_label(s), state.by_arm[s]))
            .collect();
        result = result
            .metric("by_arm", Metric::Counts(by_arm))
            .metric("other_arm", Metric::Count(other_arm));
    }
    result.samples = samples(ctx, state);
    result
}

/// The pins the incident names (any set), sorted, and those of them no column carries.
fn named_and_unverified<'a>(ctx: &'a Ctx, state: &State) -> (Vec<&'a str>, Vec<&'a str>) {
    let named: Vec<&str> = ctx
        .plan
        .pin_sets()
        .iter()
        .flat_map(|s| s.pins.iter().map(|(c, _)| c.name()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let unverified = named
        .iter()
        .copied()
        .filter(|name| {
            !state
                .checked_pins
                .iter()
                .any(|&j| PIN_COLUMNS[j].name() == *name)
        })
        .collect();
    (named, unverified)
}

/// The status and its sentence: no request to check, violations (naming the worst pin), pins
/// that cannot be verified, or all pinned.
fn verdict(
    ctx: &Ctx,
    state: &State,
    by_pin: &BTreeMap<String, u64>,
    unverified: &[&str],
) -> (Status, String) {
    let checked = super::count(state.requests_checked);
    let noun = ctx.plan.audited_noun();
    if state.requests_checked == 0 {
        let why = match ctx.plan.mode() {
            Mode::Rollback => {
                "no request after the flip: check `flip_at` against the data's time range"
            }
            Mode::Canary => {
                "no request of either arm in the window: check `[canary]` arms and window"
            }
        };
        (Status::Inconclusive, why.to_string())
    } else if state.violations > 0 {
        let worst = by_pin
            .iter()
            .max_by_key(|(k, v)| (**v, std::cmp::Reverse(k.to_string())));
        let detail = worst
            .map(|(k, v)| format!(" (most: `{k}` on {})", super::count(*v)))
            .unwrap_or_default();
        let violations = super::count(state.violations);
        (
            Status::Fail,
            format!("{violations} of {checked} {noun} carry a wrong or missing pin{detail}"),
        )
    } else if !unverified.is_empty() {
        (
            Status::Warn,
            format!(
                "all {checked} {noun} carry the expected pins, but {} cannot be verified (not in the logs)",
                unverified.join(", ")
            ),
        )
    } else {
        (
            Status::Pass,
            format!("all {checked} {noun} carry the expected pins"),
        )
    }
}

/// The sampled violations, each with the pin, what was found and what was expected.
fn samples(ctx: &Ctx, state: &State) -> Vec<Fields> {
    state
        .samples
        .pick(SAMPLE_CAP)
        .into_iter()
        .map(|s| {
            let col = PIN_COLUMNS[s.pin];
            let expected = ctx.plan.pin_sets()[s.set as usize - 1]
                .pins
                .iter()
                .find(|(c, _)| *c == col)
                .map(|(_, v)| v.clone());
            let mut f = Fields::new();
            f.insert("request_id".into(), Metric::Text(s.request_id));
            f.insert("ts".into(), Metric::Time(Some(s.ts)));
            f.insert("pin".into(), Metric::Text(Some(col.name().to_string())));
            f.insert("found".into(), Metric::Text(s.found));
            f.insert("expected".into(), Metric::Text(expected));
            f.insert("region".into(), Metric::Text(Some(s.region)));
            if ctx.plan.mode() == Mode::Canary {
                f.insert(
                    "arm".into(),
                    Metric::Text(Some(ctx.plan.set_label(s.set as usize - 1))),
                );
            }
            f
        })
        .collect()
}
