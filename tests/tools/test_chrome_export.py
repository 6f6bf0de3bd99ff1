from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tracebus import read_run
from tracebus.cli import main

from . import runs


def export(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    target = tmp_path / "run.json"
    assert main(["export", str(run), "--format", "chrome", "-o", str(target)]) == 0
    assert f"wrote {target}" in capsys.readouterr().out
    trace: dict[str, Any] = json.loads(target.read_text())
    check_trace_event_format(trace)
    return trace


def check_trace_event_format(trace: dict[str, Any]) -> None:
    """The rules of the Trace Event Format that viewers rely on."""
    events = trace["traceEvents"]
    assert isinstance(events, list)
    named_threads = {e["tid"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    lanes: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for event in events:
        assert event["ph"] in {"X", "i", "M"}
        assert isinstance(event["name"], str)
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int)
        if event["ph"] == "X":
            assert isinstance(event["ts"], int | float) and event["ts"] >= 0
            assert isinstance(event["dur"], int | float) and event["dur"] >= 0
            assert event["tid"] in named_threads
            lanes[event["tid"]].append((event["ts"], event["ts"] + event["dur"]))
        if event["ph"] == "i":
            assert event["s"] in {"g", "p", "t"} and event["ts"] >= 0
    for spans in lanes.values():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end, "two events on one lane overlap"


def node_events(trace: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in trace["traceEvents"] if e["ph"] == "X" and e["cat"] != "workflow"]


def test_success_run_has_workflow_and_node_events(
    success_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = export(success_dir, tmp_path, capsys)
    run = read_run(success_dir)
    nodes = node_events(trace)
    assert sorted(e["name"] for e in nodes) == sorted(n.node_id for n in run.nodes)
    assert len({e["tid"] for e in nodes}) == 3  # three nodes were in flight together
    (workflow,) = [e for e in trace["traceEvents"] if e.get("cat") == "workflow"]
    assert workflow["name"] == "step_03_load" and workflow["ts"] == 0
    assert all(e["tid"] != workflow["tid"] for e in nodes)
    assert all(workflow["ts"] + workflow["dur"] >= e["ts"] + e["dur"] for e in nodes)
    durations = {e["name"]: e["args"]["duration_seconds"] for e in nodes}
    for node in run.nodes:
        assert durations[node.node_id] == node.attempts[0].duration_seconds
    enrich = next(e for e in nodes if e["name"] == "enrich")
    assert enrich["args"]["cost_usd"] == pytest.approx(0.02)
    assert enrich["args"]["output_summary"] == {"rows": 10}
    notes = [e for e in trace["traceEvents"] if e["ph"] == "i" and e["cat"] == "note"]
    assert [n["name"] for n in notes] == ["note: halfway"] and notes[0]["args"] == {"rows": 30}
    assert trace["otherData"]["run_id"] == run.run_id


def test_failures_are_marked(
    failure_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = export(failure_dir, tmp_path, capsys)
    failed = [e for e in node_events(trace) if "failed" in e["cat"].split(",")]
    assert sorted(e["name"] for e in failed) == ["b", "d"]
    assert all(e["cname"] == "terrible" and e["args"]["status"] == "failed" for e in failed)
    assert failed[0]["args"]["error"].startswith("ValueError: bad input in")
    assert len({e["tid"] for e in node_events(trace)}) == 1  # one after the other


def test_retries_and_skips_become_instants(
    retry_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = export(retry_dir, tmp_path, capsys)
    fetch = [e for e in node_events(trace) if e["name"] == "fetch"]
    assert [e["args"]["attempt"] for e in fetch] == [1, 2]
    assert [e["args"]["status"] for e in fetch] == ["failed", "success"]
    instants = [e for e in trace["traceEvents"] if e["ph"] == "i"]
    retries = sorted(e["name"] for e in instants if e["cat"] == "retry")
    assert retries == ["retry fetch", "retry parse", "retry upload"]
    parse_retry = next(e for e in instants if e["name"] == "retry parse")
    assert parse_retry["s"] == "t"  # on the lane of the attempt it interrupted
    assert [e["args"] for e in instants if e["cat"] == "skip"] == [{"reason": "up to date"}]


def test_workflow_error_instant(
    error_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = export(error_dir, tmp_path, capsys)
    (error,) = [e for e in trace["traceEvents"] if e["name"] == "workflow error"]
    assert error["args"] == {"error": "ConnectionError: database unreachable"}
    (workflow,) = [e for e in trace["traceEvents"] if e.get("cat") == "workflow"]
    assert workflow["args"]["status"] == "error" and workflow["cname"] == "terrible"


def test_many_concurrent_nodes_never_overlap_on_a_lane(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = runs.synthetic_run(tmp_path / "many", nodes=500, workers=24, fail_every=50)
    trace = export(out, tmp_path, capsys)
    nodes = node_events(trace)
    assert len(nodes) == 500
    assert len({e["tid"] for e in nodes}) == 24
    assert sum("failed" in e["cat"] for e in nodes) == 10


@pytest.mark.parametrize("kind", ["seed", "torn", "empty"])
def test_other_fixture_runs_export_valid_traces(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = {"seed": runs.seed_run, "torn": runs.torn_run, "empty": runs.empty_run}[kind](
        tmp_path / kind
    )
    trace = export(out, tmp_path, capsys)
    expected = {"seed": 4, "torn": 4, "empty": 0}[kind]
    assert len(node_events(trace)) == expected
