"""docs/protocol.md's table of error codes says of every ErrorCode what the enum says."""

from __future__ import annotations

import re
from pathlib import Path

from tracebus.service import ErrorCode

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def _documented() -> dict[str, str]:
    """Each code of the table headed ``| code | fatal | when |``, and its fatal column."""
    lines = PROTOCOL.read_text(encoding="utf-8").splitlines()
    start = lines.index("| code | fatal | when |") + 2
    table: dict[str, str] = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        codes, fatal = line.split("|")[1:3]
        for code in re.findall(r"`([a-z_]+)`", codes):
            table[code] = fatal.strip()
    return table


def test_every_code_has_one_row_and_no_row_names_an_unknown_code() -> None:
    assert sorted(_documented()) == sorted(code.value for code in ErrorCode)


def test_the_fatal_column_is_the_enums() -> None:
    for code, fatal in _documented().items():
        # "(closed)": the connection was already gone, so the service closes nothing
        assert fatal in (("yes",) if ErrorCode(code).fatal else ("no", "(closed)")), code
