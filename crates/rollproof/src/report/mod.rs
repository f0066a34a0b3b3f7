//! The one serializable report model, and one renderer per output format.
//!
//! Checks produce internal `CheckResult`s; [`Report::build`] turns them into this model, which
//! every renderer (text, JSON, Markdown, JUnit, HTML, GitHub annotations) reads. The model is
//! typed (statuses are [`Status`], instants are instants); it holds no wall-clock time, and every
//! map in it is sorted, so the same inputs give byte-identical output.

pub(crate) mod github;
pub(crate) mod html;
pub(crate) mod json;
pub(crate) mod junit;
pub(crate) mod markdown;
pub(crate) mod story;
pub(crate) mod text;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::checks::series::Timeline;
use crate::checks::{CheckInfo, CheckResult, Fields, Status};
use crate::incident::{pin_map, Incident, Thresholds};
use crate::plan::{Mode, Plan};
use crate::time::{format_millis, format_seconds, Micros};

pub const SCHEMA_VERSION: u32 = 1;

/// An output format; each has one renderer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Markdown,
    Junit,
    Html,
    /// GitHub Actions workflow commands (annotations).
    GithubAnnotations,
}

/// How renderings look, where a format allows a choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// ANSI colours in the terminal summary.
    pub color: bool,
}

/// Renders `report` in `format`.
pub fn render(format: Format, report: &Report) -> String {
    render_with(format, report, RenderOptions::default())
}

/// Renders `report` in `format`, with `options`.
pub fn render_with(format: Format, report: &Report, options: RenderOptions) -> String {
    let text = text::Text {
        color: options.color,
    };
    let renderer: &dyn Renderer = match format {
        Format::Text => &text,
        Format::Json => &json::Json,
        Format::Markdown => &markdown::Markdown,
        Format::Junit => &junit::Junit,
        Format::Html => &html::Html,
        Format::GithubAnnotations => &github::Annotations,
    };
    renderer.render(report)
}

/// One renderer per output format.
pub(crate) trait Renderer {
    fn render(&self, report: &Report) -> String;
}

impl Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// An instant, written as RFC 3339 UTC with whole seconds when it has no fraction (as incident
/// files are written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant(pub Micros);

/// An instant from the data, written as RFC 3339 UTC with milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DataInstant(pub Micros);

impl std::fmt::Display for Instant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_seconds(self.0))
    }
}

impl std::fmt::Display for DataInstant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_millis(self.0))
    }
}

impl Serialize for Instant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for DataInstant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub tool: Tool,
    pub mode: Mode,
    pub incident: IncidentInfo,
    pub verdict: Status,
    pub exit_code: u8,
    pub counts: StatusCounts,
    pub windows: Windows,
    pub expected_pins: Value,
    pub thresholds: BTreeMap<&'static str, Value>,
    /// `[statistics]` as applied.
    pub statistics: StatisticsReport,
    pub inputs: Vec<InputReport>,
    pub rows: RowAccounting,
    pub checks: Vec<CheckReport>,
    /// Rollback mode: when the incident started in the data, its peak, its duration, and the
    /// requests and users it touched per window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impact: Option<Impact>,
    /// The next steps of the rollback page's decision tree, one per failing or warning check it
    /// covers, in check order.
    pub recommendations: Vec<Recommendation>,
    /// The captured-state file's content, as evidence (`[inputs] captured_state`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub captured_state: Option<Value>,
    /// Per-minute series for the HTML charts; built only when the HTML report is asked for, and
    /// never part of the JSON (so the JSON does not depend on which reports a run writes).
    #[serde(skip)]
    pub(crate) timeline: Option<Timeline>,
    /// Latency distributions of the two sides as (quantile, ms), for the HTML chart (built with
    /// the series).
    #[serde(skip)]
    pub(crate) distributions: Option<[Vec<(f64, f64)>; 2]>,
    /// Every row behind the findings, when the audit was asked for it (`--evidence-dir`).
    #[serde(skip)]
    pub evidence: Vec<EvidenceTable>,
}

