//! The postmortem's charts as inline SVG geometry: every coordinate is a number computed here,
//! so the page needs no script.

use serde::Serialize;
use serde_json::Value;

use super::metric;
use crate::checks::series::{Timeline, TimelinePoint};
use crate::checks::Metric;
use crate::report::Report;
use crate::time::{format_seconds, MICROS_PER_MINUTE};

#[derive(Serialize)]
pub(super) struct Chart {
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
        let minute_of = |t: i64| {
            r.incident
                .flip_at
                .map(|f| (t - f.0).div_euclid(MICROS_PER_MINUTE))
        };
        if let Some([a, b]) = &r.windows.freeze {
            if let (Some(a), Some(b)) = (minute_of(a.0), minute_of(b.0)) {
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
        if let Some(k) = metric(r, "error_recovery", "recovery_minutes").and_then(Metric::as_count)
        {
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
        value: impl Fn(&TimelinePoint) -> Option<f64>,
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

pub(super) fn charts(r: &Report, t: &Timeline) -> Vec<Chart> {
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

    let base_p95 = metric(r, "latency", "baseline_p95_ms").and_then(Metric::as_number);
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
