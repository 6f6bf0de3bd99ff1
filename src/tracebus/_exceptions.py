"""Every error tracebus raises, and how any exception is written down.

"Closed by you" errors (the bus was closed, the caller misused an API) are kept apart from
"broken by the world" errors (a disk filled up, a file vanished), as trio does with
``ClosedResourceError`` and ``BrokenResourceError``.
"""

from __future__ import annotations

import sys


def describe(exc: BaseException) -> str:
    """An exception as tracebus records it (``workflow_error``, ``node_failure``, write errors):
    ``Type: message``, the type alone when the message is blank, ``cancelled`` for a
    cancellation (asyncio's or trio's)."""
    # looked up, not imported: a loop's cancellation exists only once its library is loaded
    asyncio, trio = sys.modules.get("asyncio"), sys.modules.get("trio")
    if (asyncio is not None and isinstance(exc, asyncio.CancelledError)) or (
        trio is not None and isinstance(exc, trio.Cancelled)
    ):
        return "cancelled"
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not replace the exception being recorded
        text = ""
    name = type(exc).__name__
    return f"{name}: {text}" if text.strip() else name


class TracebusError(Exception):
    """Base class of every error tracebus raises; never raised itself."""


class TracebusWarning(UserWarning):
    """Warned, never raised, when tracebus can do what was asked but the result may not be
    what was meant: e.g. ``hash_output`` of a value whose ``str()`` holds a memory address."""


class BusClosedError(TracebusError):
    """Raised by ``emit``/``emit_nowait`` and the observer methods after the bus was closed.

    Nothing is enqueued: the event is rejected whole.
    """


class QueueFullError(TracebusError):
    """Raised by ``emit_nowait`` when the bounded queue is full and the overflow policy is
    ``"block"`` (the default), and by ``emit_from_thread`` when the queue is still full after
    its timeout.

    Use ``await emit(...)`` to wait for room instead, or the ``"drop"`` policy to drop and
    count non-lifecycle events.
    """


class InvalidIdError(TracebusError, ValueError):
    """Raised before anything is written when a workflow, run or producer id is unsafe in a
    file name: empty, over 200 bytes in UTF-8, a leading ``-`` or ``.``, ``..``, a path
    separator, a control character. Spaces and letters of any script are accepted.
    """


class SinkError(TracebusError):
    """Raised by ``aclose()``/``close()`` when a sink failed while the bus was running.

    The writer records the failure, keeps draining and counts what it could not write; this
    error then says which sink failed, why, and how many events it lost. ``failures`` maps each
    failed sink's name to ``(events_lost, first_error)``.
    """

    def __init__(self, failures: dict[str, tuple[int, BaseException]]) -> None:
        self.failures = failures
        parts = [
            f"{name}: {lost} event(s) not written ({describe(err)})"
            for name, (lost, err) in sorted(failures.items())
        ]
        super().__init__("sink failure: " + "; ".join(parts))


class SinkOverflowError(TracebusError):
    """Never raised on its own: the error a SinkError reports for a sink added to a run
    (``sinks=``) that fell so far behind that its buffer was full. The run's own files and
    the other sinks got every event; the events that sink could not take were dropped for
    it alone and counted.
    """


class CloseTimeoutError(TracebusError):
    """Raised by ``aclose()``/``close()`` when the writer could not drain the queue before the
    close deadline; ``unwritten`` says how many events were still queued and are lost.
    """

    def __init__(self, unwritten: int, timeout: float) -> None:
        self.unwritten = unwritten
        self.timeout = timeout
        super().__init__(
            f"close timed out after {timeout:g}s with {unwritten} event(s) not written"
        )


class RunNotFoundError(TracebusError, FileNotFoundError):
    """Raised by ``read_run`` when the path does not exist or holds no run: it is not a trace
    file, a ``metadata_NN.json``, an audit step directory, or an output directory with a trace
    in ``traces/`` or ``audit/step_NN/``.
    """


class TraceFormatError(TracebusError, ValueError):
    """Raised by ``read_trace`` when a line other than the last is not a JSON object.

    A torn last line (what a hard kill leaves) is tolerated and reported, not raised.
    """


class QueryError(TracebusError, ValueError):
    """Raised by ``tracebus query`` when DuckDB refuses the SQL or cannot read a trace; the
    message is DuckDB's, on one line."""


class ServiceError(TracebusError):
    """Raised by a remote observer when the collector service refused it: a bad token, a
    limit reached (connections, open runs, frame size), a run that is not open or already
    ended. ``code`` is the code of the service's error frame (docs/protocol.md lists them),
    ``message`` its text.
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class ProtocolError(ServiceError):
    """Raised when bytes on a collector connection break the wire protocol: a frame that is
    too large or cut short, a body that is not a message, an event of the wrong shape.

    The service answers it with an error frame of the same ``code``; a client raises it when
    the service's own frames make no sense.
    """


class ServiceUnavailableError(TracebusError, ConnectionError):
    """Raised when the collector service cannot be reached: on entering a remote observer,
    by ``tracebus status``, and by ``flush()`` once the observer gave up reconnecting.
    """


class DeliveryError(TracebusError):
    """Raised by a remote observer's ``aclose()``/``close()`` when some events never reached
    the run's files: ``undelivered`` were still unacknowledged when the observer gave up (the
    service stayed unreachable past ``reconnect_timeout``, or closing took longer than
    ``close_timeout``), or were dropped because the buffer was full under
    ``overflow="drop"``; ``rejected`` were refused by the service, ``reason`` says why.
    """

    def __init__(self, undelivered: int, rejected: int, reason: str) -> None:
        self.undelivered = undelivered
        self.rejected = rejected
        self.reason = reason
        super().__init__(
            f"{undelivered + rejected} event(s) not delivered to the collector "
            f"({undelivered} undelivered, {rejected} rejected): {reason}"
        )


class BackendError(TracebusError, RuntimeError):
    """Raised on entering a transport that cannot run on the current async backend: the
    NATS transport (nats-py) runs on asyncio only, so entering it under trio raises this.
    """


def keep_with_note(error: BaseException, failure: BaseException) -> None:
    """Attach ``failure`` (closing the run failed too) to ``error`` (what the user's block
    raised) as a note, so that the user's own error is the one they see."""
    error.add_note(f"tracebus: closing the run also failed: {describe(failure)}")


class RunLockedError(TracebusError):
    """Raised by ``RunLock.acquire`` when another process holds a run's lock, that is, is
    writing the run; ``path`` is the lock file, ``holder`` the pid written in it (or None).
    The collector answers it with ``run_locked`` and leaves the run to its writer.
    """

    def __init__(self, path: object, holder: int | None) -> None:
        self.path = path
        self.holder = holder
        who = f"process {holder}" if holder is not None else "another process"
        super().__init__(f"{who} is writing this run (it holds {path})")
