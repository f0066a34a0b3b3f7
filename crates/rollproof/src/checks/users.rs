//! The per-user table that `mixed_versions`, `sticky_routing` and the impact section share: one
//! entry per user holding both what `mixed_versions` needs (the one value the user's audited
//! requests carried so far, or [`MIXED`]) and what the impact section needs (a [`Packed`] mark:
//! the windows the user had requests and affected requests in, and their last minutes before the
//! flip).
//!
//! Why one table: rows come in no order of their users, so every row's look-up in a table of
//! hundreds of thousands of users (millions at 100M requests) misses the cache. Two kernels with a
//! table each paid two misses per row and held every user twice; one table pays one miss and
//! holds a user in one 24-byte slot instead of two 16-byte ones.
//!
//! Not a check: the checks and the impact section read its settled state. Its state is keyed
//! ([`Kernel::take_range`]) and compacts to counts: the single-valued users are counted, the
//! marks are folded into [`CompactUsers`], and only the mixed users stay (the samples and the
//! evidence name them).

use arrow::array::Array;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::error_recovery::is_error;
use super::impact::fixed_windows;
use super::mixed_versions::{shown, skip_reason};
use super::SAMPLE_CAP;
use crate::columns::{Col, Table};
use crate::engine::{Kernel, Rows, Stage};
use crate::plan::{Ctx, Plan, Rollback};
use crate::stats::key_table::KeyTable;
use crate::stats::AHEAD;

/// No value: the user had no audited request (only the impact section's windows saw them).
const NONE: u64 = 0;
/// More than one value: the user is mixed.
pub(crate) const MIXED: u64 = u64::MAX;

/// One user: `mixed_versions`' value ([`NONE`], the one value seen, or [`MIXED`]) and the impact
/// section's mark. Both merge commutatively, so the entry does.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct User {
    value: u64,
    mark: Packed,
}

impl User {
    #[inline]
    fn merge(&mut self, o: User) {
        self.value = match (self.value, o.value) {
            (NONE, v) | (v, NONE) => v,
            (a, b) if a == b => a,
            _ => MIXED,
        };
        self.mark.merge(o.mark);
    }

    /// Whether the user's audited requests carried more than one value.
    pub(crate) fn is_mixed(&self) -> bool {
        self.value == MIXED
    }
}

#[derive(Default, Serialize, Deserialize)]
pub(crate) struct State {
    users: KeyTable<User>,
    requests_without_user: u64,
    /// Single-valued users, counted and dropped by [`Kernel::compact`] once their key range was
    /// complete.
    single_users: u64,
    /// Whether a batch of a rollback had a `user_id` column (the impact section then counts users).
    has_users: bool,
    /// What [`Kernel::compact`] keeps of the marks of a complete key range.
    compacted: CompactUsers,
    /// The samples of the users with the smallest hashes, kept in this pass so that the
    /// look-up of the mixed users' requests can usually be skipped.
    captured: Captured,
}

/// The value a row contributes to `mixed_versions`: the hash of its tuple of expected pins
/// (rollback) or its arm (canary), never [`NONE`] or [`MIXED`].
fn row_values(ctx: &Ctx, rows: &Rows<'_>) -> Vec<u64> {
    match &ctx.plan {
        Plan::Canary(_) => rows.set.iter().map(|&s| s as u64).collect(),
        Plan::Rollback(r) => rows
            .pin_tuples(r)
            .iter()
            .map(|&v| v.clamp(NONE + 1, MIXED - 1))
            .collect(),
    }
}

/// Whether each row is affected: off-pin ([`Rows::off_pin`]) or a user-visible error.
pub(crate) fn affected(r: &Rollback, rows: &Rows<'_>) -> Vec<bool> {
    let off_pin = rows.off_pin(r);
    match rows.batch.int(Col::Status) {
        Some(s) => (0..rows.len())
            .map(|i| off_pin[i] || (s.is_valid(i) && is_error(s.value(i))))
            .collect(),
        None => off_pin.to_vec(),
    }
}

