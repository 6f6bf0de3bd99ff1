"""The counts of a run, defined once: nodes by their final status, and attempts.

The writer (``RunState``) and the readers (``read_run``, and through it ``summary``, the
timeline and the exports) feed the same ``NodeTally`` with a run's node events in trace
order, so every output reports the same figures for the same run.

An attempt of a node is one of its ``node_start`` events, paired with its next end event
(``node_success``, ``node_failure``, ``node_skipped``; first start with first end), or an
end event with no start of its own. A node's final status is that of its latest attempt in
trace order: ``completed``, ``failed`` or ``skipped``, or ``unfinished`` while that attempt
has not ended or when the node has only had ``node_retry`` events.
"""

from __future__ import annotations

from typing import Generic, NamedTuple, Protocol, TypeVar

K = TypeVar("K")
K_contra = TypeVar("K_contra", contravariant=True)

#: A node's last end, in the low two bits of its entry in the table.
COMPLETED, FAILED, SKIPPED = 1, 2, 3
_END = 3
#: The node ran more than once, or was announced for a retry.
_RETRIED = 4
#: One started attempt not ended yet; an entry holds this many times its open attempts.
OPEN = 8

_STATUS_NAMES = {0: "pending", COMPLETED: "success", FAILED: "failed", SKIPPED: "skipped"}


class NodeCounts(NamedTuple):
    """A run's counts. The first five count nodes by final status, and the first of them
    is the sum of the next four; the others count attempts."""

    #: Distinct nodes with any node event.
    nodes_seen: int
    #: Nodes whose latest attempt succeeded.
    nodes_completed: int
    #: Nodes whose latest attempt failed: failed for good, not retried after.
    nodes_failed: int
    #: Nodes whose latest attempt was skipped.
    nodes_skipped: int
    #: Nodes whose latest attempt has not ended, or that have only had ``node_retry`` events.
    nodes_unfinished: int
    #: Nodes that ran more than once or had a ``node_retry`` event.
    nodes_retried: int
    #: Failed attempts: every ``node_failure``, retried afterwards or not.
    attempts_failed: int
    #: Attempts that ran a node again: each node's attempts beyond its first.
    retries: int


class Entries(Protocol[K_contra]):
    """Where a NodeTally keeps each node's entry: a dict by node id (the writer's), or the
    readers' table by slot."""

    def get(self, key: K_contra, /) -> int | None: ...

    def __setitem__(self, key: K_contra, value: int, /) -> None: ...

    def __contains__(self, key: object, /) -> bool: ...

    def __len__(self) -> int: ...


class NodeTally(Generic[K]):
    """Counts a run's nodes and attempts from its node events, in trace order.

    The status of each node is kept for the first ``max_nodes`` nodes (all when None). A
    node past that table is counted without it: each of its attempts counts as a node of
    its own, under the status the attempt ended with (``unfinished`` while it runs, for as
    many such attempts at once as the table holds nodes), and ``untracked`` counts them;
    such an attempt adds to ``attempts_failed`` but never to ``nodes_retried`` or
    ``retries``. Memory stays bounded: twice ``max_nodes`` entries at most.
    """

    __slots__ = (
        "table",
        "completed",
        "failed",
        "skipped",
        "unfinished",
        "retried",
        "attempts_failed",
        "retries",
        "untracked",
        "_untracked_open",
        "_max_nodes",
    )

    def __init__(self, max_nodes: int | None = None, table: Entries[K] | None = None) -> None:
        self.table: Entries[K] = {} if table is None else table
        self.completed = self.failed = self.skipped = self.unfinished = 0
        self.retried = self.attempts_failed = self.retries = self.untracked = 0
        self._untracked_open: dict[K, int] = {}
        self._max_nodes = max_nodes

    def counts(self) -> NodeCounts:
        return NodeCounts(
            nodes_seen=self.completed + self.failed + self.skipped + self.unfinished,
            nodes_completed=self.completed,
            nodes_failed=self.failed,
            nodes_skipped=self.skipped,
            nodes_unfinished=self.unfinished,
            nodes_retried=self.retried,
            attempts_failed=self.attempts_failed,
            retries=self.retries,
        )

    def status(self, node_id: K) -> str | None:
        """``success``, ``failed``, ``skipped``, ``running`` or ``pending`` (only retries so
        far); None for a node not in the table."""
        entry = self.table.get(node_id)
        if entry is None:
            return None
        return "running" if entry >= OPEN else _STATUS_NAMES[entry & _END]

    def start(self, node_id: K) -> None:
        """A ``node_start``: a new attempt begins."""
        entry = self.table.get(node_id)
        if entry is None:
            if self._has_room():
                self.table[node_id] = OPEN
                self.unfinished += 1
                return
            running = self._untracked_open
            if node_id in running or self._max_nodes is None or len(running) < self._max_nodes:
                running[node_id] = running.get(node_id, 0) + 1
                self.unfinished += 1
                self.untracked += 1
            return
        if entry >= OPEN or entry & _END:  # it ran before: this attempt runs it again
            self.retries += 1
            if not entry & _RETRIED:
                entry |= _RETRIED
                self.retried += 1
        if entry < OPEN:
            self._leave(entry & _END)
            self.unfinished += 1
        self.table[node_id] = entry + OPEN

    def end(self, node_id: K, status: int) -> None:
        """An end event with ``status`` (COMPLETED, FAILED or SKIPPED): it ends the node's
        earliest open attempt, or is an attempt of its own."""
        if status == FAILED:
            self.attempts_failed += 1
        entry = self.table.get(node_id)
        if entry is None:
            if self._has_room():
                self.table[node_id] = status
            else:
                self._end_untracked(node_id)
            self._arrive(status)
            return
        if entry >= OPEN:
            entry -= OPEN
            if entry < OPEN:  # the latest attempt ended
                self.unfinished -= 1
                self._arrive(status)
        else:
            if entry & _END:  # an attempt of its own, after earlier ones
                self.retries += 1
                if not entry & _RETRIED:
                    entry |= _RETRIED
                    self.retried += 1
            self._leave(entry & _END)
            self._arrive(status)
        self.table[node_id] = (entry & ~_END) | status

    def retry(self, node_id: K) -> None:
        """A ``node_retry``: the node will run again; its status does not change."""
        entry = self.table.get(node_id)
        if entry is None:
            if self._has_room():
                self.table[node_id] = _RETRIED
                self.unfinished += 1
                self.retried += 1
            return
        if not entry & _RETRIED:
            self.table[node_id] = entry | _RETRIED
            self.retried += 1

    def _has_room(self) -> bool:
        return self._max_nodes is None or len(self.table) < self._max_nodes

    def _end_untracked(self, node_id: K) -> None:
        running = self._untracked_open.get(node_id)
        if running is None:
            self.untracked += 1
            return
        self.unfinished -= 1
        if running > 1:
            self._untracked_open[node_id] = running - 1
        else:
            del self._untracked_open[node_id]

    def _leave(self, end: int) -> None:
        """The node leaves the count of its current status (its last end, or none)."""
        if end == COMPLETED:
            self.completed -= 1
        elif end == FAILED:
            self.failed -= 1
        elif end == SKIPPED:
            self.skipped -= 1
        else:
            self.unfinished -= 1

    def _arrive(self, end: int) -> None:
        if end == COMPLETED:
            self.completed += 1
        elif end == FAILED:
            self.failed += 1
        else:
            self.skipped += 1
