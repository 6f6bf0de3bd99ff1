"""Events/s from producer processes through NATS JetStream into the collector's files.

    python benchmarks/nats_bench.py [--producers 4] [--events 100000] [--nats nats://127.0.0.1:4222]

A ``tracebus serve --nats`` collector runs as its own process; the producers connect first
and are then released together. The clock runs from their release until the collector has
written the run's metadata (every event in the trace, files fsynced). The stream is one of
the benchmark's own, deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import nats

from tracebus._factory import EventFactory
from tracebus._nats._publisher import JetStreamPublisher
from tracebus._nats._settings import NatsSettings, StreamSettings

WORKFLOW = "bench"


async def produce(settings: NatsSettings, run_id: str, producer: str, count: int) -> None:
    events = EventFactory(WORKFLOW, run_id, producer)
    async with JetStreamPublisher(settings, WORKFLOW, run_id, producer) as publisher:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        for index in range(count // 2):
            node_id = f"{producer}-{index}"
            await publisher.send(events.node_start(node_id, index))
            await publisher.send(events.node_success(node_id, 0.001, None, None, 0.0))
    print(json.dumps(publisher.statistics()._asdict()), flush=True)


async def lead(settings: NatsSettings, run_id: str, event: str, total: int) -> None:
    # a producer numbers its events from 1: each publisher needs a producer id of its own
    events = EventFactory(WORKFLOW, run_id, f"lead-{event}")
    async with JetStreamPublisher(settings, WORKFLOW, run_id, f"lead-{event}") as publisher:
        if event == "start":
            await publisher.send(events.workflow_start(total, ""))
        else:
            await publisher.send(events.workflow_complete(None))


def wait_metadata(out: Path, deadline: float) -> dict[str, object]:
    while time.monotonic() < deadline:
        for path in out.glob("audit/step_*/metadata_*.json"):
            data: dict[str, object] = json.loads(path.read_text())
            if data.get("status") == "complete":
                return data
        time.sleep(0.01)
    raise SystemExit("the collector did not finish in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--events", type=int, default=100_000, help="per producer")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--producer", nargs=3, help=argparse.SUPPRESS)  # STREAM RUN NAME
    args = parser.parse_args()
    if args.producer:
        stream, run_id, name = args.producer
        settings = settings_for(args.nats, stream)
        asyncio.run(produce(settings, run_id, name, args.events))
        return
    stream = f"BENCH_{uuid.uuid4().hex[:8]}"
    settings = settings_for(args.nats, stream)
    run_id = uuid.uuid4().hex
    total = args.producers * args.events
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        collector = subprocess.Popen(
            [sys.executable, "-m", "tracebus", "serve", "--out", str(out), "--nats", args.nats]
            + ["--nats-stream", stream, "--nats-subject-prefix", stream.lower()],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert collector.stderr is not None
            assert "consuming" in collector.stderr.readline()
            asyncio.run(lead(settings, run_id, "start", total // 2))
            producers = [
                subprocess.Popen(
                    [sys.executable, __file__, "--events", str(args.events), "--nats", args.nats]
                    + ["--producer", stream, run_id, f"p{index}"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for index in range(args.producers)
            ]
            for process in producers:
                assert process.stdout is not None and process.stdout.readline() == "ready\n"
            started = time.perf_counter()
            for process in producers:
                assert process.stdin is not None
                process.stdin.write("go\n")
                process.stdin.flush()
            for process in producers:
                process.communicate(timeout=600)
                assert process.returncode == 0
            published = time.perf_counter() - started
            asyncio.run(lead(settings, run_id, "complete", total))
            metadata = wait_metadata(out, time.monotonic() + 600)
            elapsed = time.perf_counter() - started
        finally:
            collector.terminate()
            collector.communicate(timeout=60)
            asyncio.run(delete_stream(args.nats, stream))
    written = int(str(metadata["events_written"]))
    print(
        f"NATS JetStream: {args.producers} producer processes x {args.events:,} events, "
        f"one run, {os.cpu_count()} cores"
    )
    print(f"  published and acknowledged by JetStream: {total / published:,.0f} events/s")
    print(f"  end to end, into the collector's files:  {written / elapsed:,.0f} events/s")
    print(f"  events written: {written:,} (expected {total + 2:,})")


def settings_for(url: str, stream: str) -> NatsSettings:
    return NatsSettings.from_url(
        url, stream=StreamSettings(name=stream, subject_prefix=stream.lower())
    )


async def delete_stream(url: str, stream: str) -> None:
    client = await nats.connect(url)
    try:
        await client.jetstream().delete_stream(stream)
    finally:
        await client.close()


if __name__ == "__main__":
    main()
