"""SQL over many runs with DuckDB, straight from their JSONL traces: no import, no copy.

The views are defined over ``read_ndjson`` of the trace files, with their columns typed from
the events' own annotations (``_events.TRACE_EVENT_KINDS``), so a field of any event type is
a column and an event type that lacks it has NULL there; a query reads the files as it runs.
Which runs there are, and their traces, is ``find_runs``'s to say: its list is the ``runs``
table (one small row a run, what ``tracebus runs --json`` prints). DuckDB is an optional
dependency (``tracebus[query]``): this module imports it, so only ``query`` imports it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args

import duckdb
import msgspec

from .._events import TRACE_EVENT_KINDS
from .._exceptions import QueryError
from ._runs import RunInfo, find_runs

_LAST_SEQ = 2**63 - 1


def _sql_type(annotation: Any) -> str:
    args = set(get_args(annotation)) or {annotation}
    args -= {type(None), msgspec.UnsetType}
    base = args.pop() if len(args) == 1 else annotation
    if base is str:
        return "VARCHAR"
    if base is int:
        return "BIGINT"
    if base is float:
        return "DOUBLE"
    return "JSON"


def trace_columns() -> dict[str, str]:
    """The DuckDB type of every field a trace line can have."""
    columns = {"event_type": "VARCHAR"}
    for kind in TRACE_EVENT_KINDS:
        for field in msgspec.structs.fields(kind):
            columns.setdefault(field.name, _sql_type(field.type))
    return columns


#: The DuckDB type of each key of ``RunInfo.to_json()`` the ``runs`` table has (a key not
#: named here is JSON); ``started`` is a time, from the run's start epoch.
_RUN_TYPES = {
    "workflow_id": "VARCHAR",
    "run_id": "VARCHAR",
    "status": "VARCHAR",
    "started": "TIMESTAMPTZ",
    "wall_s": "DOUBLE",
    "nodes_ok": "BIGINT",
    "nodes_failed": "BIGINT",
    "nodes_skipped": "BIGINT",
    "nodes_unfinished": "BIGINT",
    "cost_usd": "DOUBLE",
    "input_tokens": "BIGINT",
    "output_tokens": "BIGINT",
    "trace": "VARCHAR",
    "metadata": "VARCHAR",
    "bytes": "BIGINT",
    "archive": "VARCHAR",
    "output_dir": "VARCHAR",
    "step": "VARCHAR",
    "source": "VARCHAR",
    "warnings": "VARCHAR[]",
}


def _run_row(run: RunInfo) -> dict[str, Any]:
    """A run as the ``runs`` table holds it: ``tracebus runs --json``'s object, the run id of
    a seed trace (which has none) its trace's path, as in the other views, ``started`` a
    time, and ``tokens`` both kinds."""
    row = run.to_json()
    row["run_id"] = row["run_id"] or row["trace"]
    row["started"] = (
        datetime.fromtimestamp(run.started_epoch, UTC) if run.started_epoch is not None else None
    )
    row["tokens"] = run.input_tokens + run.output_tokens
    return {
        key: json.dumps(value) if _RUN_TYPES.get(key, "JSON") == "JSON" else value
        for key, value in row.items()
    }


def _runs_table(connection: duckdb.DuckDBPyConnection, runs: Sequence[RunInfo]) -> None:
    """The ``runs`` table: one row per run ``find_runs`` found (the catalogue, not the
    traces: one row a run)."""
    rows = [_run_row(run) for run in runs]
    keys = list(rows[0]) if rows else [*_RUN_TYPES, "tokens"]
    types = {**_RUN_TYPES, "tokens": "BIGINT"}
    columns = ", ".join(f'"{key}" {types.get(key, "JSON")}' for key in keys)
    connection.execute(f"CREATE TABLE runs ({columns})")
    if rows:
        marks = ", ".join("?" for _ in keys)
        connection.executemany(
            f"INSERT INTO runs VALUES ({marks})", [[row[key] for key in keys] for row in rows]
        )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _source(traces: Sequence[Path]) -> str:
    """The rows of every trace line, as ``read_ndjson`` reads them (or none, typed alike)."""
    columns = trace_columns()
    if not traces:
        typed = ", ".join(f"NULL::{kind} AS {name}" for name, kind in columns.items())
        return f"(SELECT {typed}, NULL::VARCHAR AS filename WHERE false)"
    files = ", ".join(_literal(str(path)) for path in traces)
    spec = ", ".join(f"{_literal(name)}: {_literal(kind)}" for name, kind in columns.items())
    # ignore_errors: a line that is not JSON (the torn last line of a killed writer) becomes
    # a row of NULLs, which the events view leaves out
    return (
        f"read_ndjson([{files}], columns={{{spec}}}, filename=true, ignore_errors=true, "
        "format='newline_delimited')"
    )


def _views(traces: Sequence[Path]) -> list[str]:
    ends = "('node_success', 'node_failure', 'node_skipped')"
    return [
        # a trace of the old observer has no run id: its file names its run; the file read
        # is trace_file (what workflow_complete's own trace_file field names, kept as such)
        f"""CREATE VIEW events AS
            SELECT * EXCLUDE (filename, trace_file)
                     REPLACE (coalesce(run_id, filename) AS run_id),
                   to_timestamp(epoch_seconds) AS time, filename AS trace_file
            FROM {_source(traces)}
            WHERE event_type IS NOT NULL""",
        """CREATE VIEW usage AS
            SELECT run_id, workflow_id, node_id, model, input_tokens, output_tokens,
                   coalesce(input_tokens, 0) + coalesce(output_tokens, 0) AS tokens, cost_usd,
                   counters, time, seq, trace_file
            FROM events WHERE event_type = 'usage'""",
        """CREATE VIEW logs AS
            SELECT run_id, workflow_id, node_id, time, level, levelno, logger, message,
                   exception, seq, trace_file
            FROM events WHERE event_type = 'log'""",
        f"""CREATE VIEW nodes AS
            WITH starts AS (
                SELECT trace_file, run_id, workflow_id, node_id, node_index, parent_id,
                       depends_on, epoch_seconds AS start_epoch, seq AS start_seq,
                       row_number() OVER (PARTITION BY trace_file, run_id, node_id
                                          ORDER BY seq, epoch_seconds) AS attempt
                FROM events WHERE event_type = 'node_start' AND node_id IS NOT NULL
            ), ends AS (
                SELECT trace_file, run_id, workflow_id, node_id, node_index, event_type,
                       epoch_seconds AS end_epoch, seq AS end_seq, duration_seconds, cost_usd,
                       error, reason, output_hash, output_summary,
                       row_number() OVER (PARTITION BY trace_file, run_id, node_id
                                          ORDER BY seq, epoch_seconds) AS attempt
                FROM events WHERE event_type IN {ends} AND node_id IS NOT NULL
            ), paired AS (
                SELECT coalesce(s.trace_file, e.trace_file) AS trace_file,
                       coalesce(s.run_id, e.run_id) AS run_id,
                       coalesce(s.workflow_id, e.workflow_id) AS workflow_id,
                       coalesce(s.node_id, e.node_id) AS node_id,
                       coalesce(e.node_index, s.node_index) AS node_index,
                       coalesce(s.attempt, e.attempt) AS attempt,
                       CASE e.event_type WHEN 'node_success' THEN 'success'
                            WHEN 'node_failure' THEN 'failed'
                            WHEN 'node_skipped' THEN 'skipped' ELSE 'running' END AS status,
                       coalesce(s.start_epoch,
                                e.end_epoch - greatest(coalesce(e.duration_seconds, 0), 0))
                           AS start_epoch,
                       e.end_epoch, e.duration_seconds, e.cost_usd, e.error, e.reason,
                       e.output_hash, e.output_summary, s.parent_id, s.depends_on,
                       coalesce(s.start_seq, e.end_seq) AS first_seq,
                       coalesce(e.end_seq, {_LAST_SEQ}) AS last_seq
                FROM starts s FULL OUTER JOIN ends e
                  ON s.trace_file = e.trace_file AND s.run_id = e.run_id
                 AND s.node_id = e.node_id AND s.attempt = e.attempt
            ), spent AS (
                SELECT p.trace_file, p.run_id, p.node_id, p.attempt,
                       sum(u.tokens) AS tokens, sum(u.cost_usd) AS usage_cost_usd
                FROM paired p JOIN usage u
                  ON u.trace_file = p.trace_file AND u.run_id = p.run_id
                 AND u.node_id = p.node_id AND u.seq BETWEEN p.first_seq AND p.last_seq
                GROUP BY ALL
            )
            SELECT p.run_id, p.workflow_id, p.node_id, p.node_index, p.attempt, p.status,
                   to_timestamp(p.start_epoch) AS started, to_timestamp(p.end_epoch) AS ended,
                   coalesce(p.duration_seconds, p.end_epoch - p.start_epoch) AS duration_seconds,
                   coalesce(p.cost_usd, 0) AS cost_usd, coalesce(t.tokens, 0) AS tokens,
                   coalesce(t.usage_cost_usd, 0) AS usage_cost_usd, p.parent_id, p.depends_on,
                   p.output_hash, p.output_summary, p.error, p.reason, p.trace_file
            FROM paired p LEFT JOIN spent t
              ON t.trace_file = p.trace_file AND t.run_id = p.run_id
             AND t.node_id = p.node_id AND t.attempt = p.attempt""",
    ]


def run_query(
    dirs: Iterable[str | os.PathLike[str]], sql: str
) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
    """Run ``sql`` over every run in ``dirs``: the result's columns (name and DuckDB type)
    and its rows.

    Raises RunNotFoundError for a directory that is missing or holds no output directory
    (see ``find_runs``) and QueryError for what DuckDB refuses.
    """
    runs = find_runs(list(dirs))
    connection = duckdb.connect(":memory:")
    try:
        connection.execute("SET TimeZone = 'UTC'")
        _runs_table(connection, runs)
        for view in _views([run.trace for run in runs]):
            connection.execute(view)
        result = connection.execute(sql)
        if result.description is None:
            return [], []
        names = [column[0] for column in result.description]
        kinds = [str(column[1]) for column in result.description]
        return list(zip(names, kinds, strict=True)), result.fetchall()
    except duckdb.Error as exc:
        raise QueryError(" ".join(str(exc).split())) from None
    finally:
        connection.close()


def plain(value: Any, kind: str) -> Any:
    """A value of the result as JSON holds it: times as ISO 8601 text, JSON decoded."""
    if value is None:
        return None
    if kind == "JSON" and isinstance(value, str):
        try:
            return msgspec.json.decode(value)
        except msgspec.DecodeError:
            return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list | tuple):
        return [plain(item, "") for item in value]
    if isinstance(value, dict):
        return {str(key): plain(item, "") for key, item in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value
