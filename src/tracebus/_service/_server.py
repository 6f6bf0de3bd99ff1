"""The collector on sockets: listening, the hello, limits, and each connection's frames.

Per connection, a reader task decodes frames and hands batches to the run router, and a
reply task acknowledges each batch once it is written, in order, so an ``Ack`` (or an error
naming a batch) tells the client which batches it may forget. Only the reply task writes to
the socket once the hello is done.
"""

from __future__ import annotations

import hmac
import logging
import os
import socket
import stat
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from anyio.abc import ByteStream, Listener, SocketAttribute, TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._exceptions import InvalidIdError, ProtocolError, ServiceError
from .._layout import validate_id
from ._limits import PROTOCOL_VERSION, Limits
from ._protocol import (
    Ack,
    Batch,
    ErrorReply,
    Hello,
    StatusReply,
    StatusRequest,
    Welcome,
    decode_client_message,
    encode,
    software,
)
from ._router import Receipt, RunRouter
from ._transport import Address, FrameStream, TcpAddress, UnixAddress, default_socket_path

log = logging.getLogger("tracebus.service")

#: Error codes after which the service closes the connection.
FATAL_CODES = frozenset(
    {
        "bad_hello",
        "bad_token",
        "unsupported_version",
        "hello_timeout",
        "too_many_connections",
        "frame_too_large",
        "too_many_events",
        "too_many_runs",
        "shutting_down",
    }
)
_REPLY_BACKLOG = 256
_ACK_EVERY = 8  # batches acknowledged at least this often while more keep coming
_REFUSAL_GRACE = 2.0


