"""Where tracebus's per-event cost goes: the workflow run again with parts of the writer off.

    python benchmarks/parts.py [--nodes 20000] [--runs 21] [--threads]

Each variant runs the benchmark's async workflow (``--threads``: its thread-pool workflow,
through SyncObserver) ``--runs`` times in one process, the variants taking turns run after
run (a fresh output directory each time), and reports the median wall time, and beside it
the median CPU time of the whole process (every thread's, user and system) and context
switches per event, which tell work from waiting (from threads, a wall time that grows more
than the CPU is hand-offs); the difference between two variants is what the part switched
off costs:

- ``baseline``: no observability;
- ``queue only``: the observer's calls, the queue and the writer's loop, the files opened,
  fsynced and the metadata written, but no event stamped, encoded or written;
- ``no writes``: everything but the file writes (events stamped, lines encoded);
- ``full``: tracebus as it ships.

Parts are switched off by replacing ``RunFiles.prepare``, ``RunFiles.write_batch`` and
``BatchAppender.append`` in this process only; this is a diagnostic, not a peer.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers.baseline import NothingAsync, NothingThreads  # noqa: E402
from peers.tracebus_peer import TracebusAsync, TracebusThreads  # noqa: E402
from workload import events_of, run_async_workflow, run_thread_workflow  # noqa: E402

from tracebus._events import Event  # noqa: E402
from tracebus._sinks._files import BatchAppender  # noqa: E402
from tracebus._sinks._run_files import RunFiles  # noqa: E402

VARIANTS = ("baseline", "queue only", "no writes", "full")
WORKERS = 50  # as in run.py
THREADS = 8


async def _write_nothing(self: object, *args: object) -> None:
    pass


def _keep_as_they_are(self: RunFiles, events: list[Event]) -> list[Event]:
    return events


class Run(NamedTuple):
    wall: float
    cpu: float
    switches: int


def _usage() -> tuple[float, int]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_nvcsw + usage.ru_nivcsw


async def _run(variant: str, nodes: int, threads: bool) -> Run:
    out = Path(tempfile.mkdtemp(prefix="tracebus-parts-"))
    try:
        cpu, switches = _usage()
        started = time.perf_counter()
        if threads:  # from a worker thread of the event loop, as run.py runs it
            pool = NothingThreads if variant == "baseline" else TracebusThreads
            await asyncio.to_thread(run_thread_workflow, pool(out, nodes), nodes, THREADS)
        else:
            tasks = NothingAsync if variant == "baseline" else TracebusAsync
            await run_async_workflow(tasks(out, nodes), nodes, WORKERS)
        wall = time.perf_counter() - started
        cpu_after, switches_after = _usage()
        return Run(wall, cpu_after - cpu, switches_after - switches)
    finally:
        shutil.rmtree(out)


async def _times(nodes: int, runs: int, threads: bool) -> dict[str, list[Run]]:
    prepare, write_batch, append = RunFiles.prepare, RunFiles.write_batch, BatchAppender.append
    times: dict[str, list[Run]] = {variant: [] for variant in VARIANTS}
    for run in range(runs):
        # in turn, so that a change in the machine's load falls on every variant alike
        shift = run % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            queue_only = variant == "queue only"
            RunFiles.prepare = _keep_as_they_are if queue_only else prepare  # type: ignore[method-assign]
            RunFiles.write_batch = _write_nothing if queue_only else write_batch  # type: ignore[method-assign]
            BatchAppender.append = append if variant == "full" else _write_nothing  # type: ignore[method-assign]
            times[variant].append(await _run(variant, nodes, threads))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--threads", action="store_true", help="the thread-pool workflow")
    args = parser.parse_args()
    times = asyncio.run(_times(args.nodes, args.runs, args.threads))
    medians = {
        variant: Run(*(statistics.median(field) for field in zip(*times[variant], strict=True)))
        for variant in VARIANTS
    }
    events = events_of(args.nodes)
    print(f"{args.nodes:,} nodes ({events:,} events), median of {args.runs} runs each")
    previous: Run | None = None
    for variant in VARIANTS:
        run = medians[variant]
        line = f"  {variant:<11} {run.wall * 1e3:8.1f} ms"
        if previous is not None:
            added = run.wall - previous.wall
            line += f"   +{added * 1e3:5.1f} ms  ({added / events * 1e6:.2f} µs/event)"
        cpu = f"{run.cpu * 1e3:.1f} ms"
        if previous is not None:
            cpu += f" ({(run.cpu - previous.cpu) / events * 1e6:+.2f} µs/event)"
        print(f"{line}   CPU {cpu}, {run.switches / events:.2f} switches/event")
        previous = run


if __name__ == "__main__":
    main()