pub(crate) struct UsersKernel;
pub(crate) static USERS: UsersKernel = UsersKernel;

impl Kernel for UsersKernel {
    type State = State;
    const NAME: &'static str = "users";
    const TABLE: Table = Table::Requests;
    const STAGE: Stage = Stage::Requests;

    fn columns(&self, ctx: &Ctx) -> Vec<Col> {
        let mut cols = vec![Col::UserId];
        cols.extend(ctx.plan.pins_named());
        if ctx.plan.rollback().is_some() {
            cols.push(Col::Status);
        }
        cols
    }

    fn init(&self, _ctx: &Ctx, _prior: &crate::engine::States) -> State {
        State::default()
    }

    fn update(&self, ctx: &Ctx, state: &mut State, rows: &Rows<'_>) {
        let Some(user_hashes) = rows.user_hashes() else {
            return;
        };
        let values = skip_reason(ctx).is_none().then(|| row_values(ctx, rows));
        let r = ctx.plan.rollback();
        state.has_users |= r.is_some();
        // Rollback: what the impact section needs of each row.
        let impact = r.map(|r| (r, fixed_windows(r), affected(r, rows)));
        let ts = rows.batch.ts();
        let user_ids = rows.batch.str(Col::UserId);
        for i in 0..rows.len() {
            let value = match &values {
                Some(v) if rows.set[i] != 0 => v[i],
                _ => NONE,
            };
            let mark = match &impact {
                Some((r, windows, affected)) => {
                    let t = ts[i];
                    let in_windows = windows
                        .iter()
                        .enumerate()
                        .fold(0u8, |bits, (w, win)| bits | (win.contains(t) as u8) << w);
                    let before_flip = t >= r.baseline.end && t < r.flip_at;
                    if in_windows != 0 || before_flip {
                        Packed::request(in_windows, affected[i], before_flip, r.minute(t))
                    } else {
                        Packed::default()
                    }
                }
                None => Packed::default(),
            };
            if value == NONE && mark.0 == 0 {
                continue;
            }
            // Rows come in no order of their users: ask for a later row's slot ahead of its
            // turn, so that the cache misses of a table larger than the cache overlap.
            if let Some(Some(later)) = user_hashes.get(i + AHEAD) {
                state.users.prefetch(*later);
            }
            match user_hashes[i] {
                Some(u) => {
                    state.users.entry(u).0.merge(User { value, mark });
                    if value != NONE && u <= state.captured.upto {
                        let user = user_ids.as_ref().and_then(|c| c.get(i)).unwrap_or("");
                        let shown = || shown(ctx, rows, i);
                        state.captured.add(u, user, value, ts[i], shown);
                    }
                }
                None => state.requests_without_user += (value != NONE) as u64,
            }
        }
    }

    fn merge(&self, state: &mut State, mut other: State) {
        state.requests_without_user += other.requests_without_user;
        // Saturating: a crafted partial may carry any count (honest ones cannot get near).
        state.single_users = state.single_users.saturating_add(other.single_users);
        state.has_users |= other.has_users;
        state.compacted.merge(std::mem::take(&mut other.compacted));
        state.captured.merge(std::mem::take(&mut other.captured));
        // Fold the smaller table into the larger.
        if other.users.len() > state.users.len() {
            std::mem::swap(&mut state.users, &mut other.users);
        }
        state.users.merge_from(other.users, User::merge);
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
        let mut single = 0u64;
        let mut mixed = Vec::new();
        for (u, e) in std::mem::take(&mut state.users) {
            state.compacted.add(&UserMark::from(e.mark));
            match e.value {
                NONE => {}
                // The mark is counted: only the value stays.
                MIXED => mixed.push(u),
                _ => single += 1,
            }
        }
        // Collected first, so that the table is made with room for them all (`KeyTable`'s
        // invariant: they come in slot order).
        let mixed = mixed.into_iter().map(|u| {
            let user = User {
                value: MIXED,
                mark: Packed::default(),
            };
            (u, user)
        });
        state.users = mixed.collect();
        state.single_users = state.single_users.saturating_add(single);
    }
}

