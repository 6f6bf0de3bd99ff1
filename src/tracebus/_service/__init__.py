"""The collector service: many processes feed runs, one writer per run.

``_protocol`` (messages and their encoding), ``_codes`` (the error codes) and ``_router``
(runs, writers, de-duplication, resume) know nothing of sockets; ``_transport`` (addresses,
length-prefixed frames), ``_server`` and ``_socket`` (the remote observer's socket link) do.
A remote observer reaches the collector through a ``Connector`` (``_link``), chosen by the
address's scheme (``_connectors``); another transport registers its own scheme there.
"""
