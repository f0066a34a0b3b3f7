//! `plan`, `partial` and `merge`: a merge over any split of the inputs is byte-identical to one
//! `audit`; a partial that is missing, doubled, truncated or made for something else is exit 2.

use std::path::{Path, PathBuf};

use rollproof_gen::{
    fixture_scenarios, incident_toml, receipts_batch, requests_batch, write_batches, Naming,
    OutFormat,
};

use crate::util::{code, fixture, run, run_in, stderr, stdout};

fn unit_ids(incident: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["plan", incident.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    plan["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect()
}

/// Writes one partial per group of units, and returns their paths.
fn partials(dir: &Path, incident: &Path, groups: &[Vec<String>], tag: &str) -> Vec<PathBuf> {
    partials_with(dir, incident, groups, tag, &[])
}

fn partials_with(
    dir: &Path,
    incident: &Path,
    groups: &[Vec<String>],
    tag: &str,
    extra: &[&str],
) -> Vec<PathBuf> {
    groups
        .iter()
        .enumerate()
        .map(|(i, group)| {
            let out_path = dir.join(format!("{tag}-{i}.rpp"));
            let mut args = vec![
                "partial".to_string(),
                incident.to_str().unwrap().to_string(),
                "-q".to_string(),
                "-o".to_string(),
                out_path.to_str().unwrap().to_string(),
            ];
            for id in group {
                args.push("--unit".into());
                args.push(id.clone());
            }
            args.extend(extra.iter().map(|a| a.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = run(&args);
            assert_eq!(code(&out), 0, "{}", stderr(&out));
            out_path
        })
        .collect()
}

fn merge(incident: &Path, parts: &[PathBuf], extra: &[&str]) -> (i32, String) {
    let mut args = vec!["merge", incident.to_str().unwrap()];
    args.extend(parts.iter().map(|p| p.to_str().unwrap()));
    args.extend_from_slice(extra);
    let out = run(&args);
    (code(&out), stdout(&out))
}

fn audit(incident: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["audit", incident.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run(&args);
    (code(&out), stdout(&out))
}

/// One unit per partial, merged in reverse order, for every fixture: the same JSON, the same
/// exit code. And the same again when the keyed states are written as 16 key ranges and
/// finished one range at a time, or written whole and finished in 16 ranges, or written in 16
/// and finished whole.
#[test]
fn every_fixture_merges_to_the_audit_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "backpressure",
        "canary-fail",
        "canary-pass",
        "clean",
        "demo",
        "demo-otel",
        "duplicate-effects",
        "early-unfreeze",
        "flag-drift",
        "freeze-writes",
        "gold-set",
        "latency-regression",
        "quality-drift",
        "region-flips",
        "requests-only",
        "slow-recovery",
        "stale-cache",
        "stale-pins",
        "too-little-data",
    ] {
        let incident = fixture(name).join("incident.toml");
        let ids = unit_ids(&incident, &[]);
        let groups: Vec<Vec<String>> = ids.iter().rev().map(|u| vec![u.clone()]).collect();
        let parts = partials(tmp.path(), &incident, &groups, name);
        let json = ["--format", "json"];
        let expected = audit(&incident, &json);
        assert_eq!(merge(&incident, &parts, &json), expected, "{name}");
        let ranged = partials_with(
            tmp.path(),
            &incident,
            &groups,
            &format!("{name}-ranged"),
            &["--key-partitions", "16"],
        );
        for (parts, extra) in [
            (&ranged, &[][..]),
            (&ranged, &["--key-partitions", "1"][..]),
            (&parts, &["--key-partitions", "16"][..]),
            (&ranged, &["--key-partitions", "5"][..]),
        ] {
            let args: Vec<&str> = json.iter().chain(extra).copied().collect();
            assert_eq!(merge(&incident, parts, &args), expected, "{name} {extra:?}");
        }
    }
}

/// A dataset of several files of many row groups each, split three ways; the samples read by
/// the merge, or folded in a second round from a combined partial.
#[test]
fn any_split_grouping_and_sample_round_give_the_audit() {
    let demo = fixture_scenarios()
        .into_iter()
        .find(|s| s.name == "demo")
        .unwrap();
    let (requests, receipts) = rollproof_gen::generate(&demo);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let third = requests.len() / 3;
    for (i, chunk) in [
        &requests[..third],
        &requests[third..2 * third],
        &requests[2 * third..],
    ]
    .iter()
    .enumerate()
    {
        write_batches(
            &dir.join(format!("requests-{i}.parquet")),
            OutFormat::Parquet,
            &[requests_batch(chunk, Naming::Canonical)],
            500,
        )
        .unwrap();
    }
    write_batches(
        &dir.join("receipts.parquet"),
        OutFormat::Parquet,
        &[receipts_batch(&receipts)],
        300,
    )
    .unwrap();
    std::fs::write(
        dir.join("incident.toml"),
        incident_toml(&demo, "requests-*.parquet", Some("receipts.parquet"), None),
    )
    .unwrap();
    // The gold set and the captured state, which the merge reads itself.
    rollproof_gen::page::write_files(&demo, dir, Naming::Canonical).unwrap();
    let incident = dir.join("incident.toml");
    let ids = unit_ids(&incident, &[]);
    assert!(ids.len() > 20, "{} units", ids.len());
    let json = ["--format", "json"];
    let (expected_code, expected) = audit(&incident, &json);
    assert_eq!(expected_code, 1);

    // Round robin into 2, contiguous into 5, and 1 partial of everything.
    let round_robin: Vec<Vec<String>> = (0..2)
        .map(|k| ids.iter().skip(k).step_by(2).cloned().collect())
        .collect();
    let contiguous: Vec<Vec<String>> = ids
        .chunks(ids.len().div_ceil(5))
        .map(<[String]>::to_vec)
        .collect();
    for (tag, groups) in [
        ("rr", round_robin),
        ("ct", contiguous),
        ("one", vec![ids.clone()]),
    ] {
        let parts = partials(dir, &incident, &groups, tag);
        let mut reversed = parts.clone();
        reversed.reverse();
        assert_eq!(
            merge(&incident, &reversed, &json),
            (1, expected.clone()),
            "{tag}"
        );
    }

    // A merge tree: combine two groups separately, then merge the two combined partials.
    let parts = partials(
        dir,
        &incident,
        &ids.chunks(4).map(<[String]>::to_vec).collect::<Vec<_>>(),
        "tree",
    );
    let (left, right) = parts.split_at(parts.len() / 2);
    for (side, name) in [(left, "left.rpp"), (right, "right.rpp")] {
        let (c, _) = merge(
            &incident,
            side,
            &["--partial-out", dir.join(name).to_str().unwrap()],
        );
        assert_eq!(c, 0);
    }
    let combined = [dir.join("right.rpp"), dir.join("left.rpp")];
    assert_eq!(merge(&incident, &combined, &json), (1, expected.clone()));

    // The sample round: from the combined fold, each shard folds the look-ups of its units.
    let (c, _) = merge(
        &incident,
        &parts,
        &["--partial-out", dir.join("all.rpp").to_str().unwrap()],
    );
    assert_eq!(c, 0);
    let all = dir.join("all.rpp");
    let mut samples = Vec::new();
    for (i, group) in ids.chunks(7).enumerate() {
        let out_path = dir.join(format!("samples-{i}.rpp"));
        let mut args = vec![
            "partial",
            incident.to_str().unwrap(),
            "-q",
            "--samples-from",
            all.to_str().unwrap(),
            "-o",
            out_path.to_str().unwrap(),
        ];
        for id in group {
            args.extend(["--unit", id.as_str()]);
        }
        let out = run(&args);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        samples.push(out_path);
    }
    let mut with_samples = vec![all.clone()];
    with_samples.extend(samples.iter().cloned());
    assert_eq!(
        merge(&incident, &with_samples, &json),
        (1, expected.clone())
    );
    // The HTML (per-minute series) too.
    let html = ["--format", "html"];
    assert_eq!(merge(&incident, &parts, &html), audit(&incident, &html));
    // Sample partials over only some units: exit 2, naming how many are missing.
    let out = run(&[
        "merge",
        incident.to_str().unwrap(),
        all.to_str().unwrap(),
        samples[0].to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("in no sample partial"),
        "{}",
        stderr(&out)
    );
}

/// `partial --requests`/`--receipts`: each table folded by its own partials, merged with the
/// incident's inputs.
#[test]
fn partials_by_input_path_merge_to_the_audit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let incident = fixture("demo").join("incident.toml");
    let data = fixture("demo");
    let requests = data.join("requests.parquet");
    let receipts = data.join("receipts.parquet");
    let out = run_in(
        dir,
        &[
            "partial",
            incident.to_str().unwrap(),
            "--requests",
            requests.to_str().unwrap(),
            "-o",
            "req.rpp",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("bytes written to `req.rpp`"));
    let out = run_in(
        dir,
        &[
            "partial",
            incident.to_str().unwrap(),
            "--receipts",
            receipts.to_str().unwrap(),
            "-o",
            "rec.rpp",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json = ["--format", "json"];
    let expected = audit(&incident, &json);
    // Partials made with `--requests PATH` name the file as given: the merge plans the same.
    let out = run_in(
        dir,
        &[
            "merge",
            incident.to_str().unwrap(),
            "rec.rpp",
            "req.rpp",
            "--requests",
            requests.to_str().unwrap(),
            "--receipts",
            receipts.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    let (audit_code, audit_json) = audit(
        &incident,
        &[
            "--requests",
            requests.to_str().unwrap(),
            "--receipts",
            receipts.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert_eq!((code(&out), stdout(&out)), (audit_code, audit_json));
    assert_eq!(expected.0, audit_code);
}

#[test]
fn a_missing_doubled_truncated_or_foreign_partial_is_an_input_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let incident = fixture("demo").join("incident.toml");
    let ids = unit_ids(&incident, &[]);
    let groups: Vec<Vec<String>> = ids.iter().map(|u| vec![u.clone()]).collect();
    let parts = partials(dir, &incident, &groups, "p");
    let inc = incident.to_str().unwrap();
    let name = |p: &PathBuf| p.to_str().unwrap().to_string();
    let merge_of = |files: Vec<String>, extra: &[&str]| {
        let mut args = vec!["merge".to_string(), inc.to_string()];
        args.extend(files);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args);
        (code(&out), stderr(&out))
    };

    // A unit missing.
    let (c, err) = merge_of(parts[1..].iter().map(name).collect(), &[]);
    assert_eq!(c, 2);
    assert!(
        err.contains(&format!(
            "found 1 planned unit in no partial (`{}`)",
            ids[0]
        )),
        "{err}"
    );
    // A unit twice (a retried task).
    let copy = dir.join("retry.rpp");
    std::fs::copy(&parts[0], &copy).unwrap();
    let mut files: Vec<String> = parts.iter().map(name).collect();
    files.push(name(&copy));
    let (c, err) = merge_of(files, &[]);
    assert_eq!(c, 2);
    assert!(
        err.contains(&format!("found unit `{}` folded twice", ids[0])),
        "{err}"
    );
    // Truncated.
    let bytes = std::fs::read(&parts[0]).unwrap();
    let cut = dir.join("cut.rpp");
    std::fs::write(&cut, &bytes[..bytes.len() - 1]).unwrap();
    let mut files: Vec<String> = parts[1..].iter().map(name).collect();
    files.push(name(&cut));
    let (c, err) = merge_of(files, &[]);
    assert_eq!(c, 2);
    assert!(err.contains("found a truncated partial"), "{err}");
    // Another format version.
    let mut other = bytes.clone();
    other[10] = 99;
    let old = dir.join("old.rpp");
    std::fs::write(&old, other).unwrap();
    let mut files: Vec<String> = parts[1..].iter().map(name).collect();
    files.push(name(&old));
    let (c, err) = merge_of(files, &[]);
    assert_eq!(c, 2);
    assert!(
        err.contains("found partial-state format version 99"),
        "{err}"
    );
    // Not a partial at all.
    let (c, err) = merge_of(vec![inc.to_string()], &[]);
    assert_eq!(c, 2);
    assert!(err.contains("not a partial state"), "{err}");
    // Another incident, and other thresholds.
    let clean = fixture("clean").join("incident.toml");
    let out = run(&["merge", clean.to_str().unwrap(), parts[0].to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("a partial made for another incident file"));
    let (c, err) = merge_of(
        parts.iter().map(name).collect(),
        &["--threshold", "error_rate_max=0.5"],
    );
    assert_eq!(c, 2);
    assert!(
        err.contains("a partial made for another incident file, mapping or thresholds"),
        "{err}"
    );
    // An unknown unit id names the closest one.
    let out = run(&[
        "partial",
        inc,
        "--unit",
        "requests:requests.parquet#7",
        "-o",
        dir.join("x.rpp").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("did you mean `requests:requests.parquet#"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("x.rpp").exists());
}

#[test]
fn a_partial_is_deterministic_and_independent_of_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let incident = fixture("demo").join("incident.toml");
    let inc = incident.to_str().unwrap();
    let mut bytes = Vec::new();
    for threads in ["1", "3"] {
        let out = run_in(
            tmp.path(),
            &["partial", inc, "-q", "--threads", threads, "-o", "p.rpp"],
        );
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        bytes.push(std::fs::read(tmp.path().join("p.rpp")).unwrap());
    }
    assert_eq!(bytes[0], bytes[1]);
    assert!(bytes[0].starts_with(b"RPPARTIAL\n"));
    assert!(!tmp.path().join("p.rpp.tmp").exists());
}

/// The committed partial of the whole demo: the format is stable (a change to any state's shape
/// must bump the format version and regenerate it with
/// `rollproof partial fixtures/demo/incident.toml -o fixtures/partials/demo.rpp`), and merging it
/// gives the audit.
#[test]
fn the_golden_partial_is_reproduced_and_merges_to_the_audit() {
    let tmp = tempfile::tempdir().unwrap();
    let incident = fixture("demo").join("incident.toml");
    let inc = incident.to_str().unwrap();
    let out = run_in(tmp.path(), &["partial", inc, "-q", "-o", "demo.rpp"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let golden = crate::util::root().join("fixtures/partials/demo.rpp");
    assert!(
        std::fs::read(tmp.path().join("demo.rpp")).unwrap() == std::fs::read(&golden).unwrap(),
        "the partial format changed: bump partial::FORMAT_VERSION and regenerate the golden file"
    );
    let json = ["--format", "json"];
    assert_eq!(merge(&incident, &[golden], &json), audit(&incident, &json));
}

/// Receipts first, then the requests' partials keep only the request ids the receipts name:
/// smaller partials, the same report; a prior that is not every receipt is refused.
#[test]
fn requests_folded_against_the_combined_receipts_are_smaller_and_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let incident = fixture("demo").join("incident.toml");
    let inc = incident.to_str().unwrap();
    let ids = unit_ids(&incident, &[]);
    let (receipts, requests): (Vec<String>, Vec<String>) =
        ids.into_iter().partition(|u| u.starts_with("receipts:"));
    let rec = partials(dir, &incident, &[receipts], "rec");
    let (c, _) = merge(
        &incident,
        &rec,
        &["--partial-out", dir.join("receipts.rpp").to_str().unwrap()],
    );
    assert_eq!(c, 0);
    let mut parts = rec.clone();
    for (i, unit) in requests.iter().enumerate() {
        let out_path = dir.join(format!("req-{i}.rpp"));
        let out = run(&[
            "partial",
            inc,
            "-q",
            "--receipts-from",
            dir.join("receipts.rpp").to_str().unwrap(),
            "--unit",
            unit,
            "-o",
            out_path.to_str().unwrap(),
        ]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        parts.push(out_path);
    }
    let unfiltered = partials(dir, &incident, &[vec![requests[0].clone()]], "plain");
    let small = std::fs::metadata(&parts[1]).unwrap().len();
    let large = std::fs::metadata(&unfiltered[0]).unwrap().len();
    assert!(small < large, "{small} vs {large} bytes");
    let json = ["--format", "json"];
    assert_eq!(merge(&incident, &parts, &json), audit(&incident, &json));
    // A requests partial is not a receipts prior.
    let out = run(&[
        "partial",
        inc,
        "--receipts-from",
        parts[1].to_str().unwrap(),
        "--unit",
        &requests[0],
        "-o",
        dir.join("bad.rpp").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("not the receipts' alone"),
        "{}",
        stderr(&out)
    );
}

/// A partial whose checksum holds but whose states no run could have built (fuzzing found a
/// `pins` sample of pin set 0): exit 2, naming the file and the kernel, never a panic.
#[test]
fn a_crafted_partial_with_impossible_states_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    rollproof_gen::seeds::write_partial_setup(dir).unwrap();
    let body =
        std::fs::read(crate::util::root().join("fuzz/seeds/partial/pins-sample-of-set-zero.bin"))
            .unwrap();
    std::fs::write(
        dir.join("crafted.rpp"),
        rollproof::fuzzing::seal_partial(&body),
    )
    .unwrap();
    let out = run_in(dir, &["merge", "incident.toml", "crafted.rpp"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`crafted.rpp`: found a state of `pins` that does not decode (values this audit could not have produced)"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"));
}

/// A stage per key range: each range finished over the partials of every unit (`merge
/// --key-range`), then merged with the partials: the audit, byte for byte. A range missing or
/// finished twice, a range finished without every unit, or a finished range given to a
/// combination is exit 2.
#[test]
fn finished_key_ranges_merge_to_the_audit() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["demo", "duplicate-effects", "canary-fail", "freeze-writes"] {
        let incident = fixture(name).join("incident.toml");
        let ids = unit_ids(&incident, &[]);
        let groups: Vec<Vec<String>> = ids.iter().map(|u| vec![u.clone()]).collect();
        let parts = partials_with(
            tmp.path(),
            &incident,
            &groups,
            name,
            &["--key-partitions", "4"],
        );
        let finished: Vec<PathBuf> = (0..4)
            .map(|r| {
                let out_path = tmp.path().join(format!("{name}-range-{r}.rpp"));
                let range = r.to_string();
                let out = out_path.to_str().unwrap();
                let args = [
                    "--key-partitions",
                    "4",
                    "--key-range",
                    &range,
                    "--partial-out",
                    out,
                ];
                let (status, _) = merge(&incident, &parts, &args);
                assert_eq!(status, 0, "{name} range {r}");
                out_path
            })
            .collect();
        let json = ["--format", "json"];
        let expected = audit(&incident, &json);
        let all: Vec<PathBuf> = parts.iter().chain(&finished).cloned().collect();
        assert_eq!(merge(&incident, &all, &json), expected, "{name}");
        if name != "demo" {
            continue;
        }
        let refused = |parts: &[PathBuf], extra: &[&str], words: &[&str]| {
            let mut args = vec!["merge", incident.to_str().unwrap()];
            args.extend(parts.iter().map(|p| p.to_str().unwrap()));
            args.extend_from_slice(extra);
            let out = run(&args);
            assert_eq!(code(&out), 2, "{}", stderr(&out));
            for w in words {
                assert!(stderr(&out).contains(w), "{w:?} not in {}", stderr(&out));
            }
        };
        let missing: Vec<PathBuf> = parts.iter().chain(&finished[1..]).cloned().collect();
        refused(&missing, &[], &["finished key ranges 0 (0 times) of 4"]);
        let doubled: Vec<PathBuf> = all.iter().chain(&finished[..1]).cloned().collect();
        refused(&doubled, &[], &["finished key ranges 0 (2 times) of 4"]);
        let out = tmp.path().join("short-range.rpp");
        refused(
            &parts[1..],
            &[
                "--key-partitions",
                "4",
                "--key-range",
                "0",
                "--partial-out",
                out.to_str().unwrap(),
            ],
            &["planned unit in no partial", &ids[0]],
        );
        let out = tmp.path().join("combined.rpp");
        refused(
            &all,
            &["--partial-out", out.to_str().unwrap()],
            &["a finished key range (`merge --key-range`)"],
        );
    }
}
