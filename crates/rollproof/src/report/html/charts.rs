//! The postmortem's charts as inline SVG geometry: every coordinate is a number computed here,
//! so the page needs no script.
//!
//! Every chart is laid out twice, for a wide screen and for a phone (the page shows one of the
//! two by a CSS media query), so that its text stays readable at 420 px. Labels never overlap:
//! marker labels sit above the plot in two rows and go to the legend when both rows are taken at
//! their place; reference lines are named in the legend, not on the data; windows (baseline,
//! freeze, post) are strips under the time axis.

use serde::Serialize;

use crate::time::{format_seconds, Micros, MICROS_PER_MINUTE};
use crate::words::count;

/// One chart in its two layouts.
#[derive(Serialize)]
pub(super) struct Chart {
    title: String,
    legend: Vec<LegendItem>,
    wide: Svg,
    narrow: Svg,
}

#[derive(Serialize, Clone)]
pub(super) struct LegendItem {
    class: &'static str,
    label: String,
}

#[derive(Serialize)]
pub(super) struct Svg {
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    plot_h: f64,
    font: f64,
    series: Vec<Series>,
    bars: Vec<Rect>,
    whiskers: Vec<Whisker>,
    hlines: Vec<HLine>,
    vlines: Vec<VLine>,
    bands: Vec<Rect>,
    strips: Vec<Rect>,
    labels: Vec<Label>,
    xticks: Vec<Label>,
    yticks: Vec<Label>,
}

#[derive(Serialize)]
struct Series {
    class: &'static str,
    points: String,
}

#[derive(Serialize, Debug, Clone, Copy)]
pub(super) struct Rect {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    class: &'static str,
}

#[derive(Serialize)]
struct Whisker {
    x: f64,
    y1: f64,
    y2: f64,
    class: &'static str,
}

#[derive(Serialize)]
struct HLine {
    y: f64,
    class: &'static str,
}

#[derive(Serialize)]
struct VLine {
    x: f64,
    class: &'static str,
}

#[derive(Serialize, Debug, Clone)]
pub(super) struct Label {
    x: f64,
    y: f64,
    anchor: &'static str,
    text: String,
}

/// A layout: the canvas and its font size (SVG units; the page scales the canvas to its column).
#[derive(Debug, Clone, Copy)]
struct Size {
    w: f64,
    h: f64,
    left: f64,
    right_pad: f64,
    font: f64,
    max_xticks: i64,
}

const WIDE: Size = Size {
    w: 520.0,
    h: 240.0,
    left: 52.0,
    right_pad: 14.0,
    font: 11.0,
    max_xticks: 7,
};
/// Drawn at about 370 px on a 420 px phone: a 13-unit font shows at about 13 px.
const NARROW: Size = Size {
    w: 360.0,
    h: 250.0,
    left: 46.0,
    right_pad: 12.0,
    font: 13.0,
    max_xticks: 4,
};

/// Two rows of marker labels above the plot.
const LABEL_ROWS: usize = 2;

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

impl Size {
    fn right(&self) -> f64 {
        self.w - self.right_pad
    }
    fn top(&self) -> f64 {
        8.0 + LABEL_ROWS as f64 * (self.font + 3.0)
    }
    /// The plot's bottom: below it the x tick labels, then the window strips.
    fn bottom(&self) -> f64 {
        self.h - self.font - 4.0 - STRIP_ROWS as f64 * (STRIP_H + 2.0) - 6.0
    }
    /// A label's width, estimated from its length (the page's sans-serif averages ~0.6 em).
    fn text_w(&self, text: &str) -> f64 {
        text.chars().count() as f64 * self.font * 0.6
    }
}

const STRIP_H: f64 = 5.0;
const STRIP_ROWS: usize = 3;

/// A marker on the x axis: a vertical line with a label.
pub(super) struct Marker {
    pub(super) x: f64,
    pub(super) class: &'static str,
    pub(super) label: String,
}

/// A window drawn as a strip under the axis (row 0..STRIP_ROWS), or as a band over the plot.
pub(super) struct Span {
    pub(super) from: f64,
    pub(super) to: f64,
    pub(super) class: &'static str,
    pub(super) row: usize,
}

