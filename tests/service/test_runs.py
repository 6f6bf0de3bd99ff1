"""A collector's runs, as ``tracebus runs`` and ``prune`` see them: running while the
collector holds the lock, and removed with the collector's registry entry and lock."""

from __future__ import annotations

import json

import tracebus
from tracebus._lock import run_lock_path
from tracebus._tools._runs import find_runs

from ..cli import run_tracebus
from .conftest import Service


async def test_a_collector_run_is_running_then_pruned_with_its_entry(service: Service) -> None:
    out = service.out
    async with tracebus.connect(service.socket, "step_03_remote", total_nodes=1) as obs:
        await obs.node_start("a", 0)
        await obs.flush()
        (run,) = find_runs([out])
        assert (run.run_id, run.status, run.nodes_unfinished) == (obs.run_id, "running", 1)
        await obs.node_success("a", 0.1)
    run_id = obs.run_id
    async with tracebus.connect(service.socket, "step_03_remote", total_nodes=0) as newer:
        pass
    service.close()  # the collector's writers have ended: no lock is held
    found = find_runs([out])
    assert [(r.run_id, r.status) for r in found] == [
        (newer.run_id, "complete"),
        (run_id, "complete"),
    ]
    entry = run_lock_path(out, "step_03_remote", run_id).with_suffix(".json")
    assert entry in found[1].files
    done = run_tracebus("prune", out, "--keep", "1", "--json")
    assert done.returncode == 0, done.stderr
    assert [r["run_id"] for r in json.loads(done.stdout)["removed"]] == [run_id]
    assert not entry.exists()
    assert not run_lock_path(out, "step_03_remote", run_id).exists()
    assert [r.run_id for r in find_runs([out])] == [newer.run_id]
