"""Nesting, dependencies and token usage read back: ``read_run`` and the attempt table, on
runs written by the Observer, on their version 1 twins and on the seed's traces."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

import tracebus
from tests.conftest import Quiet, trace_of
from tracebus._tools._attempts import read_attempts
from tracebus._tools._lines import TraceLine, line_types

from . import runs

BIG = {"calls": 2, "input_tokens": 1500, "output_tokens": 300, "cost_usd": pytest.approx(0.03)}
SMALL = {
    "calls": 3,
    "input_tokens": 510,
    "output_tokens": 80,
    "cost_usd": pytest.approx(0.0015),
    "cached_tokens": 100,
}


def _as_version_1(trace_file: Path, into: Path) -> Path:
    """The run as a version 1 writer wrote it: no usage events, no parents, no dependencies."""
    lines = []
    for event in trace_of(trace_file):
        if event["event_type"] == "usage":
            continue
        for new in ("parent_id", "depends_on", "usage_by_model"):
            event.pop(new, None)
        event["schema_version"] = 1
        lines.append(json.dumps(event) + "\n")
    into.write_text("".join(lines))
    return into


def test_read_run_gives_each_node_its_parent_children_and_dependencies(
    agent_dir: Path,
) -> None:
    run = tracebus.read_run(agent_dir)
    shape = {n.node_id: (n.parent_id, n.children, n.depends_on) for n in run.nodes}
    assert shape == {
        "plan": (None, (), ()),
        "research": (None, ("search", "fetch"), ("plan",)),
        "search": ("research", (), ()),
        "fetch": ("research", (), ("search",)),
        "answer": (None, (), ("research", "plan")),
    }
    assert [n.node_id for n in run.top_level] == ["plan", "research", "answer"]
    assert run.node("fetch").parent_id == "research"
    with pytest.raises(KeyError):
        run.node("nowhere")


def test_read_run_totals_usage_per_model_and_per_node(agent_dir: Path) -> None:
    run = tracebus.read_run(agent_dir)
    assert run.usage_by_model == {"big-model": BIG, "small-model": SMALL}
    assert run.metadata is not None
    assert run.usage_by_model == run.metadata["usage_by_model"]
    search = run.node("search")
    assert search.usage_by_model == {
        "small-model": {
            "calls": 2,
            "input_tokens": 500,
            "output_tokens": 75,
            "cost_usd": pytest.approx(0.0015),
            "cached_tokens": 100,
        }
    }
    assert (search.input_tokens, search.output_tokens) == (500, 75)
    assert search.usage_cost_usd == pytest.approx(0.0015)
    assert search.cost_usd == 0.0  # the node's own cost stays its own
    assert run.node("fetch").cost_usd == pytest.approx(0.003)
    assert run.node("research").usage_by_model == {}
    tokens = {n.node_id: (n.input_tokens, n.output_tokens) for n in run.nodes}
    assert tokens == {
        "plan": (1000, 200),
        "research": (0, 0),
        "search": (500, 75),
        "fetch": (0, 0),
        "answer": (500, 100),
    }
    assert run.usage_cost_usd == pytest.approx(0.0315)
    assert run.cost_usd == pytest.approx(0.0345)  # reported at completion: usage included


def test_a_version_1_trace_has_top_level_nodes_and_no_usage(
    agent_dir: Path, tmp_path: Path
) -> None:
    old = tracebus.read_run(_as_version_1(runs.only_trace(agent_dir), tmp_path / "v1.jsonl"))
    new = tracebus.read_run(agent_dir)
    assert [n.node_id for n in old.nodes] == [n.node_id for n in new.nodes]
    assert {(n.parent_id, n.children, n.depends_on) for n in old.nodes} == {(None, (), ())}
    assert old.usage_by_model == {} and old.usage_cost_usd == 0.0
    assert {n.input_tokens for n in old.nodes} == {0}
    assert len(old.top_level) == 5
    assert (old.status, old.counts) == (new.status, new.counts)


def test_the_seed_observers_trace_has_top_level_nodes(seed_dir: Path) -> None:
    run = tracebus.read_run(seed_dir)
    assert run.seed_format
    assert [(n.parent_id, n.children, n.depends_on) for n in run.nodes] == [(None, (), ())] * 4
    assert run.usage_by_model == {}


def test_the_attempt_table_has_parents_dependencies_and_tokens(agent_dir: Path) -> None:
    facts, table = read_attempts(agent_dir)
    ids = facts.node_ids
    rows = {
        ids[table.slot[i]]: (
            None if (parent := table.parent_of(i)) is None else ids[parent],
            [ids[s] for s in table.depends_on.get(i, ())],
            table.input_tokens[i],
            table.output_tokens[i],
            round(table.usage_cost[i], 6),
        )
        for i in range(len(table))
    }
    assert rows == {
        "plan": (None, [], 1000, 200, 0.02),
        "research": (None, ["plan"], 0, 0, 0.0),
        "search": ("research", [], 500, 75, 0.0015),
        "fetch": ("research", ["search"], 0, 0, 0.0),
        "answer": (None, ["research", "plan"], 500, 100, 0.01),
    }
    assert [facts.children_of(s) for s in range(len(ids))] == [
        [],
        ["search", "fetch"],
        [],
        [],
        [],
    ]
    assert facts.usage_by_model == {"big-model": BIG, "small-model": SMALL}


def test_an_unknown_upstream_node_is_named_but_has_no_slot(out: Path, quiet: Quiet) -> None:
    with quiet.SyncObserver("wf", out) as obs:
        with obs.node("load", depends_on=["yesterday"]):
            pass
    run = tracebus.read_run(obs.trace_file)
    assert run.node("load").depends_on == ("yesterday",)
    facts, table = read_attempts(obs.trace_file)
    assert table.depends_on == {0: ()}
    assert facts.node_ids == ["load"]


def test_a_parent_named_before_it_starts_is_a_node_of_the_run(out: Path, quiet: Quiet) -> None:
    with quiet.SyncObserver("wf", out) as obs:
        obs.node_start("page_1", parent="crawl")
        obs.node_success("page_1", 0.1)
        obs.node_start("crawl")
        obs.node_success("crawl", 0.2)
        obs.node_start("page_2", parent="crawl")
        obs.node_success("page_2", 0.1)
        obs.node_start("orphan", parent="batch_7")  # a parent that never runs
        obs.node_success("orphan", 0.1)
    run = tracebus.read_run(obs.trace_file)
    assert [(n.node_id, n.status, n.parent_id, n.children) for n in run.nodes] == [
        ("page_1", "success", "crawl", ()),
        ("crawl", "success", None, ("page_1", "page_2")),
        ("page_2", "success", "crawl", ()),
        ("orphan", "success", "batch_7", ()),
        ("batch_7", "pending", None, ("orphan",)),
    ]
    assert run.counts.nodes_seen == 4  # the writer's counts: batch_7 had no event of its own


def test_explicit_parents_that_would_make_a_cycle_are_left_out(out: Path, quiet: Quiet) -> None:
    with quiet.SyncObserver("wf", out) as obs:
        obs.node_start("a", parent="b")
        obs.node_start("b", parent="a")  # b is a's parent already
        obs.node_success("b", 0.1)
        obs.node_success("a", 0.1)
    run = tracebus.read_run(obs.trace_file)
    assert [(n.node_id, n.parent_id, n.children) for n in run.nodes] == [
        ("a", "b", ()),
        ("b", None, ("a",)),
    ]


def test_a_malformed_dependency_list_stops_the_reader(tmp_path: Path, agent_dir: Path) -> None:
    trace = tmp_path / "bad.jsonl"
    lines = runs.only_trace(agent_dir).read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if '"depends_on"' in line)
    event = json.loads(lines[start])
    event["depends_on"] = ["plan", 7]
    lines[start] = json.dumps(event) + "\n"
    trace.write_text("".join(lines))
    message = f"{trace}:{start + 1}: depends_on is not a list of strings"
    with pytest.raises(tracebus.TraceFormatError, match=message):
        read_attempts(trace)
    with pytest.raises(tracebus.TraceFormatError, match=message):
        tracebus.read_run(trace)


def test_the_typed_line_checks_each_field_as_the_value_rules_do() -> None:
    for field in msgspec.structs.fields(TraceLine):
        expected = line_types()[field.name]
        if field.name == "run_id":  # unset in the seed's traces, which it tells apart
            expected = expected | msgspec.UnsetType
        assert field.type == expected, field.name
