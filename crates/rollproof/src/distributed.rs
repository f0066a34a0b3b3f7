//! Past one machine: the units of work of a set of inputs (`plan`), a partial state folded from
//! some of them (`partial`), and the merge of partials into the report of one audit (`merge`).
//!
//! ```text
//! plan ─▶ units ─▶ partial (fold, per machine) ─┬─▶ merge ─▶ report        (look-ups read here)
//!                                               └─▶ combine ─▶ partial --samples-from (per machine)
//!                                                                     ─▶ merge ─▶ report
//! ```
//!
//! A partial holds the unsettled states of the receipts and requests stages (every kernel of
//! the mode, and the per-minute series), the row counts of each unit and the identity of each
//! file whose first unit it folded. `merge` plans the inputs itself (footers only), checks that
//! every planned unit was folded exactly once, merges the states and finishes exactly as `audit`
//! does: the report is byte-identical. The sample look-ups need the merged states (their targets
//! are the mixed users, duplicated keys and orphan request ids of all shards): `merge` reads
//! them itself unless sample partials, folded with `partial --samples-from` from the combined
//! fold partials, are given.

use std::any::Any;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::audit::{
    finish_audit, kernels_of, prepare_sharded, run_stages_of, AuditOptions, InputOverrides,
    KeyRanges, StageInput, Tables,
};
use crate::columns::Table;
use crate::engine::pass::{self, PassOutput, Progress};
use crate::engine::{AnyKernel, Stage, States};
use crate::error::{InputError, Problem};
use crate::incident::Incident;
use crate::ingest::{TablePlan, Unit, UnitCounts};
use crate::partial::{Body, FileEntry, Kind, UnitEntry};
use crate::plan::Ctx;
use crate::report::Report;

type State = Box<dyn Any + Send + Sync>;
/// A decoded partial and the file it came from.
type Named = (PathBuf, Body);

/// The id of a unit: `ROLE:PATH` for a whole file, `ROLE:PATH#ROW_GROUP` for a Parquet row group
/// (the path as reports show it).
pub(crate) fn unit_id(plan: &TablePlan, unit: &Unit) -> String {
    let file = &plan.files[unit.file];
    match unit.row_group {
        Some(rg) => format!("{}:{}#{rg}", plan.role, file.display),
        None => format!("{}:{}", plan.role, file.display),
    }
}

/// The tables a partial folds, in plan order.
fn sharded_tables(tables: &Tables) -> impl Iterator<Item = &TablePlan> {
    std::iter::once(&tables.requests).chain(tables.receipts.as_ref())
}

/// The id of the first unit of every file of the requests and the receipts, in the order of the
/// report's `inputs`.
pub(crate) fn first_unit_ids(tables: &Tables) -> Vec<String> {
    first_units(tables).into_iter().map(|(id, _)| id).collect()
}

/// Every file of the requests and the receipts with the id of its first unit, in the order of the
/// report's `inputs`.
fn first_units(tables: &Tables) -> Vec<(String, &crate::ingest::SourceFile)> {
    sharded_tables(tables)
        .flat_map(|plan| {
            // Units come file by file: a file's first unit is the first with its index.
            let mut firsts = Vec::with_capacity(plan.files.len());
            for unit in plan.units() {
                if firsts.len() == unit.file {
                    firsts.push((unit_id(plan, &unit), &plan.files[unit.file]));
                }
            }
            firsts
        })
        .collect()
}

/// One unit of work, as `rollproof plan` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WorkUnit {
    pub id: String,
    /// `requests` or `receipts`.
    pub role: String,
    pub path: String,
    pub format: String,
    /// The Parquet row group; absent: the whole file.
    pub row_group: Option<usize>,
    /// Rows by the file's footer (Parquet); absent when only reading tells.
    pub rows: Option<u64>,
}

/// The units of work of an incident's inputs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WorkPlan {
    pub incident: String,
    /// The digest every partial for this plan carries.
    pub digest: String,
    pub units: Vec<WorkUnit>,
}

fn load(path: &Path, overrides: &InputOverrides) -> Result<Incident, InputError> {
    let mut incident = Incident::load(path)?;
    let problems = incident.override_thresholds(&overrides.thresholds);
    if !problems.is_empty() {
        return Err(InputError { problems });
    }
    Ok(incident)
}

fn digest_of(incident: &Incident, overrides: &InputOverrides) -> Result<String, InputError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| {
            InputError::one(
                Problem::new(format!("an unreadable file ({e})"), "a readable file").file(p),
            )
        })
    };
    let text = read(&incident.path)?;
    let base = incident.path.parent().unwrap_or(Path::new(""));
    let mapping = match (&overrides.mapping, &incident.inputs.mapping) {
        (Some(p), _) => Some(read(p)?),
        (None, Some(p)) => Some(read(&base.join(p))?),
        (None, None) => None,
    };
    Ok(crate::partial::digest(
        &text,
        mapping.as_deref(),
        &overrides.thresholds,
    ))
}

/// The units of work of the incident's inputs (as `audit` would read them).
pub fn plan(path: &Path, overrides: &InputOverrides) -> Result<WorkPlan, InputError> {
    let incident = load(path, overrides)?;
    let (_, tables) = prepare_sharded(&incident, overrides, false, true)?;
    let mut units = Vec::new();
    for plan in sharded_tables(&tables) {
        for unit in plan.units() {
            let file = &plan.files[unit.file];
            units.push(WorkUnit {
                id: unit_id(plan, &unit),
                role: plan.role.to_string(),
                path: file.display.clone(),
                format: file.source.name().to_string(),
                row_group: unit.row_group,
                rows: unit.row_group.map(|rg| file.layout.row_groups[rg]),
            });
        }
    }
    Ok(WorkPlan {
        incident: path.display().to_string(),
        digest: digest_of(&incident, overrides)?,
        units,
    })
}

/// What `partial` folds.
#[derive(Debug, Clone, Default)]
pub struct PartialRequest {
    /// Unit ids (as `plan` prints them); empty: every unit of the tables named on the command
    /// line (`--requests`, `--receipts`), or of every table when neither is.
    pub units: Vec<String>,
    /// A combined partial of every fold: fold the sample look-ups its states ask for instead.
    pub samples_from: Option<(PathBuf, Vec<u8>)>,
    /// Read objects in a store whole to hash them.
    pub hash_inputs: bool,
    /// A combined partial of every receipts unit: the requests' partial then keeps only the
    /// request ids the receipts name (a far smaller partial) instead of every one.
    pub receipts_from: Option<(PathBuf, Vec<u8>)>,
    /// Frames: the id of the one unit this partial folds (`requests:dataframe#3`), given by the
    /// engine instead of a file's.
    pub label: Option<String>,
    /// Frames: every unit id of the run, which a `samples_from` partial must hold exactly once.
    pub expected_units: Option<Vec<String>>,
    /// Write the states that grow with a key (users, idempotency keys, request ids) as this
    /// many key ranges, which a merge finishes one at a time (0 or 1: not split).
    pub key_partitions: usize,
}

