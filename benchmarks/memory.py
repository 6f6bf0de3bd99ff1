"""Memory over millions of events of each kind: RSS stays flat in the number of events.

    python benchmarks/memory.py [--events 2000000] [--kinds node_failure,note,...]

Each kind runs in a fresh process: one tracebus run (progress off) fed by 10 producer tasks,
every event of its own node (a new node id each time), as fast as the run takes them. RSS is
sampled every tenth of the events; the figure that matters is the growth from the sample at
a fifth of the events (once the per-node tables have reached their cap of 100,000 nodes) to
the end. The kinds:

- ``node_start``: nodes started and never ended;
- ``node_success``: a small output summary each;
- ``node_failure``: a 200-character error text each (what grew without bound before);
- ``node_skipped``, ``node_retry``, ``note`` (with fields);
- ``abandoned_subscriptions``: node successes while, every 2,000 events, a subscriber takes
  one event and leaves (``break`` out of ``async for``).

Results go to ``benchmarks/results/memory.json`` (``--results`` to change).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from workload import current_rss_mib, peak_rss_mib  # noqa: E402

import tracebus  # noqa: E402

KINDS = (
    "node_start",
    "node_success",
    "node_failure",
    "node_skipped",
    "node_retry",
    "note",
    "abandoned_subscriptions",
)
PRODUCERS = 10
SAMPLES = 10


async def _produce(obs: tracebus.Observer, kind: str, first: int, count: int) -> None:
    error = "x" * 200
    for i in range(first, first + count):
        node_id = f"n{i:08d}"
        if kind == "node_start":
            await obs.node_start(node_id)
        elif kind == "node_success" or kind == "abandoned_subscriptions":
            await obs.node_success(node_id, 0.001, output_summary={"i": i})
        elif kind == "node_failure":
            await obs.node_failure(node_id, f"error {i}: {error}", 0.001)
        elif kind == "node_skipped":
            await obs.node_skipped(node_id, "not needed")
        elif kind == "node_retry":
            await obs.node_retry(node_id, 2, "try again", 0.1)
        else:
            await obs.note("metric", node_id=node_id, value=i)
        if i % 8 == 0:
            await asyncio.sleep(0)


async def _leave_after_one(obs: tracebus.Observer, left: list[int]) -> None:
    while True:
        async for _ in obs.bus.subscribe(max_buffer=10):
            break
        left[0] += 1
        for _ in range(2_000 // (8 * PRODUCERS)):  # about 2,000 events between two of them
            await asyncio.sleep(0)


async def run_kind(kind: str, events: int, out: Path) -> dict[str, Any]:
    """One run of ``events`` events of ``kind``; RSS every tenth of them."""
    obs = tracebus.Observer("step_01_memory", out, progress=False, console=None)
    per_producer = events // PRODUCERS
    samples: list[tuple[int, float]] = [(0, current_rss_mib())]
    started = time.perf_counter()
    left = [0]
    async with obs:
        leaver = (
            asyncio.create_task(_leave_after_one(obs, left))
            if kind == "abandoned_subscriptions"
            else None
        )
        step = per_producer // SAMPLES
        for sample in range(SAMPLES):
            async with asyncio.TaskGroup() as group:
                for p in range(PRODUCERS):
                    group.create_task(_produce(obs, kind, p * per_producer + sample * step, step))
            await obs.bus.wait_drained()
            samples.append((obs.statistics().written, current_rss_mib()))
        if leaver is not None:
            leaver.cancel()
        subscribers = obs.statistics().subscribers
    seconds = time.perf_counter() - started
    assert obs.metadata is not None
    at_fifth = samples[SAMPLES // 5]
    return {
        "kind": kind,
        "events": obs.metadata["events_written"],
        "seconds": seconds,
        "events_per_s": obs.metadata["events_written"] / seconds,
        "rss_mib": [{"events": n, "rss_mib": round(rss, 1)} for n, rss in samples],
        "rss_from_mib": at_fifth[1],
        "rss_from_events": at_fifth[0],
        "rss_end_mib": samples[-1][1],
        "growth_mib": samples[-1][1] - at_fifth[1],
        "peak_rss_mib": peak_rss_mib(),
        "subscribers_left": left[0],
        "subscribers_still_held": subscribers,
    }


def _child(kind: str, events: int) -> None:
    out = Path(tempfile.mkdtemp(prefix="tracebus-memory-"))
    try:
        result = asyncio.run(run_kind(kind, events, out))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.events)
        return
    rows = []
    for kind in args.kinds.split(","):
        if kind not in KINDS:
            parser.error(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
        result = subprocess.run(
            [sys.executable, __file__, "--child", kind, "--events", str(args.events)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(result.stdout.splitlines()[-1])
        rows.append(row)
        print(
            f"{kind:<24} {row['events']:>10,} events  {row['events_per_s']:>9,.0f}/s  "
            f"RSS {row['rss_from_mib']:6.1f} MiB at {row['rss_from_events']:,} -> "
            f"{row['rss_end_mib']:6.1f} MiB at the end (growth {row['growth_mib']:+.1f} MiB)"
            + (
                f"; {row['subscribers_left']} subscribers left, "
                f"{row['subscribers_still_held']} still held"
                if kind == "abandoned_subscriptions"
                else ""
            ),
            flush=True,
        )
    args.results.mkdir(parents=True, exist_ok=True)
    report = {"events_per_kind": args.events, "python": sys.version.split()[0], "rows": rows}
    (args.results / "memory.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
