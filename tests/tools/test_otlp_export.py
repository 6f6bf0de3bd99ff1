from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from google.protobuf import json_format  # type: ignore[import-untyped]
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status, TracesData

from tracebus import read_run
from tracebus.cli import main

from . import runs

_IDS = {"traceId": 32, "spanId": 16, "parentSpanId": 16}


def parse_otlp_json(line: str) -> TracesData:
    """Decode one OTLP/JSON line with protobuf's JSON parser (unknown fields are errors).

    OTLP/JSON differs from protobuf's JSON mapping in one respect: trace and span ids are
    hex, where protobuf writes bytes as base64. They are checked as hex and handed to the
    parser as base64; everything else goes to it untouched.
    """
    data = json.loads(line)
    for resource in data["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key, length in _IDS.items():
                    if key in span:
                        assert re.fullmatch(rf"[0-9a-f]{{{length}}}", span[key]), span[key]
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    traces: TracesData = json_format.ParseDict(data, TracesData())
    return traces


def export(run: Path, tmp_path: Path) -> list[TracesData]:
    target = tmp_path / "run.otlp.jsonl"
    assert main(["export", str(run), "--format", "otlp", "-o", str(target)]) == 0
    lines = target.read_text().splitlines()
    assert lines and all(line.startswith('{"resourceSpans"') for line in lines)
    return [parse_otlp_json(line) for line in lines]


def spans_of(batches: list[TracesData]) -> list[Span]:
    return [
        span
        for data in batches
        for resource in data.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]


def root_and_children(spans: list[Span]) -> tuple[Span, list[Span]]:
    """The workflow's span (written last: its end is known last) and the others."""
    (root,) = [span for span in spans if not span.parent_span_id]
    assert spans[-1] is root
    return root, spans[:-1]


def attributes(span: Span) -> dict[str, object]:
    values: dict[str, object] = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        values[kv.key] = getattr(kv.value, kind)
    return values


def test_root_span_and_children(success_dir: Path, tmp_path: Path) -> None:
    run = read_run(success_dir)
    spans = spans_of(export(success_dir, tmp_path))
    root, children = root_and_children(spans)
    assert root.name == "step_03_load" and root.parent_span_id == b""
    assert root.trace_id.hex() == run.run_id
    assert len(root.span_id) == 8 and len(root.trace_id) == 16
    assert sorted(c.name for c in children) == sorted(n.node_id for n in run.nodes)
    assert {c.trace_id for c in children} == {root.trace_id}
    assert {c.parent_span_id for c in children} == {root.span_id}
    assert len({c.span_id for c in spans}) == len(spans)
    for child in children:
        assert root.start_time_unix_nano <= child.start_time_unix_nano
        assert child.start_time_unix_nano <= child.end_time_unix_nano <= root.end_time_unix_nano
        assert child.kind == Span.SPAN_KIND_INTERNAL
        assert child.status.code == Status.STATUS_CODE_UNSET
    enrich = attributes(next(c for c in children if c.name == "enrich"))
    assert enrich["tracebus.node_id"] == "enrich"
    assert enrich["tracebus.node_index"] == 1
    assert enrich["tracebus.status"] == "success"
    assert enrich["tracebus.cost_usd"] == pytest.approx(0.02)
    assert enrich["tracebus.output_summary"] == '{"rows": 10}'
    assert re.fullmatch(r"[0-9a-f]{16}", str(enrich["tracebus.output_hash"]))
    assert [e.name for e in root.events] == ["halfway"]
    assert attributes(root.events[0])["tracebus.fields.rows"] == 30


def test_times_are_nanosecond_strings_and_ids_hex(success_dir: Path, tmp_path: Path) -> None:
    export(success_dir, tmp_path)
    text = (tmp_path / "run.otlp.jsonl").read_text()
    assert re.search(r'"startTimeUnixNano":"\d{19}"', text)
    assert re.search(r'"traceId":"[0-9a-f]{32}"', text)
    assert re.search(r'"spanId":"[0-9a-f]{16}"', text)


def test_failed_nodes_have_error_status(failure_dir: Path, tmp_path: Path) -> None:
    spans = spans_of(export(failure_dir, tmp_path))
    errors = {s.name: s.status for s in spans if s.status.code == Status.STATUS_CODE_ERROR}
    assert sorted(errors) == ["b", "d"]
    assert errors["b"].message == "ValueError: bad input in b"
    assert attributes(next(s for s in spans if s.name == "b"))["tracebus.error"] == (
        "ValueError: bad input in b"
    )


def test_workflow_error_marks_the_root(error_dir: Path, tmp_path: Path) -> None:
    root, _ = root_and_children(spans_of(export(error_dir, tmp_path)))
    assert root.status.code == Status.STATUS_CODE_ERROR
    assert root.status.message == "ConnectionError: database unreachable"


def test_attempts_are_spans_and_retries_span_events(retry_dir: Path, tmp_path: Path) -> None:
    spans = spans_of(export(retry_dir, tmp_path))
    fetch = [s for s in spans if s.name == "fetch"]
    assert [attributes(s)["tracebus.attempt"] for s in fetch] == [1, 2]
    assert [s.status.code for s in fetch] == [Status.STATUS_CODE_ERROR, Status.STATUS_CODE_UNSET]
    (parse,) = [s for s in spans if s.name == "parse"]
    assert [e.name for e in parse.events] == ["retry"]
    assert attributes(parse.events[0])["tracebus.error"] == "lock busy"
    (cache,) = [s for s in spans if s.name == "cache"]
    assert attributes(cache)["tracebus.reason"] == "up to date"


def test_large_runs_are_split_over_lines(tmp_path: Path) -> None:
    out = runs.synthetic_run(tmp_path / "many", nodes=2500, workers=16)
    batches = export(out, tmp_path)
    assert len(batches) == 3
    spans = spans_of(batches)
    assert len(spans) == 2501
    root, children = root_and_children(spans)
    assert all(s.parent_span_id == root.span_id for s in children)


def test_seed_run_gets_a_derived_trace_id(seed_dir: Path, tmp_path: Path) -> None:
    spans = spans_of(export(seed_dir, tmp_path))
    assert len(spans) == 5
    assert root_and_children(spans)[0].trace_id != bytes(16)
    first = (tmp_path / "run.otlp.jsonl").read_text()
    export(seed_dir, tmp_path)
    assert (tmp_path / "run.otlp.jsonl").read_text() == first  # repeatable


def test_unknown_fields_become_attributes(tmp_path: Path) -> None:
    out = tmp_path / "future"
    seed = runs.SeedWriter(out, "wf", total_nodes=1)
    seed.entry(
        "node_success",
        node_id="n",
        details={"epoch_seconds": seed.tick(0.1), "duration_seconds": 0.1, "gpu_seconds": 3.5},
    )
    seed.complete()
    _, (node,) = root_and_children(spans_of(export(out, tmp_path)))
    assert attributes(node)["tracebus.gpu_seconds"] == 3.5


@pytest.mark.parametrize("kind", ["torn", "empty"])
def test_torn_and_empty_runs(kind: str, tmp_path: Path) -> None:
    out = {"torn": runs.torn_run, "empty": runs.empty_run}[kind](tmp_path / kind)
    spans = spans_of(export(out, tmp_path))
    assert len(spans) == {"torn": 5, "empty": 1}[kind]


def test_nested_nodes_link_to_their_parent_span(tmp_path: Path) -> None:
    out = runs.logged_agent_run(tmp_path / "agent")
    root, children = root_and_children(spans_of(export(out, tmp_path)))
    by_name: dict[str, list[Span]] = {}
    for span in children:
        by_name.setdefault(span.name, []).append(span)
    (plan,) = by_name["plan"]
    assert plan.parent_span_id == root.span_id
    for name in ("search", "flaky", "answer"):
        assert {s.parent_span_id for s in by_name[name]} == {plan.span_id}, name
        assert attributes(by_name[name][0])["tracebus.parent_id"] == "plan"
    for child in children:  # a child ends before its parent's span is written
        assert plan.start_time_unix_nano <= child.start_time_unix_nano
        assert child.end_time_unix_nano <= plan.end_time_unix_nano


def test_logs_notes_and_retries_are_span_events_of_their_node(tmp_path: Path) -> None:
    out = runs.logged_agent_run(tmp_path / "agent")
    spans = spans_of(export(out, tmp_path))
    (search,) = [s for s in spans if s.name == "search"]
    (log,) = search.events
    assert log.name == "rate limited, waiting"
    assert attributes(log) == {
        "tracebus.event_type": "log",
        "tracebus.node_id": "search",
        "tracebus.logger": "tests.agent",
        "tracebus.level": "WARNING",
        "tracebus.levelno": 30,
    }
    assert search.start_time_unix_nano <= log.time_unix_nano <= search.end_time_unix_nano
    (answer,) = [s for s in spans if s.name == "answer"]
    assert [e.name for e in answer.events] == ["draft ready"]
    assert attributes(answer.events[0])["tracebus.fields.words"] == 120
    first, second = [s for s in spans if s.name == "flaky"]
    assert first.status.code == Status.STATUS_CODE_ERROR
    assert first.status.message == "ValueError: tool timed out"
    assert first.events == [] and [e.name for e in second.events] == ["retry"]
    assert attributes(second.events[0])["tracebus.attempt"] == 2


def test_usage_becomes_genai_attributes_of_the_node(tmp_path: Path) -> None:
    out = runs.logged_agent_run(tmp_path / "agent")
    spans = {s.name: attributes(s) for s in spans_of(export(out, tmp_path))}
    plan, search, answer = spans["plan"], spans["search"], spans["answer"]
    assert plan["gen_ai.request.model"] == "small-model"
    assert (plan["gen_ai.usage.input_tokens"], plan["gen_ai.usage.output_tokens"]) == (100, 20)
    # two models: the one that spent the most tokens names the call; the totals are all of them
    assert search["gen_ai.request.model"] == "large-model"
    assert search["gen_ai.usage.input_tokens"] == 350
    assert search["gen_ai.usage.output_tokens"] == 85
    assert search["tracebus.usage.calls"] == 2
    assert search["tracebus.usage.cost_usd"] == pytest.approx(0.01)
    assert json.loads(str(search["tracebus.usage_by_model"])) == {
        "large-model": {"calls": 1, "cost_usd": 0.01, "input_tokens": 300, "output_tokens": 80},
        "small-model": {"calls": 1, "cost_usd": 0.0, "input_tokens": 50, "output_tokens": 5},
    }
    assert not any(key.startswith("gen_ai.") for key in answer)


def test_odd_trace_exports_its_last_run(tmp_path: Path) -> None:
    from .test_streaming import _odd_trace

    trace = _odd_trace(tmp_path / "odd")
    root, children = root_and_children(spans_of(export(trace, tmp_path)))
    assert root.start_time_unix_nano == 10 * 10**9  # the earlier run's spans are left out
    assert sorted((s.name, attributes(s)["tracebus.status"]) for s in children) == [
        ("a", "failed"),
        ("a", "failed"),
        ("a", "running"),
        ("b", "success"),
        ("c", "success"),
        ("d", "skipped"),
        ("e", "failed"),
        ("e", "success"),
        ("f", "running"),
        ("f", "success"),
    ]
    (only_retried,) = [e for e in root.events if e.name == "retry"]
    assert attributes(only_retried)["tracebus.node_id"] == "only_retried"
    assert attributes(root)["tracebus.status"] == "incomplete"
    assert attributes(root)["tracebus.nodes_unfinished"] == 3
