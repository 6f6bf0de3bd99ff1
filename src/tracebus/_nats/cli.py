"""``tracebus serve --nats URL --out DIR``: the JetStream collector on the command line.

Secrets are read from files or the environment only; a URL carrying a password is refused.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from .._service._limits import Limits
from .._service.cli import (
    Commands,
    add_serve_source,
    prepare_process,
    run_sinks_of,
    sole_error,
)
from ._settings import (
    ALL_RUNS,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DURABLE,
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_BYTES,
    DEFAULT_PREFIX,
    DEFAULT_STREAM,
    NatsSettings,
    NatsStream,
    Partition,
    tls_context,
    url_has_secret,
)


def add_connection_options(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The options naming a NATS server, its credentials, TLS and the stream."""
    group = parser.add_argument_group("NATS JetStream")
    group.add_argument(
        "--nats", metavar="URL", help="read runs from NATS JetStream: nats://HOST:PORT[,...]"
    )
    group.add_argument("--nats-user", metavar="NAME", help="user (or $TRACEBUS_NATS_USER)")
    group.add_argument(
        "--nats-password-file", type=Path, metavar="FILE", help="file holding the password"
    )
    group.add_argument("--nats-token-file", type=Path, metavar="FILE", help="file holding a token")
    group.add_argument("--nats-tls-ca", type=Path, metavar="FILE", help="CA bundle to trust")
    group.add_argument("--nats-tls-cert", type=Path, metavar="FILE", help="client certificate")
    group.add_argument("--nats-tls-key", type=Path, metavar="FILE", help="client key")
    group.add_argument(
        "--nats-connect-timeout",
        type=float,
        default=DEFAULT_CONNECT_TIMEOUT,
        metavar="SECONDS",
        help="give up reaching NATS at start after this long (%(default)g)",
    )
    group.add_argument(
        "--nats-stream", default=DEFAULT_STREAM, metavar="NAME", help="stream (%(default)s)"
    )
    group.add_argument(
        "--nats-subject-prefix",
        default=DEFAULT_PREFIX,
        metavar="PREFIX",
        help="subject prefix (%(default)s)",
    )
    group.add_argument(
        "--nats-max-age",
        type=float,
        default=DEFAULT_MAX_AGE,
        metavar="SECONDS",
        help="retention by age when creating the stream (%(default)g)",
    )
    group.add_argument(
        "--nats-max-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        metavar="BYTES",
        help="retention by size when creating the stream (%(default)d)",
    )
    return group


def settings_from(args: argparse.Namespace) -> NatsSettings:
    """Settings from the parsed options and the environment.

    Raises ValueError for a URL with a password in it or bad values; OSError for an
    unreadable file.
    """
    if url_has_secret(args.nats):
        raise ValueError(
            "the NATS URL holds credentials, which the command line shows to every user: "
            "use --nats-user with --nats-password-file, --nats-token-file, or the "
            "TRACEBUS_NATS_* environment variables"
        )
    tls = None
    if args.nats_tls_ca or args.nats_tls_cert:
        tls = tls_context(args.nats_tls_ca, args.nats_tls_cert, args.nats_tls_key)
    stream = NatsStream(
        name=args.nats_stream,
        subject_prefix=args.nats_subject_prefix,
        max_age=args.nats_max_age,
        max_bytes=args.nats_max_bytes,
    )
    settings = NatsSettings.from_url(
        args.nats, tls=tls, stream=stream, connect_timeout=args.nats_connect_timeout
    )
    return settings.with_credentials(
        user=args.nats_user,
        password_file=args.nats_password_file,
        token_file=args.nats_token_file,
    )


def _serve(args: argparse.Namespace) -> int:
    if args.socket is not None or args.tcp is not None:
        raise ValueError("--nats reads from NATS: it takes no --socket or --tcp")
    settings = settings_from(args)
    try:
        from ._collector import NatsCollector
    except ImportError as exc:
        raise ValueError(
            f"the NATS transport needs nats-py ({exc}): pip install 'tracebus[nats]'"
        ) from exc
    collector = NatsCollector(
        settings,
        args.out,
        durable=args.nats_durable,
        partition=args.partition,
        run_idle_timeout=args.run_idle_timeout,
        run_sinks=run_sinks_of(args),
    )
    prepare_process(args.log_level, Limits(max_connections=1, max_unidentified=1))  # its runs

    async def serve() -> None:
        consuming = anyio.Event()
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with anyio.create_task_group() as tasks:

                async def consume(*, task_status: TaskStatus[None]) -> None:
                    await collector.run(task_status=task_status)
                    tasks.cancel_scope.cancel()  # stopped: no more signals to wait for

                async def announce() -> None:
                    await tasks.start(consume)
                    consuming.set()
                    print(
                        f"tracebus serve: consuming stream {settings.stream.name} from "
                        f"{', '.join(settings.servers)} as {collector.durable}, writing to "
                        f"{args.out.absolute()}",
                        flush=True,
                    )

                tasks.start_soon(announce)
                # the first signal stops it gracefully (everything fetched written and
                # acknowledged); a second, or one while it waits for its lease, at once
                async for _ in signals:
                    if consuming.is_set() and not collector.stopping:
                        collector.stop()
                    else:
                        tasks.cancel_scope.cancel()
                        break

    try:
        anyio.run(serve, backend="asyncio")
    except BaseExceptionGroup as group:
        raise sole_error(group) from None
    counters = collector.run_statistics()
    stats = collector.statistics()
    print(
        f"tracebus serve: stopped; {counters.get('events_written', 0)} events written, "
        f"{collector.runs_left_open} runs left open, {stats.messages} messages read, "
        f"{stats.rejected} messages refused",
        flush=True,
    )
    return 0


class _JetStreamSource:
    """``serve --nats URL``: runs read from JetStream instead of sockets."""

    def add_options(self, serve: argparse.ArgumentParser) -> None:
        group = add_connection_options(serve)
        group.add_argument(
            "--nats-durable",
            default=DEFAULT_DURABLE,
            metavar="NAME",
            help="with --nats: the durable consumer (%(default)s)",
        )
        group.add_argument(
            "--partition",
            type=Partition.parse,
            default=ALL_RUNS,
            metavar="I/N",
            help="with --nats: be collector I of N sharing the stream, each writing its own runs",
        )

    def chosen(self, args: argparse.Namespace) -> bool:
        return bool(args.nats)

    def serve(self, args: argparse.Namespace) -> int:
        return _serve(args)


def register(commands: Commands) -> None:
    """Add the NATS options to the collector service's ``serve``, registered before or after."""
    add_serve_source(commands, _JetStreamSource())
