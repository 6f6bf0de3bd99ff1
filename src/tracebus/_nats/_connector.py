"""The NATS transport's connector, registered with the service for the ``nats://`` and
``tls://`` schemes and for NatsSettings given as an address.

The service's connector registry imports this module the first time such an address is
used; it imports nats-py and the link only when a link is opened.
"""

from __future__ import annotations

from .._service._connectors import register_scheme
from .._service._link import Link
from .._service._protocol import Hello
from ._settings import NatsSettings, nats_settings_of


class NatsConnector:
    """Publishes a remote observer's batches to the JetStream stream of ``settings`` (a
    ``Connector``); a token in the hello is the NATS token."""

    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings

    @property
    def target(self) -> NatsSettings:
        return self.settings

    def __str__(self) -> str:
        return ",".join(self.settings.servers)

    async def open_link(
        self, hello: Hello, workflow_id: str, run_id: str, connect_timeout: float
    ) -> Link:
        """Connect, make sure the stream exists, listen for acknowledgements.

        Raises BackendError off asyncio, ServiceUnavailableError when NATS or JetStream
        cannot be had within ``connect_timeout`` seconds.
        """
        from ._link import NatsLink

        settings = self.settings
        if hello.token is not None:
            settings = settings._with_token(hello.token)
        return await NatsLink.open(settings, hello, workflow_id, run_id, connect_timeout)


def _connector(address: str | NatsSettings) -> NatsConnector:
    """Raises ImportError without nats-py, ValueError or OSError for unusable settings."""
    settings = nats_settings_of(address)
    assert settings is not None  # the scheme is one of its own
    return NatsConnector(settings)


register_scheme("nats", _connector)
register_scheme("tls", _connector)
