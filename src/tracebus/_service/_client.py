"""RemoteObserver: the Observer API for producers in other processes, fed to the collector.

A run is opened by one observer (``workflow_start`` carries ``total_nodes``) and joined by
others (``join=True`` with the opener's ``run_id``). Each observer is one producer: its
events carry its ``producer`` id and its own ``seq`` 1, 2, 3...

Sockets appear only in ``SocketLink`` and ``RemoteObserver._open_link``: another transport
supplies its own ``Link`` (see ``_delivery``) by overriding ``_open_link``.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from types import TracebackType
from typing import Any, Literal

import anyio
from anyio.abc import TaskGroup

from .._bus import DEFAULT_CAPACITY, DEFAULT_CLOSE_TIMEOUT
from .._event_methods import AsyncEventMethods
from .._events import DEFAULT_MAX_PAYLOAD_BYTES, Event, check_total_nodes
from .._exceptions import (
    ProtocolError,
    ServiceError,
    ServiceUnavailableError,
    TracebusError,
    describe,
    keep_with_note,
)
from .._factory import EventFactory
from .._layout import new_run_id, validate_id
from .._nats._settings import NatsSettings, nats_settings_of
from ._codes import ErrorCode
from ._delivery import Delivery, Link, RemoteStatistics
from ._limits import (
    CLIENT_MAX_BATCH,
    CLIENT_RESEND_BUFFER,
    CONNECT_TIMEOUT,
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    RECONNECT_TIMEOUT,
)
from ._protocol import (
    ErrorReply,
    Hello,
    ServerMessage,
    StatusReply,
    StatusRequest,
    Welcome,
    decode_server_message,
    encode,
    software,
)
from ._transport import Address, FrameStream, TcpAddress, UnixAddress, open_stream, parse_address

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def default_producer() -> str:
    """``{host}-{pid}-{8 hex}``: unique per observer, readable in the trace."""
    host = _UNSAFE.sub("-", socket.gethostname())[:64].strip(".-_") or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class SocketLink:
    """A connection to the collector on a Unix or TCP socket, past its hello."""

    def __init__(self, frames: FrameStream, welcome: Welcome) -> None:
        self._frames = frames
        self.welcome = welcome

    @classmethod
    async def open(cls, address: Address, hello: Hello) -> SocketLink:
        """Connect and say hello.

        Raises ServiceUnavailableError when nothing answers, ServiceError when the service
        refuses (bad token, too many connections...).
        """
        stream = await open_stream(address)
        frames = FrameStream(stream, MAX_FRAME_BYTES)
        try:
            reply = await _hello(frames, hello, address)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await stream.aclose()
            raise
        return cls(frames, reply)

    async def send(self, body: bytes) -> None:
        await self._frames.send(body)

    async def receive(self) -> ServerMessage:
        return decode_server_message(await self._frames.receive())

    async def aclose(self) -> None:
        await self._frames.aclose()


async def _hello(frames: FrameStream, hello: Hello, address: Address) -> Welcome:
    try:
        try:
            await frames.send(encode(hello))
        except (anyio.BrokenResourceError, OSError):
            pass  # refused at once (too many connections): its error frame is waiting
        reply = decode_server_message(await frames.receive())
    except (OSError, anyio.EndOfStream, anyio.BrokenResourceError) as exc:
        raise ServiceUnavailableError(
            f"the collector at {address} did not answer the hello: {exc or type(exc).__name__}"
        ) from exc
    if isinstance(reply, ErrorReply):
        raise ServiceError(reply.code, reply.message)
    if not isinstance(reply, Welcome):
        raise ProtocolError(ErrorCode.BAD_FRAME, f"expected a welcome, got {type(reply).__name__}")
    return reply


class RemoteObserver(AsyncEventMethods):
    """Records events of a run held by the collector at ``address``: the methods of
    Observer, same names and parameters, used as ``async with connect(...) as obs``.

    Without ``join`` this observer opens the run (a fresh ``run_id`` unless given): entering
    sends ``workflow_start`` and waits until the service has opened the run; leaving records
    ``workflow_complete`` (``workflow_error`` if the block raised) unless one was recorded.
    With ``join=True`` and the opener's ``run_id`` it adds its events to that run: entering
    checks the run is open; leaving records nothing of its own.

    Leaving waits (up to ``close_timeout``) until every event is acknowledged, that is
    written to the run's files. ``overflow="block"`` (default) makes every method wait while
    the queue is full; ``"drop"`` drops non-lifecycle events instead.

    Raises InvalidIdError (a ValueError) at construction for unsafe ids; on entering,
    ServiceUnavailableError when the service cannot be reached and ServiceError when it
    refuses; on leaving, DeliveryError when events were not delivered.
    """

    def __init__(
        self,
        address: str | os.PathLike[str] | Address | NatsSettings,
        workflow_id: str,
        total_nodes: int = 0,
        *,
        run_id: str | None = None,
        join: bool = False,
        producer: str | None = None,
        token: str | None = None,
        capacity: int = DEFAULT_CAPACITY,
        overflow: Literal["block", "drop"] = "block",
        max_batch: int = CLIENT_MAX_BATCH,
        resend_buffer: int = CLIENT_RESEND_BUFFER,
        reconnect_timeout: float = RECONNECT_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self.workflow_id = validate_id(workflow_id, "workflow_id")
        if join and run_id is None:
            raise ValueError("join=True needs the run_id of the run to join")
        self.run_id = validate_id(run_id, "run_id") if run_id is not None else new_run_id()
        self.producer = validate_id(producer or default_producer(), "producer")
        check_total_nodes(total_nodes)
        if overflow not in ("block", "drop"):
            raise ValueError(f"overflow must be 'block' or 'drop', got {overflow!r}")
        self.address: Address | NatsSettings = (
            address
            if isinstance(address, UnixAddress | TcpAddress)
            else nats_settings_of(address, token) or parse_address(address)  # type: ignore[arg-type]
        )
        self.total_nodes = total_nodes
        self.join = join
        self.metadata: dict[str, Any] | None = None  # the files are the service's
        self._drop = overflow == "drop"
        self._connect_timeout = connect_timeout
        self._events = EventFactory(
            self.workflow_id, self.run_id, self.producer, max_payload_bytes=max_payload_bytes
        )
        hello = Hello(
            protocol=PROTOCOL_VERSION,
            producer=self.producer,
            token=token,
            client=software(),
        )
        self._delivery = Delivery(
            self._open_link,
            hello,
            self.workflow_id,
            self.run_id,
            capacity=capacity,
            overflow="drop" if self._drop else "block",
            max_batch=max_batch,
            resend_buffer=resend_buffer,
            reconnect_timeout=reconnect_timeout,
            close_timeout=close_timeout,
            probe=join,
        )
        self._queue = self._delivery.queue
        self._task_group: TaskGroup | None = None
        self._finished = False

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> RemoteObserver:
        if self._task_group is not None:
            raise RuntimeError("a RemoteObserver can be entered only once")
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        try:
            await self._task_group.start(self._delivery.run)
            if not self.join:
                await self._queue.put(self._events.workflow_start(self.total_nodes, ""))
            await self._delivery.wait_batch(1)
            if self._delivery.first_batch_refusal is not None:
                raise self._delivery.first_batch_refusal
        except BaseException:
            self._task_group.cancel_scope.cancel()
            await self._task_group.__aexit__(None, None, None)  # ours to raise, not a group's
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._task_group is not None
        try:
            with anyio.CancelScope(shield=True):
                # close_timeout bounds the whole close, waiting for room for the end included
                deadline = anyio.current_time() + self._delivery.close_timeout
                if not self.join and not self._finished and not self._queue.closed:
                    self._finished = True
                    terminal = (
                        self._events.workflow_complete(None)
                        if exc is None
                        else self._events.workflow_error(describe(exc))
                    )
                    with anyio.move_on_after(self._delivery.close_timeout) as waited:
                        await self._queue.put(terminal)
                    if waited.cancelled_caught:
                        self._delivery.not_sent(1)
                try:
                    await self._delivery.aclose(deadline)
                except TracebusError as failure:
                    if exc is None:
                        raise
                    keep_with_note(exc, failure)  # the block's own error is what the user sees
        finally:
            await self._task_group.__aexit__(None, None, None)

    async def flush(self) -> None:
        """Wait until everything emitted so far is written by the service.

        Raises ServiceUnavailableError or ServiceError if the observer gave up.
        """
        delivery = self._delivery
        await delivery.wait_settled(self._queue.accepted)
        if delivery.failure is not None:
            raise delivery.failure

    # -- the seed's vocabulary, awaitable ------------------------------------------------

    def mark_finished(self) -> None:
        """A terminal event was recorded: leaving the block adds none of its own."""
        self._finished = True

    # -- introspection --------------------------------------------------------------------

    def statistics(self) -> RemoteStatistics:
        return self._delivery.statistics()

    async def _open_link(self, hello: Hello) -> Link:
        timeout = self._connect_timeout
        if isinstance(self.address, NatsSettings):
            from .._nats._link import NatsLink

            return await NatsLink.open(self.address, hello, self.workflow_id, self.run_id, timeout)
        try:
            with anyio.fail_after(timeout):
                return await SocketLink.open(self.address, hello)
        except TimeoutError:
            raise ServiceUnavailableError(
                f"the collector at {self.address} did not answer within {timeout:g}s"
            ) from None

    def _offer(self, event: Event) -> bool:
        queue = self._queue
        if self._drop or len(queue.items) < queue.capacity:
            queue.put_nowait(event)  # room, or dropping: nothing to wait for
            return True
        return False

    async def _emit(self, event: Event) -> None:
        await self._queue.put(event)

    def put_from_thread(self, event: Event) -> None:
        """Enqueue from a thread other than the loop's, blocking it while the queue is full
        (under ``drop``, the event is dropped instead)."""
        if self._drop:
            self._queue.put_nowait(event)
        else:
            self._queue.put_blocking(event, None)


def connect(
    address: str | os.PathLike[str] | NatsSettings,
    workflow_id: str,
    total_nodes: int = 0,
    *,
    run_id: str | None = None,
    join: bool = False,
    producer: str | None = None,
    token: str | None = None,
    capacity: int = DEFAULT_CAPACITY,
    overflow: Literal["block", "drop"] = "block",
    max_batch: int = CLIENT_MAX_BATCH,
    resend_buffer: int = CLIENT_RESEND_BUFFER,
    reconnect_timeout: float = RECONNECT_TIMEOUT,
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    connect_timeout: float = CONNECT_TIMEOUT,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> RemoteObserver:
    """A remote observer of a run held by the collector at ``address`` (a Unix socket's path,
    or ``tcp://HOST:PORT``), or published to NATS JetStream (``nats://HOST:PORT`` or
    NatsSettings); enter it with ``async with``. See RemoteObserver."""
    return RemoteObserver(
        address,
        workflow_id,
        total_nodes,
        run_id=run_id,
        join=join,
        producer=producer,
        token=token,
        capacity=capacity,
        overflow=overflow,
        max_batch=max_batch,
        resend_buffer=resend_buffer,
        reconnect_timeout=reconnect_timeout,
        close_timeout=close_timeout,
        connect_timeout=connect_timeout,
        max_payload_bytes=max_payload_bytes,
    )


async def fetch_status(
    address: str | os.PathLike[str], *, token: str | None = None
) -> dict[str, Any]:
    """The counters of the collector at ``address``.

    Raises ServiceUnavailableError when it does not answer, ServiceError when it refuses.
    """
    target = parse_address(address)
    hello = Hello(
        protocol=PROTOCOL_VERSION,
        producer=f"status-{uuid.uuid4().hex[:12]}",  # a producer id is one connection's
        token=token,
        client=software(),
    )
    link = await SocketLink.open(target, hello)
    try:
        await link.send(encode(StatusRequest()))
        reply = await link.receive()
    except (OSError, anyio.EndOfStream) as exc:
        raise ServiceUnavailableError(f"the collector at {target} did not answer: {exc}") from exc
    finally:
        await link.aclose()
    if isinstance(reply, ErrorReply):
        raise ServiceError(reply.code, reply.message)
    if not isinstance(reply, StatusReply):
        raise ProtocolError(
            ErrorCode.BAD_FRAME, f"expected a status reply, got {type(reply).__name__}"
        )
    return reply.counters
