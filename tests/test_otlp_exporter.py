"""OtlpExporter against a real OTLP/HTTP receiver: the spans of the file export, sent while
the run executes; the root under the process's trace context; a receiver that goes away and
comes back (retried, none lost), or never comes back (counted in the metadata); nothing of
it holds up the run's own files."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from google.protobuf import json_format  # type: ignore[import-untyped]
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.trace import TracerProvider

import tracebus
from tests.conftest import Quiet, assert_consistent_run, metadata_of, trace_of
from tests.otlp_receiver import OtlpReceiver
from tests.tools.test_otlp_export import attributes, export, spans_of
from tracebus import OtlpExporter
from tracebus._otlp_spans import TraceParent

pytestmark = pytest.mark.anyio

PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def receiver() -> OtlpReceiver:
    return OtlpReceiver().start()


async def agent(obs: tracebus.Observer) -> None:
    """Nested nodes, a log line, a note, usage of two models, a failed attempt retried."""
    log = logging.getLogger("tests.otlp")
    async with obs.node("plan", 0) as plan:
        await plan.usage("small-model", 100, 20, 0.001)
        async with obs.node("search", 1) as search:
            log.warning("rate limited, waiting")
            await search.usage("large-model", 300, 80, 0.01)
        try:
            async with obs.node("flaky", 2):
                raise ValueError("tool timed out")
        except ValueError:
            await obs.node_retry("flaky", 2, "ValueError: tool timed out")
        async with obs.node("flaky", 2):
            await obs.note("second try", rows=3)


async def wait_until(condition: Callable[[], bool]) -> None:
    """Wait for ``condition`` to hold (checked every 10 ms; a hang fails after a minute): it
    reads counters the exporter's thread moves, which sets no event to wait on."""
    with anyio.fail_after(60):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.01)


def by_name(spans: list[Span]) -> dict[str, list[Span]]:
    named: dict[str, list[Span]] = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)
    return named


def comparable(span: Span) -> str:
    """A span as JSON, without the root's trace file (the file export names the trace it
    read, the live one the run's audit copy)."""
    data = json_format.MessageToDict(span)
    data["attributes"] = [a for a in data["attributes"] if a["key"] != "tracebus.trace_file"]
    return json.dumps(data, sort_keys=True)


async def test_the_run_arrives_as_the_file_export_writes_it(
    receiver: OtlpReceiver, tmp_path: Path
) -> None:
    exporter = OtlpExporter(receiver.url, flush_interval=0.01)
    async with Quiet.Observer(
        "step_01_agent", tmp_path / "out", sinks=[exporter], capture_logging="WARNING"
    ) as obs:
        await agent(obs)
        # sent while the run executes: the finished attempts are there before its end
        await anyio.to_thread.run_sync(
            receiver.wait_for, lambda r: {"search", "flaky"} <= {s.name for s in r.spans}
        )
        assert "step_01_agent" not in {s.name for s in receiver.spans}
    live = receiver.spans
    assert sorted(map(comparable, live)) == sorted(
        map(comparable, spans_of(export(tmp_path / "out", tmp_path)))
    )
    named = by_name(live)
    ((root,), (plan,), (search,)) = named["step_01_agent"], named["plan"], named["search"]
    assert root.parent_span_id == b"" and root.trace_id.hex() == obs.run_id
    assert plan.parent_span_id == root.span_id
    assert search.parent_span_id == plan.span_id
    assert {s.parent_span_id for s in named["flaky"]} == {plan.span_id}
    assert [e.name for e in search.events] == ["rate limited, waiting"]
    assert attributes(search.events[0])["tracebus.level"] == "WARNING"
    assert attributes(search)["gen_ai.request.model"] == "large-model"
    assert attributes(search)["gen_ai.usage.input_tokens"] == 300
    assert attributes(plan)["gen_ai.usage.output_tokens"] == 20
    first, second = named["flaky"]
    assert first.status.code == Status.STATUS_CODE_ERROR
    assert [e.name for e in second.events] == ["retry", "second try"]
    resource = {
        kv.key: kv.value.string_value
        for kv in receiver.requests[0].resource_spans[0].resource.attributes
    }
    assert resource["service.name"] == "step_01_agent"
    assert resource["tracebus.run_id"] == obs.run_id
    assert metadata_of(obs.metadata_file)["sinks"] == {
        "otlp": {
            "endpoint": f"{receiver.url}/v1/traces",
            "spans_sent": 5,
            "spans_dropped": 0,
            "spans_pending": 0,
            "requests_retried": 0,
            "error": None,
        }
    }
    receiver.stop()


