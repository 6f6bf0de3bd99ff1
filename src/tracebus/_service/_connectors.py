"""Choosing the transport by the address's scheme: ``tcp://``, ``unix:`` or a path, and the
schemes other packages register (``nats://``, ``tls://``).

A transport registers a factory for its scheme with ``register_scheme``; an address object
of its own (NatsSettings) names that scheme in its ``scheme``. The NATS transport is an
optional extra that the service does not import: the service knows only the name of the
module that registers its schemes, imported the first time such an address is used (as
fsspec finds its known implementations).
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, cast

from ._link import Connector
from ._socket import SocketConnector
from ._transport import Address, TcpAddress, UnixAddress, parse_address


class SchemeAddress(Protocol):
    """An address object of a registered transport (NatsSettings)."""

    scheme: ClassVar[str]


#: Where a remote observer sends: an address (its text, a path, an object) or a connector.
RemoteAddress = str | os.PathLike[str] | Address | SchemeAddress | Connector
#: Makes the connector of an address of its scheme: its text, or an object naming it.
ConnectorFactory = Callable[[Any], Connector]

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
    """The connector for ``address``: a Connector as it is; the registered one of a text's
    scheme, or of an object's ``scheme``; a socket address, ``unix:`` text, a path, or text
    of an unknown scheme, a socket's.

    Raises ValueError for an address its transport cannot read (a TCP address without a
    port), ImportError when the scheme's transport needs a package that is not installed.
    """
    if isinstance(address, UnixAddress | TcpAddress):
        return SocketConnector(address)
    if isinstance(address, str):
        match = _SCHEME.match(address)
        factory = _factory(match.group(1)) if match else None
        return _socket(address) if factory is None else factory(address)
    if isinstance(address, os.PathLike):
        return _socket(address)
    scheme = getattr(address, "scheme", None)
    if isinstance(scheme, str):
        factory = _factory(scheme)
        if factory is None:
            raise ValueError(f"no transport is registered for {scheme}:// addresses")
        return factory(address)
    return cast(Connector, address)


def _factory(scheme: str) -> ConnectorFactory | None:
    if scheme not in _factories and scheme in _REGISTERED_BY:
        importlib.import_module(_REGISTERED_BY[scheme])
    return _factories.get(scheme)
