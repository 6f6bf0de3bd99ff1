"""Reading traces back: every line a dict, a torn last line tolerated."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import msgspec

from .._exceptions import TraceFormatError

_decoder = msgspec.json.Decoder(dict[str, Any])


def read_trace(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Iterate a JSONL trace's events as dicts, in file order.

    Blank lines are skipped, and so is a last line that is not a complete JSON object (what
    a hard kill mid-write leaves). Raises TraceFormatError naming the line when any other
    line is not a JSON object, and OSError when the file cannot be read.
    """
    with open(path, "rb") as handle:
        pending: tuple[int, bytes] | None = None
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            if pending is not None:
                yield _decode(*pending, path)
            pending = (number, raw)
        if pending is not None:
            number, raw = pending
            try:
                yield _decode(number, raw, path)
            except TraceFormatError:
                return


def _decode(number: int, raw: bytes, path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise TraceFormatError(f"{os.fspath(path)}:{number}: not a JSON object ({exc})") from None
