from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

from tests.conftest import Quiet
from tracebus import read_run
from tracebus._tools._tail_text import format_event

from ..cli import TRACEBUS
from . import runs

WAIT = 60.0


class Tail:
    """``python -m tracebus tail ...`` in a subprocess, its output and error lines read by
    threads."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [*TRACEBUS, "tail", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self.lines = _LineReader(self.process.stdout)
        self.errors = _LineReader(self.process.stderr)

    def next_line(self) -> str:
        return self.lines.next()

    def next_error(self) -> str:
        return self.errors.next()

    def finish(self) -> tuple[int, list[str], str]:
        """Wait for the process to end: its exit code, remaining lines and stderr."""
        code = self.process.wait(timeout=WAIT)
        return code, self.lines.rest(), "".join(line + "\n" for line in self.errors.rest())


class _LineReader:
    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def next(self) -> str:
        line = self._lines.get(timeout=WAIT)
        assert line is not None, "tail ended early"
        return line

    def rest(self) -> list[str]:
        self._thread.join(timeout=WAIT)
        rest: list[str] = []
        while (line := self._lines.get_nowait()) is not None:
            rest.append(line)
        self._stream.close()
        return rest


@contextmanager
def tail(*args: str) -> Iterator[Tail]:
    follower = Tail(*args)
    try:
        yield follower
    finally:
        if follower.process.poll() is None:
            follower.process.kill()
            follower.finish()


def test_follows_a_live_run_until_it_completes(tmp_path: Path, quiet: Quiet) -> None:
    out = tmp_path / "live"
    obs = quiet.SyncObserver("step_09_live", out, total_nodes=2)
    with tail(str(out), "--check") as follower:
        try:
            obs.flush()
            assert "workflow_start     step_09_live: 2 nodes (run " in follower.next_line()
            obs.node_start("a", 0)
            obs.node_success("a", 0.25, "abcd", None, 0.5)
            obs.flush()
            assert follower.next_line().endswith("node_start         a [0]")
            assert follower.next_line().endswith("node_success       a 250.0ms $0.500000 hash abcd")
            obs.node_start("b", 1)
            obs.node_failure("b", "ValueError: no\nmore", 0.002)
        finally:
            obs.close()
        code, rest, err = follower.finish()
    assert rest[0].endswith("node_start         b [1]")
    assert rest[1].endswith("NODE_FAILURE       b 2.0ms: ValueError: no more")
    assert "workflow_complete  1 succeeded, 1 failed, 0 skipped in" in rest[2]
    assert len(rest) == 3
    assert code == 1 and err == ""  # --check: a node failed


def test_partial_line_is_held_until_complete(tmp_path: Path) -> None:
    seed = runs.SeedWriter(tmp_path / "seed", "wf", total_nodes=1)
    common = {"pid": 1, "workflow_id": "wf", "node_id": "n"}
    start = {"event_type": "node_start", "epoch_seconds": seed.tick(1), "node_index": 4, **common}
    success = {"event_type": "node_success", "epoch_seconds": seed.tick(1), **common}
    success["duration_seconds"] = 1.0
    second = json.dumps(success) + "\n"
    with tail(str(seed.trace)) as follower:
        assert "workflow_start" in follower.next_line()
        seed.write(json.dumps(start) + "\n" + second[:20])
        assert follower.next_line().endswith("node_start         n [4]")
        seed.write(second[20:])
        seed.complete()
        code, rest, _ = follower.finish()
    assert [line.split()[1] for line in rest] == ["node_success", "workflow_complete"]
    assert rest[0].endswith("node_success       n 1.00s")
    assert code == 0


def test_latest_prints_a_finished_run_and_exits(retry_dir: Path) -> None:
    with tail(str(retry_dir), "--latest") as follower:
        code, lines, err = follower.finish()
    assert code == 0 and err == ""
    assert len(lines) == len(read_run(retry_dir).events)
    assert lines[0].split()[1] == "workflow_start" and lines[-1].split()[1] == "workflow_complete"
    text = "\n".join(lines)
    assert "node_retry         fetch attempt 2 in 0.5s: TimeoutError: upstream slow" in text
    assert "node_skipped       cache: up to date" in text


def test_workflow_error_ends_the_tail(error_dir: Path) -> None:
    with tail(str(error_dir), "--latest", "--check") as follower:
        code, lines, _ = follower.finish()
    assert lines[-1].endswith("WORKFLOW_ERROR     ConnectionError: database unreachable")
    assert code == 1


def test_killed_run_times_out(tmp_path: Path) -> None:
    out = runs.success_run(tmp_path / "killed")
    trace = runs.only_trace(out)
    lines = trace.read_bytes().splitlines(keepends=True)
    trace.write_bytes(b"".join(lines[:3]))
    with tail(str(trace), "--timeout", "0.3") as follower:
        code, printed, err = follower.finish()
    assert len(printed) == 3
    assert code == 1
    assert err.strip() == "tracebus tail: no new event for 0.3s; the run has not ended"


def test_waits_for_a_run_to_start_in_an_empty_output_dir(tmp_path: Path, quiet: Quiet) -> None:
    out = tmp_path / "later"
    (out / "traces").mkdir(parents=True)
    with tail(str(out)) as follower:
        _wait_for_run(follower, out)  # a run that ended before tail looked would not be shown
        with quiet.SyncObserver("step_10_later", out, total_nodes=1) as obs:
            obs.node_start("x", 0)
            obs.node_success("x", 0.01)
        code, lines, _ = follower.finish()
    assert code == 0
    assert [line.split()[1] for line in lines] == [
        "workflow_start",
        "node_start",
        "node_success",
        "workflow_complete",
    ]


def test_lines_for_notes_and_unknown_events() -> None:
    base = {"epoch_seconds": 0.0, "pid": 1, "workflow_id": "wf", "run_id": "r", "seq": 3}
    note = {**base, "event_type": "note", "message": "rows", "node_id": "n", "fields": {"k": 1}}
    assert format_event(note).endswith('note               [n] rows {"k": 1}')
    log = {**base, "event_type": "log", "node_id": "n", "logger": "agent.tools"}
    log |= {"level": "WARNING", "levelno": 30, "message": "slow\nbackend", "exception": None}
    assert format_event(log).endswith("log                [n] WARNING agent.tools: slow backend")
    crash = {**log, "node_id": None, "level": "ERROR", "message": "boom"}
    crash["exception"] = "Traceback (most recent call last):\n  File \"x.py\"\nKeyError: 'k'\n"
    assert format_event(crash).endswith(
        "log                ERROR agent.tools: boom (KeyError: 'k')"
    )
    usage = {**base, "event_type": "usage", "node_id": "n", "model": "big", "input_tokens": 300}
    usage |= {"output_tokens": 40, "cost_usd": 0.0004, "counters": {"cached_tokens": 12}}
    assert format_event(usage).endswith(
        "usage              [n] big: 300 in, 40 out, 12 cached_tokens tokens, $0.000400"
    )
    future = {**base, "event_type": "node_checkpoint", "node_id": "n", "step": 2}
    assert format_event(future).endswith('node_checkpoint    {"node_id": "n", "step": 2}')


# -- tail started before the run ---------------------------------------------------------

SECOND = """
import sys, tracebus
out, wait = sys.argv[1], sys.argv[2] == "wait"
quiet = {"progress": False, "console": None}
with tracebus.SyncObserver("step_11_second", out, total_nodes=2, **quiet) as obs:
    obs.node_start("a", 0)
    obs.node_success("a", 0.1)
    if wait:
        obs.flush()
        print("running", flush=True)
        sys.stdin.readline()
    obs.node_start("b", 1)
    obs.node_failure("b", "ValueError: no", 0.1)