class Collector:
    """The collector service: accepts producers on a Unix socket (default) or TCP, routes
    their runs to single writers under ``output_dir``.

    ``run()`` serves until ``stop()``; then it stops accepting and reading, drains every run
    (files fsynced, metadata written) and returns.

    Raises ValueError when a TCP address other than loopback comes without a token.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        *,
        address: Address | None = None,
        token: str | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.address: Address = address or UnixAddress(default_socket_path())
        if isinstance(self.address, TcpAddress) and not self.address.is_loopback and not token:
            raise ValueError(
                f"listening on {self.address.host} (not loopback) needs a token: use --token-file"
            )
        self.limits = limits or Limits()
        self._token = token.encode() if token else None
        self.errors: Counter[str] = Counter()
        self.clients = 0
        self.connections = 0
        self.frames_received = 0
        self.events_rejected = 0
        self._stopping = False
        self._stop_requested = False
        self._stop: anyio.Event | None = None
        self._accepting: anyio.CancelScope | None = None
        self._router: RunRouter | None = None
        self._open: set[_Connection] = set()
        self._started = time.monotonic()

    async def run(self, *, task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until ``stop()``, then drain; reports the bound address when listening.

        Raises OSError when the address cannot be listened on (another collector is there).
        """
        self._stop = anyio.Event()
        if self._stop_requested:
            self._stop.set()
        async with RunRouter(self.output_dir, max_open_runs=self.limits.max_open_runs) as router:
            self._router = router
            listener = await self._listen()
            try:
                async with anyio.create_task_group() as connections:
                    await connections.start(self._accept, listener, connections)
                    task_status.started(str(self.address))
                    await self._stop.wait()
                    self._stopping = True
                    assert self._accepting is not None
                    self._accepting.cancel()
                    for connection in list(self._open):
                        connection.stop_reading()
                    await router.aclose()
            finally:
                if isinstance(self.address, UnixAddress):
                    self.address.path.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop accepting and reading; ``run()`` then drains every run and returns."""
        self._stop_requested = True
        if self._stop is not None:
            self._stop.set()

    def statistics(self) -> dict[str, Any]:
        """The counters ``tracebus status`` prints."""
        runs = self._router.statistics() if self._router is not None else {}
        return {
            "version": software(),
            "address": str(self.address),
            "output_dir": str(self.output_dir.absolute()),
            "uptime_seconds": round(time.monotonic() - self._started, 3),
            "clients": self.clients,
            "connections_total": self.connections,
            **runs,
            "events_rejected": self.events_rejected,
            "frames_received": self.frames_received,
            "frames_rejected": sum(self.errors.values()),
            "errors": dict(sorted(self.errors.items())),
        }

    # -- listening ----------------------------------------------------------------------------

    async def _listen(self) -> Listener[Any]:
        address = self.address
        if isinstance(address, TcpAddress):
            tcp = await anyio.create_tcp_listener(local_host=address.host, local_port=address.port)
            port = tcp.listeners[0].extra(SocketAttribute.local_port)
            self.address = TcpAddress(address.host, port)
            return tcp
        path = address.path
        await anyio.to_thread.run_sync(_claim_socket_path, path)
        previous = os.umask(0o177)  # the socket is never reachable by others, not even briefly
        try:
            return await anyio.create_unix_listener(path, mode=0o600)
        finally:
            os.umask(previous)

    async def _accept(
        self,
        listener: Listener[Any],
        connections: TaskGroup,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        with anyio.CancelScope() as self._accepting:
            task_status.started()
            async with listener:
                await listener.serve(self._handle, task_group=connections)

    # -- one connection -------------------------------------------------------------------------

    async def _handle(self, stream: ByteStream) -> None:
        self.clients += 1
        self.connections += 1
        try:
            async with stream:
                frames = FrameStream(stream, self.limits.max_frame_bytes)
                if self.clients > self.limits.max_connections:
                    # read the hello first: closing on unread bytes resets a TCP connection,
                    # and the client would never see why
                    with anyio.move_on_after(_REFUSAL_GRACE):
                        try:
                            await frames.receive()
                        except (ProtocolError, anyio.EndOfStream):
                            pass
                    await self._refuse(
                        frames,
                        ServiceError(
                            "too_many_connections",
                            f"the service holds its limit of {self.limits.max_connections} "
                            "connections",
                        ),
                    )
                    return
                hello = await self._hello(frames)
                if hello is None:
                    return
                connection = _Connection(self, frames, hello.producer)
                self._open.add(connection)
                try:
                    await connection.serve()
                finally:
                    self._open.discard(connection)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError):
            pass  # the client went away; what it did not see acknowledged it sends again
        except Exception:
            self.errors["internal"] += 1
            log.exception("a connection failed")
        finally:
            self.clients -= 1

    async def _hello(self, frames: FrameStream) -> Hello | None:
        timeout = self.limits.hello_timeout
        refusal = ServiceError("hello_timeout", f"no hello within {timeout:g}s")
        with anyio.move_on_after(timeout):
            checked = await self._check_hello(frames)
            if checked is None:
                return None
            if isinstance(checked, ServiceError):
                refusal = checked
            elif self._stopping:
                refusal = ServiceError("shutting_down", "the service is shutting down")
            else:
                welcome = Welcome(
                    protocol=PROTOCOL_VERSION,
                    server=software(),
                    max_frame_bytes=self.limits.max_frame_bytes,
                    max_events_per_frame=self.limits.max_events_per_frame,
                )
                await frames.send(encode(welcome))
                return checked
        await self._refuse(frames, refusal)
        return None

    async def _check_hello(self, frames: FrameStream) -> Hello | ServiceError | None:
        try:
            message = decode_client_message(await frames.receive())
        except anyio.EndOfStream:
            return None  # a probe: connected and left
        except ProtocolError as exc:
            return ServiceError("bad_hello", exc.message) if exc.code == "bad_frame" else exc
        if not isinstance(message, Hello):
            return ServiceError("bad_hello", "the first message must be a hello")
        if message.protocol != PROTOCOL_VERSION:
            return ServiceError(
                "unsupported_version",
                f"this service speaks protocol {PROTOCOL_VERSION}, not {message.protocol}",
            )
        try:
            validate_id(message.producer, "producer")
        except InvalidIdError as exc:
            return ServiceError("bad_hello", str(exc))
        if self._token is not None and not hmac.compare_digest(
            (message.token or "").encode(), self._token
        ):
            return ServiceError("bad_token", "the token is missing or wrong")
        return message

    async def _refuse(self, frames: FrameStream, error: ServiceError) -> None:
        self.errors[error.code] += 1
        try:
            await frames.send(
                encode(ErrorReply(code=error.code, message=error.message, fatal=True))
            )
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass


class _AckItem:
    __slots__ = ("id", "receipt")

    def __init__(self, batch_id: int, receipt: Receipt) -> None:
        self.id = batch_id
        self.receipt = receipt


_Reply = _AckItem | ErrorReply | StatusRequest


class _Connection:
    """One producer's connection after its hello."""

    def __init__(self, collector: Collector, frames: FrameStream, producer: str) -> None:
        self._collector = collector
        self._frames = frames
        self._producer = producer
        self._reading = anyio.CancelScope()
        self._gone = False

    def stop_reading(self) -> None:
        self._reading.cancel()

    async def serve(self) -> None:
        send, receive = anyio.create_memory_object_stream[_Reply](_REPLY_BACKLOG)
        async with anyio.create_task_group() as replies:
            replies.start_soon(self._reply, receive)
            async with send:
                last: ErrorReply | None = None
                with self._reading:
                    last = await self._read(send)
                if last is None and self._reading.cancel_called and not self._gone:
                    last = ErrorReply(
                        code="shutting_down", message="the service is shutting down", fatal=True
                    )
                if last is not None:
                    await send.send(last)

    async def _read(self, replies: MemoryObjectSendStream[_Reply]) -> ErrorReply | None:
        """Read frames until the client leaves (None) or breaks a limit (the fatal reply)."""
        collector, frames = self._collector, self._frames
        router = collector._router
        assert router is not None
        max_events = collector.limits.max_events_per_frame
        while True:
            try:
                body = await frames.receive()
            except anyio.EndOfStream:
                return None
            except ProtocolError as exc:
                collector.errors[exc.code] += 1
                return _reply_to(exc, None, fatal=True) if exc.code in FATAL_CODES else None
            collector.frames_received += 1
            try:
                message = decode_client_message(body)
            except ProtocolError as exc:
                collector.errors[exc.code] += 1
                await replies.send(_reply_to(exc, None))
                continue
            if isinstance(message, Batch):
                try:
                    if len(message.events) > max_events:
                        raise ServiceError(
                            "too_many_events",
                            f"a batch of {len(message.events)} events is over the limit of "
                            f"{max_events}",
                        )
                    receipt = await router.submit(message, self._producer)
                except ServiceError as exc:
                    collector.errors[exc.code] += 1
                    collector.events_rejected += len(message.events)
                    fatal = exc.code in FATAL_CODES
                    reply = _reply_to(exc, message.id, fatal=fatal)
                    if fatal:
                        return reply
                    await replies.send(reply)
                    continue
                await replies.send(_AckItem(message.id, receipt))
            elif isinstance(message, StatusRequest):
                await replies.send(message)
            else:
                collector.errors["bad_frame"] += 1
                await replies.send(
                    ErrorReply(code="bad_frame", message="a connection says hello only once")
                )

    async def _reply(self, receive: MemoryObjectReceiveStream[_Reply]) -> None:
        frames = self._frames
        pending: int | None = None
        unsent = 0
        async with receive:
            try:
                async for item in receive:
                    if isinstance(item, _AckItem):
                        await item.receipt.wait()
                        pending, unsent = item.id, unsent + 1
                        if unsent >= _ACK_EVERY or not receive.statistics().current_buffer_used:
                            await frames.send(encode(Ack(id=pending)))
                            pending, unsent = None, 0
                        continue
                    if pending is not None:
                        await frames.send(encode(Ack(id=pending)))
                        pending, unsent = None, 0
                    if isinstance(item, StatusRequest):
                        counters = self._collector.statistics()
                        await frames.send(encode(StatusReply(counters=counters)))
                    else:
                        await frames.send(encode(item))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                # The client is gone: it resends what it did not see acknowledged.
                self._gone = True
                self._reading.cancel()
                async for _ in receive:  # let the reader finish without blocking
                    pass


def _reply_to(error: ServiceError, batch_id: int | None, *, fatal: bool = False) -> ErrorReply:
    return ErrorReply(code=error.code, message=error.message, id=batch_id, fatal=fatal)


def _claim_socket_path(path: Path) -> None:
    """Make ``path``'s directory; remove a stale socket there; refuse to take over a live
    one or another file.

    Raises OSError (FileExistsError in those two cases; PermissionError for a directory of
    another user's that is not sticky, where the socket could be swapped).
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    where = path.parent.stat()
    if where.st_uid != os.getuid() and not where.st_mode & stat.S_ISVTX:
        raise PermissionError(f"{path.parent} belongs to another user: choose another --socket")
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink(missing_ok=True)
            return
    raise FileExistsError(f"a service is already listening on {path}")
