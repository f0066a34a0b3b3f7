//! The shape every check's computation has: a [`Kernel`] keeps a partial state that is updated per
//! batch, merged across batches, threads and machines, settled once, and read by the checks.
//!
//! ```text
//! init(ctx, prior) → update(rows)* → merge* → [encode → decode] → settle(ctx, prior) → checks read it
//! ```
//!
//! Kernels run in stages: the receipts first (the request pass joins on the request ids they
//! name), then the requests, then the targeted sample look-ups, whose targets come from the settled
//! states of the earlier stages (`prior`). All kernels of one table and stage are fused into one
//! pass over the data ([`pass`]). [`AnyKernel`] erases the state type so that the engine can hold,
//! merge, serialize and hand out every kernel's state without knowing it.

pub(crate) mod lookup;
pub(crate) mod pass;
#[cfg(test)]
mod tests;

use std::any::{Any, TypeId};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::columns::{CanonBatch, Col, Table};
use crate::ingest::KeyTest;
use crate::plan::{Ctx, Plan, Rollback};

/// When a kernel runs. Stages run in this order; the passes of one stage run side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Stage {
    /// The receipts: their request ids feed the request pass's join.
    Receipts,
    /// The requests.
    Requests,
    /// Targeted look-ups for samples, over either table, after every other state is settled.
    Samples,
}

impl Stage {
    pub(crate) const ALL: [Stage; 3] = [Stage::Receipts, Stage::Requests, Stage::Samples];
}

/// A mergeable computation over the rows of one table.
///
/// Invariants (tested by property tests): `merge` is commutative and associative up to the
/// figures the checks read, and `decode(encode(state))` gives a state that merges and settles to
/// the same figures. Hence a report does not depend on threads, on the order of units or rows, or
/// on how the inputs were split across machines.
pub(crate) trait Kernel: Sync + 'static {
    type State: Send + Sync + Serialize + DeserializeOwned + 'static;
    /// Unique, stable: names the kernel's section in a partial-state file.
    const NAME: &'static str;
    const TABLE: Table;
    const STAGE: Stage;
    /// Whether the state grows with a key and implements [`Kernel::take_range`].
    const KEYED: bool = false;
    /// Whether `update` finds nothing in rows that are not audited ([`Rows::set`] 0): a pass
    /// whose kernels all say so skips the units whose `ts` range, as an earlier pass read them,
    /// misses [`crate::plan::Plan::audited_span`].
    const AUDITED_ONLY: bool = false;

    /// The canonical columns `update` reads (absent ones are simply not read).
    fn columns(&self, ctx: &Ctx) -> Vec<Col>;
    /// A fresh state; `prior` holds the settled states of the earlier stages.
    fn init(&self, ctx: &Ctx, prior: &States) -> Self::State;
    fn update(&self, ctx: &Ctx, state: &mut Self::State, rows: &Rows<'_>);
    /// Applies what `update` put aside (a kernel may hold rows' contributions back to apply
    /// many at once, in an order that is cheaper than the rows'). Idempotent. The pass calls it
    /// after a worker's last update, to free the buffers early; the type-erased layer
    /// ([`AnyKernel`]) calls it again before every other method that reads a state whole
    /// (merge, settle, encode, the key-range methods), so a kernel's own methods may assume
    /// nothing is pending.
    fn flush(&self, _state: &mut Self::State) {}
    fn merge(&self, state: &mut Self::State, other: Self::State);
    /// Once, after the last merge: sort, summarise, join with earlier stages.
    fn settle(&self, _ctx: &Ctx, _state: &mut Self::State, _prior: &States) {}
    /// Whether the state wants no rows at all (a look-up without targets): a pass whose kernels
    /// are all idle is not run.
    fn is_idle(&self, _state: &Self::State) -> bool {
        false
    }
    /// A column and a test of its values that every row `update` can learn from passes (a
    /// look-up's key: is its hash a target?). A pass whose kernels all have one reads the other
    /// columns only for the rows where some test passes ([`crate::ingest::RowFilter`]).
    fn key_test(&self, _state: &Self::State) -> Option<(Col, KeyTest)> {
        None
    }
    /// Whether a state decoded from a partial-state file is one this kernel could have built for
    /// `ctx` (indices in range, sets that exist): a damaged or crafted partial is refused instead
    /// of indexing past an array when the checks finish.
    fn is_consistent(&self, _ctx: &Ctx, _state: &Self::State) -> bool {
        true
    }
    /// Puts a state whose layout depends on the order units were folded in (runs appended as
    /// workers finish) in one canonical order, so that its encoding is the same whatever the
    /// threads did. Called before encoding into a partial.
    fn canonicalize(&self, _state: &mut Self::State) {}

    // Key ranges. A state that grows with a key (users, idempotency keys, request ids) can be
    // split by key hash ([`range_of`]) and finished one range at a time, so that no machine
    // holds every key at once. Invariant (tested): for any number of ranges, settling each
    // range's merged state, compacting it and merging the compacted ranges with the rest gives
    // the figures of the unsplit state.

    /// Moves the entries of key range `range` of `ranges` out of `state` into a state of their
    /// own, which holds nothing else but what finishing them needs (names, say). `None` for a
    /// kernel that is not [`Kernel::KEYED`].
    fn take_range(
        &self,
        _state: &mut Self::State,
        _range: usize,
        _ranges: usize,
    ) -> Option<Self::State> {
        None
    }
    /// Moves every entry out of `state` into one state per key range, in one pass (what
    /// [`Kernel::take_range`] does for each range in turn).
    fn split_ranges(&self, state: &mut Self::State, ranges: usize) -> Option<Vec<Self::State>> {
        (0..ranges)
            .map(|r| self.take_range(state, r, ranges))
            .collect()
    }
    /// Called on a settled state that holds every entry of its key range from every unit (and
    /// nothing else): reduces the entries to the small figures the checks read (counts, samples,
    /// the violating keys), which merge across ranges without the keys.
    fn compact(&self, _ctx: &Ctx, _state: &mut Self::State) {}
}