/// The planned units a partial folds, per table (requests, receipts).
fn select(
    tables: &Tables,
    overrides: &InputOverrides,
    request: &PartialRequest,
) -> Result<Vec<Vec<Unit>>, InputError> {
    let named = |t: Table| match t {
        Table::Requests => !overrides.requests.is_empty(),
        Table::Receipts => !overrides.receipts.is_empty(),
    };
    let any_named = named(Table::Requests) || named(Table::Receipts);
    // A frame's partial folds the table its label names (the other one is a schema file).
    let framed = request.label.as_deref().map(|l| {
        if l.starts_with("receipts:") {
            Table::Receipts
        } else {
            Table::Requests
        }
    });
    let mut wanted: BTreeMap<&str, bool> =
        request.units.iter().map(|u| (u.as_str(), false)).collect();
    let mut out = Vec::new();
    for plan in sharded_tables(tables) {
        let mut chosen = Vec::new();
        for unit in plan.units() {
            let take = if let Some(t) = framed {
                plan.table == t
            } else if request.units.is_empty() {
                !any_named || named(plan.table)
            } else {
                match wanted.get_mut(unit_id(plan, &unit).as_str()) {
                    Some(seen) => {
                        *seen = true;
                        true
                    }
                    None => false,
                }
            };
            if take {
                chosen.push(unit);
            }
        }
        out.push(chosen);
    }
    let unknown: Vec<&str> = wanted
        .iter()
        .filter(|(_, s)| !**s)
        .map(|(u, _)| *u)
        .collect();
    if !unknown.is_empty() {
        let all: Vec<String> = sharded_tables(tables)
            .flat_map(|p| p.units().iter().map(|u| unit_id(p, u)).collect::<Vec<_>>())
            .collect();
        let problems = unknown
            .iter()
            .map(|u| {
                let close = crate::error::closest(u, all.iter().map(String::as_str));
                Problem::new(
                    format!("unit `{u}`, which is not among the inputs' units"),
                    "a unit id as `rollproof plan` prints it",
                )
                .column("--unit")
                .hint(match close {
                    Some(c) => format!("did you mean `{c}`? Run `rollproof plan` with the same incident file and inputs"),
                    None => "run `rollproof plan` with the same incident file and inputs for the ids".to_string(),
                })
            })
            .collect();
        return Err(InputError { problems });
    }
    Ok(out)
}

fn columns_of(ctx: &Ctx) -> Vec<(String, Vec<String>)> {
    let mut out = vec![(
        Table::Requests.name().to_string(),
        ctx.columns
            .requests
            .iter()
            .map(|c| c.name().to_string())
            .collect(),
    )];
    if let Some(r) = &ctx.columns.receipts {
        out.push((
            Table::Receipts.name().to_string(),
            r.iter().map(|c| c.name().to_string()).collect(),
        ));
    }
    out
}

/// Folds the chosen units into a partial state (the bytes of a partial-state file).
pub fn partial(
    path: &Path,
    overrides: &InputOverrides,
    request: &PartialRequest,
    progress: Progress<'_>,
) -> Result<Vec<u8>, InputError> {
    let incident = load(path, overrides)?;
    let digest = digest_of(&incident, overrides)?;
    let (ctx, tables) = prepare_sharded(&incident, overrides, true, true)?;
    let chosen = select(&tables, overrides, request)?;
    let kernels = kernels_of(&ctx);
    let plans: Vec<&TablePlan> = sharded_tables(&tables).collect();

    let (kind, stage_kernels, prior) = match &request.samples_from {
        None => {
            let of: Vec<&'static dyn AnyKernel> = kernels
                .iter()
                .copied()
                .filter(|k| k.stage() != Stage::Samples)
                .collect();
            let prior = match &request.receipts_from {
                None => States::default(),
                Some((name, bytes)) => {
                    receipts_prior(&ctx, &tables, &kernels, &digest, name, bytes, request)?
                }
            };
            (Kind::Fold, of, prior)
        }
        Some((name, bytes)) => {
            let prior = Body::decode(name, bytes)?;
            check_compatible(name, &prior, &digest, &ctx)?;
            if prior.kind != Kind::Fold {
                return Err(InputError::one(
                    Problem::new(
                        "a partial of sample look-ups",
                        "a combined partial of the folds (`rollproof merge --partial-out`)",
                    )
                    .file(name)
                    .column("--samples-from"),
                ));
            }
            check_units(
                &expected(&tables, request.expected_units.as_deref()),
                std::slice::from_ref(&(name.clone(), prior.clone())),
                true,
            )?;
            let states = run_stages_of(
                &ctx,
                &tables,
                &kernels,
                &[prior],
                &[Stage::Receipts, Stage::Requests],
            )?;
            let of: Vec<&'static dyn AnyKernel> = kernels
                .iter()
                .copied()
                .filter(|k| k.stage() == Stage::Samples)
                .collect();
            let targets = targets_digest(&ctx, &of, &states);
            (Kind::Samples { targets }, of, states)
        }
    };

    // Both tables side by side; within a stage, the receipts kernels before the requests'.
    let per_table: Vec<Result<PassOutput, InputError>> = plans
        .par_iter()
        .zip(&chosen)
        .map(|(plan, units)| {
            let of: Vec<&dyn AnyKernel> = stage_kernels
                .iter()
                .copied()
                .filter(|k| k.table() == plan.table)
                .map(|k| k as &dyn AnyKernel)
                .collect();
            let empty: Vec<_> = of.iter().map(|k| k.init(&ctx, &prior)).collect();
            let idle = of.iter().zip(&empty).all(|(k, s)| k.is_idle(s.as_ref()));
            if units.is_empty() || idle {
                return Ok(PassOutput {
                    states: empty,
                    counts: vec![UnitCounts::default(); units.len()],
                    ts_ranges: Vec::new(),
                    units_read: 0,
                });
            }
            pass::run(&ctx, plan, units, &of, &prior, progress)
        })
        .collect();
    let mut sections = Vec::new();
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    let mut by_table: Vec<Vec<State>> = Vec::new();
    for ((plan, units), result) in plans.iter().zip(&chosen).zip(per_table) {
        match result {
            Ok(PassOutput { states, counts, .. }) => {
                for (unit, c) in units.iter().zip(&counts) {
                    entries.push(UnitEntry {
                        id: request.label.clone().unwrap_or_else(|| unit_id(plan, unit)),
                        rows_read: c.rows_read,
                        rejected_no_ts: c.rejected_no_ts,
                        dropped: c.dropped,
                    });
                }
                by_table.push(states);
            }
            Err(e) => problems.extend(e.problems),
        }
    }
    if !problems.is_empty() {
        return Err(InputError { problems });
    }
    // Sections in kernel order, whatever the table.
    let mut iters: Vec<std::vec::IntoIter<State>> =
        by_table.into_iter().map(Vec::into_iter).collect();
    // A kernel of a table without input (no receipts given) has its empty state.
    for k in &stage_kernels {
        let state = match plans.iter().position(|p| p.table == k.table()) {
            Some(t) => iters[t].next().expect("one state per kernel"),
            None => k.init(&ctx, &prior),
        };
        sections.extend(encode_sections(*k, state, request.key_partitions));
    }
    if std::env::var_os("ROLLPROOF_TIMINGS").is_some() {
        // A diagnostic for sizing scale-out runs: which states make a partial large.
        for (name, bytes) in &sections {
            eprintln!("section: {:>12} bytes  {name}", bytes.len());
        }
    }
    let files = if kind == Kind::Fold && request.label.is_none() {
        file_entries(&plans, &chosen, request.hash_inputs)?
    } else {
        Vec::new()
    };
    let changed: Vec<Problem> = plans
        .iter()
        .flat_map(|p| p.files.iter())
        .filter_map(|f| f.changed())
        .collect();
    if !changed.is_empty() {
        return Err(InputError { problems: changed });
    }
    Ok(Body {
        tool: env!("CARGO_PKG_VERSION").to_string(),
        digest,
        kind,
        columns: columns_of(&ctx),
        units: entries,
        files,
        sections,
        source: PathBuf::new(),
    }
    .encode())
}

