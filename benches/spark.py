#!/usr/bin/env python3
"""Scale-out costs on one machine, measured in one run: the CLI's audit, plan/partial/merge through
the CLI, and `rollproof.spark.audit` in units mode and in arrow (mapInArrow) mode, on the same
data. Prints wall and CPU seconds (this process and its children, Spark's JVM included) and the
partial sizes.

    python3 -m venv /tmp/rp && /tmp/rp/bin/pip install ./python pyspark==4.3.0 "pandas<3" pyarrow
    cargo build --release
    /tmp/rp/bin/python benches/spark.py bench-data/10m

Every report is checked against the CLI's (figures identical; in arrow mode `inputs` name the
DataFrame instead of the files).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(ROOT, "target", "release", "rollproof")


def cpu():
    """CPU seconds of this process and every live descendant (Spark's JVM and its Python
    workers), each with the CPU of the children it has reaped: /proc, since the JVM outlives
    every measured step and getrusage counts only reaped children."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command name: state, ppid, …; utime, stime, cutime, cstime are fields 14–17.
        stats[int(pid)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    tree = {os.getpid()}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _) in stats.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sum(stats[p][1] for p in tree if p in stats) / tick


def timed(label, fn, results):
    w0, c0 = time.perf_counter(), cpu()
    out = fn()
    w, c = time.perf_counter() - w0, cpu() - c0
    results.append((label, w, c))
    print(f"{label:<44} wall {w:7.2f} s   cpu {c:7.2f} s", flush=True)
    return out


def strip(report):
    return {k: v for k, v in report.items() if k != "inputs"}


def main():
    data = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "bench-data/10m")
    incident = os.path.join(data, "incident.toml")
    results = []

    def cli_audit():
        out = subprocess.run([CLI, "audit", incident, "--format", "json", "-q"], capture_output=True, text=True)
        return json.loads(out.stdout)

    expected = timed("CLI audit", cli_audit, results)

    with tempfile.TemporaryDirectory() as tmp:

        def cli_sharded():
            plan = json.loads(subprocess.run([CLI, "plan", incident], capture_output=True, text=True, check=True).stdout)
            ids = [u["id"] for u in plan["units"]]
            receipts = [u for u in ids if u.startswith("receipts:")]
            requests = [u for u in ids if not u.startswith("receipts:")]
            parts = []
            for i, u in enumerate(receipts):
                p = os.path.join(tmp, f"rec-{i}.rpp")
                subprocess.run([CLI, "partial", incident, "-q", "--unit", u, "-o", p], check=True)
                parts.append(p)
            combined = os.path.join(tmp, "receipts.rpp")
            subprocess.run([CLI, "merge", incident, *parts, "--partial-out", combined, "-q"], check=True)
            for i, u in enumerate(requests):
                p = os.path.join(tmp, f"req-{i}.rpp")
                subprocess.run(
                    [CLI, "partial", incident, "-q", "--receipts-from", combined, "--unit", u, "-o", p], check=True
                )
                parts.append(p)
            out = subprocess.run([CLI, "merge", incident, *parts, "--format", "json", "-q"], capture_output=True, text=True)
            sizes = [os.path.getsize(p) for p in parts]
            return json.loads(out.stdout), len(parts), sizes

        got, n, sizes = timed("CLI plan + partial per unit + merge", cli_sharded, results)
        assert got == expected, "sharded CLI report differs"
        print(f"  {n} partials, {sum(sizes) / 1e6:.1f} MB in all, largest {max(sizes) / 1e3:.0f} KB")

    from pyspark.sql import SparkSession

    import rollproof
    from rollproof import spark as rspark

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = timed(
        "Spark session start (local[2])",
        lambda: SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "4g")
        .getOrCreate(),
        results,
    )
    spark.sparkContext.setLogLevel("ERROR")
    got = timed("rollproof.audit (in-process)", lambda: rollproof.audit(incident), results)
    assert got == expected
    got = timed("spark.audit units mode", lambda: rspark.audit(spark, incident), results)
    assert got == expected
    got = timed(
        "spark.audit units mode, 16 key ranges (a task per range)",
        lambda: rspark.audit(spark, incident, key_partitions=16),
        results,
    )
    assert got == expected
    requests = spark.read.parquet(os.path.join(data, "requests.parquet"))
    receipts = spark.read.parquet(os.path.join(data, "receipts.parquet"))
    got = timed(
        "spark.audit arrow mode (mapInArrow)",
        lambda: rspark.audit(spark, incident, requests, receipts, mode="arrow"),
        results,
    )
    assert strip(got) == strip(expected)
    timed("Spark alone: count() of the requests", lambda: requests.count(), results)
    spark.stop()


if __name__ == "__main__":
    main()
