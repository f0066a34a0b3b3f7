//! The kernel invariants, checked on real data: however the rows are split into partial states,
//! in whatever order the partials are merged, and whether or not each partial went through
//! `encode → decode` on the way, every check's result is the same.

use std::any::Any;

use super::{AnyKernel, Rows, Stage, States};
use crate::audit::{kernels_of, prepare, InputOverrides};
use crate::checks::{self, CheckResult, Finish, InputTotals};
use crate::columns::{CanonBatch, Col, Table};
use crate::incident::Incident;
use crate::plan::Ctx;

type State = Box<dyn Any + Send + Sync>;

/// SplitMix64, for reproducible shuffles.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Data {
    ctx: Ctx,
    kernels: Vec<&'static dyn AnyKernel>,
    requests: Vec<CanonBatch>,
    receipts: Vec<CanonBatch>,
}

fn load(fixture: &str) -> Data {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(fixture)
        .join("incident.toml");
    let incident = Incident::load(&path).unwrap();
    let (ctx, tables) = prepare(&incident, &InputOverrides::default(), true).unwrap();
    // Small batches, so that there are many ways to split them.
    let read = |table: Table| {
        let mut out = Vec::new();
        if let Some(plan) = tables.get(table) {
            let wanted: Vec<Col> = Col::of_table(table).collect();
            for unit in plan.units() {
                plan.read_unit(unit, &wanted, |b| {
                    for offset in (0..b.len()).step_by(97) {
                        out.push(b.slice(offset, 97.min(b.len() - offset)));
                    }
                })
                .unwrap();
            }
        }
        out
    };
    Data {
        kernels: kernels_of(&ctx),
        requests: read(Table::Requests),
        receipts: read(Table::Receipts),
        ctx,
    }
}

/// Folds the batches of each stage into `parts` partial states per kernel (batches dealt out in
/// a shuffled order), optionally round-trips each partial through its encoding, merges them in a
/// random order, settles, and finishes every check.
fn run(data: &Data, rng: Option<&mut Rng>, parts: usize, round_trip: bool) -> Vec<CheckResult> {
    let mut rng = rng;
    let mut states = States::default();
    for stage in Stage::ALL {
        for kernel in data.kernels.iter().filter(|k| k.stage() == stage) {
            let batches = match kernel.table() {
                Table::Requests => &data.requests,
                Table::Receipts => &data.receipts,
            };
            let mut order: Vec<usize> = (0..batches.len()).collect();
            if let Some(rng) = rng.as_deref_mut() {
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i + 1));
                }
            }
            let mut partials: Vec<State> = (0..parts)
                .map(|_| kernel.init(&data.ctx, &states))
                .collect();
            for (n, &i) in order.iter().enumerate() {
                let rows = Rows::new(&data.ctx, kernel.table(), &batches[i]);
                kernel.update(&data.ctx, partials[n % parts].as_mut(), &rows);
            }
            if round_trip {
                partials = partials
                    .into_iter()
                    .map(|mut p| {
                        kernel
                            .decode(&data.ctx, &kernel.encode(p.as_mut()))
                            .unwrap()
                    })
                    .collect();
            }
            while partials.len() > 1 {
                let i = rng.as_deref_mut().map_or(0, |r| r.below(partials.len()));
                let other = partials.swap_remove(i);
                let j = rng.as_deref_mut().map_or(0, |r| r.below(partials.len()));
                kernel.merge(partials[j].as_mut(), other);
            }
            let mut state = partials.pop().unwrap();
            kernel.settle(&data.ctx, state.as_mut(), &states);
            states.insert(*kernel, state);
        }
    }
    finish_checks(data, &states)
}

/// Every check of the mode, finished from the settled states.
fn finish_checks(data: &Data, states: &States) -> Vec<CheckResult> {
    let inputs = InputTotals::default();
    let finish = Finish {
        ctx: &data.ctx,
        states,
        inputs: &inputs,
        gold: None,
        captured: None,
    };
    checks::of_mode(data.ctx.plan.mode())
        .map(|c| (c.finish)(&finish))
        .collect()
}

#[test]
fn results_do_not_depend_on_split_merge_order_or_encoding() {
    for fixture in ["demo", "canary-fail"] {
        let data = load(fixture);
        let reference = run(&data, None, 1, false);
        assert!(reference.iter().any(|r| !r.samples.is_empty()));
        for seed in 0..6 {
            let mut rng = Rng(seed);
            let parts = 2 + rng.below(7);
            let round_trip = seed % 2 == 0;
            let got = run(&data, Some(&mut rng), parts, round_trip);
            assert_eq!(
                got, reference,
                "{fixture}: seed {seed}, {parts} parts, round trip {round_trip}"
            );
        }
    }
}

