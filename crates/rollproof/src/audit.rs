//! The audit, as short phases: resolve the inputs → plan the tables → run the kernels of every
//! check of the mode, stage by stage (hashing the files alongside) → finish each check from the
//! registry → the report model with the inputs' evidence and the row accounting.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::checks::{self, CheckResult, Finish, InputTotals, Metric, TableTotals};
use crate::columns::{Col, Table};
use crate::engine::pass::{self, Progress};
use crate::engine::{AnyKernel, Stage, States};
use crate::error::{InputError, Problem};
use crate::incident::{Incident, InputPaths};
use crate::ingest::{self, InputSpec, Mapping, Resolved, TablePlan, UnitCounts};
use crate::plan::{Columns, Ctx, Mode};
use crate::report::{DataInstant, EvidenceTable, InputReport, Report, ReportInputs, RowAccounting};
use crate::time::Micros;

/// What the command line changes of the incident file: input paths (relative to the current
/// folder), threshold values, and the files the run will write (refused when one is an input).
#[derive(Debug, Clone, Default)]
pub struct InputOverrides {
    pub requests: Vec<String>,
    pub receipts: Vec<String>,
    pub mapping: Option<PathBuf>,
    /// `(threshold, value)` pairs, the value as written (`1.2`, `200`).
    pub thresholds: Vec<(String, String)>,
    /// Files the run will write: an input among them is an error, not evidence overwritten.
    pub outputs: Vec<PathBuf>,
}

/// What the run computes besides the checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditOptions {
    /// Build the per-minute series the HTML report draws.
    pub series: bool,
    /// Read every object in a store whole to hash it (local files are always hashed; objects are
    /// hashed when they were read whole anyway).
    pub hash_inputs: bool,
    /// Collect every row behind the findings of failing and warning checks into the report
    /// (`Report::write_evidence`); a third pass over the inputs.
    pub evidence: bool,
}

/// Runs the audit. Input problems of all files are reported together.
pub fn audit(
    incident: &Incident,
    overrides: &InputOverrides,
    options: AuditOptions,
    progress: Progress<'_>,
) -> Result<Report, InputError> {
    let mut incident = incident.clone();
    let threshold_problems = incident.override_thresholds(&overrides.thresholds);
    if !threshold_problems.is_empty() {
        return Err(InputError {
            problems: threshold_problems,
        });
    }
    let (ctx, tables) = prepare(&incident, overrides, options.series)?;
    finish_audit(
        &incident,
        &ctx,
        &tables,
        options,
        &StageInput::Local,
        progress,
    )
}

/// Where the states of the receipts and requests stages come from.
pub(crate) enum StageInput<'a> {
    /// Every unit of the planned tables is folded here.
    Local,
    /// From partial-state files, already checked against the plan (`merge`): their states are
    /// merged. The look-ups come from the `samples` partials when given, else are read here.
    Partials {
        folds: &'a [crate::partial::Body],
        samples: &'a [crate::partial::Body],
        /// Without sample partials, read the look-ups here (the merge has the files); else
        /// (frames) targets without sample partials are an error.
        local_samples: bool,
        /// How the keyed states are finished.
        key_ranges: KeyRanges<'a>,
    },
}

/// How a merge finishes the states that grow with a key.
pub(crate) enum KeyRanges<'a> {
    /// Merged whole, with every key range the partials hold.
    Whole,
    /// This many key ranges, one at a time.
    Split(usize),
    /// Ranges finished elsewhere (`merge --key-range`): their compacted states are added to the
    /// rest of the folds' states, whose key ranges are not read.
    Finished(&'a [crate::partial::Body]),
}

