"""The sustained run: many producers push events into one tracebus run as fast as it takes them.

Each producer records nodes (start, then success) back to back, yielding to the loop after
each node as any real task would between awaits; ``emit`` itself suspends only when the bounded
queue is full. Every node id is new, so memory shows the bounded queue and the run's capped
per-node table together.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from workload import (
    WORKFLOW_ID,
    LagProbe,
    current_rss_mib,
    hash_summary,
    node_summary,
    peak_rss_mib,
)

import tracebus


async def run_sustained(out: Path, events: int, producers: int) -> dict[str, Any]:
    pairs = max(1, (events - 2) // 2 // producers)
    total = pairs * producers * 2 + 2
    checkpoint = min(1_000_000, (total - 2) // 5 // 2 * 2)
    samples: dict[int, dict[str, float]] = {}
    summary = node_summary(7)
    digest = hash_summary(summary)
    obs = tracebus.Observer(WORKFLOW_ID, out, total_nodes=0, progress=False, console=None)
    lag = LagProbe()
    rss_before = current_rss_mib()

    produced = [0]

    def sample(events: int) -> None:
        samples[events] = {"seconds": time.perf_counter() - started, "rss_mib": current_rss_mib()}

    async def producer(number: int) -> None:
        for k in range(pairs):
            node_id = f"p{number:03d}_{k:07d}"
            await obs.node_start(node_id)
            await obs.node_success(node_id, 0.001, digest, summary)
            produced[0] += 2
            if produced[0] == checkpoint:
                sample(checkpoint)
            await asyncio.sleep(0)

    started = time.perf_counter()
    lag.start()
    async with obs:
        async with asyncio.TaskGroup() as group:
            for number in range(producers):
                group.create_task(producer(number))
        produced_at = time.perf_counter()
        await obs.bus.wait_drained()
        drained = time.perf_counter() - started
        drained_events = obs.statistics().written
        sample(drained_events)
    closed = time.perf_counter() - started
    await lag.stop()
    assert obs.metadata is not None
    written = obs.metadata["events_written"]
    return {
        "events": total,
        "events_written": written,
        "producers": producers,
        "seconds_to_written": drained,
        "seconds_to_closed": closed,
        "events_per_s": drained_events / drained,
        "events_per_s_first": checkpoint / samples[checkpoint]["seconds"],
        "rss_before_mib": rss_before,
        "rss_at": {str(k): v for k, v in samples.items()},
        "peak_rss_mib": peak_rss_mib(),
        # while the producers run, and over the whole run (draining and closing too)
        "lag": lag.summary(until=produced_at),
        "lag_whole_run": lag.summary(),
        "trace_bytes": obs.trace_file.stat().st_size,
        "log_bytes": obs.log_file.stat().st_size,
    }
