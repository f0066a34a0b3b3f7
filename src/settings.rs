//! CLI arguments → validated settings. Library code never sees clap types.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use rollproof::{Format as OutputFormat, InputOverrides};

use crate::cli::{
    AuditArgs, Cli, Color, Command, FailOn, Format, InitArgs, InputArgs, MergeArgs, PartialArgs,
};

/// Where a rendering goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    /// The text summary, when another rendering has stdout.
    Stderr,
    File(PathBuf),
}

impl Destination {
    fn from_arg(path: PathBuf) -> Destination {
        if path.as_os_str() == "-" {
            Destination::Stdout
        } else {
            Destination::File(path)
        }
    }
}

/// One rendering of the report and where it goes.
#[derive(Debug, Clone)]
pub struct Output {
    pub format: OutputFormat,
    pub to: Destination,
}

#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub incident: PathBuf,
    /// The `--format`/`--output` rendering first, then `--json`, `--html`, `--markdown`, `--junit`.
    pub outputs: Vec<Output>,
    pub evidence_dir: Option<PathBuf>,
    /// GitHub Actions annotations and step summary.
    pub github: bool,
    /// `$GITHUB_STEP_SUMMARY`, when GitHub output is on and it is set.
    pub step_summary: Option<PathBuf>,
    pub inputs: InputOverrides,
    pub threads: usize,
    pub progress: bool,
    /// Read every object in a store whole to hash it.
    pub hash_inputs: bool,
    /// A warning closes the gate too.
    pub fail_on_warn: bool,
    /// Colour the terminal summary.
    pub color: bool,
}

#[derive(Debug, Clone)]
pub struct InitSettings {
    pub requests: Vec<String>,
    pub receipts: Vec<String>,
    pub mapping: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub canary: bool,
    pub force: bool,
}

#[derive(Debug, Clone)]
pub struct PartialSettings {
    pub incident: PathBuf,
    pub inputs: InputOverrides,
    pub units: Vec<String>,
    pub samples_from: Option<PathBuf>,
    pub receipts_from: Option<PathBuf>,
    pub output: PathBuf,
    pub threads: usize,
    pub progress: bool,
    pub hash_inputs: bool,
    pub key_partitions: usize,
}

#[derive(Debug, Clone)]
pub enum Settings {
    Audit(AuditSettings),
    Plan {
        incident: PathBuf,
        inputs: InputOverrides,
        output: Option<PathBuf>,
    },
    Partial(PartialSettings),
    Merge {
        audit: AuditSettings,
        partials: Vec<PathBuf>,
        partial_out: Option<PathBuf>,
        key_partitions: Option<usize>,
        key_range: Option<usize>,
    },
    Init(InitSettings),
    Explain {
        check: Option<String>,
        markdown: bool,
    },
    Completions(clap_complete::Shell),
    Man {
        subcommand: Option<String>,
        dir: Option<PathBuf>,
    },
}

/// A usage error: exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl Settings {
    pub fn from_cli(cli: Cli) -> Result<Settings, UsageError> {
        match cli.command {
            Command::Explain { check, markdown } => Ok(Settings::Explain { check, markdown }),
            Command::Completions { shell } => Ok(Settings::Completions(shell)),
            Command::Man { subcommand, dir } => Ok(Settings::Man { subcommand, dir }),
            Command::Audit(args) => Ok(Settings::Audit(audit(args)?)),
            Command::Plan(args) => Ok(Settings::Plan {
                incident: args.incident,
                inputs: overrides(args.inputs)?,
                output: args.output,
            }),
            Command::Partial(args) => Ok(Settings::Partial(partial(args)?)),
            Command::Merge(args) => merge(args),
            Command::Init(args) => Ok(Settings::Init(init(args))),
        }
    }
}

fn output_format(format: Format) -> OutputFormat {
    match format {
        Format::Text => OutputFormat::Text,
        Format::Json => OutputFormat::Json,
        Format::Markdown => OutputFormat::Markdown,
        Format::Junit => OutputFormat::Junit,
        Format::Html => OutputFormat::Html,
    }
}

/// The format a file's extension names, as promptfoo and others do.
fn format_of_extension(path: &Path) -> Option<OutputFormat> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "json" => OutputFormat::Json,
        "md" | "markdown" => OutputFormat::Markdown,
        "html" | "htm" => OutputFormat::Html,
        "xml" => OutputFormat::Junit,
        "txt" | "text" => OutputFormat::Text,
        _ => return None,
    })
}

/// The format `--format` and `--output` say, for the main output; `None` when `--output` has an
/// extension rollproof does not know and no `--format` was given.
pub fn main_format(
    format: Option<Format>,
    output: Option<&Path>,
) -> Result<OutputFormat, UsageError> {
    match (format, output) {
        (Some(f), _) => Ok(output_format(f)),
        (None, None) => Ok(OutputFormat::Text),
        (None, Some(p)) if p.as_os_str() == "-" => Ok(OutputFormat::Text),
        (None, Some(p)) => format_of_extension(p).ok_or_else(|| {
            UsageError(format!(
                "cannot tell the format of `--output {}` from its extension; add `--format` (text, json, markdown, junit, html) or use .txt, .json, .md, .xml, .html",
                p.display()
            ))
        }),
    }
}