/// The settled receipts states of a combined partial of every receipts unit.
#[allow(clippy::too_many_arguments)]
fn receipts_prior(
    ctx: &Ctx,
    tables: &Tables,
    kernels: &[&'static dyn AnyKernel],
    digest: &str,
    name: &Path,
    bytes: &[u8],
    request: &PartialRequest,
) -> Result<States, InputError> {
    let prior = Body::decode(name, bytes)?;
    check_compatible(name, &prior, digest, ctx)?;
    let all = expected(tables, request.expected_units.as_deref());
    let receipts = Expected {
        ids: all
            .ids
            .iter()
            .filter(|id| id.starts_with("receipts:"))
            .cloned()
            .collect(),
        tables: all.tables,
    };
    let only_receipts = Body {
        units: prior
            .units
            .iter()
            .filter(|u| u.id.starts_with("receipts:"))
            .cloned()
            .collect(),
        ..prior.clone()
    };
    if prior.kind != Kind::Fold || only_receipts.units.len() != prior.units.len() {
        return Err(InputError::one(
            Problem::new(
                "a partial that is not the receipts' alone",
                "a combined partial of every receipts unit (`rollproof merge --partial-out` over the receipts' partials)",
            )
            .file(name)
            .column("--receipts-from"),
        ));
    }
    check_units(&receipts, &[(name.to_path_buf(), only_receipts)], true)?;
    run_stages_of(ctx, tables, kernels, &[prior], &[Stage::Receipts])
}

/// The identity of each file whose first unit was chosen: its size and SHA-256.
fn file_entries(
    plans: &[&TablePlan],
    chosen: &[Vec<Unit>],
    hash_inputs: bool,
) -> Result<Vec<FileEntry>, InputError> {
    let firsts: Vec<(&TablePlan, Unit)> = plans
        .iter()
        .zip(chosen)
        .flat_map(|(plan, units)| {
            units
                .iter()
                .filter(|u| u.row_group.unwrap_or(0) == 0)
                .map(move |u| (*plan, *u))
        })
        .collect();
    let hashed: Vec<Result<FileEntry, Problem>> = firsts
        .par_iter()
        .map(|(plan, unit)| {
            let file = &plan.files[unit.file];
            Ok(FileEntry {
                unit: unit_id(plan, unit),
                size: size_of(&file.location),
                sha256: file.location.sha256(hash_inputs)?,
            })
        })
        .collect();
    let mut problems = Vec::new();
    let entries = hashed
        .into_iter()
        .filter_map(|r| r.map_err(|p| problems.push(p)).ok())
        .collect();
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(InputError { problems })
    }
}

fn size_of(location: &crate::ingest::location::Location) -> Option<u64> {
    match location {
        crate::ingest::location::Location::Local(p) => std::fs::metadata(p).ok().map(|m| m.len()),
        crate::ingest::location::Location::Remote(r) => Some(r.meta.size),
    }
}

/// The digest of the look-ups' targets: sample partials must have been folded for the targets
/// the merge finds.
fn targets_digest(ctx: &Ctx, lookups: &[&'static dyn AnyKernel], prior: &States) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for k in lookups {
        h.update(k.name().as_bytes());
        h.update(k.encode(k.init(ctx, prior).as_mut()));
    }
    crate::ingest::remote::hex(&h.finalize())
}

/// A partial must have been made for this incident, with the same columns.
fn check_compatible(name: &Path, body: &Body, digest: &str, ctx: &Ctx) -> Result<(), InputError> {
    if body.digest != digest {
        return Err(InputError::one(
            Problem::new(
                "a partial made for another incident file, mapping or thresholds",
                "partials made with this incident file, mapping and `--threshold` values",
            )
            .file(name)
            .hint("make the partials and the merge with the same incident file, mapping file and `--threshold` options (`rollproof plan` prints the digest they share)"),
        ));
    }
    let mine = columns_of(ctx);
    if body.columns != mine {
        let show = |c: &[(String, Vec<String>)]| {
            c.iter()
                .map(|(t, cols)| format!("{t}: {}", cols.join(", ")))
                .collect::<Vec<_>>()
                .join("; ")
        };
        return Err(InputError::one(
            Problem::new(
                format!("a partial made with other columns ({})", show(&body.columns)),
                format!("the columns of all the inputs ({})", show(&mine)),
            )
            .file(name)
            .hint("the files of one table differ in their columns; make the partials with `--unit` ids from `rollproof plan`, which plans every file"),
        ));
    }
    check_sections(name, body, &kernels_of(ctx))
}

/// The unit ids a merge expects, in plan order: the plan's, or the ones an engine gave its
/// frames (then there are no files to check).
struct Expected<'a> {
    ids: Vec<String>,
    tables: Option<&'a Tables>,
}

fn expected<'a>(tables: &'a Tables, frames: Option<&[String]>) -> Expected<'a> {
    match frames {
        Some(ids) => Expected {
            ids: ids.to_vec(),
            tables: None,
        },
        None => Expected {
            ids: sharded_tables(tables)
                .flat_map(|p| p.units().iter().map(|u| unit_id(p, u)).collect::<Vec<_>>())
                .collect(),
            tables: Some(tables),
        },
    }
}

