"""A node's execution as a context manager: ``obs.node(...)``, awaitable and blocking.

Inside the block the node is the current node (``current_node()``): the run's notes, logs,
usage and nodes started there are its own, in the tasks and ``to_thread`` calls started
inside too.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextvars import Token
from types import TracebackType
from typing import Any, Protocol

import anyio

from ._context import CurrentNode, enter_node, leave_node
from ._events import real_number
from ._exceptions import describe
from ._hashing import hash_output
from ._options import UNSET


# The observer's methods a scope calls, restated here: the event methods make the scopes, so
# importing them back would be a cycle. mypy holds both protocols to the methods they restate.
class _AsyncObserver(Protocol):
    """What a NodeScope needs of its observer (AsyncEventMethods, which makes it)."""

    run_id: str

    async def node_start(
        self,
        node_id: str,
        node_index: int | None = None,
        *,
        parent: str | None = None,
        depends_on: Iterable[str] | None = None,
    ) -> None: ...

    async def node_success(
        self,
        node_id: str,
        duration_seconds: float,
        output_hash: str | None = None,
        output_summary: Any = None,
        cost_usd: float | None = 0.0,
    ) -> None: ...

    async def node_failure(
        self, node_id: str, error: str, duration_seconds: float, cost_usd: float | None = 0.0
    ) -> None: ...

    async def usage(
        self,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float | None = 0.0,
        *,
        node_id: str | None = None,
        **counters: int,
    ) -> None: ...


class _SyncObserver(Protocol):
    """What a SyncNodeScope needs of its observer (SyncEventMethods, which makes it)."""

    run_id: str

    def node_start(
        self,
        node_id: str,
        node_index: int | None = None,
        *,
        parent: str | None = None,
        depends_on: Iterable[str] | None = None,
    ) -> None: ...

    def node_success(
        self,
        node_id: str,
        duration_seconds: float,
        output_hash: str | None = None,
        output_summary: Any = None,
        cost_usd: float | None = 0.0,
    ) -> None: ...

    def node_failure(
        self, node_id: str, error: str, duration_seconds: float, cost_usd: float | None = 0.0
    ) -> None: ...

    def usage(
        self,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float | None = 0.0,
        *,
        node_id: str | None = None,
        **counters: int,
    ) -> None: ...


class _NodeBase:
    """What both scopes keep of a node: its ids, output and cost."""

    def __init__(
        self,
        node_id: str,
        node_index: int | None,
        parent: str | None,
        depends_on: Iterable[str] | None,
    ) -> None:
        self.node_id = node_id
        self.node_index = node_index
        self.parent = parent
        self.depends_on = None if depends_on is None else list(depends_on)
        self.output_hash: str | None = None
        self.output_summary: Any = None
        self.cost_usd = 0.0
        self._started = 0.0
        self._token: Token[CurrentNode | None] | None = None

    def output(self, result: Any, summary: Any = UNSET) -> None:
        """Hash ``result`` (the seed's algorithm); the summary is ``result`` unless given."""
        self.output_hash = hash_output(result)
        self.output_summary = result if summary is UNSET else summary

    def cost(self, usd: float) -> None:
        """Add ``usd`` to this node's cost. Raises TypeError or ValueError for a value that is
        not a finite real number (see the value rules)."""
        self.cost_usd = real_number(self.cost_usd + real_number(usd, "cost", "usd"), "cost", "usd")

    def _enter(self, run_id: str) -> None:
        self._token = enter_node(run_id, self.node_id)
        self._started = time.perf_counter()

    def _leave(self) -> float:
        duration = time.perf_counter() - self._started
        if self._token is not None:
            leave_node(self._token)
            self._token = None
        return duration


class NodeScope(_NodeBase):
    """One node's execution, timed from entry to exit: ``async with obs.node(...) as node``."""

    def __init__(
        self,
        observer: _AsyncObserver,
        node_id: str,
        node_index: int | None,
        parent: str | None = None,
        depends_on: Iterable[str] | None = None,
    ) -> None:
        super().__init__(node_id, node_index, parent, depends_on)
        self._observer = observer

    async def usage(
        self,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float | None = 0.0,
        **counters: int,
    ) -> None:
        """Record a ``usage`` event of this node (see ``usage`` on the observer)."""
        await self._observer.usage(
            model, input_tokens, output_tokens, cost_usd, node_id=self.node_id, **counters
        )

    async def __aenter__(self) -> NodeScope:
        obs = self._observer
        await obs.node_start(
            self.node_id, self.node_index, parent=self.parent, depends_on=self.depends_on
        )
        self._enter(obs.run_id)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        duration = self._leave()
        obs = self._observer
        if exc is None:
            await obs.node_success(
                self.node_id, duration, self.output_hash, self.output_summary, self.cost_usd
            )
            return
        with anyio.CancelScope(shield=True):
            await obs.node_failure(self.node_id, describe(exc), duration, self.cost_usd)


class SyncNodeScope(_NodeBase):
    """One node's execution, timed from entry to exit: ``with obs.node(...) as node`` on a
    blocking observer; the node is current in the calling thread's context."""

    def __init__(
        self,
        observer: _SyncObserver,
        node_id: str,
        node_index: int | None,
        parent: str | None = None,
        depends_on: Iterable[str] | None = None,
    ) -> None:
        super().__init__(node_id, node_index, parent, depends_on)
        self._observer = observer

    def usage(
        self,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float | None = 0.0,
        **counters: int,
    ) -> None:
        """Record a ``usage`` event of this node (see ``usage`` on the observer)."""
        self._observer.usage(
            model, input_tokens, output_tokens, cost_usd, node_id=self.node_id, **counters
        )

    def __enter__(self) -> SyncNodeScope:
        obs = self._observer
        obs.node_start(
            self.node_id, self.node_index, parent=self.parent, depends_on=self.depends_on
        )
        self._enter(obs.run_id)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        duration = self._leave()
        obs = self._observer
        if exc is None:
            obs.node_success(
                self.node_id, duration, self.output_hash, self.output_summary, self.cost_usd
            )
        else:
            obs.node_failure(self.node_id, describe(exc), duration, self.cost_usd)
