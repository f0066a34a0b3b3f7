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
