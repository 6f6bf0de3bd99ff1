"""How user text is shown: escaped for people, valid UTF-8 everywhere, one line in lists."""

from __future__ import annotations

import pytest

from tracebus._text import one_line, printable, utf8_text


def test_printable_escapes_what_could_drive_a_terminal_and_keeps_the_rest() -> None:
    assert printable("plain text, é, 日本") == "plain text, é, 日本"
    shown = printable("a\nb\r\tc\x1b[31m\u202eevil\udcff")
    assert shown == "a\\nb\\r\\tc\\x1b[31m\\u202eevil\\udcff"


def test_utf8_text_escapes_lone_surrogates_only() -> None:
    assert utf8_text("é\udcff") == "é\\udcff"
    assert utf8_text("é") == "é"
    utf8_text("x\udcff").encode("utf-8")  # encodes


@pytest.mark.parametrize(
    ("text", "limit", "shown"),
    [
        ("  Traceback:\n  File  x\n\tKeyError: 'k'  ", None, "Traceback: File x KeyError: 'k'"),
        ("a" * 10, 10, "a" * 10),
        ("a" * 11, 10, "aaaaaaa..."),
        ("one\ntwo " * 100, 300, ("one two " * 40)[:297] + "..."),
    ],
)
def test_one_line_flattens_whitespace_and_cuts_at_the_limit(
    text: str, limit: int | None, shown: str
) -> None:
    assert one_line(text, limit) == shown
    assert limit is None or len(one_line(text, limit)) <= limit
