"""Fixture runs, written by the real observers, and a stand-in of the seed observer's format."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

import tracebus
from tests.conftest import Quiet
from tracebus import Observer


async def _together(obs: Observer, names: list[str], costs: dict[str, float]) -> None:
    """Run ``names`` as nodes that are all in flight at once before any of them ends."""
    started = 0
    all_in = anyio.Event()

    async def one(index: int, name: str) -> None:
        nonlocal started
        async with obs.node(name, index) as node:
            started += 1
            if started == len(names):
                all_in.set()
            await all_in.wait()
            node.output({"node": name, "rows": index * 10}, summary={"rows": index * 10})
            node.cost(costs.get(name, 0.0))

    async with anyio.create_task_group() as group:
        for index, name in enumerate(names):
            group.start_soon(one, index, name)


def success_run(out: Path) -> Path:
    """Three nodes in flight together, then a fourth alone; costs and a note. All succeed."""

    async def main() -> None:
        async with Quiet.Observer("step_03_load", out, total_nodes=4) as obs:
            await _together(obs, ["extract", "enrich", "score"], {"extract": 0.01, "enrich": 0.02})
            await obs.note("halfway", rows=30)
            async with obs.node("publish", 3) as node:
                node.output("done")
                node.cost(0.005)

    anyio.run(main)
    return out


def failure_run(out: Path) -> Path:
    """Five nodes one after the other; ``b`` and ``d`` fail; the workflow completes."""

    async def main() -> None:
        async with Quiet.Observer("step_04_checks", out, total_nodes=5) as obs:
            for index, name in enumerate("abcde"):
                try:
                    async with obs.node(name, index) as node:
                        if name in "bd":
                            raise ValueError(f"bad input in {name}")
                        node.output(name)
                except ValueError:
                    pass

    anyio.run(main)
    return out


def error_run(out: Path) -> Path:
    """One node succeeds, then the workflow itself raises: workflow_error."""

    async def main() -> None:
        async with Quiet.Observer("step_05_sync", out, total_nodes=3) as obs:
            async with obs.node("connect", 0):
                pass
            raise ConnectionError("database unreachable")

    try:
        anyio.run(main)
    except* ConnectionError:  # the observer's task group wraps it in an ExceptionGroup
        pass
    return out


def retry_run(out: Path) -> Path:
    """Retries, with a SyncObserver: ``fetch`` fails then succeeds on its second attempt;
    ``parse`` retries inside one attempt; ``upload`` fails twice; ``cache`` is skipped."""
    with Quiet.SyncObserver("step_06_retry", out, total_nodes=4) as obs:
        obs.node_start("fetch", 0)
        obs.node_failure("fetch", "TimeoutError: upstream slow", 0.2)
        obs.node_retry("fetch", 2, "TimeoutError: upstream slow", 0.5)
        obs.node_start("fetch", 0)
        obs.node_success("fetch", 0.1, "aa11", {"bytes": 10}, 0.001)
        obs.node_start("parse", 1)
        obs.node_retry("parse", 2, "lock busy")
        obs.node_success("parse", 0.05)
        obs.node_start("upload", 2)
        obs.node_failure("upload", "OSError: disk full", 0.01)
        obs.node_retry("upload", 2, "OSError: disk full")
        obs.node_start("upload", 2)
        obs.node_failure("upload", "OSError: disk full", 0.01)
        obs.node_skipped("cache", "up to date")
    return out


def agent_run(out: Path) -> Path:
    """An agent: ``plan``, then ``research`` (after plan) with the tool calls ``search``
    and ``fetch`` nested in it, then ``answer`` (after research); tokens of two models,
    one call outside every node."""

    async def main() -> None:
        async with Quiet.Observer("step_09_agent", out, total_nodes=5) as obs:
            async with obs.node("plan", 0) as plan:
                await plan.usage("big-model", 1000, 200, 0.02)
            async with obs.node("research", 1, depends_on=["plan"]):
                async with obs.node("search", 2) as search:
                    await search.usage("small-model", 300, 50, 0.001, cached_tokens=100)
                    await search.usage("small-model", 200, 25, 0.0005)
                async with obs.node("fetch", 3, depends_on=["search"]) as fetch:
                    fetch.cost(0.003)
            async with obs.node("answer", 4, depends_on=["research", "plan"]) as answer:
                await answer.usage("big-model", 500, 100, 0.01)
            await obs.usage("small-model", 10, 5)

    anyio.run(main)
    return out


def pipeline_trace(out: Path) -> Path:
    """A version 2 trace on a set clock (seconds from 1,000): ``fetch_a`` (0-2) and
    ``fetch_b`` (0-1) side by side; ``merge`` (2-5) after both, holding ``parse`` (2-3) and
    ``join`` (3-4.5, after parse); ``report`` (5-6) after merge; usage in parse and join."""
    base = {"pid": 7, "workflow_id": "step_10_pipeline", "run_id": "f" * 32}
    seq = 0

    def line(kind: str, at: float, **fields: Any) -> str:
        nonlocal seq
        seq += 1
        event = {"event_type": kind, "epoch_seconds": 1000.0 + at, **base, "seq": seq}
        return json.dumps({**event, "schema_version": 2, **fields}) + "\n"

    def node(node_id: str, start: float, end: float, **fields: Any) -> list[str]:
        return [
            line("node_start", start, node_id=node_id, **fields),
            line("node_success", end, node_id=node_id, duration_seconds=end - start),
        ]

    lines = [line("workflow_start", 0.0, message="m", total_nodes=6)]
    lines += [
        line("node_start", 0.0, node_id="fetch_a"),
        *node("fetch_b", 0.0, 1.0),
        line("node_success", 2.0, node_id="fetch_a", duration_seconds=2.0),
        line("node_start", 2.0, node_id="merge", depends_on=["fetch_a", "fetch_b"]),
        line("node_start", 2.0, node_id="parse", parent_id="merge"),
        line("usage", 2.5, node_id="parse", model="m-1", input_tokens=40, output_tokens=4),
        line("node_success", 3.0, node_id="parse", duration_seconds=1.0),
        line("node_start", 3.0, node_id="join", parent_id="merge", depends_on=["parse"]),
        line("usage", 3.5, node_id="join", model="m-2", input_tokens=90, cost_usd=0.5),
        line("node_success", 4.5, node_id="join", duration_seconds=1.5),
        line("node_success", 5.0, node_id="merge", duration_seconds=3.0),
        *node("report", 5.0, 6.0, depends_on=["merge"]),
        line("workflow_complete", 6.0),
    ]
    out.mkdir(parents=True, exist_ok=True)
    trace = out / "trace.jsonl"
    trace.write_text("".join(lines), encoding="utf-8")
    return trace


def empty_run(out: Path) -> Path:
    """A workflow with no nodes."""

    async def main() -> None:
        async with Quiet.Observer("step_07_nothing", out, total_nodes=0):
            pass

    anyio.run(main)
    return out


def torn_run(out: Path) -> Path:
    """The success run with half a line appended to its traces, as a hard kill leaves."""
    success_run(out)
    for trace in (*out.glob("traces/*.jsonl"), *out.glob("audit/step_*/trace_*.jsonl")):
        with open(trace, "ab") as handle:
            handle.write(b'{"event_type":"node_start","timestamp":"2026-')
    return out


def synthetic_run(out: Path, nodes: int, workers: int, fail_every: int = 0) -> Path:
    """``nodes`` nodes spread over ``workers`` workers across about ten minutes, written by
    an Observer from events whose clocks are set ahead (no sleeping)."""

    async def main() -> None:
        async with Quiet.Observer("step_08_big", out, total_nodes=nodes) as obs:
            t0 = time.time() + 0.001
            free_at = [t0] * workers
            for index in range(nodes):
                worker = index % workers
                start = free_at[worker]
                duration = 0.2 + (index * 7919 % 1000) / 1000 * 0.8
                node_id = f"node_{index:05d}"
                event = obs.events.node_start(node_id, index)
                event.epoch_seconds = start
                await obs.emit(event)
                if fail_every and index % fail_every == fail_every - 1:
                    end_event: Any = obs.events.node_failure(
                        node_id, f"RuntimeError: node {index} broke", duration, node_index=index
                    )
                else:
                    end_event = obs.events.node_success(
                        node_id, duration, f"{index:016x}", {"i": index}, 0.0001, index
                    )
                end_event.epoch_seconds = start + duration
                await obs.emit(end_event)
                free_at[worker] = start + duration + 0.001

    anyio.run(main)
    return out


@dataclass
class SeedWriter:
    """Writes a run in the seed observer's formats: entries of common fields plus details,
    no run_id or seq, node_index only when truthy, metadata without run ids."""

    out: Path
    workflow_id: str
    total_nodes: int
    started: datetime = field(default_factory=lambda: datetime(2026, 2, 17, 10, 30, 0))
    clock: float = 0.0
    step: str = "02"

    def __post_init__(self) -> None:
        stamp = self.started.strftime("%Y%m%d_%H%M%S")
        (self.out / "traces").mkdir(parents=True, exist_ok=True)
        self.audit = self.out / "audit" / f"step_{self.step}"
        self.audit.mkdir(parents=True, exist_ok=True)
        self.trace = self.out / "traces" / f"trace_step_{self.step}_{stamp}.jsonl"
        self.audit_trace = self.audit / f"trace_{self.step}.jsonl"
        self.clock = self.started.timestamp()
        self.completed = 0
        self.failed = 0
        self.node_times: dict[str, float] = {}
        self.entry(
            "workflow_start",
            message=f"Workflow execution started: {self.workflow_id}",
            details={
                "workflow_id": self.workflow_id,
                "pid": 4242,
                "timestamp": self.started.isoformat(),
                "total_nodes": self.total_nodes,
            },
        )

    def tick(self, seconds: float) -> float:
        self.clock += seconds
        return self.clock

    def entry(
        self,
        event_type: str,
        *,
        message: str | None = None,
        node_id: str | None = None,
        node_index: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(self.clock).isoformat(),
            "epoch_seconds": self.clock,
            "event_type": event_type,
            "pid": 4242,
            "workflow_id": self.workflow_id,
        }
        if node_id:
            line["node_id"] = node_id
        if node_index:
            line["node_index"] = node_index
        if message:
            line["message"] = message
        line.update(details or {})
        self.write(json.dumps(line) + "\n")

    def write(self, text: str) -> None:
        for path in (self.trace, self.audit_trace):
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(text)

    def node(self, node_id: str, index: int, seconds: float, error: str | None = None) -> None:
        self.entry(
            "node_start",
            node_id=node_id,
            node_index=index,
            details={"epoch_seconds": self.tick(0.01)},
        )
        self.tick(seconds)
        self.node_times[node_id] = seconds
        if error is None:
            self.completed += 1
            details = {
                "duration_seconds": seconds,
                "output_hash": tracebus.hash_output(node_id),
                "epoch_seconds": self.clock,
                "output_summary": {"node": node_id},
            }
            self.entry("node_success", node_id=node_id, details=details)
        else:
            self.failed += 1
            details = {"duration_seconds": seconds, "error": error, "epoch_seconds": self.clock}
            self.entry("node_failure", node_id=node_id, details=details)

    def complete(self, cost: float = 0.0) -> None:
        self.tick(0.01)
        elapsed = self.clock - self.started.timestamp()
        self.entry(
            "workflow_complete",
            details={
                "workflow_id": self.workflow_id,
                "nodes_completed": self.completed,
                "nodes_failed": self.failed,
                "total_time_seconds": elapsed,
                "cumulative_cost_usd": cost,
                "trace_file": str(self.trace),
                "log_file": "",
                "node_times": self.node_times,
                "epoch_seconds": self.clock,
            },
        )
        metadata = {
            "workflow_id": self.workflow_id,
            "step_number": self.step,
            "start_time": self.started.isoformat(),
            "end_time": datetime.fromtimestamp(self.clock).isoformat(),
            "pid": 4242,
            "total_nodes": self.total_nodes,
            "nodes_completed": self.completed,
            "nodes_failed": self.failed,
            "total_time_seconds": elapsed,
            "cumulative_cost_usd": cost,
            "node_times": self.node_times,
            "log_file": str(self.audit / f"log_{self.step}.log"),
            "trace_file": str(self.audit_trace),
        }
        path = self.audit / f"metadata_{self.step}.json"
        path.write_text(json.dumps(metadata, indent=2), encoding="utf-8")


def seed_run(out: Path) -> Path:
    """A seed-format run: four nodes, node_0 (index 0, so no node_index) first, one failure."""
    seed = SeedWriter(out, "step_02_populate", total_nodes=4)
    seed.node("node_0", 0, 1.5)
    seed.node("node_1", 1, 0.5)
    seed.node("node_2", 2, 2.0, error="KeyError: 'id'")
    seed.node("node_3", 3, 0.25)
    seed.complete(cost=0.42)
    return out


def only_trace(out: Path) -> Path:
    """The trace file of a run dir (the newest in traces/)."""
    return max(out.glob("traces/*.jsonl"), key=os.path.getmtime)
