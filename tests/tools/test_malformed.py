"""Readers refuse bad traces with one line: every malformed trace makes every reading command
exit 2 with one line naming the file and line, never a traceback; fuzzed with hypothesis."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracebus
from tracebus import cli

from ..cli import TRACEBUS

COMMANDS: dict[str, tuple[str, ...]] = {
    "summary": ("summary",),
    "summary-json": ("summary", "--json"),
    "chrome": ("export", "--format", "chrome", "-o", "{out}/run.json"),
    "otlp": ("export", "--format", "otlp", "-o", "{out}/run.otlp.jsonl"),
    "timeline": ("timeline", "-o", "{out}/run.html"),
    "tail": ("tail", "--timeout", "0.2"),
}


def _events() -> list[dict[str, Any]]:
    """A run's trace lines, as the writer writes them."""
    base = {"pid": 7, "workflow_id": "wf", "run_id": "0" * 31 + "1", "schema_version": 1}

    def event(seq: int, kind: str, epoch: float, **fields: Any) -> dict[str, Any]:
        stamp = f"2026-01-01T00:00:{seq:02d}.000000+00:00"
        return {"event_type": kind, "timestamp": stamp, "epoch_seconds": epoch, **base,
                "seq": seq, "producer": None, **fields}  # fmt: skip

    return [
        event(1, "workflow_start", 1.0e9, message="started", total_nodes=2, output_dir="out"),
        event(2, "node_start", 1.0e9 + 1, node_id="a", node_index=0),
        event(
            3,
            "node_success",
            1.0e9 + 2,
            node_id="a",
            node_index=0,
            duration_seconds=1.0,
            output_hash="abcd",
            output_summary={"rows": 3},
            cost_usd=0.5,
        ),  # fmt: skip
        event(
            4,
            "node_failure",
            1.0e9 + 3,
            node_id="b",
            node_index=1,
            duration_seconds=0.5,
            error="boom",
            cost_usd=0.0,
        ),  # fmt: skip
        event(5, "note", 1.0e9 + 4, message="tokens", node_id="a", fields={"tokens": 12}),
        event(
            6,
            "node_retry",
            1.0e9 + 5,
            node_id="b",
            node_index=1,
            attempt=2,
            error="x",
            delay_seconds=0.1,
        ),  # fmt: skip
        event(
            7,
            "workflow_complete",
            1.0e9 + 6,
            cumulative_cost_usd=0.5,
            nodes_completed=1,
            nodes_failed=1,
            nodes_skipped=0,
            total_time_seconds=6.0,
            trace_file="t",
            log_file="l",
            node_times={"a": 1.0, "b": 0.5},
        ),  # fmt: skip
    ]


def _write(directory: Path, lines: list[bytes]) -> Path:
    trace = directory / "trace.jsonl"
    trace.write_bytes(b"".join(line + b"\n" for line in lines))
    return trace


def _run(command: str, trace: Path) -> tuple[int, str, str]:
    """``tracebus <command> <trace>`` in this process: exit code, stdout, stderr."""
    args = [part.format(out=trace.parent) for part in COMMANDS[command]]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main([args[0], str(trace), *args[1:]])
    return code, stdout.getvalue(), stderr.getvalue()


def _assert_refused(command: str, trace: Path, line: int, why: str) -> None:
    code, _, stderr = _run(command, trace)
    assert code == 2, (command, stderr)
    assert stderr.count("\n") == 1, stderr
    assert stderr.startswith(f"tracebus {COMMANDS[command][0]}: error: {trace}:{line}: "), stderr
    assert why in stderr


def _lines(**changes: Any) -> list[bytes]:
    """The run's lines, with line 3 (the node_success) changed."""
    events = _events()
    events[2].update(changes)
    return [json.dumps(event).encode() for event in events]


