//! Targeted look-ups for samples: a second, cheap pass that collects the rows of a few keys (the
//! mixed users, the duplicated idempotency keys, the orphan request ids) chosen from settled
//! states. One generic kernel; each look-up says how to pick its targets and what to keep of a
//! matching row.
//!
//! What is kept is bounded and deterministic: per key and group, the smallest items by their
//! order, whatever the order rows arrive in.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Kernel, Rows, Stage, States};
use crate::columns::{Col, Table};
use crate::ingest::KeyTest;
use crate::plan::Ctx;
use crate::stats::{Samples, Targets};

/// Called for every row of a target: (key, key as written, group, item).
pub(crate) type Found<'a, L> =
    dyn FnMut(<L as LookupSpec>::Key, &str, <L as LookupSpec>::Group, <L as LookupSpec>::Item) + 'a;

/// What a look-up finds: per key its text and, per group, the smallest items.
pub(crate) trait LookupSpec: Sync + 'static {
    type Key: Ord + Copy + Send + Sync + Serialize + DeserializeOwned + 'static;
    type Group: Ord + Clone + Send + Sync + Serialize + DeserializeOwned + 'static;
    type Item: Ord + Clone + Send + Sync + Serialize + DeserializeOwned + 'static;
    const NAME: &'static str;
    const TABLE: Table;
    /// Items kept per key and group.
    const ITEMS: usize;
    /// [`crate::engine::Kernel::AUDITED_ONLY`]: `scan` finds nothing in rows not audited.
    const AUDITED_ONLY: bool = false;
    /// The column `scan` finds rows by, when it finds none whose value there fails
    /// [`LookupSpec::is_target`]: the pass then reads the other columns only for rows that pass.
    const KEY: Option<Col> = None;

    /// Whether `key` (a value of [`LookupSpec::KEY`]) hashes, as `scan` hashes it, to a target.
    fn is_target(_key: &str, _targets: &Targets<Self::Key>) -> bool {
        true
    }

    fn columns(&self, ctx: &Ctx) -> Vec<Col>;
    /// The keys to look for, from the settled states of the earlier stages.
    fn targets(&self, ctx: &Ctx, prior: &States) -> Vec<Self::Key>;
    /// Scans a batch and calls `found(key, key text, group, item)` for every row of a target.
    fn scan(
        &self,
        ctx: &Ctx,
        rows: &Rows<'_>,
        targets: &Targets<Self::Key>,
        found: &mut Found<'_, Self>,
    );
}

/// The rows found for one key.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct KeyRows<L: LookupSpec> {
    /// The key as written in the data (the first spelling seen).
    pub(crate) text: String,
    pub(crate) groups: BTreeMap<L::Group, Samples<L::Item>>,
}

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct LookupState<L: LookupSpec> {
    targets: Targets<L::Key>,
    pub(crate) found: BTreeMap<L::Key, KeyRows<L>>,
}

impl<L: LookupSpec> LookupState<L> {
    fn add(&mut self, key: L::Key, text: &str, group: L::Group, item: L::Item) {
        let found = self.found.entry(key).or_insert_with(|| KeyRows {
            text: text.to_string(),
            groups: BTreeMap::new(),
        });
        if text < found.text.as_str() {
            found.text = text.to_string();
        }
        found
            .groups
            .entry(group)
            .or_insert_with(|| Samples::new(L::ITEMS))
            .push(item);
    }
}

/// The kernel of look-up `L`.
pub(crate) struct Lookup<L>(pub(crate) L);

impl<L: LookupSpec> Kernel for Lookup<L> {
    type State = LookupState<L>;
    const NAME: &'static str = L::NAME;
    const TABLE: Table = L::TABLE;
    const STAGE: Stage = Stage::Samples;
    const AUDITED_ONLY: bool = L::AUDITED_ONLY;

    fn columns(&self, ctx: &Ctx) -> Vec<Col> {
        self.0.columns(ctx)
    }

    fn init(&self, ctx: &Ctx, prior: &States) -> LookupState<L> {
        LookupState {
            targets: Targets::new(self.0.targets(ctx, prior)),
            found: BTreeMap::new(),
        }
    }

    fn update(&self, ctx: &Ctx, state: &mut LookupState<L>, rows: &Rows<'_>) {
        if state.targets.is_empty() {
            return;
        }
        let mut found = Vec::new();
        self.0
            .scan(ctx, rows, &state.targets, &mut |key, text, group, item| {
                found.push((key, text.to_string(), group, item))
            });
        for (key, text, group, item) in found {
            state.add(key, &text, group, item);
        }
    }

    fn merge(&self, state: &mut LookupState<L>, other: LookupState<L>) {
        for (key, found) in other.found {
            for (group, items) in found.groups {
                for item in items.into_vec() {
                    state.add(key, &found.text, group.clone(), item);
                }
            }
        }
    }

    fn is_idle(&self, state: &LookupState<L>) -> bool {
        state.targets.is_empty()
    }

    fn key_test(&self, state: &LookupState<L>) -> Option<(Col, KeyTest)> {
        let targets = state.targets.clone();
        Some((L::KEY?, Arc::new(move |key| L::is_target(key, &targets))))
    }
}
