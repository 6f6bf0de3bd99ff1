"""The observer's event methods (``node_start``, ``node_success``... ``emit``), written once
for every flavour of observer.

``AsyncEventMethods`` serves Observer and RemoteObserver; ``SyncEventMethods`` serves the
thread-side twins (ThreadProducer, BlockingObserver and so SyncObserver, SyncRemoteObserver).
A subclass only says where an event goes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._events import Event, check_event
from ._factory import EventFactory
from ._node import NodeScope, SyncNodeScope


class _EventMethods:
    workflow_id: str
    run_id: str
    _events: EventFactory

    @property
    def events(self) -> EventFactory:
        """Builds this run's events, for ``emit``."""
        return self._events

    def mark_finished(self) -> None:
        """A terminal event was recorded: closing adds none of its own."""
        raise NotImplementedError

    def _check_ids(self, event: Event) -> None:
        """Refuse another run's event; apply the value rules to the rest (see check_event)."""
        if event.workflow_id != self.workflow_id or event.run_id != self.run_id:
            raise ValueError(
                f"the event belongs to run {event.run_id} of {event.workflow_id}, "
                f"not to run {self.run_id} of {self.workflow_id}"
            )
        check_event(event, self._events.max_payload_bytes)


class AsyncEventMethods(_EventMethods):
    """The awaitable event methods. A subclass provides ``_offer`` (enqueue at once if there
    is room, or drop under its drop policy; False when the caller must wait) and ``_emit``
    (enqueue, waiting for room; a lifecycle event is never dropped)."""

    def _offer(self, event: Event) -> bool:
        raise NotImplementedError

    async def _emit(self, event: Event) -> None:
        raise NotImplementedError

    def node(
        self,
        node_id: str,
        node_index: int | None = None,
        *,
        parent: str | None = None,
        depends_on: Iterable[str] | None = None,
    ) -> NodeScope:
        """``async with obs.node(id, index) as node``: node_start, then node_success, or
        node_failure (re-raising what the block raised). Inside, the node is the current node
        (see ``node_start`` for ``parent`` and ``depends_on``)."""
        return NodeScope(self, node_id, node_index, parent, depends_on)

    # The hot path: no coroutine beyond the method's own while the queue has room.
    async def node_start(
        self,
        node_id: str,
        node_index: int | None = None,
        *,
        parent: str | None = None,
        depends_on: Iterable[str] | None = None,
    ) -> None:
        """Record a node's start; its ``parent_id`` is ``parent``, else the current node;
        ``depends_on`` names the nodes it waited for."""
        event = self._events.node_start(node_id, node_index, parent, depends_on)
        if not self._offer(event):
            await self._emit(event)

    async def node_success(
        self,
        node_id: str,
        duration_seconds: float,
        output_hash: str | None = None,
        output_summary: Any = None,
        cost_usd: float | None = 0.0,
    ) -> None:
        event = self._events.node_success(
            node_id, duration_seconds, output_hash, output_summary, cost_usd
        )
        if not self._offer(event):
            await self._emit(event)

    async def node_failure(
        self, node_id: str, error: str, duration_seconds: float, cost_usd: float | None = 0.0
    ) -> None:
        """Never dropped."""
        await self._emit(self._events.node_failure(node_id, error, duration_seconds, cost_usd))

    async def node_skipped(self, node_id: str, reason: str | None = "") -> None:
        event = self._events.node_skipped(node_id, reason)
        if not self._offer(event):
            await self._emit(event)

    async def node_retry(
        self, node_id: str, attempt: int, error: str | None = "", delay_seconds: float | None = 0.0
    ) -> None:
        event = self._events.node_retry(node_id, attempt, error, delay_seconds)
        if not self._offer(event):
            await self._emit(event)

    async def note(self, message: str, *, node_id: str | None = None, **fields: Any) -> None:
        """A free-form message or metric from user code, of ``node_id`` (default: the current
        node); ``fields`` go into the trace."""
        event = self._events.note(message, node_id, fields)
        if not self._offer(event):
            await self._emit(event)

    async def usage(
        self,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float | None = 0.0,
        *,
        node_id: str | None = None,
        **counters: int,
    ) -> None:
        """Record the tokens and cost of one call of ``model``, of ``node_id`` (default: the
        current node); ``counters`` (cached or reasoning tokens...) are whole numbers."""
        event = self._events.usage(model, input_tokens, output_tokens, cost_usd, node_id, counters)
        if not self._offer(event):
            await self._emit(event)

    async def workflow_complete(self, cumulative_cost_usd: float | None = None) -> None:
        """Record completion; ``None`` reports the sum of the node costs."""
        event = self._events.workflow_complete(cumulative_cost_usd)  # a bad value ends nothing
        self.mark_finished()
        await self._emit(event)

    async def workflow_error(self, error: str) -> None:
        event = self._events.workflow_error(error)
        self.mark_finished()
        await self._emit(event)

    async def emit(self, event: Event) -> None:
        """Emit an event built with ``events``. Raises ValueError for an event of another run."""
        self._check_ids(event)
        if not self._offer(event):
            await self._emit(event)


