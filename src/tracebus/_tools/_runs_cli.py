"""The commands across runs: ``runs`` lists them, ``prune`` removes the old ones."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._text import printable
from .cli import _closed_pipe_quiet, _Formatter

if TYPE_CHECKING:
    from .._catalog import StoredRun
    from ._runs import RunInfo

DIRS_HELP = (
    "DIR is an output directory (holding traces/ or audit/), or a directory of them; its "
    "runs are those of traces/, audit/step_NN/ and the archives in audit/step_NN/previous/."
)
RUNS_HELP = "list the runs of output directories, newest first, with status, times, cost, tokens"
#: The statuses ``--status`` takes: ``_runs.STATUSES`` (a test holds them equal), not
#: imported from there so that the help loads no reader.
STATUS_CHOICES = ("complete", "error", "incomplete", "running")


PRUNE_HELP = "remove old runs per workflow: keep the newest N and/or those younger than DAYS"


def register(commands: Any) -> None:
    """Add ``runs`` and ``prune`` to the ``tracebus`` subparsers ``commands``."""
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

    prune: argparse.ArgumentParser = commands.add_parser(
        "prune",
        help=PRUNE_HELP,
        description=f"{PRUNE_HELP[0].upper()}{PRUNE_HELP[1:]}. A run goes only when neither "
        "rule keeps it, with all its files (traces, logs, metadata, archive); a run whose "
        "writer holds its lock (running) never goes.",
        epilog=f"{DIRS_HELP}\n\nexit codes: 0 ok; 1 a run could not be removed whole (the "
        "error is printed); 2 bad usage or a directory that is missing or holds no output "
        "directory (one line on stderr).",
        formatter_class=_Formatter,
    )
    prune.add_argument("dirs", nargs="+", metavar="DIR", help="an output directory (see below)")
    prune.add_argument(
        "--keep", type=_whole, metavar="N", help="keep the newest N runs of each workflow"
    )
    prune.add_argument(
        "--older-than",
        type=_days,
        metavar="DAYS",
        help="keep the runs started less than DAYS ago (a fraction is fine: 0.5)",
    )
    prune.add_argument(
        "--workflow", action="append", metavar="ID", help="prune only this workflow's runs"
    )
    prune.add_argument(
        "--dry-run",
        action="store_true",
        help="list what would go and the bytes freed; remove nothing",
    )
    prune.add_argument("--json", action="store_true", help="print the outcome as JSON")
    prune.set_defaults(handler=_closed_pipe_quiet(_prune))


def _whole(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _days(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of days, 0 or more, got {text}")
    return value


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
        noted = [run for run in found if run.warnings]
        if noted:  # a torn last line, metadata that cannot be read...: in --json, by run
            print(
                f"tracebus runs: {len(noted)} run(s) with warnings, the first: "
                f"{printable(noted[0].warnings[0])} (--json lists them all)",
                file=sys.stderr,
            )
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


def _prune(args: argparse.Namespace) -> int:
    from .._catalog import catalog
    from .._exceptions import RunLockedError
    from .._retention import Retention, plan, remove_run
    from ._runs import output_dirs, run_info

    if args.keep is None and args.older_than is None:
        raise ValueError("give --keep N, --older-than DAYS, or both")
    policy = Retention(keep=args.keep, older_than_days=args.older_than)
    stored: list[StoredRun] = []
    seen: set[Any] = set()
    for given in args.dirs:
        for out in output_dirs(given):
            if out.resolve() not in seen:
                seen.add(out.resolve())
                stored.extend(catalog(out))
    if args.workflow:
        stored = [run for run in stored if run.workflow_id in args.workflow]
    outcome = plan(stored, policy)
    removed: list[tuple[RunInfo, int]] = []
    failed: list[tuple[RunInfo, str]] = []
    running = list(outcome.running)
    for run in sorted(outcome.remove, key=_oldest_first):
        info = run_info(run)
        if args.dry_run:
            removed.append((info, run.freed_bytes()))
            continue
        try:
            removed.append((info, remove_run(run)))
        except RunLockedError:  # its writer took the lock since the plan was made
            running.append(run)
        except OSError as exc:
            failed.append((info, str(exc)))
    freed = sum(size for _, size in removed)
    kept = len(outcome.keep) + len(running) - len(outcome.running)
    if args.json:
        print(
            json.dumps(
                {
                    "dry_run": args.dry_run,
                    "removed": [{**info.to_json(), "freed": size} for info, size in removed],
                    "failed": [{**info.to_json(), "error": error} for info, error in failed],
                    "kept": kept,
                    "running": [
                        {"workflow_id": r.workflow_id, "run_id": r.run_id, "trace": str(r.trace)}
                        for r in running
                    ],
                    "bytes_freed": freed,
                },
                indent=2,
            )
        )
    else:
        verb = "would remove" if args.dry_run else "removed"
        for info, size in removed:
            print(f"{verb}  {_run_line(info)}  {_size(size)}")
        for info, error in failed:
            print(f"failed  {_run_line(info)}: {printable(error)}")
        for run in running:
            print(f"running, kept  {printable(run.workflow_id or '?')}  {run.run_id or '-'}")
        total = "would free" if args.dry_run else "freed"
        print(
            f"{verb} {len(removed)} run(s), {total} {_size(freed)}; kept {kept}"
            + (f" ({len(running)} running)" if running else "")
            + (f"; {len(failed)} could not be removed" if failed else "")
        )
    return 1 if failed else 0


def _oldest_first(run: StoredRun) -> tuple[float, str]:
    return (run.started if run.started is not None else float("-inf"), str(run.trace))


def _run_line(info: RunInfo) -> str:
    run_id = printable(info.run_id[:12]) if info.run_id else "-"
    return f"{printable(info.workflow_id) or '?'}  {run_id}  {info.status}  {_when(info.started)}"


def _size(size: int) -> str:
    """``812 B``, ``25.3 KiB``, ``4.1 MiB``."""
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
