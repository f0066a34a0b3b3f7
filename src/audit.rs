//! The audit pipeline: ingest → one parallel pass per table → finish the checks → report model.
//!
//! Every pass folds units (Parquet row groups or whole files) into partial states on the rayon
//! pool and merges them; merges are exact, so the result does not depend on the thread count or
//! on the order units finish in.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::checks::{
    cache_isolation, duplicate_effects, error_rate, error_recovery, evidence, latency,
    mixed_versions, quality, reconciliation, sticky_routing, writer_freeze, CheckResult, Ctx,
    ReceiptPartial, RequestPartial,
};
use crate::columns::{CanonBatch, Col, Table};
use crate::error::{InputError, Problem};
use crate::incident::{Incident, Mode};
use crate::ingest::{self, Mapping, TablePlan, UnitCounts};
use crate::report::{InputReport, Report, ReportInputs, RowAccounting};

/// Input paths given on the command line, replacing the incident's (relative to the current folder).
#[derive(Debug, Clone, Default)]
pub struct InputOverrides {
    pub requests: Vec<String>,
    pub receipts: Vec<String>,
    pub mapping: Option<PathBuf>,
}

/// The targeted pass over the receipts: samples for duplicate keys and for reconciliation.
struct ReceiptLookup {
    keys: duplicate_effects::Lookup,
    requests: reconciliation::Lookup,
}

/// A resolved input file: its path, and the path as shown in reports.
type ResolvedFile = (PathBuf, String);

/// What the run computes besides the checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditOptions {
    /// Build the per-minute series the HTML report draws.
    pub timeline: bool,
}

/// Called with progress: (table, units done, units total).
pub type Progress<'a> = &'a (dyn Fn(Table, u64, u64) + Sync);

struct Pass<P> {
    partial: P,
    counts: Vec<UnitCounts>,
    problems: Vec<Problem>,
}

/// Folds every unit of `plan` into a partial state, collecting problems from all units.
fn pass<P: Send>(
    plan: &TablePlan,
    wanted: &[Col],
    progress: Progress<'_>,
    init: impl Fn() -> P + Sync + Send,
    update: impl Fn(&mut P, &CanonBatch) + Sync + Send,
    merge: impl Fn(P, P) -> P + Sync + Send,
) -> Result<(P, Vec<UnitCounts>), InputError> {
    let units = plan.units();
    let total = units.len() as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    let empty = || Pass {
        partial: init(),
        counts: vec![UnitCounts::default(); plan.files.len()],
        problems: Vec::new(),
    };
    let result = units
        .par_iter()
        .fold(empty, |mut acc, unit| {
            match plan.read_unit(*unit, wanted, |batch| update(&mut acc.partial, batch)) {
                Ok(c) => {
                    acc.counts[unit.file].rows_read += c.rows_read;
                    acc.counts[unit.file].rejected_no_ts += c.rejected_no_ts;
                }
                Err(p) => acc.problems.push(p),
            }
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(plan.table, n, total);
            acc
        })
        .reduce(empty, |mut a, b| {
            for (x, y) in a.counts.iter_mut().zip(&b.counts) {
                x.rows_read += y.rows_read;
                x.rejected_no_ts += y.rejected_no_ts;
            }
            a.problems.extend(b.problems);
            Pass {
                partial: merge(a.partial, b.partial),
                counts: a.counts,
                problems: a.problems,
            }
        });
    if !result.problems.is_empty() {
        let mut problems = result.problems;
        problems.sort_by(|a, b| (&a.file, &a.location).cmp(&(&b.file, &b.location)));
        problems.dedup();
        return Err(InputError { problems });
    }
    Ok((result.partial, result.counts))
}