/// Every planned unit folded exactly once (`complete`), or at most once.
fn check_units(expected: &Expected<'_>, parts: &[Named], complete: bool) -> Result<(), InputError> {
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    let mut problems = Vec::new();
    let planned = &expected.ids;
    let planned_set: std::collections::BTreeSet<&str> =
        planned.iter().map(String::as_str).collect();
    for (name, body) in parts {
        for unit in &body.units {
            if !planned_set.contains(unit.id.as_str()) {
                problems.push(
                    Problem::new(
                        format!("unit `{}`, which is not among the inputs of this merge", unit.id),
                        "partials of the units `rollproof plan` prints for these inputs",
                    )
                    .file(name)
                    .hint("merge with the same inputs (incident file, `--requests`, `--receipts`) the partials were planned with"),
                );
            } else if let Some(first) = seen.insert(&unit.id, name) {
                problems.push(
                    Problem::new(
                        format!("unit `{}` folded twice (also in `{}`)", unit.id, first.display()),
                        "every unit in exactly one partial",
                    )
                    .file(name)
                    .hint("a retried or speculative task left a second partial; keep one partial per unit"),
                );
            }
        }
    }
    if complete {
        let missing: Vec<&str> = planned
            .iter()
            .map(String::as_str)
            .filter(|u| !seen.contains_key(u))
            .collect();
        if !missing.is_empty() {
            let shown: Vec<String> = missing.iter().take(5).map(|u| format!("`{u}`")).collect();
            problems.push(
                Problem::new(
                    format!(
                        "{} planned unit{} in no partial ({}{})",
                        missing.len(),
                        if missing.len() == 1 { "" } else { "s" },
                        shown.join(", "),
                        if missing.len() > 5 { ", …" } else { "" }
                    ),
                    "every planned unit in exactly one partial",
                )
                .hint("a task failed or its partial was not passed to the merge; fold the missing units with `rollproof partial --unit ID`"),
            );
        }
    }
    // Files that changed between the partial and the merge.
    let Some(tables) = expected.tables else {
        return if problems.is_empty() {
            Ok(())
        } else {
            Err(InputError { problems })
        };
    };
    let files: BTreeMap<String, &crate::ingest::SourceFile> =
        first_units(tables).into_iter().collect();
    for (name, body) in parts {
        for entry in &body.files {
            let Some(file) = files.get(&entry.unit) else {
                continue;
            };
            let now = size_of(&file.location);
            if now.is_some() && entry.size.is_some() && now != entry.size {
                problems.push(
                    Problem::new(
                        format!(
                            "`{}` changed since the partial was made ({} bytes then, {} now)",
                            file.display,
                            entry.size.unwrap_or(0),
                            now.unwrap_or(0)
                        ),
                        "the inputs unchanged between the partials and the merge",
                    )
                    .file(name)
                    .hint("make the partials again"),
                );
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(InputError { problems })
    }
}

/// Reads partial-state files (all of them, reporting every unreadable one).
pub fn read_partials(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Vec<u8>)>, InputError> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for p in paths {
        match std::fs::read(p) {
            Ok(bytes) => out.push((p.clone(), bytes)),
            Err(e) => problems.push(
                Problem::new(
                    format!("an unreadable partial-state file ({e})"),
                    "a file written by `rollproof partial`",
                )
                .file(p),
            ),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(InputError { problems })
    }
}

/// Decodes the partials, freeing each file's bytes once decoded (a merge holds the states'
/// bytes once, not twice).
fn decode_all(parts: Vec<(PathBuf, Vec<u8>)>) -> Result<Vec<Named>, InputError> {
    let mut problems = Vec::new();
    let mut bodies = Vec::new();
    for (name, bytes) in parts {
        match Body::decode(&name, &bytes) {
            Ok(b) => bodies.push((name, b)),
            Err(e) => problems.extend(e.problems),
        }
    }
    if problems.is_empty() {
        Ok(bodies)
    } else {
        Err(InputError { problems })
    }
}

/// Splits checked partials into folds and samples; the samples must share their targets.
fn checked(
    incident: &Incident,
    overrides: &InputOverrides,
    ctx: &Ctx,
    parts: Vec<(PathBuf, Vec<u8>)>,
) -> Result<Checked, InputError> {
    if parts.is_empty() {
        return Err(InputError::one(Problem::new(
            "no partial-state file",
            "one or more files written by `rollproof partial`",
        )));
    }
    let digest = digest_of(incident, overrides)?;
    let bodies = decode_all(parts)?;
    let mut problems = Vec::new();
    for (name, body) in &bodies {
        if let Err(e) = check_compatible(name, body, &digest, ctx) {
            problems.extend(e.problems);
        }
    }
    if !problems.is_empty() {
        return Err(InputError { problems });
    }
    let (ranges, bodies): (Vec<_>, Vec<_>) = bodies
        .into_iter()
        .partition(|(_, b)| matches!(b.kind, Kind::Range { .. }));
    let (folds, samples): (Vec<_>, Vec<_>) =
        bodies.into_iter().partition(|(_, b)| b.kind == Kind::Fold);
    if let Some((first_name, first)) = samples.first() {
        for (name, b) in &samples[1..] {
            if b.kind != first.kind {
                return Err(InputError::one(
                    Problem::new(
                        format!(
                            "sample partials made from another combined partial than `{}`",
                            first_name.display()
                        ),
                        "every sample partial made with the same `--samples-from` file",
                    )
                    .file(name),
                ));
            }
        }
    }
    Ok(Checked {
        folds,
        samples,
        ranges,
    })
}

/// Partials sorted by kind.
struct Checked {
    folds: Vec<Named>,
    samples: Vec<Named>,
    /// Finished key ranges (`merge --key-range`).
    ranges: Vec<Named>,
}

impl Checked {
    /// Folds or samples only (a combination, a frame merge): finished key ranges go to the
    /// final `merge`.
    fn without_ranges(self) -> Result<(Vec<Named>, Vec<Named>), InputError> {
        match self.ranges.first() {
            None => Ok((self.folds, self.samples)),
            Some((name, _)) => Err(InputError::one(
                Problem::new(
                    "a finished key range (`merge --key-range`)",
                    "fold or sample partials",
                )
                .file(name)
                .hint("give the finished key ranges to the final `rollproof merge`, beside the fold partials"),
            )),
        }
    }
}

/// Merges partial-state files and renders the report of one audit over the same inputs. The
/// states that grow with a key are finished `key_partitions` key ranges at a time (default: the
/// ranges the partials were written in; 1: all at once).
pub fn merge(
    path: &Path,
    overrides: &InputOverrides,
    parts: Vec<(PathBuf, Vec<u8>)>,
    options: AuditOptions,
    key_partitions: Option<usize>,
    progress: Progress<'_>,
) -> Result<Report, InputError> {
    let incident = load(path, overrides)?;
    let (ctx, tables) = prepare_sharded(&incident, overrides, options.series, true)?;
    let Checked {
        folds,
        samples,
        ranges: finished,
    } = checked(&incident, overrides, &ctx, parts)?;
    let want = expected(&tables, None);
    check_units(&want, &folds, true)?;
    if !samples.is_empty() {
        check_units(&want, &samples, false)?;
    }
    check_finished_ranges(&want, &finished)?;
    let folds: Vec<Body> = folds.into_iter().map(|(_, b)| b).collect();
    let samples: Vec<Body> = samples.into_iter().map(|(_, b)| b).collect();
    let finished: Vec<Body> = finished.into_iter().map(|(_, b)| b).collect();
    let ranges = key_partitions
        .unwrap_or_else(|| folds.iter().map(Body::key_ranges).max().unwrap_or(1))
        .clamp(1, crate::partial::MAX_KEY_PARTITIONS);
    let key_ranges = if !finished.is_empty() {
        KeyRanges::Finished(&finished)
    } else if ranges > 1 {
        KeyRanges::Split(ranges)
    } else {
        KeyRanges::Whole
    };
    finish_audit(
        &incident,
        &ctx,
        &tables,
        options,
        &StageInput::Partials {
            folds: &folds,
            samples: &samples,
            local_samples: true,
            key_ranges,
        },
        progress,
    )
}

/// Rows an engine hands over instead of files (Spark's `mapInArrow`): each table's schema as a
/// zero-row Arrow IPC file, so that every machine plans the same columns.
#[derive(Debug, Clone)]
pub struct FrameSchemas {
    pub requests: PathBuf,
    pub receipts: Option<PathBuf>,
}

impl FrameSchemas {
    fn overrides(
        &self,
        base: &InputOverrides,
        table: Table,
        file: Option<&Path>,
    ) -> InputOverrides {
        let pick = |t: Table, schema: &Path| -> Vec<String> {
            let path = if t == table {
                file.unwrap_or(schema)
            } else {
                schema
            };
            vec![path.to_string_lossy().into_owned()]
        };
        InputOverrides {
            requests: pick(Table::Requests, &self.requests),
            receipts: self
                .receipts
                .as_deref()
                .map(|r| pick(Table::Receipts, r))
                .unwrap_or_default(),
            mapping: base.mapping.clone(),
            thresholds: base.thresholds.clone(),
            outputs: Vec::new(),
        }
    }
}

/// A partial of one frame: the rows of `table` in the Arrow IPC file `file` (one Spark
/// partition), as unit `unit` (`requests:dataframe#3`).
#[allow(clippy::too_many_arguments)]
pub fn partial_frame(
    path: &Path,
    overrides: &InputOverrides,
    schemas: &FrameSchemas,
    table: Table,
    file: &Path,
    unit: &str,
    samples_from: Option<(PathBuf, Vec<u8>)>,
    receipts_from: Option<(PathBuf, Vec<u8>)>,
    expected_units: &[String],
) -> Result<Vec<u8>, InputError> {
    if !unit.starts_with(&format!("{}:", table.name())) {
        return Err(InputError::one(Problem::new(
            format!("frame unit `{unit}`"),
            format!("a unit id that starts with `{}:`", table.name()),
        )));
    }
    let overrides = schemas.overrides(overrides, table, Some(file));
    let request = PartialRequest {
        units: Vec::new(),
        samples_from,
        receipts_from,
        hash_inputs: false,
        label: Some(unit.to_string()),
        expected_units: Some(expected_units.to_vec()),
        key_partitions: 1,
    };
    let quiet = |_: Table, _: u64, _: u64| {};
    partial(path, &overrides, &request, &quiet)
}

/// Whether the look-ups of a combined partial have targets (a second round over the frames is
/// then needed for the samples).
pub fn frames_need_samples(
    path: &Path,
    overrides: &InputOverrides,
    schemas: &FrameSchemas,
    combined: &[u8],
) -> Result<bool, InputError> {
    let overrides = schemas.overrides(overrides, Table::Requests, None);
    let incident = load(path, &overrides)?;
    let (ctx, tables) = prepare_sharded(&incident, &overrides, false, true)?;
    let body = Body::decode(Path::new("combined partial"), combined)?;
    let kernels = kernels_of(&ctx);
    let states = run_stages_of(
        &ctx,
        &tables,
        &kernels,
        &[body],
        &[Stage::Receipts, Stage::Requests],
    )?;
    Ok(kernels
        .iter()
        .filter(|k| k.stage() == Stage::Samples)
        .any(|k| !k.is_idle(k.init(&ctx, &states).as_ref())))
}

/// What a frame's table was read from, for the report's `inputs`.
#[derive(Debug, Clone)]
pub struct FrameSource {
    pub table: Table,
    /// How the report names it (`Spark DataFrame`).
    pub name: String,
    /// The files the engine read it from, when it knows them.
    pub files: Vec<String>,
}

/// Merges the partials of frames (and of their sample round) into the report. `expected_units`
/// are every frame's unit id; the report's inputs name the frames' sources.
pub fn merge_frames(
    path: &Path,
    overrides: &InputOverrides,
    schemas: &FrameSchemas,
    parts: Vec<(PathBuf, Vec<u8>)>,
    expected_units: &[String],
    sources: &[FrameSource],
    options: AuditOptions,
) -> Result<Report, InputError> {
    let overrides = schemas.overrides(overrides, Table::Requests, None);
    let incident = load(path, &overrides)?;
    let (ctx, tables) = prepare_sharded(&incident, &overrides, options.series, true)?;
    let (folds, samples) = checked(&incident, &overrides, &ctx, parts)?.without_ranges()?;
    let want = expected(&tables, Some(expected_units));
    check_units(&want, &folds, true)?;
    if !samples.is_empty() {
        check_units(&want, &samples, true)?;
    }
    let folds: Vec<Body> = folds.into_iter().map(|(_, b)| b).collect();
    let samples: Vec<Body> = samples.into_iter().map(|(_, b)| b).collect();
    let quiet = |_: Table, _: u64, _: u64| {};
    let mut report = finish_audit(
        &incident,
        &ctx,
        &tables,
        AuditOptions {
            evidence: false,
            ..options
        },
        &StageInput::Partials {
            folds: &folds,
            samples: &samples,
            local_samples: false,
            key_ranges: KeyRanges::Whole,
        },
        &quiet,
    )?;
    for input in report.inputs.iter_mut() {
        let table = match input.role {
            "requests" => Table::Requests,
            "receipts" => Table::Receipts,
            _ => continue,
        };
        if let Some(source) = sources.iter().find(|s| s.table == table) {
            input.path = source.name.clone();
            input.format = "arrow";
            input.compression = None;
            input.sha256 = None;
            input.source_files = Some(source.files.clone());
        }
    }
    Ok(report)
}

/// Merges partial-state files into one (a step of a merge tree, or the `--samples-from` file of a
/// second round). Every unit may appear at most once; completeness is checked by the final merge.
/// The combined partial keeps its parts' key ranges unless `key_partitions` says how many.
pub fn combine(
    path: &Path,
    overrides: &InputOverrides,
    parts: Vec<(PathBuf, Vec<u8>)>,
    key_partitions: Option<usize>,
) -> Result<Vec<u8>, InputError> {
    combine_units(path, overrides, parts, None, key_partitions)
}

/// [`combine`] for the partials of frames, whose units are `expected_units`.
pub fn combine_frames(
    path: &Path,
    overrides: &InputOverrides,
    schemas: &FrameSchemas,
    parts: Vec<(PathBuf, Vec<u8>)>,
    expected_units: &[String],
) -> Result<Vec<u8>, InputError> {
    let overrides = schemas.overrides(overrides, Table::Requests, None);
    combine_units(path, &overrides, parts, Some(expected_units), None)
}

fn combine_units(
    path: &Path,
    overrides: &InputOverrides,
    parts: Vec<(PathBuf, Vec<u8>)>,
    frames: Option<&[String]>,
    key_partitions: Option<usize>,
) -> Result<Vec<u8>, InputError> {
    let incident = load(path, overrides)?;
    let (ctx, tables) = prepare_sharded(&incident, overrides, true, true)?;
    let (folds, samples) = checked(&incident, overrides, &ctx, parts)?.without_ranges()?;
    if !folds.is_empty() && !samples.is_empty() {
        return Err(InputError::one(
            Problem::new("fold partials and sample partials together", "partials of one kind")
                .hint("combine the fold partials first; the merge takes the sample partials beside the combined one"),
        ));
    }
    let parts = if folds.is_empty() { samples } else { folds };
    let want = expected(&tables, frames);
    check_units(&want, &parts, false)?;
    let kind = parts[0].1.kind.clone();
    let kernels: Vec<&'static dyn AnyKernel> = kernels_of(&ctx)
        .into_iter()
        .filter(|k| (k.stage() == Stage::Samples) == (kind != Kind::Fold))
        .collect();
    let bodies: Vec<Body> = parts.iter().map(|(_, b)| b.clone()).collect();
    // The combined partial keeps the key ranges its parts were written in.
    let ranges =
        key_partitions.unwrap_or_else(|| bodies.iter().map(Body::key_ranges).max().unwrap_or(1));
    let mut sections = Vec::new();
    for k in &kernels {
        let mut state: Option<State> = None;
        for (name, body) in &parts {
            let other = decode_whole(&ctx, name, body, *k)?;
            match state.as_mut() {
                None => state = Some(other),
                Some(s) => k.merge(s.as_mut(), other),
            }
        }
        let state = state.expect("at least one partial");
        sections.extend(encode_sections(*k, state, ranges));
    }
    // Units and files in plan order, so that the bytes do not depend on the order of the parts.
    let order: BTreeMap<String, usize> = want
        .ids
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, id)| (id, i))
        .collect();
    let mut units: Vec<UnitEntry> = bodies.iter().flat_map(|b| b.units.clone()).collect();
    units.sort_by_key(|u| order.get(&u.id).copied());
    let mut files: Vec<FileEntry> = bodies.iter().flat_map(|b| b.files.clone()).collect();
    files.sort_by_key(|f| order.get(&f.unit).copied());
    Ok(Body {
        tool: env!("CARGO_PKG_VERSION").to_string(),
        digest: bodies[0].digest.clone(),
        kind,
        columns: bodies[0].columns.clone(),
        units,
        files,
        sections,
        source: PathBuf::new(),
    }
    .encode())
}

