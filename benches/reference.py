#!/usr/bin/env python3
"""The same audit figures in DuckDB SQL: the hand-written alternative rollproof is measured against.

Used only by the benchmark (benches/compare.sh), never by the product. Reads an incident folder
written by `rollproof-gen bench` (requests.parquet, receipts.parquet; the bench incident's windows
and pins are fixed below) and prints the figures as JSON: {check: {metric: value}}.
"""
import json
import sys

import duckdb

FLIP = "2026-11-27 10:15:00+00"
BASELINE = ("2026-11-27 08:30:00+00", "2026-11-27 09:00:00+00")
POST = ("2026-11-27 10:25:00+00", "2026-11-27 11:00:00+00")
FREEZE = ("2026-11-27 10:10:00+00", "2026-11-27 10:40:00+00")
PINS = {"build_id": "b-1041", "git_sha": "9f2c1e0", "model_ver": "m-2026-10", "prompt_ver": "p-6", "index_hash": "ih-a41f"}
NAMESPACE = "ns:ih-a41f:p-6"
ERROR_RATE_MAX = 0.005


def main(folder):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    req = f"read_parquet('{folder}/requests.parquet')"
    rec = f"read_parquet('{folder}/receipts.parquet')"
    wrong = {p: f"coalesce({p}, '') <> '{v}'" for p, v in PINS.items()}
    any_wrong = " OR ".join(f"({w})" for w in wrong.values())
    any_missing = " OR ".join(f"coalesce({p}, '') = ''" for p in PINS)
    out = {}

    # pins, cache, window error shares: one scan.
    row = con.execute(f"""
        SELECT
          count(*) FILTER (WHERE ts >= '{FLIP}'),
          count(*) FILTER (WHERE ts >= '{FLIP}' AND ({any_wrong})),
          count(*) FILTER (WHERE ts >= '{FLIP}' AND ({any_missing})),
          {", ".join(f"count(*) FILTER (WHERE ts >= '{FLIP}' AND {w})" for w in wrong.values())},
          count(*) FILTER (WHERE ts >= '{FLIP}' AND cache_hit),
          count(*) FILTER (WHERE ts >= '{FLIP}' AND cache_hit AND coalesce(cache_ns, '') <> '{NAMESPACE}'),
          max(ts) FILTER (WHERE ts >= '{FLIP}' AND cache_hit AND coalesce(cache_ns, '') <> '{NAMESPACE}'),
          avg(CASE WHEN status >= 500 OR status = 429 THEN 1.0 ELSE 0.0 END) FILTER (WHERE ts >= '{BASELINE[0]}' AND ts < '{BASELINE[1]}' AND status IS NOT NULL),
          avg(CASE WHEN status >= 500 OR status = 429 THEN 1.0 ELSE 0.0 END) FILTER (WHERE ts >= '{POST[0]}' AND ts < '{POST[1]}' AND status IS NOT NULL)
        FROM {req}""").fetchone()
    checked, violations, missing = row[0], row[1], row[2]
    by_pin = {p: n for p, n in zip(PINS, row[3:3 + len(PINS)]) if n}
    hits, stale, last_stale, base_err, post_err = row[3 + len(PINS):]
    by_region = dict(con.execute(f"SELECT region, count(*) FROM {req} WHERE ts >= '{FLIP}' AND ({any_wrong}) GROUP BY region ORDER BY region").fetchall())
    out["pins"] = {"requests_checked": checked, "violations": violations, "missing": missing, "by_pin": by_pin, "by_region": by_region}
    out["cache_rotation"] = {
        "hits_checked": hits,
        "stale_hits": stale,
        "last_stale_at": last_stale.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" if last_stale else None,
    }

    users = con.execute(f"""
        SELECT count(*), count(*) FILTER (WHERE tuples > 1) FROM (
          SELECT user_id, count(DISTINCT ({" || '|' || ".join(f"coalesce({p}, '')" for p in PINS)})) AS tuples
          FROM {req} WHERE ts >= '{FLIP}' AND coalesce(user_id, '') <> '' GROUP BY user_id)""").fetchone()
    out["mixed_versions"] = {"users_checked": users[0], "users_mixed": users[1]}

    minutes = con.execute(f"""
        SELECT CAST(floor(epoch_ms(ts - TIMESTAMPTZ '{FLIP}') / 60000.0) AS BIGINT) AS k,
               avg(CASE WHEN status >= 500 OR status = 429 THEN 1.0 ELSE 0.0 END) AS rate
        FROM {req} WHERE ts >= '{FLIP}' AND status IS NOT NULL GROUP BY k ORDER BY k""").fetchall()
    recovery = None
    for i, (k, _) in enumerate(minutes):
        if all(rate < ERROR_RATE_MAX for _, rate in minutes[i:]):
            recovery = 0 if i == 0 else minutes[i - 1][0] + 1
            break
    out["error_recovery"] = {"recovery_minutes": recovery, "baseline_error_rate": base_err, "post_error_rate": post_err}

    q = con.execute(f"""
        SELECT
          quantile_disc(latency_ms, [0.5, 0.95, 0.99]) FILTER (WHERE ts >= '{BASELINE[0]}' AND ts < '{BASELINE[1]}'),
          quantile_disc(latency_ms, [0.5, 0.95, 0.99]) FILTER (WHERE ts >= '{POST[0]}' AND ts < '{POST[1]}'),
          quantile_disc(delta_s, 0.95) FILTER (WHERE ts >= '{BASELINE[0]}' AND ts < '{BASELINE[1]}'),
          quantile_disc(delta_s, 0.95) FILTER (WHERE ts >= '{POST[0]}' AND ts < '{POST[1]}'),
          avg(coverage) FILTER (WHERE ts >= '{BASELINE[0]}' AND ts < '{BASELINE[1]}'),
          avg(coverage) FILTER (WHERE ts >= '{POST[0]}' AND ts < '{POST[1]}'),
          avg(CASE WHEN lambda_state <> 'convergent' THEN 1.0 ELSE 0.0 END) FILTER (WHERE ts >= '{BASELINE[0]}' AND ts < '{BASELINE[1]}' AND lambda_state IS NOT NULL),
          avg(CASE WHEN lambda_state <> 'convergent' THEN 1.0 ELSE 0.0 END) FILTER (WHERE ts >= '{POST[0]}' AND ts < '{POST[1]}' AND lambda_state IS NOT NULL)
        FROM {req}""").fetchone()
    (bl, pl, bds, pds, bcov, pcov, blam, plam) = q
    out["latency"] = {
        "baseline_p50_ms": bl[0], "baseline_p95_ms": bl[1], "baseline_p99_ms": bl[2],
        "post_p50_ms": pl[0], "post_p95_ms": pl[1], "post_p99_ms": pl[2],
        "p95_ratio": pl[1] / bl[1],
    }
    out["quality"] = {
        "baseline_delta_s_p95": bds, "post_delta_s_p95": pds, "delta_s_p95_drift": pds - bds,
        "baseline_coverage_mean": bcov, "post_coverage_mean": pcov,
        "baseline_lambda_flip_rate": blam, "post_lambda_flip_rate": plam,
    }

    execution = "(decision IS NULL OR decision = '' OR lower(decision) = 'new')"
    d = con.execute(f"""
        WITH e AS (SELECT * FROM {rec} WHERE {execution}),
        k AS (SELECT idempotency_key, count(*) AS n, count(DISTINCT writer_id) AS w FROM e GROUP BY idempotency_key)
        SELECT (SELECT count(*) FROM e),
               (SELECT count(*) FROM {rec} WHERE NOT {execution}),
               count(*) FILTER (WHERE n > 1), coalesce(sum(n - 1), 0), count(*) FILTER (WHERE w > 1)
        FROM k""").fetchone()
    out["duplicate_effects"] = {
        "executions": d[0], "dedupe_hits": d[1], "duplicate_keys": d[2], "extra_executions": int(d[3]), "multi_writer_keys": d[4],
    }
    w = con.execute(f"""
        SELECT
          (SELECT count(*) FROM {rec} WHERE {execution} AND ts >= '{FREEZE[0]}' AND ts < '{FREEZE[1]}'),
          (SELECT count(*) FROM (
             SELECT idempotency_key FROM {rec}
             WHERE {execution} AND ts BETWEEN TIMESTAMPTZ '{FLIP}' - INTERVAL 60 SECOND AND TIMESTAMPTZ '{FLIP}' + INTERVAL 60 SECOND
             GROUP BY idempotency_key HAVING count(DISTINCT writer_id) > 1))""").fetchone()
    out["writer_freeze"] = {"writes_during_freeze": w[0], "two_writer_effects": w[1]}
    r = con.execute(f"""
        SELECT count(*) FILTER (WHERE q.request_id IS NULL),
               count(*) FILTER (WHERE {execution.replace('decision', 'c.decision')} AND (q.status >= 500 OR q.status = 429))
        FROM {rec} c LEFT JOIN (SELECT request_id, status FROM {req}) q ON c.request_id = q.request_id""").fetchone()
    out["reconciliation"] = {"orphan_receipts": r[0], "executions_on_failed_requests": r[1]}
    out["impact"] = impact(con, req)
    json.dump(out, sys.stdout, indent=1, sort_keys=True, default=str)
    print()


