"""A stand-in for the seed's synchronous observer, written for this benchmark.

It does per event what the seed did: build the entry dict, ``json.dumps`` it, then open,
append to and close each of the four files (trace twice, log twice), on the caller's thread.
Header and summary go to the log, the metadata JSON to the audit directory at the end. The
progress bar is left out (the seed's bar reopened both logs on every redraw), which makes
this stand-in cheaper than the seed, not dearer. The faithful stand-in, for comparing formats,
is ``tests/compat/seed_observer.py``.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from workload import WORKFLOW_ID

_RULE = "=" * 80


class SeedObserver:
    """Synchronous: every call writes its lines before it returns."""

    def __init__(self, out: Path, total_nodes: int) -> None:
        self.total_nodes = total_nodes
        self.pid = os.getpid()
        self.started = datetime.now()
        self.started_epoch = time.time()
        self.nodes_completed = 0
        self.node_times: dict[str, float] = {}
        stamp = self.started.strftime("%Y%m%d_%H%M%S")
        audit = out / "audit" / "step_01"
        for directory in (out / "logs", out / "traces", audit):
            directory.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.audit = audit
        self.traces = (out / "traces" / f"trace_step_01_{stamp}.jsonl", audit / "trace_01.jsonl")
        self.logs = (out / "logs" / f"execution_{WORKFLOW_ID}_{stamp}.log", audit / "log_01.log")

    def workflow_start(self) -> None:
        self._record(
            "workflow_start",
            message=f"Workflow execution started: {WORKFLOW_ID}",
            details={
                "workflow_id": WORKFLOW_ID,
                "pid": self.pid,
                "timestamp": self.started.isoformat(),
                "total_nodes": self.total_nodes,
            },
        )
        header = [_RULE, f"[RUN] Executing: {WORKFLOW_ID}", f"[DIR] Output: {self.out}", _RULE]
        self._append(self.logs[:1], "\n".join(["", *header, ""]) + "\n")

    def node_start(self, node_id: str, index: int) -> None:
        self._record(
            "node_start", node_id=node_id, node_index=index, details={"epoch_seconds": time.time()}
        )

    def node_success(
        self, node_id: str, duration: float, output_hash: str, summary: dict[str, Any]
    ) -> None:
        self.nodes_completed += 1
        self.node_times[node_id] = duration
        self._record(
            "node_success",
            node_id=node_id,
            details={
                "duration_seconds": duration,
                "output_hash": output_hash,
                "epoch_seconds": time.time(),
                "output_summary": summary,
            },
        )

    def workflow_complete(self) -> None:
        elapsed = time.time() - self.started_epoch
        summary = [
            _RULE,
            f" Workflow completed: {WORKFLOW_ID}",
            f" Nodes executed: {self.nodes_completed}/{self.total_nodes}",
            f" Total time: {elapsed:.2f}s",
            _RULE,
        ]
        self._append(self.logs[:1], "\n".join(["", *summary, ""]) + "\n")
        self._record(
            "workflow_complete",
            details={
                "workflow_id": WORKFLOW_ID,
                "nodes_completed": self.nodes_completed,
                "total_time_seconds": elapsed,
                "node_times": self.node_times,
                "epoch_seconds": time.time(),
            },
        )
        metadata = {
            "workflow_id": WORKFLOW_ID,
            "start_time": self.started.isoformat(),
            "end_time": datetime.now().isoformat(),
            "pid": self.pid,
            "total_nodes": self.total_nodes,
            "nodes_completed": self.nodes_completed,
            "total_time_seconds": elapsed,
            "node_times": self.node_times,
        }
        with open(self.audit / "metadata_01.json", "w") as handle:
            json.dump(metadata, handle, indent=2)

    def _record(
        self,
        event_type: str,
        *,
        message: str | None = None,
        node_id: str | None = None,
        node_index: int | None = None,
        details: dict[str, Any],
    ) -> None:
        timestamp = datetime.now().isoformat()
        entry: dict[str, Any] = {
            "timestamp": timestamp,
            "epoch_seconds": time.time(),
            "event_type": event_type,
            "pid": self.pid,
            "workflow_id": WORKFLOW_ID,
        }
        if node_id:
            entry["node_id"] = node_id
        if node_index:
            entry["node_index"] = node_index
        if message:
            entry["message"] = message
        entry.update(details)
        self._append(self.traces, json.dumps(entry) + "\n")
        line = f"[{timestamp}] {event_type.upper()}"
        if node_id:
            line += f" {node_id}"
        if message:
            line += f": {message}"
        self._append(self.logs, f"{line} | {json.dumps(details)}\n")

    @staticmethod
    def _append(paths: tuple[Path, ...], text: str) -> None:
        for path in paths:
            with open(path, "a") as handle:
                handle.write(text)


class SeedAsync:
    """The seed's observer called straight from async workers, as the seed was."""

    def __init__(self, out: Path, nodes: int) -> None:
        self._out, self._nodes = out, nodes
        self.observer: SeedObserver | None = None

    async def open(self) -> None:
        self.observer = SeedObserver(self._out, self._nodes)
        self.observer.workflow_start()

    async def node_start(self, node_id: str, index: int) -> None:
        assert self.observer is not None
        self.observer.node_start(node_id, index)

    async def node_success(
        self, node_id: str, index: int, duration: float, output_hash: str, summary: Any
    ) -> None:
        assert self.observer is not None
        self.observer.node_success(node_id, duration, output_hash, summary)

    async def close(self) -> None:
        assert self.observer is not None
        self.observer.workflow_complete()

    def trace_files(self) -> list[Path]:
        assert self.observer is not None
        return list(self.observer.traces)


class SeedThreads:
    """The seed's observer called from the pool's threads."""

    def __init__(self, out: Path, nodes: int) -> None:
        self._out, self._nodes = out, nodes
        self.observer: SeedObserver | None = None

    def open(self) -> None:
        self.observer = SeedObserver(self._out, self._nodes)
        self.observer.workflow_start()

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
        self.observer.workflow_complete()

    def trace_files(self) -> list[Path]:
        assert self.observer is not None
        return list(self.observer.traces)
