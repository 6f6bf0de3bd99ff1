"""The one-pass readers: ``summary`` streams the trace and keeps only its figures' state, and
says what the whole-run reader (``summarize(read_run(...))``) says about every run."""

from __future__ import annotations

import fcntl
import json
import os
import struct
import subprocess
import sys
import termios
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tracebus
from tests.conftest import Quiet
from tracebus._tools._summary import summarize
from tracebus._tools.cli import LARGE_TRACE_BYTES
from tracebus.cli import main

from ..cli import TRACEBUS, run_tracebus
from . import runs
from .browser import page_data


def _summary(run: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    main(["summary", str(run), "--json"])
    figures: dict[str, Any] = json.loads(capsys.readouterr().out)
    return figures


def _line(kind: str, epoch: float | None, **fields: Any) -> str:
    event = {"event_type": kind, "pid": 9, "workflow_id": "wf", "run_id": "r", **fields}
    if epoch is not None:
        event["epoch_seconds"] = epoch
    return json.dumps(event)


def _odd_trace(out: Path) -> Path:
    """Attempts without starts, starts never ended, equal and empty spans, a node seen
    only in a retry, an unknown event type, an event without a time, an earlier run."""
    lines = [
        _line("workflow_start", 5.0, total_nodes=1, message="old run", timestamp="t0"),
        _line("node_start", 5.5, node_id="gone"),
        _line("workflow_start", 10.0, total_nodes=3, message="m", timestamp="t1"),
        _line("node_start", 10.0, node_id="a", node_index=0),
        _line("node_start", 10.0, node_id="b", node_index=1),
        _line("node_success", 10.0, node_id="b", duration_seconds=0.0, cost_usd=0.25),
        _line("node_success", 12.0, node_id="c", duration_seconds=1.5, cost_usd=0.5),
        _line("node_failure", 13.0, node_id="a", duration_seconds=3.0, error="E: one"),
        _line("node_retry", 13.5, node_id="a", attempt=2, error="E: one"),
        _line("node_start", 14.0, node_id="a"),
        _line("node_start", 14.0, node_id="a"),
        _line("node_failure", 15.0, node_id="a", duration_seconds=1.0, error="E: two"),
        _line("node_retry", 15.5, node_id="only_retried", attempt=2),
        _line("node_skipped", 16.0, node_id="d", reason="cached"),
        _line("gpu_sample", 16.5, node_id="a", util=0.9),
        _line("note", None, message="no clock"),
        _line("node_failure", 17.0, node_id="e", duration_seconds=2.0, error="E: three"),
        _line("node_success", 18.0, node_id="e", duration_seconds=1.0),
        _line("node_success", 19.0, node_id="f", duration_seconds=0.5, cost_usd=0.125),
        _line("node_start", 19.5, node_id="f"),
    ]
    trace = out / "trace.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    trace.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return trace


RUNS: dict[str, Callable[[Path], Path]] = {
    "success": runs.success_run,
    "failure": runs.failure_run,
    "error": runs.error_run,
    "retry": runs.retry_run,
    "empty": runs.empty_run,
    "torn": runs.torn_run,
    "seed": runs.seed_run,
    "synthetic": lambda out: runs.synthetic_run(out, 300, 7, fail_every=11),
    "odd": _odd_trace,
    "agent": runs.agent_run,
    "pipeline": runs.pipeline_trace,
}


@pytest.mark.parametrize("name", RUNS)
def test_streamed_summary_is_the_whole_run_summary(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = RUNS[name](tmp_path / name)
    assert _summary(run, capsys) == json.loads(json.dumps(summarize(tracebus.read_run(run))))


def test_odd_trace_reads_as_its_last_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = _summary(_odd_trace(tmp_path / "odd"), capsys)
    assert figures["nodes_seen"] == 7 and figures["total_nodes"] == 7
    assert (figures["nodes_failed"], figures["nodes_unfinished"]) == (0, 3)
    assert figures["peak_in_flight"] == 3  # at 16.0: a still running, e, and d's empty span
    assert figures["cost_usd"] == pytest.approx(0.875)  # incomplete: the nodes' costs
    assert [c["node_id"] for c in figures["costliest"]] == ["c", "b", "f"]
    assert figures["warnings"] == [
        "the trace holds 2 runs; reading the last one (started t1)",
        "events of unknown types kept as raw data: gpu_sample",
        "1 event(s) without a numeric epoch_seconds",
    ]


def test_read_run_events_are_read_again_not_held(tmp_path: Path) -> None:
    trace = _odd_trace(tmp_path / "odd")
    run = tracebus.read_run(trace)
    last_run = list(tracebus.read_trace(trace))[2:]
    assert len(run.events) == len(last_run) == 18
    assert list(run.events) == last_run and run.events == tuple(last_run)
    assert run.events[0]["message"] == "m" and run.events[-1]["node_id"] == "f"
    assert [e["event_type"] for e in run.unknown_events] == ["gpu_sample"]
    assert not isinstance(run.events, tuple | list)


_CAPPED = textwrap.dedent(
    """
    import resource, sys
    cap = int(sys.argv[1]) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    from tracebus.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)
#: Address space for reading a 100,000-node run: the readers that held every event as a dict
#: needed about 470 MiB for its summary; these need about 130 MiB, 160 MiB for the exports.
#: A diff of the run with itself holds both sides' columns and fits too.
CAP_MIB = 256


def test_summary_export_diff_and_timeline_of_a_100k_node_run_fit_under_a_memory_cap(
    tmp_path: Path,
) -> None:
    nodes = 100_000
    out = tmp_path / "big"
    with Quiet.SyncObserver("step_09_wide", out, total_nodes=nodes) as obs:
        for index in range(nodes):
            node_id = f"node_{index:06d}"
            obs.node_start(node_id, index)
            if index % 1000 == 999:
                obs.node_failure(node_id, f"ValueError: row {index}", 0.002)
            else:
                obs.node_success(node_id, 0.001, "ab12cd34ef56ab78", {"rows": index}, 0.0001)
    done = _capped("summary", "--json", str(out))
    figures = json.loads(done.stdout)
    assert (figures["nodes_completed"], figures["nodes_failed"]) == (99_900, 100)
    assert figures["total_nodes"] == nodes and figures["status"] == "complete"
    assert len(figures["failures"]) == 100 and figures["failures"][0]["node_id"] == "node_000999"
    assert figures["cost_usd"] == pytest.approx(99_900 * 0.0001)
    chrome = tmp_path / "run.json"
    done = _capped("export", str(out), "--format", "chrome", "-o", str(chrome))
    assert done.stdout == f"wrote {chrome} ({nodes + 6} trace events)\n"
    events = json.loads(chrome.read_bytes())["traceEvents"]
    bars = [e for e in events if e["ph"] == "X" and e["cat"] != "workflow"]
    assert len(bars) == nodes and sum(e["cat"] == "node,failed" for e in bars) == 100
    done = _capped("diff", "--json", str(out), str(out), "--check=hash,fail,slower")
    diff = json.loads(done.stdout)
    assert diff["totals"]["nodes_failed"] == {"a": 100, "b": 100, "delta": 0}
    assert diff["check"]["tripped"] == [] and diff["output_changed"] == []
    page = tmp_path / "run.html"
    done = _capped("timeline", str(out), "-o", str(page))
    assert done.stdout == f"wrote {page} (timeline of {nodes} node attempt(s))\n"
    assert page_data(page)["nodes"]["id"][-1] == "node_099999"
    otlp = tmp_path / "run.otlp.jsonl"
    done = _capped("export", str(out), "--format", "otlp", "-o", str(otlp))
    assert done.stdout == f"wrote {otlp} ({nodes + 1} spans in 101 line(s))\n"


def _capped(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-c", _CAPPED, str(CAP_MIB), *args],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _wide_run(out: Path, nodes: int) -> Path:
    with Quiet.SyncObserver("step_10_bar", out, total_nodes=nodes) as obs:
        for index in range(nodes):
            obs.node_start(f"node_{index:06d}", index)
            obs.node_success(f"node_{index:06d}", 0.001, "ab12cd34ef56ab78", {"i": index}, 0.0)
    return out


def _stderr_on_a_terminal(*args: str) -> tuple[int, str, str]:
    """``tracebus ARGS`` with stderr on a pseudo-terminal: exit code, stdout, stderr."""
    primary, secondary = os.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    with subprocess.Popen([*TRACEBUS, *args], stdout=subprocess.PIPE, stderr=secondary) as child:
        os.close(secondary)
        seen = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal closed with the child
                break
            if not chunk:
                break
            seen += chunk
        stdout = child.stdout.read().decode() if child.stdout else ""
        code = child.wait()
    os.close(primary)
    return code, stdout, seen.decode(errors="replace")


def test_a_large_trace_shows_progress_on_a_terminal_and_never_in_pipes(tmp_path: Path) -> None:
    out = _wide_run(tmp_path / "wide", 30_000)
    (trace,) = out.glob("traces/*.jsonl")
    assert trace.stat().st_size > LARGE_TRACE_BYTES
    code, stdout, stderr = _stderr_on_a_terminal("summary", str(out))
    assert code == 0 and "30000 completed" in stdout
    assert f"\rreading {trace.name}:   0%|" in stderr  # bytes read of the size
    assert stderr.endswith("\r") and "B/s]" in stderr  # and cleared at the end
    code, _, stderr = _stderr_on_a_terminal("summary", "--json", str(out))
    assert code == 0 and stderr == ""
    piped = run_tracebus("timeline", out, "-o", tmp_path / "p.html")
    assert piped.returncode == 0 and piped.stderr == ""


def test_a_value_split_over_two_lines_is_refused_even_beside_a_line_of_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # as many values as lines, but line 2 and line 3 are not JSON objects each
    trace = tmp_path / "trace.jsonl"
    trace.write_text(
        _line("workflow_start", 1.0, total_nodes=0, message="m") + "\n"
        '{"event_type": "note", "epoch_seconds": 2.0, "fields": {"x": [1,\n'
        '2]}, "message": "split"}\n'
        + _line("note", 3.0, message="a")
        + " "
        + _line("note", 4.0, message="b")
        + "\n"
        + _line("workflow_complete", 5.0)
        + "\n",
        encoding="utf-8",
    )
    assert main(["summary", str(trace)]) == 2
    assert capsys.readouterr().err.startswith(f"tracebus summary: error: {trace}:2: not a JSON")


def test_every_event_type_of_the_schema_is_known_to_the_readers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tracebus._events import TRACE_EVENT_TYPES

    trace = tmp_path / "trace.jsonl"
    lines = [_line(kind, 1.0 + n) for n, kind in enumerate(TRACE_EVENT_TYPES)]
    trace.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    figures = _summary(trace, capsys)
    assert not [w for w in figures["warnings"] if "unknown types" in w]
