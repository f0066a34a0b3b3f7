//! The HTML postmortem (`--html FILE`): one self-contained page rendered with tera from
//! `templates/report.html`. No script, no network: inline CSS, inline SVG charts, a
//! Content-Security-Policy that forbids loading anything. Every string from the logs goes through
//! tera's HTML autoescaping; the SVG geometry is numbers computed in [`charts`].
//!
//! This module builds the page's view from the report model. Every sentence is derived from the
//! report's figures (the `impact` section, the checks' metrics); what the page says about a check
//! (its action item, impact sentence, timeline events, per-region column) comes from the check's
//! own `CheckInfo`, never from a list here. Rollback and canary pages have their own wording.

mod charts;

use serde::Serialize;
use serde_json::Value;

use super::story;
use super::{Renderer, Report};
use crate::checks::series::{RegionFigures, MAX_REGIONS};
use crate::checks::{EventKind, Metric};
use crate::plan::Mode;
use crate::stats::wilson;
use crate::time::{format_millis, format_seconds, MICROS_PER_MINUTE};
use crate::words::{count, pct};
use charts::{Chart, Marker, Span, Spec, XTicks};

const TEMPLATE: &str = include_str!("../../../templates/report.html");
const COMPONENTS: &str = include_str!("../../../templates/components.html");

pub(crate) struct Html;

impl Renderer for Html {
    fn render(&self, report: &Report) -> String {
        let mut tera = tera::Tera::default();
        tera.add_raw_templates([("components.html", COMPONENTS), ("report.html", TEMPLATE)])
            .expect("the bundled templates parse (a test renders them)");
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
    kind: &'static str,
    incident_id: &'a str,
    incident_title: Option<&'a str>,
    subtitle: Vec<String>,
    verdict: &'static str,
    verdict_word: String,
    headline: String,
    exit_code: u8,
    counts: &'a super::StatusCounts,
    checks: Vec<CheckRow<'a>>,
    /// Skipped checks, listed in one line under the table.
    skipped: Vec<CheckRow<'a>>,
    events: Vec<Event>,
    /// Rollback: what each window of the incident touched.
    windows: Option<Table>,
    /// Canary: the two arms side by side.
    arms: Option<Table>,
    sections: Vec<ChartSection>,
    findings: Vec<Finding<'a>>,
    regions: Option<Table>,
    postmortem: story::Postmortem,
    recommendations: Vec<(&'static str, Vec<&'static str>)>,
    /// Every interval beside its estimate, drawn against its threshold.
    intervals: Vec<IntervalRowView<'a>>,
    statistics_method: &'static str,
    root_cause_url: Option<&'a str>,
    inputs: Vec<InputRow<'a>>,
    thresholds: Vec<(String, String)>,
    expected_pins: Vec<String>,
}

/// One interval row of the "How sure" table, with the x positions (0..=INTERVAL_WIDTH) of its
/// drawing: the interval as a bar (an open end runs to the edge), the estimate as a dot, the
/// threshold as a line.
#[derive(Serialize)]
struct IntervalRowView<'a> {
    check: &'a str,
    label: &'a str,
    estimate: &'a str,
    interval: &'a str,
    n: &'a str,
    criterion: &'a str,
    decision: &'static str,
    x_low: f64,
    x_high: f64,
    x_estimate: f64,
    x_threshold: Option<f64>,
    open_low: bool,
    open_high: bool,
}

const INTERVAL_WIDTH: f64 = 220.0;

fn interval_rows(r: &Report) -> Vec<IntervalRowView<'_>> {
    r.checks
        .iter()
        .flat_map(|c| c.intervals.iter().map(move |i| (c.id, i)))
        .map(|(check, i)| {
            let (estimate, low, high, threshold) = i.values;
            let finite = [Some(estimate), low, high, threshold];
            let lo = finite
                .iter()
                .flatten()
                .copied()
                .fold(f64::INFINITY, f64::min);
            let hi = finite
                .iter()
                .flatten()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max);
            let pad = ((hi - lo) * 0.1).max(hi.abs().max(1e-9) * 0.02);
            let (lo, hi) = (lo - pad, hi + pad);
            let x = |v: f64| ((v - lo) / (hi - lo) * INTERVAL_WIDTH).clamp(0.0, INTERVAL_WIDTH);
            IntervalRowView {
                check,
                label: &i.label,
                estimate: &i.estimate,
                interval: &i.interval,
                n: &i.n,
                criterion: &i.criterion,
                decision: i.decision,
                x_low: low.map_or(0.0, x),
                x_high: high.map_or(INTERVAL_WIDTH, x),
                x_estimate: x(estimate),
                x_threshold: threshold.map(x),
                open_low: low.is_none(),
                open_high: high.is_none(),
            }
        })
        .collect()
}

