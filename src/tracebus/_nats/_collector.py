"""The collector's end: a durable pull consumer feeding each run's single writer.

A collector first takes its durable consumer's lease (``_lease``): one collector per durable.
It then starts the consumer right after its position (every message before it is written or
refused), which it keeps itself as JetStream's acknowledgement floor cannot be trusted.
Messages are fetched in batches; each one's events go to their run's writer, and a message
is acknowledged only once its events are written (handed to the OS by the writer). A message
JetStream delivers again (the collector died before acknowledging it, or the publisher
resent it after the duplicate window) is left out by the writer's check of
``(producer, seq)``.

Each producer's events must reach the writer in ``seq`` order for that check to be sound, so
a message that skips ahead of what its producer has written is handed back (``nak`` with a
delay) until the missing one arrives, at most ``GAP_RETRIES`` times; a message that skips
further than a producer's resend buffer allows is refused. A message of a run that is not
open yet (a joining producer outran the opener's ``workflow_start``) waits the same way, up
to ``OPEN_RETRIES`` times. A message whose ids name another run than its subject is refused.

When a run's files cannot take a message (a full disk) the collector acknowledges nothing
more of it: it stops, waits, and starts its consumer again at its position, so the messages
come again in stream order once the files can be written; nothing is written past a message
that was not.

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
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from .._exceptions import ProtocolError, ServiceError, ServiceUnavailableError
from .._service._codes import ErrorCode, defers
from .._service._limits import RUN_IDLE_TIMEOUT
from .._service._protocol import Batch, decode_client_message
from .._service._router import Receipt, RunRouter, RunSinks
from ._connection import close_connection, ensure_stream, open_connection
from ._lease import Lease, Positions
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
#: After a write failure, the first wait before the messages are asked for again; it doubles
#: up to REWIND_MAX_DELAY while the files keep refusing.
REWIND_DELAY = 0.5
REWIND_MAX_DELAY = 10.0
#: How often the position is saved while it moves.
POSITION_EVERY = 1.0

#: Fetched batches whose acknowledgements may wait on their writes at once.
ACKS_IN_FLIGHT = 4
_Fetched = list[tuple[Receipt, Msg]]
_DONE = Receipt(None)
#: A message that cannot be written now: it comes again after the rewind.
_LATER = Receipt(None)
#: Refusals that pass: the run opens later (given up on after OPEN_RETRIES).
_WAIT_FOR = frozenset({ErrorCode.RUN_NOT_OPEN, ErrorCode.SHUTTING_DOWN})
_DURABLE_RE = re.compile(r"[A-Za-z0-9_-]{1,200}")


class CollectorStatistics(NamedTuple):
    messages: int  # fetched, including redeliveries
    events_queued: int  # handed to writers
    held: int  # handed back to wait for a missing earlier message or the run's opening
    rejected: int  # not written: unreadable, of an ended run, never opened, of another run
    others: int  # of runs another partition writes
    rewinds: int  # times the consumer was started again after a write failure


class NatsCollector:
    """Consumes the stream into ``output_dir``; run it with ``await collector.run()``.

    ``stop()`` ends it gracefully: no more fetching, every fetched message written and
    acknowledged, the runs' files closed, the position saved, the lease released.

    Raises BackendError off asyncio and ServiceUnavailableError when NATS, JetStream or the
    consumer cannot be had at start. Once running, connection losses are retried forever (a
    lease lost meanwhile is waited for again).
    """

    def __init__(
        self,
        settings: NatsSettings,
        output_dir: str | os.PathLike[str],
        *,
        durable: str = DEFAULT_DURABLE,
        partition: Partition = ALL_RUNS,
        fetch_batch: int = FETCH_BATCH,
        run_idle_timeout: float = RUN_IDLE_TIMEOUT,
        run_sinks: RunSinks | None = None,
    ) -> None:
        if not _DURABLE_RE.fullmatch(durable):
            raise ValueError(f"invalid durable name {durable!r}: use letters, digits, _ or -")
        self.settings = settings
        self.output_dir = Path(output_dir)
        self.partition = partition
        self.durable = partition.durable(durable)
        self._fetch_batch = fetch_batch
        self._idle_timeout = run_idle_timeout
        self._run_sinks = run_sinks
        self._counts = dict.fromkeys(CollectorStatistics._fields, 0)
        self._router: RunRouter | None = None
        self._stopping = False
        self._holds: dict[int, int] = {}  # stream seq -> times held back for a gap
        # the position: every stream seq up to it is settled (acknowledged or refused)
        self._pending: set[int] = set()
        self._top = 0
        self._rewind: str | None = None  # why the consumer must start again
        self._lease: Lease | None = None

    def statistics(self) -> CollectorStatistics:
        return CollectorStatistics(**self._counts)

    def run_statistics(self) -> dict[str, int]:
        """The run router's counters (runs, events written, duplicates left out)."""
        return {} if self._router is None else self._router.statistics()

    @property
    def runs_left_open(self) -> int:
        """Runs not ended that it still held when it stopped."""
        return 0 if self._router is None else self._router.runs_left_open

    @property
    def position(self) -> int:
        return min(self._pending) - 1 if self._pending else self._top

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        """Stop fetching; ``run()`` then writes and acknowledges what it fetched and returns."""
        self._stopping = True

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Connect, take the lease (waiting while another collector holds it), start the
        durable consumer at the position, report started, then consume until ``stop()`` or
        cancelled."""
        client = await open_connection(self.settings)
        try:
            js = client.jetstream()
            await ensure_stream(js, self.settings.stream)
            lease = self._lease = Lease(js, self.settings.stream, self.durable)
            await lease.acquire()
            try:
                async with anyio.create_task_group() as leased:
                    await leased.start(lease.keep, self._request_rewind)
                    await self._consume(js, task_status)
                    leased.cancel_scope.cancel()
            finally:
                await lease.release()
        finally:
            await close_connection(client)

    async def _consume(self, js: JetStreamContext, task_status: TaskStatus[None]) -> None:
        positions = Positions(js, self.settings.stream)
        start = await self._reset_consumer(js, await positions.load(self.durable))
        self._top = start - 1
        saved = self._top
        try:
            async with RunRouter(
                self.output_dir, idle_timeout=self._idle_timeout, run_sinks=self._run_sinks
            ) as router:
                self._router = router
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(self._save_positions, positions)
                    task_status.started()
                    log.info(
                        "consuming stream %s as %s from stream sequence %d",
                        self.settings.stream.name, self.durable, start,
                    )  # fmt: skip
                    await self._fetch_until_stopped(js, router, positions)
                    tasks.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5.0):
                if self.position != saved and self._holds_lease():
                    await positions.save(self.durable, self.position)

    def _holds_lease(self) -> bool:
        return self._lease is None or self._lease.held.is_set()

    async def _fetch_until_stopped(
        self, js: JetStreamContext, router: RunRouter, positions: Positions
    ) -> None:
        delay = REWIND_DELAY
        while not self._stopping:
            subscription = await js.pull_subscribe_bind(
                durable=self.durable, stream=self.settings.stream.name
            )
            send, receive = anyio.create_memory_object_stream[_Fetched](ACKS_IN_FLIGHT)
            async with anyio.create_task_group() as acks:
                acks.start_soon(self._acknowledge, receive)
                async with send:
                    await self._fetch(subscription, router, send)
            await subscription.unsubscribe()
            if self._rewind is None:
                return  # stopped
            # a message was not written: ask for everything after the position again, in
            # stream order, once the files may take it
            log.error(
                "%s; fetching again from stream sequence %d in %gs",
                self._rewind, self.position + 1, delay,
            )  # fmt: skip
            self._counts["rewinds"] += 1
            await anyio.sleep(delay)
            delay = min(delay * 2, REWIND_MAX_DELAY)
            if self._lease is not None:
                await self._lease.held.wait()
            router.leave(self)
            self._rewind = None
            self._holds.clear()
            # another collector may have held the lease meanwhile, and moved on
            try:
                position = max(self.position, await positions.load(self.durable))
            except ServiceUnavailableError:
                position = self.position
            self._top = await self._reset_consumer(js, position) - 1
            self._pending.clear()

    async def _fetch(
        self,
        subscription: JetStreamContext.PullSubscription,
        router: RunRouter,
        send: MemoryObjectSendStream[_Fetched],
    ) -> None:
        while not self._stopping and self._rewind is None:
            try:
                messages = await subscription.fetch(self._fetch_batch, timeout=1.0)
            # nats-py raises its own TimeoutError, or asyncio's when the wait ran out before
            # the pull request was sent (a busy machine): both subclass the builtin
            except (TimeoutError, nats.errors.ConnectionClosedError):
                continue
            except nats.errors.Error as exc:
                log.debug("fetch failed: %s", exc)
                await anyio.sleep(0.25)
                continue
            await send.send(await self._handle_batch(router, messages))

    async def _reset_consumer(self, js: JetStreamContext, position: int) -> int:
        """Start the consumer again right after ``position`` or its acknowledgement floor,
        whichever is further, in stream order; return the first stream sequence it delivers.

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
                position = max(position, info.ack_floor.stream_seq if info.ack_floor else 0)
                await js.delete_consumer(stream.name, self.durable)
            if position:
                config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
                config.opt_start_seq = position + 1
            await js.add_consumer(stream.name, config)
        except nats.js.errors.APIError as exc:
            raise ServiceUnavailableError(
                f"cannot set up consumer {self.durable} on stream {stream.name}: {exc.description}"
            ) from exc
        except TimeoutError as exc:  # nats-py's and asyncio's alike
            raise ServiceUnavailableError("JetStream did not answer in time") from exc
        return position + 1

    async def _save_positions(self, positions: Positions) -> None:
        saved = self.position
        while True:
            await anyio.sleep(POSITION_EVERY)
            position = self.position
            if position != saved and self._holds_lease():
                if await positions.save(self.durable, position):
                    saved = position

    async def _handle_batch(self, router: RunRouter, messages: list[Msg]) -> _Fetched:
        fetched: _Fetched = []
        for msg in messages:
            self._counts["messages"] += 1
            seq = msg.metadata.sequence.stream
            self._pending.add(seq)
            self._top = max(self._top, seq)
            if self._rewind is not None:
                continue  # comes again after the rewind
            receipt = await self._handle(router, msg)
            if receipt is not None and receipt is not _LATER:
                fetched.append((receipt, msg))
        return fetched

    async def _acknowledge(self, fetched: MemoryObjectReceiveStream[_Fetched]) -> None:
        """Acknowledge each batch's messages once their events are written; stop at one that
        was not."""
        async with fetched:
            async for batch in fetched:
                for receipt, msg in batch:
                    if self._rewind is not None:
                        break
                    if await receipt.wait():
                        await msg.ack()
                        self._settled(msg)
                    else:
                        self._request_rewind(f"a message on {msg.subject} was not written")

    def _settled(self, msg: Msg) -> None:
        self._pending.discard(msg.metadata.sequence.stream)
        self._holds.pop(msg.metadata.sequence.stream, None)

    def _request_rewind(self, why: str) -> None:
        if self._rewind is None:
            self._rewind = why

    async def _handle(self, router: RunRouter, msg: Msg) -> Receipt | None:
        """What to wait for before acknowledging ``msg``; None when it was handed back or
        refused, ``_LATER`` when it cannot be written now (the consumer starts again)."""
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
        if (batch.workflow_id, batch.run_id) != key:
            return await self._refuse(
                msg,
                f"a message on {msg.subject} holding events of run {batch.run_id} of "
                f"{batch.workflow_id}, not of the run its subject names",
            )
        if not batch.events:
            return _DONE  # a joining observer's probe
        producer = batch.events[0].producer or ""
        stream_seq = msg.metadata.sequence.stream
        holds = self._holds.get(stream_seq, 0)
        try:
            receipt = await router.submit(
                batch, producer, self, connected=False, in_order=holds < GAP_RETRIES
            )
        except ServiceError as exc:
            return await self._refused(msg, batch, key, exc, holds)
        if holds >= GAP_RETRIES:
            log.warning(
                "run %s: producer %s's events before %d never arrived; wrote on",
                key[1], producer, batch.events[0].seq,
            )  # fmt: skip
        counts["events_queued"] += len(batch.events)
        return receipt

    async def _refused(
        self, msg: Msg, batch: Batch, key: tuple[str, str], exc: ServiceError, holds: int
    ) -> Receipt | None:
        if defers(exc.code) and not isinstance(exc, ProtocolError):
            self._request_rewind(f"run {key[1]} of {key[0]}: {exc}")
            return _LATER
        if exc.code == ErrorCode.SEQ_AHEAD:
            self._holds[msg.metadata.sequence.stream] = holds + 1
            self._counts["held"] += 1
            await msg.nak(delay=GAP_DELAY * (holds + 1))
            return None
        if exc.code == ErrorCode.TOO_MANY_RUNS or (
            exc.code in _WAIT_FOR and msg.metadata.num_delivered <= OPEN_RETRIES
        ):  # a full collector makes room as runs end: it is waited for, never given up on
            self._counts["held"] += 1
            await msg.nak(delay=OPEN_DELAY)
            return None
        return await self._refuse(msg, f"{len(batch.events)} event(s) of run {key[1]}: {exc}")

    async def _refuse(self, msg: Msg, what: str) -> Receipt | None:
        """Terminate ``msg`` (never delivered again), counted and logged; None."""
        self._counts["rejected"] += 1
        log.error("not written: %s", what)
        await msg.term()
        self._settled(msg)
        return None
