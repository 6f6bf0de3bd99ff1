"""The collector on sockets: listening, the hello, limits, and each connection's frames.

Per connection, a reader task decodes frames and hands batches to the run router, and a
reply task acknowledges each batch once it is written, in order, so an ``Ack`` (or an error
naming a batch) tells the client which batches it may forget. Only the reply task writes to
the socket once the hello is done. A batch the router could not write (or could not take
now) is never refused: the connection gets a fatal error naming no batch and is closed, and
the client sends everything not acknowledged again.

Until its hello is accepted a connection is unidentified: it may send one small frame, it
has a few seconds to do so, and such connections have their own limit, past which the oldest
of them is dropped, so connections that never speak cannot keep producers out. A producer
id belongs to one connection at a time.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import time
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any, cast

import anyio
import anyio.to_thread
from anyio.abc import (
    ByteStream,
    SocketAttribute,
    SocketListener,
    SocketStream,
    TaskGroup,
    TaskStatus,
)
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from anyio.streams.stapled import MultiListener

from .._exceptions import InvalidIdError, ProtocolError, ServiceError
from .._layout import validate_id
from .._token import require_token, token_matches
from ._codes import ErrorCode, defers, is_fatal
from ._limits import PROTOCOL_VERSION, Limits
from ._protocol import (
    Ack,
    Batch,
    ErrorReply,
    Hello,
    StatusReply,
    StatusRequest,
    Welcome,
    batch_id_of,
    decode_client_message,
    encode,
    software,
)
from ._router import Receipt, RunRouter
from ._transport import Address, FrameStream, TcpAddress, UnixAddress, default_socket_path

log = logging.getLogger("tracebus.service")

_REPLY_BACKLOG = 256
_ACK_EVERY = 8  # batches acknowledged at least this often while more keep coming
_REFUSAL_GRACE = 2.0
_ACCEPT_RETRY = 0.1
#: accept() errors that pass once descriptors or memory are free again
_SHORTAGES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Collector:
    """The collector service: accepts producers on a Unix socket (default) or TCP, routes
    their runs to single writers under ``output_dir``.

    ``run()`` serves until ``stop()``; then it stops accepting and reading, drains every run
    (files fsynced, metadata written), gives the connections ``shutdown_grace`` seconds to
    read their last replies, and returns.

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
        if isinstance(self.address, TcpAddress):
            require_token(self.address.host, token)
        self.limits = limits or Limits()
        self._token = token or None
        self.errors: Counter[str] = Counter()
        self.clients = 0
        self.connections = 0
        self.frames_received = 0
        self.events_rejected = 0
        self.events_deferred = 0
        self._stopping = False
        self._stop_requested = False
        self._stop: anyio.Event | None = None
        self._accepting: anyio.CancelScope | None = None
        self._connections: TaskGroup | None = None
        self._router: RunRouter | None = None
        self._open: set[_Connection] = set()
        self._producers: dict[str, _Connection] = {}
        # connections still to say hello, oldest first; each one's scope drops it
        self._unidentified: OrderedDict[anyio.CancelScope, None] = OrderedDict()
        self._started = time.monotonic()
        #: Runs not ended that the service still held when it stopped.
        self.runs_left_open = 0

    async def run(self, *, task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until ``stop()``, then drain; reports the bound address when listening.

        Raises OSError when the address cannot be listened on (another collector is there,
        or the socket's directory is not safe).
        """
        self._stop = anyio.Event()
        if self._stop_requested:
            self._stop.set()
        limits = self.limits
        async with RunRouter(
            self.output_dir,
            max_open_runs=limits.max_open_runs,
            idle_timeout=limits.run_idle_timeout,
        ) as router:
            self._router = router
            listener = await self._listen()
            try:
                async with anyio.create_task_group() as connections:
                    self._connections = connections
                    await connections.start(self._accept, listener, connections)
                    task_status.started(str(self.address))
                    await self._stop.wait()
                    self._stopping = True
                    assert self._accepting is not None
                    self._accepting.cancel()
                    for connection in list(self._open):
                        connection.stop_reading()
                    for scope in list(self._unidentified):
                        scope.cancel()
                    await router.aclose()
                    self.runs_left_open = router.runs_left_open
                    # a client that does not read its last replies is not waited for
                    connections.cancel_scope.deadline = min(
                        connections.cancel_scope.deadline,
                        anyio.current_time() + limits.shutdown_grace,
                    )
            finally:
                if isinstance(self.address, UnixAddress):
                    self.address.path.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop accepting and reading; ``run()`` then drains every run and returns. Called
        again, it drops the connections at once instead of letting them read their replies."""
        if self._stop_requested and self._connections is not None:
            self._connections.cancel_scope.deadline = anyio.current_time()
        self._stop_requested = True
        if self._stop is not None:
            self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def statistics(self) -> dict[str, Any]:
        """The counters ``tracebus status`` prints."""
        runs = self._router.statistics() if self._router is not None else {}
        return {
            "version": software(),
            "address": str(self.address),
            "output_dir": str(self.output_dir.absolute()),
            "uptime_seconds": round(time.monotonic() - self._started, 3),
            "clients": self.clients,
            "unidentified": len(self._unidentified),
            "connections_total": self.connections,
            **runs,
            "events_rejected": self.events_rejected,
            "events_deferred": self.events_deferred,
            "frames_received": self.frames_received,
            "frames_rejected": sum(self.errors.values()),
            "errors": dict(sorted(self.errors.items())),
        }

    # -- listening ----------------------------------------------------------------------------

    async def _listen(self) -> SocketListener | MultiListener[SocketStream]:
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
        listener: SocketListener | MultiListener[SocketStream],
        connections: TaskGroup,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners = (
            [cast(SocketListener, one) for one in listener.listeners]
            if isinstance(listener, MultiListener)
            else [listener]
        )
        with anyio.CancelScope() as self._accepting:
            task_status.started()
            async with listener, anyio.create_task_group() as accepting:
                for one in listeners:
                    accepting.start_soon(self._accept_from, one, connections)

    async def _accept_from(self, listener: SocketListener, connections: TaskGroup) -> None:
        short = False
        while True:
            try:
                stream = await listener.accept()
            except (OSError, anyio.BrokenResourceError) as exc:
                cause = exc if isinstance(exc, OSError) else exc.__cause__
                if not isinstance(cause, OSError) or cause.errno not in _SHORTAGES:
                    raise
                if not short:
                    log.error("cannot accept connections (%s); trying again", cause)
                    short = True
                self.errors["accept_failed"] += 1
                await anyio.sleep(_ACCEPT_RETRY)
                continue
            short = False
            connections.start_soon(self._handle, stream)

    # -- one connection -------------------------------------------------------------------------

    async def _handle(self, stream: ByteStream) -> None:
        self.connections += 1
        waiting = anyio.CancelScope()
        self._unidentified[waiting] = None
        if len(self._unidentified) > self.limits.max_unidentified:
            oldest = next(iter(self._unidentified))
            self._unidentified.pop(oldest)
            oldest.cancel()
        try:
            async with stream:
                frames = FrameStream(stream, self.limits.max_hello_bytes)
                hello: Hello | None = None
                with waiting:
                    hello = await self._hello(frames)
                self._unidentified.pop(waiting, None)
                if waiting.cancelled_caught:
                    await self._refuse(frames, self._dropped_before_hello())
                if hello is None:
                    return
                frames.max_frame_bytes = self.limits.max_frame_bytes
                connection = _Connection(self, frames, hello.producer)
                self._producers[hello.producer] = connection
                self.clients += 1
                self._open.add(connection)
                try:
                    await connection.serve()
                finally:
                    self._open.discard(connection)
                    self.clients -= 1
                    if self._producers.get(hello.producer) is connection:
                        del self._producers[hello.producer]
                    if self._router is not None:
                        self._router.leave(connection)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError):
            pass  # the client went away; what it did not see acknowledged it sends again
        except Exception:
            self.errors["internal"] += 1
            log.exception("a connection failed")
        finally:
            self._unidentified.pop(waiting, None)

    async def _hello(self, frames: FrameStream) -> Hello | None:
        """The connection's accepted hello, with its welcome sent; None once it was refused,
        timed out or left."""
        timeout = self.limits.hello_timeout
        refusal: ServiceError | None = ServiceError(
            ErrorCode.HELLO_TIMEOUT, f"no hello within {timeout:g}s"
        )
        with anyio.move_on_after(timeout):
            checked = await self._check_hello(frames)
            if checked is None:
                return None
            refusal = checked if isinstance(checked, ServiceError) else self._admit(checked)
            if isinstance(checked, Hello) and refusal is None:
                welcome = Welcome(
                    protocol=PROTOCOL_VERSION,
                    server=software(),
                    max_frame_bytes=self.limits.max_frame_bytes,
                    max_events_per_frame=self.limits.max_events_per_frame,
                )
                await frames.send(encode(welcome))
                return checked
        if refusal is not None:
            await self._refuse(frames, refusal)
        return None

    def _dropped_before_hello(self) -> ServiceError:
        if self._stopping:
            return ServiceError(ErrorCode.SHUTTING_DOWN, "the service is shutting down")
        return ServiceError(
            ErrorCode.TOO_MANY_CONNECTIONS,
            f"more than {self.limits.max_unidentified} connections were waiting to say hello: "
            "the oldest are dropped",
        )

    def _admit(self, hello: Hello) -> ServiceError | None:
        """Why a valid hello is not let in now, or None."""
        if self._stopping:
            return ServiceError(ErrorCode.SHUTTING_DOWN, "the service is shutting down")
        if self.clients >= self.limits.max_connections:
            return ServiceError(
                ErrorCode.TOO_MANY_CONNECTIONS,
                f"the service holds its limit of {self.limits.max_connections} connections",
            )
        if hello.producer in self._producers:
            return ServiceError(
                ErrorCode.PRODUCER_IN_USE,
                f"producer {hello.producer} is connected already: a producer id belongs to one "
                "connection at a time, and is free again once that connection closes",
            )
        return None

    async def _check_hello(self, frames: FrameStream) -> Hello | ServiceError | None:
        try:
            message = decode_client_message(await frames.receive())
        except anyio.EndOfStream:
            return None  # a probe: connected and left
        except ProtocolError as exc:
            return (
                ServiceError(ErrorCode.BAD_HELLO, exc.message)
                if exc.code == ErrorCode.BAD_FRAME
                else exc
            )
        if not isinstance(message, Hello):
            return ServiceError(ErrorCode.BAD_HELLO, "the first message must be a hello")
        if message.protocol != PROTOCOL_VERSION:
            return ServiceError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"this service speaks protocol {PROTOCOL_VERSION}, not {message.protocol}",
            )
        try:
            validate_id(message.producer, "producer")
        except InvalidIdError as exc:
            return ServiceError(ErrorCode.BAD_HELLO, str(exc))
        if self._token is not None and not token_matches(message.token, self._token):
            return ServiceError(ErrorCode.BAD_TOKEN, "the token is missing or wrong")
        return message

    async def _refuse(self, frames: FrameStream, error: ServiceError) -> None:
        self.errors[error.code] += 1
        with anyio.move_on_after(_REFUSAL_GRACE):
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
                        code=ErrorCode.SHUTTING_DOWN,
                        message="the service is shutting down",
                        fatal=True,
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
                return _reply_to(exc, None, fatal=True) if is_fatal(exc.code) else None
            collector.frames_received += 1
            try:
                message = decode_client_message(body)
            except ProtocolError as exc:
                collector.errors[exc.code] += 1
                await replies.send(_reply_to(exc, batch_id_of(body)))
                continue
            if isinstance(message, Batch):
                try:
                    if len(message.events) > max_events:
                        raise ServiceError(
                            ErrorCode.TOO_MANY_EVENTS,
                            f"a batch of {len(message.events)} events is over the limit of "
                            f"{max_events}",
                        )
                    receipt = await router.submit(message, self._producer, self)
                except ServiceError as exc:
                    collector.errors[exc.code] += 1
                    if defers(exc.code):
                        # not refused: this batch and the ones after come again
                        collector.events_deferred += len(message.events)
                        return _reply_to(exc, None, fatal=True)
                    collector.events_rejected += len(message.events)
                    fatal = is_fatal(exc.code)
                    reply = _reply_to(exc, message.id, fatal=fatal)
                    if fatal:
                        return reply
                    await replies.send(reply)
                    continue
                await replies.send(_AckItem(message.id, receipt))
            elif isinstance(message, StatusRequest):
                await replies.send(message)
            else:
                collector.errors[ErrorCode.BAD_FRAME] += 1
                await replies.send(
                    ErrorReply(
                        code=ErrorCode.BAD_FRAME, message="a connection says hello only once"
                    )
                )

    async def _reply(self, receive: MemoryObjectReceiveStream[_Reply]) -> None:
        frames = self._frames
        pending: int | None = None
        unsent = 0
        async with receive:
            try:
                async for item in receive:
                    if isinstance(item, _AckItem):
                        if not await item.receipt.wait():
                            await self._unwritten(item, pending)
                            return
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

    async def _unwritten(self, item: _AckItem, pending: int | None) -> None:
        """Batch ``item`` was not written: acknowledge the ones before it, then close the
        connection with an error naming no batch, so the client sends it again."""
        collector = self._collector
        collector.errors[ErrorCode.WRITE_FAILED] += 1
        self._gone = True  # no "shutting_down" after this
        self._reading.cancel()
        frames = self._frames
        if pending is not None:
            await frames.send(encode(Ack(id=pending)))
        await frames.send(
            encode(
                ErrorReply(
                    code=ErrorCode.WRITE_FAILED,
                    message=f"batch {item.id} could not be written to the run's files (the "
                    "service's log says why): send it again later",
                    fatal=True,
                )
            )
        )


