"""The commands that read several runs: diff (two runs, node by node) and query (SQL)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._runs_cli import DIRS_HELP
from .cli import RUN_HELP, _closed_pipe_quiet, _Formatter

QUERY_HELP = "run SQL over every run in output directories, with DuckDB (tracebus[query])"
DIFF_HELP = "compare two runs node by node: failures, outputs, durations, cost and tokens"
DIFF_EXIT_CODES = (
    "exit codes: 0 ok; 1 where --check is given and a gate tripped (hash: a node's output "
    "hash changed; fail: a node newly fails; slower: a node got slower); 2 bad usage or "
    "unreadable input (one line on stderr)."
)


def register(commands: Any) -> None:
    """Add ``diff`` and ``query`` to the ``tracebus`` subparsers ``commands``."""
    from ._diff import DEFAULT_GATES, GATES, MIN_SECONDS, SLOWER

    diff: argparse.ArgumentParser = commands.add_parser(
        "diff",
        help=DIFF_HELP,
        description=f"{DIFF_HELP[0].upper()}{DIFF_HELP[1:]}.",
        epilog=f"{RUN_HELP.replace('RUN is', 'RUN_A and RUN_B are each')}\n\n{DIFF_EXIT_CODES}",
        formatter_class=_Formatter,
    )
    diff.add_argument("run_a", metavar="RUN_A", help="the run compared against (see below)")
    diff.add_argument("run_b", metavar="RUN_B", help="the run compared with it")
    diff.add_argument("--json", action="store_true", help="print the comparison as JSON")
    diff.add_argument(
        "--check",
        nargs="?",
        const=",".join(DEFAULT_GATES),
        default=None,
        type=_gates(GATES),
        metavar="GATES",
        help=f"exit 1 when a gate trips: a comma-separated list of {', '.join(GATES)} "
        f"(--check alone: {','.join(DEFAULT_GATES)}; give a list as --check=LIST)",
    )
    diff.add_argument(
        "--slower",
        type=_factor,
        default=SLOWER,
        metavar="FACTOR",
        help=f"a node is slower when its time grew by this factor, e.g. 2x ({SLOWER:g}x)",
    )
    diff.add_argument(
        "--min-seconds",
        type=_not_negative,
        default=MIN_SECONDS,
        metavar="SECONDS",
        help=f"...and by at least this many seconds ({MIN_SECONDS:g})",
    )
    diff.set_defaults(handler=_closed_pipe_quiet(_diff))

    query: argparse.ArgumentParser = commands.add_parser(
        "query",
        help=QUERY_HELP,
        description=f"{QUERY_HELP[0].upper()}{QUERY_HELP[1:]}.",
        epilog=QUERY_EPILOG,
        formatter_class=_Formatter,
    )
    query.add_argument("dirs", nargs="+", metavar="DIR", help="an output directory (see below)")
    query.add_argument("sql", metavar="SQL", help="the query, over the views below")
    form = query.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    form.add_argument("--csv", action="store_true", help="print the rows as CSV, with a header")
    query.set_defaults(handler=_closed_pipe_quiet(_query))


QUERY_EPILOG = (
    "The views: runs (one row per run, as tracebus runs --json lists them), nodes (one row "
    "per node attempt), events (one row per trace line), usage (one row per model call) and "
    "logs (one row per log record); docs/reading-runs.md lists their columns. The traces are "
    f"read as the query runs.\n\n{DIRS_HELP}\n\n"
    "exit codes: 0 ok; 2 bad usage, a DIR that is missing or holds no output directory, SQL "
    "that DuckDB refuses, or DuckDB not installed (one line on stderr)."
)
#: What ``query`` says when DuckDB cannot be imported.
NO_DUCKDB = (
    "tracebus query: error: DuckDB is not installed; install it with: pip install 'tracebus[query]'"
)


def _gates(known: tuple[str, ...]) -> Any:
    def parse(text: str) -> tuple[str, ...]:
        chosen = tuple(word.strip() for word in text.split(",") if word.strip())
        unknown = [word for word in chosen if word not in known]
        if unknown or not chosen:
            what = f"unknown gate {unknown[0]!r}" if unknown else "no gate given"
            raise argparse.ArgumentTypeError(
                f"{what} (the gates: {','.join(known)}; a bare --check goes after the runs, "
                "a list as --check=LIST)"
            )
        return chosen

    return parse


def _factor(text: str) -> float:
    try:
        value = float(text.removesuffix("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a factor such as 1.5x: {text!r}") from None
    if not value >= 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 1x, got {text}")
    return value


def _not_negative(text: str) -> float:
    value = float(text)
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _diff(args: argparse.Namespace) -> int:
    from ._diff import Thresholds, diff_runs, read_side
    from ._diff_text import render_diff

    a, b = read_side(args.run_a), read_side(args.run_b)
    diff = diff_runs(a, b, Thresholds(args.slower, args.min_seconds), args.check or ())
    if args.json:
        sys.stdout.write(json.dumps(diff, indent=2) + "\n")
    else:
        sys.stdout.write(render_diff(diff))
    return 1 if diff["check"]["tripped"] else 0


def _query(args: argparse.Namespace) -> int:
    try:
        from ._query import plain, run_query
    except ImportError as exc:
        if exc.name != "duckdb" and not str(exc).startswith("No module named 'duckdb"):
            raise
        print(NO_DUCKDB, file=sys.stderr)
        return 2
    columns, rows = run_query(args.dirs, args.sql)
    if args.json:
        objects = [
            {name: plain(value, kind) for (name, kind), value in zip(columns, row, strict=True)}
            for row in rows
        ]
        sys.stdout.write(json.dumps(objects, indent=2) + "\n")
    elif args.csv:
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([name for name, _ in columns])
        for row in rows:
            writer.writerow(
                [
                    _csv_cell(plain(value, kind))
                    for (_, kind), value in zip(columns, row, strict=True)
                ]
            )
    else:
        from ._query_text import render_rows

        sys.stdout.write(render_rows(columns, rows))
    return 0


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value
