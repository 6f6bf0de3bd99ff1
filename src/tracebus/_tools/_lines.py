"""Trace lines decoded once, into one flat typed struct, a block of lines at a time.

``TraceLine`` has a field for every field any event type has, typed by the value rules of
``_events`` (``trace_line_problem``), so that decoding a line is also checking it; fields of
later schema versions are ignored, and the free-form payloads stay undecoded (``Raw``) until
an output needs them. A block that fails anywhere is read again line by line by the dict
reader, which names the first bad line exactly as ``read_trace`` does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from functools import cache
from operator import attrgetter
from typing import Annotated, Any, Generic, TypeVar, get_args

import msgspec

from .._events import (
    MAX_EPOCH,
    MAX_INT,
    MAX_MAGNITUDE,
    MIN_INT,
    TRACE_EVENT_KINDS,
)
from .._exceptions import TraceFormatError
from ._reader import MAX_LINE_DEPTH, TornLineHandler, decode_line, refuse_deep, whole_object

BLOCK_BYTES = 1 << 20
T = TypeVar("T")
#: A payload absent or null.
NULL = msgspec.Raw(b"null")

Real = Annotated[float, msgspec.Meta(ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)]
Epoch = Annotated[float, msgspec.Meta(ge=0.0, lt=MAX_EPOCH)]
Whole = Annotated[int, msgspec.Meta(ge=MIN_INT, le=MAX_INT)]


class TraceLine(msgspec.Struct, gc=False):
    """The fields the readers use, and those on every line; ``_CheckedLine`` adds the
    others, to check them. In the order the writer writes them: the decoder looks for each
    key from where it found the last one, so a line in this order finds each at once."""

    event_type: str | None = None
    timestamp: str | None = None
    epoch_seconds: Epoch | None = None
    pid: Whole | None = None
    workflow_id: str | None = None
    run_id: str | None | msgspec.UnsetType = msgspec.UNSET
    seq: Whole | None = None
    schema_version: Whole | None = None
    producer: str | None = None
    message: str | None = None
    total_nodes: Whole | None = None
    node_id: str | None = None
    node_index: Whole | None = None
    parent_id: str | None = None
    depends_on: list[str] | None = None
    duration_seconds: Real | None = None
    output_hash: str | None = None
    output_summary: msgspec.Raw = NULL
    cost_usd: Real | None = None
    error: str | None = None
    reason: str | None = None
    attempt: Whole | None = None
    delay_seconds: Real | None = None
    fields: dict[str, Any] | None = None
    model: str | None = None
    input_tokens: Whole | None = None
    output_tokens: Whole | None = None
    counters: msgspec.Raw = NULL
    cumulative_cost_usd: Real | None = None
    failed_event_type: str | None = None


def _type_of(name: str, annotation: Any) -> Any:
    """The TraceLine type of a field of an event annotated ``annotation`` (see
    ``trace_line_problem``: a field that is null counts as absent)."""
    args = set(get_args(annotation)) or {annotation}
    args -= {type(None), msgspec.UnsetType}
    (base,) = args if len(args) == 1 else (annotation,)
    if name == "epoch_seconds":
        return Epoch | None
    if base is float:
        return Real | None
    if base is int:
        return Whole | None
    if base is str:
        return str | None
    if base == list[str]:
        return list[str] | None
    if base == dict[str, float]:
        return dict[str, Real] | None
    if base == dict[str, Any]:
        return dict[str, Any] | None
    return msgspec.Raw


@cache
def line_types() -> dict[str, Any]:
    """The TraceLine type of every field of every event type, from the events' annotations."""
    types: dict[str, Any] = {"event_type": str | None}
    for kind in TRACE_EVENT_KINDS:
        for field in msgspec.structs.fields(kind):
            types[field.name] = _type_of(field.name, field.type)
    return types


