"""The NATS JetStream transport: runs whose producers are spread over many hosts.

``_settings`` (servers, credentials, TLS, the stream) and ``_connection`` (connecting, the
stream) are shared by both ends; ``_publisher`` is the producers' end, ``_collector`` the
collector's. nats-py runs on asyncio only.
"""
