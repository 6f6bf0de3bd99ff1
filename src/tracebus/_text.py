"""How user text is written: as valid UTF-8 everywhere, and for people with its control
characters escaped, so that one event is one log line and no text can drive a terminal.

Both escapes are visible: a lone surrogate (what ``os.fsdecode`` makes of a file name that is
not UTF-8) becomes the six characters ``\\udcff``, a newline the two characters ``\\n``.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, the Unicode line and paragraph separators, the bidirectional
# embeddings, overrides and isolates (they reorder what a terminal shows), lone surrogates.
_UNSHOWABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` as every human-readable output shows it (log lines, console, progress bar,
    ``tracebus summary`` and ``tail``): control characters, line separators, bidirectional
    controls and lone surrogates escaped, the rest as it is."""
    if text.isprintable():
        return text
    return _UNSHOWABLE.sub(_escape, text)


def utf8_text(text: str) -> str:
    """``text`` with its lone surrogates escaped (``\\udcff``), so that it encodes as UTF-8."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def one_line(text: str, limit: int | None = None) -> str:
    """``text`` on one line: each run of whitespace (newlines included) made one space, and
    past ``limit`` characters cut to ``limit`` with ``...`` at the end (``None``: no limit).
    What the readers show of an error or a warning in a list of them."""
    flat = " ".join(text.split())
    return flat if limit is None or len(flat) <= limit else flat[: limit - 3] + "..."
