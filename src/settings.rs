//! CLI arguments → validated settings. Library code never sees clap types.

use std::path::PathBuf;

use rollproof::{Format as OutputFormat, InputOverrides};

use crate::cli::{AuditArgs, Cli, Command, Format};

#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub incident: PathBuf,
    pub format: OutputFormat,
    pub output: Option<PathBuf>,
    pub json: Option<PathBuf>,
    pub html: Option<PathBuf>,
    pub markdown: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    /// GitHub Actions annotations and step summary.
    pub github: bool,
    /// `$GITHUB_STEP_SUMMARY`, when GitHub output is on and it is set.
    pub step_summary: Option<PathBuf>,
    pub inputs: InputOverrides,
    pub threads: usize,
    pub progress: bool,
    /// Read every object in a store whole to hash it.
    pub hash_inputs: bool,
}

#[derive(Debug, Clone)]
pub enum Settings {
    Audit(AuditSettings),
    Explain(Option<String>),
    Completions(clap_complete::Shell),
    Man,
}

/// A usage error: exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl Settings {
    pub fn from_cli(cli: Cli) -> Result<Settings, UsageError> {
        match cli.command {
            Command::Explain { check } => Ok(Settings::Explain(check)),
            Command::Completions { shell } => Ok(Settings::Completions(shell)),
            Command::Man => Ok(Settings::Man),
            Command::Audit(args) => Ok(Settings::Audit(audit(args)?)),
        }
    }
}

fn audit(args: AuditArgs) -> Result<AuditSettings, UsageError> {
    let threads = match args.threads {
        Some(0) => return Err(UsageError("`--threads` must be at least 1".to_string())),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let github = args.github || std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    Ok(AuditSettings {
        incident: args.incident,
        format: match args.format {
            Format::Text => OutputFormat::Text,
            Format::Json => OutputFormat::Json,
            Format::Markdown => OutputFormat::Markdown,
            Format::Junit => OutputFormat::Junit,
            Format::Html => OutputFormat::Html,
        },
        output: args.output,
        json: args.json,
        html: args.html,
        markdown: args.markdown,
        junit: args.junit,
        github,
        step_summary: if github {
            std::env::var_os("GITHUB_STEP_SUMMARY")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        } else {
            None
        },
        inputs: InputOverrides {
            requests: args.requests,
            receipts: args.receipts,
            mapping: args.mapping,
        },
        threads,
        progress: !args.quiet,
        hash_inputs: args.hash_inputs,
    })
}
