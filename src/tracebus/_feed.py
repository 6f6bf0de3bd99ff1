"""A user's sink beside a run's own files: fed from a bounded buffer of its own by a task of
its own, so that however slow it is, or hung, the writer and the run's files never wait on it.

What does not fit in the buffer is lost for that sink alone, counted, and reported at close
(in the metadata's ``write_errors`` and in the SinkError), as is what it has not taken when
its time at close runs out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from ._events import Event
from ._exceptions import SinkError, SinkOverflowError

if TYPE_CHECKING:
    from ._sinks import Sink


def sink_name(sink: object) -> str:
    """The name a sink is reported under: its ``name``, else its class's."""
    return str(getattr(sink, "name", None) or type(sink).__name__)


def sink_reports(sinks: Iterable[object]) -> dict[str, Any]:
    """What each sink with a ``report()`` says of itself, by its name (for the metadata)."""
    return {
        sink_name(sink): report()
        for sink in sinks
        if callable(report := getattr(sink, "report", None))
    }


class SinkFeed:
    """Hands ``sink`` the writer's batches, in order, from a buffer of ``capacity`` events."""

    def __init__(self, sink: Sink, capacity: int) -> None:
        self.sink = sink
        self.name = sink_name(sink)
        self.capacity = capacity
        self.buffered = 0
        self.lost = 0
        self.error: BaseException | None = None
        self.done = anyio.Event()
        self._batches: deque[Sequence[Event]] = deque()
        self._wakeup = anyio.Event()
        self._closing = False
        self._scope = anyio.CancelScope()
        self._timeout = 0.0

    def offer(self, batch: Sequence[Event]) -> None:
        """Buffer ``batch`` for the sink, or what fits of it; never waits (writer only)."""
        room = self.capacity - self.buffered
        if len(batch) > room:
            self._lose(
                len(batch) - room,
                SinkOverflowError(
                    f"fell {self.capacity} events behind the run; what it could not take "
                    "was dropped for it"
                ),
            )
            batch = batch[:room]
        if batch:
            self._batches.append(batch)
            self.buffered += len(batch)
            self._wakeup.set()

    def close(self) -> None:
        """No more batches: the task ends once the sink has taken what is buffered."""
        self._closing = True
        self._wakeup.set()

    def cancel(self, timeout: float) -> None:
        """Stop the sink where it is (it had ``timeout`` seconds): what it has not taken is
        lost."""
        self._timeout = timeout
        self._scope.cancel()

    async def run(self) -> None:
        """Feed the sink until closed and empty, then close the sink; or until cancelled."""
        try:
            with self._scope:
                while self._batches or not self._closing:
                    if not self._batches:
                        self._wakeup = anyio.Event()
                        await self._wakeup.wait()
                        continue
                    batch = self._batches[0]
                    try:
                        await self.sink.write_batch(batch)
                    except Exception as exc:
                        self._lose(len(batch), exc)
                    self._batches.popleft()
                    self.buffered -= len(batch)
                await self._close_sink()
        finally:
            if self._scope.cancel_called or self.buffered:
                self._lose(
                    self.buffered,
                    TimeoutError(f"had not taken every event {self._timeout:g}s into the close"),
                )
                self.buffered = 0
                self._batches.clear()
            self.done.set()

    async def _close_sink(self) -> None:
        aclose = getattr(self.sink, "aclose", None)
        if aclose is None:
            return
        try:
            await aclose()
        except SinkError as exc:
            for lost, error in exc.failures.values():
                self._lose(lost, error)
        except Exception as exc:
            self._lose(0, exc)

    def _lose(self, events: int, error: BaseException) -> None:
        self.lost += events
        if self.error is None:
            self.error = error