fn resolve_inputs(
    incident: &Incident,
    overrides: &InputOverrides,
    problems: &mut Vec<Problem>,
) -> (Vec<ResolvedFile>, Vec<ResolvedFile>, Mapping) {
    let base = incident
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let cwd = PathBuf::new();
    let pick = |cli: &Vec<String>, file: &Vec<String>| {
        if cli.is_empty() {
            (file.clone(), base.clone())
        } else {
            (cli.clone(), cwd.clone())
        }
    };
    let (requests, requests_base) = pick(&overrides.requests, &incident.inputs.requests);
    let (receipts, receipts_base) = pick(&overrides.receipts, &incident.inputs.receipts);
    if requests.is_empty() {
        problems.push(
            Problem::new(
                "no requests input",
                "[inputs] requests = \"…\" or `--requests PATH`",
            )
            .file(&incident.path)
            .column("inputs.requests")
            .hint("name the request log files (globs allowed) in the incident file"),
        );
    }
    let request_files = ingest::resolve(Table::Requests, &requests, &requests_base, problems);
    let receipt_files = ingest::resolve(Table::Receipts, &receipts, &receipts_base, problems);
    let mapping_path = match (&overrides.mapping, &incident.inputs.mapping) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(p)) => Some(base.join(p)),
        (None, None) => None,
    };
    let mapping = match mapping_path {
        Some(p) => match Mapping::load(&p) {
            Ok(m) => m,
            Err(e) => {
                problems.extend(e.problems);
                Mapping::default()
            }
        },
        None => Mapping::default(),
    };
    (request_files, receipt_files, mapping)
}

/// Phase timings on stderr when `ROLLPROOF_TIMINGS` is set: a diagnostic for benchmarking, never
/// part of a report.
struct Timings {
    on: bool,
    start: std::time::Instant,
}

impl Timings {
    fn new() -> Timings {
        Timings {
            on: std::env::var_os("ROLLPROOF_TIMINGS").is_some(),
            start: std::time::Instant::now(),
        }
    }

