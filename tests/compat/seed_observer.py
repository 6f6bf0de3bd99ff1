"""A stand-in for the old synchronous ``ExecutionObserver``, written for the comparison tests.

It reproduces what a user of the old observer saw, from a reading of it: the same files in
the same places and modes (created by ``open(..., "a")`` and ``open(..., "w")``, so 0o666
less the umask), the same trace entries and log lines, the same header and summary on
stdout and in the log, the same metadata, the same tqdm bar (drawn on stderr and copied,
ANSI codes stripped, into both logs) and the same per-node console lines without it. Every
event is written before the call returns, each file opened, appended to and closed.

One thing is added: a lock around each call. The old observer had none, and its counters
could lose an update under a thread pool; the comparison is about formats, not that race.

``benchmarks/peers/seed.py`` is another stand-in, for throughput only: it leaves out the bar
and the console lines on purpose (cheaper than the old observer), and the recorded benchmark
figures were measured with it as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

_ANSI = re.compile(r"\x1B(?:[@-Z\\-_]|\[[0-?]*[ -/]*[@-~])")
_RULE = "=" * 80


class _BarToLogs:
    """Where the bar writes: stderr as it is, and both logs with ANSI codes stripped."""

    def __init__(self, log_file: Path, audit_log_file: Path) -> None:
        self._logs = (log_file, audit_log_file)
        self._stderr: TextIO = sys.stderr

    def write(self, text: str) -> None:
        self._stderr.write(text)
        clean = _ANSI.sub("", text)
        if clean.strip():
            for path in self._logs:
                with open(path, "a") as handle:
                    handle.write(clean)

    def flush(self) -> None:
        self._stderr.flush()


class SeedObserver:
    """The old observer's constructor, methods and attributes, and its outputs."""

    def __init__(
        self, workflow_id: str, output_dir: str, total_nodes: int, use_tqdm: bool = True
    ) -> None:
        self._lock = threading.RLock()
        self.workflow_id = workflow_id
        self.output_dir = Path(output_dir)
        self.total_nodes = total_nodes
        self.use_tqdm = use_tqdm
        self.pid = os.getpid()
        self.start_time = datetime.now()
        self.workflow_start_epoch = time.time()
        match = re.search(r"step_(\d+)", workflow_id)
        self.step_num = match.group(1) if match else "00"
        self.logs_dir = self.output_dir / "logs"
        self.traces_dir = self.output_dir / "traces"
        self.audit_dir = self.output_dir / "audit" / f"step_{self.step_num}"
        for directory in (self.logs_dir, self.traces_dir, self.audit_dir):
            directory.mkdir(parents=True, exist_ok=True)
        stamp = self.start_time.strftime("%Y%m%d_%H%M%S")
        self.log_file = self.logs_dir / f"execution_{workflow_id}_{stamp}.log"
        self.audit_log_file = self.audit_dir / f"log_{self.step_num}.log"
        self.trace_file = self.traces_dir / f"trace_step_{self.step_num}_{stamp}.jsonl"
        self.audit_trace_file = self.audit_dir / f"trace_{self.step_num}.jsonl"
        self.progress_bar: Any = None
        if use_tqdm:
            self.progress_bar = tqdm(
                total=total_nodes,
                desc=f"Executing {workflow_id}",
                unit="node",
                ncols=100,
                bar_format="{desc} |{bar}| [{n_fmt}/{total_fmt}] {postfix}",
                file=_BarToLogs(self.log_file, self.audit_log_file),
            )
        self.nodes_completed = 0
        self.nodes_failed = 0
        self.node_times: dict[str, float] = {}
        self.node_outputs: dict[str, dict[str, Any]] = {}
        self.node_start_time: float | None = None
        self.current_node_id: str | None = None
        self._entry(
            "workflow_start",
            message=f"Workflow execution started: {workflow_id}",
            details={
                "workflow_id": workflow_id,
                "pid": self.pid,
                "timestamp": self.start_time.isoformat(),
                "total_nodes": total_nodes,
            },
        )
        self._show(
            f"[RUN] Executing: {workflow_id}",
            f"[DIR] Output: {self.output_dir.absolute()}",
            f" PID: {self.pid}",
            f" Started: {self.start_time.strftime('%Y-%m-%d %H:%M:%S')}",
        )

    def node_start(self, node_id: str, node_index: int) -> None:
        with self._lock:
            self.node_start_time = time.time()
            self.current_node_id = node_id
            label = f"[{node_index}/{self.total_nodes}] {node_id}"
            if self.progress_bar is not None:
                self.progress_bar.set_postfix_str(label)
            else:
                print(f" {label}...", end=" ", flush=True)
            self._entry(
                "node_start",
                node_id=node_id,
                node_index=node_index,
                details={"epoch_seconds": time.time()},
            )

    def node_success(
        self,
        node_id: str,
        duration_seconds: float,
        output_hash: str | None = None,
        output_summary: dict[str, Any] | None = None,
    ) -> None:
        with self._lock:
            self.nodes_completed += 1
            self.node_times[node_id] = duration_seconds
            if output_summary:
                self.node_outputs[node_id] = output_summary
            if self.progress_bar is not None:
                self.progress_bar.update(1)
            else:
                print(f" ({duration_seconds:.2f}s)")
            self._entry(
                "node_success",
                node_id=node_id,
                details={
                    "duration_seconds": duration_seconds,
                    "output_hash": output_hash,
                    "epoch_seconds": time.time(),
                    "output_summary": output_summary,
                },
            )

    def node_failure(self, node_id: str, error_msg: str, duration_seconds: float) -> None:
        with self._lock:
            self.nodes_failed += 1
            self.node_times[node_id] = duration_seconds
            if self.progress_bar is not None:
                self.progress_bar.set_postfix_str(f" {node_id}")
            else:
                print(f" Error: {error_msg} ({duration_seconds:.2f}s)")
            self._entry(
                "node_failure",
                node_id=node_id,
                details={
                    "duration_seconds": duration_seconds,
                    "error": error_msg,
                    "epoch_seconds": time.time(),
                },
            )

    def workflow_complete(self, cumulative_cost_usd: float = 0.0) -> None:
        with self._lock:
            elapsed = time.time() - self.workflow_start_epoch
            if self.progress_bar is not None:
                self.progress_bar.close()
            lines = [
                f" Workflow completed: {self.workflow_id}",
                f" Nodes executed: {self.nodes_completed}/{self.total_nodes}",
            ]
            if self.nodes_failed > 0:
                lines.append(f" Nodes failed: {self.nodes_failed}")
            lines.append(f" Total time: {elapsed:.2f}s ({elapsed / 60:.2f}m)")
            if cumulative_cost_usd > 0:
                lines.append(f" Cost: ${cumulative_cost_usd:.4f}")
            lines += [
                f" Trace file: {self.trace_file.relative_to(self.output_dir.parent)}",
                f" Log file: {self.log_file.relative_to(self.output_dir.parent)}",
            ]
            self._show(*lines)
            self._entry(
                "workflow_complete",
                details={
                    "workflow_id": self.workflow_id,
                    "nodes_completed": self.nodes_completed,
                    "nodes_failed": self.nodes_failed,
                    "total_time_seconds": elapsed,
                    "cumulative_cost_usd": cumulative_cost_usd,
                    "trace_file": str(self.trace_file),
                    "log_file": str(self.log_file),
                    "node_times": self.node_times,
                    "epoch_seconds": time.time(),
                },
            )
            self._metadata(elapsed, cumulative_cost_usd=cumulative_cost_usd)

    def workflow_error(self, error_msg: str) -> None:
        with self._lock:
            elapsed = time.time() - self.workflow_start_epoch
            if self.progress_bar is not None:
                self.progress_bar.close()
            self._show(
                f" Workflow failed: {self.workflow_id}",
                f" Error: {error_msg}",
                f" Time: {elapsed:.2f}s",
                f" Trace: {self.trace_file.relative_to(self.output_dir.parent)}",
            )
            self._entry(
                "workflow_error",
                details={
                    "workflow_id": self.workflow_id,
                    "error": error_msg,
                    "total_time_seconds": elapsed,
                    "nodes_completed": self.nodes_completed,
                    "nodes_failed": self.nodes_failed,
                    "epoch_seconds": time.time(),
                },
            )
            self._metadata(elapsed, error=error_msg)

    @staticmethod
    def hash_output(data: Any) -> str:
        text = json.dumps(data, sort_keys=True) if isinstance(data, dict) else str(data)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _metadata(self, elapsed: float, **outcome: Any) -> None:
        # the old observer's two metadata shapes: cost on completion, error on failure
        metadata: dict[str, Any] = {
            "workflow_id": self.workflow_id,
            "step_number": self.step_num,
            "start_time": self.start_time.isoformat(),
            "end_time": datetime.now().isoformat(),
            "pid": self.pid,
            "total_nodes": self.total_nodes,
            "nodes_completed": self.nodes_completed,
            "nodes_failed": self.nodes_failed,
            "total_time_seconds": elapsed,
            **outcome,
            "node_times": self.node_times,
            "log_file": str(self.audit_log_file),
            "trace_file": str(self.audit_trace_file),
        }
        with open(self.audit_dir / f"metadata_{self.step_num}.json", "w") as handle:
            json.dump(metadata, handle, indent=2)

    def _show(self, *lines: str) -> None:
        """A header or summary block: on stdout and in the (non-audit) log."""
        block = ["", _RULE, *lines, _RULE, ""]
        for line in block:
            print(line)
        with open(self.log_file, "a") as handle:
            for line in block:
                handle.write(line + "\n")

    def _entry(
        self,
        event_type: str,
        *,
        message: str | None = None,
        node_id: str | None = None,
        node_index: int | None = None,
        details: dict[str, Any],
    ) -> None:
        timestamp = datetime.now().isoformat()
        entry: dict[str, Any] = {
            "timestamp": timestamp,
            "epoch_seconds": time.time(),
            "event_type": event_type,
            "pid": self.pid,
            "workflow_id": self.workflow_id,
        }
        if node_id:
            entry["node_id"] = node_id
        if node_index:  # the old observer dropped an index of 0
            entry["node_index"] = node_index
        if message:
            entry["message"] = message
        entry.update(details)
        for path in (self.trace_file, self.audit_trace_file):
            with open(path, "a") as handle:
                handle.write(json.dumps(entry) + "\n")
        line = f"[{timestamp}] {event_type.upper()}"
        if node_id:
            line += f" {node_id}"
        if message:
            line += f": {message}"
        line += f" | {json.dumps(details)}"
        for path in (self.log_file, self.audit_log_file):
            with open(path, "a") as handle:
                handle.write(line + "\n")
