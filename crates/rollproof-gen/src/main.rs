//! `rollproof-gen`: writes the committed fixtures and large benchmark data, deterministically.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rollproof-gen",
    about = "Deterministic, seeded incident generator for rollproof's fixtures and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write every committed fixture (incident, logs, expected figures)
    Fixtures {
        #[arg(long, default_value = "fixtures")]
        out: PathBuf,
    },
    /// Write benchmark data: requests.parquet (~1M-row row groups, zstd), receipts.parquet, incident.toml
    Bench {
        /// Number of requests (e.g. 1000000, 10000000, 100000000)
        #[arg(long)]
        requests: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Share of requests that execute a side effect (0.1: ~0.8M receipts for 10M
        /// requests; 0.5: ~4M, the receipts-heavy benchmark)
        #[arg(long, default_value_t = 0.1)]
        receipt_share: f64,
        /// Users to draw each request's user from (default: one per 20 requests, 100 to 5M).
        /// Ten times the requests makes ~95% of user ids distinct, as session ids are
        #[arg(long)]
        users: Option<u64>,
    },
    /// Write a bench folder's requests again as OTLP/JSON spans (spans.jsonl.zst, with
    /// incident-otlp.toml and mapping-otlp.toml), for the OpenTelemetry benchmark
    Otlp {
        /// A folder written by `rollproof-gen bench`
        dir: PathBuf,
    },
    /// Write the fuzz targets' binary seeds (Parquet, Arrow IPC, OTLP with a mapping)
    Seeds {
        #[arg(default_value = "fuzz/seeds")]
        out: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Fixtures { out } => rollproof_gen::write_fixtures(&out),
        Command::Bench {
            requests,
            out,
            seed,
            receipt_share,
            users,
        } => {
            let mut spec = rollproof_gen::bench::BenchSpec::new(requests);
            spec.seed = seed;
            spec.receipt_share = receipt_share;
            if let Some(users) = users {
                anyhow::ensure!(users > 0, "--users must be at least 1");
                spec.users = users;
            }
            rollproof_gen::bench::write_bench(&spec, &out)
        }
        Command::Otlp { dir } => rollproof_gen::otlp::write_otlp(&dir),
        Command::Seeds { out } => rollproof_gen::seeds::write_seeds(&out),
    }
}
