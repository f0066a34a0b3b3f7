#!/usr/bin/env python3
"""Checks that rollproof's JSON report and the DuckDB reference agree on the figures both compute.

Counts must be equal; quantiles (and ratios and drifts built from them) within the contract's 1%;
rates and means within 1e-9. Exits 1 on any disagreement.
"""
import json
import sys


def close(key, want, got):
    if isinstance(want, bool) or not isinstance(want, (int, float)) or not isinstance(got, (int, float)):
        return want == got
    if isinstance(want, int) and not key.endswith(("_ms", "_p95")):
        return want == got
    if key.endswith(("_ms", "_p95", "_ratio")):
        return abs(want - got) <= abs(want) * 0.01
    if key.endswith("_drift"):
        return abs(want - got) <= 0.01
    return abs(want - got) <= 1e-9


def main(reference_path, report_path):
    reference = json.load(open(reference_path))
    report = json.load(open(report_path))
    metrics = {c["id"]: c["metrics"] for c in report["checks"]}
    # The impact section, flattened as the reference writes it: `{window}_{figure}`, and the
    # incident's first minute relative to the flip.
    impact = report.get("impact") or {}
    metrics["impact"] = {
        f"{w['name']}_{k}": v for w in impact.get("windows", []) for k, v in w.items() if k not in ("name", "start", "end", "error_rate")
    }
    for w in impact.get("windows", []):
        if w["name"] == "incident":
            from datetime import datetime
            at = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
            metrics["impact"]["incident_start_minute"] = int((at(w["start"]) - at(w["end"])).total_seconds() // 60)
    metrics["impact"].setdefault("incident_start_minute", None)
    compared, bad = 0, 0
    for check, figures in reference.items():
        for key, want in figures.items():
            got = metrics.get(check, {}).get(key)
            compared += 1
            if not close(key, want, got):
                bad += 1
                print(f"DISAGREE {check}.{key}: duckdb {want!r}, rollproof {got!r}")
    print(f"{compared} figures compared, {bad} disagreements")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
