"""What a transport supplies to a remote observer: a ``Connector`` that opens ``Link`` s.

The delivery (``_delivery``) numbers, batches, bounds and resends; a link only carries sealed
batches to the collector and its settlements back. Sockets (``_socket``) and NATS JetStream
(``tracebus._nats``) are two transports; ``_connectors`` picks one by the address's scheme.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ._protocol import Hello, ServerMessage


@dataclass(frozen=True, slots=True)
class SealedBatch:
    """One batch, encoded once by the delivery: a link sends ``body`` as it is and reads
    nothing back out of it."""

    id: int
    #: The ``seq`` of its first event; 0 for an empty batch (a joiner's probe).
    first_seq: int
    count: int
    body: bytes


class Link(Protocol):
    """One connection to the collector, past its hello."""

    @property
    def max_batch_bytes(self) -> int:
        """The largest ``body`` this link carries; the delivery splits batches to fit it."""
        ...

    @property
    def max_batch_events(self) -> int:
        """The most events the collector takes in one batch."""
        ...

    async def send(self, batch: SealedBatch) -> None:
        """Send one batch. Raises anyio.BrokenResourceError (or OSError) once the link broke."""
        ...

    async def receive(self) -> ServerMessage:
        """The collector's next message (``Ack``, ``ErrorReply``...), in batch order.

        Raises anyio.EndOfStream once the link is closed or broken.
        """
        ...

    async def aclose(self) -> None: ...


class Connector(Protocol):
    """Where a remote observer sends its events: opens one link per connection attempt."""

    @property
    def target(self) -> object:
        """What it reaches, as a remote observer shows it in ``address`` (a socket address,
        ``NatsSettings``...)."""
        ...

    async def open_link(
        self, hello: Hello, workflow_id: str, run_id: str, connect_timeout: float
    ) -> Link:
        """Connect within ``connect_timeout`` seconds and say ``hello``, for the run
        ``run_id`` of ``workflow_id``.

        Raises ServiceUnavailableError when nothing answers, ServiceError when the collector
        refuses (a bad token, too many connections...).
        """
        ...
