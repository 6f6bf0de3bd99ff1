"""Append-only output files written by the single writer: one write call per file per batch.

Files are opened unbuffered, so every batch reaches the operating system when its write
returns: a process killed hard loses nothing that was written, and at most the last line is
torn. A failed write is rolled back by truncating to the last complete line, so a file never
holds a partial line in its middle.

Every ``WRITEBACK_BYTES`` appended to a file, the kernel is told to start writing the file
out (``posix_fadvise(DONTNEED)``: writeback begins at once, without waiting, and pages already
on disk leave the page cache). Left alone, a long run piles up gigabytes of dirty pages until
the kernel throttles every write to the disk's pace; started early, writeback keeps up with
the run, the trace does not crowd other data out of memory, and the fsync at close has
little left to do.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Sequence
from io import FileIO
from pathlib import Path
from typing import Any, NamedTuple

import aiofiles.os

from .._layout import link_in_place
from .._loop import on_asyncio, on_private_loop, run_blocking, threads_allowed


def _open_file(path: Path) -> FileIO:
    fd = open_for_append(path)
    try:
        return open(fd, "ab", buffering=0)
    except BaseException:
        os.close(fd)
        raise


_APPEND = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def open_for_append(path: Path) -> int:
    """A descriptor appending to ``path``: the regular file there, or a new one made with
    ``O_EXCL``. Never through a symbolic link (``O_NOFOLLOW``), never a FIFO or a device
    (``O_NONBLOCK`` keeps a FIFO from blocking the open).

    Raises OSError naming ``path``: a refusal says why.
    """
    try:
        try:
            fd = os.open(path, _APPEND)
        except FileNotFoundError:
            try:
                fd = os.open(path, _APPEND | os.O_CREAT | os.O_EXCL, 0o666)  # the umask decides
            except FileExistsError:  # made meanwhile, by whoever: look again, as above
                fd = os.open(path, _APPEND)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(
                errno.ELOOP, "is a symbolic link; refusing to write through it", str(path)
            ) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "is not a regular file; refusing to write to it", str(path))
    return fd


#: Bytes appended to a file between two writeback hints (see the module's docstring).
WRITEBACK_BYTES = 4 * 1024 * 1024


class FileCalls(NamedTuple):
    """The system calls a batch append makes, and how often it hints writeback: the
    system's own, unless a test gives its own to watch or to break them."""

    writev: Callable[[int, Sequence[memoryview]], int] | None = getattr(os, "writev", None)
    fadvise: Callable[[int, int, int, int], None] | None = getattr(os, "posix_fadvise", None)
    writeback_bytes: int = WRITEBACK_BYTES


SYSTEM_CALLS: FileCalls = FileCalls()


class BatchAppender:
    """Appends a batch to several files, one vectored write per file, all in one trip to a
    worker thread: the event loop never waits on a write. Never raises OSError: each file
    records its own failure."""

    def __init__(self, calls: FileCalls = SYSTEM_CALLS) -> None:
        self.calls = calls

    async def append(self, jobs: Sequence[tuple[AppendFile, Sequence[bytes], int]]) -> None:
        """Append to each file its chunks (whole lines holding the given number of events)."""
        ready: list[tuple[AppendFile, Sequence[bytes], int, int]] = []
        work: list[tuple[int, Sequence[bytes], bool]] = []
        for file, chunks, events in jobs:
            size = sum(map(len, chunks))
            if size and (file.writable() or await file._reopened(events)):
                ready.append((file, chunks, events, size))
                work.append((file.fd, chunks, file._writeback_due(size, self.calls)))
        if not ready:
            return
        if on_private_loop() or not threads_allowed():
            # A thread of its own already (a trip to a worker thread would only add two
            # wake-ups and GIL hand-offs per batch), or interpreter exit (no thread may start).
            errors = _append_each(work, self.calls)
        elif on_asyncio():
            errors = await _append_each_in_executor(work, self.calls)
        else:
            errors = await run_blocking(_append_each, work, self.calls)
        for (file, _, events, size), error in zip(ready, errors, strict=True):
            if error is None:
                file._appended(size, events)
            else:
                await file._failed(error, events)


def _append_each(
    work: list[tuple[int, Sequence[bytes], bool]], calls: FileCalls
) -> list[OSError | None]:
    """The syscalls of one batch, for every file, on a worker thread."""
    errors: list[OSError | None] = []
    fadvise = calls.fadvise  # None on macOS
    for fd, chunks, writeback in work:
        try:
            _append_all(fd, chunks, calls.writev)
        except OSError as exc:
            errors.append(exc)
            continue
        errors.append(None)
        if writeback and fadvise is not None:
            try:
                fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass  # only a hint: the data is written either way
    return errors


def _append_all(
    fd: int, chunks: Sequence[bytes], writev: Callable[[int, Sequence[memoryview]], int] | None
) -> None:
    # One vectored write per file per batch: the chunks are never joined into one buffer.
    pending = [memoryview(chunk) for chunk in chunks if chunk]
    while pending:
        if writev is None:
            written = os.write(fd, pending[0])
        else:
            written = writev(fd, pending[:_IOV_MAX])
        while pending and written >= len(pending[0]):
            written -= len(pending[0])
            pending.pop(0)
        if written:
            pending[0] = pending[0][written:]