/// Finishes the keyed kernels one key range at a time, so that only one range's keys are held
/// at once: for each range, `range_state(kernel, range)` gives the merged state of the range's
/// entries from every unit; the kernels settle it in stage order (a kernel reads the same range
/// of the kernels before it, as the request ids join the receipts'), compact it, and the
/// compacted ranges merge. Returns one state per kernel of `keyed` (given in stage order), to
/// merge into the rest of that kernel's state before it settles.
pub(crate) fn finish_ranges<E>(
    ctx: &Ctx,
    keyed: &[&dyn AnyKernel],
    ranges: usize,
    mut range_state: impl FnMut(&dyn AnyKernel, usize) -> Result<Box<dyn Any + Send + Sync>, E>,
) -> Result<Vec<Box<dyn Any + Send + Sync>>, E> {
    debug_assert!(keyed.windows(2).all(|w| w[0].stage() <= w[1].stage()));
    let mut done: Vec<Box<dyn Any + Send + Sync>> = keyed
        .iter()
        .map(|k| k.init(ctx, &States::default()))
        .collect();
    for range in 0..ranges {
        let mut prior = States::default();
        for k in keyed {
            let mut state = range_state(*k, range)?;
            k.settle(ctx, state.as_mut(), &prior);
            prior.insert(*k, state);
        }
        for ((k, mut state), into) in keyed.iter().zip(prior.into_boxes()).zip(&mut done) {
            k.compact(ctx, state.as_mut());
            k.merge(into.as_mut(), state);
        }
    }
    Ok(done)
}

/// The key range of a 64-bit key hash among `ranges` equal ranges: by the high bits of the hash
/// mixed once more (murmur3's bijective `fmix64`). Not by the hash's own bits: the hash indexes
/// and maps that hold one range pick their slots by those, and a range that fixed them would
/// pile every key of the range into a fraction of the slots.
#[inline]
pub(crate) fn range_of(hash: u64, ranges: usize) -> usize {
    let mut x = hash;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    ((x as u128 * ranges as u128) >> 64) as usize
}

