//! The incident's impact, for the postmortem (rollback mode): when the incident started in the
//! data, its peak, how long it lasted, and per window the requests and users it touched.
//!
//! Not a check: a kernel like the others (update → merge → settle), so the figures are as
//! deterministic as every other. Its report section is `impact`.
//!
//! Definitions (docs/reference/figures.md repeats them for users):
//! - Minutes are aligned to the flip: minute k is [flip_at + k min, flip_at + (k+1) min), k < 0
//!   before the flip.
//! - An *off-pin* request carries a value other than the expected one for a pin of
//!   `[expected_pins]` (a missing value is not counted: it is the `pins` check's business). An
//!   *affected* request is off-pin or a user-visible error (status ≥ 500 or 429).
//! - A *degraded* minute has requests and an error rate over `error_rate_max` or an off-pin share
//!   of at least [`OFF_PIN_SHARE`].
//! - `incident_start`: among the minutes from the end of the baseline to the flip, the first
//!   degraded one whose next non-empty minute before the flip is degraded too (a lone bad minute
//!   is noise), or the last non-empty minute before the flip when it is degraded.
//! - `recovered_at`: flip_at + `recovery_minutes` of `error_recovery`; `duration_minutes` from
//!   incident_start to it.

use arrow::array::Array;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::error_recovery::is_error;
use super::users;
use crate::columns::{Col, Table};
use crate::engine::{Kernel, Rows, Stage, States};
use crate::incident::Window;
use crate::plan::{Ctx, Rollback};
use crate::report::Instant;
use crate::stats::{DenseMinutes, Tally};
use crate::time::{Micros, MICROS_PER_MINUTE};

/// An off-pin share that makes a minute degraded.
pub(crate) const OFF_PIN_SHARE: f64 = 0.05;

/// The fixed windows of the impact section (their bounds are known before the pass), as indices
/// into [`fixed_windows`].
pub(crate) const BASELINE: usize = 0;
pub(crate) const SETTLING: usize = 1;
pub(crate) const POST: usize = 2;

/// The fixed windows, in the order of [`BASELINE`], [`SETTLING`], [`POST`].
pub(crate) fn fixed_windows(r: &Rollback) -> [Window; 3] {
    [r.baseline, r.settling(), r.post]
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Counts {
    requests: u64,
    with_status: u64,
    errors: u64,
    off_pin: u64,
    affected: u64,
}

impl Tally for Counts {
    fn merge_from(&mut self, other: &Counts) {
        self.add(other);
    }
    fn is_empty(&self) -> bool {
        self.requests == 0
    }
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.with_status += o.with_status;
        self.errors += o.errors;
        self.off_pin += o.off_pin;
        self.affected += o.affected;
    }

    fn error_rate(&self) -> Option<f64> {
        (self.with_status > 0).then(|| self.errors as f64 / self.with_status as f64)
    }

    fn off_pin_share(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.off_pin as f64 / self.requests as f64)
    }
}

#[derive(Default, Serialize, Deserialize)]
pub(crate) struct State {
    /// Flip-aligned minute → counts, over all the data.
    minutes: BTreeMap<i64, Counts>,
    windows: [Counts; 3],
    has_status: bool,
}

pub(crate) struct ImpactKernel;
pub(crate) static IMPACT: ImpactKernel = ImpactKernel;

impl Kernel for ImpactKernel {
    type State = State;
    const NAME: &'static str = "impact";
    const TABLE: Table = Table::Requests;
    const STAGE: Stage = Stage::Requests;

    fn columns(&self, ctx: &Ctx) -> Vec<Col> {
        let mut cols = vec![Col::Status];
        cols.extend(ctx.plan.pins_named());
        cols
    }

    fn init(&self, _ctx: &Ctx, _prior: &States) -> State {
        State::default()
    }

    fn update(&self, ctx: &Ctx, state: &mut State, rows: &Rows<'_>) {
        let Some(r) = ctx.plan.rollback() else { return };
        state.update(r, rows);
    }

    fn merge(&self, state: &mut State, mut other: State) {
        for (k, c) in std::mem::take(&mut other.minutes) {
            state.minutes.entry(k).or_default().add(&c);
        }
        for i in 0..3 {
            state.windows[i].add(&other.windows[i]);
        }
        state.has_status |= other.has_status;
    }
}

