"""Builds a run's events at emit time: a clock read, the ids, references; nothing formatted.

Each method spells out the common fields: msgspec builds a Struct from plain keywords about
three times faster than from a ``**dict`` of them, and this is the producers' hot path.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ._events import (
    NodeFailure,
    NodeRetry,
    NodeSkipped,
    NodeStart,
    NodeSuccess,
    Note,
    WorkflowComplete,
    WorkflowError,
    WorkflowStart,
)


class EventFactory:
    """The events of one run, shared by every observer flavour (async, sync, remote)."""

    __slots__ = ("workflow_id", "run_id", "pid", "producer")

    def __init__(self, workflow_id: str, run_id: str, producer: str | None = None) -> None:
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.pid = os.getpid()
        self.producer = producer

    def workflow_start(self, total_nodes: int, output_dir: str) -> WorkflowStart:
        return WorkflowStart(
            epoch_seconds=time.time(),
            pid=self.pid,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            producer=self.producer,
            message=f"Workflow execution started: {self.workflow_id}",
            total_nodes=total_nodes,
            output_dir=output_dir,
        )

    def node_start(self, node_id: str, node_index: int | None) -> NodeStart:
        return NodeStart(
            epoch_seconds=time.time(),
            pid=self.pid,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            producer=self.producer,
            node_id=node_id,
            node_index=node_index,
        )

    def node_success(
        self,
        node_id: str,
        duration_seconds: float,
        output_hash: str | None,
        output_summary: Any,
        cost_usd: float,
        node_index: int | None = None,
    ) -> NodeSuccess:
        return NodeSuccess(
            epoch_seconds=time.time(),
            pid=self.pid,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            producer=self.producer,
            node_id=node_id,
            node_index=node_index,
            duration_seconds=duration_seconds,
            output_hash=output_hash,
            output_summary=output_summary,
            cost_usd=cost_usd,
        )

    def node_failure(
        self,
        node_id: str,
        error: str,
        duration_seconds: float,
        cost_usd: float = 0.0,
        node_index: int | None = None,
    ) -> NodeFailure:
        return NodeFailure(
            epoch_seconds=time.time(),
            pid=self.pid,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            producer=self.producer,
            node_id=node_id,
            node_index=node_index,
            error=error,
            duration_seconds=duration_seconds,
            cost_usd=cost_usd,
        )

    def node_skipped(
        self, node_id: str, reason: str = "", node_index: int | None = None
    ) -> NodeSkipped:
        return NodeSkipped(
            epoch_seconds=time.time(),
            pid=self.pid,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            producer=self.producer,
            node_id=node_id,
            node_index=node_index,
            reason=reason,
        )

    def node_retry(
        self,
        node_id: str,
        attempt: int,
        error: str = "",
        delay_seconds: float = 0.0,
        node_index: int | None = None,
    ) -> NodeRetry:
        return NodeRetry(
            epoch_seconds=time.time(),
            pid=self.pid,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            producer=self.producer,
            node_id=node_id,
            node_index=node_index,
            attempt=attempt,
            error=error,
            delay_seconds=delay_seconds,
        )

    def note(self, message: str, node_id: str | None, fields: dict[str, Any]) -> Note:
        return Note(
            epoch_seconds=time.time(),
            pid=self.pid,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            producer=self.producer,
            message=message,
            node_id=node_id,
            fields=fields,
        )

    def workflow_complete(self, cumulative_cost_usd: float | None) -> WorkflowComplete:
        return WorkflowComplete(
            epoch_seconds=time.time(),
            pid=self.pid,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            producer=self.producer,
            cumulative_cost_usd=cumulative_cost_usd,
        )

    def workflow_error(self, error: str) -> WorkflowError:
        return WorkflowError(
            epoch_seconds=time.time(),
            pid=self.pid,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            producer=self.producer,
            error=error,
        )
