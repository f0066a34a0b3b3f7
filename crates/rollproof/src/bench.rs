//! What the kernel benchmarks (`benches/kernels.rs`) need and the API does not give: the inputs
//! of an incident decoded into memory once, and one kernel's fold over them. Compiled only with
//! the `bench` feature; not part of the API.

use std::path::Path;

use crate::audit::{self, InputOverrides};
use crate::columns::{CanonBatch, Col, Table};
use crate::engine::{AnyKernel, Rows, Stage, States};
use crate::incident::Incident;
use crate::plan::Ctx;

/// An incident's inputs, decoded.
pub struct Loaded {
    ctx: Ctx,
    requests: Vec<CanonBatch>,
    receipts: Vec<CanonBatch>,
    /// Settled states of the receipt kernels, for the request kernels that join on them.
    prior: States,
    kernels: Vec<&'static dyn AnyKernel>,
}

/// Reads every input of the incident at `path` into memory.
pub fn load(path: &Path) -> Loaded {
    let incident = Incident::load(path).expect("a valid bench incident");
    let (ctx, tables) =
        audit::prepare(&incident, &InputOverrides::default(), true).expect("readable bench inputs");
    let read = |table: Table| {
        let mut batches = Vec::new();
        if let Some(plan) = tables.get(table) {
            let wanted: Vec<Col> = Col::of_table(table).collect();
            for unit in plan.units() {
                plan.read_unit(unit, &wanted, |b| batches.push(b.clone()))
                    .expect("readable bench unit");
            }
        }
        batches
    };
    let kernels = audit::kernels_of(&ctx);
    let mut loaded = Loaded {
        requests: read(Table::Requests),
        receipts: read(Table::Receipts),
        prior: States::default(),
        kernels,
        ctx,
    };
    for kernel in loaded.kernels.clone() {
        if kernel.stage() == Stage::Receipts {
            let state = loaded.fold(kernel, &States::default());
            loaded.prior.insert(kernel, state);
        }
    }
    loaded
}

impl Loaded {
    /// The names of the kernels an audit of this incident runs (look-ups excluded: their
    /// targets depend on the whole run).
    pub fn kernel_names(&self) -> Vec<&'static str> {
        self.kernels
            .iter()
            .filter(|k| k.stage() != Stage::Samples)
            .map(|k| k.name())
            .collect()
    }

    /// Classifies every request batch's rows (the per-batch work every kernel shares).
    pub fn classify(&self) -> usize {
        self.requests
            .iter()
            .map(|b| Rows::new(&self.ctx, Table::Requests, b).set.len())
            .sum()
    }

    /// init → update over every batch → settle, for the kernel called `name`.
    pub fn run_kernel(&self, name: &str) {
        let kernel = *self
            .kernels
            .iter()
            .find(|k| k.name() == name)
            .unwrap_or_else(|| panic!("no kernel `{name}`"));
        drop(self.fold(kernel, &self.prior));
    }

    fn fold(&self, kernel: &dyn AnyKernel, prior: &States) -> Box<dyn std::any::Any + Send + Sync> {
        let batches = match kernel.table() {
            Table::Requests => &self.requests,
            Table::Receipts => &self.receipts,
        };
        let mut state = kernel.init(&self.ctx, prior);
        for batch in batches {
            let rows = Rows::new(&self.ctx, kernel.table(), batch);
            kernel.update(&self.ctx, state.as_mut(), &rows);
        }
        kernel.settle(&self.ctx, state.as_mut(), prior);
        state
    }
}

/// The statistics a 10M-request audit keeps when it finishes: latency and ΔS histograms of two
/// windows of `n` values each, coverage sums and λ counts.
pub struct IntervalInputs {
    latency: [crate::stats::Quantiles; 2],
    delta_s: [crate::stats::Quantiles; 2],
    coverage: [crate::stats::ExactSum; 2],
    flips: [crate::stats::Rate; 2],
}

/// Fills the histograms and sums with `n` deterministic values per window.
pub fn interval_inputs(n: u64) -> IntervalInputs {
    use crate::stats::{ExactSum, Quantiles, Rate};
    let mut x = IntervalInputs {
        latency: [Quantiles::latency_ms(), Quantiles::latency_ms()],
        delta_s: [Quantiles::unit_interval(), Quantiles::unit_interval()],
        coverage: [ExactSum::default(); 2],
        flips: [Rate::default(); 2],
    };
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for side in 0..2 {
        for _ in 0..n {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            x.latency[side].record(50.0 + 400.0 * u * u);
            x.delta_s[side].record(u * 0.6);
            x.coverage[side].add(1.0 - u * 0.4);
            x.flips[side].add(u < 0.05);
        }
    }
    x
}

/// Every interval `latency`, `quality` and `error_rate` report at finish, fixed and sequential.
pub fn compute_intervals(x: &IntervalInputs) -> f64 {
    use crate::stats::intervals::{rate_difference, Level};
    use crate::stats::Ci;
    let mut acc = 0.0;
    for sequential in [false, true] {
        let level = Level::new(0.95, sequential);
        for q in [950, 990] {
            let r = Ci::ratio(
                x.latency[1].interval(q, level.halved()),
                x.latency[0].interval(q, level.halved()),
            );
            acc += r.low.unwrap_or(0.0);
        }
        let d = Ci::difference(
            x.delta_s[1].interval(950, level.halved()),
            x.delta_s[0].interval(950, level.halved()),
        );
        acc += d.low.unwrap_or(0.0);
        for side in 0..2 {
            acc += x.coverage[side].interval(level).low.unwrap_or(0.0);
            acc += x.flips[side].interval(level).low.unwrap_or(0.0);
        }
        let f = &x.flips;
        acc += rate_difference(f[1].hits, f[1].total, f[0].hits, f[0].total, level)
            .low
            .unwrap_or(0.0);
    }
    acc
}

/// The decode floor of an incident: what the audit must decode at least once, and nothing else.
/// Every unit of both tables read through rollproof's own ingest (projection, dictionary
/// columns, canonical batches) on the rayon pool, each table projected to the columns its
/// first pass reads (the row classes' and its kernels', as `engine::pass::columns` chooses
/// them): no kernel, no hashing, no second pass. Returns the rows decoded.
pub fn decode_floor(path: &Path) -> u64 {
    use rayon::prelude::*;
    let incident = Incident::load(path).expect("a valid bench incident");
    let (ctx, tables) =
        audit::prepare(&incident, &InputOverrides::default(), true).expect("readable bench inputs");
    let kernels = audit::kernels_of(&ctx);
    [Table::Requests, Table::Receipts]
        .into_iter()
        .filter_map(|table| tables.get(table).map(|plan| (table, plan)))
        .map(|(table, plan)| {
            let first_pass: Vec<&dyn AnyKernel> = kernels
                .iter()
                .copied()
                .filter(|k| k.table() == table && k.stage() != Stage::Samples)
                .collect();
            let wanted = crate::engine::pass::columns(&ctx, table, &first_pass);
            plan.units()
                .into_par_iter()
                .map(|unit| {
                    let mut rows = 0u64;
                    plan.read_unit(unit, &wanted, |b| rows += b.len() as u64)
                        .expect("readable bench unit");
                    rows
                })
                .sum::<u64>()
        })
        .sum()
}
