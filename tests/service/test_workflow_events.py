"""Nesting, dependencies, captured logs and usage through the collector service: the
service's files hold what an in-process run's hold."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import tracebus

from .conftest import run_files, serving
from .test_client import _log_shape, _shape


async def agent_workflow(obs: Any) -> None:
    """A small agent run, for an in-process and a remote observer alike."""
    async with obs.node("plan") as plan:
        await plan.usage("model-a", input_tokens=120, output_tokens=30, cost_usd=0.002)
        async with obs.node("search", depends_on=["plan"]):
            logging.getLogger("app.tools").warning("search is slow")
            await obs.usage("model-b", 40, 10, 0.0005, cached_tokens=8)
    await obs.note("done")


def agent_events(trace: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (e["event_type"], e.get("node_id"), e.get("parent_id"), e.get("depends_on"))
        for e in trace
        if e["event_type"] not in ("workflow_start", "workflow_complete")
    ]


EXPECTED = [
    ("node_start", "plan", None, None),
    ("usage", "plan", None, None),
    ("node_start", "search", "plan", ["plan"]),
    ("log", "search", None, None),
    ("usage", "search", None, None),
    ("node_success", "search", None, None),
    ("node_success", "plan", None, None),
    ("note", None, None, None),
]


async def test_remote_nesting_logs_and_usage_match_an_in_process_run(
    tmp_path: Path, sockdir: Path
) -> None:
    async with tracebus.Observer(
        "step_01_agent",
        tmp_path / "local" / "runs",
        progress=False,
        console=None,
        capture_logging="WARNING",
    ) as local:
        await agent_workflow(local)
    async with serving(tmp_path / "remote" / "runs", sockdir / "c.sock"):
        async with tracebus.connect(
            sockdir / "c.sock", "step_01_agent", capture_logging="WARNING"
        ) as remote:
            await agent_workflow(remote)

    local_trace, local_meta = run_files(tmp_path / "local" / "runs", "01")
    remote_trace, remote_meta = run_files(tmp_path / "remote" / "runs", "01")
    assert agent_events(remote_trace) == EXPECTED
    assert _shape(remote_trace) == _shape(local_trace)
    log = next(e for e in remote_trace if e["event_type"] == "log")
    assert (log["logger"], log["message"]) == ("app.tools", "search is slow")
    for key in ("usage_by_model", "node_usage", "cumulative_cost_usd"):
        assert remote_meta.get(key) == local_meta.get(key), key
    assert _log_shape(Path(remote_meta["execution_log_file"])) == _log_shape(
        Path(local_meta["execution_log_file"])
    )
