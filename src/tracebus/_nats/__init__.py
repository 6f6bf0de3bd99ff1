"""The NATS JetStream transport: runs whose producers are spread over many hosts.

``_settings`` (servers, credentials, TLS, the stream) and ``_connection`` (connecting, the
stream) serve both ends. Producers are the collector service's remote observers: the settings
are their connector, ``_link`` their link, and ``_connector`` registers the ``nats://`` and
``tls://`` schemes with the service. ``_collector`` consumes the stream into the service's
run router. nats-py runs on asyncio only, and only ``_link``, ``_connection`` and
``_collector`` import it.
"""
