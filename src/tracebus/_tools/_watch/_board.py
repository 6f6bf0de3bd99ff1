"""The runs list: every run under the watched directories, as ``tracebus runs`` lists them,
scanned again at most every ``RESCAN`` seconds however many pages show it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from .._summary import summarize_trace
from ._live import encode
from ._paths import Roots

#: Seconds between two scans of the directories.
RESCAN = 0.5


def _find_runs(dirs: list[Path]) -> list[dict[str, Any]]:
    # a stand-in for the readers' find_runs, until it lands
    found = []
    for directory in dirs:
        for trace in sorted((directory / "traces").glob("*.jsonl")):
            try:
                s, _ = summarize_trace(trace)
            except Exception:
                continue
            found.append(
                {
                    "workflow_id": s["workflow_id"],
                    "run_id": s["run_id"],
                    "status": "running" if s["status"] == "incomplete" else s["status"],
                    "started": trace.stat().st_mtime,
                    "wall_s": s["wall_seconds"],
                    "nodes_ok": s["nodes_completed"],
                    "nodes_failed": s["nodes_failed"],
                    "nodes_skipped": s["nodes_skipped"],
                    "nodes_unfinished": s["nodes_unfinished"],
                    "cost_usd": s["cost_usd"],
                    "input_tokens": 0,
                    "output_tokens": 0,
                    "trace": str(trace),
                    "metadata": s["metadata_file"],
                }
            )
    return sorted(found, key=lambda run: run["started"], reverse=True)


class Board:
    """The runs list, shared by every page that shows it: ``version`` grows when it changes."""

    def __init__(self, roots: Roots) -> None:
        self.roots = roots
        self.version = 0
        self.encoded = encode({"runs": []})
        self._scanned = float("-inf")
        self._lock = anyio.Lock()

    async def refresh(self) -> None:
        """Scan the directories again unless that was done less than ``RESCAN`` ago."""
        async with self._lock:
            if time.monotonic() - self._scanned < RESCAN:
                return
            encoded = await anyio.to_thread.run_sync(self._scan)
            self._scanned = time.monotonic()
            if encoded != self.encoded:
                self.encoded = encoded
                self.version += 1

    def _scan(self) -> bytes:
        runs = []
        for run in _find_runs(self.roots.given):
            address = self.roots.address_of(Path(run["trace"]))
            if address is not None:
                runs.append({**run, "address": address})
        return encode({"runs": runs})
