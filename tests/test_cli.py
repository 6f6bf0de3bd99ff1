from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from tests.conftest import assert_consistent_run, trace_of
from tracebus import cli

from .cli import run_tracebus


def test_demo_runs_a_workflow_and_says_where_its_files_are(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = run_tracebus(
        "demo",
        "--nodes",
        "60",
        "--concurrency",
        "6",
        "--fail-rate",
        "0.2",
        "--out",
        str(out),
        "--seed",
        "7",
    )
    assert result.returncode == 0, result.stderr
    assert "[RUN] Executing: demo_workflow" in result.stdout
    assert "Workflow completed: demo_workflow" in result.stdout
    trace_line = next(line for line in result.stdout.splitlines() if "trace:" in line)
    trace_file = Path(trace_line.split("trace:", 1)[1].strip())
    assert trace_file.parent == out / "traces"
    metadata = json.loads((out / "audit" / "step_00" / "metadata_00.json").read_text())
    trace = trace_of(trace_file)
    assert_consistent_run(trace, metadata)
    assert metadata["nodes_completed"] + metadata["nodes_failed"] == 60
    assert metadata["nodes_failed"] > 0  # 20% of 60 nodes
    assert "Executing demo_workflow" in result.stderr  # the progress bar


def test_slow_demo_nodes_take_longer_than_a_demo_node_can(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = ("--nodes", "1", "--concurrency", "1", "--seed", "32", "--no-progress", "--out")
    result = run_tracebus("demo", "--slow", *args, str(out))
    assert result.returncode == 0, result.stderr
    assert "Workflow completed: demo_workflow" in result.stdout
    (trace,) = out.glob("traces/*.jsonl")
    (ended,) = [e for e in trace_of(trace) if e["event_type"] in ("node_success", "node_failure")]
    # seed 32's node sleeps 0.31s of the 4s a slow node may; a demo node sleeps 0.05s at most
    assert ended["duration_seconds"] > cli.FAST_NODE_SECONDS
    assert cli.SLOW_NODE_SECONDS / cli.FAST_NODE_SECONDS >= 50


def test_demo_rejects_bad_arguments_with_exit_code_2(tmp_path: Path) -> None:
    result = run_tracebus("demo", "--nodes", "0", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "--nodes: must be at least 1, got 0" in result.stderr
    result = run_tracebus("demo", "--fail-rate", "1.5", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "must be between 0 and 1" in result.stderr


def test_unwritable_output_is_a_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_tracebus("demo", "--nodes", "3", "--out", str(blocker / "runs"))
    assert result.returncode == 2
    assert result.stderr.startswith("tracebus demo: error: ")
    assert "Traceback" not in result.stderr


def test_an_error_without_a_message_is_named_by_its_type(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def times_out(args: argparse.Namespace) -> int:
        raise TimeoutError

    monkeypatch.setattr(cli, "_demo", times_out)
    assert cli.main(["demo"]) == 2
    assert capsys.readouterr().err == "tracebus demo: error: TimeoutError\n"