/// The audit after planning: the stages (folded here or merged from partials), the gold set,
/// every check's finish, the evidence and the row accounting.
pub(crate) fn finish_audit(
    incident: &Incident,
    ctx: &Ctx,
    tables: &Tables,
    options: AuditOptions,
    input: &StageInput<'_>,
    progress: Progress<'_>,
) -> Result<Report, InputError> {
    let timings = Timings::new();
    let kernels = kernels_of(ctx);
    let files: Vec<&ingest::SourceFile> = tables.all().flat_map(|t| t.files.iter()).collect();
    let roles: Vec<&'static str> = tables
        .all()
        .flat_map(|t| t.files.iter().map(move |_| t.role))
        .collect();
    let (hashes, run) = rayon::join(
        || match input {
            StageInput::Local => hash_files(&files, options.hash_inputs),
            StageInput::Partials { folds, .. } => {
                partial_hashes(tables, folds, &files, options.hash_inputs)
            }
        },
        || {
            let stages = run_stages(
                ctx,
                tables,
                &kernels,
                input,
                &Stage::ALL,
                progress,
                &timings,
            )?;
            let gold = read_gold(tables)?;
            Ok::<_, InputError>((stages, gold))
        },
    );
    let ((states, counts), (gold, gold_counts)) = run?;
    let hashes = hashes?;
    timings.mark("passes, samples and hashes");

    let totals = input_totals(tables, &counts, gold.is_some(), &gold_counts);
    let finish = Finish {
        ctx,
        states: &states,
        inputs: &totals,
        gold: gold.as_ref(),
        captured: tables.captured.as_ref(),
    };
    let results: Vec<CheckResult> = checks::of_mode(ctx.plan.mode())
        .map(|check| (check.finish)(&finish))
        .collect();
    let rows = states.get::<checks::rows::RowsKernel>();
    let all_counts = counts
        .requests
        .iter()
        .chain(&counts.receipts)
        .chain(&gold_counts);
    let inputs = input_reports(&files, &roles, all_counts, hashes, tables.captured.as_ref());
    let accounting = row_accounting(&totals, rows);
    let timeline = states
        .try_get::<checks::series::SeriesKernel>()
        .and_then(|s| s.timeline(ctx));
    let recovery_minutes = results
        .iter()
        .find(|r| r.id == "error_recovery")
        .and_then(|r| r.metrics.get("recovery_minutes"))
        .and_then(Metric::as_count);
    let impact = states
        .try_get::<checks::impact::ImpactKernel>()
        .and_then(|s| {
            let users = states.try_get::<checks::users::UsersKernel>();
            s.report(ctx, users, recovery_minutes)
        });
    let evidence = if options.evidence {
        collect_evidence(ctx, tables, &states, &results)?
    } else {
        Vec::new()
    };
    // Every read is done: the hashes, figures and evidence describe the files as planned.
    let changed: Vec<Problem> = files.iter().filter_map(|f| f.changed()).collect();
    if !changed.is_empty() {
        return Err(InputError { problems: changed });
    }
    let mut report = Report::build(
        incident,
        results,
        ReportInputs {
            inputs,
            rows: accounting,
            data_start: rows.min_ts,
            data_end: rows.max_ts,
            timeline,
            distributions: ctx
                .series
                .then(|| {
                    states
                        .try_get::<checks::latency::LatencyKernel>()
                        .map(|s| s.curves())
                })
                .flatten(),
            impact,
        },
    );
    report.evidence = evidence;
    report.captured_state = tables.captured.as_ref().map(|c| c.content.clone());
    Ok(report)
}

/// Rows read, rejected and dropped per table (the gold set's two files together).
fn input_totals(
    tables: &Tables,
    counts: &FileCounts,
    has_gold: bool,
    gold_counts: &[UnitCounts],
) -> InputTotals {
    InputTotals {
        requests: totals(&tables.requests, &counts.requests),
        receipts: tables
            .receipts
            .as_ref()
            .map(|plan| totals(plan, &counts.receipts)),
        gold: match (&tables.gold, &tables.gold_baseline) {
            (Some(run), Some(base)) if has_gold => {
                let (a, b) = gold_counts.split_at(run.files.len());
                let (a, b) = (totals(run, a), totals(base, b));
                Some(TableTotals {
                    files: a.files + b.files,
                    rows: a.rows + b.rows,
                    rejected: a.rejected + b.rejected,
                    dropped: a.dropped + b.dropped,
                })
            }
            _ => None,
        },
        captured: tables.captured.is_some(),
    }
}

/// The report's `inputs`: every file read, in plan order, with its counts, hash and (for an
/// object in a store) what the store said of it; then the captured-state file.
fn input_reports<'a>(
    files: &[&ingest::SourceFile],
    roles: &[&'static str],
    counts: impl Iterator<Item = &'a UnitCounts>,
    hashes: Vec<Option<String>>,
    captured: Option<&ingest::captured::CapturedState>,
) -> Vec<InputReport> {
    let mut inputs: Vec<InputReport> = files
        .iter()
        .zip(roles)
        .zip(counts)
        .zip(hashes)
        .map(|(((file, role), counts), sha256)| {
            let object = match &file.location {
                ingest::location::Location::Remote(r) => Some(r.as_ref()),
                ingest::location::Location::Local(_) => None,
            };
            InputReport {
                role,
                path: file.display.clone(),
                format: file.source.name(),
                compression: file.compression.map(|c| c.name()),
                rows: counts.rows_read,
                rows_rejected: counts.rejected_no_ts,
                rows_dropped: counts.dropped,
                sha256,
                url: object.map(|o| o.url.clone()),
                size: object.map(|o| o.meta.size),
                etag: object.and_then(|o| o.meta.e_tag.clone()),
                last_modified: object.map(|o| DataInstant(o.meta.last_modified.timestamp_micros())),
                version_id: object.and_then(|o| o.meta.version.clone()),
                source_files: None,
            }
        })
        .collect();
    if let Some(c) = captured {
        inputs.push(InputReport {
            role: "captured_state",
            path: c.path.clone(),
            format: c.format,
            compression: None,
            rows: 1,
            rows_rejected: 0,
            rows_dropped: 0,
            sha256: Some(c.sha256.clone()),
            url: None,
            size: None,
            etag: None,
            last_modified: None,
            version_id: None,
            source_files: None,
        });
    }
    inputs
}

/// The report's `rows`: what was read of each table and where the requests went.
fn row_accounting(totals: &InputTotals, rows: &checks::rows::RowCounts) -> RowAccounting {
    RowAccounting {
        requests_read: totals.requests.rows,
        requests_rejected: totals.requests.rejected,
        requests_dropped: totals.requests.dropped,
        requests_used: rows.rows - rows.outside,
        requests_audited: rows.audited,
        requests_baseline: rows.side_rows[0],
        requests_subject: rows.side_rows[1],
        requests_outside: rows.outside,
        requests_other_arm: rows.other_arm,
        receipts_read: totals.receipts.map_or(0, |r| r.rows),
        receipts_rejected: totals.receipts.map_or(0, |r| r.rejected),
        receipts_dropped: totals.receipts.map_or(0, |r| r.dropped),
    }
}

