//! Markdown (`--markdown FILE`) for a PR comment or `$GITHUB_STEP_SUMMARY`: the verdict, the
//! checks table, the top findings. Bounded: never more than 1 MiB, whatever the input.

use std::fmt::Write;

use super::{Renderer, Report};
use crate::checks::Status;

pub(crate) struct Markdown;

/// GitHub rejects step summaries over 1 MiB; stay well under it.
pub(crate) const MAX_BYTES: usize = 512 * 1024;
const SAMPLES_SHOWN: usize = 5;

/// Text safe in a Markdown table cell: the escaping policy's Markdown (no link, image, mention,
/// HTML or cell break from log text), bounded.
pub(crate) fn cell(s: &str) -> String {
    crate::escape::markdown(s, 400)
}

/// A paragraph, with the same escaping and a longer bound.
fn prose(s: &str) -> String {
    crate::escape::markdown(s, 4000)
}

fn icon(status: Status) -> &'static str {
    match status {
        Status::Pass => "✅",
        Status::Warn => "⚠️",
        Status::Fail => "❌",
        Status::Skip => "⏭️",
        Status::Inconclusive => "❔",
    }
}

impl Renderer for Markdown {
    fn render(&self, r: &Report) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "## {} rollproof: {} — {}\n",
            icon(r.verdict),
            r.verdict.name().to_uppercase(),
            cell(&r.incident.id)
        );
        let c = &r.counts;
        let _ =
            writeln!(
            out,
            "{} audit{} · exit {} · {} failed, {} inconclusive, {} warned, {} passed, {} skipped\n",
            r.mode,
            r.incident.flip_at.map(|f| format!(", flip {f}")).unwrap_or_default(),
            r.exit_code,
            c.fail,
            c.inconclusive,
            c.warn,
            c.pass,
            c.skip
        );
        let story = super::story::postmortem(r);
        let _ = writeln!(out, "**{}**\n", prose(&super::story::headline(r)));
        for paragraph in &story.summary {
            let _ = writeln!(out, "{}\n", prose(paragraph));
        }
        let _ = writeln!(
            out,
            "| check | status | observed | baseline | threshold | summary |"
        );
        let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- |");
        for check in &r.checks {
            let _ = writeln!(
                out,
                "| `{}` | {} {} | {} | {} | {} | {} |",
                check.id,
                icon(check.status),
                check.status.name(),
                cell(&check.observed),
                cell(&check.baseline),
                cell(&check.threshold),
                cell(&check.summary)
            );
        }
        let intervals: Vec<_> = r
            .checks
            .iter()
            .flat_map(|c| c.intervals.iter().map(move |i| (c.id, i)))
            .collect();
        if !intervals.is_empty() {
            let _ = writeln!(
                out,
                "\n### How sure ({} method)\n\n| check | figure | estimate | interval | n | criterion | decision |\n| --- | --- | --- | --- | --- | --- | --- |",
                r.statistics.method
            );
            for (id, i) in intervals {
                let _ = writeln!(
                    out,
                    "| `{id}` | {} | {} | {} | {} | {} | {} |",
                    cell(&i.label),
                    cell(&i.estimate),
                    cell(&i.interval),
                    cell(&i.n),
                    cell(&i.criterion),
                    i.decision
                );
            }
        }
        let steps = r.next_steps();
        if !steps.is_empty() {
            let _ = writeln!(out, "\n### Next steps\n");
            for (text, checks) in steps {
                let checks: Vec<String> = checks.iter().map(|c| format!("`{c}`")).collect();
                let _ = writeln!(out, "- [ ] {} ({})", cell(text), checks.join(", "));
            }
        }
        let findings: Vec<_> = r.findings().collect();
        if !findings.is_empty() {
            let _ = writeln!(out, "\n### Top findings\n");
        }
        for check in findings {
            let _ = writeln!(
                out,
                "<details><summary><code>{}</code>: {}</summary>\n",
                check.id,
                cell(&check.summary)
            );
            for sample in check.samples.iter().take(SAMPLES_SHOWN) {
                let line: Vec<String> = sample
                    .iter()
                    .map(|(k, v)| format!("{k}={}", cell(&v.display())))
                    .collect();
                let _ = writeln!(out, "- {}", line.join(" · "));
            }
            let _ = writeln!(out, "\n</details>\n");
            if out.len() > MAX_BYTES {
                break;
            }
        }
        let _ = writeln!(
            out,
            "\n<sub>rollproof {} · {} · full figures in the JSON report</sub>",
            r.tool.version,
            crate::words::plural(r.inputs.len() as u64, "input file", "input files")
        );
        if out.len() > MAX_BYTES {
            let mut cut = MAX_BYTES;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push_str("\n\n… (truncated to stay under GitHub's 1 MiB summary limit)\n");
        }
        out
    }
}
