"""Which files the page may read: run traces under the directories ``watch`` was given.

A run is addressed as ``{root}/{path}``: the number of the directory on the command line and
the trace's path inside it. A path is resolved (symbolic links followed) before it is
checked, so nothing outside the directories is ever opened: not through ``..``, an absolute
path, an encoded slash, or a link that points out.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from ..._layout import audit_file


class Roots:
    """The directories being watched, each resolved once."""

    def __init__(self, dirs: list[Path]) -> None:
        self.given = list(dirs)
        self.resolved = [Path(os.path.realpath(d)) for d in dirs]

    def address_of(self, trace: Path) -> str | None:
        """``{root}/{path}`` of a trace under one of the directories, URL-quoted; None for
        a file outside them."""
        real = Path(os.path.realpath(trace))
        for number, root in enumerate(self.resolved):
            if real.is_relative_to(root):
                return f"{number}/{quote(real.relative_to(root).as_posix())}"
        return None

    def trace_at(self, root: str, path: str) -> Path | None:
        """The trace at ``path`` (decoded from the URL) inside directory number ``root``,
        or None when that is not a run's trace inside it."""
        if not root.isdecimal() or int(root) >= len(self.resolved) or "\x00" in path:
            return None
        base = self.resolved[int(root)]
        relative = PurePosixPath(path)
        if relative.is_absolute() or ".." in relative.parts or "\\" in path:
            return None
        real = Path(os.path.realpath(base.joinpath(*relative.parts)))
        if not real.is_relative_to(base) or not _is_trace(real) or not real.is_file():
            return None
        return real


def _is_trace(path: Path) -> bool:
    """A trace where a run writes one: ``traces/*.jsonl`` or
    ``audit/step_NN/trace_NN.jsonl``."""
    if path.parent.name == "traces":
        return path.suffix == ".jsonl"
    audit = audit_file(path.name)
    return (
        audit is not None
        and audit[0] == "trace"
        and path.parent.name == f"step_{audit[1]}"
        and path.parent.parent.name == "audit"
    )
