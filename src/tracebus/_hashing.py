"""Output hashes: the seed observer's for what it could hash, a canonical one for structured
values, so the same output hashes alike from run to run and process to process.

The rule, in order:

- a dict that ``json.dumps`` can encode: SHA-256 of its sort-keyed JSON (the seed's hash);
- a dataclass, msgspec Struct, attrs class or pydantic model, a dict or list/tuple holding
  one: SHA-256 of its canonical encoding, JSON with keys and fields sorted;
- anything else (text, numbers, None, lists of plain values...): SHA-256 of ``str(data)``
  (the seed's hash). When that text holds a memory address (``<Foo object at 0x7f...>``)
  the hash differs from process to process: a ``TracebusWarning`` says so, once per type;
- a value none of these can read (nested deeper than the interpreter recurses, a ``__str__``
  that raises): SHA-256 of a marker naming its type and the error, with a warning.

Each hash is the first 16 hex characters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
import warnings
from typing import Any, Final

from ._exceptions import TracebusWarning

_ADDRESS: Final = re.compile(r" at 0x[0-9a-fA-F]{4,}")
_warned: set[type] = set()


def hash_output(data: Any) -> str:
    """First 16 hex characters of SHA-256 over ``data`` (see the module's docstring for the
    rule). Never raises; warns (TracebusWarning) when the hash cannot be stable."""
    if isinstance(data, dict):
        try:
            return _digest(json.dumps(data, sort_keys=True))
        except (TypeError, ValueError, RecursionError):
            pass
    if _structured(data):
        canonical = _canonical(data)
        if canonical is not None:
            return _digest_bytes(canonical)
    try:
        text = str(data)
    except Exception as exc:  # noqa: BLE001 - a user's __str__ may raise anything
        kind = type(data)
        _warn(
            kind,
            f"str() of this {_name(kind)} raised {type(exc).__name__}, so its hash "
            "says only its type and the error",
        )
        return _digest(f"<{_name(kind)}: str() raised {type(exc).__name__}>")
    if not isinstance(data, str) and _ADDRESS.search(text) is not None:
        _warn(
            type(data),
            f"str() of this {_name(type(data))} holds a memory address, so its "
            "hash changes from process to process and every run would differ",
        )
    return _digest(text)


def _name(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _structured(data: Any) -> bool:
    if isinstance(data, dict):
        return True  # json.dumps refused it: a structured value may be inside
    if isinstance(data, list | tuple):
        return any(_is_record(item) for item in data)
    return _is_record(data)


def _is_record(value: Any) -> bool:
    kind = type(value)
    msgspec = sys.modules.get("msgspec")  # not imported: no value can be a Struct
    return (
        (msgspec is not None and isinstance(value, msgspec.Struct))
        or (dataclasses.is_dataclass(value) and not isinstance(value, type))
        or hasattr(kind, "__attrs_attrs__")
        or callable(getattr(kind, "model_dump", None))
    )


def _pydantic(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump(mode="json")
    raise TypeError(f"no canonical encoding for {type(value).__name__}")


def _canonical(data: Any) -> bytes | None:
    import msgspec  # here: ``import tracebus.compat`` stays light

    from ._events import ENCODE_ERRORS

    try:
        return msgspec.json.encode(data, enc_hook=_pydantic, order="sorted")
    except ENCODE_ERRORS:
        return None


def _warn(kind: type, why: str) -> None:
    if kind in _warned:
        return
    _warned.add(kind)
    warnings.warn(
        f"hash_output: {why}; hash a value that describes the output instead (a dict, a "
        "dataclass, a msgspec Struct), e.g. node.output({'rows': len(rows)})",
        TracebusWarning,
        stacklevel=3,
    )


def _digest(text: str) -> str:
    # surrogatepass: text holding a lone surrogate (where the seed raised) still has a hash
    return _digest_bytes(text.encode("utf-8", "surrogatepass"))


def _digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]
