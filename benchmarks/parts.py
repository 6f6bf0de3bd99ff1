"""Where tracebus's per-event cost goes: the workflow run again with parts of the writer off.

    python benchmarks/parts.py [--nodes 20000] [--runs 21]

Each variant runs the benchmark's async workflow ``--runs`` times in one process (a fresh
output directory each time) and reports the median wall time; the difference between two
variants is what the part switched off costs:

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
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers.baseline import NothingAsync  # noqa: E402
from peers.tracebus_peer import TracebusAsync  # noqa: E402
from workload import events_of, run_async_workflow  # noqa: E402

from tracebus._events import Event  # noqa: E402
from tracebus._sinks._files import BatchAppender  # noqa: E402
from tracebus._sinks._run import RunFiles  # noqa: E402

VARIANTS = ("baseline", "queue only", "no writes", "full")
WORKERS = 50  # as in run.py


async def _write_nothing(self: object, *args: object) -> None:
    pass


def _keep_as_they_are(self: RunFiles, events: list[Event]) -> list[Event]:
    return events


async def _median_seconds(variant: str, nodes: int, runs: int) -> float:
    times: list[float] = []
    for _ in range(runs):
        out = Path(tempfile.mkdtemp(prefix="tracebus-parts-"))
        recorder = NothingAsync(out, nodes) if variant == "baseline" else TracebusAsync(out, nodes)
        started = time.perf_counter()
        await run_async_workflow(recorder, nodes, WORKERS)
        times.append(time.perf_counter() - started)
        shutil.rmtree(out)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    prepare, write_batch, append = RunFiles.prepare, RunFiles.write_batch, BatchAppender.append
    medians: dict[str, float] = {}
    for variant in VARIANTS:
        queue_only = variant == "queue only"
        RunFiles.prepare = _keep_as_they_are if queue_only else prepare  # type: ignore[method-assign]
        RunFiles.write_batch = _write_nothing if queue_only else write_batch  # type: ignore[method-assign]
        BatchAppender.append = append if variant == "full" else _write_nothing  # type: ignore[method-assign]
        medians[variant] = asyncio.run(_median_seconds(variant, args.nodes, args.runs))
    events = events_of(args.nodes)
    print(f"{args.nodes:,} nodes ({events:,} events), median of {args.runs} runs each")
    previous = None
    for variant in VARIANTS:
        line = f"  {variant:<11} {medians[variant] * 1e3:8.1f} ms"
        if previous is not None:
            added = medians[variant] - medians[previous]
            line += f"   +{added * 1e3:5.1f} ms  ({added / events * 1e6:.2f} µs/event)"
        print(line)
        previous = variant


if __name__ == "__main__":
    main()
