"""The places where asyncio and trio differ for tracebus, how blocking calls leave the
event loop, and whether a loop is its own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar, TypeVarTuple

import anyio.lowlevel
import anyio.to_thread

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# Python 3.12 refuses to start a thread once the main thread has finished (3.11 and 3.13
# allow it in threading's exit hooks), so at interpreter exit blocking calls run inline.
_threads_allowed = True


def on_asyncio() -> bool:
    """Whether the running anyio backend is asyncio."""
    return isinstance(anyio.lowlevel.current_token().native_token, asyncio.AbstractEventLoop)


def threadsafe_caller() -> Callable[[Callable[[], object]], object]:
    """A non-blocking "run this callback on the current loop soon", callable from any thread.

    anyio's own ``from_thread.run_sync`` waits for the result; producers must not.
    """
    native: Any = anyio.lowlevel.current_token().native_token
    if isinstance(native, asyncio.AbstractEventLoop):
        return native.call_soon_threadsafe
    caller: Callable[[Callable[[], object]], object] = native.run_sync_soon
    return caller


_private = ContextVar("tracebus_private_loop", default=False)


def mark_loop_private() -> None:
    """Say that the current task, and the tasks it starts, run on a loop that serves tracebus
    alone (a sync observer's thread): blocking it for a write holds up no user code."""
    _private.set(True)


def on_private_loop() -> bool:
    """Whether ``mark_loop_private`` was said in this task or the one that started it."""
    return _private.get()


def stop_starting_threads() -> None:
    """From now on run blocking calls inline, on the loop's own thread (interpreter exit)."""
    global _threads_allowed
    _threads_allowed = False


def threads_allowed() -> bool:
    """False once the interpreter is exiting (see ``stop_starting_threads``)."""
    return _threads_allowed


async def run_blocking(func: Callable[[*Ts], T], *args: *Ts) -> T:
    """``func(*args)`` in a worker thread, or inline when no thread may be started."""
    if not _threads_allowed:
        return func(*args)
    return await anyio.to_thread.run_sync(func, *args)