"""


def second_process(out: Path, *, wait: bool = False) -> subprocess.Popen[str]:
    """Another process that writes a run of ``step_11_second`` in ``out``."""
    return subprocess.Popen(
        [sys.executable, "-c", SECOND, str(out), "wait" if wait else "go"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def assert_done(producer: subprocess.Popen[str], stdin: str | None = None) -> None:
    producer.communicate(stdin, timeout=WAIT)
    assert producer.returncode == 0


def assert_second_run(lines: list[str]) -> None:
    assert [line.split()[1] for line in lines] == [
        "workflow_start",
        "node_start",
        "node_success",
        "node_start",
        "NODE_FAILURE",
        "workflow_complete",
    ]
    assert "step_11_second: 2 nodes (run " in lines[0]


def _wait_for_run(follower: Tail, out: Path) -> None:
    assert follower.next_error() == f"tracebus tail: waiting for a run to begin in {out}"


@pytest.mark.parametrize("made", ["missing", "empty", "output dir"])
def test_tail_started_first_follows_the_run_a_second_process_starts(
    tmp_path: Path, made: str
) -> None:
    out = tmp_path / "later"
    if made != "missing":
        out.mkdir()
    if made == "output dir":
        (out / "traces").mkdir()
    with tail(str(out), "--check") as follower:
        _wait_for_run(follower, out)
        producer = second_process(out)
        assert_done(producer)
        code, lines, err = follower.finish()
    assert_second_run(lines)
    assert code == 1 and err == ""  # --check: node b failed


def test_a_directory_of_finished_runs_waits_for_the_next_one(retry_dir: Path) -> None:
    with tail(str(retry_dir)) as follower:
        _wait_for_run(follower, retry_dir)  # the finished run is not printed
        producer = second_process(retry_dir)
        assert_done(producer)
        code, lines, _ = follower.finish()
    assert_second_run(lines)
    assert code == 0


def test_a_run_in_progress_is_followed_from_its_start(tmp_path: Path) -> None:
    out = runs.success_run(tmp_path / "busy")  # an older, finished run
    producer = second_process(out, wait=True)
    assert producer.stdout is not None and producer.stdout.readline() == "running\n"
    with tail(str(out)) as follower:
        assert follower.next_line().split()[1:3] == ["workflow_start", "step_11_second:"]
        assert follower.next_line().split()[1] == "node_start"
        assert follower.next_line().split()[1] == "node_success"
        assert_done(producer, "go on\n")
        code, rest, err = follower.finish()
    assert [line.split()[1] for line in rest] == ["node_start", "NODE_FAILURE", "workflow_complete"]
    assert code == 0 and err == ""


def test_a_newer_run_takes_over_from_a_run_that_never_ended(tmp_path: Path) -> None:
    out = runs.success_run(tmp_path / "killed")
    trace = runs.only_trace(out)
    lines = trace.read_bytes().splitlines(keepends=True)
    trace.write_bytes(b"".join(lines[:3]))  # killed: no end, ever
    with tail(str(out)) as follower:
        for _ in range(3):
            follower.next_line()
        producer = second_process(out)
        assert follower.next_error().startswith("tracebus tail: a newer run began: following ")
        assert_done(producer)
        code, rest, _ = follower.finish()
    assert_second_run(rest)
    assert code == 0


def test_waiting_for_a_run_times_out(tmp_path: Path) -> None:
    missing = tmp_path / "nothing" / "here"
    with tail(str(missing), "--timeout", "0.3") as follower:
        code, lines, err = follower.finish()
    assert (code, lines) == (1, [])
    assert err.splitlines() == [
        f"tracebus tail: waiting for a run to begin in {missing}",
        f"tracebus tail: no run began in {missing} within 0.3s",
    ]


# -- blank lines -------------------------------------------------------------------------

APPEND = """
import json, sys, time
with open(sys.argv[1], "ab", buffering=0) as out:
    for line in sys.stdin:
        text = json.loads(line)
        if text is None:  # blank lines until stopped
            while True:
                out.write(b"\\n  \\n")
                time.sleep(0.02)
        out.write(text.encode())
