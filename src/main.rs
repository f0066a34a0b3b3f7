//! The `rollproof` binary: parse, run, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;
use rollproof::cli::Cli;
use rollproof::error::InputError;
use rollproof::settings::{Settings, UsageError};
use rollproof::ExitStatus;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = Settings::from_cli(cli)
        .map_err(anyhow::Error::from)
        .and_then(rollproof::run);
    match result {
        Ok(status) => status.into(),
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
            ExitStatus::Error.into()
        }
    }
}
