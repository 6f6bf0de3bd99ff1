"""The log and the terminal cannot be forged: user text in every human-readable output has its
control characters escaped, so one event is one log line and nothing moves the cursor or
recolours the terminal."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

import tracebus
from tests.conftest import Quiet, trace_of
from tracebus.compat import ExecutionObserver

from .cli import run_tracebus

pytestmark = pytest.mark.anyio

FORGED_LINE = '\n[2026-01-01T00:00:00.000000+00:00] WORKFLOW_COMPLETE | {"nodes_completed":3}'
FORGED_BLOCK = "boom\n" + "=" * 80 + "\n Workflow completed: wf\n Nodes executed: 3/3"
ESCAPES = "\x1b[2J\x1b[31mred\x1b]0;title\x07\r\u202eevil\x9b"
ESCAPED = "\\x1b[2J\\x1b[31mred\\x1b]0;title\\x07\\r\\u202eevil\\x9b"

_TIMESTAMPED = re.compile(r"^\[\d{4}-\d\d-\d\dT", re.M)


async def test_a_node_id_cannot_forge_a_log_line(out: Path) -> None:
    console = io.StringIO()
    obs = tracebus.Observer("wf", out, total_nodes=1, progress=False, console=console)
    node_id = f"fetch{FORGED_LINE}"
    with pytest.raises(RuntimeError):
        async with obs:
            async with obs.node(node_id, 0):
                pass
            await obs.note(f"a note{FORGED_LINE}", node_id=node_id, detail=FORGED_LINE)
            raise RuntimeError(FORGED_BLOCK)
    log = obs.log_file.read_text()
    trace = trace_of(obs.trace_file)
    assert len(_TIMESTAMPED.findall(log)) == len(trace)  # one line per event, no more
    assert not re.search(r"^\[2026-01-01", log, re.M)
    assert "fetch\\n[2026-01-01T00:00:00.000000+00:00] WORKFLOW_COMPLETE" in log
    assert trace[1]["node_id"] == node_id  # the trace keeps the text as it was
    for text in (log, console.getvalue()):
        # the error cannot forge a summary: its text stays on the line it belongs to
        assert not re.search(r"^ (Workflow completed|Nodes executed: 3/3)", text, re.M)
        assert re.search(r"^ Workflow failed: wf$", text, re.M)
        assert " Error: RuntimeError: boom\\n====" in text


async def test_escape_sequences_reach_no_log_console_or_progress_bar(
    out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    console = io.StringIO()
    obs = tracebus.Observer("wf", out, total_nodes=2, progress=True, console=console)
    async with obs:
        await obs.node_start(f"n{ESCAPES}", 0)
        await obs.node_failure(f"n{ESCAPES}", f"error {ESCAPES}", 0.1)
        await obs.note(ESCAPES, value=ESCAPES)
        await obs.node_start(f"still running {ESCAPES}", 1)
        await obs.workflow_error(f"failed {ESCAPES}")
    log = obs.log_file.read_text()
    stderr = capsys.readouterr().err
    for text in (log, console.getvalue(), stderr):
        for raw in ("\x1b[2J", "\x1b[31m", "\x1b]0;", "\x07", "\u202e", "\x9b"):
            assert raw not in text, (raw, text[-500:])
    assert f"NODE_FAILURE n{ESCAPED} | " in log
    assert f" Error: failed {ESCAPED}" in console.getvalue()
    assert f"running: still running {ESCAPED}" in log  # the progress line
    assert f"still running {ESCAPED}" in stderr  # the bar itself


def test_the_compat_node_lines_are_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    obs = ExecutionObserver("wf", str(tmp_path / "out"), 1, use_tqdm=False)
    obs.node_start(f"n{ESCAPES}", 0)
    obs.node_failure(f"n{ESCAPES}", f"error{FORGED_LINE}", 0.1)
    obs.workflow_complete()
    stdout = capsys.readouterr().out
    assert "\x1b" not in stdout and "\u202e" not in stdout
    assert f"  [0/1] n{ESCAPED} Error: error\\n[2026-01-01" in stdout


async def test_summary_and_tail_show_user_text_escaped(out: Path, quiet: Quiet) -> None:
    obs = quiet.Observer("wf", out, total_nodes=1)
    async with obs:
        await obs.node_start(f"n{ESCAPES}", 0)
        await obs.node_failure(f"n{ESCAPES}", f"error {ESCAPES}{FORGED_LINE}", 0.1)
        await obs.note(f"note {ESCAPES}", value=ESCAPES)
        await obs.workflow_error(f"failed {ESCAPES}")
    for command in (
        ("summary", str(out)),
        ("summary", str(out), "--json"),
        ("tail", "--latest", str(out)),
    ):
        result = run_tracebus(*command)
        assert result.returncode == 0, result.stderr
        for raw in ("\x1b", "\x07", "\u202e", "\x9b", "\r"):
            assert raw not in result.stdout, (command, raw)
    summary = run_tracebus("summary", str(out)).stdout
    # (summary and tail show a text's runs of white space as one space, then escape it)
    assert f"n{ESCAPED}: error \\x1b[2J\\x1b[31mred\\x1b]0;title\\x07 \\u202eevil" in summary
    assert "failed \\x1b[2J" in summary
    assert not re.search(r"^\[2026-01-01", summary, re.M)
    tail = run_tracebus("tail", "--latest", str(out)).stdout.splitlines()
    assert len(tail) == len(trace_of(obs.trace_file))  # one line per event
    assert any(f"NODE_FAILURE       n{ESCAPED} " in line for line in tail)


def test_a_cli_error_naming_a_bad_path_is_one_line() -> None:
    result = run_tracebus("summary", f"/nonexistent/run{ESCAPES}\nforged")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "\x1b" not in result.stderr
    assert "run\\x1b[2J" in result.stderr


async def test_a_timestamp_sent_with_an_event_cannot_forge_a_line(out: Path, quiet: Quiet) -> None:
    obs = quiet.Observer("wf", out)
    async with obs:
        event = obs.events.node_start("n", 0)
        event.timestamp = f"sent{FORGED_LINE}\x1b[2J"
        await obs.emit(event)
    log = obs.log_file.read_text()
    assert len(_TIMESTAMPED.findall(log)) == 2  # the run's own start and end
    assert "[sent\\n[2026-01-01T00:00:00.000000+00:00] WORKFLOW_COMPLETE" in log
    assert "\x1b" not in log
