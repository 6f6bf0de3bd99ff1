"""The remote observers' options, each declared once: its name, type and default.

RemoteObserver and ``connect`` take ``RemoteOptions``; SyncRemoteObserver and
``connect_sync`` those plus the loop thread's; the delivery the part that says how events
travel. The options a remote observer shares with the in-process ones (the queue's, the
run id, the payload bound) take their defaults from there.
"""

from __future__ import annotations

from typing import Literal, TypedDict

from .._options import DEFAULTS, CaptureOptions, LoopOptions
from ._limits import CLIENT_MAX_BATCH, CLIENT_RESEND_BUFFER, CONNECT_TIMEOUT, RECONNECT_TIMEOUT


class _RemoteRun(TypedDict, total=False):
    """Which run an observer opens or joins, as which producer, with which token."""

    run_id: str | None
    join: bool
    producer: str | None
    token: str | None


class DeliveryOptions(TypedDict, total=False):
    """How one producer's events travel: the queue, the batches, resends and timeouts."""

    capacity: int
    overflow: Literal["block", "drop"]
    max_batch: int
    resend_buffer: int
    reconnect_timeout: float
    close_timeout: float


class RemoteOptions(_RemoteRun, DeliveryOptions, CaptureOptions, total=False):
    """RemoteObserver's options."""

    connect_timeout: float
    max_payload_bytes: int


class SyncRemoteOptions(RemoteOptions, LoopOptions, total=False):
    """SyncRemoteObserver's options: RemoteObserver's and the loop thread's."""


#: Every remote option's default.
REMOTE_DEFAULTS: SyncRemoteOptions = {
    "run_id": DEFAULTS["run_id"],
    "join": False,
    "producer": None,
    "token": None,
    "capacity": DEFAULTS["capacity"],
    "overflow": DEFAULTS["overflow"],
    "max_batch": CLIENT_MAX_BATCH,
    "resend_buffer": CLIENT_RESEND_BUFFER,
    "reconnect_timeout": RECONNECT_TIMEOUT,
    "close_timeout": DEFAULTS["close_timeout"],
    "connect_timeout": CONNECT_TIMEOUT,
    "max_payload_bytes": DEFAULTS["max_payload_bytes"],
    "capture_logging": DEFAULTS["capture_logging"],
    "capture_warnings": DEFAULTS["capture_warnings"],
    "backend": DEFAULTS["backend"],
    "exit_timeout": DEFAULTS["exit_timeout"],
}