async def test_the_root_span_is_a_child_of_the_process_traceparent(
    receiver: OtlpReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACEPARENT", f"00-{PARENT_TRACE}-{PARENT_SPAN}-01")
    async with Quiet.Observer("wf", tmp_path, sinks=[OtlpExporter(receiver.url)]) as obs:
        async with obs.node("a", 0):
            pass
    receiver.stop()
    named = by_name(receiver.spans)
    ((root,), (node,)) = named["wf"], named["a"]
    assert root.parent_span_id.hex() == PARENT_SPAN
    assert {s.trace_id.hex() for s in receiver.spans} == {PARENT_TRACE}
    assert node.parent_span_id == root.span_id
    assert attributes(root)["tracebus.run_id"] == obs.run_id


async def test_the_current_opentelemetry_span_comes_before_the_environment(
    receiver: OtlpReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACEPARENT", f"00-{PARENT_TRACE}-{PARENT_SPAN}-01")
    tracer = TracerProvider().get_tracer("tests")  # not the global provider
    with tracer.start_as_current_span("pipeline") as pipeline:
        exporter = OtlpExporter(receiver.url)
    context = pipeline.get_span_context()
    async with Quiet.Observer("wf", tmp_path, sinks=[exporter]):
        pass
    receiver.stop()
    (root,) = receiver.spans
    assert root.trace_id == context.trace_id.to_bytes(16, "big")
    assert root.parent_span_id == context.span_id.to_bytes(8, "big")


async def test_a_receiver_that_goes_away_and_comes_back_loses_nothing(
    receiver: OtlpReceiver, tmp_path: Path
) -> None:
    exporter = OtlpExporter(receiver.url, flush_interval=0.01, retry_window=120)
    async with Quiet.Observer("wf", tmp_path, sinks=[exporter]) as obs:
        async with obs.node("before", 0):
            pass
        await anyio.to_thread.run_sync(receiver.wait_for, lambda r: len(r.spans) == 1)
        receiver.stop()
        async with obs.node("while_away", 1):
            pass
        await wait_until(lambda: exporter.report()["requests_retried"] >= 2)
        receiver.start()  # the same port
        async with obs.node("after", 2):
            pass
    receiver.stop()
    assert sorted(s.name for s in receiver.spans) == ["after", "before", "wf", "while_away"]
    report = metadata_of(obs.metadata_file)["sinks"]["otlp"]
    assert (report["spans_sent"], report["spans_dropped"], report["error"]) == (4, 0, None)


async def test_a_receiver_that_never_comes_back_is_counted_in_the_metadata(
    receiver: OtlpReceiver, tmp_path: Path
) -> None:
    receiver.stop()
    exporter = OtlpExporter(receiver.url, flush_interval=0.01, retry_window=0.5)
    async with Quiet.Observer("wf", tmp_path, sinks=[exporter]) as obs:
        for index in range(3):
            async with obs.node(f"n{index}", index):
                pass
    metadata = metadata_of(obs.metadata_file)
    report = metadata["sinks"]["otlp"]
    assert (report["spans_sent"], report["spans_dropped"], report["spans_pending"]) == (0, 4, 0)
    assert report["error"].startswith("ConnectError")
    assert report["error"].endswith("(gave up after 0.5s)")
    assert report["requests_retried"] >= 1
    assert metadata["status"] == "complete" and metadata["write_errors"] == {}
    assert_consistent_run(trace_of(obs.trace_file), metadata)


async def test_retryable_answers_are_retried_and_others_drop_the_batch(
    receiver: OtlpReceiver, tmp_path: Path
) -> None:
    receiver.answers = [503, 429, 502]
    exporter = OtlpExporter(receiver.url, flush_interval=0.01)
    async with Quiet.Observer("wf", tmp_path / "a", sinks=[exporter]) as obs:
        async with obs.node("n", 0):
            pass
    assert sorted(s.name for s in receiver.spans) == ["n", "wf"]
    report = metadata_of(obs.metadata_file)["sinks"]["otlp"]
    assert (report["spans_sent"], report["requests_retried"]) == (2, 3)
    receiver.answers = [400]
    exporter = OtlpExporter(receiver.url)
    async with Quiet.Observer("wf", tmp_path / "b", sinks=[exporter]) as obs:
        pass
    report = metadata_of(obs.metadata_file)["sinks"]["otlp"]
    assert (report["spans_sent"], report["spans_dropped"]) == (0, 1)
    assert report["error"] == f"HTTP 400 from {receiver.url}/v1/traces"
    receiver.stop()


async def test_a_hung_receiver_holds_up_nothing_but_its_own_spans(
    receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """The receiver takes the request and never answers: the run's files are complete, and
    the exporter, stopped at the close deadline, counts what it did not get through."""
    receiver.hold = threading.Event()
    exporter = OtlpExporter(receiver.url, flush_interval=0.01, max_batch=1, close_timeout=0.3)
    try:
        async with Quiet.Observer("wf", tmp_path, sinks=[exporter], close_timeout=4.0) as obs:
            for index in range(20):
                async with obs.node(f"n{index}", index):
                    pass
    finally:
        receiver.hold.set()
    metadata = metadata_of(obs.metadata_file)
    assert metadata["nodes_completed"] == 20 and metadata["status"] == "complete"
    assert_consistent_run(trace_of(obs.trace_file), metadata)
    report = metadata["sinks"]["otlp"]
    assert (report["spans_sent"], report["spans_dropped"], report["spans_pending"]) == (0, 21, 0)
    assert report["error"] == "the run closed before they were sent"
    receiver.stop()


async def test_what_does_not_fit_the_buffer_is_dropped_and_counted(
    receiver: OtlpReceiver, tmp_path: Path
) -> None:
    receiver.hold = threading.Event()
    exporter = OtlpExporter(receiver.url, max_batch=2, max_buffer=4, flush_interval=0.01)
    async with Quiet.Observer("wf", tmp_path, sinks=[exporter]) as obs:
        for index in range(10):
            async with obs.node(f"n{index}", index):
                pass
        await wait_until(lambda: exporter.report()["spans_dropped"] > 0)
        receiver.hold.set()
    receiver.stop()
    report = metadata_of(obs.metadata_file)["sinks"]["otlp"]
    assert report["spans_sent"] + report["spans_dropped"] == 11
    assert report["spans_sent"] == len(receiver.spans) >= 4
    assert report["error"] == "fell 4 spans behind"


def test_a_sync_observer_exports_too(receiver: OtlpReceiver, tmp_path: Path) -> None:
    with Quiet.SyncObserver("wf", tmp_path, sinks=[OtlpExporter(receiver.url)]) as obs:
        with obs.node("a", 0):
            obs.usage("m", 1, 2)
    receiver.stop()
    assert sorted(s.name for s in receiver.spans) == ["a", "wf"]
    (node,) = [s for s in receiver.spans if s.name == "a"]
    assert attributes(node)["gen_ai.usage.output_tokens"] == 2
    assert obs.metadata is not None and obs.metadata["sinks"]["otlp"]["spans_sent"] == 2


def test_bad_endpoints_and_traceparents_are_refused() -> None:
    with pytest.raises(ValueError, match="an OTLP/HTTP endpoint is an http"):
        OtlpExporter("127.0.0.1:4318")
    with pytest.raises(ValueError, match="not a W3C traceparent"):
        OtlpExporter(traceparent="00-xyz")
    assert OtlpExporter("https://otel.example:4318/").url == "https://otel.example:4318/v1/traces"
    assert OtlpExporter("http://h:1/custom/path").url == "http://h:1/custom/path"


def test_traceparent_headers_are_read_by_the_w3c_rules() -> None:
    parse = TraceParent.parse
    assert parse(f"00-{PARENT_TRACE}-{PARENT_SPAN}-01") == (PARENT_TRACE, PARENT_SPAN, 1)
    assert parse(f" 00-{PARENT_TRACE.upper()}-{PARENT_SPAN}-00 ") == (
        PARENT_TRACE,
        PARENT_SPAN,
        0,
    )
    assert parse(f"01-{PARENT_TRACE}-{PARENT_SPAN}-01-later") is not None  # a later version
    for bad in (
        f"00-{'0' * 32}-{PARENT_SPAN}-01",  # all-zero trace id
        f"00-{PARENT_TRACE}-{'0' * 16}-01",
        f"ff-{PARENT_TRACE}-{PARENT_SPAN}-01",
        f"00-{PARENT_TRACE}-{PARENT_SPAN}-01-extra",  # version 00 has four fields
        "00-abc-def-01",
        "",
    ):
        assert parse(bad) is None, bad


def test_an_exporter_serves_one_run(receiver: OtlpReceiver, tmp_path: Path) -> None:
    exporter = OtlpExporter(receiver.url)
    with Quiet.SyncObserver("wf", tmp_path / "a", sinks=[exporter]):
        pass
    with pytest.raises(RuntimeError, match="serves one run"):
        with Quiet.SyncObserver("wf", tmp_path / "b", sinks=[exporter]):
            pass
    receiver.stop()
