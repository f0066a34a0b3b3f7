//! The command line, as clap sees it. Nothing outside `settings` reads these types.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit codes and where to read more, shown by `--help` and in the man pages.
macro_rules! exit_codes {
    () => {
        "\
Exit codes:
  0  verdict pass or warn (the gate is open)
  1  verdict fail: at least one check failed (with `--fail-on warn`, a warning too)
  2  usage, configuration or input error: the message names the file, column and row
  3  verdict inconclusive: too little data to judge a check — wait and retry

`rollproof explain` lists the checks and `rollproof explain CHECK` documents one. The incident
file, the inputs and mapping, every figure and the JSON report are documented in docs/reference/
of the rollproof sources."
    };
}

/// The incident file in brief, for `audit --help` and its man page.
macro_rules! incident_format {
    () => {
        "\
The incident file (TOML; `rollproof init LOGS -o incident.toml` writes a first one):

  id = \"INC-2041\"
  title = \"prompt pack v7 regression\"
  flip_at = \"2026-11-27T10:15:00Z\"          # the rollback pointer flip
  root_cause_url = \"https://…\"              # optional

  [inputs]                                   # relative to the incident file's folder
  requests = \"requests.parquet\"             # globs, s3://, gs://, az://, https:// allowed
  receipts = \"receipts.parquet\"             # optional
  mapping = \"mapping.toml\"                  # optional: when columns have other names

  [windows]                                  # half-open [start, end)
  baseline = [\"2026-11-27T08:30:00Z\", \"2026-11-27T09:00:00Z\"]
  post     = [\"2026-11-27T10:25:00Z\", \"2026-11-27T11:00:00Z\"]   # default: flip_at + 10 min .. end
  freeze   = [\"2026-11-27T10:10:00Z\", \"2026-11-27T10:40:00Z\"]   # optional

  [expected_pins]                            # the last known good set
  prompt_ver = \"p-6\"
  index_hash = \"ih-a41f\"

  [cache]
  namespace = \"ns:{index_hash}:{prompt_ver}\"

  [thresholds]                               # defaults; see `rollproof init` output
  p95_latency_ratio_max = 1.15

A canary incident has `mode = \"canary\"`, a [canary] section (baseline_arm, canary_arm, window)
and [expected_pins.ARM] per arm.

"
    };
}
#[derive(Debug, Parser)]
#[command(
    name = "rollproof",
    version,
    about = "Audit a rollback (or gate a canary) from request logs and side-effect receipts, with evidence",
    after_long_help = exit_codes!()
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Audit an incident: run every check, print the verdict, exit 0 (pass/warn), 1 (fail), 2 (input error) or 3 (inconclusive)
    #[command(after_long_help = concat!(incident_format!(), exit_codes!()))]
    Audit(AuditArgs),
    /// Write a commented incident file from the logs: their columns, time range, likely pins
    #[command(after_long_help = concat!(incident_format!(), exit_codes!()))]
    Init(InitArgs),
    /// Print the units of work of the incident's inputs (file or row group, footer row count) as JSON, for `partial --unit`
    Plan(PlanArgs),
    /// Fold some inputs or units into a partial-state file, for `merge` (exit 0, or 2 on an input error)
    Partial(PartialArgs),
    /// Merge partial-state files and report as `audit` would over all their inputs; exit codes as `audit`
    #[command(after_long_help = exit_codes!())]
    Merge(MergeArgs),
    /// Print a check's documentation (what it checks, why it matters, what fails it); `otlp`: the OpenTelemetry preset; `statistics`: the intervals and their references
    Explain {
        /// Check id, e.g. `pins`, `otlp` or `statistics`; without it, list every check
        check: Option<String>,
        /// Print every check's documentation as Markdown (docs/reference/checks.md)
        #[arg(long, conflicts_with = "check")]
        markdown: bool,
    },
    /// Print a shell completion script (e.g. `rollproof completions bash > /etc/bash_completion.d/rollproof`)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff): `rollproof man > rollproof.1`, `rollproof man audit > rollproof-audit.1`, or all of them with `--dir`
    Man {
        /// The subcommand whose page to print (default: the top-level page)
        subcommand: Option<String>,
        /// Write every page (rollproof.1, rollproof-audit.1, …) into DIR instead
        #[arg(long, value_name = "DIR", conflicts_with = "subcommand")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
    Junit,
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Exit 1 only when a check fails (the default)
    Fail,
    /// Exit 1 when a check fails or warns
    Warn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    /// Colour on a terminal, unless NO_COLOR is set
    Auto,
    Always,
    Never,
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// The incident file (TOML)
    pub incident: PathBuf,
    /// What goes to stdout (default: text; with `--output`, taken from its extension)
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Write the `--format` output to FILE instead of stdout (`-`: stdout); the format is taken
    /// from the extension (.json, .md, .html, .xml for JUnit, .txt) when `--format` is not given
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also write the JSON report to FILE (`-`: stdout)
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write the HTML postmortem (self-contained, no script) to FILE (`-`: stdout)
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also write the Markdown summary (for a PR comment) to FILE (`-`: stdout)
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Also write JUnit XML (one test case per check) to FILE (`-`: stdout)
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write every violating row of every failing or warning check (Parquet, one file per
    /// check and kind) and an index, into DIR
    #[arg(long, value_name = "DIR")]
    pub evidence_dir: Option<PathBuf>,
    /// Print GitHub Actions annotations and append to $GITHUB_STEP_SUMMARY (on by default when GITHUB_ACTIONS=true)
    #[arg(long)]
    pub github: bool,
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Which verdict closes the gate (exit 1): `fail` (default), or `warn` too
    #[arg(long, value_enum, default_value_t = FailOn::Fail)]
    pub fail_on: FailOn,
    /// Colour the terminal summary
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
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

/// The inputs of a run, as `audit` takes them.
#[derive(Debug, Clone, clap::Args)]
pub struct InputArgs {
    /// Request logs (globs and URLs allowed), replacing [inputs] requests; relative to the current folder
    #[arg(long, value_name = "PATH")]
    pub requests: Vec<String>,
    /// Side-effect receipts (globs and URLs allowed), replacing [inputs] receipts
    #[arg(long, value_name = "PATH")]
    pub receipts: Vec<String>,
    /// Mapping file, replacing [inputs] mapping; relative to the current folder
    #[arg(long, value_name = "FILE")]
    pub mapping: Option<PathBuf>,
    /// Override a threshold of the incident file, e.g. `--threshold p95_latency_ratio_max=1.2`
    /// (repeatable; partials and their merge need the same values)
    #[arg(long, value_name = "KEY=VALUE")]
    pub threshold: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The incident file (TOML)
    pub incident: PathBuf,
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Write the plan to FILE instead of stdout
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct PartialArgs {
    /// The incident file (TOML)
    pub incident: PathBuf,
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Fold only this unit (an id `rollproof plan` prints; repeatable). Without `--unit`: every
    /// unit of the tables named by `--requests`/`--receipts`, or of all inputs
    #[arg(long, value_name = "ID")]
    pub unit: Vec<String>,
    /// Read unit ids from FILE, one per line
    #[arg(long, value_name = "FILE")]
    pub units_file: Option<PathBuf>,
    /// Fold the sample look-ups asked for by FILE, a combined partial of every fold (`merge --partial-out`)
    #[arg(long, value_name = "FILE")]
    pub samples_from: Option<PathBuf>,
    /// A combined partial of every receipts unit: keep only the request ids the receipts name
    /// (a far smaller partial of the requests) instead of every one
    #[arg(long, value_name = "FILE", conflicts_with = "samples_from")]
    pub receipts_from: Option<PathBuf>,
    /// The partial-state file to write
    #[arg(long, short = 'o', value_name = "FILE", required = true)]
    pub output: PathBuf,
    /// Worker threads (default: all cores); the partial is identical for any value
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// No progress on stderr
    #[arg(long, short)]
    pub quiet: bool,
    /// Read every input in object storage whole to record its SHA-256
    #[arg(long)]
    pub hash_inputs: bool,
    /// Write the states that grow with a key (users, idempotency keys, request ids) as N key
    /// ranges, which `merge` finishes one at a time
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = key_partitions)]
    pub key_partitions: usize,
}

/// 1 to 65,536 key ranges.
fn key_partitions(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (1..=rollproof::MAX_KEY_PARTITIONS).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "{n} is not between 1 and {}",
            rollproof::MAX_KEY_PARTITIONS
        ))
    }
}

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    #[command(flatten)]
    pub audit: AuditArgs,
    /// Partial-state files written by `rollproof partial`
    #[arg(required = true, value_name = "PARTIAL")]
    pub partials: Vec<PathBuf>,
    /// Write the merged partial state to FILE instead of a report (a step of a merge tree, or the
    /// `--samples-from` file of the sample round)
    #[arg(long, value_name = "FILE")]
    pub partial_out: Option<PathBuf>,
    /// Finish the states that grow with a key N key ranges at a time, so that only one range's
    /// keys are held at once (default: the ranges the partials were written in; same report)
    #[arg(long, value_name = "N", value_parser = key_partitions)]
    pub key_partitions: Option<usize>,
    /// Finish only key range R (0 ≤ R < N of `--key-partitions N`) and write it to
    /// `--partial-out`: a stage per range, whose outputs the final merge takes beside the
    /// fold partials
    #[arg(long, value_name = "R", requires_all = ["key_partitions", "partial_out"])]
    pub key_range: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Request logs (globs and URLs allowed)
    #[arg(required = true)]
    pub requests: Vec<String>,
    /// Side-effect receipts (globs and URLs allowed)
    #[arg(long, value_name = "PATH")]
    pub receipts: Vec<String>,
    /// Write the incident file to FILE (default: stdout); a mapping stub goes beside it when
    /// columns need one
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// A mapping file, when the logs' column names differ from rollproof's
    #[arg(long, value_name = "FILE")]
    pub mapping: Option<PathBuf>,
    /// Write a canary incident (two arms) instead of a rollback
    #[arg(long)]
    pub canary: bool,
    /// Overwrite FILE (and mapping.toml beside it) when they exist
    #[arg(long)]
    pub force: bool,
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
