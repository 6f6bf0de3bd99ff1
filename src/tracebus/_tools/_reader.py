"""Reading traces back: every line a dict, a torn last line tolerated."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from .._events import MAX_DEPTH, trace_line_problem
from .._exceptions import TraceFormatError

_decoder = msgspec.json.Decoder(dict[str, Any])

#: The line itself, a payload in it (``fields``, ``output_summary``), and the payload's
#: own levels: what the writer can write (see ``payload_value``).
MAX_LINE_DEPTH = MAX_DEPTH + 2
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = re.compile(rb"[^\[\]{}]+")

#: Called with the line number and the raw bytes of a torn last line.
TornLineHandler = Callable[[int, bytes], None]


def read_trace(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Iterate a JSONL trace's events as dicts, in file order.

    Blank lines are skipped, and so is a last line that is not a complete JSON object (what
    a hard kill mid-write leaves). Raises TraceFormatError naming the file and line when any
    other line is not a JSON object, or when a line breaks the value rules (see
    ``decode_line``), and OSError when the file cannot be read.
    """
    return iter_trace(path)


def iter_trace(
    path: str | os.PathLike[str], on_torn: TornLineHandler | None = None
) -> Iterator[dict[str, Any]]:
    """``read_trace``, telling ``on_torn`` about a torn last line instead of staying silent."""
    with open(path, "rb") as handle:
        pending: tuple[int, bytes] | None = None
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            if pending is not None:
                yield decode_line(*pending, path)
            pending = (number, raw)
        if pending is not None:
            number, raw = pending
            refuse_deep(raw, number, path)
            line = whole_object(raw)
            if line is None:  # torn: what a hard kill mid-write leaves
                if on_torn is not None:
                    on_torn(number, raw)
                return
            yield _checked(line, number, path)


def _too_deep(raw: bytes) -> int | None:
    """How deep the JSON text ``raw`` nests, when deeper than a trace line may; measured on
    the text, so that the verdict never depends on how deep the caller's stack is."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_LINE_DEPTH:
        return None
    depth = deepest = 0
    for byte in _NOT_BRACKETS.sub(b"", _STRINGS.sub(b"", raw)):
        if byte == 0x5B or byte == 0x7B:  # [ {
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest if deepest > MAX_LINE_DEPTH else None


def decode_line(number: int, raw: bytes, path: str | os.PathLike[str]) -> dict[str, Any]:
    """One trace line as a dict.

    Raises TraceFormatError naming the file and line when it is not a JSON object, or breaks
    the value rules (see ``trace_line_problem``): a known field of the wrong type, a number
    no event can hold (an epoch of 1e300, a cost of 10**400), nesting deeper than a payload
    may.
    """
    refuse_deep(raw, number, path)
    try:
        line = _decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise TraceFormatError(f"{os.fspath(path)}:{number}: not a JSON object ({exc})") from None
    return _checked(line, number, path)


def refuse_deep(raw: bytes, number: int, path: str | os.PathLike[str]) -> None:
    depth = _too_deep(raw)
    if depth is not None:
        raise TraceFormatError(
            f"{os.fspath(path)}:{number}: nests {depth} levels deep "
            f"(a trace line nests at most {MAX_LINE_DEPTH})"
        )


def whole_object(raw: bytes) -> dict[str, Any] | None:
    try:
        line: dict[str, Any] = _decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    return line


def _checked(line: dict[str, Any], number: int, path: str | os.PathLike[str]) -> dict[str, Any]:
    problem = trace_line_problem(line)
    if problem is not None:
        raise TraceFormatError(f"{os.fspath(path)}:{number}: {problem}")
    return line
