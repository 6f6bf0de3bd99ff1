"""``summary --totals``: the totals from the metadata where they are provably the trace's,
else from the trace, saying why."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Quiet
from tracebus._tools._fast import TOTALS
from tracebus.cli import main

from . import runs

FROM_METADATA = "metadata (--totals): complete, and of the trace as it is now"


def _summary(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main(["summary", *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if "--json" in args else out), err


def _full_totals(run: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    _, full, _ = _summary(capsys, str(run), "--json")
    return {key: full[key] for key in TOTALS}


def _many_run(out: Path) -> Path:
    """Nodes that fail, retry, are skipped, or report usage; the workflow completes."""
    with Quiet.SyncObserver("step_13_many", out, total_nodes=300) as obs:
        for index in range(300):
            node = f"n{index:03d}"
            obs.node_start(node, index)
            if index % 10 == 3:
                obs.node_retry(node, 2, "TimeoutError: slow", 0.0)
                obs.node_start(node, index)
            if index % 17 == 4:
                obs.node_failure(node, "ValueError: no", 0.01)
            elif index % 23 == 5:
                obs.node_skipped(node, "cached")
            else:
                obs.usage("small", 10, 2, 0.00001, node_id=node)
                obs.node_success(node, 0.01, None, None, 0.001 * (index % 7))
    return out


RUNS: dict[str, Callable[[Path], Path]] = {
    "success": runs.success_run,
    "failed nodes": runs.failure_run,
    "retries": runs.retry_run,
    "error": runs.error_run,
    "usage": runs.agent_run,
    "many": _many_run,
}


@pytest.mark.parametrize("kind", RUNS)
def test_totals_from_the_metadata_are_the_full_reads(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = RUNS[kind](tmp_path / "run")
    code, totals, err = _summary(capsys, str(out), "--totals", "--json")
    assert err == "" and totals["source"] == FROM_METADATA
    assert {key: totals[key] for key in TOTALS} == _full_totals(out, capsys)
    assert set(totals) == {*TOTALS, "source"}  # no wall time, no per-node figures
    assert code == 0


def test_the_metadata_records_the_traces_size_and_events(tmp_path: Path) -> None:
    out = _many_run(tmp_path / "run")
    trace = runs.only_trace(out)
    (metadata_file,) = (out / "audit").glob("step_*/metadata_*.json")
    metadata = json.loads(metadata_file.read_text())
    assert metadata["trace_bytes"] == os.path.getsize(trace)
    assert metadata["events_written"] == len(trace.read_bytes().splitlines())


def _cut_last_line(trace: Path) -> None:
    lines = trace.read_bytes().splitlines(keepends=True)
    trace.write_bytes(b"".join(lines[:-1]))


def _append_a_note(trace: Path) -> None:
    with open(trace, "ab") as handle:
        handle.write(b'{"event_type":"note","epoch_seconds":1796195485.5,"message":"later"}\n')


@pytest.mark.parametrize("change", [_cut_last_line, _append_a_note])
def test_a_trace_changed_after_close_is_read_in_full(
    change: Callable[[Path], None], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = runs.failure_run(tmp_path / "run")
    trace = runs.only_trace(out)
    before = trace.stat().st_size
    change(trace)
    code, totals, err = _summary(capsys, str(out), "--totals", "--json")
    assert err == (
        "tracebus summary: reading the trace: the trace changed since its metadata was "
        f"written ({before} bytes then, {trace.stat().st_size} now)\n"
    )
    assert totals["source"] == "trace (--totals)"
    assert {key: totals[key] for key in TOTALS} == _full_totals(out, capsys)
    assert "bytes then" not in json.dumps(totals)  # the why is on stderr alone
    assert code == 0
    if change is _cut_last_line:
        assert totals["status"] == "incomplete"


def _rewrite_metadata(out: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    (metadata_file,) = (out / "audit").glob("step_*/metadata_*.json")
    metadata = json.loads(metadata_file.read_text())
    edit(metadata)
    metadata_file.write_text(json.dumps(metadata))


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda m: m.pop("trace_bytes"), "its metadata does not record the trace's size"),
        (lambda m: m.update(events_dropped=3), "its metadata records 3 event(s) dropped"),
        (lambda m: m.update(status="incomplete"), "its metadata is not complete"),
    ],
)
def test_metadata_that_cannot_vouch_for_the_trace_is_not_used(
    edit: Callable[[dict[str, Any]], None],
    why: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = runs.retry_run(tmp_path / "run")
    _rewrite_metadata(out, edit)
    code, totals, err = _summary(capsys, str(out), "--totals", "--json")
    assert err.startswith(f"tracebus summary: reading the trace: {why}")
    assert err.count("\n") == 1
    assert totals["source"] == "trace (--totals)"
    assert {key: totals[key] for key in TOTALS} == _full_totals(out, capsys)
    assert code == 0


def test_a_seed_run_is_read_and_says_why(
    seed_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text, err = _summary(capsys, str(seed_dir), "--totals")
    assert err.startswith("tracebus summary: reading the trace: ")
    assert "  figures from   trace (--totals)" in text
    assert code == 0


def test_text_totals_leave_out_what_the_metadata_cannot_give(
    failure_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text, err = _summary(capsys, str(failure_dir), "--totals", "--check")
    assert (code, err) == (1, "")  # --check: two nodes failed
    assert "status         complete (2 failed nodes)" in text
    assert "  figures from   metadata (--totals): complete, and of the trace as it is now" in text
    for row in ("wall time", "node time", "parallelism", "peak in flight", "Failures"):
        assert row not in text


def test_fast_on_a_changed_trace_answers_and_warns(
    failure_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = runs.only_trace(failure_dir)
    before = trace.stat().st_size
    _append_a_note(trace)
    code, fast, _ = _summary(capsys, str(failure_dir), "--fast", "--json")
    assert fast["source"].startswith("metadata (--fast)")
    assert fast["warnings"] == [
        "--fast: the trace changed since its metadata was written "
        f"({before} bytes then, {trace.stat().st_size} now)"
    ]
    assert code == 0


def test_fast_and_totals_are_not_asked_together(
    failure_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["summary", str(failure_dir), "--fast", "--totals"])
    assert exit_.value.code == 2
    assert "argument --totals: not allowed with argument --fast" in capsys.readouterr().err
