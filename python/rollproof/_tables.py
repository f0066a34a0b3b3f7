"""The report's tables as polars DataFrames, for the postmortem notebook."""

from __future__ import annotations

import json
from typing import Dict


def _text(v):
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, sort_keys=True)


def _number(v):
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    return None


def tables_of(report: dict) -> Dict[str, "object"]:
    """`checks`, `metrics`, `breakdowns`, `by_region`, `inputs`, `impact_windows`, one
    `samples.CHECK` per check with samples, and — when the report was made with `series=True` —
    `per_minute`, `canary_per_minute`, `regions` and `region_pins`."""
    import polars as pl

    out: Dict[str, pl.DataFrame] = {}
    checks = report.get("checks", [])
    out["checks"] = pl.DataFrame(
        {
            "check": [c["id"] for c in checks],
            "title": [c["title"] for c in checks],
            "status": [c["status"] for c in checks],
            "summary": [c.get("summary") for c in checks],
            "observed": [_text(c.get("observed")) for c in checks],
            "baseline": [_text(c.get("baseline")) for c in checks],
            "threshold": [_text(c.get("threshold")) for c in checks],
        },
        schema={k: pl.Utf8 for k in ["check", "title", "status", "summary", "observed", "baseline", "threshold"]},
    )
    m_check, m_name, m_value, m_text = [], [], [], []
    b_check, b_metric, b_key, b_value, b_text = [], [], [], [], []
    for c in checks:
        for name, v in sorted(c.get("metrics", {}).items()):
            m_check.append(c["id"])
            m_name.append(name)
            m_value.append(_number(v))
            m_text.append(None if _number(v) is not None else _text(v))
            if isinstance(v, dict):
                for key, x in sorted(v.items()):
                    b_check.append(c["id"])
                    b_metric.append(name)
                    b_key.append(key)
                    b_value.append(_number(x))
                    b_text.append(None if _number(x) is not None else _text(x))
    out["metrics"] = pl.DataFrame(
        {"check": m_check, "metric": m_name, "value": m_value, "text": m_text},
        schema={"check": pl.Utf8, "metric": pl.Utf8, "value": pl.Float64, "text": pl.Utf8},
    )
    breakdowns = pl.DataFrame(
        {"check": b_check, "metric": b_metric, "key": b_key, "value": b_value, "text": b_text},
        schema={"check": pl.Utf8, "metric": pl.Utf8, "key": pl.Utf8, "value": pl.Float64, "text": pl.Utf8},
    )
    out["breakdowns"] = breakdowns
    out["by_region"] = breakdowns.filter(pl.col("metric").str.contains("region")).rename({"key": "region"})
    out["inputs"] = pl.from_dicts(report.get("inputs", []), infer_schema_length=None) if report.get("inputs") else pl.DataFrame()
    impact = report.get("impact") or {}
    out["impact_windows"] = (
        pl.from_dicts(impact["windows"], infer_schema_length=None) if impact.get("windows") else pl.DataFrame()
    )
    for c in checks:
        if c.get("samples"):
            rows = [{k: (v if not isinstance(v, (list, dict)) else _text(v)) for k, v in s.items()} for s in c["samples"]]
            out[f"samples.{c['id']}"] = pl.from_dicts(rows, infer_schema_length=None)
    series = report.get("series")
    if series:
        out["per_minute"] = pl.from_dicts(series["points"], infer_schema_length=None) if series["points"] else pl.DataFrame()
        out["canary_per_minute"] = (
            pl.from_dicts(series["canary_points"], infer_schema_length=None) if series["canary_points"] else pl.DataFrame()
        )
        region_rows = []
        sides = ("baseline", "canary") if report.get("mode") == "canary" else ("baseline", "post")
        for region, figures in series["regions"]:
            for side, f in zip(sides, figures):
                region_rows.append({"region": region, "side": side, **f})
        out["regions"] = pl.from_dicts(region_rows, infer_schema_length=None) if region_rows else pl.DataFrame()
        pin_rows = []
        minutes = [p["minute"] for p in series["points"]]
        for rp in series["region_pins"]:
            for minute, share in zip(minutes, rp["shares"]):
                pin_rows.append(
                    {"region": rp["region"], "flip_minute": rp["flip_minute"], "minute": minute, "pins_ok_share": share}
                )
        out["region_pins"] = pl.from_dicts(pin_rows, infer_schema_length=None) if pin_rows else pl.DataFrame()
    return out


def violations(incident, **kwargs) -> Dict[str, "object"]:
    """Every row behind the findings of the failing and warning checks (`--evidence-dir`), as
    polars DataFrames keyed `CHECK.KIND`."""
    import os
    import tempfile

    import polars as pl

    from . import _inputs, _native

    with tempfile.TemporaryDirectory(prefix="rollproof-evidence-") as tmp:
        threads = kwargs.pop("threads", None)
        _native.audit(os.fspath(incident), threads=threads, evidence_dir=tmp, **_inputs(**{
            k: kwargs.get(k) for k in ("requests", "receipts", "mapping", "thresholds")
        }))
        with open(os.path.join(tmp, "index.json")) as f:
            index = json.load(f)
        out = {}
        for entry in index["evidence"]:
            key = f"{entry['check']}.{entry['kind']}"
            if entry["file"]:
                out[key] = pl.read_parquet(os.path.join(tmp, entry["file"]))
            else:
                out[key] = pl.DataFrame()
        return out