impl State {
    /// Users with an audited request (`mixed_versions`' `users_checked`).
    pub(crate) fn users_checked(&self) -> u64 {
        let held = self.users.values().filter(|e| e.value != NONE).count() as u64;
        held.saturating_add(self.single_users)
    }

    pub(crate) fn users_mixed(&self) -> u64 {
        self.users.values().filter(|e| e.is_mixed()).count() as u64
    }

    pub(crate) fn is_mixed(&self, user: u64) -> bool {
        self.users.get(user).is_some_and(User::is_mixed)
    }

    /// The mixed users to show as samples: the smallest hashes, so the choice is deterministic.
    pub(crate) fn sample_targets(&self) -> Vec<u64> {
        let mut mixed: Vec<u64> = self
            .users
            .iter()
            .filter(|(_, e)| e.is_mixed())
            .map(|(u, _)| u)
            .collect();
        mixed.sort_unstable();
        mixed.truncate(SAMPLE_CAP);
        mixed
    }

    /// Whether the first pass kept every audited request of each of `targets` (sorted, not
    /// empty): a user at most `upto` that it holds.
    pub(crate) fn keeps_whole(&self, targets: &[u64]) -> bool {
        targets
            .last()
            .is_some_and(|&last| last <= self.captured.upto)
            && targets.iter().all(|u| self.captured.users.contains_key(u))
    }

    /// The first pass's samples of `targets` (sorted), when it kept them whole
    /// ([`State::keeps_whole`]): per user, its id as written and per value shown its earliest `ts`.
    pub(crate) fn captured(&self, targets: &[u64]) -> Option<Vec<(&str, UserSamples)>> {
        if !self.keeps_whole(targets) {
            return None;
        }
        let users = targets.iter().filter_map(|u| self.captured.users.get(u));
        Some(
            users
                .map(|user| (user.text.as_str(), self.captured.samples(user)))
                .collect(),
        )
    }

    pub(crate) fn requests_without_user(&self) -> u64 {
        self.requests_without_user
    }

    /// Whether the impact section counts users (a rollback whose requests have `user_id`).
    pub(crate) fn has_users(&self) -> bool {
        self.has_users
    }

    /// Users with requests, and with affected requests, in fixed window `w`
    /// ([`super::impact::BASELINE`]...).
    pub(crate) fn in_window(&self, w: usize) -> (u64, u64) {
        let bit = 1u8 << w;
        let (mut all, mut hit) = (0u64, 0u64);
        for e in self.users.values() {
            all += (e.mark.windows() & bit != 0) as u64;
            hit += (e.mark.affected() & bit != 0) as u64;
        }
        let (c_all, c_hit) = self.compacted.windows[w];
        (all.saturating_add(c_all), hit.saturating_add(c_hit))
    }

    /// Users whose last request, and last affected request, between the end of the baseline and
    /// the flip is at or after flip-aligned minute `k` (< 0); `None` when `k` is beyond the
    /// distance a mark holds ([`MAX_DISTANCE`]: counts would be wrong, so none are given).
    pub(crate) fn since(&self, k: i64) -> Option<(u64, u64)> {
        if k <= -MAX_DISTANCE {
            return None;
        }
        // At or after k: at a distance of at most −k.
        let since = |d: u64| d != 0 && d as i64 <= -k;
        let (mut all, mut hit) = (0u64, 0u64);
        for e in self.users.values() {
            all += since(e.mark.last()) as u64;
            hit += since(e.mark.last_affected()) as u64;
        }
        Some((
            all.saturating_add(CompactUsers::since(&self.compacted.last, k)),
            hit.saturating_add(CompactUsers::since(&self.compacted.last_affected, k)),
        ))
    }
}

