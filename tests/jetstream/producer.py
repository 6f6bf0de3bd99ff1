"""A producer process: publishes COUNT events (node start/success pairs) into a run.

Usage: producer.py URL STREAM PREFIX WORKFLOW_ID RUN_ID PRODUCER COUNT
Prints the publisher's statistics as JSON once every event is acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import sys

from tracebus._factory import EventFactory
from tracebus._nats._publisher import JetStreamPublisher
from tracebus._nats._settings import NatsSettings, StreamSettings


async def main(argv: list[str]) -> None:
    url, stream, prefix, workflow_id, run_id, producer, count = argv
    settings = NatsSettings.from_url(url, stream=StreamSettings(name=stream, subject_prefix=prefix))
    events = EventFactory(workflow_id, run_id, producer)
    async with JetStreamPublisher(settings, workflow_id, run_id, producer) as publisher:
        for index in range(int(count) // 2):
            node_id = f"{producer}-n{index}"
            await publisher.send(events.node_start(node_id, index))
            await publisher.send(events.node_success(node_id, 0.001, None, None, 0.0))
    print(json.dumps(publisher.statistics()._asdict()))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