impl State {
    fn update(&mut self, r: &Rollback, rows: &Rows<'_>) {
        let batch = rows.batch;
        let n = batch.len();
        let ts = batch.ts();
        let off_pin = rows.off_pin(r);
        let status = batch.int(Col::Status);
        self.has_status |= status.is_some();
        let windows = fixed_windows(r);
        let mut dense = DenseMinutes::new(ts, r.flip_at, Micros::MIN);
        for i in 0..n {
            let t = ts[i];
            let error = status.is_some_and(|s| s.is_valid(i) && is_error(s.value(i)));
            let with_status = status.is_some_and(|s| s.is_valid(i));
            let affected = error || off_pin[i];
            let row = Counts {
                requests: 1,
                with_status: with_status as u64,
                errors: error as u64,
                off_pin: off_pin[i] as u64,
                affected: affected as u64,
            };
            if let Some(c) = dense.at(&mut self.minutes, t) {
                c.add(&row);
            }
            for (w, window) in windows.iter().enumerate() {
                if window.contains(t) {
                    self.windows[w].add(&row);
                }
            }
        }
        dense.finish(&mut self.minutes);
    }

    /// The report's `impact` section; `recovery_minutes` from `error_recovery`.
    pub(crate) fn report(
        &self,
        ctx: &Ctx,
        users: Option<&users::State>,
        recovery_minutes: Option<u64>,
    ) -> Option<crate::report::Impact> {
        let users = users.filter(|u| u.has_users());
        let r = ctx.plan.rollback()?;
        let error_max = ctx.thresholds.error_rate_max;
        let degraded = |c: &Counts| {
            c.requests > 0
                && (c.error_rate().is_some_and(|e| e > error_max)
                    || c.off_pin_share().is_some_and(|s| s >= OFF_PIN_SHARE))
        };
        let search_from = r.minute(r.baseline.end);
        // Minutes wholly inside [baseline end, flip): the first may straddle the baseline's end.
        let before: Vec<(i64, &Counts)> = self
            .minutes
            .range(search_from..0)
            .filter(|(k, _)| r.flip_at + **k * MICROS_PER_MINUTE >= r.baseline.end)
            .map(|(k, c)| (*k, c))
            .collect();
        let start_minute = before.iter().enumerate().find_map(|(i, (k, c))| {
            let next = before.get(i + 1);
            (degraded(c) && next.is_none_or(|(_, n)| degraded(n))).then_some(*k)
        });
        let at = |k: i64| r.flip_at + k * MICROS_PER_MINUTE;
        let recovered_at = recovery_minutes.map(|m| at(m as i64));
        let peak_from = start_minute.unwrap_or(0);
        let peak = self
            .minutes
            .range(peak_from..)
            .filter_map(|(k, c)| c.error_rate().map(|e| (*k, e)))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
        let peak_off = self
            .minutes
            .range(peak_from..)
            .filter_map(|(k, c)| c.off_pin_share().map(|s| (*k, s)))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
        let mut windows = Vec::new();
        let window = |name: &'static str, w: Window, c: &Counts, users: Option<(u64, u64)>| {
            crate::report::ImpactWindow {
                name,
                start: Instant(w.start),
                end: Some(Instant(w.end)),
                requests: c.requests,
                errors: c.errors,
                error_rate: c.error_rate(),
                off_pin_requests: c.off_pin,
                affected_requests: c.affected,
                users: users.map(|u| u.0),
                affected_users: users.map(|u| u.1),
            }
        };
        let users_of = |w: usize| users.map(|u| u.in_window(w));
        windows.push(window(
            "baseline",
            r.baseline,
            &self.windows[BASELINE],
            users_of(BASELINE),
        ));
        if let Some(k) = start_minute {
            let mut c = Counts::default();
            for (_, m) in self.minutes.range(k..0) {
                c.add(m);
            }
            let users = users.and_then(|u| u.since(k));
            windows.push(window(
                "incident",
                Window {
                    start: at(k),
                    end: r.flip_at,
                },
                &c,
                users,
            ));
        }
        let s = r.settling();
        if s.end > s.start {
            windows.push(window(
                "settling",
                s,
                &self.windows[SETTLING],
                users_of(SETTLING),
            ));
        }
        let mut post = window("post", r.post, &self.windows[POST], users_of(POST));
        if r.post_is_default {
            post.end = None;
        }
        windows.push(post);
        Some(crate::report::Impact {
            incident_start: start_minute.map(|k| Instant(at(k))),
            recovered_at: recovered_at.map(Instant),
            duration_minutes: match (start_minute, recovery_minutes) {
                (Some(k), Some(m)) => Some((m as i64 - k) as u64),
                _ => None,
            },
            peak_error_rate: peak.map(|p| p.1),
            peak_error_at: peak.map(|p| Instant(at(p.0))),
            peak_off_pin_share: peak_off.map(|p| p.1),
            peak_off_pin_at: peak_off.map(|p| Instant(at(p.0))),
            windows,
            has_status: self.has_status,
        })
    }
}
