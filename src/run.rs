//! `run(settings)`: what each subcommand does — audit (incident → report → outputs), explain,
//! completions, man page. The audit itself is the `rollproof` library's.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::Context;
use rollproof::{ExitStatus, Format, Report, Table};

use crate::cli;
use crate::settings::{AuditSettings, Destination, PartialSettings, Settings, UsageError};

pub fn run(settings: Settings) -> anyhow::Result<ExitStatus> {
    match settings {
        Settings::Explain { markdown: true, .. } => {
            write_stdout(&rollproof::checks_reference_markdown())?;
            Ok(ExitStatus::Success)
        }
        Settings::Explain { check, .. } => explain(check.as_deref()),
        Settings::Audit(settings) => audit(&settings, |options, progress| {
            rollproof::audit_path(&settings.incident, &settings.inputs, options, progress)
        }),
        Settings::Plan {
            incident,
            inputs,
            output,
        } => {
            let plan = rollproof::plan(&incident, &inputs)?;
            let json = serde_json::to_string_pretty(&plan).context("could not render the plan")?;
            match output {
                Some(path) => write_file(&path, &format!("{json}\n"))?,
                None => write_stdout(&format!("{json}\n"))?,
            }
            Ok(ExitStatus::Success)
        }
        Settings::Partial(settings) => partial(&settings),
        Settings::Merge {
            audit: settings,
            partials,
            partial_out,
            key_partitions,
            key_range,
        } => {
            let parts = read_partials(&partials)?;
            if let (Some(out), Some(range), Some(ranges)) =
                (&partial_out, key_range, key_partitions)
            {
                let pool = rayon_pool(settings.threads)?;
                let bytes = pool.install(|| {
                    rollproof::finish_key_range(
                        &settings.incident,
                        &settings.inputs,
                        parts,
                        range,
                        ranges,
                    )
                })?;
                write_bytes(out, &bytes)?;
                return Ok(ExitStatus::Success);
            }
            if let Some(out) = partial_out {
                let pool = rayon_pool(settings.threads)?;
                let bytes = pool.install(|| {
                    rollproof::combine(&settings.incident, &settings.inputs, parts, key_partitions)
                })?;
                write_bytes(&out, &bytes)?;
                return Ok(ExitStatus::Success);
            }
            audit(&settings, |options, progress| {
                rollproof::merge(
                    &settings.incident,
                    &settings.inputs,
                    parts,
                    options,
                    key_partitions,
                    progress,
                )
            })
        }
        Settings::Completions(shell) => {
            use clap::CommandFactory;
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cli::Cli::command(), "rollproof", &mut out);
            write_stdout(&String::from_utf8_lossy(&out))?;
            Ok(ExitStatus::Success)
        }
        Settings::Man { subcommand, dir } => man(subcommand.as_deref(), dir.as_deref()),
        Settings::Init(settings) => crate::init::run(&settings),
    }
}

/// The man pages: `rollproof.1` and one per subcommand (`rollproof-audit.1`, …), each with the
/// exit codes.
fn man(subcommand: Option<&str>, dir: Option<&Path>) -> anyhow::Result<ExitStatus> {
    use clap::CommandFactory;
    let top = cli::Cli::command();
    let page = |cmd: clap::Command, name: &str| -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd.name(name.to_owned()))
            .render(&mut out)
            .context("could not render the man page")?;
        Ok(out)
    };
    let subcommands: Vec<clap::Command> = top.get_subcommands().cloned().collect();
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("could not create `{}`", dir.display()))?;
        write_file(
            &dir.join("rollproof.1"),
            &String::from_utf8_lossy(&page(top.clone(), "rollproof")?),
        )?;
        for sub in subcommands {
            let name = format!("rollproof-{}", sub.get_name());
            write_file(
                &dir.join(format!("{name}.1")),
                &String::from_utf8_lossy(&page(sub, &name)?),
            )?;
        }
        return Ok(ExitStatus::Success);
    }
    let out = match subcommand {
        None => page(top, "rollproof")?,
        Some(name) => {
            let Some(sub) = subcommands.into_iter().find(|c| c.get_name() == name) else {
                let names: Vec<String> = top
                    .get_subcommands()
                    .map(|c| c.get_name().to_string())
                    .collect();
                return Err(UsageError(format!(
                    "no subcommand `{name}`; subcommands are {}",
                    names.join(", ")
                ))
                .into());
            };
            page(sub, &format!("rollproof-{name}"))?
        }
    };
    write_stdout(&String::from_utf8_lossy(&out))?;
    Ok(ExitStatus::Success)
}

fn explain(check: Option<&str>) -> anyhow::Result<ExitStatus> {
    let mut out = String::new();
    match check {
        Some("otlp") => out.push_str(&rollproof::otlp_preset_mapping()),
        Some("statistics") => out.push_str(rollproof::statistics_explained()),
        Some(id) => match rollproof::check_info(id) {
            Some(info) => out.push_str(&info.explain()),
            None => {
                let ids: Vec<&str> = rollproof::check_infos().map(|c| c.id).collect();
                return Err(
                    UsageError(format!("no check `{id}`; checks are {}", ids.join(", "))).into(),
                );
            }
        },
        None => {
            for info in rollproof::check_infos() {
                let modes: Vec<&str> = info.modes.iter().map(|m| m.name()).collect();
                out.push_str(&format!(
                    "{:<18} {:<36} ({})\n",
                    info.id,
                    info.title,
                    modes.join(", ")
                ));
            }
            out.push_str("\n`rollproof explain CHECK` prints one check's documentation; `rollproof explain otlp`\nprints the OpenTelemetry preset as a mapping file; `rollproof explain statistics` the\nintervals and how thresholds judge them.\n");
        }
    }
    write_stdout(&out)?;
    Ok(ExitStatus::Success)
}