/// Every row behind the findings of the failing and warning checks, per check and kind: one more
/// pass over each table that has such findings, units read side by side a few at a time and
/// their rows kept in unit order (so the files are the same whatever the thread count).
fn collect_evidence(
    ctx: &Ctx,
    tables: &Tables,
    states: &States,
    results: &[CheckResult],
) -> Result<Vec<EvidenceTable>, InputError> {
    let mut out: Vec<EvidenceTable> = Vec::new();
    let kinds: Vec<(&'static str, &'static checks::Evidence)> = checks::of_mode(ctx.plan.mode())
        .zip(results)
        .filter(|(_, r)| matches!(r.status, checks::Status::Fail | checks::Status::Warn))
        .flat_map(|(c, _)| c.evidence.iter().map(move |e| (c.info.id, *e)))
        .collect();
    for table in [Table::Requests, Table::Receipts] {
        let of_table: Vec<(&str, &checks::Evidence)> = kinds
            .iter()
            .copied()
            .filter(|(_, e)| e.table == table)
            .collect();
        let Some(plan) = tables.get(table).filter(|_| !of_table.is_empty()) else {
            continue;
        };
        let wanted: Vec<Col> = plan.present.iter().copied().collect();
        let mut found: Vec<Vec<arrow::array::RecordBatch>> = vec![Vec::new(); of_table.len()];
        let units = plan.units();
        for chunk in units.chunks(2 * rayon::current_num_threads().max(1)) {
            let per_unit: Vec<Result<Vec<Vec<arrow::array::RecordBatch>>, InputError>> = chunk
                .par_iter()
                .map(|unit| {
                    let mut mine = vec![Vec::new(); of_table.len()];
                    plan.read_unit(*unit, &wanted, |batch| {
                        let rows = crate::engine::Rows::new(ctx, table, batch);
                        for (k, (_, e)) in of_table.iter().enumerate() {
                            let keep = (e.select)(ctx, states, &rows);
                            if keep.iter().any(|k| *k) {
                                mine[k].push(batch.filter(&keep).to_record_batch());
                            }
                        }
                    })?;
                    Ok(mine)
                })
                .collect();
            for unit in per_unit {
                for (k, batches) in unit?.into_iter().enumerate() {
                    found[k].extend(batches);
                }
            }
        }
        for ((check, e), batches) in of_table.into_iter().zip(found) {
            out.push(EvidenceTable {
                check,
                kind: e.kind,
                table: table.name(),
                batches,
            });
        }
    }
    Ok(out)
}

/// Runs the audit of the incident file at `path`. When the incident has problems, the inputs it
/// names are still resolved and read, so that every problem of the incident, the mapping and the
/// inputs is reported in one run.
pub fn audit_path(
    path: &Path,
    overrides: &InputOverrides,
    options: AuditOptions,
    progress: Progress<'_>,
) -> Result<Report, InputError> {
    let (mut incident, inputs, mut problems) = Incident::load_lenient(path);
    if let Some(incident) = incident.as_mut() {
        problems.extend(incident.override_thresholds(&overrides.thresholds));
    }
    if let (Some(incident), true) = (&incident, problems.is_empty()) {
        return audit(incident, overrides, options, progress);
    }
    if let Some(inputs) = inputs {
        let mode = incident.as_ref().map(|i| i.plan.mode());
        let tables = plan_tables(path, &inputs, overrides, mode, &mut problems);
        problems.extend(validate_values(&tables));
    }
    Err(InputError { problems })
}

/// Resolves and plans the inputs, and builds the context every kernel and check reads.
pub(crate) fn prepare(
    incident: &Incident,
    overrides: &InputOverrides,
    series: bool,
) -> Result<(Ctx, Tables), InputError> {
    prepare_sharded(incident, overrides, series, false)
}

/// [`prepare`], for a run whose tables are folded on several machines (`sharded`).
pub(crate) fn prepare_sharded(
    incident: &Incident,
    overrides: &InputOverrides,
    series: bool,
    sharded: bool,
) -> Result<(Ctx, Tables), InputError> {
    let mut problems = Vec::new();
    let tables = plan_tables(
        &incident.path,
        &incident.inputs,
        overrides,
        Some(incident.plan.mode()),
        &mut problems,
    );
    check_columns(incident, &tables, &mut problems);
    check_outputs(incident, overrides, &tables, &mut problems);
    if !problems.is_empty() {
        problems.extend(validate_values(&tables));
        return Err(InputError { problems });
    }
    let ctx = Ctx {
        plan: incident.plan.clone(),
        thresholds: incident.thresholds.clone(),
        root_cause_url: incident.root_cause_url.clone(),
        columns: Columns {
            requests: tables.requests.present.clone(),
            receipts: tables.receipts.as_ref().map(|r| r.present.clone()),
        },
        series,
        flags: incident.flags.clone(),
        statistics: incident.statistics,
        captured_state: tables.captured.is_some(),
        sharded,
        first_pass_samples: std::env::var_os("ROLLPROOF_NO_SAMPLE_CAPTURE").is_none(),
    };
    Ok((ctx, tables))
}

