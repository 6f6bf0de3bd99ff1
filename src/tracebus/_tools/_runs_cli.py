"""The commands across runs: ``runs`` lists them."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._text import printable
from .cli import _closed_pipe_quiet, _Formatter

if TYPE_CHECKING:
    from ._runs import RunInfo

DIRS_HELP = (
    "DIR is an output directory (holding traces/ or audit/), or a directory of them; its "
    "runs are those of traces/, audit/step_NN/ and the archives in audit/step_NN/previous/."
)
RUNS_HELP = "list the runs of output directories, newest first, with status, times, cost, tokens"
#: The statuses ``--status`` takes: ``_runs.STATUSES`` (a test holds them equal), not
#: imported from there so that the help loads no reader.
STATUS_CHOICES = ("complete", "error", "incomplete", "running")


def register(commands: Any) -> None:
    """Add ``runs`` to the ``tracebus`` subparsers ``commands``."""
    runs: argparse.ArgumentParser = commands.add_parser(
        "runs",
        help=RUNS_HELP,
        description=f"{RUNS_HELP[0].upper()}{RUNS_HELP[1:]}.",
        epilog=f"{DIRS_HELP}\n\nexit codes: 0 ok; 2 bad usage or a directory that is missing "
        "or holds no output directory (one line on stderr).",
        formatter_class=_Formatter,
    )
    runs.add_argument("dirs", nargs="+", metavar="DIR", help="an output directory (see below)")
    runs.add_argument("--json", action="store_true", help="print the runs as a JSON list")
    runs.add_argument(
        "--workflow", action="append", metavar="ID", help="only the runs of this workflow id"
    )
    runs.add_argument(
        "--status",
        action="append",
        choices=STATUS_CHOICES,
        help="only the runs of this status (repeat for several)",
    )
    runs.set_defaults(handler=_closed_pipe_quiet(_runs))


def _runs(args: argparse.Namespace) -> int:
    from ._runs import find_runs

    found = find_runs(args.dirs)
    if args.workflow:
        found = [run for run in found if run.workflow_id in args.workflow]
    if args.status:
        found = [run for run in found if run.status in args.status]
    if args.json:
        print(json.dumps([run.to_json() for run in found], indent=2))
    elif not found:
        print("no runs")
    else:
        print("\n".join(runs_table(found)))
    return 0


COLUMNS: tuple[str, ...] = ("WORKFLOW", "RUN", "STATUS", "STARTED", "WALL", "OK", "FAILED")
COLUMNS += ("SKIPPED", "UNFINISHED", "COST", "TOKENS IN/OUT")
_RIGHT = (False, False, False, False, True, True, True, True, True, True, True)


def runs_table(found: Sequence[RunInfo]) -> list[str]:
    """The table ``tracebus runs`` prints: a header and a row per run."""
    from ._summary import format_seconds

    rows: list[tuple[str, ...]] = [COLUMNS]
    for run in found:
        rows.append(
            (
                printable(run.workflow_id) or "?",
                printable(run.run_id[:12]) if run.run_id else "-",
                run.status,
                _when(run.started),
                format_seconds(run.wall_s),
                str(run.nodes_ok),
                str(run.nodes_failed),
                str(run.nodes_skipped),
                str(run.nodes_unfinished),
                "-" if run.cost_usd is None else f"${run.cost_usd:.4f}",
                f"{run.input_tokens}/{run.output_tokens}"
                if run.input_tokens or run.output_tokens
                else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return [
        "  ".join(
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(row, widths, _RIGHT, strict=True)
        ).rstrip()
        for row in rows
    ]


def _when(started: str | None) -> str:
    """``2026-12-02 03:38:02`` of an ISO time (the offset and fraction left out)."""
    if not started:
        return "-"
    return printable(started.replace("T", " ")[:19])
