//! The one serializable report model, and one renderer per output format.
//!
//! Checks produce internal `CheckResult`s; `Report::build` turns them into this model, which every
//! renderer (text, JSON, and the others) reads. The model holds no wall-clock time, and every map
//! in it is sorted, so the same inputs give byte-identical output.

pub mod github;
pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod text;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::checks::{CheckResult, Metric, Status};
use crate::incident::{pin_map, Incident, Mode, Thresholds};
use crate::time::format_seconds;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub tool: Tool,
    pub mode: &'static str,
    pub incident: IncidentInfo,
    pub verdict: &'static str,
    pub exit_code: i32,
    pub counts: StatusCounts,
    pub windows: Windows,
    pub expected_pins: Value,
    pub thresholds: BTreeMap<&'static str, Value>,
    pub inputs: Vec<InputReport>,
    pub rows: RowAccounting,
    pub checks: Vec<CheckReport>,
    /// Per-minute series for the HTML charts; built only when the HTML report is asked for, and
    /// never part of the JSON (so the JSON does not depend on which reports a run writes).
    #[serde(skip)]
    pub timeline: Option<Timeline>,
}

/// Per-bucket figures around the flip.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub bucket_minutes: i64,
    pub points: Vec<TimelinePoint>,
}

#[derive(Debug, Clone)]
pub struct TimelinePoint {
    /// Start of the bucket, epoch µs.
    pub start: i64,
    /// Minutes from the flip to the start of the bucket.
    pub minute: i64,
    pub requests: u64,
    pub error_rate: Option<f64>,
    pub p95_latency_ms: Option<f64>,
    pub pins_ok_share: Option<f64>,
    pub stale_hits: u64,
    pub delta_s_p95: Option<f64>,
    pub coverage_mean: Option<f64>,
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
    pub flip_at: Option<String>,
    pub root_cause_url: Option<String>,
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
    pub baseline: Option<[String; 2]>,
    /// The post window's end is null when it runs to the end of data (the default).
    pub post: Option<[Option<String>; 2]>,
    pub freeze: Option<[String; 2]>,
    pub canary: Option<[String; 2]>,
    pub data_start: Option<String>,
    pub data_end: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputReport {
    pub role: &'static str,
    pub path: String,
    pub format: &'static str,
    pub compression: Option<&'static str>,
    pub rows: u64,
    pub rows_rejected: u64,
    pub sha256: String,
}

/// Where every request row went: read = audited or windowed + outside + rejected.
#[derive(Debug, Clone, Serialize)]
pub struct RowAccounting {
    pub requests_read: u64,
    pub requests_rejected: u64,
    /// Requests some check used: audited (after the flip / an arm in the window) or in a window.
    pub requests_used: u64,
    pub requests_audited: u64,
    pub requests_baseline: u64,
    pub requests_subject: u64,
    pub requests_outside: u64,
    pub requests_other_arm: u64,
    pub receipts_read: u64,
    pub receipts_rejected: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub id: &'static str,
    pub title: &'static str,
    pub status: &'static str,
    pub summary: String,
    pub observed: String,
    pub baseline: String,
    pub threshold: String,
    pub metrics: BTreeMap<String, Value>,
    pub samples: Vec<BTreeMap<String, Value>>,
}

/// The verdict over all checks: fail > inconclusive > warn > pass; skip does not count.
pub fn verdict(statuses: impl IntoIterator<Item = Status>) -> Status {
    let mut any = [false; 3];
    for s in statuses {
        match s {
            Status::Fail => any[0] = true,
            Status::Inconclusive => any[1] = true,
            Status::Warn => any[2] = true,
            Status::Pass | Status::Skip => {}
        }
    }
    if any[0] {
        Status::Fail
    } else if any[1] {
        Status::Inconclusive
    } else if any[2] {
        Status::Warn
    } else {
        Status::Pass
    }
}

pub fn exit_code(verdict: Status) -> i32 {
    match verdict {
        Status::Fail => 1,
        Status::Inconclusive => 3,
        _ => 0,
    }
}

fn metric_value(m: &Metric) -> Value {
    match m {
        Metric::Count(n) => Value::from(*n),
        Metric::MaybeCount(n) => n.map_or(Value::Null, Value::from),
        Metric::Number(Some(v)) => number(*v),
        Metric::Number(None) => Value::Null,
        Metric::Text(Some(s)) => Value::from(s.clone()),
        Metric::Text(None) => Value::Null,
        Metric::Flag(b) => Value::from(*b),
        Metric::Counts(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), Value::from(*v)))
                .collect(),
        ),
        Metric::Texts(v) => Value::from(v.clone()),
    }
}

/// A float as JSON, rounded to 9 decimals so that representation noise does not show.
fn number(v: f64) -> Value {
    let rounded = (v * 1e9).round() / 1e9;
    serde_json::Number::from_f64(rounded).map_or(Value::Null, Value::Number)
}

fn thresholds_map(t: &Thresholds) -> BTreeMap<&'static str, Value> {
    BTreeMap::from([
        ("error_rate_max", number(t.error_rate_max)),
        (
            "recovery_within_minutes",
            Value::from(t.recovery_within_minutes),
        ),
        ("p95_latency_ratio_max", number(t.p95_latency_ratio_max)),
        ("p99_latency_ratio_max", number(t.p99_latency_ratio_max)),
        ("delta_s_p95_drift_warn", number(t.delta_s_p95_drift_warn)),
        ("delta_s_p95_drift_max", number(t.delta_s_p95_drift_max)),
        ("coverage_min", number(t.coverage_min)),
        ("coverage_drop_max", number(t.coverage_drop_max)),
        ("lambda_flip_rate_max", number(t.lambda_flip_rate_max)),
        ("min_requests", Value::from(t.min_requests)),
    ])
}

