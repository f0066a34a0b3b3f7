import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"


@pytest.fixture(scope="session")
def fixtures() -> pathlib.Path:
    return FIXTURES


@pytest.fixture(scope="session")
def cli_json():
    """The CLI's JSON report of an incident (the binary `cargo build` made)."""
    import subprocess

    binary = ROOT / "target" / "debug" / "rollproof"

    def run(incident, *args):
        out = subprocess.run(
            [str(binary), "audit", str(incident), "--format", "json", *args],
            capture_output=True,
            text=True,
        )
        assert out.returncode in (0, 1, 3), out.stderr
        return out.stdout

    if not binary.exists():
        pytest.skip("build the CLI first (cargo build)")
    return run


@pytest.fixture(scope="session")
def spark():
    pyspark = pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("rollproof-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def validate():
    """Validates a report against the project's JSON Schema (docs/reference/report.schema.json)."""
    import json

    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "docs" / "reference" / "report.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)

    def check(report):
        errors = sorted(validator.iter_errors(report), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])

    return check
