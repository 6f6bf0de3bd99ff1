"""Logs into the run: logging records and warnings as ``log`` events, in the trace and log."""

from __future__ import annotations

import logging
import re
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread
import pytest

import tracebus
from tests.conftest import metadata_of, trace_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def app_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("app.agent")
    logger.setLevel(logging.DEBUG)
    handlers = list(logging.getLogger().handlers)
    yield logger
    logger.setLevel(logging.NOTSET)
    assert logging.getLogger().handlers == handlers  # the run removed its handler


def _logs(trace: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in trace if e["event_type"] == "log"]


async def test_records_at_or_above_the_level_become_log_events_of_the_current_node(
    out: Path, app_logger: logging.Logger
) -> None:
    async with tracebus.Observer(
        "wf", out, progress=False, console=None, capture_logging="INFO"
    ) as obs:
        app_logger.debug("not captured")
        app_logger.info("run begins")
        async with obs.node("tool_call"):
            app_logger.warning("rate limited, %d retries left", 2)
            try:
                _ = {"present": 1}["missing"]
            except KeyError:
                app_logger.exception("lookup failed")
    app_logger.warning("after the run")

    logs = _logs(trace_of(obs.trace_file))
    assert [(e["message"], e["node_id"], e["level"], e["levelno"]) for e in logs] == [
        ("run begins", None, "INFO", 20),
        ("rate limited, 2 retries left", "tool_call", "WARNING", 30),
        ("lookup failed", "tool_call", "ERROR", 40),
    ]
    assert {e["logger"] for e in logs} == {"app.agent"}
    assert logs[0]["exception"] is None
    assert logs[2]["exception"].startswith("Traceback (most recent call last):")
    assert logs[2]["exception"].endswith("KeyError: 'missing'")
    log_lines = [line for line in obs.log_file.read_text().splitlines() if "] LOG" in line]
    assert len(log_lines) == 3
    assert log_lines[0].split("] ", 1)[1].startswith("LOG: run begins | ")
    assert (
        log_lines[1]
        .split("] ", 1)[1]
        .startswith(
            'LOG tool_call: rate limited, 2 retries left | {"logger":"app.agent","level":"WARNING",'
        )
    )
    assert "\\nKeyError: 'missing'" in log_lines[2]  # the traceback stays on its one line


async def test_records_from_other_threads_are_captured_with_their_context(
    out: Path, app_logger: logging.Logger
) -> None:
    async with tracebus.Observer(
        "wf", out, progress=False, console=None, capture_logging=logging.WARNING
    ) as obs:
        async with obs.node("worker"):
            await anyio.to_thread.run_sync(app_logger.warning, "from to_thread")
            thread = threading.Thread(target=app_logger.warning, args=("from a plain thread",))
            thread.start()
            await anyio.to_thread.run_sync(thread.join)
    logs = {e["message"]: e["node_id"] for e in _logs(trace_of(obs.trace_file))}
    assert logs == {"from to_thread": "worker", "from a plain thread": None}


async def test_tracebus_own_logging_is_never_captured(
    out: Path, app_logger: logging.Logger
) -> None:
    class LoggingWhileEmitting(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name == "app.agent":
                logging.getLogger("app.other").warning("logged by a handler")

    echo = LoggingWhileEmitting()
    async with tracebus.Observer(
        "wf", out, progress=False, console=None, capture_logging="DEBUG"
    ) as obs:
        logging.getLogger("tracebus").warning("the package's own")
        logging.getLogger("tracebus._writer").error("a module's own")
        logging.getLogger().addHandler(echo)
        try:
            app_logger.warning("user's")
        finally:
            logging.getLogger().removeHandler(echo)
    messages = [e["message"] for e in _logs(trace_of(obs.trace_file))]
    assert sorted(messages) == ["logged by a handler", "user's"]


async def test_log_events_are_dropped_and_counted_when_the_queue_is_full(
    out: Path, app_logger: logging.Logger
) -> None:
    async with tracebus.Observer(
        "wf", out, progress=False, console=None, capture_logging="INFO", capacity=16
    ) as obs:
        async with obs.node("chatty"):
            for index in range(100):  # the writer cannot run in between: the queue fills
                app_logger.info("line %d", index)
    trace = trace_of(obs.trace_file)
    metadata = metadata_of(obs.metadata_file)
    written = len(_logs(trace))
    assert 0 < written < 100
    assert metadata["events_dropped"] == 100 - written
    assert [e["event_type"] for e in trace if e["event_type"] != "log"] == [
        "workflow_start",
        "node_start",
        "node_success",
        "workflow_complete",
    ]


async def test_warnings_are_captured_when_asked(out: Path) -> None:
    shown: list[str] = []
    previous = warnings.showwarning

    def show(message: Warning | str, *args: Any, **kwargs: Any) -> None:
        shown.append(str(message))

    warnings.showwarning = show
    try:
        async with tracebus.Observer(
            "wf", out, progress=False, console=None, capture_warnings=True
        ) as obs:
            async with obs.node("legacy"):
                with warnings.catch_warnings():
                    warnings.simplefilter("always")
                    warnings.warn("old API", DeprecationWarning, stacklevel=1)
    finally:
        restored = warnings.showwarning
        warnings.showwarning = previous
    assert restored is show  # the run put back what it found
    (log,) = _logs(trace_of(obs.trace_file))
    assert log["logger"] == "py.warnings" and log["level"] == "WARNING"
    assert log["node_id"] == "legacy"
    assert re.fullmatch(r".*test_logs\.py:\d+: DeprecationWarning: old API", log["message"])
    assert shown == ["old API"]  # still shown as before


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_observer_captures_records_of_any_thread(
    out: Path, app_logger: logging.Logger, backend: Literal["asyncio", "trio"]
) -> None:
    with tracebus.SyncObserver(
        "wf", out, progress=False, console=None, capture_logging="WARNING", backend=backend
    ) as obs:
        with obs.node("batch"):
            app_logger.warning("in the caller's thread")
            thread = threading.Thread(target=app_logger.error, args=("in another thread",))
            thread.start()
            thread.join()
    logs = {e["message"]: (e["node_id"], e["level"]) for e in _logs(trace_of(obs.trace_file))}
    assert logs == {
        "in the caller's thread": ("batch", "WARNING"),
        "in another thread": (None, "ERROR"),
    }


async def test_a_logging_handler_wired_by_hand(out: Path) -> None:
    logger = logging.getLogger("wired")
    logger.propagate = False
    try:
        async with tracebus.Observer("wf", out, progress=False, console=None) as obs:
            handler = tracebus.LoggingHandler(obs, logging.INFO)
            logger.addHandler(handler)
            logger.setLevel(logging.DEBUG)
            logger.debug("below the handler's level")
            async with obs.node("n"):
                logger.info("through the handler")
        logger.info("after the run: ignored")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    logs = _logs(trace_of(obs.trace_file))
    assert [(e["message"], e["node_id"], e["logger"]) for e in logs] == [
        ("through the handler", "n", "wired")
    ]


def test_a_bad_capture_level_is_refused_at_construction(out: Path) -> None:
    with pytest.raises(ValueError, match="capture_logging: unknown logging level 'LOUD'"):
        tracebus.Observer("wf", out, capture_logging="LOUD")
    with pytest.raises(TypeError, match="capture_logging must be a logging level, not float"):
        tracebus.Observer("wf", out, capture_logging=1.5)  # type: ignore[arg-type]
