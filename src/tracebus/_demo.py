"""The main job: a simulated concurrent workflow recorded by an Observer."""

from __future__ import annotations

import random
from pathlib import Path

import anyio
from anyio.abc import ObjectReceiveStream

from ._observer import Observer


class SimulatedFailure(RuntimeError):
    """A node of the demo workflow failing on purpose."""


async def run_demo(
    *,
    nodes: int,
    concurrency: int,
    fail_rate: float,
    out: Path,
    progress: bool = True,
    seed: int | None = None,
    max_sleep: float = 0.05,
) -> dict[str, object]:
    """Run ``nodes`` simulated nodes on ``concurrency`` workers; return the run's metadata."""
    rng = random.Random(seed)
    send, receive = anyio.create_memory_object_stream[int](nodes)
    async with Observer("demo_workflow", out, total_nodes=nodes, progress=progress) as obs:
        with send:
            for index in range(nodes):
                send.send_nowait(index)
        async with anyio.create_task_group() as workers:
            for _ in range(concurrency):
                workers.start_soon(_worker, obs, receive.clone(), rng, fail_rate, max_sleep)
        receive.close()
    assert obs.metadata is not None
    return obs.metadata


async def _worker(
    obs: Observer,
    queue: ObjectReceiveStream[int],
    rng: random.Random,
    fail_rate: float,
    max_sleep: float,
) -> None:
    async with queue:
        async for index in queue:
            try:
                async with obs.node(f"node_{index:04d}", index) as node:
                    await anyio.sleep(rng.uniform(0, max_sleep))
                    if rng.random() < fail_rate:
                        raise SimulatedFailure(f"simulated failure in node {index}")
                    rows = rng.randint(1, 500)
                    node.output({"node": index, "rows": rows}, summary={"rows": rows})
                    node.cost(round(rng.uniform(0, 0.002), 6))
            except SimulatedFailure:
                pass  # recorded as node_failure by the node scope
