"""The current node, nesting and dependencies, as the trace records them."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

import tracebus
from tests.conftest import Quiet, trace_of
from tracebus._event_methods import SyncEventMethods

pytestmark = pytest.mark.anyio


def _starts(trace: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["node_id"]: e for e in trace if e["event_type"] == "node_start"}


def _notes(trace: list[dict[str, Any]]) -> dict[str, str | None]:
    return {e["message"]: e["node_id"] for e in trace if e["event_type"] == "note"}


async def test_a_node_is_current_inside_its_block_and_parents_the_nodes_opened_there(
    out: Path,
    quiet: Quiet,
) -> None:
    seen: dict[str, str | None] = {"before": tracebus.current_node()}
    async with quiet.Observer("wf", out) as obs:
        async with obs.node("agent"):
            seen["agent"] = tracebus.current_node()
            await obs.note("thinking")
            async with obs.node("search") as search:
                seen["search"] = tracebus.current_node()
                await obs.note("querying", hits=3)
                search.output(["a", "b"])
            seen["after search"] = tracebus.current_node()
            await obs.note("answered")
        await obs.note("done")
        seen["after"] = tracebus.current_node()

    assert seen == {
        "before": None,
        "agent": "agent",
        "search": "search",
        "after search": "agent",
        "after": None,
    }
    trace = trace_of(obs.trace_file)
    starts = _starts(trace)
    assert "parent_id" not in starts["agent"]
    assert starts["search"]["parent_id"] == "agent"
    assert "depends_on" not in starts["search"]
    assert _notes(trace) == {
        "thinking": "agent",
        "querying": "search",
        "answered": "agent",
        "done": None,
    }
    log = obs.log_file.read_text()
    assert '"parent_id":"agent"' in log
    assert '"parent_id"' not in next(line for line in log.splitlines() if "START agent" in line)


async def test_tasks_and_worker_threads_started_inside_a_node_inherit_it(
    out: Path, quiet: Quiet
) -> None:
    async with quiet.Observer("wf", out) as obs:

        async def child(name: str) -> None:
            async with obs.node(name):
                await obs.note(f"{name} ran")

        async with obs.node("fan_out"):
            async with anyio.create_task_group() as tg:
                tg.start_soon(child, "in_task_group")
            if _on_asyncio():
                await asyncio.create_task(child("in_create_task"))
                await asyncio.to_thread(obs.threads.note, "asyncio.to_thread")
            await anyio.to_thread.run_sync(obs.threads.note, "anyio.to_thread")
            await anyio.to_thread.run_sync(_sync_child, obs.threads, "in_thread")

    trace = trace_of(obs.trace_file)
    starts, notes = _starts(trace), _notes(trace)
    assert starts["in_task_group"]["parent_id"] == "fan_out"
    assert starts["in_thread"]["parent_id"] == "fan_out"
    assert notes["in_task_group ran"] == "in_task_group"
    assert notes["anyio.to_thread"] == "fan_out"
    assert notes["in_thread ran"] == "in_thread"
    if _on_asyncio():
        assert starts["in_create_task"]["parent_id"] == "fan_out"
        assert notes["asyncio.to_thread"] == "fan_out"


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _sync_child(obs: SyncEventMethods, name: str) -> None:
    with obs.node(name):
        obs.note(f"{name} ran")


async def test_explicit_parent_and_depends_on_are_recorded(out: Path, quiet: Quiet) -> None:
    async with quiet.Observer("wf", out) as obs:
        await obs.node_start("plan")
        await obs.node_success("plan", 0.1)
        await obs.node_start("step_1", parent="plan", depends_on=["plan"])
        await obs.node_success("step_1", 0.1)
        async with obs.node("outer"):
            async with obs.node("step_2", parent="plan", depends_on=("plan", "step_1")):
                pass
    starts = _starts(trace_of(obs.trace_file))
    assert starts["step_1"]["parent_id"] == "plan"
    assert starts["step_1"]["depends_on"] == ["plan"]
    assert starts["step_2"]["parent_id"] == "plan"  # the explicit parent wins over nesting
    assert starts["step_2"]["depends_on"] == ["plan", "step_1"]


async def test_bad_parent_or_depends_on_is_refused_at_the_call(out: Path, quiet: Quiet) -> None:
    async with quiet.Observer("wf", out) as obs:
        with pytest.raises(TypeError, match="node_start: parent must be a str, not int"):
            await obs.node_start("a", parent=3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="depends_on must be a list of node ids, not str"):
            await obs.node_start("a", depends_on="b")
        with pytest.raises(TypeError, match="depends_on item must be a str, not int"):
            await obs.node_start("a", depends_on=["b", 1])  # type: ignore[list-item]
    assert [e["event_type"] for e in trace_of(obs.trace_file)] == [
        "workflow_start",
        "workflow_complete",
    ]


async def test_a_node_of_another_run_is_not_the_current_node_of_this_one(
    out: Path, quiet: Quiet
) -> None:
    async with (
        quiet.Observer("one", out) as one,
        quiet.Observer("two", out) as two,
    ):
        async with one.node("in_one"):
            await two.node_start("in_two")
            await two.note("two's note")
            await two.node_success("in_two", 0.0)
    trace = trace_of(two.trace_file)
    assert "parent_id" not in _starts(trace)["in_two"]
    assert _notes(trace) == {"two's note": None}


def test_sync_observer_node_block_sets_the_current_node_of_its_thread(
    out: Path, quiet: Quiet
) -> None:
    seen: dict[str, str | None] = {}
    with quiet.SyncObserver("wf", out) as obs:
        with obs.node("batch") as batch:
            obs.note("in batch")
            barrier = threading.Barrier(2)

            def other_thread() -> None:  # a plain thread starts with a context of its own
                seen["plain thread"] = tracebus.current_node()
                barrier.wait()

            thread = threading.Thread(target=other_thread)
            thread.start()
            barrier.wait()
            thread.join()
            with ThreadPoolExecutor(2) as pool:
                # a pool's workers run in the submitter's context when given it...
                context = contextvars.copy_context()
                pool.submit(context.run, _sync_child, obs, "copied_context").result()
                # ... or are parented explicitly
                for index in range(2):
                    pool.submit(_pooled, obs, f"pooled_{index}").result()
            batch.output("ok")
        obs.note("outside")
    trace = trace_of(obs.trace_file)
    starts, notes = _starts(trace), _notes(trace)
    assert seen == {"plain thread": None}
    assert starts["copied_context"]["parent_id"] == "batch"
    assert starts["pooled_0"]["parent_id"] == "batch"
    assert notes == {
        "in batch": "batch",
        "copied_context ran": "copied_context",
        "outside": None,
    }
    (success,) = (e for e in trace if e["event_type"] == "node_success" and e["node_id"] == "batch")
    assert success["output_hash"] == tracebus.hash_output("ok")


def _pooled(obs: tracebus.SyncObserver, name: str) -> None:
    with obs.node(name, parent="batch"):
        assert tracebus.current_node() == name


def test_sync_node_block_that_raises_records_failure_and_restores_the_current_node(
    out: Path,
    quiet: Quiet,
) -> None:
    with quiet.SyncObserver("wf", out) as obs:
        with pytest.raises(KeyError), obs.node("bad"):
            raise KeyError("x")
        assert tracebus.current_node() is None
    trace = trace_of(obs.trace_file)
    failure = next(e for e in trace if e["event_type"] == "node_failure")
    assert failure["node_id"] == "bad" and failure["error"] == "KeyError: 'x'"
