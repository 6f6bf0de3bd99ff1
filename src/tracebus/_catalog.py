"""Which runs an output directory holds, and which of its files are each run's.

A run is found by its trace: every ``traces/*.jsonl``, and every audit trace
(``audit/step_NN/trace_NN.jsonl``, ``audit/step_NN/previous/STAMP/trace_NN.jsonl``) that is
not a second name of one of those. An audit directory's files (trace, log, metadata) belong
to the run whose trace is the same file (a hard link), else the run its metadata names
(``execution_trace_file``; for the seed's metadata, which names none, the trace of its step
whose stamp is its start time), else the run of the same ids in the audit trace's first line;
an audit trace that matches none is a run of its own. The log in ``logs/`` is the one the
metadata names, else ``execution_{workflow_id}_{stamp}.log`` of the trace's stamp. A run the
collector wrote also has its registry entry and lock under ``.tracebus/runs/``.

Only names are listed and the metadata and a trace's first line read: the figures of a run
whose metadata is not complete are for the readers (``tracebus._tools._runs``) to take from
its trace. Blocking (file system calls).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from ._exceptions import InvalidIdError
from ._layout import STEP_DIR, TRACE_NAME, audit_file, step_number, validate_id
from ._lock import lock_trace_name, run_is_locked, run_lock_path

#: How much of a trace is read for its first line (a workflow_start is far smaller).
_FIRST_LINE_BYTES = 64 * 1024


class _Head(msgspec.Struct):
    """The fields of a trace's first line or of a metadata file that tell which run it is."""

    workflow_id: Any = None
    run_id: Any = None
    epoch_seconds: Any = None
    start_time: Any = None
    execution_trace_file: Any = None
    execution_log_file: Any = None


_decode_head = msgspec.json.Decoder(_Head).decode


@dataclass(slots=True)
class _Audit:
    directory: Path
    number: str
    trace: Path | None = None
    log: Path | None = None
    metadata: Path | None = None


@dataclass(eq=False, slots=True)
class StoredRun:
    """One run's files under an output directory, and what tells which run it is.

    ``trace`` is its main trace (in ``traces/``), else its audit trace. ``metadata`` is the
    metadata file decoded (None when absent or unreadable; ``metadata_problem`` says why it
    is unreadable). ``archive`` is the ``previous/STAMP`` directory holding its audit files,
    when they were archived by a later run of its step. ``started`` is an epoch: the
    metadata's start time, else the trace's first event's, else the trace's stamp.
    """

    output_dir: Path
    trace: Path
    stamp: str | None
    step_num: str
    workflow_id: str | None = None
    run_id: str | None = None
    started: float | None = None
    metadata_file: Path | None = None
    metadata: dict[str, Any] | None = None
    metadata_problem: str | None = None
    log: Path | None = None
    audit_trace: Path | None = None
    audit_log: Path | None = None
    archive: Path | None = None
    service_files: tuple[Path, ...] = ()
    _head_read: bool = field(default=False, repr=False)
    _seen: dict[Path, os.stat_result] = field(default_factory=dict, repr=False)

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file of the run, in the order a removal takes them (see ``_retention``):
        metadata, logs, the audit trace, the main trace, the collector's entry and lock."""
        named = (self.metadata_file, self.log, self.audit_log, self.audit_trace, self.trace)
        unique = dict.fromkeys(path for path in named if path is not None)
        return (*unique, *self.service_files)

    def _stats(self) -> dict[Path, os.stat_result]:
        """Each existing file's status, as the listing saw it (else asked now)."""
        stats = {}
        for path in self.files:
            info = self._seen.get(path)
            if info is None:
                try:
                    info = path.stat()
                except OSError:
                    continue
            stats[path] = info
        return stats

    def sizes(self) -> dict[Path, int]:
        """Each existing file's size in bytes."""
        return {path: info.st_size for path, info in self._stats().items()}

    def freed_bytes(self) -> int:
        """The bytes removing every file of the run gives back: each file once (a trace and
        its audit copy are one file under two names where they are linked), and only a file
        whose every name is the run's."""
        names: dict[tuple[int, int], list[os.stat_result]] = {}
        for info in self._stats().values():
            names.setdefault((info.st_dev, info.st_ino), []).append(info)
        return sum(infos[0].st_size for infos in names.values() if len(infos) >= infos[0].st_nlink)

    def forget_stats(self) -> None:
        """Ask the file system again next time (the files changed since the listing)."""
        self._seen = {}

    def locked(self) -> bool:
        """Whether a writer holds the run's lock: the run is being written now."""
        if not lockable(self.workflow_id, self.run_id):
            return False  # the seed's runs have no run id, and no lock
        assert self.workflow_id is not None and self.run_id is not None
        try:
            return run_is_locked(self.output_dir, self.workflow_id, self.run_id)
        except OSError:
            return False


