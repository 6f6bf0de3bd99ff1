"""An async context manager hosted on an event loop in a daemon thread of its own, for the
sync observers.

A daemon thread (not a pool thread) keeps a host that is never closed from holding up
interpreter exit; an exit hook closes it within ``exit_timeout``.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401 - see _register below
import os
import threading
import weakref
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal

import anyio
import anyio.from_thread
import anyio.lowlevel

from ._exceptions import BusClosedError, CloseTimeoutError
from ._loop import mark_loop_private, stop_starting_threads, threadsafe_caller
from ._options import DEFAULT_EXIT_TIMEOUT as DEFAULT_EXIT_TIMEOUT
from ._queue import forked_refusal


class LoopThread:
    """Enters ``resource`` on its own loop in the constructor and leaves it in ``close()``.

    Raises, from the constructor, what entering ``resource`` raised.
    """

    def __init__(
        self,
        resource: AbstractAsyncContextManager[Any],
        *,
        name: str,
        backend: Literal["asyncio", "trio"],
        exit_timeout: float,
        unwritten: Callable[[], int] = lambda: 0,
    ) -> None:
        self._resource = resource
        self._unwritten = unwritten
        self._pid = os.getpid()
        self.forked_from: int | None = None
        self._exit_timeout = exit_timeout
        self._ready = threading.Event()
        self._done = threading.Event()
        self._close_lock = threading.Lock()
        self._entered = False
        self.closed = False
        self._error: BaseException | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._call_soon: Callable[[Callable[[], object]], object] | None = None
        self._stop: anyio.Event | None = None
        self._leaving: BaseException | None = None  # the error the resource is left with
        self._thread = threading.Thread(
            target=self._thread_main, args=(backend,), name=name, daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if not self._entered:
            self._thread.join()
            error, self._error = self._error, None
            assert error is not None
            raise error
        _open_hosts.add(self)

    def _thread_main(self, backend: str) -> None:
        try:
            anyio.run(self._serve, backend=backend)
        except BaseException as exc:  # handed to the thread that calls close()
            self._error = exc
        finally:
            self._done.set()
            self._ready.set()

    async def _serve(self) -> None:
        mark_loop_private()
        self._token = anyio.lowlevel.current_token()
        self._call_soon = threadsafe_caller()
        self._stop = anyio.Event()
        await self._resource.__aenter__()
        try:
            self._entered = True
            self._ready.set()
            await self._stop.wait()
        except BaseException as exc:
            if not await self._resource.__aexit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            leaving = self._leaving
            self._leaving = None
            tb = None if leaving is None else leaving.__traceback__
            await self._resource.__aexit__(type(leaving) if leaving else None, leaving, tb)

    def call(self, func: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``func`` on the loop and wait for it. Raises BusClosedError once the loop ended."""
        if self._done.is_set() or self._token is None:
            raise self.refusal("observer")
        anyio.from_thread.run(func, token=self._token)

    def close(self, timeout: float | None = None, error: BaseException | None = None) -> None:
        """Leave the resource, with ``error`` as a ``with`` block's error would leave it, and
        end the loop. Idempotent; raises what leaving raised, once.

        Raises CloseTimeoutError when leaving takes longer than ``timeout`` (the loop goes on
        closing in its thread).
        """
        with self._close_lock:
            if self.closed:
                return
            self.closed = True
            self._leaving = error
        if not self._done.is_set() and self._call_soon is not None and self._stop is not None:
            # Asked, not waited for: the writer writes on this loop's thread, and a write the
            # disk holds up must not hold up a close that has a timeout.
            try:
                self._call_soon(self._stop.set)
            except RuntimeError:  # the loop has ended already
                pass
        if not self._done.wait(timeout):
            assert timeout is not None
            raise CloseTimeoutError(self._unwritten(), timeout)
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _forked(self) -> None:
        """In a forked child: closed, with nothing to wait for (the locks are new ones, as a
        thread of the parent may have held the old ones at the fork)."""
        self._close_lock = threading.Lock()
        self._done = threading.Event()
        self._done.set()
        self._error = None
        self.closed = True
        self.forked_from = self._pid

    def refusal(self, what: str) -> BusClosedError:
        """The error for an event offered once closed (or in a forked child)."""
        if self.forked_from is not None:
            return forked_refusal(self.forked_from)
        return BusClosedError(f"the {what} is closed; the event was not accepted")

    def _close_at_exit(self) -> None:
        try:
            self.close(timeout=self._exit_timeout)
        except Exception:  # noqa: S110 - at exit there is no one left to tell
            pass


_open_hosts: weakref.WeakSet[LoopThread] = weakref.WeakSet()


def _forget_in_child() -> None:
    # A forked child has a copy of every host but none of their threads: closing one there
    # would wait for ever on a loop that does not run. The child forgets them, so it exits
    # normally, and its calls on them are refused.
    for host in list(_open_hosts):
        host._forked()
    _open_hosts.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _close_all_at_exit() -> None:
    stop_starting_threads()
    for host in list(_open_hosts):
        host._close_at_exit()


# The writer's file I/O and asyncio's name lookups run on executor threads, and interpreter
# exit shuts executors down (in threading's own exit hooks, which run before atexit's).
# Register with those hooks after concurrent.futures has, so ours runs first (they run
# last-in, first-out).
_register = getattr(threading, "_register_atexit", atexit.register)
_register(_close_all_at_exit)
