"""The standard library's answer: ``QueueHandler`` -> ``QueueListener`` -> four ``FileHandler``s.

Producers hand a record with the event's fields to a ``QueueHandler``; the listener thread
formats each record four times: the two trace handlers make a JSON line with ``json.dumps``,
the two log handlers make the human line. Header and summary are records only the log
handlers take; the metadata JSON is written once the listener has drained.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import queue
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from workload import WORKFLOW_ID

_RULE = "=" * 80


class _TraceFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = record.fields  # type: ignore[attr-defined]
        entry = {
            "timestamp": datetime.fromtimestamp(record.created).isoformat(),
            "epoch_seconds": record.created,
            "pid": record.process,
            "workflow_id": WORKFLOW_ID,
            **fields,
        }
        return json.dumps(entry)


class _LogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        banner: str | None = getattr(record, "banner", None)
        if banner is not None:
            return banner
        fields: dict[str, Any] = record.fields  # type: ignore[attr-defined]
        line = f"[{datetime.fromtimestamp(record.created).isoformat()}] {record.msg}"
        if "node_id" in fields:
            line += f" {fields['node_id']}"
        if "message" in fields:
            line += f": {fields['message']}"
        return f"{line} | {json.dumps(record.details)}"  # type: ignore[attr-defined]


def _not_banner(record: logging.LogRecord) -> bool:
    return not hasattr(record, "banner")


class LoggingAsync:
    def __init__(self, out: Path, nodes: int) -> None:
        self._out, self._nodes = out, nodes
        self._listener: logging.handlers.QueueListener | None = None
        self._handlers: list[logging.Handler] = []
        self._logger = logging.getLogger(f"bench.{id(self)}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._started = time.time()
        self._completed = 0
        self._node_times: dict[str, float] = {}
        self.traces: list[Path] = []

    async def open(self) -> None:
        self.start()

    async def node_start(self, node_id: str, index: int) -> None:
        self.record_start(node_id, index)

    async def node_success(
        self, node_id: str, index: int, duration: float, output_hash: str, summary: Any
    ) -> None:
        self.record_success(node_id, duration, output_hash, summary)

    async def close(self) -> None:
        self.finish()

    def trace_files(self) -> list[Path]:
        return self.traces

    def start(self) -> None:
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
        for path in self.traces:
            handler = logging.FileHandler(path, encoding="utf-8")
            handler.setFormatter(_TraceFormatter())
            handler.addFilter(_not_banner)
            self._handlers.append(handler)
        for path in logs:
            handler = logging.FileHandler(path, encoding="utf-8")
            handler.setFormatter(_LogFormatter())
            self._handlers.append(handler)
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._logger.addHandler(logging.handlers.QueueHandler(records))
        self._listener = logging.handlers.QueueListener(records, *self._handlers)
        self._listener.start()
        message = f"Workflow execution started: {WORKFLOW_ID}"
        details = {"workflow_id": WORKFLOW_ID, "pid": os.getpid(), "total_nodes": self._nodes}
        self._emit("workflow_start", {"message": message, **details}, details)
        header = [_RULE, f"[RUN] Executing: {WORKFLOW_ID}", f"[DIR] Output: {out}", _RULE]
        self._logger.info("header", extra={"banner": "\n".join(["", *header, ""])})

    def record_start(self, node_id: str, index: int) -> None:
        details = {"epoch_seconds": time.time()}
        self._emit("node_start", {"node_id": node_id, "node_index": index}, details)

    def record_success(self, node_id: str, duration: float, output_hash: str, summary: Any) -> None:
        self._completed += 1
        self._node_times[node_id] = duration
        details = {
            "duration_seconds": duration,
            "output_hash": output_hash,
            "epoch_seconds": time.time(),
            "output_summary": summary,
        }
        self._emit("node_success", {"node_id": node_id, **details}, details)

    def finish(self) -> None:
        elapsed = time.time() - self._started
        summary = [
            _RULE,
            f" Workflow completed: {WORKFLOW_ID}",
            f" Nodes executed: {self._completed}/{self._nodes}",
            f" Total time: {elapsed:.2f}s",
            _RULE,
        ]
        self._logger.info("summary", extra={"banner": "\n".join(["", *summary, ""])})
        details = {
            "nodes_completed": self._completed,
            "total_time_seconds": elapsed,
            "node_times": self._node_times,
            "epoch_seconds": time.time(),
        }
        self._emit("workflow_complete", dict(details), details)
        assert self._listener is not None
        self._listener.stop()
        for handler in self._handlers:
            handler.close()
        for handler in list(self._logger.handlers):
            self._logger.removeHandler(handler)
        metadata = {
            "workflow_id": WORKFLOW_ID,
            "pid": os.getpid(),
            "total_nodes": self._nodes,
            "nodes_completed": self._completed,
            "total_time_seconds": elapsed,
            "node_times": self._node_times,
        }
        with open(self._audit / "metadata_01.json", "w") as handle:
            json.dump(metadata, handle, indent=2)

    def _emit(self, event_type: str, fields: dict[str, Any], details: dict[str, Any]) -> None:
        fields["event_type"] = event_type
        self._logger.info(event_type.upper(), extra={"fields": fields, "details": details})
