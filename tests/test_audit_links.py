"""The audit copies of the trace and the log are hard links of the ``traces/`` and ``logs/``
files where the filesystem allows (one file, two names, half the bytes written), and are
written in full where it does not."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio.lowlevel
import pytest

import tracebus
from tests.cli import run_tracebus
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


# -- runs of one step that overlap: each keeps its own metadata -------------------------------


async def _overlapping(quiet: Quiet, out: Path, first_id: str, second_id: str) -> list[Any]:
    """``first`` starts, ``second`` starts (and takes the step's audit directory), each runs
    a node, ``second`` ends, then ``first``: the order in which a later run's metadata was
    lost under the earlier's."""
    async with quiet.Observer(first_id, out) as first:
        await first.node_start("a", 0)
        await first.flush()  # its metadata written in the step's directory, then moved
        async with quiet.Observer(second_id, out) as second:
            await second.node_success("b", 0.5)
        await first.node_success("a", 0.25)
    return [first, second]


def _describes_itself(obs: tracebus.Observer, node: str) -> dict[str, Any]:
    metadata = metadata_of(obs.metadata_file)
    assert metadata["run_id"] == obs.run_id and metadata["status"] == "complete"
    assert metadata["execution_trace_file"] == str(obs.trace_file)
    assert list(metadata["node_times"]) == [node]
    # its audit names are where its audit copies are, and are this run's
    home = obs.metadata_file.parent
    assert metadata["trace_file"] == str(home / obs.layout.audit_trace_file.name)
    assert metadata["log_file"] == str(home / obs.layout.audit_log_file.name)
    assert {e["run_id"] for e in trace_of(Path(metadata["trace_file"]))} == {obs.run_id}
    assert Path(metadata["log_file"]).read_bytes() == obs.log_file.read_bytes()
    return metadata


@pytest.mark.parametrize(
    ("first_id", "second_id"),
    [("wf_alpha", "wf_beta"), ("step_04_x", "step_04_x")],
    ids=["two-workflows-without-a-step", "one-step-twice"],
)
async def test_overlapping_runs_of_a_step_each_keep_their_metadata(
    out: Path, quiet: Quiet, first_id: str, second_id: str
) -> None:
    first, second = await _overlapping(quiet, out, first_id, second_id)
    assert second.metadata_file == second.layout.metadata_file  # the step's, as before
    (archived,) = (first.audit_dir / "previous").iterdir()
    assert first.metadata_file == archived / first.layout.metadata_file.name
    _describes_itself(first, "a")
    _describes_itself(second, "b")
    assert sorted(p.name for p in archived.iterdir()) == sorted(
        p.name
        for p in (
            first.layout.audit_log_file,
            first.layout.audit_trace_file,
            first.layout.metadata_file,
        )
    )


async def test_overlapping_runs_keep_their_metadata_where_copies_are_files_of_their_own(
    out: Path, quiet: Quiet
) -> None:
    with small_disk(out / "audit"):
        first, second = await _overlapping(quiet, out, "step_04_x", "step_04_x")
        assert not first.layout.audit_trace_linked
        _describes_itself(first, "a")
        _describes_itself(second, "b")


async def test_runs_lists_both_overlapping_runs_complete_from_their_metadata(
    out: Path, quiet: Quiet
) -> None:
    first, second = await _overlapping(quiet, out, "wf_alpha", "wf_beta")
    done = run_tracebus("runs", out, "--json")
    assert done.returncode == 0, done.stderr
    runs = {run["workflow_id"]: run for run in json.loads(done.stdout)}
    assert runs["wf_alpha"]["metadata"] == str(first.metadata_file)
    assert runs["wf_beta"]["metadata"] == str(second.metadata_file)
    assert [runs[w]["status"] for w in ("wf_alpha", "wf_beta")] == ["complete", "complete"]
    assert [runs[w]["nodes_ok"] for w in ("wf_alpha", "wf_beta")] == [1, 1]
    assert runs["wf_alpha"]["warnings"] == runs["wf_beta"]["warnings"] == []
