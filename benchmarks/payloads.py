"""Event-loop lag while nodes record large output summaries (1 MB each by default).

    python benchmarks/payloads.py [--nodes 300] [--workers 4] [--wait-ms 20,60]
                                  [--payload-bytes 1000000] [--max-payload-bytes N]
                                  [--shapes text,rows]

A workflow of ``--nodes`` nodes on ``--workers`` async workers: each node records its start,
waits 20 to 60 ms (``--wait-ms``: its own work, an I/O wait; the same pseudo-random waits in
every run; ``0,0`` records the nodes back to back), and
records its success with a large output summary, one of a few built beforehand (building it
is the node's cost, not the observer's). Two
shapes of summary: ``text`` (one long string, as a model's answer) and ``rows`` (a list of
small records, as a query's result). A task that sleeps 1 ms measures how late it wakes:
p50 / p99 / max while the nodes run, and the max including closing. The summaries are over
the default bound (64 KiB), so each is stored as a marker; ``--max-payload-bytes`` larger
than them has them written whole instead. Results go to ``benchmarks/results/payloads.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from workload import LagProbe, peak_rss_mib  # noqa: E402

import tracebus  # noqa: E402

VARIANTS = 4


def summaries(shape: str, size: int) -> list[dict[str, Any]]:
    """``VARIANTS`` output summaries of about ``size`` bytes of JSON each."""
    if shape == "text":
        return [{"variant": v, "text": f"{v} lorem ipsum dolor " * (size // 20)} for v in range(4)]
    rows = size // 42  # {"id":12345,"name":"row 12345","value":6172.5} is about 42 bytes
    return [
        {
            "variant": v,
            "rows": [{"id": i, "name": f"row {i}", "value": i * 0.5} for i in range(rows)],
        }
        for v in range(VARIANTS)
    ]


async def run(
    shape: str, nodes: int, workers: int, size: int, bound: int | None, wait_ms: tuple[float, float]
) -> dict[str, Any]:
    payloads = summaries(shape, size)
    out = Path(tempfile.mkdtemp(prefix="tracebus-payloads-"))
    options: dict[str, Any] = {"progress": False, "console": None}
    if bound is not None:
        if "max_payload_bytes" not in inspect.signature(tracebus.Observer).parameters:
            raise SystemExit("this tracebus has no max_payload_bytes option")
        options["max_payload_bytes"] = bound
    obs = tracebus.Observer("step_01_payloads", out, total_nodes=nodes, **options)
    pending = iter(range(nodes))
    waits = random.Random(14)
    work = [waits.uniform(*wait_ms) / 1e3 for _ in range(nodes)]
    lag = LagProbe()

    async def worker() -> None:
        for index in pending:
            node_id = f"node_{index:05d}"
            started = time.perf_counter()
            await obs.node_start(node_id, index)
            await asyncio.sleep(work[index])
            summary = payloads[index % VARIANTS]
            await obs.node_success(node_id, time.perf_counter() - started, None, summary)

    lag.start()
    began = time.perf_counter()
    try:
        async with obs:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(worker())
            nodes_done = time.perf_counter()
        closed = time.perf_counter()
        await lag.stop()
        trace_bytes = obs.trace_file.stat().st_size
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {
        "shape": shape,
        "nodes": nodes,
        "workers": workers,
        "payload_bytes": len(json.dumps(payloads[0], separators=(",", ":"))),
        "max_payload_bytes": bound,
        "wait_ms": list(wait_ms),
        "seconds_nodes": nodes_done - began,
        "seconds_close": closed - nodes_done,
        "lag": lag.summary(until=nodes_done),
        "lag_whole_run": lag.summary(),
        "trace_bytes": trace_bytes,
        "peak_rss_mib": peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=300)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--payload-bytes", type=int, default=1_000_000)
    parser.add_argument("--max-payload-bytes", type=int, default=None)
    parser.add_argument("--wait-ms", default="20,60", help="each node's wait, LOW,HIGH ms")
    parser.add_argument("--shapes", default="text,rows")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args()
    low, high = (float(ms) for ms in args.wait_ms.split(","))
    rows = []
    for shape in args.shapes.split(","):
        row = asyncio.run(
            run(
                shape,
                args.nodes,
                args.workers,
                args.payload_bytes,
                args.max_payload_bytes,
                (low, high),
            )
        )
        rows.append(row)
        lag, whole = row["lag"], row["lag_whole_run"]
        print(
            f"{shape:<5} {row['nodes']} nodes x {row['payload_bytes']:,} B summaries: "
            f"loop lag p50 / p99 / max {lag['p50_ms']:.2f} / {lag['p99_ms']:.2f} / "
            f"{lag['max_ms']:.1f} ms while nodes run, max {whole['max_ms']:.1f} ms with closing; "
            f"close {row['seconds_close'] * 1e3:.0f} ms; trace {row['trace_bytes']:,} B",
            flush=True,
        )
    args.results.mkdir(parents=True, exist_ok=True)
    report = {"python": sys.version.split()[0], "argv": sys.argv[1:], "rows": rows}
    (args.results / "payloads.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
