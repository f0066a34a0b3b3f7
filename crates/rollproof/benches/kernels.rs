//! Kernel benchmarks (divan): each kernel's fold (init → update per batch → settle) over 200k
//! generated requests and their receipts, decoded once through the real ingest.
//!
//!   cargo bench -p rollproof --features bench --bench kernels

use std::sync::LazyLock;

use rollproof::bench::{load, Loaded};
use rollproof_gen::bench::{write_bench, BenchSpec};

static DATA: LazyLock<Loaded> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join("rollproof-kernel-bench");
    if !dir.join("incident.toml").exists() {
        write_bench(&BenchSpec::new(200_000), &dir).unwrap();
    }
    load(&dir.join("incident.toml"))
});

/// The kernels of a rollback audit, in the registry's order (`main` checks that none is missing).
const KERNELS: &[&str] = &[
    "rows",
    "series",
    "impact",
    "users",
    "pins",
    "cache",
    "effects",
    "errors",
    "receipt_requests",
    "request_ids",
    "flags",
    "backpressure",
    "latency",
    "quality",
    "live_pins",
];

fn main() {
    // The same set; the order is the registry's where it can be, but a reordering of the
    // registry (the users kernel moved ahead of pins) need not break the benchmark.
    let mut registered = DATA.kernel_names();
    registered.sort_unstable();
    let mut listed = KERNELS.to_vec();
    listed.sort_unstable();
    assert_eq!(registered, listed, "benches/kernels.rs lists every kernel");
    divan::main();
}

#[divan::bench]
fn row_classification(bencher: divan::Bencher) {
    bencher.bench(|| DATA.classify());
}

/// Every interval of an audit's finish (fixed and sequential), from histograms of 5M values per
/// window: what `[statistics]` adds to a 10M-request audit besides one sum of squares per
/// coverage value.
#[divan::bench]
fn intervals_of_a_10m_audit(bencher: divan::Bencher) {
    static INPUTS: LazyLock<rollproof::bench::IntervalInputs> =
        LazyLock::new(|| rollproof::bench::interval_inputs(5_000_000));
    LazyLock::force(&INPUTS);
    bencher.bench(|| rollproof::bench::compute_intervals(&INPUTS));
}

#[divan::bench(args = KERNELS)]
fn kernel(bencher: divan::Bencher, name: &str) {
    bencher.bench(|| DATA.run_kernel(name));
}