/// A kernel's state as partial sections: its own; for a keyed kernel and `ranges > 1`, the rest
/// of the state under the kernel's name and each key range under `NAME@R/N`.
fn encode_sections(
    kernel: &dyn AnyKernel,
    mut state: State,
    ranges: usize,
) -> Vec<(String, Vec<u8>)> {
    let parts: Vec<State> = if ranges > 1 {
        kernel
            .split_ranges(state.as_mut(), ranges)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut out = vec![(kernel.name().to_string(), kernel.encode(state.as_mut()))];
    for (r, mut part) in parts.into_iter().enumerate() {
        out.push((
            crate::partial::range_section(kernel.name(), r, ranges),
            kernel.encode(part.as_mut()),
        ));
    }
    out
}

/// A kernel's whole state in a partial: its own section merged with its key ranges.
fn decode_whole(
    ctx: &Ctx,
    name: &Path,
    body: &Body,
    kernel: &dyn AnyKernel,
) -> Result<State, InputError> {
    let mut state = decode_section(ctx, name, body, kernel)?;
    for (r, n, bytes) in body.range_sections(kernel.name()) {
        let part = decode_bytes(
            ctx,
            name,
            kernel,
            &crate::partial::range_section(kernel.name(), r, n),
            bytes,
        )?;
        kernel.merge(state.as_mut(), part);
    }
    Ok(state)
}

/// The merged state of key range `range` of `ranges` of a keyed kernel, from every partial: of
/// each, the sections whose hashes overlap the range (one, when the partials were written in
/// as many ranges), and of those only the range's entries.
pub(crate) fn range_state(
    ctx: &Ctx,
    parts: &[Body],
    kernel: &dyn AnyKernel,
    range: usize,
    ranges: usize,
) -> Result<State, InputError> {
    let mut state = kernel.init(ctx, &States::default());
    for body in parts {
        // A piece of a split partial (`split_key_ranges`) holds only its key ranges.
        let mut sections = Vec::new();
        if body.section(kernel.name()).is_some() {
            sections.push(decode_section(ctx, &body.source, body, kernel)?);
        }
        for (r, n, bytes) in body.range_sections(kernel.name()) {
            if crate::partial::ranges_overlap((r, n), (range, ranges)) {
                let label = crate::partial::range_section(kernel.name(), r, n);
                sections.push(decode_bytes(ctx, &body.source, kernel, &label, bytes)?);
            }
        }
        for mut section in sections {
            if let Some(part) = kernel.take_range(section.as_mut(), range, ranges) {
                kernel.merge(state.as_mut(), part);
            }
        }
    }
    Ok(state)
}

/// The keyed kernels of the fold stages among `stages`, in stage order.
pub(crate) fn keyed_kernels<'k>(
    kernels: &[&'k dyn AnyKernel],
    stages: &[Stage],
) -> Vec<&'k dyn AnyKernel> {
    let mut keyed: Vec<&dyn AnyKernel> = kernels
        .iter()
        .copied()
        .filter(|k| k.keyed() && k.stage() != Stage::Samples && stages.contains(&k.stage()))
        .collect();
    keyed.sort_by_key(|k| k.stage());
    keyed
}

