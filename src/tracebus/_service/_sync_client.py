"""SyncRemoteObserver: the remote observer's methods as plain calls, for sync code, worker
threads and subprocess workers.

A RemoteObserver made blocking (see BlockingObserver): it runs on an event loop in a daemon
thread of its own. An observer that is never closed is closed at interpreter exit, within
``exit_timeout``.
"""

from __future__ import annotations

from typing import Unpack

from .._blocking import BlockingObserver
from .._options import LoopOptions, shows_options, split_options, with_defaults
from ._client import RemoteObserver
from ._connectors import RemoteAddress
from ._delivery import RemoteStatistics
from ._options import REMOTE_DEFAULTS, RemoteOptions, SyncRemoteOptions


class SyncRemoteObserver(BlockingObserver[RemoteObserver]):
    """The methods of RemoteObserver as plain calls; safe from any number of threads.

    The constructor connects (and opens or joins the run); ``close()``, or the end of a
    ``with`` block, records ``workflow_complete`` (``workflow_error`` if the block raised)
    for an opener that recorded none, and waits until everything is written.

    Raises, from the constructor, what entering a RemoteObserver raises.
    """

    kind = "remote observer"

    @shows_options(SyncRemoteOptions, REMOTE_DEFAULTS)
    def __init__(
        self,
        address: RemoteAddress,
        workflow_id: str,
        total_nodes: int = 0,
        **options: Unpack[SyncRemoteOptions],
    ) -> None:
        given: SyncRemoteOptions = with_defaults(
            "SyncRemoteObserver", options, SyncRemoteOptions, REMOTE_DEFAULTS
        )
        remote_options: RemoteOptions = split_options(given, RemoteOptions)
        loop: LoopOptions = split_options(given, LoopOptions)
        remote = RemoteObserver(address, workflow_id, total_nodes, **remote_options)
        self.producer = remote.producer
        self.total_nodes = total_nodes
        super().__init__(remote, name=f"tracebus-remote-{remote.run_id}", **loop)

    def statistics(self) -> RemoteStatistics:
        return self.async_observer.statistics()


@shows_options(SyncRemoteOptions, REMOTE_DEFAULTS)
def connect_sync(
    address: RemoteAddress,
    workflow_id: str,
    total_nodes: int = 0,
    **options: Unpack[SyncRemoteOptions],
) -> SyncRemoteObserver:
    """The sync twin of ``connect``: connected on return; use ``with`` or call ``close()``."""
    given: SyncRemoteOptions = with_defaults(
        "connect_sync", options, SyncRemoteOptions, REMOTE_DEFAULTS
    )
    return SyncRemoteObserver(address, workflow_id, total_nodes, **given)
