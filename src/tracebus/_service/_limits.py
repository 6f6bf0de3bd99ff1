"""The collector's limits and the remote observer's defaults, as docs/service.md gives them."""

from __future__ import annotations

from dataclasses import dataclass

#: The wire protocol's version, sent in the hello; a service speaks exactly this one.
PROTOCOL_VERSION = 1

MAX_FRAME_BYTES = 16 * 1024 * 1024
MAX_EVENTS_PER_FRAME = 10_000
#: Connections past their hello (producers); those still to say it have their own limit.
MAX_CONNECTIONS = 256
#: Connections that have not said hello yet; past it the oldest of them is dropped.
MAX_UNIDENTIFIED = 64
#: The largest frame a connection may send before its hello is accepted.
MAX_HELLO_BYTES = 64 * 1024
MAX_OPEN_RUNS = 1_024
#: A connection that has not said hello by then is closed.
HELLO_TIMEOUT = 5.0
#: A run no connected producer feeds, and that received nothing for this long, is closed
#: (its metadata says ``incomplete``; the next batch for it resumes it).
RUN_IDLE_TIMEOUT = 300.0
#: At stop, how long connections may take to read their last replies before they are dropped.
SHUTDOWN_GRACE = 5.0
#: File descriptors one open run holds (trace and log, twice each, and its lock), and those
#: kept free for connections, the registry and the listener.
RUN_DESCRIPTORS = 5
DESCRIPTOR_RESERVE = 32
#: A batch whose highest ``seq`` is more than this past the highest its producer sent into
#: the run cannot come from a well-behaved producer (it holds at most this many events
#: unacknowledged), and is refused.
SEQ_WINDOW = 100_000
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
MAX_RESEND_BUFFER = SEQ_WINDOW
RECONNECT_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Limits:
    """What one collector accepts; past any of these a client gets an error frame and its
    connection is closed."""

    max_frame_bytes: int = MAX_FRAME_BYTES
    max_events_per_frame: int = MAX_EVENTS_PER_FRAME
    max_connections: int = MAX_CONNECTIONS
    max_unidentified: int = MAX_UNIDENTIFIED
    max_hello_bytes: int = MAX_HELLO_BYTES
    max_open_runs: int = MAX_OPEN_RUNS
    hello_timeout: float = HELLO_TIMEOUT
    run_idle_timeout: float = RUN_IDLE_TIMEOUT
    shutdown_grace: float = SHUTDOWN_GRACE

    def __post_init__(self) -> None:
        for name in (
            "max_frame_bytes",
            "max_events_per_frame",
            "max_connections",
            "max_unidentified",
            "max_hello_bytes",
            "max_open_runs",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("hello_timeout", "run_idle_timeout", "shutdown_grace"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def descriptors_needed(self) -> int:
        """File descriptors the service may hold at once within these limits."""
        return (
            DESCRIPTOR_RESERVE
            + self.max_connections
            + self.max_unidentified
            + RUN_DESCRIPTORS * self.max_open_runs
        )
