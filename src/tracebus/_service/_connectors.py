"""Choosing the transport by the address's scheme: ``tcp://``, ``unix:`` or a path, and the
schemes other packages register (``nats://``, ``tls://``).

A transport registers a factory for its scheme with ``register_scheme``. The NATS transport
is an optional extra that the service does not import: the service knows only the name of
the module that registers its schemes, imported the first time such an address is used (as
fsspec finds its known implementations).
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable

from ._link import Connector
from ._socket import SocketConnector
from ._transport import Address, TcpAddress, UnixAddress, parse_address

#: Where a remote observer sends: an address (its text, a path) or a connector.
RemoteAddress = str | os.PathLike[str] | Address | Connector
#: Makes the connector of an address written with its scheme.
ConnectorFactory = Callable[[str], Connector]

_SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.-]*)://")
_factories: dict[str, ConnectorFactory] = {}
#: Schemes registered by importing a module of the package's own.
_REGISTERED_BY = {"nats": "tracebus._nats._connector", "tls": "tracebus._nats._connector"}


def register_scheme(scheme: str, factory: ConnectorFactory) -> None:
    """Let ``connect("<scheme>://...")`` reach a collector through ``factory(address)``."""
    _factories[scheme] = factory


def _socket(address: str | os.PathLike[str]) -> Connector:
    return SocketConnector(parse_address(address))


register_scheme("tcp", _socket)


def connector_for(address: RemoteAddress) -> Connector:
    """The connector for ``address``: a Connector as it is; a text's scheme's registered one;
    a socket address, ``unix:`` text, a path, or text of an unknown scheme, a socket's.

    Raises ValueError for an address its transport cannot read (a TCP address without a
    port), ImportError when the scheme's transport needs a package that is not installed.
    """
    if isinstance(address, UnixAddress | TcpAddress):
        return SocketConnector(address)
    if not isinstance(address, str | os.PathLike):
        return address
    if isinstance(address, str) and (match := _SCHEME.match(address)):
        scheme = match.group(1)
        if scheme not in _factories and scheme in _REGISTERED_BY:
            importlib.import_module(_REGISTERED_BY[scheme])
        factory = _factories.get(scheme)
        if factory is not None:
            return factory(address)
    return _socket(address)