/// Folds every unit into `parts` partials (as `rollproof partial` does: no earlier stage at
/// hand), then finishes the keyed kernels `ranges` key ranges at a time and the rest as a merge
/// does. `ranges == 0`: no key ranges, every state merged whole. `one_pass`: the partials are
/// split into all their ranges at once (as a partial is written) instead of range by range.
fn run_sharded(data: &Data, parts: usize, ranges: usize, one_pass: bool) -> Vec<CheckResult> {
    let mut folded: Vec<&dyn AnyKernel> = data
        .kernels
        .iter()
        .copied()
        .filter(|k| k.stage() != Stage::Samples)
        .collect();
    folded.sort_by_key(|k| k.stage());
    let mut partials: Vec<Vec<State>> = folded
        .iter()
        .map(|kernel| {
            let batches = match kernel.table() {
                Table::Requests => &data.requests,
                Table::Receipts => &data.receipts,
            };
            let mut out: Vec<State> = (0..parts)
                .map(|_| kernel.init(&data.ctx, &States::default()))
                .collect();
            for (n, batch) in batches.iter().enumerate() {
                let rows = Rows::new(&data.ctx, kernel.table(), batch);
                kernel.update(&data.ctx, out[(n * 7) % parts].as_mut(), &rows);
            }
            out
        })
        .collect();
    let keyed: Vec<&dyn AnyKernel> = folded.iter().copied().filter(|k| k.keyed()).collect();
    let mut compacted: Vec<State> = Vec::new();
    if ranges > 0 {
        // With `one_pass`, each partial's pieces, per kernel: pieces[kernel][partial][range].
        let mut pieces: Vec<Vec<Vec<Option<State>>>> = Vec::new();
        if one_pass {
            for (kernel, ps) in folded.iter().zip(&mut partials) {
                pieces.push(
                    ps.iter_mut()
                        .map(|p| match kernel.split_ranges(p.as_mut(), ranges) {
                            Some(split) if kernel.keyed() => split.into_iter().map(Some).collect(),
                            _ => Vec::new(),
                        })
                        .collect(),
                );
            }
        }
        compacted = super::finish_ranges(&data.ctx, &keyed, ranges, |kernel, range| {
            let at = folded
                .iter()
                .position(|k| k.name() == kernel.name())
                .unwrap();
            let mut state = kernel.init(&data.ctx, &States::default());
            for (i, p) in partials[at].iter_mut().enumerate() {
                let part = match pieces.get_mut(at) {
                    Some(split) => split[i][range].take().unwrap(),
                    None => kernel.take_range(p.as_mut(), range, ranges).unwrap(),
                };
                kernel.merge(state.as_mut(), part);
            }
            Ok::<_, ()>(state)
        })
        .unwrap();
    }
    let mut compacted = compacted.into_iter();
    let mut states = States::default();
    for (kernel, parts) in folded.iter().zip(partials) {
        let mut state = kernel.init(&data.ctx, &states);
        for p in parts {
            kernel.merge(state.as_mut(), p);
        }
        if ranges > 0 && kernel.keyed() {
            kernel.merge(state.as_mut(), compacted.next().unwrap());
        }
        kernel.settle(&data.ctx, state.as_mut(), &states);
        states.insert(*kernel, state);
    }
    // The look-ups read every batch against the settled states.
    for kernel in data.kernels.iter().filter(|k| k.stage() == Stage::Samples) {
        let batches = match kernel.table() {
            Table::Requests => &data.requests,
            Table::Receipts => &data.receipts,
        };
        let mut state = kernel.init(&data.ctx, &states);
        for batch in batches {
            let rows = Rows::new(&data.ctx, kernel.table(), batch);
            kernel.update(&data.ctx, state.as_mut(), &rows);
        }
        kernel.settle(&data.ctx, state.as_mut(), &states);
        states.insert(*kernel, state);
    }
    finish_checks(data, &states)
}

#[test]
fn key_ranges_finish_to_the_same_results() {
    let mut with_samples = 0;
    for fixture in [
        "demo",
        "canary-fail",
        "duplicate-effects",
        "freeze-writes",
        "slow-recovery",
    ] {
        let mut data = load(fixture);
        data.ctx.sharded = true;
        let whole = run_sharded(&data, 3, 0, false);
        with_samples += whole.iter().any(|r| !r.samples.is_empty()) as usize;
        for ranges in [1, 2, 7, 16] {
            for one_pass in [false, true] {
                assert_eq!(
                    run_sharded(&data, 3, ranges, one_pass),
                    whole,
                    "{fixture}: {ranges} key ranges, one pass {one_pass}"
                );
            }
        }
    }
    assert!(with_samples >= 3, "the fixtures have samples to compare");
}

#[test]
fn every_kernel_has_a_unique_name() {
    let mut names: Vec<&str> = checks::CHECKS
        .iter()
        .flat_map(|c| c.kernels.iter().map(|k| k.name()))
        .chain(checks::ALWAYS.iter().map(|k| k.name()))
        .collect();
    names.sort();
    names.dedup();
    let mut types: Vec<_> = checks::CHECKS
        .iter()
        .flat_map(|c| c.kernels.iter().map(|k| (k.name(), k.state_type())))
        .collect();
    types.sort_by_key(|(n, _)| *n);
    types.dedup();
    assert_eq!(names.len(), types.len(), "one state type per kernel name");
}