class SyncEventMethods(_EventMethods):
    """The same event methods as plain calls; a subclass provides ``_put``.

    Written out beside the awaitable ones rather than generated: each is typed and documented
    where help() and mypy find it, and a consistency test holds the two sets to the event
    types.
    """

    def _put(self, event: Event) -> None:
        raise NotImplementedError

    def node(
        self,
        node_id: str,
        node_index: int | None = None,
        *,
        parent: str | None = None,
        depends_on: Iterable[str] | None = None,
    ) -> SyncNodeScope:
        """``with obs.node(id, index) as node``: node_start, then node_success, or
        node_failure (re-raising what the block raised). Inside, the node is the current node
        of the calling thread's context."""
        return SyncNodeScope(self, node_id, node_index, parent, depends_on)

    def node_start(
        self,
        node_id: str,
        node_index: int | None = None,
        *,
        parent: str | None = None,
        depends_on: Iterable[str] | None = None,
    ) -> None:
        self._put(self._events.node_start(node_id, node_index, parent, depends_on))

    def node_success(
        self,
        node_id: str,
        duration_seconds: float,
        output_hash: str | None = None,
        output_summary: Any = None,
        cost_usd: float | None = 0.0,
    ) -> None:
        self._put(
            self._events.node_success(
                node_id, duration_seconds, output_hash, output_summary, cost_usd
            )
        )

    def node_failure(
        self, node_id: str, error: str, duration_seconds: float, cost_usd: float | None = 0.0
    ) -> None:
        self._put(self._events.node_failure(node_id, error, duration_seconds, cost_usd))

    def node_skipped(self, node_id: str, reason: str | None = "") -> None:
        self._put(self._events.node_skipped(node_id, reason))

    def node_retry(
        self, node_id: str, attempt: int, error: str | None = "", delay_seconds: float | None = 0.0
    ) -> None:
        self._put(self._events.node_retry(node_id, attempt, error, delay_seconds))

    def note(self, message: str, *, node_id: str | None = None, **fields: Any) -> None:
        self._put(self._events.note(message, node_id, fields))

    def usage(
        self,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float | None = 0.0,
        *,
        node_id: str | None = None,
        **counters: int,
    ) -> None:
        self._put(
            self._events.usage(model, input_tokens, output_tokens, cost_usd, node_id, counters)
        )

    def workflow_complete(self, cumulative_cost_usd: float | None = None) -> None:
        event = self._events.workflow_complete(cumulative_cost_usd)  # a bad value ends nothing
        self.mark_finished()
        self._put(event)

    def workflow_error(self, error: str) -> None:
        event = self._events.workflow_error(error)
        self.mark_finished()
        self._put(event)

    def emit(self, event: Event) -> None:
        """Emit an event built with ``events``. Raises ValueError for an event of another run."""
        self._check_ids(event)
        self._put(event)
