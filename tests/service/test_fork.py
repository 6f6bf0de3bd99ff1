"""A connect_sync observer in a process that forks (see tests/test_fork.py): its children
exit normally and write nothing to the run the parent holds at the collector."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import trace_of
from tests.service.conftest import Service
from tests.test_fork import run_forking_parent


def test_a_connect_sync_observer_survives_a_fork_pool(tmp_path: Path, service: Service) -> None:
    run_forking_parent("remote", tmp_path / "own", service.target)
    service.close()
    (trace_file,) = service.out.glob("traces/*.jsonl")
    trace = trace_of(trace_file)
    assert [e["node_id"] for e in trace if "node_id" in e] == ["parent-node", "parent-node"]
    assert trace[-1]["event_type"] == "workflow_complete"
