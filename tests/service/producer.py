"""A producer process for the service tests: emits node events into a run, then prints its
statistics as JSON. With --pause-at N it prints "paused" after N events and waits for a line
on stdin before going on."""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio

import tracebus


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("socket")
    parser.add_argument("workflow_id")
    parser.add_argument("--run-id")
    parser.add_argument("--join", action="store_true")
    parser.add_argument("--producer")
    parser.add_argument("--events", type=int, required=True, help="node events (even)")
    parser.add_argument("--pause-at", type=int, default=None)
    parser.add_argument("--sync-threads", type=int, default=0, help="use the sync twin")
    args = parser.parse_args()
    options = dict(run_id=args.run_id, join=args.join, producer=args.producer)
    nodes = args.events // 2
    if args.sync_threads:
        stats = _sync(args, nodes, options)
    else:
        stats = anyio.run(_async, args, nodes, options)
    print(json.dumps(stats), flush=True)


async def _async(args: argparse.Namespace, nodes: int, options: dict[str, Any]) -> dict[str, Any]:
    async with tracebus.connect(args.socket, args.workflow_id, nodes, **options) as obs:
        print("connected", flush=True)
        for index in range(nodes):
            if args.pause_at is not None and 2 * index == args.pause_at:
                print("paused", flush=True)
                await anyio.to_thread.run_sync(sys.stdin.readline)
            node_id = f"{obs.producer}-{index}"
            await obs.node_start(node_id, index)
            await obs.node_success(node_id, 0.001, output_summary={"index": index})
    return obs.statistics()._asdict()


def _sync(args: argparse.Namespace, nodes: int, options: dict[str, Any]) -> dict[str, Any]:
    with tracebus.connect_sync(args.socket, args.workflow_id, nodes, **options) as obs:
        print("connected", flush=True)

        def node(index: int) -> None:
            node_id = f"{obs.producer}-{index}"
            obs.node_start(node_id, index)
            obs.node_success(node_id, 0.001, output_summary={"index": index})

        with ThreadPoolExecutor(args.sync_threads) as pool:
            list(pool.map(node, range(nodes)))
    return obs.statistics()._asdict()


if __name__ == "__main__":
    main()