/// A check the incident asks for by name must not pass or skip silently because of a naming
/// mistake: no expected pin among the columns, `[cache]` without either cache column, or a table
/// that looks like the other one (receipts given as requests, or the reverse) is an input error,
/// with the columns found and the closest matches.
fn check_columns(incident: &Incident, tables: &Tables, problems: &mut Vec<Problem>) {
    let requests = &tables.requests;
    if !requests.files.is_empty() {
        let columns = requests.source_columns();
        let named = incident.plan.pins_named();
        if !named.is_empty() && !named.iter().any(|c| requests.present.contains(c)) {
            problems.push(missing_columns_problem(
                "no column of the expected pins",
                &named,
                &columns,
                requests,
                "the checks `pins` and `mixed_versions` would verify nothing",
            ));
        }
        let cache = incident
            .plan
            .pin_sets()
            .iter()
            .any(|s| s.namespace.is_some());
        if cache
            && ![Col::CacheNs, Col::CacheHit]
                .iter()
                .any(|c| requests.present.contains(c))
        {
            problems.push(missing_columns_problem(
                "neither cache column",
                &[Col::CacheNs, Col::CacheHit],
                &columns,
                requests,
                "[cache] asks for the cache rotation check",
            ));
        }
        if looks_like(&columns, RECEIPT_ONLY)
            && !requests.present.iter().any(|c| REQUEST_ONLY.contains(c))
        {
            problems.push(
                Problem::new(
                    format!("receipts given as the requests (columns are {})", ingest::list_columns(&columns)),
                    "request logs: one row per request, with status, latency or pins",
                )
                .file(requests.files[0].location.shown_path())
                .hint("the receipts go in [inputs] receipts (or `--receipts`), the request logs in [inputs] requests"),
            );
        }
    }
    if let Some(receipts) = tables.receipts.as_ref().filter(|r| !r.files.is_empty()) {
        let columns = receipts.source_columns();
        let request_like: Vec<&str> = REQUEST_ONLY.iter().map(|c| c.name()).collect();
        let receipt_present = receipts
            .present
            .iter()
            .any(|c| !matches!(c, Col::RTs | Col::RRequestId));
        if !receipt_present
            && request_like
                .iter()
                .filter(|n| columns.contains(**n))
                .count()
                >= 2
        {
            problems.push(
                Problem::new(
                    format!("request logs given as the receipts (columns are {})", ingest::list_columns(&columns)),
                    "side-effect receipts: idempotency_key, effect, writer_id, decision",
                )
                .file(receipts.files[0].location.shown_path())
                .hint("the request logs go in [inputs] requests, the receipts in [inputs] receipts (or `--receipts`)"),
            );
        }
    }
}

/// An output that is one of the inputs would overwrite the evidence the report hashes: refused.
fn check_outputs(
    incident: &Incident,
    overrides: &InputOverrides,
    tables: &Tables,
    problems: &mut Vec<Problem>,
) {
    use std::os::unix::fs::MetadataExt;
    let outputs = &overrides.outputs;
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let mut inputs: Vec<PathBuf> = vec![incident.path.clone()];
    let base = incident.path.parent().unwrap_or(Path::new(""));
    inputs.extend(overrides.mapping.clone());
    inputs.extend(incident.inputs.mapping.as_ref().map(|m| base.join(m)));
    inputs.extend(
        tables
            .all()
            .flat_map(|t| t.files.iter())
            .filter_map(|f| match &f.location {
                ingest::location::Location::Local(p) => Some(p.clone()),
                ingest::location::Location::Remote(_) => None,
            }),
    );
    for output in outputs {
        let Some(out) = id(output) else { continue };
        if let Some(input) = inputs.iter().find(|i| id(i) == Some(out)) {
            problems.push(
                Problem::new(
                    format!("an output that is an input (`{}`)", input.display()),
                    "reports written beside the inputs, never over them",
                )
                .file(output)
                .hint("the report hashes its inputs as evidence; choose another output path"),
            );
        }
    }
}

/// Receipt columns a request log does not have.
const RECEIPT_ONLY: &[&str] = &[
    "receipt_id",
    "idempotency_key",
    "writer_id",
    "decision",
    "effect",
    "effect_id",
];
/// Request columns that say "one row per request".
const REQUEST_ONLY: &[Col] = &[
    Col::Status,
    Col::LatencyMs,
    Col::BuildId,
    Col::GitSha,
    Col::ModelVer,
    Col::PromptVer,
    Col::IndexHash,
    Col::RerankConf,
    Col::TokVer,
    Col::AnalyzerConf,
    Col::CacheNs,
    Col::CacheHit,
    Col::DeltaS,
    Col::Coverage,
    Col::LambdaState,
];

fn looks_like(columns: &std::collections::BTreeSet<String>, names: &[&str]) -> bool {
    names.iter().filter(|n| columns.contains(**n)).count() >= 2
}