#[derive(Serialize)]
struct CheckRow<'a> {
    id: &'a str,
    title: &'a str,
    status: &'static str,
    observed: &'a str,
    baseline: &'a str,
    threshold: &'a str,
    sample_size: String,
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
    groups: Vec<SampleGroup>,
}

/// Samples of one kind.
#[derive(Serialize)]
struct SampleGroup {
    kind: Option<String>,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

#[derive(Serialize)]
struct Breakdown {
    name: String,
    value: String,
}

#[derive(Serialize)]
struct ChartSection {
    title: String,
    note: Option<String>,
    charts: Vec<Chart>,
}

/// A table the template draws as a table on a wide screen and as cards on a phone: every cell
/// carries its column name.
#[derive(Serialize, Default)]
struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    /// A totals row, when the table has one.
    total: Option<Vec<String>>,
    note: Option<String>,
}

#[derive(Serialize)]
struct InputRow<'a> {
    role: &'a str,
    path: &'a str,
    format: &'a str,
    rows: String,
    rows_rejected: String,
    sha256: &'a str,
}

fn metric<'a>(report: &'a Report, check: &str, key: &str) -> Option<&'a Metric> {
    report.check(check).and_then(|c| c.metrics.get(key))
}

/// Strings from the logs can be long: a report stays readable.
fn clip(s: String) -> String {
    const MAX: usize = 160;
    let s = crate::escape::neutral(&s).into_owned();
    if s.chars().count() <= MAX {
        s
    } else {
        let mut c: String = s.chars().take(MAX).collect();
        c.push('…');
        c
    }
}

/// A rate with its count: `12 (1.49%)`.
fn count_rate(n: u64, of: u64) -> String {
    if of == 0 {
        count(n)
    } else {
        format!("{} ({})", count(n), pct(n as f64 / of as f64))
    }
}

