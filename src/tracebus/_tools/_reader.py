"""Reading traces back: every line a dict, a torn last line tolerated."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from .._exceptions import TraceFormatError

_decoder = msgspec.json.Decoder(dict[str, Any])

#: Called with the line number and the raw bytes of a torn last line.
TornLineHandler = Callable[[int, bytes], None]


def read_trace(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Iterate a JSONL trace's events as dicts, in file order.

    Blank lines are skipped, and so is a last line that is not a complete JSON object (what
    a hard kill mid-write leaves). Raises TraceFormatError naming the line when any other
    line is not a JSON object, and OSError when the file cannot be read.
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
            try:
                yield decode_line(number, raw, path)
            except TraceFormatError:
                if on_torn is not None:
                    on_torn(number, raw)
                return


def decode_line(number: int, raw: bytes, path: str | os.PathLike[str]) -> dict[str, Any]:
    """One trace line as a dict. Raises TraceFormatError naming the file and line."""
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise TraceFormatError(f"{os.fspath(path)}:{number}: not a JSON object ({exc})") from None
