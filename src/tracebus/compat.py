"""``ExecutionObserver`` with the synchronous seed observer's interface, on tracebus's bus.

Change ``from <old module> import ExecutionObserver`` to ``from tracebus.compat import
ExecutionObserver`` and keep the rest. The calls, their keyword names and defaults, and the
attributes are the seed's; underneath, a SyncObserver runs the bus and the single writer on a
daemon thread, so a call builds an event and queues it, and the files are written elsewhere.
Importing this module is cheap: the bus, the event loop and msgspec are imported when the
first observer is made.

What differs from the seed, on purpose:

- ``workflow_complete`` closes the run (drain, fsync, metadata). A second ``workflow_complete``
  does nothing; any other call after it raises BusClosedError.
- ``workflow_error`` drains and writes the metadata but leaves the run open, so the
  ``workflow_complete`` that usually follows is recorded too; the metadata keeps the error,
  and its cost is null until a ``workflow_complete`` reports one.
- A run never completed is flushed at interpreter exit (bounded by SyncObserver's
  ``exit_timeout``) with no terminal event: its metadata says ``"incomplete"``.
- ``progress_bar`` is a read-only ProgressView of the bar the writer draws, not a tqdm bar;
  like the seed's, it counts the nodes that succeeded.
- Without tqdm, the per-node console lines are printed by the writer as nodes finish, one
  line per finished node.

Beyond the seed's calls, changing nothing written for code that does not use them:
``with obs.node(id, index) as node:`` (the node is current in the calling thread's context,
nodes started inside are its children, the block is timed and its success or failure
recorded and counted as the seed's calls count them; ``parent=``, ``depends_on=``,
``node.output(...)``, ``node.cost(...)``, ``node.usage(...)`` as on SyncObserver's ``node``),
and ``usage(...)`` for the tokens and cost of a model call.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO

from ._exceptions import SinkError
from ._hashing import hash_output as _hash_output

if TYPE_CHECKING:
    from ._node import SyncNodeScope
    from ._sinks import Sink
    from ._sync import SyncObserver

__all__ = ["ExecutionObserver", "ProgressView"]


class ExecutionObserver:
    """Records one workflow run with the seed observer's calls; safe from any thread.

    Raises InvalidIdError (a ValueError) for a workflow id that is not a safe file-name part,
    and OSError when the output directories cannot be made.
    """

    def __init__(
        self,
        workflow_id: str,
        output_dir: str | os.PathLike[str],
        total_nodes: int,
        use_tqdm: bool = True,
    ) -> None:
        # Imported here, not with the module: a runner importing this module must not pay for
        # the event loop, anyio and msgspec before it makes an observer.
        from ._state import MAX_NODE_DETAILS
        from ._sync import SyncObserver

        console = sys.stdout
        self._node_lines = not use_tqdm and console is not None
        sinks: tuple[Sink, ...] = ()
        if self._node_lines:
            from ._sinks._node_lines import NodeLines

            sinks = (NodeLines(console, total_nodes),)
        self._run: SyncObserver = SyncObserver(
            workflow_id,
            output_dir,
            total_nodes,
            progress="succeeded" if use_tqdm else False,
            console=console,
            sinks=sinks,
            end_on_close=False,
        )
        layout = self._run.layout
        self.workflow_id: str = self._run.workflow_id
        self.output_dir = self._run.output_dir
        self.total_nodes = total_nodes
        self.use_tqdm = bool(use_tqdm)
        self.pid = os.getpid()
        self.start_time = self._run.started
        self.workflow_start_epoch = self.start_time.timestamp()
        self.step_num: str = layout.step_num
        self.logs_dir = layout.logs_dir
        self.traces_dir = layout.traces_dir
        self.audit_dir = layout.audit_dir
        self.log_file = layout.log_file
        self.audit_log_file = layout.audit_log_file
        self.trace_file = layout.trace_file
        self.audit_trace_file = layout.audit_trace_file
        self.progress_bar = ProgressView(self) if self.use_tqdm else None
        self.nodes_completed = 0
        self.nodes_failed = 0
        self.node_times: dict[str, float] = {}
        self.node_outputs: dict[str, dict[str, Any]] = {}
        self.node_start_time: float | None = None
        self.current_node_id: str | None = None
        self._counts = threading.Lock()
        self._completed = False
        self._max_details = MAX_NODE_DETAILS  # per-node figures kept, as in the metadata

    def node_start(self, node_id: str, node_index: int) -> None:
        """Record that a node started. Raises BusClosedError after ``workflow_complete``."""
        self._started(node_id, node_index, None, None)

    def node_success(
        self,
        node_id: str,
        duration_seconds: float,
        output_hash: str | None = None,
        output_summary: dict[str, Any] | None = None,
    ) -> None:
        """Record that a node succeeded. Raises BusClosedError after ``workflow_complete``,
        TypeError or ValueError for a value the value rules refuse."""
        self._succeeded(node_id, duration_seconds, output_hash, output_summary, 0.0)

    def node_failure(self, node_id: str, error_msg: str, duration_seconds: float) -> None:
        """Record that a node failed. Raises BusClosedError after ``workflow_complete``,
        TypeError or ValueError for a value the value rules refuse."""
        self._failed(node_id, error_msg, duration_seconds, 0.0)

    def node(
        self,
        node_id: str,
        node_index: int | None = None,
        *,
        parent: str | None = None,
        depends_on: Iterable[str] | None = None,
    ) -> SyncNodeScope:
        """``with obs.node(id, index) as node``: the node's start, then its success, or its
        failure (re-raising what the block raised), as SyncObserver's ``node``."""
        from ._node import SyncNodeScope

        return SyncNodeScope(_ScopeCalls(self), node_id, node_index, parent, depends_on)

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
        """Record the tokens and cost of one call of ``model``, of ``node_id`` (default: the
        current node), as SyncObserver's ``usage``."""
        self._run.usage(model, input_tokens, output_tokens, cost_usd, node_id=node_id, **counters)

    def _started(
        self,
        node_id: str,
        node_index: int | None,
        parent: str | None,
        depends_on: Iterable[str] | None,
    ) -> None:
        self._run.node_start(node_id, node_index, parent=parent, depends_on=depends_on)
        self.node_start_time = time.time()
        self.current_node_id = node_id

    def _succeeded(
        self,
        node_id: str,
        duration_seconds: float,
        output_hash: str | None,
        output_summary: Any,
        cost_usd: float | None,
    ) -> None:
        event = self._run.events.node_success(
            node_id, duration_seconds, output_hash, output_summary, cost_usd
        )
        self._run._put(event)
        with self._counts:
            self.nodes_completed += 1
            self._keep(self.node_times, event.node_id, event.duration_seconds)
            if output_summary:
                self._keep(self.node_outputs, event.node_id, event.output_summary)

    def _failed(
        self, node_id: str, error: str, duration_seconds: float, cost_usd: float | None
    ) -> None:
        event = self._run.events.node_failure(node_id, error, duration_seconds, cost_usd)
        self._run._put(event)
        with self._counts:
            self.nodes_failed += 1
            self._keep(self.node_times, event.node_id, event.duration_seconds)

    def workflow_complete(self, cumulative_cost_usd: float = 0.0) -> None:
        """Record completion and close the run: drain, fsync, write the metadata.

        A second call does nothing. Raises SinkError or CloseTimeoutError when closing failed.
        """
        with self._counts:
            if self._completed:
                return
            self._completed = True
        self._print_node_lines()  # a file that failed is reported by the close
        self._run.workflow_complete(cumulative_cost_usd)
        self._run.close()

    def workflow_error(self, error_msg: str) -> None:
        """Record the error, drain and write the metadata; the run stays open.

        Raises BusClosedError after ``workflow_complete``; SinkError, once the error is
        recorded, when a file could not be written (a full disk).
        """
        failure = self._print_node_lines()
        self._run.workflow_error(error_msg)
        try:
            self._run.flush()
        except SinkError as exc:
            failure = exc
        if failure is not None:
            raise failure

    def _print_node_lines(self) -> SinkError | None:
        # The writer prints a batch's summary before its node lines: drain first, so that
        # every node line comes before the summary. A file that failed is returned, for the
        # caller to report once its own event is recorded.
        if self._node_lines:
            try:
                self._run.flush()
            except SinkError as exc:
                return exc
        return None

    def _keep(self, table: dict[str, Any], node_id: str, value: Any) -> None:
        # as the metadata does, per-node figures of the first MAX_NODE_DETAILS nodes only
        if node_id in table or len(table) < self._max_details:
            table[node_id] = value

    @staticmethod
    def hash_output(data: Any) -> str:
        """First 16 hex digits of SHA-256 over sort-keyed JSON (a dict) or ``str(data)``."""
        return _hash_output(data)


