#!/usr/bin/env bash
# The Python package's tests: builds rollproof._native into a virtualenv with maturin (development
# profile, sharing the workspace's target/), then runs pytest, PySpark in local[2] included.
# Needs Java 17+ for Spark (`apt-get install openjdk-17-jre-headless` where it is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${ROLLPROOF_VENV:-target/python-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r python/requirements-test.txt
# The CLI binary the tests compare against.
cargo build --locked --quiet --bin rollproof
(cd python && VIRTUAL_ENV="$PWD/../$venv" PATH="$PWD/../$venv/bin:$PATH" maturin develop --locked --quiet)
export PYSPARK_PYTHON="$PWD/$venv/bin/python"
"$venv/bin/python" -m pytest -q python/tests "$@"
