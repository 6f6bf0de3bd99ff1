"""The run's metadata file: every field the seed wrote, and the counts a reader needs."""

from __future__ import annotations

import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from .._events import SCHEMA_VERSION
from .._layout import RunLayout
from .._state import RunState
from .._text import utf8_text


def build_metadata(
    layout: RunLayout,
    state: RunState,
    *,
    pid: int,
    started: datetime,
    events_written: int,
    events_dropped: int,
    events_lost: int,
    write_errors: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    counts = state.counts()
    return {
        "workflow_id": layout.workflow_id,
        "run_id": layout.run_id,
        "step_number": layout.step_num,
        "status": state.status if state.finished is not None else "incomplete",
        "start_time": started.astimezone().isoformat(),
        "end_time": datetime.now().astimezone().isoformat(),
        "pid": pid,
        "total_nodes": state.total_nodes,
        **counts._asdict(),
        "nodes_untracked": state.tally.untracked,
        "total_time_seconds": state.elapsed(),
        "cumulative_cost_usd": state.cumulative_cost_usd,
        "node_times": state.node_times,
        "node_costs": state.node_costs,
        "node_details_dropped": state.node_details_dropped,
        "peak_in_flight": state.peak_in_flight,
        "error": state.error,
        "events_written": events_written,
        "events_dropped": events_dropped,
        "events_lost": events_lost,
        "write_errors": write_errors,
        "log_file": utf8_text(str(layout.audit_log_file)),
        "trace_file": utf8_text(str(layout.audit_trace_file)),
        "execution_log_file": utf8_text(str(layout.log_file)),
        "execution_trace_file": utf8_text(str(layout.trace_file)),
        "schema_version": SCHEMA_VERSION,
    }


_encoder = msgspec.json.Encoder(enc_hook=repr)


def encode_metadata(data: dict[str, Any]) -> str:
    """The metadata file's text: indented JSON (UTF-8, not escaped) and a final newline."""
    # msgspec, then its formatter: a tenth of json.dumps's time for a big node_times table
    return msgspec.json.format(_encoder.encode(data), indent=2).decode() + "\n"


def create_temp_beside(path: Path) -> tuple[int, Path]:
    """Create a new, empty file beside ``path`` for writing and return its descriptor and path.

    Its mode is 0o666 less the umask, as for every other file of a run (``tempfile.mkstemp``
    would make it 0o600 whatever the umask). Raises OSError.
    """
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666), tmp
        except FileExistsError:
            continue


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync it, then rename over ``path``."""
    fd, tmp = create_temp_beside(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON to ``path``, atomically (see ``write_text_atomic``)."""
    write_text_atomic(path, encode_metadata(data))