/// Per value shown, the earliest audited request's `ts`: a captured user's samples.
pub(crate) type UserSamples = Vec<(String, i64)>;

/// Users whose samples [`Captured`] keeps at most.
const CAPTURED_USERS: usize = 1 << 14;

/// The samples of the mixed users, kept in the first pass for the users with the smallest hashes.
///
/// The samples shown are those of the mixed users with the smallest hashes, and which users are
/// mixed is only known once every row was read: so the first pass keeps, for the
/// [`CAPTURED_USERS`] users with the smallest hashes, what the look-up would find of them (their
/// id as written, and per value shown the earliest audited request). When the sampled users are
/// all among them, the look-up of the requests is not needed (it decodes `user_id` again in every
/// unit after the flip: about 3% of the audit's CPU at 10M and 100M requests, net of keeping
/// this; see BENCHMARKS.md); otherwise (mixed users rarer than about one in 2,000) it runs as
/// before. The two give the same samples (tested both ways), so which one ran never shows in a
/// report.
///
/// Invariant: every user whose hash is at most `upto` has all its audited rows folded in. A
/// user is dropped only when the map outgrows its cap, the one with the largest hash, and `upto`
/// then falls below that hash, so no later row of it is kept. What is kept is the same whatever
/// the order of rows and merges (the cap's smallest hashes; `upto` just below the next one), so
/// partials stay byte-identical for any thread count.
#[derive(Serialize, Deserialize)]
pub(crate) struct Captured {
    upto: u64,
    users: BTreeMap<u64, CapturedUser>,
    /// What a sample shows of each row value met (a handful), by value: built once, not per row.
    shown: BTreeMap<u64, String>,
}

impl Default for Captured {
    fn default() -> Captured {
        Captured {
            upto: u64::MAX,
            users: BTreeMap::new(),
            shown: BTreeMap::new(),
        }
    }
}

/// One user's samples, as the look-up of the mixed users' requests finds them.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct CapturedUser {
    /// The user id as written (the smallest spelling seen).
    text: String,
    /// A second hash of `text` (0: not computed yet): rows whose user id has the same hash and
    /// this one too are taken to spell it alike, without reading `text` (a cache miss per row).
    #[serde(skip)]
    check: u64,
    /// Per row value, the earliest audited request's `ts`. A map, not a sorted vector: a user
    /// can have a value per request (a pin mapped to a request field, all requests under one
    /// user id such as `anonymous`), and inserting into the middle of a vector was quadratic
    /// (200K requests of one user: 65% of the audit's CPU in `memmove`). Serialized as the
    /// same sequence of `(value, ts)` pairs in value order, so partials did not change.
    first: BTreeMap<u64, i64>,
}

/// [`CapturedUser::check`]: a hash of a user id other than `hash_str`'s, never 0.
fn second_hash(user: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(user.as_bytes(), 0x5eed).max(1)
}

impl CapturedUser {
    fn merge(&mut self, other: CapturedUser) {
        if other.text < self.text {
            self.text = other.text;
            self.check = 0;
        }
        for (value, ts) in other.first {
            self.seen(value, ts);
        }
    }

    #[inline]
    fn seen(&mut self, value: u64, ts: i64) {
        let first = self.first.entry(value).or_insert(ts);
        *first = (*first).min(ts);
    }
}

impl Captured {
    /// Folds an audited request of user `u` (hash at most `upto`, id `user`) at `ts`, whose value
    /// is `value`; `shown` is what a sample shows of that value.
    #[inline(never)]
    fn add(&mut self, u: u64, user: &str, value: u64, ts: i64, shown: impl FnOnce() -> String) {
        self.shown.entry(value).or_insert_with(shown);
        let check = second_hash(user);
        let entry = self.users.entry(u).or_insert_with(|| CapturedUser {
            text: user.to_string(),
            check,
            first: BTreeMap::new(),
        });
        if entry.check == 0 {
            entry.check = second_hash(&entry.text);
        }
        if check != entry.check && user < entry.text.as_str() {
            entry.text = user.to_string();
            entry.check = check;
        }
        entry.seen(value, ts);
        self.cap();
    }

