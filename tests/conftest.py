from __future__ import annotations

import functools
import inspect
import json
import time
from collections import Counter
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

import tracebus
from tracebus.testing import CapturingSink


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The event loops every test marked ``anyio`` runs on (a module of the core sets
    ``pytestmark = pytest.mark.anyio``)."""
    backend: str = request.param
    return backend


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> Generator[None, Any, None]:
    """pytest-asyncio's auto mode, but for the tests anyio runs: every other async test is
    an asyncio test (pytest-asyncio's strict mode converts what is marked; this runs just
    before it)."""
    outcome = yield
    made = outcome.get_result()
    for item in made if isinstance(made, list) else [made]:
        if not isinstance(item, pytest.Function) or item.get_closest_marker("anyio"):
            continue
        test = getattr(getattr(item.obj, "hypothesis", None), "inner_test", item.obj)
        if inspect.iscoroutinefunction(test):
            item.add_marker(pytest.mark.asyncio)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "runs"


class Quiet:
    """The observers as most tests make them: no progress bar, nothing on the console."""

    # staticmethod: a partial held by a class becomes a method in later Pythons (3.13 warns)
    Observer = staticmethod(functools.partial(tracebus.Observer, progress=False, console=None))
    SyncObserver = staticmethod(
        functools.partial(tracebus.SyncObserver, progress=False, console=None)
    )


@pytest.fixture
def quiet() -> Quiet:
    return Quiet()


def note(i: int) -> tracebus.Note:
    """A note whose message is ``i``, as a bare bus's tests emit them."""
    return tracebus.Note(
        epoch_seconds=time.time(), pid=1, workflow_id="wf", run_id="r", message=str(i)
    )


class GatedSink(CapturingSink):
    """Blocks in write_batch until the gate opens: stands for a slow disk."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = anyio.Event()
        self.entered = anyio.Event()

    async def write_batch(self, events: Sequence[tracebus.Event]) -> None:
        self.entered.set()
        await self.gate.wait()
        await super().write_batch(events)


def trace_of(path: Path) -> list[dict[str, Any]]:
    return list(tracebus.read_trace(path))


def metadata_of(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


_ENDS = {"node_success": "completed", "node_failure": "failed", "node_skipped": "skipped"}


def reference_counts(trace: list[dict[str, Any]]) -> dict[str, int]:
    """The count definitions of docs/run-files.md, computed plainly from a trace: a node's
    attempts are its starts (each ended by its next end event) and its end events without a
    start; its status is its latest attempt's, ``unfinished`` while that one runs or with no
    attempt."""
    nodes: dict[str, dict[str, Any]] = {}
    failed_attempts = 0
    for event in trace:
        kind, node_id = event["event_type"], event.get("node_id")
        if node_id is None or not (kind in _ENDS or kind in ("node_start", "node_retry")):
            continue
        node = nodes.setdefault(node_id, {"open": 0, "last": None, "attempts": 0, "retry": False})
        if kind == "node_start":
            node["open"] += 1
            node["attempts"] += 1
        elif kind == "node_retry":
            node["retry"] = True
        else:
            failed_attempts += kind == "node_failure"
            if node["open"]:
                node["open"] -= 1
            else:
                node["attempts"] += 1
            node["last"] = _ENDS[kind]
    statuses = Counter(
        "unfinished" if n["open"] or n["last"] is None else n["last"] for n in nodes.values()
    )
    return {
        "nodes_seen": len(nodes),
        "nodes_completed": statuses["completed"],
        "nodes_failed": statuses["failed"],
        "nodes_skipped": statuses["skipped"],
        "nodes_unfinished": statuses["unfinished"],
        "nodes_retried": sum(n["retry"] or n["attempts"] > 1 for n in nodes.values()),
        "attempts_failed": failed_attempts,
        "retries": sum(max(0, n["attempts"] - 1) for n in nodes.values()),
    }


def assert_consistent_run(trace: list[dict[str, Any]], metadata: dict[str, Any]) -> None:
    """What every finished run must satisfy: seq 1..n in order, each node's start before its
    end, and the metadata's counts equal to those of the trace."""
    assert [e["seq"] for e in trace] == list(range(1, len(trace) + 1))
    seen_start: set[str] = set()
    for event in trace:
        if event["event_type"] == "node_start":
            seen_start.add(event["node_id"])
        elif event["event_type"] in ("node_success", "node_failure"):
            assert event["node_id"] in seen_start, f"{event['node_id']} ended before it started"
    expected = reference_counts(trace)
    assert {key: metadata[key] for key in expected} == expected
    assert metadata["events_written"] == len(trace)
