"""The collector's end: a durable pull consumer feeding each run's single writer.

Messages are fetched in batches; each one's events go to their run's writer, and a message
is acknowledged only once its events are written (handed to the OS by the writer). A
message JetStream delivers again (the collector died before acknowledging it, or the
publisher resent it after the duplicate window) is left out by the writer's check of
``(producer, seq)``.

Each producer's events must reach the writer in ``seq`` order for that check to be sound, so
a message that skips ahead of what its producer has written is handed back (``nak`` with a
delay) until the missing one arrives, at most ``GAP_RETRIES`` times. A message of a run that
is not open yet (a joining producer outran the opener's ``workflow_start``) waits the same
way, up to ``OPEN_RETRIES`` times.

Several collectors share the work by partition: collector ``I`` of ``N`` has a durable
consumer of its own (``<durable>-<I>-of-<N>``) and writes only the runs whose ids hash to
``I``; it acknowledges the other runs' messages unread. Each run so has exactly one writer.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import NamedTuple

import anyio
import nats.errors
import nats.js.errors
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from .._exceptions import ProtocolError, ServiceError, ServiceUnavailableError
from .._service._protocol import Batch, decode_client_message
from .._service._router import Receipt, RunRouter
from ._connection import close_connection, ensure_stream, open_connection
from ._settings import ALL_RUNS, DEFAULT_DURABLE, NatsSettings, Partition

log = logging.getLogger("tracebus.nats")

FETCH_BATCH = 64
#: Unacknowledged messages JetStream lets one collector hold.
MAX_ACK_PENDING = 1_024
ACK_WAIT = 30.0
GAP_RETRIES = 10
GAP_DELAY = 0.2
OPEN_RETRIES = 120
OPEN_DELAY = 0.5

#: Fetched batches whose acknowledgements may wait on their writes at once.
ACKS_IN_FLIGHT = 4
_Fetched = tuple[list[Receipt], list[Msg]]
_DONE = Receipt(None)
_HANDED_BACK = Receipt(None)
#: Refusals that pass: the run opens later, the service makes room or restarts.
_WAIT_FOR = frozenset({"run_not_open", "too_many_runs", "resume_failed", "shutting_down"})
#: (workflow_id, run_id, producer) whose last queued seq is kept, most recent first out last.
MAX_PRODUCERS_REMEMBERED = 100_000
_DURABLE_RE = re.compile(r"[A-Za-z0-9_-]{1,200}")


class CollectorStatistics(NamedTuple):
    messages: int  # fetched, including redeliveries
    events_queued: int  # handed to writers
    held: int  # handed back to wait for a missing earlier message or the run's opening
    rejected: int  # not written: unreadable, of an ended run, or never opened
    others: int  # of runs another partition writes


class NatsCollector:
    """Consumes the stream into ``output_dir``; run it with ``await collector.run()``.

    Raises BackendError off asyncio and ServiceUnavailableError when NATS, JetStream or the
    consumer cannot be had at start. Once running, connection losses are retried forever.
    """

    def __init__(
        self,
        settings: NatsSettings,
        output_dir: str | os.PathLike[str],
        *,
        durable: str = DEFAULT_DURABLE,
        partition: Partition = ALL_RUNS,
        fetch_batch: int = FETCH_BATCH,
    ) -> None:
        if not _DURABLE_RE.fullmatch(durable):
            raise ValueError(f"invalid durable name {durable!r}: use letters, digits, _ or -")
        self.settings = settings
        self.output_dir = Path(output_dir)
        self.partition = partition
        self.durable = partition.durable(durable)
        self._fetch_batch = fetch_batch
        self._counts = dict.fromkeys(CollectorStatistics._fields, 0)
        self._queued: dict[tuple[str, str, str], int] = {}
        self._router: RunRouter | None = None

    def statistics(self) -> CollectorStatistics:
        return CollectorStatistics(**self._counts)

    def run_statistics(self) -> dict[str, int]:
        """The run router's counters (runs, events written, duplicates left out)."""
        return {} if self._router is None else self._router.statistics()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Connect, (re)create the durable consumer at its acknowledged position, report
        started, then consume until cancelled."""
        client = await open_connection(self.settings)
        try:
            js = client.jetstream()
            await ensure_stream(js, self.settings.stream)
            await self._reset_consumer(js)
            subscription = await js.pull_subscribe_bind(
                durable=self.durable, stream=self.settings.stream.name
            )
            async with RunRouter(self.output_dir) as router, anyio.create_task_group() as tasks:
                self._router = router
                # fetching the next batch overlaps writing the last: acks follow in order
                send, receive = anyio.create_memory_object_stream[_Fetched](ACKS_IN_FLIGHT)
                tasks.start_soon(self._acknowledge, receive)
                task_status.started()
                log.info("consuming stream %s as %s", self.settings.stream.name, self.durable)
                async with send:
                    while True:
                        try:
                            messages = await subscription.fetch(self._fetch_batch, timeout=1.0)
                        # nats-py raises its own TimeoutError, or asyncio's when the wait ran
                        # out before the pull request was sent (a busy machine): both subclass
                        # the builtin
                        except (TimeoutError, nats.errors.ConnectionClosedError):
                            continue
                        except nats.errors.Error as exc:
                            log.debug("fetch failed: %s", exc)
                            await anyio.sleep(0.25)
                            continue
                        await send.send(await self._handle_batch(router, messages))
        finally:
            await close_connection(client)

    async def _reset_consumer(self, js: JetStreamContext) -> None:
        """Start the consumer again right after its acknowledgement floor, in stream order.

        Left alone, JetStream would send new messages at once and the unacknowledged ones
        only after ``ack_wait``: a producer's events out of order, and a slow restart.
        """
        stream = self.settings.stream
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT,
            max_ack_pending=MAX_ACK_PENDING,
            filter_subject=stream.subjects,
            deliver_policy=DeliverPolicy.ALL,
        )
        try:
            try:
                info = await js.consumer_info(stream.name, self.durable)
            except nats.js.errors.NotFoundError:
                pass
            else:
                config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
                config.opt_start_seq = info.ack_floor.stream_seq + 1
                await js.delete_consumer(stream.name, self.durable)
            await js.add_consumer(stream.name, config)
        except nats.js.errors.APIError as exc:
            raise ServiceUnavailableError(
                f"cannot set up consumer {self.durable} on stream {stream.name}: {exc.description}"
            ) from exc
        except TimeoutError as exc:  # nats-py's and asyncio's alike
            raise ServiceUnavailableError("JetStream did not answer in time") from exc

    async def _handle_batch(self, router: RunRouter, messages: list[Msg]) -> _Fetched:
        receipts: list[Receipt] = []
        to_ack: list[Msg] = []
        for msg in messages:
            self._counts["messages"] += 1
            outcome = await self._handle(router, msg)
            if outcome is _HANDED_BACK:
                continue
            receipts.append(outcome)
            to_ack.append(msg)
        return receipts, to_ack

    async def _acknowledge(self, fetched: MemoryObjectReceiveStream[_Fetched]) -> None:
        """Acknowledge each batch's messages once its events are written."""
        async with fetched:
            async for receipts, messages in fetched:
                for receipt in receipts:
                    await receipt.wait()
                for msg in messages:
                    await msg.ack()

    async def _handle(self, router: RunRouter, msg: Msg) -> Receipt:
        """What to wait for before acknowledging ``msg``, or ``_HANDED_BACK`` when it was
        handed back or terminated."""
        counts = self._counts
        key = self.settings.stream.run_of(msg.subject)
        if key is None:
            return await self._refuse(msg, f"a message on {msg.subject}, which names no run")
        if not self.partition.owns(*key):
            counts["others"] += 1
            return _DONE
        try:
            batch = decode_client_message(msg.data)
        except ProtocolError as exc:
            return await self._refuse(msg, f"an unreadable message on {msg.subject}: {exc}")
        if not isinstance(batch, Batch):
            return await self._refuse(msg, f"a message on {msg.subject} that is not a batch")
        if not batch.events:
            return _DONE  # a joining observer's probe
        producer = batch.events[0].producer or ""
        deliveries = msg.metadata.num_delivered
        queued = self._queued.get((*key, producer))
        if queued is None:
            queued = router.last_seq(*key, producer)
        if queued is not None and batch.events[0].seq > queued + 1:
            if deliveries <= GAP_RETRIES:
                counts["held"] += 1
                await msg.nak(delay=GAP_DELAY * deliveries)
                return _HANDED_BACK
            log.warning(
                "run %s: producer %s's events %d..%d never arrived; writing on",
                key[1], producer, queued + 1, batch.events[0].seq - 1,
            )  # fmt: skip
        try:
            receipt = await router.submit(batch, producer)
        except ServiceError as exc:
            if exc.code in _WAIT_FOR and not isinstance(exc, ProtocolError):
                if deliveries <= OPEN_RETRIES:
                    counts["held"] += 1
                    await msg.nak(delay=OPEN_DELAY)
                    return _HANDED_BACK
            return await self._refuse(msg, f"{len(batch.events)} event(s) of run {key[1]}: {exc}")
        counts["events_queued"] += len(batch.events)
        self._remember(key, producer, batch.events[-1].seq)
        return receipt

    def _remember(self, key: tuple[str, str], producer: str, seq: int) -> None:
        queued = self._queued
        entry = (*key, producer)
        queued[entry] = max(seq, queued.pop(entry, 0))  # most recent last
        if len(queued) > MAX_PRODUCERS_REMEMBERED:
            del queued[next(iter(queued))]

    async def _refuse(self, msg: Msg, what: str) -> Receipt:
        self._counts["rejected"] += 1
        log.error("not written: %s", what)
        await msg.term()
        return _HANDED_BACK
