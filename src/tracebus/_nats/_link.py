"""A remote observer's link to JetStream: each batch one message, each acknowledgement an Ack.

The remote observer's delivery (``tracebus._service._delivery``) numbers, batches, bounds
and resends, and hands each batch sealed (``SealedBatch``); this link only carries. A batch
becomes a message on ``<prefix>.<workflow>.<run>`` with ``Nats-Msg-Id:
<run_id>:<producer>:<first seq>`` (the ids written as subject tokens, so that no ``:``
inside an id makes two batches' ids alike), so a batch the delivery sends again after a
reconnect is dropped by JetStream if it had stored it. JetStream's acknowledgements become
the service's cumulative ``Ack``; a message JetStream refuses for good (too large, say)
becomes an ``ErrorReply`` for its batch. A lost connection, an acknowledgement overdue by
``ACK_TIMEOUT`` seconds or a passing refusal (no stream answering yet) ends the link, and
the delivery reconnects and resends.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import anyio
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from .._service._codes import ErrorCode
from .._service._limits import MAX_EVENTS_PER_FRAME
from .._service._link import SealedBatch
from .._service._protocol import Ack, ErrorReply, Hello, ServerMessage
from ._connection import close_connection, ensure_stream, open_connection
from ._settings import NatsSettings, subject_token

log = logging.getLogger("tracebus.nats")

ACK_TIMEOUT = 5.0
#: Room left in a message for its headers and the protocol line.
_HEADER_ROOM = 1_024


class NatsLink:
    """One NATS connection carrying one producer's batches of one run (a ``Link``)."""

    def __init__(self, client: Client, subject: str, run_id: str, producer: str) -> None:
        self._client = client
        self._subject = subject
        self._run_id = run_id
        self._msg_id_head = f"{subject_token(run_id)}:{subject_token(producer)}"
        self._inbox = client.new_inbox()
        self._sent: dict[int, float] = {}  # batch id -> when sent, oldest first
        self._outcomes: dict[int, ErrorReply | None] = {}  # None: stored
        self._broken: str | None = None
        self._changed = anyio.Event()

    @classmethod
    async def open(
        cls,
        settings: NatsSettings,
        hello: Hello,
        workflow_id: str,
        run_id: str,
        connect_timeout: float,
    ) -> NatsLink:
        """Connect, make sure the stream exists, listen for acknowledgements.

        Raises BackendError off asyncio, ServiceUnavailableError when NATS or JetStream
        cannot be had within ``connect_timeout`` seconds.
        """
        link: NatsLink | None = None

        async def lost() -> None:
            if link is not None:
                link._break("the connection to NATS was lost")

        client = await open_connection(
            replace(settings, connect_timeout=connect_timeout), on_disconnect=lost, reconnect=False
        )
        try:
            await ensure_stream(client.jetstream(), settings.stream)
            subject = settings.stream.subject(workflow_id, run_id)
            link = cls(client, subject, run_id, hello.producer)
            await client.subscribe(f"{link._inbox}.*", cb=link._on_reply)
        except BaseException:
            await close_connection(client)
            raise
        return link

    @property
    def max_batch_bytes(self) -> int:
        return self._client.max_payload - _HEADER_ROOM

    @property
    def max_batch_events(self) -> int:
        return MAX_EVENTS_PER_FRAME

    async def send(self, batch: SealedBatch) -> None:
        """Publish one batch. Raises anyio.BrokenResourceError once the link broke."""
        if self._broken is not None:
            raise anyio.BrokenResourceError(self._broken)
        first = f"{batch.first_seq}" if batch.count else f"batch-{batch.id}"
        try:
            await self._client.publish(
                self._subject,
                batch.body,
                reply=f"{self._inbox}.{batch.id}",
                headers={"Nats-Msg-Id": f"{self._msg_id_head}:{first}"},
            )
        except (nats.errors.Error, OSError) as exc:
            self._break(f"publishing failed: {exc}")
            raise anyio.BrokenResourceError(self._broken) from exc
        self._sent[batch.id] = anyio.current_time()

    async def receive(self) -> ServerMessage:
        """The next settlement, in batch order: ``Ack`` up to the last stored batch, or an
        ``ErrorReply`` for a refused one.

        Raises anyio.EndOfStream once the link broke or an acknowledgement is overdue.
        """
        while True:
            settled = self._settle()
            if settled is not None:
                return settled
            if self._broken is not None:
                raise anyio.EndOfStream
            changed = self._changed
            wait = ACK_TIMEOUT
            if self._sent:
                oldest = next(iter(self._sent.values()))
                wait = oldest + ACK_TIMEOUT - anyio.current_time()
            with anyio.move_on_after(max(0.0, wait)):
                await changed.wait()
            if not changed.is_set() and self._sent:
                self._break(f"no acknowledgement from JetStream within {ACK_TIMEOUT:g}s")

    def _settle(self) -> ServerMessage | None:
        stored: int | None = None
        for batch_id in list(self._sent):
            if batch_id not in self._outcomes:
                break
            outcome = self._outcomes.pop(batch_id)
            if outcome is not None:
                if stored is not None:  # report the stored ones first, the refusal next
                    self._outcomes[batch_id] = outcome
                    return Ack(id=stored)
                del self._sent[batch_id]
                return outcome
            del self._sent[batch_id]
            stored = batch_id
        return None if stored is None else Ack(id=stored)

    async def aclose(self) -> None:
        self._break("closed")
        await close_connection(self._client)

    def _break(self, reason: str) -> None:
        if self._broken is None:
            self._broken = reason
            if reason != "closed":
                log.info("NATS link for run %s: %s; reconnecting", self._run_id, reason)
        self._changed.set()

    async def _on_reply(self, msg: Msg) -> None:
        try:
            batch_id = int(msg.subject.rsplit(".", 1)[1])
        except ValueError:
            return
        if batch_id not in self._sent:
            return
        if msg.headers and msg.headers.get("Status") == "503":
            self._break("no stream answered (JetStream not ready?)")
            return
        try:
            reply = json.loads(msg.data)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            self._break("an unreadable acknowledgement from JetStream")
            return
        error = reply.get("error")
        if isinstance(error, dict):
            description = str(error.get("description", error))
            if error.get("code") != 400:
                self._break(f"JetStream did not store a batch: {description}")
                return
            self._outcomes[batch_id] = ErrorReply(
                code=ErrorCode.REFUSED_BY_JETSTREAM, message=description, id=batch_id
            )
        else:
            self._outcomes[batch_id] = None
        self._changed.set()
        self._changed = anyio.Event()
