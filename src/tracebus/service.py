"""The collector service: the public home of what a deployment of it imports.

``tracebus serve`` runs a ``Collector``; ``Limits`` is what it accepts; ``ErrorCode`` lists
the codes of its error frames and what each means; ``fetch_status`` is ``tracebus status``.
Remote observers (``tracebus.connect``) feed it; see ``docs/service.md``. A transport gives
them a ``Connector`` that opens ``Link`` s carrying each ``SealedBatch``, and registers its
address scheme with ``register_scheme``.
"""

from __future__ import annotations

from ._service._client import fetch_status
from ._service._codes import ErrorCode
from ._service._connectors import register_scheme
from ._service._limits import Limits
from ._service._link import Connector, Link, SealedBatch
from ._service._server import Collector
from ._service._transport import TcpAddress, UnixAddress, default_socket_path, parse_address

__all__ = [
    "Collector",
    "Connector",
    "ErrorCode",
    "Limits",
    "Link",
    "SealedBatch",
    "TcpAddress",
    "UnixAddress",
    "default_socket_path",
    "fetch_status",
    "parse_address",
    "register_scheme",
]

for _name in __all__:
    _value = globals()[_name]
    if _value.__module__.startswith("tracebus._"):
        _value.__module__ = __name__
del _name, _value
