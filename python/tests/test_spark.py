"""`rollproof.spark.audit` on a local Spark: the same report as `rollproof.audit` over the same
rows, in units mode (Spark schedules rollproof's units) and in arrow mode (`mapInArrow`)."""

import shutil

import pytest

import rollproof

pytest.importorskip("pyspark")
from rollproof import spark as rspark  # noqa: E402


def _without_inputs(report):
    return {k: v for k, v in report.items() if k != "inputs"}


def test_units_mode_on_the_incident_inputs(spark, fixtures):
    incident = fixtures / "demo" / "incident.toml"
    assert rspark.audit(spark, str(incident)) == rollproof.audit(incident)


def test_units_mode_on_file_scans(spark, fixtures, tmp_path):
    # Several files of several row groups each, read by Spark as one DataFrame.
    demo = fixtures / "demo"
    for name in ["requests.parquet", "receipts.parquet"]:
        shutil.copy(demo / name, tmp_path / name)
    incident = demo / "incident.toml"
    requests = spark.read.parquet(str(tmp_path / "requests.parquet"))
    receipts = spark.read.parquet(str(tmp_path / "receipts.parquet"))
    assert rspark.units_of(requests) == [str(tmp_path / "requests.parquet")]
    got = rspark.audit(spark, str(incident), requests, receipts, units_per_task=2)
    expected = rollproof.audit(
        incident,
        requests=[str(tmp_path / "requests.parquet")],
        receipts=[str(tmp_path / "receipts.parquet")],
    )
    assert got == expected


def test_arrow_mode_on_any_dataframe(spark, fixtures, validate):
    """A DataFrame that is not a plain scan (repartitioned, so Spark shuffles its rows into 5
    partitions) goes through mapInArrow, with the sample round, and gives the same figures."""
    demo = fixtures / "demo"
    incident = demo / "incident.toml"
    requests = spark.read.parquet(str(demo / "requests.parquet")).repartition(5)
    receipts = spark.read.parquet(str(demo / "receipts.parquet")).repartition(3)
    assert rspark.units_of(requests) is None
    got = rspark.audit(spark, str(incident), requests, receipts)
    validate(got)
    expected = rollproof.audit(incident)
    assert _without_inputs(got) == _without_inputs(expected)
    # The inputs name the DataFrames and the files Spark read them from, with every row.
    roles = {i["role"]: i for i in got["inputs"]}
    assert roles["requests"]["path"] == "Spark DataFrame"
    assert roles["requests"]["rows"] == expected["rows"]["requests_read"]
    assert roles["requests"]["source_files"] == [str(demo / "requests.parquet")]
    assert roles["receipts"]["rows"] == expected["rows"]["receipts_read"]
    # The gold files are read on the driver, as the audit reads them.
    assert [i for i in got["inputs"] if i["role"].startswith("gold")] == [
        i for i in expected["inputs"] if i["role"].startswith("gold")
    ]


def test_arrow_mode_without_receipts(spark, fixtures):
    incident = fixtures / "requests-only" / "incident.toml"
    requests = spark.read.parquet(str(fixtures / "requests-only" / "requests.parquet")).repartition(4)
    got = rspark.audit(spark, str(incident), requests, mode="arrow")
    assert _without_inputs(got) == _without_inputs(rollproof.audit(incident))


def test_units_mode_with_a_stage_per_key_range(spark, fixtures):
    # The keyed states are shuffled by key range and finished by one task per range: the same
    # report as one audit, for any number of ranges.
    for name in ["demo", "duplicate-effects"]:
        incident = fixtures / name / "incident.toml"
        expected = rollproof.audit(incident)
        for ranges in [2, 16]:
            assert rspark.audit(spark, str(incident), key_partitions=ranges) == expected, (name, ranges)