/// What a chart shows, in data units; [`Spec::render`] lays it out in both sizes.
pub(super) struct Spec {
    pub(super) title: String,
    pub(super) legend: Vec<LegendItem>,
    pub(super) x0: f64,
    pub(super) x1: f64,
    pub(super) y_max: f64,
    pub(super) y_fmt: fn(f64) -> String,
    /// x tick positions and their labels are chosen from the data units by this.
    pub(super) x_ticks: XTicks,
    pub(super) series: Vec<(&'static str, Vec<(f64, f64)>)>,
    /// (x, width in x units, value, class): bars from 0, on the y scale unless `bar_max` is set.
    pub(super) bars: Vec<(f64, f64, f64, &'static str)>,
    pub(super) bar_max: Option<f64>,
    /// (x, low, high, class): an interval.
    pub(super) whiskers: Vec<(f64, f64, f64, &'static str)>,
    pub(super) hlines: Vec<(f64, &'static str)>,
    pub(super) markers: Vec<Marker>,
    pub(super) bands: Vec<Span>,
    pub(super) strips: Vec<Span>,
}

/// How the x axis is labelled.
pub(super) enum XTicks {
    /// Minutes from `origin`, labelled HH:MM.
    Clock { origin: Micros },
    /// Fixed positions with labels (categories, quantiles).
    Fixed(Vec<(f64, String)>),
    /// Values formatted by the function, at "nice" steps.
    Values(fn(f64) -> String),
}

impl Spec {
    pub(super) fn new(title: &str, x0: f64, x1: f64, y_max: f64, y_fmt: fn(f64) -> String) -> Spec {
        Spec {
            title: title.to_string(),
            legend: Vec::new(),
            x0,
            x1: if x1 > x0 { x1 } else { x0 + 1.0 },
            y_max: if y_max > 0.0 && y_max.is_finite() {
                y_max
            } else {
                1.0
            },
            y_fmt,
            x_ticks: XTicks::Values(|v| format!("{v}")),
            series: Vec::new(),
            bars: Vec::new(),
            bar_max: None,
            whiskers: Vec::new(),
            hlines: Vec::new(),
            markers: Vec::new(),
            bands: Vec::new(),
            strips: Vec::new(),
        }
    }

    pub(super) fn legend(&mut self, class: &'static str, label: impl Into<String>) {
        self.legend.push(LegendItem {
            class,
            label: label.into(),
        });
    }

    pub(super) fn render(self) -> Chart {
        let mut legend = self.legend.clone();
        let wide = self.layout(&WIDE, &mut legend);
        let mut narrow_legend = Vec::new();
        let narrow = self.layout(&NARROW, &mut narrow_legend);
        // A marker label that did not fit above one layout's plot goes to the legend.
        for item in narrow_legend {
            if !legend.iter().any(|l| l.label == item.label) {
                legend.push(item);
            }
        }
        Chart {
            title: self.title,
            legend,
            wide,
            narrow,
        }
    }

    fn layout(&self, size: &Size, legend: &mut Vec<LegendItem>) -> Svg {
        // The y labels decide the left margin, so that none is cut.
        let y_labels: Vec<String> = [0.0, 0.5, 1.0]
            .iter()
            .map(|f| (self.y_fmt)(self.y_max * f))
            .collect();
        let widest = y_labels.iter().map(|l| size.text_w(l)).fold(0.0, f64::max);
        let left = round1(size.left.max(widest + 8.0));
        let (right, top, bottom) = (size.right(), size.top(), size.bottom());
        let x = |v: f64| {
            round1(left + ((v - self.x0) / (self.x1 - self.x0)).clamp(0.0, 1.0) * (right - left))
        };
        let y = |v: f64, max: f64| round1(bottom - (v / max).clamp(0.0, 1.0) * (bottom - top));
        let series = self
            .series
            .iter()
            .filter(|(_, pts)| !pts.is_empty())
            .map(|(class, pts)| Series {
                class,
                points: pts
                    .iter()
                    .filter(|(px, py)| px.is_finite() && py.is_finite())
                    .map(|(px, py)| format!("{},{}", x(*px), y(*py, self.y_max)))
                    .collect::<Vec<_>>()
                    .join(" "),
            })
            .collect();
        let bar_max = self.bar_max.unwrap_or(self.y_max);
        let bars = self
            .bars
            .iter()
            .filter(|b| b.2 > 0.0)
            .map(|&(bx, bw, v, class)| {
                let x0 = x(bx);
                let w = (x(bx + bw) - x0).max(1.0);
                let top_y = y(v, bar_max).min(bottom - 1.0); // a positive value is never invisible
                Rect {
                    x: x0,
                    y: top_y,
                    w: round1(w),
                    h: round1(bottom - top_y),
                    class,
                }
            })
            .collect();
        let whiskers = self
            .whiskers
            .iter()
            .map(|&(wx, lo, hi, class)| Whisker {
                x: x(wx),
                y1: y(lo, self.y_max),
                y2: y(hi, self.y_max),
                class,
            })
            .collect();
        let hlines = self
            .hlines
            .iter()
            .map(|&(v, class)| HLine {
                y: y(v, self.y_max),
                class,
            })
            .collect();
        let span_rect = |s: &Span, y0: f64, h: f64| {
            let (a, b) = (x(s.from.max(self.x0)), x(s.to.min(self.x1)));
            Rect {
                x: a,
                y: y0,
                w: round1((b - a).max(1.0)),
                h,
                class: s.class,
            }
        };
        let bands = self
            .bands
            .iter()
            .filter(|s| s.to > self.x0 && s.from < self.x1)
            .map(|s| span_rect(s, top, round1(bottom - top)))
            .collect();
        let strip_top = bottom + size.font + 8.0;
        let strips = self
            .strips
            .iter()
            .filter(|s| s.to > self.x0 && s.from < self.x1)
            .map(|s| {
                span_rect(
                    s,
                    round1(strip_top + s.row as f64 * (STRIP_H + 2.0)),
                    STRIP_H,
                )
            })
            .collect();
        // Marker labels: in x order, in the first row where they overlap nothing.
        let mut vlines = Vec::new();
        let mut labels = Vec::new();
        let mut taken: Vec<Vec<(f64, f64)>> = vec![Vec::new(); LABEL_ROWS];
        let mut markers: Vec<&Marker> = self
            .markers
            .iter()
            .filter(|m| m.x >= self.x0 && m.x <= self.x1)
            .collect();
        markers.sort_by(|a, b| a.x.total_cmp(&b.x));
        for m in markers {
            let mx = x(m.x);
            vlines.push(VLine {
                x: mx,
                class: m.class,
            });
            let w = size.text_w(&m.label);
            let (from, to, anchor, tx) = if mx + 3.0 + w <= right {
                (mx, mx + 3.0 + w, "start", mx + 3.0)
            } else {
                (mx - 3.0 - w, mx, "end", mx - 3.0)
            };
            let row = (0..LABEL_ROWS).find(|&r| {
                taken[r]
                    .iter()
                    .all(|&(a, b)| to + 4.0 < a || from > b + 4.0)
            });
            match row {
                Some(r) => {
                    taken[r].push((from, to));
                    labels.push(Label {
                        x: round1(tx),
                        y: round1(6.0 + (r as f64 + 1.0) * (size.font + 3.0) - 3.0),
                        anchor,
                        text: m.label.clone(),
                    });
                }
                None => legend.push(LegendItem {
                    class: m.class,
                    label: m.label.clone(),
                }),
            }
        }
        let xticks = self.x_ticks(size, &x, bottom);
        let yticks = [0.0, 0.5, 1.0]
            .iter()
            .zip(y_labels)
            .map(|(f, text)| Label {
                x: left - 4.0,
                y: round1(y(self.y_max * f, self.y_max) + size.font * 0.35),
                anchor: "end",
                text,
            })
            .collect();
        Svg {
            width: size.w,
            height: size.h,
            left,
            right,
            top,
            bottom,
            plot_h: round1(bottom - top),
            font: size.font,
            series,
            bars,
            whiskers,
            hlines,
            vlines,
            bands,
            strips,
            labels,
            xticks,
            yticks,
        }
    }

    /// The x tick labels, dropping any that would touch the one before (an edge label moved
    /// inward can meet its neighbour).
    fn x_ticks(&self, size: &Size, x: &dyn Fn(f64) -> f64, bottom: f64) -> Vec<Label> {
        let span = |l: &Label| {
            let w = size.text_w(&l.text);
            match l.anchor {
                "start" => (l.x, l.x + w),
                "end" => (l.x - w, l.x),
                _ => (l.x - w / 2.0, l.x + w / 2.0),
            }
        };
        let mut kept: Vec<Label> = Vec::new();
        for l in self.x_tick_candidates(size, x, bottom) {
            let (a, _) = span(&l);
            match kept.last() {
                Some(prev) if span(prev).1 + 4.0 > a => {
                    // Keep the edge label (it names the end of the axis) over its neighbour.
                    if l.anchor == "end" {
                        kept.pop();
                        kept.push(l);
                    }
                }
                _ => kept.push(l),
            }
        }
        kept
    }

    fn x_tick_candidates(&self, size: &Size, x: &dyn Fn(f64) -> f64, bottom: f64) -> Vec<Label> {
        // A label at either edge is anchored inward, so that it is not cut.
        let at = |v: f64, text: String| {
            let (px, half) = (x(v), size.text_w(&text) / 2.0);
            let (x, anchor) = if px + half > size.w - 2.0 {
                (size.w - 2.0, "end")
            } else if px - half < 2.0 {
                (2.0, "start")
            } else {
                (px, "middle")
            };
            Label {
                x: round1(x),
                y: round1(bottom + size.font + 2.0),
                anchor,
                text,
            }
        };
        match &self.x_ticks {
            XTicks::Fixed(ticks) => ticks.iter().map(|(v, t)| at(*v, t.clone())).collect(),
            XTicks::Clock { origin } => {
                let span = (self.x1 - self.x0).max(1.0) as i64;
                let want = (span / size.max_xticks).max(1);
                let step = [1, 2, 5, 10, 15, 30, 60, 120, 240, 360, 720, 1440]
                    .into_iter()
                    .find(|s| *s >= want)
                    .unwrap_or(want);
                // Steps align to the clock, not to the origin.
                let origin_min = origin.div_euclid(MICROS_PER_MINUTE);
                let mut out = Vec::new();
                let first = (self.x0 as i64 + origin_min).div_euclid(step) * step - origin_min;
                let mut m = first;
                while (m as f64) <= self.x1 {
                    if (m as f64) >= self.x0 {
                        let t = origin + m * MICROS_PER_MINUTE;
                        let label = format_seconds(t).get(11..16).unwrap_or("").to_string();
                        out.push(at(m as f64, label));
                    }
                    m += step;
                }
                out
            }
            XTicks::Values(fmt) => {
                let span = self.x1 - self.x0;
                let raw = span / size.max_xticks as f64;
                let p = 10f64.powf(raw.log10().floor());
                let step = [1.0, 2.0, 2.5, 5.0, 10.0]
                    .iter()
                    .map(|m| m * p)
                    .find(|c| *c >= raw)
                    .unwrap_or(10.0 * p);
                let mut out = Vec::new();
                let mut v = (self.x0 / step).ceil() * step;
                while v <= self.x1 + 1e-9 {
                    out.push(at(v, fmt(v)));
                    v += step;
                }
                out
            }
        }
    }
}

/// The smallest "nice" number (1, 2, 2.5, 5 × 10^k) at or above `v`.
pub(super) fn nice_max(v: f64) -> f64 {
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

pub(super) fn pct(v: f64) -> String {
    if v > 0.0 && v < 0.01 {
        format!("{:.2}%", v * 100.0)
    } else {
        format!("{:.1}%", v * 100.0)
    }
}

pub(super) fn ms(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0} s", v / 1000.0)
    } else {
        format!("{v:.0} ms")
    }
}

pub(super) fn unit(v: f64) -> String {
    format!("{v:.1}")
}

pub(super) fn counted(v: f64) -> String {
    count(v.round().max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(markers: &[(f64, &str)]) -> Spec {
        let mut s = Spec::new("t", -60.0, 90.0, 0.2, pct);
        s.x_ticks = XTicks::Clock { origin: 0 };
        s.series
            .push(("s0", (-60..90).map(|m| (m as f64, 0.1)).collect()));
        for (x, label) in markers {
            s.markers.push(Marker {
                x: *x,
                class: "flip",
                label: label.to_string(),
            });
        }
        s
    }

    fn overlaps(a: &Label, b: &Label, size: &Size) -> bool {
        let span = |l: &Label| {
            let w = size.text_w(&l.text);
            match l.anchor {
                "start" => (l.x, l.x + w),
                "end" => (l.x - w, l.x),
                _ => (l.x - w / 2.0, l.x + w / 2.0),
            }
        };
        let ((a0, a1), (b0, b1)) = (span(a), span(b));
        (a.y - b.y).abs() < size.font && a0 < b1 && b0 < a1
    }

    #[test]
    fn close_markers_never_overlap_and_spill_into_the_legend() {
        let markers = [
            (0.0, "flip"),
            (1.0, "recovered"),
            (2.0, "freeze ends"),
            (3.0, "last stale hit"),
        ];
        let chart = spec_with(&markers).render();
        for (svg, size) in [(&chart.wide, &WIDE), (&chart.narrow, &NARROW)] {
            assert_eq!(svg.vlines.len(), 4);
            for (i, a) in svg.labels.iter().enumerate() {
                for b in &svg.labels[i + 1..] {
                    assert!(!overlaps(a, b, size), "{a:?} overlaps {b:?}");
                }
                assert!(a.y < svg.top, "labels sit above the plot: {a:?}");
            }
            // Every marker is named somewhere: above the plot or in the legend.
            for (_, name) in markers {
                assert!(
                    svg.labels.iter().any(|l| l.text == name)
                        || chart.legend.iter().any(|l| l.label == name),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn a_positive_bar_is_visible_and_zero_or_huge_values_stay_in_the_canvas() {
        let mut s = spec_with(&[]);
        s.bar_max = Some(20_209.0);
        s.bars.push((5.0, 1.0, 1.0, "bar"));
        s.bars.push((6.0, 1.0, 20_209.0, "bar"));
        s.bars.push((7.0, 1.0, 0.0, "bar"));
        s.series
            .push(("s1", vec![(0.0, 1e12), (1.0, -5.0), (2.0, f64::NAN)]));
        let chart = s.render();
        for svg in [&chart.wide, &chart.narrow] {
            assert_eq!(svg.bars.len(), 2, "a zero bar is not drawn");
            assert!(
                svg.bars[0].h >= 1.0,
                "one stale hit among 20,209 still shows"
            );
            assert!(
                (svg.bars[1].y - svg.top).abs() < 0.11,
                "the largest bar reaches the top"
            );
            for pair in svg.series.iter().flat_map(|s| s.points.split(' ')) {
                let (px, py) = pair.split_once(',').unwrap();
                let (px, py): (f64, f64) = (px.parse().unwrap(), py.parse().unwrap());
                assert!(
                    px >= svg.left && px <= svg.right && py >= svg.top && py <= svg.bottom,
                    "{pair}"
                );
            }
        }
    }

    #[test]
    fn no_tick_label_leaves_the_canvas() {
        let mut s = Spec::new("t", 0.0, 150.0, 2_000_000.0, counted);
        s.x_ticks = XTicks::Clock { origin: 0 };
        let chart = s.render();
        for (svg, size) in [(&chart.wide, &WIDE), (&chart.narrow, &NARROW)] {
            for l in svg.xticks.iter().chain(&svg.yticks) {
                let w = size.text_w(&l.text);
                let (a, b) = match l.anchor {
                    "start" => (l.x, l.x + w),
                    "end" => (l.x - w, l.x),
                    _ => (l.x - w / 2.0, l.x + w / 2.0),
                };
                assert!(a >= 0.0 && b <= svg.width, "{l:?} in {}", svg.width);
            }
        }
    }

    #[test]
    fn value_ticks_never_touch() {
        let mut s = Spec::new("t", 0.0, 1000.0, 1.0, pct);
        s.x_ticks = XTicks::Values(ms);
        let chart = s.render();
        for (svg, size) in [(&chart.wide, &WIDE), (&chart.narrow, &NARROW)] {
            for pair in svg.xticks.windows(2) {
                assert!(!overlaps(&pair[0], &pair[1], size), "{pair:?}");
            }
            assert_eq!(svg.xticks.last().unwrap().text, "1000 ms");
        }
    }

    #[test]
    fn an_empty_chart_renders() {
        let chart = Spec::new("empty", 0.0, 0.0, 0.0, pct).render();
        assert!(chart.wide.series.is_empty());
        assert_eq!(chart.wide.yticks.len(), 3);
    }

    #[test]
    fn clock_ticks_align_to_the_clock_and_fit() {
        let mut s = spec_with(&[]);
        // Flip at 10:15 on some day.
        s.x_ticks = XTicks::Clock {
            origin: 1_795_774_500_000_000,
        };
        let chart = s.render();
        for (svg, size) in [(&chart.wide, &WIDE), (&chart.narrow, &NARROW)] {
            assert!(
                svg.xticks.len() as i64 <= size.max_xticks + 1,
                "{}",
                svg.xticks.len()
            );
            assert!(svg
                .xticks
                .iter()
                .all(|t| t.text.ends_with('0') || t.text.ends_with('5')));
            for pair in svg.xticks.windows(2) {
                assert!(!overlaps(&pair[0], &pair[1], size));
            }
        }
    }
}
