"""Builds a run's events at emit time: a clock read, the ids, references; nothing formatted.

Each method spells out the common fields: msgspec builds a Struct from plain keywords about
three times faster than from a ``**dict`` of them, and this is the producers' hot path.

Each method also applies the value rules (``_events``) to its arguments, at the call and
before anything is queued, so that no value can fail the writer later: a value of the wrong
type or out of range raises TypeError or ValueError naming the method, the field and the
value. The common case (str ids, float numbers, small payloads) is checked inline; only an
unusual value takes the slower path through the rules.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

import msgspec

from ._context import CURRENT, SCOPES, node_of_run
from ._events import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    MAX_DEPTH,
    MAX_MAGNITUDE,
    MAX_NODE_ID_CHARS,
    Log,
    NodeFailure,
    NodeRetry,
    NodeSkipped,
    NodeStart,
    NodeSuccess,
    Note,
    Usage,
    WorkflowComplete,
    WorkflowError,
    WorkflowStart,
    json_encoder,
    node_id_value,
    node_ids_value,
    payload_value,
    real_number,
    text_value,
    whole_number,
)
from ._text import utf8_text


class EventFactory:
    """The events of one run, shared by every observer flavour (async, sync, remote)."""

    __slots__ = ("workflow_id", "run_id", "pid", "producer", "max_payload_bytes", "_quick")

    def __init__(
        self,
        workflow_id: str,
        run_id: str,
        producer: str | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.pid = os.getpid()
        self.producer = producer
        self.max_payload_bytes = check_max_payload_bytes(max_payload_bytes)
        # a payload's JSON this short is under the bound and nests at most MAX_DEPTH deep
        self._quick = min(2 * MAX_DEPTH, self.max_payload_bytes)

    def workflow_start(
        self, total_nodes: int, output_dir: str, epoch_seconds: float | None = None
    ) -> WorkflowStart:
        """``epoch_seconds``: when the run started (now by default); an observer's is the
        moment it began making the run's files, the start its metadata measures from."""
        total_nodes = whole_number(total_nodes, "workflow_start", "total_nodes")
        output_dir = utf8_text(output_dir)
        return WorkflowStart(
            epoch_seconds=time.time() if epoch_seconds is None else epoch_seconds,
            pid=self.pid,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            producer=self.producer,
            message=f"Workflow execution started: {self.workflow_id}",
            total_nodes=total_nodes,
            output_dir=output_dir,
        )

    def node_start(
        self,
        node_id: str,
        node_index: int | None,
        parent: str | None = None,
        depends_on: Iterable[str] | None = None,
    ) -> NodeStart:
        """``parent`` None: the current node of this run, if any, unless it is this node."""
        if not (type(node_id) is str and len(node_id) <= 1_024 and node_id.isascii()):
            node_id = node_id_value(node_id, "node_start")
        if node_index is not None and not (
            type(node_index) is int and -(2**63) <= node_index < 2**63
        ):
            node_index = whole_number(node_index, "node_start", "node_index")
        current = CURRENT.get() if SCOPES.opened else None
        if current is None and parent is None and depends_on is None:  # the common case
            return NodeStart(
                epoch_seconds=time.time(),
                pid=self.pid,
                workflow_id=self.workflow_id,
                run_id=self.run_id,
                producer=self.producer,
                node_id=node_id,
                node_index=node_index,
            )
        parent_id: str | msgspec.UnsetType = msgspec.UNSET
        if parent is not None:
            parent_id = node_id_value(parent, "node_start", "parent")
        elif current is not None and current.run_id == self.run_id:
            if current.node_id != node_id:
                parent_id = current.node_id
        upstream: list[str] | msgspec.UnsetType = msgspec.UNSET
        if depends_on is not None:
            upstream = node_ids_value(depends_on, "node_start", "depends_on")
        return NodeStart(
            epoch_seconds=time.time(),
            pid=self.pid,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            producer=self.producer,
            node_id=node_id,
            node_index=node_index,
            parent_id=parent_id,
            depends_on=upstream,
        )

    def node_success(
        self,
        node_id: str,
        duration_seconds: float,
        output_hash: str | None,
        output_summary: Any,
        cost_usd: float | None,
        node_index: int | None = None,
    ) -> NodeSuccess:
        # The hot path: the rules' common cases inline (literals are MAX_NODE_ID_CHARS and
        # MAX_MAGNITUDE), the rest through the rules' functions.
        if not (type(node_id) is str and len(node_id) <= 1_024 and node_id.isascii()):
            node_id = node_id_value(node_id, "node_success")
        if not (
            type(duration_seconds) is float
            and type(cost_usd) is float
            and -1e15 <= duration_seconds <= 1e15
            and -1e15 <= cost_usd <= 1e15
        ):
            duration_seconds = real_number(duration_seconds, "node_success", "duration_seconds")
            cost_usd = (
                0.0 if cost_usd is None else real_number(cost_usd, "node_success", "cost_usd")
            )
        if output_hash is not None and not (
            type(output_hash) is str and len(output_hash) <= 1_024 and output_hash.isascii()
        ):
            output_hash = text_value(
                output_hash, "node_success", "output_hash", self.max_payload_bytes
            )
        if output_summary is not None:
            try:
                encoded = json_encoder.encode(output_summary)
            except Exception:
                output_summary = payload_value(output_summary, self.max_payload_bytes)
            else:  # short, and no null (a NaN's stand-in): as it is; else see payload_value
                if len(encoded) > self._quick or encoded.find(b"null") >= 0:
                    output_summary = payload_value(output_summary, self.max_payload_bytes, encoded)
        if node_index is not None:
            node_index = whole_number(node_index, "node_success", "node_index")
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
        cost_usd: float | None = 0.0,
        node_index: int | None = None,
    ) -> NodeFailure:
        method, limit = "node_failure", self.max_payload_bytes
        node_id = node_id_value(node_id, method)
        error = text_value(error, method, "error", limit)
        duration_seconds = real_number(duration_seconds, method, "duration_seconds")
        cost_usd = 0.0 if cost_usd is None else real_number(cost_usd, method, "cost_usd")
        if node_index is not None:
            node_index = whole_number(node_index, method, "node_index")
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
        self, node_id: str, reason: str | None = "", node_index: int | None = None
    ) -> NodeSkipped:
        method, limit = "node_skipped", self.max_payload_bytes
        node_id = node_id_value(node_id, method)
        reason = "" if reason is None else text_value(reason, method, "reason", limit)
        if node_index is not None:
            node_index = whole_number(node_index, method, "node_index")
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
        error: str | None = "",
        delay_seconds: float | None = 0.0,
        node_index: int | None = None,
    ) -> NodeRetry:
        method, limit = "node_retry", self.max_payload_bytes
        node_id = node_id_value(node_id, method)
        attempt = whole_number(attempt, method, "attempt")
        error = "" if error is None else text_value(error, method, "error", limit)
        delay_seconds = (
            0.0 if delay_seconds is None else real_number(delay_seconds, method, "delay_seconds")
        )
        if node_index is not None:
            node_index = whole_number(node_index, method, "node_index")
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
        limit = self.max_payload_bytes
        message = text_value(message, "note", "message", limit)
        if node_id is not None:
            node_id = node_id_value(node_id, "note")
        else:
            node_id = node_of_run(self.run_id)
        if fields:
            fields = payload_value(fields, limit)
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

    def log(
        self,
        message: str,
        logger: str,
        level: str,
        levelno: int,
        exception: str | None = None,
        node_id: str | None = None,
    ) -> Log:
        """A captured log record; ``node_id`` None: the current node of this run."""
        method, limit = "log", self.max_payload_bytes
        return Log(
            epoch_seconds=time.time(),
            pid=self.pid,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            producer=self.producer,
            message=text_value(message, method, "message", limit),
            node_id=node_of_run(self.run_id) if node_id is None else node_id_value(node_id, method),
            logger=text_value(logger, method, "logger", limit),
            level=text_value(level, method, "level", limit),
            levelno=whole_number(levelno, method, "levelno"),
            exception=(
                None if exception is None else text_value(exception, method, "exception", limit)
            ),
        )

    def usage(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float | None,
        node_id: str | None,
        counters: dict[str, int],
    ) -> Usage:
        """One model call's usage; ``node_id`` None: the current node of this run."""
        method = "usage"
        if "calls" in counters:
            raise ValueError("usage: a counter cannot be named 'calls' (the totals' own)")
        return Usage(
            epoch_seconds=time.time(),
            pid=self.pid,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            producer=self.producer,
            node_id=node_of_run(self.run_id) if node_id is None else node_id_value(node_id, method),
            model=text_value(model, method, "model", MAX_NODE_ID_CHARS),
            input_tokens=whole_number(input_tokens, method, "input_tokens"),
            output_tokens=whole_number(output_tokens, method, "output_tokens"),
            cost_usd=0.0 if cost_usd is None else real_number(cost_usd, method, "cost_usd"),
            counters={
                node_id_value(name, method, "counter name"): whole_number(count, method, name)
                for name, count in counters.items()
            },
        )

    def workflow_complete(self, cumulative_cost_usd: float | None) -> WorkflowComplete:
        if cumulative_cost_usd is not None:
            cumulative_cost_usd = real_number(
                cumulative_cost_usd, "workflow_complete", "cumulative_cost_usd"
            )
        return WorkflowComplete(
            epoch_seconds=time.time(),
            pid=self.pid,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            producer=self.producer,
            cumulative_cost_usd=cumulative_cost_usd,
        )

    def workflow_error(self, error: str) -> WorkflowError:
        error = text_value(error, "workflow_error", "error", self.max_payload_bytes)
        return WorkflowError(
            epoch_seconds=time.time(),
            pid=self.pid,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            producer=self.producer,
            error=error,
        )


def check_max_payload_bytes(value: object) -> int:
    """The ``max_payload_bytes`` option, checked. Raises TypeError or ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_payload_bytes must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"max_payload_bytes must be at least 1, got {value}")
    return value


# The hot path's literals are the rules' constants.
assert MAX_NODE_ID_CHARS == 1_024 and MAX_MAGNITUDE == 1e15
