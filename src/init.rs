//! `rollproof init`: survey the logs and write a first, commented incident file (and a mapping
//! file when the column names need one).

use std::path::{Path, PathBuf};

use anyhow::Context;
use rollproof::{ExitStatus, Mode};

use crate::settings::{InitSettings, UsageError};

pub fn run(settings: &InitSettings) -> anyhow::Result<ExitStatus> {
    let mode = if settings.canary {
        Mode::Canary
    } else {
        Mode::Rollback
    };
    let dir = settings
        .output
        .as_deref()
        .and_then(Path::parent)
        .filter(|d| !d.as_os_str().is_empty());
    let mapping_path = dir.unwrap_or(Path::new("")).join("mapping.toml");
    if let Some(output) = &settings.output {
        for path in [output.as_path(), mapping_path.as_path()] {
            if path.exists() && !settings.force {
                return Err(UsageError(format!(
                    "`{}` exists; `rollproof init` does not overwrite it without `--force`",
                    path.display()
                ))
                .into());
            }
        }
    }
    let survey = rollproof::survey(
        &settings.requests,
        &settings.receipts,
        settings.mapping.as_deref(),
    )?;
    say_raw!("{}", survey.summary());
    let requests = relative_to(dir, &settings.requests);
    let receipts = relative_to(dir, &settings.receipts);
    let mut incident = survey.incident_toml(mode, Some((&requests, &receipts)));
    if let Some(mapping) = &settings.mapping {
        // The mapping as the incident's folder sees it.
        let shown = relative_to(dir, &[mapping.display().to_string()]).remove(0);
        incident = incident.replace(
            &format!("mapping = {}", toml_string(&mapping.display().to_string())),
            &format!("mapping = {}", toml_string(&shown)),
        );
    }
    let mapping = survey.mapping_toml();
    match &settings.output {
        Some(output) => {
            std::fs::write(output, &incident)
                .with_context(|| format!("could not write `{}`", output.display()))?;
            say!("wrote `{}`", output.display());
            if let Some(mapping) = &mapping {
                std::fs::write(&mapping_path, mapping)
                    .with_context(|| format!("could not write `{}`", mapping_path.display()))?;
                say!("wrote `{}`", mapping_path.display());
            }
            say!(
                "check every `guess:` in it, then: rollproof audit {}",
                output.display()
            );
        }
        None => {
            crate::run::write_stdout(&incident)?;
            if let Some(mapping) = &mapping {
                say!("\nThe incident names `mapping.toml`; save this beside it (or use `-o FILE`, which writes both):\n");
                say_raw!("{mapping}");
            }
        }
    }
    Ok(ExitStatus::Success)
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Input paths as the incident file in `dir` must name them: relative to its folder when they
/// are inside it, else absolute; URLs as given.
fn relative_to(dir: Option<&Path>, patterns: &[String]) -> Vec<String> {
    let Some(dir) = dir else {
        return patterns.to_vec();
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    let absolute = |p: &Path| -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            cwd.join(p)
        }
    };
    let dir = absolute(dir);
    let dir = dir.canonicalize().unwrap_or(dir);
    patterns
        .iter()
        .map(|p| {
            if p.contains("://") {
                return p.clone();
            }
            let full = absolute(Path::new(p));
            // Canonicalize the folder part (globs cannot be canonicalized whole).
            let full = match (full.parent(), full.file_name()) {
                (Some(parent), Some(name)) => parent
                    .canonicalize()
                    .map(|p| p.join(name))
                    .unwrap_or(full.clone()),
                _ => full,
            };
            match full.strip_prefix(&dir) {
                Ok(rel) => rel.display().to_string(),
                Err(_) => full.display().to_string(),
            }
        })
        .collect()
}
