"""The one workload every peer runs, and the probes around it: loop lag and memory.

A workflow of ``nodes`` nodes runs on a pool of workers (async tasks, or threads). Each node
records its start, yields once, hashes a small output summary and records its success with
the duration, the hash and the summary. The run opens the peer's files first and closes them
(summary, metadata) last; both are inside the timed section.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import resource
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

WORKFLOW_ID = "step_01_bench"
TICK = 0.001


class AsyncRecorder(Protocol):
    """What a peer offers the async workflow."""

    async def open(self) -> None: ...
    async def node_start(self, node_id: str, index: int) -> None: ...
    async def node_success(
        self, node_id: str, index: int, duration: float, output_hash: str, summary: Any
    ) -> None: ...
    async def close(self) -> None: ...


class ThreadRecorder(Protocol):
    """What a peer offers the thread-pool workflow; every method is called from any thread."""

    def open(self) -> None: ...
    def node_start(self, node_id: str, index: int) -> None: ...
    def node_success(
        self, node_id: str, index: int, duration: float, output_hash: str, summary: Any
    ) -> None: ...
    def close(self) -> None: ...


def events_of(nodes: int) -> int:
    """Events the workload records: start and success per node, plus the run's start and end."""
    return 2 * nodes + 2


def node_summary(index: int) -> dict[str, Any]:
    return {"node": index, "rows": index % 500, "status": "ok"}


def hash_summary(summary: dict[str, Any]) -> str:
    # the seed's output hash: sha256 over sort-keyed JSON, 16 hex digits
    return hashlib.sha256(json.dumps(summary, sort_keys=True).encode()).hexdigest()[:16]


async def run_async_workflow(recorder: AsyncRecorder, nodes: int, concurrency: int) -> float:
    """Run the workflow; return when (``perf_counter``) its last node finished."""
    await recorder.open()
    pending = iter(range(nodes))

    async def worker() -> None:
        for index in pending:
            node_id = f"node_{index:06d}"
            started = time.perf_counter()
            await recorder.node_start(node_id, index)
            await asyncio.sleep(0)
            summary = node_summary(index)
            digest = hash_summary(summary)
            duration = time.perf_counter() - started
            await recorder.node_success(node_id, index, duration, digest, summary)

    async with asyncio.TaskGroup() as workers:
        for _ in range(concurrency):
            workers.create_task(worker())
    nodes_done = time.perf_counter()
    await recorder.close()
    return nodes_done


def run_thread_workflow(recorder: ThreadRecorder, nodes: int, threads: int) -> float:
    """Run the workflow; return when (``perf_counter``) its last node finished."""
    recorder.open()
    pending = _SharedCounter(nodes)

    def worker() -> None:
        for index in pending:
            node_id = f"node_{index:06d}"
            started = time.perf_counter()
            recorder.node_start(node_id, index)
            time.sleep(0)
            summary = node_summary(index)
            digest = hash_summary(summary)
            duration = time.perf_counter() - started
            recorder.node_success(node_id, index, duration, digest, summary)

    with ThreadPoolExecutor(threads, thread_name_prefix="node") as pool:
        for done in [pool.submit(worker) for _ in range(threads)]:
            done.result()
    nodes_done = time.perf_counter()
    recorder.close()
    return nodes_done


class _SharedCounter:
    """``range(n)`` handed out across threads, each index once."""

    def __init__(self, count: int) -> None:
        self._lock = threading.Lock()
        self._next = 0
        self._count = count

    def __iter__(self) -> Iterator[int]:
        while True:
            with self._lock:
                index = self._next
                self._next += 1
            if index >= self._count:
                return
            yield index


class LagProbe:
    """A task that sleeps ``TICK`` over and over and records when it woke and how late."""

    def __init__(self) -> None:
        self.ticks: list[tuple[float, float]] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick())

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    async def _tick(self) -> None:
        clock, ticks = time.perf_counter, self.ticks
        while not self._stop.is_set():
            before = clock()
            await asyncio.sleep(TICK)
            woke = clock()
            ticks.append((woke, woke - before - TICK))

    def samples(self, until: float | None = None) -> list[float]:
        """How late each tick woke (seconds), for the ticks up to ``until`` (all if None)."""
        return [late for woke, late in self.ticks if until is None or woke <= until]

    def summary(self, until: float | None = None) -> dict[str, float]:
        return lag_summary(self.samples(until))


def lag_summary(late: list[float]) -> dict[str, float]:
    """p50, p99 and max of the lateness samples, in milliseconds."""
    if not late:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "ticks": 0}
    ordered = sorted(late)
    return {
        "p50_ms": statistics.median(ordered) * 1e3,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3,
        "max_ms": ordered[-1] * 1e3,
        "ticks": len(ordered),
    }


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    """This process's resident set size now."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20
