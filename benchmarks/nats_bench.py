"""Events/s from producer processes through NATS JetStream into the collector's files, against
the collector service's Unix socket on the same machine.

One run: the benchmark opens it, PRODUCERS processes (4 by default) join it and each emits
EVENTS events (node_start/node_success pairs) with the async remote observer. The clock
starts when every producer is connected and told to go, and stops when the run's metadata
says "complete": every event written, the files fsynced. Over NATS that is end to end:
published, stored by JetStream, fetched by ``tracebus serve --nats``, written. Afterwards
the trace is read back: each producer's seq must be 1..EVENTS exactly once.

    python benchmarks/nats_bench.py [--producers 4] [--events 100000] [--nats URL]

The stream is one of the benchmark's own, deleted afterwards. Prints a table and writes
benchmarks/results/nats_bench.json. Uses service_bench's helpers for the socket side.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

from service_bench import _check, _cpu_seconds, _start_service

import tracebus

RESULTS = Path(__file__).resolve().parent / "results" / "nats_bench.json"
WORKFLOW = "step_01_bench"


def _produce(
    address: Any, run_id: str, events: int, producer: str, ready: Any, go: EventType
) -> None:
    import anyio

    async def main() -> None:
        async with tracebus.connect(
            address, WORKFLOW, run_id=run_id, join=True, producer=producer
        ) as obs:
            ready.put(producer)
            await anyio.to_thread.run_sync(go.wait)
            for index in range(events // 2):
                node_id = f"n{index}"
                await obs.node_start(node_id, index)
                await obs.node_success(node_id, 0.001, output_summary={"rows": index})
        ready.put((producer, obs.statistics()._asdict()))

    anyio.run(main)


def _start_nats_collector(out: Path, settings: tracebus.NatsSettings) -> subprocess.Popen[str]:
    collector = subprocess.Popen(
        [sys.executable, "-m", "tracebus", "serve", "--out", str(out), "--log-level", "warning"]
        + ["--nats", ",".join(settings.servers), "--nats-stream", settings.stream.name]
        + ["--nats-subject-prefix", settings.stream.subject_prefix],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert collector.stdout is not None
    if "consuming" not in (line := collector.stdout.readline()):
        collector.kill()
        raise RuntimeError(f"the collector did not start: {line!r}")
    return collector


def _wait_complete(out: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        for path in out.glob("audit/step_*/metadata_*.json"):
            if json.loads(path.read_text()).get("status") == "complete":
                return
        time.sleep(0.005)
    raise RuntimeError("the run did not complete in time")


def _scenario(
    transport: str, producers: int, events: int, nats_url: str, workdir: Path
) -> dict[str, Any]:
    out = workdir / transport
    if transport == "nats":
        stream = f"BENCH_{uuid.uuid4().hex[:8]}"
        address: Any = tracebus.NatsSettings.from_url(
            nats_url, stream=tracebus.NatsStream(name=stream, subject_prefix=stream.lower())
        )
        collector = _start_nats_collector(out, address)
    else:
        address = str(workdir / "c.sock")
        collector = _start_service(out, Path(address))
    context = multiprocessing.get_context("spawn")
    ready, go = context.Queue(), context.Event()
    run_id = uuid.uuid4().hex
    try:
        opener = tracebus.connect_sync(
            address, WORKFLOW, producers * events // 2, run_id=run_id, producer="opener"
        )
        procs = [
            context.Process(target=_produce, args=(address, run_id, events, f"p{i}", ready, go))
            for i in range(producers)
        ]
        for proc in procs:
            proc.start()
        for _ in procs:
            ready.get(timeout=120)
        cpu_before = _cpu_seconds(collector.pid)
        started = time.monotonic()
        go.set()
        stats = [ready.get(timeout=600)[1] for _ in procs]
        published = time.monotonic() - started
        opener.close()
        _wait_complete(out, time.monotonic() + 600)
        elapsed = time.monotonic() - started
        collector_cpu = _cpu_seconds(collector.pid) - cpu_before
        for proc in procs:
            proc.join(60)
            assert proc.exitcode == 0, f"a producer failed ({proc.exitcode})"
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(60)
        if transport == "nats":
            subprocess.run(
                [sys.executable, "-c", _DELETE_STREAM, nats_url, address.stream.name], check=False
            )
    total = producers * events
    return {
        "transport": "NATS JetStream" if transport == "nats" else "Unix socket",
        "producers": producers,
        "events_per_producer": events,
        "events": total,
        "seconds": round(elapsed, 3),
        "events_per_second": round(total / elapsed),
        "producers_done_seconds": round(published, 3),
        "collector_cpu_us_per_event": round(collector_cpu / total * 1e6, 2),
        "undelivered": sum(s["undelivered"] + s["rejected"] + s["dropped"] for s in stats),
        **_check(out, producers, events, shared_run=True),
    }


_DELETE_STREAM = """
import asyncio, sys, nats
async def main():
    client = await nats.connect(sys.argv[1])
    await client.jetstream().delete_stream(sys.argv[2])
    await client.close()
asyncio.run(main())
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--events", type=int, default=100_000, help="per producer (even)")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for transport in ("nats", "socket"):
            load = os.getloadavg()[0]
            result = _scenario(transport, args.producers, args.events, args.nats, Path(tmp))
            result["load_average_1m_before"] = round(load, 2)
            results.append(result)
            print(
                f"{result['transport']:>15}: {result['events_per_second']:>8,} events/s end to "
                f"end ({result['events']:,} events in {result['seconds']:.2f}s; collector "
                f"{result['collector_cpu_us_per_event']} us CPU/event; lost {result['lost']}, "
                f"duplicates {result['duplicates']})",
                flush=True,
            )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "nats_bench",
                "command": "python " + " ".join(["benchmarks/nats_bench.py", *sys.argv[1:]]),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "load_average_1m_at_end": round(os.getloadavg()[0], 2),
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    return 0 if all(r["lost"] == r["duplicates"] == r["undelivered"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
