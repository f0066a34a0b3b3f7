//! GitHub Actions: `::error`/`::warning` annotations for the top findings (at most 10 a step,
//! the last one a summary), and the Markdown report appended to `$GITHUB_STEP_SUMMARY`.

use super::{Renderer, Report};
use crate::checks::Status;

/// GitHub shows at most 10 annotations of each kind per step.
const MAX_ANNOTATIONS: usize = 10;

/// Escapes a workflow command's message (`%`, CR, LF), as the runner expects.
fn escape(s: &str) -> String {
    crate::escape::neutral(s)
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

pub(crate) struct Annotations;

impl Renderer for Annotations {
    fn render(&self, r: &Report) -> String {
        let mut lines = Vec::new();
        let findings: Vec<_> = r.attention().collect();
        // One slot is kept for the summary annotation.
        for c in findings.iter().take(MAX_ANNOTATIONS - 1) {
            let level = if c.status == Status::Warn {
                "warning"
            } else {
                "error"
            };
            lines.push(format!(
                "::{level} title=rollproof {}::{}",
                c.id,
                escape(&c.summary)
            ));
        }
        let level = match r.verdict {
            Status::Fail | Status::Inconclusive => "error",
            Status::Warn => "warning",
            Status::Pass | Status::Skip => "notice",
        };
        lines.push(format!(
            "::{level} title=rollproof verdict::{} — {} failed, {} inconclusive, {} warned, {} passed (exit {})",
            r.verdict.name().to_uppercase(),
            r.counts.fail,
            r.counts.inconclusive,
            r.counts.warn,
            r.counts.pass,
            r.exit_code
        ));
        let mut out = lines.join("\n");
        out.push('\n');
        out
    }
}
