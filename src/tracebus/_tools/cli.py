"""The commands that read runs back: summary, export, timeline, tail."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._text import printable

# The help is all that registering needs: the readers are imported when a command runs.
RUN_HELP = (
    "RUN is a trace file (.jsonl), an audit/step_NN/metadata_NN.json, an audit step "
    "directory (audit/step_NN), or an output directory, meaning its latest run: the newest "
    "trace in traces/, else the newest audit/step_NN trace."
)

EXIT_CODES = (
    "exit codes: 0 ok; 1 the run failed or has failed nodes, where --check is given{extra}; "
    "2 bad usage or unreadable input (one line on stderr)."
)


def register(commands: Any) -> None:
    """Add the run-reading subcommands to the ``tracebus`` subparsers ``commands``."""
    summary = _command(
        commands,
        "summary",
        "show a run's status, counts, times, parallelism, cost, slowest nodes and failures",
    )
    summary.add_argument("--json", action="store_true", help="print the figures as JSON")
    summary.set_defaults(handler=_closed_pipe_quiet(_summary))

    export = _command(
        commands,
        "export",
        "write a run as a Chrome trace (Perfetto, chrome://tracing) or as OTLP/JSON",
    )
    export.add_argument(
        "--format",
        required=True,
        choices=("chrome", "otlp"),
        help="chrome: Trace Event Format JSON; otlp: one OTLP/JSON TracesData per line",
    )
    _output(export)
    export.set_defaults(handler=_closed_pipe_quiet(_export))

    timeline = _command(
        commands, "timeline", "write a self-contained HTML page with a Gantt chart of the run"
    )
    _output(timeline)
    timeline.set_defaults(handler=_closed_pipe_quiet(_timeline))

    tail = _command(
        commands,
        "tail",
        "follow a live run, one line per event, until workflow_complete or workflow_error",
        extra="; tail also exits 1 when --timeout passes with no new event",
        run_help=TAIL_RUN_HELP,
    )
    tail.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="give up after this long without a new event, or without a run beginning "
        "(default: wait for ever)",
    )
    tail.add_argument(
        "--latest",
        action="store_true",
        help="follow an output directory's newest run, even one that has ended",
    )
    tail.set_defaults(handler=_closed_pipe_quiet(_tail))


TAIL_RUN_HELP = (
    "RUN is a trace file (.jsonl), an audit/step_NN/metadata_NN.json or an audit step "
    "directory (audit/step_NN): that run; or an output directory, which need not exist yet: "
    "its run in progress, else the next run to begin in it (a newer run that begins meanwhile "
    "is followed instead); with --latest, its newest run, ended or not."
)


def _command(
    commands: Any, name: str, purpose: str, extra: str = "", run_help: str = RUN_HELP
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=purpose,
        description=f"{purpose[0].upper()}{purpose[1:]}.",
        epilog=f"{run_help}\n\n{EXIT_CODES.format(extra=extra)}",
        formatter_class=_Formatter,
    )
    parser.add_argument("run", metavar="RUN", help="the run to read (see below)")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the run failed or has failed nodes"
    )
    return parser


class _Formatter(argparse.HelpFormatter):
    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n\n".join(
            super(_Formatter, self)._fill_text(part, width, indent) for part in text.split("\n\n")
        )


def _output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        default="-",
        metavar="FILE",
        help="where to write it (default: - for standard output)",
    )


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _summary(args: argparse.Namespace) -> int:
    from ._summary import render_summary, summarize_trace

    figures, ok = summarize_trace(args.run)
    if args.json:
        sys.stdout.write(json.dumps(figures, indent=2) + "\n")
    else:
        sys.stdout.write(render_summary(figures))
    return _verdict(ok, args.check)


def _export(args: argparse.Namespace) -> int:
    from ._record import read_run

    run = read_run(args.run)
    _warn(args.command, run.warnings)
    if args.format == "chrome":
        from ._chrome import chrome_trace

        trace = chrome_trace(run)
        text = json.dumps(trace, separators=(",", ":"), default=repr) + "\n"
        what = f"{len(trace['traceEvents'])} trace events"
    else:
        from ._otlp import otlp_lines

        lines = list(otlp_lines(run))
        text = "".join(line + "\n" for line in lines)
        what = f"{sum(len(n.attempts) for n in run.nodes) + 1} spans in {len(lines)} line(s)"
    _write(args.output, text, what)
    return _verdict(run.ok, args.check)


def _timeline(args: argparse.Namespace) -> int:
    from ._record import read_run
    from ._timeline import timeline_html

    run = read_run(args.run)
    _warn(args.command, run.warnings)
    bars = sum(len(n.attempts) for n in run.nodes)
    _write(args.output, timeline_html(run), f"timeline of {bars} node attempt(s)")
    return _verdict(run.ok, args.check)


def _tail(args: argparse.Namespace) -> int:
    from ._tail import follow

    def emit(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def notify(text: str) -> None:
        print(f"tracebus tail: {text}", file=sys.stderr, flush=True)

    result = follow(args.run, emit, timeout=args.timeout, latest=args.latest, notify=notify)
    if result.status is None:
        if result.trace is None:
            notify(f"no run began in {args.run} within {args.timeout:g}s")
        else:
            notify(f"no new event for {args.timeout:g}s; the run has not ended")
        return 1
    return _verdict(result.ok, args.check)


def _closed_pipe_quiet(
    handler: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """A reader that stopped reading (``| head``) ends the command quietly, as SIGPIPE would."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except BrokenPipeError:
            # later flushes of stdout (at exit) would fail again: point it at /dev/null
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return 141

    return run


def _verdict(ok: bool, check: bool) -> int:
    return 1 if check and not ok else 0


def _warn(command: str, warnings: tuple[str, ...]) -> None:
    for warning in warnings:
        print(printable(f"tracebus {command}: warning: {warning}"), file=sys.stderr)


def _write(output: str, text: str, what: str) -> None:
    if output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(output)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
    print(f"wrote {path} ({what})")