fn missing_columns_problem(
    what: &str,
    wanted: &[Col],
    columns: &std::collections::BTreeSet<String>,
    table: &TablePlan,
    why: &str,
) -> Problem {
    let names: Vec<String> = wanted.iter().map(|c| format!("`{}`", c.name())).collect();
    let mut suggestions = Vec::new();
    for col in wanted {
        if let Some(close) = crate::error::closest(col.name(), columns.iter().map(String::as_str)) {
            suggestions.push(format!("{} = \"{close}\"", col.name()));
        }
    }
    let hint = if suggestions.is_empty() {
        format!("{why}; name the source columns in a mapping file, [requests] section (see docs/reference/inputs.md)")
    } else {
        format!(
            "{why}; did you mean {}? Map them in a mapping file: [requests] {}",
            suggestions
                .iter()
                .map(|s| format!(
                    "`{}`",
                    s.split(" = ").nth(1).unwrap_or_default().trim_matches('"')
                ))
                .collect::<Vec<_>>()
                .join(", "),
            suggestions.join(", ")
        )
    };
    Problem::new(
        format!(
            "{what} ({}) among the {} columns ({})",
            names.join(", "),
            match table.role {
                "requests" | "receipts" => format!("{}'", table.role),
                other => format!("{other} file's"),
            },
            ingest::list_columns(columns)
        ),
        "the columns the incident names, or a mapping to them",
    )
    .file(table.files[0].location.shown_path())
    .hint(hint)
}

/// Reads every column of every planned file, for the value problems alone: run when the audit
/// cannot go on, so that those are reported with the others.
fn validate_values(tables: &Tables) -> Vec<Problem> {
    let units: Vec<(&TablePlan, ingest::Unit)> = tables
        .all()
        .flat_map(|t| t.units().into_iter().map(move |u| (t, u)))
        .collect();
    let mut problems: Vec<Problem> = units
        .par_iter()
        .flat_map_iter(|(table, unit)| {
            let wanted: Vec<Col> = table.present.iter().copied().collect();
            match table.read_unit(*unit, &wanted, |_| {}) {
                Ok(_) => Vec::new(),
                Err(e) => e.problems,
            }
        })
        .collect();
    problems.sort_by(|a, b| (&a.file, &a.location).cmp(&(&b.file, &b.location)));
    problems.dedup();
    problems
}

/// The planned tables of a run.
pub(crate) struct Tables {
    pub(crate) requests: TablePlan,
    /// `None` when no receipts were given.
    pub(crate) receipts: Option<TablePlan>,
    /// The gold set after the rollback and on the last known good stack, when given.
    gold: Option<TablePlan>,
    gold_baseline: Option<TablePlan>,
    /// The state dump made before the flip, when given.
    captured: Option<ingest::captured::CapturedState>,
}

impl Tables {
    pub(crate) fn get(&self, table: Table) -> Option<&TablePlan> {
        match table {
            Table::Requests => Some(&self.requests),
            Table::Receipts => self.receipts.as_ref(),
        }
    }

    /// Requests first, then receipts, then the gold files: the order of the report's `inputs`.
    pub(crate) fn all(&self) -> impl Iterator<Item = &TablePlan> {
        std::iter::once(&self.requests)
            .chain(self.receipts.as_ref())
            .chain(self.gold.as_ref())
            .chain(self.gold_baseline.as_ref())
    }
}

/// Reads the gold files (small: a gold set is hundreds of questions) into one row per question,
/// with each file's counts.
fn read_gold(
    tables: &Tables,
) -> Result<(Option<checks::gold_set::Gold>, Vec<UnitCounts>), InputError> {
    let (Some(run), Some(base)) = (&tables.gold, &tables.gold_baseline) else {
        return Ok((None, Vec::new()));
    };
    let wanted = checks::gold_set::columns();
    type Side = (checks::gold_set::GoldSide, Vec<UnitCounts>);
    let read = |plan: &TablePlan| -> Result<Side, InputError> {
        let empty = || -> Side {
            (
                checks::gold_set::GoldSide::default(),
                vec![UnitCounts::default(); plan.files.len()],
            )
        };
        plan.units()
            .par_iter()
            .try_fold(empty, |(mut side, mut counts), unit| {
                let c = plan.read_unit(*unit, &wanted, |batch| side.update(batch))?;
                counts[unit.file].add(&c);
                Ok::<Side, InputError>((side, counts))
            })
            .try_reduce(empty, |(mut a, mut ac), (b, bc)| {
                a.merge(b);
                for (x, y) in ac.iter_mut().zip(&bc) {
                    x.add(y);
                }
                Ok((a, ac))
            })
    };
    let (run_side, mut counts) = read(run)?;
    let (base_side, base_counts) = read(base)?;
    counts.extend(base_counts);
    Ok((
        Some(checks::gold_set::Gold {
            run: run_side,
            baseline: base_side,
        }),
        counts,
    ))
}

/// Per-file counts of the two main passes.
#[derive(Default)]
struct FileCounts {
    requests: Vec<UnitCounts>,
    receipts: Vec<UnitCounts>,
}

