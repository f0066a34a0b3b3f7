//! The page's sentences: the verdict headline and the postmortem (summary, impact, action items),
//! every one derived from the report's figures, with its own wording for rollbacks and canaries.

use serde::Serialize;

use crate::checks::{Metric, Status};
use crate::plan::Mode;
use crate::report::{CheckReport, ImpactWindow, Report};
use crate::stats::wilson;
use crate::time::MICROS_PER_MINUTE;
use crate::words::{count, minutes, pct, plural};

#[derive(Serialize)]
pub(crate) struct Postmortem {
    /// Paragraphs: onset, recovery, convergence (rollback) or traffic and errors (canary), and
    /// the verdict.
    pub(crate) summary: Vec<String>,
    pub(crate) impact: Vec<String>,
    pub(crate) actions: Vec<Action>,
}

#[derive(Serialize)]
pub(crate) struct Action {
    pub(crate) check: String,
    pub(crate) action: String,
}

fn metric<'a>(report: &'a Report, check: &str, key: &str) -> Option<&'a Metric> {
    report.check(check).and_then(|c| c.metrics.get(key))
}

/// The check's remediation, with `{regions}` filled from its `by_region` breakdown.
pub(crate) fn action_for(c: &CheckReport) -> String {
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

/// Names of the checks with `status`, in report order.
fn ids_with(r: &Report, status: Status) -> Vec<&'static str> {
    r.checks
        .iter()
        .filter(|c| c.status == status)
        .map(|c| c.id)
        .collect()
}

pub(crate) fn headline(r: &Report) -> String {
    let with = |status: Status| ids_with(r, status).join(", ");
    match (r.mode, r.verdict) {
        (Mode::Rollback, Status::Fail) => {
            format!("Production is not back: {} failed.", with(Status::Fail))
        }
        (Mode::Rollback, Status::Inconclusive) => {
            format!("Too little data to judge {}.", with(Status::Inconclusive))
        }
        (Mode::Rollback, Status::Warn) => {
            format!(
                "Production is back, with warnings on {}.",
                with(Status::Warn)
            )
        }
        (Mode::Rollback, _) => "Production is back: every check passed.".to_string(),
        (Mode::Canary, Status::Fail) => {
            format!(
                "The canary must not graduate: {} failed.",
                with(Status::Fail)
            )
        }
        (Mode::Canary, Status::Inconclusive) => format!(
            "Too little canary traffic to judge {}: let it run longer.",
            with(Status::Inconclusive)
        ),
        (Mode::Canary, Status::Warn) => {
            format!(
                "The canary may graduate, with warnings on {}.",
                with(Status::Warn)
            )
        }
        (Mode::Canary, _) => "The canary may graduate: every check passed.".to_string(),
    }
}

pub(crate) fn postmortem(r: &Report) -> Postmortem {
    let (summary, mut impact) = match r.mode {
        Mode::Rollback => rollback_story(r),
        Mode::Canary => canary_story(r),
    };
    impact.extend(r.checks.iter().filter_map(|c| {
        c.info
            .impact
            .and_then(|impact| impact(c.status, &c.metrics, r.mode))
    }));
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

fn verdict_sentence(r: &Report) -> String {
    let failing = ids_with(r, Status::Fail);
    let warned = ids_with(r, Status::Warn);
    let inconclusive = ids_with(r, Status::Inconclusive);
    let judged = r.checks.iter().filter(|c| c.status != Status::Skip).count() as u64;
    match (r.mode, r.verdict) {
        (_, Status::Inconclusive) => format!(
            "Too little data to judge {}: re-run the audit when more traffic has been logged.",
            inconclusive.join(", ")
        ),
        (Mode::Rollback, Status::Fail) => format!(
            "{} of {} failed ({}): until they pass, production is not back at the last known good state.",
            count(failing.len() as u64),
            plural(judged, "check", "checks"),
            failing.join(", ")
        ),
        (Mode::Canary, Status::Fail) => format!(
            "{} of {} failed ({}): the canary must not graduate.",
            count(failing.len() as u64),
            plural(judged, "check", "checks"),
            failing.join(", ")
        ),
        (_, Status::Warn) => format!(
            "No check failed; {} warned, and {} an explanation in this postmortem.",
            warned.join(", "),
            if warned.len() == 1 { "it needs" } else { "each needs" }
        ),
        (Mode::Rollback, _) => {
            "Every check passed: production is back at the last known good state.".to_string()
        }
        (Mode::Canary, _) => "Every check passed: the canary may graduate.".to_string(),
    }
}

fn window<'a>(r: &'a Report, name: &str) -> Option<&'a ImpactWindow> {
    r.impact.as_ref()?.windows.iter().find(|w| w.name == name)
}

