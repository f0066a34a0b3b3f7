//! The `rollproof` binary: parse, run, map the result to an exit code.

mod cli;
mod run;
mod settings;

use std::process::ExitCode;

use clap::Parser;
use rollproof::{ExitStatus, InputError};

use crate::cli::Cli;
use crate::settings::{Settings, UsageError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = Settings::from_cli(cli)
        .map_err(anyhow::Error::from)
        .and_then(run::run);
    let status = match result {
        Ok(status) => status,
        Err(err) => {
            if let Some(input) = err.downcast_ref::<InputError>() {
                eprintln!("error: the input cannot be audited as given");
                for problem in &input.problems {
                    eprintln!("  {}", problem.to_string().replace('\n', "\n  "));
                }
            } else if let Some(usage) = err.downcast_ref::<UsageError>() {
                eprintln!("error: {usage}");
            } else {
                eprintln!("error: {err:#}");
            }
            ExitStatus::Error
        }
    };
    ExitCode::from(status.code())
}
