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
//!   [expected_pins] (a missing value is not counted: it is the `pins` check's business). An
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
use crate::columns::{Col, Table};
use crate::engine::{Kernel, Rows, Stage, States};
use crate::incident::Window;
use crate::plan::{Ctx, Plan, Rollback};
use crate::report::Instant;
use crate::stats::key_table::KeyTable;
use crate::time::{Micros, MICROS_PER_MINUTE};

/// The most minutes one batch counts densely (a week); the rest go to the map.
const DENSE_MINUTES: i64 = 7 * 24 * 60;

/// An off-pin share that makes a minute degraded.
pub(crate) const OFF_PIN_SHARE: f64 = 0.05;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Counts {
    requests: u64,
    with_status: u64,
    errors: u64,
    off_pin: u64,
    affected: u64,
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

/// What the impact section needs of one user, in one entry (one hash map for all windows keeps
/// the state at ~32 bytes per user rather than a map per window): the fixed windows the user had
/// requests in and had affected requests in (bit `w`), and their last minute and last affected
/// minute between the end of the baseline and the flip (`i64::MIN` when none).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct UserMark {
    windows: u8,
    affected: u8,
    last: i64,
    last_affected: i64,
}

impl Default for UserMark {
    fn default() -> UserMark {
        UserMark {
            windows: 0,
            affected: 0,
            last: i64::MIN,
            last_affected: i64::MIN,
        }
    }
}

/// A [`UserMark`] in 8 bytes (16 with its key: one table slot), which halves the state that grows
/// with users: bits 0–2 `windows`, 3–5 `affected`, then 29 bits each for `last` and
/// `last_affected` as distances before the flip (minute −d is d; 0 for none). A minute more than
/// [`MAX_DISTANCE`] minutes before the flip (a thousand years: only a hostile incident file has
/// such a window) is kept as `MAX_DISTANCE`, and the report then leaves the incident window's
/// user counts out rather than give them wrong. Serialized as a `UserMark`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(into = "UserMark", try_from = "UserMark")]
struct Packed(u64);

const MAX_DISTANCE: i64 = (1 << 29) - 1;
const DISTANCE_MASK: u64 = MAX_DISTANCE as u64;

/// The later of two minutes before the flip, as distances (0: none).
fn nearest(a: u64, b: u64) -> u64 {
    match (a, b) {
        (0, x) | (x, 0) => x,
        (x, y) => x.min(y),
    }
}

impl Packed {
    fn new(windows: u8, affected: u8, last: u64, last_affected: u64) -> Packed {
        Packed(
            (windows & 7) as u64
                | ((affected & 7) as u64) << 3
                | (last & DISTANCE_MASK) << 6
                | (last_affected & DISTANCE_MASK) << 35,
        )
    }
    fn windows(self) -> u8 {
        (self.0 & 7) as u8
    }
    fn affected(self) -> u8 {
        (self.0 >> 3 & 7) as u8
    }
    fn last(self) -> u64 {
        self.0 >> 6 & DISTANCE_MASK
    }
    fn last_affected(self) -> u64 {
        self.0 >> 35 & DISTANCE_MASK
    }

    /// The mark of one request: in the fixed windows `in_windows`, at flip-aligned minute `k`.
    #[inline]
    fn request(in_windows: u8, affected: bool, before_flip: bool, k: i64) -> Packed {
        let d = if before_flip {
            k.saturating_neg().clamp(1, MAX_DISTANCE) as u64
        } else {
            0
        };
        if affected {
            Packed::new(in_windows, in_windows, d, d)
        } else {
            Packed::new(in_windows, 0, d, 0)
        }
    }

    #[inline]
    fn merge(&mut self, o: Packed) {
        *self = Packed::new(
            self.windows() | o.windows(),
            self.affected() | o.affected(),
            nearest(self.last(), o.last()),
            nearest(self.last_affected(), o.last_affected()),
        );
    }
}

impl From<Packed> for UserMark {
    fn from(p: Packed) -> UserMark {
        let minute = |d: u64| if d == 0 { i64::MIN } else { -(d as i64) };
        UserMark {
            windows: p.windows(),
            affected: p.affected(),
            last: minute(p.last()),
            last_affected: minute(p.last_affected()),
        }
    }
}

/// Refuses marks this kernel cannot have written (a crafted partial).
impl TryFrom<UserMark> for Packed {
    type Error = String;

