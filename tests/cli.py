"""The command line as a user runs it: ``python -m tracebus ARGS`` in a fresh process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

#: ``tracebus`` under this interpreter, for tests that start it themselves (``Popen``).
TRACEBUS = (sys.executable, "-m", "tracebus")


def run_tracebus(
    *args: str | Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``tracebus ARGS`` to its end, its output captured as text; any exit code."""
    return subprocess.run(
        [*TRACEBUS, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    """The command exited 2 with one line on stderr, holding each of ``expected``."""
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for text in expected:
        assert text in lines[0]
