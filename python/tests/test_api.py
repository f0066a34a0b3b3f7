"""rollproof's Python API gives exactly the CLI's report; partials merge to it; errors raise."""

import json

import pytest

import rollproof


def test_audit_is_the_cli_json_report(fixtures, cli_json, validate):
    for name in ["demo", "canary-fail", "clean", "requests-only"]:
        incident = fixtures / name / "incident.toml"
        report = rollproof.audit(incident)
        assert report == json.loads(cli_json(incident)), name
        validate(report)


def test_render_formats(fixtures, cli_json):
    incident = fixtures / "demo" / "incident.toml"
    assert rollproof.render(incident, "json") == cli_json(incident)
    html = rollproof.render(incident, "html")
    assert html.startswith("<!DOCTYPE html>") and "INC-2041" in html


def test_partials_in_any_order_merge_to_the_audit(fixtures):
    incident = fixtures / "demo" / "incident.toml"
    units = [u["id"] for u in rollproof.plan(incident)["units"]]
    assert units[0] == "requests:requests.parquet#0"
    parts = [rollproof.partial(incident, [u]) for u in units]
    expected = rollproof.audit(incident)
    assert rollproof.merge(incident, parts[::-1]) == expected
    combined = rollproof.combine(incident, parts[:2])
    assert rollproof.merge(incident, [combined] + parts[2:]) == expected
    # A unit twice is an input error, never a double count.
    with pytest.raises(rollproof.InputError, match="folded twice"):
        rollproof.merge(incident, parts + parts[:1])
    with pytest.raises(rollproof.InputError, match="in no partial"):
        rollproof.merge(incident, parts[1:])


def test_thresholds_override_like_the_cli(fixtures, cli_json):
    incident = fixtures / "demo" / "incident.toml"
    got = rollproof.audit(incident, thresholds={"p95_latency_ratio_max": 1.01})
    assert got == json.loads(cli_json(incident, "--threshold", "p95_latency_ratio_max=1.01"))


def test_input_errors_raise_with_every_problem(tmp_path):
    bad = tmp_path / "incident.toml"
    bad.write_text('id = "x"\nflip_at = "yesterday"\n[inputs]\nrequests = "nope.parquet"\n')
    with pytest.raises(rollproof.InputError) as e:
        rollproof.audit(bad)
    text = str(e.value)
    assert "flip_at" in text and "nope.parquet" in text


def test_tables_are_polars_frames(fixtures):
    pl = pytest.importorskip("polars")
    incident = fixtures / "demo" / "incident.toml"
    report = rollproof.audit(incident, series=True)
    t = rollproof.tables(report)
    assert isinstance(t["checks"], pl.DataFrame)
    assert t["checks"].filter(pl.col("check") == "pins")["status"].to_list() == ["fail"]
    # The per-region wrong-pin counts the report gives.
    by_region = t["by_region"].filter((pl.col("check") == "pins") & (pl.col("metric") == "by_region"))
    assert dict(zip(by_region["region"], by_region["value"])) == {"eu-west": 40.0, "us-east": 2.0}
    assert t["samples.pins"].height == len(next(c for c in report["checks"] if c["id"] == "pins")["samples"])
    # Per-minute series: every bucket's requests add up to the rows the audit used or saw.
    assert t["per_minute"]["requests"].sum() == report["rows"]["requests_read"] - report["rows"]["requests_rejected"]
    assert set(t["regions"]["region"]) == {"ap-south", "eu-west", "us-east"}


def test_violations_are_every_violating_row(fixtures):
    pytest.importorskip("polars")
    incident = fixtures / "demo" / "incident.toml"
    report = rollproof.audit(incident)
    v = rollproof.violations(incident)
    pins = next(c for c in report["checks"] if c["id"] == "pins")
    assert v["pins.requests_with_wrong_pins"].height == pins["metrics"]["violations"]


def test_key_ranges_split_finish_and_merge(fixtures):
    # What a stage per key range does, by hand: split each partial, finish each range over the
    # pieces of every unit, merge the rests with the finished ranges.
    incident = fixtures / "demo" / "incident.toml"
    ids = [u["id"] for u in rollproof.plan(incident)["units"]]
    parts = [rollproof.partial(incident, [u], key_partitions=4) for u in ids]
    split = [rollproof.split_key_ranges(incident, p) for p in parts]
    assert all(len(pieces) == 4 for _, pieces in split)
    finished = [
        rollproof.finish_key_range(incident, [pieces[r] for _, pieces in split], r, 4) for r in range(4)
    ]
    expected = rollproof.audit(incident)
    assert rollproof.merge(incident, [rest for rest, _ in split] + finished) == expected
    assert rollproof.merge(incident, parts) == expected
    assert rollproof.merge(incident, parts, key_partitions=1) == expected
    # A range finished twice (a retried task) is refused.
    with pytest.raises(rollproof.InputError, match="exactly once"):
        rollproof.merge(incident, [rest for rest, _ in split] + finished + finished[:1])