"""


class Appender:
    """Another process that appends what it is sent to a trace, as it is sent."""

    def __init__(self, trace: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", APPEND, str(trace)], stdin=subprocess.PIPE, text=True
        )

    def send(self, text: str | None) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(text) + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=WAIT)
        assert self.process.stdin is not None
        self.process.stdin.close()


def _emptied_trace(tmp_path: Path) -> tuple[Path, list[str]]:
    """A trace emptied of its run's lines (which are returned), to be written again."""
    trace = runs.only_trace(runs.success_run(tmp_path / "run"))
    lines = trace.read_text().splitlines(keepends=True)
    trace.write_text("")
    return trace, lines


def test_blank_lines_neither_end_a_run_nor_keep_tail_after_its_end(tmp_path: Path) -> None:
    trace, lines = _emptied_trace(tmp_path)
    writer = Appender(trace)
    try:
        with tail(str(trace), "--check") as follower:
            writer.send(lines[0] + "\n \n")
            assert follower.next_line().split()[1] == "workflow_start"
            writer.send("\n\n\n")  # only blank lines after the last event so far
            writer.send(lines[1])
            assert follower.next_line().split()[1] == "node_start"
            assert follower.process.poll() is None
            writer.send("".join(lines[2:]) + "\n\n")
            writer.send(None)  # and blank lines after the end, without end
            code, rest, err = follower.finish()
    finally:
        writer.stop()
    assert len(rest) == len(lines) - 2
    assert rest[-1].split()[1:3] == ["workflow_complete", "4"]
    assert code == 0 and err == ""


def test_blank_lines_are_no_news_to_the_timeout(tmp_path: Path) -> None:
    trace, lines = _emptied_trace(tmp_path)
    writer = Appender(trace)
    try:
        with tail(str(trace), "--timeout", "0.5") as follower:
            writer.send("".join(lines[:3]))
            writer.send(None)
            code, printed, err = follower.finish()
    finally:
        writer.stop()
    assert len(printed) == 3
    assert code == 1
    assert err.strip() == "tracebus tail: no new event for 0.5s; the run has not ended"