def catalog(output_dir: str | os.PathLike[str], *, step: str | None = None) -> list[StoredRun]:
    """Every run under ``output_dir`` (of step ``NN`` only, with ``step``), in no particular
    order (see the module's docstring).

    Raises FileNotFoundError when ``output_dir`` does not exist, NotADirectoryError when it
    is not a directory.
    """
    out = Path(output_dir)
    if not out.is_dir():
        if out.exists():
            raise NotADirectoryError(f"{out}: not a directory")
        raise FileNotFoundError(f"{out}: no such directory")
    runs: list[StoredRun] = []
    by_inode: dict[tuple[int, int], StoredRun] = {}
    by_name: dict[str, StoredRun] = {}
    seen: dict[Path, os.stat_result] = {}
    for trace in _listed(out / "traces", seen):
        if not trace.name.endswith(".jsonl"):
            continue
        if step is not None and not trace.name.startswith(f"trace_step_{step}_"):
            continue
        info = seen[trace]
        match = TRACE_NAME.fullmatch(trace.name)
        stored = StoredRun(
            out,
            trace,
            stamp=match["stamp"] if match else None,
            step_num=match["step"] if match else "00",
            _seen=seen,
        )
        runs.append(stored)
        by_inode[(info.st_dev, info.st_ino)] = stored
        by_name[trace.name] = stored
    by_ids: dict[tuple[str, str], StoredRun] | None = None
    for audit in _audits(out / "audit", step, seen):
        meta = _read_metadata(audit.metadata) if audit.metadata is not None else None
        head = meta[1] if meta is not None else None
        run = _owner(audit, seen, head, by_inode, by_name, runs)
        if run is None and audit.trace is not None and head is None:
            if by_ids is None:
                by_ids = {}
                for known in runs:
                    _read_head(known)
                    if known.workflow_id is not None and known.run_id is not None:
                        by_ids[(known.workflow_id, known.run_id)] = known
            first = _first_line(audit.trace)
            if first is not None and isinstance(first.run_id, str):
                run = by_ids.get((str(first.workflow_id), first.run_id))
        if run is None:
            if audit.trace is None:
                continue  # a metadata file or a log without a trace: not a run to read
            run = StoredRun(out, audit.trace, stamp=None, step_num=audit.number, _seen=seen)
            runs.append(run)
        elif run.audit_trace is not None or run.metadata_file is not None:
            continue  # the run has its audit files already: these are a stray copy
        if audit.trace is not None and audit.trace != run.trace:
            run.audit_trace = audit.trace
        run.audit_log = audit.log
        if audit.directory.parent.name == "previous":
            run.archive = audit.directory
        if meta is not None:
            run.metadata_file = audit.metadata
            run.metadata, head, run.metadata_problem = meta[0], meta[1], meta[2]
            if head is not None:
                _take_ids(run, head, from_metadata=True)
    logs = {path.name: path for path in _listed(out / "logs", seen)}
    service = _service_names(out, seen)
    for run in runs:
        _read_head(run)
    if service and any(run.run_id is None for run in runs):
        claimed = _claimed_traces(service)
        for run in runs:
            if run.run_id is None and run.trace.name in claimed:
                run.workflow_id, run.run_id = claimed[run.trace.name]
    for run in runs:
        run.log = _log_of(run, logs)
        if run.workflow_id is not None and run.run_id is not None:
            run.service_files = _service_files(out, run.workflow_id, run.run_id, service)
        if run.started is None and run.stamp is not None:
            run.started = _stamp_epoch(run.stamp)
        if run.started is None:
            try:
                run.started = run.trace.stat().st_mtime
            except OSError:
                pass
    return runs


def _listed(directory: Path, seen: dict[Path, os.stat_result]) -> list[Path]:
    """The regular files in ``directory``, their status put in ``seen``."""
    found = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    path = Path(entry.path)
                    seen[path] = info
                    found.append(path)
    except (FileNotFoundError, NotADirectoryError):
        pass
    return found


def _subdirectories(directory: Path) -> list[Path]:
    try:
        with os.scandir(directory) as entries:
            names = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
        return [directory / name for name in names]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _audits(audit_root: Path, only: str | None, seen: dict[Path, os.stat_result]) -> list[_Audit]:
    found: list[_Audit] = []
    steps = [p for p in _subdirectories(audit_root) if STEP_DIR.fullmatch(p.name)]
    if only is not None:
        steps = [p for p in steps if p.name == f"step_{only}"]
    for step in steps:
        number = step.name[len("step_") :]
        for directory in (step, *_subdirectories(step / "previous")):
            audit = _Audit(directory, number)
            for path in _listed(directory, seen):
                named = audit_file(path.name)
                if named is not None and named[1] == number:
                    setattr(audit, named[0], path)
            if audit.trace is not None or audit.metadata is not None or audit.log is not None:
                found.append(audit)
    return found


def _owner(
    audit: _Audit,
    seen: dict[Path, os.stat_result],
    head: _Head | None,
    by_inode: dict[tuple[int, int], StoredRun],
    by_name: dict[str, StoredRun],
    runs: list[StoredRun],
) -> StoredRun | None:
    if audit.trace is not None:
        info = seen[audit.trace]
        run = by_inode.get((info.st_dev, info.st_ino))
        if run is not None:
            return run
    if head is None:
        return None
    named = head.execution_trace_file
    if isinstance(named, str) and named:
        return by_name.get(Path(named).name)
    if isinstance(head.start_time, str):  # the seed's metadata: matched by its start time
        try:
            stamp = datetime.fromisoformat(head.start_time).strftime("%Y%m%d_%H%M%S")
        except ValueError:
            return None
        for run in runs:
            if run.step_num == audit.number and run.stamp == stamp:
                return run
    return None