/// Resolves the inputs and reads their schemas: which files, which columns. Problems are
/// collected, not returned: the files that could be planned are kept, so that their values can
/// still be checked.
fn plan_tables(
    incident_path: &Path,
    inputs: &InputPaths,
    overrides: &InputOverrides,
    mode: Option<Mode>,
    problems: &mut Vec<Problem>,
) -> Tables {
    let (request_files, receipt_files, mapping) =
        resolve_inputs(incident_path, inputs, overrides, problems);
    let requests = ingest::plan(
        Table::Requests,
        "requests",
        request_files,
        &mapping,
        problems,
    );
    let receipts = (!receipt_files.is_empty()).then(|| {
        ingest::plan(
            Table::Receipts,
            "receipts",
            receipt_files,
            &mapping,
            problems,
        )
    });
    if mode == Some(Mode::Canary)
        && !requests.present.contains(&Col::Arm)
        && !requests.files.is_empty()
    {
        problems.push(
            Problem::new("no `arm` column in the requests", "an `arm` column naming each request's arm")
                .column("arm")
                .hint("canary mode compares arms; map the column in the mapping file, e.g. [requests] arm = \"deployment\""),
        );
    }
    let base = incident_path.parent().unwrap_or(Path::new(""));
    let gold_plan = |specs: &Vec<InputSpec>, role: &'static str, problems: &mut Vec<Problem>| {
        if specs.is_empty() {
            return None;
        }
        let files = ingest::resolve(role, specs, base, true, problems);
        let plan = ingest::plan(Table::Requests, role, files, &mapping, problems);
        if !plan.files.is_empty() && !plan.present.contains(&Col::QuestionId) {
            problems.push(
                missing_columns_problem(
                    "no question id",
                    &[Col::QuestionId],
                    &plan.source_columns(),
                    &plan,
                    "gold rows are ts, question_id, delta_s, coverage, lambda_state and pins",
                )
                .column("question_id"),
            );
        }
        Some(plan)
    };
    let gold = gold_plan(&inputs.gold, "gold", problems);
    let gold_baseline = gold_plan(&inputs.gold_baseline, "gold_baseline", problems);
    if gold.is_some() != gold_baseline.is_some() {
        problems.push(
            Problem::new(
                "one gold file without the other",
                "[inputs] gold and gold_baseline together",
            )
            .column(if gold.is_some() {
                "inputs.gold_baseline"
            } else {
                "inputs.gold"
            })
            .hint("the gold set is compared with the same questions on the last known good stack"),
        );
    }
    let captured =
        inputs
            .captured_state
            .as_ref()
            .and_then(|p| match ingest::captured::load(base, p) {
                Ok(c) => Some(c),
                Err(found) => {
                    problems.extend(found);
                    None
                }
            });
    Tables {
        requests,
        receipts,
        gold,
        gold_baseline,
        captured,
    }
}

fn resolve_inputs(
    incident_path: &Path,
    inputs: &InputPaths,
    overrides: &InputOverrides,
    problems: &mut Vec<Problem>,
) -> (Vec<Resolved>, Vec<Resolved>, Mapping) {
    let base = incident_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let cwd = PathBuf::new();
    let pick = |cli: &Vec<String>, file: &Vec<InputSpec>| {
        if cli.is_empty() {
            (file.clone(), base.clone(), true)
        } else {
            let specs = cli
                .iter()
                .map(|pattern| InputSpec {
                    pattern: pattern.clone(),
                    source: None,
                })
                .collect();
            (specs, cwd.clone(), false)
        }
    };
    let (requests, requests_base, requests_in_file) = pick(&overrides.requests, &inputs.requests);
    let (receipts, receipts_base, receipts_in_file) = pick(&overrides.receipts, &inputs.receipts);
    if requests.is_empty() {
        problems.push(
            Problem::new(
                "no requests input",
                "[inputs] requests = \"…\" or `--requests PATH`",
            )
            .file(incident_path)
            .column("inputs.requests")
            .hint("name the request log files (globs allowed) in the incident file"),
        );
    }
    let request_files = ingest::resolve(
        Table::Requests.name(),
        &requests,
        &requests_base,
        requests_in_file,
        problems,
    );
    let receipt_files = ingest::resolve(
        Table::Receipts.name(),
        &receipts,
        &receipts_base,
        receipts_in_file,
        problems,
    );
    let mapping_path = match (&overrides.mapping, &inputs.mapping) {
        (Some(p), _) => Some((p.clone(), false)),
        (None, Some(p)) => Some((base.join(p), true)),
        (None, None) => None,
    };
    let mapping = match mapping_path {
        Some((p, from_incident)) => {
            let (mapping, found) = Mapping::load_lenient(&p, from_incident);
            problems.extend(found);
            mapping
        }
        None => Mapping::default(),
    };
    (request_files, receipt_files, mapping)
}

/// The kernels of every check of the mode (each once), and the ones every audit runs.
pub(crate) fn kernels_of(ctx: &Ctx) -> Vec<&'static dyn AnyKernel> {
    let mut kernels: Vec<&'static dyn AnyKernel> = checks::ALWAYS.to_vec();
    if ctx.series {
        kernels.push(&checks::series::SERIES);
    }
    if ctx.plan.mode() == Mode::Rollback {
        kernels.push(&checks::impact::IMPACT);
        // The impact section's user counts live in the users table `mixed_versions` shares.
        kernels.push(&checks::users::USERS);
    }
    for check in checks::of_mode(ctx.plan.mode()) {
        for &k in check.kernels {
            if !kernels.iter().any(|have| have.name() == k.name()) {
                kernels.push(k);
            }
        }
    }
    kernels
}

