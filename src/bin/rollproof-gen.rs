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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Fixtures { out } => rollproof::generate::write_fixtures(&out),
    }
}
