"""The two places where asyncio and trio differ for tracebus."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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
