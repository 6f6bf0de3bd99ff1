"""``tracebus query``'s rows as a table for people: a header, aligned columns (numbers to the
right), NULL shown as ``NULL``, long cells cut, the count of rows at the end."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .._text import one_line, printable

#: The most characters a cell shows; ``--json`` and ``--csv`` give every value whole.
CELL = 60


def render_rows(columns: list[tuple[str, str]], rows: list[tuple[Any, ...]]) -> str:
    """The rows as aligned plain text."""
    names = [name for name, _ in columns]
    cells = [[_cell(value) for value in row] for row in rows]
    right = [all(_numeric(row[i]) for row in rows) and bool(rows) for i in range(len(names))]
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(names)]
    lines = []
    for row in [names, ["-" * width for width in widths], *cells]:
        lines.append(
            "  ".join(
                cell.rjust(width) if align else cell.ljust(width)
                for cell, width, align in zip(row, widths, right, strict=True)
            ).rstrip()
        )
    lines.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    return "\n".join(lines) + "\n"


def _numeric(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        text = f"{value:.6g}" if abs(value) < 1e15 else repr(value)
    elif isinstance(value, datetime):
        text = value.isoformat(sep=" ", timespec="milliseconds")
    else:
        text = str(value)
    return printable(one_line(text, CELL))