    fn merge(&mut self, other: Captured) {
        self.upto = self.upto.min(other.upto);
        let upto = self.upto;
        self.users.retain(|&u, _| u <= upto);
        for (u, user) in other.users.into_iter().filter(|&(u, _)| u <= upto) {
            match self.users.entry(u) {
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(user);
                }
                std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(user),
            }
        }
        self.shown.extend(other.shown);
        self.cap();
    }

    /// Drops the users with the largest hashes past the cap, and every later row of theirs.
    fn cap(&mut self) {
        while self.users.len() > CAPTURED_USERS {
            if let Some((u, _)) = self.users.pop_last() {
                self.upto = u.saturating_sub(1);
            }
        }
    }

    /// `user`'s samples: per value shown, the earliest `ts`. Two values can show alike (a pin
    /// missing, and one spelt `∅`), as in the look-up, which groups by what is shown.
    fn samples(&self, user: &CapturedUser) -> UserSamples {
        let mut by_shown: BTreeMap<&str, i64> = BTreeMap::new();
        for (&value, &ts) in &user.first {
            let shown = self.shown.get(&value).map_or("", String::as_str);
            let first = by_shown.entry(shown).or_insert(ts);
            *first = (*first).min(ts);
        }
        by_shown
            .into_iter()
            .map(|(s, ts)| (s.to_string(), ts))
            .collect()
    }
}

/// What the impact section needs of one user: the fixed windows the user had requests in and had
/// affected requests in (bit `w`), and their last minute and last affected minute between the end
/// of the baseline and the flip (`i64::MIN` when none).
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

/// A [`UserMark`] in 8 bytes: bits 0–2 `windows`, 3–5 `affected`, then 29 bits each for `last`
/// and `last_affected` as distances before the flip (minute −d is d; 0 for none). A minute more
/// than [`MAX_DISTANCE`] minutes before the flip (a thousand years: only a hostile incident file
/// has such a window) is kept as `MAX_DISTANCE`, and the report then leaves the incident window's
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

/// The marks of complete key ranges, counted: per fixed window, the users with requests and those
/// with affected requests; and how many users had their last (affected) minute before the flip at
/// each minute, so that the users of a window that starts at any minute can be counted.
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

#[cfg(test)]
mod tests {
    use super::{
        Captured, Packed, State, User, UserMark, CAPTURED_USERS, MAX_DISTANCE, MIXED, NONE,
    };

    /// Rows of more users than the capture keeps: (user hash, user id, value, ts).
    fn capture_rows() -> Vec<(u64, String, u64, i64)> {
        let mut next = crate::stats::xorshift(0x2545_f491_4f6c_dd1d);
        let users: Vec<u64> = (0..CAPTURED_USERS * 3).map(|_| next()).collect();
        (0..CAPTURED_USERS * 12)
            .map(|_| {
                let u = users[(next() % users.len() as u64) as usize];
                (
                    u,
                    format!("u-{u:x}"),
                    1 + next() % 3,
                    (next() % 1_000_000) as i64,
                )
            })
            .collect()
    }

    fn fold(rows: &[(u64, String, u64, i64)]) -> Captured {
        let mut c = Captured::default();
        for (u, user, value, ts) in rows {
            if *u <= c.upto {
                c.add(*u, user, *value, *ts, || format!("value {value}"));
            }
        }
        c
    }

