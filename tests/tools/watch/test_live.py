"""A run's page state read from its trace as the trace grows (``RunFeed``)."""

from __future__ import annotations

import json
import os
from itertools import accumulate
from pathlib import Path
from typing import Any

from tracebus._tools._summary import summarize_trace
from tracebus._tools._watch._live import RunFeed

from .. import runs

STATUSES = ("success", "failed", "skipped", "running")


def grown(trace: Path, cuts: list[int], target: Path) -> list[dict[str, Any] | None]:
    """The updates of a feed of ``target`` as ``trace``'s bytes are appended to it, cut at
    each of ``cuts``."""
    data = trace.read_bytes()
    target.write_bytes(b"")
    feed = RunFeed(target)
    updates = [feed.poll()]
    at = 0
    for cut in [*cuts, len(data)]:
        with open(target, "ab") as handle:
            handle.write(data[at:cut])
        at = cut
        updates.append(feed.poll())
    updates.append(feed.poll())
    feed.close()
    return updates


def attempts(updates: list[dict[str, Any]]) -> dict[tuple[str, int], str]:
    """What a page holds after the updates: each attempt's (node, number) and status."""
    nodes: list[str] = []
    held: dict[tuple[str, int], str] = {}
    for update in updates:
        timeline = update["timeline"]
        if update["reset"]:
            nodes, held = [], {}
        first = timeline["nodes"]["first"]
        nodes[first:] = timeline["nodes"]["id"]
        rows = timeline["attempts"]
        slots = list(accumulate(rows["slot"]))
        for slot, number, status in zip(slots, rows["attempt"], rows["status"], strict=True):
            held[nodes[slot], number] = STATUSES[status]
    return held


def test_updates_add_up_to_the_whole_run(failure_dir: Path, tmp_path: Path) -> None:
    trace = runs.only_trace(failure_dir)
    data = trace.read_bytes()
    middle_of_a_line = data.index(b'"node_failure"')
    updates = grown(trace, [middle_of_a_line, middle_of_a_line + 5], tmp_path / "t.jsonl")
    assert updates[0] is not None and updates[0]["reset"]  # the empty page, at once
    assert updates[0]["run"]["events"] == 0 and updates[-1] is None  # nothing new, no update
    sent = [u for u in updates if u is not None]
    assert [u["reset"] for u in sent] == [True] + [False] * (len(sent) - 1)
    assert attempts(sent) == {
        ("a", 1): "success", ("b", 1): "failed", ("c", 1): "success", ("d", 1): "failed",
        ("e", 1): "success",
    }  # fmt: skip
    last = sent[-1]["run"]
    figures, _ = summarize_trace(trace)
    assert last["counts"]["nodes_failed"] == figures["nodes_failed"] == 2
    assert last["status"] == "complete" and last["events"] == data.count(b"\n")
    failures = [f for u in sent for f in u["failures"]]
    assert failures == [["b", "ValueError: bad input in b"], ["d", "ValueError: bad input in d"]]
    lines = [line for u in sent for line in u["lines"]]
    assert sum("NODE_FAILURE" in line for line in lines) == 2 and "workflow_complete" in lines[-1]


def test_a_partial_line_waits_for_its_newline(success_dir: Path, tmp_path: Path) -> None:
    trace = runs.only_trace(success_dir)
    data = trace.read_bytes()
    end_of_first = data.index(b"\n") + 1
    updates = grown(trace, [end_of_first, end_of_first + 7], tmp_path / "t.jsonl")
    assert updates[1] is not None and updates[1]["run"]["events"] == 1
    assert updates[2] is None  # seven bytes of a line: nothing to show yet


def test_running_attempts_are_sent_again_when_they_end(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    lines: list[dict[str, Any]] = [
        {"event_type": "workflow_start", "workflow_id": "w", "total_nodes": 3},
        {"event_type": "node_start", "node_id": "a"},
        {"event_type": "node_start", "node_id": "b"},
        {"event_type": "usage", "node_id": "b", "model": "m", "input_tokens": 10,
         "output_tokens": 4, "cost_usd": 0.5},
    ]  # fmt: skip
    later: list[dict[str, Any]] = [
        {"event_type": "node_success", "node_id": "a", "cost_usd": 0.25},
        {"event_type": "node_start", "node_id": "c"},
        {"event_type": "log", "level": "WARNING", "logger": "x", "message": "slow disk"},
    ]

    def write(events: list[dict[str, Any]]) -> None:
        with open(trace, "a") as handle:
            for number, event in enumerate(events):
                handle.write(json.dumps({"epoch_seconds": 1000.0 + number, **event}) + "\n")

    write(lines)
    feed = RunFeed(trace)
    first = feed.poll()
    assert first is not None
    assert attempts([first]) == {("a", 1): "running", ("b", 1): "running"}
    # no end, and no writer holds the run's lock: incomplete, as tracebus runs says
    assert first["run"]["running"] == 2 and first["run"]["status"] == "incomplete"
    assert (first["run"]["input_tokens"], first["run"]["output_tokens"]) == (10, 4)
    write(later)
    second = feed.poll()
    assert second is not None and not second["reset"]
    # only what changed: a ended, c began; b, still running, is not sent again
    assert second["timeline"]["attempts"]["count"] == 2
    assert second["timeline"]["nodes"]["id"] == ["c"]
    assert attempts([first, second]) == {
        ("a", 1): "success", ("b", 1): "running", ("c", 1): "running"
    }  # fmt: skip
    assert second["run"]["cost_usd"] == 0.75
    assert any("WARNING x: slow disk" in line for line in second["lines"])
    feed.close()


def test_a_new_run_in_the_same_trace_or_a_new_file_starts_the_page_again(
    success_dir: Path, failure_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "t.jsonl"
    target.write_bytes(runs.only_trace(success_dir).read_bytes())
    feed = RunFeed(target)
    assert feed.poll() is not None
    with open(target, "ab") as handle:
        handle.write(runs.only_trace(failure_dir).read_bytes())
    again = feed.poll()
    assert again is not None and again["reset"]
    assert sorted(node for node, _ in attempts([again])) == ["a", "b", "c", "d", "e"]
    assert again["run"]["workflow_id"] == "step_04_checks"
    replacement = tmp_path / "new.jsonl"
    replacement.write_bytes(runs.only_trace(success_dir).read_bytes())
    os.replace(replacement, target)
    replaced = feed.poll()
    assert replaced is not None and replaced["reset"]
    assert replaced["run"]["workflow_id"] != "step_04_checks"
    feed.close()


def test_a_broken_line_is_said(success_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "t.jsonl"
    data = runs.only_trace(success_dir).read_bytes()
    first = data.index(b"\n") + 1
    target.write_bytes(data[:first] + b"not json\n" + data[first:])
    feed = RunFeed(target)
    update = feed.poll()
    assert update is not None and "run" not in update and not update["reset"]
    assert update["problems"] and all(":2:" in problem for problem in update["problems"])
    feed.close()
