"""Ids with spaces and letters of any script through the collector service, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tracebus

from .conftest import Service, spawn_producer


def test_ids_with_spaces_and_non_ascii_letters_go_through_the_service(service: Service) -> None:
    workflow_id = "step_03 simple analysis workflow – données"
    run_id = "run: été 1 " + "r" * 180  # 200 bytes: the longest, in the registry's file name
    with tracebus.connect_sync(
        service.socket, workflow_id, 4, run_id=run_id, producer="lead worker"
    ) as observer:
        observer.node_start("fetch sources", 1)
        observer.node_success("fetch sources", 0.5)
        joiner = spawn_producer(
            service.socket, workflow_id, events=6, run_id=run_id, join=True, producer="worker ü 2"
        )
        _, err = joiner.communicate(timeout=120)
        assert joiner.returncode == 0, err

    metadata = json.loads((service.out / "audit/step_03/metadata_03.json").read_text())
    assert (metadata["workflow_id"], metadata["run_id"]) == (workflow_id, run_id)
    assert metadata["status"] == "complete" and metadata["nodes_completed"] == 4
    trace_file = Path(metadata["execution_trace_file"])
    assert trace_file.parent == service.out / "traces"
    trace = list(tracebus.read_trace(trace_file))
    assert {e["producer"] for e in trace} == {"lead worker", "worker ü 2"}
    assert {e["workflow_id"] for e in trace} == {workflow_id}
    (log_file,) = (service.out / "logs").glob("execution_step_03 simple analysis*.log")
    assert Path(metadata["execution_log_file"]) == log_file
    entry = service.out / ".tracebus" / "runs" / workflow_id / f"{run_id}.json"
    assert json.loads(entry.read_text())["run_id"] == run_id


@pytest.mark.parametrize("workflow_id", ["a/b", "-rf", "step\n01", "x" * 201])
def test_unsafe_ids_are_refused_before_connecting(service: Service, workflow_id: str) -> None:
    with pytest.raises(tracebus.InvalidIdError, match=r"^invalid workflow_id .*file names\)$"):
        tracebus.connect_sync(service.socket, workflow_id)
    assert list(service.out.glob("logs/*")) == []
