"""The in-process observers' options, each declared once: its name, type and default.

Observer takes ``ObserverOptions``, SyncObserver those plus the loop thread's, and
``open_run`` (which every in-process run and the collector's runs go through) the part that
says how a run writes. Each flavour takes them as ``**options: Unpack[...]``, which mypy checks
by name and type, and ``shows_options`` makes ``help()`` and ``inspect.signature`` show them
as keyword-only parameters with their defaults.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TextIO, TypedDict, TypeVar

from ._bus import DEFAULT_CAPACITY, DEFAULT_CLOSE_TIMEOUT
from ._events import DEFAULT_MAX_PAYLOAD_BYTES

if TYPE_CHECKING:
    from ._retention import Retention
    from ._sinks import Sink
    from ._sinks._progress import ProgressOption

#: How long the exit hook waits for a blocking observer that was never closed.
DEFAULT_EXIT_TIMEOUT = 5.0

#: The default of an option whose real default is decided when the observer is made (the
#: console is the ``sys.stdout`` of that moment).
UNSET: Any = object()


class RunOptions(TypedDict, total=False):
    """How a run writes its files: every in-process flavour's, and the collector's runs'."""

    progress: ProgressOption
    console: TextIO | None
    sinks: Sequence[Sink]
    capacity: int
    overflow: Literal["block", "drop"]
    close_timeout: float


class CaptureOptions(TypedDict, total=False):
    """What a run captures besides its events: every flavour's, remote ones included."""

    capture_logging: int | str | None
    capture_warnings: bool


class ObserverOptions(RunOptions, CaptureOptions, total=False):
    """Observer's options."""

    run_id: str | None
    max_payload_bytes: int
    retention: Retention | None


class LoopOptions(TypedDict, total=False):
    """The options of the loop thread that hosts a blocking observer."""

    backend: Literal["asyncio", "trio"]
    exit_timeout: float


class SyncObserverOptions(ObserverOptions, LoopOptions, total=False):
    """SyncObserver's options: Observer's, the loop thread's, and ``end_on_close``."""

    end_on_close: bool


#: Every option's default, once for all the flavours that take it.
DEFAULTS: SyncObserverOptions = {
    "progress": True,
    "console": UNSET,
    "sinks": (),
    "capacity": DEFAULT_CAPACITY,
    "overflow": "block",
    "close_timeout": DEFAULT_CLOSE_TIMEOUT,
    "run_id": None,
    "max_payload_bytes": DEFAULT_MAX_PAYLOAD_BYTES,
    "retention": None,
    "capture_logging": None,
    "capture_warnings": False,
    "backend": "asyncio",
    "exit_timeout": DEFAULT_EXIT_TIMEOUT,
    "end_on_close": True,
}


_DEFAULTS: Mapping[str, object] = DEFAULTS


def split_options(given: Mapping[str, Any], options: type) -> Any:
    """The part of ``given`` that ``options`` declares (typed by the caller as that
    TypedDict)."""
    names = options.__annotations__
    return {name: value for name, value in given.items() if name in names}


def with_defaults(
    func: str, given: Mapping[str, Any], options: type, defaults: Mapping[str, Any] = _DEFAULTS
) -> Any:
    """Every option of ``options``: ``given``'s, ``defaults`` for the rest (typed by the caller
    as that TypedDict).

    Raises TypeError, as a signature that spelled them out would, for a keyword that
    ``options`` does not declare.
    """
    names = options.__annotations__
    for name in given:
        if name not in names:
            raise TypeError(f"{func}() got an unexpected keyword argument {name!r}")
    return {name: given.get(name, defaults[name]) for name in names}


F = TypeVar("F", bound=Callable[..., Any])


def shows_options(options: type, defaults: Mapping[str, Any] = DEFAULTS) -> Callable[[F], F]:
    """Show the keys of ``options`` as keyword-only parameters of the decorated function, in
    place of its ``**options``, with their types and ``defaults`` (help(), inspect)."""

    def show(func: F) -> F:
        signature = inspect.signature(func)
        own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        shown = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=defaults[name],
                annotation=getattr(kind, "__forward_arg__", kind),
            )
            for name, kind in options.__annotations__.items()
        ]
        func.__dict__["__signature__"] = signature.replace(parameters=[*own, *shown])
        return func

    return show
