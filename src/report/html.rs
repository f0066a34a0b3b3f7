//! The HTML postmortem (`--html FILE`): one self-contained page rendered with tera from
//! `templates/report.html`. No script, no network: inline CSS, inline SVG charts, a
//! Content-Security-Policy that forbids loading anything. Every string from the logs goes through
//! tera's HTML autoescaping; the SVG geometry is numbers computed here.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{display_value, Renderer, Report, Timeline};
use crate::time::{format_seconds, parse_rfc3339, MICROS_PER_MINUTE};

const TEMPLATE: &str = include_str!("../../templates/report.html");

pub struct Html;

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
    mode: &'a str,
    incident_id: &'a str,
    incident_title: Option<&'a str>,
    flip_at: Option<&'a str>,
    data_span: Option<String>,
    verdict: &'a str,
    verdict_word: String,
    headline: String,
    exit_code: i32,
    counts: &'a super::StatusCounts,
    checks: Vec<CheckRow<'a>>,
    events: Vec<Event>,
    charts: Vec<Chart>,
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
    status: &'a str,
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
    status: &'a str,
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

fn metric<'a>(report: &'a Report, check: &str, key: &str) -> Option<&'a Value> {
    report
        .checks
        .iter()
        .find(|c| c.id == check)
        .and_then(|c| c.metrics.get(key))
}

fn count(report: &Report, check: &str, key: &str) -> u64 {
    metric(report, check, key)
        .and_then(Value::as_u64)
        .unwrap_or(0)
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

fn sample_size(c: &super::CheckReport) -> String {
    let keys = [
        "requests_checked",
        "hits_checked",
        "users_checked",
        "executions",
        "receipts",
        "input_rows",
    ];
    for k in keys {
        if let Some(n) = c.metrics.get(k).and_then(Value::as_u64) {
            return n.to_string();
        }
    }
    match (
        c.metrics.get("baseline_samples"),
        c.metrics
            .iter()
            .find(|(k, _)| k.ends_with("_samples") && !k.starts_with("baseline")),
    ) {
        (Some(b), Some((_, s))) => format!("{} / {}", display_value(b), display_value(s)),
        _ => String::new(),
    }
}

impl<'a> View<'a> {
    fn build(r: &'a Report) -> View<'a> {
        let failing: Vec<&str> = r
            .checks
            .iter()
            .filter(|c| c.status == "fail")
            .map(|c| c.id)
            .collect();
        let inconclusive: Vec<&str> = r
            .checks
            .iter()
            .filter(|c| c.status == "inconclusive")
            .map(|c| c.id)
            .collect();
        let warned: Vec<&str> = r
            .checks
            .iter()
            .filter(|c| c.status == "warn")
            .map(|c| c.id)
            .collect();
        let headline = match r.verdict {
            "fail" => format!("The gate is closed: {} failed.", failing.join(", ")),
            "inconclusive" => format!("Too little data to judge {}.", inconclusive.join(", ")),
            "warn" => format!("Back at baseline, with warnings on {}.", warned.join(", ")),
            _ => "Production is back: every check passed.".to_string(),
        };
        let findings = r
            .checks
            .iter()
            .filter(|c| matches!(c.status, "fail" | "warn" | "inconclusive"))
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
                            .map(|k| clip(s.get(k).map(display_value).unwrap_or_default()))
                            .collect()
                    })
                    .collect();
                let breakdowns = c
                    .metrics
                    .iter()
                    .filter(|(k, v)| k.starts_with("by_") || k.contains("_by_") && v.is_object())
                    .filter(|(_, v)| v.as_object().is_some_and(|m| !m.is_empty()))
                    .map(|(k, v)| Breakdown {
                        name: k.clone(),
                        value: clip(display_value(v)),
                    })
                    .collect();
                Finding {
                    id: c.id,
                    status: c.status,
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
            mode: r.mode,
            incident_id: &r.incident.id,
            incident_title: r.incident.title.as_deref(),
            flip_at: r.incident.flip_at.as_deref(),
            data_span: match (&r.windows.data_start, &r.windows.data_end) {
                (Some(a), Some(b)) => Some(format!("{a} → {b}")),
                _ => None,
            },
            verdict: r.verdict,
            verdict_word: r.verdict.to_uppercase(),
            headline,
            exit_code: r.exit_code,
            counts: &r.counts,
            checks: r
                .checks
                .iter()
                .map(|c| CheckRow {
                    id: c.id,
                    title: c.title,
                    status: c.status,
                    observed: &c.observed,
                    baseline: &c.baseline,
                    threshold: &c.threshold,
                    sample_size: sample_size(c),
                    summary: &c.summary,
                })
                .collect(),
            events: events(r),
            charts: r
                .timeline
                .as_ref()
                .map(|t| charts(r, t))
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
                        other => format!("{k}: {}", display_value(other)),
                    })
                    .collect(),
                _ => Vec::new(),
            },
        }
    }
}