    fn try_from(m: UserMark) -> Result<Packed, String> {
        let distance = |k: i64| match k {
            i64::MIN => Ok(0),
            k if (-MAX_DISTANCE..0).contains(&k) => Ok((-k) as u64),
            k => Err(format!("a user's minute {k} is not before the flip")),
        };
        if m.windows > 7 || m.affected > 7 {
            return Err("a user's window bits name windows that do not exist".to_string());
        }
        Ok(Packed::new(
            m.windows,
            m.affected,
            distance(m.last)?,
            distance(m.last_affected)?,
        ))
    }
}

/// The fixed windows (their bounds are known before the pass).
const BASELINE: usize = 0;
const SETTLING: usize = 1;
const POST: usize = 2;

#[derive(Default, Serialize, Deserialize)]
pub(crate) struct State {
    /// Flip-aligned minute → counts, over all the data.
    minutes: BTreeMap<i64, Counts>,
    windows: [Counts; 3],
    /// Users with requests in a fixed window or between the end of the baseline and the flip (so
    /// that the users of any window ending at the flip can be counted once its start is known).
    users: KeyTable<Packed>,
    /// Marks not yet in `users`: applied [`crate::stats::key_table::PENDING_KEYS`] at a time,
    /// in slot order (see [`State::flush`]). Empty outside a pass's updates ([`Kernel::flush`]).
    #[serde(skip)]
    pending: Vec<(u64, Packed)>,
    has_users: bool,
    has_status: bool,
    /// What [`Kernel::compact`] keeps of the users of a complete key range.
    compacted: CompactUsers,
}

/// The users of complete key ranges, counted: per fixed window, those with requests and those
/// with affected requests; and how many users had their last (affected) minute before the flip
/// at each minute, so that the users of a window that starts at any minute can be counted.
#[derive(Default, Serialize, Deserialize)]
struct CompactUsers {
    windows: [(u64, u64); 3],
    last: BTreeMap<i64, u64>,
    last_affected: BTreeMap<i64, u64>,
}

/// Counts of compacted ranges add saturating: a crafted partial may carry any count.
impl CompactUsers {
    fn add(&mut self, mark: &UserMark) {
        for (w, counts) in self.windows.iter_mut().enumerate() {
            counts.0 = counts.0.saturating_add((mark.windows >> w & 1) as u64);
            counts.1 = counts.1.saturating_add((mark.affected >> w & 1) as u64);
        }
        for (hist, minute) in [
            (&mut self.last, mark.last),
            (&mut self.last_affected, mark.last_affected),
        ] {
            if minute != i64::MIN {
                let e = hist.entry(minute).or_default();
                *e = e.saturating_add(1);
            }
        }
    }

    fn merge(&mut self, other: CompactUsers) {
        for (mine, theirs) in self.windows.iter_mut().zip(other.windows) {
            mine.0 = mine.0.saturating_add(theirs.0);
            mine.1 = mine.1.saturating_add(theirs.1);
        }
        for (mine, theirs) in [
            (&mut self.last, other.last),
            (&mut self.last_affected, other.last_affected),
        ] {
            for (k, n) in theirs {
                let e = mine.entry(k).or_default();
                *e = e.saturating_add(n);
            }
        }
    }

    /// Users whose last (affected) minute is at or after `k`.
    fn since(hist: &BTreeMap<i64, u64>, k: i64) -> u64 {
        hist.range(k..).fold(0u64, |a, (_, n)| a.saturating_add(*n))
    }
}

pub(crate) struct ImpactKernel;
pub(crate) static IMPACT: ImpactKernel = ImpactKernel;

fn rollback(ctx: &Ctx) -> Option<&Rollback> {
    match &ctx.plan {
        Plan::Rollback(r) => Some(r),
        Plan::Canary(_) => None,
    }
}

/// The settling window: from the flip to the start of the post window.
fn settling(r: &Rollback) -> Window {
    Window {
        start: r.flip_at,
        end: r.post.start.max(r.flip_at),
    }
}

impl Kernel for ImpactKernel {
    type State = State;
    const NAME: &'static str = "impact";
    const TABLE: Table = Table::Requests;
    const STAGE: Stage = Stage::Requests;

    fn columns(&self, ctx: &Ctx) -> Vec<Col> {
        let mut cols = vec![Col::Status, Col::UserId];
        cols.extend(ctx.plan.pins_named());
        cols
    }

