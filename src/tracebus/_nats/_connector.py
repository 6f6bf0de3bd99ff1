"""The NATS transport's schemes: ``nats://`` and ``tls://`` addresses reach JetStream.

Imported by the service's connector registry the first time such an address is used; it
imports neither nats-py nor the link until a link is opened.
"""

from __future__ import annotations

from .._service._connectors import register_scheme
from .._service._link import Connector
from ._settings import nats_settings_of


def _from_url(address: str) -> Connector:
    settings = nats_settings_of(address)
    assert settings is not None  # the scheme is one of its own
    return settings


register_scheme("nats", _from_url)
register_scheme("tls", _from_url)
