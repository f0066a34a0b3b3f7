//! rollproof: audit a rollback (or gate a canary) from request logs and side-effect receipts.
//!
//! `run` reads as the pipeline: incident → ingest → checks → verdict → reports. See
//! ARCHITECTURE.md for the code map and the invariants.

pub mod audit;
pub mod checks;
pub mod cli;
pub mod columns;
pub mod error;
pub mod generate;
pub mod incident;
pub mod ingest;
pub mod report;
pub mod settings;
pub mod stats;
pub mod time;

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::Context;

use crate::incident::Incident;
use crate::report::{json::Json, text::Text, Renderer, Report};
use crate::settings::{AuditSettings, OutputFormat, Settings};

/// How the process ends. `From<ExitStatus> for ExitCode` gives the contract's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Verdict pass or warn.
    Success,
    /// Verdict fail: the gate is closed.
    Failed,
    /// Usage, configuration or input error.
    Error,
    /// Verdict inconclusive: too little data.
    Inconclusive,
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> std::process::ExitCode {
        std::process::ExitCode::from(match status {
            ExitStatus::Success => 0,
            ExitStatus::Failed => 1,
            ExitStatus::Error => 2,
            ExitStatus::Inconclusive => 3,
        })
    }
}

pub fn run(settings: Settings) -> anyhow::Result<ExitStatus> {
    match settings {
        Settings::Explain(check) => explain(check.as_deref()),
        Settings::Audit(settings) => audit(&settings),
    }
}

fn explain(check: Option<&str>) -> anyhow::Result<ExitStatus> {
    let mut out = String::new();
    match check {
        Some(id) => match checks::find(id) {
            Some(info) => out.push_str(&info.explain()),
            None => {
                let ids: Vec<&str> = checks::REGISTRY.iter().map(|c| c.id).collect();
                return Err(settings::UsageError(format!(
                    "no check `{id}`; checks are {}",
                    ids.join(", ")
                ))
                .into());
            }
        },
        None => {
            for info in checks::REGISTRY {
                let modes: Vec<&str> = info.modes.iter().map(|m| m.name()).collect();
                out.push_str(&format!(
                    "{:<18} {:<36} ({})\n",
                    info.id,
                    info.title,
                    modes.join(", ")
                ));
            }
            out.push_str("\n`rollproof explain CHECK` prints one check's documentation.\n");
        }
    }
    write_stdout(&out)?;
    Ok(ExitStatus::Success)
}

fn audit(settings: &AuditSettings) -> anyhow::Result<ExitStatus> {
    let incident = Incident::load(&settings.incident)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(settings.threads)
        .build()
        .context("could not start the worker threads")?;
    let show_progress = settings.progress && std::io::stderr().is_terminal();
    let progress = move |table: columns::Table, done: u64, total: u64| {
        if show_progress {
            eprint!("\rreading {}: {done}/{total} units", table.name());
            if done == total {
                eprintln!();
            }
        }
    };
    let report = pool.install(|| audit::execute(&incident, &settings.inputs, &progress))?;
    write_outputs(settings, &report)?;
    Ok(match report.status() {
        checks::Status::Fail => ExitStatus::Failed,
        checks::Status::Inconclusive => ExitStatus::Inconclusive,
        _ => ExitStatus::Success,
    })
}

fn write_outputs(settings: &AuditSettings, report: &Report) -> anyhow::Result<()> {
    let main = match settings.format {
        OutputFormat::Text => Text.render(report),
        OutputFormat::Json => Json.render(report),
    };
    if let Some(path) = &settings.json {
        write_file(path, &Json.render(report))?;
    }
    match &settings.output {
        Some(path) => write_file(path, &main),
        None => write_stdout(&main),
    }
}

fn write_file(path: &Path, content: &str) -> anyhow::Result<()> {
    std::fs::write(path, content).with_context(|| format!("could not write `{}`", path.display()))
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(content: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(content.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("could not write to stdout"),
    }
}
