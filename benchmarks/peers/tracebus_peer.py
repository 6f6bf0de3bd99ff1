"""tracebus: Observer from async workers, SyncObserver from threads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workload import WORKFLOW_ID

import tracebus


class TracebusAsync:
    def __init__(self, out: Path, nodes: int, *, progress: bool = False) -> None:
        self.observer = tracebus.Observer(
            WORKFLOW_ID, out, total_nodes=nodes, progress=progress, console=None
        )

    async def open(self) -> None:
        await self.observer.__aenter__()

    async def node_start(self, node_id: str, index: int) -> None:
        await self.observer.node_start(node_id, index)

    async def node_success(
        self, node_id: str, index: int, duration: float, output_hash: str, summary: Any
    ) -> None:
        await self.observer.node_success(node_id, duration, output_hash, summary)

    async def close(self) -> None:
        await self.observer.__aexit__(None, None, None)

    def trace_files(self) -> list[Path]:
        layout = self.observer.layout
        return [layout.trace_file, layout.audit_trace_file]


class TracebusProgressAsync(TracebusAsync):
    def __init__(self, out: Path, nodes: int) -> None:
        super().__init__(out, nodes, progress=True)


class TracebusThreads:
    def __init__(self, out: Path, nodes: int) -> None:
        self._out, self._nodes = out, nodes
        self.observer: tracebus.SyncObserver | None = None

    def open(self) -> None:
        self.observer = tracebus.SyncObserver(
            WORKFLOW_ID, self._out, total_nodes=self._nodes, progress=False, console=None
        )

    def node_start(self, node_id: str, index: int) -> None:
        assert self.observer is not None
        self.observer.node_start(node_id, index)

    def node_success(
        self, node_id: str, index: int, duration: float, output_hash: str, summary: Any
    ) -> None:
        assert self.observer is not None
        self.observer.node_success(node_id, duration, output_hash, summary)

    def close(self) -> None:
        assert self.observer is not None
        self.observer.close()

    def trace_files(self) -> list[Path]:
        assert self.observer is not None
        layout = self.observer.layout
        return [layout.trace_file, layout.audit_trace_file]
