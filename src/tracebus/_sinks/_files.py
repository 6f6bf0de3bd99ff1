"""Append-only output files written by the single writer: one write call per batch.

Files are opened unbuffered, so every batch reaches the operating system when its write
returns: a process killed hard loses nothing that was written, and at most the last line is
torn. A failed write is rolled back by truncating to the last complete line, so a file never
holds a partial line in its middle.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, cast

import aiofiles
import anyio

from .._loop import on_asyncio


class _AsyncRawFile(Protocol):
    async def write(self, data: bytes | memoryview, /) -> Any: ...
    async def truncate(self, size: int, /) -> Any: ...
    async def close(self) -> Any: ...
    def fileno(self) -> int: ...


class _AnyioFile:
    """anyio's thread-backed file under the method names aiofiles uses."""

    def __init__(self, handle: anyio.AsyncFile[bytes]) -> None:
        self._handle = handle

    async def write(self, data: bytes | memoryview, /) -> int:
        return await self._handle.write(data)

    async def truncate(self, size: int, /) -> int:
        return await self._handle.truncate(size)

    async def close(self) -> None:
        await self._handle.aclose()

    def fileno(self) -> int:
        return self._handle.wrapped.fileno()


async def _open_append(path: Path) -> _AsyncRawFile:
    # aiofiles is bound to asyncio's executor; on trio, anyio's own thread-backed file does
    # the same job.
    if on_asyncio():
        return cast(_AsyncRawFile, await aiofiles.open(path, "ab", buffering=0))
    return _AnyioFile(await anyio.open_file(path, "ab", buffering=0))


class AppendFile:
    """One output file; remembers the first error and how many events it failed to take."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lost = 0
        self.written = 0
        self.error: BaseException | None = None
        self._file: _AsyncRawFile | None = None
        self._size = 0
        self._since_open = 0

    async def open(self) -> None:
        try:
            self._file = await _open_append(self.path)
            self._size = os.fstat(self._file.fileno()).st_size
            self._since_open = 0
        except OSError as exc:
            self._file = None
            self._record(exc, 0)

    async def write(self, data: bytes, events: int) -> None:
        """Append ``data`` (whole lines holding ``events`` events); never raises OSError."""
        if not data:
            return
        if self._file is None or self._removed():
            await self._reopen()
            if self._file is None:
                self._record(FileNotFoundError(f"cannot reopen {self.path}"), events)
                return
        try:
            view = memoryview(data)
            while view:
                count = await self._file.write(view)
                view = view[count:]
        except OSError as exc:
            await self._rollback()
            self._record(exc, events)
            return
        self._size += len(data)
        self.written += events
        self._since_open += events

    async def aclose(self) -> None:
        """fsync and close; a failure here is recorded like a failed write, never raised."""
        if self._file is None:
            return
        handle, self._file = self._file, None
        try:
            await anyio.to_thread.run_sync(os.fsync, handle.fileno())
        except OSError as exc:
            self._record(exc, 0)
        finally:
            try:
                await handle.close()
            except OSError as exc:
                self._record(exc, 0)

    def _record(self, exc: BaseException, events: int) -> None:
        self.lost += events
        if self.error is None:
            self.error = exc

    def _removed(self) -> bool:
        assert self._file is not None
        # fstat on an open descriptor is answered from the in-memory inode: cheap, per batch.
        return os.fstat(self._file.fileno()).st_nlink == 0

    async def _reopen(self) -> None:
        if self._file is not None:
            # what went into the unlinked file is out of reach: count it as lost
            gone = self._since_open
            self.written -= gone
            self._record(FileNotFoundError(f"{self.path} was removed while the run wrote it"), gone)
            await self._file.close()
            self._file = None
        await self.open()

    async def _rollback(self) -> None:
        assert self._file is not None
        try:
            await self._file.truncate(self._size)
        except OSError:
            pass  # e.g. /dev/full: nothing was appended anyway
