"""The collector's limits and the remote observer's defaults: the values the README documents."""

from __future__ import annotations

from dataclasses import dataclass

#: The wire protocol's version, sent in the hello; a service speaks exactly this one.
PROTOCOL_VERSION = 1

MAX_FRAME_BYTES = 16 * 1024 * 1024
MAX_EVENTS_PER_FRAME = 10_000
MAX_CONNECTIONS = 256
MAX_OPEN_RUNS = 1_024
#: A connection that has not said hello by then is closed.
HELLO_TIMEOUT = 10.0
#: Ended runs whose producers' last ``seq`` stays in memory, to recognise late resends; older
#: ones are looked up in the registry on disk.
CLOSED_RUNS_IN_MEMORY = 10_000
#: Registry entries of ended runs older than this are removed when the service starts.
CLOSED_RUN_RETENTION = 7 * 24 * 3600.0
#: Each run's queue between the connections and its writer.
RUN_QUEUE_CAPACITY = 20_000
RUN_CLOSE_TIMEOUT = 30.0

#: Remote observer defaults.
CLIENT_MAX_BATCH = 2_000
CLIENT_RESEND_BUFFER = 50_000
RECONNECT_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Limits:
    """What one collector accepts; past any of these a client gets an error frame and its
    connection is closed."""

    max_frame_bytes: int = MAX_FRAME_BYTES
    max_events_per_frame: int = MAX_EVENTS_PER_FRAME
    max_connections: int = MAX_CONNECTIONS
    max_open_runs: int = MAX_OPEN_RUNS
    hello_timeout: float = HELLO_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("max_frame_bytes", "max_events_per_frame", "max_connections", "max_open_runs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.hello_timeout <= 0:
            raise ValueError(f"hello_timeout must be positive, got {self.hello_timeout}")