BAD_LINES: dict[str, tuple[list[bytes], str]] = {
    "epoch of 1e300": (_lines(epoch_seconds=1e300), "epoch_seconds is out of range (1e+300)"),
    "negative epoch": (_lines(epoch_seconds=-5.0), "epoch_seconds is out of range"),
    "cost of 10**400": (_lines(cost_usd=10**400), "cost_usd is out of range (1000"),
    "cost as text": (_lines(cost_usd="0.5"), "cost_usd is not a number"),
    "duration of true": (_lines(duration_seconds=True), "duration_seconds is not a number"),
    "index past 64 bits": (_lines(node_index=2**64), "node_index is out of range"),
    "list as node id": (_lines(node_id=["a"]), "node_id is not a string"),
    "number as event type": (_lines(event_type=3), "event_type is not a string"),
    "fields not an object": (_lines(fields=[1, 2]), "fields is not an object"),
    "node time as text": (_lines(node_times={"a": "1s"}), "node_times holds a time that is not"),
    "deep nesting": (_lines(output_summary=json.loads("[" * 900 + "]" * 900)), "nests 901 levels"),
    "very deep nesting": (
        [*_lines()[:2], b'{"output_summary":' + b"[" * 5000 + b"]" * 5000 + b"}", *_lines()[3:]],
        "nests 5001 levels deep",
    ),
    "NaN": ([*_lines()[:2], _lines()[2].replace(b"1.0,", b"NaN,", 1), *_lines()[3:]], "JSON"),
    "an array": ([*_lines()[:2], b"[1, 2, 3]", *_lines()[3:]], "not a JSON object"),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", BAD_LINES)
def test_a_malformed_line_is_refused_by_every_reader_with_one_line(
    tmp_path: Path, command: str, case: str
) -> None:
    lines, why = BAD_LINES[case]
    _assert_refused(command, _write(tmp_path, lines), 3, why)


def test_the_last_line_is_refused_too_when_it_is_whole_json(tmp_path: Path) -> None:
    events = _events()
    events[-1]["epoch_seconds"] = 1e300
    trace = _write(tmp_path, [json.dumps(event).encode() for event in events])
    for command in COMMANDS:
        _assert_refused(command, trace, 7, "epoch_seconds is out of range")
    with pytest.raises(tracebus.TraceFormatError, match=r"trace.jsonl:7: epoch_seconds"):
        list(tracebus.read_trace(trace))


def test_a_malformed_trace_read_from_a_shell_gives_one_line_and_exit_2(tmp_path: Path) -> None:
    trace = _write(tmp_path, BAD_LINES["epoch of 1e300"][0])
    for command in ("summary", "timeline", "tail"):
        done = subprocess.run(
            [*TRACEBUS, command, str(trace)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert done.stderr.splitlines() == [
            f"tracebus {command}: error: {trace}:3: epoch_seconds is out of range (1e+300)"
        ]


def test_extreme_values_within_the_rules_are_read(tmp_path: Path) -> None:
    lines = _lines(
        duration_seconds=1e15,
        cost_usd=-1e15,
        output_summary={
            "big": 10**400,
            "tiny": 5e-324,
            "text": "\x1b[2J\udcff".encode("utf-8", "backslashreplace").decode(),
        },  # fmt: skip
        node_index=2**63 - 1,
    )
    trace = _write(tmp_path, lines)
    for command in COMMANDS:
        code, stdout, stderr = _run(command, trace)
        assert code == 0, (command, stderr)
        assert "\x1b" not in stdout


# -- fuzzing ----------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
EXTREMES = st.sampled_from(
    [10**400, -(10**400), 2**64, 2**63, -(2**63) - 1, 1e300, -1e300, 1.7e308, 5e-324, -0.0, 1e16]
)
VALUES = EXTREMES | JSON_VALUES
FIELDS = st.sampled_from(
    sorted({name for event in _events() for name in event} | {"extra", "reason", "unknown"})
)
GARBAGE = st.binary(max_size=60).map(lambda raw: raw.replace(b"\n", b" "))


@st.composite
def traces(draw: st.DrawFn) -> list[bytes]:
    events = _events()
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        event = events[draw(st.integers(min_value=0, max_value=len(events) - 1))]
        event[draw(FIELDS)] = draw(VALUES)
    lines = [json.dumps(event).encode() for event in events]
    if draw(st.booleans()):
        lines.insert(draw(st.integers(min_value=0, max_value=len(lines))), draw(GARBAGE))
    if draw(st.booleans()):
        depth = draw(st.integers(min_value=1, max_value=3_000))
        lines.append(b'{"event_type":"note","fields":' + b"[" * depth + b"]" * depth + b"}")
    return lines


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=traces())
def test_fuzzed_traces_give_exit_0_or_one_line_and_exit_2(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        trace = _write(Path(directory), lines)
        try:
            list(tracebus.read_trace(trace))
        except tracebus.TraceFormatError as exc:
            malformed: str | None = str(exc)
        else:
            malformed = None
        for command in COMMANDS:
            code, stdout, stderr = _run(command, trace)
            if malformed is not None and command != "tail":
                where = re.match(r".*?:\d+: ", malformed)  # the file and line it names
                assert where is not None, malformed
                assert code == 2 and stderr.count("\n") == 1, (command, stderr)
                assert stderr.startswith(f"tracebus {COMMANDS[command][0]}: error: {where[0]}")
            elif command == "tail":  # it may stop first at the end of what is there
                assert code in (0, 1, 2), (command, stderr)
                if code == 2:
                    assert re.fullmatch(rf"tracebus tail: error: {re.escape(str(trace))}:\d+: .*\n",
                                        stderr), stderr  # fmt: skip
            else:
                assert code == 0, (command, stderr)


def test_a_malformed_metadata_file_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    audit = tmp_path / "audit" / "step_00"
    audit.mkdir(parents=True)
    trace = audit / "trace_00.jsonl"
    trace.write_bytes(b"".join(json.dumps(event).encode() + b"\n" for event in _events()))
    for metadata in (
        "[" * 5000 + "]" * 5000,
        json.dumps({"total_nodes": 10**400, "events_dropped": 10**400, "status": [1]}),
        "{not json",
    ):
        (audit / "metadata_00.json").write_text(metadata)
        for command in COMMANDS:
            code, _, stderr = _run(command, trace)
            assert code == 0, (command, metadata[:30], stderr)