fn read_partials(
    paths: &[std::path::PathBuf],
) -> anyhow::Result<Vec<(std::path::PathBuf, Vec<u8>)>> {
    Ok(rollproof::read_partials(paths)?)
}

fn partial(settings: &PartialSettings) -> anyhow::Result<ExitStatus> {
    let pool = rayon_pool(settings.threads)?;
    let samples_from = match &settings.samples_from {
        Some(p) => Some(read_partials(std::slice::from_ref(p))?.remove(0)),
        None => None,
    };
    let receipts_from = match &settings.receipts_from {
        Some(p) => Some(read_partials(std::slice::from_ref(p))?.remove(0)),
        None => None,
    };
    let request = rollproof::PartialRequest {
        units: settings.units.clone(),
        samples_from,
        receipts_from,
        hash_inputs: settings.hash_inputs,
        key_partitions: settings.key_partitions,
        ..Default::default()
    };
    let quiet = |_: Table, _: u64, _: u64| {};
    let bytes = pool
        .install(|| rollproof::partial(&settings.incident, &settings.inputs, &request, &quiet))?;
    write_bytes(&settings.output, &bytes)?;
    if settings.progress {
        say!(
            "partial: {} bytes written to `{}`",
            bytes.len(),
            settings.output.display()
        );
    }
    Ok(ExitStatus::Success)
}

fn write_bytes(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    // Written beside, then renamed: a task killed while writing leaves no truncated partial
    // under the final name.
    let tmp = path.with_extension("rpp.tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("could not write `{}`", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("could not write `{}`", path.display()))
}

fn audit(
    settings: &AuditSettings,
    compute: impl FnOnce(
            rollproof::AuditOptions,
            &(dyn Fn(Table, u64, u64) + Sync),
        ) -> Result<Report, rollproof::InputError>
        + Send,
) -> anyhow::Result<ExitStatus> {
    let pool = rayon_pool(settings.threads)?;
    let show_progress = settings.progress && std::io::stderr().is_terminal();
    let bar: std::sync::Mutex<Option<(Table, indicatif::ProgressBar)>> =
        std::sync::Mutex::new(None);
    let progress = |table: Table, done: u64, total: u64| {
        if !show_progress {
            return;
        }
        let mut bar = bar.lock().unwrap_or_else(|e| e.into_inner());
        if bar.as_ref().is_none_or(|(t, _)| *t != table) {
            if let Some((_, old)) = bar.take() {
                old.finish_and_clear();
            }
            let pb = indicatif::ProgressBar::with_draw_target(
                Some(total),
                indicatif::ProgressDrawTarget::stderr(),
            );
            pb.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:>9} [{bar:32}] {pos}/{len} units {elapsed}",
                )
                .expect("valid progress template")
                .progress_chars("=> "),
            );
            pb.set_message(table.name());
            *bar = Some((table, pb));
        }
        if let Some((_, pb)) = bar.as_ref() {
            pb.set_position(done);
        }
    };
    let options = rollproof::AuditOptions {
        series: settings.outputs.iter().any(|o| o.format == Format::Html),
        hash_inputs: settings.hash_inputs,
        evidence: settings.evidence_dir.is_some(),
    };
    let report = pool.install(|| compute(options, &progress));
    if let Some((_, pb)) = bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
        pb.finish_and_clear();
    }
    let report = report?;
    write_outputs(settings, &report)?;
    if let Some(dir) = &settings.evidence_dir {
        let written = report
            .write_evidence(dir)
            .with_context(|| format!("could not write the evidence to `{}`", dir.display()))?;
        say!("evidence: {written} rows written to `{}`", dir.display());
    }
    Ok(match report.verdict {
        rollproof::Status::Warn if settings.fail_on_warn => ExitStatus::Failed,
        verdict => verdict.exit_status(),
    })
}

fn rayon_pool(threads: usize) -> anyhow::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("could not start the worker threads")
}

fn write_outputs(settings: &AuditSettings, report: &Report) -> anyhow::Result<()> {
    let options = rollproof::RenderOptions {
        color: settings.color,
    };
    for output in &settings.outputs {
        match &output.to {
            Destination::File(path) => write_file(path, &rollproof::render(output.format, report))?,
            Destination::Stdout => {
                write_stdout(&rollproof::render_with(output.format, report, options))?
            }
            Destination::Stderr => {
                say_raw!("{}", rollproof::render_with(output.format, report, options))
            }
        }
    }
    if let Some(summary) = &settings.step_summary {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(summary)
            .with_context(|| {
                format!(
                    "could not open $GITHUB_STEP_SUMMARY `{}`",
                    summary.display()
                )
            })?;
        file.write_all(rollproof::render(Format::Markdown, report).as_bytes())
            .with_context(|| format!("could not append to `{}`", summary.display()))?;
    }
    if settings.github {
        // Workflow commands: on stdout with the human summary; on stderr when stdout is data.
        let annotations = rollproof::render(Format::GithubAnnotations, report);
        let text_on_stdout = settings
            .outputs
            .iter()
            .any(|o| o.to == Destination::Stdout && o.format == Format::Text);
        if text_on_stdout {
            write_stdout(&annotations)?;
        } else {
            say_raw!("{annotations}");
        }
    }
    Ok(())
}

fn write_file(path: &Path, content: &str) -> anyhow::Result<()> {
    std::fs::write(path, content).with_context(|| format!("could not write `{}`", path.display()))
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
pub(crate) fn write_stdout(content: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(content.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("could not write to stdout"),
    }
}
