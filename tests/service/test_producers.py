"""Many producer processes, one writer per run: nothing lost, nothing doubled."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections import Counter

import pytest

import tracebus

from .conftest import Service, finish, run_files, seqs_by_producer, spawn_producer

PRODUCERS = 8
EVENTS = 10_000


def test_eight_processes_share_one_run(service: Service) -> None:
    run_id = uuid.uuid4().hex
    with tracebus.connect_sync(
        service.socket, "step_01_shared", PRODUCERS * EVENTS // 2, run_id=run_id, producer="opener"
    ) as opener:
        producers = [
            spawn_producer(
                service.socket,
                "step_01_shared",
                events=EVENTS,
                run_id=run_id,
                join=True,
                producer=f"p{index}",
            )
            for index in range(PRODUCERS)
        ]
        stats = [finish(process) for process in producers]
    assert opener.statistics().delivered == 2

    trace, metadata = run_files(service.out, "01")
    seqs = seqs_by_producer(trace)
    for index in range(PRODUCERS):
        # arrival order is the trace's order, and one connection keeps a producer's order
        assert seqs[f"p{index}"] == list(range(1, EVENTS + 1))
    assert seqs["opener"] == [1, 2]
    assert trace[0]["event_type"] == "workflow_start"
    assert trace[-1]["event_type"] == "workflow_complete"
    assert all(s["delivered"] == EVENTS and s["reconnects"] == 0 for s in stats)
    counts = Counter(event["event_type"] for event in trace)
    assert counts["node_success"] == metadata["nodes_completed"] == PRODUCERS * EVENTS // 2
    assert metadata["status"] == "complete"
    assert metadata["total_nodes"] == PRODUCERS * EVENTS // 2
    assert metadata["run_id"] == run_id
    assert service.status()["events_duplicate"] == 0


def test_eight_processes_write_eight_runs(service: Service) -> None:
    producers = [
        spawn_producer(
            service.socket,
            f"step_{index + 1:02d}_own",
            events=EVENTS,
            producer=f"p{index}",
            sync_threads=4 if index % 2 else 0,  # half of them through the sync twin
        )
        for index in range(PRODUCERS)
    ]
    for process in producers:
        finish(process)

    for index in range(PRODUCERS):
        trace, metadata = run_files(service.out, f"{index + 1:02d}")
        seqs = seqs_by_producer(trace)
        assert list(seqs) == [f"p{index}"]
        assert seqs[f"p{index}"] == list(range(1, EVENTS + 3))  # with start and complete
        assert metadata["status"] == "complete"
        assert metadata["nodes_completed"] == metadata["total_nodes"] == EVENTS // 2
        assert metadata["workflow_id"] == f"step_{index + 1:02d}_own"
    status = service.status()
    assert status["runs_ended"] == PRODUCERS
    assert status["runs_open"] == 0
    assert status["events_written"] == PRODUCERS * (EVENTS + 2)


NEVER_CLOSED = textwrap.dedent(
    """
    import sys, tracebus
    obs = tracebus.connect_sync(sys.argv[1], "step_05_exit", 2, backend=sys.argv[2])
    obs.node_start("a", 0)
    obs.node_success("a", 0.5)
    obs.node_start("b", 1)
    """
)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_never_closed_remote_observer_ends_its_run_at_exit(service: Service, backend: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", NEVER_CLOSED, str(service.socket), backend],
        capture_output=True,
        text=True,
        timeout=60,  # a hang guard only: the exit hook is bounded by exit_timeout (5s)
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    # the exit hook waited for the service to write the run's end and metadata
    trace, metadata = run_files(service.out, "05")
    assert [e["event_type"] for e in trace][-2:] == ["node_start", "workflow_complete"]
    assert (metadata["status"], metadata["nodes_completed"]) == ("complete", 1)
