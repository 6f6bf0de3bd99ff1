"""What the write path costs per event in instructions, which the machine's load does not move.

    python benchmarks/instructions.py [--nodes 6000,2000] [--peers baseline,tracebus,naive]
    python benchmarks/instructions.py --parts     # each step of the path alone

Each measurement is a fresh process under ``valgrind --tool=callgrind`` running the
benchmark's async workflow (``workload.run_async_workflow``, 50 workers) once; the
instructions of the smaller run are taken from the larger's, which cancels out start-up, and
divided by the events between them. A peer's figure is what it adds per event to the
baseline workflow's. The writer's steps are held at ``STEP_EVENTS``: under callgrind
everything runs some 50 times slower, and the writer would otherwise make its steps smaller.

``--parts`` runs the steps of the path on the benchmark's events (node starts and successes
as the workflow makes them), in the writer's steps, each added to the ones before it: the
workload's own work (ids, summaries, hashes), building the events (``EventFactory``), the
awaited call's way to the queue, stamping, ``RunState.count``, the trace lines, the log
lines. Results go to ``benchmarks/results/instructions.json`` (the workflow's and the parts' each
kept until measured again).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from workload import events_of, hash_summary, node_summary, run_async_workflow  # noqa: E402

WORKERS = 50  # as in run.py
PARTS = ("workload", "events", "call", "stamp", "count", "trace", "log")


def _workflow(peer: str, nodes: int, out: Path) -> None:
    import tracebus._writer

    tracebus._writer.STEP_SECONDS = 1e9  # steps of STEP_EVENTS, however slow the run
    from peers import PEERS

    recorder = PEERS[peer].load()(out, nodes)
    asyncio.run(run_async_workflow(recorder, nodes, WORKERS))


def _parts(upto: str, nodes: int, out: Path) -> None:
    """The path's steps up to ``upto`` (inclusive), on ``nodes`` nodes' events."""
    import time

    from tracebus._events import Event
    from tracebus._factory import EventFactory
    from tracebus._sinks._encoding import encode_log, encode_trace
    from tracebus._stamping import Stamper
    from tracebus._state import RunState
    from tracebus._writer import STEP_EVENTS

    steps = PARTS[: PARTS.index(upto) + 1]
    factory = EventFactory("step_01_bench", "20261202T000000Z-0000")
    events: list[Event] = []
    if "call" in steps:
        from tracebus import Observer

        async def produce() -> None:
            async with Observer("step_01_bench", out, console=None, progress=False) as obs:
                queue = obs.bus._queue
                queue.capacity = 1 << 40  # nothing written while they are made
                writer = obs.bus._writer
                writer._max_batch = 1
                for index in range(nodes):
                    node_id = f"node_{index:06d}"
                    started = time.perf_counter()
                    await obs.node_start(node_id, index)
                    summary = node_summary(index)
                    digest = hash_summary(summary)
                    await obs.node_success(node_id, time.perf_counter() - started, digest, summary)
                events.extend(queue.items)
                queue.items.clear()

        asyncio.run(produce())
    else:
        build = "events" in steps
        for index in range(nodes):
            node_id = f"node_{index:06d}"
            started = time.perf_counter()
            if build:
                events.append(factory.node_start(node_id, index))
            summary = node_summary(index)
            digest = hash_summary(summary)
            if build:
                duration = time.perf_counter() - started
                events.append(factory.node_success(node_id, duration, digest, summary, 0.0))
    if "stamp" not in steps:
        return
    stamper, state = Stamper(), RunState("step_01_bench", "r", nodes, time.time())
    for first in range(0, len(events), STEP_EVENTS):
        step = stamper(events[first : first + STEP_EVENTS])
        if "count" in steps:
            state.count(step)
        if "trace" in steps:
            encode_trace(step)
        if "log" in steps:
            encode_log(step)


def _instructions(args: list[str], scratch: Path) -> int:
    out = Path(tempfile.mkdtemp(dir=scratch))
    profile = out / "callgrind.out"
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={profile}"]
    command += [sys.executable, __file__, "--child", *args, "--out", str(out / "run")]
    subprocess.run(command, check=True, capture_output=True)
    text = profile.read_text()
    shutil.rmtree(out)
    match = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    assert match is not None, "no totals in callgrind's output"
    return int(match.group(1))


def _per_event(args: list[str], sizes: tuple[int, int], events: int, scratch: Path) -> float:
    large, small = (_instructions([*args, "--nodes", str(n)], scratch) for n in sizes)
    return (large - small) / events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="6000,2000", help="the two sizes: large,small")
    parser.add_argument("--peers", default="baseline,tracebus,naive")
    parser.add_argument("--parts", action="store_true", help="each step of the path alone")
    parser.add_argument("--results", default=str(HERE / "results" / "instructions.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--part", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        nodes = int(args.nodes)
        if args.child == "parts":
            _parts(args.part, nodes, Path(args.out))
        else:
            _workflow(args.child, nodes, Path(args.out))
        return
    large, small = (int(n) for n in args.nodes.split(","))
    scratch = Path(tempfile.mkdtemp(prefix="tracebus-instructions-"))
    result: dict[str, Any] = {"nodes": [large, small], "load_at_start": os.getloadavg()}
    try:
        if args.parts:
            events = 2 * (large - small)
            cumulative = {
                part: _per_event(["parts", "--part", part], (large, small), events, scratch)
                for part in PARTS
            }
            result["per_event"] = {
                part: cumulative[part] - (cumulative[PARTS[i - 1]] if i else 0.0)
                for i, part in enumerate(PARTS)
            }
            for part, count in result["per_event"].items():
                print(f"  {part:<8} {count:8,.0f} instructions/event")
        else:
            events = events_of(large) - events_of(small)
            per_event = {
                peer: _per_event([peer], (large, small), events, scratch)
                for peer in args.peers.split(",")
            }
            base = per_event.get("baseline")
            result["per_event"] = per_event
            for peer, count in per_event.items():
                over = ""
                if base is not None and peer != "baseline":
                    over = f"  (+{count - base:,.0f} over the baseline)"
                print(f"  {peer:<18} {count:8,.0f} instructions/event{over}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results = Path(args.results)
    kept = json.loads(results.read_text()) if results.exists() else {}
    kept["parts" if args.parts else "workflow"] = {**result, "load": os.getloadavg()}
    results.write_text(json.dumps(kept, indent=2) + "\n")


if __name__ == "__main__":
    main()
