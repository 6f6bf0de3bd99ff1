"""Files that change under the writer: truncated in place, replaced by a symbolic link, out of
descriptors, on a full disk; and the user's own error kept when closing fails too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

import tracebus
from tests.conftest import Quiet, metadata_of, trace_of
from tests.disks import fill, small_disk
from tracebus.compat import ExecutionObserver

from .cli import run_tracebus

pytestmark = pytest.mark.anyio


async def _nodes(obs: tracebus.Observer, first: int, count: int) -> None:
    for i in range(first, first + count):
        await obs.node_start(f"n{i}", i)
        await obs.node_success(f"n{i}", 0.01, output_summary={"rows": i})


def _summary_exit(path: Path) -> subprocess.CompletedProcess[str]:
    return run_tracebus("summary", path)


async def test_a_trace_truncated_under_the_writer_is_written_on_at_its_real_end(
    tmp_path: Path,
    quiet: Quiet,
) -> None:
    with small_disk(tmp_path / "disk", "1m") as disk:
        obs = quiet.Observer("wf", disk / "runs")
        with pytest.raises(tracebus.SinkError, match="No space left on device"):
            async with obs:
                await _nodes(obs, 0, 200)
                await obs.flush()
                os.truncate(obs.trace_file, 0)  # logrotate's copytruncate
                await _nodes(obs, 200, 50)
                await obs.flush()
                await _nodes(obs, 250, 3_000)  # and on until the disk is full
        data = obs.trace_file.read_bytes()
        read = _summary_exit(obs.trace_file)
    assert b"\0" not in data
    assert data.endswith(b"\n")
    lines = [json.loads(line) for line in data.splitlines()]
    # written on from the file's real end
    assert [e["node_id"] for e in lines[:100]] == [f"n{i}" for i in range(200, 250) for _ in "se"]
    seqs = [e["seq"] for e in lines]
    assert seqs == sorted(seqs)  # whole batches were lost to the full disk, never part of one
    assert read.returncode == 0, read.stderr


async def test_a_run_file_replaced_by_a_symlink_is_not_followed(out: Path, quiet: Quiet) -> None:
    # The audit copy on another filesystem is a file of its own, and the trace's path the only
    # name of the trace: the writer makes it again there, and refuses the link.
    victim = out.parent / "someone_elses_file"
    victim.write_text("precious\n")
    with small_disk(out / "audit"):
        obs = quiet.Observer("wf", out)
        with pytest.raises(tracebus.SinkError) as caught:
            async with obs:
                await _nodes(obs, 0, 5)
                await obs.flush()
                obs.trace_file.unlink()
                obs.trace_file.symlink_to(victim)
                await _nodes(obs, 5, 5)
        assert victim.read_text() == "precious\n"
        assert obs.trace_file.is_symlink()
        message = str(caught.value)
        assert f"{obs.trace_file}" in message and "is a symbolic link; refusing" in message
        metadata = metadata_of(obs.metadata_file)
        assert "is a symbolic link" in metadata["write_errors"][str(obs.trace_file)]["error"]
        assert len(trace_of(obs.audit_dir / "trace_00.jsonl")) == 22  # the audit copy has all


async def test_a_linked_run_file_replaced_by_a_symlink_is_not_followed(
    out: Path, quiet: Quiet
) -> None:
    # The audit name is a second name of the trace: the writer goes on writing the trace
    # under it, and never through the link planted at the other.
    victim = out.parent / "someone_elses_file"
    victim.write_text("precious\n")
    async with quiet.Observer("wf", out) as obs:
        await _nodes(obs, 0, 5)
        await obs.flush()
        obs.trace_file.unlink()
        obs.trace_file.symlink_to(victim)
        await _nodes(obs, 5, 5)
    assert victim.read_text() == "precious\n"
    assert obs.trace_file.is_symlink()
    assert len(trace_of(obs.audit_dir / "trace_00.jsonl")) == 22
    assert metadata_of(obs.metadata_file)["events_lost"] == 0


async def test_a_symlink_where_a_run_file_goes_is_refused_at_entry(out: Path, quiet: Quiet) -> None:
    victim = out.parent / "planted_target"
    audit = out / "audit" / "step_00"
    with small_disk(out / "audit"):  # the audit copies files of their own, not links
        audit.mkdir(parents=True)
        (audit / "trace_00.jsonl").symlink_to(victim)  # dangling: nothing to archive
        obs = quiet.Observer("wf", out)
        with pytest.raises(OSError, match="is a symbolic link; refusing to write through it"):
            async with obs:
                await _nodes(obs, 0, 1)
    assert not victim.exists()


async def test_a_symlink_where_an_audit_link_goes_is_replaced_not_followed(
    out: Path, quiet: Quiet
) -> None:
    victim = out.parent / "planted_target"
    audit = out / "audit" / "step_00"
    audit.mkdir(parents=True)
    (audit / "trace_00.jsonl").symlink_to(victim)  # dangling: nothing to archive
    async with quiet.Observer("wf", out) as obs:
        await _nodes(obs, 0, 1)
    assert not victim.exists()
    assert os.path.samefile(audit / "trace_00.jsonl", obs.trace_file)


NO_DESCRIPTORS = textwrap.dedent(
    """
    import os, resource, sys
    import anyio, tracebus
    import concurrent.futures.thread  # imported on the first trip to a thread: before the limit

    async def main():
        obs = tracebus.Observer("wf", sys.argv[1], progress=False, console=None)
        # room for the claims of the layout (one descriptor at a time), not for the run's two
        # files (the audit copies are links of them); the listing counts one of its own
        open_now = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_now, open_now))
        try:
            async with obs:
                print("entered")
        except OSError as exc:
            print("refused at entry:", exc)

    anyio.run(main)
    """
)


def test_a_run_that_cannot_open_its_files_fails_at_entry(out: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", NO_DESCRIPTORS, str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "entered" not in result.stdout
    assert "refused at entry: [Errno 24] Too many open files: " in result.stdout
    assert str(out) in result.stdout


async def test_flush_on_a_full_disk_raises_sink_error_and_the_run_goes_on(
    tmp_path: Path,
    quiet: Quiet,
) -> None:
    with small_disk(tmp_path / "disk", "512k") as disk:
        obs = quiet.Observer("wf", disk / "runs")
        with pytest.raises(tracebus.SinkError):
            async with obs:
                await _nodes(obs, 0, 10)
                await obs.flush()
                filler = fill(disk)
                await _nodes(obs, 10, 10)
                with pytest.raises(tracebus.SinkError, match="No space left on device") as caught:
                    await obs.flush()
                assert str(obs.metadata_file) in caught.value.failures
                filler.unlink()
                await _nodes(obs, 20, 10)  # the run went on
        metadata = metadata_of(obs.metadata_file)
    assert metadata["status"] == "complete" and metadata["nodes_completed"] == 30
    assert metadata["events_lost"] == 20


def test_compat_workflow_error_on_a_full_disk_raises_sink_error(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "512k") as disk:
        obs = ExecutionObserver("wf", str(disk / "runs"), 2, use_tqdm=False)
        obs.node_start("a", 0)
        obs.node_success("a", 0.1)
        filler = fill(disk)
        obs.node_failure("b", "x" * 50_000, 0.1)  # more than a file's last page can take
        with pytest.raises(tracebus.SinkError, match="No space left on device"):
            obs.workflow_error("the step failed")
        filler.unlink()
        with pytest.raises(tracebus.SinkError):
            obs.workflow_complete()  # reports again what was lost
        metadata = metadata_of(obs.audit_dir / "metadata_00.json")
    assert metadata["status"] == "error" and metadata["error"] == "the step failed"


async def test_the_blocks_own_error_is_kept_and_the_sink_failure_noted(
    tmp_path: Path, quiet: Quiet
) -> None:
    with small_disk(tmp_path / "disk", "512k") as disk:
        obs = quiet.Observer("wf", disk / "runs")
        with pytest.raises(LookupError, match="the user's own error") as caught:
            async with obs:
                await _nodes(obs, 0, 3)
                await obs.flush()
                fill(disk)
                await _nodes(obs, 3, 3)
                raise LookupError("the user's own error")
    (note,) = caught.value.__notes__
    assert note.startswith("tracebus: closing the run also failed: SinkError: sink failure: ")
    assert "No space left on device" in note


def test_the_with_blocks_own_error_is_kept_by_a_sync_observer(tmp_path: Path, quiet: Quiet) -> None:
    with small_disk(tmp_path / "disk", "512k") as disk:
        with pytest.raises(LookupError, match="the user's own error") as caught:
            with quiet.SyncObserver("wf", disk / "runs") as obs:
                obs.node_success("a", 0.1)
                obs.flush()
                fill(disk)
                obs.node_success("b", 0.1)
                raise LookupError("the user's own error")
    (note,) = caught.value.__notes__
    assert "closing the run also failed: SinkError" in note


def test_a_removed_output_dir_does_not_hide_the_blocks_own_error(out: Path, quiet: Quiet) -> None:
    async def main() -> None:
        async with quiet.Observer("wf", out) as obs:
            await obs.node_success("a", 0.0)
            await obs.flush()
            for path in sorted(out.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                path.unlink() if not path.is_dir() else path.rmdir()
            raise KeyError("mine")

    with pytest.raises(KeyError, match="mine") as caught:
        anyio.run(main)
    assert "FileNotFoundError" in caught.value.__notes__[0]