/// Everything the report needs besides the check results.
pub struct ReportInputs {
    pub inputs: Vec<InputReport>,
    pub rows: RowAccounting,
    pub data_start: Option<i64>,
    pub data_end: Option<i64>,
    pub timeline: Option<Timeline>,
}

impl Report {
    pub fn build(incident: &Incident, results: Vec<CheckResult>, extra: ReportInputs) -> Report {
        let v = verdict(results.iter().map(|r| r.status));
        let mut counts = StatusCounts::default();
        for r in &results {
            match r.status {
                Status::Pass => counts.pass += 1,
                Status::Warn => counts.warn += 1,
                Status::Fail => counts.fail += 1,
                Status::Skip => counts.skip += 1,
                Status::Inconclusive => counts.inconclusive += 1,
            }
        }
        let expected_pins = match incident.mode {
            Mode::Rollback => {
                serde_json::to_value(pin_map(&incident.pin_sets[0])).expect("strings serialize")
            }
            Mode::Canary => {
                let c = incident.canary.as_ref().expect("canary mode has [canary]");
                let arms: BTreeMap<&str, BTreeMap<String, String>> = [
                    (c.baseline_arm.as_str(), pin_map(&incident.pin_sets[0])),
                    (c.canary_arm.as_str(), pin_map(&incident.pin_sets[1])),
                ]
                .into_iter()
                .collect();
                serde_json::to_value(arms).expect("strings serialize")
            }
        };
        let window = |w: crate::incident::Window| [format_seconds(w.start), format_seconds(w.end)];
        let checks = results
            .into_iter()
            .map(|r| CheckReport {
                id: r.id,
                title: crate::checks::find(r.id).map_or("", |c| c.title),
                status: r.status.name(),
                summary: r.summary,
                observed: r.observed,
                baseline: r.baseline,
                threshold: r.threshold,
                metrics: r
                    .metrics
                    .iter()
                    .map(|(k, v)| (k.clone(), metric_value(v)))
                    .collect(),
                samples: r
                    .samples
                    .iter()
                    .map(|s| {
                        s.iter()
                            .map(|(k, v)| (k.clone(), metric_value(v)))
                            .collect()
                    })
                    .collect(),
            })
            .collect();
        Report {
            schema_version: SCHEMA_VERSION,
            tool: Tool {
                name: "rollproof",
                version: env!("CARGO_PKG_VERSION"),
            },
            mode: incident.mode.name(),
            incident: IncidentInfo {
                id: incident.id.clone(),
                title: incident.title.clone(),
                flip_at: incident.flip_at.map(format_seconds),
                root_cause_url: incident.root_cause_url.clone(),
            },
            verdict: v.name(),
            exit_code: exit_code(v),
            counts,
            windows: Windows {
                baseline: incident.baseline.map(window),
                post: match (incident.post, incident.flip_at, incident.mode) {
                    (Some(p), _, _) => {
                        Some([Some(format_seconds(p.start)), Some(format_seconds(p.end))])
                    }
                    (None, Some(flip), Mode::Rollback) => Some([
                        Some(format_seconds(flip + 10 * crate::time::MICROS_PER_MINUTE)),
                        None,
                    ]),
                    _ => None,
                },
                freeze: incident.freeze.map(window),
                canary: incident.canary.as_ref().and_then(|c| c.window).map(window),
                data_start: extra.data_start.map(crate::time::format_millis),
                data_end: extra.data_end.map(crate::time::format_millis),
            },
            expected_pins,
            thresholds: thresholds_map(&incident.thresholds),
            inputs: extra.inputs,
            rows: extra.rows,
            checks,
            timeline: extra.timeline,
        }
    }

    /// Checks that failed or warned and have samples: the "top findings" of the human formats.
    pub fn findings(&self) -> impl Iterator<Item = &CheckReport> {
        self.checks
            .iter()
            .filter(|c| matches!(c.status, "fail" | "warn") && !c.samples.is_empty())
    }

    pub fn status(&self) -> Status {
        match self.verdict {
            "fail" => Status::Fail,
            "inconclusive" => Status::Inconclusive,
            "warn" => Status::Warn,
            _ => Status::Pass,
        }
    }
}

/// A metric or sample value as text for the human formats: strings as they are, `∅` for null,
/// lists joined with commas, maps as `key: value` pairs. Callers escape for their format.
pub fn display_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "∅".to_string(),
        Value::Array(items) => items
            .iter()
            .map(display_value)
            .collect::<Vec<_>>()
            .join(", "),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}: {}", display_value(v)))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// One renderer per output format.
pub trait Renderer {
    fn render(&self, report: &Report) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_order() {
        use Status::*;
        assert_eq!(verdict([Pass, Skip]), Pass);
        assert_eq!(verdict([Pass, Warn, Skip]), Warn);
        assert_eq!(verdict([Warn, Inconclusive]), Inconclusive);
        assert_eq!(verdict([Inconclusive, Fail, Pass]), Fail);
        assert_eq!(verdict([Skip]), Pass);
        assert_eq!(exit_code(Fail), 1);
        assert_eq!(exit_code(Inconclusive), 3);
        assert_eq!(exit_code(Warn), 0);
    }
}
