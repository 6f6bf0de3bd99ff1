"""RemoteObserver: the Observer API for producers in other processes, fed to the collector.

A run is opened by one observer (``workflow_start`` carries ``total_nodes``) and joined by
others (``join=True`` with the opener's ``run_id``). Each observer is one producer: its
events carry its ``producer`` id and its own ``seq`` 1, 2, 3...

The transport is the address's (``_connectors``): this module knows only ``Connector`` and
``Link`` (``_link``).
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from types import TracebackType
from typing import Any, Unpack

import anyio
from anyio.abc import TaskGroup

from .._capture import RunCapture
from .._event_methods import AsyncEventMethods
from .._events import Event, check_total_nodes
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
from .._options import shows_options, split_options, with_defaults
from ._codes import ErrorCode
from ._connectors import RemoteAddress, connector_for
from ._delivery import Delivery, RemoteStatistics
from ._limits import (
    PROTOCOL_VERSION,
)
from ._link import Link
from ._options import REMOTE_DEFAULTS, DeliveryOptions, RemoteOptions
from ._protocol import ErrorReply, Hello, StatusReply, StatusRequest, encode, software
from ._socket import SocketLink
from ._transport import parse_address

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def default_producer() -> str:
    """``{host}-{pid}-{8 hex}``: unique per observer, readable in the trace."""
    host = _UNSAFE.sub("-", socket.gethostname())[:64].strip(".-_") or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


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

    @shows_options(RemoteOptions, REMOTE_DEFAULTS)
    def __init__(
        self,
        address: RemoteAddress,
        workflow_id: str,
        total_nodes: int = 0,
        **options: Unpack[RemoteOptions],
    ) -> None:
        given: RemoteOptions = with_defaults(
            "RemoteObserver", options, RemoteOptions, REMOTE_DEFAULTS
        )
        run_id, join, overflow = given["run_id"], given["join"], given["overflow"]
        self.workflow_id = validate_id(workflow_id, "workflow_id")
        if join and run_id is None:
            raise ValueError("join=True needs the run_id of the run to join")
        self.run_id = validate_id(run_id, "run_id") if run_id is not None else new_run_id()
        self.producer = validate_id(given["producer"] or default_producer(), "producer")
        check_total_nodes(total_nodes)
        if overflow not in ("block", "drop"):
            raise ValueError(f"overflow must be 'block' or 'drop', got {overflow!r}")
        self.connector = connector_for(address)
        #: the address as given, parsed (a socket address, NatsSettings...)
        self.address = self.connector.target
        self.total_nodes = total_nodes
        self.join = join
        self.metadata: dict[str, Any] | None = None  # the files are the service's
        self._drop = overflow == "drop"
        self._connect_timeout = given["connect_timeout"]
        self._events = EventFactory(
            self.workflow_id,
            self.run_id,
            self.producer,
            max_payload_bytes=given["max_payload_bytes"],
        )
        hello = Hello(
            protocol=PROTOCOL_VERSION,
            producer=self.producer,
            token=given["token"],
            client=software(),
        )
        delivery: DeliveryOptions = split_options(given, DeliveryOptions)
        self._delivery = Delivery(
            self._open_link, hello, self.workflow_id, self.run_id, probe=join, **delivery
        )
        self._queue = self._delivery.queue
        self._capture = RunCapture(self, given["capture_logging"], given["capture_warnings"])
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
            self._capture.start()
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
        self._capture.stop()
        try:
            with anyio.CancelScope(shield=True):
                # close_timeout bounds the whole close, waiting for room for the end included
                deadline = anyio.current_time() + self._delivery.close_timeout
                terminal: Event | None = None
                if not self.join and not self._finished and not self._queue.closed:
                    self._finished = True
                    terminal = (
                        self._events.workflow_complete(None)
                        if exc is None
                        else self._events.workflow_error(describe(exc))
                    )
                try:
                    # queued as the queue closes: no thread's event lands after it
                    await self._delivery.aclose(deadline, terminal)
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
        return await self.connector.open_link(
            hello, self.workflow_id, self.run_id, self._connect_timeout
        )

    def _offer(self, event: Event) -> bool:
        queue = self._queue
        if self._drop or len(queue.items) < queue.capacity:
            queue.put_nowait(event)  # room, or dropping: nothing to wait for
            return True
        return False

    async def _emit(self, event: Event) -> None:
        await self._queue.put(event)

    def put_droppable(self, event: Event) -> None:
        """Enqueue from any thread without waiting: dropped and counted when the queue is
        full, ignored once it is closed."""
        self._queue.put_droppable(event)

    def put_from_thread(self, event: Event) -> None:
        """Enqueue from a thread other than the loop's, blocking it while the queue is full
        (under ``drop``, the event is dropped instead)."""
        if self._drop:
            self._queue.put_nowait(event)
        else:
            self._queue.put_blocking(event, None)


@shows_options(RemoteOptions, REMOTE_DEFAULTS)
def connect(
    address: RemoteAddress,
    workflow_id: str,
    total_nodes: int = 0,
    **options: Unpack[RemoteOptions],
) -> RemoteObserver:
    """A remote observer of a run held by the collector at ``address`` (a Unix socket's path,
    or ``tcp://HOST:PORT``), or published to NATS JetStream (``nats://HOST:PORT`` or
    NatsSettings); enter it with ``async with``. See RemoteObserver."""
    given: RemoteOptions = with_defaults("connect", options, RemoteOptions, REMOTE_DEFAULTS)
    return RemoteObserver(address, workflow_id, total_nodes, **given)


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
        await link.send_message(encode(StatusRequest()))
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
