"""The seed's per-node console lines, for the compat observer without tqdm."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from .._events import Event, NodeFailure, NodeSuccess
from .._text import printable


class NodeLines:
    """The seed's per-node console lines when tqdm is off, printed by the writer."""

    name = "console node lines"
    direct = True  # printed in line with the run's own console output, in its order

    def __init__(self, console: TextIO, total_nodes: int) -> None:
        self._console = console
        self._total = total_nodes

    async def write_batch(self, events: Sequence[Event]) -> None:
        lines = []
        for event in events:
            if isinstance(event, NodeSuccess):
                line = f"  {self._label(event)} ({event.duration_seconds:.2f}s)"
            elif isinstance(event, NodeFailure):
                error, seconds = event.error, event.duration_seconds
                line = f"  {self._label(event)} Error: {error} ({seconds:.2f}s)"
            else:
                continue
            lines.append(printable(line) + "\n")
        if lines:
            self._console.write("".join(lines))
            self._console.flush()

    def _label(self, event: NodeSuccess | NodeFailure) -> str:
        if event.node_index is None:
            return event.node_id
        return f"[{event.node_index}/{self._total}] {event.node_id}"
