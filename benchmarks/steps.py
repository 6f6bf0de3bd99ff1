"""How long the writer holds the event loop: the CPU time of each of its loop steps.

    python benchmarks/steps.py [--nodes 20000] [--rounds 3] [--sustained 0] [--step-events N]

Each callback the loop runs is timed with ``time.thread_time`` (the CPU of the loop's thread:
far less moved by a busy machine than the wall lag a ticker sees), and the writer task's are
counted apart from the rest (the producers, the ticker, the worker threads' completions).
The benchmark's async workflow (``workload.run_async_workflow``, 64 workers) runs once per
round after a warm-up, and ``--sustained N`` runs the sustained benchmark's producers for N
events; each prints the writer's steps as a histogram and its p50, p99, max and total, the
loop's other callbacks' p99 and total, and the CPU of the loop's turns (a ticker is late by
up to two of them). Results go to ``benchmarks/results/steps.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.base_events
import asyncio.events
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from workload import run_async_workflow  # noqa: E402

WORKERS = 64  # as in run.py
#: The histogram's bucket edges, in milliseconds.
EDGES = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)


class StepClock:
    """Times every loop callback; keeps the writer task's steps and the others' apart."""

    def __init__(self) -> None:
        self.writer: list[float] = []
        self.others: list[float] = []
        self.turns: list[float] = []
        self._original: Callable[[Any], None] = asyncio.events.Handle._run
        self._original_turn: Callable[[Any], None] = asyncio.base_events.BaseEventLoop._run_once

    def __enter__(self) -> StepClock:
        original, writer, others, clock = self._original, self.writer, self.others, time.thread_time

        def timed(handle: Any) -> None:
            started = clock()
            original(handle)
            spent = clock() - started
            task = getattr(handle._callback, "__self__", None)
            name = task.get_name() if isinstance(task, asyncio.Task) else ""
            (writer if name.endswith("Writer.run") else others).append(spent)

        original_turn, turns = self._original_turn, self.turns

        def timed_turn(loop: Any) -> None:
            started = clock()
            original_turn(loop)
            turns.append(clock() - started)

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]
        asyncio.base_events.BaseEventLoop._run_once = timed_turn  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.events.Handle._run = self._original  # type: ignore[method-assign]
        asyncio.base_events.BaseEventLoop._run_once = self._original_turn  # type: ignore[method-assign]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else 0.0


def report(title: str, clock: StepClock) -> dict[str, Any]:
    steps = clock.writer
    ms = [s * 1e3 for s in steps]
    counts = [0] * (len(EDGES) + 1)
    for value in ms:
        counts[sum(value >= edge for edge in EDGES)] += 1
    labels = ["<" + f"{EDGES[0]:g}"] + [
        f"{low:g}-{high:g}" for low, high in zip(EDGES, EDGES[1:], strict=False)
    ]
    result = {
        "writer_steps": len(ms),
        "writer_p50_ms": _percentile(ms, 0.5),
        "writer_p99_ms": _percentile(ms, 0.99),
        "writer_max_ms": max(ms, default=0.0),
        "writer_cpu_s": sum(steps),
        "others_p99_ms": _percentile(clock.others, 0.99) * 1e3,
        "others_cpu_s": sum(clock.others),
        "turn_p50_ms": _percentile(clock.turns, 0.5) * 1e3,
        "turn_p99_ms": _percentile(clock.turns, 0.99) * 1e3,
        "histogram_ms": dict(zip([*labels, f">={EDGES[-1]:g}"], counts, strict=True)),
    }
    print(f"{title}: {len(ms):,} writer steps")
    for label, count in result["histogram_ms"].items():
        print(f"  {label:>10} ms {count:7,}")
    print(
        "  writer p50 {writer_p50_ms:.3f} p99 {writer_p99_ms:.3f} max {writer_max_ms:.2f} ms,"
        " CPU {writer_cpu_s:.3f} s; others p99 {others_p99_ms:.3f} ms, CPU {others_cpu_s:.3f} s;"
        " loop turns p50 {turn_p50_ms:.3f} p99 {turn_p99_ms:.3f} ms".format(**result)
    )
    return result


def workflow_round(out: Path, nodes: int) -> dict[str, Any]:
    from peers.tracebus_peer import TracebusAsync

    async def run() -> StepClock:
        await run_async_workflow(TracebusAsync(out / "warm-up", 200), 200, WORKERS)
        with StepClock() as clock:
            await run_async_workflow(TracebusAsync(out / "run", nodes), nodes, WORKERS)
        return clock

    return report(f"workflow of {nodes:,} nodes", asyncio.run(run()))


def sustained_round(out: Path, events: int) -> dict[str, Any]:
    from sustained import run_sustained

    with StepClock() as clock:
        asyncio.run(run_sustained(out, events, WORKERS))
    return report(f"sustained, {events:,} events", clock)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sustained", type=int, default=0, help="events (0: none)")
    parser.add_argument("--step-events", type=int, help="the writer's steps (default: its own)")
    parser.add_argument("--results", default=str(HERE / "results" / "steps.json"))
    args = parser.parse_args()
    if args.step_events:
        import tracebus._writer

        tracebus._writer.STEP_EVENTS = args.step_events
    import tracebus._writer

    result: dict[str, Any] = {
        "nodes": args.nodes,
        "step_events": tracebus._writer.STEP_EVENTS,
        "load_at_start": os.getloadavg(),
        "workflow": [],
    }
    for number in range(args.rounds):
        with tempfile.TemporaryDirectory() as scratch:
            result["workflow"].append(workflow_round(Path(scratch) / str(number), args.nodes))
    if args.sustained:
        with tempfile.TemporaryDirectory() as scratch:
            result["sustained"] = sustained_round(Path(scratch), args.sustained)
    result["load"] = os.getloadavg()
    Path(args.results).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