_CheckedLine = msgspec.defstruct(
    "CheckedLine",
    [
        (name, kind, NULL if kind is msgspec.Raw else None)
        for name, kind in line_types().items()
        if name not in TraceLine.__struct_fields__
    ],
    bases=(TraceLine,),
    gc=False,
)
_decode: Callable[[bytes], TraceLine] = msgspec.json.Decoder(_CheckedLine).decode  # type: ignore[assignment]
_event_type = attrgetter("event_type")
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[{\n")
#: A line with more opening brackets than a trace line may nest (on ``data`` less _NOT_BRACKET).
_MANY_OPENINGS = re.compile(rb"[^\n]{%d}" % (MAX_LINE_DEPTH + 1))


def decode_typed(raw: bytes, number: int, path: str | os.PathLike[str]) -> TraceLine:
    """One line the dict reader accepted, as a TraceLine."""
    try:
        return _decode(raw)
    except msgspec.DecodeError as exc:
        raise TraceFormatError(f"{os.fspath(path)}:{number}: {exc}") from None


def iter_blocks(
    path: str | os.PathLike[str],
    on_torn: TornLineHandler | None = None,
    on_bytes: Callable[[int], object] | None = None,
) -> Iterator[list[TraceLine]]:
    """A trace's lines as TraceLines, in blocks, in file order, checked as ``read_trace``
    checks them (blank lines skipped, a torn last line told to ``on_torn``); ``on_bytes`` is
    told how many bytes each block held.

    Raises TraceFormatError naming the file and line of the first line that is not a JSON
    object or breaks the value rules, and OSError when the file cannot be read.
    """
    with open(path, "rb") as handle:
        carry = b""
        number = 1  # of the first line of the next block
        block = handle.read(BLOCK_BYTES)
        while block:
            following = handle.read(BLOCK_BYTES)
            data = carry + block
            if following:
                cut = data.rfind(b"\n") + 1
                data, carry = data[:cut], data[cut:]
                decoded, lines = _block(data, number, path)
                yield decoded
                if on_bytes is not None:
                    on_bytes(len(data))
                number += lines
                block = following
                continue
            body = data.rstrip()
            cut = body.rfind(b"\n") + 1
            if cut:
                decoded, lines = _block(data[:cut], number, path)
                yield decoded
                number += lines
            last = _last(body[cut:], number, path, on_torn)
            if last is not None:
                yield [last]
            if on_bytes is not None:
                on_bytes(len(data))
            return


class BlockDecoder(Generic[T]):
    """Blocks of trace lines decoded into ``struct`` (whose types are the checks), all at
    once when each line is one object, else line by line; a block that fails anywhere is
    read again one line at a time by ``checked``, which names the first bad line exactly as
    ``read_trace`` does. With ``kinds``, a line of an event type not in it is read again by
    ``checked`` too (tail shows such a line from its dict)."""

    def __init__(
        self,
        struct: type[T],
        checked: Callable[[int, bytes, str | os.PathLike[str]], T],
        kinds: frozenset[str] | None = None,
    ) -> None:
        decoder = msgspec.json.Decoder(struct)
        self._decode, self._decode_lines = decoder.decode, decoder.decode_lines
        self._checked = checked
        self._kinds = kinds

    def block(
        self, data: bytes, first: int, path: str | os.PathLike[str], scan: tuple[bool, int]
    ) -> tuple[list[T], TraceFormatError | None]:
        """The lines of ``data`` (which ends with a newline), the first numbered ``first``,
        blank ones skipped, given ``scan_block(data)``. Up to the first line that is not a
        JSON object or breaks the value rules, if one does: then also the error naming it.
        """
        too_deep, count = scan
        if not too_deep:
            try:
                if one_object_a_line(data, count):
                    decoded = self._decode_lines(data)
                    if len(decoded) == count:
                        return self._kept(decoded, data, first, path), None
                else:
                    lines = data.split(b"\n")
                    del lines[-1]  # after the last newline
                    return self._kept(list(map(self._decode, lines)), data, first, path), None
            except msgspec.DecodeError:
                pass  # a bad or blank line: read again one by one, for the exact verdict
        lines = data.split(b"\n")
        del lines[-1]
        checked: list[T] = []
        for offset, raw in enumerate(lines):
            if raw.strip():
                try:
                    checked.append(self._checked(first + offset, raw, path))
                except TraceFormatError as exc:
                    return checked, exc
        return checked, None

    def _kept(
        self, decoded: list[T], data: bytes, first: int, path: str | os.PathLike[str]
    ) -> list[T]:
        """``decoded`` (one per line of ``data``), its lines of other kinds read again."""
        kinds = self._kinds
        if kinds is None or kinds.issuperset(map(_event_type, decoded)):
            return decoded
        lines = data.split(b"\n")
        return [
            line if _event_type(line) in kinds else self._checked(first + index, raw, path)
            for index, (line, raw) in enumerate(zip(decoded, lines, strict=False))
        ]


def _checked_line(number: int, raw: bytes, path: str | os.PathLike[str]) -> TraceLine:
    decode_line(number, raw, path)
    return decode_typed(raw, number, path)


_LINES: BlockDecoder[TraceLine] = BlockDecoder(_CheckedLine, _checked_line)  # type: ignore[arg-type]


def _block(data: bytes, number: int, path: str | os.PathLike[str]) -> tuple[list[TraceLine], int]:
    """The lines of ``data`` (which ends with a newline), the first numbered ``number``, and
    how many lines it holds."""
    scan = scan_block(data)
    decoded, bad = _LINES.block(data, number, path, scan)
    if bad is not None:
        raise bad
    return decoded, scan[1]


def scan_block(data: bytes) -> tuple[bool, int]:
    """Whether a line of ``data`` holds more opening brackets than a trace line may nest,
    and how many newlines ``data`` holds: one pass over it."""
    brackets = data.translate(None, _NOT_BRACKET)  # what nests, and the newlines
    return _MANY_OPENINGS.search(brackets) is not None, brackets.count(b"\n")


def one_object_a_line(data: bytes, lines: int) -> bool:
    """Whether every line of ``data`` (which ends with a newline) starts with ``{`` and ends
    with ``}``: then no JSON value can hold a newline (``}`` then ``{`` is never valid
    inside one, and a string cannot hold a raw newline), so if the block decodes into as
    many values as it has lines, each line is exactly one object, as the writer writes."""
    return data[:1] == b"{" and data[-2:] == b"}\n" and data.count(b"}\n{") == lines - 1


def _last(
    raw: bytes, number: int, path: str | os.PathLike[str], on_torn: TornLineHandler | None
) -> TraceLine | None:
    if not raw:
        return None
    refuse_deep(raw, number, path)
    try:  # as a block's lines are read: a line the typed decoder takes is whole and valid
        return _decode(raw)
    except msgspec.DecodeError:
        pass
    if whole_object(raw) is None:  # torn: what a hard kill mid-write leaves
        if on_torn is not None:
            on_torn(number, raw)
        return None
    decode_line(number, raw, path)
    return decode_typed(raw, number, path)
