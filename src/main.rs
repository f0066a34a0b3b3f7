//! The `rollproof` binary: parse, run, map the result to an exit code.

/// `eprintln!` that never panics: a closed stderr (`2>&-`) or a broken pipe must not turn an
/// exit code into a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!` that never panics.
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

mod cli;
mod init;
mod run;
mod settings;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use rollproof::{ExitStatus, InputError};

use crate::cli::{Cli, Command};
use crate::settings::{Settings, UsageError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // With JSON on stdout, an error is a JSON object too: a pipeline always gets JSON.
    let json_errors = match &cli.command {
        Command::Audit(a) => settings::main_format(a.format, a.output.as_deref()).is_ok_and(|f| {
            f == rollproof::Format::Json && a.output.as_deref().is_none_or(|p| p.as_os_str() == "-")
        }),
        _ => false,
    };
    let result = Settings::from_cli(cli)
        .map_err(anyhow::Error::from)
        .and_then(run::run);
    let status = match result {
        Ok(status) => status,
        Err(err) => {
            if let Some(input) = err.downcast_ref::<InputError>() {
                say!("error: the input cannot be audited as given");
                for problem in &input.problems {
                    say!("  {}", problem.to_string().replace('\n', "\n  "));
                }
            } else if let Some(usage) = err.downcast_ref::<UsageError>() {
                say!("error: {usage}");
            } else {
                say!("error: {err:#}");
            }
            if json_errors {
                print_json_error(&err);
            }
            ExitStatus::Error
        }
    };
    ExitCode::from(status.code())
}

/// `{"schema_version": 1, "exit_code": 2, "error": {"message": …, "problems": […]}}` on stdout.
fn print_json_error(err: &anyhow::Error) {
    let problems: Vec<serde_json::Value> = err
        .downcast_ref::<InputError>()
        .map(|e| {
            e.problems
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "file": p.file.as_ref().map(|f| f.display().to_string()),
                        "column": p.column,
                        "location": p.location,
                        "found": p.found,
                        "expected": p.expected,
                        "hint": (!p.hint.is_empty()).then_some(&p.hint),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let message = match err.downcast_ref::<InputError>() {
        Some(_) => "the input cannot be audited as given".to_string(),
        None => format!("{err:#}"),
    };
    let object = serde_json::json!({
        "schema_version": rollproof::SCHEMA_VERSION,
        "exit_code": ExitStatus::Error.code(),
        "error": {"message": message, "problems": problems},
    });
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "{}",
        serde_json::to_string_pretty(&object).unwrap_or_default()
    );
}
