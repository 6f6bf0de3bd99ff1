"""The NATS JetStream transport: the public home of its settings and its collector.

``NatsSettings`` and ``NatsStream`` say where NATS is and which stream holds the runs (a
remote observer given them, or a ``nats://`` address, publishes there); ``NatsCollector``
consumes the stream into run files, as ``tracebus serve --nats`` does, one of several when
each has its ``Partition``. The collector needs nats-py (``pip install 'tracebus[nats]'``):
it is imported on first use, the settings without it.
"""

from __future__ import annotations

import importlib
import typing

from ._nats._settings import ALL_RUNS, NatsSettings, NatsStream, Partition, tls_context

if typing.TYPE_CHECKING:
    from ._nats._collector import CollectorStatistics as CollectorStatistics
    from ._nats._collector import NatsCollector as NatsCollector

__all__ = [
    "ALL_RUNS",
    "CollectorStatistics",
    "NatsCollector",
    "NatsSettings",
    "NatsStream",
    "Partition",
    "tls_context",
]

_LAZY = {"CollectorStatistics": "._nats._collector", "NatsCollector": "._nats._collector"}


def _as_public(value: object) -> None:
    if getattr(value, "__module__", "").startswith("tracebus._"):
        value.__module__ = __name__


for _name in ("Partition", "tls_context"):
    _as_public(globals()[_name])
del _name

if not typing.TYPE_CHECKING:

    def __getattr__(name: str) -> typing.Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'tracebus.nats' has no attribute {name!r}")
        value = getattr(importlib.import_module(module, "tracebus"), name)
        _as_public(value)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_LAZY})
