"""tracebus: an asynchronous event bus for workflow-execution observability.

The errors are imported with the package; every other public name is imported on first use
(PEP 562), so that ``import tracebus.compat`` or ``tracebus --help`` does not pay for the
NATS settings, the service client or the read-back tools it does not use.
"""

from __future__ import annotations

import sys

from ._exceptions import BackendError as BackendError
from ._exceptions import BusClosedError as BusClosedError
from ._exceptions import CloseTimeoutError as CloseTimeoutError
from ._exceptions import DeliveryError as DeliveryError
from ._exceptions import InvalidIdError as InvalidIdError
from ._exceptions import ProtocolError as ProtocolError
from ._exceptions import QueueFullError as QueueFullError
from ._exceptions import RunLockedError as RunLockedError
from ._exceptions import RunNotFoundError as RunNotFoundError
from ._exceptions import ServiceError as ServiceError
from ._exceptions import ServiceUnavailableError as ServiceUnavailableError
from ._exceptions import SinkError as SinkError
from ._exceptions import SinkOverflowError as SinkOverflowError
from ._exceptions import TracebusError as TracebusError
from ._exceptions import TracebusWarning as TracebusWarning
from ._exceptions import TraceFormatError as TraceFormatError
from ._version import __version__ as __version__

# Not ``typing.TYPE_CHECKING``: importing typing (and re, collections with it) would be most
# of what ``import tracebus`` costs. Type checkers take any ``TYPE_CHECKING`` for true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._bus import BusStatistics as BusStatistics
    from ._bus import EventBus as EventBus
    from ._capture import LoggingHandler as LoggingHandler
    from ._context import current_node as current_node
    from ._counts import NodeCounts as NodeCounts
    from ._events import SCHEMA_VERSION as SCHEMA_VERSION
    from ._events import AnyEvent as AnyEvent
    from ._events import Event as Event
    from ._events import Log as Log
    from ._events import NodeFailure as NodeFailure
    from ._events import NodeRetry as NodeRetry
    from ._events import NodeSkipped as NodeSkipped
    from ._events import NodeStart as NodeStart
    from ._events import NodeSuccess as NodeSuccess
    from ._events import Note as Note
    from ._events import Usage as Usage
    from ._events import WorkflowComplete as WorkflowComplete
    from ._events import WorkflowError as WorkflowError
    from ._events import WorkflowStart as WorkflowStart
    from ._hashing import hash_output as hash_output
    from ._nats._settings import NatsSettings as NatsSettings
    from ._nats._settings import NatsStream as NatsStream
    from ._node import NodeScope as NodeScope
    from ._node import SyncNodeScope as SyncNodeScope
    from ._observer import Observer as Observer
    from ._retention import Retention as Retention
    from ._service._client import RemoteObserver as RemoteObserver
    from ._service._client import connect as connect
    from ._service._delivery import RemoteStatistics as RemoteStatistics
    from ._service._sync_client import SyncRemoteObserver as SyncRemoteObserver
    from ._service._sync_client import connect_sync as connect_sync
    from ._sinks import Sink as Sink
    from ._sync import SyncObserver as SyncObserver
    from ._tools._reader import read_trace as read_trace
    from ._tools._record import NodeAttempt as NodeAttempt
    from ._tools._record import NodeRecord as NodeRecord
    from ._tools._record import RunRecord as RunRecord
    from ._tools._record import read_run as read_run


#: Each lazily imported public name, and the private module that defines it.
_LAZY: dict[str, str] = {
    "BusStatistics": "._bus",
    "current_node": "._context",
    "EventBus": "._bus",
    "LoggingHandler": "._capture",
    "NodeCounts": "._counts",
    "SCHEMA_VERSION": "._events",
    "AnyEvent": "._events",
    "Event": "._events",
    "Log": "._events",
    "NodeFailure": "._events",
    "NodeRetry": "._events",
    "NodeSkipped": "._events",
    "NodeStart": "._events",
    "NodeSuccess": "._events",
    "Note": "._events",
    "Usage": "._events",
    "WorkflowComplete": "._events",
    "WorkflowError": "._events",
    "WorkflowStart": "._events",
    "hash_output": "._hashing",
    "NatsSettings": "._nats._settings",
    "NatsStream": "._nats._settings",
    "NodeScope": "._node",
    "SyncNodeScope": "._node",
    "Observer": "._observer",
    "RemoteObserver": "._service._client",
    "connect": "._service._client",
    "RemoteStatistics": "._service._delivery",
    "SyncRemoteObserver": "._service._sync_client",
    "connect_sync": "._service._sync_client",
    "SyncObserver": "._sync",
    "read_trace": "._tools._reader",
    "NodeAttempt": "._tools._record",
    "NodeRecord": "._tools._record",
    "RunRecord": "._tools._record",
    "Retention": "._retention",
    "read_run": "._tools._record",
    "Sink": "._sinks",
}

__all__ = [
    "SCHEMA_VERSION",
    "AnyEvent",
    "BackendError",
    "BusClosedError",
    "BusStatistics",
    "CloseTimeoutError",
    "DeliveryError",
    "Event",
    "EventBus",
    "InvalidIdError",
    "Log",
    "LoggingHandler",
    "NatsSettings",
    "NatsStream",
    "NodeAttempt",
    "NodeCounts",
    "NodeFailure",
    "NodeRecord",
    "NodeRetry",
    "NodeScope",
    "NodeSkipped",
    "NodeStart",
    "NodeSuccess",
    "Note",
    "Observer",
    "ProtocolError",
    "QueueFullError",
    "RemoteObserver",
    "RemoteStatistics",
    "Retention",
    "RunLockedError",
    "RunNotFoundError",
    "RunRecord",
    "ServiceError",
    "ServiceUnavailableError",
    "Sink",
    "SinkError",
    "SinkOverflowError",
    "SyncNodeScope",
    "SyncObserver",
    "SyncRemoteObserver",
    "TraceFormatError",
    "TracebusError",
    "TracebusWarning",
    "Usage",
    "WorkflowComplete",
    "WorkflowError",
    "WorkflowStart",
    "connect",
    "connect_sync",
    "current_node",
    "hash_output",
    "read_run",
    "read_trace",
]


def _as_public(value: object) -> None:
    """A public class or function reports the facade as its module, so reprs, tracebacks and
    pickles show ``tracebus.Observer``, not the private module that defines it."""
    if getattr(value, "__module__", "").startswith("tracebus._"):
        value.__module__ = __name__


for _name in __all__:
    if _name in globals():  # the errors
        _as_public(globals()[_name])
del _name


if not TYPE_CHECKING:  # for type checkers, the names above are imported eagerly

    def __getattr__(name: str) -> Any:
        home = _LAZY.get(name)
        if home is None:
            raise AttributeError(f"module 'tracebus' has no attribute {name!r}")
        module = f"{__name__}{home}"
        __import__(module)
        value = getattr(sys.modules[module], name)
        # this name and those of every module loaded with it (``Observer`` loads ``_bus``)
        for other, where in _LAZY.items():
            loaded = sys.modules.get(f"{__name__}{where}")
            _as_public(getattr(loaded, other, None))
        globals()[name] = value  # the next lookup finds it without coming here
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_LAZY})


del TYPE_CHECKING