    /// The capture keeps the users with the smallest hashes, each with every one of its rows,
    /// and `upto` just below the next user: the same bytes whatever the order of rows and
    /// merges (partials must not depend on the thread count).
    #[test]
    fn the_capture_keeps_the_smallest_users_whole_in_any_order() {
        let rows = capture_rows();
        let one = fold(&rows);
        let mut users: Vec<u64> = rows.iter().map(|r| r.0).collect();
        users.sort_unstable();
        users.dedup();
        assert!(users.len() > CAPTURED_USERS);
        assert_eq!(one.upto, users[CAPTURED_USERS] - 1);
        assert!(one
            .users
            .keys()
            .copied()
            .eq(users[..CAPTURED_USERS].iter().copied()));
        let mut first: std::collections::BTreeMap<(u64, u64), i64> = Default::default();
        for (u, _, value, ts) in &rows {
            let f = first.entry((*u, *value)).or_insert(*ts);
            *f = (*f).min(*ts);
        }
        for (u, kept) in &one.users {
            let want: std::collections::BTreeMap<u64, i64> = first
                .range((*u, 0)..=(*u, u64::MAX))
                .map(|(&(_, v), &ts)| (v, ts))
                .collect();
            assert_eq!(kept.first, want);
            assert_eq!(kept.text, format!("u-{u:x}"));
        }
        let bytes = |c: &Captured| postcard::to_allocvec(c).unwrap();
        // Three workers taking every third row, merged in two orders; and reversed rows.
        let part = |k: usize| {
            let mine: Vec<_> = rows.iter().skip(k).step_by(3).cloned().collect();
            fold(&mine)
        };
        let mut a = part(0);
        a.merge(part(1));
        a.merge(part(2));
        let mut b = part(2);
        let mut c = part(1);
        c.merge(part(0));
        b.merge(c);
        let reversed: Vec<_> = rows.iter().rev().cloned().collect();
        for other in [a, b, fold(&reversed)] {
            assert!(bytes(&other) == bytes(&one));
        }
    }

    /// Samples come from the capture only when every sampled user is at most `upto`.
    #[test]
    fn captured_samples_need_every_target_kept_whole() {
        let rows = capture_rows();
        let mut state = State {
            captured: fold(&rows),
            ..State::default()
        };
        let kept: Vec<u64> = state.captured.users.keys().copied().take(3).collect();
        let samples = state.captured(&kept).expect("kept whole");
        assert_eq!(samples.len(), 3);
        assert!(samples[0]
            .1
            .iter()
            .all(|(shown, _)| shown.starts_with("value ")));
        let beyond = state.captured.upto + 1;
        assert!(state.captured(&[kept[0], beyond]).is_none());
        assert!(state.captured(&[]).is_none());
        // A user at most `upto` but absent (no audited request) is not a sample.
        state.captured.users.remove(&kept[1]);
        assert!(state.captured(&kept).is_none());
    }

    /// Packed marks of requests merge as plain `UserMark`s would, and serialize as them.
    #[test]
    fn packed_marks_are_user_marks() {
        let mut next = crate::stats::xorshift(0x9e37_79b9_7f4a_7c15);
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

    /// A user's value: none is no value, one value stays, a second one makes the user mixed, and
    /// mixed stays mixed — in any order of merging.
    #[test]
    fn values_merge_to_one_or_mixed() {
        let user = |value| User {
            value,
            mark: Packed::default(),
        };
        let cases = [
            (&[NONE, NONE][..], NONE),
            (&[NONE, 7, NONE], 7),
            (&[7, 7, 7], 7),
            (&[7, NONE, 8], MIXED),
            (&[MIXED, 7], MIXED),
            (&[7, 8, 7], MIXED),
        ];
        for (values, want) in cases {
            for rotate in 0..values.len() {
                let mut order = values.to_vec();
                order.rotate_left(rotate);
                let mut e = user(NONE);
                for v in order {
                    e.merge(user(v));
                }
                assert_eq!(e.value, want, "{values:?}");
            }
        }
    }
}
