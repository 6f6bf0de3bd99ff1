"""The ``tracebus`` command line. Exit codes: 0 ok, 1 the run failed (where a command says so),
2 bad usage or unreadable input (one line on stderr, never a traceback)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio

from ._exceptions import TracebusError
from ._nats.cli import register as register_nats
from ._service import cli as service_cli
from ._text import printable
from ._tools.cli import register as register_run_tools
from ._version import __version__

Handler = Callable[[argparse.Namespace], int]


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    metadata = anyio.run(
        lambda: run_demo(
            nodes=args.nodes,
            concurrency=args.concurrency,
            fail_rate=args.fail_rate,
            out=args.out,
            progress=not args.no_progress,
            seed=args.seed,
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracebus", description="Observability for asynchronous workflow runners."
    )
    parser.add_argument("--version", action="version", version=f"tracebus {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run a simulated concurrent workflow and trace it")
    demo.add_argument("--nodes", type=_positive, default=200, help="nodes to run (200)")
    demo.add_argument("--concurrency", type=_positive, default=16, help="workers (16)")
    demo.add_argument("--fail-rate", type=_rate, default=0.05, help="failure chance (0.05)")
    demo.add_argument("--out", type=Path, default=Path("runs"), help="output dir (runs)")
    demo.add_argument("--seed", type=int, default=None, help="random seed, for repeatable runs")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.set_defaults(handler=_demo)
    register_run_tools(commands)
    service_cli.register(commands)
    register_nats(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (TracebusError, OSError, ValueError) as exc:
        message = f"tracebus {args.command}: error: {str(exc) or type(exc).__name__}"
        print(printable(message), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
