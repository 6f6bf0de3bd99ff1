"""Token usage and cost per model: usage events, the metadata's totals, the run's end."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import tracebus
from tests.conftest import Quiet, metadata_of, trace_of

pytestmark = pytest.mark.anyio


async def test_usage_is_recorded_per_call_and_totalled_per_model_and_node(
    out: Path, quiet: Quiet
) -> None:
    console = io.StringIO()
    async with tracebus.Observer("wf", out, progress=False, console=console) as obs:
        async with obs.node("agent") as agent:
            agent.cost(0.01)
            await agent.usage("gpt-x", input_tokens=1000, output_tokens=200, cost_usd=0.02)
            async with obs.node("tool"):
                await obs.usage("small-y", 300, 50, 0.001, cached_tokens=100)
                await obs.usage("small-y", 200, 25, 0.0005, cached_tokens=20, reasoning_tokens=7)
        await obs.usage("gpt-x", 10, 5)  # outside every node: the run's own

    trace = trace_of(obs.trace_file)
    usage = [e for e in trace if e["event_type"] == "usage"]
    assert [(e["node_id"], e["model"], e["input_tokens"], e["output_tokens"]) for e in usage] == [
        ("agent", "gpt-x", 1000, 200),
        ("tool", "small-y", 300, 50),
        ("tool", "small-y", 200, 25),
        (None, "gpt-x", 10, 5),
    ]
    assert usage[1]["counters"] == {"cached_tokens": 100}
    assert usage[3]["cost_usd"] == 0.0 and usage[3]["counters"] == {}

    by_model = {
        "gpt-x": {"calls": 2, "input_tokens": 1010, "output_tokens": 205, "cost_usd": 0.02},
        "small-y": {
            "calls": 2,
            "input_tokens": 500,
            "output_tokens": 75,
            "cost_usd": pytest.approx(0.0015),
            "cached_tokens": 120,
            "reasoning_tokens": 7,
        },
    }
    metadata = metadata_of(obs.metadata_file)
    assert metadata["usage_by_model"] == by_model
    assert metadata["node_usage"] == {
        "agent": {"input_tokens": 1000, "output_tokens": 200, "cost_usd": 0.02},
        "tool": {
            "input_tokens": 500,
            "output_tokens": 75,
            "cost_usd": pytest.approx(0.0015),
            "cached_tokens": 120,
            "reasoning_tokens": 7,
        },
    }
    assert metadata["node_costs"] == {"agent": 0.01}  # the nodes' own costs, as before
    assert metadata["cumulative_cost_usd"] == pytest.approx(0.01 + 0.02 + 0.0015)
    end = trace[-1]
    assert end["event_type"] == "workflow_complete"
    assert end["usage_by_model"] == by_model
    assert end["cumulative_cost_usd"] == pytest.approx(0.0315)

    text = console.getvalue()
    assert " Cost: $0.0315\n" in text
    assert " Tokens: 1510 in / 280 out\n" in text
    assert "   gpt-x: 2 calls, 1010 in / 205 out, $0.0200\n" in text
    assert "   small-y: 2 calls, 500 in / 75 out, $0.0015\n" in text
    log = obs.log_file.read_text()
    assert "] USAGE tool | " in log and '"model":"small-y"' in log
    assert "   small-y: 2 calls, 500 in / 75 out, $0.0015" in log


async def test_a_run_without_usage_writes_as_before(out: Path) -> None:
    console = io.StringIO()
    async with tracebus.Observer("wf", out, progress=False, console=console) as obs:
        async with obs.node("a") as node:
            node.cost(0.5)
    trace = trace_of(obs.trace_file)
    assert "usage_by_model" not in trace[-1]
    assert '"usage_by_model"' not in obs.log_file.read_text()
    metadata = metadata_of(obs.metadata_file)
    assert metadata["usage_by_model"] == {} and metadata["node_usage"] == {}
    assert metadata["cumulative_cost_usd"] == 0.5
    assert "Tokens" not in console.getvalue()


async def test_bad_usage_values_are_refused_at_the_call(out: Path, quiet: Quiet) -> None:
    async with quiet.Observer("wf", out) as obs:
        with pytest.raises(TypeError, match="usage: input_tokens must be an int, not str"):
            await obs.usage("m", "12")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="usage: cost_usd must be finite"):
            await obs.usage("m", 1, 1, float("nan"))
        with pytest.raises(TypeError, match="usage: cached_tokens must be an int, not float"):
            await obs.usage("m", 1, 1, cached_tokens=1.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="a counter cannot be named 'calls'"):
            await obs.usage("m", 1, 1, calls=3)
        with pytest.raises(TypeError, match="usage: model must be a str, not NoneType"):
            await obs.usage(None)  # type: ignore[arg-type]
    assert metadata_of(obs.metadata_file)["usage_by_model"] == {}


def test_sync_observer_node_usage(out: Path, quiet: Quiet) -> None:
    with quiet.SyncObserver("wf", out) as obs:
        with obs.node("call") as node:
            node.usage("m", 3, 4, 0.25)
            obs.usage("m", 1, 1)
    metadata = metadata_of(obs.metadata_file)
    assert metadata["usage_by_model"] == {
        "m": {"calls": 2, "input_tokens": 4, "output_tokens": 5, "cost_usd": 0.25}
    }
    assert metadata["node_usage"]["call"]["input_tokens"] == 4
    assert metadata["cumulative_cost_usd"] == 0.25