def impact(con, req):
    """The report's impact section (rollproof computes it on every run): per window the requests,
    errors, off-pin and affected requests, and the distinct users and affected users; the incident
    window starts at the first degraded minute (error rate over ERROR_RATE_MAX or off-pin share of
    at least 5%) from the end of the baseline whose next non-empty minute before the flip is
    degraded too, or the last minute before the flip when it is degraded.

    Three queries, the fastest of the forms measured: the minutes before the flip (for the
    incident's start), request counts per window in one scan, and one aggregation by user with a
    flag per window. (Eight `count(DISTINCT user_id) FILTER` aggregates measured 1.7× slower;
    window counts summed from a per-minute aggregate over all rows, 1.2× slower.)"""
    off_pin = " OR ".join(f"({p} IS NOT NULL AND {p} <> '{v}')" for p, v in PINS.items())
    error = "(status >= 500 OR status = 429)"
    rows = f"""(SELECT ts, user_id, status IS NOT NULL AS with_status, coalesce({error}, false) AS error,
                       coalesce({off_pin}, false) AS off_pin,
                       coalesce({error}, false) OR coalesce({off_pin}, false) AS affected,
                       CAST(floor(epoch_us(ts - TIMESTAMPTZ '{FLIP}') / 60000000.0) AS BIGINT) AS k
                FROM {req})"""
    minutes = con.execute(f"""
        SELECT k, count(*), count(*) FILTER (WHERE with_status), count(*) FILTER (WHERE error),
               count(*) FILTER (WHERE off_pin)
        FROM {rows} WHERE ts >= '{BASELINE[1]}' AND ts < '{FLIP}' GROUP BY k ORDER BY k""").fetchall()

    def degraded(m):
        _, n, with_status, errors, off = m
        return n > 0 and ((with_status > 0 and errors / with_status > ERROR_RATE_MAX) or off / n >= 0.05)

    start = None
    for i, m in enumerate(minutes):
        if degraded(m) and (i + 1 == len(minutes) or degraded(minutes[i + 1])):
            start = m[0]
            break
    inside = {name: f"ts >= '{a}' AND ts < '{b}'" for name, (a, b) in
              {"baseline": BASELINE, "settling": (FLIP, POST[0]), "post": POST}.items()}
    if start is not None:
        inside["incident"] = f"ts >= TIMESTAMPTZ '{FLIP}' + INTERVAL ({start}) MINUTE AND ts < '{FLIP}'"
    counts = []
    for w in inside.values():
        counts += [f"count(*) FILTER (WHERE {w}{extra})" for extra in ("", " AND error", " AND off_pin", " AND affected")]
    row = con.execute(f"SELECT {', '.join(counts)} FROM {rows}").fetchone()
    flags = ", ".join(f"bool_or({w}) AS u{i}, bool_or({w} AND affected) AS a{i}" for i, w in enumerate(inside.values()))
    users = con.execute(f"""
        SELECT {", ".join(f"count(*) FILTER (WHERE u{i}), count(*) FILTER (WHERE a{i})" for i in range(len(inside)))}
        FROM (SELECT {flags} FROM {rows} WHERE user_id IS NOT NULL GROUP BY user_id)""").fetchone()
    out = {"incident_start_minute": start}
    for i, name in enumerate(inside):
        for j, figure in enumerate(["requests", "errors", "off_pin_requests", "affected_requests"]):
            out[f"{name}_{figure}"] = row[4 * i + j]
        out[f"{name}_users"] = users[2 * i]
        out[f"{name}_affected_users"] = users[2 * i + 1]
    return out


if __name__ == "__main__":
    main(sys.argv[1])
