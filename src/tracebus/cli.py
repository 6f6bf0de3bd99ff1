"""The ``tracebus`` command line. Exit codes: 0 ok, 1 the run failed (where a command says so),
2 bad usage or unreadable input (one line on stderr, never a traceback).

Each subcommand's module is imported only when that subcommand runs (or shows its help), so
that ``tracebus summary`` does not pay for the collector service's transports or NATS; the
others stand in the parser by their name and help line, for ``tracebus --help``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ._exceptions import TracebusError
from ._text import printable
from ._version import __version__

Handler = Callable[[argparse.Namespace], int]

#: Each subcommand after ``demo``, in the order ``--help`` lists them: the module whose
#: ``register`` adds it (with that module's other subcommands), and the help line shown while
#: that module is not imported (a test checks it is the module's own).
COMMANDS: dict[str, tuple[str, str]] = {
    "summary": (
        "._tools.cli",
        "show a run's status, counts, times, parallelism, cost, slowest nodes and failures",
    ),
    "export": (
        "._tools.cli",
        "write a run as a Chrome trace (Perfetto, chrome://tracing) or as OTLP/JSON",
    ),
    "timeline": ("._tools.cli", "write a self-contained HTML page with a Gantt chart of the run"),
    "tail": (
        "._tools.cli",
        "follow a live run, one line per event, until workflow_complete or workflow_error",
    ),
    "runs": (
        "._tools._runs_cli",
        "list the runs of output directories, newest first, with status, times, cost, tokens",
    ),
    "prune": (
        "._tools._runs_cli",
        "remove old runs per workflow: keep the newest N and/or those younger than DAYS",
    ),
    "watch": (
        "._tools._watch.cli",
        "serve a live web page of the runs under DIR..., updated as they run",
    ),
    "diff": (
        "._tools.cli_across",
        "compare two runs node by node: failures, outputs, durations, cost and tokens",
    ),
    "query": (
        "._tools.cli_across",
        "run SQL over every run in output directories, with DuckDB (tracebus[query])",
    ),
    "serve": (
        "._service.cli",
        "run the collector service: many producer processes, one writer per run",
    ),
    "status": (
        "._service.cli",
        "print a collector service's counters (exit 1 if it does not answer)",
    ),
}

#: Modules that add options to a subcommand another module registers, after it.
EXTENSIONS: dict[str, tuple[str, ...]] = {"serve": ("._nats.cli",)}


#: The longest a demo node sleeps, and with --slow.
FAST_NODE_SECONDS = 0.05
SLOW_NODE_SECONDS = 4.0


def _demo(args: argparse.Namespace) -> int:
    import anyio

    from ._demo import run_demo

    metadata = anyio.run(
        lambda: run_demo(
            nodes=args.nodes,
            concurrency=args.concurrency,
            fail_rate=args.fail_rate,
            out=args.out,
            progress=not args.no_progress,
            seed=args.seed,
            max_sleep=SLOW_NODE_SECONDS if args.slow else FAST_NODE_SECONDS,
        )
    )
    print(f"run {metadata['run_id']}: {metadata['status']}")
    print(f"  trace:    {metadata['execution_trace_file']}")
    print(f"  log:      {metadata['execution_log_file']}")
    print(f"  audit:    {Path(str(metadata['trace_file'])).parent}")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _register_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser("demo", help="run a simulated concurrent workflow and trace it")
    demo.add_argument("--nodes", type=_positive, default=200, help="nodes to run (200)")
    demo.add_argument("--concurrency", type=_positive, default=16, help="workers (16)")
    demo.add_argument("--fail-rate", type=_rate, default=0.05, help="failure chance (0.05)")
    demo.add_argument("--out", type=Path, default=Path("runs"), help="output dir (runs)")
    demo.add_argument("--seed", type=int, default=None, help="random seed, for repeatable runs")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.add_argument(
        "--slow",
        action="store_true",
        help=f"nodes take up to {SLOW_NODE_SECONDS:g}s each, not {FAST_NODE_SECONDS:g}s: with "
        "the defaults the run lasts about 25s, long enough to follow with tracebus watch",
    )
    demo.set_defaults(handler=_demo)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``tracebus`` parser: with every subcommand's module, or with ``command``'s only
    (the others by their name and help line)."""
    parser = argparse.ArgumentParser(
        prog="tracebus", description="Observability for asynchronous workflow runners."
    )
    parser.add_argument("--version", action="version", version=f"tracebus {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _register_demo(commands)
    wanted = {where for name, (where, _) in COMMANDS.items() if command in (None, name)}
    for name, (where, purpose) in COMMANDS.items():
        if where in wanted:
            importlib.import_module(where, __package__).register(commands)
            wanted.discard(where)
        elif name not in commands.choices:
            commands.add_parser(name, help=purpose, add_help=False)
    for name, extensions in EXTENSIONS.items():
        if command in (None, name):
            for where in extensions:
                importlib.import_module(where, __package__).register(commands)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names: its first word that is not an option (the options
    before it take no value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_in(words) or "")  # "": no module, every name
    args = parser.parse_args(words)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (TracebusError, OSError, ValueError) as exc:
        message = f"tracebus {args.command}: error: {str(exc) or type(exc).__name__}"
        print(printable(message), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