/// The rows behind one kind of finding of one check, with canonical column names.
#[derive(Debug, Clone)]
pub struct EvidenceTable {
    pub check: &'static str,
    pub kind: &'static str,
    /// `requests` or `receipts`.
    pub table: &'static str,
    pub batches: Vec<arrow::array::RecordBatch>,
}

impl EvidenceTable {
    pub fn rows(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }
}

impl Report {
    /// Writes the evidence into `dir`: one Parquet file per check and kind of finding
    /// (`pins.requests_with_wrong_pins.parquet`, …) and `index.json` listing them with their row
    /// counts. Returns the rows written.
    pub fn write_evidence(&self, dir: &std::path::Path) -> anyhow::Result<u64> {
        use anyhow::Context;
        std::fs::create_dir_all(dir)?;
        let mut index = Vec::new();
        let mut total = 0;
        for table in &self.evidence {
            let name = format!("{}.{}.parquet", table.check, table.kind);
            let rows = table.rows();
            if let Some(first) = table.batches.first() {
                let file = std::fs::File::create(dir.join(&name))
                    .with_context(|| format!("could not create `{name}`"))?;
                let mut writer = parquet::arrow::ArrowWriter::try_new(file, first.schema(), None)?;
                for batch in &table.batches {
                    writer.write(batch)?;
                }
                writer.close()?;
            }
            total += rows;
            index.push(serde_json::json!({
                "check": table.check,
                "kind": table.kind,
                "table": table.table,
                "rows": rows,
                "file": (rows > 0).then_some(name),
            }));
        }
        let index = serde_json::json!({
            "incident": self.incident.id,
            "verdict": self.verdict,
            "evidence": index,
        });
        std::fs::write(
            dir.join("index.json"),
            serde_json::to_string_pretty(&index)? + "\n",
        )?;
        Ok(total)
    }
}

/// A next step: the check that calls for it, the lever of the decision tree, and what to do.
#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    pub check: &'static str,
    pub lever: &'static str,
    pub text: &'static str,
}

/// The incident's impact (rollback mode); docs/reference/report.md defines every figure.
#[derive(Debug, Clone, Serialize)]
pub struct Impact {
    /// The first degraded minute between the baseline and the flip; null when none.
    pub incident_start: Option<Instant>,
    /// flip_at + `error_recovery`'s recovery_minutes; null when errors never recovered (or no
    /// status column).
    pub recovered_at: Option<Instant>,
    pub duration_minutes: Option<u64>,
    /// The worst minute's error rate from the incident start (or the flip) on, and its start.
    #[serde(serialize_with = "rate")]
    pub peak_error_rate: Option<f64>,
    pub peak_error_at: Option<Instant>,
    /// The worst minute's share of off-pin requests from the incident start (or the flip) on.
    #[serde(serialize_with = "rate")]
    pub peak_off_pin_share: Option<f64>,
    pub peak_off_pin_at: Option<Instant>,
    /// baseline, incident (when found), settling (flip to post start), post.
    pub windows: Vec<ImpactWindow>,
    /// Whether the requests had a status column (else error figures are 0 and mean nothing).
    #[serde(skip)]
    pub has_status: bool,
}

/// What one window of a rollback touched.
#[derive(Debug, Clone, Serialize)]
pub struct ImpactWindow {
    pub name: &'static str,
    pub start: Instant,
    /// Null when the window runs to the end of the data.
    pub end: Option<Instant>,
    pub requests: u64,
    pub errors: u64,
    #[serde(serialize_with = "rate")]
    pub error_rate: Option<f64>,
    pub off_pin_requests: u64,
    /// Off-pin or erroring requests.
    pub affected_requests: u64,
    /// Distinct users (null without a user_id column).
    pub users: Option<u64>,
    /// Distinct users with at least one affected request.
    pub affected_users: Option<u64>,
}