    fn mark(&self, phase: &str) {
        if self.on {
            eprintln!(
                "timing: {:>8.3} s  {phase}",
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}

/// Runs the audit. Input problems of all files are reported together.
pub fn execute(
    incident: &Incident,
    overrides: &InputOverrides,
    options: AuditOptions,
    progress: Progress<'_>,
) -> Result<Report, InputError> {
    let timings = Timings::new();
    let mut problems = Vec::new();
    let (request_files, receipt_files, mapping) =
        resolve_inputs(incident, overrides, &mut problems);
    if !problems.is_empty() {
        return Err(InputError { problems });
    }
    let requests = ingest::plan(Table::Requests, request_files, &mapping, &mut problems);
    let receipts = (!receipt_files.is_empty())
        .then(|| ingest::plan(Table::Receipts, receipt_files, &mapping, &mut problems));
    if incident.mode == Mode::Canary
        && !requests.present.contains(&Col::Arm)
        && !requests.files.is_empty()
    {
        problems.push(
            Problem::new("no `arm` column in the requests", "an `arm` column naming each request's arm")
                .column("arm")
                .hint("canary mode compares arms; map the column in the mapping file, e.g. [requests] arm = \"deployment\""),
        );
    }
    if !problems.is_empty() {
        return Err(InputError { problems });
    }
    let mut ctx = Ctx::new(
        incident,
        requests.present.clone(),
        receipts.as_ref().map(|r| r.present.clone()),
    );
    ctx.timeline = options.timeline;
    let ctx = ctx;

    let all_files: Vec<&ingest::SourceFile> = requests
        .files
        .iter()
        .chain(receipts.iter().flat_map(|r| r.files.iter()))
        .collect();
    let (hashes, passes) = rayon::join(
        || {
            all_files
                .par_iter()
                .map(|f| ingest::sha256_file(&f.path))
                .collect::<Vec<_>>()
        },
        || -> Result<_, InputError> {
            // Receipts first: the request pass joins on the request ids they name.
            let rec = match &receipts {
                Some(plan) => {
                    let cols: Vec<Col> = Col::of_table(Table::Receipts).collect();
                    Some(pass(
                        plan,
                        &cols,
                        progress,
                        ReceiptPartial::new,
                        |p, b| p.update(&ctx, b),
                        ReceiptPartial::merge,
                    )?)
                }
                None => None,
            };
            timings.mark("receipts pass");
            let mut ctx = ctx.clone();
            let mut rec = rec;
            if let Some((partial, _)) = &mut rec {
                if reconciliation::applies(&ctx) {
                    let side = std::mem::take(&mut partial.requests);
                    ctx.receipt_requests = Some(std::sync::Arc::new(side.into_table()));
                }
            }
            let request_cols = ctx.request_columns();
            let (req, req_counts) = pass(
                &requests,
                &request_cols,
                progress,
                || RequestPartial::new(&ctx),
                |p, b| p.update(&ctx, b),
                RequestPartial::merge,
            )?;
            timings.mark("requests pass");
            Ok((req, req_counts, rec, ctx.receipt_requests.clone()))
        },
    );
    let (req, req_counts, rec, receipt_table) = passes?;
    timings.mark("passes and hashes");
    let mut hash_problems = Vec::new();
    let hashes: Vec<String> = hashes
        .into_iter()
        .map(|h| {
            h.unwrap_or_else(|p| {
                hash_problems.push(p);
                String::new()
            })
        })
        .collect();
    if !hash_problems.is_empty() {
        return Err(InputError {
            problems: hash_problems,
        });
    }

    // Targeted second passes, only when there are findings to show samples of: the requests of
    // the sampled users, and, in one pass, the receipts of the sampled keys and request ids. The
    // two run side by side.
    let mut rec = rec;
    let key_summary = match &mut rec {
        Some((partial, _)) => partial.effects.summarize(&ctx),
        None => duplicate_effects::Summary::default(),
    };
    let joined = receipt_table
        .as_ref()
        .map(|table| reconciliation::join(table, &req.reconcile));
    timings.mark("key summary and join");
    let user_targets = req.users.sample_targets();
    let key_targets: Vec<u128> = key_summary
        .duplicate_targets
        .iter()
        .chain(&key_summary.flip_targets)
        .copied()
        .collect();
    let request_targets: Vec<u64> = joined
        .iter()
        .flat_map(|j| j.orphan_targets.iter().chain(&j.failed_targets))
        .copied()
        .collect();
    let (user_lookup, receipt_lookup) = rayon::join(
        || -> Result<Option<mixed_versions::Lookup>, InputError> {
            if user_targets.is_empty() {
                return Ok(None);
            }
            // Without request ids: decoding them again would double the cost of this pass, and
            // the `pins` samples already carry them.
            let mut cols = vec![Col::UserId, Col::Arm];
            cols.extend(crate::incident::pins_named_in(&ctx.pin_sets));
            let (lookup, _) = pass(
                &requests,
                &cols,
                &|_, _, _| {},
                || mixed_versions::Lookup::new(user_targets.clone()),
                |l, b| l.update(&ctx, b),
                mixed_versions::Lookup::merge,
            )?;
            Ok(Some(lookup))
        },
        || -> Result<Option<ReceiptLookup>, InputError> {
            let Some(plan) = &receipts else {
                return Ok(None);
            };
            if key_targets.is_empty() && request_targets.is_empty() {
                return Ok(None);
            }
            let cols: Vec<Col> = Col::of_table(Table::Receipts).collect();
            let (lookup, _) = pass(
                plan,
                &cols,
                &|_, _, _| {},
                || ReceiptLookup {
                    keys: duplicate_effects::Lookup::new(key_targets.clone()),
                    requests: reconciliation::Lookup::new(request_targets.clone()),
                },
                |l, b| {
                    l.keys.update(&ctx, b);
                    l.requests.update(&ctx, b);
                },
                |a, b| ReceiptLookup {
                    keys: a.keys.merge(b.keys),
                    requests: a.requests.merge(b.requests),
                },
            )?;
            Ok(Some(lookup))
        },
    );
    let user_samples = user_lookup?.map(|l| l.samples()).unwrap_or_default();
    let receipt_lookup = receipt_lookup?;
    let (dup_samples, flip_samples) = match &receipt_lookup {
        Some(l) => (
            l.keys.samples(&key_summary.duplicate_targets, &key_summary),
            l.keys.samples(&key_summary.flip_targets, &key_summary),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let reconcile_samples = match (&receipt_lookup, &joined) {
        (Some(l), Some(j)) => {
            let mut samples = l.requests.samples(&j.orphan_targets, "orphan");
            samples.extend(l.requests.samples(&j.failed_targets, "failed_request"));
            samples
        }
        _ => Vec::new(),
    };
    timings.mark("reconciliation samples");
    let summary = |files: &[ingest::SourceFile], counts: &[UnitCounts]| evidence::InputSummary {
        files: files.len() as u64,
        rows: counts.iter().map(|c| c.rows_read).sum(),
        rejected: counts.iter().map(|c| c.rejected_no_ts).sum(),
    };
    let req_summary = summary(&requests.files, &req_counts);
    let rec_summary = match (&receipts, &rec) {
        (Some(plan), Some((_, counts))) => Some(summary(&plan.files, counts)),
        _ => None,
    };

    let counts = &req.counts;
    let effects = rec.as_ref().map(|(p, _)| &p.effects);
    let empty_effects = duplicate_effects::Partial::default();
    let effects_ref = effects.unwrap_or(&empty_effects);
    let mut results: Vec<CheckResult> = Vec::new();
    match ctx.mode {
        Mode::Rollback => {
            results.push(req.pins.finish(&ctx, counts.other_arm));
            results.push(req.cache.finish(&ctx));
            results.push(mixed_versions::finish(&req.users, &ctx, user_samples));
            results.push(duplicate_effects::finish(
                effects_ref,
                &key_summary,
                &ctx,
                dup_samples,
            ));
            results.push(writer_freeze::finish(
                effects_ref,
                &key_summary,
                &ctx,
                counts.max_ts,
                flip_samples,
            ));
            results.push(reconciliation::finish(
                &ctx,
                joined.as_ref(),
                reconcile_samples,
            ));
            results.push(error_recovery::finish(&req.errors, &ctx, counts));
            results.push(latency::finish(&req.latency, &ctx, counts));
            results.push(quality::finish(&req.quality, &ctx, counts));
        }
        Mode::Canary => {
            results.push(req.pins.finish(&ctx, counts.other_arm));
            results.push(cache_isolation::finish(req.cache, &ctx));
            results.push(sticky_routing::finish(&req.users, &ctx, user_samples));
            results.push(duplicate_effects::finish(
                effects_ref,
                &key_summary,
                &ctx,
                dup_samples,
            ));
            results.push(reconciliation::finish(
                &ctx,
                joined.as_ref(),
                reconcile_samples,
            ));
            results.push(error_rate::finish(&req.errors, &ctx, counts));
            results.push(latency::finish(&req.latency, &ctx, counts));
            results.push(quality::finish(&req.quality, &ctx, counts));
        }
    }
    results.push(evidence::finish(&ctx, &req_summary, rec_summary.as_ref()));

    let mut inputs = Vec::new();
    let file_counts = req_counts
        .iter()
        .chain(rec.iter().flat_map(|(_, c)| c.iter()));
    for ((file, counts), sha256) in all_files.iter().zip(file_counts).zip(hashes) {
        inputs.push(InputReport {
            role: file.table.name(),
            path: file.display.clone(),
            format: file.format.name(),
            compression: file.compression.map(|c| c.name()),
            rows: counts.rows_read,
            rows_rejected: counts.rejected_no_ts,
            sha256,
        });
    }
    let rows = RowAccounting {
        requests_read: req_summary.rows,
        requests_rejected: req_summary.rejected,
        requests_used: counts.rows - counts.outside,
        requests_audited: counts.audited,
        requests_baseline: counts.side_rows[0],
        requests_subject: counts.side_rows[1],
        requests_outside: counts.outside,
        requests_other_arm: counts.other_arm,
        receipts_read: rec_summary.as_ref().map_or(0, |r| r.rows),
        receipts_rejected: rec_summary.as_ref().map_or(0, |r| r.rejected),
    };
    Ok(Report::build(
        incident,
        results,
        ReportInputs {
            inputs,
            rows,
            data_start: counts.min_ts,
            data_end: counts.max_ts,
            timeline: req.timeline.finish(&ctx),
        },
    ))
}