_IOV_MAX = 1024
# On asyncio, aiofiles' executor path: the loop's default executor.
_append_each_wrapped: Any = aiofiles.os.wrap(_append_each)


async def _append_each_in_executor(
    work: list[tuple[int, Sequence[bytes], bool]], calls: FileCalls
) -> list[OSError | None]:
    errors: list[OSError | None] = await _append_each_wrapped(work, calls)
    return errors


class AppendFile:
    """One output file; remembers the first error and how many events it failed to take."""

    def __init__(self, path: Path, aliases: tuple[Path, ...] = ()) -> None:
        self.path = path
        #: Other names of this file (hard links): written with it, reported with it.
        self.aliases = aliases
        self.lost = 0
        self.written = 0
        #: Appends that failed (or found the file gone for good); a batch went in whole if
        #: this did not change.
        self.failures = 0
        self.error: BaseException | None = None
        self._file: FileIO | None = None
        self.fd = -1  # the open file's descriptor, for the batch writes
        #: The device and inode of the file last opened (None before).
        self.identity: tuple[int, int] | None = None
        self._size = 0
        self._since_open = 0
        self._unhinted = 0

    async def open(self) -> None:
        """Open the file for appending (see ``open_for_append``). Raises OSError."""
        self._file = await run_blocking(_open_file, self.path)
        self.fd = self._file.fileno()
        status = os.fstat(self.fd)
        self._size = status.st_size
        self.identity = (status.st_dev, status.st_ino)
        self._since_open = 0

    @property
    def names(self) -> tuple[Path, ...]:
        """Every path this file is reported under: its own, then its aliases."""
        return (self.path, *self.aliases)

    async def write(self, data: bytes, events: int) -> None:
        """Append ``data`` (whole lines holding ``events`` events); never raises OSError."""
        await BatchAppender().append([(self, [data], events)])

    def writable(self) -> bool:
        """Open, and still linked at its path. Notes the file's real size: a file truncated
        under the writer (logrotate's ``copytruncate``) is written on at its real end, and a
        failed write is rolled back to it, never past it."""
        if self._file is None:
            return False
        # fstat on an open descriptor is answered from the in-memory inode: cheap, per batch.
        status = os.fstat(self.fd)
        self._size = status.st_size
        return status.st_nlink > 0

    async def _reopened(self, events: int) -> bool:
        """Reopen the file (it was removed, or never opened); False and the loss recorded if
        it cannot be."""
        await self._reopen()
        if self._file is None:
            self.failures += 1
            self._record(FileNotFoundError(f"cannot reopen {self.path}"), events)
            return False
        self._size = os.fstat(self.fd).st_size
        return True

    def _writeback_due(self, size: int, calls: FileCalls) -> bool:
        """Count ``size`` more bytes; True when the file is due a writeback hint."""
        self._unhinted += size
        if self._unhinted < calls.writeback_bytes:
            return False
        self._unhinted = 0
        return True

    def _appended(self, size: int, events: int) -> None:
        self._size += size
        self.written += events
        self._since_open += events

    async def _failed(self, error: OSError, events: int) -> None:
        self.failures += 1
        await self._rollback()
        self._record(error, events)

    @property
    def size(self) -> int:
        """The bytes of whole lines the file holds."""
        return self._size

    async def take_back(self, size: int, events: int) -> None:
        """Cut the file back to ``size`` bytes (what it held before the last append), which
        took back that append's ``events``."""
        if self._file is None or size >= self._size:
            return
        self._size = size
        self.written -= events
        self._since_open -= events
        await self._rollback()

    async def aclose(self) -> None:
        """fsync and close; a failure here is recorded like a failed write, never raised."""
        if self._file is None:
            return
        handle, self._file = self._file, None
        try:
            await run_blocking(os.fsync, handle.fileno())
        except OSError as exc:
            self._record(exc, 0)
        finally:
            try:
                await run_blocking(handle.close)
            except OSError as exc:
                self._record(exc, 0)

    def _record(self, exc: BaseException, events: int) -> None:
        self.lost += events
        if self.error is None:
            self.error = exc

    async def _reopen(self) -> None:
        notice: OSError | None = None
        if self._file is not None:
            # what went into the unlinked file is out of reach: count it as lost
            gone = self._since_open
            self.written -= gone
            notice = FileNotFoundError(f"{self.path} was removed while the run wrote it")
            self._record(notice, gone)
            await run_blocking(self._file.close)
            self._file = None
        try:
            await self.open()
        except OSError as exc:  # e.g. a symbolic link planted in its place: refused
            if notice is not None and self.error is notice:  # say both, in one error
                exc = OSError(
                    exc.errno,
                    f"was removed while the run wrote it, and not made again: {exc.strerror}",
                    str(self.path),
                )
                self.error = None
            self._record(exc, 0)
        if self._file is not None:
            for alias in self.aliases:  # every name was gone: the new file takes them all
                if not await run_blocking(link_in_place, self.path, alias):
                    self._record(OSError(f"{alias} could not be made a link again"), 0)

    async def _rollback(self) -> None:
        assert self._file is not None
        try:
            if os.fstat(self.fd).st_size > self._size:  # truncating never makes a file longer
                await run_blocking(self._file.truncate, self._size)
        except OSError:
            pass  # nothing more can be done: the loss is recorded
