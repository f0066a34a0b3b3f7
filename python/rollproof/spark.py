"""The audit on Spark: the executors fold, the driver merges.

Two ways to hand the rows to rollproof, chosen by `mode`:

- **units** (file inputs: the incident's own, or DataFrames that are plain scans of Parquet or
  other files): the driver plans the units of work (file, Parquet row group) and Spark schedules
  them; each task reads its units with rollproof's own reader, in-process, and returns a partial
  state of a few kilobytes. Spark never decodes the rows.
- **arrow** (any DataFrame: Delta, Iceberg, a SQL query): `DataFrame.mapInArrow` hands each
  partition's Arrow batches to rollproof, which folds them; Spark decodes the rows first, which
  costs several times the audit (see docs/scale-out.md for the figures).

Either way the driver merges the partials and returns the same report as `rollproof.audit` over
the same rows. The incident file (and the mapping, gold and captured-state files it names) must be
readable at the same path on the driver and on every executor: shared storage, or `local[*]`.
"""

from __future__ import annotations

import os
import tempfile
from typing import List, Optional, Sequence

from . import _inputs, _native, _report

__all__ = ["audit", "units_of"]


def _local(path: str) -> str:
    """Spark names local files `file:/…` or `file:///…`; rollproof wants a path."""
    if path.startswith("file://"):
        return path[len("file://") :]
    if path.startswith("file:"):
        return path[len("file:") :]
    return path


def units_of(df) -> Optional[List[str]]:
    """The files a DataFrame scans when it is a plain scan of them (no filter, projection or join
    that would change its rows), else None."""
    try:
        files = list(df.inputFiles())
    except Exception:  # noqa: BLE001 - not a file-based DataFrame
        return None
    if not files:
        return None
    plan = df._jdf.queryExecution().optimizedPlan()
    # A bare relation: the rows are exactly the files'.
    if plan.getClass().getSimpleName() != "LogicalRelation":
        return None
    return sorted(_local(f) for f in files)


def audit(
    spark,
    incident: str,
    requests=None,
    receipts=None,
    *,
    mode: str = "auto",
    mapping: Optional[str] = None,
    thresholds=None,
    units_per_task: int = 1,
    series: bool = False,
    key_partitions: int = 1,
) -> dict:
    """Audits on Spark; returns the JSON report as `rollproof.audit` does.

    `requests`/`receipts`: DataFrames, or None for the incident file's own inputs. `mode`:
    `units`, `arrow` or `auto` (units when every DataFrame given is a plain file scan).
    `key_partitions` (units mode): above 1, the states that grow with a key (users, idempotency
    keys, request ids) are shuffled by key range and finished by one Spark task per range, so
    that only small results reach the driver.
    """
    incident = os.fspath(incident)
    frames = [df for df in (requests, receipts) if df is not None]
    if mode == "auto":
        mode = "units" if all(units_of(df) is not None for df in frames) else "arrow"
    if mode == "units":
        files_req = units_of(requests) if requests is not None else None
        files_rec = units_of(receipts) if receipts is not None else None
        if (requests is not None and files_req is None) or (receipts is not None and files_rec is None):
            raise ValueError("mode='units' needs DataFrames that are plain file scans; use mode='arrow'")
        if key_partitions > 1:
            return _audit_key_ranges(
                spark, incident, files_req, files_rec, mapping, thresholds, units_per_task, series, key_partitions
            )
        return _audit_units(spark, incident, files_req, files_rec, mapping, thresholds, units_per_task, series)
    if key_partitions > 1:
        raise ValueError("key_partitions needs mode='units'")
    if mode == "arrow":
        if requests is None:
            raise ValueError("mode='arrow' needs the requests DataFrame")
        return _audit_arrow(spark, incident, requests, receipts, mapping, thresholds, series)
    raise ValueError(f"mode {mode!r}: expected 'units', 'arrow' or 'auto'")


def _audit_units(spark, incident, requests, receipts, mapping, thresholds, units_per_task, series) -> dict:
    inputs = _inputs(requests, receipts, mapping, thresholds)
    import json

    plan = json.loads(_native.plan(incident, **inputs))
    ids = [u["id"] for u in plan["units"]]
    sc = spark.sparkContext
    step = max(1, units_per_task)

    def groups(of):
        return [of[i : i + step] for i in range(0, len(of), step)]

    def fold_all(of, receipts_from=None):
        if not of:
            return []
        prior = sc.broadcast(receipts_from) if receipts_from is not None else None

        def fold(group):
            from rollproof import _native as native

            return native.partial(
                incident, group, threads=1, receipts_from=prior.value if prior is not None else None, **inputs
            )

        return sc.parallelize(groups(of), len(groups(of))).map(fold).collect()

    # The receipts first: their combined state lets each requests task keep only the request ids
    # the receipts name, so that a partial stays small however many requests it folds.
    receipt_ids = [u for u in ids if u.startswith("receipts:")]
    request_ids = [u for u in ids if not u.startswith("receipts:")]
    parts = fold_all(receipt_ids)
    combined = _native.combine(incident, parts, **inputs) if parts else None
    parts += fold_all(request_ids, combined)
    # The sample look-ups are read by the driver (a targeted pass over the units that hold them).
    return _report(_native.merge(incident, parts, series=series, **inputs), series)