class _ScopeCalls:
    """The calls a node scope makes, onto an ExecutionObserver: its counters and attributes
    move as with the seed's calls, and the scope's cost reaches the events."""

    def __init__(self, observer: ExecutionObserver) -> None:
        self._observer = observer
        self.run_id = observer._run.run_id

    def node_start(
        self,
        node_id: str,
        node_index: int | None = None,
        *,
        parent: str | None = None,
        depends_on: Iterable[str] | None = None,
    ) -> None:
        self._observer._started(node_id, node_index, parent, depends_on)

    def node_success(
        self,
        node_id: str,
        duration_seconds: float,
        output_hash: str | None = None,
        output_summary: Any = None,
        cost_usd: float | None = 0.0,
    ) -> None:
        self._observer._succeeded(node_id, duration_seconds, output_hash, output_summary, cost_usd)

    def node_failure(
        self, node_id: str, error: str, duration_seconds: float, cost_usd: float | None = 0.0
    ) -> None:
        self._observer._failed(node_id, error, duration_seconds, cost_usd)

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
        self._observer.usage(
            model, input_tokens, output_tokens, cost_usd, node_id=node_id, **counters
        )


class ProgressView:
    """What the run's progress bar shows, read from the observer's counts.

    The bar itself belongs to the writer thread, which draws it on stderr and copies it into
    the log; this view cannot move or close it.
    """

    def __init__(self, observer: ExecutionObserver) -> None:
        self._observer = observer
        self.total = observer.total_nodes
        self.desc = f"Executing {observer.workflow_id}"

    @property
    def n(self) -> int:
        """Nodes succeeded so far: as the seed's bar, which failures did not move."""
        return self._observer.nodes_completed

    @staticmethod
    def write(text: str, file: TextIO | None = None, end: str = "\n") -> None:
        """Print ``text`` without breaking the bar (``tqdm.write``); safe from any thread."""
        from tqdm import tqdm

        tqdm.write(text, file=file, end=end)

    def __repr__(self) -> str:
        return f"ProgressView(desc={self.desc!r}, n={self.n}, total={self.total})"
