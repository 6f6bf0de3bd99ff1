"""Every peer the harness compares, by name.

Each is imported only in the subprocess that measures it, so a peer's imports count in its
own peak RSS and nowhere else.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal

from workload import events_of


@dataclass(frozen=True)
class Peer:
    name: str
    label: str
    kind: Literal["async", "threads"]
    module: str
    factory: str
    baseline: str
    spans: bool = False  # one trace line per node (plus the workflow) rather than per event

    def load(self) -> type:
        cls: type = getattr(importlib.import_module(f"peers.{self.module}"), self.factory)
        return cls

    def trace_lines(self, nodes: int) -> int:
        """Lines each of the peer's trace files must hold after a run."""
        return nodes + 1 if self.spans else events_of(nodes)


PEERS = {
    peer.name: peer
    for peer in (
        Peer("baseline", "no observability", "async", "baseline", "NothingAsync", "baseline"),
        Peer(
            "tracebus",
            "tracebus, progress off",
            "async",
            "tracebus_peer",
            "TracebusAsync",
            "baseline",
        ),
        Peer(
            "tracebus-progress",
            "tracebus, progress on",
            "async",
            "tracebus_peer",
            "TracebusProgressAsync",
            "baseline",
        ),
        Peer("seed", "seed-style sync observer", "async", "seed", "SeedAsync", "baseline"),
        Peer(
            "logging",
            "stdlib QueueHandler -> QueueListener",
            "async",
            "stdlib_logging",
            "LoggingAsync",
            "baseline",
        ),
        Peer(
            "otel",
            "OpenTelemetry BatchSpanProcessor",
            "async",
            "otel",
            "OtelAsync",
            "baseline",
            spans=True,
        ),
        Peer(
            "naive",
            "naive batching writer (trace only)",
            "async",
            "naive",
            "NaiveAsync",
            "baseline",
        ),
        Peer(
            "threads-baseline",
            "threads: no observability",
            "threads",
            "baseline",
            "NothingThreads",
            "threads-baseline",
        ),
        Peer(
            "threads-tracebus",
            "threads: tracebus SyncObserver",
            "threads",
            "tracebus_peer",
            "TracebusThreads",
            "threads-baseline",
        ),
        Peer(
            "threads-seed",
            "threads: seed-style sync observer",
            "threads",
            "seed",
            "SeedThreads",
            "threads-baseline",
        ),
        Peer(
            "threads-naive",
            "threads: naive batching writer",
            "threads",
            "naive",
            "NaiveThreads",
            "threads-baseline",
        ),
    )
}