def _reply_to(error: ServiceError, batch_id: int | None, *, fatal: bool = False) -> ErrorReply:
    return ErrorReply(code=error.code, message=error.message, id=batch_id, fatal=fatal)


def check_socket_directory(directory: Path) -> None:
    """Refuse a directory where another user could swap the socket: a link, not owned by this
    user, or writable by others (as ssh-agent and tmux check theirs).

    Raises PermissionError naming the directory and what is wrong with it.
    """
    info = directory.lstat()
    me = os.getuid()
    if stat.S_ISLNK(info.st_mode):
        problem = "is a symbolic link"
    elif not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory"
    elif info.st_uid != me:
        problem = f"belongs to uid {info.st_uid}, not to this user (uid {me})"
    elif info.st_mode & 0o022:
        problem = f"is writable by others (mode {stat.S_IMODE(info.st_mode):04o})"
    else:
        return
    raise PermissionError(
        f"the socket's directory {directory} {problem}: another user could take the socket "
        "over; choose another --socket, or fix the directory"
    )


def _claim_socket_path(path: Path) -> None:
    """Make ``path``'s directory (0700); check it is safe; remove a stale socket there;
    refuse to take over a live one or another file.

    Raises OSError (PermissionError for an unsafe directory, see ``check_socket_directory``;
    FileExistsError for a live socket or another file at the path).
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_socket_directory(path.parent)
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
