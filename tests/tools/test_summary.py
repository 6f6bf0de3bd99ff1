from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tracebus.cli import main

from . import runs


def summary_json(run: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["summary", str(run), "--json"]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def test_success_figures(success_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = summary_json(success_dir, capsys)
    assert s["status"] == "complete" and s["ok"] is True
    assert (s["nodes_succeeded"], s["nodes_failed"], s["nodes_skipped"]) == (4, 0, 0)
    assert s["nodes_retried"] == 0 and s["total_nodes"] == 4
    assert s["peak_in_flight"] == 3
    assert s["cost_usd"] == pytest.approx(0.035)
    assert [c["node_id"] for c in s["costliest"]] == ["enrich", "extract", "publish"]
    assert len(s["slowest"]) == 4
    durations = [n["duration_seconds"] for n in s["slowest"]]
    assert durations == sorted(durations, reverse=True)
    assert s["parallelism"] == pytest.approx(s["node_seconds"] / s["wall_seconds"])
    assert s["failures"] == [] and s["warnings"] == []


def test_text_summary_names_failures_and_stays_plain(
    failure_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["summary", str(failure_dir)]) == 0
    text = capsys.readouterr().out
    assert "status         complete (2 failed nodes)" in text
    assert "nodes          3 completed, 2 failed, 0 skipped, 0 unfinished of 5" in text
    assert "attempts       2 failed, 0 retries (0 nodes retried)" in text
    assert "  b: ValueError: bad input in b" in text
    assert "  d: ValueError: bad input in d" in text
    assert "\x1b" not in text  # no terminal escapes when piped


def test_check_turns_failures_into_exit_1(
    failure_dir: Path, success_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["summary", str(failure_dir), "--check"]) == 1
    assert main(["summary", str(success_dir), "--check"]) == 0


def test_workflow_error(error_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(error_dir), "--check"]) == 1
    text = capsys.readouterr().out
    assert "status         error" in text
    assert "error          ConnectionError: database unreachable" in text


def test_retries_counted(retry_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = summary_json(retry_dir, capsys)
    assert (s["nodes_succeeded"], s["nodes_failed"], s["nodes_skipped"]) == (2, 1, 1)
    assert s["nodes_retried"] == 3
    assert s["failures"] == [{"node_id": "upload", "error": "OSError: disk full", "attempts": 2}]
    main(["summary", str(retry_dir)])
    assert "upload (after 2 attempts): OSError: disk full" in capsys.readouterr().out


def test_ten_costliest_and_ten_slowest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = runs.synthetic_run(tmp_path / "many", nodes=30, workers=4)
    s = summary_json(out, capsys)
    assert len(s["costliest"]) == 10 and len(s["slowest"]) == 10
    assert s["peak_in_flight"] == 4
    assert 3 < s["parallelism"] <= 4


def test_torn_run_warns(torn_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(torn_dir)]) == 0
    text = capsys.readouterr().out
    assert "Warnings" in text and "torn last line ignored" in text


def test_seed_run(seed_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = summary_json(seed_dir, capsys)
    assert s["format"] == "seed" and s["run_id"] is None
    assert (s["nodes_succeeded"], s["nodes_failed"]) == (3, 1)
    assert s["cost_usd"] == pytest.approx(0.42)
    assert s["node_seconds"] == pytest.approx(4.25)
    assert s["slowest"][0] == {"node_id": "node_2", "duration_seconds": 2.0, "status": "failed"}


def test_empty_run(empty_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = summary_json(empty_dir, capsys)
    assert s["total_nodes"] == 0 and s["nodes_succeeded"] == 0
    assert s["peak_in_flight"] == 0 and s["costliest"] == [] and s["slowest"] == []
    assert main(["summary", str(empty_dir), "--check"]) == 0
    assert "0 completed, 0 failed, 0 skipped, 0 unfinished of 0" in capsys.readouterr().out


def test_incomplete_run_fails_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = runs.success_run(tmp_path / "killed")
    trace = runs.only_trace(out)
    lines = trace.read_bytes().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if b'"node_success"' in line)
    trace.write_bytes(b"".join(lines[:cut]))
    assert main(["summary", str(trace), "--check"]) == 1
    text = capsys.readouterr().out
    assert "status         incomplete" in text
    assert "0 completed, 0 failed, 0 skipped, 3 unfinished of 4" in text


def test_fast_summary_answers_from_complete_metadata_and_says_so(
    failure_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = summary_json(failure_dir, capsys)
    assert main(["summary", str(failure_dir), "--fast", "--json"]) == 0
    fast = json.loads(capsys.readouterr().out)
    assert fast["source"].startswith("metadata (--fast)")
    for key in ("status", "ok", "total_nodes", "nodes_seen", "nodes_failed", "retries"):
        assert fast[key] == full[key], key
    assert fast["failures"] is None and fast["slowest"] is None and fast["node_seconds"] is None
    assert main(["summary", str(failure_dir), "--fast", "--check"]) == 1
    text = capsys.readouterr().out
    assert "  figures from   metadata (--fast): totals only" in text
    assert "status         complete (2 failed nodes)" in text and "Failures" not in text


def test_fast_summary_of_a_run_without_complete_metadata_reads_the_trace(
    seed_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = summary_json(seed_dir, capsys)
    assert main(["summary", str(seed_dir), "--fast", "--json"]) == 0
    fast = json.loads(capsys.readouterr().out)
    assert "source" not in fast and fast["failures"] == full["failures"]
    assert fast["warnings"] == [
        *full["warnings"],
        "--fast: the metadata is not complete; the trace was read",
    ]


PIPELINE_TEXT = """\
  tokens         130 in / 4 out, $0.5000 in 2 calls of 2 models

Tokens and cost by model
  model       calls  input  output     cost
  m-1             1     40       4  $0.0000
  m-2             1     90       0  $0.5000
  all models      2    130       4  $0.5000

Most tokens by node (top 10)
  join   90 in  0 out  $0.5000
  parse  40 in  4 out  $0.0000

Time per top-level node, with its children (top 10)
  merge    3.00s  3 nodes  success
  fetch_a  2.00s   1 node  success
  fetch_b  1.00s   1 node  success
  report   1.00s   1 node  success

Critical path (5 nodes, 6.00s of 6.00s wall time, 100%)
  +0.0ms  2.00s  fetch_a        success
  +2.00s  3.00s  merge          success
  +2.00s  1.00s  merge > parse  success
  +3.00s  1.50s  merge > join   success
  +5.00s  1.00s  report         success
"""


def test_summary_text_shows_tokens_top_level_time_and_the_critical_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = runs.pipeline_trace(tmp_path / "pipeline")
    assert main(["summary", str(trace)]) == 0
    text = capsys.readouterr().out
    head, _, sections = text.partition("  tokens ")
    assert "  cost           $0.5000\n" in head
    assert (
        "  tokens "
        + sections.replace(f"  trace          {trace}\n", "").replace(
            "\nSlowest nodes (top 10)\n  merge    3.00s  success\n  fetch_a  2.00s  success\n"
            "  join     1.50s  success\n  fetch_b  1.00s  success\n  parse    1.00s  success\n"
            "  report   1.00s  success\n",
            "",
        )
        == PIPELINE_TEXT
    )


def test_summary_json_has_usage_top_level_nodes_and_the_critical_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = summary_json(runs.pipeline_trace(tmp_path / "pipeline"), capsys)
    assert s["usage_by_model"] == {
        "m-1": {"calls": 1, "input_tokens": 40, "output_tokens": 4, "cost_usd": 0.0},
        "m-2": {"calls": 1, "input_tokens": 90, "output_tokens": 0, "cost_usd": 0.5},
    }
    assert s["tokens"] == {"calls": 2, "input_tokens": 130, "output_tokens": 4, "cost_usd": 0.5}
    assert s["most_tokens"] == [
        {"node_id": "join", "input_tokens": 90, "output_tokens": 0, "cost_usd": 0.5},
        {"node_id": "parse", "input_tokens": 40, "output_tokens": 4, "cost_usd": 0.0},
    ]
    assert (s["nested"], s["has_dependencies"], s["top_level_nodes"]) == (True, True, 4)
    assert s["top_level"][0] == {
        "node_id": "merge",
        "seconds": 3.0,
        "node_seconds": 5.5,
        "nodes": 3,
        "status": "success",
    }
    assert [n["node_id"] for n in s["top_level"]] == ["merge", "fetch_a", "fetch_b", "report"]
    path = s["critical_path"]
    assert [
        (n["node_id"], n["path"], n["start_seconds"], n["duration_seconds"]) for n in path["nodes"]
    ] == [
        ("fetch_a", [], 0.0, 2.0),
        ("merge", [], 2.0, 3.0),
        ("parse", ["merge"], 2.0, 1.0),
        ("join", ["merge"], 3.0, 1.5),
        ("report", [], 5.0, 1.0),
    ]
    assert (path["seconds"], path["wall_seconds"], path["share"]) == (6.0, 6.0, 1.0)


def test_the_critical_path_leaves_gaps_it_cannot_explain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two nodes one after the other with no dependency named: the path is the last one."""
    seed = runs.SeedWriter(tmp_path / "seq", "wf", total_nodes=2)
    seed.node("first", 1, 2.0)
    seed.node("second", 2, 1.0)
    seed.complete()
    s = summary_json(tmp_path / "seq", capsys)
    path = s["critical_path"]
    assert [n["node_id"] for n in path["nodes"]] == ["second"]
    assert path["seconds"] == pytest.approx(1.0)
    assert path["wall_seconds"] == pytest.approx(3.03)
    assert (s["nested"], s["has_dependencies"]) == (False, False)
    assert main(["summary", str(tmp_path / "seq")]) == 0
    text = capsys.readouterr().out
    for section in ("Critical path", "Time per top-level", "Tokens and cost", "  tokens "):
        assert section not in text  # a flat run's summary reads as it did


def test_a_parent_that_never_ran_spans_its_children(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        {"event_type": "workflow_start", "epoch_seconds": 100.0, "total_nodes": 3},
        {"event_type": "node_start", "epoch_seconds": 101.0, "node_id": "a", "parent_id": "batch"},
        {"event_type": "node_start", "epoch_seconds": 102.0, "node_id": "b", "parent_id": "batch"},
        {"event_type": "node_success", "epoch_seconds": 103.0, "node_id": "a"},
        {"event_type": "node_start", "epoch_seconds": 103.0, "node_id": "c", "depends_on": ["a"]},
        {"event_type": "node_success", "epoch_seconds": 104.0, "node_id": "b"},
        {"event_type": "node_success", "epoch_seconds": 105.0, "node_id": "c"},
        {"event_type": "workflow_complete", "epoch_seconds": 105.0},
    ]
    trace = tmp_path / "trace.jsonl"
    trace.write_text(
        "".join(json.dumps({"pid": 1, "workflow_id": "wf", **e}) + "\n" for e in lines)
    )
    s = summary_json(trace, capsys)
    assert [(n["node_id"], n["seconds"], n["nodes"], n["status"]) for n in s["top_level"]] == [
        ("batch", 3.0, 3, "pending"),
        ("c", 2.0, 1, "success"),
    ]
    path = s["critical_path"]["nodes"]
    assert [(n["node_id"], n["path"], n["start_seconds"]) for n in path] == [
        ("a", ["batch"], 1.0),
        ("c", [], 3.0),
    ]
    assert s["critical_path"]["seconds"] == 4.0
