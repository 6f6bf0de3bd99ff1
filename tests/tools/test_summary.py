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
