"""``tracebus watch``: serve a live web page of the runs under some directories."""

from __future__ import annotations

import argparse
import signal
import socket
from pathlib import Path
from typing import Any

from ..._token import is_loopback, read_token_file, require_token

HELP = "serve a live web page of the runs under DIR..., updated as they run"
#: The port when none is given: a fixed one, so that a page open across a restart of the
#: watch finds it again.
PORT = 8765


def register(commands: Any) -> None:
    """Add ``watch`` to the ``tracebus`` subparsers ``commands``."""
    watch: argparse.ArgumentParser = commands.add_parser(
        "watch",
        help=HELP,
        description="Serve a web page of the runs under each DIR (output directories, as "
        "tracebus runs reads them) and of each run: its timeline, failures, log lines, "
        "tokens and cost, pushed to the page as the run's files grow. The files are only "
        "read. Prints the address it serves on one line; SIGINT or SIGTERM stops it.",
        epilog="exit codes: 0 stopped by a signal; 2 bad usage (one line on stderr).",
    )
    watch.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="an output directory")
    watch.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (127.0.0.1); any other than loopback needs --token-file",
    )
    watch.add_argument(
        "--port", type=_port, default=PORT, help="port (%(default)s; 0: any free one)"
    )
    watch.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="file holding the token a browser must present (open the page with ?token=...)",
    )
    watch.set_defaults(handler=_watch)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65_535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


def _watch(args: argparse.Namespace) -> int:
    token = read_token_file(args.token_file)
    require_token(args.host, token)
    for directory in args.dirs:
        if directory.exists() and not directory.is_dir():
            raise ValueError(f"{directory} is not a directory")
    try:
        import uvicorn

        from ._app import create_app
        from ._paths import Roots
    except ImportError as exc:
        raise ValueError(
            f"tracebus watch needs its web server ({exc}): pip install 'tracebus[watch]'"
        ) from None
    listener = _listen(args.host, args.port)
    app = create_app(Roots(args.dirs), token=token, loopback=is_loopback(args.host))
    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"http://{shown}:{port}/", flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    # uvicorn stops on SIGINT or SIGTERM, then raises the signal again for the handler that
    # was there before: this one, which makes the stop an exit 0 (even before uvicorn runs)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stopped)
    uvicorn.Server(config).run(sockets=[listener])
    return 0


def _stopped(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port``. Raises OSError when it cannot."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(128)
    except OSError:
        listener.close()
        raise
    return listener