/// A kernel's own sections of `parts`, merged.
pub(crate) fn merge_sections(
    ctx: &Ctx,
    parts: &[Body],
    kernel: &dyn AnyKernel,
) -> Result<State, InputError> {
    let mut state = kernel.init(ctx, &States::default());
    for body in parts {
        let other = decode_section(ctx, &body.source, body, kernel)?;
        kernel.merge(state.as_mut(), other);
    }
    Ok(state)
}

/// Finished key ranges must be one complete split (`0..N`, each once), each finished over
/// every planned unit exactly once.
fn check_finished_ranges(expected: &Expected<'_>, finished: &[Named]) -> Result<(), InputError> {
    let Some((_, first)) = finished.first() else {
        return Ok(());
    };
    let of = |b: &Body| match b.kind {
        Kind::Range { range, ranges } => (range as usize, ranges as usize),
        _ => unreachable!("only finished ranges here"),
    };
    let n = of(first).1;
    if !(1..=crate::partial::MAX_KEY_PARTITIONS).contains(&n) {
        return Err(InputError::one(
            Problem::new(
                format!("a finished key range of {n} ranges"),
                format!("1 to {} key ranges", crate::partial::MAX_KEY_PARTITIONS),
            )
            .file(&finished[0].0)
            .hint("the file was altered, or written by another tool; make it again"),
        ));
    }
    let mut seen = vec![0usize; n];
    for (name, body) in finished {
        let (r, ranges) = of(body);
        if ranges != n || r >= n {
            return Err(InputError::one(
                Problem::new(
                    format!("key range {r} of {ranges}"),
                    format!("key ranges of one split into {n}, as the other finished ranges"),
                )
                .file(name)
                .hint("finish every range with the same `--key-partitions`"),
            ));
        }
        seen[r] += 1;
        check_units(
            expected,
            std::slice::from_ref(&(name.clone(), body.clone())),
            true,
        )?;
    }
    let wrong: Vec<String> = seen
        .iter()
        .enumerate()
        .filter(|(_, c)| **c != 1)
        .map(|(r, c)| format!("{r} ({} times)", c))
        .collect();
    if !wrong.is_empty() {
        return Err(InputError::one(
            Problem::new(
                format!("finished key ranges {} of {n}", wrong.join(", ")),
                format!("every key range 0..{n} exactly once"),
            )
            .hint("a range finished twice (a retried task) or not at all; give each `--key-range` once"),
        ));
    }
    Ok(())
}

