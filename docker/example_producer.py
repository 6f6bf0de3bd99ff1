"""An example producer: worker processes add their nodes to one run held by the collector.

The parent opens the run; each worker joins it by run_id with its own remote observer; the
parent ends the run once the workers are done. The socket comes from $TRACEBUS_SOCKET.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import tracebus

SOCKET = os.environ.get("TRACEBUS_SOCKET", "/run/tracebus/tracebus.sock")
WORKFLOW = "step_01_example"
WORKERS = 4
NODES_PER_WORKER = 25


def work(run_id: str, worker: int) -> int:
    with tracebus.connect_sync(SOCKET, WORKFLOW, run_id=run_id, join=True) as obs:
        for index in range(NODES_PER_WORKER):
            node_id = f"w{worker}-n{index}"
            started = time.perf_counter()
            obs.node_start(node_id, worker * NODES_PER_WORKER + index)
            rows = (worker + 1) * index
            obs.node_success(
                node_id,
                time.perf_counter() - started,
                output_hash=tracebus.hash_output({"rows": rows}),
                output_summary={"rows": rows},
                cost_usd=0.0001,
            )
    return NODES_PER_WORKER


def main() -> None:
    total = WORKERS * NODES_PER_WORKER
    with tracebus.connect_sync(SOCKET, WORKFLOW, total_nodes=total) as run:
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(WORKERS, mp_context=spawn) as pool:
            done = sum(pool.map(work, [run.run_id] * WORKERS, range(WORKERS)))
    print(f"run {run.run_id}: {done}/{total} nodes recorded by {WORKERS} worker processes")


if __name__ == "__main__":
    main()
