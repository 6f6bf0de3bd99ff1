"""The writer's first step on every event: its ``seq``, its ``timestamp``, and leaving out
what a producer sent twice.

Only the writer task stamps, so nothing here is locked.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from ._events import Event
from ._text import printable

_DIGITS = tuple(f"{n:03d}" for n in range(1000))
#: Where a clock starts: further below zero, in microseconds, than any float epoch, so that
#: the first timestamp is never taken for one of the current second.
_NO_SECOND = -(10**400)


class IsoClock:
    """Formats epoch seconds as ISO 8601 in UTC, formatting each second's prefix once."""

    def __init__(self) -> None:
        #: The current second's first microsecond: a timestamp in that second is this many
        #: microseconds plus ``micros``, found with one subtraction.
        self._start = _NO_SECOND
        self._prefix = ""

    def __call__(self, epoch: float) -> str:
        micros = round(epoch * 1_000_000) - self._start
        if not 0 <= micros < 1_000_000:
            micros = self.enter(round(epoch * 1_000_000))
        # two table look-ups instead of an int format: this runs once per event
        return f"{self._prefix}{_DIGITS[micros // 1000]}{_DIGITS[micros % 1000]}+00:00"

    def enter(self, epoch_micros: int) -> int:
        """Make the second of ``epoch_micros`` the current one (its ``YYYY-MM-DDTHH:MM:SS.``
        prefix formatted once); return the microseconds into it."""
        second, micros = divmod(epoch_micros, 1_000_000)
        self._start = second * 1_000_000
        self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        return micros


class Stamper:
    """Stamps the events a writer takes, in the order it takes them.

    ``seq`` is 1, 2, 3... in write order, unless a remote producer numbered the event itself;
    ``timestamp`` is the ISO form of ``epoch_seconds``, unless the event came with one (then
    escaped, as the logs show it).
    """

    def __init__(self) -> None:
        self.seq = 0
        #: The highest ``seq`` written per remote producer; anything at or below it is a resend.
        self.last_seq: dict[str, int] = {}
        self.duplicates = 0
        self._iso = IsoClock()

    def __call__(self, events: Iterable[Event]) -> list[Event]:
        """Stamp ``events`` and return those to write: a remote producer numbers its events
        1, 2, 3... and resends what the collector did not acknowledge, so an event whose
        ``(producer, seq)`` is at or below that producer's highest ``seq`` so far is a
        duplicate and left out."""
        # The writer's per-event hot path: the clock's state in locals and the ISO timestamp
        # made here, as IsoClock does.
        iso = self._iso
        start, prefix = iso._start, iso._prefix
        last_seq = self.last_seq
        kept: list[Event] = []
        seq = self.seq
        try:
            for event in events:
                producer = event.producer
                if producer is not None and event.seq:
                    if event.seq <= last_seq.get(producer, 0):
                        self.duplicates += 1
                        continue
                    last_seq[producer] = event.seq
                elif not event.seq:
                    seq += 1
                    event.seq = seq
                kept.append(event)
                if not event.timestamp:
                    # within the current second: one subtraction of the (large) epoch
                    # microseconds, instead of a divmod of them
                    micros = round(event.epoch_seconds * 1_000_000) - start
                    if not 0 <= micros < 1_000_000:
                        micros = iso.enter(round(event.epoch_seconds * 1_000_000))
                        start, prefix = iso._start, iso._prefix
                    event.timestamp = (
                        f"{prefix}{_DIGITS[micros // 1000]}{_DIGITS[micros % 1000]}+00:00"
                    )
                elif not event.timestamp.isprintable():  # sent with the event: shown in logs
                    event.timestamp = printable(event.timestamp)
        finally:
            self.seq = seq
        return kept
