"""The commands that read runs back: summary, export, timeline, tail."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from .._text import printable

# The help is all that registering needs: the readers are imported when a command runs.
RUN_HELP = (
    "RUN is a trace file (.jsonl), an audit/step_NN/metadata_NN.json, an audit step "
    "directory (audit/step_NN), or an output directory, meaning its latest run: the newest "
    "trace in traces/, else the newest audit/step_NN trace."
)

if TYPE_CHECKING:
    from ._scan import Meter, Progress

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
    source = summary.add_mutually_exclusive_group()
    source.add_argument(
        "--fast",
        action="store_true",
        help="only the totals, from the run's metadata when it is complete (the trace is "
        "not read); otherwise the whole summary, saying so",
    )
    source.add_argument(
        "--totals",
        action="store_true",
        help="only the figures the metadata holds as a read of the trace gives them (status, "
        "error, counts, retries, cost): from the metadata when it is complete and records "
        "the trace's size as it is now, else from the trace, saying why on stderr",
    )
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
    from ._summary import summarize_trace

    if args.totals:
        return _totals(args)
    if args.fast:
        from ._fast import metadata_summary
        from ._find import find_run

        figures = metadata_summary(find_run(args.run))
        if figures is not None:
            _print_summary(figures, args.json)
            return _verdict(figures["ok"], args.check)
    figures, ok = summarize_trace(args.run, None if args.json else _progress_bar())
    if args.fast:
        figures["warnings"].append("--fast: the metadata is not complete; the trace was read")
    _print_summary(figures, args.json)
    return _verdict(ok, args.check)


def _totals(args: argparse.Namespace) -> int:
    from ._fast import TOTALS_FROM_TRACE, totals_of, trusted_totals
    from ._find import find_run
    from ._summary import summarize_trace

    figures, why = trusted_totals(find_run(args.run))
    if figures is None:
        print(printable(f"tracebus summary: reading the trace: {why}"), file=sys.stderr)
        full, _ = summarize_trace(args.run, None if args.json else _progress_bar())
        figures = totals_of(full, TOTALS_FROM_TRACE)
    _print_summary(figures, args.json)
    return _verdict(figures["ok"], args.check)


def _print_summary(figures: dict[str, Any], as_json: bool) -> None:
    from ._summary import render_summary

    if as_json:
        sys.stdout.write(json.dumps(figures, indent=2) + "\n")
    else:
        sys.stdout.write(render_summary(figures))


def _export(args: argparse.Namespace) -> int:
    if args.format == "chrome":
        from ._attempts import read_attempts
        from ._chrome import write_chrome_trace

        facts, table = read_attempts(args.run, _progress_bar())
        _warn(args.command, facts.warnings)
        events = _stream(args.output, lambda out: write_chrome_trace(facts, table, out))
        _wrote(args.output, f"{events} trace events")
        return _verdict(facts.ok, args.check)
    from ._otlp import SPANS_PER_LINE, read_for_otlp, write_otlp

    facts, _ = read_for_otlp(args.run, _progress_bar())
    _warn(args.command, facts.warnings)
    spans = _stream(args.output, lambda out: write_otlp(facts, out, _progress_bar()))
    lines = -(-spans // SPANS_PER_LINE)
    _wrote(args.output, f"{spans} spans in {lines} line(s)")
    return _verdict(facts.ok, args.check)


def _timeline(args: argparse.Namespace) -> int:
    from ._attempts import read_attempts
    from ._timeline import write_timeline

    facts, table = read_attempts(args.run, _progress_bar())
    _warn(args.command, facts.warnings)
    _stream_text(args.output, lambda out: write_timeline(facts, table, out))
    _wrote(args.output, f"timeline of {len(table)} node attempt(s)")
    return _verdict(facts.ok, args.check)


def _tail(args: argparse.Namespace) -> int:
    from ._tail import follow

    def emit(lines: str) -> None:
        sys.stdout.write(lines)
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


#: Traces at least this large show a progress bar while they are read, on a terminal.
LARGE_TRACE_BYTES = 16 * 2**20


def _progress_bar() -> Progress | None:
    """A tqdm bar on stderr (bytes read of the trace's size) when stderr is a terminal and
    the trace is large; nothing in pipes."""
    if not sys.stderr.isatty():
        return None

    def start(trace: Path) -> Meter | None:
        size = trace.stat().st_size
        if size < LARGE_TRACE_BYTES:
            return None
        from tqdm import tqdm

        return tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"reading {trace.name}",
            file=sys.stderr,
            leave=False,
        )

    return start


def _verdict(ok: bool, check: bool) -> int:
    return 1 if check and not ok else 0


def _warn(command: str, warnings: tuple[str, ...]) -> None:
    for warning in warnings:
        print(printable(f"tracebus {command}: warning: {warning}"), file=sys.stderr)


def _write(output: str, text: str, what: str) -> None:
    _stream_text(output, lambda out: out.write(text))
    _wrote(output, what)


def _stream(output: str, write: Callable[[BinaryIO], int]) -> int:
    """Run ``write`` on the output file, or on standard output's bytes for ``-``."""
    if output == "-":
        sys.stdout.flush()
        written = write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return written
    with open(output, "wb") as handle:
        return write(handle)


def _stream_text(output: str, write: Callable[[TextIO], object]) -> None:
    if output == "-":
        write(sys.stdout)
        sys.stdout.flush()
        return
    with open(output, "w", encoding="utf-8", newline="\n") as handle:
        write(handle)


def _wrote(output: str, what: str) -> None:
    if output != "-":
        print(f"wrote {Path(output)} ({what})")