impl<'a> View<'a> {
    fn build(r: &'a Report) -> View<'a> {
        let canary = r.mode == Mode::Canary;
        View {
            version: r.tool.version,
            schema_version: r.schema_version,
            mode: r.mode.name(),
            kind: if canary {
                "Canary gate"
            } else {
                "Rollback audit"
            },
            incident_id: &r.incident.id,
            incident_title: r.incident.title.as_deref().filter(|t| !t.is_empty()),
            subtitle: subtitle(r),
            verdict: r.verdict.name(),
            verdict_word: r.verdict.name().to_uppercase(),
            headline: story::headline(r),
            exit_code: r.exit_code,
            counts: &r.counts,
            skipped: r
                .checks
                .iter()
                .filter(|c| c.status == crate::checks::Status::Skip)
                .map(check_row)
                .collect(),
            checks: r.checks.iter().map(check_row).collect(),
            events: events(r),
            windows: (!canary).then(|| windows_table(r)).flatten(),
            arms: canary.then(|| arms_table(r)),
            sections: if canary {
                canary_charts(r)
            } else {
                rollback_charts(r)
            },
            findings: findings(r),
            regions: regions(r),
            postmortem: story::postmortem(r),
            recommendations: r.next_steps(),
            intervals: interval_rows(r),
            statistics_method: r.statistics.method,
            root_cause_url: r.incident.root_cause_url.as_deref(),
            inputs: r
                .inputs
                .iter()
                .map(|i| InputRow {
                    role: i.role,
                    path: &i.path,
                    format: i.format,
                    rows: count(i.rows),
                    rows_rejected: count(i.rows_rejected),
                    sha256: i.sha256.as_deref().unwrap_or("not hashed (read by ranges)"),
                })
                .collect(),
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

fn check_row(c: &super::CheckReport) -> CheckRow<'_> {
    CheckRow {
        id: c.id,
        title: c.title,
        status: c.status.name(),
        observed: &c.observed,
        baseline: &c.baseline,
        threshold: &c.threshold,
        sample_size: c
            .sample_size
            .split(" / ")
            .map(|n| n.parse::<u64>().map_or_else(|_| n.to_string(), count))
            .collect::<Vec<_>>()
            .join(" / "),
        summary: &c.summary,
    }
}

/// The line under the title: what was audited, over which data.
fn subtitle(r: &Report) -> Vec<String> {
    let mut parts = Vec::new();
    match r.mode {
        Mode::Rollback => {
            if let Some(f) = r.incident.flip_at {
                parts.push(format!("rollback flip at {f}"));
            }
        }
        Mode::Canary => {
            if let (Some(b), Some(c)) = (&r.incident.baseline_arm, &r.incident.canary_arm) {
                parts.push(format!("arm “{c}” against “{b}”"));
            }
            if let Some([a, b]) = &r.windows.canary {
                parts.push(format!("window {a} → {b}"));
            }
        }
    }
    if let (Some(a), Some(b)) = (&r.windows.data_start, &r.windows.data_end) {
        parts.push(format!("data {a} → {b}"));
    }
    parts
}

fn findings(r: &Report) -> Vec<Finding<'_>> {
    r.attention()
        .map(|c| {
            // Samples of several kinds (e.g. during the freeze, two writers) get a table each.
            let mut kinds: Vec<Option<String>> = Vec::new();
            for s in &c.samples {
                let kind = s.get("kind").map(Metric::display);
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
            let groups = kinds
                .into_iter()
                .map(|kind| {
                    let samples: Vec<_> = c
                        .samples
                        .iter()
                        .filter(|s| s.get("kind").map(Metric::display) == kind)
                        .collect();
                    let mut columns: Vec<String> = Vec::new();
                    for s in &samples {
                        for k in s.keys() {
                            if k != "kind" && !columns.contains(k) {
                                columns.push(k.clone());
                            }
                        }
                    }
                    let rows = samples
                        .iter()
                        .map(|s| {
                            columns
                                .iter()
                                .map(|k| clip(s.get(k).map(Metric::display).unwrap_or_default()))
                                .collect()
                        })
                        .collect();
                    SampleGroup {
                        kind: kind.map(|k| k.replace('_', " ")),
                        columns,
                        rows,
                    }
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
                groups,
            }
        })
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

/// Rollback: one row per window of the incident (from the report's `impact` section).
fn windows_table(r: &Report) -> Option<Table> {
    let impact = r.impact.as_ref()?;
    let has_users = impact.windows.iter().any(|w| w.users.is_some());
    let mut columns: Vec<String> = ["Window", "From", "To", "Requests", "Errors", "Off the pins"]
        .map(String::from)
        .to_vec();
    if has_users {
        columns.push("Users affected".into());
    }
    let rows = impact
        .windows
        .iter()
        .map(|w| {
            let mut row = vec![
                w.name.to_string(),
                w.start.to_string(),
                w.end
                    .map_or_else(|| "end of data".to_string(), |e| e.to_string()),
                count(w.requests),
                if impact.has_status {
                    count_rate(w.errors, w.requests)
                } else {
                    "no status column".into()
                },
                count_rate(w.off_pin_requests, w.requests),
            ];
            if has_users {
                row.push(match (w.affected_users, w.users) {
                    (Some(a), Some(u)) => format!("{} of {}", count(a), count(u)),
                    _ => "—".into(),
                });
            }
            row
        })
        .collect();
    Some(Table {
        columns,
        rows,
        total: None,
        note: Some("Affected: a request off the last known good pins or answered with an error (5xx, 429). The incident window starts at the first degraded minute the data shows.".into()),
    })
}

/// Canary: the two arms side by side (requests, errors with their 95% interval, latency).
fn arms_table(r: &Report) -> Table {
    let names = [
        r.incident
            .baseline_arm
            .clone()
            .unwrap_or_else(|| "baseline".into()),
        r.incident
            .canary_arm
            .clone()
            .unwrap_or_else(|| "canary".into()),
    ];
    let requests = [r.rows.requests_baseline, r.rows.requests_subject];
    let errors = [
        metric(r, "error_rate", "baseline_errors").and_then(Metric::as_count),
        metric(r, "error_rate", "canary_errors").and_then(Metric::as_count),
    ];
    // Error rates are over the requests with a status.
    let with_status = [
        metric(r, "error_rate", "baseline_requests")
            .and_then(Metric::as_count)
            .unwrap_or(0),
        metric(r, "error_rate", "canary_requests")
            .and_then(Metric::as_count)
            .unwrap_or(0),
    ];
    let q = |side: &str, p: &str| {
        metric(r, "latency", &format!("{side}_{p}_ms"))
            .and_then(Metric::as_number)
            .map_or_else(|| "—".to_string(), charts::ms)
    };
    let rows = (0..2)
        .map(|i| {
            let side = ["baseline", "canary"][i];
            let error_cell = match errors[i] {
                Some(e) => {
                    let interval = wilson(e, with_status[i], 1.96)
                        .map(|(lo, hi)| format!(" [{} – {}]", pct(lo), pct(hi)))
                        .unwrap_or_default();
                    format!("{}{interval}", count_rate(e, with_status[i]))
                }
                None => "—".into(),
            };
            vec![
                names[i].clone(),
                ["baseline", "under test"][i].into(),
                count(requests[i]),
                error_cell,
                q(side, "p50"),
                q(side, "p95"),
                q(side, "p99"),
            ]
        })
        .collect();
    Table {
        columns: ["Arm", "Role", "Requests", "Errors [95% interval]", "p50", "p95", "p99"]
            .map(String::from)
            .to_vec(),
        rows,
        total: None,
        note: Some("Error intervals are Wilson score intervals at 95%: where the two arms' intervals overlap, the difference may be chance.".into()),
    }
}

/// One row per region: traffic of the two sides, and every check's per-region findings with
/// their rate, with a totals row.
fn regions(r: &Report) -> Option<Table> {
    let t = r.timeline.as_ref()?;
    if t.regions.is_empty() && !t.regions_dropped {
        return None;
    }
    let canary = r.mode == Mode::Canary;
    let sides: Vec<(usize, String)> = if canary {
        vec![
            (
                0,
                r.incident
                    .baseline_arm
                    .clone()
                    .unwrap_or_else(|| "baseline".into()),
            ),
            (
                1,
                r.incident
                    .canary_arm
                    .clone()
                    .unwrap_or_else(|| "canary".into()),
            ),
        ]
    } else {
        vec![(1, "after the flip".to_string())]
    };
    let mut columns = vec!["Region".to_string()];
    for (_, name) in &sides {
        columns.push(format!("Requests ({name})"));
        columns.push(format!("Errors ({name})"));
        columns.push(format!("p95 ({name})"));
    }
    // Checks with a per-region breakdown and its denominators.
    let mut breakdowns = Vec::new();
    for c in &r.checks {
        let Some((label, total_key)) = c.info.region_column else {
            continue;
        };
        let (Some(found), Some(totals)) = (
            c.metrics.get("by_region").and_then(Metric::as_counts),
            c.metrics.get(total_key).and_then(Metric::as_counts),
        ) else {
            continue;
        };
        columns.push(upper_first(label));
        breakdowns.push((found, totals));
    }
    let last_violation =
        metric(r, "pins", "last_violation_at_by_region").and_then(Metric::as_times);
    if last_violation.is_some_and(|m| !m.is_empty()) {
        columns.push("Last wrong pin".into());
    }
    let cell = |f: &RegionFigures| {
        [
            count(f.requests),
            match f.error_rate {
                Some(e) => format!("{} ({})", count(f.errors), pct(e)),
                None => "—".into(),
            },
            f.p95_latency_ms.map_or_else(|| "—".into(), charts::ms),
        ]
    };
    let mut total_found = vec![(0u64, 0u64); breakdowns.len()];
    let mut rows = Vec::new();
    for (name, figures) in &t.regions {
        let mut row = vec![name.clone()];
        for (s, _) in &sides {
            row.extend(cell(&figures[*s]));
        }
        for (i, (found, totals)) in breakdowns.iter().enumerate() {
            let n = found.get(name).copied().unwrap_or(0);
            let of = totals.get(name).copied().unwrap_or(0);
            total_found[i].0 += n;
            total_found[i].1 += of;
            row.push(count_rate(n, of));
        }
        if let Some(m) = last_violation.filter(|m| !m.is_empty()) {
            row.push(
                m.get(name)
                    .map_or_else(|| "—".into(), |t| format_millis(*t)),
            );
        }
        rows.push(row);
    }
    if t.regions_dropped {
        // No rows to sum: the breakdowns' totals are every region's.
        for (i, (found, totals)) in breakdowns.iter().enumerate() {
            total_found[i] = (found.values().sum(), totals.values().sum());
        }
    }
    let all = if t.regions_dropped {
        format!("all regions (more than {})", count(MAX_REGIONS as u64))
    } else {
        format!("all {} regions", count(t.regions.len() as u64))
    };
    let mut total = vec![all];
    for (s, _) in &sides {
        total.extend(cell(&t.totals[*s]));
    }
    for (n, of) in total_found {
        total.push(count_rate(n, of));
    }
    if last_violation.is_some_and(|m| !m.is_empty()) {
        total.push(
            metric(r, "pins", "last_violation_at")
                .and_then(Metric::as_time)
                .map_or_else(|| "—".into(), format_millis),
        );
    }
    Some(Table {
        columns,
        rows,
        total: Some(total),
        note: Some(if t.regions_dropped {
            format!("The region column has more than {} distinct values, so this page shows no row per region and no chart of pins by region: is a host, pod or request field mapped as the region?", count(MAX_REGIONS as u64))
        } else if canary {
            "Per region and arm, over the canary window; rates in parentheses.".into()
        } else {
            "Per region, every request from the flip on; rates in parentheses (wrong pins per request, stale hits per cache hit).".into()
        }),
    })
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
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
    if let Some(impact) = &r.impact {
        if let Some(start) = impact.incident_start {
            push(
                start.0,
                "incident starts: the first degraded minute (requests off the pins or erroring)"
                    .into(),
                "bad",
            );
        }
        if let (Some(rate), Some(at)) = (impact.peak_error_rate, impact.peak_error_at) {
            if rate > 0.0 {
                push(
                    at.0,
                    format!("peak error rate {} (this minute)", pct(rate)),
                    "bad",
                );
            }
        }
    }
    if let Some([a, b]) = &r.windows.canary {
        push(a.0, "canary window opens".into(), "");
        push(b.0, "canary window closes".into(), "");
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
    if let Some(start) = r.windows.data_start {
        push(start.0, "start of data".into(), "");
    }
    if let Some(end) = r.windows.data_end {
        push(end.0, "end of data".into(), "");
    }
    events.sort_by_key(|(t, _)| *t);
    events.into_iter().map(|(_, e)| e).collect()
}

/// Minutes from the flip of an instant.
fn minute_of(r: &Report, t: i64) -> Option<f64> {
    r.incident
        .flip_at
        .map(|f| (t - f.0) as f64 / MICROS_PER_MINUTE as f64)
}

/// Rollback: how the rollback converged, per minute around the flip.
fn rollback_charts(r: &Report) -> Vec<ChartSection> {
    let Some(t) = r.timeline.as_ref().filter(|t| !t.points.is_empty()) else {
        return Vec::new();
    };
    let Some(flip) = r.incident.flip_at else {
        return Vec::new();
    };
    let b = t.bucket_minutes as f64;
    let x0 = t.points[0].minute as f64;
    let x1 = t.points.last().map_or(x0, |p| p.minute as f64 + b);
    let f = Frame {
        r,
        flip: flip.0,
        t,
        x0,
        x1,
    };
    let mut charts = vec![
        error_rate_chart(r, &f),
        latency_chart(r, &f),
        pins_and_stale_chart(&f),
    ];
    charts.extend(region_chart(&f));
    charts.extend(backpressure_chart(r, &f));
    charts.push(quality_chart(r, &f));
    vec![ChartSection {
        title: "How the rollback converged".into(),
        note: (b > 1.0).then(|| format!("Each point is {b} minutes.")),
        charts,
    }]
}

/// What the rollback charts share: the timeline, the minutes drawn and what frames the series.
struct Frame<'a> {
    r: &'a Report,
    flip: i64,
    t: &'a crate::checks::series::Timeline,
    x0: f64,
    x1: f64,
}

impl Frame<'_> {
    /// The chart of `s` in the rollback frame ([`rollback_frame`]).
    fn render(&self, mut s: Spec) -> Chart {
        rollback_frame(self.r, self.flip, self.x0, self.x1, &mut s);
        s.render()
    }
}

/// What every rollback chart shows besides its series: clock ticks from the flip, the flip,
/// recovery and onset markers, and the windows as strips.
fn rollback_frame(r: &Report, flip: i64, x0: f64, x1: f64, s: &mut Spec) {
    s.x_ticks = XTicks::Clock { origin: flip };
    s.markers.push(Marker {
        x: 0.0,
        class: "flip",
        label: "flip".into(),
    });
    let recovery = metric(r, "error_recovery", "recovery_minutes").and_then(Metric::as_count);
    if let Some(k) = recovery.filter(|k| *k > 0) {
        s.markers.push(Marker {
            x: k as f64,
            class: "recovery",
            label: format!("recovered +{k} min"),
        });
    }
    if let Some(start) = r.impact.as_ref().and_then(|i| i.incident_start) {
        if let Some(m) = minute_of(r, start.0) {
            s.markers.push(Marker {
                x: m,
                class: "onset",
                label: "incident starts".into(),
            });
        }
    }
    let mut strip = |w: Option<(i64, Option<i64>)>, class: &'static str, row: usize| {
        if let Some((a, b)) = w {
            let from = minute_of(r, a).unwrap_or(x0);
            let to = b.and_then(|b| minute_of(r, b)).unwrap_or(x1);
            s.strips.push(Span {
                from,
                to,
                class,
                row,
            });
        }
    };
    strip(
        r.windows.baseline.map(|[a, b]| (a.0, Some(b.0))),
        "win-baseline",
        0,
    );
    strip(
        r.windows
            .post
            .map(|[a, b]| (a.map_or(flip, |a| a.0), b.map(|b| b.0))),
        "win-post",
        0,
    );
    strip(
        r.windows.freeze.map(|[a, b]| (a.0, Some(b.0))),
        "win-freeze",
        1,
    );
    s.legend("win-baseline", "baseline window");
    s.legend("win-post", "post window");
    if r.windows.freeze.is_some() {
        s.legend("win-freeze", "write freeze");
    }
}

fn threshold(r: &Report, key: &str) -> Option<f64> {
    r.thresholds.get(key).and_then(Value::as_f64)
}

fn error_rate_chart(r: &Report, f: &Frame<'_>) -> Chart {
    let t = f.t;
    let max_err = t
        .points
        .iter()
        .filter_map(|p| p.error_rate)
        .fold(0.0, f64::max);
    let limit = threshold(r, "error_rate_max");
    let err_max = charts::nice_max(max_err.max(limit.unwrap_or(0.0) * 2.0));
    let mut s = Spec::new(
        "User-visible error rate per minute",
        f.x0,
        f.x1,
        err_max,
        charts::pct,
    );
    s.legend("s0", "5xx and 429 share");
    s.series.push(("s0", points(t, |p| p.error_rate)));
    if let Some(m) = limit {
        s.hlines.push((m, "threshold"));
        s.legend("threshold", format!("error_rate_max {}", charts::pct(m)));
    }
    f.render(s)
}

fn latency_chart(r: &Report, f: &Frame<'_>) -> Chart {
    let t = f.t;
    let base_p95 = metric(r, "latency", "baseline_p95_ms").and_then(Metric::as_number);
    let max_lat = t
        .points
        .iter()
        .filter_map(|p| p.p95_latency_ms)
        .fold(base_p95.unwrap_or(0.0), f64::max);
    let mut s = Spec::new(
        "p95 latency per minute",
        f.x0,
        f.x1,
        charts::nice_max(max_lat * 1.1),
        charts::ms,
    );
    s.legend("s0", "p95 of the minute");
    s.series.push(("s0", points(t, |p| p.p95_latency_ms)));
    if let Some(b) = base_p95 {
        s.hlines.push((b, "baseline"));
        s.legend("baseline", format!("baseline p95 {}", charts::ms(b)));
    }
    f.render(s)
}

fn pins_and_stale_chart(f: &Frame<'_>) -> Chart {
    let t = f.t;
    let b = t.bucket_minutes as f64;
    let mut s = Spec::new(
        "Requests on the expected pins, and stale cache hits",
        f.x0,
        f.x1,
        1.0,
        charts::pct,
    );
    s.legend("s0", "share of requests on the expected pins");
    s.series.push(("s0", points(t, |p| p.pins_ok_share)));
    // Stale hits only mean something after the flip: scaled to the worst post-flip bucket.
    let post: Vec<_> = t.points.iter().filter(|p| p.minute >= 0).collect();
    let max_stale = post.iter().map(|p| p.stale_hits).max().unwrap_or(0);
    if max_stale > 0 {
        s.bar_max = Some(max_stale as f64);
        for p in &post {
            s.bars.push((
                p.minute as f64 + b * 0.1,
                b * 0.8,
                p.stale_hits as f64,
                "bar",
            ));
        }
        s.legend(
            "bar",
            format!(
                "stale cache hits after the flip (bar height: up to {} per {})",
                count(max_stale),
                if b == 1.0 {
                    "minute".to_string()
                } else {
                    format!("{b} minutes")
                }
            ),
        );
    } else {
        s.legend("bar", "no stale cache hit after the flip");
    }
    f.render(s)
}

fn quality_chart(r: &Report, f: &Frame<'_>) -> Chart {
    let t = f.t;
    let mut s = Spec::new(
        "ΔS p95 and coverage per minute",
        f.x0,
        f.x1,
        1.0,
        charts::unit,
    );
    s.legend("s0", "ΔS p95");
    s.legend("s1", "mean coverage");
    s.series.push(("s0", points(t, |p| p.delta_s_p95)));
    s.series.push(("s1", points(t, |p| p.coverage_mean)));
    if let Some(m) = threshold(r, "coverage_min") {
        s.hlines.push((m, "threshold"));
        s.legend("threshold", format!("coverage_min {m}"));
    }
    f.render(s)
}

/// Series classes for regions, in region order; more regions than colours are not drawn.
const REGION_CLASSES: [(&str, &str); 6] = [
    ("s0", "flip-s0"),
    ("s1", "flip-s1"),
    ("s2", "flip-s2"),
    ("s3", "flip-s3"),
    ("s4", "flip-s4"),
    ("s5", "flip-s5"),
];

/// The share of requests on the expected pins, region by region, with each region's own flip
/// marked: a region that flipped late, or never converged, stands out. Drawn with two regions
/// or more, or whenever `[flip_at_by_region]` moves a flip.
fn region_chart(f: &Frame<'_>) -> Option<Chart> {
    let t = f.t;
    let regions = &t.region_pins;
    let moved = regions.iter().any(|r| r.flip_minute != 0.0);
    if regions.len() < 2 && !moved {
        return None;
    }
    let mut s = Spec::new(
        "Requests on the expected pins, by region",
        f.x0,
        f.x1,
        1.0,
        charts::pct,
    );
    let b = t.bucket_minutes as f64;
    for (region, (class, flip_class)) in regions.iter().zip(REGION_CLASSES) {
        s.legend(class, region.region.clone());
        let points = t
            .points
            .iter()
            .zip(&region.shares)
            .filter_map(|(p, v)| v.map(|v| (p.minute as f64 + b / 2.0, v)))
            .collect();
        s.series.push((class, points));
        if region.flip_minute != 0.0 {
            s.markers.push(Marker {
                x: region.flip_minute,
                class: flip_class,
                label: format!("{} flip", region.region),
            });
        }
    }
    if regions.len() > REGION_CLASSES.len() {
        s.legend(
            "baseline",
            format!(
                "{} more regions not drawn (see By region)",
                regions.len() - REGION_CLASSES.len()
            ),
        );
    }
    Some(f.render(s))
}

/// 429s and open breakers per minute (shares), and queue-wait p95 as bars: drawn when the
/// backpressure check ran.
fn backpressure_chart(r: &Report, f: &Frame<'_>) -> Option<Chart> {
    let t = f.t;
    let check = r.check("backpressure")?;
    if check.status == crate::checks::Status::Skip {
        return None;
    }
    let threshold = threshold(r, "storm_429_rate");
    let top = t
        .points
        .iter()
        .flat_map(|p| [p.throttled_share, p.breaker_open_share])
        .flatten()
        .fold(threshold.unwrap_or(0.0) * 2.0, f64::max);
    let mut s = Spec::new(
        "Backpressure per minute: 429s, breakers, queue waits",
        f.x0,
        f.x1,
        charts::nice_max(top.max(0.01)),
        charts::pct,
    );
    let b = t.bucket_minutes as f64;
    let max_queue = t
        .points
        .iter()
        .filter_map(|p| p.queue_p95_ms)
        .fold(0.0, f64::max);
    if max_queue > 0.0 {
        s.bar_max = Some(max_queue);
        for p in &t.points {
            if let Some(q) = p.queue_p95_ms {
                s.bars
                    .push((p.minute as f64 + b * 0.1, b * 0.8, q, "bar-queue"));
            }
        }
        s.legend(
            "bar-queue",
            format!(
                "queue-wait p95 (bar height: up to {})",
                charts::ms(max_queue)
            ),
        );
    }
    s.legend("s1", "429 share");
    s.series.push(("s1", points(t, |p| p.throttled_share)));
    if t.points.iter().any(|p| p.breaker_open_share.is_some()) {
        s.legend("s3", "open or half-open breakers");
        s.series.push(("s3", points(t, |p| p.breaker_open_share)));
    }
    if let Some(m) = threshold {
        s.hlines.push((m, "threshold"));
        s.legend("threshold", format!("storm_429_rate {}", charts::pct(m)));
    }
    Some(f.render(s))
}

fn points(
    t: &crate::checks::series::Timeline,
    value: impl Fn(&crate::checks::series::TimelinePoint) -> Option<f64>,
) -> Vec<(f64, f64)> {
    points_of(&t.points, t.bucket_minutes, value)
}

fn points_of(
    pts: &[crate::checks::series::TimelinePoint],
    bucket: i64,
    value: impl Fn(&crate::checks::series::TimelinePoint) -> Option<f64>,
) -> Vec<(f64, f64)> {
    // Each bucket's value is drawn at its middle.
    pts.iter()
        .filter_map(|p| value(p).map(|v| (p.minute as f64 + bucket as f64 / 2.0, v)))
        .collect()
}

/// Canary: the two arms compared, then per minute over the window.
fn canary_charts(r: &Report) -> Vec<ChartSection> {
    let names = [
        r.incident
            .baseline_arm
            .clone()
            .unwrap_or_else(|| "baseline".into()),
        r.incident
            .canary_arm
            .clone()
            .unwrap_or_else(|| "canary".into()),
    ];
    let compare: Vec<Chart> = [distribution_chart(r, &names), arm_error_chart(r, &names)]
        .into_iter()
        .flatten()
        .collect();
    let mut sections = vec![ChartSection {
        title: format!("“{}” against “{}”", names[1], names[0]),
        note: None,
        charts: compare,
    }];
    sections.extend(over_the_window(r, &names));
    sections.retain(|s| !s.charts.is_empty());
    sections
}

fn distribution_chart(r: &Report, names: &[String; 2]) -> Option<Chart> {
    let d = r
        .distributions
        .as_ref()
        .filter(|d| d.iter().any(|c| !c.is_empty()))?;
    let max = d.iter().flatten().map(|p| p.1).fold(0.0, f64::max);
    let x_max = charts::nice_max(max * 1.05);
    let mut s = Spec::new(
        "Latency distribution of both arms",
        0.0,
        x_max,
        1.0,
        charts::pct,
    );
    s.x_ticks = XTicks::Values(charts::ms);
    for (i, class) in [(0, "s0"), (1, "s1")] {
        s.series
            .push((class, d[i].iter().map(|&(q, v)| (v, q)).collect()));
        s.legend(
            class,
            format!("{} (share of requests at or under x)", names[i]),
        );
    }
    s.hlines.push((0.95, "baseline"));
    s.legend("baseline", "p95 level");
    Some(s.render())
}

fn arm_error_chart(r: &Report, names: &[String; 2]) -> Option<Chart> {
    let count_of = |key: &str| metric(r, "error_rate", key).and_then(Metric::as_count);
    let (eb, ec) = (count_of("baseline_errors")?, count_of("canary_errors")?);
    // Error rates are over the requests with a status.
    let with_status = [
        count_of("baseline_requests").unwrap_or(0),
        count_of("canary_requests").unwrap_or(0),
    ];
    let intervals = [
        wilson(eb, with_status[0], 1.96),
        wilson(ec, with_status[1], 1.96),
    ];
    let top = intervals
        .iter()
        .flatten()
        .map(|i| i.1)
        .fold(threshold_or(r, "error_rate_max", 0.0) * 1.2, f64::max);
    let y_max = charts::nice_max(top.max(0.001));
    let mut s = Spec::new(
        "Error rate of both arms, with 95% intervals",
        0.0,
        2.0,
        y_max,
        charts::pct,
    );
    s.x_ticks = XTicks::Fixed(vec![(0.5, names[0].clone()), (1.5, names[1].clone())]);
    for (i, e) in [eb, ec].into_iter().enumerate() {
        if with_status[i] > 0 {
            let rate = e as f64 / with_status[i] as f64;
            s.bars.push((
                i as f64 + 0.25,
                0.5,
                rate.max(f64::MIN_POSITIVE),
                ["bar-s0", "bar-s1"][i],
            ));
        }
        if let Some((lo, hi)) = intervals[i] {
            s.whiskers.push((i as f64 + 0.5, lo, hi, "whisker"));
        }
    }
    if let Some(m) = threshold(r, "error_rate_max") {
        s.hlines.push((m, "threshold"));
        s.legend("threshold", format!("error_rate_max {}", charts::pct(m)));
    }
    s.legend("whisker", "95% Wilson interval");
    Some(s.render())
}

/// Error rate, p95 latency and requests per minute of both arms over the canary window.
fn over_the_window(r: &Report, names: &[String; 2]) -> Option<ChartSection> {
    use crate::checks::series::TimelinePoint;
    let t = r.timeline.as_ref().filter(|t| !t.points.is_empty())?;
    let b = t.bucket_minutes;
    let x0 = t.points[0].minute as f64;
    let x1 = t.points.last().map_or(x0, |p| (p.minute + b) as f64);
    let origin = r.windows.canary.map_or(0, |[a, _]| a.0);
    let both = || t.points.iter().chain(&t.canary_points);
    let by_arm = |title: &str,
                  y_max: f64,
                  fmt: fn(f64) -> String,
                  value: &dyn Fn(&TimelinePoint) -> Option<f64>| {
        let mut s = Spec::new(title, x0, x1, y_max, fmt);
        s.x_ticks = XTicks::Clock { origin };
        s.series.push(("s0", points_of(&t.points, b, value)));
        s.series.push(("s1", points_of(&t.canary_points, b, value)));
        s.legend("s0", names[0].clone());
        s.legend("s1", names[1].clone());
        s.render()
    };
    let max_err = both()
        .filter_map(|p| p.error_rate)
        .fold(threshold_or(r, "error_rate_max", 0.0) * 2.0, f64::max);
    let max_lat = both().filter_map(|p| p.p95_latency_ms).fold(0.0, f64::max);
    let max_req = both().map(|p| p.requests).max().unwrap_or(0);
    let charts = vec![
        by_arm(
            "Error rate per minute, by arm",
            charts::nice_max(max_err),
            charts::pct,
            &|p| p.error_rate,
        ),
        by_arm(
            "p95 latency per minute, by arm",
            charts::nice_max(max_lat * 1.1),
            charts::ms,
            &|p| p.p95_latency_ms,
        ),
        by_arm(
            "Requests per minute, by arm",
            charts::nice_max(max_req as f64 * 1.1),
            charts::counted,
            &|p| Some(p.requests as f64),
        ),
    ];
    Some(ChartSection {
        title: "Over the window".into(),
        note: (b > 1).then(|| format!("Each point is {b} minutes.")),
        charts,
    })
}

fn threshold_or(r: &Report, key: &str, default: f64) -> f64 {
    threshold(r, key).unwrap_or(default)
}
