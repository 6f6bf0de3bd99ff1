"""The audit copies of the trace and the log are hard links of the ``traces/`` and ``logs/``
files where the filesystem allows (one file, two names, half the bytes written), and are
written in full where it does not."""

from __future__ import annotations

import os
from pathlib import Path

import anyio.lowlevel
import pytest

import tracebus
from tests.conftest import Quiet, metadata_of, trace_of
from tests.disks import small_disk

pytestmark = pytest.mark.anyio


async def _run(
    quiet: Quiet, out: Path, nodes: int, workflow_id: str = "step_03_links"
) -> tracebus.Observer:
    async with quiet.Observer(workflow_id, out) as obs:
        for i in range(nodes):
            await obs.node_start(f"n{i}", i)
            await obs.node_success(f"n{i}", 0.01, output_summary={"i": i})
            await anyio.lowlevel.checkpoint()  # several batches
    return obs


def _pairs(obs: tracebus.Observer) -> list[tuple[Path, Path]]:
    layout = obs.layout
    return [
        (layout.trace_file, layout.audit_trace_file),
        (layout.log_file, layout.audit_log_file),
    ]


async def test_audit_copies_are_links_of_the_run_files(out: Path, quiet: Quiet) -> None:
    obs = await _run(quiet, out, 40)
    for main, audit in _pairs(obs):
        assert os.path.samefile(main, audit)
        assert main.stat().st_nlink == audit.stat().st_nlink == 2
    assert len(trace_of(obs.audit_dir / "trace_03.jsonl")) == 82
    assert (obs.audit_dir / "log_03.log").read_text().count(" NODE_SUCCESS n") == 40
    metadata = metadata_of(obs.metadata_file)
    assert metadata["events_written"] == 82 and metadata["write_errors"] == {}


def test_sync_observer_links_its_audit_copies_too(out: Path, quiet: Quiet) -> None:
    with quiet.SyncObserver("step_03_links", out) as obs:
        obs.node_success("a", 0.1)
    assert os.path.samefile(obs.trace_file, obs.layout.audit_trace_file)
    assert os.path.samefile(obs.log_file, obs.layout.audit_log_file)
    assert len(trace_of(obs.layout.audit_trace_file)) == 3


async def test_audit_copies_on_another_filesystem_are_written_in_full(
    out: Path, quiet: Quiet
) -> None:
    with small_disk(out / "audit"):
        obs = await _run(quiet, out, 40)
        for main, audit in _pairs(obs):
            assert main.stat().st_dev != audit.stat().st_dev
            assert main.stat().st_nlink == audit.stat().st_nlink == 1
            assert main.read_bytes() == audit.read_bytes()
        assert len(trace_of(obs.layout.audit_trace_file)) == 82
        assert metadata_of(obs.metadata_file)["events_written"] == 82


async def test_truncating_one_name_empties_both(out: Path, quiet: Quiet) -> None:
    obs = await _run(quiet, out, 5)
    os.truncate(obs.layout.audit_log_file, 0)  # what logrotate's copytruncate does
    assert obs.log_file.stat().st_size == 0
    assert len(trace_of(obs.trace_file)) == 12  # the trace is a file of its own


@pytest.mark.parametrize("removed", ["trace_file", "audit_trace_file"])
async def test_removing_one_name_keeps_the_other_and_loses_nothing(
    out: Path, removed: str, quiet: Quiet
) -> None:
    async with quiet.Observer("step_03_links", out) as obs:
        for i in range(10):
            await obs.node_success(f"early{i}", 0.0)
        await obs.flush()
        getattr(obs.layout, removed).unlink()
        for i in range(5):
            await obs.node_success(f"late{i}", 0.0)
    layout = obs.layout
    (kept,) = {layout.trace_file, layout.audit_trace_file} - {getattr(layout, removed)}
    assert not getattr(layout, removed).exists()
    trace = trace_of(kept)
    assert len(trace) == 17 and trace[-1]["event_type"] == "workflow_complete"
    metadata = metadata_of(obs.metadata_file)
    assert metadata["events_lost"] == 0 and metadata["events_written"] == 17


async def test_a_trace_whose_two_names_were_removed_is_made_again_under_both(
    out: Path, quiet: Quiet
) -> None:
    obs = quiet.Observer("step_03_links", out)
    with pytest.raises(tracebus.SinkError, match="was removed while the run wrote it"):
        async with obs:
            for i in range(10):
                await obs.node_success(f"early{i}", 0.0)
            await obs.flush()
            obs.trace_file.unlink()
            obs.layout.audit_trace_file.unlink()
            for i in range(5):
                await obs.node_success(f"late{i}", 0.0)
    layout = obs.layout
    assert os.path.samefile(layout.trace_file, layout.audit_trace_file)
    trace = trace_of(layout.audit_trace_file)
    assert [e["node_id"] for e in trace if "node_id" in e] == [f"late{i}" for i in range(5)]
    metadata = metadata_of(obs.metadata_file)
    assert metadata["events_lost"] == 11  # workflow_start and the ten early nodes
    errors = metadata["write_errors"]
    assert sorted(errors) == sorted([str(layout.trace_file), str(layout.audit_trace_file)])
    assert {error["events_lost"] for error in errors.values()} == {11}


async def test_a_rerun_moves_only_the_audit_names_into_previous(out: Path, quiet: Quiet) -> None:
    first = await _run(quiet, out, 3)
    second = await _run(quiet, out, 4)
    (archived,) = (first.audit_dir / "previous").iterdir()
    assert os.path.samefile(archived / "trace_03.jsonl", first.trace_file)
    assert os.path.samefile(archived / "log_03.log", first.log_file)
    assert len(trace_of(first.trace_file)) == 8  # the first run's trace, whole, under both
    assert os.path.samefile(second.layout.audit_trace_file, second.trace_file)
    assert len(trace_of(second.layout.audit_trace_file)) == 10
