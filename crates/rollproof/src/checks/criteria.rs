//! A threshold judged against an estimate and its interval (`[statistics]`): the decision, the
//! words for it, and the row the reports show beside the estimate.

use super::{CheckResult, Metric, Status};
use crate::incident::Statistics;
use crate::stats::intervals::{decide, more_needed, Bound, Decision};
use crate::stats::Ci;

/// One "value ≤ max" (or ≥ min, or < max) criterion of a check.
#[derive(Debug, Clone)]
pub(crate) struct Criterion {
    /// The figure, as people read it: "p95 ratio", "canary error rate".
    pub(crate) label: String,
    pub(crate) estimate: f64,
    pub(crate) ci: Ci,
    pub(crate) bound: Bound,
    pub(crate) threshold: f64,
    /// The sample size that would grow to decide it (the subject side's).
    pub(crate) n: u64,
    /// Violating it fails the check (else it warns).
    pub(crate) fails: bool,
}

/// An interval as the human reports show it, with its criterion and what was decided.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IntervalRow {
    pub(crate) label: String,
    pub(crate) estimate: f64,
    pub(crate) ci: Ci,
    /// "n = 2,700 / 2,614" (baseline / subject).
    pub(crate) n: String,
    /// "≤ 1.15", when a threshold judges it.
    pub(crate) criterion: Option<(Bound, f64)>,
    pub(crate) decision: Option<Decision>,
}

impl Criterion {
    pub(crate) fn decide(&self, stats: &Statistics) -> Decision {
        decide(
            self.estimate,
            self.ci,
            self.bound,
            self.threshold,
            stats.interval(),
        )
    }

    /// "p95 ratio 1.12, 95% interval [1.04, 1.21] straddles 1.15: inconclusive — need about 3,100
    /// more requests".
    pub(crate) fn undecided(&self, stats: &Statistics, digits: usize) -> String {
        let open_end = if self.estimate < self.threshold {
            self.ci.high.is_none()
        } else {
            self.ci.low.is_none()
        };
        let more = if open_end {
            "too few values to bound it on that side".to_string()
        } else {
            more_needed(self.estimate, self.ci, self.threshold, self.n)
                .map(|m| format!("need about {} more requests", crate::words::count(m)))
                .unwrap_or_else(|| "the estimate sits on the threshold".to_string())
        };
        let rate = self.label.contains("rate");
        let show = |v: f64| {
            if rate {
                crate::words::pct(v)
            } else {
                format!("{v:.digits$}")
            }
        };
        format!(
            "{} {}, {} straddles {} {}: inconclusive — {more}",
            self.label,
            show(self.estimate),
            interval_words(self.ci, stats, if rate { None } else { Some(digits) }),
            self.bound.sign(),
            if rate {
                show(self.threshold)
            } else {
                self.threshold.to_string()
            }
        )
    }

    pub(crate) fn row(&self, n: String, decision: Decision) -> IntervalRow {
        IntervalRow {
            label: self.label.clone(),
            estimate: self.estimate,
            ci: self.ci,
            n,
            criterion: Some((self.bound, self.threshold)),
            decision: Some(decision),
        }
    }
}

/// "95% interval [1.04, 1.21]" (or "95% confidence sequence …"); `digits` None shows the ends
/// as percentages.
pub(crate) fn interval_words(ci: Ci, stats: &Statistics, digits: Option<usize>) -> String {
    let show = |v: f64| match digits {
        Some(d) => format!("{v:.d$}"),
        None => crate::words::pct(v),
    };
    format!(
        "{}% {} [{}, {}]",
        // 0.95 → 95, 0.975 → 97.5
        (stats.confidence * 1000.0).round() / 10.0,
        if stats.sequential {
            "confidence sequence"
        } else {
            "interval"
        },
        ci.low.map_or("−∞".to_string(), show),
        ci.high.map_or("∞".to_string(), show)
    )
}

/// The metric of an interval: `[low, high]`, an unbounded end null.
pub(crate) fn ci_metric(ci: Option<Ci>) -> Metric {
    Metric::Interval(ci)
}

/// Applies the criteria to `result`: violated ones fail (or warn), undecided ones make the check
/// inconclusive (interval method) unless it already failed. Returns the texts of the violated and
/// undecided criteria, for the summary.
pub(crate) fn apply(
    result: &mut CheckResult,
    criteria: &[Criterion],
    stats: &Statistics,
    n: &str,
    violated_text: impl Fn(&Criterion) -> String,
) -> Vec<String> {
    let mut texts = Vec::new();
    let mut undecided = false;
    for c in criteria {
        let decision = c.decide(stats);
        result.intervals.push(c.row(n.to_string(), decision));
        match decision {
            Decision::Met => {}
            Decision::Violated => {
                result.status =
                    result
                        .status
                        .worst(if c.fails { Status::Fail } else { Status::Warn });
                texts.push(violated_text(c));
            }
            Decision::Undecided => {
                if c.fails {
                    undecided = true;
                    texts.push(c.undecided(stats, 3));
                } else {
                    // A warning level not shown to be met warns.
                    result.status = result.status.worst(Status::Warn);
                    texts.push(
                        c.undecided(stats, 3)
                            .replace(": inconclusive —", " (warn):"),
                    );
                }
            }
        }
    }
    if undecided {
        result.status = result.status.worst(Status::Inconclusive);
    }
    texts
}
