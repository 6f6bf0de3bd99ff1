"""The two places where asyncio and trio differ for tracebus, and whether a loop is its own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import anyio.lowlevel


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
