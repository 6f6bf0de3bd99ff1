"""The writer's file sinks under faults: a full disk, a removed file, a size limit, a failed
fsync."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from contextlib import ExitStack
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

import tracebus
import tracebus._run_parts
from tests.conftest import Quiet, metadata_of, trace_of
from tests.disks import full_file_at, small_disk
from tracebus._layout import RunLayout, create_layout

pytestmark = pytest.mark.anyio


def _audit_trace_on_a_full_disk(
    monkeypatch: pytest.MonkeyPatch, scratch: Path, mounts: ExitStack
) -> None:
    # An audit trace of its own (as on another filesystem, where it is not a link of the
    # trace): a regular file on a disk with no space (a symbolic link to /dev/full would be
    # refused: run files are never written through a link).
    def layout_with_full_disk(*args: object, **kwargs: object) -> RunLayout:
        layout = create_layout(*args, **kwargs)  # type: ignore[arg-type]
        layout.audit_trace_file.unlink()
        mounts.enter_context(full_file_at(layout.audit_trace_file, scratch))
        return dataclasses.replace(layout, audit_trace_linked=False)

    monkeypatch.setattr(tracebus._run_parts, "create_layout", layout_with_full_disk)


async def test_disk_full_is_reported_and_producers_carry_on(
    out: Path, monkeypatch: pytest.MonkeyPatch, quiet: Quiet
) -> None:
    obs = quiet.Observer("wf", out, total_nodes=100)
    with ExitStack() as mounts:
        _audit_trace_on_a_full_disk(monkeypatch, out.parent / "full", mounts)
        with pytest.raises(tracebus.SinkError) as caught:
            async with obs:
                for i in range(100):
                    async with obs.node(f"n{i}", i):
                        await anyio.lowlevel.checkpoint()
    message = str(caught.value)
    assert str(obs.audit_dir / "trace_00.jsonl") in message
    assert "No space left on device" in message
    assert "202 event(s) not written" in message  # start + 200 node events + complete
    trace = trace_of(obs.trace_file)
    assert len(trace) == 202 and trace[-1]["event_type"] == "workflow_complete"
    metadata = metadata_of(obs.metadata_file)
    assert metadata["nodes_completed"] == 100
    errors = metadata["write_errors"]
    assert list(errors) == [str(obs.audit_dir / "trace_00.jsonl")]
    assert errors[str(obs.audit_dir / "trace_00.jsonl")]["events_lost"] == 202


async def test_trace_removed_mid_run_is_recreated_and_the_loss_reported(
    out: Path, quiet: Quiet
) -> None:
    # The audit copy on another filesystem is a file of its own (elsewhere it is a second
    # name of the trace, which removing one name leaves whole: see test_audit_links).
    with small_disk(out / "audit"):
        obs = quiet.Observer("wf", out)
        with pytest.raises(tracebus.SinkError, match="was removed while the run wrote it"):
            async with obs:
                for i in range(10):
                    await obs.node_success(f"early{i}", 0.0)
                await obs.flush()
                obs.trace_file.unlink()
                for i in range(5):
                    await obs.node_success(f"late{i}", 0.0)
        trace = trace_of(obs.trace_file)
        assert [e["node_id"] for e in trace if "node_id" in e] == [f"late{i}" for i in range(5)]
        metadata = metadata_of(obs.metadata_file)
        assert metadata["events_lost"] == 11  # workflow_start and the ten early nodes
        assert metadata["events_written"] == 6
        # the audit copy was not removed and holds everything
        assert len(trace_of(obs.audit_dir / "trace_00.jsonl")) == 17


SIZE_LIMITED = textwrap.dedent(
    """
    import resource, signal, sys
    import anyio, tracebus

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    async def main():
        obs = tracebus.Observer("wf", sys.argv[1], progress=False, console=None)
        try:
            async with obs:
                for i in range(400):
                    await obs.node_success(f"n{i}", 0.5, output_summary={"i": i})
                    await anyio.sleep(0)
        except tracebus.SinkError as exc:
            print("SinkError", exc)

    anyio.run(main)
    """
)


def test_size_limit_leaves_only_whole_lines(out: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SIZE_LIMITED, str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "SinkError" in result.stdout and "File too large" in result.stdout
    for name in (*out.glob("traces/*.jsonl"), *out.glob("audit/*/*.jsonl")):
        data = name.read_bytes()
        assert 0 < len(data) <= 20_000
        assert data.endswith(b"\n")  # the failed write was rolled back to a whole line
        for line in data.splitlines():
            json.loads(line)
    for name in out.glob("logs/*.log"):
        assert name.read_bytes().endswith(b"\n")


def test_removed_output_dir_at_close_is_reported(out: Path, quiet: Quiet) -> None:
    async def main() -> None:
        async with quiet.Observer("wf", out) as obs:
            await obs.node_success("a", 0.0)
            await obs.flush()
            for path in sorted(out.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                path.unlink() if not path.is_dir() else path.rmdir()

    with pytest.raises(tracebus.SinkError) as caught:
        anyio.run(main)
    message = str(caught.value)
    assert "metadata_00.json: 0 event(s) not written (FileNotFoundError" in message
    assert "was removed while the run wrote it" in message
    assert not any(out.rglob("*.json"))


async def test_a_failed_fsync_at_close_is_reported_in_the_metadata(
    out: Path, monkeypatch: pytest.MonkeyPatch, quiet: Quiet
) -> None:
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".log"):
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    obs = quiet.Observer("wf", out, total_nodes=3)
    with pytest.raises(tracebus.SinkError, match="Input/output error") as caught:
        async with obs:
            for i in range(3):
                async with obs.node(f"n{i}", i):
                    pass
    layout = obs.layout
    assert set(caught.value.failures) == {str(layout.log_file), str(layout.audit_log_file)}
    metadata = metadata_of(obs.metadata_file)  # written all the same, and saying so
    assert metadata["status"] == "complete" and metadata["events_written"] == 8
    assert metadata["write_errors"] == {
        str(path): {"events_lost": 0, "error": "OSError: [Errno 5] Input/output error"}
        for path in (layout.log_file, layout.audit_log_file)
    }
    assert len(trace_of(obs.trace_file)) == 8
