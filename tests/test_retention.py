"""``retention=``: an observer removes its workflow's older runs once its own is written, by
the policy ``tracebus prune`` applies; off by default."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import tracebus
from tests.conftest import Quiet
from tracebus import Retention
from tracebus._tools._runs import find_runs

pytestmark = pytest.mark.anyio


async def one_run(out: Path, workflow_id: str, retention: Retention | None) -> str:
    async with Quiet.Observer(workflow_id, out, total_nodes=1, retention=retention) as obs:
        async with obs.node("only", 0) as node:
            node.output("done")
    return obs.run_id


async def test_an_observer_keeps_the_newest_runs_of_its_workflow(out: Path) -> None:
    other = await one_run(out, "step_02_other", None)
    ids = [await one_run(out, "step_01_keep", Retention(keep=2)) for _ in range(4)]
    found = find_runs([out])
    assert [r.run_id for r in found] == [ids[3], ids[2], other]
    kept = set().union(*(r.files for r in found))
    assert {p for p in out.rglob("*") if p.is_file()} == kept
    assert not (out / ".tracebus").exists()


async def test_retention_is_off_by_default(out: Path) -> None:
    for _ in range(3):
        await one_run(out, "step_01_keep", None)
    assert len(find_runs([out])) == 3


async def test_an_observer_never_removes_its_own_run(out: Path) -> None:
    for _ in range(2):
        await one_run(out, "step_01_keep", None)
    newest = await one_run(out, "step_01_keep", Retention(keep=0))
    assert [r.run_id for r in find_runs([out])] == [newest]
    newest = await one_run(out, "step_01_keep", Retention(older_than_days=0))
    assert [r.run_id for r in find_runs([out])] == [newest]


def test_a_sync_observer_takes_retention_too(out: Path) -> None:
    for _ in range(3):
        with Quiet.SyncObserver("step_01_keep", out, 1, retention=Retention(keep=1)) as obs:
            obs.node_start("only", 0)
            obs.node_success("only", 0.0)
    assert [r.run_id for r in find_runs([out])] == [obs.run_id]


def test_retention_is_checked_when_made() -> None:
    with pytest.raises(ValueError, match="keep=, older_than_days= or both"):
        Retention()
    with pytest.raises(ValueError, match="keep must be a whole number of runs >= 0, got -1"):
        Retention(keep=-1)
    with pytest.raises(ValueError, match="older_than_days must be a number of days >= 0"):
        Retention(older_than_days=float("nan"))
    with pytest.raises(TypeError, match="retention must be a tracebus.Retention or None, not int"):
        tracebus.Observer("wf", retention=3)  # type: ignore[arg-type]
    assert Retention(keep=3).older_than_days is None
    assert Retention.__module__ == "tracebus"


def test_a_removal_stopped_half_way_leaves_a_run_its_trace_still_describes(out: Path) -> None:
    from tracebus._catalog import catalog
    from tracebus._retention import remove_run

    async def failing_run() -> None:
        async with Quiet.Observer("step_04_half", out, total_nodes=2) as obs:
            async with obs.node("a", 0):
                pass
            await obs.node_start("b", 1)
            await obs.node_failure("b", "ValueError: bad", 0.1)

    anyio.run(failing_run)
    (before,) = find_runs([out])
    (stored,) = catalog(out)
    assert stored.log is not None and stored.metadata_file is not None
    stored.log.unlink()
    stored.log.mkdir()  # a name unlink() refuses: the removal stops there
    (stored.log / "keep").write_text("")
    with pytest.raises(IsADirectoryError):
        remove_run(stored)
    assert not stored.metadata_file.exists()  # the metadata went first
    assert stored.trace.exists()
    (after,) = find_runs([out])
    assert after.source == "trace"
    assert (after.run_id, after.status, after.nodes_ok, after.nodes_failed) == (
        before.run_id,
        before.status,
        1,
        1,
    )