fn threads(n: Option<usize>) -> Result<usize, UsageError> {
    match n {
        Some(0) => Err(UsageError("`--threads` must be at least 1".to_string())),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

fn parse_thresholds(values: &[String]) -> Result<Vec<(String, String)>, UsageError> {
    values
        .iter()
        .map(|t| match t.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(UsageError(format!(
                "`--threshold {t}`: expected KEY=VALUE, e.g. --threshold p95_latency_ratio_max=1.2"
            ))),
        })
        .collect()
}

fn overrides(args: InputArgs) -> Result<InputOverrides, UsageError> {
    Ok(InputOverrides {
        requests: args.requests,
        receipts: args.receipts,
        mapping: args.mapping,
        thresholds: parse_thresholds(&args.threshold)?,
        outputs: Vec::new(),
    })
}

fn partial(args: PartialArgs) -> Result<PartialSettings, UsageError> {
    let mut units = args.unit;
    if let Some(file) = &args.units_file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            UsageError(format!(
                "could not read `--units-file {}`: {e}",
                file.display()
            ))
        })?;
        units.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from),
        );
    }
    let mut inputs = overrides(args.inputs)?;
    inputs.outputs = vec![args.output.clone()];
    Ok(PartialSettings {
        incident: args.incident,
        inputs,
        units,
        samples_from: args.samples_from,
        receipts_from: args.receipts_from,
        output: args.output,
        threads: threads(args.threads)?,
        progress: !args.quiet,
        hash_inputs: args.hash_inputs,
        key_partitions: args.key_partitions,
    })
}

fn merge(args: MergeArgs) -> Result<Settings, UsageError> {
    let mut audit = audit(args.audit)?;
    audit.inputs.outputs.extend(args.partial_out.clone());
    Ok(Settings::Merge {
        audit,
        partials: args.partials,
        partial_out: args.partial_out,
        key_partitions: args.key_partitions,
        key_range: args.key_range,
    })
}

fn audit(args: AuditArgs) -> Result<AuditSettings, UsageError> {
    let threads = threads(args.threads)?;
    let format = main_format(args.format, args.output.as_deref())?;
    let mut outputs = vec![Output {
        format,
        to: args
            .output
            .clone()
            .map(Destination::from_arg)
            .unwrap_or(Destination::Stdout),
    }];
    for (path, format) in [
        (args.json, OutputFormat::Json),
        (args.html, OutputFormat::Html),
        (args.markdown, OutputFormat::Markdown),
        (args.junit, OutputFormat::Junit),
    ] {
        if let Some(path) = path {
            outputs.push(Output {
                format,
                to: Destination::from_arg(path),
            });
        }
    }
    // `--json -` and friends claim stdout; the text summary, when nothing asked for it there,
    // goes to stderr for the human.
    let claimed = outputs[1..].iter().any(|o| o.to == Destination::Stdout);
    if claimed && args.format.is_none() && args.output.is_none() {
        outputs[0].to = Destination::Stderr;
    }
    check_destinations(&outputs)?;
    let inputs = overrides(args.inputs)?;
    let github = args.github || std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    // Colour goes to the text summary on a terminal (https://no-color.org: NO_COLOR turns it off).
    let text_on_terminal = outputs.iter().any(|o| {
        o.format == OutputFormat::Text
            && match o.to {
                Destination::Stdout => std::io::stdout().is_terminal(),
                Destination::Stderr => std::io::stderr().is_terminal(),
                Destination::File(_) => false,
            }
    });
    let color = match args.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => {
            text_on_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    };
    Ok(AuditSettings {
        incident: args.incident,
        outputs,
        evidence_dir: args.evidence_dir,
        github,
        step_summary: if github {
            std::env::var_os("GITHUB_STEP_SUMMARY")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        } else {
            None
        },
        inputs,
        threads,
        progress: !args.quiet,
        hash_inputs: args.hash_inputs,
        fail_on_warn: args.fail_on == FailOn::Warn,
        color,
    })
    .map(|mut s| {
        // Outputs are inputs' neighbours: the audit refuses one that is an input.
        s.inputs.outputs = s
            .outputs
            .iter()
            .filter_map(|o| match &o.to {
                Destination::File(p) => Some(p.clone()),
                Destination::Stdout | Destination::Stderr => None,
            })
            .chain(s.evidence_dir.clone())
            .collect();
        s
    })
}

/// At most one rendering on stdout, and no file written twice.
fn check_destinations(outputs: &[Output]) -> Result<(), UsageError> {
    let on_stdout: Vec<&Output> = outputs
        .iter()
        .filter(|o| o.to == Destination::Stdout)
        .collect();
    if on_stdout.len() > 1 {
        return Err(UsageError(format!(
            "{} renderings would go to stdout; send the main one to a file with `--output FILE`",
            on_stdout.len()
        )));
    }
    for (i, a) in outputs.iter().enumerate() {
        for b in &outputs[i + 1..] {
            if let (Destination::File(pa), Destination::File(pb)) = (&a.to, &b.to) {
                if same_path(pa, pb) {
                    return Err(UsageError(format!(
                        "`{}` is named by two outputs; one would overwrite the other",
                        pa.display()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Whether two output paths name the same file (they may not exist yet).
fn same_path(a: &Path, b: &Path) -> bool {
    let resolve = |p: &Path| -> PathBuf {
        let parent = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        match (parent.canonicalize(), p.file_name()) {
            (Ok(dir), Some(name)) => dir.join(name),
            _ => p.to_path_buf(),
        }
    };
    resolve(a) == resolve(b)
}

fn init(args: InitArgs) -> InitSettings {
    InitSettings {
        requests: args.requests,
        receipts: args.receipts,
        mapping: args.mapping,
        output: args.output,
        canary: args.canary,
        force: args.force,
    }
}