/// Runs the kernels stage by stage; the passes of one stage (one per table) run side by side.
/// With partials, the stages they hold are merged from them instead of folded here.
fn run_stages(
    ctx: &Ctx,
    tables: &Tables,
    kernels: &[&'static dyn AnyKernel],
    input: &StageInput<'_>,
    stages: &[Stage],
    progress: Progress<'_>,
    timings: &Timings,
) -> Result<(States, FileCounts), InputError> {
    let mut states = States::default();
    let mut counts = FileCounts::default();
    // Keyed states finished range by range, merged into the rest of their state below.
    let mut by_ranges: Vec<(&'static str, Box<dyn std::any::Any + Send + Sync>)> = Vec::new();
    let keyed = crate::distributed::keyed_kernels(kernels, stages);
    let ranged = match input {
        StageInput::Partials {
            folds,
            key_ranges: KeyRanges::Split(ranges),
            ..
        } => {
            let done = crate::engine::finish_ranges(ctx, &keyed, *ranges, |k, range| {
                crate::distributed::range_state(ctx, folds, k, range, *ranges)
            })?;
            by_ranges = keyed.iter().map(|k| k.name()).zip(done).collect();
            timings.mark("key ranges");
            true
        }
        StageInput::Partials {
            key_ranges: KeyRanges::Finished(done),
            ..
        } => {
            for k in &keyed {
                by_ranges.push((k.name(), crate::distributed::merge_sections(ctx, done, *k)?));
            }
            true
        }
        _ => false,
    };
    // Per table, what each unit held as the pass before the samples read it: the `ts` range of
    // its rows, so that look-ups of audited rows only skip the units that hold none.
    let mut unit_ranges: Vec<(Table, UnitRanges)> = Vec::new();
    for &stage in stages {
        let passes: Vec<(Table, Vec<&dyn AnyKernel>)> = [Table::Receipts, Table::Requests]
            .into_iter()
            .map(|table| {
                let of_pass = kernels
                    .iter()
                    .copied()
                    .filter(|k| k.stage() == stage && k.table() == table)
                    .collect();
                (table, of_pass)
            })
            .filter(|(_, of_pass): &(Table, Vec<&dyn AnyKernel>)| !of_pass.is_empty())
            .collect();
        // Look-ups report no progress: they are short, and a second bar would confuse.
        let quiet = |_: Table, _: u64, _: u64| {};
        let progress = if stage == Stage::Samples {
            &quiet
        } else {
            progress
        };
        let prior = &states;
        let from_partials: Option<&[crate::partial::Body]> = match input {
            StageInput::Local => None,
            StageInput::Partials { folds, .. } if stage != Stage::Samples => Some(folds),
            StageInput::Partials { samples, .. } if !samples.is_empty() => Some(samples),
            StageInput::Partials {
                local_samples: false,
                samples,
                ..
            } => Some(samples),
            StageInput::Partials { .. } => None,
        };
        if let (Stage::Samples, Some(samples)) = (stage, from_partials) {
            let lookups: Vec<&'static dyn AnyKernel> = kernels
                .iter()
                .copied()
                .filter(|k| k.stage() == Stage::Samples)
                .collect();
            crate::distributed::check_samples_digest(ctx, &lookups, prior, samples)?;
        }
        let outputs: Vec<Result<pass::PassOutput, InputError>> = passes
            .par_iter()
            .map(|(table, of_pass)| {
                let empty: Vec<_> = of_pass.iter().map(|k| k.init(ctx, prior)).collect();
                if let Some(parts) = from_partials {
                    if stage == Stage::Samples {
                        let frames = matches!(
                            input,
                            StageInput::Partials {
                                local_samples: false,
                                ..
                            }
                        );
                        crate::distributed::check_targets(
                            tables, *table, of_pass, &empty, parts, frames,
                        )?;
                    }
                    return crate::distributed::merge_pass(
                        ctx,
                        tables,
                        *table,
                        of_pass,
                        empty,
                        parts,
                        ranged && stage != Stage::Samples,
                    );
                }
                let idle = of_pass
                    .iter()
                    .zip(&empty)
                    .all(|(k, s)| k.is_idle(s.as_ref()));
                match tables.get(*table) {
                    Some(plan) if !idle => {
                        let mut units = plan.units();
                        let seen = unit_ranges.iter().find(|(t, _)| t == table);
                        if let (Stage::Samples, Some((_, ranges))) = (stage, seen) {
                            if of_pass.iter().all(|k| k.audited_only()) {
                                units = audited_units(ctx, units, ranges);
                            }
                        }
                        let mut out = pass::run(ctx, plan, &units, of_pass, prior, progress)?;
                        if stage != Stage::Samples {
                            out.ts_ranges = out.counts.iter().map(|c| c.ts_range).collect();
                        }
                        out.counts = out.per_file(plan, &units);
                        Ok(out)
                    }
                    // No input for this table, or nothing to look for: the kernels' states stay
                    // empty (a table that was not given is empty).
                    _ => Ok(pass::PassOutput {
                        states: empty,
                        counts: Vec::new(),
                        ts_ranges: Vec::new(),
                        units_read: 0,
                    }),
                }
            })
            .collect();
        let mut read = Vec::new();
        for ((table, of_pass), output) in passes.iter().zip(outputs) {
            let mut output = output?;
            read.push(format!(
                "{} {}",
                table.name(),
                crate::words::plural(output.units_read as u64, "unit", "units")
            ));
            if !output.ts_ranges.is_empty() {
                unit_ranges.push((*table, std::mem::take(&mut output.ts_ranges)));
            }
            if stage != Stage::Samples {
                match table {
                    Table::Requests => counts.requests = output.counts,
                    Table::Receipts => counts.receipts = output.counts,
                }
            }
            for (kernel, mut state) in of_pass.iter().zip(output.states) {
                if let Some(at) = by_ranges.iter().position(|(n, _)| *n == kernel.name()) {
                    kernel.merge(state.as_mut(), by_ranges.swap_remove(at).1);
                }
                kernel.settle(ctx, state.as_mut(), &states);
                states.insert(*kernel, state);
            }
        }
        let phase = match stage {
            Stage::Receipts => "receipts pass",
            Stage::Requests => "requests pass",
            Stage::Samples => "sample look-ups",
        };
        timings.mark(&format!("{phase} ({})", read.join(", ")));
    }
    Ok((states, counts))
}

/// Per unit of a table, the `ts` range of its rows ([`UnitCounts::ts_range`]).
type UnitRanges = Vec<Option<(Micros, Micros)>>;

/// The units of `units` whose rows, as an earlier pass read them (`ranges`, one per unit), reach
/// into [`crate::plan::Plan::audited_span`]; all of them when the ranges are not of these units.
/// Real logs are written in time order, so the row groups before the flip hold no audited row.
fn audited_units(
    ctx: &Ctx,
    units: Vec<ingest::Unit>,
    ranges: &[Option<(Micros, Micros)>],
) -> Vec<ingest::Unit> {
    if ranges.len() != units.len() {
        return units;
    }
    let (lo, hi) = ctx.plan.audited_span();
    units
        .into_iter()
        .zip(ranges)
        .filter(|(_, range)| range.is_some_and(|(first, last)| last >= lo && first <= hi))
        .map(|(unit, _)| unit)
        .collect()
}

/// The SHA-256 of each planned file, as the partial that folded its first unit recorded it.
/// The settled states of `stages`, merged from partials.
pub(crate) fn run_stages_of(
    ctx: &Ctx,
    tables: &Tables,
    kernels: &[&'static dyn AnyKernel],
    folds: &[crate::partial::Body],
    stages: &[Stage],
) -> Result<States, InputError> {
    let quiet = |_: Table, _: u64, _: u64| {};
    let input = StageInput::Partials {
        folds,
        samples: &[],
        local_samples: true,
        key_ranges: KeyRanges::Whole,
    };
    let (states, _) = run_stages(
        ctx,
        tables,
        kernels,
        &input,
        stages,
        &quiet,
        &Timings::new(),
    )?;
    Ok(states)
}

/// The gold files, which the merge reads itself, are hashed here.
fn partial_hashes(
    tables: &Tables,
    folds: &[crate::partial::Body],
    files: &[&ingest::SourceFile],
    read_whole: bool,
) -> Result<Vec<Option<String>>, InputError> {
    let firsts = crate::distributed::first_unit_ids(tables);
    let (sharded, gold) = files.split_at(firsts.len());
    let recorded: std::collections::BTreeMap<&str, &Option<String>> = folds
        .iter()
        .flat_map(|b| &b.files)
        .map(|f| (f.unit.as_str(), &f.sha256))
        .collect();
    debug_assert_eq!(sharded.len(), firsts.len());
    let mut hashes: Vec<Option<String>> = firsts
        .iter()
        .map(|id| recorded.get(id.as_str()).and_then(|h| (*h).clone()))
        .collect();
    hashes.extend(hash_files(gold, read_whole)?);
    Ok(hashes)
}

fn hash_files(
    files: &[&ingest::SourceFile],
    read_whole: bool,
) -> Result<Vec<Option<String>>, InputError> {
    let hashes: Vec<Result<Option<String>, Problem>> = files
        .par_iter()
        .map(|f| f.location.sha256(read_whole))
        .collect();
    let mut problems = Vec::new();
    let hashes = hashes
        .into_iter()
        .map(|h| {
            h.unwrap_or_else(|p| {
                problems.push(p);
                None
            })
        })
        .collect();
    if problems.is_empty() {
        Ok(hashes)
    } else {
        Err(InputError { problems })
    }
}

fn totals(plan: &TablePlan, counts: &[UnitCounts]) -> TableTotals {
    TableTotals {
        files: plan.files.len() as u64,
        rows: counts.iter().map(|c| c.rows_read).sum(),
        rejected: counts.iter().map(|c| c.rejected_no_ts).sum(),
        dropped: counts.iter().map(|c| c.dropped).sum(),
    }
}

/// The resident memory now and at its peak so far, and the CPU time (user + system, every
/// thread) used so far, as far as the system tells (Linux: `/proc/self/status` and
/// `/proc/self/stat`, whose CPU times are in the fixed 1/100 s ticks of its user interface).
fn resources() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().strip_suffix(" kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let mut parts = Vec::new();
    if let (Some(now), Some(peak)) = (field("VmRSS:"), field("VmHWM:")) {
        parts.push(format!("RSS {} MiB, peak {} MiB", now >> 10, peak >> 10));
    }
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces: utime and
    // stime are the file's 14th and 15th fields, the 12th and 13th of these.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    if let (Some(user), Some(system)) = (ticks(11), ticks(12)) {
        parts.push(format!("CPU {:.2} s", (user + system) as f64 / 100.0));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("  ({})", parts.join(", "))
    }
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
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "timing: {:>8.3} s  {phase}{}",
                self.start.elapsed().as_secs_f64(),
                resources()
            );
        }
    }
}
