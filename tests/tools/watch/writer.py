"""A run written step by step by another process, as a test tells it.

``python -m tests.tools.watch.writer OUT WORKFLOW TOTAL`` opens an Observer on OUT, prints
``ready``, then runs one command a line from stdin, writes it to the files (``flush``) and
prints ``done``:

- ``start NODE``, ``ok NODE [COST]``, ``fail NODE MESSAGE...``: node events;
- ``log MESSAGE...``: a ``logging`` warning, captured into the run;
- ``usage NODE INPUT OUTPUT COST``: a model call's tokens;
- ``burst N``: N more nodes started and ended one after the other, as fast as it goes;
- ``end``: the run completes (``workflow_complete``), and the process exits.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import anyio
import anyio.to_thread

import tracebus

log = logging.getLogger("writer")


async def main(out: Path, workflow_id: str, total: int) -> None:
    async with tracebus.Observer(
        workflow_id,
        out,
        total_nodes=total,
        progress=False,
        console=None,
        capture_logging="INFO",
    ) as obs:
        print("ready", flush=True)
        bursts = 0
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            word, *rest = line.split() or ["end"]
            if word == "end":
                break
            if word == "start":
                await obs.node_start(rest[0])
            elif word == "ok":
                cost = float(rest[1]) if len(rest) > 1 else 0.0
                await obs.node_success(rest[0], duration_seconds=0.01, cost_usd=cost)
            elif word == "fail":
                await obs.node_failure(rest[0], error=" ".join(rest[1:]), duration_seconds=0.01)
            elif word == "log":
                log.warning(" ".join(rest))
            elif word == "usage":
                node_id, given, taken, cost = rest
                await obs.usage(
                    "test-model",
                    input_tokens=int(given),
                    output_tokens=int(taken),
                    cost_usd=float(cost),
                    node_id=node_id,
                )
            elif word == "burst":
                bursts += 1
                for index in range(int(rest[0])):
                    name = f"burst{bursts}_{index:05d}"
                    await obs.node_start(name)
                    await obs.node_success(name, duration_seconds=0.0)
            await obs.flush()
            print("done", flush=True)
    print("ended", flush=True)


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
