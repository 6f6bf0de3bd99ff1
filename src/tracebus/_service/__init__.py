"""The collector service: many processes feed runs, one writer per run.

``_protocol`` (messages and their encoding) and ``_router`` (runs, writers, de-duplication,
resume) know nothing of sockets; ``_transport`` (addresses, length-prefixed frames),
``_server`` and the clients' links do. Another transport reuses the first two.
"""
