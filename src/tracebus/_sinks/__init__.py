"""Sinks: what a sink is (``Sink``), and the run's own outputs, one module per job.

``_run_files`` is the sink of a run's own files: the trace and log lines (``_encoding``),
appended by ``_files``; the console's header and summary (``_console``), the progress bar
(``_progress``) and the metadata file (``_metadata``) are its parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .._events import Event


class Sink(Protocol):
    """Anything with ``async def write_batch(events)``.

    Optional: ``async def aopen()`` (called before the first batch), ``async def aclose()``
    (called after the last; may raise SinkError), ``def prepare(events)``, a ``name`` for
    error messages, and ``def report()``: a JSON-able mapping of what the sink did, written
    into the run's metadata under ``sinks`` and the sink's name each time the metadata is.
    An exception from ``write_batch`` is recorded, the batch counted as lost
    for that sink, and the writer carries on.

    ``prepare`` sees each step of a batch as it is taken and stamped, on the writer's task,
    before the whole batch goes to ``write_batch``; it returns the events to hand on (all of
    them, unless the sink refuses some: those go to no sink, counted as left out). An
    exception from it loses that step, counted as lost. Only a bus's own sinks are prepared.
    A step too long to prepare at once may be left in parts to ``def prepare_more()``, which
    the writer calls after ``prepare``, letting its producers run between two calls, until it
    returns False, before it takes the next step.

    A bus's own sinks are written by the writer in turn (a slow one holds the writer up: they
    are the bus's destination). The sinks a user adds to a run are ``detached``: each is fed
    by a task of its own from a bounded buffer of its own (see SinkFeed).
    """

    async def write_batch(self, events: Sequence[Event]) -> None: ...
