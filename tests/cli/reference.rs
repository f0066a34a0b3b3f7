//! The user documentation of the interface (docs/reference/) against the tool: the JSON Schema
//! against real reports, and the documented figures against the figures reports contain.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::util::{assert_schema, audit_json, root, run, stdout};

/// Every committed fixture's report (both modes, every fault kind).
fn fixture_reports() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(root().join("fixtures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|d| d.join("incident.toml").exists())
        .collect();
    dirs.sort();
    for dir in dirs {
        let (_, report) = audit_json(&dir.join("incident.toml"), &[]);
        out.push((
            dir.file_name().unwrap().to_string_lossy().into_owned(),
            report,
        ));
    }
    out
}

/// Check id → the figures `rollproof explain CHECK` documents.
fn documented_figures() -> BTreeMap<String, BTreeSet<String>> {
    let list = stdout(&run(&["explain"]));
    let ids: Vec<String> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(str::to_string)
        .collect();
    ids.into_iter()
        .filter_map(|id| {
            let page = stdout(&run(&["explain", &id]));
            let (_, figures) = page.split_once("Figures (")?;
            let names = figures
                .lines()
                .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
                .map(|l| l.trim().to_string())
                .collect();
            Some((id, names))
        })
        .collect()
}

#[test]
fn every_fixture_report_matches_the_published_schema() {
    let reports = fixture_reports();
    assert!(reports.len() >= 14, "{}", reports.len());
    for (_, report) in &reports {
        assert_schema(report);
    }
    // The schema rejects what it should: an unknown figure, a bad status, a missing section.
    let (_, mut bad) = reports[0].clone();
    bad["checks"][0]["metrics"]["made_up_figure"] = Value::from(1);
    assert!(
        std::panic::catch_unwind(|| assert_schema(&bad)).is_err(),
        "an undocumented figure"
    );
    let (_, mut bad) = reports[0].clone();
    bad["verdict"] = Value::from("maybe");
    assert!(
        std::panic::catch_unwind(|| assert_schema(&bad)).is_err(),
        "a bad status"
    );
    let (_, mut bad) = reports[0].clone();
    bad.as_object_mut().unwrap().remove("rows");
    assert!(
        std::panic::catch_unwind(|| assert_schema(&bad)).is_err(),
        "a missing section"
    );
}

#[test]
fn the_documented_figures_are_the_reported_figures() {
    let documented = documented_figures();
    assert_eq!(documented.len(), 17, "{documented:?}");
    let mut reported: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, report) in fixture_reports() {
        for check in report["checks"].as_array().unwrap() {
            let id = check["id"].as_str().unwrap().to_string();
            for key in check["metrics"].as_object().unwrap().keys() {
                assert!(
                    documented[&id].contains(key),
                    "{name}: `{id}` reports `{key}`, which `rollproof explain {id}` does not document"
                );
                reported.entry(id.clone()).or_default().insert(key.clone());
            }
        }
    }
    for (id, figures) in &documented {
        let missing: Vec<&String> = figures.difference(&reported[id]).collect();
        assert!(
            missing.is_empty(),
            "`{id}` documents figures no fixture reports: {missing:?}"
        );
    }
    // The schema lists exactly the documented figures of each check.
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("docs/reference/report.schema.json")).unwrap(),
    )
    .unwrap();
    for (id, figures) in &documented {
        let props: BTreeSet<String> = schema["$defs"][format!("metrics_{id}")]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("the schema has metrics_{id}"))
            .keys()
            .cloned()
            .collect();
        assert_eq!(&props, figures, "schema and `rollproof explain {id}` agree");
    }
}

#[test]
fn the_checks_reference_is_generated_from_the_checks() {
    // docs/reference/checks.md is the registry's documentation, rendered; regenerate it with
    // `rollproof explain --markdown > docs/reference/checks.md`.
    let generated = stdout(&run(&["explain", "--markdown"]));
    let committed = std::fs::read_to_string(root().join("docs/reference/checks.md")).unwrap();
    assert!(
        committed == generated,
        "docs/reference/checks.md is stale: run `cargo run -- explain --markdown > docs/reference/checks.md`"
    );
}

#[test]
fn the_statistics_page_quotes_explain_statistics() {
    let explained = stdout(&run(&["explain", "statistics"]));
    let page = std::fs::read_to_string(root().join("docs/reference/statistics.md")).unwrap();
    assert!(
        page.contains(&format!("```text\n{explained}```")),
        "docs/reference/statistics.md is stale: paste `rollproof explain statistics` into it"
    );
}