    fn init(&self, _ctx: &Ctx, _prior: &States) -> State {
        State::default()
    }

    fn update(&self, ctx: &Ctx, state: &mut State, rows: &Rows<'_>) {
        let Some(r) = rollback(ctx) else { return };
        state.update(r, rows);
    }

    fn flush(&self, state: &mut State) {
        state.flush();
        // The last update is done: the buffer's 4 MiB go back.
        state.pending = Vec::new();
    }

    fn merge(&self, state: &mut State, mut other: State) {
        for (k, c) in std::mem::take(&mut other.minutes) {
            state.minutes.entry(k).or_default().add(&c);
        }
        for i in 0..3 {
            state.windows[i].add(&other.windows[i]);
        }
        if state.users.len() < other.users.len() {
            std::mem::swap(&mut state.users, &mut other.users);
        }
        for (u, mark) in other.users {
            state.users.entry(u).0.merge(mark);
        }
        state.has_users |= other.has_users;
        state.has_status |= other.has_status;
        state.compacted.merge(other.compacted);
    }

    const KEYED: bool = true;

    fn take_range(&self, state: &mut State, range: usize, ranges: usize) -> Option<State> {
        Some(State {
            users: state.users.take_range(range, ranges),
            ..State::default()
        })
    }

    fn split_ranges(&self, state: &mut State, ranges: usize) -> Option<Vec<State>> {
        Some(
            state
                .users
                .split_ranges(ranges)
                .into_iter()
                .map(|users| State {
                    users,
                    ..State::default()
                })
                .collect(),
        )
    }

    fn compact(&self, _ctx: &Ctx, state: &mut State) {
        for (_, mark) in std::mem::take(&mut state.users) {
            state.compacted.add(&UserMark::from(mark));
        }
    }
}

