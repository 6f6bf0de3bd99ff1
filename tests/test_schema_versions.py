"""Schema version 2 and the traces before it: a version 1 trace (the same run without the
new fields and events) and the old observer's trace read back as they did."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

import tracebus
from tests.compat.seed_observer import SeedObserver
from tests.conftest import Quiet, trace_of

from .cli import run_tracebus

pytestmark = pytest.mark.anyio

_NEW_FIELDS = ("parent_id", "depends_on", "usage_by_model")
_NEW_EVENTS = ("log", "usage")


def _as_version_1(trace: list[dict[str, Any]]) -> str:
    lines = []
    for event in trace:
        if event["event_type"] in _NEW_EVENTS:
            continue
        old = {k: v for k, v in event.items() if k not in _NEW_FIELDS}
        old["schema_version"] = 1
        lines.append(json.dumps(old))
    return "\n".join(lines) + "\n"


def _summary(trace_file: Path) -> dict[str, Any]:
    done = run_tracebus("summary", "--json", trace_file)
    assert done.returncode == 0, done.stderr
    figures: dict[str, Any] = json.loads(done.stdout)
    return figures


async def test_a_version_2_run_reads_as_its_version_1_twin(
    out: Path, quiet: Quiet, tmp_path: Path
) -> None:
    async with quiet.Observer("wf", out, capture_logging="WARNING") as obs:
        async with obs.node("outer") as outer:
            outer.cost(0.5)
            logging.getLogger("app").warning("careful")
            async with obs.node("inner", depends_on=["setup"]):
                await obs.usage("m", 10, 2)
    trace = trace_of(obs.trace_file)
    assert {e["schema_version"] for e in trace} == {2}
    old = tmp_path / "trace_v1.jsonl"
    old.write_text(_as_version_1(trace))

    new_run, old_run = tracebus.read_run(obs.trace_file), tracebus.read_run(old)
    assert [(n.node_id, n.status) for n in new_run.nodes] == [
        (n.node_id, n.status) for n in old_run.nodes
    ]
    assert (new_run.status, new_run.counts) == (old_run.status, old_run.counts)
    new_figures, old_figures = _summary(obs.trace_file), _summary(old)
    for key in ("status", "nodes_completed", "nodes_failed", "total_nodes"):
        assert new_figures.get(key) == old_figures.get(key), key


def test_the_old_observers_trace_still_reads(tmp_path: Path) -> None:
    seed = SeedObserver("step_03_old", str(tmp_path / "runs"), 2, use_tqdm=False)
    seed.node_start("a", 1)
    seed.node_success("a", 0.1, output_summary={"rows": 1})
    seed.node_start("b", 2)
    seed.node_failure("b", "boom", 0.2)
    seed.workflow_complete(0.0)
    run = tracebus.read_run(seed.trace_file)
    assert run.seed_format
    assert [(n.node_id, n.status) for n in run.nodes] == [("a", "success"), ("b", "failed")]