/// Finishes key range `range` of `ranges` of the keyed states over `parts`, which must hold
/// every planned unit exactly once (whole partials, or their pieces from `split_key_ranges`):
/// a partial of the compacted range, which the final `merge` takes beside the fold partials.
pub fn finish_key_range(
    path: &Path,
    overrides: &InputOverrides,
    parts: Vec<(PathBuf, Vec<u8>)>,
    range: usize,
    ranges: usize,
) -> Result<Vec<u8>, InputError> {
    if range >= ranges || ranges > crate::partial::MAX_KEY_PARTITIONS {
        return Err(InputError::one(Problem::new(
            format!("key range {range} of {ranges}"),
            format!(
                "a key range below the number of ranges (at most {})",
                crate::partial::MAX_KEY_PARTITIONS
            ),
        )));
    }
    let incident = load(path, overrides)?;
    let (ctx, tables) = prepare_sharded(&incident, overrides, true, true)?;
    let (folds, _) = checked(&incident, overrides, &ctx, parts)?.without_ranges()?;
    let want = expected(&tables, None);
    check_units(&want, &folds, true)?;
    let kernels = kernels_of(&ctx);
    let keyed = keyed_kernels(&kernels, &[Stage::Receipts, Stage::Requests]);
    let bodies: Vec<Body> = folds.into_iter().map(|(_, b)| b).collect();
    let done = crate::engine::finish_ranges(&ctx, &keyed, 1, |k, _| {
        range_state(&ctx, &bodies, k, range, ranges)
    })?;
    let sections = keyed
        .iter()
        .zip(done)
        .map(|(k, mut state)| (k.name().to_string(), k.encode(state.as_mut())))
        .collect();
    let order: BTreeMap<&str, usize> = want
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut units: Vec<UnitEntry> = bodies.iter().flat_map(|b| b.units.clone()).collect();
    units.sort_by_key(|u| order.get(u.id.as_str()).copied());
    Ok(Body {
        tool: env!("CARGO_PKG_VERSION").to_string(),
        digest: bodies[0].digest.clone(),
        kind: Kind::Range {
            range: range as u32,
            ranges: ranges as u32,
        },
        columns: bodies[0].columns.clone(),
        units,
        files: Vec::new(),
        sections,
        source: PathBuf::new(),
    }
    .encode())
}

/// A partial written with key ranges, split for a shuffle by range: the partial without its key
/// ranges (for the final merge), and one piece per range holding only that range (for
/// [`finish_key_range`]), in range order.
pub fn split_key_ranges(
    path: &Path,
    overrides: &InputOverrides,
    part: &(PathBuf, Vec<u8>),
) -> Result<(Vec<u8>, Vec<Vec<u8>>), InputError> {
    let incident = load(path, overrides)?;
    let (ctx, _) = prepare_sharded(&incident, overrides, true, true)?;
    let (mut folds, _) =
        checked(&incident, overrides, &ctx, vec![part.clone()])?.without_ranges()?;
    let Some((_, body)) = folds.pop() else {
        return Err(InputError::one(
            Problem::new("a partial of sample look-ups", "a fold partial").file(&part.0),
        ));
    };
    let ranges = body.key_ranges();
    let of_range = |r: usize| {
        let sections = body
            .sections
            .iter()
            .filter(|(name, _)| {
                matches!(crate::partial::parse_section(name), Ok((_, Some((s, n)))) if s == r && n == ranges)
            })
            .cloned()
            .collect();
        Body {
            files: Vec::new(),
            sections,
            ..body.clone()
        }
        .encode()
    };
    let pieces = if ranges > 1 {
        (0..ranges).map(of_range).collect()
    } else {
        Vec::new()
    };
    let rest = Body {
        sections: body
            .sections
            .iter()
            .filter(|(name, _)| matches!(crate::partial::parse_section(name), Ok((_, None))))
            .cloned()
            .collect(),
        ..body.clone()
    };
    Ok((rest.encode(), pieces))
}