fn users(w: &ImpactWindow) -> String {
    match (w.affected_users, w.users) {
        (Some(a), Some(u)) => format!("; {} of {} affected", count(a), plural(u, "user", "users")),
        _ => String::new(),
    }
}

fn errors(w: &ImpactWindow, has_status: bool) -> String {
    match (has_status, w.error_rate) {
        (true, Some(e)) => format!("{} ({})", plural(w.errors, "error", "errors"), pct(e)),
        _ => "errors unknown (no status column)".to_string(),
    }
}

fn rollback_story(r: &Report) -> (Vec<String>, Vec<String>) {
    let mut summary = Vec::new();
    let mut impact = Vec::new();
    let Some(im) = r.impact.as_ref() else {
        summary.push(verdict_sentence(r));
        return (summary, impact);
    };
    let flip = r.incident.flip_at.map(|f| f.0).unwrap_or_default();
    let span = |a: i64, b: i64| minutes(((b - a) / MICROS_PER_MINUTE).max(0) as u64);
    match (im.incident_start, window(r, "incident")) {
        (Some(start), Some(w)) => {
            let off = if w.requests > 0 { w.off_pin_requests as f64 / w.requests as f64 } else { 0.0 };
            let mut s = format!(
                "The incident started at {start}, the first degraded minute in the data. In the {} until the rollback flipped at {}, {} of {} ran off the last known good pins",
                span(start.0, flip),
                r.incident.flip_at.map(|f| f.to_string()).unwrap_or_default(),
                pct(off),
                plural(w.requests, "request", "requests"),
            );
            if im.has_status {
                s.push_str(&format!(" and {} of them failed", w.error_rate.map(pct).unwrap_or_default()));
            }
            if let (Some(rate), Some(at)) = (im.peak_error_rate, im.peak_error_at) {
                if rate > 0.0 {
                    s.push_str(&format!("; the worst minute, from {at}, had {} errors", pct(rate)));
                }
            }
            s.push('.');
            summary.push(s);
        }
        _ => summary.push(format!(
            "The data shows no degraded minute (requests off the last known good pins, or errors over error_rate_max) between the baseline and the flip at {}.",
            r.incident.flip_at.map(|f| f.to_string()).unwrap_or_default()
        )),
    }
    let threshold = r
        .thresholds
        .get("error_rate_max")
        .and_then(serde_json::Value::as_f64)
        .map(pct)
        .unwrap_or_default();
    match (im.recovered_at, im.has_status) {
        (Some(at), _) => {
            let after = span(flip, at.0);
            let mut s = format!(
                "Errors were back under {threshold} for good at {at}, {after} after the flip"
            );
            if let Some(d) = im.duration_minutes {
                s.push_str(&format!(
                    "; the incident lasted {} from its start",
                    minutes(d)
                ));
            }
            s.push('.');
            summary.push(s);
        }
        (None, true) => summary.push(format!(
            "Errors had not fallen back under {threshold} for good by the end of the data."
        )),
        (None, false) => summary.push(
            "The logs have no status column, so recovery from errors cannot be judged.".to_string(),
        ),
    }
    summary.push(convergence(r));
    summary.push(verdict_sentence(r));

    if let Some(w) = window(r, "incident") {
        impact.push(format!(
            "Incident ({} → flip, {}): {}, {} off the pins, {}{}.",
            w.start,
            span(w.start.0, flip),
            plural(w.requests, "request", "requests"),
            count(w.off_pin_requests),
            errors(w, im.has_status),
            users(w)
        ));
    }
    if let Some(w) = window(r, "settling") {
        impact.push(format!(
            "Settling (flip → {}, before the post window): {}, {}, {} off the pins{}.",
            w.end.map(|e| e.to_string()).unwrap_or_default(),
            plural(w.requests, "request", "requests"),
            errors(w, im.has_status),
            count(w.off_pin_requests),
            users(w)
        ));
    }
    if let Some(w) = window(r, "post") {
        let baseline = window(r, "baseline")
            .and_then(|b| b.error_rate)
            .filter(|_| im.has_status)
            .map(|e| format!(" against {} in the baseline", pct(e)))
            .unwrap_or_default();
        impact.push(format!(
            "Post window (from {}): {}, {}{baseline}, {} off the pins{}.",
            w.start,
            plural(w.requests, "request", "requests"),
            errors(w, im.has_status),
            count(w.off_pin_requests),
            users(w)
        ));
    }
    (summary, impact)
}

