"""Remote observers apply the same value rules and payload bound as in-process ones: they
build their events with the same EventFactory, so the collector only ever gets valid ones."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import anyio
import pytest

import tracebus
from tests.conftest import trace_of
from tests.service.conftest import Service
from tests.test_values import BAD_NAME, SHOWN, _marker_of
from tracebus._service._server import Collector
from tracebus._service._transport import UnixAddress


def test_a_remote_observer_refuses_bad_values_and_bounds_payloads(service: Service) -> None:
    with tracebus.connect_sync(service.target, "wf", 1, max_payload_bytes=1_000) as obs:
        with pytest.raises(TypeError, match="node_success: cost_usd must be a real number"):
            obs.node_success("a", 0.1, cost_usd="0.5")  # type: ignore[arg-type]
        obs.node_start(BAD_NAME, 0)
        obs.node_success(BAD_NAME, 0.1, output_summary={"text": "c" * 2_000})
        obs.note("ratio", value=float("nan"))
    service.close()
    (trace_file,) = service.out.glob("traces/*.jsonl")
    trace = trace_of(trace_file)
    assert [e["event_type"] for e in trace] == [
        "workflow_start",
        "node_start",
        "node_success",
        "note",
        "workflow_complete",
    ]
    assert trace[1]["node_id"] == trace[2]["node_id"] == SHOWN
    assert trace[2]["output_summary"] == _marker_of({"text": "c" * 2_000})
    assert trace[3]["fields"] == {"value": {"$repr": "nan"}}


@pytest.mark.parametrize(
    "flavour",
    [
        tracebus.Observer,
        tracebus.SyncObserver,
        tracebus.RemoteObserver,
        tracebus.SyncRemoteObserver,
        tracebus.connect,
        tracebus.connect_sync,
    ],
)
def test_every_flavour_takes_the_bound_under_one_name(flavour: object) -> None:
    option = inspect.signature(flavour).parameters["max_payload_bytes"]  # type: ignore[arg-type]
    assert option.kind is inspect.Parameter.KEYWORD_ONLY
    assert option.default == 64 * 1024


async def test_a_delivery_failure_is_a_note_on_the_blocks_own_error(
    tmp_path: Path, sockdir: Path
) -> None:
    socket = sockdir / "c.sock"
    collector = Collector(tmp_path / "out", address=UnixAddress(socket))
    stopped = anyio.Event()

    async def serve(*, task_status: Any) -> None:
        await collector.run(task_status=task_status)
        stopped.set()

    async with anyio.create_task_group() as service:
        await service.start(serve)
        with pytest.raises(LookupError, match="the user's own error") as caught:
            async with tracebus.connect(socket, "wf", reconnect_timeout=0.3) as obs:
                await obs.flush()
                collector.stop()
                await stopped.wait()
                await obs.note("not delivered")
                raise LookupError("the user's own error")
    (note,) = caught.value.__notes__
    assert note.startswith("tracebus: closing the run also failed: DeliveryError: ")
