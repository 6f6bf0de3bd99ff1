"""The naive batching writer: what a competent engineer writes in an afternoon.

A deque, one writer task, msgspec encoding, one write per file per batch on a worker thread;
the trace written four times (to the four paths the other peers write), and nothing else: no
human log lines, no run state, no metadata, no progress, no bound on the queue, no fsync. It
is the yardstick for the writing itself. From threads, the same writer runs on an event loop
in a thread of its own, woken with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from workload import WORKFLOW_ID


class NaiveWriter:
    def __init__(self, out: Path) -> None:
        stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
        audit = out / "audit" / "step_01"
        self.paths = [out / "traces" / f"trace_step_01_{stamp}.jsonl", audit / "trace_01.jsonl"]
        self.paths += [out / "logs" / f"execution_{WORKFLOW_ID}_{stamp}.log", audit / "log_01.log"]
        for path in self.paths:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._fds = [os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) for p in self.paths]
        self._queue: deque[dict[str, Any]] = deque()
        self._encoder = msgspec.json.Encoder()
        self._pid = os.getpid()
        self._idle = self._closed = False

    def start(self) -> None:
        """Start the writer task on the running loop."""
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self._run())

    def record(self, event_type: str, **fields: Any) -> None:
        """Queue an event; safe from any thread."""
        self._queue.append(
            {
                "event_type": event_type,
                "epoch_seconds": time.time(),
                "pid": self._pid,
                "workflow_id": WORKFLOW_ID,
                **fields,
            }
        )
        if self._idle:  # the writer sleeps: wake it, once
            self._idle = False
            if threading.get_ident() == self._loop_thread:
                self._wake.set()
            else:
                self._loop.call_soon_threadsafe(self._wake.set)

    async def close(self) -> None:
        """Write what is queued and close the files (on the writer's loop)."""
        self._closed = True
        self._wake.set()
        await self._task
        for fd in self._fds:
            os.close(fd)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            self._idle = True  # before looking at the queue: a producer wakes us, or we see it
            if not self._queue:
                if self._closed:
                    return
                await self._wake.wait()
            self._idle = False
            batch = [self._queue.popleft() for _ in range(len(self._queue))]
            await asyncio.to_thread(self._write, self._encoder.encode_lines(batch))

    def _write(self, data: bytes) -> None:
        for fd in self._fds:
            os.write(fd, data)


class NaiveAsync:
    """The naive writer called from the async workers."""

    def __init__(self, out: Path, nodes: int) -> None:
        self._nodes = nodes
        self.writer = NaiveWriter(out)

    async def open(self) -> None:
        self.writer.start()
        self.writer.record("workflow_start", total_nodes=self._nodes)

    async def node_start(self, node_id: str, index: int) -> None:
        self.writer.record("node_start", node_id=node_id, node_index=index)

    async def node_success(
        self, node_id: str, index: int, duration: float, output_hash: str, summary: Any
    ) -> None:
        self.writer.record(
            "node_success",
            node_id=node_id,
            duration_seconds=duration,
            output_hash=output_hash,
            output_summary=summary,
        )

    async def close(self) -> None:
        self.writer.record("workflow_complete")
        await self.writer.close()

    def trace_files(self) -> list[Path]:
        return self.writer.paths


class NaiveThreads:
    """The naive writer called from the pool's threads; its task on a loop in its own thread."""

    def __init__(self, out: Path, nodes: int) -> None:
        self._nodes = nodes
        self.writer = NaiveWriter(out)
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self.writer.start()
        self._stop = asyncio.Event()
        self._started.set()
        await self._stop.wait()
        await self.writer.close()

    def open(self) -> None:
        self._thread.start()
        self._started.wait()
        self.writer.record("workflow_start", total_nodes=self._nodes)

    def node_start(self, node_id: str, index: int) -> None:
        self.writer.record("node_start", node_id=node_id, node_index=index)

    def node_success(
        self, node_id: str, index: int, duration: float, output_hash: str, summary: Any
    ) -> None:
        self.writer.record(
            "node_success",
            node_id=node_id,
            duration_seconds=duration,
            output_hash=output_hash,
            output_summary=summary,
        )

    def close(self) -> None:
        self.writer.record("workflow_complete")
        assert self._stop is not None
        self.writer._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()

    def trace_files(self) -> list[Path]:
        return self.writer.paths
