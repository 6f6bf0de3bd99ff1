"""Logs into the run: ``logging`` records and warnings turned into ``log`` events.

A record becomes an event on the thread that logged it (its current node is that context's)
and is queued without waiting: when the queue is full it is dropped and counted, whatever the
overflow policy, so logging never blocks a thread or the event loop. tracebus's own loggers
are never captured, nor anything logged while a record is being captured (no recursion).
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from ._events import Event
from ._factory import EventFactory

#: The logger warnings are recorded under, as ``logging.captureWarnings`` names it.
WARNINGS_LOGGER = "py.warnings"

_capturing = threading.local()  # set while this thread is turning a record into an event


class Capturing(Protocol):
    """What a capture needs of an observer: its events and a queue that never waits."""

    @property
    def events(self) -> EventFactory: ...

    def put_droppable(self, event: Event) -> None: ...


def _own(name: str) -> bool:
    return name == "tracebus" or name.startswith("tracebus.")


class LoggingHandler(logging.Handler):
    """A ``logging`` handler recording each record it gets as a ``log`` event of ``observer``'s
    run (any observer, blocking or not): logger name, level, message, formatted exception,
    and the current node. For users who wire handlers themselves; ``capture_logging=LEVEL``
    on an observer adds one to the root logger for the run.

    Never blocks: a record that finds the queue full is dropped and counted; one logged after
    the run ended is ignored.
    """

    def __init__(self, observer: Capturing, level: int | str = logging.NOTSET) -> None:
        super().__init__(level)
        self._observer = observer
        self._exception_formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        if _own(record.name) or getattr(_capturing, "active", False):
            return
        _capturing.active = True
        try:
            exception = None
            if record.exc_info:
                formatter = self.formatter or self._exception_formatter
                exception = formatter.formatException(record.exc_info)
            if record.stack_info:
                stack = (self.formatter or self._exception_formatter).formatStack(record.stack_info)
                exception = stack if exception is None else f"{exception}\n{stack}"
            observer = self._observer
            observer.put_droppable(
                observer.events.log(
                    record.getMessage(),
                    record.name,
                    record.levelname,
                    record.levelno,
                    exception,
                )
            )
        except Exception:
            self.handleError(record)
        finally:
            _capturing.active = False


_ShowWarning = Callable[..., None]


class WarningsCapture:
    """``warnings.warn`` inside the run recorded as ``log`` events (logger ``py.warnings``,
    level WARNING), then shown as before."""

    def __init__(self, observer: Capturing) -> None:
        self._observer = observer
        self._previous: _ShowWarning | None = None
        self._on = False

    def install(self) -> None:
        self._previous = warnings.showwarning
        self._on = True
        warnings.showwarning = self._show

    def remove(self) -> None:
        self._on = False
        if warnings.showwarning == self._show and self._previous is not None:
            warnings.showwarning = self._previous
        # else a hook installed after ours still calls ours: it passes through, recording none

    def _show(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if self._on and not getattr(_capturing, "active", False):
            _capturing.active = True
            try:
                observer = self._observer
                text = f"{filename}:{lineno}: {category.__name__}: {message}"
                observer.put_droppable(
                    observer.events.log(text, WARNINGS_LOGGER, "WARNING", logging.WARNING)
                )
            except Exception:  # a warning that cannot be recorded is still shown
                pass
            finally:
                _capturing.active = False
        if self._previous is not None:
            self._previous(message, category, filename, lineno, file, line)


class RunCapture:
    """What an observer captures for its run (``capture_logging``, ``capture_warnings``),
    started when the run starts and removed when it ends."""

    def __init__(
        self, observer: Capturing, logging_level: int | str | None, capture_warnings: bool
    ) -> None:
        self._handler = (
            None if logging_level is None else LoggingHandler(observer, _level(logging_level))
        )
        self._warnings = WarningsCapture(observer) if capture_warnings else None

    def start(self) -> None:
        if self._handler is not None:
            logging.getLogger().addHandler(self._handler)
        if self._warnings is not None:
            self._warnings.install()

    def stop(self) -> None:
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
        if self._warnings is not None:
            self._warnings.remove()


def _level(level: Any) -> int:
    """A logging level (an int, or a name such as ``"INFO"``). Raises ValueError for an
    unknown name, TypeError for another type."""
    if isinstance(level, bool) or not isinstance(level, int | str):
        raise TypeError(f"capture_logging must be a logging level, not {type(level).__name__}")
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise ValueError(f"capture_logging: unknown logging level {level!r}")
    return number
