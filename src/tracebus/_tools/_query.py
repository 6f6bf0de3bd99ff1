"""SQL over many runs with DuckDB, straight from their JSONL traces: no import, no copy.

The views are defined over ``read_ndjson`` of the trace files, with their columns typed from
the events' own annotations (``_events.TRACE_EVENT_KINDS``), so a field of any event type is
a column and an event type that lacks it has NULL there; a query reads the files as it runs.
DuckDB is an optional dependency (``tracebus[query]``): this module imports it, so it is
imported only by the ``query`` command.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args

import duckdb
import msgspec

from .._events import TRACE_EVENT_KINDS
from .._exceptions import QueryError

#: The views a query can read, each with what one row is.
VIEWS = {
    "runs": "one row per run: its status, times, node counts, cost and tokens",
    "nodes": "one row per node attempt: status, times, duration, cost, tokens, parent, hash",
    "events": "one row per trace line, every field a column (NULL where its type has none)",
    "usage": "one row per model call: model, tokens and cost",
    "logs": "one row per captured log record",
}
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


def trace_files(dirs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The trace of every run in the output directories ``dirs`` (a trace file given is
    itself): those in ``traces/``, else those of ``audit/step_NN`` and its archives.

    Raises FileNotFoundError for a path that does not exist.
    """
    found: list[Path] = []
    for given in map(Path, dirs):
        if not given.exists():
            raise FileNotFoundError(f"{given}: no such file or directory")
        if given.is_file():
            found.append(given)
            continue
        stamped = sorted(p for p in (given / "traces").glob("*.jsonl") if p.is_file())
        found += stamped or sorted(
            p
            for pattern in ("audit/step_*/trace_*.jsonl", "audit/step_*/previous/*/trace_*.jsonl")
            for p in given.glob(pattern)
            if p.is_file()
        )
    return list(dict.fromkeys(found))


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
    # ignore_errors: a torn last line (a killed writer) is skipped, as the readers skip it
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
            FROM {_source(traces)}""",
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
        """CREATE VIEW runs AS
            WITH lines AS (
                SELECT trace_file, run_id, any_value(workflow_id) AS workflow_id,
                       min(epoch_seconds) AS first_epoch, max(epoch_seconds) AS last_epoch,
                       bool_or(event_type = 'workflow_error') AS errored,
                       bool_or(event_type = 'workflow_complete') AS completed,
                       max(cumulative_cost_usd) AS reported_cost_usd,
                       sum(cost_usd) FILTER (WHERE event_type IN
                           ('node_success', 'node_failure', 'usage')) AS summed_cost_usd,
                       sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0))
                           FILTER (WHERE event_type = 'usage') AS tokens
                FROM events GROUP BY trace_file, run_id
            ), last_attempts AS (
                SELECT trace_file, run_id, node_id, arg_max(status, attempt) AS status
                FROM nodes GROUP BY ALL
            ), counted AS (
                SELECT trace_file, run_id,
                       count(*) FILTER (WHERE status = 'success') AS nodes_completed,
                       count(*) FILTER (WHERE status = 'failed') AS nodes_failed,
                       count(*) FILTER (WHERE status = 'skipped') AS nodes_skipped,
                       count(*) FILTER (WHERE status = 'running') AS nodes_unfinished
                FROM last_attempts GROUP BY ALL
            )
            SELECT l.run_id, l.workflow_id,
                   CASE WHEN l.errored THEN 'error' WHEN l.completed THEN 'complete'
                        ELSE 'incomplete' END AS status,
                   to_timestamp(l.first_epoch) AS started, to_timestamp(l.last_epoch) AS ended,
                   l.last_epoch - l.first_epoch AS wall_seconds,
                   coalesce(c.nodes_completed, 0) AS nodes_completed,
                   coalesce(c.nodes_failed, 0) AS nodes_failed,
                   coalesce(c.nodes_skipped, 0) AS nodes_skipped,
                   coalesce(c.nodes_unfinished, 0) AS nodes_unfinished,
                   coalesce(l.reported_cost_usd, l.summed_cost_usd, 0) AS cost_usd,
                   coalesce(l.tokens, 0) AS tokens, l.trace_file
            FROM lines l LEFT JOIN counted c USING (trace_file, run_id)""",
    ]


def run_query(
    dirs: Iterable[str | os.PathLike[str]], sql: str
) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
    """Run ``sql`` over every run in ``dirs``: the result's columns (name and DuckDB type)
    and its rows.

    Raises FileNotFoundError for a path that does not exist and QueryError for what DuckDB
    refuses.
    """
    traces = trace_files(dirs)
    connection = duckdb.connect(":memory:")
    try:
        connection.execute("SET TimeZone = 'UTC'")
        for view in _views(traces):
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
