"""``tracebus serve --nats URL --out DIR``: the JetStream collector on the command line.

Secrets are read from files or the environment only; a URL carrying a password is refused.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

import anyio

from ._settings import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DURABLE,
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_BYTES,
    DEFAULT_PREFIX,
    DEFAULT_STREAM,
    NatsSettings,
    Partition,
    StreamSettings,
    tls_context,
    url_has_secret,
)


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """The options naming a NATS server, its credentials, TLS and the stream."""
    group = parser.add_argument_group("NATS JetStream")
    group.add_argument("--nats", metavar="URL", help="NATS server(s): nats://HOST:PORT[,...]")
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
    group.add_argument("--nats-stream", default=DEFAULT_STREAM, help="stream (%(default)s)")
    group.add_argument(
        "--nats-subject-prefix", default=DEFAULT_PREFIX, help="subject prefix (%(default)s)"
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
    stream = StreamSettings(
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
    if not args.nats:
        raise ValueError("--nats URL is required")
    settings = settings_from(args)
    try:
        from ._collector import NatsCollector
    except ImportError as exc:
        raise ValueError(
            f"the NATS transport needs nats-py ({exc}): pip install 'tracebus[nats]'"
        ) from exc
    collector = NatsCollector(
        settings, args.out, durable=args.nats_durable, partition=args.partition
    )
    logging.basicConfig(level=logging.INFO, format="tracebus serve: %(message)s")

    async def serve() -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with anyio.create_task_group() as tasks:
                await tasks.start(collector.run)
                print(
                    f"tracebus serve: consuming {settings.stream.name} from "
                    f"{', '.join(settings.servers)} into {args.out} as {collector.durable}",
                    file=sys.stderr,
                    flush=True,
                )
                async for _ in signals:
                    tasks.cancel_scope.cancel()
                    break

    try:
        anyio.run(serve, backend="asyncio")
    except BaseExceptionGroup as group:
        raise _sole(group) from None
    return 0


def _sole(error: BaseException) -> BaseException:
    """The one error inside nested task-group wrappers, for a one-line message."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve", help="collect runs: write each run's files from a NATS JetStream stream"
    )
    serve.add_argument("--out", type=Path, default=Path("runs"), help="output dir (runs)")
    add_connection_options(serve)
    serve.add_argument(
        "--nats-durable",
        default=DEFAULT_DURABLE,
        metavar="NAME",
        help="durable consumer name (%(default)s)",
    )
    serve.add_argument(
        "--partition",
        type=Partition.parse,
        default=Partition(),
        metavar="I/N",
        help="be collector I of N sharing the stream, each writing its own runs (0/1)",
    )
    serve.set_defaults(handler=_serve)
