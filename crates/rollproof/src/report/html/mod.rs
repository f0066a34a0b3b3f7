//! The HTML postmortem (`--html FILE`): one self-contained page rendered with tera from
//! `templates/report.html`. No script, no network: inline CSS, inline SVG charts, a
//! Content-Security-Policy that forbids loading anything. Every string from the logs goes through
//! tera's HTML autoescaping; the SVG geometry is numbers computed in [`charts`].
//!
//! This module builds the page's view from the report model. What it says about a check (the
//! action item, the impact sentence, timeline events, its per-region column) comes from the
//! check's own `CheckInfo`, never from a list here.

mod charts;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{CheckReport, Renderer, Report};
use crate::checks::{EventKind, Metric, Status};
use crate::time::format_seconds;

const TEMPLATE: &str = include_str!("../../../templates/report.html");

pub(crate) struct Html;

impl Renderer for Html {
    fn render(&self, report: &Report) -> String {
        let mut tera = tera::Tera::default();
        tera.add_raw_template("report.html", TEMPLATE)
            .expect("the bundled template parses (a test renders it)");
        let context =
            tera::Context::from_serialize(&View::build(report)).expect("the view serializes");
        tera.render("report.html", &context)
            .expect("the bundled template renders the view (a test renders it)")
    }
}

#[derive(Serialize)]
struct View<'a> {
    version: &'a str,
    schema_version: u32,
    mode: &'static str,
    incident_id: &'a str,
    incident_title: Option<&'a str>,
    flip_at: Option<String>,
    data_span: Option<String>,
    verdict: &'static str,
    verdict_word: String,
    headline: String,
    exit_code: u8,
    counts: &'a super::StatusCounts,
    checks: Vec<CheckRow<'a>>,
    events: Vec<Event>,
    charts: Vec<charts::Chart>,
    findings: Vec<Finding<'a>>,
    region_columns: Vec<&'static str>,
    regions: Vec<RegionRow>,
    postmortem: Postmortem,
    root_cause_url: Option<&'a str>,
    inputs: &'a [super::InputReport],
    thresholds: Vec<(String, String)>,
    expected_pins: Vec<String>,
}

#[derive(Serialize)]
struct CheckRow<'a> {
    id: &'a str,
    title: &'a str,
    status: &'static str,
    observed: &'a str,
    baseline: &'a str,
    threshold: &'a str,
    sample_size: &'a str,
    summary: &'a str,
}

#[derive(Serialize)]
struct Event {
    when: String,
    what: String,
    kind: &'static str,
}

#[derive(Serialize)]
struct Finding<'a> {
    id: &'a str,
    status: &'static str,
    summary: &'a str,
    breakdowns: Vec<Breakdown>,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

#[derive(Serialize)]
struct Breakdown {
    name: String,
    value: String,
}

#[derive(Serialize)]
struct RegionRow {
    name: String,
    values: Vec<u64>,
}

#[derive(Serialize)]
struct Postmortem {
    summary: String,
    impact: Vec<String>,
    actions: Vec<Action>,
}

#[derive(Serialize)]
struct Action {
    check: String,
    action: String,
}

fn metric<'a>(report: &'a Report, check: &str, key: &str) -> Option<&'a Metric> {
    report.check(check).and_then(|c| c.metrics.get(key))
}

/// Strings from the logs can be long: a report stays readable.
fn clip(s: String) -> String {
    const MAX: usize = 160;
    if s.chars().count() <= MAX {
        s
    } else {
        let mut c: String = s.chars().take(MAX).collect();
        c.push('…');
        c
    }
}

impl<'a> View<'a> {
    fn build(r: &'a Report) -> View<'a> {
        let with = |status: Status| ids_with(r, status).join(", ");
        let headline = match r.verdict {
            Status::Fail => format!("The gate is closed: {} failed.", with(Status::Fail)),
            Status::Inconclusive => {
                format!("Too little data to judge {}.", with(Status::Inconclusive))
            }
            Status::Warn => format!("Back at baseline, with warnings on {}.", with(Status::Warn)),
            Status::Pass | Status::Skip => "Production is back: every check passed.".to_string(),
        };
        let findings = r
            .attention()
            .map(|c| {
                let mut columns: Vec<String> = Vec::new();
                for s in &c.samples {
                    for k in s.keys() {
                        if !columns.contains(k) {
                            columns.push(k.clone());
                        }
                    }
                }
                let rows = c
                    .samples
                    .iter()
                    .map(|s| {
                        columns
                            .iter()
                            .map(|k| clip(s.get(k).map(Metric::display).unwrap_or_default()))
                            .collect()
                    })
                    .collect();
                let breakdowns = c
                    .metrics
                    .iter()
                    .filter(|(k, _)| k.starts_with("by_") || k.contains("_by_"))
                    .filter(|(_, v)| v.as_counts().is_some_and(|m| !m.is_empty()))
                    .map(|(k, v)| Breakdown {
                        name: k.clone(),
                        value: clip(v.display()),
                    })
                    .collect();
                Finding {
                    id: c.id,
                    status: c.status.name(),
                    summary: &c.summary,
                    breakdowns,
                    columns,
                    rows,
                }
            })
            .collect();
        let (region_columns, regions) = regions(r);
        View {
            version: r.tool.version,
            schema_version: r.schema_version,
            mode: r.mode.name(),
            incident_id: &r.incident.id,
            incident_title: r.incident.title.as_deref(),
            flip_at: r.incident.flip_at.map(|f| f.to_string()),
            data_span: match (&r.windows.data_start, &r.windows.data_end) {
                (Some(a), Some(b)) => Some(format!("{a} → {b}")),
                _ => None,
            },
            verdict: r.verdict.name(),
            verdict_word: r.verdict.name().to_uppercase(),
            headline,
            exit_code: r.exit_code,
            counts: &r.counts,
            checks: r
                .checks
                .iter()
                .map(|c| CheckRow {
                    id: c.id,
                    title: c.title,
                    status: c.status.name(),
                    observed: &c.observed,
                    baseline: &c.baseline,
                    threshold: &c.threshold,
                    sample_size: &c.sample_size,
                    summary: &c.summary,
                })
                .collect(),
            events: events(r),
            charts: r
                .timeline
                .as_ref()
                .map(|t| charts::charts(r, t))
                .unwrap_or_default(),
            findings,
            region_columns,
            regions,
            postmortem: postmortem(r),
            root_cause_url: r.incident.root_cause_url.as_deref(),
            inputs: &r.inputs,
            thresholds: r
                .thresholds
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            expected_pins: match &r.expected_pins {
                Value::Object(map) => map
                    .iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => format!("{k} = {s}"),
                        other => format!("{k}: {}", display_json(other)),
                    })
                    .collect(),
                _ => Vec::new(),
            },
        }
    }
}

