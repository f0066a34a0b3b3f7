//! The JSON report (`--format json`, `--json FILE`): the contract's machine-readable output.

use super::{Renderer, Report};

pub(crate) struct Json;

impl Renderer for Json {
    fn render(&self, report: &Report) -> String {
        let mut out = serde_json::to_string_pretty(report).expect("the report model serializes");
        out.push('\n');
        out
    }
}
