//! The command line, as clap sees it. Nothing outside `settings` reads these types.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "rollproof",
    version,
    about = "Audit a rollback (or gate a canary) from request logs and side-effect receipts, with evidence"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Audit an incident: run every check, print the verdict, exit 0 (pass/warn), 1 (fail), 2 (input error) or 3 (inconclusive)
    Audit(AuditArgs),
    /// Print a check's documentation (what it checks, why it matters, what fails it, columns it needs)
    Explain {
        /// Check id, e.g. `pins`; without it, list every check
        check: Option<String>,
    },
    /// Print a shell completion script (e.g. `rollproof completions bash > /etc/bash_completion.d/rollproof`)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `rollproof man > rollproof.1`
    Man,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
    Junit,
    Html,
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// The incident file (TOML)
    pub incident: PathBuf,
    /// What goes to stdout
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the `--format` output to FILE instead of stdout
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also write the JSON report to FILE
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write the HTML postmortem (self-contained, no script) to FILE
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also write the Markdown summary (for a PR comment) to FILE
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Also write JUnit XML (one test case per check) to FILE
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Print GitHub Actions annotations and append to $GITHUB_STEP_SUMMARY (on by default when GITHUB_ACTIONS=true)
    #[arg(long)]
    pub github: bool,
    /// Request logs (globs allowed), replacing [inputs] requests; relative to the current folder
    #[arg(long, value_name = "PATH")]
    pub requests: Vec<String>,
    /// Side-effect receipts (globs allowed), replacing [inputs] receipts
    #[arg(long, value_name = "PATH")]
    pub receipts: Vec<String>,
    /// Mapping file, replacing [inputs] mapping
    #[arg(long, value_name = "FILE")]
    pub mapping: Option<PathBuf>,
    /// Worker threads (default: all cores); the output is identical for any value
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// No progress on stderr
    #[arg(long, short)]
    pub quiet: bool,
    /// Read every input in object storage whole to record its SHA-256 (Parquet objects are
    /// otherwise read with ranged requests, and their sha256 is null)
    #[arg(long)]
    pub hash_inputs: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }
}
