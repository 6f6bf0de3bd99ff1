"""Real small and full disks for the tests that need one: a tmpfs mounted for the test.

Mounting needs root (CI runs as root); elsewhere those tests are skipped, saying why.
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_disk(directory: Path, size: str = "1m") -> Iterator[Path]:
    """``directory`` as the mount point of a tmpfs of ``size`` bytes, for the block."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): needs root")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "--lazy", str(directory)], check=True)


def fill(directory: Path) -> Path:
    """Fill the disk under ``directory`` until a write fails for want of space; return the
    filler file (remove it to free the space)."""
    filler = directory / ".filler"
    with open(filler, "ab", buffering=0) as handle:
        for chunk in (b"\0" * 65_536, b"\0" * 4_096, b"\0"):
            try:
                while True:
                    handle.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return filler


@contextmanager
def full_file_at(path: Path, scratch: Path) -> Iterator[None]:
    """A regular file at ``path`` on a disk with no space left: a file of a full tmpfs
    (mounted at ``scratch``) bind-mounted over it."""
    with small_disk(scratch, "64k") as disk:
        target = disk / "full"
        target.touch()
        fill(disk)
        path.touch()
        subprocess.run(["mount", "--bind", str(target), str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["umount", "--lazy", str(path)], check=True)
