"""One set of counts: the writer, the metadata, the console, the trace and every reader agree."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tracebus
from tests.conftest import assert_consistent_run, metadata_of, reference_counts, trace_of
from tests.tools.browser import page_data
from tracebus._counts import NodeTally
from tracebus._events import Event
from tracebus._factory import EventFactory
from tracebus._state import RunState
from tracebus._tools._find import FoundRun
from tracebus._tools._record import build_run
from tracebus.cli import main

KEYS = tracebus.NodeCounts._fields
NODES = 300  # ten of each of the kinds below, thirty times


async def _node(obs: tracebus.Observer, i: int) -> None:
    """Node ``i`` behaves as its kind ``i % 10`` says."""
    node_id, kind = f"n{i:03d}", i % 10
    if kind == 0:  # fails, is retried, then succeeds
        await obs.node_start(node_id, i)
        await obs.node_failure(node_id, "TimeoutError: slow", 0.2)
        await obs.node_retry(node_id, 2, "TimeoutError: slow", 0.1)
        async with obs.node(node_id, i):
            pass
    elif kind == 1:  # fails three times: for good
        for attempt in range(1, 4):
            with pytest.raises(OSError):
                async with obs.node(node_id, i):
                    raise OSError("disk full")
            if attempt < 3:
                await obs.node_retry(node_id, attempt + 1, "OSError: disk full")
    elif kind == 2:  # skipped
        await obs.node_skipped(node_id, "cached")
    elif kind == 3:  # still running when the run completes
        await obs.node_start(node_id, i)
    elif kind == 4:  # fails, then runs again at once, with no node_retry (the seed's way)
        await obs.node_start(node_id, i)
        await obs.node_failure(node_id, "ValueError: flaky", 0.1)
        await obs.node_start(node_id, i)
        await obs.node_success(node_id, 0.1)
    elif kind == 5:  # fails, a retry is announced, the run ends before it
        await obs.node_start(node_id, i)
        await obs.node_failure(node_id, "RuntimeError: late", 0.1)
        await obs.node_retry(node_id, 2, "RuntimeError: late")
    else:
        async with obs.node(node_id, i) as node:
            node.cost(0.001)


EXPECTED = {
    "nodes_seen": NODES,
    "nodes_completed": 30 * 6,  # kinds 0, 4 and 6-9
    "nodes_failed": 30 * 2,  # kinds 1 and 5
    "nodes_skipped": 30,
    "nodes_unfinished": 30,
    "nodes_retried": 30 * 4,  # kinds 0, 1, 4 and 5
    "attempts_failed": 30 * (1 + 3 + 1 + 1),
    "retries": 30 * (1 + 2 + 1),  # kinds 0, 1 (twice) and 4
}


def _counts_in(data: Any) -> dict[str, Any]:
    return {key: data[key] for key in KEYS}


def test_every_output_reports_the_same_counts(tmp_path: Path) -> None:
    out, console = tmp_path / "runs", io.StringIO()

    async def workflow() -> tracebus.Observer:
        async with tracebus.Observer(
            "step_02_counts", out, total_nodes=NODES, progress=False, console=console
        ) as obs:
            for i in range(NODES):
                await _node(obs, i)
        return obs

    obs = anyio.run(workflow)
    trace = trace_of(obs.trace_file)
    assert reference_counts(trace) == EXPECTED

    metadata = metadata_of(obs.metadata_file)
    assert _counts_in(metadata) == EXPECTED and metadata["nodes_untracked"] == 0
    assert_consistent_run(trace, metadata)
    assert _counts_in(trace[-1]) == EXPECTED  # workflow_complete

    summary, log = console.getvalue(), obs.log_file.read_text()
    for line in (
        f"Nodes executed: {EXPECTED['nodes_completed']}/{NODES}",
        f"Nodes failed: {EXPECTED['nodes_failed']}",
        f"Nodes skipped: {EXPECTED['nodes_skipped']}",
        f"Nodes unfinished: {EXPECTED['nodes_unfinished']}",
        f"Nodes retried: {EXPECTED['nodes_retried']}",
        f"Retries: {EXPECTED['retries']}",
        f"Attempts failed: {EXPECTED['attempts_failed']}",
    ):
        assert f"\n {line}\n" in summary and f"\n {line}\n" in log

    run = tracebus.read_run(out)
    assert run.counts._asdict() == EXPECTED
    assert [n.status for n in run.nodes].count("failed") == len(run.failed_nodes) == 60

    reports = tmp_path / "reports"
    reports.mkdir()
    figures = _cli_json(["summary", str(out), "--json"])
    assert _counts_in(figures) == EXPECTED
    assert figures["nodes_succeeded"] == EXPECTED["nodes_completed"]
    text = _cli_text(["summary", str(out)])
    assert "nodes          180 completed, 60 failed, 30 skipped, 30 unfinished of 300" in text
    assert "attempts       180 failed, 120 retries (120 nodes retried)" in text

    assert main(["timeline", str(out), "-o", str(reports / "t.html")]) == 0
    page = (reports / "t.html").read_text()
    data = page_data(reports / "t.html")
    assert data["run"]["counts"] == EXPECTED
    failed_code = data["run"]["statuses"].index("failed")
    assert data["attempts"]["status"].count(failed_code) == EXPECTED["attempts_failed"]
    assert "180 completed / 60 failed / 30 skipped / 30 unfinished of 300" in page
    assert "180 failed / 120 retries / 120 nodes retried" in page

    assert main(["export", str(out), "--format", "chrome", "-o", str(reports / "c.json")]) == 0
    chrome = json.loads((reports / "c.json").read_text())["traceEvents"]
    (whole_run,) = (e for e in chrome if e.get("cat") == "workflow")
    assert _counts_in(whole_run["args"]) == EXPECTED
    chrome_failed = [e for e in chrome if e.get("ph") == "X" and "failed" in e["cat"].split(",")]
    assert main(["export", str(out), "--format", "otlp", "-o", str(reports / "o.jsonl")]) == 0
    spans = [
        span
        for line in (reports / "o.jsonl").read_text().splitlines()
        for span in json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    ]
    (root,) = [span for span in spans if "parentSpanId" not in span]
    attributes = {a["key"]: a["value"] for a in root["attributes"]}
    assert {key: int(attributes[f"tracebus.{key}"]["intValue"]) for key in KEYS} == EXPECTED
    otlp_failed = [s for s in spans if s.get("status", {}).get("code") == 2]
    assert len(chrome_failed) == len(otlp_failed) == EXPECTED["attempts_failed"]
    assert sorted(e["name"] for e in chrome_failed) == sorted(s["name"] for s in otlp_failed)


def _cli_json(args: list[str]) -> dict[str, Any]:
    return json.loads(_cli_text(args))  # type: ignore[no-any-return]


def _cli_text(args: list[str]) -> str:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(args) == 0
    return buffer.getvalue()


def test_workflow_error_carries_the_same_counts(out: Path) -> None:
    console = io.StringIO()
    with pytest.raises(RuntimeError):
        with tracebus.SyncObserver("wf", out, progress=False, console=console) as obs:
            obs.node_start("a", 0)
            obs.node_failure("a", "x", 0.1)
            obs.node_start("a", 0)
            obs.node_success("a", 0.1)
            obs.node_start("b", 1)
            raise RuntimeError("stop")
    trace = trace_of(obs.trace_file)
    expected = reference_counts(trace)
    assert expected["nodes_completed"] == expected["nodes_unfinished"] == 1
    assert trace[-1]["event_type"] == "workflow_error"
    assert _counts_in(trace[-1]) == _counts_in(metadata_of(obs.metadata_file)) == expected
    assert "\n Nodes executed: 1/0\n Nodes unfinished: 1\n Nodes retried: 1\n" in (
        console.getvalue()
    )


# -- the definitions, on any sequence of node events ---------------------------------------

NODE_KINDS = ("node_start", "node_success", "node_failure", "node_skipped", "node_retry")
_events = EventFactory("wf", "r")


def _event(kind: str, node_id: str) -> Event:
    if kind == "node_start":
        return _events.node_start(node_id, None)
    if kind == "node_success":
        return _events.node_success(node_id, 0.1, None, None, 0.0)
    if kind == "node_failure":
        return _events.node_failure(node_id, "x", 0.1)
    if kind == "node_skipped":
        return _events.node_skipped(node_id)
    return _events.node_retry(node_id, 2)


steps = st.lists(
    st.tuples(st.sampled_from(NODE_KINDS), st.sampled_from(["a", "b", "c", "d"])), max_size=60
)


@settings(max_examples=300, deadline=None)
@given(steps, st.integers(min_value=1, max_value=7), st.integers(min_value=0, max_value=60))
def test_writer_and_reader_follow_the_definitions(
    sequence: list[tuple[str, str]], step: int, end_at: int
) -> None:
    """The writer (its inline paths, batches of any size, a completion in mid-batch) and the
    reader count any sequence of node events as the plain definitions do."""
    events: list[Event] = [_event(kind, node) for kind, node in sequence]
    end_at = min(end_at, len(events))
    complete = _events.workflow_complete(None)
    events.insert(end_at, complete)
    state = RunState("wf", "r", 0, 0.0)
    for first in range(0, len(events), step):
        state.apply(events[first : first + step])
    dicts = [msgspec.to_builtins(e) for e in events]
    for d, e in zip(dicts, events, strict=True):
        d["event_type"] = type(e).__struct_config__.tag
    assert state.counts()._asdict() == reference_counts(dicts)
    assert _counts_in(msgspec.to_builtins(complete)) == reference_counts(dicts[:end_at])
    found = FoundRun(trace_file=Path("trace.jsonl"), metadata_file=None, metadata=None)
    run = build_run(dicts, found)
    assert run.counts == state.counts()
    for node in run.nodes:
        assert node.status == state.tally.status(node.node_id)


def test_past_the_cap_each_attempt_counts_as_a_node_and_memory_stays_flat() -> None:
    state = RunState("wf", "r", 0, 0.0, max_node_details=100)
    for i in range(10_000):
        node_id = f"n{i}"
        batch = [_event("node_start", node_id), _event("node_failure", node_id)]
        batch += [_event("node_retry", node_id), _event("node_start", node_id)]
        batch.append(_event("node_success", node_id))
        state.apply(batch)
    assert len(state.tally.table) == 100 and not state.tally._untracked_open
    counts = state.counts()
    # the first 100 nodes: failed once, retried, completed; the other 9,900 are counted by
    # attempt: one failed and one completed "node" each
    assert counts.nodes_completed == 10_000 and counts.nodes_failed == 9_900
    assert counts.nodes_seen == 19_900 and counts.nodes_unfinished == 0
    assert (counts.nodes_retried, counts.retries) == (100, 100)
    assert counts.attempts_failed == 10_000
    assert state.tally.untracked == 19_800


def test_an_unfinished_node_past_the_cap_counts_until_it_ends() -> None:
    tally: NodeTally[str] = NodeTally(max_nodes=1)
    tally.start("a")
    tally.start("b")
    assert tally.counts().nodes_unfinished == 2
    tally.end("b", 1)
    assert (tally.counts().nodes_unfinished, tally.counts().nodes_completed) == (1, 1)
    assert tally.status("b") is None and tally.status("a") == "running"


def test_the_completion_events_carry_every_count() -> None:
    for kind in (tracebus.WorkflowComplete, tracebus.WorkflowError):
        assert set(KEYS) <= set(kind.__struct_fields__), kind


def test_nodes_that_never_end_past_the_cap_keep_memory_bounded() -> None:
    tally: NodeTally[str] = NodeTally(max_nodes=10)
    for i in range(1_000):
        tally.start(f"n{i}")
    assert len(tally.table) == len(tally._untracked_open) == 10
    assert tally.counts().nodes_unfinished == 20  # the ones that could be followed
    for i in range(1_000):
        tally.end(f"n{i}", 1)
    counts = tally.counts()
    assert (counts.nodes_completed, counts.nodes_unfinished, counts.nodes_seen) == (1_000, 0, 1_000)
    assert not tally._untracked_open