/// Names of the checks with `status`, in report order.
fn ids_with(r: &Report, status: Status) -> Vec<&'static str> {
    r.checks
        .iter()
        .filter(|c| c.status == status)
        .map(|c| c.id)
        .collect()
}

/// A JSON value as text (for the expected pins of a canary, one map per arm).
fn display_json(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}: {}", display_json(v)))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// One column per check that breaks its findings down by region (`CheckInfo::region_column`).
fn regions(r: &Report) -> (Vec<&'static str>, Vec<RegionRow>) {
    let mut columns = Vec::new();
    let mut table: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for check in &r.checks {
        let Some(label) = check.info.region_column else {
            continue;
        };
        let Some(map) = check.metrics.get("by_region").and_then(Metric::as_counts) else {
            continue;
        };
        let col = columns.len();
        columns.push(label);
        for (region, &v) in map {
            let row = table.entry(region.clone()).or_default();
            row.resize(col + 1, 0);
            row[col] = v;
        }
    }
    let rows = table
        .into_iter()
        .map(|(name, mut values)| {
            values.resize(columns.len(), 0);
            RegionRow { name, values }
        })
        .collect();
    (columns, rows)
}

fn events(r: &Report) -> Vec<Event> {
    let mut events: Vec<(i64, Event)> = Vec::new();
    let mut push = |t: i64, what: String, kind: &'static str| {
        events.push((
            t,
            Event {
                when: format_seconds(t),
                what,
                kind,
            },
        ));
    };
    if let Some(t) = &r.timeline {
        // The bad rollout shows as the first bucket where most requests lost the expected pins.
        let diverged = t
            .points
            .iter()
            .find(|p| p.pins_ok_share.is_some_and(|s| s < 0.5) && p.minute < 0);
        if let Some(p) = diverged {
            push(
                p.start,
                "bad rollout: most requests stop carrying the expected pins".into(),
                "bad",
            );
        }
    }
    if let Some([start, end]) = &r.windows.freeze {
        push(start.0, "write freeze starts".into(), "bad");
        push(end.0, "write freeze ends (jobs unfrozen)".into(), "good");
    }
    let flip = r.incident.flip_at.map(|f| f.0);
    if let Some(flip) = flip {
        push(flip, "rollback pointer flip".into(), "flip");
    }
    for check in &r.checks {
        if let Some(events) = check.info.events {
            for e in events(&check.metrics, flip) {
                let kind = match e.kind {
                    EventKind::Bad => "bad",
                    EventKind::Good => "good",
                };
                push(e.at, e.what, kind);
            }
        }
    }
    if let Some(end) = r.windows.data_end {
        push(end.0, "end of data".into(), "");
    }
    events.sort_by_key(|(t, _)| *t);
    events.into_iter().map(|(_, e)| e).collect()
}

fn postmortem(r: &Report) -> Postmortem {
    let failing = ids_with(r, Status::Fail);
    let summary = match r.verdict {
        Status::Fail => format!(
            "The rollback of {} is not complete: {} of {} checks failed ({}). Until they pass, production is not back at the last known good state.",
            r.incident.id,
            failing.len(),
            r.checks.len(),
            failing.join(", ")
        ),
        Status::Inconclusive => format!("The audit of {} had too little data to judge every check; re-run it when more traffic has been logged.", r.incident.id),
        Status::Warn => format!("The rollback of {} holds: no check failed, but some warned (see below).", r.incident.id),
        Status::Pass | Status::Skip => format!("The rollback of {} is complete: every check passed.", r.incident.id),
    };
    let impact = r
        .checks
        .iter()
        .filter_map(|c| {
            c.info
                .impact
                .and_then(|impact| impact(c.status, &c.metrics))
        })
        .collect();
    let actions = r
        .attention()
        .map(|c| Action {
            check: c.id.to_string(),
            action: action_for(c),
        })
        .collect();
    Postmortem {
        summary,
        impact,
        actions,
    }
}

/// The check's remediation, with `{regions}` filled from its `by_region` breakdown.
fn action_for(c: &CheckReport) -> String {
    if c.status == Status::Inconclusive {
        return "collect more traffic (or lower min_requests knowingly) and re-run the audit"
            .to_string();
    }
    let regions = match c.metrics.get("by_region").and_then(Metric::as_counts) {
        Some(m) if !m.is_empty() => m.keys().cloned().collect::<Vec<_>>().join(", "),
        _ => "every region".to_string(),
    };
    c.info.remediation.replace("{regions}", &regions)
}
