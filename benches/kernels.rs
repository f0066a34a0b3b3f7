//! Kernel benchmarks (divan): each check's per-batch update, and the finish steps that matter,
//! over 200k generated requests (and their receipts) read through the real ingest.
//!
//!   cargo bench --bench kernels

use std::sync::LazyLock;

use rollproof::checks::{
    cache_rotation, duplicate_effects, error_recovery, latency, mixed_versions, pins, quality, Ctx,
    RowClasses,
};
use rollproof::columns::{CanonBatch, Col, Table};
use rollproof::generate::bench::{write_bench, BenchSpec};
use rollproof::incident::Incident;
use rollproof::ingest::{plan, Mapping};
use rollproof::stats::Quantiles;

struct Data {
    ctx: Ctx,
    requests: Vec<CanonBatch>,
    receipts: Vec<CanonBatch>,
}

fn read(
    table: Table,
    path: std::path::PathBuf,
) -> (Vec<CanonBatch>, std::collections::BTreeSet<Col>) {
    let mut problems = Vec::new();
    let p = plan(
        table,
        vec![(path, String::new())],
        &Mapping::default(),
        &mut problems,
    );
    assert!(problems.is_empty());
    let wanted: Vec<Col> = Col::of_table(table).collect();
    let mut batches = Vec::new();
    for unit in p.units() {
        p.read_unit(unit, &wanted, |b| batches.push(b.clone()))
            .unwrap();
    }
    (batches, p.present.clone())
}

static DATA: LazyLock<Data> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join("rollproof-kernel-bench");
    if !dir.join("incident.toml").exists() {
        write_bench(&BenchSpec::new(200_000), &dir).unwrap();
    }
    let incident = Incident::load(&dir.join("incident.toml")).unwrap();
    let (requests, present) = read(Table::Requests, dir.join("requests.parquet"));
    let (receipts, receipts_present) = read(Table::Receipts, dir.join("receipts.parquet"));
    Data {
        ctx: Ctx::new(&incident, present, Some(receipts_present)),
        requests,
        receipts,
    }
});

fn classes() -> Vec<RowClasses> {
    DATA.requests
        .iter()
        .map(|b| RowClasses::classify(&DATA.ctx, b))
        .collect()
}

fn main() {
    LazyLock::force(&DATA);
    divan::main();
}

#[divan::bench]
fn row_classification(bencher: divan::Bencher) {
    bencher.bench(classes);
}

#[divan::bench]
fn pin_comparison(bencher: divan::Bencher) {
    let rows = classes();
    bencher.bench(|| {
        let mut p = pins::Partial::new(&DATA.ctx);
        for (b, r) in DATA.requests.iter().zip(&rows) {
            p.update(&DATA.ctx, b, r);
        }
        p
    });
}

#[divan::bench]
fn namespace_check(bencher: divan::Bencher) {
    let rows = classes();
    bencher.bench(|| {
        let mut p = cache_rotation::Partial::new();
        for (b, r) in DATA.requests.iter().zip(&rows) {
            p.update(&DATA.ctx, b, r);
        }
        p
    });
}

#[divan::bench]
fn users_distinct_tuples(bencher: divan::Bencher) {
    let rows = classes();
    bencher.bench(|| {
        let mut p = mixed_versions::Partial::default();
        for (b, r) in DATA.requests.iter().zip(&rows) {
            p.update(&DATA.ctx, b, r);
        }
        p
    });
}

#[divan::bench]
fn minute_series(bencher: divan::Bencher) {
    let rows = classes();
    bencher.bench(|| {
        let mut p = error_recovery::Partial::default();
        for (b, r) in DATA.requests.iter().zip(&rows) {
            p.update(&DATA.ctx, b, r);
        }
        p
    });
}

#[divan::bench]
fn latency_histograms(bencher: divan::Bencher) {
    let rows = classes();
    bencher.bench(|| {
        let mut p = latency::Partial::new();
        for (b, r) in DATA.requests.iter().zip(&rows) {
            p.update(&DATA.ctx, b, r);
        }
        p
    });
}

#[divan::bench]
fn quality_histograms_and_sums(bencher: divan::Bencher) {
    let rows = classes();
    bencher.bench(|| {
        let mut p = quality::Partial::new();
        for (b, r) in DATA.requests.iter().zip(&rows) {
            p.update(&DATA.ctx, b, r);
        }
        p
    });
}

#[divan::bench]
fn hdr_record_200k(bencher: divan::Bencher) {
    bencher.bench(|| {
        let mut q = Quantiles::latency_ms();
        for i in 0..200_000u32 {
            q.record(80.0 + (i % 2000) as f64 * 0.1);
        }
        q.quantile(950)
    });
}

#[divan::bench]
fn duplicate_detection(bencher: divan::Bencher) {
    bencher.bench(|| {
        let mut p = duplicate_effects::Partial::default();
        for b in &DATA.receipts {
            p.update(&DATA.ctx, b);
        }
        p.summarize(&DATA.ctx)
    });
}