/// A kernel with its state type erased, so that kernels of every type sit in one registry.
pub(crate) trait AnyKernel: Sync {
    fn name(&self) -> &'static str;
    fn table(&self) -> Table;
    fn stage(&self) -> Stage;
    fn state_type(&self) -> TypeId;
    fn columns(&self, ctx: &Ctx) -> Vec<Col>;
    fn init(&self, ctx: &Ctx, prior: &States) -> Box<dyn Any + Send + Sync>;
    fn update(&self, ctx: &Ctx, state: &mut (dyn Any + Send + Sync), rows: &Rows<'_>);
    fn flush(&self, state: &mut (dyn Any + Send + Sync));
    fn merge(&self, state: &mut (dyn Any + Send + Sync), other: Box<dyn Any + Send + Sync>);
    fn settle(&self, ctx: &Ctx, state: &mut (dyn Any + Send + Sync), prior: &States);
    fn is_idle(&self, state: &(dyn Any + Send + Sync)) -> bool;
    fn key_test(&self, state: &(dyn Any + Send + Sync)) -> Option<(Col, KeyTest)>;
    // Serialized states are what partial-state files carry between machines.
    /// Encodes a state in its canonical order (see [`Kernel::canonicalize`]).
    fn encode(&self, state: &mut (dyn Any + Send + Sync)) -> Vec<u8>;
    /// Decodes a state from a partial, refusing one this kernel could not have built for `ctx`.
    fn decode(&self, ctx: &Ctx, bytes: &[u8]) -> Result<Box<dyn Any + Send + Sync>, String>;
    /// Whether the state grows with a key and splits into key ranges.
    fn keyed(&self) -> bool;
    /// [`Kernel::AUDITED_ONLY`].
    fn audited_only(&self) -> bool;
    fn take_range(
        &self,
        state: &mut (dyn Any + Send + Sync),
        range: usize,
        ranges: usize,
    ) -> Option<Box<dyn Any + Send + Sync>>;
    fn split_ranges(
        &self,
        state: &mut (dyn Any + Send + Sync),
        ranges: usize,
    ) -> Option<Vec<Box<dyn Any + Send + Sync>>>;
    fn compact(&self, ctx: &Ctx, state: &mut (dyn Any + Send + Sync));
}

fn typed<S: 'static>(state: &(dyn Any + Send + Sync)) -> &S {
    state
        .downcast_ref::<S>()
        .expect("the engine hands each kernel its own state")
}

fn typed_mut<S: 'static>(state: &mut (dyn Any + Send + Sync)) -> &mut S {
    state
        .downcast_mut::<S>()
        .expect("the engine hands each kernel its own state")
}

impl<K: Kernel> AnyKernel for K {
    fn name(&self) -> &'static str {
        K::NAME
    }
    fn table(&self) -> Table {
        K::TABLE
    }
    fn stage(&self) -> Stage {
        K::STAGE
    }
    fn state_type(&self) -> TypeId {
        TypeId::of::<K::State>()
    }
    fn columns(&self, ctx: &Ctx) -> Vec<Col> {
        Kernel::columns(self, ctx)
    }
    fn init(&self, ctx: &Ctx, prior: &States) -> Box<dyn Any + Send + Sync> {
        Box::new(Kernel::init(self, ctx, prior))
    }
    fn update(&self, ctx: &Ctx, state: &mut (dyn Any + Send + Sync), rows: &Rows<'_>) {
        Kernel::update(self, ctx, typed_mut::<K::State>(state), rows)
    }
    fn flush(&self, state: &mut (dyn Any + Send + Sync)) {
        Kernel::flush(self, typed_mut::<K::State>(state))
    }
    fn merge(&self, state: &mut (dyn Any + Send + Sync), other: Box<dyn Any + Send + Sync>) {
        let mut other = *other
            .downcast::<K::State>()
            .expect("the engine merges states of one kernel");
        let state = typed_mut::<K::State>(state);
        Kernel::flush(self, state);
        Kernel::flush(self, &mut other);
        Kernel::merge(self, state, other)
    }
    fn settle(&self, ctx: &Ctx, state: &mut (dyn Any + Send + Sync), prior: &States) {
        let state = typed_mut::<K::State>(state);
        Kernel::flush(self, state);
        Kernel::settle(self, ctx, state, prior)
    }
    fn is_idle(&self, state: &(dyn Any + Send + Sync)) -> bool {
        Kernel::is_idle(self, typed::<K::State>(state))
    }
    fn key_test(&self, state: &(dyn Any + Send + Sync)) -> Option<(Col, KeyTest)> {
        Kernel::key_test(self, typed::<K::State>(state))
    }
    fn encode(&self, state: &mut (dyn Any + Send + Sync)) -> Vec<u8> {
        let state = typed_mut::<K::State>(state);
        Kernel::flush(self, state);
        Kernel::canonicalize(self, state);
        postcard::to_allocvec(state).expect("kernel states serialize")
    }
    fn decode(&self, ctx: &Ctx, bytes: &[u8]) -> Result<Box<dyn Any + Send + Sync>, String> {
        let state = postcard::from_bytes::<K::State>(bytes).map_err(|e| e.to_string())?;
        if !Kernel::is_consistent(self, ctx, &state) {
            return Err("values this audit could not have produced".to_string());
        }
        Ok(Box::new(state))
    }
    fn keyed(&self) -> bool {
        K::KEYED
    }
    fn audited_only(&self) -> bool {
        K::AUDITED_ONLY
    }
    fn take_range(
        &self,
        state: &mut (dyn Any + Send + Sync),
        range: usize,
        ranges: usize,
    ) -> Option<Box<dyn Any + Send + Sync>> {
        let state = typed_mut::<K::State>(state);
        Kernel::flush(self, state);
        Kernel::take_range(self, state, range, ranges)
            .map(|s| Box::new(s) as Box<dyn Any + Send + Sync>)
    }
    fn split_ranges(
        &self,
        state: &mut (dyn Any + Send + Sync),
        ranges: usize,
    ) -> Option<Vec<Box<dyn Any + Send + Sync>>> {
        let state = typed_mut::<K::State>(state);
        Kernel::flush(self, state);
        Kernel::split_ranges(self, state, ranges).map(|parts| {
            parts
                .into_iter()
                .map(|s| Box::new(s) as Box<dyn Any + Send + Sync>)
                .collect()
        })
    }
    fn compact(&self, ctx: &Ctx, state: &mut (dyn Any + Send + Sync)) {
        let state = typed_mut::<K::State>(state);
        Kernel::flush(self, state);
        Kernel::compact(self, ctx, state)
    }
}

