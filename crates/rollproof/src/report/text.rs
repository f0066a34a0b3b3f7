//! The terminal summary (`--format text`, the default): verdict first, one line per check with
//! the observed value against its threshold, then the worst findings with sample ids.

use std::fmt::Write;

use super::{Renderer, Report};
use crate::checks::{Fields, Status};

pub(crate) struct Text {
    /// ANSI colours for the status words (on a terminal, unless NO_COLOR).
    pub(crate) color: bool,
}

const FINDINGS_PER_CHECK: usize = 3;

fn sample_line(sample: &Fields) -> String {
    sample
        .iter()
        .map(|(k, v)| format!("{k}={}", sanitize(&v.display())))
        .collect::<Vec<_>>()
        .join("  ")
}

/// Strips control characters from untrusted text before it reaches a terminal.
pub(crate) fn sanitize(s: &str) -> String {
    crate::escape::neutral(s).into_owned()
}

impl Renderer for Text {
    fn render(&self, r: &Report) -> String {
        let mut out = String::new();
        let title = r
            .incident
            .title
            .as_deref()
            .map(|t| format!(" “{}”", sanitize(t)))
            .unwrap_or_default();
        let what = match (
            &r.incident.flip_at,
            &r.incident.canary_arm,
            &r.incident.baseline_arm,
        ) {
            (Some(flip), _, _) => format!("rollback audit, flip {flip}"),
            (None, Some(c), Some(b)) => {
                format!("canary gate, “{}” against “{}”", sanitize(c), sanitize(b))
            }
            _ => format!("{} audit", r.mode),
        };
        let _ = writeln!(
            out,
            "rollproof {} — {}{} ({what})",
            r.tool.version,
            sanitize(&r.incident.id),
            title
        );
        let c = &r.counts;
        let _ = writeln!(
            out,
            "verdict: {} (exit {}) — {} failed, {} inconclusive, {} warned, {} passed, {} skipped",
            self.paint(r.verdict, &r.verdict.name().to_uppercase()),
            r.exit_code,
            c.fail,
            c.inconclusive,
            c.warn,
            c.pass,
            c.skip
        );
        let _ = writeln!(out);
        for check in &r.checks {
            let _ = writeln!(
                out,
                "  {} {:<18} {}",
                self.paint(check.status, &format!("{:<5}", status_word(check.status))),
                check.id,
                sanitize(&check.summary)
            );
        }
        let intervals: Vec<_> = r
            .checks
            .iter()
            .flat_map(|c| c.intervals.iter().map(move |i| (c.id, i)))
            .collect();
        if !intervals.is_empty() {
            let _ = writeln!(out, "\nhow sure ({} method)", r.statistics.method);
            for (id, i) in intervals {
                let judged = if i.criterion.is_empty() {
                    String::new()
                } else {
                    format!("  {} {}", i.criterion, i.decision)
                };
                let _ = writeln!(
                    out,
                    "  {id:<15} {:<30} {:>9}  {:<30} {}{judged}",
                    i.label, i.estimate, i.interval, i.n
                );
            }
        }
        let findings: Vec<_> = r.findings().collect();
        if !findings.is_empty() {
            let _ = writeln!(out, "\nfindings");
            for check in findings {
                let _ = writeln!(
                    out,
                    "  {} ({} of {} samples):",
                    check.id,
                    check.samples.len().min(FINDINGS_PER_CHECK),
                    check.samples.len()
                );
                for sample in check.samples.iter().take(FINDINGS_PER_CHECK) {
                    let _ = writeln!(out, "    {}", sample_line(sample));
                }
            }
        }
        let steps = r.next_steps();
        if !steps.is_empty() {
            let _ = writeln!(out, "\nnext steps");
            for (text, checks) in steps {
                let _ = writeln!(out, "  [ ] {text} ({})", checks.join(", "));
            }
        }
        let rows = &r.rows;
        let _ = writeln!(
            out,
            "\ninputs: {}, {} ({} rejected), {}; `--format json` for every figure",
            crate::words::plural(r.inputs.len() as u64, "file", "files"),
            crate::words::plural(rows.requests_read, "request", "requests"),
            crate::words::count(rows.requests_rejected),
            crate::words::plural(rows.receipts_read, "receipt", "receipts")
        );
        out
    }
}

impl Text {
    /// A status word in its colour: red fail, yellow warn, green pass, magenta inconclusive.
    fn paint(&self, status: Status, word: &str) -> String {
        if !self.color {
            return word.to_string();
        }
        let code = match status {
            Status::Fail => "1;31",
            Status::Warn => "33",
            Status::Pass => "32",
            Status::Inconclusive => "35",
            Status::Skip => "2",
        };
        format!("\x1b[{code}m{word}\x1b[0m")
    }
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Pass => "PASS",
        Status::Warn => "WARN",
        Status::Fail => "FAIL",
        Status::Skip => "SKIP",
        Status::Inconclusive => "INCON",
    }
}
