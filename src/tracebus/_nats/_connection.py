"""Connecting to NATS and making sure the runs' stream exists.

nats-py runs on asyncio only; everything here refuses other backends with a clear error
instead of failing somewhere inside the client.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from .._exceptions import BackendError, ServiceUnavailableError
from .._loop import on_asyncio
from ._settings import NatsSettings, NatsStream

Callback = Callable[[], Awaitable[None]]
log = logging.getLogger("tracebus.nats")

#: Seconds between two attempts to reach a server again after the connection was lost.
RECONNECT_WAIT = 0.25
CLOSE_TIMEOUT = 2.0


def require_asyncio() -> None:
    """Raises BackendError unless the running backend is asyncio."""
    if not on_asyncio():
        raise BackendError(
            "the NATS transport runs on asyncio only (nats-py has no trio support); run it "
            "under asyncio, or use the collector's socket transport from trio"
        )


async def open_connection(
    settings: NatsSettings,
    *,
    on_disconnect: Callback | None = None,
    on_reconnect: Callback | None = None,
    reconnect: bool = True,
) -> Client:
    """A connection; with ``reconnect`` it reconnects by itself for as long as it is open,
    else a lost connection is closed (and ``on_disconnect`` called).

    Raises BackendError off asyncio; ServiceUnavailableError when no server answered within
    ``settings.connect_timeout`` seconds (the last error, e.g. a refused login, is named).
    """
    require_asyncio()
    errors: list[BaseException] = []

    async def record_error(exc: Exception) -> None:
        errors.append(exc)

    async def disconnected() -> None:
        if on_disconnect is not None:
            await on_disconnect()

    async def reconnected() -> None:
        if on_reconnect is not None:
            await on_reconnect()

    client = Client()
    try:
        with anyio.fail_after(settings.connect_timeout):
            await client.connect(
                servers=list(settings.servers),
                name=settings.name,
                connect_timeout=max(1, round(settings.connect_timeout)),
                allow_reconnect=reconnect,
                # without reconnecting: try each server twice, then fail fast
                max_reconnect_attempts=-1 if reconnect else 1,
                reconnect_time_wait=RECONNECT_WAIT,  # type: ignore[arg-type]
                user=settings.user,
                password=settings.password,
                token=settings.token,
                tls=settings.tls,
                tls_hostname=settings.tls_hostname,
                error_cb=record_error,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                closed_cb=disconnected,
            )
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        await close_connection(client)
        # A refused login can reach us as a reset connection when the server closes before
        # its -ERR is read; any attempt that did read it says more than the last one.
        refusals = [error for error in errors if _is_refusal(error)]
        cause = refusals[0] if refusals else (errors[-1] if errors else exc)
        raise ServiceUnavailableError(
            f"cannot reach NATS at {', '.join(settings.servers)}: {_describe(cause)}"
        ) from cause
    return client


async def close_connection(client: Client) -> None:
    """Close ``client``, shielded from cancellation and given up after ``CLOSE_TIMEOUT``.

    nats-py's close() can hang for good on a TLS connection (after a refused first
    connection, or when its reading task is already gone); nothing is left to flush by then
    that waiting would save.
    """
    with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT) as waited:
        await client.close()
    if waited.cancelled_caught:
        log.warning("the NATS connection did not close within %g s; left behind", CLOSE_TIMEOUT)


def _is_refusal(exc: BaseException) -> bool:
    return isinstance(exc, nats.errors.AuthorizationError) or "authorization" in str(exc).lower()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if _is_refusal(exc):
        return "the server refused the credentials (authorization violation)"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return text


async def ensure_stream(js: JetStreamContext, stream: NatsStream) -> None:
    """Create the stream with ``stream``'s limits unless it exists; an existing stream is used
    as it is, provided it holds the runs' subjects.

    Raises ServiceUnavailableError when JetStream does not answer or refuses the stream.
    """
    try:
        try:
            info = await js.stream_info(stream.name)
        except nats.js.errors.NotFoundError:
            try:
                info = await js.add_stream(_config(stream))
            except nats.js.errors.BadRequestError:
                # another process created it first, perhaps with other limits
                info = await js.stream_info(stream.name)
    except nats.js.errors.ServiceUnavailableError as exc:
        raise ServiceUnavailableError(f"JetStream is not available: {exc.description}") from exc
    except (nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError) as exc:
        raise ServiceUnavailableError(
            "JetStream does not answer: is the server started with JetStream (-js)?"
        ) from exc
    except nats.js.errors.APIError as exc:
        raise ServiceUnavailableError(
            f"JetStream refused stream {stream.name}: {exc.description}"
        ) from exc
    except TimeoutError as exc:  # nats-py's and asyncio's alike
        raise ServiceUnavailableError("JetStream did not answer in time") from exc
    subjects = info.config.subjects or []
    if stream.subjects not in subjects:
        raise ServiceUnavailableError(
            f"stream {stream.name} exists but does not hold {stream.subjects} "
            f"(its subjects: {', '.join(subjects) or 'none'})"
        )


def _config(stream: NatsStream) -> StreamConfig:
    return StreamConfig(
        name=stream.name,
        description="tracebus run events",
        subjects=[stream.subjects],
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_age=stream.max_age,
        max_bytes=stream.max_bytes,
        storage=StorageType.FILE,
        num_replicas=stream.replicas,
        duplicate_window=stream.duplicate_window,
    )