/// The settled states of the kernels that ran, looked up by their kernel type.
#[derive(Default)]
pub(crate) struct States {
    slots: Vec<(TypeId, Box<dyn Any + Send + Sync>)>,
}

impl States {
    pub(crate) fn insert(&mut self, kernel: &dyn AnyKernel, state: Box<dyn Any + Send + Sync>) {
        debug_assert!(!self.has_type(kernel.state_type()), "one state per kernel");
        self.slots.push((kernel.state_type(), state));
    }

    /// The states in the order they were inserted.
    pub(crate) fn into_boxes(self) -> Vec<Box<dyn Any + Send + Sync>> {
        self.slots.into_iter().map(|(_, s)| s).collect()
    }

    fn has_type(&self, id: TypeId) -> bool {
        self.slots.iter().any(|(t, _)| *t == id)
    }

    /// The state of kernel `K`, when it ran.
    pub(crate) fn try_get<K: Kernel>(&self) -> Option<&K::State> {
        let id = TypeId::of::<K::State>();
        self.slots
            .iter()
            .find(|(t, _)| *t == id)
            .map(|(_, s)| typed::<K::State>(s.as_ref()))
    }

    /// The state of kernel `K`. Every check lists the kernels it reads, and the engine runs them
    /// all, so a missing state is a bug in the registry.
    pub(crate) fn get<K: Kernel>(&self) -> &K::State {
        self.try_get::<K>()
            .unwrap_or_else(|| panic!("kernel `{}` did not run", K::NAME))
    }
}

/// Side of a row in the comparison: baseline, subject (post window / canary arm) or neither.
pub(crate) const SIDE_NONE: u8 = 0;
pub(crate) const SIDE_BASELINE: u8 = 1;
pub(crate) const SIDE_SUBJECT: u8 = 2;

/// The start of [`Rows::pin_tuples`]' fold (FNV-1a's offset basis).
const TUPLE_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// What [`Rows::off_pin`] and [`Rows::pin_tuples`] return, computed together.
struct PinRows {
    off_pin: Vec<bool>,
    tuple: Vec<u64>,
}

/// One batch as the kernels see it: the canonical columns, and for the requests the row classes,
/// computed once per batch for every kernel (the only place where the two modes differ).
pub(crate) struct Rows<'a> {
    pub(crate) batch: &'a CanonBatch,
    /// Requests: 0 not audited; `s + 1` audited against pin set `s`. Empty for receipts.
    pub(crate) set: Vec<u8>,
    /// Requests: `SIDE_*`. Empty for receipts.
    pub(crate) side: Vec<u8>,
    /// Canary: rows in the window whose arm is neither arm.
    pub(crate) other_arm: u64,
    /// The hash of each row's `user_id`, computed once for the kernels that key on users.
    user_hashes: std::cell::OnceCell<Option<Vec<Option<u64>>>>,
    /// Rollback: each row's off-pin flag and tuple of expected pins, computed once (in one walk
    /// of the pin columns) for the kernels that need them.
    pins: std::cell::OnceCell<PinRows>,
}

impl<'a> Rows<'a> {
    /// The columns the row classes are computed from (besides `ts`).
    pub(crate) fn columns(ctx: &Ctx, table: Table) -> Vec<Col> {
        match (&ctx.plan, table) {
            (Plan::Canary(_), Table::Requests) => vec![Col::Arm],
            // Regions with their own flip need the region of every row.
            (Plan::Rollback(r), Table::Requests) if !r.flip_by_region.is_empty() => {
                vec![Col::Region]
            }
            _ => Vec::new(),
        }
    }

