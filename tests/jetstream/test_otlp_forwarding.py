"""``tracebus serve --nats ... --otlp-endpoint URL``: the runs collected from JetStream go to
the OTLP/HTTP endpoint too."""

from __future__ import annotations

import json
from pathlib import Path

import tracebus
from tests.otlp_receiver import OtlpReceiver
from tracebus._nats._settings import NatsSettings

from .conftest import Collector


async def test_the_nats_collector_forwards_its_runs(
    shared: NatsSettings, tmp_path: Path, collectors: list[Collector]
) -> None:
    receiver = OtlpReceiver().start()
    out = tmp_path / "out"
    collector = Collector(shared, out, "--otlp-endpoint", receiver.url)
    collectors.append(collector)
    collector.start()
    async with tracebus.connect(shared, "wf-otlp", 2, run_id="run-1", producer="p") as obs:
        async with obs.node("outer", 0):
            async with obs.node("inner", 1):
                pass
    receiver.wait_for(lambda r: len(r.spans) == 3)
    collector.stop()
    receiver.stop()
    named = {span.name: span for span in receiver.spans}
    assert named["inner"].parent_span_id == named["outer"].span_id
    assert named["outer"].parent_span_id == named["wf-otlp"].span_id
    (metadata_file,) = out.glob("audit/step_*/metadata_*.json")
    report = json.loads(metadata_file.read_text())["sinks"]["otlp"]
    assert (report["spans_sent"], report["spans_dropped"]) == (3, 0)
