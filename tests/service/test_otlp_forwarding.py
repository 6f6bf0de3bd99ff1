"""``tracebus serve --otlp-endpoint URL``: every run the collector writes goes to the OTLP/HTTP
endpoint while it runs, as the file export of the same run would write it."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.otlp_receiver import OtlpReceiver
from tests.tools.test_otlp_export import attributes

from ..cli import run_tracebus
from .conftest import Service, finish, run_files, spawn_producer


def test_serve_forwards_each_run_it_writes(tmp_path: Path, sockdir: Path) -> None:
    receiver = OtlpReceiver().start()
    service = Service(tmp_path / "out", sockdir / "c.sock", "--otlp-endpoint", receiver.url)
    service.start()
    try:
        producers = [
            spawn_producer(service.socket, f"step_0{n}_remote", events=20, producer=f"p{n}")
            for n in (1, 2)
        ]
        for producer in producers:
            finish(producer)
        # each run's spans are sent as it runs, its root at its end: both are there while
        # the collector still serves
        receiver.wait_for(lambda r: sum(not s.parent_span_id for s in r.spans) == 2)
    finally:
        code, _ = service.signal(signal.SIGTERM)
    assert code == 0
    receiver.stop()
    for n in (1, 2):
        trace, metadata = run_files(service.out, f"0{n}")
        run_id = metadata["run_id"]
        spans = [s for s in receiver.spans if s.trace_id.hex() == run_id]
        (root,) = [s for s in spans if not s.parent_span_id]
        assert root.name == f"step_0{n}_remote"
        assert attributes(root)["tracebus.status"] == "complete"
        assert sorted(s.name for s in spans if s.parent_span_id) == [
            f"p{n}-{index}" for index in range(10)
        ]
        assert {s.parent_span_id for s in spans if s.parent_span_id} == {root.span_id}
        assert metadata["sinks"]["otlp"]["spans_sent"] == 11
        assert metadata["sinks"]["otlp"]["spans_dropped"] == 0


def test_serve_refuses_an_endpoint_that_is_not_a_url(tmp_path: Path) -> None:
    done = run_tracebus("serve", "--out", tmp_path, "--otlp-endpoint", "localhost:4318")
    assert done.returncode == 2
    assert "--otlp-endpoint: an OTLP/HTTP endpoint is an http:// or https:// URL" in done.stderr
    assert "Traceback" not in done.stderr
