"""The Chrome export of nested runs: children inside their parent's event on its lane, and
each dependency a flow arrow."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import Quiet
from tracebus.cli import main

from . import runs


def export(run: Path, tmp_path: Path) -> list[dict[str, Any]]:
    target = tmp_path / "run.json"
    assert main(["export", str(run), "--format", "chrome", "-o", str(target)]) == 0
    events: list[dict[str, Any]] = json.loads(target.read_text())["traceEvents"]
    check_nesting(events)
    return events


def check_nesting(events: list[dict[str, Any]]) -> None:
    """Complete events on one lane are disjoint or nested, never crossing; every flow has
    its start and its end, each inside a complete event of its lane."""
    lanes: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for event in events:
        assert event["ph"] in {"X", "i", "M", "s", "f"}
        if event["ph"] == "X":
            lanes[event["tid"]].append((event["ts"], event["ts"] + event["dur"]))
    for spans in lanes.values():
        for a_start, a_end in spans:
            for b_start, b_end in spans:
                disjoint = a_end <= b_start or b_end <= a_start
                nested = (a_start <= b_start and b_end <= a_end) or (
                    b_start <= a_start and a_end <= b_end
                )
                assert disjoint or nested, "two events on a lane cross"
    flows: dict[int, list[str]] = defaultdict(list)
    for event in events:
        if event["ph"] in {"s", "f"}:
            flows[event["id"]].append(event["ph"])
            assert any(start <= event["ts"] <= end for start, end in lanes[event["tid"]])
    assert all(phases == ["s", "f"] for phases in flows.values())


def bars(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in events if e["ph"] == "X" and e["cat"] != "workflow"}


def test_children_are_nested_in_their_parent_on_its_lane(agent_dir: Path, tmp_path: Path) -> None:
    nodes = bars(export(agent_dir, tmp_path))
    research = nodes["research"]
    for child in ("search", "fetch"):
        assert nodes[child]["tid"] == research["tid"]
        assert research["ts"] <= nodes[child]["ts"]
        assert nodes[child]["ts"] + nodes[child]["dur"] <= research["ts"] + research["dur"]
        assert nodes[child]["args"]["parent_id"] == "research"
    assert "parent_id" not in research["args"]
    assert nodes["answer"]["args"]["depends_on"] == ["research", "plan"]
    assert (nodes["plan"]["args"]["input_tokens"], nodes["plan"]["args"]["output_tokens"]) == (
        1000,
        200,
    )
    assert nodes["plan"]["args"]["usage_cost_usd"] == pytest.approx(0.02)
    assert "input_tokens" not in research["args"]


def test_siblings_running_together_take_lanes_of_their_own(
    out: Path, quiet: Quiet, tmp_path: Path
) -> None:
    async def main_run() -> None:
        async with quiet.Observer("wf", out) as obs:
            async with obs.node("agent"):
                both = anyio.Event()
                started = 0

                async def tool(name: str) -> None:
                    nonlocal started
                    async with obs.node(name):
                        started += 1
                        if started == 2:
                            both.set()
                        await both.wait()

                async with anyio.create_task_group() as group:
                    group.start_soon(tool, "tool_a")
                    group.start_soon(tool, "tool_b")

    anyio.run(main_run)
    nodes = bars(export(out, tmp_path))
    agent, tools = nodes["agent"], [nodes["tool_a"], nodes["tool_b"]]
    on_parent = [t for t in tools if t["tid"] == agent["tid"]]
    assert len(on_parent) == 1  # the first to start; the other overlaps it
    assert len({t["tid"] for t in tools}) == 2


def test_dependencies_are_flow_arrows(tmp_path: Path) -> None:
    events = export(runs.pipeline_trace(tmp_path / "pipeline"), tmp_path)
    nodes = bars(events)
    arrows: dict[str, dict[str, dict[str, Any]]] = {}
    for event in events:
        if event["ph"] in {"s", "f"}:
            arrows.setdefault(event["name"], {})[event["ph"]] = event
            assert event["cat"] == "depends_on"
    assert sorted(arrows) == [
        "fetch_a -> merge",
        "fetch_b -> merge",
        "merge -> report",
        "parse -> join",
    ]
    for name, ends in arrows.items():
        upstream, dependent = (nodes[n] for n in name.split(" -> "))
        assert (ends["s"]["ts"], ends["s"]["tid"]) == (upstream["ts"], upstream["tid"])
        assert (ends["f"]["ts"], ends["f"]["tid"]) == (dependent["ts"], dependent["tid"])
        assert ends["f"]["bp"] == "e" and ends["s"]["id"] == ends["f"]["id"]
    assert nodes["parse"]["tid"] == nodes["join"]["tid"] == nodes["merge"]["tid"]
    assert nodes["fetch_a"]["tid"] != nodes["fetch_b"]["tid"]
    assert (nodes["join"]["args"]["input_tokens"], nodes["join"]["args"]["usage_cost_usd"]) == (
        90,
        0.5,
    )


def test_a_flat_run_exports_as_before(success_dir: Path, tmp_path: Path) -> None:
    events = export(success_dir, tmp_path)
    assert {e["ph"] for e in events} == {"X", "i", "M"}
    assert all(
        not {"parent_id", "depends_on", "input_tokens", "usage_cost_usd"} & e["args"].keys()
        for e in bars(events).values()
    )
