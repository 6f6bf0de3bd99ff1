"""The codes of the collector's error frames, and what a client and a collector make of each.

Every code the service sends is a member of ``ErrorCode``; its ``fatal``, ``transient`` and
``defers`` say what happens next, so that the server, the remote observer's delivery and the
NATS collector read one table instead of keeping lists of their own.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


class ErrorCode(StrEnum):
    """An error frame's ``code``, with what it means for the connection and the batch.

    ``fatal``: the service closes the connection after it. ``transient``: it passes (the
    service is full, stopping, or cannot write for now), so an observer tries again later
    instead of giving up. ``defers``: it names no batch and refuses nothing: the batch it is
    about, and every one after, is sent again.
    """

    fatal: bool
    transient: bool
    defers: bool

    def __new__(
        cls, value: str, kind: Literal["refuses", "fatal", "transient", "defers"] = "refuses"
    ) -> ErrorCode:
        # kinds, each implying the ones before: refuses < fatal < transient < defers
        rank = ("refuses", "fatal", "transient", "defers").index(kind)
        member = str.__new__(cls, value)
        member._value_ = value
        member.fatal = rank >= 1
        member.transient = rank >= 2
        member.defers = rank >= 3
        return member

    # One line a code, alike by design: this table is the one place each code's kind is said.
    # -- the hello ----------------------------------------------------------------------------
    BAD_HELLO = "bad_hello", "fatal"
    UNSUPPORTED_VERSION = "unsupported_version", "fatal"
    BAD_TOKEN = "bad_token", "fatal"
    HELLO_TIMEOUT = "hello_timeout", "fatal"
    TOO_MANY_CONNECTIONS = "too_many_connections", "transient"
    PRODUCER_IN_USE = "producer_in_use", "defers"
    # -- frames -------------------------------------------------------------------------------
    FRAME_TOO_LARGE = "frame_too_large", "fatal"
    TOO_MANY_EVENTS = "too_many_events", "fatal"
    TRUNCATED_FRAME = "truncated_frame"
    BAD_FRAME = "bad_frame"
    # -- batches ------------------------------------------------------------------------------
    INVALID_EVENT = "invalid_event"
    INVALID_ID = "invalid_id"
    SEQ_GAP = "seq_gap"
    SEQ_AHEAD = "seq_ahead"
    RUN_NOT_OPEN = "run_not_open"
    RUN_EXISTS = "run_exists"
    RUN_ENDED = "run_ended"
    TOO_MANY_RUNS = "too_many_runs", "fatal"
    SHUTTING_DOWN = "shutting_down", "transient"
    # -- the run's files ----------------------------------------------------------------------
    WRITE_FAILED = "write_failed", "defers"
    OPEN_FAILED = "open_failed", "defers"
    RESUME_FAILED = "resume_failed", "defers"
    RUN_LOCKED = "run_locked", "defers"
    # -- JetStream ----------------------------------------------------------------------------
    REFUSED_BY_JETSTREAM = "refused_by_jetstream"

    @classmethod
    def of(cls, code: str) -> ErrorCode | None:
        """The member for ``code``; None for a code this version does not know (a newer
        service's), which a client treats as neither fatal nor transient."""
        return cls._value2member_map_.get(code)  # type: ignore[return-value]


def is_fatal(code: str) -> bool:
    """Whether the service closes the connection after an error frame with ``code``."""
    known = ErrorCode.of(code)
    return known is not None and known.fatal


def is_transient(code: str) -> bool:
    """Whether an observer refused with ``code`` tries again rather than giving up."""
    known = ErrorCode.of(code)
    return known is not None and known.transient


def defers(code: str) -> bool:
    """Whether ``code`` refuses nothing: the batch comes again later."""
    known = ErrorCode.of(code)
    return known is not None and known.defers