impl State {
    fn update(&mut self, r: &Rollback, rows: &Rows<'_>) {
        let batch = rows.batch;
        let n = batch.len();
        let ts = batch.ts();
        let mut off_pin = vec![false; n];
        for (col, want) in &r.pins[0].pins {
            let Some(arr) = batch.str(*col) else { continue };
            arr.update_rows(
                &mut off_pin,
                |v| v.is_some_and(|v| v != want.as_str()),
                |o, x| *o |= x,
            );
        }
        let status = batch.int(Col::Status);
        self.has_status |= status.is_some();
        let user_hashes = rows.user_hashes();
        self.has_users |= user_hashes.is_some();
        let windows = [r.baseline, settling(r), r.post];
        // Minutes of one batch are few: count them densely, then merge into the map. The dense
        // array is capped (a batch may span millennia: hostile or corrupt timestamps); minutes
        // past the cap go to the map directly.
        let minute = |t: Micros| (t.saturating_sub(r.flip_at)).div_euclid(MICROS_PER_MINUTE);
        let (lo, hi) = ts
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
        if lo > hi {
            return;
        }
        let first = minute(lo);
        let span = minute(hi).saturating_sub(first).saturating_add(1);
        let mut dense = vec![Counts::default(); span.clamp(0, DENSE_MINUTES) as usize];
        self.users.make_room(&mut self.pending, n, Packed::merge);
        let marks = &mut self.pending;
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
            let k = minute(t);
            match dense.get_mut(k.saturating_sub(first) as usize) {
                Some(c) => c.add(&row),
                None => self.minutes.entry(k).or_default().add(&row),
            }
            let user = user_hashes.as_ref().and_then(|u| u[i]);
            let mut in_windows = 0u8;
            for (w, window) in windows.iter().enumerate() {
                if window.contains(t) {
                    self.windows[w].add(&row);
                    in_windows |= 1 << w;
                }
            }
            if let Some(u) = user {
                let before_flip = t >= r.baseline.end && t < r.flip_at;
                if in_windows != 0 || before_flip {
                    marks.push((u, Packed::request(in_windows, affected, before_flip, k)));
                }
            }
        }
        for (j, c) in dense.into_iter().enumerate() {
            if c.requests > 0 {
                self.minutes.entry(first + j as i64).or_default().add(&c);
            }
        }
    }

    /// Applies the pending marks. In the order of their table slots (`KeyTable::apply`),
    /// and many at once: one by one, nearly every mark missed the cache, and a batch's marks
    /// (tens of thousands among hundreds of thousands of users) still landed a few cache lines
    /// apart; a quarter of a million sweep the table nearly line by line.
    fn flush(&mut self) {
        self.users.apply(&mut self.pending, Packed::merge);
    }

    /// The report's `impact` section; `recovery_minutes` from `error_recovery`.
    pub(crate) fn report(
        &self,
        ctx: &Ctx,
        recovery_minutes: Option<u64>,
    ) -> Option<crate::report::Impact> {
        let r = rollback(ctx)?;
        let error_max = ctx.thresholds.error_rate_max;
        let degraded = |c: &Counts| {
            c.requests > 0
                && (c.error_rate().is_some_and(|e| e > error_max)
                    || c.off_pin_share().is_some_and(|s| s >= OFF_PIN_SHARE))
        };
        let search_from = (r.baseline.end - r.flip_at).div_euclid(MICROS_PER_MINUTE);
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
        let users_of = |w: usize| {
            self.has_users.then(|| {
                let bit = 1u8 << w;
                let all = self
                    .users
                    .values()
                    .filter(|m| m.windows() & bit != 0)
                    .count();
                let hit = self
                    .users
                    .values()
                    .filter(|m| m.affected() & bit != 0)
                    .count();
                let (c_all, c_hit) = self.compacted.windows[w];
                (
                    (all as u64).saturating_add(c_all),
                    (hit as u64).saturating_add(c_hit),
                )
            })
        };
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
            // Users whose last (affected) minute is at or after k: at a distance of at most −k.
            // Beyond MAX_DISTANCE distances were clamped, so counts would be wrong: none given.
            let since = |d: u64| d != 0 && d as i64 <= -k;
            let users = (self.has_users && k > -MAX_DISTANCE).then(|| {
                let all = self.users.values().filter(|m| since(m.last())).count() as u64;
                let hit = self
                    .users
                    .values()
                    .filter(|m| since(m.last_affected()))
                    .count() as u64;
                (
                    all.saturating_add(CompactUsers::since(&self.compacted.last, k)),
                    hit.saturating_add(CompactUsers::since(&self.compacted.last_affected, k)),
                )
            });
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
        let s = settling(r);
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

#[cfg(test)]
mod tests {
    use super::{Packed, UserMark, MAX_DISTANCE};

    /// Packed marks of requests merge as plain `UserMark`s would, and serialize as them.
    #[test]
    fn packed_marks_are_user_marks() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let mut parts = [Packed::default(), Packed::default()];
            let mut plain = UserMark::default();
            for _ in 0..(next() % 6) {
                let (w, affected, before) = ((next() % 8) as u8, next() % 2 == 0, next() % 2 == 0);
                let k = -((next() % 5000) as i64) - 1;
                parts[(next() % 2) as usize].merge(Packed::request(w, affected, before, k));
                plain.windows |= w;
                if affected {
                    plain.affected |= w;
                }
                if before {
                    plain.last = plain.last.max(k);
                    if affected {
                        plain.last_affected = plain.last_affected.max(k);
                    }
                }
            }
            let [mut a, b] = parts;
            a.merge(b);
            let back = UserMark::from(a);
            assert_eq!(
                (back.windows, back.affected, back.last, back.last_affected),
                (
                    plain.windows,
                    plain.affected,
                    plain.last,
                    plain.last_affected
                )
            );
            let bytes = postcard::to_allocvec(&a).unwrap();
            assert_eq!(bytes, postcard::to_allocvec(&plain).unwrap());
            let decoded: Packed = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(decoded.0, a.0);
        }
    }

    /// Minutes beyond the distance the mark holds are clamped; a crafted mark that no update
    /// can write is refused.
    #[test]
    fn out_of_range_minutes_are_clamped_or_refused() {
        let p = Packed::request(0, true, true, i64::MIN);
        assert_eq!(UserMark::from(p).last, -MAX_DISTANCE);
        assert_eq!(UserMark::from(p).last_affected, -MAX_DISTANCE);
        for (last, windows) in [(0, 1), (5, 1), (-MAX_DISTANCE - 1, 1), (-1, 8)] {
            let mark = UserMark {
                windows,
                last,
                ..UserMark::default()
            };
            assert!(Packed::try_from(mark).is_err(), "{last} {windows}");
        }
    }
}
