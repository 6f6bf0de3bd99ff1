"""Helpers for testing code that emits tracebus events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from ._events import Event, event_type_of

E = TypeVar("E", bound=Event)


class CapturingSink:
    """A sink that keeps every event the writer hands it, in order.

    Pass it in ``sinks=`` (Observer, SyncObserver, EventBus) and assert on ``events`` after
    the run, on ``of_type(Note)`` for the events of one type, typed, or on ``types()`` for
    the sequence of event types.
    """

    name = "capture"

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.batches = 0

    async def write_batch(self, events: Sequence[Event]) -> None:
        self.events.extend(events)
        self.batches += 1

    def types(self) -> list[str]:
        """The ``event_type`` of every captured event, in order."""
        return [event_type_of(event) for event in self.events]

    def of_type(self, kind: type[E]) -> list[E]:
        """The captured events of class ``kind`` (``Note``, ``NodeSuccess``...), in order."""
        return [event for event in self.events if isinstance(event, kind)]
