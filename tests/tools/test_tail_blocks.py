"""tail over traces of many read blocks: each line printed as it would be alone, the exact
error for a bad line far into the file, and memory that does not grow with the trace."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

from tests.conftest import Quiet
from tracebus import read_trace
from tracebus._events import TRACE_EVENT_TYPES
from tracebus._tools._tail import READ_BYTES
from tracebus._tools._tail_text import SHOWN_TYPES, format_event

from . import runs


def _tail(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracebus", "tail", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _busy_run(out: Path, nodes: int) -> Path:
    """A run of every kind of event, over several read blocks."""
    with Quiet.SyncObserver("step_12_long", out, total_nodes=nodes) as obs:
        for index in range(nodes):
            node = f"node_{index:05d}"
            obs.node_start(node, index)
            if index % 7 == 3:
                obs.node_retry(node, 2, "TimeoutError: slow\nupstream", 0.25)
                obs.usage("big", 300 + index, 40, 0.0004, node_id=node, cached_tokens=index)
            if index % 11 == 5:
                obs.note("rows", node_id=node, rows=index, tags=["a", "é"])
                obs.node_failure(node, f"ValueError: row {index}", 0.002)
            elif index % 13 == 4:
                obs.node_skipped(node, "cached")
            else:
                obs.node_success(node, index / 997, f"{index:08x}", {"i": index}, index / 1e6)
    return runs.only_trace(out)


def test_every_event_type_has_its_own_line() -> None:
    assert SHOWN_TYPES == set(TRACE_EVENT_TYPES)


def test_a_long_trace_prints_each_event_as_its_line_alone_would(tmp_path: Path) -> None:
    trace = _busy_run(tmp_path / "long", 6_000)
    lines = trace.read_bytes().splitlines(keepends=True)
    odd = [
        b"\n",
        b"   \n",
        b'{"event_type":"gpu_sample","epoch_seconds":1796195485.5,"pid":1,"gpu":0.75}\n',
        b'{"event_type":"node_start","epoch_seconds":1796195485.25,"node_index":3}\n',
        b'{"event_type":"node_start","epoch_seconds":1796195485.25,"node_id":null}\n',
        b'{"event_type":"node_success","node_id":"bell\\u0007\\u202e","timestamp":"t9"}\n',
    ]
    middle = len(lines) // 2
    trace.write_bytes(b"".join(lines[:middle] + odd + lines[middle:]))
    assert trace.stat().st_size > 3 * READ_BYTES
    done = _tail(str(trace))
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.splitlines() == [format_event(event) for event in read_trace(trace)]
    shown = done.stdout.splitlines()[middle : middle + 4]  # the blank lines are skipped
    assert shown[0].endswith('gpu_sample         {"gpu": 0.75}')
    assert shown[1].endswith("node_start          [3]")  # no node id: nothing before [3]
    assert shown[2].endswith("node_start         None")  # a null one, as a dict shows it
    assert shown[3] == "t9  node_success       bell\\x07\\u202e"
    assert "node_retry         node_00003 attempt 2 in 0.25s: TimeoutError: slow upstream" in (
        done.stdout
    )
    assert "usage              [node_00003] big: 303 in, 40 out, 3 cached_tokens tokens" in (
        done.stdout
    )
    assert 'note               [node_00005] rows {"rows": 5, "tags": ["a", "\\u00e9"]}' in (
        done.stdout
    )


def _clocks(seed: runs.SeedWriter, epochs: list[float]) -> tuple[list[str], list[str]]:
    """The clock tail shows on each line of ``seed``'s trace, and the one datetime gives
    each of ``epochs``: local time, to the millisecond."""
    done = _tail(str(seed.trace))
    shown = [line.split()[0] for line in done.stdout.splitlines()[1:-1]]
    expected = []
    for epoch in epochs:
        moment = datetime.fromtimestamp(epoch)
        expected.append(moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}")
    return shown, expected


def test_the_clock_is_local_time_rounded_as_datetime_rounds(tmp_path: Path) -> None:
    seed = runs.SeedWriter(tmp_path / "seed", "wf", total_nodes=1)
    epochs = [1796195485.0, 1796195485.9994999, 1796195485.9995, 1796195485.9999996, 0.0005]
    for epoch in epochs:
        line = {"event_type": "note", "epoch_seconds": epoch, "message": "tick"}
        seed.write(json.dumps(line) + "\n")
    seed.complete()
    shown, expected = _clocks(seed, epochs)
    assert shown == expected
    assert shown[3].endswith(".000")  # rounded up into the next second


def test_lines_in_one_millisecond_and_at_its_edges_show_the_clock_datetime_shows(
    tmp_path: Path,
) -> None:
    seed = runs.SeedWriter(tmp_path / "seed", "wf", total_nodes=1)
    second = 1796195485.0
    epochs = []
    for millisecond in (0.0, 0.001, 0.5, 0.998, 0.999):
        for offset in (0.0, 1e-7, 4.99e-7, 5e-7, 5.01e-7, 1e-6, 2.5e-6, 4e-4, 9.9e-4, 9.994e-4):
            epochs.append(second + millisecond + offset)
            epochs.append(second + millisecond + 0.001 - offset)
    epochs += [2.0**32 - 0.0004995, 2.0**32 + 0.0004995, 2.0**33 + 0.25]
    for epoch in epochs:
        line = {"event_type": "node_start", "epoch_seconds": epoch, "node_id": "n"}
        seed.write(json.dumps(line) + "\n")
    seed.complete()
    shown, expected = _clocks(seed, epochs)
    assert shown == expected


def test_a_bad_line_far_into_the_trace_is_named_after_the_lines_before_it(
    tmp_path: Path,
) -> None:
    trace = _busy_run(tmp_path / "bad", 6_000)
    lines = trace.read_bytes().splitlines(keepends=True)
    at = len(lines) - 5
    lines.insert(at, b'{"event_type":"note","epoch_seconds":"soon"}\n')
    trace.write_bytes(b"".join(lines))
    done = _tail(str(trace))
    assert done.returncode == 2
    assert done.stderr == (
        f"tracebus tail: error: {trace}:{at + 1}: epoch_seconds is not a number\n"
    )
    assert len(done.stdout.splitlines()) == at


_CAPPED = textwrap.dedent(
    """
    import resource, sys
    cap = int(sys.argv[1]) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    from tracebus.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)
#: Address space for tail: the tail that read all it found at once ran out of 160 MiB on
#: this 70 MB trace; reading a block at a time, it needs under 64 MiB, whatever the size.
CAP_MIB = 96


def test_tail_of_a_100k_node_run_fits_under_a_memory_cap(tmp_path: Path) -> None:
    nodes = 100_000
    out = tmp_path / "big"
    with Quiet.SyncObserver("step_09_wide", out, total_nodes=nodes) as obs:
        for index in range(nodes):
            obs.node_start(f"node_{index:06d}", index)
            obs.node_success(f"node_{index:06d}", 0.001, "ab12cd34ef56ab78", {"rows": index})
    done = subprocess.run(
        [sys.executable, "-c", _CAPPED, str(CAP_MIB), "tail", "--latest", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 * nodes + 2
    assert lines[-1].split()[1:4] == ["workflow_complete", "100000", "succeeded,"]
