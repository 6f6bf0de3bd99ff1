"""Assembles one run's single writer: its layout, state, files and bus.

Every way of feeding a run (Observer, SyncObserver, the collector service) goes through
``open_run``, so a run's files look the same whoever produced its events.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Unpack

from ._bus import EventBus
from ._feed import sink_reports
from ._layout import RunLayout, create_layout
from ._options import UNSET, RunOptions, with_defaults
from ._sinks._run_files import RunFiles
from ._state import RunState


@dataclass(frozen=True, slots=True)
class Resume:
    """A run whose files exist already (the collector restarted): its writer appends to them.

    ``events_written`` is how many events the trace holds, for the metadata's count.
    """

    layout: RunLayout
    started: datetime
    events_written: int


@dataclass(frozen=True, slots=True)
class Run:
    """One run's writer parts; enter ``bus`` to start writing."""

    layout: RunLayout
    state: RunState
    files: RunFiles
    bus: EventBus
    started: datetime


def open_run(
    output_dir: str | os.PathLike[str],
    workflow_id: str,
    run_id: str,
    total_nodes: int,
    *,
    pid: int,
    resume: Resume | None = None,
    on_trace_failure: Callable[[OSError], None] | None = None,
    **options: Unpack[RunOptions],
) -> Run:
    """Claim the run's files (see ``create_layout``), or take over ``resume``'s, and build its
    writer, not yet started. With ``on_trace_failure`` (the collector's runs), the writer stops
    writing at the first failed append to the trace and calls it (see ``RunFiles``).

    Raises InvalidIdError for unsafe ids and OSError when the directories cannot be made.
    """
    given: RunOptions = with_defaults("open_run", options, RunOptions)
    console = sys.stdout if given["console"] is UNSET else given["console"]
    sinks = given["sinks"]
    now = time.time()
    if resume is None:
        started = datetime.fromtimestamp(now)
        layout = create_layout(output_dir, workflow_id, run_id, started)
        events_before = 0
    else:
        started, layout, events_before = resume.started, resume.layout, resume.events_written
    state = RunState(workflow_id, run_id, total_nodes, now)
    bus: EventBus
    files = RunFiles(
        layout,
        state,
        pid=pid,
        started=started,
        progress=given["progress"],
        console=console,
        dropped=lambda: bus.statistics().dropped,
        sink_failures=lambda: bus.sink_failures(),
        sink_reports=lambda: sink_reports(sinks),
        events_before=events_before,
        on_trace_failure=on_trace_failure,
        taken=lambda: bus.taken,
    )
    # A user's sinks never hold up the run's own files: each gets a buffer and a task of its
    # own, unless it asks to be written in line with them (``direct = True``).
    direct = [sink for sink in sinks if getattr(sink, "direct", False)]
    bus = EventBus(
        (files, *direct),
        capacity=given["capacity"],
        overflow=given["overflow"],
        close_timeout=given["close_timeout"],
        detached=[sink for sink in sinks if not getattr(sink, "direct", False)],
    )
    state.stamper = bus.stamper  # what the collector replays into a resumed run goes through it
    return Run(layout, state, files, bus, started)
