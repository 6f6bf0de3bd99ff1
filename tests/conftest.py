from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import tracebus


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def trace_of(path: Path) -> list[dict[str, Any]]:
    return list(tracebus.read_trace(path))


def metadata_of(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def assert_consistent_run(trace: list[dict[str, Any]], metadata: dict[str, Any]) -> None:
    """What every finished run must satisfy: seq 1..n in order, each node's start before its
    end, and the metadata's counts equal to the trace's."""
    assert [e["seq"] for e in trace] == list(range(1, len(trace) + 1))
    seen_start: set[str] = set()
    for event in trace:
        if event["event_type"] == "node_start":
            seen_start.add(event["node_id"])
        elif event["event_type"] in ("node_success", "node_failure"):
            assert event["node_id"] in seen_start, f"{event['node_id']} ended before it started"
    counts = Counter(e["event_type"] for e in trace)
    assert metadata["nodes_completed"] == counts["node_success"]
    assert metadata["nodes_failed"] == counts["node_failure"]
    assert metadata["nodes_skipped"] == counts["node_skipped"]
    assert metadata["events_written"] == len(trace)
