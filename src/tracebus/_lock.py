"""The lock that says a run is being written: one writer per run, across processes.

A collector holds ``{out}/.tracebus/runs/{workflow_id}/{run_id}.lock`` (an exclusive
``flock``) for as long as its writer has the run's files open; another collector that finds
it held leaves the run alone. Anything that must not touch a live run (a collector resuming
it, a tool removing old runs) asks ``run_is_locked`` first. ``flock`` locks belong to an
open file and vanish with the process, so a killed collector never leaves a run locked. The
file holds the holder's pid, for messages, and an in-process observer's the name of its trace
file under it (a reader that finds a trace still empty learns from it which run it is); it is
never removed while a run can be written,
as removing a lock file lets two processes lock two different files of the same name.

An in-process observer holds its run's lock too, from entry to close, and removes the file
(and the directories it made, once empty) when the run is written: such a run is never
written again. A forked child closes its copy of every lock held in the parent, so the lock
lasts as long as the parent's run, not as long as the child.
"""

from __future__ import annotations

import fcntl
import os
import weakref
from pathlib import Path

from ._exceptions import RunLockedError

#: How often ``acquire`` makes the directory again when a release removed it meanwhile.
_ATTEMPTS = 100


def run_lock_path(output_dir: str | os.PathLike[str], workflow_id: str, run_id: str) -> Path:
    """Where the lock of a run written under ``output_dir`` lives (ids checked by
    ``validate_id``: plain file-name parts)."""
    return Path(output_dir) / ".tracebus" / "runs" / workflow_id / f"{run_id}.lock"


class RunLock:
    """An exclusive lock on one run; ``acquire()`` never waits. Blocking (file system calls):
    use it from a worker thread in async code."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        _HELD.add(self)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock and write this process's pid into it.

        Raises RunLockedError when another holder has it (naming its pid), OSError when the
        file cannot be made.
        """
        if self._fd is not None:
            return
        for attempt in range(_ATTEMPTS):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                break
            except FileNotFoundError:  # another run's release removed the empty directory
                if attempt == _ATTEMPTS - 1:
                    raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise RunLockedError(self.path, holder) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the pid is only for messages; the lock is what counts
        self._fd = fd

    def name_trace(self, trace_name: str) -> None:
        """Write the run's trace file's name under the pid, for readers that find the trace
        before its first line says which run it is (best effort)."""
        if self._fd is None:
            return
        try:
            data = f"{os.getpid()}\n{trace_name}\n".encode()
            os.pwrite(self._fd, data, 0)
            os.ftruncate(self._fd, len(data))
        except (OSError, UnicodeEncodeError):
            pass

    def release(self, *, remove: bool = False) -> None:
        """Let the lock go (idempotent). With ``remove``, for a run that is never written
        again: first remove the file, while still held, and then the directories that held
        it (``.tracebus/runs/{workflow_id}``, ``.tracebus/runs``, ``.tracebus``) once empty."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if remove:
            try:
                self.path.unlink()
            except OSError:
                remove = False
        os.close(fd)  # closing the only descriptor of the open file drops the flock
        if remove:
            for directory in self.path.parents[:3]:
                try:
                    directory.rmdir()
                except OSError:  # not empty (another run's lock, the collector's registry)
                    break

    def _forget_in_child(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)  # the parent's descriptor still holds the lock
            except OSError:
                pass


def run_is_locked(output_dir: str | os.PathLike[str], workflow_id: str, run_id: str) -> bool:
    """Whether some process holds the run's lock, that is, is writing the run now."""
    try:
        fd = os.open(run_lock_path(output_dir, workflow_id, run_id), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).split(b"\n", 1)[0].decode().strip())
    except (OSError, ValueError):
        return None


def lock_trace_name(path: Path) -> str | None:
    """The trace file name a lock file holds (see ``RunLock.name_trace``), or None."""
    try:
        lines = path.read_bytes().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    return lines[1] if len(lines) > 1 and lines[1] else None


#: Every lock object of the process, for a forked child to drop its copies.
_HELD: weakref.WeakSet[RunLock] = weakref.WeakSet()


def _close_in_child() -> None:
    for lock in list(_HELD):
        lock._forget_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)