/// Every key-range section names a keyed kernel, and each kernel's ranges are of one split
/// (`R/N` with one `N`), each once.
fn check_sections(
    name: &Path,
    body: &Body,
    kernels: &[&'static dyn AnyKernel],
) -> Result<(), InputError> {
    let problem = |found: String| {
        InputError::one(
            Problem::new(
                found,
                "key-range sections as `rollproof partial --key-partitions` writes them",
            )
            .file(name)
            .hint("the file was altered, or written by another tool; make it again"),
        )
    };
    let mut seen: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
    for (section, _) in &body.sections {
        match crate::partial::parse_section(section) {
            Err(()) => return Err(problem(format!("a section named `{section}`"))),
            Ok((kernel, Some(range))) => {
                if !kernels.iter().any(|k| k.name() == kernel && k.keyed()) {
                    return Err(problem(format!(
                        "key ranges of `{kernel}`, which is not split by key"
                    )));
                }
                seen.entry(kernel).or_default().push(range);
            }
            Ok((_, None)) => {}
        }
    }
    // All of one split (a piece of a split partial holds one range of it), each range once.
    for (kernel, mut ranges) in seen {
        ranges.sort_unstable();
        let n = ranges[0].1;
        if ranges.iter().any(|(_, m)| *m != n) || ranges.windows(2).any(|w| w[0] == w[1]) {
            return Err(problem(format!(
                "key ranges of `{kernel}` that are not of one split into {n}, each once"
            )));
        }
    }
    Ok(())
}

fn decode_section(
    ctx: &Ctx,
    name: &Path,
    body: &Body,
    kernel: &dyn AnyKernel,
) -> Result<State, InputError> {
    let problem = |found: String| {
        InputError::one(
            Problem::new(
                found,
                "every kernel's section, as this rollproof version writes them",
            )
            .file(name)
            .hint("make every partial and the merge with the same rollproof version"),
        )
    };
    let bytes = body.section(kernel.name()).ok_or_else(|| {
        problem(format!(
            "a partial without the state of `{}`",
            kernel.name()
        ))
    })?;
    decode_bytes(ctx, name, kernel, kernel.name(), bytes)
}

fn decode_bytes(
    ctx: &Ctx,
    name: &Path,
    kernel: &dyn AnyKernel,
    section: &str,
    bytes: &[u8],
) -> Result<State, InputError> {
    kernel.decode(ctx, bytes).map_err(|e| {
        InputError::one(
            Problem::new(
                format!("a state of `{section}` that does not decode ({e})"),
                "every kernel's section, as this rollproof version writes them",
            )
            .file(name)
            .hint("make every partial and the merge with the same rollproof version"),
        )
    })
}

/// The states of one pass, merged from partials; counts per planned file of the table.
pub(crate) fn merge_pass(
    ctx: &Ctx,
    tables: &Tables,
    table: Table,
    kernels: &[&dyn AnyKernel],
    mut states: Vec<State>,
    parts: &[Body],
    by_ranges: bool,
) -> Result<PassOutput, InputError> {
    for body in parts {
        for (kernel, state) in kernels.iter().zip(states.iter_mut()) {
            let other = if by_ranges {
                // The keys were finished range by range: only the rest of the state is merged.
                let mut own = decode_section(ctx, &body.source, body, *kernel)?;
                let _keys = kernel.take_range(own.as_mut(), 0, 1);
                own
            } else {
                decode_whole(ctx, &body.source, body, *kernel)?
            };
            kernel.merge(state.as_mut(), other);
        }
    }
    let counts = match tables.get(table) {
        Some(plan) => {
            let ids: BTreeMap<String, usize> = plan
                .units()
                .iter()
                .map(|u| (unit_id(plan, u), u.file))
                .collect();
            let mut files = vec![UnitCounts::default(); plan.files.len()];
            // A frame's unit (`requests:dataframe#3`) counts for the table's one schema file.
            let framed = |id: &str| {
                (plan.files.len() == 1 && id.starts_with(&format!("{}:", plan.role))).then_some(0)
            };
            for unit in parts.iter().flat_map(|b| &b.units) {
                if let Some(f) = ids.get(&unit.id).copied().or_else(|| framed(&unit.id)) {
                    files[f].add(&UnitCounts {
                        rows_read: unit.rows_read,
                        rejected_no_ts: unit.rejected_no_ts,
                        dropped: unit.dropped,
                        // Partials do not carry it: their samples read every unit.
                        ts_range: None,
                    });
                }
            }
            files
        }
        None => Vec::new(),
    };
    Ok(PassOutput {
        states,
        counts,
        ts_ranges: Vec::new(),
        units_read: 0,
    })
}

/// Sample partials must have been folded for the targets of this merge, over every unit of a
/// table with something to look for.
pub(crate) fn check_targets(
    tables: &Tables,
    table: Table,
    kernels: &[&dyn AnyKernel],
    empty: &[State],
    parts: &[Body],
    frames: bool,
) -> Result<(), InputError> {
    let idle = kernels
        .iter()
        .zip(empty)
        .all(|(k, s)| k.is_idle(s.as_ref()));
    if idle {
        return Ok(());
    }
    if frames {
        // The frames' coverage is checked against their unit ids by the merge; without sample
        // partials the samples would silently be empty.
        if parts.is_empty() {
            return Err(InputError::one(
                Problem::new(
                    format!("targets to look up in the {} and no sample partials", table.name()),
                    "the sample round's partials (`samples_from` the combined partial)",
                )
                .hint("fold every frame again with samples_from = the combined partial, and merge those partials too"),
            ));
        }
        return Ok(());
    }
    let Some(plan) = tables.get(table) else {
        return Ok(());
    };
    let folded: std::collections::BTreeSet<&str> = parts
        .iter()
        .flat_map(|b| b.units.iter().map(|u| u.id.as_str()))
        .collect();
    let missing: Vec<String> = plan
        .units()
        .iter()
        .map(|u| unit_id(plan, u))
        .filter(|id| !folded.contains(id.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(InputError::one(
            Problem::new(
                format!("{} unit{} of the {} in no sample partial (`{}`…)", missing.len(), if missing.len() == 1 { "" } else { "s" }, table.name(), missing[0]),
                "sample partials over every unit of a table with targets",
            )
            .hint("fold the look-ups of every unit with `rollproof partial --samples-from`, or merge without sample partials to read them here"),
        ));
    }
    Ok(())
}

/// Checks that the sample partials were folded for these targets (digest of all look-ups).
pub(crate) fn check_samples_digest(
    ctx: &Ctx,
    lookups: &[&'static dyn AnyKernel],
    prior: &States,
    samples: &[Body],
) -> Result<(), InputError> {
    let Some(first) = samples.first() else {
        return Ok(());
    };
    let Kind::Samples { targets } = &first.kind else {
        return Ok(());
    };
    if *targets != targets_digest(ctx, lookups, prior) {
        return Err(InputError::one(
            Problem::new(
                "sample partials folded for other targets than these partials give",
                "sample partials made with `--samples-from` the combination of exactly these fold partials",
            )
            .hint("combine the fold partials (`rollproof merge --partial-out`), fold the samples from that file, and merge the same fold partials with them"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(range: u32, ranges: u32) -> Named {
        (
            PathBuf::from(format!("range-{range}.rpp")),
            Body {
                tool: env!("CARGO_PKG_VERSION").to_string(),
                digest: "d".into(),
                kind: Kind::Range { range, ranges },
                columns: Vec::new(),
                units: Vec::new(),
                files: Vec::new(),
                sections: Vec::new(),
                source: PathBuf::new(),
            },
        )
    }

    #[test]
    fn finished_ranges_must_be_one_bounded_complete_split() {
        let none = Expected {
            ids: Vec::new(),
            tables: None,
        };
        let found = |parts: &[Named]| {
            check_finished_ranges(&none, parts).map_err(|e| e.problems[0].found.clone())
        };
        assert_eq!(found(&[finished(0, 2), finished(1, 2)]), Ok(()));
        // A crafted count is refused before anything is sized by it.
        assert_eq!(
            found(&[finished(0, u32::MAX)]),
            Err(format!("a finished key range of {} ranges", u32::MAX))
        );
        assert_eq!(
            found(&[finished(0, 0)]),
            Err("a finished key range of 0 ranges".to_string())
        );
        assert_eq!(
            found(&[finished(0, 2), finished(2, 2)]),
            Err("key range 2 of 2".to_string())
        );
        assert_eq!(
            found(&[finished(0, 2), finished(1, 3)]),
            Err("key range 1 of 3".to_string())
        );
        assert_eq!(
            found(&[finished(1, 2)]),
            Err("finished key ranges 0 (0 times) of 2".to_string())
        );
    }
}