def _read_metadata(path: Path) -> tuple[dict[str, Any] | None, _Head | None, str | None]:
    """The metadata decoded, the fields that say which run it is, and why it is unreadable."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, None, f"metadata {path} unreadable ({exc})"
    try:
        decoded = msgspec.json.decode(data)
    except msgspec.DecodeError:
        try:  # what msgspec refuses and json takes (NaN), and json's wording of an error
            decoded = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            return None, None, f"metadata {path} unreadable ({exc})"
    if not isinstance(decoded, dict):
        return None, None, f"metadata {path} is not a JSON object"
    head = _Head(
        workflow_id=decoded.get("workflow_id"),
        run_id=decoded.get("run_id"),
        start_time=decoded.get("start_time"),
        execution_trace_file=decoded.get("execution_trace_file"),
        execution_log_file=decoded.get("execution_log_file"),
    )
    return decoded, head, None


def _first_line(trace: Path) -> _Head | None:
    try:
        with trace.open("rb") as handle:
            data = handle.read(_FIRST_LINE_BYTES)
    except OSError:
        return None
    line = data.split(b"\n", 1)[0]
    try:
        return _decode_head(line)
    except msgspec.DecodeError:
        return None


def _read_head(run: StoredRun) -> None:
    """The ids and start the metadata did not give, from the trace's first line."""
    if run._head_read:
        return
    run._head_read = True
    if run.workflow_id is not None and run.run_id is not None and run.started is not None:
        return
    head = _first_line(run.trace)
    if head is not None:
        _take_ids(run, head, from_metadata=False)


def _take_ids(run: StoredRun, head: _Head, *, from_metadata: bool) -> None:
    if isinstance(head.workflow_id, str) and head.workflow_id:
        run.workflow_id = head.workflow_id
        if run.stamp is None:
            run.step_num = step_number(head.workflow_id)
    if isinstance(head.run_id, str) and head.run_id:
        run.run_id = head.run_id
    if from_metadata and isinstance(head.start_time, str):
        try:
            run.started = datetime.fromisoformat(head.start_time).timestamp()
        except ValueError:
            pass
    elif not from_metadata and run.started is None:
        epoch = head.epoch_seconds
        if isinstance(epoch, int | float) and not isinstance(epoch, bool):
            run.started = float(epoch)


def _log_of(run: StoredRun, logs: dict[str, Path]) -> Path | None:
    named = run.metadata.get("execution_log_file") if run.metadata else None
    if isinstance(named, str) and named:
        return logs.get(Path(named).name)
    if run.workflow_id is None or run.stamp is None or run.trace.parent.name != "traces":
        return None
    return logs.get(f"execution_{run.workflow_id}_{run.stamp}.log")


def _service_names(out: Path, seen: dict[Path, os.stat_result]) -> set[Path]:
    """The files under ``.tracebus/runs/*/``: the collector's entries, the runs' locks."""
    names: set[Path] = set()
    for directory in _subdirectories(out / ".tracebus" / "runs"):
        names.update(_listed(directory, seen))
    return names


def _claimed_traces(names: set[Path]) -> dict[str, tuple[str, str]]:
    """Trace file name -> the ids of its run, from the lock files that name their trace and
    the collector's entries: for traces whose first line is not written yet."""
    claimed: dict[str, tuple[str, str]] = {}
    for path in names:
        ids = (path.parent.name, path.stem)
        if path.suffix == ".lock":
            trace_name = lock_trace_name(path)
            if trace_name is not None:
                claimed[trace_name] = ids
        elif path.suffix == ".json":
            try:
                entry = msgspec.json.decode(path.read_bytes())
            except (OSError, msgspec.DecodeError):
                continue
            named = entry.get("trace_file") if isinstance(entry, dict) else None
            if isinstance(named, str) and named:
                claimed[Path(named).name] = ids
    return claimed


def _service_files(out: Path, workflow_id: str, run_id: str, names: set[Path]) -> tuple[Path, ...]:
    """The collector's registry entry and the run's lock, where they exist."""
    if not names or not lockable(workflow_id, run_id):
        return ()
    lock = run_lock_path(out, workflow_id, run_id)
    return tuple(p for p in (lock.with_suffix(".json"), lock) if p in names)


def lockable(workflow_id: str | None, run_id: str | None) -> bool:
    """Whether the ids can name a lock: both given, and safe as file-name parts."""
    if workflow_id is None or run_id is None:
        return False
    try:
        validate_id(workflow_id, "workflow_id")
        validate_id(run_id, "run_id")
    except InvalidIdError:
        return False
    return True


def _stamp_epoch(stamp: str) -> float | None:
    try:
        return datetime.strptime(stamp[:15], "%Y%m%d_%H%M%S").timestamp()
    except ValueError:
        return None
