"""``tracebus serve`` and ``tracebus status``.

``serve`` reads from sockets unless a source registered with ``add_serve_source`` (NATS
JetStream's ``--nats``) is chosen by its options; a source may register before or after
``serve`` itself.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TypeAlias
from weakref import WeakKeyDictionary

import anyio

from .._token import read_token_file
from ._limits import (
    DESCRIPTOR_RESERVE,
    MAX_CONNECTIONS,
    MAX_EVENTS_PER_FRAME,
    MAX_FRAME_BYTES,
    MAX_OPEN_RUNS,
    MAX_UNIDENTIFIED,
    RUN_DESCRIPTORS,
    RUN_IDLE_TIMEOUT,
    Limits,
)
from ._transport import Address, UnixAddress, default_socket_path, parse_tcp

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class ServeSource(Protocol):
    """Another source ``serve`` can write runs from, chosen by options of its own."""

    def add_options(self, serve: argparse.ArgumentParser) -> None: ...

    def chosen(self, args: argparse.Namespace) -> bool:
        """Whether the parsed options ask for this source."""
        ...

    def serve(self, args: argparse.Namespace) -> int: ...


_sources: WeakKeyDictionary[Commands, list[ServeSource]] = WeakKeyDictionary()


def add_serve_source(commands: Commands, source: ServeSource) -> None:
    """Let ``serve`` among ``commands`` read from ``source`` when its options choose it,
    whether ``serve`` is registered yet or not."""
    _sources.setdefault(commands, []).append(source)
    serve = commands.choices.get("serve")
    if serve is not None:
        source.add_options(serve)


def register(commands: Commands) -> None:
    """Add ``serve`` and ``status`` to the ``tracebus`` command."""
    serve = commands.add_parser(
        "serve",
        help="run the collector service: many producer processes, one writer per run",
        description="Accept events from remote observers and write each run's files under "
        "--out. SIGTERM or SIGINT stops accepting, drains every run, writes the metadata and "
        "exits 0.",
    )
    serve.add_argument("--out", type=Path, required=True, help="output dir of every run")
    _address_options(serve)
    serve.add_argument("--max-connections", type=_positive, default=MAX_CONNECTIONS)
    serve.add_argument("--max-open-runs", type=_positive, default=MAX_OPEN_RUNS)
    serve.add_argument("--max-frame-bytes", type=_positive, default=MAX_FRAME_BYTES)
    serve.add_argument("--max-events-per-frame", type=_positive, default=MAX_EVENTS_PER_FRAME)
    serve.add_argument(
        "--max-unidentified",
        type=_positive,
        default=MAX_UNIDENTIFIED,
        help="connections waiting to say hello; past it the oldest is dropped (%(default)s)",
    )
    serve.add_argument(
        "--run-idle-timeout",
        type=_seconds,
        default=RUN_IDLE_TIMEOUT,
        metavar="SECONDS",
        help="close a run no connected producer feeds after this long idle (%(default)g)",
    )
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    sources = _sources.setdefault(commands, [])
    for source in sources:
        source.add_options(serve)
    serve.set_defaults(handler=lambda args: _serve_from(sources, args))

    status = commands.add_parser(
        "status",
        help="print a collector service's counters (exit 1 if it does not answer)",
    )
    _address_options(status)
    status.add_argument("--json", action="store_true", help="print the counters as JSON")
    status.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (5)")
    status.set_defaults(handler=_status)


def _address_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--socket",
        type=Path,
        default=None,
        help=f"Unix socket (default: $TRACEBUS_SOCKET or {default_socket_path()})",
    )
    where.add_argument(
        "--tcp",
        metavar="HOST:PORT",
        default=None,
        help="TCP instead; HOST defaults to 127.0.0.1, any other needs --token-file",
    )
    parser.add_argument(
        "--token-file", type=Path, default=None, help="file holding the shared token"
    )


def _address(args: argparse.Namespace) -> Address:
    if args.tcp is not None:
        return parse_tcp(args.tcp)
    return UnixAddress(args.socket or default_socket_path())


def _token(args: argparse.Namespace) -> str | None:
    return read_token_file(args.token_file)


def _serve_from(sources: Sequence[ServeSource], args: argparse.Namespace) -> int:
    for source in sources:
        if source.chosen(args):
            return source.serve(args)
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    from ._server import Collector

    limits = Limits(
        max_frame_bytes=args.max_frame_bytes,
        max_events_per_frame=args.max_events_per_frame,
        max_connections=args.max_connections,
        max_unidentified=args.max_unidentified,
        max_open_runs=args.max_open_runs,
        run_idle_timeout=args.run_idle_timeout,
    )
    collector = Collector(args.out, address=_address(args), token=_token(args), limits=limits)
    prepare_process(args.log_level, limits)
    try:
        anyio.run(_serve_until_signal, collector)
    except BaseExceptionGroup as group:  # a task group's wrapping of one startup error
        raise sole_error(group) from None
    counters = collector.statistics()
    print(
        f"tracebus serve: stopped; {counters['events_written']} events written, "
        f"{collector.runs_left_open} runs left open, {counters['frames_rejected']} frames "
        "rejected",
        flush=True,
    )
    return 0


async def _serve_until_signal(collector: Any) -> None:
    log = logging.getLogger("tracebus.service")
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with anyio.create_task_group() as service:

            async def serve(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
                await collector.run(task_status=task_status)
                service.cancel_scope.cancel()  # stopped: no more signals to wait for

            address = await service.start(serve)
            print(
                f"tracebus serve: listening on {address}, writing to "
                f"{collector.output_dir.absolute()}",
                flush=True,
            )
            # the first signal drains every run; a second drops the connections still answered
            async for signum in signals:
                name = signal.Signals(signum).name
                if collector.stop_requested:
                    log.info("%s again: dropping the connections", name)
                else:
                    log.info("%s: draining every run", name)
                collector.stop()


def prepare_process(log_level: str, limits: Limits) -> None:
    """Set up the process a collector serves in: its log on stderr at ``log_level``, the
    open-file limit raised toward what ``limits`` may need, garbage collection tuned."""
    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s tracebus serve: %(message)s",
    )
    raise_descriptor_limit(limits)
    # The service allocates events by the ten thousand, almost none in reference cycles: with
    # the default gen-0 threshold (700) the collector rescans the queued events over and over.
    gc.freeze()
    gc.set_threshold(100_000, 50, 50)


def raise_descriptor_limit(limits: Limits) -> None:
    """Raise the soft limit on open files toward what ``limits`` may need, as far as the hard
    limit allows; say when it still falls short (runs past it are refused, not crashed on)."""
    import resource

    log = logging.getLogger("tracebus.service")
    needed = limits.descriptors_needed()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < needed:
        room = max(0, soft - DESCRIPTOR_RESERVE - limits.max_connections - limits.max_unidentified)
        log.warning(
            "open files are limited to %d (the limits set may need %d): about %d runs can be "
            "open at once; more are refused until some end",
            soft, needed, room // RUN_DESCRIPTORS,
        )  # fmt: skip


def _status(args: argparse.Namespace) -> int:
    from .._exceptions import ServiceError, ServiceUnavailableError
    from ._client import fetch_status

    address, token = _address(args), _token(args)

    async def fetch() -> dict[str, Any]:
        try:
            with anyio.fail_after(args.timeout):
                return await fetch_status(str(address), token=token)
        except TimeoutError:
            raise ServiceUnavailableError(
                f"the collector at {address} did not answer within {args.timeout:g}s"
            ) from None

    try:
        counters = anyio.run(fetch)
    except (ServiceUnavailableError, ServiceError) as exc:
        print(f"tracebus status: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(counters, indent=2))
        return 0
    for name, value in counters.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "none"
        print(f"{name}: {value}")
    return 0


def sole_error(error: BaseException) -> BaseException:
    """The one error inside nested task-group wrappers, for a one-line message."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