def _audit_key_ranges(
    spark, incident, requests, receipts, mapping, thresholds, units_per_task, series, ranges
) -> dict:
    # One stage folds every unit (each partial writes its keyed states as `ranges` key ranges),
    # a shuffle by range brings each range's pieces to one task, which finishes it; the driver
    # gets the partials without their key ranges and one small finished state per range.
    inputs = _inputs(requests, receipts, mapping, thresholds)
    import json

    plan = json.loads(_native.plan(incident, **inputs))
    ids = [u["id"] for u in plan["units"]]
    step = max(1, units_per_task)
    groups = [ids[i : i + step] for i in range(0, len(ids), step)]
    sc = spark.sparkContext

    def fold(group):
        from rollproof import _native as native

        part = native.partial(incident, group, threads=1, key_partitions=ranges, **inputs)
        return native.split_key_ranges(incident, part, **inputs)

    def finish(keyed):
        from rollproof import _native as native

        r, pieces = keyed
        return native.finish_key_range(incident, list(pieces), r, ranges, **inputs)

    split = sc.parallelize(groups, len(groups)).map(fold).cache()
    try:
        rests = split.map(lambda s: s[0]).collect()
        finished = (
            split.flatMap(lambda s: list(enumerate(s[1]))).groupByKey(ranges).map(finish).collect()
        )
    finally:
        split.unpersist()
    return _report(_native.merge(incident, rests + finished, series=series, **inputs), series)


def _schema_bytes(spark, df) -> bytes:
    """The DataFrame's Arrow schema as mapInArrow hands its batches over, in a zero-row IPC file."""
    import inspect

    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    conf = spark.conf
    accepted = inspect.signature(to_arrow_schema).parameters
    kwargs = {}
    if "timezone" in accepted:
        kwargs["timezone"] = conf.get("spark.sql.session.timeZone", "UTC")
    if "prefers_large_types" in accepted:
        large = conf.get("spark.sql.execution.arrow.useLargeVarTypes", "false")
        kwargs["prefers_large_types"] = str(large).lower() == "true"
    schema = to_arrow_schema(df.schema, **kwargs)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, schema) as writer:
        writer.write_table(schema.empty_table())
    return sink.getvalue().to_pybytes()


def _write(dirname: str, name: str, data: bytes) -> str:
    path = os.path.join(dirname, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _audit_arrow(spark, incident, requests, receipts, mapping, thresholds, series) -> dict:
    from pyspark.sql.types import BinaryType, StructField, StructType

    schema_req = _schema_bytes(spark, requests)
    schema_rec = _schema_bytes(spark, receipts) if receipts is not None else None
    tables = [("requests", requests)] + ([("receipts", receipts)] if receipts is not None else [])
    expected: List[str] = []
    for name, df in tables:
        expected += [f"{name}:dataframe#{i}" for i in range(df.rdd.getNumPartitions())]
    mapping = os.fspath(mapping) if mapping is not None else None
    from . import _thresholds

    pairs = _thresholds(thresholds)
    out_schema = StructType([StructField("part", BinaryType(), False)])

    def fold_table(name, df, samples_from: Optional[bytes], receipts_from: Optional[bytes] = None) -> List[bytes]:
        def fold(batches):
            import pyarrow as pa
            from pyspark import TaskContext

            from rollproof import _native as native

            pid = TaskContext.get().partitionId()
            with tempfile.TemporaryDirectory(prefix="rollproof-") as tmp:
                req = _write(tmp, "requests-schema.arrow", schema_req)
                rec = _write(tmp, "receipts-schema.arrow", schema_rec) if schema_rec is not None else None
                path = os.path.join(tmp, f"{name}-{pid}.arrow")
                first = None
                writer = None
                with open(path, "wb") as sink:
                    for batch in batches:
                        if writer is None:
                            first = batch.schema
                            writer = pa.ipc.new_file(sink, first)
                        writer.write_batch(batch)
                    if writer is None:
                        # An empty partition still counts as its unit.
                        sink.write(schema_req if name == "requests" else schema_rec)
                    else:
                        writer.close()
                part = native.partial_frame(
                    incident,
                    name,
                    path,
                    f"{name}:dataframe#{pid}",
                    expected,
                    req,
                    rec,
                    mapping=mapping,
                    thresholds=pairs,
                    samples_from=samples_from,
                    receipts_from=receipts_from,
                )
            yield pa.RecordBatch.from_pydict({"part": [part]}, schema=pa.schema([("part", pa.binary(), False)]))

        return [row["part"] for row in df.mapInArrow(fold, out_schema).collect()]

    with tempfile.TemporaryDirectory(prefix="rollproof-driver-") as tmp:
        req = _write(tmp, "requests-schema.arrow", schema_req)
        rec = _write(tmp, "receipts-schema.arrow", schema_rec) if schema_rec is not None else None
        common = dict(mapping=mapping, thresholds=pairs)
        # The receipts first, so that the requests' partials keep only the ids they name.
        parts: List[bytes] = []
        receipts_state = None
        if receipts is not None:
            parts += fold_table("receipts", receipts, None)
            receipts_state = _native.combine_frames(incident, parts, expected, req, rec, **common)
        parts += fold_table("requests", requests, None, receipts_state)
        combined = _native.combine_frames(incident, parts, expected, req, rec, **common)
        merged: List[bytes] = [combined]
        if _native.frames_need_samples(incident, combined, req, rec, **common):
            # The second round: each partition looks up the targets all shards found.
            for name, df in tables:
                merged += fold_table(name, df, combined)
        sources = []
        for name, df in tables:
            files = units_of(df)
            try:
                known = sorted(_local(f) for f in df.inputFiles())
            except Exception:  # noqa: BLE001
                known = []
            sources.append((name, "Spark DataFrame" if files is None else "Spark DataFrame (file scan)", known))
        rendered = _native.merge_frames(incident, merged, expected, sources, req, rec, series=series, **common)
    return _report(rendered, series)
