"""A producer process: joins a run through NATS and records COUNT/2 nodes (start, success).

Usage: producer.py URL STREAM PREFIX WORKFLOW_ID RUN_ID PRODUCER COUNT
Prints the remote observer's statistics as JSON once every event is stored by JetStream.
"""

from __future__ import annotations

import asyncio
import json
import sys

import tracebus


async def main(argv: list[str]) -> None:
    url, stream, prefix, workflow_id, run_id, producer, count = argv
    settings = tracebus.NatsSettings.from_url(
        url, stream=tracebus.NatsStream(name=stream, subject_prefix=prefix)
    )
    observer = tracebus.connect(settings, workflow_id, run_id=run_id, join=True, producer=producer)
    async with observer:
        for index in range(int(count) // 2):
            node_id = f"{producer}-n{index}"
            await observer.node_start(node_id, index)
            await observer.node_success(node_id, 0.001)
    print(json.dumps(observer.statistics()._asdict()))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
