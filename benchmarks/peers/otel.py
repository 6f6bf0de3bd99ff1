"""OpenTelemetry SDK: one span per node, ``BatchSpanProcessor`` -> ``ConsoleSpanExporter``.

Four processors, one per file: two write each span as a JSON line (the trace), two as a human
line (the log). The workflow is the parent span of every node span. Each processor's queue is
sized to hold the whole run, so no span is dropped (the default of 2048 drops under this load);
the metadata JSON is written once the provider has shut down (which drains the queues).
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from opentelemetry import context, trace
from opentelemetry.sdk.trace import ReadableSpan, Span, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from workload import WORKFLOW_ID


def _trace_line(span: ReadableSpan) -> str:
    return span.to_json(indent=None) + "\n"


def _log_line(span: ReadableSpan) -> str:
    end = datetime.fromtimestamp((span.end_time or 0) / 1e9, UTC).isoformat()
    kind = "NODE_SUCCESS" if span.parent is not None else "WORKFLOW_COMPLETE"
    return f"[{end}] {kind} {span.name} | {json.dumps(dict(span.attributes or {}))}\n"


class OtelAsync:
    def __init__(self, out: Path, nodes: int) -> None:
        self._out, self._nodes = out, nodes
        self._files: list[IO[str]] = []
        self._provider: TracerProvider | None = None
        self._workflow: Span | None = None
        self._token: object = None
        self._spans: dict[str, Any] = {}
        self._completed = 0
        self._started = time.time()
        self.traces: list[Path] = []

    async def open(self) -> None:
        out = self._out
        stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
        self._audit = out / "audit" / "step_01"
        for directory in (out / "logs", out / "traces", self._audit):
            directory.mkdir(parents=True, exist_ok=True)
        self.traces = [
            out / "traces" / f"trace_step_01_{stamp}.jsonl",
            self._audit / "trace_01.jsonl",
        ]
        logs = [out / "logs" / f"execution_{WORKFLOW_ID}_{stamp}.log", self._audit / "log_01.log"]
        provider = TracerProvider()
        queue_size = max(2048, self._nodes + 16)  # never below the default of 2048
        for path, formatter in [(p, _trace_line) for p in self.traces] + [
            (p, _log_line) for p in logs
        ]:
            handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self._files.append(handle)
            exporter = ConsoleSpanExporter(out=handle, formatter=formatter)
            provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=queue_size))
        self._provider = provider
        self._tracer = provider.get_tracer("bench")
        workflow = self._tracer.start_span(
            WORKFLOW_ID, attributes={"pid": os.getpid(), "total_nodes": self._nodes}
        )
        self._workflow = workflow  # type: ignore[assignment]
        self._token = context.attach(trace.set_span_in_context(workflow))

    async def node_start(self, node_id: str, index: int) -> None:
        self._spans[node_id] = self._tracer.start_span(node_id, attributes={"node_index": index})

    async def node_success(
        self, node_id: str, index: int, duration: float, output_hash: str, summary: Any
    ) -> None:
        span = self._spans.pop(node_id)
        span.set_attributes(
            {
                "duration_seconds": duration,
                "output_hash": output_hash,
                "output_summary": json.dumps(summary),
            }
        )
        span.end()
        self._completed += 1

    async def close(self) -> None:
        assert self._workflow is not None and self._provider is not None
        elapsed = time.time() - self._started
        self._workflow.set_attributes(
            {"nodes_completed": self._completed, "total_time_seconds": elapsed}
        )
        self._workflow.end()
        context.detach(self._token)  # type: ignore[arg-type]
        self._provider.shutdown()
        for handle in self._files:
            handle.close()
        metadata = {
            "workflow_id": WORKFLOW_ID,
            "pid": os.getpid(),
            "total_nodes": self._nodes,
            "nodes_completed": self._completed,
            "total_time_seconds": elapsed,
        }
        with open(self._audit / "metadata_01.json", "w") as handle:
            json.dump(metadata, handle, indent=2)

    def trace_files(self) -> list[Path]:
        return self.traces
