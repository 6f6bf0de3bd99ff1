"""Many producer processes, one writer per run: nothing lost, nothing doubled."""

from __future__ import annotations

import uuid
from collections import Counter

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
