"""Every event type is wired everywhere it must be: a builder, a method on every observer
flavour, a line of ``tracebus tail``, a row in the docs' trace table. Adding an event type
to ``_events`` without one of them fails here, naming what is missing."""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_type_hints

import msgspec
import pytest
import sniffio
from hypothesis import given, settings
from hypothesis import strategies as st

import tracebus
from tracebus import cli
from tracebus._events import (
    BASE_FIELDS,
    COMMON_FIELDS,
    EVENT_KINDS,
    EVENT_TYPES,
    LIFECYCLE_TYPES,
    SEED_LOG_DETAILS,
    TRACE_EVENT_KINDS,
    TRACE_EVENT_TYPES,
    Event,
    event_type_of_kind,
)
from tracebus._factory import EventFactory

ROOT = Path(__file__).resolve().parents[1]
#: Event types no observer flavour has a method for, and what emits them instead.
EMITTED_WITHOUT_A_METHOD = {
    "workflow_start": "entering an observer",
    "log": "a captured logging record or warning",
}
CALLED_TYPES = [name for name in EVENT_TYPES if name not in EMITTED_WITHOUT_A_METHOD]
#: What is still missing for an event type, and who is adding it: each is expected to fail
#: here until it is done (then it passes, xfail_strict fails it, and its line goes).
PENDING: dict[tuple[str, str], str] = {}


def _pending(check: str, names: Sequence[str]) -> list[Any]:
    return [
        pytest.param(name, marks=pytest.mark.xfail(reason=PENDING[check, name], strict=True))
        if (check, name) in PENDING
        else name
        for name in names
    ]


ASYNC_FLAVOURS = [tracebus.Observer, tracebus.RemoteObserver]
SYNC_FLAVOURS = [tracebus.SyncObserver, tracebus.SyncRemoteObserver]


def test_the_lists_agree() -> None:
    assert EVENT_TYPES == tuple(event_type_of_kind(kind) for kind in EVENT_KINDS)
    assert TRACE_EVENT_TYPES == tuple(event_type_of_kind(kind) for kind in TRACE_EVENT_KINDS)
    assert len(set(TRACE_EVENT_TYPES)) == len(TRACE_EVENT_TYPES)
    assert set(EVENT_KINDS) < set(TRACE_EVENT_KINDS)
    assert set(LIFECYCLE_TYPES) <= set(EVENT_KINDS)
    assert set(SEED_LOG_DETAILS) <= set(EVENT_KINDS)
    assert COMMON_FIELDS == {"event_type"} | BASE_FIELDS - {"extra"}
    assert all(issubclass(kind, Event) for kind in TRACE_EVENT_KINDS)


@pytest.mark.parametrize("kind", EVENT_KINDS, ids=event_type_of_kind)
def test_every_event_type_is_public(kind: type[Event]) -> None:
    assert kind.__name__ in tracebus.__all__
    assert getattr(tracebus, kind.__name__) is kind


@pytest.mark.parametrize("kind", EVENT_KINDS, ids=event_type_of_kind)
def test_every_event_type_has_a_builder(kind: type[Event]) -> None:
    name = event_type_of_kind(kind)
    builder = getattr(EventFactory, name, None)
    assert builder is not None, f"EventFactory has no {name}()"
    assert get_type_hints(builder)["return"] is kind


@pytest.mark.parametrize("flavour", ASYNC_FLAVOURS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", CALLED_TYPES)
def test_every_async_flavour_has_an_awaitable_method(flavour: type, name: str) -> None:
    method = getattr(flavour, name, None)
    assert method is not None, f"{flavour.__name__} has no {name}()"
    assert inspect.iscoroutinefunction(method), f"{flavour.__name__}.{name} is not async"


@pytest.mark.parametrize("flavour", SYNC_FLAVOURS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", CALLED_TYPES)
def test_every_sync_flavour_has_the_same_method_as_a_plain_call(flavour: type, name: str) -> None:
    method = getattr(flavour, name, None)
    assert method is not None, f"{flavour.__name__} has no {name}()"
    assert not inspect.iscoroutinefunction(method), f"{flavour.__name__}.{name} is async"
    twin = getattr(tracebus.Observer, name)
    assert _parameters(method) == _parameters(twin)


def _parameters(method: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(method).parameters.values()]


def _sample(kind: type[Event]) -> dict[str, Any]:
    """A trace line of ``kind`` with every field it requires filled by a value of its type."""
    values = {str: "x", int: 1, float: 1.5}
    required: dict[str, Any] = {
        field.name: values.get(field.type, {})
        for field in msgspec.structs.fields(kind)
        if field.required
    }
    line: dict[str, Any] = msgspec.to_builtins(kind(**required))
    return line


@pytest.mark.parametrize("name", _pending("tail", TRACE_EVENT_TYPES))
def test_every_event_type_has_a_tail_line(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # tail shows an event type it does not know as its fields' JSON: the same fields under a
    # type no formatter knows must read differently from the event itself.
    line = _sample(TRACE_EVENT_KINDS[TRACE_EVENT_TYPES.index(name)])
    unknown = {**line, "event_type": "not_an_event_type"}
    end = _sample(tracebus.WorkflowComplete)
    trace = tmp_path / "trace.jsonl"
    trace.write_bytes(b"".join(msgspec.json.encode(e) + b"\n" for e in (line, unknown, end)))
    assert cli.main(["tail", "--timeout", "10", str(trace)]) == 0
    shown = capsys.readouterr().out.splitlines()
    own, fallback = (text.split(maxsplit=2)[2:] for text in shown[:2])
    assert own != fallback, f"tail has no line for {line['event_type']}: {shown[0]}"


def _docs_tables() -> str:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return "\n".join(page.read_text() for page in pages if page.exists())


@pytest.mark.parametrize("name", _pending("docs", TRACE_EVENT_TYPES))
def test_every_event_type_has_a_row_in_the_docs(name: str) -> None:
    row = re.compile(rf"^\| `{name}` \|", re.M)
    assert row.search(_docs_tables()), f"no table row for {name} in README.md or docs/*.md"


@pytest.mark.anyio
async def test_a_test_marked_anyio_runs_on_the_backend_it_names(anyio_backend: str) -> None:
    # pytest-asyncio's auto mode would run it on asyncio whatever the parameter said.
    assert sniffio.current_async_library() == anyio_backend


async def test_any_other_async_test_runs_on_asyncio() -> None:
    assert sniffio.current_async_library() == "asyncio"


@settings(max_examples=2, deadline=None)
@given(st.integers())
async def test_an_async_hypothesis_test_runs_on_asyncio(value: int) -> None:
    assert sniffio.current_async_library() == "asyncio"
