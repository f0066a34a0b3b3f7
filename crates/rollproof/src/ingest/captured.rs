//! The captured state: the dump an SRE makes in step 1 of the rollback checklist, before the flip
//! (`[inputs] captured_state`, TOML or JSON): when it was made, the pins that were live, and
//! optionally ΔS and coverage samples.

use std::collections::BTreeMap;
use std::path::Path;

use crate::columns::{Col, PIN_COLUMNS};
use crate::error::Problem;
use crate::time::{parse_rfc3339, Micros};

/// What the check reads of the dump, and the dump itself for the report's evidence.
#[derive(Debug, Clone)]
pub(crate) struct CapturedState {
    /// The path as the incident file names it.
    pub(crate) path: String,
    pub(crate) captured_at: Option<Micros>,
    pub(crate) pins: BTreeMap<Col, String>,
    /// The whole file as JSON, copied into the report.
    pub(crate) content: serde_json::Value,
    pub(crate) sha256: String,
    pub(crate) format: &'static str,
}

const MAX_BYTES: u64 = 1 << 20;

/// TOML as JSON, with datetimes (`captured_at = 2026-11-27T10:14:00Z`) as their RFC 3339 text.
fn toml_to_json(v: toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        toml::Value::String(s) => J::String(s),
        toml::Value::Integer(i) => J::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            J::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

/// Reads and validates the dump that `[inputs] captured_state` names (`shown`): a local path
/// (relative to the incident file's folder `base`) or an object-storage URL.
pub(crate) fn load(base: &Path, shown: &str) -> Result<CapturedState, Vec<Problem>> {
    if super::remote::is_url(shown) {
        let mut problems = Vec::new();
        let mut objects = super::remote::resolve(shown, &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        if objects.len() != 1 {
            return Err(vec![Problem::new(
                format!("{} objects", objects.len()),
                "exactly one captured-state object",
            )
            .file(Path::new(shown))
            .column("inputs.captured_state")
            .hint("name one object, without a glob")]);
        }
        let object = objects.remove(0);
        let local = object.spooled().map_err(|p| vec![p])?;
        let text =
            crate::incident::read_small_text(local, MAX_BYTES, "a readable captured-state file")
                .map_err(|p| vec![p.file(Path::new(shown))])?;
        return parse(&text, Path::new(shown), shown);
    }
    let path = base.join(shown);
    let text = crate::incident::read_small_text(&path, MAX_BYTES, "a readable captured-state file")
        .map_err(|p| {
            vec![p.hint("[inputs] captured_state is relative to the incident file's folder")]
        })?;
    parse(&text, &path, shown)
}

/// Parses the dump's text; `path` names it in problems, and its extension picks JSON or TOML.
fn parse(text: &str, path: &Path, shown: &str) -> Result<CapturedState, Vec<Problem>> {
    let json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let (content, format): (serde_json::Value, &'static str) = if json {
        match serde_json::from_str(text) {
            Ok(v) => (v, "json"),
            Err(e) => {
                return Err(vec![Problem::new(
                    format!("invalid JSON ({e})"),
                    "a JSON object of the captured state",
                )
                .file(path)
                .location(format!("line {}", e.line()))
                .hint("write captured_at and the pins as top-level keys")])
            }
        }
    } else {
        match toml::from_str::<toml::Table>(text) {
            Ok(t) => (toml_to_json(toml::Value::Table(t)), "toml"),
            Err(e) => {
                let mut p = Problem::new(
                    format!("invalid TOML ({})", e.message()),
                    "a TOML file of the captured state",
                )
                .file(path)
                .hint("write captured_at and the pins as top-level keys");
                if let Some(span) = e.span() {
                    p = p.location(crate::incident::line_of(text, span.start));
                }
                return Err(vec![p]);
            }
        }
    };
    let Some(object) = content.as_object() else {
        return Err(vec![Problem::new(
            "a value that is not a table",
            "a table of keys",
        )
        .file(path)
        .hint("write captured_at and the pins as top-level keys")]);
    };
    let mut problems = Vec::new();
    let captured_at = match object.get("captured_at") {
        None => None,
        Some(serde_json::Value::String(s)) => match parse_rfc3339(s) {
            Some(t) => Some(t),
            None => {
                problems.push(
                    Problem::new(format!("`{s}`"), "an RFC 3339 time with a zone")
                        .file(path)
                        .column("captured_at")
                        .hint("write e.g. captured_at = \"2026-11-27T10:14:00Z\""),
                );
                None
            }
        },
        Some(other) => {
            problems.push(
                Problem::new(format!("`{other}`"), "an RFC 3339 time as a string")
                    .file(path)
                    .column("captured_at")
                    .hint("write e.g. captured_at = \"2026-11-27T10:14:00Z\""),
            );
            None
        }
    };
    let mut pins = BTreeMap::new();
    for col in PIN_COLUMNS {
        match object.get(col.name()) {
            None => {}
            Some(serde_json::Value::String(s)) => {
                pins.insert(col, s.clone());
            }
            Some(other) => problems.push(
                Problem::new(format!("`{other}`"), "the pin's value as a string")
                    .file(path)
                    .column(col.name())
                    .hint("write e.g. prompt_ver = \"p-7\""),
            ),
        }
    }
    for key in ["delta_s_samples", "coverage_samples"] {
        if let Some(v) = object.get(key) {
            let ok = v
                .as_array()
                .is_some_and(|a| a.iter().all(|x| x.as_f64().is_some()));
            if !ok {
                problems.push(
                    Problem::new(
                        format!("`{}`", crate::error::shown(&v.to_string(), 60)),
                        "an array of numbers",
                    )
                    .file(path)
                    .column(key)
                    .hint("write e.g. delta_s_samples = [0.41, 0.38]"),
                );
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    use sha2::{Digest, Sha256};
    Ok(CapturedState {
        path: shown.to_string(),
        captured_at,
        pins,
        content,
        sha256: super::remote::hex(&Sha256::digest(text.as_bytes())),
        format,
    })
}