    pub(crate) fn new(ctx: &Ctx, table: Table, batch: &'a CanonBatch) -> Rows<'a> {
        if table == Table::Receipts {
            return Rows {
                batch,
                set: Vec::new(),
                side: Vec::new(),
                other_arm: 0,
                user_hashes: Default::default(),
                pins: Default::default(),
            };
        }
        let ts = batch.ts();
        match &ctx.plan {
            Plan::Rollback(r) => Rows {
                batch,
                set: match batch
                    .str(Col::Region)
                    .filter(|_| !r.flip_by_region.is_empty())
                {
                    // Post-flip is after the row's own region's flip (one look-up per distinct
                    // region value when the column is dictionary-encoded).
                    Some(region) => {
                        let flips = region.map_rows(|v| r.flip_of(v));
                        ts.iter().zip(flips).map(|(&t, f)| (t >= f) as u8).collect()
                    }
                    None => ts.iter().map(|&t| (t >= r.flip_at) as u8).collect(),
                },
                side: ts
                    .iter()
                    .map(|&t| {
                        if r.baseline.contains(t) {
                            SIDE_BASELINE
                        } else if r.post.contains(t) {
                            SIDE_SUBJECT
                        } else {
                            SIDE_NONE
                        }
                    })
                    .collect(),
                other_arm: 0,
                user_hashes: Default::default(),
                pins: Default::default(),
            },
            Plan::Canary(c) => {
                let arms: Vec<u8> = match batch.str(Col::Arm) {
                    Some(arm) => arm.map_rows(|v| match v {
                        Some(a) if a == c.baseline_arm => 1,
                        Some(a) if a == c.canary_arm => 2,
                        _ => 0,
                    }),
                    None => vec![0; batch.len()],
                };
                let mut other_arm = 0;
                let set: Vec<u8> = arms
                    .iter()
                    .zip(ts)
                    .map(|(&a, &t)| {
                        if !c.in_window(t) {
                            0
                        } else {
                            other_arm += (a == 0) as u64;
                            a
                        }
                    })
                    .collect();
                Rows {
                    batch,
                    side: set.clone(),
                    set,
                    other_arm,
                    user_hashes: Default::default(),
                    pins: Default::default(),
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.batch.len()
    }

    /// `hash_str` of each row's `user_id` (`None` where it is missing); `None` without the column.
    pub(crate) fn user_hashes(&self) -> Option<&[Option<u64>]> {
        self.user_hashes
            .get_or_init(|| {
                let users = self.batch.str(Col::UserId)?;
                Some(users.map_rows(|u| u.map(|u| crate::columns::hash_str(Some(u)))))
            })
            .as_deref()
    }

    /// Per row, whether it carries a value other than the expected one for a pin of the first
    /// expected set of `r` (a missing value is not off-pin: that is the `pins` check's business).
    /// `r` must be the plan these rows were classed for.
    pub(crate) fn off_pin(&self, r: &Rollback) -> &[bool] {
        &self.pin_rows(r).off_pin
    }

    /// Per row, a hash of the values (missing is a value) of the expected pins' columns that the
    /// batch has, in column order: equal tuples hash equal. `r` as for [`Rows::off_pin`].
    pub(crate) fn pin_tuples(&self, r: &Rollback) -> &[u64] {
        &self.pin_rows(r).tuple
    }

    fn pin_rows(&self, r: &Rollback) -> &PinRows {
        self.pins.get_or_init(|| {
            let mut pins: Vec<&(Col, String)> = r.pins[0].pins.iter().collect();
            pins.sort_by_key(|(col, _)| *col);
            pins.dedup_by_key(|(col, _)| *col);
            let mut acc = vec![(TUPLE_SEED, false); self.len()];
            for (col, want) in pins {
                let Some(arr) = self.batch.str(*col) else {
                    continue;
                };
                arr.update_rows(
                    &mut acc,
                    |v| {
                        let off = v.is_some_and(|v| v != want.as_str());
                        (crate::columns::hash_str(v), off)
                    },
                    |(tuple, off), (h, o)| {
                        *tuple = (tuple.rotate_left(23) ^ h).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                        *off |= o;
                    },
                );
            }
            let (tuple, off_pin) = acc.into_iter().unzip();
            PinRows { off_pin, tuple }
        })
    }
}
