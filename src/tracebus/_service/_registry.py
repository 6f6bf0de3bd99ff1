"""What the collector remembers of its runs across restarts, and how it takes a run back.

One small JSON file per run, ``{out}/.tracebus/runs/{workflow_id}/{run_id}.json``: written
when the run opens (where its files are), rewritten when it ends (each producer's last
``seq``). A batch for a run the service does not hold is looked up here: an open run is
resumed, its files appended to; an ended one lets late resends be recognised as duplicates.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from datetime import datetime
from pathlib import Path

import msgspec

from .._atomic import replacing, write_json_atomic
from .._events import AnyEvent, Event, Note
from .._exceptions import TracebusError
from .._layout import RunLayout, link_in_place
from .._lock import RunLock
from .._run_parts import Resume


class RunEntry(msgspec.Struct, kw_only=True):
    workflow_id: str
    run_id: str
    opener: str
    pid: int
    total_nodes: int
    started: str
    step_num: str
    stamp: str
    log_file: str
    trace_file: str
    audit_dir: str
    audit_log_file: str
    audit_trace_file: str
    metadata_file: str
    ended: bool = False
    last_seq: dict[str, int] = {}

    @classmethod
    def of(
        cls, layout: RunLayout, *, started: datetime, opener: str, pid: int, total_nodes: int
    ) -> RunEntry:
        return cls(
            workflow_id=layout.workflow_id,
            run_id=layout.run_id,
            opener=opener,
            pid=pid,
            total_nodes=total_nodes,
            started=started.isoformat(),
            step_num=layout.step_num,
            stamp=layout.stamp,
            log_file=str(layout.log_file),
            trace_file=str(layout.trace_file),
            audit_dir=str(layout.audit_dir),
            audit_log_file=str(layout.audit_log_file),
            audit_trace_file=str(layout.audit_trace_file),
            metadata_file=str(layout.metadata_file),
        )

    def layout(self, output_dir: Path) -> RunLayout:
        return RunLayout(
            output_dir=output_dir,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            step_num=self.step_num,
            stamp=self.stamp,
            log_file=Path(self.log_file),
            trace_file=Path(self.trace_file),
            audit_dir=Path(self.audit_dir),
            audit_log_file=Path(self.audit_log_file),
            audit_trace_file=Path(self.audit_trace_file),
            metadata_file=Path(self.metadata_file),
        )


_entry_decoder = msgspec.json.Decoder(RunEntry)
_trace_decoder = msgspec.json.Decoder(AnyEvent)


class RunRegistry:
    """The entries under ``{output_dir}/.tracebus/runs``. Every method blocks: call them
    from a worker thread."""

    def __init__(self, output_dir: Path) -> None:
        self.root = output_dir / ".tracebus" / "runs"

    def _path(self, workflow_id: str, run_id: str) -> Path:
        # both ids were checked by validate_id: plain file-name parts
        return self.root / workflow_id / f"{run_id}.json"

    def load(self, workflow_id: str, run_id: str) -> RunEntry | None:
        """The run's entry, or None. Raises OSError, msgspec.DecodeError for a damaged one."""
        try:
            data = self._path(workflow_id, run_id).read_bytes()
        except FileNotFoundError:
            return None
        return _entry_decoder.decode(data)

    def save(self, entry: RunEntry) -> None:
        """Write the entry atomically. Raises OSError."""
        path = self._path(entry.workflow_id, entry.run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, msgspec.to_builtins(entry))

    def prune(self, older_than: float) -> int:
        """Remove entries of ended runs not touched for ``older_than`` seconds; return how
        many. Open runs' entries stay: they are resumed whenever their producers come back."""
        if not self.root.is_dir():
            return 0
        removed = 0
        cutoff = time.time() - older_than
        for path in self.root.glob("*/*.json"):
            try:
                if (
                    path.stat().st_mtime >= cutoff
                    or not _entry_decoder.decode(path.read_bytes()).ended
                ):
                    continue
                path.unlink()
            except (OSError, msgspec.DecodeError):
                continue
            removed += 1
            _remove_lock(path.with_suffix(".lock"))
        return removed


def _remove_lock(path: Path) -> None:
    # An ended run is never written again; holding its lock while removing the file keeps a
    # late opener from locking a file no one else sees.
    lock = RunLock(path)
    try:
        lock.acquire()
        path.unlink()
    except (OSError, TracebusError):
        pass
    finally:
        lock.release()


def prepare_resume(entry: RunEntry, output_dir: Path) -> tuple[Resume, list[Event]]:
    """Make a run's files fit to append to again, and read back the events its trace holds.

    The main trace is the reference: a torn last line (the service was killed mid-write) is
    cut off, and the audit trace is made a link of it again (a copy where the filesystem has
    none between the two). The logs only lose a torn last line; they may lack the lines of
    the batch being written when the service died.

    Raises OSError when the files cannot be read or changed.
    """
    layout = entry.layout(output_dir)
    data = _cut_torn_tail(layout.trace_file)
    events = _read_back(data) if data else []
    _replace_with_copy(layout.trace_file, layout.audit_trace_file)
    for log in (layout.log_file, layout.audit_log_file):
        if log.exists():
            _cut_torn_tail(log)
    layout = dataclasses.replace(
        layout,
        audit_trace_linked=_same_file(layout.trace_file, layout.audit_trace_file),
        audit_log_linked=_same_file(layout.log_file, layout.audit_log_file),
    )
    started = datetime.fromisoformat(entry.started)
    return Resume(layout=layout, started=started, events_written=len(events)), events


def _read_back(data: bytes) -> list[Event]:
    """The trace's events. A line that is not an event of this schema (written by an older
    collector, say a NaN written as ``null``) still holds its producer's place: it comes back
    as a bare note with its ``producer`` and ``seq``, so its resend is left out, and counts
    nothing else."""
    try:
        return list(_trace_decoder.decode_lines(data))
    except msgspec.DecodeError:
        pass
    events: list[Event] = []
    for line in data.splitlines():
        try:
            events.append(_trace_decoder.decode(line))
        except msgspec.DecodeError:
            events.append(_placeholder(line))
    return events


def _placeholder(line: bytes) -> Event:
    try:
        raw = msgspec.json.decode(line)
    except msgspec.DecodeError:
        raw = None
    fields = raw if isinstance(raw, dict) else {}
    producer, seq = fields.get("producer"), fields.get("seq")
    return Note(
        epoch_seconds=0.0,
        pid=0,
        workflow_id=str(fields.get("workflow_id", "")),
        run_id=str(fields.get("run_id", "")),
        producer=producer if isinstance(producer, str) else None,
        seq=seq if type(seq) is int and seq > 0 else 0,
        message="",
    )


def _cut_torn_tail(path: Path) -> bytes:
    data = path.read_bytes()
    whole = data.rfind(b"\n") + 1
    if whole != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(whole)
    return data[:whole]


def _same_file(path: Path, other: Path) -> bool:
    try:
        return os.path.samefile(path, other)
    except OSError:
        return False


def _replace_with_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if _same_file(source, target) or link_in_place(source, target):
        return  # a second name of the trace, as the run's layout makes it
    with replacing(target) as (fd, tmp):
        os.close(fd)
        shutil.copyfile(source, tmp)