/// A rate as the report writes numbers (rounded to 1e-9), or null.
fn rate<S: serde::Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => number(*v).serialize(s),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Tool {
    pub name: &'static str,
    pub version: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct IncidentInfo {
    pub id: String,
    pub title: Option<String>,
    pub flip_at: Option<Instant>,
    pub root_cause_url: Option<String>,
    /// Canary mode: the arm compared against, and the arm under test.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_arm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_arm: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusCounts {
    pub pass: u32,
    pub warn: u32,
    pub fail: u32,
    pub skip: u32,
    pub inconclusive: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Windows {
    pub baseline: Option<[Instant; 2]>,
    /// The post window's end is null when it runs to the end of data (the default).
    pub post: Option<[Option<Instant>; 2]>,
    pub freeze: Option<[Instant; 2]>,
    pub canary: Option<[Instant; 2]>,
    pub data_start: Option<DataInstant>,
    pub data_end: Option<DataInstant>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputReport {
    pub role: &'static str,
    pub path: String,
    pub format: &'static str,
    pub compression: Option<&'static str>,
    pub rows: u64,
    pub rows_rejected: u64,
    /// Rows the mapping's `drop_if_missing` left out.
    pub rows_dropped: u64,
    /// SHA-256 of the bytes: always for a local file; for an object in a store, when it was read
    /// whole (text formats; every format with `--hash-inputs`), else null.
    pub sha256: Option<String>,
    /// An object in a store: its URL, size, entity tag, last modification and version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<DataInstant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Rows handed over by an engine (a Spark DataFrame): the files it read them from, when it
    /// knows them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_files: Option<Vec<String>>,
}

/// Where every request row went: read = used + outside + rejected + dropped.
#[derive(Debug, Clone, Serialize)]
pub struct RowAccounting {
    pub requests_read: u64,
    pub requests_rejected: u64,
    /// Left out by the mapping's `drop_if_missing` (e.g. requests the proxy answered itself).
    pub requests_dropped: u64,
    /// Requests some check used: audited (after the flip / an arm in the window) or in a window.
    pub requests_used: u64,
    pub requests_audited: u64,
    pub requests_baseline: u64,
    pub requests_subject: u64,
    pub requests_outside: u64,
    pub requests_other_arm: u64,
    pub receipts_read: u64,
    pub receipts_rejected: u64,
    pub receipts_dropped: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub id: &'static str,
    pub title: &'static str,
    pub status: Status,
    pub summary: String,
    pub observed: String,
    pub baseline: String,
    pub threshold: String,
    pub metrics: Fields,
    pub samples: Vec<Fields>,
    /// The sample size the HTML checks table shows.
    #[serde(skip)]
    pub sample_size: String,
    /// The intervals the human formats show beside their estimates (their figures are in
    /// `metrics`).
    #[serde(skip)]
    pub intervals: Vec<IntervalView>,
    /// The check's documentation and what the human reports say about it.
    #[serde(skip)]
    pub info: &'static CheckInfo,
}

/// `[statistics]` in the report.
#[derive(Debug, Clone, Serialize)]
pub struct StatisticsReport {
    pub method: &'static str,
    pub confidence: f64,
    pub sequential: bool,
}

/// An interval as the human formats show it: the figure, its estimate and interval as text, the
/// sample sizes, the criterion and its decision; and the numbers, for the HTML drawing.
#[derive(Debug, Clone)]
pub struct IntervalView {
    pub label: String,
    pub estimate: String,
    pub interval: String,
    pub n: String,
    /// "≤ 1.15", or empty when no threshold judges it.
    pub criterion: String,
    /// "met", "violated", "undecided", or empty.
    pub decision: &'static str,
    pub values: (f64, Option<f64>, Option<f64>, Option<f64>),
}

impl IntervalView {
    fn new(
        row: &crate::checks::criteria::IntervalRow,
        stats: &crate::incident::Statistics,
    ) -> IntervalView {
        use crate::stats::intervals::Decision;
        let rate = row.label.contains("rate");
        let digits = if rate { 4 } else { 3 };
        let show = |v: f64| {
            if rate {
                crate::words::pct(v)
            } else {
                format!("{v:.digits$}")
            }
        };
        let end = |v: Option<f64>, inf: &str| v.map_or(inf.to_string(), show);
        IntervalView {
            label: row.label.clone(),
            estimate: show(row.estimate),
            interval: format!(
                "{}% {}[{}, {}]",
                (stats.confidence * 1000.0).round() / 10.0,
                if stats.sequential { "CS " } else { "CI " },
                end(row.ci.low, "−∞"),
                end(row.ci.high, "∞")
            ),
            n: row.n.clone(),
            criterion: row
                .criterion
                .map(|(b, t)| format!("{} {}", b.sign(), show(t)))
                .unwrap_or_default(),
            decision: match row.decision {
                Some(Decision::Met) => "met",
                Some(Decision::Violated) => "violated",
                Some(Decision::Undecided) => "undecided",
                None => "",
            },
            values: (
                row.estimate,
                row.ci.low,
                row.ci.high,
                row.criterion.map(|c| c.1),
            ),
        }
    }
}

fn number(v: f64) -> Value {
    let rounded = (v * 1e9).round() / 1e9;
    serde_json::Number::from_f64(rounded).map_or(Value::Null, Value::Number)
}

fn thresholds_map(t: &Thresholds) -> BTreeMap<&'static str, Value> {
    t.entries()
        .into_iter()
        .map(|(name, v)| {
            let value = match name {
                // Whole numbers by definition.
                "recovery_within_minutes" | "min_requests" => Value::from(v as u64),
                _ => number(v),
            };
            (name, value)
        })
        .collect()
}

/// Everything the report needs besides the check results.
pub(crate) struct ReportInputs {
    pub(crate) inputs: Vec<InputReport>,
    pub(crate) rows: RowAccounting,
    pub(crate) data_start: Option<Micros>,
    pub(crate) data_end: Option<Micros>,
    pub(crate) timeline: Option<Timeline>,
    pub(crate) distributions: Option<[Vec<(f64, f64)>; 2]>,
    pub(crate) impact: Option<Impact>,
}

impl Report {
    pub(crate) fn build(
        incident: &Incident,
        results: Vec<CheckResult>,
        extra: ReportInputs,
    ) -> Report {
        let verdict = Status::verdict(results.iter().map(|r| r.status));
        let mut counts = StatusCounts::default();
        for r in &results {
            *match r.status {
                Status::Pass => &mut counts.pass,
                Status::Warn => &mut counts.warn,
                Status::Fail => &mut counts.fail,
                Status::Skip => &mut counts.skip,
                Status::Inconclusive => &mut counts.inconclusive,
            } += 1;
        }
        let expected_pins = match &incident.plan {
            Plan::Rollback(r) => {
                serde_json::to_value(pin_map(&r.pins[0])).expect("strings serialize")
            }
            Plan::Canary(c) => {
                let arms: BTreeMap<&str, BTreeMap<String, String>> = [
                    (c.baseline_arm.as_str(), pin_map(&c.pins[0])),
                    (c.canary_arm.as_str(), pin_map(&c.pins[1])),
                ]
                .into_iter()
                .collect();
                serde_json::to_value(arms).expect("strings serialize")
            }
        };
        let window = |w: crate::incident::Window| [Instant(w.start), Instant(w.end)];
        let checks: Vec<CheckReport> = results
            .into_iter()
            .map(|r| {
                let info = crate::checks::find(r.id).expect("every result comes from a check");
                CheckReport {
                    id: r.id,
                    title: info.title,
                    status: r.status,
                    summary: r.summary,
                    observed: r.observed,
                    baseline: r.baseline,
                    threshold: r.threshold,
                    metrics: r.metrics,
                    samples: r.samples,
                    sample_size: r.sample_size,
                    intervals: r
                        .intervals
                        .iter()
                        .map(|i| IntervalView::new(i, &incident.statistics))
                        .collect(),
                    info,
                }
            })
            .collect();
        let recommendations = checks
            .iter()
            .filter(|c| matches!(c.status, Status::Fail | Status::Warn))
            .filter_map(|c| {
                let lever = (c.info.lever?)(&c.metrics)?;
                Some(Recommendation {
                    check: c.id,
                    lever: lever.key(),
                    text: lever.text(),
                })
            })
            .collect();
        let windows = match &incident.plan {
            Plan::Rollback(r) => Windows {
                baseline: Some(window(r.baseline)),
                post: Some([
                    Some(Instant(r.post.start)),
                    (!r.post_is_default).then_some(Instant(r.post.end)),
                ]),
                freeze: r.freeze.map(window),
                canary: None,
                data_start: extra.data_start.map(DataInstant),
                data_end: extra.data_end.map(DataInstant),
            },
            Plan::Canary(c) => Windows {
                baseline: None,
                post: None,
                freeze: None,
                canary: c.window.map(window),
                data_start: extra.data_start.map(DataInstant),
                data_end: extra.data_end.map(DataInstant),
            },
        };
        Report {
            schema_version: SCHEMA_VERSION,
            tool: Tool {
                name: "rollproof",
                version: env!("CARGO_PKG_VERSION"),
            },
            mode: incident.plan.mode(),
            incident: IncidentInfo {
                id: incident.id.clone(),
                title: incident.title.clone(),
                flip_at: incident.plan.flip_at().map(Instant),
                root_cause_url: incident.root_cause_url.clone(),
                baseline_arm: incident.plan.canary().map(|c| c.baseline_arm.clone()),
                canary_arm: incident.plan.canary().map(|c| c.canary_arm.clone()),
            },
            verdict,
            exit_code: verdict.exit_status().code(),
            counts,
            windows,
            expected_pins,
            thresholds: thresholds_map(&incident.thresholds),
            statistics: StatisticsReport {
                method: match incident.statistics.method {
                    crate::incident::StatMethod::Point => "point",
                    crate::incident::StatMethod::Interval => "interval",
                },
                confidence: incident.statistics.confidence,
                sequential: incident.statistics.sequential,
            },
            inputs: extra.inputs,
            rows: extra.rows,
            checks,
            impact: extra.impact,
            recommendations,
            captured_state: None,
            timeline: extra.timeline,
            distributions: extra.distributions,
            evidence: Vec::new(),
        }
    }

    /// Checks that failed or warned and have samples: the "top findings" of the human formats.
    pub fn findings(&self) -> impl Iterator<Item = &CheckReport> {
        self.checks
            .iter()
            .filter(|c| matches!(c.status, Status::Fail | Status::Warn) && !c.samples.is_empty())
    }

    pub fn check(&self, id: &str) -> Option<&CheckReport> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// The next steps as a checklist: each lever once, with the checks that call for it, in the
    /// order the levers first appear.
    pub(crate) fn next_steps(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut steps: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for rec in &self.recommendations {
            match steps.iter_mut().find(|(text, _)| *text == rec.text) {
                Some((_, checks)) => checks.push(rec.check),
                None => steps.push((rec.text, vec![rec.check])),
            }
        }
        steps
    }

    /// Checks that need a reader's attention (failed, warned, inconclusive), in report order.
    pub fn attention(&self) -> impl Iterator<Item = &CheckReport> {
        self.checks.iter().filter(|c| c.status.needs_attention())
    }
}

impl Report {
    /// The per-minute series and per-region figures (built when the run was asked for the HTML
    /// report), as JSON for notebooks: `{"bucket_minutes", "points", "canary_points", "regions",
    /// "totals", "region_pins"}`. Not part of the JSON report.
    pub fn series_json(&self) -> Option<Value> {
        self.timeline
            .as_ref()
            .and_then(|t| serde_json::to_value(t).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_severity_order() {
        use Status::*;
        assert_eq!(Status::verdict([Pass, Skip]), Pass);
        assert_eq!(Status::verdict([Pass, Warn, Skip]), Warn);
        assert_eq!(Status::verdict([Warn, Inconclusive]), Inconclusive);
        assert_eq!(Status::verdict([Inconclusive, Fail, Pass]), Fail);
        assert_eq!(Status::verdict([Skip]), Pass);
        assert_eq!(Fail.exit_status().code(), 1);
        assert_eq!(Inconclusive.exit_status().code(), 3);
        assert_eq!(Warn.exit_status().code(), 0);
        assert_eq!(Skip.worst(Pass), Pass);
        assert_eq!(Warn.worst(Inconclusive), Inconclusive);
        let mut all = Status::ALL;
        all.sort();
        assert_eq!(all, [Skip, Pass, Warn, Inconclusive, Fail]);
    }
}
