"""A collector held in the test's memory, reached through the connector interface: it keeps
every sealed batch it is sent and answers each as the test says."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from tracebus._exceptions import ServiceError, ServiceUnavailableError
from tracebus._service._link import SealedBatch
from tracebus._service._protocol import Ack, Batch, ErrorReply, Hello, ServerMessage

_batch_decoder = msgspec.msgpack.Decoder(Batch)


class MemoryCollector:
    """A ``Connector``: each ``open_link`` is one connection to this collector.

    ``refuse[id]`` is the code the batch ``id`` is refused with; ``drop_on`` holds the ids
    whose first arrival breaks the connection, unanswered; ``connect_errors`` are raised by
    the next connection attempts, one each; while ``down``, nothing answers at all.
    """

    def __init__(self, *, max_batch_bytes: int = 1 << 20, max_batch_events: int = 10_000) -> None:
        self.max_batch_bytes = max_batch_bytes
        self.max_batch_events = max_batch_events
        self.refuse: dict[int, str] = {}
        self.drop_on: set[int] = set()
        self.connect_errors: list[ServiceError | ServiceUnavailableError] = []
        self.down = False
        self.received: list[SealedBatch] = []
        self.hellos: list[Hello] = []

    @property
    def target(self) -> MemoryCollector:
        return self

    async def open_link(
        self, hello: Hello, workflow_id: str, run_id: str, connect_timeout: float
    ) -> MemoryLink:
        await anyio.lowlevel.checkpoint()
        if self.down:
            raise ServiceUnavailableError("the memory collector is down")
        if self.connect_errors:
            raise self.connect_errors.pop(0)
        self.hellos.append(hello)
        return MemoryLink(self)

    def events(self) -> list[tuple[int, str]]:
        """``(seq, event_type)`` of every event received, resends included, in order."""
        return [
            (event.seq, str(type(event).__struct_config__.tag))
            for sent in self.received
            for event in _batch_decoder.decode(sent.body).events
        ]


class MemoryLink:
    """One connection to a MemoryCollector (a ``Link``)."""

    def __init__(self, collector: MemoryCollector) -> None:
        self._collector = collector
        self._replies: tuple[
            MemoryObjectSendStream[ServerMessage], MemoryObjectReceiveStream[ServerMessage]
        ] = anyio.create_memory_object_stream[ServerMessage](1_000)
        self._broken = False

    @property
    def max_batch_bytes(self) -> int:
        return self._collector.max_batch_bytes

    @property
    def max_batch_events(self) -> int:
        return self._collector.max_batch_events

    async def send(self, batch: SealedBatch) -> None:
        collector, (replies, _) = self._collector, self._replies
        if self._broken:
            raise anyio.BrokenResourceError
        collector.received.append(batch)
        if batch.id in collector.drop_on:
            collector.drop_on.discard(batch.id)
            self._broken = True
            await replies.aclose()
            return
        code = collector.refuse.get(batch.id)
        reply = (
            Ack(id=batch.id) if code is None else ErrorReply(code=code, message="no", id=batch.id)
        )
        replies.send_nowait(reply)

    async def receive(self) -> ServerMessage:
        return await self._replies[1].receive()

    async def aclose(self) -> None:
        await self._replies[0].aclose()
        await self._replies[1].aclose()
