"""rollproof: audit a rollback (or gate a canary) from request logs and side-effect receipts.

The same engine as the `rollproof` command line, in-process:

>>> import rollproof
>>> report = rollproof.audit("incident.toml")          # the JSON report, as a dict
>>> report["verdict"], report["exit_code"]

Past one machine, `rollproof.spark.audit(spark, "incident.toml", ...)` folds the inputs on the
Spark executors and merges the partial states on the driver; `rollproof.tables(report)` gives the
report's tables as polars DataFrames.
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Mapping, Optional, Sequence, Union

from . import _native
from ._native import InputError, __version__

__all__ = [
    "InputError",
    "__version__",
    "audit",
    "render",
    "plan",
    "partial",
    "merge",
    "combine",
    "tables",
    "violations",
]

PathLike = Union[str, "os.PathLike[str]"]


def _paths(values: Optional[Iterable[PathLike]]) -> Optional[list]:
    if values is None:
        return None
    if isinstance(values, (str, os.PathLike)):
        values = [values]
    return [os.fspath(v) for v in values]


def _thresholds(values: Optional[Mapping[str, object]]) -> Optional[list]:
    """`{"p95_latency_ratio_max": 1.2}` → the CLI's `--threshold KEY=VALUE` pairs, sorted."""
    if not values:
        return None
    return sorted((str(k), str(v)) for k, v in values.items())


def _inputs(requests, receipts, mapping, thresholds) -> dict:
    return dict(
        requests=_paths(requests),
        receipts=_paths(receipts),
        mapping=os.fspath(mapping) if mapping is not None else None,
        thresholds=_thresholds(thresholds),
    )


def _report(rendered, series: bool) -> dict:
    text, timeline = rendered
    report = json.loads(text)
    if series and timeline is not None:
        # Not part of the JSON report: the per-minute series the HTML charts draw.
        report["series"] = json.loads(timeline)
    return report


def audit(
    incident: PathLike,
    *,
    requests: Optional[Iterable[PathLike]] = None,
    receipts: Optional[Iterable[PathLike]] = None,
    mapping: Optional[PathLike] = None,
    thresholds: Optional[Mapping[str, object]] = None,
    threads: Optional[int] = None,
    series: bool = False,
) -> dict:
    """Audits the incident; returns the JSON report (as `rollproof audit --format json` writes it).

    `requests`/`receipts`/`mapping`/`thresholds` replace the incident file's as the CLI's options
    do. With `series=True` the dict also holds `"series"`: the per-minute figures (for
    `tables()`). Raises `InputError` (the CLI's exit 2) with every problem of the inputs.
    """
    rendered = _native.audit(
        os.fspath(incident),
        threads=threads,
        series=series,
        **_inputs(requests, receipts, mapping, thresholds),
    )
    return _report(rendered, series)


def render(
    incident: PathLike,
    format: str = "html",
    *,
    requests=None,
    receipts=None,
    mapping=None,
    thresholds=None,
    threads: Optional[int] = None,
) -> str:
    """Audits the incident and renders the report: `text`, `markdown`, `junit`, `html` or `json`."""
    text, _ = _native.audit(
        os.fspath(incident),
        threads=threads,
        format=format,
        **_inputs(requests, receipts, mapping, thresholds),
    )
    return text


def plan(incident: PathLike, *, requests=None, receipts=None, mapping=None, thresholds=None) -> dict:
    """The units of work of the incident's inputs (`rollproof plan`)."""
    return json.loads(
        _native.plan(os.fspath(incident), **_inputs(requests, receipts, mapping, thresholds))
    )


def partial(
    incident: PathLike,
    units: Sequence[str],
    *,
    requests=None,
    receipts=None,
    mapping=None,
    thresholds=None,
    samples_from: Optional[bytes] = None,
    threads: Optional[int] = None,
    key_partitions: int = 1,
) -> bytes:
    """Folds the given units (ids from `plan`) into a partial state (`rollproof partial`).

    `key_partitions`: write the states that grow with a key as that many key ranges."""
    return _native.partial(
        os.fspath(incident),
        list(units),
        samples_from=samples_from,
        threads=threads,
        key_partitions=key_partitions,
        **_inputs(requests, receipts, mapping, thresholds),
    )


def merge(
    incident: PathLike,
    parts: Sequence[bytes],
    *,
    requests=None,
    receipts=None,
    mapping=None,
    thresholds=None,
    threads: Optional[int] = None,
    series: bool = False,
    key_partitions: Optional[int] = None,
) -> dict:
    """Merges partial states into the report of one audit over the same inputs (`rollproof merge`).

    `parts` may include finished key ranges (`finish_key_range`); `key_partitions`: finish the
    keyed states that many key ranges at a time (default: as the partials were written)."""
    rendered = _native.merge(
        os.fspath(incident),
        [bytes(p) for p in parts],
        threads=threads,
        series=series,
        key_partitions=key_partitions,
        **_inputs(requests, receipts, mapping, thresholds),
    )
    return _report(rendered, series)


def combine(
    incident: PathLike, parts: Sequence[bytes], *, requests=None, receipts=None, mapping=None, thresholds=None
) -> bytes:
    """Merges partial states into one partial (`rollproof merge --partial-out`)."""
    return _native.combine(
        os.fspath(incident),
        [bytes(p) for p in parts],
        **_inputs(requests, receipts, mapping, thresholds),
    )


def split_key_ranges(
    incident: PathLike, part: bytes, *, requests=None, receipts=None, mapping=None, thresholds=None
) -> tuple:
    """A partial written with key ranges, as (the partial without them, [one piece per range])."""
    return _native.split_key_ranges(
        os.fspath(incident), bytes(part), **_inputs(requests, receipts, mapping, thresholds)
    )


def finish_key_range(
    incident: PathLike,
    parts: Sequence[bytes],
    range: int,
    ranges: int,
    *,
    requests=None,
    receipts=None,
    mapping=None,
    thresholds=None,
) -> bytes:
    """Key range `range` of `ranges`, finished over partials or pieces of every unit
    (`rollproof merge --key-range`); `merge` takes it beside the partials without their ranges."""
    return _native.finish_key_range(
        os.fspath(incident),
        [bytes(p) for p in parts],
        range,
        ranges,
        **_inputs(requests, receipts, mapping, thresholds),
    )


def tables(report: dict) -> dict:
    """The report's tables as polars DataFrames (see `rollproof.tables_of`)."""
    from ._tables import tables_of

    return tables_of(report)


def violations(
    incident: PathLike,
    *,
    requests=None,
    receipts=None,
    mapping=None,
    thresholds=None,
    threads: Optional[int] = None,
) -> dict:
    """Every row behind the findings of failing and warning checks, as polars DataFrames keyed
    `CHECK.KIND` (the files `rollproof audit --evidence-dir` writes)."""
    from ._tables import violations as _violations

    return _violations(
        incident, requests=requests, receipts=receipts, mapping=mapping, thresholds=thresholds, threads=threads
    )