/// Whether every request after the flip runs the last known good set, from pins and cache.
fn convergence(r: &Report) -> String {
    let status = |id: &str| r.check(id).map(|c| c.status);
    let pins = r.check("pins");
    let mut parts = Vec::new();
    if let Some(p) = pins.filter(|c| c.status == Status::Fail) {
        let v = p
            .metrics
            .get("violations")
            .and_then(Metric::as_count)
            .unwrap_or(0);
        let n = p
            .metrics
            .get("requests_checked")
            .and_then(Metric::as_count)
            .unwrap_or(0);
        let last = p
            .metrics
            .get("last_violation_at")
            .map(Metric::display)
            .unwrap_or_default();
        let regions = p
            .metrics
            .get("by_region")
            .and_then(Metric::as_counts)
            .map(|m| m.keys().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        parts.push(format!(
            "{} of {} after the flip still carried a wrong or missing pin (in {regions}; the last at {last})",
            count(v),
            plural(n, "request", "requests")
        ));
    }
    if let Some(c) = r
        .check("cache_rotation")
        .filter(|c| c.status == Status::Fail)
    {
        let n = c
            .metrics
            .get("stale_hits")
            .and_then(Metric::as_count)
            .unwrap_or(0);
        let last = c
            .metrics
            .get("last_stale_at")
            .map(Metric::display)
            .unwrap_or_default();
        parts.push(format!(
            "{} came from a stale namespace (the last at {last})",
            plural(n, "cache hit", "cache hits")
        ));
    }
    if parts.is_empty() {
        let pinned = matches!(status("pins"), Some(Status::Pass | Status::Warn));
        let cached = matches!(status("cache_rotation"), Some(Status::Pass));
        match (pinned, cached) {
            (true, true) => "Every request after the flip carried the last known good pins, and every cache hit came from the rotated namespace.".to_string(),
            (true, false) => "Every request after the flip carried the last known good pins.".to_string(),
            _ => "Whether every request runs the last known good set could not be checked (see the pins check).".to_string(),
        }
    } else {
        format!("The rollback has not converged: {}.", parts.join("; "))
    }
}

fn canary_story(r: &Report) -> (Vec<String>, Vec<String>) {
    let mut summary = Vec::new();
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
    let (b, c) = (r.rows.requests_baseline, r.rows.requests_subject);
    let window = match &r.windows.canary {
        Some([a, e]) => format!(" from {a} to {e}"),
        None => String::new(),
    };
    let share = if b + c > 0 {
        pct(c as f64 / (b + c) as f64)
    } else {
        "n/a".into()
    };
    summary.push(format!(
        "The canary arm “{}” served {} ({share} of the two arms' traffic){window}, against {} on “{}”.",
        names[1],
        plural(c, "request", "requests"),
        count(b),
        names[0]
    ));
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
    if let [Some(eb), Some(ec)] = errors {
        let [nb, nc] = with_status;
        if let (Some((bl, bh)), Some((cl, ch))) = (wilson(eb, nb, 1.96), wilson(ec, nc, 1.96)) {
            let overlap = cl <= bh && bl <= ch;
            summary.push(format!(
                "Errors: {} on the canary [95% interval {} – {}], {} on the stable arm [{} – {}]; {}.",
                pct(ec as f64 / nc as f64),
                pct(cl),
                pct(ch),
                pct(eb as f64 / nb as f64),
                pct(bl),
                pct(bh),
                if overlap {
                    "the intervals overlap, so the difference may be chance"
                } else if ec as f64 / nc as f64 > eb as f64 / nb as f64 {
                    "the canary errs more, beyond chance at 95%"
                } else {
                    "the canary errs less, beyond chance at 95%"
                }
            ));
        }
    }
    summary.push(verdict_sentence(r));
    (summary, Vec::new())
}