fn regions(r: &Report) -> (Vec<&'static str>, Vec<RegionRow>) {
    let sources: [(&str, &str, &'static str); 2] = [
        ("pins", "by_region", "requests with a wrong pin"),
        ("cache_rotation", "by_region", "stale cache hits"),
    ];
    let mut columns = Vec::new();
    let mut table: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (check, key, label) in sources {
        let Some(Value::Object(map)) = metric(r, check, key) else {
            continue;
        };
        let col = columns.len();
        columns.push(label);
        for (region, v) in map {
            let row = table.entry(region.clone()).or_default();
            row.resize(col + 1, 0);
            row[col] = v.as_u64().unwrap_or(0);
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
    let at = |s: &str| parse_rfc3339(s);
    let mut push = |t: Option<i64>, what: String, kind: &'static str| {
        if let Some(t) = t {
            events.push((
                t,
                Event {
                    when: format_seconds(t),
                    what,
                    kind,
                },
            ));
        }
    };
    if let Some(t) = &r.timeline {
        // The bad rollout shows as the first bucket where most requests lost the expected pins.
        let diverged = t
            .points
            .iter()
            .find(|p| p.pins_ok_share.is_some_and(|s| s < 0.5) && p.minute < 0);
        push(
            diverged.map(|p| p.start),
            "bad rollout: most requests stop carrying the expected pins".into(),
            "bad",
        );
    }
    if let Some([start, end]) = &r.windows.freeze {
        push(at(start), "write freeze starts".into(), "bad");
        push(at(end), "write freeze ends (jobs unfrozen)".into(), "good");
    }
    let flip = r.incident.flip_at.as_deref().and_then(at);
    push(flip, "rollback pointer flip".into(), "flip");
    if let (Some(flip), Some(k)) = (
        flip,
        metric(r, "error_recovery", "recovery_minutes").and_then(Value::as_u64),
    ) {
        push(
            Some(flip + k as i64 * MICROS_PER_MINUTE),
            format!("errors back under the threshold for good ({k} min after the flip)"),
            "good",
        );
    }
    if let Some(last) = metric(r, "cache_rotation", "last_stale_at").and_then(Value::as_str) {
        push(at(last), "last stale cache hit".into(), "bad");
    }
    push(
        r.windows.data_end.as_deref().and_then(at),
        "end of data".into(),
        "",
    );
    events.sort_by_key(|(t, _)| *t);
    events.into_iter().map(|(_, e)| e).collect()
}

fn postmortem(r: &Report) -> Postmortem {
    let failing: Vec<&str> = r
        .checks
        .iter()
        .filter(|c| c.status == "fail")
        .map(|c| c.id)
        .collect();
    let summary = match r.verdict {
        "fail" => format!(
            "The rollback of {} is not complete: {} of {} checks failed ({}). Until they pass, production is not back at the last known good state.",
            r.incident.id,
            failing.len(),
            r.checks.len(),
            failing.join(", ")
        ),
        "inconclusive" => format!("The audit of {} had too little data to judge every check; re-run it when more traffic has been logged.", r.incident.id),
        "warn" => format!("The rollback of {} holds: no check failed, but some warned (see below).", r.incident.id),
        _ => format!("The rollback of {} is complete: every check passed.", r.incident.id),
    };
    let mut impact = Vec::new();
    let v = count(r, "pins", "violations");
    if v > 0 {
        impact.push(format!(
            "{v} requests after the flip were served with a wrong or missing version pin."
        ));
    }
    let s = count(r, "cache_rotation", "stale_hits");
    if s > 0 {
        impact.push(format!(
            "{s} cache hits after the flip served answers cached by the bad version."
        ));
    }
    let e = count(r, "duplicate_effects", "extra_executions");
    if e > 0 {
        impact.push(format!(
            "{e} side effects were executed more than once ({} idempotency keys).",
            count(r, "duplicate_effects", "duplicate_keys")
        ));
    }
    let f = count(r, "writer_freeze", "writes_during_freeze");
    if f > 0 {
        impact.push(format!(
            "{f} side effects were executed during the write freeze."
        ));
    }
    if let Some(k) = metric(r, "error_recovery", "recovery_minutes").and_then(Value::as_u64) {
        if k > 0 {
            impact.push(format!(
                "Users saw elevated errors for {k} minutes after the flip."
            ));
        }
    } else if r
        .checks
        .iter()
        .any(|c| c.id == "error_recovery" && c.status == "fail")
    {
        impact.push("The error rate had not recovered by the end of the data.".to_string());
    }
    let actions = r
        .checks
        .iter()
        .filter(|c| matches!(c.status, "fail" | "warn" | "inconclusive"))
        .map(|c| Action {
            check: c.id.to_string(),
            action: action_for(r, c.id, c.status),
        })
        .collect();
    Postmortem {
        summary,
        impact,
        actions,
    }
}

fn action_for(r: &Report, id: &str, status: &str) -> String {
    if status == "inconclusive" {
        return "collect more traffic (or lower min_requests knowingly) and re-run the audit"
            .to_string();
    }
    let regions = |check: &str| match metric(r, check, "by_region") {
        Some(Value::Object(m)) if !m.is_empty() => m.keys().cloned().collect::<Vec<_>>().join(", "),
        _ => "every region".to_string(),
    };
    match id {
        "pins" => format!("redeploy the last known good pins to {}; add a pin check to the deploy gate", regions("pins")),
        "cache_rotation" => format!("purge or rotate the cache namespace in {}; make namespace rotation part of the rollback runbook", regions("cache_rotation")),
        "cache_isolation" => "give each arm its own cache namespace (render it from the arm's pins) and purge the shared entries".to_string(),
        "mixed_versions" => "find what keeps users on the old version (sticky sessions, per-user caches) and drain it".to_string(),
        "sticky_routing" => "make arm assignment sticky per user before comparing arms".to_string(),
        "duplicate_effects" => "reconcile the duplicated side effects with the affected users (refunds, corrections); enforce the idempotency fence on every retry path".to_string(),
        "writer_freeze" => "audit the writes made during the freeze and at the flip; make the freeze a hard fence and hand over writers with a lease".to_string(),
        "reconciliation" => "explain the orphan receipts (missing logs?) and check the effects of failed requests for retries".to_string(),
        "error_recovery" | "error_rate" => "find what still errors after the flip (region, dependency, cache) before reopening writes".to_string(),
        "latency" => "compare the slow path with the baseline (cold caches, leftover flags, index tuning)".to_string(),
        "quality" => "compare retrieval and prompts with the baseline: ΔS, coverage and λ did not return".to_string(),
        "evidence" => "link the root cause and attach the receipts so the postmortem is complete".to_string(),
        _ => "see the check's findings".to_string(),
    }
}

// ----- charts -----

#[derive(Serialize)]
struct Chart {
    title: String,
    legend: String,
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    plot_h: f64,
    series: Vec<Series>,
    bars: Vec<Bar>,
    hlines: Vec<Line>,
    vlines: Vec<VLine>,
    bands: Vec<Band>,
    xticks: Vec<Tick>,
    yticks: Vec<Tick>,
}

#[derive(Serialize)]
struct Series {
    class: &'static str,
    points: String,
}

#[derive(Serialize)]
struct Bar {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

#[derive(Serialize)]
struct Line {
    y: f64,
    class: &'static str,
    label: String,
}

#[derive(Serialize)]
struct VLine {
    x: f64,
    /// Label baseline; staggered so that close lines keep readable labels.
    label_y: f64,
    class: &'static str,
    label: String,
}

#[derive(Serialize)]
struct Band {
    x: f64,
    w: f64,
    label: String,
}

#[derive(Serialize)]
struct Tick {
    #[serde(skip_serializing_if = "Option::is_none")]
    x: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    y: Option<f64>,
    label: String,
}

const W: f64 = 520.0;
const H: f64 = 200.0;
const LEFT: f64 = 46.0;
const RIGHT: f64 = W - 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = H - 22.0;

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

struct Frame<'t> {
    t: &'t Timeline,
    x0: i64,
    x1: i64,
}

impl Frame<'_> {
    fn x(&self, minute: i64) -> f64 {
        let span = (self.x1 - self.x0).max(1) as f64;
        round1(LEFT + (minute - self.x0) as f64 / span * (RIGHT - LEFT))
    }
    fn y(&self, v: f64, max: f64) -> f64 {
        round1(BOTTOM - (v / max).clamp(0.0, 1.0) * (BOTTOM - TOP))
    }
    fn chart(
        &self,
        r: &Report,
        title: &str,
        legend: &str,
        max: f64,
        fmt: &dyn Fn(f64) -> String,
    ) -> Chart {
        let mut vlines = Vec::new();
        let mut bands = Vec::new();
        let minute_of = |s: &str| {
            parse_rfc3339(s)
                .zip(r.incident.flip_at.as_deref().and_then(parse_rfc3339))
                .map(|(t, f)| (t - f).div_euclid(MICROS_PER_MINUTE))
        };
        if let Some([a, b]) = &r.windows.freeze {
            if let (Some(a), Some(b)) = (minute_of(a), minute_of(b)) {
                let (xa, xb) = (self.x(a.max(self.x0)), self.x(b.min(self.x1)));
                bands.push(Band {
                    x: xa,
                    w: round1((xb - xa).max(0.0)),
                    label: "write freeze".into(),
                });
            }
        }
        vlines.push(VLine {
            x: self.x(0),
            label_y: TOP + 10.0,
            class: "flip",
            label: "flip".into(),
        });
        if let Some(k) = metric(r, "error_recovery", "recovery_minutes").and_then(Value::as_u64) {
            if k > 0 {
                vlines.push(VLine {
                    x: self.x(k as i64),
                    label_y: TOP + 24.0,
                    class: "recovery",
                    label: "recovered".into(),
                });
            }
        }
        let step = ((self.x1 - self.x0) / 6).max(1);
        let step = [5, 10, 15, 30, 60, 120, 240]
            .into_iter()
            .find(|s| *s >= step)
            .unwrap_or(step);
        let mut xticks = Vec::new();
        let mut m = self.x0.div_euclid(step) * step;
        while m <= self.x1 {
            if m >= self.x0 {
                let label = self.t.points.first().map_or_else(String::new, |p| {
                    let t = p.start + (m - p.minute) * MICROS_PER_MINUTE;
                    format_seconds(t).get(11..16).unwrap_or("").to_string()
                });
                xticks.push(Tick {
                    x: Some(self.x(m)),
                    y: None,
                    label,
                });
            }
            m += step;
        }
        let yticks = [0.0, 0.5, 1.0]
            .iter()
            .map(|f| Tick {
                x: None,
                y: Some(self.y(max * f, max)),
                label: fmt(max * f),
            })
            .collect();
        Chart {
            title: title.to_string(),
            legend: legend.to_string(),
            width: W,
            height: H,
            left: LEFT,
            right: RIGHT,
            top: TOP,
            bottom: BOTTOM,
            plot_h: BOTTOM - TOP,
            series: Vec::new(),
            bars: Vec::new(),
            hlines: Vec::new(),
            vlines,
            bands,
            xticks,
            yticks,
        }
    }
    fn polyline(
        &self,
        class: &'static str,
        max: f64,
        value: impl Fn(&super::TimelinePoint) -> Option<f64>,
    ) -> Series {
        let points = self
            .t
            .points
            .iter()
            .filter_map(|p| value(p).map(|v| format!("{},{}", self.x(p.minute), self.y(v, max))))
            .collect::<Vec<_>>()
            .join(" ");
        Series { class, points }
    }
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

fn charts(r: &Report, t: &Timeline) -> Vec<Chart> {
    let (Some(first), Some(last)) = (t.points.first(), t.points.last()) else {
        return Vec::new();
    };
    let frame = Frame {
        t,
        x0: first.minute,
        x1: last.minute + t.bucket_minutes,
    };
    let threshold = |k: &str| r.thresholds.get(k).and_then(Value::as_f64);
    let mut out = Vec::new();

    let max_err = t
        .points
        .iter()
        .filter_map(|p| p.error_rate)
        .fold(0.0, f64::max);
    let err_max = nice_max(max_err.max(threshold("error_rate_max").unwrap_or(0.0) * 2.0));
    let pct = |v: f64| format!("{:.1}%", v * 100.0);
    let mut c = frame.chart(
        r,
        "User-visible error rate per minute",
        "5xx and 429 share; dashed: error_rate_max",
        err_max,
        &pct,
    );
    c.series
        .push(frame.polyline("s0", err_max, |p| p.error_rate));
    if let Some(m) = threshold("error_rate_max") {
        c.hlines.push(Line {
            y: frame.y(m, err_max),
            class: "threshold",
            label: format!("max {}", pct(m)),
        });
    }
    out.push(c);

    let base_p95 = metric(r, "latency", "baseline_p95_ms").and_then(Value::as_f64);
    let max_lat = t
        .points
        .iter()
        .filter_map(|p| p.p95_latency_ms)
        .fold(base_p95.unwrap_or(0.0), f64::max);
    let lat_max = nice_max(max_lat * 1.1);
    let ms = |v: f64| format!("{v:.0} ms");
    let mut c = frame.chart(
        r,
        "p95 latency per minute",
        "dotted: baseline p95",
        lat_max,
        &ms,
    );
    c.series
        .push(frame.polyline("s0", lat_max, |p| p.p95_latency_ms));
    if let Some(b) = base_p95 {
        c.hlines.push(Line {
            y: frame.y(b, lat_max),
            class: "baseline",
            label: format!("baseline {b:.0} ms"),
        });
    }
    out.push(c);

    let mut c = frame.chart(
        r,
        "Requests carrying the expected pins",
        "share per minute; bars: stale cache hits (right scale)",
        1.0,
        &pct,
    );
    let max_stale = t
        .points
        .iter()
        .map(|p| p.stale_hits)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let bar_w = round1(((RIGHT - LEFT) / t.points.len().max(1) as f64 * 0.8).max(1.0));
    for p in &t.points {
        if p.stale_hits > 0 {
            let y = frame.y(p.stale_hits as f64, max_stale);
            c.bars.push(Bar {
                x: frame.x(p.minute),
                y,
                w: bar_w,
                h: round1(BOTTOM - y),
            });
        }
    }
    c.series
        .push(frame.polyline("s0", 1.0, |p| p.pins_ok_share));
    c.hlines.push(Line {
        y: TOP,
        class: "baseline",
        label: format!("{} stale hits", max_stale as u64),
    });
    out.push(c);

    let mut c = frame.chart(
        r,
        "ΔS p95 and coverage per minute",
        "blue: ΔS p95; green: mean coverage",
        1.0,
        &|v| format!("{v:.1}"),
    );
    c.series.push(frame.polyline("s0", 1.0, |p| p.delta_s_p95));
    c.series
        .push(frame.polyline("s1", 1.0, |p| p.coverage_mean));
    if let Some(m) = threshold("coverage_min") {
        c.hlines.push(Line {
            y: frame.y(m, 1.0),
            class: "threshold",
            label: format!("coverage_min {m}"),
        });
    }
    out.push(c);
    out
}
